//! P3 and P4 (SPEC §11) over a year of one tenant's operations.
//!
//! **Load.** 50 clients with 10 services each are registered by their
//! directory events, then a year (the previous calendar year) of each
//! service's life is appended through the store's append path
//! (`Committer::append`, group commit, the alerts read model written
//! inline), a request per command as the API would make it, from
//! `BENCH_P3_TASKS` (256) tasks, each owning some services (so versions are
//! known and nothing conflicts). Payloads are the domain's event types,
//! printed as the API prints them. A service's year:
//!
//! - alert storms, each opening an incident: the first receipt opens it
//!   (incident, receipt and group binding in one append), the others attach
//!   (asserting the group) or repeat a firing alert (deduplicated); dedup
//!   keys come from a pool of `BENCH_P3_FINGERPRINTS` (30) per service, so
//!   an alert stream holds that fingerprint's firing cycles of the whole
//!   year, as real monitoring's do; 5 to 75 receipts a storm, and repeats;
//! - each incident acknowledged, a note on half of them, 0 to 2 impact
//!   level changes (`ImpactLevelChanged`, the level it opened with mapped
//!   from severity), mitigated with its impact's end, every alert resolved,
//!   resolved (releasing the group) and closed; impacts last 5 minutes to 6
//!   hours;
//! - a monthly maintenance window (planned, announced, started, ended)
//!   serving a standard change (requested, scheduled into it, started,
//!   completed, reviewed); a small data set has fewer months of them (at
//!   most a quarter of a service's events).
//!
//! Incidents are added to each service until it holds its share of
//! `BENCH_P3_EVENTS` (5,000,000), spread evenly over the year. `occurred_at`
//! is the instant in the year; `recorded_at` is the load's clock, as the
//! append path sets it (so a report by `recorded_at` sees the whole year
//! within one day). No escalation policies and no subscriptions: the log
//! holds what people and monitoring did, not what the service derived.
//!
//! **P4.** Every projection is then rebuilt from the log, one after another
//! as `opsledger rebuild` does, in its own transaction each, and then again
//! `BENCH_P4_PARALLEL` (3) at a time (`projection::rebuild_all`); each
//! figure is the events in the log over the total time. This also builds
//! the read models P3 reads. `BENCH_P4_ONLY=alerts,work` rebuilds only
//! those, one after another.
//!
//! **P3.** The release service is started on the database, and over one
//! keep-alive connection, one request at a time: `GET
//! /incidents/{id}/timeline` of random incidents (`BENCH_P3_TIMELINES`,
//! 1,000, after 100 unmeasured), the one-year downtime report of every
//! client (`?client=`, 50 calls covering the 500 services; `BENCH_P3_ROUNDS`
//! rounds, each call timed and each round's total) and of all 500 services
//! in one request (neither client nor service named; `BENCH_P3_WHOLE_REQUESTS`,
//! 100), and one client's
//! monthly report (`/reports/monthly?client=&month=`), skipped with a line
//! saying so while the route answers 404 or 405.
//!
//! `BENCH_P3_REUSE=1` keeps a database loaded by an earlier run on the same
//! cluster (see `BENCH_CLUSTER` in `ops/bench/run`) and goes straight to
//! the measurements; `ops/bench/run rebuild` measures P4 alone on it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Datelike, SecondsFormat, TimeZone, Utc};
use opsledger_domain::access::Role;
use opsledger_domain::alert::{
    self, AlertEvent, Category, Decision, GroupEvent, ResolvedBy, Severity, Signal,
};
use opsledger_domain::directory::{self as dir, DirectoryEvent};
use opsledger_domain::impact::ImpactLevel;
use opsledger_domain::incident::{self, IncidentEvent, Visibility};
use opsledger_domain::text::Name;
use opsledger_domain::{Metadata, NewEvent};
use opsledger_store::{AppendOutcome, AppendRequest, Committer, ExpectedVersion, StreamAppend};
use serde_json::json;
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::service::{database, fresh_database, quantile, Service};
use crate::LoadClient;

const DATABASE: &str = "bench_p3";
const CLIENTS: usize = 50;
const SERVICES_PER_CLIENT: usize = 10;
/// Alert groups per service: storms of one group follow each other.
const GROUPS_PER_SERVICE: usize = 4;

