//! Probes (SPEC §12): the read model of the `probe-` streams
//! (`proj_probes`) and the workers' claim on due checks (`probe_runs`).
//!
//! `probe_runs` is worker state, not a source of truth: the transitions are
//! the stream's events. [`claim_due`] locks due rows `FOR UPDATE SKIP
//! LOCKED` and moves each one's `next_due_at` a whole interval on from when
//! it was due (its first is at a random point of its first interval, so
//! probes stay spread and keep their cadence), in one statement that
//! commits before any check runs: another instance skips the locked rows and
//! then finds them not due, so one probe runs once per interval however many
//! instances run the worker. A worker that fell more than an interval
//! behind puts the probe at a random point of its next interval instead of
//! running every missed one at once.
//!
//! A pass's results are kept in one statement ([`record_results`]), without
//! waiting for the WAL flush: a crash may lose the last streak (the next
//! checks count again), never a transition, which is an event appended as
//! usual. A thousand probes every ten seconds are a hundred checks a second,
//! and a transaction flushed per check was most of their cost (P8).

use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use futures_util::future::BoxFuture;
use opsledger_domain::probe::{self, CheckResult, Health, Probe, ProbeEvent, Streak};
use opsledger_domain::RecordedEvent;
use uuid::Uuid;

use crate::projection::{self, Projection};
use crate::{Pool, StoreError};

fn corrupt(e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(format!("probe state: {e}"))
}

#[derive(Debug, Default)]
pub struct ProbeProjection;

impl Projection for ProbeProjection {
    fn name(&self) -> &'static str {
        "probes"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["proj_probes"]
    }

    fn streams(&self) -> &'static [&'static str] {
        &["probe-"]
    }

    fn apply<'a>(
        &'a self,
        tx: &'a Transaction<'a>,
        event: &'a RecordedEvent,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let Some(e) = ProbeEvent::from_stored(&event.event_type, &event.payload) else {
                return Ok(());
            };
            let (id, current) = projection::kept_state::<Probe>(
                tx,
                event,
                "probe-",
                "SELECT state FROM proj_probes WHERE tenant_id = $1 AND probe_id = $2",
            )
            .await?;
            let by = crate::read::kept_metadata(event, "actor");
            let Some(p) = probe::evolve(current, &e, event.recorded_at, &by) else {
                return Ok(());
            };
            let kind = match p.spec.check {
                probe::Check::Http { .. } => "http",
                probe::Check::Tcp { .. } => "tcp",
            };
            let state = serde_json::to_value(&p).map_err(corrupt)?;
            projection::execute(
                tx,
                "INSERT INTO proj_probes (tenant_id, probe_id, service_id, name, kind, health, \
                   removed, version, state) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (tenant_id, probe_id) DO UPDATE SET service_id = EXCLUDED.service_id, \
                   name = EXCLUDED.name, kind = EXCLUDED.kind, health = EXCLUDED.health, \
                   removed = EXCLUDED.removed, version = EXCLUDED.version, state = EXCLUDED.state",
                &[
                    &event.tenant_id,
                    &id,
                    &p.spec.service_id,
                    &p.spec.name,
                    &kind,
                    &p.health.as_str(),
                    &p.removed,
                    &event.stream_version,
                    &state,
                ],
            )
            .await?;
            match e {
                ProbeEvent::ProbeDefined { .. } => {
                    let interval_s = f64::from(p.spec.interval_s);
                    projection::execute(
                        tx,
                        "INSERT INTO probe_runs (tenant_id, probe_id, next_due_at) \
                         VALUES ($1, $2, now() + $3::float8 * random() * interval '1 second') \
                         ON CONFLICT (tenant_id, probe_id) DO NOTHING",
                        &[&event.tenant_id, &id, &interval_s],
                    )
                    .await?;
                }
                ProbeEvent::ProbeRemoved { .. } => {
                    projection::execute(
                        tx,
                        "DELETE FROM probe_runs WHERE tenant_id = $1 AND probe_id = $2",
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

/// Probes of a tenant with their stream versions, newest first, after the
/// cursor `before`; removed ones only when asked.
pub async fn list_probes(
    pool: &Pool,
    tenant: Uuid,
    service_id: Option<Uuid>,
    include_removed: bool,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<(Probe, i64)>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT state, version FROM proj_probes WHERE tenant_id = $1 \
               AND ($2::uuid IS NULL OR service_id = $2) \
               AND ($3 OR NOT removed) \
               AND ($4::uuid IS NULL OR probe_id < $4) \
             ORDER BY probe_id DESC LIMIT $5",
            &[&tenant, &service_id, &include_removed, &before, &limit],
        )
        .await?;
    rows.iter()
        .map(|r| Ok((serde_json::from_value(r.get(0)).map_err(corrupt)?, r.get(1))))
        .collect()
}

/// What the workers last saw of a probe.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct RunState {
    pub next_due_at: DateTime<Utc>,
    pub consecutive_successes: i32,
    pub consecutive_failures: i32,
    pub last_checked_at: Option<DateTime<Utc>>,
    pub last_result: Option<CheckResult>,
}

pub async fn run_state(
    pool: &Pool,
    tenant: Uuid,
    probe_id: Uuid,
) -> Result<Option<RunState>, StoreError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "SELECT next_due_at, successes, failures, last_checked_at, last_result \
             FROM probe_runs WHERE tenant_id = $1 AND probe_id = $2",
            &[&tenant, &probe_id],
        )
        .await?;
    row.map(|r| {
        let last: Option<serde_json::Value> = r.get(4);
        Ok(RunState {
            next_due_at: r.get(0),
            consecutive_successes: r.get(1),
            consecutive_failures: r.get(2),
            last_checked_at: r.get(3),
            last_result: last
                .map(serde_json::from_value)
                .transpose()
                .map_err(corrupt)?,
        })
    })
    .transpose()
}

