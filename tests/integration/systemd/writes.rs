//! The unit gives the daemon no writable directory (ProtectSystem=strict, no StateDirectory)
//! and filebridge promises zero persistence of content: the real binary, moving a file
//! through, leaves every place it could write to as empty as it found it.

use std::path::Path;
use std::time::Duration;

use fake_jira::FakeJira;
use serde_json::{Value, json};

use super::{BIN, Daemon, daemon_env};
use crate::helpers::{cluster_url, create_database, http_client};

/// Neither under /tmp nor /var/tmp: the daemon's own are replaced below, which would hide
/// anything under them from it (a checkout in /tmp, as CI's may be, included).
fn scratch() -> tempfile::TempDir {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let base = if target.starts_with("/tmp") || target.starts_with("/var/tmp") {
        Path::new("/run")
    } else {
        target
    };
    tempfile::tempdir_in(base).unwrap()
}

/// Every file and directory below `dir`, for the failure message.
fn contents(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).unwrap() {
            let path = entry.unwrap().path();
            found.push(path.display().to_string());
            if path.is_dir() {
                pending.push(path);
            }
        }
    }
    found
}

#[tokio::test]
async fn an_upload_and_a_download_leave_home_tmp_and_cwd_empty() {
    let jira = FakeJira::start().await;
    jira.add_project("PROJ", "Project");
    jira.add_issue("PROJ", "PROJ-1");
    jira.add_user("root", "root");
    jira.add_token("root", "root-pat");
    jira.grant_global("root", "ADMINISTER");
    jira.grant_project("root", "PROJ", "BROWSE_PROJECTS");
    jira.grant_project("root", "PROJ", "CREATE_ATTACHMENTS");
    let database_url = create_database(&cluster_url()).await;

    let [home, tmpdir, cwd, tmp, var_tmp, storage, credentials, bin] =
        std::array::from_fn::<_, 8, _>(|_| scratch());
    // The binary too may live under /tmp (the checkout's target directory).
    let binary = bin.path().join("filebridge");
    std::fs::copy(BIN, &binary).expect("copy the binary out of the way of /tmp");
    let mut env = daemon_env(&database_url, &jira.base_url, credentials.path());
    env.insert("HOME".into(), home.path().display().to_string());
    env.insert("TMPDIR".into(), tmpdir.path().display().to_string());
    env.insert("PATH".into(), "/usr/sbin:/usr/bin:/sbin:/bin".into());
    // In a mount namespace of its own, the daemon's /tmp and /var/tmp are empty directories
    // the test can look into afterwards (PrivateTmp= gives it the same two).
    let mut command = tokio::process::Command::new("unshare");
    command
        .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg(r#"mount --bind "$1" /tmp && mount --bind "$2" /var/tmp && exec "$0" serve"#)
        .args([binary.as_path(), tmp.path(), var_tmp.path()])
        .current_dir(cwd.path());
    let daemon = Daemon::spawn(command, &env);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let address = loop {
        let listening = daemon.output().lines().find_map(|line| {
            let json: Value = serde_json::from_str(line).ok()?;
            (json["message"] == "listening").then(|| json["address"].as_str().map(String::from))?
        });
        if let Some(address) = listening {
            break address;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not listening (unshare and mount need root):\n{}",
            daemon.output()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let url = |path: &str| format!("http://{address}/filebridge/api/v1{path}");
    let client = http_client();

    let connection: Value = client
        .post(url("/admin/connections"))
        .bearer_auth("root-pat")
        .json(&json!({"name": "local", "kind": "filesystem", "settings": {"root": storage.path()}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = connection["id"].as_str().expect("connection created");
    let mapping = client
        .put(url("/admin/projects/PROJ/mapping"))
        .bearer_auth("root-pat")
        .json(&json!({"connection_id": id, "root": "Jira/PROJ"}))
        .send()
        .await
        .unwrap();
    assert_eq!(mapping.status(), 201);

    // Larger than any buffer on the way, so a spill to disk would show.
    let body: Vec<u8> = (0..12 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let content = url("/issues/PROJ-1/files/content");
    let put = client
        .put(&content)
        .query(&[("path", "report.bin")])
        .bearer_auth("root-pat")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201, "{}", daemon.output());
    let got = client
        .get(&content)
        .query(&[("path", "report.bin")])
        .bearer_auth("root-pat")
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    assert!(
        got.bytes().await.unwrap() == body,
        "downloaded bytes differ"
    );

    daemon.terminate().await;
    for (name, dir) in [
        ("HOME", &home),
        ("TMPDIR", &tmpdir),
        ("the working directory", &cwd),
        ("/tmp", &tmp),
        ("/var/tmp", &var_tmp),
    ] {
        assert_eq!(
            contents(dir.path()),
            Vec::<String>::new(),
            "{name} written to"
        );
    }
    let credentials = contents(credentials.path());
    assert_eq!(credentials.len(), 1, "only master.key: {credentials:?}");
    // The file went to the storage and nowhere else.
    assert_eq!(
        std::fs::read(storage.path().join("Jira/PROJ/PROJ-1/report.bin")).unwrap(),
        body
    );
}
