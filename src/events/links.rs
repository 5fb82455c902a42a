//! The "Files" remote link on an issue that has a folder: one per issue (upserted by its
//! `globalId`), pointing at filebridge's page for the issue, with the file count.

use super::{EventError, Lifecycle};
use crate::broker::records::IssueFolder;
use crate::jira::{IssueRef, JiraError, RemoteLink};
use crate::storage::{ItemKind, StorageError, StoragePath};

pub fn global_id(issue_id: &str) -> String {
    format!("filebridge:issue={issue_id}")
}

pub(super) async fn upsert(
    lc: &Lifecycle,
    issue: &IssueRef,
    record: &IssueFolder,
) -> Result<(), EventError> {
    // On a delegated connection each user sees other files in the folder (and the app may
    // see none): the link says nothing of its contents.
    let summary = if lc.broker.is_delegated(record.connection_id).await? {
        None
    } else {
        let storage = lc.broker.storage(record.connection_id).await?;
        let folder = StoragePath::parse(&record.path, storage.name_rules())?;
        let items = match storage.list(&folder).await {
            Ok(items) => items,
            Err(StorageError::NotFound) => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        let files = items.iter().filter(|i| i.kind == ItemKind::File).count();
        Some(summary(files, items.len() - files))
    };
    let base = lc.public_url.as_str().trim_end_matches('/');
    let link = RemoteLink {
        global_id: global_id(&issue.id),
        url: format!("{base}/issues/{}", issue.key),
        title: "Files".into(),
        summary,
        icon_url: Some(format!("{base}/static/files-16.png")),
    };
    match lc
        .jira
        .upsert_remote_link(lc.token()?, &issue.id, &link)
        .await
    {
        Ok(_) => Ok(()),
        Err(JiraError::Unauthorized) => Err(EventError::Stuck(format!(
            "Jira refused the service user's remote link on {}: it needs the Link issues \
             permission in the project (or set jira.remote_links = false)",
            issue.key
        ))),
        Err(e) => Err(e.into()),
    }
}

fn summary(files: usize, folders: usize) -> String {
    let plural =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    match folders {
        0 => plural(files, "file", "files"),
        _ => format!(
            "{}, {}",
            plural(files, "file", "files"),
            plural(folders, "folder", "folders")
        ),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn summaries_count_files_and_folders() {
        assert_eq!(super::summary(0, 0), "0 files");
        assert_eq!(super::summary(1, 0), "1 file");
        assert_eq!(super::summary(3, 1), "3 files, 1 folder");
    }
}
