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
