//! The downtime read model (SPEC §6) and the queries reports make of it.
//!
//! A follower of incident streams keeps each incident's impact as the
//! domain folds it (`domain::impact::ImpactHistory`) and its segments of one
//! level each, indexed by service and start. A batch loads the impacts it
//! touches in one query and writes them back in three statements, whatever
//! its size: an incident storm opens hundreds of incidents a second.
//! Windows are read from the change read model (`proj_windows`), which
//! keeps each window as the domain folds it.
//!
//! # Impact, downtime and reports
//!
//! An incident's impact has a level (`domain::impact::ImpactLevel`: outage,
//! partial, degraded), given when it opens or mapped from its severity, and
//! changed from an instant on by `ImpactLevelChanged`; one dated in the past
//! corrects the record after the fact (nothing is edited). A reopen starts a
//! new impact period, so the time between resolution and reopening is not
//! downtime. `ImpactHistory` folds an incident's periods and levels into
//! segments of one level each.
//!
//! The `downtime` projection (schema V13) keeps each incident's history and
//! the events that shaped it (`proj_impacts`) and its segments by service and
//! start (`proj_impact_segments`). A batch loads the impacts it touches in one
//! query and writes them back in three statements, whatever its size.
//! `GET /reports/downtime` reads the segments of the services in scope that
//! overlap the period and the windows of the change read model, and
//! `impact::sweep` counts them: at each instant the worst open level, once,
//! planned if an announced window in force covers it (`Window::planned`:
//! from its actual start to its actual end, nothing after a cancellation).
//! A proptest holds the sweep equal to a minute-by-minute count. Figures name
//! their definition (`downtime/v1`: partial weighs 0.3, degraded 0). A year of
//! 500 services is some 120,000 segments: the index covers them (V15, answered
//! from the index alone), they come as one row of arrays per service, in two
//! halves on their own connections beside the windows, decoded and then
//! computed and written as JSON in two halves on the blocking pool, side by
//! side; the answer goes out in 64 KiB pieces with its length announced
//! (one 19 MB buffer was fresh memory for the kernel to zero on every
//! request). Pooled sessions set
//! `random_page_cost = 1.1` (SSD or cached data): with PostgreSQL's default
//! and fresh statistics the planner scans and sorts on disk instead (3x slower).
//!
//! `GET /reports/metrics` adds the incidents and changes read models and
//! computes, without I/O (`domain::metrics`), availability over three
//! denominators (the period; less planned time; the SLA's committed hours less
//! planned time in them), SLA met, error budget, MTTA, MTTR, MTBF, change
//! failure rate, noise ratio per service and per source, and incident counts.
//! Each figure names a versioned definition whose text is served with it
//! (`metrics::DEFINITIONS`); a change to a formula or a weight is a new version.
//! Each lists the incidents or changes it was computed from; `drilldown=true`
//! adds the intervals, planned time and log positions.
//!
//! Calendar periods are the client's: a client (else its tenant, else UTC) has
//! an IANA zone, and a month is local midnight to local midnight
//! (`domain::period::Month`: a Berlin March has 743 hours). A service's SLA may
//! commit to hours of the week (`ServiceHours`, on the local wall clock, so DST
//! moves them in UTC). `GET /reports/monthly` assembles a client's month
//! (`domain::monthly`) and prints it as JSON, a flat CSV, or an HTML page
//! (minijinja template, escaped text, inline SVG charts drawn in Rust, no
//! script, A4 print stylesheet) in the client's language. A month counts as
//! first reported when it ends: impact events recorded later are listed as
//! restatements. A test prints the page to PDF in headless Chromium
//! (`ops/browser.sh`) and reads it back with `pdftotext`.
//!
//! Contacts subscribed to `monthly_report` get last month's report by mail in
//! the first three days of a month in their client's zone: a worker's pass
//! (`reports::mail_monthly_due`) appends a `NotificationRequested` on a stream
//! named after tenant, client, month and address, only if it does not exist
//! (`NoStream`), so passes and instances repeat nothing; the outbox sends it
//! as a plain-text summary with the HTML report as its alternative.
//!
//! A service may opt in to auto-mitigation: after an alert of one of its
//! incidents resolves, ingestion asks the alerts read model (written by that
//! resolution's own append, never behind) whether any alert of the incident
//! still fires; if none does, it mitigates the incident at the last
//! resolution, as `system:auto-mitigation`, with `cause: all_alerts_resolved`.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Transaction};
use futures_util::future::BoxFuture;
use opsledger_domain::change::Change;
use opsledger_domain::impact::{ImpactHistory, ImpactLevel};
use opsledger_domain::incident::IncidentEvent;
use opsledger_domain::metrics::IncidentFacts;
use opsledger_domain::window::Window;
use opsledger_domain::RecordedEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::projection::Projection;
use crate::StoreError;

