//! The projection engine: named read models built from the global order.
//!
//! Exactly-once for rows in PostgreSQL: a batch of events is applied and the
//! projection's checkpoint advanced in one transaction, so a crash at any
//! point leaves either both or neither. One owner at a time: each batch first
//! takes a transaction-level advisory lock named after the projection; another
//! instance that cannot take it skips its turn. `rebuild` takes the same lock,
//! waits for it, empties the projection's tables and replays from position 0.
//!
//! Workers wake when this process commits an append to one of the streams
//! they follow, or to those of a projection that follows them (a watch
//! channel from the committer, `wake`), and otherwise poll, which is how they
//! learn of other instances' appends without a NOTIFY inside any append
//! transaction.
//!
//! A batch that fails in the projection's own writes is applied again one
//! event at a time, so the events before the culprit are applied and the
//! culprit is named: logged, and kept in the checkpoint's row ([`stuck`])
//! for `/readyz` and `/metrics` on every instance. The follower retries it
//! and never skips it: a read model missing a fact would be wrong for good.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Transaction};
use futures_util::future::BoxFuture;
use opsledger_domain::RecordedEvent;
use serde::Serialize;
use tokio::sync::watch;

use crate::read::{self, Cursor};
use crate::wake::{Commits, Families};
use crate::{Pool, StoreError};

/// Events applied per transaction while following the store.
pub const FOLLOW_BATCH_EVENTS: i64 = 500;
/// Pause after a batch while events keep coming: bounds the batches per
/// second under load, adding at most this much lag (SPEC P2 allows 100 ms).
const FOLLOW_GATHER: Duration = Duration::from_millis(10);
/// How long after a commit of its streams a follower keeps looking for it
/// (every [`FOLLOW_GATHER`]) when its read does not find it yet: an older
/// transaction still running holds the horizon below it, or a projection it
/// follows has not got there. Past this it waits for its poll.
const OWED_FOR: Duration = Duration::from_secs(2);
/// Events read per round trip during a rebuild.
pub const REBUILD_PAGE_EVENTS: i64 = 5_000;
/// Events read per round trip while an inline projection is rebuilt. Larger:
/// its writes fold a page's events per row (an alert's repeats and its
/// resolution into the row its receipt inserts), and a firing cycle spans
/// some 15,000 events of a busy log.
const INLINE_REBUILD_PAGE_EVENTS: i64 = 50_000;
/// How often a worker looks for events appended by other instances.
pub const POLL_INTERVAL_DEFAULT: Duration = Duration::from_millis(250);
/// How many polls a follower waits with no sign of a commit (from this
/// process, or from [`watch_head`]) before it looks anyway: a safety net,
/// should the head's watcher be slow or gone.
const FALLBACK_POLLS: u32 = 20;
/// Pause after a failed batch (database restarting, say) before trying again.
const RETRY_PAUSE: Duration = Duration::from_secs(1);
/// First half of every projection's advisory lock key ("opsl").
const LOCK_NAMESPACE: i32 = 0x6f70_736c;

pub trait Projection: Send + Sync {
    fn name(&self) -> &'static str;
    /// The tables this projection owns: emptied by `rebuild`.
    fn tables(&self) -> &'static [&'static str];
    /// The prefixes of the stream ids whose events it reads; it never sees
    /// the others.
    fn streams(&self) -> &'static [&'static str] {
        &[""]
    }
    /// The event types it applies, when they are some of those its streams
    /// hold: the engine hands it no others (their position still moves its
    /// checkpoint). Empty: every event of its streams, as a projection that
    /// folds whole streams needs. Named here so that an event type leads to
    /// what applies it.
    fn applies(&self) -> &'static [&'static str] {
        &[]
    }
    /// True for a projection kept by the append itself ([`Inline`]): no
    /// follower runs for it, and it is never behind.
    fn inline(&self) -> bool {
        false
    }
    /// The writes of an inline projection: a rebuild hands them the stored
    /// payload text, as the append path does, instead of a tree of values.
    fn as_inline(&self) -> Option<&dyn Inline> {
        None
    }
    /// Projections whose tables this one reads while applying: it follows
    /// no further than the slowest of them has got, so what it reads there
    /// is never older than the events it applies. (Inline projections are
    /// never behind and need not be named.)
    fn after(&self) -> &'static [&'static str] {
        &[]
    }
    /// Whether its transactions append events, which must be durable when
    /// they commit. Others commit without waiting for their WAL flush.
    fn appends(&self) -> bool {
        false
    }
    /// False for a projection of every stream that reads what it needs of
    /// each event itself: it gets them with `null` payload and metadata.
    fn reads_payloads(&self) -> bool {
        true
    }
    /// Applies one event. Called in event order, inside the transaction that
    /// also advances the checkpoint. Events it does not care about are ignored.
    fn apply<'a>(
        &'a self,
        tx: &'a Transaction<'a>,
        event: &'a RecordedEvent,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Applies a batch of events in order. The engine calls this; a projection
    /// that can fold several events into one write overrides it.
    fn apply_batch<'a>(
        &'a self,
        tx: &'a Transaction<'a>,
        events: &'a [RecordedEvent],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            for event in events {
                self.apply(tx, event).await?;
            }
            Ok(())
        })
    }
}

