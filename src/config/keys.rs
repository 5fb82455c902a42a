//! Every configuration key filebridge knows, with its default.
//!
//! One table is the single source of truth: the loader refuses keys that are not here, sets
//! the defaults from it, and a test checks `config/filebridge.example.toml` documents each one.

/// One known key: `section.name` and its default (None = unset).
#[derive(Debug, Clone, Copy)]
pub struct Key {
    pub name: &'static str,
    pub default: Option<Default>,
    /// Secret-bearing keys also accept `<name>_file`.
    pub secret: bool,
}

/// A default value; lists are written comma-separated in the environment.
#[derive(Debug, Clone, Copy)]
pub enum Default {
    Str(&'static str),
    List(&'static [&'static str]),
}

const fn scalar(name: &'static str, default: Option<&'static str>) -> Key {
    Key {
        name,
        default: match default {
            Some(d) => Some(Default::Str(d)),
            None => None,
        },
        secret: false,
    }
}

const fn list(name: &'static str, default: &'static [&'static str]) -> Key {
    Key {
        name,
        default: Some(Default::List(default)),
        secret: false,
    }
}

const fn secret(name: &'static str, default: Option<&'static str>) -> Key {
    let mut key = scalar(name, default);
    key.secret = true;
    key
}

pub const KEYS: &[Key] = &[
    scalar("server.listen", Some("127.0.0.1:8790")),
    scalar("server.base_path", Some("/filebridge")),
    scalar("server.public_url", None),
    list("server.trusted_proxies", &["127.0.0.1/32", "::1/128"]),
    scalar("server.tls_cert_file", None),
    scalar("server.tls_key_file", None),
    scalar("server.shutdown_grace", Some("30s")),
    scalar("server.max_upload_bytes", Some("0")),
    secret(
        "database.url",
        Some("postgres://filebridge@localhost/filebridge"),
    ),
    scalar("database.max_connections", Some("16")),
    scalar("database.acquire_timeout", Some("5s")),
    scalar("jira.base_url", None),
    secret("jira.service_token", None),
    secret("jira.webhook_secret", None),
    scalar("jira.timeout", Some("10s")),
    scalar("jira.webhook_url", None),
    scalar("jira.webhook_max_bytes", Some("1048576")),
    scalar("jira.remote_links", Some("true")),
    list(
        "jira.forward_cookies",
        &["JSESSIONID", "seraph.rememberme.cookie"],
    ),
    secret("security.master_key", None),
    scalar("security.session_ttl", Some("1h")),
    scalar("security.identity_cache_ttl", Some("60s")),
    list("security.admin_groups", &[]),
    list("egress.allow", &[]),
    secret("egress.proxy", None),
    scalar("egress.ca_file", None),
    scalar("audit.retention_days", Some("0")),
    scalar("jobs.workers", Some("4")),
    scalar("jobs.max_attempts", Some("10")),
    scalar("jobs.lease", Some("60s")),
    scalar("jobs.backoff_max", Some("15m")),
    scalar("reconcile.interval", Some("15m")),
    scalar("reconcile.overlap", Some("10m")),
    scalar("folders.archive_deleted", Some("true")),
    list("metrics.allow", &["127.0.0.1/32", "::1/128"]),
    scalar("log.format", Some("json")),
    scalar("log.level", Some("info")),
];

/// The key a dotted name refers to; `x_file` resolves to the secret key `x`.
pub fn lookup(name: &str) -> Option<&'static Key> {
    if let Some(key) = KEYS.iter().find(|k| k.name == name) {
        return Some(key);
    }
    let base = name.strip_suffix("_file")?;
    KEYS.iter().find(|k| k.secret && k.name == base)
}

/// Every key with its default as the loader sees it (a list as its items), for the tests
/// that check the example file and docs/configuration.md against this table.
pub fn defaults() -> Vec<(&'static str, Option<Vec<&'static str>>)> {
    KEYS.iter()
        .map(|key| {
            let default = key.default.map(|d| match d {
                Default::Str(s) => vec![s],
                Default::List(items) => items.to_vec(),
            });
            (key.name, default)
        })
        .collect()
}

/// Every accepted name, `_file` variants included (for docs and the example-file test).
pub fn all_names() -> Vec<String> {
    let mut names = Vec::new();
    for key in KEYS {
        names.push(key.name.to_string());
        if key.secret {
            names.push(format!("{}_file", key.name));
        }
    }
    names
}
