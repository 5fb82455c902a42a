//! Request handling: one catch-all handler that counts, holds, authenticates and routes.
//!
//! A single handler (rather than actix routes plus middleware) keeps the order of the
//! bookkeeping obvious: a request is counted on arrival, then waits on any hold, and only
//! then looks at availability, so a test can hold requests, flip Jira to 503 and release.

use std::collections::HashMap;

use actix_web::http::{Method, StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

use crate::Shared;
use crate::json;
use crate::permissions::{self, CATALOGUE, DEPRECATED_ALIASES};
use crate::world::{Context, User, World};

const JSON: &str = "application/json;charset=UTF-8";

/// Who the request is from, by Jira's rules.
enum Auth {
    /// No credentials at all (or only stale session cookies).
    Anonymous,
    User(String),
    /// A bearer token Jira doesn't know: Jira refuses it even where anonymous access is allowed.
    Rejected,
}

/// The resources the fake serves, all `GET`.
enum Route<'a> {
    ServerInfo,
    Myself,
    MyPermissions,
    Issue(&'a str),
    Project(&'a str),
}

fn route(path: &str) -> Option<Route<'_>> {
    // Jira serves `/rest/api/latest/...` as an alias of the newest version.
    let rest = path
        .strip_prefix("/rest/api/2/")
        .or_else(|| path.strip_prefix("/rest/api/latest/"))?;
    let segments: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    match segments.as_slice() {
        ["serverInfo"] => Some(Route::ServerInfo),
        ["myself"] => Some(Route::Myself),
        ["mypermissions"] => Some(Route::MyPermissions),
        ["issue", id_or_key] => Some(Route::Issue(id_or_key)),
        ["project", id_or_key] => Some(Route::Project(id_or_key)),
        _ => None,
    }
}

pub(crate) async fn dispatch(req: HttpRequest, shared: web::Data<Shared>) -> HttpResponse {
    shared.record_arrival(req.path(), &req);
    shared.wait_while_held().await;

    let world = shared.world.lock().expect("state lock");
    if world.unavailable {
        return HttpResponse::ServiceUnavailable()
            .insert_header((header::RETRY_AFTER, "5"))
            .content_type(JSON)
            .body(
                error_body("Jira is temporarily unavailable. Please try again later.").to_string(),
            );
    }
    let auth = authenticate(&world, &req);
    let user = match &auth {
        Auth::User(name) => world.users.get(name),
        _ => None,
    };
    let username = user.map_or("anonymous", |u| u.name.as_str());
    let respond = |status: StatusCode, body: Value| {
        HttpResponse::build(status)
            .content_type(JSON)
            // Jira names the user it resolved on every response.
            .insert_header(("X-AUSERNAME", username))
            .body(body.to_string())
    };

    let base = shared.base_url.as_str();
    let Some(route) = route(req.path()) else {
        // Jersey's answer for a path no resource matches.
        let uri = format!("{base}{}", req.uri());
        let body = json!({"message": format!("null for uri: {uri}"), "status-code": 404});
        return respond(StatusCode::NOT_FOUND, body);
    };
    if req.method() != Method::GET {
        return respond(
            StatusCode::METHOD_NOT_ALLOWED,
            error_body("Method not allowed"),
        );
    }
    let Ok(query) = web::Query::<HashMap<String, String>>::from_query(req.query_string()) else {
        return respond(
            StatusCode::BAD_REQUEST,
            error_body("Malformed query string"),
        );
    };
    let user = match (&route, auth, user) {
        // serverInfo is the one resource here that anonymous callers may read.
        (Route::ServerInfo, Auth::Anonymous | Auth::User(_), _) => {
            return respond(StatusCode::OK, json::server_info(base));
        }
        (_, _, Some(user)) => user,
        (_, _, None) => return respond(StatusCode::UNAUTHORIZED, not_authenticated()),
    };
    let (status, body) = match route {
        Route::ServerInfo => (StatusCode::OK, json::server_info(base)),
        Route::Myself => {
            let expand = query.get("expand").map_or("", String::as_str);
            let groups = expand.split(',').any(|x| x.trim() == "groups");
            (StatusCode::OK, json::user(base, user, groups))
        }
        Route::MyPermissions => my_permissions(&world, user, &query),
        Route::Issue(id_or_key) => match world.find_issue(id_or_key) {
            Some(issue) if world.can_see_issue(user, issue) => {
                (StatusCode::OK, json::issue(base, &world, issue))
            }
            _ => (StatusCode::NOT_FOUND, error_body("Issue Does Not Exist")),
        },
        Route::Project(id_or_key) => match world.find_project(id_or_key) {
            Some(project) if world.can_see_project(user, project) => {
                (StatusCode::OK, json::project(base, project))
            }
            _ => (StatusCode::NOT_FOUND, no_project(id_or_key)),
        },
    };
    respond(status, body)
}

/// Bearer wins over cookies; among cookies a live `JSESSIONID` wins, then the remember-me
/// cookie (Jira logs the user back in from it when the session has expired).
fn authenticate(world: &World, req: &HttpRequest) -> Auth {
    let live = |name: Option<&String>| match name {
        Some(name) if world.users.get(name).is_some_and(|u| u.active) => Auth::User(name.clone()),
        _ => Auth::Rejected,
    };
    if let Some(value) = req.headers().get(header::AUTHORIZATION) {
        // Any Authorization header decides alone; a scheme other than Bearer is not accepted.
        return match value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")) {
            Some(token) => live(world.tokens.get(token.trim())),
            None => Auth::Rejected,
        };
    }
    let mut session = None;
    let mut remember_me = None;
    for header_value in req.headers().get_all(header::COOKIE) {
        let Ok(text) = header_value.to_str() else {
            continue;
        };
        for pair in text.split(';') {
            match pair.trim().split_once('=') {
                Some(("JSESSIONID", value)) => session = Some(value),
                Some(("seraph.rememberme.cookie", value)) => remember_me = Some(value),
                _ => {}
            }
        }
    }
    if let Auth::User(name) = live(session.and_then(|s| world.sessions.get(s))) {
        return Auth::User(name);
    }
    if let Auth::User(name) = live(remember_me.and_then(|r| world.remember_me.get(r))) {
        return Auth::User(name);
    }
    // Stale cookies make the caller anonymous, not refused: Jira just ignores them.
    Auth::Anonymous
}

