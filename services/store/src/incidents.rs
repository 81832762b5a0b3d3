//! The alert and incident read models and their queries.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use futures_util::future::BoxFuture;
use opsledger_domain::alert::{AlertEvent, Decision};
use opsledger_domain::incident::{self, Incident, IncidentEvent};
use opsledger_domain::RecordedEvent;
use serde::Serialize;
use uuid::Uuid;

use crate::projection::{self, Appended, Inline, Payload, Projection, Write};
use crate::{Pool, StoreError};

fn corrupt(e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(format!("projection state: {e}"))
}

/// One row per incident, kept by folding each event with the domain's evolve.
#[derive(Debug, Default)]
pub struct IncidentProjection;

impl Projection for IncidentProjection {
    fn name(&self) -> &'static str {
        "incidents"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["proj_incidents", "escalation_timers"]
    }

    fn streams(&self) -> &'static [&'static str] {
        &["incident-"]
    }

    fn apply<'a>(
        &'a self,
        tx: &'a Transaction<'a>,
        event: &'a RecordedEvent,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.apply_batch(tx, std::slice::from_ref(event))
    }

    /// Folds every event of a batch per incident in memory and writes the
    /// whole batch in four statements at most: one read of the incidents it
    /// continues, one upsert of their rows, one of the escalation timers
    /// they wait for and one delete of those they no longer wait for. An
    /// alert storm attaches hundreds of alerts to one incident within a
    /// batch, and an incident storm opens hundreds of incidents.
    fn apply_batch<'a>(
        &'a self,
        tx: &'a Transaction<'a>,
        events: &'a [RecordedEvent],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut parsed = Vec::with_capacity(events.len());
            let mut touched: Vec<(Uuid, Uuid)> = Vec::new();
            let mut folded: HashMap<(Uuid, Uuid), (Option<Incident>, i64)> = HashMap::new();
            // Incidents whose first event here does not open them: their
            // state so far is read, all at once.
            let mut continued: Vec<(Uuid, Uuid)> = Vec::new();
            for event in events {
                if !event.stream_id.starts_with("incident-") {
                    continue;
                }
                let Some(e) = IncidentEvent::from_stored(&event.event_type, &event.payload) else {
                    continue;
                };
                let key = (event.tenant_id, incident_id_of(&event.stream_id)?);
                if let std::collections::hash_map::Entry::Vacant(entry) = folded.entry(key) {
                    if !matches!(e, IncidentEvent::IncidentOpened { .. }) {
                        continued.push(key);
                    }
                    entry.insert((None, 0));
                    touched.push(key);
                }
                parsed.push((key, e, event));
            }
            for (key, state) in load_incidents(tx, &continued).await? {
                folded.insert(key, (Some(state), 0));
            }
            for (key, e, event) in parsed {
                let entry = folded.get_mut(&key).expect("inserted above");
                entry.0 = incident::evolve(entry.0.take(), &e, event.recorded_at);
                entry.1 = event.stream_version;
            }
            let rows: Vec<(Uuid, &Incident, i64)> = touched
                .iter()
                .filter_map(|key| match &folded[key] {
                    (Some(next), version) => Some((key.0, next, *version)),
                    (None, _) => None,
                })
                .collect();
            upsert_incidents(tx, &rows).await
        })
    }
}

/// The stored states of these incidents (those it has).
async fn load_incidents(
    tx: &Transaction<'_>,
    keys: &[(Uuid, Uuid)],
) -> Result<Vec<((Uuid, Uuid), Incident)>, StoreError> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let (tenants, ids): (Vec<Uuid>, Vec<Uuid>) = keys.iter().copied().unzip();
    let rows = projection::query(
        tx,
        "SELECT p.tenant_id, p.incident_id, p.state FROM proj_incidents p \
             JOIN unnest($1::uuid[], $2::uuid[]) AS k(t, i) \
               ON p.tenant_id = k.t AND p.incident_id = k.i",
        &[&tenants, &ids],
    )
    .await?;
    rows.iter()
        .map(|r| {
            Ok((
                (r.get(0), r.get(1)),
                serde_json::from_value(r.get(2)).map_err(corrupt)?,
            ))
        })
        .collect()
}

