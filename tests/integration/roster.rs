//! Responders, schedules, policies, subscriptions, queues and the ledger
//! (issue 4): every route's roles, tenants apart, reads by id that answer
//! what the create did, and acknowledgement cancelling what escalation had
//! scheduled.

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
    let uid = user["id"].as_str().unwrap().to_owned();
    let policy = admin_post(&app, "/api/v1/escalation-policies", json!({
        "name": "Shop", "levels": [{ "targets": [{ "type": "user", "id": user["id"] }], "timeout_minutes": 5 }]
    }))
    .await;
    let pid = policy["id"].as_str().unwrap().to_owned();
    let subscription = admin_post(
        &app,
        "/api/v1/subscriptions",
        json!({
            "service_id": service["id"], "name": "C", "email": "c@example.test",
            "kinds": ["incident_opened"], "min_severity": "warning"
        }),
    )
    .await;
    let subid = subscription["id"].as_str().unwrap().to_owned();
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
            (Method::GET, format!("/api/v1/users/{uid}"), None, is_staff),
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
                Method::GET,
                format!("/api/v1/escalation-policies/{pid}"),
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
            (Method::GET, "/api/v1/schedules".into(), None, is_staff),
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
                Method::GET,
                format!("/api/v1/subscriptions/{subid}"),
                None,
                ledger,
            ),
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

    // Another tenant's responder, policy, schedule, subscription and
    // incident do not exist for you.
    let other = app.register_tenant("Other MSP").await;
    let stranger = app.token_for(other, "x", &[Role::Admin], None);
    for path in [
        format!("/api/v1/users/{uid}"),
        format!("/api/v1/escalation-policies/{pid}"),
        format!("/api/v1/schedules/{sid}"),
        format!("/api/v1/schedules/{sid}/oncall"),
        format!("/api/v1/subscriptions/{subid}"),
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

/// A response's status, `ETag`, media type and body.
struct Read {
    status: StatusCode,
    etag: Option<String>,
    content_type: String,
    body: Value,
}

async fn read(app: &TestApp, path: &str, token: &str) -> Read {
    let res = app.get(path, token).await;
    let header = |name: &str| {
        res.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let (status, etag) = (res.status(), header("etag"));
    let content_type = header("content-type").unwrap_or_default();
    let text = res.text().await.unwrap();
    Read {
        status,
        etag,
        content_type,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
    }
}

/// `path` answers `status` with a problem+json body of that status.
async fn assert_problem(app: &TestApp, path: &str, token: &str, status: StatusCode) {
    let r = read(app, path, token).await;
    assert_eq!(r.status, status, "{path}: {}", r.body);
    assert_eq!(r.content_type, "application/problem+json", "{path}");
    assert_eq!(r.body["status"], status.as_u16(), "{path}: {}", r.body);
}

/// Every roster create answers 201 with a `Location` that is served: the read
/// there answers the very body and entity tag the create did (from the
/// stream, at once), and the list shows the same item once projected.
#[tokio::test]
async fn reads_by_id_answer_what_the_create_did_and_the_lists_show() {
    let app = spawn_app().await;
    let admin = app.token(&[Role::Admin]);
    let auditor = app.token(&[Role::Auditor]);
    let mine = register_client(&app, "Client Mine").await;
    let theirs = register_client(&app, "Client Theirs").await;
    let my_service = register_service(&app, mine["id"].as_str().unwrap(), "shop").await;
    let their_service = register_service(&app, theirs["id"].as_str().unwrap(), "erp").await;
    let created = |path: &'static str, body: Value| {
        let admin = admin.clone();
        let app = &app;
        async move {
            let res = app.post(path, &admin, &body).await;
            assert_eq!(res.status(), StatusCode::CREATED, "{path}");
            let header = |n: &str| res.headers()[n].to_str().unwrap().to_owned();
            let (location, etag) = (header("location"), header("etag"));
            let body: Value = res.json().await.unwrap();
            let id = body["id"].as_str().unwrap();
            assert_eq!(location, format!("{path}/{id}"));
            assert_eq!(etag, "\"1\"", "{path}");
            (location, body)
        }
    };
    let (user_at, user) = created(
        "/api/v1/users",
        json!({ "name": "佐藤 花子", "email": "hanako@example.jp", "locale": "ja" }),
    )
    .await;
    let (schedule_at, schedule) = created("/api/v1/schedules", json!({
        "name": "Ops", "time_zone": "Asia/Tokyo",
        "rotations": [{ "users": [user["id"]], "shift_hours": 12, "start_date": "2026-01-01", "handoff_time": "09:00:00" }]
    }))
    .await;
    let (policy_at, policy) = created("/api/v1/escalation-policies", json!({
        "name": "Shop", "service_ids": [my_service["id"]],
        "levels": [{ "targets": [{ "type": "user", "id": user["id"] }, { "type": "schedule", "id": schedule["id"] }],
                     "timeout_minutes": 5, "repeat": 1 }]
    }))
    .await;
    let subscribe = |service: &Value| {
        json!({
            "service_id": service["id"], "name": "経理 田中", "email": "tanaka@example.jp",
            "locale": "ja", "kinds": ["incident_opened", "incident_resolved"], "min_severity": "warning"
        })
    };
    let (sub_at, sub) = created("/api/v1/subscriptions", subscribe(&my_service)).await;
    let (their_sub_at, _) = created("/api/v1/subscriptions", subscribe(&their_service)).await;
    assert!(
        policy["defined_at"].is_string() && user["registered_at"].is_string(),
        "{policy} {user}"
    );

    // At once, from the stream: the create's body and tag.
    for (at, body) in [
        (&user_at, &user),
        (&schedule_at, &schedule),
        (&policy_at, &policy),
        (&sub_at, &sub),
    ] {
        let r = read(&app, at, &auditor).await;
        assert_eq!(r.status, StatusCode::OK, "{at}: {}", r.body);
        assert_eq!(r.etag.as_deref(), Some("\"1\""), "{at}");
        assert_eq!(&r.body, body, "{at}");
    }
    // The lists show the same items once projected.
    for (list, body) in [
        ("/api/v1/users", &user),
        ("/api/v1/schedules", &schedule),
        ("/api/v1/escalation-policies", &policy),
        ("/api/v1/subscriptions", &sub),
    ] {
        let item = eventually(list, || async {
            let l = read(&app, list, &auditor).await;
            assert_eq!(l.status, StatusCode::OK, "{list}: {}", l.body);
            l.body["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|i| i["id"] == body["id"])
                .cloned()
        })
        .await;
        assert_eq!(&item, body, "{list}");
    }

    // A schedule with an override: the read by id, the list and the
    // override's answer all agree on the new version.
    let res = app
        .post(
            &format!("{schedule_at}/overrides"),
            &app.token(&[Role::Operator]),
            &json!({ "user_id": user["id"], "start": "2026-06-01T00:00:00Z", "end": "2026-06-02T00:00:00Z" }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(res.headers()["etag"], "\"2\"");
    let added: Value = res.json().await.unwrap();
    let now = read(&app, &schedule_at, &auditor).await;
    assert_eq!(now.etag.as_deref(), Some("\"2\""));
    assert_eq!(now.body["version"], 2);
    assert_eq!(now.body["overrides"], json!([added]));
    eventually("the override is projected", || async {
        let l = read(&app, "/api/v1/schedules", &auditor).await;
        let items = l.body["items"].as_array().unwrap().clone();
        (items == [now.body.clone()]).then_some(())
    })
    .await;

    // A cancelled subscription: read by id as inactive, at a later version;
    // as it stood before the cancellation, active; gone from the list.
    let before_cancel = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let res = app
        .http
        .delete(app.url(&sub_at))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let cancelled = read(&app, &sub_at, &auditor).await;
    assert_eq!(cancelled.etag.as_deref(), Some("\"2\""));
    let mut inactive = sub.clone();
    inactive["active"] = json!(false);
    assert_eq!(cancelled.body, inactive);
    let then = read(&app, &format!("{sub_at}?as_of={before_cancel}"), &auditor).await;
    assert_eq!(then.status, StatusCode::OK, "{}", then.body);
    assert_eq!((then.etag.as_deref(), &then.body), (Some("\"1\""), &sub));
    assert_problem(
        &app,
        &format!("{sub_at}?as_of=2020-01-01T00:00:00Z"),
        &auditor,
        StatusCode::NOT_FOUND,
    )
    .await;
    eventually("the cancellation is projected", || async {
        let l = read(&app, "/api/v1/subscriptions", &auditor).await;
        let ids: Vec<&Value> = l.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| &i["id"])
            .collect();
        (!ids.contains(&&sub["id"])).then_some(())
    })
    .await;

    // A client user reads its own client's subscription, not another's.
    let client = app.token_for(
        app.tenant,
        "c",
        &[Role::Client],
        Some(mine["id"].as_str().unwrap().parse().unwrap()),
    );
    let own = read(&app, &sub_at, &client).await;
    assert_eq!((own.status, &own.body), (StatusCode::OK, &inactive));
    assert_problem(&app, &their_sub_at, &client, StatusCode::NOT_FOUND).await;

    // Roles the lists refuse are refused the reads by id too.
    for at in [&user_at, &policy_at, &schedule_at] {
        assert_problem(&app, at, &client, StatusCode::FORBIDDEN).await;
    }
    assert_problem(&app, "/api/v1/schedules", &client, StatusCode::FORBIDDEN).await;
    let integration = app.token(&[Role::Integration]);
    for at in [&user_at, &policy_at, &schedule_at, &sub_at] {
        assert_problem(&app, at, &integration, StatusCode::FORBIDDEN).await;
    }

    // Another tenant's are not found, and its list of schedules is its own.
    let other = app.register_tenant("Other MSP").await;
    let stranger = app.token_for(other, "x", &[Role::Admin], None);
    for at in [&user_at, &policy_at, &schedule_at, &sub_at] {
        assert_problem(&app, at, &stranger, StatusCode::NOT_FOUND).await;
    }
    let theirs = read(&app, "/api/v1/schedules", &stranger).await;
    assert_eq!(theirs.body, json!({ "items": [] }));

    // Unknown and malformed ids are 404, unknown query parameters 400.
    let unknown = uuid::Uuid::now_v7();
    for list in [
        "/api/v1/users",
        "/api/v1/escalation-policies",
        "/api/v1/subscriptions",
    ] {
        for id in [unknown.to_string(), "not-a-uuid".to_owned()] {
            assert_problem(&app, &format!("{list}/{id}"), &admin, StatusCode::NOT_FOUND).await;
        }
        // Ids of other kinds of entity are not found either.
        let schedule_id = schedule["id"].as_str().unwrap();
        assert_problem(
            &app,
            &format!("{list}/{schedule_id}"),
            &admin,
            StatusCode::NOT_FOUND,
        )
        .await;
    }
    for at in [&user_at, &policy_at, &sub_at] {
        assert_problem(
            &app,
            &format!("{at}?limit=1"),
            &admin,
            StatusCode::BAD_REQUEST,
        )
        .await;
    }
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

/// Every roster list is paged (SPEC §7): `limit` items in order, a
/// `next_cursor` while more follow, and `after` it the rest; none lost or
/// repeated, and a `limit` out of range is a 400 problem.
#[tokio::test]
async fn roster_lists_are_paged_in_order_without_gaps_or_repeats() {
    let app = spawn_app().await;
    let admin = app.token(&[Role::Admin]);
    let client = register_client(&app, "Client A").await;
    let service = register_service(&app, client["id"].as_str().unwrap(), "shop").await;
    let mut users = Vec::new();
    for name in ["Carol", "Alice", "Bob"] {
        let res = app
            .post(
                "/api/v1/users",
                &admin,
                &json!({ "name": name, "email": format!("{}@example.com", name.to_lowercase()), "locale": "en" }),
            )
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
        users.push(res.json::<Value>().await.unwrap()["id"].clone());
    }
    for name in ["Zed", "Yan", "Xia"] {
        let res = app
            .post(
                "/api/v1/schedules",
                &admin,
                &json!({ "name": name, "time_zone": "UTC",
                         "rotations": [{ "users": [users[0]], "shift_hours": 8, "start_date": "2026-01-01", "handoff_time": "00:00:00" }] }),
            )
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
        let res = app
            .post(
                "/api/v1/escalation-policies",
                &admin,
                &json!({ "name": name, "service_ids": [service["id"]],
                         "levels": [{ "targets": [{ "type": "user", "id": users[1] }], "timeout_minutes": 5, "repeat": 1 }] }),
            )
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
        let res = app
            .post(
                "/api/v1/subscriptions",
                &admin,
                &json!({ "service_id": service["id"], "name": name, "email": format!("{}@example.com", name.to_lowercase()),
                         "locale": "en", "kinds": ["incident_opened"], "min_severity": "info" }),
            )
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
    }
    for (list, key, expected) in [
        ("/api/v1/users", "name", ["Alice", "Bob", "Carol"]),
        ("/api/v1/schedules", "name", ["Xia", "Yan", "Zed"]),
        ("/api/v1/escalation-policies", "name", ["Xia", "Yan", "Zed"]),
        // Oldest first.
        ("/api/v1/subscriptions", "name", ["Zed", "Yan", "Xia"]),
    ] {
        let all = eventually(list, || async {
            let l = read(&app, list, &admin).await;
            (l.body["items"].as_array()?.len() == 3).then_some(l.body)
        })
        .await;
        assert!(all.get("next_cursor").is_none(), "{list}: {all}");
        let first = read(&app, &format!("{list}?limit=2"), &admin).await;
        assert_eq!(first.status, StatusCode::OK, "{list}: {}", first.body);
        let cursor = first.body["next_cursor"]
            .as_str()
            .unwrap_or_else(|| panic!("{list}: a next page in {}", first.body));
        assert_eq!(cursor, first.body["items"][1]["id"].as_str().unwrap());
        let rest = read(&app, &format!("{list}?limit=2&after={cursor}"), &admin).await;
        assert_eq!(rest.status, StatusCode::OK, "{list}: {}", rest.body);
        assert!(
            rest.body.get("next_cursor").is_none(),
            "{list}: {}",
            rest.body
        );
        let names: Vec<&str> = first.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .chain(rest.body["items"].as_array().unwrap())
            .map(|i| i[key].as_str().unwrap())
            .collect();
        assert_eq!(names, expected, "{list}");
        for bad in ["limit=0", "limit=201", "after=nope", "page=2"] {
            assert_problem(
                &app,
                &format!("{list}?{bad}"),
                &admin,
                StatusCode::BAD_REQUEST,
            )
            .await;
        }
    }
}
