//! Escalation policies (SPEC §5): who is told about an unacknowledged
//! incident, and when the next people are.
//!
//! A policy is an ordered list of levels. Opening an incident schedules level
//! 1 at once; each firing notifies the level's targets and schedules the next
//! step: the same level again while it has repeats left, else the next level,
//! each after the level's timeout. Acknowledging (or mitigating, resolving)
//! cancels what is scheduled. Schedules are events on the incident's stream,
//! so they survive restarts; the worker fires a due one exactly once because
//! firing appends with the incident's version.

use chrono::Duration;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::aggregate::{stored_events, Aggregate, By, Outcome};
use crate::Rejection;

pub const LEVELS_MAX: usize = 20;
pub const TARGETS_MAX: usize = 50;
pub const REPEATS_MAX: u32 = 10;
/// A day: longer waits are not escalation.
pub const TIMEOUT_MINUTES_MAX: f64 = 1440.0;
/// Fractions of a minute are allowed (drills, tests) down to one second.
pub const TIMEOUT_MINUTES_MIN: f64 = 1.0 / 60.0;

pub fn policy_stream(id: Uuid) -> String {
    format!("policy-{id}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(
    tag = "type",
    content = "id",
    rename_all = "snake_case",
    deny_unknown_fields
)]
pub enum Target {
    User(Uuid),
    Schedule(Uuid),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Level {
    pub targets: Vec<Target>,
    /// Minutes without acknowledgement before the next step.
    pub timeout_minutes: f64,
    /// Times the level is notified again before the next level.
    #[serde(default)]
    pub repeat: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Policy {
    pub name: String,
    pub levels: Vec<Level>,
    /// Services whose incidents follow this policy.
    pub service_ids: Vec<Uuid>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum PolicyEvent {
    /// Defines the policy, or redefines it whole.
    EscalationPolicyDefined { policy_id: Uuid, policy: Policy },
}

impl PolicyEvent {
    pub fn type_name(&self) -> &'static str {
        match self {
            PolicyEvent::EscalationPolicyDefined { .. } => "EscalationPolicyDefined",
        }
    }
    pub fn payload(&self) -> serde_json::Value {
        crate::event::untagged_payload(self)
    }
    pub fn from_stored(event_type: &str, payload: &serde_json::Value) -> Option<PolicyEvent> {
        crate::event::from_tagged(event_type, payload)
    }
}

/// Checks a policy as submitted.
pub fn validate(policy: &Policy) -> Result<(), Rejection> {
    let invalid = |m: String| Err(Rejection::Invalid(m));
    // The same rule as every other name (length, no control characters).
    crate::text::Name::parse("name", &policy.name).map_err(Rejection::Invalid)?;
    if policy.levels.is_empty() || policy.levels.len() > LEVELS_MAX {
        return invalid(format!("a policy has 1 to {LEVELS_MAX} levels"));
    }
    for (i, level) in policy.levels.iter().enumerate() {
        let n = i + 1;
        if level.targets.is_empty() || level.targets.len() > TARGETS_MAX {
            return invalid(format!("level {n} needs 1 to {TARGETS_MAX} targets"));
        }
        if !(TIMEOUT_MINUTES_MIN..=TIMEOUT_MINUTES_MAX).contains(&level.timeout_minutes) {
            return invalid(format!(
                "level {n}: timeout_minutes must be between 1/60 and {TIMEOUT_MINUTES_MAX}"
            ));
        }
        if level.repeat > REPEATS_MAX {
            return invalid(format!("level {n}: repeat is at most {REPEATS_MAX}"));
        }
    }
    Ok(())
}

impl Level {
    pub fn timeout(&self) -> Duration {
        Duration::milliseconds((self.timeout_minutes * 60_000.0).round() as i64)
    }
}

/// A scheduled escalation step: level (1-based) and round within the level
/// (1 for its first notification, 2 for its first repeat, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub level: u32,
    pub round: u32,
}

impl Step {
    pub const FIRST: Step = Step { level: 1, round: 1 };
}

/// What follows a fired step, and after how long; `None` when the policy is
/// exhausted (the last level's repeats are done).
pub fn after(policy: &Policy, fired: Step) -> Option<(Step, Duration)> {
    let level = policy.levels.get(fired.level as usize - 1)?;
    let wait = level.timeout();
    if fired.round <= level.repeat {
        return Some((
            Step {
                level: fired.level,
                round: fired.round + 1,
            },
            wait,
        ));
    }
    if (fired.level as usize) < policy.levels.len() {
        return Some((
            Step {
                level: fired.level + 1,
                round: 1,
            },
            wait,
        ));
    }
    None
}

/// The level a manual escalation climbs to from the highest level reached.
pub fn manual_step(policy: Option<&Policy>, reached: u32) -> Step {
    let top = policy.map_or(u32::MAX, |p| p.levels.len() as u32);
    Step {
        level: (reached + 1).min(top.max(1)),
        round: 1,
    }
}

/// An escalation policy as defined last (a definition replaces it whole).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DefinedPolicy {
    pub id: Uuid,
    #[serde(flatten)]
    pub policy: Policy,
    pub defined_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DefinePolicy {
    pub policy_id: Uuid,
    pub policy: Policy,
}

impl Aggregate for DefinedPolicy {
    stored_events!(PolicyEvent, policy_stream);
    type Command = DefinePolicy;
    type Context = ();
    const NOUN: &'static str = "escalation policy";

