//! The transparency log (SPEC §3.9): each tenant's events are the leaves of
//! an append-only Merkle tree, hashed as RFC 9162 says, stored as C2SP
//! `tlog-tiles` (height 8) and signed as C2SP `tlog-checkpoint`s inside
//! `signed-note`s. The tree arithmetic and proofs are `tlog_tiles`'s (a port
//! of Go's `sumdb/tlog`); this module adds what is ours: the bytes of a leaf,
//! the right edge of a growing tree, and the checkpoint's origin.
//!
//! No I/O: the store keeps tiles and leaves, the server holds the key.

use std::collections::HashMap;

use base64::Engine;
use signed_note::{Note, Signer, StandardVerifier, VerifierList};
use tlog_tiles::tlog::{self, HashReader};
pub use tlog_tiles::tlog::{Hash, HASH_SIZE};
use tlog_tiles::Tile;

use crate::chain::ChainedContent;

/// Tile height: 256 hashes a tile, as C2SP `tlog-tiles` fixes it.
pub const TILE_HEIGHT: u8 = 8;
const TILE_WIDTH: usize = 1 << TILE_HEIGHT;

/// Names the leaf encoding below; a new encoding gets a new name.
pub const LEAF_FORMAT: &str = "opsledger-leaf/v1";

/// An event as a leaf of its tenant's tree: what the hash chain covers, and
/// the chain's own link, so that the tree and the chain vouch for each other.
#[derive(Debug, Clone, Copy)]
pub struct LeafContent<'a> {
    pub event: ChainedContent<'a>,
    pub chain_lane: i16,
    pub prev_hash: &'a [u8],
    pub hash: &'a [u8],
}

impl LeafContent<'_> {
    /// The leaf's bytes: every field length-prefixed (u32, big endian), in
    /// this order: [`LEAF_FORMAT`], event id (16 bytes), tenant id (16),
    /// stream id (UTF-8), stream version (i64 BE), event type, schema
    /// version (i32 BE), work class, payload (the stored JSON text),
    /// metadata (the stored JSON text), occurred at and recorded at
    /// (microseconds since the Unix epoch, i64 BE), chain lane (i16 BE),
    /// previous chain hash, chain hash.
    pub fn bytes(&self) -> Vec<u8> {
        let e = &self.event;
        let mut out = Vec::with_capacity(
            256 + e.stream_id.len() + e.payload_json.len() + e.metadata_json.len(),
        );
        let mut field = |bytes: &[u8]| {
            out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
            out.extend_from_slice(bytes);
        };
        field(LEAF_FORMAT.as_bytes());
        field(e.event_id.as_bytes());
        field(e.tenant_id.as_bytes());
        field(e.stream_id.as_bytes());
        field(&e.stream_version.to_be_bytes());
        field(e.event_type.as_bytes());
        field(&e.schema_version.to_be_bytes());
        field(e.work_class.as_bytes());
        field(e.payload_json.as_bytes());
        field(e.metadata_json.as_bytes());
        field(&e.occurred_at.timestamp_micros().to_be_bytes());
        field(&e.recorded_at.timestamp_micros().to_be_bytes());
        field(&self.chain_lane.to_be_bytes());
        field(self.prev_hash);
        field(self.hash);
        out
    }

    /// RFC 9162: `SHA-256(0x00 ‖ leaf)`.
    pub fn leaf_hash(&self) -> Hash {
        tlog::record_hash(&self.bytes())
    }
}

/// A tile's place: its level (tree level / 8) and its index in that level.
pub type TileKey = (u8, u64);

/// Tiles at hand, by place: each holds the hashes stored so far (a full
/// tile 256 of them). A hash the tree stores but no tile here holds is
/// reported missing, never guessed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tiles(pub HashMap<TileKey, Vec<u8>>);

impl Tiles {
    /// The tiles that hold the hashes `indexes` (stored-hash indexes).
    pub fn needed(indexes: &[u64]) -> Vec<TileKey> {
        let mut keys: Vec<TileKey> = indexes
            .iter()
            .map(|&i| {
                let t = Tile::from_index(TILE_HEIGHT, i);
                (t.level(), t.level_index())
            })
            .collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    }
}

