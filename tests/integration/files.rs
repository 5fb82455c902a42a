//! The file API end to end: a filesystem connection, a project mapping, Jira permissions
//! from the fake Jira, and the audit trail.

use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::{TestApp, map_to_directory, spawn_app, spawn_app_with};

struct World {
    app: TestApp,
    root: tempfile::TempDir,
}

/// PROJ with PROJ-1 (open) and PROJ-2 (restricted to root); root is a Jira admin; alice may
/// browse and attach, bob may only browse, carol may not browse.
async fn world_with(tweak: impl FnOnce(&mut crate::helpers::TestConfig)) -> World {
    let app = spawn_app_with(tweak).await;
    let jira = &app.jira;
    jira.add_project("PROJ", "Project");
    jira.add_issue("PROJ", "PROJ-1");
    jira.add_issue("PROJ", "PROJ-2");
    jira.add_project("OTHER", "Unmapped");
    jira.add_issue("OTHER", "OTHER-1");
    for (name, token) in [
        ("root", "root-pat"),
        ("alice", "alice-pat"),
        ("bob", "bob-pat"),
        ("carol", "carol-pat"),
    ] {
        jira.add_user(name, name);
        jira.add_token(name, token);
    }
    jira.grant_global("root", "ADMINISTER");
    for user in ["root", "alice", "bob"] {
        jira.grant_project(user, "PROJ", "BROWSE_PROJECTS");
        jira.grant_project(user, "OTHER", "BROWSE_PROJECTS");
    }
    jira.grant_project("alice", "PROJ", "CREATE_ATTACHMENTS");
    jira.grant_project("root", "PROJ", "CREATE_ATTACHMENTS");
    jira.restrict_issue("PROJ-2", &["root"]);

    let root = tempfile::tempdir().unwrap();
    map_to_directory(&app, "root-pat", "local", root.path(), "PROJ", "Jira/PROJ").await;
    World { app, root }
}

async fn world() -> World {
    world_with(|_| {}).await
}

impl World {
    fn files(&self, issue: &str, rest: &str) -> String {
        self.app.url(&format!("/api/v1/issues/{issue}/files{rest}"))
    }

    async fn put(
        &self,
        token: &str,
        issue: &str,
        path: &str,
        body: &'static [u8],
    ) -> reqwest::Response {
        self.app
            .client
            .put(self.files(issue, "/content"))
            .query(&[("path", path)])
            .bearer_auth(token)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    async fn get(&self, token: &str, issue: &str, rest: &str, path: &str) -> reqwest::Response {
        self.app
            .client
            .get(self.files(issue, rest))
            .query(&[("path", path)])
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    async fn audit(&self) -> Vec<(String, String, String, Option<String>)> {
        let pool = PgPool::connect(&self.app.database_url).await.unwrap();
        sqlx::query_as("SELECT actor_name, action, outcome, path FROM audit_events ORDER BY seq")
            .fetch_all(&pool)
            .await
            .unwrap()
    }
}

async fn code(response: reqwest::Response) -> String {
    let body: Value = response.json().await.unwrap();
    body["code"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn upload_list_download_round_trip_lands_in_the_issue_folder() {
    let w = world().await;
    let created = w
        .put("alice-pat", "PROJ-1", "docs/a b+c.txt", b"hello world")
        .await;
    assert_eq!(created.status(), 201);
    let item: Value = created.json().await.unwrap();
    assert_eq!(
        (item["path"].as_str(), item["size"].as_u64()),
        (Some("docs/a b+c.txt"), Some(11))
    );
    let on_disk = w.root.path().join("Jira/PROJ/PROJ-1/docs/a b+c.txt");
    assert_eq!(std::fs::read(&on_disk).unwrap(), b"hello world");

    let replaced = w
        .put("alice-pat", "PROJ-1", "docs/a b+c.txt", b"HELLO world")
        .await;
    assert_eq!(replaced.status(), 200);
    let refused = w
        .app
        .client
        .put(w.files("PROJ-1", "/content"))
        .query(&[("path", "docs/a b+c.txt")])
        .bearer_auth("alice-pat")
        .header("if-none-match", "*")
        .body("lost?")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 412);
    assert_eq!(
        std::fs::read(&on_disk).unwrap(),
        b"HELLO world",
        "nothing lost"
    );

    let listing: Value = w
        .get("bob-pat", "PROJ-1", "", "")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listing["items"][0]["name"], "docs");
    assert_eq!(listing["items"][0]["kind"], "folder");
    let listing: Value = w
        .get("bob-pat", "PROJ-1", "", "docs")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listing["items"][0]["path"], "docs/a b+c.txt");

    let download = w
        .get("bob-pat", "PROJ-1", "/content", "docs/a b+c.txt")
        .await;
    assert_eq!(download.status(), 200);
    let headers = download.headers().clone();
    assert!(
        headers["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment;")
    );
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["content-length"], "11");
    assert_eq!(download.bytes().await.unwrap().as_ref(), b"HELLO world");

