//! Deciding a batch: which requests commit, at which stream versions, with
//! which hashes. No I/O: both write paths run it — the locked path on stream
//! versions and strand heads read under the batch's locks, the predicted path
//! on what it expects them to be (which the database then checks).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use opsledger_domain::chain::{self, lane_of, ChainedContent};
use opsledger_domain::text;
use serde_json::Value;
use uuid::Uuid;

use crate::projection::{Appended, Payload, Write};
use crate::StoreError;

use super::{
    AppendError, AppendOutcome, AppendRequest, ExpectedVersion, IdempotencyClaim, Outcome,
    StreamCommitted, PAYLOAD_LEN_MAX_BYTES,
};

/// The head of one strand of a tenant's hash chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head {
    pub hash: Vec<u8>,
    pub count: i64,
}

pub(crate) type Heads = HashMap<(Uuid, i16), Head>;

/// The JSON text of a request's events' metadata, made by the caller before
/// the request joins a batch, as the payloads' is when the events are made:
/// serialising is the costliest part of planning, and callers do it side by
/// side while the committer works through batches one by one. These exact
/// bytes are hashed and stored.
#[derive(Debug)]
pub(crate) struct EventTexts {
    /// One per event; the events of one command usually share one.
    metadata: Vec<std::sync::Arc<str>>,
}

impl EventTexts {
    pub fn of(req: &AppendRequest) -> Result<EventTexts, AppendError> {
        let mut metadata: Vec<std::sync::Arc<str>> = Vec::new();
        let mut last: Option<(&opsledger_domain::Metadata, std::sync::Arc<str>)> = None;
        for event in req.streams.iter().flat_map(|s| s.events.iter()) {
            if event.payload.len() > PAYLOAD_LEN_MAX_BYTES {
                return Err(AppendError::Invalid(format!(
                    "an event payload is at most {PAYLOAD_LEN_MAX_BYTES} bytes"
                )));
            }
            let text = match &last {
                Some((m, text)) if *m == &event.metadata => text.clone(),
                _ => {
                    let text: std::sync::Arc<str> = serde_json::to_string(&event.metadata)
                        .expect("metadata is plain data and always serialises")
                        .into();
                    last = Some((&event.metadata, text.clone()));
                    text
                }
            };
            metadata.push(text);
        }
        Ok(EventTexts { metadata })
    }
}

/// The columns of the rows to insert, one vector per column (for `unnest`).
#[derive(Default)]
pub(super) struct EventRows<'a> {
    pub event_id: Vec<Uuid>,
    pub tenant_id: Vec<Uuid>,
    pub stream_id: Vec<&'a str>,
    pub stream_version: Vec<i64>,
    pub event_type: Vec<&'static str>,
    pub schema_version: Vec<i32>,
    pub work_class: Vec<&'static str>,
    pub payload: Vec<&'a str>,
    pub metadata: Vec<&'a str>,
    pub occurred_at: Vec<DateTime<Utc>>,
    pub recorded_at: Vec<DateTime<Utc>>,
    pub chain_lane: Vec<i16>,
    pub prev_hash: Vec<Vec<u8>>,
    pub hash: Vec<Vec<u8>>,
}

