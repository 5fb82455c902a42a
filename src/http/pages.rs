//! filebridge's own page for an issue's folder (where the "Files" link in Jira points), and
//! its static assets, compiled into the binary: nothing is read from disk at run time.
//!
//! The page is the same for every issue: its script reads the key from the address and asks
//! the API as the signed-in user, so the page itself reveals nothing and needs no check.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, web};

use super::resource;

const ISSUE_PAGE: &str = include_str!("../../assets/issue.html");
const ISSUE_SCRIPT: &str = include_str!("../../assets/issue.js");
const ISSUE_STYLE: &str = include_str!("../../assets/issue.css");
const ICON: &[u8] = include_bytes!("../../assets/files-16.png");
/// Loaded into Jira's own pages (banner or proxy) to show the issue page in a panel.
const JIRA_SCRIPT: &str = include_str!("../../assets/jira.js");

/// Scripts and styles from filebridge only, no inline code; framing by Jira (same origin)
/// only.
const PAGE_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                           img-src 'self'; connect-src 'self'; form-action 'self'; \
                           base-uri 'none'; frame-ancestors 'self'";

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/issues/{key}").get(issue_page))
        .service(
            resource("/static/issue.js")
                .get(|| asset("text/javascript; charset=utf-8", ISSUE_SCRIPT.as_bytes())),
        )
        .service(
            resource("/static/issue.css")
                .get(|| asset("text/css; charset=utf-8", ISSUE_STYLE.as_bytes())),
        )
        .service(
            resource("/static/jira.js")
                .get(|| asset("text/javascript; charset=utf-8", JIRA_SCRIPT.as_bytes())),
        )
        .service(resource("/static/files-16.png").get(|| asset("image/png", ICON)));
}

async fn issue_page() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((header::CONTENT_SECURITY_POLICY, PAGE_POLICY))
        .body(ISSUE_PAGE)
}

async fn asset(content_type: &'static str, body: &'static [u8]) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, content_type))
        // Assets change only with the binary; an hour keeps Jira pages with many links cheap.
        .insert_header((
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=3600"),
        ))
        .body(body)
}

/// For pages that run nothing and load nothing, and are never framed (the sign-in's).
pub const STATIC_POLICY: &str =
    "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Why the sign-in callback did not connect the account.
pub enum NotConnected<'a> {
    /// Microsoft did not complete the sign-in; its reason comes from the address.
    Declined(&'a str),
    /// The state is not valid (expired, used, another browser's or user's).
    StaleState,
    /// Redeeming the sign-in failed on the way (Microsoft, or filebridge's database).
    Failed,
}

/// The sign-in callback's page when the account was not connected, saying why (escaped: a
/// reason comes from the address), and `again`, the address that starts the sign-in anew,
/// when the sign-in is known.
pub fn not_connected(why: NotConnected<'_>, again: Option<&str>) -> String {
    let why = match why {
        NotConnected::Declined(reason) => format!(
            "<p>Microsoft's reason:</p><pre>{}</pre>",
            html_escape::encode_text(reason.trim())
        ),
        NotConnected::StaleState => "<p>This sign-in is not valid any more: it expired, was \
                                     already used, or was started in another browser or by \
                                     another user.</p>"
            .to_string(),
        NotConnected::Failed => "<p>filebridge could not finish it: Microsoft or filebridge's \
                                 database did not answer as expected. Please try again in a \
                                 moment.</p>"
            .to_string(),
    };
    let next = match again {
        Some(url) => format!(
            "<p><a href=\"{}\">Try again</a>, or close this tab.</p>",
            html_escape::encode_double_quoted_attribute(url)
        ),
        None => "<p>Go back to the issue's files and connect your account from there.</p>".into(),
    };
    format!(
        "<!DOCTYPE html><meta charset=\"utf-8\"><title>Account not connected</title>\
         <h1>Your Microsoft account was not connected</h1>\
         <p>The sign-in did not complete, so filebridge cannot reach the files as you yet.</p>\
         {why}{next}"
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_reason_and_the_link_cannot_become_markup() {
        let page = super::not_connected(
            super::NotConnected::Declined("access_denied: <script>alert(1)</script>"),
            Some("https://jira.example.test/connect?return_to=\"><script>"),
        );
        assert!(!page.contains("<script>"), "{page}");
        assert!(
            page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{page}"
        );
        assert!(
            page.contains("return_to=&quot;&gt;&lt;script&gt;\""),
            "{page}"
        );
    }
}
