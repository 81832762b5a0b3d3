//! The notification sender (SPEC §9), a worker: leases due notifications,
//! sends them over SMTP with lettre, and records each attempt as an event.
//! It lives with the binary, not in `api`: it answers no request.

use chrono::{Duration, Utc};
use lettre::message::{header::ContentType, Mailbox};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use opsledger_api::AppState;
use opsledger_app::run::{self, Prepared, RunError, Target};
use opsledger_domain::notice::RenderedNotice;
use opsledger_domain::notification::{
    Attempted, Backoff, Delivery, Notification, NotificationCommand, Recipient, Status,
};
use opsledger_domain::Metadata;
use opsledger_store::outbox::{self as store_outbox, Leased};
use opsledger_store::StoreError;

/// Why a notification's attempt could not be recorded.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Run(#[from] RunError),
}

/// How long a sender holds a notification: well over one SMTP exchange.
const LEASE: Duration = Duration::seconds(60);
/// Notifications one pass sends at most; the next pass takes the rest.
const SEND_BATCH_MAX: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    None,
    StartTls,
    Tls,
}

impl TlsMode {
    pub fn parse(raw: &str) -> Option<TlsMode> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "none" | "plain" | "off" => Some(TlsMode::None),
            "starttls" => Some(TlsMode::StartTls),
            "tls" | "smtps" | "implicit" => Some(TlsMode::Tls),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub username: Option<String>,
    pub password: Option<String>,
    /// The sender, as `Name <address>` or a bare address.
    pub from: String,
    pub timeout: std::time::Duration,
    pub backoff: Backoff,
}

/// An SMTP client as configured.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    backoff: Backoff,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("from", &self.from)
            .finish_non_exhaustive()
    }
}

