use std::collections::HashMap;
use std::path::{Path, PathBuf};

use filebridge::config::{ConfigError, Settings, Sources, known_keys};
use secrecy::ExposeSecret;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn load(
    file: Option<PathBuf>,
    env: HashMap<String, String>,
    flags: &[(&str, &str, &str)],
) -> Result<Settings, ConfigError> {
    Settings::load(&Sources {
        file,
        file_required: true,
        env,
        flags: flags
            .iter()
            .map(|(k, v, f)| (k.to_string(), v.to_string(), f.to_string()))
            .collect(),
    })
}

#[test]
fn defaults_apply_without_any_file_or_variable() {
    let settings = Settings::load(&Sources {
        file: Some("/nonexistent/filebridge.toml".into()),
        file_required: false,
        ..Sources::default()
    })
    .unwrap();
    assert_eq!(settings.server.listen.to_string(), "127.0.0.1:8790");
    assert_eq!(settings.server.base_path, "/filebridge");
    assert_eq!(
        settings.server.public_url.as_str(),
        "http://127.0.0.1:8790/filebridge"
    );
    assert_eq!(settings.server.trusted_proxies.len(), 2);
    assert_eq!(settings.database.max_connections, 16);
    assert_eq!(
        settings.jira.forward_cookies,
        ["JSESSIONID", "seraph.rememberme.cookie"]
    );
    assert!(settings.master_key().is_err(), "no master key by default");
    assert!(settings.jira_base_url().is_err());
}

#[test]
fn an_explicit_config_file_that_is_missing_is_an_error() {
    let err = load(Some("/nonexistent/x.toml".into()), HashMap::new(), &[]).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/x.toml"), "{err}");
}

#[test]
fn file_then_environment_then_flags_take_precedence() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "f.toml",
        "[server]\nlisten = \"127.0.0.1:1001\"\nbase_path = \"/files/\"\n[log]\nlevel = \"debug\"\n",
    );
    let only_file = load(Some(file.clone()), HashMap::new(), &[]).unwrap();
    assert_eq!(only_file.server.listen.port(), 1001);
    assert_eq!(
        only_file.server.base_path, "/files",
        "trailing slash dropped"
    );
    assert_eq!(only_file.log.level, "debug");

    let vars = env(&[("FILEBRIDGE__SERVER__LISTEN", "127.0.0.1:1002")]);
    let with_env = load(Some(file.clone()), vars.clone(), &[]).unwrap();
    assert_eq!(with_env.server.listen.port(), 1002);
    assert_eq!(
        with_env.log.level, "debug",
        "untouched keys keep the file's value"
    );

    let with_flag = load(
        Some(file),
        vars,
        &[("server.listen", "127.0.0.1:1003", "--listen")],
    )
    .unwrap();
    assert_eq!(with_flag.server.listen.port(), 1003);
}

#[test]
fn lists_come_comma_separated_from_the_environment() {
    let settings = load(
        None,
        env(&[
            (
                "FILEBRIDGE__SERVER__TRUSTED_PROXIES",
                "10.0.0.0/8, 192.0.2.1",
            ),
            ("FILEBRIDGE__SECURITY__ADMIN_GROUPS", "a,b"),
        ]),
        &[],
    )
    .unwrap();
    let proxies: Vec<String> = settings
        .server
        .trusted_proxies
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(proxies, ["10.0.0.0/8", "192.0.2.1/32"]);
    assert_eq!(settings.security.admin_groups, ["a", "b"]);
}

#[test]
fn unknown_keys_are_refused_naming_the_key_and_source() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "f.toml",
        "[server]\nlisten = \"127.0.0.1:1\"\nlisen = \"x\"\n",
    );
    let err = load(Some(file.clone()), HashMap::new(), &[])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("server.lisen") && err.contains(&file.display().to_string()),
        "{err}"
    );

    let file = write(dir.path(), "g.toml", "[sever]\nlisten = \"x\"\n");
    let err = load(Some(file), HashMap::new(), &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("sever"), "{err}");

    let err = load(None, env(&[("FILEBRIDGE__JIRA__BASEURL", "x")]), &[])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("jira.baseurl") && err.contains("FILEBRIDGE__JIRA__BASEURL"),
        "{err}"
    );
    // Variables of other programs are ignored.
    assert!(
        load(
            None,
            env(&[("FILEBRIDGE_TEST_DATABASE_URL", "x"), ("HOME", "/root")]),
            &[]
        )
        .is_ok()
    );
}

