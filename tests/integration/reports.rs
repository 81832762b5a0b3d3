//! Downtime and availability reports (SPEC §6), over real HTTP against the
//! read models a real PostgreSQL keeps.

use chrono::{DateTime, Duration, DurationRound, Utc};
use opsledger_domain::access::Role;
use opsledger_store::projection;
use opsledger_testkit::{spawn_app, TestApp};
use opsledger_tests::eventually;
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

async fn created(app: &TestApp, token: &str, path: &str, body: Value) -> Value {
    let res = app.post(path, token, &body).await;
    let status = res.status();
    let v: Value = res.json().await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{path}: {v}");
    v
}

async fn ok(app: &TestApp, token: &str, path: &str, body: Value) -> Value {
    let res = app.post(path, token, &body).await;
    let status = res.status();
    let v: Value = res.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{path}: {v}");
    v
}

fn q(t: DateTime<Utc>) -> String {
    t.to_rfc3339().replace('+', "%2B")
}

/// The fixture of the scenario: minute `m` after a base instant hours ago.
struct Clock(DateTime<Utc>);

impl Clock {
    fn at(&self, m: i64) -> DateTime<Utc> {
        self.0 + Duration::minutes(m)
    }
}

async fn dump(app: &TestApp) -> Vec<String> {
    let su = app.db.superuser().await;
    let mut rows = vec![];
    for table in ["proj_impacts", "proj_impact_segments"] {
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

/// Two overlapping incidents, one partly inside an announced window, a
/// degraded one still open, and levels corrected after the fact: the exact
/// minutes of each bucket (worst level wins, overlaps once, planned only
/// where a window covers), and the downtime read model rebuilt equals the
/// one built as the events came.
#[tokio::test]
async fn downtime_counts_the_worst_level_once_and_planned_time_apart() {
    let app = spawn_app().await;
    let admin = app.token(&[Role::Admin, Role::Maintainer, Role::Approver]);
    let operator = app.token(&[Role::Operator]);
    let client = created(
        &app,
        &admin,
        "/api/v1/clients",
        json!({ "name": "Client A" }),
    )
    .await;
    let client_id = client["id"].as_str().unwrap().to_owned();
    let service = created(
        &app,
        &admin,
        "/api/v1/services",
        json!({
            "client_id": client_id, "name": "shop", "sla_target_pct": 99.9, "notice_period_h": 1
        }),
    )
    .await;
    let sid = service["id"].as_str().unwrap().to_owned();
    let clock = Clock(
        (Utc::now() - Duration::minutes(90))
            .duration_trunc(Duration::minutes(1))
            .unwrap(),
    );
    // The window serves an emergency change, so it may be announced late.
    let change = created(
        &app,
        &admin,
        "/api/v1/changes",
        json!({
            "kind": "emergency", "category": "fix", "title": "hotfix", "risk": "high",
            "impact": "restarts", "service_ids": [sid]
        }),
    )
    .await;
    let window = created(
        &app,
        &admin,
        "/api/v1/maintenance-windows",
        json!({
            "title": "hotfix", "service_ids": [sid], "start": clock.at(60), "end": clock.at(120),
            "change_id": change["id"]
        }),
    )
    .await;
    let wid = window["id"].as_str().unwrap().to_owned();
    let announced = ok(
        &app,
        &admin,
        &format!("/api/v1/maintenance-windows/{wid}/announce"),
        json!({}),
    )
    .await;
    assert_eq!(announced["late"], true, "{announced}");
    // The window is in force now (minute 90): from 60 to 120.
    // A: an outage from 10, partial from 30 (recorded later), over at 75.
    let a = created(&app, &operator, "/api/v1/incidents", json!({
        "title": "checkout down", "service_id": sid, "severity": "critical", "impact_start": clock.at(10)
    }))
    .await;
    assert_eq!(a["impact_level"], "outage");
    let a = a["id"].as_str().unwrap().to_owned();
    ok(
        &app,
        &operator,
        &format!("/api/v1/incidents/{a}/mitigate"),
        json!({ "impact_end": clock.at(75) }),
    )
    .await;
    ok(&app, &operator, &format!("/api/v1/incidents/{a}/impact-level"),
        json!({ "level": "partial", "at": clock.at(30), "reason": "only checkout after the failover" })).await;
    // B: degraded from 5 (mapped from warning), an outage from 70, over at 85.
    let b = created(&app, &operator, "/api/v1/incidents", json!({
        "title": "slow search", "service_id": sid, "severity": "warning", "impact_start": clock.at(5)
    }))
    .await;
    assert_eq!(b["impact_level"], "degraded");
    let b = b["id"].as_str().unwrap().to_owned();
    ok(
        &app,
        &operator,
        &format!("/api/v1/incidents/{b}/impact-level"),
        json!({ "level": "outage", "at": clock.at(70) }),
    )
    .await;
    ok(
        &app,
        &operator,
        &format!("/api/v1/incidents/{b}/mitigate"),
        json!({ "impact_end": clock.at(85) }),
    )
    .await;
    // C: degraded from 80, still open.
    let c = created(&app, &operator, "/api/v1/incidents", json!({
        "title": "images slow", "service_id": sid, "severity": "info", "impact_start": clock.at(80),
        "impact_level": "degraded"
    }))
    .await;
    let c = c["id"].as_str().unwrap().to_owned();
    // An incident of no service counts for none.
    created(
        &app,
        &operator,
        "/api/v1/incidents",
        json!({
            "title": "office wifi", "severity": "critical", "impact_start": clock.at(0)
        }),
    )
    .await;

    let url = format!(
        "/api/v1/reports/downtime?service={sid}&from={}&to={}&drilldown=true",
        q(clock.at(0)),
        q(clock.at(88))
    );
    let report = eventually("the downtime read model has every impact", || async {
        let v: Value = app.get(&url, &operator).await.json().await.unwrap();
        let n = v["services"][0]["intervals"].as_array().map_or(0, Vec::len);
        (n == 5).then_some(v)
    })
    .await;
    assert_eq!(report["definition"]["name"], "downtime/v1");
    let s = &report["services"][0];
    assert_eq!(s["service_id"], sid.as_str());
    assert_eq!(s["period_minutes"], 88.0);
    // 5..10 B degraded; 10..30 A outage; 30..60 A partial; in the window
    // (60..): 60..70 A partial, 70..85 B outage, 85..88 C degraded.
    assert_eq!(
        s["minutes"],
        json!({
            "outage": { "unplanned": 20.0, "planned": 15.0 },
            "partial": { "unplanned": 30.0, "planned": 10.0 },
            "degraded": { "unplanned": 5.0, "planned": 3.0 },
        }),
        "{report}"
    );
    assert_eq!(s["weighted_unplanned_minutes"], 20.0 + 0.3 * 30.0);
    assert_eq!(
        s["planned"],
        json!([{ "window_id": wid, "start": clock.at(60), "end": clock.at(88) }])
    );
    let intervals: Vec<(String, String, Value, Value)> = s["intervals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["incident_id"].as_str().unwrap().to_owned(),
                i["level"].as_str().unwrap().to_owned(),
                i["start"].clone(),
                i["end"].clone(),
            )
        })
        .collect();
    let at = |m| json!(clock.at(m));
    for expected in [
        (a.clone(), "outage", at(10), at(30)),
        (a.clone(), "partial", at(30), at(75)),
        (b.clone(), "degraded", at(5), at(70)),
        (b.clone(), "outage", at(70), at(85)),
        (c.clone(), "degraded", at(80), Value::Null),
    ] {
        let expected = (expected.0, expected.1.to_owned(), expected.2, expected.3);
        assert!(
            intervals.contains(&expected),
            "{expected:?} in {intervals:?}"
        );
    }
    // Drill-down: the events behind each incident's intervals.
    let a_events: Vec<&str> = s["events"][&a]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        a_events,
        ["IncidentOpened", "IncidentMitigated", "ImpactLevelChanged"]
    );
    // A period that cuts the impacts; and one the open impact reaches now in.
    let cut = format!(
        "/api/v1/reports/downtime?service={sid}&from={}&to={}",
        q(clock.at(25)),
        q(clock.at(65))
    );
    let v: Value = app.get(&cut, &operator).await.json().await.unwrap();
    assert_eq!(
        v["services"][0]["minutes"],
        json!({
            "outage": { "unplanned": 5.0, "planned": 0.0 },
            "partial": { "unplanned": 30.0, "planned": 5.0 },
            "degraded": { "unplanned": 0.0, "planned": 0.0 },
        })
    );
    // An open impact counts up to now when the period reaches past it.
    assert!(v["services"][0].get("events").is_none());
    let later = format!(
        "/api/v1/reports/downtime?client={client_id}&from={}&to={}",
        q(clock.at(85)),
        q(clock.at(24 * 60))
    );
    let v: Value = app.get(&later, &operator).await.json().await.unwrap();
    let minutes = &v["services"][0]["minutes"]["degraded"];
    let (planned, elapsed) = (
        minutes["planned"].as_f64().unwrap(),
        (Utc::now() - clock.at(85)).num_seconds() as f64 / 60.0,
    );
    // From 85 to now, all inside the window.
    assert!(
        planned > 4.9 && planned <= elapsed,
        "{planned} of {elapsed}"
    );
    assert_eq!(minutes["unplanned"], 0.0);

    // The read model rebuilt from the log is the one built as events came.
    let before = dump(&app).await;
    projection::rebuild(
        &app.app_state.pool,
        &opsledger_store::downtime::DowntimeProjection,
    )
    .await
    .unwrap();
    assert_eq!(dump(&app).await, before);
}

