//! One issue's folder brought in line with Jira: created, moved after a new key or project,
//! or archived after the issue was deleted.

use sqlx::PgConnection;

use super::{EventError, Lifecycle, NO_USER, SyncIssue, actor, links, transfer};
use crate::audit::{self, AuditEvent, Outcome};
use crate::broker::mapping::{self, ARCHIVE_FOLDER, Mapping};
use crate::broker::records::{self, FolderState, IssueFolder};
use crate::jira::{Credential, IssueRef, JiraError};
use crate::storage::{NameRules, StorageError, StoragePath};

pub(super) async fn sync_issue(lc: &Lifecycle, sync: &SyncIssue) -> Result<(), EventError> {
    let credential = Credential::Bearer(lc.token()?.clone());
    let mut tx = lc.pool.begin().await?;
    lock(&mut tx, &format!("issue:{}", sync.issue_id)).await?;
    // Asked under the lock: two jobs for one issue must not apply Jira's answers in the
    // opposite order from the one Jira gave them in.
    let current = match lc.jira.issue(&credential, &sync.issue_id).await {
        Ok(issue) => Some(issue),
        Err(JiraError::NotFound) => None,
        Err(e) => return Err(e.into()),
    };
    let record = records::by_issue_id(&mut *tx, &sync.issue_id).await?;
    let folder = match (current, record) {
        (None, Some(record)) if sync.deleted && record.state == FolderState::Active => {
            archive(lc, &mut tx, record).await?;
            None
        }
        // Not visible to the service user, or never had a folder: nothing to follow.
        (None, _) => None,
        (Some(issue), record) => {
            let record = match record {
                Some(record) => Some(record),
                None => adopt(lc, &mut tx, &issue, sync).await?,
            };
            follow(lc, &mut tx, &issue, record)
                .await?
                .map(|record| (issue, record))
        }
    };
    tx.commit().await?;
    if let Some((issue, record)) = folder
        && lc.settings.remote_links
    {
        links::upsert(lc, &issue, &record).await?;
    }
    Ok(())
}

/// A folder with files under the issue's previous key that nobody recorded (made before
/// filebridge kept records): taken as the issue's, so the move below brings it along.
async fn adopt(
    lc: &Lifecycle,
    tx: &mut PgConnection,
    issue: &IssueRef,
    sync: &SyncIssue,
) -> Result<Option<IssueFolder>, EventError> {
    let Some(previous) = &sync.previous else {
        return Ok(None);
    };
    let Some(mapping) = mapping::by_project_id(&mut *tx, &previous.project_id).await? else {
        return Ok(None);
    };
    if lc.broker.needs_user(mapping.connection_id).await? {
        // Nobody to look with: such a folder stays where it is, as does any in that storage.
        return Ok(None);
    }
    let storage = lc.broker.storage(mapping.connection_id).await?;
    let before = IssueRef {
        id: issue.id.clone(),
        key: previous.key.clone(),
        project_id: previous.project_id.clone(),
        project_key: mapping.project_key.clone(),
    };
    let path = mapping.issue_folder(&before, storage.name_rules())?;
    // Someone else's recorded folder at that path is not this issue's to take.
    let taken: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM issue_folders WHERE path = $1 AND connection_id = $2)",
    )
    .bind(path.to_string())
    .bind(mapping.connection_id)
    .fetch_one(&mut *tx)
    .await?;
    if taken || !exists(storage.as_ref(), &path).await? {
        return Ok(None);
    }
    Ok(Some(IssueFolder {
        issue_id: issue.id.clone(),
        issue_key: previous.key.clone(),
        project_id: previous.project_id.clone(),
        connection_id: mapping.connection_id,
        path: path.to_string(),
        item_id: None,
        state: FolderState::Active,
        updated_at: time::OffsetDateTime::now_utc(),
    }))
}

/// Serialises work on one issue (or project) across workers and instances, for the rest of
/// the transaction.
pub(super) async fn lock(conn: &mut PgConnection, what: &str) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(format!("filebridge:{what}"))
        .execute(conn)
        .await?;
    Ok(())
}

