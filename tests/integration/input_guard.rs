//! Nothing a request carries can stop a read model, and no command runs on
//! a body it would refuse to read (R6, non-negotiable 4).
//!
//! The routes come from the server's route table and their text fields and
//! query parameters from the OpenAPI document, so a route added later is
//! covered without editing this file.

use opsledger_domain::access::Role;
use opsledger_testkit::{spawn_app, TestApp};
use opsledger_tests::eventually;
use reqwest::{Method, StatusCode};
use serde_json::{json, Map, Value};
use uuid::Uuid;

fn document() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi/openapi.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// `schema` with its `$ref`s followed.
fn resolve<'a>(doc: &'a Value, mut schema: &'a Value) -> &'a Value {
    while let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        schema = doc
            .pointer(r.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("dangling {r}"));
    }
    schema
}

fn operation<'a>(doc: &'a Value, method: &str, path: &str) -> &'a Value {
    doc.pointer(&format!("/paths/{}/{method}", escape(path)))
        .unwrap_or_else(|| panic!("{method} {path} is not documented"))
}

fn request_schema<'a>(doc: &'a Value, method: &str, path: &str) -> Option<&'a Value> {
    operation(doc, method, path)
        .pointer("/requestBody/content/application~1json/schema")
        .map(|s| resolve(doc, s))
}

/// The query parameters a route documents, on the operation or its path.
fn query_parameters(doc: &Value, method: &str, path: &str) -> Vec<String> {
    let item = doc.pointer(&format!("/paths/{}", escape(path))).unwrap();
    let mut names = vec![];
    for list in [
        &item["parameters"],
        &operation(doc, method, path)["parameters"],
    ] {
        for p in list.as_array().into_iter().flatten() {
            let p = resolve(doc, p);
            if p["in"] == "query" {
                names.push(p["name"].as_str().unwrap().to_owned());
            }
        }
    }
    names
}

/// Records that exist, for sample bodies and paths.
struct Fixture {
    client: String,
    service: String,
    incident: String,
    change: String,
    window: String,
    freeze: String,
    proposal: String,
    runbook: String,
    inquiry: String,
    backup: String,
}

async fn created(app: &TestApp, token: &str, path: &str, body: Value) -> String {
    let res = app.post(path, token, &body).await;
    let status = res.status();
    let v: Value = res.json().await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{path}: {v}");
    v["id"].as_str().unwrap().to_owned()
}

async fn fixture(app: &TestApp, token: &str) -> Fixture {
    let client = created(app, token, "/api/v1/clients", json!({ "name": "Client" })).await;
    let service = created(
        app,
        token,
        "/api/v1/services",
        json!({ "client_id": client, "name": "shop", "sla_target_pct": 99.9, "notice_period_h": 1 }),
    )
    .await;
    let later = chrono::Utc::now() + chrono::Duration::days(3);
    let incident = created(
        app,
        token,
        "/api/v1/incidents",
        json!({ "title": "down", "service_id": service, "severity": "error" }),
    )
    .await;
    let change = created(
        app,
        token,
        "/api/v1/changes",
        json!({
            "kind": "normal", "category": "fix", "title": "t", "risk": "low", "impact": "i",
            "rollback_plan": "r", "service_ids": [service]
        }),
    )
    .await;
    let window = created(app, token, "/api/v1/maintenance-windows", json!({
        "title": "w", "service_ids": [service], "start": later, "end": later + chrono::Duration::hours(1)
    }))
    .await;
    let freeze = created(app, token, "/api/v1/freezes", json!({
        "service_ids": [service], "start": later, "end": later + chrono::Duration::hours(1), "reason": "r"
    }))
    .await;
    let proposal = created(
        app,
        token,
        "/api/v1/proposals",
        json!({ "title": "p", "description": "d", "service_ids": [service] }),
    )
    .await;
    let runbook = created(
        app,
        token,
        "/api/v1/runbooks",
        json!({ "title": "R", "steps": [{ "title": "s", "instructions": "i" }] }),
    )
    .await;
    let inquiry = created(
        app,
        token,
        "/api/v1/inquiries",
        json!({
            "service_id": service, "kind": "question", "subject": "s", "body": "b"
        }),
    )
    .await;
    let backup = created(
        app,
        token,
        "/api/v1/backups",
        json!({ "service_id": service, "what": "db", "location": "nas" }),
    )
    .await;
    Fixture {
        client,
        service,
        incident,
        change,
        window,
        freeze,
        proposal,
        runbook,
        inquiry,
        backup,
    }
}

