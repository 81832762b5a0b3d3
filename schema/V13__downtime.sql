-- The downtime read model (SPEC §6): each incident's impact as the domain
-- folds it (`history`: periods and level changes), the events that shaped
-- it (for drill-down and restatements), and its segments of one level
-- each, which the downtime report sweeps per service.
CREATE TABLE proj_impacts (
    tenant_id   uuid NOT NULL,
    incident_id uuid NOT NULL,
    service_id  uuid,
    history     jsonb NOT NULL,
    -- [{position, type, recorded_at}] of every event that shaped the impact.
    events      jsonb NOT NULL,
    PRIMARY KEY (tenant_id, incident_id)
);

CREATE TABLE proj_impact_segments (
    tenant_id   uuid NOT NULL,
    incident_id uuid NOT NULL,
    seq         integer NOT NULL,
    service_id  uuid NOT NULL,
    level       text NOT NULL CHECK (level IN ('outage', 'partial', 'degraded')),
    start_at    timestamptz NOT NULL,
    -- NULL while the impact lasts.
    end_at      timestamptz,
    PRIMARY KEY (tenant_id, incident_id, seq)
);
-- A report asks for a service's segments that overlap a period.
CREATE INDEX proj_impact_segments_by_service
    ON proj_impact_segments (tenant_id, service_id, start_at);

GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON proj_impacts, proj_impact_segments
    TO opsledger_app;
