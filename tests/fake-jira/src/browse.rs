//! `GET /browse/{KEY}`: the issue view page, reduced to the markup filebridge's `jira.js`
//! relies on, as Jira Data Center renders it: the header's issue link
//! (`<a id="key-val" class="issue-link" data-issue-key="KEY">`) and the right-hand column
//! (`<div id="viewissuesidebar" class="aui-item issue-side-column">`) holding modules
//! (`<div class="module toggle-wrap">` with a `mod-header` and a `mod-content`). The
//! announcement banner, when set, is rendered at the top of every page as Jira does
//! (`<div id="announcement-banner" class="alertHeader">`), its HTML unescaped: Jira
//! administrators may put scripts there, which is how filebridge's script can be loaded.

use actix_web::{HttpResponse, web};

use crate::Shared;

pub(crate) async fn page(key: web::Path<String>, shared: web::Data<Shared>) -> HttpResponse {
    let world = shared.world();
    let banner = world
        .announcement_banner
        .as_deref()
        .map(|html| format!(r#"<div id="announcement-banner" class="alertHeader">{html}</div>"#))
        .unwrap_or_default();
    let Some(issue) = world
        .issue_keys
        .get(key.as_str())
        .and_then(|id| world.issues.get(id))
    else {
        // Jira's page for an unknown (or hidden) issue has no issue view at all.
        return html(format!(
            "<!DOCTYPE html><html><head><title>Issue does not exist - Jira</title></head>\
             <body>{banner}<div class=\"aui-message error\">The issue you are trying to view \
             does not exist.</div></body></html>"
        ));
    };
    let key = &issue.key;
    html(format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>[{key}] Issue - Jira</title>
</head>
<body id="jira" class="aui-layout aui-theme-default page-type-issue">
{banner}
<div id="page"><section id="content" role="main">
<div class="issue-view">
  <header id="stalker" class="issue-header">
    <ol class="aui-nav aui-nav-breadcrumbs">
      <li><a class="issue-link" data-issue-key="{key}" href="/browse/{key}" id="key-val" rel="{id}">{key}</a></li>
    </ol>
    <h1 id="summary-val">Issue {key}</h1>
  </header>
  <div class="issue-body-content">
    <div class="aui-group issue-body">
      <div class="aui-item issue-main-column">
        <div id="details-module" class="module toggle-wrap">
          <div id="details-module_heading" class="mod-header"><h2 class="toggle-title">Details</h2></div>
          <div class="mod-content"></div>
        </div>
      </div>
      <div id="viewissuesidebar" class="aui-item issue-side-column">
        <div id="peoplemodule" class="module toggle-wrap">
          <div id="peoplemodule_heading" class="mod-header"><ul class="ops"></ul><h2 class="toggle-title">People</h2></div>
          <div class="mod-content"></div>
        </div>
      </div>
    </div>
  </div>
</div>
</section></div>
</body>
</html>
"#,
        id = issue.id,
    ))
}

fn html(body: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html;charset=UTF-8")
        .body(body)
}