const UPSERT_INCIDENTS: &str =
    "INSERT INTO proj_incidents (tenant_id, incident_id, service_id, title, status, severity, \
       category, group_key, impact_start, impact_end, opened_at, acknowledged_at, resolved_at, \
       closed_at, triage, version, state, team, assignee, escalation_level, next_escalation_at) \
     SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[], \
       $7::text[], $8::text[], $9::timestamptz[], $10::timestamptz[], $11::timestamptz[], \
       $12::timestamptz[], $13::timestamptz[], $14::timestamptz[], $15::text[], $16::int8[], \
       $17::jsonb[], $18::text[], $19::text[], $20::int4[], $21::timestamptz[]) \
     ON CONFLICT (tenant_id, incident_id) DO UPDATE SET service_id = EXCLUDED.service_id, \
       title = EXCLUDED.title, status = EXCLUDED.status, severity = EXCLUDED.severity, \
       category = EXCLUDED.category, group_key = EXCLUDED.group_key, \
       impact_start = EXCLUDED.impact_start, impact_end = EXCLUDED.impact_end, \
       acknowledged_at = EXCLUDED.acknowledged_at, resolved_at = EXCLUDED.resolved_at, \
       closed_at = EXCLUDED.closed_at, \
       triage = EXCLUDED.triage, version = EXCLUDED.version, state = EXCLUDED.state, \
       team = EXCLUDED.team, assignee = EXCLUDED.assignee, \
       escalation_level = EXCLUDED.escalation_level, next_escalation_at = EXCLUDED.next_escalation_at";
const UPSERT_TIMERS: &str =
    "INSERT INTO escalation_timers (tenant_id, incident_id, level, round, due_at) \
     SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::int4[], $4::int4[], $5::timestamptz[]) \
     ON CONFLICT (tenant_id, incident_id) DO UPDATE SET level = EXCLUDED.level, \
       round = EXCLUDED.round, due_at = EXCLUDED.due_at";
const DELETE_TIMERS: &str = "DELETE FROM escalation_timers t \
     USING unnest($1::uuid[], $2::uuid[]) AS k(tenant, incident) \
     WHERE t.tenant_id = k.tenant AND t.incident_id = k.incident";

/// Writes the incidents' rows (one per incident: the caller folds) and the
/// durable timers of the steps they wait for.
async fn upsert_incidents(
    tx: &Transaction<'_>,
    rows: &[(Uuid, &Incident, i64)],
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut c = IncidentColumns::default();
    let (mut wait_t, mut wait_i, mut wait_level, mut wait_round, mut wait_due) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut done_t, mut done_i) = (Vec::new(), Vec::new());
    for (tenant, next, version) in rows {
        c.push(*tenant, next, *version)?;
        // The durable timer follows the step the incident waits for.
        match next.next_escalation {
            Some(p) => {
                wait_t.push(*tenant);
                wait_i.push(next.id);
                wait_level.push(p.level as i32);
                wait_round.push(p.round as i32);
                wait_due.push(p.due_at);
            }
            None => {
                done_t.push(*tenant);
                done_i.push(next.id);
            }
        }
    }
    projection::execute(
        tx,
        UPSERT_INCIDENTS,
        &[
            &c.tenant,
            &c.id,
            &c.service,
            &c.title,
            &c.status,
            &c.severity,
            &c.category,
            &c.group_key,
            &c.impact_start,
            &c.impact_end,
            &c.opened_at,
            &c.acknowledged_at,
            &c.resolved_at,
            &c.closed_at,
            &c.triage,
            &c.version,
            &c.state,
            &c.team,
            &c.assignee,
            &c.escalation_level,
            &c.next_escalation_at,
        ],
    )
    .await?;
    if !wait_t.is_empty() {
        projection::execute(
            tx,
            UPSERT_TIMERS,
            &[&wait_t, &wait_i, &wait_level, &wait_round, &wait_due],
        )
        .await?;
    }
    if !done_t.is_empty() {
        projection::execute(tx, DELETE_TIMERS, &[&done_t, &done_i]).await?;
    }
    Ok(())
}

/// Incident rows of a batch, one vector per column (for `unnest`).
#[derive(Default)]
struct IncidentColumns {
    tenant: Vec<Uuid>,
    id: Vec<Uuid>,
    service: Vec<Option<Uuid>>,
    title: Vec<String>,
    status: Vec<&'static str>,
    severity: Vec<&'static str>,
    category: Vec<&'static str>,
    group_key: Vec<Option<String>>,
    impact_start: Vec<DateTime<Utc>>,
    impact_end: Vec<Option<DateTime<Utc>>>,
    opened_at: Vec<DateTime<Utc>>,
    acknowledged_at: Vec<Option<DateTime<Utc>>>,
    resolved_at: Vec<Option<DateTime<Utc>>>,
    closed_at: Vec<Option<DateTime<Utc>>>,
    triage: Vec<Option<String>>,
    version: Vec<i64>,
    state: Vec<serde_json::Value>,
    team: Vec<&'static str>,
    assignee: Vec<Option<String>>,
    escalation_level: Vec<i32>,
    next_escalation_at: Vec<Option<DateTime<Utc>>>,
}

