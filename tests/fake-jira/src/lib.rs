//! A fake Jira Data Center 10.3 REST API for filebridge's tests and demo.
//!
//! It serves the resources filebridge uses (`/rest/api/2/myself`, `mypermissions`,
//! `issue/{idOrKey}`, `project/{idOrKey}`, `serverInfo`, `search`, `issue/{idOrKey}/remotelink`,
//! and webhook registration as Jira 9 and Jira 10 have it) in Jira's shapes, authenticates
//! personal access tokens (`Authorization: Bearer`) and session cookies (`JSESSIONID`,
//! `seraph.rememberme.cookie`), and lets a test script failures: an unavailable Jira (503), a
//! slow one (a [`Hold`]), an unreachable one ([`FakeJira::stop`]), and rate limiting or 503s
//! of the background endpoints ([`FakeJira::rate_limit_next`], [`FakeJira::fail_next`]).
//!
//! Changes that Jira announces by webhook ([`FakeJira::create_issue`],
//! [`FakeJira::move_issue_to`], [`FakeJira::delete_issue`], [`FakeJira::change_project_key`],
//! ...) are delivered to every registered webhook before the call returns; deliveries can be
//! dropped, queued and reordered, or repeated ([`DeliveryMode`], [`FakeJira::redeliver`]).
//!
//! ```no_run
//! # async fn demo() {
//! let jira = fake_jira::FakeJira::start().await;
//! jira.add_user("alice", "Alice A.");
//! jira.add_token("alice", "alice-pat");
//! jira.add_project("PROJ", "Project");
//! jira.add_issue("PROJ", "PROJ-1");
//! jira.grant_project("alice", "PROJ", "BROWSE_PROJECTS");
//! // point the code under test at jira.base_url
//! # }
//! ```

mod browse;
mod clock;
mod controls;
mod events;
mod hooks;
mod json;
mod links;
pub mod permissions;
mod routes;
mod search;
mod world;

use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpRequest, HttpServer, web};
use tokio::sync::watch;

pub use events::{DeliveryMode, DeliveryRecord, hub_signature, issue_updated_body};
pub use hooks::{Webhook, WebhookApi};
pub use json::{VERSION, VERSION_9};
use world::World;

/// State shared between the test's handle and the server's workers.
pub(crate) struct Shared {
    base_url: String,
    world: Mutex<World>,
    /// Number of live [`Hold`]s; requests wait while it is above zero.
    holds: watch::Sender<usize>,
    /// Number of requests currently waiting on a hold.
    waiting: watch::Sender<usize>,
}

impl Shared {
    fn record_arrival(&self, path: &str, req: &HttpRequest) {
        let headers = req
            .headers()
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect();
        let mut world = self.world.lock().expect("state lock");
        *world.calls.entry(path.to_owned()).or_default() += 1;
        world.last_headers.insert(path.to_owned(), headers);
    }

    async fn wait_while_held(&self) {
        // Subscribe before looking, so a release between the look and the wait isn't missed.
        let mut holds = self.holds.subscribe();
        if *holds.borrow_and_update() == 0 {
            return;
        }
        // The guard un-counts the request even if the client gives up while it waits.
        struct Waiting<'a>(&'a watch::Sender<usize>);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.send_modify(|n| *n -= 1);
            }
        }
        self.waiting.send_modify(|n| *n += 1);
        let _waiting = Waiting(&self.waiting);
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = holds.wait_for(|n| *n == 0).await;
    }

    fn world(&self) -> std::sync::MutexGuard<'_, World> {
        self.world.lock().expect("state lock")
    }
}

/// A running fake Jira. Dropping it stops the server.
pub struct FakeJira {
    /// `http://127.0.0.1:PORT`, no trailing slash; Jira's REST API is under `/rest`.
    pub base_url: String,
    addr: SocketAddr,
    shared: Arc<Shared>,
    handle: ServerHandle,
}

/// While a `Hold` lives, every request that reaches the fake Jira waits before it is
/// answered (it is already counted by [`FakeJira::calls`]). Release or drop it to let them go.
#[must_use = "requests are held only while the Hold lives"]
pub struct Hold {
    shared: Arc<Shared>,
}

impl Hold {
    /// Lets the held requests (and all later ones) through, unless another Hold is live.
    pub fn release(self) {}
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.shared.holds.send_modify(|n| *n -= 1);
    }
}

impl FakeJira {
    /// Starts on 127.0.0.1 on a free port.
    ///
    /// # Panics
    /// If no loopback port can be bound, which leaves a test nothing to do anyway.
    pub async fn start() -> FakeJira {
        let addr = SocketAddr::from(([127, 0, 0, 1], 0));
        FakeJira::start_on(addr)
            .await
            .expect("bind the fake Jira to 127.0.0.1:0")
    }

