//! The systemd unit (packaging/systemd/) checked by systemd's own tools, and the real binary
//! speaking the notify protocol (systemd/notify.rs) and writing nothing on disk
//! (systemd/writes.rs).

mod notify;
mod writes;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

const BIN: &str = env!("CARGO_BIN_EXE_filebridge");
const UNIT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/packaging/systemd/filebridge.service"
);
const SYSUSERS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/packaging/systemd/filebridge.sysusers"
);

/// Runs a tool and returns (success, stdout, stderr); a missing tool fails the test saying
/// where it comes from.
fn tool(program: &str, args: &[&str], cwd: &Path) -> (bool, String, String) {
    let output = Command::new(program)
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {program} ({e}); it comes with Debian's systemd package")
        });
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The unit's `Key=value` settings, in order (continuation lines are not used in it).
fn unit_settings() -> Vec<(String, String)> {
    std::fs::read_to_string(UNIT)
        .expect("read the unit")
        .lines()
        .filter(|line| !line.starts_with('#') && !line.starts_with('['))
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

fn setting(name: &str) -> String {
    unit_settings()
        .into_iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value)
        .unwrap_or_else(|| panic!("the unit sets no {name}="))
}

#[test]
fn unit_exposure_is_at_most_2() {
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("filebridge.service");
    std::fs::copy(UNIT, &unit).unwrap();
    let (_, stdout, stderr) = tool(
        "systemd-analyze",
        &["security", "--offline=true", unit.to_str().unwrap()],
        dir.path(),
    );
    let exposure: f64 = stdout
        .lines()
        .find_map(|line| line.split_once("Overall exposure level for filebridge.service: "))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("no overall exposure in:\n{stdout}{stderr}"));
    assert!(
        exposure <= 2.0,
        "exposure {exposure} is above 2.0; the ✗ lines:\n{}",
        stdout
            .lines()
            .filter(|l| l.starts_with('✗'))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Settings the analysis does not weigh but the daemon relies on.
    for (key, value) in [
        ("Type", "notify"),
        ("User", "filebridge"),
        ("ProtectSystem", "strict"),
        (
            "ExecStart",
            "/usr/bin/filebridge serve --config /etc/filebridge/filebridge.toml",
        ),
    ] {
        assert_eq!(setting(key), value, "{key}=");
    }
}

#[test]
fn unit_verifies_without_warnings_and_its_command_line_parses() {
    let dir = tempfile::tempdir().unwrap();
    let unit = std::fs::read_to_string(UNIT).unwrap().replace(
        "ExecStart=/usr/bin/filebridge ",
        &format!("ExecStart={BIN} "),
    );
    let path = dir.path().join("filebridge.service");
    std::fs::write(&path, unit).unwrap();
    let (ok, stdout, stderr) = tool(
        "systemd-analyze",
        &["verify", path.to_str().unwrap()],
        dir.path(),
    );
    assert!(
        ok && stdout.trim().is_empty() && stderr.trim().is_empty(),
        "systemd-analyze verify:\n{stdout}{stderr}"
    );

    // The binary accepts ExecStart's arguments (clap prints the help and exits 0 only when
    // the subcommand and flags before --help exist).
    let exec_start = setting("ExecStart");
    let mut args: Vec<&str> = exec_start.split_whitespace().skip(1).collect();
    args.push("--help");
    let status = Command::new(BIN)
        .args(&args)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "filebridge {}", args.join(" "));

    // Stopping waits for the requests in flight and then the jobs in hand, each up to
    // server.shutdown_grace: systemd must not kill the daemon before.
    let settings = filebridge::config::Settings::load(&Default::default()).unwrap();
    let grace = settings.server.shutdown_grace;
    let stop: Duration = humantime::parse_duration(&setting("TimeoutStopSec")).unwrap();
    assert!(
        stop > grace * 2,
        "TimeoutStopSec {stop:?} vs grace {grace:?}"
    );
    let watchdog = humantime::parse_duration(&setting("WatchdogSec")).unwrap();
    assert!(watchdog >= Duration::from_secs(10), "{watchdog:?}");
}

