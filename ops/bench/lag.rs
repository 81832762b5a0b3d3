//! P2 (SPEC §11): how long after its commit each projection has applied an
//! event, under an incident storm: alerts that each open an incident of
//! their own (a group key each), posted over HTTP to the release service.
//!
//! Two phases on one service and database:
//!
//! 1. **Paced** (`BENCH_SECONDS`, 30 s): alerts at the rate that makes
//!    `BENCH_LAG_EVENTS_PER_S` (1,000) events a second in the log, every
//!    event counted (receipts, group bindings, incident events, what the
//!    notifier and the escalation worker append). The rate of events per
//!    alert is measured first, in an unmeasured warm-up. Prints the lag
//!    p50/p99/max per projection.
//! 2. **Storm** (`BENCH_STORM_SECONDS`, 10 s): `BENCH_CLIENTS` (16) clients
//!    posting as fast as the service answers, as the issue measured it.
//!    Prints, per projection, the events it was behind when the load ended,
//!    the most it was behind, how long after the load its last event was
//!    applied, and the rate at which it drained.
//!
//! How lag is measured. A sampler reads every projection's checkpoint
//! (`projection_checkpoints`, one query) every `SAMPLE_EVERY` on a
//! connection of its own and stamps each reading with the clock when the
//! answer arrived. Afterwards every event of the phase is read back with its
//! `(tx_id, position)` and `recorded_at`; an event is applied by a
//! projection (of whose streams it is) at the first reading whose
//! checkpoint is at or past it (checkpoints only move forward, and a
//! checkpoint commits with the batch that applied the events). Lag = that
//! reading's instant − `recorded_at`. Both ends err on the long side:
//! `recorded_at` is the committer's clock when it planned the batch, before
//! its COMMIT (so the commit's own flush is counted), and the reading's
//! instant is after the checkpoint's commit by up to one sampling interval
//! plus the query. The clocks are one machine's. The inline alerts read
//! model is written by the append itself and has no lag.
//!
//! Each service has one client subscription, so the notifier asks for a
//! mail per incident opened (no SMTP is configured: the requests wait in the
//! outbox); `BENCH_LAG_SUBSCRIBERS=0` leaves them out, and the notifier then
//! appends nothing. `BENCH_LAG_POLICY=1` gives the services an escalation
//! policy (level 1, due at once, to one responder), so the escalation worker
//! fires a step per incident and the notifier tells the responder; by
//! default the services have none.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use opsledger_domain::access::Role;
use opsledger_store::projection::SharedProjection;
use opsledger_store::Pool;
use serde_json::json;
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::service::{fresh_database, quantile, Service};
use crate::LoadClient;

/// How often the sampler reads the checkpoints: the resolution of every
/// lag figure.
const SAMPLE_EVERY: Duration = Duration::from_millis(5);
/// Longest wait for the projections to catch up after a phase.
const CATCH_UP_MAX: Duration = Duration::from_secs(900);
/// Clients and services of the storm's tenant.
const CLIENTS: usize = 2;
const SERVICES_PER_CLIENT: usize = 5;

