//! The service as its installed unit runs it, without systemd as PID 1: ExecStart's command
//! line as User= (runuser), LoadCredential= emulated by a private directory, and systemd's
//! end of the notify protocol.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tempfile::TempDir;
use tokio::net::UnixDatagram;
use tokio::process::{Child, Command};
use tokio::time::Instant;

use super::guide::{PATH, WAIT};
use super::ok;

const UNIT: &str = "/usr/lib/systemd/system/filebridge.service";

/// The installed unit's `Key=value` (the only such line, comments aside).
fn unit_setting(unit: &str, key: &str) -> String {
    let values: Vec<&str> = unit
        .lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .collect();
    assert_eq!(values.len(), 1, "{UNIT}: {key}= {values:?}");
    values[0].to_string()
}

/// systemd's side of the notify protocol: a datagram socket the service may write to.
struct Notify {
    _dir: TempDir,
    path: PathBuf,
    socket: UnixDatagram,
    received: Vec<String>,
}

impl Notify {
    fn bind() -> Notify {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        // Sending needs write permission on the socket; the service is not root.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        Notify {
            _dir: dir,
            path,
            socket,
            received: Vec::new(),
        }
    }

    /// The first datagram carrying `line`, waiting for it while `child` runs.
    async fn wait_for(&mut self, line: &str, child: &mut Child, log: &Path) -> String {
        let deadline = Instant::now() + WAIT;
        let mut buf = vec![0u8; 4096];
        loop {
            if let Some(found) = self.received.iter().find(|d| d.lines().any(|l| l == line)) {
                return found.clone();
            }
            let got = tokio::select! {
                got = tokio::time::timeout_at(deadline, self.socket.recv(&mut buf)) => got,
                exit = child.wait() => {
                    // What it sent before it exited is queued already.
                    let drain = Duration::from_millis(500);
                    while let Ok(Ok(n)) =
                        tokio::time::timeout(drain, self.socket.recv(&mut buf)).await
                    {
                        self.received.push(String::from_utf8_lossy(&buf[..n]).into_owned());
                    }
                    if let Some(found) =
                        self.received.iter().find(|d| d.lines().any(|l| l == line))
                    {
                        return found.clone();
                    }
                    panic!(
                        "the service exited ({exit:?}) before {line}; received {:?}\n{}",
                        self.received,
                        std::fs::read_to_string(log).unwrap_or_default()
                    )
                }
            };
            let n = got
                .unwrap_or_else(|_| {
                    panic!(
                        "no {line} within {WAIT:?}; received {:?}\n{}",
                        self.received,
                        std::fs::read_to_string(log).unwrap_or_default()
                    )
                })
                .expect("receive on the notify socket");
            self.received
                .push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
}

/// The service as its installed unit runs it: ExecStart's command line as User=, with the
/// unit's credentials in CREDENTIALS_DIRECTORY, NOTIFY_SOCKET and WATCHDOG_USEC.
pub(super) struct Service {
    /// runuser, which runs the daemon as a child and exits with its status.
    child: Child,
    /// The daemon's own pid, killed on drop should the test fail before stopping it.
    pid: u32,
    user: String,
    notify: Notify,
    /// The READY=1 datagram.
    pub(super) ready: String,
    dir: TempDir,
    stopped: bool,
}

impl Service {
    /// Started with the unit's credentials and those of the guide's `drop_in`.
    pub(super) async fn start(drop_in: &str) -> Service {
        let unit = std::fs::read_to_string(UNIT).expect("the installed unit");
        assert_eq!(unit_setting(&unit, "Type"), "notify");
        let user = unit_setting(&unit, "User");
        let exec_start = unit_setting(&unit, "ExecStart");
        let watchdog = humantime::parse_duration(&unit_setting(&unit, "WatchdogSec")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let credentials = load_credentials(&unit, drop_in, dir.path(), &user);
        let mut notify = Notify::bind();
        let log = dir.path().join("service.log");
        let out = std::fs::File::create(&log).unwrap();
        let err = out.try_clone().unwrap();

        // There is no systemd as PID 1 here: runuser stands in for User=, the directory
        // above for LoadCredential=, the socket for systemd's notify socket.
        let mut command = Command::new("/usr/sbin/runuser");
        command
            .args(["-u", &user, "--"])
            .args(exec_start.split_whitespace())
            .current_dir("/")
            .env_clear()
            .env("PATH", PATH)
            .env("CREDENTIALS_DIRECTORY", &credentials)
            .env("NOTIFY_SOCKET", &notify.path)
            .env("WATCHDOG_USEC", watchdog.as_micros().to_string())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true);
        let mut child = command.spawn().expect("run runuser");
        let ready = notify.wait_for("READY=1", &mut child, &log).await;
        let pid = daemon_pid(child.id().expect("runuser runs"));
        Service {
            child,
            pid,
            user,
            notify,
            ready,
            dir,
            stopped: false,
        }
    }

    pub(super) fn log(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("service.log")).unwrap_or_default();
        format!("--- filebridge's output\n{log}")
    }

    /// The daemon is the installed binary, running as the unit's user and group.
    pub(super) fn assert_runs_as_its_user(&self) {
        let exe = std::fs::read_link(format!("/proc/{}/exe", self.pid)).unwrap();
        assert_eq!(exe, Path::new("/usr/bin/filebridge"));
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap();
        let uid = ok("id", &["-u", &self.user]);
        let gid = ok("id", &["-g", &self.user]);
        for (field, id) in [("Uid:", uid.trim()), ("Gid:", gid.trim())] {
            let ids: Vec<&str> = status
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .unwrap_or_default()
                .split_whitespace()
                .collect();
            assert_eq!(ids, [id; 4], "{field} of the daemon: {status}");
        }
    }

    /// What systemd does on `systemctl stop`: SIGTERM to the daemon; it says STOPPING=1
    /// and exits 0.
    pub(super) async fn stop(mut self) {
        let pid = self.pid.to_string();
        ok("kill", &["-TERM", &pid]);
        let log = self.dir.path().join("service.log");
        self.notify
            .wait_for("STOPPING=1", &mut self.child, &log)
            .await;
        let exit = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("no exit {WAIT:?} after SIGTERM\n{}", self.log()))
            .unwrap();
        self.stopped = true;
        assert_eq!(exit.code(), Some(0), "{}", self.log());
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &self.pid.to_string()])
                .status();
        }
    }
}

