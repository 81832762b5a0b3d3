//! Reports (SPEC §6): `GET /api/v1/reports/downtime`.
//!
//! Downtime per service over a period, from the downtime read model (impact
//! segments) and the windows the change read model keeps: minutes of
//! outage, partial outage and degradation, each planned and unplanned, as
//! `domain::impact::sweep` counts them, with the intervals behind them.

use std::collections::HashMap;

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Duration, Utc};
use opsledger_domain::access::{ClientScope, Role};
use opsledger_domain::impact::{self, ImpactLevel, Segment};
use opsledger_store::directory::{self, ServiceRow};
use opsledger_store::downtime::{self, ImpactEventRef, SegmentRow};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use crate::auth::Caller;
use crate::problem::ApiError;
use crate::AppState;

/// Staff and auditors read any service's report; a client its own.
const REPORT_READERS: &[Role] = &[
    Role::Operator,
    Role::Maintainer,
    Role::Approver,
    Role::Auditor,
    Role::Admin,
    Role::Client,
];

/// A report covers at most this much: a year and its leap day, with room
/// for a period that starts and ends in different time zones.
const REPORT_SPAN_MAX_DAYS: i64 = 400;

/// The definition the downtime figures follow (SPEC §6). A change to how
/// they are counted, or to the weights, is a new version.
pub const DOWNTIME_DEFINITION: &str = "downtime/v1";
/// A minute of partial outage counts as this much of an outage in weighted
/// figures; degraded time counts nothing (the weights of `downtime/v1`).
pub const PARTIAL_WEIGHT: f64 = 0.3;
pub const DEGRADED_WEIGHT: f64 = 0.0;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DowntimeParams {
    /// One service…
    pub service: Option<Uuid>,
    /// …or every service of one client.
    pub client: Option<Uuid>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// With the events (log positions) behind each incident's intervals.
    #[serde(default)]
    pub drilldown: bool,
}

#[derive(Debug, Serialize)]
struct Planned {
    unplanned: f64,
    planned: f64,
}

#[derive(Debug, Serialize)]
struct Interval {
    incident_id: Uuid,
    level: ImpactLevel,
    start: DateTime<Utc>,
    /// `null` while the impact lasts (counted up to the period's end or now).
    end: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize)]
struct PlannedInterval {
    window_id: Uuid,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
}

#[derive(Debug, Serialize)]
struct ServiceDowntime {
    service_id: Uuid,
    name: String,
    client_id: Uuid,
    /// The period's length in minutes.
    period_minutes: f64,
    /// Per level, planned and unplanned; each instant once, at its worst level.
    minutes: HashMap<&'static str, Planned>,
    /// Unplanned outage plus the weighted unplanned partial outage.
    weighted_unplanned_minutes: f64,
    /// The impact segments overlapping the period, as recorded.
    intervals: Vec<Interval>,
    /// The planned time of the service's announced windows in the period.
    planned: Vec<PlannedInterval>,
    /// With `drilldown=true`: the events that shaped each incident's impact.
    #[serde(skip_serializing_if = "Option::is_none")]
    events: Option<HashMap<Uuid, Vec<ImpactEventRef>>>,
}

