//! Who is told of a change's steps (SPEC §9: "requesters and approvers for
//! change steps"): pure rules, which `store::notifier` applies to every
//! change event it follows.
//!
//! | event recorded | notice | told |
//! |---|---|---|
//! | `ChangeSubmitted` (normal, emergency) | `change_awaiting_approval` | every approver but the requester |
//! | `ChangeApproved` | `change_approved` | the requester |
//! | `ChangeRejected` | `change_rejected` | the requester |
//! | `ChangeScheduled` | `change_scheduled` | the requester |
//! | `ChangeStarted` | `change_started` | the requester |
//! | `ChangeCompleted` | `change_completed` | the requester |
//! | `ChangeFailed` | `change_failed` | the requester |
//!
//! Nobody is told of the other events (requested, rolled back, reviewed,
//! linked), nor of a standard change's submission: it is pre-approved and
//! awaits nobody. The requester is told of every step listed, also one they
//! took themselves (the mail is then their record of it).
//!
//! # Who is who
//!
//! - **The requester** is the token subject that recorded the change's
//!   `ChangeRequested` (its metadata's `actor`, as `Change::requested_by`).
//! - **A subject is a roster user** (`roster::User`) when it is that user's
//!   address, compared without regard to case ([`is_subject`]): token
//!   subjects map to roster users' addresses (issue 16). A subject no roster
//!   user has (an integration, a person never registered) has no address,
//!   so it is simply not mailed, and no notification of it is recorded.
//! - **Approvers** are the roster users registered with the `approver` role
//!   (`User::roles`). Roles otherwise live only in tokens, which the server
//!   never keeps, so the roster is where an admin says who is asked: the
//!   simplest honest mapping. That role grants nothing (a token's roles say
//!   what its caller may do), and an admin, who may approve too, is asked
//!   only when registered as an approver.
//! - **Never the requester as an approver**: four eyes would refuse them
//!   the approval anyway.
//!
//! Each recipient is one address: two roster users sharing one are told
//! once. The outbox keeps it at once per (event, address) however often the
//! notifier looks (`notification::notification_id`).

use chrono::{DateTime, Utc};

use crate::change::{ChangeEvent, Kind};
use crate::notice::NoticeKind;
use crate::notification::Recipient;
use uuid::Uuid;

/// Whom a step concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// The change's requester.
    Requester,
    /// The approvers, but for the requester.
    Approvers,
}

/// What a change's step tells, and whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepNotice {
    pub kind: NoticeKind,
    pub audience: Audience,
    /// The approval's comment, the rejection's or failure's reason, the
    /// completion's note.
    pub note: Option<String>,
    /// The schedule, for `change_scheduled`.
    pub schedule: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

/// The notice a change event calls for (the change being of `kind`), or
/// `None` when nobody is told of it.
pub fn step_notice(kind: Kind, event: &ChangeEvent) -> Option<StepNotice> {
    let tell = |kind, audience, note: &Option<String>| StepNotice {
        kind,
        audience,
        note: note.clone(),
        schedule: None,
    };
    use Audience::*;
    Some(match event {
        ChangeEvent::ChangeSubmitted { .. } if kind != Kind::Standard => {
            tell(NoticeKind::ChangeAwaitingApproval, Approvers, &None)
        }
        ChangeEvent::ChangeApproved { comment, .. } => {
            tell(NoticeKind::ChangeApproved, Requester, comment)
        }
        ChangeEvent::ChangeRejected { reason, .. } => {
            tell(NoticeKind::ChangeRejected, Requester, &Some(reason.clone()))
        }
        ChangeEvent::ChangeScheduled { start, end, .. } => StepNotice {
            schedule: Some((*start, *end)),
            ..tell(NoticeKind::ChangeScheduled, Requester, &None)
        },
        ChangeEvent::ChangeStarted { .. } => tell(NoticeKind::ChangeStarted, Requester, &None),
        ChangeEvent::ChangeCompleted { note, .. } => {
            tell(NoticeKind::ChangeCompleted, Requester, note)
        }
        ChangeEvent::ChangeFailed { reason, .. } => {
            tell(NoticeKind::ChangeFailed, Requester, &Some(reason.clone()))
        }
        ChangeEvent::ChangeRequested { .. }
        | ChangeEvent::ChangeSubmitted { .. }
        | ChangeEvent::ChangeRolledBack { .. }
        | ChangeEvent::ChangeReviewed { .. }
        | ChangeEvent::ChangeLinked { .. } => return None,
    })
}

/// Whether token subject `subject` names the roster user of address
/// `email`: the same address, whatever the case (lower-cased as
/// `notification::notification_id` does, and as the read models' `lower`).
pub fn is_subject(email: &str, subject: &str) -> bool {
    email.trim().to_lowercase() == subject.trim().to_lowercase()
}

