//! Threshold rules on pushed samples (SPEC §12): the samples table, the
//! read model of the `threshold-rule-` streams (`proj_threshold_rules`) and
//! the workers' state (`threshold_runs`: when each rule is next evaluated;
//! `threshold_series`: which series the workers alerted as firing).
//!
//! [`claim_due`] locks due rules `FOR UPDATE SKIP LOCKED` and moves each
//! one's `next_due_at` an evaluation interval on, in one statement that
//! commits before any evaluation: another instance skips the locked rows
//! and then finds them not due, so a rule is evaluated by one instance at a
//! time (as `probes::claim_due`). Samples are inserted in one statement, so
//! a batch is kept whole or not at all, and deleted past the retention
//! bound by [`prune_samples`], a bounded batch at a time.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use futures_util::future::BoxFuture;
use opsledger_domain::threshold::{self, RuleEvent, ThresholdRule};
use opsledger_domain::RecordedEvent;
use uuid::Uuid;

use crate::projection::{self, Projection};
use crate::{Pool, StoreError};

fn corrupt(e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(format!("threshold rule state: {e}"))
}

#[derive(Debug, Default)]
pub struct ThresholdRuleProjection;

impl Projection for ThresholdRuleProjection {
    fn name(&self) -> &'static str {
        "threshold_rules"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["proj_threshold_rules"]
    }

    fn streams(&self) -> &'static [&'static str] {
        &["threshold-rule-"]
    }

    fn apply<'a>(
        &'a self,
        tx: &'a Transaction<'a>,
        event: &'a RecordedEvent,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let Some(e) = RuleEvent::from_stored(&event.event_type, &event.payload) else {
                return Ok(());
            };
            let (id, current) = projection::kept_state::<ThresholdRule>(
                tx,
                event,
                "threshold-rule-",
                "SELECT state FROM proj_threshold_rules WHERE tenant_id = $1 AND rule_id = $2",
            )
            .await?;
            let by = crate::read::kept_metadata(event, "actor");
            let Some(r) = threshold::evolve(current, &e, event.recorded_at, &by) else {
                return Ok(());
            };
            let status = if r.removed {
                "removed"
            } else {
                r.state.as_str()
            };
            let state = serde_json::to_value(&r).map_err(corrupt)?;
            projection::execute(
                tx,
                "INSERT INTO proj_threshold_rules (tenant_id, rule_id, service_id, name, metric, \
                   status, removed, version, state) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (tenant_id, rule_id) DO UPDATE SET service_id = EXCLUDED.service_id, \
                   name = EXCLUDED.name, metric = EXCLUDED.metric, status = EXCLUDED.status, \
                   removed = EXCLUDED.removed, version = EXCLUDED.version, state = EXCLUDED.state",
                &[
                    &event.tenant_id,
                    &id,
                    &r.spec.service_id,
                    &r.spec.name,
                    &r.spec.metric,
                    &status,
                    &r.removed,
                    &event.stream_version,
                    &state,
                ],
            )
            .await?;
            match e {
                RuleEvent::ThresholdRuleDefined { .. } => {
                    projection::execute(
                        tx,
                        "INSERT INTO threshold_runs (tenant_id, rule_id, next_due_at) \
                         VALUES ($1, $2, now()) ON CONFLICT (tenant_id, rule_id) DO NOTHING",
                        &[&event.tenant_id, &id],
                    )
                    .await?;
                }
                // The rule's firing series stay in `threshold_series`: the
                // worker resolves their alerts (`removed_firing`).
                RuleEvent::ThresholdRuleRemoved { .. } => {
                    projection::execute(
                        tx,
                        "DELETE FROM threshold_runs WHERE tenant_id = $1 AND rule_id = $2",
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

/// Rules of a tenant with their stream versions, newest first, after the
/// cursor `before`; removed ones only when asked.
pub async fn list_rules(
    pool: &Pool,
    tenant: Uuid,
    service_id: Option<Uuid>,
    include_removed: bool,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<(ThresholdRule, i64)>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT state, version FROM proj_threshold_rules WHERE tenant_id = $1 \
               AND ($2::uuid IS NULL OR service_id = $2) \
               AND ($3 OR NOT removed) \
               AND ($4::uuid IS NULL OR rule_id < $4) \
             ORDER BY rule_id DESC LIMIT $5",
            &[&tenant, &service_id, &include_removed, &before, &limit],
        )
        .await?;
    rows.iter()
        .map(|r| Ok((serde_json::from_value(r.get(0)).map_err(corrupt)?, r.get(1))))
        .collect()
}

/// One sample as pushed, checked.
#[derive(Debug, Clone)]
pub struct NewSample<'a> {
    pub metric: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    pub value: f64,
    pub at: DateTime<Utc>,
}

/// Keeps a batch of samples of a tenant, whole, in one statement.
pub async fn insert_samples(
    pool: &Pool,
    tenant: Uuid,
    samples: &[NewSample<'_>],
) -> Result<u64, StoreError> {
    if samples.is_empty() {
        return Ok(0);
    }
    let mut metrics = Vec::with_capacity(samples.len());
    let mut labels = Vec::with_capacity(samples.len());
    let mut values = Vec::with_capacity(samples.len());
    let mut at = Vec::with_capacity(samples.len());
    for s in samples {
        metrics.push(s.metric);
        labels.push(serde_json::to_string(s.labels).map_err(corrupt)?);
        values.push(s.value);
        at.push(s.at);
    }
    let client = pool.get().await?;
    let n = client
        .execute(
            "INSERT INTO samples (tenant_id, metric, labels, value, at) \
             SELECT $1, m, l::jsonb, v, a \
             FROM unnest($2::text[], $3::text[], $4::float8[], $5::timestamptz[]) AS u(m, l, v, a)",
            &[&tenant, &metrics, &labels, &values, &at],
        )
        .await?;
    Ok(n)
}

/// One sample read back: its series' labels, its value, its time.
#[derive(Debug, Clone)]
pub struct StoredSample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
    pub at: DateTime<Utc>,
}

/// The samples of `metric` whose labels include `matchers`, taken at or
/// after `since`: at most `limit`, the newest, returned oldest first (a
/// cut-off loses the oldest, which can only make a run look shorter).
pub async fn recent_samples(
    pool: &Pool,
    tenant: Uuid,
    metric: &str,
    matchers: &BTreeMap<String, String>,
    since: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<StoredSample>, StoreError> {
    let matchers = serde_json::to_value(matchers).map_err(corrupt)?;
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT labels, value, at FROM samples \
             WHERE tenant_id = $1 AND metric = $2 AND at >= $3 AND labels @> $4 \
             ORDER BY at DESC LIMIT $5",
            &[&tenant, &metric, &since, &matchers, &limit],
        )
        .await?;
    let mut samples = rows
        .iter()
        .map(|r| {
            Ok(StoredSample {
                labels: serde_json::from_value(r.get(0)).map_err(corrupt)?,
                value: r.get(1),
                at: r.get(2),
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    samples.reverse();
    Ok(samples)
}

/// Deletes at most `limit` samples taken before `before`; how many it did.
/// Two instances pruning at once may pick the same rows: the second waits
/// for the first and deletes what is left (rows are not locked first, which
/// would need the UPDATE privilege the app's role does not have here).
pub async fn prune_samples(
    pool: &Pool,
    before: DateTime<Utc>,
    limit: i64,
) -> Result<u64, StoreError> {
    let client = pool.get().await?;
    let n = client
        .execute(
            "DELETE FROM samples WHERE ctid = ANY (ARRAY( \
               SELECT ctid FROM samples WHERE at < $1 LIMIT $2))",
            &[&before, &limit],
        )
        .await?;
    Ok(n)
}

/// A rule a worker claimed, as the read model has it.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub tenant_id: Uuid,
    pub rule: ThresholdRule,
}

/// Claims at most `limit` due rules, oldest due first, and moves each
/// `every_s` on before returning them (see the module's doc).
pub async fn claim_due(pool: &Pool, every_s: f64, limit: i64) -> Result<Vec<Claimed>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "WITH due AS ( \
               SELECT r.tenant_id, r.rule_id \
               FROM threshold_runs r JOIN proj_threshold_rules p USING (tenant_id, rule_id) \
               WHERE r.next_due_at <= now() AND NOT p.removed \
               ORDER BY r.next_due_at LIMIT $1 FOR UPDATE OF r SKIP LOCKED) \
             UPDATE threshold_runs r \
               SET next_due_at = now() + $2::float8 * interval '1 second', \
                   last_evaluated_at = now() \
             FROM due d JOIN proj_threshold_rules p USING (tenant_id, rule_id) \
             WHERE r.tenant_id = d.tenant_id AND r.rule_id = d.rule_id \
             RETURNING r.tenant_id, p.state",
            &[&limit, &every_s],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(Claimed {
                tenant_id: r.get(0),
                rule: serde_json::from_value(r.get(1)).map_err(corrupt)?,
            })
        })
        .collect()
}

/// A series the workers alerted as firing.
#[derive(Debug, Clone)]
pub struct FiringRow {
    pub series_key: String,
    pub labels: BTreeMap<String, String>,
    pub alerted_at: DateTime<Utc>,
}

pub async fn firing_series(
    pool: &Pool,
    tenant: Uuid,
    rule_id: Uuid,
) -> Result<Vec<FiringRow>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT series_key, labels, alerted_at FROM threshold_series \
             WHERE tenant_id = $1 AND rule_id = $2",
            &[&tenant, &rule_id],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(FiringRow {
                series_key: r.get(0),
                labels: serde_json::from_value(r.get(1)).map_err(corrupt)?,
                alerted_at: r.get(2),
            })
        })
        .collect()
}

