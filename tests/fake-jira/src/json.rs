//! Response bodies in the shapes Jira Data Center 10.3 sends (checked against Atlassian's
//! OpenAPI document by `tests/integration/fake_jira_schema.rs`).

use serde_json::{Value, json};

use crate::clock;
use crate::permissions::Permission;
use crate::world::{Issue, Project, User, World};

/// The version the fake reports unless a test sets another ([`crate::FakeJira::set_version`]).
pub const VERSION: &str = "10.3.1";
/// A Jira 9 to switch to: the last 9.x Long Term Support line.
pub const VERSION_9: &str = "9.12.15";

/// `ServerInfoBean`, for `version` (`major.minor.patch`).
pub fn server_info(base: &str, version: &str) -> Value {
    let numbers: Vec<u64> = version.split('.').map(|n| n.parse().unwrap_or(0)).collect();
    let number = |i: usize| numbers.get(i).copied().unwrap_or(0);
    let build_number = number(0) * 1_000_000 + number(1) * 1000 + number(2);
    json!({
        "baseUrl": base,
        "version": version,
        "versionNumbers": numbers,
        "deploymentType": "Server",
        "buildNumber": build_number,
        "buildDate": "2024-12-10T00:00:00.000+0000",
        "databaseBuildNumber": build_number,
        "scmInfo": "4c4b2a0e5b7b8f1b0c9d3e2f1a0b9c8d7e6f5a4b",
        "serverTitle": "Jira",
    })
}

/// `UserBean`, as `/myself` returns it. Without `expand=groups` Jira still sends `groups`,
/// with the true `size` but no `items`.
pub fn user(base: &str, user: &User, expand_groups: bool) -> Value {
    let items: Vec<Value> = if expand_groups {
        user.groups
            .iter()
            .map(|g| json!({"name": g, "self": format!("{base}/rest/api/2/group?groupname={}", encode(g))}))
            .collect()
    } else {
        Vec::new()
    };
    json!({
        "self": format!("{base}/rest/api/2/user?username={}", encode(&user.name)),
        "key": user.key,
        "name": user.name,
        "emailAddress": user.email,
        "avatarUrls": avatar_urls(base, "useravatar", "avatarId=10122"),
        "displayName": user.display_name,
        "active": user.active,
        "deleted": false,
        "timeZone": "Etc/UTC",
        "locale": "en_US",
        "groups": {"size": user.groups.len(), "items": items},
        "applicationRoles": {"size": 1, "items": []},
        "expand": "groups,applicationRoles",
    })
}

/// One `PermissionJsonBean` of `/mypermissions`.
pub fn permission(permission: &Permission, key: &str, have: bool, deprecated: bool) -> Value {
    let mut body = json!({
        "id": permission.id,
        "key": key,
        "name": permission.name,
        "type": permission.scope.as_str(),
        "description": permission.description,
        "havePermission": have,
    });
    if deprecated {
        body["deprecatedKey"] = Value::Bool(true);
    }
    body
}

/// `IssueBean`, with the system fields a filebridge might look at.
pub fn issue(base: &str, world: &World, issue: &Issue) -> Value {
    let project = world
        .projects
        .get(&issue.project_id)
        .map(|p| project_ref(base, p))
        .unwrap_or(Value::Null);
    let security = match issue.restricted_to {
        Some(_) => json!({
            "self": format!("{base}/rest/api/2/securitylevel/10000"),
            "id": "10000",
            "description": "Only the people named on the issue",
            "name": "Restricted",
        }),
        None => Value::Null,
    };
    json!({
        "expand": "renderedFields,names,schema,operations,editmeta,changelog,versionedRepresentations",
        "id": issue.id.to_string(),
        "self": format!("{base}/rest/api/2/issue/{}", issue.id),
        "key": issue.key,
        "fields": {
            "summary": issue.summary,
            "issuetype": {
                "self": format!("{base}/rest/api/2/issuetype/10002"),
                "id": "10002",
                "description": "A task that needs to be done.",
                "iconUrl": format!("{base}/secure/viewavatar?size=xsmall&avatarId=10318&avatarType=issuetype"),
                "name": "Task",
                "subtask": false,
                "avatarId": 10318,
            },
            "project": project,
            "status": {
                "self": format!("{base}/rest/api/2/status/10000"),
                "description": "",
                "iconUrl": format!("{base}/"),
                "name": "To Do",
                "id": "10000",
                "statusCategory": {
                    "self": format!("{base}/rest/api/2/statuscategory/2"),
                    "id": 2,
                    "key": "new",
                    "colorName": "default",
                    "name": "To Do",
                },
            },
            "priority": {
                "self": format!("{base}/rest/api/2/priority/3"),
                "iconUrl": format!("{base}/images/icons/priorities/medium.svg"),
                "name": "Medium",
                "id": "3",
            },
            "security": security,
            "labels": [],
            "description": null,
            "attachment": [],
            "created": clock::jira_time(issue.created_ms),
            "updated": clock::jira_time(issue.updated_ms),
        },
    })
}

/// The short project form embedded in an issue (`fields.project`).
pub fn project_ref(base: &str, project: &Project) -> Value {
    json!({
        "self": format!("{base}/rest/api/2/project/{}", project.id),
        "id": project.id.to_string(),
        "key": project.key,
        "name": project.name,
        "projectTypeKey": "software",
        "avatarUrls": avatar_urls(base, "projectavatar", &format!("pid={}&avatarId=10324", project.id)),
    })
}

/// `ProjectBean`, as `/project/{projectIdOrKey}` returns it.
pub fn project(base: &str, project: &Project) -> Value {
    let mut body = project_ref(base, project);
    body["expand"] = json!("description,lead,url,projectKeys");
    body["description"] = json!("");
    body["archived"] = json!(false);
    body["projectKeys"] = json!([project.key]);
    body
}

pub fn avatar_urls(base: &str, kind: &str, query: &str) -> Value {
    let url = |size: &str| format!("{base}/secure/{kind}?size={size}&{query}");
    json!({
        "48x48": url("large"),
        "24x24": url("small"),
        "16x16": url("xsmall"),
        "32x32": url("medium"),
    })
}

/// Percent-encodes a query value (names may hold spaces or `@`), keeping RFC 3986 unreserved
/// characters as they are.
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
