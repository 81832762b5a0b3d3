//! The incident lifecycle (SPEC §5): triggered → acknowledged → mitigated →
//! resolved → closed, reopen from resolved. Escalation is an event, not a
//! state. Stream: `incident-<id>`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::aggregate::{
    existing, stored_events, Aggregate, By, Elsewhere, Expected, Outcome, Recorder,
};
use crate::alert::{Category, GroupEvent, Severity};
use crate::escalation::{Step, Target};
pub use crate::impact_level::ImpactLevel;
use crate::worklog::minutes;
use crate::Rejection;

/// Longest note or action description kept.
pub const TEXT_LEN_MAX_CHARS: usize = 10_000;

pub fn incident_stream(id: Uuid) -> String {
    format!("incident-{id}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = IncidentStatus)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Triggered,
    Acknowledged,
    Mitigated,
    Resolved,
    Closed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Triggered => "triggered",
            Status::Acknowledged => "acknowledged",
            Status::Mitigated => "mitigated",
            Status::Resolved => "resolved",
            Status::Closed => "closed",
        }
    }
    pub fn parse(s: &str) -> Option<Status> {
        [
            Status::Triggered,
            Status::Acknowledged,
            Status::Mitigated,
            Status::Resolved,
            Status::Closed,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }
    /// Open incidents are the ones somebody still has to act on.
    pub fn is_open(self) -> bool {
        matches!(
            self,
            Status::Triggered | Status::Acknowledged | Status::Mitigated
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Visibility {
    /// Staff only.
    Internal,
    /// Shown to the client whose service it is.
    Client,
}

/// Operations actions: they do not change the system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationsAction {
    Inspection,
    Restart,
    RunbookStep,
}

/// Maintenance actions: they change the system (SPEC §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaintenanceAction {
    /// Restores service, e.g. a failover or a data repair.
    Recovery,
    /// Removes the cause.
    Fix,
}

/// What a root-cause statement rests on.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Evidence {
    #[serde(default)]
    pub log_excerpts: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_range: Option<TimeRange>,
    /// Affected components: server, network, database, application, or any name.
    #[serde(default)]
    pub components: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TimeRange {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// How an earlier incident was fixed: a maintenance action on it, or a
/// completed change that names it as fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FixRef {
    Action { action_id: Uuid },
    Change { change_id: Uuid },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecurrenceMatch {
    /// An alert with the same dedup key (fingerprint) opened both.
    Fingerprint,
    /// Same service.
    Service,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Triage {
    Actionable,
    Noise,
}

/// The facts of an incident's own stream.
///
/// An alert joining an incident is not among them: that fact is the alert's
/// receipt (`AlertReceived`, decision `opened_incident` or
/// `attached_to_incident`), on the alert's stream. An alert storm then writes
/// to as many streams as it has alerts, instead of queueing on one, and a
/// responder's `If-Match` is not defeated by alerts that keep arriving.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum IncidentEvent {
    IncidentOpened {
        incident_id: Uuid,
        service_id: Option<Uuid>,
        title: String,
        severity: Severity,
        category: Category,
        /// Set when alerts opened it: later alerts of the group attach.
        group_key: Option<String>,
        impact_start: DateTime<Utc>,
        /// The announced (or started) maintenance window of the service in
        /// force when the impact began: the downtime is planned (SPEC §5).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        planned_window: Option<Uuid>,
        /// How badly the service is hit (SPEC §6). Events recorded before
        /// levels existed have none: their level is mapped from severity.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        impact_level: Option<ImpactLevel>,
    },
    IncidentAcknowledged {},
    NoteAdded {
        note_id: Uuid,
        text: String,
        visibility: Visibility,
    },
    ActionRecorded {
        action_id: Uuid,
        kind: OperationsAction,
        description: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        minutes_spent: Option<u32>,
    },
    /// A root-cause statement (maintenance work).
    FindingRecorded {
        finding_id: Uuid,
        statement: String,
        evidence: Evidence,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        minutes_spent: Option<u32>,
    },
    /// A recovery step or a fix (maintenance work: it changes the system).
    MaintenanceActionRecorded {
        action_id: Uuid,
        kind: MaintenanceAction,
        description: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        minutes_spent: Option<u32>,
    },
    /// The same fingerprint or service failed again after an earlier incident
    /// was resolved: this incident is a recurrence of it (and of its fix).
    RecurrenceDetected {
        earlier_incident_id: Uuid,
        matched_by: RecurrenceMatch,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fix: Option<FixRef>,
    },
    IncidentMitigated {
        impact_end: DateTime<Utc>,
        /// Why, when the service decided it rather than a person.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cause: Option<MitigationCause>,
    },
    IncidentResolved {},
    IncidentReopened {
        reason: String,
    },
    IncidentClosed {},
    SeverityChanged {
        from: Severity,
        to: Severity,
    },
    IncidentImpactCorrected {
        impact_start: DateTime<Utc>,
        impact_end: Option<DateTime<Utc>>,
        reason: String,
    },
    TriageMarked {
        outcome: Triage,
    },
    /// The impact's level from the instant `at` on. One dated in the past
    /// corrects the record after the fact; nothing is edited.
    ImpactLevelChanged {
        /// The level in force when it was recorded.
        from: ImpactLevel,
        to: ImpactLevel,
        at: DateTime<Utc>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// The next escalation step and when it is due, unless acknowledged first.
    EscalationScheduled {
        level: u32,
        round: u32,
        due_at: DateTime<Utc>,
    },
    /// A level's targets were told: on time, or by hand.
    IncidentEscalated {
        level: u32,
        round: u32,
        targets: Vec<Target>,
        /// The responders told: the level's users and whoever its schedules
        /// had on call at that moment.
        users: Vec<Uuid>,
        by_hand: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// First line hands the incident to second line (SPEC §2).
    IncidentHandedOff {
        to: Team,
        reason: String,
    },
    IncidentAssigned {
        assignee: String,
    },
    IncidentUnassigned {},
}

/// Why the service mitigated an incident by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MitigationCause {
    /// Every alert of the incident resolved, and its service mitigates
    /// automatically: the impact ended at the last resolution (SPEC §5).
    AllAlertsResolved,
}

/// The team whose queue an open incident is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Team {
    #[default]
    Operations,
    Maintenance,
}

impl Team {
    pub fn as_str(self) -> &'static str {
        match self {
            Team::Operations => "operations",
            Team::Maintenance => "maintenance",
        }
    }
}

/// The escalation step an incident waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PendingEscalation {
    pub level: u32,
    pub round: u32,
    pub due_at: DateTime<Utc>,
}

