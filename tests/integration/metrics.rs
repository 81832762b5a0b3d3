//! `/metrics` (issue 17) read as a Prometheus server reads it: an
//! independent parser of the text format, after real work (an alert, an
//! incident, a mail that fails and then goes), so every family must be
//! there with its type and the counts must have moved.

use opsledger_domain::access::Role;
use opsledger_testkit::{SmtpSink, TestApp};
use opsledger_tests::eventually;
use prom_text_format_parser::{Metric, Sample, Scrape, Type, ValueType};
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::api_directory::{register_client, register_service};
use crate::notifications::{app_with_mail, created};

/// Every family `/metrics` has, with its type.
const FAMILIES: &[(&str, Type)] = &[
    ("opsledger_http_request_duration_seconds", Type::Histogram),
    ("opsledger_append_batches_total", Type::Counter),
    ("opsledger_append_events_total", Type::Counter),
    ("opsledger_projection_lag_seconds", Type::Gauge),
    ("opsledger_projection_behind_events", Type::Gauge),
    ("opsledger_projection_stalled", Type::Gauge),
    ("opsledger_audit_sequencer_lag_seconds", Type::Gauge),
    ("opsledger_audit_sequencer_behind_events", Type::Gauge),
    ("opsledger_outbox_pending_notifications", Type::Gauge),
    ("opsledger_outbox_oldest_pending_seconds", Type::Gauge),
    ("opsledger_mails_total", Type::Counter),
    ("opsledger_escalation_timers_due", Type::Gauge),
    ("opsledger_escalation_oldest_due_seconds", Type::Gauge),
    ("opsledger_db_pool_connections", Type::Gauge),
    ("opsledger_db_pool_max_connections", Type::Gauge),
    ("opsledger_db_pool_waiters", Type::Gauge),
];

/// `/metrics`, parsed: every line must be read.
async fn scrape(app: &TestApp) -> Scrape {
    let res = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let content_type = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let body = res.text().await.unwrap();
    Scrape::parse(&body).unwrap_or_else(|e| panic!("{e:?}\n{body}"))
}

fn family<'a>(scrape: &'a Scrape, name: &str) -> Option<&'a Metric> {
    scrape.metrics.iter().find(|m| m.name == name)
}

/// Whether a sample has exactly these labels.
fn labelled(sample: &Sample, labels: &[(&str, &str)]) -> bool {
    sample.labels.len() == labels.len()
        && labels
            .iter()
            .all(|(k, v)| sample.labels.iter().any(|l| l.key == *k && l.value == *v))
}

/// The value of `name` with exactly these labels (of a histogram: its count).
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let f = family(scrape, name)?;
    let kind = match f.kind {
        Type::Histogram | Type::Summary => ValueType::Count,
        _ => ValueType::Sample,
    };
    f.samples
        .iter()
        .find(|s| s.value.value_type == kind && labelled(s, labels))
        .map(|s| s.value.value.as_f64())
}

