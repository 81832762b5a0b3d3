//! Read models of the people who are told: responders, escalation policies,
//! on-call schedules and client subscriptions.

use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use futures_util::future::BoxFuture;
use opsledger_domain::escalation::{Policy, PolicyEvent};
use opsledger_domain::oncall::Schedule;
use opsledger_domain::roster::RosterEvent;
use opsledger_domain::RecordedEvent;
use serde::Serialize;
use uuid::Uuid;

use crate::projection::Projection;
use crate::{Pool, StoreError};

fn corrupt(e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(format!("roster state: {e}"))
}

/// The roster read models. Their timestamps (`registered_at`, `defined_at`,
/// `created_at`) are the events' `occurred_at`, which the API also answers
/// the create with and reads by id fold from the stream, so all three agree.
#[derive(Debug, Default)]
pub struct RosterProjection;

/// The name of the roster projection, whose checkpoint commands wait on.
pub const PROJECTION: &str = "roster";

impl Projection for RosterProjection {
    fn name(&self) -> &'static str {
        PROJECTION
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "proj_users",
            "proj_policies",
            "proj_schedules",
            "proj_subscriptions",
        ]
    }

    fn streams(&self) -> &'static [&'static str] {
        &["user-", "policy-", "schedule-", "subscription-"]
    }

    fn apply<'a>(
        &'a self,
        tx: &'a Transaction<'a>,
        event: &'a RecordedEvent,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            if let Some(PolicyEvent::EscalationPolicyDefined { policy_id, policy }) =
                PolicyEvent::from_stored(&event.event_type, &event.payload)
            {
                tx.execute(
                    "INSERT INTO proj_policies (tenant_id, policy_id, name, definition, service_ids, version, defined_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (tenant_id, policy_id) DO UPDATE SET name = EXCLUDED.name, \
                       definition = EXCLUDED.definition, service_ids = EXCLUDED.service_ids, \
                       version = EXCLUDED.version, defined_at = EXCLUDED.defined_at",
                    &[
                        &event.tenant_id,
                        &policy_id,
                        &policy.name,
                        &serde_json::to_value(&policy).map_err(corrupt)?,
                        &policy.service_ids,
                        &event.stream_version,
                        &event.occurred_at,
                    ],
                )
                .await?;
                return Ok(());
            }
            let Some(parsed) = RosterEvent::from_stored(&event.event_type, &event.payload) else {
                return Ok(());
            };
            match parsed {
                RosterEvent::UserRegistered {
                    user_id,
                    name,
                    email,
                    locale,
                } => {
                    tx.execute(
                        "INSERT INTO proj_users (tenant_id, user_id, name, email, locale, registered_at) \
                         VALUES ($1, $2, $3, $4, $5, $6)",
                        &[
                            &event.tenant_id,
                            &user_id,
                            &name.as_str(),
                            &email.as_str(),
                            &locale_str(locale),
                            &event.occurred_at,
                        ],
                    )
                    .await?;
                }
                RosterEvent::ScheduleDefined {
                    schedule_id,
                    name,
                    schedule,
                } => {
                    tx.execute(
                        "INSERT INTO proj_schedules (tenant_id, schedule_id, name, definition, version) \
                         VALUES ($1, $2, $3, $4, $5) \
                         ON CONFLICT (tenant_id, schedule_id) DO UPDATE SET name = EXCLUDED.name, \
                           definition = EXCLUDED.definition, version = EXCLUDED.version",
                        &[
                            &event.tenant_id,
                            &schedule_id,
                            &name.as_str(),
                            &serde_json::to_value(&schedule).map_err(corrupt)?,
                            &event.stream_version,
                        ],
                    )
                    .await?;
                }
                RosterEvent::OverrideAdded { schedule_id, added } => {
                    // The override goes to the end of the list: later ones win.
                    tx.execute(
                        "UPDATE proj_schedules SET definition = jsonb_set(definition, '{overrides}', \
                           (definition->'overrides') || jsonb_build_array($3::jsonb)), version = $4 \
                         WHERE tenant_id = $1 AND schedule_id = $2",
                        &[
                            &event.tenant_id,
                            &schedule_id,
                            &serde_json::to_value(&added).map_err(corrupt)?,
                            &event.stream_version,
                        ],
                    )
                    .await?;
                }
                RosterEvent::SubscriptionCreated {
                    subscription_id,
                    client_id,
                    service_id,
                    name,
                    email,
                    locale,
                    kinds,
                    min_severity,
                } => {
                    let kinds: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
                    tx.execute(
                        "INSERT INTO proj_subscriptions (tenant_id, subscription_id, client_id, service_id, \
                           name, email, locale, kinds, min_severity, active, created_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, true, $10)",
                        &[
                            &event.tenant_id,
                            &subscription_id,
                            &client_id,
                            &service_id,
                            &name.as_str(),
                            &email.as_str(),
                            &locale_str(locale),
                            &kinds,
                            &min_severity.as_str(),
                            &event.occurred_at,
                        ],
                    )
                    .await?;
                }
                RosterEvent::SubscriptionCancelled { subscription_id } => {
                    tx.execute(
                        "UPDATE proj_subscriptions SET active = false \
                         WHERE tenant_id = $1 AND subscription_id = $2",
                        &[&event.tenant_id, &subscription_id],
                    )
                    .await?;
                }
            }
            Ok(())
        })
    }
}

