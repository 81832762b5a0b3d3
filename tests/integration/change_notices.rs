//! Who a change step concerns is told (issue 16, SPEC §9), against a real
//! SMTP server: the approvers registered in the roster when a change is
//! submitted for approval (never its requester, approver though they be),
//! the requester when it is approved, each in their language; none twice,
//! not even when the notifier reads the log again; and the console's list
//! of a person's change notices (`outbox::change_notices_for`).

use std::time::Duration;

use opsledger_domain::access::Role;
use opsledger_domain::notice::NoticeKind;
use opsledger_store::outbox::{change_notices_for, ChangeNoticeRow};
use opsledger_store::projection::{self, Projection};
use opsledger_testkit::{spawn_app, spawn_app_with, Received, SmtpSink, TestApp};
use opsledger_tests::eventually;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::api_directory::{register_client, register_service};
use crate::changes::{call, normal_change, request};
use crate::notifications::smtp;

const HANAKO: &str = "hanako@msp.example";
const TARO: &str = "taro@msp.example";
const JIRO: &str = "jiro@msp.example";
const DAVE: &str = "dave@msp.example";

async fn app_with_mail(sink: &SmtpSink) -> TestApp {
    let config = smtp(sink);
    spawn_app_with(|c| {
        c.smtp = Some(config);
        c.poll_interval = Duration::from_millis(50);
    })
    .await
}

async fn register_user(app: &TestApp, name: &str, email: &str, locale: &str, roles: &[&str]) {
    let res = app
        .post(
            "/api/v1/users",
            &app.token(&[Role::Admin]),
            &json!({ "name": name, "email": email, "locale": locale, "roles": roles }),
        )
        .await;
    let status = res.status();
    let text = res.text().await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{text}");
    let user: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(user["roles"], json!(roles), "{user}");
}

/// Hanako maintains and approves, Taro and Jiro approve, Dave operates.
async fn roster(app: &TestApp) {
    register_user(app, "山田 花子", HANAKO, "ja", &["maintainer", "approver"]).await;
    register_user(app, "Taro Sato", TARO, "en", &["approver"]).await;
    register_user(app, "鈴木 次郎", JIRO, "ja", &["approver"]).await;
    register_user(app, "Dave Jones", DAVE, "en", &["operator"]).await;
}

/// A step of change `id` that must succeed.
async fn step(app: &TestApp, token: &str, id: &str, step: &str, body: Value) -> Value {
    let a = call(
        app,
        Method::POST,
        &format!("/api/v1/changes/{id}/{step}"),
        token,
        None,
        Some(body),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{step}: {}", a.body);
    a.body
}

fn to<'m>(mails: &'m [Received], address: &str) -> Vec<&'m Received> {
    mails
        .iter()
        .filter(|m| m.rcpt_to.iter().any(|r| r == address))
        .collect()
}

async fn notices(app: &TestApp, subject: &str) -> Vec<ChangeNoticeRow> {
    change_notices_for(&app.app_state.pool, app.tenant, subject, 50)
        .await
        .unwrap()
}

