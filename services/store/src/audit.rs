//! The transparency log's storage (SPEC §3.9; the tree itself is
//! `opsledger_domain::audit`): the sequencer, a projection that gives every
//! event its leaf in its tenant's tree; the tiles proofs are read from; and
//! the signed checkpoints, which the signer adds only after proving each
//! new tree head consistent with the last one it signed.
//!
//! # The transparency log (SPEC §3.9)
//!
//! The hash chain proves the log unaltered to someone who re-reads all of it
//! and trusts the heads the database keeps; the transparency log lets anyone
//! holding a signed checkpoint check the log without either. The **sequencer**
//! (`store::audit::AuditLog`) is a projection like the others (one owner, exactly
//! once, rebuilt from position 0): in the order projections follow, which is
//! final behind the gap-safe horizon, it gives each event the next leaf index of
//! its tenant's tree. A leaf is `opsledger-leaf/v1` (`domain::audit`): every
//! field length-prefixed (u32 BE) — the format name, event id, tenant id, stream
//! id, stream version (i64), type, schema version (i32), work class, payload and
//! metadata as their stored JSON text, occurred and recorded at (µs, i64), chain
//! lane (i16), previous chain hash, chain hash — so the tree and the chain vouch
//! for each other. Hashing is RFC 9162's; the tree is stored as C2SP tlog-tiles
//! of height 8 (`audit_tiles`): full tiles never change, the right edge's tile of
//! each level grows, and any root or proof reads a handful of tiles (a dry run
//! of `tlog_tiles`' proof code against `Wanted` tells which). The **signer**
//! (`sign_due`, a worker every `OPSLEDGER_CHECKPOINT_INTERVAL_MS`, one instance at
//! a time by advisory lock) signs each grown tree head as a C2SP tlog-checkpoint
//! in a signed note (Ed25519, the key file of `OPSLEDGER_AUDIT_KEY_FILE`, made by
//! `opsledger keygen`) with origin `NAME/tenants/TENANT` — but first proves it
//! consistent with the last checkpoint it signed and refuses (logged, and kept in
//! `audit_refusals`) when it is not: a history altered and rebuilt cannot be
//! signed over. Checkpoints are append-only like events and survive rebuilds.
//! The sequencer reads its pages without payloads (`reads_payloads`: it reads
//! the stored texts and chain links of a batch itself, by a range of
//! positions when the page is nearly contiguous, so the engine need not
//! parse millions of payloads). Proofs (`/audit/proof/*`) are
//! `tlog_tiles`' RFC 9162 proofs over the tiles;
//! the inclusion proof also comes as a C2SP tlog-proof file whose `extra` is the
//! leaf's bytes, so it needs nothing else to check.
//!
//! The event feed (`GET /events`, `/events/stream`, `api::feed`) reads a
//! tenant's events as the projections do (`read::feed`): in (tx_id, position)
//! order below the horizon, so nothing committing late is skipped; its cursor is
//! that pair, written opaquely. The stream reads its next page only when the
//! client has taken the last (actix polls the body as the socket drains), and
//! sends a heartbeat comment when quiet. Auditors and admins read it; an
//! integration only while an admin's grant of its subject stands
//! (`domain::feed_access`, events on the tenant's `feed-readers-` stream).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Transaction};
use futures_util::future::BoxFuture;
use opsledger_domain::audit::{self, Edge, Hash, LeafContent, TileKey, TileWrite, Tiles};
use opsledger_domain::chain::ChainedContent;
use opsledger_domain::RecordedEvent;
use serde::Serialize;
use tlog_tiles::tlog;
use uuid::Uuid;

use crate::projection::{self, Projection};
use crate::{Pool, StoreError};

pub const PROJECTION: &str = "audit_log";

/// The sequencer: one owner at a time and exactly once, as every projection.
pub struct AuditLog;

