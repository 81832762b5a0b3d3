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
//!
//! Two write paths, one plan (`plan`): the predicted path (`fast`) plans on
//! what the committer expects the strands and streams to be and lets the
//! database check it, in one round trip; the locked path reads them under
//! its locks first, in two. Inline projections (`projection::Inline`) write
//! in the same transaction either way.
//!
//! # The append path
//!
//! Events are serialised by their callers, in parallel with other callers: a
//! `NewEvent` carries its payload as the JSON text that is hashed and stored
//! (ingestion prints each receipt straight from its variant,
//! `NewEvent::of_tagged`, never through a tree of values), and
//! `Committer::append` prints the metadata. It routes the request to one of the
//! committer tasks (by the strand of its first stream; one task by default); a
//! committer takes everything waiting (up to 256 requests) and commits it in one
//! transaction, by one of two paths:
//!
//! - **Predicted** (one round trip): a committer remembers the head it left each
//!   of its strands at, and every request names the version it expects of each
//!   stream. Planned on those predictions, the batch is sent as one pipeline on
//!   the committer's own connection (one warm backend): `BEGIN`; lock the strand
//!   heads and check them; guard the streams; check their versions; `INSERT`
//!   events; move the heads; keep the keys; the inline projections' writes;
//!   `COMMIT`. The checks take the locked path's locks in the same order, and a
//!   wrong prediction (another instance wrote a strand, a stream moved, a key
//!   was claimed before) calls `append_refused` (schema V5), which raises, so
//!   the transaction writes nothing. A second batch is sent while the first is
//!   in flight once it holds 12 requests, so the backend starts it the moment
//!   the first commits.
//! - **Locked** (two round trips), when a prediction is impossible (a strand the
//!   committer never wrote, an append that accepts any version) or was refused:
//!   `BEGIN; lock strand heads; guard streams; read stream versions and claimed
//!   keys`, then `INSERT … SELECT FROM unnest(…); UPDATE heads; INSERT keys;
//!   COMMIT`.
//!
//! Both paths plan the batch with the same pure function (`append::plan`), which
//! decides each request in order, so one request's conflict never fails its
//! neighbours. Guards are transaction advisory locks keyed by (tenant, stream):
//! exclusive for each stream written, shared for each stream only asserted (a
//! stream with no events in an append). An assertion thus holds until its
//! commit, yet the thousand appends of an alert storm asserting one group do not
//! queue behind each other; strand locks are taken only for strands written.
//! Strands are locked before guards, each in key order, so batches never
//! deadlock. An unexpected error fails the batch, which is then retried one
//! request per transaction. Appends of 32 events or more take their own
//! transaction. `recorded_at` is the committing instance's clock (microseconds)
//! when the batch is planned, since it is hashed before it is stored.
//! Committers tell in-process projection workers through a watch channel what
//! each commit wrote, as a count per stream family (the id up to its first `-`,
//! hashed to one of 64 bits: `store::wake`); a worker wakes only for its own
//! families and those of the projections that follow it (`after`), so an alert
//! storm wakes none of them. A worker that finds nothing after such a wake (its
//! event still above the horizon, a leader behind) looks again every 10 ms for
//! up to 2 s. Commands that read a read model (scheduling, announcing) wake
//! every worker first. Other instances' workers find events by polling (no
//! NOTIFY inside any append transaction). `/metrics` counts batches and events
//! by path.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use opsledger_domain::chain::{self, lane_of, GENESIS};
use opsledger_domain::{text, NewEvent};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::Instrument;
use uuid::Uuid;

use crate::projection::Write;
use crate::wake::{Commits, Families};
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
/// Committer tasks. One, on a 2-core machine: its batches are the largest,
/// and a batch costs the database about the same to start whatever its size
/// (P1 measured 12.4k alerts/s with one, 10.6k with two). More cores, more
/// committers: each owns the strands `lane % committers`.
pub const COMMITTERS_DEFAULT: usize = 1;
/// Appends of at least this many events skip group commit: they fill a
/// transaction on their own.
pub const DIRECT_EVENTS_MIN: usize = 32;
/// Requests waiting for a committer before callers are pushed back on.
const QUEUE_LEN: usize = 8_192;
/// Strand heads a committer remembers (16 per tenant) before starting afresh.
const KNOWN_HEADS_MAX: usize = 16 * 4_096;

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
    pub response: ClaimedAnswer,
}

