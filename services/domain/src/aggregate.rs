//! What the HTTP layer needs to know of a record kept as one stream (a
//! proposal, say) to load it, run a command on it with `If-Match`, and answer
//! with its version: one implementation per kind, no I/O.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

pub trait Aggregate: Clone + Serialize + Sized {
    type Event;
    /// How problems name it: "no proposal 0190…".
    const NOUN: &'static str;

    /// The record before its first event: `None` for records that begin
    /// with one (a 404 until then), an empty one for lists every tenant has.
    fn initial() -> Option<Self> {
        None
    }
    fn stream(id: Uuid) -> String;
    /// The event, if `event_type` is one of this kind's.
    fn parse(event_type: &str, payload: &serde_json::Value) -> Option<Self::Event>;
    /// Folds one event, recorded at `at` by `actor` (the subject in its metadata).
    fn evolve(
        state: Option<Self>,
        event: &Self::Event,
        at: DateTime<Utc>,
        actor: &str,
    ) -> Option<Self>;
    fn type_name(event: &Self::Event) -> &'static str;
    fn payload(event: &Self::Event) -> serde_json::Value;
    /// The state a 409 names.
    fn status(&self) -> &'static str;
}
