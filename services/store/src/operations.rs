//! Read models of operations work: the work log (routine tasks and backups),
//! runbooks at their latest version, their executions, and client inquiries
//! with the queue each waits in. A batch folds each aggregate in memory from
//! its stored state (one read a table) and writes each table once.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use futures_util::future::BoxFuture;
use opsledger_domain::inquiry::{self, Inquiry, InquiryEvent};
use opsledger_domain::runbook::{self, Execution, ExecutionEvent, RunbookEvent};
use opsledger_domain::worklog::{self, Backup, WorklogEvent};
use opsledger_domain::RecordedEvent;
use serde::Serialize;
use uuid::Uuid;

use crate::projection::{self, Projection};
use crate::work::Folded;
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
        self.apply_batch(tx, std::slice::from_ref(event))
    }

    /// Sorts the batch's events by aggregate, folds each aggregate in memory
    /// from its stored state (read once a table for the whole batch) and
    /// writes each table once.
    fn apply_batch<'a>(
        &'a self,
        tx: &'a Transaction<'a>,
        events: &'a [RecordedEvent],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut tasks = Vec::new();
            let mut backups: Vec<Step<'_, WorklogEvent>> = Vec::new();
            let mut runbooks: Vec<((Uuid, Uuid), Publication)> = Vec::new();
            let mut inquiries: Vec<Step<'_, InquiryEvent>> = Vec::new();
            let mut executions: Vec<Step<'_, ExecutionEvent>> = Vec::new();
            for event in events {
                let by = meta(event, "actor");
                if let Some(e) = WorklogEvent::from_stored(&event.event_type, &event.payload) {
                    match &e {
                        WorklogEvent::RoutineTaskRecorded { .. } => {
                            if let Some(task) = worklog::task_of(&e, &by, event.recorded_at) {
                                tasks.push((event, task));
                            }
                        }
                        WorklogEvent::BackupPerformed { backup_id, .. }
                        | WorklogEvent::BackupVerified { backup_id, .. } => {
                            let starts = matches!(e, WorklogEvent::BackupPerformed { .. });
                            backups.push(Step {
                                key: (event.tenant_id, *backup_id),
                                starts,
                                event,
                                e,
                                by,
                            });
                        }
                    }
                    continue;
                }
                if let Some(RunbookEvent::RunbookPublished {
                    runbook_id,
                    version,
                    title,
                    service_id,
                    steps,
                }) = RunbookEvent::from_stored(&event.event_type, &event.payload)
                {
                    let key = (event.tenant_id, runbook_id);
                    let row = Publication {
                        title,
                        service_id,
                        version: version as i64,
                        step_count: steps.len() as i32,
                        published_at: event.recorded_at,
                        published_by: by,
                    };
                    // Every column is the latest publication's.
                    match runbooks.iter_mut().find(|(k, _)| *k == key) {
                        Some((_, last)) => *last = row,
                        None => runbooks.push((key, row)),
                    }
                    continue;
                }
                if let Some(e) = InquiryEvent::from_stored(&event.event_type, &event.payload) {
                    inquiries.push(Step {
                        key: (event.tenant_id, id_of(event, "inquiry-")?),
                        starts: matches!(e, InquiryEvent::InquiryOpened { .. }),
                        event,
                        e,
                        by,
                    });
                    continue;
                }
                if let Some(e) = ExecutionEvent::from_stored(&event.event_type, &event.payload) {
                    executions.push(Step {
                        key: (event.tenant_id, id_of(event, "execution-")?),
                        starts: matches!(e, ExecutionEvent::RunbookExecutionStarted { .. }),
                        event,
                        e,
                        by,
                    });
                }
            }
            write_tasks(tx, &tasks).await?;
            let backups = fold(tx, "proj_worklog", "entry_id", backups, |b, s| {
                worklog::evolve_backup(b, &s.e, &s.by, s.event.recorded_at)
            })
            .await?;
            write_backups(tx, &backups).await?;
            write_runbooks(tx, &runbooks).await?;
            let inquiries = fold(tx, "proj_inquiries", "inquiry_id", inquiries, |i, s| {
                inquiry::evolve(i, &s.e, &s.by, &meta(s.event, "role"), s.event.recorded_at)
            })
            .await?;
            write_inquiries(tx, &inquiries).await?;
            let executions = fold(tx, "proj_executions", "execution_id", executions, |x, s| {
                runbook::evolve_execution(x, &s.e, &s.by, s.event.recorded_at)
            })
            .await?;
            write_executions(tx, &executions).await
        })
    }
}