pub(crate) fn var<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `which` is `reports` (load if needed, P4, P3) or `rebuild` (P4 only, on
/// a database loaded before).
pub async fn reports_benchmark(which: &str) {
    let target: u64 = var("BENCH_P3_EVENTS", 5_000_000);
    let reuse = var("BENCH_P3_REUSE", 0u8) == 1 || which == "rebuild";
    let year_start = Utc
        .with_ymd_and_hms(Utc::now().year() - 1, 1, 1, 0, 0, 0)
        .unwrap();
    let year_end = Utc
        .with_ymd_and_hms(Utc::now().year(), 1, 1, 0, 0, 0)
        .unwrap();

    let loaded = if reuse {
        // A data set loaded by an earlier build gets this build's schema.
        if existing(DATABASE).await.is_some() {
            opsledger_store::migrate::migrate(&database(DATABASE))
                .await
                .expect("migrations apply");
        }
        existing(DATABASE).await
    } else {
        None
    };
    let (tenant, loaded_now) = match loaded {
        Some(tenant) => {
            println!("P3 data set: reusing database {DATABASE}");
            (tenant, false)
        }
        None => {
            assert!(
                which != "rebuild",
                "no loaded {DATABASE} database: run `reports` first (with BENCH_CLUSTER)"
            );
            (load(target, year_start).await, true)
        }
    };
    let db = database(DATABASE);
    let pool = opsledger_store::connect(&db).unwrap();
    let events: i64 = pool
        .get()
        .await
        .unwrap()
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .unwrap()
        .get(0);

    if loaded_now || which == "rebuild" || var("BENCH_P4", 0u8) == 1 {
        rebuild_all(&pool, events, DATABASE).await;
    }
    disk(&pool, events).await;
    if which == "rebuild" {
        return;
    }

    let svc = Service::start(DATABASE, tenant).await;
    let operator = svc.token("bench-operator", &[Role::Operator], None);
    timelines(&svc, &pool, &operator).await;
    downtime(&svc, &pool, &operator, year_start, year_end).await;
    monthly(&svc, &pool, &operator, year_start).await;
    if std::env::var_os("OPSLEDGER_AUDIT_KEY_FILE").is_some() {
        crate::audit::proofs_and_export(&svc, &pool, tenant).await;
    }
    println!("service peak RSS {:.0} MB", svc.peak_rss_mb());
    svc.stop().await;
}

/// The tenant of a loaded P3 database, if there is one.
pub(crate) async fn existing(name: &str) -> Option<Uuid> {
    let db = database(name);
    let pool = opsledger_store::connect(&db).ok()?;
    let client = pool.get().await.ok()?;
    let row = client
        .query_opt(
            "SELECT tenant_id FROM events WHERE stream_id LIKE 'tenant-%' LIMIT 1",
            &[],
        )
        .await
        .ok()??;
    Some(row.get(0))
}

// ------------------------------------------------------------ the load

/// A deterministic generator (SplitMix64): the same data set every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The part of the load every task shares.
struct Loader {
    committer: Committer,
    tenant: Uuid,
    appended: AtomicU64,
    incidents: Mutex<Vec<Uuid>>,
}

impl Loader {
    async fn append(&self, streams: Vec<StreamAppend>) {
        let events: usize = streams.iter().map(|s| s.events.len()).sum();
        let request = AppendRequest {
            tenant_id: self.tenant,
            streams,
            idempotency: None,
        };
        match self.committer.append(request).await {
            Ok(AppendOutcome::Committed { .. }) => {}
            other => panic!("a load append did not commit: {other:?}"),
        }
        self.appended.fetch_add(events as u64, Ordering::Relaxed);
    }
}

fn meta(actor: &str, role: &str, source: &str) -> Metadata {
    Metadata {
        actor: actor.into(),
        role: role.into(),
        request_id: None,
        correlation_id: None,
        causation_id: None,
        source: source.into(),
    }
}

fn stream(id: String, expected: ExpectedVersion, events: Vec<NewEvent>) -> StreamAppend {
    StreamAppend {
        stream_id: id,
        expected,
        events,
    }
}

/// A directory event built from its JSON, as the API's body parsing makes
/// it (the domain type checks it), printed as stored.
fn directory_event(value: serde_json::Value, m: &Metadata, at: DateTime<Utc>) -> NewEvent {
    let event: DirectoryEvent = serde_json::from_value(value).expect("a directory event");
    NewEvent::of_tagged(&event, event.type_name(), m.clone(), at)
}

/// A service of the data set.
#[derive(Clone)]
struct Svc {
    id: Uuid,
    name: String,
}

/// Loads the data set into a fresh database; returns its tenant.
async fn load(target: u64, year_start: DateTime<Utc>) -> Uuid {
    load_into(DATABASE, target, year_start).await
}

/// Loads the year into a fresh database `name` (P7 loads its own); the tenant.
pub(crate) async fn load_into(name: &str, target: u64, year_start: DateTime<Utc>) -> Uuid {
    let db = fresh_database(name).await;
    let mut config = db.clone();
    config.pool_size = 16;
    let pool = opsledger_store::connect(&config).unwrap();
    let tenant = Uuid::now_v7();
    opsledger_server::commands::register_tenant(&pool, tenant, "Bench MSP", "bench")
        .await
        .unwrap();
    let loader = Arc::new(Loader {
        committer: Committer::start(pool.clone(), opsledger_store::append::COMMITTERS_DEFAULT),
        tenant,
        appended: AtomicU64::new(1),
        incidents: Mutex::new(Vec::new()),
    });
    let started = Instant::now();
    let admin = meta("bench-admin", "admin", "api");
    let mut services = Vec::new();
    for c in 0..CLIENTS {
        let client_id = Uuid::now_v7();
        let name = format!("Client {c:02}");
        let at = year_start - chrono::Duration::days(30);
        loader
            .append(vec![
                stream(
                    dir::client_stream(client_id),
                    ExpectedVersion::NoStream,
                    vec![directory_event(
                        json!({ "type": "ClientRegistered", "data": {
                            "client_id": client_id, "name": name, "locale": "ja", "contacts": [] } }),
                        &admin,
                        at,
                    )],
                ),
                stream(
                    dir::client_name_stream(&Name::parse("name", &name).unwrap()),
                    ExpectedVersion::NoStream,
                    vec![directory_event(
                        json!({ "type": "ClientNameReserved", "data": {
                            "client_id": client_id, "name": name } }),
                        &admin,
                        at,
                    )],
                ),
            ])
            .await;
        for s in 0..SERVICES_PER_CLIENT {
            let service_id = Uuid::now_v7();
            let name = format!("svc-{c:02}-{s}");
            loader
                .append(vec![
                    stream(
                        dir::service_stream(service_id),
                        ExpectedVersion::NoStream,
                        vec![directory_event(
                            json!({ "type": "ServiceRegistered", "data": {
                                "service_id": service_id, "client_id": client_id, "name": name,
                                "components": [], "sla_target_pct": 99.9, "notice_period_h": 24 } }),
                            &admin,
                            at,
                        )],
                    ),
                    stream(
                        dir::service_name_stream(&Name::parse("name", &name).unwrap()),
                        ExpectedVersion::NoStream,
                        vec![directory_event(
                            json!({ "type": "ServiceNameReserved", "data": {
                                "service_id": service_id, "name": name } }),
                            &admin,
                            at,
                        )],
                    ),
                ])
                .await;
            services.push(Svc {
                id: service_id,
                name,
            });
        }
    }
    let budget =
        target.saturating_sub(loader.appended.load(Ordering::Relaxed)) / services.len() as u64;
    let tasks: usize = var("BENCH_P3_TASKS", 256);
    let fingerprints: u64 = var("BENCH_P3_FINGERPRINTS", 30);
    println!(
        "P3 data set: {} clients, {} services, about {target} events ({budget} a service), \
         {fingerprints} alert fingerprints a service, {tasks} loading tasks",
        CLIENTS,
        services.len()
    );
    let progress = {
        let loader = loader.clone();
        tokio::spawn(async move {
            let mut last = (Instant::now(), 0u64);
            loop {
                tokio::time::sleep(Duration::from_secs(30)).await;
                let n = loader.appended.load(Ordering::Relaxed);
                let rate = (n - last.1) as f64 / last.0.elapsed().as_secs_f64();
                println!("  loaded {n} events ({rate:.0} events/s over the last 30 s)");
                last = (Instant::now(), n);
            }
        })
    };
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let loader = loader.clone();
            let mine: Vec<Svc> = services.iter().skip(t).step_by(tasks).cloned().collect();
            tokio::spawn(async move {
                for (i, svc) in mine.iter().enumerate() {
                    let mut rng = Rng(0x5eed ^ ((t * 1_000 + i) as u64));
                    service_year(&loader, svc, budget, fingerprints, year_start, &mut rng).await;
                }
            })
        })
        .collect();
    for h in handles {
        h.await.unwrap();
    }
    progress.abort();
    let seconds = started.elapsed().as_secs_f64();
    let appended = loader.appended.load(Ordering::Relaxed);
    println!(
        "P3 load: {appended} events in {seconds:.0} s through the append path: {:.0} events/s \
         ({} incidents)",
        appended as f64 / seconds,
        loader.incidents.lock().await.len()
    );
    tenant
}

