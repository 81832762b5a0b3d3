//! The application layer, between `store` and `api`: every command, from a
//! handler or a worker, runs through [`run::run`] — load and fold the record
//! (with the stored `recorded_at`, the one clock), check `If-Match`, look up
//! what deciding needs, decide (the domain's [`Aggregate::decide`]), append
//! the whole outcome in one transaction, and answer with the record as the
//! commit left it. No HTTP and no SQL here: `api` maps requests to commands
//! and answers to responses, `store` owns the database.
//!
//! [`Aggregate::decide`]: opsledger_domain::aggregate::Aggregate::decide

pub mod backup_schedules;
pub mod changes;
pub mod directory;
pub mod escalation;
pub mod heartbeats;
pub mod history;
pub mod incidents;
pub mod ingest;
pub mod probes;
pub mod reports;
pub mod run;
pub mod thresholds;
pub mod windows;

use opsledger_store::{Committer, Pool};

/// The store a command reads and appends through.
#[derive(Clone, Copy)]
pub struct Ledger<'a> {
    pub pool: &'a Pool,
    pub committer: &'a Committer,
}

/// The tenant's latest signed checkpoint, as the note a client mail carries
/// at its foot.
pub async fn latest_checkpoint(
    ledger: Ledger<'_>,
    tenant: uuid::Uuid,
) -> Result<Option<String>, opsledger_store::StoreError> {
    let client = ledger
        .pool
        .get()
        .await
        .map_err(opsledger_store::StoreError::from)?;
    Ok(opsledger_store::audit::checkpoint(&client, tenant, None)
        .await?
        .map(|c| c.note))
}