impl Fixture {
    /// The route's path with its ids those of existing records.
    fn path(&self, template: &str) -> String {
        let id = [
            ("/incidents/", &self.incident),
            ("/changes/", &self.change),
            ("/maintenance-windows/", &self.window),
            ("/freezes/", &self.freeze),
            ("/proposals/", &self.proposal),
            ("/runbooks/", &self.runbook),
            ("/inquiries/", &self.inquiry),
            ("/backups/", &self.backup),
            ("/clients/", &self.client),
            ("/services/", &self.service),
        ]
        .into_iter()
        .find(|(prefix, _)| template.contains(&format!("{prefix}{{id}}")))
        .map(|(_, id)| id.clone())
        .unwrap_or_else(|| Uuid::now_v7().to_string());
        template.replace("{id}", &id).replace("{n}", "1")
    }

    /// An id for a uuid field, by its name.
    fn id_for(&self, hint: &str) -> String {
        match hint {
            "service_id" | "service_ids" | "service" => self.service.clone(),
            "client_id" => self.client.clone(),
            "incident_id" | "incident" | "fixes" | "caused_by" => self.incident.clone(),
            "change_id" => self.change.clone(),
            "proposal_id" | "implements" => self.proposal.clone(),
            "runbook_id" => self.runbook.clone(),
            _ => Uuid::now_v7().to_string(),
        }
    }
}

/// A body the schema describes, with its required fields only, and every
/// variant of it that holds a NUL in one of its strings or keys, with the
/// JSON pointer the refusal must name.
struct Sampled {
    sample: Value,
    nul_variants: Vec<(String, Value)>,
}

const NUL_TEXT: &str = "a\u{0}b";
/// Deep enough for every body we have; bounds a recursive schema.
const SAMPLE_DEPTH_MAX: usize = 8;

