//! Runbooks as versioned procedures, and their executions recorded step by
//! step (SPEC §5 "Runbook execution"). Staff only: clients never see them.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use opsledger_domain::access::{OPERATIONS_WORKERS, WORKLOG_READERS};
use opsledger_domain::incident;
use opsledger_domain::runbook::{
    self, Command, Execution, ExecutionStatus, Outcome, Publish, Runbook, RunbookVersion, StepDef,
};
use opsledger_store::operations::{self as store_ops, ExecutionFilter};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::aggregate::{self, Asked};
use crate::auth::Caller;
use crate::common::{existing_service, page_len, stream_events, Page};
use crate::extract::{IfMatch, OrEmpty};
use crate::idempotency::IdempotencyKey;
use crate::problem::ApiError;
use crate::AppState;
use opsledger_app::run::{Prepared, Target};
use opsledger_domain::access::Actor;

fn internal(e: serde_json::Error) -> ApiError {
    ApiError::Internal(Box::new(e))
}

// ------------------------------------------------------------ runbooks

#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunbookBody {
    pub title: String,
    #[serde(default)]
    pub service_id: Option<Uuid>,
    pub steps: Vec<StepBody>,
}

/// A step as asked for: unknown fields are refused here, while the stored
/// `StepDef` stays lenient for events written by later versions.
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StepBody {
    pub title: String,
    pub instructions: String,
    #[serde(default)]
    pub double_check: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RunbookView<'a> {
    id: Uuid,
    #[serde(flatten)]
    shown: &'a RunbookVersion,
    latest_version: u32,
}

fn runbook_view(r: &Runbook, shown: &RunbookVersion) -> Value {
    serde_json::to_value(RunbookView {
        id: r.id,
        shown,
        latest_version: r.latest().version,
    })
    .unwrap_or_default()
}

async fn load_runbook(state: &AppState, tenant: Uuid, id: Uuid) -> Result<Runbook, ApiError> {
    Ok(aggregate::load::<Runbook>(state, tenant, id, None)
        .await?
        .record)
}

/// Publishes version 1 (`id` is `None`) or the next version of a runbook.
async fn publish(
    state: web::Data<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    req: HttpRequest,
    id: Option<Uuid>,
    if_match: IfMatch,
    body: RunbookBody,
) -> Result<HttpResponse, ApiError> {
    let r = Asked::of(&caller, &req, key, &body)?;
    let target = match id {
        Some(id) => Target::Revision {
            id,
            location: |id, n| format!("/api/v1/runbooks/{id}?version={n}"),
        },
        None => {
            let id = Uuid::now_v7();
            Target::New {
                id,
                location: format!("/api/v1/runbooks/{id}"),
            }
        }
    };
    let service_id = body.service_id;
    let command = Publish {
        runbook_id: target.id(),
        title: body.title,
        service_id,
        steps: body
            .steps
            .into_iter()
            .map(|s| StepDef {
                title: s.title,
                instructions: s.instructions,
                double_check: s.double_check,
            })
            .collect(),
    };
    let prepare = async |actor: &Actor, _: Option<&Runbook>| {
        if let Some(s) = service_id {
            existing_service(&state, actor.tenant_id, s).await?;
        }
        Ok(Prepared {
            context: (),
            view: |r: &Runbook, _| runbook_view(r, r.latest()),
        })
    };
    aggregate::run_prepared::<Runbook, _, _>(
        &state,
        r,
        if_match,
        OPERATIONS_WORKERS,
        target,
        command,
        prepare,
    )
    .await
}

pub async fn runbook_publish(
    state: web::Data<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    req: HttpRequest,
    body: web::Json<RunbookBody>,
) -> Result<HttpResponse, ApiError> {
    publish(
        state,
        caller,
        key,
        req,
        None,
        IfMatch(None),
        body.into_inner(),
    )
    .await
}

