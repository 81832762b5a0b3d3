//! `/api/v1/proposals`: improvement proposals (SPEC §5), raised from an
//! incident or standalone, approved or rejected by somebody other than who
//! raised them, implemented by a completed change, verified.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use opsledger_domain::access::Role;
use opsledger_domain::incident::{self, IncidentEvent};
use opsledger_domain::proposal::{self, Command, Proposal, PROPOSAL_RAISERS};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::aggregate::{self, Asked, Versioned};
use crate::auth::Caller;
use crate::common::{page_len, require_services, stream_events, AsOfQuery, Page};
use crate::extract::{IfMatch, OrEmpty};
use crate::idempotency::IdempotencyKey;
use crate::problem::ApiError;
use crate::AppState;
use opsledger_app::run::Target;

/// Staff read proposals; clients do not (they are the provider's own plans).
const PROPOSAL_READERS: &[Role] = &[
    Role::Operator,
    Role::Maintainer,
    Role::Approver,
    Role::Auditor,
    Role::Admin,
];

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RaiseBody {
    pub title: String,
    pub description: String,
    /// The incident it follows; its service is the proposal's when
    /// `service_ids` is absent.
    #[serde(default)]
    pub incident_id: Option<Uuid>,
    #[serde(default)]
    pub service_ids: Vec<Uuid>,
    #[serde(default)]
    pub minutes_spent: Option<u32>,
}

pub async fn proposal_raise(
    state: web::Data<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    req: HttpRequest,
    body: web::Json<RaiseBody>,
) -> Result<HttpResponse, ApiError> {
    let asked = serde_json::to_value(&*body).map_err(|e| ApiError::Internal(Box::new(e)))?;
    let actor = caller.require(PROPOSAL_RAISERS)?;
    let tenant = actor.tenant_id;
    let body = body.into_inner();
    let mut services = body.service_ids.clone();
    if let Some(incident_id) = body.incident_id {
        let events = stream_events(
            &state,
            tenant,
            &incident::incident_stream(incident_id),
            None,
        )
        .await?;
        let opened = events.iter().find_map(|e| {
            match IncidentEvent::from_stored(&e.event_type, &e.payload) {
                Some(IncidentEvent::IncidentOpened { service_id, .. }) => Some(service_id),
                _ => None,
            }
        });
        match opened {
            None => {
                return Err(ApiError::Unprocessable(format!(
                    "incident {incident_id} does not exist"
                )))
            }
            Some(Some(s)) if services.is_empty() => services.push(s),
            Some(_) => {}
        }
    }
    require_services(&state, tenant, &services).await?;
    let id = Uuid::now_v7();
    let asked = Asked {
        caller: &caller,
        req: &req,
        key,
        body: asked,
    };
    let command = Command::Raise {
        proposal_id: id,
        title: body.title,
        description: body.description,
        incident_id: body.incident_id,
        service_ids: services,
        minutes_spent: body.minutes_spent,
    };
    let target = Target::New {
        id,
        location: format!("/api/v1/proposals/{id}"),
    };
    aggregate::command::<Proposal>(
        &state,
        asked,
        IfMatch(None),
        PROPOSAL_RAISERS,
        target,
        command,
    )
    .await
}

pub async fn proposal_get(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<Uuid>,
    query: web::Query<AsOfQuery>,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.require(PROPOSAL_READERS)?;
    state.tenants.require(&state.pool, actor.tenant_id).await?;
    let v =
        aggregate::load::<Proposal>(&state, actor.tenant_id, id.into_inner(), query.as_of).await?;
    Ok(aggregate::respond(StatusCode::OK, &v))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only proposals in this status. Another value is 400.
    pub status: Option<String>,
    /// Only items of this service.
    pub service_id: Option<Uuid>,
    /// Only items about this incident.
    pub incident_id: Option<Uuid>,
    /// The cursor: `next_cursor` of the previous page.
    pub before: Option<Uuid>,
    /// Items per page, 1 to 200 (default 50). Values outside the range are refused with 400.
    pub limit: Option<u32>,
}

