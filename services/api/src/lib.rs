//! The HTTP surface of opsledger (SPEC §7).
//!
//! Owns: actix-web handlers, request and response types, authentication and
//! role checks, problem+json errors, and the route table that the OpenAPI test
//! compares with `openapi/openapi.json`.
//!
//! Must never import: SQL or SMTP. Handlers parse input into domain values,
//! ask the domain to decide, append through the store, and map the outcome.

pub mod aggregate;
pub mod audit;
pub mod auth;
pub mod changes;
pub mod common;
pub mod contract;
pub mod directory;
pub mod escalation;
pub mod extract;
pub mod feed;
pub mod idempotency;
pub mod incidents;
pub mod input;
pub mod inquiries;
pub mod integrations;
pub mod problem;
pub mod proposals;
pub mod reports;
pub mod roster;
pub mod runbooks;
pub mod system;
pub mod tenants;
pub mod windows;
pub mod wire;
pub mod work;
pub mod worklog;

use actix_web::http::Method;
use actix_web::{error, web, HttpRequest, HttpResponse, Route};
use opsledger_store::projection::SharedProjection;
use opsledger_store::{Committer, Pool};

use crate::contract::Endpoint;
use crate::problem::ApiError;
use opsledger_domain::access::Role;

/// Request bodies larger than this are refused with 413 before they are
/// parsed: the largest real Alertmanager group we expect is well under it.
pub const BODY_LEN_MAX_BYTES: usize = 1 << 20;
/// Items per page of a list when the client does not say.
pub const PAGE_LEN_DEFAULT: u32 = 50;
/// Items per page at most: bounds the work one request can ask for.
pub const PAGE_LEN_MAX: u32 = 200;

/// Everything a handler may use. Shared by all workers.
pub struct AppState {
    pub pool: Pool,
    pub committer: Committer,
    pub auth: auth::AuthConfig,
    pub tenants: tenants::TenantDirectory,
    pub projections: Vec<SharedProjection>,
    /// What ingestion last knew of alert and group streams; see `ingest`.
    pub ingest_cache: opsledger_app::ingest::IngestCache,
    /// A projection whose oldest unapplied event is older than this is
    /// reported stalled by `/readyz` and `/metrics`.
    pub projection_stall_after: std::time::Duration,
    /// The transparency log's signing key, when one is configured.
    pub audit_key: Option<std::sync::Arc<opsledger_store::audit::LogKey>>,
    /// How long the event stream stays silent before a heartbeat comment.
    pub feed_heartbeat: std::time::Duration,
    /// How often the event stream looks for new events once caught up.
    pub feed_poll: std::time::Duration,
}

impl AppState {
    /// The store, as the command path sees it.
    pub fn ledger(&self) -> opsledger_app::Ledger<'_> {
        opsledger_app::Ledger {
            pool: &self.pool,
            committer: &self.committer,
        }
    }

    /// The store and what this process last knew of alerts and groups.
    pub fn ingestion(&self) -> opsledger_app::ingest::Ingest<'_> {
        opsledger_app::ingest::Ingest {
            ledger: self.ledger(),
            cache: &self.ingest_cache,
        }
    }
}

