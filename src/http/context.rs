//! Per-request context, applied to every response: the request id (from a trusted proxy's
//! `X-Request-Id`, else new), the client address (from `X-Forwarded-For` only when the peer is
//! a trusted proxy), security headers, a pending session cookie, and one log line.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage};
use ipnet::IpNet;
use tracing::Instrument;

use super::problem::REQUEST_ID;
use crate::auth::PendingSession;
use crate::metrics::Metrics;

/// Who asked: available to handlers (and, later, the audit trail) through request extensions.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub request_id: String,
    pub client_ip: Option<IpAddr>,
}

/// What the middleware needs to know about the deployment.
pub struct ContextPolicy {
    pub trusted_proxies: Vec<IpNet>,
    /// Set when filebridge terminates TLS itself, to send HSTS.
    pub tls: bool,
}

impl ContextPolicy {
    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }

    /// The rightmost address in `X-Forwarded-For` that is not a trusted proxy: everything left
    /// of it could have been written by the client.
    fn client_ip(&self, peer: Option<IpAddr>, forwarded_for: Option<&str>) -> Option<IpAddr> {
        let peer = peer.map(canonical);
        match (peer, forwarded_for) {
            (Some(peer), Some(chain)) if self.trusts(peer) => {
                let mut client = peer;
                for hop in chain.rsplit(',') {
                    let Ok(ip) = hop.trim().parse::<IpAddr>() else {
                        break;
                    };
                    client = canonical(ip);
                    if !self.trusts(client) {
                        break;
                    }
                }
                Some(client)
            }
            _ => peer,
        }
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// Ids as proxies make them: nginx's hex `$request_id`, UUIDs, and Apache mod_unique_id's
/// base64 variants (`-_` in current releases such as 2.4.67, `@-` in older ones).
fn acceptable_request_id(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 128
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:@".contains(&b))
}

pub async fn request_context(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody + 'static>, Error> {
    let started = Instant::now();
    let policy = req
        .app_data::<actix_web::web::Data<ContextPolicy>>()
        .map(|d| Arc::clone(d));
    let peer = req.peer_addr().map(|a| a.ip());
    let trusted_peer = matches!((&policy, peer), (Some(p), Some(ip)) if p.trusts(ip));
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| trusted_peer && acceptable_request_id(v))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    // Every X-Forwarded-For line, in order: a proxy may append its own line after one the
    // client wrote, and the rightmost hops are the ones the trusted proxies vouch for.
    let lines: Vec<String> = req
        .headers()
        .get_all("x-forwarded-for")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    let forwarded_for = (!lines.is_empty()).then(|| lines.join(","));
    let client_ip = match &policy {
        Some(p) => p.client_ip(peer, forwarded_for.as_deref()),
        None => peer,
    };
    req.extensions_mut().insert(RequestContext {
        request_id: request_id.clone(),
        client_ip,
    });

    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %req.method(),
        route = tracing::field::Empty,
        client_ip = %client_ip.map(|ip| ip.to_string()).unwrap_or_default(),
    );
    let route = req
        .match_pattern()
        .unwrap_or_else(|| "(unmatched)".to_string());
    span.record("route", route.as_str());

    let mut res = REQUEST_ID
        .scope(request_id.clone(), next.call(req).instrument(span.clone()))
        .await?;

    let pending = res.request().extensions_mut().remove::<PendingSession>();
    if let Some(PendingSession(cookie)) = pending
        && let Err(e) = res.response_mut().add_cookie(&cookie)
    {
        tracing::error!(parent: &span, error = %e, "could not set the session cookie");
    }
    let headers = res.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        headers.insert(HeaderName::from_static("x-request-id"), value);
    }
    set_security_headers(headers, policy.as_ref().is_some_and(|p| p.tls));

    let status = res.status().as_u16();
    let elapsed = started.elapsed();
    if let Some(metrics) = res.request().app_data::<actix_web::web::Data<Metrics>>() {
        metrics.request(&route, res.request().method().as_str(), status, elapsed);
    }
    let elapsed_ms = elapsed.as_secs_f64() * 1000.0;
    span.in_scope(|| {
        if status >= 500 {
            tracing::warn!(status, elapsed_ms, "request finished");
        } else {
            tracing::info!(status, elapsed_ms, "request finished");
        }
    });
    Ok(res)
}

fn set_security_headers(headers: &mut actix_web::http::header::HeaderMap, tls: bool) {
    let defaults: [(HeaderName, &'static str); 7] = [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        // Jira pages on the same origin may frame filebridge; nobody else may.
        (header::X_FRAME_OPTIONS, "SAMEORIGIN"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; frame-ancestors 'self'",
        ),
        (header::CACHE_CONTROL, "no-store"),
        (
            HeaderName::from_static("cross-origin-resource-policy"),
            "same-origin",
        ),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
    ];
    for (name, value) in defaults {
        if !headers.contains_key(&name) {
            headers.insert(name, HeaderValue::from_static(value));
        }
    }
    if tls {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> ContextPolicy {
        ContextPolicy {
            trusted_proxies: vec![
                "127.0.0.1/32".parse().unwrap(),
                "10.0.0.0/8".parse().unwrap(),
            ],
            tls: false,
        }
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let p = policy();
        let proxy: IpAddr = "127.0.0.1".parse().unwrap();
        let stranger: IpAddr = "192.0.2.9".parse().unwrap();
        assert_eq!(
            p.client_ip(Some(proxy), Some("198.51.100.7")),
            Some("198.51.100.7".parse().unwrap())
        );
        assert_eq!(
            p.client_ip(Some(stranger), Some("198.51.100.7")),
            Some(stranger)
        );
        // A client-written prefix is skipped: the last untrusted hop wins.
        assert_eq!(
            p.client_ip(Some(proxy), Some("6.6.6.6, 198.51.100.7, 10.1.2.3")),
            Some("198.51.100.7".parse().unwrap())
        );
        assert_eq!(p.client_ip(Some(proxy), Some("garbage")), Some(proxy));
    }

    #[test]
    fn request_ids_are_limited_to_safe_characters() {
        assert!(acceptable_request_id("abc-123_x.y:z"));
        // mod_unique_id before its switch to base64url.
        assert!(acceptable_request_id("VAYyin8AAAEAAAKa@DMAAAAB"));
        assert!(!acceptable_request_id("a b"));
        assert!(!acceptable_request_id("x\r\ny"));
        assert!(!acceptable_request_id(&"a".repeat(129)));
    }
}