#[test]
fn invalid_values_are_refused_naming_the_key_and_source() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str, &str)] = &[
        (
            "FILEBRIDGE__DATABASE__MAX_CONNECTIONS",
            "many",
            "database.max_connections",
        ),
        ("FILEBRIDGE__SERVER__LISTEN", "localhost", "server.listen"),
        (
            "FILEBRIDGE__SERVER__BASE_PATH",
            "/a/../b",
            "server.base_path",
        ),
        (
            "FILEBRIDGE__SERVER__SHUTDOWN_GRACE",
            "soon",
            "server.shutdown_grace",
        ),
        ("FILEBRIDGE__JIRA__BASE_URL", "ftp://jira", "jira.base_url"),
        ("FILEBRIDGE__LOG__FORMAT", "xml", "log.format"),
        (
            "FILEBRIDGE__SERVER__TRUSTED_PROXIES",
            "10.0.0.0/33",
            "server.trusted_proxies",
        ),
        (
            "FILEBRIDGE__SECURITY__MASTER_KEY",
            "c2hvcnQ=",
            "security.master_key",
        ),
        (
            "FILEBRIDGE__SERVER__TLS_CERT_FILE",
            "/x.pem",
            "server.tls_cert_file",
        ),
    ];
    for (var, value, key) in cases {
        let err = load(None, env(&[(var, value)]), &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(key) && err.contains(var),
            "{var}={value}: {err}"
        );
    }
    let file = write(dir.path(), "f.toml", "[database]\nmax_connections = 0\n");
    let err = load(Some(file.clone()), HashMap::new(), &[])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("database.max_connections") && err.contains(&file.display().to_string()),
        "{err}"
    );
    let file = write(dir.path(), "g.toml", "[server\n");
    let err = load(Some(file), HashMap::new(), &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("not valid TOML"), "{err}");
    let err = load(
        None,
        HashMap::new(),
        &[("log.level", "info,=bad=", "--log-level")],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("--log-level"), "{err}");
}

#[test]
fn secrets_come_from_files_looked_up_in_the_credentials_directory_first() {
    let creds = tempfile::tempdir().unwrap();
    let conf = tempfile::tempdir().unwrap();
    write(creds.path(), "jira.token", "from-credentials\n");
    write(conf.path(), "jira.token", "from-config-dir\n");
    write(conf.path(), "webhook.secret", "hook-secret");
    let key = crate::helpers::random_master_key();
    write(conf.path(), "master.key", &format!("{key}\n"));
    let file = write(
        conf.path(),
        "f.toml",
        "[jira]\nservice_token_file = \"jira.token\"\nwebhook_secret_file = \"webhook.secret\"\n[security]\nmaster_key_file = \"master.key\"\n",
    );
    let with_creds = load(
        Some(file.clone()),
        env(&[("CREDENTIALS_DIRECTORY", creds.path().to_str().unwrap())]),
        &[],
    )
    .unwrap();
    assert_eq!(
        with_creds
            .jira
            .service_token
            .as_ref()
            .unwrap()
            .expose_secret(),
        "from-credentials"
    );
    assert!(with_creds.master_key().is_ok());
    assert_eq!(
        with_creds.jira.webhook_secret.unwrap().expose_secret(),
        "hook-secret",
        "falls back to the config dir"
    );

    let without = load(Some(file), HashMap::new(), &[]).unwrap();
    assert_eq!(
        without.jira.service_token.unwrap().expose_secret(),
        "from-config-dir"
    );

    // A later layer's direct value beats an earlier layer's file, and vice versa.
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "f.toml",
        "[jira]\nservice_token = \"direct-in-file\"\n",
    );
    write(dir.path(), "t", "from-env-file");
    let vars = env(&[(
        "FILEBRIDGE__JIRA__SERVICE_TOKEN_FILE",
        dir.path().join("t").to_str().unwrap(),
    )]);
    let settings = load(Some(file), vars, &[]).unwrap();
    assert_eq!(
        settings.jira.service_token.unwrap().expose_secret(),
        "from-env-file"
    );

    // Both forms in one layer is ambiguous, in the environment too.
    let vars = env(&[
        ("FILEBRIDGE__JIRA__SERVICE_TOKEN", "a"),
        (
            "FILEBRIDGE__JIRA__SERVICE_TOKEN_FILE",
            dir.path().join("t").to_str().unwrap(),
        ),
    ]);
    let err = load(None, vars, &[]).unwrap_err().to_string();
    assert!(
        err.contains("jira.service_token") && err.contains("only one"),
        "{err}"
    );
    let file = write(
        dir.path(),
        "g.toml",
        "[jira]\nservice_token = \"a\"\nservice_token_file = \"t\"\n",
    );
    let err = load(Some(file), HashMap::new(), &[])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("jira.service_token") && err.contains("only one"),
        "{err}"
    );

    let err = load(
        None,
        env(&[("FILEBRIDGE__JIRA__SERVICE_TOKEN_FILE", "/nonexistent/t")]),
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("jira.service_token_file") && err.contains("/nonexistent/t"),
        "{err}"
    );
}

