//! A project whose key changed in Jira: the mapping follows (it is keyed on the project id),
//! a root that names the old key is renamed, and every issue folder is re-synced, since Jira
//! gives all of the project's issues new keys without an event for each.

use super::folders::{lock, move_within};
use super::{EventError, Lifecycle, NO_USER, SYNC_ISSUE, SyncIssue, actor};
use crate::audit::{self, AuditEvent, Outcome};
use crate::broker::{mapping, records};
use crate::jira::{Credential, JiraError};
use crate::jobs::{self, NewJob};
use crate::storage::StoragePath;

pub(super) async fn project_changed(lc: &Lifecycle, project_id: &str) -> Result<(), EventError> {
    let credential = Credential::Bearer(lc.token()?.clone());
    let mut tx = lc.pool.begin().await?;
    lock(&mut tx, &format!("project:{project_id}")).await?;
    // Asked under the lock, like an issue's state (see `folders::sync_issue`).
    let project = match lc.jira.project(&credential, project_id).await {
        Ok(project) => project,
        // Deleted, or out of the service user's sight: the mapping stays for an admin.
        Err(JiraError::NotFound) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let Some(current) = mapping::by_project_id(&mut *tx, &project.id).await? else {
        return Ok(());
    };
    if current.project_key == project.key {
        return Ok(());
    }
    let storage = lc.broker.storage(current.connection_id).await?;
    let rules = storage.name_rules();
    let old_root = current.root(rules)?;
    // A storage that works only as each user cannot be changed without one: the root keeps
    // its name there (the mapping still follows the key).
    let renamed = renamed_root(&current.root, &current.project_key, &project.key);
    let kept_root = renamed != current.root && lc.broker.needs_user(current.connection_id).await?;
    let new_root = if kept_root {
        current.root.clone()
    } else {
        renamed
    };
    if new_root != current.root {
        let to = StoragePath::parse(&new_root, rules)?;
        move_within(storage.as_ref(), &old_root, &to).await?;
        records::rebase(&mut tx, &project.id, &current.root, &new_root).await?;
    }
    sqlx::query(
        "UPDATE project_mappings SET project_key = $2, root = $3, updated_at = now(),
             updated_by = 'system:jira-events'
         WHERE project_id = $1",
    )
    .bind(&project.id)
    .bind(&project.key)
    .bind(&new_root)
    .execute(&mut *tx)
    .await?;
    let mut event = AuditEvent::new(actor(), "mapping.follow_key", Outcome::Success);
    event.target = Some(format!("project:{}", project.key));
    event.path = Some(new_root.clone());
    event.details = serde_json::json!({
        "project_id": project.id,
        "previous_key": current.project_key,
        "previous_root": current.root,
    });
    if kept_root {
        event.details["note"] = format!("root not renamed: {NO_USER}").into();
    }
    audit::record(&mut tx, &event).await?;
    // The issues' keys changed too; each one's folder follows in its own job.
    for record in records::active_in_project(&mut *tx, &project.id).await? {
        let sync = SyncIssue {
            issue_id: record.issue_id,
            deleted: false,
            previous: None,
        };
        jobs::enqueue(
            &mut tx,
            &NewJob {
                kind: SYNC_ISSUE.into(),
                payload: serde_json::to_value(&sync)
                    .map_err(|e| EventError::Payload(e.to_string()))?,
                dedupe_key: None,
                run_at: None,
            },
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The root with every segment equal to the old key replaced by the new one ("Jira/PROJ" ->
/// "Jira/NEW"); a root that does not name the key stays.
fn renamed_root(root: &str, old_key: &str, new_key: &str) -> String {
    root.split('/')
        .map(|segment| if segment == old_key { new_key } else { segment })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::renamed_root;

    #[test]
    fn roots_follow_the_key_only_where_they_name_it() {
        assert_eq!(renamed_root("Jira/PROJ", "PROJ", "NEW"), "Jira/NEW");
        assert_eq!(renamed_root("PROJ", "PROJ", "NEW"), "NEW");
        assert_eq!(
            renamed_root("Jira/PROJECTS", "PROJ", "NEW"),
            "Jira/PROJECTS"
        );
        assert_eq!(renamed_root("Shared/files", "PROJ", "NEW"), "Shared/files");
    }
}
