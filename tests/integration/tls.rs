//! TLS everywhere (brief §2, promise 9): filebridge's own HTTPS listener speaks TLS 1.2 and
//! 1.3 and sends HSTS, and its PostgreSQL connections verify the server against a custom CA
//! given as `sslrootcert` (libpq style) and refuse a server that CA did not sign.
//!
//! Certificates are made per test with rcgen: a CA and a leaf signed by it, written as PEM
//! files into a temporary directory.

use std::error::Error as StdError;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fake_jira::FakeJira;
use filebridge::app::{AppError, Application, Migrations};
use filebridge::db::DbError;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use sqlx::{Connection, PgConnection};

use crate::helpers::{
    BASE, OwnCluster, TestConfig, create_database, http_client, spawn_app_with, start,
};

/// A certificate authority of the test's own.
struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl TestCa {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("self-signed CA");
        Self {
            issuer: Issuer::new(params, key),
            pem: cert.pem(),
        }
    }

    /// A server certificate for `names` (DNS names or IP addresses) signed by this CA:
    /// (certificate PEM, private key PEM).
    fn server_cert(&self, names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("leaf params");
        params
            .distinguished_name
            .push(DnType::CommonName, "filebridge test server");
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign leaf");
        (cert.pem(), key.serialize_pem())
    }

    fn der(&self) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(self.pem.as_bytes()).expect("CA PEM")
    }

    fn write(&self, dir: &Path, name: &str) -> PathBuf {
        write(dir, name, &self.pem)
    }
}

fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write PEM file");
    path
}

/// An HTTPS client that trusts only `ca` and speaks only the given TLS versions.
fn https_client(
    ca: &TestCa,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der()).expect("add CA to the root store");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(versions)
    .expect("protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .no_proxy()
        .build()
        .expect("https client")
}

/// The rustls error somewhere in `error`'s chain. `io::Error::source()` skips the error it
/// wraps (it returns the inner error's source), so io errors are opened with `get_ref()`.
fn rustls_error(error: &(dyn StdError + 'static)) -> Option<rustls::Error> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            return Some(tls.clone());
        }
        if let Some(io) = error.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && let Some(tls) = rustls_error(inner)
        {
            return Some(tls);
        }
        next = error.source();
    }
    None
}

fn error_chain(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(error) = next {
        text.push_str(": ");
        text.push_str(&error.to_string());
        next = error.source();
    }
    text
}

fn assert_unknown_issuer(error: &(dyn StdError + 'static)) {
    assert_eq!(
        rustls_error(error),
        Some(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer
        )),
        "expected a certificate from an unknown CA to be refused, got: {}",
        error_chain(error)
    );
}

