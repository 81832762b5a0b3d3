//! Configuration from environment variables only, with defaults that suit a
//! developer's machine.

use std::time::Duration;

use opsledger_store::DbConfig;

/// The development secret: refused nowhere, but logged as a warning so
/// nobody runs production with it.
pub const DEV_JWT_SECRET: &str = "opsledger-development-secret-do-not-use-in-production";

pub const EXPIRY_INTERVAL_DEFAULT_MS: u64 = 30_000;
pub const ALERT_STALE_DEFAULT_S: u64 = 3 * 4 * 3600;
/// A healthy follower is under a second behind (SPEC P2: 100 ms); a minute
/// leaves room for a rebuild's lock or a long transaction elsewhere in the
/// cluster before anyone is told.
pub const PROJECTION_STALL_DEFAULT_S: u64 = 60;
/// Ten minutes: a monthly report mailed within minutes of midnight is as
/// good as one mailed at midnight, and a pass reads every subscription.
pub const MONTHLY_INTERVAL_DEFAULT_MS: u64 = 600_000;

#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: String,
    pub bind: String,
    pub jwt_secret: String,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    /// Public keys that verify tokens instead of `jwt_secret` (SPEC §8):
    /// `OPSLEDGER_JWT_PUBLIC_KEY_FILE` or `OPSLEDGER_JWT_JWKS_FILE`, read
    /// (and checked) when the configuration is.
    pub jwt_keys: Option<opsledger_api::auth::Keys>,
    pub poll_interval: Duration,
    pub pool_size: usize,
    pub committers: usize,
    pub http_workers: usize,
    /// How often the expiry worker looks for alerts nobody refreshes.
    pub expiry_interval: Duration,
    /// A firing alert not refreshed for this long is closed as expired:
    /// three times Alertmanager's default repeat interval (4 h).
    pub alert_stale_after: Duration,
    /// How often the escalation and notification workers look for due work.
    pub timer_interval: Duration,
    /// Where mail goes; `None` keeps notifications waiting in the outbox.
    pub smtp: Option<crate::mail::SmtpConfig>,
    /// A projection whose oldest unapplied event is older than this is
    /// reported stalled (`/readyz`, `/metrics`).
    pub projection_stall_after: Duration,
    /// How often the monthly mailer looks for reports due.
    pub monthly_interval: Duration,
    /// The transparency log's signing key (a key file's text, see
    /// `opsledger keygen`); without one no checkpoint is signed.
    pub audit_key: Option<String>,
    /// How often the signer signs the heads of trees that grew.
    pub checkpoint_interval: Duration,
    /// How long `/events/stream` stays silent before a heartbeat comment.
    pub feed_heartbeat: Duration,
    /// How long a stop (SIGTERM, SIGINT) waits for requests in flight and
    /// for the workers to reach a safe point before it ends them.
    pub shutdown_timeout: Duration,
    /// How often the probe worker looks for due probes.
    pub probe_poll_interval: Duration,
    /// Probe checks one instance runs at once.
    pub probe_concurrency: usize,
    /// The shortest probe interval the API accepts (10 s; tests lower it).
    pub probe_interval_min_s: u32,
    /// Root certificates (PEM) https probes trust beside the system's:
    /// `OPSLEDGER_PROBE_CA_FILE`, read (and checked) with the configuration.
    pub probe_ca_pem: Option<Vec<u8>>,
    /// How often the heartbeat worker looks for missed runs.
    pub heartbeat_poll_interval: Duration,
    /// How often each threshold rule is evaluated (the worker looks that
    /// often too).
    pub threshold_poll_interval: Duration,
    /// How often each backup schedule is checked against the work log.
    pub backup_poll_interval: Duration,
    /// The shortest backup period the API accepts (an hour; tests lower it).
    pub backup_period_min_s: u32,
}

/// Five seconds: a threshold rule fires within seconds of its condition
/// having held for its `for_s`, and a pass reads each rule's samples.
pub const THRESHOLD_POLL_DEFAULT_MS: u64 = 5_000;

/// A second: a probe is checked within a second of being due.
pub const PROBE_POLL_DEFAULT_MS: u64 = 1_000;
/// Five seconds: a missed run is recorded within seconds of its
/// expected-by time, which already includes a grace of the user's choosing.
pub const HEARTBEAT_POLL_DEFAULT_MS: u64 = 5_000;
/// Checks run at once per instance: mostly waiting on the network, so many
/// fit, but a bound keeps a thousand due probes from opening a thousand
/// sockets at once.
pub const PROBE_CONCURRENCY_DEFAULT: usize = 32;
/// Ten seconds: a backup recorded (or verified) resolves its schedule's
/// alert within about that, and a check is three index look-ups.
pub const BACKUP_POLL_DEFAULT_MS: u64 = 10_000;

