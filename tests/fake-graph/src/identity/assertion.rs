//! Client assertions (`client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`).
//!
//! Follows "Microsoft identity platform application authentication certificate credentials"
//! (https://learn.microsoft.com/entra/identity-platform/certificate-credentials), section
//! "Assertion format": header `alg` RS256 (with `x5t`, the SHA-1 thumbprint) or PS256 (with
//! `x5t#S256`, the SHA-256 thumbprint), `typ` JWT; claims `aud` = the token endpoint
//! (`https://login.microsoftonline.com/{tenantId}/oauth2/v2.0/token`), `iss` = `sub` = the
//! client id, `exp`, `nbf`, `jti` (a GUID, unique), `iat`. Errors are `invalid_client` (401)
//! with the AADSTS codes of "Microsoft Entra authentication and authorization error codes"
//! (https://learn.microsoft.com/entra/identity-platform/reference-error-codes) where one fits:
//! 700027 (signature validation failed; the service adds "Reason - The key was not found."
//! when no registered certificate has the thumbprint), 700024 (not within its valid time range,
//! as the service answers), 50048 (SubjectMismatchesIssuer), 50027 (InvalidJwtToken: malformed,
//! unexpected audience, missing claim). Guessed, not documented: 700021 for an `iss` that is
//! not the `client_id`, 50013 (InvalidAssertion) for a reused `jti`, and the 300 s clock skew.

use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::Deserialize;
use serde_json::Value;

use super::StsError;
use crate::world::{App, World};

/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY: i64 = 300;

#[derive(Debug, Deserialize)]
struct Claims {
    #[serde(default)]
    aud: Value,
    iss: Option<String>,
    sub: Option<String>,
    exp: Option<i64>,
    nbf: Option<i64>,
    jti: Option<String>,
}

fn invalid(code: u32, message: impl Into<String>) -> StsError {
    StsError::new(401, "invalid_client", code, message)
}

/// Checks `assertion` for `app`; `audiences` are the token endpoint URLs it may name.
pub fn verify(
    world: &mut World,
    app: &App,
    assertion: &str,
    audiences: &[String],
) -> Result<(), StsError> {
    let header = decode_header(assertion).map_err(|e| {
        invalid(
            50027,
            format!("Invalid JWT token. Token format not valid: {e}."),
        )
    })?;
    if !matches!(header.alg, Algorithm::RS256 | Algorithm::PS256) {
        return Err(invalid(
            50027,
            format!("Invalid JWT token. Unsupported algorithm {:?}.", header.alg),
        ));
    }
    let thumbprint = header
        .x5t_s256
        .clone()
        .or_else(|| header.x5t.clone())
        .unwrap_or_default();
    let certificate = app
        .certificates
        .iter()
        .find(|c| {
            header
                .x5t_s256
                .as_deref()
                .map_or(header.x5t.as_deref() == Some(&c.x5t), |t| t == c.x5t_s256)
        })
        .ok_or_else(|| {
            invalid(
                700027,
                format!(
                    "Client assertion failed signature validation. [Reason - The key was not \
                     found., Thumbprint of key used by client: '{thumbprint}']"
                ),
            )
        })?;
    let mut validation = Validation::new(header.alg);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let key = DecodingKey::from_rsa_der(&certificate.rsa_public_key);
    let claims = decode::<Claims>(assertion, &key, &validation)
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => invalid(
                700027,
                "Client assertion failed signature validation. [Reason - The provided signature \
                 value did not match the expected signature value.]",
            ),
            _ => invalid(50027, format!("Invalid JWT token: {e}.")),
        })?
        .claims;

    let named: Vec<&str> = match &claims.aud {
        Value::String(s) => vec![s.as_str()],
        Value::Array(values) => values.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !named.iter().any(|aud| audiences.iter().any(|a| a == aud)) {
        return Err(invalid(
            50027,
            format!(
                "Invalid JWT token. The audience claim {:?} is not the token endpoint {}.",
                claims.aud, audiences[0]
            ),
        ));
    }
    let (Some(iss), Some(sub)) = (claims.iss.as_deref(), claims.sub.as_deref()) else {
        return Err(invalid(
            50027,
            "Invalid JWT token. The iss and sub claims are required.",
        ));
    };
    if iss != sub {
        return Err(invalid(
            50048,
            "Subject mismatches Issuer claim in the client assertion.",
        ));
    }
    if iss != app.client_id {
        return Err(invalid(
            700021,
            "Client assertion application identifier doesn't match 'client_id' parameter.",
        ));
    }
    let now = world.now();
    let Some(exp) = claims.exp else {
        return Err(invalid(
            50027,
            "Invalid JWT token. The exp claim is required.",
        ));
    };
    let nbf = claims.nbf.unwrap_or(i64::MIN);
    if exp + LEEWAY < now || nbf - LEEWAY > now {
        return Err(invalid(
            700024,
            format!(
                "Client assertion is not within its valid time range. Current time: {}, \
                 assertion valid from {}, expiry time of assertion {}.",
                crate::clock::iso(now),
                crate::clock::iso(claims.nbf.unwrap_or(0)),
                crate::clock::iso(exp)
            ),
        ));
    }
    let Some(jti) = claims.jti else {
        return Err(invalid(
            50027,
            "Invalid JWT token. The jti claim is required.",
        ));
    };
    if !world.used_jtis.insert((app.client_id.clone(), jti.clone())) {
        return Err(invalid(
            50013,
            format!("Assertion is invalid: the jti '{jti}' was already used."),
        ));
    }
    Ok(())
}
