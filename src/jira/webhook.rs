//! Jira's webhook deliveries: checking they come from Jira, and reading the few ids and keys
//! filebridge acts on. Nothing else of the body is kept — it carries summaries, descriptions
//! and comments, which filebridge must not store.
//!
//! What was checked and where:
//! - Jira 10 signs a delivery when its webhook has a secret: `X-Hub-Signature:
//!   sha256=<hex HMAC-SHA256 of the raw body, keyed with the secret>` ("Securing your
//!   webhook", <https://confluence.atlassian.com/adminjiraserver/managing-webhooks-938846912.html>).
//!   Jira 9 does not sign; its webhooks are told apart by a random token in their URL.
//! - Body: `timestamp` (epoch milliseconds) and `webhookEvent` on every delivery; issue events
//!   add `issue_event_type_name`, `user`, `issue` (as after the change; as before it, for a
//!   deletion) and, for updates, `changelog.items[]` of `{field, fieldtype, from, fromString,
//!   to, toString}` (Atlassian's example callback on
//!   <https://developer.atlassian.com/server/jira/platform/webhooks/>; jira.js, which types it
//!   from that example and a real capture:
//!   <https://github.com/MrRefactoring/jira.js/blob/master/src/webhooks/payloads.ts>).
//! - An issue that moved (or whose key changed) arrives as `jira:issue_updated` with a
//!   changelog item `Key` (`fromString` the old key, `toString` the new) and, across
//!   projects, an item `project` (`from` the old project id); Sentry's Jira integration relies
//!   on the same item for Cloud and Server (<https://github.com/getsentry/sentry/pull/123198>).
//! - Project events (`project_created|updated|deleted`) carry `project` with `id` and `key`.
//!   Atlassian does not document that payload beyond naming the entity, so `id` is read as a
//!   number or a string, and a project's *previous* key is not in it: a key change has to be
//!   noticed by comparing with what filebridge recorded.
//! - Event identity: Jira Cloud sends `X-Atlassian-Webhook-Identifier`, unchanged across
//!   retries (<https://developer.atlassian.com/cloud/jira/platform/webhooks/>). Jira Data
//!   Center documents no such header, and its 10.x deliveries are asynchronous and may come
//!   out of order. The header is used when present; otherwise an event is identified by its
//!   kind, its issue (or project) id and Jira's `timestamp`.

mod verify;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub use verify::{check_token, new_token, token_digest, verify_signature};

use super::{IssueRef, ProjectRef};

/// The header carrying Jira 10's signature.
pub const SIGNATURE_HEADER: &str = "x-hub-signature";
/// The header carrying an event id, where Jira sends one (Cloud; not documented for DC).
pub const DELIVERY_ID_HEADER: &str = "x-atlassian-webhook-identifier";
/// The `settings` row holding the SHA-256 (hex) of the Jira 9 path token.
pub const TOKEN_SETTING: &str = "jira.webhook_token_sha256";

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("the webhook carries no X-Hub-Signature header")]
    SignatureMissing,
    #[error("the webhook's X-Hub-Signature does not match its body")]
    SignatureInvalid,
    #[error("jira.webhook_secret is not set, so signed webhooks cannot be verified")]
    NoSecret,
    #[error("the webhook URL's token is not the registered one")]
    UnknownToken,
    #[error("the webhook body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("not a Jira webhook: {0}")]
    Malformed(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// The kind of event, as Jira names it in `webhookEvent`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum EventKind {
    IssueCreated,
    IssueUpdated,
    IssueDeleted,
    ProjectCreated,
    ProjectUpdated,
    ProjectDeleted,
    Other(String),
}

impl EventKind {
    pub fn as_str(&self) -> &str {
        match self {
            EventKind::IssueCreated => "jira:issue_created",
            EventKind::IssueUpdated => "jira:issue_updated",
            EventKind::IssueDeleted => "jira:issue_deleted",
            EventKind::ProjectCreated => "project_created",
            EventKind::ProjectUpdated => "project_updated",
            EventKind::ProjectDeleted => "project_deleted",
            EventKind::Other(name) => name,
        }
    }

    fn is_issue_event(&self) -> bool {
        matches!(
            self,
            EventKind::IssueCreated | EventKind::IssueUpdated | EventKind::IssueDeleted
        )
    }

    fn is_project_event(&self) -> bool {
        matches!(
            self,
            EventKind::ProjectCreated | EventKind::ProjectUpdated | EventKind::ProjectDeleted
        )
    }
}

