//! Administration endpoints (Jira administrators and members of `security.admin_groups`).

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::auth::AdminUser;
use crate::egress::EgressClient;

/// `GET /api/v1/admin/egress`: every host filebridge contacted or refused since it started.
pub async fn egress_report(_: AdminUser, egress: web::Data<EgressClient>) -> HttpResponse {
    let hosts: Vec<_> = egress
        .report()
        .into_iter()
        .map(|(host, counts)| json!({"host": host, "contacted": counts.contacted, "refused": counts.refused}))
        .collect();
    HttpResponse::Ok().json(json!({ "hosts": hosts }))
}
