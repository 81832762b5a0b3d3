//! Changes: the list with a request form, a change's page with the steps
//! the reader may take now, and the calendar of windows and changes.
//!
//! A step is offered when the reader's roles may take it on a change of its
//! kind and the domain (`change::decide`) would accept it from the reader
//! on the state shown: so the requester is never offered approval (four
//! eyes), and the server refuses it anyway. Steps and requests run through
//! the API's own command path (`api::changes::console_step`).

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use opsledger_api::changes::{step_roles, RequestBody};
use opsledger_api::AppState;
use opsledger_domain::access::Actor;
use opsledger_domain::change::{self, Change, Command};
use opsledger_store::changes::{ChangeFilter, WindowFilter};
use opsledger_store::directory::ClientFilter;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::form::{to_created, Posted};
use crate::session::{reader, see_other, Turned};
use crate::ui::Ui;
use crate::{view, STAFF};

/// Changes the list shows at most.
const LISTED: i64 = 100;

/// The steps, by the last segment of their API route, and whether the form
/// asks for a reason (or, for schedule, a start and an end).
const STEPS: &[&str] = &[
    "submit", "approve", "reject", "schedule", "start", "complete", "fail", "rollback",
];

/// A stand-in for a step's command, to ask the domain whether it applies.
fn placeholder(step: &str, by: &str) -> Option<Command> {
    let now = Utc::now();
    Some(match step {
        "submit" => Command::Submit {
            minutes_spent: None,
        },
        "approve" => Command::Approve {
            by: by.to_owned(),
            comment: None,
            minutes_spent: None,
        },
        "reject" => Command::Reject {
            by: by.to_owned(),
            reason: "x".into(),
            minutes_spent: None,
        },
        "schedule" => Command::Schedule {
            start: now + Duration::days(1),
            end: now + Duration::days(1) + Duration::hours(1),
            window_id: None,
            minutes_spent: None,
        },
        "start" => Command::Start {
            minutes_spent: None,
        },
        "complete" => Command::Complete {
            note: None,
            minutes_spent: None,
        },
        "fail" => Command::Fail {
            reason: "x".into(),
            minutes_spent: None,
        },
        "rollback" => Command::RollBack {
            reason: "x".into(),
            minutes_spent: None,
        },
        _ => return None,
    })
}

/// The steps offered on `change` to `actor`.
fn offered(actor: &Actor, change: &Change) -> Vec<&'static str> {
    STEPS
        .iter()
        .copied()
        .filter(|s| actor.has_any(step_roles(s, change.kind)))
        .filter(|s| {
            placeholder(s, &actor.subject)
                .is_some_and(|c| change::decide(change, c, &change::Context::default()).is_ok())
        })
        .collect()
}

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    pub status: Option<String>,
    pub as_of: Option<String>,
}

fn staff(req: &HttpRequest) -> Result<Actor, Turned> {
    reader(req, STAFF, "changes are the teams' own")
}

