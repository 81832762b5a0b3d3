//! Which tenants exist. A token for a tenant that was never registered opens
//! nothing. Registered tenants are cached: a tenant is never unregistered.

use std::collections::HashSet;
use std::sync::RwLock;

use opsledger_domain::directory::tenant_stream;
use opsledger_store::Pool;
use uuid::Uuid;

use crate::problem::ApiError;

#[derive(Debug, Default)]
pub struct TenantDirectory {
    known: RwLock<HashSet<Uuid>>,
}

impl TenantDirectory {
    pub async fn require(&self, pool: &Pool, tenant: Uuid) -> Result<(), ApiError> {
        if self
            .known
            .read()
            .map(|k| k.contains(&tenant))
            .unwrap_or(false)
        {
            return Ok(());
        }
        let client = pool
            .get()
            .await
            .map_err(opsledger_store::StoreError::from)?;
        let version =
            opsledger_store::directory::stream_version(&client, tenant, &tenant_stream(tenant))
                .await?;
        if version == 0 {
            return Err(ApiError::Forbidden(format!(
                "tenant {tenant} is not registered"
            )));
        }
        if let Ok(mut known) = self.known.write() {
            known.insert(tenant);
        }
        Ok(())
    }
}
