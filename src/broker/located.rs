//! Issue folders renamed or moved in the storage itself (someone renamed the folder in
//! SharePoint): found again by the id recorded with them, and recorded where they are now.

use super::{Broker, BrokerError, records};
use crate::audit::{Actor, AuditEvent, Outcome};
use crate::auth::User;
use crate::storage::Storage;

impl Broker {
    /// A recorded folder that was renamed or moved in the storage itself (a user renamed it
    /// in SharePoint) is found by its id and recorded where it is now, audited. Looked up at
    /// most once a minute per folder; when the storage cannot say, the record stands.
    pub(super) async fn located(
        &self,
        storage: &dyn Storage,
        mut record: records::IssueFolder,
        user: &User,
    ) -> Result<records::IssueFolder, BrokerError> {
        let Some(id) = record.item_id.clone() else {
            return Ok(record);
        };
        let key = (record.connection_id, id.clone(), record.path.clone());
        if self.verified.contains_key(&key) {
            return Ok(record);
        }
        let now = match storage.path_of(&id).await {
            Ok(Some(path)) => path.to_string(),
            Ok(None) => return Ok(record),
            Err(error) => {
                tracing::debug!(%error, "cannot look up an issue folder by id; using its path");
                return Ok(record);
            }
        };
        if now == record.path {
            self.verified.insert(key, ()).await;
            return Ok(record);
        }
        let mut tx = self.pool.begin().await?;
        if records::relocate(&mut tx, &record.issue_id, &record.path, &now).await? {
            let mut event =
                AuditEvent::new(Actor::from(user), "issue_folder.relocate", Outcome::Success);
            event.target = Some(format!("issue:{}", record.issue_key));
            event.path = Some(now.clone());
            event.details = serde_json::json!({
                "issue_id": record.issue_id,
                "connection_id": record.connection_id,
                "from": record.path,
            });
            crate::audit::record(&mut tx, &event).await?;
        }
        tx.commit().await?;
        record.path = now;
        Ok(record)
    }
}
