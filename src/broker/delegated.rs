//! Connections that work as each user (SharePoint's delegated mode): their delegated side,
//! and the storage each user's requests use.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use uuid::Uuid;

use super::{Broker, BrokerError};
use crate::accounts::UserTokens;
use crate::auth::User;
use crate::storage::sharepoint::{self, Delegated};
use crate::storage::{Storage, StorageError};

impl Broker {
    /// The delegated side of a connection (cached); `None` for connections that act as
    /// themselves.
    pub async fn delegated(&self, id: Uuid) -> Result<Option<Arc<Delegated>>, BrokerError> {
        let pool = self.pool.clone();
        let cipher = Arc::clone(&self.cipher);
        let egress = self.egress.clone();
        let before = self.forgotten.load(Ordering::SeqCst);
        let loaded = self
            .delegated
            .try_get_with(id, async move {
                let (kind, settings, secrets) =
                    crate::connections::load_for_use(&pool, &cipher, id)
                        .await
                        .map_err(|e| e.to_string())?;
                match kind.as_str() {
                    "sharepoint" => sharepoint::delegated(&settings, &secrets, &egress)
                        .map_err(|e| e.to_string()),
                    _ => Ok(None),
                }
            })
            .await
            .map_err(|e| BrokerError::Connection((*e).clone()))?;
        // As in `storage`: a row read while its change was announced serves only this call.
        if self.forgotten.load(Ordering::SeqCst) != before {
            self.delegated.invalidate(&id).await;
        }
        Ok(loaded)
    }

    /// Whether a connection works only as each user, with their own account (delegated
    /// mode without `background = "app"`): background work (Jira events) cannot act in its
    /// storage, having no user.
    pub async fn needs_user(&self, id: Uuid) -> Result<bool, BrokerError> {
        Ok(self
            .delegated(id)
            .await?
            .is_some_and(|d| !d.app_in_background()))
    }

    /// Whether each user sees the connection's files with their own account, so what the
    /// app sees is not what any one user sees.
    pub async fn is_delegated(&self, id: Uuid) -> Result<bool, BrokerError> {
        Ok(self.delegated(id).await?.is_some())
    }

    /// The storage a request of `user` uses: the connection's own, or in delegated mode the
    /// user's (refused with `AccountRequired` until the user has connected an account).
    pub(super) async fn storage_for(
        &self,
        id: Uuid,
        user: &User,
    ) -> Result<Arc<dyn Storage>, BrokerError> {
        let Some(app) = self.delegated(id).await? else {
            return self.storage(id).await;
        };
        let pool = self.pool.clone();
        let cipher = Arc::clone(&self.cipher);
        let connect_url = self.links.connect_url(id);
        let user_key = user.key.clone();
        // Concurrent first requests of a user share one storage, so one token refresh.
        self.user_storages
            .try_get_with((id, user.key.clone()), async move {
                let connected: bool = sqlx::query_scalar(
                    "SELECT EXISTS (SELECT 1 FROM storage_accounts
                                    WHERE connection_id = $1 AND user_key = $2)",
                )
                .bind(id)
                .bind(&user_key)
                .fetch_one(&pool)
                .await
                .map_err(|e| StorageError::Unavailable(format!("database: {e}")))?;
                if !connected {
                    return Err(StorageError::AccountRequired { connect_url });
                }
                let tokens =
                    UserTokens::new(pool, cipher, Arc::clone(&app), id, user_key, connect_url);
                app.open(Arc::new(tokens))
            })
            .await
            .map_err(|e| BrokerError::Storage((*e).clone()))
    }
}
