//! Changes a test makes to the world that Jira would announce by webhook, and the deliveries.
//! The same changes made over HTTP (`POST`/`DELETE /rest/api/2/issue`, the fake's `/_fake/`
//! move and re-key, see `routes.rs`) go through the same functions and are announced alike.
//!
//! Payloads follow Atlassian's documented issue event (`timestamp` in epoch milliseconds,
//! `webhookEvent`, `issue_event_type_name`, `user`, `issue`, and for updates `changelog:
//! {id, items: [{field, fieldtype, from, fromString, to, toString}]}`; a move has the items
//! `project` and `Key`). Project events carry `project` (id as a number, key, name, lead).
//! Every registered, enabled webhook subscribed to the event gets it: signed with
//! `X-Hub-Signature: sha256=<hex HMAC-SHA256 of the body>` when it has a secret (Jira 10),
//! plain otherwise (Jira 9). Deliveries are awaited, so a test can assert right after the
//! change; a test can also drop them, queue them to send later in any order, or send one
//! again.

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::hooks::Webhook;
use crate::json;
use crate::world::{Issue, Project, World};
use crate::{FakeJira, Shared};

/// What happens to webhook deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeliveryMode {
    /// Sent at once (the default).
    #[default]
    Send,
    /// Lost, as Jira loses deliveries it could not make: nothing is sent or kept.
    Drop,
    /// Kept until [`FakeJira::deliver_queued`].
    Queue,
}

/// A delivery made (or attempted), for a test to look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    pub url: String,
    /// `webhookEvent`.
    pub event: String,
    pub body: String,
    /// The `X-Hub-Signature` sent, if any.
    pub signature: Option<String>,
    /// The receiver's status code; `None` when the connection failed.
    pub status: Option<u16>,
}

#[derive(Debug, Default)]
pub struct Deliveries {
    pub mode: DeliveryMode,
    pub queue: Vec<DeliveryRecord>,
    pub log: Vec<DeliveryRecord>,
}

/// The user Jira names as having made the change.
fn actor(base: &str) -> Value {
    json!({
        "self": format!("{base}/rest/api/2/user?username=admin"),
        "name": "admin",
        "key": "JIRAUSER10000",
        "emailAddress": "admin@example.com",
        "avatarUrls": json::avatar_urls(base, "useravatar", "avatarId=10122"),
        "displayName": "Administrator",
        "active": true,
        "timeZone": "Etc/UTC",
    })
}

fn issue_event(
    world: &mut World,
    base: &str,
    kind: &str,
    type_name: &str,
    issue: &Issue,
    items: Vec<Value>,
) -> Value {
    let mut body = json!({
        "timestamp": world.tick(),
        "webhookEvent": kind,
        "issue_event_type_name": type_name,
        "user": actor(base),
        "issue": json::issue(base, world, issue),
    });
    if !items.is_empty() {
        body["changelog"] = json!({"id": world.next_changelog.to_string(), "items": items});
        world.next_changelog += 1;
    }
    body
}

fn project_event(world: &mut World, base: &str, kind: &str, project: &Project) -> Value {
    let mut described = json::project_ref(base, project);
    // Project events name the project with a numeric id.
    described["id"] = json!(project.id);
    described["projectLead"] = actor(base);
    described["assigneeType"] = json!("UNASSIGNED");
    json!({"timestamp": world.tick(), "webhookEvent": kind, "project": described})
}

fn item(field: &str, from: Value, from_string: &str, to: Value, to_string: &str) -> Value {
    json!({"field": field, "fieldtype": "jira", "from": from, "fromString": from_string, "to": to, "toString": to_string})
}

/// The `X-Hub-Signature` value Jira 10 sends with `body` under a webhook's `secret`:
/// `sha256=<hex HMAC-SHA256 of the body>`.
pub fn hub_signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The body of a `jira:issue_updated` delivery as [`FakeJira::edit_summary`] announces it
/// (the issue as Jira renders it, the acting user, a changelog item `summary`), for an issue
/// of project `project_key` that need not exist anywhere, with the given `issue_id`, key and
/// `timestamp`. No server is involved: this is for load generators, which build, sign
/// ([`hub_signature`]) and send many deliveries. filebridge identifies an event without a
/// delivery id by its kind, issue id and `timestamp`, so distinct ids make distinct events.
pub fn issue_updated_body(
    base_url: &str,
    project_key: &str,
    issue_id: u64,
    issue_key: &str,
    timestamp_ms: i64,
) -> String {
    let mut world = World::default();
    let project_id = world.add_project(project_key, &format!("Project {project_key}"));
    let issue = Issue {
        id: issue_id,
        key: issue_key.to_owned(),
        project_id,
        summary: format!("Edited summary of {issue_key}"),
        restricted_to: None,
        created_ms: timestamp_ms - 86_400_000,
        updated_ms: timestamp_ms,
    };
    world.next_changelog = issue_id + 100_000;
    let items = vec![item(
        "summary",
        Value::Null,
        &format!("Summary of {issue_key}"),
        Value::Null,
        &issue.summary,
    )];
    let mut body = issue_event(
        &mut world,
        base_url,
        "jira:issue_updated",
        "issue_updated",
        &issue,
        items,
    );
    body["timestamp"] = json!(timestamp_ms);
    body.to_string()
}

