//! Client inquiries (SPEC §4): opened by client users about their own
//! client's services (or by staff on a client's behalf), answered and
//! escalated by the teams, closed by either. Clients see only their own
//! client's inquiries, and never the internal fields (the escalation reason,
//! who answered, the effort recorded).

use actix_web::{web, HttpRequest, HttpResponse};
use opsledger_domain::access::{
    Actor, ClientScope, Role, INQUIRY_CLOSERS, INQUIRY_OPENERS, INQUIRY_READERS, INQUIRY_RESPONDERS,
};
use opsledger_domain::inquiry::{self, Command, Inquiry, InquiryKind, InquiryStatus};
use opsledger_store::operations::{self as store_ops, InquiryFilter};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::aggregate::{self, Asked};
use crate::auth::Caller;
use crate::common::{client_of_service, page_len, Page};
use crate::extract::{IfMatch, OrEmpty};
use crate::idempotency::IdempotencyKey;
use crate::problem::ApiError;
use crate::AppState;
use opsledger_app::run::{self, Prepared, Target};

fn internal(e: serde_json::Error) -> ApiError {
    ApiError::Internal(Box::new(e))
}

/// The inquiry as the caller may see it: clients without internal fields.
fn view(actor: &Actor, i: &Inquiry, version: i64) -> Result<Value, ApiError> {
    Ok(shown(
        matches!(actor.client_scope(), ClientScope::All),
        i,
        version,
    ))
}

/// The inquiry as staff (`true`) or a client sees it.
fn shown(staff: bool, i: &Inquiry, version: i64) -> Value {
    let mut v = run::versioned(i, version);
    if !staff {
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
    v
}

fn may_see(actor: &Actor, client_id: Uuid) -> bool {
    match actor.client_scope() {
        ClientScope::All => true,
        ClientScope::Only(own) => own == client_id,
        ClientScope::Nothing => false,
    }
}

/// The inquiry and its version; 404 when it is not the caller's to see.
async fn load(state: &AppState, actor: &Actor, id: Uuid) -> Result<(Inquiry, i64), ApiError> {
    let v = aggregate::load::<Inquiry>(state, actor.tenant_id, id, None).await?;
    if !may_see(actor, v.record.client_id) {
        return Err(ApiError::NotFound(format!("no inquiry {id}")));
    }
    Ok((v.record, v.version))
}

#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
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
    let r = Asked::of(&caller, &req, key, &*body)?;
    let body = body.into_inner();
    let id = Uuid::now_v7();
    let command = Command::Open {
        inquiry_id: id,
        service_id: body.service_id,
        kind: body.kind,
        subject: body.subject,
        body: body.body,
    };
    let target = Target::New {
        id,
        location: format!("/api/v1/inquiries/{id}"),
    };
    run(&state, r, IfMatch(None), INQUIRY_OPENERS, target, command).await
}

/// Runs an inquiry command: an inquiry not the caller's to see is not found;
/// clients are answered without the internal fields.
async fn run(
    state: &AppState,
    r: Asked<'_>,
    if_match: IfMatch,
    roles: &[Role],
    target: Target,
    command: Command,
) -> Result<HttpResponse, ApiError> {
    let opening = match &command {
        Command::Open { service_id, .. } => Some(*service_id),
        _ => None,
    };
    let admit = |actor: &Actor, i: Option<&Inquiry>| match i {
        Some(i) if !may_see(actor, i.client_id) => {
            Err(ApiError::NotFound(format!("no inquiry {}", i.id)))
        }
        _ => Ok(()),
    };
    let prepare = async |actor: &Actor, _: Option<&Inquiry>| {
        let staff = matches!(actor.client_scope(), ClientScope::All);
        let client_id = match opening {
            // A client user asks about its own client's services only;
            // another client's service does not exist for it.
            Some(s) => client_of_service(state, actor.tenant_id, s)
                .await?
                .filter(|c| may_see(actor, *c)),
            None => None,
        };
        Ok(Prepared {
            context: inquiry::Context { client_id },
            view: move |i: &Inquiry, version| shown(staff, i, version),
        })
    };
    aggregate::run_command::<Inquiry, _, _, _>(
        state, r, if_match, roles, target, command, admit, prepare,
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

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct InquiryListQuery {
    /// Only inquiries in this status. Another value is 400.
    pub status: Option<InquiryStatus>,
    /// Only inquiries of this kind. Another value is 400.
    pub kind: Option<InquiryKind>,
    /// Only items of this service.
    pub service_id: Option<Uuid>,
    /// Only this client's items. A client user who names another client gets an empty page.
    pub client_id: Option<Uuid>,
    /// Cursor: return items whose id is smaller (older) than this one (the `next_cursor` of the previous page). These lists are newest first.
    pub before: Option<Uuid>,
    /// Items per page, 1 to 200 (default 50). Values outside the range are refused with 400.
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

/// A command on an existing inquiry.
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
    let r = Asked {
        caller: &caller,
        req: &req,
        key,
        body: asked,
    };
    run(&state, r, if_match, roles, Target::Existing(id), command).await
}

#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
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

#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
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

#[derive(Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
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
    body: OrEmpty<CloseBody>,
) -> Result<HttpResponse, ApiError> {
    let OrEmpty { body, asked } = body;
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
