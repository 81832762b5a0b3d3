//! Changes to a system (SPEC §5): draft → submitted → approved | rejected →
//! scheduled → in progress → completed | failed | rolled back → reviewed.
//! Stream: `change-<id>`.
//!
//! Invariants:
//! - The approver is never the requester (four eyes).
//! - A normal change carries a rollback plan and is approved before it is
//!   scheduled; a standard change is pre-approved and is never approved; an
//!   emergency change may be scheduled and started first, and until it is
//!   approved it says `approval_missing` once it has started.
//! - Every event names the change's services (`service_ids`), so that the
//!   work ledger can attribute it without folding the stream.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::aggregate::{existing, stored_events, Aggregate, By, Outcome};
use crate::worklog::minutes;
use crate::Rejection;

/// Longest free text kept (descriptions, plans, reasons).
pub const TEXT_LEN_MAX_CHARS: usize = 10_000;
/// Services one change may touch: beyond this it is several changes.
pub const SERVICES_MAX: usize = 50;
/// Links one change may carry.
pub const LINKS_MAX: usize = 100;

pub fn change_stream(id: Uuid) -> String {
    format!("change-{id}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = ChangeKind)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A pre-approved template: operations may request and carry it out.
    Standard,
    /// Needs approval before it is scheduled.
    Normal,
    /// May start before approval; approval must follow.
    Emergency,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Standard => "standard",
            Kind::Normal => "normal",
            Kind::Emergency => "emergency",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = ChangeCategory)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Fix,
    SecurityPatch,
    VersionUpgrade,
    Configuration,
    Improvement,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = ChangeRisk)]
#[serde(rename_all = "snake_case")]
pub enum Risk {
    Low,
    Medium,
    High,
}

impl Risk {
    pub fn as_str(self) -> &'static str {
        match self {
            Risk::Low => "low",
            Risk::Medium => "medium",
            Risk::High => "high",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = ChangeStatus)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Draft,
    Submitted,
    Approved,
    Rejected,
    Scheduled,
    InProgress,
    Completed,
    Failed,
    RolledBack,
    Reviewed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Draft => "draft",
            Status::Submitted => "submitted",
            Status::Approved => "approved",
            Status::Rejected => "rejected",
            Status::Scheduled => "scheduled",
            Status::InProgress => "in_progress",
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::RolledBack => "rolled_back",
            Status::Reviewed => "reviewed",
        }
    }

    /// Still to be carried out or under way: its schedule can conflict.
    pub fn is_pending(self) -> bool {
        matches!(
            self,
            Status::Draft
                | Status::Submitted
                | Status::Approved
                | Status::Scheduled
                | Status::InProgress
        )
    }
}

/// How a change relates to an incident or a proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = ChangeRelation)]
#[serde(rename_all = "snake_case")]
pub enum Relation {
    /// The change fixes the incident.
    Fixes,
    /// The change caused the incident.
    CausedBy,
    /// The change carries out the improvement proposal.
    Implements,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = ChangeLink)]
pub struct Link {
    pub relation: Relation,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proposal_id: Option<Uuid>,
}

impl Link {
    /// The stream the link names: `incident-…` or `proposal-…`.
    pub fn target_stream(&self) -> Result<String, Rejection> {
        match (self.relation, self.incident_id, self.proposal_id) {
            (Relation::Fixes | Relation::CausedBy, Some(i), None) => {
                Ok(crate::incident::incident_stream(i))
            }
            (Relation::Implements, None, Some(p)) => Ok(format!("proposal-{p}")),
            (Relation::Implements, _, _) => Err(Rejection::Invalid(
                "a link `implements` names a proposal_id and nothing else".into(),
            )),
            _ => Err(Rejection::Invalid(
                "a link `fixes` or `caused_by` names an incident_id and nothing else".into(),
            )),
        }
    }
}

/// An approval: who gave it, when, and whether after the change had started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Approval {
    pub by: String,
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Given after the change had started (emergency changes only).
    pub retroactive: bool,
}

