//! One error shape for every response: RFC 9457 `application/problem+json`.
//!
//! Handlers return [`ApiError`]; extractor failures (bad JSON, bad path or
//! query) are mapped to it by the configs in `lib.rs`; anything else that
//! leaves the app as a bare error status (unknown route, wrong method, an
//! oversized body caught by actix itself) is rewritten into a problem by
//! [`problem_middleware`]. A 5xx never says more than the request id.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpResponse, ResponseError};
use opsledger_store::{AppendError, StoreError};
use serde_json::{json, Map, Value};
use uuid::Uuid;

pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";
/// How long a client should wait before retrying while the database is away.
const RETRY_AFTER_S: &str = "2";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{detail}")]
    Conflict {
        detail: String,
        extra: Map<String, Value>,
    },
    /// A stale `If-Match` (RFC 9110 §13.1.1): the resource moved on since
    /// the version the command was based on.
    #[error("{detail}")]
    PreconditionFailed {
        detail: String,
        extra: Map<String, Value>,
    },
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    Unprocessable(String),
    #[error("the service is temporarily unavailable")]
    Unavailable(#[source] StoreError),
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    pub fn conflict(detail: impl Into<String>) -> ApiError {
        ApiError::Conflict {
            detail: detail.into(),
            extra: Map::new(),
        }
    }

    /// A refusal (409) that names the record's current state
    /// (`current_state`), as every refused command answers; other errors
    /// as they are.
    pub fn naming_state(self, state: &str) -> ApiError {
        match self {
            ApiError::Conflict { detail, mut extra } => {
                extra.insert("current_state".into(), state.into());
                ApiError::Conflict { detail, extra }
            }
            other => other,
        }
    }

    fn slug(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad-request",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not-found",
            ApiError::Conflict { .. } => "conflict",
            ApiError::PreconditionFailed { .. } => "precondition-failed",
            ApiError::PayloadTooLarge(_) => "payload-too-large",
            ApiError::UnsupportedMediaType(_) => "unsupported-media-type",
            ApiError::Unprocessable(_) => "unprocessable",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        if e.is_unavailable() {
            ApiError::Unavailable(e)
        } else {
            ApiError::Internal(Box::new(e))
        }
    }
}

impl From<AppendError> for ApiError {
    fn from(e: AppendError) -> Self {
        match e {
            AppendError::Conflict {
                stream_id,
                expected,
                actual,
            } => {
                let mut extra = Map::new();
                extra.insert("stream".into(), json!(stream_id));
                extra.insert("current_version".into(), json!(actual));
                ApiError::Conflict {
                    detail: format!(
                        "{stream_id} is at version {actual}; the command expected {}",
                        match expected {
                            opsledger_store::ExpectedVersion::Any => "any version".to_owned(),
                            opsledger_store::ExpectedVersion::NoStream =>
                                "it not to exist yet".to_owned(),
                            opsledger_store::ExpectedVersion::Exact(v) => format!("version {v}"),
                        }
                    ),
                    extra,
                }
            }
            AppendError::Invalid(msg) => ApiError::Unprocessable(msg),
            AppendError::Store(e) => ApiError::from(e),
        }
    }
}

impl From<opsledger_app::run::RunError> for ApiError {
    fn from(e: opsledger_app::run::RunError) -> Self {
        use opsledger_app::run::RunError;
        match e {
            RunError::NotFound { .. } => ApiError::NotFound(e.to_string()),
            RunError::Stale { version, state, .. } => {
                let mut extra = Map::new();
                extra.insert("current_version".into(), version.into());
                extra.insert("current_state".into(), state.into());
                ApiError::PreconditionFailed {
                    detail: e.to_string(),
                    extra,
                }
            }
            RunError::Rejected {
                rejection,
                state,
                version,
                standing,
            } => match (ApiError::from(rejection), state) {
                // A refusal names where the record stands, so a client can
                // show what changed and decide again.
                (ApiError::Conflict { detail, mut extra }, Some(state)) => {
                    extra.insert("current_state".into(), state.into());
                    extra.insert("current_version".into(), version.into());
                    extra.extend(standing.into_iter().map(|(k, v)| (k.to_owned(), v)));
                    ApiError::Conflict { detail, extra }
                }
                (other, _) => other,
            },
            RunError::Invalid(m) => ApiError::Unprocessable(m),
            RunError::Contended(m) => ApiError::conflict(m),
            RunError::Append(e) => ApiError::from(e),
            RunError::Store(e) => ApiError::from(e),
            RunError::Internal(m) => ApiError::Internal(m.into()),
        }
    }
}

impl From<opsledger_domain::Rejection> for ApiError {
    fn from(r: opsledger_domain::Rejection) -> Self {
        use opsledger_domain::Rejection;
        match r {
            Rejection::Invalid(m) => ApiError::Unprocessable(m),
            Rejection::AlreadyExists(_) => ApiError::conflict(r.to_string()),
            Rejection::NotFound(_) => ApiError::Unprocessable(r.to_string()),
            Rejection::Forbidden(m) => ApiError::Forbidden(m),
            Rejection::Frozen {
                ref state,
                freeze_id,
                ..
            } => {
                let mut extra = Map::new();
                extra.insert("current_state".into(), json!(state));
                extra.insert("freeze_id".into(), json!(freeze_id));
                ApiError::Conflict {
                    detail: r.to_string(),
                    extra,
                }
            }
            Rejection::InvalidState { ref state, .. }
            | Rejection::InvalidTransition { ref state, .. }
            | Rejection::Refused { ref state, .. } => {
                let mut extra = Map::new();
                extra.insert("current_state".into(), json!(state));
                ApiError::Conflict {
                    detail: r.to_string(),
                    extra,
                }
            }
        }
    }
}

