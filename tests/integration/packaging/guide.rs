//! docs/install.md followed step by step on the installed .deb, running the guide's own SQL,
//! credential commands, configuration block and curl bodies (read from the guide, with its
//! example host names, password and ids replaced by this test's): the least-privilege role
//! and database, the credentials in /etc/filebridge/credentials, the installed
//! filebridge.toml edited, `filebridge doctor`, the service as its installed unit starts it,
//! nginx and Apache from the installed examples, the webhook, and the first connection,
//! mapping, upload and download through each proxy.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use fake_jira::FakeJira;
use serde_json::Value;
use tokio::process::Command;

use super::database::Database;
use super::service::Service;
use super::site::{Site, Storage};
use super::{CONFIG, text};
use crate::helpers::{eventually, free_port};
use crate::proxy_peers::{Kind, Proxy};

const CREDENTIALS: &str = "/etc/filebridge/credentials";
const EXAMPLES: &str = "/usr/share/doc/filebridge/examples";
/// What systemd gives a service, and what `sudo` leaves a command.
pub(super) const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
pub(super) const WAIT: Duration = Duration::from_secs(60);

/// docs/install.md, and the parts of it this test runs.
pub(super) struct Guide(String);

impl Guide {
    fn read() -> Guide {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/install.md");
        Guide(std::fs::read_to_string(path).expect("read docs/install.md"))
    }

    /// The text after the first `start`, up to the next `end`.
    fn between(&self, start: &str, end: &str) -> &str {
        between(&self.0, start, end)
    }

    /// Step 2's SQL for a role and database called `name`, with `password`.
    pub(super) fn sql(&self, name: &str, password: &str) -> Vec<String> {
        let statements: Vec<String> = self
            .between("```sql\n", "```")
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.replace("choose-a-long-random-password", password)
                    .replace("filebridge", name)
            })
            .collect();
        assert_eq!(statements.len(), 2, "{statements:?}");
        statements
    }

    /// Step 3's script (what its `sudo sh -c '...'` runs), with `database_url` written
    /// instead of the example's.
    fn credentials_script(&self, database_url: &str) -> String {
        let script = self.between("sudo sh -c '", "'");
        script.replace(between(script, "echo \"", "\""), database_url)
    }

    /// Step 3's drop-in (the first `ini` block): the unit's other LoadCredential= lines.
    fn drop_in(&self) -> &str {
        let drop_in = self.between("```ini\n", "```");
        assert!(drop_in.contains("LoadCredential="), "{drop_in}");
        drop_in
    }

    /// Step 4's "least a production node sets".
    fn configuration(&self) -> toml::Table {
        let block = self.between("```toml\n", "```");
        assert!(block.contains("remove the `url = ...` line"), "{block}");
        toml::from_str(block).expect("docs/install.md's configuration block is TOML")
    }

    /// Step 8's request bodies (`-d '...'`), in order.
    fn curl_bodies(&self) -> Vec<Value> {
        self.between("## 8. First connection and mapping", "\n## ")
            .split(" -d '")
            .skip(1)
            .map(|rest| {
                let json = rest.split('\'').next().unwrap_or_default();
                serde_json::from_str(json).unwrap_or_else(|e| panic!("{json}: {e}"))
            })
            .collect()
    }
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    let from = text
        .find(start)
        .unwrap_or_else(|| panic!("docs/install.md lacks {start:?}"))
        + start.len();
    let len = text[from..]
        .find(end)
        .unwrap_or_else(|| panic!("no {end:?} after {start:?} in docs/install.md"));
    &text[from..from + len]
}

