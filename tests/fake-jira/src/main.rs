//! `fake-jira`: runs the fake Jira with a small demo world, for trying filebridge by hand.
//!
//! Prints `KEY=value` lines (the URL and the credentials to use) and runs until SIGINT or
//! SIGTERM.

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
    /// Personal access token of user `demo` (browse and attach on project DEMO).
    #[arg(long, default_value = "demo-pat-0123456789abcdef")]
    demo_token: String,
    /// Personal access token of user `admin` (Jira administrator).
    #[arg(long, default_value = "admin-pat-0123456789abcdef")]
    admin_token: String,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let jira = FakeJira::start_on(args.listen).await?;

    jira.add_project("DEMO", "Demo project");
    jira.add_issue("DEMO", "DEMO-1");
    jira.set_summary("DEMO-1", "Try filebridge on this issue");

    jira.add_user("demo", "Demo User");
    jira.add_token("demo", &args.demo_token);
    jira.add_session("demo", DEMO_JSESSIONID);
    for permission in [
        "BROWSE_PROJECTS",
        "CREATE_ATTACHMENTS",
        "DELETE_OWN_ATTACHMENTS",
    ] {
        jira.grant_project("demo", "DEMO", permission);
    }

    jira.add_user("admin", "Admin User");
    jira.add_token("admin", &args.admin_token);
    jira.add_to_group("admin", "jira-administrators");
    jira.grant_global("admin", "ADMINISTER");
    jira.grant_project("admin", "DEMO", "BROWSE_PROJECTS");

    let mut out = std::io::stdout().lock();
    writeln!(out, "FAKE_JIRA_URL={}", jira.base_url)?;
    writeln!(out, "DEMO_TOKEN={}", args.demo_token)?;
    writeln!(out, "DEMO_JSESSIONID={DEMO_JSESSIONID}")?;
    writeln!(out, "ADMIN_TOKEN={}", args.admin_token)?;
    writeln!(out, "DEMO_ISSUE=DEMO-1")?;
    // A script reading our output through a pipe must see the lines now, not at exit.
    out.flush()?;
    drop(out);

    shutdown_signal().await?;
    jira.stop().await;
    Ok(())
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