pub type SharedProjection = Arc<dyn Projection>;

/// A read model kept in the append's own transaction rather than by a
/// follower (an *inline* projection): it is never behind the log, a crash
/// never separates it from its events, and its events are not read back.
/// Its writes are planned without I/O so that they travel in the same
/// pipeline as the append. The engine still rebuilds it from the log, with
/// the same writes, through [`Projection::apply_batch`].
pub trait Inline: Send + Sync {
    /// The stream-id prefixes whose events it takes.
    fn streams(&self) -> &'static [&'static str];
    /// The statements that apply these events (all of the followed streams),
    /// in order.
    fn writes(&self, events: &[Appended<'_>]) -> Result<Vec<Write>, StoreError>;
}

/// An event as an inline projection sees it: appended, not yet committed.
#[derive(Debug, Clone, Copy)]
pub struct Appended<'a> {
    pub tenant_id: uuid::Uuid,
    pub stream_id: &'a str,
    pub stream_version: i64,
    pub event_type: &'a str,
    pub payload: Payload<'a>,
    pub recorded_at: DateTime<Utc>,
}

/// An event's payload as an inline projection gets it: the JSON text about
/// to be stored (an append), or the value read back (a rebuild).
#[derive(Debug, Clone, Copy)]
pub enum Payload<'a> {
    Json(&'a str),
    Value(&'a serde_json::Value),
}

impl<'a> Appended<'a> {
    /// A stored event as its text was read back for a rebuild.
    pub fn of_text(e: &'a read::StoredText) -> Appended<'a> {
        Appended {
            tenant_id: e.tenant_id,
            stream_id: &e.stream_id,
            stream_version: e.stream_version,
            event_type: &e.event_type,
            payload: Payload::Json(&e.payload),
            recorded_at: e.recorded_at,
        }
    }

    pub fn of(event: &'a RecordedEvent) -> Appended<'a> {
        Appended {
            tenant_id: event.tenant_id,
            stream_id: &event.stream_id,
            stream_version: event.stream_version,
            event_type: &event.event_type,
            payload: Payload::Value(&event.payload),
            recorded_at: event.recorded_at,
        }
    }
}

/// One statement of a projection, with its parameters.
pub struct Write {
    pub sql: &'static str,
    pub params: Vec<Box<dyn tokio_postgres::types::ToSql + Sync + Send>>,
}

impl Write {
    /// Runs the statement on its own (rebuilds, followers).
    pub async fn execute<C: GenericClient>(&self, client: &C) -> Result<u64, StoreError> {
        let statement = client.prepare_cached(self.sql).await?;
        Ok(client.execute(&statement, &self.param_refs()).await?)
    }

    pub fn param_refs(&self) -> Vec<&(dyn tokio_postgres::types::ToSql + Sync)> {
        self.params
            .iter()
            .map(|p| &**p as &(dyn tokio_postgres::types::ToSql + Sync))
            .collect()
    }
}

/// An array column's value for one row of a batched write: `unnest` cannot
/// take an array of arrays of different lengths, so each row's array travels
/// as its literal text (`{a,b}`) and the statement casts it back.
pub(crate) fn array_literal<T: std::fmt::Display>(items: &[T]) -> String {
    let mut out = String::from("{");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('"');
        for c in item.to_string().chars() {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
    }
    out.push('}');
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The checkpoint moved, past this many events (at least one) of the
    /// projection's streams, and perhaps others'.
    Applied(usize),
    /// A whole batch was applied: more are waiting.
    Full,
    /// The checkpoint moved past other streams' events only.
    Passed,
    /// Nothing new below the horizon.
    Caught,
    /// Another instance holds the projection right now.
    Busy,
}

async fn ensure_checkpoint(pool: &Pool, name: &str) -> Result<(), StoreError> {
    let client = pool.get().await?;
    client
        .execute(
            "INSERT INTO projection_checkpoints (name) VALUES ($1) ON CONFLICT DO NOTHING",
            &[&name],
        )
        .await?;
    Ok(())
}

/// Moves the checkpoint to `next`; `last` is the last event applied, if any.
/// What is kept is the position of the last event at or before `next` in
/// the global order, never a transaction id (V19): the same place, since
/// `next` is below the horizon. Returns whether the row changed: a pass that
/// applied nothing and moved past no event writes nothing.
async fn save_checkpoint(
    tx: &Transaction<'_>,
    name: &str,
    next: Cursor,
    last: Option<&RecordedEvent>,
) -> Result<bool, StoreError> {
    let changed = tx
        .execute(
            "UPDATE projection_checkpoints \
             SET last_position = p.at, last_recorded_at = coalesce($4::timestamptz, last_recorded_at), \
               updated_at = now(), failing_since = NULL, failing_position = NULL, \
               failing_event = NULL, failing_error = NULL \
             FROM (SELECT event_at_or_before($2::int8::text::xid8, $3) AS at) p \
             WHERE name = $1 \
               AND (last_position <> p.at OR $4::timestamptz IS NOT NULL OR failing_since IS NOT NULL)",
            &[
                &name,
                &(next.tx_id as i64),
                &next.position,
                &last.map(|e| e.recorded_at),
            ],
        )
        .await?;
    Ok(changed > 0)
}

/// Applies the next batch of events, if this instance may.
pub async fn catch_up_once(pool: &Pool, projection: &dyn Projection) -> Result<Step, StoreError> {
    catch_up(pool, projection, FOLLOW_BATCH_EVENTS)
        .await
        .map_err(Failure::into_store_error)
}

/// The event a projection's batch failed on, as the log and `/readyz` name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventRef {
    pub position: i64,
    pub tenant_id: uuid::Uuid,
    pub stream_id: String,
    pub stream_version: i64,
    pub event_type: String,
}

impl EventRef {
    fn of(event: &RecordedEvent) -> EventRef {
        EventRef {
            position: event.position,
            tenant_id: event.tenant_id,
            stream_id: event.stream_id.clone(),
            stream_version: event.stream_version,
            event_type: event.event_type.clone(),
        }
    }
}

impl std::fmt::Display for EventRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} v{} ({}) at position {} of tenant {}",
            self.stream_id, self.stream_version, self.event_type, self.position, self.tenant_id
        )
    }
}

