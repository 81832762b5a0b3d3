//! Alerts: signals from monitoring, and what became of each one (SPEC §5).
//!
//! Streams: `alert-<digest of dedup key>` holds every receipt of one dedup key,
//! across its firing cycles; `group-<digest of service and group key>` binds
//! the incident that alerts of that group attach to while it is open. Both
//! are appended with expected versions, so concurrent receipts of one key or
//! one group are decided one after the other, never merged.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Dedup and group keys longer than this are refused: real fingerprints and
/// group keys are far shorter, and keys end up in stream ids and indexes.
pub const KEY_LEN_MAX_BYTES: usize = 512;
/// Labels per alert at most, and the longest label name or value.
pub const LABELS_MAX: usize = 64;
pub const LABEL_LEN_MAX_BYTES: usize = 1024;
/// Longest summary kept; longer ones are cut (monitoring tools send novels).
pub const SUMMARY_LEN_MAX_CHARS: usize = 1024;

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    Error,
    Warning,
    Info,
}

impl Severity {
    /// Reads the words monitoring tools use for severity; unknown words are
    /// `None`, and the caller decides the default.
    pub fn parse_loose(raw: &str) -> Option<Severity> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "critical" | "crit" | "page" | "p1" | "sev1" | "fatal" | "emergency" | "disaster" => {
                Some(Severity::Critical)
            }
            "error" | "err" | "high" | "major" | "p2" | "sev2" => Some(Severity::Error),
            "warning" | "warn" | "medium" | "minor" | "average" | "p3" | "sev3" => {
                Some(Severity::Warning)
            }
            "info" | "information" | "low" | "none" | "ok" | "p4" | "p5" | "sev4" => {
                Some(Severity::Info)
            }
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

/// The monitoring category of an alert (SPEC §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    Application,
    Liveness,
    Hardware,
    Traffic,
    Security,
}

impl Category {
    pub fn parse_loose(raw: &str) -> Option<Category> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "application" | "app" => Some(Category::Application),
            "liveness" | "availability" | "uptime" | "heartbeat" => Some(Category::Liveness),
            "hardware" | "infrastructure" | "host" => Some(Category::Hardware),
            "traffic" | "network" | "load" => Some(Category::Traffic),
            "security" | "sec" => Some(Category::Security),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Category::Application => "application",
            Category::Liveness => "liveness",
            Category::Hardware => "hardware",
            Category::Traffic => "traffic",
            Category::Security => "security",
        }
    }
}

/// One alert as any integration reports it, after parsing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    /// `alertmanager`, `pagerduty`, `grafana`, or what a plain-JSON sender says.
    pub source: String,
    pub dedup_key: String,
    /// Alerts of one service and group key share an open incident.
    pub group_key: String,
    /// How the sender named the service (id, name, or a label value).
    pub service_ref: Option<String>,
    pub summary: String,
    pub severity: Severity,
    pub category: Category,
    pub labels: BTreeMap<String, String>,
    pub firing: bool,
    pub starts_at: DateTime<Utc>,
    /// When the sender says the alert stops being valid unless refreshed.
    pub ends_at: Option<DateTime<Utc>>,
}

