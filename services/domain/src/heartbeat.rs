//! Heartbeats for scheduled jobs (SPEC §12, issue 18 point 3): a job pings
//! its heartbeat's URL when it runs; opsledger raises an alert when a run is
//! missed (no good ping by the expected-by time) or fails (a `/fail` ping,
//! or a nonzero exit code), and resolves it on the next good ping. Stream:
//! `heartbeat-<id>`.
//!
//! The stream holds the definition (`HeartbeatCreated`, `HeartbeatChanged`,
//! `HeartbeatTokenRotated`, `HeartbeatRemoved`) and *transitions* only
//! (`HeartbeatMissed`, `HeartbeatFailed`, `HeartbeatRecovered`): a ping that
//! changes nothing records nothing. The last ping and the expected-by time
//! are worker state (`store::heartbeats`, table `heartbeat_runs`).
//!
//! The ping token is the credential of the ping URL: the stream keeps only
//! its SHA-256 ([`token_hash`]), so neither the log nor a backup holds a
//! usable one.
//!
//! **Schedules.** A period (`period_s`), or a five-field cron expression
//! (minute hour day-of-month month day-of-week) read in an IANA time zone.
//! The expected-by time is the next scheduled run after the last good ping
//! (or the creation) plus the grace time ([`expected_by`]). Cron fields are
//! matched against the *local wall clock* (the `cron` crate parses and
//! walks them; the mapping to instants is ours, [`next_run_after`]), with
//! Vixie cron's DST rule: a run whose local time does not exist (spring
//! forward: 02:30 on the day New York jumps from 02:00 to 03:00) is due at
//! the first instant after the gap (03:00 local); a run whose local time
//! happens twice (fall back: 01:30) is due once, at its first occurrence.
//! Days of the week are named (`MON-FRI`): the crate numbers them from
//! Sunday = 1, not cron's 0, so digits there are refused rather than
//! silently shifted by a day.

use std::str::FromStr;

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::aggregate::{existing, stored_events, Aggregate, By, Outcome};
use crate::alert::Category;
use crate::Rejection;

pub fn heartbeat_stream(id: Uuid) -> String {
    format!("heartbeat-{id}")
}

/// The shortest period: a second (tests); a job pinging more often than
/// that is a probe's work.
pub const PERIOD_MIN_S: u32 = 1;
/// The longest period: 35 days, a month and its slack. Rarer runs are a
/// cron expression's.
pub const PERIOD_MAX_S: u32 = 35 * 86_400;
/// The longest grace time: a week.
pub const GRACE_MAX_S: u32 = 7 * 86_400;
/// A cron expression's length: five fields fit easily.
pub const CRON_LEN_MAX_BYTES: usize = 200;
/// A heartbeat's name, in characters.
pub const NAME_LEN_MAX_CHARS: usize = 200;
/// How much of a ping's body is kept (bytes, cut at a character boundary).
pub const BODY_KEPT_MAX_BYTES: usize = 1024;
/// A run id's length.
pub const RUN_ID_LEN_MAX_CHARS: usize = 200;
/// Transitions a heartbeat's record keeps for display; the stream keeps all.
pub const TRANSITIONS_SHOWN_MAX: usize = 20;
/// Cron candidates looked at for one next run: each skips at most a
/// repeated or missing hour, so a handful is plenty.
const CRON_CANDIDATES_MAX: usize = 16;
/// The longest DST gap looked across, in minutes (real ones are 30 or 60).
const DST_GAP_MAX_MIN: i64 = 180;

/// When the job is expected to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
#[schema(as = HeartbeatSchedule)]
pub enum Schedule {
    /// Every `period_s` seconds.
    Period { period_s: u32 },
    /// A five-field cron expression (`30 2 * * *`; days of the week by name,
    /// `MON-FRI`) in the IANA time zone `time_zone` (`America/New_York`).
    Cron {
        expression: String,
        time_zone: String,
    },
}

/// A heartbeat's definition, as given and as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HeartbeatSpec {
    pub name: String,
    pub service_id: Uuid,
    pub schedule: Schedule,
    /// Seconds after a scheduled run before it counts as missed.
    pub grace_s: u32,
    /// The category of the alerts it raises.
    pub category: Category,
}

