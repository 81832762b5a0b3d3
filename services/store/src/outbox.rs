//! The notification outbox's read model, and the leases senders take on it.
//!
//! Senders lease a due notification in a short transaction, send with no
//! transaction open (an SMTP server may take seconds, and an open
//! transaction would hold back every reader of the log), then record the
//! outcome as an event. A sender that dies mid-send leaves a lease that runs
//! out, and the notification is tried again: at least once, and never again
//! once its `NotificationSent` is recorded.
//!
//! The projection writes a batch's requests in one insert and the outcomes
//! senders recorded in one update a round (see its `apply_batch`).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use futures_util::future::BoxFuture;
use opsledger_domain::notice::NoticeKind;
use opsledger_domain::notification::NotificationEvent;
use opsledger_domain::RecordedEvent;
use serde::Serialize;
use uuid::Uuid;

use crate::projection::{self, Projection};
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
        self.apply_batch(tx, std::slice::from_ref(event))
    }

    /// One insert for the batch's requests, then the outcomes senders
    /// recorded in rounds: the first outcome of each notification in the
    /// batch, then the second, and so on, one update a round (a batch rarely
    /// holds more than one outcome of a notification). Each update applies
    /// only over an older version, as it would have applied alone.
    fn apply_batch<'a>(
        &'a self,
        tx: &'a Transaction<'a>,
        events: &'a [RecordedEvent],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut requested = Requested::default();
            let mut outcomes: Vec<Vec<Outcome>> = Vec::new();
            let mut round_of: HashMap<(Uuid, Uuid), usize> = HashMap::new();
            for event in events {
                let Some(parsed) =
                    NotificationEvent::from_stored(&event.event_type, &event.payload)
                else {
                    continue;
                };
                let id = notification_id_of(&event.stream_id)?;
                let outcome = match parsed {
                    NotificationEvent::NotificationRequested {
                        kind,
                        cause_event_id,
                        incident_id,
                        change_id,
                        recipient,
                        message,
                        ..
                    } => {
                        requested.tenant.push(event.tenant_id);
                        requested.id.push(id);
                        requested.kind.push(kind.as_str());
                        requested.incident.push(incident_id);
                        requested.change.push(change_id);
                        requested.cause.push(cause_event_id);
                        requested
                            .recipient
                            .push(serde_json::to_value(&recipient).map_err(corrupt)?);
                        requested.email.push(recipient.email);
                        requested.subject.push(message.subject);
                        requested.sha256.push(message.sha256);
                        requested.at.push(event.recorded_at);
                        requested.version.push(event.stream_version);
                        continue;
                    }
                    // When the sender had it sent: the event's own time, which
                    // the sender also writes at once (see `settle`).
                    NotificationEvent::NotificationSent { attempt, .. } => Outcome {
                        status: "sent",
                        attempts: attempt as i32,
                        sent_at: Some(event.occurred_at),
                        error: None,
                        retry_at: None,
                        ..Outcome::of(event, id)
                    },
                    NotificationEvent::NotificationFailed {
                        attempt,
                        error,
                        retry_at,
                    } => Outcome {
                        status: "failed",
                        attempts: attempt as i32,
                        sent_at: None,
                        error: Some(error),
                        retry_at: Some(retry_at),
                        ..Outcome::of(event, id)
                    },
                    NotificationEvent::NotificationAbandoned { attempts, error } => Outcome {
                        status: "abandoned",
                        attempts: attempts as i32,
                        sent_at: None,
                        error: Some(error),
                        retry_at: None,
                        ..Outcome::of(event, id)
                    },
                };
                let round = round_of.entry((event.tenant_id, id)).or_default();
                if outcomes.len() <= *round {
                    outcomes.push(Vec::new());
                }
                outcomes[*round].push(outcome);
                *round += 1;
            }
            requested.write(tx).await?;
            for round in &outcomes {
                write_outcomes(tx, round).await?;
            }
            Ok(())
        })
    }
}

/// Requests of a batch, one vector per column (for `unnest`).
#[derive(Default)]
struct Requested {
    tenant: Vec<Uuid>,
    id: Vec<Uuid>,
    kind: Vec<&'static str>,
    incident: Vec<Option<Uuid>>,
    change: Vec<Option<Uuid>>,
    cause: Vec<Uuid>,
    recipient: Vec<serde_json::Value>,
    email: Vec<String>,
    subject: Vec<String>,
    sha256: Vec<String>,
    at: Vec<DateTime<Utc>>,
    version: Vec<i64>,
}

impl Requested {
    async fn write(&self, tx: &Transaction<'_>) -> Result<(), StoreError> {
        if self.id.is_empty() {
            return Ok(());
        }
        projection::execute(
            tx,
            "INSERT INTO proj_notifications (tenant_id, notification_id, kind, incident_id, \
               change_id, cause_event_id, recipient, email, subject, sha256, status, attempts, \
               next_attempt_at, requested_at, version) \
             SELECT t, i, k, inc, chg, c, r, e, s, h, 'requested', 0, at, at, v \
             FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::uuid[], $5::uuid[], $6::jsonb[], \
               $7::text[], $8::text[], $9::text[], $10::timestamptz[], $11::int8[], $12::uuid[]) \
               WITH ORDINALITY AS u(t, i, k, inc, c, r, e, s, h, at, v, chg, n) ORDER BY n \
             ON CONFLICT (tenant_id, notification_id) DO NOTHING",
            &[
                &self.tenant,
                &self.id,
                &self.kind,
                &self.incident,
                &self.cause,
                &self.recipient,
                &self.email,
                &self.subject,
                &self.sha256,
                &self.at,
                &self.version,
                &self.change,
            ],
        )
        .await?;
        Ok(())
    }
}

