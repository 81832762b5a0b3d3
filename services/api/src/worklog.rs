//! The operations work log: routine tasks and backups, and the list of both
//! (SPEC §4 "runbook / work log"). Staff only: clients never see it.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use opsledger_domain::access::{OPERATIONS_WORKERS, WORKLOG_READERS};
use opsledger_domain::worklog::{
    Backup, BackupCommand, RecordTask, RoutineTask, TaskKind, VerifyResult,
};
use opsledger_store::operations::{self as store_ops, WorklogFilter};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::aggregate::{self, Asked};
use crate::auth::Caller;
use crate::common::{existing_service, page_len, Page};
use crate::extract::IfMatch;
use crate::idempotency::IdempotencyKey;
use crate::problem::ApiError;
use crate::AppState;
use actix_web::http::StatusCode;
use opsledger_app::run::{self, Prepared, Target};
use opsledger_domain::access::Actor;
use opsledger_domain::aggregate::Aggregate;

// ------------------------------------------------------------ routine tasks

#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskBody {
    pub service_id: Uuid,
    pub kind: TaskKind,
    pub summary: String,
    #[serde(default)]
    pub minutes_spent: Option<i64>,
    #[serde(default)]
    pub performed_at: Option<DateTime<Utc>>,
}

pub async fn task_record(
    state: web::Data<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    req: HttpRequest,
    body: web::Json<TaskBody>,
) -> Result<HttpResponse, ApiError> {
    let r = Asked::of(&caller, &req, key, &*body)?;
    let body = body.into_inner();
    let id = Uuid::now_v7();
    let service_id = body.service_id;
    let command = RecordTask {
        task_id: id,
        service_id,
        kind: body.kind,
        summary: body.summary,
        minutes_spent: body.minutes_spent,
        performed_at: body.performed_at,
    };
    let target = Target::New {
        id,
        location: format!("/api/v1/worklog/{id}"),
    };
    record::<RoutineTask>(&state, r, IfMatch(None), target, command, Some(service_id)).await
}

/// Runs a work log command: a service it names must exist; the context is
/// the instant it is given.
async fn record<A>(
    state: &AppState,
    r: Asked<'_>,
    if_match: IfMatch,
    target: Target,
    command: A::Command,
    service_id: Option<Uuid>,
) -> Result<HttpResponse, ApiError>
where
    A: Aggregate<Context = DateTime<Utc>> + Send + Sync + 'static,
    A::Event: Send + Sync + 'static,
{
    let prepare = async |actor: &Actor, _: Option<&A>| {
        if let Some(s) = service_id {
            existing_service(state, actor.tenant_id, s).await?;
        }
        Ok(Prepared {
            context: Utc::now(),
            view: run::versioned::<A>,
        })
    };
    aggregate::run_prepared::<A, _, _>(
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

pub async fn task_get(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.require(WORKLOG_READERS)?;
    state.tenants.require(&state.pool, actor.tenant_id).await?;
    let v = aggregate::load::<RoutineTask>(&state, actor.tenant_id, id.into_inner(), None).await?;
    Ok(aggregate::respond(StatusCode::OK, &v))
}

// ------------------------------------------------------------ backups

#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupBody {
    pub service_id: Uuid,
    pub what: String,
    /// Where the copy is kept.
    pub location: String,
    #[serde(default)]
    pub size_bytes: Option<u64>,
    #[serde(default)]
    pub note: Option<String>,
    #[serde(default)]
    pub minutes_spent: Option<i64>,
    #[serde(default)]
    pub performed_at: Option<DateTime<Utc>>,
}

pub async fn backup_record(
    state: web::Data<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    req: HttpRequest,
    body: web::Json<BackupBody>,
) -> Result<HttpResponse, ApiError> {
    let r = Asked::of(&caller, &req, key, &*body)?;
    let body = body.into_inner();
    let id = Uuid::now_v7();
    let service_id = body.service_id;
    let command = BackupCommand::Record {
        backup_id: id,
        service_id,
        what: body.what,
        location: body.location,
        size_bytes: body.size_bytes,
        note: body.note,
        minutes_spent: body.minutes_spent,
        performed_at: body.performed_at,
    };
    let target = Target::New {
        id,
        location: format!("/api/v1/backups/{id}"),
    };
    record::<Backup>(&state, r, IfMatch(None), target, command, Some(service_id)).await
}

pub async fn backup_get(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.require(WORKLOG_READERS)?;
    state.tenants.require(&state.pool, actor.tenant_id).await?;
    let v = aggregate::load::<Backup>(&state, actor.tenant_id, id.into_inner(), None).await?;
    Ok(aggregate::respond(StatusCode::OK, &v))
}

#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyBody {
    pub result: VerifyResult,
    /// How it was verified.
    pub how: String,
    #[serde(default)]
    pub minutes_spent: Option<i64>,
}

pub async fn backup_verify(
    state: web::Data<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    req: HttpRequest,
    id: web::Path<Uuid>,
    if_match: IfMatch,
    body: web::Json<VerifyBody>,
) -> Result<HttpResponse, ApiError> {
    let r = Asked::of(&caller, &req, key, &*body)?;
    let body = body.into_inner();
    let command = BackupCommand::Verify {
        result: body.result,
        how: body.how,
        minutes_spent: body.minutes_spent,
    };
    let target = Target::Existing(id.into_inner());
    record::<Backup>(&state, r, if_match, target, command, None).await
}

// ------------------------------------------------------------ the list

/// `kind` of a work log entry: a task kind, or `backup`.
#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    Restart,
    PatchCheck,
    ReportDelivered,
    Inspection,
    Other,
    Backup,
}

impl EntryKind {
    fn as_str(self) -> &'static str {
        match self {
            EntryKind::Restart => TaskKind::Restart.as_str(),
            EntryKind::PatchCheck => TaskKind::PatchCheck.as_str(),
            EntryKind::ReportDelivered => TaskKind::ReportDelivered.as_str(),
            EntryKind::Inspection => TaskKind::Inspection.as_str(),
            EntryKind::Other => TaskKind::Other.as_str(),
            EntryKind::Backup => "backup",
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct WorklogQuery {
    /// Only items of this service.
    pub service_id: Option<Uuid>,
    /// Only entries of this kind (a task kind, or `backup`). Another value is 400.
    #[param(inline)]
    pub kind: Option<EntryKind>,
    /// Work performed at or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// Work performed before this instant.
    pub until: Option<DateTime<Utc>>,
    /// Cursor: return items whose id is smaller (older) than this one (the `next_cursor` of the previous page). These lists are newest first.
    pub before: Option<Uuid>,
    /// Items per page, 1 to 200 (default 50). Values outside the range are refused with 400.
    pub limit: Option<u32>,
}

pub async fn worklog_list(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<WorklogQuery>,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.require(WORKLOG_READERS)?;
    state.tenants.require(&state.pool, actor.tenant_id).await?;
    let limit = page_len(query.limit)?;
    let filter = WorklogFilter {
        service_id: query.service_id,
        kind: query.kind.map(|k| k.as_str().to_owned()),
        since: query.since,
        until: query.until,
    };
    let items = store_ops::list_worklog(
        &state.pool,
        actor.tenant_id,
        &filter,
        query.before,
        limit + 1,
    )
    .await?;
    Ok(HttpResponse::Ok().json(Page::of(items, limit, |r| r.id)))
}
