//! The plumbing under every Jira call: reading a bounded answer, describing transport
//! failures without noise, and reading how long Jira asks us to back off.
//!
//! Back-off headers, as Atlassian documents them:
//! - Jira Data Center rate limiting ("Adjusting your code for rate limiting",
//!   <https://confluence.atlassian.com/adminjiraserver/adjusting-your-code-for-rate-limiting-987143384.html>)
//!   answers 429 with `Retry-After` (seconds; 0 while tokens remain) and
//!   `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Interval-Seconds` (a new batch
//!   of tokens arrives every interval) and `X-RateLimit-FillRate`. It sends no reset time.
//! - Jira Cloud (JRACLOUD-69262, <https://jira.atlassian.com/browse/JRACLOUD-69262>) adds
//!   `X-RateLimit-Reset`, an ISO 8601 time. Proxies in front of Jira often send it as epoch
//!   seconds. Both are read, so a Jira behind such a proxy is honoured too.
//! - A 503 may carry `Retry-After` as seconds or as an HTTP date (RFC 9110 §10.2.3).

use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
use time::OffsetDateTime;
use time::format_description::well_known::{Rfc2822, Rfc3339};

use super::JiraError;

/// Largest Jira answer read; a page of search results with two fields is far below it, and
/// `mypermissions` is the biggest at a few dozen KiB.
const MAX_BODY: usize = 4 * 1024 * 1024;

/// Longest back-off honoured: a misconfigured header must not park a job for a day.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// How long Jira asked us to wait, from the headers of a 429 or 5xx answer.
pub(super) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let from_header = text(RETRY_AFTER.as_str()).and_then(parse_retry_after);
    // Jira DC says `Retry-After: 0` while the caller still holds tokens; on a 429 that means
    // the bucket is empty but refills with the next interval.
    let from_bucket = || {
        let remaining: u64 = text("x-ratelimit-remaining")?.parse().ok()?;
        let interval: u64 = text("x-ratelimit-interval-seconds")?.parse().ok()?;
        (remaining == 0).then(|| Duration::from_secs(interval))
    };
    let from_reset = || text("x-ratelimit-reset").and_then(parse_reset);
    let wait = match from_header {
        Some(d) if !d.is_zero() => Some(d),
        other => from_bucket().or_else(from_reset).or(other),
    };
    wait.map(|d| d.min(MAX_BACKOFF))
}

/// `Retry-After` is delta-seconds or an HTTP date.
fn parse_retry_after(text: &str) -> Option<Duration> {
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = OffsetDateTime::parse(text, &Rfc2822).ok()?;
    Some(until(date))
}

/// `X-RateLimit-Reset`: ISO 8601 (Jira Cloud writes `yyyy-MM-ddTHH:mmZ`, without seconds) or
/// epoch seconds.
fn parse_reset(text: &str) -> Option<Duration> {
    if let Ok(epoch) = text.parse::<i64>() {
        return Some(until(OffsetDateTime::from_unix_timestamp(epoch).ok()?));
    }
    let date = OffsetDateTime::parse(text, &Rfc3339).ok().or_else(|| {
        // Rfc3339 insists on seconds; add them.
        let (minutes, zone) = text.split_at(text.find(['Z', '+']).unwrap_or(text.len()));
        let with_seconds = format!("{minutes}:00{zone}");
        OffsetDateTime::parse(&with_seconds, &Rfc3339).ok()
    })?;
    Some(until(date))
}

fn until(date: OffsetDateTime) -> Duration {
    let now = OffsetDateTime::from(SystemTime::now());
    let seconds = (date - now).whole_seconds().max(0);
    Duration::from_secs(u64::try_from(seconds).unwrap_or(0))
}

/// Jira's `ErrorCollection` messages, for a refusal worth explaining (a JQL error names the
/// clause; it never carries issue content). Bounded, as it ends up in logs.
pub(super) fn error_messages(body: &[u8]) -> String {
    #[derive(serde::Deserialize, Default)]
    #[serde(default, rename_all = "camelCase")]
    struct ErrorCollection {
        error_messages: Vec<String>,
        errors: std::collections::BTreeMap<String, String>,
    }
    let Ok(parsed) = serde_json::from_slice::<ErrorCollection>(body) else {
        return String::new();
    };
    let mut parts = parsed.error_messages;
    parts.extend(parsed.errors.into_iter().map(|(k, v)| format!("{k}: {v}")));
    let mut text = parts.join("; ");
    if text.len() > 500 {
        let mut cut = 500;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

pub(super) fn sensitive(value: &str) -> Result<HeaderValue, JiraError> {
    let mut header = HeaderValue::from_str(value)
        .map_err(|_| JiraError::BadResponse("credential is not a valid header value".into()))?;
    // Keeps the value out of any Debug output of the request, e.g. in trace logs.
    header.set_sensitive(true);
    Ok(header)
}

/// The cause of a transport error without the URL (which is fine) or anything else verbose.
pub(super) fn describe(error: &reqwest::Error) -> String {
    use std::error::Error;
    let mut text = String::from(if error.is_connect() {
        "connection failed"
    } else {
        "request failed"
    });
    let mut source = error.source();
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}

pub(super) async fn read_limited(
    mut response: reqwest::Response,
    timeout: Duration,
) -> Result<Vec<u8>, JiraError> {
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_BODY {
                    return Err(JiraError::BadResponse("answer too large".into()));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) if e.is_timeout() => return Err(JiraError::Timeout(timeout)),
            Err(e) => return Err(JiraError::Unreachable(describe(&e))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn retry_after_seconds_win() {
        let h = headers(&[("retry-after", "7"), ("x-ratelimit-interval-seconds", "60")]);
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
    }

    #[test]
    fn an_empty_bucket_waits_for_the_next_interval() {
        let h = headers(&[
            ("retry-after", "0"),
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-interval-seconds", "2"),
        ]);
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        let h = headers(&[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-interval-seconds", "3"),
        ]);
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
    }

    #[test]
    fn reset_times_are_read_in_both_spellings() {
        let soon = OffsetDateTime::now_utc() + time::Duration::seconds(120);
        let epoch = soon.unix_timestamp().to_string();
        let waited = retry_after(&headers(&[("x-ratelimit-reset", &epoch)])).unwrap();
        assert!((100..=121).contains(&waited.as_secs()), "{waited:?}");
        let later = OffsetDateTime::now_utc() + time::Duration::minutes(10);
        let iso = format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}Z",
            later.year(),
            u8::from(later.month()),
            later.day(),
            later.hour(),
            later.minute()
        );
        let waited = retry_after(&headers(&[("x-ratelimit-reset", &iso)])).unwrap();
        assert!((500..=601).contains(&waited.as_secs()), "{iso}: {waited:?}");
    }

    #[test]
    fn http_dates_and_absurd_values() {
        let h = headers(&[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")]);
        assert_eq!(retry_after(&h), Some(Duration::ZERO), "a past date: now");
        let h = headers(&[("retry-after", "999999")]);
        assert_eq!(retry_after(&h), Some(MAX_BACKOFF));
        assert_eq!(retry_after(&headers(&[("retry-after", "soon")])), None);
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }

    #[test]
    fn error_messages_are_collected_and_bounded() {
        let body = br#"{"errorMessages":["Error in the JQL Query: x"],"errors":{"jql":"bad"}}"#;
        assert_eq!(error_messages(body), "Error in the JQL Query: x; jql: bad");
        let long = serde_json::json!({"errorMessages": ["é".repeat(400)]}).to_string();
        assert!(error_messages(long.as_bytes()).chars().count() <= 251);
        assert_eq!(error_messages(b"<html>"), "");
    }
}