impl Signal {
    /// Checks the limits every integration shares.
    pub fn validate(&self) -> Result<(), String> {
        if self.dedup_key.trim().is_empty() || self.dedup_key.len() > KEY_LEN_MAX_BYTES {
            return Err(format!("dedup key must be 1 to {KEY_LEN_MAX_BYTES} bytes"));
        }
        if self.group_key.len() > KEY_LEN_MAX_BYTES {
            return Err(format!(
                "group key must be at most {KEY_LEN_MAX_BYTES} bytes"
            ));
        }
        if self.labels.len() > LABELS_MAX {
            return Err(format!("at most {LABELS_MAX} labels"));
        }
        if self
            .labels
            .iter()
            .any(|(k, v)| k.len() > LABEL_LEN_MAX_BYTES || v.len() > LABEL_LEN_MAX_BYTES)
        {
            return Err(format!(
                "label names and values are at most {LABEL_LEN_MAX_BYTES} bytes"
            ));
        }
        if self.source.trim().is_empty() || self.source.len() > 100 {
            return Err("source must be 1 to 100 bytes".into());
        }
        // PostgreSQL's text refuses NUL: kept, it would fail every append
        // that carries it.
        let texts = [
            ("source", Some(self.source.as_str())),
            ("dedup key", Some(self.dedup_key.as_str())),
            ("group key", Some(self.group_key.as_str())),
            ("summary", Some(self.summary.as_str())),
            ("service", self.service_ref.as_deref()),
        ];
        for (field, text) in texts {
            if text.is_some_and(|t| t.contains('\0')) {
                return Err(format!("the {field} must not contain NUL characters"));
            }
        }
        if self
            .labels
            .iter()
            .any(|(k, v)| k.contains('\0') || v.contains('\0'))
        {
            return Err("label names and values must not contain NUL characters".into());
        }
        Ok(())
    }
}

/// Cuts a summary to the kept length, on a character boundary.
pub fn clip_summary(raw: &str) -> String {
    let s = raw.trim();
    match s.char_indices().nth(SUMMARY_LEN_MAX_CHARS) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

fn digest(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u32).to_be_bytes());
        h.update(p.as_bytes());
    }
    hex::encode(&h.finalize()[..20])
}

pub fn alert_stream(dedup_key: &str) -> String {
    format!("alert-{}", digest(&[dedup_key]))
}

pub fn group_stream(service_id: Uuid, group_key: &str) -> String {
    format!("group-{}", digest(&[&service_id.to_string(), group_key]))
}

/// What became of a received alert (SPEC §5: ingestion decisions are facts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Decision {
    OpenedIncident {
        incident_id: Uuid,
    },
    AttachedToIncident {
        incident_id: Uuid,
    },
    /// A repeat of an alert already firing: counted, nothing opened.
    Deduplicated {
        into_alert_id: Uuid,
    },
    SuppressedByWindow {
        window_id: Uuid,
    },
    /// The service depends on `parent_service_id` (directly or through
    /// other parents), whose probe `probe_id` was down: the parent's own
    /// alert is the one that opens an incident.
    SuppressedByParent {
        parent_service_id: Uuid,
        probe_id: Uuid,
    },
    HeldForUnknownService,
    /// A resolution for an alert that is not firing: kept, changes nothing.
    NothingFiring,
}