/// As the stream records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = HeartbeatStatus)]
pub enum Status {
    /// Pinged in time (or not yet due).
    Up,
    /// A run was missed.
    Late,
    /// The last run failed.
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Up => "up",
            Status::Late => "late",
            Status::Failed => "failed",
        }
    }
    pub fn parse(s: &str) -> Option<Status> {
        match s {
            "up" => Some(Status::Up),
            "late" => Some(Status::Late),
            "failed" => Some(Status::Failed),
            _ => None,
        }
    }
}

/// What a ping says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PingKind {
    Success,
    Start,
    Fail,
}

/// One ping, as kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Ping {
    pub kind: PingKind,
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// The first bytes of the body (at most 1 KiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

impl Ping {
    /// A ping from its parts: a success with a nonzero exit code is a
    /// failure; the run id and body are cut to what is kept.
    pub fn new(
        kind: PingKind,
        at: DateTime<Utc>,
        exit_code: Option<i32>,
        run_id: Option<&str>,
        body: &[u8],
    ) -> Ping {
        let kind = match (kind, exit_code) {
            (PingKind::Success, Some(c)) if c != 0 => PingKind::Fail,
            (k, _) => k,
        };
        let body = String::from_utf8_lossy(&body[..body.len().min(BODY_KEPT_MAX_BYTES)]);
        let body = body
            .trim_end_matches('\u{FFFD}')
            .replace('\u{0}', "\u{FFFD}");
        Ping {
            kind,
            at,
            exit_code,
            run_id: run_id.map(|r| r.chars().take(RUN_ID_LEN_MAX_CHARS).collect()),
            body: (!body.is_empty()).then_some(body),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum HeartbeatEvent {
    HeartbeatCreated {
        heartbeat_id: Uuid,
        spec: HeartbeatSpec,
        token_sha256: String,
    },
    HeartbeatChanged {
        spec: HeartbeatSpec,
    },
    HeartbeatTokenRotated {
        token_sha256: String,
    },
    HeartbeatRemoved {
        service_id: Uuid,
    },
    HeartbeatMissed {
        expected_by: DateTime<Utc>,
    },
    HeartbeatFailed {
        ping: Ping,
    },
    HeartbeatRecovered {
        ping: Ping,
    },
}

impl HeartbeatEvent {
    pub fn type_name(&self) -> &'static str {
        match self {
            HeartbeatEvent::HeartbeatCreated { .. } => "HeartbeatCreated",
            HeartbeatEvent::HeartbeatChanged { .. } => "HeartbeatChanged",
            HeartbeatEvent::HeartbeatTokenRotated { .. } => "HeartbeatTokenRotated",
            HeartbeatEvent::HeartbeatRemoved { .. } => "HeartbeatRemoved",
            HeartbeatEvent::HeartbeatMissed { .. } => "HeartbeatMissed",
            HeartbeatEvent::HeartbeatFailed { .. } => "HeartbeatFailed",
            HeartbeatEvent::HeartbeatRecovered { .. } => "HeartbeatRecovered",
        }
    }
    pub fn payload(&self) -> serde_json::Value {
        crate::event::untagged_payload(self)
    }
    pub fn from_stored(event_type: &str, payload: &serde_json::Value) -> Option<HeartbeatEvent> {
        crate::event::from_tagged(event_type, payload)
    }
}

/// A transition, as a heartbeat's record shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = HeartbeatTransition)]
pub struct Transition {
    pub to: Status,
    pub recorded_at: DateTime<Utc>,
    /// The ping that caused it (none for a miss).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ping: Option<Ping>,
    /// The time the missed run was expected by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_by: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Heartbeat {
    pub id: Uuid,
    #[serde(flatten)]
    pub spec: HeartbeatSpec,
    pub status: Status,
    pub removed: bool,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    /// When the ping token was last set (created or rotated).
    pub token_set_at: DateTime<Utc>,
    /// The latest transitions, newest last (at most 20).
    pub transitions: Vec<Transition>,
}

pub fn evolve(
    hb: Option<Heartbeat>,
    event: &HeartbeatEvent,
    at: DateTime<Utc>,
    by: &str,
) -> Option<Heartbeat> {
    use HeartbeatEvent as E;
    match event {
        E::HeartbeatCreated {
            heartbeat_id, spec, ..
        } => Some(Heartbeat {
            id: *heartbeat_id,
            spec: spec.clone(),
            status: Status::Up,
            removed: false,
            created_by: by.to_owned(),
            created_at: at,
            token_set_at: at,
            transitions: Vec::new(),
        }),
        E::HeartbeatChanged { spec } => hb.map(|mut h| {
            h.spec = spec.clone();
            h
        }),
        E::HeartbeatTokenRotated { .. } => hb.map(|mut h| {
            h.token_set_at = at;
            h
        }),
        E::HeartbeatRemoved { .. } => hb.map(|mut h| {
            h.removed = true;
            h
        }),
        E::HeartbeatMissed { expected_by } => {
            hb.map(|h| transition(h, Status::Late, at, None, Some(*expected_by)))
        }
        E::HeartbeatFailed { ping } => {
            hb.map(|h| transition(h, Status::Failed, at, Some(ping.clone()), None))
        }
        E::HeartbeatRecovered { ping } => {
            hb.map(|h| transition(h, Status::Up, at, Some(ping.clone()), None))
        }
    }
}

fn transition(
    mut h: Heartbeat,
    to: Status,
    at: DateTime<Utc>,
    ping: Option<Ping>,
    expected_by: Option<DateTime<Utc>>,
) -> Heartbeat {
    h.status = to;
    h.transitions.push(Transition {
        to,
        recorded_at: at,
        ping,
        expected_by,
    });
    if h.transitions.len() > TRANSITIONS_SHOWN_MAX {
        h.transitions.remove(0);
    }
    h
}

/// The SHA-256 of a ping token, in hex: what the stream and the worker
/// table keep and what a ping is looked up by.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// What a ping does to a heartbeat in `status`: the status it now reaches
/// when that is a change, and whether it restarts the wait for the next run
/// (a good or failed run does; a start does not).
pub fn on_ping(status: Status, kind: PingKind) -> (Option<Status>, bool) {
    match kind {
        PingKind::Start => (None, false),
        PingKind::Success => ((status != Status::Up).then_some(Status::Up), true),
        PingKind::Fail => ((status != Status::Failed).then_some(Status::Failed), true),
    }
}

/// A cron expression parsed: five fields, days of the week by name.
fn parse_cron(expression: &str) -> Result<cron::Schedule, String> {
    let fields: Vec<&str> = expression.split_whitespace().collect();
    if fields.len() != 5 || expression.len() > CRON_LEN_MAX_BYTES {
        return Err(format!(
            "expression must be five fields (minute hour day-of-month month day-of-week), at most {CRON_LEN_MAX_BYTES} bytes"
        ));
    }
    if fields[4].chars().any(|c| c.is_ascii_digit()) {
        return Err("days of the week are named (MON-FRI, SUN): numbers are read differently by different crons".into());
    }
    cron::Schedule::from_str(&format!("0 {}", fields.join(" ")))
        .map_err(|e| format!("expression is not a cron expression: {e}"))
}

fn parse_zone(zone: &str) -> Result<chrono_tz::Tz, String> {
    zone.parse::<chrono_tz::Tz>()
        .map_err(|_| format!("time_zone {zone:?} is not an IANA time zone"))
}

/// The first instant whose wall clock in `tz` is `local` or, when `local`
/// falls in a gap (spring forward), the first instant after the gap; for a
/// time that happens twice (fall back), its first occurrence.
fn first_instant(tz: chrono_tz::Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    for m in 0..=DST_GAP_MAX_MIN {
        let probe = local + Duration::minutes(m);
        // Inside a gap, move to the next whole minute: the gap ends on one.
        let probe = if m == 0 {
            probe
        } else {
            probe - Duration::seconds(i64::from(chrono::Timelike::second(&probe)))
        };
        match tz.from_local_datetime(&probe) {
            LocalResult::Single(t) => return Some(t.with_timezone(&Utc)),
            LocalResult::Ambiguous(first, _) => return Some(first.with_timezone(&Utc)),
            LocalResult::None => {}
        }
    }
    None
}

/// The next scheduled run strictly after `after` (see the module's doc for
/// DST); None for a cron expression with no run ahead.
pub fn next_run_after(schedule: &Schedule, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    match schedule {
        Schedule::Period { period_s } => Some(after + Duration::seconds(i64::from(*period_s))),
        Schedule::Cron {
            expression,
            time_zone,
        } => {
            let cron = parse_cron(expression).ok()?;
            let tz = parse_zone(time_zone).ok()?;
            // The wall clock, walked as if it were UTC (no gaps, no repeats).
            let local = after.with_timezone(&tz).naive_local();
            let wall = Utc.from_utc_datetime(&local);
            cron.after(&wall)
                .take(CRON_CANDIDATES_MAX)
                .filter_map(|candidate| first_instant(tz, candidate.naive_utc()))
                // A run already past: the first of a repeated hour, seen
                // from its second pass.
                .find(|t| *t > after)
        }
    }
}

/// The instant a run is expected by: the next scheduled run after `from`
/// plus the grace time.
pub fn expected_by(spec: &HeartbeatSpec, from: DateTime<Utc>) -> Option<DateTime<Utc>> {
    next_run_after(&spec.schedule, from).map(|t| t + Duration::seconds(i64::from(spec.grace_s)))
}

#[derive(Debug, Clone, PartialEq)]
pub struct Context {
    pub service_known: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Create {
        heartbeat_id: Uuid,
        spec: HeartbeatSpec,
        token_sha256: String,
    },
    Change {
        spec: HeartbeatSpec,
    },
    Rotate {
        token_sha256: String,
    },
    Remove,
    /// The worker's: a run was missed.
    RecordMissed {
        expected_by: DateTime<Utc>,
    },
    /// The ping path's: a ping moved the heartbeat to `to`.
    RecordPing {
        to: Status,
        ping: Ping,
    },
}

fn invalid(s: impl Into<String>) -> Rejection {
    Rejection::Invalid(s.into())
}

/// Checks a definition and returns it with its text trimmed.
pub fn validate(spec: HeartbeatSpec, context: &Context) -> Result<HeartbeatSpec, Rejection> {
    if !context.service_known {
        return Err(invalid(format!("no service {}", spec.service_id)));
    }
    let name = spec.name.trim();
    if name.is_empty()
        || name.chars().count() > NAME_LEN_MAX_CHARS
        || name.chars().any(char::is_control)
    {
        return Err(invalid(format!(
            "name must be 1 to {NAME_LEN_MAX_CHARS} characters, without control characters"
        )));
    }
    if spec.grace_s > GRACE_MAX_S {
        return Err(invalid(format!("grace_s must be 0 to {GRACE_MAX_S}")));
    }
    let schedule = match spec.schedule {
        Schedule::Period { period_s } => {
            if !(PERIOD_MIN_S..=PERIOD_MAX_S).contains(&period_s) {
                return Err(invalid(format!(
                    "period_s must be {PERIOD_MIN_S} to {PERIOD_MAX_S}"
                )));
            }
            Schedule::Period { period_s }
        }
        Schedule::Cron {
            expression,
            time_zone,
        } => {
            let expression = expression.split_whitespace().collect::<Vec<_>>().join(" ");
            let cron = parse_cron(&expression).map_err(invalid)?;
            let time_zone = time_zone.trim().to_owned();
            parse_zone(&time_zone).map_err(invalid)?;
            // `0 0 30 2 *` parses but never runs.
            if cron.upcoming(Utc).next().is_none() {
                return Err(invalid("expression never runs"));
            }
            Schedule::Cron {
                expression,
                time_zone,
            }
        }
    };
    Ok(HeartbeatSpec {
        name: name.to_owned(),
        schedule,
        ..spec
    })
}

fn valid_hash(h: &str) -> Result<(), Rejection> {
    // Programmer error if not: the API hashes the token it made.
    if h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(invalid("token hash must be 64 hex digits"))
    }
}

fn removed_refusal(command: &str) -> Rejection {
    Rejection::InvalidState {
        entity: "heartbeat",
        command: command.into(),
        state: "removed".into(),
    }
}

impl Aggregate for Heartbeat {
    stored_events!(HeartbeatEvent, heartbeat_stream);
    type Command = Command;
    type Context = Context;
    const NOUN: &'static str = "heartbeat";

