//! Heartbeats (SPEC §12): the ping path and the miss worker's pass.
//!
//! A ping ([`ping`]) keeps itself on the heartbeat's worker row
//! (`store::heartbeats::ping`: last ping, next expected-by time) and appends
//! nothing unless it changes the status: a failed run (`/fail`, or a
//! nonzero exit code) records `HeartbeatFailed` and raises the alert; the
//! next good ping after a miss or failure records `HeartbeatRecovered` and
//! resolves it. The worker ([`run_missed`]) claims heartbeats past their
//! expected-by time (each once, across instances), records
//! `HeartbeatMissed` and raises the alert. Transitions go through the one
//! command path as a system command, alerts through ingestion like any
//! source's: source `opsledger-heartbeat`, the heartbeat's category
//! (`application` by default), dedup and group key `heartbeat-<id>`, the
//! heartbeat's service.
//!
//! The row's status moves before the event is appended: should the append
//! fail, the row is put back (`store::heartbeats::put_back`), so the next
//! ping or pass records the transition instead. A heartbeat that stays late
//! or failed sends its alert again every `ALERT_REFRESH` (a repeat,
//! deduplicated), so the expiry worker's staleness bound
//! (`OPSLEDGER_ALERT_STALE_S`, 12 h) never closes a miss that lasts, a
//! daily job's included.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use opsledger_domain::alert::{Severity, Signal};
use opsledger_domain::heartbeat::{self, Command, Heartbeat, Ping, Status};
use opsledger_domain::Metadata;
use opsledger_store::heartbeats as store_hb;
use uuid::Uuid;

use crate::ingest::{self, Ingest};
use crate::run::{self, Asked, Prepared, RunError, Target};

/// Missed heartbeats one pass claims at most; the next pass takes the rest.
const CLAIM_BATCH_MAX: i64 = 500;
/// How often a late or failed heartbeat sends its alert again: well inside
/// the alert staleness bound, as a probe that stays down does.
const ALERT_REFRESH: std::time::Duration = std::time::Duration::from_secs(3600);
/// The source every heartbeat's alerts carry.
pub const SOURCE: &str = "opsledger-heartbeat";

fn system_meta() -> Metadata {
    Metadata {
        actor: "system:heartbeat".into(),
        role: "system".into(),
        request_id: None,
        correlation_id: None,
        causation_id: None,
        source: SOURCE.into(),
    }
}

/// The dedup key of a heartbeat's alert.
pub fn dedup_key(heartbeat_id: Uuid) -> String {
    format!("heartbeat-{heartbeat_id}")
}

/// Takes a ping for the heartbeat whose token is `token`. None: no live
/// heartbeat has that token. Some(status): the status after the ping.
pub async fn ping(ing: Ingest<'_>, token: &str, ping: Ping) -> Result<Option<Status>, RunError> {
    let hash = heartbeat::token_hash(token);
    let Some(p) = store_hb::ping(ing.ledger.pool, &hash, &ping).await? else {
        return Ok(None);
    };
    let Some(to) = p.to else {
        return Ok(Some(p.from));
    };
    let command = Command::RecordPing {
        to,
        ping: ping.clone(),
    };
    let settled = async {
        record(ing, p.tenant_id, p.heartbeat.id, command).await?;
        alert(
            ing,
            p.tenant_id,
            &p.heartbeat,
            to,
            ping.at,
            Some(&ping),
            None,
        )
        .await
    };
    if let Err(e) = settled.await {
        store_hb::put_back(ing.ledger.pool, p.tenant_id, p.heartbeat.id, to, p.from).await?;
        return Err(e);
    }
    Ok(Some(to))
}

/// One pass of the miss worker. Returns how many misses it recorded.
pub async fn run_missed(ing: Ingest<'_>) -> Result<usize, RunError> {
    let missed = store_hb::claim_missed(ing.ledger.pool, CLAIM_BATCH_MAX).await?;
    let n = missed.len();
    for m in missed {
        let (tenant, id) = (m.tenant_id, m.heartbeat.id);
        let command = Command::RecordMissed {
            expected_by: m.expected_by,
        };
        let done = async {
            record(ing, tenant, id, command).await?;
            let now = Utc::now();
            alert(
                ing,
                tenant,
                &m.heartbeat,
                Status::Late,
                now,
                None,
                Some(m.expected_by),
            )
            .await
        };
        if let Err(e) = done.await {
            tracing::warn!(%tenant, heartbeat = %id, error = %e, "heartbeat miss not recorded; the next pass tries again");
            let pool = ing.ledger.pool;
            store_hb::put_back(pool, tenant, id, Status::Late, Status::Up).await?;
        }
    }
    refresh_alerts(ing).await?;
    Ok(n)
}

