//! The broker: from "this user wants to do that in this issue's folder" to a storage
//! operation, with Jira's permissions checked first and the act audited.
//!
//! Authorisation lives in the types: a [`FolderHandle`] exists only after [`Broker::authorize`]
//! has asked Jira (as the user) for their permissions on the issue or project and found the one
//! the operation needs. Every file operation goes through a handle.

mod access;
mod delegated;
mod folder;
pub mod invalidation;
mod located;
pub mod mapping;
pub mod records;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use moka::future::Cache;
use sqlx::PgPool;
use uuid::Uuid;

pub use access::{Access, Scope};
pub use folder::FolderHandle;

use crate::accounts::Links;
use crate::auth::JiraCaller;
use crate::egress::EgressClient;
use crate::jira::{JiraClient, JiraError};
use crate::metrics::CacheName;
use crate::secrets::SecretCipher;
use crate::storage::sharepoint::Delegated;
use crate::storage::{Storage, StorageError, registry};
use mapping::Mapping;

/// How long a cached connection or mapping may serve when Postgres' announcement of its
/// change was missed (a listener reconnecting): a bound, not the mechanism.
const CONFIG_TTL: Duration = Duration::from_secs(60);
/// How long a recorded folder found where it was recorded is not looked up by id again: a
/// rename made in the storage itself is followed within this.
const FOLDER_CHECK_TTL: Duration = Duration::from_secs(60);
/// A user's delegated storage (with its access token) is dropped after this long unused.
const USER_STORAGE_IDLE: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The issue or project does not exist, or the user may not see it: one answer for both,
    /// so nobody learns what exists by probing.
    #[error("no such issue or project, or you may not see it")]
    NotFound,
    #[error("project {0} has no storage mapped; an administrator can map it")]
    NotMapped(String),
    #[error("you need Jira's {0} permission for this")]
    Forbidden(&'static str),
    #[error(transparent)]
    Jira(#[from] JiraError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("the storage connection cannot be opened: {0}")]
    Connection(String),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
}

/// What an operation needs from Jira.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// BROWSE_PROJECTS
    Read,
    /// CREATE_ATTACHMENTS (and BROWSE_PROJECTS)
    Write,
    /// DELETE_ALL_ATTACHMENTS, or DELETE_OWN_ATTACHMENTS for what the user uploaded
    Delete,
}

pub struct Broker {
    pool: PgPool,
    jira: JiraClient,
    cipher: Arc<SecretCipher>,
    egress: EgressClient,
    /// Jira's answer per (credential, issue or project), briefly; concurrent first checks
    /// share one call.
    access: Cache<([u8; 32], Scope), Arc<Access>>,
    /// Opened storages by connection id, so connections are not re-opened per request.
    storages: Cache<Uuid, Arc<dyn Storage>>,
    /// Project mappings by Jira project id (`None`: not mapped), so a file request does not
    /// read them from Postgres each time.
    mappings: Cache<String, Option<Arc<Mapping>>>,
    /// The delegated side of connections by id (`None`: the connection is not delegated).
    delegated: Cache<Uuid, Option<Arc<Delegated>>>,
    /// Delegated connections' storages per (connection, Jira user key): each holds that
    /// user's access token, so an entry lives while the user keeps working.
    user_storages: Cache<(Uuid, String), Arc<dyn Storage>>,
    links: Links,
    /// Recorded issue folders (connection, item id, recorded path) whose id the storage
    /// placed at the recorded path lately: looked up again at most once a minute.
    verified: Cache<(Uuid, String, String), ()>,
    /// Counts the forgetting of connections and mappings. A load that started before one
    /// may have read the old row; it must not go into the cache after the change was
    /// announced, or the old value would serve until the time limit.
    forgotten: AtomicU64,
}

