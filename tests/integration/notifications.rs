//! The notification outbox against a real SMTP server (issue 4, SPEC §9):
//! while the mail server is down every notice waits and is retried with
//! backoff; once it returns every notice arrives, none twice, and the
//! ledger says so. On-call schedules answer "who is on call at T" over HTTP.

use std::time::Duration;

use opsledger_domain::access::Role;
use opsledger_domain::notification::Backoff;
use opsledger_server::mail::{SmtpConfig, TlsMode};
use opsledger_testkit::{spawn_app, spawn_app_with, SmtpSink, TestApp};
use opsledger_tests::eventually;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::api_directory::{register_client, register_service};

pub fn smtp(sink: &SmtpSink) -> SmtpConfig {
    SmtpConfig {
        host: "127.0.0.1".into(),
        port: sink.port(),
        tls: TlsMode::None,
        username: None,
        password: None,
        from: "opsledger <noreply@opsledger.test>".into(),
        timeout: Duration::from_secs(5),
        backoff: Backoff {
            first: chrono::Duration::milliseconds(200),
            max: chrono::Duration::seconds(1),
            attempts_max: 50,
        },
    }
}

/// Posts as an admin; the created record.
pub async fn created(app: &TestApp, path: &str, body: Value) -> Value {
    let res = app.post(path, &app.token(&[Role::Admin]), &body).await;
    let status = res.status();
    let text = res.text().await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{path}: {text}");
    serde_json::from_str(&text).unwrap()
}

/// The app sending to `sink`, its sender and followers on short intervals.
pub async fn app_with_mail(sink: &SmtpSink) -> TestApp {
    app_with_smtp(smtp(sink)).await
}

/// The app sending through `config`, its sender and followers on short intervals.
async fn app_with_smtp(config: SmtpConfig) -> TestApp {
    spawn_app_with(|c| {
        c.smtp = Some(config);
        c.timer_interval = Duration::from_millis(100);
        c.poll_interval = Duration::from_millis(50);
    })
    .await
}

