//! Reports (SPEC §6): `GET /api/v1/reports/downtime` and `/metrics`.
//!
//! Downtime per service over a period, from the downtime read model (impact
//! segments) and the windows the change read model keeps: minutes of
//! outage, partial outage and degradation, each planned and unplanned, as
//! `domain::impact::sweep` counts them, with the intervals behind them.
//! Metrics add the incidents and changes read models, and compute every
//! figure by a named, versioned definition (`domain::metrics`).

use std::collections::HashMap;
use std::sync::Arc;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Duration, Utc};
use opsledger_domain::access::{ClientScope, Role};
use opsledger_domain::impact::{self};
use opsledger_domain::monthly::{self};
use opsledger_domain::period::Month;
use opsledger_store::directory::{self, ServiceRow};
use opsledger_store::downtime::ImpactEventRef;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::auth::Caller;
use crate::problem::ApiError;
use crate::AppState;
use opsledger_app::reports::{
    client_exists, compute, events_of, intervals, minutes_by_level, monthly_report, spans, zones,
    Gathered, Interval, Planned, PlannedInterval, SPLIT_READS_FROM,
};

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

use opsledger_domain::metrics::{self, DEGRADED_WEIGHT, PARTIAL_WEIGHT};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DowntimeParams {
    /// One service…
    pub service: Option<Uuid>,
    /// …or every service of one client.
    pub client: Option<Uuid>,
    /// The period's start (RFC 3339; URL-encode a `+` offset).
    pub from: DateTime<Utc>,
    /// The period's end, exclusive: after `from`, and at most 400 days after it (otherwise 400).
    pub to: DateTime<Utc>,
    /// With the events (log positions) behind each incident's intervals.
    #[serde(default)]
    pub drilldown: bool,
}

