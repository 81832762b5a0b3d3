//! Shared helpers of the integration tests (the tests themselves live in
//! `integration/`, one file per capability).

use chrono::Utc;
use opsledger_domain::{Metadata, NewEvent};
use opsledger_store::{AppendRequest, ExpectedVersion, StreamAppend};
use serde_json::json;
use uuid::Uuid;

pub fn meta() -> Metadata {
    Metadata {
        actor: "tester".into(),
        role: "admin".into(),
        request_id: None,
        correlation_id: None,
        causation_id: None,
        source: "test".into(),
    }
}

/// An event of a catalogued type with an arbitrary payload.
pub fn event(n: i64) -> NewEvent {
    NewEvent::new(
        "TenantRegistered",
        json!({ "n": n, "note": "テスト" }),
        meta(),
        Utc::now(),
    )
}

pub fn one(
    tenant: Uuid,
    stream: &str,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
) -> AppendRequest {
    AppendRequest {
        tenant_id: tenant,
        streams: vec![StreamAppend {
            stream_id: stream.to_owned(),
            expected,
            events,
        }],
        idempotency: None,
    }
}

/// Polls `check` until it returns Some, for at most ten seconds. For effects
/// of background workers; never used to assert on how fast they are.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..200 {
        if let Some(v) = check().await {
            return v;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// Waits up to a minute (the machine may be busy; nothing here measures
/// speed) for `check` to give a value, looking every 100 ms: for what a
/// worker does on its own time (probes, heartbeats, rules, schedules).
pub async fn within_a_minute<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        if let Some(v) = check().await {
            return v;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// The checkout's root.
pub fn repo() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `bash <script> <args…>` (a path under the checkout); whether it
/// succeeded, and what it printed on stdout and stderr.
pub fn ops_script(script: &str, args: &[&std::ffi::OsStr]) -> (bool, String) {
    let out = std::process::Command::new("bash")
        .arg(repo().join(script))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{script} runs: {e}"));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}
