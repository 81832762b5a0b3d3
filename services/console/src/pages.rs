//! The pages.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use opsledger_api::AppState;
use opsledger_domain::access::{Actor, Role};
use serde::{Deserialize, Serialize};

use crate::session::{csrf_token, see_other, viewer};
use crate::view;
use crate::view::fragment;
use crate::STAFF;

/// Items a queue page shows at most; the oldest come first.
const QUEUE_LEN: i64 = 200;

/// `/`: the caller's queue, or the sign-in page.
pub async fn home(req: HttpRequest) -> HttpResponse {
    match viewer(&req) {
        Some(actor) if actor.has_any(&[Role::Maintainer]) && !actor.has_any(&[Role::Operator]) => {
            see_other("/console/queues/maintenance")
        }
        Some(actor) if !actor.has_any(STAFF) => see_other("/console/client"),
        Some(_) => see_other("/console/queues/operations"),
        None => see_other("/signin"),
    }
}

/// One row of a queue, as the page shows it.
#[derive(Debug, Serialize)]
struct Row {
    kind: &'static str,
    id: String,
    title: String,
    severity: Option<String>,
    status: String,
    opened_at: DateTime<Utc>,
    age: String,
    assignee: Option<String>,
    escalates_in: Option<String>,
}

/// `/console/queues/{team}`: open incidents and waiting inquiries, oldest
/// first.
#[derive(Debug, Default, Deserialize)]
pub struct QueueQuery {
    /// Only rows of this severity (incidents).
    pub severity: Option<String>,
    /// Only rows in this status.
    pub status: Option<String>,
    /// The queue as it stood then.
    pub as_of: Option<String>,
}

impl QueueQuery {
    fn keeps(&self, row: &Row) -> bool {
        let severity = self.severity.as_deref().filter(|s| !s.is_empty());
        let status = self.status.as_deref().filter(|s| !s.is_empty());
        severity.is_none_or(|s| row.severity.as_deref() == Some(s))
            && status.is_none_or(|s| row.status == s)
    }
}

pub async fn queue(
    req: HttpRequest,
    state: web::Data<AppState>,
    team: web::Path<String>,
    query: web::Query<QueueQuery>,
) -> HttpResponse {
    let Some(actor) = viewer(&req) else {
        return see_other("/signin");
    };
    let Some(team) = crate::team_of(&team) else {
        return view::not_found(&req);
    };
    if !actor.has_any(STAFF) {
        return view::refused(&req, "the queues are the teams' own");
    }
    let as_of = match view::instant(query.as_of.as_deref()) {
        Ok(at) => at,
        Err(why) => return view::bad_request(&req, &why),
    };
    let read = match as_of {
        None => rows(&state, &actor, team).await,
        Some(at) => rows_at(&state, &actor, team, at).await,
    };
    let rows: Vec<Row> = match read {
        Ok(rows) => rows.into_iter().filter(|r| query.keeps(r)).collect(),
        Err(e) => {
            tracing::error!(error = %e, "reading a queue failed");
            return view::unavailable(&req);
        }
    };
    let filtered = query.severity.as_deref().is_some_and(|s| !s.is_empty())
        || query.status.as_deref().is_some_and(|s| !s.is_empty());
    let (csrf, _) = csrf_token(&req);
    // The live list starts from what this page shows: it sends rows only
    // once they differ, so nothing is swapped (a box ticked) for nothing.
    let frame = view::frame(&req, &csrf);
    let seen = fragment(
        "queue_rows.html",
        minijinja::context! { rows => &rows, ..frame },
    )
    .map(|html| digest(&html))
    .unwrap_or_default();
    view::page(
        &req,
        "queue.html",
        minijinja::context! {
            team => team,
            title => format!("{} queue", capitalized(team)),
            rows => rows,
            seen => seen,
            as_of => as_of,
            // A filtered list is not kept live: the stream sends the whole queue.
            live => !filtered && as_of.is_none(),
            severity => query.severity,
            status => query.status,
        },
    )
}

/// A short digest of a list's rows, to tell whether they changed.
fn digest(html: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    html.hash(&mut h);
    format!("{:016x}", h.finish())
}

#[derive(Debug, Deserialize)]
pub struct LiveQuery {
    /// The digest of the rows the page shows already.
    pub seen: Option<String>,
}