/// Where planning learns each stream's version before the batch.
pub(super) enum Versions<'a> {
    /// Read under the batch's locks: a stream missing here has no events.
    Read(HashMap<(Uuid, &'a str), i64>),
    /// Taken from the first expectation of each stream in the batch. Every
    /// prediction is listed in `checks`, for the database to confirm before
    /// it writes anything.
    Predicted {
        known: HashMap<(Uuid, &'a str), i64>,
        checks: Vec<(Uuid, &'a str, i64)>,
    },
}

impl<'a> Versions<'a> {
    pub fn predicted() -> Versions<'a> {
        Versions::Predicted {
            known: HashMap::new(),
            checks: Vec::new(),
        }
    }

    /// The stream's version before this batch; `None` when it cannot be
    /// predicted (an append that accepts any version).
    fn before(&mut self, tenant: Uuid, s: &'a str, expected: ExpectedVersion) -> Option<i64> {
        match self {
            Versions::Read(read) => Some(read.get(&(tenant, s)).copied().unwrap_or(0)),
            Versions::Predicted { known, checks } => {
                if let Some(v) = known.get(&(tenant, s)) {
                    return Some(*v);
                }
                let v = match expected {
                    ExpectedVersion::Exact(v) => v,
                    ExpectedVersion::NoStream => 0,
                    ExpectedVersion::Any => return None,
                };
                known.insert((tenant, s), v);
                checks.push((tenant, s, v));
                Some(v)
            }
        }
    }
}

/// A batch cannot be planned without reading: the predicted path gives way
/// to the locked one.
#[derive(Debug)]
pub(super) struct Unpredictable;

/// What a batch writes, and what each request will be told once it commits.
pub(super) struct Plan<'a> {
    pub rows: EventRows<'a>,
    /// The heads of the strands written, as the batch leaves them.
    pub heads: Heads,
    /// Keys claimed, with the answer each keeps.
    pub new_claims: Vec<(Uuid, &'a IdempotencyClaim, Value)>,
    pub decided: Decided,
}

/// Each request's fate, but for the position its batch commits at.
pub(super) struct Decided {
    /// Decided already: invalid requests, conflicts, replays.
    outcomes: Vec<Option<Outcome>>,
    /// Requests that commit, with their streams' versions afterwards.
    committed: Vec<(usize, Vec<StreamCommitted>)>,
    recorded_at: DateTime<Utc>,
}

impl Decided {
    /// Every request's outcome, once the batch committed at `last_position`.
    pub fn finish(self, last_position: i64) -> Vec<Outcome> {
        let mut outcomes = self.outcomes;
        for (i, streams) in self.committed {
            outcomes[i] = Some(Ok(AppendOutcome::Committed {
                streams,
                last_position,
                recorded_at: self.recorded_at,
            }));
        }
        outcomes
            .into_iter()
            .map(|o| o.expect("every request was decided"))
            .collect()
    }
}

/// Previously claimed idempotency keys: `(fingerprint, response)` by key.
pub(super) type Claims = HashMap<(Uuid, String), (String, Value)>;

/// Decides every request of a batch in order against `versions` and the
/// strands' `heads` (taken, then returned moved in the plan), appending each
/// committing request's events to the chain at `recorded_at`.
pub(super) fn plan<'a>(
    requests: &[(&'a AppendRequest, &'a EventTexts)],
    versions: &mut Versions<'a>,
    mut heads: Heads,
    mut claimed: Claims,
    recorded_at: DateTime<Utc>,
) -> Result<Plan<'a>, Unpredictable> {
    let mut rows = EventRows::default();
    let mut outcomes: Vec<Option<Outcome>> = Vec::with_capacity(requests.len());
    let mut committed = Vec::new();
    let mut new_claims = Vec::new();
    // Versions as the requests planned so far leave them.
    let mut after: HashMap<(Uuid, &'a str), i64> = HashMap::new();

    'requests: for (i, (req, texts)) in requests.iter().enumerate() {
        outcomes.push(None);
        if let Some(claim) = &req.idempotency {
            if let Some((fingerprint, response)) = claimed.get(&(req.tenant_id, claim.key.clone()))
            {
                outcomes[i] = Some(Ok(AppendOutcome::Duplicate {
                    fingerprint: fingerprint.clone(),
                    response: response.clone(),
                }));
                continue;
            }
        }
        let answer = req.idempotency.as_ref().map(|c| c.answer(recorded_at));
        if answer
            .as_ref()
            .is_some_and(|a| text::nul_pointer(a).is_some())
        {
            outcomes[i] = Some(Err(AppendError::Invalid(
                "an idempotency key's answer must not hold a NUL character".into(),
            )));
            continue;
        }
        // Check every stream first: the request commits whole or not at all.
        let mut planned: HashMap<&str, i64> = HashMap::new();
        for s in &req.streams {
            let current = match planned.get(s.stream_id.as_str()) {
                Some(v) => *v,
                None => match after.get(&(req.tenant_id, s.stream_id.as_str())) {
                    Some(v) => *v,
                    None => versions
                        .before(req.tenant_id, &s.stream_id, s.expected)
                        .ok_or(Unpredictable)?,
                },
            };
            if !s.expected.admits(current) {
                outcomes[i] = Some(Err(AppendError::Conflict {
                    stream_id: s.stream_id.clone(),
                    expected: s.expected,
                    actual: current,
                }));
                continue 'requests;
            }
            planned.insert(&s.stream_id, current + s.events.len() as i64);
        }
        let mut texts = texts.metadata.iter();
        let mut streams_after: Vec<StreamCommitted> = Vec::with_capacity(req.streams.len());
        for s in &req.streams {
            let key = (req.tenant_id, s.stream_id.as_str());
            let mut version = match after.get(&key) {
                Some(v) => *v,
                None => versions
                    .before(req.tenant_id, &s.stream_id, s.expected)
                    .ok_or(Unpredictable)?,
            };
            if !s.events.is_empty() {
                let lane = lane_of(&s.stream_id);
                let head = heads.get_mut(&(req.tenant_id, lane)).ok_or(Unpredictable)?;
                for event in &s.events {
                    version += 1;
                    let metadata = texts.next().expect("one text per event");
                    let payload = event.payload.as_str();
                    let hash = chain::link_hash(
                        &head.hash,
                        &ChainedContent {
                            event_id: event.event_id,
                            tenant_id: req.tenant_id,
                            stream_id: &s.stream_id,
                            stream_version: version,
                            event_type: event.kind.name,
                            schema_version: event.kind.schema_version,
                            work_class: event.kind.work_class.as_str(),
                            payload_json: payload,
                            metadata_json: metadata,
                            occurred_at: event.occurred_at,
                            recorded_at,
                        },
                    );
                    rows.event_id.push(event.event_id);
                    rows.tenant_id.push(req.tenant_id);
                    rows.stream_id.push(&s.stream_id);
                    rows.stream_version.push(version);
                    rows.event_type.push(event.kind.name);
                    rows.schema_version.push(event.kind.schema_version);
                    rows.work_class.push(event.kind.work_class.as_str());
                    rows.payload.push(payload);
                    rows.metadata.push(metadata);
                    rows.occurred_at.push(event.occurred_at);
                    rows.recorded_at.push(recorded_at);
                    rows.chain_lane.push(lane);
                    rows.prev_hash
                        .push(std::mem::replace(&mut head.hash, hash.to_vec()));
                    rows.hash.push(hash.to_vec());
                    head.count += 1;
                }
                after.insert(key, version);
            }
            // A stream named twice in one request reports its last version.
            streams_after.retain(|c| c.stream_id != s.stream_id);
            streams_after.push(StreamCommitted {
                stream_id: s.stream_id.clone(),
                version,
            });
        }
        if let (Some(claim), Some(answer)) = (&req.idempotency, answer) {
            claimed.insert(
                (req.tenant_id, claim.key.clone()),
                (claim.fingerprint.clone(), answer.clone()),
            );
            new_claims.push((req.tenant_id, claim, answer));
        }
        committed.push((i, streams_after));
    }
    Ok(Plan {
        rows,
        heads,
        new_claims,
        decided: Decided {
            outcomes,
            committed,
            recorded_at,
        },
    })
}

