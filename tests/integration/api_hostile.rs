//! R6 and non-negotiable 4: malformed or hostile requests get a clear 4xx
//! problem, never a 5xx, and write nothing.

use opsledger_domain::access::Role;
use opsledger_testkit::{spawn_app, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::Value;

async fn events(app: &TestApp) -> i64 {
    app.db
        .superuser()
        .await
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .unwrap()
        .get(0)
}

/// (name, method, path, content type, body, expected status)
type Case = (
    &'static str,
    Method,
    &'static str,
    Option<&'static str>,
    Vec<u8>,
    StatusCode,
);

#[tokio::test]
async fn malformed_requests_get_problems_and_write_nothing() {
    let app = spawn_app().await;
    let admin = app.token(&[Role::Admin]);
    let before = events(&app).await;
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let big = format!("{{\"name\": \"{}\"}}", "x".repeat(1_100_000));
    let cases: Vec<Case> = vec![
        ("invalid json", Method::POST, "/api/v1/clients", Some("application/json"), b"{\"name\": ".to_vec(), StatusCode::BAD_REQUEST),
        ("not json", Method::POST, "/api/v1/clients", Some("text/plain"), b"name=x".to_vec(), StatusCode::UNSUPPORTED_MEDIA_TYPE),
        ("no content type", Method::POST, "/api/v1/clients", None, b"{\"name\":\"x\"}".to_vec(), StatusCode::UNSUPPORTED_MEDIA_TYPE),
        ("oversized", Method::POST, "/api/v1/clients", Some("application/json"), big.into_bytes(), StatusCode::PAYLOAD_TOO_LARGE),
        ("unknown field", Method::POST, "/api/v1/clients", Some("application/json"), b"{\"name\":\"x\",\"admin\":true}".to_vec(), StatusCode::BAD_REQUEST),
        ("wrong type", Method::POST, "/api/v1/clients", Some("application/json"), b"{\"name\":42}".to_vec(), StatusCode::BAD_REQUEST),
        ("deep nesting", Method::POST, "/api/v1/clients", Some("application/json"), deep.into_bytes(), StatusCode::BAD_REQUEST),
        ("invalid utf-8", Method::POST, "/api/v1/clients", Some("application/json"), b"{\"name\":\"\xff\xfe\"}".to_vec(), StatusCode::BAD_REQUEST),
        ("empty name", Method::POST, "/api/v1/clients", Some("application/json"), b"{\"name\":\"   \"}".to_vec(), StatusCode::UNPROCESSABLE_ENTITY),
        ("control chars", Method::POST, "/api/v1/clients", Some("application/json"), b"{\"name\":\"a\\u0000b\"}".to_vec(), StatusCode::UNPROCESSABLE_ENTITY),
        ("bad locale", Method::POST, "/api/v1/clients", Some("application/json"), b"{\"name\":\"x\",\"locale\":\"klingon\"}".to_vec(), StatusCode::UNPROCESSABLE_ENTITY),
        ("bad email", Method::POST, "/api/v1/clients", Some("application/json"), b"{\"name\":\"x\",\"contacts\":[{\"name\":\"a\",\"email\":\"nope\"}]}".to_vec(), StatusCode::UNPROCESSABLE_ENTITY),
        ("sla nan-ish", Method::POST, "/api/v1/services", Some("application/json"), b"{\"client_id\":\"00000000-0000-0000-0000-000000000000\",\"name\":\"x\",\"sla_target_pct\":1e400,\"notice_period_h\":1}".to_vec(), StatusCode::BAD_REQUEST),
        ("sla out of range", Method::POST, "/api/v1/services", Some("application/json"), b"{\"client_id\":\"00000000-0000-0000-0000-000000000000\",\"name\":\"x\",\"sla_target_pct\":101,\"notice_period_h\":1}".to_vec(), StatusCode::UNPROCESSABLE_ENTITY),
        ("negative notice", Method::POST, "/api/v1/services", Some("application/json"), b"{\"client_id\":\"00000000-0000-0000-0000-000000000000\",\"name\":\"x\",\"sla_target_pct\":99,\"notice_period_h\":-1}".to_vec(), StatusCode::BAD_REQUEST),
        ("bad component kind", Method::POST, "/api/v1/services", Some("application/json"), b"{\"client_id\":\"00000000-0000-0000-0000-000000000000\",\"name\":\"x\",\"sla_target_pct\":99,\"notice_period_h\":1,\"components\":[{\"name\":\"a\",\"kind\":\"toaster\"}]}".to_vec(), StatusCode::BAD_REQUEST),
        ("id not a uuid", Method::GET, "/api/v1/services/not-a-uuid", None, vec![], StatusCode::NOT_FOUND),
        ("sql in path", Method::GET, "/api/v1/clients/'%3B%20DROP%20TABLE%20events%3B--", None, vec![], StatusCode::NOT_FOUND),
        ("bad limit", Method::GET, "/api/v1/services?limit=abc", None, vec![], StatusCode::BAD_REQUEST),
        ("zero limit", Method::GET, "/api/v1/services?limit=0", None, vec![], StatusCode::BAD_REQUEST),
        ("huge limit", Method::GET, "/api/v1/services?limit=99999999999", None, vec![], StatusCode::BAD_REQUEST),
        ("unknown query", Method::GET, "/api/v1/services?evil=1", None, vec![], StatusCode::BAD_REQUEST),
        ("bad as_of", Method::GET, "/api/v1/services/00000000-0000-0000-0000-000000000000?as_of=yesterday", None, vec![], StatusCode::BAD_REQUEST),
        ("unknown route", Method::GET, "/api/v1/nothing-here", None, vec![], StatusCode::NOT_FOUND),
        ("wrong method", Method::DELETE, "/api/v1/clients", None, vec![], StatusCode::METHOD_NOT_ALLOWED),
        ("wrong method on health", Method::POST, "/healthz", None, vec![], StatusCode::METHOD_NOT_ALLOWED),
    ];
    for (name, method, path, content_type, body, expected) in cases {
        let mut req = app
            .http
            .request(method, app.url(path))
            .bearer_auth(&admin)
            .body(body);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), expected, "{name}");
        assert_eq!(
            res.headers()["content-type"],
            "application/problem+json",
            "{name}"
        );
        let problem: Value = res.json().await.unwrap();
        assert_eq!(problem["status"], expected.as_u16(), "{name}");
        assert!(!problem["detail"].as_str().unwrap().is_empty(), "{name}");
    }
    let res = app
        .http
        .post(app.url("/api/v1/clients"))
        .bearer_auth(&admin)
        .header("idempotency-key", "k".repeat(500))
        .json(&serde_json::json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        events(&app).await,
        before,
        "a refused request wrote nothing"
    );
}

