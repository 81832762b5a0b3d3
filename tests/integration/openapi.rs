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

/// `openapi/openapi.json` is what the code generates: a route, body type or
/// role changed without `opsledger openapi` fails here, naming the command.
#[test]
fn the_committed_document_is_the_generated_one() {
    let generated: Value = serde_json::from_str(&opsledger_api::contract::document_text())
        .expect("the generated document is JSON");
    assert!(
        generated == document(),
        "openapi/openapi.json is stale: run `cargo run -p opsledger-server -- openapi` and commit it"
    );
}

/// Every `$ref` in the document names something the document holds.
#[test]
fn every_reference_resolves() {
    fn walk(doc: &Value, at: &Value, broken: &mut Vec<String>) {
        match at {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    let pointer = r.trim_start_matches('#');
                    if doc.pointer(pointer).is_none() {
                        broken.push(r.clone());
                    }
                }
                m.values().for_each(|v| walk(doc, v, broken));
            }
            Value::Array(a) => a.iter().for_each(|v| walk(doc, v, broken)),
            _ => {}
        }
    }
    let doc = document();
    let mut broken = Vec::new();
    walk(&doc, &doc, &mut broken);
    assert!(broken.is_empty(), "unresolved references: {broken:?}");
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

/// Where a response is documented, following a `$ref` to a shared response.
fn response_pointer(doc: &Value, method: &str, path: &str, status: u16) -> String {
    let pointer = format!("/paths/{}/{method}/responses/{status}", escape(path));
    let response = doc
        .pointer(&pointer)
        .unwrap_or_else(|| panic!("{method} {path} does not document {status}"));
    match response.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let target = r.trim_start_matches('#').to_owned();
            assert!(doc.pointer(&target).is_some(), "dangling {r}");
            target
        }
        None => pointer,
    }
}

/// Where the schema for a response lives, following a `$ref` to a shared response.
fn schema_pointer(
    doc: &Value,
    method: &str,
    path: &str,
    status: u16,
    content_type: &str,
) -> String {
    let pointer = response_pointer(doc, method, path, status);
    assert!(
        doc.pointer(&pointer).unwrap()["content"]
            .get(content_type)
            .is_some(),
        "{method} {path} {status} does not document {content_type}"
    );
    format!("{pointer}/content/{}/schema", escape(content_type))
}

/// The errors of `instance` against the schema at `pointer` in the document.
fn violations(doc: &Value, pointer: &str, instance: &Value) -> Vec<String> {
    let mut root = doc.clone();
    // A URI fragment: braces of path templates must be percent-encoded.
    root["$ref"] = json!(format!(
        "#{}",
        pointer.replace('{', "%7B").replace('}', "%7D")
    ));
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&root)
        .expect("the schema compiles");
    validator
        .iter_errors(instance)
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect()
}

struct Checker {
    doc: Value,
    checked: Vec<String>,
    /// Headers for the next request only.
    headers: Vec<(String, String)>,
    /// The status the next response must have, if set.
    expected: Option<u16>,
}

impl Checker {
    fn new() -> Checker {
        Checker {
            doc: document(),
            checked: vec![],
            headers: vec![],
            expected: None,
        }
    }

    /// Sends `name: value` with the next request.
    fn header(&mut self, name: &str, value: &str) -> &mut Checker {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The next response must have this status.
    fn expect(&mut self, status: u16) -> &mut Checker {
        self.expected = Some(status);
        self
    }

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
        for (name, value) in std::mem::take(&mut self.headers) {
            req = req.header(name, value);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        // Absent only on a response without a body (204).
        let content_type = headers
            .get("content-type")
            .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned());
        let text = res.text().await.unwrap();
        let m = method.as_str().to_lowercase();
        if let Some(expected) = self.expected.take() {
            assert_eq!(status, expected, "{m} {url}: {text}");
        }
        // Documented headers that were sent match their schemas.
        let response = response_pointer(&self.doc, &m, template, status);
        if let Some(documented) = self.doc.pointer(&response).unwrap()["headers"].as_object() {
            for (name, header) in documented {
                let Some(value) = headers.get(name.as_str()) else {
                    continue;
                };
                let at = match header.get("$ref").and_then(Value::as_str) {
                    Some(r) => r.trim_start_matches('#').to_owned(),
                    None => format!("{response}/headers/{}", escape(name)),
                };
                let value = json!(value.to_str().unwrap());
                let errors = violations(&self.doc, &format!("{at}/schema"), &value);
                assert!(
                    errors.is_empty(),
                    "{m} {url} -> {status}, header {name}: {errors:?}"
                );
            }
        }
        let Some(content_type) = content_type else {
            assert!(
                text.is_empty(),
                "{m} {url} -> {status}: a body without a type"
            );
            assert!(
                self.doc
                    .pointer(&response)
                    .unwrap()
                    .get("content")
                    .is_none(),
                "{m} {template} {status} documents a body, but none was sent"
            );
            self.checked.push(format!("{m} {template} {status}"));
            return Value::Null;
        };
        let pointer = schema_pointer(&self.doc, &m, template, status, &content_type);
        self.checked.push(format!("{m} {template} {status}"));
        if content_type.ends_with("json") {
            let instance: Value = serde_json::from_str(&text).unwrap();
            let errors = violations(&self.doc, &pointer, &instance);
            assert!(
                errors.is_empty(),
                "{m} {url} -> {status}: {errors:?}\n{instance}"
            );
            instance
        } else {
            Value::String(text)
        }
    }
}

