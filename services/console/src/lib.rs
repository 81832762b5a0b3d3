//! The web console (SPEC §7): the two teams' queues and the pages they work
//! tickets in, server-rendered from the same read models and command path as
//! the API, for browsers.
//!
//! Owns: HTML pages and their templates, the sign-in session (a cookie
//! holding the bearer token), CSRF tokens, the console's static assets
//! (htmx, vendored: the console works on a network with no internet).
//!
//! Must never import: SQL or SMTP. Pages read through `store`'s read-model
//! queries and act through `app`, like the API's handlers.
//!
//! No second path to the data: a page reads what the API would answer its
//! reader, and an action runs the command the API would run.
//! - The incident page loads through `api::incidents::load` (a client's
//!   scope, `as_of`) and acts through `app::incidents::execute`; a form's
//!   fields are read into the API's own body types (`form`), so a form and a
//!   JSON body mean the same.
//! - Changes, inquiries, runbook executions, windows, proposals, the lists
//!   and the reports call the API's handlers in-process with the reader as
//!   `Caller` (`api::changes::console_step`, `api::reports::downtime_figures`,
//!   …): roles, four eyes, a client's scope and query validation are the
//!   API's.
//! - Which buttons a page offers is the domain's answer: the reader's roles
//!   may give the command and `decide` accepts it on the state shown (so a
//!   requester is never offered approval of their own change).
//! - `?as_of=` on every page: records are folded from the events recorded by
//!   then (`app::history::states_at`), since the read models hold only the
//!   present; a banner says so and actions are off.
//!
//! Live lists are Server-Sent Events whose rows the queue page swaps in
//! (htmx's SSE extension). Browser tests drive Debian's chromium through
//! chromedriver and inject axe-core (`ops/browser.sh axe`) into every page
//! they open; screenshots land in `target/console-screenshots`.
//!
//! Security (SPEC §11 S3): every page carries a Content-Security-Policy that
//! allows scripts from this origin only, so no stored text can run as
//! script; templates escape every value; every form carries a CSRF token
//! checked against a cookie of its own (double submit); both cookies are
//! HttpOnly and SameSite=Strict, and Secure behind TLS.

mod assets;
mod changes;
mod client;
mod execution;
mod form;
mod incident;
mod inquiry;
mod lists;
mod notices;
mod pages;
mod prefs;
mod records;
mod reports;
mod services;
mod session;
mod ui;
mod view;

use actix_web::web;
use opsledger_domain::access::Role;

/// Who works the queues and reads incident pages here (the client's view
/// comes separately).
pub(crate) const STAFF: &[Role] = &[
    Role::Operator,
    Role::Maintainer,
    Role::Approver,
    Role::Auditor,
    Role::Admin,
];

/// The JSON an API handler answered, for a page to show: the console calls
/// the API's handlers in-process as the reader.
pub(crate) async fn answered(
    answer: Result<actix_web::HttpResponse, opsledger_api::problem::ApiError>,
) -> Result<serde_json::Value, opsledger_api::problem::ApiError> {
    use opsledger_api::problem::ApiError;
    let body = actix_web::body::to_bytes(answer?.into_body())
        .await
        .map_err(|e| ApiError::Internal(e.to_string().into()))?;
    serde_json::from_slice(&body).map_err(|e| ApiError::Internal(Box::new(e)))
}

/// A queue's team as a path names it.
pub(crate) fn team_of(path: &str) -> Option<&'static str> {
    match path {
        "operations" => Some("operations"),
        "maintenance" => Some("maintenance"),
        _ => None,
    }
}

/// Registers the console's routes. The API's routes are under `/api` and a
/// few fixed paths, so these do not overlap them.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(pages::home))
        .route("/signin", web::get().to(session::signin_form))
        .route("/signin", web::post().to(session::signin))
        .route("/signout", web::post().to(session::signout))
        .route("/console/queues/{team}", web::get().to(pages::queue))
        .route(
            "/console/queues/{team}/live",
            web::get().to(pages::queue_live),
        )
        .route(
            "/console/queues/{team}/acknowledge",
            web::post().to(pages::acknowledge_selected),
        )
        .route("/console/incidents/{id}", web::get().to(incident::page))
        .route(
            "/console/incidents/{id}/{action}",
            web::post().to(incident::act),
        )
        .route("/console/changes", web::get().to(changes::list))
        .route("/console/changes", web::post().to(changes::request))
        .route("/console/changes/{id}", web::get().to(changes::page))
        .route(
            "/console/changes/{id}/{step}",
            web::post().to(changes::step),
        )
        .route("/console/calendar", web::get().to(changes::calendar))
        .route("/console/services", web::get().to(lists::services))
        .route("/console/services/{id}", web::get().to(services::page))
        .route("/console/windows", web::get().to(lists::windows))
        .route("/console/proposals", web::get().to(lists::proposals))
        .route("/console/proposals/{id}", web::get().to(records::proposal))
        .route(
            "/console/proposals/{id}/{step}",
            web::post().to(records::proposal_act),
        )
        .route("/console/windows/{id}", web::get().to(records::window))
        .route(
            "/console/windows/{id}/{step}",
            web::post().to(records::window_act),
        )
        .route("/console/executions", web::get().to(lists::executions))
        .route("/console/executions", web::post().to(execution::start))
        .route("/console/executions/{id}", web::get().to(execution::page))
        .route(
            "/console/executions/{id}/{step}",
            web::post().to(execution::act),
        )
        .route("/console/inquiries", web::get().to(lists::inquiries))
        .route("/console/inquiries", web::post().to(inquiry::file))
        .route("/console/inquiries/{id}", web::get().to(inquiry::page))
        .route(
            "/console/inquiries/{id}/{step}",
            web::post().to(inquiry::act),
        )
        .route("/console/work", web::get().to(lists::work))
        .route("/console/audit", web::get().to(lists::audit))
        .route("/console/reports", web::get().to(reports::page))
        .route("/console/reports/monthly", web::get().to(reports::monthly))
        .route("/console/notices", web::get().to(notices::page))
        .route("/console/client", web::get().to(client::home))
        .route("/console/preferences", web::get().to(prefs::form))
        .route("/console/preferences", web::post().to(prefs::save))
        .route("/assets/{name}", web::get().to(assets::serve));
}
