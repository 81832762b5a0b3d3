//! Issue 14's measurements on the P3 data set: inclusion and consistency
//! proof latency (p50/p99 over `BENCH_PROOFS`, 500 each, one at a time on
//! one keep-alive connection), and the export's and the offline
//! verifier's rates (events/s) over the whole log of the tenant, which is
//! millions of events. The service signs with a key made by `opsledger
//! keygen` in a temporary folder (`ops/bench/run` passes it).

use std::io::Write;
use std::time::{Duration, Instant};

use opsledger_domain::access::Role;
use uuid::Uuid;

use crate::reports::var;
use crate::service::{quantile, Service};
use crate::LoadClient;

pub async fn proofs_and_export(svc: &Service, pool: &opsledger_store::Pool, tenant: Uuid) {
    let auditor = svc.token("bench-auditor", &[Role::Auditor], None);
    let client = pool.get().await.unwrap();
    // The sequencer has every event, and a checkpoint is signed over them.
    let started = Instant::now();
    let (size, checkpoint) = loop {
        let events: i64 = client
            .query_one(
                "SELECT count(*) FROM events WHERE tenant_id = $1",
                &[&tenant],
            )
            .await
            .unwrap()
            .get(0);
        let signed = opsledger_store::audit::checkpoint(&client, tenant, None)
            .await
            .unwrap();
        if let Some(c) = signed.filter(|c| c.size as i64 == events) {
            break (c.size, c);
        }
        assert!(
            started.elapsed() < Duration::from_secs(1800),
            "no checkpoint over all {events} events (is OPSLEDGER_AUDIT_KEY_FILE set?)"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    println!();
    println!(
        "audit: checkpoint over {size} leaves ({:.1} s after the service started)",
        started.elapsed().as_secs_f64()
    );
    let n: i64 = var("BENCH_PROOFS", 500);
    let events: Vec<Uuid> = client
        .query(
            "SELECT event_id FROM audit_leaves WHERE tenant_id = $1 \
             ORDER BY hashtext(event_id::text) LIMIT $2",
            &[&tenant, &n],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut conn = LoadClient::connect(svc.addr).await;
    let inclusion = timed(
        &mut conn,
        &auditor,
        events
            .iter()
            .map(|e| format!("/api/v1/audit/proof/inclusion?event={e}"))
            .collect(),
    )
    .await;
    println!(
        "audit: inclusion proof in the tree of {size}: {}",
        summary(&inclusion)
    );
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let consistency = timed(
        &mut conn,
        &auditor,
        (0..n)
            .map(|_| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                format!(
                    "/api/v1/audit/proof/consistency?from={}&to={size}",
                    1 + rng % size
                )
            })
            .collect(),
    )
    .await;
    println!(
        "audit: consistency proof to {size}: {}",
        summary(&consistency)
    );

    // The export, streamed to a file, and the offline check of it.
    let dir = std::env::temp_dir().join(format!("opsledger-bench-export-{}", Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("export.jsonl");
    let key = dir.join("verifier.key");
    let http = reqwest::Client::new();
    let url = format!("http://{}/api/v1/audit", svc.addr);
    let served: serde_json::Value = http
        .get(format!("{url}/key"))
        .bearer_auth(&auditor)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    std::fs::write(&key, served["verifier_key"].as_str().unwrap()).unwrap();
    let t = Instant::now();
    let mut res = http
        .get(format!("{url}/export?size={}", checkpoint.size))
        .bearer_auth(&auditor)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let mut out = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
    let mut bytes = 0u64;
    while let Some(chunk) = res.chunk().await.unwrap() {
        bytes += chunk.len() as u64;
        out.write_all(&chunk).unwrap();
    }
    out.flush().unwrap();
    let exported = t.elapsed().as_secs_f64();
    println!(
        "audit: export of {size} events: {exported:.1} s, {:.0} events/s, {:.0} MiB",
        size as f64 / exported,
        bytes as f64 / 1048576.0
    );
    let t = Instant::now();
    let verified = std::process::Command::new(std::env::var("OPSLEDGER_BIN").unwrap())
        .args(["audit", "verify-export"])
        .arg(&file)
        .arg("--key")
        .arg(&key)
        .output()
        .unwrap();
    let took = t.elapsed().as_secs_f64();
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    println!(
        "audit: offline verification of {size} events (chain, leaves, root, signature): {took:.1} s, {:.0} events/s",
        size as f64 / took
    );
    println!(
        "target (issue 14): figures reported; 1 M events verified in {:.1} s at that rate",
        1e6 * took / size as f64
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// Each path in turn on one connection; the first few warm it and the caches.
async fn timed(conn: &mut LoadClient, token: &str, paths: Vec<String>) -> Vec<f64> {
    let mut ms = vec![];
    for (i, path) in paths.iter().enumerate() {
        let t = Instant::now();
        let (status, body) = conn.get(path, token).await;
        assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
        if i >= 10 {
            ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    ms.sort_by(f64::total_cmp);
    ms
}

fn summary(ms: &[f64]) -> String {
    format!(
        "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} requests)",
        quantile(ms, 0.5),
        quantile(ms, 0.99),
        ms.last().copied().unwrap_or(f64::NAN),
        ms.len()
    )
}
