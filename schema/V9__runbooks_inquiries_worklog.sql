-- Runbooks, the operations work log and client inquiries (issue 5, slice B).
-- Read models, rebuilt from the events by `opsledger rebuild`; never a
-- source of truth. A single execution is read from its own stream; the list
-- of executions comes from proj_executions.

-- One row per routine task (`task-`) or backup (`backup-`), newest first by id.
CREATE TABLE proj_worklog (
    tenant_id     uuid NOT NULL,
    entry_id      uuid NOT NULL,
    entry_type    text NOT NULL,          -- routine_task | backup
    kind          text NOT NULL,          -- a task kind, or 'backup'
    service_id    uuid NOT NULL,
    summary       text NOT NULL,
    minutes_spent integer,
    performed_at  timestamptz NOT NULL,
    performed_by  text NOT NULL,
    recorded_at   timestamptz NOT NULL,
    backup_status text,                   -- backups only: by the latest verification
    version       bigint NOT NULL,
    -- The folded backup, so a verification updates it through the domain's evolve.
    state         jsonb NOT NULL,
    PRIMARY KEY (tenant_id, entry_id)
);
CREATE INDEX proj_worklog_service ON proj_worklog (tenant_id, service_id, entry_id);
CREATE INDEX proj_worklog_performed ON proj_worklog (tenant_id, performed_at);

-- One row per runbook, at its latest version.
CREATE TABLE proj_runbooks (
    tenant_id    uuid NOT NULL,
    runbook_id   uuid NOT NULL,
    title        text NOT NULL,
    service_id   uuid,
    version      bigint NOT NULL,
    step_count   integer NOT NULL,
    published_at timestamptz NOT NULL,
    published_by text NOT NULL,
    PRIMARY KEY (tenant_id, runbook_id)
);
CREATE INDEX proj_runbooks_service ON proj_runbooks (tenant_id, service_id);

-- One row per runbook execution, for finding them (in progress, of an incident).
CREATE TABLE proj_executions (
    tenant_id       uuid NOT NULL,
    execution_id    uuid NOT NULL,
    runbook_id      uuid NOT NULL,
    runbook_version bigint NOT NULL,
    title           text NOT NULL,
    service_id      uuid,
    incident_id     uuid,
    status          text NOT NULL,
    started_at      timestamptz NOT NULL,
    version         bigint NOT NULL,
    -- The folded execution, so each event updates it through the domain's evolve.
    state           jsonb NOT NULL,
    PRIMARY KEY (tenant_id, execution_id)
);
CREATE INDEX proj_executions_runbook ON proj_executions (tenant_id, runbook_id, execution_id);
CREATE INDEX proj_executions_incident ON proj_executions (tenant_id, incident_id) WHERE incident_id IS NOT NULL;

-- One row per inquiry; `team` is the queue it waits in (NULL once closed).
CREATE TABLE proj_inquiries (
    tenant_id   uuid NOT NULL,
    inquiry_id  uuid NOT NULL,
    service_id  uuid NOT NULL,
    client_id   uuid NOT NULL,
    kind        text NOT NULL,
    subject     text NOT NULL,
    status      text NOT NULL,
    team        text,
    opened_at   timestamptz NOT NULL,
    version     bigint NOT NULL,
    state       jsonb NOT NULL,
    PRIMARY KEY (tenant_id, inquiry_id)
);
CREATE INDEX proj_inquiries_queue ON proj_inquiries (tenant_id, team, opened_at) WHERE team IS NOT NULL;
CREATE INDEX proj_inquiries_client ON proj_inquiries (tenant_id, client_id, inquiry_id);

GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON proj_worklog, proj_runbooks, proj_executions,
    proj_inquiries
    TO opsledger_app;
