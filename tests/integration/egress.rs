//! The outbound allowlist against a real HTTP exchange: a redirect to a host nobody allowed
//! is refused and counted.

use actix_web::{App, HttpResponse, HttpServer, web};
use filebridge::config::EgressSettings;
use filebridge::egress::{EgressClient, EgressError};

#[tokio::test]
async fn redirects_to_unlisted_hosts_are_refused_and_counted() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = HttpServer::new(|| {
        App::new()
            .route(
                "/away",
                web::get().to(|| async {
                    HttpResponse::Found()
                        .insert_header(("location", "http://127.0.0.2:9/collect"))
                        .finish()
                }),
            )
            .route(
                "/here",
                web::get().to(|| async {
                    HttpResponse::Found()
                        .insert_header(("location", "/final"))
                        .finish()
                }),
            )
            .route(
                "/final",
                web::get().to(|| async { HttpResponse::Ok().body("ok") }),
            )
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    let handle = server.handle();
    tokio::spawn(server);

    let settings = EgressSettings {
        allow: vec![format!("127.0.0.1:{port}")],
        proxy: None,
        ca_file: None,
    };
    let egress = EgressClient::new(&settings, None).unwrap();
    let url = |path: &str| url::Url::parse(&format!("http://127.0.0.1:{port}{path}")).unwrap();

    let followed = egress
        .request(reqwest::Method::GET, url("/here"))
        .send()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        followed.text().await.unwrap(),
        "ok",
        "a redirect within the allowed host is followed"
    );

    let refused = egress
        .request(reqwest::Method::GET, url("/away"))
        .send()
        .await
        .unwrap();
    let error = refused.expect_err("the redirect target is not allowed");
    assert!(error.is_redirect(), "{error}");

    let direct = egress
        .request(
            reqwest::Method::GET,
            url::Url::parse("http://127.0.0.2:9/collect").unwrap(),
        )
        .send()
        .await;
    assert!(matches!(direct, Err(EgressError::Refused { .. })));

    let report = egress.report();
    assert_eq!(report[&format!("127.0.0.1:{port}")].refused, 0);
    assert_eq!(report["127.0.0.2:9"].refused, 2, "{report:?}");
    assert_eq!(report["127.0.0.2:9"].contacted, 0);
    handle.stop(false).await;
}
