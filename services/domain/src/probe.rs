//! Probes (SPEC §12, issue 18): liveness checks opsledger runs itself, an
//! HTTP(S) request or a TCP connect, each for a service (and optionally a
//! component of it). Stream: `probe-<id>`.
//!
//! A probe's stream holds its definition (`ProbeDefined`, `ProbeChanged`,
//! `ProbeRemoved`) and its *transitions* only (`ProbeWentDown` with the
//! failing result, `ProbeCameUp`): a success that changes nothing records
//! nothing, so a thousand probes every ten seconds do not flood the log. The
//! counting of consecutive results between transitions is worker state
//! (`store::probes`, table `probe_runs`), folded by [`observe`].
//!
//! A new probe is taken to be **up**: its first event after the definition
//! is a going down, once `failure_threshold` checks in a row failed. So a
//! probe defined on a healthy service records nothing until it fails, and
//! one defined on a service already down opens an incident after the
//! threshold, as it should.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::aggregate::{existing, stored_events, Aggregate, By, Outcome};
use crate::Rejection;

pub fn probe_stream(id: Uuid) -> String {
    format!("probe-{id}")
}

/// The shortest interval users may set: a probe every ten seconds is all a
/// liveness check needs, and shorter turns opsledger into a load generator.
/// (The server's `OPSLEDGER_PROBE_INTERVAL_MIN_S` may lower it for tests.)
pub const INTERVAL_MIN_S: u32 = 10;
/// The longest interval: a day. Rarer than that is not watching.
pub const INTERVAL_MAX_S: u32 = 86_400;
/// The longest a check may take: a minute.
pub const TIMEOUT_MAX_MS: u32 = 60_000;
/// The default timeout: ten seconds (at most the interval).
pub const TIMEOUT_DEFAULT_MS: u32 = 10_000;
pub const FAILURE_THRESHOLD_DEFAULT: u32 = 3;
pub const SUCCESS_THRESHOLD_DEFAULT: u32 = 2;
/// Consecutive results a threshold may ask for: beyond this a probe is
/// effectively never changing state.
pub const THRESHOLD_MAX: u32 = 100;
/// URLs, hosts, keywords and pointers: longer is a mistake, not a check.
pub const URL_LEN_MAX_BYTES: usize = 2048;
pub const HOST_LEN_MAX_BYTES: usize = 253;
pub const KEYWORD_LEN_MAX_BYTES: usize = 1024;
/// The most days ahead a certificate's expiry is watched: a year.
pub const TLS_DAYS_MIN_MAX: u32 = 365;
/// A probe's name and component, in characters.
pub const NAME_LEN_MAX_CHARS: usize = 200;
/// Transitions a probe's record keeps for display; the stream keeps all.
pub const TRANSITIONS_SHOWN_MAX: usize = 20;
/// How much of a failure's error text is recorded.
pub const ERROR_LEN_MAX_CHARS: usize = 500;

/// What a probe checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Check {
    /// A GET of `url` (http or https; redirects are not followed) that
    /// answers `expected_status`, and, when given, whose body holds
    /// `body_keyword` and whose JSON body has `json_value` at `json_pointer`
    /// (RFC 6901), and (https only) whose server certificate has at least
    /// `tls_days_min` days left.
    Http {
        url: String,
        #[serde(default = "default_status")]
        expected_status: u16,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body_keyword: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        json_pointer: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        json_value: Option<serde_json::Value>,
        /// An https check fails when the server's certificate expires in
        /// fewer days than this (1 to 365). Every https result reports its
        /// days left whether or not this is set.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tls_days_min: Option<u32>,
    },
    /// A TCP connection to `host:port` that opens within the timeout.
    Tcp { host: String, port: u16 },
}

fn default_status() -> u16 {
    200
}

/// A probe's definition, as given and as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProbeSpec {
    pub name: String,
    pub service_id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    pub check: Check,
    pub interval_s: u32,
    pub timeout_ms: u32,
    pub failure_threshold: u32,
    pub success_threshold: u32,
}

/// Up or down, as the stream records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    Up,
    Down,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Up => "up",
            Health::Down => "down",
        }
    }
    pub fn parse(s: &str) -> Option<Health> {
        match s {
            "up" => Some(Health::Up),
            "down" => Some(Health::Down),
            _ => None,
        }
    }
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CheckResult {
    pub ok: bool,
    pub at: DateTime<Utc>,
    pub latency_ms: u64,
    /// The HTTP status answered, for an HTTP check that got one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whole days until the server certificate expires (an https check
    /// that completed its handshake); negative once it has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_days_left: Option<i64>,
}

