//! The web console over HTTP: signing in with a token, the session and CSRF
//! cookies, the security headers, and a queue page that shows stored text
//! as text. (Browser tests drive it in Chromium separately.)

use opsledger_domain::access::Role;
use opsledger_testkit::{spawn_app, TestApp};
use opsledger_tests::eventually;
use reqwest::header::{CONTENT_SECURITY_POLICY, LOCATION, SET_COOKIE};
use reqwest::StatusCode;
use serde_json::json;

/// The `name=value` of a `Set-Cookie` for `name`, with its attributes.
fn set_cookie(res: &reqwest::Response, name: &str) -> Option<String> {
    res.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_owned)
}

fn value(set_cookie: &str) -> String {
    set_cookie
        .split(';')
        .next()
        .and_then(|kv| kv.split_once('='))
        .map(|(_, v)| v.to_owned())
        .unwrap()
}

/// Signs in with `token`; returns the `Cookie` header a browser then sends.
pub(crate) async fn sign_in(app: &TestApp, token: &str) -> String {
    let form = app.http.get(app.url("/signin")).send().await.unwrap();
    assert_eq!(form.status(), StatusCode::OK);
    let csrf = value(&set_cookie(&form, "opsledger_csrf").expect("a CSRF cookie"));
    let page = form.text().await.unwrap();
    assert!(
        page.contains(&format!("value=\"{csrf}\"")),
        "the form carries it"
    );
    let res = app
        .http
        .post(app.url("/signin"))
        .header("cookie", format!("opsledger_csrf={csrf}"))
        .form(&[("token", token), ("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::SEE_OTHER,
        "{:?}",
        res.text().await
    );
    let session = set_cookie(&res, "opsledger_session").expect("a session cookie");
    format!(
        "opsledger_csrf={csrf}; opsledger_session={}",
        value(&session)
    )
}

#[tokio::test]
async fn signing_in_with_a_token_sets_a_strict_http_only_session_that_expires_with_it() {
    let app = spawn_app().await;
    // Not signed in: every page sends the browser to sign in.
    for path in ["/", "/console/queues/operations"] {
        let res = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "{path}");
        assert_eq!(res.headers()[LOCATION], "/signin");
    }
    let form = app.http.get(app.url("/signin")).send().await.unwrap();
    let csp = form.headers()[CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    let csrf_cookie = set_cookie(&form, "opsledger_csrf").unwrap();
    assert!(csrf_cookie.contains("HttpOnly") && csrf_cookie.contains("SameSite=Strict"));
    let csrf = value(&csrf_cookie);

    // A token that does not verify is refused on the page, and sets nothing.
    let res = app
        .http
        .post(app.url("/signin"))
        .header("cookie", format!("opsledger_csrf={csrf}"))
        .form(&[("token", "not-a-token"), ("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(set_cookie(&res, "opsledger_session").is_none());

    // A form without this browser's CSRF token is refused.
    let token = app.token_for(app.tenant, "olga", &[Role::Operator], None);
    let res = app
        .http
        .post(app.url("/signin"))
        .form(&[("token", token.as_str()), ("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN, "no CSRF cookie");
    let res = app
        .http
        .post(app.url("/signin"))
        .header("cookie", format!("opsledger_csrf={csrf}"))
        .form(&[("token", token.as_str()), ("csrf", "someone-elses")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN, "another token");

    let res = app
        .http
        .post(app.url("/signin"))
        .header("cookie", format!("opsledger_csrf={csrf}"))
        .form(&[("token", token.as_str()), ("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let session = set_cookie(&res, "opsledger_session").unwrap();
    assert!(session.contains("HttpOnly"), "{session}");
    assert!(session.contains("SameSite=Strict"), "{session}");
    assert!(
        !session.contains("Secure"),
        "plain HTTP on loopback: {session}"
    );
    let max_age: i64 = session
        .split(';')
        .find_map(|a| a.trim().strip_prefix("Max-Age="))
        .expect("it expires")
        .parse()
        .unwrap();
    // The harness's tokens last ten minutes.
    assert!(
        (540..=600).contains(&max_age),
        "as long as the token: {max_age}"
    );
    let cookies = format!(
        "opsledger_csrf={csrf}; opsledger_session={}",
        value(&session)
    );
    let home = app
        .http
        .get(app.url("/"))
        .header("cookie", &cookies)
        .send()
        .await
        .unwrap();
    assert_eq!(home.headers()[LOCATION], "/console/queues/operations");

    // Signing out needs the CSRF token too, and removes the session.
    let res = app
        .http
        .post(app.url("/signout"))
        .header("cookie", &cookies)
        .form(&[("csrf", "")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = app
        .http
        .post(app.url("/signout"))
        .header("cookie", &cookies)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let gone = set_cookie(&res, "opsledger_session").unwrap();
    assert!(gone.contains("Max-Age=0"), "{gone}");
}

#[tokio::test]
async fn the_queue_page_lists_open_incidents_oldest_first_and_shows_stored_markup_as_text() {
    let app = spawn_app().await;
    let admin = app.token(&[Role::Admin]);
    let client = app
        .post("/api/v1/clients", &admin, &json!({ "name": "C" }))
        .await;
    let client: serde_json::Value = client.json().await.unwrap();
    let service = app
        .post(
            "/api/v1/services",
            &admin,
            &json!({ "client_id": client["id"], "name": "shop", "sla_target_pct": 99.9, "notice_period_h": 1 }),
        )
        .await;
    let service: serde_json::Value = service.json().await.unwrap();
    for title in ["<script>alert(1)</script> checkout down", "search slow"] {
        let res = app
            .post(
                "/api/v1/incidents",
                &admin,
                &json!({ "title": title, "service_id": service["id"], "severity": "error" }),
            )
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
    }
    let operator = app.token_for(app.tenant, "olga", &[Role::Operator], None);
    let cookies = sign_in(&app, &operator).await;
    let page = eventually("both incidents are queued", || async {
        let res = app
            .http
            .get(app.url("/console/queues/operations"))
            .header("cookie", &cookies)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert!(res.headers().contains_key(CONTENT_SECURITY_POLICY));
        let text = res.text().await.unwrap();
        text.contains("search slow").then_some(text)
    })
    .await;
    assert!(page.contains("&lt;script&gt;alert(1)"), "escaped");
    assert!(!page.contains("<script>alert(1)"), "never as markup");
    let first = page.find("checkout down").unwrap();
    let second = page.find("search slow").unwrap();
    assert!(first < second, "oldest first");

    // A client user is not shown the teams' queues.
    let client_user = app.token_for(
        app.tenant,
        "kim",
        &[Role::Client],
        client["id"].as_str().map(|s| s.parse().unwrap()),
    );
    let cookies = sign_in(&app, &client_user).await;
    let res = app
        .http
        .get(app.url("/console/queues/operations"))
        .header("cookie", &cookies)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn the_console_serves_its_scripts_itself() {
    let app = spawn_app().await;
    for (name, marker) in [
        ("htmx.min.js", "htmx"),
        ("console.js", "keydown"),
        ("console.css", "body"),
    ] {
        let res = app
            .http
            .get(app.url(&format!("/assets/{name}")))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{name}");
        assert!(res.text().await.unwrap().contains(marker), "{name}");
    }
    let res = app
        .http
        .get(app.url("/assets/nothing.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

/// Opens an incident through the API; its id.
pub(crate) async fn open_incident(
    app: &TestApp,
    token: &str,
    title: &str,
    severity: &str,
) -> String {
    let res = app
        .post(
            "/api/v1/incidents",
            token,
            &json!({ "title": title, "severity": severity }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let incident: serde_json::Value = res.json().await.unwrap();
    incident["id"].as_str().unwrap().to_owned()
}

/// The version a page's action forms carry.
pub(crate) fn version_in(page: &str) -> String {
    let at = page
        .find("name=\"version\" value=\"")
        .expect("an action form")
        + 22;
    page[at..].split('"').next().unwrap().to_owned()
}

pub(crate) fn csrf_of(cookies: &str) -> String {
    cookies
        .split("; ")
        .find_map(|c| c.strip_prefix("opsledger_csrf="))
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn an_incident_is_acknowledged_from_its_page_and_a_stale_click_shows_what_changed() {
    let app = spawn_app().await;
    let admin = app.token(&[Role::Admin]);
    let id = open_incident(&app, &admin, "checkout down", "error").await;
    let olga = sign_in(
        &app,
        &app.token_for(app.tenant, "olga", &[Role::Operator], None),
    )
    .await;
    let page_of = |cookies: String| {
        let app = &app;
        let id = id.clone();
        async move {
            let res = app
                .http
                .get(app.url(&format!("/console/incidents/{id}")))
                .header("cookie", cookies)
                .send()
                .await
                .unwrap();
            (res.status(), res.text().await.unwrap())
        }
    };
    let (status, page) = page_of(olga.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("data-status=\"triggered\""), "{page}");
    assert!(page.contains(">Acknowledge</button>"));
    let seen = version_in(&page);

    // Someone else acknowledges first (through the API).
    let res = app
        .post(
            &format!("/api/v1/incidents/{id}/acknowledge"),
            &admin,
            &json!({}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);

    // Olga's click, on the version her page showed, is refused and shows
    // the incident as it is now, with what she may still do.
    let click = |action: &'static str, version: String| {
        let app = &app;
        let id = id.clone();
        let olga = olga.clone();
        async move {
            app.http
                .post(app.url(&format!("/console/incidents/{id}/{action}")))
                .header("cookie", &olga)
                .header("accept", "text/html")
                .form(&[("csrf", csrf_of(&olga)), ("version", version)])
                .send()
                .await
                .unwrap()
        }
    };
    let res = click("acknowledge", seen.clone()).await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    let page = res.text().await.unwrap();
    assert!(page.contains("Someone else acted first"), "{page}");
    assert!(page.contains("data-status=\"acknowledged\""));
    assert!(
        !page.contains(">Acknowledge</button>"),
        "nothing left to acknowledge"
    );
    let now = version_in(&page);
    assert_ne!(now, seen);

    // Resolving on the version now shown works, and the page says so.
    let res = click("resolve", now).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let (_, page) = page_of(olga.clone()).await;
    assert!(page.contains("data-status=\"resolved\""), "{page}");
    // The timeline says who did what, oldest first.
    let opened = page.find("<td>IncidentOpened</td>").expect("opened");
    let acked = page
        .find("<td>IncidentAcknowledged</td>")
        .expect("acknowledged");
    let resolved = page.find("<td>IncidentResolved</td>").expect("resolved");
    assert!(opened < acked && acked < resolved, "oldest first");
    assert!(page[resolved..].contains("olga (operator)"), "who resolved");
    let api: serde_json::Value = app
        .get(&format!("/api/v1/incidents/{id}"), &admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(api["status"], "resolved");

    // A click without the CSRF token does nothing.
    let res = app
        .http
        .post(app.url(&format!("/console/incidents/{id}/close")))
        .header("cookie", &olga)
        .form(&[("csrf", "forged"), ("version", "9")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        res.headers()["content-type"],
        "application/problem+json",
        "a client that does not ask for HTML gets a problem"
    );
    let api: serde_json::Value = app
        .get(&format!("/api/v1/incidents/{id}"), &admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(api["status"], "resolved");
}

/// The queue page is live: its rows come again over Server-Sent Events
/// whenever they change, so a new incident appears without a reload.
#[tokio::test]
async fn a_new_incident_reaches_an_open_queue_page_without_a_reload() {
    let app = spawn_app().await;
    let admin = app.token(&[Role::Admin]);
    open_incident(&app, &admin, "disk filling on db-1", "warning").await;
    let cookies = sign_in(
        &app,
        &app.token_for(app.tenant, "olga", &[Role::Operator], None),
    )
    .await;
    let page = app
        .http
        .get(app.url("/console/queues/operations"))
        .header("cookie", &cookies)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("sse-connect=\"/console/queues/operations/live?seen="));

    let mut live = app
        .http
        .get(app.url("/console/queues/operations/live"))
        .header("cookie", &cookies)
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), StatusCode::OK);
    assert_eq!(live.headers()["content-type"], "text/event-stream");
    let mut heard = String::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut opened_second = false;
    while !heard.contains("payments timing out") {
        let chunk = tokio::time::timeout_at(deadline, live.chunk())
            .await
            .expect("the new incident is sent within the deadline")
            .unwrap()
            .expect("the stream stays open");
        heard.push_str(&String::from_utf8_lossy(&chunk));
        if !opened_second && heard.contains("disk filling on db-1") {
            assert!(heard.starts_with("event: queue\ndata: "), "{heard}");
            opened_second = true;
            open_incident(&app, &admin, "payments timing out", "warning").await;
        }
    }
    assert!(opened_second, "the first rows came first");

    // Without a session the stream is refused, not opened.
    let res = app
        .http
        .get(app.url("/console/queues/operations/live"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

/// The console's page `path` for `cookies`: its status and HTML.
async fn console_page(app: &TestApp, cookies: &str, path: &str) -> (StatusCode, String) {
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

#[tokio::test]
async fn a_service_page_shows_its_probes_and_heartbeats_now_and_as_they_stood() {
    let app = opsledger_testkit::spawn_app_with(|c| {
        c.probe_interval_min_s = 1;
        c.probe_poll_interval = std::time::Duration::from_millis(100);
    })
    .await;
    let before = chrono::Utc::now();
    let service = crate::alerts::service(&app, "Billing").await;
    let operator = app.token(&[Role::Operator]);
    // A real listener the TCP probe connects to.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let _accepting = tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            drop(conn);
        }
    });
    let res = app
        .post(
            "/api/v1/probes",
            &operator,
            &json!({ "name": "billing db", "service_id": service,
                     "check": { "kind": "tcp", "host": "127.0.0.1", "port": port },
                     "interval_s": 1, "timeout_ms": 500 }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let res = app
        .post(
            "/api/v1/heartbeats",
            &operator,
            &json!({ "name": "invoice run", "service_id": service,
                     "schedule": { "kind": "cron", "expression": "0 3 * * *", "time_zone": "Asia/Tokyo" } }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let hb: serde_json::Value = res.json().await.unwrap();
    let ping = app.url(&format!(
        "{}/fail?exit_code=3",
        hb["ping_path"].as_str().unwrap()
    ));
    eventually("the failed run is taken", || async {
        let res = app.http.post(&ping).send().await.unwrap();
        (res.status() == StatusCode::OK).then_some(())
    })
    .await;

    // It depends on a database service, whose page it links to.
    let database = crate::alerts::service(&app, "Ledger DB").await;
    let res = app
        .http
        .put(app.url(&format!("/api/v1/services/{service}/dependencies")))
        .bearer_auth(app.token(&[Role::Admin]))
        .json(&json!({ "depends_on": [database] }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    let cookies = sign_in(&app, &operator).await;
    let (status, list) = console_page(&app, &cookies, "/console/services").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        list.contains(&format!(
            "href=\"&#x2f;console&#x2f;services&#x2f;{service}\""
        )),
        "{list}"
    );
    let path = format!("/console/services/{service}");
    let page = eventually("the probe's first check is shown", || async {
        let (status, page) = console_page(&app, &cookies, &path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        page.contains("data-checked").then_some(page)
    })
    .await;
    assert!(page.contains("<h1>Billing</h1>"), "{page}");
    assert!(
        page.contains(&format!("/console/services/{database}\">Ledger DB</a>")),
        "{page}"
    );
    assert!(page.contains(r#"data-health="up""#), "{page}");
    assert!(page.contains("invoice run"), "{page}");
    assert!(page.contains(&format!("tcp 127.0.0.1:{port}")), "{page}");
    assert!(page.contains("0 3 * * * (Asia&#x2f;Tokyo)"), "{page}");
    assert!(page.contains(r#"data-status="failed""#), "{page}");
    assert!(page.contains("fail (exit 3)"), "{page}");

    // As it stood before either was defined: neither is listed.
    let then = format!(
        "{path}?as_of={}",
        before.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    let (status, _) = console_page(&app, &cookies, &then).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "the service was not registered yet"
    );
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let (status, current) = console_page(&app, &cookies, &format!("{path}?as_of={now}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        current.contains("billing db") && current.contains("invoice run"),
        "{current}"
    );
    assert!(
        !current.contains("fail (exit 3)"),
        "the workers' figures are of now only"
    );

    // A client user does not reach it.
    let acme = crate::api_directory::register_client(&app, "Acme").await;
    let acme = acme["id"].as_str().unwrap().parse().unwrap();
    let client = app.token_for(app.tenant, "kim", &[Role::Client], Some(acme));
    let cookies = sign_in(&app, &client).await;
    let (status, _) = console_page(&app, &cookies, &path).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}
