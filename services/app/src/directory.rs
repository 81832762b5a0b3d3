//! What commands look up in the directory, from the log itself: a service
//! registered a moment ago is already known, which a read model may not
//! yet say.

use std::collections::BTreeSet;

use opsledger_domain::dependency::{
    DependencyContext, DependencyGraph, GraphEvent, GRAPH_STREAM, PARENTS_MAX,
};
use opsledger_domain::directory::{self as dir, Service};
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

/// What setting `service`'s parents to `depends_on` is decided on: the
/// tenant's dependency graph as its own stream records it (not a read
/// model, so a change a moment ago counts, and its version guards the
/// append), and which named parents are not services of this tenant.
pub async fn dependency_context(
    ledger: Ledger<'_>,
    tenant: Uuid,
    depends_on: &[Uuid],
) -> Result<DependencyContext, StoreError> {
    let events = {
        let client = ledger.pool.get().await.map_err(StoreError::from)?;
        opsledger_store::read::read_stream(&client, tenant, GRAPH_STREAM, None).await?
    };
    let version = events.last().map_or(0, |e| e.stream_version);
    let parsed: Vec<GraphEvent> = events
        .iter()
        .filter_map(|e| GraphEvent::from_stored(&e.event_type, &e.payload))
        .collect();
    let graph = DependencyGraph::fold(&parsed, version);
    let named: BTreeSet<Uuid> = depends_on.iter().copied().collect();
    let mut unknown = Vec::new();
    // Too many is refused before anything is looked up.
    if named.len() <= PARENTS_MAX {
        for parent in named {
            if !exists(ledger, tenant, &dir::service_stream(parent)).await? {
                unknown.push(parent);
            }
        }
    }
    Ok(DependencyContext { graph, unknown })
}
