//! Turns incident facts and change steps into notification requests (SPEC
//! §9): client contacts by subscription, responders on escalation, and a
//! change's requester and approvers on its steps (who is told of which
//! step, and how a token subject is a roster user: `domain::change_notice`).
//!
//! It follows the log like a projection, and its requests are appended in
//! the same transaction as its checkpoint: each fact is looked at once, and
//! were it looked at again, a request's stream (named by the fact and the
//! recipient) already exists and nothing is appended twice. A batch costs,
//! whatever its size, four reads at most for its incident facts, three for
//! its change steps (the changes' first events, the roster users concerned,
//! the services' names), one for the checkpoints, and one append.
//!
//! # Escalation, rosters and notifications
//!
//! Responders (`user-`), on-call schedules (`schedule-`), escalation policies
//! (`policy-`) and client subscriptions (`subscription-`) are streams of their
//! own; the roster projection keeps `proj_users`, `proj_schedules`,
//! `proj_policies` and `proj_subscriptions`. Each is read by id from its stream
//! (entity tag = stream version) and listed from its read model; both carry the
//! events' `occurred_at`, which the create answers with too, so the three agree.
//! A command that names another entity checks it against the log
//! (`read::existing_streams`), so an entity registered a moment ago counts.
//!
//! - **Escalation timers.** Opening an incident of a service with a policy
//!   appends `EscalationScheduled` (level 1, due now); firing a step appends
//!   `IncidentEscalated` and the next `EscalationScheduled`; acknowledging,
//!   mitigating or resolving cancels what is scheduled. The incident projection
//!   keeps the step each incident waits for in `escalation_timers`. The worker
//!   of every instance takes due rows `FOR UPDATE SKIP LOCKED` and fires each by
//!   appending to the incident with the version it read, so a step fires once
//!   however many instances run, and after any restart (the rows are data).
//!   On-call is computed at firing time (`domain::oncall`: rotations hand off on
//!   the local wall clock of the schedule's IANA zone, overrides win).
//! - **Queues.** `proj_incidents` carries the team (operations until
//!   `IncidentHandedOff`), the assignee, the level reached and the next step's
//!   due time; `/queues/{team}` lists a team's open incidents oldest first.
//! - **Notifications** (SPEC §9). The notifier is a follower of incident and
//!   change streams that reads the roster and directory read models (it
//!   follows no further than they have got, `Projection::after`) and appends
//!   `NotificationRequested` in the transaction that moves its checkpoint.
//!   A request's stream id is derived from the fact and the recipient
//!   (UUIDv5), so a fact asks once per recipient whatever happens. The message is rendered then (minijinja templates in
//!   `services/domain/templates/notice/`, Japanese or English by the recipient's
//!   locale) and its SHA-256 kept, so the ledger shows exactly what was sent.
//!   A notice of a change's step names its change (`change_id`), and
//!   `outbox::change_notices_for` lists a person's for their console page. The
//!   sender of every instance (`server::mail`) leases a due row of
//!   `proj_notifications` in a short transaction, sends with no transaction open (lettre; TLS none,
//!   STARTTLS or implicit), and appends `NotificationSent`, or
//!   `NotificationFailed` with the next attempt after exponential backoff, or
//!   `NotificationAbandoned` at the limit. A sender that dies mid-send leaves a
//!   lease that runs out: at least once, and never again once sent is recorded.

use std::collections::{HashMap, HashSet};

use deadpool_postgres::Transaction;
use futures_util::future::BoxFuture;
use opsledger_domain::alert::Severity;
use opsledger_domain::change::{ChangeEvent, Kind, Risk};
use opsledger_domain::change_notice::{self, Audience, RosterUser, StepNotice};
use opsledger_domain::incident::{self, Incident, IncidentEvent};
use opsledger_domain::notice::{self, ChangeFacts, NoticeFacts, NoticeKind};
use opsledger_domain::notification::{self, NotificationEvent, Recipient};
use opsledger_domain::{Metadata, NewEvent, RecordedEvent};
use uuid::Uuid;

use crate::append::write_batch;
use crate::projection::{self, Projection};
use crate::read;
use crate::wake::Families;
use crate::{AppendRequest, ExpectedVersion, StoreError, StreamAppend};

