//! The OpenAPI document in `openapi/` is true: every route the server
//! exposes is in it (and nothing else), and real responses validate against
//! the schemas it gives for their status.

use std::collections::BTreeSet;

use opsledger_domain::access::Role;
use opsledger_testkit::{spawn_app, TestApp};
use opsledger_tests::eventually;
use reqwest::Method;
use serde_json::{json, Value};

fn document() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi/openapi.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).expect("openapi.json is JSON")
}

fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

#[test]
fn every_route_is_documented_and_every_documented_route_exists() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    let served: BTreeSet<(String, String)> = opsledger_api::routes().into_iter().collect();
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                documented.insert((method.clone(), path.clone()));
            }
        }
    }
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let phantom: Vec<_> = documented.difference(&served).collect();
    assert!(
        undocumented.is_empty(),
        "served but not in openapi.json: {undocumented:?}"
    );
    assert!(
        phantom.is_empty(),
        "in openapi.json but not served: {phantom:?}"
    );
}

/// Where the schema for a response lives, following a `$ref` to a shared response.
fn schema_pointer(
    doc: &Value,
    method: &str,
    path: &str,
    status: u16,
    content_type: &str,
) -> String {
    let mut pointer = format!("/paths/{}/{method}/responses/{status}", escape(path));
    let mut response = doc
        .pointer(&pointer)
        .unwrap_or_else(|| panic!("{method} {path} does not document {status}"));
    if let Some(r) = response.get("$ref").and_then(Value::as_str) {
        pointer = r.trim_start_matches('#').to_owned();
        response = doc
            .pointer(&pointer)
            .unwrap_or_else(|| panic!("dangling {r}"));
    }
    assert!(
        response["content"].get(content_type).is_some(),
        "{method} {path} {status} does not document {content_type}"
    );
    format!("{pointer}/content/{}/schema", escape(content_type))
}

struct Checker {
    doc: Value,
    checked: Vec<String>,
}