/// Every route the server exposes: (method, path, handler). `configure`
/// registers exactly these, and the OpenAPI test compares them with the
/// document, so neither can drift from the other.
pub fn table() -> Vec<Endpoint> {
    vec![
        // Ingestion first: actix tries routes in order, and these carry the
        // most requests by far.
        Endpoint::new(Method::POST, "/api/v1/alerts", web::post().to(integrations::alert_post))
            .op("alert_post", "alerts", "Send an alert", "Records one alert in plain JSON and decides what becomes of it: a first firing alert of a known service opens an incident (or joins the open incident of its group), a repeat is counted, a resolution ends the firing cycle. Retrying is safe: the dedup key makes a repeat a repeat.\n\nRoles: integration, operator, maintainer, admin.")
            .roles(&[Role::Integration, Role::Operator, Role::Maintainer, Role::Admin])
            .body::<integrations::PlainAlert>(true)
            .answers::<opsledger_app::ingest::Ingested>(202, "The alert is recorded; what became of it.", &[])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (409, "IngestConflict"), (413, "IngestTooLarge"), (415, "UnsupportedMediaType"), (422, "AlertUnprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::POST, "/api/v1/integrations/alertmanager", web::post().to(integrations::alertmanager_post))
            .op("alertmanager_post", "integrations", "Alertmanager webhook", "Receives a Prometheus Alertmanager (version 4) webhook notification: each alert is recorded and decided as a plain alert would be (dedup key: the `fingerprint`; group: `groupKey`; service: the `service` label). Unless the notification was truncated, firing alerts of this group that it no longer carries are expired.\n\nRoles: integration, operator, maintainer, admin.")
            .roles(&[Role::Integration, Role::Operator, Role::Maintainer, Role::Admin])
            .body::<integrations::GroupNotification>(true)
            .answers::<integrations::GroupResult>(200, "Every alert is recorded; what became of each.", &[])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (409, "IngestConflict"), (413, "IngestTooLarge"), (415, "UnsupportedMediaType"), (422, "AlertUnprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::POST, "/api/v1/integrations/pagerduty", web::post().to(integrations::pagerduty_post))
            .op("pagerduty_post", "integrations", "PagerDuty Events API v2", "Receives an event in the shape of PagerDuty's Events API v2 and answers as PagerDuty does, so senders need no change. `trigger` records a firing alert, `resolve` resolves it, `acknowledge` acknowledges its incident.\n\nRoles: integration, operator, maintainer, admin.")
            .roles(&[Role::Integration, Role::Operator, Role::Maintainer, Role::Admin])
            .body::<integrations::PagerDutyEvent>(true)
            .answers::<integrations::PagerDutyAccepted>(202, "The event is processed.", &[])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (409, "IngestConflict"), (413, "IngestTooLarge"), (415, "UnsupportedMediaType"), (422, "AlertUnprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::POST, "/api/v1/integrations/grafana", web::post().to(integrations::grafana_post))
            .op("grafana_post", "integrations", "Grafana alerting webhook", "Receives a Grafana alerting webhook notification: each alert is recorded and decided as a plain alert would be (dedup key: the `fingerprint`; group: `groupKey`; service: the `service` label). Unless the notification was truncated, firing alerts of this group that it no longer carries are expired.\n\nRoles: integration, operator, maintainer, admin.")
            .roles(&[Role::Integration, Role::Operator, Role::Maintainer, Role::Admin])
            .body::<integrations::GroupNotification>(true)
            .answers::<integrations::GroupResult>(200, "Every alert is recorded; what became of each.", &[])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (409, "IngestConflict"), (413, "IngestTooLarge"), (415, "UnsupportedMediaType"), (422, "AlertUnprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::GET, "/healthz", web::get().to(system::healthz))
            .op("healthz", "system", "Liveness", "The process answers. Does not touch the database.")
            .answers::<system::Health>(200, "Alive.", &[])
            .fails(&[(400, "BadRequest"), (413, "PayloadTooLarge"), (422, "Unprocessable")]),
        Endpoint::new(Method::GET, "/readyz", web::get().to(system::readyz))
            .op("readyz", "system", "Readiness", "The database answers and the schema is migrated. `status` is `degraded`, still with 200, when a projection has stalled or fails on an event: the body names the event and the error.")
            .answers::<system::Ready>(200, "Ready.", &[])
            .fails(&[(400, "BadRequest"), (413, "PayloadTooLarge"), (422, "Unprocessable"), (503, "Unavailable")]),
        Endpoint::new(Method::GET, "/metrics", web::get().to(system::metrics))
            .op("metrics", "system", "Prometheus metrics", "Projection lag and connection-pool gauges in the Prometheus text exposition format 0.0.4 (`text/plain; version=0.0.4; charset=utf-8`).")
            .answers_text(200, "text/plain", "The metrics.", &[])
            .fails(&[(400, "BadRequest"), (413, "PayloadTooLarge"), (422, "Unprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::GET, "/openapi.json", web::get().to(system::openapi))
            .op("openapi", "system", "This document", "")
            .answers_object(200, "The OpenAPI document.", &[])
            .fails(&[(400, "BadRequest"), (413, "PayloadTooLarge"), (422, "Unprocessable")]),
        Endpoint::new(Method::GET, "/api/v1/clients", web::get().to(directory::client_list))
            .op("client_list", "directory", "List clients", "A page of the tenant's clients. Ordered by id (UUIDv7, so registration order). Served from the directory read model, which may briefly lag a registration. Unknown query parameters are 400.\n\nRoles: operator, maintainer, approver, auditor, admin, client. A client user sees only its own client's data.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Approver, Role::Auditor, Role::Admin, Role::Client])
            .query::<directory::ListQuery>()
            .answers::<common::Page<opsledger_store::directory::ClientRow>>(200, "A page of clients.", &[])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (413, "PayloadTooLarge"), (422, "Unprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::POST, "/api/v1/clients", web::post().to(directory::client_register))
            .op("client_register", "directory", "Register a client", "Registers a client of the tenant. The name is unique in the tenant, ignoring case. Contacts without a locale take the client's.\n\nRoles: admin.")
            .roles(&[Role::Admin])
            .params(&["IdempotencyKey"])
            .body::<directory::RegisterClientBody>(true)
            .answers::<aggregate::Versioned<opsledger_domain::directory::Client>>(201, "The client is registered (or, with a known `Idempotency-Key`, the first response is replayed).", &["Location", "ETag=ETagCreated", "Idempotent-Replayed"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (409, "Conflict"), (413, "PayloadTooLarge"), (415, "UnsupportedMediaType"), (422, "Unprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::GET, "/api/v1/clients/{id}", web::get().to(directory::client_get))
            .op("client_get", "directory", "Get a client", "One client, read from its event stream (never behind), optionally as it stood at `as_of`. Unknown query parameters are 400.\n\nRoles: operator, maintainer, approver, auditor, admin, client. A client user sees only its own client's data.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Approver, Role::Auditor, Role::Admin, Role::Client])
            .params(&["Id"])
            .query::<common::AsOfQuery>()
            .answers::<aggregate::Versioned<opsledger_domain::directory::Client>>(200, "The client.", &["ETag"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (413, "PayloadTooLarge"), (422, "Unprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::GET, "/api/v1/services", web::get().to(directory::service_list))
            .op("service_list", "directory", "List services", "A page of the tenant's services. Ordered by id (UUIDv7, so registration order). Served from the directory read model, which may briefly lag a registration. Unknown query parameters are 400.\n\nRoles: operator, maintainer, approver, auditor, admin, client. A client user sees only its own client's data.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Approver, Role::Auditor, Role::Admin, Role::Client])
            .query::<directory::ListQuery>()
            .answers::<common::Page<opsledger_store::directory::ServiceRow>>(200, "A page of services.", &[])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (413, "PayloadTooLarge"), (422, "Unprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::POST, "/api/v1/services", web::post().to(directory::service_register))
            .op("service_register", "directory", "Register a service", "Registers a service run for a registered client of the tenant. The name is unique in the tenant, ignoring case.\n\nRoles: admin.")
            .roles(&[Role::Admin])
            .params(&["IdempotencyKey"])
            .body::<directory::RegisterServiceBody>(true)
            .answers::<aggregate::Versioned<opsledger_domain::directory::Service>>(201, "The service is registered (or, with a known `Idempotency-Key`, the first response is replayed).", &["Location", "ETag=ETagCreated", "Idempotent-Replayed"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (409, "Conflict"), (413, "PayloadTooLarge"), (415, "UnsupportedMediaType"), (422, "Unprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::GET, "/api/v1/services/{id}", web::get().to(directory::service_get))
            .op("service_get", "directory", "Get a service", "One service, read from its event stream (never behind), optionally as it stood at `as_of`. Unknown query parameters are 400.\n\nRoles: operator, maintainer, approver, auditor, admin, client. A client user sees only its own client's data.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Approver, Role::Auditor, Role::Admin, Role::Client])
            .params(&["Id"])
            .query::<common::AsOfQuery>()
            .answers::<aggregate::Versioned<opsledger_domain::directory::Service>>(200, "The service.", &["ETag"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (413, "PayloadTooLarge"), (422, "Unprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::GET, "/api/v1/alerts", web::get().to(incidents::alert_list))
            .op("alert_list", "alerts", "List alerts", "A page of alert firing cycles, newest first. Served from the alerts read model, which may briefly lag a receipt. Unknown query parameters are 400.\n\nRoles: operator, maintainer, approver, auditor, admin, client. A client user sees only the alerts of its own client's services.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Approver, Role::Auditor, Role::Admin, Role::Client])
            .query::<incidents::AlertListQuery>()
            .answers::<common::Page<opsledger_store::incidents::AlertRow>>(200, "A page of alerts.", &[])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (413, "PayloadTooLarge"), (422, "Unprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::GET, "/api/v1/alerts/{id}", web::get().to(incidents::alert_get))
            .op("alert_get", "alerts", "Get an alert", "One alert firing cycle, from the alerts read model (which may briefly lag a receipt).\n\nRoles: operator, maintainer, approver, auditor, admin, client. A client user sees only the alerts of its own client's services.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Approver, Role::Auditor, Role::Admin, Role::Client])
            .params(&["Id"])
            .answers::<opsledger_store::incidents::AlertRow>(200, "The alert.", &[])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (413, "PayloadTooLarge"), (422, "Unprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::GET, "/api/v1/incidents", web::get().to(incidents::incident_list))
            .op("incident_list", "incidents", "List incidents", "A page of incidents, newest first. Served from the incidents read model, which may briefly lag a change. Unknown query parameters are 400.\n\nRoles: operator, maintainer, approver, auditor, admin, client. A client user sees only the incidents of its own client's services. A client user who names another client gets an empty page.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Approver, Role::Auditor, Role::Admin, Role::Client])
            .query::<incidents::IncidentListQuery>()
            .answers::<common::Page<opsledger_store::incidents::IncidentRow>>(200, "A page of incidents.", &[])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (413, "PayloadTooLarge"), (422, "Unprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::POST, "/api/v1/incidents", web::post().to(incidents::incident_open))
            .op("incident_open", "incidents", "Open an incident", "Opens an incident by hand, for trouble no alert reported.\n\nRoles: operator, maintainer, admin.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Admin])
            .params(&["IdempotencyKey"])
            .body::<incidents::OpenBody>(true)
            .answers::<opsledger_app::incidents::IncidentView>(201, "The incident is open, triggered (or, with a known `Idempotency-Key`, the first response is replayed).", &["Location", "ETag=ETagCreated", "Idempotent-Replayed"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (409, "Conflict"), (413, "PayloadTooLarge"), (415, "UnsupportedMediaType"), (422, "OpenUnprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::GET, "/api/v1/incidents/{id}", web::get().to(incidents::incident_get))
            .op("incident_get", "incidents", "Get an incident", "One incident, read from its event stream (never behind), optionally as it stood at `as_of`. Unknown query parameters are 400.\n\nRoles: operator, maintainer, approver, auditor, admin, client. A client user sees only the incidents of its own client's services.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Approver, Role::Auditor, Role::Admin, Role::Client])
            .params(&["Id"])
            .query::<common::AsOfQuery>()
            .answers::<opsledger_app::incidents::IncidentView>(200, "The incident.", &["ETag"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (413, "PayloadTooLarge"), (422, "Unprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::GET, "/api/v1/incidents/{id}/timeline", web::get().to(incidents::incident_timeline))
            .op("incident_timeline", "incidents", "An incident's timeline", "Every event of the incident and the receipts of its attached alerts, oldest first, read from the event streams.\n\nRoles: operator, maintainer, approver, auditor, admin, client. A client user sees only the incidents of its own client's services. Internal notes are left out for client users.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Approver, Role::Auditor, Role::Admin, Role::Client])
            .params(&["Id"])
            .answers::<common::Items<incidents::TimelineEntry>>(200, "The timeline.", &[])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (413, "PayloadTooLarge"), (422, "Unprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::POST, "/api/v1/incidents/{id}/acknowledge", web::post().to(incidents::incident_acknowledge))
            .op("incident_acknowledge", "incidents", "Acknowledge", "Someone is on it: triggered → acknowledged. Send `If-Match` with the version the decision was based on to refuse the command if the incident changed meanwhile.\n\nRoles: operator, maintainer, admin.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Admin])
            .params(&["Id", "IfMatch", "IdempotencyKey"])
            .answers::<opsledger_app::incidents::IncidentView>(200, "The incident after the command (or, with a known `Idempotency-Key`, the first response is replayed).", &["ETag", "Idempotent-Replayed"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (409, "LifecycleConflict"), (412, "PreconditionFailed"), (413, "PayloadTooLarge"), (422, "IncidentUnprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::POST, "/api/v1/incidents/{id}/notes", web::post().to(incidents::incident_command::<incidents::NoteBody>))
            .op("incident_note", "incidents", "Add a note", "Adds a note, internal or shown to the client. Any status but closed. Send `If-Match` with the version the decision was based on to refuse the command if the incident changed meanwhile.\n\nRoles: operator, maintainer, admin.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Admin])
            .params(&["Id", "IfMatch", "IdempotencyKey"])
            .body::<incidents::NoteBody>(true)
            .answers::<opsledger_app::incidents::IncidentView>(200, "The incident after the command (or, with a known `Idempotency-Key`, the first response is replayed).", &["ETag", "Idempotent-Replayed"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (409, "LifecycleConflict"), (412, "PreconditionFailed"), (413, "PayloadTooLarge"), (415, "UnsupportedMediaType"), (422, "IncidentUnprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::POST, "/api/v1/incidents/{id}/actions", web::post().to(incidents::incident_command::<incidents::ActionBody>))
            .op("incident_action", "incidents", "Record an action (operations or maintenance)", "Records what was done. `inspection`, `restart` and `runbook_step` are operations work (`ActionRecorded`); `recovery` and `fix` are maintenance work (`MaintenanceActionRecorded`), for maintainers and admins only. Any status but closed. Send `If-Match` with the version the decision was based on to refuse the command if the incident changed meanwhile.\n\nRoles: operator, maintainer, admin (recovery and fix: maintainer, admin).")
            .roles(&[Role::Operator, Role::Maintainer, Role::Admin])
            .params(&["Id", "IfMatch", "IdempotencyKey"])
            .body::<incidents::ActionBody>(true)
            .answers::<opsledger_app::incidents::IncidentView>(200, "The incident after the command (or, with a known `Idempotency-Key`, the first response is replayed).", &["ETag", "Idempotent-Replayed"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (409, "LifecycleConflict"), (412, "PreconditionFailed"), (413, "PayloadTooLarge"), (415, "UnsupportedMediaType"), (422, "IncidentUnprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::POST, "/api/v1/incidents/{id}/findings", web::post().to(incidents::incident_command::<incidents::FindingBody>))
            .op("incident_finding", "incidents", "Record a root-cause finding", "Records a root-cause statement with its evidence (log excerpts, time range, affected components) as `FindingRecorded`, maintenance work. Any status but closed: causes are often found after the service is back. Clients never see findings on the timeline.\n\nRoles: maintainer, admin.")
            .roles(&[Role::Maintainer, Role::Admin])
            .params(&["Id", "IfMatch", "IdempotencyKey"])
            .body::<incidents::FindingBody>(true)
            .answers::<opsledger_app::incidents::IncidentView>(200, "The incident after the command (or, with a known `Idempotency-Key`, the first response is replayed).", &["ETag", "Idempotent-Replayed"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (409, "LifecycleConflict"), (412, "PreconditionFailed"), (413, "PayloadTooLarge"), (415, "UnsupportedMediaType"), (422, "IncidentUnprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::POST, "/api/v1/incidents/{id}/mitigate", web::post().to(incidents::incident_mitigate))
            .op("incident_mitigate", "incidents", "Mitigate", "The impact has ended: triggered or acknowledged → mitigated, with the impact end. The body is optional. Send `If-Match` with the version the decision was based on to refuse the command if the incident changed meanwhile.\n\nRoles: operator, maintainer, admin.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Admin])
            .params(&["Id", "IfMatch", "IdempotencyKey"])
            .body::<incidents::MitigateBody>(false)
            .answers::<opsledger_app::incidents::IncidentView>(200, "The incident after the command (or, with a known `Idempotency-Key`, the first response is replayed).", &["ETag", "Idempotent-Replayed"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (409, "LifecycleConflict"), (412, "PreconditionFailed"), (413, "PayloadTooLarge"), (415, "UnsupportedMediaType"), (422, "IncidentUnprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::POST, "/api/v1/incidents/{id}/resolve", web::post().to(incidents::incident_resolve))
            .op("incident_resolve", "incidents", "Resolve", "The cause is dealt with: triggered, acknowledged or mitigated → resolved. Frees the alert group: its next alert opens a new incident. Send `If-Match` with the version the decision was based on to refuse the command if the incident changed meanwhile.\n\nRoles: operator, maintainer, admin.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Admin])
            .params(&["Id", "IfMatch", "IdempotencyKey"])
            .answers::<opsledger_app::incidents::IncidentView>(200, "The incident after the command (or, with a known `Idempotency-Key`, the first response is replayed).", &["ETag", "Idempotent-Replayed"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (409, "LifecycleConflict"), (412, "PreconditionFailed"), (413, "PayloadTooLarge"), (422, "IncidentUnprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::POST, "/api/v1/incidents/{id}/reopen", web::post().to(incidents::incident_command::<incidents::ReopenBody>))
            .op("incident_reopen", "incidents", "Reopen", "It came back: resolved → triggered, clearing the impact end. Send `If-Match` with the version the decision was based on to refuse the command if the incident changed meanwhile.\n\nRoles: operator, maintainer, admin.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Admin])
            .params(&["Id", "IfMatch", "IdempotencyKey"])
            .body::<incidents::ReopenBody>(true)
            .answers::<opsledger_app::incidents::IncidentView>(200, "The incident after the command (or, with a known `Idempotency-Key`, the first response is replayed).", &["ETag", "Idempotent-Replayed"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (409, "LifecycleConflict"), (412, "PreconditionFailed"), (413, "PayloadTooLarge"), (415, "UnsupportedMediaType"), (422, "IncidentUnprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::POST, "/api/v1/incidents/{id}/close", web::post().to(incidents::incident_close))
            .op("incident_close", "incidents", "Close", "resolved → closed. A closed incident takes no notes, actions or severity changes. Send `If-Match` with the version the decision was based on to refuse the command if the incident changed meanwhile.\n\nRoles: operator, maintainer, admin.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Admin])
            .params(&["Id", "IfMatch", "IdempotencyKey"])
            .answers::<opsledger_app::incidents::IncidentView>(200, "The incident after the command (or, with a known `Idempotency-Key`, the first response is replayed).", &["ETag", "Idempotent-Replayed"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (409, "LifecycleConflict"), (412, "PreconditionFailed"), (413, "PayloadTooLarge"), (422, "IncidentUnprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::POST, "/api/v1/incidents/{id}/severity", web::post().to(incidents::incident_command::<incidents::SeverityBody>))
            .op("incident_severity", "incidents", "Change the severity", "Any status but closed. Send `If-Match` with the version the decision was based on to refuse the command if the incident changed meanwhile.\n\nRoles: operator, maintainer, admin.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Admin])
            .params(&["Id", "IfMatch", "IdempotencyKey"])
            .body::<incidents::SeverityBody>(true)
            .answers::<opsledger_app::incidents::IncidentView>(200, "The incident after the command (or, with a known `Idempotency-Key`, the first response is replayed).", &["ETag", "Idempotent-Replayed"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (409, "LifecycleConflict"), (412, "PreconditionFailed"), (413, "PayloadTooLarge"), (415, "UnsupportedMediaType"), (422, "IncidentUnprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::POST, "/api/v1/incidents/{id}/impact", web::post().to(incidents::incident_command::<incidents::ImpactBody>))
            .op("incident_impact", "incidents", "Correct the impact", "Corrects the impact period, with a reason. Any status. Send `If-Match` with the version the decision was based on to refuse the command if the incident changed meanwhile.\n\nRoles: operator, maintainer, admin.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Admin])
            .params(&["Id", "IfMatch", "IdempotencyKey"])
            .body::<incidents::ImpactBody>(true)
            .answers::<opsledger_app::incidents::IncidentView>(200, "The incident after the command (or, with a known `Idempotency-Key`, the first response is replayed).", &["ETag", "Idempotent-Replayed"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (409, "LifecycleConflict"), (412, "PreconditionFailed"), (413, "PayloadTooLarge"), (415, "UnsupportedMediaType"), (422, "IncidentUnprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::POST, "/api/v1/incidents/{id}/impact-level", web::post().to(incidents::incident_command::<incidents::ImpactLevelBody>))
            .op("incident_impact_level", "incidents", "Set the impact level", "The impact is at `level` from `at` on (now if absent): an `ImpactLevelChanged` event. Any status: a level recorded after the incident was resolved or closed, dated in the past, corrects the downtime it counts (reports list it as a restatement). The same level as the one in effect now is 422. Send `If-Match` with the version the decision was based on to refuse the command if the incident changed meanwhile.\n\nRoles: operator, maintainer, admin.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Admin])
            .params(&["Id", "IfMatch", "IdempotencyKey"])
            .body::<incidents::ImpactLevelBody>(true)
            .answers::<opsledger_app::incidents::IncidentView>(200, "The incident after the command (or, with a known `Idempotency-Key`, the first response is replayed).", &["ETag", "Idempotent-Replayed"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (409, "LifecycleConflict"), (412, "PreconditionFailed"), (413, "PayloadTooLarge"), (415, "UnsupportedMediaType"), (422, "IncidentUnprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::POST, "/api/v1/incidents/{id}/triage", web::post().to(incidents::incident_command::<incidents::TriageBody>))
            .op("incident_triage", "incidents", "Mark the triage outcome", "Marks the incident actionable or noise. Any status. Send `If-Match` with the version the decision was based on to refuse the command if the incident changed meanwhile.\n\nRoles: operator, maintainer, admin.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Admin])
            .params(&["Id", "IfMatch", "IdempotencyKey"])
            .body::<incidents::TriageBody>(true)
            .answers::<opsledger_app::incidents::IncidentView>(200, "The incident after the command (or, with a known `Idempotency-Key`, the first response is replayed).", &["ETag", "Idempotent-Replayed"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (409, "LifecycleConflict"), (412, "PreconditionFailed"), (413, "PayloadTooLarge"), (415, "UnsupportedMediaType"), (422, "IncidentUnprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::GET, "/api/v1/users", web::get().to(roster::user_list))
            .op("user_list", "roster", "List responders", "The tenant's responders, ordered by name: the people escalation policies and schedules name. Served from the roster read model, which may briefly lag a registration. Paged with `after` (the `next_cursor` of the previous page) and `limit`. Unknown query parameters are 400.\n\nRoles: operator, maintainer, approver, auditor, admin.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Approver, Role::Auditor, Role::Admin])
            .query::<roster::RosterPageQuery>()
            .answers::<common::Page<opsledger_store::roster::UserRow>>(200, "The responders.", &[])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (413, "PayloadTooLarge"), (422, "Unprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::POST, "/api/v1/users", web::post().to(roster::user_register))
            .op("user_register", "roster", "Register a responder", "Registers a responder, whom escalation policies and on-call schedules can name and who is told by email in their locale.\n\nRoles: admin.")
            .roles(&[Role::Admin])
            .params(&["IdempotencyKey"])
            .body::<roster::UserBody>(true)
            .answers::<opsledger_domain::roster::User>(201, "The responder is registered (or, with a known `Idempotency-Key`, the first response is replayed). `Location` names `/api/v1/users/{id}`, where it is read.", &["Location", "ETag=ETagCreated", "Idempotent-Replayed"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (413, "PayloadTooLarge"), (415, "UnsupportedMediaType"), (422, "UserUnprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::GET, "/api/v1/users/{id}", web::get().to(roster::user_get))
            .op("user_get", "roster", "Get a responder", "One responder, read from its event stream (never behind), optionally as it stood at `as_of`. Unknown query parameters are 400.\n\nRoles: operator, maintainer, approver, auditor, admin.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Approver, Role::Auditor, Role::Admin])
            .params(&["Id"])
            .query::<common::AsOfQuery>()
            .answers::<opsledger_domain::roster::User>(200, "The responder.", &["ETag"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (413, "PayloadTooLarge"), (422, "Unprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::GET, "/api/v1/escalation-policies", web::get().to(roster::policy_list))
            .op("policy_list", "roster", "List escalation policies", "The tenant's escalation policies, ordered by name. Served from the roster read model, which may briefly lag a definition. Paged with `after` (the `next_cursor` of the previous page) and `limit`. Unknown query parameters are 400.\n\nRoles: operator, maintainer, approver, auditor, admin.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Approver, Role::Auditor, Role::Admin])
            .query::<roster::RosterPageQuery>()
            .answers::<common::Page<opsledger_store::roster::PolicyRow>>(200, "The policies.", &[])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (413, "PayloadTooLarge"), (422, "Unprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::POST, "/api/v1/escalation-policies", web::post().to(roster::policy_define))
            .op("policy_define", "roster", "Define an escalation policy", "Defines a policy for the named services' incidents: level 1 is told when one opens, and while nobody acknowledges, each level is told again `repeat` times and then the next level, each after its `timeout_minutes`. Services, users and schedules must exist.\n\nRoles: admin.")
            .roles(&[Role::Admin])
            .params(&["IdempotencyKey"])
            .body::<roster::PolicyBody>(true)
            .answers::<aggregate::Versioned<opsledger_domain::escalation::DefinedPolicy>>(201, "The policy is defined (or, with a known `Idempotency-Key`, the first response is replayed). `Location` names `/api/v1/escalation-policies/{id}`, where it is read.", &["Location", "ETag=ETagCreated", "Idempotent-Replayed"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (413, "PayloadTooLarge"), (415, "UnsupportedMediaType"), (422, "PolicyUnprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::GET, "/api/v1/escalation-policies/{id}", web::get().to(roster::policy_get))
            .op("policy_get", "roster", "Get an escalation policy", "One escalation policy (its latest definition), read from its event stream (never behind), optionally as it stood at `as_of`. Unknown query parameters are 400.\n\nRoles: operator, maintainer, approver, auditor, admin.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Approver, Role::Auditor, Role::Admin])
            .params(&["Id"])
            .query::<common::AsOfQuery>()
            .answers::<aggregate::Versioned<opsledger_domain::escalation::DefinedPolicy>>(200, "The policy.", &["ETag"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (413, "PayloadTooLarge"), (422, "Unprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::GET, "/api/v1/schedules", web::get().to(roster::schedule_list))
            .op("schedule_list", "roster", "List on-call schedules", "The tenant's on-call schedules with their overrides, ordered by name. Served from the roster read model, which may briefly lag a definition or an override. Paged with `after` (the `next_cursor` of the previous page) and `limit`. Unknown query parameters are 400.\n\nRoles: operator, maintainer, approver, auditor, admin.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Approver, Role::Auditor, Role::Admin])
            .query::<roster::RosterPageQuery>()
            .answers::<common::Page<opsledger_store::roster::ScheduleRow>>(200, "The schedules.", &[])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (413, "PayloadTooLarge"), (422, "Unprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::POST, "/api/v1/schedules", web::post().to(roster::schedule_define))
            .op("schedule_define", "roster", "Define an on-call schedule", "Defines an on-call schedule: rotations of users in one IANA time zone, handing off on its wall clock, so hand-offs keep their local times across DST changes. Overrides are added afterwards.\n\nRoles: admin.")
            .roles(&[Role::Admin])
            .params(&["IdempotencyKey"])
            .body::<roster::ScheduleBody>(true)
            .answers::<aggregate::Versioned<opsledger_domain::roster::OnCallSchedule>>(201, "The schedule is defined (or, with a known `Idempotency-Key`, the first response is replayed). `Location` names `/api/v1/schedules/{id}`, where it is read.", &["Location", "ETag=ETagCreated", "Idempotent-Replayed"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (413, "PayloadTooLarge"), (415, "UnsupportedMediaType"), (422, "ScheduleUnprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::GET, "/api/v1/schedules/{id}", web::get().to(roster::schedule_get))
            .op("schedule_get", "roster", "Get an on-call schedule", "One schedule with its overrides, read from its event stream (never behind). Query parameters are ignored.\n\nRoles: operator, maintainer, approver, auditor, admin.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Approver, Role::Auditor, Role::Admin])
            .params(&["Id"])
            .answers::<aggregate::Versioned<opsledger_domain::roster::OnCallSchedule>>(200, "The schedule.", &["ETag"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (413, "PayloadTooLarge"), (422, "Unprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::POST, "/api/v1/schedules/{id}/overrides", web::post().to(roster::override_add))
            .op("override_add", "roster", "Add an on-call override", "Puts a user on call from `start` to `end` instead of whoever the rotations name; where overrides overlap, the one added last wins. A schedule keeps at most 500 overrides.\n\nRoles: operator, maintainer, admin.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Admin])
            .params(&["Id", "IdempotencyKey"])
            .body::<roster::OverrideBody>(true)
            .answers::<opsledger_domain::oncall::Override>(201, "The override is added (or, with a known `Idempotency-Key`, the first response is replayed). `Location` names the schedule: an override has no path of its own.", &["Location", "ETag", "Idempotent-Replayed"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (409, "StreamConflict"), (413, "PayloadTooLarge"), (415, "UnsupportedMediaType"), (422, "OverrideUnprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::GET, "/api/v1/schedules/{id}/oncall", web::get().to(roster::schedule_oncall))
            .op("schedule_oncall", "roster", "Who is on call", "Who the schedule has on call at `at` (now by default), read from its event stream: the override covering that instant, else one user per rotation that has started. Unknown query parameters are 400.\n\nRoles: operator, maintainer, approver, auditor, admin.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Approver, Role::Auditor, Role::Admin])
            .params(&["Id"])
            .query::<roster::OnCallQuery>()
            .answers::<roster::OnCallAnswer>(200, "Who is on call.", &[])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (413, "PayloadTooLarge"), (422, "Unprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::GET, "/api/v1/subscriptions", web::get().to(roster::subscription_list))
            .op("subscription_list", "notifications", "List subscriptions", "The active subscriptions, oldest first. Served from the roster read model, which may briefly lag a change. Paged with `after` (the `next_cursor` of the previous page) and `limit`. Unknown query parameters are 400.\n\nRoles: operator, maintainer, approver, auditor, admin, client. A client user sees only its own client's subscriptions, and an empty list when it names another client.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Approver, Role::Auditor, Role::Admin, Role::Client])
            .query::<roster::SubscriptionQuery>()
            .answers::<common::Page<opsledger_store::roster::SubscriptionRow>>(200, "The subscriptions.", &[])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (413, "PayloadTooLarge"), (422, "Unprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::POST, "/api/v1/subscriptions", web::post().to(roster::subscription_create))
            .op("subscription_create", "notifications", "Subscribe a client contact", "Subscribes a client contact to a service's incidents: a mail, in the contact's locale, when one of the chosen kinds happens to an incident of at least `min_severity`.\n\nRoles: admin, client. A client user subscribes only to its own client's services.")
            .roles(&[Role::Admin, Role::Client])
            .params(&["IdempotencyKey"])
            .body::<roster::SubscriptionBody>(true)
            .answers::<opsledger_domain::roster::Subscription>(201, "The subscription is active (or, with a known `Idempotency-Key`, the first response is replayed). `Location` names `/api/v1/subscriptions/{id}`, where it is read and cancelled.", &["Location", "ETag=ETagCreated", "Idempotent-Replayed"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (413, "PayloadTooLarge"), (415, "UnsupportedMediaType"), (422, "SubscriptionUnprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::GET, "/api/v1/subscriptions/{id}", web::get().to(roster::subscription_get))
            .op("subscription_get", "notifications", "Get a subscription", "One subscription, cancelled ones included (`active: false`), read from its event stream (never behind), optionally as it stood at `as_of`. Unknown query parameters are 400.\n\nRoles: operator, maintainer, approver, auditor, admin, client. A client user sees only its own client's subscriptions; another client's is 404.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Approver, Role::Auditor, Role::Admin, Role::Client])
            .params(&["Id"])
            .query::<common::AsOfQuery>()
            .answers::<opsledger_domain::roster::Subscription>(200, "The subscription.", &["ETag"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (413, "PayloadTooLarge"), (422, "Unprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::DELETE, "/api/v1/subscriptions/{id}", web::delete().to(roster::subscription_cancel))
            .op("subscription_cancel", "notifications", "Cancel a subscription", "Cancels a subscription: no more mail from it. Cancelling one that is cancelled already changes nothing and answers 204 too.\n\nRoles: admin, client. A client user cancels only its own client's subscriptions; another client's is 404.")
            .roles(&[Role::Admin, Role::Client])
            .params(&["Id"])
            .answers_empty(204, "The subscription is cancelled. No body.", &[])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (409, "StreamConflict"), (413, "PayloadTooLarge"), (422, "Unprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::GET, "/api/v1/queues/operations", web::get().to(roster::queue_operations))
            .op("queue_operations", "queues", "The operations queue", "The operations team's queue: open incidents not handed off and inquiries neither closed nor escalated, oldest first (each item's `kind` says which), with their age, assignee and next escalation. Served from the incidents and inquiries read models, which may briefly lag a change. Not paginated beyond `limit`. Unknown query parameters are 400.\n\nRoles: operator, maintainer, approver, auditor, admin.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Approver, Role::Auditor, Role::Admin])
            .query::<roster::QueueQuery>()
            .answers::<roster::Queue>(200, "The operations queue.", &[])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (413, "PayloadTooLarge"), (422, "Unprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::GET, "/api/v1/queues/maintenance", web::get().to(roster::queue_maintenance))
            .op("queue_maintenance", "queues", "The maintenance queue", "The maintenance team's queue: open incidents handed off to maintenance, and escalated inquiries not yet closed, oldest first (each item's `kind` says which), with their age, assignee and next escalation. Served from the incidents and inquiries read models, which may briefly lag a change. Not paginated beyond `limit`. Unknown query parameters are 400.\n\nRoles: operator, maintainer, approver, auditor, admin.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Approver, Role::Auditor, Role::Admin])
            .query::<roster::QueueQuery>()
            .answers::<roster::Queue>(200, "The maintenance queue.", &[])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (413, "PayloadTooLarge"), (422, "Unprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::GET, "/api/v1/proposals", web::get().to(proposals::proposal_list))
            .op("proposal_list", "proposals", "List improvement proposals", "Proposals, newest first, a page at a time, from the proposals read model (it follows the log within milliseconds). Unknown query parameters are 400.\n\nRoles: operator, maintainer, approver, auditor, admin.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Approver, Role::Auditor, Role::Admin])
            .query::<proposals::ListQuery>()
            .answers::<common::Page<aggregate::Versioned<opsledger_domain::proposal::Proposal>>>(200, "A page of proposals.", &[])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (413, "PayloadTooLarge"), (422, "Unprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::POST, "/api/v1/proposals", web::post().to(proposals::proposal_raise))
            .op("proposal_raise", "proposals", "Raise an improvement proposal", "Raises a proposal that prevents recurrence, from an incident or standalone (`ProposalRaised`, maintenance work).\n\nRoles: operator, maintainer, approver, admin.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Approver, Role::Admin])
            .params(&["IdempotencyKey"])
            .body::<proposals::RaiseBody>(true)
            .answers::<aggregate::Versioned<opsledger_domain::proposal::Proposal>>(201, "The proposal, raised (or, with a known `Idempotency-Key`, the first response is replayed).", &["Location", "ETag=ETagCreated", "Idempotent-Replayed"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (409, "Conflict"), (413, "PayloadTooLarge"), (415, "UnsupportedMediaType"), (422, "Unprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::GET, "/api/v1/proposals/{id}", web::get().to(proposals::proposal_get))
            .op("proposal_get", "proposals", "Get an improvement proposal", "One proposal, read from its event stream (never behind), optionally as it stood at `as_of`. Unknown query parameters are 400.\n\nRoles: operator, maintainer, approver, auditor, admin.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Approver, Role::Auditor, Role::Admin])
            .params(&["Id"])
            .query::<common::AsOfQuery>()
            .answers::<aggregate::Versioned<opsledger_domain::proposal::Proposal>>(200, "The proposal.", &["ETag"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (413, "PayloadTooLarge"), (422, "Unprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::POST, "/api/v1/proposals/{id}/approve", web::post().to(proposals::proposal_approve))
            .op("proposal_approve", "proposals", "Approve a proposal", "Approves a raised proposal. Four eyes: the one who raised it may not approve it (403). The body is optional. Send `If-Match` with the version the decision was based on to refuse the command if the proposal changed meanwhile.\n\nRoles: approver, admin.")
            .roles(&[Role::Approver, Role::Admin])
            .params(&["Id", "IfMatch", "IdempotencyKey"])
            .body::<proposals::ApproveBody>(false)
            .answers::<aggregate::Versioned<opsledger_domain::proposal::Proposal>>(200, "The proposal after the command (or, with a known `Idempotency-Key`, the first response is replayed).", &["ETag", "Idempotent-Replayed"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (409, "ProposalConflict"), (412, "PreconditionFailed"), (413, "PayloadTooLarge"), (415, "UnsupportedMediaType"), (422, "Unprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::POST, "/api/v1/proposals/{id}/reject", web::post().to(proposals::proposal_reject))
            .op("proposal_reject", "proposals", "Reject a proposal", "Rejects a raised proposal, with a reason. Four eyes: the one who raised it may not reject it (403). Send `If-Match` with the version the decision was based on to refuse the command if the proposal changed meanwhile.\n\nRoles: approver, admin.")
            .roles(&[Role::Approver, Role::Admin])
            .params(&["Id", "IfMatch", "IdempotencyKey"])
            .body::<proposals::RejectBody>(true)
            .answers::<aggregate::Versioned<opsledger_domain::proposal::Proposal>>(200, "The proposal after the command (or, with a known `Idempotency-Key`, the first response is replayed).", &["ETag", "Idempotent-Replayed"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (409, "ProposalConflict"), (412, "PreconditionFailed"), (413, "PayloadTooLarge"), (415, "UnsupportedMediaType"), (422, "Unprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::POST, "/api/v1/proposals/{id}/implement", web::post().to(proposals::proposal_implement))
            .op("proposal_implement", "proposals", "Mark a proposal implemented", "Records that a completed change carried out an approved proposal (`ProposalImplemented`). A change that does not exist or has not completed is 422. Send `If-Match` with the version the decision was based on to refuse the command if the proposal changed meanwhile.\n\nRoles: maintainer, admin.")
            .roles(&[Role::Maintainer, Role::Admin])
            .params(&["Id", "IfMatch", "IdempotencyKey"])
            .body::<proposals::ImplementBody>(true)
            .answers::<aggregate::Versioned<opsledger_domain::proposal::Proposal>>(200, "The proposal after the command (or, with a known `Idempotency-Key`, the first response is replayed).", &["ETag", "Idempotent-Replayed"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (409, "ProposalConflict"), (412, "PreconditionFailed"), (413, "PayloadTooLarge"), (415, "UnsupportedMediaType"), (422, "Unprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::POST, "/api/v1/proposals/{id}/verify", web::post().to(proposals::proposal_verify))
            .op("proposal_verify", "proposals", "Verify a proposal", "Records that an implemented proposal does what it was for (`ProposalVerified`). When the failure it was to prevent recurs (the same fingerprint or service failing again after the fix), the service lapses the verification (`ProposalVerificationLapsed`): the proposal returns to `implemented` with `needs_review` set, until verified again. Send `If-Match` with the version the decision was based on to refuse the command if the proposal changed meanwhile.\n\nRoles: approver, maintainer, admin.")
            .roles(&[Role::Approver, Role::Maintainer, Role::Admin])
            .params(&["Id", "IfMatch", "IdempotencyKey"])
            .body::<proposals::VerifyBody>(true)
            .answers::<aggregate::Versioned<opsledger_domain::proposal::Proposal>>(200, "The proposal after the command (or, with a known `Idempotency-Key`, the first response is replayed).", &["ETag", "Idempotent-Replayed"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (409, "ProposalConflict"), (412, "PreconditionFailed"), (413, "PayloadTooLarge"), (415, "UnsupportedMediaType"), (422, "Unprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::GET, "/api/v1/reports/downtime", web::get().to(reports::report_downtime))
            .op("report_downtime", "reports", "Downtime per service", "Minutes of outage, partial outage and degradation per service over `[from, to)`, each planned (inside an announced window in force for the service) and unplanned, by the rules of SPEC §6, with the impact intervals and planned time behind them. From the downtime and change read models (they follow the log within milliseconds). Name at most one of `service` and `client`; naming neither reports on every service the caller may see (a client user's own). A client user reads only its own client's services: another client's, or a service of one, is 404. Unknown query parameters are 400.\n\nRoles: operator, maintainer, approver, auditor, admin, client.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Approver, Role::Auditor, Role::Admin, Role::Client])
            .query::<reports::DowntimeParams>()
            .answers::<reports::DowntimeReport>(200, "The downtime of each service in scope.", &[])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (413, "PayloadTooLarge"), (422, "Unprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::GET, "/api/v1/reports/metrics", web::get().to(reports::report_metrics))
            .op("report_metrics", "reports", "Metrics per service", "Availability with three denominators (calendar time; less planned time; the SLA's committed hours less planned time in them), SLA met or breached, error budget, MTTA, MTTR, MTBF, change failure rate, noise ratio and incident counts per service over `[from, to)`, and noise ratio per monitoring source. Each figure names its versioned definition; `definitions` gives their texts. The incidents and changes behind each figure are listed with it; `drilldown=true` adds the impact intervals, planned time and log positions. Name at most one of `service` and `client` (neither: every service the caller may see); a client user reads only its own client's (another's is 404). Unknown query parameters are 400.\n\nRoles: operator, maintainer, approver, auditor, admin, client.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Approver, Role::Auditor, Role::Admin, Role::Client])
            .query::<reports::DowntimeParams>()
            .answers::<reports::MetricsReport>(200, "The metrics of each service in scope.", &[])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (413, "PayloadTooLarge"), (422, "Unprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::GET, "/api/v1/reports/monthly", web::get().to(reports::report_monthly))
            .op("report_monthly", "reports", "The monthly client report", "Per service of the client over its calendar month in its time zone: availability against the SLA, error budget, downtime by level (planned and unplanned) and per day, incidents with their durations and levels, planned maintenance done, changes carried out, and the metrics of `/reports/metrics`; with the client's open proposals and the restatements since the month was first reported. Three representations, chosen by `format` or else by `Accept`: JSON (default); CSV (`text/csv`): one flat table `section,service_id,service,subject,field,value` with sections `report`, `definition`, `service` (one row per figure: `availability_calendar`, `availability_excluding_planned`, `availability_sla`, `sla_target_pct`, `sla_met`, `error_budget_*_minutes`, `mtta_minutes`, `mttr_minutes`, `mtbf_minutes`, `change_failure_rate`, `noise_ratio`, `incidents`), `downtime` (subject = level; `unplanned_minutes`, `planned_minutes`), `daily` (subject = date), `incident`, `maintenance`, `change` (subject = id), `proposal` and `restatement` (subject = log position); and HTML (`text/html`): a page in the client's language (ja or en) with inline SVG charts, no script, that prints on A4. A client user reads only its own client's report (another's is 404); staff and auditors their tenant's. A malformed `month` is 400.\n\nRoles: operator, maintainer, approver, auditor, admin, client.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Approver, Role::Auditor, Role::Admin, Role::Client])
            .query::<reports::MonthlyParams>()
            .answers::<opsledger_domain::monthly::MonthlyReport>(200, "The report.", &[])
            .answers_text(200, "text/csv", "The report.", &[])
            .answers_text(200, "text/html", "The report.", &[])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (413, "PayloadTooLarge"), (422, "Unprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::GET, "/api/v1/audit", web::get().to(audit::search))
            .op("audit_search", "audit", "Search the record", "Every event of the tenant, newest first (or `order=oldest`), filtered by actor (the token subject recorded in the event's metadata), role, entity (a stream id such as `incident-…`, or an entity's id), event type, work class, and recorded or occurred time range (`[from, to)`). Cursor paging: give `next_cursor` back as `cursor`. Unknown parameters, a malformed cursor, an unknown role or work class, or an empty range are 400.\n\nRoles: auditor, admin.")
            .roles(&[Role::Auditor, Role::Admin])
            .query::<audit::SearchParams>()
            .answers::<audit::AuditPage>(200, "A page of events.", &[])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::GET, "/api/v1/audit/key", web::get().to(audit::key))
            .op("audit_key", "audit", "The checkpoint signing key", "The Ed25519 key the service signs this tenant's checkpoints with, as a C2SP signed-note verifier key, and the origin line of the tenant's checkpoints. 404 when the service has no key (`OPSLEDGER_AUDIT_KEY_FILE`).\n\nRoles: operator, maintainer, approver, client, auditor, admin, integration.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Approver, Role::Client, Role::Auditor, Role::Admin, Role::Integration])
            .answers::<audit::KeyAnswer<'static>>(200, "The verifier key.", &[])
            .fails(&[(401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::GET, "/api/v1/audit/checkpoint", web::get().to(audit::checkpoint))
            .op("audit_checkpoint", "audit", "The latest signed checkpoint", "The tenant's latest checkpoint (or the one of `size`): a C2SP tlog-checkpoint (origin, tree size, base64 root) inside a C2SP signed-note, signed every few seconds while the tree grows and never inconsistent with an earlier one. `format=note` answers the signed note itself as text/plain. 404 before the first is signed, for a size never signed, or without a key.\n\nRoles: operator, maintainer, approver, client, auditor, admin, integration.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Approver, Role::Client, Role::Auditor, Role::Admin, Role::Integration])
            .query::<audit::CheckpointParams>()
            .answers::<audit::CheckpointAnswer>(200, "The checkpoint.", &[])
            .answers_text(200, "text/plain", "The checkpoint.", &[])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::GET, "/api/v1/audit/proof/inclusion", web::get().to(audit::inclusion))
            .op("audit_inclusion_proof", "audit", "Prove an event is in the log", "An RFC 9162 inclusion proof of the event's leaf in the tree of `size` leaves (default: the latest checkpoint's), with the leaf's bytes (`opsledger-leaf/v1`, see ARCHITECTURE.md) and, when one was signed for that size, the signed checkpoint. `format=tlog-proof` answers a C2SP tlog-proof file (the leaf bytes as its `extra`), which needs nothing else to check; it needs a checkpoint of `size`. An unknown event (or one not yet sequenced, which takes under a second) is 404; a size of 0, beyond the tree, or not containing the event is 400.\n\nRoles: auditor, admin.")
            .roles(&[Role::Auditor, Role::Admin])
            .query::<audit::InclusionParams>()
            .answers::<audit::InclusionAnswer>(200, "The proof.", &[])
            .answers_text(200, "text/plain", "The proof.", &[])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::GET, "/api/v1/audit/proof/consistency", web::get().to(audit::consistency))
            .op("audit_consistency_proof", "audit", "Prove an old tree is a prefix of a newer one", "An RFC 9162 consistency proof that the tree of `from` leaves is a prefix of the tree of `to` leaves (default: the latest checkpoint's size), with both roots: a client holding an old checkpoint checks today's log with it. `from` must be between 1 and `to`, and `to` at most the tree's size (400 otherwise).\n\nRoles: operator, maintainer, approver, client, auditor, admin, integration.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Approver, Role::Client, Role::Auditor, Role::Admin, Role::Integration])
            .query::<audit::ConsistencyParams>()
            .answers::<audit::ConsistencyAnswer>(200, "The proof.", &[])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::GET, "/api/v1/audit/export", web::get().to(audit::export))
            .op("audit_export", "audit", "Export the log for offline verification", "The tenant's log up to a signed checkpoint (`size`, default the latest) as JSON Lines, streamed: one `AuditExportLeaf` per leaf in leaf order (everything its bytes are made of), then one line `{\"checkpoint\": <signed note>}`. `opsledger audit verify-export FILE --key KEY` checks it with no database. An event removed or altered since it was signed shows as a gap or a link that does not hash; the answer stops short if the database fails midway. 404 for a size no checkpoint was signed at.\n\nRoles: auditor, admin.")
            .roles(&[Role::Auditor, Role::Admin])
            .query::<audit::ExportParams>()
            .answers_text(200, "application/jsonl", "JSON Lines: leaves, then the checkpoint.", &[])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::GET, "/api/v1/audit/verify", web::get().to(audit::verify))
            .op("audit_verify", "audit", "Check the log against its latest checkpoint", "The checks of `opsledger audit verify-export`, run by the service over the log up to the latest signed checkpoint: every chain link, the leaves' order, the Merkle root against the signed checkpoint and its signature. `ok` is false, with the first failure (line, leaf, event, reason), when anything was altered, removed or moved, and also while the signer refuses a tree head inconsistent with the last checkpoint. 404 without a key or before the first checkpoint.\n\nRoles: auditor, admin.")
            .roles(&[Role::Auditor, Role::Admin])
            .answers::<audit::VerifyAnswer>(200, "What the check found.", &[])
            .fails(&[(401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::GET, "/api/v1/events", web::get().to(feed::page))
            .op("events_feed", "audit", "The event feed", "The tenant's events after a cursor, in the global order the projections follow, and gap-safe: the read stops below the oldest transaction still running, so an event that commits late with a lower position is never skipped. Give `next_cursor` back as `after` to continue (it is always present, and moves past everything final even when no event matched). Cursors are opaque. A malformed cursor, a limit outside 1–1000 or an unknown parameter is 400.\n\nRoles: auditor, admin; an integration token once an admin has granted its subject (`PUT /api/v1/events/readers/{subject}`), until revoked.")
            .roles(&[Role::Auditor, Role::Admin])
            .granted(&[Role::Integration])
            .query::<feed::FeedParams>()
            .answers::<feed::FeedPage<'static>>(200, "A page of the feed.", &[])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::GET, "/api/v1/events/readers", web::get().to(feed::readers))
            .op("feed_readers", "audit", "Integrations granted the event feed", "The token subjects of the integrations that may read this tenant's event feed, with who last changed the list. Auditors and admins always may read the feed; an integration only as granted here. Every grant and revocation is an event (`FeedReaderGranted`, `FeedReaderRevoked`).\n\nRoles: auditor, admin.")
            .roles(&[Role::Auditor, Role::Admin])
            .answers::<aggregate::Versioned<opsledger_domain::feed_access::FeedReaders>>(200, "The list (empty before the first grant).", &["ETag"])
            .fails(&[(401, "Unauthorized"), (403, "Forbidden"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::PUT, "/api/v1/events/readers/{subject}", web::put().to(feed::reader_grant))
            .op("feed_reader_grant", "audit", "Grant an integration the event feed", "Lets integration tokens with this subject read the tenant's event feed (a SIEM, a data warehouse). Granting a subject already granted records nothing and answers the list as it is. Send `If-Match` with the list's version to refuse the command if the list changed meanwhile (412).\n\nRoles: admin.")
            .roles(&[Role::Admin])
            .path_param("subject", "The integration token's subject (`sub`): 1–256 characters without control characters.")
            .params(&["IfMatch", "IdempotencyKey"])
            .answers::<aggregate::Versioned<opsledger_domain::feed_access::FeedReaders>>(200, "The list after the grant.", &["ETag", "Idempotent-Replayed"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (409, "StreamConflict"), (412, "PreconditionFailed"), (413, "PayloadTooLarge"), (422, "Unprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::DELETE, "/api/v1/events/readers/{subject}", web::delete().to(feed::reader_revoke))
            .op("feed_reader_revoke", "audit", "Revoke an integration's event feed", "Takes the feed from integration tokens with this subject: their next page is 403 and their open streams end within a heartbeat interval. Revoking a subject not granted records nothing.\n\nRoles: admin.")
            .roles(&[Role::Admin])
            .path_param("subject", "The integration token's subject (`sub`): 1–256 characters without control characters.")
            .params(&["IfMatch", "IdempotencyKey"])
            .answers::<aggregate::Versioned<opsledger_domain::feed_access::FeedReaders>>(200, "The list after the revocation.", &["ETag", "Idempotent-Replayed"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (409, "StreamConflict"), (412, "PreconditionFailed"), (413, "PayloadTooLarge"), (422, "Unprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::GET, "/api/v1/events/stream", web::get().to(feed::stream))
            .op("events_stream", "audit", "The event feed as Server-Sent Events", "The feed of `GET /events` as Server-Sent Events, without end: each event a frame with `id` (its cursor), `event` (its type) and one `data` line (the event as JSON, with `cursor`). A reconnecting client sends `Last-Event-ID` and resumes after that event (or `after` on the first connection). A comment frame `: heartbeat` comes when nothing happened for `OPSLEDGER_FEED_HEARTBEAT_MS` (15 s). The next page is read only when the client has taken the last, so a slow reader costs a page of memory at most.\n\nRoles: auditor, admin; an integration token once granted its subject. A granted integration's stream ends within a heartbeat interval of the grant being revoked.")
            .roles(&[Role::Auditor, Role::Admin])
            .granted(&[Role::Integration])
            .header_param("Last-Event-ID", "Resume after this event (an `id` this stream sent).")
            .query::<feed::StreamParams>()
            .answers_text(200, "text/event-stream", "The stream.", &[])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::GET, "/api/v1/work", web::get().to(work::work_ledger))
            .op("work_ledger", "work", "The work ledger", "Operations and maintenance work apart (SPEC §6): every fact a person recorded on incidents, changes, windows, proposals, inquiries, runbooks and the work log, in the work class of its type, with the team of who recorded it, the services concerned, and the minutes spent where recorded. Facts recorded by monitoring, clients or the service itself are not work and are not listed. From the work read model (it follows the log within milliseconds). Unknown query parameters are 400.\n\nRoles: operator, maintainer, approver, auditor, admin, client.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Approver, Role::Auditor, Role::Admin, Role::Client])
            .query::<work::WorkParams>()
            .answers::<work::WorkLedger>(200, "The ledger for the filters.", &[])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (413, "PayloadTooLarge"), (422, "Unprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::GET, "/api/v1/notifications", web::get().to(roster::notification_list))
            .op("notification_list", "notifications", "The notification ledger", "Who was told what, newest first: every notification requested, with its recipient, subject, the hash of exactly what is sent, and how its delivery stands. Served from the notifications read model, which may briefly lag. Not paginated beyond `limit`. Unknown query parameters are 400.\n\nRoles: operator, maintainer, approver, auditor, admin, client. A client user sees only the notifications to its own client's contacts, and an empty list when it names another client.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Approver, Role::Auditor, Role::Admin, Role::Client])
            .query::<roster::NotificationQuery>()
            .answers::<common::Items<opsledger_store::outbox::NotificationRow>>(200, "The notifications.", &[])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (413, "PayloadTooLarge"), (422, "Unprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::POST, "/api/v1/incidents/{id}/escalate", web::post().to(escalation::incident_escalate))
            .op("incident_escalate", "incidents", "Escalate", "Tells the next level of the service's escalation policy now (the top level again once reached), in triggered or acknowledged status; while triggered, the policy's step after it is scheduled. Without a policy there is nobody to escalate to: 422. The body may be left out (no reason). Send `If-Match` with the version the decision was based on to refuse the command if the incident changed meanwhile.\n\nRoles: operator, maintainer, admin.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Admin])
            .params(&["Id", "IfMatch", "IdempotencyKey"])
            .body::<escalation::EscalateBody>(false)
            .answers::<opsledger_app::incidents::IncidentView>(200, "The incident after the command (or, with a known `Idempotency-Key`, the first response is replayed).", &["ETag", "Idempotent-Replayed"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (409, "LifecycleConflict"), (412, "PreconditionFailed"), (413, "PayloadTooLarge"), (415, "UnsupportedMediaType"), (422, "IncidentUnprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::POST, "/api/v1/incidents/{id}/handoff", web::post().to(incidents::incident_command::<incidents::HandOffBody>))
            .op("incident_handoff", "incidents", "Hand off to maintenance", "Hands the incident from the operations team to maintenance (second line): it leaves the operations queue for the maintenance queue. Any status but resolved or closed. Send `If-Match` with the version the decision was based on to refuse the command if the incident changed meanwhile.\n\nRoles: operator, maintainer, admin.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Admin])
            .params(&["Id", "IfMatch", "IdempotencyKey"])
            .body::<incidents::HandOffBody>(true)
            .answers::<opsledger_app::incidents::IncidentView>(200, "The incident after the command (or, with a known `Idempotency-Key`, the first response is replayed).", &["ETag", "Idempotent-Replayed"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (409, "LifecycleConflict"), (412, "PreconditionFailed"), (413, "PayloadTooLarge"), (415, "UnsupportedMediaType"), (422, "IncidentUnprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::POST, "/api/v1/incidents/{id}/assign", web::post().to(incidents::incident_command::<incidents::AssignBody>))
            .op("incident_assign", "incidents", "Assign", "Names who works on the incident, replacing any earlier assignee. Any status but closed. Send `If-Match` with the version the decision was based on to refuse the command if the incident changed meanwhile.\n\nRoles: operator, maintainer, admin.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Admin])
            .params(&["Id", "IfMatch", "IdempotencyKey"])
            .body::<incidents::AssignBody>(true)
            .answers::<opsledger_app::incidents::IncidentView>(200, "The incident after the command (or, with a known `Idempotency-Key`, the first response is replayed).", &["ETag", "Idempotent-Replayed"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (409, "LifecycleConflict"), (412, "PreconditionFailed"), (413, "PayloadTooLarge"), (415, "UnsupportedMediaType"), (422, "IncidentUnprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::POST, "/api/v1/incidents/{id}/unassign", web::post().to(incidents::incident_unassign))
            .op("incident_unassign", "incidents", "Unassign", "Clears the assignee; 422 when nobody is assigned. Any status but closed. Send `If-Match` with the version the decision was based on to refuse the command if the incident changed meanwhile.\n\nRoles: operator, maintainer, admin.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Admin])
            .params(&["Id", "IfMatch", "IdempotencyKey"])
            .answers::<opsledger_app::incidents::IncidentView>(200, "The incident after the command (or, with a known `Idempotency-Key`, the first response is replayed).", &["ETag", "Idempotent-Replayed"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (409, "LifecycleConflict"), (412, "PreconditionFailed"), (413, "PayloadTooLarge"), (422, "IncidentUnprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::GET, "/api/v1/changes", web::get().to(changes::change_list))
            .op("change_list", "changes", "List changes", "Changes, newest first, from the read model (it follows the log within moments). Unknown query parameters are 400.\n\nRoles: operator, maintainer, approver, auditor, admin.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Approver, Role::Auditor, Role::Admin])
            .query::<changes::ChangeListQuery>()
            .answers::<common::Page<aggregate::Versioned<opsledger_domain::change::Change>>>(200, "A page of changes.", &[])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (413, "PayloadTooLarge"), (422, "Unprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::POST, "/api/v1/changes", web::post().to(changes::change_request))
            .op("change_request", "changes", "Request a change", "Requests a change (draft). Standard changes may be requested by operators; normal and emergency changes by maintainers. A normal change needs `rollback_plan`. Services and linked incidents or proposals must exist in the tenant's log.\n\nRoles: operator (standard only), maintainer, admin.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Admin])
            .params(&["IdempotencyKey"])
            .body::<changes::RequestBody>(true)
            .answers::<aggregate::Versioned<opsledger_domain::change::Change>>(201, "The change, in draft (or, with a known `Idempotency-Key`, the first response is replayed).", &["Location", "ETag=ETagCreated", "Idempotent-Replayed"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (413, "PayloadTooLarge"), (415, "UnsupportedMediaType"), (422, "ChangeUnprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        // Before `/changes/{id}`, which would take `history` for an id.
        Endpoint::new(Method::GET, "/api/v1/changes/history", web::get().to(changes::change_history))
            .op("change_history", "changes", "Change history of a service", "Every change to the service, oldest first (in the order they were requested) and paged with `after` and `limit`, with its approvals, schedule, windows, outcome and linked incidents (SPEC §6), from the read model. A service of another tenant, or none, is 404.\n\nRoles: operator, maintainer, approver, auditor, admin.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Approver, Role::Auditor, Role::Admin])
            .query::<changes::HistoryQuery>()
            .answers::<changes::History>(200, "The service's changes.", &[])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (413, "PayloadTooLarge"), (422, "Unprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::GET, "/api/v1/changes/{id}", web::get().to(changes::change_get))
            .op("change_get", "changes", "Get a change", "One change, folded from its stream (never behind), optionally as it stood at `as_of`.\n\nRoles: operator, maintainer, approver, auditor, admin.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Approver, Role::Auditor, Role::Admin])
            .params(&["Id"])
            .query::<common::AsOfQuery>()
            .answers::<aggregate::Versioned<opsledger_domain::change::Change>>(200, "The change.", &["ETag"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (413, "PayloadTooLarge"), (422, "Unprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::POST, "/api/v1/changes/{id}/submit", web::post().to(changes::change_submit))
            .op("change_submit", "changes", "Submit", "draft → submitted. Send `If-Match` with the version the decision was based on; every step accepts `minutes_spent`.\n\nRoles: maintainer, admin, operator (standard changes).")
            .roles(&[Role::Operator, Role::Maintainer, Role::Admin])
            .params(&["Id", "IfMatch", "IdempotencyKey"])
            .body::<changes::MinutesBody>(false)
            .answers::<aggregate::Versioned<opsledger_domain::change::Change>>(200, "The change after the step (or, with a known `Idempotency-Key`, the first response is replayed).", &["ETag", "Idempotent-Replayed"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (409, "ChangeConflict"), (412, "PreconditionFailed"), (413, "PayloadTooLarge"), (415, "UnsupportedMediaType"), (422, "ChangeUnprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::POST, "/api/v1/changes/{id}/approve", web::post().to(changes::change_approve))
            .op("change_approve", "changes", "Approve", "submitted → approved. Four eyes: the approver must not be the requester (403 saying so). An emergency change may be approved after it started (`retroactive`), which clears `approval_missing`. Standard changes take no approval. Send `If-Match` with the version the decision was based on; every step accepts `minutes_spent`.\n\nRoles: approver, admin.")
            .roles(&[Role::Approver, Role::Admin])
            .params(&["Id", "IfMatch", "IdempotencyKey"])
            .body::<changes::ApproveBody>(false)
            .answers::<aggregate::Versioned<opsledger_domain::change::Change>>(200, "The change after the step (or, with a known `Idempotency-Key`, the first response is replayed).", &["ETag", "Idempotent-Replayed"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (409, "ChangeConflict"), (412, "PreconditionFailed"), (413, "PayloadTooLarge"), (415, "UnsupportedMediaType"), (422, "ChangeUnprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::POST, "/api/v1/changes/{id}/reject", web::post().to(changes::change_reject))
            .op("change_reject", "changes", "Reject", "submitted → rejected. Four eyes as for approval. Send `If-Match` with the version the decision was based on; every step accepts `minutes_spent`.\n\nRoles: approver, admin.")
            .roles(&[Role::Approver, Role::Admin])
            .params(&["Id", "IfMatch", "IdempotencyKey"])
            .body::<changes::ReasonBody>(true)
            .answers::<aggregate::Versioned<opsledger_domain::change::Change>>(200, "The change after the step (or, with a known `Idempotency-Key`, the first response is replayed).", &["ETag", "Idempotent-Replayed"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (409, "ChangeConflict"), (412, "PreconditionFailed"), (413, "PayloadTooLarge"), (415, "UnsupportedMediaType"), (422, "ChangeUnprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::POST, "/api/v1/changes/{id}/schedule", web::post().to(changes::change_schedule))
            .op("change_schedule", "changes", "Schedule", "Sets (or moves) the change's schedule: normal changes once approved, standard and emergency ones from draft on. A normal change whose schedule overlaps a freeze of one of its services is refused (409 naming the freeze); standard and emergency changes are accepted and the freezes recorded (`freezes`). Other scheduled or running changes to one of its services whose schedules overlap are reported as conflicts: accepted, recorded in ChangeScheduled and answered in `conflicts`. Send `If-Match` with the version the decision was based on; every step accepts `minutes_spent`.\n\nRoles: maintainer, admin, operator (standard changes).")
            .roles(&[Role::Operator, Role::Maintainer, Role::Admin])
            .params(&["Id", "IfMatch", "IdempotencyKey"])
            .body::<changes::ScheduleBody>(true)
            .answers::<aggregate::Versioned<opsledger_domain::change::Change>>(200, "The change after the step (or, with a known `Idempotency-Key`, the first response is replayed).", &["ETag", "Idempotent-Replayed"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (409, "ChangeConflict"), (412, "PreconditionFailed"), (413, "PayloadTooLarge"), (415, "UnsupportedMediaType"), (422, "ChangeUnprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::POST, "/api/v1/changes/{id}/start", web::post().to(changes::change_start))
            .op("change_start", "changes", "Start", "→ in_progress: normal changes once scheduled; standard changes from draft, submitted or scheduled; emergency changes from any state before, without approval if need be (then `approval_missing`). Send `If-Match` with the version the decision was based on; every step accepts `minutes_spent`. A normal change is refused (409 with `freeze_id`) while a freeze of one of its services is in force, also one declared after it was scheduled.\n\nRoles: maintainer, admin, operator (standard changes).")
            .roles(&[Role::Operator, Role::Maintainer, Role::Admin])
            .params(&["Id", "IfMatch", "IdempotencyKey"])
            .body::<changes::MinutesBody>(false)
            .answers::<aggregate::Versioned<opsledger_domain::change::Change>>(200, "The change after the step (or, with a known `Idempotency-Key`, the first response is replayed).", &["ETag", "Idempotent-Replayed"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (409, "ChangeConflict"), (412, "PreconditionFailed"), (413, "PayloadTooLarge"), (415, "UnsupportedMediaType"), (422, "ChangeUnprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::POST, "/api/v1/changes/{id}/complete", web::post().to(changes::change_complete))
            .op("change_complete", "changes", "Complete", "in_progress → completed. Send `If-Match` with the version the decision was based on; every step accepts `minutes_spent`.\n\nRoles: maintainer, admin, operator (standard changes).")
            .roles(&[Role::Operator, Role::Maintainer, Role::Admin])
            .params(&["Id", "IfMatch", "IdempotencyKey"])
            .body::<changes::CompleteBody>(false)
            .answers::<aggregate::Versioned<opsledger_domain::change::Change>>(200, "The change after the step (or, with a known `Idempotency-Key`, the first response is replayed).", &["ETag", "Idempotent-Replayed"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (409, "ChangeConflict"), (412, "PreconditionFailed"), (413, "PayloadTooLarge"), (415, "UnsupportedMediaType"), (422, "ChangeUnprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::POST, "/api/v1/changes/{id}/fail", web::post().to(changes::change_fail))
            .op("change_fail", "changes", "Fail", "in_progress → failed. Send `If-Match` with the version the decision was based on; every step accepts `minutes_spent`.\n\nRoles: maintainer, admin, operator (standard changes).")
            .roles(&[Role::Operator, Role::Maintainer, Role::Admin])
            .params(&["Id", "IfMatch", "IdempotencyKey"])
            .body::<changes::ReasonBody>(true)
            .answers::<aggregate::Versioned<opsledger_domain::change::Change>>(200, "The change after the step (or, with a known `Idempotency-Key`, the first response is replayed).", &["ETag", "Idempotent-Replayed"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (409, "ChangeConflict"), (412, "PreconditionFailed"), (413, "PayloadTooLarge"), (415, "UnsupportedMediaType"), (422, "ChangeUnprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::POST, "/api/v1/changes/{id}/rollback", web::post().to(changes::change_rollback))
            .op("change_rollback", "changes", "Roll back", "in_progress or failed → rolled_back. Send `If-Match` with the version the decision was based on; every step accepts `minutes_spent`.\n\nRoles: maintainer, admin, operator (standard changes).")
            .roles(&[Role::Operator, Role::Maintainer, Role::Admin])
            .params(&["Id", "IfMatch", "IdempotencyKey"])
            .body::<changes::ReasonBody>(true)
            .answers::<aggregate::Versioned<opsledger_domain::change::Change>>(200, "The change after the step (or, with a known `Idempotency-Key`, the first response is replayed).", &["ETag", "Idempotent-Replayed"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (409, "ChangeConflict"), (412, "PreconditionFailed"), (413, "PayloadTooLarge"), (415, "UnsupportedMediaType"), (422, "ChangeUnprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::POST, "/api/v1/changes/{id}/review", web::post().to(changes::change_review))
            .op("change_review", "changes", "Review", "completed, failed or rolled_back → reviewed; an emergency change must have been approved first. Send `If-Match` with the version the decision was based on; every step accepts `minutes_spent`.\n\nRoles: maintainer, approver, admin, operator (standard changes).")
            .roles(&[Role::Operator, Role::Maintainer, Role::Approver, Role::Admin])
            .params(&["Id", "IfMatch", "IdempotencyKey"])
            .body::<changes::ReviewBody>(true)
            .answers::<aggregate::Versioned<opsledger_domain::change::Change>>(200, "The change after the step (or, with a known `Idempotency-Key`, the first response is replayed).", &["ETag", "Idempotent-Replayed"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (409, "ChangeConflict"), (412, "PreconditionFailed"), (413, "PayloadTooLarge"), (415, "UnsupportedMediaType"), (422, "ChangeUnprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::POST, "/api/v1/changes/{id}/links", web::post().to(changes::change_link))
            .op("change_link", "changes", "Link", "Links the change to an incident (`fixes`, `caused_by`) or a proposal (`implements`); the target must exist in the tenant's log. Send `If-Match` with the version the decision was based on.\n\nRoles: maintainer, admin, operator (standard changes).")
            .roles(&[Role::Operator, Role::Maintainer, Role::Admin])
            .params(&["Id", "IfMatch", "IdempotencyKey"])
            .body::<opsledger_domain::change::Link>(true)
            .answers::<aggregate::Versioned<opsledger_domain::change::Change>>(200, "The change after the step (or, with a known `Idempotency-Key`, the first response is replayed).", &["ETag", "Idempotent-Replayed"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (409, "ChangeConflict"), (412, "PreconditionFailed"), (413, "PayloadTooLarge"), (415, "UnsupportedMediaType"), (422, "ChangeUnprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::GET, "/api/v1/freezes", web::get().to(changes::freeze_list))
            .op("freeze_list", "changes", "List freezes", "Freeze periods, latest start first, lifted ones included.\n\nRoles: operator, maintainer, approver, auditor, admin.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Approver, Role::Auditor, Role::Admin])
            .query::<changes::FreezeListQuery>()
            .answers::<common::Items<aggregate::Versioned<opsledger_domain::freeze::Freeze>>>(200, "The freezes.", &[])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (413, "PayloadTooLarge"), (422, "Unprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::POST, "/api/v1/freezes", web::post().to(changes::freeze_declare))
            .op("freeze_declare", "changes", "Declare a freeze", "A freeze (blackout) period of some services: normal changes may not be scheduled into it.\n\nRoles: maintainer, approver, admin.")
            .roles(&[Role::Maintainer, Role::Approver, Role::Admin])
            .params(&["IdempotencyKey"])
            .body::<changes::FreezeBody>(true)
            .answers::<aggregate::Versioned<opsledger_domain::freeze::Freeze>>(201, "The freeze (or, with a known `Idempotency-Key`, the first response is replayed).", &["Location", "ETag=ETagCreated", "Idempotent-Replayed"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (413, "PayloadTooLarge"), (415, "UnsupportedMediaType"), (422, "FreezeUnprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::GET, "/api/v1/freezes/{id}", web::get().to(changes::freeze_get))
            .op("freeze_get", "changes", "Get a freeze", "One freeze, folded from its stream.\n\nRoles: operator, maintainer, approver, auditor, admin.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Approver, Role::Auditor, Role::Admin])
            .params(&["Id"])
            .answers::<aggregate::Versioned<opsledger_domain::freeze::Freeze>>(200, "The freeze.", &["ETag"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (413, "PayloadTooLarge"), (422, "Unprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::POST, "/api/v1/freezes/{id}/lift", web::post().to(changes::freeze_lift))
            .op("freeze_lift", "changes", "Lift a freeze", "Ends a freeze early; lifting a lifted freeze is 409.\n\nRoles: maintainer, approver, admin.")
            .roles(&[Role::Maintainer, Role::Approver, Role::Admin])
            .params(&["Id", "IfMatch", "IdempotencyKey"])
            .body::<changes::LiftBody>(false)
            .answers::<aggregate::Versioned<opsledger_domain::freeze::Freeze>>(200, "The freeze, lifted.", &["ETag", "Idempotent-Replayed"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (409, "Conflict"), (412, "PreconditionFailed"), (413, "PayloadTooLarge"), (415, "UnsupportedMediaType"), (422, "FreezeUnprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::GET, "/api/v1/maintenance-windows", web::get().to(windows::window_list))
            .op("window_list", "maintenance", "List maintenance windows", "Windows, newest planned first, with their occurrences in the asked range. A client user sees only the windows of its own client's services, naming only those, without internal fields.\n\nRoles: operator, maintainer, approver, auditor, admin, client.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Approver, Role::Auditor, Role::Admin, Role::Client])
            .query::<windows::WindowListQuery>()
            .answers::<common::Page<windows::Shown>>(200, "A page of windows.", &[])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (413, "PayloadTooLarge"), (422, "Unprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::POST, "/api/v1/maintenance-windows", web::post().to(windows::window_plan))
            .op("window_plan", "maintenance", "Plan a maintenance window", "Plans a window for some services, optionally recurring (RRULE) and serving a change.\n\nRoles: maintainer, admin.")
            .roles(&[Role::Maintainer, Role::Admin])
            .params(&["IdempotencyKey"])
            .body::<windows::PlanBody>(true)
            .answers::<windows::WindowView>(201, "The window, planned (or, with a known `Idempotency-Key`, the first response is replayed).", &["Location", "ETag=ETagCreated", "Idempotent-Replayed"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (413, "PayloadTooLarge"), (415, "UnsupportedMediaType"), (422, "WindowUnprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::GET, "/api/v1/maintenance-windows/{id}", web::get().to(windows::window_get))
            .op("window_get", "maintenance", "Get a maintenance window", "One window, folded from its stream, with its occurrences in the asked range. Clients see their own services' windows only (others are 404).\n\nRoles: operator, maintainer, approver, auditor, admin, client.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Approver, Role::Auditor, Role::Admin, Role::Client])
            .params(&["Id"])
            .query::<windows::WindowQuery>()
            .answers::<windows::Shown>(200, "The window.", &["ETag"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (413, "PayloadTooLarge"), (422, "Unprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::POST, "/api/v1/maintenance-windows/{id}/announce", web::post().to(windows::window_announce))
            .op("window_announce", "maintenance", "Announce", "planned → announced, and in the same append one mail request per active subscription of its services (once per address, in the contact's language, naming only that client's services) through the notification outbox. Refused (422) when later than a service's notice period before the next occurrence, unless the window serves an emergency change: then accepted with `late: true`. Send `If-Match` with the version the decision was based on.\n\nRoles: maintainer, admin.")
            .roles(&[Role::Maintainer, Role::Admin])
            .params(&["Id", "IfMatch", "IdempotencyKey"])
            .body::<windows::EmptyBody>(false)
            .answers::<windows::WindowView>(200, "The window after the step (or, with a known `Idempotency-Key`, the first response is replayed).", &["ETag", "Idempotent-Replayed"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (409, "WindowConflict"), (412, "PreconditionFailed"), (413, "PayloadTooLarge"), (415, "UnsupportedMediaType"), (422, "WindowUnprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::POST, "/api/v1/maintenance-windows/{id}/start", web::post().to(windows::window_start))
            .op("window_start", "maintenance", "Start", "planned or announced → started. Send `If-Match` with the version the decision was based on.\n\nRoles: maintainer, admin.")
            .roles(&[Role::Maintainer, Role::Admin])
            .params(&["Id", "IfMatch", "IdempotencyKey"])
            .body::<windows::EmptyBody>(false)
            .answers::<windows::WindowView>(200, "The window after the step (or, with a known `Idempotency-Key`, the first response is replayed).", &["ETag", "Idempotent-Replayed"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (409, "WindowConflict"), (412, "PreconditionFailed"), (413, "PayloadTooLarge"), (415, "UnsupportedMediaType"), (422, "WindowUnprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::POST, "/api/v1/maintenance-windows/{id}/end", web::post().to(windows::window_end))
            .op("window_end", "maintenance", "End", "started → ended; accepts `minutes_spent`. Send `If-Match` with the version the decision was based on.\n\nRoles: maintainer, admin.")
            .roles(&[Role::Maintainer, Role::Admin])
            .params(&["Id", "IfMatch", "IdempotencyKey"])
            .body::<windows::EndBody>(false)
            .answers::<windows::WindowView>(200, "The window after the step (or, with a known `Idempotency-Key`, the first response is replayed).", &["ETag", "Idempotent-Replayed"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (409, "WindowConflict"), (412, "PreconditionFailed"), (413, "PayloadTooLarge"), (415, "UnsupportedMediaType"), (422, "WindowUnprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::POST, "/api/v1/maintenance-windows/{id}/cancel", web::post().to(windows::window_cancel))
            .op("window_cancel", "maintenance", "Cancel", "planned or announced → cancelled. Cancelling an announced window mails its services' subscribed contacts that it is called off (in the same append, through the outbox); the reason is not sent. Send `If-Match` with the version the decision was based on.\n\nRoles: maintainer, admin.")
            .roles(&[Role::Maintainer, Role::Admin])
            .params(&["Id", "IfMatch", "IdempotencyKey"])
            .body::<windows::CancelBody>(true)
            .answers::<windows::WindowView>(200, "The window after the step (or, with a known `Idempotency-Key`, the first response is replayed).", &["ETag", "Idempotent-Replayed"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (409, "WindowConflict"), (412, "PreconditionFailed"), (413, "PayloadTooLarge"), (415, "UnsupportedMediaType"), (422, "WindowUnprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::GET, "/api/v1/calendar.ics", web::get().to(windows::calendar_ics))
            .op("calendar_get", "maintenance", "iCalendar feed", "Maintenance windows (recurring ones with their RRULE) and scheduled changes as VEVENTs (RFC 5545: CRLF lines folded at 75 octets, TEXT escaped, times in UTC), from 90 days back. Client users get only their own services' windows and no changes.\n\nRoles: operator, maintainer, approver, auditor, admin, client.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Approver, Role::Auditor, Role::Admin, Role::Client])
            .answers_text(200, "text/calendar", "The calendar.", &[])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (413, "PayloadTooLarge"), (422, "Unprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        // Operations work: the work log, runbooks and executions, inquiries.
        Endpoint::new(Method::GET, "/api/v1/worklog", web::get().to(worklog::worklog_list))
            .op("worklog_list", "worklog", "List the work log", "Routine tasks and backups, newest recorded first, from the work log read model (which may briefly lag a write). Unknown query parameters are 400.\n\nRoles: operator, maintainer, approver, auditor, admin.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Approver, Role::Auditor, Role::Admin])
            .query::<worklog::WorklogQuery>()
            .answers::<common::Page<opsledger_store::operations::WorklogRow>>(200, "A page of the work log.", &[])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (413, "PayloadTooLarge"), (422, "Unprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::POST, "/api/v1/worklog", web::post().to(worklog::task_record))
            .op("task_record", "worklog", "Record a routine task", "Records a routine task of operations work (`RoutineTaskRecorded` on a stream `task-<id>`): a restart, a patch check, a report delivered, an inspection or other. Who did it is the caller.\n\nRoles: operator, maintainer, admin.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Admin])
            .params(&["IdempotencyKey"])
            .body::<worklog::TaskBody>(true)
            .answers::<aggregate::Versioned<opsledger_domain::worklog::RoutineTask>>(201, "The task as recorded (or, with a known `Idempotency-Key`, the first response is replayed).", &["Location", "ETag=ETagCreated", "Idempotent-Replayed"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (409, "Conflict"), (413, "PayloadTooLarge"), (415, "UnsupportedMediaType"), (422, "WorkUnprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::GET, "/api/v1/worklog/{id}", web::get().to(worklog::task_get))
            .op("task_get", "worklog", "Get a routine task", "One routine task, read from its stream.\n\nRoles: operator, maintainer, approver, auditor, admin.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Approver, Role::Auditor, Role::Admin])
            .params(&["Id"])
            .answers::<aggregate::Versioned<opsledger_domain::worklog::RoutineTask>>(200, "The task.", &["ETag"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (413, "PayloadTooLarge"), (422, "Unprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::POST, "/api/v1/backups", web::post().to(worklog::backup_record))
            .op("backup_record", "worklog", "Record a backup", "Records a backup taken (`BackupPerformed` on a stream `backup-<id>`), unverified until someone verifies it.\n\nRoles: operator, maintainer, admin.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Admin])
            .params(&["IdempotencyKey"])
            .body::<worklog::BackupBody>(true)
            .answers::<aggregate::Versioned<opsledger_domain::worklog::Backup>>(201, "The backup as recorded (or, with a known `Idempotency-Key`, the first response is replayed).", &["Location", "ETag=ETagCreated", "Idempotent-Replayed"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (409, "Conflict"), (413, "PayloadTooLarge"), (415, "UnsupportedMediaType"), (422, "WorkUnprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::GET, "/api/v1/backups/{id}", web::get().to(worklog::backup_get))
            .op("backup_get", "worklog", "Get a backup", "One backup with every verification, read from its stream.\n\nRoles: operator, maintainer, approver, auditor, admin.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Approver, Role::Auditor, Role::Admin])
            .params(&["Id"])
            .answers::<aggregate::Versioned<opsledger_domain::worklog::Backup>>(200, "The backup.", &["ETag"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (413, "PayloadTooLarge"), (422, "Unprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::POST, "/api/v1/backups/{id}/verify", web::post().to(worklog::backup_verify))
            .op("backup_verify", "worklog", "Verify a backup", "Records a verification of the backup (`BackupVerified`): ok or failed, and how. Anyone allowed to record work may verify, the person who took the backup included; each verification records who made it and says whether that was the backup's own taker (`by_performer`). A backup may be verified again (a failed one after repair, a periodic restore test); its status follows the latest.\n\nRoles: operator, maintainer, admin.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Admin])
            .params(&["Id", "IfMatch", "IdempotencyKey"])
            .body::<worklog::VerifyBody>(true)
            .answers::<aggregate::Versioned<opsledger_domain::worklog::Backup>>(200, "The backup after the verification (or, with a known `Idempotency-Key`, the first response is replayed).", &["ETag", "Idempotent-Replayed"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (409, "VersionConflict"), (412, "PreconditionFailed"), (413, "PayloadTooLarge"), (415, "UnsupportedMediaType"), (422, "WorkUnprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::GET, "/api/v1/runbooks", web::get().to(runbooks::runbook_list))
            .op("runbook_list", "runbooks", "List runbooks", "Runbooks at their latest version, newest first, from the read model.\n\nRoles: operator, maintainer, approver, auditor, admin.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Approver, Role::Auditor, Role::Admin])
            .query::<runbooks::RunbookListQuery>()
            .answers::<common::Page<opsledger_store::operations::RunbookRow>>(200, "A page of runbooks.", &[])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (413, "PayloadTooLarge"), (422, "Unprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::POST, "/api/v1/runbooks", web::post().to(runbooks::runbook_publish))
            .op("runbook_publish", "runbooks", "Publish a runbook", "Publishes version 1 of a new runbook (`RunbookPublished` on a stream `runbook-<id>`, whose version is the runbook's).\n\nRoles: operator, maintainer, admin.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Admin])
            .params(&["IdempotencyKey"])
            .body::<runbooks::RunbookBody>(true)
            .answers::<runbooks::RunbookView<'static>>(201, "The runbook at version 1 (or, with a known `Idempotency-Key`, the first response is replayed).", &["Location", "ETag=ETagCreated", "Idempotent-Replayed"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (409, "Conflict"), (413, "PayloadTooLarge"), (415, "UnsupportedMediaType"), (422, "WorkUnprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::GET, "/api/v1/runbooks/{id}", web::get().to(runbooks::runbook_get))
            .op("runbook_get", "runbooks", "Get a runbook", "A runbook at its latest version, or at `version`. The `ETag` is always the latest version: send it as `If-Match` when publishing the next.\n\nRoles: operator, maintainer, approver, auditor, admin.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Approver, Role::Auditor, Role::Admin])
            .params(&["Id"])
            .query::<runbooks::RunbookQuery>()
            .answers::<runbooks::RunbookView<'static>>(200, "The runbook.", &["ETag"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (413, "PayloadTooLarge"), (422, "Unprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::POST, "/api/v1/runbooks/{id}/versions", web::post().to(runbooks::runbook_version_publish))
            .op("runbook_version_publish", "runbooks", "Publish a new version", "Publishes the next version of the runbook, replacing its title, service and steps. Executions already started keep following the version they started on.\n\nRoles: operator, maintainer, admin.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Admin])
            .params(&["Id", "IfMatch", "IdempotencyKey"])
            .body::<runbooks::RunbookBody>(true)
            .answers::<runbooks::RunbookView<'static>>(201, "The runbook at its new version; `Location` names it with `?version=` (or, with a known `Idempotency-Key`, the first response is replayed).", &["Location", "ETag=ETagCreated", "Idempotent-Replayed"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (409, "VersionConflict"), (412, "PreconditionFailed"), (413, "PayloadTooLarge"), (415, "UnsupportedMediaType"), (422, "WorkUnprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::POST, "/api/v1/runbooks/{id}/executions", web::post().to(runbooks::execution_start))
            .op("execution_start", "runbooks", "Start an execution", "Starts an execution of the runbook's current version (`RunbookExecutionStarted` on a stream `execution-<id>`), pinned to it: its steps are copied into the execution. The body may be left out.\n\nRoles: operator, maintainer, admin.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Admin])
            .params(&["Id", "IdempotencyKey"])
            .body::<runbooks::StartBody>(false)
            .answers::<runbooks::ExecutionView<'static>>(201, "The execution, in progress (or, with a known `Idempotency-Key`, the first response is replayed).", &["Location", "ETag=ETagCreated", "Idempotent-Replayed"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (409, "Conflict"), (413, "PayloadTooLarge"), (415, "UnsupportedMediaType"), (422, "WorkUnprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::GET, "/api/v1/executions", web::get().to(runbooks::execution_list))
            .op("execution_list", "runbooks", "List executions", "Runbook executions, newest first, from the read model (which may briefly lag a write): those in progress (`status`), of a runbook, or serving an incident. Unknown query parameters are 400.\n\nRoles: operator, maintainer, approver, auditor, admin.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Approver, Role::Auditor, Role::Admin])
            .query::<runbooks::ExecutionListQuery>()
            .answers::<common::Page<runbooks::ExecutionView<'static>>>(200, "A page of executions.", &[])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (413, "PayloadTooLarge"), (422, "Unprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::GET, "/api/v1/executions/{id}", web::get().to(runbooks::execution_get))
            .op("execution_get", "runbooks", "Get an execution", "An execution with each step: who completed it and when, and who confirmed it when it asks for a second person. Read from its stream.\n\nRoles: operator, maintainer, approver, auditor, admin.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Approver, Role::Auditor, Role::Admin])
            .params(&["Id"])
            .answers::<runbooks::ExecutionView<'static>>(200, "The execution.", &["ETag"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (413, "PayloadTooLarge"), (422, "Unprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::POST, "/api/v1/executions/{id}/steps/{n}/complete", web::post().to(runbooks::step_complete))
            .op("step_complete", "runbooks", "Complete a step", "Completes step `n` (`StepCompleted`). Steps are completed strictly in order, and not while an earlier step marked `double_check` waits for its confirmation. The body may be left out.\n\nRoles: operator, maintainer, admin.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Admin])
            .params(&["Id", "StepNumber", "IfMatch", "IdempotencyKey"])
            .body::<runbooks::CompleteBody>(false)
            .answers::<runbooks::ExecutionView<'static>>(200, "The execution after the step (or, with a known `Idempotency-Key`, the first response is replayed).", &["ETag", "Idempotent-Replayed"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (409, "ExecutionConflict"), (412, "PreconditionFailed"), (413, "PayloadTooLarge"), (415, "UnsupportedMediaType"), (422, "WorkUnprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::POST, "/api/v1/executions/{id}/steps/{n}/confirm", web::post().to(runbooks::step_confirm))
            .op("step_confirm", "runbooks", "Confirm a step", "Confirms a completed step marked `double_check` (`StepDoubleChecked`). The confirmer must be a second, different person: the step's completer is refused with 409. The body may be left out.\n\nRoles: operator, maintainer, admin.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Admin])
            .params(&["Id", "StepNumber", "IfMatch", "IdempotencyKey"])
            .body::<runbooks::ConfirmBody>(false)
            .answers::<runbooks::ExecutionView<'static>>(200, "The execution after the confirmation (or, with a known `Idempotency-Key`, the first response is replayed).", &["ETag", "Idempotent-Replayed"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (409, "ExecutionConflict"), (412, "PreconditionFailed"), (413, "PayloadTooLarge"), (415, "UnsupportedMediaType"), (422, "WorkUnprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::POST, "/api/v1/executions/{id}/finish", web::post().to(runbooks::execution_finish))
            .op("execution_finish", "runbooks", "Finish an execution", "Finishes the execution (`RunbookExecutionFinished`): `succeeded` only when every step is completed and confirmed where asked; `aborted` at any point, with a note saying why.\n\nRoles: operator, maintainer, admin.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Admin])
            .params(&["Id", "IfMatch", "IdempotencyKey"])
            .body::<runbooks::FinishBody>(true)
            .answers::<runbooks::ExecutionView<'static>>(200, "The finished execution (or, with a known `Idempotency-Key`, the first response is replayed).", &["ETag", "Idempotent-Replayed"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (409, "ExecutionConflict"), (412, "PreconditionFailed"), (413, "PayloadTooLarge"), (415, "UnsupportedMediaType"), (422, "WorkUnprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::GET, "/api/v1/inquiries", web::get().to(inquiries::inquiry_list))
            .op("inquiry_list", "inquiries", "List inquiries", "Inquiries, newest first, from the read model (which may briefly lag a write). A client user sees only its own client's, without internal fields; naming another client gets an empty page.\n\nRoles: operator, maintainer, approver, auditor, admin, client.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Approver, Role::Auditor, Role::Admin, Role::Client])
            .query::<inquiries::InquiryListQuery>()
            .answers::<common::Page<aggregate::Versioned<opsledger_domain::inquiry::Inquiry>>>(200, "A page of inquiries.", &[])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (413, "PayloadTooLarge"), (422, "Unprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::POST, "/api/v1/inquiries", web::post().to(inquiries::inquiry_open))
            .op("inquiry_open", "inquiries", "Open an inquiry", "Opens an inquiry about a service (`InquiryOpened` on a stream `inquiry-<id>`): a client user about a service of its own client, staff on a client's behalf. It waits in the operations queue.\n\nRoles: client, operator, maintainer, admin.")
            .roles(&[Role::Client, Role::Operator, Role::Maintainer, Role::Admin])
            .params(&["IdempotencyKey"])
            .body::<inquiries::OpenBody>(true)
            .answers::<aggregate::Versioned<opsledger_domain::inquiry::Inquiry>>(201, "The inquiry, open (or, with a known `Idempotency-Key`, the first response is replayed).", &["Location", "ETag=ETagCreated", "Idempotent-Replayed"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (409, "Conflict"), (413, "PayloadTooLarge"), (415, "UnsupportedMediaType"), (422, "WorkUnprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::GET, "/api/v1/inquiries/{id}", web::get().to(inquiries::inquiry_get))
            .op("inquiry_get", "inquiries", "Get an inquiry", "One inquiry, read from its stream. Another client's inquiry is 404 for a client user.\n\nRoles: operator, maintainer, approver, auditor, admin, client.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Approver, Role::Auditor, Role::Admin, Role::Client])
            .params(&["Id"])
            .answers::<aggregate::Versioned<opsledger_domain::inquiry::Inquiry>>(200, "The inquiry.", &["ETag"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (413, "PayloadTooLarge"), (422, "Unprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::POST, "/api/v1/inquiries/{id}/answer", web::post().to(inquiries::inquiry_answer))
            .op("inquiry_answer", "inquiries", "Answer an inquiry", "Records an answer shown to the client (`InquiryAnswered`). An open inquiry becomes answered; an escalated one stays with maintenance. Any number of answers, until it is closed.\n\nRoles: operator, maintainer, admin.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Admin])
            .params(&["Id", "IfMatch", "IdempotencyKey"])
            .body::<inquiries::AnswerBody>(true)
            .answers::<aggregate::Versioned<opsledger_domain::inquiry::Inquiry>>(200, "The inquiry after the answer (or, with a known `Idempotency-Key`, the first response is replayed).", &["ETag", "Idempotent-Replayed"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (409, "InquiryConflict"), (412, "PreconditionFailed"), (413, "PayloadTooLarge"), (415, "UnsupportedMediaType"), (422, "WorkUnprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::POST, "/api/v1/inquiries/{id}/escalate", web::post().to(inquiries::inquiry_escalate))
            .op("inquiry_escalate", "inquiries", "Escalate an inquiry", "Hands an open or answered inquiry to maintenance (`InquiryEscalated`): it leaves the operations queue for the maintenance queue.\n\nRoles: operator, maintainer, admin.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Admin])
            .params(&["Id", "IfMatch", "IdempotencyKey"])
            .body::<inquiries::EscalateBody>(true)
            .answers::<aggregate::Versioned<opsledger_domain::inquiry::Inquiry>>(200, "The inquiry, escalated (or, with a known `Idempotency-Key`, the first response is replayed).", &["ETag", "Idempotent-Replayed"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (409, "InquiryConflict"), (412, "PreconditionFailed"), (413, "PayloadTooLarge"), (415, "UnsupportedMediaType"), (422, "WorkUnprocessable"), (500, "InternalError"), (503, "Unavailable")]),
        Endpoint::new(Method::POST, "/api/v1/inquiries/{id}/close", web::post().to(inquiries::inquiry_close))
            .op("inquiry_close", "inquiries", "Close an inquiry", "Closes the inquiry (`InquiryClosed`): it leaves every queue. A client user may close its own client's. The body may be left out.\n\nRoles: operator, maintainer, admin, client.")
            .roles(&[Role::Operator, Role::Maintainer, Role::Admin, Role::Client])
            .params(&["Id", "IfMatch", "IdempotencyKey"])
            .body::<inquiries::CloseBody>(false)
            .answers::<aggregate::Versioned<opsledger_domain::inquiry::Inquiry>>(200, "The inquiry, closed (or, with a known `Idempotency-Key`, the first response is replayed).", &["ETag", "Idempotent-Replayed"])
            .fails(&[(400, "BadRequest"), (401, "Unauthorized"), (403, "Forbidden"), (404, "NotFound"), (409, "InquiryConflict"), (412, "PreconditionFailed"), (413, "PayloadTooLarge"), (415, "UnsupportedMediaType"), (422, "WorkUnprocessable"), (500, "InternalError"), (503, "Unavailable")]),
    ]
}

/// `(method, path)` of every route, in the OpenAPI path syntax.
pub fn routes() -> Vec<(String, String)> {
    table()
        .into_iter()
        .map(|e| (e.method.as_str().to_lowercase(), e.path.to_owned()))
        .collect()
}

/// Registers every route, grouped by path so a known path with another
/// method answers 405, plus the extractor configs that turn malformed input
/// into problems.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::JsonConfig::default()
            .limit(BODY_LEN_MAX_BYTES)
            .content_type_required(true)
            .error_handler(json_error),
    )
    .app_data(
        web::PathConfig::default()
            .error_handler(|e, _| ApiError::NotFound(format!("no such resource: {e}")).into()),
    )
    .app_data(
        web::QueryConfig::default().error_handler(|e, _| {
            ApiError::BadRequest(format!("invalid query string: {e}")).into()
        }),
    )
    .app_data(web::PayloadConfig::default().limit(BODY_LEN_MAX_BYTES));

    let mut by_path: Vec<(&'static str, Vec<Route>)> = Vec::new();
    for Endpoint {
        path,
        route,
        roles,
        granted,
        ..
    } in table()
    {
        let route = if roles.is_empty() {
            route
        } else {
            route.wrap(actix_web::middleware::from_fn(move |req, next| {
                contract::admit(roles, granted, req, next)
            }))
        };
        match by_path.iter_mut().find(|(p, _)| *p == path) {
            Some((_, routes)) => routes.push(route),
            None => by_path.push((path, vec![route])),
        }
    }
    for (path, routes) in by_path {
        let mut resource = web::resource(path);
        for route in routes {
            resource = resource.route(route);
        }
        cfg.service(resource.default_service(web::to(method_not_allowed)));
    }
}

async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    let status = actix_web::http::StatusCode::METHOD_NOT_ALLOWED;
    problem::problem_response(
        status,
        problem::problem_body(
            status,
            "method-not-allowed",
            &format!("{} is not allowed on {}", req.method(), req.path()),
        ),
    )
}

/// The fallback for unknown paths.
pub async fn not_found(req: HttpRequest) -> HttpResponse {
    let status = actix_web::http::StatusCode::NOT_FOUND;
    problem::problem_response(
        status,
        problem::problem_body(
            status,
            "not-found",
            &format!("there is no resource at {}", req.path()),
        ),
    )
}

fn json_error(err: error::JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
    let api = match &err {
        error::JsonPayloadError::OverflowKnownLength { length, limit } => {
            ApiError::PayloadTooLarge(format!(
                "the body is {length} bytes; at most {limit} are accepted"
            ))
        }
        error::JsonPayloadError::Overflow { limit } => ApiError::PayloadTooLarge(format!(
            "the body is larger than the {limit} bytes accepted"
        )),
        error::JsonPayloadError::ContentType => ApiError::UnsupportedMediaType(
            "the body must be JSON (Content-Type: application/json)".into(),
        ),
        error::JsonPayloadError::Deserialize(e) => {
            ApiError::BadRequest(format!("the body is not valid: {e}"))
        }
        other => ApiError::BadRequest(format!("the body could not be read: {other}")),
    };
    api.into()
}
