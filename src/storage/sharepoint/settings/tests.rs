//! Settings parsing: owners, endpoints, mistakes, credentials and the mode.

use super::*;
use serde_json::json;

fn secret() -> HashMap<String, SecretString> {
    HashMap::from([("client_secret".to_string(), SecretString::from("s"))])
}

fn parse(settings: serde_json::Value) -> Result<Settings, StorageError> {
    Settings::parse(&settings, &secret(), NameRules::WINDOWS)
}

#[test]
fn sites_by_url_or_id_and_onedrives() {
    let base =
        |site: &str| json!({"tenant": "contoso.onmicrosoft.com", "client_id": "c", "site": site});
    let owner = |v| parse(v).map(|s| s.owner).unwrap();
    assert_eq!(
        owner(base("https://contoso.sharepoint.com/sites/Legal/")),
        Owner::Site("/sites/contoso.sharepoint.com:/sites/Legal".into())
    );
    assert_eq!(
        owner(base("https://contoso.sharepoint.com")),
        Owner::Site("/sites/contoso.sharepoint.com".into())
    );
    assert_eq!(
        owner(base("contoso.sharepoint.com,1a2b,3c4d")),
        Owner::Site("/sites/contoso.sharepoint.com,1a2b,3c4d".into())
    );
    let user = json!({"tenant": "t", "client_id": "c", "user": "alice@contoso.com"});
    assert_eq!(
        owner(user),
        Owner::User("/users/alice%40contoso.com/drive".into())
    );
}

#[test]
fn defaults_and_endpoints() {
    let s = parse(json!({"tenant": "t", "client_id": "c", "site": "x", "root": "/Jira/Files/"}))
        .unwrap();
    assert_eq!(s.root.to_string(), "Jira/Files");
    assert_eq!(
        s.graph("/drives/d").unwrap().as_str(),
        "https://graph.microsoft.com/v1.0/drives/d"
    );
    assert_eq!(
        s.token_url().unwrap().as_str(),
        "https://login.microsoftonline.com/t/oauth2/v2.0/token"
    );
    assert_eq!(s.scope(), "https://graph.microsoft.com/.default");
    assert_eq!(s.unknown_length_buffer, 4 * MIB);
    let us = parse(json!({"tenant": "t", "client_id": "c", "site": "x",
        "graph_url": "https://graph.microsoft.us/", "login_url": "https://login.microsoftonline.us"}))
    .unwrap();
    assert_eq!(us.scope(), "https://graph.microsoft.us/.default");
    assert!(
        us.token_url()
            .unwrap()
            .as_str()
            .starts_with("https://login.microsoftonline.us/t/")
    );
}

#[test]
fn mistakes_are_refused() {
    for bad in [
        json!({"tenant": "t", "client_id": "c"}),
        json!({"tenant": "t", "client_id": "c", "site": "x", "user": "u"}),
        json!({"tenant": "t", "client_id": "c", "user": "u", "drive": "Documents"}),
        json!({"tenant": "t", "client_id": "c", "site": "http://contoso.sharepoint.com/sites/a"}),
        json!({"tenant": "t", "client_id": "c", "site": "x", "graph_url": "ftp://g"}),
        json!({"tenant": "t", "client_id": "c", "site": "x", "root": "a/../b"}),
        json!({"tenant": "t", "client_id": "c", "site": "x", "root": "a:b"}),
        json!({"tenant": "t/x", "client_id": "c", "site": "x"}),
        json!({"tenant": "t", "client_id": "c", "site": "x", "sites": "typo"}),
        json!({"tenant": "t", "client_id": "c", "site": "x", "assertion_alg": "HS256"}),
        json!({"tenant": "t", "client_id": "c", "site": "x", "unknown_length_buffer_mib": 1024}),
    ] {
        assert!(parse(bad.clone()).is_err(), "{bad} accepted");
    }
}

#[test]
fn exactly_one_credential() {
    let settings = json!({"tenant": "t", "client_id": "c", "site": "x"});
    let with = |pairs: &[(&str, &str)]| {
        let secrets = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), SecretString::from(v.to_string())))
            .collect();
        Settings::parse(&settings, &secrets, NameRules::WINDOWS)
    };
    assert!(with(&[]).is_err());
    assert!(
        with(&[
            ("client_secret", "s"),
            ("certificate", "c"),
            ("private_key", "k")
        ])
        .is_err()
    );
    assert!(with(&[("certificate", "c")]).is_err());
    assert!(with(&[("certificate", "not pem"), ("private_key", "not pem")]).is_err());
    assert!(matches!(
        with(&[("client_secret", "s")]).map(|s| s.credential),
        Ok(Credential::Secret(_))
    ));
}

#[test]
fn the_mode_is_app_unless_delegated_is_asked_for() {
    let base = json!({"tenant": "t", "client_id": "c", "site": "x"});
    assert_eq!(parse(base.clone()).map(|s| s.mode).unwrap(), Mode::App);
    let mut delegated = base.clone();
    delegated["mode"] = json!("delegated");
    let s = parse(delegated).unwrap();
    assert_eq!(s.mode, Mode::Delegated);
    assert_eq!(
        s.authorize_url().unwrap().as_str(),
        "https://login.microsoftonline.com/t/oauth2/v2.0/authorize"
    );
    let mut unknown = base;
    unknown["mode"] = json!("user");
    assert!(parse(unknown).is_err());
}

#[test]
fn background_work_acts_as_the_app_unless_a_delegated_connection_says_otherwise() {
    let app = json!({"tenant": "t", "client_id": "c", "site": "x"});
    assert!(parse(app.clone()).unwrap().app_in_background);
    let mut app_none = app.clone();
    app_none["background"] = json!("none");
    assert!(
        parse(app_none).is_err(),
        "an app connection always acts as itself"
    );
    let mut delegated = app;
    delegated["mode"] = json!("delegated");
    assert!(!parse(delegated.clone()).unwrap().app_in_background);
    for (value, expected) in [("none", Some(false)), ("app", Some(true)), ("user", None)] {
        let mut settings = delegated.clone();
        settings["background"] = json!(value);
        assert_eq!(parse(settings).ok().map(|s| s.app_in_background), expected);
    }
}

#[test]
fn the_timeout_is_a_minute_unless_set_within_bounds() {
    let base = json!({"tenant": "t", "client_id": "c", "site": "x"});
    assert_eq!(
        parse(base.clone()).unwrap().timeout,
        Duration::from_secs(60)
    );
    for (secs, expected) in [(1, Some(1)), (3600, Some(3600)), (0, None), (3601, None)] {
        let mut settings = base.clone();
        settings["timeout_secs"] = json!(secs);
        assert_eq!(
            parse(settings).ok().map(|s| s.timeout.as_secs()),
            expected,
            "{secs}"
        );
    }
}