    fn evolve(
        state: Option<Self>,
        event: &HeartbeatEvent,
        at: DateTime<Utc>,
        by: By<'_>,
    ) -> Option<Self> {
        evolve(state, event, at, by.actor)
    }
    fn status(&self) -> &'static str {
        if self.removed {
            "removed"
        } else {
            self.status.as_str()
        }
    }
    fn decide(
        state: Option<&Self>,
        command: Command,
        context: &Context,
        _: &str,
    ) -> Result<Outcome<HeartbeatEvent>, Rejection> {
        use HeartbeatEvent as E;
        let live = |state: Option<&'_ Self>, what: &str| -> Result<Heartbeat, Rejection> {
            let h = existing(state, what)?;
            if h.removed {
                return Err(removed_refusal(what));
            }
            Ok(h.clone())
        };
        let events = match (state, command) {
            (
                None,
                Command::Create {
                    heartbeat_id,
                    spec,
                    token_sha256,
                },
            ) => {
                valid_hash(&token_sha256)?;
                vec![E::HeartbeatCreated {
                    heartbeat_id,
                    spec: validate(spec, context)?,
                    token_sha256,
                }]
            }
            (Some(h), Command::Create { .. }) => {
                return Err(Rejection::AlreadyExists(format!("heartbeat {}", h.id)))
            }
            (state, Command::Change { spec }) => {
                let h = live(state, "change")?;
                let spec = validate(spec, context)?;
                if spec == h.spec {
                    vec![]
                } else {
                    vec![E::HeartbeatChanged { spec }]
                }
            }
            (state, Command::Rotate { token_sha256 }) => {
                live(state, "rotate")?;
                valid_hash(&token_sha256)?;
                vec![E::HeartbeatTokenRotated { token_sha256 }]
            }
            (state, Command::Remove) => {
                let h = live(state, "remove")?;
                vec![E::HeartbeatRemoved {
                    service_id: h.spec.service_id,
                }]
            }
            (state, Command::RecordMissed { expected_by }) => {
                let h = existing(state, "record")?;
                // Only a heartbeat that was up misses: a failed one already
                // alerts, a late one already did.
                if h.removed || h.status != Status::Up {
                    vec![]
                } else {
                    vec![E::HeartbeatMissed { expected_by }]
                }
            }
            (state, Command::RecordPing { to, ping }) => {
                let h = existing(state, "record")?;
                match to {
                    _ if h.removed || h.status == to => vec![],
                    Status::Up => vec![E::HeartbeatRecovered { ping }],
                    Status::Failed => vec![E::HeartbeatFailed { ping }],
                    Status::Late => return Err(invalid("a ping does not make a heartbeat late")),
                }
            }
        };
        Ok(Outcome::only(events))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn cron(expression: &str, zone: &str) -> Schedule {
        Schedule::Cron {
            expression: expression.into(),
            time_zone: zone.into(),
        }
    }

