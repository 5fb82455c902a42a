//! Jira Data Center REST client. Only ids, keys and names are read from Jira; no issue
//! content is kept.

mod client;

pub use client::{
    Credential, IssueRef, JiraClient, JiraError, Myself, PermissionScope, ProjectRef, ServerInfo,
};
