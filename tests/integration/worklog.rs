//! The operations work log (issue 5): routine tasks and backups, their list
//! and filters, verification of backups, the payload keys the work ledger
//! reads, every new route's roles, and the read model's rebuild.

use opsledger_domain::access::Role;
use opsledger_store::projection;
use opsledger_testkit::{spawn_app, TestApp};
use opsledger_tests::eventually;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::api_directory::{register_client, register_service};
use crate::runbooks::call;

async fn record(app: &TestApp, path: &str, token: &str, body: Value) -> Value {
    let res = app.post(path, token, &body).await;
    let status = res.status();
    let text = res.text().await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{path}: {text}");
    serde_json::from_str(&text).unwrap()
}

async fn worklog(app: &TestApp, query: &str) -> Value {
    let res = app
        .get(
            &format!("/api/v1/worklog{query}"),
            &app.token(&[Role::Auditor]),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn routine_tasks_and_backups_are_listed_newest_first_with_filters_and_pages() {
    let app = spawn_app().await;
    let client = register_client(&app, "Client W").await;
    let cid = client["id"].as_str().unwrap();
    let shop = register_service(&app, cid, "shop").await;
    let mail = register_service(&app, cid, "mail").await;
    let operator = app.token(&[Role::Operator]);
    let restart = record(
        &app,
        "/api/v1/worklog",
        &operator,
        json!({ "service_id": shop["id"], "kind": "restart", "summary": "Restarted php-fpm",
                "minutes_spent": 5, "performed_at": "2026-03-01T10:00:00Z" }),
    )
    .await;
    assert_eq!(restart["performed_by"], "tester");
    assert_eq!(restart["minutes_spent"], 5);
    let report = record(
        &app,
        "/api/v1/worklog",
        &operator,
        json!({ "service_id": mail["id"], "kind": "report_delivered", "summary": "February report sent",
                "performed_at": "2026-03-02T09:00:00Z" }),
    )
    .await;
    assert!(report["minutes_spent"].is_null());
    let backup = record(
        &app,
        "/api/v1/backups",
        &operator,
        json!({ "service_id": shop["id"], "what": "shop database", "location": "nas-2:/backups/shop",
                "note": "before the upgrade", "performed_at": "2026-03-03T01:00:00Z" }),
    )
    .await;
    assert_eq!(backup["status"], "unverified");

    let all = eventually("three entries are listed", || async {
        let page = worklog(&app, "").await;
        (page["items"].as_array().unwrap().len() == 3).then_some(page)
    })
    .await;
    let (r, t, b) = (
        restart["id"].as_str().unwrap().to_owned(),
        report["id"].as_str().unwrap().to_owned(),
        backup["id"].as_str().unwrap().to_owned(),
    );
    assert_eq!(ids(&all), vec![b.clone(), t.clone(), r.clone()]);
    assert_eq!(all["items"][0]["entry"], "backup");
    assert_eq!(all["items"][0]["backup_status"], "unverified");
    assert_eq!(all["items"][0]["summary"], "shop database");

    let shop_id = shop["id"].as_str().unwrap();
    assert_eq!(
        ids(&worklog(&app, &format!("?service_id={shop_id}")).await),
        vec![b.clone(), r.clone()]
    );
    assert_eq!(ids(&worklog(&app, "?kind=backup").await), vec![b.clone()]);
    assert_eq!(ids(&worklog(&app, "?kind=restart").await), vec![r.clone()]);
    assert_eq!(
        ids(&worklog(
            &app,
            "?since=2026-03-02T00:00:00Z&until=2026-03-03T00:00:00Z"
        )
        .await),
        vec![t.clone()]
    );
    // Pages of two, following the cursor, cover the log once.
    let first = worklog(&app, "?limit=2").await;
    assert_eq!(ids(&first), vec![b, t]);
    let cursor = first["next_cursor"].as_str().unwrap();
    let second = worklog(&app, &format!("?limit=2&before={cursor}")).await;
    assert_eq!(ids(&second), vec![r]);
    assert!(second.get("next_cursor").is_none(), "{second}");

    // What is refused, and why.
    for (path, body) in [
        (
            "/api/v1/worklog",
            json!({ "service_id": shop["id"], "kind": "other", "summary": "x", "minutes_spent": 10_081 }),
        ),
        (
            "/api/v1/worklog",
            json!({ "service_id": shop["id"], "kind": "other", "summary": "x", "minutes_spent": -1 }),
        ),
        (
            "/api/v1/worklog",
            json!({ "service_id": shop["id"], "kind": "other", "summary": "x", "performed_at": "2100-01-01T00:00:00Z" }),
        ),
        (
            "/api/v1/worklog",
            json!({ "service_id": client["id"], "kind": "other", "summary": "x" }),
        ),
        (
            "/api/v1/backups",
            json!({ "service_id": shop["id"], "what": "db", "location": "  " }),
        ),
    ] {
        let res = app.post(path, &operator, &body).await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    }
}

#[tokio::test]
async fn a_backup_may_be_verified_by_anyone_and_who_verified_it_is_recorded() {
    let app = spawn_app().await;
    let client = register_client(&app, "Client V").await;
    let service = register_service(&app, client["id"].as_str().unwrap(), "erp").await;
    let alice = app.token_for(app.tenant, "alice", &[Role::Operator], None);
    let bob = app.token_for(app.tenant, "bob", &[Role::Maintainer], None);
    let backup = record(
        &app,
        "/api/v1/backups",
        &alice,
        json!({ "service_id": service["id"], "what": "erp db", "location": "s3://b/erp",
                "size_bytes": 52_428_800u64, "minutes_spent": 12 }),
    )
    .await;
    let path = format!("/api/v1/backups/{}", backup["id"].as_str().unwrap());
    let verify = format!("{path}/verify");

    let (status, etag, b) = call(
        &app,
        &verify,
        &bob,
        Some(json!({ "result": "failed", "how": "restore stopped: checksum mismatch" })),
        Some("\"1\""),
        None,
    )
    .await;
    assert_eq!(
        (status, etag.as_deref()),
        (StatusCode::OK, Some("\"2\"")),
        "{b}"
    );
    assert_eq!(b["status"], "verification_failed");
    // The one who took it may verify it too; the record says so.
    let (status, _, b) = call(
        &app,
        &verify,
        &alice,
        Some(
            json!({ "result": "ok", "how": "restored to staging, 1.2M rows", "minutes_spent": 25 }),
        ),
        Some("\"2\""),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{b}");
    assert_eq!(b["status"], "verified");
    let by: Vec<(Value, Value)> = b["verifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["verified_by"].clone(), v["by_performer"].clone()))
        .collect();
    assert_eq!(
        by,
        vec![(json!("bob"), json!(false)), (json!("alice"), json!(true))]
    );
    // Based on an old version: refused with where it stands.
    let (status, _, p) = call(
        &app,
        &verify,
        &bob,
        Some(json!({ "result": "ok", "how": "again" })),
        Some("\"2\""),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(
        (p["current_version"].clone(), p["current_state"].clone()),
        (json!(3), json!("verified"))
    );
    let read: Value = app.get(&path, &bob).await.json().await.unwrap();
    assert_eq!(read["verifications"].as_array().unwrap().len(), 2);

    // The work ledger's keys: every event names the service; effort is
    // stored under `minutes_spent`; who did it is the metadata, not the payload.
    let su = app.db.superuser().await;
    let rows = su
        .query(
            "SELECT event_type, payload::jsonb, metadata::jsonb FROM events \
             WHERE stream_id LIKE 'backup-%' ORDER BY position",
            &[],
        )
        .await
        .unwrap();
    let sid = service["id"].as_str().unwrap();
    let seen: Vec<(String, Value, Value, Value)> = rows
        .iter()
        .map(|r| {
            let p: Value = r.get(1);
            let m: Value = r.get(2);
            (
                r.get(0),
                p["service_id"].clone(),
                p["minutes_spent"].clone(),
                m["actor"].clone(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            (
                "BackupPerformed".into(),
                json!(sid),
                json!(12),
                json!("alice")
            ),
            (
                "BackupVerified".into(),
                json!(sid),
                Value::Null,
                json!("bob")
            ),
            (
                "BackupVerified".into(),
                json!(sid),
                json!(25),
                json!("alice")
            ),
        ]
    );
    let listed = eventually("the backup is listed as verified", || async {
        let page = worklog(&app, "?kind=backup").await;
        (page["items"][0]["backup_status"] == "verified").then_some(page)
    })
    .await;
    assert_eq!(listed["items"][0]["minutes_spent"], 12);
}

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

#[tokio::test]
async fn roles_are_enforced_on_every_work_log_runbook_and_inquiry_route() {
    let app = spawn_app().await;
    let client = register_client(&app, "Client M").await;
    let client_id: uuid::Uuid = client["id"].as_str().unwrap().parse().unwrap();
    let service = register_service(&app, &client_id.to_string(), "portal").await;
    let operator = app.token(&[Role::Operator]);
    let backup = record(
        &app,
        "/api/v1/backups",
        &operator,
        json!({ "service_id": service["id"], "what": "db", "location": "nas" }),
    )
    .await;
    let task = record(
        &app,
        "/api/v1/worklog",
        &operator,
        json!({ "service_id": service["id"], "kind": "inspection", "summary": "disk at 40%" }),
    )
    .await;
    let steps = json!([{ "title": "Check", "instructions": "look", "double_check": true }, { "title": "Fix", "instructions": "fix" }]);
    let runbook = record(
        &app,
        "/api/v1/runbooks",
        &operator,
        json!({ "title": "Check disks", "steps": steps }),
    )
    .await;
    let (bid, tid, rid) = (
        backup["id"].as_str().unwrap().to_owned(),
        task["id"].as_str().unwrap().to_owned(),
        runbook["id"].as_str().unwrap().to_owned(),
    );

    let staff = [
        Role::Operator,
        Role::Maintainer,
        Role::Approver,
        Role::Auditor,
        Role::Admin,
    ];
    for role in Role::ALL {
        let subject = format!("u-{}", role.as_str());
        let token = app.token_for(
            app.tenant,
            &subject,
            &[role],
            (role == Role::Client).then_some(client_id),
        );
        let is_staff = staff.contains(&role);
        let works = matches!(role, Role::Operator | Role::Maintainer | Role::Admin);
        let is_client = role == Role::Client;
        // Each role gets its own execution and inquiries, so one role's
        // command does not turn another's into a 409.
        let execution = record(
            &app,
            &format!("/api/v1/runbooks/{rid}/executions"),
            &operator,
            json!({}),
        )
        .await;
        let xid = execution["id"].as_str().unwrap().to_owned();
        let mut inquiry_ids = Vec::new();
        for _ in 0..3 {
            let i = record(
                &app,
                "/api/v1/inquiries",
                &operator,
                json!({ "service_id": service["id"], "kind": "question", "subject": "s", "body": "b" }),
            )
            .await;
            inquiry_ids.push(i["id"].as_str().unwrap().to_owned());
        }
        // The execution's first step, completed by someone else, for `confirm`.
        let (status, _, _) = call(
            &app,
            &format!("/api/v1/executions/{xid}/steps/1/complete"),
            &operator,
            None,
            None,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let checks: Vec<(Method, String, Option<Value>, bool)> = vec![
            (Method::GET, "/api/v1/worklog".into(), None, is_staff),
            (
                Method::POST,
                "/api/v1/worklog".into(),
                Some(json!({ "service_id": service["id"], "kind": "other", "summary": "s" })),
                works,
            ),
            (
                Method::GET,
                format!("/api/v1/worklog/{tid}"),
                None,
                is_staff,
            ),
            (
                Method::POST,
                "/api/v1/backups".into(),
                Some(json!({ "service_id": service["id"], "what": "w", "location": "l" })),
                works,
            ),
            (
                Method::GET,
                format!("/api/v1/backups/{bid}"),
                None,
                is_staff,
            ),
            (
                Method::POST,
                format!("/api/v1/backups/{bid}/verify"),
                Some(json!({ "result": "ok", "how": "h" })),
                works,
            ),
            (Method::GET, "/api/v1/runbooks".into(), None, is_staff),
            (
                Method::POST,
                "/api/v1/runbooks".into(),
                Some(json!({ "title": "T", "steps": steps })),
                works,
            ),
            (
                Method::GET,
                format!("/api/v1/runbooks/{rid}"),
                None,
                is_staff,
            ),
            (
                Method::POST,
                format!("/api/v1/runbooks/{rid}/versions"),
                Some(json!({ "title": "T", "steps": steps })),
                works,
            ),
            (
                Method::POST,
                format!("/api/v1/runbooks/{rid}/executions"),
                Some(json!({})),
                works,
            ),
            (
                Method::GET,
                format!("/api/v1/executions/{xid}"),
                None,
                is_staff,
            ),
            (
                Method::POST,
                format!("/api/v1/executions/{xid}/steps/1/confirm"),
                Some(json!({})),
                works,
            ),
            (
                Method::POST,
                format!("/api/v1/executions/{xid}/steps/2/complete"),
                Some(json!({})),
                works,
            ),
            (
                Method::POST,
                format!("/api/v1/executions/{xid}/finish"),
                Some(json!({ "outcome": "succeeded" })),
                works,
            ),
            (
                Method::GET,
                "/api/v1/inquiries".into(),
                None,
                is_staff || is_client,
            ),
            (
                Method::POST,
                "/api/v1/inquiries".into(),
                Some(
                    json!({ "service_id": service["id"], "kind": "suggestion", "subject": "s", "body": "b" }),
                ),
                works || is_client,
            ),
            (
                Method::GET,
                format!("/api/v1/inquiries/{}", inquiry_ids[0]),
                None,
                is_staff || is_client,
            ),
            (
                Method::POST,
                format!("/api/v1/inquiries/{}/answer", inquiry_ids[0]),
                Some(json!({ "answer": "a" })),
                works,
            ),
            (
                Method::POST,
                format!("/api/v1/inquiries/{}/escalate", inquiry_ids[1]),
                Some(json!({ "reason": "r" })),
                works,
            ),
            (
                Method::POST,
                format!("/api/v1/inquiries/{}/close", inquiry_ids[2]),
                Some(json!({})),
                works || is_client,
            ),
        ];
        for (method, path, body, allowed) in checks {
            let status = send(&app, method.clone(), &path, &token, body).await;
            if allowed {
                assert!(status.is_success(), "{role:?} {method} {path}: {status}");
            } else {
                assert_eq!(status, StatusCode::FORBIDDEN, "{role:?} {method} {path}");
            }
        }
    }

    // Another tenant's ids do not exist for it, whatever its role.
    let other = app.register_tenant("Other MSP").await;
    let stranger = app.token_for(other, "x", &[Role::Admin], None);
    for path in [
        format!("/api/v1/worklog/{tid}"),
        format!("/api/v1/backups/{bid}"),
        format!("/api/v1/runbooks/{rid}"),
    ] {
        assert_eq!(
            app.get(&path, &stranger).await.status(),
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    for (path, body) in [
        (
            format!("/api/v1/backups/{bid}/verify"),
            json!({ "result": "ok", "how": "h" }),
        ),
        (
            format!("/api/v1/runbooks/{rid}/versions"),
            json!({ "title": "T", "steps": steps }),
        ),
        (format!("/api/v1/runbooks/{rid}/executions"), json!({})),
    ] {
        assert_eq!(
            send(&app, Method::POST, &path, &stranger, Some(body)).await,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    // Nor may it record work on this tenant's services.
    let res = app
        .post(
            "/api/v1/worklog",
            &stranger,
            &json!({ "service_id": service["id"], "kind": "other", "summary": "s" }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(worklog_of(&app, &stranger).await, json!([]));
}

async fn worklog_of(app: &TestApp, token: &str) -> Value {
    let page: Value = app
        .get("/api/v1/worklog", token)
        .await
        .json()
        .await
        .unwrap();
    page["items"].clone()
}

async fn dump(app: &TestApp) -> Vec<String> {
    let su = app.db.superuser().await;
    let mut rows = Vec::new();
    for table in [
        "proj_worklog",
        "proj_runbooks",
        "proj_executions",
        "proj_inquiries",
    ] {
        for r in su
            .query(
                &format!("SELECT row_to_json(t)::text FROM {table} t ORDER BY 1"),
                &[],
            )
            .await
            .unwrap()
        {
            rows.push(r.get(0));
        }
    }
    rows
}

#[tokio::test]
async fn the_operations_read_model_rebuilds_to_the_same_rows() {
    let app = spawn_app().await;
    let client = register_client(&app, "Client P").await;
    let service = register_service(&app, client["id"].as_str().unwrap(), "pos").await;
    let operator = app.token(&[Role::Operator]);
    let backup = record(
        &app,
        "/api/v1/backups",
        &operator,
        json!({ "service_id": service["id"], "what": "pos db", "location": "nas" }),
    )
    .await;
    let verify = format!("/api/v1/backups/{}/verify", backup["id"].as_str().unwrap());
    record_ok(
        &app,
        &verify,
        &operator,
        json!({ "result": "ok", "how": "restored" }),
    )
    .await;
    record(&app, "/api/v1/worklog", &operator, json!({ "service_id": service["id"], "kind": "patch_check", "summary": "ok", "minutes_spent": 3 })).await;
    let runbook = record(
        &app,
        "/api/v1/runbooks",
        &operator,
        json!({ "title": "Reboot", "steps": [{ "title": "Reboot", "instructions": "reboot" }] }),
    )
    .await;
    let versions = format!(
        "/api/v1/runbooks/{}/versions",
        runbook["id"].as_str().unwrap()
    );
    record(&app, &versions, &operator, json!({ "title": "Reboot v2", "service_id": service["id"], "steps": [{ "title": "Reboot", "instructions": "shutdown -r now" }] })).await;
    let execution = record(
        &app,
        &format!(
            "/api/v1/runbooks/{}/executions",
            runbook["id"].as_str().unwrap()
        ),
        &operator,
        json!({}),
    )
    .await;
    let step = format!(
        "/api/v1/executions/{}/steps/1/complete",
        execution["id"].as_str().unwrap()
    );
    record_ok(&app, &step, &operator, json!({ "minutes_spent": 1 })).await;
    let client_token = app.token_for(
        app.tenant,
        "c",
        &[Role::Client],
        Some(client["id"].as_str().unwrap().parse().unwrap()),
    );
    let inquiry = record(
        &app,
        "/api/v1/inquiries",
        &client_token,
        json!({ "service_id": service["id"], "kind": "question", "subject": "s", "body": "b" }),
    )
    .await;
    let ipath = format!("/api/v1/inquiries/{}", inquiry["id"].as_str().unwrap());
    record_ok(
        &app,
        &format!("{ipath}/answer"),
        &operator,
        json!({ "answer": "a", "minutes_spent": 2 }),
    )
    .await;
    record_ok(
        &app,
        &format!("{ipath}/escalate"),
        &operator,
        json!({ "reason": "r" }),
    )
    .await;

    let incremental = eventually("everything is projected", || async {
        let rows = dump(&app).await;
        let escalated = rows.iter().any(|r| r.contains("\"status\":\"escalated\""));
        let verified = rows
            .iter()
            .any(|r| r.contains("\"backup_status\":\"verified\""));
        let v2 = rows.iter().any(|r| r.contains("Reboot v2"));
        let stepped = rows
            .iter()
            .any(|r| r.contains("\"completed_by\": \"tester\""));
        (rows.len() == 5 && escalated && verified && v2 && stepped).then_some(rows)
    })
    .await;
    let replayed = projection::rebuild(
        &app.app_state.pool,
        &opsledger_store::operations::OperationsProjection,
    )
    .await
    .unwrap();
    assert_eq!(replayed, 10);
    assert_eq!(dump(&app).await, incremental);
}

async fn record_ok(app: &TestApp, path: &str, token: &str, body: Value) {
    let res = app.post(path, token, &body).await;
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "{path}: {}",
        res.text().await.unwrap()
    );
}

/// Texts with a NUL are refused at the edge, and a token's subject with one
/// does not stop the read model: work recorded after it is still listed.
#[tokio::test]
async fn control_characters_never_stop_the_operations_read_model() {
    let app = spawn_app().await;
    let client = register_client(&app, "Client N").await;
    let service = register_service(&app, client["id"].as_str().unwrap(), "nul-site").await;
    let operator = app.token(&[Role::Operator]);
    for (path, body) in [
        (
            "/api/v1/worklog",
            json!({ "service_id": service["id"], "kind": "other", "summary": "a\u{0}b" }),
        ),
        (
            "/api/v1/backups",
            json!({ "service_id": service["id"], "what": "db", "location": "nas\u{0}" }),
        ),
        (
            "/api/v1/runbooks",
            json!({ "title": "T", "steps": [{ "title": "s", "instructions": "\u{0}" }] }),
        ),
        (
            "/api/v1/inquiries",
            json!({ "service_id": service["id"], "kind": "question", "subject": "s", "body": "b\u{0}" }),
        ),
    ] {
        let res = app.post(path, &operator, &body).await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{path}");
    }
    // A token whose subject holds a NUL is refused (401) before it records
    // anything; work recorded after it is listed.
    let odd = app.token_for(app.tenant, "odd\u{0}one", &[Role::Operator], None);
    let refused = app
        .post(
            "/api/v1/worklog",
            &odd,
            &json!({ "service_id": service["id"], "kind": "restart", "summary": "s" }),
        )
        .await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let first = record(
        &app,
        "/api/v1/worklog",
        &operator,
        json!({ "service_id": service["id"], "kind": "restart", "summary": "line one\nline two" }),
    )
    .await;
    assert_eq!(first["summary"], "line one\nline two");
    let second = record(
        &app,
        "/api/v1/worklog",
        &operator,
        json!({ "service_id": service["id"], "kind": "inspection", "summary": "after" }),
    )
    .await;
    let page = eventually("both tasks are listed", || async {
        let page = worklog(&app, "").await;
        (page["items"].as_array().unwrap().len() == 2).then_some(page)
    })
    .await;
    assert_eq!(
        ids(&page),
        vec![
            second["id"].as_str().unwrap().to_owned(),
            first["id"].as_str().unwrap().to_owned()
        ]
    );
    assert_eq!(page["items"][1]["performed_by"], "tester");
}

async fn event_count(app: &TestApp) -> i64 {
    app.db
        .superuser()
        .await
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .unwrap()
        .get(0)
}

/// (name, content type, body, extra headers)
type HostileCase = (
    &'static str,
    Option<&'static str>,
    Vec<u8>,
    Vec<(&'static str, &'static str)>,
);

/// R6 for the new routes: malformed bodies, headers and paths get a 4xx
/// problem, never a 5xx, and write nothing.
#[tokio::test]
async fn malformed_operations_requests_get_problems_and_write_nothing() {
    let app = spawn_app().await;
    let client = register_client(&app, "Client H").await;
    let service = register_service(&app, client["id"].as_str().unwrap(), "h-site").await;
    let operator = app.token(&[Role::Operator]);
    let backup = record(
        &app,
        "/api/v1/backups",
        &operator,
        json!({ "service_id": service["id"], "what": "db", "location": "nas" }),
    )
    .await;
    let runbook = record(&app, "/api/v1/runbooks", &operator, json!({ "title": "R", "steps": [{ "title": "s", "instructions": "i", "double_check": true }] })).await;
    let execution = record(
        &app,
        &format!(
            "/api/v1/runbooks/{}/executions",
            runbook["id"].as_str().unwrap()
        ),
        &operator,
        json!({}),
    )
    .await;
    let inquiry = record(
        &app,
        "/api/v1/inquiries",
        &operator,
        json!({ "service_id": service["id"], "kind": "question", "subject": "s", "body": "b" }),
    )
    .await;
    let (b, r, x, i) = (
        backup["id"].as_str().unwrap(),
        runbook["id"].as_str().unwrap(),
        execution["id"].as_str().unwrap(),
        inquiry["id"].as_str().unwrap(),
    );
    let before = event_count(&app).await;
    let posts = [
        "/api/v1/worklog".to_owned(),
        "/api/v1/backups".to_owned(),
        format!("/api/v1/backups/{b}/verify"),
        "/api/v1/runbooks".to_owned(),
        format!("/api/v1/runbooks/{r}/versions"),
        format!("/api/v1/runbooks/{r}/executions"),
        format!("/api/v1/executions/{x}/steps/1/complete"),
        format!("/api/v1/executions/{x}/steps/1/confirm"),
        format!("/api/v1/executions/{x}/finish"),
        "/api/v1/inquiries".to_owned(),
        format!("/api/v1/inquiries/{i}/answer"),
        format!("/api/v1/inquiries/{i}/escalate"),
        format!("/api/v1/inquiries/{i}/close"),
    ];
    let huge = format!("{{\"summary\":\"{}\"}}", "x".repeat(1 << 20));
    let cases: Vec<HostileCase> = vec![
        (
            "truncated json",
            Some("application/json"),
            b"{\"a\":".to_vec(),
            vec![],
        ),
        (
            "not an object",
            Some("application/json"),
            b"[1,2]".to_vec(),
            vec![],
        ),
        ("wrong type", Some("text/plain"), b"{}".to_vec(), vec![]),
        (
            "unknown field",
            Some("application/json"),
            b"{\"zzz\":1}".to_vec(),
            vec![],
        ),
        (
            "bad if-match",
            Some("application/json"),
            b"{}".to_vec(),
            vec![("if-match", "latest")],
        ),
        (
            "bad key",
            Some("application/json"),
            b"{}".to_vec(),
            vec![("idempotency-key", "")],
        ),
        (
            "too large",
            Some("application/json"),
            huge.into_bytes(),
            vec![],
        ),
    ];
    for path in &posts {
        for (name, content_type, body, headers) in &cases {
            // Creating a stream takes no If-Match: there is no version yet.
            let versioned = [
                "verify", "versions", "steps", "finish", "answer", "escalate", "close",
            ]
            .iter()
            .any(|v| path.contains(v));
            if *name == "bad if-match" && !versioned {
                continue;
            }
            let mut req = app
                .http
                .post(app.url(path))
                .bearer_auth(&operator)
                .body(body.clone());
            if let Some(t) = content_type {
                req = req.header("content-type", *t);
            }
            for (h, v) in headers {
                req = req.header(*h, *v);
            }
            let res = req.send().await.unwrap();
            let status = res.status();
            let content_type = res
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            assert!(status.is_client_error(), "{name} {path}: {status}");
            assert!(
                content_type.starts_with("application/problem+json"),
                "{name} {path}: {content_type}"
            );
        }
    }
    // Paths that name nothing, or not a uuid, or not a step.
    for (path, body) in [
        (
            "/api/v1/backups/not-a-uuid/verify".to_owned(),
            json!({ "result": "ok", "how": "h" }),
        ),
        (
            format!("/api/v1/executions/{x}/steps/one/complete"),
            json!({}),
        ),
        (
            format!("/api/v1/executions/{x}/steps/-1/confirm"),
            json!({}),
        ),
        (
            format!("/api/v1/inquiries/{b}/answer"),
            json!({ "answer": "a" }),
        ),
        (format!("/api/v1/runbooks/{i}/executions"), json!({})),
    ] {
        let res = app.post(&path, &operator, &body).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
    }
    for path in [
        "/api/v1/worklog?limit=0".to_owned(),
        "/api/v1/worklog?since=yesterday".to_owned(),
        "/api/v1/runbooks?before=x".to_owned(),
        format!("/api/v1/runbooks/{r}?version=-1"),
        "/api/v1/inquiries?kind=rant".to_owned(),
        "/api/v1/executions?status=paused".to_owned(),
    ] {
        assert_eq!(
            app.get(&path, &operator).await.status(),
            StatusCode::BAD_REQUEST,
            "{path}"
        );
    }
    assert_eq!(event_count(&app).await, before, "nothing was written");
}
