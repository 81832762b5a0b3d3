-- Read models of the directory (tenants, clients, services). Rebuilt from the
-- events by `opsledger rebuild`; never a source of truth.

CREATE TABLE proj_tenants (
    tenant_id       uuid PRIMARY KEY,
    name            text NOT NULL,
    registered_at   timestamptz NOT NULL
);

CREATE TABLE proj_clients (
    tenant_id       uuid NOT NULL,
    client_id       uuid NOT NULL,
    name            text NOT NULL,
    locale          text NOT NULL,
    contacts        jsonb NOT NULL,
    version         bigint NOT NULL,
    registered_at   timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, client_id)
);

CREATE TABLE proj_services (
    tenant_id       uuid NOT NULL,
    service_id      uuid NOT NULL,
    client_id       uuid NOT NULL,
    name            text NOT NULL,
    components      jsonb NOT NULL,
    sla_target_pct  numeric(6, 3) NOT NULL,
    notice_period_h integer NOT NULL,
    version         bigint NOT NULL,
    registered_at   timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, service_id)
);
CREATE INDEX proj_services_client ON proj_services (tenant_id, client_id);

GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON proj_tenants, proj_clients, proj_services TO opsledger_app;
