//! Graceful shutdown (issue 17, point 4): a service under ingest load is
//! sent SIGTERM. It stops accepting, finishes the requests in flight and
//! exits within its bound; every alert answered 2xx before or during the
//! stop is in the log, and nothing is answered 2xx after it.

use std::collections::HashSet;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opsledger_api::auth::AuthConfig;
use opsledger_domain::access::Role;
use opsledger_testkit::fresh_database;
use serde_json::json;
use uuid::Uuid;

const SECRET: &str = "shutdown-test-secret";
const BOUND_S: u64 = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_finishes_what_it_answered_and_exits_within_its_bound() {
    let db = fresh_database().await;
    let tenant = std::process::Command::new(env!("CARGO_BIN_EXE_opsledger"))
        .args(["tenant", "add", "--name", "Shutdown MSP"])
        .env("DATABASE_URL", &db.url)
        .env("RUST_LOG", "warn")
        .output()
        .expect("the binary runs");
    assert!(tenant.status.success());
    let tenant: Uuid = String::from_utf8(tenant.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let token = AuthConfig::hs256(SECRET.as_bytes(), "opsledger", "opsledger").mint(
        tenant,
        "monitoring",
        &[Role::Integration],
        None,
        3600,
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_opsledger"))
        .arg("serve")
        .env("DATABASE_URL", &db.url)
        .env("OPSLEDGER_BIND", format!("127.0.0.1:{port}"))
        .env("OPSLEDGER_JWT_SECRET", SECRET)
        .env("OPSLEDGER_SHUTDOWN_TIMEOUT_S", BOUND_S.to_string())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("opsledger serve starts");
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let ready_by = Instant::now() + Duration::from_secs(60);
    while !http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(
            Instant::now() < ready_by,
            "the service did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Sixteen senders post alerts until the service stops answering.
    let answered: Arc<Mutex<HashSet<String>>> = Arc::default();
    let after_stop: Arc<Mutex<Vec<String>>> = Arc::default();
    let stopped_at: Arc<Mutex<Option<Instant>>> = Arc::default();
    let senders: Vec<_> = (0..16)
        .map(|sender| {
            let (http, base, token) = (http.clone(), base.clone(), token.clone());
            let (answered, after_stop, stopped_at) =
                (answered.clone(), after_stop.clone(), stopped_at.clone());
            tokio::spawn(async move {
                for n in 0.. {
                    let key = format!("shutdown-{sender}-{n}");
                    let sent = http
                        .post(format!("{base}/api/v1/alerts"))
                        .bearer_auth(&token)
                        .json(
                            &json!({ "source": "drill", "dedup_key": key, "service": "nowhere",
                                       "summary": "load", "severity": "warning" }),
                        )
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status().is_success() => {
                            // Answered after the whole stop was over: a lie.
                            if stopped_at
                                .lock()
                                .unwrap()
                                .is_some_and(|t| t.elapsed() > Duration::from_secs(BOUND_S + 5))
                            {
                                after_stop.lock().unwrap().push(key.clone());
                            }
                            answered.lock().unwrap().insert(key);
                        }
                        Ok(r) => assert!(
                            r.status().is_server_error() || r.status().as_u16() == 503,
                            "{}",
                            r.status()
                        ),
                        Err(_) => break,
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = answered.lock().unwrap().len();
    assert!(before > 0, "the load ran");
    let pid = child.id().expect("the service runs");
    let signalled = Instant::now();
    *stopped_at.lock().unwrap() = Some(signalled);
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(kill.success());
    let status = tokio::time::timeout(Duration::from_secs(BOUND_S + 10), child.wait())
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
    assert!(
        after_stop.lock().unwrap().is_empty(),
        "nothing is answered once stopped"
    );

    // Every alert answered 2xx is in the log.
    let answered = answered.lock().unwrap().clone();
    let client = db.superuser().await;
    let rows = client
        .query(
            "SELECT DISTINCT coalesce(payload->'signal'->>'dedup_key', payload->'data'->'signal'->>'dedup_key') \
             FROM events WHERE event_type = 'AlertReceived'",
            &[],
        )
        .await
        .unwrap();
    let logged: HashSet<String> = rows
        .iter()
        .filter_map(|r| r.get::<_, Option<String>>(0))
        .collect();
    let missing: Vec<&String> = answered.difference(&logged).collect();
    assert!(
        missing.is_empty(),
        "answered 2xx but not in the log: {missing:?}"
    );
    eprintln!(
        "shutdown: {} alerts answered 2xx ({before} before the signal), all in the log; exited in {:.1} s",
        answered.len(),
        took.as_secs_f64()
    );
}
