-- Probes (SPEC §12, issue 18): HTTP(S) and TCP checks run by the workers.
--
-- `proj_probes` is the read model of the `probe-` streams (definition and
-- health as the stream records them, the folded record in `state`).
-- `probe_runs` is the workers' own state, not a source of truth: when each
-- probe is next due and the results in a row since its last transition.
-- A worker claims due rows `FOR UPDATE SKIP LOCKED` and moves `next_due_at`
-- past the interval in the same transaction before it checks, so two
-- instances never run one probe twice in an interval. The projection adds a
-- probe's row when it is defined (due at a random point of its first
-- interval, so probes defined together do not fire together) and drops it
-- when it is removed; a rebuild leaves existing rows as they are.
CREATE TABLE proj_probes (
    tenant_id   uuid NOT NULL,
    probe_id    uuid NOT NULL,
    service_id  uuid NOT NULL,
    name        text NOT NULL,
    kind        text NOT NULL,
    health      text NOT NULL,
    removed     boolean NOT NULL,
    version     bigint NOT NULL,
    state       jsonb NOT NULL,
    PRIMARY KEY (tenant_id, probe_id)
);
CREATE INDEX proj_probes_service ON proj_probes (tenant_id, service_id);

CREATE TABLE probe_runs (
    tenant_id       uuid NOT NULL,
    probe_id        uuid NOT NULL,
    next_due_at     timestamptz NOT NULL,
    health          text NOT NULL DEFAULT 'up',
    successes       integer NOT NULL DEFAULT 0,
    failures        integer NOT NULL DEFAULT 0,
    last_result     jsonb,
    last_checked_at timestamptz,
    PRIMARY KEY (tenant_id, probe_id)
);
CREATE INDEX probe_runs_due ON probe_runs (next_due_at);

GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON proj_probes, probe_runs TO opsledger_app;