impl HashReader for Tiles {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog::Error> {
        indexes
            .iter()
            .map(|&i| {
                let t = Tile::from_index(TILE_HEIGHT, i);
                let data = self
                    .0
                    .get(&(t.level(), t.level_index()))
                    .ok_or(tlog::Error::IndexesNotInTree)?;
                t.hash_at_index(data, i)
            })
            .collect()
    }
}

/// Answers any index with a zero hash and remembers what was asked: a
/// proof's shape depends on the sizes alone, so one dry run tells which
/// tiles to fetch before the real one.
#[derive(Debug, Default)]
pub struct Wanted(std::cell::RefCell<Vec<u64>>);

impl Wanted {
    pub fn tiles(&self) -> Vec<TileKey> {
        Tiles::needed(&self.0.borrow())
    }
}

impl HashReader for Wanted {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog::Error> {
        self.0.borrow_mut().extend_from_slice(indexes);
        Ok(vec![Hash([0; HASH_SIZE]); indexes.len()])
    }
}

/// The tiles that answering `ask` with a tree's hashes needs: `ask` runs
/// once against [`Wanted`].
pub fn tiles_for<T>(ask: impl FnOnce(&Wanted) -> Result<T, tlog::Error>) -> Vec<TileKey> {
    let wanted = Wanted::default();
    // The dry run's answer is meaningless; only the indexes it read count.
    let _ = ask(&wanted);
    wanted.tiles()
}

/// The right edge of a tenant's tree: its size, and at each tile level the
/// tile still filling (fewer than 256 hashes; absent when empty). A full
/// tile is final and leaves the edge as it fills.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Edge {
    pub size: u64,
    pub tiles: Tiles,
}

/// A tile written by [`Edge::push`]: full ones never change again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TileWrite {
    pub key: TileKey,
    pub data: Vec<u8>,
}

impl Edge {
    /// The places of the edge tiles of a tree of `size` leaves, which hold
    /// every hash its root needs (see [`Edge::root`]).
    pub fn keys(size: u64) -> Vec<TileKey> {
        let mut keys = vec![];
        let mut level = 0u8;
        while size >> (u32::from(TILE_HEIGHT) * u32::from(level)) > 0 {
            let at_level = size >> (u32::from(TILE_HEIGHT) * u32::from(level));
            if !at_level.is_multiple_of(TILE_WIDTH as u64) {
                keys.push((level, at_level / TILE_WIDTH as u64));
            }
            level += 1;
        }
        keys
    }

    /// Appends a leaf. Returns the tiles that became full on the way: their
    /// data is final. (The edge tiles are written by the caller afterwards.)
    pub fn push(&mut self, leaf: Hash) -> Vec<TileWrite> {
        let mut full = vec![];
        let mut hash = leaf;
        let mut level = 0u8;
        loop {
            // Hashes at this tile level before this one.
            let before = self.size >> (u32::from(TILE_HEIGHT) * u32::from(level));
            let key = (level, before / TILE_WIDTH as u64);
            let data = self.tiles.0.entry(key).or_default();
            data.extend_from_slice(&hash.0);
            if data.len() < TILE_WIDTH * HASH_SIZE {
                break;
            }
            let data = self.tiles.0.remove(&key).unwrap_or_default();
            hash = Tile::subtree_hash(&data);
            full.push(TileWrite { key, data });
            level += 1;
        }
        self.size += 1;
        full
    }

    /// The root of the tree as it stands (RFC 9162; the empty tree's is
    /// SHA-256 of nothing). Every subtree its root is made of lies in the
    /// last unfinished block of some tile level, so the edge has its hash.
    pub fn root(&self) -> Result<Hash, tlog::Error> {
        tlog::tree_hash(self.size, &self.tiles)
    }
}

/// The origin line of a tenant's checkpoints: the log's name (the signing
/// key's) and the tenant.
pub fn origin(log_name: &str, tenant_id: uuid::Uuid) -> String {
    format!("{log_name}/tenants/{tenant_id}")
}

