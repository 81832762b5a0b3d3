//! Reading events back.
//!
//! Gap-safe global reading: positions are taken at INSERT but become visible
//! at COMMIT, so "position > last seen" skips an event that commits late with
//! a lower position. Instead every row carries the id of the transaction that
//! wrote it, and a reader (1) reads only rows whose transaction is older than
//! the oldest transaction still running — `pg_snapshot_xmin` of the same
//! statement's snapshot, so nothing below it can still appear — and
//! (2) orders by `(tx_id, position)`. No write is serialised for this. The
//! cost: a long-running writing transaction anywhere in the cluster pauses
//! readers until it ends (our sessions cut idle transactions off; see `pool`).
//!
//! A transaction id is the cluster's, not the log's: a restore into a fresh
//! cluster counts from the start again. So the stored `tx_id` and the horizon
//! are both shifted by `tx_id_shift` (SQL `event_tx_id()`, `event_horizon()`),
//! which `order::realign` raises when it finds the cluster behind the log; and
//! a durable checkpoint keeps only a position (`projection`, V19).

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use opsledger_domain::{RecordedEvent, WorkClass};
use tokio_postgres::Row;
use uuid::Uuid;

use crate::StoreError;

/// Where a follower of the global order stands: after this event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, serde::Serialize)]
pub struct Cursor {
    pub tx_id: u64,
    pub position: i64,
}

impl Cursor {
    pub const START: Cursor = Cursor {
        tx_id: 0,
        position: 0,
    };
    /// After everything: no bound.
    pub const END: Cursor = Cursor {
        tx_id: i64::MAX as u64,
        position: i64::MAX,
    };

    pub fn after(event: &RecordedEvent) -> Cursor {
        Cursor {
            tx_id: event.tx_id,
            position: event.position,
        }
    }
}

pub(crate) const COLUMNS: &str = "position, tx_id::text::int8, event_id, tenant_id, stream_id, \
    stream_version, event_type, schema_version, work_class, payload::text, metadata::text, \
    occurred_at, recorded_at";

pub(crate) fn decode(row: &Row) -> Result<RecordedEvent, StoreError> {
    decode_at(row, 0)
}

/// Decodes the event whose [`COLUMNS`] start at column `at` of the row.
fn decode_at(row: &Row, at: usize) -> Result<RecordedEvent, StoreError> {
    let json = |i: usize| -> Result<serde_json::Value, StoreError> {
        match row.get::<_, Option<&str>>(at + i) {
            Some(text) => serde_json::from_str(text)
                .map_err(|e| StoreError::Corrupt(format!("event json: {e}"))),
            None => Ok(serde_json::Value::Null),
        }
    };
    let work_class: &str = row.get(at + 8);
    Ok(RecordedEvent {
        position: row.get(at),
        tx_id: row.get::<_, i64>(at + 1) as u64,
        event_id: row.get(at + 2),
        tenant_id: row.get(at + 3),
        stream_id: row.get(at + 4),
        stream_version: row.get(at + 5),
        event_type: row.get(at + 6),
        schema_version: row.get(at + 7),
        work_class: WorkClass::parse(work_class)
            .ok_or_else(|| StoreError::Corrupt(format!("work class {work_class}")))?,
        payload: json(9)?,
        metadata: json(10)?,
        occurred_at: row.get(at + 11),
        recorded_at: row.get(at + 12),
    })
}

/// Up to `limit` events after `cursor` in the global order, never skipping one
/// that commits later with a lower position.
pub async fn read_after<C: GenericClient>(
    client: &C,
    cursor: Cursor,
    limit: i64,
) -> Result<Vec<RecordedEvent>, StoreError> {
    Ok(read_after_of(client, cursor, Cursor::END, limit, &[""])
        .await?
        .events)
}

/// What a follower of some streams finds after its cursor.
#[derive(Debug)]
pub struct Followed {
    /// Events of the followed streams, in the global order.
    pub events: Vec<RecordedEvent>,
    /// Where the follower may stand afterwards: after the last event when the
    /// read was cut at its limit; otherwise past every event of any stream
    /// below the horizon, which the read has looked through whole.
    pub next: Cursor,
}

/// The stream-id prefixes monitoring writes by the thousand, which no
/// follower reads. The global order is kept in two partial indexes, each
/// event in exactly one: `events_followed_tx_position` (schema V10) leaves
/// these streams out, so a follower of other streams never walks an alert
/// storm's receipts to skip them; `events_monitoring_tx_position` (V11)
/// holds only them. A reader of both kinds merges the two.
const MONITORING_STREAMS: [&str; 2] = ["alert-", "group-"];