/// Why a batch did not commit.
#[derive(Debug)]
pub enum Failure {
    /// Reading, locking or committing: the database, most likely passing.
    Store(StoreError),
    /// The projection's own writes for the batch's `events` events, the
    /// first of which is `first`: perhaps an event it can never apply.
    Apply {
        error: StoreError,
        first: EventRef,
        events: usize,
    },
}

impl Failure {
    fn into_store_error(self) -> StoreError {
        match self {
            Failure::Store(e) | Failure::Apply { error: e, .. } => e,
        }
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Self {
        Failure::Store(e.into())
    }
}

/// An error and its causes on one line: what the log and `/readyz` show.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Applies the next batch of at most `limit` events, if this instance may.
async fn catch_up(pool: &Pool, projection: &dyn Projection, limit: i64) -> Result<Step, Failure> {
    let mut client = pool.get().await.map_err(StoreError::from)?;
    let tx = client.transaction().await?;
    // One round trip before the read: the lock, the commit mode and the
    // checkpoints, sent together (the connection runs them in this order).
    // The lock comes first and assigns no transaction id, so holding it does
    // not hold back any reader's horizon.
    let lock = tx.prepare_cached("SELECT pg_try_advisory_xact_lock($1, hashtext($2))");
    let marks = tx.prepare_cached(
        "SELECT name, last_tx_id::text::int8, last_position FROM projection_cursors \
         WHERE name = ANY($1)",
    );
    let (lock, marks) = tokio::try_join!(lock, marks)?;
    let mut names = vec![projection.name()];
    names.extend(projection.after());
    let name = projection.name();
    let lock_params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&LOCK_NAMESPACE, &name];
    let owned = tx.query_one(&lock, &lock_params);
    // A read model is rebuilt from the log, and its rows commit with its
    // checkpoint: if a crash loses this commit, both are lost together and the
    // batch is applied again. So it need not wait for its WAL flush.
    let mode = async {
        match projection.appends() {
            false => tx.batch_execute("SET LOCAL synchronous_commit = off").await,
            true => Ok(()),
        }
    };
    let marks_params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&names];
    let marks = tx.query(&marks, &marks_params);
    let (owned, (), marks) = tokio::try_join!(owned, mode, marks)?;
    if !owned.get::<_, bool>(0) {
        return Ok(Step::Busy);
    }
    let mark_of = |name: &str| -> Result<Option<Cursor>, StoreError> {
        let Some(r) = marks.iter().find(|r| r.get::<_, &str>(0) == name) else {
            return Ok(None);
        };
        let position: i64 = r.get(2);
        match r.get::<_, Option<i64>>(1) {
            Some(tx_id) => Ok(Some(Cursor {
                tx_id: tx_id as u64,
                position,
            })),
            None => Err(StoreError::Corrupt(format!(
                "the event at position {position}, where projection {name} stands, is not in \
                 the log: it was removed (opsledger verify names what else changed)"
            ))),
        }
    };
    let cursor = mark_of(projection.name())?.ok_or_else(|| {
        StoreError::Corrupt(format!(
            "no checkpoint for projection {}",
            projection.name()
        ))
    })?;
    let mut until = Cursor::END;
    for leader in projection.after() {
        until = until.min(mark_of(leader)?.unwrap_or(Cursor::START));
    }
    let read::Followed { events, next } =
        follow_read(&tx, projection, cursor, until, limit).await?;
    if next == cursor {
        return Ok(Step::Caught);
    }
    // A span only for a batch that applies events: a poll that finds none,
    // every few milliseconds, is no news.
    let span = match (events.first(), events.last()) {
        (Some(first), Some(last)) => tracing::info_span!(
            target: crate::SPAN_TARGET,
            "projection batch",
            projection = projection.name(),
            events = events.len(),
            first_position = first.position,
            last_position = last.position,
        ),
        _ => tracing::Span::none(),
    };
    let applied = events.len() as i64;
    let commit = async move {
        let mut appended = Families::NONE;
        if let Some(first) = events.first() {
            match applying(projection.apply_batch(&tx, &events)).await {
                Ok(families) => appended = families,
                // A database going away is no fault of the events.
                Err(error) if error.is_unavailable() => return Err(Failure::Store(error)),
                Err(error) => {
                    return Err(Failure::Apply {
                        error,
                        first: EventRef::of(first),
                        events: events.len(),
                    })
                }
            }
        }
        let moved = save_checkpoint(&tx, projection.name(), next, events.last()).await?;
        tx.commit().await?;
        Ok((appended, moved))
    };
    let (appended, moved) = tracing::Instrument::instrument(commit, span).await?;
    tell_followers(appended);
    Ok(if applied >= limit {
        Step::Full
    } else if applied == 0 && !moved {
        Step::Caught
    } else if applied == 0 {
        Step::Passed
    } else {
        Step::Applied(applied as usize)
    })
}

