//! Ingestion: from a parsed signal to recorded facts (SPEC §5). Every signal
//! received leaves an event saying what became of it.
//!
//! Decisions read the alert's stream and the group's stream, decide in the
//! domain, and append with expected versions in one transaction; a conflict
//! means another receipt got there first, so the signal is decided again on
//! state read afresh.
//!
//! The first attempt decides on what this process last knew of the two
//! streams ([`IngestCache`]) instead of reading them: an alert storm of new
//! dedup keys then costs one batched append per alert and no reads. The cache
//! is only ever a guess — the expected versions make a stale guess a
//! conflict, never a wrong fact.
//!
//! # Alerts and incidents
//!
//! Streams: `alert-<digest of dedup key>` (every receipt of one dedup key, over
//! its firing cycles), `group-<digest of service and group key>` (which incident
//! the group's alerts attach to while it is open), `incident-<id>`. Receiving a
//! signal is one append over these streams with expected versions, decided
//! in the domain: `alert::decide_receipt` says what became of it (open an
//! incident, attach to the group's incident, count a repeat, hold it for an
//! unknown service (kept and listed), or record a resolution), and
//! `incident::receipt_outcome` what that records on every stream it touches.
//! Receipts have this runner of their own rather than `run::run`: it decides
//! first on what the process last knew of the streams (below), which P1's
//! throughput rests on, and alert streams are named by a digest of the dedup
//! key, not by an id. The receipt is itself the record of an alert opening
//! or joining an incident (its decision names the incident); the incident's
//! stream holds only the incident's own facts, so a storm writes one event per
//! alert to the alert's own stream, and responders' `If-Match` versions do not
//! move as alerts arrive. Attaching asserts the group's version without writing
//! to it, so alerts attaching to one incident never conflict or queue, while a
//! concurrent resolve — which releases the group — makes them decide again. An
//! incident's alert count and the alerts on its timeline come from
//! `proj_alerts`. Ingestion decides first on what
//! this process last knew of the two streams (`IngestCache`); expected versions
//! turn a stale guess into a retry on fresh reads, never into a wrong fact.
//! A firing alert of a service inside a maintenance window in force
//! (announced or started, the instant inside an occurrence) is recorded with
//! decision `suppressed_by_window` and opens no incident: `suppressing_window`
//! reads the service's windows from `proj_windows` and keeps them for a second
//! (`WINDOWS_FRESH_FOR`), so a storm asks once a second, not once per alert, and
//! a window takes effect for ingestion within a second of its read model. An
//! incident opened by hand whose impact began inside such a window names it
//! (`planned_window` on `IncidentOpened`): its downtime is planned.
//!
//! A firing alert of a service one of whose ancestors (`domain::dependency`:
//! its parents, theirs, …) has a probe down is recorded with decision
//! `suppressed_by_parent`, naming that ancestor and its probe, and opens no
//! incident: `down_parent` walks the ancestors in `proj_service_dependencies`
//! and `proj_probes` and keeps the answer for a second (`PARENTS_FRESH_FOR`),
//! as windows are kept. A window in force for the service itself comes
//! first. A repeat of a cycle so held is decided afresh once no ancestor is
//! down (so it opens or joins an incident then); the parent's recovery does
//! not by itself re-decide alerts that are not sent again.
//!
//! Alerts a source will never resolve are closed as expired: an Alertmanager or
//! Grafana notification that no longer carries a firing alert of its group (and
//! was not truncated) expires it at once; the expiry worker closes alerts whose
//! `ends_at` passed or that were not refreshed within `OPSLEDGER_ALERT_STALE_S`.
//!
//! Incident commands (`/acknowledge`, `/notes`, …) fold the stream, check
//! `If-Match` (a stale one is 412), decide, and append with the version they
//! were decided on; an invalid transition is a 409 naming the current state. Reads by id fold the
//! stream (`?as_of=` folds up to an instant); lists come from `proj_incidents` and
//! `proj_alerts`; the timeline merges the incident's stream with its alerts'
//! receipts, without internal notes for clients. An alert stream holds every
//! firing cycle of its fingerprint (a year of them), so `proj_alerts` keeps the
//! versions each cycle spans (V15) and the timeline reads just those.

