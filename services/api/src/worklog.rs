//! The operations work log: routine tasks and backups, and the list of both
//! (SPEC §4 "runbook / work log"). Staff only: clients never see it.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use opsledger_domain::access::{OPERATIONS_WORKERS, WORKLOG_READERS};
use opsledger_domain::worklog::{self, Backup, RoutineTask, TaskKind, VerifyResult, WorklogEvent};
use opsledger_domain::RecordedEvent;
use opsledger_store::operations::{self as store_ops, WorklogFilter};
use opsledger_store::ExpectedVersion;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::Caller;
use crate::common::{
    actor_of, append_and_answer, begin_command, check_if_match, existing_service, page_len,
    stream_events, Appending, Page,
};
use crate::extract::IfMatch;
use crate::idempotency::IdempotencyKey;
use crate::problem::ApiError;
use crate::AppState;

fn internal(e: serde_json::Error) -> ApiError {
    ApiError::Internal(Box::new(e))
}

// ------------------------------------------------------------ routine tasks

#[derive(Debug, Deserialize, Serialize)]
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

#[derive(Debug, Serialize)]
struct TaskView {
    #[serde(flatten)]
    task: RoutineTask,
    version: i64,
}

pub async fn task_record(
    state: web::Data<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    req: HttpRequest,
    body: web::Json<TaskBody>,
) -> Result<HttpResponse, ApiError> {
    let (actor, fingerprint, replayed) =
        begin_command(&state, &caller, OPERATIONS_WORKERS, &key, &req, &*body).await?;
    if let Some(r) = replayed {
        return Ok(r);
    }
    let body = body.into_inner();
    let now = Utc::now();
    let event = WorklogEvent::RoutineTaskRecorded {
        task_id: Uuid::now_v7(),
        service_id: body.service_id,
        kind: body.kind,
        summary: worklog::text("summary", &body.summary)?,
        minutes_spent: worklog::minutes_spent(body.minutes_spent)?,
        performed_at: worklog::performed_at(body.performed_at, now)?,
    };
    existing_service(&state, actor.tenant_id, body.service_id).await?;
    let task = worklog::task_of(&event, &actor.subject, now)
        .ok_or_else(|| ApiError::Internal("a task event folds to a task".into()))?;
    let id = task.id;
    let view = serde_json::to_value(TaskView { task, version: 1 }).map_err(internal)?;
    append_and_answer(
        &state,
        actor,
        &req,
        &key,
        &fingerprint,
        Appending {
            stream: worklog::task_stream(id),
            expected: ExpectedVersion::NoStream,
            events: vec![(event.type_name(), event.payload())],
            version: 1,
            location: Some(format!("/api/v1/worklog/{id}")),
            view,
            at: now,
        },
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
    let id = id.into_inner();
    let events = stream_events(&state, actor.tenant_id, &worklog::task_stream(id), None).await?;
    let task = events
        .iter()
        .find_map(|e| {
            let parsed = WorklogEvent::from_stored(&e.event_type, &e.payload)?;
            worklog::task_of(&parsed, actor_of(e).0, e.recorded_at)
        })
        .ok_or_else(|| ApiError::NotFound(format!("no routine task {id}")))?;
    Ok(HttpResponse::Ok()
        .insert_header((actix_web::http::header::ETAG, "\"1\""))
        .json(TaskView { task, version: 1 }))
}

// ------------------------------------------------------------ backups

#[derive(Debug, Deserialize, Serialize)]
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

#[derive(Debug, Serialize)]
struct BackupView {
    #[serde(flatten)]
    backup: Backup,
    version: i64,
}

fn fold_backup(events: &[RecordedEvent]) -> Option<Backup> {
    events.iter().fold(None, |b, e| {
        match WorklogEvent::from_stored(&e.event_type, &e.payload) {
            Some(parsed) => worklog::evolve_backup(b, &parsed, actor_of(e).0, e.recorded_at),
            None => b,
        }
    })
}

pub async fn backup_record(
    state: web::Data<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    req: HttpRequest,
    body: web::Json<BackupBody>,
) -> Result<HttpResponse, ApiError> {
    let (actor, fingerprint, replayed) =
        begin_command(&state, &caller, OPERATIONS_WORKERS, &key, &req, &*body).await?;
    if let Some(r) = replayed {
        return Ok(r);
    }
    let body = body.into_inner();
    let now = Utc::now();
    let event = WorklogEvent::BackupPerformed {
        backup_id: Uuid::now_v7(),
        service_id: body.service_id,
        what: worklog::text("what", &body.what)?,
        location: worklog::text("location", &body.location)?,
        size_bytes: body.size_bytes,
        note: worklog::optional_text("note", body.note.as_deref())?,
        minutes_spent: worklog::minutes_spent(body.minutes_spent)?,
        performed_at: worklog::performed_at(body.performed_at, now)?,
    };
    existing_service(&state, actor.tenant_id, body.service_id).await?;
    let backup = worklog::evolve_backup(None, &event, &actor.subject, now)
        .ok_or_else(|| ApiError::Internal("a backup event folds to a backup".into()))?;
    let id = backup.id;
    let view = serde_json::to_value(BackupView { backup, version: 1 }).map_err(internal)?;
    append_and_answer(
        &state,
        actor,
        &req,
        &key,
        &fingerprint,
        Appending {
            stream: worklog::backup_stream(id),
            expected: ExpectedVersion::NoStream,
            events: vec![(event.type_name(), event.payload())],
            version: 1,
            location: Some(format!("/api/v1/backups/{id}")),
            view,
            at: now,
        },
    )
    .await
}

async fn load_backup(state: &AppState, tenant: Uuid, id: Uuid) -> Result<(Backup, i64), ApiError> {
    let events = stream_events(state, tenant, &worklog::backup_stream(id), None).await?;
    let backup =
        fold_backup(&events).ok_or_else(|| ApiError::NotFound(format!("no backup {id}")))?;
    Ok((backup, events.last().map_or(0, |e| e.stream_version)))
}

pub async fn backup_get(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.require(WORKLOG_READERS)?;
    state.tenants.require(&state.pool, actor.tenant_id).await?;
    let (backup, version) = load_backup(&state, actor.tenant_id, id.into_inner()).await?;
    Ok(HttpResponse::Ok()
        .insert_header((actix_web::http::header::ETAG, format!("\"{version}\"")))
        .json(BackupView { backup, version }))
}

#[derive(Debug, Deserialize, Serialize)]
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
    let asked = serde_json::json!({ "if_match": if_match.0, "body": &*body });
    let (actor, fingerprint, replayed) =
        begin_command(&state, &caller, OPERATIONS_WORKERS, &key, &req, &asked).await?;
    if let Some(r) = replayed {
        return Ok(r);
    }
    let id = id.into_inner();
    let (backup, version) = load_backup(&state, actor.tenant_id, id).await?;
    check_if_match(if_match.0, version, "backup", backup.status.as_str())?;
    let event = worklog::verify(&backup, body.result, &body.how, body.minutes_spent)?;
    let now = Utc::now();
    let after = worklog::evolve_backup(Some(backup), &event, &actor.subject, now)
        .ok_or_else(|| ApiError::Internal("the backup vanished".into()))?;
    let view = serde_json::to_value(BackupView {
        backup: after,
        version: version + 1,
    })
    .map_err(internal)?;
    append_and_answer(
        &state,
        actor,
        &req,
        &key,
        &fingerprint,
        Appending {
            stream: worklog::backup_stream(id),
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

// ------------------------------------------------------------ the list

/// `kind` of a work log entry: a task kind, or `backup`.
#[derive(Debug, Clone, Copy, Deserialize)]
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorklogQuery {
    pub service_id: Option<Uuid>,
    pub kind: Option<EntryKind>,
    /// Work performed at or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// Work performed before this instant.
    pub until: Option<DateTime<Utc>>,
    pub before: Option<Uuid>,
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
