//! The fake Jira (`tests/fake-jira`) must answer in Jira Data Center 10.3's shapes, or the
//! tests built on it prove nothing about the real thing. Every 200 body is validated against
//! the schema Atlassian's OpenAPI document gives for that operation, and the behaviour
//! filebridge relies on (401, 404 for hidden issues, holds, call counts) is pinned down.

use std::sync::OnceLock;
use std::time::Duration;

use fake_jira::FakeJira;
use reqwest::StatusCode;
use serde_json::{Value, json};

const OPENAPI: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/reference/jira-dc-10.3-openapi.json"
);

/// Generous bound on awaiting a condition, so a bug fails the test instead of hanging CI.
pub(crate) const PATIENCE: Duration = Duration::from_secs(10);

pub(crate) fn openapi() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let text = std::fs::read_to_string(OPENAPI).unwrap_or_else(|e| {
            panic!(
                "cannot read Atlassian's OpenAPI document for Jira DC 10.3 at {OPENAPI}: {e}. \
                 It lives in shared/reference/, and shared/ must sit beside the repository checkout"
            )
        });
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{OPENAPI} is not JSON: {e}"))
    })
}

/// The document's `components`, optionally with its known mistakes corrected.
///
/// The one correction: `IssueBean.fields` says every field value is an object, but Jira sends
/// `summary` as a string, `labels` as an array and unset fields as null (Atlassian's own
/// example for the same bean does). The generator rendered Java's `Map<String, Object>` as
/// "map of objects". [`issue_matches_openapi`] checks that this is the only disagreement.
fn components(corrected: bool) -> Value {
    let mut components = openapi()["components"].clone();
    if corrected {
        let fields = &mut components["schemas"]["IssueBean"]["properties"]["fields"];
        assert_eq!(
            fields["additionalProperties"]["type"], "object",
            "IssueBean.fields changed upstream"
        );
        fields["additionalProperties"] = json!({});
    }
    components
}

/// Validates `body` against `schema`, where `#/components/...` refers to the OpenAPI document's
/// components; returns "instance path: message" for each violation.
pub(crate) fn violations(schema: &Value, body: &Value, corrected: bool) -> Vec<String> {
    // The `$ref`s are document-relative (`#/components/schemas/X`), so embed the components
    // in the document the validator compiles. OpenAPI 3.0 schemas are close to draft 4.
    let mut document = schema.clone();
    document["components"] = components(corrected);
    let validator = jsonschema::draft4::options()
        .should_validate_formats(true)
        .build(&document)
        .unwrap_or_else(|e| panic!("the OpenAPI schema {schema} does not compile: {e}"));
    validator
        .iter_errors(body)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

/// The schema of the 200 JSON answer to `GET <template>` (a path of the document, which is
/// relative to its server URL `/rest`).
pub(crate) fn response_schema(template: &str) -> &'static Value {
    let schema = &openapi()["paths"][template]["get"]["responses"]["200"]["content"]["application/json"]
        ["schema"];
    assert!(
        !schema.is_null(),
        "the OpenAPI document has no 200 JSON schema for GET {template}"
    );
    schema
}

pub(crate) fn assert_matches_operation(template: &str, body: &Value) {
    let errors = violations(response_schema(template), body, true);
    assert!(
        errors.is_empty(),
        "GET {template} answered outside its OpenAPI schema:\n{}\nbody: {body:#}",
        errors.join("\n")
    );
}

pub(crate) fn assert_matches_bean(bean: &str, body: &Value) {
    let errors = violations(
        &json!({"$ref": format!("#/components/schemas/{bean}")}),
        body,
        true,
    );
    assert!(
        errors.is_empty(),
        "not a {bean}:\n{}\nbody: {body:#}",
        errors.join("\n")
    );
}

/// No bean here forbids unknown properties, so a misspelt one (`displayname`) would pass the
/// schema; catch it by requiring every top-level property to be declared, except the real
/// Jira properties the document leaves out (`extras`).
pub(crate) fn assert_declared(bean: &str, body: &Value, extras: &[&str]) {
    let declared = &openapi()["components"]["schemas"][bean]["properties"];
    let body = body
        .as_object()
        .unwrap_or_else(|| panic!("a {bean} must be an object: {body}"));
    for key in body.keys() {
        assert!(
            declared.get(key).is_some() || extras.contains(&key.as_str()),
            "{bean} declares no property {key:?}"
        );
    }
}

