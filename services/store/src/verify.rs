//! Recomputes every tenant's hash chain (SPEC §3.6) — each strand of it, see
//! `opsledger_domain::chain` — and names the first event that does not match:
//! an altered row, a row removed from the middle (the next event of its strand
//! no longer links) or from the end (the strand's head disagrees).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use opsledger_domain::audit::RootBuilder;
use opsledger_domain::chain::{self, lane_of, ChainedContent, GENESIS};
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
    /// The first event, in position order, whose hash does not match.
    pub first_mismatch: Option<Mismatch>,
}

/// What is known of one tenant's chain while walking the events.
struct Chain {
    prev: Vec<u8>,
    count: u64,
    last: Option<(i64, Uuid, String, i64)>,
}

/// Walks every event once in position order (the primary key), following
/// each tenant's chain, then checks each chain's end against its head.
pub async fn verify<C: GenericClient>(
    client: &C,
    only_tenant: Option<Uuid>,
) -> Result<VerifyReport, StoreError> {
    let mut chains: HashMap<(Uuid, i16), Chain> = HashMap::new();
    let mut events = 0u64;
    let mut after = 0i64;
    loop {
        let rows = client
            .query(
                "SELECT position, event_id, tenant_id, stream_id, stream_version, event_type, schema_version, \
                   work_class, payload::text, metadata::text, occurred_at, recorded_at, prev_hash, hash, chain_lane \
                 FROM events WHERE position > $1 AND ($2::uuid IS NULL OR tenant_id = $2) \
                 ORDER BY position LIMIT $3",
                &[&after, &only_tenant, &VERIFY_PAGE_ROWS],
            )
            .await?;
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            let position: i64 = row.get(0);
            let event_id: Uuid = row.get(1);
            let tenant_id: Uuid = row.get(2);
            let stream_id: String = row.get(3);
            let stream_version: i64 = row.get(4);
            let event_type: String = row.get(5);
            let work_class: String = row.get(7);
            let payload: String = row.get(8);
            let metadata: String = row.get(9);
            let occurred_at: DateTime<Utc> = row.get(10);
            let recorded_at: DateTime<Utc> = row.get(11);
            let stored_prev: Vec<u8> = row.get(12);
            let stored_hash: Vec<u8> = row.get(13);
            let lane: i16 = row.get(14);
            let chain = chains.entry((tenant_id, lane)).or_insert_with(|| Chain {
                prev: GENESIS.to_vec(),
                count: 0,
                last: None,
            });
            let computed = chain::link_hash(
                &chain.prev,
                &ChainedContent {
                    event_id,
                    tenant_id,
                    stream_id: &stream_id,
                    stream_version,
                    event_type: &event_type,
                    schema_version: row.get(6),
                    work_class: &work_class,
                    payload_json: &payload,
                    metadata_json: &metadata,
                    occurred_at,
                    recorded_at,
                },
            );
            let reason = if lane != lane_of(&stream_id) {
                Some(format!(
                    "is filed in strand {lane}, but its stream belongs to strand {}",
                    lane_of(&stream_id)
                ))
            } else if stored_prev != chain.prev {
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
                let mismatch = Mismatch {
                    tenant_id,
                    position,
                    event_id: Some(event_id),
                    stream_id,
                    stream_version,
                    reason,
                };
                return Ok(VerifyReport {
                    tenants: chains.len(),
                    events,
                    first_mismatch: Some(mismatch),
                });
            }
            events += 1;
            chain.count += 1;
            chain.prev = stored_hash;
            chain.last = Some((position, event_id, stream_id, stream_version));
            after = position;
        }
    }

    // Events removed from the end of a strand leave no broken link: its head,
    // moved in the same transaction as every append, tells.
    let heads = client
        .query(
            "SELECT tenant_id, chain_lane, event_count, last_hash FROM tenant_chain_heads \
             WHERE $1::uuid IS NULL OR tenant_id = $1",
            &[&only_tenant],
        )
        .await?;
    let head_of: HashMap<(Uuid, i16), (i64, Vec<u8>)> = heads
        .iter()
        .map(|h| ((h.get(0), h.get(1)), (h.get(2), h.get(3))))
        .collect();
    let mut strands: Vec<(Uuid, i16)> = chains.keys().chain(head_of.keys()).copied().collect();
    strands.sort();
    strands.dedup();
    let mut tenants: Vec<Uuid> = strands.iter().map(|(t, _)| *t).collect();
    tenants.dedup();
    for strand in &strands {
        let (count, prev, last) = match chains.get(strand) {
            Some(c) => (c.count, c.prev.clone(), c.last.clone()),
            None => (0, GENESIS.to_vec(), None),
        };
        let reason = match head_of.get(strand) {
            None => Some(format!("the head of strand {} is missing", strand.1)),
            Some((head_count, head_hash)) if *head_count as u64 != count || *head_hash != prev => Some(format!(
                "the head of strand {} records {head_count} events but {count} were found: events after this one were removed",
                strand.1
            )),
            Some(_) => None,
        };
        if let Some(reason) = reason {
            let (position, event_id, stream_id, stream_version) = last
                .map(|(p, e, s, v)| (p, Some(e), s, v))
                .unwrap_or((0, None, String::new(), 0));
            let mismatch = Mismatch {
                tenant_id: strand.0,
                position,
                event_id,
                stream_id,
                stream_version,
                reason,
            };
            return Ok(VerifyReport {
                tenants: tenants.len(),
                events,
                first_mismatch: Some(mismatch),
            });
        }
    }
    // Events removed from the end with the heads rewound to match leave the
    // chain whole: the signed checkpoints, which clients hold too, tell.
    let first_mismatch = checkpoints_hold(client, only_tenant).await?;
    Ok(VerifyReport {
        tenants: tenants.len(),
        events,
        first_mismatch,
    })
}

