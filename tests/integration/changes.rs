//! Changes (issue 5, SPEC §5, §6): the whole workflow over HTTP, four eyes,
//! emergency changes flagged until approved, If-Match, links checked against
//! the log, freezes and schedule conflicts, the change history of a service,
//! every route's roles and tenants apart.

use opsledger_domain::access::Role;
use opsledger_testkit::{spawn_app, TestApp};
use opsledger_tests::eventually;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::api_directory::{register_client, register_service};

pub struct Answer {
    pub status: StatusCode,
    pub etag: Option<String>,
    pub body: Value,
}

pub async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    if_match: Option<i64>,
    body: Option<Value>,
) -> Answer {
    let mut req = app.http.request(method, app.url(path)).bearer_auth(token);
    if let Some(v) = if_match {
        req = req.header("if-match", format!("\"{v}\""));
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    let etag = res
        .headers()
        .get("etag")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = res.text().await.unwrap();
    Answer {
        status,
        etag,
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
    }
}

/// A step that must succeed; returns the change after it.
async fn ok(app: &TestApp, token: &str, id: &str, step: &str, body: Value) -> Value {
    let a = call(
        app,
        Method::POST,
        &format!("/api/v1/changes/{id}/{step}"),
        token,
        None,
        Some(body),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{step}: {}", a.body);
    a.body
}

pub fn normal_change(service: &Value) -> Value {
    json!({
        "kind": "normal", "category": "security_patch", "title": "OpenSSL 3.0.15 に更新",
        "risk": "medium", "impact": "Web servers restart one at a time",
        "rollback_plan": "Reinstall 3.0.14 from the local mirror", "service_ids": [service["id"]]
    })
}

fn token(app: &TestApp, subject: &str, role: Role) -> String {
    app.token_for(app.tenant, subject, &[role], None)
}

async fn setup(app: &TestApp) -> (Value, Value) {
    let client = register_client(app, "株式会社サンプル").await;
    let service = register_service(app, client["id"].as_str().unwrap(), "受注サイト").await;
    (client, service)
}

pub async fn request(app: &TestApp, token: &str, body: Value) -> Value {
    let a = call(
        app,
        Method::POST,
        "/api/v1/changes",
        token,
        None,
        Some(body),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    assert_eq!(a.etag.as_deref(), Some("\"1\""));
    a.body
}

#[tokio::test]
async fn a_normal_change_runs_its_workflow_with_four_eyes_and_if_match() {
    let app = spawn_app().await;
    let (_, service) = setup(&app).await;
    let maint = token(&app, "maint-1", Role::Maintainer);
    // The requester holds the approver role too: four eyes still refuse.
    let requester_as_approver = app.token_for(
        app.tenant,
        "maint-1",
        &[Role::Maintainer, Role::Approver],
        None,
    );
    let approver = token(&app, "approver-1", Role::Approver);

    // A normal change needs a rollback plan.
    let mut no_plan = normal_change(&service);
    no_plan["rollback_plan"] = Value::Null;
    let a = call(
        &app,
        Method::POST,
        "/api/v1/changes",
        &maint,
        None,
        Some(no_plan),
    )
    .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(a.body["detail"].as_str().unwrap().contains("rollback_plan"));

    let change = request(&app, &maint, normal_change(&service)).await;
    let id = change["id"].as_str().unwrap().to_owned();
    assert_eq!(change["status"], "draft");
    assert_eq!(change["requested_by"], "maint-1");
    assert_eq!(change["approval_missing"], false);
    let path = |step: &str| format!("/api/v1/changes/{id}/{step}");

    let a = call(
        &app,
        Method::POST,
        &path("submit"),
        &maint,
        Some(1),
        Some(json!({ "minutes_spent": 10 })),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.etag.as_deref(), Some("\"2\""));
    let submitted_at = chrono::Utc::now();

    // Four eyes: the requester may not approve, whatever roles they hold.
    let a = call(
        &app,
        Method::POST,
        &path("approve"),
        &requester_as_approver,
        None,
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
    assert!(
        a.body["detail"].as_str().unwrap().contains("four eyes"),
        "{}",
        a.body
    );
    // A maintainer is no approver.
    let a = call(
        &app,
        Method::POST,
        &path("approve"),
        &token(&app, "m2", Role::Maintainer),
        None,
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    // Not before approval: scheduling a submitted change names its state.
    let a = call(
        &app,
        Method::POST,
        &path("schedule"),
        &maint,
        None,
        Some(json!({
            "start": "2030-01-05T01:00:00Z", "end": "2030-01-05T03:00:00Z"
        })),
    )
    .await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.body);
    assert_eq!(a.body["current_state"], "submitted");

    let approved = ok(
        &app,
        &approver,
        &id,
        "approve",
        json!({ "comment": "OK for Sunday", "minutes_spent": 5 }),
    )
    .await;
    assert_eq!(approved["status"], "approved");
    assert_eq!(approved["approvals"][0]["by"], "approver-1");
    assert_eq!(approved["approvals"][0]["retroactive"], false);
    assert!(approved["approvals"][0]["at"].is_string());

    // A stale If-Match is 412, naming the current version and state.
    let a = call(
        &app,
        Method::POST,
        &path("schedule"),
        &maint,
        Some(2),
        Some(json!({
            "start": "2030-01-05T01:00:00Z", "end": "2030-01-05T03:00:00Z"
        })),
    )
    .await;
    assert_eq!(a.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(a.body["current_version"], 3);
    assert_eq!(a.body["current_state"], "approved");
    // An invalid transition names the current state.
    let a = call(&app, Method::POST, &path("submit"), &maint, None, None).await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    assert_eq!(a.body["current_state"], "approved");
    assert!(a.body["detail"].as_str().unwrap().contains("approved"));

    let a = call(
        &app,
        Method::POST,
        &path("schedule"),
        &maint,
        Some(3),
        Some(json!({
            "start": "2030-01-05T01:00:00Z", "end": "2030-01-05T03:00:00Z"
        })),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["schedule"]["start"], "2030-01-05T01:00:00Z");
    assert_eq!(a.body["conflicts"], json!([]));
    ok(&app, &maint, &id, "start", json!({})).await;
    let done = ok(
        &app,
        &maint,
        &id,
        "complete",
        json!({ "note": "all nodes on 3.0.15", "minutes_spent": 45 }),
    )
    .await;
    assert_eq!(
        (done["status"].as_str(), done["outcome"].as_str()),
        (Some("completed"), Some("completed"))
    );
    let bad = call(
        &app,
        Method::POST,
        &path("review"),
        &maint,
        None,
        Some(json!({ "summary": "x", "minutes_spent": 99999 })),
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let reviewed = ok(
        &app,
        &approver,
        &id,
        "review",
        json!({ "summary": "No customer impact" }),
    )
    .await;
    assert_eq!(reviewed["status"], "reviewed");
    assert_eq!(reviewed["minutes_spent"], 60);
    assert_eq!(reviewed["version"], 7);

    let a = call(
        &app,
        Method::GET,
        &format!("/api/v1/changes/{id}"),
        &token(&app, "aud", Role::Auditor),
        None,
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.etag.as_deref(), Some("\"7\""));
    assert_eq!(a.body, reviewed);
    // As it stood just after submission.
    let as_of = submitted_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let a = call(
        &app,
        Method::GET,
        &format!("/api/v1/changes/{id}?as_of={}", as_of.replace('+', "%2B")),
        &maint,
        None,
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["status"], "submitted");
    assert_eq!(a.body["version"], 2);

    // Every event of the stream names the change's services.
    let client = app.app_state.pool.get().await.unwrap();
    let events =
        opsledger_store::read::read_stream(&client, app.tenant, &format!("change-{id}"), None)
            .await
            .unwrap();
    assert_eq!(events.len(), 7);
    for e in &events {
        assert_eq!(
            e.payload["service_ids"],
            json!([service["id"]]),
            "{}",
            e.event_type
        );
        assert_eq!(e.work_class.as_str(), "maintenance");
    }
    let completed = events
        .iter()
        .find(|e| e.event_type == "ChangeCompleted")
        .unwrap();
    assert_eq!(completed.payload["minutes_spent"], 45);
}

/// The ways a change ends other than completed: rejected on review, and
/// failed then rolled back, each recorded with its reason.
#[tokio::test]
async fn a_change_is_rejected_or_fails_and_is_rolled_back() {
    let app = spawn_app().await;
    let (_, service) = setup(&app).await;
    let maint = token(&app, "maint-1", Role::Maintainer);
    let approver = token(&app, "owner", Role::Approver);

    let change = request(&app, &maint, normal_change(&service)).await;
    let id = change["id"].as_str().unwrap().to_owned();
    ok(&app, &maint, &id, "submit", json!({})).await;
    let rejected = ok(
        &app,
        &approver,
        &id,
        "reject",
        json!({ "reason": "no rollback test yet" }),
    )
    .await;
    assert_eq!(rejected["status"], "rejected", "{rejected}");

    let change = request(
        &app,
        &maint,
        json!({
            "kind": "emergency", "category": "fix", "title": "Restart the queue",
            "risk": "high", "impact": "Orders stall", "service_ids": [service["id"]]
        }),
    )
    .await;
    let id = change["id"].as_str().unwrap().to_owned();
    ok(&app, &maint, &id, "start", json!({})).await;
    let failed = ok(
        &app,
        &maint,
        &id,
        "fail",
        json!({ "reason": "the queue did not drain" }),
    )
    .await;
    assert_eq!(failed["status"], "failed", "{failed}");
    let rolled = ok(
        &app,
        &maint,
        &id,
        "rollback",
        json!({ "reason": "back to the old config" }),
    )
    .await;
    assert_eq!(rolled["status"], "rolled_back", "{rolled}");
}

#[tokio::test]
async fn an_emergency_change_starts_first_and_is_flagged_until_approved() {
    let app = spawn_app().await;
    let (_, service) = setup(&app).await;
    let maint = token(&app, "maint-1", Role::Maintainer);
    let approver = token(&app, "owner", Role::Approver);
    let change = request(
        &app,
        &maint,
        json!({
            "kind": "emergency", "category": "fix", "title": "Disk full on orders-db",
            "risk": "high", "impact": "Orders stall", "service_ids": [service["id"]]
        }),
    )
    .await;
    let id = change["id"].as_str().unwrap().to_owned();
    let started = ok(&app, &maint, &id, "start", json!({ "minutes_spent": 5 })).await;
    assert_eq!(started["status"], "in_progress");
    assert_eq!(started["approval_missing"], true);
    let done = ok(&app, &maint, &id, "complete", json!({})).await;
    assert_eq!(done["approval_missing"], true);
    // Not reviewed before it is approved.
    let a = call(
        &app,
        Method::POST,
        &format!("/api/v1/changes/{id}/review"),
        &approver,
        None,
        Some(json!({ "summary": "ok" })),
    )
    .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.body);

    // Visible in the list and the history while approval is missing.
    let sid = service["id"].as_str().unwrap();
    let listed = eventually("the flagged change is listed", || async {
        let page = call(
            &app,
            Method::GET,
            "/api/v1/changes?approval_missing=true",
            &approver,
            None,
            None,
        )
        .await
        .body;
        (page["items"].as_array()?.len() == 1).then_some(page)
    })
    .await;
    assert_eq!(listed["items"][0]["id"], id.as_str());
    let history = call(
        &app,
        Method::GET,
        &format!("/api/v1/changes/history?service={sid}"),
        &approver,
        None,
        None,
    )
    .await;
    assert_eq!(history.status, StatusCode::OK);
    assert_eq!(history.body["items"][0]["approval_missing"], true);

    let approved = ok(&app, &approver, &id, "approve", json!({})).await;
    assert_eq!(approved["approval_missing"], false);
    assert_eq!(approved["approvals"][0]["retroactive"], true);
    assert_eq!(approved["status"], "completed");
    eventually("the history shows the approval", || async {
        let h = call(
            &app,
            Method::GET,
            &format!("/api/v1/changes/history?service={sid}"),
            &approver,
            None,
            None,
        )
        .await
        .body;
        (h["items"][0]["approval_missing"] == false
            && h["items"][0]["approvals"][0]["by"] == "owner")
            .then_some(())
    })
    .await;
    ok(
        &app,
        &approver,
        &id,
        "review",
        json!({ "summary": "root cause: log rotation" }),
    )
    .await;
}

#[tokio::test]
async fn a_standard_change_is_an_operators_to_request_and_carry_out() {
    let app = spawn_app().await;
    let (_, service) = setup(&app).await;
    let operator = token(&app, "op-1", Role::Operator);
    let mut body = normal_change(&service);
    let a = call(
        &app,
        Method::POST,
        "/api/v1/changes",
        &operator,
        None,
        Some(body.clone()),
    )
    .await;
    assert_eq!(
        a.status,
        StatusCode::FORBIDDEN,
        "operators do not request normal changes"
    );
    body["kind"] = json!("standard");
    body["rollback_plan"] = Value::Null;
    let change = request(&app, &operator, body).await;
    let id = change["id"].as_str().unwrap().to_owned();
    let a = call(
        &app,
        Method::POST,
        &format!("/api/v1/changes/{id}/approve"),
        &token(&app, "a", Role::Approver),
        None,
        None,
    )
    .await;
    assert_eq!(
        a.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "pre-approved: {}",
        a.body
    );
    ok(
        &app,
        &operator,
        &id,
        "schedule",
        json!({ "start": "2030-02-01T00:00:00Z", "end": "2030-02-01T01:00:00Z" }),
    )
    .await;
    ok(&app, &operator, &id, "start", json!({})).await;
    let done = ok(
        &app,
        &operator,
        &id,
        "complete",
        json!({ "minutes_spent": 20 }),
    )
    .await;
    assert_eq!(done["approval_missing"], false);
    assert_eq!(done["approvals"], json!([]));
}

#[tokio::test]
async fn links_to_incidents_and_proposals_are_checked_against_the_log() {
    let app = spawn_app().await;
    let (_, service) = setup(&app).await;
    let maint = token(&app, "maint-1", Role::Maintainer);
    let incident = app
        .post(
            "/api/v1/incidents",
            &maint,
            &json!({ "title": "Checkout 500s", "service_id": service["id"], "severity": "error" }),
        )
        .await
        .json::<Value>()
        .await
        .unwrap();
    let unknown = uuid::Uuid::now_v7();
    let mut body = normal_change(&service);
    body["links"] = json!([{ "relation": "fixes", "incident_id": unknown }]);
    let a = call(
        &app,
        Method::POST,
        "/api/v1/changes",
        &maint,
        None,
        Some(body.clone()),
    )
    .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(a.body["detail"]
        .as_str()
        .unwrap()
        .contains(&unknown.to_string()));
    body["links"] = json!([{ "relation": "fixes", "incident_id": incident["id"] }]);
    let change = request(&app, &maint, body).await;
    assert_eq!(
        change["links"],
        json!([{ "relation": "fixes", "incident_id": incident["id"] }])
    );
    let id = change["id"].as_str().unwrap().to_owned();

    // A proposal that does not exist, and a link of the wrong shape.
    let a = call(
        &app,
        Method::POST,
        &format!("/api/v1/changes/{id}/links"),
        &maint,
        None,
        Some(json!({ "relation": "implements", "proposal_id": unknown })),
    )
    .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.body);
    let a = call(
        &app,
        Method::POST,
        &format!("/api/v1/changes/{id}/links"),
        &maint,
        None,
        Some(json!({ "relation": "caused_by", "proposal_id": incident["id"] })),
    )
    .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.body);
    // Another tenant's incident does not exist here.
    let other = app.register_tenant("Other MSP").await;
    let stranger = app.token_for(other, "x", &[Role::Admin], None);
    let theirs = app
        .post(
            "/api/v1/incidents",
            &stranger,
            &json!({ "title": "Theirs", "severity": "error" }),
        )
        .await
        .json::<Value>()
        .await
        .unwrap();
    let a = call(
        &app,
        Method::POST,
        &format!("/api/v1/changes/{id}/links"),
        &maint,
        None,
        Some(json!({ "relation": "caused_by", "incident_id": theirs["id"] })),
    )
    .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.body);

    let second = app
        .post(
            "/api/v1/incidents",
            &maint,
            &json!({ "title": "Slow search", "service_id": service["id"], "severity": "warning" }),
        )
        .await
        .json::<Value>()
        .await
        .unwrap();
    let linked = ok(
        &app,
        &maint,
        &id,
        "links",
        json!({ "relation": "caused_by", "incident_id": second["id"] }),
    )
    .await;
    assert_eq!(linked["links"].as_array().unwrap().len(), 2);
    let sid = service["id"].as_str().unwrap();
    let history = eventually("the history has both incidents", || async {
        let h = call(
            &app,
            Method::GET,
            &format!("/api/v1/changes/history?service={sid}"),
            &maint,
            None,
            None,
        )
        .await
        .body;
        (h["items"][0]["incidents"].as_array()?.len() == 2).then_some(h)
    })
    .await;
    assert_eq!(history["items"][0]["incidents"][1]["relation"], "caused_by");
    assert_eq!(
        history["items"][0]["incidents"][1]["incident_id"],
        second["id"]
    );
}

#[tokio::test]
async fn freezes_refuse_normal_changes_and_are_recorded_on_others() {
    let app = spawn_app().await;
    let (_, service) = setup(&app).await;
    let maint = token(&app, "maint-1", Role::Maintainer);
    let approver = token(&app, "owner", Role::Approver);
    let freeze = call(&app, Method::POST, "/api/v1/freezes", &approver, None, Some(json!({
        "service_ids": [service["id"]], "start": "2030-12-20T00:00:00Z", "end": "2031-01-05T00:00:00Z",
        "reason": "Year-end sales"
    }))).await;
    assert_eq!(freeze.status, StatusCode::CREATED, "{}", freeze.body);
    let fid = freeze.body["id"].as_str().unwrap().to_owned();
    // No waiting for the read model: scheduling waits for it to catch up.

    let normal = request(&app, &maint, normal_change(&service)).await;
    let nid = normal["id"].as_str().unwrap().to_owned();
    ok(&app, &maint, &nid, "submit", json!({})).await;
    ok(&app, &approver, &nid, "approve", json!({})).await;
    let into_freeze = json!({ "start": "2030-12-24T01:00:00Z", "end": "2030-12-24T02:00:00Z" });
    let a = call(
        &app,
        Method::POST,
        &format!("/api/v1/changes/{nid}/schedule"),
        &maint,
        None,
        Some(into_freeze.clone()),
    )
    .await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.body);
    assert_eq!(a.body["freeze_id"], fid.as_str());
    assert!(a.body["detail"]
        .as_str()
        .unwrap()
        .contains("Year-end sales"));

    // An emergency change may go ahead, and says it did.
    let emergency = request(
        &app,
        &maint,
        json!({
            "kind": "emergency", "category": "security_patch", "title": "Zero-day patch",
            "risk": "high", "impact": "Restart", "service_ids": [service["id"]]
        }),
    )
    .await;
    let eid = emergency["id"].as_str().unwrap().to_owned();
    let scheduled = ok(&app, &maint, &eid, "schedule", into_freeze.clone()).await;
    assert_eq!(scheduled["freezes"], json!([fid]));

    // Lifted, the freeze no longer refuses; the overlap with the emergency
    // change is reported as a conflict instead.
    let lifted = call(
        &app,
        Method::POST,
        &format!("/api/v1/freezes/{fid}/lift"),
        &approver,
        Some(1),
        Some(json!({ "reason": "sales moved" })),
    )
    .await;
    assert_eq!(lifted.status, StatusCode::OK, "{}", lifted.body);
    assert!(lifted.body["lifted_at"].is_string());
    let again = call(
        &app,
        Method::POST,
        &format!("/api/v1/freezes/{fid}/lift"),
        &approver,
        None,
        None,
    )
    .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    let scheduled = ok(&app, &maint, &nid, "schedule", into_freeze.clone()).await;
    assert_eq!(scheduled["conflicts"], json!([eid]));
    assert_eq!(scheduled["freezes"], json!([]));
}

#[tokio::test]
async fn a_freeze_declared_after_scheduling_holds_a_normal_change_back_at_its_start() {
    let app = spawn_app().await;
    let (_, service) = setup(&app).await;
    let maint = token(&app, "maint-1", Role::Maintainer);
    let approver = token(&app, "owner", Role::Approver);
    let normal = request(&app, &maint, normal_change(&service)).await;
    let nid = normal["id"].as_str().unwrap().to_owned();
    ok(&app, &maint, &nid, "submit", json!({})).await;
    ok(&app, &approver, &nid, "approve", json!({})).await;
    let now = chrono::Utc::now();
    ok(
        &app,
        &maint,
        &nid,
        "schedule",
        json!({ "start": now, "end": now + chrono::Duration::hours(1) }),
    )
    .await;
    // Then a freeze is declared over now.
    let freeze = call(
        &app,
        Method::POST,
        "/api/v1/freezes",
        &approver,
        None,
        Some(json!({
            "service_ids": [service["id"]], "start": now - chrono::Duration::minutes(5),
            "end": now + chrono::Duration::hours(2), "reason": "Incident in progress elsewhere"
        })),
    )
    .await;
    assert_eq!(freeze.status, StatusCode::CREATED, "{}", freeze.body);
    let fid = freeze.body["id"].as_str().unwrap().to_owned();
    let start_path = format!("/api/v1/changes/{nid}/start");
    let a = call(
        &app,
        Method::POST,
        &start_path,
        &maint,
        None,
        Some(json!({})),
    )
    .await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.body);
    assert_eq!(a.body["freeze_id"], fid.as_str());
    assert!(a.body["detail"]
        .as_str()
        .unwrap()
        .contains("Incident in progress elsewhere"));
    assert_eq!(a.body["current_state"], "scheduled");
    // Lifted, it starts.
    let lifted = call(
        &app,
        Method::POST,
        &format!("/api/v1/freezes/{fid}/lift"),
        &approver,
        None,
        Some(json!({ "reason": "all clear" })),
    )
    .await;
    assert_eq!(lifted.status, StatusCode::OK, "{}", lifted.body);
    let a = call(
        &app,
        Method::POST,
        &start_path,
        &maint,
        None,
        Some(json!({})),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["status"], "in_progress");
}