    let partial = w
        .app
        .client
        .get(w.files("PROJ-1", "/content"))
        .query(&[("path", "docs/a b+c.txt")])
        .bearer_auth("bob-pat")
        .header("range", "bytes=2-4")
        .send()
        .await
        .unwrap();
    assert_eq!(partial.status(), 206);
    assert_eq!(partial.headers()["content-range"], "bytes 2-4/11");
    assert_eq!(partial.bytes().await.unwrap().as_ref(), b"LLO");
    let suffix = w
        .app
        .client
        .get(w.files("PROJ-1", "/content"))
        .query(&[("path", "docs/a b+c.txt")])
        .bearer_auth("bob-pat")
        .header("range", "bytes=-5")
        .send()
        .await
        .unwrap();
    assert_eq!(suffix.bytes().await.unwrap().as_ref(), b"world");
    let head = w
        .app
        .client
        .head(w.files("PROJ-1", "/content"))
        .query(&[("path", "docs/a b+c.txt")])
        .bearer_auth("bob-pat")
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-length"], "11");

    let audit = w.audit().await;
    let upload = audit
        .iter()
        .find(|(_, a, _, _)| a == "file.upload")
        .unwrap();
    assert_eq!(
        (upload.0.as_str(), upload.2.as_str(), upload.3.as_deref()),
        ("alice", "success", Some("docs/a b+c.txt"))
    );
    assert!(
        audit
            .iter()
            .any(|(who, a, o, _)| who == "bob" && a == "file.download" && o == "success")
    );
    assert!(
        audit
            .iter()
            .any(|(who, a, _, _)| who == "alice" && a == "file.upload")
    );
}

#[tokio::test]
async fn jira_permissions_decide_and_hidden_issues_do_not_exist() {
    let w = world().await;
    assert_eq!(
        w.put("alice-pat", "PROJ-1", "x.txt", b"x").await.status(),
        201
    );
    let denied = w.put("bob-pat", "PROJ-1", "y.txt", b"y").await;
    assert_eq!(denied.status(), 403);
    assert!(!w.root.path().join("Jira/PROJ/PROJ-1/y.txt").exists());
    // No browse permission, a restricted issue, a missing issue: all the same 404.
    for (token, issue) in [
        ("carol-pat", "PROJ-1"),
        ("alice-pat", "PROJ-2"),
        ("alice-pat", "PROJ-999"),
    ] {
        let response = w.get(token, issue, "", "").await;
        assert_eq!(response.status(), 404, "{token} {issue}");
        assert_eq!(code(response).await, "not_found");
    }
    assert_eq!(w.get("root-pat", "PROJ-2", "", "").await.status(), 200);
    let unmapped = w.get("alice-pat", "OTHER-1", "", "").await;
    assert_eq!(unmapped.status(), 404);
    assert_eq!(code(unmapped).await, "not_mapped");
    let audit = w.audit().await;
    assert!(
        audit
            .iter()
            .any(|(who, a, o, _)| who == "bob" && a == "file.upload" && o == "denied")
    );
    assert!(
        audit
            .iter()
            .any(|(who, _, o, _)| who == "carol" && o == "denied")
    );
}