#[tokio::test]
async fn direct_https_serves_tls_1_2_and_1_3_with_hsts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = TestCa::new("filebridge test HTTPS CA");
    let (cert, key) = ca.server_cert(&["localhost", "127.0.0.1"]);
    let cert_path = write(dir.path(), "server.pem", &cert);
    let key_path = write(dir.path(), "server.key", &key);
    let app = spawn_app_with(|c| {
        c.set("SERVER__TLS_CERT_FILE", cert_path.to_str().unwrap())
            .set("SERVER__TLS_KEY_FILE", key_path.to_str().unwrap());
    })
    .await;
    let url = format!("https://localhost:{}{BASE}/healthz", app.port);

    // A client pinned to one version succeeds only if the server speaks that version.
    for (label, version) in [
        ("TLS 1.2", &rustls::version::TLS12),
        ("TLS 1.3", &rustls::version::TLS13),
    ] {
        let response = https_client(&ca, &[version])
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{label}: {}", error_chain(&e)));
        assert_eq!(response.status(), 200, "{label}");
        let hsts = response
            .headers()
            .get("strict-transport-security")
            .unwrap_or_else(|| panic!("{label}: no strict-transport-security header"))
            .to_str()
            .unwrap();
        assert!(hsts.starts_with("max-age="), "{label}: HSTS {hsts}");
        let max_age: u64 = hsts["max-age=".len()..]
            .split(';')
            .next()
            .unwrap()
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{label}: HSTS max-age in {hsts}"));
        assert!(max_age > 0, "{label}: HSTS {hsts}");
    }

    // A client that trusts another CA refuses the server's certificate.
    let stranger = TestCa::new("some other CA");
    let refused = https_client(
        &stranger,
        &[&rustls::version::TLS13, &rustls::version::TLS12],
    )
    .get(&url)
    .send()
    .await
    .expect_err("a client that does not trust the CA must not get a response");
    assert!(refused.is_connect(), "{}", error_chain(&refused));
    assert_unknown_issuer(&refused);

    // Plain HTTP on the TLS port gets no response at all.
    let plain = http_client()
        .get(format!("http://127.0.0.1:{}{BASE}/healthz", app.port))
        .send()
        .await;
    match plain {
        Err(_) => {}
        Ok(response) => panic!(
            "plain HTTP on the HTTPS port got a response: {}",
            response.status()
        ),
    }

    // And the listener is still fine afterwards.
    let again = https_client(&ca, &[&rustls::version::TLS13])
        .get(&url)
        .send()
        .await
        .expect("HTTPS after the plain-HTTP attempt");
    assert_eq!(again.status(), 200);
}

/// `url` pointed at `host`, with `sslmode=verify-full&sslrootcert=<ca>`.
fn verify_full_url(url: &str, host: &str, ca: &Path) -> String {
    let mut url = url::Url::parse(url).expect("database URL");
    url.set_host(Some(host)).expect("host");
    url.query_pairs_mut()
        .append_pair("sslmode", "verify-full")
        .append_pair("sslrootcert", ca.to_str().unwrap());
    url.to_string()
}

/// Whether this connection's own session is encrypted, according to the server.
async fn session_is_encrypted(url: &str) -> bool {
    let mut conn = PgConnection::connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {}", error_chain(&e)));
    let ssl: bool = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(&mut conn)
        .await
        .expect("query pg_stat_ssl");
    conn.close().await.expect("close");
    ssl
}