/// One storm's shape, decided before any time is given to it.
struct Storm {
    severity: Severity,
    /// Fingerprints in order of receipt (a repeat of a firing one is a
    /// deduplicated receipt).
    picks: Vec<u64>,
    repeats: usize,
    note: bool,
    level_changes: usize,
    group: usize,
    /// Minutes of impact.
    minutes: i64,
}

impl Storm {
    fn draw(rng: &mut Rng, fingerprints: u64) -> Storm {
        let k = 5 + rng.below(71) as usize;
        let picks = (0..k).map(|_| rng.below(fingerprints)).collect();
        Storm {
            severity: [Severity::Critical, Severity::Error, Severity::Warning]
                [rng.below(3) as usize],
            picks,
            repeats: k * 3 / 10,
            note: rng.below(2) == 0,
            level_changes: rng.below(3) as usize,
            group: rng.below(GROUPS_PER_SERVICE as u64) as usize,
            minutes: 5 + rng.below(6 * 60 - 5) as i64,
        }
    }

    /// Events it appends, all told.
    fn events(&self) -> u64 {
        let distinct = {
            let mut p = self.picks.clone();
            p.sort_unstable();
            p.dedup();
            p.len()
        };
        // open (3) + other receipts + repeats + ack + note + levels +
        // mitigated + resolutions + resolved and released (2) + closed
        (3 + (self.picks.len() - 1)
            + self.repeats
            + 1
            + self.note as usize
            + self.level_changes
            + 1
            + distinct
            + 2
            + 1) as u64
    }
}

