//! filebridge behind real nginx and Apache httpd, configured with the snippets shipped in
//! packaging/ (see proxy_peers.rs): the audit trail names the real clients, /metrics stays
//! inside, and cookie-authenticated writes pass the origin check through the proxy. The
//! headers the snippets send are checked in `headers`, 1 GiB transfers in `transfer`,
//! filebridge's script in Jira's pages in `jira_pages`.

mod headers;
mod jira_pages;
mod transfer;

use reqwest::header::{COOKIE, ORIGIN};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::helpers::{
    TestApp, TestConfig, cluster_url, create_database, free_port, http_client, session_cookie,
    start,
};
use crate::proxy_peers::{Kind, Proxy};

/// Jira, filebridge and the proxy in front of both, with PROJ-1 mapped to a filesystem
/// connection. root is a Jira admin, alice may browse and attach in PROJ.
pub struct Stack {
    pub app: TestApp,
    pub proxy: Proxy,
    /// The filesystem connection's root directory.
    pub root: TempDir,
    pub client: reqwest::Client,
}

impl Stack {
    /// `path` under filebridge's base path, through the proxy.
    pub fn url(&self, path: &str) -> String {
        format!("{}/filebridge{path}", self.proxy.origin)
    }

    /// `…/api/v1/issues/PROJ-1/files{rest}` through the proxy.
    pub fn files(&self, rest: &str) -> String {
        self.url(&format!("/api/v1/issues/PROJ-1/files{rest}"))
    }

    /// Where a file of PROJ-1 lands in the storage.
    pub fn stored(&self, name: &str) -> std::path::PathBuf {
        self.root.path().join("Jira/PROJ/PROJ-1").join(name)
    }
}

/// Starts the stack. filebridge's public URL is the proxy's, it trusts only the proxy's
/// address, and it reaches Jira through the proxy too (Jira at `/` of the same site).
pub async fn stack(kind: Kind) -> Stack {
    let mut failure = String::new();
    // The proxy's port is chosen before filebridge starts (its public URL names it); should
    // someone take it meanwhile, start everything again on another.
    for _ in 0..3 {
        let jira = fake_jira::FakeJira::start().await;
        let jira_addr = jira.addr();
        let database = create_database(&cluster_url()).await;
        let port = free_port();
        let origin = format!("http://127.0.0.1:{port}");
        let mut config = TestConfig::new(&database, &origin);
        config
            .set("SERVER__PUBLIC_URL", &format!("{origin}/filebridge"))
            .set("SERVER__TRUSTED_PROXIES", "127.0.0.1/32");
        let app = start(config, jira, database).await;
        let filebridge = ([127, 0, 0, 1], app.port).into();
        match Proxy::start(kind, port, &[filebridge], jira_addr).await {
            Ok(proxy) => return populate(app, proxy).await,
            Err(log) => failure = log,
        }
    }
    panic!("{kind:?} did not start; its last log:\n{failure}");
}

async fn populate(app: TestApp, proxy: Proxy) -> Stack {
    let jira = &app.jira;
    jira.add_project("PROJ", "Project");
    jira.add_issue("PROJ", "PROJ-1");
    for (name, token) in [("root", "root-pat"), ("alice", "alice-pat")] {
        jira.add_user(name, name);
        jira.add_token(name, token);
        jira.grant_project(name, "PROJ", "BROWSE_PROJECTS");
        jira.grant_project(name, "PROJ", "CREATE_ATTACHMENTS");
    }
    jira.grant_global("root", "ADMINISTER");
    let stack = Stack {
        app,
        proxy,
        root: tempfile::tempdir().expect("storage root"),
        client: http_client(),
    };

    // Both sites answer through the proxy: Jira at / and filebridge below /filebridge/.
    let jira_info = stack
        .client
        .get(format!("{}/rest/api/2/serverInfo", stack.proxy.origin))
        .send()
        .await
        .expect("Jira through the proxy");
    assert_eq!(jira_info.status(), 200, "{}", stack.proxy.log());
    let health = stack
        .client
        .get(stack.url("/healthz"))
        .send()
        .await
        .expect("filebridge through the proxy");
    assert_eq!(health.status(), 200, "{}", stack.proxy.log());

    let connection: Value = stack
        .client
        .post(stack.url("/api/v1/admin/connections"))
        .bearer_auth("root-pat")
        .json(&json!({"name": "local", "kind": "filesystem",
                      "settings": {"root": stack.root.path()}}))
        .send()
        .await
        .expect("create the connection")
        .json()
        .await
        .expect("connection JSON");
    let id = connection["id"].as_str().expect("connection created");
    let mapping = stack
        .client
        .put(stack.url("/api/v1/admin/projects/PROJ/mapping"))
        .bearer_auth("root-pat")
        .json(&json!({"connection_id": id, "root": "Jira/PROJ"}))
        .send()
        .await
        .expect("map PROJ");
    assert_eq!(mapping.status(), 201, "mapping created");
    stack
}