#[tokio::test]
async fn postgres_verify_full_works_with_a_custom_ca_and_refuses_another() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = TestCa::new("filebridge test PostgreSQL CA");
    let (cert, key) = ca.server_cert(&["localhost", "127.0.0.1"]);
    let cert_path = write(dir.path(), "server.crt", &cert);
    let key_path = write(dir.path(), "server.key", &key);
    let ca_path = ca.write(dir.path(), "ca.pem");
    let other_ca_path = TestCa::new("some other CA").write(dir.path(), "other-ca.pem");

    // A second cluster whose certificate, from the same CA, names another host: it shows
    // that verify-full checks the name, not just the chain. Both start side by side.
    let (misnamed_cert, misnamed_key) = ca.server_cert(&["db.example.test"]);
    let misnamed_cert_path = write(dir.path(), "misnamed.crt", &misnamed_cert);
    let misnamed_key_path = write(dir.path(), "misnamed.key", &misnamed_key);
    let (cluster, misnamed) = tokio::join!(
        tokio::task::spawn_blocking(move || OwnCluster::start(Some((&cert_path, &key_path)))),
        tokio::task::spawn_blocking(move || {
            OwnCluster::start(Some((&misnamed_cert_path, &misnamed_key_path)))
        }),
    );
    let (cluster, misnamed) = (
        cluster.expect("start cluster"),
        misnamed.expect("start cluster"),
    );
    let database_url = create_database(&cluster.url).await;

    // `localhost` is checked against the DNS SAN. sqlx connects with tokio's
    // `TcpStream::connect((host, port))`, which tries every address the name resolves to in
    // turn, so a resolver that lists ::1 first (the cluster listens on 127.0.0.1 only) costs
    // one refused attempt, not a failure. `127.0.0.1` works as well: sqlx turns the host into
    // a rustls `ServerName`, which becomes an IP address name and is checked against the
    // certificate's IP SAN. (sqlx's `hostaddr=` parameter, unlike libpq's, replaces the host,
    // so it cannot connect to one address while verifying another name.)
    let tls_url = verify_full_url(&database_url, "localhost", &ca_path);
    let tls_ip_url = verify_full_url(&database_url, "127.0.0.1", &ca_path);

    // The application builds, which runs the migrations over TLS, and is ready.
    let jira = FakeJira::start().await;
    let config = TestConfig::new(&tls_url, &jira.base_url);
    let app = start(config, jira, tls_url.clone()).await;
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 200, "{}", ready.text().await.unwrap());

    // The server says these sessions are encrypted, and says so only when they are: the
    // cluster also accepts plain connections, and reports them as such.
    assert!(
        session_is_encrypted(&tls_url).await,
        "verify-full via localhost"
    );
    assert!(
        session_is_encrypted(&tls_ip_url).await,
        "verify-full via 127.0.0.1"
    );
    let mut plain_url = url::Url::parse(&database_url).unwrap();
    plain_url
        .query_pairs_mut()
        .append_pair("sslmode", "disable");
    assert!(
        !session_is_encrypted(plain_url.as_str()).await,
        "sslmode=disable must give a plain session, or the check above proves nothing"
    );

    // The application's own pooled connections (application_name filebridge) are all TLS.
    let mut conn = PgConnection::connect(&tls_url).await.expect("connect");
    let (encrypted, total): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE s.ssl), count(*) \
         FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
         WHERE a.application_name = 'filebridge' AND a.datname = current_database()",
    )
    .fetch_one(&mut conn)
    .await
    .expect("query the application's sessions");
    conn.close().await.expect("close");
    assert!(
        total >= 1,
        "the application holds no connection after /readyz"
    );
    assert_eq!(
        encrypted, total,
        "every application connection is encrypted"
    );

    // A certificate from the trusted CA for another name is refused under verify-full, and
    // accepted under verify-ca (same chain check, no name check).
    let misnamed_url = verify_full_url(&misnamed.url, "localhost", &ca_path);
    let error = PgConnection::connect(&misnamed_url)
        .await
        .expect_err("verify-full must refuse a certificate for another host name");
    assert!(
        matches!(
            rustls_error(&error),
            Some(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                    | rustls::CertificateError::NotValidForNameContext { .. }
            ))
        ),
        "expected a host name mismatch, got: {}",
        error_chain(&error)
    );
    let verify_ca_url = misnamed_url.replace("sslmode=verify-full", "sslmode=verify-ca");
    assert!(
        session_is_encrypted(&verify_ca_url).await,
        "verify-ca ignores the name"
    );

    // With another CA as sslrootcert the server's certificate is refused: the migration
    // fails, and so does building the application. (sqlx adds sslrootcert to the system
    // roots rather than replacing them as libpq does, so this holds because the test CA is
    // in no system store; the failure is immediate, as sqlx's pool retries only refused
    // connections, not TLS errors.)
    let wrong_url = verify_full_url(&database_url, "localhost", &other_ca_path);
    let jira = FakeJira::start().await;
    let settings = TestConfig::new(&wrong_url, &jira.base_url).settings();
    let pool = filebridge::db::pool(&settings.database).expect("pool");
    let error = filebridge::db::migrate(&pool)
        .await
        .expect_err("migrations must not run against a server the CA did not sign");
    match &error {
        DbError::Unreachable(e) => assert_unknown_issuer(e),
        other => panic!("expected an unreachable database, got: {other}"),
    }
    pool.close().await;

    match Application::build(&settings, Migrations::Apply).await {
        Ok(_) => panic!("the application built against a server the CA did not sign"),
        Err(AppError::Database(DbError::Unreachable(e))) => assert_unknown_issuer(&e),
        Err(other) => panic!("expected an unreachable database, got: {other}"),
    }
}