impl Decision {
    pub fn incident_id(&self) -> Option<Uuid> {
        match self {
            Decision::OpenedIncident { incident_id }
            | Decision::AttachedToIncident { incident_id } => Some(*incident_id),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResolvedBy {
    /// The source said so.
    Source,
    /// The source stopped refreshing it (silenced or inhibited upstream, or gone).
    Expired,
}

// A receipt carries its signal and a resolution does not: they differ in
// size by nature. An event is made and moved once per alert, so boxing the
// signal would cost an allocation each to save a copy of a few hundred bytes.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum AlertEvent {
    AlertReceived {
        /// The firing cycle this receipt belongs to.
        alert_id: Uuid,
        signal: Signal,
        service_id: Option<Uuid>,
        /// Receipts of this cycle so far, this one included.
        count: u64,
        decision: Decision,
    },
    AlertResolved {
        alert_id: Uuid,
        by: ResolvedBy,
        at: DateTime<Utc>,
        incident_id: Option<Uuid>,
    },
}

impl AlertEvent {
    pub fn type_name(&self) -> &'static str {
        match self {
            AlertEvent::AlertReceived { .. } => "AlertReceived",
            AlertEvent::AlertResolved { .. } => "AlertResolved",
        }
    }
    pub fn payload(&self) -> serde_json::Value {
        crate::event::untagged_payload(self)
    }
    pub fn from_stored(event_type: &str, payload: &serde_json::Value) -> Option<AlertEvent> {
        crate::event::from_tagged(event_type, payload)
    }
    /// [`AlertEvent::from_stored`] for a payload still in its JSON text.
    pub fn from_stored_json(event_type: &str, payload: &str) -> Option<AlertEvent> {
        crate::event::from_tagged_json(event_type, payload)
    }
}

/// The current firing cycle of one dedup key, if any.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertState {
    pub firing: Option<FiringAlert>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FiringAlert {
    pub alert_id: Uuid,
    pub count: u64,
    pub incident_id: Option<Uuid>,
    pub service_id: Option<Uuid>,
    pub group_key: String,
    pub last_seen: DateTime<Utc>,
    /// The cycle was last decided `suppressed_by_parent`: a repeat is
    /// decided afresh once no parent is down (see [`decide_receipt`]).
    pub held_by_parent: bool,
}

pub fn evolve_alert(
    mut state: AlertState,
    event: &AlertEvent,
    recorded_at: DateTime<Utc>,
) -> AlertState {
    match event {
        AlertEvent::AlertReceived {
            alert_id,
            signal,
            service_id,
            count,
            decision,
        } => match decision {
            Decision::NothingFiring => {}
            Decision::Deduplicated { .. } => {
                if let Some(f) = &mut state.firing {
                    f.count = *count;
                    f.last_seen = recorded_at;
                }
            }
            _ => {
                state.firing = Some(FiringAlert {
                    alert_id: *alert_id,
                    count: *count,
                    incident_id: decision.incident_id(),
                    service_id: *service_id,
                    group_key: signal.group_key.clone(),
                    last_seen: recorded_at,
                    held_by_parent: matches!(decision, Decision::SuppressedByParent { .. }),
                })
            }
        },
        AlertEvent::AlertResolved { alert_id, .. } => {
            if state
                .firing
                .as_ref()
                .is_some_and(|f| f.alert_id == *alert_id)
            {
                state.firing = None;
            }
        }
    }
    state
}

/// The incident bound to a group while it is open.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum GroupEvent {
    AlertGroupBound {
        incident_id: Uuid,
        service_id: Uuid,
        group_key: String,
    },
    AlertGroupReleased {
        incident_id: Uuid,
    },
}

impl GroupEvent {
    pub fn type_name(&self) -> &'static str {
        match self {
            GroupEvent::AlertGroupBound { .. } => "AlertGroupBound",
            GroupEvent::AlertGroupReleased { .. } => "AlertGroupReleased",
        }
    }
    pub fn payload(&self) -> serde_json::Value {
        crate::event::untagged_payload(self)
    }
    pub fn from_stored(event_type: &str, payload: &serde_json::Value) -> Option<GroupEvent> {
        crate::event::from_tagged(event_type, payload)
    }
}

/// The open incident of a group, folded from its stream.
pub fn bound_incident<'a>(events: impl IntoIterator<Item = &'a GroupEvent>) -> Option<Uuid> {
    events.into_iter().fold(None, |bound, e| match e {
        GroupEvent::AlertGroupBound { incident_id, .. } => Some(*incident_id),
        GroupEvent::AlertGroupReleased { incident_id } if bound == Some(*incident_id) => None,
        GroupEvent::AlertGroupReleased { .. } => bound,
    })
}

/// The facts of receiving one signal, given what is known. Pure: the caller
/// reads the alert's state, the group's bound incident and the service.
#[derive(Debug, Clone, PartialEq)]
pub struct Receipt {
    pub alert: AlertEvent,
    /// `Some` when a new incident is to be opened with this id.
    pub open_incident: Option<Uuid>,
}

/// An ancestor of the alert's service (`domain::dependency`) with a probe
/// down, as the caller found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DownParent {
    pub parent_service_id: Uuid,
    pub probe_id: Uuid,
}

/// What a receipt is decided on besides the alert's own stream, looked up
/// by the caller: the group's open incident, a maintenance window in force
/// for the service, an ancestor with a probe down.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Surroundings {
    pub bound_incident: Option<Uuid>,
    pub suppressing_window: Option<Uuid>,
    pub down_parent: Option<DownParent>,
}

