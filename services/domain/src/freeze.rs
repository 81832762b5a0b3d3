//! Freeze (blackout) periods (SPEC §5): while one of its services is frozen a
//! normal change may not be scheduled; standard and emergency changes may,
//! and say so. Stream: `freeze-<id>`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::aggregate::{existing, stored_events, Aggregate, By, Outcome};
use crate::Rejection;

pub fn freeze_stream(id: Uuid) -> String {
    format!("freeze-{id}")
}

/// Longest freeze: a year. Longer is a policy, not a period.
pub const FREEZE_LEN_MAX_DAYS: i64 = 366;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum FreezeEvent {
    FreezeDeclared {
        freeze_id: Uuid,
        service_ids: Vec<Uuid>,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        reason: String,
    },
    FreezeLifted {
        service_ids: Vec<Uuid>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
}

impl FreezeEvent {
    pub fn type_name(&self) -> &'static str {
        match self {
            FreezeEvent::FreezeDeclared { .. } => "FreezeDeclared",
            FreezeEvent::FreezeLifted { .. } => "FreezeLifted",
        }
    }
    pub fn payload(&self) -> serde_json::Value {
        crate::event::untagged_payload(self)
    }
    pub fn from_stored(event_type: &str, payload: &serde_json::Value) -> Option<FreezeEvent> {
        crate::event::from_tagged(event_type, payload)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Freeze {
    pub id: Uuid,
    pub service_ids: Vec<Uuid>,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub reason: String,
    pub declared_by: String,
    pub declared_at: DateTime<Utc>,
    pub lifted_at: Option<DateTime<Utc>>,
    pub lifted_by: Option<String>,
}

impl Freeze {
    /// Whether it freezes one of `services` during `[start, end)`.
    pub fn blocks(&self, services: &[Uuid], start: DateTime<Utc>, end: DateTime<Utc>) -> bool {
        self.lifted_at.is_none()
            && self.service_ids.iter().any(|s| services.contains(s))
            && crate::change::overlaps((self.start, self.end), (start, end))
    }
}

pub fn evolve(
    freeze: Option<Freeze>,
    event: &FreezeEvent,
    at: DateTime<Utc>,
    by: &str,
) -> Option<Freeze> {
    match event {
        FreezeEvent::FreezeDeclared {
            freeze_id,
            service_ids,
            start,
            end,
            reason,
        } => Some(Freeze {
            id: *freeze_id,
            service_ids: service_ids.clone(),
            start: *start,
            end: *end,
            reason: reason.clone(),
            declared_by: by.to_owned(),
            declared_at: at,
            lifted_at: None,
            lifted_by: None,
        }),
        FreezeEvent::FreezeLifted { .. } => freeze.map(|mut f| {
            f.lifted_at = Some(at);
            f.lifted_by = Some(by.to_owned());
            f
        }),
    }
}

pub fn decide_declare(
    freeze_id: Uuid,
    service_ids: Vec<Uuid>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    reason: &str,
) -> Result<Vec<FreezeEvent>, Rejection> {
    if service_ids.is_empty() || service_ids.len() > crate::change::SERVICES_MAX {
        return Err(Rejection::Invalid(format!(
            "service_ids must name 1 to {} services",
            crate::change::SERVICES_MAX
        )));
    }
    if end <= start {
        return Err(Rejection::Invalid("end must be after start".into()));
    }
    if end - start > chrono::Duration::days(FREEZE_LEN_MAX_DAYS) {
        return Err(Rejection::Invalid(format!(
            "a freeze lasts at most {FREEZE_LEN_MAX_DAYS} days"
        )));
    }
    let reason = reason.trim();
    if reason.is_empty() || reason.chars().count() > crate::change::TEXT_LEN_MAX_CHARS {
        return Err(Rejection::Invalid(
            "reason must say why the services are frozen".into(),
        ));
    }
    Ok(vec![FreezeEvent::FreezeDeclared {
        freeze_id,
        service_ids,
        start,
        end,
        reason: reason.to_owned(),
    }])
}

pub fn decide_lift(freeze: &Freeze, reason: Option<String>) -> Result<Vec<FreezeEvent>, Rejection> {
    if freeze.lifted_at.is_some() {
        return Err(Rejection::InvalidState {
            entity: "freeze",
            command: "lift".into(),
            state: "lifted".into(),
        });
    }
    Ok(vec![FreezeEvent::FreezeLifted {
        service_ids: freeze.service_ids.clone(),
        reason: reason
            .map(|r| r.trim().to_owned())
            .filter(|r| !r.is_empty()),
    }])
}

/// Declaring a freeze, or lifting it.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Declare {
        freeze_id: Uuid,
        service_ids: Vec<Uuid>,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        reason: String,
    },
    Lift {
        reason: Option<String>,
    },
}

impl Aggregate for Freeze {
    stored_events!(FreezeEvent, freeze_stream);
    type Command = Command;
    type Context = ();
    const NOUN: &'static str = "freeze";

    fn evolve(
        state: Option<Self>,
        event: &FreezeEvent,
        at: DateTime<Utc>,
        by: By<'_>,
    ) -> Option<Self> {
        evolve(state, event, at, by.actor)
    }
    fn status(&self) -> &'static str {
        if self.lifted_at.is_some() {
            "lifted"
        } else {
            "declared"
        }
    }
    fn decide(
        state: Option<&Self>,
        command: Command,
        _: &(),
        _: &str,
    ) -> Result<Outcome<FreezeEvent>, Rejection> {
        match (state, command) {
            (
                None,
                Command::Declare {
                    freeze_id,
                    service_ids,
                    start,
                    end,
                    reason,
                },
            ) => decide_declare(freeze_id, service_ids, start, end, &reason),
            (Some(f), Command::Declare { .. }) => {
                Err(Rejection::AlreadyExists(format!("freeze {}", f.id)))
            }
            (state, Command::Lift { reason }) => decide_lift(existing(state, "lift")?, reason),
        }
        .map(Outcome::only)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[test]
    fn a_freeze_blocks_its_services_while_it_lasts_and_not_once_lifted() {
        let t = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let s = Uuid::from_u128(1);
        let e = decide_declare(
            Uuid::from_u128(9),
            vec![s],
            t,
            t + Duration::days(2),
            "year end",
        )
        .unwrap();
        let f = evolve(None, &e[0], t, "admin").unwrap();
        assert!(f.blocks(&[s], t + Duration::days(1), t + Duration::days(3)));
        assert!(!f.blocks(&[s], t + Duration::days(2), t + Duration::days(3)));
        assert!(!f.blocks(&[Uuid::from_u128(2)], t, t + Duration::hours(1)));
        let lifted = decide_lift(&f, None).unwrap();
        let f = evolve(Some(f), &lifted[0], t, "admin").unwrap();
        assert!(!f.blocks(&[s], t, t + Duration::hours(1)));
        assert!(decide_lift(&f, None).is_err());
        assert!(decide_declare(Uuid::nil(), vec![s], t, t, "x").is_err());
        assert!(decide_declare(Uuid::nil(), vec![], t, t + Duration::hours(1), "x").is_err());
    }
}
