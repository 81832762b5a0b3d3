//! The opsledger binary's wiring: configuration from the environment, the
//! HTTP server and the background workers, and the subcommands.
//!
//! Owns: process concerns (configuration, telemetry, start and stop) and the
//! workers that answer no request (`mail`, the SMTP sender).
//! Must never contain: business rules or SQL; it only assembles the crates.

pub mod app;
pub mod commands;
pub mod config;
pub mod mail;
pub mod probe_check;
pub mod telemetry;

pub use app::Application;
pub use config::Config;
