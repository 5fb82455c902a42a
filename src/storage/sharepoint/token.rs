//! Access tokens for Graph. App-only mode gets them with the OAuth 2.0 client credentials
//! grant from the tenant's v2.0 token endpoint, authenticating the app with a client secret or
//! (recommended by Microsoft) a client assertion: a short JWT signed with the certificate's
//! private key, RS256 or PS256, naming the certificate by its thumbprints (`x5t`, `x5t#S256`).
//!
//! Tokens are kept in a [`CachedToken`]: until shortly before they expire, one fetch for a
//! burst of requests. Delegated mode (`delegated.rs`, `crate::accounts`) supplies users'
//! tokens through the same [`TokenSource`] and keeps them in the same way.

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

/// A token request's form: `pairs`, the client id and the app's credential (a client secret,
/// or a fresh client assertion: each carries its own `jti`). App-only and delegated
/// requests authenticate the app the same way.
pub(super) fn token_form(
    credential: &Credential,
    client_id: &str,
    token_url: &Url,
    pairs: &[(&str, &str)],
) -> Result<String, StorageError> {
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    form.append_pair("client_id", client_id);
    for (name, value) in pairs {
        form.append_pair(name, value);
    }
    match credential {
        Credential::Secret(secret) => {
            form.append_pair("client_secret", secret.expose_secret());
        }
        Credential::Certificate {
            certificate,
            key,
            alg,
        } => {
            let signed = assertion(
                certificate,
                key,
                *alg,
                token_url.as_str(),
                client_id,
                time::OffsetDateTime::now_utc().unix_timestamp(),
            )?;
            form.append_pair(
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            )
            .append_pair("client_assertion", &signed);
        }
    }
    Ok(form.finish())
}

/// POSTs a token request through the egress client. The outer error is a refused
/// destination; the inner one a transport failure the caller may retry or not.
pub(super) async fn post_form(
    egress: &EgressClient,
    token_url: &Url,
    body: String,
) -> Result<Result<reqwest::Response, reqwest::Error>, StorageError> {
    egress
        .request(reqwest::Method::POST, token_url.clone())
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
        .map_err(|refused| StorageError::Backend(refused.to_string()))
}

/// Where Graph tokens come from: the app's own (app-only), or a user's delegated grant.
#[async_trait]
pub trait TokenSource: Send + Sync {
    /// A token valid for at least a few more minutes.
    async fn token(&self) -> Result<SecretString, StorageError>;
    /// Graph refused `token` (401): forget it, so the next call fetches another.
    async fn rejected(&self, token: &SecretString);
}

struct Cached {
    token: SecretString,
    refresh_at: Instant,
}

/// An access token kept until shortly before it expires ([`REFRESH_MARGIN`]) and fetched by
/// one caller while the others wait on the same lock: a burst of requests costs one token
/// request. App-only tokens and each user's delegated tokens are kept in one of these.
#[derive(Default)]
pub struct CachedToken(Mutex<Option<Cached>>);

impl CachedToken {
    /// The kept token, or the one `fetch` gets (with its lifetime), kept from then on.
    pub async fn get<F, Fut>(&self, fetch: F) -> Result<SecretString, StorageError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<(SecretString, Duration), StorageError>>,
    {
        // Held while fetching: concurrent callers wait for this one token request.
        let mut cache = self.0.lock().await;
        if let Some(cached) = cache.as_ref()
            && Instant::now() < cached.refresh_at
        {
            return Ok(cached.token.clone());
        }
        let (token, lifetime) = fetch().await?;
        let margin = REFRESH_MARGIN.min(lifetime / 2);
        *cache = Some(Cached {
            token: token.clone(),
            refresh_at: Instant::now() + lifetime - margin,
        });
        Ok(token)
    }

    /// Forgets `token` (Graph refused it), unless another caller replaced it already.
    pub async fn forget(&self, token: &SecretString) {
        let mut cache = self.0.lock().await;
        if cache
            .as_ref()
            .is_some_and(|c| c.token.expose_secret() == token.expose_secret())
        {
            *cache = None;
        }
    }
}

pub(super) struct AppOnly {
    egress: EgressClient,
    token_url: Url,
    client_id: String,
    scope: String,
    credential: Credential,
    cache: CachedToken,
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
            cache: CachedToken::default(),
        }
    }

    /// The form of a client credentials request.
    fn form(&self) -> Result<String, StorageError> {
        token_form(
            &self.credential,
            &self.client_id,
            &self.token_url,
            &[
                ("scope", self.scope.as_str()),
                ("grant_type", "client_credentials"),
            ],
        )
    }

    /// A new token and its lifetime.
    async fn fetch(&self) -> Result<(SecretString, Duration), StorageError> {
        let mut attempt = 1;
        loop {
            // A new assertion per try: each carries its own `jti`.
            let sent = post_form(&self.egress, &self.token_url, self.form()?).await?;
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
                return Ok((
                    SecretString::from(answer.access_token),
                    Duration::from_secs(answer.expires_in),
                ));
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
        self.cache.get(|| self.fetch()).await
    }

    async fn rejected(&self, token: &SecretString) {
        self.cache.forget(token).await;
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
mod tests;
