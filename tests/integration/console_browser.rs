//! The console in a real browser: Debian's chromium driven through
//! chromedriver (WebDriver), against the real server and PostgreSQL.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use opsledger_domain::access::Role;
use opsledger_testkit::{spawn_app, TestApp};
use serde_json::json;

/// A chromedriver on a free loopback port, stopped when dropped.
struct Driver {
    child: Child,
    url: String,
    chromium: String,
    profiles: PathBuf,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profiles);
    }
}

async fn driver() -> Driver {
    let chromium = crate::report_print::chromium();
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    for _ in 0..100 {
        if http.get(format!("{url}/status")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let profiles = std::env::temp_dir().join(format!("opsledger-browser-{}", uuid::Uuid::now_v7()));
    Driver {
        child,
        url,
        chromium,
        profiles,
    }
}

impl Driver {
    /// A new browser of its own (a fresh profile: no cookies shared).
    async fn browser(&self) -> Client {
        let profile = self.profiles.join(uuid::Uuid::now_v7().to_string());
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": self.chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1280,900", "--no-first-run", "--disable-background-networking",
                    format!("--user-data-dir={}", profile.display()),
                ],
            }),
        );
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("a chromium session")
    }
}

async fn sign_in(b: &Client, app: &TestApp, token: &str) {
    sign_in_to(b, app, token, "table.queue").await;
}