use std::collections::HashSet;

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use opsledger_domain::alert::{
    self, AlertEvent, AlertState, Decision, DownParent, GroupEvent, ResolvedBy, Signal,
};
use opsledger_domain::directory::{self as dir, DirectoryEvent};
use opsledger_domain::incident::{self};
use opsledger_domain::text::Name;
use opsledger_domain::window::Window;
use opsledger_domain::{Metadata, NewEvent, RecordedEvent};
use opsledger_store::{AppendError, AppendRequest, ExpectedVersion, StreamAppend};
use serde::Serialize;
use uuid::Uuid;

use crate::run::{Asked, RunError};
use crate::Ledger;

/// Attempts at deciding one signal when concurrent receipts keep winning.
const INGEST_ATTEMPTS_MAX: usize = 8;
/// Streams remembered per map before it is emptied and refilled: bounds memory
/// at tens of megabytes whatever the alert volume.
const CACHE_ENTRIES_MAX: usize = 100_000;

/// How long ingestion keeps a service's windows before reading them again.
const WINDOWS_FRESH_FOR: Duration = Duration::from_secs(1);

/// How long ingestion keeps what it found of a service's ancestors' probes.
const PARENTS_FRESH_FOR: Duration = Duration::from_secs(1);

/// Per (tenant, service): when its ancestors were read, and which was down.
type KnownParents =
    std::sync::Mutex<std::collections::HashMap<(Uuid, Uuid), (Instant, Option<DownParent>)>>;

/// Per (tenant, service): when its windows were read, and what they were.
type KnownWindows =
    std::sync::Mutex<std::collections::HashMap<(Uuid, Uuid), (Instant, Vec<Window>)>>;

/// A stream as ingestion last saw it: its version and what it says.
type Known<T> = std::sync::Mutex<std::collections::HashMap<(Uuid, String), (i64, T)>>;

/// The store and what this process last knew of it: what every ingestion
/// function works with.
#[derive(Clone, Copy)]
pub struct Ingest<'a> {
    pub ledger: Ledger<'a>,
    pub cache: &'a IngestCache,
}

/// A stream's events, as stored.
async fn stream_events(
    ing: Ingest<'_>,
    tenant: Uuid,
    stream: &str,
) -> Result<Vec<RecordedEvent>, RunError> {
    let client = ing
        .ledger
        .pool
        .get()
        .await
        .map_err(opsledger_store::StoreError::from)?;
    Ok(opsledger_store::read::read_stream(&client, tenant, stream, None).await?)
}

#[derive(Debug, Default)]
pub struct IngestCache {
    alerts: Known<AlertState>,
    groups: Known<Option<Uuid>>,
    /// Service names never change meaning once reserved.
    services: std::sync::RwLock<std::collections::HashMap<(Uuid, String), Uuid>>,
    /// The maintenance windows that may be in force per (tenant, service),
    /// as read at an instant: see `suppressing_window`.
    windows: KnownWindows,
    /// The ancestor with a probe down per (tenant, service), as read at an
    /// instant: see `down_parent`.
    parents: KnownParents,
}

fn remember<T>(known: &Known<T>, key: (Uuid, String), value: (i64, T)) {
    if let Ok(mut map) = known.lock() {
        if map.len() >= CACHE_ENTRIES_MAX {
            map.clear();
        }
        map.insert(key, value);
    }
}

fn recall<T: Clone>(known: &Known<T>, key: &(Uuid, String)) -> Option<(i64, T)> {
    known.lock().ok().and_then(|m| m.get(key).cloned())
}

