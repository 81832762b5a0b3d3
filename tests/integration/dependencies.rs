//! Service dependencies (issue 18): a parent's probe watches a real TCP
//! listener on loopback; when it goes down the parent's own alert opens
//! the parent's incident, while its children's (and grandchildren's) alerts
//! are recorded `suppressed_by_parent`, naming it, and open nothing; once
//! it is back, the next repeat of a held alert opens the child's incident,
//! whose timeline shows it held first. Setting dependencies refuses the
//! service itself, unknown and other tenants' services and cycles with
//! problems.

use std::net::SocketAddr;
use std::time::Duration;

use opsledger_domain::access::Role;
use opsledger_testkit::{spawn_app, spawn_app_with, TestApp};
use opsledger_tests::within_a_minute;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::task::JoinHandle;

use crate::alerts::{alertmanager, service};

/// The app with probes allowed every second, looked for every 100 ms.
async fn fast_app() -> TestApp {
    spawn_app_with(|c| {
        c.probe_interval_min_s = 1;
        c.probe_poll_interval = Duration::from_millis(100);
    })
    .await
}

/// A TCP listener on a fixed loopback port that accepts connections and
/// closes them; stopped, the port refuses them until it starts again.
struct Listener {
    addr: SocketAddr,
    task: Option<JoinHandle<()>>,
}

impl Listener {
    async fn start() -> Listener {
        let mut l = Listener {
            addr: "127.0.0.1:0".parse().unwrap(),
            task: None,
        };
        l.listen().await;
        l
    }

    async fn listen(&mut self) {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket.bind(self.addr).unwrap();
        let listener = socket.listen(64).unwrap();
        self.addr = listener.local_addr().unwrap();
        self.task = Some(tokio::spawn(async move {
            loop {
                let _ = listener.accept().await;
            }
        }));
    }