fn corrupt(e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(format!("impact state: {e}"))
}

/// The incident events that shape an impact: the only ones the projection
/// is handed.
const IMPACT_EVENTS: &[&str] = &[
    "IncidentOpened",
    "ImpactLevelChanged",
    "IncidentMitigated",
    "IncidentResolved",
    "IncidentReopened",
    "IncidentImpactCorrected",
];

/// An event that shaped an impact, as drill-down and restatements name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ImpactEventRef {
    pub position: i64,
    #[serde(rename = "type")]
    pub event_type: String,
    pub recorded_at: DateTime<Utc>,
}

#[derive(Debug, Default)]
pub struct DowntimeProjection;

/// The name of the downtime projection.
pub const PROJECTION: &str = "downtime";

impl Projection for DowntimeProjection {
    fn name(&self) -> &'static str {
        PROJECTION
    }

    fn tables(&self) -> &'static [&'static str] {
        &["proj_impacts", "proj_impact_segments"]
    }

    fn streams(&self) -> &'static [&'static str] {
        &["incident-"]
    }

    fn applies(&self) -> &'static [&'static str] {
        IMPACT_EVENTS
    }

    fn apply<'a>(
        &'a self,
        tx: &'a Transaction<'a>,
        event: &'a RecordedEvent,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.apply_batch(tx, std::slice::from_ref(event))
    }

    fn apply_batch<'a>(
        &'a self,
        tx: &'a Transaction<'a>,
        events: &'a [RecordedEvent],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let relevant: Vec<&RecordedEvent> = events
                .iter()
                .filter(|e| IMPACT_EVENTS.contains(&e.event_type.as_str()))
                .collect();
            if relevant.is_empty() {
                return Ok(());
            }
            let mut order: Vec<(Uuid, Uuid)> = Vec::new();
            for e in &relevant {
                let key = (e.tenant_id, incident_id_of(&e.stream_id)?);
                if !order.contains(&key) {
                    order.push(key);
                }
            }
            let mut impacts = load(tx, &order).await?;
            for e in relevant {
                let Some(parsed) = IncidentEvent::from_stored(&e.event_type, &e.payload) else {
                    continue;
                };
                let key = (e.tenant_id, incident_id_of(&e.stream_id)?);
                let (history, shaped) = impacts.entry(key).or_default();
                *history = ImpactHistory::evolve(history.take(), &parsed, e.recorded_at);
                shaped.push(ImpactEventRef {
                    position: e.position,
                    event_type: e.event_type.clone(),
                    recorded_at: e.recorded_at,
                });
            }
            store(tx, &order, &impacts).await
        })
    }
}

type Impacts = HashMap<(Uuid, Uuid), (Option<ImpactHistory>, Vec<ImpactEventRef>)>;

fn incident_id_of(stream_id: &str) -> Result<Uuid, StoreError> {
    stream_id
        .strip_prefix("incident-")
        .and_then(|id| Uuid::parse_str(id).ok())
        .ok_or_else(|| StoreError::Corrupt(format!("incident event on stream {stream_id}")))
}

async fn load(tx: &Transaction<'_>, keys: &[(Uuid, Uuid)]) -> Result<Impacts, StoreError> {
    let (tenants, incidents): (Vec<Uuid>, Vec<Uuid>) = keys.iter().copied().unzip();
    let rows = tx
        .query(
            "SELECT p.tenant_id, p.incident_id, p.history, p.events FROM proj_impacts p \
             JOIN unnest($1::uuid[], $2::uuid[]) AS k(t, i) \
               ON p.tenant_id = k.t AND p.incident_id = k.i",
            &[&tenants, &incidents],
        )
        .await?;
    let mut out = Impacts::new();
    for r in rows {
        let history: ImpactHistory = serde_json::from_value(r.get(2)).map_err(corrupt)?;
        let shaped: Vec<ImpactEventRef> = serde_json::from_value(r.get(3)).map_err(corrupt)?;
        out.insert((r.get(0), r.get(1)), (Some(history), shaped));
    }
    Ok(out)
}

