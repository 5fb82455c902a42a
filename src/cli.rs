//! Command line: one function per subcommand. Exit codes: 0 success, 1 failure (with a
//! message on stderr), 2 usage errors (clap).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

mod jira;
mod serve;

use crate::config::{MasterKey, Settings, Sources};
use crate::{db, doctor, telemetry};

const DEFAULT_CONFIG: &str = "/etc/filebridge/filebridge.toml";

#[derive(Debug, Parser)]
#[command(
    name = "filebridge",
    version,
    about = "Jira Data Center issue files in your own storage"
)]
pub struct Cli {
    /// Configuration file; optional when the environment supplies everything.
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon (applies pending database migrations first).
    Serve(ServeArgs),
    /// Apply database migrations and exit.
    Migrate,
    /// Check configuration, database, Jira and the service token; exit 1 on a failure.
    Doctor,
    /// Print the version and the database schema version this binary carries.
    Version,
    /// The audit trail: export, verify the hash chain, apply retention.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Talk to Jira: register filebridge's webhook.
    Jira {
        #[command(subcommand)]
        command: jira::JiraCommand,
    },
    /// Encryption keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Delete everything filebridge stored in PostgreSQL (for uninstalling). Files in the
    /// storages are not touched.
    Purge {
        /// Required: confirms that everything is to go.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Write the audit trail to standard output, oldest first.
    Export {
        #[arg(long, value_enum)]
        format: ExportArg,
        /// Only events at or after this RFC 3339 time.
        #[arg(long, value_name = "RFC3339")]
        since: Option<String>,
        /// Only events before this RFC 3339 time.
        #[arg(long, value_name = "RFC3339")]
        until: Option<String>,
        /// Only events by this Jira user (key or name).
        #[arg(long)]
        actor: Option<String>,
    },
    /// Check the hash chain; exit 1 naming the first row that was altered or removed.
    Verify,
    /// Delete events older than N days (the deletion itself is recorded).
    Purge {
        #[arg(long, value_name = "DAYS")]
        older_than_days: u32,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Re-encrypt every stored secret under a new master key, in one transaction. Stop every
    /// filebridge instance first; afterwards point security.master_key_file at the new key
    /// and start them again (sessions signed with the old key end).
    Rotate {
        /// A file holding the new key: 32 random bytes in base64.
        #[arg(long, value_name = "PATH")]
        new_key_file: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ExportArg {
    Csv,
    Jsonl,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Do not apply pending migrations (an operator runs `filebridge migrate` instead).
    #[arg(long)]
    no_migrate: bool,
    /// Overrides server.listen.
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Overrides log.level.
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
    /// Overrides log.format (json or pretty).
    #[arg(long, value_name = "FORMAT")]
    log_format: Option<String>,
}

pub fn run() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Version = cli.command {
        println!(
            "filebridge {} (database schema {})",
            env!("CARGO_PKG_VERSION"),
            db::latest_known()
        );
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(format!("cannot start the async runtime: {e}")),
    };
    runtime.block_on(dispatch(cli))
}

async fn dispatch(cli: Cli) -> ExitCode {
    let flags = match &cli.command {
        Command::Serve(args) => serve_flags(args),
        _ => Vec::new(),
    };
    let sources = Sources {
        file: Some(
            cli.config
                .clone()
                .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG)),
        ),
        file_required: cli.config.is_some(),
        env: std::env::vars().collect::<HashMap<_, _>>(),
        flags,
    };
    let settings = match Settings::load(&sources) {
        Ok(settings) => settings,
        Err(e) => return fail(format!("configuration error: {e}")),
    };
    let rust_log = sources.env.get("RUST_LOG").map(String::as_str);
    match cli.command {
        Command::Serve(args) => serve::serve(settings, args.no_migrate, rust_log).await,
        Command::Migrate => migrate(settings, rust_log).await,
        Command::Doctor => {
            let source = match &cli.config {
                Some(path) => format!("loaded from {}", path.display()),
                None if std::path::Path::new(DEFAULT_CONFIG).exists() => {
                    format!("loaded from {DEFAULT_CONFIG}")
                }
                None => "loaded from the environment and defaults".to_string(),
            };
            let report = doctor::run(&settings, &source).await;
            print!("{report}");
            if report.failed() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Command::Version => ExitCode::SUCCESS,
        Command::Audit { command } => with_pool(&settings, |pool| audit(pool, command)).await,
        Command::Jira { command } => {
            with_pool(&settings, |pool| jira::run(&settings, pool, command)).await
        }
        Command::Keys {
            command: KeysCommand::Rotate { new_key_file },
        } => {
            let current = match settings.master_key() {
                Ok(key) => MasterKey::from_bytes(*key.expose()),
                Err(e) => return fail(e.to_string()),
            };
            let new = match std::fs::read_to_string(&new_key_file)
                .map_err(|e| e.to_string())
                .and_then(|text| MasterKey::from_base64(&text))
            {
                Ok(key) => key,
                Err(e) => return fail(format!("--new-key-file {}: {e}", new_key_file.display())),
            };
            with_pool(&settings, |pool| async move {
                let count = crate::secrets::rotate(&pool, &current, &new, crate::audit::Actor::operator())
                    .await
                    .map_err(|e| format!("rotation failed, nothing changed: {e}"))?;
                Ok(format!(
                    "{count} secrets re-encrypted under the new key; now set security.master_key_file to {} on every instance and start them",
                    new_key_file.display()
                ))
            })
            .await
        }
        Command::Purge { yes } => {
            if !yes {
                return fail(
                    "purge deletes every connection, mapping, secret and the audit trail; run it again with --yes".into(),
                );
            }
            with_pool(&settings, purge).await
        }
    }
}

/// Runs an operator command against the database, without starting the daemon.
async fn with_pool<F, Fut>(settings: &Settings, command: F) -> ExitCode
where
    F: FnOnce(sqlx::PgPool) -> Fut,
    Fut: std::future::Future<Output = Result<String, String>>,
{
    let pool = match db::pool(&settings.database) {
        Ok(pool) => pool,
        Err(e) => return fail(e.to_string()),
    };
    let result = command(pool.clone()).await;
    pool.close().await;
    match result {
        Ok(message) => {
            if !message.is_empty() {
                eprintln!("{message}");
            }
            ExitCode::SUCCESS
        }
        Err(message) => fail(message),
    }
}

async fn audit(pool: sqlx::PgPool, command: AuditCommand) -> Result<String, String> {
    use crate::audit::{self, ExportFormat, Filter};
    use time::OffsetDateTime;
    use time::format_description::well_known::Rfc3339;
    let parse = |name: &str, value: Option<String>| {
        value
            .map(|v| {
                OffsetDateTime::parse(&v, &Rfc3339).map_err(|_| {
                    format!("--{name} must be an RFC 3339 time such as 2026-11-22T08:00:00Z")
                })
            })
            .transpose()
    };
    match command {
        AuditCommand::Export {
            format,
            since,
            until,
            actor,
        } => {
            let filter = Filter {
                since: parse("since", since)?,
                until: parse("until", until)?,
                actor,
                limit: None,
            };
            let format = match format {
                ExportArg::Csv => ExportFormat::Csv,
                ExportArg::Jsonl => ExportFormat::Jsonl,
            };
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let count = audit::export(&pool, &filter, format, &mut out)
                .await
                .map_err(|e| e.to_string())?;
            std::io::Write::flush(&mut out).map_err(|e| e.to_string())?;
            Ok(format!("{count} audit events exported"))
        }
        AuditCommand::Verify => {
            let verification = audit::verify(&pool).await.map_err(|e| e.to_string())?;
            match verification.problem {
                None => {
                    println!(
                        "audit trail intact: {} events checked",
                        verification.checked
                    );
                    Ok(String::new())
                }
                Some(problem) => Err(format!(
                    "audit trail BROKEN: {problem} ({} events before it are intact)",
                    verification.checked
                )),
            }
        }
        AuditCommand::Purge { older_than_days } => {
            let removed = audit::purge_older_than(&pool, older_than_days, audit::Actor::operator())
                .await
                .map_err(|e| e.to_string())?;
            Ok(format!(
                "{removed} audit events older than {older_than_days} days removed"
            ))
        }
    }
}

async fn purge(pool: sqlx::PgPool) -> Result<String, String> {
    let dropped = crate::purge::purge_everything(&pool)
        .await
        .map_err(|e| format!("purge failed, nothing was removed: {e}"))?;
    Ok(format!(
        "removed {} filebridge tables ({}); the storages' files were not touched",
        dropped.len(),
        dropped.join(", ")
    ))
}

fn serve_flags(args: &ServeArgs) -> Vec<(String, String, String)> {
    let mut flags = Vec::new();
    let mut push = |key: &str, value: &Option<String>, flag: &str| {
        if let Some(value) = value {
            flags.push((key.to_string(), value.clone(), flag.to_string()));
        }
    };
    push("server.listen", &args.listen, "--listen");
    push("log.level", &args.log_level, "--log-level");
    push("log.format", &args.log_format, "--log-format");
    flags
}

async fn migrate(settings: Settings, rust_log: Option<&str>) -> ExitCode {
    if let Err(e) = telemetry::init(&settings.log, rust_log) {
        return fail(e.to_string());
    }
    let result = match db::pool(&settings.database) {
        Ok(pool) => {
            let result = db::migrate(&pool).await;
            pool.close().await;
            result
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(status) => {
            println!("database schema: {status:?}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(e.to_string()),
    }
}

pub(crate) fn fail(message: String) -> ExitCode {
    eprintln!("filebridge: {message}");
    ExitCode::FAILURE
}