impl IncidentColumns {
    fn push(&mut self, tenant: Uuid, next: &Incident, version: i64) -> Result<(), StoreError> {
        self.state
            .push(serde_json::to_value(next).map_err(corrupt)?);
        self.triage.push(next.triage.and_then(|t| {
            serde_json::to_value(t)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
        }));
        self.tenant.push(tenant);
        self.id.push(next.id);
        self.service.push(next.service_id);
        self.title.push(next.title.clone());
        self.status.push(next.status.as_str());
        self.severity.push(next.severity.as_str());
        self.category.push(next.category.as_str());
        self.group_key.push(next.group_key.clone());
        self.impact_start.push(next.impact_start);
        self.impact_end.push(next.impact_end);
        self.opened_at.push(next.opened_at);
        self.acknowledged_at.push(next.acknowledged_at);
        self.resolved_at.push(next.resolved_at);
        self.closed_at.push(next.closed_at);
        self.version.push(version);
        self.team.push(next.team.as_str());
        self.assignee.push(next.assignee.clone());
        self.escalation_level.push(next.escalation_level as i32);
        self.next_escalation_at
            .push(next.next_escalation.map(|p| p.due_at));
        Ok(())
    }
}

fn incident_id_of(stream_id: &str) -> Result<Uuid, StoreError> {
    stream_id
        .strip_prefix("incident-")
        .and_then(|id| Uuid::parse_str(id).ok())
        .ok_or_else(|| StoreError::Corrupt(format!("incident event on stream {stream_id}")))
}

/// One row per alert firing cycle: what it is, whether it still fires, and
/// what became of it.
#[derive(Debug, Default)]
pub struct AlertProjection;

impl Projection for AlertProjection {
    fn name(&self) -> &'static str {
        "alerts"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["proj_alerts"]
    }

    fn streams(&self) -> &'static [&'static str] {
        &["alert-"]
    }

    fn apply<'a>(
        &'a self,
        tx: &'a Transaction<'a>,
        event: &'a RecordedEvent,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.apply_batch(tx, std::slice::from_ref(event))
    }

    fn inline(&self) -> bool {
        true
    }

    fn as_inline(&self) -> Option<&dyn Inline> {
        Some(self)
    }

    fn apply_batch<'a>(
        &'a self,
        tx: &'a Transaction<'a>,
        events: &'a [RecordedEvent],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let appended: Vec<Appended<'_>> = events.iter().map(Appended::of).collect();
            for write in self.writes(&appended)? {
                write.execute(tx).await?;
            }
            Ok(())
        })
    }
}

// Every firing cycle's receipt carries an alert id of its own, written once
// (inline, or by a rebuild into an emptied table): a plain INSERT, without
// the speculative insertion ON CONFLICT costs, for a conflict that cannot be.
// A cycle that begins in a batch is written once, with what the batch's
// later events did to it (repeats, its resolution) already folded in: a
// rebuild reads hours of receipts per page, and updating each row it has
// just inserted (no HOT update: `firing` is in an index predicate) was
// most of its work.
const INSERT_ALERTS: &str =
    "INSERT INTO proj_alerts (tenant_id, alert_id, dedup_key, group_key, source, service_id, \
       service_ref, summary, severity, category, labels, firing, receipts, starts_at, ends_at, \
       first_seen, last_seen, incident_id, decision, first_version, last_version, resolved_at, \
       resolved_by) \
     SELECT * \
     FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::uuid[], \
       $7::text[], $8::text[], $9::text[], $10::text[], $11::json[], $12::bool[], $13::int8[], \
       $14::timestamptz[], $15::timestamptz[], $16::timestamptz[], $17::timestamptz[], \
       $18::uuid[], $19::json[], $20::int8[], $21::int8[], $22::timestamptz[], $23::text[])";
const UPDATE_REPEATS: &str =
    "UPDATE proj_alerts p SET receipts = u.r, last_seen = u.seen, ends_at = u.ends, \
       last_version = u.v \
     FROM unnest($1::uuid[], $2::uuid[], $3::int8[], $4::timestamptz[], $5::timestamptz[], \
       $6::int8[]) AS u(t, a, r, seen, ends, v) \
     WHERE p.tenant_id = u.t AND p.alert_id = u.a";
// A cycle held for a parent and decided afresh later (`alert::decide_receipt`)
// takes the decision and incident of its later receipt; its counters are the
// repeats' (`UPDATE_REPEATS`, where such a receipt counts as one).
const UPDATE_REDECIDED: &str = "UPDATE proj_alerts p SET decision = u.d, incident_id = u.i \
     FROM unnest($1::uuid[], $2::uuid[], $3::json[], $4::uuid[]) AS u(t, a, d, i) \
     WHERE p.tenant_id = u.t AND p.alert_id = u.a";
const UPDATE_RESOLVED: &str =
    "UPDATE proj_alerts p SET firing = false, resolved_at = u.at, resolved_by = u.by, \
       last_version = u.v \
     FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[], $4::text[], $5::int8[]) \
       AS u(t, a, at, by, v) \
     WHERE p.tenant_id = u.t AND p.alert_id = u.a";