fn locale_str(l: opsledger_domain::text::Locale) -> &'static str {
    match l {
        opsledger_domain::text::Locale::Ja => "ja",
        opsledger_domain::text::Locale::En => "en",
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct UserRow {
    pub id: Uuid,
    pub name: String,
    pub email: String,
    pub locale: String,
    pub registered_at: DateTime<Utc>,
}

/// Responders by name, then id: up to `limit` after the one `after` names
/// (a cursor that names no responder of the tenant matches nothing).
pub async fn list_users(
    pool: &Pool,
    tenant: Uuid,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<UserRow>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT user_id, name, email, locale, registered_at FROM proj_users \
             WHERE tenant_id = $1 \
               AND ($2::uuid IS NULL OR (name, user_id) > \
                    (SELECT c.name, c.user_id FROM proj_users c \
                     WHERE c.tenant_id = $1 AND c.user_id = $2)) \
             ORDER BY name, user_id LIMIT $3",
            &[&tenant, &after, &limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| UserRow {
            id: r.get(0),
            name: r.get(1),
            email: r.get(2),
            locale: r.get(3),
            registered_at: r.get(4),
        })
        .collect())
}

/// Responders by id; unknown ids are left out.
pub async fn users(pool: &Pool, tenant: Uuid, ids: &[Uuid]) -> Result<Vec<UserRow>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT user_id, name, email, locale, registered_at FROM proj_users \
             WHERE tenant_id = $1 AND user_id = ANY($2)",
            &[&tenant, &ids],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| UserRow {
            id: r.get(0),
            name: r.get(1),
            email: r.get(2),
            locale: r.get(3),
            registered_at: r.get(4),
        })
        .collect())
}

#[derive(Debug, Clone, Serialize)]
pub struct PolicyRow {
    pub id: Uuid,
    #[serde(flatten)]
    pub policy: Policy,
    pub version: i64,
    pub defined_at: DateTime<Utc>,
}

fn policy_row(r: &tokio_postgres::Row) -> Result<PolicyRow, StoreError> {
    Ok(PolicyRow {
        id: r.get(0),
        policy: serde_json::from_value(r.get(1)).map_err(corrupt)?,
        version: r.get(2),
        defined_at: r.get(3),
    })
}

/// Policies by name, then id, paged like [`list_users`].
pub async fn list_policies(
    pool: &Pool,
    tenant: Uuid,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<PolicyRow>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT policy_id, definition, version, defined_at FROM proj_policies \
             WHERE tenant_id = $1 \
               AND ($2::uuid IS NULL OR (name, policy_id) > \
                    (SELECT c.name, c.policy_id FROM proj_policies c \
                     WHERE c.tenant_id = $1 AND c.policy_id = $2)) \
             ORDER BY name, policy_id LIMIT $3",
            &[&tenant, &after, &limit],
        )
        .await?;
    rows.iter().map(policy_row).collect()
}