/// Whether no stream with one of `prefixes` can be a monitoring stream.
pub(crate) fn skips_monitoring(prefixes: &[&str]) -> bool {
    prefixes.iter().all(|p| {
        MONITORING_STREAMS
            .iter()
            .all(|m| !p.starts_with(m) && !m.starts_with(p))
    })
}

/// The condition that leaves the monitoring streams out, spelled as the
/// partial index `events_followed_tx_position`'s predicate is.
macro_rules! without_monitoring {
    () => {
        " AND stream_id NOT LIKE 'alert-%' AND stream_id NOT LIKE 'group-%'"
    };
}
pub(crate) use without_monitoring;

/// The condition that keeps only the monitoring streams, spelled as the
/// partial index `events_monitoring_tx_position`'s predicate is.
macro_rules! only_monitoring {
    () => {
        " AND (stream_id LIKE 'alert-%' OR stream_id LIKE 'group-%')"
    };
}
pub(crate) use only_monitoring;

/// One index's share of a follower's read: the rows of its streams after
/// the cursor, below the horizon and up to `until`, in the global order.
/// `$which` names the index, by its predicate.
macro_rules! followed_rows {
    ($which:expr) => {
        concat!(
            "SELECT position, tx_id, event_id, tenant_id, stream_id, stream_version, \
               event_type, schema_version, work_class, payload, metadata, occurred_at, recorded_at \
             FROM events \
             WHERE (tx_id, position) > ($1::int8::text::xid8, $2) AND tx_id < h.horizon \
               AND (tx_id, position) <= ($5::int8::text::xid8, $6) \
               AND stream_id LIKE ANY($4)",
            $which,
            " ORDER BY tx_id, position LIMIT $3"
        )
    };
}

/// The follower's read of `$rows`, beside the horizon taken once for the
/// statement (a row of NULL events when nothing is found).
macro_rules! follow_sql {
    ($rows:expr) => {
        concat!(
            "WITH h AS (SELECT event_horizon() AS horizon) \
             SELECT h.horizon::text::int8, e.position, e.tx_id::text::int8, e.event_id, \
               e.tenant_id, e.stream_id, e.stream_version, e.event_type, e.schema_version, \
               e.work_class, e.payload::text, e.metadata::text, e.occurred_at, e.recorded_at \
             FROM h LEFT JOIN LATERAL (",
            $rows,
            ") e ON true"
        )
    };
}

/// As [`follow_sql!`], but every payload and metadata read as `null`: for
/// a projection that reads what it needs of the events itself (see
/// [`read_after_of_light`]).
macro_rules! follow_sql_light {
    ($rows:expr) => {
        concat!(
            "WITH h AS (SELECT event_horizon() AS horizon) \
             SELECT h.horizon::text::int8, e.position, e.tx_id::text::int8, e.event_id, \
               e.tenant_id, e.stream_id, e.stream_version, e.event_type, e.schema_version, \
               e.work_class, 'null', 'null', e.occurred_at, e.recorded_at \
             FROM h LEFT JOIN LATERAL (",
            $rows,
            ") e ON true"
        )
    };
}

/// A read of every stream, without payloads: both indexes, merged.
const FOLLOW_ANY_STREAMS_LIGHT: &str = follow_sql_light!(concat!(
    "(",
    followed_rows!(without_monitoring!()),
    ") UNION ALL (",
    followed_rows!(only_monitoring!()),
    ") ORDER BY tx_id, position LIMIT $3"
));

/// A read of followed streams only: one index.
const FOLLOW_PEOPLE_STREAMS: &str = follow_sql!(followed_rows!(without_monitoring!()));
/// A read that may meet monitoring streams: both indexes, merged.
const FOLLOW_ANY_STREAMS: &str = follow_sql!(concat!(
    "(",
    followed_rows!(without_monitoring!()),
    ") UNION ALL (",
    followed_rows!(only_monitoring!()),
    ") ORDER BY tx_id, position LIMIT $3"
));

/// The statement [`read_after_of`] runs for a follower of `prefixes`, with
/// parameters (cursor tx id, cursor position, limit, LIKE patterns, until tx
/// id, until position): public so that a test can check its plan.
pub fn follow_statement(prefixes: &[&str]) -> &'static str {
    if skips_monitoring(prefixes) {
        FOLLOW_PEOPLE_STREAMS
    } else {
        FOLLOW_ANY_STREAMS
    }
}

