//! The incident page and its one-click actions. An action is sent with the
//! version the page showed (as `If-Match`): when someone else acted first,
//! the page says what the incident is now and offers the action again on
//! that version.

use actix_web::http::{Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use opsledger_api::AppState;
use opsledger_app::run::{self, Asked, RunError};
use opsledger_domain::access::Actor;
use opsledger_domain::incident::{Command, Incident, Status};
use opsledger_domain::Metadata;
use serde::Deserialize;
use uuid::Uuid;

use crate::session::{csrf_ok, csrf_token, see_other, viewer};
use crate::view;
use crate::STAFF;

/// The one-click actions: each one's name (the last segment of the API
/// route whose roles it takes) and what its button says.
const ACTIONS: &[(&str, &str)] = &[
    ("acknowledge", "Acknowledge"),
    ("resolve", "Resolve"),
    ("close", "Close"),
];

fn command_of(action: &str) -> Option<Command> {
    match action {
        "acknowledge" => Some(Command::Acknowledge),
        "resolve" => Some(Command::Resolve),
        "close" => Some(Command::Close),
        _ => None,
    }
}

/// The actions the incident's status allows, for its buttons.
fn offered(status: Status) -> &'static [&'static str] {
    match status {
        Status::Triggered => &["acknowledge", "resolve"],
        Status::Acknowledged | Status::Mitigated => &["resolve"],
        Status::Resolved => &["close"],
        Status::Closed => &[],
    }
}

/// Whether `actor` may take `action`: the roles of the API's route for it.
pub(crate) fn may(actor: &Actor, action: &str) -> bool {
    let path = format!("/api/v1/incidents/{{id}}/{action}");
    opsledger_api::routes::roles_of(&Method::POST, &path).is_some_and(|r| actor.has_any(r))
}

pub async fn page(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> HttpResponse {
    let Some(actor) = viewer(&req) else {
        return see_other("/signin");
    };
    if !actor.has_any(STAFF) {
        return view::refused(&req, "incident pages are the teams' own");
    }
    let Ok(id) = id.parse::<Uuid>() else {
        return view::not_found(&req);
    };
    render(&req, &state, &actor, id, None).await
}

/// The page of incident `id`, with `notice` (what became of an action) above.
async fn render(
    req: &HttpRequest,
    state: &AppState,
    actor: &Actor,
    id: Uuid,
    notice: Option<String>,
) -> HttpResponse {
    let tenant = actor.tenant_id;
    let (loaded, attached) = tokio::join!(
        run::load::<Incident>(state.ledger(), tenant, id, None),
        opsledger_store::incidents::alerts_of_incident(&state.pool, tenant, id)
    );
    let (incident, version, events) = match loaded {
        Ok((Some(i), v, events)) => (i, v, events),
        Ok((None, _, _)) => return view::not_found(req),
        Err(e) => {
            tracing::error!(error = %e, "reading an incident failed");
            return view::unavailable(req);
        }
    };
    let entries = match attached {
        Ok(attached) => {
            opsledger_app::incidents::timeline(state.ledger(), tenant, events, attached, false)
                .await
        }
        Err(e) => Err(e),
    };
    let timeline: Vec<Entry> = match entries {
        Ok(entries) => entries.into_iter().map(Entry::of).collect(),
        Err(e) => {
            tracing::error!(error = %e, "reading an incident's timeline failed");
            return view::unavailable(req);
        }
    };
    let actions: Vec<(&str, &str)> = offered(incident.status)
        .iter()
        .filter(|a| may(actor, a))
        .filter_map(|a| ACTIONS.iter().find(|(n, _)| n == a).copied())
        .collect();
    if let (Some(notice), false) = (&notice, crate::view::wants_html(req)) {
        return view::failed(req, StatusCode::CONFLICT, "Conflict", notice);
    }
    let (csrf, _) = csrf_token(req);
    let mut res = view::page(
        req,
        "incident.html",
        minijinja::context! {
            incident => incident,
            status => incident.status.as_str(),
            version => version,
            actions => actions,
            timeline => timeline,
            notice => notice,
            csrf => csrf,
            subject => actor.subject,
        },
    );
    if notice.is_some() {
        *res.status_mut() = StatusCode::CONFLICT;
    }
    res
}

/// A timeline row as the page shows it.
#[derive(Debug, serde::Serialize)]
struct Entry {
    event_type: String,
    recorded_at: chrono::DateTime<chrono::Utc>,
    actor: Option<String>,
    role: Option<String>,
    /// What it says, in a line: a note's text, a reason, an alert's summary
    /// and what became of it.
    detail: String,
}

impl Entry {
    fn of(e: opsledger_app::incidents::TimelineEntry) -> Entry {
        let d = &e.data;
        let detail = match e.event_type.as_str() {
            "AlertReceived" => format!(
                "{} ({})",
                d["signal"]["summary"].as_str().unwrap_or(""),
                d["decision"]["outcome"].as_str().unwrap_or("")
            ),
            _ => ["text", "description", "reason", "summary", "cause"]
                .iter()
                .find_map(|k| d[*k].as_str().map(str::to_owned))
                .unwrap_or_default(),
        };
        Entry {
            event_type: e.event_type,
            recorded_at: e.recorded_at,
            actor: e.actor,
            role: e.role,
            detail,
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct Act {
    pub csrf: String,
    /// The version the page showed.
    pub version: i64,
}

/// A command as the console gives it: by the signed-in user, on the version
/// the page showed (`None`: as the record stands).
pub(crate) fn asked(actor: &Actor, if_match: Option<i64>) -> Asked {
    Asked {
        tenant: actor.tenant_id,
        meta: Metadata {
            actor: actor.subject.clone(),
            role: actor.primary_role().as_str().to_owned(),
            request_id: None,
            correlation_id: None,
            causation_id: None,
            source: "console".into(),
        },
        if_match,
        key: None,
    }
}

/// `POST /console/incidents/{id}/{action}`.
pub async fn act(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    form: web::Form<Act>,
) -> HttpResponse {
    let Some(actor) = viewer(&req) else {
        return see_other("/signin");
    };
    if !csrf_ok(&req, &form.csrf) {
        return view::refused(
            &req,
            "the form's CSRF token is missing or not this browser's",
        );
    }
    let (id, action) = path.into_inner();
    let (Ok(id), Some(command)) = (id.parse::<Uuid>(), command_of(&action)) else {
        return view::not_found(&req);
    };
    if !may(&actor, &action) {
        return view::refused(&req, &format!("your roles do not allow {action}"));
    }
    match opsledger_app::incidents::execute(
        state.ledger(),
        asked(&actor, Some(form.version)),
        id,
        command,
    )
    .await
    {
        Ok(_) => see_other(&format!("/console/incidents/{id}")),
        Err(RunError::NotFound { .. }) => view::not_found(&req),
        Err(RunError::Stale { state: now, .. }) => {
            let notice = format!(
                "Someone else acted first: the incident is {now} now, and your {action} was not applied. \
                 Here it is as it stands; act again if it still needs it."
            );
            render(&req, &state, &actor, id, Some(notice)).await
        }
        Err(e @ RunError::Rejected { .. }) if e.is_conflict() => {
            let notice = format!("{action} does not apply now: {e}");
            render(&req, &state, &actor, id, Some(notice)).await
        }
        Err(e) => {
            tracing::error!(error = %e, "an incident action failed");
            view::unavailable(&req)
        }
    }
}