/// The guide from the installed package's first configuration to a mapped project with a
/// file uploaded and downloaded through nginx and Apache, and the service stopped again.
/// Leaves the package installed and configured, the database role and database dropped.
pub(super) async fn follow() {
    let guide = Guide::read();
    let jira = jira_site().await;

    // 2. The database: the guide's SQL, run by the cluster's superuser.
    let database = Database::create(&guide).await;

    // 3. Credentials: the guide's commands, in /etc/filebridge/credentials.
    credentials(&guide, &database.url, "svc-pat");

    // 4. Configuration: the guide's block in the installed file.
    let listen = format!("127.0.0.1:{}", free_port());
    let nginx_port = free_port();
    let origin = format!("http://127.0.0.1:{nginx_port}");
    configure(&guide, &origin, &listen, &jira.base_url);
    let storage = Storage::new(guide.between("sudo install ", "\n"), "/srv/jira-files");

    // 5. Start and check: doctor as root, then the service as the unit runs it.
    doctor(&guide, &jira.base_url).await;
    let service = Service::start(guide.drop_in()).await;
    service.assert_runs_as_its_user();
    assert!(
        service.ready.contains(&format!("listening on {listen}")),
        "READY=1 names the configured address: {}",
        service.ready
    );

    // 6. The reverse proxy, from the installed examples; the only change is the upstream's
    // address, as the guide says to when server.listen is not the default.
    let upstream = [listen.parse().expect("listen address")];
    let examples = Path::new(EXAMPLES);
    let nginx =
        Proxy::start_with_snippets(Kind::Nginx, nginx_port, &upstream, jira.addr(), examples)
            .await
            .unwrap_or_else(|log| panic!("nginx did not start:\n{log}\n{}", service.log()));

    // 7. The webhook, with an administrator's token used for this run only.
    let admin_token = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(admin_token.path(), "root-pat\n").unwrap();
    let registered = as_root(
        "/usr/bin/filebridge",
        &["jira", "register-webhook", "--admin-token-file"],
        Some(admin_token.path()),
    )
    .await;
    let hooks = jira.webhooks();
    assert_eq!(hooks.len(), 1, "{registered}\n{hooks:?}");
    assert_eq!(hooks[0].url, format!("{origin}/filebridge/hooks/jira"));
    let secret = std::fs::read_to_string(format!("{CREDENTIALS}/jira-webhook.secret")).unwrap();
    assert_eq!(hooks[0].secret.as_deref(), Some(secret.trim()));

    // 8. First connection and mapping, as a Jira administrator through nginx, with the
    // guide's bodies; a user's file up and down through it.
    let [mut connection, mut mapping]: [Value; 2] = guide
        .curl_bodies()
        .try_into()
        .expect("two request bodies in step 8");
    connection["settings"]["root"] = storage.root().to_str().unwrap().into();
    let site = Site::new(&nginx, &service);
    site.probes().await;
    let id = site.connect(&connection).await;
    mapping["connection_id"] = id.clone().into();
    site.map(&mapping).await;
    site.round_trip(&storage, "nginx.txt").await;

    // The webhook through nginx: a new issue gets its folder (auto_create).
    jira.create_issue("PROJ", "PROJ-2").await;
    let folder = storage.root().join("Jira/PROJ/PROJ-2");
    eventually(
        "PROJ-2's folder, created from Jira's webhook through nginx",
        WAIT,
        || {
            let folder = folder.clone();
            async move { folder.is_dir() }
        },
    )
    .await;
    let deliveries = jira.deliveries();
    assert!(
        deliveries.iter().any(|d| d.event == "jira:issue_created"
            && d.url.starts_with(&origin)
            && d.status == Some(202)),
        "{deliveries:?}"
    );

    // The same through Apache, from its installed example.
    let apache =
        Proxy::start_with_snippets(Kind::Apache, free_port(), &upstream, jira.addr(), examples)
            .await
            .unwrap_or_else(|log| panic!("Apache did not start:\n{log}\n{}", service.log()));
    let site = Site::new(&apache, &service);
    site.probes().await;
    site.test_connection(&id).await;
    site.round_trip(&storage, "apache.txt").await;
    drop(apache);
    drop(nginx);

    // The tables are the role's own: filebridge ran as it, not as a superuser.
    database.assert_owns_the_schema().await;
    service.stop().await;
    database.drop().await;
}

/// Jira's side: PROJ with PROJ-1; `root` a Jira administrator, `alice` a user who may
/// browse and attach, `filebridge` the service user (Browse projects, Link issues).
async fn jira_site() -> FakeJira {
    let jira = FakeJira::start().await;
    jira.add_project("PROJ", "Project");
    jira.add_issue("PROJ", "PROJ-1");
    for (name, token) in [
        ("root", "root-pat"),
        ("alice", "alice-pat"),
        ("filebridge", "svc-pat"),
    ] {
        jira.add_user(name, name);
        jira.add_token(name, token);
        jira.grant_project(name, "PROJ", "BROWSE_PROJECTS");
    }
    jira.grant_global("root", "ADMINISTER");
    jira.grant_project("alice", "PROJ", "CREATE_ATTACHMENTS");
    jira.grant_project("filebridge", "PROJ", "LINK_ISSUES");
    jira
}

