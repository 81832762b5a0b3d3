//! Ingestion (issue 3): Alertmanager, PagerDuty, Grafana and plain JSON, with
//! payloads shaped like the examples in each tool's documentation.

use opsledger_domain::access::Role;
use opsledger_testkit::{spawn_app, spawn_app_with, TestApp};
use opsledger_tests::eventually;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::api_directory::{register_client, register_service};

/// A client and a service named `name`; returns the service's id.
pub async fn service(app: &TestApp, name: &str) -> String {
    let client = register_client(app, &format!("Client of {name}")).await;
    let service = register_service(app, client["id"].as_str().unwrap(), name).await;
    service["id"].as_str().unwrap().to_owned()
}

/// An Alertmanager webhook (version 4) notification, as its documentation shows it.
pub fn alertmanager(status: &str, group: &str, alerts: &[(&str, &str, &str)]) -> Value {
    json!({
        "version": "4",
        "groupKey": group,
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "opsledger",
        "groupLabels": { "alertname": "HighLatency" },
        "commonLabels": { "alertname": "HighLatency", "service": "orders", "severity": "critical" },
        "commonAnnotations": { "summary": "p99 latency above 2s" },
        "externalURL": "http://alertmanager.example:9093",
        "alerts": alerts.iter().map(|(fp, instance, st)| json!({
            "status": st,
            "labels": { "alertname": "HighLatency", "service": "orders", "severity": "critical", "instance": instance },
            "annotations": { "summary": format!("p99 latency above 2s on {instance}") },
            "startsAt": "2026-11-25T01:00:00.000Z",
            "endsAt": if *st == "firing" { "0001-01-01T00:00:00Z" } else { "2026-11-25T01:30:00Z" },
            "generatorURL": "http://prometheus.example:9090/graph?g0.expr=latency",
            "fingerprint": fp
        })).collect::<Vec<_>>()
    })
}

async fn post(app: &TestApp, path: &str, token: &str, body: &Value) -> (StatusCode, Value) {
    let res = app.post(path, token, body).await;
    let status = res.status();
    (status, res.json().await.unwrap())
}

