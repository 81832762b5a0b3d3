//! Health, readiness, metrics and the OpenAPI document.

use actix_web::{web, HttpResponse};

use crate::metrics::{Followed, Scraped};
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

/// The families `api::metrics` describes, read now.
pub async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let projections = projection_health(&state).await?;
    let backlogs = opsledger_store::backlog::backlogs(&state.pool).await?;
    let body = state.metrics.render(&Scraped {
        projections: &projections,
        stall_after: state.projection_stall_after,
        backlogs,
        paths: state.committer.paths(),
        pool: state.pool.status(),
    });
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(body))
}

pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(OPENAPI_JSON)
}