/// Under the idle timeouts of common proxies (often 30 or 60 s).
pub const FEED_HEARTBEAT_DEFAULT_MS: u64 = 15_000;
/// A stop's bound: actix-web's own default for requests in flight.
pub const SHUTDOWN_TIMEOUT_DEFAULT_S: u64 = 30;

/// A few seconds: a checkpoint a client's mail carries is this fresh.
pub const CHECKPOINT_INTERVAL_DEFAULT_MS: u64 = 5_000;

/// The key file named by `OPSLEDGER_AUDIT_KEY_FILE`, read.
fn audit_key_from_env() -> Result<Option<String>, String> {
    let Some(path) = var("OPSLEDGER_AUDIT_KEY_FILE") else {
        return Ok(None);
    };
    std::fs::read_to_string(&path)
        .map(Some)
        .map_err(|e| format!("OPSLEDGER_AUDIT_KEY_FILE={path:?} cannot be read: {e}"))
}

/// `OPSLEDGER_PROBE_CA_FILE`: an internal CA's certificates, refused at
/// start when they are not PEM certificates (rather than at the first probe).
fn probe_ca_from_env() -> Result<Option<Vec<u8>>, String> {
    let Some(path) = var("OPSLEDGER_PROBE_CA_FILE") else {
        return Ok(None);
    };
    let pem = std::fs::read(&path)
        .map_err(|e| format!("OPSLEDGER_PROBE_CA_FILE={path:?} cannot be read: {e}"))?;
    match reqwest::Certificate::from_pem_bundle(&pem) {
        Ok(certs) if !certs.is_empty() => Ok(Some(pem)),
        Ok(_) => Err(format!(
            "OPSLEDGER_PROBE_CA_FILE={path:?} holds no certificate"
        )),
        Err(e) => Err(format!(
            "OPSLEDGER_PROBE_CA_FILE={path:?} is not PEM certificates: {e}"
        )),
    }
}

const TIMER_INTERVAL_DEFAULT_MS: u64 = 1_000;

/// Mail settings: `OPSLEDGER_SMTP_HOST` turns sending on.
fn smtp_from_env() -> Result<Option<crate::mail::SmtpConfig>, String> {
    use crate::mail::{SmtpConfig, TlsMode};
    let Some(host) = var("OPSLEDGER_SMTP_HOST") else {
        return Ok(None);
    };
    let tls_raw = var("OPSLEDGER_SMTP_TLS").unwrap_or_else(|| "starttls".into());
    let tls = TlsMode::parse(&tls_raw).ok_or_else(|| {
        format!("OPSLEDGER_SMTP_TLS={tls_raw:?} is not valid (none, starttls, tls)")
    })?;
    let default_port = match tls {
        TlsMode::None => 25,
        TlsMode::StartTls => 587,
        TlsMode::Tls => 465,
    };
    Ok(Some(SmtpConfig {
        host,
        port: parsed("OPSLEDGER_SMTP_PORT", default_port)?,
        tls,
        username: var("OPSLEDGER_SMTP_USERNAME"),
        password: var("OPSLEDGER_SMTP_PASSWORD"),
        from: var("OPSLEDGER_SMTP_FROM")
            .unwrap_or_else(|| "opsledger <opsledger@localhost>".into()),
        timeout: Duration::from_millis(parsed("OPSLEDGER_SMTP_TIMEOUT_MS", 10_000u64)?),
        backoff: opsledger_domain::notification::Backoff {
            first: chrono::Duration::milliseconds(parsed(
                "OPSLEDGER_SMTP_RETRY_FIRST_MS",
                5_000i64,
            )?),
            max: chrono::Duration::milliseconds(parsed("OPSLEDGER_SMTP_RETRY_MAX_MS", 900_000i64)?),
            attempts_max: parsed("OPSLEDGER_SMTP_ATTEMPTS_MAX", 12u32)?,
        },
    }))
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn parsed<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String> {
    match var(name) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| format!("{name}={v:?} is not valid")),
    }
}

/// The token settings alone, for the `token` command, which needs no database.
pub fn auth_from_env() -> opsledger_api::auth::AuthConfig {
    let (secret, issuer, audience) = jwt_from_env();
    opsledger_api::auth::AuthConfig::hs256(secret.as_bytes(), &issuer, &audience)
}

