//! The notification outbox as events (SPEC §9): requested → sent | failed
//! (retried with backoff) → abandoned after the limit.
//!
//! A notification's id is derived from the fact that caused it and the
//! recipient, and its stream must not exist when it is requested: one fact
//! tells one recipient once, however often the request is made again.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::aggregate::{existing, stored_events, Aggregate, By, Outcome};
use crate::notice::{NoticeKind, RenderedNotice};
use crate::Rejection;

pub fn notification_stream(id: Uuid) -> String {
    format!("notification-{id}")
}

/// Namespace of notification ids (UUIDv5 over cause and recipient).
const NAMESPACE: Uuid = Uuid::from_u128(0x6f70_736c_6564_6765_725f_6e6f_7469_6365);

/// The one notification of `cause` (an event id) for `email`.
pub fn notification_id(cause: Uuid, email: &str) -> Uuid {
    let mut name = cause.as_bytes().to_vec();
    name.extend_from_slice(email.trim().to_lowercase().as_bytes());
    Uuid::new_v5(&NAMESPACE, &name)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    pub name: String,
    pub email: String,
    pub locale: String,
    /// A responder, or a client contact through a subscription.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<Uuid>,
}

// Built, stored and read one at a time: boxing the request's message would
// only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum NotificationEvent {
    NotificationRequested {
        notification_id: Uuid,
        kind: NoticeKind,
        /// The event that made it due.
        cause_event_id: Uuid,
        incident_id: Option<Uuid>,
        /// The change a notice of a change's step is about; left out of the
        /// payload for every other notice, as before changes were told.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        change_id: Option<Uuid>,
        recipient: Recipient,
        /// Exactly what is sent, and its hash: the ledger of who was told what.
        message: RenderedNotice,
    },
    NotificationSent {
        attempt: u32,
        /// The SMTP server's answer.
        response: String,
    },
    NotificationFailed {
        attempt: u32,
        error: String,
        retry_at: DateTime<Utc>,
    },
    NotificationAbandoned {
        attempts: u32,
        error: String,
    },
}

impl NotificationEvent {
    pub fn type_name(&self) -> &'static str {
        match self {
            NotificationEvent::NotificationRequested { .. } => "NotificationRequested",
            NotificationEvent::NotificationSent { .. } => "NotificationSent",
            NotificationEvent::NotificationFailed { .. } => "NotificationFailed",
            NotificationEvent::NotificationAbandoned { .. } => "NotificationAbandoned",
        }
    }
    pub fn payload(&self) -> serde_json::Value {
        crate::event::untagged_payload(self)
    }
    pub fn from_stored(event_type: &str, payload: &serde_json::Value) -> Option<NotificationEvent> {
        crate::event::from_tagged(event_type, payload)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = NotificationStatus)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Requested,
    Failed,
    Sent,
    Abandoned,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Requested => "requested",
            Status::Failed => "failed",
            Status::Sent => "sent",
            Status::Abandoned => "abandoned",
        }
    }
    /// Whether a sender may still try it.
    pub fn pending(self) -> bool {
        matches!(self, Status::Requested | Status::Failed)
    }
}

/// Where a notification stands, folded from its stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    pub status: Status,
    pub attempts: u32,
    pub next_attempt_at: DateTime<Utc>,
}

pub fn evolve(d: Option<Delivery>, e: &NotificationEvent, at: DateTime<Utc>) -> Option<Delivery> {
    match e {
        NotificationEvent::NotificationRequested { .. } => Some(Delivery {
            status: Status::Requested,
            attempts: 0,
            next_attempt_at: at,
        }),
        NotificationEvent::NotificationSent { attempt, .. } => d.map(|d| Delivery {
            status: Status::Sent,
            attempts: *attempt,
            ..d
        }),
        NotificationEvent::NotificationFailed {
            attempt, retry_at, ..
        } => d.map(|_| Delivery {
            status: Status::Failed,
            attempts: *attempt,
            next_attempt_at: *retry_at,
        }),
        NotificationEvent::NotificationAbandoned { attempts, .. } => d.map(|d| Delivery {
            status: Status::Abandoned,
            attempts: *attempts,
            ..d
        }),
    }
}

/// How retries are spaced and when they stop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
    pub attempts_max: u32,
}

impl Backoff {
    /// The event after failed attempt `attempt` (1-based): another try after
    /// `first · 2^(attempt-1)`, capped at `max`, or abandonment at the limit.
    pub fn after_failure(
        &self,
        attempt: u32,
        error: String,
        now: DateTime<Utc>,
    ) -> NotificationEvent {
        if attempt >= self.attempts_max {
            return NotificationEvent::NotificationAbandoned {
                attempts: attempt,
                error,
            };
        }
        let factor = 1i32 << (attempt.saturating_sub(1)).min(20);
        let wait = (self.first * factor).min(self.max);
        NotificationEvent::NotificationFailed {
            attempt,
            error,
            retry_at: now + wait,
        }
    }
}

/// A notification: who is told what, and where its delivery stands.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Notification {
    pub id: Uuid,
    pub recipient: Recipient,
    pub message: RenderedNotice,
    #[serde(flatten)]
    pub delivery: Delivery,
}

/// What one delivery attempt came to: the SMTP server's answer, or why
/// it failed; recorded `at`.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempted {
    pub result: Result<String, String>,
    pub at: DateTime<Utc>,
}

/// Asking for a notice to be sent (a worker's, due by the calendar), or
/// recording a delivery attempt.
// Built and decided one at a time, as the event it carries is.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum NotificationCommand {
    /// The `NotificationRequested` to record: once per notification id.
    Request(NotificationEvent),
    Attempt(Attempted),
}

