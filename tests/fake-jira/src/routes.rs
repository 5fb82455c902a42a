//! Request handling: one catch-all handler that counts, holds, authenticates and routes.
//!
//! A single handler (rather than actix routes plus middleware) keeps the order of the
//! bookkeeping obvious: a request is counted on arrival, then waits on any hold, and only
//! then looks at availability, so a test can hold requests, flip Jira to 503 and release.
//!
//! Issue changes over REST, as Jira documents them: `POST /rest/api/2/issue` (needs *Create
//! issues* in the project) and `DELETE /rest/api/2/issue/{idOrKey}` (needs *Delete issues*).
//! Jira has no REST call to move an issue to another project (it is the Move action of its
//! UI) or to change a project's key (project settings), so the fake adds two endpoints of
//! its own under `/_fake/`, which no Jira has:
//!
//! - `POST /_fake/issue/{idOrKey}/move` `{"project": "DEST", "key": "DEST-7"}` (`key`
//!   optional: the project's next number) needs *Move issues* in the issue's project and
//!   *Create issues* in the destination, as Jira's Move does; answers 200 `{id, key, self}`.
//! - `POST /_fake/project/{idOrKey}/rekey` `{"key": "NEW"}` needs a Jira administrator;
//!   answers 200 with the project.
//!
//! Each change is announced to the registered webhooks before the answer is sent, exactly as
//! the test API's changes are (`events.rs`).

use std::collections::HashMap;