    /// Starts on `addr` (port 0 picks a free one). Must run inside a Tokio runtime: the server
    /// future is spawned onto it.
    pub async fn start_on(addr: SocketAddr) -> std::io::Result<FakeJira> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            base_url: format!("http://{addr}"),
            world: Mutex::new(World::default()),
            holds: watch::Sender::new(0),
            waiting: watch::Sender::new(0),
        });
        let data = web::Data::from(Arc::clone(&shared));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/browse/{key}", web::get().to(browse::page))
                .default_service(web::to(routes::dispatch))
        })
        // Two workers are plenty for tests and keep thread counts down when many run at once;
        // held requests don't block a worker, they only park a future.
        .workers(2)
        // The process's signals belong to the test harness or the demo binary, not to us.
        .disable_signals()
        .shutdown_timeout(1)
        .listen(listener)?
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Ok(FakeJira {
            base_url: shared.base_url.clone(),
            addr,
            shared,
            handle,
        })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Adds an active user (in group `jira-software-users`) and returns their key, `JIRAUSER1xxxx`.
    pub fn add_user(&self, name: &str, display_name: &str) -> String {
        self.shared.world().add_user(name, display_name)
    }

    /// Deactivates or reactivates a user; Jira refuses every credential of an inactive user.
    pub fn set_active(&self, user_name: &str, active: bool) {
        self.shared.world().user_mut(user_name).active = active;
    }

    /// Registers a personal access token for the user (`Authorization: Bearer <token>`).
    pub fn add_token(&self, user_name: &str, token: &str) {
        let mut world = self.shared.world();
        world.user_mut(user_name);
        world.tokens.insert(token.to_owned(), user_name.to_owned());
    }

    /// Sets (or with `None` removes) the announcement banner's HTML, shown on every page.
    pub fn set_announcement_banner(&self, html: Option<&str>) {
        self.shared.world().announcement_banner = html.map(str::to_owned);
    }

    /// Registers a `JSESSIONID` cookie value for the user.
    pub fn add_session(&self, user_name: &str, jsessionid: &str) {
        let mut world = self.shared.world();
        world.user_mut(user_name);
        world
            .sessions
            .insert(jsessionid.to_owned(), user_name.to_owned());
    }

    /// Registers a `seraph.rememberme.cookie` value for the user.
    pub fn add_remember_me(&self, user_name: &str, cookie_value: &str) {
        let mut world = self.shared.world();
        world.user_mut(user_name);
        world
            .remember_me
            .insert(cookie_value.to_owned(), user_name.to_owned());
    }

    /// Forgets a token or cookie value; requests bearing it get 401 from then on.
    pub fn revoke_credential(&self, token_or_cookie: &str) {
        self.shared.world().revoke(token_or_cookie);
    }

    pub fn add_to_group(&self, user_name: &str, group: &str) {
        self.shared
            .world()
            .user_mut(user_name)
            .groups
            .insert(group.to_owned());
    }

    /// Grants a global permission such as `ADMINISTER` or `SYSTEM_ADMIN` (which implies `ADMINISTER`).
    ///
    /// # Panics
    /// If the user is unknown or `permission` is not a global permission Jira knows.
    pub fn grant_global(&self, user_name: &str, permission: &str) {
        self.shared.world().grant_global(user_name, permission);
    }

    /// Adds a project and returns its numeric id (`"10000"`, `"10001"`, ...).
    pub fn add_project(&self, key: &str, name: &str) -> String {
        self.shared.world().add_project(key, name).to_string()
    }

    /// Adds an issue to a project and returns its numeric id (`"10100"`, `"10101"`, ...).
    pub fn add_issue(&self, project_key: &str, issue_key: &str) -> String {
        self.shared
            .world()
            .add_issue(project_key, issue_key)
            .to_string()
    }

    /// Sets an issue's summary (default `Summary of <KEY>`).
    pub fn set_summary(&self, issue_key: &str, summary: &str) {
        self.shared.world().expect_issue(issue_key).summary = summary.to_owned();
    }

    /// Moves an issue to `new_project_key` under `new_issue_key`, keeping its id. Like Jira,
    /// the old key still finds the issue, whose answer carries the new key.
    pub fn move_issue(&self, issue_key: &str, new_project_key: &str, new_issue_key: &str) {
        self.shared
            .world()
            .move_issue(issue_key, new_project_key, new_issue_key);
    }

    /// Grants a project permission such as `BROWSE_PROJECTS` or `CREATE_ATTACHMENTS` (a
    /// deprecated key like `PROJECT_ADMIN` grants its modern equivalent).
    ///
    /// # Panics
    /// If the user or project is unknown or `permission` is not a project permission.
    pub fn grant_project(&self, user_name: &str, project_key: &str, permission: &str) {
        self.shared
            .world()
            .grant_project(user_name, project_key, permission);
    }

    /// Puts the issue under a security level only these users belong to; everyone else gets
    /// 404 for it, browse permission or not.
    pub fn restrict_issue(&self, issue_key: &str, allowed_user_names: &[&str]) {
        let allowed = allowed_user_names.iter().map(|n| (*n).to_owned()).collect();
        self.shared.world().expect_issue(issue_key).restricted_to = Some(allowed);
    }

    /// While on, every request is answered 503 with `Retry-After: 5`.
    pub fn set_unavailable(&self, on: bool) {
        self.shared.world().unavailable = on;
    }

    /// Holds every request until the returned [`Hold`] is released or dropped.
    pub fn hold(&self) -> Hold {
        self.shared.holds.send_modify(|n| *n += 1);
        Hold {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Resolves once at least `n` requests are waiting on a hold.
    pub async fn wait_for_waiting(&self, n: usize) {
        let mut waiting = self.shared.waiting.subscribe();
        // The sender lives as long as `self`, so the channel cannot close while we wait.
        let _ = waiting.wait_for(|w| *w >= n).await;
    }

    /// How many requests have arrived for `path` (e.g. `/rest/api/2/myself`, no query),
    /// counted on arrival, before any hold or 503.
    pub fn calls(&self, path: &str) -> usize {
        self.shared.world().calls.get(path).copied().unwrap_or(0)
    }

    /// The headers (lower-case names) of the last request to `path`.
    pub fn last_headers(&self, path: &str) -> Option<Vec<(String, String)>> {
        self.shared.world().last_headers.get(path).cloned()
    }

    /// Stops the server at once (in-flight requests are dropped); afterwards connections to
    /// [`FakeJira::base_url`] are refused.
    pub async fn stop(&self) {
        self.handle.stop(false).await;
    }
}

impl Drop for FakeJira {
    fn drop(&mut self) {
        // The stop command is sent on the call; awaiting only waits for completion.
        drop(self.handle.stop(false));
    }
}