impl IncidentEvent {
    pub fn type_name(&self) -> &'static str {
        match self {
            IncidentEvent::IncidentOpened { .. } => "IncidentOpened",
            IncidentEvent::IncidentAcknowledged { .. } => "IncidentAcknowledged",
            IncidentEvent::NoteAdded { .. } => "NoteAdded",
            IncidentEvent::ActionRecorded { .. } => "ActionRecorded",
            IncidentEvent::FindingRecorded { .. } => "FindingRecorded",
            IncidentEvent::MaintenanceActionRecorded { .. } => "MaintenanceActionRecorded",
            IncidentEvent::RecurrenceDetected { .. } => "RecurrenceDetected",
            IncidentEvent::IncidentMitigated { .. } => "IncidentMitigated",
            IncidentEvent::IncidentResolved { .. } => "IncidentResolved",
            IncidentEvent::IncidentReopened { .. } => "IncidentReopened",
            IncidentEvent::IncidentClosed { .. } => "IncidentClosed",
            IncidentEvent::SeverityChanged { .. } => "SeverityChanged",
            IncidentEvent::IncidentImpactCorrected { .. } => "IncidentImpactCorrected",
            IncidentEvent::TriageMarked { .. } => "TriageMarked",
            IncidentEvent::ImpactLevelChanged { .. } => "ImpactLevelChanged",
            IncidentEvent::EscalationScheduled { .. } => "EscalationScheduled",
            IncidentEvent::IncidentEscalated { .. } => "IncidentEscalated",
            IncidentEvent::IncidentHandedOff { .. } => "IncidentHandedOff",
            IncidentEvent::IncidentAssigned { .. } => "IncidentAssigned",
            IncidentEvent::IncidentUnassigned { .. } => "IncidentUnassigned",
        }
    }
    pub fn payload(&self) -> serde_json::Value {
        crate::event::untagged_payload(self)
    }
    pub fn from_stored(event_type: &str, payload: &serde_json::Value) -> Option<IncidentEvent> {
        crate::event::from_tagged(event_type, payload)
    }
}

/// An incident as folded from its events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Incident {
    pub id: Uuid,
    pub service_id: Option<Uuid>,
    pub title: String,
    pub status: Status,
    pub severity: Severity,
    pub category: Category,
    pub group_key: Option<String>,
    pub impact_start: DateTime<Utc>,
    pub impact_end: Option<DateTime<Utc>>,
    pub opened_at: DateTime<Utc>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    pub triage: Option<Triage>,
    #[serde(default)]
    pub team: Team,
    #[serde(default)]
    pub assignee: Option<String>,
    /// Highest escalation level reached (0: none yet).
    #[serde(default)]
    pub escalation_level: u32,
    #[serde(default)]
    pub next_escalation: Option<PendingEscalation>,
    /// Root-cause findings recorded so far.
    #[serde(default)]
    pub findings: u32,
    /// Fixes made on the incident itself (maintenance actions of kind fix).
    #[serde(default)]
    pub fixes: Vec<FixRef>,
    /// The earlier incident this one is a recurrence of.
    #[serde(default)]
    pub recurrence_of: Option<Uuid>,
    /// The maintenance window its impact began in: planned downtime.
    #[serde(default)]
    pub planned_window: Option<Uuid>,
    /// The impact's level now: the latest in effect (`None` only in states
    /// stored before levels existed; see [`Incident::level`]).
    #[serde(default)]
    pub impact_level: Option<ImpactLevel>,
    /// Since when that level is in effect.
    #[serde(default)]
    pub impact_level_since: Option<DateTime<Utc>>,
}

impl Incident {
    /// The impact's level now.
    pub fn level(&self) -> ImpactLevel {
        self.impact_level
            .unwrap_or_else(|| ImpactLevel::of_severity(self.severity))
    }
}

/// The step an incident starts paging with: the first, due at once, when
/// its service has an escalation policy (SPEC §5); none otherwise.
pub fn first_step(service_has_policy: bool, now: DateTime<Utc>) -> Option<IncidentEvent> {
    service_has_policy.then_some(IncidentEvent::EscalationScheduled {
        level: Step::FIRST.level,
        round: Step::FIRST.round,
        due_at: now,
    })
}

/// The alert group a receipt may open an incident in or attach to, as read
/// (or as this process last knew it): its stream, version and bound incident.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupSeen {
    pub stream: String,
    pub version: i64,
    pub bound: Option<Uuid>,
}

/// Everything one receipt records, over every stream it touches, in the
/// order they are appended (one transaction).
#[derive(Debug, Clone, PartialEq)]
pub struct ReceiptOutcome {
    /// A new incident's stream, which must not exist yet, and its opening
    /// events: first, so no reader of the log meets an alert attached to an
    /// incident it has not seen open.
    pub opened: Option<(String, Vec<IncidentEvent>)>,
    /// The receipt, on the alert's stream at the version decided on.
    pub receipt: crate::alert::AlertEvent,
    /// The group at the version decided on: bound to the new incident, or,
    /// when the receipt attaches to its incident, only asserted (no event),
    /// so that a resolve releasing it meanwhile makes the receipt decide
    /// again while a storm's attachments commit side by side.
    pub group: Option<(String, Expected, Option<GroupEvent>)>,
}

/// Completes a receipt (`alert::decide_receipt`) into its whole outcome:
/// what opening an incident (`opened_by_alert`) or attaching to one means
/// for the other streams. `has_policy` matters only when it opens one.
pub fn receipt_outcome(
    receipt: crate::alert::Receipt,
    signal: &crate::alert::Signal,
    group: Option<&GroupSeen>,
    has_policy: bool,
    now: DateTime<Utc>,
) -> ReceiptOutcome {
    use crate::alert::{AlertEvent, Decision};
    let decision = match &receipt.alert {
        AlertEvent::AlertReceived { decision, .. } => Some(decision),
        AlertEvent::AlertResolved { .. } => None,
    };
    let (opened, group) = match (decision, receipt.open_incident, group) {
        (Some(Decision::OpenedIncident { .. }), Some(id), Some(g)) => {
            let service_id = match &receipt.alert {
                AlertEvent::AlertReceived { service_id, .. } => *service_id,
                AlertEvent::AlertResolved { .. } => None,
            };
            let (events, bound) = opened_by_alert(signal, id, service_id, now, has_policy);
            (
                Some((incident_stream(id), events)),
                Some((g.stream.clone(), Expected::Exact(g.version), Some(bound))),
            )
        }
        (Some(Decision::AttachedToIncident { .. }), _, Some(g)) => (
            None,
            Some((g.stream.clone(), Expected::Exact(g.version), None)),
        ),
        _ => (None, None),
    };
    ReceiptOutcome {
        opened,
        receipt: receipt.alert,
        group,
    }
}

