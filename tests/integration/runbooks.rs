//! Runbooks and their executions (issue 5): versions, pinned executions,
//! steps strictly in order, and a double-checked step confirmed by a second,
//! different person before the next one.

use opsledger_domain::access::Role;
use opsledger_testkit::{spawn_app, TestApp};
use opsledger_tests::eventually;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::api_directory::{register_client, register_service};

/// A request with optional `If-Match` and `Idempotency-Key`: status, ETag, body.
pub async fn call(
    app: &TestApp,
    path: &str,
    token: &str,
    body: Option<Value>,
    if_match: Option<&str>,
    key: Option<&str>,
) -> (StatusCode, Option<String>, Value) {
    let mut req = app.http.post(app.url(path)).bearer_auth(token);
    if let Some(m) = if_match {
        req = req.header("if-match", m);
    }
    if let Some(k) = key {
        req = req.header("idempotency-key", k);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    let etag = res
        .headers()
        .get("etag")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = res.text().await.unwrap();
    (
        status,
        etag,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

fn restart_procedure(service_id: &Value) -> Value {
    json!({
        "title": "Restart the order site", "service_id": service_id,
        "steps": [
            { "title": "Drain web-1", "instructions": "Take web-1 out of the load balancer." },
            { "title": "Restart the app", "instructions": "systemctl restart orders", "double_check": true },
            { "title": "Undrain web-1", "instructions": "Put web-1 back." }
        ]
    })
}

async fn publish(app: &TestApp, body: Value) -> Value {
    let (status, etag, runbook) = call(
        app,
        "/api/v1/runbooks",
        &app.token(&[Role::Operator]),
        Some(body),
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{runbook}");
    assert_eq!(etag.as_deref(), Some("\"1\""));
    runbook
}

#[tokio::test]
async fn a_double_checked_step_needs_a_second_different_person_before_the_next_step() {
    let app = spawn_app().await;
    let client = register_client(&app, "Client R").await;
    let service = register_service(&app, client["id"].as_str().unwrap(), "orders").await;
    let runbook = publish(&app, restart_procedure(&service["id"])).await;
    let alice = app.token_for(app.tenant, "alice", &[Role::Operator], None);
    let bob = app.token_for(app.tenant, "bob", &[Role::Maintainer], None);
    let rid = runbook["id"].as_str().unwrap();

    let (status, _, x) = call(
        &app,
        &format!("/api/v1/runbooks/{rid}/executions"),
        &alice,
        None,
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{x}");
    assert_eq!(x["status"], "in_progress");
    assert_eq!(x["next_step"], 1);
    let x_path = format!("/api/v1/executions/{}", x["id"].as_str().unwrap());
    let step = |n: u32, verb: &str| format!("{x_path}/steps/{n}/{verb}");

    // Out of order: the problem names the step that is next.
    let (status, _, p) = call(&app, &step(2, "complete"), &alice, None, None, None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{p}");
    assert_eq!(p["current_state"], "in_progress");
    assert_eq!(p["next_step"], 1);
    assert!(
        p["detail"].as_str().unwrap().contains("step 1 is next"),
        "{p}"
    );

    let (status, etag, _) = call(
        &app,
        &step(1, "complete"),
        &alice,
        None,
        Some("\"1\""),
        None,
    )
    .await;
    assert_eq!((status, etag.as_deref()), (StatusCode::OK, Some("\"2\"")));
    let (status, _, x) = call(
        &app,
        &step(2, "complete"),
        &alice,
        Some(json!({ "note": "restarted at 02:10", "minutes_spent": 4 })),
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{x}");
    assert_eq!(x["awaiting_confirmation"], 2);

    // Step 3 waits for step 2's second person, whoever asks.
    for who in [&alice, &bob] {
        let (status, _, p) = call(&app, &step(3, "complete"), who, None, None, None).await;
        assert_eq!(status, StatusCode::CONFLICT, "{p}");
        assert_eq!(p["awaiting_confirmation"], 2);
        assert!(
            p["detail"]
                .as_str()
                .unwrap()
                .contains("step 2 needs a second person's confirmation"),
            "{p}"
        );
    }
    // The completer cannot be the second person.
    let (status, _, p) = call(&app, &step(2, "confirm"), &alice, None, None, None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{p}");
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("a second, different person must confirm it"),
        "{p}"
    );
    // Nor is finishing as succeeded possible meanwhile.
    let (status, _, p) = call(
        &app,
        &format!("{x_path}/finish"),
        &bob,
        Some(json!({ "outcome": "succeeded" })),
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{p}");

    let (status, _, x) = call(
        &app,
        &step(2, "confirm"),
        &bob,
        Some(json!({ "note": "checked the logs", "minutes_spent": 2 })),
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{x}");
    assert_eq!(x["steps"][1]["confirmed_by"], "bob");
    assert_eq!(x["steps"][1]["confirmation_minutes_spent"], 2);
    assert!(x["awaiting_confirmation"].is_null());
    let (status, _, p) = call(&app, &step(2, "confirm"), &bob, None, None, None).await;
    assert_eq!(status, StatusCode::CONFLICT, "confirmed twice: {p}");

    // Finishing as succeeded with a step left is refused, naming it.
    let (status, _, p) = call(
        &app,
        &format!("{x_path}/finish"),
        &alice,
        Some(json!({ "outcome": "succeeded" })),
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{p}");
    assert_eq!(p["next_step"], 3);
    let (status, _, _) = call(&app, &step(3, "complete"), &alice, None, None, None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, etag, x) = call(
        &app,
        &format!("{x_path}/finish"),
        &alice,
        Some(json!({ "outcome": "succeeded" })),
        Some("\"5\""),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{x}");
    assert_eq!(etag.as_deref(), Some("\"6\""));
    assert_eq!(x["status"], "succeeded");

    // Finished is final; the problem names the state.
    let (status, _, p) = call(&app, &step(3, "complete"), &alice, None, None, None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(p["current_state"], "succeeded");

    // The record: who completed and confirmed each step, and when.
    let x: Value = app.get(&x_path, &bob).await.json().await.unwrap();
    let who: Vec<(Value, Value)> = x["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["completed_by"].clone(), s["confirmed_by"].clone()))
        .collect();
    assert_eq!(
        who,
        vec![
            (json!("alice"), Value::Null),
            (json!("alice"), json!("bob")),
            (json!("alice"), Value::Null)
        ]
    );
    assert!(x["steps"][1]["confirmed_at"].is_string());
    assert_eq!(x["steps"][1]["minutes_spent"], 4);
    assert_eq!(x["finished_by"], "alice");
    assert_eq!(x["version"], 6);

    // The work ledger's keys: each event names the service, and effort is
    // under `minutes_spent`; who did it is the metadata.
    let su = app.db.superuser().await;
    let rows = su
        .query(
            "SELECT event_type, payload::jsonb, metadata::jsonb FROM events \
             WHERE stream_id = $1 ORDER BY stream_version",
            &[&format!("execution-{}", x["id"].as_str().unwrap())],
        )
        .await
        .unwrap();
    let seen: Vec<(String, Value, Value, Value)> = rows
        .iter()
        .map(|r| {
            let (p, m): (Value, Value) = (r.get(1), r.get(2));
            (
                r.get(0),
                p["service_id"].clone(),
                p["minutes_spent"].clone(),
                m["actor"].clone(),
            )
        })
        .collect();
    let s = service["id"].clone();
    assert_eq!(
        seen,
        vec![
            (
                "RunbookExecutionStarted".into(),
                s.clone(),
                Value::Null,
                json!("alice")
            ),
            (
                "StepCompleted".into(),
                s.clone(),
                Value::Null,
                json!("alice")
            ),
            ("StepCompleted".into(), s.clone(), json!(4), json!("alice")),
            (
                "StepDoubleChecked".into(),
                s.clone(),
                json!(2),
                json!("bob")
            ),
            (
                "StepCompleted".into(),
                s.clone(),
                Value::Null,
                json!("alice")
            ),
            (
                "RunbookExecutionFinished".into(),
                s,
                Value::Null,
                json!("alice")
            ),
        ]
    );
}

#[tokio::test]
async fn an_execution_follows_the_version_it_started_on() {
    let app = spawn_app().await;
    let operator = app.token(&[Role::Operator]);
    let runbook = publish(&app, restart_procedure(&Value::Null)).await;
    let rid = runbook["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/runbooks/{rid}");
    let (_, _, first) = call(
        &app,
        &format!("{path}/executions"),
        &operator,
        None,
        None,
        None,
    )
    .await;

    let v2 = json!({ "title": "Restart (short)", "steps": [{ "title": "Restart", "instructions": "just do it" }] });
    let (status, etag, r) = call(
        &app,
        &format!("{path}/versions"),
        &operator,
        Some(v2.clone()),
        Some("\"1\""),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{r}");
    assert_eq!(etag.as_deref(), Some("\"2\""));
    assert_eq!(
        (r["version"].clone(), r["latest_version"].clone()),
        (json!(2), json!(2))
    );
    // Based on version 1 again: somebody published meanwhile.
    let (status, _, p) = call(
        &app,
        &format!("{path}/versions"),
        &operator,
        Some(v2),
        Some("\"1\""),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{p}");
    assert_eq!(p["current_version"], 2);

    // A step with a field nobody reads is refused, not silently dropped.
    let (status, _, _) = call(
        &app,
        &format!("{path}/versions"),
        &operator,
        Some(json!({ "title": "T", "steps": [{ "title": "s", "instructions": "i", "owner": "me" }] })),
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let latest: Value = app.get(&path, &operator).await.json().await.unwrap();
    assert_eq!(latest["title"], "Restart (short)");
    let old: Value = app
        .get(&format!("{path}?version=1"), &operator)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(old["steps"].as_array().unwrap().len(), 3);
    assert_eq!(old["latest_version"], 2);
    assert_eq!(
        app.get(&format!("{path}?version=3"), &operator)
            .await
            .status(),
        StatusCode::NOT_FOUND
    );

    // The first execution keeps version 1's three steps; a new one gets one.
    let x: Value = app
        .get(
            &format!("/api/v1/executions/{}", first["id"].as_str().unwrap()),
            &operator,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(x["runbook_version"], 1);
    assert_eq!(x["steps"].as_array().unwrap().len(), 3);
    let (_, _, second) = call(
        &app,
        &format!("{path}/executions"),
        &operator,
        None,
        None,
        None,
    )
    .await;
    assert_eq!(second["runbook_version"], 2);
    assert_eq!(second["steps"].as_array().unwrap().len(), 1);

    // The list shows the latest version.
    let listed = eventually("the runbook is listed at version 2", || async {
        let page: Value = app
            .get("/api/v1/runbooks", &operator)
            .await
            .json()
            .await
            .unwrap();
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == json!(rid) && r["version"] == 2)
            .cloned()
    })
    .await;
    assert_eq!(listed["step_count"], 1);
}

#[tokio::test]
async fn execution_commands_take_if_match_and_idempotency_keys_and_check_their_incident() {
    let app = spawn_app().await;
    let operator = app.token(&[Role::Operator]);
    let runbook = publish(&app, restart_procedure(&Value::Null)).await;
    let rid = runbook["id"].as_str().unwrap();

    // The incident it serves must exist.
    let unknown = uuid::Uuid::now_v7();
    let (status, _, p) = call(
        &app,
        &format!("/api/v1/runbooks/{rid}/executions"),
        &operator,
        Some(json!({ "incident_id": unknown })),
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    let incident: Value = app
        .post(
            "/api/v1/incidents",
            &operator,
            &json!({ "title": "Orders slow", "severity": "error" }),
        )
        .await
        .json()
        .await
        .unwrap();
    let (status, _, x) = call(
        &app,
        &format!("/api/v1/runbooks/{rid}/executions"),
        &operator,
        Some(json!({ "incident_id": incident["id"] })),
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{x}");
    assert_eq!(x["incident_id"], incident["id"]);
    let x_path = format!("/api/v1/executions/{}", x["id"].as_str().unwrap());
    // The incident's executions can be found.
    let iid = incident["id"].as_str().unwrap();
    let found = eventually("the execution is listed under its incident", || async {
        let page: Value = app
            .get(&format!("/api/v1/executions?incident_id={iid}"), &operator)
            .await
            .json()
            .await
            .unwrap();
        (page["items"].as_array().unwrap().len() == 1).then_some(page)
    })
    .await;
    assert_eq!(found["items"][0]["id"], x["id"]);
    assert_eq!(found["items"][0]["status"], "in_progress");

    // A stale If-Match is refused with where the execution stands.
    let (status, _, _) = call(
        &app,
        &format!("{x_path}/steps/1/complete"),
        &operator,
        None,
        Some("\"1\""),
        Some("k-1"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, p) = call(
        &app,
        &format!("{x_path}/finish"),
        &operator,
        Some(json!({ "outcome": "aborted", "note": "wrong host" })),
        Some("\"1\""),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{p}");
    assert_eq!(
        (p["current_version"].clone(), p["current_state"].clone()),
        (json!(2), json!("in_progress"))
    );

    // A retry with the key answers as the first time and records nothing more.
    let (status, etag, again) = call(
        &app,
        &format!("{x_path}/steps/1/complete"),
        &operator,
        None,
        Some("\"1\""),
        Some("k-1"),
    )
    .await;
    assert_eq!(
        (status, etag.as_deref()),
        (StatusCode::OK, Some("\"2\"")),
        "{again}"
    );
    assert_eq!(again["version"], 2);
    let now: Value = app.get(&x_path, &operator).await.json().await.unwrap();
    assert_eq!(now["version"], 2);

    // Steps outside the procedure are 422.
    let (status, _, _) = call(
        &app,
        &format!("{x_path}/steps/9/complete"),
        &operator,
        None,
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    // Aborting needs a reason; with one, it is final.
    let (status, _, _) = call(
        &app,
        &format!("{x_path}/finish"),
        &operator,
        Some(json!({ "outcome": "aborted" })),
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _, x) = call(
        &app,
        &format!("{x_path}/finish"),
        &operator,
        Some(json!({ "outcome": "aborted", "note": "wrong host" })),
        None,
        None,
    )
    .await;
    assert_eq!(
        (status, x["status"].clone()),
        (StatusCode::OK, json!("aborted"))
    );
    eventually("the list follows the execution to aborted", || async {
        let page: Value = app
            .get(
                &format!("/api/v1/executions?status=aborted&runbook_id={rid}"),
                &operator,
            )
            .await
            .json()
            .await
            .unwrap();
        (page["items"][0]["id"] == x["id"]).then_some(())
    })
    .await;
    let in_progress: Value = app
        .get(
            &format!("/api/v1/executions?status=in_progress&incident_id={iid}"),
            &operator,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(in_progress["items"], json!([]));
    let (status, _, p) = call(
        &app,
        &format!("{x_path}/finish"),
        &operator,
        Some(json!({ "outcome": "aborted", "note": "again" })),
        None,
        None,
    )
    .await;
    assert_eq!(
        (status, p["current_state"].clone()),
        (StatusCode::CONFLICT, json!("aborted"))
    );

    // Another tenant's execution is 404.
    let other = app.register_tenant("Other MSP").await;
    let stranger = app.token_for(other, "x", &[Role::Admin], None);
    for path in [x_path.clone(), format!("/api/v1/runbooks/{rid}")] {
        assert_eq!(
            app.get(&path, &stranger).await.status(),
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    let (status, _, _) = call(
        &app,
        &format!("{x_path}/steps/2/complete"),
        &stranger,
        None,
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// Two people confirming one step at the same moment: exactly one is
/// recorded, the other is told of the conflict (SPEC R3).
#[tokio::test]
async fn concurrent_confirmations_of_one_step_record_exactly_one() {
    let app = spawn_app().await;
    let alice = app.token_for(app.tenant, "alice", &[Role::Operator], None);
    let runbook = publish(&app, restart_procedure(&Value::Null)).await;
    let rid = runbook["id"].as_str().unwrap();
    let (_, _, x) = call(
        &app,
        &format!("/api/v1/runbooks/{rid}/executions"),
        &alice,
        None,
        None,
        None,
    )
    .await;
    let x_path = format!("/api/v1/executions/{}", x["id"].as_str().unwrap());
    for n in [1, 2] {
        let (status, _, _) = call(
            &app,
            &format!("{x_path}/steps/{n}/complete"),
            &alice,
            None,
            None,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
    }
    for round in 0..5 {
        let confirmers: Vec<String> = (0..4)
            .map(|i| {
                app.token_for(
                    app.tenant,
                    &format!("checker-{round}-{i}"),
                    &[Role::Operator],
                    None,
                )
            })
            .collect();
        let path = format!("{x_path}/steps/2/confirm");
        let results = futures_util::future::join_all(
            confirmers
                .iter()
                .map(|t| call(&app, &path, t, None, None, None)),
        )
        .await;
        let ok = results.iter().filter(|r| r.0 == StatusCode::OK).count();
        let conflicts = results
            .iter()
            .filter(|r| r.0 == StatusCode::CONFLICT)
            .count();
        if round == 0 {
            assert_eq!((ok, conflicts), (1, 3), "{results:?}");
        } else {
            assert_eq!((ok, conflicts), (0, 4), "{results:?}");
        }
    }
    let x: Value = app.get(&x_path, &alice).await.json().await.unwrap();
    assert_eq!(x["version"], 4, "one confirmation recorded: {x}");
    assert!(x["steps"][1]["confirmed_by"]
        .as_str()
        .unwrap()
        .starts_with("checker-0-"));
}
