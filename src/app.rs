//! The application: everything `serve` runs, built from settings and bound to a port
//! (port 0 in tests), with no globals, so tests can run many side by side.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{App, HttpServer, middleware, web};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sqlx::PgPool;

use crate::auth::{AuthContext, IdentityService, SessionKeys};
use crate::broker::{Broker, invalidation};
use crate::config::{ConfigError, Settings, TlsFiles};
use crate::db::{self, DbError};
use crate::egress::{EgressClient, EgressError};
use crate::events::{EventHandler, Lifecycle, reconcile};
use crate::http::{self, ContextPolicy};
use crate::jira::JiraClient;
use crate::jobs::Workers;
use crate::metrics::Metrics;
use crate::secrets::SecretCipher;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Database(#[from] DbError),
    #[error(transparent)]
    Egress(#[from] EgressError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(String),
}

/// Whether `build` applies pending migrations first (`serve --no-migrate` turns it off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Migrations {
    Apply,
    Skip,
}

pub struct Application {
    local_addr: SocketAddr,
    server: Server,
    pool: PgPool,
    /// Background tasks that end with the server: audit retention, the reconciliation
    /// schedule, the daily clean-up of finished jobs.
    background: Vec<tokio::task::JoinHandle<()>>,
    workers: Workers,
    shutdown_grace: std::time::Duration,
}

