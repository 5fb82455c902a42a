//! Real nginx and Apache httpd for the reverse-proxy tests, each on a free loopback port in a
//! temporary directory and killed when dropped. Each is configured like a Jira site: Jira
//! (the fake) proxied at `/` by the site's own lines, and filebridge under `/filebridge/` by
//! the snippet shipped in packaging/ (or, for the installed package's test, the copy the
//! package installed in /usr/share/doc/filebridge/examples/), included verbatim. Only the
//! upstream address is the test's: nginx gets filebridge-upstream.conf with its address
//! replaced, Apache a `Define FILEBRIDGE_UPSTREAM` before the `Include`. Installed by
//! `scripts/peers/proxies`, which ./scripts/test runs; a missing one fails naming that step.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tempfile::TempDir;
use tokio::process::{Child, Command};

const REPO: &str = env!("CARGO_MANIFEST_DIR");
const INSTALL_HINT: &str = "run ./scripts/test (it runs scripts/peers/proxies ensure-installed, \
     which installs Debian's nginx and apache2), or: apt-get install nginx apache2";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Nginx,
    Apache,
}

/// A running proxy. Dropping it kills the process and removes its directory.
pub struct Proxy {
    pub kind: Kind,
    /// `http://127.0.0.1:PORT`: the site's origin, as a browser would see it.
    pub origin: String,
    child: Child,
    dir: TempDir,
}

impl Proxy {
    /// Starts `kind` on `port` in front of filebridge at `filebridge` (one node or several)
    /// and Jira at `jira`, and waits until it accepts connections. Err (with the server's
    /// log) when it exits first, e.g. because someone else took the port meanwhile.
    pub async fn start(
        kind: Kind,
        port: u16,
        filebridge: &[SocketAddr],
        jira: SocketAddr,
    ) -> Result<Proxy, String> {
        let snippets = Path::new(REPO).join("packaging");
        Self::start_with_snippets(kind, port, filebridge, jira, &snippets).await
    }

    /// [`Proxy::start`] with the snippets from `snippets`, a directory laid out like
    /// packaging/ (`nginx/`, `apache/`): the installed /usr/share/doc/filebridge/examples.
    pub async fn start_with_snippets(
        kind: Kind,
        port: u16,
        filebridge: &[SocketAddr],
        jira: SocketAddr,
        snippets: &Path,
    ) -> Result<Proxy, String> {
        let dir = tempfile::tempdir().expect("tempdir");
        // Apache and nginx workers drop root for www-data / nobody and must traverse it.
        chmod(dir.path(), "755");
        let spool = dir.path().join("spool");
        std::fs::create_dir_all(&spool).expect("spool dir");
        // World-writable like /tmp, so a proxy that does try to spool succeeds and the test
        // sees the bytes, rather than failing with a confusing permission error.
        chmod(&spool, "1777");
        let mut command = match kind {
            Kind::Nginx => nginx(dir.path(), port, filebridge, jira, snippets),
            Kind::Apache => apache(dir.path(), port, filebridge, jira, snippets),
        };
        let out = std::fs::File::create(dir.path().join("server.log")).expect("server log");
        let err = out.try_clone().expect("server log");
        command
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            // A process group of its own, ended as a whole on drop: nginx's workers outlive
            // a killed master otherwise.
            .process_group(0)
            .kill_on_drop(true);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {kind:?}: {e}; {INSTALL_HINT}"));
        let mut proxy = Proxy {
            kind,
            origin: format!("http://127.0.0.1:{port}"),
            child,
            dir,
        };
        if proxy.wait_until_listening(port).await {
            Ok(proxy)
        } else {
            Err(proxy.log())
        }
    }

    async fn wait_until_listening(&mut self, port: u16) -> bool {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while tokio::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        false
    }

    /// The server's output, error log and access log, for failure messages.
    pub fn log(&self) -> String {
        ["server.log", "error.log", "access.log"]
            .iter()
            .map(|name| {
                let text = std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
                format!("--- {:?} {name}\n{text}", self.kind)
            })
            .collect()
    }

    /// The proxy's processes: the one started, and its children (nginx's workers).
    fn pids(&self) -> Vec<u32> {
        let Some(pid) = self.child.id() else {
            return Vec::new();
        };
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        std::iter::once(pid)
            .chain(children.split_whitespace().filter_map(|p| p.parse().ok()))
            .collect()
    }