/// Recomputes, from the events alone, the root of each tenant's tree at its
/// latest signed checkpoint (leaves in the sequencer's order) and compares.
async fn checkpoints_hold<C: GenericClient>(
    client: &C,
    only_tenant: Option<Uuid>,
) -> Result<Option<Mismatch>, StoreError> {
    let latest = client
        .query(
            "SELECT DISTINCT ON (tenant_id) tenant_id, size, root, signed_at FROM audit_checkpoints \
             WHERE $1::uuid IS NULL OR tenant_id = $1 ORDER BY tenant_id, size DESC",
            &[&only_tenant],
        )
        .await?;
    for c in &latest {
        let tenant: Uuid = c.get(0);
        let size = c.get::<_, i64>(1) as u64;
        let root: Vec<u8> = c.get(2);
        let signed_at: DateTime<Utc> = c.get(3);
        let mut tree = RootBuilder::default();
        let mut sequenced = SequencedLeaves::default();
        let (mut tx_id, mut position) = (0i64, 0i64);
        while tree.size() < size {
            let limit = (size - tree.size()).min(VERIFY_PAGE_ROWS as u64) as i64;
            let rows = client
                .query(
                    &format!(
                        "SELECT tx_id::text::int8, {} FROM events WHERE tenant_id = $1 \
                         AND (tx_id, position) > ($2::int8::text::xid8, $3) \
                         ORDER BY tx_id, position LIMIT $4",
                        crate::audit::LEAF_COLUMNS
                    ),
                    &[&tenant, &tx_id, &position, &limit],
                )
                .await?;
            let Some(last) = rows.last() else { break };
            (tx_id, position) = (last.get(0), last.get(1));
            for r in &rows {
                let index = tree.size();
                let leaf = crate::audit::leaf_of_row(r, 1);
                let hash = leaf.leaf_hash();
                // The leaf as sequenced, if the tiles still say: names the
                // first event that moved, changed or took another's place.
                if let Some(sequenced) = sequenced.at(client, tenant, index).await? {
                    if sequenced != hash.0 {
                        return Ok(Some(Mismatch {
                            tenant_id: tenant,
                            position: r.get(1),
                            event_id: Some(leaf.event.event_id),
                            stream_id: leaf.event.stream_id.to_owned(),
                            stream_version: leaf.event.stream_version,
                            reason: format!(
                                "is not leaf {index} as it was sequenced and signed (altered, moved, or in the place of a removed event)"
                            ),
                        }));
                    }
                }
                tree.push(hash);
            }
        }
        let reason = if tree.size() < size {
            Some(format!(
                "only {} events remain of the {size} that the checkpoint signed at {signed_at} covers: events were removed",
                tree.size()
            ))
        } else if tree.root().0.as_slice() != root.as_slice() {
            Some(format!(
                "the first {size} events do not hash to the root of the checkpoint signed at {signed_at}: the log was altered"
            ))
        } else {
            None
        };
        if let Some(reason) = reason {
            return Ok(Some(Mismatch {
                tenant_id: tenant,
                position,
                event_id: None,
                stream_id: String::new(),
                stream_version: 0,
                reason,
            }));
        }
    }
    Ok(None)
}

/// The leaf hashes the sequencer stored (level-0 tiles), a tile at a time.
#[derive(Default)]
struct SequencedLeaves {
    tile: Option<(u64, Vec<u8>)>,
}

impl SequencedLeaves {
    async fn at<C: GenericClient>(
        &mut self,
        client: &C,
        tenant: Uuid,
        index: u64,
    ) -> Result<Option<[u8; 32]>, StoreError> {
        let tile = index / 256;
        if self.tile.as_ref().map(|(t, _)| *t) != Some(tile) {
            let data: Vec<u8> = client
                .query_opt(
                    "SELECT hashes FROM audit_tiles WHERE tenant_id = $1 AND level = 0 AND idx = $2",
                    &[&tenant, &(tile as i64)],
                )
                .await?
                .map(|r| r.get(0))
                .unwrap_or_default();
            self.tile = Some((tile, data));
        }
        let data = &self.tile.as_ref().expect("just read").1;
        let at = (index % 256) as usize * 32;
        Ok(data.get(at..at + 32).and_then(|h| h.try_into().ok()))
    }
}
