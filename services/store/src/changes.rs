//! Read models of changes, maintenance windows and freezes, and the queries
//! on them: lists, the change history of a service, schedule conflicts,
//! freezes in force, and the window that covers a service at an instant.
//!
//! Each row holds the aggregate as the domain folds it (`state`), folded
//! from the aggregate's stream: the streams are short (a dozen events), and
//! the projection then never disagrees with the handlers, which fold the
//! same streams. A batch reads every stream it touches in one query and
//! writes each table once.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Transaction};
use futures_util::future::BoxFuture;
use opsledger_domain::change::{self, Change, ChangeEvent};
use opsledger_domain::freeze::{self, Freeze, FreezeEvent};
use opsledger_domain::window::{self, Window, WindowEvent};
use opsledger_domain::RecordedEvent;
use serde::Serialize;
use uuid::Uuid;

use crate::projection::{self, array_literal, Projection};
use crate::{read, Pool, StoreError};

fn corrupt(e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(format!("change state: {e}"))
}

fn actor(e: &RecordedEvent) -> String {
    crate::read::kept_metadata(e, "actor")
}

/// A change folded from its events. Times are the instants the events were
/// recorded at: the one clock of commands' answers and reads by id.
pub fn fold_change(events: &[RecordedEvent]) -> Option<Change> {
    events.iter().fold(None, |c, e| {
        match ChangeEvent::from_stored(&e.event_type, &e.payload) {
            Some(ev) => change::evolve(c, &ev, e.recorded_at, &actor(e)),
            None => c,
        }
    })
}

pub fn fold_window(events: &[RecordedEvent]) -> Option<Window> {
    events.iter().fold(None, |w, e| {
        match WindowEvent::from_stored(&e.event_type, &e.payload) {
            Some(ev) => window::evolve(w, &ev, e.recorded_at, &actor(e)),
            None => w,
        }
    })
}

pub fn fold_freeze(events: &[RecordedEvent]) -> Option<Freeze> {
    events.iter().fold(None, |f, e| {
        match FreezeEvent::from_stored(&e.event_type, &e.payload) {
            Some(ev) => freeze::evolve(f, &ev, e.recorded_at, &actor(e)),
            None => f,
        }
    })
}

#[derive(Debug, Default)]
pub struct ChangeProjection;

/// The name of the change projection, whose checkpoint commands wait on.
pub const PROJECTION: &str = "changes";

impl Projection for ChangeProjection {
    fn name(&self) -> &'static str {
        PROJECTION
    }

    fn tables(&self) -> &'static [&'static str] {
        &["proj_changes", "proj_windows", "proj_freezes"]
    }

    fn streams(&self) -> &'static [&'static str] {
        &["change-", "window-", "freeze-"]
    }

    fn apply<'a>(
        &'a self,
        tx: &'a Transaction<'a>,
        event: &'a RecordedEvent,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.apply_batch(tx, std::slice::from_ref(event))
    }

    /// Each row is the aggregate folded from its stream up to the last
    /// event of the batch: the streams the batch touches are read once, in
    /// one query, and each table gets one upsert. A row's columns that an
    /// update leaves alone are those of its first fold in the batch, as
    /// they would be had each event been written in turn.
    fn apply_batch<'a>(
        &'a self,
        tx: &'a Transaction<'a>,
        events: &'a [RecordedEvent],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            // Per stream: the versions of its events in this batch.
            let mut touched: Vec<(Uuid, &str)> = Vec::new();
            let mut versions: HashMap<(Uuid, &str), Vec<i64>> = HashMap::new();
            for e in events {
                let key = (e.tenant_id, e.stream_id.as_str());
                let v = versions.entry(key).or_default();
                if v.is_empty() {
                    touched.push(key);
                }
                v.push(e.stream_version);
            }
            let ranges: Vec<read::StreamRange> = touched
                .iter()
                .map(|key| read::StreamRange {
                    tenant_id: key.0,
                    stream_id: key.1.to_owned(),
                    first: 1,
                    last: versions[key].iter().copied().max().unwrap_or(0),
                })
                .collect();
            let mut streams: HashMap<(Uuid, String), Vec<RecordedEvent>> = HashMap::new();
            for e in read::read_ranges(tx, &ranges).await? {
                streams
                    .entry((e.tenant_id, e.stream_id.clone()))
                    .or_default()
                    .push(e);
            }
            let mut changes = Rows::default();
            let mut windows = Rows::default();
            let mut freezes = Rows::default();
            for key in &touched {
                let stream = streams
                    .get(&(key.0, key.1.to_owned()))
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                let written = &versions[key];
                if key.1.starts_with("change-") {
                    changes.fold(key.0, stream, written, fold_change);
                } else if key.1.starts_with("window-") {
                    windows.fold(key.0, stream, written, fold_window);
                } else if key.1.starts_with("freeze-") {
                    freezes.fold(key.0, stream, written, fold_freeze);
                }
            }
            write_changes(tx, &changes).await?;
            write_windows(tx, &windows).await?;
            write_freezes(tx, &freezes).await
        })
    }
}