/// As [`read_after`], but only events of streams whose ids start with one of
/// `prefixes`, and none after `until`: a projection never reads, transfers or
/// parses the events it ignores, and its cursor still moves past them. Every
/// row below the horizon (`event_horizon()`, taken once for the statement)
/// is final, so once the read has gone through all of them the cursor may
/// move to the horizon (or to `until`, if that comes first).
pub async fn read_after_of<C: GenericClient>(
    client: &C,
    cursor: Cursor,
    until: Cursor,
    limit: i64,
    prefixes: &[&str],
) -> Result<Followed, StoreError> {
    read_followed(
        client,
        follow_statement(prefixes),
        cursor,
        until,
        limit,
        prefixes,
    )
    .await
}

/// As [`read_after_of`] over every stream, but with every payload and
/// metadata `null`: the transparency log's sequencer reads the stored texts
/// itself, and parsing millions of payloads it never looks at was a third
/// of its rebuild.
pub async fn read_after_of_light<C: GenericClient>(
    client: &C,
    cursor: Cursor,
    until: Cursor,
    limit: i64,
) -> Result<Followed, StoreError> {
    read_followed(
        client,
        FOLLOW_ANY_STREAMS_LIGHT,
        cursor,
        until,
        limit,
        &[""],
    )
    .await
}

async fn read_followed<C: GenericClient>(
    client: &C,
    statement: &str,
    cursor: Cursor,
    until: Cursor,
    limit: i64,
    prefixes: &[&str],
) -> Result<Followed, StoreError> {
    let patterns = like_prefixes(prefixes);
    let stmt = client.prepare_cached(statement).await?;
    let rows = client
        .query(
            &stmt,
            &[
                &(cursor.tx_id as i64),
                &cursor.position,
                &limit,
                &patterns,
                &(until.tx_id.min(i64::MAX as u64) as i64),
                &until.position,
            ],
        )
        .await?;
    followed(&rows, cursor, until, limit)
}

/// The events of a follower's read (rows of the horizon beside each event,
/// or one row of the horizon and NULLs), and where the reader may stand
/// after them: after the last event when the read was cut at `limit`,
/// otherwise past everything below the horizon (but not past `until`).
fn followed(
    rows: &[Row],
    cursor: Cursor,
    until: Cursor,
    limit: i64,
) -> Result<Followed, StoreError> {
    let horizon: i64 = rows
        .first()
        .map(|r| r.get(0))
        .ok_or_else(|| StoreError::Corrupt("no snapshot horizon".into()))?;
    let mut events = Vec::with_capacity(rows.len());
    for row in rows {
        if row.get::<_, Option<i64>>(1).is_some() {
            events.push(decode_at(row, 1)?);
        }
    }
    let next = match events.last() {
        Some(last) if events.len() as i64 >= limit => Cursor::after(last),
        _ => cursor.max(
            Cursor {
                tx_id: (horizon as u64).saturating_sub(1),
                position: i64::MAX,
            }
            .min(until),
        ),
    };
    Ok(Followed { events, next })
}

/// Every committed event of streams starting with one of `prefixes` after
/// `position`, in position order, up to `limit`: for rebuilding an inline
/// projection, whose tables the rebuild holds locked, so that no writer of
/// them can commit meanwhile and a late commit cannot slip behind the reader.
/// It reads past the horizon, since the events above it are the inline
/// projection's too.
pub async fn read_all_of<C: GenericClient>(
    client: &C,
    position: i64,
    limit: i64,
    prefixes: &[&str],
) -> Result<Vec<RecordedEvent>, StoreError> {
    let patterns = like_prefixes(prefixes);
    let sql = format!(
        "SELECT {COLUMNS} FROM events WHERE position > $1 AND stream_id LIKE ANY($3) \
         ORDER BY position LIMIT $2"
    );
    let stmt = client.prepare_cached(&sql).await?;
    let rows = client.query(&stmt, &[&position, &limit, &patterns]).await?;
    rows.iter().map(decode).collect()
}

/// An event as an inline projection's rebuild reads it: its payload left
/// as the stored JSON text, its metadata not read at all.
#[derive(Debug, Clone)]
pub struct StoredText {
    pub position: i64,
    pub tenant_id: Uuid,
    pub stream_id: String,
    pub stream_version: i64,
    pub event_type: String,
    pub payload: String,
    pub recorded_at: DateTime<Utc>,
}

