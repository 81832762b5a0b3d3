//! The per-tenant hash chain (SPEC §3.6).
//!
//! `hash = SHA-256(prev_hash || field_1 || … || field_n)` where every field is
//! length-prefixed (u32, big endian), so no two different events can produce
//! the same input. The payload and metadata are hashed as the exact JSON text
//! that is stored. The first event of a tenant has `prev_hash = GENESIS`.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub const HASH_LEN: usize = 32;
/// Strands per tenant: enough for the committers to work in parallel, few
/// enough that an auditor checks a handful of chains per tenant.
pub const LANES: i16 = 16;

/// The lane of a stream: FNV-1a of its id, so it never changes between
/// versions of the service or machines.
pub fn lane_of(stream_id: &str) -> i16 {
    (fnv1a(stream_id) % LANES as u64) as i16
}

/// FNV-1a, 64 bits: a hash of a stream id that is the same in every version
/// of the service and on every machine.
pub fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
pub const GENESIS: [u8; HASH_LEN] = [0; HASH_LEN];

/// The hashed content of one event, borrowed from wherever it lives.
#[derive(Debug, Clone, Copy)]
pub struct ChainedContent<'a> {
    pub event_id: Uuid,
    pub tenant_id: Uuid,
    pub stream_id: &'a str,
    pub stream_version: i64,
    pub event_type: &'a str,
    pub schema_version: i32,
    pub work_class: &'a str,
    pub payload_json: &'a str,
    pub metadata_json: &'a str,
    pub occurred_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
}

pub fn link_hash(prev_hash: &[u8], content: &ChainedContent<'_>) -> [u8; HASH_LEN] {
    let mut h = Sha256::new();
    h.update(prev_hash);
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u32).to_be_bytes());
        h.update(bytes);
    };
    field(content.event_id.as_bytes());
    field(content.tenant_id.as_bytes());
    field(content.stream_id.as_bytes());
    field(&content.stream_version.to_be_bytes());
    field(content.event_type.as_bytes());
    field(&content.schema_version.to_be_bytes());
    field(content.work_class.as_bytes());
    field(content.payload_json.as_bytes());
    field(content.metadata_json.as_bytes());
    field(&content.occurred_at.timestamp_micros().to_be_bytes());
    field(&content.recorded_at.timestamp_micros().to_be_bytes());
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content<'a>(payload: &'a str) -> ChainedContent<'a> {
        let at = DateTime::from_timestamp(1_700_000_000, 123_000).unwrap();
        ChainedContent {
            event_id: Uuid::from_u128(1),
            tenant_id: Uuid::from_u128(2),
            stream_id: "service-1",
            stream_version: 1,
            event_type: "ServiceRegistered",
            schema_version: 1,
            work_class: "operations",
            payload_json: payload,
            metadata_json: "{}",
            occurred_at: at,
            recorded_at: at,
        }
    }

    #[test]
    fn any_changed_field_changes_the_hash() {
        let base = link_hash(&GENESIS, &content(r#"{"a":1}"#));
        assert_ne!(base, link_hash(&GENESIS, &content(r#"{"a":2}"#)));
        let mut other = content(r#"{"a":1}"#);
        other.stream_version = 2;
        assert_ne!(base, link_hash(&GENESIS, &other));
        assert_ne!(base, link_hash(&[1; HASH_LEN], &content(r#"{"a":1}"#)));
    }

    #[test]
    fn field_boundaries_cannot_be_shifted() {
        let mut a = content("{}");
        a.stream_id = "ab";
        a.event_type = "c";
        let mut b = content("{}");
        b.stream_id = "a";
        b.event_type = "bc";
        assert_ne!(link_hash(&GENESIS, &a), link_hash(&GENESIS, &b));
    }

    #[test]
    fn lanes_are_stable_and_spread() {
        assert_eq!(lane_of("incident-1"), lane_of("incident-1"));
        let lanes: std::collections::HashSet<i16> =
            (0..64).map(|i| lane_of(&format!("incident-{i}"))).collect();
        assert_eq!(lanes.len(), LANES as usize);
        assert!(lanes.iter().all(|l| (0..LANES).contains(l)));
    }

    #[test]
    fn the_hash_is_deterministic() {
        assert_eq!(
            link_hash(&GENESIS, &content("{}")),
            link_hash(&GENESIS, &content("{}"))
        );
    }
}
