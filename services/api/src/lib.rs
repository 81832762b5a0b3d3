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

use crate::problem::ApiError;

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
fn table() -> Vec<(Method, &'static str, Route)> {
    vec![
        // Ingestion first: actix tries routes in order, and these carry the
        // most requests by far.
        (
            Method::POST,
            "/api/v1/alerts",
            web::post().to(integrations::alert_post),
        ),
        (
            Method::POST,
            "/api/v1/integrations/alertmanager",
            web::post().to(integrations::alertmanager_post),
        ),
        (
            Method::POST,
            "/api/v1/integrations/pagerduty",
            web::post().to(integrations::pagerduty_post),
        ),
        (
            Method::POST,
            "/api/v1/integrations/grafana",
            web::post().to(integrations::grafana_post),
        ),
        (Method::GET, "/healthz", web::get().to(system::healthz)),
        (Method::GET, "/readyz", web::get().to(system::readyz)),
        (Method::GET, "/metrics", web::get().to(system::metrics)),
        (Method::GET, "/openapi.json", web::get().to(system::openapi)),
        (
            Method::GET,
            "/api/v1/clients",
            web::get().to(directory::client_list),
        ),
        (
            Method::POST,
            "/api/v1/clients",
            web::post().to(directory::client_register),
        ),
        (
            Method::GET,
            "/api/v1/clients/{id}",
            web::get().to(directory::client_get),
        ),
        (
            Method::GET,
            "/api/v1/services",
            web::get().to(directory::service_list),
        ),
        (
            Method::POST,
            "/api/v1/services",
            web::post().to(directory::service_register),
        ),
        (
            Method::GET,
            "/api/v1/services/{id}",
            web::get().to(directory::service_get),
        ),
        (
            Method::GET,
            "/api/v1/alerts",
            web::get().to(incidents::alert_list),
        ),
        (
            Method::GET,
            "/api/v1/alerts/{id}",
            web::get().to(incidents::alert_get),
        ),
        (
            Method::GET,
            "/api/v1/incidents",
            web::get().to(incidents::incident_list),
        ),
        (
            Method::POST,
            "/api/v1/incidents",
            web::post().to(incidents::incident_open),
        ),
        (
            Method::GET,
            "/api/v1/incidents/{id}",
            web::get().to(incidents::incident_get),
        ),
        (
            Method::GET,
            "/api/v1/incidents/{id}/timeline",
            web::get().to(incidents::incident_timeline),
        ),
        (
            Method::POST,
            "/api/v1/incidents/{id}/acknowledge",
            web::post().to(incidents::incident_acknowledge),
        ),
        (
            Method::POST,
            "/api/v1/incidents/{id}/notes",
            web::post().to(incidents::incident_command::<incidents::NoteBody>),
        ),
        (
            Method::POST,
            "/api/v1/incidents/{id}/actions",
            web::post().to(incidents::incident_command::<incidents::ActionBody>),
        ),
        (
            Method::POST,
            "/api/v1/incidents/{id}/findings",
            web::post().to(incidents::incident_command::<incidents::FindingBody>),
        ),
        (
            Method::POST,
            "/api/v1/incidents/{id}/mitigate",
            web::post().to(incidents::incident_mitigate),
        ),
        (
            Method::POST,
            "/api/v1/incidents/{id}/resolve",
            web::post().to(incidents::incident_resolve),
        ),
        (
            Method::POST,
            "/api/v1/incidents/{id}/reopen",
            web::post().to(incidents::incident_command::<incidents::ReopenBody>),
        ),
        (
            Method::POST,
            "/api/v1/incidents/{id}/close",
            web::post().to(incidents::incident_close),
        ),
        (
            Method::POST,
            "/api/v1/incidents/{id}/severity",
            web::post().to(incidents::incident_command::<incidents::SeverityBody>),
        ),
        (
            Method::POST,
            "/api/v1/incidents/{id}/impact",
            web::post().to(incidents::incident_command::<incidents::ImpactBody>),
        ),
        (
            Method::POST,
            "/api/v1/incidents/{id}/impact-level",
            web::post().to(incidents::incident_command::<incidents::ImpactLevelBody>),
        ),
        (
            Method::POST,
            "/api/v1/incidents/{id}/triage",
            web::post().to(incidents::incident_command::<incidents::TriageBody>),
        ),
        (
            Method::GET,
            "/api/v1/users",
            web::get().to(roster::user_list),
        ),
        (
            Method::POST,
            "/api/v1/users",
            web::post().to(roster::user_register),
        ),
        (
            Method::GET,
            "/api/v1/users/{id}",
            web::get().to(roster::user_get),
        ),
        (
            Method::GET,
            "/api/v1/escalation-policies",
            web::get().to(roster::policy_list),
        ),
        (
            Method::POST,
            "/api/v1/escalation-policies",
            web::post().to(roster::policy_define),
        ),
        (
            Method::GET,
            "/api/v1/escalation-policies/{id}",
            web::get().to(roster::policy_get),
        ),
        (
            Method::GET,
            "/api/v1/schedules",
            web::get().to(roster::schedule_list),
        ),
        (
            Method::POST,
            "/api/v1/schedules",
            web::post().to(roster::schedule_define),
        ),
        (
            Method::GET,
            "/api/v1/schedules/{id}",
            web::get().to(roster::schedule_get),
        ),
        (
            Method::POST,
            "/api/v1/schedules/{id}/overrides",
            web::post().to(roster::override_add),
        ),
        (
            Method::GET,
            "/api/v1/schedules/{id}/oncall",
            web::get().to(roster::schedule_oncall),
        ),
        (
            Method::GET,
            "/api/v1/subscriptions",
            web::get().to(roster::subscription_list),
        ),
        (
            Method::POST,
            "/api/v1/subscriptions",
            web::post().to(roster::subscription_create),
        ),
        (
            Method::GET,
            "/api/v1/subscriptions/{id}",
            web::get().to(roster::subscription_get),
        ),
        (
            Method::DELETE,
            "/api/v1/subscriptions/{id}",
            web::delete().to(roster::subscription_cancel),
        ),
        (
            Method::GET,
            "/api/v1/queues/operations",
            web::get().to(roster::queue_operations),
        ),
        (
            Method::GET,
            "/api/v1/queues/maintenance",
            web::get().to(roster::queue_maintenance),
        ),
        (
            Method::GET,
            "/api/v1/proposals",
            web::get().to(proposals::proposal_list),
        ),
        (
            Method::POST,
            "/api/v1/proposals",
            web::post().to(proposals::proposal_raise),
        ),
        (
            Method::GET,
            "/api/v1/proposals/{id}",
            web::get().to(proposals::proposal_get),
        ),
        (
            Method::POST,
            "/api/v1/proposals/{id}/approve",
            web::post().to(proposals::proposal_approve),
        ),
        (
            Method::POST,
            "/api/v1/proposals/{id}/reject",
            web::post().to(proposals::proposal_reject),
        ),
        (
            Method::POST,
            "/api/v1/proposals/{id}/implement",
            web::post().to(proposals::proposal_implement),
        ),
        (
            Method::POST,
            "/api/v1/proposals/{id}/verify",
            web::post().to(proposals::proposal_verify),
        ),
        (
            Method::GET,
            "/api/v1/reports/downtime",
            web::get().to(reports::report_downtime),
        ),
        (
            Method::GET,
            "/api/v1/reports/metrics",
            web::get().to(reports::report_metrics),
        ),
        (
            Method::GET,
            "/api/v1/reports/monthly",
            web::get().to(reports::report_monthly),
        ),
        (Method::GET, "/api/v1/audit", web::get().to(audit::search)),
        (Method::GET, "/api/v1/audit/key", web::get().to(audit::key)),
        (
            Method::GET,
            "/api/v1/audit/checkpoint",
            web::get().to(audit::checkpoint),
        ),
        (
            Method::GET,
            "/api/v1/audit/proof/inclusion",
            web::get().to(audit::inclusion),
        ),
        (
            Method::GET,
            "/api/v1/audit/proof/consistency",
            web::get().to(audit::consistency),
        ),
        (
            Method::GET,
            "/api/v1/audit/export",
            web::get().to(audit::export),
        ),
        (
            Method::GET,
            "/api/v1/audit/verify",
            web::get().to(audit::verify),
        ),
        (Method::GET, "/api/v1/events", web::get().to(feed::page)),
        (
            Method::GET,
            "/api/v1/events/readers",
            web::get().to(feed::readers),
        ),
        (
            Method::PUT,
            "/api/v1/events/readers/{subject}",
            web::put().to(feed::reader_grant),
        ),
        (
            Method::DELETE,
            "/api/v1/events/readers/{subject}",
            web::delete().to(feed::reader_revoke),
        ),
        (
            Method::GET,
            "/api/v1/events/stream",
            web::get().to(feed::stream),
        ),
        (
            Method::GET,
            "/api/v1/work",
            web::get().to(work::work_ledger),
        ),
        (
            Method::GET,
            "/api/v1/notifications",
            web::get().to(roster::notification_list),
        ),
        (
            Method::POST,
            "/api/v1/incidents/{id}/escalate",
            web::post().to(escalation::incident_escalate),
        ),
        (
            Method::POST,
            "/api/v1/incidents/{id}/handoff",
            web::post().to(incidents::incident_command::<incidents::HandOffBody>),
        ),
        (
            Method::POST,
            "/api/v1/incidents/{id}/assign",
            web::post().to(incidents::incident_command::<incidents::AssignBody>),
        ),
        (
            Method::POST,
            "/api/v1/incidents/{id}/unassign",
            web::post().to(incidents::incident_unassign),
        ),
        (
            Method::GET,
            "/api/v1/changes",
            web::get().to(changes::change_list),
        ),
        (
            Method::POST,
            "/api/v1/changes",
            web::post().to(changes::change_request),
        ),
        // Before `/changes/{id}`, which would take `history` for an id.
        (
            Method::GET,
            "/api/v1/changes/history",
            web::get().to(changes::change_history),
        ),
        (
            Method::GET,
            "/api/v1/changes/{id}",
            web::get().to(changes::change_get),
        ),
        (
            Method::POST,
            "/api/v1/changes/{id}/submit",
            web::post().to(changes::change_submit),
        ),
        (
            Method::POST,
            "/api/v1/changes/{id}/approve",
            web::post().to(changes::change_approve),
        ),
        (
            Method::POST,
            "/api/v1/changes/{id}/reject",
            web::post().to(changes::change_reject),
        ),
        (
            Method::POST,
            "/api/v1/changes/{id}/schedule",
            web::post().to(changes::change_schedule),
        ),
        (
            Method::POST,
            "/api/v1/changes/{id}/start",
            web::post().to(changes::change_start),
        ),
        (
            Method::POST,
            "/api/v1/changes/{id}/complete",
            web::post().to(changes::change_complete),
        ),
        (
            Method::POST,
            "/api/v1/changes/{id}/fail",
            web::post().to(changes::change_fail),
        ),
        (
            Method::POST,
            "/api/v1/changes/{id}/rollback",
            web::post().to(changes::change_rollback),
        ),
        (
            Method::POST,
            "/api/v1/changes/{id}/review",
            web::post().to(changes::change_review),
        ),
        (
            Method::POST,
            "/api/v1/changes/{id}/links",
            web::post().to(changes::change_link),
        ),
        (
            Method::GET,
            "/api/v1/freezes",
            web::get().to(changes::freeze_list),
        ),
        (
            Method::POST,
            "/api/v1/freezes",
            web::post().to(changes::freeze_declare),
        ),
        (
            Method::GET,
            "/api/v1/freezes/{id}",
            web::get().to(changes::freeze_get),
        ),
        (
            Method::POST,
            "/api/v1/freezes/{id}/lift",
            web::post().to(changes::freeze_lift),
        ),
        (
            Method::GET,
            "/api/v1/maintenance-windows",
            web::get().to(windows::window_list),
        ),
        (
            Method::POST,
            "/api/v1/maintenance-windows",
            web::post().to(windows::window_plan),
        ),
        (
            Method::GET,
            "/api/v1/maintenance-windows/{id}",
            web::get().to(windows::window_get),
        ),
        (
            Method::POST,
            "/api/v1/maintenance-windows/{id}/announce",
            web::post().to(windows::window_announce),
        ),
        (
            Method::POST,
            "/api/v1/maintenance-windows/{id}/start",
            web::post().to(windows::window_start),
        ),
        (
            Method::POST,
            "/api/v1/maintenance-windows/{id}/end",
            web::post().to(windows::window_end),
        ),
        (
            Method::POST,
            "/api/v1/maintenance-windows/{id}/cancel",
            web::post().to(windows::window_cancel),
        ),
        (
            Method::GET,
            "/api/v1/calendar.ics",
            web::get().to(windows::calendar_ics),
        ),
        // Operations work: the work log, runbooks and executions, inquiries.
        (
            Method::GET,
            "/api/v1/worklog",
            web::get().to(worklog::worklog_list),
        ),
        (
            Method::POST,
            "/api/v1/worklog",
            web::post().to(worklog::task_record),
        ),
        (
            Method::GET,
            "/api/v1/worklog/{id}",
            web::get().to(worklog::task_get),
        ),
        (
            Method::POST,
            "/api/v1/backups",
            web::post().to(worklog::backup_record),
        ),
        (
            Method::GET,
            "/api/v1/backups/{id}",
            web::get().to(worklog::backup_get),
        ),
        (
            Method::POST,
            "/api/v1/backups/{id}/verify",
            web::post().to(worklog::backup_verify),
        ),
        (
            Method::GET,
            "/api/v1/runbooks",
            web::get().to(runbooks::runbook_list),
        ),
        (
            Method::POST,
            "/api/v1/runbooks",
            web::post().to(runbooks::runbook_publish),
        ),
        (
            Method::GET,
            "/api/v1/runbooks/{id}",
            web::get().to(runbooks::runbook_get),
        ),
        (
            Method::POST,
            "/api/v1/runbooks/{id}/versions",
            web::post().to(runbooks::runbook_version_publish),
        ),
        (
            Method::POST,
            "/api/v1/runbooks/{id}/executions",
            web::post().to(runbooks::execution_start),
        ),
        (
            Method::GET,
            "/api/v1/executions",
            web::get().to(runbooks::execution_list),
        ),
        (
            Method::GET,
            "/api/v1/executions/{id}",
            web::get().to(runbooks::execution_get),
        ),
        (
            Method::POST,
            "/api/v1/executions/{id}/steps/{n}/complete",
            web::post().to(runbooks::step_complete),
        ),
        (
            Method::POST,
            "/api/v1/executions/{id}/steps/{n}/confirm",
            web::post().to(runbooks::step_confirm),
        ),
        (
            Method::POST,
            "/api/v1/executions/{id}/finish",
            web::post().to(runbooks::execution_finish),
        ),
        (
            Method::GET,
            "/api/v1/inquiries",
            web::get().to(inquiries::inquiry_list),
        ),
        (
            Method::POST,
            "/api/v1/inquiries",
            web::post().to(inquiries::inquiry_open),
        ),
        (
            Method::GET,
            "/api/v1/inquiries/{id}",
            web::get().to(inquiries::inquiry_get),
        ),
        (
            Method::POST,
            "/api/v1/inquiries/{id}/answer",
            web::post().to(inquiries::inquiry_answer),
        ),
        (
            Method::POST,
            "/api/v1/inquiries/{id}/escalate",
            web::post().to(inquiries::inquiry_escalate),
        ),
        (
            Method::POST,
            "/api/v1/inquiries/{id}/close",
            web::post().to(inquiries::inquiry_close),
        ),
    ]
}

/// `(method, path)` of every route, in the OpenAPI path syntax.
pub fn routes() -> Vec<(String, String)> {
    table()
        .into_iter()
        .map(|(m, p, _)| (m.as_str().to_lowercase(), p.to_owned()))
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
    for (_, path, route) in table() {
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