impl Checker {
    async fn check(
        &mut self,
        app: &TestApp,
        method: Method,
        template: &str,
        url: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Value {
        let mut req = app.http.request(method.clone(), app.url(url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let content_type = res.headers()["content-type"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let text = res.text().await.unwrap();
        let m = method.as_str().to_lowercase();
        let pointer = schema_pointer(&self.doc, &m, template, status, &content_type);
        if content_type.ends_with("json") {
            let instance: Value = serde_json::from_str(&text).unwrap();
            let mut root = self.doc.clone();
            // A URI fragment: braces of path templates must be percent-encoded.
            root["$ref"] = json!(format!(
                "#{}",
                pointer.replace('{', "%7B").replace('}', "%7D")
            ));
            let validator = jsonschema::options()
                .should_validate_formats(true)
                .build(&root)
                .expect("the schema compiles");
            let errors: Vec<String> = validator
                .iter_errors(&instance)
                .map(|e| format!("{e} at {}", e.instance_path))
                .collect();
            assert!(
                errors.is_empty(),
                "{m} {url} -> {status}: {errors:?}\n{instance}"
            );
            self.checked.push(format!("{m} {template} {status}"));
            instance
        } else {
            self.checked.push(format!("{m} {template} {status}"));
            Value::String(text)
        }
    }
}

#[tokio::test]
async fn responses_validate_against_the_document() {
    let app = spawn_app().await;
    let mut c = Checker {
        doc: document(),
        checked: vec![],
    };
    let admin = app.token(&[Role::Admin]);
    let operator = app.token(&[Role::Operator]);
    let integration = app.token(&[Role::Integration]);

    c.check(&app, Method::GET, "/healthz", "/healthz", None, None)
        .await;
    c.check(&app, Method::GET, "/readyz", "/readyz", None, None)
        .await;
    c.check(&app, Method::GET, "/metrics", "/metrics", None, None)
        .await;
    c.check(
        &app,
        Method::GET,
        "/openapi.json",
        "/openapi.json",
        None,
        None,
    )
    .await;

    let client = c
        .check(&app, Method::POST, "/api/v1/clients", "/api/v1/clients", Some(&admin), Some(json!({
            "name": "株式会社サンプル", "locale": "ja", "contacts": [{ "name": "山田", "email": "y@example.jp" }]
        })))
        .await;
    let client_id = client["id"].as_str().unwrap().to_owned();
    c.check(
        &app,
        Method::POST,
        "/api/v1/clients",
        "/api/v1/clients",
        Some(&admin),
        Some(json!({ "name": "株式会社サンプル" })),
    )
    .await;
    c.check(
        &app,
        Method::POST,
        "/api/v1/clients",
        "/api/v1/clients",
        Some(&admin),
        Some(json!({ "name": "" })),
    )
    .await;
    c.check(
        &app,
        Method::POST,
        "/api/v1/clients",
        "/api/v1/clients",
        Some(&admin),
        Some(json!({ "nom": "x" })),
    )
    .await;
    c.check(
        &app,
        Method::POST,
        "/api/v1/clients",
        "/api/v1/clients",
        Some(&operator),
        Some(json!({ "name": "x" })),
    )
    .await;
    c.check(
        &app,
        Method::POST,
        "/api/v1/clients",
        "/api/v1/clients",
        None,
        Some(json!({ "name": "x" })),
    )
    .await;

    let service = c
        .check(&app, Method::POST, "/api/v1/services", "/api/v1/services", Some(&admin), Some(json!({
            "client_id": client_id, "name": "受注サイト", "sla_target_pct": 99.95, "notice_period_h": 48,
            "components": [{ "name": "db", "kind": "database" }]
        })))
        .await;
    let service_id = service["id"].as_str().unwrap().to_owned();
    c.check(&app, Method::POST, "/api/v1/services", "/api/v1/services", Some(&admin), Some(json!({
        "client_id": client_id, "name": "受注サイト", "sla_target_pct": 99.95, "notice_period_h": 48
    }))).await;

    eventually("the service is projected", || async {
        let page: Value = app
            .get("/api/v1/services", &operator)
            .await
            .json()
            .await
            .unwrap();
        (page["items"].as_array().unwrap().len() == 1).then_some(())
    })
    .await;
    c.check(
        &app,
        Method::GET,
        "/api/v1/clients",
        "/api/v1/clients",
        Some(&operator),
        None,
    )
    .await;
    c.check(
        &app,
        Method::GET,
        "/api/v1/clients",
        "/api/v1/clients?limit=1",
        Some(&operator),
        None,
    )
    .await;
    c.check(
        &app,
        Method::GET,
        "/api/v1/clients",
        "/api/v1/clients?limit=0",
        Some(&operator),
        None,
    )
    .await;
    c.check(
        &app,
        Method::GET,
        "/api/v1/clients",
        "/api/v1/clients",
        Some(&integration),
        None,
    )
    .await;
    c.check(
        &app,
        Method::GET,
        "/api/v1/clients/{id}",
        &format!("/api/v1/clients/{client_id}"),
        Some(&operator),
        None,
    )
    .await;
    c.check(
        &app,
        Method::GET,
        "/api/v1/clients/{id}",
        &format!("/api/v1/clients/{service_id}"),
        Some(&operator),
        None,
    )
    .await;
    c.check(
        &app,
        Method::GET,
        "/api/v1/services",
        "/api/v1/services",
        Some(&operator),
        None,
    )
    .await;
    c.check(
        &app,
        Method::GET,
        "/api/v1/services",
        &format!("/api/v1/services?client_id={client_id}&limit=5"),
        Some(&operator),
        None,
    )
    .await;
    c.check(
        &app,
        Method::GET,
        "/api/v1/services/{id}",
        &format!("/api/v1/services/{service_id}"),
        Some(&operator),
        None,
    )
    .await;
    c.check(
        &app,
        Method::GET,
        "/api/v1/services/{id}",
        "/api/v1/services/not-a-uuid",
        Some(&operator),
        None,
    )
    .await;
    c.check(
        &app,
        Method::GET,
        "/api/v1/services/{id}",
        &format!("/api/v1/services/{service_id}"),
        Some("nonsense"),
        None,
    )
    .await;

    // Every route was exercised at least once.
    for (method, path) in opsledger_api::routes() {
        assert!(
            c.checked
                .iter()
                .any(|k| k.starts_with(&format!("{method} {path} "))),
            "{method} {path} never checked"
        );
    }
}
