//! Maintenance windows (issue 5, SPEC §5, §9): announcements mailed to the
//! subscribed contacts of the affected services through a real SMTP server,
//! in their language; notice periods enforced (late only for emergencies);
//! recurring windows expanded; the store's "which window covers service S at
//! T"; the iCalendar feed read by a real parser; clients see only their own
//! services' windows; every route's roles and tenants apart.

use std::time::Duration;

use chrono::{DateTime, Utc};
use opsledger_domain::access::Role;
use opsledger_domain::notification::Backoff;
use opsledger_server::mail::{SmtpConfig, TlsMode};
use opsledger_testkit::{spawn_app, spawn_app_with, SmtpSink, TestApp};
use opsledger_tests::eventually;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::api_directory::{register_client, register_service};
use crate::changes::{call, normal_change, request};

const WINDOWS: &str = "/api/v1/maintenance-windows";

fn smtp(sink: &SmtpSink) -> SmtpConfig {
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

fn maint(app: &TestApp) -> String {
    app.token_for(app.tenant, "maint-1", &[Role::Maintainer], None)
}

async fn subscribe(app: &TestApp, service: &Value, name: &str, email: &str, locale: &str) {
    let res = app
        .post(
            "/api/v1/subscriptions",
            &app.token(&[Role::Admin]),
            &json!({
                "service_id": service["id"], "name": name, "email": email, "locale": locale,
                "kinds": ["incident_opened"], "min_severity": "critical"
            }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
}

async fn plan(app: &TestApp, body: Value) -> Value {
    let a = call(app, Method::POST, WINDOWS, &maint(app), None, Some(body)).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    a.body
}

async fn step(app: &TestApp, id: &str, step: &str, body: Option<Value>) -> (StatusCode, Value) {
    let a = call(
        app,
        Method::POST,
        &format!("{WINDOWS}/{id}/{step}"),
        &maint(app),
        None,
        body,
    )
    .await;
    (a.status, a.body)
}

fn in_hours(h: i64) -> DateTime<Utc> {
    Utc::now() + chrono::Duration::hours(h)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_announcement_mails_the_subscribed_contacts_in_their_language() {
    let sink = SmtpSink::start().await;
    let config = smtp(&sink);
    let app = spawn_app_with(|c| {
        c.smtp = Some(config);
        c.poll_interval = Duration::from_millis(50);
    })
    .await;
    let client = register_client(&app, "株式会社サンプル").await;
    let cid = client["id"].as_str().unwrap();
    let shop = register_service(&app, cid, "受注サイト").await;
    let pay = register_service(&app, cid, "決済API").await;
    let other_client = register_client(&app, "Other Co").await;
    let theirs = register_service(&app, other_client["id"].as_str().unwrap(), "Their site").await;
    subscribe(&app, &shop, "佐藤 一郎", "ichiro@example.jp", "ja").await;
    // Subscribed to both services: told once, of both.
    subscribe(&app, &pay, "佐藤 一郎", "ICHIRO@example.jp", "ja").await;
    subscribe(&app, &pay, "Alice Smith", "alice@example.com", "en").await;
    subscribe(&app, &theirs, "Bob", "bob@other.example", "en").await;
    // No waiting for the read model: announcing waits for subscriptions made before it.

    // 72 h notice: four days ahead is in time.
    let start = in_hours(96);
    let window = plan(&app, json!({
        "title": "OS patching", "description": "Servers restart one by one.",
        "service_ids": [shop["id"], pay["id"]], "start": start, "end": start + chrono::Duration::hours(2)
    }))
    .await;
    let id = window["id"].as_str().unwrap();
    let (status, announced) = step(&app, id, "announce", None).await;
    assert_eq!(status, StatusCode::OK, "{announced}");
    assert_eq!(announced["status"], "announced");
    assert_eq!(announced["late"], false);
    assert_eq!(announced["recipients"], 2);

    let mails = sink.wait_for(2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mails = if sink.messages().len() > mails.len() {
        sink.messages()
    } else {
        mails
    };
    assert_eq!(mails.len(), 2, "Bob's service is not in the window");
    let ja = mails
        .iter()
        .find(|m| m.rcpt_to.iter().any(|r| r.starts_with("ichiro")))
        .unwrap();
    assert!(
        ja.subject()
            .starts_with("【メンテナンスのお知らせ】OS patching"),
        "{}",
        ja.subject()
    );
    let body = ja.body();
    assert!(body.contains("佐藤 一郎 様"), "{body}");
    assert!(body.contains("受注サイト、決済API"), "{body}");
    assert!(body.contains("(JST)"));
    assert!(body.contains(id));
    let en = mails
        .iter()
        .find(|m| m.rcpt_to.iter().any(|r| r == "alice@example.com"))
        .unwrap();
    assert!(en
        .subject()
        .starts_with("[opsledger] Planned maintenance: OS patching"));
    assert!(
        en.body()
            .lines()
            .any(|l| l.trim_end() == "  Services:      決済API"),
        "{}",
        en.body()
    );
    assert!(
        !en.body().contains("受注サイト"),
        "only her own subscription's service"
    );

    // The ledger says who was told, and the window's services are on every event.
    let ledger = eventually("the notifications are sent", || async {
        let l: Value = app
            .get(
                &format!("/api/v1/notifications?client_id={cid}"),
                &app.token(&[Role::Auditor]),
            )
            .await
            .json()
            .await
            .unwrap();
        let items = l["items"].as_array()?.clone();
        (items.len() == 2 && items.iter().all(|n| n["status"] == "sent")).then_some(items)
    })
    .await;
    assert!(ledger.iter().all(|n| n["kind"] == "window_announced"));
    let pg = app.app_state.pool.get().await.unwrap();
    let events = opsledger_store::read::read_stream(&pg, app.tenant, &format!("window-{id}"), None)
        .await
        .unwrap();
    assert_eq!(events.len(), 2);
    for e in &events {
        assert_eq!(e.payload["service_ids"], json!([shop["id"], pay["id"]]));
    }

    // Called off: those told are told so, in their language.
    let (status, cancelled) = step(
        &app,
        id,
        "cancel",
        Some(json!({ "reason": "vendor delay" })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    let mails = sink.wait_for(4).await;
    let ja = mails[2..]
        .iter()
        .find(|m| m.rcpt_to.iter().any(|r| r.starts_with("ichiro")))
        .unwrap();
    assert!(
        ja.subject()
            .starts_with("【メンテナンス中止のお知らせ】OS patching"),
        "{}",
        ja.subject()
    );
    let en = mails[2..]
        .iter()
        .find(|m| m.rcpt_to.iter().any(|r| r == "alice@example.com"))
        .unwrap();
    assert!(en
        .subject()
        .starts_with("[opsledger] Maintenance cancelled: OS patching"));
    assert!(
        !en.body().contains("vendor delay"),
        "the reason is internal"
    );
    // A window never announced is cancelled without telling anyone.
    let quiet = plan(&app, json!({
        "title": "Quiet", "service_ids": [shop["id"]], "start": start, "end": start + chrono::Duration::hours(1)
    }))
    .await;
    let (status, _) = step(
        &app,
        quiet["id"].as_str().unwrap(),
        "cancel",
        Some(json!({ "reason": "x" })),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(sink.messages().len(), 4);
}

#[tokio::test]
async fn a_late_announcement_is_refused_unless_the_window_serves_an_emergency_change() {
    let app = spawn_app().await;
    let client = register_client(&app, "株式会社サンプル").await;
    let service = register_service(&app, client["id"].as_str().unwrap(), "受注サイト").await;
    let start = in_hours(24);
    let body = json!({
        "title": "Reboot", "service_ids": [service["id"]], "start": start, "end": start + chrono::Duration::hours(1)
    });
    let window = plan(&app, body.clone()).await;
    let (status, refused) = step(&app, window["id"].as_str().unwrap(), "announce", None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    let detail = refused["detail"].as_str().unwrap();
    assert!(detail.contains("72 h notice"), "{detail}");
    let latest = (start - chrono::Duration::hours(72)).to_rfc3339();
    assert!(detail.contains(&latest[..16]), "{detail} names {latest}");

    // For a normal change: refused all the same.
    let normal = request(&app, &maint(&app), normal_change(&service)).await;
    let mut for_normal = body.clone();
    for_normal["change_id"] = normal["id"].clone();
    let w = plan(&app, for_normal).await;
    let (status, _) = step(&app, w["id"].as_str().unwrap(), "announce", None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    // For an emergency change: accepted, and flagged late.
    let emergency = request(
        &app,
        &maint(&app),
        json!({
            "kind": "emergency", "category": "security_patch", "title": "CVE fix",
            "risk": "high", "impact": "restart", "service_ids": [service["id"]]
        }),
    )
    .await;
    let mut for_emergency = body.clone();
    for_emergency["change_id"] = emergency["id"].clone();
    let w = plan(&app, for_emergency).await;
    let (status, late) = step(&app, w["id"].as_str().unwrap(), "announce", None).await;
    assert_eq!(status, StatusCode::OK, "{late}");
    assert_eq!(late["late"], true);
    assert_eq!(late["change_id"], emergency["id"]);

    // An unknown change or service is refused when planning.
    let mut unknown = body.clone();
    unknown["change_id"] = json!(Uuid::now_v7());
    let a = call(
        &app,
        Method::POST,
        WINDOWS,
        &maint(&app),
        None,
        Some(unknown),
    )
    .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn recurring_windows_expand_and_the_store_says_which_window_covers_a_service() {
    let app = spawn_app().await;
    let client = register_client(&app, "株式会社サンプル").await;
    let cid = client["id"].as_str().unwrap();
    let service = register_service(&app, cid, "受注サイト").await;
    let other = register_service(&app, cid, "決済API").await;
    let sid: Uuid = service["id"].as_str().unwrap().parse().unwrap();
    let first: DateTime<Utc> = "2030-06-02T01:00:00Z".parse().unwrap();
    let window = plan(
        &app,
        json!({
            "title": "Weekly patching", "service_ids": [service["id"]], "start": first,
            "end": first + chrono::Duration::hours(2), "rrule": "FREQ=WEEKLY;BYDAY=SU;COUNT=4"
        }),
    )
    .await;
    let id = window["id"].as_str().unwrap().to_owned();
    let got = call(
        &app,
        Method::GET,
        &format!("{WINDOWS}/{id}?from=2030-06-01T00:00:00Z&to=2030-07-01T00:00:00Z"),
        &maint(&app),
        None,
        None,
    )
    .await;
    let starts: Vec<&str> = got.body["occurrences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["start"].as_str().unwrap())
        .collect();
    assert_eq!(
        starts,
        [
            "2030-06-02T01:00:00Z",
            "2030-06-09T01:00:00Z",
            "2030-06-16T01:00:00Z",
            "2030-06-23T01:00:00Z"
        ]
    );

    let pool = &app.app_state.pool;
    let covering = |at: &'static str, service: Uuid| async move {
        let pg = pool.get().await.unwrap();
        opsledger_store::changes::window_covering(&pg, app.tenant, service, at.parse().unwrap())
            .await
            .unwrap()
    };
    let during = "2030-06-16T02:30:00Z";
    // Planned, not yet announced: it covers nothing.
    eventually("the window is projected", || async {
        let l = call(&app, Method::GET, WINDOWS, &maint(&app), None, None)
            .await
            .body;
        (l["items"].as_array()?.len() == 1).then_some(())
    })
    .await;
    assert_eq!(covering(during, sid).await, None);
    let (status, _) = step(&app, &id, "announce", None).await;
    assert_eq!(status, StatusCode::OK);
    let wid: Uuid = id.parse().unwrap();
    eventually("the announcement is projected", || async {
        (covering(during, sid).await == Some(wid)).then_some(())
    })
    .await;
    assert_eq!(
        covering("2030-06-16T03:00:00Z", sid).await,
        None,
        "the end is exclusive"
    );
    assert_eq!(
        covering("2030-06-17T02:00:00Z", sid).await,
        None,
        "between occurrences"
    );
    assert_eq!(
        covering("2030-06-30T02:00:00Z", sid).await,
        None,
        "after the fourth"
    );
    assert_eq!(
        covering(during, other["id"].as_str().unwrap().parse().unwrap()).await,
        None,
        "another service"
    );
    let (status, _) = step(&app, &id, "cancel", Some(json!({ "reason": "moved" }))).await;
    assert_eq!(status, StatusCode::OK);
    eventually("the cancellation is projected", || async {
        covering(during, sid).await.is_none().then_some(())
    })
    .await;

    // A one-off window started early covers from its actual start.
    let start = in_hours(100);
    let w = plan(&app, json!({
        "title": "DB failover", "service_ids": [service["id"]], "start": start, "end": start + chrono::Duration::hours(1)
    }))
    .await;
    let (status, started) = step(&app, w["id"].as_str().unwrap(), "start", None).await;
    assert_eq!(status, StatusCode::OK, "{started}");
    let pg = pool.get().await.unwrap();
    let now = Utc::now();
    let found = eventually("the start is projected", || async {
        opsledger_store::changes::window_covering(
            &pg,
            app.tenant,
            sid,
            now + chrono::Duration::seconds(1),
        )
        .await
        .unwrap()
    })
    .await;
    assert_eq!(found.to_string(), w["id"].as_str().unwrap());
}

/// RFC 5545 §3.3.11: the TEXT value an escaped one stands for.
fn unescape(v: &str) -> String {
    let mut out = String::new();
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') | Some('N') => out.push('\n'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn prop<'a>(props: &'a [ical::property::Property], name: &str) -> Option<&'a str> {
    props
        .iter()
        .find(|p| p.name == name)
        .and_then(|p| p.value.as_deref())
}

#[tokio::test]
async fn the_calendar_is_valid_icalendar_with_windows_and_changes() {
    let app = spawn_app().await;
    let client = register_client(&app, "株式会社サンプル").await;
    let cid = client["id"].as_str().unwrap();
    let service = register_service(&app, cid, "受注サイト").await;
    let other_client = register_client(&app, "Other Co").await;
    let theirs = register_service(&app, other_client["id"].as_str().unwrap(), "Their site").await;
    // A long Japanese title with the characters TEXT must escape: it is
    // folded across lines and escaped, and must read back whole.
    let title = "定期メンテナンス（受注サイト・決済API・在庫管理）; OS, DB\\ミドルウェア更新 — 第3日曜日の深夜帯に実施";
    let description = "1. 停止\n2. 更新, 再起動; 確認";
    let start: DateTime<Utc> = (Utc::now() + chrono::Duration::days(10))
        .date_naive()
        .and_hms_opt(1, 0, 0)
        .unwrap()
        .and_utc();
    let window = plan(&app, json!({
        "title": title, "description": description, "service_ids": [service["id"]],
        "start": start, "end": start + chrono::Duration::hours(3), "rrule": "FREQ=MONTHLY;BYDAY=3SU;COUNT=6"
    }))
    .await;
    let theirs_window = plan(
        &app,
        json!({
            "title": "Their upgrade", "service_ids": [theirs["id"]],
            "start": start, "end": start + chrono::Duration::hours(1)
        }),
    )
    .await;
    let m = maint(&app);
    let mut std = normal_change(&service);
    std["kind"] = json!("standard");
    std["title"] = json!("Rotate certificates, all nodes");
    let change = request(&app, &m, std).await;
    let chid = change["id"].as_str().unwrap();
    let a = call(&app, Method::POST, &format!("/api/v1/changes/{chid}/schedule"), &m, None, Some(json!({
        "start": start + chrono::Duration::days(1), "end": start + chrono::Duration::days(1) + chrono::Duration::hours(1)
    })))
    .await;
    assert_eq!(a.status, StatusCode::OK);

    let fetch = |token: String| {
        let app = &app;
        async move {
            let res = app.get("/api/v1/calendar.ics", &token).await;
            assert_eq!(res.status(), StatusCode::OK);
            assert_eq!(
                res.headers()["content-type"].to_str().unwrap(),
                "text/calendar; charset=utf-8"
            );
            res.text().await.unwrap()
        }
    };
    let text = eventually("the windows and the change are projected", || async {
        let t = fetch(app.token(&[Role::Auditor])).await;
        (t.matches("BEGIN:VEVENT").count() == 3).then_some(t)
    })
    .await;
    // Every line ends CRLF and has at most 75 octets.
    for line in text.split_inclusive('\n') {
        assert!(line.ends_with("\r\n"), "{line:?}");
        assert!(line.len() - 2 <= 75, "{} octets: {line:?}", line.len() - 2);
    }
    assert!(text.contains("\r\n "), "the long title is folded");

    let mut parser = ical::IcalParser::new(std::io::BufReader::new(text.as_bytes()));
    let cal = parser.next().expect("one calendar").expect("it parses");
    assert!(parser.next().is_none());
    assert_eq!(prop(&cal.properties, "VERSION"), Some("2.0"));
    assert_eq!(cal.events.len(), 3);
    let by_uid = |uid: String| {
        cal.events
            .iter()
            .find(|e| prop(&e.properties, "UID") == Some(uid.as_str()))
            .unwrap_or_else(|| panic!("no event {uid}"))
    };
    let w = by_uid(format!(
        "window-{}@opsledger",
        window["id"].as_str().unwrap()
    ));
    assert_eq!(
        prop(&w.properties, "SUMMARY").map(unescape).as_deref(),
        Some(title)
    );
    assert_eq!(
        prop(&w.properties, "DESCRIPTION").map(unescape).as_deref(),
        Some(description)
    );
    assert_eq!(
        prop(&w.properties, "RRULE"),
        Some("FREQ=MONTHLY;BYDAY=3SU;COUNT=6")
    );
    assert_eq!(
        prop(&w.properties, "DTSTART"),
        Some(start.format("%Y%m%dT%H%M%SZ").to_string().as_str())
    );
    assert_eq!(prop(&w.properties, "STATUS"), Some("TENTATIVE"));
    let c = by_uid(format!("change-{chid}@opsledger"));
    assert_eq!(
        prop(&c.properties, "SEQUENCE"),
        Some("1"),
        "scheduled: version 2"
    );
    assert_eq!(prop(&w.properties, "SEQUENCE"), Some("0"));
    assert_eq!(
        prop(&c.properties, "SUMMARY").map(unescape).as_deref(),
        Some("Change: Rotate certificates, all nodes")
    );
    assert!(prop(&c.properties, "SUMMARY").unwrap().contains("\\,"));
    by_uid(format!(
        "window-{}@opsledger",
        theirs_window["id"].as_str().unwrap()
    ));

    // A client's calendar: its own windows only, no changes. Which services
    // are its client's, the directory read model says: it follows the log
    // apart from the windows' and may be a moment behind them.
    let client_token = app.token_for(app.tenant, "c", &[Role::Client], Some(cid.parse().unwrap()));
    let text = eventually("the client's window is in its calendar", || async {
        let t = fetch(client_token.clone()).await;
        t.contains("BEGIN:VEVENT").then_some(t)
    })
    .await;
    let cal = ical::IcalParser::new(std::io::BufReader::new(text.as_bytes()))
        .next()
        .unwrap()
        .unwrap();
    let uids: Vec<&str> = cal
        .events
        .iter()
        .filter_map(|e| prop(&e.properties, "UID"))
        .collect();
    assert_eq!(
        uids,
        vec![format!(
            "window-{}@opsledger",
            window["id"].as_str().unwrap()
        )]
    );
}

#[tokio::test]
async fn clients_see_only_their_own_services_windows_without_internal_fields() {
    let app = spawn_app().await;
    let client = register_client(&app, "株式会社サンプル").await;
    let cid = client["id"].as_str().unwrap();
    let shop = register_service(&app, cid, "受注サイト").await;
    let other_client = register_client(&app, "Other Co").await;
    let theirs = register_service(&app, other_client["id"].as_str().unwrap(), "Their site").await;
    let change = request(&app, &maint(&app), normal_change(&shop)).await;
    let start = in_hours(200);
    let shared = plan(
        &app,
        json!({
            "title": "Network maintenance", "service_ids": [shop["id"], theirs["id"]],
            "start": start, "end": start + chrono::Duration::hours(1), "change_id": change["id"]
        }),
    )
    .await;
    let only_theirs = plan(&app, json!({
        "title": "Their upgrade", "service_ids": [theirs["id"]], "start": start, "end": start + chrono::Duration::hours(1)
    }))
    .await;
    let token = app.token_for(app.tenant, "c", &[Role::Client], Some(cid.parse().unwrap()));
    // The client's view also asks the directory read model whose services
    // are its client's; it follows the log apart from the windows' and may
    // be a moment behind them.
    let list = eventually("both windows are projected", || async {
        let staff = call(&app, Method::GET, WINDOWS, &maint(&app), None, None)
            .await
            .body;
        if staff["items"].as_array()?.len() != 2 {
            return None;
        }
        let mine = call(&app, Method::GET, WINDOWS, &token, None, None)
            .await
            .body;
        (!mine["items"].as_array()?.is_empty()).then_some(mine)
    })
    .await;
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], shared["id"]);
    assert_eq!(
        items[0]["service_ids"],
        json!([shop["id"]]),
        "only its own service is named"
    );
    for internal in [
        "change_id",
        "planned_by",
        "late",
        "recipients",
        "cancel_reason",
    ] {
        assert!(
            items[0].get(internal).is_none(),
            "{internal} shown to a client"
        );
    }
    let a = call(
        &app,
        Method::GET,
        &format!("{WINDOWS}/{}", shared["id"].as_str().unwrap()),
        &token,
        None,
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.body.get("change_id").is_none());
    let a = call(
        &app,
        Method::GET,
        &format!("{WINDOWS}/{}", only_theirs["id"].as_str().unwrap()),
        &token,
        None,
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    // Changes are not for clients.
    let a = call(&app, Method::GET, "/api/v1/changes", &token, None, None).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn roles_are_enforced_on_every_window_route_and_tenants_stay_apart() {
    let app = spawn_app().await;
    let client = register_client(&app, "Client A").await;
    let client_id: Uuid = client["id"].as_str().unwrap().parse().unwrap();
    let service = register_service(&app, &client_id.to_string(), "shop").await;
    let start = in_hours(24 * 30);
    let body = json!({
        "title": "Patch", "service_ids": [service["id"]], "start": start, "end": start + chrono::Duration::hours(1)
    });
    let window = plan(&app, body.clone()).await;
    let id = window["id"].as_str().unwrap().to_owned();
    let staff = [
        Role::Operator,
        Role::Maintainer,
        Role::Approver,
        Role::Auditor,
        Role::Admin,
    ];
    for role in Role::ALL {
        let t = app.token_for(
            app.tenant,
            "u",
            &[role],
            (role == Role::Client).then_some(client_id),
        );
        let reads = staff.contains(&role) || role == Role::Client;
        let writes = matches!(role, Role::Maintainer | Role::Admin);
        let checks: Vec<(Method, String, Option<Value>, bool)> = vec![
            (Method::GET, WINDOWS.into(), None, reads),
            (Method::GET, format!("{WINDOWS}/{id}"), None, reads),
            (Method::GET, "/api/v1/calendar.ics".into(), None, reads),
            (Method::POST, WINDOWS.into(), Some(body.clone()), writes),
            // Wrong state for every role allowed: 409 proves the role passed.
            (
                Method::POST,
                format!("{WINDOWS}/{id}/end"),
                Some(json!({})),
                writes,
            ),
        ];
        for (method, path, body, allowed) in checks {
            let a = call(&app, method.clone(), &path, &t, None, body).await;
            assert_ne!(
                a.status,
                StatusCode::UNAUTHORIZED,
                "{role:?} {method} {path}"
            );
            assert_eq!(
                a.status == StatusCode::FORBIDDEN,
                !allowed,
                "{role:?} {method} {path}: {} {}",
                a.status,
                a.body
            );
        }
        for (s, b) in [
            ("announce", json!({})),
            ("start", json!({})),
            ("cancel", json!({ "reason": "x" })),
        ] {
            if !writes {
                let a = call(
                    &app,
                    Method::POST,
                    &format!("{WINDOWS}/{id}/{s}"),
                    &t,
                    None,
                    Some(b),
                )
                .await;
                assert_eq!(a.status, StatusCode::FORBIDDEN, "{role:?} {s}: {}", a.body);
            }
        }
    }
    let other = app.register_tenant("Other MSP").await;
    let stranger = app.token_for(other, "x", &[Role::Admin], None);
    for (method, path, body) in [
        (Method::GET, format!("{WINDOWS}/{id}"), None),
        (Method::POST, format!("{WINDOWS}/{id}/announce"), None),
        (
            Method::POST,
            format!("{WINDOWS}/{id}/cancel"),
            Some(json!({ "reason": "x" })),
        ),
    ] {
        let a = call(&app, method.clone(), &path, &stranger, None, body).await;
        assert_eq!(
            a.status,
            StatusCode::NOT_FOUND,
            "{method} {path}: {}",
            a.body
        );
    }
    let list = call(&app, Method::GET, WINDOWS, &stranger, None, None).await;
    assert_eq!(list.body["items"], json!([]));
    let cal = app
        .get("/api/v1/calendar.ics", &stranger)
        .await
        .text()
        .await
        .unwrap();
    assert!(!cal.contains("BEGIN:VEVENT"));
    // A stale If-Match on a window is 412, naming where it stands.
    let a = call(
        &app,
        Method::POST,
        &format!("{WINDOWS}/{id}/cancel"),
        &maint(&app),
        Some(2),
        Some(json!({ "reason": "x" })),
    )
    .await;
    assert_eq!(a.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(a.body["current_state"], "planned");
    assert_eq!(a.body["current_version"], 1);
}

#[tokio::test]
async fn no_input_to_a_change_window_or_freeze_route_is_a_server_error() {
    let app = spawn_app().await;
    let client = register_client(&app, "Client A").await;
    let service = register_service(&app, client["id"].as_str().unwrap(), "shop").await;
    let admin = app.token(&[Role::Admin]);
    let change = request(&app, &admin, normal_change(&service)).await;
    let cid = change["id"].as_str().unwrap().to_owned();
    let window = plan(
        &app,
        json!({
            "title": "w", "service_ids": [service["id"]], "start": "9999-12-30T00:00:00Z",
            "end": "9999-12-31T23:59:59Z", "rrule": "FREQ=YEARLY"
        }),
    )
    .await;
    let wid = window["id"].as_str().unwrap().to_owned();
    let sid = service["id"].clone();
    let bodies = [
        json!(null),
        json!([]),
        json!("x"),
        json!({}),
        json!({ "minutes_spent": -1 }),
        json!({ "minutes_spent": 4_294_967_296u64 }),
        json!({ "minutes_spent": 10_081 }),
        json!({ "start": "0001-01-01T00:00:00Z", "end": "9999-12-31T23:59:59Z" }),
        json!({ "start": "9999-12-31T23:00:00Z", "end": "9999-12-31T23:59:59Z", "window_id": wid }),
        json!({ "reason": "\u{0}\u{7}", "summary": "x".repeat(20_000) }),
        json!({ "relation": "implements", "proposal_id": cid }),
        json!({ "kind": "normal", "category": "fix", "title": "t", "risk": "low", "impact": "i",
                "rollback_plan": "r", "service_ids": [sid, sid], "links": [{ "relation": "fixes" }] }),
        json!({ "title": "t", "service_ids": [sid], "start": "0001-01-01T00:00:00Z",
                "end": "0001-01-01T01:00:00Z", "rrule": "FREQ=DAILY;INTERVAL=0" }),
        json!({ "title": "t", "service_ids": [sid], "start": "9999-12-31T00:00:00Z",
                "end": "9999-12-31T01:00:00Z", "rrule": "FREQ=MONTHLY;BYMONTHDAY=31;BYSETPOS=-1" }),
        json!({ "title": "t", "service_ids": [sid], "start": "2030-01-01T00:00:00Z",
                "end": "2030-01-01T01:00:00Z", "rrule": "FREQ=DAILY;COUNT=4294967296" }),
        json!({ "service_ids": [sid], "start": "0001-01-01T00:00:00Z", "end": "9999-12-31T00:00:00Z", "reason": "r" }),
    ];
    let paths = [
        "/api/v1/changes".to_owned(),
        "/api/v1/freezes".to_owned(),
        WINDOWS.to_owned(),
        format!("/api/v1/changes/{cid}/submit"),
        format!("/api/v1/changes/{cid}/approve"),
        format!("/api/v1/changes/{cid}/reject"),
        format!("/api/v1/changes/{cid}/schedule"),
        format!("/api/v1/changes/{cid}/start"),
        format!("/api/v1/changes/{cid}/complete"),
        format!("/api/v1/changes/{cid}/fail"),
        format!("/api/v1/changes/{cid}/rollback"),
        format!("/api/v1/changes/{cid}/review"),
        format!("/api/v1/changes/{cid}/links"),
        format!("{WINDOWS}/{wid}/announce"),
        format!("{WINDOWS}/{wid}/start"),
        format!("{WINDOWS}/{wid}/end"),
        format!("{WINDOWS}/{wid}/cancel"),
    ];
    for path in &paths {
        for body in &bodies {
            let a = call(&app, Method::POST, path, &admin, None, Some(body.clone())).await;
            assert!(
                a.status.as_u16() < 500,
                "{path} {body}: {} {}",
                a.status,
                a.body
            );
        }
        let raw = app
            .http
            .post(app.url(path))
            .bearer_auth(&admin)
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap();
        assert_eq!(raw.status(), StatusCode::BAD_REQUEST, "{path}");
    }
    for path in [
        format!("{WINDOWS}/{wid}?from=0001-01-01T00:00:00Z&to=9999-12-31T23:59:59Z"),
        format!("{WINDOWS}?from=9999-12-31T23:59:59Z"),
        "/api/v1/calendar.ics".to_owned(),
        format!("/api/v1/changes/history?service={cid}"),
        "/api/v1/changes?approval_missing=maybe".to_owned(),
    ] {
        let a = call(&app, Method::GET, &path, &admin, None, None).await;
        assert!(a.status.as_u16() < 500, "{path}: {} {}", a.status, a.body);
    }
}

#[tokio::test]
async fn alerts_inside_a_window_in_force_are_recorded_but_open_no_incident() {
    let app = spawn_app().await;
    let client = register_client(&app, "株式会社サンプル").await;
    let service = register_service(&app, client["id"].as_str().unwrap(), "受注サイト").await;
    let other = register_service(&app, client["id"].as_str().unwrap(), "決済API").await;
    let monitoring = app.token(&[Role::Integration]);
    let start = in_hours(1);
    let window = plan(
        &app,
        json!({ "title": "DB upgrade", "service_ids": [service["id"]], "start": start,
                "end": start + chrono::Duration::hours(2) }),
    )
    .await;
    let id = window["id"].as_str().unwrap().to_owned();
    // Started early, by hand: in force from now until its planned end.
    let (status, started) = step(&app, &id, "start", None).await;
    assert_eq!(status, StatusCode::OK, "{started}");
    let alert = |service: &Value, key: &str| {
        json!({ "source": "prometheus", "dedup_key": key, "service": service["id"],
                "summary": "Replica lag", "severity": "critical" })
    };
    // Ingestion reads windows from their read model (and keeps them for a
    // second): wait until an alert is held by the window.
    let mut n = 0;
    let held = eventually("the window holds the service's alerts", || {
        n += 1;
        let body = alert(&service, &format!("lag-{n}"));
        let app = &app;
        let monitoring = &monitoring;
        async move {
            let res = app.post("/api/v1/alerts", monitoring, &body).await;
            let v: Value = res.json().await.unwrap();
            (v["outcome"] == "suppressed_by_window").then_some(v)
        }
    })
    .await;
    assert!(held["incident_id"].is_null(), "{held}");
    let alert_id = held["alert_id"].as_str().unwrap();
    let recorded = app
        .get(
            &format!("/api/v1/alerts/{alert_id}"),
            &app.token(&[Role::Operator]),
        )
        .await;
    assert_eq!(recorded.status(), StatusCode::OK);
    let recorded: Value = recorded.json().await.unwrap();
    assert_eq!(recorded["decision"]["window_id"], json!(id), "{recorded}");
    // Trouble reported by hand inside the window is planned downtime; on
    // another service it is not.
    let operator = app.token(&[Role::Operator]);
    let by_hand = |service: &Value| json!({ "title": "Slow pages", "service_id": service["id"], "severity": "warning" });
    let res = app
        .post("/api/v1/incidents", &operator, &by_hand(&service))
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let planned: Value = res.json().await.unwrap();
    assert_eq!(planned["planned_window"], json!(id), "{planned}");
    let res = app
        .post("/api/v1/incidents", &operator, &by_hand(&other))
        .await;
    let unplanned: Value = res.json().await.unwrap();
    assert!(unplanned["planned_window"].is_null(), "{unplanned}");
    // Another service is not in the window: its alert opens an incident.
    let res = app
        .post("/api/v1/alerts", &monitoring, &alert(&other, "pay-down"))
        .await;
    let opened: Value = res.json().await.unwrap();
    assert_eq!(opened["outcome"], "opened_incident", "{opened}");
    // Once the window ends, the service's alerts open incidents again.
    let (status, _) = step(&app, &id, "end", None).await;
    assert_eq!(status, StatusCode::OK);
    let mut m = 0;
    eventually("alerts open incidents after the window", || {
        m += 1;
        let body = alert(&service, &format!("after-{m}"));
        let app = &app;
        let monitoring = &monitoring;
        async move {
            let res = app.post("/api/v1/alerts", monitoring, &body).await;
            let v: Value = res.json().await.unwrap();
            (v["outcome"] == "opened_incident" || v["outcome"] == "attached_to_incident")
                .then_some(())
        }
    })
    .await;
}
