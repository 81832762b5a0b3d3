//! The incident lifecycle, reads and access (issue 3).

use opsledger_domain::access::Role;
use opsledger_testkit::{spawn_app, TestApp};
use opsledger_tests::eventually;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::alerts::service;

async fn open(app: &TestApp, service_id: Option<&str>, title: &str, severity: &str) -> Value {
    let res = app
        .post("/api/v1/incidents", &app.token(&[Role::Operator]), &json!({
            "title": title, "service_id": service_id, "severity": severity, "category": "application"
        }))
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    res.json().await.unwrap()
}

async fn command(
    app: &TestApp,
    id: &str,
    verb: &str,
    if_match: Option<i64>,
    body: Value,
) -> reqwest::Response {
    let mut req = app
        .http
        .post(app.url(&format!("/api/v1/incidents/{id}/{verb}")))
        .bearer_auth(app.token(&[Role::Operator]))
        .json(&body);
    if let Some(v) = if_match {
        req = req.header("if-match", format!("\"{v}\""));
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn an_incident_opened_by_hand_walks_its_whole_lifecycle() {
    let app = spawn_app().await;
    let svc = service(&app, "orders").await;
    let incident = open(&app, Some(&svc), "Orders checkout failing", "error").await;
    let id = incident["id"].as_str().unwrap();
    assert_eq!(
        (incident["status"].as_str(), incident["version"].as_i64()),
        (Some("triggered"), Some(1))
    );

    let steps: Vec<(&str, Value, &str)> = vec![
        ("acknowledge", json!({}), "acknowledged"),
        (
            "notes",
            json!({ "text": "Looking at the load balancer", "visibility": "internal" }),
            "acknowledged",
        ),
        (
            "notes",
            json!({ "text": "We are investigating slow checkouts", "visibility": "client" }),
            "acknowledged",
        ),
        (
            "actions",
            json!({ "kind": "restart", "description": "Restarted web-1" }),
            "acknowledged",
        ),
        (
            "severity",
            json!({ "severity": "critical" }),
            "acknowledged",
        ),
        ("mitigate", json!({}), "mitigated"),
        ("resolve", json!({}), "resolved"),
        (
            "reopen",
            json!({ "reason": "Errors are back" }),
            "triggered",
        ),
        ("resolve", json!({}), "resolved"),
        ("triage", json!({ "outcome": "actionable" }), "resolved"),
        (
            "impact",
            json!({ "impact_start": "2026-11-25T01:00:00Z", "impact_end": "2026-11-25T01:20:00Z", "reason": "from the load balancer logs" }),
            "resolved",
        ),
        ("close", json!({}), "closed"),
    ];
    let mut version = 1;
    for (verb, body, status) in steps {
        let res = command(&app, id, verb, Some(version), body).await;
        assert_eq!(res.status(), StatusCode::OK, "{verb}");
        assert_eq!(
            res.headers()["etag"],
            format!("\"{}\"", version + 1).as_str(),
            "{verb}"
        );
        let view: Value = res.json().await.unwrap();
        assert_eq!(view["status"], status, "{verb}");
        version = view["version"].as_i64().unwrap();
    }
    let operator = app.token(&[Role::Operator]);
    let done: Value = app
        .get(&format!("/api/v1/incidents/{id}"), &operator)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(done["severity"], "critical");
    assert_eq!(done["triage"], "actionable");
    assert_eq!(done["impact_end"], "2026-11-25T01:20:00Z");
    let timeline: Value = app
        .get(&format!("/api/v1/incidents/{id}/timeline"), &operator)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(timeline["items"].as_array().unwrap().len(), 13);
    let restart = timeline["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "ActionRecorded")
        .unwrap();
    assert_eq!(
        (
            restart["work_class"].as_str(),
            restart["data"]["kind"].as_str()
        ),
        (Some("operations"), Some("restart"))
    );
}

#[tokio::test]
async fn an_invalid_transition_is_a_409_naming_the_current_state() {
    let app = spawn_app().await;
    let incident = open(&app, None, "Something odd", "warning").await;
    let id = incident["id"].as_str().unwrap();
    for (verb, body) in [("close", json!({})), ("reopen", json!({ "reason": "x" }))] {
        let res = command(&app, id, verb, None, body).await;
        assert_eq!(res.status(), StatusCode::CONFLICT, "{verb}");
        assert_eq!(res.headers()["content-type"], "application/problem+json");
        let problem: Value = res.json().await.unwrap();
        assert_eq!(problem["current_state"], "triggered");
        assert!(
            problem["detail"].as_str().unwrap().contains("triggered"),
            "{problem}"
        );
    }
    let bad = command(
        &app,
        id,
        "severity",
        None,
        json!({ "severity": "catastrophic" }),
    )
    .await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let empty = command(
        &app,
        id,
        "notes",
        None,
        json!({ "text": " ", "visibility": "internal" }),
    )
    .await;
    assert_eq!(empty.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // A body that may be left out is still checked when it is there.
    let operator = app.token(&[Role::Operator]);
    for (body, content_type, expected) in [
        (
            "{\"impact_end\": \"soon\"}",
            "application/json",
            StatusCode::BAD_REQUEST,
        ),
        (
            "{\"until\": \"2026-11-25T01:00:00Z\"}",
            "application/json",
            StatusCode::BAD_REQUEST,
        ),
        (
            "impact_end=now",
            "text/plain",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
    ] {
        let res = app
            .http
            .post(app.url(&format!("/api/v1/incidents/{id}/mitigate")))
            .bearer_auth(&operator)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), expected, "{body}");
    }
    let missing = command(
        &app,
        &uuid::Uuid::now_v7().to_string(),
        "acknowledge",
        None,
        json!({}),
    )
    .await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_acknowledgements_yield_one_event_and_one_refusal() {
    let app = spawn_app().await;
    let incident = open(&app, None, "Contested", "critical").await;
    let id = incident["id"].as_str().unwrap().to_owned();
    let (a, b) = tokio::join!(
        command(&app, &id, "acknowledge", Some(1), json!({})),
        command(&app, &id, "acknowledge", Some(1), json!({}))
    );
    let mut statuses = [a.status(), b.status()];
    statuses.sort();
    // The loser read the stream before the winner committed (its append
    // conflicts: 409) or after (its If-Match is stale: 412).
    assert_eq!(statuses[0], StatusCode::OK, "{statuses:?}");
    assert!(
        [StatusCode::CONFLICT, StatusCode::PRECONDITION_FAILED].contains(&statuses[1]),
        "{statuses:?}"
    );
    let su = app.db.superuser().await;
    let n: i64 = su
        .query_one("SELECT count(*) FROM events WHERE event_type = 'IncidentAcknowledged' AND stream_id = $1", &[&format!("incident-{id}")])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    // A stale If-Match is refused (412) with the current version.
    let stale = command(
        &app,
        &id,
        "notes",
        Some(1),
        json!({ "text": "late", "visibility": "internal" }),
    )
    .await;
    assert_eq!(stale.status(), StatusCode::PRECONDITION_FAILED);
    let problem: Value = stale.json().await.unwrap();
    assert_eq!(problem["current_version"], 2);
}

#[tokio::test]
async fn an_incident_can_be_read_as_of_a_past_instant() {
    let app = spawn_app().await;
    let incident = open(&app, None, "Time travel", "info").await;
    let id = incident["id"].as_str().unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let between = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert_eq!(
        command(&app, id, "acknowledge", None, json!({}))
            .await
            .status(),
        StatusCode::OK
    );
    let operator = app.token(&[Role::Operator]);
    let then: Value = app
        .get(
            &format!("/api/v1/incidents/{id}?as_of={between}"),
            &operator,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (then["status"].as_str(), then["version"].as_i64()),
        (Some("triggered"), Some(1))
    );
    let now: Value = app
        .get(&format!("/api/v1/incidents/{id}"), &operator)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(now["status"], "acknowledged");
}

#[tokio::test]
async fn incidents_are_filtered_and_paged() {
    let app = spawn_app().await;
    let orders = service(&app, "orders").await;
    let billing = service(&app, "billing").await;
    let a = open(&app, Some(&orders), "A", "critical").await;
    let b = open(&app, Some(&billing), "B", "warning").await;
    let c = open(&app, Some(&orders), "C", "warning").await;
    command(
        &app,
        c["id"].as_str().unwrap(),
        "acknowledge",
        None,
        json!({}),
    )
    .await;
    let operator = app.token(&[Role::Operator]);
    eventually("all three are projected", || async {
        let page: Value = app
            .get("/api/v1/incidents?status=acknowledged", &operator)
            .await
            .json()
            .await
            .unwrap();
        let all: Value = app
            .get("/api/v1/incidents", &operator)
            .await
            .json()
            .await
            .unwrap();
        (page["items"].as_array().unwrap().len() == 1
            && all["items"].as_array().unwrap().len() == 3)
            .then_some(())
    })
    .await;
    let ids = |v: Value| {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let get = |q: String| {
        let app = &app;
        let operator = &operator;
        async move {
            app.get(&format!("/api/v1/incidents{q}"), operator)
                .await
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let id = |v: &Value| v["id"].as_str().unwrap().to_owned();
    assert_eq!(
        ids(get(format!("?service_id={orders}")).await),
        vec![id(&c), id(&a)],
        "newest first"
    );
    assert_eq!(
        ids(get("?severity=warning".into()).await),
        vec![id(&c), id(&b)]
    );
    assert_eq!(
        ids(get("?status=triggered&severity=critical".into()).await),
        vec![id(&a)]
    );
    let billing_client = app
        .get(&format!("/api/v1/services/{billing}"), &operator)
        .await
        .json::<Value>()
        .await
        .unwrap()["client_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The client filter asks the directory read model whose client a service
    // is; it follows the log apart from the incidents' and may be behind it.
    let of_billing = eventually("billing's incident is listed by client", || async {
        let listed = ids(get(format!("?client_id={billing_client}")).await);
        (!listed.is_empty()).then_some(listed)
    })
    .await;
    assert_eq!(of_billing, vec![id(&b)]);
    assert!(ids(get("?opened_until=2000-01-01T00:00:00Z".into()).await).is_empty());
    assert_eq!(
        ids(get("?opened_since=2000-01-01T00:00:00Z".into()).await).len(),
        3
    );
    let first = get("?limit=2".into()).await;
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let second = get(format!("?limit=2&before={cursor}")).await;
    assert_eq!(
        ids(first)
            .into_iter()
            .chain(ids(second))
            .collect::<Vec<_>>(),
        vec![id(&c), id(&b), id(&a)]
    );
    let bad = app
        .get("/api/v1/incidents?status=sleeping", &operator)
        .await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_client_sees_only_its_own_incidents_and_never_internal_notes() {
    let app = spawn_app().await;
    let mine = service(&app, "my-site").await;
    let theirs = service(&app, "their-site").await;
    let operator = app.token(&[Role::Operator]);
    let my_client = app
        .get(&format!("/api/v1/services/{mine}"), &operator)
        .await
        .json::<Value>()
        .await
        .unwrap()["client_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let my_incident = open(&app, Some(&mine), "Mine is down", "critical").await;
    let their_incident = open(&app, Some(&theirs), "Theirs is down", "critical").await;
    let my_id = my_incident["id"].as_str().unwrap();
    command(
        &app,
        my_id,
        "notes",
        None,
        json!({ "text": "root password is in the vault", "visibility": "internal" }),
    )
    .await;
    command(
        &app,
        my_id,
        "notes",
        None,
        json!({ "text": "We are on it", "visibility": "client" }),
    )
    .await;

    let me = app.token_for(
        app.tenant,
        "client-user",
        &[Role::Client],
        Some(my_client.parse().unwrap()),
    );
    assert_eq!(
        app.get(&format!("/api/v1/incidents/{my_id}"), &me)
            .await
            .status(),
        StatusCode::OK
    );
    let theirs_path = format!(
        "/api/v1/incidents/{}",
        their_incident["id"].as_str().unwrap()
    );
    assert_eq!(
        app.get(&theirs_path, &me).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get(&format!("{theirs_path}/timeline"), &me)
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    let timeline: Value = app
        .get(&format!("/api/v1/incidents/{my_id}/timeline"), &me)
        .await
        .json()
        .await
        .unwrap();
    let notes: Vec<&str> = timeline["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "NoteAdded")
        .map(|e| e["data"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(notes, vec!["We are on it"]);
    let staff: Value = app
        .get(&format!("/api/v1/incidents/{my_id}/timeline"), &operator)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        staff["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == "NoteAdded")
            .count(),
        2
    );

    eventually("both incidents are projected", || async {
        let all: Value = app
            .get("/api/v1/incidents", &operator)
            .await
            .json()
            .await
            .unwrap();
        (all["items"].as_array().unwrap().len() == 2).then_some(())
    })
    .await;
    // The list asks the directory read model whose client a service is; it
    // follows the log like the incidents' and may be a moment behind it.
    let listed: Value = eventually("the client's incident is listed", || async {
        let listed: Value = app
            .get("/api/v1/incidents", &me)
            .await
            .json()
            .await
            .unwrap();
        (!listed["items"].as_array().unwrap().is_empty()).then_some(listed)
    })
    .await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    assert_eq!(listed["items"][0]["id"], my_id);
    // Clients read; they do not respond.
    let ack = app
        .http
        .post(app.url(&format!("/api/v1/incidents/{my_id}/acknowledge")))
        .bearer_auth(&me)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(ack.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn another_tenants_incident_does_not_exist_for_you() {
    let app = spawn_app().await;
    let incident = open(&app, None, "Ours", "critical").await;
    let id = incident["id"].as_str().unwrap();
    let other = app.register_tenant("Other MSP").await;
    let outsider = app.token_for(other, "o", &[Role::Admin], None);
    assert_eq!(
        app.get(&format!("/api/v1/incidents/{id}"), &outsider)
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get(&format!("/api/v1/incidents/{id}/timeline"), &outsider)
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    let ack = app
        .http
        .post(app.url(&format!("/api/v1/incidents/{id}/acknowledge")))
        .bearer_auth(&outsider)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(ack.status(), StatusCode::NOT_FOUND);
    let listed: Value = app
        .get("/api/v1/incidents", &outsider)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"], json!([]));
}

#[tokio::test]
async fn roles_are_enforced_on_every_incident_route() {
    let app = spawn_app().await;
    let svc = service(&app, "orders").await;
    let client_id = app
        .get(
            &format!("/api/v1/services/{svc}"),
            &app.token(&[Role::Operator]),
        )
        .await
        .json::<Value>()
        .await
        .unwrap()["client_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    for role in Role::ALL {
        let token = app.token_for(
            app.tenant,
            "u",
            &[role],
            (role == Role::Client).then_some(client_id),
        );
        let incident = open(&app, Some(&svc), &format!("For {role:?}"), "warning").await;
        let id = incident["id"].as_str().unwrap();
        let reads = [
            format!("/api/v1/incidents/{id}"),
            format!("/api/v1/incidents/{id}/timeline"),
            "/api/v1/incidents".to_owned(),
            "/api/v1/alerts".to_owned(),
        ];
        let may_read = role != Role::Integration;
        for path in &reads {
            let status = app.get(path, &token).await.status();
            assert_eq!(
                status == StatusCode::OK,
                may_read,
                "{role:?} GET {path}: {status}"
            );
        }
        let may_respond = matches!(role, Role::Operator | Role::Maintainer | Role::Admin);
        let res = app
            .http
            .post(app.url(&format!("/api/v1/incidents/{id}/acknowledge")))
            .bearer_auth(&token)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            res.status() == StatusCode::OK,
            may_respond,
            "{role:?} acknowledge: {}",
            res.status()
        );
        let res = app
            .post(
                "/api/v1/incidents",
                &token,
                &json!({ "title": "by hand", "severity": "info" }),
            )
            .await;
        assert_eq!(
            res.status() == StatusCode::CREATED,
            may_respond,
            "{role:?} open: {}",
            res.status()
        );
        let may_send = matches!(
            role,
            Role::Integration | Role::Operator | Role::Maintainer | Role::Admin
        );
        let res = app.post("/api/v1/alerts", &token, &json!({ "source": "x", "dedup_key": format!("k-{role:?}"), "summary": "s", "severity": "info" })).await;
        assert_eq!(
            res.status() == StatusCode::ACCEPTED,
            may_send,
            "{role:?} alert: {}",
            res.status()
        );
    }
}

/// SPEC §3.5 for lifecycle commands: a retry with the same `Idempotency-Key`
/// gets the first answer and records nothing twice; the key reused for
/// another request is refused.
#[tokio::test]
async fn a_retried_command_with_its_key_is_answered_once_and_recorded_once() {
    let app = spawn_app().await;
    let incident = open(&app, None, "Disk full on db-1", "warning").await;
    let id = incident["id"].as_str().unwrap();
    let operator = app.token(&[Role::Operator]);
    let send = |verb: &'static str, key: &'static str, body: Value| {
        let (app, operator) = (&app, &operator);
        async move {
            app.http
                .post(app.url(&format!("/api/v1/incidents/{id}/{verb}")))
                .bearer_auth(operator)
                .header("idempotency-key", key)
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    let note = json!({ "text": "Cleared old WAL files", "visibility": "internal" });
    let first = send("notes", "note-1", note.clone()).await;
    assert_eq!(first.status(), StatusCode::OK);
    let first_etag = first.headers()["etag"].to_str().unwrap().to_owned();
    let first: Value = first.json().await.unwrap();
    let again = send("notes", "note-1", note.clone()).await;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.headers()["etag"].to_str().unwrap(), first_etag);
    assert_eq!(again.json::<Value>().await.unwrap(), first);
    let reused = send(
        "notes",
        "note-1",
        json!({ "text": "Something else", "visibility": "internal" }),
    )
    .await;
    assert_eq!(reused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reused.headers()["content-type"], "application/problem+json");

    // A retried acknowledgement is the first answer again, not a 409.
    let ack = send("acknowledge", "ack-1", json!({})).await;
    assert_eq!(ack.status(), StatusCode::OK);
    let ack_again = send("acknowledge", "ack-1", json!({})).await;
    assert_eq!(ack_again.status(), StatusCode::OK);
    assert_eq!(ack_again.headers()["idempotent-replayed"], "true");
    // Without the key, acknowledging twice is the invalid transition it is.
    assert_eq!(
        command(&app, id, "acknowledge", None, json!({}))
            .await
            .status(),
        StatusCode::CONFLICT
    );

    let timeline: Value = app
        .get(&format!("/api/v1/incidents/{id}/timeline"), &operator)
        .await
        .json()
        .await
        .unwrap();
    let count = |kind: &str| {
        timeline["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == kind)
            .count()
    };
    assert_eq!((count("NoteAdded"), count("IncidentAcknowledged")), (1, 1));
}

/// One clock: a command's answer folds its own events at the instant they
/// were recorded, so what it says (`acknowledged_at`, `resolved_at`) is what
/// a later read of the incident says, and a retry with the same
/// Idempotency-Key is answered the same again.
#[tokio::test]
async fn a_commands_answer_says_what_a_later_read_says() {
    let app = spawn_app().await;
    let incident = open(&app, None, "Clocks", "error").await;
    let id = incident["id"].as_str().unwrap().to_owned();
    let operator = app.token(&[Role::Operator]);
    let read: Value = app
        .get(&format!("/api/v1/incidents/{id}"), &operator)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(incident["opened_at"], read["opened_at"], "opening");
    let post = |verb: &'static str| {
        app.http
            .post(app.url(&format!("/api/v1/incidents/{id}/{verb}")))
            .bearer_auth(&operator)
            .header("Idempotency-Key", format!("clock-{verb}"))
            .json(&json!({}))
    };
    for (verb, field) in [
        ("acknowledge", "acknowledged_at"),
        ("resolve", "resolved_at"),
    ] {
        let res = post(verb).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let answered: Value = res.json().await.unwrap();
        let read: Value = app
            .get(&format!("/api/v1/incidents/{id}"), &operator)
            .await
            .json()
            .await
            .unwrap();
        assert!(answered[field].is_string(), "{answered}");
        assert_eq!(answered[field], read[field], "{verb}");
        assert_eq!(answered["version"], read["version"]);
        let again: Value = post(verb).send().await.unwrap().json().await.unwrap();
        assert_eq!(again, answered, "the retry is answered the same");
    }
}
