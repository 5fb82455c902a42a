//! A tenant with an app, a site and a user, and small HTTP helpers.

use fake_graph::{Access, FakeGraph, fixtures};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

pub const SECRET: &str = "s3cret~value";
pub const REDIRECT: &str = "http://localhost:8080/connect/callback";

pub struct Env {
    pub graph: FakeGraph,
    pub tenant: String,
    pub app: String,
    pub site: String,
    pub drive: String,
    pub http: Client,
}

/// Tenant `contoso.onmicrosoft.com`, an app with a secret, a certificate and a redirect URI,
/// granted `Sites.Selected` (write) on `/sites/eng`.
pub async fn env() -> Env {
    let graph = FakeGraph::start().await;
    let tenant = graph.add_tenant("contoso.onmicrosoft.com");
    let app = graph.add_app(&tenant);
    graph.add_client_secret(&app, SECRET);
    graph.add_certificate(&app, fixtures::APP_CERT_PEM);
    graph.add_redirect_uri(&app, REDIRECT);
    let site = graph.add_site(
        &tenant,
        "contoso.sharepoint.com",
        "/sites/eng",
        "Engineering",
    );
    graph.grant_sites_selected(&app, &site, Access::Write);
    let drive = graph.default_drive(&site);
    // In a workspace build reqwest is compiled once for every crate, with the root crate's
    // `rustls-no-provider` feature: a client then needs a process-wide crypto provider even
    // for plain HTTP. (Alone, `-p fake-graph`, it would not.)
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    Env {
        graph,
        tenant,
        app,
        site,
        drive,
        http,
    }
}

impl Env {
    /// POSTs a form to the tenant's token endpoint.
    pub async fn token_request(&self, params: &[(&str, &str)]) -> (StatusCode, Value) {
        let body = serde_urlencoded::to_string(params).unwrap();
        let response = self
            .http
            .post(self.graph.token_url(&self.tenant))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// An app-only token by client secret.
    pub async fn app_token(&self) -> String {
        let scope = "https://graph.microsoft.com/.default";
        let (status, body) = self
            .token_request(&[
                ("grant_type", "client_credentials"),
                ("client_id", &self.app),
                ("client_secret", SECRET),
                ("scope", scope),
            ])
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// A client assertion for the app: RS256 names the certificate by `x5t`, PS256 by
    /// `x5t#S256`; `change` edits the claims before signing.
    pub fn assertion(
        &self,
        alg: Algorithm,
        key_pem: &str,
        cert_pem: &str,
        change: impl FnOnce(&mut Value),
    ) -> String {
        let (x5t, x5t_s256) = fixtures::thumbprints(cert_pem);
        let mut header = Header::new(alg);
        if alg == Algorithm::PS256 {
            header.x5t_s256 = Some(x5t_s256);
        } else {
            header.x5t = Some(x5t);
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let jti = format!("{now}-{}", rand_suffix());
        let mut claims = json!({
            "aud": self.graph.token_url(&self.tenant),
            "iss": self.app, "sub": self.app,
            "exp": now + 600, "nbf": now, "iat": now, "jti": jti,
        });
        change(&mut claims);
        let key = EncodingKey::from_rsa_der(&fixtures::pem_der(key_pem));
        encode(&header, &claims, &key).unwrap()
    }

    /// A request to Graph, `path` under `/v1.0`; the body is JSON when given.
    pub async fn call(
        &self,
        method: Method,
        token: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let url = if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}/v1.0{path}", self.graph.base_url)
        };
        let mut request = self.http.request(method, url).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, token: &str, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, token, path, None).await
    }

    /// A simple upload (`PUT …:/name:/content`) of `bytes` to `path` below the root.
    pub async fn put_content(
        &self,
        token: &str,
        path: &str,
        bytes: Vec<u8>,
    ) -> (StatusCode, Value) {
        let url = format!(
            "{}/v1.0/drives/{}/root:{path}:/content",
            self.graph.base_url, self.drive
        );
        let response = self
            .http
            .put(url)
            .bearer_auth(token)
            .body(bytes)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The inner error code of a Graph error body.
pub fn inner_code(body: &Value) -> &str {
    body["error"]["innerError"]["code"].as_str().unwrap_or("")
}
