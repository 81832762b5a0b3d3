//! Maintenance that keeps failures from coming back, and the work ledger
//! (SPEC §5 proposals and recurrence, §6 work ledger).
//!
//! - [`ProposalProjection`] keeps `proj_proposals`.
//! - [`WorkProjection`] keeps the work ledger (`proj_work`: one row per fact
//!   a person recorded), which services each stream concerns, and what fixed
//!   each incident (fix actions, and completed changes that name it in `fixes`).
//! - [`Recurrence`] follows incidents: when one opens for a service whose
//!   earlier incident was resolved by a fix, it records the recurrence on
//!   the new incident and lapses the verification of the proposals that fix
//!   was to make good.

use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use futures_util::future::BoxFuture;
use opsledger_domain::aggregate::Aggregate;
use opsledger_domain::change::{ChangeEvent, Relation};
use opsledger_domain::incident::{FixRef, IncidentEvent, RecurrenceMatch};
use opsledger_domain::proposal::{self, Proposal, ProposalEvent};
use opsledger_domain::{Metadata, NewEvent, RecordedEvent};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::append::write_batch;
use crate::projection::Projection;
use crate::read;
use crate::{AppendRequest, ExpectedVersion, Pool, StoreError, StreamAppend};

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

fn actor_of(event: &RecordedEvent) -> String {
    read::kept_metadata(event, "actor")
}

// ------------------------------------------------------------ proposals

#[derive(Debug, Default)]
pub struct ProposalProjection;

impl Projection for ProposalProjection {
    fn name(&self) -> &'static str {
        "proposals"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["proj_proposals"]
    }

    fn streams(&self) -> &'static [&'static str] {
        &["proposal-"]
    }

    fn apply<'a>(
        &'a self,
        tx: &'a Transaction<'a>,
        event: &'a RecordedEvent,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let Some(parsed) = ProposalEvent::from_stored(&event.event_type, &event.payload) else {
                return Ok(());
            };
            let before: Option<Proposal> = match &parsed {
                ProposalEvent::ProposalRaised { .. } => None,
                _ => {
                    let row = tx
                        .query_opt(
                            "SELECT state FROM proj_proposals WHERE tenant_id = $1 AND proposal_id = $2",
                            &[&event.tenant_id, &proposal_id(&event.stream_id)?],
                        )
                        .await?;
                    match row {
                        Some(r) => Some(
                            serde_json::from_value(r.get(0))
                                .map_err(|e| corrupt("proposal state", e))?,
                        ),
                        None => return Ok(()),
                    }
                }
            };
            let Some(p) = proposal::evolve(before, &parsed, event.occurred_at, &actor_of(event))
            else {
                return Ok(());
            };
            let state = serde_json::to_value(&p).map_err(|e| corrupt("proposal state", e))?;
            tx.execute(
                "INSERT INTO proj_proposals (tenant_id, proposal_id, status, incident_id, change_id, \
                   service_ids, raised_at, version, state) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (tenant_id, proposal_id) DO UPDATE SET status = EXCLUDED.status, \
                   change_id = EXCLUDED.change_id, version = EXCLUDED.version, state = EXCLUDED.state",
                &[
                    &event.tenant_id,
                    &p.id,
                    &p.status.as_str(),
                    &p.incident_id,
                    &p.change_id,
                    &p.service_ids,
                    &p.raised_at,
                    &event.stream_version,
                    &state,
                ],
            )
            .await?;
            Ok(())
        })
    }
}

fn proposal_id(stream: &str) -> Result<Uuid, StoreError> {
    id_of(stream, "proposal-")
}

fn id_of(stream: &str, prefix: &str) -> Result<Uuid, StoreError> {
    stream
        .strip_prefix(prefix)
        .and_then(|s| Uuid::parse_str(s).ok())
        .ok_or_else(|| corrupt("stream id", stream))
}

#[derive(Debug, Clone, Serialize)]
pub struct ProposalRow {
    #[serde(flatten)]
    pub proposal: Proposal,
    pub version: i64,
}