/// A C2SP `tlog-checkpoint` (origin, size, base64 root) signed as a C2SP
/// `signed-note` by `signer`.
pub fn signed_checkpoint(
    signer: &dyn Signer,
    origin: &str,
    size: u64,
    root: Hash,
) -> Result<String, AuditError> {
    let text = format!("{origin}\n{size}\n{}\n", base64(&root.0));
    let mut note = Note::new(text.as_bytes(), &[]).map_err(|e| AuditError::Note(e.to_string()))?;
    note.add_sigs(&[signer])
        .map_err(|e| AuditError::Note(e.to_string()))?;
    String::from_utf8(note.to_bytes()).map_err(|e| AuditError::Note(e.to_string()))
}

/// A signed checkpoint, read back and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

/// Checks `note` against the verifier key `vkey` (signed-note's text form,
/// `name+id+base64`) and reads its checkpoint.
pub fn open_checkpoint(note: &[u8], vkey: &str) -> Result<Checkpoint, AuditError> {
    let verifier = StandardVerifier::new(vkey).map_err(|e| AuditError::Key(format!("{e:?}")))?;
    let verifiers = VerifierList::new(vec![Box::new(verifier)]);
    let note = Note::from_bytes(note).map_err(|e| AuditError::Note(e.to_string()))?;
    note.verify(&verifiers)
        .map_err(|e| AuditError::Signature(e.to_string()))?;
    let checkpoint = tlog_tiles::Checkpoint::from_bytes(note.text())
        .map_err(|e| AuditError::Note(e.to_string()))?;
    Ok(Checkpoint {
        origin: checkpoint.origin().to_owned(),
        size: checkpoint.size(),
        root: *checkpoint.hash(),
    })
}

pub fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A hash from its base64 text.
pub fn hash_from_base64(text: &str) -> Option<Hash> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?;
    Some(Hash(bytes.try_into().ok()?))
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuditError {
    #[error("malformed note or checkpoint: {0}")]
    Note(String),
    #[error("unusable key: {0}")]
    Key(String),
    #[error("the signature does not verify: {0}")]
    Signature(String),
}

/// A tree's root computed as its leaves stream past, in O(log n) memory:
/// the roots of the perfect subtrees seen so far (RFC 9162's tree is their
/// right-to-left fold).
#[derive(Debug, Clone, Default)]
pub struct RootBuilder {
    size: u64,
    /// Perfect subtrees, left to right: (height, hash).
    stack: Vec<(u32, Hash)>,
}

impl RootBuilder {
    pub fn push(&mut self, leaf: Hash) {
        let mut node = (0u32, leaf);
        while let Some(&(height, left)) = self.stack.last() {
            if height != node.0 {
                break;
            }
            self.stack.pop();
            node = (height + 1, tlog::node_hash(left, node.1));
        }
        self.stack.push(node);
        self.size += 1;
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn root(&self) -> Hash {
        let mut nodes = self.stack.iter().rev();
        let Some(&(_, mut root)) = nodes.next() else {
            return tlog::EMPTY_HASH;
        };
        for &(_, left) in nodes {
            root = tlog::node_hash(left, root);
        }
        root
    }
}

/// One line of an export (JSON Lines): a leaf and everything it is made of,
/// the JSON texts exactly as stored and the instants in microseconds, so
/// anyone can rebuild its bytes (see [`LeafContent::bytes`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportedLeaf {
    pub leaf_index: u64,
    pub position: i64,
    pub event_id: uuid::Uuid,
    pub tenant_id: uuid::Uuid,
    pub stream_id: String,
    pub stream_version: i64,
    pub event_type: String,
    pub schema_version: i32,
    pub work_class: String,
    /// The payload's JSON text, as stored and hashed.
    pub payload: String,
    /// The metadata's JSON text, as stored and hashed.
    pub metadata: String,
    pub occurred_at_us: i64,
    pub recorded_at_us: i64,
    pub chain_lane: i16,
    /// Hex.
    pub prev_hash: String,
    /// Hex.
    pub hash: String,
}

/// The last line of an export.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportEnd {
    /// The signed checkpoint (C2SP signed note) of the exported tree.
    pub checkpoint: String,
}