#[tokio::test]
async fn an_alertmanager_group_firing_then_resolving_yields_one_incident_with_its_timeline() {
    let app = spawn_app().await;
    service(&app, "orders").await;
    let am = app.token(&[Role::Integration]);
    let group = "{}/{}:{alertname=\"HighLatency\"}";

    let (status, first) = post(
        &app,
        "/api/v1/integrations/alertmanager",
        &am,
        &alertmanager(
            "firing",
            group,
            &[("fp-a", "web-1", "firing"), ("fp-b", "web-2", "firing")],
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let results = first["results"].as_array().unwrap();
    assert_eq!(results[0]["outcome"], "opened_incident");
    assert_eq!(results[1]["outcome"], "attached_to_incident");
    let incident = results[0]["incident_id"].as_str().unwrap().to_owned();
    assert_eq!(results[1]["incident_id"], incident.as_str());

    // Alertmanager repeats the notification: nothing new opens.
    let (_, repeat) = post(
        &app,
        "/api/v1/integrations/alertmanager",
        &am,
        &alertmanager(
            "firing",
            group,
            &[("fp-a", "web-1", "firing"), ("fp-b", "web-2", "firing")],
        ),
    )
    .await;
    let outcomes: Vec<&str> = repeat["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["deduplicated", "deduplicated"]);
    assert_eq!(
        repeat["results"][0]["incident_id"],
        incident.as_str(),
        "a repeat names its incident"
    );
    assert_ne!(
        results[0]["alert_id"], results[0]["incident_id"],
        "an alert and its incident have ids of their own"
    );

    let operator = app.token(&[Role::Operator]);
    let listed = eventually("the incident is projected with both alerts", || async {
        let page: Value = app
            .get("/api/v1/incidents", &operator)
            .await
            .json()
            .await
            .unwrap();
        (page["items"].as_array().unwrap().len() == 1 && page["items"][0]["alert_count"] == 2)
            .then_some(page)
    })
    .await;
    assert_eq!(listed["items"][0]["id"], incident.as_str());
    assert_eq!(listed["items"][0]["severity"], "critical");
    assert_eq!(listed["items"][0]["status"], "triggered");

    let (_, resolved) = post(
        &app,
        "/api/v1/integrations/alertmanager",
        &am,
        &alertmanager(
            "resolved",
            group,
            &[("fp-a", "web-1", "resolved"), ("fp-b", "web-2", "resolved")],
        ),
    )
    .await;
    let outcomes: Vec<&str> = resolved["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["resolved", "resolved"]);
    eventually("no alert fires any more", || async {
        let page: Value = app
            .get("/api/v1/alerts?firing=true", &operator)
            .await
            .json()
            .await
            .unwrap();
        page["items"].as_array().unwrap().is_empty().then_some(())
    })
    .await;
    let alerts: Value = app
        .get(&format!("/api/v1/alerts?incident_id={incident}"), &operator)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(alerts["items"].as_array().unwrap().len(), 2);
    for a in alerts["items"].as_array().unwrap() {
        assert_eq!(
            (a["receipts"].as_i64(), a["resolved_by"].as_str()),
            (Some(2), Some("source")),
            "{a}"
        );
    }

    let timeline: Value = app
        .get(&format!("/api/v1/incidents/{incident}/timeline"), &operator)
        .await
        .json()
        .await
        .unwrap();
    let types: Vec<&str> = timeline["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types.iter().filter(|t| **t == "AlertReceived").count(),
        4,
        "{types:?}"
    );
    // The receipts say how each alert joined: the first opened the incident,
    // the second attached to it.
    let outcomes: Vec<&str> = timeline["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["data"]["decision"]["outcome"].as_str())
        .collect();
    assert_eq!(
        outcomes,
        [
            "opened_incident",
            "attached_to_incident",
            "deduplicated",
            "deduplicated"
        ],
        "{timeline}"
    );
    assert_eq!(
        types.iter().filter(|t| **t == "AlertResolved").count(),
        2,
        "{types:?}"
    );
    assert_eq!(
        types.iter().filter(|t| **t == "IncidentOpened").count(),
        1,
        "{types:?}"
    );
    let entries = timeline["items"].as_array().unwrap();
    assert!(
        entries
            .windows(2)
            .all(|w| w[0]["recorded_at"].as_str() <= w[1]["recorded_at"].as_str()),
        "in order"
    );
    for e in entries {
        assert_eq!(e["work_class"], "operations");
        assert_eq!(e["source"], "alertmanager");
        assert!(
            e["occurred_at"].is_string() && e["recorded_at"].is_string() && e["actor"].is_string()
        );
    }
}

#[tokio::test]
async fn an_alert_missing_from_a_later_notification_of_its_group_is_expired() {
    let app = spawn_app().await;
    service(&app, "orders").await;
    let am = app.token(&[Role::Integration]);
    let group = "{}:{alertname=\"HighLatency\"}";
    let (_, first) = post(
        &app,
        "/api/v1/integrations/alertmanager",
        &am,
        &alertmanager(
            "firing",
            group,
            &[("fp-a", "web-1", "firing"), ("fp-b", "web-2", "firing")],
        ),
    )
    .await;
    let silenced = first["results"][1]["alert_id"].as_str().unwrap().to_owned();
    let operator = app.token(&[Role::Operator]);
    eventually("both alerts are projected", || async {
        let page: Value = app
            .get("/api/v1/alerts?firing=true", &operator)
            .await
            .json()
            .await
            .unwrap();
        (page["items"].as_array().unwrap().len() == 2).then_some(())
    })
    .await;
    // fp-b was silenced upstream: the next notification of the group omits it.
    let (_, next) = post(
        &app,
        "/api/v1/integrations/alertmanager",
        &am,
        &alertmanager("firing", group, &[("fp-a", "web-1", "firing")]),
    )
    .await;
    assert_eq!(next["expired"], json!([silenced]));
    let alert = eventually("the silenced alert is closed as expired", || async {
        let a: Value = app
            .get(&format!("/api/v1/alerts/{silenced}"), &operator)
            .await
            .json()
            .await
            .unwrap();
        (a["firing"] == false).then_some(a)
    })
    .await;
    assert_eq!(alert["resolved_by"], "expired");
}

#[tokio::test]
async fn an_alert_for_an_unknown_service_is_held_and_visible() {
    let app = spawn_app().await;
    let token = app.token(&[Role::Integration]);
    let (status, res) = post(&app, "/api/v1/alerts", &token, &json!({
        "source": "zabbix", "dedup_key": "db-9-down", "service": "no-such-service", "summary": "db-9 unreachable",
        "severity": "critical", "category": "liveness", "status": "firing", "labels": { "host": "db-9" }
    })).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{res}");
    assert_eq!(res["outcome"], "held_for_unknown_service");
    assert!(res.get("incident_id").is_none());
    let operator = app.token(&[Role::Operator]);
    let alert = eventually("the held alert is visible", || async {
        let r = app
            .get(
                &format!("/api/v1/alerts/{}", res["alert_id"].as_str().unwrap()),
                &operator,
            )
            .await;
        (r.status() == StatusCode::OK).then_some(r)
    })
    .await
    .json::<Value>()
    .await
    .unwrap();
    assert_eq!(alert["decision"]["outcome"], "held_for_unknown_service");
    assert_eq!(alert["category"], "liveness");
    assert_eq!(alert["service_ref"], "no-such-service");
}

#[tokio::test]
async fn pagerduty_events_trigger_acknowledge_and_resolve_like_pagerduty() {
    let app = spawn_app().await;
    service(&app, "orders").await;
    let token = app.token(&[Role::Integration]);
    // The Events API v2 example, with our service as the routing key.
    let trigger = json!({
        "payload": {
            "summary": "DISK at 99% on machine prod-datapipe03.example.com",
            "timestamp": "2026-11-25T01:00:00.000+00:00",
            "severity": "critical",
            "source": "prod-datapipe03.example.com",
            "component": "mysql",
            "group": "prod-datapipe",
            "class": "disk",
            "custom_details": { "free space": "1%", "ping time": "1500ms", "load avg": 0.75 }
        },
        "routing_key": "orders",
        "dedup_key": "srv01/mysql",
        "event_action": "trigger",
        "client": "Sample Monitoring Service",
        "client_url": "https://monitoring.example.com",
        "links": [{ "href": "http://example.com/", "text": "Link text" }],
        "images": []
    });
    let (status, res) = post(&app, "/api/v1/integrations/pagerduty", &token, &trigger).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(
        res,
        json!({ "status": "success", "message": "Event processed", "dedup_key": "srv01/mysql" })
    );

    let (status, _) = post(&app, "/api/v1/integrations/pagerduty", &token,
        &json!({ "routing_key": "orders", "dedup_key": "srv01/mysql", "event_action": "acknowledge" })).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let operator = app.token(&[Role::Operator]);
    let page = eventually("the incident is acknowledged", || async {
        let page: Value = app
            .get("/api/v1/incidents?status=acknowledged", &operator)
            .await
            .json()
            .await
            .unwrap();
        (page["items"].as_array().unwrap().len() == 1).then_some(page)
    })
    .await;
    let id = page["items"][0]["id"].as_str().unwrap();
    let timeline: Value = app
        .get(&format!("/api/v1/incidents/{id}/timeline"), &operator)
        .await
        .json()
        .await
        .unwrap();
    let ack = timeline["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "IncidentAcknowledged")
        .unwrap();
    assert_eq!(ack["source"], "pagerduty");

    let (status, res) = post(
        &app,
        "/api/v1/integrations/pagerduty",
        &token,
        &json!({ "routing_key": "orders", "dedup_key": "srv01/mysql", "event_action": "resolve" }),
    )
    .await;
    assert_eq!(
        (status, res["dedup_key"].as_str()),
        (StatusCode::ACCEPTED, Some("srv01/mysql"))
    );
    eventually("the alert is resolved", || async {
        let page: Value = app
            .get("/api/v1/alerts?firing=true", &operator)
            .await
            .json()
            .await
            .unwrap();
        page["items"].as_array().unwrap().is_empty().then_some(())
    })
    .await;

    let (status, problem) = post(
        &app,
        "/api/v1/integrations/pagerduty",
        &token,
        &json!({ "routing_key": "orders", "event_action": "trigger" }),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(problem["detail"].as_str().unwrap().contains("payload"));
}

#[tokio::test]
async fn a_grafana_alerting_webhook_opens_an_incident() {
    let app = spawn_app().await;
    service(&app, "orders").await;
    let token = app.token(&[Role::Integration]);
    // Grafana's webhook notifier payload, as its documentation shows it.
    let body = json!({
        "receiver": "opsledger",
        "status": "firing",
        "orgId": 1,
        "alerts": [{
            "status": "firing",
            "labels": { "alertname": "High memory usage", "team": "blue", "zone": "us-1", "service": "orders", "category": "hardware" },
            "annotations": { "description": "The system has high memory usage", "runbook_url": "https://myrunbook.com/runbook/1234", "summary": "This alert was triggered for zone us-1" },
            "startsAt": "2026-11-25T00:54:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "https://play.grafana.org/alerting/1afz29v7z/edit",
            "fingerprint": "c6eadffa33fcdf37",
            "silenceURL": "https://play.grafana.org/alerting/silence/new",
            "dashboardURL": "", "panelURL": "",
            "values": { "B": 44.23943737541908, "C": 1 },
            "valueString": "[ var='B' labels={} value=44.23943737541908 ]"
        }],
        "groupLabels": { "alertname": "High memory usage" },
        "commonLabels": { "alertname": "High memory usage", "team": "blue", "zone": "us-1" },
        "commonAnnotations": {},
        "externalURL": "https://play.grafana.org/",
        "version": "1",
        "groupKey": "{}:{alertname=\"High memory usage\"}",
        "truncatedAlerts": 0,
        "title": "[FIRING:1] High memory usage (blue us-1)",
        "state": "alerting",
        "message": "**Firing**"
    });
    let (status, res) = post(&app, "/api/v1/integrations/grafana", &token, &body).await;
    assert_eq!(status, StatusCode::OK, "{res}");
    assert_eq!(res["results"][0]["outcome"], "opened_incident");
    let operator = app.token(&[Role::Operator]);
    let page = eventually("the incident is listed by category", || async {
        let page: Value = app
            .get("/api/v1/incidents?category=hardware", &operator)
            .await
            .json()
            .await
            .unwrap();
        (page["items"].as_array().unwrap().len() == 1).then_some(page)
    })
    .await;
    assert_eq!(
        page["items"][0]["title"],
        "This alert was triggered for zone us-1"
    );
    let none: Value = app
        .get("/api/v1/alerts?category=security", &operator)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(none["items"], json!([]));
    let some: Value = app
        .get("/api/v1/alerts?category=hardware", &operator)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(some["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn integration_tokens_may_post_alerts_and_nothing_else() {
    let app = spawn_app().await;
    service(&app, "orders").await;
    let token = app.token(&[Role::Integration]);
    let (status, res) = post(&app, "/api/v1/alerts", &token, &json!({
        "source": "custom", "dedup_key": "k1", "service": "orders", "summary": "s", "severity": "warning"
    })).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let incident = res["incident_id"].as_str().unwrap();
    for path in [
        "/api/v1/incidents".to_owned(),
        format!("/api/v1/incidents/{incident}"),
        format!("/api/v1/incidents/{incident}/timeline"),
        "/api/v1/alerts".to_owned(),
        "/api/v1/services".to_owned(),
    ] {
        assert_eq!(
            app.get(&path, &token).await.status(),
            StatusCode::FORBIDDEN,
            "GET {path}"
        );
    }
    let ack = app
        .post(
            &format!("/api/v1/incidents/{incident}/acknowledge"),
            &token,
            &json!({}),
        )
        .await;
    assert_eq!(ack.status(), StatusCode::FORBIDDEN);
    let open = app
        .post(
            "/api/v1/incidents",
            &token,
            &json!({ "title": "x", "severity": "info" }),
        )
        .await;
    assert_eq!(open.status(), StatusCode::FORBIDDEN);
    // Clients and auditors may not post alerts.
    for role in [Role::Client, Role::Auditor, Role::Approver] {
        let t = app.token_for(app.tenant, "u", &[role], Some(uuid::Uuid::now_v7()));
        let res = app
            .post(
                "/api/v1/alerts",
                &t,
                &json!({ "source": "x", "dedup_key": "k2", "summary": "s", "severity": "info" }),
            )
            .await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{role:?}");
    }
}

#[tokio::test]
async fn the_worker_expires_alerts_whose_end_passed_or_that_nobody_refreshes() {
    let app = spawn_app_with(|c| {
        c.expiry_interval = std::time::Duration::from_millis(100);
        c.alert_stale_after = std::time::Duration::from_secs(2);
    })
    .await;
    service(&app, "orders").await;
    let token = app.token(&[Role::Integration]);
    let ends_at = (chrono::Utc::now() + chrono::Duration::milliseconds(300)).to_rfc3339();
    let (_, ending) = post(&app, "/api/v1/alerts", &token, &json!({
        "source": "custom", "dedup_key": "ends-soon", "service": "orders", "summary": "s", "severity": "warning", "ends_at": ends_at
    })).await;
    let (_, silent) = post(&app, "/api/v1/alerts", &token, &json!({
        "source": "custom", "dedup_key": "goes-silent", "service": "orders", "summary": "s", "severity": "warning"
    })).await;
    let (_, fresh) = post(&app, "/api/v1/alerts", &token, &json!({
        "source": "custom", "dedup_key": "keeps-firing", "service": "orders", "summary": "s", "severity": "warning"
    })).await;
    let operator = app.token(&[Role::Operator]);
    let state = |id: Value| {
        let app = &app;
        let operator = &operator;
        async move {
            app.get(
                &format!("/api/v1/alerts/{}", id.as_str().unwrap()),
                operator,
            )
            .await
            .json::<Value>()
            .await
            .unwrap()
        }
    };
    let expired = eventually("the alert whose end passed is expired", || async {
        let a = state(ending["alert_id"].clone()).await;
        (a["firing"] == false).then_some(a)
    })
    .await;
    assert_eq!(expired["resolved_by"], "expired");
    // Keep one alert refreshed while the other goes silent past the bound.
    for _ in 0..6 {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        post(&app, "/api/v1/alerts", &token, &json!({
            "source": "custom", "dedup_key": "keeps-firing", "service": "orders", "summary": "s", "severity": "warning"
        })).await;
    }
    let silent_alert = eventually("the silent alert is expired", || async {
        let a = state(silent["alert_id"].clone()).await;
        (a["firing"] == false).then_some(a)
    })
    .await;
    assert_eq!(silent_alert["resolved_by"], "expired");
    assert_eq!(
        state(fresh["alert_id"].clone()).await["firing"],
        true,
        "a refreshed alert keeps firing"
    );
}

#[tokio::test]
async fn a_reopened_incident_takes_its_alert_group_back() {
    let app = spawn_app().await;
    service(&app, "orders").await;
    let token = app.token(&[Role::Integration]);
    let alert = |key: &str| json!({ "source": "custom", "dedup_key": key, "group_key": "db", "service": "orders", "summary": "db slow", "severity": "error" });
    let (_, first) = post(&app, "/api/v1/alerts", &token, &alert("a")).await;
    let incident = first["incident_id"].as_str().unwrap().to_owned();
    let operator = app.token(&[Role::Operator]);
    let resolve = app
        .post(
            &format!("/api/v1/incidents/{incident}/resolve"),
            &operator,
            &json!({}),
        )
        .await;
    assert_eq!(resolve.status(), StatusCode::OK);
    // While resolved, a new alert of the group opens a new incident…
    let (_, second) = post(&app, "/api/v1/alerts", &token, &alert("b")).await;
    assert_eq!(second["outcome"], "opened_incident");
    let other = second["incident_id"].as_str().unwrap().to_owned();
    assert_ne!(other, incident);
    app.post(
        &format!("/api/v1/incidents/{other}/resolve"),
        &operator,
        &json!({}),
    )
    .await;
    // …and once the first is reopened, the group's alerts attach to it again.
    let reopen = app
        .post(
            &format!("/api/v1/incidents/{incident}/reopen"),
            &operator,
            &json!({ "reason": "recurred" }),
        )
        .await;
    assert_eq!(reopen.status(), StatusCode::OK);
    let (_, third) = post(&app, "/api/v1/alerts", &token, &alert("c")).await;
    assert_eq!(
        (third["outcome"].as_str(), third["incident_id"].as_str()),
        (Some("attached_to_incident"), Some(incident.as_str()))
    );
}

/// The alerts read model is kept by the appends themselves: an alert is
/// listed the moment its POST is answered, repeats and resolutions included,
/// and rebuilding the model from the log gives the same rows.
#[tokio::test]
async fn the_alerts_read_model_is_current_when_ingestion_answers_and_equals_its_rebuild() {
    let app = spawn_app().await;
    service(&app, "orders").await;
    // A transaction left open holds the read horizon back, as a long one
    // anywhere in the cluster does: neither the model nor its rebuild may
    // wait for it.
    let mut holder = app.db.superuser().await;
    let held = holder.transaction().await.unwrap();
    held.execute("SELECT pg_current_xact_id()", &[])
        .await
        .unwrap();
    let token = app.token(&[Role::Integration]);
    let operator = app.token(&[Role::Operator]);
    let alert = |key: &str, status: &str| {
        json!({
            "source": "custom", "dedup_key": key, "service": "orders", "summary": "disk full",
            "severity": "critical", "category": "hardware", "status": status,
            "labels": { "host": key }
        })
    };
    for (key, status) in [
        ("a", "firing"),
        ("b", "firing"),
        ("a", "firing"),
        ("a", "firing"),
        ("b", "resolved"),
        ("c", "firing"),
    ] {
        let (code, receipt) = post(&app, "/api/v1/alerts", &token, &alert(key, status)).await;
        assert!(code.is_success(), "{receipt}");
        // No waiting: the row is there when the answer is.
        let row: Value = app
            .get(
                &format!("/api/v1/alerts/{}", receipt["alert_id"].as_str().unwrap()),
                &operator,
            )
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(row["firing"], status == "firing", "{key}: {row}");
    }
    let listed: Value = app
        .get("/api/v1/alerts?firing=true", &operator)
        .await
        .json()
        .await
        .unwrap();
    let keys: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["dedup_key"].as_str().unwrap())
        .collect();
    assert_eq!(keys.len(), 2, "{listed}");
    assert!(keys.contains(&"a") && keys.contains(&"c"), "{listed}");
    let repeated = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["dedup_key"] == "a")
        .unwrap();
    assert_eq!(repeated["receipts"], 3, "{repeated}");

    let su = app.db.superuser().await;
    let dump = || async {
        su.query(
            "SELECT to_jsonb(p) - 'labels' - 'decision' || jsonb_build_object('labels', labels::text, 'decision', decision::text) \
             FROM proj_alerts p ORDER BY alert_id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, Value>(0))
        .collect::<Vec<_>>()
    };
    let kept = dump().await;
    assert_eq!(kept.len(), 3);
    opsledger_store::projection::rebuild(
        &app.app_state.pool,
        &opsledger_store::incidents::AlertProjection,
    )
    .await
    .unwrap();
    assert_eq!(
        dump().await,
        kept,
        "the rebuild equals what the appends kept"
    );
    held.rollback().await.unwrap();
}

/// An alert stream holds every firing cycle of its fingerprint; an
/// incident's timeline shows its own cycles' events, each once, and no
/// other incident's, whether the read model knows where a cycle's events
/// lie (it reads just those) or not (a row from before it kept them: the
/// whole stream is read and filtered).
#[tokio::test]
async fn a_timeline_shows_its_own_firing_cycles_of_a_fingerprint_and_no_others() {
    let app = spawn_app().await;
    service(&app, "orders").await;
    let token = app.token(&[Role::Integration]);
    let operator = app.token(&[Role::Operator]);
    let alert = |status: &str, summary: &str| {
        json!({ "source": "custom", "dedup_key": "disk", "service": "orders",
            "summary": summary, "severity": "critical", "status": status })
    };
    let send = |status: &'static str, summary: &'static str| {
        let (app, token) = (&app, &token);
        async move {
            let (code, receipt) = post(app, "/api/v1/alerts", token, &alert(status, summary)).await;
            assert!(code.is_success(), "{receipt}");
            receipt
        }
    };
    // Cycle 1 opens incident A, repeats, resolves; A is resolved.
    let opened = send("firing", "cycle 1").await;
    let a = opened["incident_id"].as_str().unwrap().to_owned();
    send("firing", "cycle 1 again").await;
    send("resolved", "cycle 1 over").await;
    let resolved = app
        .post(
            &format!("/api/v1/incidents/{a}/resolve"),
            &operator,
            &json!({}),
        )
        .await;
    assert_eq!(resolved.status(), StatusCode::OK);
    // Cycle 2 opens incident B; it resolves, and cycle 3 fires while B is
    // still open, so B has two cycles of the fingerprint.
    let opened = send("firing", "cycle 2").await;
    let b = opened["incident_id"].as_str().unwrap().to_owned();
    assert_ne!(a, b);
    send("resolved", "cycle 2 over").await;
    let third = send("firing", "cycle 3").await;
    assert_eq!(third["incident_id"].as_str(), Some(b.as_str()), "{third}");
    send("firing", "cycle 3 again").await;

    let alert_events = |incident: String| {
        let (app, operator) = (&app, &operator);
        async move {
            let timeline: Value = app
                .get(&format!("/api/v1/incidents/{incident}/timeline"), operator)
                .await
                .json()
                .await
                .unwrap();
            timeline["items"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["stream"].as_str().unwrap().starts_with("alert-"))
                .map(|e| {
                    format!(
                        "{} {}",
                        e["type"].as_str().unwrap(),
                        e["data"]["signal"]["summary"].as_str().unwrap_or("")
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    let of_a = vec![
        "AlertReceived cycle 1",
        "AlertReceived cycle 1 again",
        "AlertResolved ",
    ];
    let of_b = vec![
        "AlertReceived cycle 2",
        "AlertResolved ",
        "AlertReceived cycle 3",
        "AlertReceived cycle 3 again",
    ];
    assert_eq!(alert_events(a.clone()).await, of_a);
    assert_eq!(alert_events(b.clone()).await, of_b);

    // Rows from before the read model kept versions: the same timelines.
    let su = app.db.superuser().await;
    let forgotten = su
        .execute(
            "UPDATE proj_alerts SET first_version = NULL, last_version = NULL",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(forgotten, 3);
    assert_eq!(alert_events(a).await, of_a);
    assert_eq!(alert_events(b).await, of_b);
}

/// An incident storm on services with subscribed contacts: every incident
/// opened asks for a notice, which the notifier appends while ingestion
/// appends the next incidents. Before the notifier appended a batch's
/// requests in one write, taking the chain's strands in the committer's
/// order, the two could deadlock and alerts were answered 500 (seen at
/// 250 alerts a second in the P2 benchmark). Every alert is accepted, and
/// every incident's notice is asked for once. (The old code failed this
/// about one run in two.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incident_storm_on_subscribed_services_is_all_accepted_and_noticed_once() {
    const SENDERS: usize = 16;
    const ALERTS_EACH: usize = 40;
    let app = spawn_app().await;
    let admin = app.token(&[Role::Admin]);
    let mut names = Vec::new();
    for n in 0..4 {
        let name = format!("shop-{n}");
        let id = service(&app, &name).await;
        let res = app
            .post(
                "/api/v1/subscriptions",
                &admin,
                &json!({ "service_id": id, "name": "Contact", "locale": "en",
                    "email": format!("contact-{n}@example.test"),
                    "kinds": ["incident_opened"], "min_severity": "info" }),
            )
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
        names.push(name);
    }
    let token = app.token(&[Role::Integration]);
    let senders = (0..SENDERS).map(|s| {
        let (app, token, names) = (&app, &token, &names);
        async move {
            let mut refused = Vec::new();
            for a in 0..ALERTS_EACH {
                let key = format!("storm-{s}-{a}");
                let (status, body) = post(
                    app,
                    "/api/v1/alerts",
                    token,
                    &json!({
                        "source": "custom", "dedup_key": key, "group_key": key,
                        "service": names[(s + a) % names.len()], "summary": "checkout failing",
                        "severity": "critical"
                    }),
                )
                .await;
                if !status.is_success() {
                    refused.push(format!("{status}: {body}"));
                }
            }
            refused
        }
    });
    let refused: Vec<String> = futures_util::future::join_all(senders)
        .await
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(refused, Vec::<String>::new());
    let su = app.db.superuser().await;
    let incidents: i64 = su
        .query_one(
            "SELECT count(*) FROM events WHERE event_type = 'IncidentOpened'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(incidents, (SENDERS * ALERTS_EACH) as i64);
    let asked = eventually("every incident's notice is asked for", || async {
        let n: i64 = su
            .query_one("SELECT count(*) FROM proj_notifications", &[])
            .await
            .unwrap()
            .get(0);
        (n >= incidents).then_some(n)
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let settled: i64 = su
        .query_one("SELECT count(*) FROM proj_notifications", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!((asked, settled), (incidents, incidents), "one notice each");
}
