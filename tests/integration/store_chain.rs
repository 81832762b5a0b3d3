use opsledger_store::append::append_direct;
use opsledger_store::verify::verify;
use opsledger_store::{connect, ExpectedVersion};
use opsledger_testkit::fresh_database;
use opsledger_tests::{event, one};
use uuid::Uuid;

async fn seeded() -> (
    opsledger_testkit::TestDatabase,
    opsledger_store::Pool,
    Uuid,
    Vec<i64>,
) {
    let db = fresh_database().await;
    let pool = connect(&db.config).unwrap();
    let tenant = Uuid::now_v7();
    let other = Uuid::now_v7();
    let mut positions = Vec::new();
    for n in 0..5 {
        let out = append_direct(
            &pool,
            &one(tenant, "s", ExpectedVersion::Any, vec![event(n)]),
        )
        .await
        .unwrap();
        let opsledger_store::AppendOutcome::Committed { last_position, .. } = out else {
            panic!()
        };
        positions.push(last_position);
        append_direct(
            &pool,
            &one(other, "o", ExpectedVersion::Any, vec![event(n)]),
        )
        .await
        .unwrap();
    }
    (db, pool, tenant, positions)
}

#[tokio::test]
async fn an_untouched_store_verifies() {
    let (_db, pool, _tenant, _) = seeded().await;
    let client = pool.get().await.unwrap();
    let report = verify(&client, None).await.unwrap();
    assert_eq!(report.first_mismatch, None);
    assert_eq!((report.tenants, report.events), (2, 10));
}

/// Tampers as a superuser with triggers disabled, which is what an attacker
/// with full database access would do.
async fn tamper(db: &opsledger_testkit::TestDatabase, sql: &str) {
    let su = db.superuser().await;
    su.batch_execute(&format!("SET session_replication_role = replica; {sql}"))
        .await
        .unwrap();
}

#[tokio::test]
async fn an_altered_payload_is_named_by_verify() {
    let (db, pool, tenant, positions) = seeded().await;
    tamper(
        &db,
        &format!(
            "UPDATE events SET payload = '{{\"n\": 99}}' WHERE position = {}",
            positions[2]
        ),
    )
    .await;
    let client = pool.get().await.unwrap();
    let bad = verify(&client, None)
        .await
        .unwrap()
        .first_mismatch
        .expect("tampering is found");
    assert_eq!((bad.tenant_id, bad.position), (tenant, positions[2]));
    assert!(
        bad.reason.contains("does not match its hash"),
        "{}",
        bad.reason
    );
}

#[tokio::test]
async fn an_altered_time_or_type_is_named_by_verify() {
    let (db, pool, _tenant, positions) = seeded().await;
    tamper(
        &db,
        &format!(
            "UPDATE events SET occurred_at = occurred_at - interval '1 hour' WHERE position = {}",
            positions[1]
        ),
    )
    .await;
    let client = pool.get().await.unwrap();
    assert_eq!(
        verify(&client, None)
            .await
            .unwrap()
            .first_mismatch
            .unwrap()
            .position,
        positions[1]
    );
}

#[tokio::test]
async fn a_removed_event_is_found_by_the_next_one_or_the_head() {
    let (db, pool, tenant, positions) = seeded().await;
    tamper(
        &db,
        &format!("DELETE FROM events WHERE position = {}", positions[1]),
    )
    .await;
    let client = pool.get().await.unwrap();
    let bad = verify(&client, Some(tenant))
        .await
        .unwrap()
        .first_mismatch
        .unwrap();
    assert_eq!(
        bad.position, positions[2],
        "the event after the hole no longer links"
    );

    let (db, pool, tenant, positions) = seeded().await;
    tamper(
        &db,
        &format!("DELETE FROM events WHERE position = {}", positions[4]),
    )
    .await;
    let client = pool.get().await.unwrap();
    let bad = verify(&client, Some(tenant))
        .await
        .unwrap()
        .first_mismatch
        .unwrap();
    assert_eq!(bad.position, positions[3]);
    assert!(bad.reason.contains("head of strand"), "{}", bad.reason);
}
