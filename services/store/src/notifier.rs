//! Turns incident facts into notification requests (SPEC §9): client contacts
//! by subscription, responders on escalation.
//!
//! It follows the log like a projection, and its requests are appended in
//! the same transaction as its checkpoint: each fact is looked at once, and
//! were it looked at again, a request's stream (named by the fact and the
//! recipient) already exists and nothing is appended twice.

use deadpool_postgres::Transaction;
use futures_util::future::BoxFuture;
use opsledger_domain::alert::Severity;
use opsledger_domain::incident::{self, Incident, IncidentEvent};
use opsledger_domain::notice::{self, NoticeFacts, NoticeKind};
use opsledger_domain::notification::{self, NotificationEvent, Recipient};
use opsledger_domain::{Metadata, NewEvent, RecordedEvent};
use uuid::Uuid;

use crate::append::write_batch;
use crate::projection::Projection;
use crate::read;
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
        &["incident-"]
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
        Box::pin(async move {
            let Some(parsed) = IncidentEvent::from_stored(&event.event_type, &event.payload) else {
                return Ok(());
            };
            let (kind, users) = match &parsed {
                IncidentEvent::IncidentOpened { .. } => (NoticeKind::IncidentOpened, None),
                IncidentEvent::IncidentMitigated { .. } => (NoticeKind::IncidentMitigated, None),
                IncidentEvent::IncidentResolved {} => (NoticeKind::IncidentResolved, None),
                IncidentEvent::IncidentEscalated { users, .. } => {
                    (NoticeKind::IncidentEscalated, Some(users.clone()))
                }
                _ => return Ok(()),
            };
            let Some(incident) = incident_at(tx, event).await? else {
                return Ok(());
            };
            let service = match incident.service_id {
                Some(s) => service_of(tx, event.tenant_id, s).await?,
                None => None,
            };
            let recipients = match users {
                Some(users) => responders(tx, event.tenant_id, &users).await?,
                None => match (&service, incident.service_id) {
                    (Some((_, client_id)), Some(service_id)) => {
                        subscribers(
                            tx,
                            event.tenant_id,
                            service_id,
                            *client_id,
                            kind,
                            incident.severity,
                        )
                        .await?
                    }
                    _ => Vec::new(),
                },
            };
            if recipients.is_empty() {
                return Ok(());
            }
            let (level, by_hand) = match &parsed {
                IncidentEvent::IncidentEscalated { level, by_hand, .. } => (Some(*level), *by_hand),
                _ => (None, false),
            };
            let meta = Metadata {
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
            };
            let requests: Vec<AppendRequest> = recipients
                .into_iter()
                .map(|recipient| {
                    let facts = NoticeFacts {
                        incident_id: incident.id,
                        title: incident.title.clone(),
                        service_name: service.as_ref().map(|(name, _)| name.clone()),
                        severity: incident.severity.as_str().to_owned(),
                        status: incident.status.as_str().to_owned(),
                        impact_start: incident.impact_start,
                        impact_end: incident.impact_end,
                        resolved_at: incident.resolved_at,
                        escalation_level: level,
                        escalated_by_hand: by_hand,
                        recipient_name: recipient.name.clone(),
                    };
                    let message = notice::render(kind, &recipient.locale, &facts);
                    let id = notification::notification_id(event.event_id, &recipient.email);
                    let requested = NotificationEvent::NotificationRequested {
                        notification_id: id,
                        kind,
                        cause_event_id: event.event_id,
                        incident_id: Some(incident.id),
                        recipient,
                        message,
                    };
                    AppendRequest {
                        tenant_id: event.tenant_id,
                        streams: vec![StreamAppend {
                            stream_id: notification::notification_stream(id),
                            expected: ExpectedVersion::NoStream,
                            events: vec![NewEvent::new(
                                requested.type_name(),
                                requested.payload(),
                                meta.clone(),
                                event.recorded_at,
                            )],
                        }],
                        idempotency: None,
                    }
                })
                .collect();
            let refs: Vec<&AppendRequest> = requests.iter().collect();
            // A conflict means this fact already asked for that recipient.
            for outcome in write_batch(tx, &refs).await? {
                match outcome {
                    Ok(_) | Err(crate::AppendError::Conflict { .. }) => {}
                    Err(e) => {
                        return Err(StoreError::Corrupt(format!("notification request: {e}")))
                    }
                }
            }
            Ok(())
        })
    }
}

/// The incident as it stood right after `event`.
async fn incident_at(
    tx: &Transaction<'_>,
    event: &RecordedEvent,
) -> Result<Option<Incident>, StoreError> {
    let events = read::read_stream(tx, event.tenant_id, &event.stream_id, None).await?;
    Ok(events
        .iter()
        .take_while(|e| e.stream_version <= event.stream_version)
        .fold(None, |i, e| {
            match IncidentEvent::from_stored(&e.event_type, &e.payload) {
                Some(ev) => incident::evolve(i, &ev, e.recorded_at),
                None => i,
            }
        }))
}

/// A service's name and client.
async fn service_of(
    tx: &Transaction<'_>,
    tenant: Uuid,
    service: Uuid,
) -> Result<Option<(String, Uuid)>, StoreError> {
    let row = tx
        .query_opt(
            "SELECT name, client_id FROM proj_services WHERE tenant_id = $1 AND service_id = $2",
            &[&tenant, &service],
        )
        .await?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}

async fn responders(
    tx: &Transaction<'_>,
    tenant: Uuid,
    users: &[Uuid],
) -> Result<Vec<Recipient>, StoreError> {
    let rows = tx
        .query(
            "SELECT user_id, name, email, locale FROM proj_users \
             WHERE tenant_id = $1 AND user_id = ANY($2) ORDER BY user_id",
            &[&tenant, &users],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Recipient {
            user_id: Some(r.get(0)),
            name: r.get(1),
            email: r.get(2),
            locale: r.get(3),
            subscription_id: None,
            client_id: None,
        })
        .collect())
}

async fn subscribers(
    tx: &Transaction<'_>,
    tenant: Uuid,
    service: Uuid,
    client_id: Uuid,
    kind: NoticeKind,
    severity: Severity,
) -> Result<Vec<Recipient>, StoreError> {
    let rows = tx
        .query(
            "SELECT subscription_id, name, email, locale, kinds, min_severity FROM proj_subscriptions \
             WHERE tenant_id = $1 AND service_id = $2 AND active ORDER BY created_at",
            &[&tenant, &service],
        )
        .await?;
    let mut out: Vec<Recipient> = Vec::new();
    for r in &rows {
        let kinds: Vec<String> = r.get(4);
        let kinds: Vec<NoticeKind> = kinds.iter().filter_map(|k| NoticeKind::parse(k)).collect();
        let min: String = r.get(5);
        let Some(min) = Severity::parse_loose(&min) else {
            continue;
        };
        let email: String = r.get(2);
        // Two subscriptions of one address are one recipient.
        if !opsledger_domain::roster::wants(&kinds, min, kind, severity)
            || out.iter().any(|o| o.email.eq_ignore_ascii_case(&email))
        {
            continue;
        }
        out.push(Recipient {
            subscription_id: Some(r.get(0)),
            name: r.get(1),
            email,
            locale: r.get(3),
            user_id: None,
            client_id: Some(client_id),
        });
    }
    Ok(out)
}
