//! The SMTP sink of the test harness: a real SMTP server on loopback that
//! keeps each message byte for byte, so tests of e-mail notices can check
//! encoded headers and transfer encodings, and can stop and restart it to
//! see what happens when the mail server is down.

use std::error::Error as _;

use base64::Engine as _;
use lettre::message::header::ContentType;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use opsledger_testkit::SmtpSink;

const SUBJECT: &str = "障害発生: 受注サイト";
const BODY: &str = "受注サイトで障害が発生しました。\r\n影響: 注文の受付が停止しています。\r\n";

fn transport(sink: &SmtpSink) -> AsyncSmtpTransport<Tokio1Executor> {
    AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(sink.port())
        .build()
}

fn message(to: &str, subject: &str, body: &str) -> Message {
    Message::builder()
        .from("opsledger <noreply@opsledger.test>".parse().unwrap())
        .to(to.parse().unwrap())
        .subject(subject)
        .header(ContentType::TEXT_PLAIN)
        .body(body.to_owned())
        .unwrap()
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

fn is_connection_refused(err: &lettre::transport::smtp::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = err.source();
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return true;
            }
        }
        source = e.source();
    }
    false
}

#[tokio::test]
async fn a_message_arrives_verbatim_with_its_envelope_and_encoded_japanese_subject() {
    let sink = SmtpSink::start().await;
    transport(&sink)
        .send(message("当番 <oncall@example.test>", SUBJECT, BODY))
        .await
        .expect("the sink accepts the message");

    let received = sink.wait_for(1).await;
    assert_eq!(received.len(), 1);
    let mail = &received[0];
    assert_eq!(mail.mail_from, "noreply@opsledger.test");
    assert_eq!(mail.rcpt_to, vec!["oncall@example.test".to_owned()]);

    let raw = std::str::from_utf8(&mail.raw).expect("lettre sends 7-bit headers");
    let subject = header(raw, "Subject").expect("a Subject header");
    assert!(
        subject.to_ascii_lowercase().contains("=?utf-8?"),
        "the subject is RFC 2047 encoded: {subject}"
    );
    assert!(subject.is_ascii(), "no raw UTF-8 in the header: {subject}");
    assert_eq!(decode_header(&subject), SUBJECT);
    let to = header(raw, "To").expect("a To header");
    assert!(to.contains("<oncall@example.test>"), "{to}");
    assert_eq!(decode_header(&to), "当番 <oncall@example.test>");
    assert_eq!(decode_body(raw), BODY);
}

#[tokio::test]
async fn a_stopped_sink_refuses_connections_and_a_restarted_one_keeps_the_earlier_messages() {
    let mut sink = SmtpSink::start().await;
    let mailer = transport(&sink);
    mailer
        .send(message("first@example.test", "前", "一通目\r\n"))
        .await
        .expect("the sink accepts the first message");

    sink.stop().await;
    let err = mailer
        .send(message("lost@example.test", "停止中", "届かない\r\n"))
        .await
        .expect_err("nothing listens while the sink is stopped");
    assert!(
        is_connection_refused(&err),
        "connection refused expected: {err:?}"
    );

    sink.restart().await;
    mailer
        .send(message("second@example.test", "後", "二通目\r\n"))
        .await
        .expect("the restarted sink accepts the second message");

    let received = sink.messages();
    let rcpts: Vec<&str> = received.iter().map(|m| m.rcpt_to[0].as_str()).collect();
    assert_eq!(rcpts, ["first@example.test", "second@example.test"]);
    assert_eq!(
        decode_header(&header(&received[1].text(), "Subject").unwrap()),
        "後"
    );
}
