//! Telling Jira's deliveries from forgeries: Jira 10's HMAC signature, and Jira 9's path
//! token. Both compare in constant time, so timing tells an attacker nothing.

use std::hint::black_box;

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use super::{TOKEN_SETTING, WebhookError};

/// Checks `X-Hub-Signature: sha256=<hex>` against the raw body, in constant time.
pub fn verify_signature(
    secret: &SecretString,
    body: &[u8],
    header: Option<&str>,
) -> Result<(), WebhookError> {
    let header = header
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .ok_or(WebhookError::SignatureMissing)?;
    let (method, hex_signature) = header
        .split_once('=')
        .ok_or(WebhookError::SignatureInvalid)?;
    // Jira's default (and the only one filebridge registers) is HMAC-SHA256.
    if !method.trim().eq_ignore_ascii_case("sha256") {
        return Err(WebhookError::SignatureInvalid);
    }
    let signature =
        hex::decode(hex_signature.trim()).map_err(|_| WebhookError::SignatureInvalid)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes())
        .map_err(|_| WebhookError::SignatureInvalid)?;
    mac.update(body);
    // `verify_slice` compares in constant time.
    mac.verify_slice(&signature)
        .map_err(|_| WebhookError::SignatureInvalid)
}

/// A fresh Jira 9 path token: 32 random bytes, hex.
pub fn new_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// What is stored of a token: its SHA-256, hex. The token itself is long and random, so a
/// plain hash is enough; it is never stored or logged.
pub fn token_digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Whether a presented path token is the registered one, compared in constant time.
pub async fn check_token(pool: &PgPool, presented: &str) -> Result<(), WebhookError> {
    let stored: Option<String> =
        sqlx::query_scalar("SELECT value #>> '{}' FROM settings WHERE key = $1")
            .bind(TOKEN_SETTING)
            .fetch_optional(pool)
            .await?;
    let Some(stored) = stored.and_then(|hex_text| hex::decode(hex_text).ok()) else {
        return Err(WebhookError::UnknownToken);
    };
    let presented = Sha256::digest(presented.as_bytes());
    if constant_time_eq(&presented, &stored) {
        Ok(())
    } else {
        Err(WebhookError::UnknownToken)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let difference = a
        .iter()
        .zip(b)
        .fold(0u8, |acc, (x, y)| acc | black_box(x ^ y));
    black_box(difference) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_checked() {
        let secret = SecretString::from("s3cret");
        let body = br#"{"webhookEvent":"x"}"#;
        let mut mac = Hmac::<Sha256>::new_from_slice(b"s3cret").unwrap();
        mac.update(body);
        let good = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert!(verify_signature(&secret, body, Some(&good)).is_ok());
        assert!(verify_signature(&secret, body, Some(&good.to_uppercase())).is_ok());
        assert!(matches!(
            verify_signature(&secret, body, None),
            Err(WebhookError::SignatureMissing)
        ));
        for bad in ["sha256=00", "sha1=abcd", "garbage", "sha256=zz"] {
            assert!(matches!(
                verify_signature(&secret, body, Some(bad)),
                Err(WebhookError::SignatureInvalid)
            ));
        }
        assert!(verify_signature(&secret, b"{}", Some(&good)).is_err());
    }

    #[test]
    fn tokens_compare_by_digest() {
        let token = new_token();
        assert_eq!(token.len(), 64);
        assert_ne!(token, new_token());
        let digest = hex::decode(token_digest(&token)).unwrap();
        assert!(constant_time_eq(&Sha256::digest(token.as_bytes()), &digest));
        assert!(!constant_time_eq(&Sha256::digest(b"other"), &digest));
        assert!(!constant_time_eq(b"ab", b"abc"));
    }
}