#[tokio::test]
async fn responses_validate_against_the_document() {
    let app = crate::audit::signing_app().await;
    let mut c = Checker::new();
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

    alerts_and_incidents(&mut c, &app, &client_id, &service_id).await;
    roster_and_escalation(&mut c, &app, &client_id).await;
    proposals_and_work(&mut c, &app, &client_id, &service_id).await;
    changes_and_windows(&mut c, &app, &client_id, &service_id).await;
    operations_work(&mut c, &app, &client_id, &service_id).await;
    audit_routes(&mut c, &app).await;

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

/// The audit search, the signing key, checkpoints and proofs.
async fn audit_routes(c: &mut Checker, app: &TestApp) {
    let auditor = app.token(&[Role::Auditor]);
    let operator = app.token(&[Role::Operator]);
    let page = c
        .expect(200)
        .check(
            app,
            Method::GET,
            "/api/v1/audit",
            "/api/v1/audit?order=oldest&limit=2",
            Some(&auditor),
            None,
        )
        .await;
    let event = page["items"][0]["event_id"].as_str().unwrap().to_owned();
    c.expect(200)
        .check(
            app,
            Method::GET,
            "/api/v1/audit",
            "/api/v1/audit?type=ClientRegistered&work_class=operations",
            Some(&auditor),
            None,
        )
        .await;
    c.expect(400)
        .check(
            app,
            Method::GET,
            "/api/v1/audit",
            "/api/v1/audit?cursor=garbage",
            Some(&auditor),
            None,
        )
        .await;
    c.expect(403)
        .check(
            app,
            Method::GET,
            "/api/v1/audit",
            "/api/v1/audit",
            Some(&operator),
            None,
        )
        .await;
    c.expect(200)
        .check(
            app,
            Method::GET,
            "/api/v1/audit/key",
            "/api/v1/audit/key",
            Some(&operator),
            None,
        )
        .await;
    eventually("a checkpoint is signed", || async {
        (app.get("/api/v1/audit/checkpoint", &auditor).await.status() == 200).then_some(())
    })
    .await;
    let checkpoint = c
        .expect(200)
        .check(
            app,
            Method::GET,
            "/api/v1/audit/checkpoint",
            "/api/v1/audit/checkpoint",
            Some(&operator),
            None,
        )
        .await;
    let size = checkpoint["size"].as_u64().unwrap();
    c.expect(200)
        .check(
            app,
            Method::GET,
            "/api/v1/audit/checkpoint",
            "/api/v1/audit/checkpoint?format=note",
            Some(&auditor),
            None,
        )
        .await;
    c.expect(404)
        .check(
            app,
            Method::GET,
            "/api/v1/audit/checkpoint",
            "/api/v1/audit/checkpoint?size=999999",
            Some(&auditor),
            None,
        )
        .await;
    c.expect(400)
        .check(
            app,
            Method::GET,
            "/api/v1/audit/checkpoint",
            "/api/v1/audit/checkpoint?format=pdf",
            Some(&auditor),
            None,
        )
        .await;
    let inclusion = "/api/v1/audit/proof/inclusion";
    c.expect(200)
        .check(
            app,
            Method::GET,
            inclusion,
            &format!("{inclusion}?event={event}"),
            Some(&auditor),
            None,
        )
        .await;
    c.expect(200)
        .check(
            app,
            Method::GET,
            inclusion,
            &format!("{inclusion}?event={event}&size={size}&format=tlog-proof"),
            Some(&auditor),
            None,
        )
        .await;
    c.expect(404)
        .check(
            app,
            Method::GET,
            inclusion,
            &format!("{inclusion}?event={}", uuid::Uuid::now_v7()),
            Some(&auditor),
            None,
        )
        .await;
    c.expect(400)
        .check(
            app,
            Method::GET,
            inclusion,
            &format!("{inclusion}?event={event}&size=99999999"),
            Some(&auditor),
            None,
        )
        .await;
    c.expect(403)
        .check(
            app,
            Method::GET,
            inclusion,
            &format!("{inclusion}?event={event}"),
            Some(&operator),
            None,
        )
        .await;
    c.expect(200)
        .check(
            app,
            Method::GET,
            "/api/v1/audit/export",
            "/api/v1/audit/export",
            Some(&auditor),
            None,
        )
        .await;
    c.expect(404)
        .check(
            app,
            Method::GET,
            "/api/v1/audit/export",
            "/api/v1/audit/export?size=999999",
            Some(&auditor),
            None,
        )
        .await;
    let verified = c
        .expect(200)
        .check(
            app,
            Method::GET,
            "/api/v1/audit/verify",
            "/api/v1/audit/verify",
            Some(&auditor),
            None,
        )
        .await;
    assert_eq!(verified["ok"], true, "{verified}");
    c.expect(403)
        .check(
            app,
            Method::GET,
            "/api/v1/audit/verify",
            "/api/v1/audit/verify",
            Some(&operator),
            None,
        )
        .await;
    let feed = c
        .expect(200)
        .check(
            app,
            Method::GET,
            "/api/v1/events",
            "/api/v1/events?limit=3",
            Some(&auditor),
            None,
        )
        .await;
    let after = feed["next_cursor"].as_str().unwrap().to_owned();
    c.expect(200)
        .check(
            app,
            Method::GET,
            "/api/v1/events",
            &format!("/api/v1/events?after={after}&type=ClientRegistered"),
            Some(&auditor),
            None,
        )
        .await;
    c.expect(400)
        .check(
            app,
            Method::GET,
            "/api/v1/events",
            "/api/v1/events?after=garbage",
            Some(&auditor),
            None,
        )
        .await;
    // (The stream's 200 never ends; its frames are tested in `feed`.)
    c.expect(400)
        .check(
            app,
            Method::GET,
            "/api/v1/events/stream",
            "/api/v1/events/stream?after=garbage",
            Some(&auditor),
            None,
        )
        .await;
    c.expect(403)
        .check(
            app,
            Method::GET,
            "/api/v1/events/stream",
            "/api/v1/events/stream",
            Some(&operator),
            None,
        )
        .await;
    // Integrations read the feed once an admin grants their subject.
    let admin = app.token(&[Role::Admin]);
    let siem = app.token_for(app.tenant, "siem-1", &[Role::Integration], None);
    c.expect(403)
        .check(
            app,
            Method::GET,
            "/api/v1/events",
            "/api/v1/events",
            Some(&siem),
            None,
        )
        .await;
    let readers = "/api/v1/events/readers/{subject}";
    let granted = c
        .expect(200)
        .check(
            app,
            Method::PUT,
            readers,
            "/api/v1/events/readers/siem-1",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(
        granted["readers"],
        serde_json::json!(["siem-1"]),
        "{granted}"
    );
    c.expect(403)
        .check(
            app,
            Method::PUT,
            readers,
            "/api/v1/events/readers/siem-2",
            Some(&auditor),
            None,
        )
        .await;
    c.expect(422)
        .check(
            app,
            Method::PUT,
            readers,
            "/api/v1/events/readers/a%0Ab",
            Some(&admin),
            None,
        )
        .await;
    c.header("If-Match", "\"7\"")
        .expect(412)
        .check(
            app,
            Method::PUT,
            readers,
            "/api/v1/events/readers/siem-2",
            Some(&admin),
            None,
        )
        .await;
    c.expect(200)
        .check(
            app,
            Method::GET,
            "/api/v1/events",
            "/api/v1/events?limit=2",
            Some(&siem),
            None,
        )
        .await;
    c.expect(200)
        .check(
            app,
            Method::GET,
            "/api/v1/events/readers",
            "/api/v1/events/readers",
            Some(&auditor),
            None,
        )
        .await;
    c.expect(403)
        .check(
            app,
            Method::GET,
            "/api/v1/events/readers",
            "/api/v1/events/readers",
            Some(&operator),
            None,
        )
        .await;
    let revoked = c
        .expect(200)
        .check(
            app,
            Method::DELETE,
            readers,
            "/api/v1/events/readers/siem-1",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(revoked["readers"], serde_json::json!([]), "{revoked}");
    c.expect(403)
        .check(
            app,
            Method::GET,
            "/api/v1/events",
            "/api/v1/events",
            Some(&siem),
            None,
        )
        .await;
    let consistency = "/api/v1/audit/proof/consistency";
    c.expect(200)
        .check(
            app,
            Method::GET,
            consistency,
            &format!("{consistency}?from=1&to={size}"),
            Some(&operator),
            None,
        )
        .await;
    c.expect(400)
        .check(
            app,
            Method::GET,
            consistency,
            &format!("{consistency}?from=0"),
            Some(&operator),
            None,
        )
        .await;
}

/// The alert, integration and incident routes, with the service registered by
/// the caller (named `受注サイト`) already projected.
async fn alerts_and_incidents(c: &mut Checker, app: &TestApp, client_id: &str, service_id: &str) {
    let operator = app.token(&[Role::Operator]);
    let integration = app.token(&[Role::Integration]);
    let auditor = app.token(&[Role::Auditor]);
    let client = app.token_for(
        app.tenant,
        "client-user",
        &[Role::Client],
        Some(client_id.parse().unwrap()),
    );
    let service = "受注サイト";

    // ---------------------------------------------------------- plain alerts
    let alert = json!({
        "source": "zabbix", "dedup_key": "zbx-1", "summary": "受注サイト 5xx above 5%",
        "severity": "critical", "service": service, "labels": { "host": "web-1" }
    });
    let opened = c
        .expect(202)
        .check(
            app,
            Method::POST,
            "/api/v1/alerts",
            "/api/v1/alerts",
            Some(&integration),
            Some(alert.clone()),
        )
        .await;
    assert_eq!(opened["outcome"], "opened_incident");
    let incident_id = opened["incident_id"].as_str().unwrap().to_owned();
    let alert_id = opened["alert_id"].as_str().unwrap().to_owned();
    let repeat = c
        .expect(202)
        .check(
            app,
            Method::POST,
            "/api/v1/alerts",
            "/api/v1/alerts",
            Some(&integration),
            Some(alert),
        )
        .await;
    assert_eq!(repeat["outcome"], "deduplicated");
    let held = c
        .expect(202)
        .check(
            app,
            Method::POST,
            "/api/v1/alerts",
            "/api/v1/alerts",
            Some(&operator),
            Some(json!({
                "source": "zabbix", "dedup_key": "zbx-2", "group_key": null, "service": "nowhere",
                "summary": "disk", "severity": "P3", "category": "host", "status": "trigger",
                "starts_at": "2026-11-25T01:00:00Z", "ends_at": null
            })),
        )
        .await;
    assert_eq!(held["outcome"], "held_for_unknown_service");
    let unknown_severity = c
        .expect(422)
        .check(app, Method::POST, "/api/v1/alerts", "/api/v1/alerts", Some(&integration), Some(json!({
            "source": "zabbix", "dedup_key": "zbx-3", "summary": "x", "severity": "apocalyptic", "service": service
        })))
        .await;
    assert!(unknown_severity["detail"]
        .as_str()
        .unwrap()
        .contains("apocalyptic"));
    c.expect(400)
        .check(app, Method::POST, "/api/v1/alerts", "/api/v1/alerts", Some(&integration), Some(json!({
            "source": "zabbix", "dedup_key": "zbx-3", "summary": "x", "severity": "info", "sevirity": "info"
        })))
        .await;
    c.expect(403)
        .check(
            app,
            Method::POST,
            "/api/v1/alerts",
            "/api/v1/alerts",
            Some(&client),
            Some(json!({
                "source": "zabbix", "dedup_key": "zbx-3", "summary": "x", "severity": "info"
            })),
        )
        .await;

    // ---------------------------------------------------------- Alertmanager and Grafana
    let notification = |fingerprint: &str, instance: &str| {
        json!({
            "version": "4", "groupKey": "{}:{alertname=\"HighLatency\"}", "truncatedAlerts": 0,
            "status": "firing", "receiver": "opsledger", "groupLabels": { "alertname": "HighLatency" },
            "commonLabels": { "alertname": "HighLatency", "service": service, "severity": "critical" },
            "commonAnnotations": {}, "externalURL": "http://alertmanager:9093",
            "alerts": [{
                "status": "firing",
                "labels": { "alertname": "HighLatency", "service": service, "severity": "critical", "instance": instance },
                "annotations": { "summary": "p99 latency above 2s" },
                "startsAt": "2026-11-25T01:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus:9090/graph", "fingerprint": fingerprint
            }]
        })
    };
    let am = c
        .expect(200)
        .check(
            app,
            Method::POST,
            "/api/v1/integrations/alertmanager",
            "/api/v1/integrations/alertmanager",
            Some(&integration),
            Some(notification("c2f6d1a7e3b41234", "web-1")),
        )
        .await;
    assert_eq!(am["results"][0]["outcome"], "opened_incident");
    let am_alert = am["results"][0]["alert_id"].as_str().unwrap().to_owned();
    eventually("the Alertmanager alert is projected", || async {
        let page: Value = app
            .get("/api/v1/alerts?source=alertmanager&firing=true", &operator)
            .await
            .json()
            .await
            .unwrap();
        (page["items"].as_array().unwrap().len() == 1).then_some(())
    })
    .await;
    // The next notification of the group no longer carries web-1: it was silenced.
    let am = c
        .expect(200)
        .check(
            app,
            Method::POST,
            "/api/v1/integrations/alertmanager",
            "/api/v1/integrations/alertmanager",
            Some(&integration),
            Some(notification("c2f6d1a7e3b45678", "web-2")),
        )
        .await;
    assert_eq!(am["results"][0]["outcome"], "attached_to_incident");
    assert_eq!(am["expired"], json!([am_alert]));
    c.expect(422)
        .check(app, Method::POST, "/api/v1/integrations/alertmanager", "/api/v1/integrations/alertmanager",
            Some(&integration), Some(json!({
                "groupKey": "g", "alerts": [{ "status": "pending", "startsAt": "2026-11-25T01:00:00Z" }]
            })))
        .await;
    c.expect(400)
        .check(
            app,
            Method::POST,
            "/api/v1/integrations/alertmanager",
            "/api/v1/integrations/alertmanager",
            Some(&integration),
            Some(json!({ "alerts": [] })),
        )
        .await;
    let grafana = c
        .expect(200)
        .check(app, Method::POST, "/api/v1/integrations/grafana", "/api/v1/integrations/grafana",
            Some(&integration), Some(json!({
                "receiver": "opsledger", "status": "firing", "orgId": 1, "groupKey": "{}/{}:{alertname=\"CPU\"}",
                "groupLabels": { "alertname": "CPU" }, "commonLabels": { "alertname": "CPU" },
                "commonAnnotations": {}, "externalURL": "http://grafana:3000/", "version": "1",
                "truncatedAlerts": 0, "title": "[FIRING:1] CPU", "state": "alerting", "message": "CPU high",
                "alerts": [{
                    "status": "firing",
                    "labels": { "alertname": "CPU", "service": service, "severity": "warning", "category": "hardware" },
                    "annotations": { "description": "CPU above 90%" },
                    "startsAt": "2026-11-25T02:00:00+09:00", "endsAt": "0001-01-01T00:00:00Z",
                    "generatorURL": "http://grafana:3000/alerting/grafana/x/view", "fingerprint": "9a1b",
                    "silenceURL": "http://grafana:3000/alerting/silence/new", "dashboardURL": "", "panelURL": "",
                    "values": { "B": 93.5 }, "valueString": "[ var='B' value=93.5 ]"
                }, {
                    "status": "resolved", "labels": { "alertname": "CPU", "service": service },
                    "startsAt": "2026-11-25T00:00:00Z", "endsAt": "2026-11-25T00:30:00Z"
                }]
            })))
        .await;
    assert_eq!(grafana["results"][1]["outcome"], "nothing_firing");

    // ---------------------------------------------------------- PagerDuty
    let pd = c
        .expect(202)
        .check(app, Method::POST, "/api/v1/integrations/pagerduty", "/api/v1/integrations/pagerduty",
            Some(&integration), Some(json!({
                "routing_key": service, "event_action": "trigger", "dedup_key": "pd-1", "client": "monitor",
                "payload": { "summary": "Disk full on db-1", "source": "db-1", "severity": "critical",
                             "component": "postgres", "class": "disk", "custom_details": { "free": "0%" } }
            })))
        .await;
    assert_eq!(pd["dedup_key"], "pd-1");
    let pd_trigger_without_key = c
        .expect(202)
        .check(
            app,
            Method::POST,
            "/api/v1/integrations/pagerduty",
            "/api/v1/integrations/pagerduty",
            Some(&integration),
            Some(json!({
                "routing_key": service, "event_action": "trigger",
                "payload": { "summary": "Swap in use", "source": "db-2", "severity": "warning" }
            })),
        )
        .await;
    assert!(!pd_trigger_without_key["dedup_key"]
        .as_str()
        .unwrap()
        .is_empty());
    for action in ["acknowledge", "resolve"] {
        c.expect(202)
            .check(
                app,
                Method::POST,
                "/api/v1/integrations/pagerduty",
                "/api/v1/integrations/pagerduty",
                Some(&integration),
                Some(
                    json!({ "routing_key": service, "event_action": action, "dedup_key": "pd-1" }),
                ),
            )
            .await;
    }
    c.expect(400)
        .check(
            app,
            Method::POST,
            "/api/v1/integrations/pagerduty",
            "/api/v1/integrations/pagerduty",
            Some(&integration),
            Some(json!({ "routing_key": service, "event_action": "snooze", "dedup_key": "pd-1" })),
        )
        .await;

    // ---------------------------------------------------------- incidents by hand
    let by_hand = c
        .expect(201)
        .check(
            app,
            Method::POST,
            "/api/v1/incidents",
            "/api/v1/incidents",
            Some(&operator),
            Some(json!({
                "title": "受注サイトの決済が遅い", "service_id": service_id, "severity": "error",
                "category": "application", "impact_start": "2026-11-25T00:00:00Z"
            })),
        )
        .await;
    assert_eq!(
        (by_hand["status"].as_str(), by_hand["version"].as_i64()),
        (Some("triggered"), Some(1))
    );
    c.expect(201)
        .check(
            app,
            Method::POST,
            "/api/v1/incidents",
            "/api/v1/incidents",
            Some(&operator),
            Some(json!({
                "title": "Office network down", "severity": "warning"
            })),
        )
        .await;
    c.expect(422)
        .check(
            app,
            Method::POST,
            "/api/v1/incidents",
            "/api/v1/incidents",
            Some(&operator),
            Some(json!({
                "title": "x", "service_id": client_id, "severity": "warning"
            })),
        )
        .await;
    c.expect(400)
        .check(
            app,
            Method::POST,
            "/api/v1/incidents",
            "/api/v1/incidents",
            Some(&operator),
            Some(json!({
                "title": "x", "severity": "apocalyptic"
            })),
        )
        .await;
    c.expect(403)
        .check(
            app,
            Method::POST,
            "/api/v1/incidents",
            "/api/v1/incidents",
            Some(&auditor),
            Some(json!({
                "title": "x", "severity": "info"
            })),
        )
        .await;

    // ---------------------------------------------------------- reads of one incident
    let one = format!("/api/v1/incidents/{incident_id}");
    let incident = c
        .expect(200)
        .check(
            app,
            Method::GET,
            "/api/v1/incidents/{id}",
            &one,
            Some(&client),
            None,
        )
        .await;
    assert_eq!(incident["alert_count"], 1);
    c.expect(200)
        .check(
            app,
            Method::GET,
            "/api/v1/incidents/{id}",
            &format!("{one}?as_of=2100-01-01T00:00:00Z"),
            Some(&operator),
            None,
        )
        .await;
    c.expect(404)
        .check(
            app,
            Method::GET,
            "/api/v1/incidents/{id}",
            "/api/v1/incidents/not-a-uuid",
            Some(&operator),
            None,
        )
        .await;
    c.expect(400)
        .check(
            app,
            Method::GET,
            "/api/v1/incidents/{id}",
            &format!("{one}?as_of=yesterday"),
            Some(&operator),
            None,
        )
        .await;
    let version = incident["version"].as_i64().unwrap();

    // ---------------------------------------------------------- the lifecycle
    let command = |verb: &str| {
        (
            format!("/api/v1/incidents/{{id}}/{verb}"),
            format!("{one}/{verb}"),
        )
    };
    let (t, u) = command("acknowledge");
    let acked = c
        .expect(200)
        .header("if-match", &format!("\"{version}\""))
        .check(app, Method::POST, &t, &u, Some(&operator), None)
        .await;
    assert_eq!(acked["status"], "acknowledged");
    let again = c
        .expect(409)
        .check(app, Method::POST, &t, &u, Some(&operator), None)
        .await;
    assert_eq!(again["current_state"], "acknowledged");
    let stale = c
        .expect(412)
        .header("if-match", &format!("\"{version}\""))
        .check(app, Method::POST, &t, &u, Some(&operator), None)
        .await;
    assert_eq!(stale["current_version"], version + 1);
    c.expect(400)
        .header("if-match", "\"three\"")
        .check(app, Method::POST, &t, &u, Some(&operator), None)
        .await;
    c.expect(403)
        .check(app, Method::POST, &t, &u, Some(&client), None)
        .await;
    c.expect(404)
        .check(
            app,
            Method::POST,
            &t,
            &format!("/api/v1/incidents/{service_id}/acknowledge"),
            Some(&operator),
            None,
        )
        .await;

    let steps: Vec<(&str, Option<Value>, u16)> = vec![
        (
            "notes",
            Some(json!({ "text": "LB のログを確認中", "visibility": "internal" })),
            200,
        ),
        (
            "notes",
            Some(json!({ "text": "調査中です", "visibility": "client" })),
            200,
        ),
        (
            "notes",
            Some(json!({ "text": "   ", "visibility": "client" })),
            422,
        ),
        (
            "notes",
            Some(json!({ "text": "x", "visibility": "public" })),
            400,
        ),
        (
            "actions",
            Some(json!({ "kind": "runbook_step", "description": "Drained web-1" })),
            200,
        ),
        ("severity", Some(json!({ "severity": "error" })), 200),
        ("severity", Some(json!({ "severity": "error" })), 422),
        (
            "impact-level",
            Some(json!({ "level": "partial", "reason": "only checkout is down" })),
            200,
        ),
        ("impact-level", Some(json!({ "level": "partial" })), 422),
        ("impact-level", Some(json!({ "level": "down" })), 400),
        (
            "impact-level",
            Some(json!({ "level": "partial", "at": "2999-01-01T00:00:00Z" })),
            422,
        ),
        ("mitigate", None, 200),
        ("mitigate", Some(json!({ "impact_end": null })), 409),
        (
            "impact",
            Some(
                json!({ "impact_start": "2026-11-25T00:00:00Z", "impact_end": "2026-11-25T00:40:00Z", "reason": "per the LB logs" }),
            ),
            200,
        ),
        ("triage", Some(json!({ "outcome": "actionable" })), 200),
        ("close", None, 409),
        ("resolve", None, 200),
        ("reopen", Some(json!({ "reason": "errors are back" })), 200),
        (
            "mitigate",
            Some(json!({ "impact_end": "2026-11-25T01:10:00Z" })),
            200,
        ),
        ("resolve", None, 200),
        ("close", None, 200),
        (
            "notes",
            Some(json!({ "text": "too late", "visibility": "internal" })),
            409,
        ),
        ("reopen", Some(json!({ "reason": "again" })), 409),
    ];
    // Maintenance work on the incident: maintainers only.
    let maintainer = app.token(&[Role::Maintainer]);
    let finding = json!({
        "statement": "The connection pool was exhausted by a leaking batch job",
        "evidence": {
            "log_excerpts": ["FATAL: sorry, too many clients already"],
            "time_range": { "from": "2026-11-25T00:00:00Z", "to": "2026-11-25T00:40:00Z" },
            "components": ["database"]
        },
        "minutes_spent": 45
    });
    let (t, u) = command("findings");
    let found = c
        .expect(200)
        .check(
            app,
            Method::POST,
            &t,
            &u,
            Some(&maintainer),
            Some(finding.clone()),
        )
        .await;
    assert_eq!(found["findings"], 1);
    c.expect(403)
        .check(app, Method::POST, &t, &u, Some(&operator), Some(finding))
        .await;
    c.expect(422)
        .check(
            app,
            Method::POST,
            &t,
            &u,
            Some(&maintainer),
            Some(json!({ "statement": " " })),
        )
        .await;
    c.expect(400)
        .check(
            app,
            Method::POST,
            &t,
            &u,
            Some(&maintainer),
            Some(json!({ "statement": "x", "evidence": { "logs": [] } })),
        )
        .await;
    let (t, u) = command("actions");
    let fixed = c
        .expect(200)
        .check(app, Method::POST, &t, &u, Some(&maintainer), Some(json!({ "kind": "fix", "description": "Capped the batch job's pool", "minutes_spent": 30 })))
        .await;
    assert_eq!(fixed["fixes"][0]["kind"], "action");
    c.expect(403)
        .check(
            app,
            Method::POST,
            &t,
            &u,
            Some(&operator),
            Some(json!({ "kind": "recovery", "description": "Failed over" })),
        )
        .await;
    c.expect(422)
        .check(
            app,
            Method::POST,
            &t,
            &u,
            Some(&maintainer),
            Some(
                json!({ "kind": "recovery", "description": "Failed over", "minutes_spent": 20000 }),
            ),
        )
        .await;

    for (verb, body, status) in steps {
        let (t, u) = command(verb);
        let res = c
            .expect(status)
            .check(app, Method::POST, &t, &u, Some(&operator), body)
            .await;
        if status == 409 {
            assert!(res["current_state"].is_string(), "{verb}: {res}");
        }
    }

    // ---------------------------------------------------------- timeline
    let (t, u) = command("timeline");
    let staff = c
        .expect(200)
        .check(app, Method::GET, &t, &u, Some(&operator), None)
        .await;
    let theirs = c
        .expect(200)
        .check(app, Method::GET, &t, &u, Some(&client), None)
        .await;
    let types = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["type"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(types(&staff).contains(&"AlertReceived".to_owned()));
    assert_eq!(
        types(&staff).iter().filter(|t| *t == "NoteAdded").count(),
        types(&theirs).iter().filter(|t| *t == "NoteAdded").count() + 1
    );
    c.expect(404)
        .check(
            app,
            Method::GET,
            &t,
            &format!("/api/v1/incidents/{service_id}/timeline"),
            Some(&operator),
            None,
        )
        .await;

    // ---------------------------------------------------------- lists
    eventually(
        "every incident is projected, the first one closed",
        || async {
            let page: Value = app
                .get("/api/v1/incidents?status=closed", &operator)
                .await
                .json()
                .await
                .unwrap();
            (page["items"].as_array().unwrap().len() == 1).then_some(())
        },
    )
    .await;
    let all = c
        .expect(200)
        .check(
            app,
            Method::GET,
            "/api/v1/incidents",
            "/api/v1/incidents",
            Some(&operator),
            None,
        )
        .await;
    assert!(all["items"].as_array().unwrap().len() >= 4, "{all}");
    let first = c
        .expect(200)
        .check(
            app,
            Method::GET,
            "/api/v1/incidents",
            "/api/v1/incidents?limit=1",
            Some(&auditor),
            None,
        )
        .await;
    let cursor = first["next_cursor"].as_str().unwrap();
    c.expect(200)
        .check(app, Method::GET, "/api/v1/incidents",
            &format!("/api/v1/incidents?before={cursor}&status=triggered&severity=critical&category=application&service_id={service_id}&opened_since=2000-01-01T00:00:00Z"),
            Some(&operator), None)
        .await;
    c.expect(200)
        .check(
            app,
            Method::GET,
            "/api/v1/incidents",
            "/api/v1/incidents",
            Some(&client),
            None,
        )
        .await;
    c.expect(400)
        .check(
            app,
            Method::GET,
            "/api/v1/incidents",
            "/api/v1/incidents?status=open",
            Some(&operator),
            None,
        )
        .await;
    c.expect(403)
        .check(
            app,
            Method::GET,
            "/api/v1/incidents",
            "/api/v1/incidents",
            Some(&integration),
            None,
        )
        .await;

    eventually("the alerts are projected", || async {
        let page: Value = app
            .get("/api/v1/alerts", &operator)
            .await
            .json()
            .await
            .unwrap();
        (page["items"].as_array().unwrap().len() >= 7).then_some(())
    })
    .await;
    c.expect(200)
        .check(
            app,
            Method::GET,
            "/api/v1/alerts",
            "/api/v1/alerts",
            Some(&operator),
            None,
        )
        .await;
    c.expect(200)
        .check(
            app,
            Method::GET,
            "/api/v1/alerts",
            "/api/v1/alerts?limit=2",
            Some(&client),
            None,
        )
        .await;
    c.expect(200)
        .check(app, Method::GET, "/api/v1/alerts", &format!("/api/v1/alerts?firing=false&category=hardware&service_id={service_id}&source=grafana"), Some(&operator), None)
        .await;
    c.expect(400)
        .check(
            app,
            Method::GET,
            "/api/v1/alerts",
            "/api/v1/alerts?firing=maybe",
            Some(&operator),
            None,
        )
        .await;
    let one_alert = c
        .expect(200)
        .check(
            app,
            Method::GET,
            "/api/v1/alerts/{id}",
            &format!("/api/v1/alerts/{am_alert}"),
            Some(&operator),
            None,
        )
        .await;
    assert_eq!(
        (
            one_alert["firing"].as_bool(),
            one_alert["resolved_by"].as_str()
        ),
        (Some(false), Some("expired"))
    );
    c.expect(404)
        .check(
            app,
            Method::GET,
            "/api/v1/alerts/{id}",
            &format!("/api/v1/alerts/{service_id}"),
            Some(&operator),
            None,
        )
        .await;
    c.expect(401)
        .check(
            app,
            Method::GET,
            "/api/v1/alerts/{id}",
            &format!("/api/v1/alerts/{alert_id}"),
            None,
            None,
        )
        .await;
}

/// Responders, policies, schedules, subscriptions, escalation and hand-off,
/// the queues and the notification ledger. They work on a second service of
/// the caller's client (`決済API`), registered here, so that its policy pages
/// nobody about the incidents `alerts_and_incidents` opened.
async fn roster_and_escalation(c: &mut Checker, app: &TestApp, client_id: &str) {
    let admin = app.token(&[Role::Admin]);
    let operator = app.token(&[Role::Operator]);
    let auditor = app.token(&[Role::Auditor]);
    let integration = app.token(&[Role::Integration]);
    let client = app.token_for(
        app.tenant,
        "client-user",
        &[Role::Client],
        Some(client_id.parse().unwrap()),
    );
    let service = c
        .expect(201)
        .check(app, Method::POST, "/api/v1/services", "/api/v1/services", Some(&admin), Some(json!({
            "client_id": client_id, "name": "決済API", "sla_target_pct": 99.9, "notice_period_h": 24
        })))
        .await;
    let service_id = service["id"].as_str().unwrap().to_owned();
    // Ids of nothing of the kind asked for.
    let unknown = client_id;

    // ---------------------------------------------------------- responders
    let users_path = "/api/v1/users";
    let mut users = Vec::new();
    for (name, email, locale) in [
        ("山田 太郎", "yamada@example.jp", json!("ja")),
        ("Alice Smith", "alice@example.com", Value::Null),
    ] {
        let user = c
            .expect(201)
            .header("idempotency-key", email)
            .check(
                app,
                Method::POST,
                users_path,
                users_path,
                Some(&admin),
                Some(json!({ "name": name, "email": email, "locale": locale })),
            )
            .await;
        users.push(user["id"].as_str().unwrap().to_owned());
    }
    let replayed = c
        .expect(201)
        .header("idempotency-key", "alice@example.com")
        .check(
            app,
            Method::POST,
            users_path,
            users_path,
            Some(&admin),
            Some(json!({ "name": "Alice Smith", "email": "alice@example.com", "locale": null })),
        )
        .await;
    assert_eq!(replayed["id"].as_str(), Some(users[1].as_str()));
    for (token, body, status) in [
        (
            &admin,
            json!({ "name": "x", "email": "not-an-address" }),
            422,
        ),
        (
            &admin,
            json!({ "name": "x", "email": "x@example.jp", "phone": "03" }),
            400,
        ),
        (
            &operator,
            json!({ "name": "x", "email": "x@example.jp" }),
            403,
        ),
    ] {
        c.expect(status)
            .check(
                app,
                Method::POST,
                users_path,
                users_path,
                Some(token),
                Some(body),
            )
            .await;
    }
    eventually("the responders are projected", || async {
        let list: Value = app.get(users_path, &operator).await.json().await.unwrap();
        (list["items"].as_array().unwrap().len() == 2).then_some(())
    })
    .await;
    c.expect(200)
        .check(
            app,
            Method::GET,
            users_path,
            users_path,
            Some(&operator),
            None,
        )
        .await;
    // A page with more to follow: its cursor is in the document too.
    let page = c
        .expect(200)
        .check(
            app,
            Method::GET,
            users_path,
            &format!("{users_path}?limit=1"),
            Some(&operator),
            None,
        )
        .await;
    assert!(page["next_cursor"].is_string(), "{page}");
    c.expect(400)
        .check(
            app,
            Method::GET,
            users_path,
            &format!("{users_path}?limit=0"),
            Some(&operator),
            None,
        )
        .await;
    c.expect(403)
        .check(
            app,
            Method::GET,
            users_path,
            users_path,
            Some(&client),
            None,
        )
        .await;
    let t = "/api/v1/users/{id}";
    let one = format!("{users_path}/{}", users[0]);
    let read = c
        .expect(200)
        .check(app, Method::GET, t, &one, Some(&auditor), None)
        .await;
    assert_eq!(read["id"].as_str(), Some(users[0].as_str()));
    for (url, token, status) in [
        (format!("{one}?as_of=2020-01-01T00:00:00Z"), &operator, 404),
        (format!("{users_path}/{unknown}"), &operator, 404),
        (format!("{users_path}/not-a-uuid"), &operator, 404),
        (format!("{one}?as_of=yesterday"), &operator, 400),
        (one.clone(), &client, 403),
    ] {
        c.expect(status)
            .check(app, Method::GET, t, &url, Some(token), None)
            .await;
    }

    // ---------------------------------------------------------- schedules
    let schedules = "/api/v1/schedules";
    let schedule = c
        .expect(201)
        .check(app, Method::POST, schedules, schedules, Some(&admin), Some(json!({
            "name": "一次対応 24/7", "time_zone": "Asia/Tokyo",
            "rotations": [{ "users": users, "shift_hours": 8, "start_date": "2020-01-01", "handoff_time": "09:00" }]
        })))
        .await;
    let schedule_id = schedule["id"].as_str().unwrap().to_owned();
    for (token, body, status) in [
        (
            &admin,
            json!({ "name": "x", "time_zone": "Mars/Olympus", "rotations": [{
            "users": users, "shift_hours": 8, "start_date": "2020-01-01", "handoff_time": "09:00"
        }] }),
            422,
        ),
        (
            &admin,
            json!({ "name": "x", "time_zone": "UTC", "rotations": [] }),
            422,
        ),
        (
            &admin,
            json!({ "name": "x", "time_zone": "UTC", "rotations": [], "layers": [] }),
            400,
        ),
        (
            &operator,
            json!({ "name": "x", "time_zone": "UTC", "rotations": [] }),
            403,
        ),
    ] {
        c.expect(status)
            .check(
                app,
                Method::POST,
                schedules,
                schedules,
                Some(token),
                Some(body),
            )
            .await;
    }
    eventually("the schedule is projected", || async {
        let list: Value = app.get(schedules, &operator).await.json().await.unwrap();
        (list["items"].as_array().unwrap().len() == 1).then_some(())
    })
    .await;
    let listed = c
        .expect(200)
        .check(app, Method::GET, schedules, schedules, Some(&auditor), None)
        .await;
    assert_eq!(listed["items"][0], schedule);
    c.expect(403)
        .check(app, Method::GET, schedules, schedules, Some(&client), None)
        .await;
    let one = format!("{schedules}/{schedule_id}");
    let t = "/api/v1/schedules/{id}";
    c.expect(200)
        .check(app, Method::GET, t, &one, Some(&auditor), None)
        .await;
    c.expect(404)
        .check(
            app,
            Method::GET,
            t,
            &format!("{schedules}/{unknown}"),
            Some(&operator),
            None,
        )
        .await;
    c.expect(403)
        .check(app, Method::GET, t, &one, Some(&client), None)
        .await;

    let t = "/api/v1/schedules/{id}/overrides";
    let u = format!("{one}/overrides");
    let swap = json!({ "user_id": users[1], "start": "2026-11-25T00:00:00Z", "end": "2026-11-25T12:00:00Z" });
    c.expect(201)
        .header("idempotency-key", "swap-1")
        .check(
            app,
            Method::POST,
            t,
            &u,
            Some(&operator),
            Some(swap.clone()),
        )
        .await;
    c.expect(201)
        .header("idempotency-key", "swap-1")
        .check(
            app,
            Method::POST,
            t,
            &u,
            Some(&operator),
            Some(swap.clone()),
        )
        .await;
    c.expect(422)
        .check(
            app,
            Method::POST,
            t,
            &u,
            Some(&operator),
            Some(json!({
                "user_id": users[1], "start": "2026-11-25T12:00:00Z", "end": "2026-11-25T00:00:00Z"
            })),
        )
        .await;
    c.expect(403)
        .check(app, Method::POST, t, &u, Some(&auditor), Some(swap.clone()))
        .await;
    c.expect(404)
        .check(
            app,
            Method::POST,
            t,
            &format!("{schedules}/{unknown}/overrides"),
            Some(&operator),
            Some(swap),
        )
        .await;

    let t = "/api/v1/schedules/{id}/oncall";
    let swapped = c
        .expect(200)
        .check(
            app,
            Method::GET,
            t,
            &format!("{one}/oncall?at=2026-11-25T06:00:00Z"),
            Some(&operator),
            None,
        )
        .await;
    assert_eq!(
        swapped["on_call"][0]["user_id"].as_str(),
        Some(users[1].as_str())
    );
    let rotating = c
        .expect(200)
        .check(
            app,
            Method::GET,
            t,
            &format!("{one}/oncall?at=2026-11-26T06:00:00Z"),
            Some(&operator),
            None,
        )
        .await;
    assert_eq!(rotating["on_call"][0]["rotation"], 0);
    c.expect(200)
        .check(
            app,
            Method::GET,
            t,
            &format!("{one}/oncall"),
            Some(&auditor),
            None,
        )
        .await;
    for (query, status) in [("?at=yesterday", 400), ("?when=now", 400)] {
        c.expect(status)
            .check(
                app,
                Method::GET,
                t,
                &format!("{one}/oncall{query}"),
                Some(&operator),
                None,
            )
            .await;
    }
    c.expect(404)
        .check(
            app,
            Method::GET,
            t,
            &format!("{schedules}/{unknown}/oncall"),
            Some(&operator),
            None,
        )
        .await;

    // ---------------------------------------------------------- escalation policies
    let policies = "/api/v1/escalation-policies";
    let policy = c
        .expect(201)
        .check(app, Method::POST, policies, policies, Some(&admin), Some(json!({
            "name": "決済API 夜間", "service_ids": [service_id],
            "levels": [
                { "targets": [{ "type": "user", "id": users[0] }, { "type": "schedule", "id": schedule_id }],
                  "timeout_minutes": 60 },
                { "targets": [{ "type": "user", "id": users[1] }], "timeout_minutes": 30, "repeat": 1 }
            ]
        })))
        .await;
    for (token, body, status) in [
        (&admin, json!({ "name": "x", "levels": [] }), 422),
        (
            &admin,
            json!({ "name": "x", "levels": [
            { "targets": [{ "type": "user", "id": unknown }], "timeout_minutes": 5 }
        ] }),
            422,
        ),
        (
            &admin,
            json!({ "name": "x", "levels": [
            { "targets": [{ "type": "team", "id": users[0] }], "timeout_minutes": 5 }
        ] }),
            400,
        ),
        (&operator, json!({ "name": "x", "levels": [] }), 403),
    ] {
        c.expect(status)
            .check(
                app,
                Method::POST,
                policies,
                policies,
                Some(token),
                Some(body),
            )
            .await;
    }
    eventually("the policy is projected", || async {
        let list: Value = app.get(policies, &operator).await.json().await.unwrap();
        (list["items"].as_array().unwrap().len() == 1).then_some(())
    })
    .await;
    c.expect(200)
        .check(app, Method::GET, policies, policies, Some(&auditor), None)
        .await;
    c.expect(403)
        .check(
            app,
            Method::GET,
            policies,
            policies,
            Some(&integration),
            None,
        )
        .await;
    let t = "/api/v1/escalation-policies/{id}";
    let one = format!("{policies}/{}", policy["id"].as_str().unwrap());
    let read = c
        .expect(200)
        .check(app, Method::GET, t, &one, Some(&operator), None)
        .await;
    assert_eq!(read, policy);
    for (url, token, status) in [
        (format!("{policies}/{unknown}"), &operator, 404),
        (format!("{one}?version=1"), &operator, 400),
        (one.clone(), &client, 403),
    ] {
        c.expect(status)
            .check(app, Method::GET, t, &url, Some(token), None)
            .await;
    }

    // ---------------------------------------------------------- subscriptions
    let subscriptions = "/api/v1/subscriptions";
    let subscription = |kinds: Value| {
        json!({
            "service_id": service_id, "name": "経理部 佐藤", "email": "sato@example.jp", "locale": "ja",
            "kinds": kinds, "min_severity": "warning"
        })
    };
    c.expect(201)
        .check(
            app,
            Method::POST,
            subscriptions,
            subscriptions,
            Some(&admin),
            Some(subscription(json!([
                "incident_opened",
                "incident_resolved"
            ]))),
        )
        .await;
    let theirs = c
        .expect(201)
        .check(
            app,
            Method::POST,
            subscriptions,
            subscriptions,
            Some(&client),
            Some(subscription(json!(["incident_mitigated"]))),
        )
        .await;
    for (token, kinds, status) in [
        (&admin, json!([]), 422),
        (&admin, json!(["incident_escalated"]), 422),
        (&admin, json!(["incident_forgotten"]), 400),
        (&operator, json!(["incident_opened"]), 403),
    ] {
        c.expect(status)
            .check(
                app,
                Method::POST,
                subscriptions,
                subscriptions,
                Some(token),
                Some(subscription(kinds)),
            )
            .await;
    }
    eventually("the subscriptions are projected", || async {
        let list: Value = app
            .get(subscriptions, &operator)
            .await
            .json()
            .await
            .unwrap();
        (list["items"].as_array().unwrap().len() == 2).then_some(())
    })
    .await;
    for (url, token, status) in [
        (subscriptions.to_owned(), &operator, 200),
        (
            format!("{subscriptions}?service_id={service_id}&client_id={client_id}"),
            &auditor,
            200,
        ),
        (subscriptions.to_owned(), &client, 200),
        (format!("{subscriptions}?email=x"), &operator, 400),
        (subscriptions.to_owned(), &integration, 403),
    ] {
        c.expect(status)
            .check(app, Method::GET, subscriptions, &url, Some(token), None)
            .await;
    }
    let t = "/api/v1/subscriptions/{id}";
    let u = format!("{subscriptions}/{}", theirs["id"].as_str().unwrap());
    let read = c
        .expect(200)
        .check(app, Method::GET, t, &u, Some(&client), None)
        .await;
    assert_eq!(read, theirs);
    for (url, token, status) in [
        (format!("{subscriptions}/{unknown}"), &operator, 404),
        (format!("{u}?active=true"), &operator, 400),
        (u.clone(), &integration, 403),
    ] {
        c.expect(status)
            .check(app, Method::GET, t, &url, Some(token), None)
            .await;
    }
    c.expect(403)
        .check(app, Method::DELETE, t, &u, Some(&operator), None)
        .await;
    for _ in 0..2 {
        c.expect(204)
            .check(app, Method::DELETE, t, &u, Some(&client), None)
            .await;
    }
    let cancelled = c
        .expect(200)
        .check(app, Method::GET, t, &u, Some(&auditor), None)
        .await;
    assert_eq!(cancelled["active"], false);
    c.expect(404)
        .check(
            app,
            Method::DELETE,
            t,
            &format!("{subscriptions}/{unknown}"),
            Some(&admin),
            None,
        )
        .await;

    // ---------------------------------------------------------- escalation and hand-off
    let opened = c
        .expect(201)
        .check(
            app,
            Method::POST,
            "/api/v1/incidents",
            "/api/v1/incidents",
            Some(&operator),
            Some(json!({ "title": "決済APIがタイムアウト", "service_id": service_id, "severity": "error" })),
        )
        .await;
    assert_eq!(opened["next_escalation"]["level"], 1);
    let incident = format!("/api/v1/incidents/{}", opened["id"].as_str().unwrap());
    // The worker tells level 1 at once; level 2 is due an hour later.
    let escalated = eventually("level 1 is told", || async {
        let i: Value = app.get(&incident, &operator).await.json().await.unwrap();
        (i["escalation_level"] == 1).then_some(i)
    })
    .await;
    let version = escalated["version"].as_i64().unwrap();
    let command = |verb: &str| {
        (
            format!("/api/v1/incidents/{{id}}/{verb}"),
            format!("{incident}/{verb}"),
        )
    };
    let (t, u) = command("escalate");
    let climbed = c
        .expect(200)
        .header("if-match", &format!("\"{version}\""))
        .check(
            app,
            Method::POST,
            &t,
            &u,
            Some(&operator),
            Some(json!({ "reason": "一次対応で解決できない" })),
        )
        .await;
    assert_eq!(climbed["escalation_level"], 2);
    c.expect(412)
        .header("if-match", &format!("\"{version}\""))
        .check(app, Method::POST, &t, &u, Some(&operator), Some(json!({})))
        .await;
    for (body, status) in [
        (json!({ "reason": "  " }), 422),
        (json!({ "why": "x" }), 400),
    ] {
        c.expect(status)
            .check(app, Method::POST, &t, &u, Some(&operator), Some(body))
            .await;
    }
    c.expect(403)
        .check(app, Method::POST, &t, &u, Some(&client), Some(json!({})))
        .await;
    c.expect(404)
        .check(
            app,
            Method::POST,
            &t,
            &format!("/api/v1/incidents/{unknown}/escalate"),
            Some(&operator),
            Some(json!({})),
        )
        .await;

    let steps: Vec<(&str, Option<Value>, u16)> = vec![
        (
            "handoff",
            Some(json!({ "reason": "DB の設定変更が必要" })),
            200,
        ),
        ("handoff", Some(json!({ "reason": "again" })), 422),
        ("handoff", Some(json!({})), 400),
        ("assign", Some(json!({ "assignee": users[1] })), 200),
        ("assign", Some(json!({ "assignee": " " })), 422),
        ("unassign", None, 200),
        ("unassign", None, 422),
        (
            "assign",
            Some(json!({ "assignee": "保守チーム 鈴木" })),
            200,
        ),
    ];
    for (verb, body, status) in steps {
        let (t, u) = command(verb);
        c.expect(status)
            .check(app, Method::POST, &t, &u, Some(&operator), body)
            .await;
    }
    let (t, u) = command("unassign");
    c.expect(403)
        .check(app, Method::POST, &t, &u, Some(&auditor), None)
        .await;

    // A closed incident takes none of them.
    let closed = c
        .expect(201)
        .check(
            app,
            Method::POST,
            "/api/v1/incidents",
            "/api/v1/incidents",
            Some(&operator),
            Some(json!({ "title": "社内VPNが不安定", "severity": "warning" })),
        )
        .await;
    let closed = format!("/api/v1/incidents/{}", closed["id"].as_str().unwrap());
    for verb in ["resolve", "close"] {
        c.expect(200)
            .check(
                app,
                Method::POST,
                &format!("/api/v1/incidents/{{id}}/{verb}"),
                &format!("{closed}/{verb}"),
                Some(&operator),
                None,
            )
            .await;
    }
    for (verb, body) in [
        ("escalate", Some(json!({}))),
        ("handoff", Some(json!({ "reason": "x" }))),
        ("assign", Some(json!({ "assignee": "x" }))),
        ("unassign", None),
    ] {
        let res = c
            .expect(409)
            .check(
                app,
                Method::POST,
                &format!("/api/v1/incidents/{{id}}/{verb}"),
                &format!("{closed}/{verb}"),
                Some(&operator),
                body,
            )
            .await;
        assert_eq!(res["current_state"], "closed", "{verb}");
    }

    // ---------------------------------------------------------- queues
    eventually("the hand-off is projected", || async {
        let queue: Value = app
            .get("/api/v1/queues/maintenance", &operator)
            .await
            .json()
            .await
            .unwrap();
        (queue["items"].as_array().unwrap().len() == 1).then_some(())
    })
    .await;
    for team in ["operations", "maintenance"] {
        let t = format!("/api/v1/queues/{team}");
        for (url, token, status) in [
            (t.clone(), &operator, 200),
            (format!("{t}?limit=2"), &auditor, 200),
            (format!("{t}?limit=0"), &operator, 400),
            (format!("{t}?team=x"), &operator, 400),
            (t.clone(), &client, 403),
        ] {
            c.expect(status)
                .check(app, Method::GET, &t, &url, Some(token), None)
                .await;
        }
    }

    // ---------------------------------------------------------- the notification ledger
    let notifications = "/api/v1/notifications";
    // The subscriber of 決済API was told of the opening; the responders of
    // level 1, then level 2, of the escalations.
    eventually("the notifications are requested", || async {
        let list: Value = app
            .get(notifications, &operator)
            .await
            .json()
            .await
            .unwrap();
        (list["items"].as_array().unwrap().len() >= 3).then_some(())
    })
    .await;
    let incident_id = opened["id"].as_str().unwrap();
    for (url, token, status) in [
        (notifications.to_owned(), &operator, 200),
        (
            format!("{notifications}?incident_id={incident_id}&limit=2"),
            &auditor,
            200,
        ),
        (
            format!("{notifications}?client_id={client_id}"),
            &operator,
            200,
        ),
        (notifications.to_owned(), &client, 200),
        (format!("{notifications}?limit=0"), &operator, 400),
        (notifications.to_owned(), &integration, 403),
    ] {
        let list = c
            .expect(status)
            .check(app, Method::GET, notifications, &url, Some(token), None)
            .await;
        if status == 200 && token == &client {
            assert!(!list["items"].as_array().unwrap().is_empty(), "{list}");
        }
    }
}

/// Improvement proposals and the work ledger.
async fn proposals_and_work(c: &mut Checker, app: &TestApp, client_id: &str, service_id: &str) {
    let mia = app.token_for(app.tenant, "mia", &[Role::Maintainer], None);
    let arno = app.token_for(app.tenant, "arno", &[Role::Approver], None);
    let client = app.token_for(
        app.tenant,
        "hanako",
        &[Role::Client],
        Some(client_id.parse().unwrap()),
    );
    let list = "/api/v1/proposals";
    let raised = c
        .expect(201)
        .check(
            app,
            Method::POST,
            list,
            list,
            Some(&mia),
            Some(json!({
                "title": "Cap connection pools", "description": "Every batch job gets a pool limit",
                "service_ids": [service_id], "minutes_spent": 20
            })),
        )
        .await;
    c.expect(422)
        .check(
            app,
            Method::POST,
            list,
            list,
            Some(&mia),
            Some(json!({ "title": "x", "description": "y" })),
        )
        .await;
    c.expect(400)
        .check(
            app,
            Method::POST,
            list,
            list,
            Some(&mia),
            Some(json!({ "title": "x", "descr": "y" })),
        )
        .await;
    c.expect(403)
        .check(
            app,
            Method::POST,
            list,
            list,
            Some(&client),
            Some(json!({ "title": "x", "description": "y" })),
        )
        .await;
    let id = raised["id"].as_str().unwrap().to_owned();
    let one = "/api/v1/proposals/{id}";
    let path = format!("/api/v1/proposals/{id}");
    c.expect(200)
        .check(app, Method::GET, one, &path, Some(&arno), None)
        .await;
    c.expect(404)
        .check(
            app,
            Method::GET,
            one,
            &format!("/api/v1/proposals/{}", uuid::Uuid::now_v7()),
            Some(&arno),
            None,
        )
        .await;
    c.expect(403)
        .check(app, Method::GET, one, &path, Some(&client), None)
        .await;
    let command = |verb: &str| {
        (
            format!("/api/v1/proposals/{{id}}/{verb}"),
            format!("{path}/{verb}"),
        )
    };
    let (t, u) = command("approve");
    c.expect(403)
        .check(app, Method::POST, &t, &u, Some(&mia), None)
        .await;
    c.expect(200)
        .header("if-match", "\"1\"")
        .check(
            app,
            Method::POST,
            &t,
            &u,
            Some(&arno),
            Some(json!({ "comment": "Yes" })),
        )
        .await;
    c.expect(409)
        .check(app, Method::POST, &t, &u, Some(&arno), None)
        .await;
    let (t, u) = command("reject");
    c.expect(409)
        .check(
            app,
            Method::POST,
            &t,
            &u,
            Some(&arno),
            Some(json!({ "reason": "too late" })),
        )
        .await;
    let (t, u) = command("implement");
    c.expect(422)
        .check(
            app,
            Method::POST,
            &t,
            &u,
            Some(&mia),
            Some(json!({ "change_id": uuid::Uuid::now_v7() })),
        )
        .await;
    let (t, u) = command("verify");
    c.expect(409)
        .check(
            app,
            Method::POST,
            &t,
            &u,
            Some(&arno),
            Some(json!({ "note": "not yet" })),
        )
        .await;
    c.expect(400)
        .check(app, Method::POST, &t, &u, Some(&arno), Some(json!({})))
        .await;
    // A second proposal, rejected.
    let other = c
        .expect(201)
        .check(app, Method::POST, list, list, Some(&mia), Some(json!({
            "title": "Rewrite the shop", "description": "In a weekend", "service_ids": [service_id]
        })))
        .await;
    let rejected = format!("/api/v1/proposals/{}/reject", other["id"].as_str().unwrap());
    c.expect(200)
        .check(
            app,
            Method::POST,
            "/api/v1/proposals/{id}/reject",
            &rejected,
            Some(&arno),
            Some(json!({ "reason": "Not worth the risk" })),
        )
        .await;
    eventually("both proposals are listed", || async {
        let page: Value = app.get(list, &arno).await.json().await.unwrap();
        (page["items"].as_array().unwrap().len() == 2).then_some(())
    })
    .await;
    let page = c
        .expect(200)
        .check(
            app,
            Method::GET,
            list,
            &format!("{list}?limit=1"),
            Some(&arno),
            None,
        )
        .await;
    assert!(page["next_cursor"].is_string(), "{page}");
    c.expect(400)
        .check(
            app,
            Method::GET,
            list,
            &format!("{list}?status=nope"),
            Some(&arno),
            None,
        )
        .await;

    let work = "/api/v1/work";
    eventually("the ledger has the proposals", || async {
        let page: Value = app.get(work, &arno).await.json().await.unwrap();
        (page["maintenance"]["count"].as_i64() >= Some(4)).then_some(())
    })
    .await;
    let ledger = c
        .expect(200)
        .check(
            app,
            Method::GET,
            work,
            &format!("{work}?class=maintenance&limit=2"),
            Some(&arno),
            None,
        )
        .await;
    assert!(ledger["next_cursor"].is_i64(), "{ledger}");
    c.expect(200)
        .check(
            app,
            Method::GET,
            work,
            &format!("{work}?service_id={service_id}"),
            Some(&client),
            None,
        )
        .await;
    c.expect(400)
        .check(
            app,
            Method::GET,
            work,
            &format!("{work}?class=neither"),
            Some(&arno),
            None,
        )
        .await;
    c.expect(404)
        .check(
            app,
            Method::GET,
            work,
            &format!("{work}?client_id={}", uuid::Uuid::now_v7()),
            Some(&client),
            None,
        )
        .await;
    c.expect(403)
        .check(
            app,
            Method::GET,
            work,
            work,
            Some(&app.token(&[Role::Integration])),
            None,
        )
        .await;

    let downtime = "/api/v1/reports/downtime";
    let now = chrono::Utc::now();
    let period = format!(
        "from={}&to={}",
        (now - chrono::Duration::days(30)).format("%Y-%m-%dT%H:%M:%SZ"),
        (now + chrono::Duration::days(1)).format("%Y-%m-%dT%H:%M:%SZ")
    );
    eventually("the downtime read model has the incidents", || async {
        let v: Value = app
            .get(&format!("{downtime}?service={service_id}&{period}"), &arno)
            .await
            .json()
            .await
            .unwrap();
        (!v["services"][0]["intervals"].as_array()?.is_empty()).then_some(())
    })
    .await;
    for (url, token, status) in [
        (
            format!("{downtime}?service={service_id}&{period}&drilldown=true"),
            &arno,
            200,
        ),
        (
            format!("{downtime}?client={client_id}&{period}"),
            &client,
            200,
        ),
        (
            format!("{downtime}?client={}&{period}", uuid::Uuid::now_v7()),
            &arno,
            404,
        ),
        (
            format!(
                "{downtime}?client={client_id}&from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z"
            ),
            &arno,
            400,
        ),
        (
            format!("{downtime}?client={client_id}&{period}"),
            &app.token(&[Role::Integration]),
            403,
        ),
    ] {
        c.expect(status)
            .check(app, Method::GET, downtime, &url, Some(token), None)
            .await;
        let metrics = "/api/v1/reports/metrics";
        let url = url.replacen(downtime, metrics, 1);
        c.expect(status)
            .check(app, Method::GET, metrics, &url, Some(token), None)
            .await;
    }
    let monthly = "/api/v1/reports/monthly";
    let month = now.format("%Y-%m");
    for (url, token, accept, status) in [
        (
            format!("{monthly}?client={client_id}&month={month}"),
            &arno,
            "application/json",
            200,
        ),
        (
            format!("{monthly}?client={client_id}&month={month}"),
            &client,
            "text/csv",
            200,
        ),
        (
            format!("{monthly}?client={client_id}&month={month}"),
            &arno,
            "text/html,application/xhtml+xml",
            200,
        ),
        (
            format!("{monthly}?client={client_id}&month={month}&format=csv"),
            &arno,
            "*/*",
            200,
        ),
        (
            format!("{monthly}?client={}&month={month}", uuid::Uuid::now_v7()),
            &arno,
            "application/json",
            404,
        ),
        (
            format!("{monthly}?client={client_id}&month=2026-00"),
            &arno,
            "application/json",
            400,
        ),
        (
            format!("{monthly}?client={client_id}&month={month}"),
            &app.token(&[Role::Integration]),
            "application/json",
            403,
        ),
    ] {
        c.header("accept", accept)
            .expect(status)
            .check(app, Method::GET, monthly, &url, Some(token), None)
            .await;
    }
}

/// Changes, freezes, maintenance windows and the calendar (issue 5), on the
/// service registered by the caller (`受注サイト`, 48 h notice).
async fn changes_and_windows(c: &mut Checker, app: &TestApp, client_id: &str, service_id: &str) {
    let maint = app.token_for(app.tenant, "maint-1", &[Role::Maintainer], None);
    let approver = app.token_for(app.tenant, "owner-1", &[Role::Approver], None);
    let operator = app.token(&[Role::Operator]);
    let client = app.token_for(
        app.tenant,
        "client-user",
        &[Role::Client],
        Some(client_id.parse().unwrap()),
    );
    let changes = "/api/v1/changes";
    let normal = json!({
        "kind": "normal", "category": "version_upgrade", "title": "PostgreSQL 17.2",
        "risk": "high", "impact": "Orders read-only for 10 minutes",
        "rollback_plan": "Fail back to the old primary", "service_ids": [service_id]
    });
    let change = c
        .expect(201)
        .header("idempotency-key", "change-1")
        .check(
            app,
            Method::POST,
            changes,
            changes,
            Some(&maint),
            Some(normal.clone()),
        )
        .await;
    let id = change["id"].as_str().unwrap().to_owned();
    let mut no_plan = normal.clone();
    no_plan["rollback_plan"] = Value::Null;
    for (token, body, status) in [
        (&maint, no_plan, 422),
        (&maint, json!({ "kind": "normal" }), 400),
        (&operator, normal.clone(), 403),
        (&client, normal.clone(), 403),
    ] {
        c.expect(status)
            .check(app, Method::POST, changes, changes, Some(token), Some(body))
            .await;
    }
    let step = |s: &str| format!("/api/v1/changes/{id}/{s}");
    let tpl = |s: &str| format!("/api/v1/changes/{{id}}/{s}");
    c.expect(200)
        .header("if-match", "\"1\"")
        .check(
            app,
            Method::POST,
            &tpl("submit"),
            &step("submit"),
            Some(&maint),
            None,
        )
        .await;
    c.expect(403)
        .check(
            app,
            Method::POST,
            &tpl("approve"),
            &step("approve"),
            Some(&app.token_for(app.tenant, "maint-1", &[Role::Approver], None)),
            Some(json!({})),
        )
        .await;
    c.expect(412)
        .header("if-match", "\"1\"")
        .check(
            app,
            Method::POST,
            &tpl("approve"),
            &step("approve"),
            Some(&approver),
            Some(json!({})),
        )
        .await;
    c.expect(200)
        .check(
            app,
            Method::POST,
            &tpl("approve"),
            &step("approve"),
            Some(&approver),
            Some(json!({ "comment": "go" })),
        )
        .await;
    c.expect(409)
        .check(
            app,
            Method::POST,
            &tpl("reject"),
            &step("reject"),
            Some(&approver),
            Some(json!({ "reason": "late" })),
        )
        .await;
    c.expect(422)
        .check(
            app,
            Method::POST,
            &tpl("schedule"),
            &step("schedule"),
            Some(&maint),
            Some(json!({ "start": "2031-05-01T02:00:00Z", "end": "2031-05-01T01:00:00Z" })),
        )
        .await;
    c.expect(200)
        .check(
            app,
            Method::POST,
            &tpl("schedule"),
            &step("schedule"),
            Some(&maint),
            Some(json!({ "start": "2031-05-01T01:00:00Z", "end": "2031-05-01T03:00:00Z" })),
        )
        .await;
    c.expect(200)
        .check(
            app,
            Method::POST,
            &tpl("start"),
            &step("start"),
            Some(&maint),
            Some(json!({ "minutes_spent": 5 })),
        )
        .await;
    c.expect(422)
        .check(
            app,
            Method::POST,
            &tpl("links"),
            &step("links"),
            Some(&maint),
            Some(json!({ "relation": "fixes", "incident_id": client_id })),
        )
        .await;
    c.expect(400)
        .check(
            app,
            Method::POST,
            &tpl("links"),
            &step("links"),
            Some(&maint),
            Some(json!({ "relation": "breaks" })),
        )
        .await;
    c.expect(200)
        .check(
            app,
            Method::POST,
            &tpl("fail"),
            &step("fail"),
            Some(&maint),
            Some(json!({ "reason": "replica lag" })),
        )
        .await;
    c.expect(409)
        .check(
            app,
            Method::POST,
            &tpl("complete"),
            &step("complete"),
            Some(&maint),
            None,
        )
        .await;
    c.expect(200)
        .check(
            app,
            Method::POST,
            &tpl("rollback"),
            &step("rollback"),
            Some(&maint),
            Some(json!({ "reason": "failed back", "minutes_spent": 30 })),
        )
        .await;
    c.expect(200)
        .check(
            app,
            Method::POST,
            &tpl("review"),
            &step("review"),
            Some(&approver),
            Some(json!({ "summary": "retry with more replicas" })),
        )
        .await;
    // A second change, completed, with a link.
    let standard = c
        .expect(201)
        .check(
            app,
            Method::POST,
            changes,
            changes,
            Some(&operator),
            Some(json!({
                "kind": "standard", "category": "configuration", "title": "Rotate TLS certificate",
                "risk": "low", "impact": "none", "service_ids": [service_id]
            })),
        )
        .await;
    let sid2 = standard["id"].as_str().unwrap();
    c.expect(200)
        .check(
            app,
            Method::POST,
            &tpl("start"),
            &format!("/api/v1/changes/{sid2}/start"),
            Some(&operator),
            None,
        )
        .await;
    c.expect(200)
        .check(
            app,
            Method::POST,
            &tpl("complete"),
            &format!("/api/v1/changes/{sid2}/complete"),
            Some(&operator),
            Some(json!({ "note": "done" })),
        )
        .await;
    let incident: Value = app
        .post("/api/v1/incidents", &operator, &json!({ "title": "Certificate expired", "service_id": service_id, "severity": "critical" }))
        .await
        .json()
        .await
        .unwrap();
    c.expect(200)
        .check(
            app,
            Method::POST,
            &tpl("links"),
            &format!("/api/v1/changes/{sid2}/links"),
            Some(&operator),
            Some(json!({ "relation": "fixes", "incident_id": incident["id"] })),
        )
        .await;
    c.expect(200)
        .check(
            app,
            Method::GET,
            "/api/v1/changes/{id}",
            &format!("/api/v1/changes/{id}"),
            Some(&approver),
            None,
        )
        .await;
    c.expect(404)
        .check(
            app,
            Method::GET,
            "/api/v1/changes/{id}",
            &format!("/api/v1/changes/{id}?as_of=2020-01-01T00:00:00Z"),
            Some(&approver),
            None,
        )
        .await;
    c.expect(404)
        .check(
            app,
            Method::GET,
            "/api/v1/changes/{id}",
            &format!("/api/v1/changes/{client_id}"),
            Some(&approver),
            None,
        )
        .await;
    c.expect(403)
        .check(
            app,
            Method::GET,
            "/api/v1/changes/{id}",
            &format!("/api/v1/changes/{id}"),
            Some(&client),
            None,
        )
        .await;
    eventually("the changes are projected", || async {
        let page: Value = app.get(changes, &maint).await.json().await.unwrap();
        (page["items"].as_array().unwrap().len() == 2).then_some(())
    })
    .await;
    c.expect(200)
        .check(
            app,
            Method::GET,
            changes,
            &format!("{changes}?service_id={service_id}&status=reviewed&kind=normal&limit=1"),
            Some(&maint),
            None,
        )
        .await;
    c.expect(400)
        .check(
            app,
            Method::GET,
            changes,
            &format!("{changes}?status=lost"),
            Some(&maint),
            None,
        )
        .await;
    let history = c
        .expect(200)
        .check(
            app,
            Method::GET,
            "/api/v1/changes/history",
            &format!("/api/v1/changes/history?service={service_id}"),
            Some(&maint),
            None,
        )
        .await;
    assert_eq!(history["items"].as_array().unwrap().len(), 2);
    // Paged: the first change, then the second after it, and no cursor on
    // the last page.
    let first = c
        .expect(200)
        .check(
            app,
            Method::GET,
            "/api/v1/changes/history",
            &format!("/api/v1/changes/history?service={service_id}&limit=1"),
            Some(&maint),
            None,
        )
        .await;
    assert_eq!(first["items"].as_array().unwrap().len(), 1);
    assert_eq!(first["items"][0]["id"], history["items"][0]["id"]);
    let cursor = first["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let second = c
        .expect(200)
        .check(
            app,
            Method::GET,
            "/api/v1/changes/history",
            &format!("/api/v1/changes/history?service={service_id}&limit=1&after={cursor}"),
            Some(&maint),
            None,
        )
        .await;
    assert_eq!(second["items"].as_array().unwrap().len(), 1);
    assert_eq!(second["items"][0]["id"], history["items"][1]["id"]);
    assert!(second.get("next_cursor").is_none(), "{second}");
    c.expect(400)
        .check(
            app,
            Method::GET,
            "/api/v1/changes/history",
            &format!("/api/v1/changes/history?service={service_id}&limit=0"),
            Some(&maint),
            None,
        )
        .await;
    c.expect(404)
        .check(
            app,
            Method::GET,
            "/api/v1/changes/history",
            &format!("/api/v1/changes/history?service={client_id}"),
            Some(&maint),
            None,
        )
        .await;
    c.expect(400)
        .check(
            app,
            Method::GET,
            "/api/v1/changes/history",
            "/api/v1/changes/history",
            Some(&maint),
            None,
        )
        .await;

    // ---------------------------------------------------------- freezes
    let freezes = "/api/v1/freezes";
    let freeze = c
        .expect(201)
        .check(app, Method::POST, freezes, freezes, Some(&approver), Some(json!({
            "service_ids": [service_id], "start": "2031-12-24T00:00:00Z", "end": "2031-12-26T00:00:00Z", "reason": "Holidays"
        })))
        .await;
    let fid = freeze["id"].as_str().unwrap().to_owned();
    c.expect(422)
        .check(app, Method::POST, freezes, freezes, Some(&approver), Some(json!({
            "service_ids": [], "start": "2031-12-24T00:00:00Z", "end": "2031-12-26T00:00:00Z", "reason": "x"
        })))
        .await;
    c.expect(403)
        .check(app, Method::POST, freezes, freezes, Some(&operator), Some(json!({
            "service_ids": [service_id], "start": "2031-12-24T00:00:00Z", "end": "2031-12-26T00:00:00Z", "reason": "x"
        })))
        .await;
    eventually("the freeze is projected", || async {
        let page: Value = app.get(freezes, &maint).await.json().await.unwrap();
        (page["items"].as_array().unwrap().len() == 1).then_some(())
    })
    .await;
    c.expect(200)
        .check(app, Method::GET, freezes, freezes, Some(&maint), None)
        .await;
    c.expect(200)
        .check(
            app,
            Method::GET,
            "/api/v1/freezes/{id}",
            &format!("/api/v1/freezes/{fid}"),
            Some(&maint),
            None,
        )
        .await;
    c.expect(404)
        .check(
            app,
            Method::GET,
            "/api/v1/freezes/{id}",
            &format!("/api/v1/freezes/{id}"),
            Some(&maint),
            None,
        )
        .await;
    // A normal change into the freeze is refused, naming it.
    let third = c
        .expect(201)
        .check(
            app,
            Method::POST,
            changes,
            changes,
            Some(&maint),
            Some(normal.clone()),
        )
        .await;
    let tid = third["id"].as_str().unwrap();
    c.expect(200)
        .check(
            app,
            Method::POST,
            &tpl("submit"),
            &format!("/api/v1/changes/{tid}/submit"),
            Some(&maint),
            None,
        )
        .await;
    c.expect(200)
        .check(
            app,
            Method::POST,
            &tpl("approve"),
            &format!("/api/v1/changes/{tid}/approve"),
            Some(&approver),
            None,
        )
        .await;
    let refused = c
        .expect(409)
        .check(
            app,
            Method::POST,
            &tpl("schedule"),
            &format!("/api/v1/changes/{tid}/schedule"),
            Some(&maint),
            Some(json!({ "start": "2031-12-25T00:00:00Z", "end": "2031-12-25T01:00:00Z" })),
        )
        .await;
    assert_eq!(refused["freeze_id"], fid.as_str());
    c.expect(200)
        .header("if-match", "\"1\"")
        .check(
            app,
            Method::POST,
            "/api/v1/freezes/{id}/lift",
            &format!("/api/v1/freezes/{fid}/lift"),
            Some(&approver),
            None,
        )
        .await;
    c.expect(409)
        .check(
            app,
            Method::POST,
            "/api/v1/freezes/{id}/lift",
            &format!("/api/v1/freezes/{fid}/lift"),
            Some(&approver),
            Some(json!({ "reason": "again" })),
        )
        .await;

    // ---------------------------------------------------------- windows
    let windows = "/api/v1/maintenance-windows";
    let start = chrono::Utc::now() + chrono::Duration::days(5);
    let plan = json!({
        "title": "定期メンテナンス; OS, DB", "service_ids": [service_id],
        "start": start, "end": start + chrono::Duration::hours(2),
        "rrule": "FREQ=WEEKLY;COUNT=3", "change_id": tid
    });
    let window = c
        .expect(201)
        .check(
            app,
            Method::POST,
            windows,
            windows,
            Some(&maint),
            Some(plan.clone()),
        )
        .await;
    assert_eq!(window["occurrences"].as_array().unwrap().len(), 3);
    let wid = window["id"].as_str().unwrap().to_owned();
    let mut bad = plan.clone();
    bad["rrule"] = json!("FREQ=MINUTELY");
    c.expect(422)
        .check(app, Method::POST, windows, windows, Some(&maint), Some(bad))
        .await;
    c.expect(403)
        .check(
            app,
            Method::POST,
            windows,
            windows,
            Some(&operator),
            Some(plan.clone()),
        )
        .await;
    let late = c
        .expect(201)
        .check(
            app,
            Method::POST,
            windows,
            windows,
            Some(&maint),
            Some(json!({
                "title": "Urgent reboot", "service_ids": [service_id],
                "start": chrono::Utc::now() + chrono::Duration::hours(2),
                "end": chrono::Utc::now() + chrono::Duration::hours(3)
            })),
        )
        .await;
    let late_id = late["id"].as_str().unwrap();
    let wstep = |w: &str, s: &str| format!("/api/v1/maintenance-windows/{w}/{s}");
    let wtpl = |s: &str| format!("/api/v1/maintenance-windows/{{id}}/{s}");
    let refused = c
        .expect(422)
        .check(
            app,
            Method::POST,
            &wtpl("announce"),
            &wstep(late_id, "announce"),
            Some(&maint),
            None,
        )
        .await;
    assert!(refused["detail"].as_str().unwrap().contains("48 h"));
    c.expect(200)
        .header("if-match", "\"1\"")
        .check(
            app,
            Method::POST,
            &wtpl("announce"),
            &wstep(&wid, "announce"),
            Some(&maint),
            None,
        )
        .await;
    c.expect(409)
        .check(
            app,
            Method::POST,
            &wtpl("announce"),
            &wstep(&wid, "announce"),
            Some(&maint),
            Some(json!({})),
        )
        .await;
    c.expect(409)
        .check(
            app,
            Method::POST,
            &wtpl("end"),
            &wstep(&wid, "end"),
            Some(&maint),
            None,
        )
        .await;
    c.expect(200)
        .check(
            app,
            Method::POST,
            &wtpl("start"),
            &wstep(&wid, "start"),
            Some(&maint),
            None,
        )
        .await;
    c.expect(200)
        .check(
            app,
            Method::POST,
            &wtpl("end"),
            &wstep(&wid, "end"),
            Some(&maint),
            Some(json!({ "minutes_spent": 120 })),
        )
        .await;
    c.expect(400)
        .check(
            app,
            Method::POST,
            &wtpl("cancel"),
            &wstep(late_id, "cancel"),
            Some(&maint),
            None,
        )
        .await;
    c.expect(200)
        .check(
            app,
            Method::POST,
            &wtpl("cancel"),
            &wstep(late_id, "cancel"),
            Some(&maint),
            Some(json!({ "reason": "not needed" })),
        )
        .await;
    c.expect(200)
        .check(
            app,
            Method::GET,
            "/api/v1/maintenance-windows/{id}",
            &format!("{windows}/{wid}"),
            Some(&maint),
            None,
        )
        .await;
    let seen = c
        .expect(200)
        .check(
            app,
            Method::GET,
            "/api/v1/maintenance-windows/{id}",
            &format!("{windows}/{wid}?from=2020-01-01T00:00:00Z&to=2040-01-01T00:00:00Z"),
            Some(&client),
            None,
        )
        .await;
    assert!(seen.get("change_id").is_none(), "{seen}");
    c.expect(404)
        .check(
            app,
            Method::GET,
            "/api/v1/maintenance-windows/{id}",
            &format!("{windows}/{fid}"),
            Some(&maint),
            None,
        )
        .await;
    eventually("the windows are projected", || async {
        let page: Value = app.get(windows, &maint).await.json().await.unwrap();
        (page["items"].as_array().unwrap().len() == 2).then_some(())
    })
    .await;
    c.expect(200)
        .check(app, Method::GET, windows, windows, Some(&maint), None)
        .await;
    c.expect(200)
        .check(
            app,
            Method::GET,
            windows,
            &format!("{windows}?service_id={service_id}&status=ended&limit=1"),
            Some(&client),
            None,
        )
        .await;
    c.expect(400)
        .check(
            app,
            Method::GET,
            windows,
            &format!("{windows}?from=2030-01-01T00:00:00Z&to=2029-01-01T00:00:00Z"),
            Some(&maint),
            None,
        )
        .await;
    let ics = c
        .expect(200)
        .check(
            app,
            Method::GET,
            "/api/v1/calendar.ics",
            "/api/v1/calendar.ics",
            Some(&maint),
            None,
        )
        .await;
    assert!(ics.as_str().unwrap().starts_with("BEGIN:VCALENDAR\r\n"));
    c.expect(403)
        .check(
            app,
            Method::GET,
            "/api/v1/calendar.ics",
            "/api/v1/calendar.ics",
            Some(&app.token(&[Role::Integration])),
            None,
        )
        .await;
}

/// The work log, runbooks and executions, and inquiries (issue 5), with an
/// inquiry waiting in each queue when the queues are read again.
async fn operations_work(c: &mut Checker, app: &TestApp, client_id: &str, service_id: &str) {
    let operator = app.token(&[Role::Operator]);
    let second = app.token_for(app.tenant, "second-operator", &[Role::Operator], None);
    let auditor = app.token(&[Role::Auditor]);
    let client = app.token_for(
        app.tenant,
        "client-user",
        &[Role::Client],
        Some(client_id.parse().unwrap()),
    );
    let unknown = uuid::Uuid::now_v7().to_string();

    // ---------------------------------------------------------- the work log
    let worklog = "/api/v1/worklog";
    let task_body = json!({
        "service_id": service_id, "kind": "patch_check", "summary": "openssl up to date",
        "minutes_spent": 5, "performed_at": "2026-01-05T09:00:00Z"
    });
    let task = c
        .expect(201)
        .header("idempotency-key", "task-1")
        .check(
            app,
            Method::POST,
            worklog,
            worklog,
            Some(&operator),
            Some(task_body.clone()),
        )
        .await;
    c.expect(201)
        .header("idempotency-key", "task-1")
        .check(
            app,
            Method::POST,
            worklog,
            worklog,
            Some(&operator),
            Some(task_body),
        )
        .await;
    for (body, token, status) in [
        (
            json!({ "service_id": service_id, "kind": "restart", "summary": "x", "minutes_spent": 10081 }),
            &operator,
            422,
        ),
        (
            json!({ "service_id": unknown, "kind": "restart", "summary": "x" }),
            &operator,
            422,
        ),
        (
            json!({ "service_id": service_id, "kind": "reboot", "summary": "x" }),
            &operator,
            400,
        ),
        (
            json!({ "service_id": service_id, "kind": "restart", "summary": "x" }),
            &auditor,
            403,
        ),
        (
            json!({ "service_id": service_id, "kind": "restart", "summary": "x" }),
            &client,
            403,
        ),
    ] {
        c.expect(status)
            .check(app, Method::POST, worklog, worklog, Some(token), Some(body))
            .await;
    }
    let task_path = format!("{worklog}/{}", task["id"].as_str().unwrap());
    for (url, status) in [
        (task_path.clone(), 200),
        (format!("{worklog}/{unknown}"), 404),
    ] {
        c.expect(status)
            .check(
                app,
                Method::GET,
                "/api/v1/worklog/{id}",
                &url,
                Some(&auditor),
                None,
            )
            .await;
    }

    let backups = "/api/v1/backups";
    let backup = c
        .expect(201)
        .check(app, Method::POST, backups, backups, Some(&operator), Some(json!({
            "service_id": service_id, "what": "orders database", "location": "s3://backups/orders/2026-01-05",
            "size_bytes": 1_073_741_824u64, "minutes_spent": 20
        })))
        .await;
    c.expect(422)
        .check(
            app,
            Method::POST,
            backups,
            backups,
            Some(&operator),
            Some(json!({
                "service_id": service_id, "what": " ", "location": "s3://x"
            })),
        )
        .await;
    let bid = backup["id"].as_str().unwrap();
    let backup_path = format!("{backups}/{bid}");
    for (url, token, status) in [
        (backup_path.clone(), &auditor, 200),
        (format!("{backups}/{unknown}"), &operator, 404),
        (backup_path.clone(), &client, 403),
    ] {
        c.expect(status)
            .check(
                app,
                Method::GET,
                "/api/v1/backups/{id}",
                &url,
                Some(token),
                None,
            )
            .await;
    }
    let verify = format!("{backup_path}/verify");
    let verified = c
        .expect(200)
        .header("if-match", "\"1\"")
        .check(
            app,
            Method::POST,
            "/api/v1/backups/{id}/verify",
            &verify,
            Some(&second),
            Some(json!({
                "result": "ok", "how": "restored to staging", "minutes_spent": 30
            })),
        )
        .await;
    assert_eq!(verified["verifications"][0]["by_performer"], false);
    for (m, body, status) in [
        (
            Some("\"1\""),
            json!({ "result": "ok", "how": "again" }),
            412,
        ),
        (None, json!({ "result": "ok", "how": "" }), 422),
        (None, json!({ "result": "maybe", "how": "x" }), 400),
    ] {
        if let Some(m) = m {
            c.header("if-match", m);
        }
        c.expect(status)
            .check(
                app,
                Method::POST,
                "/api/v1/backups/{id}/verify",
                &verify,
                Some(&operator),
                Some(body),
            )
            .await;
    }
    c.expect(404)
        .check(
            app,
            Method::POST,
            "/api/v1/backups/{id}/verify",
            &format!("{backups}/{unknown}/verify"),
            Some(&operator),
            Some(json!({ "result": "ok", "how": "x" })),
        )
        .await;

    eventually("the work log is projected", || async {
        let page: Value = app.get(worklog, &operator).await.json().await.unwrap();
        (page["items"].as_array().unwrap().len() == 2).then_some(())
    })
    .await;
    for (url, token, status) in [
        (worklog.to_owned(), &operator, 200),
        (format!("{worklog}?limit=1"), &auditor, 200),
        (format!("{worklog}?kind=backup&service_id={service_id}&since=2026-01-01T00:00:00Z&until=2100-01-01T00:00:00Z"), &operator, 200),
        (format!("{worklog}?kind=reboot"), &operator, 400),
        (worklog.to_owned(), &client, 403),
    ] {
        let page = c
            .expect(status)
            .check(app, Method::GET, worklog, &url, Some(token), None)
            .await;
        if url.ends_with("limit=1") {
            assert!(page["next_cursor"].is_string(), "{page}");
        }
    }

    // ---------------------------------------------------------- runbooks
    let runbooks = "/api/v1/runbooks";
    let procedure = json!({
        "title": "DB failover", "service_id": service_id,
        "steps": [
            { "title": "Promote the replica", "instructions": "pg_ctl promote", "double_check": true },
            { "title": "Repoint the app", "instructions": "Edit DATABASE_URL and reload." }
        ]
    });
    let runbook = c
        .expect(201)
        .check(
            app,
            Method::POST,
            runbooks,
            runbooks,
            Some(&operator),
            Some(procedure.clone()),
        )
        .await;
    for (body, token, status) in [
        (json!({ "title": "Empty", "steps": [] }), &operator, 422),
        (
            json!({ "title": "T", "steps": [{ "title": "s" }] }),
            &operator,
            400,
        ),
        (procedure.clone(), &client, 403),
    ] {
        c.expect(status)
            .check(
                app,
                Method::POST,
                runbooks,
                runbooks,
                Some(token),
                Some(body),
            )
            .await;
    }
    let rid = runbook["id"].as_str().unwrap();
    let runbook_path = format!("{runbooks}/{rid}");
    let versions = format!("{runbook_path}/versions");
    c.expect(201)
        .header("if-match", "\"1\"")
        .check(
            app,
            Method::POST,
            "/api/v1/runbooks/{id}/versions",
            &versions,
            Some(&operator),
            Some(procedure.clone()),
        )
        .await;
    c.expect(412)
        .header("if-match", "\"1\"")
        .check(
            app,
            Method::POST,
            "/api/v1/runbooks/{id}/versions",
            &versions,
            Some(&operator),
            Some(procedure.clone()),
        )
        .await;
    c.expect(404)
        .check(
            app,
            Method::POST,
            "/api/v1/runbooks/{id}/versions",
            &format!("{runbooks}/{unknown}/versions"),
            Some(&operator),
            Some(procedure),
        )
        .await;
    for (url, status) in [
        (runbook_path.clone(), 200),
        (format!("{runbook_path}?version=1"), 200),
        (format!("{runbook_path}?version=7"), 404),
        (format!("{runbook_path}?v=1"), 400),
    ] {
        c.expect(status)
            .check(
                app,
                Method::GET,
                "/api/v1/runbooks/{id}",
                &url,
                Some(&auditor),
                None,
            )
            .await;
    }
    eventually("the runbook is projected", || async {
        let page: Value = app.get(runbooks, &operator).await.json().await.unwrap();
        (page["items"].as_array().unwrap().len() == 1).then_some(())
    })
    .await;
    for (url, token, status) in [
        (runbooks.to_owned(), &auditor, 200),
        (
            format!("{runbooks}?service_id={service_id}&limit=1"),
            &operator,
            200,
        ),
        (runbooks.to_owned(), &client, 403),
    ] {
        c.expect(status)
            .check(app, Method::GET, runbooks, &url, Some(token), None)
            .await;
    }

    // ---------------------------------------------------------- executions
    let executions = format!("{runbook_path}/executions");
    let execution = c
        .expect(201)
        .check(
            app,
            Method::POST,
            "/api/v1/runbooks/{id}/executions",
            &executions,
            Some(&operator),
            None,
        )
        .await;
    c.expect(422)
        .check(
            app,
            Method::POST,
            "/api/v1/runbooks/{id}/executions",
            &executions,
            Some(&operator),
            Some(json!({ "incident_id": unknown })),
        )
        .await;
    let x_path = format!("/api/v1/executions/{}", execution["id"].as_str().unwrap());
    let complete = "/api/v1/executions/{id}/steps/{n}/complete";
    let confirm = "/api/v1/executions/{id}/steps/{n}/confirm";
    let finish = "/api/v1/executions/{id}/finish";
    c.expect(409)
        .check(
            app,
            Method::POST,
            complete,
            &format!("{x_path}/steps/2/complete"),
            Some(&operator),
            None,
        )
        .await;
    c.expect(200)
        .check(
            app,
            Method::POST,
            complete,
            &format!("{x_path}/steps/1/complete"),
            Some(&operator),
            Some(json!({ "minutes_spent": 3 })),
        )
        .await;
    c.expect(422)
        .check(
            app,
            Method::POST,
            complete,
            &format!("{x_path}/steps/0/complete"),
            Some(&operator),
            None,
        )
        .await;
    c.expect(404)
        .check(
            app,
            Method::POST,
            complete,
            &format!("{x_path}/steps/first/complete"),
            Some(&operator),
            None,
        )
        .await;
    let refused = c
        .expect(409)
        .check(
            app,
            Method::POST,
            confirm,
            &format!("{x_path}/steps/1/confirm"),
            Some(&operator),
            None,
        )
        .await;
    assert_eq!(refused["awaiting_confirmation"], 1, "{refused}");
    c.expect(422)
        .check(
            app,
            Method::POST,
            confirm,
            &format!("{x_path}/steps/2/confirm"),
            Some(&second),
            None,
        )
        .await;
    c.expect(200)
        .check(
            app,
            Method::POST,
            confirm,
            &format!("{x_path}/steps/1/confirm"),
            Some(&second),
            Some(json!({ "note": "replica is primary" })),
        )
        .await;
    c.expect(409)
        .check(
            app,
            Method::POST,
            finish,
            &format!("{x_path}/finish"),
            Some(&operator),
            Some(json!({ "outcome": "succeeded" })),
        )
        .await;
    c.expect(422)
        .check(
            app,
            Method::POST,
            finish,
            &format!("{x_path}/finish"),
            Some(&operator),
            Some(json!({ "outcome": "aborted" })),
        )
        .await;
    c.expect(200)
        .check(
            app,
            Method::POST,
            complete,
            &format!("{x_path}/steps/2/complete"),
            Some(&operator),
            None,
        )
        .await;
    c.expect(200)
        .header("if-match", "\"4\"")
        .check(
            app,
            Method::POST,
            finish,
            &format!("{x_path}/finish"),
            Some(&operator),
            Some(json!({ "outcome": "succeeded" })),
        )
        .await;
    c.expect(403)
        .check(
            app,
            Method::POST,
            finish,
            &format!("{x_path}/finish"),
            Some(&auditor),
            Some(json!({ "outcome": "succeeded" })),
        )
        .await;
    for (url, token, status) in [
        (x_path.clone(), &auditor, 200),
        (format!("/api/v1/executions/{unknown}"), &operator, 404),
        (x_path.clone(), &client, 403),
    ] {
        c.expect(status)
            .check(
                app,
                Method::GET,
                "/api/v1/executions/{id}",
                &url,
                Some(token),
                None,
            )
            .await;
    }

    let executions_list = "/api/v1/executions";
    eventually("the execution is projected as succeeded", || async {
        let page: Value = app
            .get(&format!("{executions_list}?status=succeeded"), &operator)
            .await
            .json()
            .await
            .unwrap();
        (page["items"].as_array().unwrap().len() == 1).then_some(())
    })
    .await;
    for (url, token, status) in [
        (executions_list.to_owned(), &auditor, 200),
        (
            format!("{executions_list}?runbook_id={rid}&status=in_progress&limit=1"),
            &operator,
            200,
        ),
        (
            format!("{executions_list}?incident_id={unknown}"),
            &operator,
            200,
        ),
        (format!("{executions_list}?status=done"), &operator, 400),
        (executions_list.to_owned(), &client, 403),
    ] {
        c.expect(status)
            .check(app, Method::GET, executions_list, &url, Some(token), None)
            .await;
    }

    // ---------------------------------------------------------- inquiries
    let inquiries = "/api/v1/inquiries";
    let asked = json!({
        "service_id": service_id, "kind": "question", "subject": "バックアップの時間",
        "body": "バックアップは何時に実行されますか？"
    });
    let inquiry = c
        .expect(201)
        .check(
            app,
            Method::POST,
            inquiries,
            inquiries,
            Some(&client),
            Some(asked.clone()),
        )
        .await;
    assert!(inquiry.get("opened_by").is_none(), "{inquiry}");
    let escalated = c
        .expect(201)
        .check(app, Method::POST, inquiries, inquiries, Some(&operator), Some(json!({
            "service_id": service_id, "kind": "minor_request", "subject": "Raise the upload limit", "body": "To 20 MB, please."
        })))
        .await;
    for (body, token, status) in [
        (
            json!({ "service_id": unknown, "kind": "question", "subject": "s", "body": "b" }),
            &client,
            422,
        ),
        (
            json!({ "service_id": service_id, "kind": "complaint", "subject": "s", "body": "b" }),
            &client,
            400,
        ),
        (asked, &auditor, 403),
    ] {
        c.expect(status)
            .check(
                app,
                Method::POST,
                inquiries,
                inquiries,
                Some(token),
                Some(body),
            )
            .await;
    }
    let i_path = format!("{inquiries}/{}", inquiry["id"].as_str().unwrap());
    let e_path = format!("{inquiries}/{}", escalated["id"].as_str().unwrap());
    c.expect(200)
        .check(
            app,
            Method::POST,
            "/api/v1/inquiries/{id}/answer",
            &format!("{i_path}/answer"),
            Some(&operator),
            Some(json!({ "answer": "毎日 2:00 JST です。", "minutes_spent": 5 })),
        )
        .await;
    c.expect(403)
        .check(
            app,
            Method::POST,
            "/api/v1/inquiries/{id}/answer",
            &format!("{i_path}/answer"),
            Some(&client),
            Some(json!({ "answer": "me?" })),
        )
        .await;
    c.expect(422)
        .check(
            app,
            Method::POST,
            "/api/v1/inquiries/{id}/answer",
            &format!("{i_path}/answer"),
            Some(&operator),
            Some(json!({ "answer": "" })),
        )
        .await;
    c.expect(200)
        .header("if-match", "\"1\"")
        .check(
            app,
            Method::POST,
            "/api/v1/inquiries/{id}/escalate",
            &format!("{e_path}/escalate"),
            Some(&operator),
            Some(json!({ "reason": "needs an nginx change" })),
        )
        .await;
    let twice = c
        .expect(409)
        .check(
            app,
            Method::POST,
            "/api/v1/inquiries/{id}/escalate",
            &format!("{e_path}/escalate"),
            Some(&operator),
            Some(json!({ "reason": "again" })),
        )
        .await;
    assert_eq!(twice["current_state"], "escalated");
    c.expect(404)
        .check(
            app,
            Method::POST,
            "/api/v1/inquiries/{id}/escalate",
            &format!("{inquiries}/{unknown}/escalate"),
            Some(&operator),
            Some(json!({ "reason": "r" })),
        )
        .await;
    for (url, token, status) in [
        (i_path.clone(), &client, 200),
        (e_path.clone(), &auditor, 200),
        (format!("{inquiries}/{unknown}"), &operator, 404),
    ] {
        c.expect(status)
            .check(
                app,
                Method::GET,
                "/api/v1/inquiries/{id}",
                &url,
                Some(token),
                None,
            )
            .await;
    }

    // Each queue holds an inquiry beside its incidents.
    eventually("the inquiries are in the queues", || async {
        let ops: Value = app
            .get("/api/v1/queues/operations", &operator)
            .await
            .json()
            .await
            .unwrap();
        let maint: Value = app
            .get("/api/v1/queues/maintenance", &operator)
            .await
            .json()
            .await
            .unwrap();
        let has = |q: &Value| {
            q["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|i| i["kind"] == "inquiry")
        };
        (has(&ops) && has(&maint)).then_some(())
    })
    .await;
    for team in ["operations", "maintenance"] {
        let t = format!("/api/v1/queues/{team}");
        let queue = c
            .expect(200)
            .check(app, Method::GET, &t, &t, Some(&operator), None)
            .await;
        let kinds: BTreeSet<&str> = queue["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["kind"].as_str().unwrap())
            .collect();
        assert!(kinds.contains("inquiry"), "{team}: {queue}");
    }

    eventually("the inquiries are projected", || async {
        let page: Value = app.get(inquiries, &operator).await.json().await.unwrap();
        (page["items"].as_array().unwrap().len() == 2).then_some(())
    })
    .await;
    for (url, token, status) in [
        (inquiries.to_owned(), &operator, 200),
        (
            format!(
                "{inquiries}?status=escalated&kind=minor_request&service_id={service_id}&limit=1"
            ),
            &auditor,
            200,
        ),
        (inquiries.to_owned(), &client, 200),
        (format!("{inquiries}?status=lost"), &operator, 400),
    ] {
        c.expect(status)
            .check(app, Method::GET, inquiries, &url, Some(token), None)
            .await;
    }
    c.expect(200)
        .check(
            app,
            Method::POST,
            "/api/v1/inquiries/{id}/close",
            &format!("{i_path}/close"),
            Some(&client),
            None,
        )
        .await;
    let closed = c
        .expect(409)
        .check(
            app,
            Method::POST,
            "/api/v1/inquiries/{id}/close",
            &format!("{i_path}/close"),
            Some(&operator),
            Some(json!({ "note": "again" })),
        )
        .await;
    assert_eq!(closed["current_state"], "closed");
    c.expect(403)
        .check(
            app,
            Method::POST,
            "/api/v1/inquiries/{id}/close",
            &format!("{e_path}/close"),
            Some(&auditor),
            None,
        )
        .await;
}

/// The roles the document names for each operation (`x-roles`) are the roles
/// the server lets through: every route is called by each role alone, and a
/// role the document leaves out is refused with 403 while a role it names
/// never is. Bodies are `{}` and ids unknown, so an allowed call ends in a
/// 4xx of another kind (or a success) without changing anything that
/// matters. A call refused before its role is looked at (a body that does
/// not parse, 400) proves nothing either way and is not counted; neither is
/// a 404 for a role left out.
#[tokio::test]
async fn the_roles_the_document_names_are_the_roles_the_server_lets_through() {
    let app = spawn_app().await;
    let doc = document();
    let unknown = uuid::Uuid::now_v7();
    let client_id = uuid::Uuid::now_v7();
    let mut mismatches = Vec::new();
    for (method, template) in opsledger_api::routes() {
        let operation = &doc["paths"][&template][&method];
        let Some(named) = operation["x-roles"].as_array() else {
            continue;
        };
        let named: BTreeSet<&str> = named.iter().filter_map(|r| r.as_str()).collect();
        let path = template
            .replace("{id}", &unknown.to_string())
            .replace("{n}", "1");
        for role in Role::ALL {
            let client = (role == Role::Client).then_some(client_id);
            let token = app.token_for(app.tenant, "prober", &[role], client);
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let mut req = app.http.request(m, app.url(&path)).bearer_auth(&token);
            if method != "get" && method != "delete" {
                req = req.header("content-type", "application/json").body("{}");
            }
            let status = req.send().await.unwrap().status().as_u16();
            let documented = named.contains(role.as_str());
            let refused = status == 403;
            // A role left out may also meet a 404 first: some commands look
            // the entity up before they weigh who asks (what a change step
            // allows depends on the change), and an unknown one is not there.
            if status == 400 || status == 401 || (!documented && status == 404) {
                continue;
            }
            if documented == refused {
                mismatches.push(format!(
                    "{method} {template}: {} {} by the document, answered {status}",
                    role.as_str(),
                    if documented { "allowed" } else { "not allowed" }
                ));
            }
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

/// Every `discriminator` in the document, with the JSON pointer of the
/// schema holding it.
fn discriminators(at: &str, value: &Value, found: &mut Vec<(String, Value)>) {
    match value {
        Value::Object(map) => {
            if map.contains_key("discriminator") {
                found.push((at.to_owned(), value.clone()));
            }
            for (k, v) in map {
                discriminators(&format!("{at}/{}", escape(k)), v, found);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                discriminators(&format!("{at}/{i}"), v, found);
            }
        }
        _ => {}
    }
}

/// A generic validator tells the alternatives of a `oneOf` apart by its
/// discriminator's `mapping`; without one it expects the schema's name as
/// the value (OpenAPI 3.1 §4.8.25), which no answer carries.
#[test]
fn every_discriminator_maps_each_value_to_its_alternative() {
    let doc = document();
    let mut found = vec![];
    discriminators("", &doc, &mut found);
    assert!(!found.is_empty(), "QueueItem has one");
    for (at, schema) in found {
        let property = schema["discriminator"]["propertyName"].as_str().unwrap();
        let mapping = schema["discriminator"]["mapping"]
            .as_object()
            .unwrap_or_else(|| panic!("{at}: a discriminator without a mapping"));
        let alternatives: BTreeSet<&str> = schema["oneOf"]
            .as_array()
            .unwrap_or_else(|| panic!("{at}: a discriminator outside a oneOf"))
            .iter()
            .map(|a| a["$ref"].as_str().unwrap())
            .collect();
        let mapped: BTreeSet<&str> = mapping.values().map(|v| v.as_str().unwrap()).collect();
        assert_eq!(mapped, alternatives, "{at}: every alternative, once");
        for (value, target) in mapping {
            let target = target.as_str().unwrap();
            let alternative = doc.pointer(target.trim_start_matches('#')).unwrap();
            assert_eq!(
                alternative["properties"][property]["enum"],
                json!([value]),
                "{at}: {target} has {property} = {value} and no other"
            );
        }
    }
}

/// The queues hold both kinds of item: each validates against the schema
/// its discriminator names, and the answer against its documented schema.
#[tokio::test]
async fn queue_items_validate_against_the_schema_their_kind_names() {
    let app = spawn_app().await;
    let doc = document();
    let admin = app.token(&[Role::Admin]);
    let operator = app.token(&[Role::Operator]);
    let created = |path: &'static str, body: Value| {
        let app = &app;
        let admin = admin.clone();
        async move {
            let res = app.post(path, &admin, &body).await;
            assert_eq!(res.status(), 201, "{path}");
            res.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let client = created("/api/v1/clients", json!({ "name": "C" })).await;
    let service = created(
        "/api/v1/services",
        json!({ "client_id": client, "name": "s", "sla_target_pct": 99.0, "notice_period_h": 1 }),
    )
    .await;
    created(
        "/api/v1/incidents",
        json!({ "title": "down", "service_id": service, "severity": "error" }),
    )
    .await;
    let handed = created(
        "/api/v1/incidents",
        json!({ "title": "deeper", "service_id": service, "severity": "warning" }),
    )
    .await;
    let res = app
        .post(
            &format!("/api/v1/incidents/{handed}/handoff"),
            &operator,
            &json!({ "reason": "needs a fix" }),
        )
        .await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    for kind in ["question", "suggestion"] {
        created(
            "/api/v1/inquiries",
            json!({ "service_id": service, "kind": kind, "subject": "s", "body": "b" }),
        )
        .await;
    }
    let inquiry = created(
        "/api/v1/inquiries",
        json!({ "service_id": service, "kind": "question", "subject": "t", "body": "b" }),
    )
    .await;
    let res = app
        .post(
            &format!("/api/v1/inquiries/{inquiry}/escalate"),
            &operator,
            &json!({ "reason": "a bug" }),
        )
        .await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let mapping = doc["components"]["schemas"]["QueueItem"]["discriminator"]["mapping"].clone();
    for (team, incidents, inquiries) in [("operations", 1, 2), ("maintenance", 1, 1)] {
        let path = format!("/api/v1/queues/{team}");
        let answer = eventually("both kinds are queued", || async {
            let v: Value = app.get(&path, &operator).await.json().await.unwrap();
            let count = |k: &str| {
                v["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|i| i["kind"] == k)
                    .count()
            };
            (count("incident") == incidents && count("inquiry") == inquiries).then_some(v)
        })
        .await;
        let errors = violations(
            &doc,
            &schema_pointer(&doc, "get", &path, 200, "application/json"),
            &answer,
        );
        assert!(errors.is_empty(), "{path}: {errors:?}");
        for item in answer["items"].as_array().unwrap() {
            let kind = item["kind"].as_str().unwrap();
            let target = mapping[kind]
                .as_str()
                .unwrap_or_else(|| panic!("no mapping for kind {kind}"));
            let errors = violations(&doc, target.trim_start_matches('#'), item);
            assert!(errors.is_empty(), "{path}, {kind}: {errors:?}");
        }
    }
}
