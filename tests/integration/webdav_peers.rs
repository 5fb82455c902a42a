//! Real WebDAV servers for the tests, each on a free loopback port in a temporary directory
//! and killed when dropped: Apache httpd with mod_dav_fs, WsgiDAV (strict) and
//! `rclone serve webdav` (sloppy). They are installed by `scripts/peers/webdav`, which
//! ./scripts/test runs; a missing one fails the test naming that step.

use crate::helpers::free_port;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use filebridge::config::EgressSettings;
use filebridge::egress::EgressClient;
use filebridge::storage::{
    ByteRange, NameRules, Storage, StorageError, StoragePath, Upload, registry,
};
use futures_util::StreamExt;
use secrecy::SecretString;
use tempfile::TempDir;
use tokio::process::{Child, Command};

pub const USER: &str = "filebridge";
pub const PASSWORD: &str = "s3cret pass+word";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Apache,
    WsgiDav,
    Rclone,
}

/// A running server. Dropping it kills the process (`kill_on_drop`) and removes its files.
pub struct Peer {
    pub kind: Kind,
    /// The WebDAV folder the storage is configured with, ending in `/`.
    pub url: String,
    /// The directory on disk that the server serves at `url`.
    pub root: PathBuf,
    child: Child,
    dir: TempDir,
}

const INSTALL_HINT: &str = "run ./scripts/test (it runs scripts/peers/webdav ensure-installed, \
     which installs apache2, apache2-utils and rclone and checks WsgiDAV in .venv)";

fn require(program: &Path) {
    assert!(
        program.exists(),
        "{} is missing: {INSTALL_HINT}",
        program.display()
    );
}

impl Peer {
    /// Starts a server of `kind` and waits until it answers. A port taken in between by
    /// someone else makes the server exit; then it is started again on another port.
    pub async fn start(kind: Kind) -> Peer {
        let mut last_log = String::new();
        for _ in 0..3 {
            let dir = tempfile::tempdir().expect("tempdir");
            let port = free_port();
            let (mut command, url, root) = match kind {
                Kind::Apache => apache(dir.path(), port),
                Kind::WsgiDav => wsgidav(dir.path(), port),
                Kind::Rclone => rclone(dir.path(), port),
            };
            let log = dir.path().join("server.log");
            let out = std::fs::File::create(&log).expect("server log");
            let err = out.try_clone().expect("server log");
            command
                .stdin(Stdio::null())
                .stdout(Stdio::from(out))
                .stderr(Stdio::from(err))
                .kill_on_drop(true);
            let child = command
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {kind:?}: {e}; {INSTALL_HINT}"));
            let mut peer = Peer {
                kind,
                url,
                root,
                child,
                dir,
            };
            if peer.wait_until_listening(port).await {
                return peer;
            }
            last_log = peer.log();
        }
        panic!("{kind:?} did not start; its last log:\n{last_log}");
    }

    /// Polls until this server itself listens on the port; false if it exited or the
    /// deadline passed. Not "the port accepts connections": another test's server that took
    /// the port first would accept them too, while this one fails to bind and exits.
    async fn wait_until_listening(&mut self, port: u16) -> bool {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let Some(pid) = self.child.id() else {
            return false;
        };
        while tokio::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if listens(pid, port) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        false
    }

    /// What the server wrote to stdout, stderr and (Apache) its error log.
    pub fn log(&self) -> String {
        let mut text =
            std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        text.push_str(
            &std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default(),
        );
        text
    }

    /// Settings and secrets as an admin would enter them.
    pub fn settings(&self, timeout: &str) -> serde_json::Value {
        serde_json::json!({"url": self.url, "username": USER, "timeout": timeout})
    }

    /// The storage through the real registry and an egress client that allows nothing but
    /// what `open` registers.
    pub fn storage(&self) -> Arc<dyn Storage> {
        self.storage_with(PASSWORD, "30s")
            .expect("open the webdav storage")
    }

    pub fn storage_with(
        &self,
        password: &str,
        timeout: &str,
    ) -> Result<Arc<dyn Storage>, StorageError> {
        self.storage_through(password, timeout, &egress())
    }

    /// The storage with a given egress client, to read what it contacted.
    pub fn storage_through(
        &self,
        password: &str,
        timeout: &str,
        egress: &EgressClient,
    ) -> Result<Arc<dyn Storage>, StorageError> {
        let secrets = HashMap::from([(
            "password".to_string(),
            SecretString::from(password.to_string()),
        )]);
        registry::open("webdav", &self.settings(timeout), &secrets, egress)
    }

