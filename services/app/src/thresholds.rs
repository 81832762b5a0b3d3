//! Threshold rules (SPEC §12): the worker's pass. It claims the due rules
//! (`store::thresholds::claim_due`: one instance evaluates a rule at a
//! time, every evaluation interval), reads each rule's recent samples,
//! assesses every series it matches (`domain::threshold::assess`) and
//! settles each against what the workers last alerted (`threshold_series`):
//! a series that breached is recorded on the rule's stream
//! (`ThresholdBreached`, all of one evaluation in one append, through the
//! one command path) and alerted through ingestion exactly as any
//! monitoring source's: source `opsledger-threshold`, the rule's category
//! (hardware or traffic) and severity, dedup key per rule and series, group
//! key per rule (a rule's series share an incident), the rule's service.
//! So a breach inside a maintenance window in force is
//! `suppressed_by_window`, and a clearing (`ThresholdCleared`: recovered,
//! or stale) resolves the alert the breach raised.
//!
//! While a series stays breached its alert is sent firing again every
//! `ALERT_REFRESH_S` (a repeat), so the expiry worker's staleness bound
//! never closes it. Alerts of a removed rule's firing series are resolved
//! by the next pass (their stream records nothing more: the rule is gone).
//!
//! A failure of ours (the store, a conflict) leaves the workers' state as
//! it was: the next pass finds the same transitions, recording them again
//! records nothing, and their alerts are sent then.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use opsledger_domain::alert::Signal;
use opsledger_domain::threshold::{
    self, Assessment, ClearReason, Command, Point, SeriesTransition, ThresholdRule,
};
use opsledger_domain::Metadata;
use opsledger_store::thresholds::{self as store_thresholds, Claimed};
use opsledger_store::{Pool, StoreError};
use uuid::Uuid;

use crate::ingest::{self, Ingest};
use crate::run::{self, Asked, Prepared, RunError, Target};

/// Due rules one pass claims at most; the next pass takes the rest.
const CLAIM_BATCH_MAX: i64 = 500;
/// Series of one rule assessed at most: a rule matching more is too broad
/// to alert on series by series (the rest wait, and a warning is logged).
pub const SERIES_PER_RULE_MAX: usize = 1_000;
/// Samples one rule's evaluation reads at most (the newest).
const SAMPLES_READ_MAX: i64 = 200_000;
/// How often a series that stays breached sends its alert again: well
/// inside the alert staleness bound (`OPSLEDGER_ALERT_STALE_S`, 12 h).
const ALERT_REFRESH_S: i64 = 3_600;
/// Samples one pass deletes at most; the next pass goes on.
const PRUNE_BATCH_MAX: i64 = 10_000;
/// Firing series of removed rules one pass resolves at most.
const ORPHANS_MAX: i64 = 500;
/// The source every threshold alert carries.
pub const SOURCE: &str = "opsledger-threshold";

fn system_meta() -> Metadata {
    Metadata {
        actor: "system:threshold".into(),
        role: "system".into(),
        request_id: None,
        correlation_id: None,
        causation_id: None,
        source: SOURCE.into(),
    }
}

/// The dedup key of one series' alert: the rule and the digest of the
/// series' labels.
pub fn dedup_key(rule_id: Uuid, series_key: &str) -> String {
    format!("threshold-{rule_id}-{series_key}")
}

/// The group key of a rule's alerts: its series share an incident.
pub fn group_key(rule_id: Uuid) -> String {
    format!("threshold-{rule_id}")
}

/// One series a rule matches, and where it stands now.
#[derive(Debug, Clone)]
pub struct SeriesNow {
    pub labels: BTreeMap<String, String>,
    pub assessment: Assessment,
}

