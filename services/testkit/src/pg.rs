//! Ephemeral PostgreSQL for tests.
//!
//! `ops/test` starts one cluster for the whole run and exports its socket
//! folder as `OPSLEDGER_TEST_PGHOST`; without it (a bare `cargo test`) each
//! test process starts its own through `ops/pg.sh`, with a watcher process
//! that stops and removes it when this process exits, however it exits.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use opsledger_store::DbConfig;
use tokio::sync::Mutex;
use tokio_postgres::NoTls;
use uuid::Uuid;

const TEMPLATE_DB: &str = "opsledger_template";
/// Key of the advisory lock that serialises template creation across processes.
const TEMPLATE_LOCK_KEY: i64 = 0x6f70_736c_7465_6d70;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The socket folder of the cluster this process uses.
pub fn cluster_host() -> &'static str {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(|| {
        if let Ok(host) = std::env::var("OPSLEDGER_TEST_PGHOST") {
            return host;
        }
        let dir = std::env::temp_dir().join(format!(
            "opsledger-test-{}-{}",
            std::process::id(),
            Uuid::new_v4().simple()
        ));
        let script = repo_root().join("ops/pg.sh");
        let out = Command::new("bash")
            .arg(&script)
            .arg("ephemeral")
            .arg(&dir)
            .stderr(Stdio::inherit())
            .output()
            .expect("bash runs ops/pg.sh");
        assert!(out.status.success(), "ops/pg.sh ephemeral failed");
        // The watcher outlives a panic, an abort or a kill of this process;
        // it is never waited for on purpose.
        #[allow(clippy::zombie_processes)]
        Command::new("setsid")
            .arg("bash")
            .arg(&script)
            .arg("watch")
            .arg(std::process::id().to_string())
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("setsid starts the cluster watcher");
        dir.to_string_lossy().into_owned()
    })
}

/// A connection string for `dbname` on the test cluster, as the superuser.
pub fn url_for(dbname: &str) -> String {
    format!("host={} user=postgres dbname={dbname}", cluster_host())
}

async fn admin() -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(&url_for("postgres"), NoTls)
        .await
        .expect("the test cluster accepts connections");
    tokio::spawn(conn);
    client
}

async fn ensure_template() {
    // Once per process; across processes, the advisory lock.
    static READY: Mutex<bool> = Mutex::const_new(false);
    let mut ready = READY.lock().await;
    if *ready {
        return;
    }
    let admin = admin().await;
    admin
        .execute("SELECT pg_advisory_lock($1)", &[&TEMPLATE_LOCK_KEY])
        .await
        .unwrap();
    let exists = admin
        .query_opt(
            "SELECT 1 FROM pg_database WHERE datname = $1 AND datistemplate",
            &[&TEMPLATE_DB],
        )
        .await
        .unwrap()
        .is_some();
    if !exists {
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {TEMPLATE_DB}"))
            .await
            .unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE {TEMPLATE_DB}"))
            .await
            .unwrap();
        let config = DbConfig::parse(&url_for(TEMPLATE_DB)).unwrap();
        opsledger_store::migrate::migrate(&config)
            .await
            .expect("migrations apply to the template");
        admin
            .batch_execute(&format!(
                "ALTER DATABASE {TEMPLATE_DB} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false"
            ))
            .await
            .unwrap();
    }
    admin
        .execute("SELECT pg_advisory_unlock($1)", &[&TEMPLATE_LOCK_KEY])
        .await
        .unwrap();
    *ready = true;
}

/// A database of its own for one test, migrated, dropped on drop.
#[derive(Debug)]
pub struct TestDatabase {
    pub name: String,
    pub config: DbConfig,
    pub url: String,
}

impl TestDatabase {
    /// A connection as the superuser, for what the application may not do
    /// (tampering with events in the tamper-evidence tests, say).
    pub async fn superuser(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.url, NoTls).await.unwrap();
        tokio::spawn(conn);
        client
    }
}

impl TestDatabase {
    /// A superuser connection to another database of the same cluster.
    pub async fn superuser_of(&self, dbname: &str) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&url_for(dbname), NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Best effort and off the async runtime: the cluster is thrown away
        // at the end of the run anyway; this only keeps disk use down.
        let url = url_for("postgres");
        let name = self.name.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                rt.block_on(async move {
                    if let Ok((client, conn)) = tokio_postgres::connect(&url, NoTls).await {
                        tokio::spawn(conn);
                        let _ = client
                            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                            .await;
                    }
                });
            }
        });
    }
}

pub async fn fresh_database() -> TestDatabase {
    ensure_template().await;
    let name = format!("t_{}", Uuid::new_v4().simple());
    let admin = admin().await;
    let mut attempt = 0;
    loop {
        // The template may still be held open by a closing connection for a moment.
        match admin
            .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB}"))
            .await
        {
            Ok(()) => break,
            Err(e) if attempt < 50 => {
                attempt += 1;
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("cannot create test database: {e}"),
        }
    }
    let url = url_for(&name);
    TestDatabase {
        config: DbConfig::parse(&url).unwrap(),
        url,
        name,
    }
}
