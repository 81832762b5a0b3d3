//! The people who are told: responders (users) who are escalated to and put
//! on call, on-call schedules, and client contacts' subscriptions to their
//! services' incidents (SPEC §5, §9).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::alert::Severity;
use crate::notice::NoticeKind;
use crate::oncall::{Override, Schedule};
use crate::text::{Email, Locale, Name};

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

#[cfg(test)]
mod tests {
    use super::*;

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
