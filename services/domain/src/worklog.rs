//! The operations work log (SPEC §4): routine tasks (`task-<id>`, one
//! `RoutineTaskRecorded` each) and backups (`backup-<id>`: `BackupPerformed`,
//! then any number of `BackupVerified`). None of it changes the system.
//!
//! Who did it is the event's metadata (actor, role), never repeated in the
//! payload; `service_id` and `minutes_spent` are the keys the work ledger
//! reads (see the issue 5 conventions).
//!
//! A backup may be verified by anyone allowed to record work, the person who
//! took it included: a restore test by a second person is good practice, not
//! a rule the teams asked for. Each verification records who made it, so a
//! report can tell self-verified backups apart.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::aggregate::{existing, stored_events, Aggregate, By, Outcome};
use crate::Rejection;

/// Effort recorded on one command at most: a week of minutes. More is a
/// typing error, not a task.
pub const MINUTES_SPENT_MAX: u32 = 10_080;
/// Longest summary, note, instruction or answer kept.
pub const TEXT_LEN_MAX_CHARS: usize = 10_000;
/// How far in the future a reported `performed_at` may lie: clocks of the
/// reporting machines drift a little; a later time is a mistake.
pub const CLOCK_SKEW_MAX_S: i64 = 300;

pub fn task_stream(id: Uuid) -> String {
    format!("task-{id}")
}

pub fn backup_stream(id: Uuid) -> String {
    format!("backup-{id}")
}

/// Optional effort in minutes, `0..=MINUTES_SPENT_MAX`: the one check of
/// the effort every kind of record may carry (SPEC §6: time spent where
/// recorded).
pub fn minutes(raw: Option<u32>) -> Result<Option<u32>, Rejection> {
    minutes_spent(raw.map(i64::from))
}

/// [`minutes`], of a number that may be negative.
pub fn minutes_spent(raw: Option<i64>) -> Result<Option<u32>, Rejection> {
    match raw {
        None => Ok(None),
        Some(m) if (0..=MINUTES_SPENT_MAX as i64).contains(&m) => Ok(Some(m as u32)),
        Some(_) => Err(Rejection::Invalid(format!(
            "minutes_spent must be between 0 and {MINUTES_SPENT_MAX}"
        ))),
    }
}

/// A trimmed, non-empty text of at most [`TEXT_LEN_MAX_CHARS`], of several
/// lines perhaps, without other control characters: a NUL, above all, which
/// PostgreSQL's `text` and `jsonb` refuse, would stop the read models that
/// keep the text.
pub fn text(field: &str, raw: &str) -> Result<String, Rejection> {
    let t = raw.trim();
    if t.is_empty() {
        return Err(Rejection::Invalid(format!("{field} must not be empty")));
    }
    if t.chars().count() > TEXT_LEN_MAX_CHARS {
        return Err(Rejection::Invalid(format!(
            "{field} must be at most {TEXT_LEN_MAX_CHARS} characters"
        )));
    }
    if t.chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(Rejection::Invalid(format!(
            "{field} must not contain control characters other than line breaks and tabs"
        )));
    }
    Ok(t.to_owned())
}

/// An optional text: absent or blank is `None`.
pub fn optional_text(field: &str, raw: Option<&str>) -> Result<Option<String>, Rejection> {
    match raw.map(str::trim).filter(|t| !t.is_empty()) {
        None => Ok(None),
        Some(t) => text(field, t).map(Some),
    }
}

