//! The reading pages that are lists: services, maintenance windows,
//! proposals, runbook executions, inquiries, the work ledger and the audit
//! search.
//!
//! Each calls the API's own list handler in-process with the reader as the
//! caller and the page's query string as the API's query, so a page shows
//! exactly what the API answers that reader (roles, a client's scope, the
//! filters), and its filters live in the URL, shareable; an unknown filter
//! is refused as the API refuses it. `Listing` says which fields the table
//! shows.

use std::future::Future;

use actix_web::{web, HttpRequest, HttpResponse};
use opsledger_api::auth::Caller;
use opsledger_api::problem::ApiError;
use opsledger_api::AppState;
use opsledger_domain::access::{Actor, Role};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::session::reader;
use crate::view;

/// How a cell is shown.
#[derive(Clone, Copy, PartialEq)]
enum Cell {
    Text,
    /// An instant, in the reader's time zone.
    Time,
    /// The number of items of a list.
    Count,
}

/// How a list is read as it stood at a past instant (`?as_of=`).
#[derive(Clone, Copy)]
enum Past {
    /// Each record listed now is folded from the events recorded by then
    /// (those not yet recorded then drop out), and the status filter is
    /// applied to the state then.
    Fold(Records),
    /// The API bounds the list by when facts were recorded, with this
    /// parameter.
    Bound(&'static str),
}

#[derive(Clone, Copy)]
enum Records {
    Service,
    Window,
    Proposal,
    Inquiry,
    Execution,
}

/// A list page: its title, the API list it shows, and its columns (a label
/// and a JSON pointer into each item).
struct Listing {
    title: &'static str,
    past: Past,
    columns: &'static [(&'static str, &'static str, Cell)],
    /// Where a row's title links to, `{id}` replaced.
    link: Option<&'static str>,
    /// Shareable filters: a label and the query string it sets.
    filters: &'static [(&'static str, &'static str)],
    /// A search form's fields: the API's query parameter and its label.
    search: &'static [(&'static str, &'static str)],
}

#[derive(Debug, Serialize)]
struct Row {
    id: String,
    link: Option<String>,
    cells: Vec<Shown>,
}

#[derive(Debug, Serialize)]
struct Shown {
    text: String,
    time: bool,
}

/// The API list `call` answers `actor` for the query string `query`.
async fn listed<Q, F, Fut>(
    query: &str,
    state: web::Data<AppState>,
    actor: Actor,
    call: F,
) -> Result<serde_json::Value, ApiError>
where
    Q: DeserializeOwned,
    F: FnOnce(web::Data<AppState>, Caller, web::Query<Q>) -> Fut,
    Fut: Future<Output = Result<HttpResponse, ApiError>>,
{
    let query = web::Query::<Q>::from_query(query)
        .map_err(|e| ApiError::BadRequest(format!("the page's filters: {e}")))?;
    crate::answered(call(state, Caller(actor), query).await).await
}

fn rows(listing: &Listing, page: &serde_json::Value) -> Vec<Row> {
    let items = page["items"].as_array().map_or(&[][..], Vec::as_slice);
    items
        .iter()
        .map(|item| {
            let id = item["id"]
                .as_str()
                .or_else(|| item["event_id"].as_str())
                .unwrap_or_default()
                .to_owned();
            Row {
                link: listing.link.map(|l| l.replace("{id}", &id)),
                id,
                cells: listing
                    .columns
                    .iter()
                    .map(|(_, pointer, cell)| {
                        let v = item.pointer(pointer).unwrap_or(&serde_json::Value::Null);
                        Shown {
                            text: match (cell, v) {
                                (Cell::Count, v) => v.as_array().map_or(0, Vec::len).to_string(),
                                (_, serde_json::Value::String(s)) => s.clone(),
                                (_, serde_json::Value::Null) => String::new(),
                                (_, v) => v.to_string(),
                            },
                            time: *cell == Cell::Time && v.is_string(),
                        }
                    })
                    .collect(),
            }
        })
        .collect()
}

async fn show<Q, F, Fut>(
    req: HttpRequest,
    state: web::Data<AppState>,
    listing: &'static Listing,
    roles: &[Role],
    call: F,
    extra: minijinja::Value,
) -> HttpResponse
where
    Q: DeserializeOwned,
    F: FnOnce(web::Data<AppState>, Caller, web::Query<Q>) -> Fut,
    Fut: Future<Output = Result<HttpResponse, ApiError>>,
{
    let actor = match reader(&req, roles, "your roles do not reach this page") {
        Ok(a) => a,
        Err(turned) => return turned.page(&req),
    };
    // The page's query is the API's, but for `as_of`, which the page reads.
    let mut asked: Vec<(String, String)> = form_urlencoded::parse(req.query_string().as_bytes())
        .into_owned()
        .collect();
    let as_of = asked
        .iter()
        .find(|(k, _)| k == "as_of")
        .map(|(_, v)| v.clone());
    let as_of = match view::instant(as_of.as_deref()) {
        Ok(at) => at,
        Err(why) => return view::bad_request(&req, &why),
    };
    // A search form's empty fields ask for nothing.
    asked.retain(|(k, v)| k != "as_of" && !v.is_empty());
    let mut status = None;
    if let Some(at) = as_of {
        match listing.past {
            Past::Fold(_) => {
                status = asked
                    .iter()
                    .find(|(k, _)| k == "status")
                    .map(|(_, v)| v.clone());
                asked.retain(|(k, _)| k != "status" && k != "limit");
                asked.push(("limit".into(), "200".into()));
            }
            Past::Bound(param) => asked.push((param.into(), at.to_rfc3339())),
        }
    }
    let api_query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&asked)
        .finish();
    let tenant = actor.tenant_id;
    let listed = match listed(&api_query, state.clone(), actor, call).await {
        Ok(page) => match (as_of, listing.past) {
            (Some(at), Past::Fold(records)) => {
                then(&state, tenant, records, &page, at, status.as_deref()).await
            }
            _ => Ok(page),
        },
        Err(e) => Err(e),
    };
    match listed {
        Ok(page) => view::page(
            &req,
            "list.html",
            minijinja::context! {
                title => listing.title,
                labels => listing.columns.iter().map(|(l, _, _)| *l).collect::<Vec<_>>(),
                rows => rows(listing, &page),
                filters => listing.filters,
                search => listing.search.iter().map(|(param, label)| {
                    let value = form_urlencoded::parse(req.query_string().as_bytes())
                        .find(|(k, _)| k == param)
                        .map(|(_, v)| v.into_owned())
                        .unwrap_or_default();
                    (*param, *label, value)
                }).collect::<Vec<_>>(),
                query => req.query_string(),
                as_of => as_of,
                ..extra
            },
        ),
        Err(e) => view::api_error(&req, e),
    }
}

