//! Threshold rules on pushed samples (issue 18, SPEC §12): a server's
//! temperature over the line for longer than `for_s` opens one hardware
//! incident and its cooling resolves it; a short spike and another host
//! fire nothing; each series fires its own alert; a silent series clears
//! as stale; a removed rule's alerts are resolved; only transitions are
//! events; hostile input to every new route is a problem and writes
//! nothing.

use std::time::Duration;

use chrono::{DateTime, Utc};
use opsledger_domain::access::Role;
use opsledger_testkit::{spawn_app, spawn_app_with, TestApp};
use opsledger_tests::within_a_minute;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::alerts::service;

/// The app with every rule evaluated every 100 ms.
async fn fast_app() -> TestApp {
    spawn_app_with(|c| {
        c.threshold_poll_interval = Duration::from_millis(100);
    })
    .await
}

async fn define(app: &TestApp, body: &Value) -> String {
    let res = app
        .post(
            "/api/v1/threshold-rules",
            &app.token(&[Role::Operator]),
            body,
        )
        .await;
    let status = res.status();
    let v: Value = res.json().await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{v}");
    v["id"].as_str().unwrap().to_owned()
}

async fn push(app: &TestApp, samples: Vec<Value>) {
    let res = app
        .post(
            "/api/v1/samples",
            &app.token(&[Role::Integration]),
            &json!({ "samples": samples }),
        )
        .await;
    let status = res.status();
    let v: Value = res.json().await.unwrap();
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
}

/// Samples of `metric` for `labels`, one a second, `values` ending now.
fn series_of(metric: &str, labels: Value, values: &[f64]) -> Vec<Value> {
    let now = Utc::now();
    let n = values.len() as i64;
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let at = now - chrono::Duration::seconds(n - 1 - i as i64);
            json!({ "metric": metric, "labels": labels, "value": v, "time": at })
        })
        .collect()
}