/// When the work was done: as reported, or now; never later than now (give
/// or take [`CLOCK_SKEW_MAX_S`]).
pub fn performed_at(
    reported: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, Rejection> {
    match reported {
        None => Ok(now),
        Some(at) if at <= now + chrono::Duration::seconds(CLOCK_SKEW_MAX_S) => Ok(at.min(now)),
        Some(_) => Err(Rejection::Invalid(
            "performed_at must not be in the future".into(),
        )),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    Restart,
    PatchCheck,
    ReportDelivered,
    Inspection,
    Other,
}

impl TaskKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::Restart => "restart",
            TaskKind::PatchCheck => "patch_check",
            TaskKind::ReportDelivered => "report_delivered",
            TaskKind::Inspection => "inspection",
            TaskKind::Other => "other",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VerifyResult {
    Ok,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum WorklogEvent {
    RoutineTaskRecorded {
        task_id: Uuid,
        service_id: Uuid,
        kind: TaskKind,
        summary: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        minutes_spent: Option<u32>,
        performed_at: DateTime<Utc>,
    },
    BackupPerformed {
        backup_id: Uuid,
        service_id: Uuid,
        /// What was backed up ("orders database", "/etc of web-1").
        what: String,
        /// Where the copy is kept.
        location: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        size_bytes: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        minutes_spent: Option<u32>,
        performed_at: DateTime<Utc>,
    },
    BackupVerified {
        backup_id: Uuid,
        service_id: Uuid,
        result: VerifyResult,
        /// How it was verified ("restored to staging and counted rows").
        how: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        minutes_spent: Option<u32>,
    },
}

impl WorklogEvent {
    pub fn type_name(&self) -> &'static str {
        match self {
            WorklogEvent::RoutineTaskRecorded { .. } => "RoutineTaskRecorded",
            WorklogEvent::BackupPerformed { .. } => "BackupPerformed",
            WorklogEvent::BackupVerified { .. } => "BackupVerified",
        }
    }
    pub fn payload(&self) -> serde_json::Value {
        crate::event::untagged_payload(self)
    }
    pub fn from_stored(event_type: &str, payload: &serde_json::Value) -> Option<WorklogEvent> {
        crate::event::from_tagged(event_type, payload)
    }
}

/// A routine task as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RoutineTask {
    pub id: Uuid,
    pub service_id: Uuid,
    pub kind: TaskKind,
    pub summary: String,
    pub minutes_spent: Option<u32>,
    pub performed_at: DateTime<Utc>,
    pub performed_by: String,
    pub recorded_at: DateTime<Utc>,
}

/// Where a backup stands: by its latest verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BackupStatus {
    Unverified,
    Verified,
    VerificationFailed,
}

impl BackupStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            BackupStatus::Unverified => "unverified",
            BackupStatus::Verified => "verified",
            BackupStatus::VerificationFailed => "verification_failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Verification {
    pub result: VerifyResult,
    pub how: String,
    pub minutes_spent: Option<u32>,
    pub verified_by: String,
    pub verified_at: DateTime<Utc>,
    /// True when the person who took the backup verified it.
    pub by_performer: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Backup {
    pub id: Uuid,
    pub service_id: Uuid,
    pub what: String,
    pub location: String,
    pub size_bytes: Option<u64>,
    pub note: Option<String>,
    pub minutes_spent: Option<u32>,
    pub performed_at: DateTime<Utc>,
    pub performed_by: String,
    pub recorded_at: DateTime<Utc>,
    pub status: BackupStatus,
    pub verifications: Vec<Verification>,
}

/// Folds a task's event (`None` for any other).
pub fn task_of(event: &WorklogEvent, by: &str, at: DateTime<Utc>) -> Option<RoutineTask> {
    match event {
        WorklogEvent::RoutineTaskRecorded {
            task_id,
            service_id,
            kind,
            summary,
            minutes_spent,
            performed_at,
        } => Some(RoutineTask {
            id: *task_id,
            service_id: *service_id,
            kind: *kind,
            summary: summary.clone(),
            minutes_spent: *minutes_spent,
            performed_at: *performed_at,
            performed_by: by.to_owned(),
            recorded_at: at,
        }),
        _ => None,
    }
}

/// Folds one event of a backup's stream, made by `by` and recorded at `at`.
pub fn evolve_backup(
    backup: Option<Backup>,
    event: &WorklogEvent,
    by: &str,
    at: DateTime<Utc>,
) -> Option<Backup> {
    match event {
        WorklogEvent::BackupPerformed {
            backup_id,
            service_id,
            what,
            location,
            size_bytes,
            note,
            minutes_spent,
            performed_at,
        } => Some(Backup {
            id: *backup_id,
            service_id: *service_id,
            what: what.clone(),
            location: location.clone(),
            size_bytes: *size_bytes,
            note: note.clone(),
            minutes_spent: *minutes_spent,
            performed_at: *performed_at,
            performed_by: by.to_owned(),
            recorded_at: at,
            status: BackupStatus::Unverified,
            verifications: Vec::new(),
        }),
        WorklogEvent::BackupVerified {
            result,
            how,
            minutes_spent,
            ..
        } => {
            let mut b = backup?;
            b.status = match result {
                VerifyResult::Ok => BackupStatus::Verified,
                VerifyResult::Failed => BackupStatus::VerificationFailed,
            };
            b.verifications.push(Verification {
                result: *result,
                how: how.clone(),
                minutes_spent: *minutes_spent,
                verified_by: by.to_owned(),
                verified_at: at,
                by_performer: by == b.performed_by,
            });
            Some(b)
        }
        WorklogEvent::RoutineTaskRecorded { .. } => backup,
    }
}