impl Projection for AuditLog {
    fn name(&self) -> &'static str {
        PROJECTION
    }

    /// Not `audit_checkpoints`: what was signed stays signed, and a rebuilt
    /// tree must be consistent with it.
    fn tables(&self) -> &'static [&'static str] {
        &["audit_leaves", "audit_tiles", "audit_trees"]
    }

    /// It reads the stored texts and chain links itself ([`sequence`]).
    fn reads_payloads(&self) -> bool {
        false
    }

    fn apply<'a>(
        &'a self,
        tx: &'a Transaction<'a>,
        event: &'a RecordedEvent,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.apply_batch(tx, std::slice::from_ref(event))
    }

    fn apply_batch<'a>(
        &'a self,
        tx: &'a Transaction<'a>,
        events: &'a [RecordedEvent],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(sequence(tx, events))
    }
}

/// The columns a leaf is made of, as stored.
pub(crate) const LEAF_COLUMNS: &str =
    "position, event_id, tenant_id, stream_id, stream_version, event_type, \
    schema_version, work_class, payload::text, metadata::text, occurred_at, recorded_at, \
    chain_lane, prev_hash, hash";

/// An event's leaf, from a row of [`LEAF_COLUMNS`] (at `at`).
pub fn leaf_of_row(row: &tokio_postgres::Row, at: usize) -> LeafContent<'_> {
    LeafContent {
        event: ChainedContent {
            event_id: row.get(at + 1),
            tenant_id: row.get(at + 2),
            stream_id: row.get(at + 3),
            stream_version: row.get(at + 4),
            event_type: row.get(at + 5),
            schema_version: row.get(at + 6),
            work_class: row.get(at + 7),
            payload_json: row.get(at + 8),
            metadata_json: row.get(at + 9),
            occurred_at: row.get(at + 10),
            recorded_at: row.get(at + 11),
        },
        chain_lane: row.get(at + 12),
        prev_hash: row.get(at + 13),
        hash: row.get(at + 14),
    }
}

/// Appends a batch's events to their tenants' trees, in the batch's order
/// (the projections' order, final behind the horizon).
async fn sequence(tx: &Transaction<'_>, events: &[RecordedEvent]) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let positions: Vec<i64> = events.iter().map(|e| e.position).collect();
    // The stored texts and the chain's links, which a decoded event lacks.
    // A page's positions are nearly contiguous when the log is replayed (a
    // rebuild, a follower behind): one walk of the primary key over their
    // range then costs a third of looking each one up. A page spread
    // wide (a transaction that committed late) is looked up position by
    // position.
    let (low, high) = (
        positions.iter().min().copied().unwrap_or(0),
        positions.iter().max().copied().unwrap_or(0),
    );
    let rows = if high - low < 2 * positions.len() as i64 {
        projection::query(
            tx,
            &format!("SELECT {LEAF_COLUMNS} FROM events WHERE position BETWEEN $1 AND $2"),
            &[&low, &high],
        )
        .await?
    } else {
        projection::query(
            tx,
            &format!("SELECT {LEAF_COLUMNS} FROM events WHERE position = ANY($1)"),
            &[&positions],
        )
        .await?
    };
    let by_position: HashMap<i64, &tokio_postgres::Row> =
        rows.iter().map(|r| (r.get::<_, i64>(0), r)).collect();
    let mut tenants: Vec<Uuid> = events.iter().map(|e| e.tenant_id).collect();
    tenants.sort_unstable();
    tenants.dedup();
    let mut edges = edges(tx, &tenants).await?;
    let before: HashMap<Uuid, Edge> = edges.clone();
    let mut leaves = Leaves::default();
    let mut written: Vec<(Uuid, TileWrite)> = vec![];
    for e in events {
        let row = by_position.get(&e.position).ok_or_else(|| {
            StoreError::Corrupt(format!("event at position {} vanished", e.position))
        })?;
        let leaf = leaf_of_row(row, 0).leaf_hash();
        let edge = edges.entry(e.tenant_id).or_default();
        leaves.push(e.tenant_id, edge.size as i64, e.position, e.event_id);
        written.extend(edge.push(leaf).into_iter().map(|t| (e.tenant_id, t)));
    }
    // The edge tiles that changed, after the full ones.
    for (tenant, edge) in &edges {
        let old = before.get(tenant);
        for (key, data) in &edge.tiles.0 {
            if old.and_then(|o| o.tiles.0.get(key)) != Some(data) {
                written.push((
                    *tenant,
                    TileWrite {
                        key: *key,
                        data: data.clone(),
                    },
                ));
            }
        }
    }
    leaves.insert(tx).await?;
    write_tiles(tx, &written).await?;
    let mut sizes = (vec![], vec![], vec![]);
    for (tenant, edge) in &edges {
        let root = edge
            .root()
            .map_err(|e| StoreError::Corrupt(format!("tree of tenant {tenant}: {e}")))?;
        sizes.0.push(*tenant);
        sizes.1.push(edge.size as i64);
        sizes.2.push(root.0.to_vec());
    }
    projection::execute(
        tx,
        "INSERT INTO audit_trees (tenant_id, size, root) \
         SELECT * FROM unnest($1::uuid[], $2::int8[], $3::bytea[]) \
         ON CONFLICT (tenant_id) DO UPDATE SET size = EXCLUDED.size, root = EXCLUDED.root",
        &[&sizes.0, &sizes.1, &sizes.2],
    )
    .await?;
    Ok(())
}