/// Checks a report period: `from` before `to`, at most a bounded span.
pub(crate) fn checked_period(
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<(DateTime<Utc>, DateTime<Utc>), ApiError> {
    if to <= from {
        return Err(ApiError::BadRequest("to must be after from".into()));
    }
    if to - from > Duration::days(REPORT_SPAN_MAX_DAYS) {
        return Err(ApiError::BadRequest(format!(
            "a report covers at most {REPORT_SPAN_MAX_DAYS} days"
        )));
    }
    Ok((from, to))
}

/// The services a report may cover for this caller: one service, or one
/// client's; another client's are 404, as if they did not exist.
pub(crate) async fn services_in_scope(
    state: &AppState,
    caller: &opsledger_domain::access::Actor,
    service: Option<Uuid>,
    client: Option<Uuid>,
) -> Result<Vec<ServiceRow>, ApiError> {
    let rows = match (service, client) {
        (Some(_), Some(_)) | (None, None) => {
            return Err(ApiError::BadRequest(
                "name exactly one of service and client".into(),
            ))
        }
        (s, c) => directory::report_services(&state.pool, caller.tenant_id, s, c).await?,
    };
    let visible: Vec<ServiceRow> = match caller.client_scope() {
        ClientScope::All => rows,
        ClientScope::Only(own) => rows.into_iter().filter(|r| r.client_id == own).collect(),
        ClientScope::Nothing => vec![],
    };
    let exists = match (service, client) {
        (Some(_), _) => !visible.is_empty(),
        // A client with no services yet is still a client of the caller's.
        (_, Some(c)) => {
            let allowed = match caller.client_scope() {
                ClientScope::All => true,
                ClientScope::Only(own) => own == c,
                ClientScope::Nothing => false,
            };
            allowed && (!visible.is_empty() || client_exists(state, caller.tenant_id, c).await?)
        }
        _ => false,
    };
    if !exists {
        return Err(ApiError::NotFound(match (service, client) {
            (Some(s), _) => format!("no service {s}"),
            (_, Some(c)) => format!("no client {c}"),
            _ => "nothing to report on".into(),
        }));
    }
    Ok(visible)
}

async fn client_exists(state: &AppState, tenant: Uuid, client: Uuid) -> Result<bool, ApiError> {
    let events = crate::common::stream_events(
        state,
        tenant,
        &opsledger_domain::directory::client_stream(client),
        None,
    )
    .await?;
    Ok(!events.is_empty())
}

pub async fn report_downtime(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<DowntimeParams>,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.require(REPORT_READERS)?;
    state.tenants.require(&state.pool, actor.tenant_id).await?;
    let q = query.into_inner();
    let (from, to) = checked_period(q.from, q.to)?;
    let services = services_in_scope(&state, actor, q.service, q.client).await?;
    let now = Utc::now();
    let ids: Vec<Uuid> = services.iter().map(|s| s.id).collect();
    let client = state
        .pool
        .get()
        .await
        .map_err(opsledger_store::StoreError::from)?;
    let segments = downtime::segments(&client, actor.tenant_id, &ids, from, to).await?;
    let windows = downtime::windows(&client, actor.tenant_id, &ids).await?;
    let events = if q.drilldown {
        let mut incidents: Vec<Uuid> = segments.iter().map(|s| s.incident_id).collect();
        incidents.sort();
        incidents.dedup();
        Some(downtime::impact_events(&client, actor.tenant_id, &incidents).await?)
    } else {
        None
    };
    let mut by_service: HashMap<Uuid, Vec<&SegmentRow>> = HashMap::new();
    for s in &segments {
        by_service.entry(s.service_id).or_default().push(s);
    }
    let report: Vec<ServiceDowntime> = services
        .iter()
        .map(|service| {
            let rows = by_service.remove(&service.id).unwrap_or_default();
            let planned: Vec<PlannedInterval> = windows
                .iter()
                .filter(|w| w.service_ids.contains(&service.id))
                .flat_map(|w| {
                    w.planned(from, to)
                        .into_iter()
                        .map(|(start, end)| PlannedInterval {
                            window_id: w.id,
                            start,
                            end,
                        })
                })
                .collect();
            let spans: Vec<Segment> = rows
                .iter()
                .map(|r| Segment {
                    start: r.start,
                    end: r.end,
                    level: r.level,
                })
                .collect();
            let plan: Vec<_> = planned.iter().map(|p| (p.start, p.end)).collect();
            let buckets = impact::sweep(&spans, &plan, from, to, now);
            let minutes = ImpactLevel::ALL
                .into_iter()
                .map(|l| {
                    (
                        l.as_str(),
                        Planned {
                            unplanned: buckets.minutes(l, false),
                            planned: buckets.minutes(l, true),
                        },
                    )
                })
                .collect();
            let weighted = buckets.minutes(ImpactLevel::Outage, false)
                + PARTIAL_WEIGHT * buckets.minutes(ImpactLevel::Partial, false)
                + DEGRADED_WEIGHT * buckets.minutes(ImpactLevel::Degraded, false);
            let events = events.as_ref().map(|all| {
                rows.iter()
                    .filter_map(|r| all.get(&r.incident_id).map(|e| (r.incident_id, e.clone())))
                    .collect()
            });
            ServiceDowntime {
                service_id: service.id,
                name: service.name.clone(),
                client_id: service.client_id,
                period_minutes: (to - from).num_seconds() as f64 / 60.0,
                minutes,
                weighted_unplanned_minutes: weighted,
                intervals: rows
                    .iter()
                    .map(|r| Interval {
                        incident_id: r.incident_id,
                        level: r.level,
                        start: r.start,
                        end: r.end,
                    })
                    .collect(),
                planned,
                events,
            }
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "definition": {
            "name": DOWNTIME_DEFINITION,
            "partial_weight": PARTIAL_WEIGHT,
            "degraded_weight": DEGRADED_WEIGHT,
        },
        "from": from,
        "to": to,
        "as_of": now,
        "services": report,
    })))
}
