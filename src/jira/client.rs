//! The calls filebridge makes to Jira as the user (identity, permissions) or anonymously
//! (serverInfo), and the one request path every call takes ([`JiraClient::send`]). The service
//! user's calls are in `service.rs`, webhook registration in `registration.rs`. All of them
//! go through the egress client.

use std::collections::HashSet;
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, COOKIE};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use url::Url;

use super::transport::{describe, error_messages, read_limited, retry_after, sensitive};
use crate::egress::{EgressClient, EgressError};
use crate::metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum JiraError {
    #[error("Jira refused the credentials")]
    Unauthorized,
    /// Jira answers 404 both for what does not exist and for what the user may not see.
    #[error("not found, or not visible to this user")]
    NotFound,
    #[error("Jira did not answer within {0:?}")]
    Timeout(Duration),
    #[error("Jira is unreachable: {0}")]
    Unreachable(String),
    #[error("Jira is unavailable (HTTP {status})")]
    Unavailable {
        status: u16,
        retry_after: Option<Duration>,
    },
    #[error("Jira answered unexpectedly: {0}")]
    BadResponse(String),
    #[error(transparent)]
    Egress(#[from] EgressError),
}

/// How a request authenticates to Jira. The values are secrets: never logged.
pub enum Credential {
    /// A personal access token (`Authorization: Bearer`).
    Bearer(SecretString),
    /// A `Cookie` header carrying only the forwarded Jira cookies.
    Cookies(SecretString),
}

/// `GET /rest/api/2/myself?expand=groups`, the fields filebridge uses.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Myself {
    pub key: String,
    pub name: String,
    pub display_name: String,
    #[serde(default)]
    pub groups: Groups,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Groups {
    #[serde(default)]
    pub items: Vec<Group>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Group {
    pub name: String,
}

/// An issue as far as filebridge needs it: ids and keys only, never content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssueRef {
    pub id: String,
    pub key: String,
    pub project_id: String,
    pub project_key: String,
}

#[derive(Deserialize)]
struct IssueAnswer {
    id: String,
    key: String,
    fields: IssueFields,
}

#[derive(Deserialize)]
struct IssueFields {
    project: ProjectRef,
}

/// A project's id and key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectRef {
    pub id: String,
    pub key: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerInfo {
    pub version: String,
    /// `[10, 3, 1]`; empty when Jira leaves it out, then `version` is parsed instead.
    #[serde(default)]
    pub version_numbers: Vec<u32>,
    #[serde(default)]
    pub deployment_type: Option<String>,
}

impl ServerInfo {
    /// The major version: from `versionNumbers`, else the leading number of `version`.
    pub fn major(&self) -> Option<u32> {
        self.version_numbers.first().copied().or_else(|| {
            let digits: String = self
                .version
                .trim()
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        })
    }
}

#[derive(Deserialize)]
struct Permissions {
    permissions: std::collections::HashMap<String, Permission>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Permission {
    have_permission: bool,
}

#[derive(Debug, Clone)]
pub struct JiraClient {
    base: Url,
    egress: EgressClient,
    timeout: Duration,
    metrics: Metrics,
}

impl JiraClient {
    pub fn new(base: Url, egress: EgressClient, timeout: Duration) -> Self {
        Self {
            base,
            egress,
            timeout,
            metrics: Metrics::default(),
        }
    }

    /// Where this client, and the caches of its answers, count.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Counts this client's calls in the application's metrics.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    pub async fn myself(&self, credential: &Credential) -> Result<Myself, JiraError> {
        self.get_json("myself?expand=groups", Some(credential))
            .await
    }

    /// The global permissions the user holds (`mypermissions` without a context).
    pub async fn global_permissions(
        &self,
        credential: &Credential,
    ) -> Result<HashSet<String>, JiraError> {
        let answer: Permissions = self.get_json("mypermissions", Some(credential)).await?;
        Ok(answer
            .permissions
            .into_iter()
            .filter(|(_, p)| p.have_permission)
            .map(|(name, _)| name)
            .collect())
    }

    /// The issue's ids and project, as the user sees it (404 when they may not).
    pub async fn issue(&self, credential: &Credential, key: &str) -> Result<IssueRef, JiraError> {
        let answer: IssueAnswer = self
            .get_json(
                &format!("issue/{}?fields=project", path_segment(key)),
                Some(credential),
            )
            .await?;
        Ok(IssueRef {
            id: answer.id,
            key: answer.key,
            project_id: answer.fields.project.id,
            project_key: answer.fields.project.key,
        })
    }

    /// A project's id and key, as the caller sees it (404 when they may not).
    pub async fn project(
        &self,
        credential: &Credential,
        key: &str,
    ) -> Result<ProjectRef, JiraError> {
        self.get_json(&format!("project/{}", path_segment(key)), Some(credential))
            .await
    }

    /// The permissions the user holds on an issue (`issueKey`) or a project (`projectKey`).
    pub async fn permissions_on(
        &self,
        credential: &Credential,
        scope: PermissionScope<'_>,
    ) -> Result<HashSet<String>, JiraError> {
        let query = match scope {
            PermissionScope::Issue(key) => format!("mypermissions?issueKey={}", path_segment(key)),
            PermissionScope::Project(key) => {
                format!("mypermissions?projectKey={}", path_segment(key))
            }
        };
        let answer: Permissions = self.get_json(&query, Some(credential)).await?;
        Ok(answer
            .permissions
            .into_iter()
            .filter(|(_, p)| p.have_permission)
            .map(|(name, _)| name)
            .collect())
    }

    /// Anonymous; tells whether Jira is reachable and which version it runs.
    pub async fn server_info(&self) -> Result<ServerInfo, JiraError> {
        self.get_json("serverInfo", None).await
    }

    /// `<base>/rest/api/2/<path_and_query>`.
    pub(super) fn url(&self, path_and_query: &str) -> Result<Url, JiraError> {
        self.rest_url(&format!("api/2/{path_and_query}"))
    }

    /// `<base>/rest/<path_and_query>`, for the REST plugins beside `api/2` (webhooks).
    pub(super) fn rest_url(&self, path_and_query: &str) -> Result<Url, JiraError> {
        let base = self.base.as_str().trim_end_matches('/');
        Url::parse(&format!("{base}/rest/{path_and_query}"))
            .map_err(|e| JiraError::BadResponse(format!("cannot build URL: {e}")))
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path_and_query: &str,
        credential: Option<&Credential>,
    ) -> Result<T, JiraError> {
        let url = self.url(path_and_query)?;
        let answer = self.send(Method::GET, url, credential, None).await?;
        answer.json()
    }

    /// Sends one request with an optional JSON body and classifies the answer: 401/403 are
    /// refused credentials, 404 is `NotFound`, 429 and 5xx are `Unavailable` with the wait
    /// Jira asked for, other non-2xx are `BadResponse` with Jira's error messages.
    pub(super) async fn send(
        &self,
        method: Method,
        url: Url,
        credential: Option<&Credential>,
        body: Option<&serde_json::Value>,
    ) -> Result<Answer, JiraError> {
        let started = std::time::Instant::now();
        let result = self.send_once(method, url, credential, body).await;
        self.metrics.jira_call(outcome(&result), started.elapsed());
        result
    }

    async fn send_once(
        &self,
        method: Method,
        url: Url,
        credential: Option<&Credential>,
        body: Option<&serde_json::Value>,
    ) -> Result<Answer, JiraError> {
        let auth = match credential {
            Some(Credential::Bearer(token)) => Some((
                AUTHORIZATION,
                sensitive(&format!("Bearer {}", token.expose_secret()))?,
            )),
            Some(Credential::Cookies(cookies)) => {
                Some((COOKIE, sensitive(cookies.expose_secret())?))
            }
            None => None,
        };
        let json = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| JiraError::BadResponse(format!("cannot encode the request: {e}")))?;
        let timeout = self.timeout;
        let request = self.egress.request(method, url).with(|builder| {
            let mut builder = builder
                .header(reqwest::header::ACCEPT, "application/json")
                .timeout(timeout);
            if let Some((name, value)) = auth {
                builder = builder.header(name, value);
            }
            if let Some(bytes) = json {
                builder = builder
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(bytes);
            }
            builder
        });
        let response = match request.send().await? {
            Ok(response) => response,
            Err(e) if e.is_timeout() => return Err(JiraError::Timeout(self.timeout)),
            Err(e) => return Err(JiraError::Unreachable(describe(&e))),
        };
        let status = response.status();
        // Jira answers 403 to a login it will not accept without a CAPTCHA
        // (X-Authentication-Denied-Reason); for filebridge that is a refused credential too.
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(JiraError::Unauthorized);
        }
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            return Err(JiraError::Unavailable {
                status: status.as_u16(),
                retry_after: retry_after(response.headers()),
            });
        }
        if status == StatusCode::NOT_FOUND {
            return Err(JiraError::NotFound);
        }
        let body = read_limited(response, self.timeout).await?;
        if !status.is_success() {
            let messages = error_messages(&body);
            return Err(JiraError::BadResponse(if messages.is_empty() {
                format!("HTTP {status}")
            } else {
                format!("HTTP {status}: {messages}")
            }));
        }
        Ok(Answer { status, body })
    }
}

