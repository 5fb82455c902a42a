//! Test-only keys and certificates (`fixtures/`, see its README) and helpers to use them:
//! a test app registers [`APP_CERT_PEM`] and signs client assertions with [`APP_KEY_PEM`];
//! [`OTHER_KEY_PEM`] is "a wrong key". They protect nothing and must never be registered with
//! a real tenant.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::identity::Certificate;

pub const APP_CERT_PEM: &str = include_str!("../fixtures/app-cert.pem");
/// PKCS#1 (`RSA PRIVATE KEY`).
pub const APP_KEY_PEM: &str = include_str!("../fixtures/app-key.pem");
pub const OTHER_CERT_PEM: &str = include_str!("../fixtures/other-cert.pem");
/// PKCS#1 (`RSA PRIVATE KEY`).
pub const OTHER_KEY_PEM: &str = include_str!("../fixtures/other-key.pem");

/// The DER inside a single-block PEM, e.g. a PKCS#1 key for
/// `jsonwebtoken::EncodingKey::from_rsa_der`.
pub fn pem_der(pem: &str) -> Vec<u8> {
    let body: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .flat_map(|l| l.chars())
        .filter(|c| !c.is_whitespace())
        .collect();
    STANDARD.decode(body).expect("fixture PEM is base64")
}

/// `(x5t, x5t#S256)` of a PEM certificate, as a client puts them in an assertion's header.
pub fn thumbprints(cert_pem: &str) -> (String, String) {
    let cert = Certificate::from_pem(cert_pem).expect("a PEM certificate");
    (cert.x5t, cert.x5t_s256)
}
