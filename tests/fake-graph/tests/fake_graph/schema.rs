//! The fake's bodies against Microsoft's published schema of Graph v1.0: the CSDL excerpt in
//! `schema/graph-v1.0-files.xml` (from microsoftgraph/msgraph-metadata, see schema/README.md).
//!
//! Every member of a body must be either an instance annotation from `ANNOTATIONS` or a
//! structural property declared on the body's type or one of its base types, with a JSON value
//! of the declared type: Edm.String a string, Edm.Int16/32/64 an integer in range, Edm.Boolean a
//! bool, Edm.DateTimeOffset an RFC 3339 date-time, a complex type an object checked the same
//! way, `Collection(T)` an array of T, `null` only where the property is nullable. Navigation
//! properties are reported too: the fake never expands them.
//!
//! driveItem, identitySet and identity are open types (`OpenType="true"`): the service may send
//! members the CSDL doesn't declare. The checker still reports every undeclared member except
//! the few in `DYNAMIC`, each with the type it is sent with and why it is there.

use std::collections::HashMap;

use fake_graph::Access;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{Env, env};

const CSDL: &str = include_str!("../../schema/graph-v1.0-files.xml");

/// Undeclared members of open types that the fake sends. OData allows dynamic properties on
/// open types, so the CSDL permits them without declaring them; the fake copies them from
/// SharePoint responses as seen in the wild (not re-checked against a captured response here).
const DYNAMIC: &[(&str, &str, &str)] = &[
    // A document library's `owner` is `{"group": {...}}`; identitySet declares only
    // application, device and user (sharePointIdentitySet, not used for drive.owner, has group).
    ("identitySet", "group", "graph.identity"),
    // An e-mail address on the identities (drive.owner.user).
    ("identity", "email", "Edm.String"),
];

/// Instance annotations (OData JSON format, not CSDL properties), all strings. The driveItem
/// page documents `@microsoft.graph.downloadUrl` as an instance attribute.
const ANNOTATIONS: &[&str] = &[
    "@odata.context",
    "@odata.nextLink",
    "@microsoft.graph.downloadUrl",
];

#[derive(Default)]
struct StructuredType {
    base: Option<String>,
    open: bool,
    /// Name → (type, nullable).
    properties: HashMap<String, (String, bool)>,
    navigation: Vec<String>,
}

struct Schema {
    types: HashMap<String, StructuredType>,
}

/// `T` for `Collection(T)`.
fn collection(ty: &str) -> Option<&str> {
    ty.strip_prefix("Collection(")?.strip_suffix(')')
}

/// A type's name within the `microsoft.graph` namespace (alias `graph`).
fn local(name: &str) -> &str {
    name.strip_prefix("graph.")
        .or_else(|| name.strip_prefix("microsoft.graph."))
        .unwrap_or(name)
}

impl Schema {
    fn load() -> Schema {
        let doc = roxmltree::Document::parse(CSDL).expect("the CSDL excerpt is XML");
        let schema = doc
            .descendants()
            .find(|n| n.has_tag_name("Schema"))
            .expect("a Schema element");
        assert_eq!(
            (schema.attribute("Namespace"), schema.attribute("Alias")),
            (Some("microsoft.graph"), Some("graph"))
        );
        let mut types = HashMap::new();
        for node in schema
            .children()
            .filter(|n| n.has_tag_name("EntityType") || n.has_tag_name("ComplexType"))
        {
            let mut def = StructuredType {
                base: node.attribute("BaseType").map(|b| local(b).to_owned()),
                open: node.attribute("OpenType") == Some("true"),
                ..Default::default()
            };
            for child in node.children().filter(|c| c.is_element()) {
                let name = child.attribute("Name").unwrap_or_default().to_owned();
                match child.tag_name().name() {
                    "Property" => {
                        let ty = child.attribute("Type").expect("Property/@Type").to_owned();
                        let nullable = child.attribute("Nullable") != Some("false");
                        def.properties.insert(name, (ty, nullable));
                    }
                    "NavigationProperty" => def.navigation.push(name),
                    _ => {}
                }
            }
            types.insert(node.attribute("Name").expect("@Name").to_owned(), def);
        }
        Schema { types }
    }

