//! AWS Signature Version 4 in the `Authorization` header.
//!
//! Header signing rather than presigned URLs: it is what the AWS SDKs send, every
//! S3-compatible store accepts it, and it is the form moto verifies when signature checking
//! is on (a presigned URL is not checked there, so a wrong secret would go unnoticed in the
//! tests). Public so the test harness can make the few signed calls filebridge itself never
//! makes (creating a bucket, listing multipart uploads).

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::macros::format_description;
use url::Url;

/// The payload hash sent for bodies that are streamed or too large to hash cheaply; S3
/// accepts it over any connection and TLS protects the bytes in transit.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// The hex SHA-256 of a body, for `x-amz-content-sha256` when the body is signed.
pub fn payload_hash(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// What a request is signed with.
#[derive(Clone)]
pub struct SigningKey {
    pub access_key_id: String,
    pub secret_access_key: SecretString,
    pub region: String,
    /// `s3` for S3.
    pub service: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret never reaches a log line.
        f.debug_struct("SigningKey")
            .field("access_key_id", &self.access_key_id)
            .field("region", &self.region)
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

/// Signing failed; only possible with a clock outside the representable range.
#[derive(Debug, thiserror::Error)]
#[error("could not sign the request: {0}")]
pub struct SignError(String);

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], data: &[u8]) -> Result<Vec<u8>, SignError> {
    let mut mac = HmacSha256::new_from_slice(key).map_err(|e| SignError(e.to_string()))?;
    mac.update(data);
    Ok(mac.finalize().into_bytes().to_vec())
}

impl SigningKey {
    /// Signs a request and returns the headers to add to it: `x-amz-date`,
    /// `x-amz-content-sha256` and `authorization`.
    ///
    /// `url` must already be in S3's canonical encoding (path segments and query keys and
    /// values percent-encoded except `A-Z a-z 0-9 - . _ ~`), because the path and query are
    /// signed exactly as they will be sent. `headers` are the other headers to sign, with
    /// lower-case names; each must be sent with the same value. `host` is always signed.
    pub fn sign(
        &self,
        method: &str,
        url: &Url,
        headers: &[(&str, &str)],
        payload_sha256: &str,
        at: OffsetDateTime,
    ) -> Result<Vec<(&'static str, String)>, SignError> {
        let at = at.to_offset(time::UtcOffset::UTC);
        let amz_date = at
            .format(format_description!(
                "[year][month][day]T[hour][minute][second]Z"
            ))
            .map_err(|e| SignError(e.to_string()))?;
        let day = &amz_date[..8];

        let host = match url.port() {
            Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_string(),
        };
        let mut signed: Vec<(String, String)> = vec![
            ("host".into(), host),
            ("x-amz-content-sha256".into(), payload_sha256.into()),
            ("x-amz-date".into(), amz_date.clone()),
        ];
        for (name, value) in headers {
            signed.push((name.to_ascii_lowercase(), trim_all(value)));
        }
        signed.sort();
        let canonical_headers: String = signed
            .iter()
            .map(|(name, value)| format!("{name}:{value}\n"))
            .collect();
        let signed_names = signed
            .iter()
            .map(|(name, _)| name.as_str())
            .collect::<Vec<_>>()
            .join(";");

        let canonical_request = format!(
            "{method}\n{path}\n{query}\n{canonical_headers}\n{signed_names}\n{payload_sha256}",
            path = url.path(),
            query = canonical_query(url.query().unwrap_or("")),
        );
        let scope = format!("{day}/{}/{}/aws4_request", self.region, self.service);
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
            hex::encode(Sha256::digest(canonical_request.as_bytes()))
        );

        let secret = format!("AWS4{}", self.secret_access_key.expose_secret());
        let k_date = hmac(secret.as_bytes(), day.as_bytes())?;
        let k_region = hmac(&k_date, self.region.as_bytes())?;
        let k_service = hmac(&k_region, self.service.as_bytes())?;
        let k_signing = hmac(&k_service, b"aws4_request")?;
        let signature = hex::encode(hmac(&k_signing, string_to_sign.as_bytes())?);

        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_names}, Signature={signature}",
            self.access_key_id
        );
        Ok(vec![
            ("x-amz-date", amz_date),
            ("x-amz-content-sha256", payload_sha256.to_string()),
            ("authorization", authorization),
        ])
    }
}

/// The query as sent, sorted by key then value: callers already encode it canonically.
fn canonical_query(query: &str) -> String {
    if query.is_empty() {
        return String::new();
    }
    let mut pairs: Vec<(&str, &str)> = query
        .split('&')
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// SigV4's "Trimall": no surrounding spaces, inner runs of spaces collapsed.
fn trim_all(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key of the examples in AWS's "Signature Calculations for the Authorization
    /// Header" (S3 API reference).
    fn example_key() -> SigningKey {
        SigningKey {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: SecretString::from("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
            region: "us-east-1".into(),
            service: "s3".into(),
        }
    }

    fn example_time() -> OffsetDateTime {
        time::macros::datetime!(2013-05-24 00:00:00 UTC)
    }

    fn authorization(headers: Vec<(&'static str, String)>) -> String {
        headers
            .into_iter()
            .find(|(name, _)| *name == "authorization")
            .map(|(_, value)| value)
            .unwrap()
    }

    #[test]
    fn matches_the_aws_get_object_example() {
        let url = Url::parse("https://examplebucket.s3.amazonaws.com/test.txt").unwrap();
        let headers = example_key()
            .sign(
                "GET",
                &url,
                &[("range", "bytes=0-9")],
                &payload_hash(b""),
                example_time(),
            )
            .unwrap();
        assert_eq!(
            authorization(headers),
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    #[test]
    fn matches_the_aws_list_objects_example_with_a_query() {
        // The query is deliberately out of order: signing sorts it.
        let url =
            Url::parse("https://examplebucket.s3.amazonaws.com/?prefix=J&max-keys=2").unwrap();
        let headers = example_key()
            .sign("GET", &url, &[], &payload_hash(b""), example_time())
            .unwrap();
        assert!(authorization(headers).ends_with(
            "SignedHeaders=host;x-amz-content-sha256;x-amz-date, \
             Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
        ));
    }

    #[test]
    fn the_secret_is_not_in_debug_output() {
        let shown = format!("{:?}", example_key());
        assert!(shown.contains("AKIAIOSFODNN7EXAMPLE"));
        assert!(!shown.contains("bPxRfiCY"));
    }

    #[test]
    fn a_port_is_part_of_the_signed_host() {
        let key = example_key();
        let with_port = Url::parse("http://127.0.0.1:9000/b/k").unwrap();
        let without = Url::parse("http://127.0.0.1/b/k").unwrap();
        let a = authorization(
            key.sign("GET", &with_port, &[], UNSIGNED_PAYLOAD, example_time())
                .unwrap(),
        );
        let b = authorization(
            key.sign("GET", &without, &[], UNSIGNED_PAYLOAD, example_time())
                .unwrap(),
        );
        assert_ne!(a, b);
    }
}
