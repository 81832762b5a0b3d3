//! The incident page, its actions and its forms. Every action is sent with
//! the version the page showed (as `If-Match`): when someone else acted
//! first, the page says what changed meanwhile and offers to do it again on
//! the incident as it stands.
//!
//! Which buttons and forms a page offers is decided by the domain itself:
//! each is offered when the reader's roles may give its command and
//! `incident::decide` would accept it on the state shown.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use opsledger_api::incidents::{
    ActionBody, CommandBody, FindingBody, HandOffBody, NoteBody, ReopenBody,
};
use opsledger_api::AppState;
use opsledger_app::run::{Asked, RunError};
use opsledger_domain::access::{Actor, ClientScope, INCIDENT_READERS, MAINTAINERS};
use opsledger_domain::incident::{Command, Incident};
use opsledger_domain::Metadata;
use serde::Serialize;
use uuid::Uuid;

use crate::form::Posted;
use crate::session::{see_other, viewer};
use crate::view;

/// The one-click actions and the forms, by the last segment of their API
/// route, with what the placeholder of each says when asking the domain
/// whether it is offered.
const BUTTONS: &[&str] = &["acknowledge", "mitigate", "resolve", "close"];
const REASONED: &[&str] = &["handoff", "reopen"];
const FORMS: &[&str] = &["notes", "actions", "findings"];

/// The command an action's form asks for. `fields` are the form's own
/// fields (the CSRF token and version taken out, empty ones left out), read
/// into the API's body type for it, so a form and a JSON body mean the same.
fn command_of(action: &str, fields: &str) -> Result<Command, String> {
    fn body<B: CommandBody>(fields: &str) -> Result<Command, String> {
        serde_urlencoded::from_str::<B>(fields)
            .map(B::into_command)
            .map_err(|e| e.to_string())
    }
    match action {
        "acknowledge" => Ok(Command::Acknowledge),
        "mitigate" => Ok(Command::Mitigate {
            impact_end: Utc::now(),
            cause: None,
        }),
        "resolve" => Ok(Command::Resolve),
        "close" => Ok(Command::Close),
        "handoff" => body::<HandOffBody>(fields),
        "reopen" => body::<ReopenBody>(fields),
        "notes" => body::<NoteBody>(fields),
        "actions" => body::<ActionBody>(fields),
        "findings" => body::<FindingBody>(fields),
        _ => Err(format!("there is no action {action}")),
    }
}

/// A stand-in for each action's command, to ask whether it is offered.
fn placeholder(action: &str) -> Option<Command> {
    let fields = match action {
        "handoff" | "reopen" => "reason=x",
        "notes" => "text=x&visibility=internal",
        "actions" => "kind=inspection&description=x",
        "findings" => "statement=x",
        _ => "",
    };
    command_of(action, fields).ok()
}

/// Whether `actor` may give `command`: the roles the domain names for it.
fn may(actor: &Actor, command: &Command) -> bool {
    actor.has_any(command.roles())
}

/// The actions offered on `incident` to `actor`.
fn offered(actor: &Actor, incident: &Incident) -> Vec<&'static str> {
    BUTTONS
        .iter()
        .chain(REASONED)
        .chain(FORMS)
        .copied()
        .filter(|a| {
            placeholder(a).is_some_and(|c| {
                may(actor, &c)
                    && opsledger_domain::incident::decide(incident, c, Uuid::nil()).is_ok()
            })
        })
        .collect()
}

/// Whether `actor` may act on incidents at all (the API's acknowledge roles).
pub(crate) fn may_acknowledge(actor: &Actor) -> bool {
    may(actor, &Command::Acknowledge)
}

/// The timeline's filters: a name, and the event types it keeps.
const FILTERS: &[(&str, &[&str])] = &[
    ("notes", &["NoteAdded"]),
    ("actions", &["ActionRecorded", "MaintenanceActionRecorded"]),
    ("findings", &["FindingRecorded"]),
    ("alerts", &["AlertReceived", "AlertResolved"]),
    ("notifications", &["Notification"]),
];

#[derive(Debug, Default, serde::Deserialize)]
pub struct PageQuery {
    pub show: Option<String>,
    pub as_of: Option<String>,
}

/// What the page shows above the incident when an action did not apply.
#[derive(Debug, Default, Serialize)]
struct Notice {
    text: String,
    /// The events recorded since the version the page showed.
    changed: Vec<Entry>,
    /// The action to offer again, with the fields it was sent with.
    redo: Option<Redo>,
}

#[derive(Debug, Serialize)]
struct Redo {
    action: String,
    fields: Vec<(String, String)>,
}