impl IdempotencyClaim {
    /// The answer kept with the key, for events recorded at `recorded_at`.
    pub fn answer(&self, recorded_at: DateTime<Utc>) -> Value {
        match &self.response {
            ClaimedAnswer::Known(v) => v.clone(),
            ClaimedAnswer::AtCommit(render) => render(recorded_at),
        }
    }
}

/// A command's answer, as kept with its idempotency key.
#[derive(Clone)]
pub enum ClaimedAnswer {
    /// Known before the append.
    Known(Value),
    /// Written at the instant the events are recorded (`recorded_at`, the
    /// committer's clock): an answer that folds the command's own events
    /// then says what a later read of them says.
    AtCommit(Arc<dyn Fn(DateTime<Utc>) -> Value + Send + Sync>),
}

impl std::fmt::Debug for ClaimedAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClaimedAnswer::Known(v) => f.debug_tuple("Known").field(v).finish(),
            ClaimedAnswer::AtCommit(_) => f.write_str("AtCommit(..)"),
        }
    }
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
        /// The instant its events were recorded at.
        recorded_at: DateTime<Utc>,
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
        if s.stream_id.contains('\0') {
            return Err(AppendError::Invalid(
                "a stream id must not hold a NUL character".into(),
            ));
        }
        for e in &s.events {
            refuse_nul(e)?;
        }
    }
    if let Some(claim) = &req.idempotency {
        // Its answer is checked once rendered, in the plan.
        if claim.key.contains('\0') {
            return Err(AppendError::Invalid(
                "an idempotency key must not hold a NUL character".into(),
            ));
        }
    }
    Ok(())
}

/// The last line of defence against a NUL (see `text::json_holds_nul`):
/// whatever route or worker built the event, one that would stop every read
/// model copying it is never stored.
fn refuse_nul(event: &NewEvent) -> Result<(), AppendError> {
    let m = &event.metadata;
    let in_metadata = [
        Some(&m.actor),
        Some(&m.role),
        m.request_id.as_ref(),
        Some(&m.source),
    ]
    .into_iter()
    .flatten()
    .any(|s| s.contains('\0'));
    if in_metadata {
        return Err(AppendError::Invalid(format!(
            "{}: the actor, role, request id or source holds a NUL character, which cannot be stored",
            event.kind.name
        )));
    }
    if text::json_holds_nul(event.payload.as_bytes()) {
        let at = serde_json::from_str::<Value>(&event.payload)
            .ok()
            .and_then(|v| text::nul_pointer(&v))
            .map(|p| format!(" at {p}"))
            .unwrap_or_default();
        return Err(AppendError::Invalid(format!(
            "{}: the payload holds a NUL character{at}, which cannot be stored",
            event.kind.name
        )));
    }
    Ok(())
}

// ------------------------------------------------------------ the batch

mod fast;
mod plan;

use plan::{plan, strands_written, stream_guards, Claims, Versions};
pub(crate) use plan::{EventTexts, Head, Heads};

type Outcome = Result<AppendOutcome, AppendError>;

/// Who opens and closes the transaction. When the batch owns it, BEGIN and
/// COMMIT travel in the same pipelines as the statements, so a whole batch
/// costs two round trips and one WAL flush.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TxOwner {
    Batch,
    Caller,
}

const LOCK_HEADS: &str = "SELECT h.tenant_id, h.chain_lane, h.last_hash, h.event_count \
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
// Rows come back by their place in the input, so they map to borrowed ids.
const STREAM_VERSIONS: &str = "SELECT u.n, coalesce((SELECT max(e.stream_version) FROM events e \
       WHERE e.tenant_id = u.t AND e.stream_id = u.s), 0) \
     FROM unnest($1::uuid[], $2::text[]) WITH ORDINALITY AS u(t, s, n)";
const CLAIMED_KEYS: &str =
    "SELECT k.tenant_id, k.key, k.fingerprint, k.response::text FROM idempotency_keys k \
     JOIN unnest($1::uuid[], $2::text[]) AS u(t, key) ON k.tenant_id = u.t AND k.key = u.key";
