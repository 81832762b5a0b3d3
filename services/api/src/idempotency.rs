//! `Idempotency-Key` on POST requests (SPEC §3.5): a retry with the same key
//! gets the first response and appends nothing. The key's response is stored
//! in the same transaction as the events it guards.

use std::future::{ready, Ready};

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::{FromRequest, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use opsledger_store::{ClaimedAnswer, IdempotencyClaim};
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::problem::ApiError;
use crate::AppState;

/// Keys are client-chosen; UUIDs are 36 bytes, and we allow room for others.
const KEY_LEN_MAX_BYTES: usize = 200;

#[derive(Debug, Clone)]
pub struct IdempotencyKey(pub Option<String>);

impl FromRequest for IdempotencyKey {
    type Error = ApiError;
    type Future = Ready<Result<IdempotencyKey, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let Some(value) = req.headers().get("idempotency-key") else {
            return ready(Ok(IdempotencyKey(None)));
        };
        let key = value.to_str().ok().map(str::trim).filter(|k| {
            !k.is_empty() && k.len() <= KEY_LEN_MAX_BYTES && k.chars().all(|c| c.is_ascii_graphic())
        });
        ready(match key {
            Some(k) => Ok(IdempotencyKey(Some(k.to_owned()))),
            None => Err(ApiError::BadRequest(format!(
                "Idempotency-Key must be 1 to {KEY_LEN_MAX_BYTES} printable ASCII characters"
            ))),
        })
    }
}

/// A digest of what was asked, so a key reused for a different request is caught.
pub fn fingerprint(req: &HttpRequest, body: &impl Serialize) -> String {
    let mut h = Sha256::new();
    h.update(req.method().as_str());
    h.update([0]);
    h.update(req.path());
    h.update([0]);
    h.update(serde_json::to_vec(body).unwrap_or_default());
    hex::encode(h.finalize())
}

/// What to keep for a key: the status, body, `Location` and `ETag` (the
/// version) of the response.
pub fn claim(
    key: &IdempotencyKey,
    fingerprint: &str,
    status: StatusCode,
    location: Option<&str>,
    version: Option<i64>,
    body: &Value,
) -> Option<IdempotencyClaim> {
    key.0.as_ref().map(|k| IdempotencyClaim {
        key: k.clone(),
        fingerprint: fingerprint.to_owned(),
        response: ClaimedAnswer::Known(json!({
            "status": status.as_u16(), "location": location, "version": version, "body": body
        })),
    })
}

/// As [`claim`], with a body written at the instant the events are recorded
/// (see `ClaimedAnswer::AtCommit`).
pub fn claim_at_commit(
    key: &IdempotencyKey,
    fingerprint: &str,
    status: StatusCode,
    location: Option<&str>,
    version: Option<i64>,
    body: impl Fn(DateTime<Utc>) -> Value + Send + Sync + 'static,
) -> Option<IdempotencyClaim> {
    let status = status.as_u16();
    let location = location.map(str::to_owned);
    key.0.as_ref().map(|k| IdempotencyClaim {
        key: k.clone(),
        fingerprint: fingerprint.to_owned(),
        response: ClaimedAnswer::AtCommit(std::sync::Arc::new(move |at| {
            json!({ "status": status, "location": location, "version": version, "body": body(at) })
        })),
    })
}

/// The first response again, or 422 when the key was used for another request.
pub fn replay(
    stored_fingerprint: &str,
    response: &Value,
    fingerprint: &str,
) -> Result<HttpResponse, ApiError> {
    if stored_fingerprint != fingerprint {
        return Err(ApiError::Unprocessable(
            "this Idempotency-Key was already used for a different request".into(),
        ));
    }
    let status = response["status"]
        .as_u64()
        .and_then(|s| StatusCode::from_u16(s as u16).ok())
        .unwrap_or(StatusCode::OK);
    let mut res = HttpResponse::build(status);
    res.insert_header(("idempotent-replayed", "true"));
    if let Some(location) = response["location"].as_str() {
        res.insert_header((actix_web::http::header::LOCATION, location));
    }
    if let Some(version) = response["version"].as_i64() {
        res.insert_header((actix_web::http::header::ETAG, format!("\"{version}\"")));
    }
    Ok(res.json(&response["body"]))
}

/// Answers a retry before any work is done, when the key is known.
pub async fn replay_if_seen(
    state: &AppState,
    tenant: Uuid,
    key: &IdempotencyKey,
    fingerprint: &str,
) -> Result<Option<HttpResponse>, ApiError> {
    let Some(k) = &key.0 else { return Ok(None) };
    match opsledger_store::append::find_claim(&state.pool, tenant, k).await? {
        Some((stored, response)) => replay(&stored, &response, fingerprint).map(Some),
        None => Ok(None),
    }
}