    /// `ty` and its base types, most derived first.
    fn chain<'a>(&'a self, ty: &'a str) -> impl Iterator<Item = (&'a str, &'a StructuredType)> {
        std::iter::successors(self.types.get_key_value(ty), |(_, def)| {
            def.base
                .as_deref()
                .and_then(|b| self.types.get_key_value(b))
        })
        .map(|(name, def)| (name.as_str(), def))
    }

    /// Checks a response body: one `ty`, or for `Collection(ty)` a page `{"value": [...]}`.
    fn check_response(&self, ty: &str, body: &Value, path: &str, out: &mut Vec<String>) {
        let Some(item) = collection(ty) else {
            return self.check_object(local(ty), body, path, out);
        };
        let Some(members) = body.as_object() else {
            return out.push(format!("{path}: {body} is not a collection page"));
        };
        for (name, member) in members {
            match name.as_str() {
                "value" => self.check(ty, false, member, &format!("{path}.value"), out),
                _ => annotation(name, member, &format!("{path}.{name}"), out),
            }
        }
        if !members.contains_key("value") {
            out.push(format!("{path}: no \"value\" array of {item}"));
        }
    }

    fn check_object(&self, ty: &str, value: &Value, path: &str, out: &mut Vec<String>) {
        if !self.types.contains_key(ty) {
            return out.push(format!("{path}: graph.{ty} is not in the CSDL excerpt"));
        }
        let Some(members) = value.as_object() else {
            return out.push(format!("{path}: {value} is not a graph.{ty} object"));
        };
        for (name, member) in members {
            let here = format!("{path}.{name}");
            if name.contains('@') {
                annotation(name, member, &here, out);
                continue;
            }
            let declared = self.chain(ty).find_map(|(_, def)| def.properties.get(name));
            if let Some((member_ty, nullable)) = declared {
                self.check(member_ty, *nullable, member, &here, out);
            } else if self.chain(ty).any(|(_, def)| def.navigation.contains(name)) {
                out.push(format!("{here}: a navigation property of graph.{ty}"));
            } else if let Some((_, _, dynamic_ty)) = DYNAMIC.iter().find(|(t, n, _)| {
                *n == name.as_str() && self.chain(ty).any(|(base, def)| def.open && base == *t)
            }) {
                self.check(dynamic_ty, true, member, &here, out);
            } else {
                out.push(format!("{here}: graph.{ty} has no property {name:?}"));
            }
        }
    }

    fn check(&self, ty: &str, nullable: bool, value: &Value, path: &str, out: &mut Vec<String>) {
        if value.is_null() {
            if !nullable {
                out.push(format!("{path}: null, but {ty} is Nullable=\"false\""));
            }
            return;
        }
        if let Some(item) = collection(ty) {
            let Some(items) = value.as_array() else {
                return out.push(format!("{path}: {value} is not an array ({ty})"));
            };
            for (i, item_value) in items.iter().enumerate() {
                self.check(item, nullable, item_value, &format!("{path}[{i}]"), out);
            }
            return;
        }
        let int_in = |min: i64, max: i64| value.as_i64().is_some_and(|n| (min..=max).contains(&n));
        let valid = match ty {
            "Edm.String" => value.is_string(),
            "Edm.Boolean" => value.is_boolean(),
            "Edm.Int16" => int_in(i16::MIN.into(), i16::MAX.into()),
            "Edm.Int32" => int_in(i32::MIN.into(), i32::MAX.into()),
            "Edm.Int64" => value.as_i64().is_some(),
            "Edm.Double" => value.is_number(),
            "Edm.DateTimeOffset" => value.as_str().is_some_and(rfc3339),
            edm if edm.starts_with("Edm.") => {
                return out.push(format!("{path}: {edm} is not handled by this checker"));
            }
            complex => return self.check_object(local(complex), value, path, out),
        };
        if !valid {
            out.push(format!("{path}: {value} is not a valid {ty}"));
        }
    }
}

fn annotation(name: &str, value: &Value, path: &str, out: &mut Vec<String>) {
    if !ANNOTATIONS.contains(&name) || !value.is_string() {
        out.push(format!("{path}: not a known instance annotation (string)"));
    }
}

