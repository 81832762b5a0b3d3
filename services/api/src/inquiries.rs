//! Client inquiries (SPEC §4): opened by client users about their own
//! client's services (or by staff on a client's behalf), answered and
//! escalated by the teams, closed by either. Clients see only their own
//! client's inquiries, and never the internal fields (the escalation reason,
//! who answered, the effort recorded).

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use opsledger_domain::access::{
    Actor, ClientScope, Role, INQUIRY_CLOSERS, INQUIRY_OPENERS, INQUIRY_READERS, INQUIRY_RESPONDERS,
};
use opsledger_domain::inquiry::{self, Command, Inquiry, InquiryEvent, InquiryKind, InquiryStatus};
use opsledger_store::operations::{self as store_ops, InquiryFilter};
use opsledger_store::ExpectedVersion;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::auth::Caller;
use crate::common::{
    actor_of, append_and_answer, begin_command, check_if_match, existing_service, page_len,
    stream_events, Appending, Page,
};
use crate::extract::{optional_json, IfMatch};
use crate::idempotency::IdempotencyKey;
use crate::problem::ApiError;
use crate::AppState;

fn internal(e: serde_json::Error) -> ApiError {
    ApiError::Internal(Box::new(e))
}

/// The inquiry as the caller may see it: clients without internal fields.
fn view(actor: &Actor, i: &Inquiry, version: i64) -> Result<Value, ApiError> {
    let mut v = serde_json::to_value(i).map_err(internal)?;
    v["version"] = version.into();
    if !matches!(actor.client_scope(), ClientScope::All) {
        if let Some(o) = v.as_object_mut() {
            o.remove("escalation_reason");
            o.remove("opened_by");
        }
        if let Some(answers) = v["answers"].as_array_mut() {
            for a in answers.iter_mut().filter_map(Value::as_object_mut) {
                a.remove("answered_by");
                a.remove("minutes_spent");
            }
        }
    }
    Ok(v)
}

fn may_see(actor: &Actor, client_id: Uuid) -> bool {
    match actor.client_scope() {
        ClientScope::All => true,
        ClientScope::Only(own) => own == client_id,
        ClientScope::Nothing => false,
    }
}

fn fold(events: &[opsledger_domain::RecordedEvent]) -> Option<Inquiry> {
    events.iter().fold(None, |i, e| {
        match InquiryEvent::from_stored(&e.event_type, &e.payload) {
            Some(parsed) => {
                let (by, role) = actor_of(e);
                inquiry::evolve(i, &parsed, by, role, e.recorded_at)
            }
            None => i,
        }
    })
}

