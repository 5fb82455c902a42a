//! The notify protocol for real: the test plays systemd's side of NOTIFY_SOCKET (a Unix
//! datagram socket) and WATCHDOG_USEC for the real binary.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use fake_jira::FakeJira;
use tokio::net::UnixDatagram;
use tokio::time::Instant;

use super::{BIN, Daemon, daemon_env};
use crate::helpers::{OwnCluster, cluster_url, create_database, http_client};

/// Half of it is the ping period the daemon must keep.
const WATCHDOG_USEC: u64 = 400_000;

/// systemd's end of NOTIFY_SOCKET: every datagram received, with its arrival time.
struct Manager {
    _dir: tempfile::TempDir,
    path: String,
    received: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl Manager {
    fn bind() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&received);
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = socket.recv(&mut buf).await {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                sink.lock().unwrap().push((Instant::now(), text));
            }
        });
        Self {
            path: path.to_str().unwrap().to_string(),
            _dir: dir,
            received,
        }
    }

    /// Datagrams that carry `line` (one of their newline-separated assignments).
    fn with_line(&self, line: &str) -> Vec<(Instant, String)> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, text)| text.lines().any(|l| l == line))
            .cloned()
            .collect()
    }

    fn statuses(&self) -> Vec<String> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .flat_map(|(_, text)| text.lines().map(str::to_string).collect::<Vec<_>>())
            .filter_map(|l| l.strip_prefix("STATUS=").map(str::to_string))
            .collect()
    }

    fn all(&self) -> String {
        let received = self.received.lock().unwrap();
        received
            .iter()
            .map(|(_, t)| t.trim_end().replace('\n', " | "))
            .collect::<Vec<_>>()
            .join("\n")
    }

    async fn wait_for(&self, what: &str, limit: Duration, done: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + limit;
        while !done(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; received:\n{}",
                self.all()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The address in "listening on ADDR;" of a STATUS line.
fn address_in(status: &str) -> Option<String> {
    let rest = status.split("listening on ").nth(1)?;
    Some(rest.split(';').next()?.trim().to_string())
}

fn serve(
    manager: &Manager,
    database_url: &str,
    jira: &FakeJira,
    credentials: &std::path::Path,
    args: &[&str],
) -> Daemon {
    let mut env = daemon_env(database_url, &jira.base_url, credentials);
    env.insert("NOTIFY_SOCKET".into(), manager.path.clone());
    env.insert("WATCHDOG_USEC".into(), WATCHDOG_USEC.to_string());
    let mut command = tokio::process::Command::new(BIN);
    command.arg("serve").args(args);
    Daemon::spawn(command, &env)
}

#[tokio::test]
async fn ready_after_the_listener_answers_watchdog_pings_and_stopping_on_sigterm() {
    let manager = Manager::bind();
    let jira = FakeJira::start().await;
    let database_url = create_database(&cluster_url()).await;
    let credentials = tempfile::tempdir().unwrap();
    let daemon = serve(&manager, &database_url, &jira, credentials.path(), &[]);

    manager
        .wait_for("READY=1", Duration::from_secs(60), |m| {
            !m.with_line("READY=1").is_empty()
        })
        .await;
    let (_, ready) = manager.with_line("READY=1").remove(0);
    let status = ready
        .lines()
        .find_map(|l| l.strip_prefix("STATUS="))
        .unwrap_or_else(|| panic!("READY=1 without STATUS: {ready}"));
    let address = address_in(status).unwrap_or_else(|| panic!("no address in {status}"));
    // READY=1 is a promise: the first request after it is served, and the schema is current
    // (serve applied the migrations).
    let client = http_client();
    for path in ["/healthz", "/readyz"] {
        let response = client
            .get(format!("http://{address}/filebridge{path}"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{path} right after READY=1: {e}"));
        assert_eq!(response.status(), 200, "{path} right after READY=1");
    }
    assert!(status.contains("database schema"), "{status}");
    assert!(
        manager.statuses().iter().any(|s| s.contains("migrations")),
        "a STATUS before READY says what start-up does: {:?}",
        manager.statuses()
    );

    // Pings keep coming, spaced by about half WATCHDOG_USEC (not a burst).
    let before = manager.with_line("WATCHDOG=1").len();
    manager
        .wait_for("3 more WATCHDOG=1", Duration::from_secs(10), |m| {
            m.with_line("WATCHDOG=1").len() >= before + 3
        })
        .await;
    let pings = manager.with_line("WATCHDOG=1");
    let spread = pings[before + 2].0 - pings[before].0;
    assert!(
        spread >= Duration::from_micros(WATCHDOG_USEC / 2),
        "pings {spread:?} apart for two periods"
    );

    let output = daemon.terminate().await;
    let stopping = manager.with_line("STOPPING=1");
    assert_eq!(stopping.len(), 1, "{}\n{output}", manager.all());
    assert_eq!(manager.with_line("READY=1").len(), 1, "{}", manager.all());
}

#[tokio::test]
async fn no_ready_while_the_database_is_away_but_the_watchdog_is_fed() {
    let cluster = OwnCluster::start(None);
    cluster.pause();
    let manager = Manager::bind();
    let jira = FakeJira::start().await;
    let credentials = tempfile::tempdir().unwrap();
    let daemon = serve(
        &manager,
        &cluster.url,
        &jira,
        credentials.path(),
        &["--no-migrate"],
    );

    // Bounded negative wait: five watchdog periods and a retried database check.
    manager
        .wait_for(
            "5 WATCHDOG=1 and a STATUS about the database",
            Duration::from_secs(30),
            |m| {
                m.with_line("WATCHDOG=1").len() >= 5
                    && m.statuses()
                        .iter()
                        .any(|s| s.contains("waiting for the database"))
            },
        )
        .await;
    assert!(
        manager.with_line("READY=1").is_empty(),
        "READY=1 without a database:\n{}",
        manager.all()
    );
    let statuses = manager.statuses();
    let waiting = statuses
        .iter()
        .find(|s| s.contains("waiting for the database"))
        .unwrap();
    let address = address_in(waiting).unwrap_or_else(|| panic!("no address in {waiting}"));
    // The process is alive and says why it is not ready.
    let client = http_client();
    let url = |path: &str| format!("http://{address}/filebridge{path}");
    assert_eq!(
        client.get(url("/healthz")).send().await.unwrap().status(),
        200
    );
    assert_eq!(
        client.get(url("/readyz")).send().await.unwrap().status(),
        503
    );

    cluster.resume();
    manager
        .wait_for(
            "READY=1 once the database is back",
            Duration::from_secs(30),
            |m| !m.with_line("READY=1").is_empty(),
        )
        .await;
    let (_, ready) = manager.with_line("READY=1").remove(0);
    assert!(ready.contains("migrations pending"), "{ready}");
    daemon.terminate().await;
    assert_eq!(
        manager.with_line("STOPPING=1").len(),
        1,
        "{}",
        manager.all()
    );
}

#[tokio::test]
async fn nothing_is_sent_and_nothing_breaks_without_notify_socket() {
    let jira = FakeJira::start().await;
    let database_url = create_database(&cluster_url()).await;
    let credentials = tempfile::tempdir().unwrap();
    // WATCHDOG_USEC alone (no NOTIFY_SOCKET) must not make the daemon fail or complain.
    let mut env = daemon_env(&database_url, &jira.base_url, credentials.path());
    env.insert("WATCHDOG_USEC".into(), WATCHDOG_USEC.to_string());
    let mut command = tokio::process::Command::new(BIN);
    command.arg("serve");
    let daemon = Daemon::spawn(command, &env);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !daemon.output().contains("\"listening\"") {
        assert!(
            Instant::now() < deadline,
            "not listening:\n{}",
            daemon.output()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let output = daemon.terminate().await;
    assert!(!output.contains("notify"), "{output}");
}

/// systemd may stop the service while it is still starting (applying migrations, say): the
/// stop must be the graceful one, not the signal's default action killing the process.
#[tokio::test]
async fn a_stop_during_start_up_is_a_clean_exit() {
    let jira = FakeJira::start().await;
    let database_url = create_database(&cluster_url()).await;
    let credentials = tempfile::tempdir().unwrap();
    let env = daemon_env(&database_url, &jira.base_url, credentials.path());
    let mut command = tokio::process::Command::new(BIN);
    command.arg("serve");
    let daemon = Daemon::spawn(command, &env);
    // The first log line comes after the stop handlers are installed and before the server
    // runs (the migrations are checked first).
    let deadline = Instant::now() + Duration::from_secs(60);
    while daemon.output().is_empty() {
        assert!(Instant::now() < deadline, "no output");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // terminate() asserts exit status 0, not death by SIGTERM.
    daemon.terminate().await;
}
