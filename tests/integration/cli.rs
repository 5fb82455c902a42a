//! The real `filebridge` binary: exit codes, messages, logs and signals.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fake_jira::FakeJira;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::helpers::{
    cluster_url, cookie_value, create_database, http_client, pretend_newer_schema,
    random_master_key, session_cookie, wait_until_refused,
};

const BIN: &str = env!("CARGO_BIN_EXE_filebridge");

fn command(env: &HashMap<String, String>) -> Command {
    let mut command = Command::new(BIN);
    // Only what the test sets: no FILEBRIDGE__* or RUST_LOG from the developer's shell.
    command.env_clear().envs(env).kill_on_drop(true);
    command
}

async fn run(env: &HashMap<String, String>, args: &[&str]) -> (i32, String, String) {
    let output = command(env)
        .args(args)
        .output()
        .await
        .expect("run filebridge");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

struct World {
    jira: FakeJira,
    env: HashMap<String, String>,
    _dir: tempfile::TempDir,
    master_key: String,
}

async fn world() -> World {
    let jira = FakeJira::start().await;
    jira.add_user("svc", "filebridge service");
    jira.add_token("svc", "svc-token-secret");
    let database_url = create_database(&cluster_url()).await;
    let dir = tempfile::tempdir().unwrap();
    let master_key = random_master_key();
    std::fs::write(dir.path().join("master.key"), &master_key).unwrap();
    std::fs::write(dir.path().join("jira.token"), "svc-token-secret\n").unwrap();
    let mut env = HashMap::new();
    for (key, value) in [
        ("FILEBRIDGE__SERVER__LISTEN", "127.0.0.1:0".to_string()),
        (
            "FILEBRIDGE__SERVER__PUBLIC_URL",
            "https://jira.example.test/filebridge".into(),
        ),
        ("FILEBRIDGE__SERVER__SHUTDOWN_GRACE", "10s".into()),
        ("FILEBRIDGE__DATABASE__URL", database_url),
        ("FILEBRIDGE__JIRA__BASE_URL", jira.base_url.clone()),
        ("FILEBRIDGE__JIRA__SERVICE_TOKEN_FILE", "jira.token".into()),
        ("FILEBRIDGE__SECURITY__MASTER_KEY_FILE", "master.key".into()),
        ("CREDENTIALS_DIRECTORY", dir.path().display().to_string()),
        ("PATH", std::env::var("PATH").unwrap_or_default()),
    ] {
        env.insert(key.to_string(), value);
    }
    World {
        jira,
        env,
        _dir: dir,
        master_key,
    }
}

/// A running `filebridge serve`, its output collected line by line.
struct Daemon {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    port: u16,
}

impl Daemon {
    async fn start(env: &HashMap<String, String>) -> Daemon {
        let mut child = command(env)
            .arg("serve")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn filebridge serve");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (port_tx, mut port_rx) = tokio::sync::mpsc::channel(1);
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        for (stream, port_tx) in [
            (
                Box::new(stdout) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
                Some(port_tx),
            ),
            (Box::new(stderr), None),
        ] {
            let lines = Arc::clone(&lines);
            tokio::spawn(async move {
                let mut reader = BufReader::new(stream).lines();
                while let Ok(Some(line)) = reader.next_line().await {
                    if let (Some(tx), Ok(json)) =
                        (&port_tx, serde_json::from_str::<serde_json::Value>(&line))
                        && json["message"] == "listening"
                    {
                        let address: std::net::SocketAddr =
                            json["address"].as_str().unwrap().parse().unwrap();
                        let _ = tx.send(address.port()).await;
                    }
                    lines.lock().unwrap().push(line);
                }
            });
        }
        let port = tokio::time::timeout(Duration::from_secs(30), port_rx.recv())
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| {
                panic!(
                    "filebridge did not start listening: {:?}",
                    lines.lock().unwrap()
                )
            });
        Daemon { child, lines, port }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/filebridge{path}", self.port)
    }

    fn output(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn version_names_the_release_and_schema() {
    let (code, stdout, _) = run(&HashMap::new(), &["version"]).await;
    assert_eq!(code, 0);
    assert!(
        stdout.starts_with(&format!("filebridge {}", env!("CARGO_PKG_VERSION"))),
        "{stdout}"
    );
    assert!(stdout.contains("schema"), "{stdout}");
}

#[tokio::test]
async fn configuration_errors_exit_1_naming_the_key_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("filebridge.toml");
    std::fs::write(
        &file,
        "[server]\nlisten = \"127.0.0.1:0\"\nbase_pth = \"/x\"\n",
    )
    .unwrap();
    let (code, _, stderr) = run(
        &HashMap::new(),
        &["--config", file.to_str().unwrap(), "serve"],
    )
    .await;
    assert_eq!(code, 1);
    assert!(
        stderr.contains("server.base_pth") && stderr.contains(file.to_str().unwrap()),
        "{stderr}"
    );

    let (code, _, stderr) = run(
        &HashMap::new(),
        &["--config", "/nonexistent/fb.toml", "doctor"],
    )
    .await;
    assert_eq!(code, 1);
    assert!(stderr.contains("/nonexistent/fb.toml"), "{stderr}");

    let env = HashMap::from([("FILEBRIDGE__LOG__FORMAT".to_string(), "xml".to_string())]);
    let (code, _, stderr) = run(&env, &["migrate"]).await;
    assert_eq!(code, 1);
    assert!(
        stderr.contains("log.format") && stderr.contains("FILEBRIDGE__LOG__FORMAT"),
        "{stderr}"
    );

    // Flags override and are named too.
    let (code, _, stderr) = run(&HashMap::new(), &["serve", "--listen", "nowhere"]).await;
    assert_eq!(code, 1);
    assert!(stderr.contains("--listen"), "{stderr}");

    // serve without the things it needs says which.
    let (code, _, stderr) = run(&HashMap::new(), &["serve", "--log-format", "pretty"]).await;
    assert_eq!(code, 1);
    assert!(stderr.contains("jira.base_url"), "{stderr}");
}

#[tokio::test]
async fn serve_logs_json_without_secrets_and_stops_gracefully_on_sigterm() {
    let w = world().await;
    w.jira.add_user("alice", "Alice");
    w.jira.add_token("alice", "alice-pat-secret");
    w.jira.add_session("alice", "alice-jsession-secret");
    let daemon = Daemon::start(&w.env).await;
    let client = http_client();

    let response = client
        .get(daemon.url("/api/v1/me"))
        .bearer_auth("alice-pat-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let session = cookie_value(&session_cookie(&response).expect("session cookie"));
    for cookie in [
        "JSESSIONID=alice-jsession-secret".to_string(),
        format!("filebridge_session={session}"),
    ] {
        let response = client
            .get(daemon.url("/api/v1/me"))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let response = client
        .get(daemon.url("/api/v1/me"))
        .bearer_auth("wrong-token-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let response = client
        .get(daemon.url("/api/v1/me"))
        .header("cookie", "filebridge_session=forged.token.secret")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);

    // A request in flight when SIGTERM arrives still gets its answer.
    w.jira.add_token("alice", "second-pat-secret");
    let hold = w.jira.hold();
    let in_flight = tokio::spawn(
        client
            .get(daemon.url("/api/v1/me"))
            .bearer_auth("second-pat-secret")
            .send(),
    );
    w.jira.wait_for_waiting(1).await;
    let pid = daemon.child.id().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    wait_until_refused(daemon.port).await;
    hold.release();
    assert_eq!(in_flight.await.unwrap().unwrap().status(), 200);
    let mut daemon = daemon;
    let exit = tokio::time::timeout(Duration::from_secs(20), daemon.child.wait())
        .await
        .expect("exits within the grace period")
        .unwrap();
    assert_eq!(exit.code(), Some(0), "{:?}", daemon.output());

    let output = daemon.output();
    let mut request_lines = 0;
    for line in &output {
        let json: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|_| panic!("not a JSON log line: {line}"));
        if json["message"] == "request finished" {
            request_lines += 1;
            assert!(json["span"]["request_id"].is_string(), "{line}");
            assert!(json["status"].is_u64(), "{line}");
        }
    }
    assert!(request_lines >= 6, "one line per request: {output:?}");
    let all = output.join("\n");
    for secret in [
        "alice-pat-secret",
        "second-pat-secret",
        "wrong-token-secret",
        "alice-jsession-secret",
        "forged.token.secret",
        "svc-token-secret",
        session.as_str(),
        w.master_key.as_str(),
    ] {
        assert!(!all.contains(secret), "a log line carries {secret}: {all}");
    }
}

#[tokio::test]
async fn doctor_reports_every_check_and_fails_when_one_fails() {
    let w = world().await;
    let (code, stdout, stderr) = run(&w.env, &["doctor"]).await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    for line in [
        "ok    configuration",
        "ok    master key",
        "ok    jira",
        "ok    service token",
    ] {
        assert!(stdout.contains(line), "{line} missing:\n{stdout}");
    }
    // The database is reachable but not migrated yet: a warning, not a failure.
    assert!(
        stdout.contains("WARN  database") && stdout.contains("migrations pending"),
        "{stdout}"
    );
    assert!(stdout.contains("ready to serve"));

    let (code, stdout, _) = run(&w.env, &["migrate"]).await;
    assert_eq!(code, 0, "{stdout}");
    let (_, stdout, _) = run(&w.env, &["doctor"]).await;
    assert!(
        stdout.contains("ok    database") && stdout.contains("schema current"),
        "{stdout}"
    );

    w.jira.grant_global("svc", "SYSTEM_ADMIN");
    let (code, stdout, _) = run(&w.env, &["doctor"]).await;
    assert_eq!(code, 0);
    assert!(stdout.contains("WARN  least privilege"), "{stdout}");

    w.jira.revoke_credential("svc-token-secret");
    let mut env = w.env.clone();
    env.insert(
        "FILEBRIDGE__DATABASE__URL".into(),
        "postgres://nobody@127.0.0.1:1/none".into(),
    );
    env.insert("FILEBRIDGE__DATABASE__ACQUIRE_TIMEOUT".into(), "1s".into());
    let (code, stdout, _) = run(&env, &["doctor"]).await;
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("FAIL  database"), "{stdout}");
    assert!(
        stdout.contains("FAIL  service token") && stdout.contains("rejected"),
        "{stdout}"
    );
    assert!(stdout.contains("NOT ready"), "{stdout}");
    assert!(!stdout.contains("svc-token-secret"));
}

#[tokio::test]
async fn serve_refuses_a_database_newer_than_the_binary() {
    let w = world().await;
    let (code, _, _) = run(&w.env, &["migrate"]).await;
    assert_eq!(code, 0);
    let pool = sqlx::PgPool::connect(&w.env["FILEBRIDGE__DATABASE__URL"])
        .await
        .unwrap();
    pretend_newer_schema(&pool).await;
    for args in [&["serve"][..], &["serve", "--no-migrate"], &["migrate"]] {
        let (code, stdout, stderr) = run(&w.env, args).await;
        assert_eq!(code, 1, "{args:?}");
        assert!(
            stderr.contains("newer than this filebridge binary"),
            "{args:?}: {stdout}{stderr}"
        );
    }
}

#[tokio::test]
async fn audit_verify_export_and_purge_work_from_the_command_line() {
    let w = world().await;
    assert_eq!(run(&w.env, &["migrate"]).await.0, 0);
    let pool = sqlx::PgPool::connect(&w.env["FILEBRIDGE__DATABASE__URL"])
        .await
        .unwrap();
    for action in ["file.upload", "file.download"] {
        let event = filebridge::audit::AuditEvent::new(
            filebridge::audit::Actor {
                key: "JIRAUSER1".into(),
                name: "alice".into(),
            },
            action,
            filebridge::audit::Outcome::Success,
        );
        filebridge::audit::record_alone(&pool, &event)
            .await
            .unwrap();
    }
    let (code, stdout, _) = run(&w.env, &["audit", "verify"]).await;
    assert_eq!(code, 0);
    assert!(stdout.contains("intact: 2 events"), "{stdout}");

    let (code, stdout, stderr) = run(&w.env, &["audit", "export", "--format", "csv"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
    assert!(stdout.contains("file.upload") && stderr.contains("2 audit events exported"));
    let (code, stdout, _) = run(
        &w.env,
        &[
            "audit",
            "export",
            "--format",
            "jsonl",
            "--since",
            "2999-01-01T00:00:00Z",
        ],
    )
    .await;
    assert_eq!((code, stdout.as_str()), (0, ""));
    let (code, _, stderr) = run(
        &w.env,
        &["audit", "export", "--format", "csv", "--since", "soon"],
    )
    .await;
    assert_eq!(code, 1);
    assert!(stderr.contains("--since"), "{stderr}");

    sqlx::query("UPDATE audit_events SET actor_name = 'mallory' WHERE seq = 1")
        .execute(&pool)
        .await
        .unwrap();
    let (code, _, stderr) = run(&w.env, &["audit", "verify"]).await;
    assert_eq!(code, 1);
    assert!(
        stderr.contains("BROKEN") && stderr.contains("row 1"),
        "{stderr}"
    );

    let (code, _, stderr) = run(&w.env, &["purge"]).await;
    assert_eq!(code, 1, "purge needs --yes");
    assert!(stderr.contains("--yes"));
    let (code, _, stderr) = run(&w.env, &["purge", "--yes"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("audit_events"), "{stderr}");
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(tables, 0);
    // Nor a function (the configuration-change trigger's).
    let functions: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
          WHERE n.nspname = current_schema() AND p.proname LIKE 'filebridge%'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(functions, 0);
}

#[tokio::test]
async fn keys_rotate_re_encrypts_secrets_under_the_new_key() {
    let w = world().await;
    w.jira.add_user("root", "Root");
    w.jira.add_token("root", "root-pat");
    w.jira.grant_global("root", "ADMINISTER");
    let mut daemon = Daemon::start(&w.env).await;
    let created: serde_json::Value = http_client()
        .post(daemon.url("/api/v1/admin/connections"))
        .bearer_auth("root-pat")
        .json(&serde_json::json!({"name": "nas", "kind": "webdav",
            "settings": {"url": "https://nas.example.test/dav/", "username": "svc"},
            "secrets": {"password": "pw-to-rotate"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id: uuid::Uuid = created["id"].as_str().expect("created").parse().unwrap();
    daemon.child.kill().await.unwrap();

    let new_key = random_master_key();
    let dir = tempfile::tempdir().unwrap();
    let new_key_file = dir.path().join("new.key");
    std::fs::write(&new_key_file, &new_key).unwrap();
    let (code, _, stderr) = run(
        &w.env,
        &[
            "keys",
            "rotate",
            "--new-key-file",
            new_key_file.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("1 secrets re-encrypted"), "{stderr}");

    let pool = sqlx::PgPool::connect(&w.env["FILEBRIDGE__DATABASE__URL"])
        .await
        .unwrap();
    let key = |text: &str| filebridge::config::MasterKey::from_base64(text).unwrap();
    let new_cipher = filebridge::secrets::SecretCipher::new(&key(&new_key));
    let (_, _, secrets) = filebridge::connections::load_for_use(&pool, &new_cipher, id)
        .await
        .unwrap();
    use secrecy::ExposeSecret;
    assert_eq!(secrets["password"].expose_secret(), "pw-to-rotate");
    let old_cipher = filebridge::secrets::SecretCipher::new(&key(&w.master_key));
    assert!(
        filebridge::connections::load_for_use(&pool, &old_cipher, id)
            .await
            .is_err()
    );
    let rotations: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_events WHERE action = 'keys.rotate'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(rotations, 1);

    // A key file that is not a key changes nothing.
    std::fs::write(&new_key_file, "not a key").unwrap();
    let (code, _, stderr) = run(
        &w.env,
        &[
            "keys",
            "rotate",
            "--new-key-file",
            new_key_file.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(code, 1);
    assert!(stderr.contains("32 random bytes"), "{stderr}");
}

#[tokio::test]
async fn even_debug_logs_carry_no_credentials() {
    let mut w = world().await;
    w.jira.add_user("alice", "Alice");
    w.jira.add_token("alice", "alice-debug-pat-secret");
    w.jira.add_session("alice", "alice-debug-jsession-secret");
    // RUST_LOG replaces the built-in quieting of dependencies: every crate logs at debug.
    w.env.insert("RUST_LOG".into(), "debug".into());
    let mut daemon = Daemon::start(&w.env).await;
    let client = http_client();
    let login = client
        .get(daemon.url("/api/v1/me"))
        .bearer_auth("alice-debug-pat-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let session = format!(
        "filebridge_session={}",
        cookie_value(&session_cookie(&login).expect("session cookie"))
    );
    for cookie in [
        "JSESSIONID=alice-debug-jsession-secret".to_string(),
        session.clone(),
    ] {
        let response = client
            .get(daemon.url("/api/v1/me"))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    daemon.child.kill().await.unwrap();
    let _ = daemon.child.wait().await;
    let output = daemon.output();
    assert!(output.len() > 10, "debug logging is on: {output:?}");
    let all = output.join("\n");
    let token = session.trim_start_matches("filebridge_session=");
    for secret in [
        "alice-debug-pat-secret",
        "alice-debug-jsession-secret",
        token,
        w.master_key.as_str(),
        "svc-token-secret",
    ] {
        assert!(!all.contains(secret), "a debug log line carries {secret}");
    }
}

#[tokio::test]
async fn jira_register_webhook_creates_then_updates_one_webhook() {
    let mut w = world().await;
    assert_eq!(run(&w.env, &["migrate"]).await.0, 0);
    w.jira.add_user("admin", "Jira admin");
    w.jira.add_token("admin", "admin-token-secret");
    w.jira.grant_global("admin", "ADMINISTER");
    std::fs::write(w._dir.path().join("admin.token"), "admin-token-secret\n").unwrap();
    let admin_token = w._dir.path().join("admin.token").display().to_string();
    let args = [
        "jira",
        "register-webhook",
        "--admin-token-file",
        admin_token.as_str(),
    ];

    // Jira 10 signs deliveries: without a secret there is nothing to sign with.
    let (code, _, stderr) = run(&w.env, &args).await;
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("jira.webhook_secret"), "{stderr}");
    assert!(w.jira.webhooks().is_empty());

    w.env.insert(
        "FILEBRIDGE__JIRA__WEBHOOK_SECRET".into(),
        "cli-webhook-secret-0123456789".into(),
    );
    w.env.insert(
        "FILEBRIDGE__JIRA__WEBHOOK_URL".into(),
        "https://filebridge.internal.test/filebridge/hooks/jira".into(),
    );
    // The service user is no Jira administrator, so Jira refuses it.
    let (code, _, stderr) = run(&w.env, &["jira", "register-webhook"]).await;
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("administrator"), "{stderr}");

    // The report goes to standard error, like every operator command's.
    let (code, _, stderr) = run(&w.env, &args).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("created"), "{stderr}");
    let (code, _, stderr) = run(&w.env, &args).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("updated"), "{stderr}");
    let hooks = w.jira.webhooks();
    assert_eq!(hooks.len(), 1, "running it twice leaves one webhook");
    assert_eq!(
        hooks[0].url,
        "https://filebridge.internal.test/filebridge/hooks/jira"
    );
    assert_eq!(
        hooks[0].secret.as_deref(),
        Some("cli-webhook-secret-0123456789")
    );
    assert!(!stderr.contains("cli-webhook-secret") && !stderr.contains("admin-token-secret"));
}
