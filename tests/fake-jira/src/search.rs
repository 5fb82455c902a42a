//! `GET|POST /rest/api/2/search`, for the JQL shapes filebridge sends and nothing else: any
//! other query is refused with 400 like a JQL error, so a change in filebridge's queries
//! shows up in the tests instead of silently matching everything.
//!
//! Understood (keywords and field names in any case):
//! - `project in (<id or "key">, ...) AND updated >= <epoch millis | "yyyy-MM-dd HH:mm" |
//!   "yyyy/MM/dd HH:mm" | "yyyy-MM-dd"> ORDER BY updated ASC` — quoted dates in the user's
//!   time zone (every fake user is in `Etc/UTC`), a number as epoch milliseconds.
//! - `id in (<id>, ...)`.
//!
//! As in Jira: a value naming nothing (an unknown project or issue, or one the caller may not
//! see) fails the search with 400 unless `validateQuery` is false, when it becomes a warning;
//! only visible issues are found; `maxResults` (default 50) is capped by the instance's
//! limit and the effective value is echoed.

use std::collections::HashMap;

use actix_web::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::clock::parse_jql_date;
use crate::json;
use crate::routes::error_body;
use crate::world::{User, World};

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Number(i64),
    Text(String),
    Open,
    Close,
    Comma,
    AtLeast,
}

#[derive(Debug, PartialEq)]
enum Query {
    Updated { projects: Vec<Token>, since: Token },
    Ids(Vec<i64>),
}

fn tokens(jql: &str) -> Option<Vec<Token>> {
    let mut out = Vec::new();
    let mut chars = jql.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' | ')' | ',' => {
                chars.next();
                out.push(match c {
                    '(' => Token::Open,
                    ')' => Token::Close,
                    _ => Token::Comma,
                });
            }
            '>' => {
                chars.next();
                if chars.next() != Some('=') {
                    return None;
                }
                out.push(Token::AtLeast);
            }
            '"' => {
                chars.next();
                let mut text = String::new();
                loop {
                    match chars.next()? {
                        '\\' => text.push(chars.next()?),
                        '"' => break,
                        other => text.push(other),
                    }
                }
                out.push(Token::Text(text));
            }
            c if c.is_ascii_alphanumeric() || c == '-' || c == '_' => {
                let mut word = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                        word.push(c);
                        chars.next();
                    } else {
                        break;
                    }
                }
                out.push(match word.parse::<i64>() {
                    Ok(n) => Token::Number(n),
                    Err(_) => Token::Word(word.to_ascii_lowercase()),
                });
            }
            _ => return None,
        }
    }
    Some(out)
}

/// `( v, v, ... )` from the front of `rest`; returns the values and what follows.
fn list(rest: &[Token]) -> Option<(Vec<Token>, &[Token])> {
    let [Token::Open, rest @ ..] = rest else {
        return None;
    };
    let mut values = Vec::new();
    let mut rest = rest;
    loop {
        match rest {
            [
                v @ (Token::Number(_) | Token::Text(_)),
                Token::Comma,
                tail @ ..,
            ] => {
                values.push(v.clone());
                rest = tail;
            }
            [
                v @ (Token::Number(_) | Token::Text(_)),
                Token::Close,
                tail @ ..,
            ] => {
                values.push(v.clone());
                return Some((values, tail));
            }
            _ => return None,
        }
    }
}

fn parse(jql: &str) -> Option<Query> {
    let tokens = tokens(jql)?;
    let word = |t: &Token, w: &str| matches!(t, Token::Word(x) if x == w);
    match tokens.as_slice() {
        [field, op, rest @ ..] if word(field, "project") && word(op, "in") => {
            let (projects, rest) = list(rest)?;
            match rest {
                [
                    and,
                    updated,
                    Token::AtLeast,
                    since @ (Token::Number(_) | Token::Text(_)),
                    order,
                    by,
                    updated2,
                    asc,
                ] if word(and, "and")
                    && word(updated, "updated")
                    && word(order, "order")
                    && word(by, "by")
                    && word(updated2, "updated")
                    && word(asc, "asc") =>
                {
                    Some(Query::Updated {
                        projects,
                        since: since.clone(),
                    })
                }
                _ => None,
            }
        }
        [field, op, rest @ ..] if word(field, "id") && word(op, "in") => {
            let (values, []) = list(rest)? else {
                return None;
            };
            let ids = values
                .into_iter()
                .map(|v| match v {
                    Token::Number(n) => Some(n),
                    _ => None,
                })
                .collect::<Option<Vec<i64>>>()?;
            Some(Query::Ids(ids))
        }
        _ => None,
    }
}

/// The search parameters, from the query string (GET) or the JSON body (POST).
struct Request {
    jql: String,
    start_at: usize,
    max_results: Option<i64>,
    fields: Vec<String>,
    validate: bool,
}

fn request(method: &Method, query: &HashMap<String, String>, body: &[u8]) -> Option<Request> {
    if method == Method::POST {
        let value: Value = serde_json::from_slice(body).ok()?;
        Some(Request {
            jql: value.get("jql")?.as_str()?.to_owned(),
            start_at: value.get("startAt").and_then(Value::as_u64).unwrap_or(0) as usize,
            max_results: value.get("maxResults").and_then(Value::as_i64),
            fields: value
                .get("fields")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            validate: value
                .get("validateQuery")
                .and_then(Value::as_bool)
                .unwrap_or(true),
        })
    } else {
        Some(Request {
            jql: query.get("jql")?.clone(),
            start_at: query
                .get("startAt")
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
            max_results: query.get("maxResults").and_then(|s| s.parse().ok()),
            fields: query
                .get("fields")
                .map(|f| f.split(',').map(|s| s.trim().to_owned()).collect())
                .unwrap_or_default(),
            validate: query.get("validateQuery").is_none_or(|v| v != "false"),
        })
    }
}

