//! Issue folders renamed or moved in the storage itself (someone renamed the folder in
//! SharePoint): found again by the id recorded with them, and recorded where they are now.

use super::{Broker, BrokerError, records};
use crate::audit::{Actor, AuditEvent, Outcome};
use crate::auth::User;
use crate::storage::Storage;

impl Broker {
    /// A recorded folder that was renamed or moved in the storage itself (a user renamed it
    /// in SharePoint) is found by its id and recorded where it is now, audited. Reads look it
    /// up at most once a minute per folder; writes (`fresh`) always do, so nothing is written
    /// into a new folder under the old name. When the storage cannot say, or the new place is
    /// another issue's folder, the record stands.
    pub(super) async fn located(
        &self,
        storage: &dyn Storage,
        record: records::IssueFolder,
        user: &User,
        fresh: bool,
    ) -> Result<records::IssueFolder, BrokerError> {
        let Some(id) = record.item_id.clone() else {
            return Ok(record);
        };
        let key = (record.connection_id, id.clone(), record.path.clone());
        if !fresh && self.verified.contains_key(&key) {
            return Ok(record);
        }
        let now = match storage.path_of(&id).await {
            Ok(Some(path)) => path.to_string(),
            // Gone, outside the root, or not visible to this user: the record stands.
            Ok(None) => {
                self.verified.insert(key, ()).await;
                return Ok(record);
            }
            Err(error) => {
                tracing::debug!(%error, "cannot look up an issue folder by id; using its path");
                return Ok(record);
            }
        };
        // SharePoint's names ignore case: one folder under two spellings has not moved.
        if now.to_lowercase() == record.path.to_lowercase() {
            self.verified.insert(key, ()).await;
            return Ok(record);
        }
        match self.relocate(&record, &now, user).await {
            Ok(true) => Ok(records::IssueFolder {
                path: now,
                ..record
            }),
            Ok(false) => Ok(record),
            Err(error) => {
                // The request can still be served from the record; the next one tries again.
                tracing::warn!(%error, issue = %record.issue_key, "cannot record where an issue folder moved");
                Ok(record)
            }
        }
    }

    /// Records the folder at `now`, audited in the same transaction.
    async fn relocate(
        &self,
        record: &records::IssueFolder,
        now: &str,
        user: &User,
    ) -> Result<bool, BrokerError> {
        let mut tx = self.pool.begin().await?;
        if !records::relocate(&mut tx, &record.issue_id, &record.path, now).await? {
            return Ok(false);
        }
        let mut event =
            AuditEvent::new(Actor::from(user), "issue_folder.relocate", Outcome::Success);
        event.target = Some(format!("issue:{}", record.issue_key));
        event.path = Some(now.to_string());
        event.details = serde_json::json!({
            "issue_id": record.issue_id,
            "connection_id": record.connection_id,
            "from": {"path": record.path, "connection_id": record.connection_id, "issue_key": record.issue_key},
        });
        crate::audit::record(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(true)
    }
}
