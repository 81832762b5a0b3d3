//! Runbooks (SPEC §2: the seed's 手順書) and their recorded executions
//! (SPEC §5 "Runbook execution").
//!
//! A runbook is a stream `runbook-<id>` of `RunbookPublished`, one event per
//! version, so the stream version *is* the runbook version. An execution is a
//! stream `execution-<id>`: `RunbookExecutionStarted` copies the steps of the
//! version it follows (pinned: a version published meanwhile changes nothing
//! for it, and the execution's own stream says exactly what was followed),
//! then `StepCompleted`, `StepDoubleChecked` and `RunbookExecutionFinished`.
//!
//! Invariants, decided here:
//! - steps are completed strictly in order;
//! - a step marked `double_check` must be confirmed by a second person,
//!   different from whoever completed it, before the next step is completed
//!   and before the execution can finish as succeeded;
//! - an execution finishes once; `succeeded` only with every step done.
//!
//! # Runbooks, work log and inquiries
//!
//! Operations work that changes nothing (SPEC §4), each item a stream of its
//! own: `task-` (one `RoutineTaskRecorded`), `backup-` (`BackupPerformed`, then
//! any number of `BackupVerified`), `runbook-` (one `RunbookPublished` per
//! version, so the stream version is the runbook version and `If-Match` on
//! `/versions` is the version a new one replaces), `execution-` and `inquiry-`.
//! Payloads carry `service_id` and optional `minutes_spent` (0..=10080) for the
//! work ledger; who did it is only in the metadata, and the folds read it from
//! there (`completed_by`, `verified_by`). Every event of an item that concerns
//! a service repeats its `service_id`, not only the first.
//!
//! - **Executions are pinned.** `RunbookExecutionStarted` copies the steps of
//!   the version it follows, so an execution folds from its own stream alone and
//!   says exactly what was followed, whatever is published later.
//!   `domain::runbook::decide` holds the rules: steps strictly in order; a
//!   `double_check` step must be confirmed (`StepDoubleChecked`) by a subject
//!   other than its completer before the next step, or `succeeded`; a finished
//!   execution takes nothing more. Refusals are `Rejection::Refused`, a 409 with
//!   `current_state`, and for executions `next_step` and `awaiting_confirmation`.
//! - **Backups** may be verified by anyone who records work, their taker
//!   included (the teams asked for no four-eyes rule there); each verification
//!   says `by_performer`, and the status follows the latest.
//! - **Inquiries**: open → answered → closed, or escalated (to maintenance) from
//!   open or answered. A client user opens them only for its own client's
//!   services, reads only its own client's, and never sees `opened_by`,
//!   `escalation_reason` or who answered and how long it took.
//! - **Read models.** The `operations` projection (schema V9) keeps
//!   `proj_worklog` (tasks and backups, the latter folded through the domain's
//!   evolve), `proj_runbooks` (latest version), `proj_executions` (to find
//!   those in progress or serving an incident) and `proj_inquiries` with the
//!   `team` whose queue each waits in (operations while open or answered,
//!   maintenance while escalated, none once closed). `/queues/{team}` merges the
//!   team's open incidents and inquiries oldest first; each item's `kind` says
//!   which. Single items are read from their streams, never from these tables.
//! - **Roles.** Work log, runbooks and executions: operators, maintainers and
//!   admins write, staff read, clients get 403 (it names internal hosts and
//!   people). Inquiries: clients (their own) and responders open them,
//!   responders answer and escalate, either closes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::aggregate::{existing, stored_events, Aggregate, By, Outcome as Decided};
use crate::text::Name;
use crate::worklog::{minutes_spent, optional_text, text};
use crate::Rejection;

/// Steps one runbook has at most: a procedure longer than this is several.
pub const STEPS_MAX: usize = 100;
/// Versions one runbook keeps at most (each is a whole procedure).
pub const VERSIONS_MAX: u32 = 1_000;

pub fn runbook_stream(id: Uuid) -> String {
    format!("runbook-{id}")
}

