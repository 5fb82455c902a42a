//! Remote issue links: `GET|POST|DELETE /rest/api/2/issue/{issueIdOrKey}/remotelink`.
//!
//! As Atlassian's OpenAPI document for Jira DC 10.3 describes them: a POST with a `globalId`
//! that an existing link of the issue has updates that link (200), otherwise creates one
//! (201); both answer `{id, self}`. DELETE takes `?globalId=` (204, or 404 when there is no
//! such link). GET lists the issue's links, or the one with `?globalId=`. Reading needs the
//! issue to be visible (404 otherwise); changing needs the "Link issues" permission (403).

use std::collections::HashMap;

use actix_web::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::permissions;
use crate::routes::error_body;
use crate::world::{Context, User, World};

#[derive(Debug, Clone, PartialEq)]
pub struct RemoteLinkRecord {
    pub id: u64,
    pub issue_id: u64,
    pub global_id: Option<String>,
    pub application: Value,
    pub relationship: Option<String>,
    pub object: Value,
}

pub(crate) fn handle(
    world: &mut World,
    base: &str,
    user: &User,
    issue_id_or_key: &str,
    method: &Method,
    query: &HashMap<String, String>,
    body: &[u8],
) -> (StatusCode, Value) {
    let issue = match world.find_issue(issue_id_or_key) {
        Some(issue) if world.can_see_issue(user, issue) => issue.clone(),
        _ => return (StatusCode::NOT_FOUND, error_body("Issue Does Not Exist")),
    };
    let global_id = query.get("globalId");
    let of_issue = |world: &World, global: &str| {
        world
            .remote_links
            .iter()
            .position(|l| l.issue_id == issue.id && l.global_id.as_deref() == Some(global))
    };
    if method != Method::GET {
        let link = permissions::lookup("LINK_ISSUES").expect("catalogue has LINK_ISSUES");
        if !world.has_permission(user, link, Context::Issue(issue.id)) {
            return (
                StatusCode::FORBIDDEN,
                error_body("You do not have permission to link issues in this project."),
            );
        }
    }
    match *method {
        Method::GET => {
            let render = |l: &RemoteLinkRecord| render(base, &issue.key, l);
            match global_id {
                Some(global) => match of_issue(world, global) {
                    Some(i) => (StatusCode::OK, render(&world.remote_links[i])),
                    None => (StatusCode::NOT_FOUND, error_body("No remote link.")),
                },
                None => {
                    let all = world
                        .remote_links
                        .iter()
                        .filter(|l| l.issue_id == issue.id)
                        .map(render)
                        .collect();
                    (StatusCode::OK, Value::Array(all))
                }
            }
        }
        Method::POST => {
            let Ok(request) = serde_json::from_slice::<Value>(body) else {
                return (
                    StatusCode::BAD_REQUEST,
                    error_body("Unexpected request body."),
                );
            };
            let object = request.get("object").cloned().unwrap_or(Value::Null);
            for field in ["url", "title"] {
                if object
                    .get(field)
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    return (
                        StatusCode::BAD_REQUEST,
                        json!({"errorMessages": [], "errors": {field: format!("'{field}' is required.")}}),
                    );
                }
            }
            let global = request
                .get("globalId")
                .and_then(Value::as_str)
                .map(str::to_owned);
            let existing = global.as_deref().and_then(|g| of_issue(world, g));
            let record = RemoteLinkRecord {
                id: 0,
                issue_id: issue.id,
                global_id: global,
                application: request.get("application").cloned().unwrap_or(json!({})),
                relationship: request
                    .get("relationship")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                object,
            };
            let (status, id) = match existing {
                Some(i) => {
                    let id = world.remote_links[i].id;
                    world.remote_links[i] = RemoteLinkRecord { id, ..record };
                    (StatusCode::OK, id)
                }
                None => {
                    let id = world.next_remote_link;
                    world.next_remote_link += 1;
                    world.remote_links.push(RemoteLinkRecord { id, ..record });
                    (StatusCode::CREATED, id)
                }
            };
            let link = format!("{base}/rest/api/2/issue/{}/remotelink/{id}", issue.key);
            (status, json!({"id": id, "self": link}))
        }
        Method::DELETE => {
            let Some(global) = global_id else {
                return (
                    StatusCode::BAD_REQUEST,
                    error_body("The globalId query parameter is required."),
                );
            };
            match of_issue(world, global) {
                Some(i) => {
                    world.remote_links.remove(i);
                    (StatusCode::NO_CONTENT, Value::Null)
                }
                None => (StatusCode::NOT_FOUND, error_body("No remote link.")),
            }
        }
        _ => (
            StatusCode::METHOD_NOT_ALLOWED,
            error_body("Method not allowed"),
        ),
    }
}

/// A link as `GET .../remotelink` answers it.
pub fn render(base: &str, issue_key: &str, link: &RemoteLinkRecord) -> Value {
    let mut body = json!({
        "id": link.id,
        "self": format!("{base}/rest/api/2/issue/{issue_key}/remotelink/{}", link.id),
        "application": link.application,
        "object": link.object,
    });
    if let Some(global) = &link.global_id {
        body["globalId"] = json!(global);
    }
    if let Some(relationship) = &link.relationship {
        body["relationship"] = json!(relationship);
    }
    body
}
