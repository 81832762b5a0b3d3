//! P7 (SPEC §11): the console's pages, server time with 10,000 incidents
//! and about 1 M events stored.
//!
//! **Load.** The P3 loader's year of 50 clients' 500 services into a
//! database of its own (`bench_p7`), `BENCH_P7_EVENTS` (1,000,000) events,
//! every projection rebuilt from them; the figures printed say how many
//! incidents and events that made. Then `BENCH_P7_OPEN` (150) incidents are
//! opened through the API, so the operations queue shows a storm's page.
//!
//! **Measure.** The release service in a process of its own; over one
//! keep-alive connection, one request at a time, each a signed-in
//! browser's (the session cookie, `Accept: text/html`): the operations
//! queue page (`BENCH_P7_REQUESTS`, 300, after 30 unmeasured), the incident
//! page of random incidents (as many), and the downtime report page of
//! every service over one month of the loaded year (50, after 5). Each
//! figure is the time from the request's first byte sent to the response's
//! last byte read on loopback: the server's time plus a loopback round
//! trip.
//!
//! `BENCH_P7_REUSE=1` keeps a database loaded by an earlier run on the same
//! cluster (`BENCH_CLUSTER`).

use chrono::{Datelike, TimeZone, Utc};
use opsledger_domain::access::Role;
use uuid::Uuid;

use crate::reports::{existing, load_into, rebuild_all, summary, timed, var};
use crate::service::{database, Service};
use crate::LoadClient;

const DATABASE: &str = "bench_p7";

pub async fn console_benchmark() {
    let target: u64 = var("BENCH_P7_EVENTS", 1_000_000);
    let requests: usize = var("BENCH_P7_REQUESTS", 300);
    let year_start = Utc
        .with_ymd_and_hms(Utc::now().year() - 1, 1, 1, 0, 0, 0)
        .unwrap();
    let reused = if var("BENCH_P7_REUSE", 0u8) == 1 {
        if existing(DATABASE).await.is_some() {
            opsledger_store::migrate::migrate(&database(DATABASE))
                .await
                .expect("migrations apply");
        }
        existing(DATABASE).await
    } else {
        None
    };
    let (tenant, loaded_now) = match reused {
        Some(t) => (t, false),
        None => (load_into(DATABASE, target, year_start).await, true),
    };
    let pool = opsledger_store::connect(&database(DATABASE)).unwrap();
    let count = |sql: &'static str| {
        let pool = pool.clone();
        async move {
            let n: i64 = pool
                .get()
                .await
                .unwrap()
                .query_one(sql, &[])
                .await
                .unwrap()
                .get(0);
            n
        }
    };
    let events = count("SELECT count(*) FROM events").await;
    if loaded_now {
        rebuild_all(&pool, events, DATABASE).await;
    }

    let svc = Service::start(DATABASE, tenant).await;
    let admin = svc.token("bench-admin", &[Role::Admin], None);
    let operator = svc.token("bench-operator", &[Role::Operator], None);
    let open: usize = var("BENCH_P7_OPEN", 150);
    let queued = count("SELECT count(*) FROM proj_incidents WHERE status = 'triggered'").await;
    {
        let mut conn = LoadClient::connect(svc.addr).await;
        for n in (queued as usize)..open {
            let body = format!(r#"{{"title":"p7 storm incident {n}","severity":"error"}}"#);
            let (status, body) = conn.post("/api/v1/incidents", &admin, &body).await;
            assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
        }
    }
    // The queue reads the incidents read model: wait until it holds them.
    for _ in 0..600 {
        if count("SELECT count(*) FROM proj_incidents WHERE status = 'triggered'").await as usize
            >= open
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let incidents = count("SELECT count(*) FROM proj_incidents").await;
    let events = count("SELECT count(*) FROM events").await;
    println!();
    println!(
        "P7 data set: {incidents} incidents, {events} events, {open} of them open in the operations queue"
    );

    let warm = requests / 10;
    let queue: Vec<String> = (0..requests + warm)
        .map(|_| "/console/queues/operations".to_owned())
        .collect();
    let ids: Vec<Uuid> = pool
        .get()
        .await
        .unwrap()
        .query(
            "SELECT incident_id FROM proj_incidents ORDER BY random() LIMIT $1",
            &[&((requests + warm) as i64)],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let incident: Vec<String> = ids
        .iter()
        .map(|id| format!("/console/incidents/{id}"))
        .collect();
    let month = format!(
        "/console/reports?from={}-03-01&to={}-04-01",
        year_start.year(),
        year_start.year()
    );
    let report: Vec<String> = (0..55).map(|_| month.clone()).collect();
    println!("console page                      server time (one request at a time, keep-alive)");
    for (name, paths, warm) in [
        ("queue (operations)", &queue, warm),
        ("incident (random)", &incident, warm),
        ("downtime report (500 services, a month)", &report, 5),
    ] {
        let (ms, bytes) = timed(&svc, &operator, paths, warm, true).await;
        println!(
            "P7 {name}: {} ; {:.0} KiB a page",
            summary(&ms),
            bytes as f64 / 1024.0 / ms.len().max(1) as f64
        );
    }
    println!("target: p99 <= 50 ms");
    println!("service peak RSS {:.0} MB", svc.peak_rss_mb());
    svc.stop().await;
}
