//! What commands look up in the directory, from the log itself: a service
//! registered a moment ago is already known, which a read model may not
//! yet say.

use opsledger_domain::directory::Service;
use opsledger_store::StoreError;
use uuid::Uuid;

use crate::Ledger;

/// A service as registered in this tenant, if it was.
pub async fn service(
    ledger: Ledger<'_>,
    tenant: Uuid,
    service: Uuid,
) -> Result<Option<Service>, StoreError> {
    Ok(crate::run::load::<Service>(ledger, tenant, service, None)
        .await?
        .0)
}

/// The client that owns a service (a service never changes hands); `None`
/// for a service never registered in this tenant.
pub async fn client_of_service(
    ledger: Ledger<'_>,
    tenant: Uuid,
    service_id: Uuid,
) -> Result<Option<Uuid>, StoreError> {
    Ok(service(ledger, tenant, service_id)
        .await?
        .map(|s| s.client_id))
}

/// Whether a stream has any event in this tenant.
pub async fn exists(ledger: Ledger<'_>, tenant: Uuid, stream: &str) -> Result<bool, StoreError> {
    let client = ledger.pool.get().await.map_err(StoreError::from)?;
    Ok(opsledger_store::directory::stream_version(&client, tenant, stream).await? > 0)
}
