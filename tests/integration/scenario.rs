//! The whole story of issue 5, over HTTP against a real database and a real
//! SMTP server: an alert opens an incident; operations restart a server; it
//! recurs; the incident goes to maintenance; a finding; an emergency fix,
//! approved after the fact; a proposal; a normal change with a window,
//! approved by somebody else, announced to the client in Japanese, carried
//! out; the proposal verified. Then the work ledger, the change history and
//! the calendar tell it back.

use std::time::Duration;

use chrono::Utc;
use opsledger_domain::access::Role;
use opsledger_domain::notification::Backoff;
use opsledger_server::mail::{SmtpConfig, TlsMode};
use opsledger_testkit::{spawn_app_with, SmtpSink, TestApp};
use opsledger_tests::eventually;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::api_directory::register_client;

async fn post(app: &TestApp, path: &str, token: &str, body: Value) -> Value {
    let res = app.post(path, token, &body).await;
    let status = res.status();
    let text = res.text().await.unwrap();
    assert!(status.is_success(), "{path}: {status} {text}");
    serde_json::from_str(&text).unwrap()
}

async fn get(app: &TestApp, path: &str, token: &str) -> Value {
    let res = app.get(path, token).await;
    let status = res.status();
    let text = res.text().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{path}: {text}");
    serde_json::from_str(&text).unwrap_or(Value::String(text))
}

