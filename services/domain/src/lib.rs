//! The pure domain of opsledger: what events exist, what commands mean, and
//! how state follows from events.
//!
//! Owns: the event catalogue (type name, schema version, work class), the
//! envelope of a new event, the hash chain, and each aggregate's
//! `decide(state, command) -> events | rejection` and `evolve(state, event)`.
//!
//! Must never import: anything that does I/O (PostgreSQL, HTTP, SMTP, clocks
//! other than values handed in). Every function here is deterministic.

pub mod access;
pub mod aggregate;
pub mod alert;
pub mod audit;
pub mod backup_schedule;
pub mod calendar;
pub mod catalogue;
pub mod chain;
pub mod change;
pub mod change_notice;
pub mod dependency;
pub mod directory;
pub mod escalation;
pub mod event;
pub mod feed_access;
pub mod freeze;
pub mod heartbeat;
pub mod impact;
pub mod impact_level;
pub mod incident;
pub mod inquiry;
pub mod metrics;
pub mod monthly;
pub mod notice;
pub mod notification;
pub mod oncall;
pub mod period;
pub mod probe;
pub mod proposal;
pub mod roster;
pub mod runbook;
pub mod text;
pub mod threshold;
pub mod window;
pub mod worklog;

pub use catalogue::{EventKind, WorkClass};
pub use event::{Metadata, NewEvent, RecordedEvent};

/// Why a command was refused. Business rules only: never an I/O failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("{0}")]
    Invalid(String),
    #[error("{0} already exists")]
    AlreadyExists(String),
    #[error("{0} does not exist")]
    NotFound(String),
    #[error("cannot {command} an incident that is {state}")]
    InvalidTransition { command: String, state: String },
    /// An invalid transition of an aggregate other than an incident.
    #[error("cannot {command} a {entity} that is {state}")]
    InvalidState {
        entity: &'static str,
        command: String,
        state: String,
    },
    /// The caller may not do this, whatever their role (four eyes).
    #[error("{0}")]
    Forbidden(String),
    /// A command that does not apply to the aggregate as it stands (runbook
    /// executions, inquiries): `detail` says why, `state` names where it is.
    #[error("{detail}")]
    Refused { detail: String, state: String },
    /// A freeze holds the command back (a normal change scheduled or
    /// started inside one).
    #[error("{detail}")]
    Frozen {
        detail: String,
        state: String,
        freeze_id: uuid::Uuid,
    },
}