/// Where the issue's folder should be, and moving or creating it there. Returns the active
/// record afterwards, if the issue has a folder.
async fn follow(
    lc: &Lifecycle,
    tx: &mut PgConnection,
    issue: &IssueRef,
    record: Option<IssueFolder>,
) -> Result<Option<IssueFolder>, EventError> {
    let record = record.filter(|r| r.state == FolderState::Active);
    let Some(mapping) = mapping::by_project_id(&mut *tx, &issue.project_id).await? else {
        // Moved to a project without storage: the files stay where they are, recorded, until
        // the project is mapped; only the key is kept current.
        if let Some(mut record) = record {
            record.issue_key = issue.key.clone();
            record.project_id = issue.project_id.clone();
            records::put(tx, &record).await?;
        }
        return Ok(None);
    };
    let storage = lc.broker.storage(mapping.connection_id).await?;
    let rules = storage.name_rules();
    let desired = mapping.issue_folder(issue, rules)?;
    let wanted = IssueFolder {
        issue_id: issue.id.clone(),
        issue_key: issue.key.clone(),
        project_id: issue.project_id.clone(),
        connection_id: mapping.connection_id,
        path: desired.to_string(),
        item_id: None,
        state: FolderState::Active,
        updated_at: time::OffsetDateTime::now_utc(),
    };
    let Some(record) = record else {
        // In a storage that works only as each user, the folder is made by the first upload.
        if !mapping.auto_create || lc.broker.needs_user(mapping.connection_id).await? {
            return Ok(None);
        }
        let created = storage.create_folder(&desired).await?;
        let wanted = IssueFolder {
            item_id: created.lasting_id(),
            ..wanted
        };
        records::put(tx, &wanted).await?;
        audit_folder(tx, "issue_folder.create", issue, None, &wanted, None).await?;
        return Ok(Some(wanted));
    };
    if record.connection_id == wanted.connection_id && record.path == wanted.path {
        if record.issue_key != wanted.issue_key || record.project_id != wanted.project_id {
            records::put(tx, &wanted).await?;
        }
        return Ok(Some(wanted));
    }
    // A folder tracked by id whose issue kept its key, project and connection is where
    // someone put it in the storage itself (renamed it in SharePoint): it stays there.
    if record.item_id.is_some()
        && record.connection_id == wanted.connection_id
        && record.issue_key == wanted.issue_key
        && record.project_id == wanted.project_id
    {
        return Ok(Some(record));
    }
    if lc.broker.needs_user(record.connection_id).await?
        || lc.broker.needs_user(wanted.connection_id).await?
    {
        return keep(tx, issue, record, &wanted).await.map(Some);
    }
    let wanted = if record.connection_id == wanted.connection_id {
        let from = located(storage.as_ref(), &record).await?;
        move_within(storage.as_ref(), &from, &desired).await?;
        // A rename keeps the folder's id.
        IssueFolder {
            item_id: record.item_id.clone(),
            ..wanted
        }
    } else {
        let source = lc.broker.storage(record.connection_id).await?;
        let from = located(source.as_ref(), &record).await?;
        transfer::move_across(source.as_ref(), &from, storage.as_ref(), &desired).await?;
        // A new folder in the new storage: its own id, where ids last.
        let arrived = found(storage.as_ref(), &desired).await?;
        IssueFolder {
            item_id: arrived.and_then(|folder| folder.lasting_id()),
            ..wanted
        }
    };
    records::put(tx, &wanted).await?;
    audit_folder(tx, "issue_folder.move", issue, Some(&record), &wanted, None).await?;
    Ok(Some(wanted))
}

/// A folder that should move but lives in, or should go to, a storage that works only as
/// each user: it stays where it is, recorded under the issue's current key and project, so
/// the issue keeps its files. Audited once, when the key or project it is kept under changes.
async fn keep(
    tx: &mut PgConnection,
    issue: &IssueRef,
    record: IssueFolder,
    wanted: &IssueFolder,
) -> Result<IssueFolder, EventError> {
    let kept = IssueFolder {
        issue_key: issue.key.clone(),
        project_id: issue.project_id.clone(),
        updated_at: time::OffsetDateTime::now_utc(),
        ..record.clone()
    };
    if kept.issue_key == record.issue_key && kept.project_id == record.project_id {
        return Ok(record);
    }
    records::put(tx, &kept).await?;
    let note = format!("not moved to {}: {NO_USER}", wanted.path);
    audit_folder(
        tx,
        "issue_folder.keep",
        issue,
        Some(&record),
        &kept,
        Some(&note),
    )
    .await?;
    Ok(kept)
}

/// Where a recorded folder is now: found by its id when it was renamed or moved in the
/// storage itself (a user renamed it in SharePoint), else where it was recorded.
async fn located(
    storage: &dyn crate::storage::Storage,
    record: &IssueFolder,
) -> Result<StoragePath, EventError> {
    let recorded = StoragePath::parse(&record.path, storage.name_rules())?;
    let Some(id) = &record.item_id else {
        return Ok(recorded);
    };
    Ok(storage.path_of(id).await?.unwrap_or(recorded))
}