/// The deliveries `payload` makes, one per subscribed webhook.
fn outgoing(webhooks: &[Webhook], payload: &Value) -> Vec<DeliveryRecord> {
    let event = payload["webhookEvent"].as_str().unwrap_or("").to_owned();
    webhooks
        .iter()
        .filter(|w| w.enabled && (w.events.is_empty() || w.events.contains(&event)))
        .map(|w| {
            let body = if w.exclude_body {
                String::new()
            } else {
                payload.to_string()
            };
            let signature = w.secret.as_ref().map(|secret| {
                let mut mac =
                    Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
                mac.update(body.as_bytes());
                format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
            });
            DeliveryRecord {
                url: w.url.clone(),
                event: event.clone(),
                body,
                signature,
                status: None,
            }
        })
        .collect()
}

/// POSTs one delivery over plain HTTP/1.1 (the tests' filebridge listens on http) and
/// returns the status code.
async fn post(delivery: &DeliveryRecord) -> Option<u16> {
    let rest = delivery.url.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: Atlassian HttpClient fake\r\n\
         Content-Type: application/json; charset=UTF-8\r\nContent-Length: {}\r\nConnection: close\r\n",
        delivery.body.len()
    );
    if let Some(signature) = &delivery.signature {
        request.push_str(&format!("X-Hub-Signature: {signature}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(&delivery.body);
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(authority).await.ok()?;
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.ok()?;
        let text = String::from_utf8_lossy(&answer);
        text.split_whitespace().nth(1)?.parse().ok()
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .ok()
        .flatten()
}

// The changes themselves, each returning the payload that announces it. Both the test API
// below and the fake's REST endpoints (`routes.rs`) make changes through these, so a change
// made over HTTP is announced exactly like one a test makes.

/// `jira:issue_created` for the issue just added with id `id`.
pub(crate) fn created(world: &mut World, base: &str, id: u64) -> Value {
    let issue = world.issues[&id].clone();
    issue_event(
        world,
        base,
        "jira:issue_created",
        "issue_created",
        &issue,
        Vec::new(),
    )
}

/// Moves an issue to another project under a new key; `jira:issue_updated` with the
/// changelog items `project` and `Key`.
pub(crate) fn moved(
    world: &mut World,
    base: &str,
    issue_key: &str,
    new_project_key: &str,
    new_issue_key: &str,
) -> Value {
    let before = world.expect_issue(issue_key).clone();
    let old_project = world.projects[&before.project_id].clone();
    world.move_issue(issue_key, new_project_key, new_issue_key);
    let after = world.expect_issue(new_issue_key).clone();
    let new_project = world.projects[&after.project_id].clone();
    let items = vec![
        item(
            "project",
            json!(old_project.id.to_string()),
            &old_project.name,
            json!(new_project.id.to_string()),
            &new_project.name,
        ),
        item("Key", Value::Null, &before.key, Value::Null, &after.key),
    ];
    issue_event(
        world,
        base,
        "jira:issue_updated",
        "issue_moved",
        &after,
        items,
    )
}

/// Deletes an issue; `jira:issue_deleted` with the issue as it was.
pub(crate) fn deleted(world: &mut World, base: &str, issue_key: &str) -> Value {
    let issue = world.expect_issue(issue_key).clone();
    // Rendered before it goes: the payload shows the deleted issue.
    let payload = issue_event(
        world,
        base,
        "jira:issue_deleted",
        "issue_deleted",
        &issue,
        Vec::new(),
    );
    world.delete_issue(issue_key);
    payload
}

/// Changes a project's key (its issues' keys follow); `project_updated`.
pub(crate) fn rekeyed(world: &mut World, base: &str, old_key: &str, new_key: &str) -> Value {
    let id = world.change_project_key(old_key, new_key);
    let project = world.projects[&id].clone();
    project_event(world, base, "project_updated", &project)
}

impl Shared {
    /// Sends, drops or queues what `payload` makes, as the delivery mode says.
    pub(crate) async fn announce(&self, payload: Value) {
        let (mode, deliveries) = {
            let world = self.world();
            (world.deliveries.mode, outgoing(&world.webhooks, &payload))
        };
        match mode {
            DeliveryMode::Drop => {}
            DeliveryMode::Queue => self.world().deliveries.queue.extend(deliveries),
            DeliveryMode::Send => {
                for delivery in deliveries {
                    self.send(delivery).await;
                }
            }
        }
    }

    pub(crate) async fn send(&self, mut delivery: DeliveryRecord) -> DeliveryRecord {
        delivery.status = post(&delivery).await;
        self.world().deliveries.log.push(delivery.clone());
        delivery
    }
}

impl FakeJira {
    /// Creates an issue (like [`FakeJira::add_issue`]) and announces `jira:issue_created`.
    pub async fn create_issue(&self, project_key: &str, issue_key: &str) -> String {
        let payload = {
            let mut world = self.shared.world();
            let id = world.add_issue(project_key, issue_key);
            created(&mut world, &self.base_url, id)
        };
        let id = payload["issue"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        self.shared.announce(payload).await;
        id
    }

    /// Moves an issue to another project under a new key and announces `jira:issue_updated`
    /// with the changelog items `project` and `Key`.
    pub async fn move_issue_to(&self, issue_key: &str, new_project_key: &str, new_issue_key: &str) {
        let payload = moved(
            &mut self.shared.world(),
            &self.base_url,
            issue_key,
            new_project_key,
            new_issue_key,
        );
        self.shared.announce(payload).await;
    }

    /// Gives an issue a new key in its project and announces it (changelog item `Key` only).
    pub async fn rename_issue(&self, issue_key: &str, new_issue_key: &str) {
        let payload = {
            let mut world = self.shared.world();
            let before = world.expect_issue(issue_key).clone();
            let project_key = world.projects[&before.project_id].key.clone();
            world.move_issue(issue_key, &project_key, new_issue_key);
            let after = world.expect_issue(new_issue_key).clone();
            let items = vec![item(
                "Key",
                Value::Null,
                &before.key,
                Value::Null,
                &after.key,
            )];
            issue_event(
                &mut world,
                &self.base_url,
                "jira:issue_updated",
                "issue_moved",
                &after,
                items,
            )
        };
        self.shared.announce(payload).await;
    }

    /// Edits an issue's summary and announces `jira:issue_updated`.
    pub async fn edit_summary(&self, issue_key: &str, summary: &str) {
        let payload = {
            let mut world = self.shared.world();
            let now = world.tick();
            let issue = world.expect_issue(issue_key);
            let old = std::mem::replace(&mut issue.summary, summary.to_owned());
            issue.updated_ms = now;
            let issue = issue.clone();
            let items = vec![item("summary", Value::Null, &old, Value::Null, summary)];
            issue_event(
                &mut world,
                &self.base_url,
                "jira:issue_updated",
                "issue_updated",
                &issue,
                items,
            )
        };
        self.shared.announce(payload).await;
    }

    /// Deletes an issue and announces `jira:issue_deleted` (with the issue as it was).
    pub async fn delete_issue(&self, issue_key: &str) {
        let payload = deleted(&mut self.shared.world(), &self.base_url, issue_key);
        self.shared.announce(payload).await;
    }

    /// Creates a project and announces `project_created`; returns its id.
    pub async fn create_project(&self, key: &str, name: &str) -> String {
        let payload = {
            let mut world = self.shared.world();
            let id = world.add_project(key, name);
            let project = world.projects[&id].clone();
            project_event(&mut world, &self.base_url, "project_created", &project)
        };
        let id = payload["project"]["id"].to_string();
        self.shared.announce(payload).await;
        id
    }

    /// Changes a project's key (its issues' keys follow) and announces `project_updated`.
    /// Like Jira, no event is sent for the issues whose keys changed.
    pub async fn change_project_key(&self, old_key: &str, new_key: &str) {
        let payload = rekeyed(&mut self.shared.world(), &self.base_url, old_key, new_key);
        self.shared.announce(payload).await;
    }

    /// Deletes a project with its issues and announces `project_deleted`.
    pub async fn delete_project(&self, key: &str) {
        let payload = {
            let mut world = self.shared.world();
            let project = world.delete_project(key);
            project_event(&mut world, &self.base_url, "project_deleted", &project)
        };
        self.shared.announce(payload).await;
    }
}
