//! "Mirror storage permissions": a `sharepoint` connection in delegated mode, end to end
//! through the HTTP API against the fake Jira and the fake Microsoft identity platform and
//! Graph. Each Jira user connects their own Microsoft account (authorization code with PKCE);
//! files are then reached with that user's token, so SharePoint's per-user rights apply.
//! The flows are in `storage_accounts/flows.rs`; this file sets the world up.

mod certificate;
mod events;
mod flows;
mod instances;
mod sign_in;

use fake_graph::{Access, FakeGraph};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::{TestApp, TestConfig, spawn_app_with};

const SECRET: &str = "app-secret-value";
const PUBLIC: &str = "https://jira.example.test/filebridge";

struct World {
    app: TestApp,
    graph: FakeGraph,
    drive: String,
    client: String,
    site: String,
    /// The delegated connection's id.
    id: String,
    /// Microsoft user ids of alice and bob.
    ms_alice: String,
    ms_bob: String,
    /// The app's `server.public_url` (`PUBLIC` unless made with `world_on`).
    public: String,
}

/// PROJ-1 mapped to a delegated `sharepoint` connection (library `Jira/PROJ/PROJ-1`); Jira
/// users root (admin), alice and bob may browse and attach; Microsoft users for alice and bob
/// may write in the whole library.
async fn world() -> World {
    world_with(|_| {}).await
}

/// [`world`] with the app's configuration tweaked first (e.g. Jira events on).
async fn world_with(tweak: impl FnOnce(&mut TestConfig)) -> World {
    world_on(spawn_app_with(tweak).await, PUBLIC).await
}

/// `world` on `app`, whose `server.public_url` is `public` (a browser's test needs one it
/// can reach).
async fn world_on(app: TestApp, public: &str) -> World {
    let jira = &app.jira;
    jira.add_project("PROJ", "Project");
    jira.add_issue("PROJ", "PROJ-1");
    for (name, token) in [
        ("root", "root-pat"),
        ("alice", "alice-pat"),
        ("bob", "bob-pat"),
    ] {
        jira.add_user(name, name);
        jira.add_token(name, token);
        jira.grant_project(name, "PROJ", "BROWSE_PROJECTS");
        jira.grant_project(name, "PROJ", "CREATE_ATTACHMENTS");
    }
    jira.grant_global("root", "ADMINISTER");

    let microsoft = microsoft(public).await;
    let id = create_connection(&app, "sp-delegated", microsoft.settings()).await;
    let mapping = app
        .client
        .put(app.url("/api/v1/admin/projects/PROJ/mapping"))
        .bearer_auth("root-pat")
        .json(&json!({"connection_id": id, "root": "PROJ"}))
        .send()
        .await
        .unwrap();
    assert_eq!(mapping.status(), 201, "mapping created");
    let Microsoft {
        graph,
        tenant: _,
        client,
        site,
        drive,
        ms_alice,
        ms_bob,
    } = microsoft;
    World {
        app,
        graph,
        drive,
        client,
        site,
        id,
        ms_alice,
        ms_bob,
        public: public.to_string(),
    }
}

/// The fake Microsoft side of `world`: a tenant with the app (its secret, and its redirect
/// URI below `public`), the Legal site whose library holds a folder `Jira`, and Microsoft
/// users for alice and bob who may write in the whole library.
struct Microsoft {
    graph: FakeGraph,
    tenant: String,
    client: String,
    site: String,
    drive: String,
    ms_alice: String,
    ms_bob: String,
}

