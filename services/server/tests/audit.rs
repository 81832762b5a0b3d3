//! An auditor's round trip with the binary (SPEC §3.9): a key from
//! `opsledger keygen`, an export checked offline by `opsledger audit
//! verify-export` and by a few lines of Python `hashlib`, an older checkpoint
//! the newer export must extend; and the tamper drills, each of which the
//! chain check (`opsledger verify`), `/audit/verify` and the offline check
//! must all catch.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use opsledger_domain::access::Role;
use opsledger_testkit::{spawn_app_with, TestApp};
use serde_json::{json, Value};

fn opsledger(app: Option<&TestApp>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_opsledger"));
    cmd.args(args).env("RUST_LOG", "warn");
    if let Some(app) = app {
        cmd.env("DATABASE_URL", &app.db.url);
    }
    cmd.output().expect("the binary runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A folder of its own under the system's temporary folder.
fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("opsledger-audit-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The app, signing every 100 ms with a key `opsledger keygen` made.
async fn signing_app(dir: &Path) -> TestApp {
    let key = dir.join("audit.key");
    let made = opsledger(
        None,
        &[
            "keygen",
            "--name",
            "audit.example",
            "--out",
            key.to_str().unwrap(),
        ],
    );
    assert!(made.status.success(), "{}", text(&made));
    let again = opsledger(
        None,
        &[
            "keygen",
            "--name",
            "audit.example",
            "--out",
            key.to_str().unwrap(),
        ],
    );
    assert!(!again.status.success(), "keygen never overwrites a key");
    let key_text = std::fs::read_to_string(&key).unwrap();
    assert!(key_text
        .lines()
        .nth(1)
        .unwrap()
        .starts_with("audit.example+"));
    spawn_app_with(move |c| {
        c.audit_key = Some(key_text);
        c.checkpoint_interval = Duration::from_millis(100);
    })
    .await
}

async fn clients(app: &TestApp, n: usize) {
    let admin = app.token(&[Role::Admin]);
    for i in 0..n {
        let res = app
            .post(
                "/api/v1/clients",
                &admin,
                &json!({ "name": format!("client {i} {}", uuid::Uuid::now_v7()) }),
            )
            .await;
        assert_eq!(res.status(), 201);
    }
}

/// The latest checkpoint, once it covers every event of the tenant.
async fn covering_checkpoint(app: &TestApp) -> Value {
    let auditor = app.token(&[Role::Auditor]);
    let su = app.db.superuser().await;
    let count: i64 = su
        .query_one(
            "SELECT count(*) FROM events WHERE tenant_id = $1",
            &[&app.tenant],
        )
        .await
        .unwrap()
        .get(0);
    for _ in 0..300 {
        let res = app.get("/api/v1/audit/checkpoint", &auditor).await;
        if res.status() == 200 {
            let v: Value = res.json().await.unwrap();
            if v["size"].as_i64() == Some(count) {
                return v;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no checkpoint covers the {count} events");
}

async fn fetch(app: &TestApp, path: &str, to: &Path) {
    let res = app.get(path, &app.token(&[Role::Auditor])).await;
    assert_eq!(res.status(), 200, "{path}");
    std::fs::write(to, res.bytes().await.unwrap()).unwrap();
}

fn verify_export(file: &Path, key: &Path, since: Option<&Path>) -> Output {
    let mut args = vec![
        "audit",
        "verify-export",
        file.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ];
    if let Some(since) = since {
        args.extend(["--since", since.to_str().unwrap()]);
    }
    opsledger(None, &args)
}

/// An independent implementation of the leaf encoding and RFC 9162 root,
/// in Python's standard library only.
const PYTHON_ROOT: &str = r#"
import base64, hashlib, json, struct, sys, uuid

def field(b):
    return struct.pack(">I", len(b)) + b

def leaf_bytes(e):
    return b"".join(field(b) for b in [
        b"opsledger-leaf/v1",
        uuid.UUID(e["event_id"]).bytes,
        uuid.UUID(e["tenant_id"]).bytes,
        e["stream_id"].encode(),
        struct.pack(">q", e["stream_version"]),
        e["event_type"].encode(),
        struct.pack(">i", e["schema_version"]),
        e["work_class"].encode(),
        e["payload"].encode(),
        e["metadata"].encode(),
        struct.pack(">q", e["occurred_at_us"]),
        struct.pack(">q", e["recorded_at_us"]),
        struct.pack(">h", e["chain_lane"]),
        bytes.fromhex(e["prev_hash"]),
        bytes.fromhex(e["hash"]),
    ])

def mth(hashes):
    if len(hashes) == 1:
        return hashes[0]
    k = 1
    while k * 2 < len(hashes):
        k *= 2
    return hashlib.sha256(b"\x01" + mth(hashes[:k]) + mth(hashes[k:])).digest()

leaves, note = [], None
for line in open(sys.argv[1]):
    e = json.loads(line)
    if "checkpoint" in e:
        note = e["checkpoint"]
    else:
        leaves.append(hashlib.sha256(b"\x00" + leaf_bytes(e)).digest())
origin, size, root = note.split("\n")[:3]
assert int(size) == len(leaves), (size, len(leaves))
print(base64.b64encode(mth(leaves)).decode())
"#;

#[tokio::test]
async fn an_export_verifies_offline_with_the_binary_and_with_python() {
    let dir = scratch();
    let app = signing_app(&dir).await;
    clients(&app, 5).await;
    let first = covering_checkpoint(&app).await;
    let (export, key, old) = (
        dir.join("export.jsonl"),
        dir.join("verifier.key"),
        dir.join("old.checkpoint"),
    );
    fetch(&app, "/api/v1/audit/export", &export).await;
    let served: Value = app
        .get("/api/v1/audit/key", &app.token(&[Role::Operator]))
        .await
        .json()
        .await
        .unwrap();
    std::fs::write(&key, served["verifier_key"].as_str().unwrap()).unwrap();
    fetch(&app, "/api/v1/audit/checkpoint?format=note", &old).await;

    let ok = verify_export(&export, &key, None);
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(text(&ok).contains("\"ok\":true"), "{}", text(&ok));

    // Python computes the same root from the same lines.
    let script = dir.join("root.py");
    std::fs::write(&script, PYTHON_ROOT).unwrap();
    let py = Command::new(opsledger_testkit::python())
        .arg(&script)
        .arg(&export)
        .output()
        .unwrap();
    assert!(py.status.success(), "{}", text(&py));
    assert_eq!(String::from_utf8_lossy(&py.stdout).trim(), first["root"]);

    // Later: a bigger log, which extends the checkpoint held from before.
    clients(&app, 3).await;
    let second = covering_checkpoint(&app).await;
    assert!(second["size"].as_u64() > first["size"].as_u64());
    let newer = dir.join("newer.jsonl");
    fetch(&app, "/api/v1/audit/export", &newer).await;
    let extends = verify_export(&newer, &key, Some(&old));
    assert!(extends.status.success(), "{}", text(&extends));
    assert!(
        text(&extends).contains(&format!("\"extends\":{}", first["size"])),
        "{}",
        text(&extends)
    );
    // An export older than the checkpoint held cannot extend it.
    let newer_note = dir.join("newer.checkpoint");
    fetch(&app, "/api/v1/audit/checkpoint?format=note", &newer_note).await;
    let backwards = verify_export(&export, &key, Some(&newer_note));
    assert_eq!(backwards.status.code(), Some(1), "{}", text(&backwards));

    // Cut short: without its checkpoint, or without a leaf.
    let lines: Vec<String> = std::fs::read_to_string(&newer)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let short = dir.join("short.jsonl");
    std::fs::write(&short, lines[..lines.len() - 1].join("\n")).unwrap();
    let cut = verify_export(&short, &key, None);
    assert_eq!(cut.status.code(), Some(1), "{}", text(&cut));
    assert!(text(&cut).contains("cut short"), "{}", text(&cut));
    let mut holed = lines.clone();
    holed.remove(2);
    std::fs::write(&short, holed.join("\n")).unwrap();
    let hole = verify_export(&short, &key, None);
    assert_eq!(hole.status.code(), Some(1), "{}", text(&hole));
    assert!(
        text(&hole).contains("leaf 2 was expected"),
        "{}",
        text(&hole)
    );
    // Another key does not open the checkpoint.
    let stranger = dir.join("stranger.key");
    let made = opsledger(None, &["keygen", "--out", stranger.to_str().unwrap()]);
    assert!(made.status.success());
    let wrong = verify_export(&newer, &stranger, None);
    assert_eq!(wrong.status.code(), Some(1), "{}", text(&wrong));
    std::fs::remove_dir_all(&dir).ok();
}

/// One drill: a log with a signed checkpoint, tampered by a superuser with
/// the triggers off; then every check must fail and say where.
async fn drill(tamper: &str) -> (String, Value, String) {
    let dir = scratch();
    let app = signing_app(&dir).await;
    clients(&app, 6).await;
    covering_checkpoint(&app).await;
    let su = app.db.superuser().await;
    let events: Vec<(i64, i16)> = su
        .query(
            "SELECT position, chain_lane FROM events WHERE tenant_id = $1 AND stream_id LIKE 'client-%' \
             AND stream_id NOT LIKE 'client-name-%' ORDER BY position",
            &[&app.tenant],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let (middle, last) = (events[2].0, events[events.len() - 1].0);
    let sql = match tamper {
        "alter" => format!(
            "UPDATE events SET payload = '{{\"name\":\"forged\"}}' WHERE position = {middle}"
        ),
        "delete-middle" => format!("DELETE FROM events WHERE position = {middle}"),
        // The case the chain alone cannot see: the last event removed and
        // its strand's head rewound to match.
        "delete-last-and-rewind" => {
            let max: i64 = su
                .query_one(
                    "SELECT max(position) FROM events WHERE tenant_id = $1",
                    &[&app.tenant],
                )
                .await
                .unwrap()
                .get(0);
            format!(
                "UPDATE tenant_chain_heads h SET last_hash = e.prev_hash, event_count = h.event_count - 1 \
                 FROM events e WHERE e.position = {max} AND h.tenant_id = e.tenant_id AND h.chain_lane = e.chain_lane; \
                 DELETE FROM events WHERE position = {max}"
            )
        }
        // Two events of different strands change places in the log.
        "swap" => {
            let other = events
                .iter()
                .find(|(p, lane)| *p > middle && *lane != events[2].1)
                .expect("events of another strand")
                .0;
            format!(
                "ALTER TABLE events ALTER COLUMN position SET GENERATED BY DEFAULT; \
                 CREATE TEMP TABLE ids AS SELECT position, tx_id FROM events WHERE position IN ({middle}, {other}); \
                 UPDATE events SET position = -1 WHERE position = {middle}; \
                 UPDATE events SET position = {middle}, tx_id = (SELECT tx_id FROM ids WHERE position = {middle}) WHERE position = {other}; \
                 UPDATE events SET position = {other}, tx_id = (SELECT tx_id FROM ids WHERE position = {other}) WHERE position = -1; \
                 ALTER TABLE events ALTER COLUMN position SET GENERATED ALWAYS"
            )
        }
        other => panic!("no drill {other}"),
    };
    let _ = last;
    su.batch_execute(&format!(
        "SET session_replication_role = replica; {sql}; SET session_replication_role = origin"
    ))
    .await
    .unwrap();
    let chain = opsledger(Some(&app), &["verify"]);
    assert_eq!(chain.status.code(), Some(1), "{tamper}: {}", text(&chain));
    let (status, server) = {
        let res = app
            .get("/api/v1/audit/verify", &app.token(&[Role::Auditor]))
            .await;
        (res.status(), res.json::<Value>().await.unwrap())
    };
    assert_eq!(status, 200);
    assert_eq!(server["ok"], false, "{tamper}: {server}");
    let export = dir.join("export.jsonl");
    fetch(&app, "/api/v1/audit/export", &export).await;
    let key = dir.join("verifier.key");
    let served: Value = app
        .get("/api/v1/audit/key", &app.token(&[Role::Auditor]))
        .await
        .json()
        .await
        .unwrap();
    std::fs::write(&key, served["verifier_key"].as_str().unwrap()).unwrap();
    let offline = verify_export(&export, &key, None);
    assert_eq!(
        offline.status.code(),
        Some(1),
        "{tamper}: {}",
        text(&offline)
    );
    std::fs::remove_dir_all(&dir).ok();
    (text(&chain), server, text(&offline))
}

#[tokio::test]
async fn an_altered_event_is_named_by_every_check() {
    let (chain, server, offline) = drill("alter").await;
    assert!(chain.contains("does not match its hash"), "{chain}");
    assert!(
        server["first_failure"]["reason"]
            .as_str()
            .unwrap()
            .contains("altered"),
        "{server}"
    );
    assert!(offline.contains("altered"), "{offline}");
}

#[tokio::test]
async fn an_event_removed_from_the_middle_is_named_by_every_check() {
    let (chain, server, offline) = drill("delete-middle").await;
    // The next link of its strand breaks, or, when it was its strand's
    // last, the strand's head tells.
    assert!(
        chain.contains("does not link") || chain.contains("were removed"),
        "{chain}"
    );
    assert!(server["first_failure"]["leaf_index"].is_u64(), "{server}");
    assert!(offline.contains("was expected"), "{offline}");
}

#[tokio::test]
async fn the_last_event_removed_with_its_head_rewound_is_caught_by_the_checkpoint() {
    let (chain, server, offline) = drill("delete-last-and-rewind").await;
    assert!(chain.contains("events were removed"), "{chain}");
    assert!(
        server["first_failure"]["reason"]
            .as_str()
            .unwrap()
            .contains("the export has"),
        "{server}"
    );
    assert!(offline.contains("the export has"), "{offline}");
}

#[tokio::test]
async fn two_events_that_changed_places_are_named_by_every_check() {
    let (chain, server, offline) = drill("swap").await;
    // The tree's order is broken; and the chain's too, when an event of
    // either strand lies between the two.
    assert!(
        chain.contains("is not leaf") || chain.contains("does not link"),
        "{chain}"
    );
    assert!(
        server["first_failure"]["reason"]
            .as_str()
            .unwrap()
            .contains("signed root"),
        "{server}"
    );
    assert!(offline.contains("signed root"), "{offline}");
}