pub async fn proposal_list(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.require(PROPOSAL_READERS)?;
    state.tenants.require(&state.pool, actor.tenant_id).await?;
    if let Some(s) = &query.status {
        if proposal::Status::parse(s).is_none() {
            return Err(ApiError::BadRequest(format!(
                "status must be raised, approved, rejected, implemented or verified, not {s:?}"
            )));
        }
    }
    let limit = page_len(query.limit)?;
    let rows = opsledger_store::work::list_proposals(
        &state.pool,
        actor.tenant_id,
        query.status.as_deref(),
        query.service_id,
        query.incident_id,
        query.before,
        limit + 1,
    )
    .await?;
    let items: Vec<Versioned<Proposal>> = rows
        .into_iter()
        .map(|r| Versioned {
            record: r.proposal,
            version: r.version,
        })
        .collect();
    Ok(HttpResponse::Ok().json(Page::of(items, limit, |p| p.record.id)))
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveBody {
    #[serde(default)]
    pub comment: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RejectBody {
    pub reason: String,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImplementBody {
    pub change_id: Uuid,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyBody {
    /// How it was verified.
    pub note: String,
    #[serde(default)]
    pub minutes_spent: Option<u32>,
}

/// The parts every proposal command shares.
async fn run(
    state: &AppState,
    asked: Asked<'_>,
    id: Uuid,
    if_match: IfMatch,
    command: Command,
) -> Result<HttpResponse, ApiError> {
    let roles = command.roles();
    aggregate::command::<Proposal>(state, asked, if_match, roles, Target::Existing(id), command)
        .await
}

pub async fn proposal_approve(
    s: web::Data<AppState>,
    c: Caller,
    r: HttpRequest,
    id: web::Path<Uuid>,
    m: IfMatch,
    k: IdempotencyKey,
    b: OrEmpty<ApproveBody>,
) -> Result<HttpResponse, ApiError> {
    // The body is optional: an approval needs no comment.
    let body = b.body;
    let a = Asked::of(&c, &r, k, &body)?;
    let command = Command::Approve {
        comment: body.comment,
    };
    run(&s, a, id.into_inner(), m, command).await
}

pub async fn proposal_reject(
    s: web::Data<AppState>,
    c: Caller,
    r: HttpRequest,
    id: web::Path<Uuid>,
    m: IfMatch,
    k: IdempotencyKey,
    b: web::Json<RejectBody>,
) -> Result<HttpResponse, ApiError> {
    let a = Asked::of(&c, &r, k, &*b)?;
    let command = Command::Reject {
        reason: b.into_inner().reason,
    };
    run(&s, a, id.into_inner(), m, command).await
}

pub async fn proposal_implement(
    s: web::Data<AppState>,
    c: Caller,
    r: HttpRequest,
    id: web::Path<Uuid>,
    m: IfMatch,
    k: IdempotencyKey,
    b: web::Json<ImplementBody>,
) -> Result<HttpResponse, ApiError> {
    let a = Asked::of(&c, &r, k, &*b)?;
    let change_id = b.change_id;
    // Only the caller's own tenant's change counts; roles are checked before
    // anything is read.
    let actor = c.require(
        proposal::Command::Implement {
            change_id,
            change_completed: false,
        }
        .roles(),
    )?;
    let change = stream_events(&s, actor.tenant_id, &format!("change-{change_id}"), None).await?;
    if change.is_empty() {
        return Err(ApiError::Unprocessable(format!(
            "change {change_id} does not exist"
        )));
    }
    let change_completed = change.iter().any(|e| e.event_type == "ChangeCompleted");
    let command = Command::Implement {
        change_id,
        change_completed,
    };
    run(&s, a, id.into_inner(), m, command).await
}

pub async fn proposal_verify(
    s: web::Data<AppState>,
    c: Caller,
    r: HttpRequest,
    id: web::Path<Uuid>,
    m: IfMatch,
    k: IdempotencyKey,
    b: web::Json<VerifyBody>,
) -> Result<HttpResponse, ApiError> {
    let a = Asked::of(&c, &r, k, &*b)?;
    let b = b.into_inner();
    let command = Command::Verify {
        note: b.note,
        minutes_spent: b.minutes_spent,
    };
    run(&s, a, id.into_inner(), m, command).await
}