/// Sends the alerts of heartbeats that stay late or failed again.
async fn refresh_alerts(ing: Ingest<'_>) -> Result<(), RunError> {
    let due =
        store_hb::claim_alert_refresh(ing.ledger.pool, ALERT_REFRESH, CLAIM_BATCH_MAX).await?;
    for u in due {
        let at = Utc::now();
        let sent = alert(
            ing,
            u.tenant_id,
            &u.heartbeat,
            u.status,
            at,
            u.last_ping.as_ref(),
            u.expected_by,
        )
        .await;
        if let Err(e) = sent {
            tracing::warn!(tenant = %u.tenant_id, heartbeat = %u.heartbeat.id, error = %e, "heartbeat alert not sent again");
        }
    }
    Ok(())
}

async fn record(ing: Ingest<'_>, tenant: Uuid, id: Uuid, command: Command) -> Result<(), RunError> {
    let asked = Asked {
        tenant,
        meta: system_meta(),
        if_match: None,
        key: None,
    };
    let prepare = async |_: Option<&Heartbeat>| {
        Ok::<_, RunError>(Prepared {
            context: heartbeat::Context {
                service_known: true,
            },
            view: run::versioned::<Heartbeat>,
        })
    };
    run::run::<Heartbeat, _, _, RunError>(
        ing.ledger,
        asked,
        Target::Existing(id),
        command,
        prepare,
    )
    .await?;
    Ok(())
}

/// The heartbeat's alert: firing when late or failed, resolved when up.
pub fn signal(
    h: &Heartbeat,
    to: Status,
    at: DateTime<Utc>,
    ping: Option<&Ping>,
    expected_by: Option<DateTime<Utc>>,
) -> Signal {
    let name = &h.spec.name;
    let summary = match (to, ping) {
        (Status::Late, _) => match expected_by {
            Some(t) => format!(
                "Heartbeat {name} missed a run expected by {}",
                t.to_rfc3339()
            ),
            None => format!("Heartbeat {name} missed a run"),
        },
        (
            Status::Failed,
            Some(Ping {
                exit_code: Some(c), ..
            }),
        ) => {
            format!("Heartbeat {name}: the run failed with exit code {c}")
        }
        (Status::Failed, _) => format!("Heartbeat {name}: the run failed"),
        (Status::Up, _) => format!("Heartbeat {name} ran again"),
    };
    let mut labels = BTreeMap::new();
    labels.insert("heartbeat_id".to_owned(), h.id.to_string());
    labels.insert("heartbeat".to_owned(), name.clone());
    if let Some(run_id) = ping.and_then(|p| p.run_id.clone()) {
        labels.insert("run_id".to_owned(), run_id);
    }
    Signal {
        source: SOURCE.into(),
        dedup_key: dedup_key(h.id),
        group_key: dedup_key(h.id),
        service_ref: Some(h.spec.service_id.to_string()),
        summary: summary.chars().take(500).collect(),
        severity: Severity::Critical,
        category: h.spec.category,
        labels,
        firing: to != Status::Up,
        starts_at: at,
        ends_at: None,
    }
}

async fn alert(
    ing: Ingest<'_>,
    tenant: Uuid,
    h: &Heartbeat,
    to: Status,
    at: DateTime<Utc>,
    ping: Option<&Ping>,
    expected_by: Option<DateTime<Utc>>,
) -> Result<(), RunError> {
    let sig = signal(h, to, at, ping, expected_by);
    let got = ingest::ingest(ing, tenant, &system_meta(), sig).await?;
    tracing::info!(%tenant, heartbeat = %h.id, status = to.as_str(), outcome = %got.outcome, "heartbeat alert");
    Ok(())
}