    fn evolve(
        _: Option<Self>,
        event: &PolicyEvent,
        at: chrono::DateTime<chrono::Utc>,
        _: By<'_>,
    ) -> Option<Self> {
        let PolicyEvent::EscalationPolicyDefined { policy_id, policy } = event;
        Some(DefinedPolicy {
            id: *policy_id,
            policy: policy.clone(),
            defined_at: at,
        })
    }
    fn status(&self) -> &'static str {
        "defined"
    }
    fn decide(
        state: Option<&Self>,
        c: DefinePolicy,
        _: &(),
        _: &str,
    ) -> Result<Outcome<PolicyEvent>, Rejection> {
        if let Some(p) = state {
            return Err(Rejection::AlreadyExists(format!(
                "escalation policy {}",
                p.id
            )));
        }
        let policy = Policy {
            name: c.policy.name.trim().to_owned(),
            ..c.policy
        };
        validate(&policy)?;
        Ok(Outcome::only(vec![PolicyEvent::EscalationPolicyDefined {
            policy_id: c.policy_id,
            policy,
        }]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            name: "Orders".into(),
            levels: vec![
                Level {
                    targets: vec![Target::User(Uuid::from_u128(1))],
                    timeout_minutes: 5.0,
                    repeat: 1,
                },
                Level {
                    targets: vec![Target::Schedule(Uuid::from_u128(2))],
                    timeout_minutes: 10.0,
                    repeat: 0,
                },
            ],
            service_ids: vec![],
        }
    }

    #[test]
    fn steps_repeat_a_level_then_climb_then_stop() {
        let p = policy();
        let (s, w) = after(&p, Step::FIRST).unwrap();
        assert_eq!((s, w), (Step { level: 1, round: 2 }, Duration::minutes(5)));
        let (s, w) = after(&p, s).unwrap();
        assert_eq!((s, w), (Step { level: 2, round: 1 }, Duration::minutes(5)));
        assert_eq!(after(&p, s), None);
    }

    #[test]
    fn manual_escalation_climbs_one_level_but_not_past_the_top() {
        let p = policy();
        assert_eq!(manual_step(Some(&p), 0).level, 1);
        assert_eq!(manual_step(Some(&p), 1).level, 2);
        assert_eq!(manual_step(Some(&p), 2).level, 2);
        assert_eq!(manual_step(None, 3).level, 4);
    }

    #[test]
    fn policies_are_checked() {
        let mut p = policy();
        assert!(validate(&p).is_ok());
        p.levels[0].timeout_minutes = 0.0;
        assert!(validate(&p).is_err());
        let mut p = policy();
        p.levels[1].targets.clear();
        assert!(validate(&p).is_err());
        let mut p = policy();
        p.levels.clear();
        assert!(validate(&p).is_err());
    }

    #[test]
    fn fractional_minutes_become_milliseconds() {
        let l = Level {
            targets: vec![],
            timeout_minutes: 0.05,
            repeat: 0,
        };
        assert_eq!(l.timeout(), Duration::seconds(3));
    }
}