/// A projection's next page of events, with payloads or without.
async fn follow_read(
    tx: &Transaction<'_>,
    projection: &dyn Projection,
    cursor: Cursor,
    until: Cursor,
    limit: i64,
) -> Result<read::Followed, StoreError> {
    let mut followed = if projection.reads_payloads() {
        read::read_after_of(tx, cursor, until, limit, projection.streams()).await?
    } else {
        read::read_after_of_light(tx, cursor, until, limit).await?
    };
    let applies = projection.applies();
    if !applies.is_empty() {
        followed
            .events
            .retain(|e| applies.contains(&e.event_type.as_str()));
    }
    Ok(followed)
}

/// Commits of this process's projections that appended events (the
/// notifier's requests, recurrences): they do not go through the committer,
/// which tells the followers of its own commits, so the engine tells them
/// of these, the same way.
static APPENDED: std::sync::LazyLock<watch::Sender<Commits>> =
    std::sync::LazyLock::new(|| watch::channel(Commits::default()).0);

tokio::task_local! {
    /// The families a projection's batch appended to, while it applies.
    static APPENDING: std::cell::Cell<Families>;
}

/// Runs a batch's apply, returning the families of the streams it appended
/// to (see [`appended`]).
async fn applying(apply: BoxFuture<'_, Result<(), StoreError>>) -> Result<Families, StoreError> {
    APPENDING
        .scope(std::cell::Cell::new(Families::NONE), async {
            apply.await?;
            Ok(APPENDING.with(std::cell::Cell::get))
        })
        .await
}

/// Called by a projection that appended events to streams of `families`
/// in its batch's transaction: once it commits, this process's followers of
/// those streams look at once instead of at their next poll.
pub(crate) fn appended(families: Families) {
    let _ = APPENDING.try_with(|f| f.set(f.get().union(families)));
}

fn tell_followers(families: Families) {
    if families != Families::NONE {
        APPENDED.send_modify(|c| c.record(families));
    }
}

/// A statement a projection runs many times, prepared once per connection:
/// an unprepared one costs a round trip (and a parse) more each time.
pub(crate) async fn execute(
    tx: &Transaction<'_>,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<u64, StoreError> {
    let statement = tx.prepare_cached(sql).await?;
    Ok(tx.execute(&statement, params).await?)
}

/// A query a projection runs many times, prepared once per connection.
pub(crate) async fn query(
    tx: &Transaction<'_>,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Vec<tokio_postgres::Row>, StoreError> {
    let statement = tx.prepare_cached(sql).await?;
    Ok(tx.query(&statement, params).await?)
}

/// What a read model that keeps each record whole (a `state` jsonb column,
/// folded by the domain's `evolve`) holds for the record of `event`'s
/// stream, `<prefix><uuid>`, before `event`: its id and its state, if any.
/// `select` reads the state by `(tenant_id, id)`.
pub(crate) async fn kept_state<T: serde::de::DeserializeOwned>(
    tx: &Transaction<'_>,
    event: &RecordedEvent,
    prefix: &str,
    select: &str,
) -> Result<(uuid::Uuid, Option<T>), StoreError> {
    let id = event
        .stream_id
        .strip_prefix(prefix)
        .and_then(|s| uuid::Uuid::parse_str(s).ok())
        .ok_or_else(|| StoreError::Corrupt(format!("stream {}", event.stream_id)))?;
    let rows = query(tx, select, &[&event.tenant_id, &id]).await?;
    let state = match rows.first() {
        Some(r) => Some(
            serde_json::from_value(r.get(0))
                .map_err(|e| StoreError::Corrupt(format!("{prefix} state: {e}")))?,
        ),
        None => None,
    };
    Ok((id, state))
}

