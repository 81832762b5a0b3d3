-- Escalation, queues, responders, subscriptions and the notification outbox
-- (SPEC §5, §9). Read models, rebuilt from the events by `opsledger rebuild`;
-- the `lease_until` column of proj_notifications is the senders' only state
-- of their own, and losing it only makes a send be tried again.

ALTER TABLE proj_incidents
    ADD COLUMN team text NOT NULL DEFAULT 'operations',
    ADD COLUMN assignee text,
    ADD COLUMN escalation_level integer NOT NULL DEFAULT 0,
    ADD COLUMN next_escalation_at timestamptz;
CREATE INDEX proj_incidents_queue ON proj_incidents (tenant_id, team, opened_at)
    WHERE status IN ('triggered', 'acknowledged', 'mitigated');

-- The escalation step each unacknowledged incident waits for: the durable
-- timers the escalation worker fires (FOR UPDATE SKIP LOCKED).
CREATE TABLE escalation_timers (
    tenant_id   uuid NOT NULL,
    incident_id uuid NOT NULL,
    level       integer NOT NULL,
    round       integer NOT NULL,
    due_at      timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, incident_id)
);
CREATE INDEX escalation_timers_due ON escalation_timers (due_at);

CREATE TABLE proj_users (
    tenant_id     uuid NOT NULL,
    user_id       uuid NOT NULL,
    name          text NOT NULL,
    email         text NOT NULL,
    locale        text NOT NULL,
    registered_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, user_id)
);

CREATE TABLE proj_policies (
    tenant_id   uuid NOT NULL,
    policy_id   uuid NOT NULL,
    name        text NOT NULL,
    definition  jsonb NOT NULL,
    service_ids uuid[] NOT NULL,
    version     bigint NOT NULL,
    defined_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, policy_id)
);
CREATE INDEX proj_policies_services ON proj_policies USING gin (service_ids);

CREATE TABLE proj_schedules (
    tenant_id   uuid NOT NULL,
    schedule_id uuid NOT NULL,
    name        text NOT NULL,
    definition  jsonb NOT NULL,
    version     bigint NOT NULL,
    PRIMARY KEY (tenant_id, schedule_id)
);

CREATE TABLE proj_subscriptions (
    tenant_id       uuid NOT NULL,
    subscription_id uuid NOT NULL,
    client_id       uuid NOT NULL,
    service_id      uuid NOT NULL,
    name            text NOT NULL,
    email           text NOT NULL,
    locale          text NOT NULL,
    kinds           text[] NOT NULL,
    min_severity    text NOT NULL,
    active          boolean NOT NULL,
    created_at      timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, subscription_id)
);
CREATE INDEX proj_subscriptions_service ON proj_subscriptions (tenant_id, service_id) WHERE active;

CREATE TABLE proj_notifications (
    tenant_id       uuid NOT NULL,
    notification_id uuid NOT NULL,
    kind            text NOT NULL,
    incident_id     uuid,
    cause_event_id  uuid NOT NULL,
    recipient       jsonb NOT NULL,
    email           text NOT NULL,
    subject         text NOT NULL,
    sha256          text NOT NULL,
    status          text NOT NULL,
    attempts        integer NOT NULL,
    next_attempt_at timestamptz NOT NULL,
    requested_at    timestamptz NOT NULL,
    sent_at         timestamptz,
    last_error      text,
    version         bigint NOT NULL,
    lease_until     timestamptz,
    PRIMARY KEY (tenant_id, notification_id)
);
CREATE INDEX proj_notifications_due ON proj_notifications (next_attempt_at)
    WHERE status IN ('requested', 'failed');
CREATE INDEX proj_notifications_incident ON proj_notifications (tenant_id, incident_id);

GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON escalation_timers, proj_users, proj_policies,
    proj_schedules, proj_subscriptions, proj_notifications TO opsledger_app;
