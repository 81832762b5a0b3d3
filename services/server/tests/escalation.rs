//! Escalation and notification across real service processes (issue 4):
//! an alert for a service with a two-level policy, nobody acknowledging;
//! level 1 then level 2 mailed on time, with every instance killed in between
//! and two instances running against one database, so that nothing fires
//! twice; a client contact who receives the opened and resolved mails in
//! Japanese; and both team queues at each step. Mail goes to a real SMTP
//! server on loopback.

use std::process::Stdio;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use opsledger_api::auth::AuthConfig;
use opsledger_domain::access::Role;
use opsledger_testkit::{fresh_database, OtlpReceiver, Received, SmtpSink, TestDatabase};
use serde_json::{json, Value};
use uuid::Uuid;

const SECRET: &str = "escalation-test-secret";
/// Level 1's timeout: long enough to tell "on time" from "at once".
const LEVEL_1_TIMEOUT_S: f64 = 3.0;

/// One `opsledger serve`, killed (SIGKILL) when dropped or asked to.
struct Instance {
    child: tokio::process::Child,
    base: String,
}

impl Instance {
    /// Serves on `db`, mailing through `smtp_port` and tracing to `otlp`
    /// (exported every 100 ms: a killed instance flushes nothing).
    async fn start(db: &TestDatabase, smtp_port: u16, otlp: &str) -> Instance {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_opsledger"))
            .arg("serve")
            .env("DATABASE_URL", &db.url)
            .env("OPSLEDGER_BIND", format!("127.0.0.1:{port}"))
            .env("OPSLEDGER_JWT_SECRET", SECRET)
            .env("RUST_LOG", "warn")
            .env("OPSLEDGER_HTTP_WORKERS", "1")
            .env("OPSLEDGER_POLL_MS", "50")
            .env("OPSLEDGER_TIMER_INTERVAL_MS", "100")
            .env("OPSLEDGER_SMTP_HOST", "127.0.0.1")
            .env("OPSLEDGER_SMTP_PORT", smtp_port.to_string())
            .env("OPSLEDGER_SMTP_TLS", "none")
            .env("OPSLEDGER_SMTP_FROM", "opsledger <noreply@opsledger.test>")
            .env("OPSLEDGER_SMTP_RETRY_FIRST_MS", "200")
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", otlp)
            .env("OTEL_BSP_SCHEDULE_DELAY", "100")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("opsledger serve starts");
        let instance = Instance {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match http.get(format!("{}/readyz", instance.base)).send().await {
                Ok(r) if r.status().is_success() => return instance,
                _ if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                _ => panic!("the service did not become ready"),
            }
        }
    }

    /// As a crash would: no shutdown, no flush, nothing finished.
    async fn kill(mut self) {
        self.child.kill().await.expect("the process is killed");
    }
}

struct Api {
    http: reqwest::Client,
    token: String,
}