/// Proposals, newest first, filtered; `before` is the cursor (a proposal id).
pub async fn list_proposals(
    pool: &Pool,
    tenant: Uuid,
    status: Option<&str>,
    service: Option<Uuid>,
    incident: Option<Uuid>,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<ProposalRow>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT state, version FROM proj_proposals WHERE tenant_id = $1 \
               AND ($2::text IS NULL OR status = $2) \
               AND ($3::uuid IS NULL OR $3 = ANY(service_ids)) \
               AND ($4::uuid IS NULL OR incident_id = $4) \
               AND ($5::uuid IS NULL OR proposal_id < $5) \
             ORDER BY proposal_id DESC LIMIT $6",
            &[&tenant, &status, &service, &incident, &before, &limit],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(ProposalRow {
                proposal: serde_json::from_value(r.get(0))
                    .map_err(|e| corrupt("proposal state", e))?,
                version: r.get(1),
            })
        })
        .collect()
}

// ------------------------------------------------------------ the work ledger

/// The streams that hold people's work. Alerts, groups, notifications and the
/// directory are left out: monitoring and the service itself write most of
/// them, and following them would make every alert of a storm cost a write.
const WORK_STREAMS: &[&str] = &[
    "incident-",
    "change-",
    "window-",
    "freeze-",
    "proposal-",
    "inquiry-",
    "runbook-",
    "execution-",
    "task-",
    "backup-",
];

/// The team a role works in. Facts recorded by monitoring, clients or the
/// service itself (`system`) are nobody's work and are not in the ledger.
pub fn team_of_role(role: &str) -> Option<&'static str> {
    match role {
        "operator" => Some("operations"),
        "maintainer" => Some("maintenance"),
        "approver" => Some("approvers"),
        "admin" => Some("administration"),
        _ => None,
    }
}

/// The services a payload names: `service_id`, or `service_ids`.
fn services_named(payload: &Value) -> Vec<Uuid> {
    let mut out: Vec<Uuid> = payload["service_ids"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().and_then(|s| Uuid::parse_str(s).ok()))
                .collect()
        })
        .unwrap_or_default();
    if let Some(s) = payload["service_id"]
        .as_str()
        .and_then(|s| Uuid::parse_str(s).ok())
    {
        out.push(s);
    }
    out.sort();
    out.dedup();
    out
}

#[derive(Debug, Default)]
pub struct WorkProjection;

impl Projection for WorkProjection {
    fn name(&self) -> &'static str {
        "work"
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "proj_work",
            "proj_stream_services",
            "proj_fixes",
            "proj_change_links",
            "proj_changes_completed",
        ]
    }

    fn streams(&self) -> &'static [&'static str] {
        WORK_STREAMS
    }

    fn apply<'a>(
        &'a self,
        tx: &'a Transaction<'a>,
        event: &'a RecordedEvent,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let tenant = event.tenant_id;
            let named = services_named(&event.payload);
            let services: Vec<Uuid> = if named.is_empty() {
                tx.query_opt(
                    "SELECT service_ids FROM proj_stream_services WHERE tenant_id = $1 AND stream_id = $2",
                    &[&tenant, &event.stream_id],
                )
                .await?
                .map(|r| r.get(0))
                .unwrap_or_default()
            } else {
                let row = tx
                    .query_one(
                        "INSERT INTO proj_stream_services (tenant_id, stream_id, service_ids) VALUES ($1, $2, $3) \
                         ON CONFLICT (tenant_id, stream_id) DO UPDATE SET service_ids = \
                           ARRAY(SELECT DISTINCT unnest(proj_stream_services.service_ids || EXCLUDED.service_ids) ORDER BY 1) \
                         RETURNING service_ids",
                        &[&tenant, &event.stream_id, &named],
                    )
                    .await?;
                row.get(0)
            };
            self.track_fixes(tx, event).await?;
            let role = event.metadata["role"].as_str().unwrap_or("");
            let Some(team) = team_of_role(role) else {
                return Ok(());
            };
            let minutes = event.payload["minutes_spent"]
                .as_i64()
                .and_then(|m| i32::try_from(m).ok());
            tx.execute(
                "INSERT INTO proj_work (position, tenant_id, event_id, event_type, work_class, team, actor, \
                   stream_id, service_ids, occurred_at, minutes_spent) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (position) DO NOTHING",
                &[
                    &event.position,
                    &tenant,
                    &event.event_id,
                    &event.event_type,
                    &event.work_class.as_str(),
                    &team,
                    &actor_of(event),
                    &event.stream_id,
                    &services,
                    &event.occurred_at,
                    &minutes,
                ],
            )
            .await?;
            Ok(())
        })
    }
}

