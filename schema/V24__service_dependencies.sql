-- Service dependencies (issue 18): which services each service depends on,
-- its parents, from `ServiceDependenciesSet` (the directory projection).
-- Ingestion walks a service's ancestors here (a recursive query, joined
-- with `proj_probes` for those with a probe down); the index on the parent
-- finds a service's children. Never a source of truth: the cycle check
-- reads the `dependency-graph` stream itself.
CREATE TABLE proj_service_dependencies (
    tenant_id   uuid NOT NULL,
    service_id  uuid NOT NULL,
    parent_id   uuid NOT NULL,
    PRIMARY KEY (tenant_id, service_id, parent_id)
);
CREATE INDEX proj_service_dependencies_parent
    ON proj_service_dependencies (tenant_id, parent_id);

GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON proj_service_dependencies TO opsledger_app;