#[derive(Debug, Default)]
pub struct Notifier;

impl Projection for Notifier {
    fn name(&self) -> &'static str {
        "notifier"
    }

    fn tables(&self) -> &'static [&'static str] {
        &[]
    }

    fn streams(&self) -> &'static [&'static str] {
        &["incident-", "change-"]
    }

    /// Subscriptions and responders (roster), services and clients (directory).
    fn after(&self) -> &'static [&'static str] {
        &["roster", "directory"]
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

    /// Looks at a whole batch in a few reads (for incidents: their earlier
    /// events, their services, the subscriptions of those services, the
    /// responders named; for changes: see [`change_requests`]) and asks for
    /// every notice in one write: an incident storm opens hundreds of
    /// incidents a second. One write also
    /// takes the strands' locks once and in order, as the committer does;
    /// several in one transaction, in the order of the facts, could wait on
    /// the committer while it waited on them.
    fn apply_batch<'a>(
        &'a self,
        tx: &'a Transaction<'a>,
        events: &'a [RecordedEvent],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let facts = incident_facts(events);
            let steps = change_steps(events);
            if facts.is_empty() && steps.is_empty() {
                return Ok(());
            }
            let mut tenants: Vec<Uuid> = facts
                .iter()
                .map(|f| f.event.tenant_id)
                .chain(steps.iter().map(|s| s.event.tenant_id))
                .collect();
            tenants.sort_unstable();
            tenants.dedup();
            // Every mail carries its tenant's latest signed checkpoint.
            let checkpoints = crate::audit::latest_notes(tx, &tenants).await?;
            let mut requests = incident_requests(tx, events, facts, &checkpoints).await?;
            requests.extend(change_requests(tx, events, steps, &checkpoints).await?);
            if requests.is_empty() {
                return Ok(());
            }
            let refs: Vec<&AppendRequest> = requests.iter().collect();
            // A conflict means this fact already asked for that recipient.
            for outcome in write_batch(tx, &refs).await? {
                match outcome {
                    Ok(_) => projection::appended(Families::of_prefixes(&["notification-"])),
                    Err(crate::AppendError::Conflict { .. }) => {}
                    Err(e) => {
                        return Err(StoreError::Corrupt(format!("notification request: {e}")))
                    }
                }
            }
            Ok(())
        })
    }
}

/// The notifier's metadata on a request caused by `event`.
fn meta_of(event: &RecordedEvent) -> Metadata {
    Metadata {
        actor: "system:notifier".into(),
        role: "system".into(),
        request_id: None,
        correlation_id: event
            .metadata
            .get("correlation_id")
            .and_then(|v| v.as_str())
            .and_then(|v| Uuid::parse_str(v).ok()),
        causation_id: Some(event.event_id),
        source: "notifier".into(),
    }
}

/// The one append that asks for `requested`, caused by `event`: its stream
/// must not exist yet.
fn request_of(event: &RecordedEvent, id: Uuid, requested: &NotificationEvent) -> AppendRequest {
    AppendRequest {
        tenant_id: event.tenant_id,
        streams: vec![StreamAppend {
            stream_id: notification::notification_stream(id),
            expected: ExpectedVersion::NoStream,
            events: vec![NewEvent::new(
                requested.type_name(),
                requested.payload(),
                meta_of(event),
                event.recorded_at,
            )],
        }],
        idempotency: None,
    }
}

/// The incident facts of a batch that may tell someone.
fn incident_facts(events: &[RecordedEvent]) -> Vec<Fact<'_>> {
    let mut facts: Vec<Fact<'_>> = Vec::new();
    for event in events {
        let Some(parsed) = IncidentEvent::from_stored(&event.event_type, &event.payload) else {
            continue;
        };
        let (kind, users) = match &parsed {
            IncidentEvent::IncidentOpened { .. } => (NoticeKind::IncidentOpened, None),
            IncidentEvent::IncidentMitigated { .. } => (NoticeKind::IncidentMitigated, None),
            IncidentEvent::IncidentResolved {} => (NoticeKind::IncidentResolved, None),
            IncidentEvent::IncidentEscalated { users, .. } => {
                (NoticeKind::IncidentEscalated, Some(users.clone()))
            }
            _ => continue,
        };
        let (level, by_hand) = match &parsed {
            IncidentEvent::IncidentEscalated { level, by_hand, .. } => (Some(*level), *by_hand),
            _ => (None, false),
        };
        facts.push(Fact {
            event,
            kind,
            users,
            level,
            by_hand,
            incident: None,
        });
    }
    facts
}

