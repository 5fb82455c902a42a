//! Command line: one function per subcommand. Exit codes: 0 success, 1 failure (with a
//! message on stderr), 2 usage errors (clap).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::app::{Application, Migrations};
use crate::config::{Settings, Sources};
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
            db::MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
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
        Command::Serve(args) => serve(settings, args.no_migrate, rust_log).await,
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
    }
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

async fn serve(settings: Settings, no_migrate: bool, rust_log: Option<&str>) -> ExitCode {
    if let Err(e) = telemetry::init(&settings.log, rust_log) {
        return fail(e.to_string());
    }
    let migrations = if no_migrate {
        Migrations::Skip
    } else {
        Migrations::Apply
    };
    let app = match Application::build(&settings, migrations).await {
        Ok(app) => app,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            return fail(e.to_string());
        }
    };
    match app.run_until_stopped().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(format!("server error: {e}")),
    }
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

fn fail(message: String) -> ExitCode {
    eprintln!("filebridge: {message}");
    ExitCode::FAILURE
}