/// When a change is planned to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = ChangeSchedule)]
pub struct Schedule {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_id: Option<Uuid>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum ChangeEvent {
    ChangeRequested {
        change_id: Uuid,
        service_ids: Vec<Uuid>,
        kind: Kind,
        category: Category,
        title: String,
        #[serde(default)]
        description: Option<String>,
        risk: Risk,
        impact: String,
        #[serde(default)]
        rollback_plan: Option<String>,
        #[serde(default)]
        links: Vec<Link>,
    },
    ChangeSubmitted {
        service_ids: Vec<Uuid>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        minutes_spent: Option<u32>,
    },
    ChangeApproved {
        service_ids: Vec<Uuid>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        comment: Option<String>,
        retroactive: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        minutes_spent: Option<u32>,
    },
    ChangeRejected {
        service_ids: Vec<Uuid>,
        reason: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        minutes_spent: Option<u32>,
    },
    ChangeScheduled {
        service_ids: Vec<Uuid>,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        window_id: Option<Uuid>,
        /// Other changes to one of these services whose schedules overlap
        /// this one, when it was scheduled.
        #[serde(default)]
        conflicts: Vec<Uuid>,
        /// Freezes it was scheduled into (allowed for standard and
        /// emergency changes only; recorded so that it shows).
        #[serde(default)]
        freezes: Vec<Uuid>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        minutes_spent: Option<u32>,
    },
    ChangeStarted {
        service_ids: Vec<Uuid>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        minutes_spent: Option<u32>,
    },
    ChangeCompleted {
        service_ids: Vec<Uuid>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        minutes_spent: Option<u32>,
    },
    ChangeFailed {
        service_ids: Vec<Uuid>,
        reason: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        minutes_spent: Option<u32>,
    },
    ChangeRolledBack {
        service_ids: Vec<Uuid>,
        reason: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        minutes_spent: Option<u32>,
    },
    ChangeReviewed {
        service_ids: Vec<Uuid>,
        summary: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        minutes_spent: Option<u32>,
    },
    ChangeLinked {
        service_ids: Vec<Uuid>,
        link: Link,
    },
}

impl ChangeEvent {
    pub fn type_name(&self) -> &'static str {
        match self {
            ChangeEvent::ChangeRequested { .. } => "ChangeRequested",
            ChangeEvent::ChangeSubmitted { .. } => "ChangeSubmitted",
            ChangeEvent::ChangeApproved { .. } => "ChangeApproved",
            ChangeEvent::ChangeRejected { .. } => "ChangeRejected",
            ChangeEvent::ChangeScheduled { .. } => "ChangeScheduled",
            ChangeEvent::ChangeStarted { .. } => "ChangeStarted",
            ChangeEvent::ChangeCompleted { .. } => "ChangeCompleted",
            ChangeEvent::ChangeFailed { .. } => "ChangeFailed",
            ChangeEvent::ChangeRolledBack { .. } => "ChangeRolledBack",
            ChangeEvent::ChangeReviewed { .. } => "ChangeReviewed",
            ChangeEvent::ChangeLinked { .. } => "ChangeLinked",
        }
    }
    pub fn payload(&self) -> serde_json::Value {
        crate::event::untagged_payload(self)
    }
    pub fn from_stored(event_type: &str, payload: &serde_json::Value) -> Option<ChangeEvent> {
        crate::event::from_tagged(event_type, payload)
    }
}

/// A change as folded from its events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Change {
    pub id: Uuid,
    pub service_ids: Vec<Uuid>,
    pub kind: Kind,
    pub category: Category,
    pub title: String,
    pub description: Option<String>,
    pub risk: Risk,
    pub impact: String,
    pub rollback_plan: Option<String>,
    pub status: Status,
    pub requested_by: String,
    pub requested_at: DateTime<Utc>,
    pub submitted_at: Option<DateTime<Utc>>,
    pub approvals: Vec<Approval>,
    pub rejection: Option<String>,
    pub schedule: Option<Schedule>,
    pub conflicts: Vec<Uuid>,
    pub freezes: Vec<Uuid>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// completed | failed | rolled_back, once it is known.
    pub outcome: Option<Status>,
    pub outcome_note: Option<String>,
    pub review: Option<String>,
    pub reviewed_at: Option<DateTime<Utc>>,
    pub links: Vec<Link>,
    /// An emergency change that started without approval, until approved.
    pub approval_missing: bool,
    /// Effort recorded with its steps, in minutes.
    pub minutes_spent: u32,
}

impl Change {
    pub fn approved(&self) -> bool {
        !self.approvals.is_empty()
    }
}

