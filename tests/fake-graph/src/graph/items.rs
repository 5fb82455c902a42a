//! Reading: sites, a site's drives, a drive, a driveItem, and a folder's children.
//!
//! - "Get a site resource" (https://learn.microsoft.com/graph/api/site-get), by id or by
//!   `{hostname}:/{server-relative-path}`.
//! - "List available drives" (https://learn.microsoft.com/graph/api/drive-list) for
//!   `/sites/{id}/drives`, and "Get Drive" (https://learn.microsoft.com/graph/api/drive-get).
//! - "Get a DriveItem resource" (https://learn.microsoft.com/graph/api/driveitem-get), with
//!   `If-None-Match` answering 304 when the eTag or cTag still matches.
//! - "List children of a driveItem" (https://learn.microsoft.com/graph/api/driveitem-list-children)
//!   with paging as "Paging Microsoft Graph data in your app"
//!   (https://learn.microsoft.com/graph/paging) describes it: `$top` sets the page size (default
//!   200, "the default page size (200 items)" of the list-children page; at most 1000, a guess), and every page but the last has
//!   an absolute `@odata.nextLink` whose `$skiptoken` is opaque. The token names the last item
//!   returned, so items added or removed between pages neither repeat nor vanish. `$select`,
//!   `$expand` and `$orderby` are accepted and ignored; children come in name order.

use std::collections::HashMap;

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

use super::access::{self, existing};
use super::address::{DriveRef, SiteRef, Target};
use super::{GraphError, json as render};
use crate::Shared;
use crate::world::{AccessToken, Kind};

type Answer = Result<HttpResponse, GraphError>;

pub fn site(shared: &web::Data<Shared>, caller: &AccessToken, site: &SiteRef) -> Answer {
    let world = shared.world();
    let site = access::site(&world, caller, site)?;
    let mut body = render::site(site);
    body["@odata.context"] = json!(format!("{}/v1.0/$metadata#sites/$entity", shared.base_url));
    Ok(HttpResponse::Ok().json(body))
}

pub fn drives(shared: &web::Data<Shared>, caller: &AccessToken, site: &SiteRef) -> Answer {
    let world = shared.world();
    let site = access::site(&world, caller, site)?;
    let value: Vec<Value> = site
        .drives
        .iter()
        .filter_map(|id| world.drive(id))
        .map(|d| render::drive(&world, d))
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "@odata.context": format!("{}/v1.0/$metadata#drives", shared.base_url),
        "value": value,
    })))
}

pub fn drive(shared: &web::Data<Shared>, caller: &AccessToken, drive: &DriveRef) -> Answer {
    let world = shared.world();
    let id = access::drive(&world, caller, drive)?;
    let mut body = render::drive(&world, &world.drives[&id]);
    body["@odata.context"] = json!(format!("{}/v1.0/$metadata#drives/$entity", shared.base_url));
    Ok(HttpResponse::Ok().json(body))
}

pub fn item(
    shared: &web::Data<Shared>,
    caller: &AccessToken,
    target: &Target,
    req: &HttpRequest,
) -> Answer {
    let world = shared.world();
    let (drive, item, _) = existing(&world, caller, target)?;
    let drive = &world.drives[&drive];
    let item = &drive.items[&item];
    let unchanged = req
        .headers()
        .get(actix_web::http::header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tag| tag == render::etag(item) || tag == render::ctag(item));
    if unchanged {
        return Ok(HttpResponse::NotModified().finish());
    }
    let mut body = render::item(&world, &shared.base_url, drive, item);
    body["@odata.context"] = json!(format!(
        "{}/v1.0/$metadata#drives('{}')/items/$entity",
        shared.base_url, drive.id
    ));
    Ok(HttpResponse::Ok().json(body))
}

pub fn children(
    shared: &web::Data<Shared>,
    caller: &AccessToken,
    target: &Target,
    req: &HttpRequest,
) -> Answer {
    let query: HashMap<String, String> =
        serde_urlencoded::from_str(req.query_string()).unwrap_or_default();
    let world = shared.world();
    let (drive_id, folder_id, _) = existing(&world, caller, target)?;
    let drive = &world.drives[&drive_id];
    let Kind::Folder(children) = &drive.items[&folder_id].kind else {
        return Err(GraphError::bad("The item is not a folder.").inner("invalidParameterFormat"));
    };
    let top = match query.get("$top") {
        None => world.settings.page_size,
        Some(text) => match text.parse::<usize>() {
            Ok(0) | Err(_) => {
                return Err(GraphError::bad(format!("Invalid $top value '{text}'."))
                    .inner("invalidQueryOption"));
            }
            Ok(n) => n.min(world.settings.max_page_size),
        },
    };
    let after = match query.get("$skiptoken") {
        None => None,
        Some(token) => Some(
            hex::decode(token)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| {
                    GraphError::bad("Invalid $skiptoken.").inner("invalidQueryOption")
                })?,
        ),
    };
    let range = match &after {
        None => children.range::<String, _>(..),
        Some(key) => children.range::<String, _>((
            std::ops::Bound::Excluded(key.clone()),
            std::ops::Bound::Unbounded,
        )),
    };
    let mut value = Vec::with_capacity(top);
    let mut last_key = None;
    let mut more = false;
    for (key, id) in range {
        if access::item(&world, caller, &drive_id, id).is_none() {
            continue;
        }
        if value.len() == top {
            more = true;
            break;
        }
        value.push(render::item(
            &world,
            &shared.base_url,
            drive,
            &drive.items[id],
        ));
        last_key = Some(key.clone());
    }
    let mut body = json!({
        "@odata.context": format!("{}/v1.0/$metadata#drives('{drive_id}')/items('{folder_id}')/children", shared.base_url),
        "value": value,
    });
    if let (true, Some(key)) = (more, last_key) {
        let mut next = url_without_paging(shared, req);
        next.push_str(&format!("$top={top}&$skiptoken={}", hex::encode(key)));
        body["@odata.nextLink"] = json!(next);
    }
    Ok(HttpResponse::Ok().json(body))
}

/// The request's absolute URL without `$top`/`$skiptoken`, ready for more parameters.
fn url_without_paging(shared: &web::Data<Shared>, req: &HttpRequest) -> String {
    let kept: Vec<&str> = req
        .query_string()
        .split('&')
        .filter(|p| {
            !p.is_empty()
                && !p.starts_with("$top=")
                && !p.starts_with("$skiptoken=")
                && !p.starts_with("%24top=")
                && !p.starts_with("%24skiptoken=")
        })
        .collect();
    let mut url = format!("{}{}?", shared.base_url, req.uri().path());
    for part in kept {
        url.push_str(part);
        url.push('&');
    }
    url
}
