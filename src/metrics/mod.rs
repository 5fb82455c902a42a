//! What `/metrics` reports, in the OpenMetrics text format Prometheus scrapes.
//!
//! Counters that code increments as it works live in [`Metrics`] (one per application, no
//! globals: tests run many side by side). What already has a source of truth is read at
//! scrape time instead: the job queue from Postgres, the pool from sqlx, the egress counts
//! from the egress client. Labels carry routes (patterns, not paths), methods, statuses,
//! storage kinds, outcomes and the hosts filebridge connects to — never a user name, a path,
//! a file name or an issue key.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use sqlx::PgPool;

use crate::egress::EgressClient;

/// Seconds: from a health check's millisecond to a slow storage's minute.
const LATENCY_BUCKETS: [f64; 14] = [
    0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransferLabels {
    kind: &'static str,
    direction: Direction,
}

/// Which way file bytes went, seen from the user.
#[derive(
    Clone, Copy, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelValue,
)]
#[allow(non_camel_case_types)] // the label values Prometheus users expect
pub enum Direction {
    up,
    down,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JiraLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    cache: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HostLabels {
    host: String,
}

/// The caches whose hit ratio is reported.
#[derive(Clone, Copy, Debug)]
pub enum CacheName {
    /// Who a Jira credential belongs to (`security.identity_cache_ttl`).
    Identity,
    /// A user's permissions on an issue or project.
    Permissions,
}

impl CacheName {
    fn label(self) -> &'static str {
        match self {
            CacheName::Identity => "identity",
            CacheName::Permissions => "permissions",
        }
    }
}

struct Inner {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
    transferred: Family<TransferLabels, Counter>,
    jira_calls: Family<JiraLabels, Counter>,
    jira_latency: Histogram,
    cache: Family<CacheLabels, Counter>,
}

/// The application's counters. Cheap to clone; clones count together.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("filebridge");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route pattern, method and status",
            requests.clone(),
        );
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(LATENCY_BUCKETS)
        });
        registry.register_with_unit(
            "http_request_duration",
            "Time until the response headers were ready (a streamed body may take longer)",
            Unit::Seconds,
            latency.clone(),
        );
        let transferred = Family::<TransferLabels, Counter>::default();
        registry.register_with_unit(
            "storage_transferred",
            "File bytes streamed between users and storages, by storage kind and direction",
            Unit::Bytes,
            transferred.clone(),
        );
        let jira_calls = Family::<JiraLabels, Counter>::default();
        registry.register(
            "jira_requests",
            "Calls to Jira's REST API, by outcome (2xx, unauthorized = 401/403, 404, 429, 5xx, other 4xx, timeout, unreachable, refused by egress)",
            jira_calls.clone(),
        );
        let jira_latency = Histogram::new(LATENCY_BUCKETS);
        registry.register_with_unit(
            "jira_request_duration",
            "Time Jira took to answer",
            Unit::Seconds,
            jira_latency.clone(),
        );
        let cache = Family::<CacheLabels, Counter>::default();
        registry.register(
            "cache_lookups",
            "Lookups in the identity and permission caches, by result (hit or miss)",
            cache.clone(),
        );
        Self(Arc::new(Inner {
            registry,
            requests,
            latency,
            transferred,
            jira_calls,
            jira_latency,
            cache,
        }))
    }

    /// One answered request; `route` is the matched pattern (or "unmatched").
    pub fn request(&self, route: &str, method: &str, status: u16, took: Duration) {
        self.0
            .requests
            .get_or_create(&RequestLabels {
                route: route.to_string(),
                method: method.to_string(),
                status,
            })
            .inc();
        self.0
            .latency
            .get_or_create(&RouteLabels {
                route: route.to_string(),
                method: method.to_string(),
            })
            .observe(took.as_secs_f64());
    }

    /// A handle that counts file bytes for one storage kind and direction.
    pub fn transfer(&self, kind: &'static str, direction: Direction) -> Counter {
        self.0
            .transferred
            .get_or_create(&TransferLabels { kind, direction })
            .clone()
    }

    /// One call to Jira, with what came of it.
    pub fn jira_call(&self, outcome: &'static str, took: Duration) {
        self.0
            .jira_calls
            .get_or_create(&JiraLabels { outcome })
            .inc();
        self.0.jira_latency.observe(took.as_secs_f64());
    }

    pub fn cache_lookup(&self, cache: CacheName, hit: bool) {
        let result = if hit { "hit" } else { "miss" };
        self.0
            .cache
            .get_or_create(&CacheLabels {
                cache: cache.label(),
                result,
            })
            .inc();
    }

    /// The whole exposition: the counters above, then what is read now.
    pub async fn render(
        &self,
        pool: &PgPool,
        egress: &EgressClient,
    ) -> Result<String, sqlx::Error> {
        let mut now = Registry::with_prefix("filebridge");
        register_jobs(&mut now, pool).await?;
        register_pool(&mut now, pool);
        register_egress(&mut now, egress);
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode_registry(&mut text, &self.0.registry);
        let _ = encode_registry(&mut text, &now);
        let _ = encode_eof(&mut text);
        Ok(text)
    }
}