/// How long the R4 drill keeps the mail server down: `OPSLEDGER_R4_OUTAGE_S`
/// (`ops/drills/r4.sh MINUTES` sets it), or, in the suite, only until each
/// notice has failed twice.
fn r4_outage() -> Duration {
    Duration::from_secs(
        std::env::var("OPSLEDGER_R4_OUTAGE_S")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_waits_out_a_down_server_and_then_arrives_once_each() {
    let mut sink = SmtpSink::start().await;
    let mut config = smtp(&sink);
    let outage = r4_outage();
    if !outage.is_zero() {
        // Minutes down: spaced as in production, only shorter (the default
        // is 5 s doubling to 15 min), and never given up meanwhile.
        config.backoff = Backoff {
            first: chrono::Duration::seconds(1),
            max: chrono::Duration::seconds(10),
            attempts_max: 1000,
        };
    }
    let app = app_with_smtp(config).await;
    let client = register_client(&app, "株式会社サンプル").await;
    let service = register_service(&app, client["id"].as_str().unwrap(), "受注サイト").await;
    created(&app, "/api/v1/subscriptions", json!({
        "service_id": service["id"], "name": "佐藤 一郎", "email": "ichiro@example.jp", "locale": "ja",
        "kinds": ["incident_opened", "incident_mitigated", "incident_resolved"], "min_severity": "info"
    }))
    .await;

    // The mail server goes away; three incidents open meanwhile.
    sink.stop().await;
    let down_at = std::time::Instant::now();
    let operator = app.token(&[Role::Operator]);
    let mut titles = Vec::new();
    for n in 1..=3 {
        let title = format!("決済エラー {n}");
        let res = app
            .post(
                "/api/v1/incidents",
                &operator,
                &json!({
                    "title": title, "service_id": service["id"], "severity": "error"
                }),
            )
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
        titles.push(title);
    }
    let ledger = || async {
        app.get("/api/v1/notifications", &operator)
            .await
            .json::<Value>()
            .await
            .unwrap()
    };
    // Each notice is tried, fails, and waits for its next attempt.
    let failing = eventually("every notice has failed at least twice", || async {
        let l = ledger().await;
        let items = l["items"].as_array().unwrap().clone();
        (items.len() == 3
            && items
                .iter()
                .all(|n| n["status"] == "failed" && n["attempts"].as_i64() >= Some(2)))
        .then_some(items)
    })
    .await;
    for n in &failing {
        assert!(
            n["last_error"].as_str().is_some_and(|e| !e.is_empty()),
            "a failed attempt says why: {n}"
        );
    }
    let rest = outage.saturating_sub(down_at.elapsed());
    tokio::time::sleep(rest).await;
    assert!(sink.messages().is_empty());

    // It comes back: every notice arrives, and only once.
    sink.restart().await;
    let up_at = std::time::Instant::now();
    let mails = sink.wait_for(3).await;
    let delivered_after = up_at.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mails_after = sink.messages();
    assert_eq!(mails_after.len(), 3, "no notice twice");
    let mut subjects: Vec<String> = mails.iter().map(|m| m.subject()).collect();
    subjects.sort();
    let expected: Vec<String> = titles
        .iter()
        .map(|t| format!("【障害発生】{t}（受注サイト）"))
        .collect();
    assert_eq!(subjects, expected);
    assert!(mails.iter().all(|m| m.rcpt_to == ["ichiro@example.jp"]));
    let settled = eventually("the ledger records every notice as sent", || async {
        let l = ledger().await;
        l["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["status"] == "sent")
            .then_some(l)
    })
    .await;
    assert_eq!(settled["items"].as_array().unwrap().len(), 3);
    let attempts = failing
        .iter()
        .filter_map(|n| n["attempts"].as_i64())
        .min()
        .unwrap_or(0);
    // Attempts in all, the one that went through included.
    let most = settled["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["attempts"].as_i64())
        .max()
        .unwrap_or(0);
    println!(
        "R4 figures: SMTP down {:.1} s, each of 3 notices failed at least {attempts} times meanwhile, at most {} times; all delivered {:.1} s after it returned, none twice",
        (up_at - down_at).as_secs_f64(),
        most,
        delivered_after.as_secs_f64()
    );
}

/// Three eight-hour shifts over six people, in Tokyo (no DST) and New York
/// (DST): round-the-clock cover, with hand-offs at the same local times all
/// year, answered by `GET /api/v1/schedules/{id}/oncall?at=`.
#[tokio::test]
async fn round_the_clock_cover_in_tokyo_and_across_new_york_dst() {
    let app = spawn_app().await;
    let admin = app.token(&[Role::Admin]);
    let mut people = Vec::new();
    for n in 1..=6 {
        let user = created(&app, "/api/v1/users", json!({
            "name": format!("Responder {n}"), "email": format!("r{n}@example.test"), "locale": "en"
        }))
        .await;
        people.push(user["id"].as_str().unwrap().to_owned());
    }
    // One rotation of eight-hour shifts over the six: three shifts a day,
    // each person on every other day.
    let schedule = |zone: &str| {
        json!({
            "name": format!("Round the clock ({zone})"), "time_zone": zone,
            "rotations": [{ "users": people, "shift_hours": 8, "start_date": "2026-01-01", "handoff_time": "00:00:00" }]
        })
    };
    let on_call = |id: String, at: &str| {
        let (app, admin) = (&app, &admin);
        let at = at.to_owned();
        async move {
            let res = app
                .get(
                    &format!("/api/v1/schedules/{id}/oncall?at={}", urlencode(&at)),
                    admin,
                )
                .await;
            assert_eq!(res.status(), StatusCode::OK);
            res.json::<Value>().await.unwrap()
        }
    };
    let user_at = |answer: &Value| -> String {
        answer["on_call"][0]["user_id"]
            .as_str()
            .unwrap_or_else(|| panic!("somebody is on call: {answer}"))
            .to_owned()
    };

    // Tokyo: every hour of a day has exactly one person, in turn, changing
    // at 00:00, 08:00 and 16:00 local time (15:00, 23:00, 07:00 UTC).
    let tokyo = created(&app, "/api/v1/schedules", schedule("Asia/Tokyo")).await;
    let id = tokyo["id"].as_str().unwrap().to_owned();
    // A day in Tokyo, 00:30 JST (15:30 UTC the day before) onwards: three
    // people, changing at 08:00 and 16:00 JST (23:00 and 07:00 UTC).
    let mut seen = Vec::new();
    for hour in 0..24 {
        let at = chrono::DateTime::parse_from_rfc3339("2026-03-10T15:30:00Z").unwrap()
            + chrono::Duration::hours(hour);
        seen.push(user_at(&on_call(id.clone(), &at.to_rfc3339()).await));
    }
    for hour in 1..24 {
        let jst = (hour + 24) % 24;
        assert_eq!(
            seen[hour] == seen[hour - 1],
            jst != 8 && jst != 16,
            "hand-offs only at 00:00, 08:00 and 16:00 JST (hour {hour}): {seen:?}"
        );
    }
    let distinct: std::collections::BTreeSet<&String> = seen.iter().collect();
    assert_eq!(distinct.len(), 3, "three shifts a day: {seen:?}");

    // New York, 2026-03-08: clocks jump from 02:00 to 03:00 local. The
    // night shift (00:00 to 08:00 local) is seven hours long that day; the
    // 08:00 hand-off is at 12:00 UTC, not 13:00 as the day before.
    let new_york = created(&app, "/api/v1/schedules", schedule("America/New_York")).await;
    let id = new_york["id"].as_str().unwrap().to_owned();
    let before = on_call(id.clone(), "2026-03-08T11:59:00Z").await;
    let after = on_call(id.clone(), "2026-03-08T12:01:00Z").await;
    assert_ne!(user_at(&before), user_at(&after), "08:00 EDT is 12:00 UTC");
    assert_eq!(
        before["on_call"][0]["shift_end"], "2026-03-08T12:00:00Z",
        "{before}"
    );
    assert_eq!(
        before["on_call"][0]["shift_start"], "2026-03-08T05:00:00Z",
        "the night began at 00:00 EST: {before}"
    );
    // The day before, 08:00 EST is 13:00 UTC.
    let day_before = on_call(id.clone(), "2026-03-07T12:30:00Z").await;
    assert_eq!(
        day_before["on_call"][0]["shift_end"], "2026-03-07T13:00:00Z",
        "{day_before}"
    );
}

fn urlencode(s: &str) -> String {
    s.replace(':', "%3A").replace('+', "%2B")
}
