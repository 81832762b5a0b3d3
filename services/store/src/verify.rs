//! Recomputes every tenant's hash chain (SPEC §3.6) and names the first event
//! that does not match: an altered row, a row removed from the middle (the next
//! event no longer links) or from the end (the chain head disagrees).

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use opsledger_domain::chain::{self, ChainedContent, GENESIS};
use serde::Serialize;
use uuid::Uuid;

use crate::StoreError;

/// Rows read per round trip while walking a chain.
const VERIFY_PAGE_ROWS: i64 = 5_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mismatch {
    pub tenant_id: Uuid,
    pub position: i64,
    pub event_id: Option<Uuid>,
    pub stream_id: String,
    pub stream_version: i64,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub tenants: usize,
    pub events: u64,
    /// The first event, per tenant in tenant order, whose hash does not match.
    pub first_mismatch: Option<Mismatch>,
}

pub async fn verify<C: GenericClient>(
    client: &C,
    only_tenant: Option<Uuid>,
) -> Result<VerifyReport, StoreError> {
    let tenants: Vec<Uuid> = client
        .query(
            "SELECT tenant_id FROM (SELECT DISTINCT tenant_id FROM events \
               UNION SELECT tenant_id FROM tenant_chain_heads) t \
             WHERE $1::uuid IS NULL OR tenant_id = $1 ORDER BY tenant_id",
            &[&only_tenant],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut report = VerifyReport {
        tenants: tenants.len(),
        events: 0,
        first_mismatch: None,
    };
    for tenant in tenants {
        let (checked, mismatch) = verify_tenant(client, tenant).await?;
        report.events += checked;
        if mismatch.is_some() {
            report.first_mismatch = mismatch;
            break;
        }
    }
    Ok(report)
}

async fn verify_tenant<C: GenericClient>(
    client: &C,
    tenant: Uuid,
) -> Result<(u64, Option<Mismatch>), StoreError> {
    let mut prev: Vec<u8> = GENESIS.to_vec();
    let mut after = 0i64;
    let mut checked = 0u64;
    let mut last: Option<(i64, Uuid, String, i64)> = None;
    loop {
        let rows = client
            .query(
                "SELECT position, event_id, stream_id, stream_version, event_type, schema_version, \
                   work_class, payload::text, metadata::text, occurred_at, recorded_at, prev_hash, hash \
                 FROM events WHERE tenant_id = $1 AND position > $2 ORDER BY position LIMIT $3",
                &[&tenant, &after, &VERIFY_PAGE_ROWS],
            )
            .await?;
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            let position: i64 = row.get(0);
            let event_id: Uuid = row.get(1);
            let stream_id: String = row.get(2);
            let stream_version: i64 = row.get(3);
            let event_type: String = row.get(4);
            let work_class: String = row.get(6);
            let payload: String = row.get(7);
            let metadata: String = row.get(8);
            let occurred_at: DateTime<Utc> = row.get(9);
            let recorded_at: DateTime<Utc> = row.get(10);
            let stored_prev: Vec<u8> = row.get(11);
            let stored_hash: Vec<u8> = row.get(12);
            let computed = chain::link_hash(
                &prev,
                &ChainedContent {
                    event_id,
                    tenant_id: tenant,
                    stream_id: &stream_id,
                    stream_version,
                    event_type: &event_type,
                    schema_version: row.get(5),
                    work_class: &work_class,
                    payload_json: &payload,
                    metadata_json: &metadata,
                    occurred_at,
                    recorded_at,
                },
            );
            let reason = if stored_prev != prev {
                Some("does not link to the previous event of its tenant (an event before it was removed or altered)".to_owned())
            } else if stored_hash.as_slice() != computed.as_slice() {
                Some(format!(
                    "content does not match its hash (stored {}, computed {})",
                    hex::encode(&stored_hash),
                    hex::encode(computed)
                ))
            } else {
                None
            };
            if let Some(reason) = reason {
                return Ok((
                    checked,
                    Some(Mismatch {
                        tenant_id: tenant,
                        position,
                        event_id: Some(event_id),
                        stream_id,
                        stream_version,
                        reason,
                    }),
                ));
            }
            checked += 1;
            prev = stored_hash;
            after = position;
            last = Some((position, event_id, stream_id, stream_version));
        }
    }
    let head = client
        .query_opt(
            "SELECT event_count, last_hash FROM tenant_chain_heads WHERE tenant_id = $1",
            &[&tenant],
        )
        .await?;
    let (count, last_hash): (i64, Vec<u8>) = match &head {
        Some(row) => (row.get(0), row.get(1)),
        None => (0, GENESIS.to_vec()),
    };
    if count as u64 != checked || last_hash != prev {
        let (position, event_id, stream_id, stream_version) = last
            .map(|(p, e, s, v)| (p, Some(e), s, v))
            .unwrap_or((0, None, String::new(), 0));
        return Ok((
            checked,
            Some(Mismatch {
                tenant_id: tenant,
                position,
                event_id,
                stream_id,
                stream_version,
                reason: format!(
                    "the chain head records {count} events but {checked} were found: events after this one were removed"
                ),
            }),
        ));
    }
    Ok((checked, None))
}