    /// Kills the server (SIGKILL) and waits for it to be gone.
    pub async fn kill(&mut self) {
        self.child.kill().await.expect("kill the server");
    }

    /// Freezes (`STOP`) or thaws (`CONT`) the server: it keeps its connections but answers
    /// nothing, like a hung NAS.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("the server is running");
        let status = std::process::Command::new("kill")
            .args([format!("-{signal}"), pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {pid}");
    }

    /// Every file and folder under the served directory, relative, sorted.
    pub fn files_on_disk(&self) -> Vec<String> {
        fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).expect("read the served directory") {
                let entry = entry.expect("directory entry");
                let path = entry.path();
                let relative = path.strip_prefix(base).expect("below the root");
                out.push(relative.to_string_lossy().into_owned());
                if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    walk(base, &path, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.root, &self.root, &mut out);
        out.sort();
        out
    }
}

// Helpers the WebDAV tests share.

pub fn path(text: &str) -> StoragePath {
    StoragePath::parse(text, NameRules::default()).expect("a valid path")
}

/// An upload of `data` in 64 KiB chunks, with its length announced.
pub fn upload(data: &[u8]) -> Upload {
    let chunks: Vec<Result<Bytes, StorageError>> = data
        .chunks(64 * 1024)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    Upload {
        body: Box::pin(futures_util::stream::iter(chunks)),
        length: Some(data.len() as u64),
    }
}

pub async fn read_all(
    storage: &dyn Storage,
    at: &StoragePath,
    range: Option<ByteRange>,
) -> Vec<u8> {
    let download = storage.read(at, range).await.expect("read");
    let mut body = download.body;
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        out.extend_from_slice(&chunk.expect("body chunk"));
    }
    out
}

