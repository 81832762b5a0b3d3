//! Health, readiness, metrics and the OpenAPI document.

use std::fmt::Write as _;

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::problem::ApiError;
use crate::AppState;

/// The contract, committed under `openapi/` and served as is.
pub const OPENAPI_JSON: &str = include_str!("../../../openapi/openapi.json");

/// Alive: the process answers. Says nothing about the database on purpose,
/// so an orchestrator does not restart us while PostgreSQL restarts.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// Ready: the database answers and the schema is migrated.
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let client = state
        .pool
        .get()
        .await
        .map_err(opsledger_store::StoreError::from)?;
    client
        .query("SELECT 1 FROM projection_checkpoints LIMIT 1", &[])
        .await
        .map_err(|e| ApiError::Unavailable(opsledger_store::StoreError::from(e)))?;
    Ok(HttpResponse::Ok().json(json!({ "status": "ready" })))
}

pub async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let mut out = String::new();
    out.push_str("# HELP opsledger_projection_lag_seconds Age of the oldest event a projection has not applied yet.\n");
    out.push_str("# TYPE opsledger_projection_lag_seconds gauge\n");
    let mut behind = String::new();
    behind.push_str("# HELP opsledger_projection_behind_events Committed events a projection has not applied yet.\n");
    behind.push_str("# TYPE opsledger_projection_behind_events gauge\n");
    // Inline projections are kept by the appends themselves: never behind.
    for p in state.projections.iter().filter(|p| !p.inline()) {
        let lag = opsledger_store::projection::lag(&state.pool, p.as_ref()).await?;
        let _ = writeln!(
            out,
            "opsledger_projection_lag_seconds{{projection=\"{}\"}} {}",
            lag.name, lag.lag_seconds
        );
        let _ = writeln!(
            behind,
            "opsledger_projection_behind_events{{projection=\"{}\"}} {}",
            lag.name, lag.behind_events
        );
    }
    out.push_str(&behind);
    let paths = state.committer.paths();
    out.push_str("# HELP opsledger_append_batches_total Batches committed, by path: predicted (one round trip) or locked (read first).\n");
    out.push_str("# TYPE opsledger_append_batches_total counter\n");
    for (path, n) in [("predicted", &paths.predicted), ("locked", &paths.locked)] {
        let _ = writeln!(
            out,
            "opsledger_append_batches_total{{path=\"{path}\"}} {}",
            n.load(std::sync::atomic::Ordering::Relaxed)
        );
    }
    let status = state.pool.status();
    let _ = writeln!(
        out,
        "# HELP opsledger_db_pool_connections Pooled database connections by state."
    );
    let _ = writeln!(out, "# TYPE opsledger_db_pool_connections gauge");
    let _ = writeln!(
        out,
        "opsledger_db_pool_connections{{state=\"open\"}} {}",
        status.size
    );
    let _ = writeln!(
        out,
        "opsledger_db_pool_connections{{state=\"idle\"}} {}",
        status.available
    );
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(out))
}

pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(OPENAPI_JSON)
}
