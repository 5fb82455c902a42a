//! Jira's site through a proxy, as the guide's step 8 uses it: an administrator's curl
//! commands, and a user's file up and down.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use reqwest::{Method, RequestBuilder, Response};
use serde_json::{Value, json};
use tempfile::TempDir;

use super::ok;
use super::service::Service;
use crate::helpers::http_client;
use crate::proxy_peers::Proxy;

/// The storage directory of the `filesystem` connection, created with the guide's
/// `install -d ...` arguments (step 4), in a temporary directory instead of /srv.
pub(super) struct Storage {
    _dir: TempDir,
    root: PathBuf,
}

impl Storage {
    /// `install_args` are the guide's, naming `example` (its directory).
    pub(super) fn new(install_args: &str, example: &str) -> Storage {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("jira-files");
        let args = install_args.replace(example, root.to_str().unwrap());
        ok("install", &args.split_whitespace().collect::<Vec<_>>());
        Storage { _dir: dir, root }
    }

    pub(super) fn root(&self) -> &Path {
        &self.root
    }
}

/// Jira's site through one proxy, as its users reach it.
pub(super) struct Site<'a> {
    proxy: &'a Proxy,
    service: &'a Service,
    client: reqwest::Client,
}

impl<'a> Site<'a> {
    pub(super) fn new(proxy: &'a Proxy, service: &'a Service) -> Self {
        Site {
            proxy,
            service,
            client: http_client(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/filebridge{path}", self.proxy.origin)
    }

    /// Sends `request`, which must answer `expected`; fails with the proxy's and the
    /// service's logs otherwise.
    async fn send(&self, request: RequestBuilder, expected: u16) -> Response {
        let (client, request) = request.build_split();
        let request = request.expect("a valid request");
        let what = format!(
            "{} {} through {:?}",
            request.method(),
            request.url(),
            self.proxy.kind
        );
        let response = client
            .execute(request)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let status = response.status();
        if status != expected {
            let said = response.text().await.unwrap_or_default();
            panic!(
                "{what}: {status} {said}\n{}\n{}",
                self.proxy.log(),
                self.service.log()
            );
        }
        response
    }

    /// A Jira administrator's request, as the guide's curl commands send it (with a JSON
    /// body, if any); returns the JSON answer.
    async fn admin(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        expected: u16,
    ) -> Value {
        let mut request = self
            .client
            .request(method, self.url(path))
            .bearer_auth("root-pat");
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = self.send(request, expected).await;
        response.json().await.expect("a JSON answer")
    }

    /// The guide's checks through the proxy: /healthz, and /readyz (the database too).
    pub(super) async fn probes(&self) {
        for path in ["/healthz", "/readyz"] {
            self.send(self.client.get(self.url(path)), 200).await;
        }
    }

    /// The guide's first curl: a `filesystem` connection; then its test. Returns its id.
    pub(super) async fn connect(&self, body: &Value) -> String {
        let path = "/api/v1/admin/connections";
        let created = self.admin(Method::POST, path, Some(body), 201).await;
        let id = created["id"].as_str().expect("the connection's id");
        self.test_connection(id).await;
        id.to_string()
    }

    /// The guide's second curl.
    pub(super) async fn test_connection(&self, id: &str) {
        let path = format!("/api/v1/admin/connections/{id}/test");
        let tested = self.admin(Method::POST, &path, None, 200).await;
        assert_eq!(tested, json!({"ok": true}));
    }

    /// The guide's third curl: PROJ's files in a folder per issue.
    pub(super) async fn map(&self, body: &Value) {
        let path = "/api/v1/admin/projects/PROJ/mapping";
        self.admin(Method::PUT, path, Some(body), 201).await;
    }

    /// A user's file: uploaded to PROJ-1, stored in its folder by the service's user, and
    /// downloaded back, all through the proxy.
    pub(super) async fn round_trip(&self, storage: &Storage, name: &str) {
        let content = format!("{name}: uploaded through {:?}\n", self.proxy.kind);
        let url = self.url("/api/v1/issues/PROJ-1/files/content");
        let upload = self
            .client
            .put(&url)
            .query(&[("path", name)])
            .bearer_auth("alice-pat")
            .body(content.clone());
        self.send(upload, 201).await;
        let stored = storage.root().join("Jira/PROJ/PROJ-1").join(name);
        assert_eq!(std::fs::read_to_string(&stored).unwrap(), content);
        let owner = std::fs::metadata(&stored).unwrap().uid().to_string();
        assert_eq!(owner, ok("id", &["-u", "filebridge"]).trim(), "{stored:?}");
        let download = self
            .client
            .get(&url)
            .query(&[("path", name)])
            .bearer_auth("alice-pat");
        let download = self.send(download, 200).await;
        assert_eq!(download.text().await.unwrap(), content);
    }
}