/// The pid of the daemon runuser started (runuser forks it and waits).
fn daemon_pid(runuser: u32) -> u32 {
    let is_daemon = |pid: &u32| {
        std::fs::read_link(format!("/proc/{pid}/exe"))
            .is_ok_and(|exe| exe == Path::new("/usr/bin/filebridge"))
    };
    let children =
        std::fs::read_to_string(format!("/proc/{runuser}/task/{runuser}/children")).unwrap();
    let pids: Vec<u32> = std::iter::once(runuser)
        .chain(children.split_whitespace().filter_map(|p| p.parse().ok()))
        .filter(is_daemon)
        .collect();
    assert_eq!(
        pids.len(),
        1,
        "the daemon among runuser {runuser} and {children}"
    );
    pids[0]
}

/// LoadCredential= emulated: every credential the installed unit and the guide's drop-in
/// load, copied into a directory of `dir` that only the service's user can read (systemd
/// makes such a directory under /run/credentials/). Returns its path.
fn load_credentials(unit: &str, drop_in: &str, dir: &Path, user: &str) -> PathBuf {
    let target = dir.join("credentials");
    std::fs::create_dir(&target).unwrap();
    let loads: Vec<(&str, &str)> = unit
        .lines()
        .chain(drop_in.lines())
        .filter_map(|l| l.strip_prefix("LoadCredential="))
        .map(|l| l.split_once(':').expect("LoadCredential=NAME:PATH"))
        .collect();
    assert_eq!(loads.len(), 4, "{loads:?}");
    for (name, source) in loads {
        let copy = target.join(name);
        std::fs::copy(source, &copy).unwrap_or_else(|e| panic!("{source}: {e}"));
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o400)).unwrap();
    }
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o500)).unwrap();
    ok(
        "chown",
        &["-R", &format!("{user}:{user}"), target.to_str().unwrap()],
    );
    target
}