pub async fn page(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    query: web::Query<PageQuery>,
) -> HttpResponse {
    let Some(actor) = viewer(&req) else {
        return see_other("/signin");
    };
    if !actor.has_any(INCIDENT_READERS) {
        return view::refused(&req, "incident pages are the teams' and clients' own");
    }
    let Ok(id) = id.parse::<Uuid>() else {
        return view::not_found(&req);
    };
    let as_of = match view::instant(query.as_of.as_deref()) {
        Ok(at) => at,
        Err(why) => return view::bad_request(&req, &why),
    };
    let show = query
        .show
        .as_deref()
        .filter(|s| FILTERS.iter().any(|(f, _)| f == s));
    render(&req, &state, &actor, id, as_of, show, None, StatusCode::OK).await
}

/// The page of incident `id` as it stood at `as_of` (now if `None`), its
/// timeline kept to `show`, with `notice` above.
#[allow(clippy::too_many_arguments)]
async fn render(
    req: &HttpRequest,
    state: &AppState,
    actor: &Actor,
    id: Uuid,
    as_of: Option<DateTime<Utc>>,
    show: Option<&str>,
    notice: Option<(Notice, i64)>,
    status: StatusCode,
) -> HttpResponse {
    let tenant = actor.tenant_id;
    let client_view = !matches!(actor.client_scope(), ClientScope::All);
    let (loaded, attached, told) = tokio::join!(
        opsledger_api::incidents::load(state, actor, id, as_of),
        opsledger_store::incidents::alerts_of_incident(&state.pool, tenant, id),
        opsledger_store::outbox::list_notifications(&state.pool, tenant, Some(id), None, 200)
    );
    let (incident, events, client_id) = match loaded {
        Ok(loaded) => loaded,
        Err(e) => return view::api_error(req, e),
    };
    let version = events.last().map_or(0, |e| e.stream_version);
    let service = match incident.service_id {
        Some(id) => {
            opsledger_store::directory::report_services(&state.pool, tenant, Some(id), None)
                .await
                .ok()
                .and_then(|rows| rows.into_iter().next())
                .map(|s| s.name)
        }
        None => None,
    };
    let changed_since = notice.as_ref().map(|(_, since)| *since);
    let changed: Vec<Entry> = match changed_since {
        Some(since) => events
            .iter()
            .filter(|e| e.stream_version > since)
            .map(|e| Entry::of_event(&e.event_type, e.recorded_at, &e.metadata, &e.payload))
            .collect(),
        None => Vec::new(),
    };
    let entries = match attached {
        Ok(attached) => {
            opsledger_app::incidents::timeline(
                state.ledger(),
                tenant,
                events,
                attached,
                client_view,
            )
            .await
        }
        Err(e) => Err(e),
    };
    let (entries, told) = match (entries, told) {
        (Ok(entries), Ok(told)) => (entries, told),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "reading an incident's timeline failed");
            return view::unavailable(req);
        }
    };
    let mut timeline: Vec<Entry> = entries.into_iter().map(Entry::of).collect();
    // Who was told: a client reads only what its own contacts were sent.
    timeline.extend(
        told.into_iter()
            .filter(|n| {
                !client_view
                    || n.recipient["client_id"].as_str()
                        == client_id.map(|c| c.to_string()).as_deref()
            })
            .map(Entry::of_notification),
    );
    if let Some(at) = as_of {
        timeline.retain(|e| e.recorded_at <= at);
    }
    timeline.sort_by_key(|e| e.recorded_at);
    if let Some(show) = show {
        let kept = FILTERS
            .iter()
            .find(|(f, _)| *f == show)
            .map_or(&[][..], |(_, t)| t);
        timeline.retain(|e| kept.contains(&e.event_type.as_str()));
    }
    let actions = if as_of.is_some() || client_view {
        Vec::new()
    } else {
        offered(actor, &incident)
    };
    let maintainer = actor.has_any(MAINTAINERS);
    if let (Some((notice, _)), false) = (&notice, view::wants_html(req)) {
        return view::failed(req, status, "Conflict", &notice.text);
    }
    let notice = notice.map(|(mut n, _)| {
        n.changed = changed;
        n
    });
    let mut res = view::page(
        req,
        "incident.html",
        minijinja::context! {
            incident => incident,
            service => service,
            status => incident.status.as_str(),
            version => version,
            actions => actions,
            maintainer => maintainer,
            timeline => timeline,
            filters => FILTERS.iter().map(|(f, _)| *f).collect::<Vec<_>>(),
            show => show,
            notice => notice,
            as_of => as_of,
            client_view => client_view,
        },
    );
    *res.status_mut() = status;
    res
}

/// A timeline row as the page shows it.
#[derive(Debug, Serialize)]
struct Entry {
    event_type: String,
    recorded_at: DateTime<Utc>,
    actor: Option<String>,
    role: Option<String>,
    /// What it says, in a line: a note's text, a reason, an alert's summary
    /// and what became of it, whom a notification went to.
    detail: String,
}

impl Entry {
    fn of(e: opsledger_app::incidents::TimelineEntry) -> Entry {
        Entry {
            detail: detail_of(&e.event_type, &e.data),
            event_type: e.event_type,
            recorded_at: e.recorded_at,
            actor: e.actor,
            role: e.role,
        }
    }