#[derive(Default)]
struct Leaves {
    tenants: Vec<Uuid>,
    indexes: Vec<i64>,
    positions: Vec<i64>,
    events: Vec<Uuid>,
}

impl Leaves {
    fn push(&mut self, tenant: Uuid, index: i64, position: i64, event: Uuid) {
        self.tenants.push(tenant);
        self.indexes.push(index);
        self.positions.push(position);
        self.events.push(event);
    }

    async fn insert(&self, tx: &Transaction<'_>) -> Result<(), StoreError> {
        projection::execute(
            tx,
            "INSERT INTO audit_leaves (tenant_id, leaf_index, position, event_id) \
             SELECT * FROM unnest($1::uuid[], $2::int8[], $3::int8[], $4::uuid[])",
            &[&self.tenants, &self.indexes, &self.positions, &self.events],
        )
        .await?;
        Ok(())
    }
}

async fn write_tiles(tx: &Transaction<'_>, tiles: &[(Uuid, TileWrite)]) -> Result<(), StoreError> {
    if tiles.is_empty() {
        return Ok(());
    }
    let tenants: Vec<Uuid> = tiles.iter().map(|(t, _)| *t).collect();
    let levels: Vec<i16> = tiles.iter().map(|(_, w)| i16::from(w.key.0)).collect();
    let indexes: Vec<i64> = tiles.iter().map(|(_, w)| w.key.1 as i64).collect();
    let data: Vec<&[u8]> = tiles.iter().map(|(_, w)| w.data.as_slice()).collect();
    projection::execute(
        tx,
        "INSERT INTO audit_tiles (tenant_id, level, idx, hashes) \
         SELECT * FROM unnest($1::uuid[], $2::int2[], $3::int8[], $4::bytea[]) \
         ON CONFLICT (tenant_id, level, idx) DO UPDATE SET hashes = EXCLUDED.hashes",
        &[&tenants, &levels, &indexes, &data],
    )
    .await?;
    Ok(())
}

