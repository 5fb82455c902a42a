//! `filebridge serve`: the daemon, with systemd's notifications and the stop signals.

use std::process::ExitCode;

use super::fail;
use crate::app::{Application, Migrations};
use crate::config::Settings;
use crate::signals::StopSignals;
use crate::{notify, telemetry};

pub(super) async fn serve(
    settings: Settings,
    no_migrate: bool,
    rust_log: Option<&str>,
) -> ExitCode {
    // Before anything slow, so a stop request during start-up is not fatal (signals.rs).
    let stop_signals = match StopSignals::listen() {
        Ok(signals) => signals,
        Err(e) => return fail(format!("cannot listen for stop signals: {e}")),
    };
    if let Err(e) = telemetry::init(&settings.log, rust_log) {
        return fail(e.to_string());
    }
    let migrations = if no_migrate {
        Migrations::Skip
    } else {
        Migrations::Apply
    };
    // Under systemd (Type=notify): watchdog pings from here on, READY=1 once bound and the
    // database answers, STOPPING=1 on the stop signal. Inert without NOTIFY_SOCKET.
    let mut notifier = notify::Notifier::start(settings.server.shutdown_grace);
    notifier.status(match migrations {
        Migrations::Apply => "starting: applying database migrations",
        Migrations::Skip => "starting",
    });
    let app = match Application::build(&settings, migrations).await {
        Ok(app) => app,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            notifier.status(&format!("cannot start: {e}"));
            return fail(e.to_string());
        }
    };
    notifier.ready_when_database_answers(app.pool().clone(), app.local_addr());
    let stopper = stop_signals.stop(app.handle());
    let result = app.run_until_stopped().await;
    stopper.abort();
    notifier.stopped();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(format!("server error: {e}")),
    }
}