/// Writes the impacts of `keys` back, and their segments anew: three
/// statements for the whole batch.
async fn store(
    tx: &Transaction<'_>,
    keys: &[(Uuid, Uuid)],
    impacts: &Impacts,
) -> Result<(), StoreError> {
    let mut row_tenants = Vec::new();
    let mut row_incidents = Vec::new();
    let mut row_services: Vec<Option<Uuid>> = Vec::new();
    let mut row_histories = Vec::new();
    let mut row_events = Vec::new();
    let mut seg_tenants = Vec::new();
    let mut seg_incidents = Vec::new();
    let mut seg_seqs: Vec<i32> = Vec::new();
    let mut seg_services = Vec::new();
    let mut seg_levels: Vec<&str> = Vec::new();
    let mut seg_starts = Vec::new();
    let mut seg_ends: Vec<Option<DateTime<Utc>>> = Vec::new();
    for key in keys {
        let Some((Some(history), shaped)) = impacts.get(key) else {
            continue;
        };
        row_tenants.push(key.0);
        row_incidents.push(key.1);
        row_services.push(history.service_id);
        row_histories.push(serde_json::to_value(history).map_err(corrupt)?);
        row_events.push(serde_json::to_value(shaped).map_err(corrupt)?);
        // An incident of no service hits no service's availability.
        let Some(service) = history.service_id else {
            continue;
        };
        for (seq, s) in history.segments().iter().enumerate() {
            seg_tenants.push(key.0);
            seg_incidents.push(key.1);
            seg_seqs.push(seq as i32);
            seg_services.push(service);
            seg_levels.push(s.level.as_str());
            seg_starts.push(s.start);
            seg_ends.push(s.end);
        }
    }
    let (tenants, incidents): (Vec<Uuid>, Vec<Uuid>) = keys.iter().copied().unzip();
    tx.execute(
        "DELETE FROM proj_impact_segments s USING unnest($1::uuid[], $2::uuid[]) AS k(t, i) \
         WHERE s.tenant_id = k.t AND s.incident_id = k.i",
        &[&tenants, &incidents],
    )
    .await?;
    tx.execute(
        "INSERT INTO proj_impact_segments (tenant_id, incident_id, seq, service_id, level, start_at, end_at) \
         SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::int4[], $4::uuid[], $5::text[], \
           $6::timestamptz[], $7::timestamptz[])",
        &[
            &seg_tenants,
            &seg_incidents,
            &seg_seqs,
            &seg_services,
            &seg_levels,
            &seg_starts,
            &seg_ends,
        ],
    )
    .await?;
    tx.execute(
        "INSERT INTO proj_impacts (tenant_id, incident_id, service_id, history, events) \
         SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::jsonb[], $5::jsonb[]) \
         ON CONFLICT (tenant_id, incident_id) DO UPDATE SET service_id = EXCLUDED.service_id, \
           history = EXCLUDED.history, events = EXCLUDED.events",
        &[
            &row_tenants,
            &row_incidents,
            &row_services,
            &row_histories,
            &row_events,
        ],
    )
    .await?;
    Ok(())
}

/// A segment of impact on a service, as the report reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SegmentRow {
    pub incident_id: Uuid,
    pub service_id: Uuid,
    pub level: ImpactLevel,
    pub start: DateTime<Utc>,
    /// `None` while the impact lasts.
    pub end: Option<DateTime<Utc>>,
}

