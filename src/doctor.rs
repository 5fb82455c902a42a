//! `filebridge doctor`: checks what the daemon needs (configuration, database, Jira and the
//! service token) and prints a report an admin can act on. Any failure makes it exit 1.

use std::fmt;
use std::time::Duration;

use crate::auth::ADMIN_PERMISSIONS;
use crate::config::Settings;
use crate::db::{self, SchemaStatus};
use crate::egress::EgressClient;
use crate::jira::{Credential, JiraClient, JiraError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Warn,
    Fail,
}

pub struct Check {
    pub name: &'static str,
    pub outcome: Outcome,
    pub detail: String,
}

pub struct Report(pub Vec<Check>);

impl Report {
    pub fn failed(&self) -> bool {
        self.0.iter().any(|c| c.outcome == Outcome::Fail)
    }

    fn add(&mut self, name: &'static str, outcome: Outcome, detail: impl Into<String>) {
        self.0.push(Check {
            name,
            outcome,
            detail: detail.into(),
        });
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for check in &self.0 {
            let label = match check.outcome {
                Outcome::Ok => "ok",
                Outcome::Warn => "WARN",
                Outcome::Fail => "FAIL",
            };
            writeln!(f, "{label:<5} {:<14} {}", check.name, check.detail)?;
        }
        let verdict = if self.failed() {
            "filebridge is NOT ready to serve: fix the FAIL lines above."
        } else {
            "filebridge is ready to serve."
        };
        writeln!(f, "{verdict}")
    }
}

/// Runs every check; none stops the others.
pub async fn run(settings: &Settings, source: &str) -> Report {
    let mut report = Report(Vec::new());
    report.add("configuration", Outcome::Ok, source);
    if !settings.server.public_url_configured {
        report.add(
            "public URL",
            Outcome::Warn,
            format!(
                "server.public_url is not set, so it is taken to be {}; behind a reverse proxy set it to the address users open (browsers' writes are refused otherwise)",
                settings.server.public_url
            ),
        );
    }
    match settings.master_key() {
        Ok(_) => report.add("master key", Outcome::Ok, "present, 32 bytes"),
        Err(e) => report.add("master key", Outcome::Fail, e.to_string()),
    }
    check_database(settings, &mut report).await;
    check_jira(settings, &mut report).await;
    report
}

async fn check_database(settings: &Settings, report: &mut Report) {
    let pool = match db::pool(&settings.database) {
        Ok(pool) => pool,
        Err(e) => return report.add("database", Outcome::Fail, e.to_string()),
    };
    let wait = settings.database.acquire_timeout + Duration::from_secs(1);
    let status = tokio::time::timeout(wait, db::schema_status(&pool)).await;
    match status {
        Err(_) => report.add("database", Outcome::Fail, "no answer in time"),
        Ok(Err(e)) => report.add("database", Outcome::Fail, e.to_string()),
        Ok(Ok(SchemaStatus::Current { version })) => report.add(
            "database",
            Outcome::Ok,
            format!("connected; schema current (version {version})"),
        ),
        Ok(Ok(SchemaStatus::Pending { applied, latest })) => report.add(
            "database",
            Outcome::Warn,
            format!(
                "connected; migrations pending (applied {}, latest {latest}): `filebridge migrate` or `serve` applies them",
                applied.map(|v| v.to_string()).unwrap_or_else(|| "none".into())
            ),
        ),
        Ok(Ok(SchemaStatus::Newer { database, binary })) => report.add(
            "database",
            Outcome::Fail,
            format!("schema {database} is newer than this binary ({binary}); upgrade filebridge"),
        ),
    }
    pool.close().await;
}

async fn check_jira(settings: &Settings, report: &mut Report) {
    let base = match settings.jira_base_url() {
        Ok(base) => base.clone(),
        Err(e) => return report.add("jira", Outcome::Fail, e.to_string()),
    };
    let egress = match EgressClient::new(&settings.egress, Some(&base)) {
        Ok(egress) => egress,
        Err(e) => return report.add("jira", Outcome::Fail, e.to_string()),
    };
    let jira = JiraClient::new(base.clone(), egress, settings.jira.timeout);
    match jira.server_info().await {
        Ok(info) => report.add(
            "jira",
            Outcome::Ok,
            format!(
                "{base} answers: Jira {} ({})",
                info.version,
                info.deployment_type.unwrap_or_default()
            ),
        ),
        Err(e) => report.add("jira", Outcome::Fail, format!("{base}: {e}")),
    }
    let Some(token) = settings.jira.service_token.clone() else {
        return report.add(
            "service token",
            Outcome::Fail,
            "jira.service_token_file is not set: filebridge needs a service user's personal access token",
        );
    };
    let credential = Credential::Bearer(token);
    match jira.myself(&credential).await {
        Ok(user) => {
            report.add(
                "service token",
                Outcome::Ok,
                format!("valid for Jira user `{}`", user.name),
            );
            if let Ok(perms) = jira.global_permissions(&credential).await
                && let Some(role) = ADMIN_PERMISSIONS.iter().find(|p| perms.contains(**p))
            {
                report.add(
                    "least privilege",
                    Outcome::Warn,
                    format!("service user `{}` holds Jira's {role} permission; it needs only the permissions in docs/permissions.md", user.name),
                );
            }
        }
        Err(JiraError::Unauthorized) => report.add(
            "service token",
            Outcome::Fail,
            "Jira rejected the service token (revoked or expired?)",
        ),
        Err(e) => report.add("service token", Outcome::Fail, e.to_string()),
    }
}
