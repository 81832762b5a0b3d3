//! What commands look up in the directory, from the log itself: a service
//! registered a moment ago is already known, which a read model may not
//! yet say.

use opsledger_domain::directory::{service_stream, DirectoryEvent};
use opsledger_store::StoreError;
use uuid::Uuid;

use crate::Ledger;

/// The client that owns a service (a service never changes hands); `None`
/// for a service never registered in this tenant.
pub async fn client_of_service(
    ledger: Ledger<'_>,
    tenant: Uuid,
    service: Uuid,
) -> Result<Option<Uuid>, StoreError> {
    let client = ledger.pool.get().await.map_err(StoreError::from)?;
    let events =
        opsledger_store::read::read_stream(&client, tenant, &service_stream(service), None).await?;
    Ok(events.iter().find_map(
        |e| match DirectoryEvent::from_stored(&e.event_type, &e.payload) {
            Some(DirectoryEvent::ServiceRegistered { client_id, .. }) => Some(client_id),
            _ => None,
        },
    ))
}

/// Whether a stream has any event in this tenant.
pub async fn exists(ledger: Ledger<'_>, tenant: Uuid, stream: &str) -> Result<bool, StoreError> {
    let client = ledger.pool.get().await.map_err(StoreError::from)?;
    Ok(opsledger_store::directory::stream_version(&client, tenant, stream).await? > 0)
}
