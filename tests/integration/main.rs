//! One integration-test binary, a module per capability. Every test gets its
//! own database on a real PostgreSQL cluster, so they run in parallel.

mod alerts;
mod api_auth;
mod api_directory;
mod api_hostile;
mod audit;
mod backup_schedules;
mod change_notices;
mod changes;
mod compose;
mod console;
mod console_browser;
mod console_work;
mod deploy;
mod feed;
mod incidents;
mod input_guard;
mod inquiries;
mod maintenance;
mod metrics;
mod migrations;
mod notifications;
mod openapi;
mod probes;
mod projections;
mod report_print;
mod reports;
mod roster;
mod runbooks;
mod scenario;
mod smtp_sink;
mod store_append;
mod store_chain;
mod store_read;
mod windows;
mod worklog;