/// A client whose connections come from `ip` (any 127.0.0.0/8 address is local on Linux).
fn client_from(ip: &str) -> reqwest::Client {
    // The tests' clients use rustls's process-wide provider, as helpers::http_client does.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .local_address(Some(ip.parse().expect("an IP address")))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

async fn audit_names_the_real_clients(kind: Kind) {
    let s = stack(kind).await;
    let mut request_ids = Vec::new();
    for (ip, name, forged) in [
        ("127.0.0.2", "from-2.txt", false),
        ("127.0.0.3", "from-3.txt", true),
    ] {
        let mut put = client_from(ip)
            .put(s.files("/content"))
            .query(&[("path", name)])
            .bearer_auth("alice-pat")
            .body(name.to_string());
        if forged {
            put = put
                .header("X-Forwarded-For", "6.6.6.6")
                .header("X-Request-Id", "forged-by-the-client");
        }
        let response = put.send().await.expect("upload through the proxy");
        assert_eq!(response.status(), 201, "{}", s.proxy.log());
        let id = header(&response, "x-request-id");
        assert_ne!(
            id, "forged-by-the-client",
            "a client's request id was believed"
        );
        if kind == Kind::Apache {
            // Apache's mod_unique_id id, which the snippet hands to filebridge.
            assert_eq!(id, header(&response, "x-proxy-unique-id"));
        } else {
            // nginx's $request_id.
            assert!(
                id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
                "{id}"
            );
        }
        request_ids.push((ip, name, id));
    }

    let audit: Value = s
        .client
        .get(s.url("/api/v1/admin/audit"))
        .bearer_auth("root-pat")
        .send()
        .await
        .expect("read the audit trail")
        .json()
        .await
        .expect("audit JSON");
    let events = audit["events"].as_array().expect("events");
    for (ip, name, id) in request_ids {
        let event = events
            .iter()
            .find(|e| e["action"] == "file.upload" && e["path"] == name)
            .unwrap_or_else(|| panic!("no upload of {name} in {events:#?}"));
        assert_eq!(event["client_ip"], ip, "{event:#}");
        assert_eq!(event["request_id"], id.as_str(), "{event:#}");
    }
}

#[tokio::test]
async fn nginx_audit_names_the_real_clients() {
    audit_names_the_real_clients(Kind::Nginx).await;
}

#[tokio::test]
async fn apache_audit_names_the_real_clients() {
    audit_names_the_real_clients(Kind::Apache).await;
}

/// `GET raw` sent byte for byte (reqwest would normalise the path), answered status.
async fn raw_get(proxy: &Proxy, raw: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = proxy.origin.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(host).await.expect("connect");
    let request = format!("GET {raw} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.expect("answer");
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"));
    (status, answer)
}

async fn metrics_stay_inside(kind: Kind) {
    let s = stack(kind).await;
    // Whether filebridge serves /metrics yet or not, the proxy must refuse it itself.
    let direct = s.app.get("/metrics").await.status();
    assert!(
        matches!(direct.as_u16(), 200 | 404),
        "direct /metrics: {direct}"
    );
    // Refused by the proxy itself, not by filebridge's own metrics.allow (which would let
    // this client on 127.0.0.1 in, and answers problem+json when it refuses).
    let (status, answer) = raw_get(&s.proxy, "/filebridge/metrics").await;
    assert_eq!(status, 403, "{answer}");
    assert!(!answer.contains("application/problem+json"), "{answer}");
    for raw in [
        "/filebridge/metrics?name=x",
        "/filebridge/metrics/",
        "/filebridge//metrics",
        "//filebridge/metrics",
        "/filebridge/%6detrics",
        "/filebridge/%6Detrics",
        "/filebridge/./metrics",
        "/filebridge/static/../metrics",
    ] {
        let (status, answer) = raw_get(&s.proxy, raw).await;
        assert!(
            matches!(status, 400 | 403 | 404),
            "GET {raw} through {kind:?} answered {status}:\n{answer}"
        );
        assert!(!answer.contains("# TYPE"), "GET {raw} leaked metrics");
    }
    eprintln!("{kind:?}: /metrics directly on filebridge answers {direct}; 403 through the proxy");
}

#[tokio::test]
async fn nginx_keeps_metrics_inside() {
    metrics_stay_inside(Kind::Nginx).await;
}

#[tokio::test]
async fn apache_keeps_metrics_inside() {
    metrics_stay_inside(Kind::Apache).await;
}

/// A browser's write with Jira's session cookie: through the proxy its Origin is the public
/// URL's, so filebridge takes it as same-site; filebridge's own session cookie (Path
/// /filebridge) comes back through the proxy and works on the next request.
async fn cookie_writes_pass_the_origin_check(kind: Kind) {
    let s = stack(kind).await;
    s.app.jira.add_session("alice", "alice-jsession");
    let create = |origin: &str| {
        s.client
            .post(s.files("/folders"))
            .query(&[("path", "made-with-cookies")])
            .header(COOKIE, "JSESSIONID=alice-jsession")
            .header(ORIGIN, origin)
            .send()
    };
    let cross = create("http://evil.example")
        .await
        .expect("cross-site POST");
    assert_eq!(cross.status(), 403);
    let problem: Value = cross.json().await.expect("problem JSON");
    assert_eq!(problem["code"], "cross_site_request");

    let created = create(&s.proxy.origin).await.expect("same-site POST");
    assert_eq!(created.status(), 201, "{}", s.proxy.log());
    assert!(s.stored("made-with-cookies").is_dir());
    let cookie = session_cookie(&created).expect("a filebridge session cookie");
    assert!(cookie.contains("Path=/filebridge"), "{cookie}");

    // The session stands beside the Jira cookies it was started from: a valid one is taken
    // as it is, without a new cookie.
    let token = crate::helpers::cookie_value(&cookie);
    let me = s
        .client
        .get(s.url("/api/v1/me"))
        .header(
            COOKIE,
            format!("filebridge_session={token}; JSESSIONID=alice-jsession"),
        )
        .send()
        .await
        .expect("me with the session cookie");
    assert_eq!(me.status(), 200);
    assert_eq!(session_cookie(&me), None, "the session was not recognised");
    let me: Value = me.json().await.expect("me JSON");
    assert_eq!(me["name"], "alice");
}

#[tokio::test]
async fn nginx_passes_cookie_writes_from_the_site() {
    cookie_writes_pass_the_origin_check(Kind::Nginx).await;
}

#[tokio::test]
async fn apache_passes_cookie_writes_from_the_site() {
    cookie_writes_pass_the_origin_check(Kind::Apache).await;
}

/// filebridge's page for an issue (where Jira's "Files" link points) and its assets come
/// through unchanged, with filebridge's security headers.
async fn the_issue_page_comes_through(kind: Kind) {
    let s = stack(kind).await;
    let page = s
        .client
        .get(s.url("/issues/PROJ-1"))
        .send()
        .await
        .expect("issue page");
    assert_eq!(page.status(), 200);
    assert!(header(&page, "content-security-policy").contains("script-src 'self'"));
    assert_eq!(header(&page, "x-frame-options"), "SAMEORIGIN");
    assert!(header(&page, "content-type").starts_with("text/html"));
    for asset in [
        "/static/issue.js",
        "/static/issue.css",
        "/static/files-16.png",
    ] {
        // Offering gzip, which the test sites apply to everything else.
        let proxied = s
            .client
            .get(s.url(asset))
            .header("Accept-Encoding", "gzip")
            .send()
            .await
            .expect("asset");
        assert_eq!(proxied.status(), 200, "{asset}");
        let direct = s.app.get(asset).await.bytes().await.expect("direct asset");
        assert_eq!(
            proxied.bytes().await.expect("proxied asset"),
            direct,
            "{asset}"
        );
    }
}

#[tokio::test]
async fn nginx_serves_the_issue_page() {
    the_issue_page_comes_through(Kind::Nginx).await;
}

#[tokio::test]
async fn apache_serves_the_issue_page() {
    the_issue_page_comes_through(Kind::Apache).await;
}
