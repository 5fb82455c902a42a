//! The fake Jira's endpoints for background work — search, remote links, webhook registration
//! for Jira 9 and 10 — its issue changes over REST (create, delete, and the fake's own move
//! and re-key) and its webhook deliveries must behave like Jira, or the event tests and the
//! demo prove nothing. Answers are validated against Atlassian's OpenAPI document for Jira DC 10.3
//! where it describes them (it has no webhook paths; those follow the sources cited in
//! `tests/fake-jira/src/hooks.rs`).

use fake_jira::{FakeJira, WebhookApi};
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::fake_jira_schema::{
    PATIENCE, assert_declared, assert_matches_bean, assert_matches_operation, client, openapi,
    response_schema, send, violations,
};

/// `alice` browses PROJ (10000) with issues PROJ-1..3, links issues there; `root` is a Jira
/// administrator.
pub(crate) async fn world() -> FakeJira {
    let jira = FakeJira::start().await;
    jira.add_user("alice", "Alice");
    jira.add_token("alice", "alice-pat");
    jira.add_user("root", "Root");
    jira.add_token("root", "root-pat");
    jira.grant_global("root", "ADMINISTER");
    jira.add_project("PROJ", "Project");
    for key in ["PROJ-1", "PROJ-2", "PROJ-3"] {
        jira.add_issue("PROJ", key);
    }
    jira.grant_project("alice", "PROJ", "BROWSE_PROJECTS");
    jira.grant_project("alice", "PROJ", "LINK_ISSUES");
    jira
}

fn post_schema(template: &str) -> &'static Value {
    let schema = &openapi()["paths"][template]["post"]["responses"]["200"]["content"]["application/json"]
        ["schema"];
    assert!(!schema.is_null(), "no 200 schema for POST {template}");
    schema
}

fn assert_valid(schema: &Value, body: &Value, what: &str) {
    let errors = violations(schema, body, true);
    assert!(errors.is_empty(), "{what}: {}\n{body:#}", errors.join("\n"));
}

async fn search(jira: &FakeJira, body: Value) -> (StatusCode, Value) {
    let url = format!("{}/rest/api/2/search", jira.base_url);
    send(client().post(url).bearer_auth("alice-pat").json(&body)).await
}