/// The change ended with `outcome` (completed, failed or rolled back).
fn finish(
    c: &mut Change,
    outcome: Status,
    note: Option<String>,
    at: DateTime<Utc>,
    minutes_spent: &Option<u32>,
) {
    c.status = outcome;
    c.outcome = Some(outcome);
    c.outcome_note = note;
    c.finished_at = Some(at);
    c.minutes_spent += minutes_spent.unwrap_or(0);
}

/// Folds one event, recorded at `at` by `by`, into the change.
pub fn evolve(
    change: Option<Change>,
    event: &ChangeEvent,
    at: DateTime<Utc>,
    by: &str,
) -> Option<Change> {
    if let ChangeEvent::ChangeRequested {
        change_id,
        service_ids,
        kind,
        category,
        title,
        description,
        risk,
        impact,
        rollback_plan,
        links,
    } = event
    {
        return Some(Change {
            id: *change_id,
            service_ids: service_ids.clone(),
            kind: *kind,
            category: *category,
            title: title.clone(),
            description: description.clone(),
            risk: *risk,
            impact: impact.clone(),
            rollback_plan: rollback_plan.clone(),
            status: Status::Draft,
            requested_by: by.to_owned(),
            requested_at: at,
            submitted_at: None,
            approvals: vec![],
            rejection: None,
            schedule: None,
            conflicts: vec![],
            freezes: vec![],
            started_at: None,
            finished_at: None,
            outcome: None,
            outcome_note: None,
            review: None,
            reviewed_at: None,
            links: links.clone(),
            approval_missing: false,
            minutes_spent: 0,
        });
    }
    let mut c = change?;
    let add = |c: &mut Change, m: &Option<u32>| c.minutes_spent += m.unwrap_or(0);
    match event {
        ChangeEvent::ChangeRequested { .. } => {}
        ChangeEvent::ChangeSubmitted { minutes_spent, .. } => {
            c.status = Status::Submitted;
            c.submitted_at = Some(at);
            add(&mut c, minutes_spent);
        }
        ChangeEvent::ChangeApproved {
            comment,
            retroactive,
            minutes_spent,
            ..
        } => {
            add(&mut c, minutes_spent);
            c.approvals.push(Approval {
                by: by.to_owned(),
                at,
                comment: comment.clone(),
                retroactive: *retroactive,
            });
            if c.status == Status::Submitted {
                c.status = Status::Approved;
            }
            c.approval_missing = false;
        }
        ChangeEvent::ChangeRejected {
            reason,
            minutes_spent,
            ..
        } => {
            add(&mut c, minutes_spent);
            c.status = Status::Rejected;
            c.rejection = Some(reason.clone());
        }
        ChangeEvent::ChangeScheduled {
            start,
            end,
            window_id,
            conflicts,
            freezes,
            minutes_spent,
            ..
        } => {
            add(&mut c, minutes_spent);
            c.status = Status::Scheduled;
            c.schedule = Some(Schedule {
                start: *start,
                end: *end,
                window_id: *window_id,
            });
            c.conflicts = conflicts.clone();
            c.freezes = freezes.clone();
        }
        ChangeEvent::ChangeStarted { minutes_spent, .. } => {
            c.status = Status::InProgress;
            c.started_at = Some(at);
            c.approval_missing = c.kind == Kind::Emergency && !c.approved();
            add(&mut c, minutes_spent);
        }
        ChangeEvent::ChangeCompleted {
            note,
            minutes_spent,
            ..
        } => finish(&mut c, Status::Completed, note.clone(), at, minutes_spent),
        ChangeEvent::ChangeFailed {
            reason,
            minutes_spent,
            ..
        } => finish(
            &mut c,
            Status::Failed,
            Some(reason.clone()),
            at,
            minutes_spent,
        ),
        ChangeEvent::ChangeRolledBack {
            reason,
            minutes_spent,
            ..
        } => finish(
            &mut c,
            Status::RolledBack,
            Some(reason.clone()),
            at,
            minutes_spent,
        ),
        ChangeEvent::ChangeReviewed {
            summary,
            minutes_spent,
            ..
        } => {
            c.status = Status::Reviewed;
            c.review = Some(summary.clone());
            c.reviewed_at = Some(at);
            add(&mut c, minutes_spent);
        }
        ChangeEvent::ChangeLinked { link, .. } => {
            if !c.links.contains(link) {
                c.links.push(*link);
            }
        }
    }
    Some(c)
}