/// The items of `page`, each as it stood at `at` (those not yet recorded
/// then left out), kept to `status` then.
async fn then(
    state: &AppState,
    tenant: uuid::Uuid,
    records: Records,
    page: &serde_json::Value,
    at: chrono::DateTime<chrono::Utc>,
    status: Option<&str>,
) -> Result<serde_json::Value, ApiError> {
    use opsledger_app::history::states_at;
    let ids: Vec<uuid::Uuid> = page["items"]
        .as_array()
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .filter_map(|i| i["id"].as_str().and_then(|s| s.parse().ok()))
        .collect();
    let ledger = state.ledger();
    fn shown<A: Serialize>(states: Vec<(uuid::Uuid, A, i64)>) -> Vec<serde_json::Value> {
        states
            .into_iter()
            .filter_map(|(_, a, version)| {
                let mut v = serde_json::to_value(a).ok()?;
                v["version"] = version.into();
                Some(v)
            })
            .collect()
    }
    let items = match records {
        Records::Service => shown(
            states_at::<opsledger_domain::directory::Service>(ledger, tenant, &ids, at).await?,
        ),
        Records::Window => {
            shown(states_at::<opsledger_domain::window::Window>(ledger, tenant, &ids, at).await?)
        }
        Records::Proposal => shown(
            states_at::<opsledger_domain::proposal::Proposal>(ledger, tenant, &ids, at).await?,
        ),
        Records::Inquiry => {
            shown(states_at::<opsledger_domain::inquiry::Inquiry>(ledger, tenant, &ids, at).await?)
        }
        Records::Execution => shown(
            states_at::<opsledger_domain::runbook::Execution>(ledger, tenant, &ids, at).await?,
        ),
    };
    let items: Vec<serde_json::Value> = items
        .into_iter()
        .filter(|i| status.is_none_or(|s| i["status"].as_str() == Some(s)))
        .collect();
    Ok(serde_json::json!({ "items": items }))
}

