//! Probes (SPEC §12): the worker's pass. It claims the due probes
//! (`store::probes::claim_due`: each runs once per interval across
//! instances), runs their checks concurrently (at most `concurrency` at
//! once, each within its own timeout — the checks themselves are the
//! server's, which owns outgoing I/O), folds each result into the probe's
//! streak (`domain::probe::observe`), and on a transition records it on the
//! probe's stream through the one command path and raises or resolves the
//! probe's alert through ingestion, exactly as any monitoring source's:
//! source `opsledger-probe`, category liveness, dedup key `probe-<id>`,
//! group key per probe, the probe's service. So a probe of a service inside
//! an announced window in force is `suppressed_by_window` and opens no
//! incident, and its recovery resolves the alert it raised.
//!
//! While a probe stays down its alert is sent firing again every
//! `ALERT_REFRESH_S` (a repeat, deduplicated), so the expiry worker's
//! staleness bound never closes it as expired.
//!
//! A failure of ours (the store, a conflict) leaves the streak as it was:
//! the next pass counts the next result, and a transition recorded but not
//! yet alerted is alerted then (recording it again records nothing).

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use futures_util::StreamExt;
use opsledger_domain::alert::{Category, Severity, Signal};
use opsledger_domain::probe::{self, Check, CheckResult, Command, Health, Probe};
use opsledger_domain::Metadata;
use opsledger_store::probes::{self as store_probes, Claimed};
use uuid::Uuid;

use crate::ingest::{self, Ingest};
use crate::run::{self, Asked, Prepared, RunError, Target};

/// Due probes one pass claims at most; the next pass takes the rest.
const CLAIM_BATCH_MAX: i64 = 500;
/// How often a probe that stays down sends its alert again: well inside
/// the alert staleness bound (`OPSLEDGER_ALERT_STALE_S`, 12 h by default).
const ALERT_REFRESH_S: u32 = 3600;
/// The source every probe's alerts carry.
pub const SOURCE: &str = "opsledger-probe";

fn system_meta() -> Metadata {
    Metadata {
        actor: "system:probe".into(),
        role: "system".into(),
        request_id: None,
        correlation_id: None,
        causation_id: None,
        source: SOURCE.into(),
    }
}

/// The dedup key of a probe's alert.
pub fn dedup_key(probe_id: Uuid) -> String {
    format!("probe-{probe_id}")
}