    fn spec() -> HeartbeatSpec {
        HeartbeatSpec {
            name: "nightly backup".into(),
            service_id: Uuid::from_u128(1),
            schedule: Schedule::Period { period_s: 3600 },
            grace_s: 300,
            category: Category::Application,
        }
    }

    fn ctx() -> Context {
        Context {
            service_known: true,
        }
    }

    fn created() -> Heartbeat {
        let out = Heartbeat::decide(
            None,
            Command::Create {
                heartbeat_id: Uuid::from_u128(9),
                spec: spec(),
                token_sha256: token_hash("t"),
            },
            &ctx(),
            "op",
        )
        .unwrap();
        evolve(None, &out.events[0], at("2025-01-01T00:00:00Z"), "op").unwrap()
    }

    #[test]
    fn a_daily_run_at_a_time_skipped_by_spring_forward_is_due_when_the_gap_ends() {
        // 2025-03-09: New York jumps from 02:00 EST to 03:00 EDT.
        let s = cron("30 2 * * *", "America/New_York");
        let day_before = next_run_after(&s, at("2025-03-08T12:00:00Z")).unwrap();
        assert_eq!(day_before, at("2025-03-09T07:00:00Z"), "03:00 EDT");
        // The day after, 02:30 exists again, now in EDT.
        let next = next_run_after(&s, day_before).unwrap();
        assert_eq!(next, at("2025-03-10T06:30:00Z"));
        // An ordinary day: 02:30 EST.
        assert_eq!(
            next_run_after(&s, at("2025-03-07T12:00:00Z")).unwrap(),
            at("2025-03-08T07:30:00Z")
        );
    }