impl CheckResult {
    pub fn success(at: DateTime<Utc>, latency_ms: u64, status: Option<u16>) -> CheckResult {
        CheckResult {
            ok: true,
            at,
            latency_ms,
            status,
            error: None,
            tls_days_left: None,
        }
    }
    pub fn failure(
        at: DateTime<Utc>,
        latency_ms: u64,
        status: Option<u16>,
        error: &str,
    ) -> CheckResult {
        CheckResult {
            ok: false,
            at,
            latency_ms,
            status,
            error: Some(error.chars().take(ERROR_LEN_MAX_CHARS).collect()),
            tls_days_left: None,
        }
    }
    /// The result with the certificate's days left.
    pub fn with_tls_days_left(mut self, days: Option<i64>) -> CheckResult {
        self.tls_days_left = days;
        self
    }
}

/// Whole days from `now` until `not_after`, rounded down: a certificate
/// expiring in 23 hours has 0 days left, one expired an hour ago -1.
pub fn tls_days_left(not_after: DateTime<Utc>, now: DateTime<Utc>) -> i64 {
    (not_after - now).num_seconds().div_euclid(86_400)
}

/// Why an https check with `tls_days_min` fails on a certificate with
/// `days_left`, if it does.
pub fn tls_shortfall(days_left: i64, tls_days_min: Option<u32>) -> Option<String> {
    let min = tls_days_min?;
    (days_left < i64::from(min))
        .then(|| format!("the TLS certificate expires in {days_left} days, fewer than {min}"))
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum ProbeEvent {
    ProbeDefined { probe_id: Uuid, spec: ProbeSpec },
    ProbeChanged { spec: ProbeSpec },
    ProbeRemoved { service_id: Uuid },
    ProbeWentDown { result: CheckResult },
    ProbeCameUp { result: CheckResult },
}

impl ProbeEvent {
    pub fn type_name(&self) -> &'static str {
        match self {
            ProbeEvent::ProbeDefined { .. } => "ProbeDefined",
            ProbeEvent::ProbeChanged { .. } => "ProbeChanged",
            ProbeEvent::ProbeRemoved { .. } => "ProbeRemoved",
            ProbeEvent::ProbeWentDown { .. } => "ProbeWentDown",
            ProbeEvent::ProbeCameUp { .. } => "ProbeCameUp",
        }
    }
    pub fn payload(&self) -> serde_json::Value {
        crate::event::untagged_payload(self)
    }
    pub fn from_stored(event_type: &str, payload: &serde_json::Value) -> Option<ProbeEvent> {
        crate::event::from_tagged(event_type, payload)
    }
}

/// A transition, as a probe's record shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Transition {
    pub to: Health,
    pub recorded_at: DateTime<Utc>,
    pub result: CheckResult,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Probe {
    pub id: Uuid,
    #[serde(flatten)]
    pub spec: ProbeSpec,
    pub health: Health,
    pub removed: bool,
    pub defined_by: String,
    pub defined_at: DateTime<Utc>,
    /// The latest transitions, newest last (at most `TRANSITIONS_SHOWN_MAX`).
    pub transitions: Vec<Transition>,
}

pub fn evolve(
    probe: Option<Probe>,
    event: &ProbeEvent,
    at: DateTime<Utc>,
    by: &str,
) -> Option<Probe> {
    match event {
        ProbeEvent::ProbeDefined { probe_id, spec } => Some(Probe {
            id: *probe_id,
            spec: spec.clone(),
            health: Health::Up,
            removed: false,
            defined_by: by.to_owned(),
            defined_at: at,
            transitions: Vec::new(),
        }),
        ProbeEvent::ProbeChanged { spec } => probe.map(|mut p| {
            p.spec = spec.clone();
            p
        }),
        ProbeEvent::ProbeRemoved { .. } => probe.map(|mut p| {
            p.removed = true;
            p
        }),
        ProbeEvent::ProbeWentDown { result } => {
            probe.map(|p| transition(p, Health::Down, at, result))
        }
        ProbeEvent::ProbeCameUp { result } => probe.map(|p| transition(p, Health::Up, at, result)),
    }
}

