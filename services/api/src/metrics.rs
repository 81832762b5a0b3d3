//! `/metrics` in the Prometheus text format, through the `prometheus` crate.
//!
//! Two kinds of families:
//! - counted as things happen in this process (request latency, mails):
//!   kept in a registry of the app's own, [`Metrics`] in `AppState`, never
//!   the crate's process-global default registry: tests run many apps in one
//!   process, and each app's `/metrics` describes that app;
//! - read at scrape time (projection lag, outbox, escalation timers, the
//!   transparency log's sequencer, the connection pool, the committer's
//!   counts): built afresh in a registry of the scrape ([`Scraped::families`]),
//!   so a label set that no longer holds (a projection no longer failing)
//!   is gone from the next scrape. The database figures cost a handful of
//!   indexed, capped queries (`store::projection::lag`, `store::backlog`):
//!   a few milliseconds on a large database.
//!
//! Labels never take a value from a request unchecked: a route is its
//! template (never the raw path, which holds ids), a method outside the
//! standard ones is `other`.

use std::time::Duration;

use actix_web::http::{Method, StatusCode};
use opsledger_store::append::{Appended, BatchPaths};
use opsledger_store::backlog::Backlogs;
use opsledger_store::projection::{Lag, Stuck};
use prometheus::proto::MetricFamily;
use prometheus::{
    register_gauge_vec_with_registry, register_gauge_with_registry,
    register_histogram_vec_with_registry, register_int_counter_vec_with_registry,
    register_int_gauge_vec_with_registry, register_int_gauge_with_registry, Encoder, HistogramVec,
    IntCounterVec, Registry, TextEncoder,
};

/// The `route` label of a request no route matched (an unknown path, or one
/// refused before routing): one value, whatever the path.
pub const ROUTE_UNMATCHED: &str = "unmatched";

/// Request latency buckets, in seconds: the targets are in milliseconds (a
/// timeline's p99 ≤ 10 ms, a console page's ≤ 50 ms), and past 10 s a
/// request is as bad as it gets.
const REQUEST_DURATION_BUCKETS_S: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// The families counted as things happen, in the app's own registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    http_requests: HistogramVec,
    mails: IntCounterVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let http_requests = register_histogram_vec_with_registry!(
            "opsledger_http_request_duration_seconds",
            "HTTP requests by route template, method and status, and how long each took to answer (its head; a streamed body may go on).",
            &["route", "method", "status"],
            REQUEST_DURATION_BUCKETS_S.to_vec(),
            registry
        )
        .expect("a valid, unique family");
        let mails = register_int_counter_vec_with_registry!(
            "opsledger_mails_total",
            "Notifications this instance tried to send over SMTP, by outcome: sent (the server took it) or failed (tried again later, or abandoned).",
            &["outcome"],
            registry
        )
        .expect("a valid, unique family");
        // Both outcomes from the start, so that a rate of failures is 0
        // rather than absent before the first failure.
        for outcome in ["sent", "failed"] {
            mails.with_label_values(&[outcome]);
        }
        Metrics {
            registry,
            http_requests,
            mails,
        }
    }

    /// One answered request; `route` is its template (`None`: no route
    /// matched).
    pub fn observe_request(
        &self,
        route: Option<&str>,
        method: &Method,
        status: StatusCode,
        took: Duration,
    ) {
        self.http_requests
            .with_label_values(&[
                route.unwrap_or(ROUTE_UNMATCHED),
                method_label(method),
                status.as_str(),
            ])
            .observe(took.as_secs_f64());
    }

    /// One attempt at sending a notification.
    pub fn mail_attempted(&self, sent: bool) {
        let outcome = if sent { "sent" } else { "failed" };
        self.mails.with_label_values(&[outcome]).inc();
    }

    /// Every family, this app's and the scrape's, in the text format.
    pub fn render(&self, scraped: &Scraped<'_>) -> String {
        let mut families = self.registry.gather();
        families.extend(scraped.families());
        families.sort_by(|a, b| a.name().cmp(b.name()));
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&families, &mut out)
            .expect("families gathered from registries encode");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

/// A bounded label for a method: an extension method is `other`.
fn method_label(method: &Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

/// What `/readyz` and `/metrics` say of one followed projection.
#[derive(Debug)]
pub struct Followed {
    pub lag: Lag,
    pub stalled: bool,
    pub stuck: Option<Stuck>,
}

/// What a scrape read: the families built from it live only as long as it.
#[derive(Debug)]
pub struct Scraped<'a> {
    pub projections: &'a [Followed],
    pub stall_after: Duration,
    pub backlogs: Backlogs,
    pub paths: &'a BatchPaths,
    pub pool: opsledger_store::pool::PoolStatus,
}

