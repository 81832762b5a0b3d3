-- Threshold rules on pushed samples (SPEC §12, issue 18).
--
-- `samples` holds what machines push (`POST /api/v1/samples`): not events,
-- a plain table kept for a bounded time (`domain::threshold::RETENTION_S`;
-- the worker deletes older rows). A rule reads the recent samples of one
-- metric of its tenant, newest first: `samples_metric_at`. The deletion
-- of old rows reads `samples_at` (BRIN: rows arrive nearly in time order,
-- and it costs an insert next to nothing).
CREATE TABLE samples (
    tenant_id   uuid NOT NULL,
    metric      text NOT NULL,
    labels      jsonb NOT NULL,
    value       float8 NOT NULL,
    at          timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX samples_metric_at ON samples (tenant_id, metric, at);
CREATE INDEX samples_at ON samples USING brin (at);

-- The read model of the `threshold-rule-` streams.
CREATE TABLE proj_threshold_rules (
    tenant_id   uuid NOT NULL,
    rule_id     uuid NOT NULL,
    service_id  uuid NOT NULL,
    name        text NOT NULL,
    metric      text NOT NULL,
    status      text NOT NULL,
    removed     boolean NOT NULL,
    version     bigint NOT NULL,
    state       jsonb NOT NULL,
    PRIMARY KEY (tenant_id, rule_id)
);
CREATE INDEX proj_threshold_rules_service ON proj_threshold_rules (tenant_id, service_id);

-- The workers' own state, not a source of truth (as `probe_runs`): when
-- each rule is next evaluated (claimed `FOR UPDATE SKIP LOCKED` and moved
-- on in one statement, so two instances do not evaluate a rule at once),
-- and which series the workers have alerted as firing, by the digest of
-- their labels, with when the alert was last sent.
CREATE TABLE threshold_runs (
    tenant_id         uuid NOT NULL,
    rule_id           uuid NOT NULL,
    next_due_at       timestamptz NOT NULL,
    last_evaluated_at timestamptz,
    PRIMARY KEY (tenant_id, rule_id)
);
CREATE INDEX threshold_runs_due ON threshold_runs (next_due_at);

CREATE TABLE threshold_series (
    tenant_id   uuid NOT NULL,
    rule_id     uuid NOT NULL,
    series_key  text NOT NULL,
    labels      jsonb NOT NULL,
    alerted_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, rule_id, series_key)
);

GRANT SELECT, INSERT, DELETE ON samples TO opsledger_app;
GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON proj_threshold_rules, threshold_runs, threshold_series TO opsledger_app;