impl WorkProjection {
    /// Keeps what fixed each incident: its fix actions, and the changes that
    /// name it in `fixes` once they completed (in either order).
    async fn track_fixes(
        &self,
        tx: &Transaction<'_>,
        event: &RecordedEvent,
    ) -> Result<(), StoreError> {
        let tenant = event.tenant_id;
        match event.event_type.as_str() {
            "MaintenanceActionRecorded" if event.payload["kind"] == "fix" => {
                let incident = id_of(&event.stream_id, "incident-")?;
                let action = event.payload["action_id"]
                    .as_str()
                    .and_then(|s| Uuid::parse_str(s).ok())
                    .ok_or_else(|| corrupt("fix action", &event.payload))?;
                tx.execute(
                    "INSERT INTO proj_fixes (tenant_id, incident_id, kind, ref_id, fixed_at) \
                     VALUES ($1, $2, 'action', $3, $4) ON CONFLICT DO NOTHING",
                    &[&tenant, &incident, &action, &event.recorded_at],
                )
                .await?;
            }
            "ChangeRequested" | "ChangeLinked" => {
                let change = id_of(&event.stream_id, "change-")?;
                let links = match ChangeEvent::from_stored(&event.event_type, &event.payload) {
                    Some(ChangeEvent::ChangeRequested { links, .. }) => links,
                    Some(ChangeEvent::ChangeLinked { link, .. }) => vec![link],
                    _ => return Err(corrupt("change links", &event.payload)),
                };
                for link in links {
                    let relation = match link.relation {
                        Relation::Fixes => "fixes",
                        Relation::CausedBy => "caused_by",
                        Relation::Implements => continue,
                    };
                    let Some(incident) = link.incident_id else {
                        continue;
                    };
                    tx.execute(
                        "INSERT INTO proj_change_links (tenant_id, change_id, incident_id, relation) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                        &[&tenant, &change, &incident, &relation],
                    )
                    .await?;
                }
                self.fixes_of_completed(tx, tenant, change).await?;
            }
            "ChangeCompleted" => {
                let change = id_of(&event.stream_id, "change-")?;
                tx.execute(
                    "INSERT INTO proj_changes_completed (tenant_id, change_id, completed_at) \
                     VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                    &[&tenant, &change, &event.recorded_at],
                )
                .await?;
                self.fixes_of_completed(tx, tenant, change).await?;
            }
            _ => {}
        }
        Ok(())
    }

    async fn fixes_of_completed(
        &self,
        tx: &Transaction<'_>,
        tenant: Uuid,
        change: Uuid,
    ) -> Result<(), StoreError> {
        tx.execute(
            "INSERT INTO proj_fixes (tenant_id, incident_id, kind, ref_id, fixed_at) \
             SELECT l.tenant_id, l.incident_id, 'change', l.change_id, c.completed_at \
             FROM proj_change_links l JOIN proj_changes_completed c \
               ON c.tenant_id = l.tenant_id AND c.change_id = l.change_id \
             WHERE l.tenant_id = $1 AND l.change_id = $2 AND l.relation = 'fixes' \
             ON CONFLICT DO NOTHING",
            &[&tenant, &change],
        )
        .await?;
        Ok(())
    }
}