/// Step 3: the guide's script as root in /etc/filebridge/credentials (the test cluster
/// has no TLS, so the URL has no sslmode), and the service user's token saved next to
/// them the same way. Each ends up 0600 root.
fn credentials(guide: &Guide, database_url: &str, service_token: &str) {
    let save_token = format!("umask 077; printf '%s\\n' '{service_token}' > jira-service.token");
    for script in [guide.credentials_script(database_url), save_token] {
        let output = std::process::Command::new("sh")
            .args(["-c", &script])
            .current_dir(CREDENTIALS)
            .output()
            .expect("run sh");
        assert!(
            output.status.success(),
            "{script}: {}",
            text(&output.stderr)
        );
    }
    for name in [
        "master.key",
        "database.url",
        "jira-webhook.secret",
        "jira-service.token",
    ] {
        let meta = std::fs::metadata(format!("{CREDENTIALS}/{name}")).unwrap();
        assert_eq!(
            (meta.uid(), meta.permissions().mode() & 0o7777),
            (0, 0o600),
            "{name}"
        );
    }
}

/// Step 4: the guide's block applied to the installed file as an administrator edits it
/// (each key set where the file has it, commented out or not; `url` removed), with this
/// test's proxy and Jira for the example's, plus server.listen on a free port instead of
/// the default 127.0.0.1:8790, only so that this test cannot clash with anything else.
fn configure(guide: &Guide, origin: &str, listen: &str, jira_url: &str) {
    let mut config = std::fs::read_to_string(CONFIG).unwrap();
    config = edit(&config, "server", "listen", Some(&format!("\"{listen}\"")));
    for (section, keys) in guide.configuration() {
        let keys = keys.as_table().expect("a [section]");
        for (key, value) in keys {
            let value = match (section.as_str(), key.as_str()) {
                ("server", "public_url") => format!("\"{origin}/filebridge\""),
                ("jira", "base_url") => format!("\"{jira_url}\""),
                _ => value.to_string(),
            };
            config = edit(&config, &section, key, Some(&value));
        }
    }
    config = edit(&config, "database", "url", None);
    std::fs::write(CONFIG, config).unwrap();
}

/// `key = value` in `[section]`, replacing the first line that sets the key or shows it
/// commented out (`# key = ...`); with `None`, that line removed. The key must be there.
fn edit(config: &str, section: &str, key: &str, value: Option<&str>) -> String {
    let mut current = String::new();
    let mut done = false;
    let mut lines = Vec::new();
    for line in config.lines() {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name.to_string();
        }
        let bare = line.trim_start_matches('#').trim_start();
        let sets_key = bare
            .strip_prefix(key)
            .is_some_and(|rest| rest.trim_start().starts_with('='));
        let matches = sets_key && (value.is_some() || !line.starts_with('#'));
        if !done && current == section && matches {
            done = true;
            if let Some(value) = value {
                lines.push(format!("{key} = {value}"));
            }
            continue;
        }
        lines.push(line.to_string());
    }
    assert!(done, "{CONFIG} has no {section}.{key} line");
    lines.join("\n") + "\n"
}

/// Runs an installed command as the guide does (`sudo CREDENTIALS_DIRECTORY=... `): as
/// root, with sudo's bare environment; must succeed. Returns stdout and stderr.
async fn as_root(program: &str, args: &[&str], last: Option<&Path>) -> String {
    let mut command = Command::new(program);
    command
        .args(args)
        .args(last)
        .env_clear()
        .env("PATH", PATH)
        .env("CREDENTIALS_DIRECTORY", CREDENTIALS);
    let output = tokio::time::timeout(WAIT, command.output())
        .await
        .unwrap_or_else(|_| panic!("{program} {args:?} did not finish in {WAIT:?}"))
        .expect("run the installed filebridge");
    let said = format!("{}{}", text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{program} {args:?}:\n{said}");
    said
}

/// Step 5's doctor, all checks passing; the migrations are still to come.
async fn doctor(guide: &Guide, jira_url: &str) {
    let report = as_root("/usr/bin/filebridge", &["doctor"], None).await;
    let expected = [
        format!("ok    configuration  loaded from {CONFIG}"),
        "ok    master key     present, 32 bytes".to_string(),
        "WARN  database       connected; migrations pending (applied none".to_string(),
        format!("ok    jira           {jira_url}"),
        "ok    service token  valid for Jira user `filebridge`".to_string(),
        "filebridge is ready to serve.".to_string(),
    ];
    for line in expected {
        assert!(report.contains(&line), "doctor lacks {line:?}:\n{report}");
        // The guide shows the same report (for its example Jira).
        if !line.contains(jira_url) {
            assert!(guide.0.contains(&line), "docs/install.md lacks {line:?}");
        }
    }
    // Nothing else to warn about: the public URL is set, the service user no admin.
    assert_eq!(report.matches("WARN").count(), 1, "{report}");
}
