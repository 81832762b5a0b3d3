//! Backup schedules (SPEC §12, issue 18): how often a service's backups
//! must be taken and how soon each must be verified, watched against the
//! work log, which already records backups (`domain::worklog`: streams
//! `backup-<id>`, `BackupPerformed` naming the service, then any number of
//! `BackupVerified`). Stream: `backup_schedule-<service id>`, one schedule
//! per service (not `backup-…`: the work log's projection reads every
//! stream that starts so).
//!
//! The stream holds the definition (`BackupScheduleDefined`,
//! `BackupScheduleChanged`, `BackupScheduleRemoved`) and the *transitions*
//! only: `BackupOverdue`, `BackupUnverified` and `BackupScheduleMet` (back
//! to normal). A check that changes nothing records nothing.
//!
//! The rules, [`assess`], pure:
//! - **Overdue**: no backup was performed within `period_s` (plus
//!   `grace_s`) of the later of the schedule's start and the last backup
//!   performed. The instant that counts is the backup's `performed_at`
//!   (when it was taken), not when it was recorded.
//! - **Unverified**: a backup was performed after the newest backup whose
//!   latest verification passed, and the oldest such backup was not
//!   verified within `verify_within_s` (plus `grace_s`) of the later of its
//!   `performed_at` and the schedule's start. So a newer unverified backup
//!   does not hide an older one never verified, and a failed verification
//!   counts as none (the backup stays unverified until one passes).
//! - Overdue wins over unverified; otherwise the schedule is met. So an
//!   overdue schedule is met again as soon as a backup is performed: its
//!   verification has a deadline of its own, and alerting until then would
//!   page people for a backup taken on time.
//!
//! A new schedule is met: its first event after the definition is a
//! transition once a deadline passed, measured from the schedule's start,
//! so backups taken long before it was defined get a full period.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::aggregate::{existing, stored_events, Aggregate, By, Outcome};
use crate::alert::{Category, Severity};
use crate::Rejection;

pub fn schedule_stream(service_id: Uuid) -> String {
    format!("backup_schedule-{service_id}")
}

/// The shortest period (and verification delay) users may set: an hour.
/// Backups more often than that are replication, which a probe watches
/// better. (The server's `OPSLEDGER_BACKUP_PERIOD_MIN_S` may lower it for
/// tests.)
pub const PERIOD_MIN_S: u32 = 3_600;
/// The longest period: 400 days, so a yearly archive fits with slack.
pub const PERIOD_MAX_S: u32 = 400 * 86_400;
/// Transitions a schedule's record keeps for display; the stream keeps all.
pub const TRANSITIONS_SHOWN_MAX: usize = 20;
/// The default severity: a missed backup is no outage, but it is work for
/// today (an incident, not a page at night only if policies say so).
pub const SEVERITY_DEFAULT: Severity = Severity::Error;
/// The default category: a backup protects the service's data, which is
/// neither its liveness, its hardware, its traffic nor its security.
pub const CATEGORY_DEFAULT: Category = Category::Application;

/// A schedule's definition, as given and as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ScheduleSpec {
    /// A backup is due this long after the last one.
    pub period_s: u32,
    /// Each backup must be verified this long after it was performed.
    pub verify_within_s: u32,
    /// How late a backup or a verification may be before it alerts.
    pub grace_s: u32,
    pub severity: Severity,
    pub category: Category,
}

/// Where a schedule stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Standing {
    /// Backups taken and verified in time.
    Met,
    /// No backup performed within the period.
    Overdue,
    /// A backup performed but not verified in time.
    Unverified,
}

impl Standing {
    pub fn as_str(self) -> &'static str {
        match self {
            Standing::Met => "met",
            Standing::Overdue => "overdue",
            Standing::Unverified => "unverified",
        }
    }
    pub fn parse(s: &str) -> Option<Standing> {
        match s {
            "met" => Some(Standing::Met),
            "overdue" => Some(Standing::Overdue),
            "unverified" => Some(Standing::Unverified),
            _ => None,
        }
    }
}