/// What became of one signal, as the ingestion endpoints report it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Ingested {
    pub dedup_key: String,
    pub alert_id: Uuid,
    /// `opened_incident`, `attached_to_incident`, `deduplicated`,
    /// `suppressed_by_window`, `suppressed_by_parent`,
    /// `held_for_unknown_service`, `nothing_firing` or `resolved`.
    pub outcome: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incident_id: Option<Uuid>,
    /// With `suppressed_by_parent`: the ancestor whose probe was down.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_service_id: Option<Uuid>,
}

/// An event of one of the tagged event enums, printed straight to its
/// stored text: ingestion makes one per alert received.
fn new_event(
    event: &impl Serialize,
    type_name: &str,
    meta: &Metadata,
    at: DateTime<Utc>,
) -> NewEvent {
    NewEvent::of_tagged(event, type_name, meta.clone(), at)
}

fn version_of(events: &[RecordedEvent]) -> i64 {
    events.last().map_or(0, |e| e.stream_version)
}

fn alert_state(events: &[RecordedEvent]) -> AlertState {
    events
        .iter()
        .fold(
            AlertState::default(),
            |s, e| match AlertEvent::from_stored(&e.event_type, &e.payload) {
                Some(a) => alert::evolve_alert(s, &a, e.recorded_at),
                None => s,
            },
        )
}

/// Finds the service a signal names: by id, by name, or by its `service` label.
pub async fn resolve_service(
    ing: Ingest<'_>,
    tenant: Uuid,
    signal: &Signal,
) -> Result<Option<Uuid>, RunError> {
    let mut refs: Vec<&str> = Vec::new();
    refs.extend(signal.service_ref.as_deref());
    refs.extend(signal.labels.get("service").map(String::as_str));
    refs.extend(signal.labels.get("service_id").map(String::as_str));
    for r in refs {
        if let Ok(id) = Uuid::parse_str(r.trim()) {
            if !stream_events(ing, tenant, &dir::service_stream(id))
                .await?
                .is_empty()
            {
                return Ok(Some(id));
            }
            continue;
        }
        let Ok(name) = Name::parse("service", r) else {
            continue;
        };
        let cache_key = (tenant, name.unique_key());
        let cached = ing
            .cache
            .services
            .read()
            .ok()
            .and_then(|m| m.get(&cache_key).copied());
        if cached.is_some() {
            return Ok(cached);
        }
        let reservation = stream_events(ing, tenant, &dir::service_name_stream(&name)).await?;
        let found = reservation.iter().find_map(|e| {
            match DirectoryEvent::from_stored(&e.event_type, &e.payload) {
                Some(DirectoryEvent::ServiceNameReserved { service_id, .. }) => Some(service_id),
                _ => None,
            }
        });
        if let Some(id) = found {
            if let Ok(mut m) = ing.cache.services.write() {
                if m.len() >= CACHE_ENTRIES_MAX {
                    m.clear();
                }
                m.insert(cache_key, id);
            }
            return Ok(found);
        }
    }
    Ok(None)
}

/// The maintenance window that suppresses new incidents for this service at
/// `at` (announced or started, `at` inside it): the alert is recorded, held
/// by the window, and opens no incident.
///
/// The windows that may be in force for a service are read once per
/// `WINDOWS_FRESH_FOR` and kept, so an alert storm does not ask the database
/// once per alert; whether one covers `at` is decided on them afresh each
/// time. The price: a window announced or started (on any instance) takes
/// effect for ingestion up to that long after the read model has it.
async fn suppressing_window(
    ing: Ingest<'_>,
    tenant: Uuid,
    service: Uuid,
    at: DateTime<Utc>,
) -> Result<Option<Uuid>, RunError> {
    let key = (tenant, service);
    let covering = |windows: &[Window]| windows.iter().find(|w| w.covers(at)).map(|w| w.id);
    // Decided under the lock on what is kept: nothing is copied per alert.
    let cached = ing.cache.windows.lock().ok().and_then(|m| {
        m.get(&key)
            .filter(|(read_at, _)| read_at.elapsed() < WINDOWS_FRESH_FOR)
            .map(|(_, w)| covering(w))
    });
    if let Some(found) = cached {
        return Ok(found);
    }
    let read_at = Instant::now();
    let client = ing
        .ledger
        .pool
        .get()
        .await
        .map_err(opsledger_store::StoreError::from)?;
    let windows = opsledger_store::changes::windows_in_force(&client, tenant, service, at).await?;
    let found = covering(&windows);
    if let Ok(mut m) = ing.cache.windows.lock() {
        if m.len() >= CACHE_ENTRIES_MAX {
            m.clear();
        }
        m.insert(key, (read_at, windows));
    }
    Ok(found)
}