/// The alerts read model is kept by every append that records an alert: an
/// alert storm's receipts are rows of it the moment they commit, and ingestion
/// pays no second read of its events.
impl Inline for AlertProjection {
    fn streams(&self) -> &'static [&'static str] {
        &["alert-"]
    }

    /// Four statements at most, whatever the number of events: new firing
    /// cycles (with their repeats and resolution in the batch folded in),
    /// then repeats (the last of each alert wins), cycles decided afresh
    /// and resolutions of older cycles. Within a batch an alert's receipt
    /// precedes its repeats and its resolution, so this order is the
    /// events' order for every alert.
    ///
    /// A receipt that is not a repeat but counts more than one is a cycle
    /// held for a parent decided afresh (a new cycle's first receipt counts
    /// one): its row exists, and takes the new decision.
    fn writes(&self, events: &[Appended<'_>]) -> Result<Vec<Write>, StoreError> {
        let mut new = NewAlertRows::default();
        let mut repeats: HashMap<(Uuid, Uuid), Repeat> = HashMap::new();
        let mut redecided: HashMap<(Uuid, Uuid), Decision> = HashMap::new();
        let mut resolved: Vec<(Uuid, Uuid, DateTime<Utc>, String, i64)> = Vec::new();
        for event in events {
            if !event.stream_id.starts_with("alert-") {
                continue;
            }
            let parsed = match event.payload {
                Payload::Json(text) => AlertEvent::from_stored_json(event.event_type, text),
                Payload::Value(value) => AlertEvent::from_stored(event.event_type, value),
            };
            match parsed {
                Some(AlertEvent::AlertReceived {
                    alert_id,
                    signal,
                    count,
                    decision: Decision::Deduplicated { .. },
                    ..
                }) => {
                    if let Some(row) = new.row_of(event.tenant_id, alert_id) {
                        new.receipts[row] = count as i64;
                        new.last_seen[row] = event.recorded_at;
                        new.ends_at[row] = signal.ends_at;
                        new.last_version[row] = event.stream_version;
                        continue;
                    }
                    repeats.insert(
                        (event.tenant_id, alert_id),
                        Repeat {
                            receipts: count as i64,
                            seen: event.recorded_at,
                            ends_at: signal.ends_at,
                            version: event.stream_version,
                        },
                    );
                }
                Some(AlertEvent::AlertReceived {
                    alert_id,
                    signal,
                    count,
                    decision,
                    ..
                }) if count > 1 => {
                    if let Some(row) = new.row_of(event.tenant_id, alert_id) {
                        new.receipts[row] = count as i64;
                        new.last_seen[row] = event.recorded_at;
                        new.ends_at[row] = signal.ends_at;
                        new.last_version[row] = event.stream_version;
                        new.incident_id[row] = decision.incident_id();
                        new.decision[row] = serde_json::to_value(&decision).map_err(corrupt)?;
                        continue;
                    }
                    repeats.insert(
                        (event.tenant_id, alert_id),
                        Repeat {
                            receipts: count as i64,
                            seen: event.recorded_at,
                            ends_at: signal.ends_at,
                            version: event.stream_version,
                        },
                    );
                    redecided.insert((event.tenant_id, alert_id), decision);
                }
                Some(AlertEvent::AlertReceived {
                    alert_id,
                    signal,
                    service_id,
                    count,
                    decision,
                }) => {
                    new.push(event, alert_id, signal, service_id, count, decision)?;
                }
                Some(AlertEvent::AlertResolved {
                    alert_id, by, at, ..
                }) => {
                    let by = serde_json::to_value(by).map_err(corrupt)?;
                    let by = by.as_str().unwrap_or_default().to_owned();
                    if let Some(row) = new.row_of(event.tenant_id, alert_id) {
                        new.firing[row] = false;
                        new.resolved_at[row] = Some(at);
                        new.resolved_by[row] = Some(by);
                        new.last_version[row] = event.stream_version;
                        continue;
                    }
                    resolved.push((event.tenant_id, alert_id, at, by, event.stream_version));
                }
                None => {}
            }
        }
        let mut writes = Vec::new();
        if !new.alert_id.is_empty() {
            writes.push(Write {
                sql: INSERT_ALERTS,
                params: vec![
                    Box::new(new.tenant_id),
                    Box::new(new.alert_id),
                    Box::new(new.dedup_key),
                    Box::new(new.group_key),
                    Box::new(new.source),
                    Box::new(new.service_id),
                    Box::new(new.service_ref),
                    Box::new(new.summary),
                    Box::new(new.severity),
                    Box::new(new.category),
                    Box::new(new.labels),
                    Box::new(new.firing),
                    Box::new(new.receipts),
                    Box::new(new.starts_at),
                    Box::new(new.ends_at),
                    Box::new(new.seen),
                    Box::new(new.last_seen),
                    Box::new(new.incident_id),
                    Box::new(new.decision),
                    Box::new(new.version),
                    Box::new(new.last_version),
                    Box::new(new.resolved_at),
                    Box::new(new.resolved_by),
                ],
            });
        }
        if !repeats.is_empty() {
            let mut tenants = Vec::new();
            let mut alerts = Vec::new();
            let mut receipts = Vec::new();
            let mut seen = Vec::new();
            let mut ends = Vec::new();
            let mut versions = Vec::new();
            for ((tenant, alert), r) in repeats {
                tenants.push(tenant);
                alerts.push(alert);
                receipts.push(r.receipts);
                seen.push(r.seen);
                ends.push(r.ends_at);
                versions.push(r.version);
            }
            writes.push(Write {
                sql: UPDATE_REPEATS,
                params: vec![
                    Box::new(tenants),
                    Box::new(alerts),
                    Box::new(receipts),
                    Box::new(seen),
                    Box::new(ends),
                    Box::new(versions),
                ],
            });
        }
        if !redecided.is_empty() {
            let mut tenants = Vec::new();
            let mut alerts = Vec::new();
            let mut decisions = Vec::new();
            let mut incidents = Vec::new();
            for ((tenant, alert), d) in redecided {
                tenants.push(tenant);
                alerts.push(alert);
                incidents.push(d.incident_id());
                decisions.push(serde_json::to_value(&d).map_err(corrupt)?);
            }
            writes.push(Write {
                sql: UPDATE_REDECIDED,
                params: vec![
                    Box::new(tenants),
                    Box::new(alerts),
                    Box::new(decisions),
                    Box::new(incidents),
                ],
            });
        }
        if !resolved.is_empty() {
            let tenants: Vec<Uuid> = resolved.iter().map(|r| r.0).collect();
            let alerts: Vec<Uuid> = resolved.iter().map(|r| r.1).collect();
            let ats: Vec<DateTime<Utc>> = resolved.iter().map(|r| r.2).collect();
            let versions: Vec<i64> = resolved.iter().map(|r| r.4).collect();
            let bys: Vec<String> = resolved.into_iter().map(|r| r.3).collect();
            writes.push(Write {
                sql: UPDATE_RESOLVED,
                params: vec![
                    Box::new(tenants),
                    Box::new(alerts),
                    Box::new(ats),
                    Box::new(bys),
                    Box::new(versions),
                ],
            });
        }
        Ok(writes)
    }
}

