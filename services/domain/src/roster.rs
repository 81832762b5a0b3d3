//! The people who are told: responders (users) who are escalated to and put
//! on call, on-call schedules, and client contacts' subscriptions to their
//! services' incidents (SPEC §5, §9).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::access::Role;
use crate::aggregate::{existing, stored_events, Aggregate, By, Outcome};
use crate::alert::Severity;
use crate::notice::NoticeKind;
use crate::oncall::{Override, Schedule};
use crate::text::{Email, Locale, Name};
use crate::Rejection;

pub fn user_stream(id: Uuid) -> String {
    format!("user-{id}")
}
pub fn schedule_stream(id: Uuid) -> String {
    format!("schedule-{id}")
}
pub fn subscription_stream(id: Uuid) -> String {
    format!("subscription-{id}")
}

/// Overrides one schedule keeps at most: old ones stay in the log, and a
/// schedule is redefined when its history grows long.
pub const OVERRIDES_MAX: usize = 500;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum RosterEvent {
    /// A responder: escalation target and member of rotations.
    UserRegistered {
        user_id: Uuid,
        name: Name,
        email: Email,
        locale: Locale,
        /// The roles they are told as (see [`User::roles`]); left out of
        /// the payload when none, as users registered before roles were.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        roles: Vec<Role>,
    },
    ScheduleDefined {
        schedule_id: Uuid,
        name: Name,
        schedule: Schedule,
    },
    OverrideAdded {
        schedule_id: Uuid,
        #[serde(rename = "override")]
        added: Override,
    },
    /// A client contact asks to be told about a service's incidents.
    SubscriptionCreated {
        subscription_id: Uuid,
        client_id: Uuid,
        service_id: Uuid,
        name: Name,
        email: Email,
        locale: Locale,
        kinds: Vec<NoticeKind>,
        min_severity: Severity,
    },
    SubscriptionCancelled {
        subscription_id: Uuid,
    },
}

impl RosterEvent {
    pub fn type_name(&self) -> &'static str {
        match self {
            RosterEvent::UserRegistered { .. } => "UserRegistered",
            RosterEvent::ScheduleDefined { .. } => "ScheduleDefined",
            RosterEvent::OverrideAdded { .. } => "OverrideAdded",
            RosterEvent::SubscriptionCreated { .. } => "SubscriptionCreated",
            RosterEvent::SubscriptionCancelled { .. } => "SubscriptionCancelled",
        }
    }
    pub fn payload(&self) -> serde_json::Value {
        crate::event::untagged_payload(self)
    }
    pub fn from_stored(event_type: &str, payload: &serde_json::Value) -> Option<RosterEvent> {
        crate::event::from_tagged(event_type, payload)
    }
}

/// Whether a subscription wants this notice about an incident of this severity.
pub fn wants(
    kinds: &[NoticeKind],
    min_severity: Severity,
    kind: NoticeKind,
    severity: Severity,
) -> bool {
    // Severity orders from critical (highest) to info: "at least warning"
    // means critical, error or warning.
    kinds.contains(&kind) && severity <= min_severity
}

// -------------------------------------------------------------- aggregates

/// A responder, as registered.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct User {
    pub id: Uuid,
    pub name: Name,
    pub email: Email,
    pub locale: Locale,
    /// The staff roles the responder holds, as far as being told goes:
    /// `approver` is asked to approve changes that await approval
    /// (`domain::change_notice`). They grant nothing: what a caller may do
    /// is what its token's roles say.
    pub roles: Vec<Role>,
    pub registered_at: DateTime<Utc>,
}

/// The roles a responder may be registered with: staff roles. A client
/// contact is told through a subscription, and an integration is no person.
pub const USER_ROLES: [Role; 5] = [
    Role::Operator,
    Role::Maintainer,
    Role::Approver,
    Role::Auditor,
    Role::Admin,
];

