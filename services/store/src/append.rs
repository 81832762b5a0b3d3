//! Appending events: expected stream versions, several streams and events in
//! one transaction, idempotency keys, the per-tenant hash chain, and group
//! commit.
//!
//! Group commit: requests go to a few committer tasks over a channel. Each
//! takes whatever is waiting (up to [`BATCH_REQUESTS_MAX`]) and writes it in one
//! transaction, so concurrent requests share a WAL flush. Nothing waits to
//! fill a batch: a lone request is committed at once. Conflicts are decided
//! per request inside the batch, so one request's conflict never fails
//! another's; an unexpected database error fails the batch, which is then
//! retried one request per transaction so a poisoned request cannot take its
//! neighbours down with it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use opsledger_domain::chain::{self, lane_of, ChainedContent, GENESIS};
use opsledger_domain::{Metadata, NewEvent};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

use crate::{Pool, StoreError};

/// Requests committed together at most: enough to absorb 64+ concurrent
/// clients in one flush, small enough to keep one transaction short.
pub const BATCH_REQUESTS_MAX: usize = 256;
/// Events in one request at most: a request is one command, never a bulk load.
pub const EVENTS_PER_REQUEST_MAX: usize = 1_000;
/// Stream ids are `<kind>-<uuid>` or short reservation keys.
pub const STREAM_ID_LEN_MAX: usize = 200;
/// Payload of one event at most, as JSON text: bodies are capped at 1 MiB by
/// the HTTP layer, and no fact needs more than that.
pub const PAYLOAD_LEN_MAX_BYTES: usize = 1 << 20;
/// Committer tasks: two let the strands of a tenant commit in parallel on a
/// 2-core machine; more only add lock waits.
pub const COMMITTERS_DEFAULT: usize = 2;
/// Appends of at least this many events skip group commit: they fill a
/// transaction on their own.
pub const DIRECT_EVENTS_MIN: usize = 32;
/// Requests waiting for a committer before callers are pushed back on.
const QUEUE_LEN: usize = 8_192;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "version")]
pub enum ExpectedVersion {
    /// No check: for streams only this service writes to in order.
    Any,
    /// The stream must not exist yet (its version is 0).
    NoStream,
    /// The stream must be at exactly this version.
    Exact(i64),
}

impl ExpectedVersion {
    fn admits(self, current: i64) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => current == 0,
            ExpectedVersion::Exact(v) => current == v,
        }
    }
}

/// One stream's part of an append. With no events it only asserts the
/// stream's version: the append commits only if that stream has not moved,
/// and a shared lock on the stream keeps writers of it waiting until the
/// commit, while other appends asserting the same stream proceed.
#[derive(Debug, Clone)]
pub struct StreamAppend {
    pub stream_id: String,
    pub expected: ExpectedVersion,
    pub events: Vec<NewEvent>,
}

/// An idempotency key and the response to hand back to any retry of it.
#[derive(Debug, Clone)]
pub struct IdempotencyClaim {
    pub key: String,
    /// A digest of the request, so a key reused for another request is caught.
    pub fingerprint: String,
    pub response: Value,
}