#[tokio::test]
async fn overlapping_schedules_of_one_service_are_reported_as_conflicts() {
    let app = spawn_app().await;
    let (client, service) = setup(&app).await;
    let other_service = register_service(&app, client["id"].as_str().unwrap(), "決済API").await;
    let maint = token(&app, "maint-1", Role::Maintainer);
    let std = |s: &Value| {
        let mut b = normal_change(s);
        b["kind"] = json!("standard");
        b
    };
    let first = request(&app, &maint, std(&service)).await;
    let first_id = first["id"].as_str().unwrap().to_owned();
    ok(
        &app,
        &maint,
        &first_id,
        "schedule",
        json!({ "start": "2030-03-01T01:00:00Z", "end": "2030-03-01T03:00:00Z" }),
    )
    .await;
    // Another service at the same time: no conflict.
    let elsewhere = request(&app, &maint, std(&other_service)).await;
    let e = ok(
        &app,
        &maint,
        elsewhere["id"].as_str().unwrap(),
        "schedule",
        json!({ "start": "2030-03-01T01:00:00Z", "end": "2030-03-01T03:00:00Z" }),
    )
    .await;
    assert_eq!(e["conflicts"], json!([]));
    // Right after the first: no conflict (windows are half-open).
    let after = request(&app, &maint, std(&service)).await;
    let a = ok(
        &app,
        &maint,
        after["id"].as_str().unwrap(),
        "schedule",
        json!({ "start": "2030-03-01T03:00:00Z", "end": "2030-03-01T04:00:00Z" }),
    )
    .await;
    assert_eq!(a["conflicts"], json!([]));
    // Overlapping: accepted, and the conflict is recorded and answered.
    let second = request(&app, &maint, std(&service)).await;
    let sid = second["id"].as_str().unwrap().to_owned();
    let s = ok(
        &app,
        &maint,
        &sid,
        "schedule",
        json!({ "start": "2030-03-01T02:00:00Z", "end": "2030-03-01T02:30:00Z" }),
    )
    .await;
    assert_eq!(s["conflicts"], json!([first_id]));
    let client = app.app_state.pool.get().await.unwrap();
    let events =
        opsledger_store::read::read_stream(&client, app.tenant, &format!("change-{sid}"), None)
            .await
            .unwrap();
    let scheduled = events
        .iter()
        .find(|e| e.event_type == "ChangeScheduled")
        .unwrap();
    assert_eq!(scheduled.payload["conflicts"], json!([first_id]));
}