impl Api {
    async fn call(
        &self,
        base: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Value {
        let mut req = self
            .http
            .request(method.clone(), format!("{base}{path}"))
            .bearer_auth(&self.token);
        if let Some(body) = &body {
            req = req.json(body);
        }
        let res = req.send().await.expect("the request is sent");
        let status = res.status();
        let text = res.text().await.unwrap();
        assert!(
            status.is_success(),
            "{method} {path} answered {status}: {text}"
        );
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    async fn post(&self, base: &str, path: &str, body: Value) -> Value {
        self.call(base, reqwest::Method::POST, path, Some(body))
            .await
    }

    async fn get(&self, base: &str, path: &str) -> Value {
        self.call(base, reqwest::Method::GET, path, None).await
    }
}

/// Waits for `what` to hold (projections follow the log, workers poll).
async fn until<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn to(mail: &Received) -> &str {
    &mail.rcpt_to[0]
}

/// The incident's escalations as recorded: (level, round, by hand, recorded at).
async fn escalations(db: &TestDatabase, incident: &str) -> Vec<(i64, i64, bool, DateTime<Utc>)> {
    let su = db.superuser().await;
    su.query(
        "SELECT (payload->>'level')::int8, (payload->>'round')::int8, (payload->>'by_hand')::bool, recorded_at \
         FROM events WHERE stream_id = $1 AND event_type = 'IncidentEscalated' ORDER BY stream_version",
        &[&format!("incident-{incident}")],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
    .collect()
}

fn queue_ids(queue: &Value) -> Vec<&str> {
    queue["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["incident_id"].as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_levels_are_mailed_on_time_across_a_restart_and_two_instances_and_the_client_is_told_in_japanese(
) {
    let db = fresh_database().await;
    let sink = SmtpSink::start().await;
    let otlp = OtlpReceiver::start().await;
    let tenant = std::process::Command::new(env!("CARGO_BIN_EXE_opsledger"))
        .args(["tenant", "add", "--name", "Acme MSP"])
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
    let auth = AuthConfig::hs256(SECRET.as_bytes(), "opsledger", "opsledger");
    let api = Api {
        http: reqwest::Client::new(),
        token: auth.mint(tenant, "admin", &[Role::Admin], None, 3600),
    };
    let operator = Api {
        http: reqwest::Client::new(),
        token: auth.mint(tenant, "ops-1", &[Role::Operator], None, 3600),
    };
    let monitoring = Api {
        http: reqwest::Client::new(),
        token: auth.mint(tenant, "alertmanager", &[Role::Integration], None, 3600),
    };

    let a = Instance::start(&db, sink.port(), &otlp.endpoint).await;
    let b = Instance::start(&db, sink.port(), &otlp.endpoint).await;

    // The directory, the responders, the on-call schedule and the policy.
    let client = api
        .post(
            &a.base,
            "/api/v1/clients",
            json!({ "name": "株式会社サンプル", "locale": "ja" }),
        )
        .await;
    let service = api
        .post(&a.base, "/api/v1/services", json!({
            "client_id": client["id"], "name": "受注サイト", "sla_target_pct": 99.9, "notice_period_h": 24
        }))
        .await;
    let alice = api
        .post(
            &a.base,
            "/api/v1/users",
            json!({ "name": "Alice Smith", "email": "alice@example.test", "locale": "en" }),
        )
        .await;
    let hanako = api
        .post(
            &a.base,
            "/api/v1/users",
            json!({ "name": "山田 花子", "email": "hanako@example.test", "locale": "ja" }),
        )
        .await;
    let yesterday = (Utc::now() - chrono::Duration::days(1)).date_naive();
    let schedule = api
        .post(&a.base, "/api/v1/schedules", json!({
            "name": "Second line", "time_zone": "Asia/Tokyo",
            "rotations": [{ "users": [hanako["id"]], "shift_hours": 24, "start_date": yesterday, "handoff_time": "09:00:00" }]
        }))
        .await;
    let policy = api
        .post(&a.base, "/api/v1/escalation-policies", json!({
            "name": "Orders", "service_ids": [service["id"]],
            "levels": [
                { "targets": [{ "type": "user", "id": alice["id"] }], "timeout_minutes": LEVEL_1_TIMEOUT_S / 60.0, "repeat": 0 },
                { "targets": [{ "type": "schedule", "id": schedule["id"] }], "timeout_minutes": 10.0, "repeat": 0 }
            ]
        }))
        .await;
    api.post(&a.base, "/api/v1/subscriptions", json!({
        "service_id": service["id"], "name": "佐藤 一郎", "email": "ichiro@example.jp", "locale": "ja",
        "kinds": ["incident_opened", "incident_resolved"], "min_severity": "warning"
    }))
    .await;
    until("the policy is in force", || async {
        let listed = api.get(&a.base, "/api/v1/escalation-policies").await;
        listed["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["id"] == policy["id"])
            .then_some(())
    })
    .await;

    // An alert opens the incident; level 1 is due at once.
    let receipt = monitoring
        .post(&b.base, "/api/v1/alerts", json!({
            "source": "prometheus", "dedup_key": "orders-5xx", "service": service["id"],
            "summary": "注文APIのエラー率上昇", "severity": "critical", "category": "application"
        }))
        .await;
    assert_eq!(receipt["outcome"], "opened_incident", "{receipt}");
    let incident = receipt["incident_id"].as_str().unwrap().to_owned();
    let mails = sink.wait_for(2).await;
    let opened = mails
        .iter()
        .find(|m| to(m) == "ichiro@example.jp")
        .expect("the client contact is told the incident opened");
    assert_eq!(
        opened.subject(),
        "【障害発生】注文APIのエラー率上昇（受注サイト）"
    );
    assert!(opened.body().contains("受注サイト"), "{}", opened.body());
    let level_1 = mails
        .iter()
        .find(|m| to(m) == "alice@example.test")
        .expect("level 1 is told");
    assert_eq!(
        level_1.subject(),
        "[opsledger] Escalation level 1: 注文APIのエラー率上昇",
        "Alice reads English"
    );

    let queue = until("the incident is in the operations queue", || async {
        let q = operator.get(&a.base, "/api/v1/queues/operations").await;
        (queue_ids(&q) == [incident.as_str()] && q["items"][0]["escalation_level"] == 1)
            .then_some(q)
    })
    .await;
    assert!(
        queue["items"][0]["escalates_in_seconds"].as_i64().is_some(),
        "{queue}"
    );
    assert!(queue_ids(&operator.get(&a.base, "/api/v1/queues/maintenance").await).is_empty());

    // Every instance dies before level 2 is due; one comes back after.
    a.kill().await;
    b.kill().await;
    tokio::time::sleep(Duration::from_secs_f64(LEVEL_1_TIMEOUT_S + 0.5)).await;
    let a = Instance::start(&db, sink.port(), &otlp.endpoint).await;
    let level_2 = until("level 2 is told", || async {
        sink.messages()
            .into_iter()
            .find(|m| to(m) == "hanako@example.test")
    })
    .await;
    assert_eq!(
        level_2.subject(),
        "【エスカレーション レベル2】注文APIのエラー率上昇",
        "花子 reads Japanese"
    );
    let b = Instance::start(&db, sink.port(), &otlp.endpoint).await;

    // Two instances poll the timers: nothing fires twice, nothing early.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let fired = escalations(&db, &incident).await;
    assert_eq!(
        fired.iter().map(|f| (f.0, f.1, f.2)).collect::<Vec<_>>(),
        vec![(1, 1, false), (2, 1, false)],
        "each level fired exactly once, on its timer"
    );
    assert!(
        fired[1].3 - fired[0].3
            >= chrono::Duration::milliseconds((LEVEL_1_TIMEOUT_S * 1000.0) as i64 - 50),
        "level 2 waited for level 1's timeout: {fired:?}"
    );

    // Operations hands it over to maintenance; the queues follow.
    operator
        .post(
            &b.base,
            &format!("/api/v1/incidents/{incident}/handoff"),
            json!({ "reason": "needs a database fix" }),
        )
        .await;
    operator
        .post(
            &b.base,
            &format!("/api/v1/incidents/{incident}/assign"),
            json!({ "assignee": "hanako" }),
        )
        .await;
    let maintenance = until("the incident is in the maintenance queue", || async {
        let q = operator.get(&b.base, "/api/v1/queues/maintenance").await;
        (queue_ids(&q) == [incident.as_str()] && q["items"][0]["assignee"] == "hanako").then_some(q)
    })
    .await;
    assert_eq!(maintenance["team"], "maintenance");
    assert!(queue_ids(&operator.get(&b.base, "/api/v1/queues/operations").await).is_empty());

    // Resolving tells the client, in Japanese; the queues empty.
    operator
        .post(
            &a.base,
            &format!("/api/v1/incidents/{incident}/resolve"),
            json!({}),
        )
        .await;
    let resolved = until("the client contact is told it is resolved", || async {
        let mine: Vec<Received> = sink
            .messages()
            .into_iter()
            .filter(|m| to(m) == "ichiro@example.jp")
            .collect();
        (mine.len() == 2).then(|| mine[1].clone())
    })
    .await;
    assert_eq!(
        resolved.subject(),
        "【復旧】注文APIのエラー率上昇（受注サイト）"
    );
    until("both queues are empty", || async {
        let ops = operator.get(&a.base, "/api/v1/queues/operations").await;
        let maint = operator.get(&a.base, "/api/v1/queues/maintenance").await;
        (queue_ids(&ops).is_empty() && queue_ids(&maint).is_empty()).then_some(())
    })
    .await;

    // Four facts, four recipients: every mail once.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut recipients: Vec<String> = sink.messages().iter().map(|m| to(m).to_owned()).collect();
    recipients.sort();
    assert_eq!(
        recipients,
        [
            "alice@example.test",
            "hanako@example.test",
            "ichiro@example.jp",
            "ichiro@example.jp"
        ]
    );
    // The ledger follows the log: the last `NotificationSent` may reach it
    // a moment after its mail reached the sink.
    let deadline = Instant::now() + Duration::from_secs(10);
    let ledger = loop {
        let ledger = operator
            .get(
                &a.base,
                &format!("/api/v1/notifications?incident_id={incident}"),
            )
            .await;
        let items = ledger["items"].as_array().unwrap();
        let done = items.len() == 4 && items.iter().all(|n| n["status"] == "sent");
        if done || Instant::now() > deadline {
            break ledger;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let items = ledger["items"].as_array().unwrap();
    assert_eq!(items.len(), 4, "{ledger}");
    assert!(items.iter().all(|n| n["status"] == "sent"), "{ledger}");
    // Each escalation step and mail attempt is a span (issue 17, point 1).
    let traced = |spans: &[opsledger_testkit::ReceivedSpan]| {
        let of = |name: &'static str| spans.iter().filter(move |s| s.name == name);
        of("escalation step").any(|s| {
            s.attribute("incident") == Some(incident.as_str())
                && s.attribute("level").is_some()
                && s.attribute("outcome").is_some()
        }) && of("mail attempt").any(|s| {
            s.attribute("outcome") == Some("sent") && s.attribute("notification").is_some()
        })
    };
    let spans = otlp.wait_for(Duration::from_secs(10), traced).await;
    assert!(
        traced(&spans),
        "escalation steps and mail attempts are traced: {:#?}",
        spans
            .iter()
            .map(|s| (&s.name, &s.attributes))
            .collect::<Vec<_>>()
    );
    println!(
        "R5 figures: both instances killed before level 2 was due, one restarted, two running after: each level mailed once, on time; {} notices sent, none twice",
        items.len()
    );
    a.kill().await;
    b.kill().await;
}
