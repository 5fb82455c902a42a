//! What Jira says a user may do with an issue or a project, asked with the user's own
//! credential.

use crate::jira::{Credential, IssueRef, JiraClient, JiraError, PermissionScope};

use super::Permissions;

/// The folder an operation is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    Issue(String),
    Project(String),
}

impl Scope {
    /// How the audit trail names it.
    pub fn target(&self) -> String {
        match self {
            Scope::Issue(key) => format!("issue:{key}"),
            Scope::Project(key) => format!("project:{key}"),
        }
    }
}

/// Jira's answer about one issue or project for one user.
#[derive(Debug, Clone)]
pub struct Access {
    pub scope: Scope,
    pub project_id: String,
    pub project_key: String,
    /// Set for issue scopes.
    pub issue: Option<IssueRef>,
    pub permissions: Permissions,
}

/// Two calls, concurrently: the issue (or project) itself, which answers 404 when the user may
/// not see it (issue security included), and the user's permissions on it.
pub async fn ask(
    jira: &JiraClient,
    credential: &Credential,
    scope: &Scope,
) -> Result<Access, JiraError> {
    match scope {
        Scope::Issue(key) => {
            let (issue, permissions) = tokio::try_join!(
                jira.issue(credential, key),
                jira.permissions_on(credential, PermissionScope::Issue(key))
            )?;
            Ok(Access {
                scope: scope.clone(),
                project_id: issue.project_id.clone(),
                project_key: issue.project_key.clone(),
                issue: Some(issue),
                permissions,
            })
        }
        Scope::Project(key) => {
            let (project, permissions) = tokio::try_join!(
                jira.project(credential, key),
                jira.permissions_on(credential, PermissionScope::Project(key))
            )?;
            Ok(Access {
                scope: scope.clone(),
                project_id: project.id,
                project_key: project.key,
                issue: None,
                permissions,
            })
        }
    }
}
