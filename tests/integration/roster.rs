//! Responders, schedules, policies, subscriptions, queues and the ledger
//! (issue 4): every route's roles, tenants apart, and acknowledgement
//! cancelling what escalation had scheduled.

use std::time::Duration;

use opsledger_domain::access::Role;
use opsledger_testkit::{spawn_app, spawn_app_with, TestApp};
use opsledger_tests::eventually;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::api_directory::{register_client, register_service};

async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> StatusCode {
    let mut req = app.http.request(method, app.url(path)).bearer_auth(token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    req.send().await.unwrap().status()
}

async fn admin_post(app: &TestApp, path: &str, body: Value) -> Value {
    let res = app.post(path, &app.token(&[Role::Admin]), &body).await;
    let status = res.status();
    let text = res.text().await.unwrap();
    assert!(status.is_success(), "{path}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

#[tokio::test]
async fn roles_are_enforced_on_every_roster_queue_and_ledger_route() {
    let app = spawn_app().await;
    let client = register_client(&app, "Client A").await;
    let client_id: uuid::Uuid = client["id"].as_str().unwrap().parse().unwrap();
    let service = register_service(&app, &client_id.to_string(), "shop").await;
    let user = admin_post(
        &app,
        "/api/v1/users",
        json!({ "name": "Alice", "email": "alice@example.test" }),
    )
    .await;
    let schedule = admin_post(&app, "/api/v1/schedules", json!({
        "name": "Ops", "time_zone": "Europe/Berlin",
        "rotations": [{ "users": [user["id"]], "shift_hours": 12, "start_date": "2026-01-01", "handoff_time": "08:00:00" }]
    }))
    .await;
    let sid = schedule["id"].as_str().unwrap().to_owned();
    let incident = app
        .post(
            "/api/v1/incidents",
            &app.token(&[Role::Operator]),
            &json!({
                "title": "Shop down", "service_id": service["id"], "severity": "error"
            }),
        )
        .await
        .json::<Value>()
        .await
        .unwrap();
    let iid = incident["id"].as_str().unwrap().to_owned();

    let staff = [
        Role::Operator,
        Role::Maintainer,
        Role::Approver,
        Role::Auditor,
        Role::Admin,
    ];
    for role in Role::ALL {
        let token = app.token_for(
            app.tenant,
            "u",
            &[role],
            (role == Role::Client).then_some(client_id),
        );
        let is_staff = staff.contains(&role);
        let is_admin = role == Role::Admin;
        let responds = matches!(role, Role::Operator | Role::Maintainer | Role::Admin);
        let ledger = is_staff || role == Role::Client;
        let checks: Vec<(Method, String, Option<Value>, bool)> = vec![
            (Method::GET, "/api/v1/users".into(), None, is_staff),
            (
                Method::POST,
                "/api/v1/users".into(),
                Some(json!({ "name": format!("U {role:?}"), "email": "u@example.test" })),
                is_admin,
            ),
            (
                Method::GET,
                "/api/v1/escalation-policies".into(),
                None,
                is_staff,
            ),
            (
                Method::POST,
                "/api/v1/escalation-policies".into(),
                Some(
                    json!({ "name": "P", "levels": [{ "targets": [{ "type": "user", "id": user["id"] }], "timeout_minutes": 5 }] }),
                ),
                is_admin,
            ),
            (
                Method::POST,
                "/api/v1/schedules".into(),
                Some(
                    json!({ "name": "S", "time_zone": "Asia/Tokyo", "rotations": [{ "users": [user["id"]], "shift_hours": 8, "start_date": "2026-01-01", "handoff_time": "00:00:00" }] }),
                ),
                is_admin,
            ),
            (
                Method::GET,
                format!("/api/v1/schedules/{sid}"),
                None,
                is_staff,
            ),
            (
                Method::GET,
                format!("/api/v1/schedules/{sid}/oncall?at=2026-06-01T12:00:00Z"),
                None,
                is_staff,
            ),
            (
                Method::POST,
                format!("/api/v1/schedules/{sid}/overrides"),
                Some(
                    json!({ "user_id": user["id"], "start": "2026-06-01T00:00:00Z", "end": "2026-06-02T00:00:00Z" }),
                ),
                responds,
            ),
            (Method::GET, "/api/v1/subscriptions".into(), None, ledger),
            (
                Method::POST,
                "/api/v1/subscriptions".into(),
                Some(
                    json!({ "service_id": service["id"], "name": "C", "email": "c@example.test", "kinds": ["incident_opened"], "min_severity": "warning" }),
                ),
                is_admin || role == Role::Client,
            ),
            (
                Method::GET,
                "/api/v1/queues/operations".into(),
                None,
                is_staff,
            ),
            (
                Method::GET,
                "/api/v1/queues/maintenance".into(),
                None,
                is_staff,
            ),
            (Method::GET, "/api/v1/notifications".into(), None, ledger),
            (
                Method::POST,
                format!("/api/v1/incidents/{iid}/escalate"),
                Some(json!({ "reason": "drill" })),
                responds,
            ),
            (
                Method::POST,
                format!("/api/v1/incidents/{iid}/assign"),
                Some(json!({ "assignee": "alice" })),
                responds,
            ),
            (
                Method::POST,
                format!("/api/v1/incidents/{iid}/unassign"),
                Some(json!({})),
                responds,
            ),
        ];
        for (method, path, body, allowed) in checks {
            let status = send(&app, method.clone(), &path, &token, body).await;
            assert_ne!(status, StatusCode::UNAUTHORIZED, "{role:?} {method} {path}");
            assert_eq!(
                status == StatusCode::FORBIDDEN
                    || (role == Role::Client && status == StatusCode::NOT_FOUND && !allowed),
                !allowed,
                "{role:?} {method} {path}: {status}"
            );
        }
    }
    // Hand-off last: it moves the incident for good.
    for role in Role::ALL {
        let token = app.token_for(
            app.tenant,
            "u",
            &[role],
            (role == Role::Client).then_some(client_id),
        );
        let status = send(
            &app,
            Method::POST,
            &format!("/api/v1/incidents/{iid}/handoff"),
            &token,
            Some(json!({ "reason": "fix" })),
        )
        .await;
        let responds = matches!(role, Role::Operator | Role::Maintainer | Role::Admin);
        if !responds {
            assert!(
                status == StatusCode::FORBIDDEN || status == StatusCode::NOT_FOUND,
                "{role:?} handoff: {status}"
            );
        }
    }

    // Another tenant's schedule, subscription and incident do not exist for you.
    let other = app.register_tenant("Other MSP").await;
    let stranger = app.token_for(other, "x", &[Role::Admin], None);
    for path in [
        format!("/api/v1/schedules/{sid}"),
        format!("/api/v1/schedules/{sid}/oncall"),
    ] {
        assert_eq!(
            app.get(&path, &stranger).await.status(),
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    assert_eq!(
        send(
            &app,
            Method::POST,
            &format!("/api/v1/incidents/{iid}/escalate"),
            &stranger,
            Some(json!({}))
        )
        .await,
        StatusCode::NOT_FOUND
    );
    let queue: Value = app
        .get("/api/v1/queues/operations", &stranger)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(queue["items"], json!([]));
}

/// Acknowledging cancels the step escalation had scheduled: level 2 never
/// comes, and no timer is left behind.
#[tokio::test]
async fn acknowledging_cancels_the_next_escalation() {
    let app = spawn_app_with(|c| {
        c.timer_interval = Duration::from_millis(50);
        c.poll_interval = Duration::from_millis(50);
    })
    .await;
    let client = register_client(&app, "Client B").await;
    let service = register_service(&app, client["id"].as_str().unwrap(), "billing").await;
    let first = admin_post(
        &app,
        "/api/v1/users",
        json!({ "name": "First", "email": "first@example.test" }),
    )
    .await;
    let second = admin_post(
        &app,
        "/api/v1/users",
        json!({ "name": "Second", "email": "second@example.test" }),
    )
    .await;
    let policy = admin_post(
        &app,
        "/api/v1/escalation-policies",
        json!({
            "name": "Billing", "service_ids": [service["id"]],
            "levels": [
                { "targets": [{ "type": "user", "id": first["id"] }], "timeout_minutes": 0.05 },
                { "targets": [{ "type": "user", "id": second["id"] }], "timeout_minutes": 10 }
            ]
        }),
    )
    .await;
    let operator = app.token(&[Role::Operator]);
    eventually("the policy is in force", || async {
        let l: Value = app
            .get("/api/v1/escalation-policies", &operator)
            .await
            .json()
            .await
            .unwrap();
        l["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["id"] == policy["id"])
            .then_some(())
    })
    .await;
    let incident: Value = app
        .post(
            "/api/v1/incidents",
            &operator,
            &json!({
                "title": "Invoices stuck", "service_id": service["id"], "severity": "critical"
            }),
        )
        .await
        .json()
        .await
        .unwrap();
    let id = incident["id"].as_str().unwrap().to_owned();
    let view = eventually("level 1 fires at once", || async {
        let v: Value = app
            .get(&format!("/api/v1/incidents/{id}"), &operator)
            .await
            .json()
            .await
            .unwrap();
        (v["escalation_level"] == 1).then_some(v)
    })
    .await;
    assert!(
        view["next_escalation"]["due_at"].is_string(),
        "level 2 is scheduled: {view}"
    );
    let ack = app
        .http
        .post(app.url(&format!("/api/v1/incidents/{id}/acknowledge")))
        .bearer_auth(&operator)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(ack.status(), StatusCode::OK);
    let acked: Value = ack.json().await.unwrap();
    assert!(acked["next_escalation"].is_null(), "{acked}");
    // Well past level 1's three seconds: level 2 never came.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let after: Value = app
        .get(&format!("/api/v1/incidents/{id}"), &operator)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(after["escalation_level"], 1, "{after}");
    let su = app.db.superuser().await;
    let timers: i64 = su
        .query_one("SELECT count(*) FROM escalation_timers", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(timers, 0);
}
