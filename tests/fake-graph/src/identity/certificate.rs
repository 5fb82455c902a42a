//! Certificates registered for an app (Entra ID's `keyCredentials`): the RSA public key and
//! the thumbprints a client assertion names it by.
//!
//! Follows "Microsoft identity platform application authentication certificate credentials"
//! (https://learn.microsoft.com/entra/identity-platform/certificate-credentials): `x5t` is the
//! base64url SHA-1 thumbprint of the certificate's DER encoding, `x5t#S256` the base64url
//! SHA-256 thumbprint. Only RSA keys are accepted, as Entra ID takes for assertions signed
//! RS256 or PS256. The DER walk below reads just enough of an X.509 certificate to find its
//! SubjectPublicKeyInfo; the certificate's own signature and validity are not checked (Entra
//! ID checks neither for self-signed credentials either, beyond the registration's dates).

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// `rsaEncryption`, 1.2.840.113549.1.1.1.
const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];

#[derive(Debug, Clone)]
pub struct Certificate {
    /// base64url SHA-1 of the DER.
    pub x5t: String,
    /// base64url SHA-256 of the DER.
    pub x5t_s256: String,
    /// The key as PKCS#1 `RSAPublicKey` DER (what `DecodingKey::from_rsa_der` takes).
    pub rsa_public_key: Vec<u8>,
}

impl Certificate {
    /// Reads a PEM `CERTIFICATE`, or a PEM `PUBLIC KEY` (SubjectPublicKeyInfo). A bare public
    /// key has no certificate to hash, so the fake's convention is that its thumbprints are
    /// those of the SubjectPublicKeyInfo DER.
    pub fn from_pem(pem: &str) -> Result<Certificate, String> {
        let (label, der) = pem_block(pem)?;
        let spki = match label.as_str() {
            "CERTIFICATE" => certificate_spki(&der).ok_or("not an X.509 certificate")?,
            "PUBLIC KEY" => der.as_slice(),
            other => {
                return Err(format!(
                    "PEM {other} is neither a certificate nor a public key"
                ));
            }
        };
        let rsa_public_key = rsa_from_spki(spki).ok_or("not an RSA public key")?.to_vec();
        Ok(Certificate {
            x5t: URL_SAFE_NO_PAD.encode(Sha1::digest(&der)),
            x5t_s256: URL_SAFE_NO_PAD.encode(Sha256::digest(&der)),
            rsa_public_key,
        })
    }
}

/// The first PEM block: its label and decoded bytes.
fn pem_block(pem: &str) -> Result<(String, Vec<u8>), String> {
    let start = pem.find("-----BEGIN ").ok_or("no PEM block")?;
    let rest = &pem[start + 11..];
    let label_end = rest.find("-----").ok_or("bad PEM header")?;
    let label = rest[..label_end].to_owned();
    let body_start = label_end + 5;
    let end_marker = format!("-----END {label}-----");
    let body_end = rest.find(&end_marker).ok_or("no PEM footer")?;
    let body: String = rest[body_start..body_end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let der = STANDARD
        .decode(body)
        .map_err(|e| format!("bad PEM base64: {e}"))?;
    Ok((label, der))
}

/// One DER element: (tag, contents, the whole element, what follows it).
type Element<'a> = (u8, &'a [u8], &'a [u8], &'a [u8]);

fn element(input: &[u8]) -> Option<Element<'_>> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    let header = input.len() - rest.len();
    Some((tag, &rest[..len], &input[..header + len], &rest[len..]))
}

/// `Certificate ::= SEQUENCE { tbsCertificate, ... }`; `TBSCertificate ::= SEQUENCE { [0]
/// version OPTIONAL, serialNumber, signature, issuer, validity, subject,
/// subjectPublicKeyInfo, ... }`.
fn certificate_spki(der: &[u8]) -> Option<&[u8]> {
    let (0x30, certificate, _, _) = element(der)? else {
        return None;
    };
    let (0x30, tbs, _, _) = element(certificate)? else {
        return None;
    };
    let mut rest = tbs;
    if rest.first() == Some(&0xa0) {
        rest = element(rest)?.3;
    }
    for _ in 0..5 {
        rest = element(rest)?.3;
    }
    let (0x30, _, spki, _) = element(rest)? else {
        return None;
    };
    Some(spki)
}

/// `SubjectPublicKeyInfo ::= SEQUENCE { algorithm AlgorithmIdentifier, subjectPublicKey BIT
/// STRING }`, where for RSA the bit string holds PKCS#1 `RSAPublicKey`.
fn rsa_from_spki(spki: &[u8]) -> Option<&[u8]> {
    let (0x30, body, _, _) = element(spki)? else {
        return None;
    };
    let (0x30, algorithm, _, rest) = element(body)? else {
        return None;
    };
    let (0x06, oid, _, _) = element(algorithm)? else {
        return None;
    };
    if oid != RSA_ENCRYPTION {
        return None;
    }
    let (0x03, bits, _, _) = element(rest)? else {
        return None;
    };
    match bits.split_first() {
        Some((0, key)) => Some(key),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_fixture_certificate() {
        let cert = Certificate::from_pem(crate::fixtures::APP_CERT_PEM).unwrap();
        assert_eq!(cert.x5t.len(), 27);
        assert_eq!(cert.x5t_s256.len(), 43);
        // PKCS#1 RSAPublicKey: SEQUENCE { modulus INTEGER, publicExponent INTEGER }.
        assert_eq!(cert.rsa_public_key[0], 0x30);
        assert!(Certificate::from_pem("-----BEGIN FOO-----\nAA==\n-----END FOO-----").is_err());
    }
}