// One statement for the whole batch; ORDER BY keeps positions in chain order.
// Only the batch's last position comes back: rows cost a transfer each. The
// order key (`event_tx_id()`, the shifted transaction id: see `read`) is
// taken once for the statement rather than by the column default per row.
const INSERT_EVENTS: &str =
    "WITH x AS MATERIALIZED (SELECT event_tx_id() AS tx), \
     inserted AS (INSERT INTO events (tx_id, event_id, tenant_id, stream_id, stream_version, event_type, \
       schema_version, work_class, payload, metadata, occurred_at, recorded_at, chain_lane, prev_hash, hash) \
     SELECT x.tx, e, t, s, v, ty, sv, wc, p::json, m::json, oa, ra, cl, ph, h \
     FROM x, unnest($1::uuid[], $2::uuid[], $3::text[], $4::int8[], $5::text[], $6::int4[], \
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
    let (outcomes, texts) = prepare(requests);
    let valid: Vec<(&AppendRequest, &EventTexts)> = requests
        .iter()
        .zip(&texts)
        .filter_map(|(r, t)| t.as_ref().map(|t| (*r, t)))
        .collect();
    let written = write_locked(client, &valid, TxOwner::Caller).await?;
    Ok(merge(outcomes, written.outcomes))
}

/// Validates and serialises each request: `Some` texts for those that may
/// be written, and the outcome already decided for the others.
fn prepare(requests: &[&AppendRequest]) -> (Vec<Option<Outcome>>, Vec<Option<EventTexts>>) {
    requests
        .iter()
        .map(|r| match validate(r).and_then(|()| EventTexts::of(r)) {
            Ok(texts) => (None, Some(texts)),
            Err(e) => (Some(Err(e)), None),
        })
        .unzip()
}

/// Fills the undecided places of `decided` with `written`, in order.
fn merge(decided: Vec<Option<Outcome>>, written: Vec<Outcome>) -> Vec<Outcome> {
    let mut written = written.into_iter();
    decided
        .into_iter()
        .map(|d| d.unwrap_or_else(|| written.next().expect("one outcome per written request")))
        .collect()
}

/// A batch written: its outcomes and the heads of the strands it wrote.
struct Written {
    outcomes: Vec<Outcome>,
    heads: Heads,
}

/// The locked path: reads the stream versions, strand heads and claimed keys
/// under the batch's locks, then plans and writes. Two round trips.
async fn write_locked<C: GenericClient>(
    client: &C,
    requests: &[(&AppendRequest, &EventTexts)],
    owner: TxOwner,
) -> Result<Written, StoreError> {
    let plain: Vec<&AppendRequest> = requests.iter().map(|(r, _)| *r).collect();
    let strands = strands_written(&plain);
    let (strand_tenants, strand_lanes): (Vec<Uuid>, Vec<i16>) = strands.iter().copied().unzip();
    let mut seen = HashSet::new();
    let (mut stream_tenants, mut stream_ids) = (Vec::new(), Vec::<&str>::new());
    let (mut key_tenants, mut keys) = (Vec::new(), Vec::new());
    for r in &plain {
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

    let (guard_keys, guard_exclusive) = stream_guards(&plain);

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
            return Box::pin(write_locked(client, requests, owner)).await;
        }
        // A caller's transaction is the caller's to keep: create in it.
        create_heads().await?;
        head_rows = client
            .query(&lock, &[&strand_tenants, &strand_lanes])
            .await?;
        (version_rows, claim_rows) = read_state().await?;
    }

    let heads: Heads = head_rows
        .iter()
        .map(|row| {
            (
                (row.get(0), row.get(1)),
                Head {
                    hash: row.get(2),
                    count: row.get(3),
                },
            )
        })
        .collect();
    let mut read = HashMap::with_capacity(version_rows.len());
    for r in &version_rows {
        let n: i64 = r.get(0);
        let i = usize::try_from(n - 1)
            .ok()
            .filter(|i| *i < stream_ids.len())
            .ok_or_else(|| StoreError::Corrupt(format!("stream version row {n}")))?;
        read.insert((stream_tenants[i], stream_ids[i]), r.get::<_, i64>(1));
    }
    let mut claimed: Claims = HashMap::new();
    for r in &claim_rows {
        let response: String = r.get(3);
        let response = serde_json::from_str(&response)
            .map_err(|e| StoreError::Corrupt(format!("idempotent response: {e}")))?;
        claimed.insert((r.get(0), r.get(1)), (r.get(2), response));
    }

    let plan = plan(
        requests,
        &mut Versions::Read(read),
        heads,
        claimed,
        plan::now_micros(),
    )
    .map_err(|_| StoreError::Corrupt("a written strand's head was not locked".into()))?;

    // Round trip 2: insert, move the chain heads, keep the keys, project,
    // commit.
    let writes = batch_writes(&plan, &strands)?;
    let statements = prepare_writes(client, &writes).await?;
    let (written, _) = tokio::try_join!(run_writes(client, &writes, &statements), async {
        match owner {
            TxOwner::Batch => client.batch_execute("COMMIT").await,
            TxOwner::Caller => Ok(()),
        }
    })?;
    Ok(Written {
        outcomes: plan.decided.finish(last_position(&written)),
        heads: plan.heads,
    })
}