/// Signs in; waits for `landing` (a staff member's queue, a client's list).
async fn sign_in_to(b: &Client, app: &TestApp, token: &str, landing: &str) {
    b.goto(&app.url("/signin")).await.unwrap();
    b.find(Locator::Css("#token"))
        .await
        .unwrap()
        .send_keys(token)
        .await
        .unwrap();
    b.find(Locator::Css("form.signin button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.wait()
        .for_element(Locator::Css(landing))
        .await
        .expect("signed in, the landing page shows");
}

/// axe-core's source (`ops/browser.sh axe`; `ops/test` names it once).
fn axe_source() -> &'static str {
    static AXE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    AXE.get_or_init(|| {
        let path = std::env::var("OPSLEDGER_AXE")
            .unwrap_or_else(|_| crate::report_print::browser_sh("axe"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("axe-core at {path}: {e}"))
    })
}

/// Checks the page `b` shows: axe-core, injected into it, finds no serious
/// or critical accessibility violation; and keeps a screenshot of it named
/// `name` (in `OPSLEDGER_SCREENSHOTS`, else target/console-screenshots).
async fn inspect(b: &Client, name: &str) {
    b.execute(axe_source(), vec![])
        .await
        .expect("axe-core loads");
    let found = b
        .execute_async(
            r#"const done = arguments[arguments.length - 1];
               axe.run(document, { resultTypes: ["violations"] })
                 .then(r => done(r.violations
                   .filter(v => v.impact === "serious" || v.impact === "critical")
                   .map(v => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.map(n => n.target.join(" ")).join(", ")}`)))
                 .catch(e => done([`axe failed: ${e}`]));"#,
            vec![],
        )
        .await
        .expect("axe-core runs");
    let violations: Vec<String> = serde_json::from_value(found).unwrap();
    assert!(violations.is_empty(), "{name}: {violations:#?}");
    let dir = std::env::var("OPSLEDGER_SCREENSHOTS").map_or_else(
        |_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/console-screenshots"),
        PathBuf::from,
    );
    std::fs::create_dir_all(&dir).unwrap();
    let png = b.screenshot().await.expect("a screenshot");
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

/// Opens `path` in `b`, and waits for `css` to show.
async fn open(b: &Client, app: &TestApp, path: &str, css: &str) {
    b.goto(&app.url(path)).await.unwrap();
    b.wait()
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{path}: {css}: {e}"));
}

/// Clicks what `css` finds.
async fn click(b: &Client, css: &str) {
    b.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap();
}

/// Types `text` into what `css` finds.
async fn fill(b: &Client, css: &str, text: &str) {
    b.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .send_keys(text)
        .await
        .unwrap();
}

/// The text of what `css` finds, or empty.
async fn text_of(b: &Client, css: &str) -> String {
    match b.find(Locator::Css(css)).await {
        Ok(e) => e.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Waits until `check` holds in `b`, reading the page each 100 ms.
async fn until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..200 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: not within 20 s");
}

#[tokio::test]
async fn an_operator_acknowledges_from_the_queue_and_another_browser_sees_it_without_reload() {
    let app = spawn_app().await;
    let admin = app.token(&[Role::Admin]);
    let id = crate::console::open_incident(&app, &admin, "checkout failing", "critical").await;

    let driver = driver().await;
    let olga = driver.browser().await;
    let mia = driver.browser().await;
    sign_in(
        &olga,
        &app,
        &app.token_for(app.tenant, "olga", &[Role::Operator], None),
    )
    .await;
    sign_in(
        &mia,
        &app,
        &app.token_for(app.tenant, "mia", &[Role::Operator], None),
    )
    .await;
    let status_cell = format!("tr[data-id=\"{id}\"] td.status");
    // Read again when the live list swaps the rows under a read.
    for b in [&olga, &mia] {
        until("the queue shows it triggered", async || {
            match b.find(Locator::Css(&status_cell)).await {
                Ok(cell) => cell.text().await.is_ok_and(|t| t == "triggered"),
                Err(_) => false,
            }
        })
        .await;
    }
    let mia_was_at = mia.current_url().await.unwrap();

    // Olga ticks the incident and acknowledges it from the queue.
    let tick = format!("input[name=ids][value=\"{id}\"]");
    until("olga ticks it", async || {
        match olga.find(Locator::Css(&tick)).await {
            Ok(found) => found.click().await.is_ok(),
            Err(_) => false,
        }
    })
    .await;
    // A new incident arrives while it is ticked: the rows are swapped, and
    // the tick is kept.
    let second = crate::console::open_incident(&app, &admin, "search slow", "warning").await;
    until("olga's queue shows the new incident", async || {
        olga.find(Locator::Css(&format!("tr[data-id=\"{second}\"]")))
            .await
            .is_ok()
    })
    .await;
    let still = olga
        .execute(
            "return document.querySelector(arguments[0]).checked",
            vec![json!(tick)],
        )
        .await
        .unwrap();
    assert_eq!(still, json!(true), "the tick survives the live swap");
    olga.find(Locator::Css("#acknowledge-selected"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until("olga's queue shows it acknowledged", async || {
        match olga.find(Locator::Css(&status_cell)).await {
            Ok(cell) => cell.text().await.is_ok_and(|t| t == "acknowledged"),
            Err(_) => false,
        }
    })
    .await;

    // Mia's page changes by itself: no reload, no navigation.
    until("mia's queue shows it acknowledged", async || {
        match mia.find(Locator::Css(&status_cell)).await {
            Ok(cell) => cell.text().await.is_ok_and(|t| t == "acknowledged"),
            Err(_) => false,
        }
    })
    .await;
    assert_eq!(mia.current_url().await.unwrap(), mia_was_at);
    let api: serde_json::Value = app
        .get(&format!("/api/v1/incidents/{id}"), &admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(api["status"], "acknowledged");

    olga.close().await.unwrap();
    mia.close().await.unwrap();
}

#[tokio::test]
async fn a_maintainer_takes_the_hand_off_records_a_finding_and_a_fix_and_resolves() {
    let app = spawn_app().await;
    let admin = app.token(&[Role::Admin]);
    let id = crate::console::open_incident(&app, &admin, "orders db slow", "error").await;
    let driver = driver().await;
    let olga = driver.browser().await;
    let mika = driver.browser().await;
    sign_in(
        &olga,
        &app,
        &app.token_for(app.tenant, "olga", &[Role::Operator], None),
    )
    .await;
    sign_in(
        &mika,
        &app,
        &app.token_for(app.tenant, "mika", &[Role::Maintainer], None),
    )
    .await;
    inspect(&olga, "queue-operations").await;

    // The operator acknowledges with the `a` key and hands off.
    let page = format!("/console/incidents/{id}");
    open(&olga, &app, &page, "#do-acknowledge").await;
    inspect(&olga, "incident-triggered").await;
    olga.find(Locator::Css("body"))
        .await
        .unwrap()
        .send_keys("a")
        .await
        .unwrap();
    until("acknowledged by the a key", async || {
        text_of(&olga, "dd[data-status]").await == "acknowledged"
    })
    .await;
    fill(&olga, "#handoff-reason", "needs an index").await;
    click(&olga, "#do-handoff").await;
    until("handed off", async || {
        olga.find(Locator::Css("tr[data-type=IncidentHandedOff]"))
            .await
            .is_ok()
    })
    .await;

    // The maintainer finds it in the maintenance queue, opens it, works it.
    until("the maintenance queue lists it", async || {
        open(&mika, &app, "/console/queues/maintenance", "table.queue").await;
        mika.find(Locator::Css(&format!("tr[data-id=\"{id}\"] a")))
            .await
            .is_ok()
    })
    .await;
    inspect(&mika, "queue-maintenance").await;
    click(&mika, &format!("tr[data-id=\"{id}\"] a")).await;
    mika.wait()
        .for_element(Locator::Css("#do-finding"))
        .await
        .unwrap();
    inspect(&mika, "incident-maintenance").await;
    fill(
        &mika,
        "#finding-statement",
        "orders.created_at has no index",
    )
    .await;
    click(&mika, "#do-finding").await;
    mika.wait()
        .for_element(Locator::Css("tr[data-type=FindingRecorded]"))
        .await
        .unwrap();
    mika.find(Locator::Css("#action-kind option[value=fix]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    fill(
        &mika,
        "#action-description",
        "created the index concurrently",
    )
    .await;
    fill(&mika, "#action-minutes", "25").await;
    click(&mika, "#do-action").await;
    mika.wait()
        .for_element(Locator::Css("tr[data-type=MaintenanceActionRecorded]"))
        .await
        .unwrap();
    click(&mika, "#do-resolve").await;
    until("resolved", async || {
        text_of(&mika, "dd[data-status]").await == "resolved"
    })
    .await;
    inspect(&mika, "incident-resolved").await;
    // The `?` key lists the keys.
    mika.find(Locator::Css("body"))
        .await
        .unwrap()
        .send_keys("?")
        .await
        .unwrap();
    until("the list of keys opens", async || {
        mika.find(Locator::Css("dialog#keys[open]")).await.is_ok()
    })
    .await;
    let api: serde_json::Value = app
        .get(&format!("/api/v1/incidents/{id}"), &admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(api["status"], "resolved");
    assert_eq!(api["findings"], 1);
    olga.close().await.unwrap();
    mika.close().await.unwrap();
}

#[tokio::test]
async fn a_requester_cannot_approve_their_own_change_and_an_approver_can() {
    let app = spawn_app().await;
    let acme = crate::api_directory::register_client(&app, "Acme").await;
    crate::api_directory::register_service(&app, acme["id"].as_str().unwrap(), "shop").await;
    let driver = driver().await;
    let mika = driver.browser().await;
    let ann = driver.browser().await;
    sign_in(
        &mika,
        &app,
        &app.token_for(
            app.tenant,
            "mika",
            &[Role::Maintainer, Role::Approver],
            None,
        ),
    )
    .await;
    sign_in(
        &ann,
        &app,
        &app.token_for(app.tenant, "ann", &[Role::Approver], None),
    )
    .await;

    open(&mika, &app, "/console/changes", "#do-request").await;
    inspect(&mika, "changes").await;
    fill(&mika, "#c-title", "Upgrade PostgreSQL to 16.4").await;
    fill(&mika, "#c-impact", "five minutes read-only").await;
    fill(&mika, "#c-rollback", "restore the snapshot").await;
    mika.find(Locator::Css("#c-services option"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    click(&mika, "#do-request").await;
    mika.wait()
        .for_element(Locator::Css("#do-submit"))
        .await
        .unwrap();
    let url = mika.current_url().await.unwrap().to_string();
    click(&mika, "#do-submit").await;
    until("submitted", async || {
        text_of(&mika, "dd[data-status]").await == "submitted"
    })
    .await;
    inspect(&mika, "change-submitted").await;
    assert!(
        mika.find(Locator::Css("#do-approve")).await.is_err(),
        "no approval of one's own"
    );

    ann.goto(&url).await.unwrap();
    ann.wait()
        .for_element(Locator::Css("#do-approve"))
        .await
        .unwrap();
    click(&ann, "#do-approve").await;
    until("approved", async || {
        text_of(&ann, "dd[data-status]").await == "approved"
    })
    .await;
    open(&ann, &app, "/console/calendar?view=month", "ol.calendar").await;
    inspect(&ann, "calendar-month").await;
    mika.close().await.unwrap();
    ann.close().await.unwrap();
}

#[tokio::test]
async fn a_client_sees_its_incident_without_internal_notes_and_not_another_clients() {
    let app = spawn_app().await;
    let admin = app.token(&[Role::Admin]);
    let (acme, other) = (
        crate::api_directory::register_client(&app, "Acme").await,
        crate::api_directory::register_client(&app, "Other").await,
    );
    let shop =
        crate::api_directory::register_service(&app, acme["id"].as_str().unwrap(), "shop").await;
    let theirs =
        crate::api_directory::register_service(&app, other["id"].as_str().unwrap(), "mail").await;
    let mut ids = Vec::new();
    for (title, service) in [("shop checkout errors", &shop), ("mail delayed", &theirs)] {
        let res = app
            .post(
                "/api/v1/incidents",
                &admin,
                &json!({ "title": title, "severity": "error", "service_id": service["id"] }),
            )
            .await;
        ids.push(
            res.json::<serde_json::Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    for (text, visibility) in [
        ("root password rotated", "internal"),
        ("We are investigating.", "client"),
    ] {
        app.post(
            &format!("/api/v1/incidents/{}/notes", ids[0]),
            &admin,
            &json!({ "text": text, "visibility": visibility }),
        )
        .await;
    }
    let client: uuid::Uuid = acme["id"].as_str().unwrap().parse().unwrap();
    let driver = driver().await;
    let b = driver.browser().await;
    sign_in_to(
        &b,
        &app,
        &app.token_for(app.tenant, "hanako", &[Role::Client], Some(client)),
        "table.queue",
    )
    .await;
    inspect(&b, "client-incidents").await;
    assert!(b.source().await.unwrap().contains("shop checkout errors"));
    assert!(!b.source().await.unwrap().contains("mail delayed"));
    click(&b, &format!("tr[data-id=\"{}\"] a", ids[0])).await;
    b.wait()
        .for_element(Locator::Css("table.timeline"))
        .await
        .unwrap();
    inspect(&b, "client-incident").await;
    let page = b.source().await.unwrap();
    assert!(page.contains("We are investigating.") && !page.contains("root password rotated"));
    b.goto(&app.url(&format!("/console/incidents/{}", ids[1])))
        .await
        .unwrap();
    assert_eq!(text_of(&b, "h1").await, "Not found");
    b.close().await.unwrap();
}

#[tokio::test]
async fn a_stale_click_shows_the_conflict_a_form_without_its_token_is_refused_and_a_script_stays_text(
) {
    let app = spawn_app().await;
    let admin = app.token(&[Role::Admin]);
    let id = crate::console::open_incident(&app, &admin, "cdn 502s", "critical").await;
    let driver = driver().await;
    let olga = driver.browser().await;
    sign_in(
        &olga,
        &app,
        &app.token_for(app.tenant, "olga", &[Role::Operator], None),
    )
    .await;
    let page = format!("/console/incidents/{id}");
    open(&olga, &app, &page, "#do-acknowledge").await;
    app.post(
        &format!("/api/v1/incidents/{id}/acknowledge"),
        &admin,
        &json!({}),
    )
    .await;
    click(&olga, "#do-acknowledge").await;
    olga.wait()
        .for_element(Locator::Css(".notice"))
        .await
        .unwrap();
    assert!(text_of(&olga, ".notice")
        .await
        .contains("Someone else acted first"));
    inspect(&olga, "incident-conflict").await;

    // A note holding markup is shown as text, and none of it runs.
    let hostile = "<script>window.__pwned = 1</script><img src=x onerror=\"window.__pwned = 2\">";
    open(&olga, &app, &page, "#note-text").await;
    fill(&olga, "#note-text", hostile).await;
    click(&olga, "#do-note").await;
    olga.wait()
        .for_element(Locator::Css("tr[data-type=NoteAdded]"))
        .await
        .unwrap();
    assert_eq!(
        text_of(&olga, "tr[data-type=NoteAdded] td:last-child").await,
        hostile
    );
    let ran = olga
        .execute("return window.__pwned === undefined", vec![])
        .await
        .unwrap();
    assert_eq!(ran, json!(true), "no script of the note ran");

    // A form whose CSRF token is taken out is refused.
    olga.execute(
        "document.querySelector('#note-text').form.querySelector('input[name=csrf]').remove()",
        vec![],
    )
    .await
    .unwrap();
    fill(&olga, "#note-text", "sent without its token").await;
    click(&olga, "#do-note").await;
    until("refused", async || text_of(&olga, "h1").await == "Refused").await;
    inspect(&olga, "refused").await;
    let timeline: serde_json::Value = app
        .get(&format!("/api/v1/incidents/{id}/timeline"), &admin)
        .await
        .json()
        .await
        .unwrap();
    assert!(!timeline.to_string().contains("sent without its token"));
    olga.close().await.unwrap();
}

#[tokio::test]
async fn every_page_of_the_navigation_passes_axe_for_staff_and_for_clients() {
    let app = spawn_app().await;
    let admin = app.token(&[Role::Admin]);
    let acme = crate::api_directory::register_client(&app, "Acme").await;
    let shop =
        crate::api_directory::register_service(&app, acme["id"].as_str().unwrap(), "shop").await;
    let res = app
        .post(
            "/api/v1/incidents",
            &admin,
            &json!({ "title": "shop down", "severity": "critical", "service_id": shop["id"] }),
        )
        .await;
    assert_eq!(res.status(), reqwest::StatusCode::CREATED);
    let client: uuid::Uuid = acme["id"].as_str().unwrap().parse().unwrap();
    let driver = driver().await;
    for (who, token, landing) in [
        ("staff", admin.clone(), "table.queue"),
        (
            "client",
            app.token_for(app.tenant, "hanako", &[Role::Client], Some(client)),
            "table.queue",
        ),
    ] {
        let b = driver.browser().await;
        sign_in_to(&b, &app, &token, landing).await;
        let links: Vec<String> = serde_json::from_value(
            b.execute(
                "return Array.from(document.querySelectorAll('nav[aria-label=Pages] a')).map(a => a.getAttribute('href'))",
                vec![],
            )
            .await
            .unwrap(),
        )
        .unwrap();
        assert!(links.len() >= 4, "{links:?}");
        for link in links {
            open(&b, &app, &link, "main h1").await;
            inspect(&b, &format!("{who}{}", link.replace('/', "-"))).await;
        }
        if who == "staff" {
            // A page reached from a list: the service's, with what watches it.
            let page = format!("/console/services/{}", shop["id"].as_str().unwrap());
            open(&b, &app, &page, "main h1").await;
            inspect(&b, "staff-service").await;
        }
        b.close().await.unwrap();
    }
}
