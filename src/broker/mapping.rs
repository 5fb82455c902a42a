//! Project mappings: which connection and folder hold a project's files, and how an issue's
//! folder is named inside it.

use serde::Serialize;
use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::jira::IssueRef;
use crate::storage::{NameRules, StorageError, StoragePath};

/// The project's own files live in this folder under the mapping's root, beside the issue
/// folders and never above them: access to a project's folder must not reach the folders of
/// issues the user may not see (issue security levels).
pub const PROJECT_FOLDER: &str = "_project";

/// Deleted issues' folders move here, under the mapping's root.
pub const ARCHIVE_FOLDER: &str = "_archived";

/// Placeholders an issue folder template may use. Summaries are deliberately not offered:
/// no Jira content is stored, and a folder name would store it.
pub const PLACEHOLDERS: [&str; 3] = ["{issue.key}", "{issue.id}", "{project.key}"];

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Mapping {
    pub project_id: String,
    pub project_key: String,
    pub connection_id: Uuid,
    pub root: String,
    pub issue_folder: String,
    pub auto_create: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    pub updated_by: String,
}

impl Mapping {
    /// The mapping's root, relative to the connection's root.
    pub fn root(&self, rules: NameRules) -> Result<StoragePath, StorageError> {
        StoragePath::parse(&self.root, rules)
    }

    /// The project's own files: `<root>/_project`.
    pub fn project_folder(&self, rules: NameRules) -> Result<StoragePath, StorageError> {
        self.root(rules)?.child(PROJECT_FOLDER, rules)
    }

    /// The issue's folder: the root plus the rendered template.
    pub fn issue_folder(
        &self,
        issue: &IssueRef,
        rules: NameRules,
    ) -> Result<StoragePath, StorageError> {
        let name = render(&self.issue_folder, issue);
        self.root(rules)?
            .join(&StoragePath::parse(&name, rules)?, rules)
    }
}

pub fn render(template: &str, issue: &IssueRef) -> String {
    template
        .replace("{issue.key}", &issue.key)
        .replace("{issue.id}", &issue.id)
        .replace("{project.key}", &issue.project_key)
}

/// Checks a template: known placeholders only, at least one that identifies the issue, and
/// a valid relative path once rendered.
pub fn check_template(template: &str) -> Result<(), String> {
    let mut rest = template.to_string();
    for placeholder in PLACEHOLDERS {
        rest = rest.replace(placeholder, "");
    }
    if rest.contains('{') || rest.contains('}') {
        return Err(format!(
            "issue_folder may use only {}",
            PLACEHOLDERS.join(", ")
        ));
    }
    match template.split('/').next() {
        Some(PROJECT_FOLDER) => {
            return Err(format!(
                "issue_folder must not start with {PROJECT_FOLDER}, the project's own folder"
            ));
        }
        Some(ARCHIVE_FOLDER) => {
            return Err(format!(
                "issue_folder must not start with {ARCHIVE_FOLDER}, where deleted issues' folders go"
            ));
        }
        _ => {}
    }
    if !template.contains("{issue.key}") && !template.contains("{issue.id}") {
        return Err("issue_folder must contain {issue.key} or {issue.id}, so every issue gets its own folder".into());
    }
    let sample = IssueRef {
        id: "10100".into(),
        key: "PROJ-1".into(),
        project_id: "10000".into(),
        project_key: "PROJ".into(),
    };
    StoragePath::parse(&render(template, &sample), NameRules::default())
        .map(|_| ())
        .map_err(|e| format!("issue_folder: {e}"))
}

const COLUMNS: &str = "project_id, project_key, connection_id, root, issue_folder, auto_create, \
                       created_at, updated_at, updated_by";

pub async fn by_project_id<'e>(
    db: impl sqlx::PgExecutor<'e>,
    project_id: &str,
) -> Result<Option<Mapping>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM project_mappings WHERE project_id = $1"
    )))
    .bind(project_id)
    .fetch_optional(db)
    .await
}

pub async fn by_project_key(pool: &PgPool, key: &str) -> Result<Option<Mapping>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM project_mappings WHERE project_key = $1"
    )))
    .bind(key)
    .fetch_optional(pool)
    .await
}

/// Creates or replaces a project's mapping; true when it was created.
pub async fn upsert(
    conn: &mut sqlx::PgConnection,
    mapping: &NewMapping,
    by: &str,
) -> Result<bool, sqlx::Error> {
    // `xmax = 0` is true for a freshly inserted row, false for an updated one.
    sqlx::query_scalar(
        "INSERT INTO project_mappings (project_id, project_key, connection_id, root, issue_folder,
             auto_create, updated_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (project_id) DO UPDATE SET project_key = $2, connection_id = $3, root = $4,
             issue_folder = $5, auto_create = $6, updated_by = $7, updated_at = now()
         RETURNING (xmax = 0)",
    )
    .bind(&mapping.project_id)
    .bind(&mapping.project_key)
    .bind(mapping.connection_id)
    .bind(&mapping.root)
    .bind(&mapping.issue_folder)
    .bind(mapping.auto_create)
    .bind(by)
    .fetch_one(conn)
    .await
}

pub async fn delete(conn: &mut sqlx::PgConnection, project_id: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM project_mappings WHERE project_id = $1")
        .bind(project_id)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// A mapping as an admin asks for it.
#[derive(Debug, Clone)]
pub struct NewMapping {
    pub project_id: String,
    pub project_key: String,
    pub connection_id: Uuid,
    pub root: String,
    pub issue_folder: String,
    pub auto_create: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_checked() {
        assert!(check_template("{issue.key}").is_ok());
        assert!(check_template("{project.key}/{issue.id}").is_ok());
        assert!(
            check_template("{issue.summary}")
                .unwrap_err()
                .contains("only")
        );
        assert!(
            check_template("{project.key}")
                .unwrap_err()
                .contains("every issue")
        );
        assert!(
            check_template("../{issue.key}")
                .unwrap_err()
                .contains("`..`")
        );
        assert!(
            check_template("_project/{issue.key}")
                .unwrap_err()
                .contains("_project")
        );
    }

    #[test]
    fn issue_folders_are_rendered_under_the_root() {
        let mapping = Mapping {
            project_id: "10000".into(),
            project_key: "PROJ".into(),
            connection_id: Uuid::nil(),
            root: "Jira/PROJ".into(),
            issue_folder: "{issue.key}".into(),
            auto_create: true,
            created_at: OffsetDateTime::UNIX_EPOCH,
            updated_at: OffsetDateTime::UNIX_EPOCH,
            updated_by: "x".into(),
        };
        let issue = IssueRef {
            id: "10101".into(),
            key: "PROJ-7".into(),
            project_id: "10000".into(),
            project_key: "PROJ".into(),
        };
        let folder = mapping.issue_folder(&issue, NameRules::default()).unwrap();
        assert_eq!(folder.to_string(), "Jira/PROJ/PROJ-7");
    }
}
