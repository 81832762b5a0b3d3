//! Reports (SPEC §6) as the read models give them: what a report on some
//! services over a period gathers (impact segments, windows), every figure
//! by its named definition (`domain::metrics`), the monthly client report,
//! and the monthly mailer that sends it through the outbox. `api::reports`
//! parses the requests and writes the answers.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use opsledger_domain::change::{Change, Relation};
use opsledger_domain::impact::{self, ImpactLevel, Segment};
use opsledger_domain::metrics::{self, ChangeFacts, IncidentFacts};
use opsledger_domain::monthly::{self, MonthlyReport};
use opsledger_domain::period::{Month, ServiceHours, TimeZoneName};
use opsledger_domain::window::Window;
use opsledger_store::directory::{self, ServiceRow};
use opsledger_store::downtime::{self, ImpactEventRef, IncidentRow, SegmentRow};
use serde::Serialize;
use uuid::Uuid;

use crate::run::RunError;
use crate::Ledger;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Planned {
    pub unplanned: f64,
    pub planned: f64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Interval {
    pub incident_id: Uuid,
    pub level: ImpactLevel,
    #[serde(serialize_with = "rfc3339::serialize")]
    pub start: DateTime<Utc>,
    /// `null` while the impact lasts (counted up to the period's end or now).
    #[serde(serialize_with = "rfc3339::option::serialize")]
    pub end: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PlannedInterval {
    pub window_id: Uuid,
    #[serde(serialize_with = "rfc3339::serialize")]
    pub start: DateTime<Utc>,
    #[serde(serialize_with = "rfc3339::serialize")]
    pub end: DateTime<Utc>,
}

/// Whether a client was registered in this tenant (asked of the log).
pub async fn client_exists(
    ledger: Ledger<'_>,
    tenant: Uuid,
    client: Uuid,
) -> Result<bool, RunError> {
    let stream = opsledger_domain::directory::client_stream(client);
    Ok(crate::directory::exists(ledger, tenant, &stream).await?)
}

/// The segments of some services over a period, on a connection of their own.
async fn read_segments(
    ledger: Ledger<'_>,
    tenant: Uuid,
    services: &[Uuid],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<(Uuid, Vec<SegmentRow>)>, opsledger_store::StoreError> {
    let client = ledger.pool.get().await?;
    downtime::segments(&client, tenant, services, from, to).await
}

/// From this many services on, a report reads their segments in two halves.
pub const SPLIT_READS_FROM: usize = 50;

/// What the read models hold for a report on some services over a period.
pub struct Gathered {
    pub services: Vec<ServiceRow>,
    pub segments: HashMap<Uuid, Vec<SegmentRow>>,
    pub windows: Vec<Window>,
    /// Each service's windows (indexes into `windows`): a tenant's year has
    /// thousands of windows over hundreds of services.
    pub windows_of: HashMap<Uuid, Vec<usize>>,
    pub now: DateTime<Utc>,
}

impl Gathered {
    pub async fn read(
        ledger: Ledger<'_>,
        tenant: Uuid,
        services: Vec<ServiceRow>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Gathered, RunError> {
        let ids: Vec<Uuid> = services.iter().map(|s| s.id).collect();
        let connection = || async {
            ledger
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
                    .map(|part| read_segments(ledger, tenant, part, from, to))
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

    pub fn segments_of(&self, service: Uuid) -> &[SegmentRow] {
        self.segments.get(&service).map_or(&[], Vec::as_slice)
    }

    /// The planned time of the service's announced windows in `[from, to)`.
    pub fn planned(
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

    /// With `drilldown`: the events behind each incident's impact.
    pub async fn drilldown(
        &self,
        ledger: Ledger<'_>,
        tenant: Uuid,
        drilldown: bool,
    ) -> Result<Option<HashMap<Uuid, Vec<ImpactEventRef>>>, RunError> {
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
        let client = ledger
            .pool
            .get()
            .await
            .map_err(opsledger_store::StoreError::from)?;
        Ok(Some(
            downtime::impact_events(&client, tenant, &incidents).await?,
        ))
    }
}

pub fn spans(rows: &[SegmentRow]) -> Vec<Segment> {
    rows.iter()
        .map(|r| Segment {
            start: r.start,
            end: r.end,
            level: r.level,
        })
        .collect()
}

pub fn events_of(
    rows: &[SegmentRow],
    all: &HashMap<Uuid, Vec<ImpactEventRef>>,
) -> HashMap<Uuid, Vec<ImpactEventRef>> {
    rows.iter()
        .filter_map(|r| all.get(&r.incident_id).map(|e| (r.incident_id, e.clone())))
        .collect()
}

pub fn minutes_by_level(b: &impact::Buckets) -> HashMap<&'static str, Planned> {
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

pub fn intervals(rows: &[SegmentRow]) -> Vec<Interval> {
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
pub async fn zones(
    ledger: Ledger<'_>,
    tenant: Uuid,
    services: &[ServiceRow],
) -> Result<HashMap<Uuid, TimeZoneName>, RunError> {
    let mut out = HashMap::new();
    for s in services {
        if out.contains_key(&s.client_id) {
            continue;
        }
        let zone = directory::client_time_zone(ledger.pool, tenant, s.client_id)
            .await?
            .and_then(|z| TimeZoneName::parse(&z).ok())
            .unwrap_or_else(TimeZoneName::utc);
        out.insert(s.client_id, zone);
    }
    Ok(out)
}

/// The hours a service's SLA commits to inside `[from, to)`; `None`: all.
pub fn committed(
    service: &ServiceRow,
    zone: &TimeZoneName,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Option<Vec<(DateTime<Utc>, DateTime<Utc>)>> {
    let hours: ServiceHours = serde_json::from_value(service.sla_hours.clone()?).ok()?;
    Some(hours.intervals(zone.tz(), from, to))
}

/// Every figure of the services in scope, by the definitions it names.
pub struct Computed {
    pub per_service: Vec<(usize, metrics::ServiceMetrics, Vec<PlannedInterval>)>,
    pub noise_by_source: std::collections::BTreeMap<String, metrics::Ratio>,
    pub incidents: Vec<IncidentRow>,
    pub changes: Vec<Change>,
}

pub async fn compute(
    ledger: Ledger<'_>,
    tenant: Uuid,
    g: &Gathered,
    zones: &HashMap<Uuid, TimeZoneName>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Computed, RunError> {
    let ids: Vec<Uuid> = g.services.iter().map(|s| s.id).collect();
    let client = ledger
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

pub fn change_facts(c: &Change) -> ChangeFacts {
    ChangeFacts {
        id: c.id,
        outcome: c.outcome.map(|o| o.as_str()),
        finished_at: c.finished_at,
        caused_incident: c.links.iter().any(|l| l.relation == Relation::CausedBy),
    }
}

/// The monthly report of one client's services.
pub async fn monthly_report(
    ledger: Ledger<'_>,
    tenant: Uuid,
    client_id: Uuid,
    month: Month,
    services: Vec<ServiceRow>,
) -> Result<MonthlyReport, RunError> {
    let client_row = directory::list_clients(
        ledger.pool,
        tenant,
        directory::ClientFilter::Only(client_id),
        None,
        1,
    )
    .await?
    .into_iter()
    .next()
    .ok_or_else(|| RunError::NotFound {
        noun: "client",
        id: client_id,
    })?;
    let zone = directory::client_time_zone(ledger.pool, tenant, client_id)
        .await?
        .and_then(|z| TimeZoneName::parse(&z).ok())
        .unwrap_or_else(TimeZoneName::utc);
    let tz = zone.tz();
    let (from, to) = month.span(tz);
    let g = Gathered::read(ledger, tenant, services, from, to).await?;
    let zones: HashMap<Uuid, TimeZoneName> = [(client_id, zone.clone())].into();
    let c = compute(ledger, tenant, &g, &zones, from, to).await?;
    let events = g.drilldown(ledger, tenant, true).await?.unwrap_or_default();
    let ids: Vec<Uuid> = g.services.iter().map(|s| s.id).collect();
    let proposals = {
        let client = ledger
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
pub async fn mail_monthly_due(ledger: Ledger<'_>, now: DateTime<Utc>) -> Result<usize, RunError> {
    use chrono::Datelike;
    use opsledger_domain::notice::{self, MonthlyFacts, MonthlyLine, NoticeKind};
    use opsledger_domain::notification::{self, NotificationEvent, Recipient};
    let subscribers = downtime::monthly_subscribers(ledger.pool).await?;
    let mut reports: HashMap<(Uuid, Uuid), Option<MonthlyReport>> = HashMap::new();
    let mut requested = 0;
    for sub in subscribers {
        let zone = directory::client_time_zone(ledger.pool, sub.tenant_id, sub.client_id)
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
            let client = ledger
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
                directory::report_services(ledger.pool, sub.tenant_id, None, Some(sub.client_id))
                    .await?;
            let report =
                match monthly_report(ledger, sub.tenant_id, sub.client_id, month, services).await {
                    Ok(r) => Some(r),
                    // A client gone from the read model: nobody to report on.
                    Err(RunError::NotFound { .. }) => None,
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
        let html = monthly::to_html(&for_contact).map_err(|e| RunError::Internal(e.to_string()))?;
        let checkpoint = crate::latest_checkpoint(ledger, sub.tenant_id).await?;
        let message = notice::render_monthly(&sub.locale, &facts, html)
            .with_checkpoint(checkpoint.as_deref());
        let event = NotificationEvent::NotificationRequested {
            notification_id: id,
            kind: NoticeKind::MonthlyReport,
            // Due by the calendar, not by an event.
            cause_event_id: Uuid::nil(),
            incident_id: None,
            change_id: None,
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
        let asked = crate::run::Asked {
            tenant: sub.tenant_id,
            meta,
            if_match: None,
            key: None,
        };
        let ran = crate::run::run::<notification::Notification, _, _, RunError>(
            ledger,
            asked,
            crate::run::Target::Started(id),
            notification::NotificationCommand::Request(event),
            async |_| {
                Ok(crate::run::Prepared {
                    context: None,
                    view: |_: &notification::Notification, _| serde_json::Value::Null,
                })
            },
        )
        .await;
        match ran {
            Ok(_) => requested += 1,
            // Another pass or instance requested it first.
            Err(e) if e.is_conflict() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(requested)
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
