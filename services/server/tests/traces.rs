//! OpenTelemetry traces (issue 17, point 1): `opsledger serve` with the
//! standard `OTEL_*` variables pointing at an OTLP receiver on loopback
//! (the testkit's) exports its spans there; an alert posted with a W3C
//! `traceparent` shows up inside the sender's trace; log lines written
//! inside it carry its trace id. With no endpoint, nothing of the kind.

mod common;

use std::time::Duration;

use common::{integration_token, tenant, Served};
use opsledger_testkit::{fresh_database, OtlpReceiver, ReceivedSpan};
use serde_json::json;

/// The sender's trace and span (W3C trace context's own example ids).
const SENDER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SENDER_SPAN: &str = "00f067aa0ba902b7";

async fn post_alert(base: &str, token: &str, traceparent: Option<&str>) -> u16 {
    let mut request = reqwest::Client::new()
        .post(format!("{base}/api/v1/alerts"))
        .bearer_auth(token)
        .json(&json!({ "source": "traced-sender", "dedup_key": "traced-1",
                       "service": "checkout", "summary": "disk full", "severity": "critical" }));
    if let Some(traceparent) = traceparent {
        request = request.header("traceparent", traceparent);
    }
    let answer = request.send().await.expect("the alert is sent");
    let status = answer.status().as_u16();
    assert!(
        answer.status().is_success(),
        "{status}: {:?}",
        answer.text().await
    );
    status
}

fn named<'a>(spans: &'a [ReceivedSpan], name: &str) -> Vec<&'a ReceivedSpan> {
    spans.iter().filter(|s| s.name == name).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traced_senders_alert_is_inside_its_trace_and_every_batch_is_exported() {
    let db = fresh_database().await;
    let tenant = tenant(&db.url);
    let token = integration_token(tenant);
    let receiver = OtlpReceiver::start().await;
    let log = std::env::temp_dir().join(format!("opsledger-traces-{}.log", uuid::Uuid::now_v7()));
    let served = Served::start_logging(
        &db.url,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint),
            ("OTEL_SERVICE_NAME", "opsledger-under-test"),
            ("OTEL_TRACES_SAMPLER", "parentbased_always_on"),
            ("OPSLEDGER_LOG_FORMAT", "json"),
            ("RUST_LOG", "info"),
        ],
        std::fs::File::create(&log).unwrap(),
    )
    .await;
    let status = post_alert(
        &served.base,
        &token,
        Some(&format!("00-{SENDER_TRACE}-{SENDER_SPAN}-01")),
    )
    .await;
    // The batch exporter sends on its schedule (5 s) and at the stop; the
    // stop must flush what is left.
    assert!(served.terminate().await.success());
    let spans = receiver
        .wait_for(Duration::from_secs(10), |spans| {
            spans.iter().any(|s| s.trace_id == SENDER_TRACE)
        })
        .await;
    assert!(receiver.refused().is_empty(), "{:?}", receiver.refused());

    // The request's span: a server span in the sender's trace, the sender's
    // span its parent, with the route's template, status and tenant.
    let request = spans
        .iter()
        .find(|s| s.trace_id == SENDER_TRACE)
        .unwrap_or_else(|| panic!("no span in the sender's trace among {spans:#?}"));
    assert_eq!(request.parent_span_id, SENDER_SPAN, "{request:#?}");
    assert_eq!(request.name, "POST /api/v1/alerts", "{request:#?}");
    assert_eq!(request.kind, 2, "a server span: {request:#?}");
    assert_eq!(request.attribute("http.route"), Some("/api/v1/alerts"));
    assert_eq!(request.attribute("http.request.method"), Some("POST"));
    assert_eq!(
        request.attribute("http.response.status_code"),
        Some(status.to_string().as_str())
    );
    assert_eq!(
        request.attribute("tenant"),
        Some(tenant.to_string().as_str())
    );
    assert_eq!(request.service.as_deref(), Some("opsledger-under-test"));
    assert_eq!(
        spans.iter().filter(|s| s.trace_id == SENDER_TRACE).count(),
        1,
        "the readiness polls are traces of their own"
    );

    // The append batch that committed the alert links to the request.
    let batches = named(&spans, "append batch");
    let batch = batches
        .iter()
        .find(|b| {
            b.links
                .iter()
                .any(|l| *l == (SENDER_TRACE.to_owned(), request.span_id.clone()))
        })
        .unwrap_or_else(|| panic!("no append batch links to the request: {batches:#?}"));
    assert!(
        batch.parent_span_id.is_empty(),
        "a batch is a root: {batch:#?}"
    );
    assert!(batch
        .attribute("requests")
        .is_some_and(|n| n.parse::<u32>().unwrap() >= 1));
    assert!(batch
        .attribute("events")
        .is_some_and(|n| n.parse::<u32>().unwrap() >= 1));
    assert!(
        matches!(batch.attribute("path"), Some("predicted" | "locked")),
        "{batch:#?}"
    );

    // The projections' batches: the tenant registered before the start is
    // applied by the directory's follower, at least.
    let projected = named(&spans, "projection batch");
    let directory = projected
        .iter()
        .find(|p| p.attribute("projection") == Some("directory"))
        .unwrap_or_else(|| panic!("no directory batch among {projected:#?}"));
    assert!(directory.attribute("events").is_some_and(|n| n != "0"));
    assert!(directory.attribute("first_position").is_some());

    // Log lines written inside the request carry its trace id.
    let text = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    let traced: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["trace_id"] == SENDER_TRACE)
        .collect();
    assert!(
        traced
            .iter()
            .any(|l| l["fields"]["message"] == "request" && l["fields"]["path"] == "/api/v1/alerts"),
        "the access log's line for the alert carries the sender's trace id:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_endpoint_the_service_sends_nothing_and_logs_no_trace_ids() {
    let db = fresh_database().await;
    let token = integration_token(tenant(&db.url));
    let log = std::env::temp_dir().join(format!("opsledger-untraced-{}.log", uuid::Uuid::now_v7()));
    // A sampler and a name set, but no endpoint: traces stay off (and a
    // sampler's name is then not even read).
    let served = Served::start_logging(
        &db.url,
        &[
            ("OTEL_SERVICE_NAME", "opsledger-under-test"),
            ("OTEL_TRACES_SAMPLER", "sometimes"),
            ("OPSLEDGER_LOG_FORMAT", "json"),
            ("RUST_LOG", "info"),
        ],
        std::fs::File::create(&log).unwrap(),
    )
    .await;
    post_alert(
        &served.base,
        &token,
        Some(&format!("00-{SENDER_TRACE}-{SENDER_SPAN}-01")),
    )
    .await;
    assert!(served.terminate().await.success());
    let text = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    assert!(
        text.contains("\"path\":\"/api/v1/alerts\""),
        "the alert was logged:\n{text}"
    );
    assert!(!text.contains("trace_id"), "{text}");
}
