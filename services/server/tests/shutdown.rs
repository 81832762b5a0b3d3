//! Graceful shutdown (issue 17, point 4): a service under ingest load is
//! sent SIGTERM. It stops accepting, finishes the requests in flight and
//! exits within its bound; every alert answered 2xx before or during the
//! stop is in the log, and nothing is answered 2xx after it.

mod common;

use std::time::{Duration, Instant};

use common::{integration_token, load, logged_keys, tenant, Answered, Served};
use opsledger_testkit::fresh_database;

const BOUND_S: u64 = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_finishes_what_it_answered_and_exits_within_its_bound() {
    let db = fresh_database().await;
    let token = integration_token(tenant(&db.url));
    let bound = BOUND_S.to_string();
    let mut served = Served::start(&db.url, &[("OPSLEDGER_SHUTDOWN_TIMEOUT_S", &bound)]).await;

    // Sixteen senders post alerts until the service stops answering; while
    // it stops, it says so.
    let answered = Answered::default();
    let senders = load(
        &served.base,
        &token,
        16,
        "shutdown",
        &answered,
        &Default::default(),
        |status: reqwest::StatusCode, headers: &reqwest::header::HeaderMap| {
            assert_eq!(status.as_u16(), 503, "a stopping service says so");
            assert_eq!(headers["retry-after"], "1");
        },
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = answered.len();
    assert!(before > 0, "the load ran");
    let pid = served.child.id().expect("the service runs");
    let signalled = Instant::now();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(kill.success());
    let status = tokio::time::timeout(Duration::from_secs(BOUND_S + 10), served.child.wait())
        .await
        .expect("the service exits within its bound")
        .expect("the exit is read");
    let took = signalled.elapsed();
    assert!(status.success(), "a clean exit: {status:?}");
    assert!(
        took < Duration::from_secs(BOUND_S),
        "idle keep-alive clients do not hold the stop up to its bound: {took:?}"
    );
    for s in senders {
        s.await.unwrap();
    }
    // Only a request already in flight at the signal may still be answered
    // 2xx: none sent a second after it.
    assert_eq!(
        answered.after(signalled + Duration::from_secs(1)),
        0,
        "nothing new is answered 2xx once stopping"
    );

    // Every alert answered 2xx is in the log.
    let answered = answered.keys();
    let logged = logged_keys(&db.url).await;
    let missing: Vec<&String> = answered.difference(&logged).collect();
    assert!(
        missing.is_empty(),
        "answered 2xx but not in the log: {missing:?}"
    );
    println!(
        "shutdown: {} alerts answered 2xx ({before} before the signal), all in the log; exited in {:.1} s",
        answered.len(),
        took.as_secs_f64()
    );
}
