//! `opsledger`: serve, migrate, rebuild, verify, token, tenant, openapi.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use opsledger_domain::access::Role;
use opsledger_server::{telemetry, Application, Config};
use uuid::Uuid;

// Buffers are allocated on the HTTP workers and freed on the committer's
// threads (and back) thousands of times a second; glibc's allocator spends a
// tenth of the service's CPU on that under load, mimalloc much less.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "opsledger",
    version,
    about = "Event-sourced incident and change management"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Migrate, then serve HTTP and run the background workers.
    Serve,
    /// Apply pending migrations from schema/ and exit.
    Migrate,
    /// Rebuild projections from position 0.
    Rebuild {
        /// Only this projection (default: all).
        #[arg(long)]
        projection: Option<String>,
    },
    /// Recompute the hash chains; exit 1 naming the first event that does not match.
    Verify {
        #[arg(long)]
        tenant: Option<Uuid>,
    },
    /// Mint a development JWT signed with OPSLEDGER_JWT_SECRET (HS256; a
    /// service configured with public keys refuses it).
    Token {
        #[arg(long)]
        tenant: Uuid,
        #[arg(long, default_value = "dev")]
        subject: String,
        /// Repeat for several roles: operator, maintainer, approver, client, auditor, admin, integration.
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        #[arg(long)]
        client_id: Option<Uuid>,
        /// Seconds until the token expires; 3600 is an hour.
        #[arg(long, default_value_t = 3600)]
        ttl_s: u64,
    },
    /// Write the OpenAPI document generated from the route table
    /// (`openapi/openapi.json` is its committed copy; a test fails when the
    /// copy is stale). Run it after changing a route, a body type or a role.
    Openapi {
        /// Where to write it; `-` for standard output.
        #[arg(long, default_value = "openapi/openapi.json")]
        out: std::path::PathBuf,
    },
    /// Make the transparency log's signing key: writes the key file (the
    /// private key, then the verifier key) for OPSLEDGER_AUDIT_KEY_FILE and
    /// prints the verifier key, which auditors and clients check
    /// checkpoints with.
    Keygen {
        /// The log's name: it names the key and starts every checkpoint's
        /// origin line (`NAME/tenants/TENANT`). A host name of yours, say.
        #[arg(long, default_value = "opsledger")]
        name: String,
        /// Where to write the key file; refuses to overwrite one.
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// The transparency log, offline.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Tenants.
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check an export (GET /audit/export) with no database: every chain
    /// link, the leaves' order, the Merkle root against the signed
    /// checkpoint, its signature, and, with --since, that the log of an older
    /// checkpoint is a prefix of this one. Exit 1 naming the first failure.
    VerifyExport {
        /// The export, JSON Lines.
        file: std::path::PathBuf,
        /// The log's verifier key (GET /audit/key, or what `keygen` printed),
        /// or a key file of `keygen`.
        #[arg(long)]
        key: std::path::PathBuf,
        /// An older signed checkpoint (GET /audit/checkpoint?format=note) that
        /// this export must extend.
        #[arg(long)]
        since: Option<std::path::PathBuf>,
    },
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Register a tenant and print its id. Refuses a name another tenant has
    /// (ignoring case and surrounding space).
    Add {
        #[arg(long)]
        name: String,
        #[arg(long)]
        id: Option<Uuid>,
        /// The IANA time zone of its clients' calendar periods, unless a
        /// client names its own (default UTC).
        #[arg(long)]
        time_zone: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Traces are the service's: the other commands only log. Set up outside
    // the runtime, and shut down (exporting what is left) after it is gone.
    let traces = match &cli.command {
        Command::Serve => telemetry::TraceConfig::from_env(),
        _ => Ok(None),
    };
    let telemetry = match traces.and_then(|t| telemetry::init(t.as_ref())) {
        Ok(telemetry) => telemetry,
        Err(e) => return failed(e.into()),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return failed(e.into()),
    };
    let code = runtime.block_on(run(cli.command)).unwrap_or_else(failed);
    drop(runtime);
    telemetry.shutdown();
    code
}

/// Says what went wrong, with its causes; exit 1.
fn failed(e: BoxError) -> ExitCode {
    eprintln!("opsledger: {e}");
    let mut source = std::error::Error::source(e.as_ref());
    while let Some(s) = source {
        eprintln!("  caused by: {s}");
        source = s.source();
    }
    ExitCode::FAILURE
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// `opsledger audit verify-export`: reads the export a line at a time.
fn verify_export(
    file: &std::path::Path,
    key: &std::path::Path,
    since: Option<&std::path::Path>,
) -> Result<ExitCode, BoxError> {
    use std::io::BufRead;
    let read = |path: &std::path::Path| {
        std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    };
    // A verifier key is one line; a key file of `keygen` has it second.
    let key_text = read(key)?;
    let verifier = key_text
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .ok_or_else(|| format!("{} holds no key", key.display()))?
        .to_owned();
    let since = since.map(read).transpose()?;
    let failed = |e: opsledger_domain::audit::ExportFailure| {
        eprintln!("verify-export: {e}");
        println!("{}", serde_json::json!({ "ok": false, "first_failure": e }));
        ExitCode::from(1)
    };
    let mut check = match opsledger_domain::audit::ExportCheck::new(&verifier, since.as_deref()) {
        Ok(check) => check,
        Err(e) => return Ok(failed(e)),
    };
    let reader = std::io::BufReader::new(
        std::fs::File::open(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?,
    );
    for line in reader.lines() {
        let line = line?;
        if line.is_empty() {
            continue;
        }
        if let Err(e) = check.line(&line) {
            return Ok(failed(e));
        }
    }
    match check.finish() {
        Ok(verified) => {
            println!(
                "{}",
                serde_json::json!({ "ok": true, "verified": verified })
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Ok(failed(e)),
    }
}

/// Creates `path` readable by its owner only; an existing file is kept.
fn write_new_private(path: &std::path::Path, text: &str) -> Result<(), BoxError> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    file.write_all(text.as_bytes())?;
    Ok(())
}

/// Projections `opsledger rebuild` rebuilds at once (P4, SPEC §11).
const REBUILD_PARALLEL: usize = 3;

async fn run(command: Command) -> Result<ExitCode, BoxError> {
    match command {
        Command::Token {
            tenant,
            subject,
            roles,
            client_id,
            ttl_s,
        } => {
            let roles = roles
                .iter()
                .map(|r| Role::parse(r).ok_or_else(|| format!("unknown role {r:?}")))
                .collect::<Result<Vec<_>, _>>()?;
            let auth = opsledger_server::config::auth_from_env();
            println!("{}", auth.mint(tenant, &subject, &roles, client_id, ttl_s));
            for name in ["OPSLEDGER_JWT_PUBLIC_KEY_FILE", "OPSLEDGER_JWT_JWKS_FILE"] {
                if std::env::var_os(name).is_some_and(|v| !v.is_empty()) {
                    eprintln!(
                        "note: {name} is set, and a service with it refuses this HS256 development token"
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Openapi { out } => {
            let text = opsledger_api::contract::document_text();
            if out.as_os_str() == "-" {
                print!("{text}");
            } else {
                std::fs::write(&out, text)?;
                eprintln!("wrote {}", out.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Keygen { name, out } => {
            if !signed_note::is_key_name_valid(&name) {
                return Err(format!("{name:?} cannot name a key: no spaces or '+'").into());
            }
            let (private, verifier) = signed_note::generate_key(&mut rand_core::OsRng, &name);
            write_new_private(&out, &format!("{private}\n{verifier}\n"))?;
            println!("{verifier}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit {
            command: AuditCommand::VerifyExport { file, key, since },
        } => verify_export(&file, &key, since.as_deref()),
        command => {
            let config = Config::from_env()?;
            let db = config.db()?;
            match command {
                Command::Serve => {
                    let app = Application::build(&config).await?;
                    tracing::info!(bind = %config.bind, port = app.port(), "serving");
                    app.run_until_stopped().await?;
                }
                Command::Migrate => {
                    for m in opsledger_store::migrate::migrate(&db).await? {
                        println!("applied {m}");
                    }
                }
                Command::Rebuild { projection } => {
                    opsledger_store::migrate::migrate(&db).await?;
                    let pool = opsledger_store::connect(&db)?;
                    let chosen: Vec<_> = opsledger_store::projections()
                        .into_iter()
                        .filter(|p| projection.as_deref().is_none_or(|n| n == p.name()))
                        .collect();
                    if chosen.is_empty() {
                        return Err(format!(
                            "no projection named {:?}",
                            projection.unwrap_or_default()
                        )
                        .into());
                    }
                    // Several at once, each after those it reads: the
                    // alerts read model alone is most of a large log.
                    let rebuilt =
                        opsledger_store::projection::rebuild_all(&pool, &chosen, REBUILD_PARALLEL)
                            .await?;
                    for r in rebuilt {
                        let p = chosen
                            .iter()
                            .find(|p| p.name() == r.name)
                            .expect("rebuilt what was chosen");
                        let started = std::time::Instant::now();
                        opsledger_store::projection::settle(&db, p.as_ref()).await?;
                        println!(
                            "rebuilt {} from {} events in {:.2?} (vacuumed and analyzed in {:.2?})",
                            r.name,
                            r.replayed,
                            r.took,
                            started.elapsed()
                        );
                    }
                }
                Command::Verify { tenant } => {
                    let pool = opsledger_store::connect(&db)?;
                    let client = pool.get().await?;
                    let report = opsledger_store::verify::verify(&client, tenant).await?;
                    println!("{}", serde_json::to_string_pretty(&report)?);
                    if let Some(bad) = report.first_mismatch {
                        eprintln!(
                            "verify: event at position {} ({} v{}) of tenant {} does not match: {}",
                            bad.position,
                            bad.stream_id,
                            bad.stream_version,
                            bad.tenant_id,
                            bad.reason
                        );
                        return Ok(ExitCode::from(1));
                    }
                }
                Command::Tenant {
                    command:
                        TenantCommand::Add {
                            name,
                            id,
                            time_zone,
                        },
                } => {
                    opsledger_store::migrate::migrate(&db).await?;
                    let pool = opsledger_store::connect(&db)?;
                    let id = id.unwrap_or_else(Uuid::now_v7);
                    opsledger_server::commands::add_tenant(
                        &pool,
                        id,
                        &name,
                        time_zone.as_deref(),
                        "cli",
                    )
                    .await?;
                    println!("{id}");
                }
                Command::Token { .. }
                | Command::Openapi { .. }
                | Command::Keygen { .. }
                | Command::Audit { .. } => {
                    unreachable!("handled above")
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