#[tokio::test]
async fn roles_are_enforced_on_every_change_route_and_tenants_stay_apart() {
    let app = spawn_app().await;
    let (client, service) = setup(&app).await;
    let client_id: uuid::Uuid = client["id"].as_str().unwrap().parse().unwrap();
    let maint = token(&app, "maint-1", Role::Maintainer);
    let change = request(&app, &maint, normal_change(&service)).await;
    let id = change["id"].as_str().unwrap().to_owned();
    let sid = service["id"].as_str().unwrap().to_owned();
    let freeze = call(&app, Method::POST, "/api/v1/freezes", &maint, None, Some(json!({
        "service_ids": [sid], "start": "2031-01-01T00:00:00Z", "end": "2031-01-02T00:00:00Z", "reason": "r"
    }))).await.body;
    let fid = freeze["id"].as_str().unwrap().to_owned();

    let staff = [
        Role::Operator,
        Role::Maintainer,
        Role::Approver,
        Role::Auditor,
        Role::Admin,
    ];
    for role in Role::ALL {
        let t = app.token_for(
            app.tenant,
            "someone-else",
            &[role],
            (role == Role::Client).then_some(client_id),
        );
        let is_staff = staff.contains(&role);
        let maintains = matches!(role, Role::Maintainer | Role::Admin);
        let approves = matches!(role, Role::Approver | Role::Admin);
        let freezes = matches!(role, Role::Maintainer | Role::Approver | Role::Admin);
        // (method, path, body, allowed): a refused call is 403 and changes nothing.
        let checks: Vec<(Method, String, Option<Value>, bool)> = vec![
            (Method::GET, "/api/v1/changes".into(), None, is_staff),
            (Method::GET, format!("/api/v1/changes/{id}"), None, is_staff),
            (
                Method::GET,
                format!("/api/v1/changes/history?service={sid}"),
                None,
                is_staff,
            ),
            (
                Method::POST,
                "/api/v1/changes".into(),
                Some(normal_change(&service)),
                maintains,
            ),
            (Method::GET, "/api/v1/freezes".into(), None, is_staff),
            (
                Method::GET,
                format!("/api/v1/freezes/{fid}"),
                None,
                is_staff,
            ),
            (
                Method::POST,
                "/api/v1/freezes".into(),
                Some(json!({
                    "service_ids": [sid], "start": "2031-02-01T00:00:00Z", "end": "2031-02-02T00:00:00Z", "reason": "r"
                })),
                freezes,
            ),
            // Wrong state for every role allowed: 409 proves the role passed.
            (
                Method::POST,
                format!("/api/v1/changes/{id}/approve"),
                Some(json!({})),
                approves,
            ),
            (
                Method::POST,
                format!("/api/v1/changes/{id}/reject"),
                Some(json!({ "reason": "no" })),
                approves,
            ),
            (
                Method::POST,
                format!("/api/v1/changes/{id}/start"),
                Some(json!({})),
                maintains,
            ),
            (
                Method::POST,
                format!("/api/v1/changes/{id}/complete"),
                Some(json!({})),
                maintains,
            ),
            (
                Method::POST,
                format!("/api/v1/changes/{id}/fail"),
                Some(json!({ "reason": "x" })),
                maintains,
            ),
            (
                Method::POST,
                format!("/api/v1/changes/{id}/rollback"),
                Some(json!({ "reason": "x" })),
                maintains,
            ),
            (
                Method::POST,
                format!("/api/v1/changes/{id}/review"),
                Some(json!({ "summary": "x" })),
                maintains || approves,
            ),
            (
                Method::POST,
                format!("/api/v1/changes/{id}/schedule"),
                Some(json!({ "start": "2031-03-01T00:00:00Z", "end": "2031-03-01T01:00:00Z" })),
                maintains,
            ),
        ];
        for (method, path, body, allowed) in checks {
            let a = call(&app, method.clone(), &path, &t, None, body).await;
            assert_ne!(
                a.status,
                StatusCode::UNAUTHORIZED,
                "{role:?} {method} {path}"
            );
            assert_eq!(
                a.status == StatusCode::FORBIDDEN,
                !allowed,
                "{role:?} {method} {path}: {} {}",
                a.status,
                a.body
            );
            if allowed && method == Method::POST && path.contains("/changes/") {
                assert_eq!(
                    a.status,
                    StatusCode::CONFLICT,
                    "{role:?} {path}: {}",
                    a.body
                );
            }
        }
    }
    // Submit and lift last: they move their streams on.
    for role in Role::ALL {
        let t = app.token_for(
            app.tenant,
            "someone-else",
            &[role],
            (role == Role::Client).then_some(client_id),
        );
        let a = call(
            &app,
            Method::POST,
            &format!("/api/v1/changes/{id}/submit"),
            &t,
            Some(1),
            None,
        )
        .await;
        let maintains = matches!(role, Role::Maintainer | Role::Admin);
        assert_eq!(
            a.status == StatusCode::FORBIDDEN,
            !maintains,
            "{role:?} submit: {}",
            a.status
        );
    }
    let links = call(
        &app,
        Method::POST,
        &format!("/api/v1/changes/{id}/links"),
        &token(&app, "o", Role::Operator),
        None,
        Some(json!({ "relation": "fixes", "incident_id": id })),
    )
    .await;
    assert_eq!(links.status, StatusCode::FORBIDDEN);

    // Another tenant's change and freeze do not exist for you.
    let other = app.register_tenant("Other MSP").await;
    let stranger = app.token_for(other, "x", &[Role::Admin], None);
    for (method, path, body) in [
        (Method::GET, format!("/api/v1/changes/{id}"), None),
        (
            Method::GET,
            format!("/api/v1/changes/history?service={sid}"),
            None,
        ),
        (Method::GET, format!("/api/v1/freezes/{fid}"), None),
        (
            Method::POST,
            format!("/api/v1/changes/{id}/approve"),
            Some(json!({})),
        ),
        (
            Method::POST,
            format!("/api/v1/freezes/{fid}/lift"),
            Some(json!({})),
        ),
    ] {
        let a = call(&app, method.clone(), &path, &stranger, None, body).await;
        assert_eq!(
            a.status,
            StatusCode::NOT_FOUND,
            "{method} {path}: {}",
            a.body
        );
    }
    let a = call(
        &app,
        Method::POST,
        "/api/v1/changes",
        &stranger,
        None,
        Some(normal_change(&service)),
    )
    .await;
    assert_eq!(
        a.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "their service is unknown here"
    );
    let list = call(&app, Method::GET, "/api/v1/changes", &stranger, None, None).await;
    assert_eq!(list.body["items"], json!([]));
}

