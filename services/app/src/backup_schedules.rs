//! Backup schedules (SPEC §12): the worker's pass. It claims the schedules
//! due a check (`store::backup_schedules::claim_due`: one instance checks a
//! schedule at a time, each poll), assesses each against what the work log
//! says of its service's backups (`domain::backup_schedule::assess`), and on
//! a change of standing records the transition on the schedule's stream
//! through the one command path and raises or resolves its alert through
//! ingestion, exactly as any monitoring source's: source `opsledger-backup`,
//! the schedule's category (default `application`) and severity, dedup and
//! group key `backup-schedule-<service id>`, the schedule's service. So an
//! overdue backup of a service inside an announced window in force is
//! `suppressed_by_window`, and the schedule met again resolves the alert.
//! Overdue and unverified share the one alert: going from one to the other
//! sends it firing again with the new summary.
//!
//! A new backup or verification counts from the first pass after the work
//! log's projection applied it: within a poll (`OPSLEDGER_BACKUP_POLL_MS`)
//! and a projection's lag.
//!
//! While a schedule stays overdue or unverified its alert is sent firing
//! again every `ALERT_REFRESH_S` (a repeat, deduplicated), so the expiry
//! worker's staleness bound never closes it as expired.
//!
//! A failure of ours (the store, a conflict) leaves the workers' standing
//! as it was: the next pass assesses again, and a transition recorded but
//! not yet alerted is alerted then (recording it again records nothing).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use opsledger_domain::alert::Signal;
use opsledger_domain::backup_schedule::{
    self, Assessment, BackupFacts, BackupSchedule, Command, Standing,
};
use opsledger_domain::Metadata;
use opsledger_store::backup_schedules::{self as store_schedules, Claimed};
use uuid::Uuid;

use crate::ingest::{self, Ingest};
use crate::run::{self, Asked, Prepared, RunError, Target};

/// Schedules one pass claims at most; the next pass takes the rest.
const CLAIM_BATCH_MAX: i64 = 500;
/// How long a pass holds what it claimed: far longer than a pass of
/// `CLAIM_BATCH_MAX` schedules takes, so another instance never checks them
/// meanwhile; and the delay before another takes them over after a crash.
const CLAIM_LEASE_S: f64 = 300.0;
/// How often an alert that stays firing is sent again: well inside the
/// alert staleness bound (`OPSLEDGER_ALERT_STALE_S`, 12 h by default).
const ALERT_REFRESH_S: i64 = 3600;
/// The source every backup schedule's alerts carry.
pub const SOURCE: &str = "opsledger-backup";

fn system_meta() -> Metadata {
    Metadata {
        actor: "system:backup".into(),
        role: "system".into(),
        request_id: None,
        correlation_id: None,
        causation_id: None,
        source: SOURCE.into(),
    }
}

/// The dedup key of a schedule's alert.
pub fn dedup_key(service_id: Uuid) -> String {
    format!("backup-schedule-{service_id}")
}

/// One pass: claims the schedules due a check, assesses them at `now`,
/// settles the changes, and makes them due again `poll` later. Returns how
/// many were checked.
pub async fn check_due(
    ing: Ingest<'_>,
    poll: Duration,
    now: DateTime<Utc>,
) -> Result<usize, RunError> {
    let claimed =
        store_schedules::claim_due(ing.ledger.pool, CLAIM_BATCH_MAX, CLAIM_LEASE_S).await?;
    for c in &claimed {
        if let Err(e) = settle(ing, c, now).await {
            let (tenant, service) = (c.tenant_id, c.schedule.service_id);
            tracing::warn!(%tenant, %service, error = %e, "backup schedule not settled");
        }
    }
    store_schedules::release(ing.ledger.pool, &claimed, poll.as_secs_f64()).await?;
    Ok(claimed.len())
}