async fn microsoft(public: &str) -> Microsoft {
    let graph = FakeGraph::start().await;
    let tenant = graph.add_tenant("contoso.onmicrosoft.com");
    let client = graph.add_app(&tenant);
    graph.add_client_secret(&client, SECRET);
    graph.add_redirect_uri(&client, &format!("{public}/oauth/microsoft/callback"));
    let site = graph.add_site(&tenant, "contoso.sharepoint.com", "/sites/legal", "Legal");
    let drive = graph.default_drive(&site);
    graph.put_folder(&drive, "/Jira");
    let root = graph.root_id(&drive);
    let ms_alice = graph.add_user(&tenant, "alice@contoso.onmicrosoft.com", "Alice");
    let ms_bob = graph.add_user(&tenant, "bob@contoso.onmicrosoft.com", "Bob");
    for user in [&ms_alice, &ms_bob] {
        graph.set_visibility(user, &drive, &root, Some(Access::Write));
    }
    Microsoft {
        graph,
        tenant,
        client,
        site,
        drive,
        ms_alice,
        ms_bob,
    }
}

impl Microsoft {
    /// A delegated connection's settings, rooted at the library's `Jira` folder.
    fn settings(&self) -> Value {
        json!({
            "mode": "delegated",
            "tenant": self.tenant,
            "client_id": self.client,
            "site": "https://contoso.sharepoint.com/sites/legal",
            "root": "Jira",
            "graph_url": self.graph.base_url,
            "login_url": self.graph.base_url,
            "graph_resource": "https://graph.microsoft.com",
        })
    }
}