impl EventRows<'_> {
    /// What the inline projections write for these events, in their order.
    pub fn inline_writes(&self) -> Result<Vec<Write>, StoreError> {
        let mut writes = Vec::new();
        for projection in crate::INLINE {
            let events: Vec<Appended<'_>> = (0..self.event_id.len())
                .filter(|&i| {
                    projection
                        .streams()
                        .iter()
                        .any(|p| self.stream_id[i].starts_with(p))
                })
                .map(|i| Appended {
                    tenant_id: self.tenant_id[i],
                    stream_id: self.stream_id[i],
                    stream_version: self.stream_version[i],
                    event_type: self.event_type[i],
                    payload: Payload::Json(self.payload[i]),
                    recorded_at: self.recorded_at[i],
                })
                .collect();
            if !events.is_empty() {
                writes.extend(projection.writes(&events)?);
            }
        }
        Ok(writes)
    }
}

/// The strands a batch writes, each once, in key order (the lock order).
pub(super) fn strands_written(requests: &[&AppendRequest]) -> Vec<(Uuid, i16)> {
    let mut strands: Vec<(Uuid, i16)> = requests
        .iter()
        .flat_map(|r| {
            r.streams
                .iter()
                .filter(|s| !s.events.is_empty())
                .map(|s| (r.tenant_id, lane_of(&s.stream_id)))
        })
        .collect();
    strands.sort_unstable();
    strands.dedup();
    strands
}

/// The guard key of a stream: 64 bits of SHA-256 over tenant and stream id.
/// Two streams sharing a key only wait for each other; never wrong, rarely slow.
fn guard_key(tenant: Uuid, stream_id: &str) -> i64 {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(tenant.as_bytes());
    h.update(stream_id.as_bytes());
    let digest = h.finalize();
    i64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// Each stream of the batch once, by key, exclusive if any request writes it.
pub(super) fn stream_guards(requests: &[&AppendRequest]) -> (Vec<i64>, Vec<bool>) {
    let mut guards: Vec<(i64, bool)> = requests
        .iter()
        .flat_map(|r| {
            r.streams
                .iter()
                .map(|s| (guard_key(r.tenant_id, &s.stream_id), !s.events.is_empty()))
        })
        .collect();
    // Exclusive (true) sorts after shared: keep the last of each key.
    guards.sort_unstable();
    guards.dedup_by(|later, earlier| {
        if later.0 == earlier.0 {
            earlier.1 |= later.1;
            true
        } else {
            false
        }
    });
    guards.into_iter().unzip()
}

/// The service's clock at microsecond precision, the precision PostgreSQL
/// keeps, so the hashed instant is the stored one.
pub(super) fn now_micros() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}