    #[test]
    fn a_daily_run_in_the_repeated_hour_of_fall_back_is_due_once_at_its_first_occurrence() {
        // 2025-11-02: New York goes from 02:00 EDT back to 01:00 EST.
        let s = cron("30 1 * * *", "America/New_York");
        let first = next_run_after(&s, at("2025-11-01T12:00:00Z")).unwrap();
        assert_eq!(first, at("2025-11-02T05:30:00Z"), "01:30 EDT");
        // After it, the second 01:30 (EST, 06:30Z) is not another run.
        let next = next_run_after(&s, first).unwrap();
        assert_eq!(next, at("2025-11-03T06:30:00Z"), "01:30 EST the next day");
        // Seen from inside the repeated hour's second pass, too.
        assert_eq!(
            next_run_after(&s, at("2025-11-02T06:10:00Z")).unwrap(),
            at("2025-11-03T06:30:00Z")
        );
    }

    #[test]
    fn berlin_and_weekday_schedules_follow_the_local_clock() {
        // Europe/Berlin springs forward 2025-03-30 02:00 CET → 03:00 CEST.
        let s = cron("0 9 * * MON-FRI", "Europe/Berlin");
        // Friday 28 March after 09:00 → Monday 31 March 09:00 CEST (07:00Z).
        assert_eq!(
            next_run_after(&s, at("2025-03-28T09:00:00Z")).unwrap(),
            at("2025-03-31T07:00:00Z")
        );
    }