fn types(items: &Value) -> Vec<String> {
    items
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn from_an_alert_to_a_verified_improvement_with_operations_and_maintenance_kept_apart() {
    let sink = SmtpSink::start().await;
    let smtp = SmtpConfig {
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
    };
    let app = spawn_app_with(|c| {
        c.smtp = Some(smtp);
        c.poll_interval = Duration::from_millis(50);
    })
    .await;
    let admin = app.token(&[Role::Admin]);
    let monitoring = app.token(&[Role::Integration]);
    let olga = app.token_for(app.tenant, "olga", &[Role::Operator], None);
    let mia = app.token_for(app.tenant, "mia", &[Role::Maintainer], None);
    let arno = app.token_for(app.tenant, "arno", &[Role::Approver], None);

    // A client with a service (72 h notice) and a contact who reads Japanese.
    let client = register_client(&app, "株式会社サンプル").await;
    let cid = client["id"].as_str().unwrap().to_owned();
    let service = post(
        &app,
        "/api/v1/services",
        &admin,
        json!({
            "client_id": cid, "name": "受注サイト", "sla_target_pct": 99.9, "notice_period_h": 72
        }),
    )
    .await;
    let sid = service["id"].as_str().unwrap().to_owned();
    post(
        &app,
        "/api/v1/subscriptions",
        &admin,
        json!({
            "service_id": sid, "name": "佐藤 一郎", "email": "ichiro@example.jp", "locale": "ja",
            "kinds": ["incident_opened"], "min_severity": "critical"
        }),
    )
    .await;
    let theirs = app.token_for(
        app.tenant,
        "ichiro",
        &[Role::Client],
        Some(cid.parse().unwrap()),
    );

    // 1. An alert opens an incident.
    let alert = |status: &str| {
        json!({ "source": "prometheus", "dedup_key": "orders-db-connections", "group_key": "orders-db",
                "service": sid, "summary": "Connections exhausted on orders-db", "severity": "critical",
                "category": "application", "status": status })
    };
    let opened = post(&app, "/api/v1/alerts", &monitoring, alert("firing")).await;
    assert_eq!(opened["outcome"], "opened_incident");
    let incident = opened["incident_id"].as_str().unwrap().to_owned();
    let ipath = format!("/api/v1/incidents/{incident}");
    post(&app, &format!("{ipath}/acknowledge"), &olga, json!(null)).await;

    // 2. Operations restart a server: operations work.
    post(
        &app,
        &format!("{ipath}/actions"),
        &olga,
        json!({
            "kind": "restart", "description": "Restarted orders-api on web-1", "minutes_spent": 10
        }),
    )
    .await;
    post(&app, "/api/v1/worklog", &olga, json!({
        "kind": "restart", "service_id": sid, "summary": "orders-api restarted on web-1", "minutes_spent": 10
    }))
    .await;
    // The alert clears after the restart...
    let cleared = post(&app, "/api/v1/alerts", &monitoring, alert("resolved")).await;
    assert_eq!(cleared["outcome"], "resolved");
    // 3. ...and recurs: the same fingerprint fires again and joins the open incident.
    let recurred = post(&app, "/api/v1/alerts", &monitoring, alert("firing")).await;
    assert_eq!(recurred["outcome"], "attached_to_incident", "{recurred}");
    assert_eq!(recurred["incident_id"], json!(incident));

    // 4. Operations hand it to maintenance; it leaves their queue for maintenance's.
    post(
        &app,
        &format!("{ipath}/handoff"),
        &olga,
        json!({
            "reason": "Restarts do not hold: connections leak again within minutes"
        }),
    )
    .await;
    let in_queue = |team: &'static str| {
        let app = &app;
        let olga = &olga;
        let incident = incident.clone();
        async move {
            let q = get(app, &format!("/api/v1/queues/{team}"), olga).await;
            q["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|i| i["id"] == json!(incident) || i["incident_id"] == json!(incident))
        }
    };
    eventually("the incident is in the maintenance queue", || async {
        (in_queue("maintenance").await && !in_queue("operations").await).then_some(())
    })
    .await;

    // 5. A root-cause finding, by maintenance.
    post(
        &app,
        &format!("{ipath}/findings"),
        &mia,
        json!({
            "statement": "The nightly export job opens a connection per row and never closes them",
            "evidence": {
                "log_excerpts": ["FATAL: remaining connection slots are reserved"],
                "time_range": { "from": "2026-11-30T01:00:00Z", "to": "2026-11-30T01:30:00Z" },
                "components": ["orders-db", "export-job"]
            },
            "minutes_spent": 60
        }),
    )
    .await;

    // 6. An emergency fix: started and completed first, approved after the fact.
    let fix = post(
        &app,
        "/api/v1/changes",
        &mia,
        json!({
            "kind": "emergency", "category": "fix", "title": "Cap the export job's connection pool",
            "risk": "low", "impact": "The export job runs slower", "service_ids": [sid],
            "links": [{ "relation": "fixes", "incident_id": incident }]
        }),
    )
    .await;
    let fix_id = fix["id"].as_str().unwrap().to_owned();
    let fpath = format!("/api/v1/changes/{fix_id}");
    post(&app, &format!("{fpath}/start"), &mia, json!({})).await;
    let done = post(
        &app,
        &format!("{fpath}/complete"),
        &mia,
        json!({
            "note": "Pool capped at 5", "minutes_spent": 30
        }),
    )
    .await;
    assert_eq!(
        done["approval_missing"], true,
        "missing approval is visible"
    );
    // Four eyes, also after the fact.
    let res = app
        .post(
            &format!("{fpath}/approve"),
            &app.token_for(app.tenant, "mia", &[Role::Maintainer, Role::Approver], None),
            &json!({}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let approved = post(
        &app,
        &format!("{fpath}/approve"),
        &arno,
        json!({ "comment": "Approved after the fact" }),
    )
    .await;
    assert_eq!(approved["approval_missing"], false);
    assert_eq!(approved["approvals"][0]["retroactive"], true);
    post(&app, &format!("{ipath}/resolve"), &mia, json!(null)).await;

    // 7. A proposal, from the incident, approved by somebody else.
    let proposal = post(
        &app,
        "/api/v1/proposals",
        &mia,
        json!({
            "title": "Connection limits per job",
            "description": "Give every batch job its own database role with a connection limit",
            "incident_id": incident
        }),
    )
    .await;
    let ppath = format!("/api/v1/proposals/{}", proposal["id"].as_str().unwrap());
    post(&app, &format!("{ppath}/approve"), &arno, json!({})).await;

    // 8. A normal change carries it out, in a window, approved by a different person.
    let change = post(&app, "/api/v1/changes", &mia, json!({
        "kind": "normal", "category": "improvement", "title": "Per-job database roles with connection limits",
        "risk": "medium", "impact": "Orders are read-only for up to 30 minutes",
        "rollback_plan": "Drop the roles and restore the shared login",
        "service_ids": [sid],
        "links": [{ "relation": "implements", "proposal_id": proposal["id"] }]
    }))
    .await;
    let change_id = change["id"].as_str().unwrap().to_owned();
    let cpath = format!("/api/v1/changes/{change_id}");
    post(&app, &format!("{cpath}/submit"), &mia, json!({})).await;
    let res = app
        .post(
            &format!("{cpath}/approve"),
            &app.token_for(app.tenant, "mia", &[Role::Approver], None),
            &json!({}),
        )
        .await;
    assert_eq!(
        res.status(),
        StatusCode::FORBIDDEN,
        "the requester does not approve"
    );
    post(
        &app,
        &format!("{cpath}/approve"),
        &arno,
        json!({ "comment": "Sunday night" }),
    )
    .await;
    let start = Utc::now() + chrono::Duration::hours(96);
    let end = start + chrono::Duration::hours(1);
    let window = post(
        &app,
        "/api/v1/maintenance-windows",
        &mia,
        json!({
            "title": "受注サイト データベース設定変更", "service_ids": [sid],
            "start": start, "end": end, "change_id": change_id
        }),
    )
    .await;
    let wid = window["id"].as_str().unwrap().to_owned();
    let wpath = format!("/api/v1/maintenance-windows/{wid}");
    post(
        &app,
        &format!("{cpath}/schedule"),
        &mia,
        json!({ "start": start, "end": end, "window_id": wid }),
    )
    .await;

    // 9. Announced to the client, in Japanese.
    let announced = post(&app, &format!("{wpath}/announce"), &mia, json!({})).await;
    assert_eq!(announced["late"], false);
    let mails = sink.wait_for(2).await;
    let notice = mails
        .iter()
        .find(|m| m.subject().contains("メンテナンス"))
        .unwrap_or_else(|| {
            panic!(
                "no announcement among {:?}",
                mails.iter().map(|m| m.subject()).collect::<Vec<_>>()
            )
        });
    assert!(notice.rcpt_to.iter().any(|r| r == "ichiro@example.jp"));
    assert!(
        notice.header("Subject").unwrap().contains("=?utf-8?"),
        "an encoded header"
    );
    assert!(
        notice.subject().contains("受注サイト データベース設定変更"),
        "{}",
        notice.subject()
    );
    assert!(notice.body().contains("佐藤 一郎 様"), "{}", notice.body());

    // 10. Carried out, and the proposal implemented by it and verified.
    post(&app, &format!("{wpath}/start"), &mia, json!({})).await;
    post(&app, &format!("{cpath}/start"), &mia, json!({})).await;
    post(
        &app,
        &format!("{cpath}/complete"),
        &mia,
        json!({ "note": "Roles in place", "minutes_spent": 40 }),
    )
    .await;
    post(
        &app,
        &format!("{wpath}/end"),
        &mia,
        json!({ "minutes_spent": 45 }),
    )
    .await;
    post(
        &app,
        &format!("{ppath}/implement"),
        &mia,
        json!({ "change_id": change_id }),
    )
    .await;
    let verified = post(
        &app,
        &format!("{ppath}/verify"),
        &arno,
        json!({
            "note": "A runaway job now hits its own limit; orders unaffected", "minutes_spent": 15
        }),
    )
    .await;
    assert_eq!(verified["status"], "verified");

    // The work ledger keeps each piece in its class.
    let ledger_path = format!("/api/v1/work?service_id={sid}&limit=200");
    let ledger = eventually("the ledger has the verification", || async {
        let v = get(&app, &ledger_path, &olga).await;
        types(&v["items"])
            .contains(&"ProposalVerified".to_owned())
            .then_some(v)
    })
    .await;
    let class_of = |t: &str| -> Vec<String> {
        ledger["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["type"] == t)
            .map(|i| i["work_class"].as_str().unwrap().to_owned())
            .collect()
    };
    for t in [
        "ActionRecorded",
        "RoutineTaskRecorded",
        "IncidentAcknowledged",
        "IncidentHandedOff",
    ] {
        assert_eq!(class_of(t), vec!["operations"], "{t}");
    }
    for t in [
        "FindingRecorded",
        "ChangeRequested",
        "ChangeApproved",
        "ChangeCompleted",
        "ProposalRaised",
        "ProposalImplemented",
        "ProposalVerified",
        "WindowAnnounced",
        "WindowEnded",
    ] {
        let classes = class_of(t);
        assert!(!classes.is_empty(), "{t} is in the ledger");
        assert!(
            classes.iter().all(|c| c == "maintenance"),
            "{t}: {classes:?}"
        );
    }
    let ops = get(&app, &format!("{ledger_path}&class=operations"), &olga).await;
    assert!(types(&ops["items"])
        .iter()
        .all(|t| !t.starts_with("Change") && t != "FindingRecorded"));
    // Minutes: restart 10 + work log 10 on the operations side; finding 60,
    // fix 30, change 40, window 45, verification 15 on maintenance's.
    assert_eq!(ledger["operations"]["minutes_spent"], 20);
    assert_eq!(ledger["maintenance"]["minutes_spent"], 190);
    // The operations team's work and the maintenance team's, apart.
    let by_ops_team = get(&app, &format!("{ledger_path}&team=operations"), &olga).await;
    assert!(types(&by_ops_team["items"]).contains(&"IncidentHandedOff".to_owned()));
    assert!(!types(&by_ops_team["items"]).contains(&"FindingRecorded".to_owned()));
    // The client reads the ledger of its own services. Which services are
    // its, the directory read model says: it may be a moment behind the ledger.
    eventually("the client's ledger has the same work", || async {
        let client_ledger = get(&app, "/api/v1/work", &theirs).await;
        (client_ledger["maintenance"]["count"] == ledger["maintenance"]["count"]).then_some(())
    })
    .await;

    // The change history shows both changes with their links.
    let history = eventually("both changes are in the history", || async {
        let h = get(
            &app,
            &format!("/api/v1/changes/history?service={sid}"),
            &olga,
        )
        .await;
        let done = h["items"]
            .as_array()?
            .iter()
            .filter(|c| c["status"] == "completed")
            .count();
        (done == 2).then_some(h)
    })
    .await;
    let items = history["items"].as_array().unwrap();
    let emergency = items.iter().find(|c| c["id"] == json!(fix_id)).unwrap();
    assert_eq!(emergency["kind"], "emergency");
    assert_eq!(
        emergency["links"],
        json!([{ "relation": "fixes", "incident_id": incident }])
    );
    assert_eq!(emergency["approvals"][0]["by"], "arno");
    let normal = items.iter().find(|c| c["id"] == json!(change_id)).unwrap();
    assert_eq!(normal["kind"], "normal");
    assert_eq!(
        normal["links"],
        json!([{ "relation": "implements", "proposal_id": proposal["id"] }])
    );
    assert_eq!(normal["schedule"]["window_id"], json!(wid), "{normal}");

    // The incident's timeline tells the same story, each fact in its class.
    let timeline = get(&app, &format!("{ipath}/timeline"), &olga).await;
    let t = types(&timeline["items"]);
    for expected in [
        "AlertReceived",
        "IncidentOpened",
        "ActionRecorded",
        "AlertResolved",
        "IncidentHandedOff",
        "FindingRecorded",
        "IncidentResolved",
    ] {
        assert!(
            t.contains(&expected.to_owned()),
            "{expected} on the timeline: {t:?}"
        );
    }

    // The calendar feed shows the window.
    let ics = get(&app, "/api/v1/calendar.ics", &olga).await;
    let ics = ics.as_str().unwrap();
    let calendar = ical::IcalParser::new(std::io::BufReader::new(ics.as_bytes()))
        .next()
        .expect("a calendar")
        .expect("it parses");
    let window_event = calendar
        .events
        .iter()
        .find(|e| {
            e.properties
                .iter()
                .any(|p| p.name == "UID" && p.value.as_deref().is_some_and(|v| v.contains(&wid)))
        })
        .expect("the window is in the calendar");
    let summary = window_event
        .properties
        .iter()
        .find(|p| p.name == "SUMMARY")
        .and_then(|p| p.value.clone())
        .unwrap();
    assert!(
        summary.contains("受注サイト データベース設定変更"),
        "{summary}"
    );
}