/// What a receipt that opens an incident records besides itself (SPEC §5):
/// the incident, named after the alert and as severe as it, its impact from
/// when the alert began (never later than now), paging from the first step
/// when its service has a policy; and the alert group bound to it, so the
/// group's next alerts attach to it. (A window in force would have held the
/// alert instead, so none is planned.)
pub fn opened_by_alert(
    signal: &crate::alert::Signal,
    incident_id: Uuid,
    service_id: Option<Uuid>,
    now: DateTime<Utc>,
    service_has_policy: bool,
) -> (Vec<IncidentEvent>, GroupEvent) {
    let opened = IncidentEvent::IncidentOpened {
        incident_id,
        service_id,
        title: signal.summary.clone(),
        severity: signal.severity,
        category: signal.category,
        group_key: Some(signal.group_key.clone()),
        impact_start: signal.starts_at.min(now),
        planned_window: None,
        impact_level: Some(ImpactLevel::of_severity(signal.severity)),
    };
    let bound = GroupEvent::AlertGroupBound {
        incident_id,
        service_id: service_id.unwrap_or_default(),
        group_key: signal.group_key.clone(),
    };
    (
        std::iter::once(opened)
            .chain(first_step(service_has_policy, now))
            .collect(),
        bound,
    )
}

/// Folds one stored event at the instant it was recorded (the one clock
/// every read and every command's answer uses); an event of another kind
/// leaves the incident as it is.
pub fn evolve_stored(incident: Option<Incident>, e: &crate::RecordedEvent) -> Option<Incident> {
    match IncidentEvent::from_stored(&e.event_type, &e.payload) {
        Some(ev) => evolve(incident, &ev, e.recorded_at),
        None => incident,
    }
}

/// The incident as its stored events leave it: the one fold of an incident
/// stream, for handlers, workers and projections alike.
pub fn fold(events: &[crate::RecordedEvent]) -> Option<Incident> {
    events.iter().fold(None, evolve_stored)
}

pub fn evolve(
    incident: Option<Incident>,
    event: &IncidentEvent,
    at: DateTime<Utc>,
) -> Option<Incident> {
    if let IncidentEvent::IncidentOpened {
        incident_id,
        service_id,
        title,
        severity,
        category,
        group_key,
        impact_start,
        planned_window,
        impact_level,
    } = event
    {
        return Some(Incident {
            id: *incident_id,
            service_id: *service_id,
            title: title.clone(),
            status: Status::Triggered,
            severity: *severity,
            category: *category,
            group_key: group_key.clone(),
            impact_start: *impact_start,
            impact_end: None,
            opened_at: at,
            acknowledged_at: None,
            resolved_at: None,
            closed_at: None,
            triage: None,
            team: Team::Operations,
            assignee: None,
            escalation_level: 0,
            next_escalation: None,
            findings: 0,
            fixes: Vec::new(),
            recurrence_of: None,
            planned_window: *planned_window,
            impact_level: Some(impact_level.unwrap_or_else(|| ImpactLevel::of_severity(*severity))),
            impact_level_since: Some(*impact_start),
        });
    }
    let mut i = incident?;
    match event {
        IncidentEvent::IncidentOpened { .. } => {}
        IncidentEvent::IncidentAcknowledged {} => {
            i.status = Status::Acknowledged;
            i.acknowledged_at.get_or_insert(at);
            // Somebody has it: nobody else needs to be woken.
            i.next_escalation = None;
        }
        IncidentEvent::NoteAdded { .. } | IncidentEvent::ActionRecorded { .. } => {}
        IncidentEvent::FindingRecorded { .. } => i.findings += 1,
        IncidentEvent::MaintenanceActionRecorded {
            action_id, kind, ..
        } => {
            if *kind == MaintenanceAction::Fix {
                i.fixes.push(FixRef::Action {
                    action_id: *action_id,
                });
            }
        }
        IncidentEvent::RecurrenceDetected {
            earlier_incident_id,
            ..
        } => i.recurrence_of = Some(*earlier_incident_id),
        IncidentEvent::IncidentMitigated { impact_end, .. } => {
            i.status = Status::Mitigated;
            i.impact_end = Some(*impact_end);
            i.next_escalation = None;
        }
        IncidentEvent::IncidentResolved {} => {
            i.next_escalation = None;
            i.status = Status::Resolved;
            i.resolved_at = Some(at);
            i.impact_end.get_or_insert(at);
        }
        IncidentEvent::IncidentReopened { .. } => {
            i.status = Status::Triggered;
            i.resolved_at = None;
            i.impact_end = None;
        }
        IncidentEvent::IncidentClosed {} => {
            i.next_escalation = None;
            i.status = Status::Closed;
            i.closed_at = Some(at);
        }
        IncidentEvent::SeverityChanged { to, .. } => i.severity = *to,
        IncidentEvent::IncidentImpactCorrected {
            impact_start,
            impact_end,
            ..
        } => {
            i.impact_start = *impact_start;
            i.impact_end = *impact_end;
        }
        IncidentEvent::TriageMarked { outcome } => i.triage = Some(*outcome),
        IncidentEvent::ImpactLevelChanged { to, at: from, .. } => {
            // A correction dated before the level in force does not replace it.
            if i.impact_level_since.is_none_or(|since| *from >= since) {
                i.impact_level = Some(*to);
                i.impact_level_since = Some(*from);
            }
        }
        IncidentEvent::EscalationScheduled {
            level,
            round,
            due_at,
        } => {
            i.next_escalation = Some(PendingEscalation {
                level: *level,
                round: *round,
                due_at: *due_at,
            })
        }
        IncidentEvent::IncidentEscalated { level, .. } => {
            i.escalation_level = i.escalation_level.max(*level);
            i.next_escalation = None;
        }
        IncidentEvent::IncidentHandedOff { to, .. } => i.team = *to,
        IncidentEvent::IncidentAssigned { assignee } => i.assignee = Some(assignee.clone()),
        IncidentEvent::IncidentUnassigned {} => i.assignee = None,
    }
    Some(i)
}

