//! Threshold rules on pushed samples (SPEC §12, issue 18): a machine pushes
//! samples (`POST /api/v1/samples`: a metric name, labels, a value, a time),
//! and a rule says when a metric of a service is out of bounds: the samples
//! of `metric` whose labels include `matchers`, compared with `threshold`,
//! for at least `for_s` seconds. Stream: `threshold-rule-<id>`.
//!
//! Samples are not events: they are kept in a plain table for a bounded
//! time ([`RETENTION_S`]) and read by the worker. A rule's stream holds its
//! definition (`ThresholdRuleDefined`, `…Changed`, `…Removed`) and its
//! *transitions* only (`ThresholdBreached`, `ThresholdCleared`).
//!
//! # Per series
//!
//! A *series* is one distinct label set of the metric (as Prometheus has
//! it). A rule is evaluated on each series it matches, and each series that
//! breaches fires on its own: its own transition events and its own alert
//! (dedup key per rule and series), so "fan speed low on host a" and "on
//! host b" are two alerts of one incident (group key per rule).
//!
//! # When a series breaches ([`assess`])
//!
//! The evidence is the samples, not the clock: a series is *breached* when
//! its latest sample meets the condition and so have all its samples since
//! a sample at least `for_s` seconds older (the *run*), with no gap longer
//! than `stale_after_s` between two of them (a gap means the series was
//! absent, which ends a run, as Prometheus' staleness does). Until the run
//! spans `for_s` it is *pending*; a short spike fires nothing. With
//! `for_s` 0 one sample over the line is enough. A series whose latest
//! sample is older than `stale_after_s` is *stale*: it does not stay firing
//! forever because its sender stopped, it is cleared (reason `stale`). A
//! series whose latest sample no longer meets the condition is cleared
//! (reason `recovered`). The worker acts on what [`settle`] says.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::aggregate::{existing, stored_events, Aggregate, By, Outcome};
use crate::alert::{Category, Severity};
use crate::Rejection;

pub fn rule_stream(id: Uuid) -> String {
    format!("threshold-rule-{id}")
}

/// Samples one push may carry: a host's whole scrape fits, and the body
/// is at most 1 MiB anyway.
pub const BATCH_MAX: usize = 1_000;
/// A metric name, as Prometheus spells them: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub const METRIC_LEN_MAX_BYTES: usize = 200;
/// Labels of one sample, and matchers of one rule.
pub const LABELS_MAX: usize = 32;
/// A label name, as Prometheus spells them: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub const LABEL_NAME_LEN_MAX_BYTES: usize = 100;
pub const LABEL_VALUE_LEN_MAX_BYTES: usize = 512;
/// How far ahead of our clock a sample's time may be: senders' clocks drift.
pub const FUTURE_SKEW_MAX_S: i64 = 300;
/// The longest `for_s`: an hour. Longer is a report, not an alert.
pub const FOR_MAX_S: u32 = 3_600;
/// A series silent this long is stale (Prometheus' five minutes).
pub const STALE_DEFAULT_S: u32 = 300;
pub const STALE_MAX_S: u32 = 3_600;
/// How long samples are kept: what the longest rule needs (a run of
/// `FOR_MAX_S` seen from up to `STALE_MAX_S` after its last sample, with
/// gaps of up to `STALE_MAX_S`), and ten minutes more. Older samples are
/// refused at push and deleted by the worker.
pub const RETENTION_S: i64 = (FOR_MAX_S + 2 * STALE_MAX_S) as i64 + 600;
/// A rule's name and component, in characters.
pub const NAME_LEN_MAX_CHARS: usize = 200;
/// The severity of a rule's alerts when its definition names none.
pub const SEVERITY_DEFAULT: Severity = Severity::Warning;
/// Transitions a rule's record keeps for display; the stream keeps all.
pub const TRANSITIONS_SHOWN_MAX: usize = 20;

/// How a sample's value is compared with the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Comparison {
    #[serde(rename = ">")]
    Above,
    #[serde(rename = ">=")]
    AtLeast,
    #[serde(rename = "<")]
    Below,
    #[serde(rename = "<=")]
    AtMost,
}

impl Comparison {
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Comparison::Above => value > threshold,
            Comparison::AtLeast => value >= threshold,
            Comparison::Below => value < threshold,
            Comparison::AtMost => value <= threshold,
        }
    }

    pub fn symbol(self) -> &'static str {
        match self {
            Comparison::Above => ">",
            Comparison::AtLeast => ">=",
            Comparison::Below => "<",
            Comparison::AtMost => "<=",
        }
    }
}

