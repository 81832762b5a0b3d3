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
//!
//! Each looks at a whole batch in a few statements, whatever its size: an
//! incident storm opens hundreds of incidents a second.
//!
//! # Maintenance work, proposals, recurrence and the work ledger
//!
//! Every event type has one work class (`domain::catalogue`); what changes the
//! system is its own type. On an incident, `/actions` of kind inspection,
//! restart or runbook step append `ActionRecorded` (operations, any responder),
//! of kind recovery or fix `MaintenanceActionRecorded` (maintenance,
//! maintainers only); `/findings` appends `FindingRecorded` (maintenance). The
//! command decides its roles (`incident::Command::roles`).
//!
//! Proposals, like every record kept as a stream, implement
//! `domain::aggregate::Aggregate`, and `app::run` runs their commands:
//! `If-Match` (412 when stale), a 409 naming the current state, `Idempotency-Key`, `ETag`, and an
//! append with the version decided on. Proposals: raised → approved | rejected
//! (never by who raised it) → implemented (by a change whose stream has
//! `ChangeCompleted`) → verified.
//!
//! - **Recurrence.** A follower of incident streams (`store::work::Recurrence`,
//!   after the incidents, work and proposals read models) looks at each
//!   `IncidentOpened` of a service: the latest resolved incident of that service
//!   with a fix (a fix action, or a completed change naming it in `fixes`), one
//!   sharing an alert fingerprint first. It appends `RecurrenceDetected` to the
//!   new incident and `ProposalVerificationLapsed` to the verified proposals of
//!   the earlier incident or its change, in one request and in the transaction
//!   that moves its checkpoint; an incident that has a `RecurrenceDetected`
//!   already is skipped, so a `rebuild` replays nothing twice.
//! - **Work ledger.** `store::work::WorkProjection` follows the streams people
//!   work in (incidents, changes, windows, freezes, proposals, inquiries,
//!   runbooks, executions, tasks, backups — not alerts, groups or
//!   notifications, which monitoring and the service write by the thousand) and
//!   keeps a row per fact recorded by a person, in its event's class, with the
//!   team of the recorder's role, the services the stream concerns (payload
//!   `service_id`/`service_ids`, remembered per stream in
//!   `proj_stream_services`) and `minutes_spent` where the command recorded it.
//!   `GET /work` sums it by class, team and type and pages through the rows, so
//!   every figure drills down to its events. It also keeps what fixed each
//!   incident (`proj_fixes`), which recurrence asks.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Transaction};
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
use crate::projection::{self, array_literal, Projection};
use crate::read;
use crate::wake::Families;
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
        self.apply_batch(tx, std::slice::from_ref(event))
    }

    /// Folds the batch per proposal in memory: one read of the proposals it
    /// continues, one upsert. An event of a proposal with no row is passed
    /// over, as is one its fold refuses (the row stays as it was).
    fn apply_batch<'a>(
        &'a self,
        tx: &'a Transaction<'a>,
        events: &'a [RecordedEvent],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut parsed = Vec::new();
            let mut seen: HashSet<(Uuid, Uuid)> = HashSet::new();
            let mut continued: Vec<(Uuid, Uuid)> = Vec::new();
            for event in events {
                let Some(e) = ProposalEvent::from_stored(&event.event_type, &event.payload) else {
                    continue;
                };
                let key = (event.tenant_id, proposal_id(&event.stream_id)?);
                if seen.insert(key) && !matches!(e, ProposalEvent::ProposalRaised { .. }) {
                    continued.push(key);
                }
                parsed.push((key, e, event));
            }
            let mut rows: HashMap<(Uuid, Uuid), Folded<Proposal>> = HashMap::new();
            if !continued.is_empty() {
                let (tenants, ids): (Vec<Uuid>, Vec<Uuid>) = continued.iter().copied().unzip();
                for r in projection::query(
                    tx,
                    "SELECT p.tenant_id, p.proposal_id, p.state FROM proj_proposals p \
                         JOIN unnest($1::uuid[], $2::uuid[]) AS k(t, i) \
                           ON p.tenant_id = k.t AND p.proposal_id = k.i",
                    &[&tenants, &ids],
                )
                .await?
                {
                    let state: Proposal = serde_json::from_value(r.get(2))
                        .map_err(|e| corrupt("proposal state", e))?;
                    rows.insert((r.get(0), r.get(1)), Folded::stored(state));
                }
            }
            let mut order: Vec<(Uuid, Uuid)> = Vec::new();
            for (key, e, event) in parsed {
                let before = match &e {
                    ProposalEvent::ProposalRaised { .. } => None,
                    _ => match rows.get(&key) {
                        Some(row) => Some(row.state.clone()),
                        None => continue,
                    },
                };
                let Some(p) = proposal::evolve(before, &e, event.occurred_at, &actor_of(event))
                else {
                    continue;
                };
                match rows.get_mut(&key) {
                    Some(row) => row.write(p, event.stream_version),
                    None => {
                        rows.insert(key, Folded::new(p, event.stream_version));
                    }
                }
                if !order.contains(&key) {
                    order.push(key);
                }
            }
            let (mut t, mut id, mut status, mut incident, mut change) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
            let (mut services, mut raised, mut version, mut state) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for key in &order {
                let row = &rows[key];
                let (p, first) = (&row.state, row.first.as_ref().unwrap_or(&row.state));
                t.push(key.0);
                id.push(p.id);
                status.push(p.status.as_str());
                change.push(p.change_id);
                version.push(row.version);
                state.push(serde_json::to_value(p).map_err(|e| corrupt("proposal state", e))?);
                // Kept from the row's first write.
                incident.push(first.incident_id);
                services.push(array_literal(&first.service_ids));
                raised.push(first.raised_at);
            }
            if t.is_empty() {
                return Ok(());
            }
            projection::execute(tx,
                "INSERT INTO proj_proposals (tenant_id, proposal_id, status, incident_id, change_id, \
                   service_ids, raised_at, version, state) \
                 SELECT t, i, st, inc, ch, sv::uuid[], ra, v, s FROM unnest($1::uuid[], $2::uuid[], \
                   $3::text[], $4::uuid[], $5::uuid[], $6::text[], $7::timestamptz[], $8::int8[], \
                   $9::jsonb[]) AS u(t, i, st, inc, ch, sv, ra, v, s) \
                 ON CONFLICT (tenant_id, proposal_id) DO UPDATE SET status = EXCLUDED.status, \
                   change_id = EXCLUDED.change_id, version = EXCLUDED.version, state = EXCLUDED.state",
                &[
                    &t, &id, &status, &incident, &change, &services, &raised, &version, &state,
                ],
            )
            .await?;
            Ok(())
        })
    }
}