/// The ancestor of `service` with a probe down, if any (the first of
/// `store::directory::down_ancestors`: a direct parent before others). Kept
/// for `PARENTS_FRESH_FOR`, so a storm of a child's alerts asks once a
/// second; the price: a parent going down or up takes effect for its
/// children's alerts up to that long after the probes read model has it.
async fn down_parent(
    ing: Ingest<'_>,
    tenant: Uuid,
    service: Uuid,
) -> Result<Option<DownParent>, RunError> {
    let key = (tenant, service);
    let cached = ing.cache.parents.lock().ok().and_then(|m| {
        m.get(&key)
            .filter(|(read_at, _)| read_at.elapsed() < PARENTS_FRESH_FOR)
            .map(|(_, found)| *found)
    });
    if let Some(found) = cached {
        return Ok(found);
    }
    let read_at = Instant::now();
    let client = ing
        .ledger
        .pool
        .get()
        .await
        .map_err(opsledger_store::StoreError::from)?;
    let found = opsledger_store::directory::down_ancestors(&client, tenant, service)
        .await?
        .into_iter()
        .next();
    if let Ok(mut m) = ing.cache.parents.lock() {
        if m.len() >= CACHE_ENTRIES_MAX {
            m.clear();
        }
        m.insert(key, (read_at, found));
    }
    Ok(found)
}