#[derive(Debug, Clone, PartialEq)]
pub struct RegisterUser {
    pub user_id: Uuid,
    pub name: Name,
    pub email: Email,
    pub locale: Locale,
    pub roles: Vec<Role>,
}

impl Aggregate for User {
    stored_events!(RosterEvent, user_stream);
    type Command = RegisterUser;
    type Context = ();
    const NOUN: &'static str = "user";

    fn evolve(
        state: Option<Self>,
        event: &RosterEvent,
        at: DateTime<Utc>,
        _: By<'_>,
    ) -> Option<Self> {
        match event {
            RosterEvent::UserRegistered {
                user_id,
                name,
                email,
                locale,
                roles,
            } => Some(User {
                id: *user_id,
                name: name.clone(),
                email: email.clone(),
                locale: *locale,
                roles: roles.clone(),
                registered_at: at,
            }),
            _ => state,
        }
    }
    fn status(&self) -> &'static str {
        "registered"
    }
    fn decide(
        state: Option<&Self>,
        c: RegisterUser,
        _: &(),
        _: &str,
    ) -> Result<Outcome<RosterEvent>, Rejection> {
        if let Some(u) = state {
            return Err(Rejection::AlreadyExists(format!("user {}", u.id)));
        }
        if let Some(r) = c.roles.iter().find(|r| !USER_ROLES.contains(r)) {
            return Err(Rejection::Invalid(format!(
                "roles: a responder holds staff roles only (operator, maintainer, approver, \
                 auditor, admin), not {}",
                r.as_str()
            )));
        }
        let mut roles = c.roles;
        roles.sort_by_key(|r| USER_ROLES.iter().position(|u| u == r));
        roles.dedup();
        Ok(Outcome::only(vec![RosterEvent::UserRegistered {
            user_id: c.user_id,
            name: c.name,
            email: c.email,
            locale: c.locale,
            roles,
        }]))
    }
}

/// An on-call schedule: its definition and the overrides added since.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct OnCallSchedule {
    pub id: Uuid,
    pub name: Name,
    #[serde(flatten)]
    pub schedule: Schedule,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ScheduleCommand {
    Define {
        schedule_id: Uuid,
        name: Name,
        schedule: Schedule,
    },
    AddOverride(Override),
}

impl Aggregate for OnCallSchedule {
    stored_events!(RosterEvent, schedule_stream);
    type Command = ScheduleCommand;
    type Context = ();
    const NOUN: &'static str = "schedule";

    fn evolve(
        state: Option<Self>,
        event: &RosterEvent,
        _: DateTime<Utc>,
        _: By<'_>,
    ) -> Option<Self> {
        match (state, event) {
            (
                _,
                RosterEvent::ScheduleDefined {
                    schedule_id,
                    name,
                    schedule,
                },
            ) => Some(OnCallSchedule {
                id: *schedule_id,
                name: name.clone(),
                schedule: schedule.clone(),
            }),
            (Some(mut s), RosterEvent::OverrideAdded { added, .. }) => {
                s.schedule.overrides.push(added.clone());
                Some(s)
            }
            (state, _) => state,
        }
    }
    fn status(&self) -> &'static str {
        "defined"
    }
    /// A schedule, and each override added, must leave it valid; a schedule
    /// keeps at most `OVERRIDES_MAX` overrides (it is defined anew instead).
    fn decide(
        state: Option<&Self>,
        command: ScheduleCommand,
        _: &(),
        _: &str,
    ) -> Result<Outcome<RosterEvent>, Rejection> {
        let event = match (state, command) {
            (
                None,
                ScheduleCommand::Define {
                    schedule_id,
                    name,
                    schedule,
                },
            ) => {
                crate::oncall::validate(&schedule).map_err(Rejection::Invalid)?;
                RosterEvent::ScheduleDefined {
                    schedule_id,
                    name,
                    schedule,
                }
            }
            (Some(s), ScheduleCommand::Define { .. }) => {
                return Err(Rejection::AlreadyExists(format!("schedule {}", s.id)))
            }
            (state, ScheduleCommand::AddOverride(added)) => {
                let s = existing(state, "add an override to")?;
                if s.schedule.overrides.len() >= OVERRIDES_MAX {
                    return Err(Rejection::Invalid(format!(
                        "a schedule keeps at most {OVERRIDES_MAX} overrides; define it anew"
                    )));
                }
                let mut after = s.schedule.clone();
                after.overrides.push(added.clone());
                crate::oncall::validate(&after).map_err(Rejection::Invalid)?;
                RosterEvent::OverrideAdded {
                    schedule_id: s.id,
                    added,
                }
            }
        };
        Ok(Outcome::only(vec![event]))
    }
}

