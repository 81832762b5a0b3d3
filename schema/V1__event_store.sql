-- The event store (SPEC §3). Forward-only: once applied, never edited
-- (refinery records a checksum of every applied migration and the service
-- refuses to start when one no longer matches).

-- The application's role. The service connects as the owner and drops to this
-- role on every pooled connection, so the code that serves requests cannot
-- update, delete or truncate an event even if it tried.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'opsledger_app') THEN
        CREATE ROLE opsledger_app NOLOGIN;
    END IF;
END
$$;
DO $$
BEGIN
    -- The migrating user must be able to SET ROLE to it.
    EXECUTE format('GRANT opsledger_app TO %I', current_user);
EXCEPTION WHEN others THEN
    -- A superuser is a member of every role already.
    NULL;
END
$$;

CREATE TABLE events (
    -- Global position: taken at INSERT, visible at COMMIT. Readers that follow
    -- the global order never rely on it alone: see tx_id.
    position        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The writing transaction. Readers only read below the oldest transaction
    -- still running (pg_snapshot_xmin) and order by (tx_id, position), so an
    -- event that commits late with a lower position is never skipped.
    tx_id           xid8 NOT NULL DEFAULT pg_current_xact_id(),
    -- UUIDv7, made by the service. Not a unique index: every index is paid
    -- on every append, and nothing looks events up by id on the write path.
    event_id        uuid NOT NULL,
    tenant_id       uuid NOT NULL,
    stream_id       text NOT NULL CHECK (length(stream_id) BETWEEN 1 AND 200),
    stream_version  bigint NOT NULL CHECK (stream_version >= 1),
    event_type      text NOT NULL CHECK (length(event_type) BETWEEN 1 AND 100),
    schema_version  integer NOT NULL CHECK (schema_version >= 1),
    work_class      text NOT NULL CHECK (work_class IN ('operations', 'maintenance')),
    -- json, not jsonb: the exact bytes that were hashed are the bytes kept, so
    -- verify can recompute the chain without a canonicalisation step.
    payload         json NOT NULL,
    metadata        json NOT NULL,
    occurred_at     timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL,
    -- The strand of the tenant's hash chain this event belongs to (a stable
    -- hash of stream_id); prev_hash is the previous event of that strand.
    chain_lane      smallint NOT NULL CHECK (chain_lane >= 0),
    prev_hash       bytea NOT NULL,
    hash            bytea NOT NULL,
    UNIQUE (tenant_id, stream_id, stream_version)
);

-- The only other index: the global order readers follow. The unique
-- (tenant_id, stream_id, stream_version) index above serves stream reads and
-- version checks; verify walks the primary key.
CREATE INDEX events_tx_position ON events (tx_id, position);

CREATE FUNCTION events_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER events_no_update_delete
    BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_refuse_change();
CREATE TRIGGER events_no_truncate
    BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_refuse_change();

-- The head of each strand of a tenant's hash chain. Locking this row is what
-- orders the appends to the strand's streams; a whole group-committed batch
-- takes it once.
CREATE TABLE tenant_chain_heads (
    tenant_id       uuid NOT NULL,
    chain_lane      smallint NOT NULL,
    last_hash       bytea NOT NULL,
    event_count     bigint NOT NULL,
    PRIMARY KEY (tenant_id, chain_lane)
);

-- Idempotency keys, written in the same transaction as the events they guard.
CREATE TABLE idempotency_keys (
    tenant_id       uuid NOT NULL,
    key             text NOT NULL CHECK (length(key) BETWEEN 1 AND 200),
    fingerprint     text NOT NULL,
    response        json NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, key)
);

-- Projection checkpoints: written in the same transaction as the projection's rows.
CREATE TABLE projection_checkpoints (
    name            text PRIMARY KEY,
    last_tx_id      xid8 NOT NULL DEFAULT '0',
    last_position   bigint NOT NULL DEFAULT 0,
    last_recorded_at timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

REVOKE ALL ON events, tenant_chain_heads, idempotency_keys, projection_checkpoints FROM PUBLIC;
GRANT SELECT, INSERT ON events TO opsledger_app;
GRANT SELECT, INSERT, UPDATE ON tenant_chain_heads TO opsledger_app;
GRANT SELECT, INSERT ON idempotency_keys TO opsledger_app;
GRANT SELECT, INSERT, UPDATE ON projection_checkpoints TO opsledger_app;
