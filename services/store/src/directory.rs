//! The directory read models (tenants, clients, services) and their queries.

use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Transaction};
use futures_util::future::BoxFuture;
use opsledger_domain::directory::DirectoryEvent;
use opsledger_domain::RecordedEvent;
use serde::Serialize;
use uuid::Uuid;

use crate::projection::Projection;
use crate::{Pool, StoreError};

#[derive(Debug, Default)]
pub struct DirectoryProjection;

impl Projection for DirectoryProjection {
    fn name(&self) -> &'static str {
        "directory"
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "proj_tenants",
            "proj_clients",
            "proj_services",
            "proj_service_dependencies",
        ]
    }

    fn streams(&self) -> &'static [&'static str] {
        &["tenant-", "client-", "service-"]
    }

    /// Not the name reservations, which keep names unique in the log alone.
    fn applies(&self) -> &'static [&'static str] {
        &[
            "TenantRegistered",
            "ClientRegistered",
            "ServiceRegistered",
            "ServiceDependenciesSet",
        ]
    }

    fn apply<'a>(
        &'a self,
        tx: &'a Transaction<'a>,
        event: &'a RecordedEvent,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            // Most events are not the directory's: skip them before parsing.
            if !matches!(
                event.event_type.as_str(),
                "TenantRegistered"
                    | "ClientRegistered"
                    | "ServiceRegistered"
                    | "ServiceDependenciesSet"
            ) {
                return Ok(());
            }
            let Some(parsed) = DirectoryEvent::from_stored(&event.event_type, &event.payload)
            else {
                return Ok(());
            };
            // When it was recorded, as the API reports it for a single
            // resource too (the one clock).
            let at = event.recorded_at;
            match parsed {
                DirectoryEvent::TenantRegistered {
                    tenant_id,
                    name,
                    time_zone,
                } => {
                    tx.execute(
                        "INSERT INTO proj_tenants (tenant_id, name, registered_at, time_zone) \
                         VALUES ($1, $2, $3, $4)",
                        &[
                            &tenant_id,
                            &name.as_str(),
                            &at,
                            &time_zone.as_ref().map(|z| z.as_str()),
                        ],
                    )
                    .await?;
                }
                DirectoryEvent::ClientRegistered {
                    client_id,
                    name,
                    locale,
                    contacts,
                    time_zone,
                } => {
                    let locale = serde_json::to_value(locale).unwrap_or_default();
                    tx.execute(
                        "INSERT INTO proj_clients (tenant_id, client_id, name, locale, contacts, version, \
                           registered_at, time_zone) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                        &[
                            &event.tenant_id,
                            &client_id,
                            &name.as_str(),
                            &locale.as_str().unwrap_or("en"),
                            &serde_json::to_value(&contacts).unwrap_or_default(),
                            &event.stream_version,
                            &at,
                            &time_zone.as_ref().map(|z| z.as_str()),
                        ],
                    )
                    .await?;
                }
                DirectoryEvent::ServiceRegistered {
                    service_id,
                    client_id,
                    name,
                    components,
                    sla_target_pct,
                    notice_period_h,
                    sla_hours,
                    auto_mitigate,
                } => {
                    tx.execute(
                        "INSERT INTO proj_services (tenant_id, service_id, client_id, name, components, \
                           sla_target_pct, notice_period_h, version, registered_at, sla_hours, auto_mitigate) \
                         VALUES ($1, $2, $3, $4, $5, $6::float8::numeric, $7, $8, $9, $10, $11)",
                        &[
                            &event.tenant_id,
                            &service_id,
                            &client_id,
                            &name.as_str(),
                            &serde_json::to_value(&components).unwrap_or_default(),
                            &sla_target_pct.pct(),
                            &(notice_period_h as i32),
                            &event.stream_version,
                            &at,
                            &sla_hours
                                .as_ref()
                                .map(|h| serde_json::to_value(h).unwrap_or_default()),
                            &auto_mitigate,
                        ],
                    )
                    .await?;
                }
                DirectoryEvent::ServiceDependenciesSet {
                    service_id,
                    depends_on,
                } => {
                    tx.execute(
                        "DELETE FROM proj_service_dependencies WHERE tenant_id = $1 AND service_id = $2",
                        &[&event.tenant_id, &service_id],
                    )
                    .await?;
                    tx.execute(
                        "INSERT INTO proj_service_dependencies (tenant_id, service_id, parent_id) \
                         SELECT $1, $2, unnest($3::uuid[])",
                        &[&event.tenant_id, &service_id, &depends_on],
                    )
                    .await?;
                    tx.execute(
                        "UPDATE proj_services SET version = $3 WHERE tenant_id = $1 AND service_id = $2",
                        &[&event.tenant_id, &service_id, &event.stream_version],
                    )
                    .await?;
                }
                DirectoryEvent::ClientNameReserved { .. }
                | DirectoryEvent::ServiceNameReserved { .. } => {}
            }
            Ok(())
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ClientRow {
    pub id: Uuid,
    pub name: String,
    pub locale: String,
    pub contacts: serde_json::Value,
    pub version: i64,
    pub registered_at: DateTime<Utc>,
    /// As registered; `None`: the tenant's zone.
    pub time_zone: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ServiceRow {
    pub id: Uuid,
    pub client_id: Uuid,
    pub name: String,
    pub components: serde_json::Value,
    pub sla_target_pct: f64,
    pub notice_period_h: i32,
    pub version: i64,
    pub registered_at: DateTime<Utc>,
    pub sla_hours: Option<serde_json::Value>,
    pub auto_mitigate: bool,
}

/// Which clients a query may return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFilter {
    All,
    Only(Uuid),
}

