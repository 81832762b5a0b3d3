//! Event-store append benchmark (issue #2, SPEC §11).
//!
//! For each scenario it measures opsledger's appends through the real append
//! path (group commit, expected versions, hash chain) and, in the same run on
//! the same database, pgbench doing raw INSERT transactions of rows of the
//! same size into a plain table, then prints both and their ratio.
//!
//! P1 (`ingest`) posts alerts over HTTP from 64 keep-alive connections of a
//! lean client (request bytes out, sized responses in, like pgbench on the
//! other side) and compares with pgbench's single-row INSERT transactions.
//!
//! P2 (`lag`): projection lag under an incident storm (`lag.rs`). P3
//! (`reports`): a year of 500 services loaded through the append path, then
//! timeline and report latencies; P4 (`rebuild`, also part of `reports`):
//! every projection rebuilt from that log (`reports.rs`).
//!
//! Run it with `ops/bench/run`, which starts a durable throwaway cluster.

mod audit;
mod console;
mod lag;
mod probes;
mod reports;
mod service;

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use opsledger_domain::{Metadata, NewEvent};
use opsledger_store::{AppendRequest, Committer, DbConfig, ExpectedVersion, StreamAppend};
use serde_json::json;
use uuid::Uuid;

/// Events per append in the batched scenario, and rows per raw multi-row INSERT.
const BATCH_LEN: usize = 100;
/// Clients in the batched scenario, on both sides.
const BATCH_CLIENTS: usize = 8;

pub(crate) fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is set by ops/bench/run"))
}

fn seconds() -> u64 {
    seconds_or(10)
}

/// `BENCH_SECONDS`, or `default` when it is not set.
pub(crate) fn seconds_or(default: u64) -> u64 {
    std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn payload() -> serde_json::Value {
    json!({
        "alert": "HighLatency", "service": "orders", "severity": "critical",
        "summary": "p99 latency above 2s for 5m on orders-api", "labels": { "env": "prod", "region": "ap-northeast-1" }
    })
}

fn metadata() -> Metadata {
    Metadata {
        actor: "alertmanager".into(),
        role: "integration".into(),
        request_id: Some(Uuid::new_v4().to_string()),
        correlation_id: None,
        causation_id: None,
        source: "bench".into(),
    }
}

/// Clients send the same event over and over (as pgbench sends the same
/// row), each with its own id: the benchmark measures the store, not JSON
/// building in the client.
fn new_event(template: &NewEvent) -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        ..template.clone()
    }
}

/// A raw row of the same shape and size as an event row.
fn raw_values() -> String {
    let payload = payload().to_string().replace('\'', "''");
    let metadata = serde_json::to_string(&metadata())
        .unwrap()
        .replace('\'', "''");
    let hash = format!("\\x{}", "ab".repeat(32));
    format!(
        "(gen_random_uuid(), '{tenant}', 'incident-{stream}', 1, 'TenantRegistered', 1, 'operations', \
          '{payload}', '{metadata}', now(), now(), '{hash}', '{hash}')",
        tenant = Uuid::nil(),
        stream = Uuid::nil(),
    )
}