/// The `outcome` label of a Jira call: a status class, or what kept it from having one.
fn outcome(result: &Result<Answer, JiraError>) -> &'static str {
    match result {
        Ok(_) => "2xx",
        Err(JiraError::Unauthorized) => "unauthorized",
        Err(JiraError::NotFound) => "404",
        Err(JiraError::Unavailable { status: 429, .. }) => "429",
        Err(JiraError::Unavailable { .. }) => "5xx",
        Err(JiraError::Timeout(_)) => "timeout",
        Err(JiraError::Unreachable(_)) => "unreachable",
        Err(JiraError::Egress(_)) => "refused",
        Err(JiraError::BadResponse(_)) => "4xx",
    }
}

/// A successful answer.
pub(super) struct Answer {
    pub status: StatusCode,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, JiraError> {
        serde_json::from_slice(&self.body).map_err(|e| JiraError::BadResponse(format!("{e}")))
    }
}

/// What a permission question is about.
#[derive(Debug, Clone, Copy)]
pub enum PermissionScope<'a> {
    Issue(&'a str),
    Project(&'a str),
}

/// Everything but RFC 3986's unreserved characters is encoded.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes a key for a URL path or query (keys are `[A-Z0-9_]+-\d+` in practice, but
/// they come from requests).
pub(super) fn path_segment(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, SEGMENT).to_string()
}
