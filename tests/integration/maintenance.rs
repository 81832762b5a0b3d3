//! Maintenance work on incidents, improvement proposals, recurrence, and the
//! work ledger that keeps operations and maintenance apart (issue 5).

use chrono::Utc;
use opsledger_domain::access::Role;
use opsledger_testkit::{spawn_app, TestApp};
use opsledger_tests::eventually;
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::api_directory::{register_client, register_service};

async fn call(app: &TestApp, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
    let res = app.post(path, token, &body).await;
    let status = res.status();
    let text = res.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn ok(app: &TestApp, path: &str, token: &str, body: Value) -> Value {
    let (status, v) = call(app, path, token, body).await;
    assert!(status.is_success(), "{path}: {status} {v}");
    v
}

async fn read(app: &TestApp, path: &str, token: &str) -> Value {
    let res = app.get(path, token).await;
    let status = res.status();
    let v: Value = res.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{path}: {v}");
    v
}

/// An emergency change to `service` naming the incidents it `fixes`,
/// carried out (started and completed) if `completed`.
async fn change(app: &TestApp, service: &str, fixes: &[&str], completed: bool) -> Uuid {
    let maintainer = app.token_for(app.tenant, "max", &[Role::Maintainer], None);
    let links: Vec<Value> = fixes
        .iter()
        .map(|i| json!({ "relation": "fixes", "incident_id": i }))
        .collect();
    let requested = ok(
        app,
        "/api/v1/changes",
        &maintainer,
        json!({
            "kind": "emergency", "category": "fix", "title": "Cap the batch job's pool",
            "risk": "low", "impact": "none", "service_ids": [service], "links": links
        }),
    )
    .await;
    let id = requested["id"].as_str().unwrap().to_owned();
    if completed {
        ok(
            app,
            &format!("/api/v1/changes/{id}/start"),
            &maintainer,
            json!({}),
        )
        .await;
        ok(
            app,
            &format!("/api/v1/changes/{id}/complete"),
            &maintainer,
            json!({ "note": "done", "minutes_spent": 20 }),
        )
        .await;
    }
    id.parse().unwrap()
}

fn types(timeline: &Value) -> Vec<String> {
    timeline["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn findings_and_fixes_are_maintenance_work_on_the_timeline_and_in_the_ledger() {
    let app = spawn_app().await;
    let client = register_client(&app, "Client A").await;
    let client_id = client["id"].as_str().unwrap().to_owned();
    let service = register_service(&app, &client_id, "shop").await;
    let sid = service["id"].as_str().unwrap().to_owned();
    let other_client = register_client(&app, "Client B").await;
    let other_id: Uuid = other_client["id"].as_str().unwrap().parse().unwrap();
    let operator = app.token_for(app.tenant, "olga", &[Role::Operator], None);
    let maintainer = app.token_for(app.tenant, "mia", &[Role::Maintainer], None);
    let theirs = app.token_for(
        app.tenant,
        "hanako",
        &[Role::Client],
        Some(client_id.parse().unwrap()),
    );
    let stranger = app.token_for(app.tenant, "bob", &[Role::Client], Some(other_id));

    let incident = ok(
        &app,
        "/api/v1/incidents",
        &operator,
        json!({ "title": "Checkout errors", "service_id": sid, "severity": "error" }),
    )
    .await;
    let path = format!("/api/v1/incidents/{}", incident["id"].as_str().unwrap());
    ok(
        &app,
        &format!("{path}/actions"),
        &operator,
        json!({ "kind": "restart", "description": "Restarted web-1", "minutes_spent": 10 }),
    )
    .await;
    let finding = json!({
        "statement": "A batch job leaks database connections",
        "evidence": { "log_excerpts": ["FATAL: too many clients"], "components": ["orders-db"] },
        "minutes_spent": 45
    });
    let (status, problem) = call(
        &app,
        &format!("{path}/findings"),
        &operator,
        finding.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{problem}");
    let (status, _) = call(
        &app,
        &format!("{path}/actions"),
        &operator,
        json!({ "kind": "fix", "description": "x" }),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "an operator records no fix");
    ok(&app, &format!("{path}/findings"), &maintainer, finding).await;
    let fixed = ok(
        &app,
        &format!("{path}/actions"),
        &maintainer,
        json!({ "kind": "fix", "description": "Capped the job's pool", "minutes_spent": 30 }),
    )
    .await;
    assert_eq!(fixed["findings"], 1);
    assert_eq!(fixed["fixes"].as_array().unwrap().len(), 1);

    // The timeline keeps each fact in its class; the client does not see the
    // maintenance team's working record.
    let staff = read(&app, &format!("{path}/timeline"), &operator).await;
    let class_of = |t: &str| {
        staff["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["type"] == t)
            .map(|e| e["work_class"].clone())
    };
    assert_eq!(class_of("ActionRecorded"), Some(json!("operations")));
    assert_eq!(class_of("FindingRecorded"), Some(json!("maintenance")));
    assert_eq!(
        class_of("MaintenanceActionRecorded"),
        Some(json!("maintenance"))
    );
    let client_view = types(&read(&app, &format!("{path}/timeline"), &theirs).await);
    assert!(client_view.contains(&"ActionRecorded".to_owned()));
    assert!(!client_view.contains(&"FindingRecorded".to_owned()));
    assert!(!client_view.contains(&"MaintenanceActionRecorded".to_owned()));

    // The ledger: operations and maintenance apart, with the minutes.
    let ledger_path = format!("/api/v1/work?service_id={sid}");
    let ledger = eventually("the ledger has the fix", || async {
        let v = read(&app, &ledger_path, &operator).await;
        (v["maintenance"]["count"] == 2).then_some(v)
    })
    .await;
    assert_eq!(ledger["maintenance"]["minutes_spent"], 75);
    // Opening by hand and the restart are the operations team's.
    assert_eq!(ledger["operations"]["count"], 2);
    assert_eq!(ledger["operations"]["minutes_spent"], 10);
    let teams: Vec<(String, String)> = ledger["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["type"].as_str().unwrap().to_owned(),
                i["team"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(teams.contains(&("FindingRecorded".into(), "maintenance".into())));
    assert!(teams.contains(&("ActionRecorded".into(), "operations".into())));
    let only = read(
        &app,
        &format!("{ledger_path}&class=maintenance&team=maintenance"),
        &operator,
    )
    .await;
    assert_eq!(only["items"].as_array().unwrap().len(), 2);
    assert_eq!(only["operations"]["count"], 0);
    // Paging walks every item once.
    let first = read(&app, &format!("{ledger_path}&limit=3"), &operator).await;
    assert_eq!(first["items"].as_array().unwrap().len(), 3);
    let after = first["next_cursor"].as_i64().unwrap();
    let rest = read(
        &app,
        &format!("{ledger_path}&limit=3&after={after}"),
        &operator,
    )
    .await;
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);
    assert!(rest.get("next_cursor").is_none());
    // A client reads its own client's ledger, not another's. Which services
    // are its client's, the directory read model says: it follows the log
    // apart from the ledger and may be a moment behind it.
    eventually("the client's ledger has the fix", || async {
        let own = read(&app, "/api/v1/work", &theirs).await;
        (own["maintenance"]["count"] == 2).then_some(())
    })
    .await;
    let res = app.get("/api/v1/work", &stranger).await;
    assert_eq!(res.status(), StatusCode::OK);
    let none: Value = res.json().await.unwrap();
    assert_eq!(none["operations"]["count"], 0);
    let res = app
        .get(&format!("/api/v1/work?client_id={client_id}"), &stranger)
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    for bad in [
        "class=both",
        "team=night",
        "since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z",
        "colour=red",
    ] {
        let res = app.get(&format!("/api/v1/work?{bad}"), &operator).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    let res = app
        .get("/api/v1/work", &app.token(&[Role::Integration]))
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
}

/// A proposal turned down by another, with the reason kept.
#[tokio::test]
async fn a_proposal_is_rejected_by_another_with_a_reason() {
    let app = spawn_app().await;
    let client = register_client(&app, "Client A").await;
    let service = register_service(&app, client["id"].as_str().unwrap(), "shop").await;
    let mia = app.token_for(app.tenant, "mia", &[Role::Maintainer], None);
    let arno = app.token_for(app.tenant, "arno", &[Role::Approver], None);
    let res = app
        .post(
            "/api/v1/proposals",
            &mia,
            &json!({ "title": "Rewrite the shop", "description": "In a weekend", "service_ids": [service["id"]] }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let (status, rejected) = call(
        &app,
        &format!("{location}/reject"),
        &arno,
        json!({ "reason": "too risky for the gain" }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{rejected}");
    assert_eq!(rejected["status"], "rejected");
    assert_eq!(rejected["decided_by"], "arno");
}

#[tokio::test]
async fn a_proposal_is_decided_by_another_and_implemented_by_a_completed_change() {
    let app = spawn_app().await;
    let client = register_client(&app, "Client A").await;
    let service = register_service(&app, client["id"].as_str().unwrap(), "shop").await;
    let sid = service["id"].as_str().unwrap().to_owned();
    let mia = app.token_for(app.tenant, "mia", &[Role::Maintainer, Role::Approver], None);
    let arno = app.token_for(app.tenant, "arno", &[Role::Approver], None);
    let operator = app.token_for(app.tenant, "olga", &[Role::Operator], None);

    let (status, problem) = call(
        &app,
        "/api/v1/proposals",
        &mia,
        json!({ "title": "Pool limits", "description": "Cap every job's pool" }),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    let (status, _) = call(
        &app,
        "/api/v1/proposals",
        &mia,
        json!({ "title": "Pool limits", "description": "x", "incident_id": Uuid::now_v7() }),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "an unknown incident"
    );
    let res = app.post("/api/v1/proposals", &mia,
        &json!({ "title": "Pool limits", "description": "Cap every job's pool", "service_ids": [sid] })).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(res.headers()["etag"], "\"1\"");
    let raised: Value = res.json().await.unwrap();
    assert_eq!(raised["status"], "raised");
    assert_eq!(raised["raised_by"], "mia");
    assert_eq!(read(&app, &location, &operator).await, raised);

    // Four eyes: who raised it does not approve it.
    let (status, problem) = call(&app, &format!("{location}/approve"), &mia, json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("raised"),
        "{problem}"
    );
    let (status, _) = call(&app, &format!("{location}/approve"), &operator, json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "operators do not approve");
    // A stale If-Match is 412, naming where it stands.
    let res = app
        .http
        .post(app.url(&format!("{location}/approve")))
        .bearer_auth(&arno)
        .header("if-match", "\"7\"")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PRECONDITION_FAILED);
    let problem: Value = res.json().await.unwrap();
    assert_eq!(problem["current_version"], 1);
    // Without a body at all: an approval needs no comment.
    let res = app
        .http
        .post(app.url(&format!("{location}/approve")))
        .bearer_auth(&arno)
        .header("if-match", "\"1\"")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let approved: Value = res.json().await.unwrap();
    assert_eq!(approved["status"], "approved");
    assert_eq!(approved["decided_by"], "arno");
    let (status, problem) = call(
        &app,
        &format!("{location}/reject"),
        &arno,
        json!({ "reason": "no" }),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(problem["current_state"], "approved");

    // Implemented only by a change of this tenant that completed.
    let (status, _) = call(
        &app,
        &format!("{location}/implement"),
        &mia,
        json!({ "change_id": Uuid::now_v7() }),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let pending = change(&app, &sid, &[], false).await;
    let (status, problem) = call(
        &app,
        &format!("{location}/implement"),
        &mia,
        json!({ "change_id": pending }),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    let done = change(&app, &sid, &[], true).await;
    let (status, _) = call(
        &app,
        &format!("{location}/implement"),
        &operator,
        json!({ "change_id": done }),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "implementing is maintenance work"
    );
    let implemented = ok(
        &app,
        &format!("{location}/implement"),
        &mia,
        json!({ "change_id": done }),
    )
    .await;
    assert_eq!(implemented["change_id"], json!(done));
    let verified = ok(
        &app,
        &format!("{location}/verify"),
        &arno,
        json!({ "note": "No pool exhaustion for a week", "minutes_spent": 15 }),
    )
    .await;
    assert_eq!(verified["status"], "verified");
    assert_eq!(verified["version"], 4);

    // Verifying twice is a conflict naming where it stands.
    let (status, problem) = call(
        &app,
        &format!("{location}/verify"),
        &arno,
        json!({ "note": "again" }),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(problem["current_state"], "verified");

    // The list, with its filters.
    let list = eventually("the proposal is listed verified", || async {
        let v = read(&app, "/api/v1/proposals?status=verified", &operator).await;
        (v["items"].as_array().unwrap().len() == 1).then_some(v)
    })
    .await;
    assert_eq!(list["items"][0]["id"], raised["id"]);
    let by_service = read(
        &app,
        &format!("/api/v1/proposals?service_id={sid}"),
        &operator,
    )
    .await;
    assert_eq!(by_service["items"].as_array().unwrap().len(), 1);
    let none = read(&app, "/api/v1/proposals?status=rejected", &operator).await;
    assert!(none["items"].as_array().unwrap().is_empty());
    let res = app.get("/api/v1/proposals?status=done", &operator).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    // As it stood before it was approved.
    let at = approved_at(&approved);
    let then = read(
        &app,
        &format!("{location}?as_of={}", urlencode(&at)),
        &operator,
    )
    .await;
    assert_eq!(then["status"], "raised");

    // Clients and integrations do not read proposals; other tenants do not find them.
    let client = app.token_for(
        app.tenant,
        "hanako",
        &[Role::Client],
        Some(client["id"].as_str().unwrap().parse().unwrap()),
    );
    assert_eq!(
        app.get(&location, &client).await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.get("/api/v1/proposals", &app.token(&[Role::Integration]))
            .await
            .status(),
        StatusCode::FORBIDDEN
    );
    let elsewhere = app.register_tenant("Other MSP").await;
    let theirs = app.token_for(elsewhere, "eve", &[Role::Admin], None);
    assert_eq!(
        app.get(&location, &theirs).await.status(),
        StatusCode::NOT_FOUND
    );
    let (status, _) = call(
        &app,
        &format!("{location}/verify"),
        &theirs,
        json!({ "note": "x" }),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

fn approved_at(approved: &Value) -> String {
    // Just before the decision: the proposal was still raised then.
    let decided: chrono::DateTime<Utc> = approved["decided_at"].as_str().unwrap().parse().unwrap();
    (decided - chrono::Duration::microseconds(1)).to_rfc3339()
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

#[tokio::test]
async fn a_failure_after_a_fix_links_to_the_earlier_incident_and_lapses_its_proposal() {
    let app = spawn_app().await;
    let client = register_client(&app, "Client A").await;
    let service = register_service(&app, client["id"].as_str().unwrap(), "shop").await;
    let sid = service["id"].as_str().unwrap().to_owned();
    let monitoring = app.token(&[Role::Integration]);
    let operator = app.token_for(app.tenant, "olga", &[Role::Operator], None);
    let maintainer = app.token_for(app.tenant, "mia", &[Role::Maintainer], None);
    let approver = app.token_for(app.tenant, "arno", &[Role::Approver], None);
    let alert = |status: &str| {
        json!({ "source": "prometheus", "dedup_key": "disk-full-db1", "service": "shop",
                "summary": "Disk almost full on db1", "severity": "critical", "status": status })
    };

    let first = ok(&app, "/api/v1/alerts", &monitoring, alert("firing")).await;
    let earlier = first["incident_id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/incidents/{earlier}");
    let fixed = ok(
        &app,
        &format!("{path}/actions"),
        &maintainer,
        json!({ "kind": "fix", "description": "Log rotation for the audit log" }),
    )
    .await;
    let action_id = fixed["fixes"][0]["action_id"].clone();
    ok(&app, &format!("{path}/resolve"), &operator, json!(null)).await;
    ok(&app, "/api/v1/alerts", &monitoring, alert("resolved")).await;

    // A proposal that followed it, carried out and verified.
    let proposal = ok(&app, "/api/v1/proposals", &maintainer, json!({
        "title": "Alert on disk growth", "description": "Page a week before disks fill", "incident_id": earlier
    })).await;
    assert_eq!(proposal["service_ids"], json!([sid]));
    let ppath = format!("/api/v1/proposals/{}", proposal["id"].as_str().unwrap());
    ok(
        &app,
        &format!("{ppath}/approve"),
        &approver,
        json!({ "comment": "yes" }),
    )
    .await;
    let done = change(&app, &sid, &[], true).await;
    ok(
        &app,
        &format!("{ppath}/implement"),
        &maintainer,
        json!({ "change_id": done }),
    )
    .await;
    ok(
        &app,
        &format!("{ppath}/verify"),
        &approver,
        json!({ "note": "Disk alerts fire early now" }),
    )
    .await;
    // The recurrence detector decides on the read models: let them catch up
    // with the fix and the verification, as they do in milliseconds.
    eventually("the proposal is verified in the read model", || async {
        let v = read(&app, "/api/v1/proposals?status=verified", &operator).await;
        (v["items"].as_array().unwrap().len() == 1).then_some(())
    })
    .await;

    // The same fingerprint fails again: a new incident, linked to the earlier one and its fix.
    let again = ok(&app, "/api/v1/alerts", &monitoring, alert("firing")).await;
    let recurring = again["incident_id"].as_str().unwrap().to_owned();
    assert_ne!(recurring, earlier);
    let linked = eventually("the recurrence is recorded", || async {
        let v = read(&app, &format!("/api/v1/incidents/{recurring}"), &operator).await;
        (!v["recurrence_of"].is_null()).then_some(v)
    })
    .await;
    assert_eq!(linked["recurrence_of"], json!(earlier));
    let timeline = read(
        &app,
        &format!("/api/v1/incidents/{recurring}/timeline"),
        &operator,
    )
    .await;
    let detected = timeline["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "RecurrenceDetected")
        .expect("on the timeline")
        .clone();
    assert_eq!(detected["data"]["matched_by"], "fingerprint");
    assert_eq!(
        detected["data"]["fix"],
        json!({ "kind": "action", "action_id": action_id })
    );
    assert_eq!(detected["work_class"], "operations");
    // The proposal is no longer verified: it needs review.
    let lapsed = read(&app, &ppath, &operator).await;
    assert_eq!(lapsed["status"], "implemented");
    assert_eq!(lapsed["needs_review"], json!(recurring));
    let reviewed = ok(
        &app,
        &format!("{ppath}/verify"),
        &approver,
        json!({ "note": "Threshold lowered after the recurrence" }),
    )
    .await;
    assert_eq!(reviewed["status"], "verified");
    assert!(reviewed["needs_review"].is_null());
}

#[tokio::test]
async fn a_recurrence_needs_a_fix_made_before_it_and_may_be_matched_by_service_alone() {
    let app = spawn_app().await;
    let client = register_client(&app, "Client A").await;
    let cid = client["id"].as_str().unwrap();
    let shop = register_service(&app, cid, "shop").await;
    let blog = register_service(&app, cid, "blog").await;
    let sid = shop["id"].as_str().unwrap().to_owned();
    let monitoring = app.token(&[Role::Integration]);
    let operator = app.token_for(app.tenant, "olga", &[Role::Operator], None);
    let alert = |service: &Value, key: &str| {
        json!({ "source": "prometheus", "dedup_key": key, "group_key": key, "service": service["id"],
                "summary": key, "severity": "error" })
    };
    let incident_of = |v: &Value| v["incident_id"].as_str().unwrap().to_owned();

    // A fails; while it is open, B opens on the same service.
    let a = incident_of(
        &ok(
            &app,
            "/api/v1/alerts",
            &monitoring,
            alert(&shop, "disk-full"),
        )
        .await,
    );
    let b = ok(
        &app,
        "/api/v1/incidents",
        &operator,
        json!({ "title": "Slow checkout", "service_id": sid, "severity": "warning" }),
    )
    .await;
    let b = b["id"].as_str().unwrap().to_owned();
    // Then A is fixed by a change and resolved.
    let fix = change(&app, &sid, &[&a], true).await;
    ok(
        &app,
        &format!("/api/v1/incidents/{a}/resolve"),
        &operator,
        json!(null),
    )
    .await;
    // The blog fails and is resolved without any fix; it fails again.
    let d = incident_of(
        &ok(
            &app,
            "/api/v1/alerts",
            &monitoring,
            alert(&blog, "blog-down"),
        )
        .await,
    );
    ok(
        &app,
        &format!("/api/v1/incidents/{d}/resolve"),
        &operator,
        json!(null),
    )
    .await;
    let e = incident_of(
        &ok(
            &app,
            "/api/v1/alerts",
            &monitoring,
            alert(&blog, "blog-down-again"),
        )
        .await,
    );
    // The shop fails again with another fingerprint: a recurrence by service.
    let c = incident_of(
        &ok(
            &app,
            "/api/v1/alerts",
            &monitoring,
            alert(&shop, "checkout-5xx"),
        )
        .await,
    );
    let linked = eventually("C is a recurrence of A", || async {
        let v = read(&app, &format!("/api/v1/incidents/{c}"), &operator).await;
        (!v["recurrence_of"].is_null()).then_some(v)
    })
    .await;
    assert_eq!(linked["recurrence_of"], json!(a));
    let timeline = read(&app, &format!("/api/v1/incidents/{c}/timeline"), &operator).await;
    let detected = timeline["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "RecurrenceDetected")
        .unwrap()
        .clone();
    assert_eq!(detected["data"]["matched_by"], "service");
    assert_eq!(
        detected["data"]["fix"],
        json!({ "kind": "change", "change_id": fix })
    );
    // The detector follows the log in order, so it has passed E and B: E's
    // service was never fixed, and B opened before A's fix.
    for (id, why) in [(&e, "never fixed"), (&b, "fixed only after it opened")] {
        let v = read(&app, &format!("/api/v1/incidents/{id}"), &operator).await;
        assert!(v["recurrence_of"].is_null(), "{why}: {v}");
    }
    // Replayed from the start, it decides the same: B still opened before the fix.
    opsledger_store::projection::rebuild(&app.app_state.pool, &opsledger_store::work::Recurrence)
        .await
        .unwrap();
    let v = read(&app, &format!("/api/v1/incidents/{b}"), &operator).await;
    assert!(
        v["recurrence_of"].is_null(),
        "a rebuild links nothing new: {v}"
    );
    let timeline = read(&app, &format!("/api/v1/incidents/{c}/timeline"), &operator).await;
    let found = timeline["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "RecurrenceDetected")
        .count();
    assert_eq!(found, 1, "a rebuild records nothing twice");
}

#[tokio::test]
async fn proposal_and_ledger_routes_keep_roles_periods_and_tenants() {
    let app = spawn_app().await;
    let client = register_client(&app, "Client A").await;
    let cid: Uuid = client["id"].as_str().unwrap().parse().unwrap();
    let service = register_service(&app, &cid.to_string(), "shop").await;
    let sid = service["id"].as_str().unwrap().to_owned();
    let mia = app.token_for(app.tenant, "mia", &[Role::Maintainer], None);
    let proposal = ok(&app, "/api/v1/proposals", &mia, json!({
        "title": "Pool limits", "description": "Cap pools", "service_ids": [sid], "minutes_spent": 5
    }))
    .await;
    let path = format!("/api/v1/proposals/{}", proposal["id"].as_str().unwrap());
    let body = json!({ "title": "t", "description": "d", "service_ids": [sid] });
    let mut raised = 1;
    for role in Role::ALL {
        let token = app.token_for(
            app.tenant,
            &format!("someone-{}", role.as_str()),
            &[role],
            Some(cid),
        );
        let may = |roles: &[Role]| roles.contains(&role);
        let raise = app.post("/api/v1/proposals", &token, &body).await.status();
        raised += i64::from(raise.is_success());
        let read = app.get(&path, &token).await.status();
        let list = app.get("/api/v1/proposals", &token).await.status();
        // Each command fails on state or input for those who may give it,
        // so only the role decides between 403 and the rest.
        let verify = app
            .post(&format!("{path}/verify"), &token, &json!({ "note": "n" }))
            .await
            .status();
        let implement = app
            .post(
                &format!("{path}/implement"),
                &token,
                &json!({ "change_id": Uuid::now_v7() }),
            )
            .await
            .status();
        let ledger = app.get("/api/v1/work", &token).await.status();
        let staff = [
            Role::Operator,
            Role::Maintainer,
            Role::Approver,
            Role::Auditor,
            Role::Admin,
        ];
        for (what, status, allowed) in [
            (
                "raise",
                raise,
                may(&[
                    Role::Operator,
                    Role::Maintainer,
                    Role::Approver,
                    Role::Admin,
                ]),
            ),
            ("read", read, may(&staff)),
            ("list", list, may(&staff)),
            (
                "verify",
                verify,
                may(&[Role::Approver, Role::Maintainer, Role::Admin]),
            ),
            (
                "implement",
                implement,
                may(&[Role::Maintainer, Role::Admin]),
            ),
            (
                "ledger",
                ledger,
                may(&[
                    Role::Operator,
                    Role::Maintainer,
                    Role::Approver,
                    Role::Auditor,
                    Role::Admin,
                    Role::Client,
                ]),
            ),
        ] {
            if allowed {
                assert_ne!(
                    status,
                    StatusCode::FORBIDDEN,
                    "{} may {what}",
                    role.as_str()
                );
            } else {
                assert_eq!(
                    status,
                    StatusCode::FORBIDDEN,
                    "{} may not {what}",
                    role.as_str()
                );
            }
        }
    }

    // The ledger by period, and nothing of it for another tenant.
    let operator = app.token(&[Role::Operator]);
    // Wait for every proposal raised above, not just the first: the ledger
    // follows the log, and a count read half-way would not match the later ones.
    let all = eventually("every proposal is in the ledger", || async {
        let v = read(&app, "/api/v1/work", &operator).await;
        (v["maintenance"]["count"].as_i64() == Some(raised)).then_some(v)
    })
    .await;
    let count = all["maintenance"]["count"].clone();
    let hour = chrono::Duration::hours(1);
    let q = |since: chrono::DateTime<Utc>, until: chrono::DateTime<Utc>| {
        format!(
            "/api/v1/work?since={}&until={}",
            urlencode(&since.to_rfc3339()),
            urlencode(&until.to_rfc3339())
        )
    };
    let now = Utc::now();
    let around = read(&app, &q(now - hour, now + hour), &operator).await;
    assert_eq!(around["maintenance"]["count"], count);
    let before = read(&app, &q(now - hour * 3, now - hour * 2), &operator).await;
    assert_eq!(before["maintenance"]["count"], 0);
    assert!(before["items"].as_array().unwrap().is_empty());
    let elsewhere = app.register_tenant("Other MSP").await;
    let theirs = app.token_for(elsewhere, "eve", &[Role::Admin], None);
    let other = read(&app, "/api/v1/work", &theirs).await;
    assert_eq!(other["maintenance"]["count"], 0);
    assert_eq!(other["operations"]["count"], 0);
    assert!(other["items"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn a_nul_never_stops_the_proposals_or_the_ledger() {
    let app = spawn_app().await;
    let client = register_client(&app, "Client A").await;
    let service = register_service(&app, client["id"].as_str().unwrap(), "shop").await;
    let sid = service["id"].as_str().unwrap().to_owned();
    let mia = app.token_for(app.tenant, "mia", &[Role::Maintainer], None);
    let (status, problem) = call(
        &app,
        "/api/v1/proposals",
        &mia,
        json!({ "title": "t", "description": "a\u{0}b", "service_ids": [sid] }),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    let incident = ok(
        &app,
        "/api/v1/incidents",
        &mia,
        json!({ "title": "x", "service_id": sid, "severity": "info" }),
    )
    .await;
    let (status, _) = call(
        &app,
        &format!(
            "/api/v1/incidents/{}/findings",
            incident["id"].as_str().unwrap()
        ),
        &mia,
        json!({ "statement": "a\u{0}b" }),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    // A token's subject goes beside every event its bearer records: one
    // holding a NUL is refused outright, and nothing is written.
    let before = read(&app, "/api/v1/work", &mia).await["maintenance"]["count"].clone();
    let odd = app.token_for(app.tenant, "ni\u{0}l", &[Role::Maintainer], None);
    let (status, problem) = call(&app, "/api/v1/proposals", &odd,
        json!({ "title": "After the NUL", "description": "d", "service_ids": [sid], "minutes_spent": 1 })).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("NUL"),
        "{problem}"
    );
    // The read models go on: a proposal by a sane token is listed.
    ok(&app, "/api/v1/proposals", &mia,
        json!({ "title": "After the refusal", "description": "d", "service_ids": [sid], "minutes_spent": 1 })).await;
    eventually("the proposal is listed", || async {
        let v = read(&app, "/api/v1/proposals", &mia).await;
        (v["items"].as_array().unwrap().len() == 1).then_some(v)
    })
    .await;
    eventually("the ledger has it", || async {
        let v = read(&app, "/api/v1/work?class=maintenance", &mia).await;
        (v["maintenance"]["minutes_spent"] == 1 && v["maintenance"]["count"] != before).then_some(v)
    })
    .await;
}