pub fn execution_stream(id: Uuid) -> String {
    format!("execution-{id}")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StepDef {
    pub title: String,
    pub instructions: String,
    #[serde(default)]
    pub double_check: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum RunbookEvent {
    RunbookPublished {
        runbook_id: Uuid,
        version: u32,
        title: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        service_id: Option<Uuid>,
        steps: Vec<StepDef>,
    },
}

impl RunbookEvent {
    pub fn type_name(&self) -> &'static str {
        match self {
            RunbookEvent::RunbookPublished { .. } => "RunbookPublished",
        }
    }
    pub fn payload(&self) -> serde_json::Value {
        crate::event::untagged_payload(self)
    }
    pub fn from_stored(event_type: &str, payload: &serde_json::Value) -> Option<RunbookEvent> {
        crate::event::from_tagged(event_type, payload)
    }
}

/// One published version of a runbook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunbookVersion {
    pub version: u32,
    pub title: String,
    pub service_id: Option<Uuid>,
    pub steps: Vec<StepDef>,
    pub published_at: DateTime<Utc>,
    pub published_by: String,
}

/// A runbook: every version, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Runbook {
    pub id: Uuid,
    pub versions: Vec<RunbookVersion>,
}

impl Runbook {
    pub fn latest(&self) -> &RunbookVersion {
        self.versions.last().expect("a runbook has a version")
    }
    pub fn version(&self, n: u32) -> Option<&RunbookVersion> {
        self.versions.iter().find(|v| v.version == n)
    }
}

pub fn evolve_runbook(
    runbook: Option<Runbook>,
    event: &RunbookEvent,
    by: &str,
    at: DateTime<Utc>,
) -> Option<Runbook> {
    let RunbookEvent::RunbookPublished {
        runbook_id,
        version,
        title,
        service_id,
        steps,
    } = event;
    let mut r = runbook.unwrap_or(Runbook {
        id: *runbook_id,
        versions: Vec::new(),
    });
    r.versions.push(RunbookVersion {
        version: *version,
        title: title.clone(),
        service_id: *service_id,
        steps: steps.clone(),
        published_at: at,
        published_by: by.to_owned(),
    });
    Some(r)
}

/// Publishes the first version (`runbook` is `None`) or the next one.
pub fn publish(
    runbook: Option<&Runbook>,
    runbook_id: Uuid,
    title: &str,
    service_id: Option<Uuid>,
    steps: Vec<StepDef>,
) -> Result<RunbookEvent, Rejection> {
    let title = Name::parse("title", title).map_err(Rejection::Invalid)?;
    if steps.is_empty() || steps.len() > STEPS_MAX {
        return Err(Rejection::Invalid(format!(
            "a runbook has 1 to {STEPS_MAX} steps"
        )));
    }
    let steps = steps
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let n = i + 1;
            Ok(StepDef {
                title: Name::parse(&format!("steps[{n}].title"), &s.title)
                    .map_err(Rejection::Invalid)?
                    .as_str()
                    .to_owned(),
                instructions: text(&format!("steps[{n}].instructions"), &s.instructions)?,
                double_check: s.double_check,
            })
        })
        .collect::<Result<Vec<_>, Rejection>>()?;
    let version = match runbook {
        None => 1,
        Some(r) if r.latest().version >= VERSIONS_MAX => {
            return Err(Rejection::Invalid(format!(
                "a runbook keeps at most {VERSIONS_MAX} versions; publish a new runbook"
            )))
        }
        Some(r) => r.latest().version + 1,
    };
    Ok(RunbookEvent::RunbookPublished {
        runbook_id,
        version,
        title: title.as_str().to_owned(),
        service_id,
        steps,
    })
}

// ------------------------------------------------------------ executions

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Succeeded,
    Aborted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionStatus {
    InProgress,
    Succeeded,
    Aborted,
}