/// A client contact's subscription to a service's notices.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Subscription {
    pub id: Uuid,
    pub client_id: Uuid,
    pub service_id: Uuid,
    pub name: Name,
    pub email: Email,
    pub locale: Locale,
    pub kinds: Vec<NoticeKind>,
    pub min_severity: Severity,
    pub active: bool,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SubscriptionCommand {
    Create {
        subscription_id: Uuid,
        service_id: Uuid,
        name: Name,
        email: Email,
        locale: Locale,
        kinds: Vec<NoticeKind>,
        min_severity: Severity,
    },
    Cancel,
}

/// What creating a subscription needs from beyond its stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SubscriptionContext {
    /// The client owning the service, when the caller may subscribe its
    /// contacts (`None`: no such service, as far as the caller may know).
    pub client_id: Option<Uuid>,
}

impl Aggregate for Subscription {
    stored_events!(RosterEvent, subscription_stream);
    type Command = SubscriptionCommand;
    type Context = SubscriptionContext;
    const NOUN: &'static str = "subscription";

    fn evolve(
        state: Option<Self>,
        event: &RosterEvent,
        at: DateTime<Utc>,
        _: By<'_>,
    ) -> Option<Self> {
        match (state, event) {
            (
                _,
                RosterEvent::SubscriptionCreated {
                    subscription_id,
                    client_id,
                    service_id,
                    name,
                    email,
                    locale,
                    kinds,
                    min_severity,
                },
            ) => Some(Subscription {
                id: *subscription_id,
                client_id: *client_id,
                service_id: *service_id,
                name: name.clone(),
                email: email.clone(),
                locale: *locale,
                kinds: kinds.clone(),
                min_severity: *min_severity,
                active: true,
                created_at: at,
            }),
            (Some(mut s), RosterEvent::SubscriptionCancelled { .. }) => {
                s.active = false;
                Some(s)
            }
            (state, _) => state,
        }
    }
    fn status(&self) -> &'static str {
        if self.active {
            "active"
        } else {
            "cancelled"
        }
    }
    /// Escalations go to responders, and every subscription of a service is
    /// told of its maintenance windows: neither is chosen by subscribing.
    /// Cancelling twice records nothing.
    fn decide(
        state: Option<&Self>,
        command: SubscriptionCommand,
        ctx: &SubscriptionContext,
        _: &str,
    ) -> Result<Outcome<RosterEvent>, Rejection> {
        match (state, command) {
            (
                None,
                SubscriptionCommand::Create {
                    subscription_id,
                    service_id,
                    name,
                    email,
                    locale,
                    kinds,
                    min_severity,
                },
            ) => {
                let client_id = ctx
                    .client_id
                    .ok_or_else(|| Rejection::NotFound(format!("service {service_id}")))?;
                if kinds.is_empty()
                    || kinds.contains(&NoticeKind::IncidentEscalated)
                    || kinds.iter().any(|k| NoticeKind::WINDOW.contains(k))
                    || kinds.iter().any(|k| NoticeKind::CHANGE.contains(k))
                {
                    return Err(Rejection::Invalid(
                        "kinds: one or more of incident_opened, incident_mitigated, \
                         incident_resolved, monthly_report"
                            .into(),
                    ));
                }
                Ok(Outcome::only(vec![RosterEvent::SubscriptionCreated {
                    subscription_id,
                    client_id,
                    service_id,
                    name,
                    email,
                    locale,
                    kinds,
                    min_severity,
                }]))
            }
            (Some(s), SubscriptionCommand::Create { .. }) => {
                Err(Rejection::AlreadyExists(format!("subscription {}", s.id)))
            }
            (state, SubscriptionCommand::Cancel) => {
                let s = existing(state, "cancel")?;
                Ok(Outcome::only(if s.active {
                    vec![RosterEvent::SubscriptionCancelled {
                        subscription_id: s.id,
                    }]
                } else {
                    vec![]
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscribe(kinds: Vec<NoticeKind>) -> SubscriptionCommand {
        SubscriptionCommand::Create {
            subscription_id: Uuid::from_u128(1),
            service_id: Uuid::from_u128(2),
            name: Name::parse("name", "Desk").unwrap(),
            email: Email::parse("desk@client.example").unwrap(),
            locale: Locale::Ja,
            kinds,
            min_severity: Severity::Warning,
        }
    }

    #[test]
    fn given_a_service_of_the_callers_client_when_subscribing_then_only_incident_and_report_notices_may_be_chosen(
    ) {
        let own = SubscriptionContext {
            client_id: Some(Uuid::from_u128(3)),
        };
        let ok = <Subscription as Aggregate>::decide(
            None,
            subscribe(vec![NoticeKind::IncidentOpened]),
            &own,
            "admin",
        )
        .unwrap();
        assert!(matches!(
            ok.events[..],
            [RosterEvent::SubscriptionCreated { client_id, .. }] if client_id == Uuid::from_u128(3)
        ));
        for refused in [
            vec![],
            vec![NoticeKind::IncidentEscalated],
            vec![NoticeKind::WINDOW[0]],
            vec![NoticeKind::IncidentOpened, NoticeKind::ChangeApproved],
        ] {
            assert!(matches!(
                <Subscription as Aggregate>::decide(None, subscribe(refused), &own, "admin"),
                Err(Rejection::Invalid(_))
            ));
        }
        // A service the caller may not manage does not exist for it.
        assert!(matches!(
            <Subscription as Aggregate>::decide(
                None,
                subscribe(vec![NoticeKind::IncidentOpened]),
                &SubscriptionContext::default(),
                "client"
            ),
            Err(Rejection::NotFound(_))
        ));
    }

    #[test]
    fn given_no_user_when_registered_with_roles_then_staff_roles_are_kept_once_each() {
        let register = |roles: Vec<Role>| {
            <User as Aggregate>::decide(
                None,
                RegisterUser {
                    user_id: Uuid::from_u128(1),
                    name: Name::parse("name", "Hanako").unwrap(),
                    email: Email::parse("hanako@msp.example").unwrap(),
                    locale: Locale::Ja,
                    roles,
                },
                &(),
                "admin",
            )
        };
        let ok = register(vec![Role::Approver, Role::Maintainer, Role::Approver]).unwrap();
        assert!(matches!(
            &ok.events[..],
            [RosterEvent::UserRegistered { roles, .. }] if roles == &[Role::Maintainer, Role::Approver]
        ));
        for refused in [Role::Client, Role::Integration] {
            assert!(matches!(
                register(vec![Role::Approver, refused]),
                Err(Rejection::Invalid(_))
            ));
        }
        // Registered without roles, the payload is what it was before roles.
        let plain = register(vec![]).unwrap();
        assert!(plain.events[0].payload().get("roles").is_none());
        let old = serde_json::json!({
            "user_id": Uuid::from_u128(1), "name": "Hanako",
            "email": "hanako@msp.example", "locale": "ja"
        });
        assert!(matches!(
            RosterEvent::from_stored("UserRegistered", &old),
            Some(RosterEvent::UserRegistered { roles, .. }) if roles.is_empty()
        ));
    }

    #[test]
    fn given_a_cancelled_subscription_when_cancelled_again_then_nothing_is_recorded() {
        let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let by = By {
            actor: "admin",
            role: "admin",
        };
        let own = SubscriptionContext {
            client_id: Some(Uuid::from_u128(3)),
        };
        let created = <Subscription as Aggregate>::decide(
            None,
            subscribe(vec![NoticeKind::IncidentOpened]),
            &own,
            "admin",
        )
        .unwrap();
        let s = Subscription::evolve(None, &created.events[0], at, by).unwrap();
        let cancel =
            Subscription::decide(Some(&s), SubscriptionCommand::Cancel, &own, "admin").unwrap();
        assert_eq!(cancel.events.len(), 1);
        let s = Subscription::evolve(Some(s), &cancel.events[0], at, by).unwrap();
        assert!(!s.active);
        let again =
            Subscription::decide(Some(&s), SubscriptionCommand::Cancel, &own, "admin").unwrap();
        assert!(again.events.is_empty());
    }

    #[test]
    fn given_a_schedule_when_an_override_is_added_then_it_must_leave_the_schedule_valid() {
        let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let by = By {
            actor: "admin",
            role: "admin",
        };
        let define = ScheduleCommand::Define {
            schedule_id: Uuid::from_u128(5),
            name: Name::parse("name", "Primary").unwrap(),
            schedule: Schedule {
                time_zone: "Asia/Tokyo".into(),
                rotations: vec![crate::oncall::Rotation {
                    users: vec![Uuid::from_u128(7)],
                    shift_hours: 24,
                    start_date: chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
                    handoff_time: chrono::NaiveTime::from_hms_opt(9, 0, 0).unwrap(),
                }],
                overrides: vec![],
            },
        };
        let defined = OnCallSchedule::decide(None, define, &(), "admin").unwrap();
        let s = OnCallSchedule::evolve(None, &defined.events[0], at, by).unwrap();
        let backwards = Override {
            override_id: Uuid::from_u128(6),
            user_id: Uuid::from_u128(7),
            start: at,
            end: at - chrono::Duration::hours(1),
        };
        assert!(matches!(
            OnCallSchedule::decide(
                Some(&s),
                ScheduleCommand::AddOverride(backwards),
                &(),
                "admin"
            ),
            Err(Rejection::Invalid(_))
        ));
        let fine = Override {
            override_id: Uuid::from_u128(6),
            user_id: Uuid::from_u128(7),
            start: at,
            end: at + chrono::Duration::hours(1),
        };
        let added = OnCallSchedule::decide(
            Some(&s),
            ScheduleCommand::AddOverride(fine.clone()),
            &(),
            "admin",
        )
        .unwrap();
        let s = OnCallSchedule::evolve(Some(s), &added.events[0], at, by).unwrap();
        assert_eq!(s.schedule.overrides, vec![fine]);
    }

    #[test]
    fn subscriptions_filter_by_kind_and_minimum_severity() {
        let kinds = [NoticeKind::IncidentOpened, NoticeKind::IncidentResolved];
        assert!(wants(
            &kinds,
            Severity::Warning,
            NoticeKind::IncidentOpened,
            Severity::Critical
        ));
        assert!(wants(
            &kinds,
            Severity::Warning,
            NoticeKind::IncidentOpened,
            Severity::Warning
        ));
        assert!(!wants(
            &kinds,
            Severity::Warning,
            NoticeKind::IncidentOpened,
            Severity::Info
        ));
        assert!(!wants(
            &kinds,
            Severity::Info,
            NoticeKind::IncidentMitigated,
            Severity::Critical
        ));
    }
}
