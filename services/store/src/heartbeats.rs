//! Heartbeats (SPEC §12): the read model of the `heartbeat-` streams
//! (`proj_heartbeats`) and the worker state of each (`heartbeat_runs`).
//!
//! `heartbeat_runs` is not a source of truth: the transitions are the
//! stream's events. A ping ([`ping`]) locks its row, keeps the ping, moves
//! the expected-by time and the status in one short transaction, and says
//! whether the status changed: only then does the caller append. The miss
//! worker's [`claim_missed`] locks rows past their expected-by time `FOR
//! UPDATE SKIP LOCKED` and marks them late before it commits, so another
//! instance skips them and then finds them no longer up: one miss is
//! recorded once.

use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use futures_util::future::BoxFuture;
use opsledger_domain::heartbeat::{self, Heartbeat, HeartbeatEvent, Ping, Status};
use opsledger_domain::RecordedEvent;
use uuid::Uuid;

use crate::projection::{self, Projection};
use crate::{Pool, StoreError};

fn corrupt(e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(format!("heartbeat state: {e}"))
}

#[derive(Debug, Default)]
pub struct HeartbeatProjection;

impl Projection for HeartbeatProjection {
    fn name(&self) -> &'static str {
        "heartbeats"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["proj_heartbeats"]
    }

    fn streams(&self) -> &'static [&'static str] {
        &["heartbeat-"]
    }

    fn apply<'a>(
        &'a self,
        tx: &'a Transaction<'a>,
        event: &'a RecordedEvent,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let Some(e) = HeartbeatEvent::from_stored(&event.event_type, &event.payload) else {
                return Ok(());
            };
            let (id, current) = projection::kept_state::<Heartbeat>(
                tx,
                event,
                "heartbeat-",
                "SELECT state FROM proj_heartbeats WHERE tenant_id = $1 AND heartbeat_id = $2",
            )
            .await?;
            let by = crate::read::kept_metadata(event, "actor");
            let Some(h) = heartbeat::evolve(current, &e, event.recorded_at, &by) else {
                return Ok(());
            };
            let state = serde_json::to_value(&h).map_err(corrupt)?;
            projection::execute(
                tx,
                "INSERT INTO proj_heartbeats (tenant_id, heartbeat_id, service_id, name, status, \
                   removed, version, state) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 ON CONFLICT (tenant_id, heartbeat_id) DO UPDATE SET \
                   service_id = EXCLUDED.service_id, name = EXCLUDED.name, \
                   status = EXCLUDED.status, removed = EXCLUDED.removed, \
                   version = EXCLUDED.version, state = EXCLUDED.state",
                &[
                    &event.tenant_id,
                    &id,
                    &h.spec.service_id,
                    &h.spec.name,
                    &h.status.as_str(),
                    &h.removed,
                    &event.stream_version,
                    &state,
                ],
            )
            .await?;
            let expected = heartbeat::expected_by(&h.spec, event.recorded_at);
            match &e {
                HeartbeatEvent::HeartbeatCreated { token_sha256, .. } => {
                    projection::execute(
                        tx,
                        "INSERT INTO heartbeat_runs (tenant_id, heartbeat_id, token_sha256, \
                           expected_by) VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (tenant_id, heartbeat_id) DO NOTHING",
                        &[&event.tenant_id, &id, token_sha256, &expected],
                    )
                    .await?;
                }
                HeartbeatEvent::HeartbeatTokenRotated { token_sha256 } => {
                    projection::execute(
                        tx,
                        "UPDATE heartbeat_runs SET token_sha256 = $3 \
                         WHERE tenant_id = $1 AND heartbeat_id = $2",
                        &[&event.tenant_id, &id, token_sha256],
                    )
                    .await?;
                }
                // A new schedule applies from the change.
                HeartbeatEvent::HeartbeatChanged { .. } => {
                    projection::execute(
                        tx,
                        "UPDATE heartbeat_runs SET expected_by = $3 \
                         WHERE tenant_id = $1 AND heartbeat_id = $2",
                        &[&event.tenant_id, &id, &expected],
                    )
                    .await?;
                }
                HeartbeatEvent::HeartbeatRemoved { .. } => {
                    projection::execute(
                        tx,
                        "DELETE FROM heartbeat_runs WHERE tenant_id = $1 AND heartbeat_id = $2",
                        &[&event.tenant_id, &id],
                    )
                    .await?;
                }
                _ => {}
            }
            Ok(())
        })
    }
}