const EVERYONE: &[Role] = &[
    Role::Operator,
    Role::Maintainer,
    Role::Approver,
    Role::Auditor,
    Role::Admin,
    Role::Client,
];

static SERVICES: Listing = Listing {
    past: Past::Fold(Records::Service),
    title: "Services",
    columns: &[
        ("Name", "/name", Cell::Text),
        ("SLA target (%)", "/sla_target_pct", Cell::Text),
        ("Components", "/components", Cell::Count),
        ("Registered", "/registered_at", Cell::Time),
    ],
    link: Some("/console/services/{id}"),
    filters: &[],
    search: &[],
};

static WINDOWS: Listing = Listing {
    past: Past::Fold(Records::Window),
    title: "Windows",
    columns: &[
        ("Title", "/title", Cell::Text),
        ("Status", "/status", Cell::Text),
        ("Starts", "/start", Cell::Time),
        ("Ends", "/end", Cell::Time),
        ("Repeats", "/rrule", Cell::Text),
        ("Services", "/service_ids", Cell::Count),
    ],
    link: Some("/console/windows/{id}"),
    filters: &[
        ("planned", "status=planned"),
        ("announced", "status=announced"),
        ("started", "status=started"),
        ("ended", "status=ended"),
    ],
    search: &[],
};

static PROPOSALS: Listing = Listing {
    past: Past::Fold(Records::Proposal),
    title: "Proposals",
    columns: &[
        ("Title", "/title", Cell::Text),
        ("Status", "/status", Cell::Text),
        ("Raised by", "/raised_by", Cell::Text),
        ("Raised", "/raised_at", Cell::Time),
        ("Decided by", "/decided_by", Cell::Text),
    ],
    link: Some("/console/proposals/{id}"),
    filters: &[
        ("raised", "status=raised"),
        ("approved", "status=approved"),
        ("implemented", "status=implemented"),
        ("verified", "status=verified"),
    ],
    search: &[],
};

static EXECUTIONS: Listing = Listing {
    past: Past::Fold(Records::Execution),
    title: "Runbook executions",
    columns: &[
        ("Title", "/title", Cell::Text),
        ("Status", "/status", Cell::Text),
        ("Next step", "/next_step", Cell::Text),
        (
            "Awaiting confirmation",
            "/awaiting_confirmation",
            Cell::Text,
        ),
        ("Started by", "/started_by", Cell::Text),
        ("Started", "/started_at", Cell::Time),
    ],
    link: Some("/console/executions/{id}"),
    filters: &[
        ("in_progress", "status=in_progress"),
        ("succeeded", "status=succeeded"),
        ("aborted", "status=aborted"),
    ],
    search: &[],
};