/// Verifications one backup keeps at most: a restore test a day for years.
pub const VERIFICATIONS_MAX: usize = 2_000;

/// Decides a verification of a backup. Anyone may verify, the person who
/// took it too; a failed backup may be verified again after it was repaired.
pub fn verify(
    backup: &Backup,
    result: VerifyResult,
    how: &str,
    minutes: Option<i64>,
) -> Result<WorklogEvent, Rejection> {
    if backup.verifications.len() >= VERIFICATIONS_MAX {
        return Err(Rejection::Invalid(format!(
            "a backup keeps at most {VERIFICATIONS_MAX} verifications"
        )));
    }
    Ok(WorklogEvent::BackupVerified {
        backup_id: backup.id,
        service_id: backup.service_id,
        result,
        how: text("how", how)?,
        minutes_spent: minutes_spent(minutes)?,
    })
}

/// Recording a routine task (a record of one event).
#[derive(Debug, Clone, PartialEq)]
pub struct RecordTask {
    pub task_id: Uuid,
    pub service_id: Uuid,
    pub kind: TaskKind,
    pub summary: String,
    pub minutes_spent: Option<i64>,
    pub performed_at: Option<DateTime<Utc>>,
}

impl Aggregate for RoutineTask {
    stored_events!(WorklogEvent, task_stream);
    type Command = RecordTask;
    /// The instant the task is recorded at: it cannot have been done later.
    type Context = DateTime<Utc>;
    const NOUN: &'static str = "routine task";

    fn evolve(
        state: Option<Self>,
        event: &WorklogEvent,
        at: DateTime<Utc>,
        by: By<'_>,
    ) -> Option<Self> {
        task_of(event, by.actor, at).or(state)
    }
    fn status(&self) -> &'static str {
        "recorded"
    }
    fn decide(
        state: Option<&Self>,
        t: RecordTask,
        now: &DateTime<Utc>,
        _: &str,
    ) -> Result<Outcome<WorklogEvent>, Rejection> {
        if let Some(t) = state {
            return Err(Rejection::AlreadyExists(format!("routine task {}", t.id)));
        }
        Ok(Outcome::only(vec![WorklogEvent::RoutineTaskRecorded {
            task_id: t.task_id,
            service_id: t.service_id,
            kind: t.kind,
            summary: text("summary", &t.summary)?,
            minutes_spent: minutes_spent(t.minutes_spent)?,
            performed_at: performed_at(t.performed_at, *now)?,
        }]))
    }
}

/// Recording a backup, or a verification of it.
#[derive(Debug, Clone, PartialEq)]
pub enum BackupCommand {
    Record {
        backup_id: Uuid,
        service_id: Uuid,
        what: String,
        location: String,
        size_bytes: Option<u64>,
        note: Option<String>,
        minutes_spent: Option<i64>,
        performed_at: Option<DateTime<Utc>>,
    },
    Verify {
        result: VerifyResult,
        how: String,
        minutes_spent: Option<i64>,
    },
}

impl Aggregate for Backup {
    stored_events!(WorklogEvent, backup_stream);
    type Command = BackupCommand;
    /// The instant the command is given: a backup cannot have been made later.
    type Context = DateTime<Utc>;
    const NOUN: &'static str = "backup";