/// The latest repeat of an alert within a batch.
struct Repeat {
    receipts: i64,
    seen: DateTime<Utc>,
    ends_at: Option<DateTime<Utc>>,
    /// Of the repeat's event in its stream.
    version: i64,
}

/// New firing cycles of a batch, one vector per column (for `unnest`).
#[derive(Default)]
struct NewAlertRows {
    tenant_id: Vec<Uuid>,
    alert_id: Vec<Uuid>,
    dedup_key: Vec<String>,
    group_key: Vec<String>,
    source: Vec<String>,
    service_id: Vec<Option<Uuid>>,
    service_ref: Vec<Option<String>>,
    summary: Vec<String>,
    severity: Vec<&'static str>,
    category: Vec<&'static str>,
    labels: Vec<serde_json::Value>,
    firing: Vec<bool>,
    receipts: Vec<i64>,
    starts_at: Vec<DateTime<Utc>>,
    ends_at: Vec<Option<DateTime<Utc>>>,
    seen: Vec<DateTime<Utc>>,
    last_seen: Vec<DateTime<Utc>>,
    incident_id: Vec<Option<Uuid>>,
    decision: Vec<serde_json::Value>,
    /// Of the receipt in its alert stream.
    version: Vec<i64>,
    /// Of the cycle's last event in the batch.
    last_version: Vec<i64>,
    resolved_at: Vec<Option<DateTime<Utc>>>,
    resolved_by: Vec<Option<String>>,
    /// Where each (tenant, alert) is among these rows.
    rows: HashMap<(Uuid, Uuid), usize>,
}

impl NewAlertRows {
    fn push(
        &mut self,
        event: &Appended<'_>,
        alert_id: Uuid,
        signal: opsledger_domain::alert::Signal,
        service_id: Option<Uuid>,
        count: u64,
        decision: Decision,
    ) -> Result<(), StoreError> {
        self.rows
            .insert((event.tenant_id, alert_id), self.alert_id.len());
        self.tenant_id.push(event.tenant_id);
        self.alert_id.push(alert_id);
        self.labels
            .push(serde_json::to_value(&signal.labels).map_err(corrupt)?);
        self.decision
            .push(serde_json::to_value(&decision).map_err(corrupt)?);
        self.firing
            .push(!matches!(decision, Decision::NothingFiring));
        self.incident_id.push(decision.incident_id());
        self.dedup_key.push(signal.dedup_key);
        self.group_key.push(signal.group_key);
        self.source.push(signal.source);
        self.service_id.push(service_id);
        self.service_ref.push(signal.service_ref);
        self.summary.push(signal.summary);
        self.severity.push(signal.severity.as_str());
        self.category.push(signal.category.as_str());
        self.receipts.push(count as i64);
        self.starts_at.push(signal.starts_at);
        self.ends_at.push(signal.ends_at);
        self.seen.push(event.recorded_at);
        self.last_seen.push(event.recorded_at);
        self.version.push(event.stream_version);
        self.last_version.push(event.stream_version);
        self.resolved_at.push(None);
        self.resolved_by.push(None);
        Ok(())
    }