#[tokio::test]
async fn retries_append_nothing_and_concurrent_steps_have_one_winner() {
    let app = spawn_app().await;
    let (_, service) = setup(&app).await;
    let maint = token(&app, "maint-1", Role::Maintainer);
    let post =
        |path: String, key: &'static str, body: Value, if_match: Option<i64>, token: String| {
            let app = &app;
            async move {
                let mut req = app
                    .http
                    .post(app.url(&path))
                    .bearer_auth(token)
                    .header("idempotency-key", key)
                    .json(&body);
                if let Some(v) = if_match {
                    req = req.header("if-match", v.to_string());
                }
                let res = req.send().await.unwrap();
                let status = res.status();
                let replayed = res.headers().get("idempotent-replayed").is_some();
                (status, replayed, res.json::<Value>().await.unwrap())
            }
        };
    let (s1, r1, first) = post(
        "/api/v1/changes".into(),
        "req-1",
        normal_change(&service),
        None,
        maint.clone(),
    )
    .await;
    let (s2, r2, again) = post(
        "/api/v1/changes".into(),
        "req-1",
        normal_change(&service),
        None,
        maint.clone(),
    )
    .await;
    assert_eq!(
        (s1, r1, s2, r2),
        (StatusCode::CREATED, false, StatusCode::CREATED, true)
    );
    assert_eq!(first["id"], again["id"]);
    let id = first["id"].as_str().unwrap().to_owned();
    let (s, _, _) = post(
        format!("/api/v1/changes/{id}/submit"),
        "sub-1",
        json!({ "minutes_spent": 3 }),
        None,
        maint.clone(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, replayed, body) = post(
        format!("/api/v1/changes/{id}/submit"),
        "sub-1",
        json!({ "minutes_spent": 3 }),
        None,
        maint.clone(),
    )
    .await;
    assert_eq!((s, replayed), (StatusCode::OK, true), "{body}");
    assert_eq!(body["version"], 2);
    // The same key for another request is refused.
    let (s, _, _) = post(
        format!("/api/v1/changes/{id}/submit"),
        "sub-1",
        json!({ "minutes_spent": 4 }),
        None,
        maint.clone(),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);

    // Two approvers at once, both based on version 2: exactly one wins.
    let a = post(
        format!("/api/v1/changes/{id}/approve"),
        "a-1",
        json!({}),
        Some(2),
        token(&app, "owner-a", Role::Approver),
    );
    let b = post(
        format!("/api/v1/changes/{id}/approve"),
        "a-2",
        json!({}),
        Some(2),
        token(&app, "owner-b", Role::Approver),
    );
    let ((sa, _, _), (sb, _, _)) = tokio::join!(a, b);
    let mut statuses = [sa, sb];
    statuses.sort();
    // The loser read the stream before the winner committed (its append
    // conflicts: 409) or after (its If-Match is stale: 412).
    assert_eq!(statuses[0], StatusCode::OK, "{statuses:?}");
    assert!(
        [StatusCode::CONFLICT, StatusCode::PRECONDITION_FAILED].contains(&statuses[1]),
        "{statuses:?}"
    );
    let client = app.app_state.pool.get().await.unwrap();
    let events =
        opsledger_store::read::read_stream(&client, app.tenant, &format!("change-{id}"), None)
            .await
            .unwrap();
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        ["ChangeRequested", "ChangeSubmitted", "ChangeApproved"]
    );
}

