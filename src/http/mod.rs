//! HTTP routes, all under `server.base_path`.

mod admin;
mod audit;
mod connections;
mod context;
mod download;
mod files;
mod health;
pub mod hooks;
mod jira_admin;
mod jobs;
mod mappings;
mod me;
mod metrics;
mod pages;
mod problem;
mod storage_accounts;
mod upload;

use actix_web::{HttpRequest, web};

pub use context::{ContextPolicy, RequestContext, request_context};
pub use problem::{ApiError, REQUEST_ID};

/// Registers every route under `base_path`.
pub fn routes(cfg: &mut web::ServiceConfig, base_path: &str) {
    cfg.service(
        web::scope(base_path)
            // HEAD too: load balancers often probe with it.
            .service(
                resource("/healthz")
                    .get(health::healthz)
                    .route(web::head().to(health::healthz)),
            )
            .service(
                resource("/readyz")
                    .get(health::readyz)
                    .route(web::head().to(health::readyz)),
            )
            .service(resource("/metrics").get(metrics::scrape))
            .configure(pages::routes)
            .configure(hooks::routes)
            .configure(storage_accounts::callback_routes)
            .service(
                web::scope("/api/v1")
                    .configure(connections::routes)
                    .configure(jira_admin::routes)
                    .configure(jobs::routes)
                    .configure(storage_accounts::routes)
                    .service(resource("/me").get(me::me))
                    .service(resource("/session").delete(me::end_session))
                    .service(resource("/admin/egress").get(admin::egress_report))
                    .service(resource("/admin/reconcile").post(admin::reconcile))
                    .service(
                        resource("/admin/audit")
                            .get(audit::list)
                            .delete(audit::purge),
                    )
                    .service(
                        resource("/admin/projects/{key}/mapping")
                            .get(mappings::get)
                            .put(mappings::put)
                            .delete(mappings::delete),
                    )
                    .configure(files::routes),
            ),
    );
}

/// A resource whose unsupported methods get 405 (actix would otherwise hand them to the
/// app's default service, a 404).
fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

async fn method_not_allowed() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed)
}

/// Unknown routes, and malformed query strings or JSON bodies, answer with problem documents.
pub async fn not_found() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}

pub fn query_error(err: actix_web::error::QueryPayloadError, _: &HttpRequest) -> actix_web::Error {
    ApiError::BadRequest(format!("invalid query string: {err}")).into()
}

pub fn json_error(err: actix_web::error::JsonPayloadError, _: &HttpRequest) -> actix_web::Error {
    ApiError::BadRequest(format!("invalid JSON body: {err}")).into()
}