/// What the ledger is asked: a period, and optionally a class, team,
/// service or client (a client's services).
#[derive(Debug, Clone, Default)]
pub struct WorkQuery {
    pub class: Option<String>,
    pub team: Option<String>,
    pub service: Option<Uuid>,
    pub client: Option<Uuid>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WorkTotal {
    pub work_class: String,
    pub team: String,
    pub event_type: String,
    pub count: i64,
    /// Minutes spent where recorded (items without a figure add nothing).
    pub minutes_spent: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct WorkItem {
    pub position: i64,
    pub event_id: Uuid,
    #[serde(rename = "type")]
    pub event_type: String,
    pub work_class: String,
    pub team: String,
    pub actor: String,
    pub stream: String,
    pub service_ids: Vec<Uuid>,
    pub occurred_at: DateTime<Utc>,
    pub minutes_spent: Option<i32>,
}

const WORK_FILTER: &str = "w.tenant_id = $1 \
    AND ($2::text IS NULL OR w.work_class = $2) \
    AND ($3::text IS NULL OR w.team = $3) \
    AND ($4::uuid IS NULL OR $4 = ANY(w.service_ids)) \
    AND ($5::uuid IS NULL OR EXISTS (SELECT 1 FROM proj_services s \
          WHERE s.tenant_id = w.tenant_id AND s.client_id = $5 AND s.service_id = ANY(w.service_ids))) \
    AND ($6::timestamptz IS NULL OR w.occurred_at >= $6) \
    AND ($7::timestamptz IS NULL OR w.occurred_at < $7)";

/// Counts and minutes by class, team and type.
pub async fn work_totals(
    pool: &Pool,
    tenant: Uuid,
    q: &WorkQuery,
) -> Result<Vec<WorkTotal>, StoreError> {
    let client = pool.get().await?;
    let sql = format!(
        "SELECT w.work_class, w.team, w.event_type, count(*), coalesce(sum(w.minutes_spent), 0)::int8 \
         FROM proj_work w WHERE {WORK_FILTER} \
         GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
    );
    let rows = client
        .query(
            &sql,
            &[
                &tenant, &q.class, &q.team, &q.service, &q.client, &q.since, &q.until,
            ],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| WorkTotal {
            work_class: r.get(0),
            team: r.get(1),
            event_type: r.get(2),
            count: r.get(3),
            minutes_spent: r.get(4),
        })
        .collect())
}

/// The items behind the totals, oldest first; `after` is the cursor (a position).
pub async fn work_items(
    pool: &Pool,
    tenant: Uuid,
    q: &WorkQuery,
    after: Option<i64>,
    limit: i64,
) -> Result<Vec<WorkItem>, StoreError> {
    let client = pool.get().await?;
    let sql = format!(
        "SELECT w.position, w.event_id, w.event_type, w.work_class, w.team, w.actor, w.stream_id, \
           w.service_ids, w.occurred_at, w.minutes_spent \
         FROM proj_work w WHERE {WORK_FILTER} AND ($8::int8 IS NULL OR w.position > $8) \
         ORDER BY w.position LIMIT $9"
    );
    let rows = client
        .query(
            &sql,
            &[
                &tenant, &q.class, &q.team, &q.service, &q.client, &q.since, &q.until, &after,
                &limit,
            ],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| WorkItem {
            position: r.get(0),
            event_id: r.get(1),
            event_type: r.get(2),
            work_class: r.get(3),
            team: r.get(4),
            actor: r.get(5),
            stream: r.get(6),
            service_ids: r.get(7),
            occurred_at: r.get(8),
            minutes_spent: r.get(9),
        })
        .collect())
}

// ------------------------------------------------------------ recurrence

#[derive(Debug, Default)]
pub struct Recurrence;

