//! What the shipped snippets send upstream, seen by a stand-in for filebridge that answers
//! every request with the request's own head: the path unchanged, HTTP/1.1 on reused
//! connections, Host and X-Forwarded-Host as the browser sent Host, X-Forwarded-Proto,
//! the client's address last in X-Forwarded-For, and the proxy's request id instead of
//! the client's.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{client_from, header};
use crate::helpers::free_port;
use crate::proxy_peers::{Kind, Proxy};

/// The stand-in upstream; counts the connections it accepted.
struct Echo {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Echo {
    async fn start() -> Echo {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&connections);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(echo_heads(stream));
            }
        });
        Echo {
            addr,
            connections,
            task,
        }
    }
}

/// Answers each request head (the tests send no bodies) with itself, keeping the
/// connection open for the next; as an HTML page (like Jira's issue view) for `/browse/…`.
async fn echo_heads(mut stream: TcpStream) {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end + 4]).into_owned();
            buffer.drain(..end + 4);
            let (content_type, body) = if head.starts_with("GET /browse/") {
                let page = format!(
                    "<html><head><title>PROJ-1</title></head><body><pre>{head}</pre></body></html>"
                );
                ("text/html;charset=UTF-8", page)
            } else {
                ("text/plain", head)
            };
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            let sent = stream.write_all(answer.as_bytes());
            if sent.await.is_err() {
                return;
            }
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The request line and the headers (names lower-cased, repeated ones joined by ", ").
fn parse(head: &str) -> (String, Vec<(String, String)>) {
    let mut lines = head.split("\r\n").filter(|l| !l.is_empty());
    let request_line = lines.next().unwrap_or_default().to_string();
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in lines {
        let (name, value) = line.split_once(':').expect("a header line");
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim().to_string());
        match headers.iter_mut().find(|(n, _)| *n == name) {
            Some((_, joined)) => {
                joined.push_str(", ");
                joined.push_str(&value);
            }
            None => headers.push((name, value)),
        }
    }
    (request_line, headers)
}

fn value<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// `kind` in front of `nodes` (as filebridge) and `jira`; on another port if the first was
/// taken meanwhile.
async fn start_proxy(kind: Kind, nodes: &[SocketAddr], jira: SocketAddr) -> Proxy {
    let mut log = String::new();
    for _ in 0..3 {
        match Proxy::start(kind, free_port(), nodes, jira).await {
            Ok(proxy) => return proxy,
            Err(failure) => log = failure,
        }
    }
    panic!("{kind:?} did not start:\n{log}");
}

async fn forwarded_headers(kind: Kind) {
    let echo = Echo::start().await;
    let proxy = start_proxy(kind, &[echo.addr], echo.addr).await;
    let host = proxy.origin.trim_start_matches("http://").to_string();
    let client = client_from("127.0.0.2");
    const REQUESTS: usize = 6;
    let mut ids = Vec::new();
    for i in 0..REQUESTS {
        let path = format!("/filebridge/api/v1/issues/PROJ-1/files?path=a%20b%2Bc&i={i}");
        let response = client
            .get(format!("{}{path}", proxy.origin))
            // What a client may write to fool filebridge: none of it may arrive as sent.
            .header("X-Forwarded-For", "6.6.6.6")
            .header("X-Forwarded-Host", "evil.example")
            .header("X-Forwarded-Proto", "https")
            .header("X-Request-Id", "forged-by-the-client")
            .send()
            .await
            .expect("request through the proxy");
        assert_eq!(response.status(), 200, "{}", proxy.log());
        let apache_id = header(&response, "x-proxy-unique-id");
        let head = response.text().await.expect("echoed head");
        let (request_line, headers) = parse(&head);
        let context = format!("{kind:?} sent:\n{head}");
        assert_eq!(request_line, format!("GET {path} HTTP/1.1"), "{context}");
        assert_eq!(value(&headers, "host"), Some(host.as_str()), "{context}");
        assert_eq!(
            value(&headers, "x-forwarded-host"),
            Some(host.as_str()),
            "{context}"
        );
        assert_eq!(
            value(&headers, "x-forwarded-proto"),
            Some("http"),
            "{context}"
        );
        // filebridge takes the rightmost address that is not a trusted proxy.
        assert_eq!(
            value(&headers, "x-forwarded-for"),
            Some("6.6.6.6, 127.0.0.2"),
            "{context}"
        );
        let id = value(&headers, "x-request-id")
            .unwrap_or_default()
            .to_string();
        assert!(!id.is_empty() && id != "forged-by-the-client", "{context}");
        if kind == Kind::Apache {
            assert_eq!(id, apache_id, "{context}");
        }
        assert!(
            !value(&headers, "connection").is_some_and(|c| c.eq_ignore_ascii_case("close")),
            "{context}"
        );
        ids.push(id);
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), REQUESTS, "request ids repeat");
    // Connections to the upstream are reused (nginx's upstream keepalive, mod_proxy's
    // pool); without reuse there would be one per request.
    let connections = echo.connections.load(Ordering::SeqCst);
    assert!(
        connections < REQUESTS,
        "{kind:?} opened {connections} upstream connections for {REQUESTS} requests"
    );
}

