//! The monthly report's HTML page opened in a real headless Chromium and
//! printed to PDF, as a client would print it: the PDF's text carries each
//! service's figures. A screenshot of the page is kept as a test artifact
//! (`target/test-artifacts/monthly-report.png`).

use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::Utc;
use opsledger_domain::access::Role;
use opsledger_domain::period::Month;
use opsledger_testkit::spawn_app;
use opsledger_tests::eventually;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::reports::{created, local};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Debian's chromium (and chromedriver), installed by `ops/browser.sh` when
/// missing.
pub(crate) fn chromium() -> String {
    browser_sh("ensure")
}

/// What `ops/browser.sh <what>` prints: the path of what it provides.
pub(crate) fn browser_sh(what: &str) -> String {
    let out = Command::new("bash")
        .arg(repo().join("ops/browser.sh"))
        .arg(what)
        .output()
        .expect("ops/browser.sh runs");
    assert!(
        out.status.success(),
        "ops/browser.sh could not provide {what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Runs headless Chromium on a local file with the flags a closed network
/// needs (no background connections, a fresh profile).
fn headless(chromium: &str, profile: &Path, args: &[String], page: &Path) {
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn the_monthly_report_prints_to_a_pdf_that_carries_its_figures() {
    let browser = chromium();
    let app = spawn_app().await;
    let admin = app.token(&[Role::Admin]);
    let client = created(
        &app,
        &admin,
        "/api/v1/clients",
        json!({
            "name": "Example Retail", "locale": "en", "time_zone": "America/New_York"
        }),
    )
    .await;
    let cid = client["id"].as_str().unwrap().to_owned();
    let ny: chrono_tz::Tz = "America/New_York".parse().unwrap();
    let month = Month::of(Utc::now(), ny).previous();
    let mut names = vec![];
    for (name, hours) in [("Storefront", 2), ("Payments API", 1)] {
        let service = created(
            &app,
            &admin,
            "/api/v1/services",
            json!({
                "client_id": cid, "name": name, "sla_target_pct": 99.9, "notice_period_h": 1
            }),
        )
        .await;
        let incident = created(&app, &admin, "/api/v1/incidents", json!({
            "title": format!("{name} unavailable"), "service_id": service["id"], "severity": "critical",
            "impact_start": local(ny, month, 5, 9, 0)
        }))
        .await;
        let res = app
            .post(
                &format!(
                    "/api/v1/incidents/{}/mitigate",
                    incident["id"].as_str().unwrap()
                ),
                &admin,
                &json!({ "impact_end": local(ny, month, 5, 9 + hours, 0) }),
            )
            .await;
        assert_eq!(res.status(), StatusCode::OK);
        names.push((name, hours));
    }
    let url = format!("/api/v1/reports/monthly?client={cid}&month={month}");
    let report = eventually("both outages are in the downtime read model", || async {
        let v: Value = app.get(&url, &admin).await.json().await.unwrap();
        // Each outage over, as mitigated: two hours and one.
        let minutes: Vec<f64> = v["services"]
            .as_array()?
            .iter()
            .map(|s| s["downtime"]["outage"]["unplanned"].as_f64().unwrap_or(0.0))
            .collect();
        (minutes == [60.0, 120.0]).then_some(v)
    })
    .await;
    let html = app
        .http
        .get(app.url(&url))
        .bearer_auth(&admin)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let dir = repo().join("target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    let scratch = tempdir();
    let page = scratch.join("monthly-report.html");
    std::fs::write(&page, &html).unwrap();
    let pdf = scratch.join("monthly-report.pdf");
    headless(
        &browser,
        &scratch.join("profile-pdf"),
        &[
            format!("--print-to-pdf={}", pdf.display()),
            "--no-pdf-header-footer".into(),
        ],
        &page,
    );
    headless(
        &browser,
        &scratch.join("profile-png"),
        &[
            format!("--screenshot={}", dir.join("monthly-report.png").display()),
            "--window-size=1240,1754".into(),
        ],
        &page,
    );
    assert!(
        std::fs::metadata(dir.join("monthly-report.png"))
            .unwrap()
            .len()
            > 1000
    );
    let text = Command::new("pdftotext")
        .args(["-layout"])
        .arg(&pdf)
        .arg("-")
        .output()
        .expect("pdftotext runs");
    assert!(text.status.success());
    let text = String::from_utf8_lossy(&text.stdout);
    let pages = Command::new("pdfinfo").arg(&pdf).output().unwrap();
    let pages = String::from_utf8_lossy(&pages.stdout);
    assert!(text.contains("Monthly service report"), "{text}");
    for s in report["services"].as_array().unwrap() {
        let name = s["name"].as_str().unwrap();
        let figure = format!(
            "{:.3} %",
            s["metrics"]["availability"]["sla"].as_f64().unwrap() * 100.0
        );
        assert!(text.contains(name), "{name} in {text}");
        assert!(text.contains(&figure), "{name}: {figure} in {text}");
    }
    // A page for the summary, one per service, one for proposals and
    // restatements: sections start on a new A4 page.
    let count: u32 = pages
        .lines()
        .find_map(|l| l.strip_prefix("Pages:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(count >= 4, "{pages}");
    assert!(pages.contains("(A4)"), "A4: {pages}");
    std::fs::copy(&pdf, dir.join("monthly-report.pdf")).unwrap();
    let _ = std::fs::remove_dir_all(&scratch);
}

/// A fresh scratch folder under the system's temporary folder.
fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("opsledger-print-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
