//! Administrative commands that append events: the CLI's and the tests'.

use chrono::Utc;
use opsledger_domain::directory::{tenant_stream, DirectoryEvent};
use opsledger_domain::period::TimeZoneName;
use opsledger_domain::text::Name;
use opsledger_domain::{Metadata, NewEvent};
use opsledger_store::{
    append, directory, AppendError, AppendRequest, ExpectedVersion, Pool, StoreError, StreamAppend,
};
use uuid::Uuid;

/// Why [`add_tenant`] registered nothing.
#[derive(Debug, thiserror::Error)]
pub enum AddTenantError {
    #[error(
        "a tenant named {existing_name:?} already exists (id {existing_id}); \
         tenant names are unique, ignoring case, so {name:?} was not added"
    )]
    NameTaken {
        name: String,
        existing_id: Uuid,
        existing_name: String,
    },
    #[error("a tenant with id {0} already exists")]
    IdTaken(Uuid),
    #[error(transparent)]
    Append(#[from] AppendError),
}

impl From<StoreError> for AddTenantError {
    fn from(e: StoreError) -> Self {
        AddTenantError::Append(AppendError::Store(e))
    }
}

/// Registers a tenant under a name no other tenant has, as compared by
/// [`Name::unique_key`] (case and surrounding space ignored): the CLI's
/// `tenant add`. Concurrent calls are serialised by an advisory lock held
/// from the check to the commit, so one name cannot be taken twice.
///
/// The registered tenants are read from their `tenant-<id>` streams, not
/// from the directory read model, which only a running service keeps.
pub async fn add_tenant(
    pool: &Pool,
    id: Uuid,
    name: &str,
    time_zone: Option<&str>,
    actor: &str,
) -> Result<(), AddTenantError> {
    let parsed = Name::parse("name", name).map_err(AppendError::Invalid)?;
    let time_zone = time_zone
        .map(TimeZoneName::parse)
        .transpose()
        .map_err(AppendError::Invalid)?;
    let key = parsed.unique_key();
    let lock = pool.get().await.map_err(|e| AppendError::Store(e.into()))?;
    directory::lock_tenant_registrations(&lock).await?;
    let outcome = async {
        let taken = directory::registered_tenants(&lock)
            .await?
            .into_iter()
            .find(|(_, existing)| existing.unique_key() == key);
        if let Some((existing_id, existing)) = taken {
            return Err(AddTenantError::NameTaken {
                name: parsed.as_str().to_owned(),
                existing_id,
                existing_name: existing.as_str().to_owned(),
            });
        }
        register_tenant_in(pool, id, parsed.as_str(), time_zone, actor)
            .await
            .map_err(|e| match e {
                AppendError::Conflict { .. } => AddTenantError::IdTaken(id),
                other => AddTenantError::Append(other),
            })
    }
    .await;
    directory::unlock_tenant_registrations(&lock).await;
    outcome
}

/// Registers a tenant: its `tenant-<id>` stream must not exist yet. Does not
/// look at other tenants' names: the test harness and the benchmark register
/// their fixed-name tenants through it, each in a database of their own. The
/// CLI goes through [`add_tenant`], which does.
pub async fn register_tenant(
    pool: &Pool,
    id: Uuid,
    name: &str,
    actor: &str,
) -> Result<(), AppendError> {
    register_tenant_in(pool, id, name, None, actor).await
}

/// [`register_tenant`] with the time zone its clients' reports default to.
pub async fn register_tenant_in(
    pool: &Pool,
    id: Uuid,
    name: &str,
    time_zone: Option<TimeZoneName>,
    actor: &str,
) -> Result<(), AppendError> {
    let name = Name::parse("name", name).map_err(AppendError::Invalid)?;
    let event = DirectoryEvent::TenantRegistered {
        tenant_id: id,
        name,
        time_zone,
    };
    let meta = Metadata {
        actor: actor.to_owned(),
        role: "admin".into(),
        request_id: None,
        correlation_id: None,
        causation_id: None,
        source: "cli".into(),
    };
    let request = AppendRequest {
        tenant_id: id,
        streams: vec![StreamAppend {
            stream_id: tenant_stream(id),
            expected: ExpectedVersion::NoStream,
            events: vec![NewEvent::new(
                event.type_name(),
                event.payload(),
                meta,
                Utc::now(),
            )],
        }],
        idempotency: None,
    };
    append::append_direct(pool, &request).await.map(|_| ())
}