impl Broker {
    pub fn new(
        pool: PgPool,
        jira: JiraClient,
        cipher: Arc<SecretCipher>,
        egress: EgressClient,
        access_ttl: Duration,
        public_url: &url::Url,
    ) -> Self {
        Self {
            pool,
            jira,
            cipher,
            egress,
            access: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(access_ttl)
                .build(),
            // Every instance drops changed entries when Postgres announces the change
            // (`invalidation`); the time limit only bounds the damage of a missed one.
            storages: Cache::builder()
                .max_capacity(1_000)
                .time_to_live(CONFIG_TTL)
                .build(),
            mappings: Cache::builder()
                .max_capacity(10_000)
                .time_to_live(CONFIG_TTL)
                .build(),
            delegated: Cache::builder()
                .max_capacity(1_000)
                .time_to_live(CONFIG_TTL)
                .build(),
            // Idle, not live: dropping an entry drops a valid access token, and a removed
            // account reaches every instance through the connection's change announcement.
            user_storages: Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(USER_STORAGE_IDLE)
                .support_invalidation_closures()
                .build(),
            links: Links::new(public_url),
            verified: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(FOLDER_CHECK_TTL)
                .build(),
            forgotten: AtomicU64::new(0),
        }
    }

    /// The links of users' sign-ins (connect URL, redirect URI).
    pub fn links(&self) -> &Links {
        &self.links
    }

    /// Forgets an opened storage (after its connection changed or was removed).
    pub async fn forget_connection(&self, id: Uuid) {
        self.forgotten.fetch_add(1, Ordering::SeqCst);
        self.storages.invalidate(&id).await;
        self.delegated.invalidate(&id).await;
        if self
            .user_storages
            .invalidate_entries_if(move |key, _| key.0 == id)
            .is_err()
        {
            // Only if the cache were built without closures; forgetting more is safe.
            self.user_storages.invalidate_all();
        }
    }

    /// Forgets a user's storage on a delegated connection (after their account changed).
    pub async fn forget_user(&self, id: Uuid, user_key: &str) {
        self.user_storages
            .invalidate(&(id, user_key.to_string()))
            .await;
    }

    /// Forgets a project's mapping (after it changed or was removed).
    pub async fn forget_mapping(&self, project_id: &str) {
        self.forgotten.fetch_add(1, Ordering::SeqCst);
        self.mappings.invalidate(project_id).await;
    }

    /// Forgets every cached connection and mapping (when changes may have been missed).
    pub fn forget_configuration(&self) {
        self.forgotten.fetch_add(1, Ordering::SeqCst);
        self.storages.invalidate_all();
        self.mappings.invalidate_all();
        self.delegated.invalidate_all();
        self.user_storages.invalidate_all();
    }

    /// Checks that `caller` may do `need` in the folder of `scope`, and opens it.
    pub async fn authorize(
        &self,
        caller: &JiraCaller,
        scope: Scope,
        need: Need,
    ) -> Result<FolderHandle, BrokerError> {
        let access = self.access_for(caller, scope.clone()).await?;
        let read = access.permissions.contains("BROWSE_PROJECTS");
        if !read {
            // Jira lets some users see an issue without browse rights on the project; for
            // files, browsing is the floor.
            return Err(BrokerError::Forbidden("BROWSE_PROJECTS"));
        }
        match need {
            Need::Read => {}
            Need::Write if !access.permissions.contains("CREATE_ATTACHMENTS") => {
                return Err(BrokerError::Forbidden("CREATE_ATTACHMENTS"));
            }
            Need::Write => {}
            Need::Delete
                if !access.permissions.contains("DELETE_ALL_ATTACHMENTS")
                    && !access.permissions.contains("DELETE_OWN_ATTACHMENTS") =>
            {
                return Err(BrokerError::Forbidden("DELETE_ALL_ATTACHMENTS"));
            }
            Need::Delete => {}
        }
        let mapping = self
            .mapping(&access.project_id)
            .await?
            .ok_or_else(|| BrokerError::NotMapped(access.project_key.clone()))?;
        // An issue's recorded folder wins over the template: it is where its files are, even
        // while a move that follows a changed key or project is still queued.
        let record = match &access.issue {
            Some(issue) => records::by_issue_id(&self.pool, &issue.id)
                .await?
                .filter(|r| r.state == records::FolderState::Active),
            None => None,
        };
        let connection_id = record
            .as_ref()
            .map_or(mapping.connection_id, |r| r.connection_id);
        // Jira said yes; in delegated mode the storage, as this user, has its own say.
        let storage = self.storage_for(connection_id, &caller.user).await?;
        let record = match record {
            Some(record) => Some(
                self.located(storage.as_ref(), record, &caller.user, need != Need::Read)
                    .await?,
            ),
            None => None,
        };
        FolderHandle::new(
            storage,
            mapping,
            record,
            access,
            caller.user.clone(),
            self.pool.clone(),
        )
    }

