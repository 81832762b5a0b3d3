//! Loading a record kept as one stream, running a command on it, and
//! answering with its version, for every kind that implements the domain's
//! [`Aggregate`]: `If-Match` (409 on a stale version), an invalid transition
//! as a 409 naming the current state, `Idempotency-Key` (the first answer
//! again), the `ETag`, and the append with the version decided on.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpRequest, HttpResponse};
use chrono::{DateTime, SubsecRound, Utc};
use opsledger_domain::access::Role;
use opsledger_domain::aggregate::Aggregate;
use opsledger_domain::{RecordedEvent, Rejection};
use opsledger_store::ExpectedVersion;
use serde::Serialize;
use uuid::Uuid;

use crate::auth::Caller;
use crate::common::{append_and_answer, begin_command, check_if_match, stream_events, Appending};
use crate::extract::IfMatch;
use crate::idempotency::IdempotencyKey;
use crate::problem::ApiError;
use crate::AppState;

/// A record with the version of its stream: what reads and commands answer.
#[derive(Debug, Serialize)]
pub struct Versioned<A: Serialize> {
    #[serde(flatten)]
    pub record: A,
    pub version: i64,
}

/// Folds with `occurred_at`: the instant a command was decided at, which is
/// also what its answer said.
fn fold<A: Aggregate>(events: &[RecordedEvent]) -> Option<A> {
    events.iter().fold(A::initial(), |state, e| {
        match A::parse(&e.event_type, &e.payload) {
            Some(ev) => A::evolve(
                state,
                &ev,
                e.occurred_at,
                e.metadata["actor"].as_str().unwrap_or(""),
            ),
            None => state,
        }
    })
}

/// The record as it stands (or stood at `as_of`); 404 when there is none.
pub async fn load<A: Aggregate>(
    state: &AppState,
    tenant: Uuid,
    id: Uuid,
    as_of: Option<DateTime<Utc>>,
) -> Result<Versioned<A>, ApiError> {
    let events = stream_events(state, tenant, &A::stream(id), as_of).await?;
    let record =
        fold::<A>(&events).ok_or_else(|| ApiError::NotFound(format!("no {} {id}", A::NOUN)))?;
    Ok(Versioned {
        record,
        version: events.last().map_or(0, |e| e.stream_version),
    })
}

pub fn respond<A: Serialize>(status: StatusCode, v: &Versioned<A>) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::ETAG, format!("\"{}\"", v.version)))
        .json(v)
}

/// Who asked, and what: the request as idempotency keys see it.
pub struct Asked<'a> {
    pub caller: &'a Caller,
    pub req: &'a HttpRequest,
    pub key: IdempotencyKey,
    /// The body, for the key's fingerprint.
    pub body: serde_json::Value,
}

/// Runs a command: `roles` may give it; `decide` gets the current record and
/// the caller's subject and returns the events (none: nothing to record).
pub async fn command<A, F>(
    state: &AppState,
    r: Asked<'_>,
    if_match: IfMatch,
    roles: &[Role],
    id: Uuid,
    decide: F,
) -> Result<HttpResponse, ApiError>
where
    A: Aggregate,
    F: FnOnce(&A, &str) -> Result<Vec<A::Event>, Rejection>,
{
    let what = serde_json::json!({ "if_match": if_match.0, "body": r.body });
    let (actor, fingerprint, replayed) =
        begin_command(state, r.caller, roles, &r.key, r.req, &what).await?;
    if let Some(replayed) = replayed {
        return Ok(replayed);
    }
    let current = load::<A>(state, actor.tenant_id, id, None).await?;
    let version = current.version;
    let status = current.record.status();
    check_if_match(if_match.0, version, A::NOUN, status)?;
    let decided = decide(&current.record, &actor.subject).map_err(ApiError::from)?;
    let now = Utc::now().trunc_subsecs(6);
    let after = decided
        .iter()
        .try_fold(current.record, |s, e| {
            A::evolve(Some(s), e, now, &actor.subject)
        })
        .ok_or_else(|| ApiError::Internal(format!("the {} vanished", A::NOUN).into()))?;
    let view = Versioned {
        record: after,
        version: version + decided.len() as i64,
    };
    if decided.is_empty() {
        return Ok(respond(StatusCode::OK, &view));
    }
    let events = decided
        .iter()
        .map(|e| (A::type_name(e), A::payload(e)))
        .collect();
    let appending = Appending {
        stream: A::stream(id),
        expected: ExpectedVersion::Exact(version),
        events,
        version: view.version,
        location: None,
        view: serde_json::to_value(&view).map_err(|e| ApiError::Internal(Box::new(e)))?,
        at: now,
    };
    append_and_answer(state, actor, r.req, &r.key, &fingerprint, appending).await
}

/// Starts a record: its first events on a new stream, answered 201 with its
/// `Location` and `ETag`.
pub async fn create<A: Aggregate>(
    state: &AppState,
    r: Asked<'_>,
    roles: &[Role],
    id: Uuid,
    location: String,
    first: impl FnOnce(&str) -> Result<Vec<A::Event>, ApiError>,
) -> Result<HttpResponse, ApiError> {
    let (req, key) = (r.req, &r.key);
    let (actor, fingerprint, replayed) =
        begin_command(state, r.caller, roles, key, req, &r.body).await?;
    if let Some(replayed) = replayed {
        return Ok(replayed);
    }
    let events = first(&actor.subject)?;
    let now = Utc::now().trunc_subsecs(6);
    let record = events
        .iter()
        .fold(None, |s, e| A::evolve(s, e, now, &actor.subject))
        .ok_or_else(|| ApiError::Internal(format!("creating a {} made nothing", A::NOUN).into()))?;
    let view = Versioned {
        record,
        version: events.len() as i64,
    };
    let appending = Appending {
        stream: A::stream(id),
        expected: ExpectedVersion::NoStream,
        events: events
            .iter()
            .map(|e| (A::type_name(e), A::payload(e)))
            .collect(),
        version: view.version,
        location: Some(location),
        view: serde_json::to_value(&view).map_err(|e| ApiError::Internal(Box::new(e)))?,
        at: now,
    };
    append_and_answer(state, actor, req, key, &fingerprint, appending).await
}