#[tokio::test]
async fn health_is_public_and_readiness_sees_the_database() {
    let app = spawn_app().await;
    let res = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers().contains_key("x-request-id"));
    let res = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let metrics = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("opsledger_projection_lag_seconds{projection=\"directory\"}"),
        "{metrics}"
    );
}

/// (name, path or incident command, who: i(ntegration) or o(perator), body, If-Match, expected)
type CommandCase = (
    &'static str,
    &'static str,
    &'static str,
    Value,
    Option<&'static str>,
    StatusCode,
);

#[tokio::test]
async fn malformed_alerts_and_commands_get_problems_and_write_nothing() {
    let app = spawn_app().await;
    let integration = app.token(&[Role::Integration]);
    let operator = app.token(&[Role::Operator]);
    let incident: Value = app
        .post(
            "/api/v1/incidents",
            &operator,
            &serde_json::json!({ "title": "x", "severity": "info" }),
        )
        .await
        .json()
        .await
        .unwrap();
    let id = incident["id"].as_str().unwrap().to_owned();
    let before = events(&app).await;
    let labels: serde_json::Map<String, Value> = (0..100)
        .map(|i| (format!("l{i}"), Value::from("v")))
        .collect();
    let cases: Vec<CommandCase> = vec![
        (
            "am alerts not a list",
            "/api/v1/integrations/alertmanager",
            "i",
            serde_json::json!({ "groupKey": "g", "alerts": "many" }),
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            "am bad status",
            "/api/v1/integrations/alertmanager",
            "i",
            serde_json::json!({ "groupKey": "g", "alerts": [{ "status": "burning", "startsAt": "2026-11-25T00:00:00Z" }] }),
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "am bad time",
            "/api/v1/integrations/alertmanager",
            "i",
            serde_json::json!({ "groupKey": "g", "alerts": [{ "status": "firing", "startsAt": "yesterday" }] }),
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            "pd unknown action",
            "/api/v1/integrations/pagerduty",
            "i",
            serde_json::json!({ "routing_key": "r", "event_action": "explode" }),
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            "pd bad severity",
            "/api/v1/integrations/pagerduty",
            "i",
            serde_json::json!({ "routing_key": "r", "event_action": "trigger", "payload": { "summary": "s", "source": "s", "severity": "apocalyptic" } }),
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            "pd resolve without key",
            "/api/v1/integrations/pagerduty",
            "i",
            serde_json::json!({ "routing_key": "r", "event_action": "resolve" }),
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            "huge dedup key",
            "/api/v1/alerts",
            "i",
            serde_json::json!({ "source": "s", "dedup_key": "k".repeat(600), "summary": "s", "severity": "info" }),
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "empty dedup key",
            "/api/v1/alerts",
            "i",
            serde_json::json!({ "source": "s", "dedup_key": " ", "summary": "s", "severity": "info" }),
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "too many labels",
            "/api/v1/alerts",
            "i",
            serde_json::json!({ "source": "s", "dedup_key": "k", "summary": "s", "severity": "info", "labels": labels }),
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "bad category",
            "/api/v1/alerts",
            "i",
            serde_json::json!({ "source": "s", "dedup_key": "k", "summary": "s", "severity": "info", "category": "vibes" }),
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "garbage if-match",
            "notes",
            "o",
            serde_json::json!({ "text": "t", "visibility": "internal" }),
            Some("yesterday"),
            StatusCode::BAD_REQUEST,
        ),
        (
            "bad visibility",
            "notes",
            "o",
            serde_json::json!({ "text": "t", "visibility": "everyone" }),
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            "bad action kind",
            "actions",
            "o",
            serde_json::json!({ "kind": "reboot-the-world", "description": "d" }),
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            "impact backwards",
            "impact",
            "o",
            serde_json::json!({ "impact_start": "2026-11-25T02:00:00Z", "impact_end": "2026-11-25T01:00:00Z", "reason": "r" }),
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "huge note",
            "notes",
            "o",
            serde_json::json!({ "text": "n".repeat(20_000), "visibility": "internal" }),
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ];
    for (name, target, who, body, if_match, expected) in cases {
        let path = if target.starts_with('/') {
            target.to_owned()
        } else {
            format!("/api/v1/incidents/{id}/{target}")
        };
        let token = if who == "i" { &integration } else { &operator };
        let mut req = app.http.post(app.url(&path)).bearer_auth(token).json(&body);
        if let Some(m) = if_match {
            req = req.header("if-match", m);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), expected, "{name}");
        assert_eq!(
            res.headers()["content-type"],
            "application/problem+json",
            "{name}"
        );
    }
    for path in [
        "/api/v1/incidents/not-a-uuid",
        "/api/v1/incidents/not-a-uuid/timeline",
        "/api/v1/alerts/not-a-uuid",
    ] {
        assert_eq!(
            app.get(path, &operator).await.status(),
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    let unknown = uuid::Uuid::now_v7();
    assert_eq!(
        app.get(&format!("/api/v1/incidents/{unknown}/timeline"), &operator)
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        events(&app).await,
        before,
        "a refused request wrote nothing"
    );
}

#[tokio::test]
async fn a_database_outage_gives_503_with_retry_after_then_recovers() {
    let app = spawn_app().await;
    let admin = app.token(&[Role::Admin]);
    for n in 0..4 {
        let res = app
            .post(
                "/api/v1/clients",
                &admin,
                &serde_json::json!({ "name": format!("Before {n}") }),
            )
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
    }
    // An outage of this database alone: refuse new connections, cut the open ones.
    let admin_db = app.db.superuser_of("postgres").await;
    let outage = |allow: bool| {
        format!(
            "ALTER DATABASE {} WITH ALLOW_CONNECTIONS {allow}",
            app.db.name
        )
    };
    admin_db.batch_execute(&outage(false)).await.unwrap();
    admin_db
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
            &[&app.db.name],
        )
        .await
        .unwrap();
    let mut unavailable = 0;
    for n in 0..5 {
        let res = app
            .post(
                "/api/v1/clients",
                &admin,
                &serde_json::json!({ "name": format!("During {n}") }),
            )
            .await;
        assert_eq!(
            res.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "during the outage"
        );
        assert!(
            res.headers().contains_key("retry-after"),
            "503 carries Retry-After"
        );
        assert_eq!(res.headers()["content-type"], "application/problem+json");
        unavailable += 1;
    }
    assert_eq!(unavailable, 5);
    let ready = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(
        ready.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "not ready without a database"
    );
    assert_eq!(
        app.http
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK,
        "but alive"
    );

    admin_db.batch_execute(&outage(true)).await.unwrap();
    let mut recovered = false;
    for n in 0..100 {
        let res = app
            .post(
                "/api/v1/clients",
                &admin,
                &serde_json::json!({ "name": format!("After {n}") }),
            )
            .await;
        match res.status() {
            StatusCode::CREATED => {
                recovered = true;
                break;
            }
            StatusCode::SERVICE_UNAVAILABLE => {}
            other => panic!(
                "while the database returns: {other} {}",
                res.text().await.unwrap()
            ),
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(recovered, "the service recovers once the database is back");
}

/// Every route of the table, with every role at once, against bodies and
/// queries no client should send: a 4xx problem or a success, never a 5xx,
/// and nothing written by a refused request.
#[tokio::test]
async fn no_route_answers_hostile_input_with_a_server_error() {
    let app = spawn_app().await;
    let everyone = app.token(&Role::ALL);
    let unknown = uuid::Uuid::now_v7();
    let bodies: Vec<Vec<u8>> = vec![
        b"null".to_vec(),
        b"[]".to_vec(),
        b"\"x\"".to_vec(),
        b"{}".to_vec(),
        b"{\"a\":".to_vec(),
        b"{\"minutes_spent\": -1, \"start\": \"0000-00-00\", \"service_ids\": [\"x\"]}".to_vec(),
        b"{\"title\": \"\\u0000\", \"note\": 1e400, \"id\": 18446744073709551616}".to_vec(),
        format!("{}{}", "[".repeat(5_000), "]".repeat(5_000)).into_bytes(),
    ];
    let before = events(&app).await;
    for (method, path) in opsledger_api::routes() {
        let path = path
            .replace("{id}", &unknown.to_string())
            .replace("{n}", "1");
        let requests: Vec<(Method, String, Option<Vec<u8>>)> = match method.as_str() {
            "get" => vec![
                (Method::GET, format!("{path}?limit=-1"), None),
                (
                    Method::GET,
                    format!("{path}?as_of=never&since=2026-13-45"),
                    None,
                ),
                (Method::GET, format!("{path}?%00=%ff"), None),
            ],
            m => bodies
                .iter()
                .map(|b| {
                    (
                        Method::from_bytes(m.to_uppercase().as_bytes()).unwrap(),
                        path.clone(),
                        Some(b.clone()),
                    )
                })
                .collect(),
        };
        for (method, url, body) in requests {
            let mut req = app
                .http
                .request(method.clone(), app.url(&url))
                .bearer_auth(&everyone);
            if let Some(b) = body {
                req = req.header("content-type", "application/json").body(b);
            }
            let res = req.send().await.unwrap();
            let status = res.status();
            let content_type = res
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            assert!(status.as_u16() < 500, "{method} {url} answered {status}");
            if status.is_client_error() {
                assert!(
                    content_type.starts_with("application/problem+json"),
                    "{method} {url} -> {status} as {content_type}"
                );
            }
        }
    }
    // Hostile input to ingestion may still be recorded (an alert for an
    // unknown service is kept): only count the rest.
    let written: i64 = app
        .db
        .superuser()
        .await
        .query_one(
            "SELECT count(*) FROM events WHERE stream_id NOT LIKE 'alert-%' AND stream_id NOT LIKE 'group-%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        written <= before,
        "refused requests wrote {} events",
        written - before
    );
}

/// Monitoring sends what it sends: a NUL in any text of an alert is
/// refused with a problem, never a server error, and the store keeps going.
#[tokio::test]
async fn a_nul_in_an_alert_is_refused_and_ingestion_goes_on() {
    let app = spawn_app().await;
    let monitoring = app.token(&[Role::Integration]);
    let base = serde_json::json!({ "source": "prometheus", "dedup_key": "k", "summary": "s", "severity": "error" });
    for (field, value) in [
        ("summary", serde_json::json!("a\u{0}b")),
        ("dedup_key", serde_json::json!("k\u{0}")),
        ("source", serde_json::json!("p\u{0}")),
        ("group_key", serde_json::json!("g\u{0}")),
        ("service", serde_json::json!("shop\u{0}")),
        ("labels", serde_json::json!({ "env\u{0}": "prod" })),
        ("labels", serde_json::json!({ "env": "pr\u{0}od" })),
    ] {
        let mut body = base.clone();
        body[field] = value;
        let res = app.post("/api/v1/alerts", &monitoring, &body).await;
        let status = res.status();
        assert!(
            status.is_client_error(),
            "{field}: {status} {}",
            res.text().await.unwrap()
        );
    }
    let res = app.post("/api/v1/alerts", &monitoring, &base).await;
    assert!(res.status().is_success(), "{}", res.text().await.unwrap());
}
