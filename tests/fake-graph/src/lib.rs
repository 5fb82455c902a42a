//! A fake Microsoft Graph v1.0 (SharePoint Online and OneDrive for Business files) and
//! Microsoft identity platform (v2.0 token and authorize endpoints) for filebridge's tests.
//!
//! Both are served on one port, as a national cloud's login and Graph hosts would be configured:
//! point `login_url` and `graph_url` at [`FakeGraph::base_url`].
//!
//! - Identity (`src/identity`): `POST /{tenant}/oauth2/v2.0/token` with client secrets and
//!   certificate client assertions (RS256/PS256, checked against the registered certificate),
//!   client credentials, authorization code with PKCE, refresh tokens with rotation; `GET
//!   /{tenant}/oauth2/v2.0/authorize` redirecting to the app without a browser.
//! - Graph (`src/graph`), under `/v1.0`: sites by id and path, drives, driveItems by id and by
//!   path, children paged with `@odata.nextLink`, downloads through pre-authenticated URLs with
//!   `Range`, simple uploads up to 4 MiB, upload sessions with Graph's fragment rules, folders,
//!   rename/move, delete, SharePoint's name rules, `Sites.Selected` for apps and per-user
//!   visibility for delegated tokens.
//! - Test controls (`setup.rs`, `controls.rs`): tenants, apps, credentials, sites, users and
//!   OneDrives, files put directly, the signed-in user, grants and token expiry, a movable clock, counters,
//!   throttling and fragment failures (`faults.rs`).
//!
//! Each handler's doc comment names the Microsoft documentation page it follows and says where
//! the fake guesses or is stricter than the service.
//!
//! ```no_run
//! # async fn demo() {
//! use fake_graph::{Access, FakeGraph};
//! let graph = FakeGraph::start().await;
//! let tenant = graph.add_tenant("contoso.onmicrosoft.com");
//! let app = graph.add_app(&tenant);
//! graph.add_certificate(&app, fake_graph::fixtures::APP_CERT_PEM);
//! let site = graph.add_site(&tenant, "contoso.sharepoint.com", "/sites/eng", "Engineering");
//! graph.grant_sites_selected(&app, &site, Access::Write);
//! let drive = graph.default_drive(&site);
//! graph.put_file(&drive, "/PROJ/PROJ-1/spec.pdf", b"%PDF-1.7".to_vec());
//! // point the code under test at graph.base_url (login_url and graph_url)
//! # }
//! ```

mod clock;
mod controls;
mod faults;
pub mod fixtures;
mod graph;
mod identity;
mod quickxor;
mod setup;
mod tree;
mod world;

use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpServer, web};

pub use faults::{FragmentFault, RequestClass};
pub use graph::SIMPLE_UPLOAD_LIMIT;
pub use graph::names::MAX_PATH;
pub use graph::upload::{FRAGMENT_UNIT, MAX_FRAGMENT};
pub use identity::{Certificate, JWT_BEARER};
pub use world::{Access, AuthorizeOutcome};

/// State shared between the test's handle and the server's workers.
pub(crate) struct Shared {
    base_url: String,
    world: Mutex<world::World>,
}

impl Shared {
    fn world(&self) -> std::sync::MutexGuard<'_, world::World> {
        self.world
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A running fake Graph and identity platform. Dropping it stops the server.
pub struct FakeGraph {
    /// `http://127.0.0.1:PORT`, no trailing slash: the login URL and the Graph URL (Graph's
    /// API is under `/v1.0`).
    pub base_url: String,
    addr: SocketAddr,
    shared: Arc<Shared>,
    handle: ServerHandle,
}

impl FakeGraph {
    /// Starts on 127.0.0.1 on a free port.
    ///
    /// # Panics
    /// If no loopback port can be bound, which leaves a test nothing to do anyway.
    pub async fn start() -> FakeGraph {
        FakeGraph::start_on(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind the fake Graph to 127.0.0.1:0")
    }

    /// Starts on `addr` (port 0 picks a free one). Must run inside a Tokio runtime: the server
    /// future is spawned onto it.
    pub async fn start_on(addr: SocketAddr) -> std::io::Result<FakeGraph> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let base_url = format!("http://{addr}");
        let shared = Arc::new(Shared {
            base_url: base_url.clone(),
            world: Mutex::new(world::World::new(&base_url)),
        });
        let data = web::Data::from(Arc::clone(&shared));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/v1.0/{tail:.*}", web::to(graph::dispatch))
                .route("/_upload/{key}", web::to(graph::upload::upload_url))
                .route(
                    "/_download/{drive}/{item}/{version}/{expires}/{sig}",
                    web::get().to(graph::download),
                )
                .route(
                    "/{tenant}/oauth2/v2.0/token",
                    web::post().to(identity::token),
                )
                .route(
                    "/{tenant}/oauth2/v2.0/authorize",
                    web::get().to(identity::authorize),
                )
        })
        // Two workers are plenty for tests and keep thread counts down when many run at once.
        .workers(2)
        // The process's signals belong to the test harness, not to us.
        .disable_signals()
        .shutdown_timeout(1)
        .listen(listener)?
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Ok(FakeGraph {
            base_url,
            addr,
            shared,
            handle,
        })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the server at once; afterwards connections are refused.
    pub async fn stop(&self) {
        self.handle.stop(false).await;
    }
}

impl Drop for FakeGraph {
    fn drop(&mut self) {
        // The stop command is sent on the call; awaiting only waits for completion.
        drop(self.handle.stop(false));
    }
}