    #[test]
    fn expected_by_is_the_next_run_plus_grace() {
        let mut sp = spec();
        assert_eq!(
            expected_by(&sp, at("2025-01-01T00:00:00Z")).unwrap(),
            at("2025-01-01T01:05:00Z")
        );
        sp.schedule = cron("30 2 * * *", "America/New_York");
        assert_eq!(
            expected_by(&sp, at("2025-03-08T12:00:00Z")).unwrap(),
            at("2025-03-09T07:05:00Z")
        );
    }

    #[test]
    fn bad_schedules_are_refused() {
        for (e, z) in [
            ("30 2 * *", "UTC"),
            ("0 30 2 * * *", "UTC"),
            ("61 2 * * *", "UTC"),
            ("0 0 * * 1", "UTC"),
            ("0 0 30 2 *", "UTC"),
            ("0 0 * * *", "Mars/Olympus"),
            ("not cron at all", "UTC"),
        ] {
            let mut s = spec();
            s.schedule = cron(e, z);
            assert!(validate(s, &ctx()).is_err(), "{e} in {z} is refused");
        }
        let bad = |f: fn(&mut HeartbeatSpec)| {
            let mut s = spec();
            f(&mut s);
            validate(s, &ctx()).unwrap_err()
        };
        bad(|s| s.schedule = Schedule::Period { period_s: 0 });
        bad(|s| {
            s.schedule = Schedule::Period {
                period_s: PERIOD_MAX_S + 1,
            }
        });
        bad(|s| s.grace_s = GRACE_MAX_S + 1);
        bad(|s| s.name = " ".into());
        bad(|s| s.name = "a\nb".into());
        assert!(validate(
            spec(),
            &Context {
                service_known: false
            }
        )
        .is_err());
        let mut s = spec();
        s.schedule = cron(" 30  2 * *   SUN ", " Asia/Tokyo ");
        let ok = validate(s, &ctx()).unwrap();
        assert_eq!(ok.schedule, cron("30 2 * * SUN", "Asia/Tokyo"));
    }