fn var<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub async fn lag_benchmark() {
    let target_events_per_s: f64 = var("BENCH_LAG_EVENTS_PER_S", 1_000.0);
    let paced_s: u64 = crate::seconds_or(30);
    let storm_s: u64 = var("BENCH_STORM_SECONDS", 10);
    let clients: usize = var("BENCH_CLIENTS", 16);
    let with_policy = var("BENCH_LAG_POLICY", 0u8) == 1;
    let with_subscribers = var("BENCH_LAG_SUBSCRIBERS", 1u8) == 1;

    let db = fresh_database("bench_lag").await;
    let pool = opsledger_store::connect(&db).unwrap();
    let tenant = Uuid::now_v7();
    opsledger_server::commands::register_tenant(&pool, tenant, "Bench MSP", "bench")
        .await
        .unwrap();
    let svc = Service::start("bench_lag", tenant).await;
    let services = setup(&svc, with_subscribers, with_policy).await;
    let token = svc.token("alertmanager", &[Role::Integration], None);
    let followers: Vec<SharedProjection> = opsledger_store::projections()
        .into_iter()
        .filter(|p| !p.inline())
        .collect();
    caught_up(&pool, &followers).await;

    println!(
        "P2: projection lag under an incident storm (each alert opens its own incident); \
         {} services, a subscriber each: {}, escalation policy: {}",
        services.len(),
        if with_subscribers { "yes" } else { "no" },
        if with_policy { "yes" } else { "no" }
    );

    // Warm-up: how many events an alert brings into the log, all told.
    let warm_start = Utc::now();
    let (warm_alerts, _) = storm(
        svc.addr,
        &token,
        clients,
        &services,
        "warm",
        Duration::from_secs(3),
        Some(100.0),
    )
    .await;
    caught_up(&pool, &followers).await;
    let warm_events = events_since(&pool, warm_start).await;
    let per_alert = warm_events as f64 / warm_alerts.max(1) as f64;
    let alerts_per_s = target_events_per_s / per_alert;
    println!(
        "warm-up: {warm_alerts} alerts brought {warm_events} events ({per_alert:.2} per alert); \
         pacing {alerts_per_s:.0} alerts/s for {target_events_per_s:.0} events/s"
    );

    // Phase 1: paced.
    let sampler = Sampler::start(&pool).await;
    let start = Utc::now();
    let (accepted, rate) = storm(
        svc.addr,
        &token,
        clients,
        &services,
        "paced",
        Duration::from_secs(paced_s),
        Some(alerts_per_s),
    )
    .await;
    let end = Utc::now();
    caught_up(&pool, &followers).await;
    // A reading after the last checkpoint moved.
    tokio::time::sleep(SAMPLE_EVERY * 4).await;
    let samples = sampler.stop().await;
    let events = phase_events(&pool, start, Utc::now()).await;
    let in_load = events.iter().filter(|e| e.recorded_at <= end).count();
    let seconds = (end - start).num_milliseconds() as f64 / 1000.0;
    println!();
    println!(
        "paced phase: {accepted} alerts in {seconds:.1} s ({rate:.0} alerts/s); \
         {in_load} events committed during it ({:.0} events/s), {} with what followed",
        in_load as f64 / seconds,
        events.len()
    );
    println!(
        "{:<16} {:>8} {:>10} {:>10} {:>10} {:>12}",
        "projection", "events", "p50 ms", "p99 ms", "max ms", "max behind"
    );
    for p in &followers {
        let r = lags(p.as_ref(), &events, &samples);
        println!(
            "{:<16} {:>8} {:>10.1} {:>10.1} {:>10.1} {:>12}",
            p.name(),
            r.events,
            r.p50_ms,
            r.p99_ms,
            r.max_ms,
            r.max_behind
        );
    }
    println!("target: p99 <= 100 ms at 1,000 events/s sustained");

    // Phase 2: a storm as fast as the service takes it.
    let sampler = Sampler::start(&pool).await;
    let start = Utc::now();
    let (accepted, rate) = storm(
        svc.addr,
        &token,
        clients,
        &services,
        "storm",
        Duration::from_secs(storm_s),
        None,
    )
    .await;
    let end = Utc::now();
    caught_up(&pool, &followers).await;
    // A reading after the last checkpoint moved.
    tokio::time::sleep(SAMPLE_EVERY * 4).await;
    let samples = sampler.stop().await;
    let events = phase_events(&pool, start, Utc::now()).await;
    let in_load = events.iter().filter(|e| e.recorded_at <= end).count();
    let seconds = (end - start).num_milliseconds() as f64 / 1000.0;
    println!();
    println!(
        "storm: {clients} clients, {accepted} alerts in {seconds:.1} s ({rate:.0} alerts/s), \
         {in_load} events ({:.0} events/s)",
        in_load as f64 / seconds
    );
    println!(
        "{:<16} {:>8} {:>12} {:>12} {:>14} {:>14} {:>10}",
        "projection", "events", "behind@end", "max behind", "last applied", "drain ev/s", "p99 ms"
    );
    for p in &followers {
        let r = lags(p.as_ref(), &events, &samples);
        let d = drain(p.as_ref(), &events, &samples, end);
        println!(
            "{:<16} {:>8} {:>12} {:>12} {:>12.2} s {:>14} {:>10.0}",
            p.name(),
            r.events,
            d.behind_at_end,
            r.max_behind,
            d.last_applied_after_s,
            if d.behind_at_end == 0 {
                "-".to_owned()
            } else {
                format!("{:.0}", d.rate)
            },
            r.p99_ms
        );
    }
    println!("(last applied: seconds after the load ended until the projection had applied every event committed by then)");
    println!("service peak RSS {:.0} MB", svc.peak_rss_mb());
    svc.stop().await;
}

