//! The probes' checks (SPEC §12): an HTTP(S) GET through the workspace's
//! reqwest (rustls with the system's roots; redirects not followed: a probe
//! names the URL it means), or a TCP connect. Each runs within its probe's
//! timeout, and every way it can go wrong is a failed result, never an
//! error of the worker's.
//!
//! An https result carries the days its server certificate has left
//! (reqwest hands out the leaf's DER; `x509-cert` reads its notAfter), and
//! fails below the probe's `tls_days_min`. A certificate already expired or
//! not trusted fails the handshake itself. Roots are the system's, plus the
//! PEM bundle `OPSLEDGER_PROBE_CA_FILE` names (an internal CA).

use std::time::{Duration, Instant};

use chrono::Utc;
use opsledger_domain::probe::{self, Check, CheckResult};
use x509_cert::der::Decode;

/// The most of a body a check reads: a health page is small, and a keyword
/// or a JSON value past this is not worth the memory.
const BODY_LEN_MAX_BYTES: usize = 1 << 20;

/// The client every check shares (its connection pool too): no redirects,
/// no cookies; the peer's certificate kept on each response; `extra_roots`
/// (PEM, checked when the configuration was read) trusted beside the
/// system's.
pub fn client(extra_roots: Option<&[u8]>) -> Result<reqwest::Client, reqwest::Error> {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("opsledger-probe/", env!("CARGO_PKG_VERSION")))
        .tls_info(true);
    if let Some(pem) = extra_roots {
        for root in reqwest::Certificate::from_pem_bundle(pem)? {
            builder = builder.add_root_certificate(root);
        }
    }
    builder.build()
}

/// Whole days the leaf certificate of `resp`'s connection has left, when it
/// came over TLS and its notAfter can be read.
fn tls_days_left(resp: &reqwest::Response) -> Option<i64> {
    let der = resp
        .extensions()
        .get::<reqwest::tls::TlsInfo>()?
        .peer_certificate()?;
    let cert = x509_cert::Certificate::from_der(der).ok()?;
    let not_after = cert.tbs_certificate.validity.not_after.to_unix_duration();
    let not_after = chrono::DateTime::from_timestamp(i64::try_from(not_after.as_secs()).ok()?, 0)?;
    Some(probe::tls_days_left(not_after, Utc::now()))
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
        Ok(Ok((status, days))) => {
            CheckResult::success(at, latency_ms, status).with_tls_days_left(days)
        }
        Ok(Err(failed)) => CheckResult::failure(at, latency_ms, failed.status, &failed.error)
            .with_tls_days_left(failed.tls_days_left),
    }
}

/// How a check failed: the status and certificate days it got that far.
struct Failed {
    status: Option<u16>,
    error: String,
    tls_days_left: Option<i64>,
}

impl From<(Option<u16>, String)> for Failed {
    fn from((status, error): (Option<u16>, String)) -> Failed {
        Failed {
            status,
            error,
            tls_days_left: None,
        }
    }
}

/// A success: the HTTP status (none for TCP) and the certificate's days left.
type Checked = Result<(Option<u16>, Option<i64>), Failed>;

async fn run(client: &reqwest::Client, check: &Check) -> Checked {
    match check {
        Check::Tcp { host, port } => {
            match tokio::net::TcpStream::connect((host.as_str(), *port)).await {
                Ok(_) => Ok((None, None)),
                Err(e) => Err((None, format!("connect: {e}")).into()),
            }
        }
        Check::Http {
            url,
            expected_status,
            body_keyword,
            json_pointer,
            json_value,
            tls_days_min,
        } => {
            let resp = client
                .get(url)
                .send()
                .await
                .map_err(|e| Failed::from((None, format!("request: {}", chain(&e)))))?;
            let days = tls_days_left(&resp);
            let status = resp.status().as_u16();
            let with_days = |(status, error): (Option<u16>, String)| Failed {
                status,
                error,
                tls_days_left: days,
            };
            if let Some(short) = days.and_then(|d| probe::tls_shortfall(d, *tls_days_min)) {
                return Err(with_days((Some(status), short)));
            }
            if url.starts_with("https://") && tls_days_min.is_some() && days.is_none() {
                return Err(with_days((
                    Some(status),
                    "the TLS certificate's expiry could not be read".into(),
                )));
            }
            http_body(
                resp,
                status,
                *expected_status,
                body_keyword,
                json_pointer,
                json_value,
            )
            .await
            .map(|status| (Some(status), days))
            .map_err(with_days)
        }
    }
}

/// The status, keyword and JSON value checks of an HTTP answer.
async fn http_body(
    mut resp: reqwest::Response,
    status: u16,
    expected_status: u16,
    body_keyword: &Option<String>,
    json_pointer: &Option<String>,
    json_value: &Option<serde_json::Value>,
) -> Result<u16, (Option<u16>, String)> {
    if status != expected_status {
        return Err((
            Some(status),
            format!("status {status}, expected {expected_status}"),
        ));
    }
    if body_keyword.is_none() && json_pointer.is_none() {
        return Ok(status);
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
    Ok(status)
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
