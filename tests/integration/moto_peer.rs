//! A real moto S3 server per test, on a free loopback port, with signature checking on, and
//! killed when dropped.
//!
//! moto checks signatures only when started with `INITIAL_NO_AUTH_ACTION_COUNT=N`: the first
//! N authenticated-or-not calls pass unchecked, every later one must be signed by a key that
//! exists in moto's IAM and whose policy allows the action. The harness spends exactly those
//! N calls on IAM, creating two users (CreateUser, CreateAccessKey, PutUserPolicy each): an
//! administrator allowed `s3:*`, whose key the harness signs its own calls with (creating the
//! bucket, listing multipart uploads), and `filebridge`, with the policy the test chooses,
//! whose key the storage under test uses. Everything after that is signed and checked. moto is installed into .venv by
//! ./scripts/test (scripts/requirements-test.txt); a missing one fails the test naming that.

use crate::helpers::free_port;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use filebridge::config::EgressSettings;
use filebridge::egress::EgressClient;
use filebridge::storage::s3::sigv4::{SigningKey, payload_hash};
use filebridge::storage::{Storage, StorageError, registry};
use secrecy::SecretString;
use serde_json::{Value, json};
use tempfile::NamedTempFile;
use tokio::process::{Child, Command};

pub const REGION: &str = "us-east-1";
pub const BUCKET: &str = "filebridge-test";

/// The IAM calls before signatures are checked: CreateUser, CreateAccessKey and
/// PutUserPolicy for each of the two users.
const UNCHECKED_CALLS: u32 = 6;

/// An IAM policy allowing every S3 action on everything.
pub const ALLOW_ALL_S3: &str =
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#;

const INSTALL_HINT: &str = "run the tests with ./scripts/test: it creates .venv and installs \
     moto[server] from scripts/requirements-test.txt (FILEBRIDGE_TEST_VENV points there)";

/// An IAM user's access key.
#[derive(Clone, Default)]
pub struct AccessKey {
    pub id: String,
    pub secret: String,
}

pub struct Moto {
    pub port: u16,
    pub endpoint: String,
    /// The key of the user `filebridge`, for the storage under test.
    pub access_key_id: String,
    pub secret_access_key: String,
    /// The key of the user `admin` (`s3:*`), for the harness's own calls.
    admin: AccessKey,
    child: Child,
    log: NamedTempFile,
}

fn moto_server() -> PathBuf {
    let venv = std::env::var("FILEBRIDGE_TEST_VENV")
        .unwrap_or_else(|_| panic!("FILEBRIDGE_TEST_VENV is not set; {INSTALL_HINT}"));
    let program = PathBuf::from(venv).join("bin/moto_server");
    assert!(
        program.exists(),
        "{} is missing; {INSTALL_HINT}",
        program.display()
    );
    program
}

/// The text of the first `<tag>` in `xml` (enough for moto's IAM answers).
fn element<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{tag}>"))? + start;
    Some(&xml[start..end])
}

fn form_encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

impl Moto {
    /// Starts moto with an IAM user allowed `s3:*` and an empty bucket [`BUCKET`].
    pub async fn start() -> Moto {
        Self::start_with_policy(ALLOW_ALL_S3).await
    }

