//! Incidents: open by hand, the lifecycle commands, reads, the timeline, and
//! the alerts list (SPEC §5, §6, §7).

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use opsledger_domain::access::{Actor, ClientScope, INCIDENT_READERS};
use opsledger_domain::alert::{Category, Severity};
use opsledger_domain::impact::ImpactLevel;
use opsledger_domain::incident::{
    self, fold, Command, Evidence, Incident, MaintenanceAction, OperationsAction, Status, Triage,
    Visibility,
};
use opsledger_domain::{Metadata, RecordedEvent};
use opsledger_store::incidents::{self as store_inc, AlertFilter, IncidentFilter};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::aggregate;
use crate::auth::Caller;
use crate::common::{
    begin_command, client_of_service, page_len, require_services, stream_events, AsOfQuery, Page,
};
use crate::extract::{IfMatch, OrEmpty};
use crate::idempotency::IdempotencyKey;
use crate::problem::ApiError;
use crate::AppState;
use opsledger_app::run;

// ------------------------------------------------------------ views

pub use opsledger_app::incidents::IncidentView;

pub(crate) fn respond(view: &IncidentView) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::ETAG, format!("\"{}\"", view.version)))
        .json(view)
}

// ------------------------------------------------------------ loading

/// Whether the caller may see incidents of this service.
async fn visible(state: &AppState, actor: &Actor, service: Option<Uuid>) -> Result<bool, ApiError> {
    Ok(match actor.client_scope() {
        ClientScope::All => true,
        ClientScope::Nothing => false,
        ClientScope::Only(own) => match service {
            Some(s) => client_of_service(state, actor.tenant_id, s).await? == Some(own),
            None => false,
        },
    })
}

/// The incident as it stood at `as_of` (now if `None`), its events and the
/// client whose service it is; not found when the caller may not see it.
/// The console's incident page reads through this too.
pub async fn load(
    state: &AppState,
    actor: &Actor,
    id: Uuid,
    as_of: Option<DateTime<Utc>>,
) -> Result<(Incident, Vec<RecordedEvent>, Option<Uuid>), ApiError> {
    let (incident, events) = load_visible(state, actor, id, as_of).await?;
    let client_id = match incident.service_id {
        Some(s) => client_of_service(state, actor.tenant_id, s).await?,
        None => None,
    };
    Ok((incident, events, client_id))
}

/// The incident and its events, if the caller may see it.
async fn load_visible(
    state: &AppState,
    actor: &Actor,
    id: Uuid,
    as_of: Option<DateTime<Utc>>,
) -> Result<(Incident, Vec<RecordedEvent>), ApiError> {
    let events = stream_events(
        state,
        actor.tenant_id,
        &incident::incident_stream(id),
        as_of,
    )
    .await?;
    let not_found = || ApiError::NotFound(format!("no incident {id}"));
    let incident = fold(&events).ok_or_else(not_found)?;
    if !visible(state, actor, incident.service_id).await? {
        return Err(not_found());
    }
    Ok((incident, events))
}

// ------------------------------------------------------------ commands

/// Runs a command the service itself gives (a worker, an integration's
/// signal): no `If-Match`, no idempotency key.
pub(crate) async fn execute_as(
    state: &AppState,
    tenant: Uuid,
    meta: &Metadata,
    id: Uuid,
    command: Command,
) -> Result<(), ApiError> {
    let asked = run::Asked {
        tenant,
        meta: meta.clone(),
        if_match: None,
        key: None,
    };
    opsledger_app::incidents::execute(state.ledger(), asked, id, command).await?;
    Ok(())
}

