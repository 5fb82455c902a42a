//! Bootstrap configuration: only what filebridge needs before it can reach its database
//! (listen address, database, Jira, key files). Everything else lives in Postgres.

mod keys;
mod layers;
mod work;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use ipnet::IpNet;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use url::Url;

pub use keys::all_names as known_keys;
pub use keys::defaults as key_defaults;
use layers::Layered;
pub use layers::{ENV_PREFIX, Origin, Sources};
pub use work::{EventsSettings, JobsSettings};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("configuration file {path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("unknown configuration key `{key}` in {origin}")]
    UnknownKey { key: String, origin: Origin },
    #[error("invalid value for `{key}` (from {origin}): {reason}")]
    Invalid {
        key: String,
        origin: Origin,
        reason: String,
    },
    #[error("`{key}` and `{key}_file` are both set in the same layer (see {origin}); set only one")]
    Conflict { key: String, origin: Origin },
    #[error("`{key}` is required for this command: {hint}")]
    Missing {
        key: &'static str,
        hint: &'static str,
    },
    #[error("configuration: {0}")]
    Layering(#[from] config::ConfigError),
}

/// The validated bootstrap configuration.
#[derive(Debug)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub jira: JiraSettings,
    pub security: SecuritySettings,
    pub egress: EgressSettings,
    pub log: LogSettings,
    /// Audit events older than this many days are removed (by every instance, once a
    /// day); `None` keeps them forever.
    pub audit_retention_days: Option<u32>,
    pub jobs: JobsSettings,
    pub events: EventsSettings,
}

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    /// Normalised: starts with `/`, no trailing `/`; empty when filebridge owns the whole host.
    pub base_path: String,
    /// How users reach filebridge; its origin is the only one accepted for CSRF checks.
    pub public_url: Url,
    /// False when `public_url` was derived from `listen`, which is wrong behind a proxy.
    pub public_url_configured: bool,
    pub trusted_proxies: Vec<IpNet>,
    /// Clients (as resolved through trusted proxies) that may scrape `/metrics`.
    pub metrics_allow: Vec<IpNet>,
    pub tls: Option<TlsFiles>,
    pub shutdown_grace: Duration,
    /// Largest upload accepted; `None` is unlimited (the storage's own limits still apply).
    pub max_upload_bytes: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug)]
pub struct DatabaseSettings {
    pub url: SecretString,
    pub max_connections: u32,
    pub acquire_timeout: Duration,
}

#[derive(Debug)]
pub struct JiraSettings {
    pub base_url: Option<Url>,
    pub service_token: Option<SecretString>,
    pub webhook_secret: Option<SecretString>,
    pub timeout: Duration,
    /// Jira cookies forwarded to `/rest/api/2/myself` (session, remember-me, load-balancer
    /// stickiness); others are never sent to Jira.
    pub forward_cookies: Vec<String>,
}

#[derive(Debug)]
pub struct SecuritySettings {
    pub master_key: Option<MasterKey>,
    pub session_ttl: Duration,
    pub identity_cache_ttl: Duration,
    pub admin_groups: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct EgressSettings {
    pub allow: Vec<String>,
    /// A URL that may hold credentials, so wrapped like any secret.
    pub proxy: Option<SecretString>,
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

/// The customer's 32-byte master key. Debug never shows it.
pub struct MasterKey(SecretBox<[u8; 32]>);

impl MasterKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(SecretBox::new(Box::new(bytes)))
    }

    pub fn expose(&self) -> &[u8; 32] {
        self.0.expose_secret()
    }

    /// Reads the key as it is stored in a key file: 32 bytes in base64.
    pub fn from_base64(text: &str) -> Result<Self, String> {
        let hint = "must be 32 random bytes in base64 (head -c32 /dev/urandom | base64)";
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|_| hint.to_string())?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| format!("decodes to {} bytes; it {hint}", b.len()))?;
        Ok(Self::from_bytes(bytes))
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey([REDACTED])")
    }
}

