//! The HTTP surface of opsledger (SPEC §7).
//!
//! Owns: actix-web handlers, request and response types, authentication and
//! role checks, problem+json errors, and the route table (`routes`) that the
//! OpenAPI document is generated from (`contract`).
//!
//! Must never import: SQL or SMTP. Handlers parse input into domain values,
//! ask the domain to decide, append through the store, and map the outcome.

pub mod aggregate;
pub mod audit;
pub mod auth;
pub mod backup_schedules;
pub mod changes;
pub mod common;
pub mod contract;
pub mod directory;
pub mod escalation;
pub mod extract;
pub mod feed;
pub mod heartbeats;
pub mod idempotency;
pub mod incidents;
pub mod input;
pub mod inquiries;
pub mod integrations;
pub mod metrics;
pub mod probes;
pub mod problem;
pub mod proposals;
pub mod reports;
pub mod roster;
pub mod routes;
pub mod runbooks;
pub mod system;
pub mod tenants;
pub mod thresholds;
pub mod windows;
pub mod wire;
pub mod work;
pub mod worklog;

use actix_web::{error, web, HttpRequest, HttpResponse, Route};
use opsledger_store::projection::SharedProjection;
use opsledger_store::{Committer, Pool};

use crate::contract::Endpoint;
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
    /// The families counted as things happen (`/metrics`): this app's own.
    pub metrics: metrics::Metrics,
    /// The shortest probe interval a definition may ask for.
    pub probe_interval_min_s: u32,
    /// The shortest backup period (and verification delay) a schedule may
    /// ask for.
    pub backup_period_min_s: u32,
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

/// `(method, path)` of every route, in the OpenAPI path syntax.
pub fn routes() -> Vec<(String, String)> {
    routes::table()
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
    } in routes::table()
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