/// Watches the log's head for every follower of this process at once, so
/// that an idle service does not run a transaction per follower per poll:
/// every `poll`, one query reads the horizon (`event_horizon()`) and the
/// last position, and when either moved, `moved` is bumped and the
/// followers look. That is enough: an event a follower may read is below
/// the horizon, so it became readable either when it committed with a
/// higher position than any before (the last position moves) or when the
/// oldest transaction still running ended (the horizon moves). Run it as a
/// task beside the followers; abort it to stop.
pub async fn watch_head(pool: Pool, poll: Duration, moved: watch::Sender<u64>) {
    let mut last: Option<(String, i64)> = None;
    loop {
        let head = async {
            let client = pool.get().await.map_err(StoreError::from)?;
            let statement = client
                .prepare_cached(
                    "SELECT event_horizon()::text, coalesce((SELECT max(position) FROM events), 0)",
                )
                .await?;
            let row = client.query_one(&statement, &[]).await?;
            Ok::<_, StoreError>((row.get::<_, String>(0), row.get::<_, i64>(1)))
        };
        match head.await {
            Ok(now) if last.as_ref() != Some(&now) => {
                last = Some(now);
                moved.send_modify(|n| *n = n.wrapping_add(1));
            }
            Ok(_) => {}
            // The followers' own fallback polls carry on meanwhile.
            Err(e) => tracing::debug!(error = %error_chain(&e), "the log's head could not be read"),
        }
        tokio::time::sleep(poll).await;
    }
}

/// Follows the store for ever: run it as a task, abort the task to stop.
///
/// It looks when `wake` says this process committed to one of `interest`'s
/// families (see [`interests`]) or asked everyone to look, when `head`
/// ([`watch_head`]) says the log moved (another instance's commits), and
/// every `FALLBACK_POLLS` polls otherwise. Commits of this process to other
/// streams — an alert storm's — do not wake it.
pub async fn follow(
    pool: Pool,
    projection: SharedProjection,
    mut wake: watch::Receiver<Commits>,
    mut head: watch::Receiver<u64>,
    poll: Duration,
    interest: Families,
) {
    while let Err(e) = ensure_checkpoint(&pool, projection.name()).await {
        tracing::warn!(projection = projection.name(), error = %e, "cannot create checkpoint; retrying");
        tokio::time::sleep(RETRY_PAUSE).await;
    }
    let (mut written, mut nudges) = wake.borrow_and_update().seen_by(interest);
    let mut appends = APPENDED.subscribe();
    let mut appended_seen = appends.borrow_and_update().written(interest);
    // Since when a commit of its streams is owed: not yet found applied.
    let mut owed: Option<tokio::time::Instant> = None;
    let mut wake_open = true;
    // After a batch failed in the projection's writes: how many events to
    // apply one at a time, so that the one that fails is known and those
    // before it are applied.
    let mut singly = 0usize;
    let mut failing = Failing::default();
    loop {
        let limit = if singly > 0 { 1 } else { FOLLOW_BATCH_EVENTS };
        let step = catch_up(&pool, projection.as_ref(), limit).await;
        match &step {
            Ok(Step::Full) => singly = singly.saturating_sub(limit as usize),
            Ok(Step::Applied(n)) => singly = singly.saturating_sub(*n),
            Ok(Step::Caught | Step::Passed) => singly = 0,
            _ => {}
        }
        if matches!(step, Ok(Step::Full | Step::Applied(_) | Step::Passed)) {
            failing = Failing::default();
        }
        match step {
            Ok(Step::Full) => continue,
            Ok(Step::Applied(_)) if singly > 0 => continue,
            Ok(Step::Applied(_)) => {
                // Events are flowing: let a few milliseconds' worth gather, so
                // a busy store is followed in batches rather than one
                // transaction per commit.
                owed = None;
                tokio::time::sleep(FOLLOW_GATHER).await;
                continue;
            }
            Ok(Step::Passed | Step::Caught | Step::Busy) => {
                if owed.is_some_and(|since| since.elapsed() < OWED_FOR) {
                    tokio::time::sleep(FOLLOW_GATHER).await;
                    continue;
                }
                owed = None;
            }
            Err(Failure::Apply { events, .. }) if events > 1 => {
                // Find the event at once, applying those before it.
                singly = events;
                continue;
            }
            Err(Failure::Apply { error, first, .. }) => {
                failing
                    .report(&pool, projection.name(), &first, &error)
                    .await;
                tokio::time::sleep(RETRY_PAUSE).await;
                continue;
            }
            Err(Failure::Store(e)) => {
                tracing::warn!(projection = projection.name(), error = %error_chain(&e), "projection batch failed");
                tokio::time::sleep(RETRY_PAUSE).await;
                continue;
            }
        }
        let deadline = tokio::time::Instant::now() + poll * FALLBACK_POLLS;
        let mut head_open = true;
        while wake_open {
            tokio::select! {
                changed = wake.changed() => {
                    if changed.is_err() {
                        wake_open = false;
                        continue;
                    }
                    let (now_written, now_nudges) = wake.borrow_and_update().seen_by(interest);
                    if now_written != written {
                        written = now_written;
                        nudges = now_nudges;
                        owed = Some(tokio::time::Instant::now());
                        break;
                    }
                    if now_nudges != nudges {
                        nudges = now_nudges;
                        break;
                    }
                }
                changed = appends.changed() => {
                    let now = match changed {
                        Ok(()) => appends.borrow_and_update().written(interest),
                        Err(_) => appended_seen,
                    };
                    if now != appended_seen {
                        appended_seen = now;
                        owed = Some(tokio::time::Instant::now());
                        break;
                    }
                }
                changed = head.changed(), if head_open => {
                    if changed.is_err() {
                        head_open = false;
                        continue;
                    }
                    break;
                }
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        if !wake_open {
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// How often the log repeats that a projection is stuck on the same event
/// (it retries every [`RETRY_PAUSE`]; the first failure is always logged).
const FAILING_LOG_EVERY: Duration = Duration::from_secs(60);

/// A follower's memory of the event it cannot apply, if any.
#[derive(Default)]
struct Failing {
    position: Option<i64>,
    logged_at: Option<tokio::time::Instant>,
}

impl Failing {
    /// Logs the event and error (at once for a new event, then now and
    /// again) and records them in the checkpoint's row for `/readyz`.
    async fn report(&mut self, pool: &Pool, name: &str, event: &EventRef, error: &StoreError) {
        let error = error_chain(error);
        let again = self.position == Some(event.position);
        if !again
            || self
                .logged_at
                .is_none_or(|t| t.elapsed() >= FAILING_LOG_EVERY)
        {
            tracing::error!(
                projection = name,
                position = event.position,
                tenant = %event.tenant_id,
                stream = %event.stream_id,
                version = event.stream_version,
                event_type = %event.event_type,
                error = %error,
                "projection cannot apply an event; it retries and goes no further until it can"
            );
            self.logged_at = Some(tokio::time::Instant::now());
        }
        self.position = Some(event.position);
        if let Err(e) = record_failure(pool, name, event, &error).await {
            tracing::warn!(projection = name, error = %error_chain(&e), "cannot record the projection's failure");
        }
    }
}

/// Errors kept in a checkpoint's row are cut to this many characters: a
/// database error may quote a whole payload.
const FAILING_ERROR_LEN_MAX_CHARS: usize = 500;

async fn record_failure(
    pool: &Pool,
    name: &str,
    event: &EventRef,
    error: &str,
) -> Result<(), StoreError> {
    let error: String = error
        .replace('\0', "\u{fffd}")
        .chars()
        .take(FAILING_ERROR_LEN_MAX_CHARS)
        .collect();
    let client = pool.get().await?;
    client
        .execute(
            "UPDATE projection_checkpoints SET \
               failing_since = CASE WHEN failing_position IS DISTINCT FROM $2 THEN now() ELSE failing_since END, \
               failing_position = $2, failing_event = $3, failing_error = $4 \
             WHERE name = $1",
            &[&name, &event.position, &event.to_string().replace('\0', "\u{fffd}"), &error],
        )
        .await?;
    Ok(())
}

/// A projection whose last batch failed on an event, as any instance sees it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Stuck {
    pub name: String,
    /// Since when it has failed on this event.
    pub since: DateTime<Utc>,
    pub position: i64,
    /// The event, as [`EventRef`] writes it.
    pub event: String,
    pub error: String,
}

/// Every projection whose follower last failed on an event (and has not
/// moved since).
pub async fn stuck(pool: &Pool) -> Result<Vec<Stuck>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT name, failing_since, failing_position, failing_event, failing_error \
             FROM projection_checkpoints WHERE failing_since IS NOT NULL ORDER BY name",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Stuck {
            name: r.get(0),
            since: r.get(1),
            position: r.get(2),
            event: r.get(3),
            error: r.get(4),
        })
        .collect())
}

