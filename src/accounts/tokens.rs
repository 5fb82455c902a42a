//! One user's Graph tokens on one delegated connection: the access token cached in memory,
//! refreshed from the stored refresh token when it nears expiry.
//!
//! Refreshes are serialised twice over: concurrent requests on this instance wait on one
//! lock, and a refresh holds the account's row locked (`SELECT … FOR UPDATE`) until the
//! rotated refresh token is saved, so another instance refreshing at the same moment waits
//! and then uses the new refresh token instead of the one Microsoft just replaced.

use std::sync::Arc;

use async_trait::async_trait;
use secrecy::SecretString;
use sqlx::PgPool;
use uuid::Uuid;

use super::{AccountError, store};
use crate::audit::{self, Actor, AuditEvent, Outcome};
use crate::secrets::SecretCipher;
use crate::storage::StorageError;
use crate::storage::sharepoint::{CachedToken, Delegated, Grant, GrantError, TokenSource};

pub struct UserTokens {
    pool: PgPool,
    cipher: Arc<SecretCipher>,
    app: Arc<Delegated>,
    connection_id: Uuid,
    user_key: String,
    connect_url: String,
    cache: CachedToken,
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
            cache: CachedToken::default(),
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
        // Concurrent requests of this user wait for one refresh.
        self.cache
            .get(|| async {
                let grant = self.refresh().await?;
                Ok((grant.access_token, grant.expires_in))
            })
            .await
    }

    async fn rejected(&self, token: &SecretString) {
        self.cache.forget(token).await;
    }
}