#[test]
fn secrets_are_not_printed_by_debug() {
    let key = crate::helpers::random_master_key();
    let settings = load(
        None,
        env(&[
            (
                "FILEBRIDGE__DATABASE__URL",
                "postgres://fb:hunter2-db@db/fb",
            ),
            ("FILEBRIDGE__JIRA__SERVICE_TOKEN", "svc-token-value"),
            ("FILEBRIDGE__JIRA__WEBHOOK_SECRET", "hook-secret-value"),
            ("FILEBRIDGE__SECURITY__MASTER_KEY", &key),
        ]),
        &[],
    )
    .unwrap();
    let printed = format!("{settings:?}");
    for secret in [
        "hunter2-db",
        "svc-token-value",
        "hook-secret-value",
        key.as_str(),
    ] {
        assert!(!printed.contains(secret), "{secret} printed");
    }
    assert!(printed.contains("REDACTED"));
}

#[test]
fn the_example_file_documents_every_key_and_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/filebridge.example.toml");
    let text = std::fs::read_to_string(&path).expect("config/filebridge.example.toml");
    let mut section = String::new();
    let mut documented = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') && line.ends_with(']') {
            section = line.trim_matches(|c| c == '[' || c == ']').to_string();
            continue;
        }
        let entry = line.trim_start_matches('#').trim_start();
        if let Some((name, _)) = entry.split_once('=') {
            let name = name.trim();
            if !name.is_empty() && !name.contains(' ') {
                documented.push(format!("{section}.{name}"));
            }
        }
    }
    for key in known_keys() {
        assert!(
            documented.contains(&key),
            "{key} is not documented in {}",
            path.display()
        );
    }
    load(Some(path), HashMap::new(), &[]).expect("the example file loads as shipped");
}

/// A value as the docs or the example file write it (TOML: `"30s"`, `16`, `true`,
/// `["a", "b"]`), as the items the loader would see.
fn toml_items(literal: &str) -> Option<Vec<String>> {
    let parsed: toml::Table = toml::from_str(&format!("v = {literal}")).ok()?;
    let item = |v: &toml::Value| match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    Some(match &parsed["v"] {
        toml::Value::Array(items) => items.iter().map(item).collect(),
        other => vec![item(other)],
    })
}

#[test]
fn the_example_file_sets_every_key_it_sets_to_its_default() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/filebridge.example.toml");
    let text = std::fs::read_to_string(&path).expect("config/filebridge.example.toml");
    let table: toml::Table = toml::from_str(&text).expect("TOML");
    let mut checked = 0;
    for (name, default) in filebridge::config::key_defaults() {
        let (section, key) = name.split_once('.').unwrap();
        let Some(value) = table.get(section).and_then(|s| s.get(key)) else {
            continue;
        };
        let shown = toml_items(&value.to_string()).unwrap();
        let default = default.unwrap_or_else(|| panic!("{name} has no default but is set"));
        assert_eq!(shown, default, "{name} in {}", path.display());
        checked += 1;
    }
    assert!(checked > 20, "only {checked} keys compared");
}

#[test]
fn docs_configuration_md_lists_every_key_with_its_real_default() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md");
    let text = std::fs::read_to_string(&path).expect("docs/configuration.md");
    // Rows of the reference tables: `| `name` ... | default | meaning | validation |`, under a
    // `## `[section]`` heading (short names) or naming the section (`jobs.workers`).
    let mut section = String::new();
    let mut rows: HashMap<String, String> = HashMap::new();
    for line in text.lines() {
        if let Some(heading) = line.strip_prefix("## `[") {
            section = heading.split(']').next().unwrap_or_default().to_string();
            continue;
        }
        let Some(row) = line.strip_prefix("| `") else {
            continue;
        };
        let cells: Vec<&str> = row.split(" | ").collect();
        let name = cells[0].split('`').next().unwrap();
        let full = if name.contains('.') {
            name.to_string()
        } else {
            format!("{section}.{name}")
        };
        rows.insert(full, cells.get(1).copied().unwrap_or_default().to_string());
    }
    for name in known_keys() {
        assert!(
            rows.contains_key(&name),
            "{name} is not in {}",
            path.display()
        );
    }
    for (name, default) in filebridge::config::key_defaults() {
        let shown = rows[name].trim();
        match default {
            Some(default) => {
                let literal = shown.trim_matches('`');
                let items = toml_items(literal)
                    .unwrap_or_else(|| panic!("{name}: default `{shown}` is not a TOML value"));
                assert_eq!(items, default, "{name}'s default in {}", path.display());
            }
            None => assert!(
                shown.starts_with("unset") || !shown.starts_with('`') || shown.contains(" + "),
                "{name} has no default, but the docs show {shown}"
            ),
        }
    }
}
