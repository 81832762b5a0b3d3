//! What every request passes before any route sees it: the body's size and
//! the characters no store can hold.
//!
//! One place, so that a route added later cannot forget it:
//! - a body over [`BODY_LEN_MAX_BYTES`] is answered 413 whether or not the
//!   route reads bodies (a command that ignores its body must not run one
//!   it would refuse to read);
//! - a NUL (U+0000) anywhere in the body, the query or the path is refused,
//!   naming where it was: 422 for a body (a JSON pointer), 400 for a query
//!   parameter or the path. PostgreSQL's `text` and `jsonb` cannot hold it,
//!   so an event carrying one would stop every read model that copies it
//!   (see `domain::text::json_holds_nul`; the append path refuses it too).
//!
//! The body is read here once, whole, and handed on to the route unchanged.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::web::{Bytes, BytesMut};
use actix_web::HttpMessage;
use futures_util::StreamExt;
use opsledger_domain::text;
use serde_json::{json, Value};

use crate::problem::{problem_body, problem_response};
use crate::BODY_LEN_MAX_BYTES;

pub async fn input_middleware(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    if let Some(refusal) = refuse_query_or_path(&req) {
        return Ok(req.into_response(refusal));
    }
    let body = match read_body(&mut req).await {
        Ok(body) => body,
        Err(refusal) => return Ok(req.into_response(refusal)),
    };
    if let Some(refusal) = refuse_body(&req, &body) {
        return Ok(req.into_response(refusal));
    }
    req.set_payload(Payload::from(body));
    Ok(next.call(req).await?.map_into_boxed_body())
}

/// The whole body, or a 413 as soon as it is known to be too large: from
/// `Content-Length` before reading, or once more than the limit has come.
async fn read_body(req: &mut ServiceRequest) -> Result<Bytes, actix_web::HttpResponse> {
    let too_large = |detail: String| {
        let status = StatusCode::PAYLOAD_TOO_LARGE;
        problem_response(status, problem_body(status, "payload-too-large", &detail))
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(length) = declared.filter(|&l| l > BODY_LEN_MAX_BYTES as u64) {
        return Err(too_large(format!(
            "the body is {length} bytes; at most {BODY_LEN_MAX_BYTES} are accepted"
        )));
    }
    let mut payload = req.take_payload();
    let mut body = BytesMut::with_capacity(declared.unwrap_or(0) as usize);
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            let status = StatusCode::BAD_REQUEST;
            problem_response(
                status,
                problem_body(
                    status,
                    "bad-request",
                    &format!("the body could not be read: {e}"),
                ),
            )
        })?;
        if body.len() + chunk.len() > BODY_LEN_MAX_BYTES {
            return Err(too_large(format!(
                "the body is larger than the {BODY_LEN_MAX_BYTES} bytes accepted"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

fn refuse_query_or_path(req: &ServiceRequest) -> Option<actix_web::HttpResponse> {
    let status = StatusCode::BAD_REQUEST;
    // Percent-decoded as every route's query extractor decodes it.
    for (name, value) in form_urlencoded::parse(req.query_string().as_bytes()) {
        if name.contains('\0') || value.contains('\0') {
            let name = name.replace('\0', "\\u0000");
            let mut body = problem_body(
                status,
                "nul-character",
                &format!(
                    "the query parameter {name:?} holds a NUL character (%00), which cannot be stored or searched for"
                ),
            );
            body.insert("parameter".into(), json!(name));
            return Some(problem_response(status, body));
        }
    }
    if req.uri().path().contains("%00") {
        return Some(problem_response(
            status,
            problem_body(
                status,
                "nul-character",
                "the path holds a NUL character (%00)",
            ),
        ));
    }
    None
}

fn refuse_body(req: &ServiceRequest, body: &[u8]) -> Option<actix_web::HttpResponse> {
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .is_some_and(|m| m == "application/json" || m.ends_with("+json"));
    // A raw NUL in any body; the `\u0000` escape only means one in JSON.
    let holds_nul = if is_json {
        text::json_holds_nul(body)
    } else {
        memchr::memchr(0, body).is_some()
    };
    if !holds_nul {
        return None;
    }
    let status = StatusCode::UNPROCESSABLE_ENTITY;
    // Rare: worth a second parse to say which field it was.
    let pointer = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| text::nul_pointer(&v));
    let detail = match &pointer {
        Some(p) if p.is_empty() => {
            "the body holds a NUL character (U+0000), which cannot be stored".to_owned()
        }
        Some(p) => format!("{p} holds a NUL character (U+0000), which cannot be stored; remove it"),
        None => "the body holds a NUL character (U+0000), which cannot be stored".to_owned(),
    };
    let mut problem = problem_body(status, "nul-character", &detail);
    if let Some(p) = pointer {
        problem.insert("pointer".into(), json!(p));
    }
    Some(problem_response(status, problem))
}
