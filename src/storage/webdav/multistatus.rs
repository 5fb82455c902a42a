//! PROPFIND requests and the parsing of their 207 Multi-Status answers. Namespaces are
//! resolved properly (servers use `D:`, `d:`, `ns0:`, `lp1:` or a default namespace), and
//! hrefs are reduced to percent-decoded path segments so every spelling compares equal.

use percent_encoding::percent_decode_str;
use quick_xml::NsReader;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::Event;
use quick_xml::name::{Namespace, ResolveResult};
use time::OffsetDateTime;
use time::format_description::well_known::{Rfc2822, Rfc3339};

use crate::storage::StorageError;

/// The properties filebridge needs, and nothing else (Nextcloud computes some expensive
/// ones, such as quotas, only when asked).
pub(super) const PROPFIND_BODY: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<D:propfind xmlns:D="DAV:"><D:prop><D:resourcetype/><D:getcontentlength/><D:getlastmodified/><D:getetag/></D:prop></D:propfind>"#;

const DAV: Namespace<'static> = Namespace("DAV:");

/// One `<response>` of a multistatus, with the properties of its successful propstats.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Entry {
    pub href: String,
    pub collection: bool,
    pub size: Option<u64>,
    pub modified: Option<OffsetDateTime>,
    pub etag: Option<String>,
}

/// The DAV elements the parser cares about; any other element (DAV or not) is `Other`. A
/// `Copy` tag instead of the element's name as a `String` saves two allocations per element
/// of a listing (a 1,000-item answer has some 15,000).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag {
    Response,
    Href,
    Status,
    Propstat,
    Prop,
    ResourceType,
    Collection,
    ContentLength,
    LastModified,
    Etag,
    Other,
}

impl Tag {
    fn of(local: &str) -> Tag {
        match local {
            "response" => Tag::Response,
            "href" => Tag::Href,
            "status" => Tag::Status,
            "propstat" => Tag::Propstat,
            "prop" => Tag::Prop,
            "resourcetype" => Tag::ResourceType,
            "collection" => Tag::Collection,
            "getcontentlength" => Tag::ContentLength,
            "getlastmodified" => Tag::LastModified,
            "getetag" => Tag::Etag,
            _ => Tag::Other,
        }
    }
}

#[derive(Default)]
struct Props {
    collection: bool,
    size: Option<u64>,
    modified: Option<OffsetDateTime>,
    etag: Option<String>,
}

