//! Microsoft Graph v1.0 under `/v1.0`: one handler that counts, throttles, authenticates and
//! routes, so the order of the bookkeeping is plain.
//!
//! Errors follow "Microsoft Graph error responses and resource types"
//! (https://learn.microsoft.com/graph/errors): `{"error": {"code", "message", "innerError":
//! {"code"?, "date", "request-id", "client-request-id"}}}` with the documented top-level codes
//! (`accessDenied`, `invalidRequest`, `itemNotFound`, `nameAlreadyExists`, `invalidRange`,
//! `activityLimitReached`, `serviceNotAvailable`, ...) and detailed inner codes
//! (`fragmentOutOfOrder`, `fragmentOverlap`, `invalidPath`, `pathIsTooLong`, ...). A request
//! without a valid bearer token answers 401 `InvalidAuthenticationToken`, as Graph does
//! ("Resolve Microsoft Graph authorization errors",
//! https://learn.microsoft.com/graph/resolve-auth-errors). Throttled requests answer 429 or 503
//! with `Retry-After` ("Microsoft Graph throttling guidance", https://learn.microsoft.com/graph/throttling).

pub mod access;
pub mod address;
mod content;
mod items;
pub mod json;
pub mod mutate;
pub mod names;
pub mod upload;

use actix_web::http::{Method, header};
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::BytesMut;
use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::Shared;
use crate::faults::RequestClass;
use crate::identity::status;
use crate::world::{AccessToken, World};
use address::{Action, Target};

pub use content::{SIMPLE_UPLOAD_LIMIT, download};

/// `@microsoft.graph.conflictBehavior`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conflict {
    Fail,
    Replace,
    Rename,
}

impl Conflict {
    pub fn parse(value: Option<&str>, default: Conflict) -> Result<Conflict, GraphError> {
        match value {
            None => Ok(default),
            Some("fail") => Ok(Conflict::Fail),
            Some("replace") => Ok(Conflict::Replace),
            Some("rename") => Ok(Conflict::Rename),
            Some(other) => Err(GraphError::bad(format!(
                "Invalid value '{other}' for @microsoft.graph.conflictBehavior."
            ))),
        }
    }
}

#[derive(Debug)]
pub struct GraphError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    pub inner: Option<&'static str>,
}

impl GraphError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        GraphError {
            status,
            code,
            message: message.into(),
            inner: None,
        }
    }

    pub fn inner(mut self, code: &'static str) -> Self {
        self.inner = Some(code);
        self
    }

    pub fn bad(message: impl Into<String>) -> Self {
        GraphError::new(400, "invalidRequest", message)
    }

    pub fn not_found() -> Self {
        GraphError::new(404, "itemNotFound", "The resource could not be found.")
    }

    pub fn denied() -> Self {
        GraphError::new(403, "accessDenied", "Access denied")
    }

    pub fn respond(&self, world: &mut World, req: &HttpRequest) -> HttpResponse {
        let mut inner = json!({
            "date": crate::clock::iso(world.now()),
            "request-id": world.guid(),
            "client-request-id": client_request_id(req).unwrap_or_default(),
        });
        if let Some(code) = self.inner {
            inner["code"] = json!(code);
        }
        HttpResponse::build(status(self.status)).json(
            json!({"error": {"code": self.code, "message": self.message, "innerError": inner}}),
        )
    }
}