fn transition(mut p: Probe, to: Health, at: DateTime<Utc>, result: &CheckResult) -> Probe {
    p.health = to;
    p.transitions.push(Transition {
        to,
        recorded_at: at,
        result: result.clone(),
    });
    if p.transitions.len() > TRANSITIONS_SHOWN_MAX {
        p.transitions.remove(0);
    }
    p
}

/// Consecutive results of one kind since the last of the other.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Streak {
    pub successes: u32,
    pub failures: u32,
}

/// Folds one check's result into the streak: the new streak, and the health
/// it now reaches when that is a change (`failure_threshold` failures in a
/// row take an up probe down, `success_threshold` successes bring a down one
/// up). Anything else changes nothing on the record.
pub fn observe(
    health: Health,
    streak: Streak,
    ok: bool,
    spec: &ProbeSpec,
) -> (Streak, Option<Health>) {
    let streak = if ok {
        Streak {
            successes: streak.successes.saturating_add(1),
            failures: 0,
        }
    } else {
        Streak {
            successes: 0,
            failures: streak.failures.saturating_add(1),
        }
    };
    let to = match health {
        Health::Up if streak.failures >= spec.failure_threshold => Some(Health::Down),
        Health::Down if streak.successes >= spec.success_threshold => Some(Health::Up),
        _ => None,
    };
    (streak, to)
}

/// What deciding a definition needs: the shortest interval allowed here,
/// and whether the named service exists.
#[derive(Debug, Clone, PartialEq)]
pub struct Context {
    pub interval_min_s: u32,
    pub service_known: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Define {
        probe_id: Uuid,
        spec: ProbeSpec,
    },
    Change {
        spec: ProbeSpec,
    },
    Remove,
    /// The worker's: the probe reached `to` on `result`.
    Record {
        to: Health,
        result: CheckResult,
    },
}

fn invalid(s: impl Into<String>) -> Rejection {
    Rejection::Invalid(s.into())
}

fn clean_text(field: &str, raw: &str, max_chars: usize) -> Result<String, Rejection> {
    let s = raw.trim();
    if s.is_empty() || s.chars().count() > max_chars || s.chars().any(char::is_control) {
        return Err(invalid(format!(
            "{field} must be 1 to {max_chars} characters, without control characters"
        )));
    }
    Ok(s.to_owned())
}

/// Whether `url` is an absolute http or https URL with a host, and nothing
/// a request line could not carry.
fn valid_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    let Some(rest) = rest else { return false };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = host.rsplit('@').next().unwrap_or("");
    url.len() <= URL_LEN_MAX_BYTES
        && !host.is_empty()
        && !host.starts_with(':')
        && !url.chars().any(|c| c.is_control() || c.is_whitespace())
}

fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= HOST_LEN_MAX_BYTES
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_' | '[' | ']'))
}