use actix_web::http::{Method, StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

use crate::Shared;
use crate::events;
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
    /// `/rest/api/2/issue`: creating an issue.
    Issues,
    /// `/_fake/issue/{idOrKey}/move`, not Jira's.
    FakeMove(&'a str),
    /// `/_fake/project/{idOrKey}/rekey`, not Jira's.
    FakeRekey(&'a str),
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
    if let Some(rest) = trimmed.strip_prefix("/_fake/") {
        return match rest.split('/').collect::<Vec<_>>().as_slice() {
            ["issue", id_or_key, "move"] => Some(Route::FakeMove(id_or_key)),
            ["project", id_or_key, "rekey"] => Some(Route::FakeRekey(id_or_key)),
            _ => None,
        };
    }
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
        ["issue"] => Some(Route::Issues),
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

    let mut announcement = None;
    let response = answer(&req, &body, &shared, &mut announcement);
    // A change is announced to the webhooks before it is answered, as the test API's changes
    // are, and without the world's lock, which `answer` has released.
    if let Some(payload) = announcement {
        shared.announce(payload).await;
    }
    response
}

/// The answer to a request, under the world's lock. A request that changed the world leaves
/// the payload announcing the change in `announcement`.
fn answer(
    req: &HttpRequest,
    body: &[u8],
    shared: &Shared,
    announcement: &mut Option<Value>,
) -> HttpResponse {
    let mut world = shared.world.lock().expect("state lock");
    if world.unavailable {
        return HttpResponse::ServiceUnavailable()
            .insert_header((header::RETRY_AFTER, "5"))
            .content_type(JSON)
            .body(
                error_body("Jira is temporarily unavailable. Please try again later.").to_string(),
            );
    }
    let auth = authenticate(&world, req);
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
    if let Some(change) = Change::of(&route, req.method()) {
        let Some(user) = user.as_ref() else {
            return respond(StatusCode::UNAUTHORIZED, not_authenticated());
        };
        let (status, answer) = match change.apply(&mut world, base, user, body) {
            Ok((status, answer, payload)) => {
                *announcement = Some(payload);
                (status, answer)
            }
            Err(refusal) => refusal,
        };
        return if status == StatusCode::NO_CONTENT {
            HttpResponse::NoContent()
                .insert_header(("X-AUSERNAME", user.name.as_str()))
                .finish()
        } else {
            respond(status, answer)
        };
    }
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
                search::handle(&world, base, &user, method, &query, body)
            }
            Route::RemoteLinks(id_or_key) => {
                links::handle(&mut world, base, &user, id_or_key, method, &query, body)
            }
            Route::Webhooks(api, id) => {
                hooks::handle(&mut world, base, &user, api, id, method, body)
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
        Route::Issues | Route::FakeMove(_) | Route::FakeRekey(_) => (
            StatusCode::METHOD_NOT_ALLOWED,
            error_body("Method not allowed"),
        ),
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

/// A change to the world made over HTTP, announced by webhook like the test API's changes.
enum Change<'a> {
    Create,
    Delete(&'a str),
    Move(&'a str),
    Rekey(&'a str),
}

/// What a change answers: the status, the body and the webhook payload that announces it.
type Applied = (StatusCode, Value, Value);

impl<'a> Change<'a> {
    fn of(route: &Route<'a>, method: &Method) -> Option<Change<'a>> {
        match (route, method) {
            (Route::Issues, &Method::POST) => Some(Change::Create),
            (Route::Issue(id_or_key), &Method::DELETE) => Some(Change::Delete(id_or_key)),
            (Route::FakeMove(id_or_key), &Method::POST) => Some(Change::Move(id_or_key)),
            (Route::FakeRekey(id_or_key), &Method::POST) => Some(Change::Rekey(id_or_key)),
            _ => None,
        }
    }

    fn apply(
        &self,
        world: &mut World,
        base: &str,
        user: &User,
        body: &[u8],
    ) -> Result<Applied, (StatusCode, Value)> {
        match *self {
            Change::Create => create_issue(world, base, user, &request_json(body)?),
            Change::Delete(id_or_key) => delete_issue(world, base, user, id_or_key),
            Change::Move(id_or_key) => {
                move_issue(world, base, user, id_or_key, &request_json(body)?)
            }
            Change::Rekey(id_or_key) => {
                rekey_project(world, base, user, id_or_key, &request_json(body)?)
            }
        }
    }
}

fn request_json(body: &[u8]) -> Result<Value, (StatusCode, Value)> {
    serde_json::from_slice(body).map_err(|e| {
        (
            StatusCode::BAD_REQUEST,
            error_body(&format!("Unexpected request body: {e}")),
        )
    })
}

/// `{"errorMessages": [], "errors": {field: message}}`, Jira's answer to an invalid field.
fn field_error(field: &str, message: &str) -> (StatusCode, Value) {
    (
        StatusCode::BAD_REQUEST,
        json!({"errorMessages": [], "errors": {field: message}}),
    )
}

fn holds(world: &World, user: &User, permission: &str, context: Context) -> bool {
    let permission = permissions::lookup(permission).expect("a catalogue permission");
    world.has_permission(user, permission, context)
}

/// `{id, key, self}` of an issue, as `POST /issue` answers (`IssueCreateResponse`).
fn issue_link(base: &str, id: u64, key: &str) -> Value {
    json!({"id": id.to_string(), "key": key, "self": format!("{base}/rest/api/2/issue/{id}")})
}

/// `POST /rest/api/2/issue`: `fields.project` (`key` or `id`), `fields.summary` and
/// `fields.issuetype` (`name` or `id`; the fake has one type, Task). A project the caller
/// cannot see is "required" as if missing, as in Jira; one they see but may not create in
/// is refused on the same field.
fn create_issue(
    world: &mut World,
    base: &str,
    user: &User,
    request: &Value,
) -> Result<Applied, (StatusCode, Value)> {
    let fields = &request["fields"];
    let text = |value: &Value| value.as_str().map(str::to_owned);
    let project = &fields["project"];
    let named = text(&project["key"]).or_else(|| text(&project["id"]));
    let project_id = named
        .and_then(|p| world.find_project(&p).map(|p| p.id))
        .filter(|id| world.can_see_project(user, &world.projects[id]))
        .ok_or_else(|| field_error("project", "project is required"))?;
    if !holds(world, user, "CREATE_ISSUES", Context::Project(project_id)) {
        return Err(field_error(
            "project",
            "You do not have permission to create issues in this project.",
        ));
    }
    let summary = text(&fields["summary"])
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| field_error("summary", "You must specify a summary of the issue."))?;
    let issue_type = &fields["issuetype"];
    if issue_type.is_null() {
        return Err(field_error("issuetype", "issue type is required"));
    }
    let task = text(&issue_type["name"]).is_some_and(|n| n.eq_ignore_ascii_case("Task"))
        || text(&issue_type["id"]).is_some_and(|id| id == "10002");
    if !task {
        return Err(field_error("issuetype", "valid issue type is required"));
    }
    let key = world.next_issue_key(project_id);
    let project_key = world.projects[&project_id].key.clone();
    let id = world.add_issue(&project_key, &key);
    world.expect_issue(&key).summary = summary;
    let payload = events::created(world, base, id);
    Ok((StatusCode::CREATED, issue_link(base, id, &key), payload))
}

/// `DELETE /rest/api/2/issue/{idOrKey}`: 204; 404 for an issue the caller cannot see, 403
/// without *Delete issues*. The fake's issues have no sub-tasks, so `deleteSubtasks` does
/// not matter.
fn delete_issue(
    world: &mut World,
    base: &str,
    user: &User,
    id_or_key: &str,
) -> Result<Applied, (StatusCode, Value)> {
    let issue = match world.find_issue(id_or_key) {
        Some(issue) if world.can_see_issue(user, issue) => issue.clone(),
        _ => return Err((StatusCode::NOT_FOUND, error_body("Issue Does Not Exist"))),
    };
    if !holds(world, user, "DELETE_ISSUES", Context::Issue(issue.id)) {
        return Err((
            StatusCode::FORBIDDEN,
            error_body("You do not have permission to delete issues in this project."),
        ));
    }
    let payload = events::deleted(world, base, &issue.key);
    Ok((StatusCode::NO_CONTENT, Value::Null, payload))
}

/// `POST /_fake/issue/{idOrKey}/move` (not Jira's): `{"project": key or id, "key": optional}`.
fn move_issue(
    world: &mut World,
    base: &str,
    user: &User,
    id_or_key: &str,
    request: &Value,
) -> Result<Applied, (StatusCode, Value)> {
    let issue = match world.find_issue(id_or_key) {
        Some(issue) if world.can_see_issue(user, issue) => issue.clone(),
        _ => return Err((StatusCode::NOT_FOUND, error_body("Issue Does Not Exist"))),
    };
    let target = request["project"].as_str().unwrap_or_default();
    let project_id = world
        .find_project(target)
        .filter(|p| world.can_see_project(user, p))
        .map(|p| p.id)
        .ok_or_else(|| field_error("project", "project is required"))?;
    if project_id == issue.project_id {
        return Err(field_error(
            "project",
            "The issue is already in this project; choose another one.",
        ));
    }
    if !holds(world, user, "MOVE_ISSUES", Context::Issue(issue.id))
        || !holds(world, user, "CREATE_ISSUES", Context::Project(project_id))
    {
        return Err((
            StatusCode::FORBIDDEN,
            error_body(
                "You need Move Issues in the issue's project and Create Issues in the destination.",
            ),
        ));
    }
    let project_key = world.projects[&project_id].key.clone();
    let new_key = match request["key"].as_str() {
        None => world.next_issue_key(project_id),
        Some(key) => {
            let number = key
                .rsplit_once('-')
                .filter(|(prefix, _)| prefix.eq_ignore_ascii_case(&project_key))
                .and_then(|(_, n)| n.parse::<u64>().ok())
                .filter(|n| *n > 0);
            if number.is_none() || world.find_issue(key).is_some() {
                return Err(field_error(
                    "key",
                    &format!("'{key}' is not a free issue key of project {project_key}."),
                ));
            }
            key.to_ascii_uppercase()
        }
    };
    let payload = events::moved(world, base, &issue.key, &project_key, &new_key);
    Ok((
        StatusCode::OK,
        issue_link(base, issue.id, &new_key),
        payload,
    ))
}

/// `POST /_fake/project/{idOrKey}/rekey` (not Jira's): `{"key": "NEW"}`, for administrators.
fn rekey_project(
    world: &mut World,
    base: &str,
    user: &User,
    id_or_key: &str,
    request: &Value,
) -> Result<Applied, (StatusCode, Value)> {
    if !holds(world, user, "ADMINISTER", Context::Global) {
        return Err((
            StatusCode::FORBIDDEN,
            error_body("You must be a Jira administrator to change a project's key."),
        ));
    }
    let old_key = match world.find_project(id_or_key) {
        Some(project) => project.key.clone(),
        None => return Err((StatusCode::NOT_FOUND, no_project(id_or_key))),
    };
    let new_key = request["key"].as_str().unwrap_or_default();
    // Jira's default project key pattern: an upper-case letter, then upper-case letters,
    // digits or underscores; at most 10 characters.
    let valid = (2..=10).contains(&new_key.len())
        && new_key.starts_with(|c: char| c.is_ascii_uppercase())
        && new_key
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if !valid {
        return Err(field_error(
            "projectKey",
            "Project keys must start with an uppercase letter, followed by one or more uppercase alphanumeric characters.",
        ));
    }
    if world.project_by_key(new_key).is_some() {
        return Err(field_error(
            "projectKey",
            &format!("Project '{new_key}' uses this project key."),
        ));
    }
    let payload = events::rekeyed(world, base, &old_key, new_key);
    let project = world
        .project_by_key(new_key)
        .expect("the project was just re-keyed");
    Ok((StatusCode::OK, json::project(base, project), payload))
}
