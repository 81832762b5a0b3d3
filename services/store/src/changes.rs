//! Read models of changes, maintenance windows and freezes, and the queries
//! on them: lists, the change history of a service, schedule conflicts,
//! freezes in force, and the window that covers a service at an instant.
//!
//! Each row holds the aggregate as the domain folds it (`state`), rebuilt
//! from the aggregate's stream on each of its events: the streams are short
//! (a dozen events), and the projection then never disagrees with the
//! handlers, which fold the same streams.

use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Transaction};
use futures_util::future::BoxFuture;
use opsledger_domain::change::{self, Change, ChangeEvent};
use opsledger_domain::freeze::{self, Freeze, FreezeEvent};
use opsledger_domain::window::{self, Window, WindowEvent};
use opsledger_domain::RecordedEvent;
use serde::Serialize;
use uuid::Uuid;

use crate::projection::Projection;
use crate::{read, Pool, StoreError};

fn corrupt(e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(format!("change state: {e}"))
}

fn actor(e: &RecordedEvent) -> String {
    crate::read::kept_metadata(e, "actor")
}

/// A change folded from its events. Times are the events' `occurred_at`:
/// for commands, the instant the handler decided them, which is what its
/// answer showed.
pub fn fold_change(events: &[RecordedEvent]) -> Option<Change> {
    events.iter().fold(None, |c, e| {
        match ChangeEvent::from_stored(&e.event_type, &e.payload) {
            Some(ev) => change::evolve(c, &ev, e.occurred_at, &actor(e)),
            None => c,
        }
    })
}

pub fn fold_window(events: &[RecordedEvent]) -> Option<Window> {
    events.iter().fold(None, |w, e| {
        match WindowEvent::from_stored(&e.event_type, &e.payload) {
            Some(ev) => window::evolve(w, &ev, e.occurred_at, &actor(e)),
            None => w,
        }
    })
}

pub fn fold_freeze(events: &[RecordedEvent]) -> Option<Freeze> {
    events.iter().fold(None, |f, e| {
        match FreezeEvent::from_stored(&e.event_type, &e.payload) {
            Some(ev) => freeze::evolve(f, &ev, e.occurred_at, &actor(e)),
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
        Box::pin(async move {
            let events: Vec<RecordedEvent> =
                read::read_stream(tx, event.tenant_id, &event.stream_id, None)
                    .await?
                    .into_iter()
                    .take_while(|e| e.stream_version <= event.stream_version)
                    .collect();
            let v = event.stream_version;
            let t = event.tenant_id;
            if event.stream_id.starts_with("change-") {
                let Some(c) = fold_change(&events) else {
                    return Ok(());
                };
                tx.execute(
                    "INSERT INTO proj_changes (tenant_id, change_id, service_ids, kind, status, \
                       requested_at, scheduled_start, scheduled_end, approval_missing, state, version) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                     ON CONFLICT (tenant_id, change_id) DO UPDATE SET service_ids = EXCLUDED.service_ids, \
                       kind = EXCLUDED.kind, status = EXCLUDED.status, \
                       scheduled_start = EXCLUDED.scheduled_start, scheduled_end = EXCLUDED.scheduled_end, \
                       approval_missing = EXCLUDED.approval_missing, state = EXCLUDED.state, \
                       version = EXCLUDED.version",
                    &[
                        &t,
                        &c.id,
                        &c.service_ids,
                        &c.kind.as_str(),
                        &c.status.as_str(),
                        &c.requested_at,
                        &c.schedule.as_ref().map(|s| s.start),
                        &c.schedule.as_ref().map(|s| s.end),
                        &c.approval_missing,
                        &serde_json::to_value(&c).map_err(corrupt)?,
                        &v,
                    ],
                )
                .await?;
            } else if event.stream_id.starts_with("window-") {
                let Some(w) = fold_window(&events) else {
                    return Ok(());
                };
                tx.execute(
                    "INSERT INTO proj_windows (tenant_id, window_id, service_ids, status, start_at, \
                       end_at, rrule, change_id, state, version) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                     ON CONFLICT (tenant_id, window_id) DO UPDATE SET status = EXCLUDED.status, \
                       state = EXCLUDED.state, version = EXCLUDED.version",
                    &[
                        &t,
                        &w.id,
                        &w.service_ids,
                        &w.status.as_str(),
                        &w.start,
                        &w.end,
                        &w.rrule,
                        &w.change_id,
                        &serde_json::to_value(&w).map_err(corrupt)?,
                        &v,
                    ],
                )
                .await?;
            } else if event.stream_id.starts_with("freeze-") {
                let Some(f) = fold_freeze(&events) else {
                    return Ok(());
                };
                tx.execute(
                    "INSERT INTO proj_freezes (tenant_id, freeze_id, service_ids, start_at, end_at, \
                       lifted, state, version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                     ON CONFLICT (tenant_id, freeze_id) DO UPDATE SET lifted = EXCLUDED.lifted, \
                       state = EXCLUDED.state, version = EXCLUDED.version",
                    &[
                        &t,
                        &f.id,
                        &f.service_ids,
                        &f.start,
                        &f.end,
                        &f.lifted_at.is_some(),
                        &serde_json::to_value(&f).map_err(corrupt)?,
                        &v,
                    ],
                )
                .await?;
            }
            Ok(())
        })
    }
}

/// How often [`await_projection`] looks at the projection's checkpoint.
const CURRENT_POLL: std::time::Duration = std::time::Duration::from_millis(20);

/// Waits, at most `max_wait`, until the projection named `name` has applied
/// every event committed before the call (its checkpoint has passed the
/// transaction ids assigned by then), so that a freeze or a schedule (for
/// `changes`) or a subscription (for `roster`) recorded a moment ago, by any
/// instance, is seen. Returns whether it got there; a caller that goes on
/// regardless reads what is projected.
pub async fn await_projection(
    pool: &Pool,
    name: &str,
    max_wait: std::time::Duration,
) -> Result<bool, StoreError> {
    let client = pool.get().await?;
    let target: i64 = client
        .query_one(
            "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::int8",
            &[],
        )
        .await?
        .get(0);
    let deadline = tokio::time::Instant::now() + max_wait;
    loop {
        let at: i64 = client
            .query_opt(
                "SELECT last_tx_id::text::int8 FROM projection_checkpoints WHERE name = $1",
                &[&name],
            )
            .await?
            .map_or(0, |r| r.get(0));
        if at >= target - 1 {
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
/// ingestion keeps this list for a moment (see `api::ingest`).
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
