//! Backup schedules (SPEC §12): the read model of the `backup_schedule-`
//! streams (`proj_backup_schedules`), the workers' claim on schedules due a
//! check (`backup_watch`), and what the work log says of a service's
//! backups ([`BackupFacts`], from `proj_worklog`).
//!
//! `backup_watch` is worker state, not a source of truth: the transitions
//! are the stream's events. [`claim_due`] locks due rows `FOR UPDATE SKIP
//! LOCKED` and moves each one's `next_check_at` a lease on, in one statement
//! that commits before anything is decided, and returns each schedule with
//! its facts read in the same statement: another instance skips the locked
//! rows and then finds them not due, so two instances do not check one
//! schedule at once, however long a pass takes. The pass then [`release`]s
//! what it claimed, due again a poll later; a pass that never ends (a crash)
//! leaves its schedules to the next instance once the lease is over. Should
//! two instances check one schedule all the same, its stream records a
//! transition once: it refuses to record the standing it already has.
//!
//! The facts come from the work log's read model, so a backup recorded a
//! moment ago counts from the pass after the projection applied it.

use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use futures_util::future::BoxFuture;
use opsledger_domain::backup_schedule::{
    self, BackupFacts, BackupRef, BackupSchedule, BackupScheduleEvent, Standing,
};
use opsledger_domain::RecordedEvent;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::projection::{self, Projection};
use crate::{Pool, StoreError};

fn corrupt(e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(format!("backup schedule state: {e}"))
}

#[derive(Debug, Default)]
pub struct BackupScheduleProjection;

impl Projection for BackupScheduleProjection {
    fn name(&self) -> &'static str {
        "backup_schedules"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["proj_backup_schedules"]
    }

    fn streams(&self) -> &'static [&'static str] {
        &["backup_schedule-"]
    }

    fn apply<'a>(
        &'a self,
        tx: &'a Transaction<'a>,
        event: &'a RecordedEvent,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let Some(e) = BackupScheduleEvent::from_stored(&event.event_type, &event.payload)
            else {
                return Ok(());
            };
            let (id, current) = projection::kept_state::<BackupSchedule>(
                tx,
                event,
                "backup_schedule-",
                "SELECT state FROM proj_backup_schedules WHERE tenant_id = $1 AND service_id = $2",
            )
            .await?;
            let by = crate::read::kept_metadata(event, "actor");
            let Some(s) = backup_schedule::evolve(current, &e, event.recorded_at, &by) else {
                return Ok(());
            };
            let state = serde_json::to_value(&s).map_err(corrupt)?;
            projection::execute(
                tx,
                "INSERT INTO proj_backup_schedules (tenant_id, service_id, standing, removed, \
                   version, state) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (tenant_id, service_id) DO UPDATE SET standing = EXCLUDED.standing, \
                   removed = EXCLUDED.removed, version = EXCLUDED.version, state = EXCLUDED.state",
                &[
                    &event.tenant_id,
                    &id,
                    &s.standing.as_str(),
                    &s.removed,
                    &event.stream_version,
                    &state,
                ],
            )
            .await?;
            let watch = match e {
                // Checked at once; a rebuild leaves the workers' row alone.
                BackupScheduleEvent::BackupScheduleDefined { .. } => Some(
                    "INSERT INTO backup_watch (tenant_id, service_id, next_check_at) \
                     VALUES ($1, $2, now()) ON CONFLICT (tenant_id, service_id) DO NOTHING",
                ),
                // A new period or delay is assessed at once.
                BackupScheduleEvent::BackupScheduleChanged { .. } => Some(
                    "UPDATE backup_watch SET next_check_at = now() \
                     WHERE tenant_id = $1 AND service_id = $2",
                ),
                BackupScheduleEvent::BackupScheduleRemoved { .. } => {
                    Some("DELETE FROM backup_watch WHERE tenant_id = $1 AND service_id = $2")
                }
                _ => None,
            };
            if let Some(sql) = watch {
                projection::execute(tx, sql, &[&event.tenant_id, &id]).await?;
            }
            Ok(())
        })
    }
}

/// Schedules of a tenant with their stream versions, by service id
/// descending, after the cursor `before`; removed ones only when asked.
pub async fn list_schedules(
    pool: &Pool,
    tenant: Uuid,
    standing: Option<Standing>,
    include_removed: bool,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<(BackupSchedule, i64)>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT state, version FROM proj_backup_schedules WHERE tenant_id = $1 \
               AND ($2::text IS NULL OR standing = $2) \
               AND ($3 OR NOT removed) \
               AND ($4::uuid IS NULL OR service_id < $4) \
             ORDER BY service_id DESC LIMIT $5",
            &[
                &tenant,
                &standing.map(Standing::as_str),
                &include_removed,
                &before,
                &limit,
            ],
        )
        .await?;
    rows.iter()
        .map(|r| Ok((serde_json::from_value(r.get(0)).map_err(corrupt)?, r.get(1))))
        .collect()
}

