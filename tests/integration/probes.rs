//! Probes (issue 18, SPEC §12): real HTTP and TCP servers on loopback that
//! go down and come back; only transitions are events; a down probe raises
//! an alert through ingestion (an incident, or `suppressed_by_window` inside
//! a window in force) and its recovery resolves it; two instances run a
//! probe once per interval; hostile input to the routes is a problem.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opsledger_domain::access::Role;
use opsledger_testkit::{spawn_app, spawn_app_with, TestApp};
use opsledger_tests::within_a_minute;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

use crate::alerts::service;

/// The app with probes allowed every second, looked for every 100 ms.
async fn fast_app() -> TestApp {
    spawn_app_with(|c| {
        c.probe_interval_min_s = 1;
        c.probe_poll_interval = Duration::from_millis(100);
    })
    .await
}

/// A server on a fixed loopback port that can be stopped (the port then
/// refuses connections) and started again on the same port. With `http`,
/// it answers every request `200 {"status":"ok"}`; otherwise it accepts
/// connections and closes them. It notes when each request arrived.
struct Toy {
    addr: SocketAddr,
    http: bool,
    hits: Arc<Mutex<Vec<Instant>>>,
    /// Set: answers 503 instead (still up at the TCP level).
    failing: Arc<AtomicBool>,
    task: Option<JoinHandle<()>>,
}

impl Toy {
    async fn start(http: bool) -> Toy {
        let mut toy = Toy {
            addr: "127.0.0.1:0".parse().unwrap(),
            http,
            hits: Default::default(),
            failing: Default::default(),
            task: None,
        };
        toy.listen().await;
        toy
    }

    async fn listen(&mut self) {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket.bind(self.addr).unwrap();
        let listener = socket.listen(64).unwrap();
        self.addr = listener.local_addr().unwrap();
        let (http, hits, failing) = (self.http, self.hits.clone(), self.failing.clone());
        self.task = Some(tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    continue;
                };
                hits.lock().unwrap().push(Instant::now());
                if !http {
                    continue;
                }
                let failing = failing.load(Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut got = Vec::new();
                    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        }
                    }
                    let (status, body) = if failing {
                        ("503 Service Unavailable", r#"{"status":"down"}"#)
                    } else {
                        ("200 OK", r#"{"status":"ok"}"#)
                    };
                    let answer = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = conn.write_all(answer.as_bytes()).await;
                    let _ = conn.shutdown().await;
                });
            }
        }));
    }

    /// Stops listening: connections are refused until `restart`.
    async fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    async fn restart(&mut self) {
        self.listen().await;
    }

    fn hits(&self) -> usize {
        self.hits.lock().unwrap().len()
    }
}

async fn define(app: &TestApp, body: &Value) -> Value {
    let res = app
        .post("/api/v1/probes", &app.token(&[Role::Operator]), body)
        .await;
    let status = res.status();
    let answer: Value = res.json().await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    answer
}

/// Waits until the probe's health is `health`; its record then.
async fn health_reached(app: &TestApp, id: &str, health: &str) -> Value {
    within_a_minute(&format!("the probe's health is {health}"), || async move {
        let p = probe(app, id).await;
        (p["health"] == health).then_some(p)
    })
    .await
}

