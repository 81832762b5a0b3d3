//! Drills (SPEC §11), each run by a script in `ops/drills/` that prints PASS
//! or FAIL with its figures:
//! - R1, the process killed (SIGKILL) during ingest: every alert answered 2xx
//!   before the kill is in the log after a restart, and the alerts read
//!   model converges to the log;
//! - R2, PostgreSQL stopped and started again under load: meanwhile 503 with
//!   `Retry-After` and no other error, full service within 5 s of its
//!   return, the process never down, every 2xx in the log.

mod common;

use std::time::{Duration, Instant};

use common::{
    connect, integration_token, load, logged_keys, pg, tenant, Answered, Cluster, Served,
};
use opsledger_testkit::fresh_database;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r1_every_alert_answered_before_a_kill_9_is_there_after_the_restart() {
    let db = fresh_database().await;
    let token = integration_token(tenant(&db.url));
    let mut served = Served::start(&db.url, &[]).await;
    let answered = Answered::default();
    let senders = load(
        &served.base,
        &token,
        16,
        "r1",
        &answered,
        &Default::default(),
        |_, _| {},
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // As a crash: no signal handled, nothing flushed.
    served.child.kill().await.expect("the process is killed");
    let killed_at = Instant::now();
    for s in senders {
        s.await.unwrap();
    }
    let answered_keys = answered.keys();
    assert!(!answered_keys.is_empty(), "the load ran");

    let restarted = Served::start(&db.url, &[]).await;
    let restart_s = killed_at.elapsed().as_secs_f64();
    let logged = logged_keys(&db.url).await;
    let missing: Vec<&String> = answered_keys.difference(&logged).collect();
    assert!(missing.is_empty(), "answered 2xx but lost: {missing:?}");

    // The alerts read model converges to the log.
    let client = connect(&db.url).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r2_postgresql_stopped_under_load_is_503_meanwhile_and_full_service_within_5_s_of_its_return(
) {
    // A cluster of its own: this drill stops it.
    let cluster = Cluster::start("r2");
    let (dir_s, url) = (cluster.dir.clone(), cluster.url());
    let token = integration_token(tenant(&url));
    let mut served = Served::start(&url, &[]).await;

    let answered = Answered::default();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let unavailable = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = unavailable.clone();
    let senders = load(
        &served.base,
        &token,
        8,
        "r2",
        &answered,
        &done,
        move |status, headers| {
            assert_eq!(status.as_u16(), 503, "only 503 while the database is away");
            assert!(
                headers.contains_key("retry-after"),
                "503 says when to retry"
            );
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        },
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    pg(&["halt", &dir_s]);
    let halted = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    pg(&["resume", &dir_s]);
    let back = Instant::now();
    tokio::time::sleep(Duration::from_secs(8)).await;
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    for s in senders {
        s.await.unwrap();
    }
    assert!(
        served.child.try_wait().unwrap().is_none(),
        "the process never went down"
    );
    let refused = unavailable.load(std::sync::atomic::Ordering::Relaxed);
    assert!(refused > 0, "the outage was seen as 503s");
    let first_after = answered
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, at)| *at > back)
        .map(|(_, at)| *at - back)
        .min()
        .expect("answered again after the database returned");
    assert!(
        first_after <= Duration::from_secs(5),
        "full service {first_after:?} after the return"
    );
    let logged = logged_keys(&url).await;
    let answered_keys = answered.keys();
    let missing: Vec<&String> = answered_keys.difference(&logged).collect();
    assert!(missing.is_empty(), "answered 2xx but lost: {missing:?}");
    println!(
        "R2 figures: outage {:.1} s, {refused} answers 503 with Retry-After meanwhile, none other; first 2xx {:.2} s after PostgreSQL returned; {} alerts answered 2xx, all in the log",
        (back - halted).as_secs_f64(),
        first_after.as_secs_f64(),
        answered_keys.len()
    );
    drop(served);
}
