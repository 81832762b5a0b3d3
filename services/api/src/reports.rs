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
use opsledger_domain::change::{Change, Relation};
use opsledger_domain::impact::{self, ImpactLevel, Segment};
use opsledger_domain::metrics::{ChangeFacts, IncidentFacts};
use opsledger_domain::monthly::{self, MonthlyReport};
use opsledger_domain::period::{Month, ServiceHours, TimeZoneName};
use opsledger_domain::window::Window;
use opsledger_store::directory::{self, ServiceRow};
use opsledger_store::downtime::{self, ImpactEventRef, IncidentRow, SegmentRow};
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

use opsledger_domain::metrics::{self, DEGRADED_WEIGHT, PARTIAL_WEIGHT};

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
    #[serde(serialize_with = "rfc3339::serialize")]
    start: DateTime<Utc>,
    /// `null` while the impact lasts (counted up to the period's end or now).
    #[serde(serialize_with = "rfc3339::option::serialize")]
    end: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize)]
struct PlannedInterval {
    window_id: Uuid,
    #[serde(serialize_with = "rfc3339::serialize")]
    start: DateTime<Utc>,
    #[serde(serialize_with = "rfc3339::serialize")]
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

/// The segments of some services over a period, on a connection of their own.
async fn read_segments(
    state: &AppState,
    tenant: Uuid,
    services: &[Uuid],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<(Uuid, Vec<SegmentRow>)>, opsledger_store::StoreError> {
    let client = state.pool.get().await?;
    downtime::segments(&client, tenant, services, from, to).await
}

/// From this many services on, a report reads their segments in two halves.
const SPLIT_READS_FROM: usize = 50;

/// What the read models hold for a report on some services over a period.
struct Gathered {
    services: Vec<ServiceRow>,
    segments: HashMap<Uuid, Vec<SegmentRow>>,
    windows: Vec<Window>,
    /// Each service's windows (indexes into `windows`): a tenant's year has
    /// thousands of windows over hundreds of services.
    windows_of: HashMap<Uuid, Vec<usize>>,
    now: DateTime<Utc>,
}

impl Gathered {
    async fn read(
        state: &AppState,
        tenant: Uuid,
        services: Vec<ServiceRow>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Gathered, ApiError> {
        let ids: Vec<Uuid> = services.iter().map(|s| s.id).collect();
        let connection = || async {
            state
                .pool
                .get()
                .await
                .map_err(opsledger_store::StoreError::from)
        };
        // A year of 500 services is some 120,000 segments and thousands of
        // windows. Many services' segments are read in two halves on
        // connections of their own, beside the windows: the database reads
        // one half while this process decodes the other.
        let halves: Vec<&[Uuid]> = if ids.len() >= SPLIT_READS_FROM {
            let (a, b) = ids.split_at(ids.len() / 2);
            vec![a, b]
        } else {
            vec![&ids[..]]
        };
        let windows = async {
            let client = connection().await?;
            downtime::windows(&client, tenant, &ids, from, to).await
        };
        let (parts, windows) = tokio::try_join!(
            futures_util::future::try_join_all(
                halves
                    .into_iter()
                    .map(|part| read_segments(state, tenant, part, from, to))
            ),
            windows
        )?;
        let segments: HashMap<Uuid, Vec<SegmentRow>> = parts.into_iter().flatten().collect();
        let mut windows_of: HashMap<Uuid, Vec<usize>> = HashMap::new();
        for (i, w) in windows.iter().enumerate() {
            for service in &w.service_ids {
                let of = windows_of.entry(*service).or_default();
                // Once per window, as if asked whether it covers the service.
                if of.last() != Some(&i) {
                    of.push(i);
                }
            }
        }
        Ok(Gathered {
            services,
            segments,
            windows,
            windows_of,
            now: Utc::now(),
        })
    }

    fn segments_of(&self, service: Uuid) -> &[SegmentRow] {
        self.segments.get(&service).map_or(&[], Vec::as_slice)
    }

    /// The planned time of the service's announced windows in `[from, to)`.
    fn planned(
        &self,
        service: Uuid,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Vec<PlannedInterval> {
        self.windows_of
            .get(&service)
            .map_or(&[][..], Vec::as_slice)
            .iter()
            .map(|&i| &self.windows[i])
            .flat_map(|w| {
                w.planned(from, to)
                    .into_iter()
                    .map(|(start, end)| PlannedInterval {
                        window_id: w.id,
                        start,
                        end,
                    })
            })
            .collect()
    }

    /// What a report request asks about: its period checked, the services
    /// the caller may see, and what the read models hold for them.
    async fn of_request(
        state: &AppState,
        actor: &opsledger_domain::access::Actor,
        q: &DowntimeParams,
    ) -> Result<(Gathered, DateTime<Utc>, DateTime<Utc>), ApiError> {
        let (from, to) = checked_period(q.from, q.to)?;
        let services = services_in_scope(state, actor, q.service, q.client).await?;
        let g = Gathered::read(state, actor.tenant_id, services, from, to).await?;
        Ok((g, from, to))
    }

    /// With `drilldown`: the events behind each incident's impact.
    async fn drilldown(
        &self,
        state: &AppState,
        tenant: Uuid,
        drilldown: bool,
    ) -> Result<Option<HashMap<Uuid, Vec<ImpactEventRef>>>, ApiError> {
        if !drilldown {
            return Ok(None);
        }
        let mut incidents: Vec<Uuid> = self
            .segments
            .values()
            .flatten()
            .map(|s| s.incident_id)
            .collect();
        incidents.sort();
        incidents.dedup();
        let client = state
            .pool
            .get()
            .await
            .map_err(opsledger_store::StoreError::from)?;
        Ok(Some(
            downtime::impact_events(&client, tenant, &incidents).await?,
        ))
    }
}

fn spans(rows: &[SegmentRow]) -> Vec<Segment> {
    rows.iter()
        .map(|r| Segment {
            start: r.start,
            end: r.end,
            level: r.level,
        })
        .collect()
}

fn events_of(
    rows: &[SegmentRow],
    all: &HashMap<Uuid, Vec<ImpactEventRef>>,
) -> HashMap<Uuid, Vec<ImpactEventRef>> {
    rows.iter()
        .filter_map(|r| all.get(&r.incident_id).map(|e| (r.incident_id, e.clone())))
        .collect()
}

pub async fn report_downtime(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<DowntimeParams>,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.require(REPORT_READERS)?;
    state.tenants.require(&state.pool, actor.tenant_id).await?;
    let q = query.into_inner();
    let (g, from, to) = Gathered::of_request(&state, actor, &q).await?;
    let events = g.drilldown(&state, actor.tenant_id, q.drilldown).await?;
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
        let plan: Vec<_> = planned.iter().map(|p| (p.start, p.end)).collect();
        let buckets = impact::sweep(&spans(rows), &plan, from, to, g.now);
        let downtime = ServiceDowntime {
            service_id: service.id,
            name: service.name.clone(),
            client_id: service.client_id,
            period_minutes: (to - from).num_seconds() as f64 / 60.0,
            minutes: minutes_by_level(&buckets),
            weighted_unplanned_minutes: metrics::weighted_unplanned(&buckets),
            intervals: intervals(rows),
            planned,
            events: events.map(|all| events_of(rows, all)),
        };
        serde_json::to_writer(&mut out, &downtime)?;
    }
    Ok(out)
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

/// RFC 3339 in UTC as chrono's `Serialize` writes it (`Z`, fractional
/// seconds only when there are any), but handed to the serializer as one
/// string: chrono's goes through `fmt` a character at a time, which was a
/// fifth of a year's downtime report.
mod rfc3339 {
    use chrono::{DateTime, Datelike, SecondsFormat, Timelike, Utc};
    use serde::Serializer;

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; 30];
        match write(t, &mut buf) {
            Some(text) => s.serialize_str(text),
            // A leap second or a year past four digits: as chrono writes it.
            None => s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
        }
    }

    /// Written into a buffer on the stack: a year's report has a quarter of a
    /// million instants, and chrono allocates a string for each.
    fn write<'b>(t: &DateTime<Utc>, buf: &'b mut [u8; 30]) -> Option<&'b str> {
        let year = u32::try_from(t.year()).ok().filter(|y| *y <= 9999)?;
        let nanos = t.nanosecond();
        if nanos >= 1_000_000_000 {
            return None;
        }
        // The places of the fraction chrono's `AutoSi` keeps.
        let (fraction, places) = match nanos {
            0 => (0, 0),
            n if n % 1_000_000 == 0 => (n / 1_000_000, 3),
            n if n % 1_000 == 0 => (n / 1_000, 6),
            n => (n, 9),
        };
        let mut n = 0;
        let mut put = |before: Option<u8>, value: u32, digits: u32| {
            if let Some(c) = before {
                buf[n] = c;
                n += 1;
            }
            for i in (0..digits).rev() {
                buf[n] = b'0' + (value / 10u32.pow(i) % 10) as u8;
                n += 1;
            }
        };
        put(None, year, 4);
        put(Some(b'-'), t.month(), 2);
        put(Some(b'-'), t.day(), 2);
        put(Some(b'T'), t.hour(), 2);
        put(Some(b':'), t.minute(), 2);
        put(Some(b':'), t.second(), 2);
        if places > 0 {
            put(Some(b'.'), fraction, places);
        }
        put(Some(b'Z'), 0, 0);
        std::str::from_utf8(&buf[..n]).ok()
    }