async fn dump_change_tables(app: &TestApp) -> Vec<String> {
    let su = app.db.superuser().await;
    let mut rows = Vec::new();
    for (table, key) in [
        ("proj_changes", "change_id"),
        ("proj_windows", "window_id"),
        ("proj_freezes", "freeze_id"),
    ] {
        for r in su
            .query(
                &format!("SELECT row_to_json(t)::text FROM {table} t ORDER BY {key}"),
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
async fn the_change_projection_rebuilt_from_zero_equals_the_incremental_one() {
    let app = spawn_app().await;
    let (_, service) = setup(&app).await;
    let maint = token(&app, "maint-1", Role::Maintainer);
    let approver = token(&app, "owner", Role::Approver);
    let change = request(&app, &maint, normal_change(&service)).await;
    let id = change["id"].as_str().unwrap().to_owned();
    ok(&app, &maint, &id, "submit", json!({})).await;
    ok(&app, &approver, &id, "approve", json!({})).await;
    ok(
        &app,
        &maint,
        &id,
        "schedule",
        json!({ "start": "2030-04-01T00:00:00Z", "end": "2030-04-01T01:00:00Z" }),
    )
    .await;
    let window = call(
        &app,
        Method::POST,
        "/api/v1/maintenance-windows",
        &maint,
        None,
        Some(json!({
            "title": "w", "service_ids": [service["id"]], "start": "2030-04-01T00:00:00Z",
            "end": "2030-04-01T02:00:00Z", "rrule": "FREQ=DAILY;COUNT=2", "change_id": id
        })),
    )
    .await
    .body;
    let wid = window["id"].as_str().unwrap();
    let a = call(
        &app,
        Method::POST,
        &format!("/api/v1/maintenance-windows/{wid}/announce"),
        &maint,
        None,
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let freeze = call(&app, Method::POST, "/api/v1/freezes", &approver, None, Some(json!({
        "service_ids": [service["id"]], "start": "2030-05-01T00:00:00Z", "end": "2030-05-02T00:00:00Z", "reason": "r"
    }))).await.body;
    let fid = freeze["id"].as_str().unwrap();
    let a = call(
        &app,
        Method::POST,
        &format!("/api/v1/freezes/{fid}/lift"),
        &approver,
        None,
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let incremental = eventually("everything is projected", || async {
        let rows = dump_change_tables(&app).await;
        let done = rows.len() == 3
            && rows.iter().any(|r| r.contains("\"status\":\"scheduled\""))
            && rows.iter().any(|r| r.contains("\"status\":\"announced\""))
            && rows.iter().any(|r| r.contains("\"lifted\":true"));
        done.then_some(rows)
    })
    .await;
    let replayed = opsledger_store::projection::rebuild(
        &app.app_state.pool,
        &opsledger_store::changes::ChangeProjection,
    )
    .await
    .unwrap();
    assert!(replayed >= 8, "{replayed}");
    let rebuilt = eventually("the rebuilt projection catches up", || async {
        let rows = dump_change_tables(&app).await;
        (rows == incremental).then_some(rows)
    })
    .await;
    assert_eq!(rebuilt, incremental);
}
