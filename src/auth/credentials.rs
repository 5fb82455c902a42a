//! What a request presents to prove who it is, read from its headers without logging any of it.

use actix_web::HttpRequest;
use actix_web::http::header::{AUTHORIZATION, COOKIE};
use secrecy::SecretString;

use super::AuthError;

/// Longest credential accepted; Jira PATs are ~44 characters, session cookies a few hundred.
pub const MAX_CREDENTIAL_BYTES: usize = 8 * 1024;

/// The name of filebridge's own session cookie.
pub const SESSION_COOKIE: &str = "filebridge_session";

/// Credentials found on a request.
#[derive(Default)]
pub struct Presented {
    /// `Authorization: Bearer <Jira personal access token>`.
    pub bearer: Option<SecretString>,
    /// Every `filebridge_session` value (a browser may send several, one per cookie path).
    pub sessions: Vec<String>,
    /// The Jira cookies named in `jira.forward_cookies`, as a `Cookie` header value.
    pub jira_cookies: Option<SecretString>,
}

impl Presented {
    pub fn from_request(req: &HttpRequest, forward: &[String]) -> Result<Self, AuthError> {
        let mut presented = Presented::default();
        if let Some(value) = req.headers().get(AUTHORIZATION) {
            if value.len() > MAX_CREDENTIAL_BYTES {
                return Err(AuthError::CredentialTooLarge);
            }
            let text = value
                .to_str()
                .map_err(|_| AuthError::MalformedAuthorization)?;
            let (scheme, token) = text
                .trim()
                .split_once(' ')
                .ok_or(AuthError::MalformedAuthorization)?;
            let token = token.trim();
            if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
                return Err(AuthError::MalformedAuthorization);
            }
            presented.bearer = Some(SecretString::from(token.to_string()));
        }

        let mut forwarded = Vec::new();
        // Only the cookies filebridge uses count: a browser also sends Jira's other cookies.
        let mut cookie_bytes = 0;
        for header in req.headers().get_all(COOKIE) {
            // Cookie headers that are not text carry nothing we could use.
            let Ok(text) = header.to_str() else { continue };
            for pair in text.split(';') {
                let Some((name, value)) = pair.trim().split_once('=') else {
                    continue;
                };
                let (name, value) = (name.trim(), value.trim());
                if value.is_empty() {
                    continue;
                }
                let used = name == SESSION_COOKIE || forward.iter().any(|f| f == name);
                if !used {
                    continue;
                }
                cookie_bytes += value.len();
                if cookie_bytes > MAX_CREDENTIAL_BYTES {
                    return Err(AuthError::CredentialTooLarge);
                }
                if name == SESSION_COOKIE {
                    presented.sessions.push(value.to_string());
                } else {
                    forwarded.push(format!("{name}={value}"));
                }
            }
        }
        if !forwarded.is_empty() {
            // A stable order, so the same browser maps to the same cache entry.
            forwarded.sort();
            presented.jira_cookies = Some(SecretString::from(forwarded.join("; ")));
        }
        Ok(presented)
    }

    /// True when the request authenticates with cookies a browser attaches by itself, which is
    /// what cross-site request forgery abuses.
    pub fn uses_cookies(&self) -> bool {
        self.bearer.is_none() && (!self.sessions.is_empty() || self.jira_cookies.is_some())
    }
}
