//! The stop signals of `serve`, listened for from the moment `serve` starts.
//!
//! actix-web would install its own handlers only once the server first runs; a SIGTERM in
//! between (systemd stopping a service that is still applying migrations, or one that has
//! just logged "listening") would then meet the default disposition and kill the process
//! mid-way. Listening before anything else, and stopping the server from here, closes that
//! window: a signal that arrives early is kept and acted on as soon as there is a server.

use actix_web::dev::ServerHandle;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::task::JoinHandle;

pub struct StopSignals {
    terminate: Signal,
    interrupt: Signal,
    quit: Signal,
}

impl StopSignals {
    /// Installs the handlers; call it first thing in `serve`, inside the runtime.
    pub fn listen() -> std::io::Result<Self> {
        Ok(Self {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
            quit: signal(SignalKind::quit())?,
        })
    }

    /// Stops the server on the first signal, as actix-web would: SIGTERM and SIGINT
    /// gracefully (requests in flight get `server.shutdown_grace`), SIGQUIT at once.
    pub fn stop(mut self, server: ServerHandle) -> JoinHandle<()> {
        tokio::spawn(async move {
            let graceful = tokio::select! {
                _ = self.terminate.recv() => true,
                _ = self.interrupt.recv() => true,
                _ = self.quit.recv() => false,
            };
            tracing::info!(graceful, "stop signal received");
            server.stop(graceful).await;
        })
    }
}