/// Checks a definition against the rules and the context, and returns it
/// with its text trimmed.
pub fn validate(spec: ProbeSpec, context: &Context) -> Result<ProbeSpec, Rejection> {
    if !context.service_known {
        return Err(invalid(format!("no service {}", spec.service_id)));
    }
    let name = clean_text("name", &spec.name, NAME_LEN_MAX_CHARS)?;
    let component = spec
        .component
        .as_deref()
        .map(|c| clean_text("component", c, NAME_LEN_MAX_CHARS))
        .transpose()?;
    let min = context.interval_min_s.max(1);
    if spec.interval_s < min || spec.interval_s > INTERVAL_MAX_S {
        return Err(invalid(format!(
            "interval_s must be {min} to {INTERVAL_MAX_S} seconds"
        )));
    }
    let timeout_max_ms = TIMEOUT_MAX_MS.min(spec.interval_s.saturating_mul(1000));
    if spec.timeout_ms == 0 || spec.timeout_ms > timeout_max_ms {
        return Err(invalid(format!(
            "timeout_ms must be 1 to {timeout_max_ms} (at most the interval and a minute)"
        )));
    }
    for (field, t) in [
        ("failure_threshold", spec.failure_threshold),
        ("success_threshold", spec.success_threshold),
    ] {
        if t == 0 || t > THRESHOLD_MAX {
            return Err(invalid(format!("{field} must be 1 to {THRESHOLD_MAX}")));
        }
    }
    let check = match spec.check {
        Check::Http {
            url,
            expected_status,
            body_keyword,
            json_pointer,
            json_value,
            tls_days_min,
        } => {
            let url = url.trim().to_owned();
            if !valid_url(&url) {
                return Err(invalid(format!(
                    "url must be an absolute http or https URL of at most {URL_LEN_MAX_BYTES} bytes"
                )));
            }
            if !(100..=599).contains(&expected_status) {
                return Err(invalid("expected_status must be 100 to 599"));
            }
            if body_keyword
                .as_ref()
                .is_some_and(|k| k.is_empty() || k.len() > KEYWORD_LEN_MAX_BYTES)
            {
                return Err(invalid(format!(
                    "body_keyword must be 1 to {KEYWORD_LEN_MAX_BYTES} bytes"
                )));
            }
            match (&json_pointer, &json_value) {
                (None, None) => {}
                (Some(p), Some(_))
                    if (p.is_empty() || p.starts_with('/')) && p.len() <= KEYWORD_LEN_MAX_BYTES => {
                }
                (Some(_), Some(_)) => {
                    return Err(invalid(
                        "json_pointer must be an RFC 6901 pointer: empty or starting with /",
                    ))
                }
                _ => {
                    return Err(invalid(
                        "json_pointer and json_value are given together or not at all",
                    ))
                }
            }
            if let Some(days) = tls_days_min {
                if !url.starts_with("https://") {
                    return Err(invalid("tls_days_min is for https URLs only"));
                }
                if !(1..=TLS_DAYS_MIN_MAX).contains(&days) {
                    return Err(invalid(format!(
                        "tls_days_min must be 1 to {TLS_DAYS_MIN_MAX}"
                    )));
                }
            }
            Check::Http {
                url,
                expected_status,
                body_keyword,
                json_pointer,
                json_value,
                tls_days_min,
            }
        }
        Check::Tcp { host, port } => {
            let host = host.trim().to_owned();
            if !valid_host(&host) {
                return Err(invalid(format!(
                    "host must be a host name or IP address of at most {HOST_LEN_MAX_BYTES} bytes"
                )));
            }
            if port == 0 {
                return Err(invalid("port must be 1 to 65535"));
            }
            Check::Tcp { host, port }
        }
    };
    Ok(ProbeSpec {
        name,
        component,
        check,
        ..spec
    })
}

fn removed_refusal(command: &str) -> Rejection {
    Rejection::InvalidState {
        entity: "probe",
        command: command.into(),
        state: "removed".into(),
    }
}

impl Aggregate for Probe {
    stored_events!(ProbeEvent, probe_stream);
    type Command = Command;
    type Context = Context;
    const NOUN: &'static str = "probe";

