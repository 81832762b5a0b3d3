//! Structured logs through `tracing`: text for people, JSON
//! (`OPSLEDGER_LOG_FORMAT=json`) for machines; `RUST_LOG` filters. Request
//! latency for `/metrics` (`api::metrics`).

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;
use opsledger_api::AppState;
use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("OPSLEDGER_LOG_FORMAT").is_ok_and(|f| f == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (tests spawn many apps in one process) is harmless.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// One log line per request, with its latency and status.
pub async fn access_log(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let path = req.path().to_owned();
    let res = next.call(req).await?;
    tracing::info!(
        method = %method,
        path = %path,
        status = res.status().as_u16(),
        latency_ms = started.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
    Ok(res)
}

/// Times each request into `opsledger_http_request_duration_seconds`,
/// labelled by its route's template (`/api/v1/incidents/{id}`), never its
/// path: ids in paths would make a series per record. Once routed, the
/// template is a lookup by the matched resource, not a second match.
pub async fn request_metrics(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let answer = next.call(req).await;
    if let Some(state) = state {
        let took = started.elapsed();
        match &answer {
            Ok(res) => state.metrics.observe_request(
                res.request().match_pattern().as_deref(),
                &method,
                res.status(),
                took,
            ),
            // Only an inner middleware fails this way (none of ours does),
            // and the request is gone with the error: no route to name.
            Err(e) => state.metrics.observe_request(
                None,
                &method,
                e.as_response_error().status_code(),
                took,
            ),
        }
    }
    answer
}
