//! Migrations from `schema/`, embedded at build time and applied by refinery,
//! which records each one with a checksum and refuses to go on when an
//! applied migration no longer matches its file.

use crate::{pool, DbConfig, StoreError};

mod embedded {
    refinery::embed_migrations!("../../schema");
}

/// Serialises concurrent `migrate` runs (two instances starting together).
const MIGRATION_LOCK_KEY: i64 = 0x6f70_736c_6564_6701;

pub async fn migrate(config: &DbConfig) -> Result<Vec<String>, StoreError> {
    let mut client = pool::connect_owner(config).await?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await?;
    let result = embedded::migrations::runner()
        .set_abort_divergent(true)
        .set_abort_missing(true)
        .run_async(&mut client)
        .await;
    // After the schema, the order: a database restored into a fresh cluster
    // is put right here, before anything appends to it.
    let realigned = match result {
        Ok(_) => Some(crate::order::realign(&mut client).await),
        Err(_) => None,
    };
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
        .await?;
    let report = result?;
    if let Some(crate::order::Realigned::Shifted { from, to }) = realigned.transpose()? {
        tracing::warn!(
            from,
            to,
            "transaction ids are behind the event log (restored into a fresh cluster?): \
             shifted the order key past it"
        );
    }
    Ok(report
        .applied_migrations()
        .iter()
        .map(|m| m.to_string())
        .collect())
}

/// Names of the migrations this binary carries, in order.
pub fn known() -> Vec<String> {
    embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| m.to_string())
        .collect()
}