/// The rows a batch writes to one table: per aggregate, its tenant, its
/// first fold in the batch, its last, and the version of the last.
struct Rows<T> {
    rows: Vec<(Uuid, T, T, i64)>,
}

impl<T> Default for Rows<T> {
    fn default() -> Self {
        Rows { rows: Vec::new() }
    }
}

impl<T> Rows<T> {
    /// Folds `stream` (from version 1) as the batch's events would have
    /// been applied one by one, each writing the fold up to its version
    /// unless that is `None`: the row's first write in the batch and its
    /// last are kept.
    fn fold(
        &mut self,
        tenant: Uuid,
        stream: &[RecordedEvent],
        written: &[i64],
        fold: fn(&[RecordedEvent]) -> Option<T>,
    ) {
        let upto = |v: i64| fold(&stream[..stream.partition_point(|e| e.stream_version <= v)]);
        let mut written = written.to_vec();
        written.sort_unstable();
        let Some((i, first)) = written
            .iter()
            .enumerate()
            .find_map(|(i, v)| upto(*v).map(|f| (i, f)))
        else {
            return;
        };
        let (last, version) = written[i + 1..]
            .iter()
            .rev()
            .find_map(|v| upto(*v).map(|l| (l, *v)))
            .unwrap_or_else(|| (upto(written[i]).expect("folded above"), written[i]));
        self.rows.push((tenant, first, last, version));
    }
}

async fn write_changes(tx: &Transaction<'_>, rows: &Rows<Change>) -> Result<(), StoreError> {
    if rows.rows.is_empty() {
        return Ok(());
    }
    let (mut t, mut id, mut services, mut kind, mut status) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut requested, mut start, mut end, mut missing, mut state, mut version) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    for (tenant, first, c, v) in &rows.rows {
        t.push(*tenant);
        id.push(c.id);
        services.push(array_literal(&c.service_ids));
        kind.push(c.kind.as_str());
        status.push(c.status.as_str());
        requested.push(first.requested_at);
        start.push(c.schedule.as_ref().map(|s| s.start));
        end.push(c.schedule.as_ref().map(|s| s.end));
        missing.push(c.approval_missing);
        state.push(serde_json::to_value(c).map_err(corrupt)?);
        version.push(*v);
    }
    projection::execute(
        tx,
        "INSERT INTO proj_changes (tenant_id, change_id, service_ids, kind, status, \
           requested_at, scheduled_start, scheduled_end, approval_missing, state, version) \
         SELECT t, i, sv::uuid[], k, st, ra, ss, se, am, s, v FROM unnest($1::uuid[], $2::uuid[], \
           $3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::timestamptz[], \
           $8::timestamptz[], $9::bool[], $10::jsonb[], $11::int8[]) \
           AS u(t, i, sv, k, st, ra, ss, se, am, s, v) \
         ON CONFLICT (tenant_id, change_id) DO UPDATE SET service_ids = EXCLUDED.service_ids, \
           kind = EXCLUDED.kind, status = EXCLUDED.status, \
           scheduled_start = EXCLUDED.scheduled_start, scheduled_end = EXCLUDED.scheduled_end, \
           approval_missing = EXCLUDED.approval_missing, state = EXCLUDED.state, \
           version = EXCLUDED.version",
        &[
            &t, &id, &services, &kind, &status, &requested, &start, &end, &missing, &state,
            &version,
        ],
    )
    .await?;
    Ok(())
}