/// [`read_all_of`] for an inline projection's rebuild, as [`StoredText`].
pub async fn read_all_texts<C: GenericClient>(
    client: &C,
    position: i64,
    limit: i64,
    prefixes: &[&str],
) -> Result<Vec<StoredText>, StoreError> {
    let patterns = like_prefixes(prefixes);
    let stmt = client
        .prepare_cached(
            "SELECT position, tenant_id, stream_id, stream_version, event_type, payload::text, \
               recorded_at \
             FROM events WHERE position > $1 AND stream_id LIKE ANY($3) \
             ORDER BY position LIMIT $2",
        )
        .await?;
    let rows = client.query(&stmt, &[&position, &limit, &patterns]).await?;
    Ok(rows
        .iter()
        .map(|r| StoredText {
            position: r.get(0),
            tenant_id: r.get(1),
            stream_id: r.get(2),
            stream_version: r.get(3),
            event_type: r.get(4),
            payload: r.get(5),
            recorded_at: r.get(6),
        })
        .collect())
}

/// `LIKE` patterns matching ids that start with one of `prefixes`.
pub(crate) fn like_prefixes(prefixes: &[&str]) -> Vec<String> {
    prefixes
        .iter()
        .map(|p| {
            format!(
                "{}%",
                p.replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_")
            )
        })
        .collect()
}

/// Which of `stream_ids` have events: a command that names other entities
/// (a schedule its users, say) checks them against the log itself, so that
/// an entity registered a moment ago counts.
pub async fn existing_streams<C: GenericClient>(
    client: &C,
    tenant_id: Uuid,
    stream_ids: &[String],
) -> Result<std::collections::HashSet<String>, StoreError> {
    let stmt = client
        .prepare_cached(
            "SELECT DISTINCT stream_id FROM events WHERE tenant_id = $1 AND stream_id = ANY($2) \
               AND stream_version = 1",
        )
        .await?;
    let rows = client.query(&stmt, &[&tenant_id, &stream_ids]).await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// One stream's events in version order; with `as_of`, only those recorded
/// by then (what the system knew at that instant).
pub async fn read_stream<C: GenericClient>(
    client: &C,
    tenant_id: Uuid,
    stream_id: &str,
    as_of: Option<DateTime<Utc>>,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM events WHERE tenant_id = $1 AND stream_id = $2 \
           AND ($3::timestamptz IS NULL OR recorded_at <= $3) ORDER BY stream_version"
    );
    let stmt = client.prepare_cached(&sql).await?;
    let rows = client
        .query(&stmt, &[&tenant_id, &stream_id, &as_of])
        .await?;
    rows.iter().map(decode).collect()
}

/// A part of one stream: its events from version `first` to `last`, both
/// included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRange {
    pub tenant_id: Uuid,
    pub stream_id: String,
    pub first: i64,
    pub last: i64,
}