/// A planned batch's writes, in order: its events first (answering the
/// batch's last position), its strands' new heads, its new idempotency keys,
/// and its inline projections' writes. Owned, so a batch can be in flight
/// while the next is planned.
fn batch_writes(plan: &plan::Plan<'_>, strands: &[(Uuid, i16)]) -> Result<Vec<Write>, StoreError> {
    let rows = &plan.rows;
    if rows.event_id.is_empty() {
        // Every request of the batch was refused or replayed.
        return Ok(Vec::new());
    }
    let owned = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<String>>();
    let heads = HeadColumns::of(strands, &plan.heads);
    let mut writes = vec![
        Write {
            sql: INSERT_EVENTS,
            params: vec![
                Box::new(rows.event_id.clone()),
                Box::new(rows.tenant_id.clone()),
                Box::new(owned(&rows.stream_id)),
                Box::new(rows.stream_version.clone()),
                Box::new(rows.event_type.clone()),
                Box::new(rows.schema_version.clone()),
                Box::new(rows.work_class.clone()),
                Box::new(owned(&rows.payload)),
                Box::new(owned(&rows.metadata)),
                Box::new(rows.occurred_at.clone()),
                Box::new(rows.recorded_at.clone()),
                Box::new(rows.chain_lane.clone()),
                Box::new(rows.prev_hash.clone()),
                Box::new(rows.hash.clone()),
            ],
        },
        Write {
            sql: UPDATE_HEADS,
            params: vec![
                Box::new(heads.tenants),
                Box::new(heads.lanes),
                Box::new(heads.hashes),
                Box::new(heads.counts),
            ],
        },
    ];
    if !plan.new_claims.is_empty() {
        let claims = &plan.new_claims;
        writes.push(Write {
            sql: INSERT_CLAIMS,
            params: vec![
                Box::new(claims.iter().map(|(t, _, _)| *t).collect::<Vec<Uuid>>()),
                Box::new(
                    claims
                        .iter()
                        .map(|(_, c, _)| c.key.clone())
                        .collect::<Vec<_>>(),
                ),
                Box::new(
                    claims
                        .iter()
                        .map(|(_, c, _)| c.fingerprint.clone())
                        .collect::<Vec<_>>(),
                ),
                Box::new(
                    claims
                        .iter()
                        .map(|(_, _, answer)| answer.to_string())
                        .collect::<Vec<_>>(),
                ),
            ],
        });
    }
    writes.extend(rows.inline_writes()?);
    Ok(writes)
}

/// The batch's last position, from what [`run_writes`] answered: every
/// request's events are at or before it, which is what a reader waiting for
/// its own writes needs to know.
fn last_position(answers: &[Vec<tokio_postgres::Row>]) -> i64 {
    answers
        .first()
        .and_then(|rows| rows.first())
        .and_then(|r| r.get::<_, Option<i64>>(0))
        .unwrap_or(0)
}

/// Prepares the inline projections' statements (a round trip only the first
/// time on a connection), so that running them sends them at once.
async fn prepare_writes<C: GenericClient>(
    client: &C,
    writes: &[Write],
) -> Result<Vec<tokio_postgres::Statement>, StoreError> {
    let mut statements = Vec::with_capacity(writes.len());
    for w in writes {
        statements.push(client.prepare_cached(w.sql).await?);
    }
    Ok(statements)
}

