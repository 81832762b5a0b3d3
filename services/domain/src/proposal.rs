//! Improvement proposals (SPEC §5): raised → approved | rejected →
//! implemented (by a completed change) → verified. A proposal exists to stop
//! a failure from recurring, so when it recurs after all, a verified proposal
//! loses that status until someone reviews it and verifies it again.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::access::{Role, MAINTAINERS};
use crate::aggregate::{existing, stored_events, Aggregate, By, Outcome};
use crate::incident::text;
use crate::Rejection;

pub fn proposal_stream(id: Uuid) -> String {
    format!("proposal-{id}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = ProposalStatus)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Raised,
    Approved,
    Rejected,
    Implemented,
    Verified,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Raised => "raised",
            Status::Approved => "approved",
            Status::Rejected => "rejected",
            Status::Implemented => "implemented",
            Status::Verified => "verified",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        [
            Status::Raised,
            Status::Approved,
            Status::Rejected,
            Status::Implemented,
            Status::Verified,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum ProposalEvent {
    ProposalRaised {
        proposal_id: Uuid,
        title: String,
        description: String,
        /// The incident it follows, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        incident_id: Option<Uuid>,
        service_ids: Vec<Uuid>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        minutes_spent: Option<u32>,
    },
    ProposalApproved {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        comment: Option<String>,
    },
    ProposalRejected {
        reason: String,
    },
    /// Carried out by this change, which had completed.
    ProposalImplemented {
        change_id: Uuid,
    },
    /// Somebody checked that it does what it was for.
    ProposalVerified {
        note: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        minutes_spent: Option<u32>,
    },
    /// What it should have prevented happened again: `incident_id` recurs
    /// `earlier_incident_id`. It needs review (and verifying again).
    ProposalVerificationLapsed {
        incident_id: Uuid,
        earlier_incident_id: Uuid,
    },
}

impl ProposalEvent {
    pub fn type_name(&self) -> &'static str {
        match self {
            ProposalEvent::ProposalRaised { .. } => "ProposalRaised",
            ProposalEvent::ProposalApproved { .. } => "ProposalApproved",
            ProposalEvent::ProposalRejected { .. } => "ProposalRejected",
            ProposalEvent::ProposalImplemented { .. } => "ProposalImplemented",
            ProposalEvent::ProposalVerified { .. } => "ProposalVerified",
            ProposalEvent::ProposalVerificationLapsed { .. } => "ProposalVerificationLapsed",
        }
    }
    pub fn payload(&self) -> serde_json::Value {
        crate::event::untagged_payload(self)
    }
    pub fn from_stored(event_type: &str, payload: &serde_json::Value) -> Option<ProposalEvent> {
        crate::event::from_tagged(event_type, payload)
    }
}

/// A proposal as folded from its events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Proposal {
    pub id: Uuid,
    pub title: String,
    pub description: String,
    pub incident_id: Option<Uuid>,
    pub service_ids: Vec<Uuid>,
    pub status: Status,
    /// Who raised it: approval must come from somebody else.
    pub raised_by: String,
    pub raised_at: DateTime<Utc>,
    pub decided_by: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
    pub decision_note: Option<String>,
    pub change_id: Option<Uuid>,
    pub implemented_at: Option<DateTime<Utc>>,
    pub verified_by: Option<String>,
    pub verified_at: Option<DateTime<Utc>>,
    /// Set when the failure it was to prevent recurred after verification:
    /// the recurring incident. Cleared by verifying again.
    pub needs_review: Option<Uuid>,
}

/// Folds one event, recorded at `at` by `actor`.
pub fn evolve(
    proposal: Option<Proposal>,
    event: &ProposalEvent,
    at: DateTime<Utc>,
    actor: &str,
) -> Option<Proposal> {
    if let ProposalEvent::ProposalRaised {
        proposal_id,
        title,
        description,
        incident_id,
        service_ids,
        ..
    } = event
    {
        return Some(Proposal {
            id: *proposal_id,
            title: title.clone(),
            description: description.clone(),
            incident_id: *incident_id,
            service_ids: service_ids.clone(),
            status: Status::Raised,
            raised_by: actor.to_owned(),
            raised_at: at,
            decided_by: None,
            decided_at: None,
            decision_note: None,
            change_id: None,
            implemented_at: None,
            verified_by: None,
            verified_at: None,
            needs_review: None,
        });
    }
    let mut p = proposal?;
    match event {
        ProposalEvent::ProposalRaised { .. } => {}
        ProposalEvent::ProposalApproved { comment } => {
            p.status = Status::Approved;
            p.decided_by = Some(actor.to_owned());
            p.decided_at = Some(at);
            p.decision_note = comment.clone();
        }
        ProposalEvent::ProposalRejected { reason } => {
            p.status = Status::Rejected;
            p.decided_by = Some(actor.to_owned());
            p.decided_at = Some(at);
            p.decision_note = Some(reason.clone());
        }
        ProposalEvent::ProposalImplemented { change_id } => {
            p.status = Status::Implemented;
            p.change_id = Some(*change_id);
            p.implemented_at = Some(at);
        }
        ProposalEvent::ProposalVerified { .. } => {
            p.status = Status::Verified;
            p.verified_by = Some(actor.to_owned());
            p.verified_at = Some(at);
            p.needs_review = None;
        }
        ProposalEvent::ProposalVerificationLapsed { incident_id, .. } => {
            p.status = Status::Implemented;
            p.needs_review = Some(*incident_id);
        }
    }
    Some(p)
}

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Starts a proposal (see [`raise`]).
    Raise {
        proposal_id: Uuid,
        title: String,
        description: String,
        incident_id: Option<Uuid>,
        service_ids: Vec<Uuid>,
        minutes_spent: Option<u32>,
    },
    Approve {
        comment: Option<String>,
    },
    Reject {
        reason: String,
    },
    /// `change_completed` is what the log says of the change: the caller
    /// looks, so this stays pure.
    Implement {
        change_id: Uuid,
        change_completed: bool,
    },
    Verify {
        note: String,
        minutes_spent: Option<u32>,
    },
    Lapse {
        incident_id: Uuid,
        earlier_incident_id: Uuid,
    },
}