#[tokio::test]
async fn hostile_paths_are_refused_naming_the_rule() {
    let w = world().await;
    for path in [
        "../escape.txt",
        "/etc/passwd",
        "a/../../b",
        "a\\b",
        "nul\0byte",
        "",
    ] {
        let response = w.put("alice-pat", "PROJ-1", path, b"x").await;
        assert_eq!(response.status(), 400, "{path:?}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], "invalid_name", "{path:?}");
        assert!(!body["detail"].as_str().unwrap().is_empty());
    }
    assert!(!w.root.path().join("escape.txt").exists());
    assert!(!w.root.path().join("Jira/escape.txt").exists());
    // Every refusal is in the audit trail, with the path as sent.
    let refused: Vec<_> = w
        .audit()
        .await
        .into_iter()
        .filter(|(who, action, outcome, _)| {
            who == "alice" && action == "file.upload" && outcome == "failed:invalid_name"
        })
        .collect();
    assert_eq!(refused.len(), 6, "{refused:?}");
    assert!(
        refused
            .iter()
            .any(|(_, _, _, path)| path.as_deref() == Some("../escape.txt"))
    );
}

#[tokio::test]
async fn folders_moves_and_deletes_follow_delete_permissions() {
    let w = world().await;
    let folder = w
        .app
        .client
        .post(w.files("PROJ-1", "/folders"))
        .query(&[("path", "specs/v1")])
        .bearer_auth("alice-pat")
        .send()
        .await
        .unwrap();
    assert_eq!(folder.status(), 201);
    assert!(w.root.path().join("Jira/PROJ/PROJ-1/specs/v1").is_dir());
    w.put("alice-pat", "PROJ-1", "specs/v1/a.txt", b"a").await;
    let moved = w
        .app
        .client
        .post(w.files("PROJ-1", "/move"))
        .bearer_auth("alice-pat")
        .json(&json!({"from": "specs/v1/a.txt", "to": "specs/b.txt"}))
        .send()
        .await
        .unwrap();
    // alice has no delete permission, and moving removes the source.
    assert_eq!(moved.status(), 403);
    w.app
        .jira
        .grant_project("alice", "PROJ", "DELETE_OWN_ATTACHMENTS");
    w.app
        .jira
        .grant_project("bob", "PROJ", "DELETE_OWN_ATTACHMENTS");
    // Fresh permissions: the cached answer lives for the identity cache's lifetime, so use
    // a new credential.
    w.app.jira.add_token("alice", "alice-pat-2");
    w.app.jira.add_token("bob", "bob-pat-2");
    let moved = w
        .app
        .client
        .post(w.files("PROJ-1", "/move"))
        .bearer_auth("alice-pat-2")
        .json(&json!({"from": "specs/v1/a.txt", "to": "specs/b.txt"}))
        .send()
        .await
        .unwrap();
    assert_eq!(moved.status(), 200, "she uploaded it, so she may move it");
    assert!(w.root.path().join("Jira/PROJ/PROJ-1/specs/b.txt").is_file());
    assert!(
        !w.root
            .path()
            .join("Jira/PROJ/PROJ-1/specs/v1/a.txt")
            .exists()
    );
    let delete = |token: &'static str, path: &'static str| {
        w.app
            .client
            .delete(w.files("PROJ-1", ""))
            .query(&[("path", path)])
            .bearer_auth(token)
            .send()
    };
    // Bob may delete his own files only; this one is Alice's.
    assert_eq!(
        delete("bob-pat-2", "specs/b.txt").await.unwrap().status(),
        403
    );
    // Folders need DELETE_ALL_ATTACHMENTS.
    assert_eq!(
        delete("alice-pat-2", "specs/v1").await.unwrap().status(),
        403
    );
    assert_eq!(
        delete("alice-pat-2", "specs/b.txt").await.unwrap().status(),
        204
    );
    assert!(!w.root.path().join("Jira/PROJ/PROJ-1/specs/b.txt").exists());
    let missing = delete("alice-pat-2", "specs/b.txt").await.unwrap();
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn uploads_over_the_limit_get_413_and_leave_nothing() {
    let w = world_with(|c| {
        c.set("SERVER__MAX_UPLOAD_BYTES", "10");
    })
    .await;
    let response = w
        .put("alice-pat", "PROJ-1", "big.bin", b"0123456789A")
        .await;
    assert_eq!(response.status(), 413);
    assert_eq!(code(response).await, "too_large");
    assert!(!w.root.path().join("Jira/PROJ/PROJ-1/big.bin").exists());
    assert_eq!(
        w.put("alice-pat", "PROJ-1", "ok.bin", b"0123456789")
            .await
            .status(),
        201
    );
}

#[tokio::test]
async fn browser_forms_upload_several_files_without_overwriting() {
    let w = world().await;
    let form = || {
        reqwest::multipart::Form::new()
            .part(
                "file",
                reqwest::multipart::Part::bytes(b"one".to_vec()).file_name("one.txt"),
            )
            .part(
                "file",
                reqwest::multipart::Part::bytes(b"two".to_vec()).file_name("C:\\Users\\x\\two.txt"),
            )
    };
    let response = w
        .app
        .client
        .post(w.files("PROJ-1", "/upload"))
        .query(&[("path", "inbox")])
        .bearer_auth("alice-pat")
        .multipart(form())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["items"].as_array().unwrap().len(), 2);
    assert_eq!(
        std::fs::read(w.root.path().join("Jira/PROJ/PROJ-1/inbox/two.txt")).unwrap(),
        b"two"
    );
    let again = w
        .app
        .client
        .post(w.files("PROJ-1", "/upload"))
        .query(&[("path", "inbox")])
        .bearer_auth("alice-pat")
        .multipart(form())
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 409);
}