impl ExecutionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionStatus::InProgress => "in_progress",
            ExecutionStatus::Succeeded => "succeeded",
            ExecutionStatus::Aborted => "aborted",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum ExecutionEvent {
    RunbookExecutionStarted {
        execution_id: Uuid,
        runbook_id: Uuid,
        /// The version followed, whose steps are copied below.
        version: u32,
        title: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        service_id: Option<Uuid>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        incident_id: Option<Uuid>,
        steps: Vec<StepDef>,
    },
    StepCompleted {
        /// 1-based.
        step: u32,
        /// The runbook's service, repeated so each effort names it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        service_id: Option<Uuid>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        minutes_spent: Option<u32>,
    },
    StepDoubleChecked {
        step: u32,
        /// The runbook's service, repeated so each effort names it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        service_id: Option<Uuid>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        minutes_spent: Option<u32>,
    },
    RunbookExecutionFinished {
        outcome: Outcome,
        /// The runbook's service, repeated so each effort names it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        service_id: Option<Uuid>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
}

impl ExecutionEvent {
    pub fn type_name(&self) -> &'static str {
        match self {
            ExecutionEvent::RunbookExecutionStarted { .. } => "RunbookExecutionStarted",
            ExecutionEvent::StepCompleted { .. } => "StepCompleted",
            ExecutionEvent::StepDoubleChecked { .. } => "StepDoubleChecked",
            ExecutionEvent::RunbookExecutionFinished { .. } => "RunbookExecutionFinished",
        }
    }
    pub fn payload(&self) -> serde_json::Value {
        crate::event::untagged_payload(self)
    }
    pub fn from_stored(event_type: &str, payload: &serde_json::Value) -> Option<ExecutionEvent> {
        crate::event::from_tagged(event_type, payload)
    }
}

/// One step of an execution: what it asks, and who did and confirmed it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StepRun {
    pub step: u32,
    #[serde(flatten)]
    pub def: StepDef,
    pub completed_by: Option<String>,
    pub completed_at: Option<DateTime<Utc>>,
    pub note: Option<String>,
    pub minutes_spent: Option<u32>,
    pub confirmed_by: Option<String>,
    pub confirmed_at: Option<DateTime<Utc>>,
    pub confirmation_note: Option<String>,
    /// The second person's effort, when recorded.
    #[serde(default)]
    pub confirmation_minutes_spent: Option<u32>,
}

