//! Read models of operations work: the work log (routine tasks and backups),
//! runbooks at their latest version, their executions, and client inquiries
//! with the queue each waits in.

use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use futures_util::future::BoxFuture;
use opsledger_domain::inquiry::{self, Inquiry, InquiryEvent};
use opsledger_domain::runbook::{self, Execution, ExecutionEvent, RunbookEvent};
use opsledger_domain::worklog::{self, Backup, WorklogEvent};
use opsledger_domain::RecordedEvent;
use serde::Serialize;
use uuid::Uuid;

use crate::projection::Projection;
use crate::{Pool, StoreError};

fn corrupt(e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(format!("operations state: {e}"))
}

fn meta(event: &RecordedEvent, key: &str) -> String {
    crate::read::kept_metadata(event, key)
}

#[derive(Debug, Default)]
pub struct OperationsProjection;

impl Projection for OperationsProjection {
    fn name(&self) -> &'static str {
        "operations"
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "proj_worklog",
            "proj_runbooks",
            "proj_executions",
            "proj_inquiries",
        ]
    }

    fn streams(&self) -> &'static [&'static str] {
        &["task-", "backup-", "runbook-", "execution-", "inquiry-"]
    }

    fn apply<'a>(
        &'a self,
        tx: &'a Transaction<'a>,
        event: &'a RecordedEvent,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let by = &meta(event, "actor");
            if let Some(e) = WorklogEvent::from_stored(&event.event_type, &event.payload) {
                return apply_worklog(tx, event, &e, by).await;
            }
            if let Some(RunbookEvent::RunbookPublished {
                runbook_id,
                version,
                title,
                service_id,
                steps,
            }) = RunbookEvent::from_stored(&event.event_type, &event.payload)
            {
                tx.execute(
                    "INSERT INTO proj_runbooks (tenant_id, runbook_id, title, service_id, version, \
                       step_count, published_at, published_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                     ON CONFLICT (tenant_id, runbook_id) DO UPDATE SET title = EXCLUDED.title, \
                       service_id = EXCLUDED.service_id, version = EXCLUDED.version, \
                       step_count = EXCLUDED.step_count, published_at = EXCLUDED.published_at, \
                       published_by = EXCLUDED.published_by",
                    &[
                        &event.tenant_id,
                        &runbook_id,
                        &title,
                        &service_id,
                        &(version as i64),
                        &(steps.len() as i32),
                        &event.recorded_at,
                        &by,
                    ],
                )
                .await?;
                return Ok(());
            }
            if let Some(e) = InquiryEvent::from_stored(&event.event_type, &event.payload) {
                return apply_inquiry(tx, event, &e, by).await;
            }
            if let Some(e) = ExecutionEvent::from_stored(&event.event_type, &event.payload) {
                return apply_execution(tx, event, &e, by).await;
            }
            Ok(())
        })
    }
}