/// One command's writes: all of them commit, or none.
#[derive(Debug, Clone)]
pub struct AppendRequest {
    pub tenant_id: Uuid,
    pub streams: Vec<StreamAppend>,
    pub idempotency: Option<IdempotencyClaim>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StreamCommitted {
    pub stream_id: String,
    pub version: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AppendOutcome {
    Committed {
        streams: Vec<StreamCommitted>,
        last_position: i64,
    },
    /// The idempotency key was used before: nothing was appended.
    Duplicate {
        fingerprint: String,
        response: Value,
    },
}

impl AppendOutcome {
    pub fn version_of(&self, stream_id: &str) -> Option<i64> {
        match self {
            AppendOutcome::Committed { streams, .. } => streams
                .iter()
                .find(|s| s.stream_id == stream_id)
                .map(|s| s.version),
            AppendOutcome::Duplicate { .. } => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error("stream {stream_id} is at version {actual}, not the expected {expected:?}")]
    Conflict {
        stream_id: String,
        expected: ExpectedVersion,
        actual: i64,
    },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<tokio_postgres::Error> for AppendError {
    fn from(e: tokio_postgres::Error) -> Self {
        AppendError::Store(StoreError::from(e))
    }
}

fn validate(req: &AppendRequest) -> Result<(), AppendError> {
    let events: usize = req.streams.iter().map(|s| s.events.len()).sum();
    if events == 0 {
        return Err(AppendError::Invalid(
            "an append needs at least one event".into(),
        ));
    }
    if events > EVENTS_PER_REQUEST_MAX {
        return Err(AppendError::Invalid(format!(
            "at most {EVENTS_PER_REQUEST_MAX} events in one append"
        )));
    }
    for s in &req.streams {
        if s.stream_id.is_empty() || s.stream_id.len() > STREAM_ID_LEN_MAX {
            return Err(AppendError::Invalid(format!(
                "stream ids are 1 to {STREAM_ID_LEN_MAX} bytes"
            )));
        }
    }
    Ok(())
}

// ------------------------------------------------------------ the batch

/// The columns of the rows to insert, one vector per column (for `unnest`).
#[derive(Default)]
struct EventRows<'a> {
    event_id: Vec<Uuid>,
    tenant_id: Vec<Uuid>,
    stream_id: Vec<&'a str>,
    stream_version: Vec<i64>,
    event_type: Vec<&'static str>,
    schema_version: Vec<i32>,
    work_class: Vec<&'static str>,
    payload: Vec<String>,
    metadata: Vec<String>,
    occurred_at: Vec<DateTime<Utc>>,
    recorded_at: Vec<DateTime<Utc>>,
    chain_lane: Vec<i16>,
    prev_hash: Vec<Vec<u8>>,
    hash: Vec<Vec<u8>>,
}

struct Head {
    hash: Vec<u8>,
    count: i64,
}

type Outcome = Result<AppendOutcome, AppendError>;
type Claims = HashMap<(Uuid, String), (String, Value)>;

/// Who opens and closes the transaction. When the batch owns it, BEGIN and
/// COMMIT travel in the same pipelines as the statements, so a whole batch
/// costs two round trips and one WAL flush.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TxOwner {
    Batch,
    Caller,
}

const LOCK_HEADS: &str =
    "SELECT h.tenant_id, h.chain_lane, h.last_hash, h.event_count, clock_timestamp() \
     FROM tenant_chain_heads h JOIN unnest($1::uuid[], $2::int2[]) AS u(t, l) \
       ON h.tenant_id = u.t AND h.chain_lane = u.l \
     ORDER BY h.tenant_id, h.chain_lane FOR UPDATE OF h";
// Stream guards: every append holds an exclusive transaction lock on each
// stream it writes and a shared one on each stream it only asserts, taken in
// key order. Assertions of one stream (an alert storm attaching to one group)
// then commit side by side, and a writer of the stream waits for them.
const GUARD_STREAMS: &str =
    "SELECT count(CASE WHEN x THEN pg_advisory_xact_lock(k)::text ELSE pg_advisory_xact_lock_shared(k)::text END) \
     FROM unnest($1::int8[], $2::bool[]) WITH ORDINALITY AS u(k, x, n)";
const CREATE_HEADS: &str = "INSERT INTO tenant_chain_heads (tenant_id, chain_lane, last_hash, event_count) \
     SELECT t, l, $3, 0 FROM unnest($1::uuid[], $2::int2[]) AS u(t, l) ORDER BY t, l ON CONFLICT DO NOTHING";
const STREAM_VERSIONS: &str =
    "SELECT u.t, u.s, coalesce((SELECT max(e.stream_version) FROM events e \
       WHERE e.tenant_id = u.t AND e.stream_id = u.s), 0) \
     FROM unnest($1::uuid[], $2::text[]) AS u(t, s)";
const CLAIMED_KEYS: &str =
    "SELECT k.tenant_id, k.key, k.fingerprint, k.response::text FROM idempotency_keys k \
     JOIN unnest($1::uuid[], $2::text[]) AS u(t, key) ON k.tenant_id = u.t AND k.key = u.key";
// One statement for the whole batch; ORDER BY keeps positions in chain order.
// Only the batch's last position comes back: rows cost a transfer each.
const INSERT_EVENTS: &str =
    "WITH inserted AS (INSERT INTO events (event_id, tenant_id, stream_id, stream_version, event_type, \
       schema_version, work_class, payload, metadata, occurred_at, recorded_at, chain_lane, prev_hash, hash) \
     SELECT e, t, s, v, ty, sv, wc, p::json, m::json, oa, ra, cl, ph, h \
     FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::int8[], $5::text[], $6::int4[], \
       $7::text[], $8::text[], $9::text[], $10::timestamptz[], $11::timestamptz[], \
       $12::int2[], $13::bytea[], $14::bytea[]) WITH ORDINALITY \
       AS u(e, t, s, v, ty, sv, wc, p, m, oa, ra, cl, ph, h, n) \
     ORDER BY n \
     RETURNING position) \
     SELECT max(position) FROM inserted";
const UPDATE_HEADS: &str = "UPDATE tenant_chain_heads h SET last_hash = u.h, event_count = u.c \
     FROM unnest($1::uuid[], $2::int2[], $3::bytea[], $4::int8[]) AS u(t, l, h, c) \
     WHERE h.tenant_id = u.t AND h.chain_lane = u.l";
const INSERT_CLAIMS: &str = "INSERT INTO idempotency_keys (tenant_id, key, fingerprint, response) \
     SELECT t, k, f, r::json FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[]) AS u(t, k, f, r)";

/// Writes the requests inside the caller's open transaction, deciding each
/// one's fate; the caller commits. Returns one outcome per request, in order.
/// An `Err` means the transaction must be abandoned.
pub async fn write_batch<C: GenericClient>(
    client: &C,
    requests: &[&AppendRequest],
) -> Result<Vec<Outcome>, StoreError> {
    write(client, requests, TxOwner::Caller).await
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
fn stream_guards(requests: &[&AppendRequest]) -> (Vec<i64>, Vec<bool>) {
    let mut guards: Vec<(i64, bool)> = requests
        .iter()
        .flat_map(|r| {
            r.streams
                .iter()
                .map(|s| (guard_key(r.tenant_id, &s.stream_id), !s.events.is_empty()))
        })
        .collect();
    // Exclusive (true) sorts after shared: keep the last of each key.
    guards.sort();
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

async fn write<C: GenericClient>(
    client: &C,
    requests: &[&AppendRequest],
    owner: TxOwner,
) -> Result<Vec<Outcome>, StoreError> {
    let mut outcomes: Vec<Option<Outcome>> = requests
        .iter()
        .map(|r| validate(r).err().map(Err))
        .collect();

    // Strands of the streams written; asserted streams are guarded instead.
    let mut strands: Vec<(Uuid, i16)> = requests
        .iter()
        .flat_map(|r| {
            r.streams
                .iter()
                .filter(|s| !s.events.is_empty())
                .map(|s| (r.tenant_id, lane_of(&s.stream_id)))
        })
        .collect();
    strands.sort();
    strands.dedup();
    let (strand_tenants, strand_lanes): (Vec<Uuid>, Vec<i16>) = strands.iter().copied().unzip();
    let mut seen = HashSet::new();
    let (mut stream_tenants, mut stream_ids) = (Vec::new(), Vec::new());
    let (mut key_tenants, mut keys) = (Vec::new(), Vec::new());
    for r in requests {
        for s in &r.streams {
            if seen.insert((r.tenant_id, s.stream_id.as_str())) {
                stream_tenants.push(r.tenant_id);
                stream_ids.push(s.stream_id.as_str());
            }
        }
        if let Some(claim) = &r.idempotency {
            key_tenants.push(r.tenant_id);
            keys.push(claim.key.as_str());
        }
    }

    let (guard_keys, guard_exclusive) = stream_guards(requests);

    // Statements are prepared once per connection, then cached.
    let lock = client.prepare_cached(LOCK_HEADS).await?;
    let guard = client.prepare_cached(GUARD_STREAMS).await?;
    let versions = client.prepare_cached(STREAM_VERSIONS).await?;
    let claims = client.prepare_cached(CLAIMED_KEYS).await?;

    // Round trip 1: begin, lock the chain heads of the strands written, then
    // guard the streams (each in a global order, strands before streams, so
    // batches never deadlock), then — once the locks are held, as the server
    // runs a pipeline in order — read stream versions and claimed keys.
    let read_state = || async {
        tokio::try_join!(
            async {
                client
                    .query(&versions, &[&stream_tenants, &stream_ids])
                    .await
            },
            async {
                if keys.is_empty() {
                    Ok(Vec::new())
                } else {
                    client.query(&claims, &[&key_tenants, &keys]).await
                }
            }
        )
    };
    let (_, mut head_rows, _, (mut version_rows, mut claim_rows)) = tokio::try_join!(
        async {
            match owner {
                TxOwner::Batch => client.batch_execute("BEGIN").await,
                TxOwner::Caller => Ok(()),
            }
        },
        async { client.query(&lock, &[&strand_tenants, &strand_lanes]).await },
        async { client.query(&guard, &[&guard_keys, &guard_exclusive]).await },
        read_state(),
    )?;
    if head_rows.len() < strands.len() {
        // A strand's first append: its head must be created. Creating it under
        // the locks already held, then locking again, would take locks out of
        // order and deadlock with concurrent batches; so a batch that owns
        // its transaction lets go of everything, creates the heads on their
        // own, and starts over.
        let create = client.prepare_cached(CREATE_HEADS).await?;
        let create_heads = || async {
            client
                .execute(
                    &create,
                    &[&strand_tenants, &strand_lanes, &GENESIS.as_slice()],
                )
                .await
        };
        if owner == TxOwner::Batch {
            client.batch_execute("ROLLBACK").await?;
            create_heads().await?;
            return Box::pin(write(client, requests, owner)).await;
        }
        // A caller's transaction is the caller's to keep: create in it.
        create_heads().await?;
        head_rows = client
            .query(&lock, &[&strand_tenants, &strand_lanes])
            .await?;
        (version_rows, claim_rows) = read_state().await?;
    }

    let mut heads: HashMap<(Uuid, i16), Head> = HashMap::new();
    let mut recorded_at: Option<DateTime<Utc>> = None;
    for row in &head_rows {
        heads.insert(
            (row.get(0), row.get(1)),
            Head {
                hash: row.get(2),
                count: row.get(3),
            },
        );
        let at: DateTime<Utc> = row.get(4);
        recorded_at = Some(recorded_at.map_or(at, |r| r.max(at)));
    }
    let recorded_at =
        recorded_at.ok_or_else(|| StoreError::Corrupt("no chain head locked".into()))?;
    let mut versions: HashMap<(Uuid, String), i64> = version_rows
        .iter()
        .map(|r| ((r.get(0), r.get(1)), r.get(2)))
        .collect();
    let mut claimed: Claims = HashMap::new();
    for r in &claim_rows {
        let response: String = r.get(3);
        let response = serde_json::from_str(&response)
            .map_err(|e| StoreError::Corrupt(format!("idempotent response: {e}")))?;
        claimed.insert((r.get(0), r.get(1)), (r.get(2), response));
    }

    let mut rows = EventRows::default();
    let mut new_claims: Vec<(Uuid, &IdempotencyClaim)> = Vec::new();
    // For each request that commits: its streams' versions.
    let mut committed: Vec<(usize, Vec<StreamCommitted>)> = Vec::new();

    'requests: for (i, req) in requests.iter().enumerate() {
        if outcomes[i].is_some() {
            continue;
        }
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
        // Check every stream first: the request commits whole or not at all.
        let mut planned: HashMap<&str, i64> = HashMap::new();
        for s in &req.streams {
            let current = planned
                .get(s.stream_id.as_str())
                .copied()
                .unwrap_or_else(|| {
                    versions
                        .get(&(req.tenant_id, s.stream_id.clone()))
                        .copied()
                        .unwrap_or(0)
                });
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
        // Serialised once: these exact bytes are hashed and stored.
        let payloads: Vec<String> = req
            .streams
            .iter()
            .flat_map(|s| s.events.iter())
            .map(|e| e.payload.to_string())
            .collect();
        if payloads.iter().any(|p| p.len() > PAYLOAD_LEN_MAX_BYTES) {
            outcomes[i] = Some(Err(AppendError::Invalid(format!(
                "an event payload is at most {PAYLOAD_LEN_MAX_BYTES} bytes"
            ))));
            continue;
        }
        let mut payloads = payloads.into_iter();
        let mut last_metadata: Option<(&Metadata, String)> = None;
        let mut streams_after: Vec<StreamCommitted> = Vec::new();
        for s in &req.streams {
            let key = (req.tenant_id, s.stream_id.clone());
            let mut version = versions.get(&key).copied().unwrap_or(0);
            if s.events.is_empty() {
                // Only asserted: no strand of its own to move.
                streams_after.retain(|c| c.stream_id != s.stream_id);
                streams_after.push(StreamCommitted {
                    stream_id: s.stream_id.clone(),
                    version,
                });
                continue;
            }
            let lane = lane_of(&s.stream_id);
            let head = heads
                .get_mut(&(req.tenant_id, lane))
                .expect("every written strand's head was locked");
            for event in &s.events {
                version += 1;
                let payload = payloads.next().expect("one payload per event");
                // The events of one command usually share their metadata:
                // serialise it once for them.
                let metadata = match &last_metadata {
                    Some((m, text)) if *m == &event.metadata => text.clone(),
                    _ => {
                        let text = serde_json::to_string(&event.metadata)
                            .expect("metadata is plain data and always serialises");
                        last_metadata = Some((&event.metadata, text.clone()));
                        text
                    }
                };
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
                        payload_json: &payload,
                        metadata_json: &metadata,
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
            versions.insert(key, version);
            streams_after.retain(|c| c.stream_id != s.stream_id);
            streams_after.push(StreamCommitted {
                stream_id: s.stream_id.clone(),
                version,
            });
        }
        if let Some(claim) = &req.idempotency {
            claimed.insert(
                (req.tenant_id, claim.key.clone()),
                (claim.fingerprint.clone(), claim.response.clone()),
            );
            new_claims.push((req.tenant_id, claim));
        }
        committed.push((i, streams_after));
    }

    // Round trip 2: insert, move the chain heads, keep the keys, commit.
    let insert = client.prepare_cached(INSERT_EVENTS).await?;
    let update = client.prepare_cached(UPDATE_HEADS).await?;
    let insert_claims = client.prepare_cached(INSERT_CLAIMS).await?;
    let mut head_tenants = Vec::new();
    let mut head_lanes = Vec::new();
    let mut head_hashes = Vec::new();
    let mut head_counts = Vec::new();
    for ((tenant, lane), head) in &heads {
        head_tenants.push(*tenant);
        head_lanes.push(*lane);
        head_hashes.push(head.hash.clone());
        head_counts.push(head.count);
    }
    let claim_tenants: Vec<Uuid> = new_claims.iter().map(|(t, _)| *t).collect();
    let claim_keys: Vec<&str> = new_claims.iter().map(|(_, c)| c.key.as_str()).collect();
    let claim_fingerprints: Vec<&str> = new_claims
        .iter()
        .map(|(_, c)| c.fingerprint.as_str())
        .collect();
    let claim_responses: Vec<String> = new_claims
        .iter()
        .map(|(_, c)| c.response.to_string())
        .collect();
    let anything = !rows.event_id.is_empty();
    let (inserted, _, _, _) = tokio::try_join!(
        async {
            if anything {
                client
                    .query(
                        &insert,
                        &[
                            &rows.event_id,
                            &rows.tenant_id,
                            &rows.stream_id,
                            &rows.stream_version,
                            &rows.event_type,
                            &rows.schema_version,
                            &rows.work_class,
                            &rows.payload,
                            &rows.metadata,
                            &rows.occurred_at,
                            &rows.recorded_at,
                            &rows.chain_lane,
                            &rows.prev_hash,
                            &rows.hash,
                        ],
                    )
                    .await
            } else {
                Ok(Vec::new())
            }
        },
        async {
            if anything {
                client
                    .execute(
                        &update,
                        &[&head_tenants, &head_lanes, &head_hashes, &head_counts],
                    )
                    .await
            } else {
                Ok(0)
            }
        },
        async {
            if new_claims.is_empty() {
                Ok(0)
            } else {
                client
                    .execute(
                        &insert_claims,
                        &[
                            &claim_tenants,
                            &claim_keys,
                            &claim_fingerprints,
                            &claim_responses,
                        ],
                    )
                    .await
            }
        },
        async {
            match owner {
                TxOwner::Batch => client.batch_execute("COMMIT").await,
                TxOwner::Caller => Ok(()),
            }
        },
    )?;
    // The batch's last position: every request's events are at or before it,
    // which is what a reader waiting for its own writes needs to know.
    let last_position: i64 = inserted
        .first()
        .and_then(|r| r.get::<_, Option<i64>>(0))
        .unwrap_or(0);
    for (i, streams) in committed {
        outcomes[i] = Some(Ok(AppendOutcome::Committed {
            streams,
            last_position,
        }));
    }
    Ok(outcomes
        .into_iter()
        .map(|o| o.expect("every request was decided"))
        .collect())
}

/// Appends in a transaction of its own, without group commit.
pub async fn append_direct(pool: &Pool, request: &AppendRequest) -> Outcome {
    let mut results = match commit_batch(pool, &[request]).await {
        // Two appends with one idempotency key, on different strands of a
        // tenant, raced to claim it: the loser waited for the winner and hit
        // the key's unique index. Once more, it now finds the key taken.
        Err(e) if e.is_unique_violation() && request.idempotency.is_some() => {
            commit_batch(pool, &[request]).await?
        }
        other => other?,
    };
    results.pop().expect("one outcome per request")
}

async fn commit_batch(
    pool: &Pool,
    requests: &[&AppendRequest],
) -> Result<Vec<Outcome>, StoreError> {
    let client = pool.get().await?;
    match write(&client, requests, TxOwner::Batch).await {
        Ok(outcomes) => Ok(outcomes),
        Err(e) => {
            // Leave no transaction open on a pooled connection; if even that
            // fails, the connection is not returned to the pool at all.
            if client.batch_execute("ROLLBACK").await.is_err() {
                drop(deadpool_postgres::Object::take(client));
            }
            Err(e)
        }
    }
}

// ------------------------------------------------------------ group commit

struct Job {
    request: AppendRequest,
    reply: oneshot::Sender<Outcome>,
}

/// The front door of the append path. Cheap to clone.
///
/// Each committer task owns the strands (lanes) `lane % committers`, so two
/// committers' batches rarely wait for each other's locks and commit in
/// parallel; a request goes to the committer of its first stream's lane.
#[derive(Clone)]
pub struct Committer {
    pool: Pool,
    queues: Arc<[mpsc::Sender<Job>]>,
    committed: Arc<watch::Sender<u64>>,
}

impl std::fmt::Debug for Committer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Committer").finish_non_exhaustive()
    }
}

impl Committer {
    /// Starts `committers` tasks on the current tokio runtime. They end when
    /// the last clone of the returned handle is dropped.
    pub fn start(pool: Pool, committers: usize) -> Committer {
        let (committed, _) = watch::channel(0u64);
        let committed = Arc::new(committed);
        let queues: Vec<mpsc::Sender<Job>> = (0..committers.clamp(1, chain::LANES as usize))
            .map(|_| {
                let (queue, receiver) = mpsc::channel(QUEUE_LEN);
                tokio::spawn(run_committer(pool.clone(), receiver, committed.clone()));
                queue
            })
            .collect();
        Committer {
            pool,
            queues: queues.into(),
            committed,
        }
    }

    pub async fn append(&self, request: AppendRequest) -> Outcome {
        validate(&request)?;
        let events: usize = request.streams.iter().map(|s| s.events.len()).sum();
        if events >= DIRECT_EVENTS_MIN {
            // Already a batch: batching it again buys nothing, and its own
            // transaction runs in parallel with those of other strands.
            let outcome = append_direct(&self.pool, &request).await;
            if matches!(outcome, Ok(AppendOutcome::Committed { .. })) {
                self.announce();
            }
            return outcome;
        }
        let lane = lane_of(&request.streams[0].stream_id) as usize;
        let queue = &self.queues[lane % self.queues.len()];
        let (reply, answer) = oneshot::channel();
        queue
            .send(Job { request, reply })
            .await
            .map_err(|_| StoreError::Unavailable("the committer has stopped".into()))?;
        answer.await.map_err(|_| {
            AppendError::Store(StoreError::Unavailable("the committer has stopped".into()))
        })?
    }

    /// Changes after every commit that appended something: lets projection
    /// workers in this process wake at once instead of waiting for their poll.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.committed.subscribe()
    }

    /// Tells this process's followers that events were appended outside the
    /// committer (for instance by a test writing in its own transaction).
    pub fn announce(&self) {
        self.committed.send_modify(|n| *n += 1);
    }
}

async fn run_committer(
    pool: Pool,
    mut receiver: mpsc::Receiver<Job>,
    committed: Arc<watch::Sender<u64>>,
) {
    loop {
        let mut jobs = Vec::new();
        match receiver.recv().await {
            Some(job) => jobs.push(job),
            None => return,
        }
        while jobs.len() < BATCH_REQUESTS_MAX {
            match receiver.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let requests: Vec<&AppendRequest> = jobs.iter().map(|j| &j.request).collect();
        let outcomes = match commit_batch(&pool, &requests).await {
            Ok(outcomes) => outcomes,
            Err(e) if !e.is_unavailable() => {
                if requests.len() > 1 {
                    tracing::warn!(error = %e, batch = requests.len(), "batch failed; retrying one by one");
                }
                let mut outcomes = Vec::with_capacity(requests.len());
                for r in &requests {
                    outcomes.push(append_direct(&pool, r).await);
                }
                outcomes
            }
            Err(e) if requests.len() == 1 => vec![Err(AppendError::Store(e))],
            Err(e) => {
                let shared = Arc::new(e);
                requests
                    .iter()
                    .map(|_| {
                        Err(AppendError::Store(StoreError::Unavailable(Box::new(
                            SharedError(shared.clone()),
                        ))))
                    })
                    .collect()
            }
        };
        if outcomes
            .iter()
            .any(|o| matches!(o, Ok(AppendOutcome::Committed { .. })))
        {
            committed.send_modify(|n| *n += 1);
        }
        for (job, outcome) in jobs.into_iter().zip(outcomes) {
            // The caller may have gone away (request cancelled): the events
            // are committed all the same, which is what an idempotency key is for.
            let _ = job.reply.send(outcome);
        }
    }
}

/// One failure reported to every request of a batch.
#[derive(Debug)]
struct SharedError(Arc<StoreError>);

impl std::fmt::Display for SharedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SharedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.0.as_ref())
    }
}

/// The stored response of an idempotency key, if the key was used before:
/// `(fingerprint, response)`.
pub async fn find_claim(
    pool: &Pool,
    tenant_id: Uuid,
    key: &str,
) -> Result<Option<(String, Value)>, StoreError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "SELECT fingerprint, response::text FROM idempotency_keys WHERE tenant_id = $1 AND key = $2",
            &[&tenant_id, &key],
        )
        .await?;
    row.map(|r| {
        let text: String = r.get(1);
        serde_json::from_str(&text)
            .map(|v| (r.get(0), v))
            .map_err(|e| StoreError::Corrupt(format!("idempotent response: {e}")))
    })
    .transpose()
}
