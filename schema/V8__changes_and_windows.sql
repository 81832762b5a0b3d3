-- Changes, maintenance windows and freeze periods (SPEC §5, §6 change
-- history). Read models, rebuilt from the events by `opsledger rebuild`:
-- each row keeps the aggregate as folded by the domain (`state`) beside the
-- columns the queries filter on.

CREATE TABLE proj_changes (
    tenant_id        uuid NOT NULL,
    change_id        uuid NOT NULL,
    service_ids      uuid[] NOT NULL,
    kind             text NOT NULL,
    status           text NOT NULL,
    requested_at     timestamptz NOT NULL,
    scheduled_start  timestamptz,
    scheduled_end    timestamptz,
    approval_missing boolean NOT NULL,
    state            jsonb NOT NULL,
    version          bigint NOT NULL,
    PRIMARY KEY (tenant_id, change_id)
);
CREATE INDEX proj_changes_services ON proj_changes USING gin (service_ids);
CREATE INDEX proj_changes_scheduled ON proj_changes (tenant_id, scheduled_start)
    WHERE scheduled_start IS NOT NULL;

CREATE TABLE proj_windows (
    tenant_id   uuid NOT NULL,
    window_id   uuid NOT NULL,
    service_ids uuid[] NOT NULL,
    status      text NOT NULL,
    start_at    timestamptz NOT NULL,
    end_at      timestamptz NOT NULL,
    rrule       text,
    change_id   uuid,
    state       jsonb NOT NULL,
    version     bigint NOT NULL,
    PRIMARY KEY (tenant_id, window_id)
);
CREATE INDEX proj_windows_services ON proj_windows USING gin (service_ids);
-- Ingestion asks "which window covers service S now" for new alerts: only
-- windows in force can answer.
CREATE INDEX proj_windows_in_force ON proj_windows (tenant_id)
    WHERE status IN ('announced', 'started');

CREATE TABLE proj_freezes (
    tenant_id   uuid NOT NULL,
    freeze_id   uuid NOT NULL,
    service_ids uuid[] NOT NULL,
    start_at    timestamptz NOT NULL,
    end_at      timestamptz NOT NULL,
    lifted      boolean NOT NULL,
    state       jsonb NOT NULL,
    version     bigint NOT NULL,
    PRIMARY KEY (tenant_id, freeze_id)
);
CREATE INDEX proj_freezes_services ON proj_freezes USING gin (service_ids);

GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON proj_changes, proj_windows, proj_freezes
    TO opsledger_app;
