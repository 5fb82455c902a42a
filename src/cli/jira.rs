//! `filebridge jira ...`: operator commands that talk to Jira.

use std::path::PathBuf;

use clap::Subcommand;
use secrecy::SecretString;

use crate::config::Settings;
use crate::egress::EgressClient;
use crate::jira::{self, JiraClient};

#[derive(Debug, Subcommand)]
pub enum JiraCommand {
    /// Create or update filebridge's webhook in Jira (the endpoint and signing that Jira's
    /// version takes); running it again leaves one webhook. Registering needs a Jira
    /// administrator: by default the service user's token, or --admin-token-file.
    RegisterWebhook {
        /// A file holding a Jira administrator's personal access token, used only for this
        /// registration (the service user then needs no administrator rights).
        #[arg(long, value_name = "PATH")]
        admin_token_file: Option<PathBuf>,
    },
}

pub async fn run(
    settings: &Settings,
    pool: sqlx::PgPool,
    command: JiraCommand,
) -> Result<String, String> {
    let JiraCommand::RegisterWebhook { admin_token_file } = command;
    let token = match admin_token_file {
        Some(path) => std::fs::read_to_string(&path)
            .map(|text| SecretString::from(text.trim().to_string()))
            .map_err(|e| format!("--admin-token-file {}: {e}", path.display()))?,
        None => settings
            .jira
            .service_token
            .clone()
            .ok_or("jira.service_token_file is not set; set it or pass --admin-token-file")?,
    };
    let base = settings.jira_base_url().map_err(|e| e.to_string())?.clone();
    let egress = EgressClient::new(&settings.egress, Some(&base)).map_err(|e| e.to_string())?;
    let client = JiraClient::new(base, egress, settings.jira.timeout);
    let url = &settings.events.webhook_url;
    let done = jira::register_webhook(
        &client,
        &pool,
        &token,
        settings.jira.webhook_secret.as_ref(),
        url,
    )
    .await
    .map_err(|e| e.to_string())?;
    let mut message = format!(
        "Jira {}: webhook {} {} ({:?} endpoint), delivering to {url}",
        done.jira_version,
        done.webhook_id,
        match done.action {
            jira::WebhookAction::Created => "created",
            jira::WebhookAction::Updated => "updated",
        },
        done.endpoint,
    );
    if matches!(done.endpoint, jira::EndpointKind::Jira9) {
        message.push_str("/<token> (a new token; the previous one no longer works)");
    }
    if !done.removed_duplicates.is_empty() {
        message.push_str(&format!(
            "; removed older filebridge webhooks {}",
            done.removed_duplicates.join(", ")
        ));
    }
    Ok(message)
}
