//! Backup and restore (issue 17): `ops/backup` of a database in use, then
//! `ops/restore` into a fresh cluster, whose transaction ids start again
//! below the restored events'. With nothing done by hand afterwards, the
//! service starts, `verify` passes, the read models, the transparency log,
//! the checkpoints and the downtime report equal those before the backup,
//! and what is appended next is projected.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DurationRound, Utc};
use common::{connect, tenant, Cluster, Served, SECRET};
use opsledger_api::auth::AuthConfig;
use opsledger_domain::access::Role;
use serde_json::{json, Value};
use uuid::Uuid;

fn staff_token(tenant: Uuid) -> String {
    AuthConfig::hs256(SECRET.as_bytes(), "opsledger", "opsledger").mint(
        tenant,
        "restorer",
        &[Role::Admin, Role::Operator, Role::Maintainer, Role::Auditor],
        None,
        3600,
    )
}

/// Runs `ops/<name> file` on the database at `url`.
fn script(name: &str, url: &str, file: &std::path::Path) {
    let path = format!("{}/../../ops/{name}", env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new("bash")
        .arg(path)
        .arg(file)
        .env("DATABASE_URL", url)
        .output()
        .expect("the script runs");
    assert!(
        out.status.success(),
        "ops/{name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The last event of the log in the global order: its position and tx_id.
const LAST_EVENT: &str = "SELECT position, tx_id::text::int8 FROM events \
     WHERE position = event_at_or_before('9223372036854775807'::xid8, 9223372036854775807)";

/// Waits until every projection's checkpoint is at the log's last event.
async fn settled(url: &str) {
    let client = connect(url).await;
    let by = Instant::now() + Duration::from_secs(30);
    loop {
        let behind: Vec<String> = client
            .query(
                &format!(
                    "SELECT name FROM projection_checkpoints \
                     WHERE last_position <> (SELECT position FROM ({LAST_EVENT}) l) \
                        OR failing_since IS NOT NULL"
                ),
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        if behind.is_empty() {
            return;
        }
        assert!(
            Instant::now() < by,
            "projections behind the log: {behind:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What a restore must bring back: every read model's and the transparency
/// log's rows, and where each projection stands.
async fn kept(url: &str) -> BTreeMap<String, Vec<String>> {
    let client = connect(url).await;
    let tables: Vec<String> = client
        .query(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' \
               AND (tablename LIKE 'proj\\_%' OR tablename LIKE 'audit\\_%') ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(tables.len() > 20, "the read models are found: {tables:?}");
    let mut kept = BTreeMap::new();
    for table in tables {
        let rows: Vec<String> = client
            .query_one(
                &format!(
                    "SELECT coalesce(array_agg(x::text ORDER BY x::text), '{{}}') FROM {table} x"
                ),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        kept.insert(table, rows);
    }
    let checkpoints = client
        .query(
            "SELECT name || ' at ' || last_position FROM projection_checkpoints ORDER BY name",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    kept.insert("checkpoints".into(), checkpoints);
    kept
}

async fn post(http: &reqwest::Client, base: &str, token: &str, path: &str, body: Value) -> Value {
    let r = http
        .post(format!("{base}{path}"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert!(status.is_success(), "{path}: {status} {body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_restored_into_a_fresh_cluster_goes_on_where_it_left_off() {
    let source = opsledger_testkit::fresh_database().await;
    // Transaction ids well ahead of a fresh cluster's, as any database in
    // use has: each COMMIT ends one.
    connect(&source.url)
        .await
        .batch_execute(
            "DO $$ BEGIN FOR i IN 1..3000 LOOP PERFORM pg_current_xact_id(); COMMIT; END LOOP; END $$",
        )
        .await
        .unwrap();
    let tenant_id = tenant(&source.url);
    let token = staff_token(tenant_id);
    let served = Served::start(&source.url, &[]).await;
    let (http, base) = (reqwest::Client::new(), served.base.clone());
    let client = post(
        &http,
        &base,
        &token,
        "/api/v1/clients",
        json!({ "name": "Client A" }),
    )
    .await;
    let service = post(
        &http,
        &base,
        &token,
        "/api/v1/services",
        json!({
            "client_id": client["id"], "name": "shop", "sla_target_pct": 99.9, "notice_period_h": 1
        }),
    )
    .await;
    let sid = service["id"].as_str().unwrap().to_owned();
    let hour = Utc::now()
        .duration_trunc(chrono::Duration::minutes(1))
        .unwrap();
    let outage = post(
        &http,
        &base,
        &token,
        "/api/v1/incidents",
        json!({
            "title": "checkout down", "service_id": sid, "severity": "critical",
            "impact_start": hour - chrono::Duration::minutes(60)
        }),
    )
    .await;
    let outage_id = outage["id"].as_str().unwrap().to_owned();
    post(
        &http,
        &base,
        &token,
        &format!("/api/v1/incidents/{outage_id}/mitigate"),
        json!({ "impact_end": hour - chrono::Duration::minutes(25) }),
    )
    .await;
    for n in 0..40 {
        post(
            &http,
            &base,
            &token,
            "/api/v1/alerts",
            json!({
                "source": "restore", "dedup_key": format!("r-{n}"), "service": "shop",
                "summary": "disk filling", "severity": "warning"
            }),
        )
        .await;
    }
    let report_path = format!(
        "/api/v1/reports/downtime?service={sid}&from={}&to={}",
        (hour - chrono::Duration::minutes(90)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        (hour - chrono::Duration::minutes(10)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    );
    let report = |base: String| {
        let (http, token, path) = (http.clone(), token.clone(), report_path.clone());
        async move {
            let r = http
                .get(format!("{base}{path}"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "the report: {}", r.status());
            let mut report = r.json::<Value>().await.unwrap();
            // When it was read, not what it says.
            report["as_of"].take();
            report
        }
    };
    settled(&source.url).await;
    let before = kept(&source.url).await;
    let report_before = report(base.clone()).await;
    assert!(
        report_before.to_string().contains("outage"),
        "the report counts the outage: {report_before}"
    );
    drop(served);

    let dir = tempdir();
    let file = dir.join("opsledger.dump");
    script("backup", &source.url, &file);
    let cluster = Cluster::start("restore");
    let url = cluster.url();
    script("restore", &url, &file);
    let restored = connect(&url).await;
    let (_, last_tx): (i64, i64) = {
        let r = restored.query_one(LAST_EVENT, &[]).await.unwrap();
        (r.get(0), r.get(1))
    };
    let events: i64 = restored
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .unwrap()
        .get(0);
    let fresh_tx: i64 = restored
        .query_one("SELECT pg_current_xact_id()::text::int8", &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        fresh_tx < last_tx,
        "the fresh cluster's transaction ids ({fresh_tx}) start below the restored events' ({last_tx})"
    );

    // Nothing by hand: the service starts on the restored database.
    let served = Served::start(&url, &[]).await;
    let verify = std::process::Command::new(env!("CARGO_BIN_EXE_opsledger"))
        .arg("verify")
        .env("DATABASE_URL", &url)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "verify passes after the restore: {}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    settled(&url).await;
    let after = kept(&url).await;
    for (table, rows) in &before {
        assert_eq!(Some(rows), after.get(table), "{table} after the restore");
    }
    assert_eq!(
        report_before,
        report(served.base.clone()).await,
        "the downtime report"
    );

    // What is appended now sorts after what was restored, and is projected.
    let next = post(
        &http,
        &served.base,
        &token,
        "/api/v1/incidents",
        json!({
            "title": "after the restore", "service_id": sid, "severity": "error"
        }),
    )
    .await;
    let (position, tx): (i64, i64) = {
        let r = restored.query_one(LAST_EVENT, &[]).await.unwrap();
        (r.get(0), r.get(1))
    };
    assert!(tx > last_tx, "the new events sort after the restored ones");
    settled(&url).await;
    let projected: i64 = restored
        .query_one(
            "SELECT count(*) FROM proj_incidents WHERE incident_id = $1",
            &[&next["id"].as_str().unwrap().parse::<Uuid>().unwrap()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        projected, 1,
        "the incident opened after the restore is projected"
    );
    let shift: i64 = restored
        .query_one("SELECT shift FROM tx_id_shift", &[])
        .await
        .unwrap()
        .get(0);
    assert!(shift > 0, "the order key was shifted past the log");
    println!(
        "restore figures: {events} events restored, the fresh cluster at transaction {fresh_tx} below the log's {last_tx}; shifted by {shift}; every projection at position {position} after one more incident"
    );
    drop(served);
    std::fs::remove_dir_all(dir).ok();
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("opsledger-backup-{}", Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