/// Clients read their own services' downtime and no one else's; a
/// malformed period is a problem.
#[tokio::test]
async fn the_downtime_report_keeps_clients_apart_and_refuses_a_malformed_period() {
    let app = spawn_app().await;
    let admin = app.token(&[Role::Admin]);
    let mut clients = vec![];
    for name in ["A", "B"] {
        let client = created(&app, &admin, "/api/v1/clients", json!({ "name": name })).await;
        let cid: Uuid = client["id"].as_str().unwrap().parse().unwrap();
        let service = created(&app, &admin, "/api/v1/services", json!({
            "client_id": cid, "name": format!("svc {name}"), "sla_target_pct": 99.0, "notice_period_h": 1
        }))
        .await;
        clients.push((cid, service["id"].as_str().unwrap().to_owned()));
    }
    let (a, a_service) = clients[0].clone();
    let (b, b_service) = clients[1].clone();
    let a_user = app.token_for(app.tenant, "a-user", &[Role::Client], Some(a));
    let (from, to) = (q(Utc::now() - Duration::days(30)), q(Utc::now()));
    let path = |what: &str| format!("/api/v1/reports/downtime?{what}&from={from}&to={to}");
    eventually("the services are in the directory", || async {
        (app.get(&path(&format!("client={b}")), &admin)
            .await
            .status()
            == StatusCode::OK
            && app
                .get(&path(&format!("service={a_service}")), &a_user)
                .await
                .status()
                == StatusCode::OK)
            .then_some(())
    })
    .await;
    let v: Value = app
        .get(&path(&format!("client={a}")), &a_user)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["services"].as_array().unwrap().len(), 1);
    for what in [format!("client={b}"), format!("service={b_service}")] {
        let res = app.get(&path(&what), &a_user).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{what}");
    }
    let other_tenant = app.register_tenant("Other").await;
    let stranger = app.token_for(other_tenant, "s", &[Role::Admin], None);
    let res = app.get(&path(&format!("client={a}")), &stranger).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = app
        .get(
            &path(&format!("client={a}")),
            &app.token(&[Role::Integration]),
        )
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    for bad in [
        format!("/api/v1/reports/downtime?client={a}&from=yesterday&to={to}"),
        format!("/api/v1/reports/downtime?client={a}&from={to}&to={from}"),
        format!("/api/v1/reports/downtime?client={a}&service={a_service}&from={from}&to={to}"),
        format!("/api/v1/reports/downtime?from={from}&to={to}"),
        format!("/api/v1/reports/downtime?client={a}&to={to}"),
        format!(
            "/api/v1/reports/downtime?client={a}&from={}&to={to}",
            q(Utc::now() - Duration::days(500))
        ),
    ] {
        let res = app.get(&bad, &admin).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(res.headers()["content-type"], "application/problem+json");
    }
}