/// The right edges of these tenants' trees as stored.
async fn edges(tx: &Transaction<'_>, tenants: &[Uuid]) -> Result<HashMap<Uuid, Edge>, StoreError> {
    let rows = projection::query(
        tx,
        "SELECT tenant_id, size FROM audit_trees WHERE tenant_id = ANY($1)",
        &[&tenants],
    )
    .await?;
    let mut edges: HashMap<Uuid, Edge> = HashMap::new();
    let mut keys = (vec![], vec![], vec![]);
    for r in &rows {
        let tenant: Uuid = r.get(0);
        let size = r.get::<_, i64>(1) as u64;
        for (level, idx) in Edge::keys(size) {
            keys.0.push(tenant);
            keys.1.push(i16::from(level));
            keys.2.push(idx as i64);
        }
        edges.insert(
            tenant,
            Edge {
                size,
                tiles: Tiles::default(),
            },
        );
    }
    let tiles = projection::query(
        tx,
        "SELECT t.tenant_id, t.level, t.idx, t.hashes FROM audit_tiles t \
         JOIN unnest($1::uuid[], $2::int2[], $3::int8[]) k(tenant_id, level, idx) \
           USING (tenant_id, level, idx)",
        &[&keys.0, &keys.1, &keys.2],
    )
    .await?;
    for t in &tiles {
        let tenant: Uuid = t.get(0);
        let key: TileKey = (t.get::<_, i16>(1) as u8, t.get::<_, i64>(2) as u64);
        if let Some(edge) = edges.get_mut(&tenant) {
            edge.tiles.0.insert(key, t.get(3));
        }
    }
    for (tenant, edge) in &edges {
        if edge.tiles.0.len() != Edge::keys(edge.size).len() {
            return Err(StoreError::Corrupt(format!(
                "the tree of tenant {tenant} lacks tiles at its edge (size {})",
                edge.size
            )));
        }
    }
    Ok(edges)
}

/// A tenant's tree as the sequencer has it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TreeHead {
    pub size: u64,
    pub root: Hash,
}

pub async fn tree<C: GenericClient>(client: &C, tenant: Uuid) -> Result<TreeHead, StoreError> {
    let row = client
        .query_opt(
            "SELECT size, root FROM audit_trees WHERE tenant_id = $1",
            &[&tenant],
        )
        .await?;
    Ok(match row {
        Some(r) => TreeHead {
            size: r.get::<_, i64>(0) as u64,
            root: hash(r.get(1))?,
        },
        None => TreeHead {
            size: 0,
            root: tlog::EMPTY_HASH,
        },
    })
}

fn hash(bytes: Vec<u8>) -> Result<Hash, StoreError> {
    Ok(Hash(bytes.try_into().map_err(|_| {
        StoreError::Corrupt("a stored hash is not 32 bytes".into())
    })?))
}

/// The tiles at `keys` of a tenant's tree.
pub async fn tiles<C: GenericClient>(
    client: &C,
    tenant: Uuid,
    keys: &[TileKey],
) -> Result<Tiles, StoreError> {
    let levels: Vec<i16> = keys.iter().map(|k| i16::from(k.0)).collect();
    let indexes: Vec<i64> = keys.iter().map(|k| k.1 as i64).collect();
    let rows = client
        .query(
            "SELECT t.level, t.idx, t.hashes FROM audit_tiles t \
             JOIN unnest($2::int2[], $3::int8[]) k(level, idx) USING (level, idx) \
             WHERE t.tenant_id = $1",
            &[&tenant, &levels, &indexes],
        )
        .await?;
    Ok(Tiles(
        rows.iter()
            .map(|r| {
                (
                    (r.get::<_, i16>(0) as u8, r.get::<_, i64>(1) as u64),
                    r.get(2),
                )
            })
            .collect(),
    ))
}

/// Runs a proof (or root) computation against the tiles it needs: once dry
/// to learn which, then for real.
macro_rules! with_tiles {
    ($client:expr, $tenant:expr, |$r:ident| $ask:expr) => {{
        let keys = audit::tiles_for(|$r| $ask);
        let tiles = tiles($client, $tenant, &keys).await?;
        let $r = &tiles;
        $ask
    }};
}

/// The root of a tenant's tree when it had `size` leaves.
pub async fn root_at<C: GenericClient>(
    client: &C,
    tenant: Uuid,
    size: u64,
) -> Result<Result<Hash, tlog::Error>, StoreError> {
    Ok(with_tiles!(client, tenant, |r| tlog::tree_hash(size, r)))
}