/// What a sender recorded about a notification, as its row takes it.
struct Outcome {
    tenant: Uuid,
    id: Uuid,
    version: i64,
    status: &'static str,
    attempts: i32,
    /// Set by a send only.
    sent_at: Option<DateTime<Utc>>,
    /// Set by a failure or an abandonment only.
    error: Option<String>,
    /// Set by a failure only.
    retry_at: Option<DateTime<Utc>>,
}

impl Outcome {
    fn of(event: &RecordedEvent, id: Uuid) -> Outcome {
        Outcome {
            tenant: event.tenant_id,
            id,
            version: event.stream_version,
            status: "",
            attempts: 0,
            sent_at: None,
            error: None,
            retry_at: None,
        }
    }
}

/// Outcomes of different notifications, in one update. Versions only move
/// forward: a sender may have written a later state into the row before
/// this worker got here.
async fn write_outcomes(tx: &Transaction<'_>, round: &[Outcome]) -> Result<(), StoreError> {
    let tenant: Vec<Uuid> = round.iter().map(|o| o.tenant).collect();
    let id: Vec<Uuid> = round.iter().map(|o| o.id).collect();
    let version: Vec<i64> = round.iter().map(|o| o.version).collect();
    let status: Vec<&str> = round.iter().map(|o| o.status).collect();
    let attempts: Vec<i32> = round.iter().map(|o| o.attempts).collect();
    let sent_at: Vec<Option<DateTime<Utc>>> = round.iter().map(|o| o.sent_at).collect();
    let error: Vec<Option<&str>> = round.iter().map(|o| o.error.as_deref()).collect();
    let retry_at: Vec<Option<DateTime<Utc>>> = round.iter().map(|o| o.retry_at).collect();
    projection::execute(
        tx,
        "UPDATE proj_notifications p SET status = u.st, attempts = u.a, \
           sent_at = CASE WHEN u.st = 'sent' THEN u.sa ELSE p.sent_at END, \
           last_error = CASE WHEN u.st IN ('failed', 'abandoned') THEN u.e ELSE p.last_error END, \
           next_attempt_at = CASE WHEN u.st = 'failed' THEN u.r ELSE p.next_attempt_at END, \
           version = u.v \
         FROM unnest($1::uuid[], $2::uuid[], $3::int8[], $4::text[], $5::int4[], \
           $6::timestamptz[], $7::text[], $8::timestamptz[]) AS u(t, i, v, st, a, sa, e, r) \
         WHERE p.tenant_id = u.t AND p.notification_id = u.i AND p.version < u.v",
        &[
            &tenant, &id, &version, &status, &attempts, &sent_at, &error, &retry_at,
        ],
    )
    .await?;
    Ok(())
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

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct NotificationRow {
    pub id: Uuid,
    pub kind: String,
    pub incident_id: Option<Uuid>,
    /// The change a notice of a change's step is about.
    pub change_id: Option<Uuid>,
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
               status, attempts, requested_at, sent_at, last_error, change_id FROM proj_notifications \
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
            change_id: r.get(12),
        })
        .collect())
}

/// A notice of a change's step to one person, as their console page lists
/// it (see [`change_notices_for`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChangeNoticeRow {
    pub notification_id: Uuid,
    pub change_id: Uuid,
    /// The change's title, from the changes read model; `None` for a
    /// moment while that read model has yet to catch up.
    pub change_title: Option<String>,
    /// Where the change stands now (`submitted`, `approved`, …; the
    /// changes read model's `status`), `None` likewise: an approver sees
    /// whether a change that asked them still awaits approval.
    pub change_status: Option<String>,
    /// The step told: one of [`NoticeKind::CHANGE`] (`change_awaiting_approval`
    /// for approvers; `change_approved`, `change_rejected`,
    /// `change_scheduled`, `change_started`, `change_completed`,
    /// `change_failed` for the requester).
    pub step: NoticeKind,
    /// The mail's subject, in the person's language, as sent.
    pub subject: String,
    /// When the notice was asked for: moments after the step was recorded.
    pub requested_at: DateTime<Utc>,
    /// The delivery: `requested`, `failed` (tried again later), `sent` or
    /// `abandoned`.
    pub status: String,
    /// When the mail was sent, once it has been.
    pub sent_at: Option<DateTime<Utc>>,
}

/// A person's notices of change steps, newest first, at most `limit`: those
/// mailed to the roster user whose address is `subject` (a token subject,
/// compared without regard to case; see `domain::change_notice`). A subject
/// with no roster user was told nothing and gets an empty list. Served from
/// the notifications read model, which lags the steps by a moment (the
/// notifier asks, then this projection records the asking).
pub async fn change_notices_for(
    pool: &Pool,
    tenant: Uuid,
    subject: &str,
    limit: i64,
) -> Result<Vec<ChangeNoticeRow>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT n.notification_id, n.change_id, c.state->>'title', c.status, n.kind, \
               n.subject, n.requested_at, n.status, n.sent_at \
             FROM proj_notifications n \
             LEFT JOIN proj_changes c ON c.tenant_id = n.tenant_id AND c.change_id = n.change_id \
             WHERE n.tenant_id = $1 AND lower(n.email) = lower(btrim($2)) \
               AND n.change_id IS NOT NULL \
             ORDER BY n.requested_at DESC, n.notification_id LIMIT $3",
            &[&tenant, &subject, &limit],
        )
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let kind: String = r.get(4);
        let step = NoticeKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("notification kind {kind:?}")))?;
        out.push(ChangeNoticeRow {
            notification_id: r.get(0),
            change_id: r.get(1),
            change_title: r.get(2),
            change_status: r.get(3),
            step,
            subject: r.get(5),
            requested_at: r.get(6),
            status: r.get(7),
            sent_at: r.get(8),
        });
    }
    Ok(out)
}
