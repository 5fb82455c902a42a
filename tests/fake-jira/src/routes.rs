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
use crate::hooks::{self, WebhookApi};
use crate::json;
use crate::permissions::{self, CATALOGUE, DEPRECATED_ALIASES};
use crate::world::{Context, User, World};
use crate::{links, search};

const JSON: &str = "application/json;charset=UTF-8";

/// Who the request is from, by Jira's rules.
enum Auth {
    /// No credentials at all (or only stale session cookies).
    Anonymous,
    User(String),
    /// A bearer token Jira doesn't know: Jira refuses it even where anonymous access is allowed.
    Rejected,
}

/// The resources the fake serves: `GET` ones for identity and permissions, and the ones the
/// background work uses (search, remote links, webhook registration), which take other
/// methods too and are the ones scripted failures ([`crate::world::Faults`]) apply to.
enum Route<'a> {
    ServerInfo,
    Myself,
    MyPermissions,
    Issue(&'a str),
    Project(&'a str),
    Search,
    RemoteLinks(&'a str),
    Webhooks(WebhookApi, Option<&'a str>),
}

impl Route<'_> {
    fn is_background(&self) -> bool {
        matches!(
            self,
            Route::Search | Route::RemoteLinks(_) | Route::Webhooks(..)
        )
    }
}

fn route(path: &str) -> Option<Route<'_>> {
    let trimmed = path.trim_end_matches('/');
    if let Some(rest) = trimmed.strip_prefix("/rest/webhooks/1.0/webhook") {
        return webhook_route(WebhookApi::Jira9, rest);
    }
    if let Some(rest) = trimmed.strip_prefix("/rest/jira-webhook/1.0/webhooks") {
        return webhook_route(WebhookApi::Jira10, rest);
    }
    // Jira serves `/rest/api/latest/...` as an alias of the newest version.
    let rest = path
        .strip_prefix("/rest/api/2/")
        .or_else(|| path.strip_prefix("/rest/api/latest/"))?;
    let segments: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    match segments.as_slice() {
        ["serverInfo"] => Some(Route::ServerInfo),
        ["myself"] => Some(Route::Myself),
        ["mypermissions"] => Some(Route::MyPermissions),
        ["search"] => Some(Route::Search),
        ["issue", id_or_key] => Some(Route::Issue(id_or_key)),
        ["issue", id_or_key, "remotelink"] => Some(Route::RemoteLinks(id_or_key)),
        ["project", id_or_key] => Some(Route::Project(id_or_key)),
        _ => None,
    }
}

fn webhook_route(api: WebhookApi, rest: &str) -> Option<Route<'_>> {
    match rest {
        "" => Some(Route::Webhooks(api, None)),
        id if id.starts_with('/') && !id[1..].contains('/') => {
            Some(Route::Webhooks(api, Some(&id[1..])))
        }
        _ => None,
    }
}

/// Whether the reported version serves this webhook API: Jira 10 moved it.
fn serves(world: &World, api: WebhookApi) -> bool {
    let major: u32 = world
        .version
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(10);
    (major >= 10) == (api == WebhookApi::Jira10)
}

pub(crate) async fn dispatch(
    req: HttpRequest,
    body: web::Bytes,
    shared: web::Data<Shared>,
) -> HttpResponse {
    shared.record_arrival(req.path(), &req);
    shared.wait_while_held().await;

    let mut world = shared.world.lock().expect("state lock");
    if world.unavailable {
        return HttpResponse::ServiceUnavailable()
            .insert_header((header::RETRY_AFTER, "5"))
            .content_type(JSON)
            .body(
                error_body("Jira is temporarily unavailable. Please try again later.").to_string(),
            );
    }
    let auth = authenticate(&world, &req);
    // Owned, so the handlers below may change the world.
    let user: Option<User> = match &auth {
        Auth::User(name) => world.users.get(name).cloned(),
        _ => None,
    };
    let username = user
        .as_ref()
        .map_or("anonymous", |u| u.name.as_str())
        .to_owned();
    let respond = |status: StatusCode, body: Value| {
        HttpResponse::build(status)
            .content_type(JSON)
            // Jira names the user it resolved on every response.
            .insert_header(("X-AUSERNAME", username.as_str()))
            .body(body.to_string())
    };

    let base = shared.base_url.as_str();
    let route = match route(req.path()) {
        Some(Route::Webhooks(api, _)) if !serves(&world, api) => None,
        other => other,
    };
    let Some(route) = route else {
        // Jersey's answer for a path no resource matches.
        let uri = format!("{base}{}", req.uri());
        let body = json!({"message": format!("null for uri: {uri}"), "status-code": 404});
        return respond(StatusCode::NOT_FOUND, body);
    };
    if route.is_background() {
        if world.faults.rate_limited > 0 {
            world.faults.rate_limited -= 1;
            let wait = world.faults.retry_after_secs.to_string();
            // Jira DC's rate limiter: an empty token bucket, refilled every interval.
            return HttpResponse::TooManyRequests()
                .insert_header((header::RETRY_AFTER, wait.as_str()))
                .insert_header(("X-RateLimit-Limit", "10"))
                .insert_header(("X-RateLimit-Remaining", "0"))
                .insert_header(("X-RateLimit-Interval-Seconds", wait.as_str()))
                .insert_header(("X-RateLimit-FillRate", "10"))
                .content_type(JSON)
                .body(error_body("Rate limit exceeded.").to_string());
        }
        if world.faults.unavailable > 0 {
            world.faults.unavailable -= 1;
            return HttpResponse::ServiceUnavailable()
                .insert_header((header::RETRY_AFTER, "5"))
                .content_type(JSON)
                .body(
                    error_body("Jira is temporarily unavailable. Please try again later.")
                        .to_string(),
                );
        }
        let Ok(query) = web::Query::<HashMap<String, String>>::from_query(req.query_string())
        else {
            return respond(
                StatusCode::BAD_REQUEST,
                error_body("Malformed query string"),
            );
        };
        let Some(user) = user.clone() else {
            return respond(StatusCode::UNAUTHORIZED, not_authenticated());
        };
        let method = req.method();
        let (status, body) = match route {
            Route::Search if method == Method::GET || method == Method::POST => {
                search::handle(&world, base, &user, method, &query, &body)
            }
            Route::RemoteLinks(id_or_key) => {
                links::handle(&mut world, base, &user, id_or_key, method, &query, &body)
            }
            Route::Webhooks(api, id) => {
                hooks::handle(&mut world, base, &user, api, id, method, &body)
            }
            _ => (
                StatusCode::METHOD_NOT_ALLOWED,
                error_body("Method not allowed"),
            ),
        };
        return if status == StatusCode::NO_CONTENT {
            HttpResponse::NoContent()
                .insert_header(("X-AUSERNAME", user.name.as_str()))
                .finish()
        } else {
            respond(status, body)
        };
    }
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
    let user = match (&route, auth, user.as_ref()) {
        // serverInfo is the one resource here that anonymous callers may read.
        (Route::ServerInfo, Auth::Anonymous | Auth::User(_), _) => {
            return respond(StatusCode::OK, json::server_info(base, &world.version));
        }
        (_, _, Some(user)) => user,
        (_, _, None) => return respond(StatusCode::UNAUTHORIZED, not_authenticated()),
    };
    let (status, body) = match route {
        Route::ServerInfo => (StatusCode::OK, json::server_info(base, &world.version)),
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
        Route::Search | Route::RemoteLinks(_) | Route::Webhooks(..) => {
            unreachable!("handled above")
        }
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