/// Sends every write when first polled, in order, so they travel in the
/// caller's pipeline, inside its transaction, before its COMMIT. Answers
/// each write's rows.
async fn run_writes<C: GenericClient>(
    client: &C,
    writes: &[Write],
    statements: &[tokio_postgres::Statement],
) -> Result<Vec<Vec<tokio_postgres::Row>>, tokio_postgres::Error> {
    let params: Vec<_> = writes.iter().map(Write::param_refs).collect();
    futures_util::future::try_join_all(
        statements
            .iter()
            .zip(&params)
            .map(|(statement, params)| client.query(statement, params)),
    )
    .await
}

/// Strand heads as columns, for `unnest`.
struct HeadColumns {
    tenants: Vec<Uuid>,
    lanes: Vec<i16>,
    hashes: Vec<Vec<u8>>,
    counts: Vec<i64>,
}

impl HeadColumns {
    /// The heads of `strands`, in that order (every strand must have one).
    fn of(strands: &[(Uuid, i16)], heads: &Heads) -> HeadColumns {
        let mut columns = HeadColumns {
            tenants: Vec::with_capacity(strands.len()),
            lanes: Vec::with_capacity(strands.len()),
            hashes: Vec::with_capacity(strands.len()),
            counts: Vec::with_capacity(strands.len()),
        };
        for (key, head) in strands.iter().filter_map(|k| heads.get(k).map(|h| (k, h))) {
            columns.tenants.push(key.0);
            columns.lanes.push(key.1);
            columns.hashes.push(head.hash.clone());
            columns.counts.push(head.count);
        }
        columns
    }
}

/// Appends in a transaction of its own, without group commit.
pub async fn append_direct(pool: &Pool, request: &AppendRequest) -> Outcome {
    validate(request)?;
    let texts = EventTexts::of(request)?;
    append_direct_texts(pool, request, &texts).await
}

async fn append_direct_texts(pool: &Pool, request: &AppendRequest, texts: &EventTexts) -> Outcome {
    let span = tracing::info_span!(
        target: crate::SPAN_TARGET,
        "append batch",
        requests = 1,
        events = events_of(request),
        path = "direct",
    );
    append_direct_batch(pool, request, texts)
        .instrument(span)
        .await
}

async fn append_direct_batch(pool: &Pool, request: &AppendRequest, texts: &EventTexts) -> Outcome {
    let batch = [(request, texts)];
    let written = match commit_locked(pool, &batch).await {
        // Two appends with one idempotency key, on different strands of a
        // tenant, raced to claim it: the loser waited for the winner and hit
        // the key's unique index. Once more, it now finds the key taken.
        Err(e) if e.is_unique_violation() && request.idempotency.is_some() => {
            commit_locked(pool, &batch).await?
        }
        other => other?,
    };
    written
        .outcomes
        .into_iter()
        .next()
        .expect("one outcome per request")
}

