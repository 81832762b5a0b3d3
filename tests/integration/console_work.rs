//! Working an incident in the console over HTTP: the forms of the hand-off,
//! findings, fixes and notes; what each role is offered; a stale form
//! offered again; the client's view; the past (`?as_of=`); Japanese.

use opsledger_domain::access::Role;
use opsledger_testkit::{spawn_app, TestApp};
use opsledger_tests::eventually;
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::api_directory::{register_client, register_service};
use crate::console::{csrf_of, open_incident, sign_in, version_in};

/// A page as a browser asks for it: (status, HTML).
async fn page(app: &TestApp, cookies: &str, path: &str) -> (StatusCode, String) {
    let res = app
        .http
        .get(app.url(path))
        .header("cookie", cookies)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    (res.status(), res.text().await.unwrap())
}

/// Posts an incident page's form for `action` with `fields`, on `version`.
async fn post(
    app: &TestApp,
    cookies: &str,
    id: &str,
    action: &str,
    version: &str,
    fields: &[(&str, &str)],
) -> (StatusCode, String) {
    on_version(
        app,
        cookies,
        &format!("/console/incidents/{id}/{action}"),
        version,
        fields,
    )
    .await
}

/// Posts a record page's form to `path` with `fields`, on `version`.
async fn on_version(
    app: &TestApp,
    cookies: &str,
    path: &str,
    version: &str,
    fields: &[(&str, &str)],
) -> (StatusCode, String) {
    let mut all = vec![("version", version)];
    all.extend_from_slice(fields);
    let res = send(app, cookies, path, &all).await;
    (res.status(), res.text().await.unwrap())
}

async fn timeline_types(app: &TestApp, token: &str, id: &str) -> Vec<Value> {
    let t: Value = app
        .get(&format!("/api/v1/incidents/{id}/timeline"), token)
        .await
        .json()
        .await
        .unwrap();
    t["items"].as_array().cloned().unwrap()
}

