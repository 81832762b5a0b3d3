//! The running service: HTTP server plus projection workers, sharing one pool
//! and one committer.

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use actix_http::error::DispatchError;
use actix_http::{HttpService, KeepAlive, Protocol};
use actix_service::{fn_service, map_config, IntoServiceFactory, ServiceFactoryExt};
use actix_web::dev::{AppConfig, Service};
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
    stopping_http: Arc<AtomicBool>,
    server: actix_web::dev::Server,
    /// The projection followers: each batch commits with its checkpoint, so
    /// ending one at any await point loses nothing and does nothing twice.
    followers: Vec<JoinHandle<()>>,
    /// The workers that act outside the database (mail) or on a timer: told
    /// to stop, they finish the pass they are in.
    workers: Vec<JoinHandle<()>>,
    stop: tokio::sync::watch::Sender<bool>,
    shutdown_timeout: std::time::Duration,
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
        match &config.jwt_keys {
            Some(keys) => tracing::info!("tokens are verified with {}", keys.describe()),
            None if config.jwt_secret == crate::config::DEV_JWT_SECRET => tracing::warn!(
                "using the development JWT secret: set OPSLEDGER_JWT_PUBLIC_KEY_FILE or OPSLEDGER_JWT_JWKS_FILE in production"
            ),
            None => {}
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
        let probe_client = crate::probe_check::client(config.probe_ca_pem.as_deref())
            .map_err(|e| StartError::Config(format!("the probes' HTTP client: {e}")))?;
        let pool = opsledger_store::connect(&db)?;
        let committer = Committer::start(pool.clone(), config.committers);
        let projections = opsledger_store::projections();
        let interests = opsledger_store::projection::interests(&projections);
        let (head_moved, head) = tokio::sync::watch::channel(0u64);
        let mut followers: Vec<JoinHandle<()>> = projections
            .iter()
            .zip(interests)
            .filter(|(p, _)| !p.inline())
            .map(|(p, interest)| {
                tokio::spawn(opsledger_store::projection::follow(
                    pool.clone(),
                    p.clone(),
                    committer.subscribe(),
                    head.clone(),
                    config.poll_interval,
                    interest,
                ))
            })
            .collect();
        followers.push(tokio::spawn(opsledger_store::projection::watch_head(
            pool.clone(),
            config.poll_interval,
            head_moved,
        )));
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
            metrics: Default::default(),
            probe_interval_min_s: config.probe_interval_min_s,
            backup_period_min_s: config.backup_period_min_s,
        });
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let mut workers: Vec<JoinHandle<()>> = vec![
            tokio::spawn(expiry_worker(
                state.clone(),
                config.expiry_interval,
                config.alert_stale_after,
                stopping.clone(),
            )),
            tokio::spawn(escalation_worker(
                state.clone(),
                config.timer_interval,
                stopping.clone(),
            )),
            tokio::spawn(probe_worker(
                state.clone(),
                probe_client,
                config.probe_poll_interval,
                config.probe_concurrency,
                stopping.clone(),
            )),
            tokio::spawn(heartbeat_worker(
                state.clone(),
                config.heartbeat_poll_interval,
                stopping.clone(),
            )),
            tokio::spawn(threshold_worker(
                state.clone(),
                config.threshold_poll_interval,
                stopping.clone(),
            )),
            tokio::spawn(backup_worker(
                state.clone(),
                config.backup_poll_interval,
                stopping.clone(),
            )),
            tokio::spawn(monthly_worker(
                state.clone(),
                config.monthly_interval,
                stopping.clone(),
            )),
        ];
        if state.audit_key.is_some() {
            workers.push(tokio::spawn(checkpoint_worker(
                state.clone(),
                config.checkpoint_interval,
                stopping.clone(),
            )));
        }
        match &config.smtp {
            Some(smtp) => {
                let mailer = crate::mail::Mailer::new(smtp).map_err(StartError::Config)?;
                workers.push(tokio::spawn(mail_worker(
                    state.clone(),
                    mailer,
                    config.timer_interval,
                    stopping.clone(),
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
        // Set when the process is asked to stop: from then on a request on a
        // connection kept alive is answered 503 and the connection closed,
        // so the stop does not wait for idle clients to go away.
        let stopping_http = Arc::new(AtomicBool::new(false));
        let refuse = stopping_http.clone();
        let server = actix_server::Server::build()
            .workers(config.http_workers)
            // Signals are ours (`run_until_stopped`), so that requests are
            // refused from the moment of the signal.
            .disable_signals()
            // On a stop: no new connections; requests in flight finish (their
            // appends commit before they are answered), for at most this long.
            .shutdown_timeout(config.shutdown_timeout.as_secs())
            .listen("opsledger-http", listener, move || {
                let shared = shared.clone();
                let refuse = refuse.clone();
                let app = move || {
                    let refuse = refuse.clone();
                    let app = App::new()
                        .app_data(shared.clone())
                        .wrap(from_fn(opsledger_api::input::input_middleware))
                        .wrap(from_fn(telemetry::access_log))
                        .wrap(from_fn(telemetry::request_metrics))
                        .wrap(from_fn(opsledger_api::problem::problem_middleware))
                        .wrap(from_fn(telemetry::request_span))
                        .configure(opsledger_api::configure)
                        .configure(opsledger_console::configure)
                        .default_service(web::to(opsledger_api::not_found));
                    // Tests only: every answer checked against the document.
                    #[cfg(feature = "conformance")]
                    let app = app.wrap(from_fn(opsledger_api::contract::conformance::check));
                    app.wrap_fn(move |req, srv| {
                        let stopping = refuse.load(Ordering::Relaxed);
                        let answer = (!stopping).then(|| srv.call(req));
                        async move {
                            match answer {
                                Some(answer) => answer.await,
                                None => Err(actix_web::error::InternalError::from_response(
                                    "stopping",
                                    stopping_answer(),
                                )
                                .into()),
                            }
                        }
                    })
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
            stopping_http,
            server,
            followers,
            workers,
            stop,
            shutdown_timeout: config.shutdown_timeout,
            state,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until the process is asked to stop (SIGINT, SIGTERM), then
    /// stops in order: no new connections, requests in flight finished (the
    /// HTTP server's graceful stop), the workers told to stop and given the
    /// rest of the bound to finish their pass (a mail being sent is
    /// recorded as sent), the projection followers ended.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let handle = self.server.handle();
        let refuse = self.stopping_http.clone();
        let signals = tokio::spawn(async move {
            stop_signal().await;
            tracing::info!("asked to stop: refusing new requests, finishing those in flight");
            refuse.store(true, Ordering::Relaxed);
            handle.stop(true).await;
        });
        let result = self.server.await;
        signals.abort();
        tracing::info!("stopping: requests finished, workers finishing their pass");
        let _ = self.stop.send(true);
        let deadline = tokio::time::Instant::now() + self.shutdown_timeout;
        for mut w in self.workers {
            if tokio::time::timeout_at(deadline, &mut w).await.is_err() {
                tracing::warn!("a worker did not reach a safe point in time and was ended");
                w.abort();
            }
        }
        for f in self.followers {
            f.abort();
        }
        tracing::info!("stopped");
        result
    }
}

/// SIGTERM or SIGINT, whichever comes first.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => std::future::pending::<()>().await,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The answer to a request that arrives while the service stops: 503, come
/// back in a second (to another instance), and this connection closes.
fn stopping_answer() -> actix_web::HttpResponse {
    let status = actix_web::http::StatusCode::SERVICE_UNAVAILABLE;
    let mut res = opsledger_api::problem::problem_response(
        status,
        opsledger_api::problem::problem_body(
            status,
            "stopping",
            "the service is stopping; retry shortly",
        ),
    );
    res.headers_mut().insert(
        actix_web::http::header::RETRY_AFTER,
        actix_web::http::header::HeaderValue::from_static("1"),
    );
    res.head_mut()
        .set_connection_type(actix_web::http::ConnectionType::Close);
    res
}

/// Tells the workers the service is stopping.
type Stopping = tokio::sync::watch::Receiver<bool>;

/// Waits `interval` for a worker's next pass: `false` once the service is
/// stopping (then, or while waiting), so a pass is never begun after the
/// stop and one under way is finished.
async fn next_pass(stopping: &mut Stopping, interval: std::time::Duration) -> bool {
    if *stopping.borrow() {
        return false;
    }
    tokio::select! {
        _ = tokio::time::sleep(interval) => !*stopping.borrow(),
        _ = stopping.changed() => false,
    }
}

/// Closes alerts their sources stopped refreshing (SPEC §5), every `interval`.
async fn expiry_worker(
    state: web::Data<AppState>,
    interval: std::time::Duration,
    stale_after: std::time::Duration,
    mut stopping: Stopping,
) {
    let stale_after =
        chrono::Duration::from_std(stale_after).unwrap_or(chrono::Duration::hours(12));
    while next_pass(&mut stopping, interval).await {
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
async fn escalation_worker(
    state: web::Data<AppState>,
    interval: std::time::Duration,
    mut stopping: Stopping,
) {
    while next_pass(&mut stopping, interval).await {
        match opsledger_app::escalation::fire_due(state.ledger()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(steps = n, "escalation steps settled"),
            Err(e) => tracing::warn!(error = %e, "escalation pass failed"),
        }
    }
}

/// Runs the due probes (SPEC §12), looking every `interval`.
async fn probe_worker(
    state: web::Data<AppState>,
    client: reqwest::Client,
    interval: std::time::Duration,
    concurrency: usize,
    mut stopping: Stopping,
) {
    let client = &client;
    while next_pass(&mut stopping, interval).await {
        let check = |c, timeout| crate::probe_check::check(client, c, timeout);
        match opsledger_app::probes::run_due(state.ingestion(), concurrency, check).await {
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "probe pass failed"),
        }
    }
}

/// Records the heartbeats' missed runs (SPEC §12), looking every `interval`.
async fn heartbeat_worker(
    state: web::Data<AppState>,
    interval: std::time::Duration,
    mut stopping: Stopping,
) {
    while next_pass(&mut stopping, interval).await {
        if let Err(e) = opsledger_app::heartbeats::run_missed(state.ingestion()).await {
            tracing::warn!(error = %e, "heartbeat pass failed");
        }
    }
}

/// Evaluates the threshold rules on pushed samples (SPEC §12): each rule
/// every `interval`, looking that often.
async fn threshold_worker(
    state: web::Data<AppState>,
    interval: std::time::Duration,
    mut stopping: Stopping,
) {
    while next_pass(&mut stopping, interval).await {
        if let Err(e) = opsledger_app::thresholds::evaluate_due(state.ingestion(), interval).await {
            tracing::warn!(error = %e, "threshold pass failed");
        }
    }
}

/// Checks the backup schedules (SPEC §12), each once every `interval`
/// across instances.
async fn backup_worker(
    state: web::Data<AppState>,
    interval: std::time::Duration,
    mut stopping: Stopping,
) {
    while next_pass(&mut stopping, interval).await {
        let now = chrono::Utc::now();
        match opsledger_app::backup_schedules::check_due(state.ingestion(), interval, now).await {
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "backup schedule pass failed"),
        }
    }
}

/// Requests the monthly reports due (SPEC §6), every `interval`.
async fn monthly_worker(
    state: web::Data<AppState>,
    interval: std::time::Duration,
    mut stopping: Stopping,
) {
    while next_pass(&mut stopping, interval).await {
        match opsledger_app::reports::mail_monthly_due(state.ledger(), chrono::Utc::now()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(reports = n, "monthly reports requested"),
            Err(e) => tracing::warn!(error = %e, "monthly report pass failed"),
        }
    }
}

/// Signs the heads of the tenants' trees that grew (SPEC §3.9), every
/// `interval`; refuses, loudly, any head inconsistent with the last one.
async fn checkpoint_worker(
    state: web::Data<AppState>,
    interval: std::time::Duration,
    mut stopping: Stopping,
) {
    let Some(key) = state.audit_key.clone() else {
        return;
    };
    while next_pass(&mut stopping, interval).await {
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
    mut stopping: Stopping,
) {
    while next_pass(&mut stopping, interval).await {
        if let Err(e) = crate::mail::send_due(&state, &mailer).await {
            tracing::warn!(error = %e, "notification pass failed");
        }
    }
}