    /// A handle for measuring what the proxy holds in its temporary-file directory
    /// (nginx's client_body_temp_path and proxy_temp_path are below it, Apache's TMPDIR is
    /// it), to be sampled from another task.
    pub fn spool(&self) -> Spool {
        Spool {
            dir: self.dir.path().join("spool"),
            pids: self.pids(),
        }
    }

    /// Bytes the proxy's processes caused to be written to storage, from /proc/PID/io: a
    /// body spooled to a temporary file counts here even when the file is gone.
    pub fn disk_writes(&self) -> u64 {
        self.pids()
            .iter()
            .map(|pid| {
                let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
                io.lines()
                    .find_map(|l| l.strip_prefix("write_bytes: "))
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(0)
            })
            .sum()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            let group = format!("-{pid}");
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &group])
                .status();
        }
    }
}

/// The proxy's temporary-file directory and processes.
#[derive(Clone)]
pub struct Spool {
    dir: PathBuf,
    pids: Vec<u32>,
}

impl Spool {
    /// Bytes in temporary files right now: the files in the directory, and those the
    /// processes hold open there after unlinking them (nginx unlinks a temporary file as
    /// soon as it has created it, so it never shows in a listing).
    pub fn bytes(&self) -> u64 {
        let unlinked: u64 = self
            .pids
            .iter()
            .filter_map(|pid| std::fs::read_dir(format!("/proc/{pid}/fd")).ok())
            .flat_map(|fds| fds.flatten())
            .filter(|fd| {
                std::fs::read_link(fd.path()).is_ok_and(|target| {
                    target.starts_with(&self.dir)
                        && target.to_string_lossy().ends_with(" (deleted)")
                })
            })
            // The /proc link leads to the open file itself, deleted or not.
            .filter_map(|fd| std::fs::metadata(fd.path()).ok())
            .map(|m| m.len())
            .sum();
        bytes_under(&self.dir) + unlinked
    }
}

fn chmod(path: &Path, mode: &str) {
    let ok = std::process::Command::new("chmod")
        .arg(mode)
        .arg(path)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "chmod {mode} {}", path.display());
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn require(program: &str) {
    assert!(
        Path::new(program).exists(),
        "{program} is missing: {INSTALL_HINT}"
    );
}

/// nginx with a Jira site: `location /` to Jira (as the admin already has it, plus the
/// jira-banner.conf recipe), gzip on for everything (as many sites have it; the snippet
/// must turn it off), and the shipped snippet.
fn nginx(
    dir: &Path,
    port: u16,
    filebridge: &[SocketAddr],
    jira: SocketAddr,
    snippets: &Path,
) -> Command {
    require("/usr/sbin/nginx");
    let shipped_upstream = snippets.join("nginx/filebridge-upstream.conf");
    let shipped_upstream = std::fs::read_to_string(&shipped_upstream)
        .unwrap_or_else(|e| panic!("read {}: {e}", shipped_upstream.display()));
    let default_address = "server 127.0.0.1:8790;";
    assert_eq!(
        shipped_upstream.matches(default_address).count(),
        1,
        "filebridge-upstream.conf names the default address once"
    );
    let upstream = dir.join("filebridge-upstream.conf");
    write(
        &upstream,
        &shipped_upstream.replace(
            default_address,
            &filebridge
                .iter()
                .map(|node| format!("server {node};"))
                .collect::<Vec<_>>()
                .join("\n    "),
        ),
    );
    let snippet = snippets.join("nginx/filebridge.conf");
    let d = dir.display();
    let conf = format!(
        "worker_processes 2;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n\
           access_log {d}/access.log;\n\
           client_body_temp_path {d}/spool/client_body;\n\
           proxy_temp_path {d}/spool/proxy;\n\
           fastcgi_temp_path {d}/spool/fastcgi;\n\
           uwsgi_temp_path {d}/spool/uwsgi;\n\
           scgi_temp_path {d}/spool/scgi;\n\
           gzip on;\n  gzip_types *;\n\
           include {upstream};\n\
           server {{\n\
             listen 127.0.0.1:{port};\n\
             server_name 127.0.0.1;\n\
             location / {{\n\
               proxy_pass http://{jira};\n\
               proxy_set_header Host $http_host;\n\
               proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n\
               include {banner};\n\
             }}\n\
             include {snippet};\n\
           }}\n\
         }}\n",
        upstream = upstream.display(),
        snippet = snippet.display(),
        banner = snippets.join("nginx/jira-banner.conf").display(),
    );
    let conf_file = dir.join("nginx.conf");
    write(&conf_file, &conf);
    let mut command = Command::new("/usr/sbin/nginx");
    command
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&conf_file)
        .arg("-e")
        .arg(dir.join("error.log"))
        .args(["-g", "daemon off;"]);
    command
}

