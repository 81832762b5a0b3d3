//! Read models of the people who are told: responders, escalation policies,
//! on-call schedules and client subscriptions. A batch writes each table
//! with one statement per kind of write.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use futures_util::future::BoxFuture;
use opsledger_domain::access::Role;
use opsledger_domain::escalation::{Policy, PolicyEvent};
use opsledger_domain::oncall::Schedule;
use opsledger_domain::roster::RosterEvent;
use opsledger_domain::RecordedEvent;
use serde::Serialize;
use uuid::Uuid;

use crate::projection::{self, array_literal, Projection};
use crate::{Pool, StoreError};

fn corrupt(e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(format!("roster state: {e}"))
}

/// The roster read models. Their timestamps (`registered_at`, `defined_at`,
/// `created_at`) are the instants the events were recorded at, which the
/// API also answers the create with and reads by id fold from the stream,
/// so all three agree.
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
        self.apply_batch(tx, std::slice::from_ref(event))
    }

    /// A statement per table and kind of write for the whole batch: new
    /// responders and subscriptions, cancellations, policies (the last
    /// definition of each wins), and schedules folded in memory (a
    /// definition, then overrides appended to it), read first where an
    /// override continues one defined before the batch.
    fn apply_batch<'a>(
        &'a self,
        tx: &'a Transaction<'a>,
        events: &'a [RecordedEvent],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut w = RosterWrites::default();
            for event in events {
                if let Some(PolicyEvent::EscalationPolicyDefined { policy_id, policy }) =
                    PolicyEvent::from_stored(&event.event_type, &event.payload)
                {
                    let key = (event.tenant_id, policy_id);
                    let row = PolicyWrite {
                        name: policy.name.clone(),
                        definition: serde_json::to_value(&policy).map_err(corrupt)?,
                        service_ids: array_literal(&policy.service_ids),
                        version: event.stream_version,
                        defined_at: event.recorded_at,
                    };
                    match w.policies.iter_mut().find(|(k, _)| *k == key) {
                        Some((_, last)) => *last = row,
                        None => w.policies.push((key, row)),
                    }
                    continue;
                }
                let Some(parsed) = RosterEvent::from_stored(&event.event_type, &event.payload)
                else {
                    continue;
                };
                w.take(event, parsed)?;
            }
            w.write(tx).await
        })
    }
}

/// A policy's row.
struct PolicyWrite {
    name: String,
    definition: serde_json::Value,
    service_ids: String,
    version: i64,
    defined_at: DateTime<Utc>,
}

/// A schedule's row as a batch folds it: `None` until defined (an
/// override of a schedule with no row changes nothing).
struct ScheduleWrite {
    stored: Option<(String, serde_json::Value, i64)>,
    /// Defined or overridden in this batch.
    written: bool,
}

/// A responder's row: tenant, id, name, email, locale, registered at,
/// roles (an array literal).
type NewUser = (
    Uuid,
    Uuid,
    String,
    String,
    &'static str,
    DateTime<Utc>,
    String,
);

/// What a roster batch writes.
#[derive(Default)]
struct RosterWrites {
    users: Vec<NewUser>,
    policies: Vec<((Uuid, Uuid), PolicyWrite)>,
    /// Schedules in order of first appearance, and their events in order.
    schedules: Vec<(Uuid, Uuid)>,
    schedule_events: Vec<(Uuid, Uuid, ScheduleChange)>,
    subscriptions: Subscriptions,
    cancelled: Vec<(Uuid, Uuid)>,
}

enum ScheduleChange {
    Defined {
        name: String,
        definition: serde_json::Value,
        version: i64,
    },
    Overridden {
        added: serde_json::Value,
        version: i64,
    },
}

/// New subscriptions, one vector per column (for `unnest`).
#[derive(Default)]
struct Subscriptions {
    tenant: Vec<Uuid>,
    id: Vec<Uuid>,
    client: Vec<Uuid>,
    service: Vec<Uuid>,
    name: Vec<String>,
    email: Vec<String>,
    locale: Vec<&'static str>,
    kinds: Vec<String>,
    min_severity: Vec<&'static str>,
    created_at: Vec<DateTime<Utc>>,
}

