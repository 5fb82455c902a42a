//! The supervised pool of job workers on one instance.
//!
//! One dispatcher task claims due jobs, as many at a time as there are free slots
//! (`jobs.workers`), and runs each in a task of its own with a heartbeat beside it that
//! renews the lease every third of it. The dispatcher looks for work when Postgres notifies
//! `filebridge_jobs` (a job was added or released), when a job it failed comes due again, and
//! every second anyway: for leases that ran out, jobs delayed by `run_at`, and notifications
//! lost while the listener reconnected.
//!
//! Supervision: a handler runs in its own task, so a panic is caught as that task's failure
//! and counted as a failed attempt. Database errors make the dispatcher pause (growing up to
//! 30 s) and try again; it needs no restart. A worker that cannot renew its lease before it
//! runs out abandons the job, since another instance may have taken it over by then.

use std::any::Any;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::{Notify, watch};
use tokio::task::{JoinError, JoinHandle, JoinSet};
use tokio::time::{Instant, sleep, sleep_until, timeout};

use super::claims::{self, Claimed, Recorded};
use super::{Handler, Job, JobFailure, WorkerStats, backoff};
use crate::config::JobsSettings;

const CHANNEL: &str = "filebridge_jobs";
const POLL: Duration = Duration::from_secs(1);
/// Longest pause after a database error before trying again.
const DB_PAUSE_MAX: Duration = Duration::from_secs(30);
/// How long `stop` lets released jobs be written back; after it they are left to their
/// leases, as if the instance had died.
const RELEASE_LIMIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    /// Claim nothing more; let the jobs in hand finish.
    Draining,
    /// Hand the unfinished jobs back.
    Releasing,
}

struct Context {
    pool: PgPool,
    handler: Arc<dyn Handler>,
    settings: JobsSettings,
    instance: String,
    stats: Mutex<WorkerStats>,
}

impl Context {
    fn count(&self, change: impl FnOnce(&mut WorkerStats)) {
        // A panic cannot happen while the lock is held (it only adds); ignore poisoning.
        change(&mut self.stats.lock().unwrap_or_else(PoisonError::into_inner));
    }
}

/// A running pool of workers on this instance. Stop it with [`Workers::stop`]; dropping it
/// instead abandons the jobs in hand to their leases, as a crash would.
pub struct Workers {
    context: Arc<Context>,
    phase: watch::Sender<Phase>,
    dispatcher: Option<JoinHandle<()>>,
    listener: JoinHandle<()>,
    listener_pool: PgPool,
}

impl Workers {
    /// Starts the pool; must be called inside the Tokio runtime. `instance` names this
    /// process in `locked_by` (see [`Workers::instance_name`]). Nothing here needs the
    /// database yet: a pool started while it is away begins working when it returns.
    pub fn start(
        pool: PgPool,
        handler: Arc<dyn Handler>,
        settings: JobsSettings,
        instance: String,
    ) -> Workers {
        let listener_pool = crate::db::listener_pool(&pool);
        let context = Arc::new(Context {
            pool,
            handler,
            settings,
            instance,
            stats: Mutex::default(),
        });
        let wake = Arc::new(Notify::new());
        let (phase, phase_rx) = watch::channel(Phase::Running);
        let listener = tokio::spawn(listen(
            listener_pool.clone(),
            Arc::clone(&wake),
            Arc::clone(&context),
        ));
        let dispatcher = tokio::spawn(dispatch(Arc::clone(&context), phase_rx, wake));
        tracing::info!(instance = %context.instance, workers = context.settings.workers, "job workers started");
        Workers {
            context,
            phase,
            dispatcher: Some(dispatcher),
            listener,
            listener_pool,
        }
    }

    /// A name for this process that no other process shares: host, process id and a random
    /// suffix (a restarted process may get the same pid).
    pub fn instance_name() -> String {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "filebridge".into());
        let suffix: u32 = rand::random();
        format!("{host}:{}:{suffix:08x}", std::process::id())
    }

    pub fn stats(&self) -> WorkerStats {
        *self
            .context
            .stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Stops claiming, waits up to `grace` for the jobs in hand to finish, then hands the
    /// unfinished ones back (queued at once, the attempt not counted) so another instance
    /// takes them without waiting for their leases to run out.
    pub async fn stop(mut self, grace: Duration) -> WorkerStats {
        let _ = self.phase.send(Phase::Draining);
        if let Some(mut dispatcher) = self.dispatcher.take()
            && timeout(grace, &mut dispatcher).await.is_err()
        {
            let _ = self.phase.send(Phase::Releasing);
            if timeout(RELEASE_LIMIT, &mut dispatcher).await.is_err() {
                tracing::warn!(
                    "job workers did not release their jobs in time; their leases will run out"
                );
                dispatcher.abort();
            }
        }
        self.listener.abort();
        let _ = (&mut self.listener).await;
        self.listener_pool.close().await;
        let stats = self.stats();
        tracing::info!(?stats, "job workers stopped");
        stats
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        // Aborting the dispatcher drops its set of job tasks, which aborts them and, through
        // `AbortOnDrop`, their handlers.
        if let Some(dispatcher) = &self.dispatcher {
            dispatcher.abort();
        }
        self.listener.abort();
    }
}