/// An RFC 9457 problem. Every error response has this shape. `problem_body`
/// writes the first four members; the others come with the statuses that
/// name them. (The document's `Problem`.)
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// `urn:opsledger:problem:<slug>`, e.g. `urn:opsledger:problem:not-found`.
    #[serde(rename = "type")]
    #[schema(pattern = "^urn:opsledger:problem:")]
    pub kind: String,
    /// The status's reason phrase.
    pub title: String,
    #[schema(minimum = 400, maximum = 599)]
    pub status: u16,
    pub detail: String,
    /// On 409 from a version conflict: the stream that was not at the
    /// expected version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// On 409 from a version conflict, or 412 for an `If-Match` that is not
    /// current: the stream's current version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_version: Option<i64>,
    /// On 409 and 412 about a record's lifecycle: the status the record is
    /// in now (a runbook is `published`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_state: Option<String>,
    /// On 409 when scheduling or starting a normal change: the freeze that
    /// forbids it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub freeze_id: Option<uuid::Uuid>,
    /// On 409 from an execution command: the step to complete next (`null`:
    /// none left).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_step: Option<Option<u32>>,
    /// On 409 from an execution command: a completed double-check step still
    /// waiting for its second person.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub awaiting_confirmation: Option<Option<u32>>,
    /// On 422 for a NUL character (U+0000) in the body: the JSON pointer
    /// (RFC 6901) of the string or key that holds it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pointer: Option<String>,
    /// On 400 for a NUL character (`%00`) in the query: the parameter that
    /// holds it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameter: Option<String>,
}

pub fn problem_body(status: StatusCode, slug: &str, detail: &str) -> Map<String, Value> {
    let mut body = Map::new();
    body.insert(
        "type".into(),
        json!(format!("urn:opsledger:problem:{slug}")),
    );
    body.insert(
        "title".into(),
        json!(status.canonical_reason().unwrap_or("Error")),
    );
    body.insert("status".into(), json!(status.as_u16()));
    body.insert("detail".into(), json!(detail));
    body
}

pub fn problem_response(status: StatusCode, body: Map<String, Value>) -> HttpResponse {
    let mut res = HttpResponse::build(status);
    res.insert_header((header::CONTENT_TYPE, PROBLEM_CONTENT_TYPE));
    if status == StatusCode::SERVICE_UNAVAILABLE {
        res.insert_header((header::RETRY_AFTER, RETRY_AFTER_S));
    }
    if status == StatusCode::UNAUTHORIZED {
        res.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
    }
    res.body(Value::Object(body).to_string())
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::PreconditionFailed { .. } => StatusCode::PRECONDITION_FAILED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let detail = match self {
            ApiError::Internal(source) => {
                tracing::error!(error = ?source, "internal error");
                "an internal error occurred; the request id identifies it in the service's log"
                    .to_owned()
            }
            ApiError::Unavailable(source) => {
                tracing::warn!(error = ?source, "database unavailable");
                "the database is unavailable; retry after the indicated delay".to_owned()
            }
            other => other.to_string(),
        };
        let mut body = problem_body(status, self.slug(), &detail);
        if let ApiError::Conflict { extra, .. } | ApiError::PreconditionFailed { extra, .. } = self
        {
            body.extend(extra.clone());
        }
        problem_response(status, body)
    }
}

/// The id of the request, from a sane `X-Request-Id` or a new one.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Requests ids longer than this are replaced: they end up in every log line.
const REQUEST_ID_LEN_MAX: usize = 100;

/// Assigns the request id and turns every error response that is not yet a
/// problem into one, so no 4xx leaves without a problem body.
pub async fn problem_middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= REQUEST_ID_LEN_MAX
                && v.chars().all(|c| c.is_ascii_graphic())
        })
        .map(str::to_owned)
        .unwrap_or_else(|| Uuid::new_v4().to_string());
    req.extensions_mut().insert(RequestId(request_id.clone()));
    let method = req.method().clone();
    let path = req.path().to_owned();
    let res = match next.call(req).await {
        Ok(res) => res.map_into_boxed_body(),
        Err(e) => {
            // Only an inner middleware fails this way; handlers' errors are
            // responses by now. Answer it as a problem all the same.
            let status = e.as_response_error().status_code();
            let detail = if status.is_server_error() {
                "internal error".to_owned()
            } else {
                e.to_string()
            };
            let response = problem_response(status, problem_body(status, "http", &detail));
            return Err(actix_web::error::InternalError::from_response(e, response).into());
        }
    };
    let status = res.status();
    let is_problem = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_CONTENT_TYPE.as_bytes()));
    // The console's pages say what went wrong in HTML, for a person.
    let is_page = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/html"));
    let mut res = if status.as_u16() >= 400 && !is_problem && !is_page {
        let detail = match status {
            StatusCode::NOT_FOUND => format!("there is no resource at {path}"),
            StatusCode::METHOD_NOT_ALLOWED => format!("{method} is not allowed on {path}"),
            StatusCode::PAYLOAD_TOO_LARGE => "the request body is too large".to_owned(),
            _ => status.canonical_reason().unwrap_or("error").to_owned(),
        };
        let (req, old) = res.into_parts();
        let mut new = problem_response(status, problem_body(status, "http", &detail));
        for (name, value) in old.headers() {
            if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
                new.headers_mut().insert(name.clone(), value.clone());
            }
        }
        ServiceResponse::new(req, new)
    } else {
        res
    };
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        res.headers_mut()
            .insert(header::HeaderName::from_static("x-request-id"), v);
    }
    Ok(res)
}