/// An aggregate's row as a batch folds it: its state now, the state of
/// its first write in the batch if the row is new (whose columns an
/// upsert's update leaves as they are), and the version written.
pub(crate) struct Folded<T> {
    pub state: T,
    /// `None` for a row that was stored before the batch.
    pub first: Option<T>,
    pub version: i64,
}

impl<T: Clone> Folded<T> {
    pub fn stored(state: T) -> Folded<T> {
        Folded {
            state,
            first: None,
            version: 0,
        }
    }

    pub fn new(state: T, version: i64) -> Folded<T> {
        Folded {
            first: Some(state.clone()),
            state,
            version,
        }
    }

    pub fn write(&mut self, state: T, version: i64) {
        self.state = state;
        self.version = version;
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
        self.apply_batch(tx, std::slice::from_ref(event))
    }

    /// The whole batch in one read (the services its streams concern so
    /// far) and six writes at most, whatever its size: an incident storm
    /// opens hundreds of incidents a second, each a stream of this ledger.
    fn apply_batch<'a>(
        &'a self,
        tx: &'a Transaction<'a>,
        events: &'a [RecordedEvent],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut streams: Vec<(Uuid, &str)> = Vec::new();
            let mut seen: HashSet<(Uuid, &str)> = HashSet::new();
            for event in events {
                if seen.insert((event.tenant_id, &event.stream_id)) {
                    streams.push((event.tenant_id, &event.stream_id));
                }
            }
            let mut known = stream_services(tx, &streams).await?;
            let mut named_streams: Vec<(Uuid, &str)> = Vec::new();
            let mut work = WorkRows::default();
            let mut fixes = Fixes::default();
            for event in events {
                let key = (event.tenant_id, event.stream_id.as_str());
                let named = services_named(&event.payload);
                if !named.is_empty() {
                    let services = known.entry(key).or_default();
                    services.extend(named);
                    services.sort();
                    services.dedup();
                    if !named_streams.contains(&key) {
                        named_streams.push(key);
                    }
                }
                fixes.track(event)?;
                let role = event.metadata["role"].as_str().unwrap_or("");
                let Some(team) = team_of_role(role) else {
                    continue;
                };
                let services = known.get(&key).map(Vec::as_slice).unwrap_or_default();
                work.push(event, team, services);
            }
            if !named_streams.is_empty() {
                let (tenants, ids): (Vec<Uuid>, Vec<&str>) = named_streams.iter().copied().unzip();
                let services: Vec<String> = named_streams
                    .iter()
                    .map(|k| array_literal(&known[k]))
                    .collect();
                projection::execute(tx,
                    "INSERT INTO proj_stream_services (tenant_id, stream_id, service_ids) \
                     SELECT t, s, sv::uuid[] FROM unnest($1::uuid[], $2::text[], $3::text[]) AS u(t, s, sv) \
                     ON CONFLICT (tenant_id, stream_id) DO UPDATE SET service_ids = EXCLUDED.service_ids",
                    &[&tenants, &ids, &services],
                )
                .await?;
            }
            fixes.write(tx).await?;
            work.write(tx).await
        })
    }
}

