use opsledger_domain::access::Role;
use opsledger_testkit::{spawn_app, TestApp};
use opsledger_tests::eventually;
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

pub async fn register_client(app: &TestApp, name: &str) -> Value {
    let admin = app.token(&[Role::Admin]);
    let res = app
        .post(
            "/api/v1/clients",
            &admin,
            &json!({
                "name": name, "locale": "ja",
                "contacts": [{ "name": "山田 花子", "email": "hanako@example.jp" }]
            }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    res.json().await.unwrap()
}

pub async fn register_service(app: &TestApp, client_id: &str, name: &str) -> Value {
    let admin = app.token(&[Role::Admin]);
    let res = app
        .post("/api/v1/services", &admin, &json!({
            "client_id": client_id, "name": name, "sla_target_pct": 99.9, "notice_period_h": 72,
            "components": [{ "name": "web-1", "kind": "server" }, { "name": "orders-db", "kind": "database" }]
        }))
        .await;
    assert_eq!(
        res.status(),
        StatusCode::CREATED,
        "{}",
        res.text().await.unwrap()
    );
    res.json().await.unwrap()
}

#[tokio::test]
async fn an_admin_registers_a_client_and_a_service_that_everyone_staff_can_read() {
    let app = spawn_app().await;
    let admin = app.token(&[Role::Admin]);
    let res = app
        .post(
            "/api/v1/clients",
            &admin,
            &json!({ "name": "株式会社サンプル", "locale": "ja",
            "contacts": [{ "name": "山田 花子", "email": "hanako@example.jp", "locale": "ja" }] }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let client: Value = res.json().await.unwrap();
    assert_eq!(
        location,
        format!("/api/v1/clients/{}", client["id"].as_str().unwrap())
    );
    assert_eq!(client["contacts"][0]["email"], "hanako@example.jp");

    let service = register_service(&app, client["id"].as_str().unwrap(), "受注サイト").await;
    assert_eq!(service["notice_period_h"], 72);
    assert_eq!(service["sla_target_pct"], 99.9);

    let operator = app.token(&[Role::Operator]);
    let got: Value = app
        .get(
            &format!("/api/v1/services/{}", service["id"].as_str().unwrap()),
            &operator,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(got["name"], "受注サイト");
    assert_eq!(got["components"][1]["kind"], "database");

    let listed = eventually("the service is projected", || async {
        let page: Value = app
            .get("/api/v1/services", &operator)
            .await
            .json()
            .await
            .unwrap();
        (page["items"].as_array().unwrap().len() == 1).then_some(page)
    })
    .await;
    assert_eq!(listed["items"][0]["id"], service["id"]);
    let clients: Value = app
        .get("/api/v1/clients", &operator)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(clients["items"][0]["name"], "株式会社サンプル");
    assert!(
        clients.get("next_cursor").is_none(),
        "a last page links nowhere"
    );
}

#[tokio::test]
async fn lists_page_through_every_item_once() {
    let app = spawn_app().await;
    let mut registered = Vec::new();
    for n in 0..5 {
        registered.push(register_client(&app, &format!("Client {n}")).await["id"].clone());
    }
    let operator = app.token(&[Role::Operator]);
    eventually("all clients are projected", || async {
        let page: Value = app
            .get("/api/v1/clients", &operator)
            .await
            .json()
            .await
            .unwrap();
        (page["items"].as_array().unwrap().len() == 5).then_some(())
    })
    .await;
    let mut seen = Vec::new();
    let mut path = "/api/v1/clients?limit=2".to_owned();
    loop {
        let page: Value = app.get(&path, &operator).await.json().await.unwrap();
        let items = page["items"].as_array().unwrap();
        assert!(!items.is_empty(), "a cursor never leads to an empty page");
        seen.extend(items.iter().map(|c| c["id"].clone()));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/v1/clients?limit=2&after={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, registered);
}

#[tokio::test]
async fn a_service_can_be_read_as_of_a_past_instant() {
    let app = spawn_app().await;
    let operator = app.token(&[Role::Operator]);
    let before = chrono::Utc::now() - chrono::Duration::seconds(1);
    let client = register_client(&app, "Acme").await;
    let service = register_service(&app, client["id"].as_str().unwrap(), "Orders").await;
    let id = service["id"].as_str().unwrap();
    let then = app
        .get(
            &format!(
                "/api/v1/services/{id}?as_of={}",
                before.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
            ),
            &operator,
        )
        .await;
    assert_eq!(then.status(), StatusCode::NOT_FOUND, "it did not exist yet");
    let now = app
        .get(
            &format!(
                "/api/v1/services/{id}?as_of={}",
                (chrono::Utc::now() + chrono::Duration::seconds(1))
                    .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
            ),
            &operator,
        )
        .await;
    assert_eq!(now.status(), StatusCode::OK);
}

#[tokio::test]
async fn names_are_unique_per_tenant_and_a_service_needs_a_known_client() {
    let app = spawn_app().await;
    let admin = app.token(&[Role::Admin]);
    register_client(&app, "Acme").await;
    let again = app
        .post("/api/v1/clients", &admin, &json!({ "name": "  ACME " }))
        .await;
    assert_eq!(again.status(), StatusCode::CONFLICT);
    assert_eq!(again.headers()["content-type"], "application/problem+json");
    let problem: Value = again.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("already exists"),
        "{problem}"
    );

    // The longest name accepted registers (its reservation stream is a digest).
    let long = "受".repeat(200);
    let res = app
        .post("/api/v1/clients", &admin, &json!({ "name": long }))
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let res = app
        .post(
            "/api/v1/clients",
            &admin,
            &json!({ "name": "受".repeat(201) }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let orphan = app
        .post("/api/v1/services", &admin, &json!({ "client_id": Uuid::now_v7(), "name": "x", "sla_target_pct": 99.0, "notice_period_h": 1 }))
        .await;
    assert_eq!(orphan.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let problem: Value = orphan.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("does not exist"),
        "{problem}"
    );
}

#[tokio::test]
async fn an_idempotent_retry_returns_the_first_response_and_registers_once() {
    let app = spawn_app().await;
    let admin = app.token(&[Role::Admin]);
    let body = json!({ "name": "Retry Co" });
    let send = |body: Value| {
        app.http
            .post(app.url("/api/v1/clients"))
            .bearer_auth(&admin)
            .header("Idempotency-Key", "req-42")
            .json(&body)
            .send()
    };
    let first = send(body.clone()).await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.unwrap();
    let retry = send(body.clone()).await.unwrap();
    assert_eq!(retry.status(), StatusCode::CREATED);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    assert_eq!(retry.json::<Value>().await.unwrap(), first);
    let other = send(json!({ "name": "Another Co" })).await.unwrap();
    assert_eq!(other.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let su = app.db.superuser().await;
    let n: i64 = su
        .query_one(
            "SELECT count(*) FROM events WHERE event_type = 'ClientRegistered'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
}

#[tokio::test]
async fn a_client_user_sees_only_its_own_client_and_services() {
    let app = spawn_app().await;
    let mine = register_client(&app, "Mine").await;
    let theirs = register_client(&app, "Theirs").await;
    let my_service = register_service(&app, mine["id"].as_str().unwrap(), "My site").await;
    let their_service = register_service(&app, theirs["id"].as_str().unwrap(), "Their site").await;
    let me = app.token_for(
        app.tenant,
        "client-user",
        &[Role::Client],
        Some(mine["id"].as_str().unwrap().parse().unwrap()),
    );

    assert_eq!(
        app.get(
            &format!("/api/v1/services/{}", my_service["id"].as_str().unwrap()),
            &me
        )
        .await
        .status(),
        StatusCode::OK
    );
    assert_eq!(
        app.get(
            &format!("/api/v1/services/{}", their_service["id"].as_str().unwrap()),
            &me
        )
        .await
        .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get(
            &format!("/api/v1/clients/{}", theirs["id"].as_str().unwrap()),
            &me
        )
        .await
        .status(),
        StatusCode::NOT_FOUND
    );

    let operator = app.token(&[Role::Operator]);
    eventually("both services are projected", || async {
        let page: Value = app
            .get("/api/v1/services", &operator)
            .await
            .json()
            .await
            .unwrap();
        (page["items"].as_array().unwrap().len() == 2).then_some(())
    })
    .await;
    let page: Value = app.get("/api/v1/services", &me).await.json().await.unwrap();
    let ids: Vec<&Value> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["id"])
        .collect();
    assert_eq!(ids, vec![&my_service["id"]]);
    let asked_for_theirs: Value = app
        .get(
            &format!(
                "/api/v1/services?client_id={}",
                theirs["id"].as_str().unwrap()
            ),
            &me,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(asked_for_theirs["items"], json!([]));
    let clients: Value = app.get("/api/v1/clients", &me).await.json().await.unwrap();
    assert_eq!(clients["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn roles_are_enforced_on_every_directory_route() {
    let app = spawn_app().await;
    let client = register_client(&app, "Acme").await;
    let service = register_service(&app, client["id"].as_str().unwrap(), "Orders").await;
    let reads = [
        "/api/v1/clients".to_owned(),
        format!("/api/v1/clients/{}", client["id"].as_str().unwrap()),
        "/api/v1/services".to_owned(),
        format!("/api/v1/services/{}", service["id"].as_str().unwrap()),
    ];
    for role in Role::ALL {
        let token = app.token_for(
            app.tenant,
            "u",
            &[role],
            (role == Role::Client).then(|| client["id"].as_str().unwrap().parse().unwrap()),
        );
        for path in &reads {
            let expected = if role == Role::Integration {
                StatusCode::FORBIDDEN
            } else {
                StatusCode::OK
            };
            assert_eq!(
                app.get(path, &token).await.status(),
                expected,
                "{role:?} GET {path}"
            );
        }
        let post = app
            .post(
                "/api/v1/clients",
                &token,
                &json!({ "name": format!("By {role:?}") }),
            )
            .await;
        let expected = if role == Role::Admin {
            StatusCode::CREATED
        } else {
            StatusCode::FORBIDDEN
        };
        assert_eq!(post.status(), expected, "{role:?} POST /api/v1/clients");
        let post = app.post("/api/v1/services", &token, &json!({ "client_id": client["id"], "name": format!("S by {role:?}"), "sla_target_pct": 99.0, "notice_period_h": 1 })).await;
        let expected = if role == Role::Admin {
            StatusCode::CREATED
        } else {
            StatusCode::FORBIDDEN
        };
        assert_eq!(post.status(), expected, "{role:?} POST /api/v1/services");
    }
}

#[tokio::test]
async fn another_tenants_data_does_not_exist_for_you() {
    let app = spawn_app().await;
    let client = register_client(&app, "Acme").await;
    let service = register_service(&app, client["id"].as_str().unwrap(), "Orders").await;
    let other = app.register_tenant("Other MSP").await;
    let outsider = app.token_for(other, "o", &[Role::Admin], None);
    assert_eq!(
        app.get(
            &format!("/api/v1/services/{}", service["id"].as_str().unwrap()),
            &outsider
        )
        .await
        .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get(
            &format!("/api/v1/clients/{}", client["id"].as_str().unwrap()),
            &outsider
        )
        .await
        .status(),
        StatusCode::NOT_FOUND
    );
    let page: Value = app
        .get("/api/v1/services", &outsider)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"], json!([]));
    // Names are per tenant: the other tenant may use the same one.
    let res = app
        .post("/api/v1/clients", &outsider, &json!({ "name": "Acme" }))
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);

    let unregistered = app.token_for(Uuid::now_v7(), "x", &[Role::Admin], None);
    let res = app.get("/api/v1/clients", &unregistered).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
}