async fn write_windows(tx: &Transaction<'_>, rows: &Rows<Window>) -> Result<(), StoreError> {
    if rows.rows.is_empty() {
        return Ok(());
    }
    let (mut t, mut id, mut services, mut status, mut start, mut end) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    let (mut rrule, mut change, mut state, mut version) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut span_start, mut span_end) = (Vec::new(), Vec::new());
    for (tenant, first, w, v) in &rows.rows {
        t.push(*tenant);
        id.push(w.id);
        status.push(w.status.as_str());
        // Where its planned time may lie: from the earlier of its start and
        // when it started to the later of its end and when it ended.
        span_start.push(w.started_at.map_or(first.start, |s| s.min(first.start)));
        span_end.push(w.ended_at.map_or(first.end, |e| e.max(first.end)));
        state.push(serde_json::to_value(w).map_err(corrupt)?);
        version.push(*v);
        // Set when the row is made; an update leaves them.
        services.push(array_literal(&first.service_ids));
        start.push(first.start);
        end.push(first.end);
        rrule.push(first.rrule.clone());
        change.push(first.change_id);
    }
    projection::execute(
        tx,
        "INSERT INTO proj_windows (tenant_id, window_id, service_ids, status, start_at, \
           end_at, rrule, change_id, state, version, span_start, span_end) \
         SELECT t, i, sv::uuid[], st, sa, ea, r, c, s, v, ss, se FROM unnest($1::uuid[], $2::uuid[], \
           $3::text[], $4::text[], $5::timestamptz[], $6::timestamptz[], $7::text[], $8::uuid[], \
           $9::jsonb[], $10::int8[], $11::timestamptz[], $12::timestamptz[]) \
           AS u(t, i, sv, st, sa, ea, r, c, s, v, ss, se) \
         ON CONFLICT (tenant_id, window_id) DO UPDATE SET status = EXCLUDED.status, \
           state = EXCLUDED.state, version = EXCLUDED.version, \
           span_start = EXCLUDED.span_start, span_end = EXCLUDED.span_end",
        &[
            &t, &id, &services, &status, &start, &end, &rrule, &change, &state, &version,
            &span_start, &span_end,
        ],
    )
    .await?;
    Ok(())
}

async fn write_freezes(tx: &Transaction<'_>, rows: &Rows<Freeze>) -> Result<(), StoreError> {
    if rows.rows.is_empty() {
        return Ok(());
    }
    let (mut t, mut id, mut services, mut start, mut end) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut lifted, mut state, mut version) = (Vec::new(), Vec::new(), Vec::new());
    for (tenant, first, f, v) in &rows.rows {
        t.push(*tenant);
        id.push(f.id);
        lifted.push(f.lifted_at.is_some());
        state.push(serde_json::to_value(f).map_err(corrupt)?);
        version.push(*v);
        services.push(array_literal(&first.service_ids));
        start.push(first.start);
        end.push(first.end);
    }
    projection::execute(
        tx,
        "INSERT INTO proj_freezes (tenant_id, freeze_id, service_ids, start_at, end_at, \
           lifted, state, version) \
         SELECT t, i, sv::uuid[], sa, ea, l, s, v FROM unnest($1::uuid[], $2::uuid[], $3::text[], \
           $4::timestamptz[], $5::timestamptz[], $6::bool[], $7::jsonb[], $8::int8[]) \
           AS u(t, i, sv, sa, ea, l, s, v) \
         ON CONFLICT (tenant_id, freeze_id) DO UPDATE SET lifted = EXCLUDED.lifted, \
           state = EXCLUDED.state, version = EXCLUDED.version",
        &[&t, &id, &services, &start, &end, &lifted, &state, &version],
    )
    .await?;
    Ok(())
}

/// How often [`await_projection`] looks at the projection's checkpoint.
const CURRENT_POLL: std::time::Duration = std::time::Duration::from_millis(20);