/// The downtime report. `downtime_report` writes it in pieces rather than
/// through this type (a year of 500 services is tens of megabytes); this is
/// its shape, for the document, field for field.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DowntimeReport {
    pub definition: DowntimeDefinition,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub as_of: DateTime<Utc>,
    pub services: Vec<ServiceDowntime>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ServiceDowntime {
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
        (Some(_), Some(_)) => {
            return Err(ApiError::BadRequest(
                "name at most one of service and client".into(),
            ))
        }
        // Neither: every service the caller may see (a client user's own).
        (None, None) => {
            let own = match caller.client_scope() {
                ClientScope::All => None,
                ClientScope::Only(own) => Some(own),
                ClientScope::Nothing => return Ok(vec![]),
            };
            return Ok(directory::report_services(&state.pool, caller.tenant_id, None, own).await?);
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
            allowed
                && (!visible.is_empty()
                    || client_exists(state.ledger(), caller.tenant_id, c).await?)
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

/// What a report request asks about: its period checked, the services the
/// caller may see, and what the read models hold for them.
async fn gathered(
    state: &AppState,
    actor: &opsledger_domain::access::Actor,
    q: &DowntimeParams,
) -> Result<(Gathered, DateTime<Utc>, DateTime<Utc>), ApiError> {
    let (from, to) = checked_period(q.from, q.to)?;
    let services = services_in_scope(state, actor, q.service, q.client).await?;
    let g = Gathered::read(state.ledger(), actor.tenant_id, services, from, to).await?;
    Ok((g, from, to))
}

pub async fn report_downtime(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<DowntimeParams>,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.require(REPORT_READERS)?;
    state.tenants.require(&state.pool, actor.tenant_id).await?;
    let q = query.into_inner();
    let (g, from, to) = gathered(&state, actor, &q).await?;
    let events = g
        .drilldown(state.ledger(), actor.tenant_id, q.drilldown)
        .await?;
    let g = Arc::new(g);
    let events = Arc::new(events);
    let count = g.services.len();
    // Many services are computed and written in two halves, side by side on
    // the blocking pool: a year of 500 services is tens of milliseconds of
    // work on each half, which would otherwise run one after the other on
    // this worker, and hold up the other requests it serves.
    let parts = if count >= SPLIT_READS_FROM {
        let halves = [0..count / 2, count / 2..count].map(|range| {
            let (g, events) = (Arc::clone(&g), Arc::clone(&events));
            on_blocking_pool(move || {
                write_services(&g, &g.services[range], from, to, events.as_ref().as_ref())
            })
        });
        futures_util::future::try_join_all(halves).await?
    } else {
        vec![write_services(
            &g,
            &g.services,
            from,
            to,
            events.as_ref().as_ref(),
        )]
    };
    let definition = DowntimeDefinition {
        name: metrics::DOWNTIME.name,
        partial_weight: PARTIAL_WEIGHT,
        degraded_weight: DEGRADED_WEIGHT,
    };
    let body = downtime_report(&definition, [from, to, g.now], parts)
        .map_err(|e| ApiError::Internal(Box::new(e)))?;
    Ok(body.into_response())
}

/// The downtime report's object, written around its services' pieces:
/// `definition`, `from`, `to`, `as_of`, then `services`, the elements of
/// every part in order.
fn downtime_report(
    definition: &DowntimeDefinition,
    [from, to, as_of]: [DateTime<Utc>; 3],
    parts: Vec<Result<Pieces, serde_json::Error>>,
) -> Result<Pieces, serde_json::Error> {
    let mut body = Pieces::with_capacity(0);
    body.push(b"{\"definition\":");
    serde_json::to_writer(&mut body, definition)?;
    for (key, t) in [
        (&b",\"from\":"[..], from),
        (b",\"to\":", to),
        (b",\"as_of\":", as_of),
    ] {
        body.push(key);
        serde_json::to_writer(&mut body, &t)?;
    }
    body.push(b",\"services\":[");
    let mut first = true;
    for part in parts {
        let part = part?;
        if part.len == 0 {
            continue;
        }
        if !first {
            body.push(b",");
        }
        first = false;
        body.append(part);
    }
    body.push(b"]}");
    Ok(body)
}

/// Runs CPU-bound work on a thread of the blocking pool; a panic there
/// goes on in the caller, as if the work had run in place.
async fn on_blocking_pool<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    match actix_web::rt::task::spawn_blocking(work).await {
        Ok(done) => Ok(done),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Cancelled: the server is shutting down.
        Err(e) => Err(ApiError::Internal(Box::new(e))),
    }
}

/// Each service's downtime over `[from, to)`, as the elements of a JSON
/// array (comma-separated, without the brackets).
fn write_services(
    g: &Gathered,
    services: &[ServiceRow],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    events: Option<&HashMap<Uuid, Vec<ImpactEventRef>>>,
) -> Result<Pieces, serde_json::Error> {
    let size = services
        .iter()
        .map(|s| {
            JSON_PER_SERVICE
                + JSON_PER_INTERVAL
                    * (g.segments_of(s.id).len() + g.windows_of.get(&s.id).map_or(0, Vec::len))
        })
        .sum();
    let mut out = Pieces::with_capacity(size);
    for (i, service) in services.iter().enumerate() {
        if i > 0 {
            out.push(b",");
        }
        let rows = g.segments_of(service.id);
        let planned = g.planned(service.id, from, to);
        let figures = figures_of(g, service, &planned, from, to);
        let downtime = ServiceDowntime {
            service_id: service.id,
            name: service.name.clone(),
            client_id: service.client_id,
            period_minutes: figures.period_minutes,
            minutes: figures.minutes,
            weighted_unplanned_minutes: figures.weighted_unplanned_minutes,
            intervals: intervals(rows),
            planned,
            events: events.map(|all| events_of(rows, all)),
        };
        serde_json::to_writer(&mut out, &downtime)?;
    }
    Ok(out)
}

/// A service's downtime figures over a period: the downtime report's, without
/// the intervals and windows behind them (what the console's report page
/// shows).
#[derive(Debug, Serialize)]
pub struct Figures {
    pub service_id: Uuid,
    pub name: String,
    pub client_id: Uuid,
    pub period_minutes: f64,
    /// Per level, planned and unplanned.
    pub minutes: HashMap<&'static str, Planned>,
    pub weighted_unplanned_minutes: f64,
}

fn figures_of(
    g: &Gathered,
    service: &ServiceRow,
    planned: &[PlannedInterval],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Figures {
    let plan: Vec<_> = planned.iter().map(|p| (p.start, p.end)).collect();
    let buckets = impact::sweep(&spans(g.segments_of(service.id)), &plan, from, to, g.now);
    Figures {
        service_id: service.id,
        name: service.name.clone(),
        client_id: service.client_id,
        period_minutes: (to - from).num_seconds() as f64 / 60.0,
        minutes: minutes_by_level(&buckets),
        weighted_unplanned_minutes: metrics::weighted_unplanned(&buckets),
    }
}

/// The downtime report's figures for `caller`, service by service, as
/// `report_downtime` computes them (same scope, same period checks).
pub async fn downtime_figures(
    state: &AppState,
    caller: &Caller,
    q: &DowntimeParams,
) -> Result<Vec<Figures>, ApiError> {
    let actor = caller.require(REPORT_READERS)?;
    state.tenants.require(&state.pool, actor.tenant_id).await?;
    let (g, from, to) = gathered(state, actor, q).await?;
    Ok(g.services
        .iter()
        .map(|s| figures_of(&g, s, &g.planned(s.id, from, to), from, to))
        .collect())
}

/// About the JSON size of a service's figures, and of an interval.
const JSON_PER_SERVICE: usize = 640;
const JSON_PER_INTERVAL: usize = 150;

/// A JSON answer written in pieces of `CHUNK` bytes, sent one after another
/// with its whole length announced. A year of 500 services is some 19 MB:
/// as one buffer, the server copied it whole into its write buffer, and both
/// were fresh memory the kernel zeroed for every request (a fifth of the
/// report's CPU in `perf`); pieces of this size are reused. Pieces written
/// on different threads are put together without copying.
struct Pieces {
    done: Vec<web::Bytes>,
    open: Vec<u8>,
    len: usize,
}

const CHUNK: usize = 64 * 1024;
/// Room past a full piece for the write that fills it, so it is not moved.
const SLACK: usize = 4096;

impl Pieces {
    /// For about `size` bytes.
    fn with_capacity(size: usize) -> Pieces {
        Pieces {
            done: Vec::with_capacity(size / CHUNK + 1),
            open: Vec::new(),
            len: 0,
        }
    }

    fn seal(&mut self) {
        if !self.open.is_empty() {
            let full = std::mem::take(&mut self.open);
            self.done.push(web::Bytes::from(full));
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        if self.open.capacity() == 0 {
            self.open.reserve_exact(CHUNK + SLACK);
        }
        self.open.extend_from_slice(bytes);
        self.len += bytes.len();
        if self.open.len() >= CHUNK {
            self.seal();
        }
    }

    /// `other`'s bytes after these.
    fn append(&mut self, mut other: Pieces) {
        self.seal();
        other.seal();
        self.done.append(&mut other.done);
        self.len += other.len;
    }

    fn into_response(mut self) -> HttpResponse {
        self.seal();
        let len = self.len as u64;
        let pieces = futures_util::stream::iter(self.done.into_iter().map(Ok::<_, std::io::Error>));
        HttpResponse::Ok()
            .insert_header(header::ContentType::json())
            .body(actix_web::body::SizedStream::new(len, pieces))
    }
}

impl std::io::Write for Pieces {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.push(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DowntimeDefinition {
    name: &'static str,
    partial_weight: f64,
    degraded_weight: f64,
}

/// `GET /reports/metrics`: availability (three denominators), SLA, error
/// budget, MTTA, MTTR, MTBF, change failure rate, noise ratio and incident
/// counts per service, each naming its definition; the definitions' texts
/// come with them.
pub async fn report_metrics(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<DowntimeParams>,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.require(REPORT_READERS)?;
    state.tenants.require(&state.pool, actor.tenant_id).await?;
    let q = query.into_inner();
    let (g, from, to) = gathered(&state, actor, &q).await?;
    let zones = zones(state.ledger(), actor.tenant_id, &g.services).await?;
    let c = compute(state.ledger(), actor.tenant_id, &g, &zones, from, to).await?;
    let events = g
        .drilldown(state.ledger(), actor.tenant_id, q.drilldown)
        .await?;
    let services = c
        .per_service
        .into_iter()
        .map(|(n, metrics, planned)| {
            let service = &g.services[n];
            let rows = g.segments_of(service.id);
            ServiceMetricsView {
                service_id: service.id,
                name: service.name.clone(),
                client_id: service.client_id,
                time_zone: zones.get(&service.client_id).map(|z| z.as_str().to_owned()),
                sla_hours: service.sla_hours.clone(),
                metrics,
                drilldown: events.as_ref().map(|all| Drilldown {
                    intervals: intervals(rows),
                    planned,
                    events: events_of(rows, all),
                }),
            }
        })
        .collect();
    Ok(HttpResponse::Ok().json(MetricsReport {
        definitions: metrics::DEFINITIONS,
        from,
        to,
        as_of: g.now,
        services,
        noise_by_source: c.noise_by_source,
    }))
}

/// The metrics of every service in scope over a period, each naming its
/// definition.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MetricsReport {
    /// What each figure means and how it is computed.
    pub definitions: &'static [metrics::Definition],
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// The instant the read models were read at.
    pub as_of: DateTime<Utc>,
    pub services: Vec<ServiceMetricsView>,
    /// Per alert source, the share of alerts that opened no incident.
    pub noise_by_source: std::collections::BTreeMap<String, metrics::Ratio>,
}

/// One service's figures.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ServiceMetricsView {
    pub service_id: Uuid,
    pub name: String,
    pub client_id: Uuid,
    /// The client's time zone, which its SLA hours are in.
    pub time_zone: Option<String>,
    /// The hours the SLA commits to; all when absent.
    pub sla_hours: Option<Value>,
    pub metrics: metrics::ServiceMetrics,
    /// With `drilldown=true`: what the figures are made of.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drilldown: Option<Drilldown>,
}

/// The impact a service's figures are made of.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Drilldown {
    pub intervals: Vec<Interval>,
    pub planned: Vec<PlannedInterval>,
    pub events: HashMap<Uuid, Vec<ImpactEventRef>>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct MonthlyParams {
    /// The client the report is for.
    pub client: Uuid,
    /// `YYYY-MM`, in the client's time zone.
    pub month: String,
    /// `json`, `csv` or `html`: overrides `Accept` (for links in a mail).
    pub format: Option<String>,
}

/// How a report is sent: by `format`, else by `Accept`, else JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    Json,
    Csv,
    Html,
}

fn form(req: &HttpRequest, format: Option<&str>) -> Result<Form, ApiError> {
    match format {
        Some("json") => return Ok(Form::Json),
        Some("csv") => return Ok(Form::Csv),
        Some("html") => return Ok(Form::Html),
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "format must be json, csv or html, not {other:?}"
            )))
        }
        None => {}
    }
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    // The first of the three the client names wins (browsers send
    // text/html first; a script asking for CSV names it).
    let at = |m: &str| accept.find(m);
    let candidates = [
        (at("application/json"), Form::Json),
        (at("text/csv"), Form::Csv),
        (at("text/html"), Form::Html),
    ];
    Ok(candidates
        .into_iter()
        .filter_map(|(i, f)| i.map(|i| (i, f)))
        .min_by_key(|(i, _)| *i)
        .map_or(Form::Json, |(_, f)| f))
}

/// `GET /reports/monthly?client=&month=YYYY-MM`: the monthly client report
/// (SPEC §6) over the client's calendar month in its time zone, as JSON,
/// CSV or an HTML page.
pub async fn report_monthly(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    query: web::Query<MonthlyParams>,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.require(REPORT_READERS)?;
    state.tenants.require(&state.pool, actor.tenant_id).await?;
    let q = query.into_inner();
    let form = form(&req, q.format.as_deref())?;
    let month = Month::parse(&q.month).map_err(ApiError::BadRequest)?;
    let services = services_in_scope(&state, actor, None, Some(q.client)).await?;
    let report = monthly_report(state.ledger(), actor.tenant_id, q.client, month, services).await?;
    Ok(match form {
        Form::Json => HttpResponse::Ok().json(&report),
        Form::Csv => HttpResponse::Ok()
            .content_type("text/csv; charset=utf-8")
            .insert_header((
                header::CONTENT_DISPOSITION,
                format!("inline; filename=\"report-{}.csv\"", report.month),
            ))
            .body(monthly::to_csv(&report)),
        Form::Html => HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .insert_header((
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; img-src data:",
            ))
            .body(monthly::to_html(&report).map_err(|e| ApiError::Internal(e.into()))?),
    })
}