/// The services each of these streams concerns so far, as the ledger keeps
/// them (sorted).
async fn stream_services<'s>(
    tx: &Transaction<'_>,
    streams: &[(Uuid, &'s str)],
) -> Result<HashMap<(Uuid, &'s str), Vec<Uuid>>, StoreError> {
    let mut out = HashMap::new();
    if streams.is_empty() {
        return Ok(out);
    }
    let (tenants, ids): (Vec<Uuid>, Vec<&str>) = streams.iter().copied().unzip();
    let rows = projection::query(tx,
            "SELECT k.n, p.service_ids FROM unnest($1::uuid[], $2::text[]) WITH ORDINALITY AS k(t, s, n) \
             JOIN proj_stream_services p ON p.tenant_id = k.t AND p.stream_id = k.s",
            &[&tenants, &ids],
        )
        .await?;
    for r in rows {
        let n: i64 = r.get(0);
        out.insert(streams[n as usize - 1], r.get(1));
    }
    Ok(out)
}

/// Rows of the ledger, one vector per column (for `unnest`).
#[derive(Default)]
struct WorkRows {
    position: Vec<i64>,
    tenant: Vec<Uuid>,
    event_id: Vec<Uuid>,
    event_type: Vec<String>,
    class: Vec<&'static str>,
    team: Vec<&'static str>,
    actor: Vec<String>,
    stream: Vec<String>,
    services: Vec<String>,
    occurred_at: Vec<DateTime<Utc>>,
    minutes: Vec<Option<i32>>,
}

impl WorkRows {
    fn push(&mut self, event: &RecordedEvent, team: &'static str, services: &[Uuid]) {
        self.position.push(event.position);
        self.tenant.push(event.tenant_id);
        self.event_id.push(event.event_id);
        self.event_type.push(event.event_type.clone());
        self.class.push(event.work_class.as_str());
        self.team.push(team);
        self.actor.push(actor_of(event));
        self.stream.push(event.stream_id.clone());
        self.services.push(array_literal(services));
        self.occurred_at.push(event.occurred_at);
        self.minutes.push(
            event.payload["minutes_spent"]
                .as_i64()
                .and_then(|m| i32::try_from(m).ok()),
        );
    }

    async fn write(&self, tx: &Transaction<'_>) -> Result<(), StoreError> {
        if self.position.is_empty() {
            return Ok(());
        }
        projection::execute(tx,
            "INSERT INTO proj_work (position, tenant_id, event_id, event_type, work_class, team, actor, \
               stream_id, service_ids, occurred_at, minutes_spent) \
             SELECT p, t, e, ty, wc, tm, a, s, sv::uuid[], oa, m FROM unnest($1::int8[], $2::uuid[], \
               $3::uuid[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], \
               $10::timestamptz[], $11::int4[]) AS u(p, t, e, ty, wc, tm, a, s, sv, oa, m) \
             ON CONFLICT (position) DO NOTHING",
            &[
                &self.position,
                &self.tenant,
                &self.event_id,
                &self.event_type,
                &self.class,
                &self.team,
                &self.actor,
                &self.stream,
                &self.services,
                &self.occurred_at,
                &self.minutes,
            ],
        )
        .await?;
        Ok(())
    }
}

/// What fixed each incident, as a batch finds it: fix actions, changes'
/// links to incidents, and completed changes. Each table gets one insert;
/// then the fixes of every change the batch linked or completed are
/// derived at once (rows are only ever added, so the order of the events
/// within the batch does not change the result).
#[derive(Default)]
struct Fixes {
    /// (tenant, incident, action, recorded at)
    actions: Vec<(Uuid, Uuid, Uuid, DateTime<Utc>)>,
    /// (tenant, change, incident, relation)
    links: Vec<(Uuid, Uuid, Uuid, &'static str)>,
    /// (tenant, change, completed at)
    completed: Vec<(Uuid, Uuid, DateTime<Utc>)>,
    changes: Vec<(Uuid, Uuid)>,
}

impl Fixes {
    /// Keeps what fixed each incident: its fix actions, and the changes that
    /// name it in `fixes` once they completed (in either order).
    fn track(&mut self, event: &RecordedEvent) -> Result<(), StoreError> {
        let tenant = event.tenant_id;
        match event.event_type.as_str() {
            "MaintenanceActionRecorded" if event.payload["kind"] == "fix" => {
                let incident = id_of(&event.stream_id, "incident-")?;
                let action = event.payload["action_id"]
                    .as_str()
                    .and_then(|s| Uuid::parse_str(s).ok())
                    .ok_or_else(|| corrupt("fix action", &event.payload))?;
                self.actions
                    .push((tenant, incident, action, event.recorded_at));
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
                    self.links.push((tenant, change, incident, relation));
                }
                self.changes.push((tenant, change));
            }
            "ChangeCompleted" => {
                let change = id_of(&event.stream_id, "change-")?;
                self.completed.push((tenant, change, event.recorded_at));
                self.changes.push((tenant, change));
            }
            _ => {}
        }
        Ok(())
    }

    async fn write(&self, tx: &Transaction<'_>) -> Result<(), StoreError> {
        // ON CONFLICT DO NOTHING keeps the first of a key, within a
        // statement as across them: the order of the batch's events.
        if !self.actions.is_empty() {
            let t: Vec<Uuid> = self.actions.iter().map(|a| a.0).collect();
            let i: Vec<Uuid> = self.actions.iter().map(|a| a.1).collect();
            let r: Vec<Uuid> = self.actions.iter().map(|a| a.2).collect();
            let at: Vec<DateTime<Utc>> = self.actions.iter().map(|a| a.3).collect();
            projection::execute(
                tx,
                "INSERT INTO proj_fixes (tenant_id, incident_id, kind, ref_id, fixed_at) \
                 SELECT t, i, 'action', r, at FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], \
                   $4::timestamptz[]) WITH ORDINALITY AS u(t, i, r, at, n) ORDER BY n \
                 ON CONFLICT DO NOTHING",
                &[&t, &i, &r, &at],
            )
            .await?;
        }
        if !self.links.is_empty() {
            let t: Vec<Uuid> = self.links.iter().map(|l| l.0).collect();
            let c: Vec<Uuid> = self.links.iter().map(|l| l.1).collect();
            let i: Vec<Uuid> = self.links.iter().map(|l| l.2).collect();
            let rel: Vec<&str> = self.links.iter().map(|l| l.3).collect();
            projection::execute(
                tx,
                "INSERT INTO proj_change_links (tenant_id, change_id, incident_id, relation) \
                 SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[]) \
                 ON CONFLICT DO NOTHING",
                &[&t, &c, &i, &rel],
            )
            .await?;
        }
        if !self.completed.is_empty() {
            let t: Vec<Uuid> = self.completed.iter().map(|c| c.0).collect();
            let c: Vec<Uuid> = self.completed.iter().map(|c| c.1).collect();
            let at: Vec<DateTime<Utc>> = self.completed.iter().map(|c| c.2).collect();
            projection::execute(
                tx,
                "INSERT INTO proj_changes_completed (tenant_id, change_id, completed_at) \
                 SELECT t, c, at FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[]) \
                   WITH ORDINALITY AS u(t, c, at, n) ORDER BY n \
                 ON CONFLICT DO NOTHING",
                &[&t, &c, &at],
            )
            .await?;
        }
        if !self.changes.is_empty() {
            let (t, c): (Vec<Uuid>, Vec<Uuid>) = self.changes.iter().copied().unzip();
            projection::execute(
                tx,
                "INSERT INTO proj_fixes (tenant_id, incident_id, kind, ref_id, fixed_at) \
                 SELECT DISTINCT l.tenant_id, l.incident_id, 'change', l.change_id, c.completed_at \
                 FROM unnest($1::uuid[], $2::uuid[]) AS k(t, ch) \
                 JOIN proj_change_links l ON l.tenant_id = k.t AND l.change_id = k.ch \
                 JOIN proj_changes_completed c \
                   ON c.tenant_id = l.tenant_id AND c.change_id = l.change_id \
                 WHERE l.relation = 'fixes' \
                 ON CONFLICT DO NOTHING",
                &[&t, &c],
            )
            .await?;
        }
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

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct WorkTotal {
    pub work_class: String,
    pub team: String,
    pub event_type: String,
    pub count: i64,
    /// Minutes spent where recorded (items without a figure add nothing).
    pub minutes_spent: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
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

/// The work ledger's totals (counts and minutes by class, team and type)
/// and a page of the items behind them, read in one snapshot: a projection
/// batch committing between the two reads must not leave the totals
/// without an item the page lists.
pub async fn work_ledger(
    pool: &Pool,
    tenant: Uuid,
    q: &WorkQuery,
    after: Option<i64>,
    limit: i64,
) -> Result<(Vec<WorkTotal>, Vec<WorkItem>), StoreError> {
    let mut client = pool.get().await?;
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let totals = work_totals(&tx, tenant, q).await?;
    let items = work_items(&tx, tenant, q, after, limit).await?;
    tx.commit().await?;
    Ok((totals, items))
}

/// Counts and minutes by class, team and type.
async fn work_totals(
    client: &impl GenericClient,
    tenant: Uuid,
    q: &WorkQuery,
) -> Result<Vec<WorkTotal>, StoreError> {
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
async fn work_items(
    client: &impl GenericClient,
    tenant: Uuid,
    q: &WorkQuery,
    after: Option<i64>,
    limit: i64,
) -> Result<Vec<WorkItem>, StoreError> {
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

    /// An incident's opening is when it may recur.
    fn applies(&self) -> &'static [&'static str] {
        &["IncidentOpened"]
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
        self.apply_batch(tx, std::slice::from_ref(event))
    }

    /// Looks at every incident the batch opens in two reads (their streams'
    /// versions and whether a recurrence is recorded there already; the
    /// earlier fixed incident of each, if any) and appends every recurrence
    /// found and the lapses it causes in one write: an incident storm opens
    /// hundreds of incidents a second, and one write also takes the strands'
    /// locks once, in order, as the committer does.
    fn apply_batch<'a>(
        &'a self,
        tx: &'a Transaction<'a>,
        events: &'a [RecordedEvent],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let opened: Vec<Opened<'_>> = events
                .iter()
                .filter_map(|event| {
                    match IncidentEvent::from_stored(&event.event_type, &event.payload) {
                        Some(IncidentEvent::IncidentOpened {
                            incident_id,
                            service_id: Some(service_id),
                            ..
                        }) => Some(Opened {
                            event,
                            incident_id,
                            service_id,
                        }),
                        _ => None,
                    }
                })
                .collect();
            if opened.is_empty() {
                return Ok(());
            }
            // Once per incident, also when the log is replayed (`rebuild`):
            // the recurrence and the lapses it causes commit together.
            let own = own_streams(tx, &opened).await?;
            let pending: Vec<(&Opened<'_>, i64)> = opened
                .iter()
                .zip(own)
                .filter(|(_, (_, detected))| !detected)
                .map(|(o, (version, _))| (o, version))
                .collect();
            let found = earlier_fixed(tx, &pending).await?;
            let mut requests = Vec::new();
            // Lapses decided for earlier incidents of this batch, by
            // proposal stream: a later one folds them too, as it would
            // have read them had they been written one by one.
            let mut lapsed: Lapsed = HashMap::new();
            let mut incidents = Vec::new();
            for ((o, own_version), earlier) in pending.iter().zip(found) {
                let Some(earlier) = earlier else { continue };
                requests.push(recurrence(tx, o, *own_version, earlier, &mut lapsed).await?);
                incidents.push(o.incident_id);
            }
            if requests.is_empty() {
                return Ok(());
            }
            let refs: Vec<&AppendRequest> = requests.iter().collect();
            // A conflict (a person wrote to the incident or a proposal in
            // between) fails the batch, which is tried again on fresh reads.
            for (incident_id, outcome) in incidents.iter().zip(write_batch(tx, &refs).await?) {
                if let Err(e) = outcome {
                    return Err(StoreError::Corrupt(format!(
                        "recurrence of incident {incident_id}: {e}; will retry"
                    )));
                }
            }
            let written = requests
                .iter()
                .flat_map(|r| r.streams.iter())
                .map(|s| Families::of_stream(&s.stream_id))
                .fold(Families::NONE, Families::union);
            projection::appended(written);
            Ok(())
        })
    }
}

/// Lapses a batch decided, by proposal stream, with the instant each was
/// decided at (its `occurred_at`).
type Lapsed = HashMap<String, Vec<(ProposalEvent, DateTime<Utc>)>>;

/// An incident a batch opens, of a service.
struct Opened<'e> {
    event: &'e RecordedEvent,
    incident_id: Uuid,
    service_id: Uuid,
}

/// For each opened incident, in order: its stream's version and whether a
/// recurrence is recorded on it.
async fn own_streams(
    tx: &Transaction<'_>,
    opened: &[Opened<'_>],
) -> Result<Vec<(i64, bool)>, StoreError> {
    let tenants: Vec<Uuid> = opened.iter().map(|o| o.event.tenant_id).collect();
    let streams: Vec<&str> = opened.iter().map(|o| o.event.stream_id.as_str()).collect();
    let rows = projection::query(
        tx,
        "SELECT coalesce(max(e.stream_version), 0), \
               coalesce(bool_or(e.event_type = 'RecurrenceDetected'), false) \
             FROM unnest($1::uuid[], $2::text[]) WITH ORDINALITY AS k(t, s, n) \
             LEFT JOIN events e ON e.tenant_id = k.t AND e.stream_id = k.s \
             GROUP BY k.n ORDER BY k.n",
        &[&tenants, &streams],
    )
    .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// The earlier incident a recurrence names, and the fix it names.
struct Earlier {
    incident_id: Uuid,
    fix: FixRef,
    matched_by: RecurrenceMatch,
}

/// For each incident, in order: the latest incident of its service that had
/// been fixed and resolved when it opened, one that shares an alert
/// fingerprint with it first (and among equals the latest fix). "When it
/// opened", not "now": the detector may run late (or in a rebuild), when an
/// incident open at the time has been fixed since.
///
/// Two reads for the whole batch, driven by the fixes (few: people record
/// them) rather than by the services' incidents (a storm's thousands): the
/// fixed and resolved incidents of the batch's services, then which of
/// them share a fingerprint with the incident that may recur.
async fn earlier_fixed(
    tx: &Transaction<'_>,
    pending: &[(&Opened<'_>, i64)],
) -> Result<Vec<Option<Earlier>>, StoreError> {
    let mut out: Vec<Option<Earlier>> = pending.iter().map(|_| None).collect();
    let services: HashSet<(Uuid, Uuid)> = pending
        .iter()
        .map(|(o, _)| (o.event.tenant_id, o.service_id))
        .collect();
    if services.is_empty() {
        return Ok(out);
    }
    let (tenants, ids): (Vec<Uuid>, Vec<Uuid>) = services.into_iter().unzip();
    let rows = projection::query(
        tx,
        "WITH fixes AS MATERIALIZED ( \
               SELECT f.tenant_id, f.incident_id, f.kind, f.ref_id, f.fixed_at FROM proj_fixes f \
               WHERE f.tenant_id = ANY($1::uuid[])) \
             SELECT i.tenant_id, i.service_id, i.incident_id, i.resolved_at, f.kind, f.ref_id, \
               f.fixed_at \
             FROM fixes f JOIN proj_incidents i \
               ON i.tenant_id = f.tenant_id AND i.incident_id = f.incident_id \
             JOIN unnest($1::uuid[], $2::uuid[]) AS k(t, s) \
               ON i.tenant_id = k.t AND i.service_id = k.s \
             WHERE i.status IN ('resolved', 'closed')",
        &[&tenants, &ids],
    )
    .await?;
    let fixed: Vec<FixedIncident> = rows
        .iter()
        .map(|r| {
            let kind: &str = r.get(4);
            let ref_id: Uuid = r.get(5);
            FixedIncident {
                tenant_id: r.get(0),
                service_id: r.get(1),
                incident_id: r.get(2),
                resolved_at: r.get(3),
                fix: match kind {
                    "action" => FixRef::Action { action_id: ref_id },
                    _ => FixRef::Change { change_id: ref_id },
                },
                fixed_at: r.get(6),
            }
        })
        .collect();
    if fixed.is_empty() {
        return Ok(out);
    }
    // Per incident that may recur: the fixes that count for it.
    let candidates: Vec<Vec<&FixedIncident>> = pending
        .iter()
        .map(|(o, _)| {
            let at = o.event.recorded_at;
            fixed
                .iter()
                .filter(|f| {
                    f.tenant_id == o.event.tenant_id
                        && f.service_id == Some(o.service_id)
                        && f.incident_id != o.incident_id
                        && f.resolved_at.is_some_and(|r| r <= at)
                        && f.fixed_at <= at
                })
                .collect()
        })
        .collect();
    let mut pairs: Vec<(Uuid, Uuid, Uuid)> = Vec::new();
    for ((o, _), found) in pending.iter().zip(&candidates) {
        for f in found {
            let pair = (o.event.tenant_id, o.incident_id, f.incident_id);
            if !pairs.contains(&pair) {
                pairs.push(pair);
            }
        }
    }
    let mut shared: HashSet<(Uuid, Uuid, Uuid)> = HashSet::new();
    if !pairs.is_empty() {
        let t: Vec<Uuid> = pairs.iter().map(|p| p.0).collect();
        let a: Vec<Uuid> = pairs.iter().map(|p| p.1).collect();
        let b: Vec<Uuid> = pairs.iter().map(|p| p.2).collect();
        for r in projection::query(
            tx,
            "SELECT k.n FROM unnest($1::uuid[], $2::uuid[], $3::uuid[]) \
                   WITH ORDINALITY AS k(t, a, b, n) \
                 WHERE EXISTS (SELECT 1 FROM proj_alerts x JOIN proj_alerts y \
                                 ON y.tenant_id = x.tenant_id AND y.dedup_key = x.dedup_key \
                               WHERE x.tenant_id = k.t AND x.incident_id = k.a \
                                 AND y.incident_id = k.b)",
            &[&t, &a, &b],
        )
        .await?
        {
            let n: i64 = r.get(0);
            shared.insert(pairs[n as usize - 1]);
        }
    }
    for (i, ((o, _), found)) in pending.iter().zip(candidates).enumerate() {
        let same =
            |f: &FixedIncident| shared.contains(&(o.event.tenant_id, o.incident_id, f.incident_id));
        // A fingerprint shared first, then the latest fix; equal ones by id,
        // so that a replay chooses as the first pass did.
        let best = found.into_iter().max_by(|x, y| {
            (same(x), x.fixed_at, x.incident_id, x.fix.ref_id()).cmp(&(
                same(y),
                y.fixed_at,
                y.incident_id,
                y.fix.ref_id(),
            ))
        });
        out[i] = best.map(|f| Earlier {
            incident_id: f.incident_id,
            fix: f.fix,
            matched_by: if same(f) {
                RecurrenceMatch::Fingerprint
            } else {
                RecurrenceMatch::Service
            },
        });
    }
    Ok(out)
}

/// A fixed and resolved incident, with one of its fixes.
struct FixedIncident {
    tenant_id: Uuid,
    service_id: Option<Uuid>,
    incident_id: Uuid,
    resolved_at: Option<DateTime<Utc>>,
    fix: FixRef,
    fixed_at: DateTime<Utc>,
}

trait FixId {
    fn ref_id(&self) -> Uuid;
}

impl FixId for FixRef {
    fn ref_id(&self) -> Uuid {
        match self {
            FixRef::Action { action_id } => *action_id,
            FixRef::Change { change_id } => *change_id,
        }
    }
}

/// The request that records `o`'s recurrence of `earlier` and lapses the
/// verified proposals of the earlier incident or its fixing change: one
/// request, so they commit together or not at all.
async fn recurrence(
    tx: &Transaction<'_>,
    o: &Opened<'_>,
    own_version: i64,
    earlier: Earlier,
    lapsed: &mut Lapsed,
) -> Result<AppendRequest, StoreError> {
    let (event, tenant, incident_id) = (o.event, o.event.tenant_id, o.incident_id);
    let meta = Metadata {
        actor: "system:recurrence".into(),
        role: "system".into(),
        request_id: None,
        correlation_id: None,
        causation_id: Some(event.event_id),
        source: "recurrence".into(),
    };
    let detected = IncidentEvent::RecurrenceDetected {
        earlier_incident_id: earlier.incident_id,
        matched_by: earlier.matched_by,
        fix: Some(earlier.fix),
    };
    let mut streams = vec![StreamAppend {
        stream_id: event.stream_id.clone(),
        expected: ExpectedVersion::Exact(own_version),
        events: vec![NewEvent::new(
            detected.type_name(),
            detected.payload(),
            meta.clone(),
            event.recorded_at,
        )],
    }];
    // The proposals that followed the earlier incident, or that its
    // fixing change implemented, were verified too soon.
    let change = match earlier.fix {
        FixRef::Change { change_id } => Some(change_id),
        FixRef::Action { .. } => None,
    };
    let proposals = projection::query(
        tx,
        "SELECT proposal_id FROM proj_proposals WHERE tenant_id = $1 AND status = 'verified' \
               AND (incident_id = $2 OR ($3::uuid IS NOT NULL AND change_id = $3)) \
             ORDER BY proposal_id",
        &[&tenant, &earlier.incident_id, &change],
    )
    .await?;
    for row in proposals {
        let id: Uuid = row.get(0);
        let stream = proposal::proposal_stream(id);
        let events = read::read_stream(tx, tenant, &stream, None).await?;
        let earlier_lapses = lapsed.entry(stream.clone()).or_default();
        let version = events.last().map_or(0, |e| e.stream_version) + earlier_lapses.len() as i64;
        let folded = events.iter().fold(None, |p, e| {
            match Proposal::parse(&e.event_type, &e.payload) {
                Some(ev) => proposal::evolve(p, &ev, e.occurred_at, &actor_of(e)),
                None => p,
            }
        });
        let folded = earlier_lapses.iter().fold(folded, |p, (ev, at)| {
            proposal::evolve(p, ev, *at, &meta.actor)
        });
        let Some(p) = folded else { continue };
        let lapse = proposal::Command::Lapse {
            incident_id,
            earlier_incident_id: earlier.incident_id,
        };
        let decided =
            proposal::decide(&p, lapse, &meta.actor).map_err(|e| corrupt("proposal lapse", e))?;
        if decided.is_empty() {
            continue;
        }
        streams.push(StreamAppend {
            stream_id: stream,
            expected: ExpectedVersion::Exact(version),
            events: decided
                .iter()
                .map(|e| NewEvent::new(e.type_name(), e.payload(), meta.clone(), event.recorded_at))
                .collect(),
        });
        earlier_lapses.extend(decided.into_iter().map(|e| (e, event.recorded_at)));
    }
    Ok(AppendRequest {
        tenant_id: tenant,
        streams,
        idempotency: None,
    })
}