fn pgbench(database: &str, clients: usize, script: &str) -> f64 {
    let dir = std::env::temp_dir().join(format!("opsledger-bench-{}.sql", Uuid::new_v4().simple()));
    std::fs::write(&dir, script).unwrap();
    let out = Command::new(env("PGBENCH"))
        .args([
            "-n",
            "-h",
            &env("BENCH_PGHOST"),
            "-U",
            "postgres",
            "-d",
            database,
            "-M",
            "prepared",
        ])
        .args([
            "-c",
            &clients.to_string(),
            "-j",
            &clients.min(2).to_string(),
            "-T",
            &seconds().to_string(),
        ])
        .arg("-f")
        .arg(&dir)
        .output()
        .expect("pgbench runs");
    let _ = std::fs::remove_file(&dir);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "pgbench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines()
        .find_map(|l| {
            l.strip_prefix("tps = ")
                .and_then(|r| r.split_whitespace().next())
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or_else(|| panic!("no tps in pgbench output: {text}"))
}

/// Appends for the configured time from `clients` tasks; returns events/s.
async fn appends(committer: &Committer, clients: usize, events_per_append: usize) -> f64 {
    let tenant = Uuid::now_v7();
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let committer = committer.clone();
            let stop = stop.clone();
            let count = count.clone();
            tokio::spawn(async move {
                let stream = format!("incident-{}", Uuid::now_v7());
                let template = NewEvent::new("TenantRegistered", payload(), metadata(), Utc::now());
                let mut version = 0i64;
                while !stop.load(Ordering::Relaxed) {
                    let request = AppendRequest {
                        tenant_id: tenant,
                        streams: vec![StreamAppend {
                            stream_id: stream.clone(),
                            expected: ExpectedVersion::Exact(version),
                            events: (0..events_per_append)
                                .map(|_| new_event(&template))
                                .collect(),
                        }],
                        idempotency: None,
                    };
                    committer.append(request).await.expect("append succeeds");
                    version += events_per_append as i64;
                    count.fetch_add(events_per_append as u64, Ordering::Relaxed);
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(seconds())).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    count.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let which = std::env::args().nth(1).unwrap_or_else(|| "all".into());
    if which == "all" || which == "appends" {
        append_benchmark().await;
    }
    if which == "all" || which == "ingest" {
        ingest_benchmark().await;
    }
    if which == "lag" {
        lag::lag_benchmark().await;
    }
    if which == "reports" || which == "rebuild" {
        reports::reports_benchmark(&which).await;
    }
    if which == "console" {
        console::console_benchmark().await;
    }
    if which == "probes" {
        probes::probes_benchmark().await;
    }
}

/// P1 (SPEC §11): alerts ingested over HTTP by 64 concurrent clients, beside
/// raw single-row INSERT transactions by 64 pgbench clients, same database.
///
/// The service is the release `opsledger serve` in a process of its own, as
/// deployed (and as PostgreSQL serves pgbench): this process only sends load.
/// Both sides are measured after the same unmeasured warm-up storm
/// (`BENCH_WARMUP`, 3 s), then in `BENCH_ROUNDS` rounds (3) of
/// `BENCH_SECONDS` each, alternating which side goes first; the figures are
/// the means.
/// `OPSLEDGER_*` variables reach it, so `OPSLEDGER_COMMITTERS=1 ops/bench/run
/// ingest` measures another setting. It logs at `warn`, as pgbench's server
/// logs no statements. After the load, the run waits until the alerts read
/// model holds every alert accepted and prints how long that took, and the
/// service's peak resident memory (P5).
async fn ingest_benchmark() {
    let clients: usize = std::env::var("BENCH_CLIENTS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(64);
    // A database of its own: the append benchmark's millions of events would
    // otherwise keep the projection workers busy during this measurement.
    let (svc, db, _, _) = service::serving_one_service("bench_ingest", "orders").await;
    let pool = opsledger_store::connect(&db).unwrap();
    use opsledger_domain::access::Role;
    let token = svc.token("alertmanager", &[Role::Integration], None);

    raw_table(&db).await;
    let single = format!("INSERT INTO raw_events (event_id, tenant_id, stream_id, stream_version, event_type, \
        schema_version, work_class, payload, metadata, occurred_at, recorded_at, prev_hash, hash) VALUES {};\n", raw_values());
    let addr = svc.addr;
    // Both sides are measured on a warm cluster: a storm first, unmeasured,
    // so neither pays for creating the WAL files a fresh cluster lacks, nor
    // the service for its first connections and caches.
    let (warmed, _) = storm(addr, &token, clients, "warm", warmup()).await;
    // Rounds of both sides, in alternating order, averaged: this VM's fsync
    // speed drifts by a fifth from one minute to the next, and a single
    // measurement of each side, one after the other, compares two machines.
    let rounds = rounds();
    let (mut accepted, mut ours, mut raw) = (warmed, 0.0, 0.0);
    // P6: the transparency log's sequencer beside the storm, over the same
    // window: leaves sequenced against events appended.
    let marks = pool.get().await.unwrap();
    let mut sequenced = Vec::new();
    for round in 0..rounds {
        let name = format!("storm{round}");
        let ((n, o), r, p6) = if round % 2 == 0 {
            let r = pgbench("bench_ingest", clients, &single);
            let before = log_marks(&marks).await;
            let o = storm(addr, &token, clients, &name, seconds()).await;
            (o, r, log_marks(&marks).await.since(&before, o.1))
        } else {
            let before = log_marks(&marks).await;
            let o = storm(addr, &token, clients, &name, seconds()).await;
            let p6 = log_marks(&marks).await.since(&before, o.1);
            (o, pgbench("bench_ingest", clients, &single), p6)
        };
        println!(
            "round {}: {o:>8.0} alerts/s {r:>8.0} raw tx/s  ratio {:.2}",
            round + 1,
            o / r
        );
        println!("         {p6}");
        sequenced.push(p6);
        accepted += n;
        ours += o / rounds as f64;
        raw += r / rounds as f64;
    }

    // Every accepted alert is a row of the alerts read model once its
    // projection has caught up.
    let load_ended = Instant::now();
    let reader = pool.get().await.unwrap();
    loop {
        let rows: i64 = reader
            .query_one("SELECT count(*) FROM proj_alerts", &[])
            .await
            .unwrap()
            .get(0);
        if rows as u64 >= accepted {
            break;
        }
        assert!(
            load_ended.elapsed() < Duration::from_secs(600),
            "the alerts projection did not catch up: {rows} of {accepted}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let caught_up = load_ended.elapsed();
    // And the sequencer: every event a leaf.
    let sequencer_from = Instant::now();
    loop {
        let m = log_marks(&marks).await;
        if m.leaves >= m.events {
            break;
        }
        assert!(
            sequencer_from.elapsed() < Duration::from_secs(600),
            "the sequencer did not catch up: {} leaves of {} events",
            m.leaves,
            m.events
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sequencer_caught_up = load_ended.elapsed();
    let peak_rss_mb = svc.peak_rss_mb();
    svc.stop().await;

    println!();
    println!(
        "{:<44} {:>14} {:>14} {:>7}",
        "P1: alert ingest over HTTP", "alerts/s", "raw tx/s", "ratio"
    );
    print_row(&(
        format!("plain JSON alerts, {clients} clients, mean of {rounds}"),
        ours,
        raw,
    ));
    println!("target: >= 1.00 of raw single-row INSERT transactions/s");
    println!(
        "alerts read model caught up {:.2} s after the load ({accepted} alerts); service peak RSS {peak_rss_mb:.0} MB",
        caught_up.as_secs_f64()
    );
    let n = sequenced.len().max(1) as f64;
    let leaves = sequenced.iter().map(|p| p.leaves_per_s).sum::<f64>() / n;
    let events = sequenced.iter().map(|p| p.events_per_s).sum::<f64>() / n;
    let alerts = sequenced.iter().map(|p| p.alerts_per_s).sum::<f64>() / n;
    println!();
    println!(
        "P6: sequencer {leaves:.0} leaves/s beside {alerts:.0} alerts/s x {:.2} events per alert = {events:.0} events/s (mean of {rounds}); ratio {:.2}",
        events / alerts.max(1.0),
        leaves / events.max(1.0)
    );
    println!(
        "target: leaves/s >= alerts/s x events per alert; every event a leaf {:.2} s after the load",
        sequencer_caught_up.as_secs_f64()
    );
}

/// Events appended and leaves sequenced so far.
struct LogMarks {
    at: Instant,
    events: i64,
    leaves: i64,
}

async fn log_marks(client: &opsledger_store::pool::Client) -> LogMarks {
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM events), \
               (SELECT coalesce(sum(size), 0)::int8 FROM audit_trees)",
            &[],
        )
        .await
        .unwrap();
    LogMarks {
        at: Instant::now(),
        events: row.get(0),
        leaves: row.get(1),
    }
}

/// The sequencer over one storm's window.
struct Sequenced {
    alerts_per_s: f64,
    events_per_s: f64,
    leaves_per_s: f64,
    behind: i64,
}

impl LogMarks {
    fn since(&self, before: &LogMarks, alerts_per_s: f64) -> Sequenced {
        let s = (self.at - before.at).as_secs_f64();
        Sequenced {
            alerts_per_s,
            events_per_s: (self.events - before.events) as f64 / s,
            leaves_per_s: (self.leaves - before.leaves) as f64 / s,
            behind: self.events - self.leaves,
        }
    }
}

impl std::fmt::Display for Sequenced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sequencer: {:.0} leaves/s beside {:.0} events/s ({:.2} events per alert), {} events behind at the end",
            self.leaves_per_s,
            self.events_per_s,
            self.events_per_s / self.alerts_per_s.max(1.0),
            self.behind
        )
    }
}

/// Measurement rounds of each side (`BENCH_ROUNDS`, 3).
fn rounds() -> u32 {
    std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|r| *r >= 1)
        .unwrap_or(3)
}

/// Seconds of unmeasured load before the measurements.
fn warmup() -> u64 {
    std::env::var("BENCH_WARMUP")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
}

/// An alert storm: `clients` keep-alive connections posting distinct alerts
/// of one group on one service for `seconds`. Returns the alerts accepted and
/// their rate.
async fn storm(
    addr: std::net::SocketAddr,
    token: &str,
    clients: usize,
    name: &str,
    seconds: u64,
) -> (u64, f64) {
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (token, stop, count) = (token.to_owned(), stop.clone(), count.clone());
            let name = name.to_owned();
            tokio::spawn(async move {
                let mut conn = LoadClient::connect(addr).await;
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let body = format!(
                        r#"{{"source":"bench","dedup_key":"{name}-c{c}-a{n}","group_key":"storm","service":"orders","summary":"p99 latency above 2s on orders-api","severity":"critical","category":"application","labels":{{"env":"prod"}}}}"#
                    );
                    let (status, answer) = conn.post("/api/v1/alerts", &token, &body).await;
                    assert!(
                        (200..300).contains(&status),
                        "ingest answered {status}: {}",
                        String::from_utf8_lossy(&answer)
                    );
                    count.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let accepted = count.load(Ordering::Relaxed);
    (accepted, accepted as f64 / started.elapsed().as_secs_f64())
}

/// The baseline's plain table: the columns of an event row, one index.
async fn raw_table(config: &DbConfig) -> tokio_postgres::Client {
    let owner = opsledger_store::pool::connect_owner(config).await.unwrap();
    owner
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS raw_events (position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, \
               event_id uuid, tenant_id uuid, stream_id text, stream_version bigint, event_type text, \
               schema_version int, work_class text, payload json, metadata json, occurred_at timestamptz, \
               recorded_at timestamptz, prev_hash bytea, hash bytea)",
        )
        .await
        .unwrap();
    owner
}

async fn append_benchmark() {
    let url = format!("host={} user=postgres dbname=bench", env("BENCH_PGHOST"));
    let mut config = DbConfig::parse(&url).unwrap();
    config.pool_size = 16;
    opsledger_store::migrate::migrate(&config)
        .await
        .expect("migrations apply");
    let owner = raw_table(&config).await;
    let durability: String = owner
        .query_one("SHOW synchronous_commit", &[])
        .await
        .unwrap()
        .get(0);
    let fsync: String = owner.query_one("SHOW fsync", &[]).await.unwrap().get(0);
    println!("opsledger append benchmark: {}s per scenario, fsync={fsync}, synchronous_commit={durability}", seconds());
    println!(
        "{:<44} {:>14} {:>14} {:>7}",
        "scenario", "opsledger/s", "raw rows/s", "ratio"
    );

    let pool = opsledger_store::connect(&config).unwrap();
    let committers = std::env::var("BENCH_COMMITTERS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(opsledger_store::append::COMMITTERS_DEFAULT);
    let committer = Committer::start(pool, committers);
    let single = format!("INSERT INTO raw_events (event_id, tenant_id, stream_id, stream_version, event_type, \
        schema_version, work_class, payload, metadata, occurred_at, recorded_at, prev_hash, hash) VALUES {};\n", raw_values());
    let mut rows = Vec::new();
    for clients in [1usize, 8, 64] {
        let raw = pgbench("bench", clients, &single);
        let ours = appends(&committer, clients, 1).await;
        rows.push((
            format!("single-event appends, {clients} clients"),
            ours,
            raw,
        ));
        print_row(rows.last().unwrap());
    }
    let multi = format!(
        "INSERT INTO raw_events (event_id, tenant_id, stream_id, stream_version, event_type, schema_version, \
          work_class, payload, metadata, occurred_at, recorded_at, prev_hash, hash) VALUES {};\n",
        vec![raw_values(); BATCH_LEN].join(", ")
    );
    let raw = pgbench("bench", BATCH_CLIENTS, &multi) * BATCH_LEN as f64;
    let ours = appends(&committer, BATCH_CLIENTS, BATCH_LEN).await;
    rows.push((
        format!("{BATCH_LEN}-event appends, {BATCH_CLIENTS} clients"),
        ours,
        raw,
    ));
    print_row(rows.last().unwrap());
    println!("targets: single-event at 64 clients >= 0.80 of raw; batched >= 0.50 of raw multi-row INSERT");
}

fn print_row((name, ours, raw): &(String, f64, f64)) {
    println!("{name:<44} {ours:>14.0} {raw:>14.0} {:>7.2}", ours / raw);
}

/// The load generator's side of one keep-alive HTTP/1.1 connection: requests
/// written as bytes, responses read by Content-Length. As lean as pgbench is on
/// the baseline's side, so the two cores go to the service, not to the client.
pub(crate) struct LoadClient {
    stream: tokio::io::BufReader<tokio::net::TcpStream>,
    head: String,
}

impl LoadClient {
    pub(crate) async fn connect(addr: std::net::SocketAddr) -> LoadClient {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .expect("connects");
        stream.set_nodelay(true).unwrap();
        LoadClient {
            stream: tokio::io::BufReader::new(stream),
            head: String::new(),
        }
    }

    /// Posts a JSON body; returns the response status and body.
    pub(crate) async fn post(&mut self, path: &str, token: &str, body: &str) -> (u16, Vec<u8>) {
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.exchange(&request).await
    }

    /// Gets a resource; returns the response status and body.
    pub(crate) async fn get(&mut self, path: &str, token: &str) -> (u16, Vec<u8>) {
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n\r\n");
        self.exchange(&request).await
    }

    /// Gets a console page as a signed-in browser does (the session cookie
    /// holding `token`); returns the response status and body.
    pub(crate) async fn get_page(&mut self, path: &str, token: &str) -> (u16, Vec<u8>) {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: bench\r\nCookie: opsledger_session={token}\r\n\
             Accept: text/html\r\n\r\n"
        );
        self.exchange(&request).await
    }

    /// Writes a request and reads its sized response whole.
    async fn exchange(&mut self, request: &str) -> (u16, Vec<u8>) {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
        self.stream
            .get_mut()
            .write_all(request.as_bytes())
            .await
            .expect("request sent");
        let mut status = 0u16;
        let mut length = 0usize;
        loop {
            self.head.clear();
            let n = self
                .stream
                .read_line(&mut self.head)
                .await
                .expect("response read");
            assert!(n > 0, "the service closed the connection");
            let line = self.head.trim_end();
            if line.is_empty() {
                break;
            }
            if status == 0 {
                status = line
                    .split(' ')
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .expect("a status line");
            } else if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().expect("a length");
                }
                assert!(
                    !(name.eq_ignore_ascii_case("transfer-encoding")),
                    "responses are sized, not chunked"
                );
            }
        }
        let mut body = vec![0u8; length];
        self.stream
            .read_exact(&mut body)
            .await
            .expect("response body");
        (status, body)
    }
}