impl Application {
    pub async fn build(settings: &Settings, migrations: Migrations) -> Result<Self, AppError> {
        let jira_base = settings.jira_base_url()?.clone();
        let master_key = settings.master_key()?;
        let pool = db::pool(&settings.database)?;
        match migrations {
            Migrations::Apply => {
                let status = db::migrate(&pool).await?;
                tracing::info!(?status, "database schema checked");
            }
            Migrations::Skip => {
                // Not fatal: the database may come later, and /readyz reports it meanwhile.
                match db::schema_status(&pool).await {
                    Ok(db::SchemaStatus::Newer { database, binary }) => {
                        return Err(DbError::SchemaNewer { database, binary }.into());
                    }
                    Ok(status) => tracing::info!(?status, "database schema checked"),
                    Err(e) => tracing::warn!(error = %e, "database not reachable at start"),
                }
            }
        }

        if !settings.server.public_url_configured {
            tracing::warn!(
                public_url = %settings.server.public_url,
                "server.public_url is not set; behind a reverse proxy, set it to the address users open"
            );
        }
        let egress = EgressClient::new(&settings.egress, Some(&jira_base))?;
        let metrics = Metrics::new();
        let jira = JiraClient::new(jira_base, egress.clone(), settings.jira.timeout)
            .with_metrics(metrics.clone());
        let cipher = Arc::new(SecretCipher::new(master_key));
        let broker = Arc::new(Broker::new(
            pool.clone(),
            jira.clone(),
            Arc::clone(&cipher),
            egress.clone(),
            settings.security.identity_cache_ttl,
            &settings.server.public_url,
        ));
        let lifecycle = Lifecycle::new(
            pool.clone(),
            jira.clone(),
            settings.jira.service_token.clone(),
            Arc::clone(&broker),
            settings.events.clone(),
            settings.server.public_url.clone(),
        );
        let cached_configuration = Arc::clone(&broker);
        let broker = web::Data::from(broker);
        let jira_data = web::Data::new(jira.clone());
        let server_settings = &settings.server;
        let sessions = SessionKeys::new(
            master_key,
            server_settings.public_url.as_str().trim_end_matches('/'),
            &server_settings.base_path,
            settings.security.session_ttl,
        );
        let identity = IdentityService::new(
            jira,
            sessions,
            master_key,
            settings.security.identity_cache_ttl,
            settings.security.admin_groups.clone(),
            settings.jira.forward_cookies.clone(),
        );
        let auth = web::Data::new(AuthContext {
            identity,
            public_origin: server_settings.public_url.origin().ascii_serialization(),
        });
        let context = web::Data::new(ContextPolicy {
            trusted_proxies: server_settings.trusted_proxies.clone(),
            tls: server_settings.tls.is_some(),
        });
        let pool_data = web::Data::new(pool.clone());
        let cipher_data = web::Data::from(cipher);
        let server_data = web::Data::new(server_settings.clone());
        let hooks = web::Data::new(http::hooks::HookContext::from_settings(settings));
        let egress_data = web::Data::new(egress);
        let metrics_data = web::Data::new(metrics);
        let base_path = Arc::new(server_settings.base_path.clone());

        let listener =
            TcpListener::bind(server_settings.listen).map_err(|source| AppError::Bind {
                addr: server_settings.listen,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| AppError::Bind {
            addr: server_settings.listen,
            source,
        })?;

        let server = HttpServer::new(move || {
            let base_path = Arc::clone(&base_path);
            App::new()
                .app_data(pool_data.clone())
                .app_data(auth.clone())
                .app_data(context.clone())
                .app_data(egress_data.clone())
                .app_data(cipher_data.clone())
                .app_data(broker.clone())
                .app_data(jira_data.clone())
                .app_data(server_data.clone())
                .app_data(hooks.clone())
                .app_data(metrics_data.clone())
                .app_data(web::QueryConfig::default().error_handler(http::query_error))
                .app_data(web::JsonConfig::default().error_handler(http::json_error))
                .configure(|cfg| http::routes(cfg, &base_path))
                .default_service(web::to(http::not_found))
                .wrap(middleware::from_fn(http::request_context))
        })
        // `serve` handles the stop signals from its first moment (signals.rs) and stops the
        // server through its handle; embedders and tests stop it the same way.
        .disable_signals()
        // On stop, accept nothing more at once; let in-flight requests finish this long.
        .shutdown_timeout(server_settings.shutdown_grace.as_secs());

        let server = match &server_settings.tls {
            Some(files) => server
                .listen_rustls_0_23(listener, tls_config(files)?)
                .map_err(|source| AppError::Bind {
                    addr: local_addr,
                    source,
                })?,
            None => server.listen(listener).map_err(|source| AppError::Bind {
                addr: local_addr,
                source,
            })?,
        }
        .run();

        tracing::info!(address = %local_addr, tls = server_settings.tls.is_some(), "listening");
        let mut background = vec![
            tokio::spawn(invalidation::follow(pool.clone(), cached_configuration)),
            tokio::spawn(purge_finished_jobs(pool.clone())),
        ];
        if let Some(days) = settings.audit_retention_days {
            background.push(tokio::spawn(apply_retention(pool.clone(), days)));
        }
        if let Some(interval) = settings.events.reconcile_interval {
            background.push(tokio::spawn(reconcile::schedule(pool.clone(), interval)));
        }
        let workers = Workers::start(
            pool.clone(),
            Arc::new(EventHandler(Arc::new(lifecycle))),
            settings.jobs.clone(),
            Workers::instance_name(),
        );
        Ok(Self {
            local_addr,
            server,
            pool,
            background,
            workers,
            shutdown_grace: server_settings.shutdown_grace,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn port(&self) -> u16 {
        self.local_addr.port()
    }

    /// The database pool, for `serve`'s readiness report to systemd (src/notify.rs).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Stops the server gracefully (what SIGTERM does), for tests and embedding.
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until stopped by a signal or the handle; then lets the jobs in hand finish (or
    /// hands them back to the queue) and closes the pool.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        for task in &self.background {
            task.abort();
        }
        self.workers.stop(self.shutdown_grace).await;
        self.pool.close().await;
        tracing::info!("stopped");
        result
    }
}

/// `audit.retention_days`: at start and then daily, removes older audit events. Several
/// instances may do this at once; the audit chain's lock serialises them.
async fn apply_retention(pool: PgPool, days: u32) {
    let mut every_day = tokio::time::interval(std::time::Duration::from_secs(24 * 3600));
    loop {
        every_day.tick().await;
        let actor = crate::audit::Actor {
            key: "system:retention".into(),
            name: "audit.retention_days".into(),
        };
        match crate::audit::purge_older_than(&pool, days, actor).await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, days, "audit retention applied"),
            Err(e) => tracing::warn!(error = %e, "audit retention failed; retrying tomorrow"),
        }
    }
}

/// Finished jobs are kept a while (their dedupe keys recognise late duplicate webhooks),
/// then removed, daily.
async fn purge_finished_jobs(pool: PgPool) {
    let mut every_day = tokio::time::interval(std::time::Duration::from_secs(24 * 3600));
    loop {
        every_day.tick().await;
        match crate::jobs::purge_finished(&pool, crate::jobs::KEEP_FINISHED).await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "finished jobs removed"),
            Err(e) => {
                tracing::warn!(error = %e, "removing finished jobs failed; retrying tomorrow")
            }
        }
    }
}

/// TLS 1.2 and 1.3 only (rustls implements nothing older), ring as the provider.
fn tls_config(files: &TlsFiles) -> Result<rustls::ServerConfig, AppError> {
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            AppError::Tls(format!(
                "server.tls_cert_file {}: {e}",
                files.cert.display()
            ))
        })?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| AppError::Tls(format!("server.tls_key_file {}: {e}", files.key.display())))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
    .map_err(|e| AppError::Tls(e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| AppError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
