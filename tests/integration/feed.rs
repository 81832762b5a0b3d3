//! The event feed (SPEC §7): pages and Server-Sent Events, gap-safe, with
//! opaque cursors, for auditors and admins only.

use std::time::Duration;

use opsledger_domain::access::Role;
use opsledger_testkit::{spawn_app, spawn_app_with, TestApp};
use opsledger_tests::eventually;
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn client(app: &TestApp, name: &str) -> String {
    let res = app
        .post(
            "/api/v1/clients",
            &app.token(&[Role::Admin]),
            &json!({ "name": name }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn page(app: &TestApp, query: &str) -> Value {
    let res = app
        .get(
            &format!("/api/v1/events{query}"),
            &app.token(&[Role::Auditor]),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK, "{query}");
    res.json().await.unwrap()
}

/// Every event of the tenant from `after`, page by page.
async fn all_after(app: &TestApp, mut after: Option<String>, query: &str) -> (Vec<Value>, String) {
    let mut items = vec![];
    loop {
        let q = match &after {
            Some(c) => format!("?limit=2&after={c}{query}"),
            None => format!("?limit=2{query}"),
        };
        let p = page(app, &q).await;
        let got = p["items"].as_array().unwrap().clone();
        let next = p["next_cursor"].as_str().unwrap().to_owned();
        let done = got.len() < 2;
        items.extend(got);
        after = Some(next.clone());
        if done {
            return (items, next);
        }
    }
}

#[tokio::test]
async fn the_feed_pages_through_the_tenants_events_in_order() {
    let app = spawn_app().await;
    let ids = [
        client(&app, "A").await,
        client(&app, "B").await,
        client(&app, "C").await,
    ];
    let (items, cursor) = eventually("the events are below the horizon", || async {
        let (items, cursor) = all_after(&app, None, "&type=ClientRegistered").await;
        (items.len() == 3).then_some((items, cursor))
    })
    .await;
    let streams: Vec<&str> = items
        .iter()
        .map(|e| e["stream_id"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = ids.iter().map(|id| format!("client-{id}")).collect();
    assert_eq!(streams, expected);
    assert!(items
        .iter()
        .all(|e| e["tenant_id"] == app.tenant.to_string()));
    // Nothing new after the last cursor; a new event comes after it.
    let none = page(&app, &format!("?after={cursor}&type=ClientRegistered")).await;
    assert_eq!(none["items"].as_array().unwrap().len(), 0);
    let d = client(&app, "D").await;
    let more = eventually("the new event", || async {
        let p = page(&app, &format!("?after={cursor}")).await;
        let items = p["items"].as_array().unwrap().clone();
        items
            .iter()
            .any(|e| e["stream_id"] == format!("client-{d}"))
            .then_some(items)
    })
    .await;
    assert!(more.iter().all(|e| e["stream_id"] != expected[0].as_str()));
    let one = page(&app, &format!("?stream=client-{}", ids[1])).await;
    assert_eq!(one["items"].as_array().unwrap().len(), 1);
    // Another tenant's feed has none of it.
    let other = app.register_tenant("Other").await;
    let res = app
        .get(
            "/api/v1/events",
            &app.token_for(other, "x", &[Role::Admin], None),
        )
        .await;
    let theirs: Value = res.json().await.unwrap();
    assert!(theirs["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["tenant_id"] != app.tenant.to_string()));
    for bad in [
        "?after=12",
        "?after=cz-1",
        "?after=cffffffffffffffff-1",
        "?after=c1-ffffffffffffffff",
        "?limit=0",
        "?limit=5000",
        "?nope=1",
    ] {
        let res = app
            .get(
                &format!("/api/v1/events{bad}"),
                &app.token(&[Role::Auditor]),
            )
            .await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(res.headers()["content-type"], "application/problem+json");
    }
    let client_user = app.token_for(
        app.tenant,
        "c",
        &[Role::Client],
        Some(ids[0].parse().unwrap()),
    );
    for token in [client_user, app.token(&[Role::Operator])] {
        let res = app.get("/api/v1/events", &token).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
        let res = app.get("/api/v1/events/stream", &token).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
    }
}

/// An event whose transaction began earlier but commits later gets a lower
/// position than events committed meanwhile: the feed holds back until it
/// commits, and then gives it before them.
#[tokio::test]
async fn the_feed_never_skips_an_event_that_commits_late() {
    let app = spawn_app().await;
    client(&app, "first").await;
    let (_, cursor) = eventually("the first event is readable", || async {
        let (items, cursor) = all_after(&app, None, "&type=ClientRegistered").await;
        (items.len() == 1).then_some((items, cursor))
    })
    .await;
    // A transaction takes its position now and commits at the end.
    let (mut su, conn) = tokio_postgres::connect(&app.db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let late = su.transaction().await.unwrap();
    late.execute(
        "INSERT INTO events (event_id, tenant_id, stream_id, stream_version, event_type, \
           schema_version, work_class, payload, metadata, occurred_at, recorded_at, \
           chain_lane, prev_hash, hash) \
         VALUES ($1, $2, 'probe-late', 1, 'LateProbe', 1, 'operations', '{}', '{}', now(), now(), \
           0, '\\x00', '\\x00')",
        &[&uuid::Uuid::now_v7(), &app.tenant],
    )
    .await
    .unwrap();
    let b = client(&app, "second").await;
    // The second is committed, but below it the late one is not.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let held = page(&app, &format!("?after={cursor}")).await;
    assert!(
        held["items"].as_array().unwrap().is_empty(),
        "nothing past a transaction still running: {held}"
    );
    late.commit().await.unwrap();
    let items = eventually("both, the late one first", || async {
        let p = page(&app, &format!("?after={cursor}")).await;
        let items = p["items"].as_array().unwrap().clone();
        items
            .iter()
            .any(|e| e["stream_id"] == format!("client-{b}"))
            .then_some(items)
    })
    .await;
    let order: Vec<&str> = items
        .iter()
        .map(|e| e["stream_id"].as_str().unwrap())
        .filter(|s| {
            *s == "probe-late" || (s.starts_with("client-") && !s.starts_with("client-name"))
        })
        .collect();
    assert_eq!(order.first(), Some(&"probe-late"), "{items:?}");
    let late_position = items[0]["position"].as_i64().unwrap();
    assert!(items
        .iter()
        .skip(1)
        .any(|e| e["position"].as_i64().unwrap() > late_position));
}

/// Reads Server-Sent Events frames until `enough` says so.
async fn frames(mut res: reqwest::Response, enough: impl Fn(&[String]) -> bool) -> Vec<String> {
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let frames: Vec<String> = text
            .split("\n\n")
            .filter(|f| !f.is_empty())
            .map(str::to_owned)
            .collect();
        let complete = if text.ends_with("\n\n") {
            frames.clone()
        } else {
            frames[..frames.len().saturating_sub(1)].to_vec()
        };
        if enough(&complete) {
            return complete;
        }
        let chunk = tokio::time::timeout_at(deadline, res.chunk())
            .await
            .expect("frames in time")
            .unwrap()
            .expect("the stream goes on");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
}

fn id_of(frame: &str) -> Option<&str> {
    frame.lines().find_map(|l| l.strip_prefix("id: "))
}

#[tokio::test]
async fn the_event_stream_resumes_after_the_last_event_id_and_keeps_the_line_alive() {
    let app = spawn_app_with(|c| {
        c.feed_heartbeat = Duration::from_millis(300);
        c.poll_interval = Duration::from_millis(50);
    })
    .await;
    let auditor = app.token(&[Role::Auditor]);
    let a = client(&app, "A").await;
    let res = app
        .http
        .get(app.url("/api/v1/events/stream?type=ClientRegistered"))
        .bearer_auth(&auditor)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let b = client(&app, "B").await;
    let got = frames(res, |f| {
        f.iter().filter(|f| id_of(f).is_some()).count() >= 2
    })
    .await;
    let events: Vec<&String> = got.iter().filter(|f| id_of(f).is_some()).collect();
    assert!(events[0].contains("event: ClientRegistered"), "{events:?}");
    assert!(events[0].contains(&format!("client-{a}")));
    assert!(events[1].contains(&format!("client-{b}")));
    let data: Value = serde_json::from_str(
        events[1]
            .lines()
            .find_map(|l| l.strip_prefix("data: "))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(data["event_type"], "ClientRegistered");
    // Reconnecting with the first event's id: the second and what follows,
    // then heartbeats while nothing happens.
    let c = client(&app, "C").await;
    let res = app
        .http
        .get(app.url("/api/v1/events/stream?type=ClientRegistered"))
        .bearer_auth(&auditor)
        .header("Last-Event-ID", id_of(events[0]).unwrap())
        .send()
        .await
        .unwrap();
    let got = frames(res, |f| f.iter().any(|f| f.starts_with(": heartbeat"))).await;
    let streams: Vec<String> = got
        .iter()
        .filter(|f| id_of(f).is_some())
        .map(|f| {
            let data: Value =
                serde_json::from_str(f.lines().find_map(|l| l.strip_prefix("data: ")).unwrap())
                    .unwrap();
            data["stream_id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(streams, [format!("client-{b}"), format!("client-{c}")]);
    let res = app
        .http
        .get(app.url("/api/v1/events/stream"))
        .bearer_auth(&auditor)
        .header("Last-Event-ID", "garbage")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
}

/// An integration reads the feed only while an admin's grant of its subject
/// stands: refused before, pages and streams after, and once revoked its
/// next page is refused and its open stream ends.
#[tokio::test]
async fn an_integration_reads_the_feed_only_while_granted() {
    let app = spawn_app_with(|c| {
        c.feed_heartbeat = Duration::from_millis(300);
        c.poll_interval = Duration::from_millis(50);
    })
    .await;
    let admin = app.token(&[Role::Admin]);
    let siem = app.token_for(app.tenant, "siem", &[Role::Integration], None);
    let other = app.token_for(app.tenant, "warehouse", &[Role::Integration], None);
    let a = client(&app, "A").await;
    let page = |token: String| {
        let app = &app;
        async move {
            app.http
                .get(app.url("/api/v1/events?type=ClientRegistered"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
        }
    };
    let refused = page(siem.clone()).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(refused
        .text()
        .await
        .unwrap()
        .contains("has not been granted"));

    let grant = |method: reqwest::Method, subject: &str| {
        app.http
            .request(
                method,
                app.url(&format!("/api/v1/events/readers/{subject}")),
            )
            .bearer_auth(&admin)
    };
    let res = grant(reqwest::Method::PUT, "siem").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let list: Value = res.json().await.unwrap();
    assert_eq!(list["readers"], json!(["siem"]));
    assert_eq!(list["version"], 1);
    // Granting again records nothing.
    let again: Value = grant(reqwest::Method::PUT, "siem")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again["version"], 1);

    // (Once below the read horizon, which another test's transaction may
    // hold back for a moment.)
    eventually("the granted integration reads the event", || async {
        let res = page(siem.clone()).await;
        assert_eq!(res.status(), StatusCode::OK);
        let body: Value = res.json().await.unwrap();
        (body["items"][0]["stream_id"] == format!("client-{a}")).then_some(())
    })
    .await;
    // A grant is by subject: another integration is still refused.
    assert_eq!(page(other).await.status(), StatusCode::FORBIDDEN);

    let mut stream = app
        .http
        .get(app.url("/api/v1/events/stream?type=ClientRegistered"))
        .bearer_auth(&siem)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    let b = client(&app, "B").await;
    let mut text = String::new();
    while !text.contains(&format!("client-{b}")) {
        let chunk = tokio::time::timeout(Duration::from_secs(20), stream.chunk())
            .await
            .expect("B in time")
            .unwrap()
            .expect("the stream goes on while granted");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    // Revoked: the next page is refused, the open stream ends, and the grant
    // and the revocation are on the record.
    let res = grant(reqwest::Method::DELETE, "siem")
        .header("If-Match", "\"1\"")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap()["readers"], json!([]));
    assert_eq!(page(siem.clone()).await.status(), StatusCode::FORBIDDEN);
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(chunk) = stream.chunk().await.unwrap() {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await;
    assert!(ended.is_ok(), "the stream ends once revoked: {text}");
    let auditor = app.token(&[Role::Auditor]);
    let path = format!("/api/v1/events?stream=feed-readers-{}", app.tenant);
    eventually("the grant and the revocation in the feed", || async {
        let record: Value = app
            .http
            .get(app.url(&path))
            .bearer_auth(&auditor)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let types: Vec<String> = record["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["event_type"].as_str().unwrap().to_owned())
            .collect();
        (types == ["FeedReaderGranted", "FeedReaderRevoked"]).then_some(())
    })
    .await;
}
