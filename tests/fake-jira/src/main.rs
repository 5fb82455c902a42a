//! `fake-jira`: runs the fake Jira with a small demo world, for trying filebridge by hand.
//!
//! Prints `KEY=value` lines (the URL and the credentials to use) and runs until SIGINT or
//! SIGTERM. Besides Jira's REST API it serves the fake's own `/_fake/issue/{key}/move` and
//! `/_fake/project/{key}/rekey`, standing in for Jira's Move action and project settings
//! (see `routes.rs`).

use std::io::Write;
use std::net::SocketAddr;

use clap::Parser;
use fake_jira::FakeJira;

/// `JSESSIONID` cookie value of user `demo`, for trying cookie authentication.
const DEMO_JSESSIONID: &str = "DEMOSESSION0123456789ABCDEF";

#[derive(Parser)]
#[command(
    version,
    about = "A fake Jira Data Center REST API seeded with a demo world"
)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8791")]
    listen: SocketAddr,
    /// Personal access token of user `demo` (browse, attach, create and move issues on
    /// projects DEMO and DEST).
    #[arg(long, default_value = "demo-pat-0123456789abcdef")]
    demo_token: String,
    /// Personal access token of user `admin` (Jira administrator; also browses, creates, moves
    /// and deletes issues on DEMO and DEST).
    #[arg(long, default_value = "admin-pat-0123456789abcdef")]
    admin_token: String,
    /// Personal access token of user `svc`, filebridge's service user (browse and link issues
    /// on DEMO and DEST).
    #[arg(long, default_value = "svc-pat-0123456789abcdef")]
    service_token: String,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let jira = FakeJira::start_on(args.listen).await?;

    jira.add_project("DEMO", "Demo project");
    jira.add_issue("DEMO", "DEMO-1");
    jira.set_summary("DEMO-1", "Try filebridge on this issue");
    // Where issues of DEMO can be moved to.
    jira.add_project("DEST", "Destination project");
    let projects = ["DEMO", "DEST"];

    // Users are added in this order so their keys stay JIRAUSER10100, 10101, 10102.
    jira.add_user("demo", "Demo User");
    jira.add_token("demo", &args.demo_token);
    jira.add_session("demo", DEMO_JSESSIONID);
    grant(
        &jira,
        "demo",
        &projects,
        &[
            "BROWSE_PROJECTS",
            "CREATE_ATTACHMENTS",
            "DELETE_OWN_ATTACHMENTS",
            "CREATE_ISSUES",
            "MOVE_ISSUES",
        ],
    );

    jira.add_user("admin", "Admin User");
    jira.add_token("admin", &args.admin_token);
    jira.add_to_group("admin", "jira-administrators");
    jira.grant_global("admin", "ADMINISTER");
    grant(
        &jira,
        "admin",
        &projects,
        &[
            "BROWSE_PROJECTS",
            "CREATE_ATTACHMENTS",
            "CREATE_ISSUES",
            "MOVE_ISSUES",
            "DELETE_ISSUES",
        ],
    );

    // filebridge's service user: reads issues, searches and keeps the "Files" links, nothing
    // more (docs/events.md, "Setting it up").
    jira.add_user("svc", "filebridge service");
    jira.add_token("svc", &args.service_token);
    grant(&jira, "svc", &projects, &["BROWSE_PROJECTS", "LINK_ISSUES"]);

    let mut out = std::io::stdout().lock();
    writeln!(out, "FAKE_JIRA_URL={}", jira.base_url)?;
    writeln!(out, "DEMO_TOKEN={}", args.demo_token)?;
    writeln!(out, "DEMO_JSESSIONID={DEMO_JSESSIONID}")?;
    writeln!(out, "ADMIN_TOKEN={}", args.admin_token)?;
    writeln!(out, "SERVICE_TOKEN={}", args.service_token)?;
    writeln!(out, "DEMO_ISSUE=DEMO-1")?;
    // A script reading our output through a pipe must see the lines now, not at exit.
    out.flush()?;
    drop(out);

    shutdown_signal().await?;
    jira.stop().await;
    Ok(())
}

fn grant(jira: &FakeJira, user_name: &str, projects: &[&str], permissions: &[&str]) {
    for project in projects {
        for permission in permissions {
            jira.grant_project(user_name, project, permission);
        }
    }
}

async fn shutdown_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result,
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}