/// A rule's definition, as given and as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RuleSpec {
    pub name: String,
    pub service_id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    pub metric: String,
    /// Labels a sample must carry, with these values, to be watched.
    pub matchers: BTreeMap<String, String>,
    pub comparison: Comparison,
    pub threshold: f64,
    pub for_s: u32,
    pub stale_after_s: u32,
    pub category: Category,
    pub severity: Severity,
}

impl RuleSpec {
    pub fn breaches(&self, value: f64) -> bool {
        self.comparison.holds(value, self.threshold)
    }
}

/// Why a firing series was cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClearReason {
    /// Its latest sample no longer meets the condition.
    Recovered,
    /// No sample of it matched the rule within `stale_after_s`: its sender
    /// stopped, or the rule was changed and no longer watches it.
    Stale,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum RuleEvent {
    ThresholdRuleDefined {
        rule_id: Uuid,
        spec: RuleSpec,
    },
    ThresholdRuleChanged {
        spec: RuleSpec,
    },
    ThresholdRuleRemoved {
        service_id: Uuid,
    },
    /// A series met the condition for `for_s`: from `since` (its run's
    /// first sample) to `sample_at`, whose value was `value`.
    ThresholdBreached {
        series: BTreeMap<String, String>,
        value: f64,
        sample_at: DateTime<Utc>,
        since: DateTime<Utc>,
    },
    ThresholdCleared {
        series: BTreeMap<String, String>,
        reason: ClearReason,
        /// The latest sample, when there is one (none when stale).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sample_at: Option<DateTime<Utc>>,
    },
}

impl RuleEvent {
    pub fn type_name(&self) -> &'static str {
        match self {
            RuleEvent::ThresholdRuleDefined { .. } => "ThresholdRuleDefined",
            RuleEvent::ThresholdRuleChanged { .. } => "ThresholdRuleChanged",
            RuleEvent::ThresholdRuleRemoved { .. } => "ThresholdRuleRemoved",
            RuleEvent::ThresholdBreached { .. } => "ThresholdBreached",
            RuleEvent::ThresholdCleared { .. } => "ThresholdCleared",
        }
    }
    pub fn payload(&self) -> serde_json::Value {
        crate::event::untagged_payload(self)
    }
    pub fn from_stored(event_type: &str, payload: &serde_json::Value) -> Option<RuleEvent> {
        crate::event::from_tagged(event_type, payload)
    }
}

/// A series the stream records as firing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FiringSeries {
    pub series: BTreeMap<String, String>,
    pub since: DateTime<Utc>,
    pub value: f64,
    pub breached_at: DateTime<Utc>,
}

/// Firing or ok, as the stream records a series or a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RuleState {
    Ok,
    Firing,
}

impl RuleState {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleState::Ok => "ok",
            RuleState::Firing => "firing",
        }
    }
}

