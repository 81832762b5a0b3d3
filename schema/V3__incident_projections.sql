-- Read models of alerts and incidents. Rebuilt from the events by
-- `opsledger rebuild`; never a source of truth.

CREATE TABLE proj_incidents (
    tenant_id       uuid NOT NULL,
    incident_id     uuid NOT NULL,
    service_id      uuid,
    title           text NOT NULL,
    status          text NOT NULL,
    severity        text NOT NULL,
    category        text NOT NULL,
    group_key       text,
    impact_start    timestamptz NOT NULL,
    impact_end      timestamptz,
    opened_at       timestamptz NOT NULL,
    acknowledged_at timestamptz,
    resolved_at     timestamptz,
    closed_at       timestamptz,
    alert_count     integer NOT NULL,
    triage          text,
    version         bigint NOT NULL,
    -- The folded incident, so each event updates it through the domain's evolve.
    state           jsonb NOT NULL,
    PRIMARY KEY (tenant_id, incident_id)
);
CREATE INDEX proj_incidents_service ON proj_incidents (tenant_id, service_id);
CREATE INDEX proj_incidents_open ON proj_incidents (tenant_id, status);

CREATE TABLE proj_alerts (
    tenant_id       uuid NOT NULL,
    alert_id        uuid NOT NULL,
    dedup_key       text NOT NULL,
    group_key       text NOT NULL,
    source          text NOT NULL,
    service_id      uuid,
    service_ref     text,
    summary         text NOT NULL,
    severity        text NOT NULL,
    category        text NOT NULL,
    labels          jsonb NOT NULL,
    firing          boolean NOT NULL,
    receipts        bigint NOT NULL,
    starts_at       timestamptz NOT NULL,
    ends_at         timestamptz,
    first_seen      timestamptz NOT NULL,
    last_seen       timestamptz NOT NULL,
    resolved_at     timestamptz,
    resolved_by     text,
    incident_id     uuid,
    decision        jsonb NOT NULL,
    PRIMARY KEY (tenant_id, alert_id)
);
CREATE INDEX proj_alerts_firing_group ON proj_alerts (tenant_id, source, group_key) WHERE firing;
CREATE INDEX proj_alerts_firing_ends ON proj_alerts (ends_at) WHERE firing;

GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON proj_incidents, proj_alerts TO opsledger_app;