/// The firing cycle of an alert stream, as ingestion would know it.
#[derive(Default)]
struct AlertStream {
    version: i64,
    firing: Option<(Uuid, u64)>,
}

/// Appends a service's year: its storms and incidents, and a monthly window
/// with its change, in the order of their times.
async fn service_year(
    loader: &Loader,
    svc: &Svc,
    budget: u64,
    fingerprints: u64,
    year_start: DateTime<Utc>,
    rng: &mut Rng,
) {
    // The monthly window and change: 9 events a month, at most a quarter of
    // the service's events (a small data set has fewer months of them).
    let months = (budget / 4 / 9).clamp(1, 12) as u32;
    let mut storms = Vec::new();
    let mut planned = u64::from(months) * 9;
    while planned < budget || storms.is_empty() {
        let s = Storm::draw(rng, fingerprints);
        planned += s.events();
        storms.push(s);
    }
    let year = chrono::Duration::days(365);
    let spacing = year / storms.len().max(1) as i32;
    let mut items: Vec<(DateTime<Utc>, Option<Storm>)> = storms
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let jitter = spacing.num_seconds() as f64 * (rng.unit() - 0.5) * 0.5;
            let at = year_start
                + spacing * i as i32
                + spacing / 2
                + chrono::Duration::seconds(jitter as i64);
            (at, Some(s))
        })
        .collect();
    for month in 0..months {
        let at = Utc
            .with_ymd_and_hms(
                year_start.year(),
                month + 1,
                12 + rng.below(8) as u32,
                1,
                0,
                0,
            )
            .unwrap();
        items.push((at, None));
    }
    items.sort_by_key(|(at, _)| *at);
    let mut alerts: HashMap<u64, AlertStream> = HashMap::new();
    let mut groups = vec![0i64; GROUPS_PER_SERVICE];
    for (at, storm) in items {
        match storm {
            Some(s) => incident(loader, svc, &s, at, &mut alerts, &mut groups).await,
            None => maintenance(loader, svc, at).await,
        }
    }
}