/// RFC 9162 inclusion proof of leaf `index` in the tree of `size` leaves.
pub async fn inclusion<C: GenericClient>(
    client: &C,
    tenant: Uuid,
    size: u64,
    index: u64,
) -> Result<Result<Vec<Hash>, tlog::Error>, StoreError> {
    Ok(with_tiles!(client, tenant, |r| tlog::prove_record(
        size, index, r
    )))
}

/// RFC 9162 consistency proof from the tree of `from` leaves to `to`.
pub async fn consistency<C: GenericClient>(
    client: &C,
    tenant: Uuid,
    from: u64,
    to: u64,
) -> Result<Result<Vec<Hash>, tlog::Error>, StoreError> {
    Ok(with_tiles!(client, tenant, |r| tlog::prove_tree(
        to, from, r
    )))
}

/// An event's place in its tenant's tree.
#[derive(Debug, Clone, Serialize)]
pub struct LeafRef {
    pub leaf_index: u64,
    pub position: i64,
    pub event_id: Uuid,
}

/// The leaf of an event, once sequenced.
pub async fn leaf_of_event<C: GenericClient>(
    client: &C,
    tenant: Uuid,
    event_id: Uuid,
) -> Result<Option<LeafRef>, StoreError> {
    let row = client
        .query_opt(
            "SELECT leaf_index, position FROM audit_leaves WHERE tenant_id = $1 AND event_id = $2",
            &[&tenant, &event_id],
        )
        .await?;
    Ok(row.map(|r| LeafRef {
        leaf_index: r.get::<_, i64>(0) as u64,
        position: r.get(1),
        event_id,
    }))
}

/// The leaf bytes of the event at a tenant's leaf `index`, read from the
/// events themselves.
pub async fn leaf_bytes<C: GenericClient>(
    client: &C,
    tenant: Uuid,
    index: u64,
) -> Result<Option<Vec<u8>>, StoreError> {
    let row = client
        .query_opt(
            &format!(
                "SELECT {LEAF_COLUMNS} FROM events WHERE position = \
                 (SELECT position FROM audit_leaves WHERE tenant_id = $1 AND leaf_index = $2)"
            ),
            &[&tenant, &(index as i64)],
        )
        .await?;
    Ok(row.map(|r| leaf_of_row(&r, 0).bytes()))
}

/// A signed checkpoint as kept.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StoredCheckpoint {
    pub size: u64,
    /// The Merkle root, base64.
    #[serde(serialize_with = "base64_hash")]
    #[schema(value_type = String)]
    pub root: Hash,
    pub note: String,
    pub key_name: String,
    pub signed_at: DateTime<Utc>,
}

fn base64_hash<S: serde::Serializer>(h: &Hash, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&audit::base64(&h.0))
}

fn checkpoint_of_row(r: &tokio_postgres::Row) -> Result<StoredCheckpoint, StoreError> {
    Ok(StoredCheckpoint {
        size: r.get::<_, i64>(0) as u64,
        root: hash(r.get(1))?,
        note: r.get(2),
        key_name: r.get(3),
        signed_at: r.get(4),
    })
}

/// The latest checkpoint of a tenant; with `size`, the one of that size.
pub async fn checkpoint<C: GenericClient>(
    client: &C,
    tenant: Uuid,
    size: Option<u64>,
) -> Result<Option<StoredCheckpoint>, StoreError> {
    let row = client
        .query_opt(
            "SELECT size, root, note, key_name, signed_at FROM audit_checkpoints \
             WHERE tenant_id = $1 AND ($2::int8 IS NULL OR size = $2) ORDER BY size DESC LIMIT 1",
            &[&tenant, &size.map(|s| s as i64)],
        )
        .await?;
    row.as_ref().map(checkpoint_of_row).transpose()
}