/// The series is firing and its alert was sent at `alerted_at`.
pub async fn mark_firing(
    pool: &Pool,
    tenant: Uuid,
    rule_id: Uuid,
    series_key: &str,
    labels: &BTreeMap<String, String>,
    alerted_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let labels = serde_json::to_value(labels).map_err(corrupt)?;
    let client = pool.get().await?;
    client
        .execute(
            "INSERT INTO threshold_series (tenant_id, rule_id, series_key, labels, alerted_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id, rule_id, series_key) \
             DO UPDATE SET alerted_at = EXCLUDED.alerted_at",
            &[&tenant, &rule_id, &series_key, &labels, &alerted_at],
        )
        .await?;
    Ok(())
}

/// The series is no longer firing (its alert was resolved).
pub async fn mark_cleared(
    pool: &Pool,
    tenant: Uuid,
    rule_id: Uuid,
    series_key: &str,
) -> Result<(), StoreError> {
    let client = pool.get().await?;
    client
        .execute(
            "DELETE FROM threshold_series \
             WHERE tenant_id = $1 AND rule_id = $2 AND series_key = $3",
            &[&tenant, &rule_id, &series_key],
        )
        .await?;
    Ok(())
}

/// A firing series of a removed rule, taken off the workers' state.
#[derive(Debug, Clone)]
pub struct Orphan {
    pub tenant_id: Uuid,
    pub rule: ThresholdRule,
    pub series_key: String,
    pub labels: BTreeMap<String, String>,
}