/// The segments of `services` that overlap `[from, to)`, by service and start.
pub async fn segments<C: GenericClient>(
    client: &C,
    tenant: Uuid,
    services: &[Uuid],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<(Uuid, Vec<SegmentRow>)>, StoreError> {
    // One row per service, its segments as arrays: a year of 500 services
    // is some 120,000 segments, and decoding arrays costs this process a
    // fraction of what as many rows do. The arrays of a row are aligned
    // (every aggregate takes the rows in one order); the order itself is
    // the index's, which the subquery asks for, and is made sure of here.
    // Planned for each call's parameters, never cached: after five runs of a
    // prepared statement PostgreSQL may keep a generic plan, which guesses a
    // few hundred rows for any array of services and sorts on disk what the
    // index already gives in order.
    let rows = client
        .query(
            "SELECT service_id, array_agg(incident_id), array_agg(seq), array_agg(level), \
               array_agg(start_at), array_agg(end_at) \
             FROM (SELECT * FROM proj_impact_segments \
                   WHERE tenant_id = $1 AND service_id = ANY($2) AND start_at < $4 \
                     AND (end_at IS NULL OR end_at > $3) \
                   ORDER BY service_id, start_at, incident_id, seq) s \
             GROUP BY service_id ORDER BY service_id",
            &[&tenant, &services, &from, &to],
        )
        .await?;
    // Tens of milliseconds of decoding for many services: off the caller's
    // thread, which serves other requests meanwhile, and beside the decoding
    // of another call's rows.
    if rows.len() < DECODE_ASIDE_FROM {
        return decode_segments(&rows);
    }
    match tokio::task::spawn_blocking(move || decode_segments(&rows)).await {
        Ok(decoded) => decoded,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Cancelled: the runtime is shutting down.
        Err(e) => Err(StoreError::Unavailable(Box::new(e))),
    }
}

/// From this many services on, their segments are decoded on a thread of
/// the blocking pool.
const DECODE_ASIDE_FROM: usize = 20;

fn decode_segments(
    rows: &[tokio_postgres::Row],
) -> Result<Vec<(Uuid, Vec<SegmentRow>)>, StoreError> {
    let mut segments = Vec::with_capacity(rows.len());
    for r in rows {
        let service_id: Uuid = r.get(0);
        let incidents: Vec<Uuid> = r.get(1);
        let seqs: Vec<i32> = r.get(2);
        let levels: Vec<&str> = r.get(3);
        let starts: Vec<DateTime<Utc>> = r.get(4);
        let ends: Vec<Option<DateTime<Utc>>> = r.get(5);
        let mut of_service = Vec::with_capacity(incidents.len());
        for (i, incident_id) in incidents.into_iter().enumerate() {
            let level = levels[i];
            of_service.push((
                seqs[i],
                SegmentRow {
                    incident_id,
                    service_id,
                    level: ImpactLevel::parse(level)
                        .ok_or_else(|| StoreError::Corrupt(format!("impact level {level:?}")))?,
                    start: starts[i],
                    end: ends[i],
                },
            ));
        }
        of_service.sort_by_key(|(seq, s)| (s.start, s.incident_id, *seq));
        segments.push((service_id, of_service.into_iter().map(|(_, s)| s).collect()));
    }
    Ok(segments)
}

/// The events that shaped the impacts of these incidents, by incident.
pub async fn impact_events<C: GenericClient>(
    client: &C,
    tenant: Uuid,
    incidents: &[Uuid],
) -> Result<HashMap<Uuid, Vec<ImpactEventRef>>, StoreError> {
    let rows = client
        .query(
            "SELECT incident_id, events FROM proj_impacts WHERE tenant_id = $1 AND incident_id = ANY($2)",
            &[&tenant, &incidents],
        )
        .await?;
    rows.iter()
        .map(|r| Ok((r.get(0), serde_json::from_value(r.get(1)).map_err(corrupt)?)))
        .collect()
}

/// The windows of any of `services` that may have planned time in
/// `[from, to)`: announced once (`Window::planned` decides what each
/// plans), and recurring or with a span that reaches into the period (a
/// window's planned time lies between the earlier of its start and when it
/// started, and the later of its end and when it ended).
pub async fn windows<C: GenericClient>(
    client: &C,
    tenant: Uuid,
    services: &[Uuid],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<Window>, StoreError> {
    // A few services: their windows through the services index. Many: the
    // period's windows first (comparing span columns is cheap), and only
    // those checked against the services; the services index scanned for
    // hundreds of services costs more than the whole period's windows.
    let sql = if services.len() < MANY_SERVICES {
        "SELECT state FROM proj_windows WHERE tenant_id = $1 AND service_ids && $2 \
           AND status <> 'planned' \
           AND (rrule IS NOT NULL OR (span_start < $4 AND span_end > $3)) \
         ORDER BY start_at, window_id"
    } else {
        "WITH w AS MATERIALIZED (SELECT state, service_ids, start_at, window_id FROM proj_windows \
           WHERE tenant_id = $1 AND status <> 'planned' \
             AND (rrule IS NOT NULL OR (span_start < $4 AND span_end > $3))) \
         SELECT state FROM w WHERE service_ids && $2 ORDER BY start_at, window_id"
    };
    let statement = client.prepare_cached(sql).await?;
    let rows = client
        .query(&statement, &[&tenant, &services, &from, &to])
        .await?;
    // Straight from the column's JSON to windows, with no tree of values
    // between: a tenant's year holds thousands of windows.
    rows.iter()
        .map(|r| {
            r.try_get::<_, tokio_postgres::types::Json<Window>>(0)
                .map(|w| w.0)
                .map_err(|e| StoreError::Corrupt(format!("a window's state: {e}")))
        })
        .collect()
}

/// From this many services on, `windows` reads the period's windows first.
const MANY_SERVICES: usize = 50;

/// An incident as metrics see it, with its service.
#[derive(Debug, Clone)]
pub struct IncidentRow {
    pub service_id: Uuid,
    pub title: String,
    pub facts: IncidentFacts,
}

/// The incidents of `services` that a period's metrics and reports may
/// count: opened in it, or whose impact overlaps it (`[from, to)`), with
/// the source of the alert that opened each (none when opened by hand).
pub async fn incident_facts<C: GenericClient>(
    client: &C,
    tenant: Uuid,
    services: &[Uuid],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<IncidentRow>, StoreError> {
    let rows = client
        .query(
            "SELECT i.incident_id, i.service_id, i.opened_at, i.acknowledged_at, i.impact_start, \
               i.impact_end, i.severity, i.category, i.triage, a.source, i.title \
             FROM proj_incidents i \
             LEFT JOIN LATERAL (SELECT source FROM proj_alerts a WHERE a.tenant_id = i.tenant_id \
               AND a.incident_id = i.incident_id AND a.decision->>'outcome' = 'opened_incident' \
               ORDER BY a.first_seen LIMIT 1) a ON true \
             WHERE i.tenant_id = $1 AND i.service_id = ANY($2) \
               AND ((i.opened_at >= $3 AND i.opened_at < $4) \
                 OR (i.impact_start < $4 AND (i.impact_end IS NULL OR i.impact_end >= $3))) \
             ORDER BY i.opened_at, i.incident_id",
            &[&tenant, &services, &from, &to],
        )
        .await?;
    let word = |s: String| serde_json::Value::String(s);
    rows.into_iter()
        .map(|r| {
            Ok(IncidentRow {
                service_id: r.get(1),
                title: r.get(10),
                facts: IncidentFacts {
                    id: r.get(0),
                    opened_at: r.get(2),
                    acknowledged_at: r.get(3),
                    impact_start: r.get(4),
                    impact_end: r.get(5),
                    severity: serde_json::from_value(word(r.get(6))).map_err(corrupt)?,
                    category: serde_json::from_value(word(r.get(7))).map_err(corrupt)?,
                    triage: r
                        .get::<_, Option<String>>(8)
                        .map(|t| serde_json::from_value(word(t)))
                        .transpose()
                        .map_err(corrupt)?,
                    source: r.get(9),
                },
            })
        })
        .collect()
}

/// The changes of any of `services` that have an outcome, as the domain
/// folds them (the metrics keep those finished in the period).
pub async fn finished_changes<C: GenericClient>(
    client: &C,
    tenant: Uuid,
    services: &[Uuid],
) -> Result<Vec<Change>, StoreError> {
    let rows = client
        .query(
            "SELECT state FROM proj_changes WHERE tenant_id = $1 AND service_ids && $2 \
               AND status IN ('completed', 'failed', 'rolled_back', 'reviewed') \
             ORDER BY requested_at, change_id",
            &[&tenant, &services],
        )
        .await?;
    rows.iter()
        .map(|r| serde_json::from_value(r.get(0)).map_err(corrupt))
        .collect()
}

/// The improvement proposals about any of `services` that are still open
/// (raised, approved, or implemented and not yet verified).
pub async fn open_proposals<C: GenericClient>(
    client: &C,
    tenant: Uuid,
    services: &[Uuid],
) -> Result<Vec<opsledger_domain::proposal::Proposal>, StoreError> {
    let rows = client
        .query(
            "SELECT state FROM proj_proposals WHERE tenant_id = $1 AND service_ids && $2 \
               AND status IN ('raised', 'approved', 'implemented') ORDER BY raised_at, proposal_id",
            &[&tenant, &services],
        )
        .await?;
    rows.iter()
        .map(|r| serde_json::from_value(r.get(0)).map_err(corrupt))
        .collect()
}

/// A client contact subscribed to the monthly report (on any service of
/// its client), once per address.
#[derive(Debug, Clone)]
pub struct MonthlySubscriber {
    pub tenant_id: Uuid,
    pub client_id: Uuid,
    pub subscription_id: Uuid,
    pub name: String,
    pub email: String,
    pub locale: String,
}

/// Every active subscriber to the monthly report, of every tenant, one row
/// per client and address (the oldest subscription of it).
pub async fn monthly_subscribers(pool: &crate::Pool) -> Result<Vec<MonthlySubscriber>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT DISTINCT ON (tenant_id, client_id, lower(email)) tenant_id, client_id, \
               subscription_id, name, email, locale FROM proj_subscriptions \
             WHERE active AND 'monthly_report' = ANY(kinds) \
             ORDER BY tenant_id, client_id, lower(email), created_at, subscription_id",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| MonthlySubscriber {
            tenant_id: r.get(0),
            client_id: r.get(1),
            subscription_id: r.get(2),
            name: r.get(3),
            email: r.get(4),
            locale: r.get(5),
        })
        .collect())
}