async fn notification_count(app: &TestApp) -> usize {
    app.get("/api/v1/notifications", &app.token(&[Role::Auditor]))
        .await
        .json::<Value>()
        .await
        .unwrap()["items"]
        .as_array()
        .unwrap()
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvers_are_asked_when_a_change_is_submitted_and_the_requester_told_in_japanese_when_it_is_approved(
) {
    let sink = SmtpSink::start().await;
    let app = app_with_mail(&sink).await;
    let client = register_client(&app, "株式会社サンプル").await;
    let service = register_service(&app, client["id"].as_str().unwrap(), "受注サイト").await;
    roster(&app).await;
    // Hanako's subject is her address, in another case.
    let hanako = app.token_for(
        app.tenant,
        "Hanako@MSP.example",
        &[Role::Maintainer, Role::Approver],
        None,
    );
    let change = request(&app, &hanako, normal_change(&service)).await;
    let id = change["id"].as_str().unwrap();
    let title = "OpenSSL 3.0.15 に更新";

    // Submitted: Taro and Jiro are asked, each in their language; Hanako,
    // an approver herself, is not asked to approve her own change, and Dave
    // is no approver.
    step(&app, &hanako, id, "submit", json!({})).await;
    let mails = sink.wait_for(2).await;
    let taro = to(&mails, TARO);
    let jiro = to(&mails, JIRO);
    assert_eq!((taro.len(), jiro.len()), (1, 1), "{mails:#?}");
    assert_eq!(
        taro[0].subject(),
        format!("[opsledger] Change awaiting your approval: {title}")
    );
    assert!(
        taro[0]
            .body()
            .contains("has been submitted and awaits approval"),
        "{}",
        taro[0].body()
    );
    assert_eq!(jiro[0].subject(), format!("【変更承認のお願い】{title}"));
    assert!(
        jiro[0].body().contains("鈴木 次郎 様"),
        "{}",
        jiro[0].body()
    );
    assert!(jiro[0].body().contains(id), "{}", jiro[0].body());

    // Approved by Taro: Hanako is told, in Japanese, who approved and why.
    let taro_token = app.token_for(app.tenant, TARO, &[Role::Approver], None);
    step(
        &app,
        &taro_token,
        id,
        "approve",
        json!({ "comment": "手順を確認しました" }),
    )
    .await;
    let mails = sink.wait_for(3).await;
    let told = to(&mails, HANAKO);
    assert_eq!(told.len(), 1, "{mails:#?}");
    assert_eq!(told[0].subject(), format!("【変更承認】{title}"));
    let body = told[0].body();
    assert!(body.contains("山田 花子 様"), "{body}");
    assert!(
        body.contains("taro@msp.example により承認されました"),
        "{body}"
    );
    assert!(body.contains("手順を確認しました"), "{body}");
    assert!(body.contains("サービス　：受注サイト"), "{body}");

    // Each is told once: the ledger and the console's list agree, and the
    // notifier reading the whole log again asks for nothing more.
    let hanako_notices = eventually("Hanako's notice is recorded as sent", || async {
        let n = notices(&app, HANAKO).await;
        n.iter().all(|n| n.status == "sent").then_some(n)
    })
    .await;
    assert_eq!(hanako_notices.len(), 1);
    let n = &hanako_notices[0];
    assert_eq!(n.step, NoticeKind::ChangeApproved);
    assert_eq!(n.change_id.to_string(), id);
    assert_eq!(n.change_title.as_deref(), Some(title));
    assert_eq!(n.subject, format!("【変更承認】{title}"));
    assert!(n.sent_at.is_some());
    let taro_notices = notices(&app, "TARO@msp.example").await;
    assert_eq!(taro_notices.len(), 1);
    assert_eq!(taro_notices[0].step, NoticeKind::ChangeAwaitingApproval);
    let status = eventually("the changes read model has the approval", || async {
        let n = notices(&app, TARO).await;
        (n[0].change_status.as_deref() == Some("approved")).then_some(())
    })
    .await;
    assert_eq!(status, ());
    assert!(notices(&app, DAVE).await.is_empty());
    assert!(notices(&app, "nobody").await.is_empty());

    // The ledger says which change each notice is about.
    let ledger = app
        .get("/api/v1/notifications", &app.token(&[Role::Auditor]))
        .await
        .json::<Value>()
        .await
        .unwrap();
    let items = ledger["items"].as_array().unwrap();
    assert!(items.iter().all(|n| n["change_id"] == id), "{ledger}");
    let mut kinds: Vec<&str> = items.iter().map(|n| n["kind"].as_str().unwrap()).collect();
    kinds.sort_unstable();
    assert_eq!(
        kinds,
        [
            "change_approved",
            "change_awaiting_approval",
            "change_awaiting_approval"
        ]
    );

    let before = notification_count(&app).await;
    assert_eq!(before, 3);
    projection::rebuild(
        &app.app_state.pool,
        &opsledger_store::notifier::Notifier as &dyn Projection,
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(notification_count(&app).await, before, "none asked twice");
    assert_eq!(sink.messages().len(), 3, "none mailed twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requester_without_a_roster_user_is_not_mailed_and_a_standard_change_asks_nobody() {
    let sink = SmtpSink::start().await;
    let app = app_with_mail(&sink).await;
    let client = register_client(&app, "株式会社サンプル").await;
    let service = register_service(&app, client["id"].as_str().unwrap(), "受注サイト").await;
    roster(&app).await;

    // A standard change submitted by Hanako awaits nobody, and its start is
    // told to her.
    let hanako = app.token_for(app.tenant, HANAKO, &[Role::Maintainer], None);
    let mut standard = normal_change(&service);
    standard["kind"] = json!("standard");
    standard["title"] = json!("Rotate the TLS certificate");
    let change = request(&app, &hanako, standard).await;
    let standard_id = change["id"].as_str().unwrap().to_owned();
    step(&app, &hanako, &standard_id, "submit", json!({})).await;
    step(&app, &hanako, &standard_id, "start", json!({})).await;
    let mails = sink.wait_for(1).await;
    assert_eq!(to(&mails, HANAKO).len(), 1, "{mails:#?}");
    assert_eq!(
        mails[0].subject(),
        "【変更作業開始】Rotate the TLS certificate"
    );

    // A change requested by a subject no roster user has: the approvers
    // are asked, and its approval mails nobody.
    let bot = app.token_for(app.tenant, "ci-bot", &[Role::Maintainer], None);
    let change = request(&app, &bot, normal_change(&service)).await;
    let id = change["id"].as_str().unwrap();
    step(&app, &bot, id, "submit", json!({})).await;
    let mails = sink.wait_for(4).await;
    for approver in [HANAKO, TARO, JIRO] {
        let asked: Vec<String> = to(&mails, approver)
            .iter()
            .map(|m| m.subject())
            .filter(|s| s.contains("OpenSSL"))
            .collect();
        assert_eq!(asked.len(), 1, "{approver}: {mails:#?}");
    }
    let taro = app.token_for(app.tenant, TARO, &[Role::Approver], None);
    step(&app, &taro, id, "approve", json!({})).await;
    // Hanako's change completes after it: once she is told of that, the
    // notifier (which follows the log in order) has looked at the approval.
    step(&app, &hanako, &standard_id, "complete", json!({})).await;
    let mails = sink.wait_for(5).await;
    let completed: Vec<String> = to(&mails, HANAKO).iter().map(|m| m.subject()).collect();
    assert!(
        completed.contains(&"【変更完了】Rotate the TLS certificate".to_owned()),
        "{completed:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        sink.messages().len(),
        5,
        "nobody is told of ci-bot's approval"
    );
    assert!(notices(&app, "ci-bot").await.is_empty());
    assert_eq!(notification_count(&app).await, 5);
}

#[tokio::test]
async fn a_responder_holds_staff_roles_only() {
    let app = spawn_app().await;
    for refused in ["client", "integration"] {
        let res = app
            .post(
                "/api/v1/users",
                &app.token(&[Role::Admin]),
                &json!({ "name": "X", "email": "x@msp.example", "roles": ["approver", refused] }),
            )
            .await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    }
    // Registered without roles, a responder holds none.
    let res = app
        .post(
            "/api/v1/users",
            &app.token(&[Role::Admin]),
            &json!({ "name": "Y", "email": "y@msp.example" }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(res.json::<Value>().await.unwrap()["roles"], json!([]));
}