/// `/console/changes`: newest first, with the form to request one.
pub async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> HttpResponse {
    let actor = match staff(&req) {
        Ok(a) => a,
        Err(turned) => return turned.page(&req),
    };
    let as_of = match view::instant(query.as_of.as_deref()) {
        Ok(at) => at,
        Err(why) => return view::bad_request(&req, &why),
    };
    let status = query.status.clone().filter(|s| !s.is_empty());
    // Then, the status asked is the status then: every change is read, and
    // each folded as it stood.
    let filter = ChangeFilter {
        status: status.clone().filter(|_| as_of.is_none()),
        ..ChangeFilter::default()
    };
    let tenant = actor.tenant_id;
    let (changes, services) = tokio::join!(
        opsledger_store::changes::list_changes(&state.pool, tenant, &filter, None, LISTED),
        opsledger_store::directory::list_services(
            &state.pool,
            tenant,
            ClientFilter::All,
            None,
            500
        )
    );
    let changes = match (changes, as_of) {
        (Ok(now), Some(at)) => {
            let ids: Vec<Uuid> = now.iter().map(|c| c.item.id).collect();
            opsledger_app::history::states_at::<Change>(state.ledger(), tenant, &ids, at)
                .await
                .map(|then| {
                    then.into_iter()
                        .filter(|(_, c, _)| {
                            status.as_deref().is_none_or(|s| c.status.as_str() == s)
                        })
                        .map(|(_, item, version)| opsledger_store::changes::Versioned {
                            item,
                            version,
                        })
                        .collect()
                })
        }
        (read, _) => read,
    };
    match (changes, services) {
        (Ok(changes), Ok(services)) => view::page(
            &req,
            "changes.html",
            minijinja::context! {
                changes => changes,
                services => services,
                status => query.status,
                as_of => as_of,
                may_request => as_of.is_none() && actor.has_any(opsledger_api::changes::STANDARD_CHANGERS),
            },
        ),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "reading changes failed");
            view::unavailable(&req)
        }
    }
}