/// The requests the incident facts make: subscribers of the incident's
/// service, or the responders an escalation names.
async fn incident_requests(
    tx: &Transaction<'_>,
    events: &[RecordedEvent],
    mut facts: Vec<Fact<'_>>,
    checkpoints: &HashMap<Uuid, String>,
) -> Result<Vec<AppendRequest>, StoreError> {
    let mut requests: Vec<AppendRequest> = Vec::new();
    if facts.is_empty() {
        return Ok(requests);
    }
    incidents_at(tx, events, &mut facts).await?;
    let services = services_of(tx, &facts).await?;
    let subscriptions = subscriptions_of(tx, &facts, &services).await?;
    let users = users_named(tx, &facts).await?;
    for fact in &facts {
        let Some(incident) = &fact.incident else {
            continue;
        };
        let event = fact.event;
        let service = incident
            .service_id
            .and_then(|s| services.get(&(event.tenant_id, s)));
        let recipients = match &fact.users {
            Some(named) => responders(&users, event.tenant_id, named),
            None => match (service, incident.service_id) {
                (Some((_, client_id)), Some(service_id)) => subscribers(
                    subscriptions
                        .get(&(event.tenant_id, service_id))
                        .map(Vec::as_slice)
                        .unwrap_or_default(),
                    *client_id,
                    fact.kind,
                    incident.severity,
                ),
                _ => Vec::new(),
            },
        };
        for recipient in recipients {
            let facts = NoticeFacts {
                incident_id: incident.id,
                title: incident.title.clone(),
                service_name: service.map(|(name, _)| name.clone()),
                severity: incident.severity.as_str().to_owned(),
                status: incident.status.as_str().to_owned(),
                impact_start: incident.impact_start,
                impact_end: incident.impact_end,
                resolved_at: incident.resolved_at,
                escalation_level: fact.level,
                escalated_by_hand: fact.by_hand,
                recipient_name: recipient.name.clone(),
            };
            let message = notice::render(fact.kind, &recipient.locale, &facts)
                .with_checkpoint(checkpoints.get(&event.tenant_id).map(String::as_str));
            let id = notification::notification_id(event.event_id, &recipient.email);
            let requested = NotificationEvent::NotificationRequested {
                notification_id: id,
                kind: fact.kind,
                cause_event_id: event.event_id,
                incident_id: Some(incident.id),
                change_id: None,
                recipient,
                message,
            };
            requests.push(request_of(event, id, &requested));
        }
    }
    Ok(requests)
}

/// A fact of a batch that may be told, and the incident as it stood right
/// after it.
struct Fact<'e> {
    event: &'e RecordedEvent,
    kind: NoticeKind,
    /// The responders an escalation names; `None` tells the subscribers.
    users: Option<Vec<Uuid>>,
    level: Option<u32>,
    by_hand: bool,
    incident: Option<Incident>,
}

