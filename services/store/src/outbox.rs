//! The notification outbox's read model, and the leases senders take on it.
//!
//! Senders lease a due notification in a short transaction, send with no
//! transaction open (an SMTP server may take seconds, and an open
//! transaction would hold back every reader of the log), then record the
//! outcome as an event. A sender that dies mid-send leaves a lease that runs
//! out, and the notification is tried again: at least once, and never again
//! once its `NotificationSent` is recorded.

use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use futures_util::future::BoxFuture;
use opsledger_domain::notification::NotificationEvent;
use opsledger_domain::RecordedEvent;
use serde::Serialize;
use uuid::Uuid;

use crate::projection::Projection;
use crate::{Pool, StoreError};

fn corrupt(e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(format!("notification state: {e}"))
}

#[derive(Debug, Default)]
pub struct NotificationProjection;

fn notification_id_of(stream_id: &str) -> Result<Uuid, StoreError> {
    stream_id
        .strip_prefix("notification-")
        .and_then(|id| Uuid::parse_str(id).ok())
        .ok_or_else(|| StoreError::Corrupt(format!("notification event on stream {stream_id}")))
}

impl Projection for NotificationProjection {
    fn name(&self) -> &'static str {
        "notifications"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["proj_notifications"]
    }

    fn streams(&self) -> &'static [&'static str] {
        &["notification-"]
    }

    fn apply<'a>(
        &'a self,
        tx: &'a Transaction<'a>,
        event: &'a RecordedEvent,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let Some(parsed) = NotificationEvent::from_stored(&event.event_type, &event.payload)
            else {
                return Ok(());
            };
            let id = notification_id_of(&event.stream_id)?;
            // Versions only move forward: a sender may have written a later
            // state into the row before this worker got here.
            let sql_update = |set: &'static str| {
                format!(
                    "UPDATE proj_notifications SET {set}, version = $3 \
                     WHERE tenant_id = $1 AND notification_id = $2 AND version < $3"
                )
            };
            match parsed {
                NotificationEvent::NotificationRequested {
                    kind,
                    cause_event_id,
                    incident_id,
                    recipient,
                    message,
                    ..
                } => {
                    tx.execute(
                        "INSERT INTO proj_notifications (tenant_id, notification_id, kind, incident_id, \
                           cause_event_id, recipient, email, subject, sha256, status, attempts, \
                           next_attempt_at, requested_at, version) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'requested', 0, $10, $10, $11) \
                         ON CONFLICT (tenant_id, notification_id) DO NOTHING",
                        &[
                            &event.tenant_id,
                            &id,
                            &kind.as_str(),
                            &incident_id,
                            &cause_event_id,
                            &serde_json::to_value(&recipient).map_err(corrupt)?,
                            &recipient.email,
                            &message.subject,
                            &message.sha256,
                            &event.recorded_at,
                            &event.stream_version,
                        ],
                    )
                    .await?;
                }
                NotificationEvent::NotificationSent { attempt, .. } => {
                    // When the sender had it sent: the event's own time, which
                    // the sender also writes at once (see `settle`).
                    tx.execute(
                        &sql_update("status = 'sent', attempts = $4, sent_at = $5"),
                        &[
                            &event.tenant_id,
                            &id,
                            &event.stream_version,
                            &(attempt as i32),
                            &event.occurred_at,
                        ],
                    )
                    .await?;
                }
                NotificationEvent::NotificationFailed {
                    attempt,
                    error,
                    retry_at,
                } => {
                    tx.execute(
                        &sql_update(
                            "status = 'failed', attempts = $4, last_error = $5, next_attempt_at = $6",
                        ),
                        &[
                            &event.tenant_id,
                            &id,
                            &event.stream_version,
                            &(attempt as i32),
                            &error,
                            &retry_at,
                        ],
                    )
                    .await?;
                }
                NotificationEvent::NotificationAbandoned { attempts, error } => {
                    tx.execute(
                        &sql_update("status = 'abandoned', attempts = $4, last_error = $5"),
                        &[
                            &event.tenant_id,
                            &id,
                            &event.stream_version,
                            &(attempts as i32),
                            &error,
                        ],
                    )
                    .await?;
                }
            }
            Ok(())
        })
    }
}

/// A notification a sender holds the lease of.
#[derive(Debug, Clone)]
pub struct Leased {
    pub tenant_id: Uuid,
    pub notification_id: Uuid,
}