fn sum(scrape: &Scrape, name: &str) -> f64 {
    family(scrape, name)
        .map(|f| f.samples.iter().map(|s| s.value.value.as_f64()).sum())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_move_with_the_work_done() {
    let mut sink = SmtpSink::start().await;
    let app = app_with_mail(&sink).await;
    let client = register_client(&app, "Metrics client").await;
    let service = register_service(&app, client["id"].as_str().unwrap(), "checkout").await;
    created(
        &app,
        "/api/v1/subscriptions",
        json!({
            "service_id": service["id"], "name": "Ichiro", "email": "ichiro@example.jp",
            "locale": "en", "kinds": ["incident_opened"], "min_severity": "info"
        }),
    )
    .await;

    // The mail server is down: the notice of the incident fails and waits.
    sink.stop().await;
    let res = app
        .post(
            "/api/v1/alerts",
            &app.token(&[Role::Integration]),
            &json!({
                "source": "zabbix", "dedup_key": "db-9-down", "service": "no-such-service",
                "summary": "db-9 unreachable", "severity": "critical", "category": "liveness",
                "status": "firing"
            }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let incident = created(
        &app,
        "/api/v1/incidents",
        json!({
            "title": "Checkout errors", "service_id": service["id"], "severity": "error"
        }),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let operator = app.token(&[Role::Operator]);
    let res = app
        .get(&format!("/api/v1/incidents/{incident}"), &operator)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let nowhere = Uuid::now_v7();
    let res = app.get(&format!("/no/such/{nowhere}"), &operator).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);

    let waiting = eventually("the notice has failed and waits in the outbox", || async {
        let s = scrape(&app).await;
        (value(&s, "opsledger_mails_total", &[("outcome", "failed")])? >= 1.0
            && value(&s, "opsledger_outbox_pending_notifications", &[])? >= 1.0)
            .then_some(s)
    })
    .await;
    assert!(value(&waiting, "opsledger_outbox_oldest_pending_seconds", &[]).unwrap() > 0.0);

    // It comes back: the notice goes, and the outbox empties.
    sink.restart().await;
    let s = eventually(
        "the notice is sent and every read model caught up",
        || async {
            let s = scrape(&app).await;
            (value(&s, "opsledger_mails_total", &[("outcome", "sent")])? >= 1.0
                && value(&s, "opsledger_outbox_pending_notifications", &[])? == 0.0
                && value(&s, "opsledger_audit_sequencer_behind_events", &[])? == 0.0
                && sum(&s, "opsledger_projection_behind_events") == 0.0)
                .then_some(s)
        },
    )
    .await;

    // Every family, with its type and its help.
    for (name, kind) in FAMILIES {
        let f = family(&s, name).unwrap_or_else(|| panic!("{name} is missing"));
        assert_eq!(f.kind, *kind, "{name}");
        assert!(
            f.help_desc.as_deref().is_some_and(|h| !h.is_empty()),
            "{name}"
        );
    }
    for projection in ["directory", "notifications", "audit_log"] {
        assert_eq!(
            value(
                &s,
                "opsledger_projection_stalled",
                &[("projection", projection)]
            ),
            Some(0.0),
            "{projection}"
        );
    }
    assert_eq!(
        value(&s, "opsledger_outbox_oldest_pending_seconds", &[]),
        Some(0.0)
    );
    assert_eq!(value(&s, "opsledger_escalation_timers_due", &[]), Some(0.0));

    // The work is counted.
    let (events, batches) = (
        sum(&s, "opsledger_append_events_total"),
        sum(&s, "opsledger_append_batches_total"),
    );
    assert!(
        batches > 0.0 && events >= batches,
        "{events} events in {batches} batches"
    );
    let requests = |route: &str, method: &str, status: &str| {
        let labels = [("route", route), ("method", method), ("status", status)];
        value(&s, "opsledger_http_request_duration_seconds", &labels).unwrap_or(0.0)
    };
    assert!(requests("/api/v1/alerts", "POST", "202") >= 1.0);
    assert!(requests("/api/v1/incidents", "POST", "201") >= 1.0);
    assert!(requests("/api/v1/incidents/{id}", "GET", "200") >= 1.0);
    assert!(requests("unmatched", "GET", "404") >= 1.0);
    assert!(requests("/metrics", "GET", "200") >= 1.0);
    let latency = family(&s, "opsledger_http_request_duration_seconds").unwrap();
    let all = latency
        .samples
        .iter()
        .find(|b| {
            b.labels.iter().any(|l| l.value == "/api/v1/alerts")
                && b.labels.iter().any(|l| l.key == "le" && l.value == "+Inf")
        })
        .expect("the alert route's +Inf bucket");
    assert!(all.value.value.as_f64() >= 1.0);

    // A route is its template, never the path: no id in any label.
    for f in &s.metrics {
        for sample in &f.samples {
            for l in sample.labels.iter() {
                assert!(
                    !l.value.contains(&incident) && !l.value.contains(&nowhere.to_string()),
                    "{}{{{}={}}} holds a path",
                    f.name,
                    l.key,
                    l.value
                );
            }
        }
    }

    let max = value(&s, "opsledger_db_pool_max_connections", &[]).unwrap();
    assert_eq!(max, app.config.db().unwrap().pool_size as f64);
    assert!(value(&s, "opsledger_db_pool_connections", &[("state", "open")]).unwrap() >= 1.0);
}

/// The outbox's and the timers' backlogs count only what waits, and say
/// how long the oldest has waited.
#[tokio::test]
async fn backlogs_count_what_waits_and_its_age() {
    let db = opsledger_testkit::fresh_database().await;
    let pool = opsledger_store::connect(&db.config).unwrap();
    let empty = opsledger_store::backlog::backlogs(&pool).await.unwrap();
    assert_eq!(empty.outbox.waiting, 0);
    assert_eq!(empty.outbox.oldest_age_seconds, 0.0);
    assert_eq!(empty.escalation_due.waiting, 0);
    let su = db.superuser().await;
    let tenant = Uuid::now_v7();
    for (status, requested_s_ago, next_in_s) in [
        ("requested", 30, 0),
        ("failed", 90, 60),
        ("sent", 600, 0),
        ("abandoned", 900, 0),
    ] {
        su.execute(
            "INSERT INTO proj_notifications (tenant_id, notification_id, kind, cause_event_id, \
               recipient, email, subject, sha256, status, attempts, next_attempt_at, requested_at, version) \
             VALUES ($1, gen_random_uuid(), 'incident_opened', gen_random_uuid(), '{}', 'a@example.jp', \
               's', 'h', $2, 0, now() + $4 * interval '1 second', now() - $3 * interval '1 second', 1)",
            &[&tenant, &status, &(requested_s_ago as f64), &(next_in_s as f64)],
        )
        .await
        .unwrap();
    }
    for due_s_ago in [120.0_f64, 5.0, -60.0] {
        su.execute(
            "INSERT INTO escalation_timers (tenant_id, incident_id, level, round, due_at) \
             VALUES ($1, gen_random_uuid(), 1, 0, now() - $2 * interval '1 second')",
            &[&tenant, &due_s_ago],
        )
        .await
        .unwrap();
    }
    let b = opsledger_store::backlog::backlogs(&pool).await.unwrap();
    assert_eq!(
        b.outbox.waiting, 2,
        "requested and failed, not sent or abandoned"
    );
    assert!(
        (90.0..120.0).contains(&b.outbox.oldest_age_seconds),
        "{b:?}"
    );
    assert_eq!(b.escalation_due.waiting, 2, "not the one due in a minute");
    assert!(
        (120.0..150.0).contains(&b.escalation_due.oldest_age_seconds),
        "{b:?}"
    );
}
