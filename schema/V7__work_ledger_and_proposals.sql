-- Maintenance work that keeps failures from coming back, and the work
-- ledger (SPEC §5 proposals and recurrence, §6 work ledger). Read models,
-- rebuilt from the events by `opsledger rebuild`; never a source of truth.

-- Improvement proposals; `state` is the folded proposal.
CREATE TABLE proj_proposals (
    tenant_id    uuid NOT NULL,
    proposal_id  uuid NOT NULL,
    status       text NOT NULL,
    incident_id  uuid,
    change_id    uuid,
    service_ids  uuid[] NOT NULL,
    raised_at    timestamptz NOT NULL,
    version      bigint NOT NULL,
    state        jsonb NOT NULL,
    PRIMARY KEY (tenant_id, proposal_id)
);
CREATE INDEX proj_proposals_incident ON proj_proposals (tenant_id, incident_id);
CREATE INDEX proj_proposals_change ON proj_proposals (tenant_id, change_id);

-- The work ledger: one row per fact a person recorded, in its work class,
-- with the team of the one who did it (by role), the services it concerns
-- and the minutes spent where recorded.
CREATE TABLE proj_work (
    position      bigint PRIMARY KEY,
    tenant_id     uuid NOT NULL,
    event_id      uuid NOT NULL,
    event_type    text NOT NULL,
    work_class    text NOT NULL,
    team          text NOT NULL,
    actor         text NOT NULL,
    stream_id     text NOT NULL,
    service_ids   uuid[] NOT NULL,
    occurred_at   timestamptz NOT NULL,
    minutes_spent integer
);
CREATE INDEX proj_work_period ON proj_work (tenant_id, occurred_at);
CREATE INDEX proj_work_services ON proj_work USING gin (service_ids);

-- The services each stream concerns, as its earlier events named them, so
-- later events of the stream (which do not repeat them) count for them too.
CREATE TABLE proj_stream_services (
    tenant_id   uuid NOT NULL,
    stream_id   text NOT NULL,
    service_ids uuid[] NOT NULL,
    PRIMARY KEY (tenant_id, stream_id)
);

-- What fixed each incident: fix actions on it, and changes naming it in
-- `fixes` once they completed. Recurrence detection asks it.
CREATE TABLE proj_fixes (
    tenant_id   uuid NOT NULL,
    incident_id uuid NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('action', 'change')),
    ref_id      uuid NOT NULL,
    fixed_at    timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, incident_id, ref_id)
);
-- Changes' links to incidents, kept until (and after) the change completes.
CREATE TABLE proj_change_links (
    tenant_id    uuid NOT NULL,
    change_id    uuid NOT NULL,
    incident_id  uuid NOT NULL,
    relation     text NOT NULL CHECK (relation IN ('fixes', 'caused_by')),
    PRIMARY KEY (tenant_id, change_id, incident_id, relation)
);
CREATE TABLE proj_changes_completed (
    tenant_id    uuid NOT NULL,
    change_id    uuid NOT NULL,
    completed_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, change_id)
);

GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON proj_proposals, proj_work, proj_stream_services,
    proj_fixes, proj_change_links, proj_changes_completed TO opsledger_app;
