//! The SMTP sink of the test harness: a real SMTP server on loopback that
//! keeps each message byte for byte, so tests of e-mail notices can check
//! encoded headers and transfer encodings, and can stop and restart it to
//! see what happens when the mail server is down.

use std::error::Error as _;

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

    assert!(
        mail.raw.is_ascii(),
        "lettre sends 7-bit headers and an encoded body"
    );
    let subject = mail.header("Subject").expect("a Subject header");
    assert!(
        subject.to_ascii_lowercase().contains("=?utf-8?"),
        "the subject is RFC 2047 encoded: {subject}"
    );
    assert!(subject.is_ascii(), "no raw UTF-8 in the header: {subject}");
    assert_eq!(mail.subject(), SUBJECT);
    let to = mail.header("To").expect("a To header");
    assert!(to.contains("<oncall@example.test>"), "{to}");
    assert_eq!(
        mail.decoded_header("To").unwrap(),
        "当番 <oncall@example.test>"
    );
    assert_eq!(mail.body(), BODY);
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
    assert_eq!(received[1].subject(), "後");
}