impl ExportedLeaf {
    /// The leaf as a [`LeafContent`] over these fields and the decoded hashes.
    fn with_content<T>(
        &self,
        prev: &[u8],
        hash: &[u8],
        then: impl FnOnce(&LeafContent<'_>) -> T,
    ) -> Option<T> {
        let at = |us: i64| chrono::DateTime::from_timestamp_micros(us);
        let content = LeafContent {
            event: ChainedContent {
                event_id: self.event_id,
                tenant_id: self.tenant_id,
                stream_id: &self.stream_id,
                stream_version: self.stream_version,
                event_type: &self.event_type,
                schema_version: self.schema_version,
                work_class: &self.work_class,
                payload_json: &self.payload,
                metadata_json: &self.metadata,
                occurred_at: at(self.occurred_at_us)?,
                recorded_at: at(self.recorded_at_us)?,
            },
            chain_lane: self.chain_lane,
            prev_hash: prev,
            hash,
        };
        Some(then(&content))
    }
}

/// What an export's check found wrong first.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct ExportFailure {
    /// The line (1-based) it was found on, if one.
    pub line: Option<u64>,
    pub leaf_index: Option<u64>,
    pub event_id: Option<uuid::Uuid>,
    pub reason: String,
}

impl std::fmt::Display for ExportFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        if let Some(leaf) = self.leaf_index {
            write!(f, "leaf {leaf}: ")?;
        }
        if let Some(event) = self.event_id {
            write!(f, "event {event}: ")?;
        }
        f.write_str(&self.reason)
    }
}

/// What a successful check established.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ExportVerified {
    pub tenant_id: Option<uuid::Uuid>,
    pub leaves: u64,
    pub origin: String,
    /// Base64 root, equal to the signed checkpoint's.
    pub root: String,
    /// The size of the older checkpoint the export extends, when given.
    pub extends: Option<u64>,
}

/// A link seen before the one it follows: its hash, line, leaf and event.
type Early = ([u8; 32], u64, u64, uuid::Uuid);

/// Checks an export line by line, with nothing but the log's verifier key
/// (and perhaps an older signed checkpoint): every chain link, the dense
/// leaf order, the Merkle root against the signed checkpoint at the end,
/// the signature, and that the older checkpoint's tree is a prefix of this.
#[derive(Debug)]
pub struct ExportCheck {
    verifier_key: String,
    /// An older checkpoint this export must extend.
    since: Option<Checkpoint>,
    since_root: Option<Hash>,
    tree: RootBuilder,
    tenant: Option<uuid::Uuid>,
    /// Per chain lane: the hash the next link must name as its previous.
    heads: HashMap<i16, [u8; 32]>,
    /// Links seen before the link they follow, by (lane, previous hash).
    early: HashMap<(i16, [u8; 32]), Early>,
    line: u64,
    end: Option<Checkpoint>,
}

impl ExportCheck {
    /// `since`: an older signed checkpoint, as a signed note.
    pub fn new(verifier_key: &str, since: Option<&str>) -> Result<ExportCheck, ExportFailure> {
        let since = since
            .map(|note| {
                open_checkpoint(note.as_bytes(), verifier_key).map_err(|e| ExportFailure {
                    line: None,
                    leaf_index: None,
                    event_id: None,
                    reason: format!("the older checkpoint: {e}"),
                })
            })
            .transpose()?;
        Ok(ExportCheck {
            verifier_key: verifier_key.to_owned(),
            since,
            since_root: None,
            tree: RootBuilder::default(),
            tenant: None,
            heads: HashMap::new(),
            early: HashMap::new(),
            line: 0,
            end: None,
        })
    }

    fn fail(&self, leaf: Option<&ExportedLeaf>, reason: String) -> ExportFailure {
        ExportFailure {
            line: Some(self.line),
            leaf_index: leaf.map(|l| l.leaf_index),
            event_id: leaf.map(|l| l.event_id),
            reason,
        }
    }

    /// The next line of the export.
    pub fn line(&mut self, text: &str) -> Result<(), ExportFailure> {
        if let Ok(end) = serde_json::from_str::<ExportEnd>(text) {
            return self.end_with(&end.checkpoint);
        }
        let leaf: ExportedLeaf = serde_json::from_str(text).map_err(|e| {
            self.line += 1;
            self.fail(None, format!("neither a leaf nor the checkpoint: {e}"))
        })?;
        self.leaf(&leaf)
    }

    /// Counts a line, which may not follow the checkpoint.
    fn next_line(&mut self) -> Result<(), ExportFailure> {
        self.line += 1;
        if self.end.is_some() {
            return Err(self.fail(None, "a line after the checkpoint".into()));
        }
        Ok(())
    }