/// Ids for what a receipt may create, made by the caller so deciding stays pure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewIds {
    pub alert_id: Uuid,
    pub incident_id: Uuid,
}

/// Decides one receipt. A firing alert of a known service, not a repeat of
/// one firing, is held by a maintenance window in force for its service
/// (`suppressed_by_window`), else by an ancestor with a probe down
/// (`suppressed_by_parent`) — the window first: planned work on the service
/// itself explains its alerts whatever its parents do — else attaches to
/// its group's open incident or opens one. Neither hold attaches to an open
/// incident either: the alert belongs to what holds it.
///
/// A repeat of a firing cycle is counted (`deduplicated`), except a repeat
/// of a cycle held by a parent once no parent is down any more: that repeat
/// decides the same cycle afresh (window, incident), so a child that stays
/// broken after its parent recovered gets an incident at its next repeat.
/// A cycle held by a window stays held until it resolves, as before.
pub fn decide_receipt(
    state: &AlertState,
    signal: Signal,
    service_id: Option<Uuid>,
    around: Surroundings,
    ids: NewIds,
    now: DateTime<Utc>,
) -> Receipt {
    let new_id = ids.alert_id;
    if !signal.firing {
        let alert = match &state.firing {
            Some(f) => AlertEvent::AlertResolved {
                alert_id: f.alert_id,
                by: ResolvedBy::Source,
                at: signal.ends_at.filter(|e| *e <= now).unwrap_or(now),
                incident_id: f.incident_id,
            },
            None => AlertEvent::AlertReceived {
                alert_id: new_id,
                signal,
                service_id,
                count: 0,
                decision: Decision::NothingFiring,
            },
        };
        return Receipt {
            alert,
            open_incident: None,
        };
    }
    if let Some(f) = &state.firing {
        let parent_recovered = f.held_by_parent
            && around.down_parent.is_none()
            && service_id.is_some()
            && service_id == f.service_id;
        if parent_recovered {
            let (decision, open_incident) = fresh_decision(around, ids);
            return Receipt {
                alert: AlertEvent::AlertReceived {
                    alert_id: f.alert_id,
                    signal,
                    service_id,
                    count: f.count + 1,
                    decision,
                },
                open_incident,
            };
        }
        return Receipt {
            alert: AlertEvent::AlertReceived {
                alert_id: f.alert_id,
                signal,
                service_id: f.service_id,
                count: f.count + 1,
                decision: Decision::Deduplicated {
                    into_alert_id: f.alert_id,
                },
            },
            open_incident: None,
        };
    }
    let (decision, open_incident) = match service_id {
        None => (Decision::HeldForUnknownService, None),
        Some(_) => fresh_decision(around, ids),
    };
    Receipt {
        alert: AlertEvent::AlertReceived {
            alert_id: new_id,
            signal,
            service_id,
            count: 1,
            decision,
        },
        open_incident,
    }
}

