//! The behavioural suite every storage kind must pass, whatever is behind it (a directory,
//! WebDAV, S3, ...). Each check takes an `Arc<dyn Storage>`, works inside a fresh folder of
//! its own (`suite-<check>-<random>` under the storage's root, removed when the check passes,
//! kept for a look when it fails), and panics with a message that starts with `[<check>]`.
//! Checks do not depend on each other, so one store can run them all at once.
//!
//! ```ignore
//! storage_suite::run_all(storage).await;                                  // everything
//! storage_suite::run_all_except(storage, &["round_trip_large"]).await;   // all but one
//! storage_suite::round_trip_large(storage).await;                         // one
//! ```

mod files;
mod names;
mod scratch;
mod tree;

use std::sync::Arc;

use filebridge::storage::Storage;
use futures_util::future::BoxFuture;

pub use files::{
    cut_off_upload, range_reads, round_trip_large, round_trip_medium, round_trip_small, write_modes,
};
pub use names::unusual_names;
pub use tree::{
    create_only_is_atomic, delete, folders_and_stat, health, large_folder_listing, rename_and_move,
};

/// One named check.
pub struct Check {
    pub name: &'static str,
    pub run: fn(Arc<dyn Storage>) -> BoxFuture<'static, ()>,
}

macro_rules! check {
    ($f:ident) => {
        Check {
            name: stringify!($f),
            run: |storage| Box::pin($f(storage)),
        }
    };
}

/// Every check `run_all` runs. `create_only_is_atomic` is not among them: it needs a store
/// that can refuse to overwrite atomically (hard links, `If-None-Match: *` honoured), which
/// sloppy WebDAV servers do not offer; kinds that promise it call it on their own.
pub fn checks() -> Vec<Check> {
    vec![
        check!(round_trip_small),
        check!(round_trip_medium),
        check!(round_trip_large),
        check!(range_reads),
        check!(unusual_names),
        check!(large_folder_listing),
        check!(folders_and_stat),
        check!(write_modes),
        check!(rename_and_move),
        check!(delete),
        check!(cut_off_upload),
        check!(health),
    ]
}

/// Runs every check concurrently against one store and fails naming each check that failed.
pub async fn run_all(storage: Arc<dyn Storage>) {
    run_all_except(storage, &[]).await;
}

/// Runs every check but the named ones (so a slow check can run in a test of its own).
pub async fn run_all_except(storage: Arc<dyn Storage>, skip: &[&str]) {
    let all = checks();
    for name in skip {
        assert!(
            all.iter().any(|check| check.name == *name),
            "run_all_except: there is no check named `{name}`"
        );
    }
    let running: Vec<_> = all
        .into_iter()
        .filter(|check| !skip.contains(&check.name))
        .map(|check| (check.name, tokio::spawn((check.run)(storage.clone()))))
        .collect();
    let total = running.len();
    let mut failures = Vec::new();
    for (name, task) in running {
        if let Err(error) = task.await {
            let message = match error.try_into_panic() {
                Ok(payload) => payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panicked".into()),
                Err(error) => error.to_string(),
            };
            // Checks' own messages already start with `[name]`.
            if message.starts_with(&format!("[{name}]")) {
                failures.push(message);
            } else {
                failures.push(format!("[{name}] {message}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {total} storage checks failed ({}):\n{}",
        failures.len(),
        storage.kind(),
        failures.join("\n")
    );
}