/// Apache httpd, single process (`-X`) so that killing the child really stops it, with a
/// Jira virtual host: `ProxyPass /` to Jira before the snippet's Include (the snippet's
/// Location-based ProxyPass must still win), a 1 GiB LimitRequestBody (Apache's documented
/// default since 2.4.54, here set explicitly as a site may; the snippet must lift it),
/// Debian's mod_reqtimeout default, mod_deflate for every type the tests fetch (Debian
/// compresses text and JSON-like types; a site may do more), mod_unique_id, and a response
/// header telling the test which id Apache gave each request. TMPDIR points at the spool directory: mod_proxy_http's temporary
/// files for request bodies go there.
fn apache(
    dir: &Path,
    port: u16,
    filebridge: &[SocketAddr],
    jira: SocketAddr,
    snippets: &Path,
) -> Command {
    require("/usr/sbin/apache2");
    for sub in ["run", "logs"] {
        std::fs::create_dir_all(dir.join(sub)).expect("apache dirs");
    }
    let modules = [
        "mpm_event",
        "authz_core",
        "env",
        "headers",
        "proxy",
        "proxy_http",
        "unique_id",
        "filter",
        "deflate",
        "reqtimeout",
        "proxy_balancer",
        "slotmem_shm",
        "lbmethod_byrequests",
    ]
    .iter()
    .map(|m| {
        let file = format!("/usr/lib/apache2/modules/mod_{m}.so");
        require(&file);
        format!("LoadModule {m}_module {file}\n")
    })
    .collect::<String>();
    let running_as_root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let user = if running_as_root {
        "User www-data\nGroup www-data\n"
    } else {
        ""
    };
    // One node by its address; several as docs/reverse-proxy.md has it, a balancer whose
    // members carry the parameters the snippet gives a single upstream.
    let upstream = match filebridge {
        [node] => format!("Define FILEBRIDGE_UPSTREAM http://{node}\n"),
        nodes => {
            let members: String = nodes
                .iter()
                .map(|node| {
                    format!(
                        "  BalancerMember http://{node} ttl=4 timeout=3600 connectiontimeout=5\n"
                    )
                })
                .collect();
            format!(
                "Define FILEBRIDGE_BALANCER\n<Proxy \"balancer://filebridge\">\n{members}</Proxy>\n"
            )
        }
    };
    let snippet = snippets.join("apache/filebridge.conf");
    let d = dir.display();
    // mod_unixd and mod_log_config are compiled into Debian's apache2; loading them again is
    // an error.
    let conf = format!(
        "ServerRoot {d}\nServerName 127.0.0.1\nListen 127.0.0.1:{port}\n{modules}{user}\
         PidFile {d}/run/httpd.pid\nDefaultRuntimeDir {d}/run\nErrorLog {d}/error.log\n\
         LogLevel warn\n\
         LogFormat \"%a %{{UNIQUE_ID}}e \\\"%r\\\" %>s %B %I cl=%{{Content-Length}}i te=%{{Transfer-Encoding}}i\" ids\n\
         CustomLog {d}/access.log ids\n\
         AddOutputFilterByType DEFLATE text/html text/plain application/json \
           application/problem+json application/octet-stream\n\
         RequestReadTimeout header=20-40,MinRate=500 body=10,MinRate=500\n\
         {upstream}\
         <VirtualHost 127.0.0.1:{port}>\n\
           ServerName 127.0.0.1\n\
           ProxyPreserveHost On\n\
           LimitRequestBody 1073741824\n\
           ProxyPass / http://{jira}/\n\
           ProxyPassReverse / http://{jira}/\n\
           Header always set X-Proxy-Unique-Id \"%{{UNIQUE_ID}}e\"\n\
           Include {snippet}\n\
         </VirtualHost>\n",
        snippet = snippet.display(),
    );
    let conf_file = dir.join("httpd.conf");
    write(&conf_file, &conf);
    let mut command = Command::new("/usr/sbin/apache2");
    command
        .arg("-f")
        .arg(&conf_file)
        .arg("-X")
        .env("TMPDIR", dir.join("spool"));
    command
}

/// Bytes in the files under `dir`, recursively, right now.
fn bytes_under(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(m) if m.is_dir() => bytes_under(&entry.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}