pub async fn runbook_version_publish(
    state: web::Data<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    req: HttpRequest,
    id: web::Path<Uuid>,
    if_match: IfMatch,
    body: web::Json<RunbookBody>,
) -> Result<HttpResponse, ApiError> {
    publish(
        state,
        caller,
        key,
        req,
        Some(id.into_inner()),
        if_match,
        body.into_inner(),
    )
    .await
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RunbookQuery {
    /// An earlier version; the latest if absent.
    pub version: Option<u32>,
}

pub async fn runbook_get(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<Uuid>,
    query: web::Query<RunbookQuery>,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.require(WORKLOG_READERS)?;
    state.tenants.require(&state.pool, actor.tenant_id).await?;
    let id = id.into_inner();
    let r = load_runbook(&state, actor.tenant_id, id).await?;
    let shown = match query.version {
        None => r.latest(),
        Some(n) => r
            .version(n)
            .ok_or_else(|| ApiError::NotFound(format!("runbook {id} has no version {n}")))?,
    };
    Ok(HttpResponse::Ok()
        .insert_header((header::ETAG, format!("\"{}\"", r.latest().version)))
        .json(runbook_view(&r, shown)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RunbookListQuery {
    /// Only items of this service.
    pub service_id: Option<Uuid>,
    /// Cursor: return items whose id is smaller (older) than this one (the `next_cursor` of the previous page). These lists are newest first.
    pub before: Option<Uuid>,
    /// Items per page, 1 to 200 (default 50). Values outside the range are refused with 400.
    pub limit: Option<u32>,
}

pub async fn runbook_list(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<RunbookListQuery>,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.require(WORKLOG_READERS)?;
    state.tenants.require(&state.pool, actor.tenant_id).await?;
    let limit = page_len(query.limit)?;
    let items = store_ops::list_runbooks(
        &state.pool,
        actor.tenant_id,
        query.service_id,
        query.before,
        limit + 1,
    )
    .await?;
    Ok(HttpResponse::Ok().json(Page::of(items, limit, |r| r.id)))
}

// ------------------------------------------------------------ executions

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ExecutionView<'a> {
    #[serde(flatten)]
    execution: &'a Execution,
    /// The step to complete next; `null` when every step is completed.
    next_step: Option<u32>,
    /// A completed step still waiting for its second person, if any.
    awaiting_confirmation: Option<u32>,
    version: i64,
}

fn execution_view(x: &Execution, version: i64) -> Value {
    serde_json::to_value(ExecutionView {
        execution: x,
        next_step: x.next_step(),
        awaiting_confirmation: x.awaiting_confirmation().map(|s| s.step),
        version,
    })
    .unwrap_or_default()
}

/// What an execution starts from: its runbook, and the incident it serves.
struct Starts {
    runbook_id: Uuid,
    incident_id: Option<Uuid>,
}

/// Runs a command on an execution (`starts` with `Target::New` starts one).
async fn run(
    state: &AppState,
    r: Asked<'_>,
    if_match: IfMatch,
    target: Target,
    command: Command,
    starts: Option<Starts>,
) -> Result<HttpResponse, ApiError> {
    let prepare = async |actor: &Actor, _: Option<&Execution>| {
        let tenant = actor.tenant_id;
        let runbook = match starts {
            Some(Starts {
                runbook_id,
                incident_id,
            }) => {
                let runbook = load_runbook(state, tenant, runbook_id).await?;
                if let Some(incident_id) = incident_id {
                    // Asked of the log, so an incident opened a moment ago counts.
                    let stream = incident::incident_stream(incident_id);
                    if stream_events(state, tenant, &stream, None)
                        .await?
                        .is_empty()
                    {
                        return Err(ApiError::Unprocessable(format!(
                            "incident {incident_id} does not exist"
                        )));
                    }
                }
                Some(runbook)
            }
            None => None,
        };
        Ok(Prepared {
            context: runbook::Context { runbook },
            view: execution_view,
        })
    };
    aggregate::run_prepared::<Execution, _, _>(
        state,
        r,
        if_match,
        OPERATIONS_WORKERS,
        target,
        command,
        prepare,
    )
    .await
}

#[derive(Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartBody {
    /// The incident this execution serves, if any.
    #[serde(default)]
    pub incident_id: Option<Uuid>,
}

pub async fn execution_start(
    state: web::Data<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    req: HttpRequest,
    id: web::Path<Uuid>,
    body: OrEmpty<StartBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.body;
    let r = Asked::of(&caller, &req, key, &body)?;
    let execution_id = Uuid::now_v7();
    let command = Command::Start {
        execution_id,
        incident_id: body.incident_id,
    };
    let target = Target::New {
        id: execution_id,
        location: format!("/api/v1/executions/{execution_id}"),
    };
    let starts = Starts {
        runbook_id: id.into_inner(),
        incident_id: body.incident_id,
    };
    run(&state, r, IfMatch(None), target, command, Some(starts)).await
}

pub async fn execution_get(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.require(WORKLOG_READERS)?;
    state.tenants.require(&state.pool, actor.tenant_id).await?;
    let v = aggregate::load::<Execution>(&state, actor.tenant_id, id.into_inner(), None).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::ETAG, format!("\"{}\"", v.version)))
        .json(execution_view(&v.record, v.version)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ExecutionListQuery {
    /// Only executions of this runbook.
    pub runbook_id: Option<Uuid>,
    /// Only items about this incident.
    pub incident_id: Option<Uuid>,
    /// Only executions in this status. Another value is 400.
    pub status: Option<ExecutionStatus>,
    /// Cursor: return items whose id is smaller (older) than this one (the `next_cursor` of the previous page). These lists are newest first.
    pub before: Option<Uuid>,
    /// Items per page, 1 to 200 (default 50). Values outside the range are refused with 400.
    pub limit: Option<u32>,
}

pub async fn execution_list(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<ExecutionListQuery>,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.require(WORKLOG_READERS)?;
    state.tenants.require(&state.pool, actor.tenant_id).await?;
    let limit = page_len(query.limit)?;
    let filter = ExecutionFilter {
        runbook_id: query.runbook_id,
        incident_id: query.incident_id,
        status: query.status.map(|s| s.as_str().to_owned()),
    };
    let rows = store_ops::list_executions(
        &state.pool,
        actor.tenant_id,
        &filter,
        query.before,
        limit + 1,
    )
    .await?;
    let page = Page::of(rows, limit, |(x, _)| x.id);
    let items = page
        .items
        .iter()
        .map(|(x, v)| execution_view(x, *v))
        .collect::<Vec<_>>();
    Ok(HttpResponse::Ok().json(Page {
        items,
        next_cursor: page.next_cursor,
    }))
}

/// A command on an existing execution.
#[allow(clippy::too_many_arguments)]
async fn execute(
    state: web::Data<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    req: HttpRequest,
    id: Uuid,
    if_match: IfMatch,
    asked: Value,
    command: Command,
) -> Result<HttpResponse, ApiError> {
    let r = Asked {
        caller: &caller,
        req: &req,
        key,
        body: asked,
    };
    run(&state, r, if_match, Target::Existing(id), command, None).await
}

#[derive(Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteBody {
    #[serde(default)]
    pub note: Option<String>,
    #[serde(default)]
    pub minutes_spent: Option<i64>,
}

pub async fn step_complete(
    state: web::Data<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    req: HttpRequest,
    path: web::Path<(Uuid, u32)>,
    if_match: IfMatch,
    body: OrEmpty<CompleteBody>,
) -> Result<HttpResponse, ApiError> {
    let OrEmpty { body, asked } = body;
    let (id, step) = path.into_inner();
    let command = Command::Complete {
        step,
        note: body.note,
        minutes_spent: body.minutes_spent,
    };
    execute(state, caller, key, req, id, if_match, asked, command).await
}

#[derive(Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmBody {
    #[serde(default)]
    pub note: Option<String>,
    /// The second person's effort.
    #[serde(default)]
    pub minutes_spent: Option<i64>,
}

pub async fn step_confirm(
    state: web::Data<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    req: HttpRequest,
    path: web::Path<(Uuid, u32)>,
    if_match: IfMatch,
    body: OrEmpty<ConfirmBody>,
) -> Result<HttpResponse, ApiError> {
    let OrEmpty { body, asked } = body;
    let (id, step) = path.into_inner();
    let command = Command::Confirm {
        step,
        note: body.note,
        minutes_spent: body.minutes_spent,
    };
    execute(state, caller, key, req, id, if_match, asked, command).await
}

#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FinishBody {
    pub outcome: Outcome,
    /// Why it was aborted (required then), or anything worth keeping.
    #[serde(default)]
    pub note: Option<String>,
}

pub async fn execution_finish(
    state: web::Data<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    req: HttpRequest,
    id: web::Path<Uuid>,
    if_match: IfMatch,
    body: web::Json<FinishBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let asked = serde_json::to_value(&body).map_err(internal)?;
    let command = Command::Finish {
        outcome: body.outcome,
        note: body.note,
    };
    execute(
        state,
        caller,
        key,
        req,
        id.into_inner(),
        if_match,
        asked,
        command,
    )
    .await
}