fn client_request_id(req: &HttpRequest) -> Option<String> {
    req.headers()
        .get("client-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// A scripted throttle for this request, if any, answered as Graph does.
pub fn throttled(
    world: &mut World,
    req: &HttpRequest,
    class: RequestClass,
) -> Option<HttpResponse> {
    let write = !matches!(*req.method(), Method::GET | Method::HEAD);
    let (code, retry_after) = world.faults.take_throttle(class, write)?;
    world.counters.throttled += 1;
    let error = if code == 429 {
        GraphError::new(
            429,
            "activityLimitReached",
            "The request has been throttled",
        )
        .inner("throttledRequest")
    } else {
        GraphError::new(
            code,
            "serviceNotAvailable",
            "The service is not available. Try the request again after a delay.",
        )
    };
    let mut response = error.respond(world, req);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from(retry_after));
    Some(response)
}

/// The caller behind the `Authorization: Bearer` header.
fn authenticate(world: &World, req: &HttpRequest) -> Result<AccessToken, GraphError> {
    let unauthenticated = |m: &str| GraphError::new(401, "InvalidAuthenticationToken", m);
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(token) = value.strip_prefix("Bearer ").filter(|t| !t.is_empty()) else {
        return Err(unauthenticated("Access token is empty."));
    };
    let token = world.access_tokens.get(token).ok_or_else(|| {
        unauthenticated("IDX14100: JWT is not well formed, there are no dots (.).")
    })?;
    if token.expires_at <= world.now() {
        return Err(unauthenticated(
            "Lifetime validation failed, the token is expired.",
        ));
    }
    Ok(token.clone())
}

/// Reads a request body of at most `limit` bytes; `Err(())` if it is longer or breaks off.
pub async fn read_body(mut payload: web::Payload, limit: usize) -> Result<bytes::Bytes, ()> {
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| ())?;
        if body.len() + chunk.len() > limit {
            return Err(());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Reads and discards a request body (up to `limit`), so an early answer reaches a client that
/// is still sending.
pub async fn drain(mut payload: web::Payload, limit: u64) {
    let mut seen = 0u64;
    while let Some(Ok(chunk)) = payload.next().await {
        seen += chunk.len() as u64;
        if seen > limit {
            break;
        }
    }
}

/// `(start, end, total)` of `Content-Range: bytes start-end/total`.
pub fn content_range(req: &HttpRequest) -> Option<(u64, u64, u64)> {
    let value = req.headers().get(header::CONTENT_RANGE)?.to_str().ok()?;
    let (range, total) = value.trim().strip_prefix("bytes ")?.split_once('/')?;
    let (start, end) = range.split_once('-')?;
    let (start, end, total) = (start.parse().ok()?, end.parse().ok()?, total.parse().ok()?);
    (start <= end && end < total).then_some((start, end, total))
}

pub fn json_body(body: &[u8]) -> Result<Value, GraphError> {
    serde_json::from_slice(body).map_err(|e| GraphError::bad(format!("Invalid request body: {e}")))
}

/// `/v1.0/...`.
pub async fn dispatch(
    req: HttpRequest,
    payload: web::Payload,
    shared: web::Data<Shared>,
) -> HttpResponse {
    let rest = req
        .uri()
        .path()
        .strip_prefix("/v1.0")
        .unwrap_or("")
        .to_owned();
    let caller = {
        let mut world = shared.world();
        world.counters.graph_requests += 1;
        if let Some(response) = throttled(&mut world, &req, RequestClass::Graph) {
            return response;
        }
        match authenticate(&world, &req) {
            Ok(caller) => caller,
            Err(error) => {
                let mut response = error.respond(&mut world, &req);
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static(
                        "Bearer realm=\"\", authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\", client_id=\"00000003-0000-0000-c000-000000000000\"",
                    ),
                );
                return response;
            }
        }
    };
    let Some(target) = address::parse(&rest) else {
        let mut world = shared.world();
        return GraphError::bad(format!("Invalid request: unsupported path {rest}"))
            .respond(&mut world, &req);
    };
    let method = req.method().clone();
    let result = match (&method, &target) {
        (&Method::GET, Target::Site(site)) => items::site(&shared, &caller, site),
        (&Method::GET, Target::Drives(site)) => items::drives(&shared, &caller, site),
        (&Method::GET, Target::Drive(drive)) => items::drive(&shared, &caller, drive),
        (_, Target::Item { action, .. }) => match (&method, action) {
            (&Method::GET, Action::Item) => items::item(&shared, &caller, &target, &req),
            (&Method::GET, Action::Children) => items::children(&shared, &caller, &target, &req),
            (&Method::GET, Action::Content) => content::redirect(&shared, &caller, &target),
            (&Method::PUT, Action::Content) => {
                content::upload(&shared, &caller, &target, &req, payload).await
            }
            (&Method::POST, Action::CreateUploadSession) => {
                match read_body(payload, 64 << 10).await {
                    Ok(body) => upload::create(&shared, &caller, &target, &body),
                    Err(()) => Err(GraphError::bad("Invalid request body")),
                }
            }
            (&Method::POST, Action::Children) => match read_body(payload, 64 << 10).await {
                Ok(body) => mutate::create_folder(&shared, &caller, &target, &req, &body),
                Err(()) => Err(GraphError::bad("Invalid request body")),
            },
            (&Method::PATCH, Action::Item) => match read_body(payload, 64 << 10).await {
                Ok(body) => mutate::update(&shared, &caller, &target, &req, &body),
                Err(()) => Err(GraphError::bad("Invalid request body")),
            },
            (&Method::DELETE, Action::Item) => mutate::delete(&shared, &caller, &target, &req),
            _ => Err(GraphError::new(405, "invalidRequest", "Method not allowed")),
        },
        _ => Err(GraphError::new(405, "invalidRequest", "Method not allowed")),
    };
    match result {
        Ok(response) => response,
        Err(error) => error.respond(&mut shared.world(), &req),
    }
}
