//! A real SMTP server on loopback for tests: `ops/smtp-sink.py` (aiosmtpd),
//! one per [`SmtpSink`], keeping every message verbatim in its own folder.
//!
//! The Python interpreter is `OPSLEDGER_TEST_PYTHON` (exported by `ops/test`)
//! or else what `ops/smtp.sh ensure` prints, asked once per process; that
//! script installs aiosmtpd when it is missing.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine as _;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use uuid::Uuid;

/// Exit code of the sink when its port is taken.
const EXIT_ADDRESS_IN_USE: i32 = 3;
/// How long a sink may take to print "ready".
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `restart` keeps trying to bind the same port.
const REBIND_FOR: Duration = Duration::from_secs(10);
const WAIT_FOR_TIMEOUT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(50);

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A Python interpreter that has aiosmtpd.
pub fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        if let Some(py) = std::env::var_os("OPSLEDGER_TEST_PYTHON").filter(|p| !p.is_empty()) {
            return PathBuf::from(py);
        }
        let out = std::process::Command::new("bash")
            .arg(repo_root().join("ops/smtp.sh"))
            .arg("ensure")
            .stderr(Stdio::inherit())
            .output()
            .expect("bash runs ops/smtp.sh");
        assert!(
            out.status.success(),
            "ops/smtp.sh ensure failed: no Python with aiosmtpd"
        );
        let path = String::from_utf8(out.stdout).expect("ops/smtp.sh prints a UTF-8 path");
        PathBuf::from(path.trim())
    })
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

/// One message as the sink received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The envelope's MAIL FROM.
    pub mail_from: String,
    /// The envelope's RCPT TO, in order.
    pub rcpt_to: Vec<String>,
    /// The DATA bytes exactly as sent (headers and body, CRLF line ends).
    pub raw: Vec<u8>,
}

impl Received {
    /// The raw message as text, lossily (for assertions and failure messages).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.raw).into_owned()
    }

    /// The value of header `name` (first occurrence), unfolded, as sent.
    pub fn header(&self, name: &str) -> Option<String> {
        header(&self.text(), name)
    }

    /// Header `name` with its RFC 2047 encoded words decoded.
    pub fn decoded_header(&self, name: &str) -> Option<String> {
        self.header(name).map(|v| decode_header(&v))
    }

    /// The subject, decoded.
    pub fn subject(&self) -> String {
        self.decoded_header("Subject").unwrap_or_default()
    }

    /// The body of a single-part message, its transfer encoding undone.
    pub fn body(&self) -> String {
        decode_body(&self.text())
    }
}

/// The header part and the body of a raw message.
fn split(raw: &str) -> (&str, &str) {
    raw.split_once("\r\n\r\n")
        .expect("a blank line ends the header")
}

/// The value of header `name` (first occurrence), unfolded, as sent.
fn header(raw: &str, name: &str) -> Option<String> {
    let (head, _) = split(raw);
    let mut value: Option<String> = None;
    for line in head.split("\r\n") {
        if let Some(v) = value.as_mut() {
            if line.starts_with([' ', '\t']) {
                v.push_str(line);
                continue;
            }
            break;
        }
        if let Some((n, v)) = line.split_once(':') {
            if n.eq_ignore_ascii_case(name) {
                value = Some(v.trim_start().to_owned());
            }
        }
    }
    value
}

fn quoted_printable(text: &str, underscore_is_space: bool) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'=' if bytes[i + 1..].starts_with(b"\r\n") => i += 3,
            b'=' => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).expect("=XX in quoted-printable"));
                i += 3;
            }
            b'_' if underscore_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

fn base64(text: &str) -> Vec<u8> {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .expect("valid base64")
}

/// An RFC 2047 encoded word (`=?charset?B|Q?text?=`), decoded; None if `word` is not one.
fn encoded_word(word: &str) -> Option<String> {
    let inner = word.strip_prefix("=?")?.strip_suffix("?=")?;
    let mut parts = inner.splitn(3, '?');
    let charset = parts.next()?;
    let encoding = parts.next()?;
    let text = parts.next()?;
    assert!(
        charset.eq_ignore_ascii_case("utf-8"),
        "unexpected charset {charset}"
    );
    let bytes = match encoding {
        "B" | "b" => base64(text),
        "Q" | "q" => quoted_printable(text, true),
        _ => return None,
    };
    Some(String::from_utf8(bytes).expect("an encoded word in UTF-8"))
}

/// An unstructured header value with RFC 2047 encoded words decoded
/// (whitespace between two encoded words is dropped, as the RFC says).
fn decode_header(value: &str) -> String {
    let mut out = String::new();
    let mut previous_was_encoded = false;
    for token in value.split_whitespace() {
        match encoded_word(token) {
            Some(decoded) => {
                if !out.is_empty() && !previous_was_encoded {
                    out.push(' ');
                }
                out.push_str(&decoded);
                previous_was_encoded = true;
            }
            None => {
                if !out.is_empty() {
                    out.push(' ');
                }
                out.push_str(token);
                previous_was_encoded = false;
            }
        }
    }
    out
}

/// The body of a single-part message, its transfer encoding undone.
fn decode_body(raw: &str) -> String {
    let (_, body) = split(raw);
    let encoding = header(raw, "Content-Transfer-Encoding")
        .unwrap_or_else(|| "7bit".into())
        .to_ascii_lowercase();
    let bytes = match encoding.as_str() {
        "base64" => base64(body),
        "quoted-printable" => quoted_printable(body, false),
        _ => body.as_bytes().to_vec(),
    };
    String::from_utf8(bytes).expect("a UTF-8 body")
}

struct Running {
    child: Child,
    // Held open: the sink exits when its stdin closes, i.e. when this
    // process is gone, however it went.
    _stdin: ChildStdin,
    _stdout: BufReader<ChildStdout>,
}