    fn of_event(
        event_type: &str,
        recorded_at: DateTime<Utc>,
        meta: &serde_json::Value,
        data: &serde_json::Value,
    ) -> Entry {
        Entry {
            event_type: event_type.to_owned(),
            recorded_at,
            actor: meta["actor"].as_str().map(str::to_owned),
            role: meta["role"].as_str().map(str::to_owned),
            detail: detail_of(event_type, data),
        }
    }

    fn of_notification(n: opsledger_store::outbox::NotificationRow) -> Entry {
        let to = n.recipient["email"]
            .as_str()
            .or_else(|| n.recipient["address"].as_str())
            .unwrap_or("");
        Entry {
            event_type: "Notification".into(),
            recorded_at: n.requested_at,
            actor: None,
            role: None,
            detail: format!("{}: {} → {to} ({})", n.kind, n.subject, n.status),
        }
    }
}

fn detail_of(event_type: &str, d: &serde_json::Value) -> String {
    match event_type {
        "AlertReceived" => format!(
            "{} ({})",
            d["signal"]["summary"].as_str().unwrap_or(""),
            d["decision"]["outcome"].as_str().unwrap_or("")
        ),
        "ActionRecorded" | "MaintenanceActionRecorded" => format!(
            "{}: {}",
            d["kind"].as_str().unwrap_or(""),
            d["description"].as_str().unwrap_or("")
        ),
        _ => [
            "text",
            "statement",
            "description",
            "reason",
            "summary",
            "cause",
        ]
        .iter()
        .find_map(|k| d[*k].as_str().map(str::to_owned))
        .unwrap_or_default(),
    }
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
    body: web::Bytes,
) -> HttpResponse {
    let Some(actor) = viewer(&req) else {
        return see_other("/signin");
    };
    let (id, action) = path.into_inner();
    let (posted, id, version) = match Posted::on_record(&req, &body, &id) {
        Ok(on) => on,
        Err(unfit) => return unfit.page(&req),
    };
    let command = match command_of(&action, &posted.encoded()) {
        Ok(c) => c,
        Err(e) if placeholder(&action).is_none() => {
            tracing::debug!(error = %e, "an unknown incident action");
            return view::not_found(&req);
        }
        Err(e) => {
            return view::failed(&req, StatusCode::UNPROCESSABLE_ENTITY, "Unprocessable", &e);
        }
    };
    if !may(&actor, &command) {
        return view::refused(&req, &format!("your roles do not allow {action}"));
    }
    // Clients read incidents; they do not act on them, and another
    // client's incident does not exist for them.
    if !matches!(actor.client_scope(), ClientScope::All) {
        return view::not_found(&req);
    }
    let redo = |text: String| Notice {
        text,
        changed: Vec::new(),
        redo: Some(Redo {
            action: action.clone(),
            fields: posted.fields.clone(),
        }),
    };
    match opsledger_app::incidents::execute(
        state.ledger(),
        asked(&actor, Some(version)),
        id,
        command,
    )
    .await
    {
        Ok(_) => see_other(&format!("/console/incidents/{id}")),
        Err(RunError::NotFound { .. }) => view::not_found(&req),
        Err(RunError::Stale { state: now, .. }) => {
            let notice = redo(format!(
                "Someone else acted first: the incident is {now} now, and your {action} was not applied."
            ));
            render(
                &req,
                &state,
                &actor,
                id,
                None,
                None,
                Some((notice, version)),
                StatusCode::CONFLICT,
            )
            .await
        }
        Err(e @ RunError::Rejected { .. }) if e.is_conflict() => {
            let notice = Notice {
                text: format!("{action} does not apply now: {e}"),
                ..Notice::default()
            };
            render(
                &req,
                &state,
                &actor,
                id,
                None,
                None,
                Some((notice, version)),
                StatusCode::CONFLICT,
            )
            .await
        }
        Err(e @ (RunError::Rejected { .. } | RunError::Invalid(_))) => view::failed(
            &req,
            StatusCode::UNPROCESSABLE_ENTITY,
            "Unprocessable",
            &e.to_string(),
        ),
        Err(e) => {
            tracing::error!(error = %e, "an incident action failed");
            view::unavailable(&req)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_form_means_what_the_same_json_body_means() {
        assert!(matches!(
            command_of("notes", "text=%3Cscript%3E&visibility=client"),
            Ok(Command::AddNote { text, .. }) if text == "<script>"
        ));
        assert!(matches!(
            command_of("actions", "kind=fix&description=patched&minutes_spent=30"),
            Ok(Command::RecordMaintenanceAction {
                minutes_spent: Some(30),
                ..
            })
        ));
        assert!(command_of("actions", "kind=teleport&description=x").is_err());
        assert!(
            command_of("notes", "text=x").is_err(),
            "visibility is required"
        );
        assert!(
            command_of("handoff", "reason=x&extra=1").is_err(),
            "unknown fields"
        );
        assert!(command_of("delete", "").is_err());
    }
}