    /// The row of a cycle that began in this batch.
    fn row_of(&self, tenant: Uuid, alert: Uuid) -> Option<usize> {
        self.rows.get(&(tenant, alert)).copied()
    }
}

#[derive(Debug, Clone, Default)]
pub struct IncidentFilter {
    pub status: Option<String>,
    pub service_id: Option<Uuid>,
    pub client_id: Option<Uuid>,
    pub severity: Option<String>,
    pub category: Option<String>,
    pub opened_since: Option<DateTime<Utc>>,
    pub opened_until: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct IncidentRow {
    #[serde(flatten)]
    pub incident: Incident,
    pub client_id: Option<Uuid>,
    pub version: i64,
    /// Alerts that opened or joined it.
    pub alert_count: i64,
}

/// How many alerts had opened or joined the incident by `as_of` (now if `None`).
pub async fn alert_count(
    pool: &Pool,
    tenant: Uuid,
    incident: Uuid,
    as_of: Option<DateTime<Utc>>,
) -> Result<i64, StoreError> {
    let client = pool.get().await?;
    let row = client
        .query_one(
            "SELECT count(*) FROM proj_alerts \
             WHERE tenant_id = $1 AND incident_id = $2 \
               AND ($3::timestamptz IS NULL OR first_seen <= $3)",
            &[&tenant, &incident, &as_of],
        )
        .await?;
    Ok(row.get(0))
}

/// The alerts (firing cycles) that opened or joined the incident, with their
/// dedup keys: where the timeline finds their streams.
pub async fn alerts_of_incident(
    pool: &Pool,
    tenant: Uuid,
    incident: Uuid,
) -> Result<Vec<AttachedAlert>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT alert_id, dedup_key, first_version, last_version FROM proj_alerts \
             WHERE tenant_id = $1 AND incident_id = $2 ORDER BY first_seen",
            &[&tenant, &incident],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| AttachedAlert {
            alert_id: r.get(0),
            dedup_key: r.get(1),
            versions: match (r.get(2), r.get(3)) {
                (Some(first), Some(last)) => Some((first, last)),
                _ => None,
            },
        })
        .collect())
}

/// An alert attached to an incident, and where its events are.
#[derive(Debug, Clone)]
pub struct AttachedAlert {
    pub alert_id: Uuid,
    pub dedup_key: String,
    /// The first and last version of its events in its alert stream; `None`
    /// for a row written before the read model kept them (until a rebuild).
    pub versions: Option<(i64, i64)>,
}

/// Incidents, newest first (ids are UUIDv7), after the cursor `before`.
pub async fn list_incidents(
    pool: &Pool,
    tenant: Uuid,
    filter: &IncidentFilter,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<IncidentRow>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT i.state, s.client_id, i.version, \
               (SELECT count(*) FROM proj_alerts a \
                WHERE a.tenant_id = i.tenant_id AND a.incident_id = i.incident_id) \
             FROM proj_incidents i \
             LEFT JOIN proj_services s ON s.tenant_id = i.tenant_id AND s.service_id = i.service_id \
             WHERE i.tenant_id = $1 \
               AND ($2::text IS NULL OR i.status = $2) \
               AND ($3::uuid IS NULL OR i.service_id = $3) \
               AND ($4::uuid IS NULL OR s.client_id = $4) \
               AND ($5::text IS NULL OR i.severity = $5) \
               AND ($6::text IS NULL OR i.category = $6) \
               AND ($7::timestamptz IS NULL OR i.opened_at >= $7) \
               AND ($8::timestamptz IS NULL OR i.opened_at < $8) \
               AND ($9::uuid IS NULL OR i.incident_id < $9) \
             ORDER BY i.incident_id DESC LIMIT $10",
            &[
                &tenant,
                &filter.status,
                &filter.service_id,
                &filter.client_id,
                &filter.severity,
                &filter.category,
                &filter.opened_since,
                &filter.opened_until,
                &before,
                &limit,
            ],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(IncidentRow {
                incident: serde_json::from_value(r.get(0)).map_err(corrupt)?,
                client_id: r.get(1),
                version: r.get(2),
                alert_count: r.get(3),
            })
        })
        .collect()
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AlertRow {
    pub id: Uuid,
    pub dedup_key: String,
    pub group_key: String,
    pub source: String,
    pub service_id: Option<Uuid>,
    pub service_ref: Option<String>,
    pub summary: String,
    pub severity: String,
    pub category: String,
    pub labels: serde_json::Value,
    pub firing: bool,
    pub receipts: i64,
    pub starts_at: DateTime<Utc>,
    pub ends_at: Option<DateTime<Utc>>,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub resolved_by: Option<String>,
    pub incident_id: Option<Uuid>,
    pub decision: serde_json::Value,
}

