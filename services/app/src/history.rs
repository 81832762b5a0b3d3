//! Records as they stood at a past instant: the events each stream had
//! recorded by then, folded as every read folds them. What the console's
//! `?as_of=` pages show: the read models hold only the present.

use chrono::{DateTime, Utc};
use opsledger_domain::aggregate::{fold, Aggregate};
use opsledger_store::read::StreamRange;
use opsledger_store::StoreError;

use crate::Ledger;
use uuid::Uuid;

/// Each of `ids` that existed at `at`, as it stood then, with its version
/// then; in the order of `ids`. One query for them all.
pub async fn states_at<A: Aggregate>(
    ledger: Ledger<'_>,
    tenant: Uuid,
    ids: &[Uuid],
    at: DateTime<Utc>,
) -> Result<Vec<(Uuid, A, i64)>, StoreError> {
    let ranges: Vec<StreamRange> = ids
        .iter()
        .map(|id| StreamRange {
            tenant_id: tenant,
            stream_id: A::stream(*id),
            first: 1,
            last: i64::MAX,
        })
        .collect();
    let events = {
        let client = ledger.pool.get().await.map_err(StoreError::from)?;
        opsledger_store::read::read_ranges(&client, &ranges).await?
    };
    let mut by_stream: std::collections::HashMap<String, Vec<opsledger_domain::RecordedEvent>> =
        std::collections::HashMap::new();
    for e in events.into_iter().filter(|e| e.recorded_at <= at) {
        by_stream.entry(e.stream_id.clone()).or_default().push(e);
    }
    Ok(ids
        .iter()
        .filter_map(|id| {
            let mut events = by_stream.remove(&A::stream(*id))?;
            events.sort_by_key(|e| e.stream_version);
            let version = events.last().map_or(0, |e| e.stream_version);
            fold::<A>(&events).map(|state| (*id, state, version))
        })
        .collect())
}