/// One pass: claims the due probes, checks them, keeps every result in one
/// statement, then settles the transitions. Returns how many probes were
/// checked.
pub async fn run_due<C, F>(ing: Ingest<'_>, concurrency: usize, check: C) -> Result<usize, RunError>
where
    C: Fn(Check, Duration) -> F,
    F: Future<Output = CheckResult>,
{
    let claimed = store_probes::claim_due(ing.ledger.pool, CLAIM_BATCH_MAX).await?;
    let checked = claimed.len();
    let check = &check;
    let results: Vec<(Claimed, CheckResult)> = futures_util::stream::iter(claimed)
        .map(|c| async move {
            let timeout = Duration::from_millis(u64::from(c.probe.spec.timeout_ms));
            let result = check(c.probe.spec.check.clone(), timeout).await;
            (c, result)
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let folded: Vec<_> = results
        .iter()
        .map(|(c, result)| {
            let (streak, to) = probe::observe(c.health, c.streak, result.ok, &c.probe.spec);
            (c, result, streak, to)
        })
        .collect();
    // The streaks first, with the health as it was: should recording a
    // transition fail, the next result reaches it again.
    let kept: Vec<store_probes::Kept<'_>> = folded
        .iter()
        .map(|(c, result, streak, _)| store_probes::Kept {
            tenant_id: c.tenant_id,
            probe_id: c.probe.id,
            health: c.health,
            streak: *streak,
            result,
        })
        .collect();
    store_probes::record_results(ing.ledger.pool, &kept).await?;
    for (c, result, streak, to) in folded {
        if let Err(e) = settle(ing, c, result, streak, to).await {
            let (tenant, id) = (c.tenant_id, c.probe.id);
            tracing::warn!(%tenant, probe = %id, error = %e, "probe result not settled");
        }
    }
    Ok(checked)
}

/// Records a transition and its alert, or refreshes the alert of a probe
/// that stays down; nothing for the usual result that changes nothing.
async fn settle(
    ing: Ingest<'_>,
    c: &Claimed,
    result: &CheckResult,
    streak: probe::Streak,
    to: Option<Health>,
) -> Result<(), RunError> {
    let spec = &c.probe.spec;
    let pool = ing.ledger.pool;
    if let Some(to) = to {
        record(ing, c.tenant_id, c.probe.id, to, result).await?;
        alert(ing, c.tenant_id, &c.probe, to, result).await?;
        store_probes::set_health(pool, c.tenant_id, c.probe.id, to).await?;
    } else if c.health == Health::Down && !result.ok {
        let every = (ALERT_REFRESH_S / spec.interval_s.max(1)).max(1);
        if streak.failures.is_multiple_of(every) {
            alert(ing, c.tenant_id, &c.probe, Health::Down, result).await?;
        }
    }
    Ok(())
}

/// Records the transition on the probe's stream (nothing when the stream
/// already says so, or the probe was removed meanwhile).
async fn record(
    ing: Ingest<'_>,
    tenant: Uuid,
    id: Uuid,
    to: Health,
    result: &CheckResult,
) -> Result<(), RunError> {
    let asked = Asked {
        tenant,
        meta: system_meta(),
        if_match: None,
        key: None,
    };
    let command = Command::Record {
        to,
        result: result.clone(),
    };
    let prepare = async |_: Option<&Probe>| {
        Ok::<_, RunError>(Prepared {
            // A transition checks nothing of the definition.
            context: probe::Context {
                interval_min_s: 0,
                service_known: true,
            },
            view: run::versioned::<Probe>,
        })
    };
    run::run::<Probe, _, _, RunError>(ing.ledger, asked, Target::Existing(id), command, prepare)
        .await?;
    Ok(())
}

/// The probe's alert, firing when it went down, resolved when it came up.
pub fn signal(p: &Probe, to: Health, result: &CheckResult) -> Signal {
    let what = match &p.spec.check {
        Check::Http { url, .. } => url.clone(),
        Check::Tcp { host, port } => format!("{host}:{port}"),
    };
    let summary = match (to, &result.error) {
        (Health::Down, Some(e)) => format!("Probe {} is down: {what}: {e}", p.spec.name),
        (Health::Down, None) => format!("Probe {} is down: {what}", p.spec.name),
        (Health::Up, _) => format!("Probe {} is up again: {what}", p.spec.name),
    };
    let mut labels = BTreeMap::new();
    labels.insert("probe_id".to_owned(), p.id.to_string());
    labels.insert("probe".to_owned(), p.spec.name.clone());
    if let Some(c) = &p.spec.component {
        labels.insert("component".to_owned(), c.clone());
    }
    Signal {
        source: SOURCE.into(),
        dedup_key: dedup_key(p.id),
        group_key: dedup_key(p.id),
        service_ref: Some(p.spec.service_id.to_string()),
        summary: summary.chars().take(500).collect(),
        severity: Severity::Critical,
        category: Category::Liveness,
        labels,
        firing: to == Health::Down,
        starts_at: result.at,
        ends_at: None,
    }
}

async fn alert(
    ing: Ingest<'_>,
    tenant: Uuid,
    p: &Probe,
    to: Health,
    result: &CheckResult,
) -> Result<(), RunError> {
    let got = ingest::ingest(ing, tenant, &system_meta(), signal(p, to, result)).await?;
    tracing::info!(%tenant, probe = %p.id, health = to.as_str(), outcome = %got.outcome, "probe alert");
    Ok(())
}