impl Settings {
    pub fn load(sources: &Sources) -> Result<Self, ConfigError> {
        let layers = Layered::load(sources)?;
        let server = server(&layers)?;
        Ok(Settings {
            database: database(&layers)?,
            jira: jira(&layers)?,
            security: security(&layers)?,
            egress: egress(&layers)?,
            log: log(&layers)?,
            audit_retention_days: Some(layers.required::<u32>("audit.retention_days")?)
                .filter(|days| *days > 0),
            jobs: work::jobs(&layers)?,
            events: work::events(&layers, &server)?,
            server,
        })
    }

    pub fn jira_base_url(&self) -> Result<&Url, ConfigError> {
        self.jira.base_url.as_ref().ok_or(ConfigError::Missing {
            key: "jira.base_url",
            hint: "the URL at which filebridge reaches Jira, e.g. https://jira.example.com",
        })
    }

    pub fn master_key(&self) -> Result<&MasterKey, ConfigError> {
        self.security
            .master_key
            .as_ref()
            .ok_or(ConfigError::Missing {
                key: "security.master_key_file",
                hint: "a file holding 32 random bytes in base64: head -c32 /dev/urandom | base64",
            })
    }
}

fn server(layers: &Layered) -> Result<ServerSettings, ConfigError> {
    let listen: SocketAddr = layers.required("server.listen")?;
    let base_path = base_path(layers)?;
    let public_url_text = layers.string("server.public_url")?;
    let public_url_configured = public_url_text.is_some();
    let public_url = match public_url_text {
        Some(text) => http_url(layers, "server.public_url", &text, Userinfo::Refused)?,
        None => Url::parse(&format!("http://{listen}{base_path}"))
            .map_err(|e| layers.invalid("server.listen", e))?,
    };
    let trusted_proxies = networks(layers, "server.trusted_proxies")?;
    let metrics_allow = networks(layers, "metrics.allow")?;
    let tls = match (
        layers.path("server.tls_cert_file")?,
        layers.path("server.tls_key_file")?,
    ) {
        (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
        (None, None) => None,
        (Some(_), None) => {
            return Err(layers.invalid(
                "server.tls_cert_file",
                "server.tls_key_file must be set too",
            ));
        }
        (None, Some(_)) => {
            return Err(layers.invalid(
                "server.tls_key_file",
                "server.tls_cert_file must be set too",
            ));
        }
    };
    Ok(ServerSettings {
        listen,
        base_path,
        public_url,
        public_url_configured,
        max_upload_bytes: Some(layers.required::<u64>("server.max_upload_bytes")?)
            .filter(|n| *n > 0),
        trusted_proxies,
        metrics_allow,
        tls,
        shutdown_grace: {
            let grace = layers.duration("server.shutdown_grace")?;
            // actix counts whole seconds; less would mean no grace at all.
            if grace < Duration::from_secs(1) {
                return Err(layers.invalid("server.shutdown_grace", "must be at least 1s"));
            }
            grace
        },
    })
}

fn base_path(layers: &Layered) -> Result<String, ConfigError> {
    const KEY: &str = "server.base_path";
    let raw = layers.string(KEY)?.unwrap_or_default();
    let trimmed = raw.trim().trim_end_matches('/');
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    let valid = trimmed.starts_with('/')
        && !trimmed.contains("//")
        && trimmed
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/-._~".contains(c))
        && !trimmed.split('/').any(|s| s == "." || s == "..");
    if !valid {
        return Err(layers.invalid(
            KEY,
            format!("`{raw}` must be a path like /filebridge (letters, digits, - . _ ~)"),
        ));
    }
    Ok(trimmed.to_string())
}

/// A list of CIDR networks (a single address is a /32 or /128).
fn networks(layers: &Layered, key: &str) -> Result<Vec<IpNet>, ConfigError> {
    let mut nets = Vec::new();
    for item in layers.list(key)? {
        let net = item
            .parse::<IpNet>()
            .or_else(|_| item.parse::<std::net::IpAddr>().map(IpNet::from))
            .map_err(|e| layers.invalid(key, format!("`{item}`: {e}")))?;
        nets.push(net);
    }
    Ok(nets)
}

/// An http(s) URL. Messages quote the value only when it holds no credentials.
fn http_url(
    layers: &Layered,
    key: &str,
    text: &str,
    userinfo: Userinfo,
) -> Result<Url, ConfigError> {
    let shown = if text.contains('@') {
        "the URL".to_string()
    } else {
        format!("`{text}`")
    };
    let url = Url::parse(text.trim()).map_err(|e| layers.invalid(key, format!("{shown}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(layers.invalid(key, format!("{shown} must be an http:// or https:// URL")));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(layers.invalid(key, format!("{shown} must not carry a query or fragment")));
    }
    if userinfo == Userinfo::Refused && (!url.username().is_empty() || url.password().is_some()) {
        return Err(layers.invalid(key, "must not contain a user name or password"));
    }
    Ok(url)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Userinfo {
    Allowed,
    Refused,
}

fn database(layers: &Layered) -> Result<DatabaseSettings, ConfigError> {
    let url = layers
        .secret("database.url")?
        .ok_or_else(|| layers.invalid("database.url", "must not be empty"))?;
    let max_connections: u32 = layers.required("database.max_connections")?;
    if max_connections == 0 {
        return Err(layers.invalid("database.max_connections", "must be at least 1"));
    }
    Ok(DatabaseSettings {
        url,
        max_connections,
        acquire_timeout: layers.duration("database.acquire_timeout")?,
    })
}

fn jira(layers: &Layered) -> Result<JiraSettings, ConfigError> {
    let base_url = match layers.string("jira.base_url")? {
        Some(text) => {
            let mut url = http_url(layers, "jira.base_url", &text, Userinfo::Refused)?;
            // Jira's context path, without a trailing slash, so joins add exactly one.
            let path = url.path().trim_end_matches('/').to_string();
            url.set_path(&path);
            Some(url)
        }
        None => None,
    };
    Ok(JiraSettings {
        base_url,
        service_token: layers.secret("jira.service_token")?,
        webhook_secret: layers.secret("jira.webhook_secret")?,
        timeout: layers.duration("jira.timeout")?,
        forward_cookies: layers.list("jira.forward_cookies")?,
    })
}

fn security(layers: &Layered) -> Result<SecuritySettings, ConfigError> {
    let master_key = match layers.secret("security.master_key")? {
        None => None,
        Some(text) => Some(master_key(layers, &text)?),
    };
    let session_ttl = layers.duration("security.session_ttl")?;
    if session_ttl < Duration::from_secs(60) || session_ttl > Duration::from_secs(24 * 3600) {
        // The session carries the admin flag, so its life bounds how long a revoked Jira
        // admin keeps admin rights here.
        return Err(layers.invalid("security.session_ttl", "must be between 1m and 24h"));
    }
    Ok(SecuritySettings {
        master_key,
        session_ttl,
        identity_cache_ttl: layers.duration("security.identity_cache_ttl")?,
        admin_groups: layers.list("security.admin_groups")?,
    })
}

fn master_key(layers: &Layered, text: &SecretString) -> Result<MasterKey, ConfigError> {
    // Name the form the value came from, so the message points at the right file or variable.
    let key = if layers.origin("security.master_key_file") > layers.origin("security.master_key") {
        "security.master_key_file"
    } else {
        "security.master_key"
    };
    MasterKey::from_base64(text.expose_secret()).map_err(|reason| layers.invalid(key, reason))
}

fn egress(layers: &Layered) -> Result<EgressSettings, ConfigError> {
    // The proxy URL may carry credentials: a secret key (so also `proxy_file`), kept wrapped.
    let proxy = match layers.secret("egress.proxy")? {
        Some(text) => {
            http_url(
                layers,
                "egress.proxy",
                text.expose_secret(),
                Userinfo::Allowed,
            )?;
            Some(text)
        }
        None => None,
    };
    Ok(EgressSettings {
        allow: layers.list("egress.allow")?,
        proxy,
        ca_file: layers.path("egress.ca_file")?,
    })
}

fn log(layers: &Layered) -> Result<LogSettings, ConfigError> {
    let format = match layers.required_string("log.format")?.trim() {
        "json" => LogFormat::Json,
        "pretty" => LogFormat::Pretty,
        other => {
            return Err(layers.invalid("log.format", format!("`{other}` must be json or pretty")));
        }
    };
    let level = layers.required_string("log.level")?;
    if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(level.trim()) {
        return Err(layers.invalid("log.level", format!("`{level}`: {e}")));
    }
    Ok(LogSettings {
        format,
        level: level.trim().to_string(),
    })
}
