//! Health, readiness, metrics and the OpenAPI document.

use std::fmt::Write as _;

use actix_web::{web, HttpResponse};

use crate::problem::ApiError;
use crate::AppState;

/// The contract as generated from the route table (`opsledger openapi`) and
/// committed under `openapi/`; a test fails when the two differ.
pub const OPENAPI_JSON: &str = include_str!("../../../openapi/openapi.json");

/// Alive: the process answers. Says nothing about the database on purpose,
/// so an orchestrator does not restart us while PostgreSQL restarts.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok" })
}

/// The process answers.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: &'static str,
}

/// Whether this instance takes requests, and the read models that lag.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Ready {
    /// `ready`, or `degraded` when a projection stalls or fails.
    pub status: &'static str,
    pub projections: Vec<ProjectionTrouble>,
}

/// A read model that stalls or fails.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ProjectionTrouble {
    pub name: String,
    /// Its oldest unapplied event is older than the stall bound.
    pub stalled: bool,
    pub lag_seconds: f64,
    pub behind_events: i64,
    /// The event its last batch failed on, since when, and the error.
    pub failing: Option<opsledger_store::projection::Stuck>,
}

/// Ready: the database answers and the schema is migrated. Also says
/// whether every read model keeps up: a projection that has not applied its
/// oldest event for longer than `projection_stall_after`, or that failed on
/// an event, is listed with the event and the error, and the status is
/// `degraded`. That answer is still 200: the instance takes commands and
/// alerts, and a readiness failure would take every instance out of a load
/// balancer for one read model (the stall is the cluster's, not this
/// instance's). Alert on `opsledger_projection_stalled` instead.
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    opsledger_store::projection::reachable(&state.pool)
        .await
        .map_err(ApiError::Unavailable)?;
    let health = projection_health(&state).await?;
    let troubled: Vec<_> = health
        .iter()
        .filter(|h| h.stalled || h.stuck.is_some())
        .map(|h| ProjectionTrouble {
            name: h.lag.name.clone(),
            stalled: h.stalled,
            lag_seconds: h.lag.lag_seconds,
            behind_events: h.lag.behind_events,
            failing: h.stuck.clone(),
        })
        .collect();
    let status = if troubled.is_empty() {
        "ready"
    } else {
        "degraded"
    };
    Ok(HttpResponse::Ok().json(Ready {
        status,
        projections: troubled,
    }))
}

/// What `/readyz` and `/metrics` say of one followed projection.
struct Followed {
    lag: opsledger_store::projection::Lag,
    stalled: bool,
    stuck: Option<opsledger_store::projection::Stuck>,
}

async fn projection_health(state: &AppState) -> Result<Vec<Followed>, ApiError> {
    let mut stuck = opsledger_store::projection::stuck(&state.pool).await?;
    let stall_after = state.projection_stall_after.as_secs_f64();
    let mut health = Vec::new();
    // Inline projections are kept by the appends themselves: never behind.
    for p in state.projections.iter().filter(|p| !p.inline()) {
        let lag = opsledger_store::projection::lag(&state.pool, p.as_ref()).await?;
        let at = stuck.iter().position(|s| s.name == lag.name);
        health.push(Followed {
            stalled: lag.behind_events > 0 && lag.lag_seconds > stall_after,
            stuck: at.map(|i| stuck.swap_remove(i)),
            lag,
        });
    }
    Ok(health)
}

/// A Prometheus label value: backslash, quote and line feed escaped, and a
/// carriage return (which the format cannot escape) made a space.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
        .replace('\r', " ")
}

pub async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let mut out = String::new();
    out.push_str("# HELP opsledger_projection_lag_seconds Age of the oldest event a projection has not applied yet.\n");
    out.push_str("# TYPE opsledger_projection_lag_seconds gauge\n");
    let mut behind = String::new();
    behind.push_str("# HELP opsledger_projection_behind_events Committed events a projection has not applied yet.\n");
    behind.push_str("# TYPE opsledger_projection_behind_events gauge\n");
    let mut stalled = String::new();
    stalled.push_str(&format!("# HELP opsledger_projection_stalled 1 when a projection has not applied its oldest event for over {} s (OPSLEDGER_PROJECTION_STALL_S).\n", state.projection_stall_after.as_secs()));
    stalled.push_str("# TYPE opsledger_projection_stalled gauge\n");
    let mut failing = String::new();
    failing.push_str("# HELP opsledger_projection_failing_seconds How long a projection has failed on the event its labels name (see /readyz), by event and error.\n");
    failing.push_str("# TYPE opsledger_projection_failing_seconds gauge\n");
    let now = chrono::Utc::now();
    for h in projection_health(&state).await? {
        let lag = &h.lag;
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
        let _ = writeln!(
            stalled,
            "opsledger_projection_stalled{{projection=\"{}\"}} {}",
            lag.name,
            u8::from(h.stalled)
        );
        if let Some(s) = &h.stuck {
            let _ = writeln!(
                failing,
                "opsledger_projection_failing_seconds{{projection=\"{}\",position=\"{}\",event=\"{}\",error=\"{}\"}} {}",
                lag.name,
                s.position,
                label(&s.event),
                label(&s.error),
                (now - s.since).num_milliseconds().max(0) as f64 / 1000.0
            );
        }
    }
    out.push_str(&behind);
    out.push_str(&stalled);
    out.push_str(&failing);
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
