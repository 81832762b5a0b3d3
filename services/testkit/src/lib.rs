//! The test harness: a real PostgreSQL cluster (ephemeral, started here or by
//! `ops/test`), a fresh database per test copied from a migrated template, the
//! whole application spawned on port 0, a real SMTP server and an OTLP
//! trace receiver on loopback.
//!
//! Must never be a dependency of anything but tests and benchmarks.

pub mod app;
pub mod otlp;
pub mod pg;
pub mod smtp;

pub use app::{spawn_app, spawn_app_with, TestApp};
pub use otlp::{OtlpReceiver, ReceivedSpan};
pub use pg::{fresh_database, TestDatabase};
pub use smtp::{python, Received, SmtpSink};