/// Records a change of standing and its alert, or refreshes the alert of a
/// schedule that stays overdue or unverified; nothing otherwise.
async fn settle(ing: Ingest<'_>, c: &Claimed, now: DateTime<Utc>) -> Result<(), RunError> {
    let s = &c.schedule;
    let a = backup_schedule::assess(&s.spec, s.started_at, &c.facts, now);
    let stale = c
        .alerted_at
        .is_none_or(|at| now - at >= chrono::Duration::seconds(ALERT_REFRESH_S));
    if a.standing != c.standing {
        record(ing, c.tenant_id, s.service_id, a, c.facts).await?;
    } else if a.standing == Standing::Met || !stale {
        return Ok(());
    }
    alert(ing, c.tenant_id, s, &a, &c.facts, now).await?;
    store_schedules::set_alerted(ing.ledger.pool, c.tenant_id, s.service_id, a.standing).await?;
    Ok(())
}

/// Records the transition on the schedule's stream (nothing when the
/// stream already says so, or the schedule was removed meanwhile).
async fn record(
    ing: Ingest<'_>,
    tenant: Uuid,
    service_id: Uuid,
    assessment: Assessment,
    facts: BackupFacts,
) -> Result<(), RunError> {
    let asked = Asked {
        tenant,
        meta: system_meta(),
        if_match: None,
        key: None,
    };
    let prepare = async |_: Option<&BackupSchedule>| {
        Ok::<_, RunError>(Prepared {
            // A transition checks nothing of the definition.
            context: backup_schedule::Context {
                period_min_s: 0,
                service_known: true,
            },
            view: run::versioned::<BackupSchedule>,
        })
    };
    run::run::<BackupSchedule, _, _, RunError>(
        ing.ledger,
        asked,
        Target::Existing(service_id),
        Command::Record { assessment, facts },
        prepare,
    )
    .await?;
    Ok(())
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The schedule's alert: firing while overdue or unverified, resolved once
/// the schedule is met again.
pub fn signal(
    s: &BackupSchedule,
    a: &Assessment,
    facts: &BackupFacts,
    now: DateTime<Utc>,
) -> Signal {
    let mut labels = BTreeMap::new();
    labels.insert("backup_standing".to_owned(), a.standing.as_str().to_owned());
    let summary = match a.standing {
        Standing::Overdue => match facts.last_performed {
            Some(b) => format!(
                "Backup overdue: none performed since {} (due by {})",
                rfc3339(b.performed_at),
                rfc3339(a.next_due_at)
            ),
            None => format!(
                "Backup overdue: none performed since the schedule began (due by {})",
                rfc3339(a.next_due_at)
            ),
        },
        Standing::Unverified => {
            let when = facts
                .first_unverified
                .map(|b| {
                    labels.insert("backup_id".to_owned(), b.backup_id.to_string());
                    format!(" performed at {}", rfc3339(b.performed_at))
                })
                .unwrap_or_default();
            let by = a.verify_by.map(rfc3339).unwrap_or_default();
            format!("Backup unverified: the backup{when} was not verified by {by}")
        }
        Standing::Met => "Backups are on schedule again: performed and verified".to_owned(),
    };
    Signal {
        source: SOURCE.into(),
        dedup_key: dedup_key(s.service_id),
        group_key: dedup_key(s.service_id),
        service_ref: Some(s.service_id.to_string()),
        summary,
        severity: s.spec.severity,
        category: s.spec.category,
        labels,
        firing: a.standing != Standing::Met,
        starts_at: now,
        ends_at: None,
    }
}

async fn alert(
    ing: Ingest<'_>,
    tenant: Uuid,
    s: &BackupSchedule,
    a: &Assessment,
    facts: &BackupFacts,
    now: DateTime<Utc>,
) -> Result<(), RunError> {
    let got = ingest::ingest(ing, tenant, &system_meta(), signal(s, a, facts, now)).await?;
    let (service, standing) = (s.service_id, a.standing.as_str());
    tracing::info!(%tenant, %service, standing, outcome = %got.outcome, "backup schedule alert");
    Ok(())
}
