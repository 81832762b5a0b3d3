//! The envelope of an event: what a command produces (`NewEvent`) and what
//! the store hands back once it is committed (`RecordedEvent`).

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::catalogue::{self, WorkClass};

/// Who did it and why, carried beside every event (SPEC §3.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// The subject of the token, or `system:<worker>` for the service itself.
    pub actor: String,
    pub role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<Uuid>,
    /// Where the fact came from: `api`, `cli`, `alertmanager`, …
    pub source: String,
}

/// An event about to be appended.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub event_id: Uuid,
    pub kind: &'static catalogue::EventKind,
    /// The payload as JSON text: these exact bytes are hashed and stored.
    /// Made once, by the command's caller, so that appending never walks a
    /// tree of values to print it.
    pub payload: String,
    pub metadata: Metadata,
    /// When it happened in the world, as reported. Truncated to microseconds,
    /// the precision PostgreSQL keeps, so the hashed value is the stored one.
    pub occurred_at: DateTime<Utc>,
}

impl NewEvent {
    /// Builds an event of a catalogued type. Panics on an unknown type name:
    /// that is a programming error, caught by every test that emits it.
    pub fn new(
        type_name: &str,
        payload: serde_json::Value,
        metadata: Metadata,
        occurred_at: DateTime<Utc>,
    ) -> NewEvent {
        NewEvent::with_json(type_name, payload.to_string(), metadata, occurred_at)
    }

    /// Builds an event from a variant of an adjacently tagged event enum
    /// (`{type, data}`), storing its fields (`data`) as [`untagged_payload`]
    /// does, but printed straight from the variant, never through a tree of
    /// values: the way for events appended by the thousand.
    pub fn of_tagged(
        event: &impl Serialize,
        type_name: &str,
        metadata: Metadata,
        occurred_at: DateTime<Utc>,
    ) -> NewEvent {
        NewEvent::with_json(
            type_name,
            untagged_json(event, type_name),
            metadata,
            occurred_at,
        )
    }

    fn with_json(
        type_name: &str,
        payload: String,
        metadata: Metadata,
        occurred_at: DateTime<Utc>,
    ) -> NewEvent {
        let kind = catalogue::lookup(type_name)
            .unwrap_or_else(|| panic!("event type {type_name} is not in the catalogue"));
        NewEvent {
            event_id: Uuid::now_v7(),
            kind,
            payload,
            metadata,
            occurred_at: occurred_at.trunc_subsecs(6),
        }
    }

    pub fn work_class(&self) -> WorkClass {
        self.kind.work_class
    }
}

/// A committed event as read back from the store.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RecordedEvent {
    pub position: i64,
    /// The writing transaction's id: with `position`, the order readers follow.
    pub tx_id: u64,
    pub event_id: Uuid,
    pub tenant_id: Uuid,
    pub stream_id: String,
    pub stream_version: i64,
    pub event_type: String,
    pub schema_version: i32,
    pub work_class: WorkClass,
    pub payload: serde_json::Value,
    pub metadata: serde_json::Value,
    pub occurred_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
}

/// The stored payload of an adjacently tagged event enum (`{type, data}`):
/// the variant's fields, without the tag, which is the event type column.
pub(crate) fn untagged_payload(event: &impl Serialize) -> serde_json::Value {
    match serde_json::to_value(event) {
        Ok(serde_json::Value::Object(mut map)) => map.remove("data").unwrap_or_default(),
        // Serialising plain data cannot fail; an assertion, not an error.
        other => panic!("event did not serialise to a tagged object: {other:?}"),
    }
}

/// [`untagged_payload`] as JSON text, printed from the variant itself: serde
/// writes an adjacently tagged variant as `{"type":<name>,"data":<fields>}`,
/// tag first, so the fields are that text without its frame. A variant with
/// no fields has no `data`, and its payload is `null`, as a value's is.
fn untagged_json(event: &impl Serialize, type_name: &str) -> String {
    let mut text = serde_json::to_string(event).expect("plain data always serialises");
    let tag = serde_json::to_string(type_name).expect("a name serialises");
    let head = format!("{{\"type\":{tag},\"data\":");
    match text.strip_prefix(&head).and_then(|t| t.strip_suffix('}')) {
        // The frame is cut off in place: no second copy of the payload.
        Some(_) => {
            text.truncate(text.len() - 1);
            text.drain(..head.len());
            text
        }
        None if text == format!("{{\"type\":{tag}}}") => "null".to_owned(),
        // The type name is the caller's word for the variant; an assertion.
        None => panic!("event {type_name} did not serialise as a tagged {{type, data}}: {text}"),
    }
}

/// [`from_tagged`] for a payload still in its stored JSON text.
pub(crate) fn from_tagged_json<T: serde::de::DeserializeOwned>(
    event_type: &str,
    payload: &str,
) -> Option<T> {
    let tag = serde_json::to_string(event_type).ok()?;
    serde_json::from_str(&format!("{{\"type\":{tag},\"data\":{payload}}}")).ok()
}

/// The inverse of [`untagged_payload`]: `None` for another type or a payload
/// that does not fit it.
///
/// Presents `{type, data}` to the enum's deserializer as a map whose tag comes
/// first and whose content is the stored payload itself: serde then reads the
/// variant straight from the payload, neither copying it into a new tree nor
/// buffering it (which it must when the content precedes the tag, as it does
/// in a `{type, data}` object, whose keys are kept sorted).
pub(crate) fn from_tagged<T: serde::de::DeserializeOwned>(
    event_type: &str,
    payload: &serde_json::Value,
) -> Option<T> {
    use serde::de::value::MapDeserializer;
    let tag = serde_json::Value::String(event_type.to_owned());
    let fields = [("type", &tag), ("data", payload)];
    let map: MapDeserializer<'_, _, serde_json::Error> = MapDeserializer::new(fields.into_iter());
    T::deserialize(map).ok()
}