/// An event of an aggregate kept folded in a table.
struct Step<'e, E> {
    key: (Uuid, Uuid),
    /// Whether it starts the aggregate: it folds from nothing.
    starts: bool,
    event: &'e RecordedEvent,
    e: E,
    by: String,
}

/// Folds the steps per aggregate, in order, from the states `table` holds
/// (read in one query for the aggregates a step continues). A step the
/// fold refuses writes nothing. Returns each aggregate written, in the
/// order first written.
async fn fold<'e, T, E>(
    tx: &Transaction<'_>,
    table: &str,
    id_column: &str,
    steps: Vec<Step<'e, E>>,
    evolve: impl Fn(Option<T>, &Step<'e, E>) -> Option<T>,
) -> Result<Vec<((Uuid, Uuid), Folded<T>)>, StoreError>
where
    T: Clone + serde::de::DeserializeOwned,
{
    let mut states: HashMap<(Uuid, Uuid), Option<Folded<T>>> = HashMap::new();
    let mut continued = Vec::new();
    for s in &steps {
        if let std::collections::hash_map::Entry::Vacant(entry) = states.entry(s.key) {
            entry.insert(None);
            if !s.starts {
                continued.push(s.key);
            }
        }
    }
    if !continued.is_empty() {
        let (t, id): (Vec<Uuid>, Vec<Uuid>) = continued.iter().copied().unzip();
        let sql = format!(
            "SELECT p.tenant_id, p.{id_column}, p.state FROM {table} p \
             JOIN unnest($1::uuid[], $2::uuid[]) AS k(t, i) \
               ON p.tenant_id = k.t AND p.{id_column} = k.i"
        );
        for r in projection::query(tx, &sql, &[&t, &id]).await? {
            let state: T = serde_json::from_value(r.get(2)).map_err(corrupt)?;
            states.insert((r.get(0), r.get(1)), Some(Folded::stored(state)));
        }
    }
    let mut order = Vec::new();
    for s in &steps {
        let row = states.get_mut(&s.key).expect("inserted above");
        let before = match (s.starts, row.as_ref()) {
            (true, _) | (false, None) => None,
            (false, Some(f)) => Some(f.state.clone()),
        };
        let Some(next) = evolve(before, s) else {
            continue;
        };
        match row {
            Some(f) => f.write(next, s.event.stream_version),
            None => *row = Some(Folded::new(next, s.event.stream_version)),
        }
        if !order.contains(&s.key) {
            order.push(s.key);
        }
    }
    Ok(order
        .into_iter()
        .map(|k| (k, states.remove(&k).flatten().expect("written above")))
        .collect())
}

async fn write_tasks(
    tx: &Transaction<'_>,
    tasks: &[(&RecordedEvent, worklog::RoutineTask)],
) -> Result<(), StoreError> {
    if tasks.is_empty() {
        return Ok(());
    }
    let (mut t, mut id, mut kind, mut service, mut summary) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut minutes, mut performed_at, mut performed_by, mut recorded_at) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut version, mut state) = (Vec::new(), Vec::new());
    for (event, task) in tasks {
        t.push(event.tenant_id);
        id.push(task.id);
        kind.push(task.kind.as_str());
        service.push(task.service_id);
        summary.push(task.summary.as_str());
        minutes.push(task.minutes_spent.map(|m| m as i32));
        performed_at.push(task.performed_at);
        performed_by.push(task.performed_by.as_str());
        recorded_at.push(task.recorded_at);
        version.push(event.stream_version);
        state.push(serde_json::to_value(task).map_err(corrupt)?);
    }
    projection::execute(
        tx,
        "INSERT INTO proj_worklog (tenant_id, entry_id, entry_type, kind, service_id, summary, \
           minutes_spent, performed_at, performed_by, recorded_at, backup_status, version, state) \
         SELECT t, i, 'routine_task', k, s, su, m, pa, pb, ra, NULL, v, st \
         FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::uuid[], $5::text[], $6::int4[], \
           $7::timestamptz[], $8::text[], $9::timestamptz[], $10::int8[], $11::jsonb[]) \
           WITH ORDINALITY AS u(t, i, k, s, su, m, pa, pb, ra, v, st, n) ORDER BY n",
        &[
            &t,
            &id,
            &kind,
            &service,
            &summary,
            &minutes,
            &performed_at,
            &performed_by,
            &recorded_at,
            &version,
            &state,
        ],
    )
    .await?;
    Ok(())
}