/// The key the service signs checkpoints with.
pub struct LogKey {
    pub name: String,
    pub signer: signed_note::StandardSigner,
    /// The verifier key in signed-note's text form (`name+id+base64`).
    pub verifier_key: String,
}

impl LogKey {
    /// A key file's text: signed-note's private key on the first line, its
    /// verifier key on the second (as `opsledger keygen` writes them). The
    /// pair is checked by signing and verifying a note.
    pub fn parse(text: &str) -> Result<LogKey, String> {
        use signed_note::Signer;
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        let (Some(private), Some(verifier)) = (lines.next(), lines.next()) else {
            return Err("a key file has two lines: the private key, then the verifier key".into());
        };
        let signer = signed_note::StandardSigner::new(private)
            .map_err(|e| format!("the private key is not a signed-note Ed25519 key: {e}"))?;
        let name = signer.name().to_owned();
        let probe =
            audit::signed_checkpoint(&signer, &format!("{name}/probe"), 1, tlog::EMPTY_HASH)
                .map_err(|e| format!("the key cannot sign: {e}"))?;
        audit::open_checkpoint(probe.as_bytes(), verifier)
            .map_err(|e| format!("the verifier key does not match the private key: {e}"))?;
        Ok(LogKey {
            name,
            signer,
            verifier_key: verifier.to_owned(),
        })
    }
}

/// What one round of signing did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Signed {
    pub signed: Vec<(Uuid, u64)>,
    /// Tree heads not signed, with the reason: not consistent with the last
    /// checkpoint.
    pub refused: Vec<(Uuid, u64, String)>,
}

/// First half of the signer's advisory lock key ("opsl"), as projections'.
const LOCK_NAMESPACE: i32 = 0x6f70_736c;

/// Signs the tree head of every tenant whose tree grew since its last
/// checkpoint, once each new head is proved consistent with that
/// checkpoint. One signer at a time across instances.
pub async fn sign_due(pool: &Pool, key: &LogKey) -> Result<Signed, StoreError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let owned: bool = tx
        .query_one(
            "SELECT pg_try_advisory_xact_lock($1, hashtext('audit-signer'))",
            &[&LOCK_NAMESPACE],
        )
        .await?
        .get(0);
    let mut done = Signed::default();
    if !owned {
        return Ok(done);
    }
    let due = tx
        .query(
            "SELECT t.tenant_id, t.size, t.root, c.size, c.root FROM audit_trees t \
             LEFT JOIN LATERAL (SELECT size, root FROM audit_checkpoints c \
                 WHERE c.tenant_id = t.tenant_id ORDER BY size DESC LIMIT 1) c ON true \
             WHERE t.size > 0 AND (c.size IS NULL OR t.size <> c.size OR t.root <> c.root)",
            &[],
        )
        .await?;
    for r in &due {
        let tenant: Uuid = r.get(0);
        let head = TreeHead {
            size: r.get::<_, i64>(1) as u64,
            root: hash(r.get(2))?,
        };
        let last: Option<TreeHead> = match r.get::<_, Option<i64>>(3) {
            Some(size) => Some(TreeHead {
                size: size as u64,
                root: hash(r.get(4))?,
            }),
            None => None,
        };
        if let Some(reason) = inconsistency(&tx, tenant, last, head).await? {
            // Kept once per tree head and reason, with the instant it was
            // first refused: a refusal that stands is logged when it begins
            // (and again when the head or reason changes), not every pass.
            let new = tx
                .execute(
                    "INSERT INTO audit_refusals (tenant_id, size, reason) VALUES ($1, $2, $3) \
                     ON CONFLICT (tenant_id) DO UPDATE SET size = EXCLUDED.size, \
                       reason = EXCLUDED.reason, refused_at = now() \
                     WHERE (audit_refusals.size, audit_refusals.reason) \
                       IS DISTINCT FROM (EXCLUDED.size, EXCLUDED.reason)",
                    &[&tenant, &(head.size as i64), &reason],
                )
                .await?
                > 0;
            if new {
                tracing::error!(tenant = %tenant, size = head.size, reason = %reason,
                    "refusing to sign a tree head inconsistent with the last checkpoint");
            } else {
                tracing::debug!(tenant = %tenant, size = head.size, "a refusal to sign stands");
            }
            done.refused.push((tenant, head.size, reason));
            continue;
        }
        let note = audit::signed_checkpoint(
            &key.signer,
            &audit::origin(&key.name, tenant),
            head.size,
            head.root,
        )
        .map_err(|e| StoreError::Corrupt(format!("cannot sign: {e}")))?;
        tx.execute(
            "INSERT INTO audit_checkpoints (tenant_id, size, root, note, key_name) \
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &tenant,
                &(head.size as i64),
                &head.root.0.as_slice(),
                &note,
                &key.name,
            ],
        )
        .await?;
        tx.execute(
            "DELETE FROM audit_refusals WHERE tenant_id = $1",
            &[&tenant],
        )
        .await?;
        done.signed.push((tenant, head.size));
    }
    tx.commit().await?;
    Ok(done)
}