impl RosterWrites {
    fn take(&mut self, event: &RecordedEvent, parsed: RosterEvent) -> Result<(), StoreError> {
        let t = event.tenant_id;
        match parsed {
            RosterEvent::UserRegistered {
                user_id,
                name,
                email,
                locale,
                roles,
            } => self.users.push((
                t,
                user_id,
                name.as_str().to_owned(),
                email.as_str().to_owned(),
                locale_str(locale),
                event.recorded_at,
                array_literal(&roles.iter().map(|r| r.as_str()).collect::<Vec<_>>()),
            )),
            RosterEvent::ScheduleDefined {
                schedule_id,
                name,
                schedule,
            } => self.schedule(
                t,
                schedule_id,
                ScheduleChange::Defined {
                    name: name.as_str().to_owned(),
                    definition: serde_json::to_value(&schedule).map_err(corrupt)?,
                    version: event.stream_version,
                },
            ),
            // The override goes to the end of the list: later ones win.
            RosterEvent::OverrideAdded { schedule_id, added } => self.schedule(
                t,
                schedule_id,
                ScheduleChange::Overridden {
                    added: serde_json::to_value(&added).map_err(corrupt)?,
                    version: event.stream_version,
                },
            ),
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
                let s = &mut self.subscriptions;
                s.tenant.push(t);
                s.id.push(subscription_id);
                s.client.push(client_id);
                s.service.push(service_id);
                s.name.push(name.as_str().to_owned());
                s.email.push(email.as_str().to_owned());
                s.locale.push(locale_str(locale));
                let kinds: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
                s.kinds.push(array_literal(&kinds));
                s.min_severity.push(min_severity.as_str());
                s.created_at.push(event.recorded_at);
            }
            RosterEvent::SubscriptionCancelled { subscription_id } => {
                self.cancelled.push((t, subscription_id));
            }
        }
        Ok(())
    }

    fn schedule(&mut self, tenant: Uuid, id: Uuid, change: ScheduleChange) {
        if !self.schedules.contains(&(tenant, id)) {
            self.schedules.push((tenant, id));
        }
        self.schedule_events.push((tenant, id, change));
    }

    async fn write(self, tx: &Transaction<'_>) -> Result<(), StoreError> {
        if !self.users.is_empty() {
            let t: Vec<Uuid> = self.users.iter().map(|u| u.0).collect();
            let id: Vec<Uuid> = self.users.iter().map(|u| u.1).collect();
            let name: Vec<&str> = self.users.iter().map(|u| u.2.as_str()).collect();
            let email: Vec<&str> = self.users.iter().map(|u| u.3.as_str()).collect();
            let locale: Vec<&str> = self.users.iter().map(|u| u.4).collect();
            let at: Vec<DateTime<Utc>> = self.users.iter().map(|u| u.5).collect();
            let roles: Vec<&str> = self.users.iter().map(|u| u.6.as_str()).collect();
            projection::execute(
                tx,
                "INSERT INTO proj_users (tenant_id, user_id, name, email, locale, registered_at, \
                   roles) \
                 SELECT t, i, n, e, l, at, r::text[] FROM unnest($1::uuid[], $2::uuid[], \
                   $3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::text[]) \
                   AS u(t, i, n, e, l, at, r)",
                &[&t, &id, &name, &email, &locale, &at, &roles],
            )
            .await?;
        }
        if !self.policies.is_empty() {
            let t: Vec<Uuid> = self.policies.iter().map(|(k, _)| k.0).collect();
            let id: Vec<Uuid> = self.policies.iter().map(|(k, _)| k.1).collect();
            let name: Vec<&str> = self.policies.iter().map(|(_, p)| p.name.as_str()).collect();
            let definition: Vec<&serde_json::Value> =
                self.policies.iter().map(|(_, p)| &p.definition).collect();
            let services: Vec<&str> = self
                .policies
                .iter()
                .map(|(_, p)| p.service_ids.as_str())
                .collect();
            let version: Vec<i64> = self.policies.iter().map(|(_, p)| p.version).collect();
            let at: Vec<DateTime<Utc>> = self.policies.iter().map(|(_, p)| p.defined_at).collect();
            projection::execute(
                tx,
                "INSERT INTO proj_policies (tenant_id, policy_id, name, definition, service_ids, \
                   version, defined_at) \
                 SELECT t, i, n, d, sv::uuid[], v, at FROM unnest($1::uuid[], $2::uuid[], \
                   $3::text[], $4::jsonb[], $5::text[], $6::int8[], $7::timestamptz[]) \
                   AS u(t, i, n, d, sv, v, at) \
                 ON CONFLICT (tenant_id, policy_id) DO UPDATE SET name = EXCLUDED.name, \
                   definition = EXCLUDED.definition, service_ids = EXCLUDED.service_ids, \
                   version = EXCLUDED.version, defined_at = EXCLUDED.defined_at",
                &[&t, &id, &name, &definition, &services, &version, &at],
            )
            .await?;
        }
        write_schedules(tx, &self.schedules, self.schedule_events).await?;
        let s = &self.subscriptions;
        if !s.id.is_empty() {
            projection::execute(tx,
                "INSERT INTO proj_subscriptions (tenant_id, subscription_id, client_id, service_id, \
                   name, email, locale, kinds, min_severity, active, created_at) \
                 SELECT t, i, c, s, n, e, l, k::text[], m, true, at FROM unnest($1::uuid[], \
                   $2::uuid[], $3::uuid[], $4::uuid[], $5::text[], $6::text[], $7::text[], \
                   $8::text[], $9::text[], $10::timestamptz[]) AS u(t, i, c, s, n, e, l, k, m, at)",
                &[
                    &s.tenant,
                    &s.id,
                    &s.client,
                    &s.service,
                    &s.name,
                    &s.email,
                    &s.locale,
                    &s.kinds,
                    &s.min_severity,
                    &s.created_at,
                ],
            )
            .await?;
        }
        if !self.cancelled.is_empty() {
            let (t, id): (Vec<Uuid>, Vec<Uuid>) = self.cancelled.iter().copied().unzip();
            projection::execute(
                tx,
                "UPDATE proj_subscriptions p SET active = false \
                 FROM unnest($1::uuid[], $2::uuid[]) AS u(t, i) \
                 WHERE p.tenant_id = u.t AND p.subscription_id = u.i",
                &[&t, &id],
            )
            .await?;
        }
        Ok(())
    }
}

