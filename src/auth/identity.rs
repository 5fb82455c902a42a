//! Who is calling: a Jira personal access token or Jira session cookies, verified by Jira
//! itself (`/rest/api/2/myself`), or filebridge's own session cookie issued after that.
//!
//! Jira's answer is cached briefly under an HMAC of the credential (the credential itself is
//! never stored), and concurrent first requests with one credential share one call to Jira.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hmac::{Hmac, Mac};
use moka::future::Cache;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use super::credentials::Presented;
use super::session::{SessionKeys, derive_key};
use super::{ADMIN_PERMISSIONS, AuthError, User};
use crate::config::MasterKey;
use crate::jira::{Credential, JiraClient, JiraError};
use crate::metrics::CacheName;

/// The outcome of authentication.
pub struct Authenticated {
    pub user: Arc<User>,
    /// A fresh session token when the user was verified by Jira on this request.
    pub new_session: Option<String>,
    /// The Jira credential the request carried, if any, to ask Jira as this user (per-issue
    /// permissions). It lives only as long as the request.
    pub jira: Option<JiraAccess>,
}

/// A Jira credential from the current request, with its keyed fingerprint (the cache key).
#[derive(Clone)]
pub struct JiraAccess {
    pub credential: Arc<Credential>,
    pub fingerprint: [u8; 32],
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
            let access = self.access(b"bearer", Credential::Bearer(token));
            return self.via_jira(access, None).await;
        }
        let access = presented
            .jira_cookies
            .map(|cookies| self.access(b"cookies", Credential::Cookies(cookies)));
        let binding = access.as_ref().map(|a| hex::encode(&a.fingerprint[..16]));
        let mut session_problem = None;
        for token in &presented.sessions {
            match self.sessions.verify(token) {
                // A session started from Jira cookies counts only beside those same cookies; one
                // started from a token only where no Jira cookies are sent.
                Ok((user, bound)) if bound == binding => {
                    return Ok(Authenticated {
                        user: Arc::new(user),
                        new_session: None,
                        jira: access,
                    });
                }
                Ok(_) => session_problem = Some("not started with these Jira cookies"),
                Err(reason) => session_problem = Some(reason),
            }
        }
        if let Some(reason) = session_problem {
            tracing::info!(reason, "filebridge session cookie refused");
        }
        if let Some(access) = access {
            return self.via_jira(access, binding).await;
        }
        Err(match session_problem {
            Some(reason) => AuthError::SessionInvalid(reason),
            None => AuthError::Missing,
        })
    }

    async fn via_jira(
        &self,
        access: JiraAccess,
        binding: Option<String>,
    ) -> Result<Authenticated, AuthError> {
        // Set only by the lookup that asks Jira; concurrent lookups sharing it are hits.
        let asked = AtomicBool::new(false);
        let user = self
            .cache
            .try_get_with(access.fingerprint, async {
                asked.store(true, Ordering::Relaxed);
                self.ask_jira(&access.credential).await
            })
            .await
            .map_err(|e| (*e).clone());
        self.jira
            .metrics()
            .cache_lookup(CacheName::Identity, !asked.load(Ordering::Relaxed));
        let user = user?;
        let new_session = Some(self.sessions.issue(&user, binding)?);
        Ok(Authenticated {
            user,
            new_session,
            jira: Some(access),
        })
    }

    fn access(&self, kind: &[u8], credential: Credential) -> JiraAccess {
        let secret = match &credential {
            Credential::Bearer(s) | Credential::Cookies(s) => s,
        };
        JiraAccess {
            fingerprint: self.fingerprint(kind, secret),
            credential: Arc::new(credential),
        }
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
        // HMAC accepts keys of any length, so this is `KeyInit::new` in all but name.
        let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(&self.cache_key) else {
            return Sha256::digest(secret.expose_secret().as_bytes()).into();
        };
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
            // `myself` and `mypermissions` without context never answer 404.
            JiraError::NotFound => AuthError::JiraBadResponse("unexpected 404".into()),
        }
    }
}