/// A backup of the work log, by its id and when it was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BackupRef {
    pub backup_id: Uuid,
    pub performed_at: DateTime<Utc>,
}

/// What the work log says of a service's backups: all the rules need.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BackupFacts {
    /// The backup performed last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_performed: Option<BackupRef>,
    /// The newest backup whose latest verification passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_verified: Option<BackupRef>,
    /// The oldest backup performed after `last_verified` (after none: of
    /// all), which is not verified: the one whose deadline comes first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_unverified: Option<BackupRef>,
}

/// A schedule assessed at an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Assessment {
    pub standing: Standing,
    /// When the next backup is due: a period after the later of the
    /// schedule's start and the last backup (overdue `grace_s` after).
    pub next_due_at: DateTime<Utc>,
    /// When `first_unverified` must be verified by (unverified `grace_s`
    /// after); none when no backup waits for a verification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_by: Option<DateTime<Utc>>,
}

fn seconds(s: u32) -> Duration {
    Duration::seconds(i64::from(s))
}

/// Assesses a schedule that started at `started_at` against the work log's
/// `facts` at `now` (see the module's doc).
pub fn assess(
    spec: &ScheduleSpec,
    started_at: DateTime<Utc>,
    facts: &BackupFacts,
    now: DateTime<Utc>,
) -> Assessment {
    let grace = seconds(spec.grace_s);
    let since = facts
        .last_performed
        .map_or(started_at, |b| b.performed_at.max(started_at));
    let next_due_at = since + seconds(spec.period_s);
    let verify_by = facts
        .first_unverified
        .map(|b| b.performed_at.max(started_at) + seconds(spec.verify_within_s));
    let standing = if now > next_due_at + grace {
        Standing::Overdue
    } else if verify_by.is_some_and(|by| now > by + grace) {
        Standing::Unverified
    } else {
        Standing::Met
    };
    Assessment {
        standing,
        next_due_at,
        verify_by,
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum BackupScheduleEvent {
    BackupScheduleDefined {
        service_id: Uuid,
        spec: ScheduleSpec,
    },
    BackupScheduleChanged {
        spec: ScheduleSpec,
    },
    BackupScheduleRemoved {
        service_id: Uuid,
    },
    /// No backup by `due_at` (and its grace).
    BackupOverdue {
        due_at: DateTime<Utc>,
        facts: BackupFacts,
    },
    /// `facts.first_unverified` not verified by `verify_by` (and its grace).
    BackupUnverified {
        verify_by: DateTime<Utc>,
        facts: BackupFacts,
    },
    /// Back on schedule: backups taken, and verified, in time.
    BackupScheduleMet {
        facts: BackupFacts,
    },
}

impl BackupScheduleEvent {
    pub fn type_name(&self) -> &'static str {
        match self {
            BackupScheduleEvent::BackupScheduleDefined { .. } => "BackupScheduleDefined",
            BackupScheduleEvent::BackupScheduleChanged { .. } => "BackupScheduleChanged",
            BackupScheduleEvent::BackupScheduleRemoved { .. } => "BackupScheduleRemoved",
            BackupScheduleEvent::BackupOverdue { .. } => "BackupOverdue",
            BackupScheduleEvent::BackupUnverified { .. } => "BackupUnverified",
            BackupScheduleEvent::BackupScheduleMet { .. } => "BackupScheduleMet",
        }
    }
    pub fn payload(&self) -> serde_json::Value {
        crate::event::untagged_payload(self)
    }
    pub fn from_stored(
        event_type: &str,
        payload: &serde_json::Value,
    ) -> Option<BackupScheduleEvent> {
        crate::event::from_tagged(event_type, payload)
    }
}

/// A transition, as a schedule's record shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = BackupScheduleTransition)]
pub struct Transition {
    pub to: Standing,
    pub recorded_at: DateTime<Utc>,
    /// The deadline that passed (none for a return to `met`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<DateTime<Utc>>,
    pub facts: BackupFacts,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BackupSchedule {
    pub service_id: Uuid,
    #[serde(flatten)]
    pub spec: ScheduleSpec,
    /// As the stream records it (the workers' latest transition).
    pub standing: Standing,
    pub removed: bool,
    /// When it was defined (again, after a removal): deadlines count from it.
    pub started_at: DateTime<Utc>,
    pub defined_by: String,
    /// The latest transitions, newest last (at most `TRANSITIONS_SHOWN_MAX`).
    pub transitions: Vec<Transition>,
}

pub fn evolve(
    schedule: Option<BackupSchedule>,
    event: &BackupScheduleEvent,
    at: DateTime<Utc>,
    by: &str,
) -> Option<BackupSchedule> {
    use BackupScheduleEvent as E;
    match event {
        E::BackupScheduleDefined { service_id, spec } => Some(BackupSchedule {
            service_id: *service_id,
            spec: spec.clone(),
            standing: Standing::Met,
            removed: false,
            started_at: at,
            defined_by: by.to_owned(),
            // A schedule defined again keeps its history on display.
            transitions: schedule.map(|s| s.transitions).unwrap_or_default(),
        }),
        E::BackupScheduleChanged { spec } => schedule.map(|mut s| {
            s.spec = spec.clone();
            s
        }),
        E::BackupScheduleRemoved { .. } => schedule.map(|mut s| {
            s.removed = true;
            s
        }),
        E::BackupOverdue { due_at, facts } => {
            schedule.map(|s| transition(s, Standing::Overdue, at, Some(*due_at), facts))
        }
        E::BackupUnverified { verify_by, facts } => {
            schedule.map(|s| transition(s, Standing::Unverified, at, Some(*verify_by), facts))
        }
        E::BackupScheduleMet { facts } => {
            schedule.map(|s| transition(s, Standing::Met, at, None, facts))
        }
    }
}

fn transition(
    mut s: BackupSchedule,
    to: Standing,
    at: DateTime<Utc>,
    deadline: Option<DateTime<Utc>>,
    facts: &BackupFacts,
) -> BackupSchedule {
    s.standing = to;
    s.transitions.push(Transition {
        to,
        recorded_at: at,
        deadline,
        facts: *facts,
    });
    if s.transitions.len() > TRANSITIONS_SHOWN_MAX {
        s.transitions.remove(0);
    }
    s
}

/// What deciding a definition needs: the shortest period allowed here, and
/// whether the service exists.
#[derive(Debug, Clone, PartialEq)]
pub struct Context {
    pub period_min_s: u32,
    pub service_known: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Defines the service's schedule, or changes it (a `PUT`): a removed
    /// one is defined anew, and starts again.
    Set {
        service_id: Uuid,
        spec: ScheduleSpec,
    },
    Remove,
    /// The worker's: the schedule, assessed against `facts`.
    Record {
        assessment: Assessment,
        facts: BackupFacts,
    },
}

fn invalid(s: impl Into<String>) -> Rejection {
    Rejection::Invalid(s.into())
}

/// Checks a definition against the rules and the context.
pub fn validate(spec: ScheduleSpec, context: &Context) -> Result<ScheduleSpec, Rejection> {
    if !context.service_known {
        return Err(invalid("no such service in the tenant"));
    }
    let min = context.period_min_s.max(1);
    for (field, s) in [
        ("period_s", spec.period_s),
        ("verify_within_s", spec.verify_within_s),
    ] {
        if s < min || s > PERIOD_MAX_S {
            return Err(invalid(format!(
                "{field} must be {min} to {PERIOD_MAX_S} seconds"
            )));
        }
    }
    // A grace longer than the period is a longer period, said twice.
    if spec.grace_s > spec.period_s {
        return Err(invalid("grace_s must be 0 to period_s"));
    }
    Ok(spec)
}

fn removed_refusal(command: &str) -> Rejection {
    Rejection::InvalidState {
        entity: "backup schedule",
        command: command.into(),
        state: "removed".into(),
    }
}

impl Aggregate for BackupSchedule {
    stored_events!(BackupScheduleEvent, schedule_stream);
    type Command = Command;
    type Context = Context;
    const NOUN: &'static str = "backup schedule";

    fn evolve(
        state: Option<Self>,
        event: &BackupScheduleEvent,
        at: DateTime<Utc>,
        by: By<'_>,
    ) -> Option<Self> {
        evolve(state, event, at, by.actor)
    }
    fn status(&self) -> &'static str {
        if self.removed {
            "removed"
        } else {
            self.standing.as_str()
        }
    }
    fn decide(
        state: Option<&Self>,
        command: Command,
        context: &Context,
        _: &str,
    ) -> Result<Outcome<BackupScheduleEvent>, Rejection> {
        use BackupScheduleEvent as E;
        let events = match (state, command) {
            (state, Command::Set { service_id, spec }) => {
                let spec = validate(spec, context)?;
                match state {
                    Some(s) if !s.removed && s.spec == spec => vec![],
                    Some(s) if !s.removed => vec![E::BackupScheduleChanged { spec }],
                    _ => vec![E::BackupScheduleDefined { service_id, spec }],
                }
            }
            (state, Command::Remove) => {
                let s = existing(state, "remove")?;
                if s.removed {
                    return Err(removed_refusal("remove"));
                }
                vec![E::BackupScheduleRemoved {
                    service_id: s.service_id,
                }]
            }
            (state, Command::Record { assessment, facts }) => {
                let s = existing(state, "record")?;
                // Already there (an earlier pass, another instance) or
                // removed meanwhile: nothing to record.
                if s.removed || s.standing == assessment.standing {
                    vec![]
                } else {
                    match (assessment.standing, assessment.verify_by) {
                        (Standing::Overdue, _) => vec![E::BackupOverdue {
                            due_at: assessment.next_due_at,
                            facts,
                        }],
                        (Standing::Unverified, Some(verify_by)) => {
                            vec![E::BackupUnverified { verify_by, facts }]
                        }
                        (Standing::Unverified, None) => {
                            return Err(invalid("an unverified assessment names its deadline"))
                        }
                        (Standing::Met, _) => vec![E::BackupScheduleMet { facts }],
                    }
                }
            }
        };
        Ok(Outcome::only(events))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600;

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    fn at(hours: i64) -> DateTime<Utc> {
        t0() + Duration::seconds(hours * HOUR)
    }

    /// Daily, verified within two days, an hour of grace.
    fn spec() -> ScheduleSpec {
        ScheduleSpec {
            period_s: 24 * HOUR as u32,
            verify_within_s: 48 * HOUR as u32,
            grace_s: HOUR as u32,
            severity: SEVERITY_DEFAULT,
            category: CATEGORY_DEFAULT,
        }
    }

    fn ctx() -> Context {
        Context {
            period_min_s: PERIOD_MIN_S,
            service_known: true,
        }
    }

    fn backup(n: u128, hours: i64) -> BackupRef {
        BackupRef {
            backup_id: Uuid::from_u128(n),
            performed_at: at(hours),
        }
    }

    fn defined() -> BackupSchedule {
        let out = BackupSchedule::decide(
            None,
            Command::Set {
                service_id: Uuid::from_u128(1),
                spec: spec(),
            },
            &ctx(),
            "op",
        )
        .unwrap();
        evolve(None, &out.events[0], t0(), "op").unwrap()
    }

    #[test]
    fn a_new_schedule_without_backups_is_met_until_a_period_and_its_grace_pass() {
        let none = BackupFacts::default();
        let a = assess(&spec(), t0(), &none, at(25));
        assert_eq!(a.standing, Standing::Met, "grace: an hour");
        assert_eq!(a.next_due_at, at(24));
        assert_eq!(a.verify_by, None);
        let a = assess(&spec(), t0(), &none, at(25) + Duration::seconds(1));
        assert_eq!(a.standing, Standing::Overdue);
    }

    #[test]
    fn each_backup_performed_moves_the_next_due_a_period_on_from_when_it_was_taken() {
        let facts = BackupFacts {
            last_performed: Some(backup(2, 20)),
            last_verified: Some(backup(2, 20)),
            first_unverified: None,
        };
        let a = assess(&spec(), t0(), &facts, at(40));
        assert_eq!((a.standing, a.next_due_at), (Standing::Met, at(44)));
        assert_eq!(
            assess(&spec(), t0(), &facts, at(46)).standing,
            Standing::Overdue
        );
    }

    #[test]
    fn backups_older_than_the_schedule_count_from_its_start() {
        let facts = BackupFacts {
            last_performed: Some(backup(2, -1000)),
            last_verified: None,
            first_unverified: Some(backup(2, -1000)),
        };
        let a = assess(&spec(), t0(), &facts, at(10));
        assert_eq!(a.standing, Standing::Met);
        assert_eq!(a.next_due_at, at(24));
        assert_eq!(a.verify_by, Some(at(48)));
    }

    #[test]
    fn a_backup_not_verified_in_time_is_unverified_and_a_newer_one_does_not_hide_it() {
        // Daily backups, none ever verified: the first one's deadline (48 h,
        // an hour of grace) passes although a backup was taken yesterday.
        let facts = BackupFacts {
            last_performed: Some(backup(4, 48)),
            last_verified: None,
            first_unverified: Some(backup(2, 0)),
        };
        assert_eq!(
            assess(&spec(), t0(), &facts, at(49)).standing,
            Standing::Met
        );
        let a = assess(&spec(), t0(), &facts, at(50));
        assert_eq!(a.standing, Standing::Unverified);
        assert_eq!(a.verify_by, Some(at(48)));
        // A newer backup verified: the older ones are superseded.
        let facts = BackupFacts {
            last_performed: Some(backup(4, 48)),
            last_verified: Some(backup(4, 48)),
            first_unverified: None,
        };
        assert_eq!(
            assess(&spec(), t0(), &facts, at(50)).standing,
            Standing::Met
        );
    }

    #[test]
    fn overdue_wins_over_unverified() {
        let facts = BackupFacts {
            last_performed: Some(backup(2, 0)),
            last_verified: None,
            first_unverified: Some(backup(2, 0)),
        };
        assert_eq!(
            assess(&spec(), t0(), &facts, at(100)).standing,
            Standing::Overdue
        );
    }

    #[test]
    fn only_transitions_are_recorded_and_the_record_keeps_them() {
        let s = defined();
        assert_eq!(s.standing, Standing::Met);
        let none = BackupFacts::default();
        let record = |s: &BackupSchedule, now| {
            BackupSchedule::decide(
                Some(s),
                Command::Record {
                    assessment: assess(&s.spec, s.started_at, &none, now),
                    facts: none,
                },
                &ctx(),
                "system:backup",
            )
            .unwrap()
            .events
        };
        assert!(record(&s, at(1)).is_empty(), "met stays met: nothing");
        let overdue = record(&s, at(30));
        assert_eq!(
            overdue,
            vec![BackupScheduleEvent::BackupOverdue {
                due_at: at(24),
                facts: none
            }]
        );
        let s = evolve(Some(s), &overdue[0], at(30), "system:backup").unwrap();
        assert_eq!(s.standing, Standing::Overdue);
        assert_eq!(s.transitions.len(), 1);
        assert_eq!(s.transitions[0].deadline, Some(at(24)));
        assert!(record(&s, at(31)).is_empty(), "overdue stays overdue");
        let good = BackupFacts {
            last_performed: Some(backup(9, 31)),
            last_verified: Some(backup(9, 31)),
            first_unverified: None,
        };
        let met = BackupSchedule::decide(
            Some(&s),
            Command::Record {
                assessment: assess(&s.spec, s.started_at, &good, at(32)),
                facts: good,
            },
            &ctx(),
            "system:backup",
        )
        .unwrap()
        .events;
        assert_eq!(
            met,
            vec![BackupScheduleEvent::BackupScheduleMet { facts: good }]
        );
    }

    #[test]
    fn setting_the_same_definition_records_nothing_and_a_removed_one_is_defined_anew() {
        let s = defined();
        let set = |s: &BackupSchedule, spec: ScheduleSpec| {
            BackupSchedule::decide(
                Some(s),
                Command::Set {
                    service_id: s.service_id,
                    spec,
                },
                &ctx(),
                "op",
            )
            .unwrap()
            .events
        };
        assert!(set(&s, spec()).is_empty());
        let longer = ScheduleSpec {
            period_s: 48 * HOUR as u32,
            ..spec()
        };
        assert!(matches!(
            set(&s, longer.clone())[..],
            [BackupScheduleEvent::BackupScheduleChanged { .. }]
        ));
        let out = BackupSchedule::decide(Some(&s), Command::Remove, &ctx(), "op").unwrap();
        let s = evolve(Some(s), &out.events[0], at(5), "op").unwrap();
        assert_eq!(s.status(), "removed");
        assert!(BackupSchedule::decide(Some(&s), Command::Remove, &ctx(), "op").is_err());
        let rec = BackupSchedule::decide(
            Some(&s),
            Command::Record {
                assessment: assess(&s.spec, s.started_at, &BackupFacts::default(), at(100)),
                facts: BackupFacts::default(),
            },
            &ctx(),
            "system:backup",
        )
        .unwrap();
        assert!(rec.events.is_empty(), "a removed schedule records nothing");
        let again = set(&s, spec());
        assert!(matches!(
            again[..],
            [BackupScheduleEvent::BackupScheduleDefined { .. }]
        ));
        let s = evolve(Some(s), &again[0], at(6), "op").unwrap();
        assert!(!s.removed);
        assert_eq!(s.started_at, at(6), "deadlines count from the new start");
    }

    #[test]
    fn bad_definitions_are_refused() {
        let bad = |f: fn(&mut ScheduleSpec)| {
            let mut s = spec();
            f(&mut s);
            validate(s, &ctx()).unwrap_err()
        };
        bad(|s| s.period_s = PERIOD_MIN_S - 1);
        bad(|s| s.period_s = PERIOD_MAX_S + 1);
        bad(|s| s.verify_within_s = 0);
        bad(|s| s.verify_within_s = PERIOD_MAX_S + 1);
        bad(|s| s.grace_s = s.period_s + 1);
        let unknown = Context {
            service_known: false,
            ..ctx()
        };
        assert!(validate(spec(), &unknown).is_err());
        // A lowered minimum (tests) admits shorter periods.
        let short = ScheduleSpec {
            period_s: 2,
            verify_within_s: 1,
            grace_s: 0,
            ..spec()
        };
        let lowered = Context {
            period_min_s: 1,
            ..ctx()
        };
        assert!(validate(short, &lowered).is_ok());
    }

    #[test]
    fn events_round_trip_through_their_stored_form() {
        for e in [
            BackupScheduleEvent::BackupScheduleDefined {
                service_id: Uuid::from_u128(3),
                spec: spec(),
            },
            BackupScheduleEvent::BackupUnverified {
                verify_by: at(3),
                facts: BackupFacts {
                    last_performed: Some(backup(1, 1)),
                    last_verified: None,
                    first_unverified: Some(backup(1, 1)),
                },
            },
            BackupScheduleEvent::BackupScheduleMet {
                facts: BackupFacts::default(),
            },
        ] {
            let back = BackupScheduleEvent::from_stored(e.type_name(), &e.payload()).unwrap();
            assert_eq!(back, e);
        }
    }
}