#[tokio::test]
async fn nginx_forwards_what_filebridge_needs() {
    forwarded_headers(Kind::Nginx).await;
}

/// packaging/nginx/jira-banner.conf in Jira's location: one script tag in each HTML page,
/// fetched from Jira uncompressed so that sub_filter can edit it.
#[tokio::test]
async fn nginx_injects_the_script_tag_into_jira_pages() {
    let jira = Echo::start().await;
    let proxy = start_proxy(Kind::Nginx, &[jira.addr], jira.addr).await;
    let page = client_from("127.0.0.1")
        .get(format!("{}/browse/PROJ-1", proxy.origin))
        .header("Accept-Encoding", "identity")
        .send()
        .await
        .expect("a Jira page through nginx");
    assert_eq!(page.status(), 200, "{}", proxy.log());
    let html = page.text().await.expect("page");
    let tag = r#"<script src="/filebridge/static/jira.js" defer></script></head>"#;
    assert_eq!(html.matches(tag).count(), 1, "{html}");
    assert!(
        !html.to_ascii_lowercase().contains("accept-encoding"),
        "Jira was asked for a compressed page:\n{html}"
    );
}

#[tokio::test]
async fn apache_forwards_what_filebridge_needs() {
    forwarded_headers(Kind::Apache).await;
}

/// filebridge on several nodes (it keeps no state on a node): the shipped snippets with
/// several upstream servers (nginx) or a balancer (Apache, as docs/reverse-proxy.md shows)
/// send requests to every node, paths unchanged.
async fn requests_reach_every_node(kind: Kind) {
    let nodes = [Echo::start().await, Echo::start().await];
    let addresses: Vec<SocketAddr> = nodes.iter().map(|node| node.addr).collect();
    let proxy = start_proxy(kind, &addresses, addresses[0]).await;
    let client = client_from("127.0.0.1");
    for i in 0..8 {
        let response = client
            .get(format!("{}/filebridge/healthz?i={i}", proxy.origin))
            .send()
            .await
            .expect("request through the proxy");
        assert_eq!(response.status(), 200, "{}", proxy.log());
        let head = response.text().await.expect("echoed head");
        assert!(
            head.starts_with(&format!("GET /filebridge/healthz?i={i} HTTP/1.1\r\n")),
            "{head}"
        );
    }
    for (n, node) in nodes.iter().enumerate() {
        let connections = node.connections.load(Ordering::SeqCst);
        assert!(connections > 0, "{kind:?} sent nothing to node {n}");
    }
}

#[tokio::test]
async fn nginx_reaches_every_node() {
    requests_reach_every_node(Kind::Nginx).await;
}

#[tokio::test]
async fn apache_reaches_every_node() {
    requests_reach_every_node(Kind::Apache).await;
}