async fn apply_worklog(
    tx: &Transaction<'_>,
    event: &RecordedEvent,
    e: &WorklogEvent,
    by: &str,
) -> Result<(), StoreError> {
    match e {
        WorklogEvent::RoutineTaskRecorded { .. } => {
            let Some(task) = worklog::task_of(e, by, event.recorded_at) else {
                return Ok(());
            };
            tx.execute(
                "INSERT INTO proj_worklog (tenant_id, entry_id, entry_type, kind, service_id, summary, \
                   minutes_spent, performed_at, performed_by, recorded_at, backup_status, version, state) \
                 VALUES ($1, $2, 'routine_task', $3, $4, $5, $6, $7, $8, $9, NULL, $10, $11)",
                &[
                    &event.tenant_id,
                    &task.id,
                    &task.kind.as_str(),
                    &task.service_id,
                    &task.summary,
                    &task.minutes_spent.map(|m| m as i32),
                    &task.performed_at,
                    &task.performed_by,
                    &task.recorded_at,
                    &event.stream_version,
                    &serde_json::to_value(&task).map_err(corrupt)?,
                ],
            )
            .await?;
        }
        WorklogEvent::BackupPerformed { .. } | WorklogEvent::BackupVerified { .. } => {
            let id = match e {
                WorklogEvent::BackupPerformed { backup_id, .. }
                | WorklogEvent::BackupVerified { backup_id, .. } => *backup_id,
                WorklogEvent::RoutineTaskRecorded { task_id, .. } => *task_id,
            };
            let stored: Option<Backup> = match e {
                WorklogEvent::BackupPerformed { .. } => None,
                _ => match tx
                    .query_opt(
                        "SELECT state FROM proj_worklog WHERE tenant_id = $1 AND entry_id = $2",
                        &[&event.tenant_id, &id],
                    )
                    .await?
                {
                    Some(r) => Some(serde_json::from_value(r.get(0)).map_err(corrupt)?),
                    None => None,
                },
            };
            let Some(b) = worklog::evolve_backup(stored, e, by, event.recorded_at) else {
                return Ok(());
            };
            tx.execute(
                "INSERT INTO proj_worklog (tenant_id, entry_id, entry_type, kind, service_id, summary, \
                   minutes_spent, performed_at, performed_by, recorded_at, backup_status, version, state) \
                 VALUES ($1, $2, 'backup', 'backup', $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                 ON CONFLICT (tenant_id, entry_id) DO UPDATE SET backup_status = EXCLUDED.backup_status, \
                   version = EXCLUDED.version, state = EXCLUDED.state",
                &[
                    &event.tenant_id,
                    &b.id,
                    &b.service_id,
                    &b.what,
                    &b.minutes_spent.map(|m| m as i32),
                    &b.performed_at,
                    &b.performed_by,
                    &b.recorded_at,
                    &b.status.as_str(),
                    &event.stream_version,
                    &serde_json::to_value(&b).map_err(corrupt)?,
                ],
            )
            .await?;
        }
    }
    Ok(())
}

fn id_of(event: &RecordedEvent, prefix: &str) -> Result<Uuid, StoreError> {
    event
        .stream_id
        .strip_prefix(prefix)
        .and_then(|id| Uuid::parse_str(id).ok())
        .ok_or_else(|| StoreError::Corrupt(format!("unexpected event on {}", event.stream_id)))
}

async fn apply_execution(
    tx: &Transaction<'_>,
    event: &RecordedEvent,
    e: &ExecutionEvent,
    by: &str,
) -> Result<(), StoreError> {
    let id = id_of(event, "execution-")?;
    let stored: Option<Execution> = match e {
        ExecutionEvent::RunbookExecutionStarted { .. } => None,
        _ => match tx
            .query_opt(
                "SELECT state FROM proj_executions WHERE tenant_id = $1 AND execution_id = $2",
                &[&event.tenant_id, &id],
            )
            .await?
        {
            Some(r) => Some(serde_json::from_value(r.get(0)).map_err(corrupt)?),
            None => None,
        },
    };
    let Some(x) = runbook::evolve_execution(stored, e, by, event.recorded_at) else {
        return Ok(());
    };
    tx.execute(
        "INSERT INTO proj_executions (tenant_id, execution_id, runbook_id, runbook_version, title, \
           service_id, incident_id, status, started_at, version, state) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (tenant_id, execution_id) DO UPDATE SET status = EXCLUDED.status, \
           version = EXCLUDED.version, state = EXCLUDED.state",
        &[
            &event.tenant_id,
            &x.id,
            &x.runbook_id,
            &(x.runbook_version as i64),
            &x.title,
            &x.service_id,
            &x.incident_id,
            &x.status.as_str(),
            &x.started_at,
            &event.stream_version,
            &serde_json::to_value(&x).map_err(corrupt)?,
        ],
    )
    .await?;
    Ok(())
}

