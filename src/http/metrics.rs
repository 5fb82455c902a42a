//! `GET <base_path>/metrics`: the Prometheus scrape endpoint.
//!
//! It names hosts, routes and queue sizes, nothing about users, but it is still no business
//! of the internet's: only clients in `metrics.allow` (by the address the request context
//! resolved, so a reverse proxy's own loopback address does not let everyone in) are served.

use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use sqlx::PgPool;

use super::{ApiError, RequestContext};
use crate::config::ServerSettings;
use crate::egress::EgressClient;
use crate::metrics::Metrics;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub async fn scrape(
    req: HttpRequest,
    metrics: web::Data<Metrics>,
    server: web::Data<ServerSettings>,
    pool: web::Data<PgPool>,
    egress: web::Data<EgressClient>,
) -> Result<HttpResponse, ApiError> {
    let client = req
        .extensions()
        .get::<RequestContext>()
        .and_then(|c| c.client_ip);
    let allowed = client.is_some_and(|ip| server.metrics_allow.iter().any(|n| n.contains(&ip)));
    if !allowed {
        return Err(ApiError::Forbidden(
            "metrics are served only to the networks in metrics.allow".into(),
        ));
    }
    let text = metrics.render(&pool, &egress).await?;
    Ok(HttpResponse::Ok().content_type(OPENMETRICS).body(text))
}