/// What a new change asks for, as parsed at the edge.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub change_id: Uuid,
    pub service_ids: Vec<Uuid>,
    pub kind: Kind,
    pub category: Category,
    pub title: String,
    pub description: Option<String>,
    pub risk: Risk,
    pub impact: String,
    pub rollback_plan: Option<String>,
    pub links: Vec<Link>,
}

/// Commands on a change. `by` is who gives the command.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Starts one (see [`decide_request`]).
    Request(Request),
    Submit {
        minutes_spent: Option<u32>,
    },
    Approve {
        by: String,
        comment: Option<String>,
        minutes_spent: Option<u32>,
    },
    Reject {
        by: String,
        reason: String,
        minutes_spent: Option<u32>,
    },
    Schedule {
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        window_id: Option<Uuid>,
        minutes_spent: Option<u32>,
    },
    Start {
        minutes_spent: Option<u32>,
    },
    Complete {
        note: Option<String>,
        minutes_spent: Option<u32>,
    },
    Fail {
        reason: String,
        minutes_spent: Option<u32>,
    },
    RollBack {
        reason: String,
        minutes_spent: Option<u32>,
    },
    Review {
        summary: String,
        minutes_spent: Option<u32>,
    },
    Link {
        link: Link,
    },
}

fn text(field: &str, raw: &str) -> Result<String, Rejection> {
    let t = raw.trim();
    if t.is_empty() {
        return Err(Rejection::Invalid(format!("{field} must not be empty")));
    }
    if t.chars().count() > TEXT_LEN_MAX_CHARS {
        return Err(Rejection::Invalid(format!(
            "{field} must be at most {TEXT_LEN_MAX_CHARS} characters"
        )));
    }
    Ok(t.to_owned())
}

fn optional_text(field: &str, raw: Option<String>) -> Result<Option<String>, Rejection> {
    match raw {
        Some(r) if !r.trim().is_empty() => text(field, &r).map(Some),
        _ => Ok(None),
    }
}

/// Decides a new change. A normal change must say how it is rolled back.
pub fn decide_request(r: Request) -> Result<Vec<ChangeEvent>, Rejection> {
    let title = crate::text::Name::parse("title", &r.title)
        .map_err(Rejection::Invalid)?
        .as_str()
        .to_owned();
    let mut services = r.service_ids.clone();
    services.sort();
    services.dedup();
    if services.is_empty() || services.len() > SERVICES_MAX {
        return Err(Rejection::Invalid(format!(
            "service_ids must name 1 to {SERVICES_MAX} services"
        )));
    }
    let rollback_plan = optional_text("rollback_plan", r.rollback_plan)?;
    if r.kind == Kind::Normal && rollback_plan.is_none() {
        return Err(Rejection::Invalid(
            "a normal change needs a rollback_plan: say how it is undone if it goes wrong".into(),
        ));
    }
    if r.links.len() > LINKS_MAX {
        return Err(Rejection::Invalid(format!(
            "a change carries at most {LINKS_MAX} links"
        )));
    }
    let mut links: Vec<Link> = Vec::new();
    for l in r.links {
        l.target_stream()?;
        if !links.contains(&l) {
            links.push(l);
        }
    }
    Ok(vec![ChangeEvent::ChangeRequested {
        change_id: r.change_id,
        service_ids: r.service_ids,
        kind: r.kind,
        category: r.category,
        title,
        description: optional_text("description", r.description)?,
        risk: r.risk,
        impact: text("impact", &r.impact)?,
        rollback_plan,
        links,
    }])
}

fn invalid_in(command: &str, status: Status) -> Rejection {
    Rejection::InvalidState {
        entity: "change",
        command: command.to_owned(),
        state: status.as_str().to_owned(),
    }
}

impl Aggregate for Change {
    stored_events!(ChangeEvent, change_stream);
    type Command = Command;
    type Context = Context;
    const NOUN: &'static str = "change";

    fn evolve(
        state: Option<Self>,
        event: &ChangeEvent,
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
        ctx: &Context,
        _: &str,
    ) -> Result<Outcome<ChangeEvent>, Rejection> {
        match (state, command) {
            (None, Command::Request(r)) => decide_request(r),
            (state, command) => decide(existing(state, "change")?, command, ctx),
        }
        .map(Outcome::only)
    }
}