/// What a firing alert of a known service becomes, given its surroundings,
/// and the incident it opens, if any.
fn fresh_decision(around: Surroundings, ids: NewIds) -> (Decision, Option<Uuid>) {
    match around {
        Surroundings {
            suppressing_window: Some(window_id),
            ..
        } => (Decision::SuppressedByWindow { window_id }, None),
        Surroundings {
            down_parent: Some(p),
            ..
        } => (
            Decision::SuppressedByParent {
                parent_service_id: p.parent_service_id,
                probe_id: p.probe_id,
            },
            None,
        ),
        Surroundings {
            bound_incident: Some(incident_id),
            ..
        } => (Decision::AttachedToIncident { incident_id }, None),
        Surroundings { .. } => (
            Decision::OpenedIncident {
                incident_id: ids.incident_id,
            },
            Some(ids.incident_id),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signal(firing: bool) -> Signal {
        Signal {
            source: "alertmanager".into(),
            dedup_key: "fp-1".into(),
            group_key: "{}:{alertname=\"HighLatency\"}".into(),
            service_ref: Some("orders".into()),
            summary: "p99 above 2s".into(),
            severity: Severity::Critical,
            category: Category::Application,
            labels: BTreeMap::new(),
            firing,
            starts_at: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            ends_at: None,
        }
    }

    fn decide_receipt(
        state: &AlertState,
        signal: Signal,
        service_id: Option<Uuid>,
        bound_incident: Option<Uuid>,
        suppressing_window: Option<Uuid>,
        new_id: Uuid,
    ) -> Receipt {
        super::decide_receipt(
            state,
            signal,
            service_id,
            Surroundings {
                bound_incident,
                suppressing_window,
                down_parent: None,
            },
            NewIds {
                alert_id: new_id,
                incident_id: new_id,
            },
            Utc::now(),
        )
    }

    fn apply(state: AlertState, receipt: &Receipt) -> AlertState {
        evolve_alert(state, &receipt.alert, Utc::now())
    }

    #[test]
    fn a_first_firing_alert_for_a_known_service_opens_an_incident() {
        let service = Uuid::from_u128(1);
        let r = decide_receipt(
            &AlertState::default(),
            signal(true),
            Some(service),
            None,
            None,
            Uuid::from_u128(9),
        );
        assert_eq!(r.open_incident, Some(Uuid::from_u128(9)));
    }

    #[test]
    fn a_repeat_is_deduplicated_and_counted() {
        let service = Uuid::from_u128(1);
        let first = decide_receipt(
            &AlertState::default(),
            signal(true),
            Some(service),
            None,
            None,
            Uuid::from_u128(9),
        );
        let state = apply(AlertState::default(), &first);
        let again = decide_receipt(
            &state,
            signal(true),
            Some(service),
            None,
            None,
            Uuid::from_u128(10),
        );
        assert_eq!(again.open_incident, None);
        let AlertEvent::AlertReceived {
            count, decision, ..
        } = &again.alert
        else {
            panic!()
        };
        assert_eq!(
            (*count, decision),
            (
                2,
                &Decision::Deduplicated {
                    into_alert_id: Uuid::from_u128(9)
                }
            )
        );
    }

    #[test]
    fn an_open_group_incident_is_attached_to_and_unknown_services_are_held() {
        let service = Uuid::from_u128(1);
        let bound = Some(Uuid::from_u128(5));
        let r = decide_receipt(
            &AlertState::default(),
            signal(true),
            Some(service),
            bound,
            None,
            Uuid::from_u128(9),
        );
        assert_eq!(
            r.alert,
            AlertEvent::AlertReceived {
                alert_id: Uuid::from_u128(9),
                signal: signal(true),
                service_id: Some(service),
                count: 1,
                decision: Decision::AttachedToIncident {
                    incident_id: Uuid::from_u128(5)
                },
            }
        );
        let held = decide_receipt(
            &AlertState::default(),
            signal(true),
            None,
            None,
            None,
            Uuid::from_u128(9),
        );
        assert!(matches!(
            held.alert,
            AlertEvent::AlertReceived {
                decision: Decision::HeldForUnknownService,
                ..
            }
        ));
        let window = decide_receipt(
            &AlertState::default(),
            signal(true),
            Some(service),
            None,
            Some(Uuid::from_u128(3)),
            Uuid::from_u128(9),
        );
        assert_eq!(window.open_incident, None);
    }

    #[test]
    fn a_resolution_ends_the_firing_cycle_and_the_next_firing_starts_a_new_one() {
        let service = Uuid::from_u128(1);
        let first = decide_receipt(
            &AlertState::default(),
            signal(true),
            Some(service),
            None,
            None,
            Uuid::from_u128(9),
        );
        let state = apply(AlertState::default(), &first);
        let resolved = decide_receipt(
            &state,
            signal(false),
            Some(service),
            None,
            None,
            Uuid::from_u128(10),
        );
        assert!(
            matches!(resolved.alert, AlertEvent::AlertResolved { alert_id, by: ResolvedBy::Source, .. } if alert_id == Uuid::from_u128(9))
        );
        let state = apply(state, &resolved);
        assert_eq!(state.firing, None);
        let stray = decide_receipt(
            &state,
            signal(false),
            Some(service),
            None,
            None,
            Uuid::from_u128(11),
        );
        assert!(matches!(
            stray.alert,
            AlertEvent::AlertReceived {
                decision: Decision::NothingFiring,
                ..
            }
        ));
    }

    fn with_parent(
        state: &AlertState,
        service: Uuid,
        around: Surroundings,
        new_id: Uuid,
    ) -> Receipt {
        super::decide_receipt(
            state,
            signal(true),
            Some(service),
            around,
            NewIds {
                alert_id: new_id,
                incident_id: new_id,
            },
            Utc::now(),
        )
    }

    const DOWN: DownParent = DownParent {
        parent_service_id: Uuid::from_u128(40),
        probe_id: Uuid::from_u128(41),
    };

    fn decision(r: &Receipt) -> &Decision {
        match &r.alert {
            AlertEvent::AlertReceived { decision, .. } => decision,
            AlertEvent::AlertResolved { .. } => panic!("a resolution"),
        }
    }

    #[test]
    fn a_down_parent_holds_a_new_alert_naming_itself_and_opens_or_attaches_to_nothing() {
        let service = Uuid::from_u128(1);
        for bound in [None, Some(Uuid::from_u128(5))] {
            let around = Surroundings {
                bound_incident: bound,
                suppressing_window: None,
                down_parent: Some(DOWN),
            };
            let r = with_parent(&AlertState::default(), service, around, Uuid::from_u128(9));
            assert_eq!(r.open_incident, None);
            assert_eq!(
                decision(&r),
                &Decision::SuppressedByParent {
                    parent_service_id: DOWN.parent_service_id,
                    probe_id: DOWN.probe_id,
                }
            );
            assert_eq!(decision(&r).incident_id(), None);
        }
        // A window in force for the service itself comes first.
        let around = Surroundings {
            bound_incident: None,
            suppressing_window: Some(Uuid::from_u128(3)),
            down_parent: Some(DOWN),
        };
        let r = with_parent(&AlertState::default(), service, around, Uuid::from_u128(9));
        assert_eq!(
            decision(&r),
            &Decision::SuppressedByWindow {
                window_id: Uuid::from_u128(3)
            }
        );
        // An unknown service is held as such, whatever is down.
        let r = super::decide_receipt(
            &AlertState::default(),
            signal(true),
            None,
            Surroundings {
                down_parent: Some(DOWN),
                ..Surroundings::default()
            },
            NewIds {
                alert_id: Uuid::from_u128(9),
                incident_id: Uuid::from_u128(9),
            },
            Utc::now(),
        );
        assert_eq!(decision(&r), &Decision::HeldForUnknownService);
    }

    #[test]
    fn a_cycle_held_by_a_parent_is_decided_afresh_at_its_first_repeat_after_the_parent_recovered() {
        let service = Uuid::from_u128(1);
        let held_by = Surroundings {
            down_parent: Some(DOWN),
            ..Surroundings::default()
        };
        let first = with_parent(&AlertState::default(), service, held_by, Uuid::from_u128(9));
        let state = apply(AlertState::default(), &first);
        assert!(state.firing.as_ref().unwrap().held_by_parent);
        // Still down: a repeat is counted, and still held.
        let repeat = with_parent(&state, service, held_by, Uuid::from_u128(10));
        assert!(matches!(decision(&repeat), Decision::Deduplicated { .. }));
        let state = apply(state, &repeat);
        assert!(state.firing.as_ref().unwrap().held_by_parent);
        // Recovered: the same cycle opens an incident, counted on.
        let afresh = with_parent(
            &state,
            service,
            Surroundings::default(),
            Uuid::from_u128(11),
        );
        assert_eq!(afresh.open_incident, Some(Uuid::from_u128(11)));
        let AlertEvent::AlertReceived {
            alert_id, count, ..
        } = &afresh.alert
        else {
            panic!()
        };
        assert_eq!((*alert_id, *count), (Uuid::from_u128(9), 3));
        let state = apply(state, &afresh);
        let firing = state.firing.as_ref().unwrap();
        assert_eq!(firing.incident_id, Some(Uuid::from_u128(11)));
        assert!(!firing.held_by_parent);
        // From then on, repeats are repeats again.
        let next = with_parent(&state, service, held_by, Uuid::from_u128(12));
        assert!(matches!(decision(&next), Decision::Deduplicated { .. }));
        // A cycle held by a window is not decided afresh when it ends.
        let windowed = Surroundings {
            suppressing_window: Some(Uuid::from_u128(3)),
            ..Surroundings::default()
        };
        let w = with_parent(
            &AlertState::default(),
            service,
            windowed,
            Uuid::from_u128(20),
        );
        let state = apply(AlertState::default(), &w);
        let after = with_parent(
            &state,
            service,
            Surroundings::default(),
            Uuid::from_u128(21),
        );
        assert!(matches!(decision(&after), Decision::Deduplicated { .. }));
    }

    #[test]
    fn groups_bind_and_release_incidents() {
        let a = Uuid::from_u128(1);
        let b = Uuid::from_u128(2);
        let s = Uuid::from_u128(3);
        let bound = GroupEvent::AlertGroupBound {
            incident_id: a,
            service_id: s,
            group_key: "g".into(),
        };
        assert_eq!(bound_incident(std::slice::from_ref(&bound)), Some(a));
        assert_eq!(
            bound_incident(&[
                bound.clone(),
                GroupEvent::AlertGroupReleased { incident_id: a }
            ]),
            None
        );
        assert_eq!(
            bound_incident(&[bound, GroupEvent::AlertGroupReleased { incident_id: b }]),
            Some(a)
        );
    }

    #[test]
    fn loose_words_map_to_severities_and_categories() {
        assert_eq!(Severity::parse_loose("CRITICAL"), Some(Severity::Critical));
        assert_eq!(Severity::parse_loose("high"), Some(Severity::Error));
        assert_eq!(Severity::parse_loose("bogus"), None);
        assert_eq!(Category::parse_loose("Security"), Some(Category::Security));
        assert_eq!(
            clip_summary(&"x".repeat(2000)).chars().count(),
            SUMMARY_LEN_MAX_CHARS + 1
        );
    }

    /// Ingestion prints receipts straight to text (`NewEvent::of_tagged`);
    /// the payload must be the one the value path stores, and read back
    /// both ways to the same event.
    #[test]
    fn receipts_printed_as_text_match_their_values_and_read_back() {
        let mut labelled = signal(true);
        labelled
            .labels
            .insert("team".into(), "注文 \"core\"".into());
        labelled.ends_at = Some(DateTime::from_timestamp(1_700_000_600, 0).unwrap());
        let received = decide_receipt(
            &AlertState::default(),
            labelled,
            Some(Uuid::from_u128(1)),
            None,
            None,
            Uuid::from_u128(9),
        )
        .alert;
        let resolved = AlertEvent::AlertResolved {
            alert_id: Uuid::from_u128(9),
            by: ResolvedBy::Expired,
            at: Utc::now(),
            incident_id: None,
        };
        let meta = crate::Metadata {
            actor: "alertmanager".into(),
            role: "integration".into(),
            request_id: None,
            correlation_id: None,
            causation_id: None,
            source: "alertmanager".into(),
        };
        for event in [received, resolved] {
            let new =
                crate::NewEvent::of_tagged(&event, event.type_name(), meta.clone(), Utc::now());
            let value: serde_json::Value = serde_json::from_str(&new.payload).unwrap();
            assert_eq!(value, event.payload());
            assert_eq!(new.kind.name, event.type_name());
            assert_eq!(
                AlertEvent::from_stored_json(event.type_name(), &new.payload),
                Some(event.clone())
            );
            assert_eq!(
                AlertEvent::from_stored_json("AlertNoSuchType", &new.payload),
                None
            );
        }
    }
}