    /// The export's last line, its signed checkpoint (a signed note).
    pub fn end_with(&mut self, note: &str) -> Result<(), ExportFailure> {
        self.next_line()?;
        let checkpoint = open_checkpoint(note.as_bytes(), &self.verifier_key)
            .map_err(|e| self.fail(None, format!("the checkpoint: {e}")))?;
        self.end = Some(checkpoint);
        Ok(())
    }

    /// The next leaf, already read (what [`ExportCheck::line`] does after
    /// parsing a leaf's line).
    pub fn leaf(&mut self, leaf: &ExportedLeaf) -> Result<(), ExportFailure> {
        self.next_line()?;
        if leaf.leaf_index != self.tree.size() {
            return Err(self.fail(
                Some(leaf),
                format!(
                    "leaf {} was expected here: leaves are missing or out of order",
                    self.tree.size()
                ),
            ));
        }
        if *self.tenant.get_or_insert(leaf.tenant_id) != leaf.tenant_id {
            return Err(self.fail(Some(leaf), "another tenant's event".into()));
        }
        let hex32 = |text: &str| -> Option<[u8; 32]> { hex::decode(text).ok()?.try_into().ok() };
        let (Some(prev), Some(hash)) = (hex32(&leaf.prev_hash), hex32(&leaf.hash)) else {
            return Err(self.fail(Some(leaf), "a chain hash is not 32 bytes of hex".into()));
        };
        let (link, leaf_hash) = leaf
            .with_content(&prev, &hash, |c| {
                (crate::chain::link_hash(&prev, &c.event), c.leaf_hash())
            })
            .ok_or_else(|| self.fail(Some(leaf), "an instant out of range".into()))?;
        if link != hash {
            return Err(self.fail(
                Some(leaf),
                "its content does not hash to its chain hash: the event was altered".into(),
            ));
        }
        self.link(leaf, prev, hash);
        self.tree.push(leaf_hash);
        if let Some(since) = &self.since {
            if self.tree.size() == since.size {
                self.since_root = Some(self.tree.root());
            }
        }
        Ok(())
    }

    /// Follows the chain lane: links may come in another order than the
    /// chain's (the tree's order is the commit order of transactions), so
    /// a link whose previous one is not seen yet waits for it.
    fn link(&mut self, leaf: &ExportedLeaf, prev: [u8; 32], hash: [u8; 32]) {
        let lane = leaf.chain_lane;
        let head = self.heads.entry(lane).or_insert(crate::chain::GENESIS);
        if *head != prev {
            self.early.insert(
                (lane, prev),
                (hash, self.line, leaf.leaf_index, leaf.event_id),
            );
            return;
        }
        *head = hash;
        while let Some((next, ..)) = self.early.remove(&(lane, *head)) {
            *head = next;
        }
    }