/// Heartbeats of a tenant with their stream versions, newest first, after
/// the cursor `before`; removed ones only when asked.
pub async fn list_heartbeats(
    pool: &Pool,
    tenant: Uuid,
    service_id: Option<Uuid>,
    include_removed: bool,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<(Heartbeat, i64)>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT state, version FROM proj_heartbeats WHERE tenant_id = $1 \
               AND ($2::uuid IS NULL OR service_id = $2) \
               AND ($3 OR NOT removed) \
               AND ($4::uuid IS NULL OR heartbeat_id < $4) \
             ORDER BY heartbeat_id DESC LIMIT $5",
            &[&tenant, &service_id, &include_removed, &before, &limit],
        )
        .await?;
    rows.iter()
        .map(|r| Ok((serde_json::from_value(r.get(0)).map_err(corrupt)?, r.get(1))))
        .collect()
}

/// What the ping path and the worker last saw of a heartbeat.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[schema(as = HeartbeatRunState)]
pub struct RunState {
    /// When the next run is expected by (its scheduled time plus grace);
    /// none for a cron expression with no run ahead.
    pub expected_by: Option<DateTime<Utc>>,
    pub last_ping_at: Option<DateTime<Utc>>,
    pub last_ping: Option<Ping>,
}

pub async fn run_state(
    pool: &Pool,
    tenant: Uuid,
    heartbeat_id: Uuid,
) -> Result<Option<RunState>, StoreError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "SELECT expected_by, last_ping_at, last_ping FROM heartbeat_runs \
             WHERE tenant_id = $1 AND heartbeat_id = $2",
            &[&tenant, &heartbeat_id],
        )
        .await?;
    row.map(|r| {
        let last: Option<serde_json::Value> = r.get(2);
        Ok(RunState {
            expected_by: r.get(0),
            last_ping_at: r.get(1),
            last_ping: last
                .map(serde_json::from_value)
                .transpose()
                .map_err(corrupt)?,
        })
    })
    .transpose()
}

/// A ping taken: whose it was, and the status it moved the heartbeat from
/// and to when it moved it.
#[derive(Debug, Clone)]
pub struct Pinged {
    pub tenant_id: Uuid,
    pub heartbeat: Heartbeat,
    pub from: Status,
    pub to: Option<Status>,
}

/// Keeps a ping on the heartbeat whose token hashes to `token_sha256`
/// (none: no such live heartbeat), moving its status and expected-by time
/// as `domain::heartbeat::on_ping` says.
pub async fn ping(
    pool: &Pool,
    token_sha256: &str,
    ping: &Ping,
) -> Result<Option<Pinged>, StoreError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let row = tx
        .query_opt(
            "SELECT r.tenant_id, r.heartbeat_id, r.status, p.state \
             FROM heartbeat_runs r JOIN proj_heartbeats p USING (tenant_id, heartbeat_id) \
             WHERE r.token_sha256 = $1 AND NOT p.removed FOR UPDATE OF r",
            &[&token_sha256],
        )
        .await?;
    let Some(r) = row else { return Ok(None) };
    let (tenant_id, heartbeat_id): (Uuid, Uuid) = (r.get(0), r.get(1));
    let status: String = r.get(2);
    let from = Status::parse(&status).unwrap_or(Status::Up);
    let hb: Heartbeat = serde_json::from_value(r.get(3)).map_err(corrupt)?;
    let (to, restarts) = heartbeat::on_ping(from, ping.kind);
    let expected = if restarts {
        heartbeat::expected_by(&hb.spec, ping.at)
    } else {
        None
    };
    let ping_json = serde_json::to_value(ping).map_err(corrupt)?;
    tx.execute(
        "UPDATE heartbeat_runs SET status = $3, \
           expected_by = CASE WHEN $4 THEN $5 ELSE expected_by END, \
           last_ping = $6, last_ping_at = $7, \
           alerted_at = CASE WHEN $3 = 'up' THEN NULL \
                             WHEN status <> $3 THEN now() ELSE alerted_at END \
         WHERE tenant_id = $1 AND heartbeat_id = $2",
        &[
            &tenant_id,
            &heartbeat_id,
            &to.unwrap_or(from).as_str(),
            &restarts,
            &expected,
            &ping_json,
            &ping.at,
        ],
    )
    .await?;
    tx.commit().await?;
    Ok(Some(Pinged {
        tenant_id,
        heartbeat: hb,
        from,
        to,
    }))
}

