//! Users' own storage accounts, for connections in delegated mode ("mirror storage
//! permissions"): each Jira user connects their Microsoft account once (authorization code
//! with PKCE), filebridge keeps the refresh token encrypted under the master key, and every
//! storage call for that user carries that user's token, so the storage applies its own
//! permissions on top of Jira's.
//!
//! - `store`: the tables (refresh tokens, sign-ins in progress);
//! - `tokens`: a user's access token, refreshed once at a time across instances;
//! - this module: the sign-in (begin, finish) and the links users follow.

pub mod store;
pub mod tokens;

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::SecretString;
use sqlx::PgPool;
use url::Url;
use uuid::Uuid;

use crate::audit::AuditError;
use crate::secrets::{SecretCipher, SecretsError};
use crate::storage::StorageError;
use crate::storage::sharepoint::{Delegated, GrantError};

pub use tokens::UserTokens;

/// A sign-in must come back within this (Microsoft's own sign-in pages time out sooner).
pub const STATE_LIFETIME: time::Duration = time::Duration::minutes(10);
/// The callback's path below the base path (registered as the app's redirect URI).
pub const CALLBACK_PATH: &str = "/oauth/microsoft/callback";

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("no such connection, or it does not use each user's own account")]
    NotDelegated,
    /// The state is unknown, expired, already used, or not this browser's or user's.
    #[error(
        "this sign-in is not valid (expired, already used, or started by someone else); connect again"
    )]
    BadState,
    #[error("Microsoft did not complete the sign-in: {0}")]
    SignInFailed(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Audit(#[from] AuditError),
}

impl From<GrantError> for AccountError {
    fn from(error: GrantError) -> Self {
        match error {
            GrantError::Revoked(why) => AccountError::SignInFailed(why),
            GrantError::Storage(e) => AccountError::Storage(e),
        }
    }
}

/// The addresses users and Microsoft are sent to, from `server.public_url`.
#[derive(Debug, Clone)]
pub struct Links {
    /// `server.public_url` without a trailing `/` (it includes the base path).
    public: String,
}

impl Links {
    pub fn new(public_url: &Url) -> Self {
        Self {
            public: public_url.as_str().trim_end_matches('/').to_string(),
        }
    }

    pub fn connect_url(&self, connection_id: Uuid) -> String {
        format!(
            "{}/api/v1/storage-accounts/{connection_id}/connect",
            self.public
        )
    }

    /// `connect_url` asking to go back to `return_to` afterwards, if any.
    pub fn connect_url_returning(&self, connection_id: Uuid, return_to: Option<&str>) -> String {
        let url = self.connect_url(connection_id);
        match return_to {
            Some(path) => {
                let query = url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("return_to", path)
                    .finish();
                format!("{url}?{query}")
            }
            None => url,
        }
    }

    /// The redirect URI to register for the Entra app.
    pub fn redirect_uri(&self) -> String {
        format!("{}{CALLBACK_PATH}", self.public)
    }

    /// Where a finished sign-in goes: `return_to` (a path of this filebridge), else nowhere.
    pub fn return_url(&self, return_to: Option<&str>) -> Option<String> {
        return_to.map(|path| format!("{}{path}", self.public))
    }
}

/// A `return_to` is kept only if it is a plain path on this filebridge (`/issues/PROJ-1`):
/// an open redirect to another site would make the sign-in a phishing tool.
pub fn safe_return_to(path: &str) -> Option<String> {
    let plain = path.starts_with('/')
        && !path.starts_with("//")
        && path.len() <= 512
        && path
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '\\' && c != '@');
    plain.then(|| path.to_string())
}

/// Starts a sign-in for `user_key`: records the state with a fresh PKCE verifier and returns
/// the state (for the browser-binding cookie) and the authorize URL.
pub async fn begin(
    pool: &PgPool,
    cipher: &SecretCipher,
    app: &Delegated,
    links: &Links,
    connection_id: Uuid,
    user_key: &str,
    return_to: Option<String>,
) -> Result<(String, Url), AccountError> {
    let state = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    // 64 random bytes: a verifier of 86 characters (RFC 7636 asks for 43 to 128).
    let mut raw = [0u8; 64];
    rand::fill(&mut raw[..]);
    let verifier = SecretString::from(URL_SAFE_NO_PAD.encode(raw));
    let url = app.authorize(&links.redirect_uri(), &state, &verifier);
    let pending = store::PendingSignIn {
        connection_id,
        user_key: user_key.to_string(),
        return_to,
        verifier,
    };
    let mut conn = pool.acquire().await?;
    store::put_state(&mut conn, cipher, &state, &pending, STATE_LIFETIME).await?;
    Ok((state, url))
}

/// An account connected by [`finish`].
pub struct Connected {
    pub connection_id: Uuid,
    pub user_key: String,
    pub account: Option<String>,
    pub return_to: Option<String>,
}

/// Redeems the code of a sign-in whose state was taken (checked by the caller against the
/// browser and user) and saves the refresh token in `tx`.
pub async fn finish(
    tx: &mut sqlx::PgConnection,
    cipher: &SecretCipher,
    app: &Arc<Delegated>,
    links: &Links,
    pending: store::PendingSignIn,
    code: &str,
) -> Result<Connected, AccountError> {
    let grant = app
        .redeem(code, &pending.verifier, &links.redirect_uri())
        .await?;
    let refresh_token = grant.refresh_token.ok_or_else(|| {
        AccountError::SignInFailed("no refresh token was issued (offline_access refused?)".into())
    })?;
    store::save(
        tx,
        cipher,
        pending.connection_id,
        &pending.user_key,
        &refresh_token,
        grant.account.as_deref(),
    )
    .await?;
    Ok(Connected {
        connection_id: pending.connection_id,
        user_key: pending.user_key,
        account: grant.account,
        return_to: pending.return_to,
    })
}