/// Why `head` may not be signed after `last`, if it may not: it is smaller,
/// or no consistency proof from `last` verifies against it.
async fn inconsistency<C: GenericClient>(
    client: &C,
    tenant: Uuid,
    last: Option<TreeHead>,
    head: TreeHead,
) -> Result<Option<String>, StoreError> {
    let Some(last) = last else {
        return Ok(None);
    };
    if head.size < last.size {
        return Ok(Some(format!(
            "the tree has {} leaves, fewer than the {} of the last checkpoint",
            head.size, last.size
        )));
    }
    if head.size == last.size {
        return Ok(Some(format!(
            "the tree of {} leaves has another root than the last checkpoint of that size",
            head.size
        )));
    }
    let proof = match consistency(client, tenant, last.size, head.size).await? {
        Ok(proof) => proof,
        Err(e) => return Ok(Some(format!("no consistency proof: {e}"))),
    };
    Ok(
        tlog::check_tree(&proof, head.size, head.root, last.size, last.root)
            .err()
            .map(|e| {
                format!(
                    "the tree of {} leaves is not an extension of the last checkpoint ({} leaves): {e}",
                    head.size, last.size
                )
            }),
    )
}

/// The signer's refusal for a tenant, if it has not signed since: the tree
/// size and reason, and when it was first refused so.
pub async fn refusal<C: GenericClient>(
    client: &C,
    tenant: Uuid,
) -> Result<Option<(u64, String, DateTime<Utc>)>, StoreError> {
    let row = client
        .query_opt(
            "SELECT size, reason, refused_at FROM audit_refusals WHERE tenant_id = $1",
            &[&tenant],
        )
        .await?;
    Ok(row.map(|r| (r.get::<_, i64>(0) as u64, r.get(1), r.get(2))))
}

/// What an audit search asks for (every filter optional).
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub role: Option<String>,
    /// A stream id, or an entity's id (the end of its streams' ids).
    pub entity: Option<String>,
    pub event_type: Option<String>,
    pub work_class: Option<String>,
    pub recorded_from: Option<DateTime<Utc>>,
    pub recorded_to: Option<DateTime<Utc>>,
    pub occurred_from: Option<DateTime<Utc>>,
    pub occurred_to: Option<DateTime<Utc>>,
    /// Continue after this position (in the order asked for).
    pub after: Option<i64>,
    pub newest_first: bool,
    pub limit: i64,
}