/// Commands on an incident.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Opens one by hand (ingestion opens those alerts raise).
    Open {
        incident_id: Uuid,
        service_id: Option<Uuid>,
        title: String,
        severity: Severity,
        category: Category,
        /// When the impact began; now if absent, and never later than now.
        impact_start: Option<DateTime<Utc>>,
        /// Mapped from the severity if absent.
        impact_level: Option<ImpactLevel>,
    },
    Acknowledge,
    AddNote {
        text: String,
        visibility: Visibility,
    },
    RecordAction {
        kind: OperationsAction,
        description: String,
        minutes_spent: Option<u32>,
    },
    RecordFinding {
        statement: String,
        evidence: Evidence,
        minutes_spent: Option<u32>,
    },
    RecordMaintenanceAction {
        kind: MaintenanceAction,
        description: String,
        minutes_spent: Option<u32>,
    },
    Mitigate {
        impact_end: DateTime<Utc>,
        /// Set when the service decides it (auto-mitigation), not a person.
        cause: Option<MitigationCause>,
    },
    Resolve,
    Reopen {
        reason: String,
    },
    Close,
    ChangeSeverity {
        to: Severity,
    },
    CorrectImpact {
        impact_start: DateTime<Utc>,
        impact_end: Option<DateTime<Utc>>,
        reason: String,
    },
    MarkTriage {
        outcome: Triage,
    },
    /// The impact is at `to` from `at` on (now, or an instant past when
    /// the record is corrected).
    ChangeImpactLevel {
        to: ImpactLevel,
        at: DateTime<Utc>,
        now: DateTime<Utc>,
        reason: Option<String>,
    },
    /// Tell a level's targets now; `then` is the step to schedule after it
    /// (from the policy), if the incident is still unacknowledged.
    Escalate {
        step: Step,
        targets: Vec<Target>,
        users: Vec<Uuid>,
        by_hand: bool,
        reason: Option<String>,
        then: Option<(Step, DateTime<Utc>)>,
        now: DateTime<Utc>,
    },
    HandOff {
        reason: String,
    },
    Assign {
        assignee: String,
    },
    Unassign,
}

fn invalid_in(command: &str, status: Status) -> Rejection {
    Rejection::InvalidTransition {
        command: command.to_owned(),
        state: status.as_str().to_owned(),
    }
}

/// A free text of a command: trimmed, non-empty, bounded, and without
/// control characters other than line breaks and tabs (the work log's rule:
/// a NUL would stop the read models that keep the text).
pub(crate) fn text(field: &str, raw: &str) -> Result<String, Rejection> {
    crate::worklog::text(field, raw)
}

/// Bounds on a finding's evidence, so one finding cannot be a log dump.
pub const EVIDENCE_EXCERPTS_MAX: usize = 50;
pub const EVIDENCE_COMPONENTS_MAX: usize = 50;
const COMPONENT_LEN_MAX_CHARS: usize = 200;

fn checked_evidence(e: Evidence) -> Result<Evidence, Rejection> {
    if e.log_excerpts.len() > EVIDENCE_EXCERPTS_MAX {
        return Err(Rejection::Invalid(format!(
            "evidence.log_excerpts may hold at most {EVIDENCE_EXCERPTS_MAX} excerpts"
        )));
    }
    if e.components.len() > EVIDENCE_COMPONENTS_MAX {
        return Err(Rejection::Invalid(format!(
            "evidence.components may hold at most {EVIDENCE_COMPONENTS_MAX} names"
        )));
    }
    if let Some(r) = e.time_range {
        if r.to < r.from {
            return Err(Rejection::Invalid(
                "evidence.time_range.to must not be before its from".into(),
            ));
        }
    }
    let log_excerpts = e
        .log_excerpts
        .iter()
        .map(|x| text("evidence.log_excerpts[]", x))
        .collect::<Result<Vec<_>, _>>()?;
    let mut components = Vec::with_capacity(e.components.len());
    for c in &e.components {
        let c = c.trim();
        if c.is_empty() || c.chars().count() > COMPONENT_LEN_MAX_CHARS {
            return Err(Rejection::Invalid(format!(
                "evidence.components[] must be 1 to {COMPONENT_LEN_MAX_CHARS} characters"
            )));
        }
        components.push(c.to_owned());
    }
    Ok(Evidence {
        log_excerpts,
        time_range: e.time_range,
        components,
    })
}

impl Command {
    /// Who may give it: findings and maintenance actions change the system,
    /// so they are the maintenance team's (SPEC §1).
    pub fn roles(&self) -> &'static [crate::access::Role] {
        match self {
            Command::RecordFinding { .. } | Command::RecordMaintenanceAction { .. } => {
                crate::access::MAINTAINERS
            }
            _ => crate::access::RESPONDERS,
        }
    }
}