/// A transition, as a rule's record shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = ThresholdTransition)]
pub struct Transition {
    pub to: RuleState,
    pub series: BTreeMap<String, String>,
    pub recorded_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<ClearReason>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ThresholdRule {
    pub id: Uuid,
    #[serde(flatten)]
    pub spec: RuleSpec,
    /// `firing` while any series is.
    pub state: RuleState,
    pub removed: bool,
    pub defined_by: String,
    pub defined_at: DateTime<Utc>,
    /// The series firing now, as the stream records them.
    pub firing: Vec<FiringSeries>,
    /// The latest transitions, newest last (at most `TRANSITIONS_SHOWN_MAX`).
    pub transitions: Vec<Transition>,
}

impl ThresholdRule {
    fn push_transition(&mut self, t: Transition) {
        self.transitions.push(t);
        if self.transitions.len() > TRANSITIONS_SHOWN_MAX {
            self.transitions.remove(0);
        }
        self.state = if self.firing.is_empty() {
            RuleState::Ok
        } else {
            RuleState::Firing
        };
    }
}

pub fn evolve(
    rule: Option<ThresholdRule>,
    event: &RuleEvent,
    at: DateTime<Utc>,
    by: &str,
) -> Option<ThresholdRule> {
    match event {
        RuleEvent::ThresholdRuleDefined { rule_id, spec } => Some(ThresholdRule {
            id: *rule_id,
            spec: spec.clone(),
            state: RuleState::Ok,
            removed: false,
            defined_by: by.to_owned(),
            defined_at: at,
            firing: Vec::new(),
            transitions: Vec::new(),
        }),
        RuleEvent::ThresholdRuleChanged { spec } => rule.map(|mut r| {
            r.spec = spec.clone();
            r
        }),
        RuleEvent::ThresholdRuleRemoved { .. } => rule.map(|mut r| {
            r.removed = true;
            r
        }),
        RuleEvent::ThresholdBreached {
            series,
            value,
            sample_at,
            since,
        } => rule.map(|mut r| {
            r.firing.retain(|f| &f.series != series);
            r.firing.push(FiringSeries {
                series: series.clone(),
                since: *since,
                value: *value,
                breached_at: at,
            });
            r.push_transition(Transition {
                to: RuleState::Firing,
                series: series.clone(),
                recorded_at: at,
                value: Some(*value),
                sample_at: Some(*sample_at),
                reason: None,
            });
            r
        }),
        RuleEvent::ThresholdCleared {
            series,
            reason,
            value,
            sample_at,
        } => rule.map(|mut r| {
            r.firing.retain(|f| &f.series != series);
            r.push_transition(Transition {
                to: RuleState::Ok,
                series: series.clone(),
                recorded_at: at,
                value: *value,
                sample_at: *sample_at,
                reason: Some(*reason),
            });
            r
        }),
    }
}

// ------------------------------------------------------------ evaluation

/// One sample of a series: its time and value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub at: DateTime<Utc>,
    pub value: f64,
}

/// Where a series stands against a rule, from its samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// The latest sample does not meet the condition.
    Ok,
    /// It does, but not yet for `for_s`.
    Pending,
    /// It has, for at least `for_s`: the series fires.
    Breached,
    /// No sample for `stale_after_s`.
    Stale,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Assessment {
    pub condition: Condition,
    /// The first sample of the run that meets the condition (pending or
    /// breached).
    pub since: Option<DateTime<Utc>>,
    pub last: Point,
}

/// How far back samples must be read to assess a series of `spec` at
/// `now` (see the module's doc): its latest sample is at most
/// `stale_after_s` old, and a run of `for_s` with gaps of at most
/// `stale_after_s` has a sample within `stale_after_s` before its span.
pub fn window_start(spec: &RuleSpec, now: DateTime<Utc>) -> DateTime<Utc> {
    now - Duration::seconds(i64::from(spec.for_s) + 2 * i64::from(spec.stale_after_s))
}

/// Assesses one series from its samples, oldest first; `None` without one.
pub fn assess(points: &[Point], spec: &RuleSpec, now: DateTime<Utc>) -> Option<Assessment> {
    let last = *points.last()?;
    let stale_after = Duration::seconds(i64::from(spec.stale_after_s));
    if now - last.at > stale_after {
        return Some(Assessment {
            condition: Condition::Stale,
            since: None,
            last,
        });
    }
    if !spec.breaches(last.value) {
        return Some(Assessment {
            condition: Condition::Ok,
            since: None,
            last,
        });
    }
    // Walk back over the run: samples that meet the condition, no gap
    // between two of them longer than the staleness bound.
    let mut since = last.at;
    for pair in points.windows(2).rev() {
        let (earlier, later) = (pair[0], pair[1]);
        if later.at - earlier.at > stale_after || !spec.breaches(earlier.value) {
            break;
        }
        since = earlier.at;
    }
    let held = last.at - since >= Duration::seconds(i64::from(spec.for_s));
    Some(Assessment {
        condition: if held {
            Condition::Breached
        } else {
            Condition::Pending
        },
        since: Some(since),
        last,
    })
}

/// A transition of one series, as the worker records it.
#[derive(Debug, Clone, PartialEq)]
pub enum SeriesTransition {
    Breach {
        series: BTreeMap<String, String>,
        value: f64,
        sample_at: DateTime<Utc>,
        since: DateTime<Utc>,
    },
    Clear {
        series: BTreeMap<String, String>,
        reason: ClearReason,
        last: Option<Point>,
    },
}

impl SeriesTransition {
    pub fn series(&self) -> &BTreeMap<String, String> {
        match self {
            SeriesTransition::Breach { series, .. } | SeriesTransition::Clear { series, .. } => {
                series
            }
        }
    }
}