/// The locked path in a transaction of its own, on a pooled connection.
async fn commit_locked(
    pool: &Pool,
    requests: &[(&AppendRequest, &EventTexts)],
) -> Result<Written, StoreError> {
    let client = pool.get().await?;
    match write_locked(&client, requests, TxOwner::Batch).await {
        Ok(written) => Ok(written),
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

/// What each path has committed since the start, for `/metrics`: a
/// service whose batches mostly take the locked path has another writer on
/// its strands. `direct` is a request of [`DIRECT_EVENTS_MIN`] events or
/// more, in a transaction of its own.
#[derive(Debug, Default)]
pub struct BatchPaths {
    pub predicted: Appended,
    pub locked: Appended,
    pub direct: Appended,
}

/// Batches that committed something, and the events they appended (an
/// idempotent replay appends none).
#[derive(Debug, Default)]
pub struct Appended {
    pub batches: AtomicU64,
    pub events: AtomicU64,
}

impl Appended {
    /// Counts a batch whose requests had these outcomes.
    fn count<'a>(&self, committed: impl Iterator<Item = (&'a AppendRequest, &'a Outcome)>) {
        let events: usize = committed
            .filter(|(_, o)| matches!(o, Ok(AppendOutcome::Committed { .. })))
            .map(|(r, _)| r.streams.iter().map(|s| s.events.len()).sum::<usize>())
            .sum();
        if events > 0 {
            self.batches.fetch_add(1, Ordering::Relaxed);
            self.events.fetch_add(events as u64, Ordering::Relaxed);
        }
    }
}

// ------------------------------------------------------------ group commit

struct Job {
    request: AppendRequest,
    texts: EventTexts,
    reply: oneshot::Sender<Outcome>,
    /// The caller's span (its request's, say): the batch's span links to it.
    span: tracing::Span,
}

fn events_of(request: &AppendRequest) -> usize {
    request.streams.iter().map(|s| s.events.len()).sum()
}

/// The span of a batch of `jobs`, linked to each caller's span. Its `path`
/// is recorded once known: `predicted`, `locked`, or `one_by_one` when a
/// failed batch is retried a request at a time.
fn batch_span(jobs: &[Job]) -> tracing::Span {
    let span = tracing::info_span!(
        target: crate::SPAN_TARGET,
        "append batch",
        requests = jobs.len(),
        events = jobs.iter().map(|j| events_of(&j.request)).sum::<usize>(),
        path = tracing::field::Empty,
    );
    if !span.is_disabled() {
        for job in jobs {
            span.follows_from(&job.span);
        }
    }
    span
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
    committed: Arc<watch::Sender<Commits>>,
    paths: Arc<BatchPaths>,
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
        let (committed, _) = watch::channel(Commits::default());
        let committed = Arc::new(committed);
        let paths = Arc::new(BatchPaths::default());
        let queues: Vec<mpsc::Sender<Job>> = (0..committers.clamp(1, chain::LANES as usize))
            .map(|_| {
                let (queue, receiver) = mpsc::channel(QUEUE_LEN);
                tokio::spawn(run_committer(
                    pool.clone(),
                    receiver,
                    committed.clone(),
                    paths.clone(),
                ));
                queue
            })
            .collect();
        Committer {
            pool,
            queues: queues.into(),
            committed,
            paths,
        }
    }

    pub async fn append(&self, request: AppendRequest) -> Outcome {
        validate(&request)?;
        // Serialised here, by the caller, not by the committer.
        let texts = EventTexts::of(&request)?;
        if events_of(&request) >= DIRECT_EVENTS_MIN {
            // Already a batch: batching it again buys nothing, and its own
            // transaction runs in parallel with those of other strands.
            let outcome = append_direct_texts(&self.pool, &request, &texts).await;
            self.paths
                .direct
                .count(std::iter::once((&request, &outcome)));
            if matches!(outcome, Ok(AppendOutcome::Committed { .. })) {
                let written = families_written(&request);
                self.committed.send_modify(|c| c.record(written));
            }
            return outcome;
        }
        let lane = lane_of(&request.streams[0].stream_id) as usize;
        let queue = &self.queues[lane % self.queues.len()];
        let (reply, answer) = oneshot::channel();
        queue
            .send(Job {
                request,
                texts,
                reply,
                span: tracing::Span::current(),
            })
            .await
            .map_err(|_| StoreError::Unavailable("the committer has stopped".into()))?;
        answer.await.map_err(|_| {
            AppendError::Store(StoreError::Unavailable("the committer has stopped".into()))
        })?
    }

    /// Changes after every commit that appended something, saying which
    /// families of streams it wrote: lets projection workers in this process
    /// wake at once for their own streams instead of waiting for their poll.
    pub fn subscribe(&self) -> watch::Receiver<Commits> {
        self.committed.subscribe()
    }

    /// How many batches and events each path has committed.
    pub fn paths(&self) -> &BatchPaths {
        &self.paths
    }

    /// Tells this process's followers that events were appended outside the
    /// committer (for instance by a test writing in its own transaction), or
    /// that a command is about to read their read models: each looks once.
    pub fn announce(&self) {
        self.committed.send_modify(Commits::nudge);
    }
}

/// Predicted batches of one committer in flight at once at most.
const PIPELINE_DEPTH: usize = 2;
/// Requests a batch needs to be sent while another is in flight. A batch
/// sent only once the one before has answered leaves the database idle for
/// the round trip and the planning (~150 µs) in between; a batch sent early
/// keeps it busy but is smaller, and each batch has a fixed cost. Since the
/// alerts read model is written inline, batches cost more per request and
/// the idle gap weighs more: at 32, 40% of batches waited for the one
/// before; at 12, under 5% do. (P1 at 64 clients, ratio to raw INSERT, runs
/// of two rounds: 0.90, 0.94 at 32; 0.96, 0.99, 0.95, 1.01 at 12; 0.94, 0.93
/// at 20; 1.03, 0.93 at 6.)
const PIPELINED_BATCH_MIN: usize = 12;