/// Decides a command against the incident's current state. `new_id` names
/// notes and actions; the caller supplies it so this stays pure.
pub fn decide(
    incident: &Incident,
    command: Command,
    new_id: Uuid,
) -> Result<Vec<IncidentEvent>, Rejection> {
    use Status::*;
    let s = incident.status;
    let event = match command {
        Command::Open { .. } => {
            return Err(Rejection::AlreadyExists(format!(
                "incident {}",
                incident.id
            )))
        }
        Command::Acknowledge => match s {
            Triggered => IncidentEvent::IncidentAcknowledged {},
            _ => return Err(invalid_in("acknowledge", s)),
        },
        Command::AddNote {
            text: t,
            visibility,
        } => match s {
            Closed => return Err(invalid_in("add a note to", s)),
            _ => IncidentEvent::NoteAdded {
                note_id: new_id,
                text: text("text", &t)?,
                visibility,
            },
        },
        Command::RecordAction {
            kind,
            description,
            minutes_spent,
        } => match s {
            Closed => return Err(invalid_in("record an action on", s)),
            _ => IncidentEvent::ActionRecorded {
                action_id: new_id,
                kind,
                description: text("description", &description)?,
                minutes_spent: minutes(minutes_spent)?,
            },
        },
        // Root causes are often found after the service is back, so a
        // resolved incident still takes findings; a closed one is done.
        Command::RecordFinding {
            statement,
            evidence,
            minutes_spent,
        } => match s {
            Closed => return Err(invalid_in("record a finding on", s)),
            _ => IncidentEvent::FindingRecorded {
                finding_id: new_id,
                statement: text("statement", &statement)?,
                evidence: checked_evidence(evidence)?,
                minutes_spent: minutes(minutes_spent)?,
            },
        },
        Command::RecordMaintenanceAction {
            kind,
            description,
            minutes_spent,
        } => match s {
            Closed => return Err(invalid_in("record a maintenance action on", s)),
            _ => IncidentEvent::MaintenanceActionRecorded {
                action_id: new_id,
                kind,
                description: text("description", &description)?,
                minutes_spent: minutes(minutes_spent)?,
            },
        },
        Command::Mitigate { impact_end, cause } => match s {
            Triggered | Acknowledged => {
                if impact_end < incident.impact_start {
                    return Err(Rejection::Invalid(
                        "impact_end must not be before the impact start".into(),
                    ));
                }
                IncidentEvent::IncidentMitigated { impact_end, cause }
            }
            _ => return Err(invalid_in("mitigate", s)),
        },
        Command::Resolve => match s {
            Triggered | Acknowledged | Mitigated => IncidentEvent::IncidentResolved {},
            _ => return Err(invalid_in("resolve", s)),
        },
        Command::Reopen { reason } => match s {
            Resolved => IncidentEvent::IncidentReopened {
                reason: text("reason", &reason)?,
            },
            _ => return Err(invalid_in("reopen", s)),
        },
        Command::Close => match s {
            Resolved => IncidentEvent::IncidentClosed {},
            _ => return Err(invalid_in("close", s)),
        },
        Command::ChangeSeverity { to } => match s {
            Closed => return Err(invalid_in("change the severity of", s)),
            _ if to == incident.severity => {
                return Err(Rejection::Invalid(format!(
                    "the severity is {} already",
                    to.as_str()
                )))
            }
            _ => IncidentEvent::SeverityChanged {
                from: incident.severity,
                to,
            },
        },
        Command::CorrectImpact {
            impact_start,
            impact_end,
            reason,
        } => {
            if impact_end.is_some_and(|end| end < impact_start) {
                return Err(Rejection::Invalid(
                    "impact_end must not be before impact_start".into(),
                ));
            }
            IncidentEvent::IncidentImpactCorrected {
                impact_start,
                impact_end,
                reason: text("reason", &reason)?,
            }
        }
        Command::MarkTriage { outcome } => IncidentEvent::TriageMarked { outcome },
        Command::ChangeImpactLevel {
            to,
            at,
            now,
            reason,
        } => {
            if at > now {
                return Err(Rejection::Invalid(
                    "at must not be in the future: a level is recorded once it holds".into(),
                ));
            }
            let current = incident.level();
            if to == current && incident.impact_level_since.is_none_or(|s| at >= s) {
                return Err(Rejection::Invalid(format!(
                    "the impact is {} already",
                    to.as_str()
                )));
            }
            IncidentEvent::ImpactLevelChanged {
                from: current,
                to,
                at,
                reason: match reason {
                    Some(r) => Some(text("reason", &r)?),
                    None => None,
                },
            }
        }
        Command::Escalate {
            step,
            targets,
            users,
            by_hand,
            reason,
            then,
            now,
        } => {
            if !matches!(s, Triggered | Acknowledged) {
                return Err(invalid_in("escalate", s));
            }
            if !by_hand {
                // The timer's step must still be the one waited for, and due:
                // a step fired, cancelled or rescheduled meanwhile is not fired.
                let waited = incident
                    .next_escalation
                    .filter(|p| p.level == step.level && p.round == step.round && p.due_at <= now);
                if waited.is_none() || s != Triggered {
                    return Err(Rejection::Invalid(
                        "that escalation step is no longer due".into(),
                    ));
                }
            }
            let reason = match reason {
                Some(r) => Some(text("reason", &r)?),
                None => None,
            };
            let mut events = vec![IncidentEvent::IncidentEscalated {
                level: step.level,
                round: step.round,
                targets,
                users,
                by_hand,
                reason,
            }];
            if let (Triggered, Some((next, due_at))) = (s, then) {
                events.push(IncidentEvent::EscalationScheduled {
                    level: next.level,
                    round: next.round,
                    due_at,
                });
            }
            return Ok(events);
        }
        Command::HandOff { reason } => match (s, incident.team) {
            (Closed | Resolved, _) => return Err(invalid_in("hand off", s)),
            (_, Team::Maintenance) => {
                return Err(Rejection::Invalid(
                    "the incident is with maintenance already".into(),
                ))
            }
            _ => IncidentEvent::IncidentHandedOff {
                to: Team::Maintenance,
                reason: text("reason", &reason)?,
            },
        },
        Command::Assign { assignee } => match s {
            Closed => return Err(invalid_in("assign", s)),
            _ => IncidentEvent::IncidentAssigned {
                // A person or a team, named as anything else is.
                assignee: crate::text::Name::parse("assignee", &assignee)
                    .map_err(Rejection::Invalid)?
                    .as_str()
                    .to_owned(),
            },
        },
        Command::Unassign => match (s, &incident.assignee) {
            (Closed, _) => return Err(invalid_in("unassign", s)),
            (_, None) => return Err(Rejection::Invalid("nobody is assigned".into())),
            _ => IncidentEvent::IncidentUnassigned {},
        },
    };
    Ok(vec![event])
}

/// What deciding a command on an incident needs from beyond its stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Context {
    /// Names a note or an action the command records.
    pub new_id: Uuid,
    /// When the command is given: a reopened incident's first step is due then.
    pub now: DateTime<Utc>,
    /// Whether the incident's service has an escalation policy.
    pub has_policy: bool,
    /// The alert group it came from, as its stream stands, when it came
    /// from one (looked up for a reopening).
    pub group: Option<GroupFacts>,
    /// For an opening: the service's maintenance window in force when the
    /// impact began (trouble that began inside one is planned downtime).
    pub planned_window: Option<Uuid>,
}

/// An alert group's stream: its version, and the incident it binds now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupFacts {
    pub version: i64,
    pub bound: Option<Uuid>,
}

impl Aggregate for Incident {
    stored_events!(IncidentEvent, incident_stream);
    type Command = Command;
    type Context = Context;
    const NOUN: &'static str = "incident";

