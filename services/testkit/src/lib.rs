//! The test harness: a real PostgreSQL cluster (ephemeral, started here or by
//! `ops/test`), a fresh database per test copied from a migrated template, the
//! whole application spawned on port 0, and a real SMTP server on loopback.
//!
//! Must never be a dependency of anything but tests and benchmarks.

pub mod app;
pub mod pg;
pub mod smtp;

pub use app::{spawn_app, spawn_app_with, TestApp};
pub use pg::{fresh_database, TestDatabase};
pub use smtp::{python, Received, SmtpSink};