/// A predicted batch sent and not yet answered.
struct Sent {
    jobs: Vec<Job>,
    decided: plan::Decided,
    span: tracing::Span,
}

type Answer = futures_util::future::BoxFuture<'static, Result<i64, StoreError>>;

/// One committer: gathers waiting requests into batches and commits them in
/// order, with up to [`PIPELINE_DEPTH`] predicted batches in flight on its own
/// connection, so the database starts the next batch the moment the one
/// before commits rather than a round trip later.
struct CommitterTask {
    pool: Pool,
    committed: Arc<watch::Sender<Commits>>,
    paths: Arc<BatchPaths>,
    /// The heads this committer's strands will have once everything it sent
    /// commits: what lets it plan on predictions. Bounded by tenants × strands.
    known: Heads,
    /// Its own connection: one backend, kept warm, running its batches in order.
    own: Option<fast::Client>,
    sent: std::collections::VecDeque<Sent>,
    answers: futures_util::stream::FuturesOrdered<Answer>,
}

async fn run_committer(
    pool: Pool,
    mut receiver: mpsc::Receiver<Job>,
    committed: Arc<watch::Sender<Commits>>,
    paths: Arc<BatchPaths>,
) {
    use futures_util::StreamExt;
    let mut task = CommitterTask {
        pool,
        committed,
        paths,
        known: Heads::new(),
        own: None,
        sent: Default::default(),
        answers: Default::default(),
    };
    let mut pending: Vec<Job> = Vec::new();
    let mut open = true;
    loop {
        let in_flight = task.answers.len();
        if !pending.is_empty()
            && (in_flight == 0
                || (in_flight < PIPELINE_DEPTH && pending.len() >= PIPELINED_BATCH_MIN))
        {
            let rest = pending.split_off(pending.len().min(BATCH_REQUESTS_MAX));
            let jobs = std::mem::replace(&mut pending, rest);
            task.dispatch(jobs).await;
            continue;
        }
        if !open && in_flight == 0 {
            return;
        }
        tokio::select! {
            biased;
            Some(answer) = task.answers.next(), if in_flight > 0 => task.answered(answer).await,
            job = receiver.recv(), if open && pending.len() < BATCH_REQUESTS_MAX => match job {
                Some(job) => {
                    pending.push(job);
                    while pending.len() < BATCH_REQUESTS_MAX {
                        match receiver.try_recv() {
                            Ok(job) => pending.push(job),
                            Err(_) => break,
                        }
                    }
                }
                // Every handle is gone: finish what is pending, then stop.
                None => open = false,
            },
        }
    }
}

impl CommitterTask {
    /// Sends a batch on predictions when it can; otherwise, once everything
    /// in flight is settled, commits it by the locked path.
    async fn dispatch(&mut self, jobs: Vec<Job>) {
        if self.known.len() > KNOWN_HEADS_MAX && self.answers.is_empty() {
            self.known.clear();
        }
        if self.own.as_ref().is_some_and(|c| c.is_closed()) {
            self.own = None;
        }
        if self.own.is_none() {
            self.own = self.pool.get().await.ok().map(Arc::new);
        }
        let span = batch_span(&jobs);
        let requests: Vec<(&AppendRequest, &EventTexts)> =
            jobs.iter().map(|j| (&j.request, &j.texts)).collect();
        let predicted = fast::plan_predicted(&requests, &self.known);
        drop(requests);
        if let (Ok(Some(predicted)), Some(client)) = (predicted, &self.own) {
            self.known.extend(predicted.heads);
            let (client, call) = (client.clone(), predicted.call);
            self.answers
                .push_back(Box::pin(async move { fast::send(&client, &call).await }));
            self.sent.push_back(Sent {
                jobs,
                decided: predicted.decided,
                span,
            });
            return;
        }
        self.settle().await;
        let outcomes = self.commit_locked(&jobs).instrument(span).await;
        reply(jobs, outcomes, &self.committed);
    }