/// What a series' assessment means for a series that was (or was not)
/// firing: a breach, a clearing, or nothing. Only `Breached` fires; a
/// firing series whose run was broken by a gap (pending again) was absent
/// meanwhile and is cleared as stale.
pub fn settle(
    series: &BTreeMap<String, String>,
    firing: bool,
    assessment: Option<&Assessment>,
) -> Option<SeriesTransition> {
    let clear = |reason, last| {
        Some(SeriesTransition::Clear {
            series: series.clone(),
            reason,
            last,
        })
    };
    match (firing, assessment) {
        (false, Some(a)) if a.condition == Condition::Breached => Some(SeriesTransition::Breach {
            series: series.clone(),
            value: a.last.value,
            sample_at: a.last.at,
            since: a.since.unwrap_or(a.last.at),
        }),
        (false, _) => None,
        (true, Some(a)) => match a.condition {
            Condition::Breached => None,
            Condition::Ok => clear(ClearReason::Recovered, Some(a.last)),
            Condition::Pending | Condition::Stale => clear(ClearReason::Stale, Some(a.last)),
        },
        (true, None) => clear(ClearReason::Stale, None),
    }
}

/// The canonical text of a series (its labels, sorted) and its digest: the
/// key a series is kept and alerted under (labels may be long; the digest
/// is 64 hex characters).
pub fn series_digest(series: &BTreeMap<String, String>) -> String {
    use sha2::{Digest, Sha256};
    let text = serde_json::to_string(series).unwrap_or_default();
    hex::encode(Sha256::digest(text.as_bytes()))
}

// ------------------------------------------------------------ input

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