    #[test]
    fn pings_move_only_on_a_change_and_a_start_moves_nothing() {
        assert_eq!(on_ping(Status::Up, PingKind::Success), (None, true));
        assert_eq!(
            on_ping(Status::Late, PingKind::Success),
            (Some(Status::Up), true)
        );
        assert_eq!(
            on_ping(Status::Up, PingKind::Fail),
            (Some(Status::Failed), true)
        );
        assert_eq!(on_ping(Status::Failed, PingKind::Fail), (None, true));
        assert_eq!(on_ping(Status::Late, PingKind::Start), (None, false));
        let p = Ping::new(
            PingKind::Success,
            at("2025-01-01T00:00:00Z"),
            Some(2),
            None,
            b"",
        );
        assert_eq!(p.kind, PingKind::Fail, "a nonzero exit code fails");
        let long = vec![b'x'; 5000];
        let p = Ping::new(
            PingKind::Success,
            at("2025-01-01T00:00:00Z"),
            None,
            None,
            &long,
        );
        assert_eq!(p.body.unwrap().len(), BODY_KEPT_MAX_BYTES);
    }

    #[test]
    fn transitions_are_recorded_once_and_a_recovery_follows_a_miss_or_failure() {
        let h = created();
        let run = |h: &Heartbeat, c: Command| {
            Heartbeat::decide(Some(h), c, &ctx(), "system")
                .unwrap()
                .events
        };
        let missed = run(
            &h,
            Command::RecordMissed {
                expected_by: at("2025-01-01T01:05:00Z"),
            },
        );
        assert!(matches!(
            missed[..],
            [HeartbeatEvent::HeartbeatMissed { .. }]
        ));
        let h = evolve(Some(h), &missed[0], at("2025-01-01T01:05:01Z"), "system").unwrap();
        assert_eq!(h.status, Status::Late);
        assert!(run(
            &h,
            Command::RecordMissed {
                expected_by: at("2025-01-01T02:05:00Z"),
            }
        )
        .is_empty());
        let ping = Ping::new(
            PingKind::Success,
            at("2025-01-01T01:06:00Z"),
            None,
            None,
            b"ok",
        );
        let up = run(
            &h,
            Command::RecordPing {
                to: Status::Up,
                ping: ping.clone(),
            },
        );
        assert_eq!(
            up,
            vec![HeartbeatEvent::HeartbeatRecovered { ping: ping.clone() }]
        );
        let h = evolve(Some(h), &up[0], at("2025-01-01T01:06:00Z"), "system").unwrap();
        assert!(run(
            &h,
            Command::RecordPing {
                to: Status::Up,
                ping
            }
        )
        .is_empty());
        assert_eq!(h.transitions.len(), 2);
    }

    #[test]
    fn a_removed_heartbeat_takes_nothing_and_events_round_trip() {
        let h = created();
        let out = Heartbeat::decide(Some(&h), Command::Remove, &ctx(), "op").unwrap();
        let h2 = evolve(Some(h), &out.events[0], at("2025-01-02T00:00:00Z"), "op").unwrap();
        assert!(Heartbeat::decide(Some(&h2), Command::Remove, &ctx(), "op").is_err());
        assert!(Heartbeat::decide(
            Some(&h2),
            Command::Rotate {
                token_sha256: token_hash("x")
            },
            &ctx(),
            "op"
        )
        .is_err());
        let e = HeartbeatEvent::HeartbeatCreated {
            heartbeat_id: Uuid::from_u128(3),
            spec: spec(),
            token_sha256: token_hash("abc"),
        };
        assert_eq!(
            HeartbeatEvent::from_stored(e.type_name(), &e.payload()).unwrap(),
            e
        );
    }
}