/// A heartbeat whose run was missed, claimed by one worker.
#[derive(Debug, Clone)]
pub struct Missed {
    pub tenant_id: Uuid,
    pub heartbeat: Heartbeat,
    pub expected_by: DateTime<Utc>,
}

/// Claims at most `limit` heartbeats that are up and past their
/// expected-by time, and marks them late before returning them.
pub async fn claim_missed(pool: &Pool, limit: i64) -> Result<Vec<Missed>, StoreError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let rows = tx
        .query(
            "SELECT r.tenant_id, r.expected_by, p.state \
             FROM heartbeat_runs r JOIN proj_heartbeats p USING (tenant_id, heartbeat_id) \
             WHERE r.status = 'up' AND r.expected_by <= now() AND NOT p.removed \
             ORDER BY r.expected_by LIMIT $1 FOR UPDATE OF r SKIP LOCKED",
            &[&limit],
        )
        .await?;
    let mut missed = Vec::with_capacity(rows.len());
    for r in &rows {
        let heartbeat: Heartbeat = serde_json::from_value(r.get(2)).map_err(corrupt)?;
        let tenant_id: Uuid = r.get(0);
        tx.execute(
            "UPDATE heartbeat_runs SET status = 'late', alerted_at = now() \
             WHERE tenant_id = $1 AND heartbeat_id = $2",
            &[&tenant_id, &heartbeat.id],
        )
        .await?;
        missed.push(Missed {
            tenant_id,
            heartbeat,
            expected_by: r.get(1),
        });
    }
    tx.commit().await?;
    Ok(missed)
}

/// Puts a heartbeat's status back from `to` to `from` when the transition
/// to `to` could not be recorded on its stream, so that the next ping or
/// pass records it instead of the row and the stream disagreeing. Nothing
/// when the row moved on meanwhile.
pub async fn put_back(
    pool: &Pool,
    tenant: Uuid,
    heartbeat_id: Uuid,
    to: Status,
    from: Status,
) -> Result<(), StoreError> {
    let client = pool.get().await?;
    client
        .execute(
            "UPDATE heartbeat_runs SET status = $4 \
             WHERE tenant_id = $1 AND heartbeat_id = $2 AND status = $3",
            &[&tenant, &heartbeat_id, &to.as_str(), &from.as_str()],
        )
        .await?;
    Ok(())
}

/// A late or failed heartbeat whose alert is due to be sent again.
#[derive(Debug, Clone)]
pub struct Unresolved {
    pub tenant_id: Uuid,
    pub heartbeat: Heartbeat,
    pub status: Status,
    pub expected_by: Option<DateTime<Utc>>,
    pub last_ping: Option<Ping>,
}

/// Claims at most `limit` late or failed heartbeats whose alert was last
/// sent `every` or longer ago, marking it sent now (each once across
/// instances).
pub async fn claim_alert_refresh(
    pool: &Pool,
    every: std::time::Duration,
    limit: i64,
) -> Result<Vec<Unresolved>, StoreError> {
    let every_s = every.as_secs_f64();
    let client = pool.get().await?;
    let rows = client
        .query(
            "WITH due AS ( \
               SELECT tenant_id, heartbeat_id FROM heartbeat_runs \
               WHERE status <> 'up' AND alerted_at <= now() - make_interval(secs => $1) \
               ORDER BY alerted_at LIMIT $2 FOR UPDATE SKIP LOCKED) \
             UPDATE heartbeat_runs r SET alerted_at = now() \
             FROM due JOIN proj_heartbeats p USING (tenant_id, heartbeat_id) \
             WHERE r.tenant_id = due.tenant_id AND r.heartbeat_id = due.heartbeat_id \
               AND NOT p.removed \
             RETURNING r.tenant_id, r.status, r.expected_by, r.last_ping, p.state",
            &[&every_s, &limit],
        )
        .await?;
    rows.iter()
        .map(|r| {
            let status: String = r.get(1);
            Ok(Unresolved {
                tenant_id: r.get(0),
                status: Status::parse(&status).unwrap_or(Status::Late),
                expected_by: r.get(2),
                last_ping: r
                    .get::<_, Option<serde_json::Value>>(3)
                    .map(serde_json::from_value)
                    .transpose()
                    .map_err(corrupt)?,
                heartbeat: serde_json::from_value(r.get(4)).map_err(corrupt)?,
            })
        })
        .collect()
}
