//! Runbooks as versioned procedures, and their executions recorded step by
//! step (SPEC §5 "Runbook execution"). Staff only: clients never see them.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use opsledger_domain::access::{OPERATIONS_WORKERS, WORKLOG_READERS};
use opsledger_domain::incident;
use opsledger_domain::runbook::{
    self, Command, Execution, ExecutionEvent, ExecutionStatus, Outcome, Runbook, RunbookEvent,
    RunbookVersion, StepDef,
};
use opsledger_domain::RecordedEvent;
use opsledger_store::operations::{self as store_ops, ExecutionFilter};
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

// ------------------------------------------------------------ runbooks

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RunbookBody {
    pub title: String,
    #[serde(default)]
    pub service_id: Option<Uuid>,
    pub steps: Vec<StepBody>,
}

/// A step as asked for: unknown fields are refused here, while the stored
/// `StepDef` stays lenient for events written by later versions.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StepBody {
    pub title: String,
    pub instructions: String,
    #[serde(default)]
    pub double_check: bool,
}

#[derive(Debug, Serialize)]
struct RunbookView<'a> {
    id: Uuid,
    #[serde(flatten)]
    shown: &'a RunbookVersion,
    latest_version: u32,
}

fn runbook_view(r: &Runbook, shown: &RunbookVersion) -> Result<Value, ApiError> {
    serde_json::to_value(RunbookView {
        id: r.id,
        shown,
        latest_version: r.latest().version,
    })
    .map_err(internal)
}

fn fold_runbook(events: &[RecordedEvent]) -> Option<Runbook> {
    events.iter().fold(None, |r, e| {
        match RunbookEvent::from_stored(&e.event_type, &e.payload) {
            Some(parsed) => runbook::evolve_runbook(r, &parsed, actor_of(e).0, e.recorded_at),
            None => r,
        }
    })
}