pub(crate) fn handle(
    world: &World,
    base: &str,
    user: &User,
    method: &Method,
    query: &HashMap<String, String>,
    body: &[u8],
) -> (StatusCode, Value) {
    let Some(request) = request(method, query, body) else {
        return (
            StatusCode::BAD_REQUEST,
            error_body("A jql query is required."),
        );
    };
    let Some(parsed) = parse(&request.jql) else {
        let message = format!(
            "Error in the JQL Query: the fake Jira does not understand '{}' (it knows only the queries filebridge sends).",
            request.jql
        );
        return (StatusCode::BAD_REQUEST, error_body(&message));
    };
    let mut problems = Vec::new();
    let mut found: Vec<&crate::world::Issue> = match parsed {
        Query::Updated { projects, since } => {
            let since = match since {
                Token::Number(ms) => ms,
                Token::Text(text) => match parse_jql_date(&text) {
                    Some(ms) => ms,
                    None => {
                        let message = format!(
                            "Date value '{text}' for field 'updated' is invalid. Valid formats include: 'yyyy/MM/dd HH:mm', 'yyyy-MM-dd HH:mm', 'yyyy/MM/dd', 'yyyy-MM-dd', or a period format e.g. '-5d', '4w 2d'."
                        );
                        return (StatusCode::BAD_REQUEST, error_body(&message));
                    }
                },
                _ => unreachable!("the parser admits only numbers and strings"),
            };
            let mut ids = Vec::new();
            for value in projects {
                let (text, project) = match &value {
                    Token::Number(n) => (n.to_string(), world.find_project(&n.to_string())),
                    Token::Text(t) => (t.clone(), world.find_project(t)),
                    _ => unreachable!("the parser admits only numbers and strings"),
                };
                match project.filter(|p| world.can_see_project(user, p)) {
                    Some(p) => ids.push(p.id),
                    None if matches!(value, Token::Number(_)) => problems.push(format!(
                        "A value with ID '{text}' does not exist for the field 'project'."
                    )),
                    None => problems.push(format!(
                        "The value '{text}' does not exist for the field 'project'."
                    )),
                }
            }
            let mut hits: Vec<_> = world
                .issues
                .values()
                .filter(|i| ids.contains(&i.project_id) && i.updated_ms >= since)
                .filter(|i| world.can_see_issue(user, i))
                .collect();
            hits.sort_by_key(|i| (i.updated_ms, i.id));
            hits
        }
        Query::Ids(ids) => {
            let mut hits = Vec::new();
            for id in ids {
                match u64::try_from(id).ok().and_then(|id| world.issues.get(&id)) {
                    Some(issue) if world.can_see_issue(user, issue) => hits.push(issue),
                    _ => problems.push(format!(
                        "An issue with key '{id}' does not exist for field 'id'."
                    )),
                }
            }
            hits.sort_by_key(|i| i.id);
            hits.dedup_by_key(|i| i.id);
            hits
        }
    };
    if request.validate && !problems.is_empty() {
        return (
            StatusCode::BAD_REQUEST,
            json!({"errorMessages": problems, "errors": {}}),
        );
    }
    let total = found.len();
    let cap = i64::from(world.search_cap);
    let max_results = request.max_results.unwrap_or(50).clamp(0, cap) as usize;
    let page: Vec<Value> = found
        .drain(..)
        .skip(request.start_at)
        .take(max_results)
        .map(|issue| render(base, world, issue, &request.fields))
        .collect();
    let mut answer = json!({
        "expand": "schema,names",
        "startAt": request.start_at,
        "maxResults": max_results,
        "total": total,
        "issues": page,
    });
    if !problems.is_empty() {
        answer["warningMessages"] = json!(problems);
    }
    (StatusCode::OK, answer)
}

/// An issue of a search page, with only the requested fields (all of them for none or `*all`).
fn render(base: &str, world: &World, issue: &crate::world::Issue, fields: &[String]) -> Value {
    let mut full = json::issue(base, world, issue);
    let everything = fields.is_empty() || fields.iter().any(|f| f == "*all" || f == "*navigable");
    if !everything && let Some(all) = full["fields"].as_object() {
        let kept: serde_json::Map<String, Value> = all
            .iter()
            .filter(|(name, _)| fields.iter().any(|f| f == *name))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        full["fields"] = Value::Object(kept);
    }
    full
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn understands_filebridges_queries_only() {
        assert_eq!(
            parse("project in (10000, \"DEMO\") AND updated >= 1700000000000 ORDER BY updated ASC"),
            Some(Query::Updated {
                projects: vec![Token::Number(10000), Token::Text("DEMO".into())],
                since: Token::Number(1_700_000_000_000),
            })
        );
        assert!(
            parse("PROJECT IN (1) and Updated >= \"2025-01-15 09:30\" order by updated asc")
                .is_some()
        );
        assert_eq!(
            parse("id in (10100,10101)"),
            Some(Query::Ids(vec![10100, 10101]))
        );
        for wrong in [
            "project = 1",
            "project in (1) AND updated >= 1",
            "project in (1) AND updated >= 1 ORDER BY updated DESC",
            "id in ()",
            "id in (\"PROJ-1\")",
            "id in (1) OR id in (2)",
            "summary ~ \"x\"",
        ] {
            assert_eq!(parse(wrong), None, "{wrong}");
        }
    }
}