/// Leases the next due notification of any tenant for `lease`, if any.
pub async fn lease_next(
    pool: &Pool,
    lease: chrono::Duration,
) -> Result<Option<Leased>, StoreError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "UPDATE proj_notifications p SET lease_until = now() + $1::int8 * interval '1 millisecond' \
             FROM (SELECT tenant_id, notification_id FROM proj_notifications \
                   WHERE status IN ('requested', 'failed') AND next_attempt_at <= now() \
                     AND (lease_until IS NULL OR lease_until < now()) \
                   ORDER BY next_attempt_at LIMIT 1 FOR UPDATE SKIP LOCKED) due \
             WHERE p.tenant_id = due.tenant_id AND p.notification_id = due.notification_id \
             RETURNING p.tenant_id, p.notification_id",
            &[&lease.num_milliseconds()],
        )
        .await?;
    Ok(row.map(|r| Leased {
        tenant_id: r.get(0),
        notification_id: r.get(1),
    }))
}

/// Writes what a sender recorded into the row at once (the projection will
/// agree), so the row is not leased again before the projection gets there.
/// It writes all the event says (the error too): the projection skips an
/// event whose version the row already has. Either way the sender's lease
/// ends: when the projection got there first, the row holds this very
/// attempt, and a lease left on it would hold the next attempt back until it
/// ran out (a minute).
pub async fn settle(
    pool: &Pool,
    leased: &Leased,
    outcome: &Settled<'_>,
    version: i64,
) -> Result<(), StoreError> {
    let client = pool.get().await?;
    let written = client
        .execute(
            "UPDATE proj_notifications SET status = $3, attempts = $4, \
               next_attempt_at = coalesce($5, next_attempt_at), last_error = coalesce($6, last_error), \
               sent_at = coalesce($7, sent_at), version = $8, lease_until = NULL \
             WHERE tenant_id = $1 AND notification_id = $2 AND version < $8",
            &[
                &leased.tenant_id,
                &leased.notification_id,
                &outcome.status,
                &(outcome.attempts as i32),
                &outcome.next_attempt_at,
                &outcome.last_error,
                &outcome.sent_at,
                &version,
            ],
        )
        .await?;
    if written == 0 {
        // Not a later attempt's lease: one recorded after this attempt
        // (`version` above it) belongs to another sender.
        client
            .execute(
                "UPDATE proj_notifications SET lease_until = NULL \
                 WHERE tenant_id = $1 AND notification_id = $2 AND version = $3",
                &[&leased.tenant_id, &leased.notification_id, &version],
            )
            .await?;
    }
    Ok(())
}

/// What a sender recorded about a notification, as its row shows it.
#[derive(Debug, Clone)]
pub struct Settled<'a> {
    pub status: &'a str,
    pub attempts: u32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_error: Option<&'a str>,
    pub sent_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NotificationRow {
    pub id: Uuid,
    pub kind: String,
    pub incident_id: Option<Uuid>,
    pub cause_event_id: Uuid,
    pub recipient: serde_json::Value,
    pub subject: String,
    pub sha256: String,
    pub status: String,
    pub attempts: i32,
    pub requested_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

/// The ledger of who was told what: newest first, optionally one incident's
/// or one client's.
pub async fn list_notifications(
    pool: &Pool,
    tenant: Uuid,
    incident_id: Option<Uuid>,
    client_id: Option<Uuid>,
    limit: i64,
) -> Result<Vec<NotificationRow>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT notification_id, kind, incident_id, cause_event_id, recipient, subject, sha256, \
               status, attempts, requested_at, sent_at, last_error FROM proj_notifications \
             WHERE tenant_id = $1 AND ($2::uuid IS NULL OR incident_id = $2) \
               AND ($3::text IS NULL OR recipient->>'client_id' = $3) \
             ORDER BY requested_at DESC, notification_id LIMIT $4",
            &[&tenant, &incident_id, &client_id.map(|c| c.to_string()), &limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| NotificationRow {
            id: r.get(0),
            kind: r.get(1),
            incident_id: r.get(2),
            cause_event_id: r.get(3),
            recipient: r.get(4),
            subject: r.get(5),
            sha256: r.get(6),
            status: r.get(7),
            attempts: r.get(8),
            requested_at: r.get(9),
            sent_at: r.get(10),
            last_error: r.get(11),
        })
        .collect())
}