    pub mod option {
        use super::*;

        pub fn serialize<S: Serializer>(
            t: &Option<DateTime<Utc>>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => super::serialize(t, s),
                None => s.serialize_none(),
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use chrono::{TimeZone, Utc};

        #[derive(serde::Serialize)]
        struct Ours(#[serde(serialize_with = "super::serialize")] chrono::DateTime<Utc>);

        #[test]
        fn writes_what_chrono_writes() {
            let whole = Utc.with_ymd_and_hms(2025, 3, 30, 1, 0, 0).unwrap();
            // Ordinary instants take the fast path, not chrono's.
            assert_eq!(
                super::write(&whole, &mut [0; 30]),
                Some("2025-03-30T01:00:00Z")
            );
            for t in [
                whole,
                whole + chrono::Duration::milliseconds(250),
                whole + chrono::Duration::microseconds(1),
                whole + chrono::Duration::nanoseconds(7),
                whole + chrono::Duration::nanoseconds(123_456_789),
                Utc.with_ymd_and_hms(1, 1, 1, 0, 0, 0).unwrap(),
                Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap(),
                Utc.with_ymd_and_hms(10000, 1, 1, 0, 0, 0).unwrap(),
                Utc.with_ymd_and_hms(-1, 1, 1, 0, 0, 0).unwrap(),
                // A leap second, which chrono writes as second 60.
                Utc.from_utc_datetime(
                    &chrono::NaiveDate::from_ymd_opt(2016, 12, 31)
                        .unwrap()
                        .and_hms_nano_opt(23, 59, 59, 1_500_000_000)
                        .unwrap(),
                ),
            ] {
                assert_eq!(
                    serde_json::to_string(&Ours(t)).unwrap(),
                    serde_json::to_string(&t).unwrap()
                );
            }
        }
    }
}

#[derive(Debug, Serialize)]
struct DowntimeDefinition {
    name: &'static str,
    partial_weight: f64,
    degraded_weight: f64,
}

fn minutes_by_level(b: &impact::Buckets) -> HashMap<&'static str, Planned> {
    ImpactLevel::ALL
        .into_iter()
        .map(|l| {
            (
                l.as_str(),
                Planned {
                    unplanned: b.minutes(l, false),
                    planned: b.minutes(l, true),
                },
            )
        })
        .collect()
}

fn intervals(rows: &[SegmentRow]) -> Vec<Interval> {
    rows.iter()
        .map(|r| Interval {
            incident_id: r.incident_id,
            level: r.level,
            start: r.start,
            end: r.end,
        })
        .collect()
}

/// The zone of each client's calendar and SLA hours.
async fn zones(
    state: &AppState,
    tenant: Uuid,
    services: &[ServiceRow],
) -> Result<HashMap<Uuid, TimeZoneName>, ApiError> {
    let mut out = HashMap::new();
    for s in services {
        if out.contains_key(&s.client_id) {
            continue;
        }
        let zone = directory::client_time_zone(&state.pool, tenant, s.client_id)
            .await?
            .and_then(|z| TimeZoneName::parse(&z).ok())
            .unwrap_or_else(TimeZoneName::utc);
        out.insert(s.client_id, zone);
    }
    Ok(out)
}

/// The hours a service's SLA commits to inside `[from, to)`; `None`: all.
fn committed(
    service: &ServiceRow,
    zone: &TimeZoneName,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Option<Vec<(DateTime<Utc>, DateTime<Utc>)>> {
    let hours: ServiceHours = serde_json::from_value(service.sla_hours.clone()?).ok()?;
    Some(hours.intervals(zone.tz(), from, to))
}

/// Every figure of the services in scope, by the definitions it names.
struct Computed {
    per_service: Vec<(usize, metrics::ServiceMetrics, Vec<PlannedInterval>)>,
    noise_by_source: std::collections::BTreeMap<String, metrics::Ratio>,
    incidents: Vec<IncidentRow>,
    changes: Vec<Change>,
}

async fn compute(
    state: &AppState,
    tenant: Uuid,
    g: &Gathered,
    zones: &HashMap<Uuid, TimeZoneName>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Computed, ApiError> {
    let ids: Vec<Uuid> = g.services.iter().map(|s| s.id).collect();
    let client = state
        .pool
        .get()
        .await
        .map_err(opsledger_store::StoreError::from)?;
    let incidents = downtime::incident_facts(&client, tenant, &ids, from, to).await?;
    let changes = downtime::finished_changes(&client, tenant, &ids).await?;
    drop(client);
    // Grouped once: a year of a tenant holds thousands of incidents.
    let mut facts_of: HashMap<Uuid, Vec<IncidentFacts>> = HashMap::new();
    for i in &incidents {
        facts_of
            .entry(i.service_id)
            .or_default()
            .push(i.facts.clone());
    }
    let mut changes_of: HashMap<Uuid, Vec<ChangeFacts>> = HashMap::new();
    for c in &changes {
        for s in &c.service_ids {
            changes_of.entry(*s).or_default().push(change_facts(c));
        }
    }
    let mut per_service = Vec::new();
    for (n, service) in g.services.iter().enumerate() {
        let rows = g.segments_of(service.id);
        let segments: Vec<(Uuid, Segment)> = rows
            .iter()
            .map(|r| {
                (
                    r.incident_id,
                    Segment {
                        start: r.start,
                        end: r.end,
                        level: r.level,
                    },
                )
            })
            .collect();
        let planned = g.planned(service.id, from, to);
        let plan: Vec<_> = planned.iter().map(|p| (p.start, p.end)).collect();
        let facts = facts_of.get(&service.id).map_or(&[][..], Vec::as_slice);
        let change_facts = changes_of.get(&service.id).map_or(&[][..], Vec::as_slice);
        let zone = zones
            .get(&service.client_id)
            .cloned()
            .unwrap_or_else(TimeZoneName::utc);
        let input = metrics::ServiceInput {
            from,
            to,
            now: g.now,
            sla_target_pct: service.sla_target_pct,
            committed: committed(service, &zone, from, to),
            segments: &segments,
            planned: &plan,
            incidents: facts,
            changes: change_facts,
        };
        per_service.push((n, metrics::service_metrics(&input), planned));
    }
    let all: Vec<IncidentFacts> = incidents.iter().map(|i| i.facts.clone()).collect();
    Ok(Computed {
        per_service,
        noise_by_source: metrics::noise_by_source(&all, from, to),
        incidents,
        changes,
    })
}

fn change_facts(c: &Change) -> ChangeFacts {
    ChangeFacts {
        id: c.id,
        outcome: c.outcome.map(|o| o.as_str()),
        finished_at: c.finished_at,
        caused_incident: c.links.iter().any(|l| l.relation == Relation::CausedBy),
    }
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
    let (g, from, to) = Gathered::of_request(&state, actor, &q).await?;
    let zones = zones(&state, actor.tenant_id, &g.services).await?;
    let c = compute(&state, actor.tenant_id, &g, &zones, from, to).await?;
    let events = g.drilldown(&state, actor.tenant_id, q.drilldown).await?;
    let services: Vec<_> = c
        .per_service
        .iter()
        .map(|(n, m, planned)| {
            let service = &g.services[*n];
            let rows = g.segments_of(service.id);
            let mut v = json!({
                "service_id": service.id,
                "name": service.name,
                "client_id": service.client_id,
                "time_zone": zones.get(&service.client_id).map(|z| z.as_str()),
                "sla_hours": service.sla_hours,
                "metrics": m,
            });
            if let Some(all) = &events {
                v["drilldown"] = json!({
                    "intervals": intervals(rows),
                    "planned": planned,
                    "events": events_of(rows, all),
                });
            }
            v
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "definitions": metrics::DEFINITIONS,
        "from": from,
        "to": to,
        "as_of": g.now,
        "services": services,
        "noise_by_source": c.noise_by_source,
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonthlyParams {
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
    let report = monthly_report(&state, actor.tenant_id, q.client, month, services).await?;
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

/// The monthly report of one client's services.
pub async fn monthly_report(
    state: &AppState,
    tenant: Uuid,
    client_id: Uuid,
    month: Month,
    services: Vec<ServiceRow>,
) -> Result<MonthlyReport, ApiError> {
    let client_row = directory::list_clients(
        &state.pool,
        tenant,
        directory::ClientFilter::Only(client_id),
        None,
        1,
    )
    .await?
    .into_iter()
    .next()
    .ok_or_else(|| ApiError::NotFound(format!("no client {client_id}")))?;
    let zone = directory::client_time_zone(&state.pool, tenant, client_id)
        .await?
        .and_then(|z| TimeZoneName::parse(&z).ok())
        .unwrap_or_else(TimeZoneName::utc);
    let tz = zone.tz();
    let (from, to) = month.span(tz);
    let g = Gathered::read(state, tenant, services, from, to).await?;
    let zones: HashMap<Uuid, TimeZoneName> = [(client_id, zone.clone())].into();
    let c = compute(state, tenant, &g, &zones, from, to).await?;
    let events = g.drilldown(state, tenant, true).await?.unwrap_or_default();
    let ids: Vec<Uuid> = g.services.iter().map(|s| s.id).collect();
    let proposals = {
        let client = state
            .pool
            .get()
            .await
            .map_err(opsledger_store::StoreError::from)?;
        downtime::open_proposals(&client, tenant, &ids).await?
    };
    let mut services = Vec::new();
    let mut restatements = Vec::new();
    for (n, m, planned) in c.per_service {
        let service = &g.services[n];
        let rows = g.segments_of(service.id);
        let plan: Vec<_> = planned.iter().map(|p| (p.start, p.end)).collect();
        let all = spans(rows);
        let b = impact::sweep(&all, &plan, from, to, g.now);
        let level = |l: ImpactLevel| monthly::LevelMinutes {
            unplanned: b.minutes(l, false),
            planned: b.minutes(l, true),
        };
        let daily = month
            .days()
            .map(|date| {
                let next = date.succ_opt().unwrap_or(date);
                let (ds, de) = (
                    Month::local_instant_of(tz, date),
                    Month::local_instant_of(tz, next),
                );
                let day = impact::sweep(&all, &plan, ds.max(from), de.min(to), g.now);
                let both = |l| day.minutes(l, false) + day.minutes(l, true);
                monthly::Day {
                    date,
                    outage: both(ImpactLevel::Outage),
                    partial: both(ImpactLevel::Partial),
                    degraded: both(ImpactLevel::Degraded),
                }
            })
            .collect();
        let mut incident_ids: Vec<Uuid> = rows.iter().map(|r| r.incident_id).collect();
        incident_ids.sort();
        incident_ids.dedup();
        let incidents = c
            .incidents
            .iter()
            .filter(|i| {
                i.service_id == service.id
                    && (incident_ids.contains(&i.facts.id)
                        || (from <= i.facts.opened_at && i.facts.opened_at < to))
            })
            .map(|i| {
                let own: Vec<Segment> = rows
                    .iter()
                    .filter(|r| r.incident_id == i.facts.id)
                    .map(|r| Segment {
                        start: r.start,
                        end: r.end,
                        level: r.level,
                    })
                    .collect();
                let b = impact::sweep(&own, &[], from, to, g.now);
                let total = |l| b.minutes(l, false);
                monthly::IncidentItem {
                    id: i.facts.id,
                    title: i.title.clone(),
                    severity: i.facts.severity.as_str().to_owned(),
                    opened_at: i.facts.opened_at,
                    impact_start: i.facts.impact_start,
                    impact_end: i.facts.impact_end,
                    outage_minutes: total(ImpactLevel::Outage),
                    partial_minutes: total(ImpactLevel::Partial),
                    degraded_minutes: total(ImpactLevel::Degraded),
                }
            })
            .collect();
        let maintenance = g
            .windows
            .iter()
            .filter(|w| w.service_ids.contains(&service.id))
            .filter_map(|w| {
                let spans: Vec<_> = planned.iter().filter(|p| p.window_id == w.id).collect();
                let first = spans.first()?;
                let last = spans.last()?;
                Some(monthly::MaintenanceItem {
                    window_id: w.id,
                    title: w.title.clone(),
                    status: w.status.as_str().to_owned(),
                    start: first.start,
                    end: last.end,
                    minutes: spans
                        .iter()
                        .map(|p| (p.end - p.start).num_seconds() as f64 / 60.0)
                        .sum(),
                })
            })
            .collect();
        let changes = c
            .changes
            .iter()
            .filter(|ch| ch.service_ids.contains(&service.id))
            .filter_map(|ch| {
                let finished = ch.finished_at.filter(|f| from <= *f && *f < to)?;
                Some(monthly::ChangeItem {
                    id: ch.id,
                    title: ch.title.clone(),
                    outcome: ch.outcome?.as_str().to_owned(),
                    finished_at: finished,
                    caused_incident: change_facts(ch).caused_incident,
                })
            })
            .collect();
        for id in &incident_ids {
            for e in events.get(id).into_iter().flatten() {
                if e.recorded_at >= to {
                    restatements.push(monthly::Restatement {
                        service_id: service.id,
                        incident_id: *id,
                        position: e.position,
                        event_type: e.event_type.clone(),
                        recorded_at: e.recorded_at,
                    });
                }
            }
        }
        services.push(monthly::ServiceMonth {
            service_id: service.id,
            name: service.name.clone(),
            sla_target_pct: service.sla_target_pct,
            sla_hours: service
                .sla_hours
                .clone()
                .and_then(|h| serde_json::from_value(h).ok()),
            metrics: m,
            downtime: monthly::Downtime {
                outage: level(ImpactLevel::Outage),
                partial: level(ImpactLevel::Partial),
                degraded: level(ImpactLevel::Degraded),
            },
            daily,
            incidents,
            maintenance,
            changes,
        });
    }
    restatements.sort_by_key(|r| r.position);
    Ok(MonthlyReport {
        client: monthly::ClientInfo {
            id: client_id,
            name: client_row.name,
            locale: client_row.locale,
            time_zone: zone.as_str().to_owned(),
        },
        month: month.to_string(),
        from,
        to,
        hours: (to - from).num_seconds() as f64 / 3600.0,
        as_of: g.now,
        first_reported_at: to,
        definitions: metrics::DEFINITIONS.to_vec(),
        services,
        open_proposals: proposals
            .into_iter()
            .map(|p| monthly::ProposalItem {
                id: p.id,
                title: p.title,
                status: p.status.as_str().to_owned(),
                raised_at: p.raised_at,
            })
            .collect(),
        restatements,
    })
}

/// The monthly report is mailed during the first days of the next month in
/// the client's zone: on the first, or as soon after as the service runs.
/// Later than this, a month's report is not sent any more (a subscription
/// made mid-month does not bring last month's).
pub const MONTHLY_MAIL_DAYS: u32 = 3;

/// One pass of the monthly mailer (SPEC §6): for every contact subscribed
/// to `monthly_report`, in the first days of a month of its client's zone,
/// the previous month's report is requested through the outbox, once per
/// contact and month: its notification's stream is named after (tenant,
/// client, month, address) and appended only if it does not exist, so
/// passes and instances repeat nothing. Returns how many it requested.
pub async fn mail_monthly_due(state: &AppState, now: DateTime<Utc>) -> Result<usize, ApiError> {
    use chrono::Datelike;
    use opsledger_domain::notice::{self, MonthlyFacts, MonthlyLine, NoticeKind};
    use opsledger_domain::notification::{self, NotificationEvent, Recipient};
    let subscribers = downtime::monthly_subscribers(&state.pool).await?;
    let mut reports: HashMap<(Uuid, Uuid), Option<MonthlyReport>> = HashMap::new();
    let mut requested = 0;
    for sub in subscribers {
        let zone = directory::client_time_zone(&state.pool, sub.tenant_id, sub.client_id)
            .await?
            .and_then(|z| TimeZoneName::parse(&z).ok())
            .unwrap_or_else(TimeZoneName::utc);
        let local = now.with_timezone(&zone.tz());
        if local.day() > MONTHLY_MAIL_DAYS {
            continue;
        }
        let month = Month::of(now, zone.tz()).previous();
        let id = Uuid::new_v5(
            &Uuid::NAMESPACE_URL,
            format!(
                "urn:opsledger:monthly-report:{}:{}:{month}:{}",
                sub.tenant_id,
                sub.client_id,
                sub.email.to_lowercase()
            )
            .as_bytes(),
        );
        let stream = notification::notification_stream(id);
        {
            let client = state
                .pool
                .get()
                .await
                .map_err(opsledger_store::StoreError::from)?;
            if directory::stream_version(&client, sub.tenant_id, &stream).await? > 0 {
                continue;
            }
        }
        let key = (sub.tenant_id, sub.client_id);
        // Not the entry API: building the report awaits.
        #[allow(clippy::map_entry)]
        if !reports.contains_key(&key) {
            let services =
                directory::report_services(&state.pool, sub.tenant_id, None, Some(sub.client_id))
                    .await?;
            let report =
                match monthly_report(state, sub.tenant_id, sub.client_id, month, services).await {
                    Ok(r) => Some(r),
                    // A client gone from the read model: nobody to report on.
                    Err(ApiError::NotFound(_)) => None,
                    Err(e) => return Err(e),
                };
            reports.insert(key, report);
        }
        let Some(report) = reports.get(&key).and_then(Option::as_ref) else {
            continue;
        };
        let facts = MonthlyFacts {
            client: report.client.name.clone(),
            month: report.month.clone(),
            recipient_name: sub.name.clone(),
            services: report
                .services
                .iter()
                .map(|s| MonthlyLine {
                    name: s.name.clone(),
                    availability: s
                        .metrics
                        .availability
                        .sla
                        .map_or_else(|| "—".to_owned(), |a| format!("{:.3} %", a * 100.0)),
                    target: format!("{:.3} %", s.sla_target_pct),
                    met: s.metrics.sla.met,
                    outage_minutes: format!("{:.1}", s.downtime.outage.unplanned),
                    incidents: s.incidents.len(),
                })
                .collect(),
            restatements: report.restatements.len(),
        };
        // The page in the contact's language, whatever the client's is.
        let mut for_contact = report.clone();
        for_contact.client.locale = sub.locale.clone();
        let html = monthly::to_html(&for_contact).map_err(|e| ApiError::Internal(e.into()))?;
        let checkpoint = crate::audit::latest_checkpoint(state, sub.tenant_id).await?;
        let message = notice::render_monthly(&sub.locale, &facts, html)
            .with_checkpoint(checkpoint.as_deref());
        let event = NotificationEvent::NotificationRequested {
            notification_id: id,
            kind: NoticeKind::MonthlyReport,
            // Due by the calendar, not by an event.
            cause_event_id: Uuid::nil(),
            incident_id: None,
            recipient: Recipient {
                name: sub.name.clone(),
                email: sub.email.clone(),
                locale: sub.locale.clone(),
                user_id: None,
                subscription_id: Some(sub.subscription_id),
                client_id: Some(sub.client_id),
            },
            message,
        };
        let meta = opsledger_domain::Metadata {
            actor: "system:monthly-report".into(),
            role: "system".into(),
            request_id: None,
            correlation_id: None,
            causation_id: None,
            source: "monthly-report".into(),
        };
        let request = opsledger_store::AppendRequest {
            tenant_id: sub.tenant_id,
            streams: vec![opsledger_store::StreamAppend {
                stream_id: stream,
                expected: opsledger_store::ExpectedVersion::NoStream,
                events: vec![opsledger_domain::NewEvent::new(
                    event.type_name(),
                    event.payload(),
                    meta,
                    Utc::now(),
                )],
            }],
            idempotency: None,
        };
        match state.committer.append(request).await {
            Ok(_) => requested += 1,
            // Another pass or instance requested it first.
            Err(opsledger_store::AppendError::Conflict { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(requested)
}