impl From<String> for EventKind {
    fn from(name: String) -> Self {
        match name.as_str() {
            "jira:issue_created" => EventKind::IssueCreated,
            "jira:issue_updated" => EventKind::IssueUpdated,
            "jira:issue_deleted" => EventKind::IssueDeleted,
            "project_created" => EventKind::ProjectCreated,
            "project_updated" => EventKind::ProjectUpdated,
            "project_deleted" => EventKind::ProjectDeleted,
            _ => EventKind::Other(name),
        }
    }
}

impl From<EventKind> for String {
    fn from(kind: EventKind) -> Self {
        kind.as_str().to_string()
    }
}

/// What filebridge keeps of a delivery: ids and keys only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JiraEvent {
    pub kind: EventKind,
    /// Jira's `timestamp`: when the event was raised, in epoch milliseconds.
    pub timestamp_ms: Option<i64>,
    pub issue: Option<IssueRef>,
    /// The issue's key before this change (changelog item `Key`).
    pub previous_key: Option<String>,
    /// The project of a project event.
    pub project: Option<ProjectRef>,
    /// The key of the project the issue left, taken from its previous key when the changelog
    /// shows a project change. Project events do not say it.
    pub previous_project_key: Option<String>,
    /// The id of the project the issue left (changelog item `project`, `from`).
    #[serde(default)]
    pub previous_project_id: Option<String>,
}

impl JiraEvent {
    /// Reads a delivery's body. Issue events must name the issue and its project, project
    /// events the project; other events are kept by name (filebridge ignores them).
    pub fn parse(body: &[u8]) -> Result<JiraEvent, WebhookError> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| WebhookError::Malformed(format!("the body is not JSON ({e})")))?;
        let Some(object) = value.as_object() else {
            return Err(WebhookError::Malformed(
                "the body is not a JSON object".into(),
            ));
        };
        let kind = match object.get("webhookEvent").and_then(Value::as_str) {
            Some(name) if !name.is_empty() => EventKind::from(name.to_string()),
            _ => return Err(WebhookError::Malformed("no webhookEvent".into())),
        };
        let timestamp_ms = object.get("timestamp").and_then(Value::as_i64);
        let issue = object.get("issue").map(issue_ref).transpose();
        let project = object.get("project").map(project_ref).transpose();
        let (issue, project) = if kind.is_issue_event() {
            let issue = issue?.ok_or_else(|| malformed(&kind, "no issue"))?;
            (Some(issue), None)
        } else if kind.is_project_event() {
            let project = project?.ok_or_else(|| malformed(&kind, "no project"))?;
            (None, Some(project))
        } else {
            // Not ours to judge; keep what reads cleanly.
            (issue.ok().flatten(), project.ok().flatten())
        };
        let mut event = JiraEvent {
            kind,
            timestamp_ms,
            issue,
            previous_key: None,
            project,
            previous_project_key: None,
            previous_project_id: None,
        };
        let items = object
            .get("changelog")
            .and_then(|c| c.get("items"))
            .and_then(Value::as_array);
        for item in items.into_iter().flatten() {
            let field = item.get("field").and_then(Value::as_str).unwrap_or("");
            if field.eq_ignore_ascii_case("key") {
                event.previous_key = text(item.get("fromString"));
            } else if field.eq_ignore_ascii_case("project") {
                event.previous_project_id = text(item.get("from"));
            }
        }
        if event.previous_project_id.is_some() {
            event.previous_project_key = event
                .previous_key
                .as_deref()
                .and_then(|key| key.rsplit_once('-'))
                .map(|(project, _)| project.to_string());
        }
        Ok(event)
    }

    /// A stable name for this event, for recognising a second delivery of it: Jira's event id
    /// where it sends one, else kind + issue (or project) id + Jira's timestamp. Without
    /// either there is nothing to recognise a duplicate by, and every delivery is new.
    pub fn identity(&self, delivery_id: Option<&str>) -> String {
        if let Some(id) = delivery_id.map(str::trim).filter(|id| !id.is_empty()) {
            return if id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic()) {
                format!("id:{id}")
            } else {
                format!("id-sha256:{}", hex::encode(Sha256::digest(id.as_bytes())))
            };
        }
        let subject = match (&self.issue, &self.project) {
            (Some(issue), _) => format!("issue:{}", issue.id),
            (None, Some(project)) => format!("project:{}", project.id),
            (None, None) => "none".to_string(),
        };
        match self.timestamp_ms {
            Some(ts) => format!("{}:{subject}:{ts}", self.kind.as_str()),
            None => format!(
                "{}:{subject}:untimed:{}",
                self.kind.as_str(),
                uuid::Uuid::new_v4().simple()
            ),
        }
    }
}

