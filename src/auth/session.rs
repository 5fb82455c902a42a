//! filebridge's own session: a short-lived HS256 JWT in an `HttpOnly; Secure;
//! SameSite=Strict` cookie scoped to the base path. Its key is derived from the master key,
//! so every instance sharing the master key accepts it and nothing new is stored.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::cookie::{Cookie, SameSite};
use hkdf::Hkdf;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::credentials::SESSION_COOKIE;
use super::{AuthError, User};
use crate::config::MasterKey;

const ISSUER: &str = "filebridge";

/// Derives an independent 32-byte key from the master key for one purpose.
pub fn derive_key(master: &MasterKey, purpose: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let hkdf = Hkdf::<Sha256>::new(None, master.expose());
    // HKDF-SHA256 produces up to 8160 bytes, so asking for 32 cannot fail.
    let _ = hkdf.expand(purpose, &mut out);
    out
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    /// The instance's public URL: a token minted for another base path or host is refused.
    aud: String,
    sub: String,
    name: String,
    dn: String,
    adm: bool,
    /// For sessions started from Jira cookies: a keyed hash of those cookies. The session is
    /// only honoured beside the same Jira cookies, so a different Jira login in the browser
    /// is verified afresh instead of inheriting the previous user's session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    jcb: Option<String>,
    iat: u64,
    exp: u64,
}

pub struct SessionKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    audience: String,
    ttl: Duration,
    cookie_path: String,
}

impl SessionKeys {
    pub fn new(master: &MasterKey, audience: &str, base_path: &str, ttl: Duration) -> Self {
        let secret = derive_key(master, b"filebridge/session-jwt/v1");
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[audience]);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "sub", "aud", "iss"]);
        validation.leeway = 5;
        Self {
            encoding: EncodingKey::from_secret(&secret),
            decoding: DecodingKey::from_secret(&secret),
            validation,
            audience: audience.to_string(),
            ttl,
            cookie_path: if base_path.is_empty() {
                "/".to_string()
            } else {
                base_path.to_string()
            },
        }
    }

    pub fn issue(&self, user: &User, binding: Option<String>) -> Result<String, AuthError> {
        let now = unix_now();
        let claims = Claims {
            iss: ISSUER.to_string(),
            aud: self.audience.clone(),
            sub: user.key.clone(),
            name: user.name.clone(),
            dn: user.display_name.clone(),
            adm: user.is_admin,
            jcb: binding,
            iat: now,
            exp: now.saturating_add(self.ttl.as_secs()),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| AuthError::Internal(format!("cannot sign session: {e}")))
    }

    /// Checks signature, algorithm (HS256 only; `none` is refused), issuer, audience and
    /// expiry; returns the user and the Jira-cookie binding. The reason is for the log; the
    /// token itself never is.
    pub fn verify(&self, token: &str) -> Result<(User, Option<String>), &'static str> {
        use jsonwebtoken::errors::ErrorKind;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => "expired",
                ErrorKind::InvalidSignature => "bad signature",
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => "wrong algorithm",
                ErrorKind::InvalidAudience => "issued for another filebridge",
                ErrorKind::InvalidIssuer => "wrong issuer",
                _ => "malformed",
            })?;
        let user = User {
            key: data.claims.sub,
            name: data.claims.name,
            display_name: data.claims.dn,
            is_admin: data.claims.adm,
        };
        Ok((user, data.claims.jcb))
    }

    pub fn cookie(&self, token: String) -> Cookie<'static> {
        Cookie::build(SESSION_COOKIE, token)
            .path(self.cookie_path.clone())
            .http_only(true)
            .secure(true)
            .same_site(SameSite::Strict)
            .max_age(actix_web::cookie::time::Duration::seconds(
                i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX),
            ))
            .finish()
    }

    /// A cookie that makes the browser forget the session.
    pub fn removal_cookie(&self) -> Cookie<'static> {
        let mut cookie = self.cookie(String::new());
        cookie.make_removal();
        cookie
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
