//! The predicted path: a whole batch in one round trip, and a second batch
//! in flight behind it.
//!
//! A committer that last wrote a strand knows its head, and every request
//! names the version it expects of each stream it touches. Planned on those
//! predictions, the batch goes to the database as one pipeline on the
//! committer's own connection: BEGIN; lock the strand heads and check them;
//! guard the streams; check their versions; the batch's writes (events,
//! heads, keys, inline projections); COMMIT. The checks take the locked
//! path's locks in the same order; if a prediction is wrong — another
//! instance wrote a strand, a stream moved, a key was claimed before — they
//! call `append_refused` (schema V5), which raises, nothing is written, and
//! the batch takes the locked path.
//!
//! Requests in the batch are still decided one by one: a request that expects
//! a version an earlier request of the batch moved is a conflict, decided here
//! — correctly, because the database confirms the earlier request's footing.
//!
//! Because a plan needs no answer from the database, the next batch can be
//! planned on the heads the previous one will leave and sent behind it on the
//! same connection, where it runs the moment the first commits. If a batch is
//! refused, those planned on it are refused too (their heads never appear),
//! and each takes the locked path.

use deadpool_postgres::GenericClient;
use uuid::Uuid;

use super::plan::{now_micros, plan, strands_written, stream_guards, Claims, Decided, Versions};
use super::{
    batch_writes, last_position, prepare_writes, run_writes, EventTexts, HeadColumns, Heads,
    GUARD_STREAMS,
};
use crate::projection::Write;
use crate::{AppendRequest, StoreError};

// Locks the heads of the strands written, in key order, and refuses unless
// every one is where this committer left it.
const CHECK_HEADS: &str =
    "SELECT append_refused('a strand head is not where this committer left it') \
     FROM (SELECT count(*) FILTER (WHERE locked.as_predicted) AS n \
           FROM (SELECT h.last_hash = u.p AND h.event_count = u.c AS as_predicted \
                 FROM tenant_chain_heads h \
                 JOIN unnest($1::uuid[], $2::int2[], $3::bytea[], $4::int8[]) AS u(t, l, p, c) \
                   ON h.tenant_id = u.t AND h.chain_lane = u.l \
                 ORDER BY h.tenant_id, h.chain_lane \
                 FOR UPDATE OF h) AS locked) AS heads \
     WHERE heads.n <> cardinality($1::uuid[])";
// Under the guards: refuses unless every stream is at the predicted version.
const CHECK_VERSIONS: &str =
    "SELECT append_refused('a stream is not at the version its append expected') \
     FROM unnest($1::uuid[], $2::text[], $3::int8[]) AS u(t, s, v) \
     WHERE coalesce((SELECT max(e.stream_version) FROM events e \
                     WHERE e.tenant_id = u.t AND e.stream_id = u.s), 0) <> u.v \
     LIMIT 1";

/// A batch planned on predictions: what it sends, owned, so its call can be
/// in flight while the committer plans the next batch.
pub(super) struct Predicted {
    pub call: Call,
    /// The heads of the strands written, once this batch commits.
    pub heads: Heads,
    pub decided: Decided,
}

/// What a predicted batch sends: the predictions to check, then its writes.
pub(super) struct Call {
    before: HeadColumns,
    guard_keys: Vec<i64>,
    guard_exclusive: Vec<bool>,
    check_tenants: Vec<Uuid>,
    check_streams: Vec<String>,
    check_versions: Vec<i64>,
    writes: Vec<Write>,
}

/// Plans the batch on `known` heads and the requests' expectations: `None`
/// when that is impossible (a strand this committer never wrote, an append
/// that accepts any version).
pub(super) fn plan_predicted(
    requests: &[(&AppendRequest, &EventTexts)],
    known: &Heads,
) -> Result<Option<Predicted>, StoreError> {
    let plain: Vec<&AppendRequest> = requests.iter().map(|(r, _)| *r).collect();
    let strands = strands_written(&plain);
    let mut heads = Heads::with_capacity(strands.len());
    for key in &strands {
        match known.get(key) {
            Some(head) => heads.insert(*key, head.clone()),
            None => return Ok(None),
        };
    }
    let before = HeadColumns::of(&strands, &heads);
    let mut versions = Versions::predicted();
    let Ok(plan) = plan(requests, &mut versions, heads, Claims::new(), now_micros()) else {
        return Ok(None);
    };
    let Versions::Predicted { mut checks, .. } = versions else {
        unreachable!("planned on predictions")
    };
    // A stream predicted empty that the batch starts needs no check: its
    // version 1 would collide in the unique index if it had any event. In an
    // alert storm of new dedup keys that is every alert's stream.
    let started: std::collections::HashSet<(Uuid, &str)> = (0..plan.rows.event_id.len())
        .filter(|&i| plan.rows.stream_version[i] == 1)
        .map(|i| (plan.rows.tenant_id[i], plan.rows.stream_id[i]))
        .collect();
    checks.retain(|(t, s, v)| !(*v == 0 && started.contains(&(*t, *s))));
    let (guard_keys, guard_exclusive) = stream_guards(&plain);
    let call = Call {
        before,
        guard_keys,
        guard_exclusive,
        check_tenants: checks.iter().map(|c| c.0).collect(),
        check_streams: checks.iter().map(|c| c.1.to_owned()).collect(),
        check_versions: checks.iter().map(|c| c.2).collect(),
        writes: batch_writes(&plan, &strands)?,
    };
    Ok(Some(Predicted {
        call,
        heads: plan.heads,
        decided: plan.decided,
    }))
}

/// A committer's own connection, shared by the batches it has in flight.
pub(super) type Client = std::sync::Arc<deadpool_postgres::Object>;

/// Sends a planned batch on the committer's own connection: BEGIN, the
/// checks, the batch's writes and COMMIT in one pipeline, the COMMIT
/// awaited like the rest, so a 2xx never rests on a commit that could still
/// fail. Batches sent one after another on one connection run in that order,
/// each right after the one before. Returns the batch's last position; `Err`
/// when the database refused a prediction (or failed), with nothing written.
pub(super) async fn send(client: &Client, call: &Call) -> Result<i64, StoreError> {
    let client: &deadpool_postgres::Object = client;
    let check_heads = client.prepare_cached(CHECK_HEADS).await?;
    let guard = client.prepare_cached(GUARD_STREAMS).await?;
    let check_versions = client.prepare_cached(CHECK_VERSIONS).await?;
    let statements = prepare_writes(client, &call.writes).await?;
    // Every statement is sent when first polled, in this order, so the whole
    // batch is one pipeline.
    let sent = tokio::try_join!(
        client.batch_execute("BEGIN"),
        async {
            client
                .query(
                    &check_heads,
                    &[
                        &call.before.tenants,
                        &call.before.lanes,
                        &call.before.hashes,
                        &call.before.counts,
                    ],
                )
                .await
        },
        async {
            client
                .query(&guard, &[&call.guard_keys, &call.guard_exclusive])
                .await
        },
        async {
            client
                .query(
                    &check_versions,
                    &[
                        &call.check_tenants,
                        &call.check_streams,
                        &call.check_versions,
                    ],
                )
                .await
        },
        run_writes(client, &call.writes, &statements),
        client.batch_execute("COMMIT"),
    );
    match sent {
        Ok((_, _, _, _, written, _)) => Ok(last_position(&written)),
        Err(e) => {
            // The pipeline's COMMIT ended the failed transaction; should it
            // not have run, this does. It follows every batch already sent
            // on the connection, so it can only end this one's transaction.
            let _ = client.batch_execute("ROLLBACK").await;
            Err(e.into())
        }
    }
}