/// Waits, at most `max_wait`, until the projection named `name` has applied
/// every event committed before the call (every transaction that had begun
/// by then has ended, and the checkpoint has passed the last event they
/// wrote), so that a freeze or a schedule (for `changes`) or a subscription
/// (for `roster`) recorded a moment ago, by any instance, is seen. Returns
/// whether it got there; a caller that goes on regardless reads what is
/// projected.
pub async fn await_projection(
    pool: &Pool,
    name: &str,
    max_wait: std::time::Duration,
) -> Result<bool, StoreError> {
    let client = pool.get().await?;
    let target: i64 = client
        .query_one("SELECT event_tx_bound()::text::int8", &[])
        .await?
        .get(0);
    let passed = client
        .prepare_cached(
            "SELECT event_horizon() >= $2::int8::text::xid8 \
               AND coalesce((c.last_tx_id, c.last_position) >= (SELECT tx_id, position FROM events \
                 WHERE position = event_at_or_before($2::int8::text::xid8, 0)), true) \
             FROM projection_cursors c WHERE c.name = $1",
        )
        .await?;
    let deadline = tokio::time::Instant::now() + max_wait;
    loop {
        let there = client
            .query_opt(&passed, &[&name, &target])
            .await?
            .is_some_and(|r| r.get::<_, bool>(0));
        if there {
            return Ok(true);
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(CURRENT_POLL).await;
    }
}

/// A read model row: the aggregate and its stream version.
#[derive(Debug, Clone, Serialize)]
pub struct Versioned<T> {
    #[serde(flatten)]
    pub item: T,
    pub version: i64,
}

fn versioned<T: serde::de::DeserializeOwned>(
    r: &tokio_postgres::Row,
) -> Result<Versioned<T>, StoreError> {
    Ok(Versioned {
        item: serde_json::from_value(r.get(0)).map_err(corrupt)?,
        version: r.get(1),
    })
}

#[derive(Debug, Clone, Default)]
pub struct ChangeFilter {
    pub service_id: Option<Uuid>,
    pub status: Option<String>,
    pub kind: Option<String>,
    pub approval_missing: Option<bool>,
}

/// Changes, newest first, older than the `before` cursor.
pub async fn list_changes(
    pool: &Pool,
    tenant: Uuid,
    filter: &ChangeFilter,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Versioned<Change>>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT state, version FROM proj_changes WHERE tenant_id = $1 \
               AND ($2::uuid IS NULL OR service_ids @> ARRAY[$2::uuid]) \
               AND ($3::text IS NULL OR status = $3) AND ($4::text IS NULL OR kind = $4) \
               AND ($5::bool IS NULL OR approval_missing = $5) \
               AND ($6::uuid IS NULL OR change_id < $6) \
             ORDER BY change_id DESC LIMIT $7",
            &[
                &tenant,
                &filter.service_id,
                &filter.status,
                &filter.kind,
                &filter.approval_missing,
                &before,
                &limit,
            ],
        )
        .await?;
    rows.iter().map(versioned).collect()
}

/// Every change to a service, oldest first (SPEC §6 change history).
pub async fn change_history(
    pool: &Pool,
    tenant: Uuid,
    service: Uuid,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Versioned<Change>>, StoreError> {
    let client = pool.get().await?;
    // Oldest first, in the order of request; `after` names the last change
    // of the previous page, whose (requested_at, change_id) the page follows.
    // A cursor that names no change of this tenant matches nothing.
    let rows = client
        .query(
            "SELECT state, version FROM proj_changes \
             WHERE tenant_id = $1 AND service_ids @> ARRAY[$2::uuid] \
               AND ($3::uuid IS NULL OR (requested_at, change_id) > \
                    (SELECT c.requested_at, c.change_id FROM proj_changes c \
                     WHERE c.tenant_id = $1 AND c.change_id = $3)) \
             ORDER BY requested_at, change_id LIMIT $4",
            &[&tenant, &service, &after, &limit],
        )
        .await?;
    rows.iter().map(versioned).collect()
}

/// Scheduled or running changes to one of `services` whose schedules
/// overlap `[start, end)`, other than `except`.
pub async fn overlapping_changes(
    pool: &Pool,
    tenant: Uuid,
    services: &[Uuid],
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    except: Uuid,
) -> Result<Vec<Uuid>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT change_id FROM proj_changes WHERE tenant_id = $1 AND service_ids && $2 \
               AND status IN ('scheduled', 'in_progress') AND change_id <> $5 \
               AND scheduled_start < $4 AND scheduled_end > $3 ORDER BY change_id",
            &[&tenant, &services, &start, &end, &except],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Freezes in force on one of `services` that overlap `[start, end)`.
pub async fn blocking_freezes(
    pool: &Pool,
    tenant: Uuid,
    services: &[Uuid],
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Vec<Versioned<Freeze>>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT state, version FROM proj_freezes WHERE tenant_id = $1 AND service_ids && $2 \
               AND NOT lifted AND start_at < $4 AND end_at > $3 ORDER BY start_at, freeze_id",
            &[&tenant, &services, &start, &end],
        )
        .await?;
    rows.iter().map(versioned).collect()
}