    /// Starts moto with an IAM user whose only policy is `policy`, and the bucket.
    pub async fn start_with_policy(policy: &str) -> Moto {
        let program = moto_server();
        let mut last_log = String::new();
        // A port taken between choosing and binding it makes moto exit; try another.
        for _ in 0..3 {
            let port = free_port();
            let log = NamedTempFile::new().expect("a log file for moto");
            let out = log.reopen().expect("moto's log");
            let err = log.reopen().expect("moto's log");
            let child = Command::new(&program)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .env("INITIAL_NO_AUTH_ACTION_COUNT", UNCHECKED_CALLS.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::from(out))
                .stderr(Stdio::from(err))
                .kill_on_drop(true)
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("cannot start {}: {e}; {INSTALL_HINT}", program.display())
                });
            let mut moto = Moto {
                port,
                endpoint: format!("http://127.0.0.1:{port}"),
                access_key_id: String::new(),
                secret_access_key: String::new(),
                admin: AccessKey::default(),
                child,
                log,
            };
            if moto.wait_until_ready().await {
                moto.admin = moto.create_user("admin", ALLOW_ALL_S3).await;
                let key = moto.create_user("filebridge", policy).await;
                (moto.access_key_id, moto.secret_access_key) = (key.id, key.secret);
                moto.create_bucket().await;
                return moto;
            }
            last_log = moto.log();
        }
        panic!("moto did not start; its last log:\n{last_log}");
    }

    /// Polls moto's own API (which spends none of the unchecked calls) until it answers;
    /// false if moto exited or took too long.
    async fn wait_until_ready(&mut self) -> bool {
        let client = crate::helpers::http_client();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while tokio::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            let probe = client
                .get(format!("{}/moto-api/", self.endpoint))
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if probe.is_ok_and(|r| r.status().is_success()) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// What moto logged (one line per request).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// One of the unchecked IAM calls. Unsigned requests carry no service name, so the
    /// `Authorization` header names IAM in its credential scope for moto's routing only.
    async fn iam(&self, form: &str) -> String {
        let response = crate::helpers::http_client()
            .post(format!("{}/", self.endpoint))
            .header(
                "authorization",
                "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20240101/us-east-1/iam/aws4_request, \
                 SignedHeaders=host, Signature=0",
            )
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("{form}&Version=2010-05-08"))
            .send()
            .await
            .expect("an IAM call to moto");
        let status = response.status();
        let text = response.text().await.expect("moto's IAM answer");
        assert!(
            status.is_success(),
            "IAM `{form}`: {status}\n{text}\n{}",
            self.log()
        );
        text
    }

    async fn create_user(&self, name: &str, policy: &str) -> AccessKey {
        self.iam(&format!("Action=CreateUser&UserName={name}"))
            .await;
        let key = self
            .iam(&format!("Action=CreateAccessKey&UserName={name}"))
            .await;
        self.iam(&format!(
            "Action=PutUserPolicy&UserName={name}&PolicyName=test&PolicyDocument={}",
            form_encode(policy)
        ))
        .await;
        AccessKey {
            id: element(&key, "AccessKeyId")
                .expect("AccessKeyId")
                .to_string(),
            secret: element(&key, "SecretAccessKey")
                .expect("SecretAccessKey")
                .to_string(),
        }
    }

    async fn create_bucket(&self) {
        let response = self
            .signed(reqwest::Method::PUT, &format!("/{BUCKET}"), "")
            .await;
        assert!(
            response.status().is_success(),
            "create the bucket: {}\n{}",
            response.status(),
            response.text().await.unwrap_or_default()
        );
    }

    /// A request signed with the administrator's key, for what filebridge itself never does.
    /// `path_and_query` must be canonically encoded already.
    pub async fn signed(
        &self,
        method: reqwest::Method,
        path_and_query: &str,
        body: &str,
    ) -> reqwest::Response {
        let url = url::Url::parse(&format!("{}{path_and_query}", self.endpoint)).expect("URL");
        let key = SigningKey {
            access_key_id: self.admin.id.clone(),
            secret_access_key: SecretString::from(self.admin.secret.clone()),
            region: REGION.into(),
            service: "s3".into(),
        };
        let headers = key
            .sign(
                method.as_str(),
                &url,
                &[],
                &payload_hash(body.as_bytes()),
                time::OffsetDateTime::now_utc(),
            )
            .expect("sign");
        let mut request = crate::helpers::http_client().request(method, url);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request
            .body(body.to_string())
            .send()
            .await
            .expect("a signed request to moto")
    }

    /// The keys of the multipart uploads in progress in the bucket (ListMultipartUploads).
    pub async fn multipart_uploads(&self) -> Vec<String> {
        let response = self
            .signed(reqwest::Method::GET, &format!("/{BUCKET}?uploads="), "")
            .await;
        let status = response.status();
        let text = response.text().await.expect("ListMultipartUploads answer");
        assert!(
            status.is_success(),
            "ListMultipartUploads: {status}\n{text}"
        );
        text.split("<Upload>")
            .skip(1)
            .filter_map(|upload| element(upload, "Key").map(str::to_string))
            .collect()
    }

    /// The connection settings for the bucket, path-style, under `prefix`.
    pub fn settings(&self, prefix: &str) -> Value {
        json!({
            "endpoint": self.endpoint,
            "region": REGION,
            "bucket": BUCKET,
            "prefix": prefix,
            "path_style": true,
            "access_key_id": self.access_key_id,
        })
    }

    pub fn secrets(&self, secret: &str) -> HashMap<String, SecretString> {
        HashMap::from([(
            "secret_access_key".to_string(),
            SecretString::from(secret.to_string()),
        )])
    }

    /// The storage as filebridge opens it, through a fresh egress client (returned too, for
    /// its report).
    pub fn open_with(
        &self,
        settings: &Value,
        secret: &str,
    ) -> Result<(Arc<dyn Storage>, EgressClient), StorageError> {
        let egress = EgressClient::new(
            &EgressSettings {
                allow: vec![],
                proxy: None,
                ca_file: None,
            },
            None,
        )
        .expect("egress client");
        registry::open("s3", settings, &self.secrets(secret), &egress).map(|s| (s, egress))
    }

    /// The storage under `prefix` with the right key.
    pub fn open(&self, prefix: &str) -> Arc<dyn Storage> {
        self.open_with(&self.settings(prefix), &self.secret_access_key)
            .expect("open the s3 storage")
            .0
    }

    /// Kills moto (SIGKILL) and waits until it is gone.
    pub async fn kill(&mut self) {
        self.child.start_kill().expect("kill moto");
        self.child.wait().await.expect("moto exits");
    }

    /// Freezes (`true`) or thaws moto with SIGSTOP / SIGCONT: a server that accepts
    /// connections and never answers.
    pub fn freeze(&self, frozen: bool) {
        let pid = self.child.id().expect("moto is running");
        let signal = if frozen { "-STOP" } else { "-CONT" };
        let status = std::process::Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} {pid}");
    }
}