/// The joins that read a service's [`BackupFacts`] for each row of `m`
/// (columns `tenant_id`, `service_id`): the newest backup, the newest whose
/// latest verification passed, and the oldest after that one not verified.
/// Each is one probe of `proj_worklog_backups`.
const FACTS_JOINS: &str = " \
    LEFT JOIN LATERAL (SELECT b.entry_id, b.performed_at FROM proj_worklog b \
      WHERE b.tenant_id = m.tenant_id AND b.service_id = m.service_id AND b.entry_type = 'backup' \
      ORDER BY b.performed_at DESC, b.entry_id DESC LIMIT 1) lp ON true \
    LEFT JOIN LATERAL (SELECT b.entry_id, b.performed_at FROM proj_worklog b \
      WHERE b.tenant_id = m.tenant_id AND b.service_id = m.service_id AND b.entry_type = 'backup' \
        AND b.backup_status = 'verified' \
      ORDER BY b.performed_at DESC, b.entry_id DESC LIMIT 1) lv ON true \
    LEFT JOIN LATERAL (SELECT b.entry_id, b.performed_at FROM proj_worklog b \
      WHERE b.tenant_id = m.tenant_id AND b.service_id = m.service_id AND b.entry_type = 'backup' \
        AND b.backup_status IS DISTINCT FROM 'verified' \
        AND (lv.performed_at IS NULL OR b.performed_at > lv.performed_at) \
      ORDER BY b.performed_at, b.entry_id LIMIT 1) fu ON true ";

/// The facts' columns, in the order [`facts_from`] reads them.
const FACTS_COLUMNS: &str =
    "lp.entry_id, lp.performed_at, lv.entry_id, lv.performed_at, fu.entry_id, fu.performed_at";

fn backup_at(row: &Row, first: usize) -> Option<BackupRef> {
    let id: Option<Uuid> = row.get(first);
    let at: Option<DateTime<Utc>> = row.get(first + 1);
    Some(BackupRef {
        backup_id: id?,
        performed_at: at?,
    })
}

/// Reads [`FACTS_COLUMNS`] starting at column `first`.
fn facts_from(row: &Row, first: usize) -> BackupFacts {
    BackupFacts {
        last_performed: backup_at(row, first),
        last_verified: backup_at(row, first + 2),
        first_unverified: backup_at(row, first + 4),
    }
}

/// What the work log says of the backups of one service.
pub async fn facts_of(
    pool: &Pool,
    tenant: Uuid,
    service_id: Uuid,
) -> Result<BackupFacts, StoreError> {
    let client = pool.get().await?;
    let sql = format!(
        "SELECT {FACTS_COLUMNS} FROM (SELECT $1::uuid AS tenant_id, $2::uuid AS service_id) m \
         {FACTS_JOINS}"
    );
    let row = client.query_one(&sql, &[&tenant, &service_id]).await?;
    Ok(facts_from(&row, 0))
}

/// A schedule a worker claimed: its definition as the read model has it,
/// the standing the workers last recorded, when they last sent its alert,
/// and the work log's facts.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub tenant_id: Uuid,
    pub schedule: BackupSchedule,
    pub standing: Standing,
    pub alerted_at: Option<DateTime<Utc>>,
    pub facts: BackupFacts,
}

/// Claims at most `limit` schedules due a check, oldest due first, and
/// moves each `lease_s` on before returning them (see the module's doc).
pub async fn claim_due(pool: &Pool, limit: i64, lease_s: f64) -> Result<Vec<Claimed>, StoreError> {
    let client = pool.get().await?;
    let sql = format!(
        "WITH due AS ( \
           SELECT w.tenant_id, w.service_id FROM backup_watch w \
             JOIN proj_backup_schedules s USING (tenant_id, service_id) \
           WHERE w.next_check_at <= now() AND NOT s.removed \
           ORDER BY w.next_check_at LIMIT $1 FOR UPDATE OF w SKIP LOCKED), \
         m AS ( \
           UPDATE backup_watch w SET next_check_at = now() + make_interval(secs => $2) \
           FROM due d WHERE w.tenant_id = d.tenant_id AND w.service_id = d.service_id \
           RETURNING w.tenant_id, w.service_id, w.standing, w.alerted_at) \
         SELECT m.tenant_id, m.standing, m.alerted_at, s.state, {FACTS_COLUMNS} \
         FROM m JOIN proj_backup_schedules s USING (tenant_id, service_id) {FACTS_JOINS}"
    );
    let rows = client.query(&sql, &[&limit, &lease_s]).await?;
    rows.iter()
        .map(|r| {
            let standing: String = r.get(1);
            Ok(Claimed {
                tenant_id: r.get(0),
                standing: Standing::parse(&standing).unwrap_or(Standing::Met),
                alerted_at: r.get(2),
                schedule: serde_json::from_value(r.get(3)).map_err(corrupt)?,
                facts: facts_from(r, 4),
            })
        })
        .collect()
}

/// The standing the schedule's stream now records, and that its alert was
/// just sent.
pub async fn set_alerted(
    pool: &Pool,
    tenant: Uuid,
    service_id: Uuid,
    standing: Standing,
) -> Result<(), StoreError> {
    let client = pool.get().await?;
    client
        .execute(
            "UPDATE backup_watch SET standing = $3, alerted_at = now() \
             WHERE tenant_id = $1 AND service_id = $2",
            &[&tenant, &service_id, &standing.as_str()],
        )
        .await?;
    Ok(())
}

/// Makes the schedules a pass claimed due again `poll_s` from now.
pub async fn release(pool: &Pool, claimed: &[Claimed], poll_s: f64) -> Result<(), StoreError> {
    if claimed.is_empty() {
        return Ok(());
    }
    let tenants: Vec<Uuid> = claimed.iter().map(|c| c.tenant_id).collect();
    let services: Vec<Uuid> = claimed.iter().map(|c| c.schedule.service_id).collect();
    let client = pool.get().await?;
    client
        .execute(
            "UPDATE backup_watch w SET next_check_at = now() + make_interval(secs => $3) \
             FROM unnest($1::uuid[], $2::uuid[]) AS u(t, s) \
             WHERE w.tenant_id = u.t AND w.service_id = u.s",
            &[&tenants, &services, &poll_s],
        )
        .await?;
    Ok(())
}