/// Bytes that differ at every position, so an off-by-one range shows.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Temporary upload files are deleted right after a failure, but a server may finish
/// handling the aborted PUT a moment later (WsgiDAV keeps partial bodies); the storage
/// watches for that for 10 s, so allow a little more.
pub async fn assert_no_temp_files(peer: &Peer) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(12);
    loop {
        let temps: Vec<String> = peer
            .files_on_disk()
            .into_iter()
            .filter(|f| f.contains(".filebridge-"))
            .collect();
        if temps.is_empty() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "temporary upload files left on {:?}: {temps:?}",
            peer.kind
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn egress() -> EgressClient {
    let settings = EgressSettings {
        allow: vec![],
        proxy: None,
        ca_file: None,
    };
    EgressClient::new(&settings, None).expect("egress client")
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Apache httpd, single process (`-X`) so that killing the child really stops the server.
/// It serves `/dav/svc/` (a base path below the host root, as on a real NAS) with basic
/// auth from an htpasswd file. As root, Apache switches to www-data, which must be able to
/// reach and write the served directory.
fn apache(dir: &Path, port: u16) -> (Command, String, PathBuf) {
    let binary = Path::new("/usr/sbin/apache2");
    require(binary);
    require(Path::new("/usr/lib/apache2/modules/mod_dav_fs.so"));
    let root = dir.join("www/dav/svc");
    for sub in ["www/dav/svc", "run", "lock"] {
        std::fs::create_dir_all(dir.join(sub)).expect("apache dirs");
    }
    let htpasswd = dir.join("htpasswd");
    let made = std::process::Command::new("htpasswd")
        .args(["-bcB", &htpasswd.to_string_lossy(), USER, PASSWORD])
        .output()
        .unwrap_or_else(|e| panic!("htpasswd: {e}; {INSTALL_HINT}"));
    assert!(made.status.success(), "htpasswd failed: {made:?}");
    let running_as_root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let user = if running_as_root {
        // Apache drops root for www-data: give it the tree it serves and writes to.
        let chown = |p: &Path| {
            let ok = std::process::Command::new("chown")
                .args(["-R", "www-data:www-data", &p.to_string_lossy()])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            assert!(ok, "chown www-data {}", p.display());
        };
        chown(&dir.join("www/dav"));
        chown(&dir.join("lock"));
        "User www-data\nGroup www-data\n"
    } else {
        ""
    };
    // tempdir() is private (0700); www-data must traverse it.
    let chmod = std::process::Command::new("chmod")
        .args(["755", &dir.to_string_lossy()])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(chmod, "chmod the Apache directory");
    let d = dir.display();
    let modules = [
        ("mpm_event_module", "mod_mpm_event.so"),
        ("authz_core_module", "mod_authz_core.so"),
        ("authn_core_module", "mod_authn_core.so"),
        ("authn_file_module", "mod_authn_file.so"),
        ("auth_basic_module", "mod_auth_basic.so"),
        ("authz_user_module", "mod_authz_user.so"),
        ("dav_module", "mod_dav.so"),
        ("dav_fs_module", "mod_dav_fs.so"),
    ]
    .iter()
    .map(|(name, file)| format!("LoadModule {name} /usr/lib/apache2/modules/{file}\n"))
    .collect::<String>();
    // mod_unixd is compiled into Debian's apache2; loading it again is an error.
    let conf = format!(
        "ServerRoot {d}\nServerName 127.0.0.1\nListen 127.0.0.1:{port}\n{modules}{user}\
         PidFile {d}/run/httpd.pid\nDefaultRuntimeDir {d}/run\nErrorLog {d}/error.log\n\
         LogLevel warn\nDocumentRoot {d}/www\nDAVLockDB {d}/lock/DAVLock\n\
         <Directory {d}/www/dav>\n  Dav On\n  AuthType Basic\n  AuthName filebridge-test\n\
           AuthUserFile {d}/htpasswd\n  Require valid-user\n</Directory>\n"
    );
    let conf_file = dir.join("httpd.conf");
    write(&conf_file, &conf);
    let mut command = Command::new(binary);
    command.arg("-f").arg(&conf_file).arg("-X");
    (command, format!("http://127.0.0.1:{port}/dav/svc/"), root)
}

/// WsgiDAV on cheroot, with the property manager on and basic auth for one user.
fn wsgidav(dir: &Path, port: u16) -> (Command, String, PathBuf) {
    let venv = std::env::var("FILEBRIDGE_TEST_VENV")
        .unwrap_or_else(|_| panic!("FILEBRIDGE_TEST_VENV is not set: {INSTALL_HINT}"));
    let binary = Path::new(&venv).join("bin/wsgidav");
    require(&binary);
    let root = dir.join("root");
    std::fs::create_dir_all(&root).expect("wsgidav root");
    // JSON is YAML, and serde_json quotes the password and paths correctly.
    let config = serde_json::json!({
        "host": "127.0.0.1",
        "port": port,
        "server": "cheroot",
        "provider_mapping": {"/": root},
        "http_authenticator": {
            "domain_controller": null,
            "accept_basic": true,
            "accept_digest": false,
            "default_to_digest": false,
        },
        "simple_dc": {"user_mapping": {"*": {USER: {"password": PASSWORD}}}},
        "property_manager": true,
        "lock_storage": true,
        "verbose": 1,
    });
    let config_file = dir.join("wsgidav.yaml");
    write(&config_file, &config.to_string());
    let mut command = Command::new(binary);
    command.arg("--config").arg(&config_file);
    (command, format!("http://127.0.0.1:{port}/"), root)
}

/// rclone's WebDAV server over a local directory.
fn rclone(dir: &Path, port: u16) -> (Command, String, PathBuf) {
    let root = dir.join("root");
    std::fs::create_dir_all(&root).expect("rclone root");
    let mut command = Command::new("rclone");
    command
        .args(["serve", "webdav"])
        .arg(&root)
        .args(["--addr", &format!("127.0.0.1:{port}")])
        .args(["--user", USER, "--pass", PASSWORD])
        // No rclone.conf of the machine's user is read or written.
        .arg("--config")
        .arg(dir.join("rclone.conf"));
    (command, format!("http://127.0.0.1:{port}/"), root)
}

/// Whether process `pid` holds a socket listening on TCP `port` (from /proc: the listening
/// sockets' inodes in /proc/net/tcp{,6}, the process's open sockets in /proc/PID/fd).
fn listens(pid: u32, port: u16) -> bool {
    let suffix = format!(":{port:04X}");
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // local_address is field 1, st field 3 (0A = LISTEN), inode field 9.
            if fields.len() > 9 && fields[1].ends_with(&suffix) && fields[3] == "0A" {
                inodes.push(format!("socket:[{}]", fields[9]));
            }
        }
    }
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .any(|target| {
            inodes
                .iter()
                .any(|inode| target.as_os_str() == inode.as_str())
        })
}