    fn evolve(
        state: Option<Self>,
        event: &IncidentEvent,
        at: DateTime<Utc>,
        _: By<'_>,
    ) -> Option<Self> {
        evolve(state, event, at)
    }
    fn status(&self) -> &'static str {
        self.status.as_str()
    }

    /// The command's events, and what they mean elsewhere: resolving frees
    /// the alert group (its next alert opens a new incident); reopening
    /// pages again from the first level and takes the group back, unless a
    /// newer incident holds it now.
    fn decide(
        state: Option<&Self>,
        command: Command,
        ctx: &Context,
        _: &str,
    ) -> Result<Outcome<IncidentEvent>, Rejection> {
        if let (
            None,
            Command::Open {
                incident_id,
                service_id,
                title,
                severity,
                category,
                impact_start,
                impact_level,
            },
        ) = (state, &command)
        {
            let title = crate::text::Name::parse("title", title).map_err(Rejection::Invalid)?;
            let opened = IncidentEvent::IncidentOpened {
                incident_id: *incident_id,
                service_id: *service_id,
                title: title.as_str().to_owned(),
                severity: *severity,
                category: *category,
                group_key: None,
                impact_start: impact_start.unwrap_or(ctx.now).min(ctx.now),
                planned_window: ctx.planned_window,
                impact_level: Some(
                    impact_level.unwrap_or_else(|| ImpactLevel::of_severity(*severity)),
                ),
            };
            return Ok(Outcome::only(
                std::iter::once(opened)
                    .chain(first_step(ctx.has_policy, ctx.now))
                    .collect(),
            ));
        }
        let i = existing(state, "change")?;
        let mut events = decide(i, command, ctx.new_id)?;
        let reopens = events
            .iter()
            .any(|e| matches!(e, IncidentEvent::IncidentReopened { .. }));
        let resolves = events
            .iter()
            .any(|e| matches!(e, IncidentEvent::IncidentResolved {}));
        if reopens {
            events.extend(first_step(ctx.has_policy, ctx.now));
        }
        let mut outcome = Outcome::only(events);
        let (Some(service_id), Some(group_key)) = (i.service_id, &i.group_key) else {
            return Ok(outcome);
        };
        let stream = crate::alert::group_stream(service_id, group_key);
        if resolves {
            let released = GroupEvent::AlertGroupReleased { incident_id: i.id };
            outcome = outcome.and(Elsewhere {
                stream,
                expected: Expected::Any,
                events: vec![(released.type_name(), released.payload())],
                recorder: Recorder::Caller,
            });
        } else if let (true, Some(group)) = (reopens, ctx.group) {
            if group.bound.is_none() {
                let bound = GroupEvent::AlertGroupBound {
                    incident_id: i.id,
                    service_id,
                    group_key: group_key.clone(),
                };
                outcome = outcome.and(Elsewhere {
                    stream,
                    expected: Expected::Exact(group.version),
                    events: vec![(bound.type_name(), bound.payload())],
                    recorder: Recorder::Caller,
                });
            }
        }
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_incident_pages_from_the_first_step_at_once_only_where_a_policy_says_who() {
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        assert_eq!(
            first_step(true, now),
            Some(IncidentEvent::EscalationScheduled {
                level: 1,
                round: 1,
                due_at: now
            })
        );
        assert_eq!(first_step(false, now), None);
    }

    #[test]
    fn the_fold_of_stored_events_uses_their_recorded_instant_and_skips_other_kinds() {
        let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let stored = |version: i64, event_type: &str, payload: serde_json::Value, secs: i64| {
            crate::RecordedEvent {
                position: version,
                tx_id: 1,
                event_id: Uuid::from_u128(version as u128),
                tenant_id: Uuid::nil(),
                stream_id: "incident-1".into(),
                stream_version: version,
                event_type: event_type.into(),
                schema_version: 1,
                work_class: crate::WorkClass::Operations,
                payload,
                metadata: serde_json::json!({}),
                occurred_at: at,
                recorded_at: at + chrono::Duration::seconds(secs),
            }
        };
        let open = opened_event(at);
        let ack = IncidentEvent::IncidentAcknowledged {};
        let events = [
            stored(1, open.type_name(), open.payload(), 0),
            stored(2, "SomethingElse", serde_json::json!({}), 5),
            stored(3, ack.type_name(), ack.payload(), 9),
        ];
        let folded = fold(&events).unwrap();
        assert_eq!(folded.status, Status::Acknowledged);
        assert_eq!(
            folded.acknowledged_at,
            Some(at + chrono::Duration::seconds(9))
        );
        assert_eq!(fold(&events[1..2]), None);
    }

    fn opened_event(at: DateTime<Utc>) -> IncidentEvent {
        IncidentEvent::IncidentOpened {
            incident_id: Uuid::from_u128(1),
            service_id: None,
            title: "Orders slow".into(),
            severity: Severity::Error,
            category: Category::Application,
            group_key: None,
            impact_start: at,
            planned_window: None,
            impact_level: None,
        }
    }

    fn opened() -> Incident {
        let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        evolve(None, &opened_event(at), at).unwrap()
    }

    fn grouped() -> Incident {
        let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let mut e = opened_event(at);
        if let IncidentEvent::IncidentOpened {
            service_id,
            group_key,
            ..
        } = &mut e
        {
            *service_id = Some(Uuid::from_u128(7));
            *group_key = Some("db".into());
        }
        evolve(None, &e, at).unwrap()
    }

    fn context(group: Option<GroupFacts>) -> Context {
        Context {
            new_id: Uuid::from_u128(2),
            now: DateTime::from_timestamp(1_700_000_600, 0).unwrap(),
            has_policy: true,
            group,
            planned_window: None,
        }
    }

    fn decided(i: &Incident, c: Command, ctx: &Context) -> Outcome<IncidentEvent> {
        <Incident as Aggregate>::decide(Some(i), c, ctx, "op").unwrap()
    }

    #[test]
    fn given_an_unbound_group_when_a_new_alert_fires_then_an_incident_opens_first_and_the_group_is_bound(
    ) {
        use crate::alert::{decide_receipt, AlertState, NewIds};
        let (service, id) = (Uuid::from_u128(1), Uuid::from_u128(7));
        let signal = alert_signal(true);
        let seen = GroupSeen {
            stream: "group-x".into(),
            version: 3,
            bound: None,
        };
        let receipt = decide_receipt(
            &AlertState::default(),
            signal.clone(),
            Some(service),
            crate::alert::Surroundings::default(),
            NewIds {
                alert_id: id,
                incident_id: id,
            },
            at(0),
        );
        let out = receipt_outcome(receipt, &signal, Some(&seen), true, at(0));
        let (stream, events) = out.opened.expect("an incident opens");
        assert_eq!(stream, incident_stream(id));
        assert!(matches!(events[0], IncidentEvent::IncidentOpened { .. }));
        assert!(
            matches!(
                events.last(),
                Some(IncidentEvent::EscalationScheduled { .. })
            ),
            "with a policy, paging starts: {events:?}"
        );
        let (group, expected, bound) = out.group.expect("the group is bound");
        assert_eq!((group.as_str(), expected), ("group-x", Expected::Exact(3)));
        assert!(
            matches!(bound, Some(GroupEvent::AlertGroupBound { incident_id, .. }) if incident_id == id)
        );
    }

    #[test]
    fn given_a_bound_group_when_another_alert_fires_then_it_attaches_and_only_asserts_the_group() {
        use crate::alert::{decide_receipt, AlertState, NewIds};
        let (service, incident) = (Uuid::from_u128(1), Uuid::from_u128(9));
        let signal = alert_signal(true);
        let seen = GroupSeen {
            stream: "group-x".into(),
            version: 4,
            bound: Some(incident),
        };
        let receipt = decide_receipt(
            &AlertState::default(),
            signal.clone(),
            Some(service),
            crate::alert::Surroundings {
                bound_incident: seen.bound,
                ..Default::default()
            },
            NewIds {
                alert_id: Uuid::from_u128(2),
                incident_id: Uuid::from_u128(3),
            },
            at(0),
        );
        let out = receipt_outcome(receipt, &signal, Some(&seen), true, at(0));
        assert_eq!(out.opened, None);
        assert_eq!(
            out.group,
            Some(("group-x".into(), Expected::Exact(4), None))
        );
    }

    #[test]
    fn given_a_firing_alert_when_it_resolves_then_only_its_own_stream_records_it() {
        use crate::alert::{decide_receipt, evolve_alert, AlertEvent, AlertState, NewIds};
        let ids = NewIds {
            alert_id: Uuid::from_u128(2),
            incident_id: Uuid::from_u128(3),
        };
        let first = decide_receipt(
            &AlertState::default(),
            alert_signal(true),
            Some(Uuid::from_u128(1)),
            crate::alert::Surroundings::default(),
            ids,
            at(0),
        );
        let firing = evolve_alert(AlertState::default(), &first.alert, at(0));
        let signal = alert_signal(false);
        let receipt = decide_receipt(
            &firing,
            signal.clone(),
            Some(Uuid::from_u128(1)),
            crate::alert::Surroundings::default(),
            ids,
            at(60),
        );
        let out = receipt_outcome(receipt, &signal, None, true, at(60));
        assert!(matches!(out.receipt, AlertEvent::AlertResolved { .. }));
        assert_eq!((out.opened, out.group), (None, None));
    }

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    fn alert_signal(firing: bool) -> crate::alert::Signal {
        crate::alert::Signal {
            source: "alertmanager".into(),
            dedup_key: "fp-1".into(),
            group_key: "{}:{alertname=\"HighLatency\"}".into(),
            service_ref: Some("orders".into()),
            summary: "p99 above 2s".into(),
            severity: Severity::Critical,
            category: Category::Application,
            labels: Default::default(),
            firing,
            starts_at: at(-60),
            ends_at: None,
        }
    }

    #[test]
    fn given_a_grouped_incident_when_resolved_then_its_group_is_released() {
        let out = decided(&grouped(), Command::Resolve, &context(None));
        assert_eq!(out.events, vec![IncidentEvent::IncidentResolved {}]);
        let released = GroupEvent::AlertGroupReleased {
            incident_id: Uuid::from_u128(1),
        };
        assert_eq!(
            out.elsewhere,
            vec![Elsewhere {
                stream: crate::alert::group_stream(Uuid::from_u128(7), "db"),
                expected: Expected::Any,
                events: vec![(released.type_name(), released.payload())],
                recorder: Recorder::Caller,
            }]
        );
    }

    #[test]
    fn given_a_resolved_incident_whose_group_is_free_when_reopened_then_it_pages_again_and_takes_the_group_back(
    ) {
        let resolved = run(grouped(), Command::Resolve).unwrap();
        let ctx = context(Some(GroupFacts {
            version: 4,
            bound: None,
        }));
        let reopen = Command::Reopen {
            reason: "it recurred".into(),
        };
        let out = decided(&resolved, reopen.clone(), &ctx);
        assert!(matches!(
            out.events[..],
            [
                IncidentEvent::IncidentReopened { .. },
                IncidentEvent::EscalationScheduled { level: 1, round: 1, due_at }
            ] if due_at == ctx.now
        ));
        assert_eq!(out.elsewhere.len(), 1);
        assert_eq!(out.elsewhere[0].expected, Expected::Exact(4));
        assert_eq!(out.elsewhere[0].events[0].0, "AlertGroupBound");

        // A newer incident holds the group: this one does not take it.
        let held = context(Some(GroupFacts {
            version: 5,
            bound: Some(Uuid::from_u128(9)),
        }));
        assert!(decided(&resolved, reopen.clone(), &held)
            .elsewhere
            .is_empty());
        // A service with no policy: nobody to page.
        let quiet = Context {
            has_policy: false,
            ..held
        };
        assert_eq!(decided(&resolved, reopen, &quiet).events.len(), 1);
    }

    #[test]
    fn given_nothing_when_opened_by_hand_then_it_pages_from_the_first_step_and_never_starts_later_than_now(
    ) {
        let ctx = context(None);
        let open = Command::Open {
            incident_id: Uuid::from_u128(1),
            service_id: Some(Uuid::from_u128(7)),
            title: " DB down ".into(),
            severity: Severity::Critical,
            category: Category::Application,
            impact_start: Some(ctx.now + chrono::Duration::hours(1)),
            impact_level: None,
        };
        let out = <Incident as Aggregate>::decide(None, open, &ctx, "op").unwrap();
        match &out.events[..] {
            [IncidentEvent::IncidentOpened {
                title,
                impact_start,
                impact_level,
                ..
            }, IncidentEvent::EscalationScheduled { level: 1, .. }] => {
                assert_eq!(title, "DB down");
                assert_eq!(*impact_start, ctx.now);
                assert_eq!(
                    *impact_level,
                    Some(ImpactLevel::of_severity(Severity::Critical))
                );
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn given_an_alert_that_opens_an_incident_then_it_opens_paging_and_binds_its_group() {
        let now = DateTime::from_timestamp(1_700_000_600, 0).unwrap();
        let signal = crate::alert::Signal {
            source: "alertmanager".into(),
            dedup_key: "k".into(),
            group_key: "db".into(),
            service_ref: None,
            summary: "DB down".into(),
            severity: Severity::Critical,
            category: Category::Application,
            labels: Default::default(),
            firing: true,
            // A sender's clock ahead of ours.
            starts_at: now + chrono::Duration::minutes(2),
            ends_at: None,
        };
        let service = Some(Uuid::from_u128(7));
        let (events, bound) = opened_by_alert(&signal, Uuid::from_u128(1), service, now, true);
        assert!(matches!(
            &events[..],
            [
                IncidentEvent::IncidentOpened { impact_start, group_key: Some(g), .. },
                IncidentEvent::EscalationScheduled { level: 1, .. }
            ] if *impact_start == now && g == "db"
        ));
        assert_eq!(
            bound,
            GroupEvent::AlertGroupBound {
                incident_id: Uuid::from_u128(1),
                service_id: Uuid::from_u128(7),
                group_key: "db".into()
            }
        );
        let (quiet, _) = opened_by_alert(&signal, Uuid::from_u128(1), service, now, false);
        assert_eq!(quiet.len(), 1);
    }

    #[test]
    fn given_no_incident_when_commanded_then_it_is_refused() {
        assert!(
            <Incident as Aggregate>::decide(None, Command::Acknowledge, &context(None), "op")
                .is_err()
        );
    }

    fn run(i: Incident, c: Command) -> Result<Incident, Rejection> {
        let at = i.impact_start + chrono::Duration::minutes(5);
        let events = decide(&i, c, Uuid::from_u128(2))?;
        Ok(events
            .iter()
            .try_fold(i, |i, e| evolve(Some(i), e, at))
            .unwrap())
    }

    #[test]
    fn the_happy_path_runs_from_triggered_to_closed() {
        let i = run(opened(), Command::Acknowledge).unwrap();
        assert_eq!(i.status, Status::Acknowledged);
        let end = i.impact_start + chrono::Duration::minutes(3);
        let i = run(
            i,
            Command::Mitigate {
                impact_end: end,
                cause: None,
            },
        )
        .unwrap();
        assert_eq!((i.status, i.impact_end), (Status::Mitigated, Some(end)));
        let i = run(i, Command::Resolve).unwrap();
        let i = run(i, Command::Close).unwrap();
        assert_eq!(i.status, Status::Closed);
    }

    #[test]
    fn invalid_transitions_name_the_current_state() {
        let i = run(opened(), Command::Acknowledge).unwrap();
        let err = run(i.clone(), Command::Acknowledge).unwrap_err();
        assert_eq!(
            err,
            Rejection::InvalidTransition {
                command: "acknowledge".into(),
                state: "acknowledged".into()
            }
        );
        assert!(err.to_string().contains("acknowledged"));
        assert!(run(i.clone(), Command::Close).is_err());
        assert!(run(
            i,
            Command::Reopen {
                reason: "again".into()
            }
        )
        .is_err());
    }

    #[test]
    fn a_resolved_incident_reopens_to_triggered() {
        let i = run(opened(), Command::Resolve).unwrap();
        assert!(i.impact_end.is_some());
        let i = run(
            i,
            Command::Reopen {
                reason: "it recurred".into(),
            },
        )
        .unwrap();
        assert_eq!((i.status, i.impact_end), (Status::Triggered, None));
    }

    #[test]
    fn notes_and_severity_follow_their_rules() {
        let i = opened();
        assert!(run(
            i.clone(),
            Command::AddNote {
                text: "  ".into(),
                visibility: Visibility::Internal
            }
        )
        .is_err());
        assert!(run(
            i.clone(),
            Command::ChangeSeverity {
                to: Severity::Error
            }
        )
        .is_err());
        let i = run(
            i,
            Command::ChangeSeverity {
                to: Severity::Critical,
            },
        )
        .unwrap();
        assert_eq!(i.severity, Severity::Critical);
        let bad = Command::CorrectImpact {
            impact_start: i.impact_start,
            impact_end: Some(i.impact_start - chrono::Duration::seconds(1)),
            reason: "x".into(),
        };
        assert!(run(i, bad).is_err());
    }

    #[test]
    fn findings_and_fixes_are_recorded_until_closed_and_belong_to_maintainers() {
        let finding = || Command::RecordFinding {
            statement: "Pool exhausted by a batch job".into(),
            evidence: Evidence {
                log_excerpts: vec!["too many clients".into()],
                time_range: None,
                components: vec![" database ".into()],
            },
            minutes_spent: Some(45),
        };
        assert_eq!(finding().roles(), crate::access::MAINTAINERS);
        let fix = Command::RecordMaintenanceAction {
            kind: MaintenanceAction::Fix,
            description: "Capped the pool".into(),
            minutes_spent: None,
        };
        assert_eq!(fix.roles(), crate::access::MAINTAINERS);
        assert_eq!(Command::Acknowledge.roles(), crate::access::RESPONDERS);
        let resolved = run(opened(), Command::Resolve).unwrap();
        // Causes are often found after the service is back.
        let i = run(resolved, finding()).unwrap();
        assert_eq!(i.findings, 1);
        let i = run(i, fix).unwrap();
        assert_eq!(
            i.fixes,
            vec![FixRef::Action {
                action_id: Uuid::from_u128(2)
            }]
        );
        let events = decide(&i, finding(), Uuid::from_u128(3)).unwrap();
        match &events[0] {
            IncidentEvent::FindingRecorded { evidence, .. } => {
                assert_eq!(evidence.components, vec!["database".to_owned()])
            }
            other => panic!("{other:?}"),
        }
        let closed = run(i, Command::Close).unwrap();
        assert!(matches!(
            run(closed, finding()),
            Err(Rejection::InvalidTransition { .. })
        ));
    }

    #[test]
    fn evidence_and_effort_are_bounded() {
        let with = |evidence: Evidence, minutes_spent| Command::RecordFinding {
            statement: "x".into(),
            evidence,
            minutes_spent,
        };
        let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let backwards = Evidence {
            time_range: Some(TimeRange {
                from: at,
                to: at - chrono::Duration::seconds(1),
            }),
            ..Evidence::default()
        };
        assert!(run(opened(), with(backwards, None)).is_err());
        let empty_excerpt = Evidence {
            log_excerpts: vec!["  ".into()],
            ..Evidence::default()
        };
        assert!(run(opened(), with(empty_excerpt, None)).is_err());
        assert!(run(
            opened(),
            with(
                Evidence::default(),
                Some(crate::worklog::MINUTES_SPENT_MAX + 1)
            )
        )
        .is_err());
        assert!(run(
            opened(),
            with(Evidence::default(), Some(crate::worklog::MINUTES_SPENT_MAX))
        )
        .is_ok());
    }

    #[test]
    fn the_impact_level_changes_from_an_instant_and_a_backdated_change_keeps_the_current_one() {
        let i = opened();
        assert_eq!(
            i.level(),
            ImpactLevel::Partial,
            "mapped from severity error"
        );
        let now = i.impact_start + chrono::Duration::minutes(30);
        let change = |i: &Incident, to, at| {
            decide(
                i,
                Command::ChangeImpactLevel {
                    to,
                    at,
                    now,
                    reason: None,
                },
                Uuid::nil(),
            )
        };
        let events = change(&i, ImpactLevel::Outage, now).unwrap();
        assert_eq!(
            events,
            vec![IncidentEvent::ImpactLevelChanged {
                from: ImpactLevel::Partial,
                to: ImpactLevel::Outage,
                at: now,
                reason: None
            }]
        );
        let i = evolve(Some(i), &events[0], now).unwrap();
        assert_eq!(i.level(), ImpactLevel::Outage);
        assert!(matches!(
            change(&i, ImpactLevel::Outage, now),
            Err(Rejection::Invalid(_))
        ));
        assert!(matches!(
            change(
                &i,
                ImpactLevel::Degraded,
                now + chrono::Duration::minutes(1)
            ),
            Err(Rejection::Invalid(_))
        ));
        // Recorded now, about ten minutes ago: the level in force stays.
        let earlier = i.impact_start + chrono::Duration::minutes(10);
        let events = change(&i, ImpactLevel::Degraded, earlier).unwrap();
        let i = evolve(Some(i), &events[0], now).unwrap();
        assert_eq!(i.level(), ImpactLevel::Outage);
    }
}
