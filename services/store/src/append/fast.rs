//! The predicted path: a whole batch in one round trip.
//!
//! A committer that last wrote a strand knows its head, and every request
//! names the version it expects of each stream it touches. Planned on those
//! predictions, the batch goes to the database as one call of
//! `append_predicted` (schema V5), between BEGIN and COMMIT in the same
//! pipeline. The function takes the locked path's locks in the same order and
//! checks every prediction under them before writing; if any is wrong —
//! another instance wrote a strand, a stream moved, a key was claimed before —
//! it raises, nothing is written, and the batch takes the locked path.
//!
//! The inline projections' writes ride in the same pipeline, after the call.
//!
//! Requests in the batch are still decided one by one: a request that expects
//! a version an earlier request of the batch moved is a conflict, decided here
//! — correctly, because the database confirms the earlier request's footing.

use deadpool_postgres::GenericClient;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::plan::{now_micros, plan, strands_written, stream_guards, Claims, Decided, Versions};
use super::{
    prepare_writes, run_writes, ClaimColumns, EventTexts, HeadColumns, Heads, GUARD_STREAMS,
    INSERT_CLAIMS, INSERT_EVENTS, UPDATE_HEADS,
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

/// The arguments of one `append_predicted` call, and the inline projections'
/// writes that follow it.
pub(super) struct Call {
    before: HeadColumns,
    after: HeadColumns,
    guard_keys: Vec<i64>,
    guard_exclusive: Vec<bool>,
    check_tenants: Vec<Uuid>,
    check_streams: Vec<String>,
    check_versions: Vec<i64>,
    event_id: Vec<Uuid>,
    tenant_id: Vec<Uuid>,
    stream_id: Vec<String>,
    stream_version: Vec<i64>,
    event_type: Vec<&'static str>,
    schema_version: Vec<i32>,
    work_class: Vec<&'static str>,
    payload: Vec<String>,
    metadata: Vec<String>,
    occurred_at: Vec<DateTime<Utc>>,
    recorded_at: Vec<DateTime<Utc>>,
    chain_lane: Vec<i16>,
    prev_hash: Vec<Vec<u8>>,
    hash: Vec<Vec<u8>>,
    claim_tenants: Vec<Uuid>,
    claim_keys: Vec<String>,
    claim_fingerprints: Vec<String>,
    claim_responses: Vec<String>,
    projected: Vec<Write>,
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
    let claims = ClaimColumns::of(&plan.new_claims);
    let projected = plan.rows.inline_writes()?;
    let rows = plan.rows;
    let owned = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<String>>();
    let call = Call {
        after: HeadColumns::of(&strands, &plan.heads),
        before,
        guard_keys,
        guard_exclusive,
        check_tenants: checks.iter().map(|c| c.0).collect(),
        check_streams: checks.iter().map(|c| c.1.to_owned()).collect(),
        check_versions: checks.iter().map(|c| c.2).collect(),
        event_id: rows.event_id,
        tenant_id: rows.tenant_id,
        stream_id: owned(&rows.stream_id),
        stream_version: rows.stream_version,
        event_type: rows.event_type,
        schema_version: rows.schema_version,
        work_class: rows.work_class,
        payload: owned(&rows.payload),
        metadata: owned(&rows.metadata),
        occurred_at: rows.occurred_at,
        recorded_at: rows.recorded_at,
        chain_lane: rows.chain_lane,
        prev_hash: rows.prev_hash,
        hash: rows.hash,
        claim_tenants: claims.tenants,
        claim_keys: owned(&claims.keys),
        claim_fingerprints: owned(&claims.fingerprints),
        claim_responses: claims.responses,
        projected,
    };
    Ok(Some(Predicted {
        call,
        heads: plan.heads,
        decided: plan.decided,
    }))
}

/// A committer's own connection, shared by the batches it has in flight.
pub(super) type Client = std::sync::Arc<deadpool_postgres::Object>;

/// Sends a planned batch on the committer's own connection: BEGIN, the call,
/// the inline projections' writes and COMMIT in one pipeline, the COMMIT
/// awaited like the rest, so a 2xx never rests on a commit that could still
/// fail. Batches sent one after another on one connection run in that order,
/// each right after the one before. Returns the batch's last position; `Err`
/// when the database refused a prediction (or failed), with nothing written.
pub(super) async fn send(client: &Client, call: &Call) -> Result<Option<i64>, StoreError> {
    let client: &deadpool_postgres::Object = client;
    let check_heads = client.prepare_cached(CHECK_HEADS).await?;
    let guard = client.prepare_cached(GUARD_STREAMS).await?;
    let check_versions = client.prepare_cached(CHECK_VERSIONS).await?;
    let insert = client.prepare_cached(INSERT_EVENTS).await?;
    let update = client.prepare_cached(UPDATE_HEADS).await?;
    let insert_claims = client.prepare_cached(INSERT_CLAIMS).await?;
    let projected_statements = prepare_writes(client, &call.projected).await?;
    let anything = !call.event_id.is_empty();
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
        async {
            if anything {
                client
                    .query(
                        &insert,
                        &[
                            &call.event_id,
                            &call.tenant_id,
                            &call.stream_id,
                            &call.stream_version,
                            &call.event_type,
                            &call.schema_version,
                            &call.work_class,
                            &call.payload,
                            &call.metadata,
                            &call.occurred_at,
                            &call.recorded_at,
                            &call.chain_lane,
                            &call.prev_hash,
                            &call.hash,
                        ],
                    )
                    .await
            } else {
                Ok(Vec::new())
            }
        },
        async {
            if anything {
                client
                    .execute(
                        &update,
                        &[
                            &call.before.tenants,
                            &call.before.lanes,
                            &call.after.hashes,
                            &call.after.counts,
                        ],
                    )
                    .await
            } else {
                Ok(0)
            }
        },
        async {
            if call.claim_tenants.is_empty() {
                Ok(0)
            } else {
                client
                    .execute(
                        &insert_claims,
                        &[
                            &call.claim_tenants,
                            &call.claim_keys,
                            &call.claim_fingerprints,
                            &call.claim_responses,
                        ],
                    )
                    .await
            }
        },
        run_writes(client, &call.projected, &projected_statements),
        client.batch_execute("COMMIT"),
    );
    match sent {
        Ok((_, _, _, _, inserted, _, _, _, _)) => {
            Ok(inserted.first().and_then(|r| r.get::<_, Option<i64>>(0)))
        }

        Err(e) => {
            // The pipeline's COMMIT ended the failed transaction; should it
            // not have run, this does. It follows every batch already sent
            // on the connection, so it can only end this one's transaction.
            let _ = client.batch_execute("ROLLBACK").await;
            Err(e.into())
        }
    }
}