/// Wakes the dispatcher on every notification, and after (re)connecting, since anything
/// queued meanwhile was announced to nobody.
async fn listen(pool: PgPool, wake: Arc<Notify>, context: Arc<Context>) {
    let mut failures = 0u32;
    loop {
        let result: Result<std::convert::Infallible, sqlx::Error> = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(CHANNEL).await?;
            failures = 0;
            wake.notify_one();
            loop {
                // `None`: the connection dropped and was re-established; wake to catch up.
                listener.try_recv().await?;
                wake.notify_one();
            }
        }
        .await;
        let Err(e) = result;
        failures = failures.saturating_add(1);
        context.count(|s| s.database_errors += 1);
        let pause = backoff(failures, DB_PAUSE_MAX);
        tracing::warn!(error = %e, retry_in = ?pause, "job queue notifications lost; polling meanwhile");
        sleep(pause).await;
    }
}

async fn dispatch(ctx: Arc<Context>, mut phase: watch::Receiver<Phase>, wake: Arc<Notify>) {
    let mut in_hand: JoinSet<Option<Instant>> = JoinSet::new();
    // Whether to claim as soon as a slot is free: set by a notification, the poll, or a full
    // batch (there may be more).
    let mut look = true;
    let mut next_poll = Instant::now() + POLL;
    // When a job this instance failed comes due again.
    let mut due: Option<Instant> = None;
    let mut failures = 0u32;
    while *phase.borrow() == Phase::Running {
        let free = ctx.settings.workers.saturating_sub(in_hand.len());
        if look && free > 0 {
            match claim(&ctx, free).await {
                Ok(claimed) => {
                    failures = 0;
                    look = claimed.len() == free;
                    ctx.count(|s| s.claimed += claimed.len() as u64);
                    for job in claimed {
                        in_hand.spawn(work(Arc::clone(&ctx), job, phase.clone()));
                    }
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    ctx.count(|s| s.database_errors += 1);
                    let pause = backoff(failures, DB_PAUSE_MAX);
                    tracing::warn!(error = %e, retry_in = ?pause, "cannot claim jobs");
                    look = false;
                    next_poll = Instant::now() + pause;
                }
            }
        }
        let wake_at = due.map_or(next_poll, |d| d.min(next_poll));
        tokio::select! {
            changed = phase.changed() => {
                if changed.is_err() {
                    return; // `Workers` is gone (dropped): nothing will stop us otherwise.
                }
            }
            Some(finished) = in_hand.join_next() => match finished {
                Ok(Some(again)) => due = Some(due.map_or(again, |d| d.min(again))),
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "a job task failed"),
            },
            () = wake.notified() => look = true,
            () = sleep_until(wake_at) => {
                look = true;
                let now = Instant::now();
                if due.is_some_and(|d| d <= now) {
                    due = None;
                }
                if next_poll <= now {
                    next_poll = now + POLL;
                }
            }
        }
    }
    // Stopping: the tasks finish their jobs, or release them when the phase says so.
    while let Some(finished) = in_hand.join_next().await {
        if let Err(e) = finished {
            tracing::error!(error = %e, "a job task failed");
        }
    }
}

async fn claim(ctx: &Context, free: usize) -> Result<Vec<Claimed>, sqlx::Error> {
    let settings = &ctx.settings;
    for id in claims::reap_expired(&ctx.pool, settings.max_attempts).await? {
        ctx.count(|s| s.dead += 1);
        tracing::warn!(
            job = id,
            "job dead: its lease ran out on its last allowed attempt"
        );
    }
    claims::claim(
        &ctx.pool,
        &ctx.instance,
        free,
        settings.lease,
        settings.max_attempts,
    )
    .await
}

/// Aborts the handler's task when the job's task is dropped (aborted, or gave the job up).
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs one claimed job to its recorded outcome; returns when it comes due again, if it was
/// queued again with a delay.
async fn work(
    ctx: Arc<Context>,
    claimed: Claimed,
    mut phase: watch::Receiver<Phase>,
) -> Option<Instant> {
    let job = &claimed.job;
    let lease = ctx.settings.lease;
    let mut lease_ends = claimed.claimed_at + lease;
    let handler = Arc::clone(&ctx.handler);
    let for_handler = job.clone();
    let mut run = AbortOnDrop(tokio::spawn(async move { handler.run(&for_handler).await }));
    // A floor, so a tiny lease (tests) cannot make a zero period, which would panic.
    let every = (lease / 3).max(Duration::from_millis(10));
    let mut beat = tokio::time::interval_at(Instant::now() + every, every);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let result = loop {
        tokio::select! {
            result = &mut run.0 => break result,
            _ = beat.tick() => {
                let sent = Instant::now();
                let renew = claims::heartbeat(&ctx.pool, job.id, claimed.token, lease);
                match timeout(lease_ends.saturating_duration_since(sent), renew).await {
                    Ok(Ok(true)) => lease_ends = sent + lease,
                    Ok(Ok(false)) => return lost(&ctx, job, "another worker holds it now"),
                    Ok(Err(e)) => {
                        ctx.count(|s| s.database_errors += 1);
                        tracing::warn!(job = job.id, error = %e, "cannot renew a job's lease; trying again");
                    }
                    Err(_) => {} // the lease has run out: the branch below gives up
                }
            }
            () = sleep_until(lease_ends) => {
                return lost(&ctx, job, "its lease ran out before it could be renewed");
            }
            () = releasing(&mut phase) => {
                drop(run);
                release(&ctx, &claimed).await;
                return None;
            }
        }
    };
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(e) => Err(crashed(&ctx, job, e)),
    };
    record(&ctx, &claimed, outcome, lease_ends).await
}

