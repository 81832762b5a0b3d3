//! The binary's subcommands, run as a person would run them, against a real
//! database. (The one integration-test crate cannot name this binary, so
//! these few tests live beside it.)

use std::process::{Command, Output, Stdio};

use opsledger_testkit::{fresh_database, TestDatabase};

fn opsledger(db: &TestDatabase, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_opsledger"))
        .args(args)
        .env("DATABASE_URL", &db.url)
        .env("RUST_LOG", "warn")
        .output()
        .expect("the binary runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test]
async fn verify_passes_on_a_clean_store_and_names_the_altered_event() {
    let db = fresh_database().await;
    let tenant = opsledger(&db, &["tenant", "add", "--name", "Acme MSP"]);
    assert!(tenant.status.success(), "{}", text(&tenant));
    let clean = opsledger(&db, &["verify"]);
    assert!(clean.status.success(), "{}", text(&clean));
    assert!(
        text(&clean).contains("\"first_mismatch\": null"),
        "{}",
        text(&clean)
    );

    let su = db.superuser().await;
    let position: i64 = su
        .query_one("SELECT max(position) FROM events", &[])
        .await
        .unwrap()
        .get(0);
    su.batch_execute(&format!(
        "SET session_replication_role = replica; UPDATE events SET payload = '{{\"name\": \"Evil MSP\"}}' WHERE position = {position}"
    ))
    .await
    .unwrap();
    let tampered = opsledger(&db, &["verify"]);
    assert_eq!(tampered.status.code(), Some(1), "{}", text(&tampered));
    assert!(
        text(&tampered).contains(&format!("event at position {position}")),
        "{}",
        text(&tampered)
    );
}

#[tokio::test]
async fn the_service_refuses_to_start_when_an_applied_migration_was_edited() {
    let db = fresh_database().await;
    let su = db.superuser().await;
    su.batch_execute("UPDATE refinery_schema_history SET checksum = '42' WHERE version = 1")
        .await
        .unwrap();
    for args in [["migrate"].as_slice(), ["serve"].as_slice()] {
        let out = opsledger(&db, args);
        assert!(!out.status.success(), "{args:?} started anyway");
        assert!(
            text(&out).to_lowercase().contains("migration"),
            "{args:?}: {}",
            text(&out)
        );
    }
}

#[tokio::test]
async fn token_mints_what_the_service_accepts_and_rebuild_replays() {
    let db = fresh_database().await;
    let out = opsledger(
        &db,
        &[
            "token",
            "--tenant",
            "01900000-0000-7000-8000-000000000001",
            "--role",
            "operator",
            "--role",
            "auditor",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let token = String::from_utf8(out.stdout).unwrap();
    let auth = opsledger_server::Config::for_database("").auth();
    let actor = auth
        .verify(token.trim())
        .expect("the minted token verifies");
    assert_eq!(actor.roles.len(), 2);
    let bad = opsledger(
        &db,
        &[
            "token",
            "--tenant",
            "01900000-0000-7000-8000-000000000001",
            "--role",
            "root",
        ],
    );
    assert!(!bad.status.success());

    assert!(opsledger(&db, &["tenant", "add", "--name", "Acme"])
        .status
        .success());
    // Other tests' transactions on the shared cluster can hold the read
    // horizon back for a moment; a rebuild replays only what is below it.
    let mut rebuilt = opsledger(&db, &["rebuild"]);
    for _ in 0..50 {
        if text(&rebuilt).contains("rebuilt directory from 1 events") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        rebuilt = opsledger(&db, &["rebuild"]);
    }
    assert!(rebuilt.status.success(), "{}", text(&rebuilt));
    assert!(
        text(&rebuilt).contains("rebuilt directory from 1 events"),
        "{}",
        text(&rebuilt)
    );
    let su = db.superuser().await;
    let n: i64 = su
        .query_one("SELECT count(*) FROM proj_tenants", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    // What it rebuilt is vacuumed and analyzed, as the owner (the pool's
    // role may not vacuum); the statistics reach the view within a second.
    let mut settled = false;
    for _ in 0..50 {
        settled = su
            .query_one(
                "SELECT last_vacuum IS NOT NULL AND last_analyze IS NOT NULL \
                 FROM pg_stat_user_tables WHERE relname = 'proj_tenants'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if settled {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(settled, "proj_tenants was not vacuumed and analyzed");
}

#[tokio::test]
async fn tenant_add_refuses_a_name_another_tenant_has() {
    let db = fresh_database().await;
    let first = opsledger(&db, &["tenant", "add", "--name", "Acme MSP"]);
    assert!(first.status.success(), "{}", text(&first));
    let first_id = String::from_utf8(first.stdout).unwrap().trim().to_owned();

    // The same name, as the domain compares names: case and surrounding space ignored.
    for name in ["Acme MSP", "  acme msp "] {
        let again = opsledger(&db, &["tenant", "add", "--name", name]);
        assert!(!again.status.success(), "{name:?} was added twice");
        assert!(again.stdout.is_empty(), "{}", text(&again));
        let said = text(&again);
        assert!(
            said.contains("a tenant named \"Acme MSP\" already exists") && said.contains(&first_id),
            "{said}"
        );
    }
    let other = opsledger(&db, &["tenant", "add", "--name", "Acme MSP East"]);
    assert!(other.status.success(), "{}", text(&other));
    let same_id = opsledger(
        &db,
        &["tenant", "add", "--name", "Zenith", "--id", &first_id],
    );
    assert!(!same_id.status.success());
    assert!(
        text(&same_id).contains(&format!("a tenant with id {first_id} already exists")),
        "{}",
        text(&same_id)
    );

    // Several at once: one wins, the others are told.
    let racers: Vec<_> = (0..4)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_opsledger"))
                .args(["tenant", "add", "--name", "Racing MSP"])
                .env("DATABASE_URL", &db.url)
                .env("RUST_LOG", "warn")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("the binary runs")
        })
        .collect();
    let mut added = 0;
    for racer in racers {
        let out = racer.wait_with_output().unwrap();
        if out.status.success() {
            added += 1;
        } else {
            assert!(text(&out).contains("already exists"), "{}", text(&out));
        }
    }
    assert_eq!(added, 1, "one of the racing adds registers the name");

    let su = db.superuser().await;
    let n: i64 = su
        .query_one(
            "SELECT count(*) FROM events WHERE event_type = 'TenantRegistered'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 3, "Acme MSP, Acme MSP East and Racing MSP");
}

/// A cluster `ops/pg.sh` started in a folder of this test's, stopped and
/// removed however the test ends.
struct Cluster(std::path::PathBuf);

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(pg_sh())
            .arg("stop")
            .arg(&self.0)
            .status();
    }
}

fn pg_sh() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ops/pg.sh")
}

#[test]
fn two_pg_sh_ensures_started_at_once_share_one_cluster() {
    // Under /tmp, which the cluster's owner (`postgres`, when this runs as
    // root) can reach; ensure would fall back to another folder otherwise.
    let cluster = Cluster(std::path::PathBuf::from(format!(
        "/tmp/opsledger-ensure-test-{}",
        uuid::Uuid::now_v7().simple()
    )));
    let ensures: Vec<_> = (0..2)
        .map(|_| {
            Command::new("bash")
                .arg(pg_sh())
                .arg("ensure")
                .env("OPSLEDGER_PGDATA", &cluster.0)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("bash runs ops/pg.sh")
        })
        .collect();
    let outs: Vec<Output> = ensures
        .into_iter()
        .map(|e| e.wait_with_output().unwrap())
        .collect();
    for out in &outs {
        assert!(out.status.success(), "{}", text(out));
    }
    let url = String::from_utf8_lossy(&outs[0].stdout).trim().to_owned();
    assert_eq!(
        url,
        format!(
            "host={} user=postgres dbname=opsledger",
            cluster.0.display()
        )
    );
    assert_eq!(String::from_utf8_lossy(&outs[1].stdout).trim(), url);

    let migrated = Command::new(env!("CARGO_BIN_EXE_opsledger"))
        .arg("migrate")
        .env("DATABASE_URL", &url)
        .env("RUST_LOG", "warn")
        .output()
        .expect("the binary runs");
    assert!(migrated.status.success(), "{}", text(&migrated));
}

#[test]
fn serve_stops_at_start_naming_a_bad_key_setting() {
    let dir = std::env::temp_dir().join(format!("opsledger-cli-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let malformed = dir.join("jwks.json");
    std::fs::write(&malformed, "{\"keys\": [").unwrap();
    let missing = dir.join("missing.pem");
    for (variable, value) in [
        ("OPSLEDGER_JWT_JWKS_FILE", malformed.to_str().unwrap()),
        ("OPSLEDGER_JWT_PUBLIC_KEY_FILE", missing.to_str().unwrap()),
    ] {
        // No database is reached: the configuration is refused first.
        let out = Command::new(env!("CARGO_BIN_EXE_opsledger"))
            .arg("serve")
            .env("DATABASE_URL", "postgres://opsledger@127.0.0.1:1/none")
            .env(variable, value)
            .env("RUST_LOG", "warn")
            .output()
            .expect("the binary runs");
        assert_eq!(out.status.code(), Some(1), "{variable}: {}", text(&out));
        assert!(text(&out).contains(variable), "{}", text(&out));
        assert!(!text(&out).contains("panicked"), "{}", text(&out));
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn serve_stops_at_start_naming_a_bad_trace_setting() {
    for (variable, value, also) in [
        ("OTEL_TRACES_SAMPLER", "sometimes", None),
        (
            "OTEL_TRACES_SAMPLER_ARG",
            "1.5",
            Some(("OTEL_TRACES_SAMPLER", "traceidratio")),
        ),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "localhost:4318", None),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://", None),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "not a url", None),
    ] {
        // No database is reached: the configuration is refused first.
        let mut command = Command::new(env!("CARGO_BIN_EXE_opsledger"));
        command
            .arg("serve")
            .env("DATABASE_URL", "postgres://opsledger@127.0.0.1:1/none")
            .env(variable, value)
            .env("RUST_LOG", "warn");
        if !variable.contains("ENDPOINT") {
            command.env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318");
        }
        if let Some((name, value)) = also {
            command.env(name, value);
        }
        let out = command.output().expect("the binary runs");
        assert_eq!(out.status.code(), Some(1), "{variable}: {}", text(&out));
        assert!(text(&out).contains(variable), "{}", text(&out));
        assert!(!text(&out).contains("panicked"), "{}", text(&out));
    }
}