#[derive(Debug, Clone, Default)]
pub struct AlertFilter {
    pub firing: Option<bool>,
    pub category: Option<String>,
    pub service_id: Option<Uuid>,
    pub source: Option<String>,
    pub group_key: Option<String>,
    pub alert_id: Option<Uuid>,
    pub incident_id: Option<Uuid>,
    /// Only alerts of services of this client (client users).
    pub client_id: Option<Uuid>,
}

pub async fn list_alerts(
    pool: &Pool,
    tenant: Uuid,
    filter: &AlertFilter,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<AlertRow>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT a.alert_id, a.dedup_key, a.group_key, a.source, a.service_id, a.service_ref, a.summary, \
               a.severity, a.category, a.labels, a.firing, a.receipts, a.starts_at, a.ends_at, a.first_seen, \
               a.last_seen, a.resolved_at, a.resolved_by, a.incident_id, a.decision \
             FROM proj_alerts a \
             LEFT JOIN proj_services s ON s.tenant_id = a.tenant_id AND s.service_id = a.service_id \
             WHERE a.tenant_id = $1 \
               AND ($2::bool IS NULL OR a.firing = $2) \
               AND ($3::text IS NULL OR a.category = $3) \
               AND ($4::uuid IS NULL OR a.service_id = $4) \
               AND ($5::text IS NULL OR a.source = $5) \
               AND ($6::text IS NULL OR a.group_key = $6) \
               AND ($7::uuid IS NULL OR a.alert_id = $7) \
               AND ($8::uuid IS NULL OR s.client_id = $8) \
               AND ($9::uuid IS NULL OR a.alert_id < $9) \
               AND ($11::uuid IS NULL OR a.incident_id = $11) \
             ORDER BY a.alert_id DESC LIMIT $10",
            &[
                &tenant,
                &filter.firing,
                &filter.category,
                &filter.service_id,
                &filter.source,
                &filter.group_key,
                &filter.alert_id,
                &filter.client_id,
                &before,
                &limit,
                &filter.incident_id,
            ],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| AlertRow {
            id: r.get(0),
            dedup_key: r.get(1),
            group_key: r.get(2),
            source: r.get(3),
            service_id: r.get(4),
            service_ref: r.get(5),
            summary: r.get(6),
            severity: r.get(7),
            category: r.get(8),
            labels: r.get(9),
            firing: r.get(10),
            receipts: r.get(11),
            starts_at: r.get(12),
            ends_at: r.get(13),
            first_seen: r.get(14),
            last_seen: r.get(15),
            resolved_at: r.get(16),
            resolved_by: r.get(17),
            incident_id: r.get(18),
            decision: r.get(19),
        })
        .collect())
}

/// A firing alert its source stopped refreshing.
#[derive(Debug, Clone)]
pub struct StaleAlert {
    pub tenant_id: Uuid,
    pub alert_id: Uuid,
    pub dedup_key: String,
}

/// Firing alerts, of every tenant, whose announced end has passed or that
/// were last seen before `seen_before`: oldest first, at most `limit`.
pub async fn stale_alerts(
    pool: &Pool,
    now: DateTime<Utc>,
    seen_before: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<StaleAlert>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT tenant_id, alert_id, dedup_key FROM proj_alerts \
             WHERE firing AND (ends_at < $1 OR last_seen < $2) ORDER BY last_seen LIMIT $3",
            &[&now, &seen_before, &limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| StaleAlert {
            tenant_id: r.get(0),
            alert_id: r.get(1),
            dedup_key: r.get(2),
        })
        .collect())
}

/// One open incident in a team's queue.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = IncidentQueueItem)]
pub struct QueueItem {
    /// Always `incident` (a queue also lists inquiries: `operations::InquiryQueueItem`).
    #[schema(schema_with = crate::read::kind_incident)]
    pub kind: &'static str,
    pub id: Uuid,
    pub incident_id: Uuid,
    pub title: String,
    pub service_id: Option<Uuid>,
    pub client_id: Option<Uuid>,
    pub severity: String,
    pub status: String,
    pub opened_at: DateTime<Utc>,
    pub age_seconds: i64,
    pub assignee: Option<String>,
    pub escalation_level: i32,
    pub next_escalation_at: Option<DateTime<Utc>>,
    /// Seconds left before the next escalation step (0 when due).
    pub escalates_in_seconds: Option<i64>,
}

