-- Backup schedules (SPEC §12, issue 18): a service's backups watched
-- against the work log (`proj_worklog`).
--
-- `proj_backup_schedules` is the read model of the `backup_schedule-`
-- streams (one per service: the definition, and the standing as the stream
-- records it, the folded record in `state`).
-- `backup_watch` is the workers' own state, not a source of truth: when
-- each schedule is next checked, the standing the workers last recorded and
-- when they last sent its alert. A worker claims due rows `FOR UPDATE SKIP
-- LOCKED` and moves `next_check_at` a lease on in the same statement, so two
-- instances do not check one schedule at once, then makes them due again a
-- poll later. The projection adds a row when a schedule is defined (due at
-- once) and drops it when it is removed.
CREATE TABLE proj_backup_schedules (
    tenant_id   uuid NOT NULL,
    service_id  uuid NOT NULL,
    standing    text NOT NULL,
    removed     boolean NOT NULL,
    version     bigint NOT NULL,
    state       jsonb NOT NULL,
    PRIMARY KEY (tenant_id, service_id)
);

CREATE TABLE backup_watch (
    tenant_id     uuid NOT NULL,
    service_id    uuid NOT NULL,
    next_check_at timestamptz NOT NULL,
    standing      text NOT NULL DEFAULT 'met',
    alerted_at    timestamptz,
    PRIMARY KEY (tenant_id, service_id)
);
CREATE INDEX backup_watch_due ON backup_watch (next_check_at);

-- A service's backups by when they were taken: the watch reads the newest,
-- the newest verified, and the oldest after it.
CREATE INDEX proj_worklog_backups ON proj_worklog (tenant_id, service_id, performed_at)
    WHERE entry_type = 'backup';

GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON proj_backup_schedules, backup_watch TO opsledger_app;