/// The events of several streams' ranges in one query, by tenant, stream
/// and version: what a projection's batch reads of the streams it folds,
/// instead of a read per event.
pub async fn read_ranges<C: GenericClient>(
    client: &C,
    ranges: &[StreamRange],
) -> Result<Vec<RecordedEvent>, StoreError> {
    if ranges.is_empty() {
        return Ok(Vec::new());
    }
    let tenants: Vec<Uuid> = ranges.iter().map(|r| r.tenant_id).collect();
    let streams: Vec<&str> = ranges.iter().map(|r| r.stream_id.as_str()).collect();
    let firsts: Vec<i64> = ranges.iter().map(|r| r.first).collect();
    let lasts: Vec<i64> = ranges.iter().map(|r| r.last).collect();
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "SELECT {} FROM unnest($1::uuid[], $2::text[], $3::int8[], $4::int8[]) AS k(t, s, f, l) \
             JOIN events e ON e.tenant_id = k.t AND e.stream_id = k.s \
               AND e.stream_version BETWEEN k.f AND k.l \
             ORDER BY e.tenant_id, e.stream_id, e.stream_version",
            COLUMNS
                .split(", ")
                .map(|c| format!("e.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    });
    let stmt = client.prepare_cached(&SQL).await?;
    let rows = client
        .query(&stmt, &[&tenants, &streams, &firsts, &lasts])
        .await?;
    rows.iter().map(decode).collect()
}

/// A metadata field of an event (`actor`, `role`) as a read model may keep
/// it: a NUL, which `text` and `jsonb` refuse and which nothing checks in a
/// token's subject, becomes U+FFFD rather than stopping the projection for good.
pub fn kept_metadata(event: &RecordedEvent, key: &str) -> String {
    event.metadata[key]
        .as_str()
        .unwrap_or("")
        .replace('\0', "\u{fffd}")
}

/// The event feed's read (SPEC §7): a tenant's events after `cursor` in the
/// global order, below the horizon, so that an event committing late with a
/// lower position is never skipped; optionally of one type or one stream.
/// The cursor moves as a follower's does (see [`read_after_of`]).
pub async fn feed<C: GenericClient>(
    client: &C,
    tenant: uuid::Uuid,
    cursor: Cursor,
    limit: i64,
    event_type: Option<&str>,
    stream: Option<&str>,
) -> Result<Followed, StoreError> {
    let rows = client
        .query(
            "WITH h AS (SELECT event_horizon() AS horizon) \
             SELECT h.horizon::text::int8, e.position, e.tx_id::text::int8, e.event_id, \
               e.tenant_id, e.stream_id, e.stream_version, e.event_type, e.schema_version, \
               e.work_class, e.payload::text, e.metadata::text, e.occurred_at, e.recorded_at \
             FROM h LEFT JOIN LATERAL ( \
               SELECT * FROM events \
               WHERE (tx_id, position) > ($1::int8::text::xid8, $2) AND tx_id < h.horizon \
                 AND tenant_id = $4 AND ($5::text IS NULL OR event_type = $5) \
                 AND ($6::text IS NULL OR stream_id = $6) \
               ORDER BY tx_id, position LIMIT $3) e ON true",
            &[
                &(cursor.tx_id as i64),
                &cursor.position,
                &limit,
                &tenant,
                &event_type,
                &stream,
            ],
        )
        .await?;
    followed(&rows, cursor, Cursor::END, limit)
}

/// The schema of a queue item's `kind`: the one value it always has, which
/// tells a client which item it holds (the queue's discriminator).
fn kind_is(value: &str) -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some([value]))
        .build()
}

pub(crate) fn kind_incident() -> utoipa::openapi::Object {
    kind_is("incident")
}

pub(crate) fn kind_inquiry() -> utoipa::openapi::Object {
    kind_is("inquiry")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn followers_of_people_streams_skip_the_monitoring_streams() {
        for prefixes in [
            &["incident-"][..],
            &["tenant-", "client-", "service-"],
            &["change-", "window-", "freeze-"],
            &["notification-"],
        ] {
            assert!(skips_monitoring(prefixes), "{prefixes:?}");
        }
        for prefixes in [&[""][..], &["alert-"], &["incident-", "group-"], &["al"]] {
            assert!(!skips_monitoring(prefixes), "{prefixes:?}");
        }
    }

    /// The planner uses a partial index only for a query whose conditions
    /// include its predicate as written: the reads, the indexes and the list
    /// of monitoring streams must name the same streams, and the two indexes
    /// must split the events between them.
    #[test]
    fn the_reads_and_the_partial_indexes_split_the_same_streams() {
        let predicate = |migration: &str| {
            migration
                .split("WHERE ")
                .last()
                .expect("the index has a predicate")
                .trim()
                .trim_end_matches(';')
                .to_owned()
        };
        let followed = predicate(include_str!(
            "../../../schema/V10__followed_events_index.sql"
        ));
        let monitoring = predicate(include_str!(
            "../../../schema/V11__monitoring_events_index.sql"
        ));
        assert!(FOLLOW_PEOPLE_STREAMS.contains(&format!("AND {followed} ORDER BY")));
        assert!(!FOLLOW_PEOPLE_STREAMS.contains(&monitoring));
        assert!(FOLLOW_ANY_STREAMS.contains(&format!("AND {followed} ORDER BY")));
        assert!(FOLLOW_ANY_STREAMS.contains(&format!("AND ({monitoring}) ORDER BY")));
        let left_out: Vec<String> = MONITORING_STREAMS
            .iter()
            .map(|m| format!("stream_id NOT LIKE '{m}%'"))
            .collect();
        assert_eq!(followed, left_out.join(" AND "));
        let kept: Vec<String> = MONITORING_STREAMS
            .iter()
            .map(|m| format!("stream_id LIKE '{m}%'"))
            .collect();
        assert_eq!(monitoring, kept.join(" OR "));
    }
}