pub(crate) fn client() -> reqwest::Client {
    // reqwest is built without a default TLS provider; plain http needs none, but building a
    // client may still ask for one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// Sends the request; returns the status and the JSON body (null when empty).
pub(crate) async fn send(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let response = request.send().await.expect("the fake Jira answers");
    let status = response.status();
    let bytes = response.bytes().await.expect("read the body");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{status}: the body is not JSON ({e})"))
    };
    (status, body)
}

async fn get_bearer(jira: &FakeJira, path: &str, token: &str) -> (StatusCode, Value) {
    send(
        client()
            .get(format!("{}{path}", jira.base_url))
            .bearer_auth(token),
    )
    .await
}

/// A world with `alice` (browse + attach on PROJ, the issues PROJ-1 and hidden PROJ-2) and
/// `bob` (no permissions at all), each with a token.
async fn world() -> FakeJira {
    let jira = FakeJira::start().await;
    jira.add_user("alice", "Alice Anders");
    jira.add_user("bob", "Bob Brown");
    jira.add_token("alice", "alice-pat");
    jira.add_token("bob", "bob-pat");
    jira.add_project("PROJ", "Project");
    jira.add_issue("PROJ", "PROJ-1");
    jira.add_issue("PROJ", "PROJ-2");
    jira.restrict_issue("PROJ-2", &["carol"]);
    jira.grant_project("alice", "PROJ", "BROWSE_PROJECTS");
    jira.grant_project("alice", "PROJ", "CREATE_ATTACHMENTS");
    jira
}

/// Guards against vacuous checks: if `$ref`s stopped resolving (a jsonschema upgrade, a moved
/// document), every body would "match".
#[test]
fn schema_checks_reject_wrong_shapes() {
    let wrong_user = json!({"key": "JIRAUSER10100", "name": "x", "active": "yes"});
    assert!(!violations(response_schema("/api/2/myself"), &wrong_user, true).is_empty());
    let wrong_permission =
        json!({"permissions": {"X": {"id": "1", "type": "USER", "havePermission": true}}});
    assert!(
        !violations(
            response_schema("/api/2/mypermissions"),
            &wrong_permission,
            true
        )
        .is_empty()
    );
    let wrong_issue = json!({"id": 10100, "key": "PROJ-1", "fields": {}});
    assert!(
        !violations(
            response_schema("/api/2/issue/{issueIdOrKey}"),
            &wrong_issue,
            true
        )
        .is_empty()
    );
    let wrong_project = json!({"key": "PROJ", "self": "not a uri"});
    assert!(
        !violations(
            response_schema("/api/2/project/{projectIdOrKey}"),
            &wrong_project,
            true
        )
        .is_empty()
    );
}

#[tokio::test]
async fn server_info_matches_openapi_and_is_anonymous() {
    let jira = world().await;
    let (status, body) =
        send(client().get(format!("{}/rest/api/2/serverInfo", jira.base_url))).await;
    assert_eq!(status, StatusCode::OK);
    assert_matches_operation("/api/2/serverInfo", &body);
    assert_eq!(body["baseUrl"], json!(jira.base_url));
    assert_eq!(body["version"], "10.3.1");
    assert_eq!(body["versionNumbers"], json!([10, 3, 1]));
    assert_eq!(body["deploymentType"], "Server");
    assert!(body["buildNumber"].is_u64());
}

