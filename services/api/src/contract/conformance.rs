//! The document checked against the server's own answers, in every test
//! that talks to it (feature `conformance`, which only the test harness
//! turns on): each response of a documented operation must have a
//! documented status and content type, its documented headers must match
//! their schemas, and a JSON body must validate against the schema the
//! document gives. A response that does not is replaced by a 500 whose
//! detail names what is wrong, so the test that caused it fails.
//!
//! With `OPSLEDGER_CONFORMANCE_LOG=DIR` every checked `method path status`
//! is appended to a file in DIR; `ops/test` then asserts that the suite
//! exercised every operation (`every_route_was_exercised`).

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::{Arc, LazyLock, Mutex};

use actix_web::body::{to_bytes, BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, StatusCode};
use actix_web::middleware::Next;
use actix_web::HttpResponse;
use serde_json::{json, Value};

/// The document, as the code generates it.
static DOCUMENT: LazyLock<Value> = LazyLock::new(|| super::document(&crate::routes::table()));

/// Validators by the JSON pointer of their schema, compiled once each.
static VALIDATORS: LazyLock<Mutex<HashMap<String, Arc<jsonschema::Validator>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// Where the checked responses are logged, when they are.
pub const LOG_ENV: &str = "OPSLEDGER_CONFORMANCE_LOG";

pub async fn check(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let method = req.method().as_str().to_lowercase();
    let res = next.call(req).await?;
    let Some(template) = res.request().match_pattern() else {
        return Ok(res.map_into_boxed_body());
    };
    let doc = &*DOCUMENT;
    let op = format!("/paths/{}/{method}", escape(&template));
    if doc.pointer(&op).is_none() {
        // An undocumented method of a documented path: the 405 fallback.
        return Ok(res.map_into_boxed_body());
    }
    let status = res.status();
    let content_type = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or(v).trim().to_owned());
    if content_type.as_deref() == Some("text/event-stream") {
        // Endless: its frames are checked by the feed's own tests.
        log(&method, &template, status);
        return Ok(res.map_into_boxed_body());
    }
    let (request, response) = res.into_parts();
    let headers = response.headers().clone();
    let body = match to_bytes(response.into_body()).await {
        Ok(b) => b,
        Err(_) => {
            return Ok(ServiceResponse::new(
                request,
                refused(&format!("{method} {template}: the body could not be read")),
            ))
        }
    };
    let mut wrong = Vec::new();
    check_response(
        doc,
        &op,
        status,
        &headers,
        content_type.as_deref(),
        &body,
        &mut wrong,
    );
    if !wrong.is_empty() {
        let detail = format!(
            "{method} {template} -> {}: the answer does not match the OpenAPI document: {}",
            status.as_u16(),
            wrong.join("; ")
        );
        tracing::error!("{detail}");
        return Ok(ServiceResponse::new(request, refused(&detail)));
    }
    log(&method, &template, status);
    let mut rebuilt = HttpResponse::build(status);
    for (name, value) in headers.iter() {
        rebuilt.append_header((name.clone(), value.clone()));
    }
    Ok(ServiceResponse::new(request, rebuilt.body(body)))
}

