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
        .for_element(Locator::Css("table.queue"))
        .await
        .expect("signed in, the queue shows");
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