impl Scraped<'_> {
    fn families(&self) -> Vec<MetricFamily> {
        let r = Registry::new();
        let valid = "a valid, unique family";
        let per_projection = |name: &str, help: &str| {
            register_gauge_vec_with_registry!(name, help, &["projection"], r).expect(valid)
        };
        let lag = per_projection(
            "opsledger_projection_lag_seconds",
            "Age of the oldest event a projection has not applied yet.",
        );
        let behind = per_projection(
            "opsledger_projection_behind_events",
            "Committed events a projection has not applied yet.",
        );
        let stalled = per_projection(
            "opsledger_projection_stalled",
            &format!("1 when a projection has not applied its oldest event for over {} s (OPSLEDGER_PROJECTION_STALL_S).", self.stall_after.as_secs()),
        );
        let failing = register_gauge_vec_with_registry!(
            "opsledger_projection_failing_seconds",
            "How long a projection has failed on the event its labels name (see /readyz), by event and error.",
            &["projection", "position", "event", "error"],
            r
        )
        .expect(valid);
        let now = chrono::Utc::now();
        for f in self.projections {
            let name = f.lag.name.as_str();
            lag.with_label_values(&[name]).set(f.lag.lag_seconds);
            behind
                .with_label_values(&[name])
                .set(f.lag.behind_events as f64);
            stalled
                .with_label_values(&[name])
                .set(f64::from(u8::from(f.stalled)));
            if let Some(s) = &f.stuck {
                failing
                    .with_label_values(&[
                        name,
                        &s.position.to_string(),
                        &one_line(&s.event),
                        &one_line(&s.error),
                    ])
                    .set((now - s.since).num_milliseconds().max(0) as f64 / 1000.0);
            }
        }
        // The sequencer is a projection (`store::audit`); its own names let
        // an alert on the transparency log not depend on that.
        if let Some(audit) = self
            .projections
            .iter()
            .find(|f| f.lag.name == opsledger_store::audit::PROJECTION)
        {
            register_gauge_with_registry!(
                "opsledger_audit_sequencer_lag_seconds",
                "Age of the oldest committed event the transparency log has not given a leaf yet.",
                r
            )
            .expect(valid)
            .set(audit.lag.lag_seconds);
            register_int_gauge_with_registry!(
                "opsledger_audit_sequencer_behind_events",
                "Committed events the transparency log has not given a leaf yet (counted up to 100000).",
                r
            )
            .expect(valid)
            .set(audit.lag.behind_events);
        }

        let per_path = |name: &str, help: &str, count: fn(&Appended) -> u64| {
            let family =
                register_int_counter_vec_with_registry!(name, help, &["path"], r).expect(valid);
            let paths = self.paths;
            for (path, appended) in [
                ("predicted", &paths.predicted),
                ("locked", &paths.locked),
                ("direct", &paths.direct),
            ] {
                family.with_label_values(&[path]).inc_by(count(appended));
            }
        };
        use std::sync::atomic::Ordering::Relaxed;
        per_path(
            "opsledger_append_batches_total",
            "Batches committed, by path: predicted (one round trip), locked (read first) or direct (a large request in a transaction of its own).",
            |a| a.batches.load(Relaxed),
        );
        per_path(
            "opsledger_append_events_total",
            "Events appended, by the path of their batch.",
            |a| a.events.load(Relaxed),
        );

        let backlog = |name: &str, help: &str, value: f64| {
            register_gauge_with_registry!(name, help, r)
                .expect(valid)
                .set(value);
        };
        let b = &self.backlogs;
        backlog(
            "opsledger_outbox_pending_notifications",
            "Notifications requested or failed and not yet sent (counted up to 100000).",
            b.outbox.waiting as f64,
        );
        backlog(
            "opsledger_outbox_oldest_pending_seconds",
            "How long ago the oldest notification not yet sent was requested; 0 when none waits.",
            b.outbox.oldest_age_seconds,
        );
        backlog(
            "opsledger_escalation_timers_due",
            "Escalation steps whose time has come and that no instance has fired yet (counted up to 100000).",
            b.escalation_due.waiting as f64,
        );
        backlog(
            "opsledger_escalation_oldest_due_seconds",
            "How long ago the oldest escalation step not yet fired fell due; 0 when none is due.",
            b.escalation_due.oldest_age_seconds,
        );

        let pool = &self.pool;
        let connections = register_int_gauge_vec_with_registry!(
            "opsledger_db_pool_connections",
            "Pooled database connections by state.",
            &["state"],
            r
        )
        .expect(valid);
        connections
            .with_label_values(&["open"])
            .set(pool.size as i64);
        connections
            .with_label_values(&["idle"])
            .set(pool.available as i64);
        register_int_gauge_with_registry!(
            "opsledger_db_pool_max_connections",
            "Connections the pool opens at most (OPSLEDGER_DB_POOL_SIZE).",
            r
        )
        .expect(valid)
        .set(pool.max_size as i64);
        register_int_gauge_with_registry!(
            "opsledger_db_pool_waiters",
            "Tasks waiting for a pooled connection: above 0 for long, the pool is too small or the database too slow.",
            r
        )
        .expect(valid)
        .set(pool.waiting as i64);
        r.gather()
    }
}

/// A label value on one line: the text format escapes a line feed but not a
/// carriage return, which line-based readers would split on.
fn one_line(value: &str) -> String {
    value.replace('\r', " ")
}