/// Parses a multistatus body. Responses whose own status is an error, or without an href,
/// are left out.
pub(super) fn parse(body: &[u8]) -> Result<Vec<Entry>, StorageError> {
    let bad = |why: String| StorageError::Backend(format!("unreadable PROPFIND answer: {why}"));
    let text = std::str::from_utf8(body).map_err(|e| bad(e.to_string()))?;
    let mut reader = NsReader::from_str(text);
    // The open elements (`Other` for other namespaces).
    let mut stack: Vec<Tag> = Vec::new();
    let mut text = String::new();
    let mut entries = Vec::new();
    let mut href: Option<String> = None;
    let mut response_ok = true;
    let mut props = Props::default();
    let mut found = Props::default();
    let mut propstat_ok = false;
    // Whether the current response had a successful propstat: one without says nothing
    // about the resource.
    let mut any_ok = false;
    loop {
        let (ns, event) = reader
            .read_resolved_event()
            .map_err(|e| bad(e.to_string()))?;
        let dav = matches!(ns, ResolveResult::Bound(n) if n == DAV);
        let tag = |local: &str| if dav { Tag::of(local) } else { Tag::Other };
        let (name, empty) = match &event {
            Event::Start(e) => (tag(e.local_name().as_ref()), false),
            Event::Empty(e) => (tag(e.local_name().as_ref()), true),
            Event::End(_) => {
                let closed = stack.pop().unwrap_or(Tag::Other);
                let parent = stack.last().copied().unwrap_or(Tag::Other);
                match (closed, parent) {
                    (Tag::Href, Tag::Response) => href = Some(text.trim().to_string()),
                    (Tag::Status, Tag::Response) => response_ok = is_success(&text),
                    (Tag::Status, Tag::Propstat) => propstat_ok = is_success(&text),
                    (Tag::ContentLength, Tag::Prop) => props.size = text.trim().parse().ok(),
                    (Tag::LastModified, Tag::Prop) => props.modified = parse_http_date(text.trim()),
                    (Tag::Etag, Tag::Prop) => props.etag = entity_tag(&text),
                    (Tag::Propstat, _) => {
                        let done = std::mem::take(&mut props);
                        if propstat_ok {
                            any_ok = true;
                            found.collection |= done.collection;
                            found.size = found.size.or(done.size);
                            found.modified = found.modified.or(done.modified);
                            found.etag = found.etag.or(done.etag);
                        }
                        propstat_ok = false;
                    }
                    (Tag::Response, _) => {
                        let done = std::mem::take(&mut found);
                        let usable = response_ok && std::mem::take(&mut any_ok);
                        if let (Some(href), true) = (href.take(), usable) {
                            entries.push(Entry {
                                href,
                                collection: done.collection,
                                size: done.size,
                                modified: done.modified,
                                etag: done.etag,
                            });
                        }
                        response_ok = true;
                    }
                    _ => {}
                }
                text.clear();
                continue;
            }
            Event::Text(t) => {
                text.push_str(t);
                continue;
            }
            Event::CData(t) => {
                text.push_str(t);
                continue;
            }
            Event::GeneralRef(r) => {
                match r.resolve_char_ref() {
                    Ok(Some(c)) => text.push(c),
                    _ => text.push_str(resolve_predefined_entity(r).unwrap_or("")),
                }
                continue;
            }
            Event::Eof => break,
            _ => continue,
        };
        if name == Tag::Collection && stack.last() == Some(&Tag::ResourceType) {
            props.collection = true;
        }
        text.clear();
        if !empty {
            stack.push(name);
        }
    }
    Ok(entries)
}

/// An ETag as HTTP wants it (it becomes the download's `ETag` header): servers that send
/// it bare (WsgiDAV) get quotes.
fn entity_tag(text: &str) -> Option<String> {
    let tag = text.trim();
    if tag.is_empty() {
        None
    } else if tag.starts_with('"') || tag.starts_with("W/\"") {
        Some(tag.to_string())
    } else {
        Some(format!("\"{}\"", tag.replace('"', "")))
    }
}