/// A freeze, as deciding on a change sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FreezeFacts {
    pub id: Uuid,
    pub reason: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// What deciding a step needs from beyond the change's stream, looked up
/// for scheduling (over the asked period) and starting (now).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context {
    /// Freezes of its services in force then.
    pub freezes: Vec<FreezeFacts>,
    /// Pending changes to a shared service whose schedules overlap.
    pub overlapping: Vec<Uuid>,
}

/// A normal change is held back by a freeze of one of its services.
fn frozen(change: &Change, f: &FreezeFacts, starting: bool) -> Rejection {
    Rejection::Frozen {
        detail: if starting {
            format!(
                "freeze {} ({}, until {}) forbids starting normal changes to its services; \
                 start it after the freeze or lift the freeze",
                f.id,
                f.reason,
                f.end.to_rfc3339()
            )
        } else {
            format!(
                "freeze {} ({}, {} – {}) forbids normal changes to its services; \
                 schedule it outside the freeze",
                f.id,
                f.reason,
                f.start.to_rfc3339(),
                f.end.to_rfc3339()
            )
        },
        state: change.status.as_str().to_owned(),
        freeze_id: f.id,
    }
}

/// Decides a command against the change's current state.
pub fn decide(
    change: &Change,
    command: Command,
    ctx: &Context,
) -> Result<Vec<ChangeEvent>, Rejection> {
    use Status::*;
    let s = change.status;
    let kind = change.kind;
    let services = change.service_ids.clone();
    let event = match command {
        Command::Request(_) => {
            return Err(Rejection::AlreadyExists(format!("change {}", change.id)))
        }
        Command::Submit { minutes_spent } => match s {
            Draft => ChangeEvent::ChangeSubmitted {
                service_ids: services,
                minutes_spent: minutes(minutes_spent)?,
            },
            _ => return Err(invalid_in("submit", s)),
        },
        Command::Approve {
            by,
            comment,
            minutes_spent,
        } => {
            if kind == Kind::Standard {
                return Err(Rejection::Invalid(
                    "a standard change is pre-approved and takes no approval".into(),
                ));
            }
            if by == change.requested_by {
                return Err(Rejection::Forbidden(format!(
                    "four eyes: {by} requested this change and may not approve it; \
                     another approver must"
                )));
            }
            if change.approved() {
                return Err(Rejection::Invalid("the change is approved already".into()));
            }
            let retroactive = match (kind, s) {
                (_, Submitted) => false,
                // Emergency changes may have gone ahead; approval follows.
                (Kind::Emergency, Draft) => false,
                (Kind::Emergency, Scheduled) => false,
                (Kind::Emergency, InProgress | Completed | Failed | RolledBack) => true,
                _ => return Err(invalid_in("approve", s)),
            };
            ChangeEvent::ChangeApproved {
                service_ids: services,
                comment: optional_text("comment", comment)?,
                retroactive,
                minutes_spent: minutes(minutes_spent)?,
            }
        }
        Command::Reject {
            by,
            reason,
            minutes_spent,
        } => {
            if kind == Kind::Standard {
                return Err(Rejection::Invalid(
                    "a standard change is pre-approved and cannot be rejected".into(),
                ));
            }
            if by == change.requested_by {
                return Err(Rejection::Forbidden(format!(
                    "four eyes: {by} requested this change and may not decide on it"
                )));
            }
            match s {
                Submitted => ChangeEvent::ChangeRejected {
                    service_ids: services,
                    reason: text("reason", &reason)?,
                    minutes_spent: minutes(minutes_spent)?,
                },
                _ => return Err(invalid_in("reject", s)),
            }
        }
        Command::Schedule {
            start,
            end,
            window_id,
            minutes_spent,
        } => {
            let allowed = match kind {
                Kind::Normal => matches!(s, Approved | Scheduled),
                Kind::Standard => matches!(s, Draft | Submitted | Scheduled),
                Kind::Emergency => matches!(s, Draft | Submitted | Approved | Scheduled),
            };
            if !allowed {
                return Err(invalid_in("schedule", s));
            }
            if end <= start {
                return Err(Rejection::Invalid("end must be after start".into()));
            }
            if let (Kind::Normal, Some(f)) = (kind, ctx.freezes.first()) {
                return Err(frozen(change, f, false));
            }
            ChangeEvent::ChangeScheduled {
                service_ids: services,
                start,
                end,
                window_id,
                conflicts: ctx
                    .overlapping
                    .iter()
                    .copied()
                    .filter(|c| *c != change.id)
                    .collect(),
                freezes: ctx.freezes.iter().map(|f| f.id).collect(),
                minutes_spent: minutes(minutes_spent)?,
            }
        }
        Command::Start { minutes_spent } => {
            let allowed = match kind {
                Kind::Normal => s == Scheduled,
                Kind::Standard => matches!(s, Draft | Submitted | Scheduled),
                Kind::Emergency => matches!(s, Draft | Submitted | Approved | Scheduled),
            };
            if !allowed {
                return Err(invalid_in("start", s));
            }
            // A freeze declared after the change was scheduled still holds
            // a normal change back.
            if let (Kind::Normal, Some(f)) = (kind, ctx.freezes.first()) {
                return Err(frozen(change, f, true));
            }
            ChangeEvent::ChangeStarted {
                service_ids: services,
                minutes_spent: minutes(minutes_spent)?,
            }
        }
        Command::Complete {
            note,
            minutes_spent,
        } => match s {
            InProgress => ChangeEvent::ChangeCompleted {
                service_ids: services,
                note: optional_text("note", note)?,
                minutes_spent: minutes(minutes_spent)?,
            },
            _ => return Err(invalid_in("complete", s)),
        },
        Command::Fail {
            reason,
            minutes_spent,
        } => match s {
            InProgress => ChangeEvent::ChangeFailed {
                service_ids: services,
                reason: text("reason", &reason)?,
                minutes_spent: minutes(minutes_spent)?,
            },
            _ => return Err(invalid_in("fail", s)),
        },
        Command::RollBack {
            reason,
            minutes_spent,
        } => match s {
            InProgress | Failed => ChangeEvent::ChangeRolledBack {
                service_ids: services,
                reason: text("reason", &reason)?,
                minutes_spent: minutes(minutes_spent)?,
            },
            _ => return Err(invalid_in("roll back", s)),
        },
        Command::Review {
            summary,
            minutes_spent,
        } => match s {
            Completed | Failed | RolledBack => {
                if kind == Kind::Emergency && !change.approved() {
                    return Err(Rejection::Invalid(
                        "an emergency change is approved before it is reviewed".into(),
                    ));
                }
                ChangeEvent::ChangeReviewed {
                    service_ids: services,
                    summary: text("summary", &summary)?,
                    minutes_spent: minutes(minutes_spent)?,
                }
            }
            _ => return Err(invalid_in("review", s)),
        },
        Command::Link { link } => {
            link.target_stream()?;
            if change.links.contains(&link) {
                return Err(Rejection::Invalid(
                    "the change has that link already".into(),
                ));
            }
            if change.links.len() >= LINKS_MAX {
                return Err(Rejection::Invalid(format!(
                    "a change carries at most {LINKS_MAX} links"
                )));
            }
            ChangeEvent::ChangeLinked {
                service_ids: services,
                link,
            }
        }
    };
    Ok(vec![event])
}