/// The policy a service's incidents follow: the latest defined that names it.
pub async fn policy_of_service(
    pool: &Pool,
    tenant: Uuid,
    service: Uuid,
) -> Result<Option<PolicyRow>, StoreError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "SELECT policy_id, definition, version, defined_at FROM proj_policies \
             WHERE tenant_id = $1 AND service_ids @> ARRAY[$2::uuid] \
             ORDER BY defined_at DESC LIMIT 1",
            &[&tenant, &service],
        )
        .await?;
    row.as_ref().map(policy_row).transpose()
}

#[derive(Debug, Clone, Serialize)]
pub struct ScheduleRow {
    pub id: Uuid,
    pub name: String,
    #[serde(flatten)]
    pub schedule: Schedule,
    pub version: i64,
}

fn schedule_row(r: &tokio_postgres::Row) -> Result<ScheduleRow, StoreError> {
    Ok(ScheduleRow {
        id: r.get(0),
        name: r.get(1),
        schedule: serde_json::from_value(r.get(2)).map_err(corrupt)?,
        version: r.get(3),
    })
}

/// The tenant's schedules by name, then id, paged like [`list_users`].
pub async fn list_schedules(
    pool: &Pool,
    tenant: Uuid,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<ScheduleRow>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT schedule_id, name, definition, version FROM proj_schedules \
             WHERE tenant_id = $1 \
               AND ($2::uuid IS NULL OR (name, schedule_id) > \
                    (SELECT c.name, c.schedule_id FROM proj_schedules c \
                     WHERE c.tenant_id = $1 AND c.schedule_id = $2)) \
             ORDER BY name, schedule_id LIMIT $3",
            &[&tenant, &after, &limit],
        )
        .await?;
    rows.iter().map(schedule_row).collect()
}

pub async fn schedules(
    pool: &Pool,
    tenant: Uuid,
    ids: &[Uuid],
) -> Result<Vec<ScheduleRow>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT schedule_id, name, definition, version FROM proj_schedules \
             WHERE tenant_id = $1 AND schedule_id = ANY($2)",
            &[&tenant, &ids],
        )
        .await?;
    rows.iter().map(schedule_row).collect()
}

#[derive(Debug, Clone, Serialize)]
pub struct SubscriptionRow {
    pub id: Uuid,
    pub client_id: Uuid,
    pub service_id: Uuid,
    pub name: String,
    pub email: String,
    pub locale: String,
    pub kinds: Vec<String>,
    pub min_severity: String,
    pub active: bool,
    pub created_at: DateTime<Utc>,
}

/// Subscriptions, optionally only one client's or one service's, active ones
/// only, oldest first: up to `limit` after the one `after` names.
pub async fn list_subscriptions(
    pool: &Pool,
    tenant: Uuid,
    client_id: Option<Uuid>,
    service_id: Option<Uuid>,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<SubscriptionRow>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT subscription_id, client_id, service_id, name, email, locale, kinds, min_severity, \
               active, created_at FROM proj_subscriptions \
             WHERE tenant_id = $1 AND active \
               AND ($2::uuid IS NULL OR client_id = $2) AND ($3::uuid IS NULL OR service_id = $3) \
               AND ($4::uuid IS NULL OR (created_at, subscription_id) > \
                    (SELECT c.created_at, c.subscription_id FROM proj_subscriptions c \
                     WHERE c.tenant_id = $1 AND c.subscription_id = $4)) \
             ORDER BY created_at, subscription_id LIMIT $5",
            &[&tenant, &client_id, &service_id, &after, &limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| SubscriptionRow {
            id: r.get(0),
            client_id: r.get(1),
            service_id: r.get(2),
            name: r.get(3),
            email: r.get(4),
            locale: r.get(5),
            kinds: r.get(6),
            min_severity: r.get(7),
            active: r.get(8),
            created_at: r.get(9),
        })
        .collect())
}