/// Jobs by state, from the queue itself, so every instance reports the same cluster-wide
/// figures (sum over one instance only). Finished (`done`) jobs are left out: they are
/// history, not work.
async fn register_jobs(registry: &mut Registry, pool: &PgPool) -> Result<(), sqlx::Error> {
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT state, count(*), count(*) FILTER (WHERE attempts > 0 AND state = 'queued')
           FROM jobs WHERE state <> 'done' GROUP BY state",
    )
    .fetch_all(pool)
    .await?;
    let jobs = Family::<StateLabels, Gauge>::default();
    for state in ["queued", "retrying", "running", "dead", "discarded"] {
        // Present at zero, so alerts on `dead > 0` have a series to look at.
        jobs.get_or_create(&StateLabels { state }).set(0);
    }
    for (state, count, retrying) in rows {
        let state = match state.as_str() {
            "queued" => "queued",
            "running" => "running",
            "dead" => "dead",
            "discarded" => "discarded",
            _ => continue,
        };
        if state == "queued" {
            jobs.get_or_create(&StateLabels { state: "queued" })
                .set(count - retrying);
            jobs.get_or_create(&StateLabels { state: "retrying" })
                .set(retrying);
        } else {
            jobs.get_or_create(&StateLabels { state }).set(count);
        }
    }
    registry.register(
        "jobs",
        "Jobs in the queue (all instances): queued, retrying after a failed attempt, running, dead after the last attempt, discarded by an admin",
        jobs,
    );
    Ok(())
}

fn register_pool(registry: &mut Registry, pool: &PgPool) {
    let connections = Family::<StateLabels, Gauge>::default();
    let open = i64::from(pool.size());
    let idle = i64::try_from(pool.num_idle()).unwrap_or(i64::MAX);
    connections
        .get_or_create(&StateLabels { state: "idle" })
        .set(idle);
    connections
        .get_or_create(&StateLabels { state: "in_use" })
        .set(open.saturating_sub(idle));
    registry.register(
        "db_pool_connections",
        "Connections this instance holds to PostgreSQL, idle or in use",
        connections,
    );
    let max: Gauge = Gauge::default();
    max.set(i64::from(pool.options().get_max_connections()));
    registry.register("db_pool_max_connections", "database.max_connections", max);
}

fn register_egress(registry: &mut Registry, egress: &EgressClient) {
    let contacted = Family::<HostLabels, Counter>::default();
    let refused = Family::<HostLabels, Counter>::default();
    for (host, counts) in egress.report() {
        let labels = HostLabels { host };
        if counts.contacted > 0 {
            contacted.get_or_create(&labels).inc_by(counts.contacted);
        }
        if counts.refused > 0 {
            refused.get_or_create(&labels).inc_by(counts.refused);
        }
    }
    registry.register(
        "egress_contacted",
        "Outbound connections allowed, by host:port (Jira, storages, egress.allow)",
        contacted,
    );
    registry.register(
        "egress_refused",
        "Outbound connections refused by the egress allowlist, by host:port",
        refused,
    );
}