async fn rows(
    state: &AppState,
    actor: &Actor,
    team: &str,
) -> Result<Vec<Row>, opsledger_store::StoreError> {
    let incidents =
        opsledger_store::incidents::queue(&state.pool, actor.tenant_id, team, QUEUE_LEN).await?;
    let inquiries =
        opsledger_store::operations::inquiry_queue(&state.pool, actor.tenant_id, team, QUEUE_LEN)
            .await?;
    let mut rows: Vec<Row> = incidents
        .into_iter()
        .map(|i| Row {
            kind: "incident",
            id: i.id.to_string(),
            title: i.title,
            severity: Some(i.severity),
            status: i.status,
            opened_at: i.opened_at,
            age: duration(i.age_seconds),
            assignee: i.assignee,
            escalates_in: i.escalates_in_seconds.map(duration),
        })
        .chain(inquiries.into_iter().map(|i| Row {
            kind: "inquiry",
            id: i.id.to_string(),
            title: i.title,
            severity: None,
            status: i.status,
            opened_at: i.opened_at,
            age: duration(i.age_seconds),
            assignee: i.assignee,
            escalates_in: None,
        }))
        .collect();
    rows.sort_by(|a, b| (a.opened_at, &a.id).cmp(&(b.opened_at, &b.id)));
    rows.truncate(QUEUE_LEN as usize);
    Ok(rows)
}

/// The queue of `team` as it stood at `at`: the incidents and inquiries
/// then open in it, each folded from the events recorded by then.
async fn rows_at(
    state: &AppState,
    actor: &Actor,
    team: &str,
    at: DateTime<Utc>,
) -> Result<Vec<Row>, opsledger_store::StoreError> {
    use opsledger_domain::incident::{Incident, Status};
    use opsledger_domain::inquiry::Inquiry;
    let tenant = actor.tenant_id;
    let (incidents, inquiries) = tokio::join!(
        opsledger_store::incidents::open_at(&state.pool, tenant, at, 10 * QUEUE_LEN),
        opsledger_store::operations::inquiries_opened_by(&state.pool, tenant, at, 5 * QUEUE_LEN)
    );
    let (incidents, inquiries) = (incidents?, inquiries?);
    let (incidents, inquiries) = tokio::join!(
        opsledger_app::history::states_at::<Incident>(state.ledger(), tenant, &incidents, at),
        opsledger_app::history::states_at::<Inquiry>(state.ledger(), tenant, &inquiries, at)
    );
    let text = |v: serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    let mut rows: Vec<Row> = incidents?
        .into_iter()
        .filter(|(_, i, _)| {
            i.team.as_str() == team
                && matches!(
                    i.status,
                    Status::Triggered | Status::Acknowledged | Status::Mitigated
                )
        })
        .map(|(id, i, _)| Row {
            kind: "incident",
            id: id.to_string(),
            severity: Some(text(serde_json::to_value(i.severity).unwrap_or_default())),
            status: i.status.as_str().to_owned(),
            opened_at: i.opened_at,
            age: duration((at - i.opened_at).num_seconds()),
            assignee: i.assignee,
            escalates_in: i
                .next_escalation
                .map(|e| duration((e.due_at - at).num_seconds())),
            title: i.title,
        })
        .chain(
            inquiries?
                .into_iter()
                .filter(|(_, i, _)| i.team().map(|t| t.as_str()) == Some(team))
                .map(|(id, i, _)| Row {
                    kind: "inquiry",
                    id: id.to_string(),
                    severity: None,
                    status: i.status.as_str().to_owned(),
                    opened_at: i.opened_at,
                    age: duration((at - i.opened_at).num_seconds()),
                    assignee: None,
                    escalates_in: None,
                    title: i.subject,
                }),
        )
        .collect();
    rows.sort_by(|a, b| (a.opened_at, &a.id).cmp(&(b.opened_at, &b.id)));
    rows.truncate(QUEUE_LEN as usize);
    Ok(rows)
}

/// Incidents one bulk acknowledge takes at most (a storm's page).
const BULK_MAX: usize = 200;

/// `POST /console/queues/{team}/acknowledge`: acknowledges the incidents
/// ticked in the queue (an alert storm's), each as it stands; those someone
/// acknowledged meanwhile are left as they are. Back to the queue.
pub async fn acknowledge_selected(
    req: HttpRequest,
    state: web::Data<AppState>,
    team: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let Some(actor) = viewer(&req) else {
        return see_other("/signin");
    };
    // Repeated `ids` fields: read as pairs, not into a struct.
    let mut csrf = String::new();
    let mut ids = Vec::new();
    for (k, v) in form_urlencoded::parse(&body) {
        match k.as_ref() {
            "csrf" => csrf = v.into_owned(),
            "ids" => ids.push(v.into_owned()),
            _ => {}
        }
    }
    if !crate::session::csrf_ok(&req, &csrf) {
        return view::refused(
            &req,
            "the form's CSRF token is missing or not this browser's",
        );
    }
    if !crate::incident::may_acknowledge(&actor) {
        return view::refused(&req, "your roles do not allow acknowledge");
    }
    if ids.len() > BULK_MAX {
        return view::failed(
            &req,
            actix_web::http::StatusCode::PAYLOAD_TOO_LARGE,
            "Too many",
            &format!("at most {BULK_MAX} incidents at once"),
        );
    }
    for id in ids {
        let Ok(id) = id.parse::<uuid::Uuid>() else {
            continue;
        };
        let asked = crate::incident::asked(&actor, None);
        let command = opsledger_domain::incident::Command::Acknowledge;
        match opsledger_app::incidents::execute(state.ledger(), asked, id, command).await {
            Ok(_) => {}
            // Acknowledged (or further along) by someone else, or gone.
            Err(e) if e.is_conflict() => {}
            Err(opsledger_app::run::RunError::NotFound { .. }) => {}
            Err(e) => {
                tracing::error!(error = %e, "a bulk acknowledge failed");
                return view::unavailable(&req);
            }
        }
    }
    let team = crate::team_of(&team).unwrap_or("operations");
    see_other(&format!("/console/queues/{team}"))
}

