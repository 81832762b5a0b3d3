//! Client inquiries (SPEC §2, §4): a client's question, minor request or
//! suggestion about one of its services. Stream `inquiry-<id>`.
//!
//! open → answered (any number of answers) → closed; open or answered →
//! escalated (to maintenance) → answered there, or closed. An inquiry is in
//! the operations queue until it is closed or escalated, and in the
//! maintenance queue while it is escalated and not closed.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::aggregate::{existing, stored_events, Aggregate, By, Outcome};
use crate::incident::Team;
use crate::text::Name;
use crate::worklog::{minutes_spent, optional_text, text};
use crate::Rejection;

/// Answers one inquiry keeps at most: a conversation longer than this is a
/// change request or an incident.
pub const ANSWERS_MAX: usize = 200;

pub fn inquiry_stream(id: Uuid) -> String {
    format!("inquiry-{id}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InquiryKind {
    Question,
    MinorRequest,
    Suggestion,
}

impl InquiryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            InquiryKind::Question => "question",
            InquiryKind::MinorRequest => "minor_request",
            InquiryKind::Suggestion => "suggestion",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InquiryStatus {
    Open,
    Answered,
    Escalated,
    Closed,
}

impl InquiryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            InquiryStatus::Open => "open",
            InquiryStatus::Answered => "answered",
            InquiryStatus::Escalated => "escalated",
            InquiryStatus::Closed => "closed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum InquiryEvent {
    InquiryOpened {
        inquiry_id: Uuid,
        service_id: Uuid,
        client_id: Uuid,
        kind: InquiryKind,
        subject: String,
        body: String,
    },
    InquiryAnswered {
        service_id: Uuid,
        /// Shown to the client.
        answer: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        minutes_spent: Option<u32>,
    },
    InquiryEscalated {
        service_id: Uuid,
        to: Team,
        /// Staff only.
        reason: String,
    },
    InquiryClosed {
        service_id: Uuid,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
}

impl InquiryEvent {
    pub fn type_name(&self) -> &'static str {
        match self {
            InquiryEvent::InquiryOpened { .. } => "InquiryOpened",
            InquiryEvent::InquiryAnswered { .. } => "InquiryAnswered",
            InquiryEvent::InquiryEscalated { .. } => "InquiryEscalated",
            InquiryEvent::InquiryClosed { .. } => "InquiryClosed",
        }
    }
    pub fn payload(&self) -> serde_json::Value {
        crate::event::untagged_payload(self)
    }
    pub fn from_stored(event_type: &str, payload: &serde_json::Value) -> Option<InquiryEvent> {
        crate::event::from_tagged(event_type, payload)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Answer {
    pub text: String,
    /// Who answered; absent in a client's view.
    #[schema(required = false)]
    pub answered_by: String,
    pub answered_at: DateTime<Utc>,
    /// The effort; absent in a client's view.
    pub minutes_spent: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Inquiry {
    pub id: Uuid,
    pub service_id: Uuid,
    pub client_id: Uuid,
    pub kind: InquiryKind,
    pub subject: String,
    pub body: String,
    pub status: InquiryStatus,
    pub opened_at: DateTime<Utc>,
    /// Who opened it; absent in a client's view.
    #[schema(required = false)]
    pub opened_by: String,
    /// The role of whoever opened it: `client`, or staff on a client's behalf.
    pub opened_by_role: String,
    pub answers: Vec<Answer>,
    pub escalated_at: Option<DateTime<Utc>>,
    /// Why it went to maintenance; absent in a client's view.
    pub escalation_reason: Option<String>,
    pub closed_at: Option<DateTime<Utc>>,
    pub close_note: Option<String>,
}

impl Inquiry {
    /// The queue it waits in, if any.
    pub fn team(&self) -> Option<Team> {
        match self.status {
            InquiryStatus::Open | InquiryStatus::Answered => Some(Team::Operations),
            InquiryStatus::Escalated => Some(Team::Maintenance),
            InquiryStatus::Closed => None,
        }
    }
}

/// Folds one event, made by `by` in role `role` and recorded at `at`.
pub fn evolve(
    inquiry: Option<Inquiry>,
    event: &InquiryEvent,
    by: &str,
    role: &str,
    at: DateTime<Utc>,
) -> Option<Inquiry> {
    if let InquiryEvent::InquiryOpened {
        inquiry_id,
        service_id,
        client_id,
        kind,
        subject,
        body,
    } = event
    {
        return Some(Inquiry {
            id: *inquiry_id,
            service_id: *service_id,
            client_id: *client_id,
            kind: *kind,
            subject: subject.clone(),
            body: body.clone(),
            status: InquiryStatus::Open,
            opened_at: at,
            opened_by: by.to_owned(),
            opened_by_role: role.to_owned(),
            answers: Vec::new(),
            escalated_at: None,
            escalation_reason: None,
            closed_at: None,
            close_note: None,
        });
    }
    let mut i = inquiry?;
    match event {
        InquiryEvent::InquiryOpened { .. } => {}
        InquiryEvent::InquiryAnswered {
            answer,
            minutes_spent,
            ..
        } => {
            i.answers.push(Answer {
                text: answer.clone(),
                answered_by: by.to_owned(),
                answered_at: at,
                minutes_spent: *minutes_spent,
            });
            // An escalated inquiry stays with maintenance until it is closed.
            if i.status == InquiryStatus::Open {
                i.status = InquiryStatus::Answered;
            }
        }
        InquiryEvent::InquiryEscalated { reason, .. } => {
            i.status = InquiryStatus::Escalated;
            i.escalated_at = Some(at);
            i.escalation_reason = Some(reason.clone());
        }
        InquiryEvent::InquiryClosed { note, .. } => {
            i.status = InquiryStatus::Closed;
            i.closed_at = Some(at);
            i.close_note = note.clone();
        }
    }
    Some(i)
}

/// Opens an inquiry about a service of `client_id`.
pub fn open(
    inquiry_id: Uuid,
    service_id: Uuid,
    client_id: Uuid,
    kind: InquiryKind,
    subject: &str,
    body: &str,
) -> Result<InquiryEvent, Rejection> {
    Ok(InquiryEvent::InquiryOpened {
        inquiry_id,
        service_id,
        client_id,
        kind,
        subject: Name::parse("subject", subject)
            .map_err(Rejection::Invalid)?
            .as_str()
            .to_owned(),
        body: text("body", body)?,
    })
}

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Starts one (see [`open`]).
    Open {
        inquiry_id: Uuid,
        service_id: Uuid,
        kind: InquiryKind,
        subject: String,
        body: String,
    },
    Answer {
        answer: String,
        minutes_spent: Option<i64>,
    },
    Escalate {
        reason: String,
    },
    Close {
        note: Option<String>,
    },
}

fn refused(i: &Inquiry, what: &str) -> Rejection {
    Rejection::Refused {
        detail: format!("cannot {what} an inquiry that is {}", i.status.as_str()),
        state: i.status.as_str().to_owned(),
    }
}

pub fn decide(i: &Inquiry, command: Command) -> Result<InquiryEvent, Rejection> {
    use InquiryStatus::*;
    let service_id = i.service_id;
    match command {
        Command::Open { .. } => Err(Rejection::AlreadyExists(format!("inquiry {}", i.id))),
        Command::Answer {
            answer,
            minutes_spent: minutes,
        } => match i.status {
            Closed => Err(refused(i, "answer")),
            _ if i.answers.len() >= ANSWERS_MAX => Err(Rejection::Invalid(format!(
                "an inquiry keeps at most {ANSWERS_MAX} answers"
            ))),
            _ => Ok(InquiryEvent::InquiryAnswered {
                service_id,
                answer: text("answer", &answer)?,
                minutes_spent: minutes_spent(minutes)?,
            }),
        },
        Command::Escalate { reason } => match i.status {
            Open | Answered => Ok(InquiryEvent::InquiryEscalated {
                service_id,
                to: Team::Maintenance,
                reason: text("reason", &reason)?,
            }),
            _ => Err(refused(i, "escalate")),
        },
        Command::Close { note } => match i.status {
            Closed => Err(refused(i, "close")),
            _ => Ok(InquiryEvent::InquiryClosed {
                service_id,
                note: optional_text("note", note.as_deref())?,
            }),
        },
    }
}

/// What opening an inquiry needs from beyond its stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Context {
    /// The client owning the service asked about; `None`: no such service.
    pub client_id: Option<Uuid>,
}

impl Aggregate for Inquiry {
    stored_events!(InquiryEvent, inquiry_stream);
    type Command = Command;
    type Context = Context;
    const NOUN: &'static str = "inquiry";

    fn evolve(
        state: Option<Self>,
        event: &InquiryEvent,
        at: DateTime<Utc>,
        by: By<'_>,
    ) -> Option<Self> {
        evolve(state, event, by.actor, by.role, at)
    }
    fn status(&self) -> &'static str {
        self.status.as_str()
    }
    fn decide(
        state: Option<&Self>,
        command: Command,
        ctx: &Context,
        _: &str,
    ) -> Result<Outcome<InquiryEvent>, Rejection> {
        match (state, command) {
            (
                None,
                Command::Open {
                    inquiry_id,
                    service_id,
                    kind,
                    subject,
                    body,
                },
            ) => {
                let client_id = ctx
                    .client_id
                    .ok_or_else(|| Rejection::NotFound(format!("service {service_id}")))?;
                open(inquiry_id, service_id, client_id, kind, &subject, &body)
            }
            (state, command) => decide(existing(state, "change")?, command),
        }
        .map(|e| Outcome::only(vec![e]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    fn opened() -> Inquiry {
        let e = open(
            Uuid::from_u128(1),
            Uuid::from_u128(2),
            Uuid::from_u128(3),
            InquiryKind::Question,
            "Backup schedule?",
            "When do backups run?",
        )
        .unwrap();
        evolve(None, &e, "client-user", "client", at(0)).unwrap()
    }

    fn run(i: Inquiry, c: Command) -> Result<Inquiry, Rejection> {
        let e = decide(&i, c)?;
        Ok(evolve(Some(i), &e, "op", "operator", at(5)).unwrap())
    }

    fn answer(t: &str) -> Command {
        Command::Answer {
            answer: t.into(),
            minutes_spent: Some(10),
        }
    }

    #[test]
    fn answered_then_closed_leaves_the_operations_queue() {
        let i = opened();
        assert_eq!(i.team(), Some(Team::Operations));
        let i = run(i, answer("Nightly at 02:00 JST")).unwrap();
        assert_eq!(i.status, InquiryStatus::Answered);
        assert_eq!(i.team(), Some(Team::Operations));
        let i = run(i, answer("And weekly full backups")).unwrap();
        assert_eq!(i.answers.len(), 2);
        let i = run(i, Command::Close { note: None }).unwrap();
        assert_eq!((i.status, i.team()), (InquiryStatus::Closed, None));
        let err = run(i, answer("late")).unwrap_err();
        assert_eq!(
            err,
            Rejection::Refused {
                detail: "cannot answer an inquiry that is closed".into(),
                state: "closed".into()
            }
        );
    }

    #[test]
    fn escalation_moves_it_to_maintenance_once() {
        let i = run(
            opened(),
            Command::Escalate {
                reason: "needs a config change".into(),
            },
        )
        .unwrap();
        assert_eq!(i.team(), Some(Team::Maintenance));
        let err = run(
            i.clone(),
            Command::Escalate {
                reason: "again".into(),
            },
        )
        .unwrap_err();
        assert!(matches!(err, Rejection::Refused { ref state, .. } if state == "escalated"));
        // Maintenance answers; it stays theirs until closed.
        let i = run(i, answer("Done in tonight's window")).unwrap();
        assert_eq!(i.status, InquiryStatus::Escalated);
        let i = run(
            i,
            Command::Close {
                note: Some("done".into()),
            },
        )
        .unwrap();
        assert!(run(i, Command::Close { note: None }).is_err());
    }

    #[test]
    fn texts_and_effort_are_validated() {
        let i = opened();
        assert!(run(i.clone(), answer("  ")).is_err());
        assert!(run(
            i.clone(),
            Command::Answer {
                answer: "ok".into(),
                minutes_spent: Some(-5)
            }
        )
        .is_err());
        assert!(run(i, Command::Escalate { reason: "".into() }).is_err());
        assert!(open(
            Uuid::nil(),
            Uuid::nil(),
            Uuid::nil(),
            InquiryKind::Suggestion,
            "",
            "body"
        )
        .is_err());
    }

    #[test]
    fn every_event_after_the_first_names_the_service() {
        let i = opened();
        for c in [
            answer("a"),
            Command::Escalate { reason: "r".into() },
            Command::Close { note: None },
        ] {
            let e = decide(&i, c).unwrap();
            assert_eq!(e.payload()["service_id"], i.service_id.to_string());
        }
    }
}