pub async fn list_freezes(
    pool: &Pool,
    tenant: Uuid,
    service: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Versioned<Freeze>>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT state, version FROM proj_freezes WHERE tenant_id = $1 \
               AND ($2::uuid IS NULL OR service_ids @> ARRAY[$2::uuid]) \
             ORDER BY start_at DESC, freeze_id DESC LIMIT $3",
            &[&tenant, &service, &limit],
        )
        .await?;
    rows.iter().map(versioned).collect()
}

#[derive(Debug, Clone, Default)]
pub struct WindowFilter {
    pub service_id: Option<Uuid>,
    /// Only windows touching a service of this client.
    pub client_id: Option<Uuid>,
    pub status: Option<String>,
    pub change_id: Option<Uuid>,
}

/// Windows, newest planned first, older than the `before` cursor.
pub async fn list_windows(
    pool: &Pool,
    tenant: Uuid,
    filter: &WindowFilter,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Versioned<Window>>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT w.state, w.version FROM proj_windows w WHERE w.tenant_id = $1 \
               AND ($2::uuid IS NULL OR w.service_ids @> ARRAY[$2::uuid]) \
               AND ($3::uuid IS NULL OR EXISTS (SELECT 1 FROM proj_services s \
                     WHERE s.tenant_id = w.tenant_id AND s.service_id = ANY(w.service_ids) \
                       AND s.client_id = $3)) \
               AND ($4::text IS NULL OR w.status = $4) \
               AND ($5::uuid IS NULL OR w.change_id = $5) \
               AND ($6::uuid IS NULL OR w.window_id < $6) \
             ORDER BY w.window_id DESC LIMIT $7",
            &[
                &tenant,
                &filter.service_id,
                &filter.client_id,
                &filter.status,
                &filter.change_id,
                &before,
                &limit,
            ],
        )
        .await?;
    rows.iter().map(versioned).collect()
}

/// Scheduled changes whose schedule ends after `from`, for the calendar.
pub async fn scheduled_changes(
    pool: &Pool,
    tenant: Uuid,
    from: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Versioned<Change>>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT state, version FROM proj_changes WHERE tenant_id = $1 \
               AND scheduled_end > $2 ORDER BY scheduled_start, change_id LIMIT $3",
            &[&tenant, &from, &limit],
        )
        .await?;
    rows.iter().map(versioned).collect()
}

/// The maintenance windows that may be in force for `service`: announced or
/// started, naming the service, and not over (recurring ones always, their
/// occurrences decide). `Window::covers` says whether one covers an instant;
/// ingestion keeps this list for a moment (see `app::ingest`).
pub async fn windows_in_force<C: GenericClient>(
    client: &C,
    tenant: Uuid,
    service: Uuid,
    at: DateTime<Utc>,
) -> Result<Vec<Window>, StoreError> {
    let stmt = client
        .prepare_cached(
            "SELECT state FROM proj_windows WHERE tenant_id = $1 \
               AND status IN ('announced', 'started') AND service_ids @> ARRAY[$2::uuid] \
               AND (rrule IS NOT NULL OR end_at > $3) \
             ORDER BY window_id",
        )
        .await?;
    let rows = client.query(&stmt, &[&tenant, &service, &at]).await?;
    rows.iter()
        .map(|r| serde_json::from_value(r.get(0)).map_err(corrupt))
        .collect()
}

/// The maintenance window that covers service `service` at `at`: announced
/// or started, naming the service, with `at` inside one of its occurrences
/// (a started one-off window also from its actual start). An alert of a
/// service inside such a window is recorded but opens no incident, and
/// downtime inside it is planned. When several cover, the earliest planned
/// (lowest id) answers.
pub async fn window_covering<C: GenericClient>(
    client: &C,
    tenant: Uuid,
    service: Uuid,
    at: DateTime<Utc>,
) -> Result<Option<Uuid>, StoreError> {
    Ok(windows_in_force(client, tenant, service, at)
        .await?
        .into_iter()
        .find(|w| w.covers(at))
        .map(|w| w.id))
}