/// RFC 3339 `date-time`: `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`.
fn rfc3339(text: &str) -> bool {
    let b = text.as_bytes();
    let num = |from: usize, len: usize, max: u32| {
        b.get(from..from + len)
            .filter(|d| d.iter().all(u8::is_ascii_digit))
            .map(|d| d.iter().fold(0, |n, c| n * 10 + u32::from(c - b'0')))
            .is_some_and(|n| n <= max)
    };
    let at = |i: usize, c: &[u8]| b.get(i).is_some_and(|x| c.contains(x));
    let date = num(0, 4, 9999) && at(4, b"-") && num(5, 2, 12) && at(7, b"-") && num(8, 2, 31);
    let time = at(10, b"Tt") && num(11, 2, 23) && at(13, b":") && num(14, 2, 59);
    if !(date && time && at(16, b":") && num(17, 2, 60)) || b[5..7] == *b"00" || b[8..10] == *b"00"
    {
        return false;
    }
    let mut rest = 19;
    if at(rest, b".") {
        let digits = b[rest + 1..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        if digits == 0 {
            return false;
        }
        rest += 1 + digits;
    }
    match b.len() - rest {
        1 => at(rest, b"Zz"),
        6 => at(rest, b"+-") && num(rest + 1, 2, 23) && at(rest + 3, b":") && num(rest + 4, 2, 59),
        _ => false,
    }
}

const SITE: &str = "graph.site";
const DRIVE: &str = "graph.drive";
const DRIVES: &str = "Collection(graph.drive)";
const ITEM: &str = "graph.driveItem";
const ITEMS: &str = "Collection(graph.driveItem)";
const SESSION: &str = "graph.uploadSession";

/// The responses to check: (which request, CSDL type, body).
struct Responses<'a> {
    env: &'a Env,
    token: String,
    bodies: Vec<(&'static str, &'static str, Value)>,
}