/// The families of streams each projection's follower wakes for, in the
/// order of `projections`: its own, and those of every projection that
/// follows it (names it in [`Projection::after`], directly or not), which
/// cannot get past events of their streams until it has.
pub fn interests(projections: &[SharedProjection]) -> Vec<Families> {
    let mut interest: Vec<Families> = projections
        .iter()
        .map(|p| Families::of_prefixes(p.streams()))
        .collect();
    // A fixed point over a handful of projections: a pass per level of
    // `after`, and one more to see nothing change.
    loop {
        let mut changed = false;
        for (i, follower) in projections.iter().enumerate() {
            for (j, leader) in projections.iter().enumerate() {
                if follower.after().contains(&leader.name()) {
                    let widened = interest[j].union(interest[i]);
                    changed |= widened != interest[j];
                    interest[j] = widened;
                }
            }
        }
        if !changed {
            return interest;
        }
    }
}

/// Vacuums and analyzes a projection's tables, as autovacuum would in its
/// own time: a table just emptied and refilled has no planner statistics
/// and no visibility map, so until then queries are planned blind and an
/// index-only scan (the downtime report's segments) visits the heap for
/// every row. As the owning user (VACUUM needs the owner), outside any
/// transaction (VACUUM cannot run in one).
pub async fn settle(
    config: &crate::pool::DbConfig,
    projection: &dyn Projection,
) -> Result<(), StoreError> {
    let tables = projection.tables();
    if tables.is_empty() {
        return Ok(());
    }
    let owner = crate::pool::connect_owner(config).await?;
    // Table names are the projections' own constants, not input.
    owner
        .batch_execute(&format!("VACUUM (ANALYZE) {}", tables.join(", ")))
        .await?;
    Ok(())
}

