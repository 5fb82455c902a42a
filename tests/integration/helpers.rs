//! The test harness: a fresh database per test on the run's throwaway PostgreSQL cluster,
//! a fake Jira per test, and the real application on port 0.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Once;

use base64::Engine;
use fake_jira::FakeJira;
use filebridge::app::{Application, Migrations};
use filebridge::config::{Settings, Sources};
use sqlx::{Connection, Executor, PgConnection};

pub const BASE: &str = "/filebridge";

/// The admin URL of the run's cluster; tests fail (never skip) without it.
pub fn cluster_url() -> String {
    std::env::var("FILEBRIDGE_TEST_DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "FILEBRIDGE_TEST_DATABASE_URL is not set. Run the tests with ./scripts/test: it installs \
             PostgreSQL (apt-get install postgresql) and starts a throwaway cluster for the run."
        )
    })
}

fn with_database(url: &str, name: &str) -> String {
    let mut url = url::Url::parse(url).expect("cluster URL");
    url.set_path(name);
    url.to_string()
}

/// Creates an empty database for one test and returns its URL.
pub async fn create_database(cluster: &str) -> String {
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let mut conn = PgConnection::connect(cluster)
        .await
        .expect("connect to the test cluster");
    conn.execute(sqlx::AssertSqlSafe(format!(r#"CREATE DATABASE "{name}""#)))
        .await
        .expect("create test database");
    with_database(cluster, &name)
}

pub fn init_logging() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var("TEST_LOG").is_ok() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter("info")
                .with_test_writer()
                .try_init();
        }
    });
}

pub fn random_master_key() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The configuration a test application runs with, as environment variables, so tests go
/// through the same loader as the daemon.
pub struct TestConfig {
    pub env: HashMap<String, String>,
    pub migrations: Migrations,
}

impl TestConfig {
    pub fn new(database_url: &str, jira_url: &str) -> Self {
        let mut env = HashMap::new();
        for (key, value) in [
            ("SERVER__LISTEN", "127.0.0.1:0"),
            ("SERVER__PUBLIC_URL", "https://jira.example.test/filebridge"),
            ("SERVER__SHUTDOWN_GRACE", "5s"),
            ("DATABASE__URL", database_url),
            ("DATABASE__MAX_CONNECTIONS", "4"),
            ("DATABASE__ACQUIRE_TIMEOUT", "2s"),
            ("JIRA__BASE_URL", jira_url),
            ("JIRA__TIMEOUT", "3s"),
            // Two of the four database connections at most for background jobs.
            ("JOBS__WORKERS", "2"),
            // No scheduled reconciliation job in tests that count jobs; tests of it ask.
            ("RECONCILE__INTERVAL", "0"),
            ("SECURITY__MASTER_KEY", &random_master_key()),
        ] {
            env.insert(format!("FILEBRIDGE__{key}"), value.to_string());
        }
        Self {
            env,
            migrations: Migrations::Apply,
        }
    }

    pub fn set(&mut self, key: &str, value: &str) -> &mut Self {
        self.env
            .insert(format!("FILEBRIDGE__{key}"), value.to_string());
        self
    }

    pub fn settings(&self) -> Settings {
        Settings::load(&Sources {
            env: self.env.clone(),
            ..Sources::default()
        })
        .expect("test settings load")
    }
}

pub struct TestApp {
    /// `http://127.0.0.1:PORT/filebridge`
    pub address: String,
    pub port: u16,
    pub jira: FakeJira,
    pub database_url: String,
    pub config: TestConfig,
    pub client: reqwest::Client,
    pub handle: actix_web::dev::ServerHandle,
    pub stopped: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request")
    }

    /// `GET path` with a bearer token.
    pub async fn get_as(&self, path: &str, token: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request")
    }

    /// `GET /api/v1/me` with a bearer token.
    pub async fn me_with_token(&self, token: &str) -> reqwest::Response {
        self.get_as("/api/v1/me", token).await
    }

    /// The master key the app runs with, for minting test tokens.
    pub fn master_key(&self) -> [u8; 32] {
        let text = &self.config.env["FILEBRIDGE__SECURITY__MASTER_KEY"];
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .expect("base64")
            .try_into()
            .expect("32 bytes")
    }
}