fn malformed(kind: &EventKind, what: &str) -> WebhookError {
    WebhookError::Malformed(format!("{} with {what}", kind.as_str()))
}

/// A JSON string or number as text (Jira writes issue ids as strings, project ids in project
/// events as numbers, changelog ids either way).
fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn issue_ref(issue: &Value) -> Result<IssueRef, WebhookError> {
    let bad = |what: &str| WebhookError::Malformed(format!("issue without {what}"));
    let project = issue
        .get("fields")
        .and_then(|f| f.get("project"))
        .ok_or_else(|| bad("fields.project"))
        .and_then(project_ref)?;
    Ok(IssueRef {
        id: text(issue.get("id")).ok_or_else(|| bad("id"))?,
        key: text(issue.get("key")).ok_or_else(|| bad("key"))?,
        project_id: project.id,
        project_key: project.key,
    })
}

fn project_ref(project: &Value) -> Result<ProjectRef, WebhookError> {
    let bad = |what: &str| WebhookError::Malformed(format!("project without {what}"));
    Ok(ProjectRef {
        id: text(project.get("id")).ok_or_else(|| bad("id"))?,
        key: text(project.get("key")).ok_or_else(|| bad("key"))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn issue(id: &str, key: &str, project: (&str, &str)) -> Value {
        json!({"id": id, "key": key, "self": "x",
               "fields": {"summary": "secret words", "project": {"id": project.0, "key": project.1}}})
    }

    #[test]
    fn a_move_yields_previous_key_and_project() {
        let body = json!({
            "timestamp": 1_700_000_000_123_i64, "webhookEvent": "jira:issue_updated",
            "issue_event_type_name": "issue_moved",
            "issue": issue("10100", "NEW-7", ("10001", "NEW")),
            "changelog": {"id": "10200", "items": [
                {"field": "project", "fieldtype": "jira", "from": "10000", "fromString": "Old", "to": "10001", "toString": "New"},
                {"field": "Key", "fieldtype": "jira", "from": null, "fromString": "OLD-1", "to": null, "toString": "NEW-7"}
            ]}
        });
        let event = JiraEvent::parse(body.to_string().as_bytes()).unwrap();
        assert_eq!(event.kind, EventKind::IssueUpdated);
        assert_eq!(event.issue.as_ref().unwrap().key, "NEW-7");
        assert_eq!(event.previous_key.as_deref(), Some("OLD-1"));
        assert_eq!(event.previous_project_id.as_deref(), Some("10000"));
        assert_eq!(event.previous_project_key.as_deref(), Some("OLD"));
        let stored = serde_json::to_string(&event).unwrap();
        assert!(!stored.contains("secret words"), "{stored}");
        assert!(
            stored.contains("\"kind\":\"jira:issue_updated\""),
            "{stored}"
        );
        assert_eq!(serde_json::from_str::<JiraEvent>(&stored).unwrap(), event);
        assert_eq!(
            event.identity(None),
            "jira:issue_updated:issue:10100:1700000000123"
        );
        assert_eq!(event.identity(Some("abc-1")), "id:abc-1");
    }

    #[test]
    fn project_events_take_numeric_ids() {
        let body = json!({"timestamp": 5, "webhookEvent": "project_updated",
                          "project": {"id": 10000, "key": "NEW", "name": "N"}});
        let event = JiraEvent::parse(body.to_string().as_bytes()).unwrap();
        assert_eq!(event.project.as_ref().unwrap().id, "10000");
        assert_eq!(event.identity(None), "project_updated:project:10000:5");
    }

    #[test]
    fn shapes_that_are_not_jira_events_are_refused() {
        for body in [
            &b"not json"[..],
            b"[1]",
            br#"{"timestamp": 1}"#,
            br#"{"webhookEvent": "jira:issue_created", "timestamp": 1}"#,
            br#"{"webhookEvent": "jira:issue_created", "issue": {"id": "1", "key": "P-1"}}"#,
            br#"{"webhookEvent": "project_deleted"}"#,
        ] {
            assert!(
                matches!(JiraEvent::parse(body), Err(WebhookError::Malformed(_))),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        let other =
            JiraEvent::parse(br#"{"webhookEvent": "comment_created", "timestamp": 2}"#).unwrap();
        assert_eq!(other.kind, EventKind::Other("comment_created".into()));
        let untimed = JiraEvent::parse(br#"{"webhookEvent": "sprint_started"}"#).unwrap();
        assert_ne!(untimed.identity(None), untimed.identity(None));
    }
}