async fn create_connection(app: &TestApp, name: &str, settings: Value) -> String {
    let created: Value = app
        .client
        .post(app.url("/api/v1/admin/connections"))
        .bearer_auth("root-pat")
        .json(
            &json!({"name": name, "kind": "sharepoint", "settings": settings,
                      "secrets": {"client_secret": SECRET}}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    created["id"]
        .as_str()
        .expect("connection created")
        .to_string()
}

/// What `/connect` handed the browser: the state cookie and where Microsoft sent it back.
struct SignIn {
    cookie: String,
    /// The callback's path and query on the app (`/oauth/microsoft/callback?code=…`).
    callback: String,
    state: String,
}

impl World {
    fn connect_url(&self) -> String {
        format!(
            "{}/api/v1/storage-accounts/{}/connect",
            self.public, self.id
        )
    }

    /// `/connect` as `pat`, then Microsoft's `/authorize` signed in as `ms_user`.
    async fn sign_in(&self, pat: &str, ms_user: &str) -> SignIn {
        self.sign_in_returning(pat, ms_user, None).await
    }

    /// `sign_in`, asking `/connect` to go back to `return_to` afterwards.
    async fn sign_in_returning(&self, pat: &str, ms_user: &str, return_to: Option<&str>) -> SignIn {
        let mut connect = format!("/api/v1/storage-accounts/{}/connect", self.id);
        if let Some(path) = return_to {
            let query = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("return_to", path)
                .finish();
            connect = format!("{connect}?{query}");
        }
        let response = self.app.get_as(&connect, pat).await;
        assert_eq!(response.status(), StatusCode::FOUND);
        let set_cookie = response.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .to_string();
        for attribute in [
            "HttpOnly",
            "Secure",
            "SameSite=Lax",
            "Path=/filebridge/oauth/microsoft/callback",
        ] {
            assert!(set_cookie.contains(attribute), "{set_cookie}");
        }
        let cookie = set_cookie.split(';').next().unwrap().to_string();
        let authorize = response.headers()["location"].to_str().unwrap().to_string();
        assert!(authorize.starts_with(&self.graph.base_url), "{authorize}");
        let query: std::collections::HashMap<String, String> =
            url::form_urlencoded::parse(authorize.split_once('?').unwrap().1.as_bytes())
                .into_owned()
                .collect();
        assert_eq!(query["code_challenge_method"], "S256");
        assert!(query["scope"].contains("offline_access"), "{query:?}");
        assert_eq!(
            query["redirect_uri"],
            format!("{}/oauth/microsoft/callback", self.public)
        );
        self.graph.sign_in(ms_user);
        let back = self.app.client.get(&authorize).send().await.unwrap();
        assert_eq!(back.status(), StatusCode::FOUND);
        let location = back.headers()["location"].to_str().unwrap();
        let callback = location
            .strip_prefix(&self.public)
            .expect("back to filebridge")
            .to_string();
        SignIn {
            cookie,
            callback,
            state: query["state"].clone(),
        }
    }

    /// The browser following Microsoft's redirect, with `cookie` and `pat`'s credentials.
    async fn callback(
        &self,
        callback: &str,
        cookie: Option<&str>,
        pat: Option<&str>,
    ) -> reqwest::Response {
        let mut request = self.app.client.get(self.app.url(callback));
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        if let Some(pat) = pat {
            request = request.bearer_auth(pat);
        }
        request.send().await.unwrap()
    }

    /// Connects `pat`'s Jira user to `ms_user`'s Microsoft account.
    async fn connect(&self, pat: &str, ms_user: &str) {
        let sign_in = self.sign_in(pat, ms_user).await;
        let response = self
            .callback(&sign_in.callback, Some(&sign_in.cookie), Some(pat))
            .await;
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "{:?}",
            response.text().await
        );
        // The "connected" page runs and loads nothing, and is never framed.
        let policy = response.headers()["content-security-policy"]
            .to_str()
            .unwrap();
        assert!(
            policy.contains("default-src 'none'") && policy.contains("frame-ancestors 'none'"),
            "{policy}"
        );
    }

    async fn list(&self, pat: &str) -> reqwest::Response {
        self.app.get_as("/api/v1/issues/PROJ-1/files", pat).await
    }

    async fn names(&self, pat: &str) -> Vec<String> {
        let response = self.list(pat).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        let mut names: Vec<String> = body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap().to_string())
            .collect();
        names.sort();
        names
    }

    async fn upload(&self, pat: &str, name: &str, body: &'static [u8]) {
        let response = self
            .app
            .client
            .put(self.app.url("/api/v1/issues/PROJ-1/files/content"))
            .query(&[("path", name)])
            .bearer_auth(pat)
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
    }

    async fn accounts(&self, pat: &str) -> Value {
        let response = self.app.get_as("/api/v1/storage-accounts", pat).await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    async fn pool(&self) -> PgPool {
        PgPool::connect(&self.app.database_url).await.unwrap()
    }

    async fn actions(&self) -> Vec<String> {
        sqlx::query_scalar(
            "SELECT action FROM audit_events WHERE action LIKE 'storage_account.%' ORDER BY seq",
        )
        .fetch_all(&self.pool().await)
        .await
        .unwrap()
    }
}

/// Asserts a 409 `storage_account_required` naming the connect URL.
async fn account_required(world: &World, response: reqwest::Response) {
    assert_eq!(response.status(), StatusCode::CONFLICT);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "storage_account_required", "{problem}");
    assert_eq!(problem["connect_url"], world.connect_url(), "{problem}");
}

#[tokio::test]
async fn key_rotation_re_encrypts_users_refresh_tokens() {
    use filebridge::audit::Actor;
    use filebridge::config::MasterKey;
    use filebridge::secrets::{Sealed, SecretCipher, rotate};

    let world = world().await;
    world.connect("alice-pat", &world.ms_alice).await;
    let pool = world.pool().await;
    let old = MasterKey::from_bytes(world.app.master_key());
    let new = MasterKey::from_bytes([7; 32]);
    rotate(&pool, &old, &new, Actor::operator()).await.unwrap();
    let (connection, user, key_id, nonce, ciphertext): (
        uuid::Uuid,
        String,
        String,
        Vec<u8>,
        Vec<u8>,
    ) = sqlx::query_as(
        "SELECT connection_id, user_key, key_id, nonce, ciphertext FROM storage_accounts",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let cipher = SecretCipher::new(&new);
    assert_eq!(key_id, cipher.key_id());
    let sealed = Sealed {
        key_id,
        nonce,
        ciphertext,
    };
    assert!(
        cipher
            .open(&sealed, &format!("storage_account:{connection}:{user}"))
            .is_ok()
    );
}
