//! The .deb and .rpm as scripts/package builds them, from this test run's own binary (no
//! second compile): their contents and scripts, lintian, and a real install, removal and
//! purge of the .deb on this machine (tests run as root on a throwaway machine). Between
//! install and removal, docs/install.md is followed step by step (packaging/guide.rs, with
//! the service as its unit runs it in service.rs and the site behind the proxy in site.rs).

mod database;
mod guide;
mod service;
mod site;

use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use fake_jira::FakeJira;

use crate::helpers::{cluster_url, create_database, random_master_key};

const REPO: &str = env!("CARGO_MANIFEST_DIR");
const BIN: &str = env!("CARGO_BIN_EXE_filebridge");
const CONFIG: &str = "/etc/filebridge/filebridge.toml";

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {program}: {e} (scripts/peers/packaging installs it)")
        })
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `program args` must succeed; returns its stdout.
fn ok(program: &str, args: &[&str]) -> String {
    let output = run(program, args);
    assert!(
        output.status.success(),
        "{program} {args:?}: {}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

struct Packages {
    _dir: tempfile::TempDir,
    deb: String,
    rpm: String,
    /// scripts/package's stderr: build figures and lintian's report.
    log: String,
}

/// scripts/package with the dev binary this run built (CARGO_BIN_EXE_filebridge).
fn build_packages() -> Packages {
    let dir = tempfile::tempdir().unwrap();
    // <target>/debug/filebridge: the packaging tools look in <target>/<profile dir>/.
    let target = Path::new(BIN).parent().and_then(Path::parent).unwrap();
    let output = Command::new(format!("{REPO}/scripts/package"))
        .args(["--profile", "dev", "--no-build", "--fast", "--out"])
        .arg(dir.path())
        .env("CARGO_TARGET_DIR", target)
        .output()
        .expect("run scripts/package");
    let log = text(&output.stderr);
    assert!(output.status.success(), "scripts/package failed:\n{log}");
    let stdout = text(&output.stdout);
    let mut paths = stdout.lines().map(str::to_string);
    let (Some(deb), Some(rpm)) = (paths.next(), paths.next()) else {
        panic!("scripts/package printed no package paths: {stdout}\n{log}");
    };
    Packages {
        _dir: dir,
        deb,
        rpm,
        log,
    }
}

/// The files every package carries (README and docs as they are in the repository now).
fn expected_files() -> BTreeSet<String> {
    let mut files: BTreeSet<String> = [
        "/usr/bin/filebridge",
        "/usr/lib/systemd/system/filebridge.service",
        "/usr/lib/sysusers.d/filebridge.conf",
        CONFIG,
        "/usr/share/doc/filebridge/README.md",
    ]
    .map(String::from)
    .into();
    for entry in std::fs::read_dir(format!("{REPO}/docs")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".md") {
            files.insert(format!("/usr/share/doc/filebridge/{name}"));
        }
    }
    // The reverse-proxy snippets, as examples.
    for proxy in ["nginx", "apache"] {
        for entry in std::fs::read_dir(format!("{REPO}/packaging/{proxy}")).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if name.ends_with(".conf") {
                files.insert(format!("/usr/share/doc/filebridge/examples/{proxy}/{name}"));
            }
        }
    }
    files
}

