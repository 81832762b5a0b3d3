//! Extractors every handler shares: the version a command was based on
//! (`If-Match`) and a body that may be left out.

use actix_web::http::header;
use actix_web::HttpRequest;

use crate::problem::ApiError;

/// The version a command was based on, from `If-Match` (`"3"`, `W/"3"` or `3`).
pub struct IfMatch(pub Option<i64>);

impl actix_web::FromRequest for IfMatch {
    type Error = ApiError;
    type Future = std::future::Ready<Result<IfMatch, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let parsed = match req.headers().get(header::IF_MATCH) {
            None => Ok(IfMatch(None)),
            Some(v) => v
                .to_str()
                .ok()
                .map(|s| s.trim().trim_start_matches("W/").trim_matches('"'))
                .and_then(|s| s.parse::<i64>().ok())
                .filter(|v| *v >= 1)
                .map(|v| IfMatch(Some(v)))
                .ok_or_else(|| {
                    ApiError::BadRequest(
                        "If-Match must be the resource's version, as its ETag gives it".into(),
                    )
                }),
        };
        std::future::ready(parsed)
    }
}

/// A body that may be left out entirely; when present it must be valid JSON
/// of the right shape, never silently ignored.
pub(crate) fn optional_json<T: serde::de::DeserializeOwned>(
    req: &HttpRequest,
    body: &[u8],
) -> Result<Option<T>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
        });
    if !json {
        return Err(ApiError::UnsupportedMediaType(
            "the body must be JSON (Content-Type: application/json)".into(),
        ));
    }
    serde_json::from_slice(body)
        .map(Some)
        .map_err(|e| ApiError::BadRequest(format!("the body is not valid: {e}")))
}