fn valid_metric(m: &str) -> bool {
    let mut chars = m.chars();
    m.len() <= METRIC_LEN_MAX_BYTES
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label_name(n: &str) -> bool {
    let mut chars = n.chars();
    n.len() <= LABEL_NAME_LEN_MAX_BYTES
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Checks a label set (a sample's labels or a rule's matchers).
pub fn check_labels(field: &str, labels: &BTreeMap<String, String>) -> Result<(), String> {
    if labels.len() > LABELS_MAX {
        return Err(format!("{field}: at most {LABELS_MAX} labels"));
    }
    for (name, value) in labels {
        if !valid_label_name(name) {
            return Err(format!(
                "{field}: a label name must match [a-zA-Z_][a-zA-Z0-9_]* and be at most {LABEL_NAME_LEN_MAX_BYTES} bytes"
            ));
        }
        if value.is_empty()
            || value.len() > LABEL_VALUE_LEN_MAX_BYTES
            || value.chars().any(char::is_control)
        {
            return Err(format!(
                "{field}.{name}: a label value must be 1 to {LABEL_VALUE_LEN_MAX_BYTES} bytes, without control characters"
            ));
        }
    }
    Ok(())
}

pub fn check_metric(field: &str, metric: &str) -> Result<(), String> {
    if valid_metric(metric) {
        Ok(())
    } else {
        Err(format!(
            "{field}: a metric name must match [a-zA-Z_:][a-zA-Z0-9_:]* and be at most {METRIC_LEN_MAX_BYTES} bytes"
        ))
    }
}

/// Checks one pushed sample against the limits, at `now`.
pub fn check_sample(
    metric: &str,
    labels: &BTreeMap<String, String>,
    value: f64,
    at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), String> {
    check_metric("metric", metric)?;
    check_labels("labels", labels)?;
    if !value.is_finite() {
        return Err("value must be a finite number".into());
    }
    if at > now + Duration::seconds(FUTURE_SKEW_MAX_S) {
        return Err(format!(
            "time is more than {FUTURE_SKEW_MAX_S} s ahead of the service's clock"
        ));
    }
    if at < now - Duration::seconds(RETENTION_S) {
        return Err(format!(
            "time is more than {RETENTION_S} s old: samples are kept that long, no longer"
        ));
    }
    Ok(())
}

/// What deciding a definition needs: whether the named service exists.
#[derive(Debug, Clone, PartialEq)]
pub struct Context {
    pub service_known: bool,
}

/// Checks a definition and returns it with its text trimmed.
pub fn validate(spec: RuleSpec, context: &Context) -> Result<RuleSpec, Rejection> {
    if !context.service_known {
        return Err(invalid(format!("no service {}", spec.service_id)));
    }
    let name = clean_text("name", &spec.name, NAME_LEN_MAX_CHARS)?;
    let component = spec
        .component
        .as_deref()
        .map(|c| clean_text("component", c, NAME_LEN_MAX_CHARS))
        .transpose()?;
    check_metric("metric", &spec.metric).map_err(invalid)?;
    check_labels("matchers", &spec.matchers).map_err(invalid)?;
    if !spec.threshold.is_finite() {
        return Err(invalid("threshold must be a finite number"));
    }
    if spec.for_s > FOR_MAX_S {
        return Err(invalid(format!("for_s must be 0 to {FOR_MAX_S} seconds")));
    }
    if spec.stale_after_s == 0 || spec.stale_after_s > STALE_MAX_S {
        return Err(invalid(format!(
            "stale_after_s must be 1 to {STALE_MAX_S} seconds"
        )));
    }
    if !matches!(spec.category, Category::Hardware | Category::Traffic) {
        return Err(invalid("category must be hardware or traffic"));
    }
    Ok(RuleSpec {
        name,
        component,
        ..spec
    })
}

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Define {
        rule_id: Uuid,
        spec: RuleSpec,
    },
    Change {
        spec: RuleSpec,
    },
    Remove,
    /// The worker's: the transitions one evaluation found.
    Record {
        transitions: Vec<SeriesTransition>,
    },
}

fn removed_refusal(command: &str) -> Rejection {
    Rejection::InvalidState {
        entity: "threshold rule",
        command: command.into(),
        state: "removed".into(),
    }
}

/// The events a worker's transitions record: only those that change what
/// the stream says (a breach of a firing series, the clearing of one that
/// is not, record nothing: an earlier pass recorded them).
fn recorded(rule: &ThresholdRule, transitions: Vec<SeriesTransition>) -> Vec<RuleEvent> {
    let mut firing: BTreeSet<BTreeMap<String, String>> =
        rule.firing.iter().map(|f| f.series.clone()).collect();
    let mut events = Vec::new();
    for t in transitions {
        match t {
            SeriesTransition::Breach {
                series,
                value,
                sample_at,
                since,
            } => {
                if firing.insert(series.clone()) {
                    events.push(RuleEvent::ThresholdBreached {
                        series,
                        value,
                        sample_at,
                        since,
                    });
                }
            }
            SeriesTransition::Clear {
                series,
                reason,
                last,
            } => {
                if firing.remove(&series) {
                    events.push(RuleEvent::ThresholdCleared {
                        series,
                        reason,
                        value: last.map(|p| p.value),
                        sample_at: last.map(|p| p.at),
                    });
                }
            }
        }
    }
    events
}

impl Aggregate for ThresholdRule {
    stored_events!(RuleEvent, rule_stream);
    type Command = Command;
    type Context = Context;
    const NOUN: &'static str = "threshold rule";

    fn evolve(
        state: Option<Self>,
        event: &RuleEvent,
        at: DateTime<Utc>,
        by: By<'_>,
    ) -> Option<Self> {
        evolve(state, event, at, by.actor)
    }
    fn status(&self) -> &'static str {
        if self.removed {
            "removed"
        } else {
            self.state.as_str()
        }
    }
    fn decide(
        state: Option<&Self>,
        command: Command,
        context: &Context,
        _: &str,
    ) -> Result<Outcome<RuleEvent>, Rejection> {
        let events = match (state, command) {
            (None, Command::Define { rule_id, spec }) => vec![RuleEvent::ThresholdRuleDefined {
                rule_id,
                spec: validate(spec, context)?,
            }],
            (Some(r), Command::Define { .. }) => {
                return Err(Rejection::AlreadyExists(format!("threshold rule {}", r.id)))
            }
            (state, Command::Change { spec }) => {
                let r = existing(state, "change")?;
                if r.removed {
                    return Err(removed_refusal("change"));
                }
                let spec = validate(spec, context)?;
                if spec == r.spec {
                    vec![]
                } else {
                    vec![RuleEvent::ThresholdRuleChanged { spec }]
                }
            }
            (state, Command::Remove) => {
                let r = existing(state, "remove")?;
                if r.removed {
                    return Err(removed_refusal("remove"));
                }
                vec![RuleEvent::ThresholdRuleRemoved {
                    service_id: r.spec.service_id,
                }]
            }
            (state, Command::Record { transitions }) => {
                let r = existing(state, "record")?;
                // Removed meanwhile: the worker's alerts are resolved
                // without the stream (see `app::thresholds`).
                if r.removed {
                    vec![]
                } else {
                    recorded(r, transitions)
                }
            }
        };
        Ok(Outcome::only(events))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    fn spec() -> RuleSpec {
        RuleSpec {
            name: "hot server".into(),
            service_id: Uuid::from_u128(1),
            component: Some("rack 4".into()),
            metric: "node_temperature_celsius".into(),
            matchers: BTreeMap::from([("host".into(), "db-1".into())]),
            comparison: Comparison::Above,
            threshold: 80.0,
            for_s: 60,
            stale_after_s: 30,
            category: Category::Hardware,
            severity: Severity::Critical,
        }
    }

    fn points(values: &[(i64, f64)]) -> Vec<Point> {
        values
            .iter()
            .map(|&(s, value)| Point { at: t(s), value })
            .collect()
    }

    fn series() -> BTreeMap<String, String> {
        BTreeMap::from([("host".into(), "db-1".into())])
    }

    #[test]
    fn comparisons_hold_as_their_symbols_say() {
        assert!(Comparison::Above.holds(81.0, 80.0));
        assert!(!Comparison::Above.holds(80.0, 80.0));
        assert!(Comparison::AtLeast.holds(80.0, 80.0));
        assert!(Comparison::Below.holds(79.0, 80.0));
        assert!(!Comparison::Below.holds(80.0, 80.0));
        assert!(Comparison::AtMost.holds(80.0, 80.0));
        let c: Comparison = serde_json::from_str("\">=\"").unwrap();
        assert_eq!(c, Comparison::AtLeast);
        assert!(serde_json::from_str::<Comparison>("\"=>\"").is_err());
    }

    #[test]
    fn a_series_breaches_only_once_the_condition_held_for_the_whole_for() {
        let s = spec();
        // Over the line every 10 s from 0 to 50: not yet 60 s.
        let p = points(&[
            (0, 85.0),
            (10, 86.0),
            (20, 90.0),
            (30, 88.0),
            (40, 85.0),
            (50, 84.0),
        ]);
        let a = assess(&p, &s, t(55)).unwrap();
        assert_eq!(a.condition, Condition::Pending);
        assert_eq!(a.since, Some(t(0)));
        let mut p = p;
        p.push(Point {
            at: t(60),
            value: 83.0,
        });
        let a = assess(&p, &s, t(61)).unwrap();
        assert_eq!(a.condition, Condition::Breached);
        assert_eq!(a.since, Some(t(0)));
        assert_eq!(a.last.value, 83.0);
    }

    #[test]
    fn a_short_spike_or_a_dip_inside_the_run_fires_nothing() {
        let s = spec();
        let spike = points(&[(0, 70.0), (10, 95.0), (20, 96.0), (30, 70.0)]);
        assert_eq!(assess(&spike, &s, t(31)).unwrap().condition, Condition::Ok);
        // A dip under the line restarts the run.
        let dip = points(&[(0, 90.0), (10, 90.0), (20, 79.0), (30, 90.0), (55, 90.0)]);
        let a = assess(&dip, &s, t(56)).unwrap();
        assert_eq!(a.condition, Condition::Pending);
        assert_eq!(a.since, Some(t(30)), "the run starts after the dip");
    }

    #[test]
    fn a_gap_longer_than_the_staleness_bound_breaks_the_run() {
        let s = spec();
        // 0 and 20 over the line, then nothing for 40 s (> 30), then over.
        let p = points(&[(0, 90.0), (20, 90.0), (60, 90.0), (80, 90.0)]);
        let a = assess(&p, &s, t(81)).unwrap();
        assert_eq!(a.condition, Condition::Pending);
        assert_eq!(a.since, Some(t(60)));
    }

    #[test]
    fn a_silent_series_is_stale_and_a_firing_one_is_cleared_as_such() {
        let s = spec();
        let p = points(&[(0, 90.0), (30, 90.0), (60, 90.0)]);
        assert_eq!(
            assess(&p, &s, t(90)).unwrap().condition,
            Condition::Breached
        );
        let a = assess(&p, &s, t(91)).unwrap();
        assert_eq!(a.condition, Condition::Stale);
        match settle(&series(), true, Some(&a)) {
            Some(SeriesTransition::Clear { reason, .. }) => assert_eq!(reason, ClearReason::Stale),
            other => panic!("{other:?}"),
        }
        // No sample at all within the window: cleared as stale too.
        assert!(matches!(
            settle(&series(), true, None),
            Some(SeriesTransition::Clear {
                reason: ClearReason::Stale,
                last: None,
                ..
            })
        ));
        assert_eq!(settle(&series(), false, None), None);
        assert_eq!(settle(&series(), false, Some(&a)), None);
    }

    #[test]
    fn for_zero_fires_on_one_sample_and_recovery_clears() {
        let s = RuleSpec { for_s: 0, ..spec() };
        let a = assess(&points(&[(0, 81.0)]), &s, t(1)).unwrap();
        assert_eq!(a.condition, Condition::Breached);
        let breach = settle(&series(), false, Some(&a)).unwrap();
        assert!(matches!(breach, SeriesTransition::Breach { value, .. } if value == 81.0));
        // Already firing and still breached: nothing.
        assert_eq!(settle(&series(), true, Some(&a)), None);
        let ok = assess(&points(&[(0, 81.0), (5, 80.0)]), &s, t(6)).unwrap();
        assert_eq!(ok.condition, Condition::Ok);
        assert!(matches!(
            settle(&series(), true, Some(&ok)),
            Some(SeriesTransition::Clear {
                reason: ClearReason::Recovered,
                ..
            })
        ));
        assert_eq!(assess(&[], &s, t(0)), None);
    }

    #[test]
    fn below_thresholds_watch_a_fan_that_slows() {
        let s = RuleSpec {
            metric: "fan_rpm".into(),
            comparison: Comparison::Below,
            threshold: 1000.0,
            for_s: 20,
            ..spec()
        };
        let p = points(&[(0, 900.0), (10, 800.0), (20, 700.0)]);
        assert_eq!(
            assess(&p, &s, t(21)).unwrap().condition,
            Condition::Breached
        );
    }

    fn defined() -> ThresholdRule {
        let out = ThresholdRule::decide(
            None,
            Command::Define {
                rule_id: Uuid::from_u128(7),
                spec: spec(),
            },
            &Context {
                service_known: true,
            },
            "op",
        )
        .unwrap();
        evolve(None, &out.events[0], t(0), "op").unwrap()
    }

    fn record(r: &ThresholdRule, transitions: Vec<SeriesTransition>) -> Vec<RuleEvent> {
        ThresholdRule::decide(
            Some(r),
            Command::Record { transitions },
            &Context {
                service_known: true,
            },
            "system:threshold",
        )
        .unwrap()
        .events
    }

    #[test]
    fn only_transitions_are_recorded_per_series() {
        let r = defined();
        let a = series();
        let b = BTreeMap::from([("host".to_owned(), "db-2".to_owned())]);
        let breach = |s: &BTreeMap<String, String>| SeriesTransition::Breach {
            series: s.clone(),
            value: 90.0,
            sample_at: t(60),
            since: t(0),
        };
        // The same series twice in one evaluation records one breach.
        let events = record(&r, vec![breach(&a), breach(&b), breach(&a)]);
        assert_eq!(events.len(), 2);
        let r = events
            .iter()
            .try_fold(r, |r, e| evolve(Some(r), e, t(61), "system:threshold"))
            .unwrap();
        assert_eq!(r.state, RuleState::Firing);
        assert_eq!(r.firing.len(), 2);
        assert_eq!(ThresholdRule::status(&r), "firing");
        // A breach of a firing series records nothing; a clear does.
        assert!(record(&r, vec![breach(&a)]).is_empty());
        let clear = SeriesTransition::Clear {
            series: a.clone(),
            reason: ClearReason::Recovered,
            last: Some(Point {
                at: t(70),
                value: 70.0,
            }),
        };
        let events = record(&r, vec![clear.clone()]);
        assert!(matches!(
            &events[..],
            [RuleEvent::ThresholdCleared { value: Some(v), .. }] if *v == 70.0
        ));
        let r = evolve(Some(r), &events[0], t(71), "system:threshold").unwrap();
        assert_eq!(r.firing.len(), 1);
        assert_eq!(r.state, RuleState::Firing, "b still fires");
        assert!(record(&r, vec![clear]).is_empty());
        assert_eq!(r.transitions.len(), 3);
    }

    #[test]
    fn a_removed_rule_takes_no_change_and_records_no_transition() {
        let r = defined();
        let ctx = Context {
            service_known: true,
        };
        let out = ThresholdRule::decide(Some(&r), Command::Remove, &ctx, "op").unwrap();
        let r = evolve(Some(r), &out.events[0], t(1), "op").unwrap();
        assert!(
            ThresholdRule::decide(Some(&r), Command::Change { spec: spec() }, &ctx, "op").is_err()
        );
        assert!(ThresholdRule::decide(Some(&r), Command::Remove, &ctx, "op").is_err());
        let events = record(
            &r,
            vec![SeriesTransition::Breach {
                series: series(),
                value: 90.0,
                sample_at: t(2),
                since: t(2),
            }],
        );
        assert!(events.is_empty());
    }

    #[test]
    fn bad_definitions_and_samples_are_refused() {
        let ctx = Context {
            service_known: true,
        };
        let bad = |f: fn(&mut RuleSpec)| {
            let mut s = spec();
            f(&mut s);
            validate(s, &ctx).unwrap_err()
        };
        bad(|s| s.name = " ".into());
        bad(|s| s.component = Some("a\nb".into()));
        bad(|s| s.metric = "9lives".into());
        bad(|s| s.metric = "cpu temp".into());
        bad(|s| s.threshold = f64::NAN);
        bad(|s| s.threshold = f64::INFINITY);
        bad(|s| s.for_s = FOR_MAX_S + 1);
        bad(|s| s.stale_after_s = 0);
        bad(|s| s.category = Category::Liveness);
        bad(|s| {
            s.matchers.insert("bad-name".into(), "x".into());
        });
        bad(|s| {
            s.matchers.insert("host".into(), "a\u{7}".into());
        });
        assert!(validate(
            spec(),
            &Context {
                service_known: false
            }
        )
        .is_err());
        assert!(validate(
            RuleSpec {
                category: Category::Traffic,
                ..spec()
            },
            &ctx
        )
        .is_ok());

        let now = t(0);
        let labels = series();
        assert!(check_sample("node_temp", &labels, 1.0, now, now).is_ok());
        assert!(check_sample("node_temp", &labels, f64::NAN, now, now).is_err());
        assert!(check_sample("node_temp", &labels, f64::NEG_INFINITY, now, now).is_err());
        assert!(check_sample("node_temp", &labels, 1.0, t(FUTURE_SKEW_MAX_S + 1), now).is_err());
        assert!(check_sample("node_temp", &labels, 1.0, t(-RETENTION_S - 1), now).is_err());
        assert!(check_sample("", &labels, 1.0, now, now).is_err());
        let many: BTreeMap<String, String> = (0..=LABELS_MAX)
            .map(|i| (format!("l{i}"), "v".to_owned()))
            .collect();
        assert!(check_sample("m", &many, 1.0, now, now).is_err());
        let long = BTreeMap::from([("l".to_owned(), "v".repeat(LABEL_VALUE_LEN_MAX_BYTES + 1))]);
        assert!(check_sample("m", &long, 1.0, now, now).is_err());
        let empty = BTreeMap::from([("l".to_owned(), String::new())]);
        assert!(check_sample("m", &empty, 1.0, now, now).is_err());
    }

    #[test]
    fn the_window_read_covers_a_whole_run_and_the_digest_is_stable() {
        let s = spec();
        assert_eq!(window_start(&s, t(1000)), t(1000 - 60 - 60));
        let a = BTreeMap::from([
            ("b".to_owned(), "2".to_owned()),
            ("a".to_owned(), "1".to_owned()),
        ]);
        let b = BTreeMap::from([
            ("a".to_owned(), "1".to_owned()),
            ("b".to_owned(), "2".to_owned()),
        ]);
        assert_eq!(series_digest(&a), series_digest(&b));
        assert_eq!(series_digest(&a).len(), 64);
        assert_ne!(series_digest(&a), series_digest(&series()));
    }

    #[test]
    fn events_round_trip_through_their_stored_form() {
        let e = RuleEvent::ThresholdRuleDefined {
            rule_id: Uuid::from_u128(3),
            spec: spec(),
        };
        assert_eq!(
            RuleEvent::from_stored(e.type_name(), &e.payload()).unwrap(),
            e
        );
        let e = RuleEvent::ThresholdCleared {
            series: series(),
            reason: ClearReason::Stale,
            value: None,
            sample_at: None,
        };
        assert_eq!(
            RuleEvent::from_stored(e.type_name(), &e.payload()).unwrap(),
            e
        );
        for e in [
            "ThresholdRuleDefined",
            "ThresholdRuleChanged",
            "ThresholdRuleRemoved",
            "ThresholdBreached",
            "ThresholdCleared",
        ] {
            assert!(crate::catalogue::lookup(e).is_some(), "{e} is catalogued");
        }
    }
}