    fn evolve(
        state: Option<Self>,
        event: &WorklogEvent,
        at: DateTime<Utc>,
        by: By<'_>,
    ) -> Option<Self> {
        evolve_backup(state, event, by.actor, at)
    }
    fn status(&self) -> &'static str {
        self.status.as_str()
    }
    fn decide(
        state: Option<&Self>,
        command: BackupCommand,
        now: &DateTime<Utc>,
        _: &str,
    ) -> Result<Outcome<WorklogEvent>, Rejection> {
        let event = match (state, command) {
            (
                None,
                BackupCommand::Record {
                    backup_id,
                    service_id,
                    what,
                    location,
                    size_bytes,
                    note,
                    minutes_spent: minutes,
                    performed_at: at,
                },
            ) => WorklogEvent::BackupPerformed {
                backup_id,
                service_id,
                what: text("what", &what)?,
                location: text("location", &location)?,
                size_bytes,
                note: optional_text("note", note.as_deref())?,
                minutes_spent: minutes_spent(minutes)?,
                performed_at: performed_at(at, *now)?,
            },
            (Some(b), BackupCommand::Record { .. }) => {
                return Err(Rejection::AlreadyExists(format!("backup {}", b.id)))
            }
            (
                state,
                BackupCommand::Verify {
                    result,
                    how,
                    minutes_spent,
                },
            ) => verify(existing(state, "verify")?, result, &how, minutes_spent)?,
        };
        Ok(Outcome::only(vec![event]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    fn performed() -> Backup {
        let e = WorklogEvent::BackupPerformed {
            backup_id: Uuid::from_u128(1),
            service_id: Uuid::from_u128(2),
            what: "orders db".into(),
            location: "s3://backups/orders".into(),
            size_bytes: Some(1 << 30),
            note: None,
            minutes_spent: Some(15),
            performed_at: at(0),
        };
        evolve_backup(None, &e, "alice", at(1)).unwrap()
    }

    #[test]
    fn minutes_spent_is_bounded_to_a_week() {
        assert_eq!(minutes_spent(None), Ok(None));
        assert_eq!(minutes_spent(Some(0)), Ok(Some(0)));
        assert_eq!(minutes_spent(Some(10_080)), Ok(Some(10_080)));
        assert!(minutes_spent(Some(10_081)).is_err());
        assert!(minutes_spent(Some(-1)).is_err());
    }

    #[test]
    fn texts_keep_line_breaks_and_refuse_other_control_characters() {
        assert_eq!(text("summary", " a\n\tb\r\n "), Ok("a\n\tb".into()));
        assert!(text("summary", "a\u{0}b").is_err());
        assert!(text("summary", "a\u{1b}[31mb").is_err());
        assert_eq!(optional_text("note", Some("  ")), Ok(None));
        assert!(optional_text("note", Some("x\u{7}")).is_err());
    }

    #[test]
    fn work_cannot_be_performed_in_the_future() {
        let now = at(1000);
        assert_eq!(performed_at(None, now), Ok(now));
        assert_eq!(performed_at(Some(at(10)), now), Ok(at(10)));
        // A little clock drift is brought back to now, not refused.
        assert_eq!(performed_at(Some(at(1060)), now), Ok(now));
        assert!(performed_at(Some(at(1000 + CLOCK_SKEW_MAX_S + 1)), now).is_err());
    }

    #[test]
    fn a_backup_is_verified_by_anyone_and_who_is_recorded() {
        let b = performed();
        assert_eq!(b.status, BackupStatus::Unverified);
        let failed = verify(
            &b,
            VerifyResult::Failed,
            "restore failed: bad checksum",
            None,
        )
        .unwrap();
        let b = evolve_backup(Some(b), &failed, "bob", at(2)).unwrap();
        assert_eq!(b.status, BackupStatus::VerificationFailed);
        assert!(!b.verifications[0].by_performer);
        // The person who took it may verify it too; it says so.
        let ok = verify(&b, VerifyResult::Ok, "restored to staging", Some(30)).unwrap();
        let b = evolve_backup(Some(b), &ok, "alice", at(3)).unwrap();
        assert_eq!(b.status, BackupStatus::Verified);
        assert_eq!(b.verifications.len(), 2);
        assert!(b.verifications[1].by_performer);
        assert_eq!(b.verifications[1].verified_by, "alice");
    }

    #[test]
    fn a_verification_says_how() {
        let b = performed();
        assert!(verify(&b, VerifyResult::Ok, "  ", None).is_err());
        assert!(verify(&b, VerifyResult::Ok, "checked", Some(99_999)).is_err());
    }

    #[test]
    fn payloads_carry_service_id_and_minutes_spent() {
        let e = WorklogEvent::RoutineTaskRecorded {
            task_id: Uuid::from_u128(3),
            service_id: Uuid::from_u128(2),
            kind: TaskKind::PatchCheck,
            summary: "checked".into(),
            minutes_spent: Some(5),
            performed_at: at(0),
        };
        let p = e.payload();
        assert_eq!(p["service_id"], Uuid::from_u128(2).to_string());
        assert_eq!(p["minutes_spent"], 5);
        assert_eq!(
            WorklogEvent::from_stored("RoutineTaskRecorded", &p),
            Some(e)
        );
    }
}