#[tokio::test]
async fn search_answers_in_jiras_shape_and_pages_by_its_cap() {
    let jira = world().await;
    jira.set_search_cap(2);
    let jql = "project in (10000) AND updated >= 0 ORDER BY updated ASC";
    let (status, body) = search(
        &jira,
        json!({"jql": jql, "startAt": 0, "maxResults": 100, "fields": ["project", "updated"]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_valid(post_schema("/api/2/search"), &body, "POST search");
    assert_eq!(
        (&body["startAt"], &body["maxResults"], &body["total"]),
        (&json!(0), &json!(2), &json!(3)),
        "the cap is echoed"
    );
    let first = &body["issues"][0];
    assert_matches_bean("IssueBean", first);
    let fields: Vec<&String> = first["fields"]
        .as_object()
        .expect("fields")
        .keys()
        .collect();
    assert_eq!(fields, ["project", "updated"], "only the fields asked for");
    assert_eq!(first["key"], "PROJ-1", "oldest change first");

    let url = format!("{}/rest/api/2/search", jira.base_url);
    let (status, body) = send(client().get(url).bearer_auth("alice-pat").query(&[
        ("jql", jql),
        ("startAt", "2"),
        ("fields", "project,updated"),
    ]))
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_valid(response_schema("/api/2/search"), &body, "GET search");
    let keys: Vec<&str> = body["issues"]
        .as_array()
        .expect("issues")
        .iter()
        .filter_map(|i| i["key"].as_str())
        .collect();
    assert_eq!(keys, ["PROJ-3"]);

    // A quoted date is a minute in the user's time zone (UTC here).
    let (_, body) = search(
        &jira,
        json!({"jql": "project in (10000) AND updated >= \"2999-01-01 00:00\" ORDER BY updated ASC"}),
    )
    .await;
    assert_eq!(body["total"], 0);
}

#[tokio::test]
async fn search_refuses_what_jira_would() {
    let jira = world().await;
    for jql in [
        "summary ~ \"anything\"",
        "project in (10000) ORDER BY updated ASC",
        "project in (10000) AND updated >= \"yesterday\" ORDER BY updated ASC",
        "project in (10999) AND updated >= 0 ORDER BY updated ASC",
        "id in (10100, 99999)",
    ] {
        let (status, body) = search(&jira, json!({"jql": jql})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{jql}: {body}");
        assert_matches_bean("ErrorCollection", &body);
    }
    // Without validation a missing id is a warning, and the rest is found.
    let (status, body) = search(
        &jira,
        json!({"jql": "id in (10100, 99999)", "validateQuery": false}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["total"], 1);
    assert_eq!(body["issues"][0]["id"], "10100");
    assert!(
        body["warningMessages"][0]
            .as_str()
            .is_some_and(|m| m.contains("99999"))
    );
    // Hidden issues are as good as missing.
    jira.restrict_issue("PROJ-2", &["root"]);
    let (_, body) = search(
        &jira,
        json!({"jql": "id in (10101)", "validateQuery": false}),
    )
    .await;
    assert_eq!(body["total"], 0);
}

#[tokio::test]
async fn remote_links_upsert_by_global_id() {
    let jira = world().await;
    let url = format!("{}/rest/api/2/issue/PROJ-1/remotelink", jira.base_url);
    let link = |title: &str| {
        json!({"globalId": "filebridge:10100", "application": {"type": "filebridge", "name": "filebridge"},
               "object": {"url": "https://files.example/PROJ-1", "title": title,
                          "icon": {"url16x16": "https://files.example/i.png", "title": "filebridge"}}})
    };
    let request_schema =
        json!({"$ref": "#/components/schemas/RemoteIssueLinkCreateOrUpdateRequest"});
    assert_valid(&request_schema, &link("Files"), "the request used here");

    let (status, created) = send(
        client()
            .post(&url)
            .bearer_auth("alice-pat")
            .json(&link("Files")),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_valid(
        post_schema("/api/2/issue/{issueIdOrKey}/remotelink"),
        &created,
        "created",
    );
    let (status, updated) = send(
        client()
            .post(&url)
            .bearer_auth("alice-pat")
            .json(&link("Files (2)")),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(created["id"], updated["id"]);

    let (status, listed) = send(client().get(&url).bearer_auth("alice-pat")).await;
    assert_eq!(status, StatusCode::OK);
    // The document gives the list the schema of one link (an object); Jira answers an array
    // of them, as Atlassian's REST reference example shows. Each element is checked.
    let listed = listed.as_array().expect("a list");
    for one in listed {
        assert_valid(
            response_schema("/api/2/issue/{issueIdOrKey}/remotelink"),
            one,
            "a link",
        );
    }
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["object"]["title"], "Files (2)");
    assert_matches_bean("RemoteObject", &listed[0]["object"]);
    assert_matches_bean("Application", &listed[0]["application"]);
    assert_eq!(jira.remote_links("PROJ-1").len(), 1);

    // Changing links needs Jira's "Link issues" permission.
    jira.add_user("bob", "Bob");
    jira.add_token("bob", "bob-pat");
    jira.grant_project("bob", "PROJ", "BROWSE_PROJECTS");
    let (status, _) = send(client().post(&url).bearer_auth("bob-pat").json(&link("x"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = send(
        client()
            .post(&url)
            .bearer_auth("alice-pat")
            .json(&json!({"object": {"url": "u"}})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let delete = format!("{url}?globalId=filebridge%3A10100");
    assert_eq!(
        send(client().delete(&delete).bearer_auth("alice-pat"))
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        send(client().delete(&delete).bearer_auth("alice-pat"))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert!(jira.remote_links("PROJ-1").is_empty());
}

#[tokio::test]
async fn server_info_reports_the_chosen_version() {
    let jira = world().await;
    jira.set_version(fake_jira::VERSION_9);
    let (status, body) =
        send(client().get(format!("{}/rest/api/2/serverInfo", jira.base_url))).await;
    assert_eq!(status, StatusCode::OK);
    assert_valid(response_schema("/api/2/serverInfo"), &body, "serverInfo");
    assert_eq!(body["version"], fake_jira::VERSION_9);
    assert_eq!(body["versionNumbers"], json!([9, 12, 15]));
}

#[tokio::test]
async fn webhook_registration_follows_the_version() {
    let jira = world().await;
    let ten = format!("{}/rest/jira-webhook/1.0/webhooks", jira.base_url);
    let nine = format!("{}/rest/webhooks/1.0/webhook", jira.base_url);
    let hook = json!({"name": "x", "url": "http://127.0.0.1:9/hooks", "events": ["jira:issue_created"],
                      "secret": "ignored", "configuration": {"SECRET": "s1", "EXCLUDE_BODY": "false"}});
    assert_eq!(
        send(client().post(&nine).bearer_auth("root-pat").json(&hook))
            .await
            .0,
        StatusCode::NOT_FOUND,
        "Jira 10 moved it"
    );
    assert_eq!(
        send(client().post(&ten).bearer_auth("alice-pat").json(&hook))
            .await
            .0,
        StatusCode::FORBIDDEN,
        "admins only"
    );
    let (status, created) = send(client().post(&ten).bearer_auth("root-pat").json(&hook)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert!(
        created["id"].is_u64()
            && created
                .get("configuration")
                .is_some_and(|c| c.get("SECRET").is_none()),
        "{created}"
    );
    assert_eq!(jira.webhooks()[0].secret.as_deref(), Some("s1"));
    let id = created["id"].as_u64().expect("id");
    let (status, updated) = send(
        client()
            .put(format!("{ten}/{id}"))
            .bearer_auth("root-pat")
            .json(&json!({"name": "y", "url": "http://127.0.0.1:9/other", "events": []})),
    )
    .await;
    assert_eq!((status, &updated["name"]), (StatusCode::OK, &json!("y")));
    assert_eq!(
        jira.webhooks()[0].secret,
        None,
        "a secret dropped from the body is gone"
    );
    let (_, listed) = send(client().get(&ten).bearer_auth("root-pat")).await;
    assert_eq!(listed.as_array().map(Vec::len), Some(1));

    jira.set_version(fake_jira::VERSION_9);
    assert_eq!(
        send(client().get(&ten).bearer_auth("root-pat")).await.0,
        StatusCode::NOT_FOUND
    );
    let (status, created) = send(client().post(&nine).bearer_auth("root-pat").json(&json!({
        "name": "n", "url": "http://127.0.0.1:9/t", "events": ["jira:issue_deleted"],
        "filters": {"issue-related-events-section": ""}, "excludeBody": false})))
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert!(
        created.get("id").is_none(),
        "Jira 9 names a webhook by its self link"
    );
    let link = created["self"].as_str().expect("self");
    assert!(link.starts_with(&nine), "{link}");
    assert_eq!(
        send(client().delete(link).bearer_auth("root-pat")).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(jira.webhooks().len(), 1);
    assert_eq!(jira.webhooks()[0].api, WebhookApi::Jira10);
}

/// The 201 JSON schema of `POST <template>`.
fn created_schema(template: &str) -> &'static Value {
    let schema = &openapi()["paths"][template]["post"]["responses"]["201"]["content"]["application/json"]
        ["schema"];
    assert!(!schema.is_null(), "no 201 schema for POST {template}");
    schema
}

fn new_issue(project: &str, summary: &str) -> Value {
    json!({"fields": {"project": {"key": project}, "summary": summary, "issuetype": {"name": "Task"}}})
}

#[tokio::test]
async fn issues_are_created_and_deleted_over_rest_as_jira_answers() {
    let jira = world().await;
    let issues = format!("{}/rest/api/2/issue", jira.base_url);
    // Documented by Atlassian for the operations, and each answers otherwise without them.
    let operations = &openapi()["paths"];
    assert!(operations["/api/2/issue"]["post"]["responses"]["201"].is_object());
    assert!(operations["/api/2/issue/{issueIdOrKey}"]["delete"]["responses"]["204"].is_object());

    let (status, body) = send(
        client()
            .post(&issues)
            .bearer_auth("alice-pat")
            .json(&new_issue("PROJ", "Write it down")),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "needs Create issues: {body}"
    );
    assert_matches_bean("ErrorCollection", &body);
    assert!(body["errors"]["project"].is_string(), "{body}");

    jira.grant_project("alice", "PROJ", "CREATE_ISSUES");
    let (status, created) = send(
        client()
            .post(&issues)
            .bearer_auth("alice-pat")
            .json(&new_issue("PROJ", "Write it down")),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_valid(created_schema("/api/2/issue"), &created, "POST issue");
    assert_declared("IssueCreateResponse", &created, &[]);
    assert_eq!(
        (&created["id"], &created["key"]),
        (&json!("10103"), &json!("PROJ-4")),
        "the project's next number"
    );
    let (status, issue) = send(
        client()
            .get(created["self"].as_str().expect("self"))
            .bearer_auth("alice-pat"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_matches_operation("/api/2/issue/{issueIdOrKey}", &issue);
    assert_eq!(
        (&issue["key"], &issue["fields"]["summary"]),
        (&json!("PROJ-4"), &json!("Write it down"))
    );

    // What Jira refuses, with its ErrorCollection naming the field.
    for (request, field) in [
        (new_issue("NOPE", "x"), "project"),
        (new_issue("PROJ", " "), "summary"),
        (
            json!({"fields": {"project": {"id": "10000"}, "summary": "x"}}),
            "issuetype",
        ),
        (
            json!({"fields": {"project": {"id": "10000"}, "summary": "x", "issuetype": {"name": "Epic"}}}),
            "issuetype",
        ),
    ] {
        let (status, body) = send(
            client()
                .post(&issues)
                .bearer_auth("alice-pat")
                .json(&request),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{request}: {body}");
        assert_matches_bean("ErrorCollection", &body);
        assert!(body["errors"][field].is_string(), "{request}: {body}");
    }
    let (status, _) = send(client().post(&issues).json(&new_issue("PROJ", "x"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let one = format!("{issues}/PROJ-4");
    let (status, body) = send(client().delete(&one).bearer_auth("alice-pat")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "needs Delete issues: {body}");
    assert_matches_bean("ErrorCollection", &body);
    jira.grant_project("alice", "PROJ", "DELETE_ISSUES");
    assert_eq!(
        send(client().delete(&one).bearer_auth("alice-pat")).await,
        (StatusCode::NO_CONTENT, Value::Null)
    );
    assert_eq!(
        send(client().get(&one).bearer_auth("alice-pat")).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        send(client().delete(&one).bearer_auth("alice-pat")).await.0,
        StatusCode::NOT_FOUND
    );
    // Like Jira, a deleted issue's number is not given again.
    let (_, created) = send(
        client()
            .post(&issues)
            .bearer_auth("alice-pat")
            .json(&new_issue("PROJ", "Again")),
    )
    .await;
    assert_eq!(created["key"], "PROJ-5");
}

#[tokio::test]
async fn the_fakes_own_move_and_rekey_endpoints_change_the_world() {
    let jira = world().await;
    jira.add_project("DEST", "Destination");
    jira.grant_project("alice", "DEST", "BROWSE_PROJECTS");
    let move_url = format!("{}/_fake/issue/PROJ-1/move", jira.base_url);
    let to_dest = json!({"project": "DEST"});
    let (status, _) = send(
        client()
            .post(&move_url)
            .bearer_auth("alice-pat")
            .json(&to_dest),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "Move issues and Create issues needed"
    );
    jira.grant_project("alice", "PROJ", "MOVE_ISSUES");
    jira.grant_project("alice", "DEST", "CREATE_ISSUES");
    let (status, moved) = send(
        client()
            .post(&move_url)
            .bearer_auth("alice-pat")
            .json(&to_dest),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{moved}");
    assert_eq!(
        (&moved["id"], &moved["key"]),
        (&json!("10100"), &json!("DEST-1"))
    );
    // The old key still finds the issue, which answers with its new key and project.
    let (_, issue) = send(
        client()
            .get(format!("{}/rest/api/2/issue/PROJ-1", jira.base_url))
            .bearer_auth("alice-pat"),
    )
    .await;
    assert_eq!(
        (&issue["key"], &issue["fields"]["project"]["key"]),
        (&json!("DEST-1"), &json!("DEST"))
    );
    let (status, body) = send(
        client()
            .post(format!("{}/_fake/issue/PROJ-2/move", jira.base_url))
            .bearer_auth("alice-pat")
            .json(&json!({"project": "DEST", "key": "DEST-1"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a taken key: {body}");

    let rekey = format!("{}/_fake/project/DEST/rekey", jira.base_url);
    let (status, _) = send(
        client()
            .post(&rekey)
            .bearer_auth("alice-pat")
            .json(&json!({"key": "DST"})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "administrators only");
    let (status, project) = send(
        client()
            .post(&rekey)
            .bearer_auth("root-pat")
            .json(&json!({"key": "DST"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{project}");
    assert_matches_operation("/api/2/project/{projectIdOrKey}", &project);
    assert_eq!(project["key"], "DST");
    let (_, issue) = send(
        client()
            .get(format!("{}/rest/api/2/issue/10100", jira.base_url))
            .bearer_auth("alice-pat"),
    )
    .await;
    assert_eq!(issue["key"], "DST-1");
}

#[tokio::test]
async fn changes_over_rest_are_delivered_like_the_test_apis() {
    let jira = world().await;
    let (url, mut received) = super::fake_jira_deliveries::receiver().await;
    send(
        client()
            .post(format!("{}/rest/jira-webhook/1.0/webhooks", jira.base_url))
            .bearer_auth("root-pat")
            .json(
                &json!({"name": "fb", "url": url, "configuration": {"SECRET": "k3y"},
                "events": ["jira:issue_created", "jira:issue_updated", "jira:issue_deleted"]}),
            ),
    )
    .await;
    jira.add_project("DEST", "Destination");
    for (project, permissions) in [
        (
            "PROJ",
            &["CREATE_ISSUES", "MOVE_ISSUES", "DELETE_ISSUES"][..],
        ),
        (
            "DEST",
            &["BROWSE_PROJECTS", "CREATE_ISSUES", "DELETE_ISSUES"][..],
        ),
    ] {
        for permission in permissions {
            jira.grant_project("alice", project, permission);
        }
    }
    let mut next_event = async || {
        let (signature, body) = tokio::time::timeout(PATIENCE, received.recv())
            .await
            .expect("delivered before the answer")
            .expect("open");
        assert!(signature.is_some_and(|s| s.starts_with("sha256=")));
        serde_json::from_str::<Value>(&body).expect("JSON")
    };

    let (status, created) = send(
        client()
            .post(format!("{}/rest/api/2/issue", jira.base_url))
            .bearer_auth("alice-pat")
            .json(&new_issue("PROJ", "Announce me")),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let event = next_event().await;
    assert_eq!(event["webhookEvent"], "jira:issue_created");
    assert_matches_bean("IssueBean", &event["issue"]);
    assert_eq!(
        (&event["issue"]["id"], &event["issue"]["key"]),
        (&created["id"], &json!("PROJ-4"))
    );

    let (status, _) = send(
        client()
            .post(format!("{}/_fake/issue/PROJ-4/move", jira.base_url))
            .bearer_auth("alice-pat")
            .json(&json!({"project": "DEST"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let event = next_event().await;
    assert_eq!(
        (
            &event["webhookEvent"],
            &event["issue_event_type_name"],
            &event["issue"]["key"]
        ),
        (
            &json!("jira:issue_updated"),
            &json!("issue_moved"),
            &json!("DEST-1")
        )
    );

    let (status, _) = send(
        client()
            .delete(format!("{}/rest/api/2/issue/DEST-1", jira.base_url))
            .bearer_auth("alice-pat"),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let event = next_event().await;
    assert_eq!(
        (&event["webhookEvent"], &event["issue"]["id"]),
        (&json!("jira:issue_deleted"), &created["id"])
    );
    let log = jira.deliveries();
    assert_eq!(log.len(), 3);
    assert!(log.iter().all(|d| d.status == Some(202)), "{log:?}");
}
