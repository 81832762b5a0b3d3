//! Client inquiries (issue 5): clients ask about their own services only and
//! see only their own client's inquiries, without internal fields; the
//! teams' queues hold them beside incidents; invalid transitions are 409s.

use opsledger_domain::access::Role;
use opsledger_testkit::{spawn_app, TestApp};
use opsledger_tests::eventually;
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::api_directory::{register_client, register_service};
use crate::runbooks::call;

fn client_token(app: &TestApp, client: &Value) -> String {
    let id: Uuid = client["id"].as_str().unwrap().parse().unwrap();
    app.token_for(
        app.tenant,
        &format!("user-of-{id}"),
        &[Role::Client],
        Some(id),
    )
}

async fn open(app: &TestApp, token: &str, service: &Value, subject: &str) -> (StatusCode, Value) {
    let res = app
        .post(
            "/api/v1/inquiries",
            token,
            &json!({ "service_id": service["id"], "kind": "question", "subject": subject, "body": "Please advise." }),
        )
        .await;
    (res.status(), res.json().await.unwrap())
}

async fn list(app: &TestApp, token: &str, query: &str) -> Vec<String> {
    let page: Value = app
        .get(&format!("/api/v1/inquiries{query}"), token)
        .await
        .json()
        .await
        .unwrap();
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["subject"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn clients_ask_about_their_own_services_and_see_only_their_own_inquiries() {
    let app = spawn_app().await;
    let a = register_client(&app, "Client A").await;
    let b = register_client(&app, "Client B").await;
    let shop = register_service(&app, a["id"].as_str().unwrap(), "a-shop").await;
    let crm = register_service(&app, b["id"].as_str().unwrap(), "b-crm").await;
    let (ta, tb) = (client_token(&app, &a), client_token(&app, &b));
    let operator = app.token(&[Role::Operator]);

    let (status, asked) = open(&app, &ta, &shop, "A asks").await;
    assert_eq!(status, StatusCode::CREATED, "{asked}");
    assert_eq!(asked["client_id"], a["id"]);
    assert_eq!(asked["opened_by_role"], "client");
    assert_eq!(asked["status"], "open");
    // Another client's service does not exist for a client user.
    let (status, _) = open(&app, &ta, &crm, "A pokes B").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    // Staff open one on B's behalf (a question asked by phone).
    let (status, for_b) = open(&app, &operator, &crm, "B asks by phone").await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(for_b["client_id"], b["id"]);
    assert_eq!(for_b["opened_by_role"], "operator");

    eventually("both inquiries are listed", || async {
        (list(&app, &operator, "").await.len() == 2).then_some(())
    })
    .await;
    assert_eq!(list(&app, &ta, "").await, vec!["A asks"]);
    assert_eq!(list(&app, &tb, "").await, vec!["B asks by phone"]);
    let b_id = b["id"].as_str().unwrap();
    assert!(list(&app, &ta, &format!("?client_id={b_id}"))
        .await
        .is_empty());
    assert_eq!(
        list(&app, &operator, &format!("?client_id={b_id}")).await,
        vec!["B asks by phone"]
    );

    // B cannot read, close or even learn of A's inquiry; nor answer its own.
    let a_path = format!("/api/v1/inquiries/{}", asked["id"].as_str().unwrap());
    assert_eq!(app.get(&a_path, &tb).await.status(), StatusCode::NOT_FOUND);
    let (status, _, _) = call(&app, &format!("{a_path}/close"), &tb, None, None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = call(
        &app,
        &format!("/api/v1/inquiries/{}/answer", for_b["id"].as_str().unwrap()),
        &tb,
        Some(json!({ "answer": "self-service" })),
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Answers are the client's to read; who answered, the effort and the
    // escalation's reason are not.
    let (status, _, staff_view) = call(
        &app,
        &format!("{a_path}/answer"),
        &operator,
        Some(json!({ "answer": "Nightly at 02:00 JST.", "minutes_spent": 7 })),
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{staff_view}");
    assert_eq!(staff_view["answers"][0]["answered_by"], "tester");
    assert_eq!(staff_view["answers"][0]["minutes_spent"], 7);
    let (status, _, _) = call(
        &app,
        &format!("{a_path}/escalate"),
        &operator,
        Some(json!({ "reason": "the client wants it hourly: a cron change" })),
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let seen: Value = app.get(&a_path, &ta).await.json().await.unwrap();
    assert_eq!(seen["status"], "escalated");
    assert_eq!(seen["answers"][0]["text"], "Nightly at 02:00 JST.");
    for hidden in ["escalation_reason", "opened_by"] {
        assert!(seen.get(hidden).is_none(), "{hidden}: {seen}");
    }
    assert!(seen["answers"][0].get("answered_by").is_none(), "{seen}");
    assert!(seen["answers"][0].get("minutes_spent").is_none(), "{seen}");
    let staff: Value = app.get(&a_path, &operator).await.json().await.unwrap();
    assert_eq!(
        staff["escalation_reason"],
        "the client wants it hourly: a cron change"
    );

    // A client closes its own; another tenant never sees it.
    let (status, _, closed) = call(&app, &format!("{a_path}/close"), &ta, None, None, None).await;
    assert_eq!(
        (status, closed["status"].clone()),
        (StatusCode::OK, json!("closed"))
    );
    let other = app.register_tenant("Other MSP").await;
    let stranger = app.token_for(other, "x", &[Role::Admin], None);
    assert_eq!(
        app.get(&a_path, &stranger).await.status(),
        StatusCode::NOT_FOUND
    );
    assert!(list(&app, &stranger, "").await.is_empty());
}

async fn queue(app: &TestApp, team: &str, query: &str) -> Vec<(String, String)> {
    let q: Value = app
        .get(
            &format!("/api/v1/queues/{team}{query}"),
            &app.token(&[Role::Auditor]),
        )
        .await
        .json()
        .await
        .unwrap();
    q["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["kind"].as_str().unwrap().to_owned(),
                i["title"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn item(kind: &str, title: &str) -> (String, String) {
    (kind.to_owned(), title.to_owned())
}

#[tokio::test]
async fn open_inquiries_wait_in_the_operations_queue_and_escalated_ones_in_maintenance() {
    let app = spawn_app().await;
    let client = register_client(&app, "Client Q").await;
    let service = register_service(&app, client["id"].as_str().unwrap(), "q-shop").await;
    let operator = app.token(&[Role::Operator]);
    let asker = client_token(&app, &client);
    let res = app
        .post(
            "/api/v1/incidents",
            &operator,
            &json!({ "title": "Checkout errors", "service_id": service["id"], "severity": "error" }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let (_, first) = open(&app, &asker, &service, "Invoice copy").await;
    let (_, second) = open(&app, &asker, &service, "Bigger uploads").await;
    let path = |i: &Value| format!("/api/v1/inquiries/{}", i["id"].as_str().unwrap());

    let expected = vec![
        item("incident", "Checkout errors"),
        item("inquiry", "Invoice copy"),
        item("inquiry", "Bigger uploads"),
    ];
    eventually(
        "the queue holds the incident and both inquiries",
        || async { (queue(&app, "operations", "").await == expected).then_some(()) },
    )
    .await;
    assert_eq!(
        queue(&app, "operations", "?limit=2").await,
        expected[..2].to_vec()
    );
    let q: Value = app
        .get("/api/v1/queues/operations", &operator)
        .await
        .json()
        .await
        .unwrap();
    let inquiry = &q["items"][1];
    assert_eq!(inquiry["inquiry_id"], first["id"]);
    assert_eq!(inquiry["status"], "open");
    assert!(inquiry["age_seconds"].as_i64().unwrap() >= 0);
    assert!(inquiry["assignee"].is_null());
    assert_eq!(q["items"][0]["kind"], "incident");
    assert!(q["items"][0]["incident_id"].is_string());

    // Answered but not closed: still the operations team's.
    let (status, _, _) = call(
        &app,
        &format!("{}/answer", path(&first)),
        &operator,
        Some(json!({ "answer": "Sent again." })),
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // Escalated: maintenance's, not operations'.
    let (status, _, _) = call(
        &app,
        &format!("{}/escalate", path(&second)),
        &operator,
        Some(json!({ "reason": "client_max_body_size" })),
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    eventually("the escalated inquiry moves to maintenance", || async {
        let ops = queue(&app, "operations", "").await;
        let maint = queue(&app, "maintenance", "").await;
        (ops == vec![
            item("incident", "Checkout errors"),
            item("inquiry", "Invoice copy"),
        ] && maint == vec![item("inquiry", "Bigger uploads")])
        .then_some(())
    })
    .await;
    let m: Value = app
        .get("/api/v1/queues/maintenance", &operator)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(m["items"][0]["status"], "escalated");

    // Closed: in no queue.
    for i in [&first, &second] {
        let (status, _, _) = call(
            &app,
            &format!("{}/close", path(i)),
            &operator,
            None,
            None,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
    }
    eventually("closed inquiries leave the queues", || async {
        let ops = queue(&app, "operations", "").await;
        let maint = queue(&app, "maintenance", "").await;
        (ops == vec![item("incident", "Checkout errors")] && maint.is_empty()).then_some(())
    })
    .await;
}

#[tokio::test]
async fn invalid_inquiry_transitions_are_409_naming_the_state() {
    let app = spawn_app().await;
    let client = register_client(&app, "Client T").await;
    let service = register_service(&app, client["id"].as_str().unwrap(), "t-site").await;
    let operator = app.token(&[Role::Operator]);
    let (_, i) = open(&app, &client_token(&app, &client), &service, "Question").await;
    let p = format!("/api/v1/inquiries/{}", i["id"].as_str().unwrap());

    // An answer retried with its key is recorded once.
    let answer = json!({ "answer": "Yes.", "minutes_spent": 3 });
    let (status, etag, first) = call(
        &app,
        &format!("{p}/answer"),
        &operator,
        Some(answer.clone()),
        Some("\"1\""),
        Some("ans-1"),
    )
    .await;
    assert_eq!(
        (status, etag.as_deref()),
        (StatusCode::OK, Some("\"2\"")),
        "{first}"
    );
    let (status, _, again) = call(
        &app,
        &format!("{p}/answer"),
        &operator,
        Some(answer),
        Some("\"1\""),
        Some("ans-1"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again, first);
    let read: Value = app.get(&p, &operator).await.json().await.unwrap();
    assert_eq!(read["answers"].as_array().unwrap().len(), 1);
    assert_eq!(read["status"], "answered");

    // A stale version is refused with where the inquiry stands.
    let (status, _, problem) = call(
        &app,
        &format!("{p}/escalate"),
        &operator,
        Some(json!({ "reason": "r" })),
        Some("\"1\""),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(
        (
            problem["current_version"].clone(),
            problem["current_state"].clone()
        ),
        (json!(2), json!("answered"))
    );

    let (status, _, _) = call(
        &app,
        &format!("{p}/escalate"),
        &operator,
        Some(json!({ "reason": "r" })),
        Some("\"2\""),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, problem) = call(
        &app,
        &format!("{p}/escalate"),
        &operator,
        Some(json!({ "reason": "again" })),
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(problem["current_state"], "escalated");
    assert_eq!(
        problem["detail"],
        "cannot escalate an inquiry that is escalated"
    );

    let (status, _, _) = call(
        &app,
        &format!("{p}/close"),
        &operator,
        Some(json!({ "note": "done" })),
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    for (verb, body) in [
        ("answer", json!({ "answer": "late" })),
        ("escalate", json!({ "reason": "late" })),
        ("close", json!({})),
    ] {
        let (status, _, problem) = call(
            &app,
            &format!("{p}/{verb}"),
            &operator,
            Some(body),
            None,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::CONFLICT, "{verb}");
        assert_eq!(problem["current_state"], "closed", "{verb}");
    }
    let su = app.db.superuser().await;
    let types: Vec<String> = su
        .query(
            "SELECT event_type FROM events WHERE stream_id = $1 ORDER BY stream_version",
            &[&format!("inquiry-{}", i["id"].as_str().unwrap())],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        types,
        [
            "InquiryOpened",
            "InquiryAnswered",
            "InquiryEscalated",
            "InquiryClosed"
        ]
    );
}