async fn write_backups(
    tx: &Transaction<'_>,
    rows: &[((Uuid, Uuid), Folded<Backup>)],
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let (mut t, mut id, mut service, mut what, mut minutes) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut performed_at, mut performed_by, mut recorded_at) =
        (Vec::new(), Vec::new(), Vec::new());
    let (mut status, mut version, mut state) = (Vec::new(), Vec::new(), Vec::new());
    for ((tenant, _), f) in rows {
        let (b, first) = (&f.state, f.first.as_ref().unwrap_or(&f.state));
        t.push(*tenant);
        id.push(b.id);
        status.push(b.status.as_str());
        version.push(f.version);
        state.push(serde_json::to_value(b).map_err(corrupt)?);
        // Set when the row is made; an update leaves them.
        service.push(first.service_id);
        what.push(first.what.as_str());
        minutes.push(first.minutes_spent.map(|m| m as i32));
        performed_at.push(first.performed_at);
        performed_by.push(first.performed_by.as_str());
        recorded_at.push(first.recorded_at);
    }
    projection::execute(tx,
        "INSERT INTO proj_worklog (tenant_id, entry_id, entry_type, kind, service_id, summary, \
           minutes_spent, performed_at, performed_by, recorded_at, backup_status, version, state) \
         SELECT t, i, 'backup', 'backup', s, su, m, pa, pb, ra, bs, v, st \
         FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::int4[], \
           $6::timestamptz[], $7::text[], $8::timestamptz[], $9::text[], $10::int8[], $11::jsonb[]) \
           AS u(t, i, s, su, m, pa, pb, ra, bs, v, st) \
         ON CONFLICT (tenant_id, entry_id) DO UPDATE SET backup_status = EXCLUDED.backup_status, \
           version = EXCLUDED.version, state = EXCLUDED.state",
        &[
            &t,
            &id,
            &service,
            &what,
            &minutes,
            &performed_at,
            &performed_by,
            &recorded_at,
            &status,
            &version,
            &state,
        ],
    )
    .await?;
    Ok(())
}

/// A runbook's row: its latest publication.
struct Publication {
    title: String,
    service_id: Option<Uuid>,
    version: i64,
    step_count: i32,
    published_at: DateTime<Utc>,
    published_by: String,
}

async fn write_runbooks(
    tx: &Transaction<'_>,
    rows: &[((Uuid, Uuid), Publication)],
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let t: Vec<Uuid> = rows.iter().map(|(k, _)| k.0).collect();
    let id: Vec<Uuid> = rows.iter().map(|(k, _)| k.1).collect();
    let title: Vec<&str> = rows.iter().map(|(_, r)| r.title.as_str()).collect();
    let service: Vec<Option<Uuid>> = rows.iter().map(|(_, r)| r.service_id).collect();
    let version: Vec<i64> = rows.iter().map(|(_, r)| r.version).collect();
    let steps: Vec<i32> = rows.iter().map(|(_, r)| r.step_count).collect();
    let at: Vec<DateTime<Utc>> = rows.iter().map(|(_, r)| r.published_at).collect();
    let by: Vec<&str> = rows.iter().map(|(_, r)| r.published_by.as_str()).collect();
    projection::execute(
        tx,
        "INSERT INTO proj_runbooks (tenant_id, runbook_id, title, service_id, version, \
           step_count, published_at, published_by) \
         SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::uuid[], $5::int8[], \
           $6::int4[], $7::timestamptz[], $8::text[]) \
         ON CONFLICT (tenant_id, runbook_id) DO UPDATE SET title = EXCLUDED.title, \
           service_id = EXCLUDED.service_id, version = EXCLUDED.version, \
           step_count = EXCLUDED.step_count, published_at = EXCLUDED.published_at, \
           published_by = EXCLUDED.published_by",
        &[&t, &id, &title, &service, &version, &steps, &at, &by],
    )
    .await?;
    Ok(())
}