/// True for an `HTTP/1.1 2xx ...` status line.
fn is_success(status: &str) -> bool {
    status
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse::<u16>().ok())
        .is_some_and(|code| (200..300).contains(&code))
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` (what RFC 4918 asks for), or RFC 3339 from servers that
/// get it wrong.
pub(super) fn parse_http_date(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc2822)
        .or_else(|_| OffsetDateTime::parse(text, &Rfc3339))
        .ok()
}

/// The percent-decoded path segments of an href, which may be an absolute path or an
/// absolute URL. Empty segments (a trailing slash) are dropped.
pub(super) fn href_segments(href: &str) -> Vec<String> {
    let path = match href.find("://") {
        Some(scheme_end) => {
            let rest = &href[scheme_end + 3..];
            rest.find('/').map_or("", |slash| &rest[slash..])
        }
        None => href,
    };
    decode_segments(path)
}

/// Splits a URL path on `/` and percent-decodes each segment. Splitting first keeps an
/// encoded `%2F` inside its segment.
pub(super) fn decode_segments(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apache_style_prefixes_and_lowercase_escapes() {
        let body = r#"<?xml version="1.0" encoding="utf-8"?>
<D:multistatus xmlns:D="DAV:">
<D:response xmlns:lp1="DAV:" xmlns:lp2="http://apache.org/dav/props/">
<D:href>/dav/a%20b/</D:href>
<D:propstat><D:prop>
<lp1:resourcetype><D:collection/></lp1:resourcetype>
<lp1:getlastmodified>Sun, 22 Nov 2026 05:09:44 GMT</lp1:getlastmodified>
<lp1:getetag>W/"1000-660d67c49782c"</lp1:getetag>
</D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat>
</D:response>
<D:response xmlns:lp1="DAV:">
<D:href>/dav/a%20b/x%23%25+%f0%9f%93%8e.txt</D:href>
<D:propstat><D:prop>
<lp1:resourcetype/><lp1:getcontentlength>3</lp1:getcontentlength>
<lp2:executable xmlns:lp2="http://apache.org/dav/props/">F</lp2:executable>
</D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat>
<D:propstat><D:prop><D:getetag/></D:prop><D:status>HTTP/1.1 404 Not Found</D:status></D:propstat>
</D:response>
</D:multistatus>"#;
        let entries = parse(body.as_bytes()).unwrap();
        assert_eq!(entries.len(), 2);
        assert!(entries[0].collection);
        assert_eq!(
            entries[0].etag.as_deref(),
            Some(r#"W/"1000-660d67c49782c""#)
        );
        assert_eq!(
            entries[0].modified,
            Some(time::macros::datetime!(2026-11-22 05:09:44 UTC))
        );
        assert!(!entries[1].collection);
        assert_eq!(entries[1].size, Some(3));
        assert_eq!(entries[1].etag, None, "a 404 propstat adds nothing");
        assert_eq!(
            href_segments(&entries[1].href),
            ["dav", "a b", "x#%+📎.txt"]
        );
    }

    #[test]
    fn default_namespace_absolute_urls_and_entities() {
        let body = r#"<?xml version="1.0"?>
<multistatus xmlns="DAV:" xmlns:x="urn:other">
 <response>
  <href>https://nas.example.com/remote.php/dav/files/svc/R%26D%20&amp;%20co/</href>
  <propstat><prop><resourcetype><collection/></resourcetype><x:collection/></prop>
  <status>HTTP/1.1 200 OK</status></propstat>
 </response>
 <response>
  <href>https://nas.example.com/remote.php/dav/files/svc/gone.txt</href>
  <status>HTTP/1.1 404 Not Found</status>
 </response>
 <response>
  <href><![CDATA[/remote.php/dav/files/svc/note.md]]></href>
  <propstat><prop><resourcetype><x:collection/></resourcetype><getcontentlength>12</getcontentlength>
  <getetag>&quot;abc&quot;</getetag></prop><status>HTTP/1.1 200 OK</status></propstat>
 </response>
</multistatus>"#;
        let entries = parse(body.as_bytes()).unwrap();
        assert_eq!(entries.len(), 2, "the 404 response is left out");
        assert_eq!(
            href_segments(&entries[0].href),
            ["remote.php", "dav", "files", "svc", "R&D & co"]
        );
        assert!(entries[0].collection);
        assert!(!entries[1].collection, "x:collection is not DAV:collection");
        assert_eq!(entries[1].size, Some(12));
        assert_eq!(entries[1].etag.as_deref(), Some("\"abc\""));
    }

    #[test]
    fn lowercase_prefix_and_garbage() {
        let body = r#"<d:multistatus xmlns:d="DAV:"><d:response><d:href>/a/b%2Fc</d:href>
<d:propstat><d:prop><d:getlastmodified>2024-01-02T03:04:05Z</d:getlastmodified></d:prop>
<d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response></d:multistatus>"#;
        let entries = parse(body.as_bytes()).unwrap();
        assert_eq!(href_segments(&entries[0].href), ["a", "b/c"]);
        assert!(entries[0].modified.is_some());
        assert_eq!(
            entity_tag(" 10018922-1795324193-3 ").as_deref(),
            Some("\"10018922-1795324193-3\"")
        );
        assert_eq!(entity_tag("W/\"x\"").as_deref(), Some("W/\"x\""));
        assert_eq!(entity_tag(""), None);
        let no_props = r#"<d:multistatus xmlns:d="DAV:"><d:response><d:href>/a</d:href>
<d:propstat><d:prop><d:getetag/></d:prop><d:status>HTTP/1.1 404 Not Found</d:status></d:propstat>
</d:response></d:multistatus>"#;
        assert!(parse(no_props.as_bytes()).unwrap().is_empty());
        assert!(matches!(
            parse(b"<d:multistatus xmlns:d=\"DAV:\"><d:response></d:oops>"),
            Err(StorageError::Backend(_))
        ));
        assert!(parse(&[0xff, 0xfe]).is_err());
    }
}
