//! The one outbound HTTP client. filebridge contacts only the configured Jira, the endpoints
//! of storage connections an admin created, and hosts listed in `egress.allow`; every other
//! destination (redirects included) is refused and counted, so admins can see what was
//! contacted. TLS is rustls, 1.2 or newer, with the system roots plus `egress.ca_file`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use secrecy::ExposeSecret;
use serde::Serialize;
use url::Url;

use crate::config::EgressSettings;

#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    #[error(
        "outbound connection to {host} refused: it is not Jira, a storage connection or in egress.allow"
    )]
    Refused { host: String },
    #[error("egress.ca_file {path}: {reason}")]
    CaFile { path: String, reason: String },
    #[error("TLS setup failed: {0}")]
    Tls(String),
    #[error("egress.allow entry `{0}` must be host, host:port or *.domain[:port]")]
    Pattern(String),
    #[error("HTTP client setup failed: {0}")]
    Client(String),
}

/// How often a host was contacted or refused.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct HostCounts {
    pub contacted: u64,
    pub refused: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    /// Lower-case host, or a `.domain` suffix for `*.domain` patterns.
    host: String,
    wildcard: bool,
    port: Option<u16>,
}

impl Rule {
    fn parse(pattern: &str) -> Result<Self, EgressError> {
        let bad = || EgressError::Pattern(pattern.to_string());
        let text = pattern.trim().to_ascii_lowercase();
        let (host, port) = match text.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') || h.ends_with(']') => {
                (h.to_string(), Some(p.parse::<u16>().map_err(|_| bad())?))
            }
            _ => (text.clone(), None),
        };
        let (host, wildcard) = match host.strip_prefix("*.") {
            Some(rest) => (format!(".{rest}"), true),
            None => (host, false),
        };
        if host.is_empty() || host.contains('/') || host.contains('*') {
            return Err(bad());
        }
        Ok(Self {
            host: unbracket(&host),
            wildcard,
            port,
        })
    }

    fn for_url(url: &Url) -> Option<Self> {
        Some(Self {
            host: unbracket(url.host_str()?),
            wildcard: false,
            port: url.port_or_known_default(),
        })
    }

    fn matches(&self, host: &str, port: Option<u16>) -> bool {
        let host_ok = if self.wildcard {
            host.ends_with(&self.host)
        } else {
            host == self.host
        };
        host_ok && (self.port.is_none() || self.port == port)
    }
}

/// A host as compared: lower case, IPv6 literals without brackets.
fn unbracket(host: &str) -> String {
    host.trim_matches(|c| c == '[' || c == ']')
        .to_ascii_lowercase()
}

#[derive(Debug, Default)]
struct Policy {
    rules: RwLock<Vec<Rule>>,
    counts: Mutex<BTreeMap<String, HostCounts>>,
}

impl Policy {
    /// Checks `url` and counts the outcome under `host:port`.
    fn admit(&self, url: &Url) -> Result<(), EgressError> {
        let host = unbracket(url.host_str().unwrap_or(""));
        let port = url.port_or_known_default();
        let allowed = matches!(url.scheme(), "http" | "https")
            && self
                .rules
                .read()
                .map(|rules| rules.iter().any(|r| r.matches(&host, port)))
                .unwrap_or(false);
        let label = format!("{host}:{}", port.unwrap_or(0));
        if let Ok(mut counts) = self.counts.lock() {
            let entry = counts.entry(label.clone()).or_default();
            if allowed {
                entry.contacted += 1;
            } else {
                entry.refused += 1;
            }
        }
        if allowed {
            Ok(())
        } else {
            tracing::warn!(host = %label, "outbound connection refused by the egress allowlist");
            Err(EgressError::Refused { host: label })
        }
    }
}

/// Cheap to clone; clones share the allowlist and the counts.
#[derive(Debug, Clone)]
pub struct EgressClient {
    http: reqwest::Client,
    policy: Arc<Policy>,
}

impl EgressClient {
    pub fn new(settings: &EgressSettings, jira_base: Option<&Url>) -> Result<Self, EgressError> {
        let policy = Arc::new(Policy::default());
        {
            let mut rules = policy
                .rules
                .write()
                .map_err(|_| EgressError::Client("allowlist lock poisoned".into()))?;
            for pattern in &settings.allow {
                rules.push(Rule::parse(pattern)?);
            }
            rules.extend(jira_base.and_then(Rule::for_url));
        }
        let redirect_policy = Arc::clone(&policy);
        let mut builder = reqwest::Client::builder()
            .tls_backend_preconfigured(tls_config(settings)?)
            .user_agent(concat!("filebridge/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() >= 5 {
                    attempt.error("too many redirects")
                } else if let Err(e) = redirect_policy.admit(attempt.url()) {
                    attempt.error(e)
                } else {
                    attempt.follow()
                }
            }));
        builder = match &settings.proxy {
            Some(proxy) => {
                builder.proxy(reqwest::Proxy::all(proxy.expose_secret()).map_err(|_| {
                    EgressError::Client("egress.proxy is not a usable proxy URL".into())
                })?)
            }
            None => builder.no_proxy(),
        };
        let http = builder
            .build()
            .map_err(|e| EgressError::Client(e.to_string()))?;
        Ok(Self { http, policy })
    }

    /// Allows the host of a storage endpoint an admin configured.
    pub fn allow_endpoint(&self, url: &Url) {
        if let (Some(rule), Ok(mut rules)) = (Rule::for_url(url), self.policy.rules.write())
            && !rules.contains(&rule)
        {
            rules.push(rule);
        }
    }

    /// Starts a request. The only way to send it is [`EgressRequest::send`], which checks the
    /// destination first: no caller can reach a host the allowlist does not name.
    pub fn request(&self, method: reqwest::Method, url: Url) -> EgressRequest {
        EgressRequest {
            builder: self.http.request(method, url),
            http: self.http.clone(),
            policy: Arc::clone(&self.policy),
        }
    }

    /// Every host contacted or refused since start, with counts.
    pub fn report(&self) -> BTreeMap<String, HostCounts> {
        self.policy
            .counts
            .lock()
            .map(|counts| counts.clone())
            .unwrap_or_default()
    }
}