/// A roster user, as who is told weighs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterUser {
    pub user_id: Uuid,
    pub name: String,
    pub email: String,
    pub locale: String,
    /// Registered with the `approver` role.
    pub approver: bool,
}

/// Who among `roster` is told of a step concerning `audience`, for a change
/// that `requester` (a token subject) requested: one recipient per address,
/// in roster order.
pub fn recipients(audience: Audience, requester: &str, roster: &[RosterUser]) -> Vec<Recipient> {
    let mut out: Vec<Recipient> = Vec::new();
    for u in roster {
        let told = match audience {
            Audience::Requester => is_subject(&u.email, requester),
            Audience::Approvers => u.approver && !is_subject(&u.email, requester),
        };
        if !told || out.iter().any(|o| is_subject(&o.email, &u.email)) {
            continue;
        }
        out.push(Recipient {
            name: u.name.clone(),
            email: u.email.clone(),
            locale: u.locale.clone(),
            user_id: Some(u.user_id),
            subscription_id: None,
            client_id: None,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::{self, Category, Change, Command, Context, Request, Risk};

    const ALICE: &str = "Alice@MSP.example";

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    fn user(n: u128, email: &str, locale: &str, approver: bool) -> RosterUser {
        RosterUser {
            user_id: Uuid::from_u128(n),
            name: format!("user {n}"),
            email: email.into(),
            locale: locale.into(),
            approver,
        }
    }

    /// Alice (a maintainer who is also an approver), two other approvers
    /// (one registered twice under one address), and an operator.
    fn roster() -> Vec<RosterUser> {
        vec![
            user(1, "alice@msp.example", "ja", true),
            user(2, "bob@msp.example", "en", true),
            user(3, "carol@msp.example", "ja", true),
            user(4, "CAROL@msp.example", "en", true),
            user(5, "dave@msp.example", "en", false),
        ]
    }

    /// A change of `kind` that Alice requested, folded from its events.
    fn requested(kind: Kind) -> Change {
        let events = change::decide_request(Request {
            change_id: Uuid::from_u128(9),
            service_ids: vec![Uuid::from_u128(10)],
            kind,
            category: Category::SecurityPatch,
            title: "Patch OpenSSL".into(),
            description: None,
            risk: Risk::Medium,
            impact: "TLS restarts".into(),
            rollback_plan: Some("reinstall the old package".into()),
            links: vec![],
        })
        .unwrap();
        change::evolve(None, &events[0], t0(), ALICE).unwrap()
    }

    /// The event `command` records on `c`, and the change after it.
    fn step(c: Change, by: &str, command: Command) -> (ChangeEvent, Change) {
        let events = change::decide(&c, command, &Context::default()).unwrap();
        let after = change::evolve(Some(c), &events[0], t0(), by).unwrap();
        (events[0].clone(), after)
    }

    fn emails(rs: &[Recipient]) -> Vec<&str> {
        rs.iter().map(|r| r.email.as_str()).collect()
    }

    #[test]
    fn given_a_normal_change_when_submitted_then_every_approver_but_the_requester_is_asked_once_each(
    ) {
        let c = requested(Kind::Normal);
        let (submitted, c) = step(
            c,
            ALICE,
            Command::Submit {
                minutes_spent: None,
            },
        );
        let notice = step_notice(c.kind, &submitted).unwrap();
        assert_eq!(notice.kind, NoticeKind::ChangeAwaitingApproval);
        assert_eq!(notice.audience, Audience::Approvers);
        let told = recipients(notice.audience, &c.requested_by, &roster());
        // Not Alice (the requester, whatever the case of her subject), not
        // Dave (no approver), Carol once for her one address.
        assert_eq!(emails(&told), ["bob@msp.example", "carol@msp.example"]);
        assert_eq!(told[0].user_id, Some(Uuid::from_u128(2)));
        assert_eq!(
            (told[0].locale.as_str(), told[1].locale.as_str()),
            ("en", "ja")
        );
    }

    #[test]
    fn given_an_emergency_change_when_submitted_then_the_approvers_are_asked_too() {
        let c = requested(Kind::Emergency);
        let (submitted, c) = step(
            c,
            ALICE,
            Command::Submit {
                minutes_spent: None,
            },
        );
        let notice = step_notice(c.kind, &submitted).unwrap();
        assert_eq!(notice.audience, Audience::Approvers);
    }

    #[test]
    fn given_a_standard_change_when_submitted_then_nobody_is_asked() {
        let c = requested(Kind::Standard);
        let (submitted, c) = step(
            c,
            ALICE,
            Command::Submit {
                minutes_spent: None,
            },
        );
        assert_eq!(step_notice(c.kind, &submitted), None);
    }

    #[test]
    fn given_a_submitted_change_when_each_step_follows_then_only_the_requester_is_told_of_it() {
        let bob = "bob@msp.example";
        let (_, c) = step(
            requested(Kind::Normal),
            ALICE,
            Command::Submit {
                minutes_spent: None,
            },
        );
        let (approved, c) = step(
            c,
            bob,
            Command::Approve {
                by: bob.into(),
                comment: Some("go ahead".into()),
                minutes_spent: None,
            },
        );
        let start = t0() + chrono::Duration::days(2);
        let end = start + chrono::Duration::hours(1);
        let (scheduled, c) = step(
            c,
            ALICE,
            Command::Schedule {
                start,
                end,
                window_id: None,
                minutes_spent: None,
            },
        );
        let (started, c) = step(
            c,
            ALICE,
            Command::Start {
                minutes_spent: None,
            },
        );
        let (failed, c) = step(
            c,
            ALICE,
            Command::Fail {
                reason: "disk full".into(),
                minutes_spent: None,
            },
        );
        let (rolled_back, _) = step(
            c,
            ALICE,
            Command::RollBack {
                reason: "as planned".into(),
                minutes_spent: None,
            },
        );
        let expected = [
            (&approved, NoticeKind::ChangeApproved, Some("go ahead")),
            (&scheduled, NoticeKind::ChangeScheduled, None),
            (&started, NoticeKind::ChangeStarted, None),
            (&failed, NoticeKind::ChangeFailed, Some("disk full")),
        ];
        for (event, kind, note) in expected {
            let notice = step_notice(Kind::Normal, event).unwrap();
            assert_eq!((notice.kind, notice.note.as_deref()), (kind, note));
            assert_eq!(notice.audience, Audience::Requester);
            let told = recipients(notice.audience, ALICE, &roster());
            assert_eq!(emails(&told), ["alice@msp.example"], "{kind:?}");
        }
        assert_eq!(
            step_notice(Kind::Normal, &scheduled).unwrap().schedule,
            Some((start, end))
        );
        assert_eq!(step_notice(Kind::Normal, &rolled_back), None);
    }

    #[test]
    fn given_a_change_when_rejected_or_completed_then_the_requester_is_told_with_the_reason_or_note(
    ) {
        let (_, c) = step(
            requested(Kind::Normal),
            ALICE,
            Command::Submit {
                minutes_spent: None,
            },
        );
        let (rejected, _) = step(
            c,
            "bob@msp.example",
            Command::Reject {
                by: "bob@msp.example".into(),
                reason: "no rollback test".into(),
                minutes_spent: None,
            },
        );
        let notice = step_notice(Kind::Normal, &rejected).unwrap();
        assert_eq!(
            (notice.kind, notice.audience, notice.note.as_deref()),
            (
                NoticeKind::ChangeRejected,
                Audience::Requester,
                Some("no rollback test")
            )
        );

        let c = requested(Kind::Standard);
        let (_, c) = step(
            c,
            ALICE,
            Command::Start {
                minutes_spent: None,
            },
        );
        let (completed, c) = step(
            c,
            ALICE,
            Command::Complete {
                note: Some("all hosts patched".into()),
                minutes_spent: None,
            },
        );
        let notice = step_notice(c.kind, &completed).unwrap();
        assert_eq!(
            (notice.kind, notice.note.as_deref()),
            (NoticeKind::ChangeCompleted, Some("all hosts patched"))
        );
        let (reviewed, _) = step(
            c,
            ALICE,
            Command::Review {
                summary: "fine".into(),
                minutes_spent: None,
            },
        );
        assert_eq!(step_notice(Kind::Standard, &reviewed), None);
    }

    #[test]
    fn given_a_requester_with_no_roster_user_when_their_change_steps_then_nobody_is_told() {
        for audience in [Audience::Requester, Audience::Approvers] {
            let told = recipients(audience, "ci-bot", &[]);
            assert!(told.is_empty());
        }
        assert!(recipients(Audience::Requester, "ci-bot", &roster()).is_empty());
        // The approvers are asked whoever requested it.
        assert_eq!(
            emails(&recipients(Audience::Approvers, "ci-bot", &roster())),
            ["alice@msp.example", "bob@msp.example", "carol@msp.example"]
        );
    }

    #[test]
    fn a_subject_is_an_address_whatever_its_case() {
        assert!(is_subject("alice@msp.example", "Alice@MSP.example"));
        assert!(is_subject("alice@msp.example", " alice@msp.example "));
        assert!(!is_subject("alice@msp.example", "alice"));
        assert!(!is_subject("alice@msp.example", "alice@msp.example.evil"));
    }
}
