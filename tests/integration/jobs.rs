//! The job queue: retries with backoff and Retry-After, dead jobs and the admin actions,
//! dedupe, two instances on one database, lost leases, graceful stop, panicking handlers, a
//! database outage, and the admin routes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use filebridge::config::JobsSettings;
use filebridge::jobs::{
    self, Handler, Job, JobError, JobFailure, JobFilter, JobState, JobSummary, NewJob, Workers,
};
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::sync::Semaphore;

use crate::helpers::{OwnCluster, cluster_url, create_database, eventually, spawn_app};

/// What a test handler does with a job.
#[derive(Debug, Clone, Copy)]
enum Act {
    Succeed,
    Retry(Option<Duration>),
    Fatal,
    Panic,
    /// Succeed once the test adds a permit to the gate.
    Wait,
    /// Never return.
    Hang,
}

type Plan = fn(&Job) -> Act;

/// Every run, shared by the handlers of all pools in a test.
#[derive(Default)]
struct Log {
    /// (job, attempt, instance) of each run started.
    started: Mutex<Vec<(i64, u32, &'static str)>>,
    /// The instances whose run of a job returned success.
    succeeded: Mutex<HashMap<i64, Vec<&'static str>>>,
}

impl Log {
    fn attempts(&self, id: i64) -> Vec<u32> {
        let started = self.started.lock().unwrap();
        started.iter().filter(|s| s.0 == id).map(|s| s.1).collect()
    }
}

struct TestHandler {
    instance: &'static str,
    plan: Plan,
    log: Arc<Log>,
    gate: Arc<Semaphore>,
}

#[async_trait::async_trait]
impl Handler for TestHandler {
    async fn run(&self, job: &Job) -> Result<(), JobFailure> {
        self.log
            .started
            .lock()
            .unwrap()
            .push((job.id, job.attempt, self.instance));
        match (self.plan)(job) {
            Act::Succeed => {}
            Act::Retry(after) => {
                let reason = format!("busy on attempt {}", job.attempt);
                return Err(JobFailure::Retry { reason, after });
            }
            Act::Fatal => return Err(JobFailure::Fatal("the payload names no issue".into())),
            Act::Panic => panic!("handler bug on attempt {}", job.attempt),
            Act::Wait => self.gate.acquire().await.unwrap().forget(),
            Act::Hang => std::future::pending::<()>().await,
        }
        let mut succeeded = self.log.succeeded.lock().unwrap();
        succeeded.entry(job.id).or_default().push(self.instance);
        Ok(())
    }
}

/// A migrated database, and the log and gate the tests' handlers share.
struct Harness {
    pool: PgPool,
    log: Arc<Log>,
    gate: Arc<Semaphore>,
}

impl Harness {
    async fn new() -> Self {
        Self::on(&cluster_url()).await
    }

    async fn on(cluster: &str) -> Self {
        let url = create_database(cluster).await;
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(Duration::from_secs(3))
            .connect(&url)
            .await
            .unwrap();
        filebridge::db::migrate(&pool).await.unwrap();
        Self {
            pool,
            log: Arc::default(),
            gate: Arc::new(Semaphore::new(0)),
        }
    }

    /// A pool of workers as instance `name` would run it, on a connection pool of its own.
    async fn start(&self, name: &'static str, plan: Plan, settings: JobsSettings) -> Workers {
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(Duration::from_secs(3))
            .connect_with((*self.pool.connect_options()).clone())
            .await
            .unwrap();
        let handler = TestHandler {
            instance: name,
            plan,
            log: Arc::clone(&self.log),
            gate: Arc::clone(&self.gate),
        };
        Workers::start(pool, Arc::new(handler), settings, name.to_string())
    }

    async fn add(&self, kind: &str, key: Option<&str>) -> Option<i64> {
        let mut conn = self.pool.acquire().await.unwrap();
        let job = NewJob {
            kind: kind.into(),
            payload: json!({ "issue_id": "10001" }),
            dedupe_key: key.map(Into::into),
            run_at: None,
        };
        jobs::enqueue(&mut conn, &job).await.unwrap()
    }