/// An outbound request being built; see [`EgressClient::request`].
pub struct EgressRequest {
    builder: reqwest::RequestBuilder,
    http: reqwest::Client,
    policy: Arc<Policy>,
}

impl EgressRequest {
    /// Sets headers, body, timeout and so on.
    pub fn with(
        self,
        configure: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Self {
        Self {
            builder: configure(self.builder),
            ..self
        }
    }

    /// Checks the destination against the allowlist (counting it), then sends. The outer
    /// error is a refusal; the inner one a transport failure.
    pub async fn send(self) -> Result<Result<reqwest::Response, reqwest::Error>, EgressError> {
        let request = match self.builder.build() {
            Ok(request) => request,
            Err(e) => return Ok(Err(e)),
        };
        self.policy.admit(request.url())?;
        Ok(self.http.execute(request).await)
    }
}

fn tls_config(settings: &EgressSettings) -> Result<rustls::ClientConfig, EgressError> {
    let mut roots = rustls::RootCertStore::empty();
    // Unreadable system certificates are skipped: the customer's CA file can still supply
    // what is needed, and a missing root shows up as a clear TLS error on first use.
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = &settings.ca_file {
        let shown = path.display().to_string();
        let certs = CertificateDer::pem_file_iter(path).map_err(|e| EgressError::CaFile {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
        let mut added = 0;
        for cert in certs {
            let cert = cert.map_err(|e| EgressError::CaFile {
                path: shown.clone(),
                reason: e.to_string(),
            })?;
            roots.add(cert).map_err(|e| EgressError::CaFile {
                path: shown.clone(),
                reason: e.to_string(),
            })?;
            added += 1;
        }
        if added == 0 {
            return Err(EgressError::CaFile {
                path: shown,
                reason: "holds no PEM certificate".into(),
            });
        }
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| EgressError::Tls(e.to_string()))
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_hosts_and_ports() {
        let exact = Rule::parse("Graph.Microsoft.com").unwrap();
        assert!(exact.matches("graph.microsoft.com", Some(443)));
        assert!(!exact.matches("evil.graph.microsoft.com", Some(443)));
        let wild = Rule::parse("*.example.com:8443").unwrap();
        assert!(wild.matches("a.example.com", Some(8443)));
        assert!(!wild.matches("a.example.com", Some(443)));
        assert!(!wild.matches("example.com.evil", Some(8443)));
        assert!(Rule::parse("http://x").is_err());
        assert!(Rule::parse("a.com:99999").is_err());
    }

    #[test]
    fn unlisted_hosts_are_refused_and_everything_is_counted() {
        let settings = EgressSettings {
            allow: vec!["storage.example.com".into()],
            proxy: None,
            ca_file: None,
        };
        let jira = Url::parse("https://jira.example.com/jira").unwrap();
        let client = EgressClient::new(&settings, Some(&jira)).unwrap();
        let admit = |u: &str| client.policy.admit(&Url::parse(u).unwrap());
        assert!(admit("https://jira.example.com/rest/api/2/myself").is_ok());
        assert!(
            admit("https://jira.example.com:8443/x").is_err(),
            "another port"
        );
        assert!(admit("https://storage.example.com/bucket").is_ok());
        assert!(matches!(
            admit("https://telemetry.vendor.example/ping"),
            Err(EgressError::Refused { .. })
        ));
        assert!(admit("ftp://jira.example.com/x").is_err(), "only http(s)");
        client.allow_endpoint(&Url::parse("https://graph.example.net/v1.0").unwrap());
        assert!(admit("https://graph.example.net/v1.0/drives").is_ok());

        let report = client.report();
        assert_eq!(
            report["jira.example.com:443"],
            HostCounts {
                contacted: 1,
                refused: 0
            }
        );
        assert_eq!(
            report["jira.example.com:21"],
            HostCounts {
                contacted: 0,
                refused: 1
            }
        );
        assert_eq!(report["jira.example.com:8443"].refused, 1);
        assert_eq!(report["telemetry.vendor.example:443"].refused, 1);
        assert_eq!(report["storage.example.com:443"].contacted, 1);
    }
}
