//! Which integrations may read a tenant's event feed (SPEC §7). Auditors and
//! admins always may; an integration token (a SIEM, a data warehouse) only
//! once an admin has granted its subject, until the grant is revoked. Both
//! are events on the tenant's `feed-readers-<tenant>` stream, so who could
//! read the feed when is itself on the record.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::aggregate::{stored_events, Aggregate, By, Outcome};
use crate::Rejection;

/// Longer than any real token subject; more is a mistake, not a name.
pub const SUBJECT_MAX: usize = 256;

pub fn feed_readers_stream(tenant: Uuid) -> String {
    format!("feed-readers-{tenant}")
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum FeedAccessEvent {
    FeedReaderGranted { subject: String },
    FeedReaderRevoked { subject: String },
}

impl FeedAccessEvent {
    pub fn type_name(&self) -> &'static str {
        match self {
            FeedAccessEvent::FeedReaderGranted { .. } => "FeedReaderGranted",
            FeedAccessEvent::FeedReaderRevoked { .. } => "FeedReaderRevoked",
        }
    }
    pub fn payload(&self) -> serde_json::Value {
        crate::event::untagged_payload(self)
    }
    pub fn from_stored(event_type: &str, payload: &serde_json::Value) -> Option<Self> {
        crate::event::from_tagged(event_type, payload)
    }
}

/// A subject as tokens carry it: non-empty, no control characters (a path
/// segment names it), at most [`SUBJECT_MAX`] characters.
pub fn subject(raw: &str) -> Result<String, Rejection> {
    if raw.is_empty() || raw.chars().count() > SUBJECT_MAX || raw.chars().any(char::is_control) {
        return Err(Rejection::Invalid(format!(
            "an integration subject is 1 to {SUBJECT_MAX} characters without control characters"
        )));
    }
    Ok(raw.to_owned())
}

/// The integrations granted the feed, with who last changed the list and when.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct FeedReaders {
    pub readers: BTreeSet<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changed_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changed_by: Option<String>,
}

impl FeedReaders {
    pub fn may_read(&self, subject: &str) -> bool {
        self.readers.contains(subject)
    }
}

/// Granting twice, or revoking what was never granted, records nothing.
pub fn grant(state: &FeedReaders, subject: String) -> Vec<FeedAccessEvent> {
    if state.readers.contains(&subject) {
        vec![]
    } else {
        vec![FeedAccessEvent::FeedReaderGranted { subject }]
    }
}

pub fn revoke(state: &FeedReaders, subject: String) -> Vec<FeedAccessEvent> {
    if state.readers.contains(&subject) {
        vec![FeedAccessEvent::FeedReaderRevoked { subject }]
    } else {
        vec![]
    }
}

pub fn evolve(
    state: FeedReaders,
    event: &FeedAccessEvent,
    at: DateTime<Utc>,
    actor: &str,
) -> FeedReaders {
    let mut s = state;
    match event {
        FeedAccessEvent::FeedReaderGranted { subject } => {
            s.readers.insert(subject.clone());
        }
        FeedAccessEvent::FeedReaderRevoked { subject } => {
            s.readers.remove(subject);
        }
    }
    s.changed_at = Some(at);
    s.changed_by = Some(actor.to_owned());
    s
}

/// Granting or revoking one integration's reading of the feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Grant(String),
    Revoke(String),
}

impl Aggregate for FeedReaders {
    stored_events!(FeedAccessEvent, feed_readers_stream);
    type Command = Command;
    type Context = ();
    const NOUN: &'static str = "feed reader list";

    /// Every tenant has a list, empty until the first grant.
    fn initial() -> Option<Self> {
        Some(FeedReaders::default())
    }
    fn evolve(
        state: Option<Self>,
        event: &FeedAccessEvent,
        at: DateTime<Utc>,
        by: By<'_>,
    ) -> Option<Self> {
        Some(evolve(state.unwrap_or_default(), event, at, by.actor))
    }
    fn status(&self) -> &'static str {
        "current"
    }
    fn decide(
        state: Option<&Self>,
        command: Command,
        _: &(),
        _: &str,
    ) -> Result<Outcome<FeedAccessEvent>, Rejection> {
        let list = state.cloned().unwrap_or_default();
        Ok(Outcome::only(match command {
            Command::Grant(subject) => grant(&list, subject),
            Command::Revoke(subject) => revoke(&list, subject),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    fn apply(s: FeedReaders, events: Vec<FeedAccessEvent>) -> FeedReaders {
        events.iter().fold(s, |s, e| evolve(s, e, at(), "ada"))
    }

    #[test]
    fn a_grant_admits_its_subject_until_revoked() {
        let none = FeedReaders::default();
        assert!(!none.may_read("siem"));
        let granted = apply(none, grant(&FeedReaders::default(), "siem".into()));
        assert!(granted.may_read("siem"));
        assert!(!granted.may_read("other"));
        assert_eq!(granted.changed_by.as_deref(), Some("ada"));
        let revoked = apply(granted.clone(), revoke(&granted, "siem".into()));
        assert!(!revoked.may_read("siem"));
    }

    #[test]
    fn granting_twice_or_revoking_nothing_records_nothing() {
        let granted = apply(
            FeedReaders::default(),
            grant(&FeedReaders::default(), "siem".into()),
        );
        assert!(grant(&granted, "siem".into()).is_empty());
        assert!(revoke(&FeedReaders::default(), "siem".into()).is_empty());
    }

    #[test]
    fn subjects_are_checked() {
        assert!(subject("siem-1").is_ok());
        assert!(subject("").is_err());
        assert!(subject("a\nb").is_err());
        assert!(subject(&"x".repeat(SUBJECT_MAX + 1)).is_err());
        assert!(subject(&"é".repeat(SUBJECT_MAX)).is_ok());
    }

    #[test]
    fn events_round_trip_through_storage() {
        for e in [
            FeedAccessEvent::FeedReaderGranted {
                subject: "s".into(),
            },
            FeedAccessEvent::FeedReaderRevoked {
                subject: "s".into(),
            },
        ] {
            assert_eq!(
                FeedAccessEvent::from_stored(e.type_name(), &e.payload()),
                Some(e.clone())
            );
            assert!(crate::catalogue::lookup(e.type_name()).is_some());
        }
    }
}