impl StepRun {
    /// Done: completed, and confirmed by a second person if it asks for it.
    pub fn done(&self) -> bool {
        self.completed_by.is_some() && (!self.def.double_check || self.confirmed_by.is_some())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Execution {
    pub id: Uuid,
    pub runbook_id: Uuid,
    pub runbook_version: u32,
    pub title: String,
    pub service_id: Option<Uuid>,
    pub incident_id: Option<Uuid>,
    pub status: ExecutionStatus,
    pub started_at: DateTime<Utc>,
    pub started_by: String,
    pub finished_at: Option<DateTime<Utc>>,
    pub finished_by: Option<String>,
    pub finish_note: Option<String>,
    pub steps: Vec<StepRun>,
}

impl Execution {
    /// The step to complete next, if any is left.
    pub fn next_step(&self) -> Option<u32> {
        self.steps
            .iter()
            .find(|s| s.completed_by.is_none())
            .map(|s| s.step)
    }

    /// The first completed step still waiting for its second person.
    pub fn awaiting_confirmation(&self) -> Option<&StepRun> {
        self.steps
            .iter()
            .find(|s| s.completed_by.is_some() && !s.done())
    }
}

/// Starts an execution of a runbook's latest version.
pub fn start(runbook: &Runbook, execution_id: Uuid, incident_id: Option<Uuid>) -> ExecutionEvent {
    let v = runbook.latest();
    ExecutionEvent::RunbookExecutionStarted {
        execution_id,
        runbook_id: runbook.id,
        version: v.version,
        title: v.title.clone(),
        service_id: v.service_id,
        incident_id,
        steps: v.steps.clone(),
    }
}

/// Folds one event of an execution, made by `by` and recorded at `at`.
pub fn evolve_execution(
    execution: Option<Execution>,
    event: &ExecutionEvent,
    by: &str,
    at: DateTime<Utc>,
) -> Option<Execution> {
    if let ExecutionEvent::RunbookExecutionStarted {
        execution_id,
        runbook_id,
        version,
        title,
        service_id,
        incident_id,
        steps,
    } = event
    {
        return Some(Execution {
            id: *execution_id,
            runbook_id: *runbook_id,
            runbook_version: *version,
            title: title.clone(),
            service_id: *service_id,
            incident_id: *incident_id,
            status: ExecutionStatus::InProgress,
            started_at: at,
            started_by: by.to_owned(),
            finished_at: None,
            finished_by: None,
            finish_note: None,
            steps: steps
                .iter()
                .enumerate()
                .map(|(i, def)| StepRun {
                    step: i as u32 + 1,
                    def: def.clone(),
                    completed_by: None,
                    completed_at: None,
                    note: None,
                    minutes_spent: None,
                    confirmed_by: None,
                    confirmed_at: None,
                    confirmation_note: None,
                    confirmation_minutes_spent: None,
                })
                .collect(),
        });
    }
    let mut x = execution?;
    match event {
        ExecutionEvent::RunbookExecutionStarted { .. } => {}
        ExecutionEvent::StepCompleted {
            step,
            note,
            minutes_spent,
            ..
        } => {
            if let Some(s) = x.steps.get_mut(*step as usize - 1) {
                s.completed_by = Some(by.to_owned());
                s.completed_at = Some(at);
                s.note = note.clone();
                s.minutes_spent = *minutes_spent;
            }
        }
        ExecutionEvent::StepDoubleChecked {
            step,
            note,
            minutes_spent,
            ..
        } => {
            if let Some(s) = x.steps.get_mut(*step as usize - 1) {
                s.confirmed_by = Some(by.to_owned());
                s.confirmed_at = Some(at);
                s.confirmation_note = note.clone();
                s.confirmation_minutes_spent = *minutes_spent;
            }
        }
        ExecutionEvent::RunbookExecutionFinished { outcome, note, .. } => {
            x.status = match outcome {
                Outcome::Succeeded => ExecutionStatus::Succeeded,
                Outcome::Aborted => ExecutionStatus::Aborted,
            };
            x.finished_at = Some(at);
            x.finished_by = Some(by.to_owned());
            x.finish_note = note.clone();
        }
    }
    Some(x)
}

/// Commands on an execution, each by `actor` (the token's subject).
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Starts one, of the runbook's latest version (see [`start`]).
    Start {
        execution_id: Uuid,
        incident_id: Option<Uuid>,
    },
    Complete {
        step: u32,
        note: Option<String>,
        minutes_spent: Option<i64>,
    },
    Confirm {
        step: u32,
        note: Option<String>,
        minutes_spent: Option<i64>,
    },
    Finish {
        outcome: Outcome,
        note: Option<String>,
    },
}

fn refused(x: &Execution, detail: String) -> Rejection {
    Rejection::Refused {
        detail,
        state: x.status.as_str().to_owned(),
    }
}

fn step_of(x: &Execution, step: u32) -> Result<&StepRun, Rejection> {
    x.steps.get((step as usize).wrapping_sub(1)).ok_or_else(|| {
        Rejection::Invalid(format!(
            "the execution has steps 1 to {}, not {step}",
            x.steps.len()
        ))
    })
}

pub fn decide(x: &Execution, command: Command, actor: &str) -> Result<ExecutionEvent, Rejection> {
    let state = x.status;
    if state != ExecutionStatus::InProgress {
        let what = match &command {
            Command::Complete { step, .. } => format!("complete step {step} of"),
            Command::Confirm { step, .. } => format!("confirm step {step} of"),
            Command::Finish { .. } => "finish".to_owned(),
            Command::Start { .. } => "start".to_owned(),
        };
        return Err(refused(
            x,
            format!("cannot {what} an execution that is {}", state.as_str()),
        ));
    }
    match command {
        Command::Start { .. } => Err(Rejection::AlreadyExists(format!("execution {}", x.id))),
        Command::Complete {
            step,
            note,
            minutes_spent: minutes,
        } => {
            let s = step_of(x, step)?;
            if s.completed_by.is_some() {
                return Err(refused(x, format!("step {step} is completed already")));
            }
            // Every earlier step is done, and done with its second person's
            // confirmation where it asks for one.
            if let Some(waiting) = x.awaiting_confirmation() {
                return Err(refused(
                    x,
                    format!(
                        "step {} needs a second person's confirmation before step {step} can be completed",
                        waiting.step
                    ),
                ));
            }
            let next = x.next_step().unwrap_or(step);
            if next != step {
                return Err(refused(
                    x,
                    format!("steps are completed in order: step {next} is next, not step {step}"),
                ));
            }
            Ok(ExecutionEvent::StepCompleted {
                step,
                service_id: x.service_id,
                note: optional_text("note", note.as_deref())?,
                minutes_spent: minutes_spent(minutes)?,
            })
        }
        Command::Confirm {
            step,
            note,
            minutes_spent: minutes,
        } => {
            let s = step_of(x, step)?;
            if !s.def.double_check {
                return Err(Rejection::Invalid(format!(
                    "step {step} is not marked for double-check"
                )));
            }
            let Some(completer) = &s.completed_by else {
                return Err(refused(
                    x,
                    format!("step {step} is not completed yet: there is nothing to confirm"),
                ));
            };
            if s.confirmed_by.is_some() {
                return Err(refused(x, format!("step {step} is confirmed already")));
            }
            if completer == actor {
                return Err(refused(
                    x,
                    format!(
                        "step {step} was completed by {actor}: a second, different person must confirm it"
                    ),
                ));
            }
            Ok(ExecutionEvent::StepDoubleChecked {
                step,
                service_id: x.service_id,
                note: optional_text("note", note.as_deref())?,
                minutes_spent: minutes_spent(minutes)?,
            })
        }
        Command::Finish { outcome, note } => {
            let note = optional_text("note", note.as_deref())?;
            if outcome == Outcome::Succeeded {
                if let Some(waiting) = x.awaiting_confirmation() {
                    return Err(refused(
                        x,
                        format!(
                            "cannot finish as succeeded: step {} needs a second person's confirmation",
                            waiting.step
                        ),
                    ));
                }
                if let Some(next) = x.next_step() {
                    return Err(refused(
                        x,
                        format!(
                            "cannot finish as succeeded: step {next} of {} is not completed",
                            x.steps.len()
                        ),
                    ));
                }
            } else if note.is_none() {
                return Err(Rejection::Invalid(
                    "an aborted execution needs a note saying why".into(),
                ));
            }
            Ok(ExecutionEvent::RunbookExecutionFinished {
                outcome,
                service_id: x.service_id,
                note,
            })
        }
    }
}

/// Publishing a runbook's first or next version.
#[derive(Debug, Clone, PartialEq)]
pub struct Publish {
    pub runbook_id: Uuid,
    pub title: String,
    pub service_id: Option<Uuid>,
    pub steps: Vec<StepDef>,
}

impl Aggregate for Runbook {
    stored_events!(RunbookEvent, runbook_stream);
    type Command = Publish;
    type Context = ();
    const NOUN: &'static str = "runbook";