#[tokio::test]
async fn an_operator_hands_off_and_a_maintainer_records_a_finding_and_a_fix_and_resolves() {
    let app = spawn_app().await;
    let admin = app.token(&[Role::Admin]);
    let id = open_incident(&app, &admin, "orders db slow", "error").await;
    let olga = sign_in(
        &app,
        &app.token_for(app.tenant, "olga", &[Role::Operator], None),
    )
    .await;
    let mika = sign_in(
        &app,
        &app.token_for(app.tenant, "mika", &[Role::Maintainer], None),
    )
    .await;
    let url = format!("/console/incidents/{id}");

    // The operator acknowledges, notes, and hands off; no finding form is
    // offered to her, and posting one anyway is refused.
    let (_, p) = page(&app, &olga, &url).await;
    assert!(p.contains("id=\"do-acknowledge\""));
    assert!(
        !p.contains("id=\"do-finding\""),
        "findings are maintainers' work"
    );
    assert!(!p.contains("value=\"fix\""), "fixes are maintainers' work");
    let (status, _) = post(&app, &olga, &id, "acknowledge", &version_in(&p), &[]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, p) = page(&app, &olga, &url).await;
    let (status, _) = post(
        &app,
        &olga,
        &id,
        "notes",
        &version_in(&p),
        &[
            ("text", "<script>alert(1)</script> checked the pool"),
            ("visibility", "internal"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, p) = page(&app, &olga, &url).await;
    assert!(
        p.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt; checked the pool"),
        "{p}"
    );
    assert!(!p.contains("<script>alert(1)"));
    let (status, _) = post(
        &app,
        &olga,
        &id,
        "findings",
        &version_in(&p),
        &[("statement", "x")],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = post(
        &app,
        &olga,
        &id,
        "handoff",
        &version_in(&p),
        &[("reason", "needs a schema fix")],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);

    // The maintainer finds it in the maintenance queue and works it.
    eventually("the hand-off reaches the maintenance queue", || async {
        let (_, q) = page(&app, &mika, "/console/queues/maintenance").await;
        q.contains(&id).then_some(())
    })
    .await;
    let (_, p) = page(&app, &mika, &url).await;
    assert!(p.contains("id=\"do-finding\"") && p.contains("value=\"fix\""));
    let (status, body) = post(
        &app,
        &mika,
        &id,
        "findings",
        &version_in(&p),
        &[
            ("statement", "a missing index on orders.created_at"),
            ("minutes_spent", ""),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    let (_, p) = page(&app, &mika, &url).await;
    let (status, body) = post(
        &app,
        &mika,
        &id,
        "actions",
        &version_in(&p),
        &[
            ("kind", "fix"),
            ("description", "added the index"),
            ("minutes_spent", "25"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    let (_, p) = page(&app, &mika, &url).await;
    let (status, _) = post(&app, &mika, &id, "resolve", &version_in(&p), &[]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);

    let (_, p) = page(&app, &mika, &url).await;
    assert!(p.contains("data-status=\"resolved\""));
    assert!(p.contains("id=\"do-close\"") && p.contains("id=\"do-reopen\""));
    // The timeline filtered to findings shows the finding alone.
    let (_, f) = page(&app, &mika, &format!("{url}?show=findings")).await;
    assert!(f.contains("a missing index on orders.created_at"));
    assert!(!f.contains("<td>NoteAdded</td>") && !f.contains("<td>MaintenanceActionRecorded</td>"));
    // The API's record is the same.
    let types: Vec<String> = timeline_types(&app, &admin, &id)
        .await
        .iter()
        .filter_map(|e| e["type"].as_str().map(str::to_owned))
        .collect();
    for t in [
        "IncidentAcknowledged",
        "NoteAdded",
        "IncidentHandedOff",
        "FindingRecorded",
        "MaintenanceActionRecorded",
        "IncidentResolved",
    ] {
        assert!(types.contains(&t.to_owned()), "{t} in {types:?}");
    }
}

#[tokio::test]
async fn a_form_sent_on_a_stale_version_is_offered_again_and_a_form_without_its_token_is_refused() {
    let app = spawn_app().await;
    let admin = app.token(&[Role::Admin]);
    let id = open_incident(&app, &admin, "queue stuck", "warning").await;
    let olga = sign_in(
        &app,
        &app.token_for(app.tenant, "olga", &[Role::Operator], None),
    )
    .await;
    let url = format!("/console/incidents/{id}");
    let (_, p) = page(&app, &olga, &url).await;
    let seen = version_in(&p);
    let res = app
        .post(
            &format!("/api/v1/incidents/{id}/acknowledge"),
            &admin,
            &json!({}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);

    let (status, p) = post(
        &app,
        &olga,
        &id,
        "notes",
        &seen,
        &[("text", "restarted the consumer"), ("visibility", "client")],
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        p.contains("What changed meanwhile") && p.contains("IncidentAcknowledged"),
        "{p}"
    );
    assert!(p.contains("id=\"redo\""), "offered again");
    assert!(
        p.contains("value=\"restarted the consumer\""),
        "with what was typed"
    );
    // Redoing it sends the form the page offers, on the version now.
    let (status, _) = post(
        &app,
        &olga,
        &id,
        "notes",
        &version_in(&p),
        &[("text", "restarted the consumer"), ("visibility", "client")],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);

    // No CSRF token, or a version missing: refused, nothing recorded.
    let before = timeline_types(&app, &admin, &id).await.len();
    let res = app
        .http
        .post(app.url(&format!("/console/incidents/{id}/notes")))
        .header("cookie", &olga)
        .header("accept", "text/html")
        .form(&[("version", "9"), ("text", "x"), ("visibility", "internal")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let (status, _) = post(
        &app,
        &olga,
        &id,
        "notes",
        "",
        &[("text", "x"), ("visibility", "internal")],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = post(
        &app,
        &olga,
        &id,
        "notes",
        "3",
        &[("text", "x"), ("visibility", "bogus")],
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = post(&app, &olga, &id, "explode", "3", &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(timeline_types(&app, &admin, &id).await.len(), before);
}

#[tokio::test]
async fn a_client_reads_its_own_incident_without_internal_notes_and_never_another_clients() {
    let app = spawn_app().await;
    let admin = app.token(&[Role::Admin]);
    let (acme, other) = (
        register_client(&app, "Acme").await,
        register_client(&app, "Other").await,
    );
    let service = register_service(&app, acme["id"].as_str().unwrap(), "shop").await;
    let res = app
        .post(
            "/api/v1/incidents",
            &admin,
            &json!({ "title": "shop checkout errors", "severity": "error", "service_id": service["id"] }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let id = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for (text, visibility) in [
        ("db password rotated by ops", "internal"),
        ("We are investigating.", "client"),
    ] {
        let res = app
            .post(
                &format!("/api/v1/incidents/{id}/notes"),
                &admin,
                &json!({ "text": text, "visibility": visibility }),
            )
            .await;
        assert_eq!(
            res.status(),
            StatusCode::OK,
            "{}",
            res.text().await.unwrap()
        );
    }
    let token_of = |client: &Value| {
        let c: Uuid = client["id"].as_str().unwrap().parse().unwrap();
        app.token_for(
            app.tenant,
            &format!("user-of-{c}"),
            &[Role::Client],
            Some(c),
        )
    };
    let own = sign_in(&app, &token_of(&acme)).await;
    let theirs = sign_in(&app, &token_of(&other)).await;

    let res = app
        .http
        .get(app.url("/"))
        .header("cookie", &own)
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["location"], "/console/client");
    let (status, list) = page(&app, &own, "/console/client").await;
    assert_eq!(status, StatusCode::OK);
    assert!(list.contains("shop checkout errors"));
    assert!(
        list.contains(&format!(
            "data-service=\"{}\"",
            service["id"].as_str().unwrap()
        )),
        "its services"
    );
    let (_, empty) = page(&app, &theirs, "/console/client").await;
    assert!(!empty.contains("shop checkout errors") && !empty.contains("data-service="));

    let url = format!("/console/incidents/{id}");
    let (status, p) = page(&app, &own, &url).await;
    assert_eq!(status, StatusCode::OK);
    assert!(p.contains("We are investigating."));
    assert!(p.contains("<dd>shop</dd>"), "the service by its name");
    assert!(
        !p.contains("db password rotated"),
        "no internal notes for clients"
    );
    assert!(
        !p.contains("<button type=\"submit\" id=\"do-"),
        "clients do not act"
    );
    let (status, _) = post(&app, &own, &id, "acknowledge", "1", &[]).await;
    assert_ne!(status, StatusCode::SEE_OTHER);
    let (status, _) = page(&app, &theirs, &url).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "another client's incident does not exist"
    );
    let (status, _) = page(&app, &own, "/console/queues/operations").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "the queues are the teams'");
}

#[tokio::test]
async fn a_page_read_as_of_a_past_instant_shows_that_state_with_actions_disabled_and_speaks_japanese(
) {
    let app = spawn_app().await;
    let admin = app.token(&[Role::Admin]);
    let id = open_incident(&app, &admin, "cdn 502s", "critical").await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let between = chrono::Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let res = app
        .post(
            &format!("/api/v1/incidents/{id}/acknowledge"),
            &admin,
            &json!({}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let olga = sign_in(
        &app,
        &app.token_for(app.tenant, "olga", &[Role::Operator], None),
    )
    .await;

    let at = between.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let (status, p) = page(&app, &olga, &format!("/console/incidents/{id}?as_of={at}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(p.contains("data-status=\"triggered\""), "as it was then");
    assert!(p.contains("class=\"banner\""));
    assert!(
        !p.contains("<form method=\"post\" action=\"/console/incidents/"),
        "no actions"
    );
    assert!(!p.contains("<td>IncidentAcknowledged</td>"));
    let (status, _) = page(
        &app,
        &olga,
        &format!("/console/incidents/{id}?as_of=yesterday"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Japanese by Accept-Language, and times in the chosen zone.
    let res = app
        .http
        .get(app.url(&format!("/console/incidents/{id}")))
        .header("cookie", format!("{olga}; opsledger_tz=Asia/Tokyo"))
        .header("accept-language", "ja-JP,ja;q=0.9,en;q=0.5")
        .send()
        .await
        .unwrap();
    let p = res.text().await.unwrap();
    assert!(
        p.contains("<html lang=\"ja\">") && p.contains("タイムライン"),
        "{p}"
    );
    assert!(p.contains(" JST</time>"), "times in Tokyo");
    // A preference saved on the preferences page wins over the header.
    let res = app
        .http
        .post(app.url("/console/preferences"))
        .header("cookie", &olga)
        .form(&[
            ("csrf", csrf_of(&olga).as_str()),
            ("lang", "en"),
            ("tz", "Europe/Berlin"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let set: Vec<String> = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
        .collect();
    assert!(
        set.contains(&"opsledger_lang=en".to_owned())
            && set.contains(&"opsledger_tz=Europe/Berlin".to_owned())
    );
    let res = app
        .http
        .get(app.url(&format!("/console/incidents/{id}")))
        .header("cookie", format!("{olga}; {}", set.join("; ")))
        .header("accept-language", "ja")
        .send()
        .await
        .unwrap();
    let p = res.text().await.unwrap();
    assert!(p.contains("<html lang=\"en\">") && p.contains(" CET</time>"));
}

/// Posts a change page's form for `step`.
async fn step(
    app: &TestApp,
    cookies: &str,
    id: &str,
    name: &str,
    version: &str,
    fields: &[(&str, &str)],
) -> (StatusCode, String) {
    on_version(
        app,
        cookies,
        &format!("/console/changes/{id}/{name}"),
        version,
        fields,
    )
    .await
}

#[tokio::test]
async fn a_requester_is_not_offered_approval_of_their_own_change_and_an_approver_approves_it() {
    let app = spawn_app().await;
    let acme = register_client(&app, "Acme").await;
    let service = register_service(&app, acme["id"].as_str().unwrap(), "shop").await;
    let mika = sign_in(
        &app,
        &app.token_for(
            app.tenant,
            "mika",
            &[Role::Maintainer, Role::Approver],
            None,
        ),
    )
    .await;
    let ann = sign_in(
        &app,
        &app.token_for(app.tenant, "ann", &[Role::Approver], None),
    )
    .await;

    // Mika requests a normal change through the form.
    let (_, list) = page(&app, &mika, "/console/changes").await;
    assert!(list.contains("id=\"do-request\""));
    let res = app
        .http
        .post(app.url("/console/changes"))
        .header("cookie", &mika)
        .header("accept", "text/html")
        .form(&[
            ("csrf", csrf_of(&mika).as_str()),
            ("title", "Upgrade PostgreSQL to 16.4"),
            ("kind", "normal"),
            ("category", "version_upgrade"),
            ("risk", "medium"),
            ("impact", "five minutes read-only"),
            ("description", ""),
            ("rollback_plan", "restore the snapshot"),
            ("service_ids", service["id"].as_str().unwrap()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::SEE_OTHER,
        "{}",
        res.text().await.unwrap()
    );
    let url = res.headers()["location"].to_str().unwrap().to_owned();
    assert!(url.starts_with("/console/changes/"), "{url}");
    let id = url.rsplit('/').next().unwrap().to_owned();

    let (_, p) = page(&app, &mika, &url).await;
    assert!(p.contains("data-status=\"draft\""));
    let (status, _) = step(&app, &mika, &id, "submit", &version_in(&p), &[]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    // Submitted: the requester, an approver too, is offered no approval,
    // and the server refuses it anyway (four eyes).
    let (_, p) = page(&app, &mika, &url).await;
    assert!(p.contains("data-status=\"submitted\""));
    assert!(
        !p.contains("id=\"do-approve\"") && !p.contains("id=\"do-reject\""),
        "{p}"
    );
    // (Requested, then submitted: version 2.)
    let (status, body) = step(&app, &mika, &id, "approve", "2", &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("four eyes"));

    // Ann approves; Mika schedules it in Tokyo time, starts and completes it.
    let (_, p) = page(&app, &ann, &url).await;
    assert!(p.contains("id=\"do-approve\"") && p.contains("id=\"do-reject\""));
    let (status, _) = step(
        &app,
        &ann,
        &id,
        "approve",
        &version_in(&p),
        &[("comment", "")],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let tokyo = format!("{mika}; opsledger_tz=Asia/Tokyo");
    let (_, p) = page(&app, &tokyo, &url).await;
    assert!(p.contains("id=\"do-schedule\""), "{p}");
    let day = (chrono::Utc::now() + chrono::Duration::days(2)).date_naive();
    let (status, body) = step(
        &app,
        &tokyo,
        &id,
        "schedule",
        &version_in(&p),
        &[
            ("start", &format!("{day}T09:00")),
            ("end", &format!("{day}T10:30")),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    let change: Value = app
        .get(&format!("/api/v1/changes/{id}"), &app.token(&[Role::Admin]))
        .await
        .json()
        .await
        .unwrap();
    let start: chrono::DateTime<chrono::Utc> = change["schedule"]["start"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        start,
        format!("{day}T00:00:00Z")
            .parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap(),
        "09:00 in Tokyo"
    );

    // The calendar's week shows it on its day.
    let (status, cal) = page(
        &app,
        &tokyo,
        &format!("/console/calendar?view=week&at={day}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let on_day = cal.find(&format!("data-date=\"{day}\"")).expect("the day");
    assert!(
        cal[on_day..].contains("Upgrade PostgreSQL to 16.4"),
        "{cal}"
    );
    let (status, month) = page(
        &app,
        &tokyo,
        &format!("/console/calendar?view=month&at={day}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(month.contains("Upgrade PostgreSQL to 16.4"));
    let (status, _) = page(&app, &tokyo, "/console/calendar?at=someday").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (_, p) = page(&app, &mika, &url).await;
    let (status, _) = step(&app, &mika, &id, "start", &version_in(&p), &[]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, p) = page(&app, &mika, &url).await;
    let (status, _) = step(
        &app,
        &mika,
        &id,
        "complete",
        &version_in(&p),
        &[("note", "done")],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, p) = page(&app, &mika, &url).await;
    assert!(p.contains("data-status=\"completed\""));
    // A step on a stale version says so and changes nothing.
    let (status, body) = step(&app, &mika, &id, "fail", "2", &[("reason", "x")]).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
}

/// The links of a page's navigation.
fn nav_links(page: &str) -> Vec<String> {
    let nav = &page[page.find("<nav aria-label=\"Pages\">").expect("a nav")..];
    let nav = &nav[..nav.find("</nav>").unwrap()];
    nav.split("href=\"")
        .skip(1)
        .map(|s| s.split('"').next().unwrap().replace("&#x2f;", "/"))
        .collect()
}

#[tokio::test]
async fn every_page_the_navigation_names_answers_for_staff_and_for_clients() {
    let app = spawn_app().await;
    let acme = register_client(&app, "Acme").await;
    let service = register_service(&app, acme["id"].as_str().unwrap(), "shop").await;
    let admin_token = app.token(&[Role::Admin]);
    let res = app
        .post(
            "/api/v1/incidents",
            &admin_token,
            &json!({ "title": "shop down", "severity": "critical", "service_id": service["id"] }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let admin = sign_in(&app, &admin_token).await;
    let client: Uuid = acme["id"].as_str().unwrap().parse().unwrap();
    let hanako = sign_in(
        &app,
        &app.token_for(app.tenant, "hanako", &[Role::Client], Some(client)),
    )
    .await;

    let (_, home) = page(&app, &admin, "/console/queues/operations").await;
    let links = nav_links(&home);
    for expected in [
        "/console/changes",
        "/console/calendar",
        "/console/windows",
        "/console/proposals",
        "/console/executions",
        "/console/inquiries",
        "/console/work",
        "/console/reports",
        "/console/audit",
    ] {
        assert!(
            links.contains(&expected.to_owned()),
            "{expected} in {links:?}"
        );
    }
    for link in &links {
        let (status, body) = page(&app, &admin, link).await;
        assert_eq!(status, StatusCode::OK, "{link}: {body}");
        assert!(
            body.contains("aria-current=\"page\""),
            "{link} marks itself"
        );
    }
    let (_, reports) = page(&app, &admin, "/console/reports").await;
    assert!(
        reports.contains("<svg") && reports.contains(">shop</td>"),
        "{reports}"
    );
    let (status, monthly) = page(
        &app,
        &admin,
        &format!(
            "/console/reports/monthly?client={client}&month={}",
            chrono::Utc::now().format("%Y-%m")
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(monthly.contains("<svg"), "the monthly report's charts");

    let (_, home) = page(&app, &hanako, "/console/client").await;
    let links = nav_links(&home);
    assert!(
        !links
            .iter()
            .any(|l| l.contains("queues") || l.contains("audit")),
        "{links:?}"
    );
    for link in &links {
        let (status, body) = page(&app, &hanako, link).await;
        assert_eq!(status, StatusCode::OK, "{link}: {body}");
    }
    // A filter the API does not know is refused as the API refuses it.
    let (status, _) = page(&app, &admin, "/console/windows?colour=red").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = page(&app, &hanako, "/console/audit").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = page(
        &app,
        &hanako,
        "/console/reports/monthly?client=0190f0f0-0000-7000-8000-000000000000&month=2026-11",
    )
    .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "another client's report does not exist"
    );
}

#[tokio::test]
async fn every_page_read_as_of_a_past_instant_shows_that_state() {
    let app = spawn_app().await;
    let admin_token = app.token(&[Role::Admin]);
    let id = open_incident(&app, &admin_token, "api latency", "warning").await;
    eventually("the queue lists it", || async {
        let admin = sign_in(&app, &admin_token).await;
        let (_, q) = page(&app, &admin, "/console/queues/operations").await;
        q.contains(&id).then_some(())
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let between = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let res = app
        .post(
            &format!("/api/v1/incidents/{id}/acknowledge"),
            &admin_token,
            &json!({}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let acme = register_client(&app, "Acme").await;
    let service = register_service(&app, acme["id"].as_str().unwrap(), "shop").await;
    let res = app
        .post(
            "/api/v1/changes",
            &admin_token,
            &json!({ "kind": "normal", "category": "fix", "title": "patch the gateway", "risk": "low",
                     "impact": "none", "rollback_plan": "revert", "service_ids": [service["id"]] }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let admin = sign_in(&app, &admin_token).await;

    // The queue then: triggered; now: acknowledged.
    let q = |at: Option<&str>| {
        let (app, admin) = (&app, admin.clone());
        let path = match at {
            Some(at) => format!("/console/queues/operations?as_of={at}"),
            None => "/console/queues/operations".into(),
        };
        async move { page(app, &admin, &path).await.1 }
    };
    eventually("the queue now shows it acknowledged", || async {
        q(None).await.contains(">acknowledged</td>").then_some(())
    })
    .await;
    let then = q(Some(&between)).await;
    assert!(
        then.contains(&id) && then.contains(">triggered</td>"),
        "{then}"
    );
    assert!(!then.contains("sse-connect"), "the past is not live");
    assert!(
        !then.contains("id=\"acknowledge-selected\""),
        "no actions then"
    );
    // Filters are kept in the URL, and apply then too.
    let (_, filtered) = page(
        &app,
        &admin,
        &format!("/console/queues/operations?severity=critical&as_of={between}"),
    )
    .await;
    assert!(!filtered.contains(&id));
    let (_, filtered) = page(
        &app,
        &admin,
        &format!("/console/queues/operations?severity=warning&status=triggered&as_of={between}"),
    )
    .await;
    assert!(filtered.contains(&id));

    // The change did not exist then.
    eventually("the change is listed now", || async {
        page(&app, &admin, "/console/changes")
            .await
            .1
            .contains("patch the gateway")
            .then_some(())
    })
    .await;
    let (_, changes) = page(&app, &admin, &format!("/console/changes?as_of={between}")).await;
    assert!(!changes.contains("patch the gateway") && !changes.contains("id=\"do-request\""));

    // Every page of the navigation takes it, says so, and keeps it in its links.
    let (_, home) = page(
        &app,
        &admin,
        &format!("/console/queues/operations?as_of={between}"),
    )
    .await;
    for link in nav_links(&home) {
        if link.starts_with("/console/preferences") {
            continue;
        }
        assert!(link.contains("as_of="), "{link}");
        let (status, body) = page(&app, &admin, &link).await;
        assert_eq!(status, StatusCode::OK, "{link}: {body}");
        assert!(
            body.contains("class=\"banner\""),
            "{link} says it shows the past"
        );
    }
    let (status, _) = page(&app, &admin, "/console/windows?as_of=last-week").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

/// Posts `fields` (with this browser's CSRF token) to `path`.
async fn send(
    app: &TestApp,
    cookies: &str,
    path: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let mut form = vec![("csrf", csrf_of(cookies))];
    form.extend(fields.iter().map(|(k, v)| (*k, (*v).to_owned())));
    app.http
        .post(app.url(path))
        .header("cookie", cookies)
        .header("accept", "text/html")
        .form(&form)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_client_files_an_inquiry_and_follows_it_while_the_team_answers() {
    let app = spawn_app().await;
    let acme = register_client(&app, "Acme").await;
    let service = register_service(&app, acme["id"].as_str().unwrap(), "shop").await;
    let client: Uuid = acme["id"].as_str().unwrap().parse().unwrap();
    let hanako = sign_in(
        &app,
        &app.token_for(app.tenant, "hanako", &[Role::Client], Some(client)),
    )
    .await;
    let olga = sign_in(
        &app,
        &app.token_for(app.tenant, "olga", &[Role::Operator], None),
    )
    .await;

    let (_, list) = page(&app, &hanako, "/console/inquiries").await;
    assert!(list.contains("id=\"do-file\"") && list.contains(">shop</option>"));
    let res = send(
        &app,
        &hanako,
        "/console/inquiries",
        &[
            ("service_id", service["id"].as_str().unwrap()),
            ("kind", "question"),
            ("subject", "Invoices page slow?"),
            ("body", "Since Monday the invoices page takes ten seconds."),
        ],
    )
    .await;
    assert_eq!(
        res.status(),
        StatusCode::SEE_OTHER,
        "{}",
        res.text().await.unwrap()
    );
    let url = res.headers()["location"].to_str().unwrap().to_owned();
    let id = url.rsplit('/').next().unwrap().to_owned();
    let (status, p) = page(&app, &hanako, &url).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        p.contains("Invoices page slow?") && !p.contains("id=\"do-answer\""),
        "clients do not answer"
    );

    // The operator answers from the same page.
    let (_, p) = page(&app, &olga, &url).await;
    assert!(p.contains("id=\"do-answer\""));
    let version = version_in(&p);
    let res = send(
        &app,
        &olga,
        &format!("{url}/answer"),
        &[
            ("version", &version),
            ("answer", "We found a slow query and are fixing it."),
            ("minutes_spent", "10"),
        ],
    )
    .await;
    assert_eq!(
        res.status(),
        StatusCode::SEE_OTHER,
        "{}",
        res.text().await.unwrap()
    );
    // A stale form is refused, not applied twice.
    let res = send(
        &app,
        &olga,
        &format!("{url}/answer"),
        &[("version", &version), ("answer", "again")],
    )
    .await;
    assert_eq!(res.status(), StatusCode::CONFLICT);

    // The client follows it: the answer, without who answered.
    let (_, p) = page(&app, &hanako, &url).await;
    assert!(
        p.contains("We found a slow query") && !p.contains("olga"),
        "{p}"
    );
    let res = send(
        &app,
        &hanako,
        &format!("{url}/close"),
        &[("version", &version_in(&p)), ("note", "thanks")],
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let (_, p) = page(&app, &hanako, &url).await;
    assert!(p.contains("data-status=\"closed\""));
    // Another client cannot read it.
    let other = register_client(&app, "Other").await;
    let other: Uuid = other["id"].as_str().unwrap().parse().unwrap();
    let stranger = sign_in(
        &app,
        &app.token_for(app.tenant, "x", &[Role::Client], Some(other)),
    )
    .await;
    let (status, _) = page(&app, &stranger, &format!("/console/inquiries/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_double_checked_runbook_step_is_confirmed_by_a_second_person_only() {
    let app = spawn_app().await;
    let admin = app.token(&[Role::Admin]);
    let res = app
        .post(
            "/api/v1/runbooks",
            &admin,
            &json!({ "title": "Fail over the database", "steps": [
                { "title": "Promote the replica", "instructions": "pg_ctl promote", "double_check": true },
                { "title": "Point the pool at it", "instructions": "edit pgbouncer.ini", "double_check": false }
            ]}),
        )
        .await;
    assert_eq!(
        res.status(),
        StatusCode::CREATED,
        "{}",
        res.text().await.unwrap()
    );
    let olga = sign_in(
        &app,
        &app.token_for(app.tenant, "olga", &[Role::Operator], None),
    )
    .await;
    let mia = sign_in(
        &app,
        &app.token_for(app.tenant, "mia", &[Role::Operator], None),
    )
    .await;

    let (_, list) = eventually("the runbook is offered", || async {
        let (s, p) = page(&app, &olga, "/console/executions").await;
        p.contains("Fail over the database").then_some((s, p))
    })
    .await;
    let runbook = list
        .split("name=\"runbook_id\"><option value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let res = send(
        &app,
        &olga,
        "/console/executions",
        &[("runbook_id", &runbook), ("incident_id", "")],
    )
    .await;
    assert_eq!(
        res.status(),
        StatusCode::SEE_OTHER,
        "{}",
        res.text().await.unwrap()
    );
    let url = res.headers()["location"].to_str().unwrap().to_owned();

    let (_, p) = page(&app, &olga, &url).await;
    assert!(p.contains("id=\"do-complete\""), "{p}");
    let res = send(
        &app,
        &olga,
        &format!("{url}/complete"),
        &[
            ("version", &version_in(&p)),
            ("step", "1"),
            ("note", "promoted"),
        ],
    )
    .await;
    assert_eq!(
        res.status(),
        StatusCode::SEE_OTHER,
        "{}",
        res.text().await.unwrap()
    );
    // Olga did it, so she is not offered the confirmation, and it is refused.
    let (_, p) = page(&app, &olga, &url).await;
    assert!(
        !p.contains("id=\"do-confirm\"") && p.contains("Waiting for a second person"),
        "{p}"
    );
    let res = send(
        &app,
        &olga,
        &format!("{url}/confirm"),
        &[("version", &version_in(&p)), ("step", "1")],
    )
    .await;
    assert!(res.status().is_client_error(), "{}", res.status());
    // Mia confirms; the next step and the finish follow.
    let (_, p) = page(&app, &mia, &url).await;
    assert!(p.contains("id=\"do-confirm\""));
    let res = send(
        &app,
        &mia,
        &format!("{url}/confirm"),
        &[("version", &version_in(&p)), ("step", "1")],
    )
    .await;
    assert_eq!(
        res.status(),
        StatusCode::SEE_OTHER,
        "{}",
        res.text().await.unwrap()
    );
    let (_, p) = page(&app, &olga, &url).await;
    assert!(p.contains("Confirmed by mia"));
    let res = send(
        &app,
        &olga,
        &format!("{url}/complete"),
        &[("version", &version_in(&p)), ("step", "2")],
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let (_, p) = page(&app, &olga, &url).await;
    let res = send(
        &app,
        &olga,
        &format!("{url}/finish"),
        &[("version", &version_in(&p)), ("outcome", "succeeded")],
    )
    .await;
    assert_eq!(
        res.status(),
        StatusCode::SEE_OTHER,
        "{}",
        res.text().await.unwrap()
    );
    let (_, p) = page(&app, &olga, &url).await;
    assert!(p.contains("data-status=\"succeeded\""));
}

#[tokio::test]
async fn a_change_step_that_concerns_someone_is_on_their_notices_page() {
    let sink = opsledger_testkit::SmtpSink::start().await;
    let mail = crate::notifications::smtp(&sink);
    let app = opsledger_testkit::spawn_app_with(|c| {
        c.smtp = Some(mail);
        c.poll_interval = std::time::Duration::from_millis(50);
    })
    .await;
    let admin = app.token(&[Role::Admin]);
    // Mika is a roster user (the notices go to her address); her token's
    // subject is that address.
    let res = app
        .post(
            "/api/v1/users",
            &admin,
            &json!({ "name": "Mika", "email": "mika@example.com", "locale": "en" }),
        )
        .await;
    assert_eq!(
        res.status(),
        StatusCode::CREATED,
        "{}",
        res.text().await.unwrap()
    );
    let acme = register_client(&app, "Acme").await;
    let service = register_service(&app, acme["id"].as_str().unwrap(), "shop").await;
    let mika_token = app.token_for(app.tenant, "mika@example.com", &[Role::Maintainer], None);
    let res = app
        .post(
            "/api/v1/changes",
            &mika_token,
            &json!({ "kind": "normal", "category": "fix", "title": "rotate the TLS keys", "risk": "low",
                     "impact": "none", "rollback_plan": "old keys", "service_ids": [service["id"]] }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let id = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for (step, token) in [
        ("submit", &mika_token),
        (
            "approve",
            &app.token_for(app.tenant, "ann", &[Role::Approver], None),
        ),
    ] {
        let version: Value = app
            .get(&format!("/api/v1/changes/{id}"), &admin)
            .await
            .json()
            .await
            .unwrap();
        let res = app
            .http
            .post(app.url(&format!("/api/v1/changes/{id}/{step}")))
            .bearer_auth(token)
            .header("if-match", format!("\"{}\"", version["version"]))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            res.status(),
            StatusCode::OK,
            "{step}: {}",
            res.text().await.unwrap()
        );
    }
    let mika = sign_in(&app, &mika_token).await;
    let notices = eventually("the approval reaches mika's notices", || async {
        let (_, p) = page(&app, &mika, "/console/notices").await;
        p.contains("data-step=\"change_approved\"").then_some(p)
    })
    .await;
    assert!(
        notices.contains("rotate the TLS keys")
            && notices.contains(&format!("/console/changes/{id}"))
    );
    // Someone else's page does not list it.
    let olga = sign_in(
        &app,
        &app.token_for(app.tenant, "olga@example.com", &[Role::Operator], None),
    )
    .await;
    let (_, theirs) = page(&app, &olga, "/console/notices").await;
    assert!(!theirs.contains("rotate the TLS keys"));
}

#[tokio::test]
async fn a_window_is_announced_and_a_proposal_approved_from_their_pages_by_whoever_may() {
    let app = spawn_app().await;
    let acme = register_client(&app, "Acme").await;
    let service = register_service(&app, acme["id"].as_str().unwrap(), "shop").await;
    let maint = app.token_for(app.tenant, "mika", &[Role::Maintainer], None);
    let start = chrono::Utc::now() + chrono::Duration::days(5);
    let res = app
        .post(
            "/api/v1/maintenance-windows",
            &maint,
            &json!({ "title": "OS patching", "service_ids": [service["id"]], "start": start,
                     "end": start + chrono::Duration::hours(2) }),
        )
        .await;
    assert_eq!(
        res.status(),
        StatusCode::CREATED,
        "{}",
        res.text().await.unwrap()
    );
    let window = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = app
        .post(
            "/api/v1/proposals",
            &maint,
            &json!({ "title": "Add a read replica", "description": "Stops the nightly slowdowns.",
                     "service_ids": [service["id"]] }),
        )
        .await;
    assert_eq!(
        res.status(),
        StatusCode::CREATED,
        "{}",
        res.text().await.unwrap()
    );
    let proposal = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mika = sign_in(&app, &maint).await;
    let olga = sign_in(
        &app,
        &app.token_for(app.tenant, "olga", &[Role::Operator], None),
    )
    .await;
    let ann = sign_in(
        &app,
        &app.token_for(app.tenant, "ann", &[Role::Approver], None),
    )
    .await;

    // The window: the operator reads it; the maintainer announces it.
    let url = format!("/console/windows/{window}");
    let (status, p) = page(&app, &olga, &url).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        p.contains("OS patching") && !p.contains("id=\"do-announce\""),
        "{p}"
    );
    let (_, p) = page(&app, &mika, &url).await;
    assert!(p.contains("id=\"do-announce\"") && p.contains("id=\"do-cancel\""));
    let res = send(
        &app,
        &mika,
        &format!("{url}/announce"),
        &[("version", &version_in(&p))],
    )
    .await;
    assert_eq!(
        res.status(),
        StatusCode::SEE_OTHER,
        "{}",
        res.text().await.unwrap()
    );
    let (_, p) = page(&app, &mika, &url).await;
    assert!(p.contains("data-status=\"announced\"") && p.contains("id=\"do-start\""));

    // The proposal: only an approver is offered the decision.
    let url = format!("/console/proposals/{proposal}");
    let (_, p) = page(&app, &mika, &url).await;
    assert!(p.contains("Add a read replica") && !p.contains("id=\"do-approve\""));
    let (_, p) = page(&app, &ann, &url).await;
    assert!(p.contains("id=\"do-approve\"") && p.contains("id=\"do-reject\""));
    let res = send(
        &app,
        &ann,
        &format!("{url}/approve"),
        &[("version", &version_in(&p)), ("comment", "yes")],
    )
    .await;
    assert_eq!(
        res.status(),
        StatusCode::SEE_OTHER,
        "{}",
        res.text().await.unwrap()
    );
    let (_, p) = page(&app, &ann, &url).await;
    assert!(p.contains("data-status=\"approved\""));
    // The lists link to both pages.
    eventually("the proposals list links to it", || async {
        let (_, list) = page(&app, &ann, "/console/proposals").await;
        list.replace("&#x2f;", "/")
            .contains(&format!("/console/proposals/{proposal}"))
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_audit_search_finds_what_someone_did_and_clients_have_none() {
    let app = spawn_app().await;
    let admin = app.token(&[Role::Admin]);
    let id = open_incident(&app, &admin, "vpn flapping", "error").await;
    let olga = app.token_for(app.tenant, "olga", &[Role::Operator], None);
    let res = app
        .post(
            &format!("/api/v1/incidents/{id}/acknowledge"),
            &olga,
            &json!({}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let auditor = sign_in(
        &app,
        &app.token_for(app.tenant, "aud", &[Role::Auditor], None),
    )
    .await;
    let (status, p) = page(&app, &auditor, "/console/audit").await;
    assert_eq!(status, StatusCode::OK);
    assert!(p.contains("id=\"do-search\""));
    // The form's empty fields ask for nothing; a filled one narrows.
    let (_, all) = page(&app, &auditor, "/console/audit?actor=&event_type=&entity=").await;
    assert!(
        all.contains("IncidentOpened") && all.contains("IncidentAcknowledged"),
        "{all}"
    );
    let (_, hers) = page(&app, &auditor, "/console/audit?actor=olga").await;
    assert!(
        hers.contains("IncidentAcknowledged") && !hers.contains("IncidentOpened"),
        "{hers}"
    );
    assert!(
        hers.contains("value=\"olga\""),
        "the search is kept in its form"
    );
}