/// Folds the batch's schedule events onto the stored rows (read in one
/// query for schedules overridden before being defined here) and writes
/// each schedule once.
async fn write_schedules(
    tx: &Transaction<'_>,
    schedules: &[(Uuid, Uuid)],
    events: Vec<(Uuid, Uuid, ScheduleChange)>,
) -> Result<(), StoreError> {
    if schedules.is_empty() {
        return Ok(());
    }
    let mut rows: HashMap<(Uuid, Uuid), ScheduleWrite> = HashMap::new();
    let mut continued = Vec::new();
    for (t, id, change) in &events {
        if rows.contains_key(&(*t, *id)) {
            continue;
        }
        rows.insert(
            (*t, *id),
            ScheduleWrite {
                stored: None,
                written: false,
            },
        );
        if matches!(change, ScheduleChange::Overridden { .. }) {
            continued.push((*t, *id));
        }
    }
    if !continued.is_empty() {
        let (t, id): (Vec<Uuid>, Vec<Uuid>) = continued.iter().copied().unzip();
        for r in projection::query(
            tx,
            "SELECT p.tenant_id, p.schedule_id, p.name, p.definition, p.version \
                 FROM proj_schedules p JOIN unnest($1::uuid[], $2::uuid[]) AS k(t, i) \
                   ON p.tenant_id = k.t AND p.schedule_id = k.i",
            &[&t, &id],
        )
        .await?
        {
            if let Some(row) = rows.get_mut(&(r.get(0), r.get(1))) {
                row.stored = Some((r.get(2), r.get(3), r.get(4)));
            }
        }
    }
    for (t, id, change) in events {
        let row = rows.get_mut(&(t, id)).expect("inserted above");
        match change {
            ScheduleChange::Defined {
                name,
                definition,
                version,
            } => {
                row.stored = Some((name, definition, version));
                row.written = true;
            }
            ScheduleChange::Overridden { added, version } => {
                let Some((_, definition, v)) = row.stored.as_mut() else {
                    continue;
                };
                append_override(definition, added)?;
                *v = version;
                row.written = true;
            }
        }
    }
    let (mut tenant, mut ids, mut names, mut definitions, mut versions) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for key in schedules {
        let row = &rows[key];
        let (true, Some((name, definition, version))) = (row.written, &row.stored) else {
            continue;
        };
        tenant.push(key.0);
        ids.push(key.1);
        names.push(name.as_str());
        definitions.push(definition);
        versions.push(*version);
    }
    if ids.is_empty() {
        return Ok(());
    }
    projection::execute(
        tx,
        "INSERT INTO proj_schedules (tenant_id, schedule_id, name, definition, version) \
         SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::jsonb[], $5::int8[]) \
         ON CONFLICT (tenant_id, schedule_id) DO UPDATE SET name = EXCLUDED.name, \
           definition = EXCLUDED.definition, version = EXCLUDED.version",
        &[&tenant, &ids, &names, &definitions, &versions],
    )
    .await?;
    Ok(())
}