impl ClientFilter {
    fn as_param(self) -> Option<Uuid> {
        match self {
            ClientFilter::All => None,
            ClientFilter::Only(id) => Some(id),
        }
    }
}

/// Lists are ordered by id: ids are UUIDv7, so that is registration order,
/// and the last id of a page is the cursor of the next.
pub async fn list_clients(
    pool: &Pool,
    tenant: Uuid,
    filter: ClientFilter,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<ClientRow>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT client_id, name, locale, contacts, version, registered_at, time_zone FROM proj_clients \
             WHERE tenant_id = $1 AND ($2::uuid IS NULL OR client_id = $2) \
               AND ($3::uuid IS NULL OR client_id > $3) ORDER BY client_id LIMIT $4",
            &[&tenant, &filter.as_param(), &after, &limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| ClientRow {
            id: r.get(0),
            name: r.get(1),
            locale: r.get(2),
            contacts: r.get(3),
            version: r.get(4),
            registered_at: r.get(5),
            time_zone: r.get(6),
        })
        .collect())
}

pub async fn list_services(
    pool: &Pool,
    tenant: Uuid,
    filter: ClientFilter,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<ServiceRow>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT service_id, client_id, name, components, sla_target_pct::float8, notice_period_h, \
               version, registered_at, sla_hours, auto_mitigate FROM proj_services \
             WHERE tenant_id = $1 AND ($2::uuid IS NULL OR client_id = $2) \
               AND ($3::uuid IS NULL OR service_id > $3) ORDER BY service_id LIMIT $4",
            &[&tenant, &filter.as_param(), &after, &limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| ServiceRow {
            id: r.get(0),
            client_id: r.get(1),
            name: r.get(2),
            components: r.get(3),
            sla_target_pct: r.get(4),
            notice_period_h: r.get(5),
            version: r.get(6),
            registered_at: r.get(7),
            sla_hours: r.get(8),
            auto_mitigate: r.get(9),
        })
        .collect())
}

/// The current version of a stream (0: it does not exist), read from the
/// events themselves, so it is never behind a projection.
pub async fn stream_version<C: GenericClient>(
    client: &C,
    tenant: Uuid,
    stream_id: &str,
) -> Result<i64, StoreError> {
    let row = client
        .query_one(
            "SELECT coalesce(max(stream_version), 0) FROM events WHERE tenant_id = $1 AND stream_id = $2",
            &[&tenant, &stream_id],
        )
        .await?;
    Ok(row.get(0))
}

/// Key of the session advisory lock that serialises tenant registrations by
/// name (`opsledger tenant add`), so two adding one name at once cannot both
/// find it free.
const TENANT_REGISTRATION_LOCK: i64 = 0x6f70_736c_746e_6164;

/// Waits for the tenant registration lock, held by this session until
/// [`unlock_tenant_registrations`].
pub async fn lock_tenant_registrations<C: GenericClient>(client: &C) -> Result<(), StoreError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&TENANT_REGISTRATION_LOCK])
        .await?;
    Ok(())
}

/// Unlocking fails only on a broken connection, which the pool discards:
/// either way no pooled connection keeps holding the lock.
pub async fn unlock_tenant_registrations<C: GenericClient>(client: &C) {
    let _ = client
        .execute(
            "SELECT pg_advisory_unlock($1)",
            &[&TENANT_REGISTRATION_LOCK],
        )
        .await;
}

/// Every registered tenant and its name, from the `tenant-<id>` streams (not
/// the directory read model, which only a running service keeps). Every
/// tenant has a chain head, so each stream is found through the
/// `(tenant_id, stream_id, …)` index, whatever else the store holds.
pub async fn registered_tenants<C: GenericClient>(
    client: &C,
) -> Result<Vec<(Uuid, opsledger_domain::text::Name)>, StoreError> {
    let rows = client
        .query(
            "SELECT e.tenant_id, e.payload::text \
             FROM (SELECT DISTINCT tenant_id FROM tenant_chain_heads) t \
             JOIN events e ON e.tenant_id = t.tenant_id \
               AND e.stream_id = 'tenant-' || t.tenant_id::text \
             WHERE e.event_type = 'TenantRegistered' \
             ORDER BY e.position",
            &[],
        )
        .await?;
    rows.iter()
        .map(|row| {
            let tenant: Uuid = row.get(0);
            let payload: String = row.get(1);
            match serde_json::from_str(&payload)
                .ok()
                .and_then(|p| DirectoryEvent::from_stored("TenantRegistered", &p))
            {
                Some(DirectoryEvent::TenantRegistered {
                    tenant_id, name, ..
                }) => Ok((tenant_id, name)),
                _ => Err(StoreError::Corrupt(format!(
                    "the TenantRegistered event of tenant {tenant} does not decode"
                ))),
            }
        })
        .collect()
}