enum SpawnError {
    AddressInUse,
}

/// A real SMTP server on `127.0.0.1:port()`, for as long as this value lives.
pub struct SmtpSink {
    port: u16,
    dir: PathBuf,
    running: Option<Running>,
}

impl std::fmt::Debug for SmtpSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSink")
            .field("port", &self.port)
            .field("dir", &self.dir)
            .field("running", &self.running.is_some())
            .finish()
    }
}

impl SmtpSink {
    /// Starts a sink on a free loopback port and waits until it accepts
    /// connections ("ready" on stdout).
    pub async fn start() -> SmtpSink {
        let dir = std::env::temp_dir().join(format!(
            "opsledger-smtp-{}-{}",
            std::process::id(),
            Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).expect("create the sink's folder");
        let mut sink = SmtpSink {
            port: 0,
            dir,
            running: None,
        };
        // The free port may be taken by someone else before the sink binds it.
        for _ in 0..20 {
            let port = free_port();
            if let Ok(running) = spawn(port, &sink.dir).await {
                sink.port = port;
                sink.running = Some(running);
                return sink;
            }
        }
        panic!("the SMTP sink found no free port on 127.0.0.1");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The folder the messages are kept in (`*.eml` and `*.json` sidecars).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Kills the server: connections to the port are refused until restart.
    pub async fn stop(&mut self) {
        if let Some(mut running) = self.running.take() {
            // SIGKILL, then reaped: once this returns the socket is closed.
            let _ = running.child.kill().await;
        }
    }

    /// Starts it again on the same port (retrying for a few seconds while
    /// the port cannot be bound). Messages received before are kept.
    pub async fn restart(&mut self) {
        self.stop().await;
        let deadline = Instant::now() + REBIND_FOR;
        loop {
            match spawn(self.port, &self.dir).await {
                Ok(running) => {
                    self.running = Some(running);
                    return;
                }
                Err(SpawnError::AddressInUse) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(SpawnError::AddressInUse) => {
                    panic!("the SMTP sink could not bind 127.0.0.1:{} again", self.port)
                }
            }
        }
    }

    /// Every message received so far, in arrival order (also those received
    /// before a stop/restart).
    pub fn messages(&self) -> Vec<Received> {
        let mut stems: Vec<String> = std::fs::read_dir(&self.dir)
            .expect("read the sink's folder")
            .filter_map(|entry| {
                let name = entry.ok()?.file_name().into_string().ok()?;
                name.strip_suffix(".eml").map(str::to_owned)
            })
            .collect();
        stems.sort();
        stems
            .into_iter()
            .map(|stem| {
                let raw = std::fs::read(self.dir.join(format!("{stem}.eml")))
                    .expect("read a received message");
                let envelope = std::fs::read(self.dir.join(format!("{stem}.json")))
                    .expect("a received message has its envelope");
                let envelope: serde_json::Value =
                    serde_json::from_slice(&envelope).expect("the envelope is JSON");
                Received {
                    mail_from: envelope["mail_from"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    rcpt_to: envelope["rcpt_tos"]
                        .as_array()
                        .map(|tos| {
                            tos.iter()
                                .filter_map(|to| to.as_str().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default(),
                    raw,
                }
            })
            .collect()
    }

    /// Waits (polling every 50 ms, up to 60 s, then panics with what was
    /// received) until at least `n` messages arrived; returns all.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        let deadline = Instant::now() + WAIT_FOR_TIMEOUT;
        loop {
            let messages = self.messages();
            if messages.len() >= n {
                return messages;
            }
            if Instant::now() >= deadline {
                let listing: Vec<String> = messages
                    .iter()
                    .map(|m| {
                        format!(
                            "--- from {:?} to {:?}\n{}",
                            m.mail_from,
                            m.rcpt_to,
                            m.text()
                        )
                    })
                    .collect();
                panic!(
                    "the SMTP sink on port {} received {} message(s) in {:?}, expected at least {n}:\n{}",
                    self.port,
                    messages.len(),
                    WAIT_FOR_TIMEOUT,
                    listing.join("\n")
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        if let Some(mut running) = self.running.take() {
            let _ = running.child.start_kill();
            // Reap it if it is already gone; otherwise tokio reaps it later.
            let _ = running.child.try_wait();
        }
        if std::fs::remove_dir_all(&self.dir).is_err() {
            // A rename of the dying sink may have raced the removal.
            std::thread::sleep(Duration::from_millis(50));
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

async fn spawn(port: u16, dir: &Path) -> Result<Running, SpawnError> {
    let mut child = Command::new(python())
        .arg(repo_root().join("ops/smtp-sink.py"))
        .arg(port.to_string())
        .arg(dir)
        .arg("--exit-on-stdin-eof")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("start {} ops/smtp-sink.py: {e}", python().display()));
    let stdin = child.stdin.take().expect("piped stdin");
    let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut line = String::new();
    let read = tokio::time::timeout(READY_TIMEOUT, stdout.read_line(&mut line)).await;
    match read {
        Ok(Ok(_)) if line.trim() == "ready" => Ok(Running {
            child,
            _stdin: stdin,
            _stdout: stdout,
        }),
        Ok(_) => {
            // It closed its stdout (or said something else): it is exiting.
            let status = child.wait().await.expect("wait for the SMTP sink");
            if status.code() == Some(EXIT_ADDRESS_IN_USE) {
                Err(SpawnError::AddressInUse)
            } else {
                panic!("the SMTP sink on port {port} failed ({status}); said {line:?}")
            }
        }
        Err(_) => {
            let _ = child.kill().await;
            panic!("the SMTP sink on port {port} was not ready within {READY_TIMEOUT:?}")
        }
    }
}