/// PagerDuty's acknowledge: the same event as the API's, when it applies.
pub async fn acknowledge_if_triggered(
    state: &AppState,
    tenant: Uuid,
    meta: &Metadata,
    id: Uuid,
) -> Result<(), ApiError> {
    match execute_as(state, tenant, meta, id, Command::Acknowledge).await {
        Ok(()) => Ok(()),
        // Already acknowledged (or further along): PagerDuty treats it as done.
        Err(ApiError::Conflict { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// What a lifecycle request said besides its command: the version it was
/// based on, its idempotency key, and its body (for the key's fingerprint).
struct Asked {
    if_match: IfMatch,
    key: IdempotencyKey,
    body: Value,
}

/// A lifecycle command: role, tenant, an answer for a retry (SPEC §3.5: a
/// retried note is not noted twice), then the command itself.
async fn command(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    id: web::Path<Uuid>,
    asked: Asked,
    command: Command,
) -> Result<HttpResponse, ApiError> {
    command_on(&state, &caller, &req, id.into_inner(), asked, command, None).await
}

/// Runs an incident command for the caller; `service` (of an opening) must
/// exist.
async fn command_on(
    state: &AppState,
    caller: &Caller,
    req: &HttpRequest,
    id: Uuid,
    asked: Asked,
    command: Command,
    service: Option<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let Asked {
        if_match,
        key,
        body,
    } = asked;
    let what = serde_json::json!({ "if_match": if_match.0, "body": body });
    let (actor, fingerprint, replayed) =
        begin_command(state, caller, command.roles(), &key, req, &what).await?;
    if let Some(replayed) = replayed {
        return Ok(replayed);
    }
    if let Some(s) = service {
        require_services(state, actor.tenant_id, &[s]).await?;
    }
    let asked = aggregate::asked(actor, req, if_match, key, &fingerprint);
    let ran = opsledger_app::incidents::execute(state.ledger(), asked, id, command).await?;
    aggregate::answer(ran, &fingerprint)
}

/// A command's body: what it asks for, as a domain command.
pub trait CommandBody: serde::de::DeserializeOwned + Serialize {
    fn into_command(self) -> Command;
}

/// The handler of every lifecycle command that takes a body.
pub async fn incident_command<B: CommandBody>(
    s: web::Data<AppState>,
    c: Caller,
    r: HttpRequest,
    id: web::Path<Uuid>,
    m: IfMatch,
    k: IdempotencyKey,
    b: web::Json<B>,
) -> Result<HttpResponse, ApiError> {
    let asked = serde_json::to_value(&*b).map_err(|e| ApiError::Internal(Box::new(e)))?;
    let asked = Asked {
        if_match: m,
        key: k,
        body: asked,
    };
    command(s, c, r, id, asked, b.into_inner().into_command()).await
}

impl CommandBody for NoteBody {
    fn into_command(self) -> Command {
        Command::AddNote {
            text: self.text,
            visibility: self.visibility,
        }
    }
}

impl CommandBody for ActionBody {
    fn into_command(self) -> Command {
        let (description, minutes_spent) = (self.description, self.minutes_spent);
        match self.kind {
            ActionKind::Inspection => Command::RecordAction {
                kind: OperationsAction::Inspection,
                description,
                minutes_spent,
            },
            ActionKind::Restart => Command::RecordAction {
                kind: OperationsAction::Restart,
                description,
                minutes_spent,
            },
            ActionKind::RunbookStep => Command::RecordAction {
                kind: OperationsAction::RunbookStep,
                description,
                minutes_spent,
            },
            ActionKind::Recovery => Command::RecordMaintenanceAction {
                kind: MaintenanceAction::Recovery,
                description,
                minutes_spent,
            },
            ActionKind::Fix => Command::RecordMaintenanceAction {
                kind: MaintenanceAction::Fix,
                description,
                minutes_spent,
            },
        }
    }
}

/// A root-cause finding (maintainers only).
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FindingBody {
    pub statement: String,
    #[serde(default)]
    pub evidence: Evidence,
    #[serde(default)]
    pub minutes_spent: Option<u32>,
}

impl CommandBody for FindingBody {
    fn into_command(self) -> Command {
        Command::RecordFinding {
            statement: self.statement,
            evidence: self.evidence,
            minutes_spent: self.minutes_spent,
        }
    }
}

impl CommandBody for ReopenBody {
    fn into_command(self) -> Command {
        Command::Reopen {
            reason: self.reason,
        }
    }
}

impl CommandBody for SeverityBody {
    fn into_command(self) -> Command {
        Command::ChangeSeverity { to: self.severity }
    }
}

impl CommandBody for ImpactBody {
    fn into_command(self) -> Command {
        Command::CorrectImpact {
            impact_start: self.impact_start,
            impact_end: self.impact_end,
            reason: self.reason,
        }
    }
}

/// `POST /incidents/{id}/impact-level`: the impact is at `level` from `at`
/// (now if absent; an instant past corrects the record).
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImpactLevelBody {
    pub level: ImpactLevel,
    #[serde(default)]
    pub at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub reason: Option<String>,
}

impl CommandBody for ImpactLevelBody {
    fn into_command(self) -> Command {
        let now = Utc::now();
        Command::ChangeImpactLevel {
            to: self.level,
            at: self.at.unwrap_or(now),
            now,
            reason: self.reason,
        }
    }
}

impl CommandBody for TriageBody {
    fn into_command(self) -> Command {
        Command::MarkTriage {
            outcome: self.outcome,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HandOffBody {
    pub reason: String,
}

impl CommandBody for HandOffBody {
    fn into_command(self) -> Command {
        Command::HandOff {
            reason: self.reason,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignBody {
    /// Who takes it: a user id or any name the team uses.
    pub assignee: String,
}

impl CommandBody for AssignBody {
    fn into_command(self) -> Command {
        Command::Assign {
            assignee: self.assignee,
        }
    }
}

/// A command that takes no body: the route names it whole.
macro_rules! bodiless_command {
    ($name:ident, $command:expr) => {
        pub async fn $name(
            s: web::Data<AppState>,
            c: Caller,
            r: HttpRequest,
            id: web::Path<Uuid>,
            m: IfMatch,
            k: IdempotencyKey,
        ) -> Result<HttpResponse, ApiError> {
            let asked = Asked {
                if_match: m,
                key: k,
                body: Value::Null,
            };
            command(s, c, r, id, asked, $command).await
        }
    };
}

bodiless_command!(incident_unassign, Command::Unassign);
bodiless_command!(incident_acknowledge, Command::Acknowledge);
bodiless_command!(incident_resolve, Command::Resolve);
bodiless_command!(incident_close, Command::Close);

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoteBody {
    pub text: String,
    pub visibility: Visibility,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionBody {
    pub kind: ActionKind,
    pub description: String,
    #[serde(default)]
    pub minutes_spent: Option<u32>,
}

/// What was done. The first three are operations work (no change to the
/// system, any responder); recovery and fix are maintenance work, recorded
/// as their own event type and by maintainers only.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    Inspection,
    Restart,
    RunbookStep,
    Recovery,
    Fix,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MitigateBody {
    /// When the impact ended; now if absent.
    #[serde(default)]
    pub impact_end: Option<DateTime<Utc>>,
}

pub async fn incident_mitigate(
    s: web::Data<AppState>,
    c: Caller,
    r: HttpRequest,
    id: web::Path<Uuid>,
    m: IfMatch,
    k: IdempotencyKey,
    b: OrEmpty<MitigateBody>,
) -> Result<HttpResponse, ApiError> {
    let OrEmpty { body, asked } = b;
    let end = body.impact_end.unwrap_or_else(Utc::now);
    let asked = Asked {
        if_match: m,
        key: k,
        body: asked,
    };
    command(
        s,
        c,
        r,
        id,
        asked,
        Command::Mitigate {
            impact_end: end,
            cause: None,
        },
    )
    .await
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReopenBody {
    pub reason: String,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SeverityBody {
    pub severity: Severity,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImpactBody {
    pub impact_start: DateTime<Utc>,
    #[serde(default)]
    pub impact_end: Option<DateTime<Utc>>,
    pub reason: String,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TriageBody {
    pub outcome: Triage,
}

// ------------------------------------------------------------ open by hand

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenBody {
    pub title: String,
    #[serde(default)]
    pub service_id: Option<Uuid>,
    pub severity: Severity,
    #[serde(default)]
    pub category: Option<Category>,
    /// When the impact began; now if absent.
    #[serde(default)]
    pub impact_start: Option<DateTime<Utc>>,
    /// How badly the service is hit; mapped from the severity if absent.
    #[serde(default)]
    pub impact_level: Option<ImpactLevel>,
}

pub async fn incident_open(
    state: web::Data<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    req: HttpRequest,
    body: web::Json<OpenBody>,
) -> Result<HttpResponse, ApiError> {
    let asked = Asked {
        if_match: IfMatch(None),
        key,
        body: serde_json::to_value(&*body).map_err(|e| ApiError::Internal(Box::new(e)))?,
    };
    let body = body.into_inner();
    let service_id = body.service_id;
    let id = Uuid::now_v7();
    let command = Command::Open {
        incident_id: id,
        service_id,
        title: body.title,
        severity: body.severity,
        category: body.category.unwrap_or(Category::Application),
        impact_start: body.impact_start,
        impact_level: body.impact_level,
    };
    command_on(&state, &caller, &req, id, asked, command, service_id).await
}

// ------------------------------------------------------------ reads

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct IncidentListQuery {
    /// Only incidents in this status. Another value is 400.
    pub status: Option<Status>,
    /// Only items of this service.
    pub service_id: Option<Uuid>,
    /// Only this client's items. A client user who names another client gets an empty page.
    pub client_id: Option<Uuid>,
    /// Only incidents of this severity. Another value is 400.
    pub severity: Option<Severity>,
    /// Only items of this category. Another value is 400.
    pub category: Option<Category>,
    /// Only incidents opened at or after this instant (RFC 3339; URL-encode a `+` offset).
    pub opened_since: Option<DateTime<Utc>>,
    /// Only incidents opened before this instant (RFC 3339; URL-encode a `+` offset).
    pub opened_until: Option<DateTime<Utc>>,
    /// The cursor: incidents older than this one (lists are newest first).
    pub before: Option<Uuid>,
    /// Items per page, 1 to 200 (default 50). Values outside the range are refused with 400.
    pub limit: Option<u32>,
}

pub async fn incident_list(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<IncidentListQuery>,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.require(INCIDENT_READERS)?;
    state.tenants.require(&state.pool, actor.tenant_id).await?;
    let limit = page_len(query.limit)?;
    let client_id = match actor.client_scope() {
        ClientScope::All => query.client_id,
        ClientScope::Only(own) if query.client_id.is_none_or(|c| c == own) => Some(own),
        _ => {
            return Ok(HttpResponse::Ok().json(Page::<store_inc::IncidentRow> {
                items: vec![],
                next_cursor: None,
            }))
        }
    };
    let filter = IncidentFilter {
        status: query.status.map(|s| s.as_str().to_owned()),
        service_id: query.service_id,
        client_id,
        severity: query.severity.map(|s| s.as_str().to_owned()),
        category: query.category.map(|c| c.as_str().to_owned()),
        opened_since: query.opened_since,
        opened_until: query.opened_until,
    };
    let items = store_inc::list_incidents(
        &state.pool,
        actor.tenant_id,
        &filter,
        query.before,
        limit + 1,
    )
    .await?;
    Ok(HttpResponse::Ok().json(Page::of(items, limit, |i| i.incident.id)))
}

pub async fn incident_get(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<Uuid>,
    query: web::Query<AsOfQuery>,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.require(INCIDENT_READERS)?;
    state.tenants.require(&state.pool, actor.tenant_id).await?;
    let (incident, events, client_id) = load(&state, actor, id.into_inner(), query.as_of).await?;
    let version = events.last().map_or(0, |e| e.stream_version);
    let alert_count =
        store_inc::alert_count(&state.pool, actor.tenant_id, incident.id, query.as_of).await?;
    Ok(respond(&IncidentView {
        incident,
        client_id,
        version,
        alert_count,
    }))
}

pub use opsledger_app::incidents::TimelineEntry;

pub async fn incident_timeline(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.require(INCIDENT_READERS)?;
    state.tenants.require(&state.pool, actor.tenant_id).await?;
    let id = id.into_inner();
    // Which alerts it has is asked at once, beside the incident itself; it
    // is shown only once the incident is found visible to the caller.
    let (loaded, attached) = tokio::join!(
        load_visible(&state, actor, id, None),
        store_inc::alerts_of_incident(&state.pool, actor.tenant_id, id)
    );
    let (_, events) = loaded?;
    let attached = attached?;
    let client_view = !matches!(actor.client_scope(), ClientScope::All);
    let entries = opsledger_app::incidents::timeline(
        state.ledger(),
        actor.tenant_id,
        events,
        attached,
        client_view,
    )
    .await?;
    Ok(HttpResponse::Ok().json(crate::common::Items { items: entries }))
}

// ------------------------------------------------------------ alerts

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AlertListQuery {
    /// `true`: only alerts still firing; `false`: only alerts no longer firing (resolved, expired, or resolutions of nothing).
    pub firing: Option<bool>,
    /// The alerts attached to this incident.
    pub incident_id: Option<Uuid>,
    /// Only items of this category. Another value is 400.
    pub category: Option<Category>,
    /// Only items of this service.
    pub service_id: Option<Uuid>,
    /// Only alerts from this source (`alertmanager`, `pagerduty`, `grafana`, or what a plain-JSON sender said).
    pub source: Option<String>,
    /// Cursor: return items whose id is smaller (older) than this one (the `next_cursor` of the previous page). These lists are newest first.
    pub before: Option<Uuid>,
    /// Items per page, 1 to 200 (default 50). Values outside the range are refused with 400.
    pub limit: Option<u32>,
}

fn alert_client_filter(actor: &Actor) -> Result<Option<Uuid>, ()> {
    match actor.client_scope() {
        ClientScope::All => Ok(None),
        ClientScope::Only(own) => Ok(Some(own)),
        ClientScope::Nothing => Err(()),
    }
}

pub async fn alert_list(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<AlertListQuery>,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.require(INCIDENT_READERS)?;
    state.tenants.require(&state.pool, actor.tenant_id).await?;
    let limit = page_len(query.limit)?;
    let Ok(client_id) = alert_client_filter(actor) else {
        return Ok(HttpResponse::Ok().json(Page::<store_inc::AlertRow> {
            items: vec![],
            next_cursor: None,
        }));
    };
    let filter = AlertFilter {
        firing: query.firing,
        category: query.category.map(|c| c.as_str().to_owned()),
        service_id: query.service_id,
        source: query.source.clone(),
        incident_id: query.incident_id,
        client_id,
        ..Default::default()
    };
    let items = store_inc::list_alerts(
        &state.pool,
        actor.tenant_id,
        &filter,
        query.before,
        limit + 1,
    )
    .await?;
    Ok(HttpResponse::Ok().json(Page::of(items, limit, |a| a.id)))
}

pub async fn alert_get(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.require(INCIDENT_READERS)?;
    state.tenants.require(&state.pool, actor.tenant_id).await?;
    let id = id.into_inner();
    let not_found = || ApiError::NotFound(format!("no alert {id}"));
    let client_id = alert_client_filter(actor).map_err(|_| not_found())?;
    let filter = AlertFilter {
        alert_id: Some(id),
        client_id,
        ..Default::default()
    };
    let mut rows = store_inc::list_alerts(&state.pool, actor.tenant_id, &filter, None, 1).await?;
    rows.pop()
        .map(|a| HttpResponse::Ok().json(a))
        .ok_or_else(not_found)
}
