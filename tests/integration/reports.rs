//! Downtime and availability reports (SPEC §6), over real HTTP against the
//! read models a real PostgreSQL keeps.

use chrono::{DateTime, Duration, DurationRound, Utc};
use opsledger_domain::access::Role;
use opsledger_domain::period::Month;
use opsledger_store::projection;
use opsledger_testkit::{spawn_app, TestApp};
use opsledger_tests::eventually;
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

pub async fn created(app: &TestApp, token: &str, path: &str, body: Value) -> Value {
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

    // The metrics of that period, and of the day: C acknowledged, B
    // triaged as noise, A as actionable.
    ok(
        &app,
        &operator,
        &format!("/api/v1/incidents/{a}/triage"),
        json!({ "outcome": "actionable" }),
    )
    .await;
    ok(
        &app,
        &operator,
        &format!("/api/v1/incidents/{b}/triage"),
        json!({ "outcome": "noise" }),
    )
    .await;
    ok(
        &app,
        &operator,
        &format!("/api/v1/incidents/{c}/acknowledge"),
        json!({}),
    )
    .await;
    let metrics_url = |to: i64| {
        format!(
            "/api/v1/reports/metrics?service={sid}&from={}&to={}",
            q(clock.at(0)),
            q(clock.at(to))
        )
    };
    let m: Value = app
        .get(&metrics_url(88), &operator)
        .await
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = m["definitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"availability/v1") && names.contains(&"mtbf/v1"),
        "{names:?}"
    );
    let a88 = &m["services"][0]["metrics"]["availability"];
    assert_eq!(a88["weighted_unplanned_minutes"], 29.0);
    assert_eq!(a88["planned_minutes"], 28.0);
    assert_eq!(a88["calendar"].as_f64().unwrap(), 1.0 - 29.0 / 88.0);
    assert_eq!(
        a88["excluding_planned"].as_f64().unwrap(),
        1.0 - 29.0 / 60.0
    );
    assert_eq!(
        a88["sla"], a88["excluding_planned"],
        "no SLA hours: every hour"
    );
    let day = eventually("the incidents read model has the triage", || async {
        let v: Value = app
            .get(&metrics_url(24 * 60), &operator)
            .await
            .json()
            .await
            .unwrap();
        let m = &v["services"][0]["metrics"];
        (m["noise_ratio"]["denominator"] == 2 && m["mtta"]["incidents"] != json!([])).then_some(v)
    })
    .await;
    let m = &day["services"][0]["metrics"];
    assert_eq!(m["availability"]["period_minutes"], 1440.0);
    assert_eq!(m["availability"]["planned_minutes"], 60.0);
    assert_eq!(
        m["availability"]["excluding_planned"].as_f64().unwrap(),
        1.0 - 29.0 / 1380.0
    );
    assert_eq!(m["sla"]["met"], false, "{m}");
    assert!((m["error_budget"]["total_minutes"].as_f64().unwrap() - 1.38).abs() < 1e-9);
    assert_eq!(m["error_budget"]["used_minutes"], 29.0);
    assert_eq!(m["mttr"]["minutes"], (65.0 + 80.0) / 2.0);
    assert_eq!(m["mtbf"]["incidents"], json!([a]), "B's outage was planned");
    assert_eq!(m["mtbf"]["minutes"], 1440.0 - 20.0);
    assert_eq!(m["mtta"]["incidents"], json!([c]));
    assert_eq!(m["noise_ratio"]["ratio"], 0.5);
    assert_eq!(
        m["incidents"]["by_severity"],
        json!({ "critical": 1, "warning": 1, "info": 1 })
    );
    assert_eq!(
        m["change_failure_rate"]["ratio"],
        Value::Null,
        "no change carried out"
    );
    assert_eq!(day["noise_by_source"]["manual"]["ratio"], 0.5);

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
    // Naming neither: every service the caller may see.
    let everything = format!("/api/v1/reports/downtime?from={from}&to={to}");
    eventually("both services are in the directory", || async {
        let all: Value = app.get(&everything, &admin).await.json().await.unwrap();
        (all["services"].as_array()?.len() == 2).then_some(())
    })
    .await;
    let own: Value = app.get(&everything, &a_user).await.json().await.unwrap();
    let ids: Vec<&str> = own["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["service_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [a_service.as_str()]);
    for bad in [
        format!("/api/v1/reports/downtime?client={a}&from=yesterday&to={to}"),
        format!("/api/v1/reports/downtime?client={a}&from={to}&to={from}"),
        format!("/api/v1/reports/downtime?client={a}&service={a_service}&from={from}&to={to}"),
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

/// A report over many services is written in parts on several threads
/// (from 50 services on): it must say what the reports of each service say,
/// in the same order, with or without drill-down.
#[tokio::test]
async fn a_report_over_many_services_says_what_each_services_report_says() {
    let app = spawn_app().await;
    let admin = app.token(&[Role::Admin]);
    let operator = app.token(&[Role::Operator]);
    let client = created(&app, &admin, "/api/v1/clients", json!({ "name": "Many" })).await;
    let cid = client["id"].as_str().unwrap().to_owned();
    let mut services = vec![];
    for i in 0..61 {
        let s = created(&app, &admin, "/api/v1/services", json!({
            "client_id": cid, "name": format!("svc {i:02}"), "sla_target_pct": 99.0, "notice_period_h": 1
        }))
        .await;
        services.push(s["id"].as_str().unwrap().to_owned());
    }
    // Impact on the first, a middle and the last service, one still open.
    let start = (Utc::now() - Duration::hours(3))
        .duration_trunc(Duration::minutes(1))
        .unwrap();
    for (n, i) in [0, 30, 60].into_iter().enumerate() {
        let incident = created(
            &app,
            &operator,
            "/api/v1/incidents",
            json!({
                "title": format!("down {i}"), "service_id": services[i], "severity": "critical",
                "impact_start": start + Duration::minutes(10 * n as i64)
            }),
        )
        .await;
        if i != 60 {
            ok(
                &app,
                &operator,
                &format!(
                    "/api/v1/incidents/{}/mitigate",
                    incident["id"].as_str().unwrap()
                ),
                json!({ "impact_end": start + Duration::minutes(45) }),
            )
            .await;
        }
    }
    let (from, to) = (q(start - Duration::days(1)), q(start + Duration::hours(1)));
    for drilldown in [false, true] {
        let all = format!(
            "/api/v1/reports/downtime?client={cid}&from={from}&to={to}&drilldown={drilldown}"
        );
        let report = eventually("every service and impact is in the read models", || async {
            let v: Value = app.get(&all, &admin).await.json().await.ok()?;
            let listed = v["services"].as_array()?;
            let with_impact = listed
                .iter()
                .filter(|s| s["intervals"].as_array().is_some_and(|i| !i.is_empty()))
                .count();
            (listed.len() == 61 && with_impact == 3).then_some(v)
        })
        .await;
        assert_eq!(report["definition"]["name"], "downtime/v1");
        let listed = report["services"].as_array().unwrap();
        let mut expected: Vec<Value> = vec![];
        for id in &services {
            let one: Value = app
                .get(
                    &format!("/api/v1/reports/downtime?service={id}&from={from}&to={to}&drilldown={drilldown}"),
                    &admin,
                )
                .await
                .json()
                .await
                .unwrap();
            expected.extend(one["services"].as_array().unwrap().iter().cloned());
        }
        // Services come by name, as they were created here.
        let mut got = listed.clone();
        // The open impact counts up to each request's now: compare the rest.
        let open = |s: &mut Value| {
            if s["service_id"] == services[60].as_str() {
                s["minutes"] = Value::Null;
                s["weighted_unplanned_minutes"] = Value::Null;
            }
        };
        got.iter_mut().for_each(open);
        expected.iter_mut().for_each(open);
        assert_eq!(got, expected);
        assert_eq!(
            listed[0]["events"].is_object(),
            drilldown,
            "drill-down only when asked: {}",
            listed[0]
        );
    }
}

/// Local wall-clock time of a day of `month` in `tz`, as an instant.
pub fn local(tz: chrono_tz::Tz, month: Month, day: u32, h: u32, m: u32) -> DateTime<Utc> {
    use chrono::TimeZone;
    tz.with_ymd_and_hms(month.year, month.month, day, h, m, 0)
        .single()
        .unwrap()
        .with_timezone(&Utc)
}

/// The monthly report counts the client's calendar month in its zone (a
/// Berlin March has 743 hours), lists what was corrected after the month
/// ended as restatements, and says the same in JSON, CSV and HTML.
#[tokio::test]
async fn the_monthly_report_follows_the_clients_zone_and_lists_restatements() {
    let app = spawn_app().await;
    let admin = app.token(&[Role::Admin, Role::Maintainer]);
    let client = created(
        &app,
        &admin,
        "/api/v1/clients",
        json!({
            "name": "Kunde & Söhne <GmbH>", "locale": "ja", "time_zone": "Europe/Berlin"
        }),
    )
    .await;
    assert_eq!(client["time_zone"], "Europe/Berlin");
    let cid = client["id"].as_str().unwrap().to_owned();
    let service = created(
        &app,
        &admin,
        "/api/v1/services",
        json!({
            "client_id": cid, "name": "Shop <main>", "sla_target_pct": 99.5, "notice_period_h": 1
        }),
    )
    .await;
    let sid = service["id"].as_str().unwrap().to_owned();
    let berlin: chrono_tz::Tz = "Europe/Berlin".parse().unwrap();
    let month = Month::of(Utc::now(), berlin).previous();
    // Last month, day 3, 10:00–11:00 Berlin time: an outage, found later to
    // have been partial from 10:30 (recorded now: after the month ended).
    let x = created(
        &app,
        &admin,
        "/api/v1/incidents",
        json!({
            "title": "Checkout 500s", "service_id": sid, "severity": "critical",
            "impact_start": local(berlin, month, 3, 10, 0)
        }),
    )
    .await;
    let x = x["id"].as_str().unwrap().to_owned();
    ok(
        &app,
        &admin,
        &format!("/api/v1/incidents/{x}/mitigate"),
        json!({ "impact_end": local(berlin, month, 3, 11, 0) }),
    )
    .await;
    ok(&app, &admin, &format!("/api/v1/incidents/{x}/impact-level"),
        json!({ "level": "partial", "at": local(berlin, month, 3, 10, 30), "reason": "only EU shoppers" })).await;
    let url = format!("/api/v1/reports/monthly?client={cid}&month={month}");
    let report = eventually("the month's downtime is in the read model", || async {
        let v: Value = app.get(&url, &admin).await.json().await.unwrap();
        (v["services"][0]["downtime"]["partial"]["unplanned"] == 30.0).then_some(v)
    })
    .await;
    let (from, to) = month.span(berlin);
    let hours = (to - from).num_hours() as f64;
    assert_eq!(report["hours"], hours);
    assert_eq!(report["client"]["time_zone"], "Europe/Berlin");
    assert_eq!(report["from"], json!(from));
    let s = &report["services"][0];
    assert_eq!(s["downtime"]["outage"]["unplanned"], 30.0);
    let availability = s["metrics"]["availability"]["calendar"].as_f64().unwrap();
    assert_eq!(availability, 1.0 - (30.0 + 0.3 * 30.0) / (hours * 60.0));
    let day3 = s["daily"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["date"] == format!("{month}-03"))
        .unwrap();
    assert_eq!(
        (day3["outage"].as_f64(), day3["partial"].as_f64()),
        (Some(30.0), Some(30.0))
    );
    assert_eq!(s["daily"].as_array().unwrap().len(), month.days().count());
    let incident = &s["incidents"][0];
    assert_eq!(incident["id"], x.as_str());
    assert_eq!(
        (
            incident["outage_minutes"].as_f64(),
            incident["partial_minutes"].as_f64()
        ),
        (Some(30.0), Some(30.0))
    );
    let restated: Vec<&str> = report["restatements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["type"].as_str().unwrap())
        .collect();
    assert!(restated.contains(&"ImpactLevelChanged"), "{restated:?}");
    // A March in Berlin has 743 hours, in Tokyo (no DST) 744.
    let march: Value = app
        .get(
            &format!("/api/v1/reports/monthly?client={cid}&month=2027-03"),
            &admin,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(march["hours"], 743.0);

    // The CSV, read back with a CSV parser, gives the JSON's numbers.
    let res = app
        .http
        .get(app.url(&url))
        .bearer_auth(&admin)
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let text = res.text().await.unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let find = |section: &str, subject: &str, field: &str| {
        rows.iter()
            .find(|r| &r[0] == section && &r[3] == subject && &r[4] == field)
            .unwrap_or_else(|| panic!("{section} {subject} {field} in {text}"))[5]
            .to_owned()
    };
    assert_eq!(
        find("service", "", "availability_calendar")
            .parse::<f64>()
            .unwrap(),
        availability
    );
    assert_eq!(
        find("downtime", "outage", "unplanned_minutes")
            .parse::<f64>()
            .unwrap(),
        30.0
    );
    assert_eq!(find("report", "", "hours").parse::<f64>().unwrap(), hours);
    assert_eq!(find("incident", &x, "title"), "Checkout 500s");
    let service_row = rows.iter().find(|r| &r[0] == "service").unwrap();
    assert_eq!(
        (&service_row[1], &service_row[2]),
        (sid.as_str(), "Shop <main>")
    );

    // The HTML page: escaped text, no script, the figure on it.
    let res = app
        .http
        .get(app.url(&format!("{url}&format=html")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = res.text().await.unwrap();
    assert!(html.contains("Shop &lt;main&gt;"), "escaped");
    assert!(!html.contains("<script"), "no script");
    assert!(
        html.contains("月次サービスレポート"),
        "in the client's language"
    );
    assert!(
        html.contains(&format!("{:.3} %", availability * 100.0)),
        "{html}"
    );

    // Clients read their own; another client's is 404; malformed is 400.
    let own = app.token_for(app.tenant, "c", &[Role::Client], Some(cid.parse().unwrap()));
    assert_eq!(app.get(&url, &own).await.status(), StatusCode::OK);
    let other = created(&app, &admin, "/api/v1/clients", json!({ "name": "Other" })).await;
    let theirs = app.token_for(
        app.tenant,
        "o",
        &[Role::Client],
        Some(other["id"].as_str().unwrap().parse().unwrap()),
    );
    assert_eq!(app.get(&url, &theirs).await.status(), StatusCode::NOT_FOUND);
    for bad in [
        format!("/api/v1/reports/monthly?client={cid}&month=2027-13"),
        format!("/api/v1/reports/monthly?client={cid}&month=March"),
        format!("/api/v1/reports/monthly?client={cid}"),
        format!("{url}&format=xml"),
    ] {
        let res = app.get(&bad, &admin).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(res.headers()["content-type"], "application/problem+json");
    }
}

/// A service that opts in mitigates an incident when every alert of it has
/// resolved: the impact ends at the last resolution, and the event says
/// why. A service that does not leaves it to people.
#[tokio::test]
async fn an_incident_whose_alerts_all_resolved_mitigates_itself_where_its_service_opts_in() {
    let app = spawn_app().await;
    let admin = app.token(&[Role::Admin]);
    let monitoring = app.token(&[Role::Integration]);
    let client = created(&app, &admin, "/api/v1/clients", json!({ "name": "C" })).await;
    let mut incidents = vec![];
    for (name, auto) in [("auto", true), ("manual", false)] {
        created(
            &app,
            &admin,
            "/api/v1/services",
            json!({
                "client_id": client["id"], "name": name, "sla_target_pct": 99.0,
                "notice_period_h": 1, "auto_mitigate": auto
            }),
        )
        .await;
        let began =
            Utc::now().duration_trunc(Duration::seconds(1)).unwrap() - Duration::minutes(10);
        let alert = |key: &str, status: &str, ends_at: Option<DateTime<Utc>>| {
            json!({
                "source": "prometheus", "dedup_key": format!("{name}-{key}"), "group_key": format!("{name}-g"),
                "summary": "errors", "severity": "critical", "service": name, "status": status,
                "starts_at": began, "ends_at": ends_at
            })
        };
        let mut opened = None;
        for key in ["a", "b"] {
            let v: Value = eventually("the service is known to ingestion", || async {
                let res = app
                    .post("/api/v1/alerts", &monitoring, &alert(key, "firing", None))
                    .await;
                let v: Value = res.json().await.unwrap();
                v["incident_id"].is_string().then_some(v)
            })
            .await;
            opened.get_or_insert(v["incident_id"].as_str().unwrap().to_owned());
        }
        let incident = opened.unwrap();
        let first_end =
            Utc::now().duration_trunc(Duration::seconds(1)).unwrap() - Duration::minutes(3);
        let last_end = first_end + Duration::minutes(1);
        app.post(
            "/api/v1/alerts",
            &monitoring,
            &alert("a", "resolved", Some(first_end)),
        )
        .await;
        let still: Value = app
            .get(&format!("/api/v1/incidents/{incident}"), &admin)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(
            still["status"], "triggered",
            "{name}: one alert still fires"
        );
        app.post(
            "/api/v1/alerts",
            &monitoring,
            &alert("b", "resolved", Some(last_end)),
        )
        .await;
        incidents.push((name, incident, last_end, auto));
    }
    for (name, incident, last_end, auto) in incidents {
        let now: Value = app
            .get(&format!("/api/v1/incidents/{incident}"), &admin)
            .await
            .json()
            .await
            .unwrap();
        if auto {
            assert_eq!(now["status"], "mitigated", "{name}: {now}");
            assert_eq!(now["impact_end"], json!(last_end), "{name}");
            let timeline: Value = app
                .get(&format!("/api/v1/incidents/{incident}/timeline"), &admin)
                .await
                .json()
                .await
                .unwrap();
            let mitigated = timeline["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["type"] == "IncidentMitigated")
                .unwrap_or_else(|| panic!("{timeline}"));
            assert_eq!(mitigated["data"]["cause"], "all_alerts_resolved");
            assert_eq!(mitigated["actor"], "system:auto-mitigation");
        } else {
            assert_eq!(now["status"], "triggered", "{name}: {now}");
        }
    }
}

/// On the first days of a month in the client's zone, each contact
/// subscribed to the monthly report gets last month's report by mail,
/// once, whatever the passes and instances: a plain-text summary with the
/// HTML page as its alternative, in the ledger like any notification.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_monthly_report_is_mailed_once_per_contact_and_month() {
    use opsledger_testkit::{spawn_app_with, SmtpSink};
    let mut sink = SmtpSink::start().await;
    let smtp = opsledger_server::mail::SmtpConfig {
        host: "127.0.0.1".into(),
        port: sink.port(),
        tls: opsledger_server::mail::TlsMode::None,
        username: None,
        password: None,
        from: "opsledger <noreply@opsledger.test>".into(),
        timeout: std::time::Duration::from_secs(5),
        backoff: opsledger_domain::notification::Backoff {
            first: chrono::Duration::milliseconds(200),
            max: chrono::Duration::seconds(1),
            attempts_max: 10,
        },
    };
    let app = spawn_app_with(|c| {
        c.smtp = Some(smtp);
        c.timer_interval = std::time::Duration::from_millis(100);
        // The test runs the passes itself, at the instants it chooses.
        c.monthly_interval = std::time::Duration::from_secs(24 * 3600);
    })
    .await;
    let admin = app.token(&[Role::Admin]);
    let client = created(
        &app,
        &admin,
        "/api/v1/clients",
        json!({
            "name": "株式会社サンプル", "locale": "ja", "time_zone": "Asia/Tokyo"
        }),
    )
    .await;
    let cid = client["id"].as_str().unwrap().to_owned();
    let mut services = vec![];
    for name in ["受注サイト", "決済API"] {
        let s = created(
            &app,
            &admin,
            "/api/v1/services",
            json!({
                "client_id": cid, "name": name, "sla_target_pct": 99.9, "notice_period_h": 1
            }),
        )
        .await;
        services.push(s["id"].as_str().unwrap().to_owned());
    }
    // One contact subscribed on both services (one mail), another on one,
    // in English; a third wants incidents only.
    for (service, email, locale, kinds) in [
        (
            &services[0],
            "hanako@example.jp",
            "ja",
            json!(["monthly_report", "incident_opened"]),
        ),
        (
            &services[1],
            "hanako@example.jp",
            "ja",
            json!(["monthly_report"]),
        ),
        (
            &services[1],
            "ops@example.com",
            "en",
            json!(["monthly_report"]),
        ),
        (
            &services[1],
            "pager@example.com",
            "en",
            json!(["incident_opened"]),
        ),
    ] {
        created(
            &app,
            &admin,
            "/api/v1/subscriptions",
            json!({
                "service_id": service, "name": email, "email": email, "locale": locale,
                "kinds": kinds, "min_severity": "info"
            }),
        )
        .await;
    }
    let tokyo: chrono_tz::Tz = "Asia/Tokyo".parse().unwrap();
    let this_month = Month::of(Utc::now(), tokyo);
    let first = Month::local_instant_of(tokyo, this_month.next().first_day()) + Duration::hours(1);
    // Not on the 4th, nor in the middle of a month.
    let late = first + Duration::days(3);
    let state = &app.app_state;
    eventually("the subscriptions are in the roster", || async {
        (opsledger_store::downtime::monthly_subscribers(&state.pool)
            .await
            .unwrap()
            .len()
            == 2)
            .then_some(())
    })
    .await;
    assert_eq!(
        opsledger_app::reports::mail_monthly_due(state.ledger(), late)
            .await
            .unwrap(),
        0
    );
    // Two instances' passes on the first of next month, at once, then again.
    let (a, b) = tokio::join!(
        opsledger_app::reports::mail_monthly_due(state.ledger(), first),
        opsledger_app::reports::mail_monthly_due(state.ledger(), first)
    );
    let again =
        opsledger_app::reports::mail_monthly_due(state.ledger(), first + Duration::hours(5))
            .await
            .unwrap();
    let requested: i64 = app
        .db
        .superuser()
        .await
        .query_one(
            "SELECT count(*) FROM events WHERE event_type = 'NotificationRequested' \
               AND payload->>'kind' = 'monthly_report'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(requested, 2, "one per contact: {a:?} {b:?} {again}");
    let mails = eventually("both reports arrive", || async {
        let m = sink.messages();
        (m.len() == 2).then_some(m)
    })
    .await;
    let mut to: Vec<String> = mails.iter().map(|m| m.rcpt_to.join(",")).collect();
    to.sort();
    assert_eq!(to, ["hanako@example.jp", "ops@example.com"]);
    for m in &mails {
        let text = m.text();
        assert!(text.contains("multipart/alternative"), "{text}");
        assert!(
            text.contains("text/plain") && text.contains("text/html"),
            "{text}"
        );
    }
    let ledger = eventually("the ledger says both were sent", || async {
        let v: Value = app
            .get("/api/v1/notifications?limit=50", &admin)
            .await
            .json()
            .await
            .unwrap();
        let sent: Vec<Value> = v["items"]
            .as_array()?
            .iter()
            .filter(|n| n["kind"] == "monthly_report" && n["status"] == "sent")
            .cloned()
            .collect();
        (sent.len() == 2).then_some(sent)
    })
    .await;
    let subjects: Vec<&str> = ledger
        .iter()
        .map(|n| n["subject"].as_str().unwrap())
        .collect();
    let month = this_month.to_string();
    assert!(
        subjects
            .iter()
            .any(|s| s.contains("月次サービスレポート") && s.contains(&month)),
        "{subjects:?}"
    );
    assert!(
        subjects
            .iter()
            .any(|s| s.contains("Monthly service report") && s.contains(&month)),
        "{subjects:?}"
    );
    sink.stop().await;
}

/// A service whose SLA commits to business hours in the client's zone:
/// the SLA's availability counts only those hours, the calendar one all.
#[tokio::test]
async fn the_sla_counts_only_the_hours_it_commits_to_in_the_clients_zone() {
    use chrono::{Datelike, TimeZone, Weekday};
    let app = spawn_app().await;
    let admin = app.token(&[Role::Admin]);
    let client = created(
        &app,
        &admin,
        "/api/v1/clients",
        json!({ "name": "C", "time_zone": "Asia/Tokyo" }),
    )
    .await;
    let service = created(&app, &admin, "/api/v1/services", json!({
        "client_id": client["id"], "name": "office", "sla_target_pct": 99.0, "notice_period_h": 1,
        "sla_hours": { "days": ["mon", "tue", "wed", "thu", "fri"], "from": "09:00", "to": "18:00" }
    }))
    .await;
    assert_eq!(service["sla_hours"]["from"], "09:00");
    let sid = service["id"].as_str().unwrap().to_owned();
    let tokyo: chrono_tz::Tz = "Asia/Tokyo".parse().unwrap();
    // The last weekday before today, in Tokyo.
    let mut day = Utc::now()
        .with_timezone(&tokyo)
        .date_naive()
        .pred_opt()
        .unwrap();
    while matches!(day.weekday(), Weekday::Sat | Weekday::Sun) {
        day = day.pred_opt().unwrap();
    }
    let at = |h: u32| {
        tokyo
            .from_local_datetime(&day.and_hms_opt(h, 0, 0).unwrap())
            .single()
            .unwrap()
            .with_timezone(&Utc)
    };
    for (start, end) in [(10, 11), (22, 23)] {
        let i = created(&app, &admin, "/api/v1/incidents", json!({
            "title": "down", "service_id": sid, "severity": "critical", "impact_start": at(start)
        }))
        .await;
        ok(
            &app,
            &admin,
            &format!("/api/v1/incidents/{}/mitigate", i["id"].as_str().unwrap()),
            json!({ "impact_end": at(end) }),
        )
        .await;
    }
    let url = format!(
        "/api/v1/reports/metrics?service={sid}&from={}&to={}",
        q(at(0)),
        q(at(0) + Duration::days(1))
    );
    let m = eventually("both outages are over in the read model", || async {
        let v: Value = app.get(&url, &admin).await.json().await.unwrap();
        let a = v["services"][0]["metrics"]["availability"].clone();
        (a["weighted_unplanned_minutes"] == 120.0).then_some(v)
    })
    .await;
    let a = &m["services"][0]["metrics"]["availability"];
    assert_eq!(m["services"][0]["time_zone"], "Asia/Tokyo");
    assert_eq!(a["committed_minutes"], 540.0);
    assert_eq!(a["committed_weighted_unplanned_minutes"], 60.0);
    assert_eq!(a["sla"].as_f64().unwrap(), 1.0 - 60.0 / 540.0);
    assert_eq!(a["calendar"].as_f64().unwrap(), 1.0 - 120.0 / 1440.0);
    let budget = &m["services"][0]["metrics"]["error_budget"];
    assert!((budget["total_minutes"].as_f64().unwrap() - 5.4).abs() < 1e-9);
    assert_eq!(budget["used_minutes"], 60.0);
    // Hours that are not a time of day are refused.
    let res = app.post("/api/v1/services", &admin, &json!({
        "client_id": client["id"], "name": "bad", "sla_target_pct": 99.0, "notice_period_h": 1,
        "sla_hours": { "days": ["mon"], "from": "18:00", "to": "09:00" }
    }))
    .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
}
