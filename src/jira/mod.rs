//! Jira Data Center REST client and webhook handling. Only ids, keys and names are read from
//! Jira; no issue content is kept.

mod client;
pub mod registration;
mod service;
mod transport;
pub mod webhook;

pub use client::{
    Credential, IssueRef, JiraClient, JiraError, Myself, PermissionScope, ProjectRef, ServerInfo,
};
pub use registration::{
    EndpointKind, Registration, RegistrationError, WebhookAction, register_webhook,
    register_webhook_as,
};
pub use service::{RemoteLink, SearchPage, SearchedIssue, Upserted};