/// How often a live queue looks at the read model again.
const LIVE_POLL: std::time::Duration = std::time::Duration::from_secs(1);
/// A comment frame this often keeps proxies from closing a quiet stream.
const LIVE_HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(15);

/// `/console/queues/{team}/live`: the queue's rows as Server-Sent Events,
/// sent again whenever they change (htmx swaps them into the page), so a new
/// incident appears without a reload.
pub async fn queue_live(
    req: HttpRequest,
    state: web::Data<AppState>,
    team: web::Path<String>,
    query: web::Query<LiveQuery>,
) -> HttpResponse {
    let Some(actor) = viewer(&req) else {
        return view::failed(
            &req,
            actix_web::http::StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "sign in first",
        );
    };
    let Some(team) = crate::team_of(&team) else {
        return view::not_found(&req);
    };
    if !actor.has_any(STAFF) {
        return view::refused(&req, "the queues are the teams' own");
    }
    struct Live {
        state: web::Data<AppState>,
        frame: minijinja::Value,
        actor: Actor,
        last: Option<String>,
        quiet_since: tokio::time::Instant,
    }
    let start = Live {
        state,
        frame: view::frame(&req, ""),
        actor,
        last: query.into_inner().seen,
        quiet_since: tokio::time::Instant::now(),
    };
    let frames = futures_util::stream::unfold(start, move |mut live| async move {
        loop {
            if live.last.is_some() {
                tokio::time::sleep(LIVE_POLL).await;
            }
            let html = match rows(&live.state, &live.actor, team).await {
                Ok(rows) => fragment(
                    "queue_rows.html",
                    minijinja::context! { rows => rows, ..live.frame.clone() },
                ),
                Err(e) => {
                    tracing::debug!(error = %e, "a live queue read failed");
                    None
                }
            };
            if let Some(html) = html.filter(|h| live.last.as_deref() != Some(digest(h).as_str())) {
                let mut frame = String::from("event: queue\n");
                for line in html.lines() {
                    frame.push_str("data: ");
                    frame.push_str(line);
                    frame.push('\n');
                }
                frame.push('\n');
                live.last = Some(digest(&html));
                live.quiet_since = tokio::time::Instant::now();
                return Some((Ok::<_, std::io::Error>(web::Bytes::from(frame)), live));
            }
            if live.last.is_none() {
                // Nothing could be read yet: wait before the first try again.
                live.last = Some(String::new());
            }
            if live.quiet_since.elapsed() >= LIVE_HEARTBEAT {
                live.quiet_since = tokio::time::Instant::now();
                return Some((Ok(web::Bytes::from_static(b": heartbeat\n\n")), live));
            }
        }
    });
    HttpResponse::Ok()
        .insert_header((actix_web::http::header::CONTENT_TYPE, "text/event-stream"))
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .streaming(frames)
}

/// `Operations` of `operations`.
fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// `3d 4h`, `2h 5m`, `4m`: how long, to the unit that matters.
fn duration(seconds: i64) -> String {
    let s = seconds.max(0);
    let (d, h, m) = (s / 86_400, s % 86_400 / 3_600, s % 3_600 / 60);
    match (d, h) {
        (0, 0) => format!("{m}m"),
        (0, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::duration;

    #[test]
    fn durations_name_the_unit_that_matters() {
        assert_eq!(duration(0), "0m");
        assert_eq!(duration(59), "0m");
        assert_eq!(duration(4 * 60), "4m");
        assert_eq!(duration(2 * 3600 + 5 * 60), "2h 5m");
        assert_eq!(duration(3 * 86_400 + 4 * 3600 + 59), "3d 4h");
        assert_eq!(duration(-5), "0m");
    }
}