fn sysusers_line() -> String {
    std::fs::read_to_string(format!("{REPO}/packaging/systemd/filebridge.sysusers"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("u "))
        .expect("a u line")
        .to_string()
}

#[test]
fn packages_carry_the_files_scripts_and_conffile_and_pass_lintian() {
    let packages = build_packages();
    let errors: Vec<&str> = packages
        .log
        .lines()
        .filter(|l| l.starts_with("E: "))
        .collect();
    assert!(errors.is_empty(), "lintian errors:\n{}", packages.log);
    assert!(
        packages.log.contains("lintian: no errors"),
        "{}",
        packages.log
    );

    // .deb: files, conffile, dependencies, maintainer scripts.
    let listing = ok("dpkg-deb", &["-c", &packages.deb]);
    let deb_files: BTreeSet<String> = listing
        .lines()
        .filter(|l| l.starts_with('-'))
        .filter_map(|l| l.split_whitespace().last())
        .map(|p| p.trim_start_matches('.').to_string())
        .collect();
    let mut expected = expected_files();
    for debian_only in ["copyright", "changelog.Debian.gz"] {
        expected.insert(format!("/usr/share/doc/filebridge/{debian_only}"));
    }
    assert_eq!(deb_files, expected, "{listing}");
    assert_eq!(
        ok("dpkg-deb", &["-I", &packages.deb, "conffiles"]).trim(),
        CONFIG
    );
    let depends = ok("dpkg-deb", &["-f", &packages.deb, "Depends"]);
    assert!(
        depends.contains("libc6") && depends.contains("systemd | systemd-standalone-sysusers"),
        "{depends}"
    );
    let description = ok("dpkg-deb", &["-f", &packages.deb, "Description"]);
    let synopsis = description.lines().next().unwrap_or_default();
    assert!(
        synopsis.len() <= 80 && synopsis.contains("Jira"),
        "{description}"
    );
    let postinst = ok("dpkg-deb", &["-I", &packages.deb, "postinst"]);
    for needed in [
        "systemd-sysusers",
        "deb-systemd-helper enable filebridge.service",
        "install -d -m 0700 -o root -g root /etc/filebridge/credentials",
    ] {
        assert!(
            postinst.contains(needed),
            "postinst lacks {needed}:\n{postinst}"
        );
    }
    // Enabled, not started: it cannot run before it is configured. On upgrade only a
    // running service restarts.
    assert!(!postinst.contains("invoke start"), "{postinst}");
    assert!(
        postinst.contains("try-restart filebridge.service"),
        "{postinst}"
    );
    let prerm = ok("dpkg-deb", &["-I", &packages.deb, "prerm"]);
    assert!(prerm.contains("stop filebridge.service"), "{prerm}");
    let postrm = ok("dpkg-deb", &["-I", &packages.deb, "postrm"]);
    assert!(postrm.contains("deb-systemd-helper purge"), "{postrm}");

    // .rpm: the same files (without Debian's copyright and changelog), the configuration
    // as config(noreplace) readable by the service's group, and scripts of the same intent.
    let rpm_files: BTreeSet<String> = ok("rpm", &["-qpl", &packages.rpm])
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(rpm_files, expected_files());
    assert_eq!(ok("rpm", &["-qpc", &packages.rpm]).trim(), CONFIG);
    let flags = ok(
        "rpm",
        &[
            "-qp",
            "--qf",
            "[%{FILENAMES} %{FILEFLAGS:fflags} %{FILEMODES:perms} %{FILEGROUPNAME}\n]",
            &packages.rpm,
        ],
    );
    assert!(
        flags.contains(&format!("{CONFIG} cn -rw-r----- filebridge")),
        "{flags}"
    );
    let scripts = ok("rpm", &["-qp", "--scripts", &packages.rpm]);
    for needed in [
        sysusers_line().as_str(),
        "systemctl --no-reload enable filebridge.service",
        "systemctl --no-reload disable --now filebridge.service",
        "systemctl try-restart filebridge.service",
        "install -d -m 0700 -o root -g root /etc/filebridge/credentials",
    ] {
        assert!(
            scripts.contains(needed),
            "rpm scripts lack {needed}:\n{scripts}"
        );
    }
    assert!(!scripts.contains("systemctl start"), "{scripts}");
    let requires = ok("rpm", &["-qpR", &packages.rpm]);
    assert!(
        requires.contains("libc.so.6") && requires.contains("systemd"),
        "{requires}"
    );
}

/// dpkg, waiting while another installer (apt-get of a test peer) holds its lock.
fn dpkg(args: &[&str]) -> Output {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let output = run("dpkg", args);
        let stderr = text(&output.stderr);
        if output.status.success() || !stderr.contains("lock") || Instant::now() > deadline {
            return output;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn dpkg_ok(args: &[&str]) {
    let output = dpkg(args);
    assert!(
        output.status.success(),
        "dpkg {args:?}: {}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
}

fn mode(path: &str) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .permissions()
        .mode()
        & 0o7777
}

const ENABLED: &str = "/etc/systemd/system/multi-user.target.wants/filebridge.service";

#[tokio::test]
async fn deb_installs_runs_as_its_user_and_removes_then_purges_cleanly() {
    let uid = ok("id", &["-u"]);
    assert_eq!(
        uid.trim(),
        "0",
        "installing the .deb needs root (tests and CI run as root on a throwaway machine)"
    );
    let packages = build_packages();
    // A previous run may have stopped half-way.
    dpkg_ok(&["--purge", "filebridge"]);

    dpkg_ok(&["--install", &packages.deb]);
    let version = ok("/usr/bin/filebridge", &["--version"]);
    assert_eq!(
        version.trim(),
        format!("filebridge {}", env!("CARGO_PKG_VERSION"))
    );
    let passwd = ok("getent", &["passwd", "filebridge"]);
    assert!(
        passwd.trim_end().ends_with(":/:/usr/sbin/nologin"),
        "{passwd}"
    );
    let gid: u32 = ok("getent", &["group", "filebridge"])
        .split(':')
        .nth(2)
        .and_then(|g| g.trim().parse().ok())
        .expect("the filebridge group");
    let config = std::fs::metadata(CONFIG).unwrap();
    assert_eq!((config.uid(), config.gid(), mode(CONFIG)), (0, gid, 0o640));
    assert_eq!(mode("/etc/filebridge/credentials"), 0o700);
    // deb-systemd-helper links to /lib/systemd/system on Debian 12 (the same directory).
    assert_eq!(
        std::fs::canonicalize(ENABLED).expect("enabled at install"),
        std::fs::canonicalize("/usr/lib/systemd/system/filebridge.service").unwrap()
    );
    // The installed unit, with its real paths, verifies too.
    let verify = run(
        "systemd-analyze",
        &["verify", "/usr/lib/systemd/system/filebridge.service"],
    );
    let said = format!("{}{}", text(&verify.stdout), text(&verify.stderr));
    assert!(verify.status.success() && said.trim().is_empty(), "{said}");

    // The installed binary, as the service's user, accepts the installed configuration with
    // the rest supplied the way the unit does (credentials in a directory of its own).
    let jira = FakeJira::start().await;
    jira.add_user("svc", "filebridge service");
    jira.add_token("svc", "svc-token");
    let database_url = create_database(&cluster_url()).await;
    let credentials = tempfile::tempdir().unwrap();
    std::fs::write(credentials.path().join("master.key"), random_master_key()).unwrap();
    std::fs::write(credentials.path().join("jira-service.token"), "svc-token").unwrap();
    ok(
        "chown",
        &[
            "-R",
            "filebridge:filebridge",
            credentials.path().to_str().unwrap(),
        ],
    );
    let doctor = Command::new("/usr/sbin/runuser")
        .args([
            "-u",
            "filebridge",
            "--",
            "/usr/bin/filebridge",
            "--config",
            CONFIG,
            "doctor",
        ])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CREDENTIALS_DIRECTORY", credentials.path())
        .env("FILEBRIDGE__DATABASE__URL", &database_url)
        .env("FILEBRIDGE__JIRA__BASE_URL", &jira.base_url)
        .env("FILEBRIDGE__SECURITY__MASTER_KEY_FILE", "master.key")
        .env("FILEBRIDGE__JIRA__SERVICE_TOKEN_FILE", "jira-service.token")
        .output()
        .unwrap();
    let report = format!("{}{}", text(&doctor.stdout), text(&doctor.stderr));
    assert!(doctor.status.success(), "{report}");
    assert!(
        report.contains(&format!("ok    configuration  loaded from {CONFIG}")),
        "{report}"
    );

    // docs/install.md, from the database to a mapped project behind nginx and Apache.
    guide::follow().await;

    // An admin's edit and secret, then removal: the configuration stays, the rest goes.
    let edited = format!(
        "{}\n# edited by the admin\n",
        std::fs::read_to_string(CONFIG).unwrap()
    );
    std::fs::write(CONFIG, &edited).unwrap();
    std::fs::write(
        "/etc/filebridge/credentials/master.key",
        random_master_key(),
    )
    .unwrap();
    dpkg_ok(&["--remove", "filebridge"]);
    assert!(!Path::new("/usr/bin/filebridge").exists());
    assert!(!Path::new("/usr/lib/systemd/system/filebridge.service").exists());
    assert_eq!(std::fs::read_to_string(CONFIG).unwrap(), edited);
    let status = ok("dpkg-query", &["-W", "-f", "${Status}", "filebridge"]);
    assert_eq!(status, "deinstall ok config-files");

    // Purge: configuration, credentials, stat override and unit state all go. The system
    // user stays (Debian does not delete system users: a later user with its uid would own
    // whatever files it left).
    dpkg_ok(&["--purge", "filebridge"]);
    assert!(
        !Path::new("/etc/filebridge").exists(),
        "/etc/filebridge left behind"
    );
    assert!(
        std::fs::symlink_metadata(ENABLED).is_err(),
        "{ENABLED} left behind"
    );
    assert!(
        !run("dpkg-statoverride", &["--list", CONFIG])
            .status
            .success(),
        "stat override left behind"
    );
    let status = run("dpkg", &["-s", "filebridge"]);
    assert!(!status.status.success());
    assert!(
        text(&status.stderr).contains("is not installed"),
        "{}",
        text(&status.stderr)
    );
    assert!(run("getent", &["passwd", "filebridge"]).status.success());
}