/// The series `rule` matches, by digest, assessed at `now` from their
/// recent samples (at most `SERIES_PER_RULE_MAX`, in digest order).
pub async fn series_now(
    pool: &Pool,
    tenant: Uuid,
    rule: &ThresholdRule,
    now: DateTime<Utc>,
) -> Result<BTreeMap<String, SeriesNow>, StoreError> {
    let spec = &rule.spec;
    let samples = store_thresholds::recent_samples(
        pool,
        tenant,
        &spec.metric,
        &spec.matchers,
        threshold::window_start(spec, now),
        SAMPLES_READ_MAX,
    )
    .await?;
    let mut by_series: BTreeMap<BTreeMap<String, String>, Vec<Point>> = BTreeMap::new();
    for s in samples {
        by_series.entry(s.labels).or_default().push(Point {
            at: s.at,
            value: s.value,
        });
    }
    let mut series = BTreeMap::new();
    for (labels, mut points) in by_series {
        // Oldest first as read; equal times keep their arrival order.
        points.sort_by_key(|p| p.at);
        if let Some(assessment) = threshold::assess(&points, spec, now) {
            series.insert(
                threshold::series_digest(&labels),
                SeriesNow { labels, assessment },
            );
        }
    }
    if series.len() > SERIES_PER_RULE_MAX {
        tracing::warn!(%tenant, rule = %rule.id, series = series.len(),
            "threshold rule matches too many series; only the first are assessed");
        series = series.into_iter().take(SERIES_PER_RULE_MAX).collect();
    }
    Ok(series)
}

/// One pass: claims the due rules and evaluates each (claimed again after
/// `every`), resolves the alerts of removed rules' series, and deletes
/// samples past the retention bound. Returns how many rules it evaluated.
pub async fn evaluate_due(ing: Ingest<'_>, every: Duration) -> Result<usize, RunError> {
    let pool = ing.ledger.pool;
    let claimed = store_thresholds::claim_due(pool, every.as_secs_f64(), CLAIM_BATCH_MAX).await?;
    for c in &claimed {
        if let Err(e) = evaluate(ing, c, Utc::now()).await {
            let (tenant, id) = (c.tenant_id, c.rule.id);
            tracing::warn!(%tenant, rule = %id, error = %e, "threshold rule not evaluated");
        }
    }
    resolve_removed(ing).await?;
    let horizon = Utc::now() - chrono::Duration::seconds(threshold::RETENTION_S);
    store_thresholds::prune_samples(pool, horizon, PRUNE_BATCH_MAX).await?;
    Ok(claimed.len())
}

/// Evaluates one rule at `now`: records its transitions, alerts them, and
/// refreshes the alerts of series that stay breached.
async fn evaluate(ing: Ingest<'_>, c: &Claimed, now: DateTime<Utc>) -> Result<(), RunError> {
    let pool = ing.ledger.pool;
    let (tenant, rule) = (c.tenant_id, &c.rule);
    let series = series_now(pool, tenant, rule, now).await?;
    let firing = store_thresholds::firing_series(pool, tenant, rule.id).await?;
    let mut transitions = Vec::new();
    let mut refresh = Vec::new();
    for row in &firing {
        let now_of = series.get(&row.series_key).map(|s| &s.assessment);
        match threshold::settle(&row.labels, true, now_of) {
            Some(t) => transitions.push(t),
            None if (now - row.alerted_at).num_seconds() >= ALERT_REFRESH_S => {
                refresh.push((row, now_of))
            }
            None => {}
        }
    }
    for (key, s) in &series {
        if firing.iter().any(|f| &f.series_key == key) {
            continue;
        }
        if let Some(t) = threshold::settle(&s.labels, false, Some(&s.assessment)) {
            transitions.push(t);
        }
    }
    if !transitions.is_empty() {
        record(ing, tenant, rule.id, transitions.clone()).await?;
    }
    for t in &transitions {
        let key = threshold::series_digest(t.series());
        match t {
            SeriesTransition::Breach { .. } => {
                // Kept as firing, its alert not yet sent (sent long ago),
                // before it is sent: should sending fail, the next pass
                // sends it (a refresh), or resolves it once the series
                // cleared, rather than leave the stream firing unalerted.
                let unsent = DateTime::UNIX_EPOCH;
                store_thresholds::mark_firing(pool, tenant, rule.id, &key, t.series(), unsent)
                    .await?;
                alert(ing, tenant, rule, t).await?;
                store_thresholds::mark_firing(pool, tenant, rule.id, &key, t.series(), now).await?;
            }
            // Kept as firing until its resolution is sent: should sending
            // fail, the next pass clears it again.
            SeriesTransition::Clear { .. } => {
                alert(ing, tenant, rule, t).await?;
                store_thresholds::mark_cleared(pool, tenant, rule.id, &key).await?;
            }
        }
    }
    for (row, assessment) in refresh {
        let Some(a) = assessment else { continue };
        let again = SeriesTransition::Breach {
            series: row.labels.clone(),
            value: a.last.value,
            sample_at: a.last.at,
            since: a.since.unwrap_or(a.last.at),
        };
        alert(ing, tenant, rule, &again).await?;
        store_thresholds::mark_firing(pool, tenant, rule.id, &row.series_key, &row.labels, now)
            .await?;
    }
    Ok(())
}