#[tokio::test]
async fn project_folders_and_session_only_callers() {
    let w = world().await;
    let response = w
        .app
        .client
        .put(w.app.url("/api/v1/projects/PROJ/files/content"))
        .query(&[("path", "handbook.pdf")])
        .bearer_auth("alice-pat")
        .body("pdf")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert!(
        w.root
            .path()
            .join("Jira/PROJ/_project/handbook.pdf")
            .is_file()
    );
    // The project's folder sits beside the issue folders, never above them: its route cannot
    // reach an issue's files (which issue security may hide from the same user).
    w.put("root-pat", "PROJ-2", "secret.txt", b"restricted")
        .await;
    let listing: Value = w
        .app
        .client
        .get(w.app.url("/api/v1/projects/PROJ/files"))
        .bearer_auth("alice-pat")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = listing["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["handbook.pdf"]);
    let sneaky = w
        .app
        .client
        .get(w.app.url("/api/v1/projects/PROJ/files/content"))
        .query(&[("path", "../PROJ-2/secret.txt")])
        .bearer_auth("alice-pat")
        .send()
        .await
        .unwrap();
    assert_eq!(sneaky.status(), 400);
    let other = w
        .app
        .client
        .get(w.app.url("/api/v1/projects/PROJ/files/content"))
        .query(&[("path", "PROJ-2/secret.txt")])
        .bearer_auth("alice-pat")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404, "not the issue's file");
    // The filebridge session alone identifies the user but cannot ask Jira about the issue.
    let login = w.app.me_with_token("alice-pat").await;
    let cookie = format!(
        "filebridge_session={}",
        crate::helpers::cookie_value(&crate::helpers::session_cookie(&login).expect("session"))
    );
    let response = w
        .app
        .client
        .get(w.files("PROJ-1", ""))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(code(response).await, "jira_credentials_required");
}

#[tokio::test]
async fn mappings_are_admin_only_and_validated() {
    let app = spawn_app().await;
    app.jira.add_project("PROJ", "Project");
    app.jira.add_user("alice", "alice");
    app.jira.add_token("alice", "alice-pat");
    app.jira.add_user("root", "root");
    app.jira.add_token("root", "root-pat");
    app.jira.grant_global("root", "ADMINISTER");
    app.jira.grant_project("root", "PROJ", "BROWSE_PROJECTS");
    let put = |token: &'static str, body: Value| {
        app.client
            .put(app.url("/api/v1/admin/projects/PROJ/mapping"))
            .bearer_auth(token)
            .json(&body)
            .send()
    };
    let nil = "00000000-0000-0000-0000-000000000000";
    assert_eq!(
        put("alice-pat", json!({"connection_id": nil, "root": "x"}))
            .await
            .unwrap()
            .status(),
        403
    );
    let bad = put(
        "root-pat",
        json!({"connection_id": nil, "root": "x", "issue_folder": "{issue.summary}"}),
    )
    .await
    .unwrap();
    assert_eq!(bad.status(), 400);
    let bad = put("root-pat", json!({"connection_id": nil, "root": "../x"}))
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let missing = put("root-pat", json!({"connection_id": nil, "root": "x"}))
        .await
        .unwrap();
    assert_eq!(missing.status(), 400, "unknown connection");
    assert_eq!(
        app.get_as("/api/v1/admin/projects/PROJ/mapping", "root-pat")
            .await
            .status(),
        404
    );
}

#[tokio::test]
async fn an_upload_cut_off_mid_stream_leaves_nothing_and_the_daemon_keeps_serving() {
    use tokio::io::AsyncWriteExt;
    let w = world().await;
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", w.app.port))
        .await
        .unwrap();
    let head = "PUT /filebridge/api/v1/issues/PROJ-1/files/content?path=cut.bin HTTP/1.1\r\n\
                Host: 127.0.0.1\r\nAuthorization: Bearer alice-pat\r\nContent-Length: 10000000\r\n\r\n";
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(&vec![7u8; 256 * 1024]).await.unwrap();
    socket.shutdown().await.unwrap();
    drop(socket);

    let pool = PgPool::connect(&w.app.database_url).await.unwrap();
    crate::helpers::eventually("the cut-off upload is audited as failed", std::time::Duration::from_secs(20), || {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM audit_events WHERE action = 'file.upload' AND path = 'cut.bin' AND outcome LIKE 'failed:%'",
            )
            .fetch_one(&pool)
            .await
            .unwrap()
                == 1
        }
    })
    .await;
    let folder = w.root.path().join("Jira/PROJ/PROJ-1");
    let left: Vec<_> = std::fs::read_dir(&folder)
        .map(|entries| entries.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "nothing under the target name, no temp file: {left:?}"
    );
    assert_eq!(w.app.get("/healthz").await.status(), 200);
    assert_eq!(
        w.put("alice-pat", "PROJ-1", "cut.bin", b"whole")
            .await
            .status(),
        201
    );
}