/// The services a report covers: one, or every service of one client, by
/// name. Read from the directory read model.
pub async fn report_services(
    pool: &Pool,
    tenant: Uuid,
    service: Option<Uuid>,
    client_id: Option<Uuid>,
) -> Result<Vec<ServiceRow>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT service_id, client_id, name, components, sla_target_pct::float8, notice_period_h, \
               version, registered_at, sla_hours, auto_mitigate FROM proj_services \
             WHERE tenant_id = $1 AND ($2::uuid IS NULL OR service_id = $2) \
               AND ($3::uuid IS NULL OR client_id = $3) ORDER BY name, service_id",
            &[&tenant, &service, &client_id],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| ServiceRow {
            id: r.get(0),
            client_id: r.get(1),
            name: r.get(2),
            components: r.get(3),
            sla_target_pct: r.get(4),
            notice_period_h: r.get(5),
            version: r.get(6),
            registered_at: r.get(7),
            sla_hours: r.get(8),
            auto_mitigate: r.get(9),
        })
        .collect())
}

/// The zone a client's calendar periods are in: its own, else its tenant's,
/// else UTC. `None` when the client is not (yet) in the read model.
pub async fn client_time_zone(
    pool: &Pool,
    tenant: Uuid,
    client_id: Uuid,
) -> Result<Option<String>, StoreError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "SELECT coalesce(c.time_zone, t.time_zone, 'UTC') FROM proj_clients c \
             LEFT JOIN proj_tenants t ON t.tenant_id = c.tenant_id \
             WHERE c.tenant_id = $1 AND c.client_id = $2",
            &[&tenant, &client_id],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// Ancestors met at most: parents are capped per service
/// (`dependency::PARENTS_MAX`) and the graph is acyclic, so this bounds
/// only a pathological tenant's walk, not a real one.
const ANCESTORS_MAX: i64 = 1_000;
/// Down ancestors reported at most (the decision names one).
const DOWN_ANCESTORS_MAX: i64 = 100;

/// A service's ancestors (its parents, theirs, …) that have a probe down
/// (not removed), as the dependency and probe read models say: direct
/// parents first, then by id, so the one a decision names is stable.
/// `UNION` keeps each ancestor once, so a diamond is walked once and even a
/// cycle (which the commands refuse) would end.
pub async fn down_ancestors<C: GenericClient>(
    client: &C,
    tenant: Uuid,
    service: Uuid,
) -> Result<Vec<opsledger_domain::alert::DownParent>, StoreError> {
    let rows = client
        .query(
            "WITH RECURSIVE ancestors(service_id) AS ( \
               SELECT parent_id FROM proj_service_dependencies \
               WHERE tenant_id = $1 AND service_id = $2 \
               UNION \
               SELECT d.parent_id FROM proj_service_dependencies d \
               JOIN ancestors a ON d.tenant_id = $1 AND d.service_id = a.service_id), \
             walked AS (SELECT service_id FROM ancestors LIMIT $3) \
             SELECT p.service_id, p.probe_id FROM walked w \
             JOIN proj_probes p ON p.tenant_id = $1 AND p.service_id = w.service_id \
             WHERE p.health = 'down' AND NOT p.removed \
             ORDER BY EXISTS (SELECT 1 FROM proj_service_dependencies d \
                 WHERE d.tenant_id = $1 AND d.service_id = $2 AND d.parent_id = p.service_id) DESC, \
               p.service_id, p.probe_id \
             LIMIT $4",
            &[&tenant, &service, &ANCESTORS_MAX, &DOWN_ANCESTORS_MAX],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| opsledger_domain::alert::DownParent {
            parent_service_id: r.get(0),
            probe_id: r.get(1),
        })
        .collect())
}

/// Services that depend directly on `service` (its children), by id, at
/// most `limit`.
pub async fn dependents(
    pool: &Pool,
    tenant: Uuid,
    service: Uuid,
    limit: i64,
) -> Result<Vec<Uuid>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT service_id FROM proj_service_dependencies \
             WHERE tenant_id = $1 AND parent_id = $2 ORDER BY service_id LIMIT $3",
            &[&tenant, &service, &limit],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Those of `ids` that are services of `client_id` (the directory read
/// model): what a client user may see of a service's parents.
pub async fn of_client(
    pool: &Pool,
    tenant: Uuid,
    client_id: Uuid,
    ids: &[Uuid],
) -> Result<Vec<Uuid>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT service_id FROM proj_services \
             WHERE tenant_id = $1 AND client_id = $2 AND service_id = ANY($3) ORDER BY service_id",
            &[&tenant, &client_id, &ids],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}