/// Folds each fact's incident up to the fact, as its stream had it: the
/// stream's events up to the fact's version, in version order. Those of
/// the batch are at hand; the earlier ones are read, for all incidents in
/// one query. (Should a stream's events here not follow on from the
/// earlier ones, its whole range is read instead.)
async fn incidents_at(
    tx: &Transaction<'_>,
    events: &[RecordedEvent],
    facts: &mut [Fact<'_>],
) -> Result<(), StoreError> {
    // Per stream told about: the latest version a fact needs.
    let mut needed: HashMap<(Uuid, &str), i64> = HashMap::new();
    for fact in facts.iter() {
        let v = needed
            .entry((fact.event.tenant_id, fact.event.stream_id.as_str()))
            .or_default();
        *v = (*v).max(fact.event.stream_version);
    }
    let mut at_hand: HashMap<(Uuid, &str), Vec<&RecordedEvent>> = HashMap::new();
    for e in events {
        let key = (e.tenant_id, e.stream_id.as_str());
        if needed
            .get(&key)
            .is_some_and(|last| e.stream_version <= *last)
        {
            at_hand.entry(key).or_default().push(e);
        }
    }
    let mut ranges = Vec::new();
    for (key, last) in &needed {
        let here = at_hand.get_mut(key).expect("a fact's own event is at hand");
        here.sort_by_key(|e| e.stream_version);
        let first = here[0].stream_version;
        let follows_on = here
            .iter()
            .enumerate()
            .all(|(i, e)| e.stream_version == first + i as i64);
        let last_read = if follows_on { first - 1 } else { *last };
        if !follows_on {
            here.clear();
        }
        if last_read >= 1 {
            ranges.push(read::StreamRange {
                tenant_id: key.0,
                stream_id: key.1.to_owned(),
                first: 1,
                last: last_read,
            });
        }
    }
    let read = read::read_ranges(tx, &ranges).await?;
    let mut streams: HashMap<(Uuid, &str), Vec<&RecordedEvent>> = HashMap::new();
    for e in &read {
        streams
            .entry((e.tenant_id, e.stream_id.as_str()))
            .or_default()
            .push(e);
    }
    for (key, here) in at_hand {
        streams.entry(key).or_default().extend(here);
    }
    let mut states: HashMap<(Uuid, &str, i64), Option<Incident>> = HashMap::new();
    for (key, stream) in &streams {
        let mut state: Option<Incident> = None;
        for e in stream {
            state = incident::evolve_stored(state.take(), e);
            states.insert((key.0, key.1, e.stream_version), state.clone());
        }
    }
    for fact in facts.iter_mut() {
        let e = fact.event;
        fact.incident = states
            .get(&(e.tenant_id, e.stream_id.as_str(), e.stream_version))
            .cloned()
            .flatten();
    }
    Ok(())
}

/// The name and client of every service the facts' incidents are of.
async fn services_of(
    tx: &Transaction<'_>,
    facts: &[Fact<'_>],
) -> Result<HashMap<(Uuid, Uuid), (String, Uuid)>, StoreError> {
    let keys: HashSet<(Uuid, Uuid)> = facts
        .iter()
        .filter_map(|f| {
            let service = f.incident.as_ref()?.service_id?;
            Some((f.event.tenant_id, service))
        })
        .collect();
    let mut out = HashMap::new();
    if keys.is_empty() {
        return Ok(out);
    }
    let (tenants, services): (Vec<Uuid>, Vec<Uuid>) = keys.into_iter().unzip();
    let rows = projection::query(
        tx,
        "SELECT s.tenant_id, s.service_id, s.name, s.client_id FROM proj_services s \
             JOIN unnest($1::uuid[], $2::uuid[]) AS k(t, s) \
               ON s.tenant_id = k.t AND s.service_id = k.s",
        &[&tenants, &services],
    )
    .await?;
    for r in rows {
        out.insert((r.get(0), r.get(1)), (r.get(2), r.get(3)));
    }
    Ok(out)
}

/// An active subscription, as the notifier weighs it.
struct Subscription {
    id: Uuid,
    name: String,
    email: String,
    locale: String,
    kinds: Vec<NoticeKind>,
    /// `None` when the stored word is not a severity: it wants nothing.
    min: Option<Severity>,
}

/// The active subscriptions, oldest first, of the services of the facts
/// that tell subscribers.
async fn subscriptions_of(
    tx: &Transaction<'_>,
    facts: &[Fact<'_>],
    services: &HashMap<(Uuid, Uuid), (String, Uuid)>,
) -> Result<HashMap<(Uuid, Uuid), Vec<Subscription>>, StoreError> {
    let keys: HashSet<(Uuid, Uuid)> = facts
        .iter()
        .filter(|f| f.users.is_none())
        .filter_map(|f| {
            let service = f.incident.as_ref()?.service_id?;
            let key = (f.event.tenant_id, service);
            services.contains_key(&key).then_some(key)
        })
        .collect();
    let mut out: HashMap<(Uuid, Uuid), Vec<Subscription>> = HashMap::new();
    if keys.is_empty() {
        return Ok(out);
    }
    let (tenants, ids): (Vec<Uuid>, Vec<Uuid>) = keys.into_iter().unzip();
    let rows = projection::query(
        tx,
        "SELECT p.tenant_id, p.service_id, p.subscription_id, p.name, p.email, p.locale, \
               p.kinds, p.min_severity FROM proj_subscriptions p \
             JOIN unnest($1::uuid[], $2::uuid[]) AS k(t, s) \
               ON p.tenant_id = k.t AND p.service_id = k.s \
             WHERE p.active ORDER BY p.created_at",
        &[&tenants, &ids],
    )
    .await?;
    for r in &rows {
        let kinds: Vec<String> = r.get(6);
        let min: String = r.get(7);
        out.entry((r.get(0), r.get(1)))
            .or_default()
            .push(Subscription {
                id: r.get(2),
                name: r.get(3),
                email: r.get(4),
                locale: r.get(5),
                kinds: kinds.iter().filter_map(|k| NoticeKind::parse(k)).collect(),
                min: Severity::parse_loose(&min),
            });
    }
    Ok(out)
}

/// The responders the facts' escalations name, as a recipient each.
async fn users_named(
    tx: &Transaction<'_>,
    facts: &[Fact<'_>],
) -> Result<HashMap<(Uuid, Uuid), Recipient>, StoreError> {
    let keys: HashSet<(Uuid, Uuid)> = facts
        .iter()
        .filter(|f| f.incident.is_some())
        .flat_map(|f| {
            f.users
                .iter()
                .flatten()
                .map(move |u| (f.event.tenant_id, *u))
        })
        .collect();
    let mut out = HashMap::new();
    if keys.is_empty() {
        return Ok(out);
    }
    let (tenants, users): (Vec<Uuid>, Vec<Uuid>) = keys.into_iter().unzip();
    let rows = projection::query(
        tx,
        "SELECT u.tenant_id, u.user_id, u.name, u.email, u.locale FROM proj_users u \
             JOIN unnest($1::uuid[], $2::uuid[]) AS k(t, u) \
               ON u.tenant_id = k.t AND u.user_id = k.u",
        &[&tenants, &users],
    )
    .await?;
    for r in rows {
        out.insert(
            (r.get(0), r.get(1)),
            Recipient {
                user_id: Some(r.get(1)),
                name: r.get(2),
                email: r.get(3),
                locale: r.get(4),
                subscription_id: None,
                client_id: None,
            },
        );
    }
    Ok(out)
}

/// The responders among `named` the roster knows, by id (a name given twice
/// is told once).
fn responders(
    users: &HashMap<(Uuid, Uuid), Recipient>,
    tenant: Uuid,
    named: &[Uuid],
) -> Vec<Recipient> {
    let mut ids: Vec<Uuid> = named.to_vec();
    ids.sort();
    ids.dedup();
    ids.iter()
        .filter_map(|u| users.get(&(tenant, *u)).cloned())
        .collect()
}

/// The subscribers of a service who want this kind of notice at this
/// severity; two subscriptions of one address are one recipient.
fn subscribers(
    subscriptions: &[Subscription],
    client_id: Uuid,
    kind: NoticeKind,
    severity: Severity,
) -> Vec<Recipient> {
    let mut out: Vec<Recipient> = Vec::new();
    for s in subscriptions {
        let Some(min) = s.min else {
            continue;
        };
        if !opsledger_domain::roster::wants(&s.kinds, min, kind, severity)
            || out.iter().any(|o| o.email.eq_ignore_ascii_case(&s.email))
        {
            continue;
        }
        out.push(Recipient {
            subscription_id: Some(s.id),
            name: s.name.clone(),
            email: s.email.clone(),
            locale: s.locale.clone(),
            user_id: None,
            client_id: Some(client_id),
        });
    }
    out
}

// ------------------------------------------------------------ change steps

/// A change event of a batch that may tell someone (see
/// `domain::change_notice`).
struct ChangeStep<'e> {
    event: &'e RecordedEvent,
    parsed: ChangeEvent,
    change_id: Uuid,
}

/// What a change's first event, `ChangeRequested`, says that its notices
/// need: none of it ever changes.
struct Requested {
    title: String,
    kind: Kind,
    risk: Risk,
    service_ids: Vec<Uuid>,
    /// The token subject that recorded it.
    requested_by: String,
}

/// The change events of a batch that may tell someone: those that tell
/// someone of a normal change (a standard change's submission tells nobody,
/// which is known once its kind is read).
fn change_steps(events: &[RecordedEvent]) -> Vec<ChangeStep<'_>> {
    events
        .iter()
        .filter_map(|event| {
            let change_id = event
                .stream_id
                .strip_prefix("change-")
                .and_then(|id| Uuid::parse_str(id).ok())?;
            let parsed = ChangeEvent::from_stored(&event.event_type, &event.payload)?;
            change_notice::step_notice(Kind::Normal, &parsed)?;
            Some(ChangeStep {
                event,
                parsed,
                change_id,
            })
        })
        .collect()
}

/// The `ChangeRequested` of every change the steps are of: at hand when in
/// the batch, else read (version 1 of each stream, in one query).
async fn changes_requested(
    tx: &Transaction<'_>,
    events: &[RecordedEvent],
    steps: &[ChangeStep<'_>],
) -> Result<HashMap<(Uuid, Uuid), Requested>, StoreError> {
    let requested_of = |e: &RecordedEvent| -> Option<Requested> {
        match ChangeEvent::from_stored(&e.event_type, &e.payload)? {
            ChangeEvent::ChangeRequested {
                title,
                kind,
                risk,
                service_ids,
                ..
            } => Some(Requested {
                title,
                kind,
                risk,
                service_ids,
                requested_by: e
                    .metadata
                    .get("actor")
                    .and_then(|a| a.as_str())
                    .unwrap_or_default()
                    .to_owned(),
            }),
            _ => None,
        }
    };
    let mut out: HashMap<(Uuid, Uuid), Requested> = HashMap::new();
    for e in events.iter().filter(|e| e.stream_version == 1) {
        if let (Some(id), Some(r)) = (
            e.stream_id
                .strip_prefix("change-")
                .and_then(|id| Uuid::parse_str(id).ok()),
            requested_of(e),
        ) {
            out.insert((e.tenant_id, id), r);
        }
    }
    let mut ranges: Vec<read::StreamRange> = Vec::new();
    for s in steps {
        let key = (s.event.tenant_id, s.change_id);
        if !out.contains_key(&key)
            && !ranges
                .iter()
                .any(|r| r.tenant_id == key.0 && r.stream_id == s.event.stream_id)
        {
            ranges.push(read::StreamRange {
                tenant_id: key.0,
                stream_id: s.event.stream_id.clone(),
                first: 1,
                last: 1,
            });
        }
    }
    for e in read::read_ranges(tx, &ranges).await? {
        if let (Some(id), Some(r)) = (
            e.stream_id
                .strip_prefix("change-")
                .and_then(|id| Uuid::parse_str(id).ok()),
            requested_of(&e),
        ) {
            out.insert((e.tenant_id, id), r);
        }
    }
    Ok(out)
}

/// The roster users the steps may tell, by tenant, oldest registration
/// first: those whose address is a requester's, and every approver of a
/// tenant whose changes await approval. `domain::change_notice::recipients`
/// then picks each step's own.
async fn roster_for(
    tx: &Transaction<'_>,
    wanted: &[(Uuid, String, Audience)],
) -> Result<HashMap<Uuid, Vec<RosterUser>>, StoreError> {
    let mut out: HashMap<Uuid, Vec<RosterUser>> = HashMap::new();
    if wanted.is_empty() {
        return Ok(out);
    }
    let mut req_tenants: Vec<Uuid> = Vec::new();
    let mut req_subjects: Vec<String> = Vec::new();
    let mut approver_tenants: Vec<Uuid> = Vec::new();
    for (tenant, requester, audience) in wanted {
        match audience {
            Audience::Requester => {
                req_tenants.push(*tenant);
                req_subjects.push(requester.trim().to_lowercase());
            }
            Audience::Approvers => approver_tenants.push(*tenant),
        }
    }
    approver_tenants.sort_unstable();
    approver_tenants.dedup();
    let rows = projection::query(
        tx,
        "SELECT u.tenant_id, u.user_id, u.name, u.email, u.locale, 'approver' = ANY(u.roles) \
         FROM proj_users u \
         WHERE (u.tenant_id, lower(u.email)) IN \
               (SELECT * FROM unnest($1::uuid[], $2::text[])) \
            OR (u.tenant_id = ANY($3::uuid[]) AND 'approver' = ANY(u.roles)) \
         ORDER BY u.registered_at, u.user_id",
        &[&req_tenants, &req_subjects, &approver_tenants],
    )
    .await?;
    for r in rows {
        out.entry(r.get(0)).or_default().push(RosterUser {
            user_id: r.get(1),
            name: r.get(2),
            email: r.get(3),
            locale: r.get(4),
            approver: r.get(5),
        });
    }
    Ok(out)
}

/// The names of the services the changes touch.
async fn service_names(
    tx: &Transaction<'_>,
    changes: &HashMap<(Uuid, Uuid), Requested>,
) -> Result<HashMap<(Uuid, Uuid), String>, StoreError> {
    let keys: HashSet<(Uuid, Uuid)> = changes
        .iter()
        .flat_map(|((t, _), r)| r.service_ids.iter().map(move |s| (*t, *s)))
        .collect();
    let mut out = HashMap::new();
    if keys.is_empty() {
        return Ok(out);
    }
    let (tenants, services): (Vec<Uuid>, Vec<Uuid>) = keys.into_iter().unzip();
    let rows = projection::query(
        tx,
        "SELECT s.tenant_id, s.service_id, s.name FROM proj_services s \
             JOIN unnest($1::uuid[], $2::uuid[]) AS k(t, s) \
               ON s.tenant_id = k.t AND s.service_id = k.s",
        &[&tenants, &services],
    )
    .await?;
    for r in rows {
        out.insert((r.get(0), r.get(1)), r.get(2));
    }
    Ok(out)
}

/// The requests the change steps make: the requester of each step told to
/// them, the approvers of a change that awaits them (never its requester),
/// each in their language. Three reads for the whole batch at most.
async fn change_requests(
    tx: &Transaction<'_>,
    events: &[RecordedEvent],
    steps: Vec<ChangeStep<'_>>,
    checkpoints: &HashMap<Uuid, String>,
) -> Result<Vec<AppendRequest>, StoreError> {
    let mut requests: Vec<AppendRequest> = Vec::new();
    if steps.is_empty() {
        return Ok(requests);
    }
    let changes = changes_requested(tx, events, &steps).await?;
    let mut told: Vec<(&ChangeStep<'_>, &Requested, StepNotice)> = Vec::new();
    for step in &steps {
        let Some(change) = changes.get(&(step.event.tenant_id, step.change_id)) else {
            continue;
        };
        if let Some(notice) = change_notice::step_notice(change.kind, &step.parsed) {
            told.push((step, change, notice));
        }
    }
    let wanted: Vec<(Uuid, String, Audience)> = told
        .iter()
        .map(|(s, c, n)| (s.event.tenant_id, c.requested_by.clone(), n.audience))
        .collect();
    let roster = roster_for(tx, &wanted).await?;
    let names = service_names(tx, &changes).await?;
    for (step, change, notice) in told {
        let event = step.event;
        let users = roster
            .get(&event.tenant_id)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let services: Vec<String> = change
            .service_ids
            .iter()
            .filter_map(|s| names.get(&(event.tenant_id, *s)).cloned())
            .collect();
        let actor = event
            .metadata
            .get("actor")
            .and_then(|a| a.as_str())
            .unwrap_or_default();
        for recipient in change_notice::recipients(notice.audience, &change.requested_by, users) {
            let facts = ChangeFacts {
                change_id: step.change_id,
                title: change.title.clone(),
                kind: change.kind.as_str().to_owned(),
                risk: change.risk.as_str().to_owned(),
                services: services.clone(),
                requested_by: change.requested_by.clone(),
                actor: actor.to_owned(),
                at: event.recorded_at,
                schedule: notice.schedule,
                note: notice.note.clone(),
                recipient_name: recipient.name.clone(),
            };
            let message = notice::render_change(notice.kind, &recipient.locale, &facts)
                .with_checkpoint(checkpoints.get(&event.tenant_id).map(String::as_str));
            let id = notification::notification_id(event.event_id, &recipient.email);
            let requested = NotificationEvent::NotificationRequested {
                notification_id: id,
                kind: notice.kind,
                cause_event_id: event.event_id,
                incident_id: None,
                change_id: Some(step.change_id),
                recipient,
                message,
            };
            requests.push(request_of(event, id, &requested));
        }
    }
    Ok(requests)
}