pub fn http_client() -> reqwest::Client {
    // The tests' own clients use rustls's process-wide provider (the daemon configures its own).
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// A fresh database, a fresh fake Jira and the application, configured by `tweak`.
pub async fn spawn_app_with(tweak: impl FnOnce(&mut TestConfig)) -> TestApp {
    init_logging();
    let jira = FakeJira::start().await;
    let database_url = create_database(&cluster_url()).await;
    let mut config = TestConfig::new(&database_url, &jira.base_url);
    tweak(&mut config);
    start(config, jira, database_url).await
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn start(config: TestConfig, jira: FakeJira, database_url: String) -> TestApp {
    let app = Application::build(&config.settings(), config.migrations)
        .await
        .expect("application builds");
    let port = app.port();
    let handle = app.handle();
    let stopped = tokio::spawn(app.run_until_stopped());
    TestApp {
        address: format!("http://127.0.0.1:{port}{BASE}"),
        port,
        jira,
        database_url,
        config,
        client: http_client(),
        handle,
        stopped,
    }
}

/// A PostgreSQL cluster of the test's own, for tests that stop it or change its TLS setup.
/// Stopped and removed on drop.
pub struct OwnCluster {
    script: PathBuf,
    dir: tempfile::TempDir,
    pub url: String,
}

impl OwnCluster {
    pub fn start(tls: Option<(&std::path::Path, &std::path::Path)>) -> Self {
        let script = PathBuf::from(std::env::var("FILEBRIDGE_TEST_PG_CLUSTER_SCRIPT").unwrap_or_else(
            |_| panic!("FILEBRIDGE_TEST_PG_CLUSTER_SCRIPT is not set: run the tests with ./scripts/test"),
        ));
        let dir = tempfile::tempdir().expect("temp dir");
        let mut command = Command::new(&script);
        command.arg("start").arg(dir.path());
        if let Some((cert, key)) = tls {
            command.env("PG_SSL_CERT", cert).env("PG_SSL_KEY", key);
        }
        let url = run_script(&mut command);
        Self { script, dir, url }
    }

    pub fn pause(&self) {
        run_script(Command::new(&self.script).arg("pause").arg(self.dir.path()));
    }

    pub fn resume(&self) {
        run_script(
            Command::new(&self.script)
                .arg("resume")
                .arg(self.dir.path()),
        );
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        let _ = Command::new(&self.script)
            .arg("stop")
            .arg(self.dir.path())
            .output();
    }
}

fn run_script(command: &mut Command) -> String {
    let output = command.output().expect("run scripts/pg-cluster");
    assert!(
        output.status.success(),
        "scripts/pg-cluster failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// A loopback port nobody listens on now (for servers whose address must be known before
/// they start).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Polls `check` until it holds, for at most `limit`; for conditions no event announces
/// (a database coming back). Fails the test with `what` on timeout.
pub async fn eventually<F, Fut>(what: &str, limit: std::time::Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Waits until nothing accepts connections on `port` (a server stopping).
pub async fn wait_until_refused(port: u16) {
    eventually(
        "the listener closes",
        std::time::Duration::from_secs(10),
        || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_err()
        },
    )
    .await;
}

/// Records a migration this binary does not know, as a newer filebridge would have.
pub async fn pretend_newer_schema(pool: &sqlx::PgPool) {
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (99991231000000, 'from the future', true, '\\x00', 0)",
    )
    .execute(pool)
    .await
    .expect("record a future migration");
}

/// The `filebridge_session` Set-Cookie of a response, with its attributes.
pub fn session_cookie(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().expect("ASCII Set-Cookie").to_string())
        .find(|c| c.starts_with("filebridge_session="))
}

/// The token in a `filebridge_session` Set-Cookie.
pub fn cookie_value(set_cookie: &str) -> String {
    set_cookie
        .split(';')
        .next()
        .unwrap_or_default()
        .trim_start_matches("filebridge_session=")
        .to_string()
}

/// As the Jira administrator whose token is `admin_token`: a `filesystem` connection named
/// `name` on `dir`, and `project` mapped to it under `root`. Returns the connection's id.
pub async fn map_to_directory(
    app: &TestApp,
    admin_token: &str,
    name: &str,
    dir: &std::path::Path,
    project: &str,
    root: &str,
) -> String {
    let connection: serde_json::Value = app
        .client
        .post(app.url("/api/v1/admin/connections"))
        .bearer_auth(admin_token)
        .json(&serde_json::json!({"name": name, "kind": "filesystem", "settings": {"root": dir}}))
        .send()
        .await
        .expect("create the connection")
        .json()
        .await
        .expect("the connection as JSON");
    let id = connection["id"]
        .as_str()
        .unwrap_or_else(|| panic!("connection not created: {connection}"))
        .to_string();
    let mapping = app
        .client
        .put(app.url(&format!("/api/v1/admin/projects/{project}/mapping")))
        .bearer_auth(admin_token)
        .json(&serde_json::json!({"connection_id": id, "root": root}))
        .send()
        .await
        .expect("map the project");
    assert_eq!(mapping.status(), 201, "mapping created");
    id
}
