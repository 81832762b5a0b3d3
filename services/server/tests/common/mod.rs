//! What the process-level tests share: a database with a tenant, an
//! `opsledger serve` of its own, senders posting alerts, and the log read
//! back.

#![allow(dead_code)]

use std::collections::HashSet;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opsledger_api::auth::AuthConfig;
use opsledger_domain::access::Role;
use serde_json::json;
use uuid::Uuid;

pub const SECRET: &str = "process-test-secret";

/// Registers a tenant in the database at `url` with the binary; its id.
pub fn tenant(url: &str) -> Uuid {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_opsledger"))
        .args(["tenant", "add", "--name", "Drill MSP"])
        .env("DATABASE_URL", url)
        .env("RUST_LOG", "warn")
        .output()
        .expect("the binary runs");
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// A monitoring token of `tenant`.
pub fn integration_token(tenant: Uuid) -> String {
    AuthConfig::hs256(SECRET.as_bytes(), "opsledger", "opsledger").mint(
        tenant,
        "monitoring",
        &[Role::Integration],
        None,
        3600,
    )
}

/// A running `opsledger serve`.
pub struct Served {
    pub child: tokio::process::Child,
    pub base: String,
}

impl Served {
    /// Starts one on the database at `url` (with `env` besides) and waits
    /// until it is ready.
    pub async fn start(url: &str, env: &[(&str, &str)]) -> Served {
        Served::start_logging(url, env, Stdio::inherit()).await
    }

    /// As `start`, its log (standard error) going to `log`.
    pub async fn start_logging(url: &str, env: &[(&str, &str)], log: impl Into<Stdio>) -> Served {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_opsledger"));
        command
            .arg("serve")
            .env("DATABASE_URL", url)
            .env("OPSLEDGER_BIND", format!("127.0.0.1:{port}"))
            .env("OPSLEDGER_JWT_SECRET", SECRET)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stderr(log)
            .kill_on_drop(true);
        for (k, v) in env {
            command.env(k, v);
        }
        let child = command.spawn().expect("opsledger serve starts");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let ready_by = Instant::now() + Duration::from_secs(60);
        while !http
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            assert!(
                Instant::now() < ready_by,
                "the service did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Served { child, base }
    }
}

impl Served {
    /// Asks it to stop (SIGTERM) and waits until it has.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().expect("the service runs");
        let kill = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(kill.success());
        tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .expect("the service stops")
            .expect("its exit is read")
    }
}

/// Alerts answered 2xx, by dedup key, with when each was answered.
#[derive(Clone, Default)]
pub struct Answered(pub Arc<Mutex<Vec<(String, Instant)>>>);

impl Answered {
    pub fn keys(&self) -> HashSet<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(k, _)| k.clone())
            .collect()
    }
    pub fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
    pub fn after(&self, t: Instant) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, at)| *at > t)
            .count()
    }
}

/// `senders` tasks posting alerts to `base` until a request fails to reach
/// it or `done` is set; each other answer than 2xx is passed to `other`
/// (status, headers).
pub fn load(
    base: &str,
    token: &str,
    senders: usize,
    prefix: &str,
    answered: &Answered,
    done: &Arc<std::sync::atomic::AtomicBool>,
    other: impl Fn(reqwest::StatusCode, &reqwest::header::HeaderMap) + Clone + Send + 'static,
) -> Vec<tokio::task::JoinHandle<()>> {
    let http = reqwest::Client::new();
    (0..senders)
        .map(|sender| {
            let (http, base, token) = (http.clone(), base.to_owned(), token.to_owned());
            let (answered, other, prefix) = (answered.clone(), other.clone(), prefix.to_owned());
            let done = done.clone();
            tokio::spawn(async move {
                for n in 0.. {
                    if done.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    let key = format!("{prefix}-{sender}-{n}");
                    let sent = http
                        .post(format!("{base}/api/v1/alerts"))
                        .bearer_auth(&token)
                        .json(
                            &json!({ "source": "drill", "dedup_key": key, "service": "nowhere",
                                       "summary": "load", "severity": "warning" }),
                        )
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status().is_success() => {
                            answered.0.lock().unwrap().push((key, Instant::now()));
                        }
                        Ok(r) => {
                            other(r.status(), r.headers());
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        Err(_) => break,
                    }
                }
            })
        })
        .collect()
}

/// A connection to the database at `url`.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("the database answers");
    tokio::spawn(conn);
    client
}

/// The dedup keys of every alert receipt in the log.
pub async fn logged_keys(url: &str) -> HashSet<String> {
    let client = connect(url).await;
    client
        .query(
            "SELECT DISTINCT coalesce(payload->'signal'->>'dedup_key', \
               payload->'data'->'signal'->>'dedup_key') \
             FROM events WHERE event_type = 'AlertReceived'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .filter_map(|r| r.get::<_, Option<String>>(0))
        .collect()
}

/// `ops/pg.sh` with `args`.
pub fn pg(args: &[&str]) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../ops/pg.sh");
    let status = std::process::Command::new("bash")
        .arg(script)
        .args(args)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("ops/pg.sh runs");
    assert!(status.success(), "ops/pg.sh {args:?}");
}

/// A PostgreSQL cluster of a test's own (`ops/pg.sh ephemeral`), stopped and
/// removed when dropped: for a drill that stops it, or a restore that needs
/// a cluster whose transaction ids start afresh.
pub struct Cluster {
    pub dir: String,
}

impl Cluster {
    pub fn start(name: &str) -> Cluster {
        let dir = std::env::temp_dir().join(format!("opsledger-{name}-{}", Uuid::now_v7()));
        let dir = dir.to_str().unwrap().to_owned();
        pg(&["ephemeral", &dir]);
        Cluster { dir }
    }

    /// Its `postgres` database.
    pub fn url(&self) -> String {
        format!("host={} user=postgres dbname=postgres", self.dir)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../ops/pg.sh");
        let _ = std::process::Command::new("bash")
            .arg(script)
            .args(["stop", &self.dir])
            .status();
    }
}
