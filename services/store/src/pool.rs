//! Connections. Every pooled connection drops to the `opsledger_app` role,
//! which may INSERT events but never UPDATE, DELETE or TRUNCATE them.

use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Hook, HookError, Manager, ManagerConfig, RecyclingMethod};
use tokio_postgres::NoTls;

use crate::StoreError;

pub type Pool = deadpool_postgres::Pool;
/// A pool's size, idle connections and waiters (`/metrics`).
pub type PoolStatus = deadpool_postgres::Status;

/// Requests in flight share these; group commit needs only a few of them.
pub const POOL_SIZE_DEFAULT: usize = 16;
/// How long a request waits for a connection before it is answered 503.
pub const POOL_WAIT_MS: u64 = 5_000;
/// A session idle inside a transaction holds back every gap-safe reader (see
/// `read`); none of ours should ever idle there, so cut it off quickly.
const IDLE_IN_TX_TIMEOUT: &str = "10s";
/// PostgreSQL's default (4) prices a random page read as a spinning disk
/// would; on SSDs, or with the read models in memory as they are once warm,
/// 1.1 is the usual setting. With the default and fresh statistics the
/// planner reads a year of 500 services' impact segments by a sequential
/// scan and an on-disk sort (about 90 ms) rather than from the covering
/// index in order (about 30 ms).
const RANDOM_PAGE_COST: &str = "1.1";

#[derive(Debug, Clone)]
pub struct DbConfig {
    pub pg: tokio_postgres::Config,
    pub pool_size: usize,
}

impl DbConfig {
    /// Accepts both URL (`postgres://…`) and key-value (`host=… dbname=…`) forms.
    pub fn parse(url: &str) -> Result<DbConfig, String> {
        let pg = tokio_postgres::Config::from_str(url).map_err(|e| format!("DATABASE_URL: {e}"))?;
        Ok(DbConfig {
            pg,
            pool_size: POOL_SIZE_DEFAULT,
        })
    }
}

/// A pooled connection.
pub type Client = deadpool_postgres::Object;

/// A pool whose connections run as `opsledger_app`.
pub fn connect(config: &DbConfig) -> Result<Pool, StoreError> {
    let mut pg = config.pg.clone();
    pg.connect_timeout(Duration::from_secs(5));
    let manager = Manager::from_config(
        pg,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    deadpool_postgres::Pool::builder(manager)
        .max_size(config.pool_size)
        .wait_timeout(Some(Duration::from_millis(POOL_WAIT_MS)))
        .create_timeout(Some(Duration::from_secs(5)))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .post_create(Hook::async_fn(|client, _| {
            Box::pin(async move {
                client
                    .batch_execute(&format!(
                        "SET ROLE opsledger_app; SET idle_in_transaction_session_timeout = '{IDLE_IN_TX_TIMEOUT}'; \
                         SET random_page_cost = {RANDOM_PAGE_COST}"
                    ))
                    .await
                    .map_err(HookError::Backend)
            })
        }))
        .build()
        .map_err(|e| StoreError::Unavailable(Box::new(e)))
}

/// A single connection as the configured (owning) user: for migrations and
/// administrative commands only.
pub async fn connect_owner(config: &DbConfig) -> Result<tokio_postgres::Client, StoreError> {
    let (client, connection) = config
        .pg
        .connect(NoTls)
        .await
        .map_err(|e| StoreError::Unavailable(Box::new(e)))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "owner connection ended");
        }
    });
    Ok(client)
}
