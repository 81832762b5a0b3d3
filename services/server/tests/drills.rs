//! Drills (SPEC §11): R1, the process killed (SIGKILL) during ingest. Every
//! alert answered 2xx before the kill is in the log after a restart, and the
//! alerts read model converges to the log. `ops/drills/r1.sh` runs it and
//! prints PASS or FAIL with its figures.

mod common;

use std::time::{Duration, Instant};

use common::{integration_token, load, logged_keys, tenant, Answered, Served};
use opsledger_testkit::fresh_database;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r1_every_alert_answered_before_a_kill_9_is_there_after_the_restart() {
    let db = fresh_database().await;
    let token = integration_token(tenant(&db));
    let mut served = Served::start(&db, &[]).await;
    let answered = Answered::default();
    let senders = load(&served.base, &token, 16, "r1", &answered, |_, _| {});
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // As a crash: no signal handled, nothing flushed.
    served.child.kill().await.expect("the process is killed");
    let killed_at = Instant::now();
    for s in senders {
        s.await.unwrap();
    }
    let answered_keys = answered.keys();
    assert!(!answered_keys.is_empty(), "the load ran");

    let restarted = Served::start(&db, &[]).await;
    let restart_s = killed_at.elapsed().as_secs_f64();
    let logged = logged_keys(&db).await;
    let missing: Vec<&String> = answered_keys.difference(&logged).collect();
    assert!(missing.is_empty(), "answered 2xx but lost: {missing:?}");

    // The alerts read model converges to the log.
    let client = db.superuser().await;
    let converged_by = Instant::now() + Duration::from_secs(30);
    loop {
        let rows: i64 = client
            .query_one(
                "SELECT count(*) FROM proj_alerts WHERE dedup_key LIKE 'r1-%'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        let logged_r1 = logged.iter().filter(|k| k.starts_with("r1-")).count() as i64;
        if rows == logged_r1 {
            break;
        }
        assert!(
            Instant::now() < converged_by,
            "the read model holds {rows} of {logged_r1}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(restarted);
    println!(
        "R1 figures: {} alerts answered 2xx before the kill, all in the log; {} in the log in all; ready again {restart_s:.1} s after the kill; read model converged",
        answered_keys.len(),
        logged.len()
    );
}