/// One storm and the incident it opens, from receipt to closing.
async fn incident(
    loader: &Loader,
    svc: &Svc,
    s: &Storm,
    start: DateTime<Utc>,
    alerts: &mut HashMap<u64, AlertStream>,
    groups: &mut [i64],
) {
    let monitoring = meta("alertmanager", "integration", "alertmanager");
    let operator = meta("op-1", "operator", "api");
    let id = Uuid::now_v7();
    let incident_stream = incident::incident_stream(id);
    let group_key = format!("{}:group{}", svc.name, s.group);
    let group_stream = alert::group_stream(svc.id, &group_key);
    let end = start + chrono::Duration::minutes(s.minutes);
    // Receipts arrive over the first tenth of the impact.
    let receipt_every =
        chrono::Duration::minutes(s.minutes).num_milliseconds() / 10 / s.picks.len() as i64;
    let signal = |fp: u64, at: DateTime<Utc>| Signal {
        source: "alertmanager".into(),
        dedup_key: format!("{}/fp{fp}", svc.name),
        group_key: group_key.clone(),
        service_ref: Some(svc.name.clone()),
        summary: format!(
            "{} alert {fp} on {}",
            ["latency", "errors", "saturation"][fp as usize % 3],
            svc.name
        ),
        severity: s.severity,
        category: Category::Application,
        labels: [
            ("env".to_owned(), "prod".to_owned()),
            ("fingerprint".to_owned(), format!("fp{fp}")),
        ]
        .into_iter()
        .collect(),
        firing: true,
        starts_at: at,
        ends_at: None,
    };
    let receive = |fp: u64,
                   at: DateTime<Utc>,
                   alerts: &mut HashMap<u64, AlertStream>,
                   decision: Option<Decision>|
     -> (String, i64, AlertEvent) {
        let a = alerts.entry(fp).or_default();
        let event = match (a.firing, decision) {
            (Some((alert_id, count)), _) => {
                a.firing = Some((alert_id, count + 1));
                AlertEvent::AlertReceived {
                    alert_id,
                    signal: signal(fp, at),
                    service_id: Some(svc.id),
                    count: count + 1,
                    decision: Decision::Deduplicated {
                        into_alert_id: alert_id,
                    },
                }
            }
            (None, decision) => {
                let alert_id = Uuid::now_v7();
                a.firing = Some((alert_id, 1));
                AlertEvent::AlertReceived {
                    alert_id,
                    signal: signal(fp, at),
                    service_id: Some(svc.id),
                    count: 1,
                    decision: decision.unwrap_or(Decision::AttachedToIncident { incident_id: id }),
                }
            }
        };
        let version = a.version;
        a.version += 1;
        (
            alert::alert_stream(&format!("{}/fp{fp}", svc.name)),
            version,
            event,
        )
    };
    let tagged =
        |e: &AlertEvent, m: &Metadata, at| NewEvent::of_tagged(e, e.type_name(), m.clone(), at);
    let fact =
        |e: &IncidentEvent, m: &Metadata, at| NewEvent::of_tagged(e, e.type_name(), m.clone(), at);

    // The first receipt opens the incident.
    let level = ImpactLevel::of_severity(s.severity);
    let opened = IncidentEvent::IncidentOpened {
        incident_id: id,
        service_id: Some(svc.id),
        title: format!(
            "{} on {}",
            ["latency", "errors", "saturation"][s.picks[0] as usize % 3],
            svc.name
        ),
        severity: s.severity,
        category: Category::Application,
        group_key: Some(group_key.clone()),
        impact_start: start,
        planned_window: None,
        impact_level: Some(level),
    };
    let (astream, aversion, receipt) = receive(
        s.picks[0],
        start,
        alerts,
        Some(Decision::OpenedIncident { incident_id: id }),
    );
    let bound = GroupEvent::AlertGroupBound {
        incident_id: id,
        service_id: svc.id,
        group_key: group_key.clone(),
    };
    loader
        .append(vec![
            stream(
                incident_stream.clone(),
                ExpectedVersion::NoStream,
                vec![fact(&opened, &monitoring, start)],
            ),
            stream(
                astream,
                ExpectedVersion::Exact(aversion),
                vec![tagged(&receipt, &monitoring, start)],
            ),
            stream(
                group_stream.clone(),
                ExpectedVersion::Exact(groups[s.group]),
                vec![NewEvent::of_tagged(
                    &bound,
                    bound.type_name(),
                    monitoring.clone(),
                    start,
                )],
            ),
        ])
        .await;
    groups[s.group] += 1;
    let gv = groups[s.group];
    let mut version = 1i64;
    for (n, fp) in s.picks.iter().enumerate().skip(1) {
        let at = start + chrono::Duration::milliseconds(receipt_every * n as i64);
        let attaching = alerts.get(fp).is_none_or(|a| a.firing.is_none());
        let (astream, aversion, receipt) = receive(*fp, at, alerts, None);
        let mut streams = vec![stream(
            astream,
            ExpectedVersion::Exact(aversion),
            vec![tagged(&receipt, &monitoring, at)],
        )];
        if attaching {
            // An attachment asserts the group's binding, writing nothing to it.
            streams.push(stream(
                group_stream.clone(),
                ExpectedVersion::Exact(gv),
                Vec::new(),
            ));
        }
        loader.append(streams).await;
    }
    let firing: Vec<u64> = {
        let mut f: Vec<u64> = s.picks.clone();
        f.sort_unstable();
        f.dedup();
        f
    };
    for r in 0..s.repeats {
        let fp = firing[r % firing.len()];
        let at =
            start + chrono::Duration::minutes(s.minutes * (r as i64 + 1) / (s.repeats as i64 + 2));
        let (astream, aversion, receipt) = receive(fp, at, alerts, None);
        loader
            .append(vec![stream(
                astream,
                ExpectedVersion::Exact(aversion),
                vec![tagged(&receipt, &monitoring, at)],
            )])
            .await;
    }
    let mut facts: Vec<(DateTime<Utc>, IncidentEvent)> = Vec::new();
    let ack_at = start + chrono::Duration::minutes(s.minutes.min(5));
    facts.push((ack_at, IncidentEvent::IncidentAcknowledged {}));
    if s.note {
        facts.push((
            ack_at,
            IncidentEvent::NoteAdded {
                note_id: Uuid::now_v7(),
                text: "Looking into it; the dashboards show the same.".into(),
                visibility: Visibility::Internal,
            },
        ));
    }
    let mut current = level;
    for c in 0..s.level_changes {
        let to = match current {
            ImpactLevel::Outage => ImpactLevel::Partial,
            ImpactLevel::Partial => ImpactLevel::Degraded,
            ImpactLevel::Degraded => ImpactLevel::Outage,
        };
        let at = start + chrono::Duration::minutes(s.minutes * (c as i64 + 1) / 3);
        facts.push((
            at,
            IncidentEvent::ImpactLevelChanged {
                from: current,
                to,
                at,
                reason: None,
            },
        ));
        current = to;
    }
    facts.push((
        end,
        IncidentEvent::IncidentMitigated {
            impact_end: end,
            cause: None,
        },
    ));
    for (at, e) in facts {
        loader
            .append(vec![stream(
                incident_stream.clone(),
                ExpectedVersion::Exact(version),
                vec![fact(&e, &operator, at)],
            )])
            .await;
        version += 1;
    }
    for fp in firing {
        let a = alerts.get_mut(&fp).expect("a firing alert");
        let (alert_id, _) = a.firing.take().expect("firing");
        let resolved = AlertEvent::AlertResolved {
            alert_id,
            by: ResolvedBy::Source,
            at: end,
            incident_id: Some(id),
        };
        let v = a.version;
        a.version += 1;
        loader
            .append(vec![stream(
                alert::alert_stream(&format!("{}/fp{fp}", svc.name)),
                ExpectedVersion::Exact(v),
                vec![tagged(&resolved, &monitoring, end)],
            )])
            .await;
    }
    let resolved_at = end + chrono::Duration::minutes(10);
    let released = GroupEvent::AlertGroupReleased { incident_id: id };
    loader
        .append(vec![
            stream(
                incident_stream.clone(),
                ExpectedVersion::Exact(version),
                vec![fact(
                    &IncidentEvent::IncidentResolved {},
                    &operator,
                    resolved_at,
                )],
            ),
            stream(
                group_stream,
                ExpectedVersion::Any,
                vec![NewEvent::of_tagged(
                    &released,
                    released.type_name(),
                    operator.clone(),
                    resolved_at,
                )],
            ),
        ])
        .await;
    groups[s.group] += 1;
    version += 1;
    loader
        .append(vec![stream(
            incident_stream,
            ExpectedVersion::Exact(version),
            vec![fact(
                &IncidentEvent::IncidentClosed {},
                &operator,
                end + chrono::Duration::days(1),
            )],
        )])
        .await;
    loader.incidents.lock().await.push(id);
}