    async fn access_for(
        &self,
        caller: &JiraCaller,
        scope: Scope,
    ) -> Result<Arc<Access>, BrokerError> {
        let key = (caller.jira.fingerprint, scope.clone());
        let credential = Arc::clone(&caller.jira.credential);
        let jira = self.jira.clone();
        // Set only by the lookup that asks Jira; concurrent lookups sharing it are hits.
        let asked = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&asked);
        let result = self
            .access
            .try_get_with(key, async move {
                flag.store(true, Ordering::Relaxed);
                access::ask(&jira, &credential, &scope).await.map(Arc::new)
            })
            .await;
        self.jira
            .metrics()
            .cache_lookup(CacheName::Permissions, !asked.load(Ordering::Relaxed));
        result.map_err(|e| match &*e {
            JiraError::NotFound => BrokerError::NotFound,
            other => BrokerError::Jira(clone_jira_error(other)),
        })
    }

    /// A project's mapping (cached).
    async fn mapping(&self, project_id: &str) -> Result<Option<Arc<Mapping>>, BrokerError> {
        if let Some(cached) = self.mappings.get(project_id).await {
            return Ok(cached);
        }
        // Not `try_get_with`: the database error must reach the caller as itself (it decides
        // 503 or 500), and two concurrent first reads of one small row cost nothing.
        let before = self.forgotten.load(Ordering::SeqCst);
        let found = mapping::by_project_id(&self.pool, project_id)
            .await?
            .map(Arc::new);
        if self.forgotten.load(Ordering::SeqCst) == before {
            self.mappings
                .insert(project_id.to_string(), found.clone())
                .await;
        }
        Ok(found)
    }

    /// The opened storage of a connection (cached).
    pub async fn storage(&self, id: Uuid) -> Result<Arc<dyn Storage>, BrokerError> {
        let pool = self.pool.clone();
        let cipher = Arc::clone(&self.cipher);
        let egress = self.egress.clone();
        let before = self.forgotten.load(Ordering::SeqCst);
        let opened = self
            .storages
            .try_get_with(id, async move {
                let (kind, settings, secrets) =
                    crate::connections::load_for_use(&pool, &cipher, id)
                        .await
                        .map_err(|e| e.to_string())?;
                registry::open(&kind, &settings, &secrets, &egress).map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| BrokerError::Connection((*e).clone()))?;
        // Opened from a row that may have changed meanwhile: serve this request with it, but
        // let the next one open the connection afresh.
        if self.forgotten.load(Ordering::SeqCst) != before {
            self.storages.invalidate(&id).await;
        }
        Ok(opened)
    }
}

/// Jira errors are not `Clone` (they may wrap egress errors); rebuild the shareable part.
fn clone_jira_error(error: &JiraError) -> JiraError {
    match error {
        JiraError::Unauthorized => JiraError::Unauthorized,
        JiraError::NotFound => JiraError::NotFound,
        JiraError::Timeout(d) => JiraError::Timeout(*d),
        JiraError::Unavailable {
            status,
            retry_after,
        } => JiraError::Unavailable {
            status: *status,
            retry_after: *retry_after,
        },
        other => JiraError::Unreachable(other.to_string()),
    }
}

/// Permissions as Jira reports them.
pub type Permissions = HashSet<String>;