fn id_of(event: &RecordedEvent, prefix: &str) -> Result<Uuid, StoreError> {
    event
        .stream_id
        .strip_prefix(prefix)
        .and_then(|id| Uuid::parse_str(id).ok())
        .ok_or_else(|| StoreError::Corrupt(format!("unexpected event on {}", event.stream_id)))
}

async fn write_executions(
    tx: &Transaction<'_>,
    rows: &[((Uuid, Uuid), Folded<Execution>)],
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let (mut t, mut id, mut runbook, mut runbook_version, mut title) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut service, mut incident, mut status, mut started) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut version, mut state) = (Vec::new(), Vec::new());
    for ((tenant, _), f) in rows {
        let (x, first) = (&f.state, f.first.as_ref().unwrap_or(&f.state));
        t.push(*tenant);
        id.push(x.id);
        status.push(x.status.as_str());
        version.push(f.version);
        state.push(serde_json::to_value(x).map_err(corrupt)?);
        // Set when the row is made; an update leaves them.
        runbook.push(first.runbook_id);
        runbook_version.push(first.runbook_version as i64);
        title.push(first.title.as_str());
        service.push(first.service_id);
        incident.push(first.incident_id);
        started.push(first.started_at);
    }
    projection::execute(tx,
        "INSERT INTO proj_executions (tenant_id, execution_id, runbook_id, runbook_version, title, \
           service_id, incident_id, status, started_at, version, state) \
         SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::int8[], $5::text[], \
           $6::uuid[], $7::uuid[], $8::text[], $9::timestamptz[], $10::int8[], $11::jsonb[]) \
         ON CONFLICT (tenant_id, execution_id) DO UPDATE SET status = EXCLUDED.status, \
           version = EXCLUDED.version, state = EXCLUDED.state",
        &[
            &t,
            &id,
            &runbook,
            &runbook_version,
            &title,
            &service,
            &incident,
            &status,
            &started,
            &version,
            &state,
        ],
    )
    .await?;
    Ok(())
}

async fn write_inquiries(
    tx: &Transaction<'_>,
    rows: &[((Uuid, Uuid), Folded<Inquiry>)],
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let (mut t, mut id, mut service, mut client, mut kind, mut subject) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    let (mut status, mut team, mut opened, mut version, mut state) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for ((tenant, _), f) in rows {
        let (i, first) = (&f.state, f.first.as_ref().unwrap_or(&f.state));
        t.push(*tenant);
        id.push(i.id);
        status.push(i.status.as_str());
        team.push(i.team().map(|t| t.as_str()));
        version.push(f.version);
        state.push(serde_json::to_value(i).map_err(corrupt)?);
        // Set when the row is made; an update leaves them.
        service.push(first.service_id);
        client.push(first.client_id);
        kind.push(first.kind.as_str());
        subject.push(first.subject.as_str());
        opened.push(first.opened_at);
    }
    projection::execute(
        tx,
        "INSERT INTO proj_inquiries (tenant_id, inquiry_id, service_id, client_id, kind, subject, \
           status, team, opened_at, version, state) \
         SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::text[], \
           $6::text[], $7::text[], $8::text[], $9::timestamptz[], $10::int8[], $11::jsonb[]) \
         ON CONFLICT (tenant_id, inquiry_id) DO UPDATE SET status = EXCLUDED.status, \
           team = EXCLUDED.team, version = EXCLUDED.version, state = EXCLUDED.state",
        &[
            &t, &id, &service, &client, &kind, &subject, &status, &team, &opened, &version, &state,
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

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
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

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct InquiryQueueItem {
    /// Always `inquiry`.
    #[schema(schema_with = crate::read::kind_inquiry)]
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

/// The inquiries opened by `at`, newest first: where a queue as it stood
/// then looks for those still waiting (folding each at `at` says which).
pub async fn inquiries_opened_by(
    pool: &Pool,
    tenant: Uuid,
    at: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Uuid>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT inquiry_id FROM proj_inquiries WHERE tenant_id = $1 AND opened_at <= $2 \
             ORDER BY opened_at DESC, inquiry_id LIMIT $3",
            &[&tenant, &at, &limit],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}