#[tokio::test]
async fn myself_matches_openapi_for_every_credential() {
    let jira = world().await;
    let key = jira.add_user("carol", "Carol C.");
    assert!(key.starts_with("JIRAUSER1"), "generated key {key}");
    jira.add_token("carol", "carol-pat");
    jira.add_session("carol", "SESSION-C");
    jira.add_remember_me("carol", "REMEMBER-C");
    jira.add_to_group("carol", "filebridge-admins");

    let url = format!("{}/rest/api/2/myself", jira.base_url);
    let by_token = send(client().get(&url).bearer_auth("carol-pat")).await;
    let by_session = send(
        client()
            .get(&url)
            .header("Cookie", "atlassian.xsrf.token=x; JSESSIONID=SESSION-C"),
    )
    .await;
    let by_remember_me = send(
        client()
            .get(&url)
            .header("Cookie", "seraph.rememberme.cookie=REMEMBER-C"),
    )
    .await;
    for (status, body) in [&by_token, &by_session, &by_remember_me] {
        assert_eq!(*status, StatusCode::OK, "{body}");
        assert_matches_operation("/api/2/myself", body);
        assert_declared("UserBean", body, &[]);
        // What filebridge reads.
        assert_eq!(body["key"], json!(key));
        assert_eq!(body["name"], "carol");
        assert_eq!(body["displayName"], "Carol C.");
        assert_eq!(body["active"], true);
        assert!(
            body["emailAddress"].is_string()
                && body["timeZone"].is_string()
                && body["locale"].is_string()
        );
        assert!(
            body["self"]
                .as_str()
                .is_some_and(|s| s.starts_with(&jira.base_url))
        );
    }

    let (status, body) = send(
        client()
            .get(format!("{url}?expand=groups"))
            .bearer_auth("carol-pat"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_matches_operation("/api/2/myself", &body);
    let items = body["groups"]["items"]
        .as_array()
        .expect("groups.items with expand=groups");
    assert_eq!(body["groups"]["size"], json!(items.len()));
    assert!(
        items.iter().any(|g| g["name"] == "filebridge-admins"),
        "{body}"
    );
    for group in items {
        assert_matches_bean("GroupJsonBean", group);
    }
}

#[tokio::test]
async fn mypermissions_matches_openapi_in_every_context() {
    let jira = world().await;
    jira.add_user("root", "Root");
    jira.add_token("root", "root-pat");
    jira.grant_global("root", "SYSTEM_ADMIN");

    for query in [
        "",
        "?projectKey=PROJ",
        "?projectId=10000",
        "?issueKey=PROJ-1",
        "?issueId=10100",
    ] {
        let (status, body) = get_bearer(
            &jira,
            &format!("/rest/api/2/mypermissions{query}"),
            "alice-pat",
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{query}: {body}");
        assert_matches_operation("/api/2/mypermissions", &body);
        let permissions = body["permissions"]
            .as_object()
            .expect("permissions is an object");
        for key in [
            "ADMINISTER",
            "SYSTEM_ADMIN",
            "BROWSE_PROJECTS",
            "CREATE_ISSUES",
            "CREATE_ATTACHMENTS",
            "DELETE_ALL_ATTACHMENTS",
            "DELETE_OWN_ATTACHMENTS",
            "EDIT_ISSUES",
            "PROJECT_ADMIN",
            "USER_PICKER",
        ] {
            assert!(permissions.contains_key(key), "{query}: no {key}");
        }
        for (key, permission) in permissions {
            assert_declared(
                "PermissionJsonBean",
                permission,
                &["havePermission", "deprecatedKey"],
            );
            assert_eq!(permission["key"], json!(key));
            assert!(
                permission["havePermission"].is_boolean(),
                "{key}: {permission}"
            );
        }
        let have = |key: &str| permissions[key]["havePermission"] == true;
        assert!(
            have("BROWSE_PROJECTS") && have("CREATE_ATTACHMENTS") && have("BROWSE"),
            "{query}"
        );
        assert!(
            !have("DELETE_ALL_ATTACHMENTS") && !have("ADMINISTER") && !have("SYSTEM_ADMIN"),
            "{query}"
        );
    }

    let (status, body) = get_bearer(&jira, "/rest/api/2/mypermissions", "root-pat").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["permissions"]["SYSTEM_ADMIN"]["havePermission"], true);
    assert_eq!(
        body["permissions"]["ADMINISTER"]["havePermission"], true,
        "system admins are admins"
    );
    assert_eq!(
        body["permissions"]["BROWSE_PROJECTS"]["havePermission"],
        false
    );
}

#[tokio::test]
async fn mypermissions_hides_what_the_user_may_not_see() {
    let jira = world().await;
    for (query, token) in [
        ("?issueKey=PROJ-2", "alice-pat"), // security level excludes alice
        ("?issueKey=PROJ-1", "bob-pat"),   // no browse permission
        ("?issueKey=NOPE-1", "alice-pat"), // no such issue
        ("?projectKey=PROJ", "bob-pat"),
        ("?projectId=10999", "alice-pat"),
    ] {
        let (status, body) =
            get_bearer(&jira, &format!("/rest/api/2/mypermissions{query}"), token).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{query} as {token}: {body}");
        assert_matches_bean("ErrorCollection", &body);
        assert!(
            body["errorMessages"]
                .as_array()
                .is_some_and(|m| !m.is_empty()),
            "{body}"
        );
    }
    let (status, _) =
        send(client().get(format!("{}/rest/api/2/mypermissions", jira.base_url))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn issue_matches_openapi() {
    let jira = world().await;
    let (status, body) = get_bearer(&jira, "/rest/api/2/issue/PROJ-1", "alice-pat").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_matches_operation("/api/2/issue/{issueIdOrKey}", &body);
    assert_declared("IssueBean", &body, &["expand"]);
    assert_eq!(body["id"], "10100");
    assert_eq!(body["key"], "PROJ-1");
    assert_eq!(body["fields"]["project"]["key"], "PROJ");
    assert_eq!(body["fields"]["project"]["id"], "10000");
    assert!(body["fields"]["summary"].is_string());
    for (field, bean) in [
        ("project", "ProjectJsonBean"),
        ("issuetype", "IssueTypeJsonBean"),
        ("status", "StatusJsonBean"),
        ("priority", "PriorityJsonBean"),
    ] {
        assert_matches_bean(bean, &body["fields"][field]);
        assert_declared(bean, &body["fields"][field], &[]);
    }

    // Against the uncorrected document, the only complaints are non-object field values.
    let raw = violations(response_schema("/api/2/issue/{issueIdOrKey}"), &body, false);
    for violation in &raw {
        let path = violation.split(':').next().unwrap_or_default();
        let field = path.strip_prefix("/fields/").filter(|f| !f.contains('/'));
        let value = field.map(|f| &body["fields"][f]);
        assert!(
            value.is_some_and(|v| !v.is_object()),
            "unexpected disagreement with the raw document: {violation}"
        );
    }

    // By id, the same issue.
    let (status, by_id) = get_bearer(&jira, "/rest/api/2/issue/10100", "alice-pat").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(by_id, body);
}

#[tokio::test]
async fn project_matches_openapi() {
    let jira = world().await;
    let (status, body) = get_bearer(&jira, "/rest/api/2/project/PROJ", "alice-pat").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_matches_operation("/api/2/project/{projectIdOrKey}", &body);
    assert_eq!(
        (body["id"].as_str(), body["key"].as_str()),
        (Some("10000"), Some("PROJ"))
    );
    let (status, _) = get_bearer(&jira, "/rest/api/2/project/PROJ", "bob-pat").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn hidden_issues_answer_404_not_403() {
    let jira = world().await;
    jira.add_user("carol", "Carol C.");
    jira.add_token("carol", "carol-pat");
    jira.grant_project("carol", "PROJ", "BROWSE_PROJECTS");

    for (path, token) in [
        ("/rest/api/2/issue/PROJ-2", "alice-pat"), // security level excludes alice
        ("/rest/api/2/issue/10101", "alice-pat"),
        ("/rest/api/2/issue/PROJ-1", "bob-pat"), // no browse permission
        ("/rest/api/2/issue/NOPE-9", "alice-pat"),
    ] {
        let (status, body) = get_bearer(&jira, path, token).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path} as {token}: {body}");
        assert_matches_bean("ErrorCollection", &body);
    }
    let (status, body) = get_bearer(&jira, "/rest/api/2/issue/PROJ-2", "carol-pat").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "carol is in PROJ-2's security level"
    );
    assert_eq!(body["fields"]["security"]["name"], "Restricted");

    let (status, _) =
        send(client().get(format!("{}/rest/api/2/issue/PROJ-1", jira.base_url))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "anonymous");
}

#[tokio::test]
async fn moved_issue_keeps_its_id_and_answers_to_the_old_key() {
    let jira = world().await;
    jira.add_project("NEW", "New home");
    jira.grant_project("alice", "NEW", "BROWSE_PROJECTS");
    jira.move_issue("PROJ-1", "NEW", "NEW-7");
    let (status, body) = get_bearer(&jira, "/rest/api/2/issue/PROJ-1", "alice-pat").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (body["id"].as_str(), body["key"].as_str()),
        (Some("10100"), Some("NEW-7"))
    );
    assert_eq!(body["fields"]["project"]["key"], "NEW");
}

#[tokio::test]
async fn unknown_or_revoked_credentials_answer_401() {
    let jira = world().await;
    jira.add_session("alice", "SESSION-A");
    let myself = format!("{}/rest/api/2/myself", jira.base_url);

    let (status, _) = send(client().get(&myself).bearer_auth("nobody-pat")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = send(client().get(&myself).header("Cookie", "JSESSIONID=stale")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = send(client().get(&myself)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = send(
        client()
            .get(format!("{}/rest/api/2/serverInfo", jira.base_url))
            .bearer_auth("nobody-pat"),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "an unknown token is refused even where anonymous is allowed"
    );

    // The bearer token wins over cookies, both ways.
    let both = client()
        .get(&myself)
        .header("Cookie", "JSESSIONID=SESSION-A");
    assert_eq!(
        send(both.bearer_auth("nobody-pat")).await.0,
        StatusCode::UNAUTHORIZED
    );
    let both = client()
        .get(&myself)
        .header("Cookie", "JSESSIONID=SESSION-A");
    assert_eq!(send(both.bearer_auth("bob-pat")).await.1["name"], "bob");

    jira.revoke_credential("alice-pat");
    jira.revoke_credential("SESSION-A");
    assert_eq!(
        send(client().get(&myself).bearer_auth("alice-pat")).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, _) = send(
        client()
            .get(&myself)
            .header("Cookie", "JSESSIONID=SESSION-A"),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    jira.set_active("bob", false);
    assert_eq!(
        send(client().get(&myself).bearer_auth("bob-pat")).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn hold_keeps_requests_waiting_until_released() {
    let jira = world().await;
    let hold = jira.hold();
    let url = format!("{}/rest/api/2/myself", jira.base_url);
    let requests: Vec<_> = (0..2)
        .map(|_| tokio::spawn(send(client().get(&url).bearer_auth("alice-pat"))))
        .collect();
    tokio::time::timeout(PATIENCE, jira.wait_for_waiting(2))
        .await
        .expect("two requests reach the hold");
    assert_eq!(
        jira.calls("/rest/api/2/myself"),
        2,
        "counted on arrival, before the hold"
    );
    assert!(
        requests.iter().all(|r| !r.is_finished()),
        "held requests must not be answered"
    );

    hold.release();
    for request in requests {
        let (status, body) = tokio::time::timeout(PATIENCE, request)
            .await
            .expect("answered after release")
            .expect("join");
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["name"], "alice");
    }
}

#[tokio::test]
async fn unavailable_jira_answers_503_with_retry_after() {
    let jira = world().await;
    jira.set_unavailable(true);
    let response = client()
        .get(format!("{}/rest/api/2/myself", jira.base_url))
        .bearer_auth("alice-pat")
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("5")
    );
    jira.set_unavailable(false);
    assert_eq!(
        get_bearer(&jira, "/rest/api/2/myself", "alice-pat").await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn calls_and_last_headers_are_recorded_per_path() {
    let jira = world().await;
    assert_eq!(jira.calls("/rest/api/2/myself"), 0);
    assert_eq!(jira.last_headers("/rest/api/2/myself"), None);
    let url = format!("{}/rest/api/2/myself?expand=groups", jira.base_url);
    send(
        client()
            .get(&url)
            .header("Cookie", "JSESSIONID=abc; AWSALB=sticky"),
    )
    .await;
    send(client().get(&url).bearer_auth("alice-pat")).await;
    send(client().get(format!("{}/rest/api/2/serverInfo", jira.base_url))).await;
    assert_eq!(jira.calls("/rest/api/2/myself"), 2);
    assert_eq!(jira.calls("/rest/api/2/serverInfo"), 1);

    // The last request to the path, not the first.
    let headers = jira.last_headers("/rest/api/2/myself").expect("recorded");
    assert!(
        headers
            .iter()
            .any(|(n, v)| n == "authorization" && v == "Bearer alice-pat"),
        "{headers:?}"
    );
    assert!(!headers.iter().any(|(n, _)| n == "cookie"), "{headers:?}");
}

#[tokio::test]
async fn unknown_paths_answer_404_json() {
    let jira = world().await;
    let (status, body) = get_bearer(&jira, "/rest/api/2/nothing-here", "alice-pat").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.is_object(), "{body}");
}

#[tokio::test]
async fn stopped_jira_is_unreachable() {
    let jira = world().await;
    assert_eq!(
        get_bearer(&jira, "/rest/api/2/myself", "alice-pat").await.0,
        StatusCode::OK
    );
    tokio::time::timeout(PATIENCE, jira.stop())
        .await
        .expect("stop completes");
    // A fresh client, so no pooled connection from before the stop is reused.
    let result = client()
        .get(format!("{}/rest/api/2/myself", jira.base_url))
        .send()
        .await;
    assert!(
        result.is_err(),
        "expected a connection error, got {result:?}"
    );
}
