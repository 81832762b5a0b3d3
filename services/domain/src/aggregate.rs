//! The one shape every record kept as a stream has (a proposal, an incident,
//! a change, …): how to fold it from its events, and `decide`, which turns a
//! command into the whole outcome — the record's own events and those it
//! adds to other streams (an alert group released, a client told). The
//! application layer loads, folds, decides and appends through this trait
//! alone; no I/O here.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::Rejection;

/// Who recorded an event: the subject and the role its metadata names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct By<'a> {
    pub actor: &'a str,
    pub role: &'a str,
}

/// The version another stream must be at for an outcome to be appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// No check: a stream only this service writes to, in order.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream must be at exactly this version (what was decided on).
    Exact(i64),
}

/// Who records the events an outcome adds elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorder {
    /// Whoever gave the command.
    Caller,
    /// The service itself (`system:notifier`, say), caused by the record's
    /// first new event.
    System(&'static str),
}

/// Events one command adds to a stream other than its record's own.
#[derive(Debug, Clone, PartialEq)]
pub struct Elsewhere {
    pub stream: String,
    pub expected: Expected,
    pub events: Vec<(&'static str, serde_json::Value)>,
    pub recorder: Recorder,
}

/// Everything a command decided: appended in one transaction, or not at all.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome<E> {
    /// The record's own new events; none: nothing to record.
    pub events: Vec<E>,
    pub elsewhere: Vec<Elsewhere>,
    /// The id the first of `events` is recorded with, when something
    /// elsewhere names it (a notice names the event that caused it).
    pub first_event_id: Option<Uuid>,
}

impl<E> Outcome<E> {
    pub fn only(events: Vec<E>) -> Outcome<E> {
        Outcome {
            events,
            elsewhere: Vec::new(),
            first_event_id: None,
        }
    }

    pub fn and(mut self, elsewhere: Elsewhere) -> Outcome<E> {
        self.elsewhere.push(elsewhere);
        self
    }
}

pub trait Aggregate: Clone + Serialize + Sized {
    type Event: Clone;
    /// What may be asked of it.
    type Command;
    /// What deciding needs from beyond the record's own stream (another
    /// stream, a read model, the clock): looked up by the application layer
    /// before `decide`, so `decide` stays pure.
    type Context;
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
    /// Folds one event, recorded at `at` by `by`.
    fn evolve(
        state: Option<Self>,
        event: &Self::Event,
        at: DateTime<Utc>,
        by: By<'_>,
    ) -> Option<Self>;
    fn type_name(event: &Self::Event) -> &'static str;
    fn payload(event: &Self::Event) -> serde_json::Value;
    /// The state a 409 or 412 names.
    fn status(&self) -> &'static str;
    /// What else a refusal says of where the record stands (an execution's
    /// next step, say), so a client can show it.
    fn standing(&self) -> Vec<(&'static str, serde_json::Value)> {
        Vec::new()
    }
    /// Decides `command`, given by `actor`, on the record as it stands
    /// (`None` before its first event: only a command that starts one
    /// applies).
    fn decide(
        state: Option<&Self>,
        command: Self::Command,
        context: &Self::Context,
        actor: &str,
    ) -> Result<Outcome<Self::Event>, Rejection>;
}

/// The part of an `Aggregate` impl every kind writes alike: its event type,
/// how an event is read from and written to its stored form (the event
/// enum's own `from_stored`, `type_name` and `payload`), and, given, the
/// function that names a record's stream.
macro_rules! stored_events {
    ($event:ty, $stream:path) => {
        fn stream(id: uuid::Uuid) -> String {
            $stream(id)
        }
        stored_events!($event);
    };
    ($event:ty) => {
        type Event = $event;
        fn parse(event_type: &str, payload: &serde_json::Value) -> Option<$event> {
            <$event>::from_stored(event_type, payload)
        }
        fn type_name(event: &$event) -> &'static str {
            event.type_name()
        }
        fn payload(event: &$event) -> serde_json::Value {
            event.payload()
        }
    };
}
pub(crate) use stored_events;

/// Folds stored events with the instant each was recorded at: the one clock
/// of every read and every command's answer.
pub fn fold<A: Aggregate>(events: &[crate::RecordedEvent]) -> Option<A> {
    events.iter().fold(A::initial(), |state, e| {
        match A::parse(&e.event_type, &e.payload) {
            Some(ev) => A::evolve(
                state,
                &ev,
                e.recorded_at,
                By {
                    actor: e.metadata["actor"].as_str().unwrap_or(""),
                    role: e.metadata["role"].as_str().unwrap_or(""),
                },
            ),
            None => state,
        }
    })
}

/// A command on a record that must exist, refused by `decide` on none.
pub fn existing<'a, A: Aggregate>(state: Option<&'a A>, what: &str) -> Result<&'a A, Rejection> {
    state.ok_or_else(|| Rejection::NotFound(format!("the {} to {what}", A::NOUN)))
}