/// A monthly maintenance window at `at` serving a standard change.
async fn maintenance(loader: &Loader, svc: &Svc, at: DateTime<Utc>) {
    let maintainer = meta("maint-1", "maintainer", "api");
    let change_id = Uuid::now_v7();
    let window_id = Uuid::now_v7();
    let change_stream = opsledger_domain::change::change_stream(change_id);
    let window_stream = opsledger_domain::window::window_stream(window_id);
    let services = vec![svc.id];
    let end = at + chrono::Duration::hours(2);
    let change = |value: serde_json::Value| {
        let e: opsledger_domain::change::ChangeEvent =
            serde_json::from_value(value).expect("a change event");
        e
    };
    let window = |value: serde_json::Value| {
        let e: opsledger_domain::window::WindowEvent =
            serde_json::from_value(value).expect("a window event");
        e
    };
    let steps: Vec<(bool, DateTime<Utc>, serde_json::Value)> = vec![
        (
            true,
            at - chrono::Duration::days(10),
            json!({ "type": "ChangeRequested", "data": {
            "change_id": change_id, "service_ids": services, "kind": "standard",
            "category": "security_patch", "title": format!("Monthly patches for {}", svc.name),
            "description": "OS and middleware security updates", "risk": "low",
            "impact": "Restarts during the window", "rollback_plan": "Reinstall the previous packages",
            "links": [] } }),
        ),
        (
            false,
            at - chrono::Duration::days(9),
            json!({ "type": "WindowPlanned", "data": {
            "window_id": window_id, "service_ids": services,
            "title": format!("Monthly maintenance of {}", svc.name), "description": null,
            "start": at, "end": end, "rrule": null, "change_id": change_id } }),
        ),
        (
            true,
            at - chrono::Duration::days(9),
            json!({ "type": "ChangeScheduled", "data": {
            "service_ids": services, "start": at, "end": end, "window_id": window_id,
            "conflicts": [], "freezes": [], "minutes_spent": 15 } }),
        ),
        (
            false,
            at - chrono::Duration::days(7),
            json!({ "type": "WindowAnnounced", "data": {
            "service_ids": services, "late": false, "recipients": 0 } }),
        ),
        (
            false,
            at,
            json!({ "type": "WindowStarted", "data": { "service_ids": services } }),
        ),
        (
            true,
            at,
            json!({ "type": "ChangeStarted", "data": { "service_ids": services } }),
        ),
        (
            true,
            at + chrono::Duration::minutes(70),
            json!({ "type": "ChangeCompleted", "data": {
            "service_ids": services, "minutes_spent": 70 } }),
        ),
        (
            false,
            end,
            json!({ "type": "WindowEnded", "data": { "service_ids": services, "minutes_spent": 120 } }),
        ),
        (
            true,
            at + chrono::Duration::days(1),
            json!({ "type": "ChangeReviewed", "data": {
            "service_ids": services, "summary": "Patched; no incident", "minutes_spent": 10 } }),
        ),
    ];
    let (mut cv, mut wv) = (0i64, 0i64);
    for (is_change, when, value) in steps {
        let (id, version, event) = if is_change {
            let e = change(value);
            (
                change_stream.clone(),
                &mut cv,
                NewEvent::of_tagged(&e, e.type_name(), maintainer.clone(), when),
            )
        } else {
            let e = window(value);
            (
                window_stream.clone(),
                &mut wv,
                NewEvent::of_tagged(&e, e.type_name(), maintainer.clone(), when),
            )
        };
        let expected = if *version == 0 {
            ExpectedVersion::NoStream
        } else {
            ExpectedVersion::Exact(*version)
        };
        loader.append(vec![stream(id, expected, vec![event])]).await;
        *version += 1;
    }
}

// ------------------------------------------------------------ P4