fn sampled(doc: &Value, schema: &Value, hint: &str, fx: &Fixture, depth: usize) -> Sampled {
    let schema = resolve(doc, schema);
    let none = || Sampled {
        sample: Value::Null,
        nul_variants: vec![],
    };
    if depth > SAMPLE_DEPTH_MAX {
        return none();
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(alternatives) = schema[key].as_array() {
            let mut first: Option<Value> = None;
            let mut nul_variants = vec![];
            for alternative in alternatives {
                if resolve(doc, alternative)["type"] == "null" {
                    continue;
                }
                let s = sampled(doc, alternative, hint, fx, depth + 1);
                first.get_or_insert(s.sample);
                nul_variants.extend(s.nul_variants);
            }
            return Sampled {
                sample: first.unwrap_or(Value::Null),
                nul_variants,
            };
        }
    }
    if let Some(parts) = schema["allOf"].as_array() {
        let mut sample = Map::new();
        let mut nul_variants = vec![];
        for part in parts {
            let s = sampled(doc, part, hint, fx, depth + 1);
            if let Value::Object(m) = s.sample {
                sample.extend(m);
            }
            nul_variants.extend(s.nul_variants);
        }
        return Sampled {
            sample: Value::Object(sample),
            nul_variants,
        };
    }
    if let Some(c) = schema.get("const") {
        return Sampled {
            sample: c.clone(),
            nul_variants: if c.is_string() {
                vec![(String::new(), json!(NUL_TEXT))]
            } else {
                vec![]
            },
        };
    }
    let ty = match &schema["type"] {
        Value::String(t) => t.clone(),
        Value::Array(ts) => ts
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null")
            .to_owned(),
        _ if schema.get("properties").is_some() => "object".to_owned(),
        _ if schema.get("enum").is_some() => "string".to_owned(),
        _ => return none(),
    };
    match ty.as_str() {
        "string" => {
            let sample = if let Some(e) = schema["enum"].as_array() {
                e.iter().find(|v| !v.is_null()).cloned().unwrap()
            } else {
                let soon = chrono::Utc::now() + chrono::Duration::days(3);
                json!(match schema["format"].as_str() {
                    Some("uuid") => fx.id_for(hint),
                    Some("date-time") if hint.contains("end") =>
                        (soon + chrono::Duration::hours(1)).to_rfc3339(),
                    Some("date-time") if hint.contains("impact") =>
                        (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339(),
                    Some("date-time") => soon.to_rfc3339(),
                    Some("date") => soon.date_naive().to_string(),
                    Some("email") => "someone@example.com".to_owned(),
                    _ => match hint {
                        "timezone" | "time_zone" => "UTC".to_owned(),
                        "locale" => "en".to_owned(),
                        _ => "text".to_owned(),
                    },
                })
            };
            Sampled {
                sample,
                nul_variants: vec![(String::new(), json!(NUL_TEXT))],
            }
        }
        "integer" | "number" => {
            let min = schema["minimum"].as_f64().unwrap_or(1.0).max(1.0);
            let n = schema["maximum"].as_f64().map_or(min, |max| min.min(max));
            Sampled {
                sample: if ty == "integer" {
                    json!(n as i64)
                } else {
                    json!(n)
                },
                nul_variants: vec![],
            }
        }
        "boolean" => Sampled {
            sample: json!(false),
            nul_variants: vec![],
        },
        "array" => {
            let item = sampled(doc, &schema["items"], hint, fx, depth + 1);
            Sampled {
                nul_variants: item
                    .nul_variants
                    .into_iter()
                    .map(|(p, v)| (format!("/0{p}"), json!([v])))
                    .collect(),
                sample: json!([item.sample]),
            }
        }
        "object" => {
            let required: Vec<&str> = schema["required"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let mut base = Map::new();
            let mut nul_variants = vec![];
            for (name, prop) in schema["properties"].as_object().into_iter().flatten() {
                let s = sampled(doc, prop, name, fx, depth + 1);
                if required.contains(&name.as_str()) {
                    base.insert(name.clone(), s.sample);
                }
                for (p, v) in s.nul_variants {
                    nul_variants.push((format!("/{}{p}", escape(name)), (name.clone(), v)));
                }
            }
            let mut variants: Vec<(String, Value)> = nul_variants
                .into_iter()
                .map(|(p, (name, v))| {
                    let mut body = base.clone();
                    body.insert(name, v);
                    (p, Value::Object(body))
                })
                .collect();
            if let Some(values) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                let value = sampled(doc, values, hint, fx, depth + 1);
                let mut body = base.clone();
                body.insert(NUL_TEXT.to_owned(), value.sample.clone());
                variants.push(("/a\\u0000b".to_owned(), Value::Object(body)));
                for (p, v) in value.nul_variants {
                    let mut body = base.clone();
                    body.insert("k".to_owned(), v);
                    variants.push((format!("/k{p}"), Value::Object(body)));
                }
            }
            Sampled {
                sample: Value::Object(base),
                nul_variants: variants,
            }
        }
        _ => none(),
    }
}

fn is_ingestion(method: &str, path: &str) -> bool {
    path.starts_with("/api/v1/integrations/") || (method == "post" && path == "/api/v1/alerts")
}

/// Every event of the tenant: a refused request adds none.
async fn events_of(app: &TestApp, tenant: Uuid) -> i64 {
    app.db
        .superuser()
        .await
        .query_one(
            "SELECT count(*) FROM events WHERE tenant_id = $1",
            &[&tenant],
        )
        .await
        .unwrap()
        .get(0)
}

/// Staff with every role that records work (not a client, not an integration).
fn staff(app: &TestApp, tenant: Uuid) -> String {
    app.token_for(
        tenant,
        "staff",
        &[
            Role::Operator,
            Role::Maintainer,
            Role::Approver,
            Role::Auditor,
            Role::Admin,
        ],
        None,
    )
}

#[tokio::test]
async fn a_nul_in_any_text_field_of_any_command_is_refused_and_every_tenant_keeps_its_change_list()
{
    let app = spawn_app().await;
    let doc = document();
    let staff_a = staff(&app, app.tenant);
    let integration = app.token(&[Role::Integration]);
    let fx = fixture(&app, &staff_a).await;
    let before = events_of(&app, app.tenant).await;
    let mut tried = 0;
    let mut accepted = vec![];
    for (method, template) in opsledger_api::routes() {
        if method == "get" {
            continue;
        }
        let Some(schema) = request_schema(&doc, &method, &template) else {
            continue;
        };
        let token = if is_ingestion(&method, &template) {
            &integration
        } else {
            &staff_a
        };
        let path = fx.path(&template);
        for (pointer, body) in sampled(&doc, schema, "", &fx, 0).nul_variants {
            tried += 1;
            let res = app
                .http
                .request(
                    Method::from_bytes(method.to_uppercase().as_bytes()).unwrap(),
                    app.url(&path),
                )
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = res.status();
            let problem: Value = res.json().await.unwrap_or(Value::Null);
            if status != StatusCode::UNPROCESSABLE_ENTITY || problem["pointer"] != pointer.as_str()
            {
                accepted.push(format!("{method} {template} {pointer}: {status} {problem}"));
            }
        }
    }
    eprintln!("{tried} bodies with a NUL; not refused with their pointer: {accepted:#?}");
    // Another tenant's change is listed, and so is this tenant's: the change
    // read model goes on for everyone.
    let other = app.register_tenant("Other MSP").await;
    let staff_b = staff(&app, other);
    let client = created(&app, &staff_b, "/api/v1/clients", json!({ "name": "B" })).await;
    let service = created(
        &app,
        &staff_b,
        "/api/v1/services",
        json!({
            "client_id": client, "name": "b-shop", "sla_target_pct": 99.0, "notice_period_h": 1
        }),
    )
    .await;
    let theirs = created(&app, &staff_b, "/api/v1/changes", json!({
        "kind": "standard", "category": "configuration", "title": "b", "risk": "low", "impact": "i",
        "service_ids": [service]
    }))
    .await;
    let listed = |token: String| {
        let app = &app;
        async move {
            let v: Value = app
                .get("/api/v1/changes", &token)
                .await
                .json()
                .await
                .unwrap();
            v["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["id"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    let b = eventually("the other tenant's change is listed", || async {
        let ids = listed(staff_b.clone()).await;
        ids.contains(&theirs).then_some(ids)
    })
    .await;
    assert_eq!(b, vec![theirs]);
    let a = listed(staff_a.clone()).await;
    assert_eq!(a, vec![fx.change.clone()], "only the fixture's change");
    assert!(
        tried > 100,
        "the document lists the text fields ({tried} tried)"
    );
    assert!(accepted.is_empty(), "not refused: {accepted:#?}");
    assert_eq!(
        events_of(&app, app.tenant).await,
        before,
        "a refusal writes nothing"
    );
    let ready: Value = app
        .http
        .get(app.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "ready", "{ready}");
}

#[tokio::test]
async fn a_nul_in_any_query_parameter_is_a_400_naming_it() {
    let app = spawn_app().await;
    let doc = document();
    let staff = staff(&app, app.tenant);
    let fx = fixture(&app, &staff).await;
    let mut tried = 0;
    let mut wrong = vec![];
    for (method, template) in opsledger_api::routes() {
        let path = fx.path(&template);
        let mut names = query_parameters(&doc, &method, &template);
        // And one no route documents.
        names.push("undocumented".into());
        for name in names {
            tried += 1;
            let url = format!("{path}?{name}=%00");
            let res = app
                .http
                .request(
                    Method::from_bytes(method.to_uppercase().as_bytes()).unwrap(),
                    app.url(&url),
                )
                .bearer_auth(&staff)
                .send()
                .await
                .unwrap();
            let status = res.status();
            let problem: Value = res.json().await.unwrap_or(Value::Null);
            if status != StatusCode::BAD_REQUEST || problem["parameter"] != name.as_str() {
                wrong.push(format!("{method} {url}: {status} {problem}"));
            }
        }
    }
    assert!(tried > 100, "{tried}");
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// 2 MiB: twice what any route accepts.
const OVERSIZED_BYTES: usize = 2 << 20;

#[tokio::test]
async fn every_route_answers_a_body_over_1_mib_with_413_and_does_nothing() {
    let app = spawn_app().await;
    let staff_token = staff(&app, app.tenant);
    let integration = app.token(&[Role::Integration]);
    let fx = fixture(&app, &staff_token).await;
    let before = events_of(&app, app.tenant).await;
    let body = format!("{{\"note\": \"{}\"}}", "x".repeat(OVERSIZED_BYTES));
    let mut wrong = vec![];
    for (method, template) in opsledger_api::routes() {
        let token = if is_ingestion(&method, &template) {
            &integration
        } else {
            &staff_token
        };
        let path = fx.path(&template);
        let res = app
            .http
            .request(
                Method::from_bytes(method.to_uppercase().as_bytes()).unwrap(),
                app.url(&path),
            )
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let status = res.status();
        let content_type = res
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        if status != StatusCode::PAYLOAD_TOO_LARGE || content_type != "application/problem+json" {
            wrong.push(format!("{method} {path}: {status} {content_type}"));
        }
    }
    // Without a Content-Length, the body is refused once 1 MiB has come.
    let chunked = chunked_post(
        &app,
        &format!("/api/v1/incidents/{}/acknowledge", fx.incident),
        &staff_token,
        OVERSIZED_BYTES,
    )
    .await;
    if !chunked.starts_with("HTTP/1.1 413") || !chunked.contains("application/problem+json") {
        wrong.push(format!("chunked acknowledge: {chunked}"));
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    assert_eq!(
        events_of(&app, app.tenant).await,
        before,
        "nothing was written"
    );
    let incident: Value = app
        .get(&format!("/api/v1/incidents/{}", fx.incident), &staff_token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(incident["status"], "triggered", "{incident}");
}

/// Sends a POST whose body comes in chunks (no Content-Length) and returns
/// the response's head and whatever of the body came with it.
async fn chunked_post(app: &TestApp, path: &str, token: &str, len: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = app.address.trim_start_matches("http://");
    let stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    let writer = tokio::spawn(async move {
        write.write_all(head.as_bytes()).await?;
        let chunk = vec![b' '; 64 * 1024];
        let mut sent = 0;
        while sent < len {
            write
                .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .await?;
            write.write_all(&chunk).await?;
            write.write_all(b"\r\n").await?;
            sent += chunk.len();
        }
        write.write_all(b"0\r\n\r\n").await?;
        Ok::<_, std::io::Error>(write)
    });
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !String::from_utf8_lossy(&response).contains("\r\n\r\n") {
        match tokio::time::timeout_at(deadline, read.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => response.extend_from_slice(&buf[..n]),
        }
    }
    writer.abort();
    String::from_utf8_lossy(&response).into_owned()
}

/// Sends `request` as it is and reads until the server closes (or 10 s).
async fn raw_exchange(app: &TestApp, request: &[u8]) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = app.address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut response = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut response),
    )
    .await;
    response
}

/// The responses in `bytes`, each as (status, content type, body).
fn responses(mut bytes: &[u8]) -> Vec<(u16, String, Vec<u8>)> {
    let mut out = vec![];
    while !bytes.is_empty() {
        let text = String::from_utf8_lossy(bytes).into_owned();
        let head_len = text.find("\r\n\r\n").expect("a whole head") + 4;
        let head = &text[..head_len];
        let status: u16 = head[9..12].parse().unwrap();
        let header = |name: &str| {
            head.lines()
                .find_map(|l| {
                    l.split_once(':')
                        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                })
                .map(|(_, v)| v.trim().to_owned())
        };
        let len: usize = header("content-length")
            .unwrap_or_default()
            .parse()
            .unwrap_or(0);
        out.push((
            status,
            header("content-type").unwrap_or_default(),
            bytes[head_len..head_len + len].to_vec(),
        ));
        bytes = &bytes[head_len + len..];
    }
    out
}

/// A request actix-http cannot parse is answered by it before any of our
/// code runs; that answer is a problem too (`api::wire`).
#[tokio::test]
async fn a_request_the_http_parser_refuses_gets_a_problem() {
    let app = spawn_app().await;
    let cases: Vec<(&str, Vec<u8>, Vec<u16>)> = vec![
        (
            "a DEL byte in a header value",
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Bad: a\x7fb\r\n\r\n".to_vec(),
            vec![400],
        ),
        (
            "a negative Content-Length",
            b"POST /api/v1/alerts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: -5\r\n\r\n".to_vec(),
            vec![400],
        ),
        (
            "a bad request after a good one on the same connection",
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\nX-Bad: \x01\r\n\r\n".to_vec(),
            vec![200, 400],
        ),
    ];
    for (name, request, statuses) in cases {
        let answered = responses(&raw_exchange(&app, &request).await);
        assert_eq!(
            answered.iter().map(|r| r.0).collect::<Vec<_>>(),
            statuses,
            "{name}"
        );
        let (status, content_type, body) = answered.last().unwrap();
        assert_eq!(content_type, "application/problem+json", "{name}");
        let problem: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(problem["status"], *status, "{name}");
        assert!(!problem["detail"].as_str().unwrap().is_empty(), "{name}");
    }
}