impl Projection for Recurrence {
    fn name(&self) -> &'static str {
        "recurrence"
    }

    fn tables(&self) -> &'static [&'static str] {
        &[]
    }

    fn streams(&self) -> &'static [&'static str] {
        &["incident-"]
    }

    /// Earlier incidents' states, their fixes, and proposals.
    fn after(&self) -> &'static [&'static str] {
        &["incidents", "work", "proposals"]
    }

    fn appends(&self) -> bool {
        true
    }

    fn apply<'a>(
        &'a self,
        tx: &'a Transaction<'a>,
        event: &'a RecordedEvent,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let Some(IncidentEvent::IncidentOpened {
                incident_id,
                service_id: Some(service_id),
                ..
            }) = IncidentEvent::from_stored(&event.event_type, &event.payload)
            else {
                return Ok(());
            };
            let tenant = event.tenant_id;
            // Once per incident, also when the log is replayed (`rebuild`):
            // the recurrence and the lapses it causes commit together.
            let own = read::read_stream(tx, tenant, &event.stream_id, None).await?;
            if own.iter().any(|e| e.event_type == "RecurrenceDetected") {
                return Ok(());
            }
            let own_version = own.last().map_or(0, |e| e.stream_version);
            // The latest incident of the service that had been fixed and
            // resolved when this one opened, one that shares an alert
            // fingerprint with this one first. "When this one opened", not
            // "now": the detector may run late (or in a rebuild), when an
            // incident open at the time has been fixed since.
            let found = tx
                .query_opt(
                    "SELECT i.incident_id, f.kind, f.ref_id, \
                       EXISTS (SELECT 1 FROM proj_alerts a JOIN proj_alerts b \
                                 ON b.tenant_id = a.tenant_id AND b.dedup_key = a.dedup_key \
                               WHERE a.tenant_id = $1 AND a.incident_id = $2 \
                                 AND b.incident_id = i.incident_id) AS same_fingerprint \
                     FROM proj_incidents i JOIN proj_fixes f \
                       ON f.tenant_id = i.tenant_id AND f.incident_id = i.incident_id \
                     WHERE i.tenant_id = $1 AND i.service_id = $3 AND i.incident_id <> $2 \
                       AND i.status IN ('resolved', 'closed') AND i.resolved_at <= $4 AND f.fixed_at <= $4 \
                     ORDER BY same_fingerprint DESC, f.fixed_at DESC LIMIT 1",
                    &[&tenant, &incident_id, &service_id, &event.recorded_at],
                )
                .await?;
            let Some(row) = found else { return Ok(()) };
            let earlier: Uuid = row.get(0);
            let kind: &str = row.get(1);
            let ref_id: Uuid = row.get(2);
            let fix = match kind {
                "action" => FixRef::Action { action_id: ref_id },
                _ => FixRef::Change { change_id: ref_id },
            };
            let matched_by = if row.get::<_, bool>(3) {
                RecurrenceMatch::Fingerprint
            } else {
                RecurrenceMatch::Service
            };
            let meta = Metadata {
                actor: "system:recurrence".into(),
                role: "system".into(),
                request_id: None,
                correlation_id: None,
                causation_id: Some(event.event_id),
                source: "recurrence".into(),
            };
            let detected = IncidentEvent::RecurrenceDetected {
                earlier_incident_id: earlier,
                matched_by,
                fix: Some(fix),
            };
            let mut requests = vec![AppendRequest {
                tenant_id: tenant,
                streams: vec![StreamAppend {
                    stream_id: event.stream_id.clone(),
                    expected: ExpectedVersion::Exact(own_version),
                    events: vec![NewEvent::new(
                        detected.type_name(),
                        detected.payload(),
                        meta.clone(),
                        event.recorded_at,
                    )],
                }],
                idempotency: None,
            }];
            // The proposals that followed the earlier incident, or that its
            // fixing change implemented, were verified too soon.
            let change = match fix {
                FixRef::Change { change_id } => Some(change_id),
                FixRef::Action { .. } => None,
            };
            let proposals = tx
                .query(
                    "SELECT proposal_id FROM proj_proposals WHERE tenant_id = $1 AND status = 'verified' \
                       AND (incident_id = $2 OR ($3::uuid IS NOT NULL AND change_id = $3)) \
                     ORDER BY proposal_id",
                    &[&tenant, &earlier, &change],
                )
                .await?;
            for row in proposals {
                let id: Uuid = row.get(0);
                let stream = proposal::proposal_stream(id);
                let events = read::read_stream(tx, tenant, &stream, None).await?;
                let version = events.last().map_or(0, |e| e.stream_version);
                let folded = events.iter().fold(None, |p, e| {
                    match Proposal::parse(&e.event_type, &e.payload) {
                        Some(ev) => proposal::evolve(p, &ev, e.occurred_at, &actor_of(e)),
                        None => p,
                    }
                });
                let Some(p) = folded else { continue };
                let lapse = proposal::Command::Lapse {
                    incident_id,
                    earlier_incident_id: earlier,
                };
                let decided = proposal::decide(&p, lapse, &meta.actor)
                    .map_err(|e| corrupt("proposal lapse", e))?;
                if decided.is_empty() {
                    continue;
                }
                requests.push(AppendRequest {
                    tenant_id: tenant,
                    streams: vec![StreamAppend {
                        stream_id: stream,
                        expected: ExpectedVersion::Exact(version),
                        events: decided
                            .iter()
                            .map(|e| {
                                NewEvent::new(
                                    e.type_name(),
                                    e.payload(),
                                    meta.clone(),
                                    event.recorded_at,
                                )
                            })
                            .collect(),
                    }],
                    idempotency: None,
                });
            }
            // One request: the recurrence and its lapses commit together or
            // not at all. A conflict (a person wrote to the incident or a
            // proposal in between) fails the batch, which is tried again on
            // fresh reads.
            let request = AppendRequest {
                tenant_id: tenant,
                streams: requests.into_iter().flat_map(|r| r.streams).collect(),
                idempotency: None,
            };
            match write_batch(tx, &[&request]).await?.remove(0) {
                Ok(_) => Ok(()),
                Err(e) => Err(StoreError::Corrupt(format!(
                    "recurrence of incident {incident_id}: {e}; will retry"
                ))),
            }
        })
    }
}