/// Whether two half-open intervals `[a0, a1)` and `[b0, b1)` overlap.
pub fn overlaps(a: (DateTime<Utc>, DateTime<Utc>), b: (DateTime<Utc>, DateTime<Utc>)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    const ALICE: &str = "alice";
    const BOB: &str = "bob";

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    fn request(kind: Kind, rollback: Option<&str>) -> Request {
        Request {
            change_id: Uuid::from_u128(1),
            service_ids: vec![Uuid::from_u128(10)],
            kind,
            category: Category::SecurityPatch,
            title: "Patch OpenSSL".into(),
            description: None,
            risk: Risk::Medium,
            impact: "TLS restarts".into(),
            rollback_plan: rollback.map(str::to_owned),
            links: vec![],
        }
    }

    fn requested(kind: Kind) -> Change {
        let events = decide_request(request(kind, Some("reinstall the old package"))).unwrap();
        evolve(None, &events[0], t0(), ALICE).unwrap()
    }

    fn run(c: Change, by: &str, cmd: Command) -> Result<Change, Rejection> {
        run_in(c, by, cmd, &Context::default())
    }

    fn run_in(c: Change, by: &str, cmd: Command, ctx: &Context) -> Result<Change, Rejection> {
        let events = decide(&c, cmd, ctx)?;
        Ok(events
            .iter()
            .try_fold(c, |c, e| evolve(Some(c), e, t0() + Duration::hours(1), by))
            .unwrap())
    }

    fn schedule() -> Command {
        Command::Schedule {
            start: t0() + Duration::days(3),
            end: t0() + Duration::days(3) + Duration::hours(2),
            window_id: None,
            minutes_spent: None,
        }
    }

    #[test]
    fn a_normal_change_runs_the_whole_workflow() {
        let c = requested(Kind::Normal);
        assert_eq!(c.status, Status::Draft);
        let c = run(
            c,
            ALICE,
            Command::Submit {
                minutes_spent: Some(15),
            },
        )
        .unwrap();
        let c = run(
            c,
            BOB,
            Command::Approve {
                by: BOB.into(),
                comment: Some("ok".into()),
                minutes_spent: Some(5),
            },
        )
        .unwrap();
        assert_eq!(c.status, Status::Approved);
        assert_eq!(c.approvals[0].by, BOB);
        let c = run(c, ALICE, schedule()).unwrap();
        assert_eq!(c.status, Status::Scheduled);
        let c = run(
            c,
            ALICE,
            Command::Start {
                minutes_spent: None,
            },
        )
        .unwrap();
        let c = run(
            c,
            ALICE,
            Command::Complete {
                note: None,
                minutes_spent: Some(90),
            },
        )
        .unwrap();
        assert_eq!(
            (c.status, c.outcome),
            (Status::Completed, Some(Status::Completed))
        );
        let c = run(
            c,
            BOB,
            Command::Review {
                summary: "went fine".into(),
                minutes_spent: None,
            },
        )
        .unwrap();
        assert_eq!(c.status, Status::Reviewed);
        assert_eq!(c.minutes_spent, 110);
        assert!(!c.approval_missing);
    }

    #[test]
    fn the_requester_may_not_approve_or_reject() {
        let c = run(
            requested(Kind::Normal),
            ALICE,
            Command::Submit {
                minutes_spent: None,
            },
        )
        .unwrap();
        let err = run(
            c.clone(),
            ALICE,
            Command::Approve {
                by: ALICE.into(),
                comment: None,
                minutes_spent: None,
            },
        )
        .unwrap_err();
        assert!(matches!(err, Rejection::Forbidden(ref m) if m.contains("four eyes")));
        assert!(matches!(
            run(
                c,
                ALICE,
                Command::Reject {
                    by: ALICE.into(),
                    reason: "no".into(),
                    minutes_spent: None
                }
            ),
            Err(Rejection::Forbidden(_))
        ));
    }

    #[test]
    fn a_normal_change_needs_a_rollback_plan_and_approval_before_scheduling() {
        assert!(decide_request(request(Kind::Normal, None)).is_err());
        assert!(decide_request(request(Kind::Normal, Some("  "))).is_err());
        assert!(decide_request(request(Kind::Standard, None)).is_ok());
        let c = run(
            requested(Kind::Normal),
            ALICE,
            Command::Submit {
                minutes_spent: None,
            },
        )
        .unwrap();
        let err = run(c.clone(), ALICE, schedule()).unwrap_err();
        assert_eq!(
            err,
            Rejection::InvalidState {
                entity: "change",
                command: "schedule".into(),
                state: "submitted".into()
            }
        );
        assert!(run(
            c,
            ALICE,
            Command::Start {
                minutes_spent: None
            }
        )
        .is_err());
    }

    #[test]
    fn an_emergency_change_starts_first_and_is_flagged_until_approved() {
        let c = run(
            requested(Kind::Emergency),
            ALICE,
            Command::Start {
                minutes_spent: None,
            },
        )
        .unwrap();
        assert_eq!(c.status, Status::InProgress);
        assert!(c.approval_missing);
        let c = run(
            c,
            ALICE,
            Command::Complete {
                note: None,
                minutes_spent: None,
            },
        )
        .unwrap();
        assert!(c.approval_missing);
        assert!(run(
            c.clone(),
            ALICE,
            Command::Review {
                summary: "x".into(),
                minutes_spent: None
            }
        )
        .is_err());
        let c = run(
            c,
            BOB,
            Command::Approve {
                by: BOB.into(),
                comment: None,
                minutes_spent: None,
            },
        )
        .unwrap();
        assert!(!c.approval_missing);
        assert!(c.approvals[0].retroactive);
        assert_eq!(c.status, Status::Completed);
    }

    #[test]
    fn a_standard_change_needs_no_approval_and_takes_none() {
        let c = requested(Kind::Standard);
        assert!(run(
            c.clone(),
            BOB,
            Command::Approve {
                by: BOB.into(),
                comment: None,
                minutes_spent: None
            }
        )
        .is_err());
        let c = run(c, ALICE, schedule()).unwrap();
        let c = run(
            c,
            ALICE,
            Command::Start {
                minutes_spent: None,
            },
        )
        .unwrap();
        assert!(!c.approval_missing);
    }

    #[test]
    fn a_normal_change_is_refused_in_a_freeze_and_others_record_it() {
        let freeze = Uuid::from_u128(99);
        let into_freeze = Command::Schedule {
            start: t0(),
            end: t0() + Duration::hours(1),
            window_id: None,
            minutes_spent: None,
        };
        let ctx = Context {
            freezes: vec![FreezeFacts {
                id: freeze,
                reason: "year end".into(),
                start: t0(),
                end: t0() + Duration::days(1),
            }],
            overlapping: vec![Uuid::from_u128(5)],
        };
        let c = run(
            requested(Kind::Normal),
            ALICE,
            Command::Submit {
                minutes_spent: None,
            },
        )
        .unwrap();
        let c = run(
            c,
            BOB,
            Command::Approve {
                by: BOB.into(),
                comment: None,
                minutes_spent: None,
            },
        )
        .unwrap();
        let err = run_in(c, ALICE, into_freeze.clone(), &ctx).unwrap_err();
        assert!(matches!(err, Rejection::Frozen { freeze_id, .. } if freeze_id == freeze));
        assert!(err.to_string().contains("year end"));
        let e = run_in(requested(Kind::Emergency), ALICE, into_freeze, &ctx).unwrap();
        assert_eq!(e.freezes, vec![freeze]);
        assert_eq!(e.conflicts, vec![Uuid::from_u128(5)]);
    }

    #[test]
    fn outcomes_and_links_follow_their_rules() {
        let c = run(
            requested(Kind::Emergency),
            ALICE,
            Command::Start {
                minutes_spent: None,
            },
        )
        .unwrap();
        let c = run(
            c,
            ALICE,
            Command::Fail {
                reason: "disk full".into(),
                minutes_spent: Some(20_000),
            },
        );
        assert!(c.is_err(), "more than a week of minutes");
        let c = run(
            requested(Kind::Emergency),
            ALICE,
            Command::Start {
                minutes_spent: None,
            },
        )
        .unwrap();
        let c = run(
            c,
            ALICE,
            Command::Fail {
                reason: "disk full".into(),
                minutes_spent: None,
            },
        )
        .unwrap();
        let c = run(
            c,
            ALICE,
            Command::RollBack {
                reason: "restored".into(),
                minutes_spent: None,
            },
        )
        .unwrap();
        assert_eq!(c.outcome, Some(Status::RolledBack));
        let bad = Link {
            relation: Relation::Fixes,
            incident_id: None,
            proposal_id: Some(Uuid::from_u128(3)),
        };
        assert!(run(c.clone(), ALICE, Command::Link { link: bad }).is_err());
        let good = Link {
            relation: Relation::CausedBy,
            incident_id: Some(Uuid::from_u128(3)),
            proposal_id: None,
        };
        let c = run(c, ALICE, Command::Link { link: good }).unwrap();
        assert_eq!(c.links, vec![good]);
        assert!(run(c, ALICE, Command::Link { link: good }).is_err());
    }

    #[test]
    fn overlap_is_half_open() {
        let h = |n| t0() + Duration::hours(n);
        assert!(overlaps((h(0), h(2)), (h(1), h(3))));
        assert!(overlaps((h(0), h(4)), (h(1), h(2))));
        assert!(!overlaps((h(0), h(1)), (h(1), h(2))));
        assert!(!overlaps((h(2), h(3)), (h(0), h(1))));
    }
}
