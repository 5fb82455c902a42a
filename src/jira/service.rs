//! Calls made with the service user's personal access token (`jira.service_token`), for the
//! background work: finding issues changed since a cursor (reconciliation), finding which
//! recorded issues still exist, and keeping a "Files" remote link on each issue.
//!
//! What was checked against Jira and where:
//! - Search: `POST /rest/api/2/search` takes `{jql, startAt, maxResults, fields,
//!   validateQuery}` and answers a `SearchResultsBean` (`startAt`, `maxResults`, `total`,
//!   `issues`, `warningMessages`) — Atlassian's OpenAPI document for Jira DC 10.3
//!   (`shared/reference/jira-dc-10.3-openapi.json`, operation `searchUsingSearchRequest`).
//!   Jira caps `maxResults` (`jira.search.views.default.max`, 1000 by default), so pages are
//!   counted by the `maxResults` it echoes, never by the one asked for.
//! - Dates in JQL: a quoted `"yyyy-MM-dd HH:mm"` is read in the *searching user's* Jira time
//!   zone, at minute precision; a bare number is epoch milliseconds, with no time zone at all.
//!   Jira's `com.atlassian.jira.jql.util.JqlDateSupport` declares `convertToDate(Long)` next
//!   to `convertToDate(String)` ("JQL can have both long and string representations of
//!   values") and `JqlDateSupportImpl.convertToDate(Long)` is `new Date(dateLong)`. So
//!   `updated >= <millis>` is used: it needs no `myself` call for the time zone, cannot go
//!   wrong across a daylight-saving change, and keeps millisecond precision.
//! - `id in (...)` naming an issue that no longer exists fails the whole search with 400
//!   ("An issue with key 'X' does not exist for field 'id'") unless `validateQuery` is false;
//!   then Jira skips the missing ones (atlassian-python-api PR #752,
//!   <https://github.com/atlassian-api/atlassian-python-api/pull/752>; Jira.SDK issue #45,
//!   <https://github.com/jonas0007/Jira.SDK/issues/45>). Jira DC's `validateQuery` is a
//!   boolean (OpenAPI document above); Cloud's `strict|warn|none` does not apply.
//! - Remote links: `POST /rest/api/2/issue/{issueIdOrKey}/remotelink` creates, or updates the
//!   link with the same `globalId` (operation `createOrUpdateRemoteIssueLink`);
//!   `DELETE ...?globalId=` removes it (`deleteRemoteIssueLinkByGlobalId`). Jira needs the
//!   "Link issues" project permission for both.
//!
//! The service user sees only what Jira lets it browse: an issue it may not see is absent
//! from every answer here, exactly like a deleted one.

use std::collections::HashSet;

use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

use super::client::{Credential, JiraClient, JiraError, path_segment};

/// Issues asked for per search page; Jira may answer with fewer.
const PAGE: u32 = 100;
/// Ids per `id in (...)` clause: keeps the JQL (and Jira's work per request) small.
const ID_BATCH: usize = 100;

/// An issue found by [`JiraClient::search_updated`]: ids, keys and when it last changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchedIssue {
    pub id: String,
    pub key: String,
    pub project_id: String,
    pub project_key: String,
    pub updated: OffsetDateTime,
}

/// One page of search results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchPage {
    pub issues: Vec<SearchedIssue>,
    pub start_at: u32,
    /// As Jira echoed it: the page size it actually used.
    pub max_results: u32,
    pub total: u32,
}

impl SearchPage {
    /// Where the next page starts, or `None` after the last one.
    pub fn next_start(&self) -> Option<u32> {
        let next = self.start_at.saturating_add(self.max_results);
        (!self.issues.is_empty() && self.max_results > 0 && next < self.total).then_some(next)
    }
}

/// The remote link filebridge keeps on an issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteLink {
    /// Identifies the link across updates (Jira upserts by it).
    pub global_id: String,
    pub url: String,
    pub title: String,
    pub summary: Option<String>,
    /// A 16×16 icon.
    pub icon_url: Option<String>,
}

