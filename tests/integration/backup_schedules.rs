//! Backup schedules (issue 18, SPEC §12): a service without a backup in its
//! period goes overdue and opens an incident through ingestion; a backup
//! recorded and verified through the work log's routes brings it back and
//! resolves the alert; a backup never verified raises an unverified alert;
//! only changes of standing are events; two instances record a transition
//! and send its alert once; hostile input to the routes is a problem and
//! writes nothing.

use std::time::Duration;

use opsledger_domain::access::Role;
use opsledger_testkit::{spawn_app, spawn_app_with, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::alerts::service;
use crate::probes::events_of;
use opsledger_tests::within_a_minute;

/// The app with periods of a second allowed, each schedule checked every
/// 100 ms.
async fn fast_app() -> TestApp {
    spawn_app_with(|c| {
        c.backup_period_min_s = 1;
        c.backup_poll_interval = Duration::from_millis(100);
    })
    .await
}

fn path(service: &str) -> String {
    format!("/api/v1/services/{service}/backup-schedule")
}

async fn put(app: &TestApp, token: &str, service: &str, body: &Value) -> reqwest::Response {
    app.http
        .put(app.url(&path(service)))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn schedule(app: &TestApp, service: &str) -> Value {
    let res = app.get(&path(service), &app.token(&[Role::Auditor])).await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

/// Waits until the schedule's stream records `standing`; its record then.
async fn standing_reached(app: &TestApp, service: &str, standing: &str) -> Value {
    within_a_minute(&format!("the schedule is {standing}"), || async move {
        let s = schedule(app, service).await;
        (s["standing"] == standing).then_some(s)
    })
    .await
}

async fn stream_types(app: &TestApp, service: &str) -> Vec<String> {
    app.db
        .superuser()
        .await
        .query(
            "SELECT event_type FROM events WHERE tenant_id = $1 AND stream_id = $2 \
             ORDER BY stream_version",
            &[&app.tenant, &format!("backup_schedule-{service}")],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The alert receipts of this service's schedule.
async fn receipts(app: &TestApp, service: &str) -> Vec<String> {
    let key = format!("backup-schedule-{service}");
    events_of(app, &["AlertReceived"])
        .await
        .into_iter()
        .map(|(_, p)| p)
        .filter(|p| p.contains(&key))
        .collect()
}

/// Records a backup of `service` through the work log; its id.
async fn record_backup(app: &TestApp, service: &str) -> String {
    let res = app
        .post(
            "/api/v1/backups",
            &app.token(&[Role::Operator]),
            &json!({ "service_id": service, "what": "orders database", "location": "nas-1:/b" }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let b: Value = res.json().await.unwrap();
    b["id"].as_str().unwrap().to_owned()
}

async fn verify(app: &TestApp, backup: &str, result: &str) {
    let res = app
        .post(
            &format!("/api/v1/backups/{backup}/verify"),
            &app.token(&[Role::Maintainer]),
            &json!({ "result": result, "how": "restored to staging, rows counted" }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_service_without_backups_goes_overdue_and_a_backup_recorded_and_verified_resolves_it() {
    let app = fast_app().await;
    let service = service(&app, "Orders").await;
    let operator = app.token(&[Role::Operator]);
    // Overdue 8 s after the start: 4 s of period, 4 s of grace.
    let res = put(
        &app,
        &operator,
        &service,
        &json!({ "period_s": 4, "verify_within_s": 4, "grace_s": 4 }),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(res.headers()["location"], path(&service).as_str());
    let defined: Value = res.json().await.unwrap();
    assert_eq!(defined["standing"], "met");
    assert_eq!(defined["severity"], "error");
    assert_eq!(defined["category"], "application");
    assert_eq!(defined["version"], 1);
    let fresh = schedule(&app, &service).await;
    assert_eq!(fresh["current"]["standing"], "met", "{fresh}");
    assert!(fresh["current"]["last_performed"].is_null(), "{fresh}");

    let overdue = standing_reached(&app, &service, "overdue").await;
    let went = &overdue["transitions"][0];
    assert_eq!(went["to"], "overdue", "{overdue}");
    assert_eq!(went["deadline"], overdue["current"]["next_due_at"]);
    assert_eq!(overdue["current"]["standing"], "overdue");
    let opened = within_a_minute("the overdue backup opens an incident", || {
        let app = &app;
        async move {
            let e = events_of(app, &["IncidentOpened"]).await;
            (!e.is_empty()).then_some(e)
        }
    })
    .await;
    assert_eq!(opened.len(), 1);
    let received = receipts(&app, &service).await;
    assert_eq!(received.len(), 1, "{received:?}");
    assert!(received[0].contains("opsledger-backup"), "{received:?}");
    assert!(received[0].contains("application"), "{received:?}");
    assert!(received[0].contains("Backup overdue"), "{received:?}");
    let incident: Value = serde_json::from_str(&opened[0].1).unwrap();
    let incident_id = incident["incident_id"].as_str().unwrap().to_owned();

    // A backup recorded and verified through the work log's routes.
    let backup = record_backup(&app, &service).await;
    verify(&app, &backup, "ok").await;
    let met = standing_reached(&app, &service, "met").await;
    assert_eq!(met["transitions"][1]["to"], "met", "{met}");
    let current = within_a_minute("the verified backup is assessed", || {
        let (app, service, backup) = (&app, &service, &backup);
        async move {
            let s = schedule(app, service).await;
            (s["current"]["last_verified"]["backup_id"] == backup.as_str()).then_some(s)
        }
    })
    .await;
    assert_eq!(
        current["current"]["last_performed"]["backup_id"],
        backup.as_str()
    );
    assert!(
        current["current"]["first_unverified"].is_null(),
        "{current}"
    );
    within_a_minute("the schedule's alert resolves", || {
        let app = &app;
        async move { (!events_of(app, &["AlertResolved"]).await.is_empty()).then_some(()) }
    })
    .await;
    // A day's period from now on: nothing more falls due in this test.
    let res = put(
        &app,
        &operator,
        &service,
        &json!({ "period_s": 86_400, "grace_s": 0 }),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let changed: Value = res.json().await.unwrap();
    assert_eq!(changed["verify_within_s"], 86_400, "defaults to the period");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        stream_types(&app, &service).await,
        [
            "BackupScheduleDefined",
            "BackupOverdue",
            "BackupScheduleMet",
            "BackupScheduleChanged"
        ]
    );
    // One receipt, firing; its resolution is the `AlertResolved` above.
    assert_eq!(receipts(&app, &service).await.len(), 1);
    let alerts: Value = app
        .get(
            &format!("/api/v1/alerts?incident_id={incident_id}"),
            &operator,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(alerts["items"].as_array().unwrap().len(), 1, "{alerts}");
}

#[tokio::test]
async fn a_backup_performed_but_never_verified_raises_an_unverified_alert_until_one_passes() {
    let app = fast_app().await;
    let service = service(&app, "Payroll").await;
    // Never overdue in this test; each backup verified within 2 s.
    let res = put(
        &app,
        &app.token(&[Role::Admin]),
        &service,
        &json!({ "period_s": 3_600, "verify_within_s": 2, "grace_s": 0, "severity": "warning" }),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let backup = record_backup(&app, &service).await;
    let unverified = standing_reached(&app, &service, "unverified").await;
    let went = &unverified["transitions"][0];
    assert_eq!(
        went["facts"]["first_unverified"]["backup_id"],
        backup.as_str(),
        "{unverified}"
    );
    assert_eq!(went["deadline"], unverified["current"]["verify_by"]);
    let received = within_a_minute("the unverified backup's alert", || {
        let (app, service) = (&app, &service);
        async move {
            let r = receipts(app, service).await;
            (!r.is_empty()).then_some(r)
        }
    })
    .await;
    assert!(received[0].contains("Backup unverified"), "{received:?}");
    assert!(received[0].contains(&backup), "{received:?}");
    assert!(received[0].contains("warning"), "{received:?}");

    // A failed verification is no verification: still unverified, and
    // nothing more recorded.
    verify(&app, &backup, "failed").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(schedule(&app, &service).await["standing"], "unverified");
    assert_eq!(
        stream_types(&app, &service).await,
        ["BackupScheduleDefined", "BackupUnverified"]
    );
    // Repaired and verified again: met, and the alert resolves.
    verify(&app, &backup, "ok").await;
    standing_reached(&app, &service, "met").await;
    within_a_minute("the schedule's alert resolves", || {
        let app = &app;
        async move { (!events_of(app, &["AlertResolved"]).await.is_empty()).then_some(()) }
    })
    .await;
    assert_eq!(
        stream_types(&app, &service).await,
        [
            "BackupScheduleDefined",
            "BackupUnverified",
            "BackupScheduleMet"
        ]
    );
    let list: Value = app
        .get(
            "/api/v1/backup-schedules?standing=met",
            &app.token(&[Role::Approver]),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"][0]["service_id"], service.as_str(), "{list}");
}

#[tokio::test]
async fn two_instances_on_one_database_record_a_transition_and_send_its_alert_once() {
    let app = fast_app().await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let second = opsledger_server::Application::build_on(&app.config, listener)
        .await
        .expect("a second instance starts");
    tokio::spawn(second.run_until_stopped());
    let operator = app.token(&[Role::Operator]);
    let mut services = Vec::new();
    for name in ["Web", "Mail", "Files", "Wiki"] {
        let s = service(&app, name).await;
        let res = put(
            &app,
            &operator,
            &s,
            &json!({ "period_s": 1, "verify_within_s": 1, "grace_s": 0 }),
        )
        .await;
        assert_eq!(res.status(), StatusCode::CREATED);
        services.push(s);
    }
    for s in &services {
        standing_reached(&app, s, "overdue").await;
    }
    // Both instances check every 100 ms: a second's worth of passes each.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for s in &services {
        assert_eq!(
            stream_types(&app, s).await,
            ["BackupScheduleDefined", "BackupOverdue"],
            "{s}"
        );
        let received = receipts(&app, s).await;
        assert_eq!(received.len(), 1, "{s}: {received:?}");
    }
}

#[tokio::test]
async fn backup_schedule_routes_refuse_bad_input_with_problems_write_nothing_and_enforce_roles() {
    let app = spawn_app().await;
    let service = service(&app, "Ledger").await;
    let operator = app.token(&[Role::Operator]);
    let good = json!({ "period_s": 86_400 });
    let cases: Vec<(&str, Value, StatusCode)> = vec![
        (
            "period under an hour",
            json!({ "period_s": 600 }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "period over 400 days",
            json!({ "period_s": 34_560_001u64 }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "negative period",
            json!({ "period_s": -1 }),
            StatusCode::BAD_REQUEST,
        ),
        (
            "period as text",
            json!({ "period_s": "daily" }),
            StatusCode::BAD_REQUEST,
        ),
        (
            "period over u32",
            json!({ "period_s": 1u64 << 40 }),
            StatusCode::BAD_REQUEST,
        ),
        ("no period", json!({}), StatusCode::BAD_REQUEST),
        (
            "verification within 0",
            json!({ "period_s": 86_400, "verify_within_s": 0 }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "grace over the period",
            json!({ "period_s": 3_600, "grace_s": 3_601 }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "unknown severity",
            json!({ "period_s": 86_400, "severity": "apocalyptic" }),
            StatusCode::BAD_REQUEST,
        ),
        (
            "unknown category",
            json!({ "period_s": 86_400, "category": "backup" }),
            StatusCode::BAD_REQUEST,
        ),
        (
            "unknown field",
            json!({ "period_s": 86_400, "cron": "0 2 * * *" }),
            StatusCode::BAD_REQUEST,
        ),
        ("not an object", json!("daily"), StatusCode::BAD_REQUEST),
        (
            "NUL in a value",
            json!({ "period_s": 86_400, "severity": "error\u{0}" }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ];
    for (name, body, expected) in cases {
        let res = put(&app, &operator, &service, &body).await;
        assert_eq!(res.status(), expected, "{name}");
        assert_eq!(
            res.headers()["content-type"],
            "application/problem+json",
            "{name}"
        );
    }
    let unknown = "00000000-0000-0000-0000-000000000009";
    let res = put(&app, &operator, unknown, &good).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND, "an unknown service");
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let res = put(&app, &operator, "not-a-uuid", &good).await;
    assert!(res.status().is_client_error(), "{}", res.status());
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let res = app
        .http
        .put(app.url(&path(&service)))
        .bearer_auth(&operator)
        .header("content-type", "application/json")
        .body("{\"period_s\": 86400")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST, "truncated JSON");
    // Roles: maintainers record backups but do not set schedules; clients
    // and integrations read none.
    let res = put(&app, &app.token(&[Role::Maintainer]), &service, &good).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    // The service's own client: a client user of it reads no schedule.
    let registered: Value = app
        .get(&format!("/api/v1/services/{service}"), &operator)
        .await
        .json()
        .await
        .unwrap();
    let client = uuid::Uuid::parse_str(registered["client_id"].as_str().unwrap()).unwrap();
    for token in [
        app.token_for(app.tenant, "hanako", &[Role::Client], Some(client)),
        app.token(&[Role::Integration]),
    ] {
        let res = app.get(&path(&service), &token).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
        let res = app.get("/api/v1/backup-schedules", &token).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
    }
    let res = app
        .get(
            "/api/v1/backup-schedules?standing=late",
            &app.token(&[Role::Auditor]),
        )
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let res = app.get(&path(&service), &operator).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND, "none set yet");
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let written: i64 = app
        .db
        .superuser()
        .await
        .query_one(
            "SELECT count(*) FROM events WHERE stream_id LIKE 'backup\\_schedule-%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(written, 0, "no refused request wrote anything");

    // Set, changed with If-Match, a stale If-Match refused; removed twice.
    let res = put(&app, &operator, &service, &good).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let set: Value = res.json().await.unwrap();
    assert_eq!(set["grace_s"], 8_640, "a tenth of the period");
    let url = app.url(&path(&service));
    let res = app
        .http
        .put(&url)
        .bearer_auth(&operator)
        .header("if-match", "\"1\"")
        .json(&json!({ "period_s": 7 * 86_400, "category": "hardware" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let changed: Value = res.json().await.unwrap();
    assert_eq!(
        (changed["version"].as_i64(), &changed["category"]),
        (Some(2), &json!("hardware"))
    );
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
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let delete = || {
        app.http
            .delete(&url)
            .bearer_auth(app.token(&[Role::Admin]))
            .send()
    };
    let res = delete().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let removed: Value = res.json().await.unwrap();
    assert_eq!(removed["removed"], true);
    let res = delete().await.unwrap();
    assert_eq!(res.status(), StatusCode::CONFLICT);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let gone = schedule(&app, &service).await;
    assert!(gone["current"].is_null(), "{gone}");
    // Set again: defined anew.
    let res = put(&app, &operator, &service, &good).await;
    assert_eq!(res.status(), StatusCode::OK);
    let again: Value = res.json().await.unwrap();
    assert_eq!(
        (again["removed"].as_bool(), again["version"].as_i64()),
        (Some(false), Some(4))
    );
    assert_eq!(
        stream_types(&app, &service).await,
        [
            "BackupScheduleDefined",
            "BackupScheduleChanged",
            "BackupScheduleRemoved",
            "BackupScheduleDefined"
        ]
    );
}