async fn apply_inquiry(
    tx: &Transaction<'_>,
    event: &RecordedEvent,
    e: &InquiryEvent,
    by: &str,
) -> Result<(), StoreError> {
    let id = id_of(event, "inquiry-")?;
    let stored: Option<Inquiry> = match e {
        InquiryEvent::InquiryOpened { .. } => None,
        _ => match tx
            .query_opt(
                "SELECT state FROM proj_inquiries WHERE tenant_id = $1 AND inquiry_id = $2",
                &[&event.tenant_id, &id],
            )
            .await?
        {
            Some(r) => Some(serde_json::from_value(r.get(0)).map_err(corrupt)?),
            None => None,
        },
    };
    let Some(i) = inquiry::evolve(stored, e, by, &meta(event, "role"), event.recorded_at) else {
        return Ok(());
    };
    tx.execute(
        "INSERT INTO proj_inquiries (tenant_id, inquiry_id, service_id, client_id, kind, subject, \
           status, team, opened_at, version, state) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (tenant_id, inquiry_id) DO UPDATE SET status = EXCLUDED.status, \
           team = EXCLUDED.team, version = EXCLUDED.version, state = EXCLUDED.state",
        &[
            &event.tenant_id,
            &i.id,
            &i.service_id,
            &i.client_id,
            &i.kind.as_str(),
            &i.subject,
            &i.status.as_str(),
            &i.team().map(|t| t.as_str()),
            &i.opened_at,
            &event.stream_version,
            &serde_json::to_value(&i).map_err(corrupt)?,
        ],
    )
    .await?;
    Ok(())
}

// ------------------------------------------------------------ the work log

#[derive(Debug, Clone, Default)]
pub struct WorklogFilter {
    pub service_id: Option<Uuid>,
    /// A task kind, or `backup`.
    pub kind: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WorklogRow {
    pub id: Uuid,
    /// `routine_task` or `backup`.
    pub entry: String,
    pub kind: String,
    pub service_id: Uuid,
    pub summary: String,
    pub minutes_spent: Option<i32>,
    pub performed_at: DateTime<Utc>,
    pub performed_by: String,
    pub recorded_at: DateTime<Utc>,
    /// Backups only: `unverified`, `verified` or `verification_failed`.
    pub backup_status: Option<String>,
}

/// Work log entries, newest first (ids are UUIDv7), after the cursor `before`.
pub async fn list_worklog(
    pool: &Pool,
    tenant: Uuid,
    filter: &WorklogFilter,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<WorklogRow>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT entry_id, entry_type, kind, service_id, summary, minutes_spent, performed_at, \
               performed_by, recorded_at, backup_status FROM proj_worklog \
             WHERE tenant_id = $1 \
               AND ($2::uuid IS NULL OR service_id = $2) \
               AND ($3::text IS NULL OR kind = $3) \
               AND ($4::timestamptz IS NULL OR performed_at >= $4) \
               AND ($5::timestamptz IS NULL OR performed_at < $5) \
               AND ($6::uuid IS NULL OR entry_id < $6) \
             ORDER BY entry_id DESC LIMIT $7",
            &[
                &tenant,
                &filter.service_id,
                &filter.kind,
                &filter.since,
                &filter.until,
                &before,
                &limit,
            ],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| WorklogRow {
            id: r.get(0),
            entry: r.get(1),
            kind: r.get(2),
            service_id: r.get(3),
            summary: r.get(4),
            minutes_spent: r.get(5),
            performed_at: r.get(6),
            performed_by: r.get(7),
            recorded_at: r.get(8),
            backup_status: r.get(9),
        })
        .collect())
}

// ------------------------------------------------------------ runbooks

#[derive(Debug, Clone, Serialize)]
pub struct RunbookRow {
    pub id: Uuid,
    pub title: String,
    pub service_id: Option<Uuid>,
    /// The latest version.
    pub version: i64,
    pub step_count: i32,
    pub published_at: DateTime<Utc>,
    pub published_by: String,
}

/// Runbooks at their latest version, newest first, after the cursor `before`.
pub async fn list_runbooks(
    pool: &Pool,
    tenant: Uuid,
    service_id: Option<Uuid>,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<RunbookRow>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT runbook_id, title, service_id, version, step_count, published_at, published_by \
             FROM proj_runbooks WHERE tenant_id = $1 \
               AND ($2::uuid IS NULL OR service_id = $2) \
               AND ($3::uuid IS NULL OR runbook_id < $3) \
             ORDER BY runbook_id DESC LIMIT $4",
            &[&tenant, &service_id, &before, &limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| RunbookRow {
            id: r.get(0),
            title: r.get(1),
            service_id: r.get(2),
            version: r.get(3),
            step_count: r.get(4),
            published_at: r.get(5),
            published_by: r.get(6),
        })
        .collect())
}