async fn load_runbook(state: &AppState, tenant: Uuid, id: Uuid) -> Result<Runbook, ApiError> {
    let events = stream_events(state, tenant, &runbook::runbook_stream(id), None).await?;
    fold_runbook(&events).ok_or_else(|| ApiError::NotFound(format!("no runbook {id}")))
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
    let asked = serde_json::json!({ "if_match": if_match.0, "body": &body });
    let (actor, fingerprint, replayed) =
        begin_command(&state, &caller, OPERATIONS_WORKERS, &key, &req, &asked).await?;
    if let Some(r) = replayed {
        return Ok(r);
    }
    let tenant = actor.tenant_id;
    let current = match id {
        Some(id) => Some(load_runbook(&state, tenant, id).await?),
        None => None,
    };
    let version = current.as_ref().map_or(0, |r| r.latest().version as i64);
    if current.is_some() {
        check_if_match(if_match.0, version, "runbook", "published")?;
    }
    let id = id.unwrap_or_else(Uuid::now_v7);
    let event = runbook::publish(
        current.as_ref(),
        id,
        &body.title,
        body.service_id,
        body.steps
            .into_iter()
            .map(|s| StepDef {
                title: s.title,
                instructions: s.instructions,
                double_check: s.double_check,
            })
            .collect(),
    )?;
    if let Some(s) = body.service_id {
        existing_service(&state, tenant, s).await?;
    }
    let now = Utc::now();
    let after = runbook::evolve_runbook(current, &event, &actor.subject, now)
        .ok_or_else(|| ApiError::Internal("publishing published nothing".into()))?;
    let view = runbook_view(&after, after.latest())?;
    let n = after.latest().version;
    append_and_answer(
        &state,
        actor,
        &req,
        &key,
        &fingerprint,
        Appending {
            stream: runbook::runbook_stream(id),
            expected: if version == 0 {
                ExpectedVersion::NoStream
            } else {
                ExpectedVersion::Exact(version)
            },
            events: vec![(event.type_name(), event.payload())],
            version: n as i64,
            location: Some(if n == 1 {
                format!("/api/v1/runbooks/{id}")
            } else {
                format!("/api/v1/runbooks/{id}?version={n}")
            }),
            view,
            at: now,
        },
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

#[derive(Debug, Deserialize)]
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
        .json(runbook_view(&r, shown)?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunbookListQuery {
    pub service_id: Option<Uuid>,
    pub before: Option<Uuid>,
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

#[derive(Debug, Serialize)]
struct ExecutionView<'a> {
    #[serde(flatten)]
    execution: &'a Execution,
    /// The step to complete next; `null` when every step is completed.
    next_step: Option<u32>,
    /// A completed step still waiting for its second person, if any.
    awaiting_confirmation: Option<u32>,
    version: i64,
}

fn execution_view(x: &Execution, version: i64) -> Result<Value, ApiError> {
    serde_json::to_value(ExecutionView {
        execution: x,
        next_step: x.next_step(),
        awaiting_confirmation: x.awaiting_confirmation().map(|s| s.step),
        version,
    })
    .map_err(internal)
}

fn fold_execution(events: &[RecordedEvent]) -> Option<Execution> {
    events.iter().fold(None, |x, e| {
        match ExecutionEvent::from_stored(&e.event_type, &e.payload) {
            Some(parsed) => runbook::evolve_execution(x, &parsed, actor_of(e).0, e.recorded_at),
            None => x,
        }
    })
}

async fn load_execution(
    state: &AppState,
    tenant: Uuid,
    id: Uuid,
) -> Result<(Execution, i64), ApiError> {
    let events = stream_events(state, tenant, &runbook::execution_stream(id), None).await?;
    let x =
        fold_execution(&events).ok_or_else(|| ApiError::NotFound(format!("no execution {id}")))?;
    Ok((x, events.last().map_or(0, |e| e.stream_version)))
}

#[derive(Debug, Default, Deserialize, Serialize)]
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
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let body: StartBody = optional_json(&req, &body)?.unwrap_or_default();
    let (actor, fingerprint, replayed) =
        begin_command(&state, &caller, OPERATIONS_WORKERS, &key, &req, &body).await?;
    if let Some(r) = replayed {
        return Ok(r);
    }
    let tenant = actor.tenant_id;
    let r = load_runbook(&state, tenant, id.into_inner()).await?;
    if let Some(incident_id) = body.incident_id {
        // Asked of the log, so an incident opened a moment ago counts.
        let known = !stream_events(
            &state,
            tenant,
            &incident::incident_stream(incident_id),
            None,
        )
        .await?
        .is_empty();
        if !known {
            return Err(ApiError::Unprocessable(format!(
                "incident {incident_id} does not exist"
            )));
        }
    }
    let execution_id = Uuid::now_v7();
    let event = runbook::start(&r, execution_id, body.incident_id);
    let now = Utc::now();
    let x = runbook::evolve_execution(None, &event, &actor.subject, now)
        .ok_or_else(|| ApiError::Internal("starting started nothing".into()))?;
    let view = execution_view(&x, 1)?;
    append_and_answer(
        &state,
        actor,
        &req,
        &key,
        &fingerprint,
        Appending {
            stream: runbook::execution_stream(execution_id),
            expected: ExpectedVersion::NoStream,
            events: vec![(event.type_name(), event.payload())],
            version: 1,
            location: Some(format!("/api/v1/executions/{execution_id}")),
            view,
            at: now,
        },
    )
    .await
}

pub async fn execution_get(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.require(WORKLOG_READERS)?;
    state.tenants.require(&state.pool, actor.tenant_id).await?;
    let (x, version) = load_execution(&state, actor.tenant_id, id.into_inner()).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::ETAG, format!("\"{version}\"")))
        .json(execution_view(&x, version)?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutionListQuery {
    pub runbook_id: Option<Uuid>,
    pub incident_id: Option<Uuid>,
    pub status: Option<ExecutionStatus>,
    pub before: Option<Uuid>,
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
        .collect::<Result<Vec<_>, _>>()?;
    Ok(HttpResponse::Ok().json(Page {
        items,
        next_cursor: page.next_cursor,
    }))
}

/// Decides a command on the execution as it stands and appends the result
/// with the version it was decided on.
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
    let asked = serde_json::json!({ "if_match": if_match.0, "body": asked });
    let (actor, fingerprint, replayed) =
        begin_command(&state, &caller, OPERATIONS_WORKERS, &key, &req, &asked).await?;
    if let Some(r) = replayed {
        return Ok(r);
    }
    let (x, version) = load_execution(&state, actor.tenant_id, id).await?;
    check_if_match(if_match.0, version, "execution", x.status.as_str())?;
    let event = runbook::decide(&x, command, &actor.subject).map_err(|r| {
        match ApiError::from(r) {
            // Say where the procedure stands, so a client can show it.
            ApiError::Conflict { detail, mut extra } => {
                extra.insert("next_step".into(), x.next_step().into());
                extra.insert(
                    "awaiting_confirmation".into(),
                    x.awaiting_confirmation().map(|s| s.step).into(),
                );
                ApiError::Conflict { detail, extra }
            }
            other => other,
        }
    })?;
    let now = Utc::now();
    let after = runbook::evolve_execution(Some(x), &event, &actor.subject, now)
        .ok_or_else(|| ApiError::Internal("the execution vanished".into()))?;
    let view = execution_view(&after, version + 1)?;
    append_and_answer(
        &state,
        actor,
        &req,
        &key,
        &fingerprint,
        Appending {
            stream: runbook::execution_stream(id),
            expected: ExpectedVersion::Exact(version),
            events: vec![(event.type_name(), event.payload())],
            version: version + 1,
            location: None,
            view,
            at: now,
        },
    )
    .await
}

#[derive(Debug, Default, Deserialize, Serialize)]
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
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let body: CompleteBody = optional_json(&req, &body)?.unwrap_or_default();
    let (id, step) = path.into_inner();
    let asked = serde_json::to_value(&body).map_err(internal)?;
    let command = Command::Complete {
        step,
        note: body.note,
        minutes_spent: body.minutes_spent,
    };
    execute(state, caller, key, req, id, if_match, asked, command).await
}

#[derive(Debug, Default, Deserialize, Serialize)]
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
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let body: ConfirmBody = optional_json(&req, &body)?.unwrap_or_default();
    let (id, step) = path.into_inner();
    let asked = serde_json::to_value(&body).map_err(internal)?;
    let command = Command::Confirm {
        step,
        note: body.note,
        minutes_spent: body.minutes_spent,
    };
    execute(state, caller, key, req, id, if_match, asked, command).await
}

#[derive(Debug, Deserialize, Serialize)]
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