/// The open incidents of a team (`operations` or `maintenance`), oldest first.
pub async fn queue(
    pool: &Pool,
    tenant: Uuid,
    team: &str,
    limit: i64,
) -> Result<Vec<QueueItem>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT i.incident_id, i.title, i.service_id, s.client_id, i.severity, i.status, i.opened_at, \
               floor(extract(epoch FROM now() - i.opened_at))::int8, i.assignee, i.escalation_level, \
               i.next_escalation_at, \
               CASE WHEN i.next_escalation_at IS NULL THEN NULL \
                 ELSE greatest(0, ceil(extract(epoch FROM i.next_escalation_at - now())))::int8 END \
             FROM proj_incidents i \
             LEFT JOIN proj_services s ON s.tenant_id = i.tenant_id AND s.service_id = i.service_id \
             WHERE i.tenant_id = $1 AND i.team = $2 \
               AND i.status IN ('triggered', 'acknowledged', 'mitigated') \
             ORDER BY i.opened_at, i.incident_id LIMIT $3",
            &[&tenant, &team, &limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| QueueItem {
            kind: "incident",
            id: r.get(0),
            incident_id: r.get(0),
            title: r.get(1),
            service_id: r.get(2),
            client_id: r.get(3),
            severity: r.get(4),
            status: r.get(5),
            opened_at: r.get(6),
            age_seconds: r.get(7),
            assignee: r.get(8),
            escalation_level: r.get(9),
            next_escalation_at: r.get(10),
            escalates_in_seconds: r.get(11),
        })
        .collect())
}

/// Whether any alert of an incident still fires, and when the last of its
/// alerts resolved. Read from the alerts read model, which the append that
/// recorded each resolution wrote, so it is never behind it.
pub async fn alerts_resolved(
    pool: &Pool,
    tenant: Uuid,
    incident: Uuid,
) -> Result<(bool, Option<DateTime<Utc>>), StoreError> {
    let client = pool.get().await?;
    let row = client
        .query_one(
            "SELECT coalesce(bool_or(firing), false), max(resolved_at) FROM proj_alerts \
             WHERE tenant_id = $1 AND incident_id = $2",
            &[&tenant, &incident],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
}

// ------------------------------------------------------------ escalation timers

/// An escalation step whose time has come (`escalation_timers`, kept by
/// the incidents projection).
#[derive(Debug, Clone, Copy)]
pub struct DueTimer {
    pub tenant_id: Uuid,
    pub incident_id: Uuid,
    pub level: u32,
    pub round: u32,
    pub due_at: DateTime<Utc>,
}

/// What became of a due timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerFired {
    /// Fired, or found no longer wanted: the timer row goes.
    Done,
    /// Lost a race with a command, or failed: tried again on the next pass.
    Later,
}

/// One pass over the due escalation timers, oldest first, at most `limit`:
/// `fire` is called for each, and those it settles are removed. Instances
/// may run it at once: each locks the timers it takes and skips those
/// another holds (the locks last until the pass commits). Returns how many
/// it settled.
pub async fn fire_due_timers<F, Fut>(
    pool: &Pool,
    limit: i64,
    mut fire: F,
) -> Result<usize, StoreError>
where
    F: FnMut(DueTimer) -> Fut,
    Fut: std::future::Future<Output = TimerFired>,
{
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let due = tx
        .query(
            "SELECT tenant_id, incident_id, level, round, due_at FROM escalation_timers \
             WHERE due_at <= now() ORDER BY due_at LIMIT $1 FOR UPDATE SKIP LOCKED",
            &[&limit],
        )
        .await?;
    let mut settled = 0;
    for row in &due {
        let (level, round): (i32, i32) = (row.get(2), row.get(3));
        let timer = DueTimer {
            tenant_id: row.get(0),
            incident_id: row.get(1),
            level: level as u32,
            round: round as u32,
            due_at: row.get(4),
        };
        if fire(timer).await == TimerFired::Done {
            tx.execute(
                "DELETE FROM escalation_timers WHERE tenant_id = $1 AND incident_id = $2 \
                   AND level = $3 AND round = $4",
                &[&timer.tenant_id, &timer.incident_id, &level, &round],
            )
            .await?;
            settled += 1;
        }
    }
    tx.commit().await?;
    Ok(settled)
}

/// The incidents that may have been open at `at` (opened by then, not
/// closed before it), oldest first: where a queue as it stood then starts;
/// folding each at `at` says which were open, and in whose queue.
pub async fn open_at(
    pool: &Pool,
    tenant: Uuid,
    at: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Uuid>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT incident_id FROM proj_incidents \
             WHERE tenant_id = $1 AND opened_at <= $2 AND (closed_at IS NULL OR closed_at > $2) \
             ORDER BY opened_at, incident_id LIMIT $3",
            &[&tenant, &at, &limit],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}