    async fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

async fn set_dependencies(app: &TestApp, service: &str, depends_on: Value) -> reqwest::Response {
    app.http
        .put(app.url(&format!("/api/v1/services/{service}/dependencies")))
        .bearer_auth(app.token(&[Role::Admin]))
        .json(&json!({ "depends_on": depends_on }))
        .send()
        .await
        .unwrap()
}

async fn dependencies(app: &TestApp, service: &str) -> Value {
    let res = app
        .get(
            &format!("/api/v1/services/{service}/dependencies"),
            &app.token(&[Role::Operator]),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

async fn probe_health(app: &TestApp, id: &str) -> Value {
    let res = app
        .get(
            &format!("/api/v1/probes/{id}"),
            &app.token(&[Role::Operator]),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let p: Value = res.json().await.unwrap();
    p["health"].clone()
}

/// The services incidents were opened for, in order.
async fn incident_services(app: &TestApp) -> Vec<String> {
    app.db
        .superuser()
        .await
        .query(
            "SELECT payload->>'service_id' FROM events \
             WHERE tenant_id = $1 AND event_type = 'IncidentOpened' ORDER BY position",
            &[&app.tenant],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

async fn post_alert(app: &TestApp, dedup_key: &str, service: &str) -> Value {
    let res = app
        .post(
            "/api/v1/alerts",
            &app.token(&[Role::Integration]),
            &json!({ "source": "test", "dedup_key": dedup_key, "service": service,
                     "summary": format!("{dedup_key} failing"), "severity": "critical" }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    res.json().await.unwrap()
}

#[tokio::test]
async fn while_a_parent_probe_is_down_its_descendants_alerts_are_held_naming_it_and_open_nothing() {
    let app = fast_app().await;
    let database = service(&app, "Database").await;
    // The child takes Alertmanager's alerts (their `service` label).
    let orders = service(&app, "orders").await;
    let checkout = service(&app, "Checkout").await;
    let res = set_dependencies(&app, &orders, json!([database])).await;
    assert_eq!(res.status(), StatusCode::OK);
    let set: Value = res.json().await.unwrap();
    assert_eq!(set["depends_on"], json!([database]));
    assert_eq!(set["version"], 2);
    let res = set_dependencies(&app, &checkout, json!([orders])).await;
    assert_eq!(res.status(), StatusCode::OK);
    let got: Value = app
        .get(
            &format!("/api/v1/services/{orders}"),
            &app.token(&[Role::Auditor]),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(got["depends_on"], json!([database]));
    within_a_minute("the database lists orders as its dependent", || {
        let (app, database, orders) = (&app, &database, &orders);
        async move {
            (dependencies(app, database).await["dependents"] == json!([orders])).then_some(())
        }
    })
    .await;

    let mut db = Listener::start().await;
    let res = app
        .post(
            "/api/v1/probes",
            &app.token(&[Role::Operator]),
            &json!({ "name": "db port", "service_id": database,
                     "check": { "kind": "tcp", "host": "127.0.0.1", "port": db.addr.port() },
                     "interval_s": 1, "timeout_ms": 500, "failure_threshold": 2 }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let probe: Value = res.json().await.unwrap();
    let probe_id = probe["id"].as_str().unwrap().to_owned();

    db.stop().await;
    within_a_minute("the database probe is down", || {
        let (app, id) = (&app, &probe_id);
        async move { (probe_health(app, id).await == "down").then_some(()) }
    })
    .await;
    // The parent's own probe alert opens the parent's incident.
    within_a_minute("the database's incident opens", || {
        let app = &app;
        async move { (!incident_services(app).await.is_empty()).then_some(()) }
    })
    .await;
    assert_eq!(
        incident_services(&app).await,
        std::slice::from_ref(&database)
    );
    // Its grandchild names it too, once the read models say it is down.
    let down = within_a_minute("checkout sees its ancestor down", || {
        let (app, checkout) = (&app, &checkout);
        async move {
            let d = dependencies(app, checkout).await;
            (!d["down_ancestors"].as_array().unwrap().is_empty()).then_some(d)
        }
    })
    .await;
    assert_eq!(
        down["down_ancestors"],
        json!([{ "parent_service_id": database, "probe_id": probe_id }])
    );

    // Alertmanager's alerts for the child, and a plain one for the grandchild.
    let am = app.token(&[Role::Integration]);
    let group = "{}:{alertname=\"HighLatency\"}";
    let firing = alertmanager(
        "firing",
        group,
        &[("fp-a", "web-1", "firing"), ("fp-b", "web-2", "firing")],
    );
    let res = app
        .post("/api/v1/integrations/alertmanager", &am, &firing)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let held: Value = res.json().await.unwrap();
    for r in held["results"].as_array().unwrap() {
        assert_eq!(r["outcome"], "suppressed_by_parent", "{held}");
        assert_eq!(r["parent_service_id"], database.as_str(), "{held}");
        assert!(r.get("incident_id").is_none(), "{held}");
    }
    let held_alert = held["results"][0]["alert_id"].as_str().unwrap().to_owned();
    let grandchild = post_alert(&app, "checkout-errors", &checkout).await;
    assert_eq!(
        grandchild["outcome"], "suppressed_by_parent",
        "{grandchild}"
    );
    assert_eq!(grandchild["parent_service_id"], database.as_str());
    // The decision on the receipt names the parent and its probe.
    let res = app
        .get(
            &format!("/api/v1/alerts?service_id={orders}"),
            &app.token(&[Role::Operator]),
        )
        .await;
    let alerts: Value = res.json().await.unwrap();
    let items = alerts["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{alerts}");
    for a in items {
        assert_eq!(
            a["decision"],
            json!({ "outcome": "suppressed_by_parent",
                    "parent_service_id": database, "probe_id": probe_id }),
            "{alerts}"
        );
        assert_eq!(a["incident_id"], Value::Null);
    }
    // Repeated while the parent is still down: counted, still held.
    let res = app
        .post("/api/v1/integrations/alertmanager", &am, &firing)
        .await;
    let repeat: Value = res.json().await.unwrap();
    assert_eq!(repeat["results"][0]["outcome"], "deduplicated", "{repeat}");
    assert_eq!(
        incident_services(&app).await,
        std::slice::from_ref(&database)
    );

    // Back: the database's probe comes up and resolves its alert; the
    // held alerts' next repeat opens the child's incident (the same cycle).
    db.listen().await;
    within_a_minute("the database probe is up", || {
        let (app, id) = (&app, &probe_id);
        async move { (probe_health(app, id).await == "up").then_some(()) }
    })
    .await;
    // (Both may not turn in one notification: what ingestion knows of the
    // ancestors is a second old at most.)
    let afresh = within_a_minute("a repeat of the held alerts opens an incident", || {
        let (app, am, firing) = (&app, &am, &firing);
        async move {
            let res = app
                .post("/api/v1/integrations/alertmanager", am, firing)
                .await;
            let v: Value = res.json().await.unwrap();
            let results = v["results"].as_array().unwrap();
            results
                .iter()
                .all(|r| r["incident_id"].is_string())
                .then_some(v)
        }
    })
    .await;
    let results = afresh["results"].as_array().unwrap();
    assert_eq!(results[0]["alert_id"], held_alert.as_str(), "{afresh}");
    let incident = results[0]["incident_id"].as_str().unwrap().to_owned();
    assert_eq!(results[1]["incident_id"], incident.as_str(), "{afresh}");
    assert_eq!(
        incident_services(&app).await,
        [database.clone(), orders.clone()]
    );
    // The alert list and the incident's timeline show the cycle held first.
    let res = app
        .get(
            &format!("/api/v1/alerts?incident_id={incident}"),
            &app.token(&[Role::Operator]),
        )
        .await;
    let alerts: Value = res.json().await.unwrap();
    let items = alerts["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{alerts}");
    assert!(
        items
            .iter()
            .all(|a| a["incident_id"] == incident.as_str() && a["firing"] == true),
        "{alerts}"
    );
    let res = app
        .get(
            &format!("/api/v1/incidents/{incident}/timeline"),
            &app.token(&[Role::Operator]),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let timeline: Value = res.json().await.unwrap();
    let outcomes: Vec<&str> = timeline["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "AlertReceived" && e["data"]["alert_id"] == held_alert.as_str())
        .map(|e| e["data"]["decision"]["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes.first(),
        Some(&"suppressed_by_parent"),
        "{timeline}"
    );
    assert!(
        matches!(
            outcomes.last(),
            Some(&"opened_incident" | &"attached_to_incident")
        ),
        "{timeline}"
    );
    // A new alert of the grandchild is decided normally again.
    let fresh = post_alert(&app, "checkout-latency", &checkout).await;
    assert_eq!(fresh["outcome"], "opened_incident", "{fresh}");
}

#[tokio::test]
async fn dependencies_refuse_itself_unknown_services_other_tenants_and_cycles_with_problems() {
    let app = spawn_app().await;
    let a = service(&app, "A").await;
    let b = service(&app, "B").await;
    let c = service(&app, "C").await;
    let other_tenant = app.register_tenant("Other MSP").await;
    let outsider = app.token_for(other_tenant, "o", &[Role::Admin], None);
    let res = app
        .post(
            "/api/v1/clients",
            &outsider,
            &json!({ "name": "Elsewhere" }),
        )
        .await;
    let client: Value = res.json().await.unwrap();
    let res = app
        .post(
            "/api/v1/services",
            &outsider,
            &json!({ "client_id": client["id"], "name": "Theirs",
                     "sla_target_pct": 99.9, "notice_period_h": 24 }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let theirs: Value = res.json().await.unwrap();
    let theirs = theirs["id"].as_str().unwrap().to_owned();

    // C → B → A is fine.
    assert_eq!(
        set_dependencies(&app, &b, json!([a])).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        set_dependencies(&app, &c, json!([b, b])).await.status(),
        StatusCode::OK
    );
    let unknown = "00000000-0000-0000-0000-000000000042";
    let too_many: Vec<String> = (0..21)
        .map(|n| format!("00000000-0000-0000-0000-{n:012}"))
        .collect();
    let cases: Vec<(&str, &str, Value, StatusCode, Option<String>)> = vec![
        (
            "itself",
            &a,
            json!([a]),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("itself".into()),
        ),
        (
            "unknown service",
            &a,
            json!([unknown]),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some(unknown.into()),
        ),
        (
            "another tenant's service",
            &a,
            json!([theirs]),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some(theirs.clone()),
        ),
        (
            "a cycle through two others",
            &a,
            json!([c]),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some(format!("{a} → {c} → {b} → {a}")),
        ),
        (
            "a cycle of two",
            &a,
            json!([b]),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some(format!("{a} → {b} → {a}")),
        ),
        (
            "too many",
            &a,
            json!(too_many),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("at most 20".into()),
        ),
        (
            "not a uuid",
            &a,
            json!(["orders"]),
            StatusCode::BAD_REQUEST,
            None,
        ),
        ("not a list", &a, json!(7), StatusCode::BAD_REQUEST, None),
        (
            "NUL",
            &a,
            json!(["\u{0}"]),
            StatusCode::UNPROCESSABLE_ENTITY,
            None,
        ),
        (
            "no such service",
            unknown,
            json!([a]),
            StatusCode::NOT_FOUND,
            None,
        ),
        (
            "not a uuid in the path",
            "orders",
            json!([a]),
            StatusCode::NOT_FOUND,
            None,
        ),
    ];
    for (name, service, body, expected, detail) in cases {
        let res = set_dependencies(&app, service, body).await;
        assert_eq!(res.status(), expected, "{name}");
        assert_eq!(
            res.headers()["content-type"],
            "application/problem+json",
            "{name}"
        );
        let problem: Value = res.json().await.unwrap();
        if let Some(detail) = detail {
            assert!(
                problem["detail"].as_str().unwrap().contains(&detail),
                "{name}: {problem}"
            );
        }
    }
    // An unknown field, no body, and a stale If-Match.
    let url = app.url(&format!("/api/v1/services/{a}/dependencies"));
    let admin = app.token(&[Role::Admin]);
    let res = app
        .http
        .put(&url)
        .bearer_auth(&admin)
        .json(&json!({ "depends_on": [], "parents": [] }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let res = app.http.put(&url).bearer_auth(&admin).send().await.unwrap();
    assert!(res.status().is_client_error(), "{}", res.status());
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let res = app
        .http
        .put(&url)
        .bearer_auth(&admin)
        .header("if-match", "\"7\"")
        .json(&json!({ "depends_on": [] }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PRECONDITION_FAILED);
    // Nothing refused was recorded: B and C's, once each.
    let recorded: i64 = app
        .db
        .superuser()
        .await
        .query_one(
            "SELECT count(*) FROM events WHERE tenant_id = $1 \
             AND event_type IN ('ServiceDependenciesSet', 'DependencyGraphChanged')",
            &[&app.tenant],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(recorded, 4);
    // The same set again records nothing; C's repeat counted once.
    let res = set_dependencies(&app, &c, json!([b])).await;
    assert_eq!(res.status(), StatusCode::OK);
    let same: Value = res.json().await.unwrap();
    assert_eq!(same["version"], 2);
    // Once B no longer depends on A, A may depend on C.
    assert_eq!(
        set_dependencies(&app, &b, json!([])).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        set_dependencies(&app, &a, json!([c])).await.status(),
        StatusCode::OK
    );

    // Roles: only admins set; staff read; clients and integrations do not.
    let res = app
        .http
        .put(&url)
        .bearer_auth(app.token(&[Role::Operator]))
        .json(&json!({ "depends_on": [] }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let client_user = app.token_for(app.tenant, "c", &[Role::Client], Some(uuid::Uuid::now_v7()));
    for token in [app.token(&[Role::Integration]), client_user] {
        let res = app
            .get(&format!("/api/v1/services/{a}/dependencies"), &token)
            .await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
        assert_eq!(res.headers()["content-type"], "application/problem+json");
    }
    // Another tenant sees no such service.
    let res = app
        .get(&format!("/api/v1/services/{a}/dependencies"), &outsider)
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let res = set_dependencies_as(&app, &outsider, &a, json!([])).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

async fn set_dependencies_as(
    app: &TestApp,
    token: &str,
    service: &str,
    depends_on: Value,
) -> reqwest::Response {
    app.http
        .put(app.url(&format!("/api/v1/services/{service}/dependencies")))
        .bearer_auth(token)
        .json(&json!({ "depends_on": depends_on }))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn two_concurrent_changes_that_together_close_a_cycle_do_not_both_commit() {
    let app = spawn_app().await;
    for round in 0..5 {
        let x = service(&app, &format!("X{round}")).await;
        let y = service(&app, &format!("Y{round}")).await;
        let (one, other) = tokio::join!(
            set_dependencies(&app, &x, json!([y])),
            set_dependencies(&app, &y, json!([x]))
        );
        let mut statuses = [one.status(), other.status()];
        statuses.sort();
        assert_eq!(statuses[0], StatusCode::OK, "round {round}: {statuses:?}");
        assert!(
            [StatusCode::CONFLICT, StatusCode::UNPROCESSABLE_ENTITY].contains(&statuses[1]),
            "round {round}: {statuses:?}"
        );
        let x_parents = dependencies(&app, &x).await["depends_on"].clone();
        let y_parents = dependencies(&app, &y).await["depends_on"].clone();
        assert!(
            x_parents == json!([]) || y_parents == json!([]),
            "round {round}: a cycle {x_parents} {y_parents}"
        );
    }
}
