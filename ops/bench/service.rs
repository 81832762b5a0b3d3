//! The service under measurement: a database of its own on the bench's
//! cluster, and the release `opsledger serve` in a process of its own, as
//! deployed.

use std::time::Duration;

use opsledger_domain::access::Role;
use opsledger_store::DbConfig;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::env;

/// Creates (or empties and recreates) the database `name` on the bench's
/// cluster and migrates it.
pub async fn fresh_database(name: &str) -> DbConfig {
    let admin = format!("host={} user=postgres dbname=bench", env("BENCH_PGHOST"));
    let owner = opsledger_store::pool::connect_owner(&DbConfig::parse(&admin).unwrap())
        .await
        .unwrap();
    for sql in [
        format!("DROP DATABASE IF EXISTS {name}"),
        format!("CREATE DATABASE {name}"),
    ] {
        owner.batch_execute(&sql).await.unwrap();
    }
    drop(owner);
    let db = database(name);
    opsledger_store::migrate::migrate(&db)
        .await
        .expect("migrations apply");
    db
}

/// The configuration of the bench cluster's database `name`.
pub fn database(name: &str) -> DbConfig {
    let url = format!("host={} user=postgres dbname={name}", env("BENCH_PGHOST"));
    let mut db = DbConfig::parse(&url).unwrap();
    db.pool_size = 8;
    db
}

/// A running `opsledger serve` and what a client needs to call it.
pub struct Service {
    process: tokio::process::Child,
    pub pid: u32,
    pub addr: std::net::SocketAddr,
    pub base: String,
    pub http: reqwest::Client,
    pub tenant: Uuid,
    auth: opsledger_api::auth::AuthConfig,
}

/// A fresh database `name` with a tenant, the service on it, and one client
/// with one service named `service`: what the HTTP benchmarks start from.
/// Returns the service, the database, an admin token and the service's record.
pub async fn serving_one_service(name: &str, service: &str) -> (Service, DbConfig, String, Value) {
    let db = fresh_database(name).await;
    let pool = opsledger_store::connect(&db).unwrap();
    let tenant = Uuid::now_v7();
    opsledger_server::commands::register_tenant(&pool, tenant, "Bench MSP", "bench")
        .await
        .unwrap();
    let svc = Service::start(name, tenant).await;
    let admin = svc.token("bench", &[Role::Admin], None);
    let client = svc
        .post(
            "/api/v1/clients",
            &admin,
            &json!({ "name": "Bench client" }),
        )
        .await;
    let record = svc
        .post(
            "/api/v1/services",
            &admin,
            &json!({ "client_id": client["id"], "name": service, "sla_target_pct": 99.9, "notice_period_h": 24 }),
        )
        .await;
    (svc, db, admin, record)
}

impl Service {
    /// Starts the service on database `name` (already migrated) and waits
    /// until it is ready. `OPSLEDGER_*` variables of the bench's environment
    /// reach it; it logs at `warn`.
    pub async fn start(name: &str, tenant: Uuid) -> Service {
        let url = format!("host={} user=postgres dbname={name}", env("BENCH_PGHOST"));
        let secret = format!("bench-{}", Uuid::new_v4());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let process = tokio::process::Command::new(env("OPSLEDGER_BIN"))
            .arg("serve")
            .env("DATABASE_URL", &url)
            .env("OPSLEDGER_BIND", format!("127.0.0.1:{port}"))
            .env("OPSLEDGER_JWT_SECRET", &secret)
            .env("RUST_LOG", "warn")
            .kill_on_drop(true)
            .spawn()
            .expect("opsledger serve starts");
        let pid = process.id().expect("the service runs");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        for attempt in 0.. {
            match http.get(format!("{base}/readyz")).send().await {
                Ok(r) if r.status().is_success() => break,
                _ if attempt < 600 => tokio::time::sleep(Duration::from_millis(100)).await,
                _ => panic!("the service did not become ready"),
            }
        }
        Service {
            process,
            pid,
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            base,
            http,
            tenant,
            auth: opsledger_api::auth::AuthConfig::hs256(
                secret.as_bytes(),
                "opsledger",
                "opsledger",
            ),
        }
    }

    /// A token of the bench's tenant, valid for a day.
    pub fn token(&self, subject: &str, roles: &[Role], client: Option<Uuid>) -> String {
        self.auth
            .mint(self.tenant, subject, roles, client, 24 * 3600)
    }

    /// Posts a body and returns the answer's JSON; panics unless it is a 2xx.
    pub async fn post(&self, path: &str, token: &str, body: &Value) -> Value {
        let res = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = res.status();
        let text = res.text().await.unwrap();
        assert!(status.is_success(), "POST {path} answered {status}: {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    pub async fn stop(mut self) {
        let _ = self.process.kill().await;
    }

    /// The service's peak resident memory so far, in MB.
    pub fn peak_rss_mb(&self) -> f64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            })
            .map_or(f64::NAN, |kb| kb / 1024.0)
    }
}

/// The `q`-quantile (0..=1) of sorted values, by the nearest rank.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}
