//! The binary's subcommands, run as a person would run them, against a real
//! database. (The one integration-test crate cannot name this binary, so
//! these few tests live beside it.)

use std::process::{Command, Output};

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
}
