//! The test harness: a real PostgreSQL cluster (ephemeral, started here or by
//! `ops/test`), a fresh database per test copied from a migrated template, and
//! the whole application spawned on port 0.
//!
//! Must never be a dependency of anything but tests and benchmarks.

pub mod app;
pub mod pg;

pub use app::{spawn_app, spawn_app_with, TestApp};
pub use pg::{fresh_database, TestDatabase};