    /// Handles the answer to the oldest batch in flight.
    async fn answered(&mut self, answer: Result<i64, StoreError>) {
        let batch = self.sent.pop_front().expect("one sent batch per answer");
        match answer {
            Ok(last_position) => self.committed_batch(batch, last_position),
            Err(e) => {
                // Refused: so will be the batches planned on it. Settle them,
                // then take the locked path for this one.
                tracing::debug!(error = %e, "predicted append refused; taking the locked path");
                self.settle().await;
                self.known.clear();
                let outcomes = self.commit_locked(&batch.jobs).instrument(batch.span).await;
                reply(batch.jobs, outcomes, &self.committed);
            }
        }
    }

    fn committed_batch(&self, batch: Sent, last_position: i64) {
        batch.span.record("path", "predicted");
        let outcomes = batch.decided.finish(last_position);
        self.paths
            .predicted
            .count(requests_of(&batch.jobs, &outcomes));
        reply(batch.jobs, outcomes, &self.committed);
    }

    /// Waits for every batch in flight, committing the refused ones by the
    /// locked path, in order.
    async fn settle(&mut self) {
        use futures_util::StreamExt;
        let mut refused = Vec::new();
        while let Some(answer) = self.answers.next().await {
            let batch = self.sent.pop_front().expect("one sent batch per answer");
            match answer {
                Ok(last_position) => self.committed_batch(batch, last_position),
                Err(_) => refused.push((batch.jobs, batch.span)),
            }
        }
        if !refused.is_empty() {
            self.known.clear();
        }
        for (jobs, span) in refused {
            let outcomes = self.commit_locked(&jobs).instrument(span).await;
            reply(jobs, outcomes, &self.committed);
        }
    }

    async fn commit_locked(&mut self, jobs: &[Job]) -> Vec<Outcome> {
        commit_locked_batch(&self.pool, jobs, &mut self.known, &self.paths).await
    }
}

/// The locked path for a committer's batch. An unexpected database error
/// fails the batch, which is then retried one request per transaction, so a
/// poisoned request cannot take its neighbours down with it.
async fn commit_locked_batch(
    pool: &Pool,
    jobs: &[Job],
    known: &mut Heads,
    paths: &BatchPaths,
) -> Vec<Outcome> {
    let span = tracing::Span::current();
    span.record("path", "locked");
    let requests: Vec<(&AppendRequest, &EventTexts)> =
        jobs.iter().map(|j| (&j.request, &j.texts)).collect();
    let outcomes = match commit_locked(pool, &requests).await {
        Ok(written) => {
            known.extend(written.heads);
            written.outcomes
        }
        Err(e) if !e.is_unavailable() => {
            if requests.len() > 1 {
                tracing::warn!(error = %e, batch = requests.len(), "batch failed; retrying one by one");
            }
            known.clear();
            span.record("path", "one_by_one");
            let mut outcomes = Vec::with_capacity(requests.len());
            for (r, t) in &requests {
                outcomes.push(append_direct_batch(pool, r, t).await);
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
    paths.locked.count(requests_of(jobs, &outcomes));
    outcomes
}

/// Each request of a batch with its outcome.
fn requests_of<'a>(
    jobs: &'a [Job],
    outcomes: &'a [Outcome],
) -> impl Iterator<Item = (&'a AppendRequest, &'a Outcome)> {
    jobs.iter().map(|j| &j.request).zip(outcomes)
}

/// Answers a batch's callers, and wakes this process's followers of the
/// streams it appended to.
fn reply(jobs: Vec<Job>, outcomes: Vec<Outcome>, committed: &watch::Sender<Commits>) {
    let written = jobs
        .iter()
        .zip(&outcomes)
        .filter(|(_, o)| matches!(o, Ok(AppendOutcome::Committed { .. })))
        .map(|(job, _)| families_written(&job.request))
        .fold(Families::NONE, Families::union);
    if written != Families::NONE {
        committed.send_modify(|c| c.record(written));
    }
    for (job, outcome) in jobs.into_iter().zip(outcomes) {
        // The caller may have gone away (request cancelled): the events
        // are committed all the same, which is what an idempotency key is for.
        let _ = job.reply.send(outcome);
    }
}

/// The families of the streams a request appends events to (a stream it only
/// asserts does not change).
fn families_written(request: &AppendRequest) -> Families {
    request
        .streams
        .iter()
        .filter(|s| !s.events.is_empty())
        .map(|s| Families::of_stream(&s.stream_id))
        .fold(Families::NONE, Families::union)
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
