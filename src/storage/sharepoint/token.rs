//! Access tokens for Graph. App-only mode gets them with the OAuth 2.0 client credentials
//! grant from the tenant's v2.0 token endpoint, authenticating the app with a client secret or
//! (recommended by Microsoft) a client assertion: a short JWT signed with the certificate's
//! private key, RS256 or PS256, naming the certificate by its thumbprints (`x5t`, `x5t#S256`).
//!
//! A token is cached until shortly before it expires and fetched by one caller while the
//! others wait on the same lock, so a burst of requests costs one token request. A per-user
//! (delegated) mode can later supply tokens through the same [`TokenSource`] trait.

#[cfg(test)]
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
use rsa::pkcs8::DecodePrivateKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::Digest;
use tokio::sync::Mutex;
use url::Url;

use super::graph::{retry_after, transport};
use super::settings::{AssertionAlg, Credential};
use crate::egress::EgressClient;
use crate::storage::StorageError;

/// A token is replaced this long before it expires (or at half its life, if shorter), so a
/// request never leaves with a token that expires on the way.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// Client assertions are valid this long; Microsoft accepts up to ten minutes.
const ASSERTION_LIFETIME: i64 = 600;
/// Token requests answered 429/5xx or lost on the way are tried this often in all.
const ATTEMPTS: u32 = 3;
const TIMEOUT: Duration = Duration::from_secs(30);

/// Where Graph tokens come from: app-only today, a user's delegated grant later.
#[async_trait]
pub(super) trait TokenSource: Send + Sync {
    /// A token valid for at least a few more minutes.
    async fn token(&self) -> Result<SecretString, StorageError>;
    /// Graph refused `token` (401): forget it, so the next call fetches another.
    async fn rejected(&self, token: &SecretString);
}

struct Cached {
    token: SecretString,
    refresh_at: Instant,
}

pub(super) struct AppOnly {
    egress: EgressClient,
    token_url: Url,
    client_id: String,
    scope: String,
    credential: Credential,
    cache: Mutex<Option<Cached>>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: u64,
}

#[derive(Deserialize, Default)]
struct TokenError {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
}

#[derive(Serialize)]
struct AssertionClaims<'a> {
    aud: &'a str,
    iss: &'a str,
    sub: &'a str,
    jti: String,
    nbf: i64,
    iat: i64,
    exp: i64,
}

impl AppOnly {
    pub fn new(
        egress: EgressClient,
        token_url: Url,
        client_id: String,
        scope: String,
        credential: Credential,
    ) -> Self {
        Self {
            egress,
            token_url,
            client_id,
            scope,
            credential,
            cache: Mutex::new(None),
        }
    }

    /// The form of a client credentials request.
    fn form(&self) -> Result<String, StorageError> {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("client_id", &self.client_id)
            .append_pair("scope", &self.scope)
            .append_pair("grant_type", "client_credentials");
        match &self.credential {
            Credential::Secret(secret) => {
                form.append_pair("client_secret", secret.expose_secret());
            }
            Credential::Certificate {
                certificate,
                key,
                alg,
            } => {
                let assertion = assertion(
                    certificate,
                    key,
                    *alg,
                    self.token_url.as_str(),
                    &self.client_id,
                    time::OffsetDateTime::now_utc().unix_timestamp(),
                )?;
                form.append_pair(
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                )
                .append_pair("client_assertion", &assertion);
            }
        }
        Ok(form.finish())
    }

    async fn fetch(&self) -> Result<Cached, StorageError> {
        let mut attempt = 1;
        loop {
            // A new assertion per try: each carries its own `jti`.
            let body = self.form()?;
            let sent = self
                .egress
                .request(reqwest::Method::POST, self.token_url.clone())
                .with(|b| {
                    b.header(
                        reqwest::header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded",
                    )
                    .body(body)
                    .timeout(TIMEOUT)
                })
                .send()
                .await
                .map_err(|refused| StorageError::Backend(refused.to_string()))?;
            let wait = Duration::from_secs(attempt.into());
            let response = match sent {
                Ok(response) => response,
                Err(e) if attempt < ATTEMPTS => {
                    tracing::debug!(error = %e, "sharepoint: token request failed; trying again");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                    continue;
                }
                Err(e) => return Err(transport(e, "token request")),
            };
            let status = response.status();
            if status.is_success() {
                let answer: TokenAnswer = response.json().await.map_err(|e| {
                    StorageError::Backend(format!("the token endpoint's answer: {e}"))
                })?;
                let lifetime = Duration::from_secs(answer.expires_in);
                let margin = REFRESH_MARGIN.min(lifetime / 2);
                return Ok(Cached {
                    token: SecretString::from(answer.access_token),
                    refresh_at: Instant::now() + lifetime - margin,
                });
            }
            if (status.as_u16() == 429 || status.is_server_error()) && attempt < ATTEMPTS {
                let wait = retry_after(response.headers()).unwrap_or(wait);
                if wait <= super::graph::MAX_RETRY_WAIT {
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                    continue;
                }
            }
            let headers = response.headers().clone();
            let error: TokenError = response.json().await.unwrap_or_default();
            let description = error.error_description.lines().next().unwrap_or("");
            return Err(match status.as_u16() {
                400 | 401 | 403 => {
                    // AADSTS codes tell the admin what is wrong (bad secret, unknown
                    // certificate, app not in the tenant); the error code alone does not.
                    tracing::warn!(
                        error = %error.error,
                        description,
                        "sharepoint: Microsoft refused the app's sign-in"
                    );
                    StorageError::PermissionDenied
                }
                429 | 503 => StorageError::Throttled {
                    retry_after: retry_after(&headers),
                },
                _ => StorageError::Unavailable(format!(
                    "token endpoint answered HTTP {status}: {} {description}",
                    error.error
                )),
            });
        }
    }
}