    async fn job(&self, id: i64) -> JobSummary {
        jobs::get(&self.pool, id).await.unwrap()
    }

    /// Waits until the job satisfies `check`, and returns it.
    async fn until(&self, id: i64, what: &str, check: fn(&JobSummary) -> bool) -> JobSummary {
        eventually(what, Duration::from_secs(30), || async {
            check(&self.job(id).await)
        })
        .await;
        self.job(id).await
    }

    async fn sql(&self, statement: &'static str, id: i64) {
        sqlx::query(statement)
            .bind(id)
            .execute(&self.pool)
            .await
            .unwrap();
    }

    /// Seconds between the job's last change and its next run: the delay it was given.
    async fn delay(&self, id: i64) -> f64 {
        sqlx::query_scalar(
            "SELECT extract(epoch FROM run_at - updated_at)::float8 FROM jobs WHERE id = $1",
        )
        .bind(id)
        .fetch_one(&self.pool)
        .await
        .unwrap()
    }
}

fn settings(workers: usize, max_attempts: u32) -> JobsSettings {
    JobsSettings {
        workers,
        max_attempts,
        lease: Duration::from_secs(3),
        backoff_max: Duration::from_millis(50),
    }
}

fn done(job: &JobSummary) -> bool {
    job.state == JobState::Done
}

fn dead(job: &JobSummary) -> bool {
    job.state == JobState::Dead
}

#[tokio::test]
async fn a_failing_job_is_retried_until_it_succeeds() {
    let h = Harness::new().await;
    let plan: Plan = |job| match job.attempt {
        1 | 2 => Act::Retry(None),
        _ => Act::Succeed,
    };
    let workers = h.start("one", plan, settings(2, 5)).await;
    let id = h.add("sync_issue", None).await.unwrap();
    let job = h.until(id, "the job is done", done).await;
    assert_eq!(job.attempts, 3);
    assert_eq!(h.log.attempts(id), [1, 2, 3]);
    // The failure before the success stays visible as history.
    assert_eq!(job.last_error.as_deref(), Some("busy on attempt 2"));
    assert!(job.finished_at.is_some() && job.locked_by.is_none());
    let stats = workers.stop(Duration::from_secs(1)).await;
    assert_eq!((stats.retried, stats.completed), (2, 1));
}

#[tokio::test]
async fn retry_after_is_honoured_over_a_shorter_backoff() {
    let h = Harness::new().await;
    let plan: Plan = |_| Act::Retry(Some(Duration::from_secs(30)));
    let workers = h.start("one", plan, settings(1, 5)).await;
    let id = h.add("sync_issue", None).await.unwrap();
    let job = h
        .until(id, "the first attempt failed", |j| {
            j.attempts == 1 && j.state == JobState::Queued
        })
        .await;
    let delay = h.delay(id).await;
    assert!((30.0..31.0).contains(&delay), "run_at moved by {delay} s");
    assert!(job.locked_by.is_none());
    workers.stop(Duration::from_secs(1)).await;
    assert_eq!(h.log.attempts(id), [1], "not run again before Retry-After");
}

#[test]
fn backoff_doubles_with_jitter_and_is_capped() {
    let max = Duration::from_secs(60);
    for attempt in 1..=10u32 {
        let step = Duration::from_secs(1 << (attempt - 1)).min(max);
        let samples: Vec<Duration> = (0..200).map(|_| jobs::backoff(attempt, max)).collect();
        for d in &samples {
            assert!(*d >= step / 2 && *d <= step, "attempt {attempt}: {d:?}");
        }
        let spread = samples.iter().max().unwrap() > samples.iter().min().unwrap();
        assert!(spread, "attempt {attempt}: no jitter");
    }
    for attempt in [40, 1000, u32::MAX] {
        let d = jobs::backoff(attempt, max);
        assert!(d >= max / 2 && d <= max, "attempt {attempt}: {d:?}");
    }
}

#[tokio::test]
async fn the_queue_backs_off_exponentially_up_to_backoff_max() {
    let h = Harness::new().await;
    // A Retry-After shorter than the backoff does not shorten it.
    let plan: Plan = |_| Act::Retry(Some(Duration::from_millis(1)));
    let mut s = settings(1, 10);
    s.backoff_max = Duration::from_secs(4);
    let workers = h.start("one", plan, s).await;
    let id = h.add("sync_issue", None).await.unwrap();
    for (attempt, step) in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 4.0), (5, 4.0)] {
        eventually("the attempt failed", Duration::from_secs(20), || async {
            let job = h.job(id).await;
            job.attempts == attempt && job.state == JobState::Queued
        })
        .await;
        let delay = h.delay(id).await;
        assert!(
            delay >= step / 2.0 - 0.01 && delay <= step + 0.01,
            "attempt {attempt}: {delay} s, step {step} s"
        );
        // Due now instead of after the delay, so the test does not wait it out.
        h.sql("UPDATE jobs SET run_at = now() WHERE id = $1", id)
            .await;
    }
    workers.stop(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn jobs_die_after_max_attempts_and_fatal_failures_at_once() {
    let h = Harness::new().await;
    let plan: Plan = |job| match job.kind.as_str() {
        "flaky" => Act::Retry(None),
        _ => Act::Fatal,
    };
    let workers = h.start("one", plan, settings(2, 3)).await;
    let flaky = h.add("flaky", None).await.unwrap();
    let fatal = h.add("broken", None).await.unwrap();
    let job = h.until(flaky, "the flaky job dies", dead).await;
    assert_eq!((job.attempts, h.log.attempts(flaky)), (3, vec![1, 2, 3]));
    assert_eq!(job.last_error.as_deref(), Some("busy on attempt 3"));
    assert!(job.finished_at.is_some());
    let job = h.until(fatal, "the broken job dies", dead).await;
    assert_eq!((job.attempts, h.log.attempts(fatal)), (1, vec![1]));
    assert_eq!(
        job.last_error.as_deref(),
        Some("the payload names no issue")
    );
    let dead_jobs = jobs::list(
        &h.pool,
        &JobFilter {
            state: Some(JobState::Dead),
            limit: None,
        },
    );
    let ids: Vec<i64> = dead_jobs.await.unwrap().iter().map(|j| j.id).collect();
    assert_eq!(ids, [fatal, flaky], "newest first");
    assert_eq!(workers.stop(Duration::from_secs(1)).await.dead, 2);
}

#[tokio::test]
async fn admins_retry_and_discard_settled_jobs_only() {
    let h = Harness::new().await;
    // Broken until "the bug is fixed", when an admin retries the dead jobs.
    static FIXED: AtomicBool = AtomicBool::new(false);
    let plan: Plan = |_| match FIXED.load(Ordering::SeqCst) {
        true => Act::Succeed,
        false => Act::Fatal,
    };
    let workers = h.start("one", plan, settings(2, 5)).await;
    let retried = h.add("sync_issue", Some("event-1")).await.unwrap();
    let discarded = h.add("sync_issue", Some("event-2")).await.unwrap();
    h.until(retried, "dead", dead).await;
    h.until(discarded, "dead", dead).await;
    FIXED.store(true, Ordering::SeqCst);

    let mut tx = h.pool.begin().await.unwrap();
    let changed = jobs::retry(&mut tx, retried).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(changed.previous, JobState::Dead);
    assert_eq!(
        (changed.job.state, changed.job.attempts),
        (JobState::Queued, 0)
    );
    let job = h.until(retried, "the retried job runs", done).await;
    assert_eq!(job.attempts, 1, "attempts start over");

    let mut conn = h.pool.acquire().await.unwrap();
    let changed = jobs::discard(&mut conn, discarded).await.unwrap();
    assert_eq!(
        (changed.previous, changed.job.state),
        (JobState::Dead, JobState::Discarded)
    );
    assert!(changed.job.finished_at.is_some());
    // The discarded job's key still recognises a late duplicate of its event.
    assert_eq!(h.add("sync_issue", Some("event-2")).await, None);

    for result in [
        jobs::retry(&mut conn, retried).await,
        jobs::discard(&mut conn, retried).await,
    ] {
        assert!(matches!(
            result,
            Err(JobError::WrongState(JobState::Done, _))
        ));
    }
    let again = jobs::retry(&mut conn, discarded).await;
    assert!(matches!(
        again,
        Err(JobError::WrongState(JobState::Discarded, _))
    ));
    assert!(matches!(
        jobs::retry(&mut conn, 999_999).await,
        Err(JobError::NotFound)
    ));
    assert!(matches!(
        jobs::get(&h.pool, 999_999).await,
        Err(JobError::NotFound)
    ));
    workers.stop(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_dedupe_key_makes_one_job_and_old_finished_jobs_are_purged() {
    let h = Harness::new().await;
    let first = h.add("sync_issue", Some("jira:42")).await;
    assert!(first.is_some());
    assert_eq!(h.add("sync_issue", Some("jira:42")).await, None);
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(&h.pool)
        .await
        .unwrap();
    assert_eq!(count, 1);

    let old_done = first.unwrap();
    let old_dead = h.add("sync_issue", None).await.unwrap();
    let new_done = h.add("sync_issue", None).await.unwrap();
    h.sql(
        "UPDATE jobs SET state = 'done', finished_at = now() - interval '31 days' WHERE id = $1",
        old_done,
    )
    .await;
    h.sql(
        "UPDATE jobs SET state = 'dead', finished_at = now() - interval '31 days' WHERE id = $1",
        old_dead,
    )
    .await;
    h.sql(
        "UPDATE jobs SET state = 'done', finished_at = now() - interval '29 days' WHERE id = $1",
        new_done,
    )
    .await;
    assert_eq!(
        h.add("sync_issue", Some("jira:42")).await,
        None,
        "done keeps its key"
    );
    let removed = jobs::purge_finished(&h.pool, jobs::KEEP_FINISHED)
        .await
        .unwrap();
    assert_eq!(removed, 1);
    let left = jobs::list(&h.pool, &JobFilter::default()).await.unwrap();
    let ids: Vec<i64> = left.iter().map(|j| j.id).collect();
    assert_eq!(ids, [new_done, old_dead], "dead jobs wait for an admin");
}

#[tokio::test]
async fn two_instances_run_each_job_of_a_burst_exactly_once() {
    let h = Harness::new().await;
    let plan: Plan = |_| Act::Succeed;
    let one = h.start("one", plan, settings(8, 5)).await;
    let two = h.start("two", plan, settings(8, 5)).await;
    let mut tx = h.pool.begin().await.unwrap();
    for n in 0..1000 {
        let job = NewJob {
            kind: "sync_issue".into(),
            payload: json!({ "issue_id": n.to_string() }),
            dedupe_key: Some(format!("burst-{n}")),
            run_at: None,
        };
        jobs::enqueue(&mut tx, &job).await.unwrap().unwrap();
    }
    tx.commit().await.unwrap();
    eventually("every job is done", Duration::from_secs(120), || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE state = 'done'")
            .fetch_one(&h.pool)
            .await
            .unwrap();
        n == 1000
    })
    .await;
    let (a, b) = (
        one.stop(Duration::from_secs(1)).await,
        two.stop(Duration::from_secs(1)).await,
    );
    let succeeded = h.log.succeeded.lock().unwrap().clone();
    assert_eq!(succeeded.len(), 1000);
    let twice: Vec<_> = succeeded
        .iter()
        .filter(|(_, runs)| runs.len() != 1)
        .collect();
    let example = twice.first();
    assert!(
        twice.is_empty(),
        "{} ran more than once, e.g. {example:?}",
        twice.len()
    );
    assert_eq!(
        h.log.started.lock().unwrap().len(),
        1000,
        "no job started twice"
    );
    assert!(
        a.completed > 0 && b.completed > 0,
        "both instances worked: {a:?} {b:?}"
    );
    assert_eq!(a.completed + b.completed, 1000);
}

#[tokio::test]
async fn a_job_whose_holder_died_is_taken_over() {
    let h = Harness::new().await;
    // A holder killed on a job: its lease ran out, and one whose lease ran out on its last attempt.
    let orphan = h.add("sync_issue", None).await.unwrap();
    let spent = h.add("sync_issue", None).await.unwrap();
    let kill = "UPDATE jobs SET state = 'running', attempts = $2, locked_by = 'killed', \
                lease_token = gen_random_uuid(), locked_until = now() - interval '1 second' WHERE id = $1";
    for (id, attempts) in [(orphan, 1), (spent, 3)] {
        sqlx::query(kill)
            .bind(id)
            .bind(attempts)
            .execute(&h.pool)
            .await
            .unwrap();
    }
    let plan: Plan = |job| {
        if job.kind == "hang" {
            Act::Hang
        } else {
            Act::Succeed
        }
    };
    let mut s = settings(2, 3);
    s.lease = Duration::from_secs(2);
    let one = h.start("one", plan, s.clone()).await;
    let job = h.until(orphan, "the orphan is taken over", done).await;
    assert_eq!(job.attempts, 2);
    assert!(job.last_error.unwrap().contains("lease of killed ran out"));
    let job = h.until(spent, "the spent job dies", dead).await;
    assert!(
        job.last_error.unwrap().contains("last allowed"),
        "never run again"
    );
    assert!(h.log.attempts(spent).is_empty());

    // A live holder renews its lease, and no other instance takes the job meanwhile.
    let stuck = h.add("hang", None).await.unwrap();
    let first = h
        .until(stuck, "claimed by one", |j| {
            j.locked_by.as_deref() == Some("one")
        })
        .await;
    let two = h.start("two", plan, s).await;
    let until = first.locked_until.unwrap();
    eventually(
        "the lease is renewed past its first end",
        Duration::from_secs(20),
        || async {
            let job = h.job(stuck).await;
            job.locked_by.as_deref() == Some("one")
                && job.locked_until.unwrap() > until + Duration::from_millis(2500)
        },
    )
    .await;
    // Killed: dropped without stopping, so nothing is released.
    drop(one);
    let job = h
        .until(stuck, "two takes the job over", |j| {
            j.locked_by.as_deref() == Some("two")
        })
        .await;
    assert_eq!((job.state, job.attempts), (JobState::Running, 2));
    assert_eq!(h.log.attempts(stuck), [1, 2]);
    assert_eq!(two.stop(Duration::ZERO).await.released, 1);
}

#[tokio::test]
async fn stop_finishes_quick_jobs_and_releases_the_rest_to_another_instance() {
    let h = Harness::new().await;
    let plan: Plan = |job| match job.kind.as_str() {
        "slow" => Act::Wait,
        "hang" => Act::Hang,
        _ => Act::Succeed,
    };
    let one = h.start("one", plan, settings(4, 5)).await;
    let slow = h.add("slow", None).await.unwrap();
    let hang = h.add("hang", None).await.unwrap();
    eventually("both jobs run", Duration::from_secs(20), || async {
        h.log.started.lock().unwrap().len() == 2
    })
    .await;
    let stopping = tokio::spawn(one.stop(Duration::from_secs(2)));
    h.gate.add_permits(1);
    let stats = stopping.await.unwrap();
    assert_eq!((stats.completed, stats.released), (1, 1));
    assert_eq!(
        h.job(slow).await.state,
        JobState::Done,
        "finished within the grace"
    );
    let released = h.job(hang).await;
    assert_eq!((released.state, released.attempts), (JobState::Queued, 0));
    assert!(released.locked_by.is_none() && released.locked_until.is_none());

    let plan: Plan = |_| Act::Succeed;
    let two = h.start("two", plan, settings(4, 5)).await;
    let job = h.until(hang, "two completes the released job", done).await;
    assert_eq!(job.attempts, 1, "the released attempt did not count");
    assert_eq!(h.log.succeeded.lock().unwrap()[&hang], ["two"]);
    two.stop(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_panicking_handler_counts_as_a_failed_attempt_and_the_pool_carries_on() {
    let h = Harness::new().await;
    let plan: Plan = |job| match (job.kind.as_str(), job.attempt) {
        ("boom", 1) | ("always_boom", _) => Act::Panic,
        _ => Act::Succeed,
    };
    // One worker: everything after the panic proves the pool survived it.
    let workers = h.start("one", plan, settings(1, 2)).await;
    let boom = h.add("boom", None).await.unwrap();
    let always = h.add("always_boom", None).await.unwrap();
    let mut others = Vec::new();
    for _ in 0..3 {
        others.push(h.add("sync_issue", None).await.unwrap());
    }
    let job = h
        .until(boom, "boom succeeds on its second attempt", done)
        .await;
    assert_eq!(job.attempts, 2);
    assert!(
        job.last_error
            .unwrap()
            .contains("panicked: handler bug on attempt 1")
    );
    let job = h.until(always, "always_boom dies", dead).await;
    assert_eq!(job.attempts, 2);
    for id in others {
        assert_eq!(h.until(id, "the others are done", done).await.attempts, 1);
    }
    let stats = workers.stop(Duration::from_secs(1)).await;
    assert_eq!((stats.panicked, stats.completed, stats.dead), (3, 4, 1));
}

#[tokio::test]
async fn workers_resume_by_themselves_after_a_database_outage() {
    let cluster = OwnCluster::start(None);
    let h = Harness::on(&cluster.url).await;
    let plan: Plan = |_| Act::Succeed;
    let workers = h.start("one", plan, settings(2, 5)).await;
    let before = h.add("sync_issue", None).await.unwrap();
    h.until(before, "done before the outage", done).await;
    cluster.pause();
    eventually(
        "the workers notice the outage",
        Duration::from_secs(30),
        || async { workers.stats().database_errors > 0 },
    )
    .await;
    cluster.resume();
    let after = h.add("sync_issue", None).await.unwrap();
    eventually(
        "a job added after the outage is done",
        Duration::from_secs(60),
        || async {
            matches!(jobs::get(&h.pool, after).await, Ok(job) if job.state == JobState::Done)
        },
    )
    .await;
    workers.stop(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn admin_routes_list_show_retry_and_discard_jobs() {
    let app = spawn_app().await;
    let root = app.jira.add_user("root", "Root Admin");
    app.jira.add_token("root", "root-pat");
    app.jira.grant_global("root", "ADMINISTER");
    app.jira.add_user("alice", "Alice");
    app.jira.add_token("alice", "alice-pat");
    let pool = PgPool::connect(&app.database_url).await.unwrap();
    let mut conn = pool.acquire().await.unwrap();
    let mut ids = Vec::new();
    for n in 0..3 {
        // Due in an hour, so no worker the app may run touches them during the test.
        let job = NewJob {
            kind: "sync_issue".into(),
            payload: json!({ "issue_id": n.to_string() }),
            dedupe_key: None,
            run_at: Some(time::OffsetDateTime::now_utc() + time::Duration::hours(1)),
        };
        ids.push(jobs::enqueue(&mut conn, &job).await.unwrap().unwrap());
    }
    let [first, second, queued] = ids[..] else {
        unreachable!()
    };
    sqlx::query(
        "UPDATE jobs SET state = 'dead', attempts = 10, last_error = 'boom' WHERE id <> $1",
    )
    .bind(queued)
    .execute(&pool)
    .await
    .unwrap();
    let call = async |method: Method, path: &str, token: &str| {
        let url = app.url(&format!("/api/v1/admin/jobs{path}"));
        let response = app
            .client
            .request(method, url)
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (
            status,
            response.json::<Value>().await.unwrap_or(Value::Null),
        )
    };
    let item_ids = |body: &Value| -> Vec<i64> {
        body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["id"].as_i64().unwrap())
            .collect()
    };

    for (method, path) in [
        (Method::GET, String::new()),
        (Method::GET, format!("/{first}")),
        (Method::POST, format!("/{first}/retry")),
        (Method::DELETE, format!("/{first}")),
    ] {
        let (status, body) = call(method, &path, "alice-pat").await;
        assert_eq!(
            (status, body["code"].as_str()),
            (403, Some("admin_required")),
            "{path}"
        );
    }
    assert_eq!(jobs::get(&pool, first).await.unwrap().state, JobState::Dead);

    let (status, body) = call(Method::GET, "", "root-pat").await;
    assert_eq!(
        (status, item_ids(&body)),
        (200, vec![queued, second, first])
    );
    assert_eq!(
        item_ids(&call(Method::GET, "?state=dead", "root-pat").await.1),
        [second, first]
    );
    assert_eq!(
        item_ids(&call(Method::GET, "?limit=1", "root-pat").await.1),
        [queued]
    );
    let (status, body) = call(Method::GET, "?state=sleeping", "root-pat").await;
    assert_eq!((status, body["code"].as_str()), (400, Some("bad_request")));

    let (status, body) = call(Method::GET, &format!("/{first}"), "root-pat").await;
    assert_eq!(status, 200);
    assert_eq!(
        (body["state"].as_str(), body["last_error"].as_str()),
        (Some("dead"), Some("boom"))
    );
    assert_eq!(body["payload"], json!({ "issue_id": "0" }));
    for path in ["/999999", "/abc", "/999999/retry"] {
        let method = if path.ends_with("retry") {
            Method::POST
        } else {
            Method::GET
        };
        let (status, body) = call(method, path, "root-pat").await;
        assert_eq!(
            (status, body["code"].as_str()),
            (404, Some("not_found")),
            "{path}"
        );
    }
    assert_eq!(
        call(Method::PUT, &format!("/{first}"), "root-pat").await.0,
        405
    );

    let (status, body) = call(Method::POST, &format!("/{first}/retry"), "root-pat").await;
    assert_eq!(status, 200);
    assert_eq!(
        (body["id"].as_i64(), body["state"].as_str()),
        (Some(first), Some("queued"))
    );
    assert_eq!(body["attempts"], 0);
    assert_eq!(
        call(Method::DELETE, &format!("/{second}"), "root-pat")
            .await
            .0,
        204
    );
    assert_eq!(
        jobs::get(&pool, second).await.unwrap().state,
        JobState::Discarded
    );
    let (status, body) = call(Method::DELETE, &format!("/{second}"), "root-pat").await;
    assert_eq!((status, body["code"].as_str()), (409, Some("conflict")));

    let audited: Vec<(String, String, Option<String>, Value)> = sqlx::query_as(
        "SELECT action, actor_key, target, details FROM audit_events
         WHERE action LIKE 'job.%' ORDER BY seq",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let expected = [("job.retry", first), ("job.discard", second)];
    assert_eq!(
        audited.len(),
        2,
        "refusals change nothing and are not audited: {audited:?}"
    );
    for ((action, actor, target, details), (want, id)) in audited.iter().zip(expected) {
        assert_eq!(
            (action.as_str(), actor, target.clone()),
            (want, &root, Some(format!("job:{id}")))
        );
        assert_eq!(details["previous_state"], "dead");
        assert_eq!(details["kind"], "sync_issue");
    }
}