/// Clients, services (with a client subscription each, if asked) and, if
/// asked, an escalation policy over them all. Returns the services' names.
async fn setup(svc: &Service, with_subscribers: bool, with_policy: bool) -> Vec<String> {
    let admin = svc.token("bench", &[Role::Admin], None);
    let mut names = Vec::new();
    let mut ids = Vec::new();
    for c in 0..CLIENTS {
        let client = svc
            .post(
                "/api/v1/clients",
                &admin,
                &json!({ "name": format!("Client {c}") }),
            )
            .await;
        for s in 0..SERVICES_PER_CLIENT {
            let name = format!("svc-{c}-{s}");
            let service = svc
                .post(
                    "/api/v1/services",
                    &admin,
                    &json!({ "client_id": client["id"], "name": name,
                        "sla_target_pct": 99.9, "notice_period_h": 24 }),
                )
                .await;
            if with_subscribers {
                svc.post(
                    "/api/v1/subscriptions",
                    &admin,
                    &json!({ "service_id": service["id"], "name": "Contact",
                    "email": format!("contact-{c}-{s}@example.test"), "locale": "en",
                    "kinds": ["incident_opened", "incident_mitigated", "incident_resolved"],
                    "min_severity": "info" }),
                )
                .await;
            }
            ids.push(service["id"].clone());
            names.push(name);
        }
    }
    if with_policy {
        let user = svc
            .post(
                "/api/v1/users",
                &admin,
                &json!({ "name": "Responder", "email": "oncall@example.test" }),
            )
            .await;
        svc.post(
            "/api/v1/escalation-policies",
            &admin,
            &json!({ "name": "Storm", "service_ids": ids,
                "levels": [{ "targets": [{ "type": "user", "id": user["id"] }], "timeout_minutes": 60 }] }),
        )
        .await;
    }
    names
}