/// What [`JiraClient::upsert_remote_link`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upserted {
    Created,
    Updated,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SearchAnswer {
    #[serde(default)]
    start_at: u32,
    #[serde(default)]
    max_results: u32,
    #[serde(default)]
    total: u32,
    #[serde(default)]
    issues: Vec<FoundIssue>,
}

#[derive(Deserialize)]
struct FoundIssue {
    id: String,
    key: String,
    #[serde(default)]
    fields: FoundFields,
}

#[derive(Deserialize, Default)]
struct FoundFields {
    project: Option<super::ProjectRef>,
    updated: Option<String>,
}

impl JiraClient {
    /// Issues of these projects (numeric ids) updated at or after `since`, oldest change
    /// first, one page from `start_at`. No projects, no search.
    pub async fn search_updated(
        &self,
        token: &SecretString,
        project_ids: &[String],
        since: OffsetDateTime,
        start_at: u32,
    ) -> Result<SearchPage, JiraError> {
        if project_ids.is_empty() {
            return Ok(SearchPage {
                issues: Vec::new(),
                start_at,
                max_results: 0,
                total: 0,
            });
        }
        let projects: Vec<String> = project_ids.iter().map(|id| jql_value(id)).collect();
        let millis = since.unix_timestamp_nanos() / 1_000_000;
        let jql = format!(
            "project in ({}) AND updated >= {millis} ORDER BY updated ASC",
            projects.join(", ")
        );
        let answer = self
            .search(token, &jql, &["project", "updated"], start_at, true)
            .await?;
        let mut issues = Vec::with_capacity(answer.issues.len());
        for found in answer.issues {
            let (Some(project), Some(updated)) = (found.fields.project, found.fields.updated)
            else {
                return Err(JiraError::BadResponse(format!(
                    "search answered issue {} without project or updated",
                    found.id
                )));
            };
            issues.push(SearchedIssue {
                updated: parse_jira_time(&updated)?,
                id: found.id,
                key: found.key,
                project_id: project.id,
                project_key: project.key,
            });
        }
        Ok(SearchPage {
            issues,
            start_at: answer.start_at,
            max_results: answer.max_results,
            total: answer.total,
        })
    }