/// The inquiry and its version; 404 when it is not the caller's to see.
async fn load(state: &AppState, actor: &Actor, id: Uuid) -> Result<(Inquiry, i64), ApiError> {
    let events = stream_events(state, actor.tenant_id, &inquiry::inquiry_stream(id), None).await?;
    let not_found = || ApiError::NotFound(format!("no inquiry {id}"));
    let i = fold(&events).ok_or_else(not_found)?;
    if !may_see(actor, i.client_id) {
        return Err(not_found());
    }
    Ok((i, events.last().map_or(0, |e| e.stream_version)))
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OpenBody {
    pub service_id: Uuid,
    pub kind: InquiryKind,
    pub subject: String,
    pub body: String,
}

pub async fn inquiry_open(
    state: web::Data<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    req: HttpRequest,
    body: web::Json<OpenBody>,
) -> Result<HttpResponse, ApiError> {
    let (actor, fingerprint, replayed) =
        begin_command(&state, &caller, INQUIRY_OPENERS, &key, &req, &*body).await?;
    if let Some(r) = replayed {
        return Ok(r);
    }
    let body = body.into_inner();
    // A client user asks about its own client's services only; another
    // client's service does not exist for it.
    let client_id = existing_service(&state, actor.tenant_id, body.service_id).await?;
    if !may_see(actor, client_id) {
        return Err(ApiError::Unprocessable(format!(
            "service {} does not exist",
            body.service_id
        )));
    }
    let id = Uuid::now_v7();
    let event = inquiry::open(
        id,
        body.service_id,
        client_id,
        body.kind,
        &body.subject,
        &body.body,
    )?;
    let now = Utc::now();
    let opened = inquiry::evolve(
        None,
        &event,
        &actor.subject,
        actor.primary_role().as_str(),
        now,
    )
    .ok_or_else(|| ApiError::Internal("opening opened nothing".into()))?;
    append_and_answer(
        &state,
        actor,
        &req,
        &key,
        &fingerprint,
        Appending {
            stream: inquiry::inquiry_stream(id),
            expected: ExpectedVersion::NoStream,
            events: vec![(event.type_name(), event.payload())],
            version: 1,
            location: Some(format!("/api/v1/inquiries/{id}")),
            view: view(actor, &opened, 1)?,
            at: now,
        },
    )
    .await
}

pub async fn inquiry_get(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.require(INQUIRY_READERS)?;
    state.tenants.require(&state.pool, actor.tenant_id).await?;
    let (i, version) = load(&state, actor, id.into_inner()).await?;
    Ok(HttpResponse::Ok()
        .insert_header((actix_web::http::header::ETAG, format!("\"{version}\"")))
        .json(view(actor, &i, version)?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InquiryListQuery {
    pub status: Option<InquiryStatus>,
    pub kind: Option<InquiryKind>,
    pub service_id: Option<Uuid>,
    pub client_id: Option<Uuid>,
    pub before: Option<Uuid>,
    pub limit: Option<u32>,
}

pub async fn inquiry_list(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<InquiryListQuery>,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.require(INQUIRY_READERS)?;
    state.tenants.require(&state.pool, actor.tenant_id).await?;
    let limit = page_len(query.limit)?;
    let client_id = match actor.client_scope() {
        ClientScope::All => query.client_id,
        ClientScope::Only(own) if query.client_id.is_none_or(|c| c == own) => Some(own),
        _ => {
            return Ok(HttpResponse::Ok().json(Page::<Value> {
                items: vec![],
                next_cursor: None,
            }))
        }
    };
    let filter = InquiryFilter {
        client_id,
        service_id: query.service_id,
        status: query.status.map(|s| s.as_str().to_owned()),
        kind: query.kind.map(|k| k.as_str().to_owned()),
    };
    let rows = store_ops::list_inquiries(
        &state.pool,
        actor.tenant_id,
        &filter,
        query.before,
        limit + 1,
    )
    .await?;
    let page = Page::of(rows, limit, |(i, _)| i.id);
    let items = page
        .items
        .iter()
        .map(|(i, v)| view(actor, i, *v))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(HttpResponse::Ok().json(Page {
        items,
        next_cursor: page.next_cursor,
    }))
}

/// Decides a command on the inquiry as it stands and appends the result with
/// the version it was decided on.
#[allow(clippy::too_many_arguments)]
async fn execute(
    state: web::Data<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    req: HttpRequest,
    id: Uuid,
    if_match: IfMatch,
    roles: &[Role],
    asked: Value,
    command: Command,
) -> Result<HttpResponse, ApiError> {
    let asked = serde_json::json!({ "if_match": if_match.0, "body": asked });
    let (actor, fingerprint, replayed) =
        begin_command(&state, &caller, roles, &key, &req, &asked).await?;
    if let Some(r) = replayed {
        return Ok(r);
    }
    let (i, version) = load(&state, actor, id).await?;
    check_if_match(if_match.0, version, "inquiry", i.status.as_str())?;
    let event = inquiry::decide(&i, command)?;
    let now = Utc::now();
    let after = inquiry::evolve(
        Some(i),
        &event,
        &actor.subject,
        actor.primary_role().as_str(),
        now,
    )
    .ok_or_else(|| ApiError::Internal("the inquiry vanished".into()))?;
    append_and_answer(
        &state,
        actor,
        &req,
        &key,
        &fingerprint,
        Appending {
            stream: inquiry::inquiry_stream(id),
            expected: ExpectedVersion::Exact(version),
            events: vec![(event.type_name(), event.payload())],
            version: version + 1,
            location: None,
            view: view(actor, &after, version + 1)?,
            at: now,
        },
    )
    .await
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerBody {
    /// Shown to the client.
    pub answer: String,
    #[serde(default)]
    pub minutes_spent: Option<i64>,
}

pub async fn inquiry_answer(
    state: web::Data<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    req: HttpRequest,
    id: web::Path<Uuid>,
    if_match: IfMatch,
    body: web::Json<AnswerBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let asked = serde_json::to_value(&body).map_err(internal)?;
    let command = Command::Answer {
        answer: body.answer,
        minutes_spent: body.minutes_spent,
    };
    let id = id.into_inner();
    execute(
        state,
        caller,
        key,
        req,
        id,
        if_match,
        INQUIRY_RESPONDERS,
        asked,
        command,
    )
    .await
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EscalateBody {
    /// Why maintenance must take it; staff only.
    pub reason: String,
}

pub async fn inquiry_escalate(
    state: web::Data<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    req: HttpRequest,
    id: web::Path<Uuid>,
    if_match: IfMatch,
    body: web::Json<EscalateBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let asked = serde_json::to_value(&body).map_err(internal)?;
    let command = Command::Escalate {
        reason: body.reason,
    };
    let id = id.into_inner();
    execute(
        state,
        caller,
        key,
        req,
        id,
        if_match,
        INQUIRY_RESPONDERS,
        asked,
        command,
    )
    .await
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CloseBody {
    #[serde(default)]
    pub note: Option<String>,
}

pub async fn inquiry_close(
    state: web::Data<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    req: HttpRequest,
    id: web::Path<Uuid>,
    if_match: IfMatch,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let body: CloseBody = optional_json(&req, &body)?.unwrap_or_default();
    let asked = serde_json::to_value(&body).map_err(internal)?;
    let command = Command::Close { note: body.note };
    let id = id.into_inner();
    execute(
        state,
        caller,
        key,
        req,
        id,
        if_match,
        INQUIRY_CLOSERS,
        asked,
        command,
    )
    .await
}