async fn rule(app: &TestApp, id: &str) -> Value {
    let res = app
        .get(
            &format!("/api/v1/threshold-rules/{id}"),
            &app.token(&[Role::Auditor]),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

async fn state_reached(app: &TestApp, id: &str, state: &str) -> Value {
    within_a_minute(&format!("the rule is {state}"), || async move {
        let r = rule(app, id).await;
        (r["state"] == state).then_some(r)
    })
    .await
}

/// The tenant's events of `types`, with their payload text.
async fn events_of(app: &TestApp, types: &[&str]) -> Vec<(String, String)> {
    let types: Vec<String> = types.iter().map(|t| t.to_string()).collect();
    app.db
        .superuser()
        .await
        .query(
            "SELECT event_type, payload::text FROM events \
             WHERE tenant_id = $1 AND event_type = ANY($2) ORDER BY position",
            &[&app.tenant, &types],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

async fn all_events(app: &TestApp) -> i64 {
    app.db
        .superuser()
        .await
        .query_one(
            "SELECT count(*) FROM events WHERE tenant_id = $1",
            &[&app.tenant],
        )
        .await
        .unwrap()
        .get(0)
}

async fn stream_types(app: &TestApp, id: &str) -> Vec<String> {
    app.db
        .superuser()
        .await
        .query(
            "SELECT event_type FROM events WHERE tenant_id = $1 AND stream_id = $2 \
             ORDER BY stream_version",
            &[&app.tenant, &format!("threshold-rule-{id}")],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

async fn samples_kept(app: &TestApp) -> i64 {
    app.db
        .superuser()
        .await
        .query_one("SELECT count(*) FROM samples", &[])
        .await
        .unwrap()
        .get(0)
}

/// Waits until the workers evaluated the rule after `after`, twice over
/// (the pass under way at `after` may have read the samples before them).
async fn evaluated_after(app: &TestApp, id: &str, after: DateTime<Utc>) {
    let rule_id = uuid::Uuid::parse_str(id).unwrap();
    for round in 0..2 {
        let since: DateTime<Utc> = if round == 0 {
            after
        } else {
            chrono::Utc::now()
        };
        within_a_minute("an evaluation of the rule", || async move {
            let row = app
                .db
                .superuser()
                .await
                .query_one(
                    "SELECT last_evaluated_at FROM threshold_runs \
                     WHERE tenant_id = $1 AND rule_id = $2",
                    &[&app.tenant, &rule_id],
                )
                .await
                .unwrap();
            let at: Option<DateTime<Utc>> = row.get(0);
            at.is_some_and(|at| at > since).then_some(())
        })
        .await;
    }
}

fn hot_rule(service: &str, for_s: u32) -> Value {
    json!({ "name": "db-1 too hot", "service_id": service, "component": "rack 4",
            "metric": "node_temperature_celsius", "matchers": { "host": "db-1" },
            "comparison": ">", "threshold": 80, "for_s": for_s, "stale_after_s": 60,
            "category": "hardware", "severity": "critical" })
}

#[tokio::test]
async fn a_hot_server_opens_one_hardware_incident_after_for_and_its_cooling_resolves_it() {
    let app = fast_app().await;
    let service = service(&app, "Database").await;
    let id = define(&app, &hot_rule(&service, 3)).await;
    // db-1 over 80 for 6 s; db-2 hotter still, but the rule watches db-1.
    let mut samples = series_of(
        "node_temperature_celsius",
        json!({ "host": "db-1", "dc": "tokyo" }),
        &[84.0, 85.0, 86.0, 85.5, 86.0, 87.0, 88.0],
    );
    samples.extend(series_of(
        "node_temperature_celsius",
        json!({ "host": "db-2", "dc": "tokyo" }),
        &[95.0, 96.0, 97.0, 98.0, 99.0, 99.0, 99.0],
    ));
    push(&app, samples).await;
    let firing = state_reached(&app, &id, "firing").await;
    assert_eq!(firing["firing"].as_array().unwrap().len(), 1, "{firing}");
    assert_eq!(firing["firing"][0]["series"]["host"], "db-1");
    assert_eq!(firing["firing"][0]["value"], 88.0);
    assert_eq!(firing["series"].as_array().unwrap().len(), 1, "{firing}");
    assert_eq!(firing["series"][0]["condition"], "breached");
    let opened = within_a_minute("the breach opens an incident", || {
        let app = &app;
        async move {
            let e = events_of(app, &["IncidentOpened"]).await;
            (!e.is_empty()).then_some(e)
        }
    })
    .await;
    assert_eq!(opened.len(), 1);
    let received = events_of(&app, &["AlertReceived"]).await;
    assert_eq!(received.len(), 1, "{received:?}");
    assert!(
        received[0].1.contains("opsledger-threshold"),
        "{received:?}"
    );
    assert!(received[0].1.contains("\"hardware\""), "{received:?}");
    assert!(received[0].1.contains("db-1"), "{received:?}");
    let incident: Value = serde_json::from_str(&opened[0].1).unwrap();
    let incident_id = incident["incident_id"].as_str().unwrap().to_owned();

    // More hot samples record nothing: only transitions are events.
    let before = (
        stream_types(&app, &id).await,
        events_of(&app, &["AlertReceived", "AlertResolved"]).await,
    );
    push(
        &app,
        series_of(
            "node_temperature_celsius",
            json!({ "host": "db-1", "dc": "tokyo" }),
            &[89.0, 90.0],
        ),
    )
    .await;
    evaluated_after(&app, &id, Utc::now()).await;
    let after = (
        stream_types(&app, &id).await,
        events_of(&app, &["AlertReceived", "AlertResolved"]).await,
    );
    assert_eq!(after, before, "samples are not events");

    // Cooled: cleared as recovered, and the alert is resolved.
    push(
        &app,
        series_of(
            "node_temperature_celsius",
            json!({ "host": "db-1", "dc": "tokyo" }),
            &[72.0],
        ),
    )
    .await;
    let ok = state_reached(&app, &id, "ok").await;
    let last = ok["transitions"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["to"], "ok", "{ok}");
    assert_eq!(last["reason"], "recovered", "{ok}");
    within_a_minute("the alert resolves", || {
        let app = &app;
        async move { (!events_of(app, &["AlertResolved"]).await.is_empty()).then_some(()) }
    })
    .await;
    let res = app
        .get(
            &format!("/api/v1/alerts?incident_id={incident_id}"),
            &app.token(&[Role::Operator]),
        )
        .await;
    let alerts: Value = res.json().await.unwrap();
    assert_eq!(alerts["items"].as_array().unwrap().len(), 1, "{alerts}");
    evaluated_after(&app, &id, Utc::now()).await;
    assert_eq!(
        stream_types(&app, &id).await,
        [
            "ThresholdRuleDefined",
            "ThresholdBreached",
            "ThresholdCleared"
        ]
    );
    assert_eq!(events_of(&app, &["AlertReceived"]).await.len(), 1);
    assert_eq!(events_of(&app, &["AlertResolved"]).await.len(), 1);
}

#[tokio::test]
async fn a_spike_shorter_than_for_fires_nothing_and_a_silent_series_clears_as_stale() {
    let app = fast_app().await;
    let service = service(&app, "Database").await;
    let id = define(&app, &hot_rule(&service, 5)).await;
    // Over the line for 3 s (under for_s), then back under.
    let pushed = Utc::now();
    push(
        &app,
        series_of(
            "node_temperature_celsius",
            json!({ "host": "db-1" }),
            &[70.0, 95.0, 96.0, 97.0, 95.0, 70.0],
        ),
    )
    .await;
    evaluated_after(&app, &id, pushed).await;
    let r = rule(&app, &id).await;
    assert_eq!(r["state"], "ok", "{r}");
    assert_eq!(r["series"][0]["condition"], "ok", "{r}");
    assert!(events_of(&app, &["ThresholdBreached", "AlertReceived"])
        .await
        .is_empty());
    // Still over the line, without the spike's end: pending, not firing.
    let pushed = Utc::now();
    push(
        &app,
        series_of(
            "node_temperature_celsius",
            json!({ "host": "db-1" }),
            &[95.0, 96.0],
        ),
    )
    .await;
    evaluated_after(&app, &id, pushed).await;
    let r = rule(&app, &id).await;
    assert_eq!(r["series"][0]["condition"], "pending", "{r}");
    assert_eq!(r["state"], "ok", "{r}");

    // A rule that fires at once and calls a series stale after 3 s of
    // silence: the sender stops, and the series is cleared as stale.
    let quick = define(
        &app,
        &json!({ "name": "uplink saturated", "service_id": service, "metric": "link_util_ratio",
                 "comparison": ">=", "threshold": 0.9, "for_s": 0, "stale_after_s": 3,
                 "category": "traffic" }),
    )
    .await;
    push(
        &app,
        series_of("link_util_ratio", json!({ "link": "uplink-1" }), &[0.97]),
    )
    .await;
    state_reached(&app, &quick, "firing").await;
    let ok = state_reached(&app, &quick, "ok").await;
    let last = ok["transitions"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["reason"], "stale", "{ok}");
    let received = events_of(&app, &["AlertReceived"]).await;
    assert_eq!(received.len(), 1, "{received:?}");
    assert!(received[0].1.contains("\"traffic\""), "{received:?}");
    assert!(
        received[0].1.contains("\"warning\""),
        "the default severity"
    );
    within_a_minute("the stale series' alert resolves", || {
        let app = &app;
        async move { (!events_of(app, &["AlertResolved"]).await.is_empty()).then_some(()) }
    })
    .await;
    assert_eq!(
        stream_types(&app, &id).await,
        ["ThresholdRuleDefined"],
        "the spike recorded nothing"
    );
}

#[tokio::test]
async fn each_series_fires_its_own_alert_in_one_incident_and_removing_the_rule_resolves_them() {
    let app = fast_app().await;
    let service = service(&app, "Compute").await;
    let id = define(
        &app,
        &json!({ "name": "fans slow in rack 1", "service_id": service, "metric": "fan_rpm",
                 "matchers": { "rack": "r1" }, "comparison": "<", "threshold": 1000,
                 "for_s": 2, "category": "hardware", "severity": "error" }),
    )
    .await;
    let mut samples = Vec::new();
    for (host, rack) in [("a", "r1"), ("b", "r1"), ("c", "r2")] {
        samples.extend(series_of(
            "fan_rpm",
            json!({ "host": host, "rack": rack }),
            &[600.0, 550.0, 500.0, 450.0],
        ));
    }
    push(&app, samples).await;
    let firing = within_a_minute("two series fire", || {
        let app = &app;
        let id = &id;
        async move {
            let r = rule(app, id).await;
            (r["firing"].as_array().unwrap().len() == 2).then_some(r)
        }
    })
    .await;
    let hosts: Vec<&str> = firing["firing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["series"]["host"].as_str().unwrap())
        .collect();
    assert!(
        hosts.contains(&"a") && hosts.contains(&"b"),
        "rack r2's host c does not fire: {hosts:?}"
    );
    let received = within_a_minute("both alerts are received", || {
        let app = &app;
        async move {
            let e = events_of(app, &["AlertReceived"]).await;
            (e.len() == 2).then_some(e)
        }
    })
    .await;
    let keys: std::collections::BTreeSet<String> = received
        .iter()
        .map(|(_, p)| serde_json::from_str::<Value>(p).unwrap()["signal"]["dedup_key"].to_string())
        .collect();
    assert_eq!(keys.len(), 2, "a dedup key per series: {received:?}");
    assert_eq!(events_of(&app, &["IncidentOpened"]).await.len(), 1);

    // Removed: both alerts are resolved, and the stream records no more.
    let res = app
        .http
        .delete(app.url(&format!("/api/v1/threshold-rules/{id}")))
        .bearer_auth(app.token(&[Role::Admin]))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    within_a_minute("the removed rule's alerts resolve", || {
        let app = &app;
        async move { (events_of(app, &["AlertResolved"]).await.len() == 2).then_some(()) }
    })
    .await;
    assert_eq!(
        stream_types(&app, &id).await,
        [
            "ThresholdRuleDefined",
            "ThresholdBreached",
            "ThresholdBreached",
            "ThresholdRuleRemoved"
        ]
    );
}

#[tokio::test]
async fn sample_and_rule_routes_refuse_hostile_input_with_problems_and_write_nothing() {
    let app = spawn_app().await;
    let service = service(&app, "Mail").await;
    let monitoring = app.token(&[Role::Integration]);
    let operator = app.token(&[Role::Operator]);
    let before = all_events(&app).await;
    let good = json!({ "metric": "node_temperature_celsius", "labels": { "host": "mx-1" }, "value": 41.5 });
    let with = |path: &str, v: Value| {
        let mut b = good.clone();
        match b.pointer_mut(path) {
            Some(slot) => *slot = v,
            None => {
                let (parent, key) = path.rsplit_once('/').unwrap();
                b.pointer_mut(parent)
                    .unwrap()
                    .as_object_mut()
                    .unwrap()
                    .insert(key.to_owned(), v);
            }
        }
        b
    };
    let many_labels: serde_json::Map<String, Value> =
        (0..33).map(|i| (format!("l{i}"), json!("v"))).collect();
    let future = Utc::now() + chrono::Duration::hours(1);
    let old = Utc::now() - chrono::Duration::hours(4);
    let sample_cases: Vec<(&str, Value, StatusCode)> = vec![
        (
            "oversized batch",
            json!({ "samples": vec![good.clone(); 1001] }),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            "empty batch",
            json!({ "samples": [] }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "value as a string NaN",
            json!({ "samples": [with("/value", json!("NaN"))] }),
            StatusCode::BAD_REQUEST,
        ),
        (
            "value null",
            json!({ "samples": [with("/value", Value::Null)] }),
            StatusCode::BAD_REQUEST,
        ),
        (
            "control character in a label value",
            json!({ "samples": [good.clone(), with("/labels/host", json!("mx\u{1b}[31m"))] }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "a label name that is not Prometheus'",
            json!({ "samples": [with("/labels/bad-name", json!("x"))] }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "too many labels",
            json!({ "samples": [with("/labels", Value::Object(many_labels))] }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "a label value too long",
            json!({ "samples": [with("/labels/host", json!("x".repeat(513)))] }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "a metric name with a space",
            json!({ "samples": [with("/metric", json!("cpu temp"))] }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "a time an hour ahead",
            json!({ "samples": [good.clone(), with("/time", json!(future))] }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "a time older than the retention",
            json!({ "samples": [with("/time", json!(old))] }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "unknown field in a sample",
            json!({ "samples": [with("/unit", json!("celsius"))] }),
            StatusCode::BAD_REQUEST,
        ),
        (
            "unknown field in the batch",
            json!({ "samples": [good.clone()], "source": "x" }),
            StatusCode::BAD_REQUEST,
        ),
        (
            "a bare array",
            json!([good.clone()]),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (name, body, expected) in sample_cases {
        let res = app.post("/api/v1/samples", &monitoring, &body).await;
        assert_eq!(res.status(), expected, "{name}");
        assert_eq!(
            res.headers()["content-type"],
            "application/problem+json",
            "{name}"
        );
    }
    // Numbers JSON cannot carry: a NaN token and one out of f64's range.
    for raw in [
        r#"{"samples": [{"metric": "m", "value": NaN}]}"#,
        r#"{"samples": [{"metric": "m", "value": 1e999}]}"#,
        r#"{"samples": [{"metric": "m", "value": -Infinity}]}"#,
    ] {
        let res = app
            .http
            .post(app.url("/api/v1/samples"))
            .bearer_auth(&monitoring)
            .header("content-type", "application/json")
            .body(raw)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{raw}");
        assert_eq!(res.headers()["content-type"], "application/problem+json");
    }
    let batch = json!({ "samples": [good.clone()] });
    for role in [Role::Client, Role::Auditor, Role::Approver] {
        let client = (role == Role::Client).then(uuid::Uuid::now_v7);
        let token = app.token_for(app.tenant, "someone", &[role], client);
        let res = app.post("/api/v1/samples", &token, &batch).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{role:?}");
        assert_eq!(res.headers()["content-type"], "application/problem+json");
    }
    assert_eq!(samples_kept(&app).await, 0, "a refused batch keeps nothing");
    let res = app.post("/api/v1/samples", &monitoring, &batch).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let accepted: Value = res.json().await.unwrap();
    assert_eq!(accepted["accepted"], 1);
    assert_eq!(samples_kept(&app).await, 1);

    let rule = hot_rule(&service, 60);
    let set = |key: &str, v: Value| {
        let mut b = rule.clone();
        b.as_object_mut().unwrap().insert(key.to_owned(), v);
        b
    };
    let rule_cases: Vec<(&str, Value, StatusCode)> = vec![
        (
            "bad comparison",
            set("comparison", json!("=>")),
            StatusCode::BAD_REQUEST,
        ),
        (
            "comparison word",
            set("comparison", json!("gt")),
            StatusCode::BAD_REQUEST,
        ),
        (
            "threshold as text",
            set("threshold", json!("80")),
            StatusCode::BAD_REQUEST,
        ),
        (
            "negative for_s",
            set("for_s", json!(-1)),
            StatusCode::BAD_REQUEST,
        ),
        (
            "for_s over an hour",
            set("for_s", json!(3601)),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "stale_after_s 0",
            set("stale_after_s", json!(0)),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "liveness category",
            set("category", json!("liveness")),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "unknown category",
            set("category", json!("weather")),
            StatusCode::BAD_REQUEST,
        ),
        (
            "unknown field",
            set("expr", json!("up == 0")),
            StatusCode::BAD_REQUEST,
        ),
        (
            "bad matcher name",
            set("matchers", json!({ "a-b": "x" })),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "empty matcher value",
            set("matchers", json!({ "host": "" })),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "bad metric",
            set("metric", json!("9lives")),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "control character in the name",
            set("name", json!("a\u{7}b")),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "unknown service",
            set("service_id", json!("00000000-0000-0000-0000-000000000001")),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ];
    for (name, body, expected) in rule_cases {
        let res = app.post("/api/v1/threshold-rules", &operator, &body).await;
        assert_eq!(res.status(), expected, "{name}");
        assert_eq!(
            res.headers()["content-type"],
            "application/problem+json",
            "{name}"
        );
    }
    for role in [Role::Maintainer, Role::Integration, Role::Auditor] {
        let res = app
            .post("/api/v1/threshold-rules", &app.token(&[role]), &rule)
            .await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{role:?}");
    }
    for role in [Role::Integration, Role::Client] {
        let client = (role == Role::Client).then(uuid::Uuid::now_v7);
        let token = app.token_for(app.tenant, "someone", &[role], client);
        let res = app.get("/api/v1/threshold-rules", &token).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{role:?}");
    }
    assert_eq!(all_events(&app).await, before, "a refusal writes nothing");

    // A good one, changed, then removed; a removed rule takes no change.
    let res = app.post("/api/v1/threshold-rules", &operator, &rule).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let r: Value = res.json().await.unwrap();
    assert_eq!(r["state"], "ok");
    assert_eq!(r["stale_after_s"], 60);
    let url = app.url(&format!(
        "/api/v1/threshold-rules/{}",
        r["id"].as_str().unwrap()
    ));
    let res = app
        .http
        .put(&url)
        .bearer_auth(&operator)
        .header("if-match", "\"1\"")
        .json(&set("threshold", json!(85.5)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let changed: Value = res.json().await.unwrap();
    assert_eq!(changed["threshold"], 85.5);
    assert_eq!(changed["version"], 2);
    let res = app
        .http
        .put(&url)
        .bearer_auth(&operator)
        .header("if-match", "\"1\"")
        .json(&rule)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PRECONDITION_FAILED);
    let list: Value = within_a_minute("the rule is listed", || {
        let (app, operator) = (&app, &operator);
        async move {
            let v: Value = app
                .get("/api/v1/threshold-rules", operator)
                .await
                .json()
                .await
                .unwrap();
            (v["items"].as_array().unwrap().len() == 1).then_some(v)
        }
    })
    .await;
    assert_eq!(list["items"][0]["metric"], "node_temperature_celsius");
    let res = app
        .http
        .delete(&url)
        .bearer_auth(&operator)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    for method in [reqwest::Method::DELETE, reqwest::Method::PUT] {
        let res = app
            .http
            .request(method.clone(), &url)
            .bearer_auth(&operator)
            .json(&rule)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::CONFLICT, "{method}");
        assert_eq!(res.headers()["content-type"], "application/problem+json");
    }
    let res = app
        .get(
            "/api/v1/threshold-rules/00000000-0000-0000-0000-000000000009",
            &operator,
        )
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
}

#[tokio::test]
async fn two_instances_on_one_database_record_one_breach() {
    let app = fast_app().await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let second = opsledger_server::Application::build_on(&app.config, listener)
        .await
        .expect("a second instance starts");
    tokio::spawn(second.run_until_stopped());
    let service = service(&app, "Storage").await;
    let id = define(&app, &hot_rule(&service, 1)).await;
    push(
        &app,
        series_of(
            "node_temperature_celsius",
            json!({ "host": "db-1" }),
            &[90.0, 91.0, 92.0],
        ),
    )
    .await;
    state_reached(&app, &id, "firing").await;
    within_a_minute("the alert is received", || {
        let app = &app;
        async move { (!events_of(app, &["AlertReceived"]).await.is_empty()).then_some(()) }
    })
    .await;
    evaluated_after(&app, &id, Utc::now()).await;
    assert_eq!(
        stream_types(&app, &id).await,
        ["ThresholdRuleDefined", "ThresholdBreached"]
    );
    assert_eq!(events_of(&app, &["AlertReceived"]).await.len(), 1);
}

#[tokio::test]
async fn samples_past_the_retention_are_deleted_by_the_worker() {
    let app = fast_app().await;
    // Older than any rule looks back: as a sample kept hours ago would be
    // (a push refuses such a time, so it is written here directly).
    let old = Utc::now() - chrono::Duration::hours(4);
    app.db
        .superuser()
        .await
        .execute(
            "INSERT INTO samples (tenant_id, metric, labels, value, at) \
             VALUES ($1, 'node_temperature_celsius', '{\"host\": \"db-1\"}', 70, $2)",
            &[&app.tenant, &old],
        )
        .await
        .unwrap();
    push(
        &app,
        series_of(
            "node_temperature_celsius",
            json!({ "host": "db-1" }),
            &[71.0],
        ),
    )
    .await;
    within_a_minute("the old sample is deleted", || {
        let app = &app;
        async move { (samples_kept(app).await == 1).then_some(()) }
    })
    .await;
    let kept: DateTime<Utc> = app
        .db
        .superuser()
        .await
        .query_one("SELECT at FROM samples", &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        Utc::now() - kept < chrono::Duration::minutes(5),
        "the recent one stays"
    );
}