impl<'a> Responses<'a> {
    async fn new(env: &'a Env) -> Responses<'a> {
        let token = env.app_token().await;
        let bodies = Vec::new();
        Responses { env, token, bodies }
    }

    /// Sends a Graph request, asserts success and keeps the body as a `ty`.
    async fn send(&mut self, what: &'static str, ty: &'static str, request: Request) -> Value {
        let (method, path, body) = request;
        let (status, body) = self.env.call(method, &self.token, &path, body).await;
        assert!(status.is_success(), "{what}: {status} {body}");
        self.keep(what, ty, body)
    }

    async fn get(&mut self, what: &'static str, ty: &'static str, path: String) -> Value {
        self.send(what, ty, (Method::GET, path, None)).await
    }

    fn keep(&mut self, what: &'static str, ty: &'static str, body: Value) -> Value {
        self.bodies.push((what, ty, body.clone()));
        body
    }
}

type Request = (Method, String, Option<Value>);

#[tokio::test]
async fn every_response_matches_graphs_csdl() {
    let env = env().await;
    let mut r = Responses::new(&env).await;
    let (drive, site) = (
        format!("/drives/{}", env.drive),
        format!("/sites/{}", env.site),
    );
    env.graph.put_file(&env.drive, "/A/a.txt", b"abc".to_vec());
    r.get("get site", SITE, site.clone()).await;
    r.get("list drives", DRIVES, format!("{site}/drives")).await;
    r.get("get drive", DRIVE, drive.clone()).await;
    // A user's OneDrive, whose owner is a user rather than a group.
    env.graph.grant_all_sites(&env.app, Access::Write);
    let carol = (env.graph).add_user(&env.tenant, "carol@contoso.onmicrosoft.com", "Carol");
    env.graph.add_onedrive(&carol);
    r.get("get a user's drive", DRIVE, format!("/users/{carol}/drive"))
        .await;
    r.get("get root", ITEM, format!("{drive}/root")).await;
    let folder_a = r.get("get folder", ITEM, format!("{drive}/root:/A:")).await;
    r.get("get file", ITEM, format!("{drive}/root:/A/a.txt:"))
        .await;
    let folder = json!({"name": "B", "folder": {}, "@microsoft.graph.conflictBehavior": "fail"});
    let post = (Method::POST, format!("{drive}/root/children"), Some(folder));
    r.send("create folder", ITEM, post).await;
    let page = r
        .get(
            "list children",
            ITEMS,
            format!("{drive}/root/children?$top=1"),
        )
        .await;
    assert!(page["@odata.nextLink"].is_string(), "{page}");
    let (status, simple) = env.put_content(&r.token, "/B/s.txt", b"s".to_vec()).await;
    assert_eq!(status, StatusCode::CREATED, "{simple}");
    let simple = r.keep("simple upload", ITEM, simple);
    let item = json!({"item": {"@microsoft.graph.conflictBehavior": "fail"}});
    let path = format!("{drive}/root:/B/big.bin:/createUploadSession");
    let session = r.send(
        "create upload session",
        SESSION,
        (Method::POST, path, Some(item)),
    );
    let session = session.await;
    let url = session["uploadUrl"].as_str().unwrap();
    let status = env.http.get(url).send().await.unwrap();
    r.keep(
        "upload session status",
        SESSION,
        status.json().await.unwrap(),
    );
    let data = vec![7u8; 400_000];
    for (from, to, want, ty) in [
        (0, 327_680, StatusCode::ACCEPTED, SESSION),
        (327_680, 400_000, StatusCode::CREATED, ITEM),
    ] {
        let range = format!("bytes {from}-{}/{}", to - 1, data.len());
        let put = env.http.put(url).header("content-range", range);
        let response = put.body(data[from..to].to_vec()).send().await.unwrap();
        assert_eq!(response.status(), want);
        r.keep("upload fragment", ty, response.json().await.unwrap());
    }
    let moving = json!({"name": "moved.txt", "parentReference": {"id": folder_a["id"]}});
    let path = format!("{drive}/items/{}", simple["id"].as_str().unwrap());
    r.send("PATCH move", ITEM, (Method::PATCH, path, Some(moving)))
        .await;

    let schema = Schema::load();
    let mut out = Vec::new();
    for (what, ty, body) in &r.bodies {
        schema.check_response(ty, body, what, &mut out);
    }
    let out = out.join("\n");
    assert!(out.is_empty(), "the fake differs from Graph's CSDL:\n{out}");
}

/// Wrong documents, one problem each: `type | JSON | part of the report`.
const WRONG: &str = r#"
graph.driveItem | {"nmae": "a"} | graph.driveItem has no property "nmae"
graph.driveItem | {"size": "3"} | body.size: "3" is not a valid Edm.Int64
graph.driveItem | {"folder": {"childCount": 3000000000}} | 3000000000 is not a valid Edm.Int32
graph.driveItem | {"createdDateTime": "2024-01-01 10:00:00Z"} | not a valid Edm.DateTimeOffset
graph.driveItem | {"createdDateTime": "2024-13-01T10:00:00Z"} | not a valid Edm.DateTimeOffset
graph.driveItem | {"id": null} | body.id: null, but Edm.String is Nullable="false"
graph.driveItem | {"file": {"hashes": {"md5Hash": "x"}}} | graph.hashes has no property "md5Hash"
graph.driveItem | {"file": "text/plain"} | body.file: "text/plain" is not a graph.file object
graph.driveItem | {"children": []} | body.children: a navigation property of graph.driveItem
graph.driveItem | {"@microsoft.graph.downloadURL": "u"} | not a known instance annotation
graph.driveItem | {"image": {"width": 1}} | graph.image is not in the CSDL excerpt
graph.drive | {"owner": {"user": {"email": 1}}} | owner.user.email: 1 is not a valid Edm.String
graph.site | {"siteCollection": {"hostname": "h", "owner": {}}} | graph.siteCollection has no property
graph.uploadSession | {"nextExpectedRanges": "0-"} | "0-" is not an array
Collection(graph.site) | {"value": [{"sites": []}]} | body.value[0].sites: a navigation property
Collection(graph.site) | {"@odata.context": "c"} | no "value" array
"#;

#[test]
fn wrong_documents_are_reported() {
    let schema = Schema::load();
    let problems = |ty: &str, body: &str| {
        let mut out = Vec::new();
        let body = serde_json::from_str(body).unwrap();
        schema.check_response(ty, &body, "body", &mut out);
        out
    };
    let good = r#"{"id": "1", "name": "a", "size": 3, "cTag": "c", "root": {},
        "createdDateTime": "2024-02-29T23:59:60.5+01:00", "folder": {"childCount": 2},
        "file": {"mimeType": "text/plain", "hashes": {"quickXorHash": "x"}},
        "parentReference": {"driveId": "d"}, "@microsoft.graph.downloadUrl": "u"}"#;
    assert_eq!(problems(ITEM, good), Vec::<String>::new());
    for case in WRONG.lines().filter(|l| !l.is_empty()) {
        let [ty, body, needle] = case.splitn(3, " | ").collect::<Vec<_>>()[..] else {
            panic!("bad case {case}");
        };
        let found = problems(ty, body);
        let one = found.len() == 1 && found[0].contains(needle);
        assert!(
            one,
            "{case}: expected one problem with {needle:?}, got {found:?}"
        );
    }
}
