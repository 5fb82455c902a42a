//! Who is calling: a Jira personal access token or Jira session cookies, verified by Jira
//! itself (`/rest/api/2/myself`), or filebridge's own session cookie issued after that.
//!
//! Jira's answer is cached briefly under an HMAC of the credential (the credential itself is
//! never stored), and concurrent first requests with one credential share one call to Jira.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use moka::future::Cache;
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use super::credentials::Presented;
use super::session::{SessionKeys, derive_key};
use super::{AuthError, User};
use crate::config::MasterKey;
use crate::jira::{Credential, JiraClient, JiraError};

/// Jira's global permissions that make a user a filebridge administrator.
const ADMIN_PERMISSIONS: [&str; 2] = ["ADMINISTER", "SYSTEM_ADMIN"];

/// The outcome of authentication.
pub struct Authenticated {
    pub user: Arc<User>,
    /// A fresh session token when the user was verified by Jira on this request.
    pub new_session: Option<String>,
}

pub struct IdentityService {
    jira: JiraClient,
    sessions: SessionKeys,
    cache: Cache<[u8; 32], Arc<User>>,
    cache_key: [u8; 32],
    admin_groups: Vec<String>,
    forward_cookies: Vec<String>,
}

impl IdentityService {
    pub fn new(
        jira: JiraClient,
        sessions: SessionKeys,
        master: &MasterKey,
        cache_ttl: Duration,
        admin_groups: Vec<String>,
        forward_cookies: Vec<String>,
    ) -> Self {
        Self {
            jira,
            sessions,
            cache: Cache::builder()
                .max_capacity(50_000)
                .time_to_live(cache_ttl)
                .build(),
            cache_key: derive_key(master, b"filebridge/identity-cache/v1"),
            admin_groups,
            forward_cookies,
        }
    }

    pub fn sessions(&self) -> &SessionKeys {
        &self.sessions
    }

    pub fn forward_cookies(&self) -> &[String] {
        &self.forward_cookies
    }

    /// Order: an explicit bearer token; else a valid filebridge session; else Jira cookies.
    /// An invalid session with nothing else to fall back on is a 401, never a redirect.
    pub async fn authenticate(&self, presented: Presented) -> Result<Authenticated, AuthError> {
        if let Some(token) = presented.bearer {
            return self
                .via_jira(b"bearer", Credential::Bearer(token), None)
                .await;
        }
        let binding = presented
            .jira_cookies
            .as_ref()
            .map(|cookies| hex::encode(&self.fingerprint(b"cookies", cookies)[..16]));
        let mut session_problem = None;
        for token in &presented.sessions {
            match self.sessions.verify(token) {
                Ok((user, bound)) if binding.is_none() || bound == binding => {
                    return Ok(Authenticated {
                        user: Arc::new(user),
                        new_session: None,
                    });
                }
                Ok(_) => session_problem = Some("started with other Jira cookies"),
                Err(reason) => session_problem = Some(reason),
            }
        }
        if let Some(reason) = session_problem {
            tracing::info!(reason, "filebridge session cookie refused");
        }
        if let Some(cookies) = presented.jira_cookies {
            return self
                .via_jira(b"cookies", Credential::Cookies(cookies), binding)
                .await;
        }
        Err(match session_problem {
            Some(reason) => AuthError::SessionInvalid(reason),
            None => AuthError::Missing,
        })
    }

    async fn via_jira(
        &self,
        kind: &[u8],
        credential: Credential,
        binding: Option<String>,
    ) -> Result<Authenticated, AuthError> {
        let secret = match &credential {
            Credential::Bearer(s) | Credential::Cookies(s) => s,
        };
        let key = self.fingerprint(kind, secret);
        let user = self
            .cache
            .try_get_with(key, self.ask_jira(&credential))
            .await
            .map_err(|e| (*e).clone())?;
        let new_session = Some(self.sessions.issue(&user, binding)?);
        Ok(Authenticated { user, new_session })
    }

    async fn ask_jira(&self, credential: &Credential) -> Result<Arc<User>, AuthError> {
        let (myself, permissions) = tokio::try_join!(
            self.jira.myself(credential),
            self.jira.global_permissions(credential)
        )
        .map_err(|e| {
            let error = AuthError::from(e);
            if !matches!(error, AuthError::Rejected) {
                tracing::warn!(error = %error, "could not verify a user with Jira");
            }
            error
        })?;
        let is_admin = ADMIN_PERMISSIONS.iter().any(|p| permissions.contains(*p))
            || myself
                .groups
                .items
                .iter()
                .any(|g| self.admin_groups.iter().any(|a| a == &g.name));
        Ok(Arc::new(User {
            key: myself.key,
            name: myself.name,
            display_name: myself.display_name,
            is_admin,
        }))
    }

    /// A keyed hash of a credential: the cache key, and (for Jira cookies) the session binding.
    fn fingerprint(&self, kind: &[u8], secret: &SecretString) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.cache_key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(kind);
        mac.update(&[0]);
        mac.update(secret.expose_secret().as_bytes());
        mac.finalize().into_bytes().into()
    }
}

impl From<JiraError> for AuthError {
    fn from(error: JiraError) -> Self {
        match error {
            JiraError::Unauthorized => AuthError::Rejected,
            JiraError::Timeout(_) | JiraError::Unreachable(_) | JiraError::Egress(_) => {
                AuthError::JiraUnavailable { retry_after: None }
            }
            JiraError::Unavailable { retry_after, .. } => {
                AuthError::JiraUnavailable { retry_after }
            }
            JiraError::BadResponse(detail) => AuthError::JiraBadResponse(detail),
        }
    }
}
