//! Logging setup: JSON (for journald and log shippers) or human-readable, one line per event.
//!
//! What is logged is decided at the call sites: request lines carry method, route, status,
//! latency, request id and client address; never headers, cookies, tokens or bodies.

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSettings};

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("invalid log filter: {0}")]
    Filter(String),
    #[error("a log subscriber is already installed")]
    AlreadyInstalled,
}

/// Noisy dependencies whose lower levels could echo connection details; an explicit
/// `RUST_LOG` still overrides this.
const QUIET: &str =
    "h2=warn,hyper=warn,hyper_util=warn,rustls=warn,reqwest=warn,sqlx=warn,actix_server=warn";

/// Installs the global subscriber. `RUST_LOG`, when set, wins over `log.level`.
pub fn init(settings: &LogSettings, rust_log: Option<&str>) -> Result<(), TelemetryError> {
    let directives = match rust_log {
        Some(value) if !value.trim().is_empty() => value.to_string(),
        _ => format!("{},{QUIET}", settings.level),
    };
    let filter = EnvFilter::builder()
        .parse(&directives)
        .map_err(|e| TelemetryError::Filter(e.to_string()))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    let result = match settings.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Pretty => builder.with_target(false).try_init(),
    };
    result.map_err(|_| TelemetryError::AlreadyInstalled)
}