/// Who may raise one: anyone on the staff who saw what should not happen again.
pub const PROPOSAL_RAISERS: &[Role] = &[
    Role::Operator,
    Role::Maintainer,
    Role::Approver,
    Role::Admin,
];
/// Who may approve or reject: approvers (SPEC §1).
pub const PROPOSAL_APPROVERS: &[Role] = &[Role::Approver, Role::Admin];
/// Who may verify one: approvers and the maintenance team that carried it out.
pub const PROPOSAL_VERIFIERS: &[Role] = &[Role::Approver, Role::Maintainer, Role::Admin];

impl Command {
    pub fn roles(&self) -> &'static [Role] {
        match self {
            Command::Raise { .. } => PROPOSAL_RAISERS,
            Command::Approve { .. } | Command::Reject { .. } => PROPOSAL_APPROVERS,
            Command::Implement { .. } => MAINTAINERS,
            Command::Verify { .. } => PROPOSAL_VERIFIERS,
            // Only the recurrence detector lapses a verification.
            Command::Lapse { .. } => &[],
        }
    }
}

fn invalid_in(command: &str, status: Status) -> Rejection {
    Rejection::InvalidState {
        entity: "proposal",
        command: command.to_owned(),
        state: status.as_str().to_owned(),
    }
}

/// Checks what a new proposal says and returns its first event.
pub fn raise(
    id: Uuid,
    title: &str,
    description: &str,
    incident_id: Option<Uuid>,
    service_ids: Vec<Uuid>,
    minutes_spent: Option<u32>,
) -> Result<ProposalEvent, Rejection> {
    let title = crate::text::Name::parse("title", title).map_err(Rejection::Invalid)?;
    if incident_id.is_none() && service_ids.is_empty() {
        return Err(Rejection::Invalid(
            "a proposal names the incident it follows or the services it improves".into(),
        ));
    }
    let mut services = service_ids;
    services.sort();
    services.dedup();
    Ok(ProposalEvent::ProposalRaised {
        proposal_id: id,
        title: title.as_str().to_owned(),
        description: text("description", description)?,
        incident_id,
        service_ids: services,
        minutes_spent: crate::worklog::minutes(minutes_spent)?,
    })
}

/// Decides a command by `actor` on the proposal's current state.
pub fn decide(
    p: &Proposal,
    command: Command,
    actor: &str,
) -> Result<Vec<ProposalEvent>, Rejection> {
    use Status::*;
    let s = p.status;
    let event = match command {
        Command::Raise { .. } => return Err(Rejection::AlreadyExists(format!("proposal {}", p.id))),
        Command::Approve { comment } => match s {
            Raised => {
                four_eyes(p, actor, "approve")?;
                ProposalEvent::ProposalApproved {
                    comment: comment.map(|c| text("comment", &c)).transpose()?,
                }
            }
            _ => return Err(invalid_in("approve", s)),
        },
        Command::Reject { reason } => match s {
            Raised => {
                four_eyes(p, actor, "reject")?;
                ProposalEvent::ProposalRejected {
                    reason: text("reason", &reason)?,
                }
            }
            _ => return Err(invalid_in("reject", s)),
        },
        Command::Implement {
            change_id,
            change_completed,
        } => match s {
            Approved if change_completed => ProposalEvent::ProposalImplemented { change_id },
            Approved => {
                return Err(Rejection::Invalid(format!(
                    "change {change_id} has not completed: a proposal is implemented by a completed change"
                )))
            }
            _ => return Err(invalid_in("implement", s)),
        },
        Command::Verify {
            note,
            minutes_spent,
        } => match s {
            Implemented => ProposalEvent::ProposalVerified {
                note: text("note", &note)?,
                minutes_spent: crate::worklog::minutes(minutes_spent)?,
            },
            _ => return Err(invalid_in("verify", s)),
        },
        Command::Lapse {
            incident_id,
            earlier_incident_id,
        } => match s {
            Verified => ProposalEvent::ProposalVerificationLapsed {
                incident_id,
                earlier_incident_id,
            },
            _ => return Ok(Vec::new()),
        },
    };
    Ok(vec![event])
}

