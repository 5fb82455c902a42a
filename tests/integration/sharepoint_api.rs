//! The `sharepoint` kind end to end through filebridge's HTTP API: a Jira admin creates the
//! connection (a client secret, or a certificate) and tests it, maps a project, and a Jira
//! user uploads, lists, downloads, creates a folder, moves and deletes. The fake Graph
//! (tests/fake-graph) is checked to hold exactly what the API answered, and the audit trail to
//! have the rows. Egress is left as configured by default (`egress.allow` empty): the kind
//! allows the connection's Graph and login endpoints itself.

use fake_graph::{Access, FakeGraph, fixtures};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use crate::helpers::{TestApp, spawn_app};

mod renames;

pub const SECRET: &str = "app-secret-value";

pub struct World {
    pub app: TestApp,
    pub graph: FakeGraph,
    pub drive: String,
    tenant: String,
    client_id: String,
}

/// A tenant whose app has `Sites.Selected` write on one site (a `Jira` folder in its default
/// library), with a client secret and the fixture certificate. PROJ with PROJ-1 in the fake
/// Jira; root is a Jira admin; alice may browse, attach and delete her own attachments.
pub async fn world_with(app: TestApp) -> World {
    let graph = FakeGraph::start().await;
    let tenant = graph.add_tenant("contoso.onmicrosoft.com");
    let client_id = graph.add_app(&tenant);
    graph.add_client_secret(&client_id, SECRET);
    graph.add_certificate(&client_id, fixtures::APP_CERT_PEM);
    let site = graph.add_site(&tenant, "contoso.sharepoint.com", "/sites/legal", "Legal");
    graph.grant_sites_selected(&client_id, &site, Access::Write);
    let drive = graph.default_drive(&site);
    graph.put_folder(&drive, "/Jira");
    World {
        app,
        graph,
        drive,
        tenant,
        client_id,
    }
}

impl World {
    /// The connection's settings: every endpoint on the fake.
    fn settings(&self) -> Value {
        json!({
            "tenant": self.tenant,
            "client_id": self.client_id,
            "site": "https://contoso.sharepoint.com/sites/legal",
            "root": "Jira",
            "graph_url": self.graph.base_url,
            "login_url": self.graph.base_url,
            // The fake issues tokens for the global cloud's Graph, whatever its own URL.
            "graph_resource": "https://graph.microsoft.com",
        })
    }

    /// Creates the connection as root through the admin API and returns its id.
    pub async fn create_connection(&self, name: &str, secrets: Value) -> String {
        let response = self
            .app
            .client
            .post(self.app.url("/api/v1/admin/connections"))
            .bearer_auth("root-pat")
            .json(&json!({"name": name, "kind": "sharepoint", "settings": self.settings(), "secrets": secrets}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "connection created");
        let body: Value = response.json().await.unwrap();
        assert!(
            !body.to_string().contains(SECRET) && !body.to_string().contains("PRIVATE KEY"),
            "no secret in the answer: {body}"
        );
        body["id"].as_str().expect("an id").to_string()
    }

    pub async fn test_connection(&self, id: &str) {
        let response = self
            .app
            .client
            .post(
                self.app
                    .url(&format!("/api/v1/admin/connections/{id}/test")),
            )
            .bearer_auth("root-pat")
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!((status.as_u16(), &body), (200, &json!({"ok": true})));
    }

    pub async fn map(&self, id: &str) {
        let response = self
            .app
            .client
            .put(self.app.url("/api/v1/admin/projects/PROJ/mapping"))
            .bearer_auth("root-pat")
            .json(&json!({"connection_id": id, "root": "PROJ"}))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
    }

    fn files(&self, rest: &str) -> String {
        self.app.url(&format!("/api/v1/issues/PROJ-1/files{rest}"))
    }

    /// A raw `PUT` as alice, with a known length (reqwest sends `Content-Length` for a `Vec`).
    pub async fn put(&self, path: &str, body: Vec<u8>) -> reqwest::Response {
        self.app
            .client
            .put(self.files("/content"))
            .query(&[("path", path)])
            .bearer_auth("alice-pat")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    async fn get(&self, rest: &str, path: &str, range: Option<&str>) -> reqwest::Response {
        let mut request = self
            .app
            .client
            .get(self.files(rest))
            .query(&[("path", path)])
            .bearer_auth("alice-pat");
        if let Some(range) = range {
            request = request.header("range", range);
        }
        request.send().await.unwrap()
    }

    /// Names and sizes the API lists in `path`, sorted.
    async fn listed(&self, path: &str) -> Vec<(String, String, Option<u64>)> {
        let response = self.get("", path, None).await;
        assert_eq!(response.status(), 200, "listing {path:?}");
        let body: Value = response.json().await.unwrap();
        let mut items: Vec<_> = body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                (
                    i["name"].as_str().unwrap().to_string(),
                    i["kind"].as_str().unwrap().to_string(),
                    i["size"].as_u64(),
                )
            })
            .collect();
        items.sort();
        items
    }

