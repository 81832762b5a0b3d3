//! The probes' checks (SPEC §12): an HTTP(S) GET through the workspace's
//! reqwest (rustls with the system's roots; redirects not followed: a probe
//! names the URL it means), or a TCP connect. Each runs within its probe's
//! timeout, and every way it can go wrong is a failed result, never an
//! error of the worker's.
//!
//! Not done: the TLS certificate's days left. reqwest hands out the peer's
//! certificate as DER only, and reading its expiry needs an X.509 parser
//! the tree does not have.

use std::time::{Duration, Instant};

use chrono::Utc;
use opsledger_domain::probe::{Check, CheckResult};

/// The most of a body a check reads: a health page is small, and a keyword
/// or a JSON value past this is not worth the memory.
const BODY_LEN_MAX_BYTES: usize = 1 << 20;

/// The client every check shares (its connection pool too): no redirects,
/// no cookies.
pub fn client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("opsledger-probe/", env!("CARGO_PKG_VERSION")))
        .build()
}

fn elapsed_ms(started: Instant) -> u64 {
    started.elapsed().as_millis().min(u128::from(u64::MAX)) as u64
}

/// Runs `check` within `timeout`.
pub async fn check(client: &reqwest::Client, check: Check, timeout: Duration) -> CheckResult {
    let at = Utc::now();
    let started = Instant::now();
    let outcome = tokio::time::timeout(timeout, run(client, &check)).await;
    let latency_ms = elapsed_ms(started);
    match outcome {
        Err(_) => CheckResult::failure(
            at,
            latency_ms,
            None,
            &format!("no answer within {} ms", timeout.as_millis()),
        ),
        Ok(Ok(status)) => CheckResult::success(at, latency_ms, status),
        Ok(Err((status, error))) => CheckResult::failure(at, latency_ms, status, &error),
    }
}

type Checked = Result<Option<u16>, (Option<u16>, String)>;

async fn run(client: &reqwest::Client, check: &Check) -> Checked {
    match check {
        Check::Tcp { host, port } => {
            match tokio::net::TcpStream::connect((host.as_str(), *port)).await {
                Ok(_) => Ok(None),
                Err(e) => Err((None, format!("connect: {e}"))),
            }
        }
        Check::Http {
            url,
            expected_status,
            body_keyword,
            json_pointer,
            json_value,
        } => {
            let mut resp = client
                .get(url)
                .send()
                .await
                .map_err(|e| (None, format!("request: {}", chain(&e))))?;
            let status = resp.status().as_u16();
            if status != *expected_status {
                return Err((
                    Some(status),
                    format!("status {status}, expected {expected_status}"),
                ));
            }
            if body_keyword.is_none() && json_pointer.is_none() {
                return Ok(Some(status));
            }
            let mut body = Vec::new();
            while let Some(chunk) = resp
                .chunk()
                .await
                .map_err(|e| (Some(status), format!("body: {}", chain(&e))))?
            {
                body.extend_from_slice(&chunk);
                if body.len() >= BODY_LEN_MAX_BYTES {
                    body.truncate(BODY_LEN_MAX_BYTES);
                    break;
                }
            }
            if let Some(k) = body_keyword {
                if memchr_find(&body, k.as_bytes()).is_none() {
                    return Err((Some(status), format!("body does not hold {k:?}")));
                }
            }
            if let (Some(pointer), Some(expected)) = (json_pointer, json_value) {
                let doc: serde_json::Value = serde_json::from_slice(&body)
                    .map_err(|e| (Some(status), format!("body is not JSON: {e}")))?;
                match doc.pointer(pointer) {
                    Some(v) if v == expected => {}
                    Some(v) => {
                        return Err((
                            Some(status),
                            format!("{pointer} is {v}, expected {expected}"),
                        ))
                    }
                    None => return Err((Some(status), format!("{pointer} is missing"))),
                }
            }
            Ok(Some(status))
        }
    }
}

fn memchr_find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// An error with its causes, as one line (reqwest's own `Display` says only
/// "error sending request").
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}
