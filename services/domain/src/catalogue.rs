//! The event catalogue (SPEC §4): every event type the store accepts, with its
//! schema version and the work class it counts towards.
//!
//! Invariant: every event type has exactly one work class. The store refuses an
//! event whose type is not listed here, so a type cannot exist without one.

use serde::{Deserialize, Serialize};

/// `operations` work does not change the system; `maintenance` work does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WorkClass {
    Operations,
    Maintenance,
}

impl WorkClass {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkClass::Operations => "operations",
            WorkClass::Maintenance => "maintenance",
        }
    }

    pub fn parse(s: &str) -> Option<WorkClass> {
        match s {
            "operations" => Some(WorkClass::Operations),
            "maintenance" => Some(WorkClass::Maintenance),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventKind {
    pub name: &'static str,
    pub schema_version: i32,
    pub work_class: WorkClass,
}

const fn ops(name: &'static str) -> EventKind {
    EventKind {
        name,
        schema_version: 1,
        work_class: WorkClass::Operations,
    }
}

const fn maint(name: &'static str) -> EventKind {
    EventKind {
        name,
        schema_version: 1,
        work_class: WorkClass::Maintenance,
    }
}

/// Event types known today. Later capabilities add theirs here; the
/// catalogue test checks names are unique.
pub const CATALOGUE: &[EventKind] = &[
    // directory
    ops("TenantRegistered"),
    ops("ClientRegistered"),
    ops("ServiceRegistered"),
    ops("ServiceNameReserved"),
    ops("ServiceDependenciesSet"),
    ops("DependencyGraphChanged"),
    ops("ClientNameReserved"),
    // who may read the event feed besides auditors and admins (SPEC §7)
    ops("FeedReaderGranted"),
    ops("FeedReaderRevoked"),
    // alerts and their groups
    ops("AlertReceived"),
    ops("AlertResolved"),
    ops("AlertGroupBound"),
    ops("AlertGroupReleased"),
    // incidents (operations until handed to maintenance)
    ops("IncidentOpened"),
    ops("IncidentAcknowledged"),
    ops("NoteAdded"),
    ops("ActionRecorded"),
    ops("IncidentMitigated"),
    ops("IncidentResolved"),
    ops("IncidentReopened"),
    ops("IncidentClosed"),
    ops("SeverityChanged"),
    ops("IncidentImpactCorrected"),
    ops("ImpactLevelChanged"),
    ops("TriageMarked"),
    // escalation, hand-off and the queues (SPEC §5)
    ops("EscalationScheduled"),
    ops("IncidentEscalated"),
    ops("IncidentHandedOff"),
    ops("IncidentAssigned"),
    ops("IncidentUnassigned"),
    ops("EscalationPolicyDefined"),
    // responders, schedules, client subscriptions
    ops("UserRegistered"),
    ops("ScheduleDefined"),
    ops("OverrideAdded"),
    ops("SubscriptionCreated"),
    ops("SubscriptionCancelled"),
    // the notification outbox (SPEC §9)
    ops("NotificationRequested"),
    ops("NotificationSent"),
    ops("NotificationFailed"),
    ops("NotificationAbandoned"),
    // maintenance on incidents: root causes, recovery and fixes (SPEC §4)
    maint("FindingRecorded"),
    maint("MaintenanceActionRecorded"),
    // a failure again after a fix: the new incident names the earlier one
    ops("RecurrenceDetected"),
    // change management (SPEC §5): every change changes the system
    maint("ChangeRequested"),
    maint("ChangeSubmitted"),
    maint("ChangeApproved"),
    maint("ChangeRejected"),
    maint("ChangeScheduled"),
    maint("ChangeStarted"),
    maint("ChangeCompleted"),
    maint("ChangeFailed"),
    maint("ChangeRolledBack"),
    maint("ChangeReviewed"),
    maint("ChangeLinked"),
    // freeze (blackout) periods govern changes but change nothing themselves
    ops("FreezeDeclared"),
    ops("FreezeLifted"),
    // maintenance windows
    maint("WindowPlanned"),
    maint("WindowAnnounced"),
    maint("WindowStarted"),
    maint("WindowEnded"),
    maint("WindowCancelled"),
    // improvement proposals
    maint("ProposalRaised"),
    maint("ProposalApproved"),
    maint("ProposalRejected"),
    maint("ProposalImplemented"),
    maint("ProposalVerified"),
    maint("ProposalVerificationLapsed"),
    // client inquiries
    ops("InquiryOpened"),
    ops("InquiryAnswered"),
    ops("InquiryEscalated"),
    ops("InquiryClosed"),
    // runbooks and the operations work log
    ops("RunbookPublished"),
    ops("RunbookExecutionStarted"),
    ops("StepCompleted"),
    ops("StepDoubleChecked"),
    ops("RunbookExecutionFinished"),
    ops("BackupPerformed"),
    ops("BackupVerified"),
    ops("RoutineTaskRecorded"),
    // probes (SPEC §12): definitions and up/down transitions, never every check
    ops("ProbeDefined"),
    ops("ProbeChanged"),
    ops("ProbeRemoved"),
    ops("ProbeWentDown"),
    ops("ProbeCameUp"),
    // heartbeats (SPEC §12): definitions, token rotations, missed/failed/recovered runs, never every ping
    ops("HeartbeatCreated"),
    ops("HeartbeatChanged"),
    ops("HeartbeatTokenRotated"),
    ops("HeartbeatRemoved"),
    ops("HeartbeatMissed"),
    ops("HeartbeatFailed"),
    ops("HeartbeatRecovered"),
    // threshold rules on pushed samples (SPEC §12): definitions and each
    // series' breaches and clearings, never the samples
    ops("ThresholdRuleDefined"),
    ops("ThresholdRuleChanged"),
    ops("ThresholdRuleRemoved"),
    ops("ThresholdBreached"),
    ops("ThresholdCleared"),
    // backup schedules (SPEC §12): definitions and their transitions
    ops("BackupScheduleDefined"),
    ops("BackupScheduleChanged"),
    ops("BackupScheduleRemoved"),
    ops("BackupOverdue"),
    ops("BackupUnverified"),
    ops("BackupScheduleMet"),
];

pub fn lookup(name: &str) -> Option<&'static EventKind> {
    CATALOGUE.iter().find(|k| k.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_event_type_is_listed_once() {
        let mut seen = HashSet::new();
        for kind in CATALOGUE {
            assert!(seen.insert(kind.name), "{} listed twice", kind.name);
            assert!(kind.schema_version >= 1);
        }
    }

    #[test]
    fn unknown_types_have_no_work_class() {
        assert!(lookup("NoSuchEvent").is_none());
        assert_eq!(
            lookup("ServiceRegistered").unwrap().work_class,
            WorkClass::Operations
        );
        assert_eq!(
            lookup("FindingRecorded").unwrap().work_class,
            WorkClass::Maintenance
        );
    }

    #[test]
    fn work_class_round_trips_through_its_name() {
        for class in [WorkClass::Operations, WorkClass::Maintenance] {
            assert_eq!(WorkClass::parse(class.as_str()), Some(class));
        }
    }
}
