//! Extractors every handler shares: the version a command was based on
//! (`If-Match`) and a body that may be left out (`OrEmpty`).

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

/// A JSON body that may be left out entirely, as if it were `{}`: a
/// command whose fields are all optional needs none. When present it must
/// be JSON (`Content-Type: application/json`) of the right shape, never
/// silently ignored; a required field missing from an absent body is the
/// same 400 as from a present one.
#[derive(Debug)]
pub struct OrEmpty<T> {
    pub body: T,
    /// The body as asked (`{}` when left out), for an idempotency key's
    /// fingerprint.
    pub asked: serde_json::Value,
}

impl<T: serde::de::DeserializeOwned + 'static> actix_web::FromRequest for OrEmpty<T> {
    type Error = actix_web::Error;
    type Future = futures_util::future::LocalBoxFuture<'static, Result<OrEmpty<T>, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        let bytes = actix_web::web::Bytes::from_request(req, payload);
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(';')
                    .next()
                    .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
            });
        Box::pin(async move {
            let bytes = bytes.await?;
            let asked: serde_json::Value = if bytes.iter().all(u8::is_ascii_whitespace) {
                serde_json::Value::Object(Default::default())
            } else if !json {
                return Err(ApiError::UnsupportedMediaType(
                    "the body must be JSON (Content-Type: application/json)".into(),
                )
                .into());
            } else {
                serde_json::from_slice(&bytes)
                    .map_err(|e| ApiError::BadRequest(format!("the body is not valid: {e}")))?
            };
            let body = serde_json::from_value(asked.clone())
                .map_err(|e| ApiError::BadRequest(format!("the body is not valid: {e}")))?;
            Ok(OrEmpty { body, asked })
        })
    }
}
