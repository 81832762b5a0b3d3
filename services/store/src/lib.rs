//! The event store and everything else that speaks SQL.
//!
//! Owns: the connection pool, migrations (`schema/`), appending with expected
//! versions and group commit, gap-safe reading, the hash-chain verifier, the
//! projection engine and the read models' queries.
//!
//! Must never import: HTTP, SMTP or anything about requests. It answers in
//! domain types and [`StoreError`].
//!
//! Invariants:
//! - Events are only ever INSERTed; the database refuses UPDATE, DELETE and
//!   TRUNCATE (trigger) and the pooled connections run as `opsledger_app`,
//!   which has no such privilege.
//! - A tenant's appends are ordered by a lock on its chain head row, so its
//!   hash chain and its positions agree.
//! - Readers of the global order only read below the oldest running
//!   transaction and order by (tx_id, position): see `read`. A durable
//!   checkpoint holds a position, never a transaction id, and a restore into
//!   a fresh cluster is put in order by `order::realign`.

pub mod append;
pub mod audit;
pub mod backlog;
pub mod backup_schedules;
pub mod changes;
pub mod directory;
pub mod downtime;
pub mod heartbeats;
pub mod incidents;
pub mod migrate;
pub mod notifier;
pub mod operations;
pub mod order;
pub mod outbox;
pub mod pool;
pub mod probes;
pub mod projection;
pub mod read;
pub mod roster;
pub mod thresholds;
pub mod verify;
pub mod wake;
pub mod work;

pub use append::{
    AppendError, AppendOutcome, AppendRequest, ClaimedAnswer, Committer, ExpectedVersion,
    IdempotencyClaim, StreamAppend,
};
pub use pool::{connect, DbConfig, Pool};
pub use read::Cursor;

/// The `tracing` target of the spans exported as OpenTelemetry traces (a
/// request, an append batch, a projection batch, a mail attempt, an
/// escalation step). The log never shows them, and with no OTLP endpoint
/// configured no layer wants them, so they are never created: tracing off
/// costs a disabled callsite's check (`server::telemetry`).
pub const SPAN_TARGET: &str = "opsledger::trace";

/// An operating error of the store: the database is unreachable, or answered
/// with something we did not expect. Business outcomes are not errors here.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the database is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("database error")]
    Db(#[from] tokio_postgres::Error),
    #[error("migration failed")]
    Migration(#[from] refinery::Error),
    #[error("stored data is malformed: {0}")]
    Corrupt(String),
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        StoreError::Unavailable(Box::new(e))
    }
}

impl StoreError {
    /// A unique index refused a row: two transactions raced for one key.
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, StoreError::Db(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION))
    }

    /// True when retrying later may succeed: the database is down or restarting.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Unavailable(_) => true,
            StoreError::Db(e) => {
                e.is_closed()
                    || e.as_db_error().is_none_or(|db| {
                        // admin_shutdown, crash_shutdown, cannot_connect_now
                        matches!(db.code().code(), "57P01" | "57P02" | "57P03")
                    })
            }
            _ => false,
        }
    }
}

/// The projections every append keeps in its own transaction
/// (`projection::Inline`); they are also in [`projections`], for rebuilds.
pub(crate) static INLINE: &[&dyn projection::Inline] = &[&incidents::AlertProjection];

/// Every projection the service maintains, in the order workers start.
pub fn projections() -> Vec<projection::SharedProjection> {
    vec![
        std::sync::Arc::new(directory::DirectoryProjection),
        std::sync::Arc::new(incidents::IncidentProjection),
        std::sync::Arc::new(incidents::AlertProjection),
        std::sync::Arc::new(roster::RosterProjection),
        std::sync::Arc::new(changes::ChangeProjection),
        std::sync::Arc::new(downtime::DowntimeProjection),
        std::sync::Arc::new(outbox::NotificationProjection),
        std::sync::Arc::new(operations::OperationsProjection),
        std::sync::Arc::new(probes::ProbeProjection),
        std::sync::Arc::new(heartbeats::HeartbeatProjection),
        std::sync::Arc::new(thresholds::ThresholdRuleProjection),
        std::sync::Arc::new(backup_schedules::BackupScheduleProjection),
        std::sync::Arc::new(work::ProposalProjection),
        std::sync::Arc::new(work::WorkProjection),
        // Last: they read what the others keep.
        std::sync::Arc::new(work::Recurrence),
        std::sync::Arc::new(notifier::Notifier),
        // The transparency log's sequencer: every event, every tenant.
        std::sync::Arc::new(audit::AuditLog),
    ]
}