#[test]
fn sysusers_creates_a_locked_system_user() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("etc")).unwrap();
    for file in ["passwd", "group", "shadow", "gshadow"] {
        std::fs::write(root.path().join("etc").join(file), "").unwrap();
    }
    let (ok, stdout, stderr) = tool(
        "systemd-sysusers",
        &[&format!("--root={}", root.path().display()), SYSUSERS],
        root.path(),
    );
    assert!(ok, "systemd-sysusers:\n{stdout}{stderr}");
    let passwd = std::fs::read_to_string(root.path().join("etc/passwd")).unwrap();
    let fields: Vec<&str> = passwd
        .lines()
        .find(|l| l.starts_with("filebridge:"))
        .unwrap_or_else(|| panic!("no filebridge user in:\n{passwd}"))
        .split(':')
        .collect();
    let uid: u32 = fields[2].parse().unwrap();
    assert!(uid > 0 && uid < 1000, "a system uid: {passwd}");
    assert_eq!(fields[6], "/usr/sbin/nologin", "{passwd}");
    let group = std::fs::read_to_string(root.path().join("etc/group")).unwrap();
    assert!(group.starts_with("filebridge:"), "{group}");
    let shadow = std::fs::read_to_string(root.path().join("etc/shadow")).unwrap();
    assert!(
        shadow.starts_with("filebridge:!"),
        "locked password: {shadow}"
    );
}

/// A `filebridge serve` started the way systemd would, its output kept for failure messages.
pub(super) struct Daemon {
    pub child: tokio::process::Child,
    output: Arc<Mutex<Vec<String>>>,
}

impl Daemon {
    /// `command` is the program with its arguments; only `env` reaches it.
    pub fn spawn(mut command: tokio::process::Command, env: &HashMap<String, String>) -> Self {
        let mut child = command
            .env_clear()
            .envs(env)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn filebridge");
        let output = Arc::new(Mutex::new(Vec::new()));
        let streams: [Box<dyn tokio::io::AsyncRead + Unpin + Send>; 2] = [
            Box::new(child.stdout.take().unwrap()),
            Box::new(child.stderr.take().unwrap()),
        ];
        for stream in streams {
            let output = Arc::clone(&output);
            tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    output.lock().unwrap().push(line);
                }
            });
        }
        Self { child, output }
    }

    pub fn output(&self) -> String {
        self.output.lock().unwrap().join("\n")
    }

    /// What systemd does to stop the service; the exit must be clean and within the grace.
    pub async fn terminate(mut self) -> String {
        let pid = self.child.id().expect("still running").to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(status.success());
        let exit = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("no exit 30 s after SIGTERM:\n{}", self.output()))
            .unwrap();
        assert_eq!(exit.code(), Some(0), "{}", self.output());
        self.output()
    }
}

/// The environment of a daemon under test: the master key as a systemd credential in
/// `credentials` (created here), the rest as FILEBRIDGE__ variables, nothing from the
/// developer's shell.
pub(super) fn daemon_env(
    database_url: &str,
    jira_url: &str,
    credentials: &Path,
) -> HashMap<String, String> {
    std::fs::create_dir_all(credentials).unwrap();
    std::fs::write(
        credentials.join("master.key"),
        crate::helpers::random_master_key(),
    )
    .unwrap();
    let credentials: PathBuf = credentials.to_path_buf();
    [
        ("FILEBRIDGE__SERVER__LISTEN", "127.0.0.1:0"),
        (
            "FILEBRIDGE__SERVER__PUBLIC_URL",
            "https://jira.example.test/filebridge",
        ),
        ("FILEBRIDGE__SERVER__SHUTDOWN_GRACE", "10s"),
        ("FILEBRIDGE__DATABASE__URL", database_url),
        ("FILEBRIDGE__DATABASE__MAX_CONNECTIONS", "4"),
        ("FILEBRIDGE__DATABASE__ACQUIRE_TIMEOUT", "1s"),
        ("FILEBRIDGE__JIRA__BASE_URL", jira_url),
        ("FILEBRIDGE__JOBS__WORKERS", "1"),
        ("FILEBRIDGE__RECONCILE__INTERVAL", "0"),
        ("FILEBRIDGE__SECURITY__MASTER_KEY_FILE", "master.key"),
        ("CREDENTIALS_DIRECTORY", credentials.to_str().unwrap()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}