/// Empties the projection and replays every event, in one transaction.
/// Returns the number of events replayed.
pub async fn rebuild(pool: &Pool, projection: &dyn Projection) -> Result<u64, StoreError> {
    ensure_checkpoint(pool, projection.name()).await?;
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext($2))",
        &[&LOCK_NAMESPACE, &projection.name()],
    )
    .await?;
    if !projection.tables().is_empty() {
        tx.batch_execute(&format!("TRUNCATE {}", projection.tables().join(", ")))
            .await?;
    }
    tx.execute(
        "UPDATE projection_checkpoints SET last_position = 0, \
           last_recorded_at = NULL, updated_at = now(), failing_since = NULL, \
           failing_position = NULL, failing_event = NULL, failing_error = NULL WHERE name = $1",
        &[&projection.name()],
    )
    .await?;
    let mut appended = Families::NONE;
    if projection.inline() {
        // Kept by the appends: they wait on the TRUNCATE's lock until this
        // commits, and then write their own events' rows.
        let replayed = match projection.as_inline() {
            Some(inline) => rebuild_inline(&tx, inline).await?,
            None => {
                let mut position = 0;
                let mut replayed = 0u64;
                loop {
                    let events =
                        read::read_all_of(&tx, position, REBUILD_PAGE_EVENTS, projection.streams())
                            .await?;
                    let Some(tail) = events.last() else { break };
                    position = tail.position;
                    projection.apply_batch(&tx, &events).await?;
                    replayed += events.len() as u64;
                }
                replayed
            }
        };
        tx.commit().await?;
        return Ok(replayed);
    }
    let read =
        |cursor: Cursor| follow_read(&tx, projection, cursor, Cursor::END, REBUILD_PAGE_EVENTS);
    let mut cursor = Cursor::START;
    let mut replayed = 0u64;
    let mut last = None;
    let mut page = read(cursor).await?;
    loop {
        let read::Followed { events, next } = page;
        if next == cursor {
            break;
        }
        cursor = next;
        let apply = applying(projection.apply_batch(&tx, &events));
        page = if projection.appends() {
            // Its writes go to the log it reads: the next page is read after.
            appended = appended.union(apply.await?);
            read(cursor).await?
        } else {
            // The next page is read while this one is written: the
            // connection runs both in turn, and this process decodes the
            // one while the database writes the other.
            let (applied, following) = tokio::join!(apply, read(cursor));
            appended = appended.union(applied?);
            following?
        };
        replayed += events.len() as u64;
        if let Some(tail) = events.into_iter().last() {
            last = Some(tail);
        }
    }
    save_checkpoint(&tx, projection.name(), cursor, last.as_ref()).await?;
    tx.commit().await?;
    tell_followers(appended);
    Ok(replayed)
}

/// Replays an inline projection's events through its writes, from their
/// stored payload text. Pipelined: while the database writes one page,
/// this process reads and plans the next.
async fn rebuild_inline(tx: &Transaction<'_>, inline: &dyn Inline) -> Result<u64, StoreError> {
    let next = |position: i64| async move {
        let page = read::read_all_texts(tx, position, INLINE_REBUILD_PAGE_EVENTS, inline.streams())
            .await?;
        let events: Vec<Appended<'_>> = page.iter().map(Appended::of_text).collect();
        let writes = inline.writes(&events)?;
        let last = page.last().map(|e| e.position);
        Ok::<_, StoreError>((last, page.len() as u64, writes))
    };
    let mut replayed = 0u64;
    let (mut last, mut len, mut writes) = next(0).await?;
    while let Some(position) = last {
        let apply = async {
            for write in &writes {
                write.execute(tx).await?;
            }
            Ok::<(), StoreError>(())
        };
        let (applied, following) = tokio::join!(apply, next(position));
        applied?;
        replayed += len;
        (last, len, writes) = following?;
    }
    Ok(replayed)
}

/// What [`rebuild_all`] did with one projection.
#[derive(Debug, Clone)]
pub struct Rebuilt {
    pub name: &'static str,
    pub replayed: u64,
    pub took: Duration,
}

/// Rebuilds every projection of `projections`, up to `parallel` at once,
/// each once those it reads ([`Projection::after`]) are rebuilt, readers of
/// the monitoring streams first. Returns them in the order they finished.
pub async fn rebuild_all(
    pool: &Pool,
    projections: &[SharedProjection],
    parallel: usize,
) -> Result<Vec<Rebuilt>, StoreError> {
    use futures_util::stream::{FuturesUnordered, StreamExt};
    let names: Vec<&str> = projections.iter().map(|p| p.name()).collect();
    let mut waiting: Vec<SharedProjection> = projections.to_vec();
    let mut done: Vec<Rebuilt> = Vec::new();
    let mut running = FuturesUnordered::new();
    loop {
        while running.len() < parallel.max(1) {
            let is_ready = |p: &SharedProjection| {
                p.after()
                    .iter()
                    .all(|leader| !names.contains(leader) || done.iter().any(|d| d.name == *leader))
            };
            // The wall time is the longest rebuild's: those that read the
            // monitoring streams (most of a busy log) start first, and the
            // small ones fill the gaps beside them.
            let ready = waiting
                .iter()
                .position(|p| is_ready(p) && !read::skips_monitoring(p.streams()))
                .or_else(|| waiting.iter().position(is_ready));
            let Some(i) = ready else { break };
            let p = waiting.remove(i);
            running.push(async move {
                let started = std::time::Instant::now();
                let replayed = rebuild(pool, p.as_ref()).await?;
                Ok::<Rebuilt, StoreError>(Rebuilt {
                    name: p.name(),
                    replayed,
                    took: started.elapsed(),
                })
            });
        }
        match running.next().await {
            Some(result) => done.push(result?),
            None => return Ok(done),
        }
    }
}

