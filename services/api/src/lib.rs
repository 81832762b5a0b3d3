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
        Endpoint::new(Method::POST, "/api/v1/alerts", web::post().to(integrations::alert_post)),
        Endpoint::new(Method::POST, "/api/v1/integrations/alertmanager", web::post().to(integrations::alertmanager_post)),
        Endpoint::new(Method::POST, "/api/v1/integrations/pagerduty", web::post().to(integrations::pagerduty_post)),
        Endpoint::new(Method::POST, "/api/v1/integrations/grafana", web::post().to(integrations::grafana_post)),
        Endpoint::new(Method::GET, "/healthz", web::get().to(system::healthz)),
        Endpoint::new(Method::GET, "/readyz", web::get().to(system::readyz)),
        Endpoint::new(Method::GET, "/metrics", web::get().to(system::metrics)),
        Endpoint::new(Method::GET, "/openapi.json", web::get().to(system::openapi)),
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
        Endpoint::new(Method::GET, "/api/v1/alerts", web::get().to(incidents::alert_list)),
        Endpoint::new(Method::GET, "/api/v1/alerts/{id}", web::get().to(incidents::alert_get)),
        Endpoint::new(Method::GET, "/api/v1/incidents", web::get().to(incidents::incident_list)),
        Endpoint::new(Method::POST, "/api/v1/incidents", web::post().to(incidents::incident_open)),
        Endpoint::new(Method::GET, "/api/v1/incidents/{id}", web::get().to(incidents::incident_get)),
        Endpoint::new(Method::GET, "/api/v1/incidents/{id}/timeline", web::get().to(incidents::incident_timeline)),
        Endpoint::new(Method::POST, "/api/v1/incidents/{id}/acknowledge", web::post().to(incidents::incident_acknowledge)),
        Endpoint::new(Method::POST, "/api/v1/incidents/{id}/notes", web::post().to(incidents::incident_command::<incidents::NoteBody>)),
        Endpoint::new(Method::POST, "/api/v1/incidents/{id}/actions", web::post().to(incidents::incident_command::<incidents::ActionBody>)),
        Endpoint::new(Method::POST, "/api/v1/incidents/{id}/findings", web::post().to(incidents::incident_command::<incidents::FindingBody>)),
        Endpoint::new(Method::POST, "/api/v1/incidents/{id}/mitigate", web::post().to(incidents::incident_mitigate)),
        Endpoint::new(Method::POST, "/api/v1/incidents/{id}/resolve", web::post().to(incidents::incident_resolve)),
        Endpoint::new(Method::POST, "/api/v1/incidents/{id}/reopen", web::post().to(incidents::incident_command::<incidents::ReopenBody>)),
        Endpoint::new(Method::POST, "/api/v1/incidents/{id}/close", web::post().to(incidents::incident_close)),
        Endpoint::new(Method::POST, "/api/v1/incidents/{id}/severity", web::post().to(incidents::incident_command::<incidents::SeverityBody>)),
        Endpoint::new(Method::POST, "/api/v1/incidents/{id}/impact", web::post().to(incidents::incident_command::<incidents::ImpactBody>)),
        Endpoint::new(Method::POST, "/api/v1/incidents/{id}/impact-level", web::post().to(incidents::incident_command::<incidents::ImpactLevelBody>)),
        Endpoint::new(Method::POST, "/api/v1/incidents/{id}/triage", web::post().to(incidents::incident_command::<incidents::TriageBody>)),
        Endpoint::new(Method::GET, "/api/v1/users", web::get().to(roster::user_list)),
        Endpoint::new(Method::POST, "/api/v1/users", web::post().to(roster::user_register)),
        Endpoint::new(Method::GET, "/api/v1/users/{id}", web::get().to(roster::user_get)),
        Endpoint::new(Method::GET, "/api/v1/escalation-policies", web::get().to(roster::policy_list)),
        Endpoint::new(Method::POST, "/api/v1/escalation-policies", web::post().to(roster::policy_define)),
        Endpoint::new(Method::GET, "/api/v1/escalation-policies/{id}", web::get().to(roster::policy_get)),
        Endpoint::new(Method::GET, "/api/v1/schedules", web::get().to(roster::schedule_list)),
        Endpoint::new(Method::POST, "/api/v1/schedules", web::post().to(roster::schedule_define)),
        Endpoint::new(Method::GET, "/api/v1/schedules/{id}", web::get().to(roster::schedule_get)),
        Endpoint::new(Method::POST, "/api/v1/schedules/{id}/overrides", web::post().to(roster::override_add)),
        Endpoint::new(Method::GET, "/api/v1/schedules/{id}/oncall", web::get().to(roster::schedule_oncall)),
        Endpoint::new(Method::GET, "/api/v1/subscriptions", web::get().to(roster::subscription_list)),
        Endpoint::new(Method::POST, "/api/v1/subscriptions", web::post().to(roster::subscription_create)),
        Endpoint::new(Method::GET, "/api/v1/subscriptions/{id}", web::get().to(roster::subscription_get)),
        Endpoint::new(Method::DELETE, "/api/v1/subscriptions/{id}", web::delete().to(roster::subscription_cancel)),
        Endpoint::new(Method::GET, "/api/v1/queues/operations", web::get().to(roster::queue_operations)),
        Endpoint::new(Method::GET, "/api/v1/queues/maintenance", web::get().to(roster::queue_maintenance)),
        Endpoint::new(Method::GET, "/api/v1/proposals", web::get().to(proposals::proposal_list)),
        Endpoint::new(Method::POST, "/api/v1/proposals", web::post().to(proposals::proposal_raise)),
        Endpoint::new(Method::GET, "/api/v1/proposals/{id}", web::get().to(proposals::proposal_get)),
        Endpoint::new(Method::POST, "/api/v1/proposals/{id}/approve", web::post().to(proposals::proposal_approve)),
        Endpoint::new(Method::POST, "/api/v1/proposals/{id}/reject", web::post().to(proposals::proposal_reject)),
        Endpoint::new(Method::POST, "/api/v1/proposals/{id}/implement", web::post().to(proposals::proposal_implement)),
        Endpoint::new(Method::POST, "/api/v1/proposals/{id}/verify", web::post().to(proposals::proposal_verify)),
        Endpoint::new(Method::GET, "/api/v1/reports/downtime", web::get().to(reports::report_downtime)),
        Endpoint::new(Method::GET, "/api/v1/reports/metrics", web::get().to(reports::report_metrics)),
        Endpoint::new(Method::GET, "/api/v1/reports/monthly", web::get().to(reports::report_monthly)),
        Endpoint::new(Method::GET, "/api/v1/audit", web::get().to(audit::search)),
        Endpoint::new(Method::GET, "/api/v1/audit/key", web::get().to(audit::key)),
        Endpoint::new(Method::GET, "/api/v1/audit/checkpoint", web::get().to(audit::checkpoint)),
        Endpoint::new(Method::GET, "/api/v1/audit/proof/inclusion", web::get().to(audit::inclusion)),
        Endpoint::new(Method::GET, "/api/v1/audit/proof/consistency", web::get().to(audit::consistency)),
        Endpoint::new(Method::GET, "/api/v1/audit/export", web::get().to(audit::export)),
        Endpoint::new(Method::GET, "/api/v1/audit/verify", web::get().to(audit::verify)),
        Endpoint::new(Method::GET, "/api/v1/events", web::get().to(feed::page)),
        Endpoint::new(Method::GET, "/api/v1/events/readers", web::get().to(feed::readers)),
        Endpoint::new(Method::PUT, "/api/v1/events/readers/{subject}", web::put().to(feed::reader_grant)),
        Endpoint::new(Method::DELETE, "/api/v1/events/readers/{subject}", web::delete().to(feed::reader_revoke)),
        Endpoint::new(Method::GET, "/api/v1/events/stream", web::get().to(feed::stream)),
        Endpoint::new(Method::GET, "/api/v1/work", web::get().to(work::work_ledger)),
        Endpoint::new(Method::GET, "/api/v1/notifications", web::get().to(roster::notification_list)),
        Endpoint::new(Method::POST, "/api/v1/incidents/{id}/escalate", web::post().to(escalation::incident_escalate)),
        Endpoint::new(Method::POST, "/api/v1/incidents/{id}/handoff", web::post().to(incidents::incident_command::<incidents::HandOffBody>)),
        Endpoint::new(Method::POST, "/api/v1/incidents/{id}/assign", web::post().to(incidents::incident_command::<incidents::AssignBody>)),
        Endpoint::new(Method::POST, "/api/v1/incidents/{id}/unassign", web::post().to(incidents::incident_unassign)),
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
        Endpoint::new(Method::GET, "/api/v1/maintenance-windows", web::get().to(windows::window_list)),
        Endpoint::new(Method::POST, "/api/v1/maintenance-windows", web::post().to(windows::window_plan)),
        Endpoint::new(Method::GET, "/api/v1/maintenance-windows/{id}", web::get().to(windows::window_get)),
        Endpoint::new(Method::POST, "/api/v1/maintenance-windows/{id}/announce", web::post().to(windows::window_announce)),
        Endpoint::new(Method::POST, "/api/v1/maintenance-windows/{id}/start", web::post().to(windows::window_start)),
        Endpoint::new(Method::POST, "/api/v1/maintenance-windows/{id}/end", web::post().to(windows::window_end)),
        Endpoint::new(Method::POST, "/api/v1/maintenance-windows/{id}/cancel", web::post().to(windows::window_cancel)),
        Endpoint::new(Method::GET, "/api/v1/calendar.ics", web::get().to(windows::calendar_ics)),
        // Operations work: the work log, runbooks and executions, inquiries.
        Endpoint::new(Method::GET, "/api/v1/worklog", web::get().to(worklog::worklog_list)),
        Endpoint::new(Method::POST, "/api/v1/worklog", web::post().to(worklog::task_record)),
        Endpoint::new(Method::GET, "/api/v1/worklog/{id}", web::get().to(worklog::task_get)),
        Endpoint::new(Method::POST, "/api/v1/backups", web::post().to(worklog::backup_record)),
        Endpoint::new(Method::GET, "/api/v1/backups/{id}", web::get().to(worklog::backup_get)),
        Endpoint::new(Method::POST, "/api/v1/backups/{id}/verify", web::post().to(worklog::backup_verify)),
        Endpoint::new(Method::GET, "/api/v1/runbooks", web::get().to(runbooks::runbook_list)),
        Endpoint::new(Method::POST, "/api/v1/runbooks", web::post().to(runbooks::runbook_publish)),
        Endpoint::new(Method::GET, "/api/v1/runbooks/{id}", web::get().to(runbooks::runbook_get)),
        Endpoint::new(Method::POST, "/api/v1/runbooks/{id}/versions", web::post().to(runbooks::runbook_version_publish)),
        Endpoint::new(Method::POST, "/api/v1/runbooks/{id}/executions", web::post().to(runbooks::execution_start)),
        Endpoint::new(Method::GET, "/api/v1/executions", web::get().to(runbooks::execution_list)),
        Endpoint::new(Method::GET, "/api/v1/executions/{id}", web::get().to(runbooks::execution_get)),
        Endpoint::new(Method::POST, "/api/v1/executions/{id}/steps/{n}/complete", web::post().to(runbooks::step_complete)),
        Endpoint::new(Method::POST, "/api/v1/executions/{id}/steps/{n}/confirm", web::post().to(runbooks::step_confirm)),
        Endpoint::new(Method::POST, "/api/v1/executions/{id}/finish", web::post().to(runbooks::execution_finish)),
        Endpoint::new(Method::GET, "/api/v1/inquiries", web::get().to(inquiries::inquiry_list)),
        Endpoint::new(Method::POST, "/api/v1/inquiries", web::post().to(inquiries::inquiry_open)),
        Endpoint::new(Method::GET, "/api/v1/inquiries/{id}", web::get().to(inquiries::inquiry_get)),
        Endpoint::new(Method::POST, "/api/v1/inquiries/{id}/answer", web::post().to(inquiries::inquiry_answer)),
        Endpoint::new(Method::POST, "/api/v1/inquiries/{id}/escalate", web::post().to(inquiries::inquiry_escalate)),
        Endpoint::new(Method::POST, "/api/v1/inquiries/{id}/close", web::post().to(inquiries::inquiry_close)),
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
        path, route, roles, ..
    } in table()
    {
        let route = if roles.is_empty() {
            route
        } else {
            route.wrap(actix_web::middleware::from_fn(move |req, next| {
                contract::admit(roles, req, next)
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