    fn evolve(
        state: Option<Self>,
        event: &RunbookEvent,
        at: DateTime<Utc>,
        by: By<'_>,
    ) -> Option<Self> {
        evolve_runbook(state, event, by.actor, at)
    }
    fn status(&self) -> &'static str {
        "published"
    }
    fn decide(
        state: Option<&Self>,
        p: Publish,
        _: &(),
        _: &str,
    ) -> Result<Decided<RunbookEvent>, Rejection> {
        publish(state, p.runbook_id, &p.title, p.service_id, p.steps)
            .map(|e| Decided::only(vec![e]))
    }
}

/// What starting an execution needs from beyond its stream.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Context {
    /// The runbook it runs.
    pub runbook: Option<Runbook>,
}

impl Aggregate for Execution {
    stored_events!(ExecutionEvent, execution_stream);
    type Command = Command;
    type Context = Context;
    const NOUN: &'static str = "execution";

    fn evolve(
        state: Option<Self>,
        event: &ExecutionEvent,
        at: DateTime<Utc>,
        by: By<'_>,
    ) -> Option<Self> {
        evolve_execution(state, event, by.actor, at)
    }
    fn status(&self) -> &'static str {
        self.status.as_str()
    }
    fn standing(&self) -> Vec<(&'static str, serde_json::Value)> {
        vec![
            ("next_step", self.next_step().into()),
            (
                "awaiting_confirmation",
                self.awaiting_confirmation().map(|s| s.step).into(),
            ),
        ]
    }
    fn decide(
        state: Option<&Self>,
        command: Command,
        ctx: &Context,
        actor: &str,
    ) -> Result<Decided<ExecutionEvent>, Rejection> {
        match (state, command) {
            (
                None,
                Command::Start {
                    execution_id,
                    incident_id,
                },
            ) => {
                let runbook = ctx
                    .runbook
                    .as_ref()
                    .ok_or_else(|| Rejection::NotFound("the runbook".into()))?;
                Ok(start(runbook, execution_id, incident_id))
            }
            (state, command) => decide(existing(state, "run")?, command, actor),
        }
        .map(|e| Decided::only(vec![e]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    fn step(title: &str, double_check: bool) -> StepDef {
        StepDef {
            title: title.into(),
            instructions: format!("do {title}"),
            double_check,
        }
    }

    fn runbook() -> Runbook {
        let e = publish(
            None,
            Uuid::from_u128(1),
            "Restart the order site",
            None,
            vec![
                step("drain", false),
                step("restart", true),
                step("undrain", false),
            ],
        )
        .unwrap();
        evolve_runbook(None, &e, "author", at(0)).unwrap()
    }

    fn started() -> Execution {
        let e = start(&runbook(), Uuid::from_u128(9), None);
        evolve_execution(None, &e, "alice", at(1)).unwrap()
    }

    /// Given the execution, when `who` runs the command, then the next state.
    fn run(x: Execution, c: Command, who: &str) -> Result<Execution, Rejection> {
        let e = decide(&x, c, who)?;
        Ok(evolve_execution(Some(x), &e, who, at(2)).unwrap())
    }

    fn complete(n: u32) -> Command {
        Command::Complete {
            step: n,
            note: None,
            minutes_spent: None,
        }
    }

    fn confirm(n: u32) -> Command {
        Command::Confirm {
            step: n,
            note: None,
            minutes_spent: Some(2),
        }
    }

    fn detail(r: Rejection) -> String {
        r.to_string()
    }

    #[test]
    fn versions_count_up_and_steps_are_validated() {
        let r = runbook();
        assert_eq!(r.latest().version, 1);
        let e = publish(Some(&r), r.id, "Restart", None, vec![step("only", false)]).unwrap();
        let r = evolve_runbook(Some(r), &e, "author", at(5)).unwrap();
        assert_eq!(r.latest().version, 2);
        assert_eq!(r.version(1).unwrap().steps.len(), 3);
        assert!(publish(None, r.id, "x", None, vec![]).is_err());
        let blank = StepDef {
            title: "t".into(),
            instructions: " ".into(),
            double_check: false,
        };
        assert!(publish(None, r.id, "x", None, vec![blank]).is_err());
    }

    #[test]
    fn an_execution_is_pinned_to_the_version_it_started_on() {
        let x = started();
        assert_eq!(x.runbook_version, 1);
        assert_eq!(x.steps.len(), 3);
        assert_eq!(x.next_step(), Some(1));
    }

    #[test]
    fn steps_are_completed_strictly_in_order() {
        let x = started();
        let err = run(x.clone(), complete(2), "alice").unwrap_err();
        assert!(detail(err.clone()).contains("step 1 is next"), "{err}");
        assert!(matches!(err, Rejection::Refused { ref state, .. } if state == "in_progress"));
        let x = run(x, complete(1), "alice").unwrap();
        let err = run(x.clone(), complete(1), "alice").unwrap_err();
        assert!(detail(err).contains("completed already"));
        assert!(run(x.clone(), complete(3), "alice").is_err());
        assert!(matches!(
            run(x, complete(4), "alice"),
            Err(Rejection::Invalid(_))
        ));
    }

    #[test]
    fn a_double_checked_step_needs_a_different_second_person_before_the_next() {
        let x = run(started(), complete(1), "alice").unwrap();
        let x = run(x, complete(2), "alice").unwrap();
        // Step 3 waits for step 2's confirmation.
        let err = run(x.clone(), complete(3), "alice").unwrap_err();
        assert!(detail(err).contains("step 2 needs a second person"));
        let err = run(x.clone(), complete(3), "bob").unwrap_err();
        assert!(detail(err).contains("step 2 needs a second person"));
        // The completer cannot confirm their own step.
        let err = run(x.clone(), confirm(2), "alice").unwrap_err();
        assert!(
            detail(err.clone()).contains("second, different person"),
            "{err}"
        );
        let x = run(x, confirm(2), "bob").unwrap();
        assert_eq!(x.steps[1].confirmed_by.as_deref(), Some("bob"));
        assert_eq!(x.steps[1].confirmation_minutes_spent, Some(2));
        assert!(run(x.clone(), confirm(2), "carol").is_err());
        // Now the next step may be completed, by anyone.
        let x = run(x, complete(3), "alice").unwrap();
        assert_eq!(x.next_step(), None);
    }

    #[test]
    fn only_double_checked_completed_steps_are_confirmed() {
        let x = started();
        assert!(matches!(
            run(x.clone(), confirm(1), "bob"),
            Err(Rejection::Invalid(_))
        ));
        let err = run(x, confirm(2), "bob").unwrap_err();
        assert!(detail(err).contains("not completed yet"));
    }

    #[test]
    fn succeeded_needs_every_step_done_and_finishing_is_final() {
        let x = run(started(), complete(1), "alice").unwrap();
        let err = run(
            x.clone(),
            Command::Finish {
                outcome: Outcome::Succeeded,
                note: None,
            },
            "alice",
        )
        .unwrap_err();
        assert!(detail(err).contains("step 2 of 3 is not completed"));
        let x2 = run(x.clone(), complete(2), "alice").unwrap();
        let err = run(
            x2,
            Command::Finish {
                outcome: Outcome::Succeeded,
                note: None,
            },
            "alice",
        )
        .unwrap_err();
        assert!(detail(err).contains("confirmation"));
        // Aborting needs a reason, and then nothing more happens.
        assert!(run(
            x.clone(),
            Command::Finish {
                outcome: Outcome::Aborted,
                note: None
            },
            "alice"
        )
        .is_err());
        let x = run(
            x,
            Command::Finish {
                outcome: Outcome::Aborted,
                note: Some("rolled back by hand".into()),
            },
            "alice",
        )
        .unwrap();
        assert_eq!(x.status, ExecutionStatus::Aborted);
        let err = run(x, complete(2), "alice").unwrap_err();
        assert_eq!(
            err,
            Rejection::Refused {
                detail: "cannot complete step 2 of an execution that is aborted".into(),
                state: "aborted".into()
            }
        );
    }

    #[test]
    fn a_full_run_succeeds() {
        let x = run(started(), complete(1), "alice").unwrap();
        let x = run(x, complete(2), "alice").unwrap();
        let x = run(x, confirm(2), "bob").unwrap();
        let x = run(x, complete(3), "bob").unwrap();
        let x = run(
            x,
            Command::Finish {
                outcome: Outcome::Succeeded,
                note: None,
            },
            "bob",
        )
        .unwrap();
        assert_eq!(x.status, ExecutionStatus::Succeeded);
        assert!(x.steps.iter().all(StepRun::done));
    }
}