    fn evolve(
        state: Option<Self>,
        event: &ProbeEvent,
        at: DateTime<Utc>,
        by: By<'_>,
    ) -> Option<Self> {
        evolve(state, event, at, by.actor)
    }
    fn status(&self) -> &'static str {
        if self.removed {
            "removed"
        } else {
            self.health.as_str()
        }
    }
    fn decide(
        state: Option<&Self>,
        command: Command,
        context: &Context,
        _: &str,
    ) -> Result<Outcome<ProbeEvent>, Rejection> {
        let events = match (state, command) {
            (None, Command::Define { probe_id, spec }) => vec![ProbeEvent::ProbeDefined {
                probe_id,
                spec: validate(spec, context)?,
            }],
            (Some(p), Command::Define { .. }) => {
                return Err(Rejection::AlreadyExists(format!("probe {}", p.id)))
            }
            (state, Command::Change { spec }) => {
                let p = existing(state, "change")?;
                if p.removed {
                    return Err(removed_refusal("change"));
                }
                let spec = validate(spec, context)?;
                if spec == p.spec {
                    vec![]
                } else {
                    vec![ProbeEvent::ProbeChanged { spec }]
                }
            }
            (state, Command::Remove) => {
                let p = existing(state, "remove")?;
                if p.removed {
                    return Err(removed_refusal("remove"));
                }
                vec![ProbeEvent::ProbeRemoved {
                    service_id: p.spec.service_id,
                }]
            }
            (state, Command::Record { to, result }) => {
                let p = existing(state, "record")?;
                // Already there (recorded by an earlier pass) or removed
                // meanwhile: nothing to record.
                if p.removed || p.health == to {
                    vec![]
                } else if to == Health::Down {
                    vec![ProbeEvent::ProbeWentDown { result }]
                } else {
                    vec![ProbeEvent::ProbeCameUp { result }]
                }
            }
        };
        Ok(Outcome::only(events))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    fn ctx() -> Context {
        Context {
            interval_min_s: INTERVAL_MIN_S,
            service_known: true,
        }
    }

    fn spec() -> ProbeSpec {
        ProbeSpec {
            name: "web".into(),
            service_id: Uuid::from_u128(1),
            component: None,
            check: Check::Http {
                url: "https://example.com/health".into(),
                expected_status: 200,
                body_keyword: None,
                json_pointer: None,
                json_value: None,
                tls_days_min: None,
            },
            interval_s: 30,
            timeout_ms: 5000,
            failure_threshold: 3,
            success_threshold: 2,
        }
    }

    fn defined() -> Probe {
        let out = Probe::decide(
            None,
            Command::Define {
                probe_id: Uuid::from_u128(7),
                spec: spec(),
            },
            &ctx(),
            "op",
        )
        .unwrap();
        evolve(None, &out.events[0], t(), "op").unwrap()
    }

    #[test]
    fn a_new_probe_is_up_and_goes_down_only_after_the_failure_threshold() {
        let p = defined();
        assert_eq!(p.health, Health::Up);
        let mut streak = Streak::default();
        for n in 1..=2 {
            let (s, to) = observe(p.health, streak, false, &p.spec);
            assert_eq!(to, None, "failure {n} is below the threshold");
            streak = s;
        }
        let (_, to) = observe(p.health, streak, false, &p.spec);
        assert_eq!(to, Some(Health::Down));
    }

    #[test]
    fn a_success_between_failures_starts_the_count_again() {
        let p = defined();
        let (s, _) = observe(Health::Up, Streak::default(), false, &p.spec);
        let (s, _) = observe(Health::Up, s, false, &p.spec);
        let (s, to) = observe(Health::Up, s, true, &p.spec);
        assert_eq!(
            (s, to),
            (
                Streak {
                    successes: 1,
                    failures: 0
                },
                None
            )
        );
        let (s, _) = observe(Health::Up, s, false, &p.spec);
        let (_, to) = observe(Health::Up, s, false, &p.spec);
        assert_eq!(to, None);
    }

    #[test]
    fn a_down_probe_comes_up_after_the_success_threshold_and_successes_when_up_change_nothing() {
        let p = defined();
        let (s, to) = observe(Health::Down, Streak::default(), true, &p.spec);
        assert_eq!(to, None);
        let (s, to) = observe(Health::Down, s, true, &p.spec);
        assert_eq!(to, Some(Health::Up));
        let (_, to) = observe(Health::Up, s, true, &p.spec);
        assert_eq!(to, None);
    }

    #[test]
    fn only_transitions_are_recorded_and_the_record_keeps_them() {
        let p = defined();
        let fail = CheckResult::failure(t(), 12, Some(503), "status 503");
        let down = Probe::decide(
            Some(&p),
            Command::Record {
                to: Health::Down,
                result: fail.clone(),
            },
            &ctx(),
            "system:probe",
        )
        .unwrap()
        .events;
        assert_eq!(down, vec![ProbeEvent::ProbeWentDown { result: fail }]);
        let p = evolve(Some(p), &down[0], t(), "system:probe").unwrap();
        assert_eq!(p.health, Health::Down);
        assert_eq!(p.transitions.len(), 1);
        // Recording the same health again records nothing.
        let again = Probe::decide(
            Some(&p),
            Command::Record {
                to: Health::Down,
                result: CheckResult::failure(t(), 1, None, "refused"),
            },
            &ctx(),
            "system:probe",
        )
        .unwrap();
        assert!(again.events.is_empty());
        let up = Probe::decide(
            Some(&p),
            Command::Record {
                to: Health::Up,
                result: CheckResult::success(t(), 3, Some(200)),
            },
            &ctx(),
            "system:probe",
        )
        .unwrap()
        .events;
        assert!(matches!(up[..], [ProbeEvent::ProbeCameUp { .. }]));
    }

    #[test]
    fn bad_definitions_are_refused() {
        let bad = |f: fn(&mut ProbeSpec)| {
            let mut s = spec();
            f(&mut s);
            validate(s, &ctx()).unwrap_err()
        };
        bad(|s| s.interval_s = 9);
        bad(|s| s.interval_s = INTERVAL_MAX_S + 1);
        bad(|s| s.failure_threshold = 0);
        bad(|s| s.success_threshold = THRESHOLD_MAX + 1);
        bad(|s| s.timeout_ms = 0);
        bad(|s| s.timeout_ms = 31_000);
        bad(|s| s.name = "  ".into());
        bad(|s| s.name = "a\u{0}b".into());
        bad(|s| s.component = Some("x\ny".into()));
        for url in [
            "ftp://example.com/",
            "http://",
            "https:///path",
            "http://exa mple.com/",
            "example.com",
        ] {
            let mut s = spec();
            s.check = Check::Http {
                url: url.into(),
                expected_status: 200,
                body_keyword: None,
                json_pointer: None,
                json_value: None,
                tls_days_min: None,
            };
            assert!(validate(s, &ctx()).is_err(), "{url} is refused");
        }
        bad(|s| {
            s.check = Check::Http {
                url: "http://h/".into(),
                expected_status: 200,
                body_keyword: None,
                json_pointer: Some("status".into()),
                json_value: Some(serde_json::json!("ok")),
                tls_days_min: None,
            }
        });
        bad(|s| {
            s.check = Check::Http {
                url: "http://h/".into(),
                expected_status: 200,
                body_keyword: None,
                json_pointer: Some("/status".into()),
                json_value: None,
                tls_days_min: None,
            }
        });
        bad(|s| {
            s.check = Check::Tcp {
                host: "db.internal".into(),
                port: 0,
            }
        });
        // Certificate days: https only, 1 to a year.
        let with_days = |url: &str, days: u32| {
            let mut s = spec();
            s.check = Check::Http {
                url: url.into(),
                expected_status: 200,
                body_keyword: None,
                json_pointer: None,
                json_value: None,
                tls_days_min: Some(days),
            };
            s
        };
        assert!(validate(with_days("https://h/", 14), &ctx()).is_ok());
        assert!(validate(with_days("http://h/", 14), &ctx()).is_err());
        assert!(validate(with_days("https://h/", 0), &ctx()).is_err());
        assert!(validate(with_days("https://h/", 366), &ctx()).is_err());
        bad(|s| {
            s.check = Check::Tcp {
                host: "a b".into(),
                port: 5432,
            }
        });
        let unknown = Context {
            service_known: false,
            ..ctx()
        };
        assert!(matches!(
            validate(spec(), &unknown),
            Err(Rejection::Invalid(_))
        ));
        // A lowered minimum (tests) admits shorter intervals.
        let mut s = spec();
        s.interval_s = 1;
        s.timeout_ms = 500;
        let lowered = Context {
            interval_min_s: 1,
            ..ctx()
        };
        assert!(validate(s, &lowered).is_ok());
    }

    #[test]
    fn a_removed_probe_takes_no_change_and_records_no_transition() {
        let p = defined();
        let out = Probe::decide(Some(&p), Command::Remove, &ctx(), "op").unwrap();
        let p = evolve(Some(p), &out.events[0], t(), "op").unwrap();
        assert!(Probe::decide(Some(&p), Command::Change { spec: spec() }, &ctx(), "op").is_err());
        assert!(Probe::decide(Some(&p), Command::Remove, &ctx(), "op").is_err());
        let rec = Probe::decide(
            Some(&p),
            Command::Record {
                to: Health::Down,
                result: CheckResult::failure(t(), 1, None, "x"),
            },
            &ctx(),
            "system:probe",
        )
        .unwrap();
        assert!(rec.events.is_empty());
    }

    #[test]
    fn events_round_trip_through_their_stored_form() {
        let e = ProbeEvent::ProbeDefined {
            probe_id: Uuid::from_u128(3),
            spec: spec(),
        };
        let back = ProbeEvent::from_stored(e.type_name(), &e.payload()).unwrap();
        assert_eq!(back, e);
        let body = serde_json::json!({"kind": "tcp", "host": "h", "port": 1, "extra": 1});
        assert!(serde_json::from_value::<Check>(body).is_err());
    }

    #[test]
    fn certificate_days_round_down_and_fail_below_the_minimum() {
        let now = t();
        let in_days = |d: f64| now + chrono::Duration::seconds((d * 86_400.0) as i64);
        assert_eq!(tls_days_left(in_days(30.5), now), 30);
        assert_eq!(tls_days_left(in_days(0.9), now), 0);
        assert_eq!(tls_days_left(in_days(-0.1), now), -1);
        assert_eq!(
            tls_shortfall(13, Some(14)).as_deref(),
            Some("the TLS certificate expires in 13 days, fewer than 14")
        );
        assert_eq!(tls_shortfall(14, Some(14)), None);
        assert_eq!(tls_shortfall(1, None), None);
    }
}
