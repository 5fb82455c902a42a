//! App-only tokens against the fake identity platform, and certificate loading.

use std::sync::Arc;

use super::*;
use fake_graph::{FakeGraph, fixtures};

fn egress() -> EgressClient {
    let settings = crate::config::EgressSettings {
        allow: vec!["127.0.0.1".into()],
        proxy: None,
        ca_file: None,
    };
    EgressClient::new(&settings, None).unwrap()
}

fn source(graph: &FakeGraph, tenant: &str, app: &str, credential: Credential) -> AppOnly {
    AppOnly::new(
        egress(),
        Url::parse(&graph.token_url(tenant)).unwrap(),
        app.to_string(),
        "https://graph.microsoft.com/.default".into(),
        credential,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_token_request_for_a_burst_and_a_new_one_after_a_refusal() {
    let graph = FakeGraph::start().await;
    let tenant = graph.add_tenant("contoso.onmicrosoft.com");
    let app = graph.add_app(&tenant);
    graph.add_client_secret(&app, "s3cret");
    let tokens = Arc::new(source(
        &graph,
        &tenant,
        &app,
        Credential::Secret(SecretString::from("s3cret")),
    ));
    let burst: Vec<_> = (0..20)
        .map(|_| {
            let tokens = Arc::clone(&tokens);
            tokio::spawn(async move { tokens.token().await.unwrap() })
        })
        .collect();
    let mut seen = std::collections::HashSet::new();
    for task in burst {
        seen.insert(task.await.unwrap().expose_secret().to_string());
    }
    assert_eq!(seen.len(), 1);
    assert_eq!(graph.token_requests(), 1);
    let token = tokens.token().await.unwrap();
    assert_eq!(graph.token_requests(), 1, "cached");
    tokens.rejected(&SecretString::from("another")).await;
    tokens.token().await.unwrap();
    assert_eq!(
        graph.token_requests(),
        1,
        "an older token's refusal changes nothing"
    );
    tokens.rejected(&token).await;
    let renewed = tokens.token().await.unwrap();
    assert_ne!(renewed.expose_secret(), token.expose_secret());
    assert_eq!(graph.token_requests(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_lived_tokens_are_renewed_before_they_expire() {
    let graph = FakeGraph::start().await;
    let tenant = graph.add_tenant("contoso.onmicrosoft.com");
    let app = graph.add_app(&tenant);
    graph.add_client_secret(&app, "s");
    // Two seconds: renewed after one (half its life).
    graph.set_access_token_lifetime(2);
    let tokens = source(
        &graph,
        &tenant,
        &app,
        Credential::Secret(SecretString::from("s")),
    );
    tokens.token().await.unwrap();
    tokens.token().await.unwrap();
    assert_eq!(graph.token_requests(), 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    tokens.token().await.unwrap();
    assert_eq!(graph.token_requests(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_sign_assertions_graph_accepts() {
    let graph = FakeGraph::start().await;
    let tenant = graph.add_tenant("contoso.onmicrosoft.com");
    let app = graph.add_app(&tenant);
    graph.add_certificate(&app, fixtures::APP_CERT_PEM);
    for alg in [AssertionAlg::Rs256, AssertionAlg::Ps256] {
        let (certificate, key) =
            load_certificate(fixtures::APP_CERT_PEM, fixtures::APP_KEY_PEM).unwrap();
        let credential = Credential::Certificate {
            certificate,
            key,
            alg,
        };
        source(&graph, &tenant, &app, credential)
            .token()
            .await
            .unwrap_or_else(|e| panic!("{alg:?}: {e}"));
    }
    // Another certificate's key is refused.
    let (certificate, key) =
        load_certificate(fixtures::OTHER_CERT_PEM, fixtures::OTHER_KEY_PEM).unwrap();
    let other = Credential::Certificate {
        certificate,
        key,
        alg: AssertionAlg::Rs256,
    };
    let refused = source(&graph, &tenant, &app, other).token().await;
    assert!(
        matches!(refused, Err(StorageError::PermissionDenied)),
        "{:?}",
        refused.err()
    );
}

#[test]
fn keys_load_in_pkcs1_and_pkcs8_and_the_header_names_the_certificate() {
    use rsa::pkcs8::EncodePrivateKey;
    let pkcs1 =
        rsa::RsaPrivateKey::from_pkcs1_der(&fixtures::pem_der(fixtures::APP_KEY_PEM)).unwrap();
    let der = pkcs1.to_pkcs8_der().unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_bytes());
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    let pkcs8_pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        lines.join("\n")
    );
    let (certificate, key) = load_certificate(fixtures::APP_CERT_PEM, &pkcs8_pem).unwrap();
    let jwt = assertion(
        &certificate,
        &key,
        AssertionAlg::Ps256,
        "aud",
        "client",
        1000,
    )
    .unwrap();
    let header = jsonwebtoken::decode_header(&jwt).unwrap();
    let (x5t, x5t256) = fixtures::thumbprints(fixtures::APP_CERT_PEM);
    assert_eq!(header.alg, Algorithm::PS256);
    assert_eq!(header.x5t.as_deref(), Some(x5t.as_str()));
    assert_eq!(header.x5t_s256.as_deref(), Some(x5t256.as_str()));
    assert!(load_certificate("junk", fixtures::APP_KEY_PEM).is_err());
    assert!(load_certificate(fixtures::APP_CERT_PEM, "junk").is_err());
}
