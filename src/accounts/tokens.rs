//! One user's Graph tokens on one delegated connection: the access token cached in memory,
//! refreshed from the stored refresh token when it nears expiry.
//!
//! Refreshes are serialised twice over: concurrent requests on this instance wait on one
//! lock, and a refresh holds the account's row locked (`SELECT … FOR UPDATE`) until the
//! rotated refresh token is saved, so another instance refreshing at the same moment waits
//! and then uses the new refresh token instead of the one Microsoft just replaced.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;
use tokio::sync::Mutex;
use uuid::Uuid;

use super::{AccountError, store};
use crate::audit::{self, Actor, AuditEvent, Outcome};
use crate::secrets::SecretCipher;
use crate::storage::StorageError;
use crate::storage::sharepoint::{Delegated, Grant, GrantError, TokenSource};

/// An access token is replaced this long before it expires (or at half its life).
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

struct Cached {
    token: SecretString,
    refresh_at: Instant,
}

pub struct UserTokens {
    pool: PgPool,
    cipher: Arc<SecretCipher>,
    app: Arc<Delegated>,
    connection_id: Uuid,
    user_key: String,
    connect_url: String,
    cache: Mutex<Option<Cached>>,
}

impl UserTokens {
    pub fn new(
        pool: PgPool,
        cipher: Arc<SecretCipher>,
        app: Arc<Delegated>,
        connection_id: Uuid,
        user_key: String,
        connect_url: String,
    ) -> Self {
        Self {
            pool,
            cipher,
            app,
            connection_id,
            user_key,
            connect_url,
            cache: Mutex::new(None),
        }
    }

    fn required(&self) -> StorageError {
        StorageError::AccountRequired {
            connect_url: self.connect_url.clone(),
        }
    }

    /// Refreshes under the row lock; the rotated refresh token is saved in the same
    /// transaction, and a dead grant is deleted (audited) so the user is asked to connect.
    async fn refresh(&self) -> Result<Grant, StorageError> {
        let failed = |e: AccountError| StorageError::Unavailable(e.to_string());
        let mut tx = self.pool.begin().await.map_err(|e| failed(e.into()))?;
        let stored = store::lock_token(&mut tx, &self.cipher, self.connection_id, &self.user_key)
            .await
            .map_err(failed)?;
        let Some(refresh_token) = stored else {
            return Err(self.required());
        };
        match self.app.refresh(&refresh_token).await {
            Ok(grant) => {
                if let Some(rotated) = &grant.refresh_token {
                    store::rotate(
                        &mut tx,
                        &self.cipher,
                        self.connection_id,
                        &self.user_key,
                        rotated,
                    )
                    .await
                    .map_err(failed)?;
                }
                tx.commit().await.map_err(|e| failed(e.into()))?;
                Ok(grant)
            }
            Err(GrantError::Revoked(why)) => {
                tracing::info!(
                    connection = %self.connection_id,
                    user = %self.user_key,
                    reason = %why,
                    "storage account: Microsoft refused the refresh token; the user must connect again"
                );
                store::delete(&mut tx, self.connection_id, &self.user_key)
                    .await
                    .map_err(failed)?;
                let actor = Actor {
                    key: self.user_key.clone(),
                    name: self.user_key.clone(),
                };
                let mut event = AuditEvent::new(actor, "storage_account.expire", Outcome::Success);
                event.target = Some(format!("connection:{}", self.connection_id));
                event.details = serde_json::json!({ "reason": "invalid_grant" });
                audit::record(&mut tx, &event)
                    .await
                    .map_err(|e| failed(e.into()))?;
                tx.commit().await.map_err(|e| failed(e.into()))?;
                Err(self.required())
            }
            Err(GrantError::Storage(e)) => Err(e),
        }
    }
}

#[async_trait]
impl TokenSource for UserTokens {
    async fn token(&self) -> Result<SecretString, StorageError> {
        // Held while refreshing: concurrent requests of this user wait for one refresh.
        let mut cache = self.cache.lock().await;
        if let Some(cached) = cache.as_ref()
            && Instant::now() < cached.refresh_at
        {
            return Ok(cached.token.clone());
        }
        let grant = self.refresh().await?;
        let margin = REFRESH_MARGIN.min(grant.expires_in / 2);
        let token = grant.access_token.clone();
        *cache = Some(Cached {
            token: grant.access_token,
            refresh_at: Instant::now() + grant.expires_in - margin,
        });
        Ok(token)
    }

    async fn rejected(&self, token: &SecretString) {
        let mut cache = self.cache.lock().await;
        if cache
            .as_ref()
            .is_some_and(|c| c.token.expose_secret() == token.expose_secret())
        {
            *cache = None;
        }
    }
}