impl Aggregate for Notification {
    stored_events!(NotificationEvent, notification_stream);
    type Command = NotificationCommand;
    /// How retries are spaced and when they stop, for an attempt.
    type Context = Option<Backoff>;
    const NOUN: &'static str = "notification";

    fn evolve(
        state: Option<Self>,
        event: &NotificationEvent,
        at: DateTime<Utc>,
        _: By<'_>,
    ) -> Option<Self> {
        let delivery = evolve(state.as_ref().map(|n| n.delivery.clone()), event, at)?;
        match (state, event) {
            (
                _,
                NotificationEvent::NotificationRequested {
                    notification_id,
                    recipient,
                    message,
                    ..
                },
            ) => Some(Notification {
                id: *notification_id,
                recipient: recipient.clone(),
                message: message.clone(),
                delivery,
            }),
            (Some(n), _) => Some(Notification { delivery, ..n }),
            (None, _) => None,
        }
    }
    fn status(&self) -> &'static str {
        self.delivery.status.as_str()
    }
    /// The attempt after the last one: sent, or failed and tried again
    /// after a wait that doubles, or abandoned at the limit. A notification
    /// settled already records no further attempt.
    fn decide(
        state: Option<&Self>,
        command: NotificationCommand,
        backoff: &Option<Backoff>,
        _: &str,
    ) -> Result<Outcome<NotificationEvent>, Rejection> {
        let attempted = match (state, command) {
            (
                None,
                NotificationCommand::Request(r @ NotificationEvent::NotificationRequested { .. }),
            ) => return Ok(Outcome::only(vec![r])),
            (Some(n), NotificationCommand::Request(_)) => {
                return Err(Rejection::AlreadyExists(format!("notification {}", n.id)))
            }
            (None, NotificationCommand::Request(_)) => {
                return Err(Rejection::Invalid(
                    "a notification begins with its request".into(),
                ))
            }
            (_, NotificationCommand::Attempt(a)) => a,
        };
        let n = existing(state, "deliver")?;
        let backoff = backoff
            .as_ref()
            .ok_or_else(|| Rejection::Invalid("an attempt is recorded with its backoff".into()))?;
        if !n.delivery.status.pending() {
            return Ok(Outcome::only(vec![]));
        }
        let attempt = n.delivery.attempts + 1;
        Ok(Outcome::only(vec![match attempted.result {
            Ok(response) => NotificationEvent::NotificationSent { attempt, response },
            Err(error) => backoff.after_failure(attempt, error, attempted.at),
        }]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_cause_and_recipient_is_one_notification() {
        let cause = Uuid::from_u128(7);
        assert_eq!(
            notification_id(cause, "Ops@Example.com "),
            notification_id(cause, "ops@example.com")
        );
        assert_ne!(
            notification_id(cause, "a@example.com"),
            notification_id(cause, "b@example.com")
        );
        assert_ne!(
            notification_id(Uuid::from_u128(8), "a@example.com"),
            notification_id(cause, "a@example.com")
        );
    }

    #[test]
    fn given_a_requested_notification_when_attempts_fail_then_succeed_then_nothing_more_is_recorded(
    ) {
        let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let by = By {
            actor: "system:mailer",
            role: "system",
        };
        let requested = NotificationEvent::NotificationRequested {
            notification_id: Uuid::from_u128(1),
            kind: NoticeKind::IncidentOpened,
            cause_event_id: Uuid::from_u128(2),
            incident_id: None,
            change_id: None,
            recipient: Recipient {
                name: "Desk".into(),
                email: "desk@client.example".into(),
                locale: "en".into(),
                user_id: None,
                subscription_id: None,
                client_id: None,
            },
            message: RenderedNotice {
                subject: "s".into(),
                body: "b".into(),
                locale: "en".into(),
                html: None,
                sha256: String::new(),
            },
        };
        let backoff = Backoff {
            first: Duration::seconds(30),
            max: Duration::minutes(10),
            attempts_max: 3,
        };
        let n = Notification::evolve(None, &requested, at, by).unwrap();
        let attempt = |n: &Notification, result| {
            Notification::decide(
                Some(n),
                NotificationCommand::Attempt(Attempted { result, at }),
                &Some(backoff),
                "system:mailer",
            )
            .unwrap()
            .events
        };
        let failed = attempt(&n, Err("refused".into()));
        assert!(matches!(
            failed[..],
            [NotificationEvent::NotificationFailed { attempt: 1, retry_at, .. }]
                if retry_at == at + Duration::seconds(30)
        ));
        let n = Notification::evolve(Some(n), &failed[0], at, by).unwrap();
        let sent = attempt(&n, Ok("250 queued".into()));
        assert!(matches!(
            sent[..],
            [NotificationEvent::NotificationSent { attempt: 2, .. }]
        ));
        let n = Notification::evolve(Some(n), &sent[0], at, by).unwrap();
        assert_eq!(n.delivery.status, Status::Sent);
        assert!(attempt(&n, Ok("250 again".into())).is_empty());
    }

    #[test]
    fn backoff_doubles_up_to_its_cap_then_abandons() {
        let b = Backoff {
            first: Duration::seconds(2),
            max: Duration::seconds(10),
            attempts_max: 5,
        };
        let now = DateTime::from_timestamp(0, 0).unwrap();
        let waits: Vec<i64> = (1..5)
            .map(|a| match b.after_failure(a, "down".into(), now) {
                NotificationEvent::NotificationFailed { retry_at, .. } => {
                    (retry_at - now).num_seconds()
                }
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(waits, [2, 4, 8, 10]);
        assert!(matches!(
            b.after_failure(5, "down".into(), now),
            NotificationEvent::NotificationAbandoned { attempts: 5, .. }
        ));
    }
}