/// The one who raised a proposal does not also decide it.
fn four_eyes(p: &Proposal, actor: &str, what: &str) -> Result<(), Rejection> {
    if p.raised_by == actor {
        return Err(Rejection::Forbidden(format!(
            "{actor} raised this proposal and may not {what} it: another approver must"
        )));
    }
    Ok(())
}

impl Aggregate for Proposal {
    stored_events!(ProposalEvent, proposal_stream);
    type Command = Command;
    type Context = ();
    const NOUN: &'static str = "proposal";

    fn evolve(
        state: Option<Self>,
        event: &ProposalEvent,
        at: DateTime<Utc>,
        by: By<'_>,
    ) -> Option<Self> {
        evolve(state, event, at, by.actor)
    }
    fn status(&self) -> &'static str {
        self.status.as_str()
    }
    fn decide(
        state: Option<&Self>,
        command: Command,
        _: &(),
        actor: &str,
    ) -> Result<Outcome<ProposalEvent>, Rejection> {
        match (state, command) {
            (
                None,
                Command::Raise {
                    proposal_id,
                    title,
                    description,
                    incident_id,
                    service_ids,
                    minutes_spent,
                },
            ) => raise(
                proposal_id,
                &title,
                &description,
                incident_id,
                service_ids,
                minutes_spent,
            )
            .map(|e| Outcome::only(vec![e])),
            (state, command) => {
                decide(existing(state, "decide on")?, command, actor).map(Outcome::only)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    fn raised() -> Proposal {
        let e = raise(
            Uuid::from_u128(1),
            " Pool limits ",
            "Cap every job's pool",
            None,
            vec![Uuid::from_u128(9), Uuid::from_u128(9)],
            Some(20),
        )
        .unwrap();
        evolve(None, &e, at(), "mia").unwrap()
    }

    fn run(p: Proposal, c: Command, actor: &str) -> Result<Proposal, Rejection> {
        let events = decide(&p, c, actor)?;
        Ok(events
            .iter()
            .try_fold(p, |p, e| evolve(Some(p), e, at(), actor))
            .unwrap())
    }

    #[test]
    fn raising_names_an_incident_or_services_once() {
        let p = raised();
        assert_eq!(p.title, "Pool limits");
        assert_eq!(p.service_ids, vec![Uuid::from_u128(9)]);
        assert_eq!(p.raised_by, "mia");
        assert!(raise(Uuid::from_u128(1), "t", "d", None, vec![], None).is_err());
        assert!(raise(
            Uuid::from_u128(1),
            "t",
            " ",
            Some(Uuid::from_u128(2)),
            vec![],
            None
        )
        .is_err());
    }

    #[test]
    fn who_raised_it_neither_approves_nor_rejects_it() {
        let approve = || Command::Approve { comment: None };
        assert!(matches!(
            run(raised(), approve(), "mia"),
            Err(Rejection::Forbidden(_))
        ));
        let reject = Command::Reject {
            reason: "no".into(),
        };
        assert!(matches!(
            run(raised(), reject, "mia"),
            Err(Rejection::Forbidden(_))
        ));
        let p = run(raised(), approve(), "arno").unwrap();
        assert_eq!(p.status, Status::Approved);
        assert_eq!(p.decided_by.as_deref(), Some("arno"));
        assert!(matches!(
            run(p, approve(), "arno"),
            Err(Rejection::InvalidState { .. })
        ));
    }

    #[test]
    fn only_a_completed_change_implements_it_and_a_recurrence_lapses_its_verification() {
        let p = run(raised(), Command::Approve { comment: None }, "arno").unwrap();
        let implement = |done| Command::Implement {
            change_id: Uuid::from_u128(5),
            change_completed: done,
        };
        assert!(matches!(
            run(p.clone(), implement(false), "mia"),
            Err(Rejection::Invalid(_))
        ));
        let p = run(p, implement(true), "mia").unwrap();
        assert_eq!(p.change_id, Some(Uuid::from_u128(5)));
        let lapse = || Command::Lapse {
            incident_id: Uuid::from_u128(7),
            earlier_incident_id: Uuid::from_u128(6),
        };
        // Nothing to lapse before it was verified.
        assert!(decide(&p, lapse(), "system").unwrap().is_empty());
        let verify = || Command::Verify {
            note: "no exhaustion for a week".into(),
            minutes_spent: None,
        };
        let p = run(p, verify(), "arno").unwrap();
        assert_eq!(p.status, Status::Verified);
        let p = run(p, lapse(), "system").unwrap();
        assert_eq!(p.status, Status::Implemented);
        assert_eq!(p.needs_review, Some(Uuid::from_u128(7)));
        let p = run(p, verify(), "arno").unwrap();
        assert_eq!(p.status, Status::Verified);
        assert_eq!(p.needs_review, None);
    }
}
