-- Heartbeats for scheduled jobs (SPEC §12, issue 18 point 3).
--
-- `proj_heartbeats` is the read model of the `heartbeat-` streams.
-- `heartbeat_runs` is worker state, not a source of truth: the ping
-- token's SHA-256 (never the token), the status the stream records, when
-- the next run is expected by, and the last ping. A ping updates its row
-- and appends nothing unless the status changes; the miss worker claims
-- rows past `expected_by` `FOR UPDATE SKIP LOCKED` and marks them late in
-- the same transaction, so a miss is recorded once across instances (and
-- put back if its event cannot be appended, so the next pass tries again).
-- The
-- projection adds the row on `HeartbeatCreated`, sets the hash on
-- `HeartbeatTokenRotated`, and drops it on `HeartbeatRemoved`.
CREATE TABLE proj_heartbeats (
    tenant_id    uuid NOT NULL,
    heartbeat_id uuid NOT NULL,
    service_id   uuid NOT NULL,
    name         text NOT NULL,
    status       text NOT NULL,
    removed      boolean NOT NULL,
    version      bigint NOT NULL,
    state        jsonb NOT NULL,
    PRIMARY KEY (tenant_id, heartbeat_id)
);
CREATE INDEX proj_heartbeats_service ON proj_heartbeats (tenant_id, service_id);

CREATE TABLE heartbeat_runs (
    tenant_id    uuid NOT NULL,
    heartbeat_id uuid NOT NULL,
    token_sha256 text NOT NULL UNIQUE,
    status       text NOT NULL DEFAULT 'up',
    expected_by  timestamptz,
    last_ping    jsonb,
    last_ping_at timestamptz,
    -- When a late or failed heartbeat's alert was last sent: it is sent
    -- again an hour on, so the alert expiry never closes a miss that lasts.
    alerted_at   timestamptz,
    PRIMARY KEY (tenant_id, heartbeat_id)
);
CREATE INDEX heartbeat_runs_due ON heartbeat_runs (expected_by) WHERE status = 'up';
CREATE INDEX heartbeat_runs_alerted ON heartbeat_runs (alerted_at) WHERE status <> 'up';

GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON proj_heartbeats, heartbeat_runs TO opsledger_app;