/// `POST /console/changes`: requests a change; to its page.
pub async fn request(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> HttpResponse {
    let actor = match staff(&req) {
        Ok(a) => a,
        Err(turned) => return turned.page(&req),
    };
    let posted = match Posted::checked(&req, &body) {
        Ok(p) => p,
        Err(unfit) => return unfit.page(&req),
    };
    // Repeated `service_ids` make a list; the rest are single texts.
    let mut map = serde_json::Map::new();
    let mut services = Vec::new();
    for (k, v) in &posted.fields {
        if k == "service_ids" {
            services.push(serde_json::Value::String(v.clone()));
        } else {
            map.insert(k.clone(), serde_json::Value::String(v.clone()));
        }
    }
    map.insert("service_ids".into(), serde_json::Value::Array(services));
    let body: RequestBody = match serde_json::from_value(serde_json::Value::Object(map)) {
        Ok(b) => b,
        Err(e) => {
            return view::failed(
                &req,
                StatusCode::UNPROCESSABLE_ENTITY,
                "Unprocessable",
                &e.to_string(),
            )
        }
    };
    match opsledger_api::changes::console_request(state, actor, req.clone(), body).await {
        Ok(res) => to_created(&res, "changes", "changes"),
        Err(e) => view::api_error(&req, e),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    pub as_of: Option<String>,
}

/// `/console/changes/{id}`.
pub async fn page(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    query: web::Query<PageQuery>,
) -> HttpResponse {
    let actor = match staff(&req) {
        Ok(a) => a,
        Err(turned) => return turned.page(&req),
    };
    let Ok(id) = id.parse::<Uuid>() else {
        return view::not_found(&req);
    };
    let as_of = match view::instant(query.as_of.as_deref()) {
        Ok(at) => at,
        Err(why) => return view::bad_request(&req, &why),
    };
    render(&req, &state, &actor, id, as_of, None, StatusCode::OK).await
}

async fn render(
    req: &HttpRequest,
    state: &AppState,
    actor: &Actor,
    id: Uuid,
    as_of: Option<DateTime<Utc>>,
    notice: Option<String>,
    status: StatusCode,
) -> HttpResponse {
    let (change, version, events) = match opsledger_app::run::load::<Change>(
        state.ledger(),
        actor.tenant_id,
        id,
        as_of,
    )
    .await
    {
        Ok((Some(c), v, events)) => (c, v, events),
        Ok((None, _, _)) => return view::not_found(req),
        Err(e) => {
            tracing::error!(error = %e, "reading a change failed");
            return view::unavailable(req);
        }
    };
    if let (Some(n), false) = (&notice, view::wants_html(req)) {
        return view::failed(req, status, "Conflict", n);
    }
    let steps = if as_of.is_some() {
        Vec::new()
    } else {
        offered(actor, &change)
    };
    let history: Vec<History> = events
        .iter()
        .map(|e| History {
            event_type: e.event_type.clone(),
            recorded_at: e.recorded_at,
            actor: e.metadata["actor"].as_str().map(str::to_owned),
        })
        .collect();
    let mut res = view::page(
        req,
        "change.html",
        minijinja::context! {
            change => change,
            status => change.status.as_str(),
            version => version,
            steps => steps,
            history => history,
            notice => notice,
            as_of => as_of,
        },
    );
    *res.status_mut() = status;
    res
}

#[derive(Debug, Serialize)]
struct History {
    event_type: String,
    recorded_at: DateTime<Utc>,
    actor: Option<String>,
}

/// `POST /console/changes/{id}/{step}`.
pub async fn step(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> HttpResponse {
    let actor = match staff(&req) {
        Ok(a) => a,
        Err(turned) => return turned.page(&req),
    };
    let (id, name) = path.into_inner();
    let (mut posted, id, version) = match Posted::on_record(&req, &body, &id) {
        Ok(on) => on,
        Err(unfit) => return unfit.page(&req),
    };
    // A browser's date-time field has no zone: it is the reader's.
    let ui = Ui::of(&req);
    for (k, v) in posted.fields.iter_mut() {
        if k == "start" || k == "end" {
            if let Some(at) = crate::ui::local_instant(v, ui.tz) {
                *v = at.to_rfc3339();
            }
        }
    }
    let fields = posted.encoded();
    match opsledger_api::changes::console_step(
        state.clone(),
        actor.clone(),
        req.clone(),
        id,
        version,
        &name,
        &fields,
    )
    .await
    {
        Ok(Some(_)) => see_other(&format!("/console/changes/{id}")),
        Ok(None) => view::not_found(&req),
        Err(opsledger_api::problem::ApiError::PreconditionFailed { detail, .. }) => {
            let notice =
                format!("Someone else acted first, and your {name} was not applied: {detail}");
            render(
                &req,
                &state,
                &actor,
                id,
                None,
                Some(notice),
                StatusCode::CONFLICT,
            )
            .await
        }
        Err(opsledger_api::problem::ApiError::Conflict { detail, .. }) => {
            render(
                &req,
                &state,
                &actor,
                id,
                None,
                Some(detail),
                StatusCode::CONFLICT,
            )
            .await
        }
        Err(e) => view::api_error(&req, e),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct CalendarQuery {
    /// `week` (default) or `month`.
    pub view: Option<String>,
    /// A day in the period shown (`YYYY-MM-DD`); today if absent.
    pub at: Option<String>,
    /// The calendar as it was known then.
    pub as_of: Option<String>,
}

/// One thing on the calendar.
#[derive(Debug, Serialize)]
struct Planned {
    kind: &'static str,
    id: Uuid,
    title: String,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    status: String,
}

/// A day of the calendar and what is planned in it.
#[derive(Debug, Serialize)]
struct Day {
    date: NaiveDate,
    items: Vec<usize>,
}

/// `/console/calendar`: maintenance windows (each occurrence) and scheduled
/// changes, by week or month, days in the reader's time zone.
pub async fn calendar(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<CalendarQuery>,
) -> HttpResponse {
    let actor = match staff(&req) {
        Ok(a) => a,
        Err(turned) => return turned.page(&req),
    };
    let ui = Ui::of(&req);
    let as_of = match view::instant(query.as_of.as_deref()) {
        Ok(at) => at,
        Err(why) => return view::bad_request(&req, &why),
    };
    let month = query.view.as_deref() == Some("month");
    let at = match query.at.as_deref().filter(|s| !s.is_empty()) {
        None => Utc::now().with_timezone(&ui.tz).date_naive(),
        Some(s) => match NaiveDate::parse_from_str(s, "%Y-%m-%d") {
            Ok(d) => d,
            Err(e) => {
                return view::bad_request(
                    &req,
                    &format!("at must be a date such as 2026-12-07: {e}"),
                )
            }
        },
    };
    let (first, days) = if month {
        let first = at.with_day(1).unwrap_or(at);
        let next = first
            .checked_add_months(chrono::Months::new(1))
            .unwrap_or(first);
        (first, (next - first).num_days())
    } else {
        (
            at - Duration::days(at.weekday().num_days_from_monday().into()),
            7,
        )
    };
    let midnight = |d: NaiveDate| crate::ui::midnight(d, ui.tz);
    let (from, to) = (midnight(first), midnight(first + Duration::days(days)));
    let tenant = actor.tenant_id;
    let every = WindowFilter::default();
    let (windows, changes) = tokio::join!(
        opsledger_store::changes::list_windows(&state.pool, tenant, &every, None, 500),
        opsledger_store::changes::scheduled_changes(&state.pool, tenant, from, 500)
    );
    let (windows, changes) = match (windows, changes, as_of) {
        (Ok(w), Ok(c), Some(at)) => {
            let (wids, cids): (Vec<Uuid>, Vec<Uuid>) = (
                w.iter().map(|w| w.item.id).collect(),
                c.iter().map(|c| c.item.id).collect(),
            );
            let ledger = state.ledger();
            let (w, c) = tokio::join!(
                opsledger_app::history::states_at::<opsledger_domain::window::Window>(
                    ledger, tenant, &wids, at
                ),
                opsledger_app::history::states_at::<Change>(ledger, tenant, &cids, at)
            );
            let versioned =
                |(_, item, version)| opsledger_store::changes::Versioned { item, version };
            match (w, c) {
                (Ok(w), Ok(c)) => (
                    w.into_iter().map(versioned).collect::<Vec<_>>(),
                    c.into_iter()
                        .map(|(_, item, version)| opsledger_store::changes::Versioned {
                            item,
                            version,
                        })
                        .collect::<Vec<_>>(),
                ),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::error!(error = %e, "reading the calendar then failed");
                    return view::unavailable(&req);
                }
            }
        }
        (Ok(w), Ok(c), None) => (w, c),
        (Err(e), _, _) | (_, Err(e), _) => {
            tracing::error!(error = %e, "reading the calendar failed");
            return view::unavailable(&req);
        }
    };
    let mut planned: Vec<Planned> = Vec::new();
    for w in windows {
        for (start, end) in w.item.occurrences(from, to) {
            planned.push(Planned {
                kind: "window",
                id: w.item.id,
                title: w.item.title.clone(),
                start,
                end,
                status: w.item.status.as_str().to_owned(),
            });
        }
    }
    for c in changes {
        if let Some(s) = c.item.schedule.as_ref().filter(|s| s.start < to) {
            planned.push(Planned {
                kind: "change",
                id: c.item.id,
                title: c.item.title.clone(),
                start: s.start,
                end: s.end,
                status: c.item.status.as_str().to_owned(),
            });
        }
    }
    planned.sort_by_key(|p| (p.start, p.id));
    let grid: Vec<Day> = (0..days)
        .map(|n| {
            let date = first + Duration::days(n);
            let (a, b) = (midnight(date), midnight(date + Duration::days(1)));
            Day {
                date,
                items: planned
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| p.start < b && p.end > a)
                    .map(|(i, _)| i)
                    .collect(),
            }
        })
        .collect();
    let step = if month {
        (
            first
                .checked_sub_months(chrono::Months::new(1))
                .unwrap_or(first),
            first
                .checked_add_months(chrono::Months::new(1))
                .unwrap_or(first),
        )
    } else {
        (first - Duration::days(7), first + Duration::days(7))
    };
    view::page(
        &req,
        "calendar.html",
        minijinja::context! {
            view => if month { "month" } else { "week" },
            first => first.to_string(),
            days => grid,
            planned => planned,
            previous => step.0.to_string(),
            next => step.1.to_string(),
            as_of => as_of,
        },
    )
}