/// Records the transitions on the rule's stream, in one append (nothing
/// for those it already says, or when the rule was removed meanwhile).
async fn record(
    ing: Ingest<'_>,
    tenant: Uuid,
    id: Uuid,
    transitions: Vec<SeriesTransition>,
) -> Result<(), RunError> {
    let asked = Asked {
        tenant,
        meta: system_meta(),
        if_match: None,
        key: None,
    };
    let prepare = async |_: Option<&ThresholdRule>| {
        Ok::<_, RunError>(Prepared {
            // A transition checks nothing of the definition.
            context: threshold::Context {
                service_known: true,
            },
            view: run::versioned::<ThresholdRule>,
        })
    };
    run::run::<ThresholdRule, _, _, RunError>(
        ing.ledger,
        asked,
        Target::Existing(id),
        Command::Record { transitions },
        prepare,
    )
    .await?;
    Ok(())
}

fn labels_text(series: &BTreeMap<String, String>) -> String {
    let inner: Vec<String> = series.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", inner.join(", "))
}

/// A series' alert: firing on a breach, resolved on a clearing.
pub fn signal(rule: &ThresholdRule, t: &SeriesTransition) -> Signal {
    let spec = &rule.spec;
    let series = t.series();
    let what = format!("{}{}", spec.metric, labels_text(series));
    let (firing, summary, at) = match t {
        SeriesTransition::Breach {
            value, sample_at, ..
        } => (
            true,
            format!(
                "{}: {what} is {value} ({} {} for {} s)",
                spec.name,
                spec.comparison.symbol(),
                spec.threshold,
                spec.for_s
            ),
            *sample_at,
        ),
        SeriesTransition::Clear { reason, last, .. } => {
            let why = match reason {
                ClearReason::Recovered => "back within bounds",
                ClearReason::Stale => "no recent samples",
            };
            (
                false,
                format!("{}: {what} cleared: {why}", spec.name),
                last.map(|p| p.at).unwrap_or_else(Utc::now),
            )
        }
    };
    let mut labels = series.clone();
    labels.insert("rule_id".to_owned(), rule.id.to_string());
    labels.insert("rule".to_owned(), spec.name.clone());
    labels.insert("metric".to_owned(), spec.metric.clone());
    if let Some(c) = &spec.component {
        labels.insert("component".to_owned(), c.clone());
    }
    Signal {
        source: SOURCE.into(),
        dedup_key: dedup_key(rule.id, &threshold::series_digest(series)),
        group_key: group_key(rule.id),
        service_ref: Some(spec.service_id.to_string()),
        summary: summary.chars().take(500).collect(),
        severity: spec.severity,
        category: spec.category,
        labels,
        firing,
        starts_at: at,
        ends_at: None,
    }
}

async fn alert(
    ing: Ingest<'_>,
    tenant: Uuid,
    rule: &ThresholdRule,
    t: &SeriesTransition,
) -> Result<(), RunError> {
    let got = ingest::ingest(ing, tenant, &system_meta(), signal(rule, t)).await?;
    tracing::info!(%tenant, rule = %rule.id, outcome = %got.outcome, "threshold alert");
    Ok(())
}

/// Resolves the alerts of the firing series of removed rules. Each is
/// taken off the workers' state first, so one instance resolves it; one
/// whose resolution fails is left to the alert expiry.
async fn resolve_removed(ing: Ingest<'_>) -> Result<(), RunError> {
    for o in store_thresholds::take_removed_firing(ing.ledger.pool, ORPHANS_MAX).await? {
        let t = SeriesTransition::Clear {
            series: o.labels,
            reason: ClearReason::Stale,
            last: None,
        };
        let mut s = signal(&o.rule, &t);
        s.summary = format!("{}: rule removed", o.rule.spec.name);
        if let Err(e) = ingest::ingest(ing, o.tenant_id, &system_meta(), s).await {
            tracing::warn!(tenant = %o.tenant_id, rule = %o.rule.id, series = %o.series_key,
                error = %e, "alert of a removed threshold rule not resolved");
        }
    }
    Ok(())
}