impl Mailer {
    pub fn new(config: &SmtpConfig) -> Result<Mailer, String> {
        let from: Mailbox = config
            .from
            .parse()
            .map_err(|e| format!("OPSLEDGER_SMTP_FROM {:?}: {e}", config.from))?;
        let tls = |host: &str| {
            TlsParameters::new(host.to_owned()).map_err(|e| format!("TLS for {host}: {e}"))
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.host)
            .port(config.port)
            .timeout(Some(config.timeout));
        builder = match config.tls {
            TlsMode::None => builder.tls(Tls::None),
            TlsMode::StartTls => builder.tls(Tls::Required(tls(&config.host)?)),
            TlsMode::Tls => builder.tls(Tls::Wrapper(tls(&config.host)?)),
        };
        if let (Some(user), Some(password)) = (&config.username, &config.password) {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        Ok(Mailer {
            transport: builder.build(),
            from,
            backoff: config.backoff,
        })
    }

    async fn send(&self, to: &Recipient, message: &RenderedNotice) -> Result<String, String> {
        let to_box = Mailbox::new(
            Some(to.name.clone()),
            to.email
                .parse()
                .map_err(|e| format!("recipient {}: {e}", to.email))?,
        );
        let builder = Message::builder()
            .from(self.from.clone())
            .to(to_box)
            .subject(message.subject.clone());
        let email = match &message.html {
            // The plain text first, the HTML as its alternative: a reader
            // that shows no HTML still has the summary.
            Some(html) => builder.multipart(lettre::message::MultiPart::alternative_plain_html(
                message.body.clone(),
                html.clone(),
            )),
            None => builder
                .header(ContentType::TEXT_PLAIN)
                .body(message.body.clone()),
        }
        .map_err(|e| format!("building the message: {e}"))?;
        let response = self
            .transport
            .send(email)
            .await
            .map_err(|e| format!("SMTP: {e}"))?;
        Ok(response.message().collect::<Vec<_>>().join(" "))
    }
}

fn sender_meta() -> Metadata {
    Metadata {
        actor: "system:mailer".into(),
        role: "system".into(),
        request_id: None,
        correlation_id: None,
        causation_id: None,
        source: "smtp".into(),
    }
}

/// Sends one leased notification and records what happened, through the
/// one command path: the attempt is decided on the version the mail was
/// sent from (`If-Match`), so an attempt another sender recorded meanwhile
/// (its lease ran out while it was still at it) stands and this one is not
/// recorded twice.
async fn send_one(state: &AppState, mailer: &Mailer, leased: &Leased) -> Result<(), MailError> {
    let ledger = state.ledger();
    let (current, version, _) =
        run::load::<Notification>(ledger, leased.tenant_id, leased.notification_id, None).await?;
    let Some(n) = current else {
        return Ok(());
    };
    if !n.delivery.status.pending() {
        // Settled already; the read model had not caught up.
        let settled = store_outbox::Settled {
            status: n.delivery.status.as_str(),
            attempts: n.delivery.attempts,
            next_attempt_at: None,
            last_error: None,
            sent_at: None,
        };
        store_outbox::settle(&state.pool, leased, &settled, version).await?;
        return Ok(());
    }
    // As the event will keep it (microseconds): the row written at once and
    // the row a rebuild writes must agree.
    let now = chrono::SubsecRound::trunc_subsecs(Utc::now(), 6);
    let result = mailer.send(&n.recipient, &n.message).await;
    let attempt = n.delivery.attempts + 1;
    let span = tracing::Span::current();
    span.record("attempt", attempt);
    span.record("outcome", if result.is_ok() { "sent" } else { "failed" });
    state.metrics.mail_attempted(result.is_ok());
    if let Err(error) = &result {
        tracing::warn!(notification = %leased.notification_id, attempt, %error, "mail not sent");
    }
    let last_error = result.as_ref().err().cloned();
    let asked = run::Asked {
        tenant: leased.tenant_id,
        meta: sender_meta(),
        if_match: Some(version),
        key: None,
    };
    let attempted = NotificationCommand::Attempt(Attempted { result, at: now });
    let backoff = mailer.backoff;
    let ran = run::run::<Notification, _, _, RunError>(
        ledger,
        asked,
        Target::Existing(leased.notification_id),
        attempted,
        async |_| {
            Ok(Prepared {
                context: Some(backoff),
                view: |n: &Notification, _| serde_json::to_value(&n.delivery).unwrap_or_default(),
            })
        },
    )
    .await;
    let (after, recorded) = match ran {
        Ok(run::Ran::Done { body, version, .. }) => (body, version),
        // Another sender recorded an attempt meanwhile: its record stands.
        Err(e) if e.is_conflict() || matches!(e, RunError::Stale { .. }) => return Ok(()),
        Err(e) => return Err(e.into()),
        Ok(run::Ran::Replayed { .. }) => return Ok(()),
    };
    // The answer is the delivery as the attempt left it.
    let Ok(after) = serde_json::from_value::<Delivery>(after) else {
        return Ok(());
    };
    let settled = store_outbox::Settled {
        status: after.status.as_str(),
        attempts: after.attempts,
        next_attempt_at: (after.status == Status::Failed).then_some(after.next_attempt_at),
        last_error: last_error
            .as_deref()
            .filter(|_| after.status != Status::Sent),
        sent_at: (after.status == Status::Sent).then_some(now),
    };
    store_outbox::settle(&state.pool, leased, &settled, recorded).await?;
    Ok(())
}

/// One pass of the sender: every due notification, one lease at a time.
/// Instances may run it at once; a lease is held by one of them. Returns how
/// many it tried.
pub async fn send_due(state: &AppState, mailer: &Mailer) -> Result<usize, MailError> {
    let mut tried = 0;
    while tried < SEND_BATCH_MAX {
        let Some(leased) = store_outbox::lease_next(&state.pool, LEASE).await? else {
            break;
        };
        tried += 1;
        let span = tracing::info_span!(
            target: opsledger_store::SPAN_TARGET,
            "mail attempt",
            tenant = %leased.tenant_id,
            notification = %leased.notification_id,
            attempt = tracing::field::Empty,
            outcome = tracing::field::Empty,
        );
        let sent = tracing::Instrument::instrument(send_one(state, mailer, &leased), span).await;
        if let Err(e) = sent {
            tracing::warn!(notification = %leased.notification_id, error = %e, "notification not recorded; its lease will run out");
        }
    }
    Ok(tried)
}
