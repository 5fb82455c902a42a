//! Which storage folder belongs to which issue (`issue_folders`), keyed on Jira's numeric
//! issue id: once a folder is recorded, lookups follow the record, not the issue's current
//! key or the mapping's template, so a renamed key or a changed template never loses files.

use serde::Serialize;
use sqlx::{PgConnection, PgExecutor};
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum FolderState {
    Active,
    /// The issue was deleted in Jira; the folder moved under `_archived`.
    Archived,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct IssueFolder {
    pub issue_id: String,
    pub issue_key: String,
    pub project_id: String,
    pub connection_id: Uuid,
    /// Relative to the connection's root.
    pub path: String,
    /// The storage's id of the folder, where ids survive renames made in the storage itself
    /// (see [`crate::storage::Storage::path_of`]).
    pub item_id: Option<String>,
    pub state: FolderState,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

const COLUMNS: &str =
    "issue_id, issue_key, project_id, connection_id, path, item_id, state, updated_at";

pub async fn by_issue_id<'e>(
    db: impl PgExecutor<'e>,
    issue_id: &str,
) -> Result<Option<IssueFolder>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM issue_folders WHERE issue_id = $1"
    )))
    .bind(issue_id)
    .fetch_optional(db)
    .await
}

/// The active folders recorded for a project.
pub async fn active_in_project<'e>(
    db: impl PgExecutor<'e>,
    project_id: &str,
) -> Result<Vec<IssueFolder>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM issue_folders WHERE project_id = $1 AND state = 'active'
         ORDER BY issue_id"
    )))
    .bind(project_id)
    .fetch_all(db)
    .await
}

/// Records where an issue's folder is now (inserting or replacing the record).
pub async fn put(conn: &mut PgConnection, folder: &IssueFolder) -> Result<(), sqlx::Error> {
    // A key released by an archived or moved issue may be taken by another: only one active
    // record may hold it, and the newest fact wins.
    sqlx::query(
        "UPDATE issue_folders SET issue_key = issue_key || '#' || issue_id
         WHERE issue_key = $1 AND issue_id <> $2 AND state = 'active'",
    )
    .bind(&folder.issue_key)
    .bind(&folder.issue_id)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO issue_folders
             (issue_id, issue_key, project_id, connection_id, path, state, item_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (issue_id) DO UPDATE SET issue_key = $2, project_id = $3,
             connection_id = $4, path = $5, state = $6, item_id = $7, updated_at = now()",
    )
    .bind(&folder.issue_id)
    .bind(&folder.issue_key)
    .bind(&folder.project_id)
    .bind(folder.connection_id)
    .bind(&folder.path)
    .bind(folder.state)
    .bind(&folder.item_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Records a folder made by a user's first upload, unless one is recorded already (a
/// concurrent event may have recorded it first; the record then wins).
pub async fn put_if_absent(
    conn: &mut PgConnection,
    folder: &IssueFolder,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO issue_folders
             (issue_id, issue_key, project_id, connection_id, path, state, item_id)
         SELECT $1, $2, $3, $4, $5, 'active', $6
         WHERE NOT EXISTS (SELECT 1 FROM issue_folders WHERE issue_key = $2 AND state = 'active')
         ON CONFLICT (issue_id) DO NOTHING",
    )
    .bind(&folder.issue_id)
    .bind(&folder.issue_key)
    .bind(&folder.project_id)
    .bind(folder.connection_id)
    .bind(&folder.path)
    .bind(&folder.item_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Records that an active folder was found at `to` (renamed or moved in the storage itself),
/// if it is still recorded at `from` (a concurrent change of the record wins) and no other
/// issue's folder is recorded there. Returns whether the record changed.
pub async fn relocate(
    conn: &mut PgConnection,
    issue_id: &str,
    from: &str,
    to: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE issue_folders f SET path = $3, updated_at = now()
         WHERE issue_id = $1 AND path = $2 AND state = 'active'
           AND NOT EXISTS (SELECT 1 FROM issue_folders o
                           WHERE o.connection_id = f.connection_id AND o.issue_id <> $1
                             AND lower(o.path) = lower($3) AND o.state = 'active')",
    )
    .bind(issue_id)
    .bind(from)
    .bind(to)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Moves every recorded path under `old_root` to `new_root` (a project root renamed).
pub async fn rebase(
    conn: &mut PgConnection,
    project_id: &str,
    old_root: &str,
    new_root: &str,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE issue_folders SET path = $3 || substr(path, length($2) + 1), updated_at = now()
         WHERE project_id = $1 AND (path = $2 OR starts_with(path, $2 || '/'))",
    )
    .bind(project_id)
    .bind(old_root)
    .bind(new_root)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}