    /// Which of these issue ids the service user can still find. Missing ones are deleted,
    /// or hidden from the service user (the caller must tell them apart, e.g. by asking for
    /// the issue: a hidden issue's project is usually still visible).
    pub async fn existing_issue_ids(
        &self,
        token: &SecretString,
        ids: &[String],
    ) -> Result<HashSet<String>, JiraError> {
        // Issue ids are numbers; anything else cannot name an issue.
        let numeric: Vec<&String> = ids
            .iter()
            .filter(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
            .collect();
        let mut found = HashSet::new();
        for batch in numeric.chunks(ID_BATCH) {
            let list: Vec<&str> = batch.iter().map(|id| id.as_str()).collect();
            let jql = format!("id in ({})", list.join(", "));
            let mut start_at = 0;
            loop {
                // validateQuery=false: a deleted id is skipped instead of failing the batch.
                let answer = self
                    .search(token, &jql, &["project"], start_at, false)
                    .await?;
                let got = u32::try_from(answer.issues.len()).unwrap_or(u32::MAX);
                found.extend(answer.issues.into_iter().map(|i| i.id));
                start_at = answer.start_at.saturating_add(answer.max_results.max(got));
                if got == 0 || start_at >= answer.total {
                    break;
                }
            }
        }
        Ok(found)
    }

    /// Creates the remote link, or updates the one with the same global id.
    pub async fn upsert_remote_link(
        &self,
        token: &SecretString,
        issue_id_or_key: &str,
        link: &RemoteLink,
    ) -> Result<Upserted, JiraError> {
        let mut object = json!({ "url": link.url, "title": link.title });
        if let Some(summary) = &link.summary {
            object["summary"] = json!(summary);
        }
        if let Some(icon) = &link.icon_url {
            object["icon"] = json!({ "url16x16": icon, "title": "filebridge" });
        }
        let body = json!({
            "globalId": link.global_id,
            "application": { "type": "filebridge", "name": "filebridge" },
            "object": object,
        });
        let url = self.url(&format!(
            "issue/{}/remotelink",
            path_segment(issue_id_or_key)
        ))?;
        let credential = Credential::Bearer(token.clone());
        let answer = self
            .send(Method::POST, url, Some(&credential), Some(&body))
            .await?;
        Ok(if answer.status == StatusCode::CREATED {
            Upserted::Created
        } else {
            Upserted::Updated
        })
    }

    /// Removes the issue's remote link with this global id; `false` when there was none (or
    /// no such issue).
    pub async fn delete_remote_link_by_global_id(
        &self,
        token: &SecretString,
        issue_id_or_key: &str,
        global_id: &str,
    ) -> Result<bool, JiraError> {
        let url = self.url(&format!(
            "issue/{}/remotelink?globalId={}",
            path_segment(issue_id_or_key),
            path_segment(global_id)
        ))?;
        let credential = Credential::Bearer(token.clone());
        match self
            .send(Method::DELETE, url, Some(&credential), None)
            .await
        {
            Ok(_) => Ok(true),
            Err(JiraError::NotFound) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn search(
        &self,
        token: &SecretString,
        jql: &str,
        fields: &[&str],
        start_at: u32,
        validate: bool,
    ) -> Result<SearchAnswer, JiraError> {
        let body = json!({
            "jql": jql,
            "startAt": start_at,
            "maxResults": PAGE,
            "fields": fields,
            "validateQuery": validate,
        });
        let credential = Credential::Bearer(token.clone());
        let answer = self
            .send(
                Method::POST,
                self.url("search")?,
                Some(&credential),
                Some(&body),
            )
            .await?;
        answer.json()
    }
}

/// A JQL value: numbers as they are, anything else as a quoted string.
fn jql_value(value: &str) -> String {
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        value.to_string()
    } else {
        let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
        format!("\"{escaped}\"")
    }
}

/// Jira's REST timestamps: `2025-01-15T09:30:00.000+0000` (ISO 8601 with a colon-less offset).
fn parse_jira_time(text: &str) -> Result<OffsetDateTime, JiraError> {
    let jira = format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond][offset_hour sign:mandatory][offset_minute]"
    );
    OffsetDateTime::parse(text, &jira)
        .or_else(|_| OffsetDateTime::parse(text, &Rfc3339))
        .map_err(|e| JiraError::BadResponse(format!("unreadable time `{text}`: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jira_times_parse() {
        let t = parse_jira_time("2025-01-15T09:30:00.123+0100").unwrap();
        assert_eq!(t.unix_timestamp(), 1_736_929_800);
        assert_eq!(t.millisecond(), 123);
        assert!(parse_jira_time("2025-01-15T09:30:00Z").is_ok());
        assert!(parse_jira_time("yesterday").is_err());
    }

    #[test]
    fn jql_values_are_quoted_unless_numeric() {
        assert_eq!(jql_value("10000"), "10000");
        assert_eq!(jql_value("PROJ"), "\"PROJ\"");
        assert_eq!(jql_value("a\"b\\"), "\"a\\\"b\\\\\"");
    }

    #[test]
    fn pages_follow_the_echoed_size() {
        let page = |start_at, max_results, total, n: usize| SearchPage {
            issues: vec![
                SearchedIssue {
                    id: "1".into(),
                    key: "P-1".into(),
                    project_id: "1".into(),
                    project_key: "P".into(),
                    updated: OffsetDateTime::UNIX_EPOCH,
                };
                n
            ],
            start_at,
            max_results,
            total,
        };
        assert_eq!(page(0, 2, 5, 2).next_start(), Some(2));
        assert_eq!(page(4, 2, 5, 1).next_start(), None);
        assert_eq!(page(0, 2, 5, 0).next_start(), None, "an empty page ends it");
    }
}