/// Appends an override to a definition's list, as jsonb's `||` would.
fn append_override(
    definition: &mut serde_json::Value,
    added: serde_json::Value,
) -> Result<(), StoreError> {
    let overrides = definition
        .get_mut("overrides")
        .filter(|o| !o.is_null())
        .ok_or_else(|| StoreError::Corrupt("a schedule without overrides".into()))?;
    match overrides {
        serde_json::Value::Array(list) => list.push(added),
        other => *other = serde_json::Value::Array(vec![other.take(), added]),
    }
    Ok(())
}

fn locale_str(l: opsledger_domain::text::Locale) -> &'static str {
    match l {
        opsledger_domain::text::Locale::Ja => "ja",
        opsledger_domain::text::Locale::En => "en",
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UserRow {
    pub id: Uuid,
    pub name: String,
    pub email: String,
    pub locale: String,
    /// The staff roles the responder is registered with (`approver` is
    /// asked to approve changes); they grant nothing.
    pub roles: Vec<Role>,
    pub registered_at: DateTime<Utc>,
}

impl UserRow {
    fn of(r: &tokio_postgres::Row) -> UserRow {
        let roles: Vec<String> = r.get(5);
        UserRow {
            id: r.get(0),
            name: r.get(1),
            email: r.get(2),
            locale: r.get(3),
            registered_at: r.get(4),
            roles: roles.iter().filter_map(|r| Role::parse(r)).collect(),
        }
    }
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
            "SELECT user_id, name, email, locale, registered_at, roles FROM proj_users \
             WHERE tenant_id = $1 \
               AND ($2::uuid IS NULL OR (name, user_id) > \
                    (SELECT c.name, c.user_id FROM proj_users c \
                     WHERE c.tenant_id = $1 AND c.user_id = $2)) \
             ORDER BY name, user_id LIMIT $3",
            &[&tenant, &after, &limit],
        )
        .await?;
    Ok(rows.iter().map(UserRow::of).collect())
}

/// Responders by id; unknown ids are left out.
pub async fn users(pool: &Pool, tenant: Uuid, ids: &[Uuid]) -> Result<Vec<UserRow>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT user_id, name, email, locale, registered_at, roles FROM proj_users \
             WHERE tenant_id = $1 AND user_id = ANY($2)",
            &[&tenant, &ids],
        )
        .await?;
    Ok(rows.iter().map(UserRow::of).collect())
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
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

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
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

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
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