    /// After the last line.
    pub fn finish(self) -> Result<ExportVerified, ExportFailure> {
        if let Some((_, (_, line, leaf, event))) =
            self.early.iter().min_by_key(|(_, (_, line, ..))| *line)
        {
            return Err(ExportFailure {
                line: Some(*line),
                leaf_index: Some(*leaf),
                event_id: Some(*event),
                reason: "the chain breaks before this event: the link it follows is missing".into(),
            });
        }
        let Some(end) = &self.end else {
            return Err(ExportFailure {
                line: None,
                leaf_index: None,
                event_id: None,
                reason: format!(
                    "the export ends after {} leaves without its signed checkpoint: it was cut short",
                    self.tree.size()
                ),
            });
        };
        let whole = |reason: String| ExportFailure {
            line: None,
            leaf_index: None,
            event_id: None,
            reason,
        };
        if end.size != self.tree.size() {
            return Err(whole(format!(
                "the checkpoint is of {} leaves, the export has {}",
                end.size,
                self.tree.size()
            )));
        }
        if let Some(tenant) = self.tenant {
            if !end.origin.ends_with(&format!("/tenants/{tenant}")) {
                return Err(whole(format!(
                    "the checkpoint's origin {:?} is not this tenant's",
                    end.origin
                )));
            }
        }
        let root = self.tree.root();
        if root != end.root {
            return Err(whole(
                "the leaves do not hash to the signed root: the log differs from what was signed"
                    .into(),
            ));
        }
        let extends = match &self.since {
            None => None,
            Some(since) if since.origin != end.origin => {
                return Err(whole("the older checkpoint is of another log".into()))
            }
            Some(since) if since.size > end.size => {
                return Err(whole(format!(
                    "the older checkpoint has {} leaves, more than this export's {}: leaves were removed",
                    since.size, end.size
                )))
            }
            Some(since) if self.since_root != Some(since.root) => {
                return Err(whole(format!(
                    "the first {} leaves do not hash to the older checkpoint's root: the history was rewritten",
                    since.size
                )))
            }
            Some(since) => Some(since.size),
        };
        Ok(ExportVerified {
            tenant_id: self.tenant,
            leaves: self.tree.size(),
            origin: end.origin.clone(),
            root: base64(&root.0),
            extends,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tlog_tiles::tlog::{check_record, check_tree, prove_record, prove_tree};

    /// RFC 6962's test data (as in certificate-transparency-go and
    /// transparency-dev/merkle): leaves, and the root of each prefix.
    const LEAVES: [&str; 8] = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];
    const ROOTS: [&str; 9] = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    fn h(text: &str) -> Hash {
        Hash(hex::decode(text).unwrap().try_into().unwrap())
    }

    /// An edge grown from leaf hashes, with every tile it wrote kept.
    fn grown(leaves: impl IntoIterator<Item = Hash>) -> (Edge, Tiles) {
        let mut edge = Edge::default();
        let mut all = Tiles::default();
        for leaf in leaves {
            for t in edge.push(leaf) {
                all.0.insert(t.key, t.data);
            }
        }
        all.0
            .extend(edge.tiles.0.iter().map(|(k, v)| (*k, v.clone())));
        (edge, all)
    }

    /// The RFC's own recursion, to hold the tiled tree against.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => tlog::EMPTY_HASH,
            1 => leaves[0],
            n => {
                let k = n.next_power_of_two() / 2;
                tlog::node_hash(mth(&leaves[..k]), mth(&leaves[k..]))
            }
        }
    }

    #[test]
    fn a_streamed_root_is_the_rfc_root() {
        let leaves: Vec<Hash> = (0u32..300)
            .map(|i| tlog::record_hash(&i.to_be_bytes()))
            .collect();
        let mut b = RootBuilder::default();
        assert_eq!(b.root(), tlog::EMPTY_HASH);
        for (i, l) in leaves.iter().enumerate() {
            b.push(*l);
            assert_eq!(b.root(), mth(&leaves[..=i]), "size {}", i + 1);
        }
    }

    #[test]
    fn roots_are_rfc_6962s() {
        let leaves: Vec<Hash> = LEAVES
            .iter()
            .map(|l| tlog::record_hash(&hex::decode(l).unwrap()))
            .collect();
        for n in 0..=leaves.len() {
            let (edge, _) = grown(leaves[..n].iter().copied());
            assert_eq!(edge.root().unwrap(), h(ROOTS[n]), "size {n}");
        }
    }

    #[test]
    fn proofs_are_rfc_6962s() {
        let leaves: Vec<Hash> = LEAVES
            .iter()
            .map(|l| tlog::record_hash(&hex::decode(l).unwrap()))
            .collect();
        let (_, tiles) = grown(leaves.iter().copied());
        let inclusion = prove_record(8, 0, &tiles).unwrap();
        assert_eq!(
            inclusion,
            [
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ]
            .map(h)
        );
        let inclusion = prove_record(8, 5, &tiles).unwrap();
        assert_eq!(
            inclusion,
            [
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ]
            .map(h)
        );
        check_record(&inclusion, 8, h(ROOTS[8]), 5, leaves[5]).unwrap();
        let consistency = prove_tree(8, 2, &tiles).unwrap();
        assert_eq!(
            consistency[..2],
            [
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ]
            .map(h)
        );
        check_tree(&consistency, 8, h(ROOTS[8]), 2, h(ROOTS[2])).unwrap();
        assert!(check_tree(&consistency, 8, h(ROOTS[8]), 2, h(ROOTS[3])).is_err());
    }