fn check_response(
    doc: &Value,
    op: &str,
    status: StatusCode,
    headers: &header::HeaderMap,
    content_type: Option<&str>,
    body: &[u8],
    wrong: &mut Vec<String>,
) {
    let documented = format!("{op}/responses/{}", status.as_u16());
    let Some(mut response) = doc.pointer(&documented) else {
        wrong.push(format!("status {} is not documented", status.as_u16()));
        return;
    };
    let mut at = documented;
    if let Some(r) = response.get("$ref").and_then(Value::as_str) {
        at = r.trim_start_matches('#').to_owned();
        response = doc
            .pointer(&at)
            .expect("a shared response the document holds");
    }
    if let Some(named) = response["headers"].as_object() {
        for (name, h) in named {
            let Some(value) = headers.get(name.as_str()) else {
                continue;
            };
            let schema = match h.get("$ref").and_then(Value::as_str) {
                Some(r) => format!("{}/schema", r.trim_start_matches('#')),
                None => format!("{at}/headers/{}/schema", escape(name)),
            };
            let value = json!(value.to_str().unwrap_or("(not text)"));
            for e in violations(&schema, &value) {
                wrong.push(format!("header {name}: {e}"));
            }
        }
    }
    let Some(content_type) = content_type else {
        if !body.is_empty() {
            wrong.push("a body without a content type".into());
        }
        if response.get("content").is_some() {
            wrong.push("the document gives a body, and none was sent".into());
        }
        return;
    };
    if response["content"].get(content_type).is_none() {
        wrong.push(format!("content type {content_type} is not documented"));
        return;
    }
    if content_type.ends_with("json") {
        let schema = format!("{at}/content/{}/schema", escape(content_type));
        match serde_json::from_slice::<Value>(body) {
            Ok(instance) => wrong.extend(violations(&schema, &instance)),
            Err(e) => wrong.push(format!("the body is not JSON: {e}")),
        }
    }
}

/// The errors of `instance` against the schema at `pointer`.
fn violations(pointer: &str, instance: &Value) -> Vec<String> {
    let validator = {
        let mut cache = VALIDATORS.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(cache.entry(pointer.to_owned()).or_insert_with(|| {
            let mut root = DOCUMENT.clone();
            // A URI fragment: braces of path templates are percent-encoded.
            root["$ref"] = json!(format!(
                "#{}",
                pointer.replace('{', "%7B").replace('}', "%7D")
            ));
            Arc::new(
                jsonschema::options()
                    .should_validate_formats(true)
                    .build(&root)
                    .unwrap_or_else(|e| panic!("the schema at {pointer} compiles: {e}")),
            )
        }))
    };
    validator
        .iter_errors(instance)
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect()
}

/// A JSON pointer's escaping of one segment (RFC 6901).
fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

fn refused(detail: &str) -> HttpResponse {
    let status = StatusCode::INTERNAL_SERVER_ERROR;
    crate::problem::problem_response(
        status,
        crate::problem::problem_body(status, "contract-violated", detail),
    )
}

/// Appends `method template status` to this process's file in the log
/// directory, if there is one.
fn log(method: &str, template: &str, status: StatusCode) {
    let Some(dir) = std::env::var_os(LOG_ENV) else {
        return;
    };
    let path = std::path::Path::new(&dir).join(format!("{}.log", std::process::id()));
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        // One write per line: the HTTP workers of a process append at once.
        let line = format!("{method} {template} {}\n", status.as_u16());
        let _ = f.write_all(line.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wrong(op: &str, status: u16, content_type: Option<&str>, body: &str) -> Vec<String> {
        let mut wrong = Vec::new();
        check_response(
            &DOCUMENT,
            op,
            StatusCode::from_u16(status).unwrap(),
            &header::HeaderMap::new(),
            content_type,
            body.as_bytes(),
            &mut wrong,
        );
        wrong
    }

    #[test]
    fn an_answer_the_document_describes_passes() {
        let ok = wrong(
            "/paths/~1healthz/get",
            200,
            Some("application/json"),
            r#"{"status":"ok"}"#,
        );
        assert!(ok.is_empty(), "{ok:?}");
    }

    #[test]
    fn a_wrong_body_status_or_content_type_is_named() {
        let body = wrong(
            "/paths/~1healthz/get",
            200,
            Some("application/json"),
            r#"{"status":5}"#,
        );
        assert!(body.iter().any(|w| w.contains("status")), "{body:?}");
        let status = wrong("/paths/~1healthz/get", 418, Some("application/json"), "{}");
        assert_eq!(status, ["status 418 is not documented"]);
        let content = wrong("/paths/~1healthz/get", 200, Some("text/html"), "<p>");
        assert_eq!(content, ["content type text/html is not documented"]);
        let missing = wrong(
            "/paths/~1api~1v1~1clients/get",
            200,
            Some("application/json"),
            r#"{"next_cursor":"x"}"#,
        );
        assert!(
            missing.len() >= 2,
            "no items, and a cursor that is no uuid: {missing:?}"
        );
    }
}
