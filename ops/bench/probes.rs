//! P8 (SPEC §11): 1,000 probes at a 10 s interval against loopback servers
//! cost at most 10 % of one core.
//!
//! The release `opsledger serve` runs in a process of its own; this process
//! runs `BENCH_PROBE_SERVERS` (10) plain HTTP/1.1 servers on loopback that
//! answer `200 ok` with keep-alive and count what they answer, and defines
//! `BENCH_PROBES` (1,000) HTTP probes spread over them, every
//! `BENCH_PROBE_INTERVAL_S` (10) seconds. After one interval and a half (every
//! probe has had its first check, spread over the interval), it measures for
//! `BENCH_PROBE_SECONDS` (60): the checks answered per second, and the CPU time of
//! the service's process and of the PostgreSQL cluster's processes (the
//! claims and the worker's writes are the probes' cost too), from
//! `/proc/<pid>/stat`, as a share of one core. The same is measured first,
//! for half as long, with no probe defined: the idle service's own cost,
//! so the probes' share is the difference, in the same run.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::service;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A keep-alive HTTP/1.1 server answering every request `200 ok`; counts
/// the requests answered.
async fn loopback_server(answered: Arc<AtomicU64>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                continue;
            };
            let answered = answered.clone();
            tokio::spawn(async move {
                let mut buffer = Vec::with_capacity(1024);
                let mut chunk = [0u8; 1024];
                loop {
                    // A GET has no body: a request ends at its blank line.
                    while let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                        buffer.drain(..end + 4);
                        let answer = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok";
                        if socket.write_all(answer).await.is_err() {
                            return;
                        }
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                    match socket.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    port
}

/// Clock ticks per second, as `/proc/<pid>/stat` counts CPU time.
fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// User and system CPU time of `pid` so far, in ticks (0 when it is gone).
fn cpu_ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // The command name is in parentheses and may hold spaces: count the
    // fields after its closing one (utime and stime are fields 14 and 15).
    let Some(after) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
        return 0;
    };
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    field(14).unwrap_or(0) + field(15).unwrap_or(0)
}

/// The processes of the cluster whose postmaster is `postmaster`: itself and
/// its children (backends, checkpointer, WAL writer...).
fn cluster_pids(postmaster: u32) -> Vec<u32> {
    let mut pids = vec![postmaster];
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let ppid = stat
            .rfind(')')
            .and_then(|i| stat[i + 2..].split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(postmaster) {
            pids.push(pid);
        }
    }
    pids
}

/// CPU ticks of the service and of the cluster, so far. Backends come and
/// go, so the cluster's are summed over the processes alive at both samples
/// (the pool's connections live through the measurement).
fn sample(service: u32, postmaster: u32) -> (u64, Vec<(u32, u64)>) {
    let cluster = cluster_pids(postmaster)
        .into_iter()
        .map(|pid| (pid, cpu_ticks(pid)))
        .collect();
    (cpu_ticks(service), cluster)
}

/// The CPU the service and the cluster use over `seconds`, each as a
/// percentage of one core.
async fn cpu_share(service: u32, postmaster: u32, seconds: u64) -> (f64, f64) {
    let ticks = clock_ticks();
    let (service_before, cluster_before) = sample(service, postmaster);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let (service_after, cluster_after) = sample(service, postmaster);
    let elapsed = started.elapsed().as_secs_f64();
    let cluster_ticks: u64 = cluster_after
        .iter()
        .filter_map(|(pid, after)| {
            cluster_before
                .iter()
                .find(|(p, _)| p == pid)
                .map(|(_, before)| after.saturating_sub(*before))
        })
        .sum();
    let share = |t: u64| t as f64 / ticks / elapsed * 100.0;
    (
        share(service_after.saturating_sub(service_before)),
        share(cluster_ticks),
    )
}

pub async fn probes_benchmark() {
    let probes: usize = env_or("BENCH_PROBES", 1000);
    let servers: usize = env_or("BENCH_PROBE_SERVERS", 10);
    let interval_s: u64 = env_or("BENCH_PROBE_INTERVAL_S", 10);
    let seconds: u64 = env_or("BENCH_PROBE_SECONDS", 60);

    let (svc, _, admin, watched) = service::serving_one_service("bench_probes", "watched").await;

    let postmaster: u32 = std::fs::read_to_string(format!(
        "{}/postmaster.pid",
        std::env::var("BENCH_PGHOST").expect("BENCH_PGHOST")
    ))
    .ok()
    .and_then(|s| s.lines().next().and_then(|l| l.trim().parse().ok()))
    .expect("the cluster's postmaster.pid");
    // The service's own cost with no probe (its followers and timers poll
    // even when idle), measured first in the same run, so that the probes'
    // share is the difference.
    let idle = cpu_share(svc.pid, postmaster, seconds / 2).await;
    println!(
        "P8: idle, no probe: opsledger {:.1} % of one core, PostgreSQL {:.1} %",
        idle.0, idle.1
    );

    let answered = Arc::new(AtomicU64::new(0));
    let mut ports = Vec::with_capacity(servers);
    for _ in 0..servers {
        ports.push(loopback_server(answered.clone()).await);
    }
    let defining = Instant::now();
    for n in 0..probes {
        let port = ports[n % ports.len()];
        svc.post(
            "/api/v1/probes",
            &admin,
            &json!({
                "name": format!("probe {n}"), "service_id": watched["id"],
                "check": { "kind": "http", "url": format!("http://127.0.0.1:{port}/health/{n}") },
                "interval_s": interval_s, "timeout_ms": 5000
            }),
        )
        .await;
    }
    println!(
        "P8: {probes} HTTP probes every {interval_s} s over {servers} loopback servers, defined in {:.1} s",
        defining.elapsed().as_secs_f64()
    );
    // Every probe's first check falls somewhere in its first interval.
    tokio::time::sleep(Duration::from_millis(interval_s * 1500)).await;

    let answered_before = answered.load(Ordering::Relaxed);
    let started = Instant::now();
    let (service_pct, cluster_pct) = cpu_share(svc.pid, postmaster, seconds).await;
    let elapsed = started.elapsed().as_secs_f64();
    let checks = answered.load(Ordering::Relaxed) - answered_before;
    println!(
        "P8: {:.1} checks/s answered (every probe once per {:.1} s) over {elapsed:.0} s",
        checks as f64 / elapsed,
        probes as f64 * elapsed / checks.max(1) as f64,
    );
    println!(
        "P8: opsledger {service_pct:.1} % of one core, PostgreSQL {cluster_pct:.1} %, together {:.1} % (target ≤ 10 %); the probes' share over idle: {:.1} %",
        service_pct + cluster_pct,
        service_pct + cluster_pct - idle.0 - idle.1
    );
    svc.stop().await;
}