/// Rebuilds every projection, one after another as `opsledger rebuild`
/// does, then `BENCH_P4_PARALLEL` (3) at a time with
/// `projection::rebuild_all` (each once those it reads are rebuilt), and
/// prints both rates.
pub(crate) async fn rebuild_all(pool: &opsledger_store::Pool, events: i64, name: &str) {
    println!();
    println!("P4: rebuild of every projection from the log ({events} events), one after another");
    println!(
        "{:<16} {:>10} {:>10} {:>14}",
        "projection", "replayed", "seconds", "replayed/s"
    );
    let only: Option<String> = std::env::var("BENCH_P4_ONLY").ok();
    let started = Instant::now();
    for p in opsledger_store::projections() {
        if only
            .as_deref()
            .is_some_and(|o| !o.split(',').any(|n| n == p.name()))
        {
            continue;
        }
        let t = Instant::now();
        let replayed = opsledger_store::projection::rebuild(pool, p.as_ref())
            .await
            .unwrap_or_else(|e| panic!("rebuilding {}: {e:?}", p.name()));
        let s = t.elapsed().as_secs_f64();
        println!(
            "{:<16} {:>10} {:>10.2} {:>14.0}",
            p.name(),
            replayed,
            s,
            replayed as f64 / s
        );
    }
    let total = started.elapsed().as_secs_f64();
    println!(
        "all projections one after another: {total:.1} s, {:.0} events of the log a second",
        events as f64 / total
    );
    let parallel: usize = var("BENCH_P4_PARALLEL", 3);
    if parallel > 1 && only.is_none() {
        let started = Instant::now();
        let done = opsledger_store::projection::rebuild_all(
            pool,
            &opsledger_store::projections(),
            parallel,
        )
        .await
        .unwrap();
        let total = started.elapsed().as_secs_f64();
        let slowest = done
            .iter()
            .max_by_key(|d| d.took)
            .map(|d| format!("{} {:.1} s", d.name, d.took.as_secs_f64()))
            .unwrap_or_default();
        println!(
            "all projections, {parallel} at a time: {total:.1} s, {:.0} events of the log a second \
             (longest: {slowest})",
            events as f64 / total
        );
    }
    println!("target: >= 50,000 events/s");
    // As `opsledger rebuild` does after rebuilding, and autovacuum would in
    // its own time: the measurements below see the read models settled.
    let started = Instant::now();
    for p in opsledger_store::projections() {
        opsledger_store::projection::settle(&database(name), p.as_ref())
            .await
            .unwrap();
    }
    println!(
        "read models vacuumed and analyzed in {:.1} s (not counted above)",
        started.elapsed().as_secs_f64()
    );
}

/// Disk taken by the log and by the read models.
async fn disk(pool: &opsledger_store::Pool, events: i64) {
    let client = pool.get().await.unwrap();
    let row = client
        .query_one(
            "SELECT pg_total_relation_size('events')::int8, \
               (SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::int8 FROM pg_class c \
                JOIN pg_namespace n ON n.oid = c.relnamespace \
                WHERE n.nspname = 'public' AND c.relkind = 'r' \
                  AND (c.relname LIKE 'proj\\_%' OR c.relname = 'escalation_timers')), \
               pg_database_size(current_database())::int8",
            &[],
        )
        .await
        .unwrap();
    let (log, models, whole): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    let per_million = |bytes: i64| bytes as f64 / (1 << 20) as f64 / (events as f64 / 1e6);
    println!();
    println!(
        "disk: events (with indexes) {:.0} MiB, {:.0} MiB per million events; read models {:.0} MiB, \
         {:.0} MiB per million; whole database {:.0} MiB, {:.0} MiB per million",
        log as f64 / (1 << 20) as f64,
        per_million(log),
        models as f64 / (1 << 20) as f64,
        per_million(models),
        whole as f64 / (1 << 20) as f64,
        per_million(whole)
    );
}

// ------------------------------------------------------------ P3

/// Times `n` GET requests, one at a time over one keep-alive connection,
/// after `warm` unmeasured ones; returns the latencies in ms, sorted, and
/// the bytes answered.
async fn timed_gets(svc: &Service, token: &str, paths: &[String], warm: usize) -> (Vec<f64>, u64) {
    timed(svc, token, paths, warm, false).await
}

/// As `timed_gets`, as an API client (`page` false: the bearer token) or a
/// signed-in browser (the session cookie, `Accept: text/html`).
pub(crate) async fn timed(
    svc: &Service,
    token: &str,
    paths: &[String],
    warm: usize,
    page: bool,
) -> (Vec<f64>, u64) {
    let mut conn = LoadClient::connect(svc.addr).await;
    let mut ms = Vec::new();
    let mut bytes = 0u64;
    for (i, path) in paths.iter().enumerate() {
        let t = Instant::now();
        let (status, body) = if page {
            conn.get_page(path, token).await
        } else {
            conn.get(path, token).await
        };
        let took = t.elapsed().as_secs_f64() * 1e3;
        assert_eq!(
            status,
            200,
            "GET {path}: {}",
            String::from_utf8_lossy(&body)
        );
        if i >= warm {
            ms.push(took);
            bytes += body.len() as u64;
        }
    }
    ms.sort_by(f64::total_cmp);
    (ms, bytes)
}

pub(crate) fn summary(ms: &[f64]) -> String {
    format!(
        "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} requests)",
        quantile(ms, 0.5),
        quantile(ms, 0.99),
        ms.last().copied().unwrap_or(f64::NAN),
        ms.len()
    )
}