#[async_trait]
impl TokenSource for AppOnly {
    async fn token(&self) -> Result<SecretString, StorageError> {
        // Held while fetching: concurrent callers wait for this one token request.
        let mut cache = self.cache.lock().await;
        if let Some(cached) = cache.as_ref()
            && Instant::now() < cached.refresh_at
        {
            return Ok(cached.token.clone());
        }
        let fresh = self.fetch().await?;
        let token = fresh.token.clone();
        *cache = Some(fresh);
        Ok(token)
    }

    async fn rejected(&self, token: &SecretString) {
        let mut cache = self.cache.lock().await;
        // Only the refused token: another caller may have replaced it already.
        if cache
            .as_ref()
            .is_some_and(|c| c.token.expose_secret() == token.expose_secret())
        {
            *cache = None;
        }
    }
}

/// A client assertion for the token endpoint `audience`, issued at `now` (Unix seconds).
pub(super) fn assertion(
    certificate: &[u8],
    key: &EncodingKey,
    alg: AssertionAlg,
    audience: &str,
    client_id: &str,
    now: i64,
) -> Result<String, StorageError> {
    let mut header = Header::new(match alg {
        AssertionAlg::Rs256 => Algorithm::RS256,
        AssertionAlg::Ps256 => Algorithm::PS256,
    });
    header.typ = Some("JWT".into());
    // Both thumbprints: Entra ID matches either against the app's registered certificates.
    header.x5t = Some(URL_SAFE_NO_PAD.encode(sha1::Sha1::digest(certificate)));
    header.x5t_s256 = Some(URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(certificate)));
    let claims = AssertionClaims {
        aud: audience,
        iss: client_id,
        sub: client_id,
        jti: uuid::Uuid::new_v4().to_string(),
        nbf: now,
        iat: now,
        exp: now + ASSERTION_LIFETIME,
    };
    jsonwebtoken::encode(&header, &claims, key)
        .map_err(|e| StorageError::Backend(format!("signing the client assertion: {e}")))
}