/// Takes (deletes and returns) at most `limit` firing series of removed
/// rules, for their alerts to be resolved; rows another instance is taking
/// are skipped.
pub async fn take_removed_firing(pool: &Pool, limit: i64) -> Result<Vec<Orphan>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "WITH gone AS ( \
               SELECT s.tenant_id, s.rule_id, s.series_key \
               FROM threshold_series s JOIN proj_threshold_rules p USING (tenant_id, rule_id) \
               WHERE p.removed LIMIT $1 FOR UPDATE OF s SKIP LOCKED), \
             taken AS ( \
               DELETE FROM threshold_series s USING gone g \
               WHERE s.tenant_id = g.tenant_id AND s.rule_id = g.rule_id \
                 AND s.series_key = g.series_key \
               RETURNING s.tenant_id, s.rule_id, s.series_key, s.labels) \
             SELECT t.tenant_id, p.state, t.series_key, t.labels \
             FROM taken t JOIN proj_threshold_rules p USING (tenant_id, rule_id)",
            &[&limit],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(Orphan {
                tenant_id: r.get(0),
                rule: serde_json::from_value(r.get(1)).map_err(corrupt)?,
                series_key: r.get(2),
                labels: serde_json::from_value(r.get(3)).map_err(corrupt)?,
            })
        })
        .collect()
}