static INQUIRIES: Listing = Listing {
    past: Past::Fold(Records::Inquiry),
    title: "Inquiries",
    columns: &[
        ("Subject", "/subject", Cell::Text),
        ("Kind", "/kind", Cell::Text),
        ("Status", "/status", Cell::Text),
        ("Opened", "/opened_at", Cell::Time),
        ("Answers", "/answers", Cell::Count),
    ],
    link: Some("/console/inquiries/{id}"),
    filters: &[
        ("open", "status=open"),
        ("answered", "status=answered"),
        ("escalated", "status=escalated"),
        ("closed", "status=closed"),
    ],
    search: &[],
};

static WORK: Listing = Listing {
    past: Past::Bound("until"),
    title: "Work ledger",
    columns: &[
        ("When", "/occurred_at", Cell::Time),
        ("Work", "/work_class", Cell::Text),
        ("What", "/type", Cell::Text),
        ("Who", "/actor", Cell::Text),
        ("Team", "/team", Cell::Text),
        ("Minutes spent", "/minutes_spent", Cell::Text),
    ],
    link: None,
    filters: &[
        ("operations", "class=operations"),
        ("maintenance", "class=maintenance"),
    ],
    search: &[],
};

static AUDIT: Listing = Listing {
    past: Past::Bound("recorded_to"),
    title: "Audit",
    columns: &[
        ("Position", "/position", Cell::Text),
        ("When", "/recorded_at", Cell::Time),
        ("Stream", "/stream_id", Cell::Text),
        ("Event", "/event_type", Cell::Text),
        ("Who", "/metadata/actor", Cell::Text),
    ],
    link: None,
    filters: &[],
    search: &[
        ("actor", "Who"),
        ("entity", "Record (stream or id)"),
        ("event_type", "Event"),
        ("recorded_from", "From (RFC 3339)"),
        ("recorded_to", "To (RFC 3339)"),
    ],
};

/// The directory's services, each linking to its page (what watches it).
pub async fn services(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    show(
        req,
        state,
        &SERVICES,
        crate::STAFF,
        opsledger_api::directory::service_list,
        minijinja::Value::UNDEFINED,
    )
    .await
}

pub async fn windows(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    show(
        req,
        state,
        &WINDOWS,
        EVERYONE,
        opsledger_api::windows::window_list,
        minijinja::Value::UNDEFINED,
    )
    .await
}

pub async fn proposals(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    show(
        req,
        state,
        &PROPOSALS,
        crate::STAFF,
        opsledger_api::proposals::proposal_list,
        minijinja::Value::UNDEFINED,
    )
    .await
}

/// Runbook executions, with the form to start one.
pub async fn executions(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let runbooks = match crate::session::viewer(&req) {
        Some(a) if a.has_any(opsledger_domain::access::OPERATIONS_WORKERS) => {
            opsledger_store::operations::list_runbooks(&state.pool, a.tenant_id, None, None, 200)
                .await
                .unwrap_or_default()
        }
        _ => Vec::new(),
    };
    let extra = minijinja::context! { runbooks => runbooks };
    show(
        req,
        state,
        &EXECUTIONS,
        crate::STAFF,
        opsledger_api::runbooks::execution_list,
        extra,
    )
    .await
}

/// Inquiries, with the form to file one (a client's about its own services).
pub async fn inquiries(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let services = match crate::session::viewer(&req) {
        Some(a) if a.has_any(opsledger_domain::access::INQUIRY_OPENERS) => {
            crate::inquiry::services_for(&state, &a)
                .await
                .unwrap_or_default()
        }
        _ => Vec::new(),
    };
    let extra = minijinja::context! { services => services };
    show(
        req,
        state,
        &INQUIRIES,
        EVERYONE,
        opsledger_api::inquiries::inquiry_list,
        extra,
    )
    .await
}

pub async fn work(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    show(
        req,
        state,
        &WORK,
        EVERYONE,
        opsledger_api::work::work_ledger,
        minijinja::Value::UNDEFINED,
    )
    .await
}

pub async fn audit(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    show(
        req,
        state,
        &AUDIT,
        &[Role::Auditor, Role::Admin],
        opsledger_api::audit::search,
        minijinja::Value::UNDEFINED,
    )
    .await
}
