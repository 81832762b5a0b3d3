//! A service's page: the service as the directory registered it (with the
//! services it depends on, linked), and what watches it (SPEC §12) — its probes (health, the last check's time,
//! latency, error and certificate days left) and its heartbeats (status, the
//! run expected next, the last ping).
//!
//! Everything is read through the API's handlers in-process as the reader,
//! so the page shows what the API answers them. Under `?as_of=` the service,
//! its probes and its heartbeats are folded from the events recorded by
//! then; the workers' live figures (last check, next run) are of now, so
//! they are left out.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use opsledger_api::auth::Caller;
use opsledger_api::common::AsOfQuery;
use opsledger_api::problem::ApiError;
use opsledger_api::AppState;
use opsledger_domain::access::Actor;
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::session::reader;
use crate::view;

/// The most probes and heartbeats a page lists (the API's page length).
const WATCHERS_SHOWN_MAX: u32 = 200;

/// A probe as the page shows it.
#[derive(Debug, Default, Serialize)]
struct ProbeRow {
    name: String,
    target: String,
    health: String,
    interval_s: String,
    checked_at: Option<String>,
    latency_ms: String,
    error: String,
    tls_days_left: String,
    changed_at: Option<String>,
}

/// A heartbeat as the page shows it.
#[derive(Debug, Default, Serialize)]
struct HeartbeatRow {
    name: String,
    schedule: String,
    status: String,
    expected_by: Option<String>,
    last_ping: String,
    last_ping_at: Option<String>,
    changed_at: Option<String>,
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

fn time(v: &Value) -> Option<String> {
    v.as_str().map(str::to_owned)
}

/// When the record last changed health or status: its newest transition.
fn last_transition(item: &Value) -> Option<String> {
    item["transitions"]
        .as_array()
        .and_then(|t| t.last())
        .and_then(|t| time(&t["recorded_at"]))
}

fn probe_row(item: &Value) -> ProbeRow {
    let check = &item["check"];
    let target = match check["kind"].as_str() {
        Some("tcp") => format!("tcp {}:{}", text(&check["host"]), text(&check["port"])),
        _ => text(&check["url"]),
    };
    let last = &item["run"]["last_result"];
    ProbeRow {
        name: text(&item["name"]),
        target,
        health: text(&item["health"]),
        interval_s: text(&item["interval_s"]),
        checked_at: time(&last["at"]),
        latency_ms: text(&last["latency_ms"]),
        error: text(&last["error"]),
        tls_days_left: text(&last["tls_days_left"]),
        changed_at: last_transition(item),
    }
}

fn schedule(s: &Value) -> String {
    match s["kind"].as_str() {
        Some("cron") => format!("{} ({})", text(&s["expression"]), text(&s["time_zone"])),
        _ => format!("every {} s", text(&s["period_s"])),
    }
}

fn heartbeat_row(item: &Value) -> HeartbeatRow {
    let ping = &item["run"]["last_ping"];
    let last_ping = match (ping["kind"].as_str(), ping["exit_code"].as_i64()) {
        (None, _) => String::new(),
        (Some(kind), Some(code)) => format!("{kind} (exit {code})"),
        (Some(kind), None) => kind.to_owned(),
    };
    HeartbeatRow {
        name: text(&item["name"]),
        schedule: schedule(&item["schedule"]),
        status: text(&item["status"]),
        expected_by: time(&item["run"]["expected_by"]),
        last_ping,
        last_ping_at: time(&item["run"]["last_ping_at"]),
        changed_at: last_transition(item),
    }
}

/// The ids of a list page's items.
fn ids(page: &Value) -> Vec<Uuid> {
    page["items"]
        .as_array()
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .filter_map(|i| i["id"].as_str().and_then(|s| s.parse().ok()))
        .collect()
}

/// The service's probes: now, each with its workers' figures (one read of
/// each, as `GET /api/v1/probes/{id}` answers); or folded as they stood at
/// `as_of`, those removed by then left out.
async fn probes(
    state: &web::Data<AppState>,
    actor: &Actor,
    service: Uuid,
    as_of: Option<DateTime<Utc>>,
) -> Result<Vec<ProbeRow>, ApiError> {
    use opsledger_api::probes::{probe_get, probe_list, ProbeListQuery};
    let page = crate::answered(
        probe_list(
            state.clone(),
            Caller(actor.clone()),
            web::Query(ProbeListQuery {
                service_id: Some(service),
                include_removed: Some(as_of.is_some()),
                before: None,
                limit: Some(WATCHERS_SHOWN_MAX),
            }),
        )
        .await,
    )
    .await?;
    let mut rows = Vec::new();
    match as_of {
        Some(at) => {
            let states = opsledger_app::history::states_at::<opsledger_domain::probe::Probe>(
                state.ledger(),
                actor.tenant_id,
                &ids(&page),
                at,
            )
            .await?;
            for (_, probe, _) in states.into_iter().filter(|(_, p, _)| !p.removed) {
                rows.push(probe_row(&serde_json::to_value(probe).unwrap_or_default()));
            }
        }
        None => {
            for id in ids(&page) {
                let got = crate::answered(
                    probe_get(state.clone(), Caller(actor.clone()), web::Path::from(id)).await,
                )
                .await;
                match got {
                    Ok(item) => rows.push(probe_row(&item)),
                    // Removed since it was listed.
                    Err(ApiError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(rows)
}

/// The service's heartbeats, as `probes` reads its probes.
async fn heartbeats(
    state: &web::Data<AppState>,
    actor: &Actor,
    service: Uuid,
    as_of: Option<DateTime<Utc>>,
) -> Result<Vec<HeartbeatRow>, ApiError> {
    use opsledger_api::heartbeats::{heartbeat_get, heartbeat_list, HeartbeatListQuery};
    let page = crate::answered(
        heartbeat_list(
            state.clone(),
            Caller(actor.clone()),
            web::Query(HeartbeatListQuery {
                service_id: Some(service),
                include_removed: Some(as_of.is_some()),
                before: None,
                limit: Some(WATCHERS_SHOWN_MAX),
            }),
        )
        .await,
    )
    .await?;
    let mut rows = Vec::new();
    match as_of {
        Some(at) => {
            let states =
                opsledger_app::history::states_at::<opsledger_domain::heartbeat::Heartbeat>(
                    state.ledger(),
                    actor.tenant_id,
                    &ids(&page),
                    at,
                )
                .await?;
            for (_, hb, _) in states.into_iter().filter(|(_, h, _)| !h.removed) {
                rows.push(heartbeat_row(&serde_json::to_value(hb).unwrap_or_default()));
            }
        }
        None => {
            for id in ids(&page) {
                let got = crate::answered(
                    heartbeat_get(state.clone(), Caller(actor.clone()), web::Path::from(id)).await,
                )
                .await;
                match got {
                    Ok(item) => rows.push(heartbeat_row(&item)),
                    Err(ApiError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(rows)
}

pub async fn page(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    query: web::Query<std::collections::HashMap<String, String>>,
) -> HttpResponse {
    let actor = match reader(&req, crate::STAFF, "your roles do not read this") {
        Ok(a) => a,
        Err(turned) => return turned.page(&req),
    };
    let Ok(id) = id.parse::<Uuid>() else {
        return view::not_found(&req);
    };
    let as_of = match view::instant(query.get("as_of").map(String::as_str)) {
        Ok(at) => at,
        Err(why) => return view::bad_request(&req, &why),
    };
    let service = crate::answered(
        opsledger_api::directory::service_get(
            state.clone(),
            Caller(actor.clone()),
            web::Path::from(id),
            web::Query(AsOfQuery { as_of }),
        )
        .await,
    )
    .await;
    let service = match service {
        Ok(s) => s,
        Err(e) => return view::api_error(&req, e),
    };
    let (probes, heartbeats) = match tokio::try_join!(
        probes(&state, &actor, id, as_of),
        heartbeats(&state, &actor, id, as_of)
    ) {
        Ok(both) => both,
        Err(e) => return view::api_error(&req, e),
    };
    // Its parents by name, each read as the reader may see it (a parent
    // gone from their view is left out).
    let mut parents = Vec::new();
    let parent_ids: Vec<Uuid> = service["depends_on"]
        .as_array()
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .filter_map(|v| v.as_str()?.parse().ok())
        .collect();
    for parent in parent_ids {
        let got = crate::answered(
            opsledger_api::directory::service_get(
                state.clone(),
                Caller(actor.clone()),
                web::Path::from(parent),
                web::Query(AsOfQuery { as_of }),
            )
            .await,
        )
        .await;
        if let Ok(p) = got {
            parents.push((parent.to_string(), text(&p["name"])));
        }
    }
    let components: Vec<String> = service["components"]
        .as_array()
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .map(|c| format!("{} ({})", text(&c["name"]), text(&c["kind"])))
        .collect();
    view::page(
        &req,
        "service.html",
        minijinja::context! {
            title => text(&service["name"]),
            sla_target_pct => text(&service["sla_target_pct"]),
            notice_period_h => text(&service["notice_period_h"]),
            components => components,
            parents => parents,
            probes => probes,
            heartbeats => heartbeats,
            as_of => as_of,
        },
    )
}
