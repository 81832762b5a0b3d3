//! The one path of every command on a record kept as a stream: load and fold
//! (with the stored `recorded_at`), refuse a stale `If-Match`, look up what
//! deciding needs, decide, append the whole outcome with the version decided
//! on (a concurrent command is a conflict, never merged), and answer with
//! the record as folded at the commit's instant — the answer a later read
//! gives, kept with an idempotency key in the same transaction.

use std::sync::Arc;

use chrono::{DateTime, SubsecRound, Utc};
use opsledger_domain::aggregate::{fold, Aggregate, By, Elsewhere, Expected, Outcome, Recorder};
use opsledger_domain::{Metadata, NewEvent, RecordedEvent, Rejection};
use opsledger_store::{
    AppendError, AppendOutcome, AppendRequest, ClaimedAnswer, ExpectedVersion, IdempotencyClaim,
    StoreError, StreamAppend,
};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::Ledger;

/// Why a command did not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("no {noun} {id}")]
    NotFound { noun: &'static str, id: Uuid },
    /// `If-Match` named another version than the record's current one.
    #[error("the {noun} is at version {version}, not {expected}: reload it and retry")]
    Stale {
        noun: &'static str,
        expected: i64,
        version: i64,
        state: &'static str,
    },
    /// The domain refused: `state` is where the record stands, `standing`
    /// what else it says of that (`Aggregate::standing`).
    #[error("{rejection}")]
    Rejected {
        rejection: Rejection,
        state: Option<&'static str>,
        version: i64,
        standing: Vec<(&'static str, Value)>,
    },
    /// What was asked cannot be (a malformed signal, say).
    #[error("{0}")]
    Invalid(String),
    /// The streams kept moving under the command: retrying may succeed.
    #[error("{0}")]
    Contended(String),
    #[error(transparent)]
    Append(#[from] AppendError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
}

impl RunError {
    /// Whether it is a conflict (what HTTP answers 409): the record is not
    /// in a state that allows the command, or another command got there
    /// first. Deciding again on the record as it is now may succeed.
    pub fn is_conflict(&self) -> bool {
        match self {
            RunError::Rejected { rejection, .. } => matches!(
                rejection,
                Rejection::AlreadyExists(_)
                    | Rejection::InvalidTransition { .. }
                    | Rejection::InvalidState { .. }
                    | Rejection::Refused { .. }
                    | Rejection::Frozen { .. }
            ),
            RunError::Append(AppendError::Conflict { .. }) | RunError::Contended(_) => true,
            _ => false,
        }
    }
}

/// An idempotency key and the digest of the request it came with.
#[derive(Debug, Clone)]
pub struct Key {
    pub key: String,
    pub fingerprint: String,
}

/// Who asks, in which tenant, on which version, with which key.
#[derive(Debug, Clone)]
pub struct Asked {
    pub tenant: Uuid,
    pub meta: Metadata,
    /// The version the caller decided on (`If-Match`); `None`: the current.
    pub if_match: Option<i64>,
    pub key: Option<Key>,
}

/// The record a command is for.
#[derive(Debug, Clone)]
pub enum Target {
    /// One that exists (or, for a kind with an `initial` record, always does).
    Existing(Uuid),
    /// A new one, found afterwards at `location`.
    New { id: Uuid, location: String },
    /// A new one a worker starts, with no address of its own.
    Started(Uuid),
    /// One that exists, to which the command adds a revision found at
    /// `location(id, version)` (a runbook's next version).
    Revision {
        id: Uuid,
        location: fn(Uuid, i64) -> String,
    },
}

impl Target {
    /// The record's id.
    pub fn id(&self) -> Uuid {
        match self {
            Target::Existing(id)
            | Target::Started(id)
            | Target::New { id, .. }
            | Target::Revision { id, .. } => *id,
        }
    }
}

/// What was looked up for deciding, and how the record is shown once
/// decided (`view(record, version)`, the answer's body).
pub struct Prepared<C, V> {
    pub context: C,
    pub view: V,
}

/// A command's answer.
#[derive(Debug)]
pub enum Ran {
    Done {
        /// Set for a new record.
        location: Option<String>,
        version: i64,
        body: Value,
    },
    /// The key was used before: nothing was appended; this is what was kept
    /// (see `store::ClaimedAnswer`), to be checked against the fingerprint.
    Replayed {
        fingerprint: String,
        response: Value,
    },
}

/// The record and its stream's version, as stored (or stood at `as_of`).
pub async fn load<A: Aggregate>(
    ledger: Ledger<'_>,
    tenant: Uuid,
    id: Uuid,
    as_of: Option<DateTime<Utc>>,
) -> Result<(Option<A>, i64, Vec<RecordedEvent>), StoreError> {
    let client = ledger.pool.get().await.map_err(StoreError::from)?;
    let events = opsledger_store::read::read_stream(&client, tenant, &A::stream(id), as_of).await?;
    let version = events.last().map_or(0, |e| e.stream_version);
    Ok((fold::<A>(&events), version, events))
}

/// What a command is, and what it needs besides the record: `admit` says
/// whether the caller may give it to the record as it stands (a role that
/// depends on the record's kind: checked before `If-Match`, so a refusal
/// tells nothing of versions); `prepare` looks up the context once
/// `If-Match` passed.
pub struct Plan<A: Aggregate, Admit, Prepare> {
    pub command: A::Command,
    pub admit: Admit,
    pub prepare: Prepare,
}

/// Runs `command` on `target` with nothing to admit: see [`run_plan`].
pub async fn run<A, V, P, E>(
    ledger: Ledger<'_>,
    asked: Asked,
    target: Target,
    command: A::Command,
    prepare: P,
) -> Result<Ran, E>
where
    A: Aggregate + Send + Sync + 'static,
    A::Event: Send + Sync + 'static,
    V: Fn(&A, i64) -> Value + Send + Sync + 'static,
    P: AsyncFnOnce(Option<&A>) -> Result<Prepared<A::Context, V>, E>,
    E: From<RunError>,
{
    let admit = |_: Option<&A>| Ok(());
    run_plan(
        ledger,
        asked,
        target,
        Plan {
            command,
            admit,
            prepare,
        },
    )
    .await
}

/// Runs a command on `target`: see the module's doc.
pub async fn run_plan<A, V, D, P, E>(
    ledger: Ledger<'_>,
    asked: Asked,
    target: Target,
    plan: Plan<A, D, P>,
) -> Result<Ran, E>
where
    A: Aggregate + Send + Sync + 'static,
    A::Event: Send + Sync + 'static,
    V: Fn(&A, i64) -> Value + Send + Sync + 'static,
    D: FnOnce(Option<&A>) -> Result<(), E>,
    P: AsyncFnOnce(Option<&A>) -> Result<Prepared<A::Context, V>, E>,
    E: From<RunError>,
{
    let Plan {
        command,
        admit,
        prepare,
    } = plan;
    let id = target.id();
    let (current, version) = match &target {
        Target::Existing(_) | Target::Revision { .. } => {
            let (current, version, _) = load::<A>(ledger, asked.tenant, id, None)
                .await
                .map_err(RunError::from)?;
            let Some(current) = current else {
                return Err(RunError::NotFound { noun: A::NOUN, id }.into());
            };
            (Some(current), version)
        }
        Target::New { .. } | Target::Started(_) => (None, 0),
    };
    admit(current.as_ref())?;
    let state = current.as_ref().map_or("new", |c| c.status());
    if let Some(expected) = asked.if_match.filter(|e| *e != version) {
        return Err(RunError::Stale {
            noun: A::NOUN,
            expected,
            version,
            state,
        }
        .into());
    }
    let prepared = prepare(current.as_ref()).await?;
    let outcome = A::decide(
        current.as_ref(),
        command,
        &prepared.context,
        &asked.meta.actor,
    )
    .map_err(|rejection| RunError::Rejected {
        rejection,
        state: current.as_ref().map(|c| c.status()),
        version,
        standing: current.as_ref().map(|c| c.standing()).unwrap_or_default(),
    })?;
    let version_after = version + outcome.events.len() as i64;
    let location = match &target {
        Target::New { location, .. } => Some(location.clone()),
        Target::Revision { location, .. } => Some(location(id, version_after)),
        Target::Existing(_) | Target::Started(_) => None,
    };
    let (actor, role) = (asked.meta.actor.clone(), asked.meta.role.clone());
    let decided = outcome.events.clone();
    let view = prepared.view;
    let answer = Arc::new(move |at: DateTime<Utc>| {
        let by = By {
            actor: &actor,
            role: &role,
        };
        let after = decided
            .iter()
            .try_fold(current.clone(), |s, e| A::evolve(s, e, at, by).map(Some))??;
        Some(view(&after, version_after))
    });
    let now = Utc::now().trunc_subsecs(6);
    // Checked before the append: a failure after the commit would hide a write.
    let body =
        answer(now).ok_or_else(|| RunError::Internal(format!("the {} vanished", A::NOUN)))?;
    if outcome.events.is_empty() {
        return Ok(Ran::Done {
            location,
            version,
            body,
        });
    }
    let expected = match target {
        Target::New { .. } | Target::Started(_) => ExpectedVersion::NoStream,
        Target::Existing(_) | Target::Revision { .. } => ExpectedVersion::Exact(version),
    };
    let streams = streams::<A>(A::stream(id), expected, outcome, &asked.meta, now);
    let idempotency = asked.key.as_ref().map(|k| {
        let answer = answer.clone();
        // The stored answer: status (201 for a new record), Location, ETag and body.
        let status = if location.is_some() { 201 } else { 200 };
        let location = location.clone();
        IdempotencyClaim {
            key: k.key.clone(),
            fingerprint: k.fingerprint.clone(),
            response: ClaimedAnswer::AtCommit(Arc::new(move |at| {
                json!({ "status": status, "location": location, "version": version_after,
                        "body": answer(at) })
            })),
        }
    });
    let outcome = ledger
        .committer
        .append(AppendRequest {
            tenant_id: asked.tenant,
            streams,
            idempotency,
        })
        .await
        .map_err(RunError::from)?;
    match outcome {
        AppendOutcome::Committed { recorded_at, .. } => Ok(Ran::Done {
            location,
            version: version_after,
            body: answer(recorded_at)
                .ok_or_else(|| RunError::Internal(format!("the {} vanished", A::NOUN)))?,
        }),
        AppendOutcome::Duplicate {
            fingerprint,
            response,
        } => Ok(Ran::Replayed {
            fingerprint,
            response,
        }),
    }
}

/// The outcome as the store appends it: the record's events by the caller,
/// then each other stream's by its recorder.
fn streams<A: Aggregate>(
    stream: String,
    expected: ExpectedVersion,
    outcome: Outcome<A::Event>,
    meta: &Metadata,
    now: DateTime<Utc>,
) -> Vec<StreamAppend> {
    let mut own: Vec<NewEvent> = outcome
        .events
        .iter()
        .map(|e| NewEvent::new(A::type_name(e), A::payload(e), meta.clone(), now))
        .collect();
    if let (Some(id), Some(first)) = (outcome.first_event_id, own.first_mut()) {
        first.event_id = id;
    }
    let cause = own.first().map(|e| e.event_id);
    let mut streams = vec![StreamAppend {
        stream_id: stream,
        expected,
        events: own,
    }];
    streams.extend(outcome.elsewhere.into_iter().map(
        |Elsewhere {
             stream,
             expected,
             events,
             recorder,
         }| {
            let by = match recorder {
                Recorder::Caller => meta.clone(),
                Recorder::System(actor) => Metadata {
                    actor: actor.into(),
                    role: "system".into(),
                    request_id: meta.request_id.clone(),
                    correlation_id: None,
                    causation_id: cause,
                    source: meta.source.clone(),
                },
            };
            StreamAppend {
                stream_id: stream,
                expected: expected_version(expected),
                events: events
                    .into_iter()
                    .map(|(t, p)| NewEvent::new(t, p, by.clone(), now))
                    .collect(),
            }
        },
    ));
    streams
}

/// A domain outcome's expected version, as the store checks it.
pub fn expected_version(expected: Expected) -> ExpectedVersion {
    match expected {
        Expected::Any => ExpectedVersion::Any,
        Expected::NoStream => ExpectedVersion::NoStream,
        Expected::Exact(v) => ExpectedVersion::Exact(v),
    }
}

/// The usual answer's body: the record, flattened, and its `version`.
pub fn versioned<A: serde::Serialize>(record: &A, version: i64) -> Value {
    let mut body = serde_json::to_value(record).unwrap_or_else(|_| json!({}));
    if let Value::Object(map) = &mut body {
        map.insert("version".into(), version.into());
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use opsledger_domain::window::{Window, WindowEvent};

    fn meta() -> Metadata {
        Metadata {
            actor: "maint".into(),
            role: "maintainer".into(),
            request_id: Some("req-1".into()),
            correlation_id: None,
            causation_id: None,
            source: "api".into(),
        }
    }

    #[test]
    fn an_outcome_is_appended_as_the_records_events_then_each_other_streams_by_its_recorder() {
        let cause = Uuid::from_u128(42);
        let notice = ("WindowStarted", json!({ "service_ids": [] }));
        let outcome = Outcome {
            events: vec![WindowEvent::WindowStarted {
                service_ids: vec![],
            }],
            elsewhere: vec![
                Elsewhere {
                    stream: "notification-1".into(),
                    expected: Expected::NoStream,
                    events: vec![notice.clone()],
                    recorder: Recorder::System("system:notifier"),
                },
                Elsewhere {
                    stream: "group-1".into(),
                    expected: Expected::Exact(3),
                    events: vec![],
                    recorder: Recorder::Caller,
                },
            ],
            first_event_id: Some(cause),
        };
        let now = Utc::now().trunc_subsecs(6);
        let streams = streams::<Window>(
            "window-1".into(),
            ExpectedVersion::Exact(2),
            outcome,
            &meta(),
            now,
        );
        assert_eq!(streams.len(), 3);
        assert_eq!(streams[0].stream_id, "window-1");
        assert_eq!(streams[0].expected, ExpectedVersion::Exact(2));
        // The record's first event carries the id its notices name.
        assert_eq!(streams[0].events[0].event_id, cause);
        assert_eq!(streams[0].events[0].metadata, meta());
        // A notice is the notifier's, caused by that event, in the same request.
        let told = &streams[1].events[0].metadata;
        assert_eq!(told.actor, "system:notifier");
        assert_eq!(told.role, "system");
        assert_eq!(told.causation_id, Some(cause));
        assert_eq!(told.request_id.as_deref(), Some("req-1"));
        assert_eq!(streams[1].expected, ExpectedVersion::NoStream);
        // A stream only asserted: its version, and no event.
        assert_eq!(streams[2].expected, ExpectedVersion::Exact(3));
        assert!(streams[2].events.is_empty());
    }

    #[test]
    fn the_usual_answer_is_the_record_with_its_version() {
        #[derive(serde::Serialize)]
        struct Record {
            id: u8,
        }
        assert_eq!(
            versioned(&Record { id: 7 }, 4),
            json!({ "id": 7, "version": 4 })
        );
    }
}