async fn timelines(svc: &Service, pool: &opsledger_store::Pool, token: &str) {
    let n: usize = var("BENCH_P3_TIMELINES", 1_000);
    let warm = 100;
    let ids: Vec<Uuid> = pool
        .get()
        .await
        .unwrap()
        .query(
            "SELECT incident_id FROM proj_incidents ORDER BY random() LIMIT $1",
            &[&((n + warm) as i64)],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let paths: Vec<String> = ids
        .iter()
        .map(|id| format!("/api/v1/incidents/{id}/timeline"))
        .collect();
    let (ms, bytes) = timed_gets(svc, token, &paths, warm.min(paths.len() / 2)).await;
    println!();
    println!(
        "P3 timeline: GET /incidents/{{id}}/timeline of random incidents: {} ; {:.0} KiB a timeline on average",
        summary(&ms),
        bytes as f64 / 1024.0 / ms.len().max(1) as f64
    );
    println!("target: p99 <= 10 ms");
}

async fn clients_of(pool: &opsledger_store::Pool) -> Vec<Uuid> {
    pool.get()
        .await
        .unwrap()
        .query("SELECT client_id FROM proj_clients ORDER BY name", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

async fn downtime(
    svc: &Service,
    pool: &opsledger_store::Pool,
    token: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) {
    let rounds: usize = var("BENCH_P3_ROUNDS", 5);
    let clients = clients_of(pool).await;
    let (f, t) = (
        from.to_rfc3339_opts(SecondsFormat::Secs, true),
        to.to_rfc3339_opts(SecondsFormat::Secs, true),
    );
    let paths: Vec<String> = clients
        .iter()
        .map(|c| format!("/api/v1/reports/downtime?client={c}&from={f}&to={t}"))
        .collect();
    // One unmeasured round, then the measured ones.
    timed_gets(svc, token, &paths, paths.len()).await;
    let mut calls = Vec::new();
    let mut totals = Vec::new();
    for _ in 0..rounds {
        let t0 = Instant::now();
        let (ms, _) = timed_gets(svc, token, &paths, 0).await;
        totals.push(t0.elapsed().as_secs_f64() * 1e3);
        calls.extend(ms);
    }
    calls.sort_by(f64::total_cmp);
    totals.sort_by(f64::total_cmp);
    println!();
    println!(
        "P3 downtime: one-year report per client (10 services each), GET /reports/downtime?client=: {}",
        summary(&calls)
    );
    println!(
        "P3 downtime: all {} clients ({} services) one after another: median {:.0} ms, worst {:.0} ms of {rounds} rounds",
        clients.len(),
        clients.len() * SERVICES_PER_CLIENT,
        quantile(&totals, 0.5),
        totals.last().copied().unwrap_or(f64::NAN)
    );
    // The whole tenant in one request, where the route takes neither
    // client nor service (every service the caller may see).
    let whole = format!("/api/v1/reports/downtime?from={f}&to={t}");
    let mut conn = LoadClient::connect(svc.addr).await;
    let (status, body) = conn.get(&whole, token).await;
    if status == 200 {
        let services = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["services"].as_array().map(Vec::len))
            .unwrap_or(0);
        // Enough requests that the p99 is not merely the slowest one.
        let requests: usize = var("BENCH_P3_WHOLE_REQUESTS", 100);
        let paths: Vec<String> = (0..requests.max(1)).map(|_| whole.clone()).collect();
        let (ms, bytes) = timed_gets(svc, token, &paths, 0).await;
        println!(
            "P3 downtime: all {services} services in one request (neither client nor service): {} ; {:.0} KiB",
            summary(&ms),
            bytes as f64 / 1024.0 / ms.len().max(1) as f64
        );
    } else {
        println!(
            "P3 downtime: one request over all services: not available (answered {status}: {})",
            String::from_utf8_lossy(&body)
                .chars()
                .take(160)
                .collect::<String>()
        );
    }
    println!("target: one-year report over 500 services <= 250 ms");
}

async fn monthly(
    svc: &Service,
    pool: &opsledger_store::Pool,
    token: &str,
    year_start: DateTime<Utc>,
) {
    let clients = clients_of(pool).await;
    let Some(client) = clients.first() else {
        return;
    };
    let month = format!("{}-06", year_start.year());
    let probe = format!("/api/v1/reports/monthly?client={client}&month={month}");
    let mut conn = LoadClient::connect(svc.addr).await;
    let (status, body) = conn.get(&probe, token).await;
    println!();
    if status == 404 || status == 405 {
        println!(
            "P3 monthly report: not available (GET /api/v1/reports/monthly answered {status}: {})",
            String::from_utf8_lossy(&body)
                .chars()
                .take(160)
                .collect::<String>()
        );
        return;
    }
    assert_eq!(
        status,
        200,
        "monthly report: {}",
        String::from_utf8_lossy(&body)
    );
    let paths: Vec<String> = (0..200).map(|_| probe.clone()).collect();
    let (ms, bytes) = timed_gets(svc, token, &paths, 20).await;
    println!(
        "P3 monthly report of one client ({month}): {} ; {:.0} KiB",
        summary(&ms),
        bytes as f64 / 1024.0 / ms.len().max(1) as f64
    );
}