/// A probe a worker claimed: its definition as the read model has it, and
/// its health and streak as the workers last left them.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub tenant_id: Uuid,
    pub probe: Probe,
    pub health: Health,
    pub streak: Streak,
}

/// Claims at most `limit` due probes, oldest due first, and moves each past
/// its next interval (see the module's doc) before returning them.
pub async fn claim_due(pool: &Pool, limit: i64) -> Result<Vec<Claimed>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "WITH due AS ( \
               SELECT r.tenant_id, r.probe_id, \
                 make_interval(secs => (p.state->>'interval_s')::float8) AS every \
               FROM probe_runs r JOIN proj_probes p USING (tenant_id, probe_id) \
               WHERE r.next_due_at <= now() AND NOT p.removed \
               ORDER BY r.next_due_at LIMIT $1 FOR UPDATE OF r SKIP LOCKED) \
             UPDATE probe_runs r SET next_due_at = CASE \
                 WHEN r.next_due_at + d.every > now() THEN r.next_due_at + d.every \
                 ELSE now() + d.every * random() END \
             FROM due d JOIN proj_probes p USING (tenant_id, probe_id) \
             WHERE r.tenant_id = d.tenant_id AND r.probe_id = d.probe_id \
             RETURNING r.tenant_id, r.health, r.successes, r.failures, p.state",
            &[&limit],
        )
        .await?;
    let mut claimed = Vec::with_capacity(rows.len());
    for r in &rows {
        let probe: Probe = serde_json::from_value(r.get(4)).map_err(corrupt)?;
        let (successes, failures): (i32, i32) = (r.get(2), r.get(3));
        let health: String = r.get(1);
        claimed.push(Claimed {
            tenant_id: r.get(0),
            probe,
            health: Health::parse(&health).unwrap_or(Health::Up),
            streak: Streak {
                successes: successes.max(0) as u32,
                failures: failures.max(0) as u32,
            },
        });
    }
    Ok(claimed)
}

/// One check's outcome as the worker keeps it: the result, the streak it
/// left and the health the stream records.
#[derive(Debug, Clone)]
pub struct Kept<'a> {
    pub tenant_id: Uuid,
    pub probe_id: Uuid,
    pub health: Health,
    pub streak: Streak,
    pub result: &'a CheckResult,
}

/// Keeps a pass's results, in one statement that does not wait for its WAL
/// flush (see the module's doc).
pub async fn record_results(pool: &Pool, kept: &[Kept<'_>]) -> Result<(), StoreError> {
    if kept.is_empty() {
        return Ok(());
    }
    let mut tenants = Vec::with_capacity(kept.len());
    let mut ids = Vec::with_capacity(kept.len());
    let mut healths = Vec::with_capacity(kept.len());
    let mut successes = Vec::with_capacity(kept.len());
    let mut failures = Vec::with_capacity(kept.len());
    let mut results = Vec::with_capacity(kept.len());
    let mut at = Vec::with_capacity(kept.len());
    for k in kept {
        tenants.push(k.tenant_id);
        ids.push(k.probe_id);
        healths.push(k.health.as_str());
        successes.push(k.streak.successes.min(i32::MAX as u32) as i32);
        failures.push(k.streak.failures.min(i32::MAX as u32) as i32);
        results.push(serde_json::to_string(k.result).map_err(corrupt)?);
        at.push(k.result.at);
    }
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    tx.batch_execute("SET LOCAL synchronous_commit = off")
        .await?;
    tx.execute(
        "UPDATE probe_runs r SET health = u.h, successes = u.s, failures = u.f, \
           last_result = u.res::jsonb, last_checked_at = u.at \
         FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::int4[], $5::int4[], $6::text[], \
           $7::timestamptz[]) AS u(t, p, h, s, f, res, at) \
         WHERE r.tenant_id = u.t AND r.probe_id = u.p",
        &[
            &tenants, &ids, &healths, &successes, &failures, &results, &at,
        ],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The health the probe's stream now records, once a transition is.
pub async fn set_health(
    pool: &Pool,
    tenant: Uuid,
    probe_id: Uuid,
    health: Health,
) -> Result<(), StoreError> {
    let client = pool.get().await?;
    client
        .execute(
            "UPDATE probe_runs SET health = $3 WHERE tenant_id = $1 AND probe_id = $2",
            &[&tenant, &probe_id, &health.as_str()],
        )
        .await?;
    Ok(())
}