async fn probe(app: &TestApp, id: &str) -> Value {
    let res = app
        .get(
            &format!("/api/v1/probes/{id}"),
            &app.token(&[Role::Auditor]),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

/// The event types of the tenant's events of `types`, with their payload text.
pub(crate) async fn events_of(app: &TestApp, types: &[&str]) -> Vec<(String, String)> {
    let types: Vec<String> = types.iter().map(|t| t.to_string()).collect();
    app.db
        .superuser()
        .await
        .query(
            "SELECT event_type, payload::text FROM events \
             WHERE tenant_id = $1 AND event_type = ANY($2) ORDER BY position",
            &[&app.tenant, &types],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

async fn stream_types(app: &TestApp, id: &str) -> Vec<String> {
    app.db
        .superuser()
        .await
        .query(
            "SELECT event_type FROM events WHERE tenant_id = $1 AND stream_id = $2 \
             ORDER BY stream_version",
            &[&app.tenant, &format!("probe-{id}")],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn an_http_probe_down_opens_an_incident_its_recovery_resolves_it_and_only_transitions_are_events(
) {
    let app = fast_app().await;
    let service = service(&app, "Web shop").await;
    let mut web = Toy::start(true).await;
    let defined = define(
        &app,
        &json!({ "name": "shop health", "service_id": service, "component": "web-1",
                 "check": { "kind": "http", "url": format!("http://{}/health", web.addr),
                            "body_keyword": "ok", "json_pointer": "/status", "json_value": "ok" },
                 "interval_s": 1, "timeout_ms": 800 }),
    )
    .await;
    let id = defined["id"].as_str().unwrap().to_owned();
    assert_eq!(defined["failure_threshold"], 3);
    assert_eq!(defined["success_threshold"], 2);
    assert_eq!(defined["health"], "up");
    // Many successes record nothing beyond the definition.
    within_a_minute("five successful checks", || {
        let (app, id, web) = (&app, &id, &web);
        async move {
            let p = probe(app, id).await;
            (web.hits() >= 5 && p["run"]["last_result"]["ok"] == true).then_some(())
        }
    })
    .await;
    let p = probe(&app, &id).await;
    assert!(p["run"]["last_result"]["latency_ms"].is_u64(), "{p}");
    assert_eq!(stream_types(&app, &id).await, ["ProbeDefined"]);
    assert!(events_of(&app, &["AlertReceived"]).await.is_empty());

    // A wrong answer (503) is a failure too; then the server goes away.
    web.failing.store(true, Ordering::SeqCst);
    web.stop().await;
    let down = health_reached(&app, &id, "down").await;
    // Not before the failure threshold.
    assert!(
        down["run"]["consecutive_failures"].as_i64().unwrap() >= 3,
        "{down}"
    );
    let went_down = &down["transitions"][0];
    assert_eq!(went_down["to"], "down", "{down}");
    assert_eq!(went_down["result"]["ok"], false);
    assert!(went_down["result"]["error"].is_string(), "{down}");
    let opened = within_a_minute("the down probe's alert opens an incident", || {
        let app = &app;
        async move {
            let e = events_of(app, &["IncidentOpened"]).await;
            (!e.is_empty()).then_some(e)
        }
    })
    .await;
    assert_eq!(opened.len(), 1);
    let received = events_of(&app, &["AlertReceived"]).await;
    assert_eq!(received.len(), 1, "{received:?}");
    assert!(received[0].1.contains("opsledger-probe"), "{received:?}");
    assert!(received[0].1.contains("liveness"), "{received:?}");
    let incident: Value = serde_json::from_str(&opened[0].1).unwrap();
    let incident_id = incident["incident_id"].as_str().unwrap().to_owned();

    // Back on the same port, answering 200 again: up after two successes,
    // and the alert is resolved.
    web.failing.store(false, Ordering::SeqCst);
    web.restart().await;
    let up = health_reached(&app, &id, "up").await;
    assert_eq!(up["transitions"].as_array().unwrap().len(), 2, "{up}");
    within_a_minute("the probe's alert resolves", || {
        let app = &app;
        async move { (!events_of(app, &["AlertResolved"]).await.is_empty()).then_some(()) }
    })
    .await;
    let res = app
        .get(
            &format!("/api/v1/alerts?incident_id={incident_id}"),
            &app.token(&[Role::Operator]),
        )
        .await;
    let alerts: Value = res.json().await.unwrap();
    assert_eq!(alerts["items"].as_array().unwrap().len(), 1, "{alerts}");
    // Successes after recovery record nothing more.
    let hits = web.hits();
    within_a_minute("three more checks", || {
        let web = &web;
        async move { (web.hits() >= hits + 3).then_some(()) }
    })
    .await;
    assert_eq!(
        stream_types(&app, &id).await,
        ["ProbeDefined", "ProbeWentDown", "ProbeCameUp"]
    );
}

#[tokio::test]
async fn a_tcp_probe_follows_its_listener_down_and_back_with_its_thresholds() {
    let app = fast_app().await;
    let service = service(&app, "Database").await;
    let mut db = Toy::start(false).await;
    let defined = define(
        &app,
        &json!({ "name": "db port", "service_id": service,
                 "check": { "kind": "tcp", "host": "127.0.0.1", "port": db.addr.port() },
                 "interval_s": 1, "timeout_ms": 500, "failure_threshold": 2, "success_threshold": 3 }),
    )
    .await;
    let id = defined["id"].as_str().unwrap().to_owned();
    within_a_minute("a successful connect", || {
        let (app, id) = (&app, &id);
        async move { (probe(app, id).await["run"]["last_result"]["ok"] == true).then_some(()) }
    })
    .await;
    db.stop().await;
    let down = health_reached(&app, &id, "down").await;
    assert!(down["run"]["consecutive_failures"].as_i64().unwrap() >= 2);
    db.restart().await;
    let up = health_reached(&app, &id, "up").await;
    assert!(
        up["run"]["consecutive_successes"].as_i64().unwrap() >= 3,
        "{up}"
    );
    assert_eq!(
        stream_types(&app, &id).await,
        ["ProbeDefined", "ProbeWentDown", "ProbeCameUp"]
    );
    // Removed: the workers stop running it.
    let res = app
        .http
        .delete(app.url(&format!("/api/v1/probes/{id}")))
        .bearer_auth(app.token(&[Role::Admin]))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let removed: Value = res.json().await.unwrap();
    assert_eq!(removed["removed"], true);
    // The list reads the read model, which may briefly lag the removal.
    within_a_minute("the list leaves the removed probe out", || async {
        let list = app
            .get("/api/v1/probes", &app.token(&[Role::Operator]))
            .await;
        let list: Value = list.json().await.unwrap();
        list["items"].as_array().unwrap().is_empty().then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_probe_down_inside_a_window_in_force_is_suppressed_and_opens_no_incident() {
    let app = fast_app().await;
    let service = service(&app, "Orders").await;
    let maint = app.token(&[Role::Maintainer]);
    let start = chrono::Utc::now() + chrono::Duration::hours(1);
    let res = app
        .post(
            "/api/v1/maintenance-windows",
            &maint,
            &json!({ "title": "DB upgrade", "service_ids": [service], "start": start,
                     "end": start + chrono::Duration::hours(2) }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let window: Value = res.json().await.unwrap();
    let window_id = window["id"].as_str().unwrap().to_owned();
    let res = app
        .http
        .post(app.url(&format!("/api/v1/maintenance-windows/{window_id}/start")))
        .bearer_auth(&maint)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "{}",
        res.text().await.unwrap()
    );
    // The window must be in the read model ingestion reads before the
    // probe fails: wait until a plain alert is held by it.
    let monitoring = app.token(&[Role::Integration]);
    let mut n = 0;
    within_a_minute("the window holds the service's alerts", || {
        n += 1;
        let body = json!({ "source": "test", "dedup_key": format!("w-{n}"), "service": service,
                           "summary": "x", "severity": "warning" });
        let (app, monitoring) = (&app, &monitoring);
        async move {
            let v: Value = app
                .post("/api/v1/alerts", monitoring, &body)
                .await
                .json()
                .await
                .unwrap();
            (v["outcome"] == "suppressed_by_window").then_some(())
        }
    })
    .await;
    // Nothing listens on this port.
    let closed = Toy::start(false).await;
    let port = closed.addr.port();
    let mut closed = closed;
    closed.stop().await;
    let defined = define(
        &app,
        &json!({ "name": "orders db", "service_id": service,
                 "check": { "kind": "tcp", "host": "127.0.0.1", "port": port },
                 "interval_s": 1, "timeout_ms": 500 }),
    )
    .await;
    let id = defined["id"].as_str().unwrap().to_owned();
    let received = within_a_minute("the probe's alert is received", || {
        let app = &app;
        async move {
            let e: Vec<(String, String)> = events_of(app, &["AlertReceived"])
                .await
                .into_iter()
                .filter(|(_, p)| p.contains("opsledger-probe"))
                .collect();
            (!e.is_empty()).then_some(e)
        }
    })
    .await;
    assert_eq!(probe(&app, &id).await["health"], "down");
    assert!(
        received[0].1.contains("suppressed_by_window"),
        "{received:?}"
    );
    assert!(received[0].1.contains(&window_id), "{received:?}");
    assert!(events_of(&app, &["IncidentOpened"]).await.is_empty());
}

#[tokio::test]
async fn two_instances_on_one_database_run_a_probe_once_per_interval() {
    let app = fast_app().await;
    // A second instance of the service on the same database.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let second = opsledger_server::Application::build_on(&app.config, listener)
        .await
        .expect("a second instance starts");
    tokio::spawn(second.run_until_stopped());
    let service = service(&app, "Portal").await;
    let web = Toy::start(true).await;
    let interval = Duration::from_secs(2);
    define(
        &app,
        &json!({ "name": "portal", "service_id": service,
                 "check": { "kind": "http", "url": format!("http://{}/", web.addr) },
                 "interval_s": interval.as_secs(), "timeout_ms": 1000 }),
    )
    .await;
    within_a_minute("five checks", || {
        let web = &web;
        async move { (web.hits() >= 5).then_some(()) }
    })
    .await;
    // Each check is claimed and moved a whole interval on before it runs:
    // two instances running it would put two checks within moments of each
    // other. Half the interval leaves room for a busy machine's delays
    // between a claim and its request.
    let hits = web.hits.lock().unwrap().clone();
    for pair in hits.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= interval / 2,
            "two checks {gap:?} apart, with an interval of {interval:?}"
        );
    }
}

#[tokio::test]
async fn probe_routes_refuse_bad_input_with_problems_and_enforce_roles() {
    let app = spawn_app().await;
    let service = service(&app, "Mail").await;
    let operator = app.token(&[Role::Operator]);
    let good = json!({ "name": "smtp", "service_id": service,
                       "check": { "kind": "tcp", "host": "mail.internal", "port": 25 },
                       "interval_s": 30 });
    let with = |path: &str, v: Value| {
        let mut b = good.clone();
        *b.pointer_mut(path).unwrap() = v;
        b
    };
    let cases: Vec<(&str, Value, StatusCode)> = vec![
        (
            "interval under 10 s",
            with("/interval_s", json!(5)),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "negative interval",
            with("/interval_s", json!(-5)),
            StatusCode::BAD_REQUEST,
        ),
        (
            "unknown kind",
            with("/check", json!({ "kind": "icmp", "host": "h" })),
            StatusCode::BAD_REQUEST,
        ),
        (
            "bad url",
            with("/check", json!({ "kind": "http", "url": "ftp://x/" })),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "url with a space",
            with("/check", json!({ "kind": "http", "url": "http://a b/" })),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "threshold 0",
            with("/interval_s", json!(30))
                .as_object()
                .map(|o| {
                    let mut o = o.clone();
                    o.insert("failure_threshold".into(), json!(0));
                    Value::Object(o)
                })
                .unwrap(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "NUL in name",
            with("/name", json!("a\u{0}b")),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "port out of range",
            with(
                "/check",
                json!({ "kind": "tcp", "host": "h", "port": 70000 }),
            ),
            StatusCode::BAD_REQUEST,
        ),
        (
            "port 0",
            with("/check", json!({ "kind": "tcp", "host": "h", "port": 0 })),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "unknown field in check",
            with(
                "/check",
                json!({ "kind": "tcp", "host": "h", "port": 1, "x": 1 }),
            ),
            StatusCode::BAD_REQUEST,
        ),
        (
            "pointer without value",
            with(
                "/check",
                json!({ "kind": "http", "url": "http://h/", "json_pointer": "/a" }),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "unknown service",
            with("/service_id", json!("00000000-0000-0000-0000-000000000001")),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "timeout over the interval",
            with("/interval_s", json!(10))
                .as_object()
                .map(|o| {
                    let mut o = o.clone();
                    o.insert("timeout_ms".into(), json!(20_000));
                    Value::Object(o)
                })
                .unwrap(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ];
    for (name, body, expected) in cases {
        let res = app.post("/api/v1/probes", &operator, &body).await;
        assert_eq!(res.status(), expected, "{name}");
        assert_eq!(
            res.headers()["content-type"],
            "application/problem+json",
            "{name}"
        );
    }
    let res = app
        .post("/api/v1/probes", &app.token(&[Role::Maintainer]), &good)
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = app
        .get("/api/v1/probes", &app.token(&[Role::Integration]))
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    // A good one, changed, then removed; a removed probe takes no change.
    let res = app.post("/api/v1/probes", &operator, &good).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let p: Value = res.json().await.unwrap();
    let url = app.url(&format!("/api/v1/probes/{}", p["id"].as_str().unwrap()));
    let res = app
        .http
        .put(&url)
        .bearer_auth(&operator)
        .header("if-match", "\"1\"")
        .json(&with("/interval_s", json!(60)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let changed: Value = res.json().await.unwrap();
    assert_eq!(changed["interval_s"], 60);
    assert_eq!(changed["version"], 2);
    let res = app
        .http
        .put(&url)
        .bearer_auth(&operator)
        .header("if-match", "\"1\"")
        .json(&good)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PRECONDITION_FAILED);
    let res = app
        .http
        .delete(&url)
        .bearer_auth(&operator)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = app
        .http
        .delete(&url)
        .bearer_auth(&operator)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CONFLICT);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let res = app
        .http
        .get(app.url("/api/v1/probes/00000000-0000-0000-0000-000000000009"))
        .bearer_auth(&operator)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
}

/// Runs `openssl` in `dir`; its output must succeed.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command line is installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A real TLS server on loopback (`openssl s_server -www`: every GET is
/// `200` and a status page) whose certificate, issued by a CA of its own
/// for 127.0.0.1, expires in `days` days. Returns the server, its port and
/// the CA's PEM. The server is killed when dropped.
struct TlsServer {
    child: std::process::Child,
    port: u16,
    ca_pem: Vec<u8>,
    _dir: PathGuard,
}

struct PathGuard(std::path::PathBuf);

impl Drop for PathGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl TlsServer {
    async fn start(days: u32) -> TlsServer {
        let dir = std::env::temp_dir().join(format!("opsledger-tls-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        openssl(
            &dir,
            &[
                &["req", "-x509"][..],
                &ec,
                &[
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.pem",
                    "-days",
                    "3650",
                    "-subj",
                    "/CN=opsledger test CA",
                ],
            ]
            .concat(),
        );
        openssl(
            &dir,
            &[
                &["req", "-new"][..],
                &ec,
                &[
                    "-keyout",
                    "leaf.key",
                    "-out",
                    "leaf.csr",
                    "-subj",
                    "/CN=127.0.0.1",
                ],
            ]
            .concat(),
        );
        std::fs::write(
            dir.join("leaf.ext"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        let days = days.to_string();
        openssl(
            &dir,
            &[
                "x509",
                "-req",
                "-in",
                "leaf.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                &days,
                "-extfile",
                "leaf.ext",
                "-out",
                "leaf.pem",
            ],
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new("openssl")
            .args([
                "s_server",
                "-quiet",
                "-www",
                "-accept",
                &format!("127.0.0.1:{port}"),
                "-cert",
                "leaf.pem",
                "-key",
                "leaf.key",
            ])
            .current_dir(&dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let ca_pem = std::fs::read(dir.join("ca.pem")).unwrap();
        let server = TlsServer {
            child,
            port,
            ca_pem,
            _dir: PathGuard(dir),
        };
        within_a_minute("the TLS server listens", || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(|_| ())
        })
        .await;
        server
    }
}

#[tokio::test]
async fn an_https_probe_reports_its_certificate_days_left_and_goes_down_below_its_minimum() {
    let tls = TlsServer::start(5).await;
    let ca = tls.ca_pem.clone();
    let app = spawn_app_with(move |c| {
        c.probe_interval_min_s = 1;
        c.probe_poll_interval = Duration::from_millis(100);
        c.probe_ca_pem = Some(ca);
    })
    .await;
    let service = service(&app, "Portal").await;
    let url = format!("https://127.0.0.1:{}/", tls.port);
    let probe_of = |name: &str, days_min: u32| {
        json!({ "name": name, "service_id": service,
                "check": { "kind": "http", "url": url, "tls_days_min": days_min },
                "interval_s": 2, "timeout_ms": 2000, "failure_threshold": 1, "success_threshold": 1 })
    };
    let strict = define(&app, &probe_of("cert a month ahead", 30)).await;
    let lenient = define(&app, &probe_of("cert three days ahead", 3)).await;
    let strict_id = strict["id"].as_str().unwrap().to_owned();
    let lenient_id = lenient["id"].as_str().unwrap().to_owned();

    // Five days from issue, rounded down: 4 whole days left.
    let down = health_reached(&app, &strict_id, "down").await;
    let last = &down["run"]["last_result"];
    assert_eq!(last["tls_days_left"], 4, "{down}");
    assert_eq!(
        last["status"], 200,
        "the server answered; the certificate failed it"
    );
    assert_eq!(
        last["error"],
        "the TLS certificate expires in 4 days, fewer than 30"
    );
    let went_down = events_of(&app, &["ProbeWentDown"]).await;
    assert_eq!(went_down.len(), 1, "{went_down:?}");
    assert!(went_down[0].1.contains("fewer than 30"), "{went_down:?}");

    let lenient = within_a_minute("the lenient probe checked", || {
        let (app, id) = (&app, &lenient_id);
        async move {
            let p = probe(app, id).await;
            (p["run"]["last_result"]["ok"] == true).then_some(p)
        }
    })
    .await;
    assert_eq!(lenient["health"], "up");
    assert_eq!(
        lenient["run"]["last_result"]["tls_days_left"], 4,
        "{lenient}"
    );

    // Without the CA the certificate is not trusted: the handshake fails.
    let untrusting = fast_app().await;
    let service = crate::alerts::service(&untrusting, "Portal").await;
    let plain = define(
        &untrusting,
        &json!({ "name": "untrusted", "service_id": service,
                 "check": { "kind": "http", "url": format!("https://127.0.0.1:{}/", tls.port) },
                 "interval_s": 2, "timeout_ms": 2000, "failure_threshold": 1, "success_threshold": 1 }),
    )
    .await;
    let down = health_reached(&untrusting, plain["id"].as_str().unwrap(), "down").await;
    let error = down["run"]["last_result"]["error"].as_str().unwrap();
    assert!(error.contains("certificate"), "{error}");
}