/// A tenant's events matching `f`, in position order (newest first when
/// asked). The actor and role are the metadata's, as recorded.
pub async fn search<C: GenericClient>(
    client: &C,
    tenant: Uuid,
    f: &AuditFilter,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let (cmp, order) = if f.newest_first {
        ("<", "DESC")
    } else {
        (">", "ASC")
    };
    let sql = format!(
        "SELECT {} FROM events WHERE tenant_id = $1 \
           AND ($2::text IS NULL OR metadata->>'actor' = $2) \
           AND ($3::text IS NULL OR metadata->>'role' = $3) \
           AND ($4::text IS NULL OR stream_id = $4 OR (length($4) = 36 AND stream_id LIKE '%-' || $4)) \
           AND ($5::text IS NULL OR event_type = $5) \
           AND ($6::text IS NULL OR work_class = $6) \
           AND ($7::timestamptz IS NULL OR recorded_at >= $7) \
           AND ($8::timestamptz IS NULL OR recorded_at < $8) \
           AND ($9::timestamptz IS NULL OR occurred_at >= $9) \
           AND ($10::timestamptz IS NULL OR occurred_at < $10) \
           AND ($11::int8 IS NULL OR position {cmp} $11) \
         ORDER BY position {order} LIMIT $12",
        crate::read::COLUMNS
    );
    let rows = client
        .query(
            &sql,
            &[
                &tenant,
                &f.actor,
                &f.role,
                &f.entity,
                &f.event_type,
                &f.work_class,
                &f.recorded_from,
                &f.recorded_to,
                &f.occurred_from,
                &f.occurred_to,
                &f.after,
                &f.limit,
            ],
        )
        .await?;
    rows.iter().map(crate::read::decode).collect()
}

/// Leaves read per round trip while exporting.
pub const EXPORT_PAGE_LEAVES: i64 = 2_000;

/// Leaves `[from, until)` of a tenant's tree as export lines, at most
/// `limit`, in leaf order, each joined to its event as stored now (an event
/// removed since leaves a gap the verifier names; an altered one, a link
/// that does not hash).
pub async fn export_page<C: GenericClient>(
    client: &C,
    tenant: Uuid,
    from: u64,
    until: u64,
    limit: i64,
) -> Result<Vec<audit::ExportedLeaf>, StoreError> {
    let columns = LEAF_COLUMNS
        .split(", ")
        .map(|c| format!("e.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let rows = client
        .query(
            &format!(
                "SELECT l.leaf_index, {columns} FROM audit_leaves l \
                 JOIN events e ON e.position = l.position \
                 WHERE l.tenant_id = $1 AND l.leaf_index >= $2 AND l.leaf_index < $3 \
                 ORDER BY l.leaf_index LIMIT $4"
            ),
            &[&tenant, &(from as i64), &(until as i64), &limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let leaf = leaf_of_row(r, 1);
            let e = &leaf.event;
            audit::ExportedLeaf {
                leaf_index: r.get::<_, i64>(0) as u64,
                position: r.get(1),
                event_id: e.event_id,
                tenant_id: e.tenant_id,
                stream_id: e.stream_id.to_owned(),
                stream_version: e.stream_version,
                event_type: e.event_type.to_owned(),
                schema_version: e.schema_version,
                work_class: e.work_class.to_owned(),
                payload: e.payload_json.to_owned(),
                metadata: e.metadata_json.to_owned(),
                occurred_at_us: e.occurred_at.timestamp_micros(),
                recorded_at_us: e.recorded_at.timestamp_micros(),
                chain_lane: leaf.chain_lane,
                prev_hash: hex::encode(leaf.prev_hash),
                hash: hex::encode(leaf.hash),
            }
        })
        .collect())
}

/// The latest signed checkpoint (the note) of each of these tenants that
/// has one: what every client mail carries.
pub async fn latest_notes<C: GenericClient>(
    client: &C,
    tenants: &[Uuid],
) -> Result<HashMap<Uuid, String>, StoreError> {
    let rows = client
        .query(
            "SELECT DISTINCT ON (tenant_id) tenant_id, note FROM audit_checkpoints \
             WHERE tenant_id = ANY($1) ORDER BY tenant_id, size DESC",
            &[&tenants],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}
