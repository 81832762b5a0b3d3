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

use super::plan::{now_micros, plan, strands_written, stream_guards, Claims, Versions};
use super::{prepare_writes, run_writes, ClaimColumns, EventTexts, HeadColumns, Heads, Written};
use crate::{AppendRequest, StoreError};

const APPEND_PREDICTED: &str = "SELECT append_predicted($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
     $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29)";

/// Writes the batch on predictions, if this committer can make them all:
/// `Ok(None)` when it cannot (a strand it never wrote, an append that accepts
/// any version), `Err` when the database refused one.
pub(super) async fn write_predicted<C: GenericClient>(
    client: &C,
    requests: &[(&AppendRequest, &EventTexts)],
    known: &Heads,
) -> Result<Option<Written>, StoreError> {
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
    let Versions::Predicted { checks, .. } = versions else {
        unreachable!("planned on predictions")
    };
    let after = HeadColumns::of(&strands, &plan.heads);
    let (guard_keys, guard_exclusive) = stream_guards(&plain);
    let check_tenants: Vec<uuid::Uuid> = checks.iter().map(|c| c.0).collect();
    let check_streams: Vec<&str> = checks.iter().map(|c| c.1).collect();
    let check_versions: Vec<i64> = checks.iter().map(|c| c.2).collect();
    let claims = ClaimColumns::of(&plan.new_claims);
    let rows = &plan.rows;

    let projected = rows.inline_writes()?;
    let projected_statements = prepare_writes(client, &projected).await?;
    let call = client.prepare_cached(APPEND_PREDICTED).await?;
    // One pipeline: BEGIN, the call, COMMIT. The COMMIT is awaited like the
    // rest, so a 2xx never rests on a commit that could still fail.
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 29] = [
        &before.tenants,
        &before.lanes,
        &before.hashes,
        &before.counts,
        &after.hashes,
        &after.counts,
        &guard_keys,
        &guard_exclusive,
        &check_tenants,
        &check_streams,
        &check_versions,
        &rows.event_id,
        &rows.tenant_id,
        &rows.stream_id,
        &rows.stream_version,
        &rows.event_type,
        &rows.schema_version,
        &rows.work_class,
        &rows.payload,
        &rows.metadata,
        &rows.occurred_at,
        &rows.recorded_at,
        &rows.chain_lane,
        &rows.prev_hash,
        &rows.hash,
        &claims.tenants,
        &claims.keys,
        &claims.fingerprints,
        &claims.responses,
    ];
    let (_, row, _, _) = tokio::try_join!(
        client.batch_execute("BEGIN"),
        client.query_one(&call, &params),
        run_writes(client, &projected, &projected_statements),
        client.batch_execute("COMMIT"),
    )?;
    let last_position: Option<i64> = row.get(0);
    Ok(Some(Written {
        outcomes: plan.decided.finish(last_position.unwrap_or(0)),
        heads: plan.heads,
    }))
}