/// A handler task that ended without an outcome: a panic (a bug, or a library's), counted as
/// a failed attempt like any other.
fn crashed(ctx: &Context, job: &Job, error: JoinError) -> JobFailure {
    let reason = if error.is_panic() {
        ctx.count(|s| s.panicked += 1);
        format!("the handler panicked: {}", panic_text(error.into_panic()))
    } else {
        format!("the handler was cancelled: {error}")
    };
    tracing::error!(job = job.id, kind = %job.kind, attempt = job.attempt, %reason, "job handler crashed");
    JobFailure::Retry {
        reason,
        after: None,
    }
}

fn panic_text(payload: Box<dyn Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(text) => *text,
        Err(payload) => payload
            .downcast_ref::<&str>()
            .map_or_else(|| "(no message)".to_string(), |s| s.to_string()),
    }
}

/// Resolves once `stop` asks for unfinished jobs back; never if the pool is dropped instead.
async fn releasing(phase: &mut watch::Receiver<Phase>) {
    if phase.wait_for(|p| *p == Phase::Releasing).await.is_err() {
        std::future::pending::<()>().await;
    }
}

fn lost(ctx: &Context, job: &Job, why: &str) -> Option<Instant> {
    ctx.count(|s| s.lost_leases += 1);
    tracing::warn!(job = job.id, kind = %job.kind, why, "job given up: its lease is lost, so another instance may run it");
    None
}

async fn release(ctx: &Context, claimed: &Claimed) {
    let id = claimed.job.id;
    match timeout(RELEASE_LIMIT, claims::release(&ctx.pool, id, claimed.token)).await {
        Ok(Ok(true)) => {
            ctx.count(|s| s.released += 1);
            tracing::info!(job = id, "unfinished job handed back for another instance");
        }
        Ok(Ok(false)) => {
            lost(ctx, &claimed.job, "it was no longer ours to hand back");
        }
        Ok(Err(e)) => {
            tracing::warn!(job = id, error = %e, "cannot hand a job back; its lease will run out")
        }
        Err(_) => tracing::warn!(
            job = id,
            "handing a job back timed out; its lease will run out"
        ),
    }
}

/// Writes the outcome, trying again through database errors while the lease lasts; after
/// that the job is another instance's to run again.
async fn record(
    ctx: &Context,
    claimed: &Claimed,
    outcome: Result<(), JobFailure>,
    lease_ends: Instant,
) -> Option<Instant> {
    let job = &claimed.job;
    let (max_attempts, backoff_max) = (ctx.settings.max_attempts, ctx.settings.backoff_max);
    let mut failures = 0u32;
    loop {
        match claims::finish(&ctx.pool, claimed, &outcome, max_attempts, backoff_max).await {
            Ok(Some(Recorded::Done)) => {
                ctx.count(|s| s.completed += 1);
                return None;
            }
            Ok(Some(Recorded::Requeued(delay))) => {
                ctx.count(|s| s.retried += 1);
                tracing::info!(job = job.id, kind = %job.kind, attempt = job.attempt, retry_in = ?delay, "job failed; retrying later");
                return Some(Instant::now() + delay);
            }
            Ok(Some(Recorded::Dead)) => {
                ctx.count(|s| s.dead += 1);
                tracing::warn!(job = job.id, kind = %job.kind, attempt = job.attempt, "job dead; an administrator can retry or discard it");
                return None;
            }
            Ok(None) => return lost(ctx, job, "it ended after another worker took it over"),
            Err(e) => {
                ctx.count(|s| s.database_errors += 1);
                failures = failures.saturating_add(1);
                let pause = backoff(failures, Duration::from_secs(5));
                if Instant::now() + pause >= lease_ends {
                    tracing::warn!(job = job.id, error = %e, "cannot record a job's outcome before its lease runs out; it will run again");
                    return None;
                }
                tracing::warn!(job = job.id, error = %e, "cannot record a job's outcome; trying again");
                sleep(pause).await;
            }
        }
    }
}
