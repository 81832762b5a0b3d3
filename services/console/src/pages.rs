//! The pages.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use opsledger_api::AppState;
use opsledger_domain::access::{Actor, Role};
use serde::Serialize;

use crate::session::{csrf_token, see_other, viewer};
use crate::view;

/// Who works the queues.
const STAFF: &[Role] = &[
    Role::Operator,
    Role::Maintainer,
    Role::Approver,
    Role::Auditor,
    Role::Admin,
];
/// Items a queue page shows at most; the oldest come first.
const QUEUE_LEN: i64 = 200;

/// `/`: the caller's queue, or the sign-in page.
pub async fn home(req: HttpRequest) -> HttpResponse {
    match viewer(&req) {
        Some(actor) if actor.has_any(&[Role::Maintainer]) && !actor.has_any(&[Role::Operator]) => {
            see_other("/console/queues/maintenance")
        }
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
pub async fn queue(
    req: HttpRequest,
    state: web::Data<AppState>,
    team: web::Path<String>,
) -> HttpResponse {
    let Some(actor) = viewer(&req) else {
        return see_other("/signin");
    };
    let team = match team.as_str() {
        "operations" => "operations",
        "maintenance" => "maintenance",
        _ => return view::not_found(&req),
    };
    if !actor.has_any(STAFF) {
        return view::refused(&req, "the queues are the teams' own");
    }
    let rows = match rows(&state, &actor, team).await {
        Ok(rows) => rows,
        Err(e) => {
            tracing::error!(error = %e, "reading a queue failed");
            return view::unavailable(&req);
        }
    };
    let (csrf, _) = csrf_token(&req);
    view::page(
        &req,
        "queue.html",
        minijinja::context! {
            team => team,
            rows => rows,
            subject => actor.subject,
            csrf => csrf,
        },
    )
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