/// The production keys, if any: a PEM public key or a JWKS file (not
/// both). `get` reads a variable (the environment, or a test's map).
pub fn jwt_keys_from(
    get: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<opsledger_api::auth::Keys>, String> {
    use opsledger_api::auth::{
        key_algorithm, Keys, JWKS_CHECK_INTERVAL_DEFAULT_MS, KEY_ALGORITHMS,
    };
    let pem_path = get("OPSLEDGER_JWT_PUBLIC_KEY_FILE");
    let jwks_path = get("OPSLEDGER_JWT_JWKS_FILE");
    let algorithm = get("OPSLEDGER_JWT_ALGORITHM")
        .map(|name| {
            key_algorithm(name.trim()).ok_or_else(|| {
                format!("OPSLEDGER_JWT_ALGORITHM={name:?} is not valid ({KEY_ALGORITHMS})")
            })
        })
        .transpose()?;
    match (pem_path, jwks_path) {
        (Some(_), Some(_)) => Err(
            "OPSLEDGER_JWT_PUBLIC_KEY_FILE and OPSLEDGER_JWT_JWKS_FILE are both set; set one"
                .into(),
        ),
        (None, _) if algorithm.is_some() => Err(
            "OPSLEDGER_JWT_ALGORITHM names the algorithm of OPSLEDGER_JWT_PUBLIC_KEY_FILE, which is not set (a JWKS key's own alg decides)"
                .into(),
        ),
        (Some(path), None) => {
            let pem = std::fs::read(&path)
                .map_err(|e| format!("OPSLEDGER_JWT_PUBLIC_KEY_FILE={path:?} cannot be read: {e}"))?;
            Keys::from_pem(&pem, algorithm)
                .map(Some)
                .map_err(|e| format!("OPSLEDGER_JWT_PUBLIC_KEY_FILE={path:?} {e}"))
        }
        (None, Some(path)) => {
            let check_ms = match get("OPSLEDGER_JWT_JWKS_CHECK_MS") {
                None => JWKS_CHECK_INTERVAL_DEFAULT_MS,
                Some(v) => v
                    .trim()
                    .parse()
                    .map_err(|_| format!("OPSLEDGER_JWT_JWKS_CHECK_MS={v:?} is not valid"))?,
            };
            let (keys, left_out) =
                Keys::from_jwks_file(std::path::Path::new(&path), Duration::from_millis(check_ms))
                    .map_err(|e| format!("OPSLEDGER_JWT_JWKS_FILE={path:?} {e}"))?;
            for note in left_out {
                tracing::warn!("OPSLEDGER_JWT_JWKS_FILE: {note}");
            }
            Ok(Some(keys))
        }
        (None, None) => Ok(None),
    }
}

fn jwt_from_env() -> (String, String, String) {
    (
        var("OPSLEDGER_JWT_SECRET").unwrap_or_else(|| DEV_JWT_SECRET.into()),
        var("OPSLEDGER_JWT_ISSUER").unwrap_or_else(|| "opsledger".into()),
        var("OPSLEDGER_JWT_AUDIENCE").unwrap_or_else(|| "opsledger".into()),
    )
}

impl Config {
    pub fn from_env() -> Result<Config, String> {
        let (jwt_secret, jwt_issuer, jwt_audience) = jwt_from_env();
        Ok(Config {
            database_url: var("DATABASE_URL").ok_or(
                "DATABASE_URL is not set (ops/run starts a project-local PostgreSQL and sets it)",
            )?,
            bind: var("OPSLEDGER_BIND").unwrap_or_else(|| "127.0.0.1:8080".into()),
            jwt_secret,
            jwt_issuer,
            jwt_audience,
            jwt_keys: jwt_keys_from(&var)?,
            poll_interval: Duration::from_millis(parsed(
                "OPSLEDGER_POLL_MS",
                opsledger_store::projection::POLL_INTERVAL_DEFAULT.as_millis() as u64,
            )?),
            pool_size: parsed(
                "OPSLEDGER_DB_POOL_SIZE",
                opsledger_store::pool::POOL_SIZE_DEFAULT,
            )?,
            committers: parsed(
                "OPSLEDGER_COMMITTERS",
                opsledger_store::append::COMMITTERS_DEFAULT,
            )?,
            http_workers: parsed(
                "OPSLEDGER_HTTP_WORKERS",
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(2),
            )?,
            expiry_interval: Duration::from_millis(parsed(
                "OPSLEDGER_EXPIRY_INTERVAL_MS",
                EXPIRY_INTERVAL_DEFAULT_MS,
            )?),
            alert_stale_after: Duration::from_secs(parsed(
                "OPSLEDGER_ALERT_STALE_S",
                ALERT_STALE_DEFAULT_S,
            )?),
            timer_interval: Duration::from_millis(parsed(
                "OPSLEDGER_TIMER_INTERVAL_MS",
                TIMER_INTERVAL_DEFAULT_MS,
            )?),
            smtp: smtp_from_env()?,
            projection_stall_after: Duration::from_secs(parsed(
                "OPSLEDGER_PROJECTION_STALL_S",
                PROJECTION_STALL_DEFAULT_S,
            )?),
            monthly_interval: Duration::from_millis(parsed(
                "OPSLEDGER_MONTHLY_INTERVAL_MS",
                MONTHLY_INTERVAL_DEFAULT_MS,
            )?),
            audit_key: audit_key_from_env()?,
            checkpoint_interval: Duration::from_millis(parsed(
                "OPSLEDGER_CHECKPOINT_INTERVAL_MS",
                CHECKPOINT_INTERVAL_DEFAULT_MS,
            )?),
            feed_heartbeat: Duration::from_millis(parsed(
                "OPSLEDGER_FEED_HEARTBEAT_MS",
                FEED_HEARTBEAT_DEFAULT_MS,
            )?),
            shutdown_timeout: Duration::from_secs(parsed(
                "OPSLEDGER_SHUTDOWN_TIMEOUT_S",
                SHUTDOWN_TIMEOUT_DEFAULT_S,
            )?),
            probe_poll_interval: Duration::from_millis(parsed(
                "OPSLEDGER_PROBE_POLL_MS",
                PROBE_POLL_DEFAULT_MS,
            )?),
            probe_concurrency: parsed("OPSLEDGER_PROBE_CONCURRENCY", PROBE_CONCURRENCY_DEFAULT)?,
            probe_interval_min_s: parsed(
                "OPSLEDGER_PROBE_INTERVAL_MIN_S",
                opsledger_domain::probe::INTERVAL_MIN_S,
            )?,
            probe_ca_pem: probe_ca_from_env()?,
            heartbeat_poll_interval: Duration::from_millis(parsed(
                "OPSLEDGER_HEARTBEAT_POLL_MS",
                HEARTBEAT_POLL_DEFAULT_MS,
            )?),
            threshold_poll_interval: Duration::from_millis(parsed(
                "OPSLEDGER_THRESHOLD_POLL_MS",
                THRESHOLD_POLL_DEFAULT_MS,
            )?),
            backup_poll_interval: Duration::from_millis(parsed(
                "OPSLEDGER_BACKUP_POLL_MS",
                BACKUP_POLL_DEFAULT_MS,
            )?),
            backup_period_min_s: parsed(
                "OPSLEDGER_BACKUP_PERIOD_MIN_S",
                opsledger_domain::backup_schedule::PERIOD_MIN_S,
            )?,
        })
    }

    /// A configuration for tests and tools: everything default but the database.
    pub fn for_database(database_url: &str) -> Config {
        Config {
            database_url: database_url.to_owned(),
            bind: "127.0.0.1:0".into(),
            jwt_secret: DEV_JWT_SECRET.into(),
            jwt_issuer: "opsledger".into(),
            jwt_audience: "opsledger".into(),
            jwt_keys: None,
            poll_interval: opsledger_store::projection::POLL_INTERVAL_DEFAULT,
            pool_size: opsledger_store::pool::POOL_SIZE_DEFAULT,
            committers: opsledger_store::append::COMMITTERS_DEFAULT,
            http_workers: 2,
            expiry_interval: Duration::from_millis(EXPIRY_INTERVAL_DEFAULT_MS),
            alert_stale_after: Duration::from_secs(ALERT_STALE_DEFAULT_S),
            timer_interval: Duration::from_millis(TIMER_INTERVAL_DEFAULT_MS),
            smtp: None,
            projection_stall_after: Duration::from_secs(PROJECTION_STALL_DEFAULT_S),
            monthly_interval: Duration::from_millis(MONTHLY_INTERVAL_DEFAULT_MS),
            audit_key: None,
            checkpoint_interval: Duration::from_millis(CHECKPOINT_INTERVAL_DEFAULT_MS),
            feed_heartbeat: Duration::from_millis(FEED_HEARTBEAT_DEFAULT_MS),
            shutdown_timeout: Duration::from_secs(SHUTDOWN_TIMEOUT_DEFAULT_S),
            probe_poll_interval: Duration::from_millis(PROBE_POLL_DEFAULT_MS),
            probe_concurrency: PROBE_CONCURRENCY_DEFAULT,
            probe_interval_min_s: opsledger_domain::probe::INTERVAL_MIN_S,
            probe_ca_pem: None,
            heartbeat_poll_interval: Duration::from_millis(HEARTBEAT_POLL_DEFAULT_MS),
            threshold_poll_interval: Duration::from_millis(THRESHOLD_POLL_DEFAULT_MS),
            backup_poll_interval: Duration::from_millis(BACKUP_POLL_DEFAULT_MS),
            backup_period_min_s: opsledger_domain::backup_schedule::PERIOD_MIN_S,
        }
    }

    pub fn db(&self) -> Result<DbConfig, String> {
        let mut db = DbConfig::parse(&self.database_url)?;
        db.pool_size = self.pool_size;
        Ok(db)
    }

    /// Verifies with `jwt_keys` when set, else with the secret; mints
    /// (development tokens) with the secret either way.
    pub fn auth(&self) -> opsledger_api::auth::AuthConfig {
        let auth = opsledger_api::auth::AuthConfig::hs256(
            self.jwt_secret.as_bytes(),
            &self.jwt_issuer,
            &self.jwt_audience,
        );
        match &self.jwt_keys {
            Some(keys) => auth.verifying_with(keys.clone()),
            None => auth,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::PathBuf;

    use super::jwt_keys_from;

    fn dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("opsledger-config-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// The error for these variables, which must name `variable`.
    fn refused(vars: &[(&str, &str)], variable: &str) -> String {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let e = jwt_keys_from(&|name| map.get(name).cloned()).expect_err("refused");
        assert!(e.contains(variable), "{e}");
        e
    }

    #[test]
    fn bad_key_settings_are_errors_naming_their_variable() {
        let dir = dir();
        let file = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path.to_str().unwrap().to_owned()
        };
        let missing = dir.join("missing.pem");
        let e = refused(
            &[("OPSLEDGER_JWT_PUBLIC_KEY_FILE", missing.to_str().unwrap())],
            "OPSLEDGER_JWT_PUBLIC_KEY_FILE",
        );
        assert!(e.contains("cannot be read"), "{e}");
        let garbage = file(
            "garbage.pem",
            "-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n",
        );
        refused(
            &[("OPSLEDGER_JWT_PUBLIC_KEY_FILE", &garbage)],
            "OPSLEDGER_JWT_PUBLIC_KEY_FILE",
        );
        let e = refused(
            &[("OPSLEDGER_JWT_JWKS_FILE", missing.to_str().unwrap())],
            "OPSLEDGER_JWT_JWKS_FILE",
        );
        assert!(e.contains("cannot be read"), "{e}");
        for (name, text, says) in [
            ("truncated.json", "{\"keys\": [", "JWKS"),
            ("empty.json", "{\"keys\": []}", "no RS256"),
            (
                "secret.json",
                r#"{"keys": [{"kty": "oct", "kid": "s", "k": "c2VjcmV0"}]}"#,
                "symmetric",
            ),
            (
                "short-ed.json",
                r#"{"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "e", "x": "AAAA"}]}"#,
                "Ed25519",
            ),
            (
                "bad-ec.json",
                r#"{"keys": [{"kty": "EC", "crv": "P-256", "kid": "e", "x": "AAAA", "y": "AAAA"}]}"#,
                "ES256",
            ),
            (
                "small-rsa.json",
                r#"{"keys": [{"kty": "RSA", "kid": "r", "n": "AQAB", "e": "AQAB"}]}"#,
                "2048",
            ),
        ] {
            let e = refused(
                &[("OPSLEDGER_JWT_JWKS_FILE", &file(name, text))],
                "OPSLEDGER_JWT_JWKS_FILE",
            );
            assert!(e.contains(says), "{name}: {e}");
        }
        let pem = garbage.as_str();
        refused(
            &[
                ("OPSLEDGER_JWT_PUBLIC_KEY_FILE", pem),
                ("OPSLEDGER_JWT_ALGORITHM", "HS256"),
            ],
            "OPSLEDGER_JWT_ALGORITHM",
        );
        refused(
            &[("OPSLEDGER_JWT_ALGORITHM", "EdDSA")],
            "OPSLEDGER_JWT_ALGORITHM",
        );
        refused(
            &[
                ("OPSLEDGER_JWT_PUBLIC_KEY_FILE", pem),
                ("OPSLEDGER_JWT_JWKS_FILE", pem),
            ],
            "both set",
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn no_key_settings_leave_the_secret_verifying() {
        assert!(jwt_keys_from(&|_| None).unwrap().is_none());
    }
}
