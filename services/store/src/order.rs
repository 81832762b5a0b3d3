//! Keeping the global order after a restore.
//!
//! Events are ordered by `(tx_id, position)`, where `tx_id` is the writing
//! transaction's id plus the shift in `tx_id_shift` (V19; see `read`). A dump
//! restored into a fresh cluster brings its events' `tx_id`s along, but the
//! cluster counts transaction ids from the start again, so what it appends
//! next would sort before what it restored, behind every follower. `realign`,
//! run by `migrate` on every start, finds that and raises the shift past the
//! log, so that nothing needs doing by hand after a restore.

use tokio_postgres::Client;

use crate::StoreError;

/// The cluster's next order key and the log's last, without locking: in
/// normal running the last is always below the next.
const BEHIND: &str = "SELECT e.tx_id::text::int8, event_tx_bound()::text::int8 \
     FROM events e WHERE e.position = event_at_or_before('9223372036854775807'::xid8, 9223372036854775807)";

/// What `realign` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Realigned {
    /// The cluster's transaction ids are ahead of the log (the usual case).
    InOrder,
    /// They were behind (a restore into a fresh cluster): the shift was
    /// raised from `from` to `to`.
    Shifted { from: i64, to: i64 },
}

/// Raises the shift when the cluster's transaction ids are behind the last
/// event's. Takes `tx_id_shift` exclusively for the change, which waits for
/// every append and follower read in flight (each holds a share of it) and
/// holds back new ones until the commit, so none straddles two shifts.
/// Needs the owner's connection (the application's role may only read it).
pub async fn realign(client: &mut Client) -> Result<Realigned, StoreError> {
    let Some(row) = client.query_opt(BEHIND, &[]).await? else {
        return Ok(Realigned::InOrder);
    };
    let (last, next): (i64, i64) = (row.get(0), row.get(1));
    if last < next {
        return Ok(Realigned::InOrder);
    }
    let tx = client.transaction().await?;
    tx.batch_execute("LOCK TABLE tx_id_shift IN ACCESS EXCLUSIVE MODE")
        .await?;
    let row = tx
        .query_one(
            "SELECT (SELECT e.tx_id::text::int8 FROM events e WHERE e.position = \
               event_at_or_before('9223372036854775807'::xid8, 9223372036854775807)), \
               pg_current_xact_id()::text::int8, shift FROM tx_id_shift",
            &[],
        )
        .await?;
    let (last, current, from): (Option<i64>, i64, i64) = (row.get(0), row.get(1), row.get(2));
    let Some(last) = last.filter(|last| *last >= current + from) else {
        tx.commit().await?;
        return Ok(Realigned::InOrder);
    };
    // Every later transaction's id is above `current`, so its events sort
    // above `last`.
    let to = last + 1 - current;
    tx.execute(
        "UPDATE tx_id_shift SET shift = $1, shifted_at = now()",
        &[&to],
    )
    .await?;
    tx.commit().await?;
    Ok(Realigned::Shifted { from, to })
}