/// Reads a PEM certificate and its RSA private key (PKCS#1 or PKCS#8): the certificate's DER
/// and a signing key.
pub(super) fn load_certificate(
    certificate_pem: &str,
    key_pem: &str,
) -> Result<(Vec<u8>, EncodingKey), String> {
    let certificate = CertificateDer::from_pem_slice(certificate_pem.as_bytes())
        .map_err(|e| format!("secret `certificate` is not a PEM certificate: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| format!("secret `private_key` is not a PEM private key: {e}"))?;
    let not_rsa =
        |e: &dyn std::fmt::Display| format!("secret `private_key` is not an RSA key: {e}");
    let pkcs1: Vec<u8> = match key {
        PrivateKeyDer::Pkcs1(der) => {
            rsa::RsaPrivateKey::from_pkcs1_der(der.secret_pkcs1_der()).map_err(|e| not_rsa(&e))?;
            der.secret_pkcs1_der().to_vec()
        }
        PrivateKeyDer::Pkcs8(der) => rsa::RsaPrivateKey::from_pkcs8_der(der.secret_pkcs8_der())
            .map_err(|e| not_rsa(&e))?
            .to_pkcs1_der()
            .map_err(|e| not_rsa(&e))?
            .as_bytes()
            .to_vec(),
        _ => return Err("secret `private_key` must be an RSA key (PKCS#1 or PKCS#8 PEM)".into()),
    };
    Ok((certificate.to_vec(), EncodingKey::from_rsa_der(&pkcs1)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use fake_graph::{FakeGraph, fixtures};

    fn egress() -> EgressClient {
        let settings = crate::config::EgressSettings {
            allow: vec!["127.0.0.1".into()],
            proxy: None,
            ca_file: None,
        };
        EgressClient::new(&settings, None).unwrap()
    }

    fn source(graph: &FakeGraph, tenant: &str, app: &str, credential: Credential) -> AppOnly {
        AppOnly::new(
            egress(),
            Url::parse(&graph.token_url(tenant)).unwrap(),
            app.to_string(),
            "https://graph.microsoft.com/.default".into(),
            credential,
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_token_request_for_a_burst_and_a_new_one_after_a_refusal() {
        let graph = FakeGraph::start().await;
        let tenant = graph.add_tenant("contoso.onmicrosoft.com");
        let app = graph.add_app(&tenant);
        graph.add_client_secret(&app, "s3cret");
        let tokens = Arc::new(source(
            &graph,
            &tenant,
            &app,
            Credential::Secret(SecretString::from("s3cret")),
        ));
        let burst: Vec<_> = (0..20)
            .map(|_| {
                let tokens = Arc::clone(&tokens);
                tokio::spawn(async move { tokens.token().await.unwrap() })
            })
            .collect();
        let mut seen = std::collections::HashSet::new();
        for task in burst {
            seen.insert(task.await.unwrap().expose_secret().to_string());
        }
        assert_eq!(seen.len(), 1);
        assert_eq!(graph.token_requests(), 1);
        let token = tokens.token().await.unwrap();
        assert_eq!(graph.token_requests(), 1, "cached");
        tokens.rejected(&SecretString::from("another")).await;
        tokens.token().await.unwrap();
        assert_eq!(
            graph.token_requests(),
            1,
            "an older token's refusal changes nothing"
        );
        tokens.rejected(&token).await;
        let renewed = tokens.token().await.unwrap();
        assert_ne!(renewed.expose_secret(), token.expose_secret());
        assert_eq!(graph.token_requests(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn short_lived_tokens_are_renewed_before_they_expire() {
        let graph = FakeGraph::start().await;
        let tenant = graph.add_tenant("contoso.onmicrosoft.com");
        let app = graph.add_app(&tenant);
        graph.add_client_secret(&app, "s");
        // Two seconds: renewed after one (half its life).
        graph.set_access_token_lifetime(2);
        let tokens = source(
            &graph,
            &tenant,
            &app,
            Credential::Secret(SecretString::from("s")),
        );
        tokens.token().await.unwrap();
        tokens.token().await.unwrap();
        assert_eq!(graph.token_requests(), 1);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        tokens.token().await.unwrap();
        assert_eq!(graph.token_requests(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn certificates_sign_assertions_graph_accepts() {
        let graph = FakeGraph::start().await;
        let tenant = graph.add_tenant("contoso.onmicrosoft.com");
        let app = graph.add_app(&tenant);
        graph.add_certificate(&app, fixtures::APP_CERT_PEM);
        for alg in [AssertionAlg::Rs256, AssertionAlg::Ps256] {
            let (certificate, key) =
                load_certificate(fixtures::APP_CERT_PEM, fixtures::APP_KEY_PEM).unwrap();
            let credential = Credential::Certificate {
                certificate,
                key,
                alg,
            };
            source(&graph, &tenant, &app, credential)
                .token()
                .await
                .unwrap_or_else(|e| panic!("{alg:?}: {e}"));
        }
        // Another certificate's key is refused.
        let (certificate, key) =
            load_certificate(fixtures::OTHER_CERT_PEM, fixtures::OTHER_KEY_PEM).unwrap();
        let other = Credential::Certificate {
            certificate,
            key,
            alg: AssertionAlg::Rs256,
        };
        let refused = source(&graph, &tenant, &app, other).token().await;
        assert!(
            matches!(refused, Err(StorageError::PermissionDenied)),
            "{:?}",
            refused.err()
        );
    }

    #[test]
    fn keys_load_in_pkcs1_and_pkcs8_and_the_header_names_the_certificate() {
        use rsa::pkcs8::EncodePrivateKey;
        let pkcs1 =
            rsa::RsaPrivateKey::from_pkcs1_der(&fixtures::pem_der(fixtures::APP_KEY_PEM)).unwrap();
        let der = pkcs1.to_pkcs8_der().unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_bytes());
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        let pkcs8_pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            lines.join("\n")
        );
        let (certificate, key) = load_certificate(fixtures::APP_CERT_PEM, &pkcs8_pem).unwrap();
        let jwt = assertion(
            &certificate,
            &key,
            AssertionAlg::Ps256,
            "aud",
            "client",
            1000,
        )
        .unwrap();
        let header = jsonwebtoken::decode_header(&jwt).unwrap();
        let (x5t, x5t256) = fixtures::thumbprints(fixtures::APP_CERT_PEM);
        assert_eq!(header.alg, Algorithm::PS256);
        assert_eq!(header.x5t.as_deref(), Some(x5t.as_str()));
        assert_eq!(header.x5t_s256.as_deref(), Some(x5t256.as_str()));
        assert!(load_certificate("junk", fixtures::APP_KEY_PEM).is_err());
        assert!(load_certificate(fixtures::APP_CERT_PEM, "junk").is_err());
    }
}