/// Whether the database answers, with the schema migrated: what readiness
/// asks before anything else.
pub async fn reachable(pool: &Pool) -> Result<(), StoreError> {
    let client = pool.get().await?;
    client
        .query("SELECT 1 FROM projection_checkpoints LIMIT 1", &[])
        .await?;
    Ok(())
}

/// How far behind the store a projection is.
#[derive(Debug, Clone, Serialize)]
pub struct Lag {
    pub name: String,
    pub checkpoint: Cursor,
    /// Committed events not yet applied (counted up to [`LAG_COUNT_CAP`]).
    pub behind_events: i64,
    /// Age of the oldest event not yet applied; 0 when caught up.
    pub lag_seconds: f64,
    pub updated_at: Option<DateTime<Utc>>,
}

/// Counting beyond this tells an operator nothing more and costs a scan.
pub const LAG_COUNT_CAP: i64 = 100_000;

/// One index's share of what a projection has not applied yet (the
/// checkpoint is `c`), spelled as `read` spells it for the planner to use
/// the index `$which` names by its predicate.
macro_rules! pending {
    ($which:expr) => {
        concat!(
            "FROM events WHERE (tx_id, position) > (c.last_tx_id, c.last_position) \
             AND stream_id LIKE ANY($3)",
            $which
        )
    };
}
macro_rules! pending_count {
    ($which:expr) => {
        concat!(
            "(SELECT count(*) FROM (SELECT 1 ",
            pending!($which),
            " LIMIT $2) x)"
        )
    };
}
macro_rules! pending_age {
    ($which:expr) => {
        concat!(
            "(SELECT extract(epoch FROM now() - recorded_at)::float8 ",
            pending!($which),
            " ORDER BY tx_id, position LIMIT 1)"
        )
    };
}
macro_rules! lag_sql {
    ($count:expr, $age:expr) => {
        concat!(
            "SELECT c.last_tx_id::text::int8, c.last_position, c.updated_at, ",
            $count,
            ", ",
            $age,
            " FROM projection_cursors c WHERE c.name = $1"
        )
    };
}

/// How far behind `projection` is, counting only the events of its streams:
/// those are all it reads, and it passes the others at once.
pub async fn lag(pool: &Pool, projection: &dyn Projection) -> Result<Lag, StoreError> {
    let name = projection.name();
    let client = pool.get().await?;
    let patterns = read::like_prefixes(projection.streams());
    let sql = if read::skips_monitoring(projection.streams()) {
        lag_sql!(
            pending_count!(read::without_monitoring!()),
            pending_age!(read::without_monitoring!())
        )
    } else {
        lag_sql!(
            concat!(
                "least($2, ",
                pending_count!(read::without_monitoring!()),
                " + ",
                pending_count!(read::only_monitoring!()),
                ")"
            ),
            concat!(
                "greatest(",
                pending_age!(read::without_monitoring!()),
                ", ",
                pending_age!(read::only_monitoring!()),
                ")"
            )
        )
    };
    let row = client
        .query_opt(sql, &[&name, &LAG_COUNT_CAP, &patterns])
        .await?;
    Ok(match row {
        Some(r) => Lag {
            name: name.to_owned(),
            checkpoint: Cursor {
                tx_id: r.get::<_, Option<i64>>(0).unwrap_or(0) as u64,
                position: r.get(1),
            },
            updated_at: r.get(2),
            behind_events: r.get(3),
            lag_seconds: r.get::<_, Option<f64>>(4).unwrap_or(0.0).max(0.0),
        },
        None => {
            let behind: i64 = client
                .query_one(
                    "SELECT count(*) FROM (SELECT 1 FROM events WHERE stream_id LIKE ANY($2) LIMIT $1) x",
                    &[&LAG_COUNT_CAP, &patterns],
                )
                .await?
                .get(0);
            Lag {
                name: name.to_owned(),
                checkpoint: Cursor::START,
                behind_events: behind,
                lag_seconds: 0.0,
                updated_at: None,
            }
        }
    })
}

#[cfg(test)]
mod applies_tests {
    #[test]
    fn every_event_type_a_projection_names_is_in_the_catalogue() {
        for p in crate::projections() {
            for name in p.applies() {
                assert!(
                    opsledger_domain::catalogue::lookup(name).is_some(),
                    "{} applies {name}, which the catalogue does not list",
                    p.name()
                );
            }
        }
    }
}
