//! What deciding a step of a change needs from the read models: the
//! freezes in force over its services and the changes whose schedules
//! overlap. The rules (a freeze holds a normal change back, others record
//! it) are `domain::change`'s.

use chrono::{DateTime, Duration, Utc};
use opsledger_domain::change::{Change, Context, FreezeFacts, Kind};
use opsledger_store::changes as store_changes;
use opsledger_store::StoreError;
use uuid::Uuid;

use crate::Ledger;

/// How long scheduling waits for the change projection to catch up with
/// what was committed before it (freezes, other schedules). Generous: a
/// freeze missed costs far more than a person waiting a few seconds, and
/// any long transaction in the cluster holds every follower back.
const SCHEDULE_READ_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The step a context is looked up for.
#[derive(Debug, Clone, Copy)]
pub enum Lookup {
    /// Nothing beyond the change.
    Nothing,
    /// Scheduling over this period.
    Schedule(DateTime<Utc>, DateTime<Utc>),
    /// Starting now.
    Start,
}

pub async fn context(
    ledger: Ledger<'_>,
    tenant: Uuid,
    change: &Change,
    lookup: Lookup,
) -> Result<Context, StoreError> {
    let (start, end) = match lookup {
        Lookup::Schedule(start, end) => (start, end),
        // Only a normal change is held back by a freeze when it starts.
        Lookup::Start if change.kind == Kind::Normal => {
            let now = Utc::now();
            (now, now + Duration::microseconds(1))
        }
        _ => return Ok(Context::default()),
    };
    // Freezes and schedules recorded before this request count, on
    // whichever instance they were recorded.
    if !await_read_model(ledger, store_changes::PROJECTION, SCHEDULE_READ_WAIT).await? {
        tracing::warn!(change = %change.id, "deciding on a change projection that is behind");
    }
    let freezes =
        store_changes::blocking_freezes(ledger.pool, tenant, &change.service_ids, start, end)
            .await?
            .into_iter()
            .map(|f| FreezeFacts {
                id: f.item.id,
                reason: f.item.reason,
                start: f.item.start,
                end: f.item.end,
            })
            .collect();
    let overlapping = match lookup {
        Lookup::Schedule(..) => {
            store_changes::overlapping_changes(
                ledger.pool,
                tenant,
                &change.service_ids,
                start,
                end,
                change.id,
            )
            .await?
        }
        _ => Vec::new(),
    };
    Ok(Context {
        freezes,
        overlapping,
    })
}

/// Waits, at most `wait`, until the read model `projection` has applied every
/// event committed before this call (see `store::changes::await_projection`),
/// asking this process's followers to look now: a follower sleeps through
/// commits of streams it does not follow, until its poll.
pub async fn await_read_model(
    ledger: Ledger<'_>,
    projection: &str,
    wait: std::time::Duration,
) -> Result<bool, StoreError> {
    ledger.committer.announce();
    store_changes::await_projection(ledger.pool, projection, wait).await
}
