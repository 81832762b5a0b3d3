//! Heartbeats (issue 18 point 3, SPEC §12): a period heartbeat missed
//! raises an alert and opens an incident, the next ping resolves it; a
//! `/fail` with an exit code raises at once; pings record no events unless
//! the status changes; rotation makes the old token 404; hostile input is a
//! problem. (The cron schedule across DST is tested in `domain::heartbeat`
//! at fixed instants.)

use std::time::Duration;

use opsledger_domain::access::Role;
use opsledger_testkit::{spawn_app_with, TestApp};
use opsledger_tests::within_a_minute;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::alerts::service;

async fn fast_app() -> TestApp {
    spawn_app_with(|c| c.heartbeat_poll_interval = Duration::from_millis(100)).await
}

/// Pings with no Authorization header.
async fn ping(app: &TestApp, path: &str, body: &str) -> reqwest::Response {
    app.http
        .post(app.url(path))
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

/// Pings until the read model has the token (it may lag the create).
async fn ping_ok(app: &TestApp, path: &str) -> Value {
    within_a_minute("a ping is taken", || async move {
        let res = ping(app, path, "").await;
        (res.status() == StatusCode::OK).then_some(())
    })
    .await;
    Value::Null
}

async fn stream_types(app: &TestApp, id: &str) -> Vec<String> {
    app.db
        .superuser()
        .await
        .query(
            "SELECT event_type FROM events WHERE tenant_id = $1 AND stream_id = $2 \
             ORDER BY stream_version",
            &[&app.tenant, &format!("heartbeat-{id}")],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

async fn count(app: &TestApp, event_type: &str) -> i64 {
    app.db
        .superuser()
        .await
        .query_one(
            "SELECT count(*) FROM events WHERE tenant_id = $1 AND event_type = $2",
            &[&app.tenant, &event_type],
        )
        .await
        .unwrap()
        .get(0)
}

async fn create(app: &TestApp, body: &Value) -> Value {
    let res = app
        .post("/api/v1/heartbeats", &app.token(&[Role::Operator]), body)
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    res.json().await.unwrap()
}

#[tokio::test]
async fn a_missed_period_heartbeat_opens_an_incident_and_the_next_ping_resolves_it() {
    let app = fast_app().await;
    let service = service(&app, "Batch").await;
    let hb = create(
        &app,
        &json!({ "name": "nightly export", "service_id": service,
                 "schedule": { "kind": "period", "period_s": 2 }, "grace_s": 1 }),
    )
    .await;
    let id = hb["id"].as_str().unwrap().to_owned();
    let path = hb["ping_path"].as_str().unwrap().to_owned();
    assert_eq!(hb["token"].as_str().unwrap().len(), 64);
    assert_eq!(hb["status"], "up");
    // Pings in time record nothing.
    ping_ok(&app, &path).await;
    for _ in 0..3 {
        assert_eq!(ping(&app, &path, "fine").await.status(), StatusCode::OK);
    }
    assert_eq!(stream_types(&app, &id).await, ["HeartbeatCreated"]);
    // Then the job stops: late after period + grace, once.
    within_a_minute("the miss opens an incident", || {
        let app = &app;
        async move { (count(app, "IncidentOpened").await == 1).then_some(()) }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        stream_types(&app, &id).await,
        ["HeartbeatCreated", "HeartbeatMissed"]
    );
    let got = app
        .get(
            &format!("/api/v1/heartbeats/{id}"),
            &app.token(&[Role::Auditor]),
        )
        .await;
    let got: Value = got.json().await.unwrap();
    assert_eq!(got["status"], "late", "{got}");
    assert_eq!(got["run"]["last_ping"]["body"], "fine", "{got}");
    // A miss that lasts sends its alert again an hour on (here: its last
    // sending moved two hours back), so the alert expiry never closes it;
    // the repeat opens nothing new.
    let received = count(&app, "AlertReceived").await;
    app.db
        .superuser()
        .await
        .execute(
            "UPDATE heartbeat_runs SET alerted_at = alerted_at - interval '2 hours' \
             WHERE heartbeat_id = $1::text::uuid",
            &[&id],
        )
        .await
        .unwrap();
    within_a_minute("the alert is sent again", || {
        let app = &app;
        async move { (count(app, "AlertReceived").await == received + 1).then_some(()) }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(count(&app, "AlertReceived").await, received + 1, "once");
    assert_eq!(count(&app, "IncidentOpened").await, 1);
    // The next good ping recovers it and resolves the alert.
    let res = ping(&app, &format!("{path}?run_id=r-7"), "").await;
    assert_eq!(res.status(), StatusCode::OK);
    let answer: Value = res.json().await.unwrap();
    assert_eq!(answer["status"], "up");
    within_a_minute("the alert resolves", || {
        let app = &app;
        async move { (count(app, "AlertResolved").await == 1).then_some(()) }
    })
    .await;
    assert_eq!(
        stream_types(&app, &id).await,
        ["HeartbeatCreated", "HeartbeatMissed", "HeartbeatRecovered"]
    );
}

#[tokio::test]
async fn a_fail_ping_raises_at_once_the_next_good_ping_resolves_and_rotation_retires_the_old_token()
{
    let app = fast_app().await;
    let service = service(&app, "Backups").await;
    let hb = create(
        &app,
        &json!({ "name": "db backup", "service_id": service, "category": "hardware",
                 "schedule": { "kind": "cron", "expression": "30 2 * * *",
                               "time_zone": "America/New_York" }, "grace_s": 600 }),
    )
    .await;
    let id = hb["id"].as_str().unwrap().to_owned();
    let path = hb["ping_path"].as_str().unwrap().to_owned();
    ping_ok(&app, &format!("{path}/start")).await;
    let res = ping(&app, &format!("{path}/fail?exit_code=3"), "disk full").await;
    assert_eq!(res.status(), StatusCode::OK);
    within_a_minute("the failure's alert", || {
        let app = &app;
        async move { (count(app, "AlertReceived").await == 1).then_some(()) }
    })
    .await;
    // A second failure changes nothing.
    ping(&app, &format!("{path}/fail"), "").await;
    ping(&app, &format!("{path}/start"), "").await;
    assert_eq!(
        stream_types(&app, &id).await,
        ["HeartbeatCreated", "HeartbeatFailed"]
    );
    ping(&app, &format!("{path}?exit_code=0"), "").await;
    assert_eq!(
        stream_types(&app, &id).await,
        ["HeartbeatCreated", "HeartbeatFailed", "HeartbeatRecovered"]
    );
    // Rotation: a new token, once; the old one becomes 404 (problem+json).
    let res = app
        .post(
            &format!("/api/v1/heartbeats/{id}/rotate"),
            &app.token(&[Role::Admin]),
            &json!(null),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let rotated: Value = res.json().await.unwrap();
    let new_path = rotated["ping_path"].as_str().unwrap().to_owned();
    assert_ne!(new_path, path);
    within_a_minute("the old token is refused", || {
        let (app, path) = (&app, &path);
        async move {
            let res = ping(app, path, "").await;
            (res.status() == StatusCode::NOT_FOUND).then_some(res)
        }
    })
    .await;
    let res = ping(&app, &path, "").await;
    assert_eq!(
        res.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    assert_eq!(ping(&app, &new_path, "").await.status(), StatusCode::OK);
    // The database holds no usable token.
    let tokens: i64 = app
        .db
        .superuser()
        .await
        .query_one(
            "SELECT count(*) FROM events WHERE payload::text LIKE '%' || $1 || '%'",
            &[&rotated["token"].as_str().unwrap()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(tokens, 0);

    // Listed (once the read model has it), changed on the version read,
    // then removed: its token stops working.
    let operator = app.token(&[Role::Operator]);
    within_a_minute("the heartbeat is listed", || {
        let (app, operator, id) = (&app, &operator, &id);
        async move {
            let list: Value = app
                .get("/api/v1/heartbeats", operator)
                .await
                .json()
                .await
                .unwrap();
            list["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|h| h["id"] == id.as_str())
                .then_some(())
        }
    })
    .await;
    let res = app
        .get(&format!("/api/v1/heartbeats/{id}"), &operator)
        .await;
    let etag = res.headers()["etag"].to_str().unwrap().to_owned();
    let res = app
        .http
        .put(app.url(&format!("/api/v1/heartbeats/{id}")))
        .bearer_auth(&operator)
        .header("if-match", &etag)
        .json(
            &json!({ "name": "db backup", "service_id": service, "category": "hardware",
                        "schedule": { "kind": "period", "period_s": 86400 }, "grace_s": 600 }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let changed: Value = res.json().await.unwrap();
    assert_eq!(changed["schedule"]["kind"], "period", "{changed}");
    let etag = res_etag(&app, &id, &operator).await;
    let res = app
        .http
        .delete(app.url(&format!("/api/v1/heartbeats/{id}")))
        .bearer_auth(&operator)
        .header("if-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    within_a_minute("a removed heartbeat's token is refused", || {
        let (app, new_path) = (&app, &new_path);
        async move {
            (ping(app, new_path, "").await.status() == StatusCode::NOT_FOUND).then_some(())
        }
    })
    .await;
    assert_eq!(
        stream_types(&app, &id).await.last().map(String::as_str),
        Some("HeartbeatRemoved")
    );
}

async fn res_etag(app: &TestApp, id: &str, token: &str) -> String {
    let res = app.get(&format!("/api/v1/heartbeats/{id}"), token).await;
    res.headers()["etag"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn heartbeat_routes_refuse_bad_input_with_problems_and_enforce_roles() {
    let app = fast_app().await;
    let service = service(&app, "Jobs").await;
    let operator = app.token(&[Role::Operator]);
    let good = json!({ "name": "j", "service_id": service,
                       "schedule": { "kind": "period", "period_s": 60 } });
    let with = |path: &str, v: Value| {
        let mut b = good.clone();
        *b.pointer_mut(path).unwrap() = v;
        b
    };
    let cases = [
        (
            with(
                "/schedule",
                json!({ "kind": "cron", "expression": "0 0 * * 1", "time_zone": "UTC" }),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            with(
                "/schedule",
                json!({ "kind": "cron", "expression": "0 0 * * *", "time_zone": "Nowhere/City" }),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            with(
                "/schedule",
                json!({ "kind": "cron", "expression": "x", "time_zone": "UTC" }),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            with("/schedule", json!({ "kind": "period", "period_s": 0 })),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            with("/schedule", json!({ "kind": "period", "period_s": -1 })),
            StatusCode::BAD_REQUEST,
        ),
        (
            with("/schedule", json!({ "kind": "weekly" })),
            StatusCode::BAD_REQUEST,
        ),
        (
            with("/name", json!("a\u{0}b")),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            with("/service_id", json!("not-a-uuid")),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (body, status) in cases {
        let res = app.post("/api/v1/heartbeats", &operator, &body).await;
        assert_eq!(res.status(), status, "{body}");
        assert_eq!(
            res.headers()["content-type"].to_str().unwrap(),
            "application/problem+json",
            "{body}"
        );
    }
    let res = app
        .post("/api/v1/heartbeats", &app.token(&[Role::Auditor]), &good)
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = app
        .http
        .get(app.url("/api/v1/heartbeats"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    for path in [
        "/api/v1/heartbeats/unknown",
        "/api/v1/heartbeats/unknown/fail?exit_code=1",
    ] {
        let res = ping(&app, path, "").await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
    }
    // The ping path shares its template with the heartbeat's own routes: a
    // heartbeat's id there is not its token, and answers 404 like any.
    let created: Value = app
        .post("/api/v1/heartbeats", &operator, &good)
        .await
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap();
    for path in [
        format!("/api/v1/heartbeats/{id}"),
        format!("/api/v1/heartbeats/{id}/fail"),
    ] {
        let res = ping(&app, &path, "").await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
        assert_eq!(
            res.headers()["content-type"].to_str().unwrap(),
            "application/problem+json"
        );
    }
    let res = ping(&app, "/api/v1/heartbeats/x?exit_code=abc", "").await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let res = ping(&app, "/api/v1/heartbeats/x", "a\u{0}b").await;
    assert!(res.status().is_client_error());
}