/// A read model row of `state, version`: the folded record and its stream version.
fn state_and_version<T: serde::de::DeserializeOwned>(
    r: &tokio_postgres::Row,
) -> Result<(T, i64), StoreError> {
    Ok((serde_json::from_value(r.get(0)).map_err(corrupt)?, r.get(1)))
}

#[derive(Debug, Clone, Default)]
pub struct ExecutionFilter {
    pub runbook_id: Option<Uuid>,
    pub incident_id: Option<Uuid>,
    pub status: Option<String>,
}

/// Executions as folded, with their stream version, newest first.
pub async fn list_executions(
    pool: &Pool,
    tenant: Uuid,
    filter: &ExecutionFilter,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<(Execution, i64)>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT state, version FROM proj_executions WHERE tenant_id = $1 \
               AND ($2::uuid IS NULL OR runbook_id = $2) \
               AND ($3::uuid IS NULL OR incident_id = $3) \
               AND ($4::text IS NULL OR status = $4) \
               AND ($5::uuid IS NULL OR execution_id < $5) \
             ORDER BY execution_id DESC LIMIT $6",
            &[
                &tenant,
                &filter.runbook_id,
                &filter.incident_id,
                &filter.status,
                &before,
                &limit,
            ],
        )
        .await?;
    rows.iter().map(state_and_version).collect()
}

// ------------------------------------------------------------ inquiries

#[derive(Debug, Clone, Default)]
pub struct InquiryFilter {
    pub client_id: Option<Uuid>,
    pub service_id: Option<Uuid>,
    pub status: Option<String>,
    pub kind: Option<String>,
}

/// Inquiries as folded, with their stream version, newest first.
pub async fn list_inquiries(
    pool: &Pool,
    tenant: Uuid,
    filter: &InquiryFilter,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<(Inquiry, i64)>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT state, version FROM proj_inquiries WHERE tenant_id = $1 \
               AND ($2::uuid IS NULL OR client_id = $2) \
               AND ($3::uuid IS NULL OR service_id = $3) \
               AND ($4::text IS NULL OR status = $4) \
               AND ($5::text IS NULL OR kind = $5) \
               AND ($6::uuid IS NULL OR inquiry_id < $6) \
             ORDER BY inquiry_id DESC LIMIT $7",
            &[
                &tenant,
                &filter.client_id,
                &filter.service_id,
                &filter.status,
                &filter.kind,
                &before,
                &limit,
            ],
        )
        .await?;
    rows.iter().map(state_and_version).collect()
}

/// An inquiry in a team's queue.
#[derive(Debug, Clone, Serialize)]
pub struct InquiryQueueItem {
    /// Always `inquiry`.
    pub kind: &'static str,
    pub id: Uuid,
    pub inquiry_id: Uuid,
    pub inquiry_kind: String,
    /// The inquiry's subject.
    pub title: String,
    pub service_id: Uuid,
    pub client_id: Uuid,
    pub status: String,
    pub opened_at: DateTime<Utc>,
    pub age_seconds: i64,
    /// Inquiries are not assigned: always `None`, kept for the queue's shape.
    pub assignee: Option<String>,
    pub answer_count: i32,
}

/// The inquiries waiting in a team's queue, oldest first.
pub async fn inquiry_queue(
    pool: &Pool,
    tenant: Uuid,
    team: &str,
    limit: i64,
) -> Result<Vec<InquiryQueueItem>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT inquiry_id, kind, subject, service_id, client_id, status, opened_at, \
               floor(extract(epoch FROM now() - opened_at))::int8, \
               jsonb_array_length(state->'answers') \
             FROM proj_inquiries WHERE tenant_id = $1 AND team = $2 \
             ORDER BY opened_at, inquiry_id LIMIT $3",
            &[&tenant, &team, &limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| InquiryQueueItem {
            kind: "inquiry",
            id: r.get(0),
            inquiry_id: r.get(0),
            inquiry_kind: r.get(1),
            title: r.get(2),
            service_id: r.get(3),
            client_id: r.get(4),
            status: r.get(5),
            opened_at: r.get(6),
            age_seconds: r.get(7),
            assignee: None,
            answer_count: r.get(8),
        })
        .collect())
}