    /// The number of children of a folder in the fake, by its path in the drive.
    fn children(&self, path: &str) -> u64 {
        let item = self
            .graph
            .item_json(&self.drive, path)
            .unwrap_or_else(|| panic!("{path} is in the fake"));
        item["folder"]["childCount"].as_u64().expect("a folder")
    }

    async fn audit(&self) -> Vec<(String, String, String, Option<String>, Option<i64>)> {
        let pool = PgPool::connect(&self.app.database_url).await.unwrap();
        sqlx::query_as(
            "SELECT actor_name, action, outcome, path, size FROM audit_events ORDER BY seq",
        )
        .fetch_all(&pool)
        .await
        .unwrap()
    }
}

/// PROJ and PROJ-1 in the fake Jira, root an admin, alice a user who may attach and delete
/// her own attachments.
pub fn jira_people(app: &TestApp) {
    let jira = &app.jira;
    jira.add_project("PROJ", "Project");
    jira.add_issue("PROJ", "PROJ-1");
    for (name, token) in [("root", "root-pat"), ("alice", "alice-pat")] {
        jira.add_user(name, name);
        jira.add_token(name, token);
    }
    jira.grant_global("root", "ADMINISTER");
    for user in ["root", "alice"] {
        for permission in [
            "BROWSE_PROJECTS",
            "CREATE_ATTACHMENTS",
            "DELETE_OWN_ATTACHMENTS",
        ] {
            jira.grant_project(user, "PROJ", permission);
        }
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

const ISSUE: &str = "/Jira/PROJ/PROJ-1";

// Two threads: generating and hashing 20 MiB runs beside the app and the fake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_secret_connection_serves_the_whole_file_api() {
    let app = spawn_app().await;
    jira_people(&app);
    let w = world_with(app).await;
    let id = w
        .create_connection("legal", json!({"client_secret": SECRET}))
        .await;
    w.test_connection(&id).await;
    w.map(&id).await;

    // A small file (one simple upload) and one above Graph's 4 MiB simple-upload limit (an
    // upload session, fragments of 10 MiB).
    let small = b"hello sharepoint".to_vec();
    let created = w.put("notes.txt", small.clone()).await;
    assert_eq!(created.status(), 201);
    let item: Value = created.json().await.unwrap();
    assert_eq!(
        (item["path"].as_str(), item["size"].as_u64()),
        (Some("notes.txt"), Some(small.len() as u64))
    );
    let large = pattern(20 * 1024 * 1024 + 12_345);
    assert_eq!(
        w.graph.fragments_received(),
        0,
        "the small one in one request"
    );
    let created = w.put("docs/large.bin", large.clone()).await;
    assert_eq!(created.status(), 201);
    let item: Value = created.json().await.unwrap();
    assert_eq!(item["size"].as_u64(), Some(large.len() as u64));
    assert!(
        w.graph.fragments_received() >= 3,
        "an upload session in fragments: {}",
        w.graph.fragments_received()
    );
    assert_eq!(w.graph.upload_sessions(), 0, "the session is finished");
    let stored = w
        .graph
        .file_bytes(&w.drive, &format!("{ISSUE}/notes.txt"))
        .expect("the small file in SharePoint");
    assert_eq!(stored.as_ref(), small);
    let stored = w
        .graph
        .file_bytes(&w.drive, &format!("{ISSUE}/docs/large.bin"))
        .expect("the large file in SharePoint");
    assert_eq!(
        (stored.len(), sha256(&stored)),
        (large.len(), sha256(&large)),
        "stored whole"
    );

    // The listing is what the fake holds.
    assert_eq!(
        w.listed("").await,
        [
            ("docs".to_string(), "folder".to_string(), None),
            (
                "notes.txt".to_string(),
                "file".to_string(),
                Some(small.len() as u64)
            ),
        ]
    );
    assert_eq!(w.children(ISSUE), 2);
    assert_eq!(
        w.listed("docs").await,
        [(
            "large.bin".to_string(),
            "file".to_string(),
            Some(large.len() as u64)
        )]
    );

    // Downloads: whole, a range inside the second fragment, a suffix.
    let whole = w.get("/content", "docs/large.bin", None).await;
    assert_eq!(whole.status(), 200);
    assert_eq!(
        whole.headers()["content-length"].to_str().unwrap(),
        large.len().to_string()
    );
    let body = whole.bytes().await.unwrap();
    assert_eq!(sha256(&body), sha256(&large), "downloaded whole");
    let start = 10 * 1024 * 1024 - 100;
    let end = start + 299;
    let part = w
        .get(
            "/content",
            "docs/large.bin",
            Some(&format!("bytes={start}-{end}")),
        )
        .await;
    assert_eq!(part.status(), 206);
    assert_eq!(
        part.headers()["content-range"].to_str().unwrap(),
        format!("bytes {start}-{end}/{}", large.len())
    );
    assert_eq!(part.bytes().await.unwrap().as_ref(), &large[start..=end]);
    let suffix = w.get("/content", "notes.txt", Some("bytes=-10")).await;
    assert_eq!(suffix.status(), 206);
    assert_eq!(
        suffix.bytes().await.unwrap().as_ref(),
        &small[small.len() - 10..]
    );

    // A folder, a move into it, a delete.
    let folder = w
        .app
        .client
        .post(w.files("/folders"))
        .query(&[("path", "archive/2026")])
        .bearer_auth("alice-pat")
        .send()
        .await
        .unwrap();
    assert_eq!(folder.status(), 201);
    assert!(
        w.graph
            .item_json(&w.drive, &format!("{ISSUE}/archive/2026"))
            .is_some_and(|i| i.get("folder").is_some()),
        "the folder is in SharePoint"
    );
    let moved = w
        .app
        .client
        .post(w.files("/move"))
        .bearer_auth("alice-pat")
        .json(&json!({"from": "docs/large.bin", "to": "archive/2026/large.bin"}))
        .send()
        .await
        .unwrap();
    assert_eq!(moved.status(), 200);
    let item: Value = moved.json().await.unwrap();
    assert_eq!(item["path"], "archive/2026/large.bin");
    assert!(
        w.graph
            .item_id(&w.drive, &format!("{ISSUE}/docs/large.bin"))
            .is_none()
    );
    let stored = w
        .graph
        .file_bytes(&w.drive, &format!("{ISSUE}/archive/2026/large.bin"))
        .expect("moved in SharePoint");
    assert_eq!(sha256(&stored), sha256(&large), "moved whole");
    let deleted = w
        .app
        .client
        .delete(w.files(""))
        .query(&[("path", "notes.txt")])
        .bearer_auth("alice-pat")
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert!(
        w.graph
            .item_id(&w.drive, &format!("{ISSUE}/notes.txt"))
            .is_none(),
        "deleted in SharePoint"
    );
    assert_eq!(
        w.listed("").await,
        [
            ("archive".to_string(), "folder".to_string(), None),
            ("docs".to_string(), "folder".to_string(), None),
        ]
    );
    assert_eq!(w.children(ISSUE), 2);
    assert_eq!(w.children(&format!("{ISSUE}/docs")), 0);
    assert_eq!(
        w.listed("archive/2026").await,
        [(
            "large.bin".to_string(),
            "file".to_string(),
            Some(large.len() as u64)
        )]
    );
    assert_eq!(w.children(&format!("{ISSUE}/archive/2026")), 1);
    // `POST …/test` opens the connection afresh (it checks what is stored now); every file
    // request after it shares the broker's open connection and its cached token.
    assert_eq!(
        w.graph.token_requests(),
        2,
        "one token for the test, one for all the file requests"
    );

    // Nothing was refused, with `egress.allow` empty: the connection allowed its own Graph and
    // login endpoints, and the URLs Graph handed out (downloads, upload sessions).
    assert!(
        !w.app.config.env.contains_key("FILEBRIDGE__EGRESS__ALLOW"),
        "egress.allow stays as installed"
    );
    let egress: Value = w
        .app
        .get_as("/api/v1/admin/egress", "root-pat")
        .await
        .json()
        .await
        .unwrap();
    let hosts = egress["hosts"].as_array().unwrap();
    let fake = w.graph.addr().to_string();
    assert!(
        hosts
            .iter()
            .any(|h| h["host"] == fake.as_str() && h["contacted"].as_u64() > Some(0)),
        "{egress}"
    );
    assert!(hosts.iter().all(|h| h["refused"] == 0), "{egress}");

    // The audit trail: who did what, with the sizes of the uploads.
    let audit = w.audit().await;
    let has = |who: &str, action: &str, path: Option<&str>, size: Option<i64>| {
        audit.iter().any(|(a, b, o, p, s)| {
            a == who
                && b == action
                && o == "success"
                && (path.is_none() || p.as_deref() == path)
                && (size.is_none() || *s == size)
        })
    };
    for (who, action, path, size) in [
        ("root", "connection.create", None, None),
        ("root", "connection.test", None, None),
        ("root", "mapping.set", None, None),
        (
            "alice",
            "file.upload",
            Some("notes.txt"),
            Some(small.len() as i64),
        ),
        (
            "alice",
            "file.upload",
            Some("docs/large.bin"),
            Some(large.len() as i64),
        ),
        ("alice", "file.list", None, None),
        ("alice", "file.download", Some("docs/large.bin"), None),
        ("alice", "folder.create", Some("archive/2026"), None),
        ("alice", "file.move", Some("archive/2026/large.bin"), None),
        ("alice", "file.delete", Some("notes.txt"), None),
    ] {
        assert!(
            has(who, action, path, size),
            "no {who} {action} {path:?} {size:?} in {audit:#?}"
        );
    }
    assert!(
        audit.iter().all(|(_, _, o, _, _)| o == "success"),
        "{audit:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_connection_uploads_and_downloads() {
    let app = spawn_app().await;
    jira_people(&app);
    let w = world_with(app).await;
    let id = w
        .create_connection(
            "legal-cert",
            json!({"certificate": fixtures::APP_CERT_PEM, "private_key": fixtures::APP_KEY_PEM}),
        )
        .await;
    w.test_connection(&id).await;
    w.map(&id).await;
    let content = pattern(5 * 1024 * 1024);
    assert_eq!(w.put("cert.bin", content.clone()).await.status(), 201);
    let stored = w
        .graph
        .file_bytes(&w.drive, &format!("{ISSUE}/cert.bin"))
        .expect("in SharePoint");
    assert_eq!(sha256(&stored), sha256(&content));
    let download = w.get("/content", "cert.bin", None).await;
    assert_eq!(download.status(), 200);
    assert_eq!(sha256(&download.bytes().await.unwrap()), sha256(&content));
    assert!(
        w.graph.token_requests_for("client_credentials") >= 1,
        "signed in with the certificate's assertion"
    );
}

/// A multipart part has no length of its own, and Graph needs a file's size before its first
/// byte: the form upload takes what fits `unknown_length_buffer_mib` (4 MiB by default) and
/// refuses more before anything is stored, while a raw `PUT` of the same file works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn form_uploads_above_the_buffer_are_refused_and_raw_puts_are_not() {
    let app = spawn_app().await;
    jira_people(&app);
    let w = world_with(app).await;
    let id = w
        .create_connection("legal", json!({"client_secret": SECRET}))
        .await;
    w.map(&id).await;
    let form = |name: &str, content: Vec<u8>| {
        reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(content).file_name(name.to_string()),
        )
    };
    let upload = |form| {
        w.app
            .client
            .post(w.files("/upload"))
            .query(&[("path", "inbox")])
            .bearer_auth("alice-pat")
            .multipart(form)
            .send()
    };
    let small = pattern(100_000);
    let response = upload(form("small.bin", small.clone())).await.unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(
        w.graph
            .file_bytes(&w.drive, &format!("{ISSUE}/inbox/small.bin"))
            .map(|b| b.len()),
        Some(small.len())
    );

    let large = pattern(4 * 1024 * 1024 + 1);
    let response = upload(form("large.bin", large.clone())).await.unwrap();
    assert_eq!(response.status(), 413);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "too_large", "{problem}");
    assert!(
        w.graph
            .item_id(&w.drive, &format!("{ISSUE}/inbox/large.bin"))
            .is_none(),
        "nothing stored"
    );
    assert_eq!(w.graph.upload_sessions(), 0, "no session left open");

    let response = w.put("inbox/large.bin", large.clone()).await;
    assert_eq!(response.status(), 201);
    let stored = w
        .graph
        .file_bytes(&w.drive, &format!("{ISSUE}/inbox/large.bin"))
        .expect("stored");
    assert_eq!(sha256(&stored), sha256(&large));
}