fn my_permissions(
    world: &World,
    user: &User,
    query: &HashMap<String, String>,
) -> (StatusCode, Value) {
    let context = match permission_context(world, user, query) {
        Ok(context) => context,
        Err(refusal) => return refusal,
    };
    let mut out = serde_json::Map::new();
    for permission in CATALOGUE {
        let have = world.has_permission(user, permission, context);
        out.insert(
            permission.key.to_owned(),
            json::permission(permission, permission.key, have, false),
        );
    }
    for (old, _) in DEPRECATED_ALIASES {
        let permission = permissions::lookup(old).expect("aliases name catalogue entries");
        let have = world.has_permission(user, permission, context);
        out.insert(
            (*old).to_owned(),
            json::permission(permission, old, have, true),
        );
    }
    (StatusCode::OK, json!({ "permissions": out }))
}

/// The context `mypermissions` was asked about. Jira takes the first of issueKey, issueId,
/// projectKey, projectId; something the user may not see is "not found", like a missing one.
fn permission_context(
    world: &World,
    user: &User,
    query: &HashMap<String, String>,
) -> Result<Context, (StatusCode, Value)> {
    let issue_context = |issue: Option<&crate::world::Issue>| match issue {
        Some(issue) if world.can_see_issue(user, issue) => Ok(Context::Issue(issue.id)),
        _ => Err((StatusCode::NOT_FOUND, error_body("Issue Does Not Exist"))),
    };
    let bad_id = |what: &str, id: &str| {
        (
            StatusCode::BAD_REQUEST,
            error_body(&format!("Invalid {what} id '{id}'.")),
        )
    };
    if let Some(key) = query.get("issueKey") {
        return issue_context(world.find_issue(key));
    }
    if let Some(id) = query.get("issueId") {
        id.parse::<u64>().map_err(|_| bad_id("issue", id))?;
        return issue_context(world.find_issue(id));
    }
    let project = if let Some(key) = query.get("projectKey") {
        (key, world.project_by_key(key))
    } else if let Some(id) = query.get("projectId") {
        let numeric = id.parse::<u64>().map_err(|_| bad_id("project", id))?;
        (id, world.projects.get(&numeric))
    } else {
        return Ok(Context::Global);
    };
    match project {
        (_, Some(p)) if world.can_see_project(user, p) => Ok(Context::Project(p.id)),
        (asked, _) => Err((StatusCode::NOT_FOUND, no_project(asked))),
    }
}

/// Jira's `ErrorCollection` shape.
pub(crate) fn error_body(message: &str) -> Value {
    json!({"errorMessages": [message], "errors": {}})
}

fn not_authenticated() -> Value {
    error_body("You are not authenticated. Authentication required to perform this operation.")
}

fn no_project(id_or_key: &str) -> Value {
    let what = if id_or_key.parse::<u64>().is_ok() {
        "id"
    } else {
        "key"
    };
    error_body(&format!(
        "No project could be found with {what} '{id_or_key}'."
    ))
}