/// Alerts from `clients` keep-alive connections for `length`, each with a
/// dedup key and group key of its own (so each opens an incident), on the
/// services in turn; at `alerts_per_s` in all if given (each client keeps
/// its own schedule and catches up when late), else as fast as answered.
/// Returns the alerts accepted and their rate.
async fn storm(
    addr: std::net::SocketAddr,
    token: &str,
    clients: usize,
    services: &[String],
    name: &str,
    length: Duration,
    alerts_per_s: Option<f64>,
) -> (u64, f64) {
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let run = Uuid::now_v7().simple().to_string();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (token, stop, count) = (token.to_owned(), stop.clone(), count.clone());
            let failed = failed.clone();
            let services = services.to_vec();
            let key = format!("{name}-{}-c{c}", &run[run.len() - 6..]);
            let period = alerts_per_s.map(|r| Duration::from_secs_f64(clients as f64 / r));
            tokio::spawn(async move {
                let mut conn = LoadClient::connect(addr).await;
                let mut n = 0u64;
                let begin = tokio::time::Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    if let Some(period) = period {
                        tokio::time::sleep_until(begin + period.mul_f64(n as f64)).await;
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                    }
                    n += 1;
                    let service = &services[(c + n as usize) % services.len()];
                    let body = format!(
                        r#"{{"source":"bench","dedup_key":"{key}-a{n}","group_key":"{key}-a{n}","service":"{service}","summary":"p99 latency above 2s on {service}","severity":"critical","category":"application","labels":{{"env":"prod"}}}}"#
                    );
                    let (status, answer) = conn.post("/api/v1/alerts", &token, &body).await;
                    if (200..300).contains(&status) {
                        count.fetch_add(1, Ordering::Relaxed);
                    } else if status >= 500 {
                        // Counted and shown: the storm goes on.
                        failed.fetch_add(1, Ordering::Relaxed);
                        if failed.load(Ordering::Relaxed) <= 3 {
                            eprintln!(
                                "ingest answered {status}: {}",
                                String::from_utf8_lossy(&answer)
                            );
                        }
                    } else {
                        panic!("ingest answered {status}: {}", String::from_utf8_lossy(&answer));
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(length).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let accepted = count.load(Ordering::Relaxed);
    let failed = failed.load(Ordering::Relaxed);
    if failed > 0 {
        println!("{name}: {failed} alerts answered 5xx (not counted as accepted)");
    }
    (accepted, accepted as f64 / started.elapsed().as_secs_f64())
}

/// Waits until no follower has an event of its streams left to apply.
async fn caught_up(pool: &Pool, followers: &[SharedProjection]) {
    let since = Instant::now();
    loop {
        let mut behind = Vec::new();
        for p in followers {
            let lag = opsledger_store::projection::lag(pool, p.as_ref())
                .await
                .unwrap();
            if lag.behind_events > 0 {
                behind.push(format!("{} {}", p.name(), lag.behind_events));
            }
        }
        if behind.is_empty() {
            return;
        }
        assert!(
            since.elapsed() < CATCH_UP_MAX,
            "the projections did not catch up: {behind:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn events_since(pool: &Pool, since: DateTime<Utc>) -> i64 {
    pool.get()
        .await
        .unwrap()
        .query_one(
            "SELECT count(*) FROM events WHERE recorded_at >= $1",
            &[&since],
        )
        .await
        .unwrap()
        .get(0)
}

/// An event of a phase, as lag is computed from it.
struct PhaseEvent {
    cursor: (i64, i64),
    stream_id: String,
    recorded_at: DateTime<Utc>,
}

/// Every event recorded in `[from, to]`, in the global order.
async fn phase_events(pool: &Pool, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<PhaseEvent> {
    let rows = pool
        .get()
        .await
        .unwrap()
        .query(
            "SELECT tx_id::text::int8, position, stream_id, recorded_at FROM events \
             WHERE recorded_at >= $1 AND recorded_at <= $2 ORDER BY tx_id, position",
            &[&from, &to],
        )
        .await
        .unwrap();
    rows.iter()
        .map(|r| PhaseEvent {
            cursor: (r.get(0), r.get(1)),
            stream_id: r.get(2),
            recorded_at: r.get(3),
        })
        .collect()
}

/// One reading of every checkpoint.
struct Sample {
    at: DateTime<Utc>,
    checkpoints: std::collections::HashMap<String, (i64, i64)>,
}

struct Sampler {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    async fn start(pool: &Pool) -> Sampler {
        let client = pool.get().await.unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let task = {
            let (stop, samples) = (stop.clone(), samples.clone());
            tokio::spawn(async move {
                let statement = client
                    .prepare(
                        "SELECT name, last_tx_id::text::int8, last_position FROM projection_cursors",
                    )
                    .await
                    .unwrap();
                while !stop.load(Ordering::Relaxed) {
                    let rows = client.query(&statement, &[]).await.unwrap();
                    let at = Utc::now();
                    let checkpoints = rows
                        .iter()
                        .map(|r| (r.get::<_, String>(0), (r.get(1), r.get(2))))
                        .collect();
                    samples.lock().await.push(Sample { at, checkpoints });
                    tokio::time::sleep(SAMPLE_EVERY).await;
                }
            })
        };
        Sampler {
            stop,
            samples,
            task,
        }
    }

    async fn stop(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
        std::mem::take(&mut *self.samples.lock().await)
    }
}

fn follows(p: &dyn opsledger_store::projection::Projection, stream: &str) -> bool {
    p.streams().iter().any(|prefix| stream.starts_with(prefix))
}

/// The checkpoint of `name` in each sample, in order.
fn checkpoints(name: &str, samples: &[Sample]) -> Vec<(DateTime<Utc>, (i64, i64))> {
    samples
        .iter()
        .map(|s| (s.at, s.checkpoints.get(name).copied().unwrap_or((0, 0))))
        .collect()
}

struct Lags {
    events: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    /// The most events of its streams committed (by `recorded_at`) and not
    /// yet applied at any reading.
    max_behind: usize,
}

/// Commit-to-applied lag of every event of the projection's streams.
fn lags(
    p: &dyn opsledger_store::projection::Projection,
    events: &[PhaseEvent],
    samples: &[Sample],
) -> Lags {
    let own: Vec<&PhaseEvent> = events.iter().filter(|e| follows(p, &e.stream_id)).collect();
    let marks = checkpoints(p.name(), samples);
    let mut ms: Vec<f64> = own
        .iter()
        .map(|e| {
            // The first reading at or past the event: checkpoints only move on.
            let i = marks.partition_point(|(_, c)| *c < e.cursor);
            match marks.get(i) {
                Some((at, _)) => (*at - e.recorded_at).num_microseconds().unwrap_or(0) as f64 / 1e3,
                None => f64::INFINITY,
            }
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    let mut max_behind = 0;
    for (at, checkpoint) in &marks {
        let first_unapplied = own.partition_point(|e| e.cursor <= *checkpoint);
        let behind = own[first_unapplied..]
            .iter()
            .filter(|e| e.recorded_at <= *at)
            .count();
        max_behind = max_behind.max(behind);
    }
    Lags {
        events: own.len(),
        p50_ms: quantile(&ms, 0.50),
        p99_ms: quantile(&ms, 0.99),
        max_ms: ms.last().copied().unwrap_or(f64::NAN),
        max_behind,
    }
}

struct Drain {
    behind_at_end: usize,
    last_applied_after_s: f64,
    /// Events behind at the end over the time taken to apply them.
    rate: f64,
}

/// How far behind the projection was when the load ended at `end`, and how
/// long it took to apply everything committed by then.
fn drain(
    p: &dyn opsledger_store::projection::Projection,
    events: &[PhaseEvent],
    samples: &[Sample],
    end: DateTime<Utc>,
) -> Drain {
    let own: Vec<&PhaseEvent> = events
        .iter()
        .filter(|e| follows(p, &e.stream_id) && e.recorded_at <= end)
        .collect();
    let marks = checkpoints(p.name(), samples);
    let at_end = marks
        .iter()
        .find(|(at, _)| *at >= end)
        .map_or((0, 0), |(_, c)| *c);
    let behind_at_end = own.iter().filter(|e| e.cursor > at_end).count();
    let last = own.iter().map(|e| e.cursor).max().unwrap_or((0, 0));
    let done = marks
        .iter()
        .find(|(_, c)| *c >= last)
        .map_or(f64::NAN, |(at, _)| {
            (*at - end).num_microseconds().unwrap_or(0) as f64 / 1e6
        })
        .max(0.0);
    Drain {
        behind_at_end,
        last_applied_after_s: done,
        rate: behind_at_end as f64 / done.max(1e-3),
    }
}
