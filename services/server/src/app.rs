//! The running service: HTTP server plus projection workers, sharing one pool
//! and one committer.

use std::net::TcpListener;

use actix_http::error::DispatchError;
use actix_http::{HttpService, KeepAlive, Protocol};
use actix_service::{fn_service, map_config, IntoServiceFactory, ServiceFactoryExt};
use actix_web::dev::AppConfig;
use actix_web::middleware::from_fn;
use actix_web::{web, App};
use opsledger_api::tenants::TenantDirectory;
use opsledger_api::wire::ProblemIo;
use opsledger_api::AppState;
use opsledger_store::{Committer, StoreError};
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::telemetry;

/// How long a client may take to send a request's head: `HttpServer`'s default.
const CLIENT_REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// How long a closing connection may take to shut down: `HttpServer`'s default.
const CLIENT_DISCONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("database")]
    Store(#[from] StoreError),
    #[error("cannot listen")]
    Io(#[from] std::io::Error),
}

pub struct Application {
    port: u16,
    server: actix_web::dev::Server,
    workers: Vec<JoinHandle<()>>,
    pub state: web::Data<AppState>,
}

impl Application {
    /// Migrates, starts the workers and binds the HTTP server (not yet serving).
    pub async fn build(config: &Config) -> Result<Application, StartError> {
        let listener = TcpListener::bind(&config.bind)?;
        Application::build_on(config, listener).await
    }

    pub async fn build_on(
        config: &Config,
        listener: TcpListener,
    ) -> Result<Application, StartError> {
        let db = config.db().map_err(StartError::Config)?;
        let applied = opsledger_store::migrate::migrate(&db).await?;
        for m in &applied {
            tracing::info!(migration = %m, "applied migration");
        }
        if config.jwt_secret == crate::config::DEV_JWT_SECRET {
            tracing::warn!(
                "using the development JWT secret: set OPSLEDGER_JWT_SECRET in production"
            );
        }
        let audit_key = config
            .audit_key
            .as_deref()
            .map(opsledger_store::audit::LogKey::parse)
            .transpose()
            .map_err(|e| StartError::Config(format!("OPSLEDGER_AUDIT_KEY_FILE: {e}")))?;
        if audit_key.is_none() {
            tracing::warn!(
                "OPSLEDGER_AUDIT_KEY_FILE is not set: the transparency log grows, but no checkpoint is signed (`opsledger keygen` makes a key)"
            );
        }
        let pool = opsledger_store::connect(&db)?;
        let committer = Committer::start(pool.clone(), config.committers);
        let projections = opsledger_store::projections();
        let interests = opsledger_store::projection::interests(&projections);
        let workers = projections
            .iter()
            .zip(interests)
            .filter(|(p, _)| !p.inline())
            .map(|(p, interest)| {
                tokio::spawn(opsledger_store::projection::follow(
                    pool.clone(),
                    p.clone(),
                    committer.subscribe(),
                    config.poll_interval,
                    interest,
                ))
            })
            .collect();
        let state = web::Data::new(AppState {
            pool,
            committer,
            auth: config.auth(),
            tenants: TenantDirectory::default(),
            projections,
            ingest_cache: Default::default(),
            projection_stall_after: config.projection_stall_after,
            audit_key: audit_key.map(std::sync::Arc::new),
            feed_heartbeat: config.feed_heartbeat,
            feed_poll: config.poll_interval,
        });
        let mut workers: Vec<JoinHandle<()>> = workers;
        workers.push(tokio::spawn(expiry_worker(
            state.clone(),
            config.expiry_interval,
            config.alert_stale_after,
        )));
        workers.push(tokio::spawn(escalation_worker(
            state.clone(),
            config.timer_interval,
        )));
        workers.push(tokio::spawn(monthly_worker(
            state.clone(),
            config.monthly_interval,
        )));
        if state.audit_key.is_some() {
            workers.push(tokio::spawn(checkpoint_worker(
                state.clone(),
                config.checkpoint_interval,
            )));
        }
        match &config.smtp {
            Some(smtp) => {
                let mailer = crate::mail::Mailer::new(smtp).map_err(StartError::Config)?;
                workers.push(tokio::spawn(mail_worker(
                    state.clone(),
                    mailer,
                    config.timer_interval,
                )));
            }
            None => tracing::warn!(
                "OPSLEDGER_SMTP_HOST is not set: notifications wait in the outbox until it is"
            ),
        }
        let port = listener.local_addr()?.port();
        let shared = state.clone();
        // actix-web's `HttpServer`, but on sockets wrapped in `ProblemIo`, so
        // that a request actix-http cannot parse is answered with a problem
        // too (see `api::wire`); its settings are `HttpServer`'s defaults.
        let server = actix_server::Server::build()
            .workers(config.http_workers)
            .listen("opsledger-http", listener, move || {
                let shared = shared.clone();
                let app = move || {
                    let app = App::new()
                        .app_data(shared.clone())
                        .wrap(from_fn(opsledger_api::input::input_middleware))
                        .wrap(from_fn(telemetry::access_log))
                        .wrap(from_fn(opsledger_api::problem::problem_middleware))
                        .configure(opsledger_api::configure)
                        .configure(opsledger_console::configure)
                        .default_service(web::to(opsledger_api::not_found));
                    // Tests only: every answer checked against the document.
                    #[cfg(feature = "conformance")]
                    let app = app.wrap(from_fn(opsledger_api::contract::conformance::check));
                    app
                };
                let http = HttpService::build()
                    .keep_alive(KeepAlive::default())
                    .client_request_timeout(CLIENT_REQUEST_TIMEOUT)
                    .client_disconnect_timeout(CLIENT_DISCONNECT_TIMEOUT)
                    .finish(map_config(
                        app()
                            .into_factory()
                            .map_err(|e: actix_web::Error| e.error_response()),
                        |_| AppConfig::default(),
                    ));
                fn_service(|io: actix_rt::net::TcpStream| async move {
                    let peer = io.peer_addr().ok();
                    Ok::<_, DispatchError>((ProblemIo::new(io), Protocol::Http1, peer))
                })
                .and_then(http)
            })?
            .run();
        Ok(Application {
            port,
            server,
            workers,
            state,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until the process is asked to stop (SIGINT, SIGTERM).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        for w in self.workers {
            w.abort();
        }
        result
    }
}

/// Closes alerts their sources stopped refreshing (SPEC §5), every `interval`.
async fn expiry_worker(
    state: web::Data<AppState>,
    interval: std::time::Duration,
    stale_after: std::time::Duration,
) {
    let stale_after =
        chrono::Duration::from_std(stale_after).unwrap_or(chrono::Duration::hours(12));
    loop {
        tokio::time::sleep(interval).await;
        match opsledger_app::ingest::expire_stale(state.ingestion(), stale_after).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                expired = n,
                "closed alerts their sources stopped refreshing"
            ),
            Err(e) => tracing::warn!(error = %e, "alert expiry pass failed"),
        }
    }
}

/// Fires due escalation steps (SPEC §5), every `interval`.
async fn escalation_worker(state: web::Data<AppState>, interval: std::time::Duration) {
    loop {
        tokio::time::sleep(interval).await;
        match opsledger_app::escalation::fire_due(state.ledger()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(steps = n, "escalation steps settled"),
            Err(e) => tracing::warn!(error = %e, "escalation pass failed"),
        }
    }
}

/// Requests the monthly reports due (SPEC §6), every `interval`.
async fn monthly_worker(state: web::Data<AppState>, interval: std::time::Duration) {
    loop {
        tokio::time::sleep(interval).await;
        match opsledger_app::reports::mail_monthly_due(state.ledger(), chrono::Utc::now()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(reports = n, "monthly reports requested"),
            Err(e) => tracing::warn!(error = %e, "monthly report pass failed"),
        }
    }
}

/// Signs the heads of the tenants' trees that grew (SPEC §3.9), every
/// `interval`; refuses, loudly, any head inconsistent with the last one.
async fn checkpoint_worker(state: web::Data<AppState>, interval: std::time::Duration) {
    let Some(key) = state.audit_key.clone() else {
        return;
    };
    loop {
        tokio::time::sleep(interval).await;
        match opsledger_store::audit::sign_due(&state.pool, &key).await {
            Ok(round) if round.signed.is_empty() => {}
            Ok(round) => tracing::debug!(checkpoints = round.signed.len(), "checkpoints signed"),
            Err(e) => tracing::warn!(error = %e, "checkpoint signing failed"),
        }
    }
}

/// Sends due notifications (SPEC §9), every `interval`.
async fn mail_worker(
    state: web::Data<AppState>,
    mailer: crate::mail::Mailer,
    interval: std::time::Duration,
) {
    loop {
        tokio::time::sleep(interval).await;
        if let Err(e) = crate::mail::send_due(&state, &mailer).await {
            tracing::warn!(error = %e, "notification pass failed");
        }
    }
}
