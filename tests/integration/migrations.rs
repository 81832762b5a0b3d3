use opsledger_store::migrate::migrate;
use opsledger_testkit::fresh_database;

#[tokio::test]
async fn migrating_again_applies_nothing() {
    let db = fresh_database().await;
    assert!(migrate(&db.config).await.unwrap().is_empty());
}

#[tokio::test]
async fn an_edited_applied_migration_stops_the_service_from_migrating() {
    let db = fresh_database().await;
    let su = db.superuser().await;
    // What editing V1's file after it was applied looks like from the database.
    su.batch_execute("UPDATE refinery_schema_history SET checksum = '1' WHERE version = 1")
        .await
        .unwrap();
    let err = migrate(&db.config)
        .await
        .expect_err("a divergent migration is refused");
    assert!(
        format!("{err:?}").contains("Divergent") || err.to_string().contains("migration"),
        "{err:?}"
    );
}