    /// Past one tile and one level of tiles: the edge's root and every proof
    /// agree with the RFC's recursion, at sizes around the tile boundaries.
    #[test]
    fn the_tiled_tree_is_the_rfc_tree_across_tile_boundaries() {
        let leaves: Vec<Hash> = (0u32..66_100)
            .map(|i| tlog::record_hash(&i.to_be_bytes()))
            .collect();
        let mut edge = Edge::default();
        let mut all = Tiles::default();
        let checked = [
            1, 255, 256, 257, 511, 512, 4097, 65_535, 65_536, 65_537, 66_100,
        ];
        for (i, leaf) in leaves.iter().enumerate() {
            for t in edge.push(*leaf) {
                assert_eq!(t.data.len(), TILE_WIDTH * HASH_SIZE);
                all.0.insert(t.key, t.data);
            }
            let size = i + 1;
            if checked.contains(&size) {
                let root = mth(&leaves[..size]);
                assert_eq!(edge.root().unwrap(), root, "size {size}");
                assert_eq!(
                    Edge::keys(size as u64),
                    {
                        let mut k: Vec<_> = edge.tiles.0.keys().copied().collect();
                        k.sort_unstable();
                        k
                    },
                    "edge tiles at size {size}"
                );
                let mut reader = all.clone();
                reader
                    .0
                    .extend(edge.tiles.0.iter().map(|(k, v)| (*k, v.clone())));
                for n in [0, size / 3, size - 1] {
                    let p = prove_record(size as u64, n as u64, &reader).unwrap();
                    check_record(&p, size as u64, root, n as u64, leaves[n]).unwrap();
                    let wanted = tiles_for(|w| prove_record(size as u64, n as u64, w));
                    assert!(wanted.iter().all(|k| reader.0.contains_key(k)));
                    let old = (n + 1) as u64;
                    let p = prove_tree(size as u64, old, &reader).unwrap();
                    check_tree(&p, size as u64, root, old, mth(&leaves[..n + 1])).unwrap();
                }
            }
        }
    }

    #[test]
    fn a_checkpoint_is_signed_and_opened_with_the_pair_of_keys() {
        let mut rng = rand_core::OsRng;
        let (skey, vkey) = signed_note::generate_key(&mut rng, "audit.example");
        let signer = signed_note::StandardSigner::new(&skey).unwrap();
        let tenant = uuid::Uuid::from_u128(7);
        let origin = origin("audit.example", tenant);
        let note = signed_checkpoint(&signer, &origin, 8, h(ROOTS[8])).unwrap();
        assert!(note.starts_with(&format!("{origin}\n8\n")), "{note}");
        assert!(note.contains("\n\n\u{2014} audit.example "), "{note}");
        let opened = open_checkpoint(note.as_bytes(), &vkey).unwrap();
        assert_eq!(
            opened,
            Checkpoint {
                origin,
                size: 8,
                root: h(ROOTS[8])
            }
        );
        let forged = note.replace("\n8\n", "\n9\n");
        assert!(open_checkpoint(forged.as_bytes(), &vkey).is_err());
        let (_, other) = signed_note::generate_key(&mut rng, "audit.example");
        assert!(open_checkpoint(note.as_bytes(), &other).is_err());
    }

    #[test]
    fn every_field_is_in_the_leaf() {
        let at = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let event = ChainedContent {
            event_id: uuid::Uuid::from_u128(1),
            tenant_id: uuid::Uuid::from_u128(2),
            stream_id: "incident-1",
            stream_version: 1,
            event_type: "IncidentOpened",
            schema_version: 1,
            work_class: "operations",
            payload_json: "{}",
            metadata_json: "{}",
            occurred_at: at,
            recorded_at: at,
        };
        let leaf = LeafContent {
            event,
            chain_lane: 3,
            prev_hash: &[0; 32],
            hash: &[1; 32],
        };
        let base = leaf.leaf_hash();
        let mut other = leaf;
        other.hash = &[2; 32];
        assert_ne!(base, other.leaf_hash());
        let mut other = leaf;
        other.chain_lane = 4;
        assert_ne!(base, other.leaf_hash());
        let mut other = leaf;
        other.event.recorded_at = at + chrono::Duration::microseconds(1);
        assert_ne!(base, other.leaf_hash());
    }
}