/// Renames a folder inside one storage. Safe to repeat: a folder already moved (the job
/// died after the rename) is found at its target.
pub(super) async fn move_within(
    storage: &dyn crate::storage::Storage,
    from: &StoragePath,
    to: &StoragePath,
) -> Result<(), EventError> {
    if from == to {
        // Already there: a repeated job, or someone put it there in the storage itself.
        return Ok(());
    }
    let source = found(storage, from).await?;
    let target = found(storage, to).await?;
    match (source, target) {
        (None, _) => Ok(()),
        // One item under two spellings (SharePoint's names ignore case).
        (Some(source), Some(target)) if source.id == target.id && source.lasting_id().is_some() => {
            Ok(())
        }
        (Some(_), Some(_)) => Err(EventError::Stuck(format!(
            "cannot move the folder {from} to {to}: something is already there; move or \
             remove one of them, then retry the job"
        ))),
        (Some(_), None) => {
            if let Some(parent) = to.parent().filter(|p| !p.is_root()) {
                storage.create_folder(&parent).await?;
            }
            storage.rename(from, to).await?;
            Ok(())
        }
    }
}

pub(super) async fn exists(
    storage: &dyn crate::storage::Storage,
    path: &StoragePath,
) -> Result<bool, StorageError> {
    Ok(found(storage, path).await?.is_some())
}

async fn found(
    storage: &dyn crate::storage::Storage,
    path: &StoragePath,
) -> Result<Option<crate::storage::Item>, StorageError> {
    match storage.stat(path).await {
        Ok(item) => Ok(Some(item)),
        Err(StorageError::NotFound) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Moves a deleted issue's folder to `_archived` under its project's root (or beside it when
/// the project is no longer mapped), and records it archived. Files are never deleted.
async fn archive(
    lc: &Lifecycle,
    tx: &mut PgConnection,
    record: IssueFolder,
) -> Result<(), EventError> {
    let mut archived = IssueFolder {
        state: FolderState::Archived,
        ..record.clone()
    };
    let needs_user = lc.broker.needs_user(record.connection_id).await?;
    if lc.settings.archive_deleted && !needs_user {
        let storage = lc.broker.storage(record.connection_id).await?;
        let rules = storage.name_rules();
        let from = located(storage.as_ref(), &record).await?;
        let mapping = mapping::by_project_id(&mut *tx, &record.project_id).await?;
        let target =
            archive_target(storage.as_ref(), &from, mapping.as_ref(), &record, rules).await?;
        if exists(storage.as_ref(), &from).await? {
            move_within(storage.as_ref(), &from, &target).await?;
        }
        archived.path = target.to_string();
    }
    records::put(tx, &archived).await?;
    let issue = IssueRef {
        id: record.issue_id.clone(),
        key: record.issue_key.clone(),
        project_id: record.project_id.clone(),
        project_key: String::new(),
    };
    let note =
        (lc.settings.archive_deleted && needs_user).then(|| format!("left in place: {NO_USER}"));
    audit_folder(
        tx,
        "issue_folder.archive",
        &issue,
        Some(&record),
        &archived,
        note.as_deref(),
    )
    .await
}

/// `<root>/_archived/<folder name>`, or `<folder name> (<issue id>)` when an archived folder
/// of that name exists already (a key can be reused after a deletion).
async fn archive_target(
    storage: &dyn crate::storage::Storage,
    from: &StoragePath,
    mapping: Option<&Mapping>,
    record: &IssueFolder,
    rules: NameRules,
) -> Result<StoragePath, EventError> {
    let root = match mapping {
        Some(mapping) if from.starts_with(&mapping.root(rules)?) => mapping.root(rules)?,
        _ => from.parent().unwrap_or_default(),
    };
    let archive = root.child(ARCHIVE_FOLDER, rules)?;
    if from.parent().as_ref() == Some(&archive) {
        // Archived already (a repeated job found it there by its id).
        return Ok(from.clone());
    }
    let name = match from.name() {
        "" => record.issue_id.clone(),
        name => name.to_string(),
    };
    let plain = archive.child(&name, rules)?;
    if !exists(storage, &plain).await? {
        return Ok(plain);
    }
    Ok(archive.child(&format!("{name} ({})", record.issue_id), rules)?)
}

async fn audit_folder(
    tx: &mut PgConnection,
    action: &'static str,
    issue: &IssueRef,
    before: Option<&IssueFolder>,
    after: &IssueFolder,
    note: Option<&str>,
) -> Result<(), EventError> {
    let mut event = AuditEvent::new(actor(), action, Outcome::Success);
    event.target = Some(format!("issue:{}", issue.key));
    event.path = Some(after.path.clone());
    event.details = serde_json::json!({
        "issue_id": issue.id,
        "connection_id": after.connection_id,
        "from": before.map(|b| serde_json::json!({"path": b.path, "connection_id": b.connection_id, "issue_key": b.issue_key})),
    });
    if let Some(note) = note {
        event.details["note"] = note.into();
    }
    audit::record(tx, &event).await?;
    Ok(())
}