/// Records one signal and returns what became of it.
pub async fn ingest(
    ing: Ingest<'_>,
    tenant: Uuid,
    meta: &Metadata,
    signal: Signal,
) -> Result<Ingested, RunError> {
    signal.validate().map_err(RunError::Invalid)?;
    let service_id = resolve_service(ing, tenant, &signal).await?;
    let stream = alert::alert_stream(&signal.dedup_key);
    for attempt in 0..INGEST_ATTEMPTS_MAX {
        let now = Utc::now();
        let alert_key = (tenant, stream.clone());
        // First attempt: what this process knew (an unknown key is assumed new).
        // After a conflict: the stream itself.
        let (alert_version, current) = match (attempt, recall(&ing.cache.alerts, &alert_key)) {
            (0, Some(known)) => known,
            (0, None) => (0, AlertState::default()),
            _ => {
                let events = stream_events(ing, tenant, &stream).await?;
                (version_of(&events), alert_state(&events))
            }
        };
        // The group is read only when a new firing cycle may open or attach,
        // or one held for a parent may be decided afresh.
        let mut group = None;
        let mut window = None;
        let mut parent = None;
        let may_decide = current.firing.as_ref().is_none_or(|f| f.held_by_parent);
        if let (true, true, Some(service)) = (signal.firing, may_decide, service_id) {
            window = suppressing_window(ing, tenant, service, now).await?;
            parent = down_parent(ing, tenant, service).await?;
            let gs = alert::group_stream(service, &signal.group_key);
            let group_key = (tenant, gs.clone());
            let (gv, bound) = match (attempt, recall(&ing.cache.groups, &group_key)) {
                (0, Some(known)) => known,
                _ => {
                    let events = stream_events(ing, tenant, &gs).await?;
                    let parsed: Vec<GroupEvent> = events
                        .iter()
                        .filter_map(|e| GroupEvent::from_stored(&e.event_type, &e.payload))
                        .collect();
                    (version_of(&events), alert::bound_incident(&parsed))
                }
            };
            group = Some(incident::GroupSeen {
                stream: gs,
                version: gv,
                bound,
            });
        }
        let bound = group.as_ref().and_then(|g| g.bound);
        let receipt = alert::decide_receipt(
            &current,
            signal.clone(),
            service_id,
            alert::Surroundings {
                bound_incident: bound,
                suppressing_window: window,
                down_parent: parent,
            },
            alert::NewIds {
                alert_id: Uuid::now_v7(),
                incident_id: Uuid::now_v7(),
            },
            now,
        );
        let (alert_id, outcome, incident_id) = match &receipt.alert {
            AlertEvent::AlertReceived {
                alert_id, decision, ..
            } => {
                // A repeat belongs to the incident its firing cycle is attached to.
                let incident = decision
                    .incident_id()
                    .or_else(|| current.firing.as_ref().and_then(|f| f.incident_id));
                (*alert_id, decision_name(decision), incident)
            }
            AlertEvent::AlertResolved {
                alert_id,
                incident_id,
                ..
            } => (*alert_id, "resolved", *incident_id),
        };
        let parent_service_id = match &receipt.alert {
            AlertEvent::AlertReceived {
                decision:
                    Decision::SuppressedByParent {
                        parent_service_id, ..
                    },
                ..
            } => Some(*parent_service_id),
            _ => None,
        };
        // Whether paging starts matters only to an incident the receipt opens.
        let has_policy = match receipt.open_incident {
            Some(_) => crate::incidents::has_policy(ing.ledger, tenant, service_id).await?,
            None => false,
        };
        let open_incident = receipt.open_incident;
        let decided = incident::receipt_outcome(receipt, &signal, group.as_ref(), has_policy, now);
        let streams = receipt_streams(&decided, &stream, alert_version, meta, now);
        let request = AppendRequest {
            tenant_id: tenant,
            streams,
            idempotency: None,
        };
        match ing.ledger.committer.append(request).await {
            Ok(_) => {
                let after = alert::evolve_alert(current, &decided.receipt, now);
                remember(&ing.cache.alerts, alert_key, (alert_version + 1, after));
                match (open_incident, group) {
                    (Some(id), Some(g)) => remember(
                        &ing.cache.groups,
                        (tenant, g.stream),
                        (g.version + 1, Some(id)),
                    ),
                    (None, Some(g)) => {
                        remember(&ing.cache.groups, (tenant, g.stream), (g.version, g.bound))
                    }
                    _ => {}
                }
                if let (AlertEvent::AlertResolved { .. }, Some(incident)) =
                    (&decided.receipt, incident_id)
                {
                    auto_mitigate(ing, tenant, incident, service_id).await;
                }
                return Ok(Ingested {
                    dedup_key: signal.dedup_key,
                    alert_id,
                    outcome: outcome.into(),
                    incident_id,
                    parent_service_id,
                });
            }
            Err(AppendError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(RunError::Contended(format!(
        "alert {:?} kept changing while it was being recorded; retry",
        signal.dedup_key
    )))
}

/// A receipt's whole outcome as the store appends it, in its order: the
/// incident it opens, the receipt, the group.
fn receipt_streams(
    decided: &incident::ReceiptOutcome,
    alert_stream: &str,
    alert_version: i64,
    meta: &Metadata,
    now: DateTime<Utc>,
) -> Vec<StreamAppend> {
    let mut streams = Vec::with_capacity(3);
    if let Some((stream, events)) = &decided.opened {
        streams.push(StreamAppend {
            stream_id: stream.clone(),
            expected: ExpectedVersion::NoStream,
            events: events
                .iter()
                .map(|e| new_event(e, e.type_name(), meta, now))
                .collect(),
        });
    }
    streams.push(StreamAppend {
        stream_id: alert_stream.to_owned(),
        expected: ExpectedVersion::Exact(alert_version),
        events: vec![new_event(
            &decided.receipt,
            decided.receipt.type_name(),
            meta,
            now,
        )],
    });
    if let Some((stream, expected, bound)) = &decided.group {
        streams.push(StreamAppend {
            stream_id: stream.clone(),
            expected: crate::run::expected_version(*expected),
            events: bound
                .iter()
                .map(|e| new_event(e, e.type_name(), meta, now))
                .collect(),
        });
    }
    streams
}

fn decision_name(d: &Decision) -> &'static str {
    match d {
        Decision::OpenedIncident { .. } => "opened_incident",
        Decision::AttachedToIncident { .. } => "attached_to_incident",
        Decision::Deduplicated { .. } => "deduplicated",
        Decision::SuppressedByWindow { .. } => "suppressed_by_window",
        Decision::SuppressedByParent { .. } => "suppressed_by_parent",
        Decision::HeldForUnknownService => "held_for_unknown_service",
        Decision::NothingFiring => "nothing_firing",
    }
}

/// Closes a firing alert its source will never resolve (SPEC §5), if it is
/// still the firing cycle `alert_id`. Returns whether it did.
pub async fn expire(
    ing: Ingest<'_>,
    tenant: Uuid,
    meta: &Metadata,
    dedup_key: &str,
    alert_id: Uuid,
) -> Result<bool, RunError> {
    let stream = alert::alert_stream(dedup_key);
    for _ in 0..INGEST_ATTEMPTS_MAX {
        let events = stream_events(ing, tenant, &stream).await?;
        let Some(firing) = alert_state(&events)
            .firing
            .filter(|f| f.alert_id == alert_id)
        else {
            return Ok(false);
        };
        let now = Utc::now();
        let resolved = AlertEvent::AlertResolved {
            alert_id,
            by: ResolvedBy::Expired,
            at: now,
            incident_id: firing.incident_id,
        };
        let request = AppendRequest {
            tenant_id: tenant,
            streams: vec![StreamAppend {
                stream_id: stream.clone(),
                expected: ExpectedVersion::Exact(version_of(&events)),
                events: vec![new_event(&resolved, resolved.type_name(), meta, now)],
            }],
            idempotency: None,
        };
        match ing.ledger.committer.append(request).await {
            Ok(_) => {
                if let Some(incident) = firing.incident_id {
                    auto_mitigate(ing, tenant, incident, None).await;
                }
                return Ok(true);
            }
            Err(AppendError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(false)
}

/// Attempts to mitigate an incident at most this often when its stream
/// keeps moving (a responder acting at the same moment).
const AUTO_MITIGATE_ATTEMPTS_MAX: usize = 3;

/// After an alert of `incident` resolved: if its service mitigates
/// automatically (SPEC §5) and none of the incident's alerts fires any
/// more, the incident is mitigated at the last resolution, with the cause
/// recorded. Best effort: the resolution is recorded whatever happens here,
/// and a failure is logged.
pub async fn auto_mitigate(ing: Ingest<'_>, tenant: Uuid, incident: Uuid, service: Option<Uuid>) {
    if let Err(e) = try_auto_mitigate(ing, tenant, incident, service).await {
        tracing::warn!(%incident, error = %e, "auto-mitigation failed");
    }
}

async fn try_auto_mitigate(
    ing: Ingest<'_>,
    tenant: Uuid,
    incident: Uuid,
    service: Option<Uuid>,
) -> Result<(), RunError> {
    let events = stream_events(ing, tenant, &incident::incident_stream(incident)).await?;
    let Some(folded) = incident::fold(&events) else {
        return Ok(());
    };
    let Some(service) = service.or(folded.service_id) else {
        return Ok(());
    };
    let auto_mitigate = crate::directory::service(ing.ledger, tenant, service)
        .await?
        .is_some_and(|s| s.auto_mitigate);
    if !auto_mitigate {
        return Ok(());
    }
    let (firing, last) =
        opsledger_store::incidents::alerts_resolved(ing.ledger.pool, tenant, incident).await?;
    let Some(last) = last.filter(|_| !firing) else {
        return Ok(());
    };
    let meta = Metadata {
        actor: "system:auto-mitigation".into(),
        role: "system".into(),
        request_id: None,
        correlation_id: None,
        causation_id: None,
        source: "auto-mitigation".into(),
    };
    for _ in 0..AUTO_MITIGATE_ATTEMPTS_MAX {
        let command = incident::Command::Mitigate {
            // A source's end before the impact began (clocks apart) ends it
            // where it began.
            impact_end: last.max(folded.impact_start),
            cause: Some(incident::MitigationCause::AllAlertsResolved),
        };
        let asked = Asked {
            tenant,
            meta: meta.clone(),
            if_match: None,
            key: None,
        };
        match crate::incidents::execute(ing.ledger, asked, incident, command).await {
            Ok(_) => return Ok(()),
            // Mitigated, resolved or closed already, by hand: nothing to do;
            // or the last resolution precedes the impact start (a corrected
            // impact): the domain refuses, and so do we.
            Err(RunError::Rejected { .. }) => return Ok(()),
            // The stream moved under us: decide again on what it is now.
            Err(RunError::Append(AppendError::Conflict { .. })) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// After an Alertmanager-style notification of a group: every alert of the
/// group still firing here but absent from the notification was silenced or
/// inhibited upstream, and its resolution will never come — expire it.
pub async fn expire_missing_from_group(
    ing: Ingest<'_>,
    tenant: Uuid,
    meta: &Metadata,
    source: &str,
    group_key: &str,
    present: &HashSet<String>,
) -> Result<Vec<Uuid>, RunError> {
    let filter = opsledger_store::incidents::AlertFilter {
        firing: Some(true),
        source: Some(source.to_owned()),
        group_key: Some(group_key.to_owned()),
        ..Default::default()
    };
    let firing =
        opsledger_store::incidents::list_alerts(ing.ledger.pool, tenant, &filter, None, 10_000)
            .await?;
    let mut expired = Vec::new();
    for a in firing
        .into_iter()
        .filter(|a| !present.contains(&a.dedup_key))
    {
        if expire(ing, tenant, meta, &a.dedup_key, a.id).await? {
            expired.push(a.id);
        }
    }
    Ok(expired)
}

/// The incident a firing dedup key is attached to, for commands that arrive
/// by dedup key (PagerDuty's acknowledge).
pub async fn incident_of_key(
    ing: Ingest<'_>,
    tenant: Uuid,
    dedup_key: &str,
) -> Result<Option<Uuid>, RunError> {
    let events = stream_events(ing, tenant, &alert::alert_stream(dedup_key)).await?;
    Ok(alert_state(&events).firing.and_then(|f| f.incident_id))
}

/// Alerts expired in one pass at most; the next pass takes the rest.
const EXPIRY_BATCH_MAX: i64 = 1_000;

/// One pass of the expiry worker: closes every firing alert whose announced
/// end passed, or that its source has not refreshed for `stale_after`.
/// Instances may run it concurrently: each expiry is an append with an
/// expected version, so an alert is closed once. Returns how many it closed.
pub async fn expire_stale(
    ing: Ingest<'_>,
    stale_after: chrono::Duration,
) -> Result<usize, RunError> {
    let now = Utc::now();
    let stale = opsledger_store::incidents::stale_alerts(
        ing.ledger.pool,
        now,
        now - stale_after,
        EXPIRY_BATCH_MAX,
    )
    .await?;
    let mut closed = 0;
    for a in stale {
        let meta = Metadata {
            actor: "system:alert-expiry".into(),
            role: "system".into(),
            request_id: None,
            correlation_id: None,
            causation_id: None,
            source: "expiry".into(),
        };
        if expire(ing, a.tenant_id, &meta, &a.dedup_key, a.alert_id).await? {
            closed += 1;
        }
    }
    Ok(closed)
}
