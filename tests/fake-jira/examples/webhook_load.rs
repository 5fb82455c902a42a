//! Webhook load generator for `scripts/bench`: sends many distinct, signed Jira 10
//! `jira:issue_updated` deliveries to filebridge's `POST {base}/hooks/jira` and reports how
//! many were accepted, how fast, and with what latency.
//!
//! ```sh
//! cargo run --release -p fake-jira --example webhook_load -- \
//!     --url http://127.0.0.1:8790/filebridge/hooks/jira --secret-file jira-webhook.secret \
//!     --count 20000 --concurrency 32 [--rate 2000] [--id-base 1000000]
//! ```
//!
//! Every body is built and signed before the clock starts, in the fake Jira's shape
//! ([`fake_jira::issue_updated_body`], signed with [`fake_jira::hub_signature`] like its own
//! deliveries). Issue ids run from `--id-base` and timestamps from the start time, one
//! millisecond apart, so no two deliveries are the same event and none is deduplicated; runs
//! against the same database need `--id-base` values `--count` apart. No
//! `X-Atlassian-Webhook-Identifier` is sent (Jira Data Center documents none), so filebridge
//! identifies each event by kind, issue id and timestamp.
//!
//! `--concurrency` workers send over keep-alive HTTP/1.1 connections (one each; opened by
//! the first request of each worker, inside the timed run). Without `--rate` it is a closed
//! loop: each worker sends its next delivery as soon as the previous one is answered, which
//! measures the most the receiver takes at that concurrency. With `--rate R`, delivery `i` is
//! due at `start + i/R` and its latency counts from when it was due, not from when a worker
//! got to it, so a receiver that falls behind shows it in the latency (no coordinated
//! omission) and in a rate below R.
//!
//! The runtime has one thread by default (`--threads`): on a small machine the generator
//! should take as little CPU from the receiver and its database as it can.
//!
//! Output: a human-readable report, then one line for scripts:
//! `RESULT sent=.. accepted=.. errors=.. wall_s=.. rate=.. p50_ms=.. p90_ms=.. p99_ms=.. max_ms=.. mean_ms=.. body_bytes=..`
//! and one `ERRORS` line (`ERRORS none`, or `ERRORS <what>=<count> ...`). The exit status is
//! 0 when every delivery was answered 2xx, 1 when some were not, 2 on bad arguments.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;

#[derive(Parser, Debug)]
#[command(about = "Sends signed Jira webhooks to filebridge and reports rate and latency")]
struct Args {
    /// The hook URL, e.g. http://127.0.0.1:8790/filebridge/hooks/jira
    #[arg(long)]
    url: String,
    /// File holding jira.webhook_secret (surrounding whitespace ignored, as filebridge does)
    #[arg(long)]
    secret_file: PathBuf,
    /// Deliveries to send
    #[arg(long, default_value_t = 20_000)]
    count: usize,
    /// Concurrent workers, each with its own keep-alive connection
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Deliveries per second to aim at (paced, latency counted from when each was due);
    /// unset: as fast as the receiver answers
    #[arg(long)]
    rate: Option<f64>,
    /// The first issue id; ids run from here, one per delivery
    #[arg(long, default_value_t = 1_000_000)]
    id_base: u64,
    /// Project key of the issues
    #[arg(long, default_value = "LOAD")]
    project: String,
    /// Base URL of "Jira" in the payloads' self links
    #[arg(long, default_value = "http://jira.invalid")]
    jira_url: String,
    /// Seconds before one request counts as failed
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    /// Runtime threads
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

/// One delivery, ready to send.
struct Delivery {
    body: &'static str,
    signature: String,
}

/// What one request came to.
enum Outcome {
    Status(u16),
    Transport(&'static str),
}

struct Sample {
    latency: Duration,
    outcome: Outcome,
}

fn main() {
    let args = Args::parse();
    if args.count == 0 || args.concurrency == 0 || args.threads == 0 {
        eprintln!("webhook_load: --count, --concurrency and --threads must be at least 1");
        std::process::exit(2);
    }
    if args.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
        eprintln!("webhook_load: --rate must be a positive number");
        std::process::exit(2);
    }
    let secret = match std::fs::read_to_string(&args.secret_file) {
        Ok(text) => text.trim().to_owned(),
        Err(e) => {
            eprintln!(
                "webhook_load: cannot read {}: {e}",
                args.secret_file.display()
            );
            std::process::exit(2);
        }
    };
    if secret.is_empty() {
        eprintln!("webhook_load: {} is empty", args.secret_file.display());
        std::process::exit(2);
    }

    let deliveries = build(&args, &secret);
    let body_bytes =
        deliveries.iter().map(|d| d.body.len()).sum::<usize>() as f64 / deliveries.len() as f64;

    let mut runtime = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(args.threads);
        builder
    };
    let runtime = runtime.enable_all().build().expect("a Tokio runtime");
    let (samples, wall) = runtime.block_on(run(&args, Arc::new(deliveries)));
    let failed = report(&args, &samples, wall, body_bytes);
    std::process::exit(i32::from(failed));
}

/// Builds and signs every delivery up front.
fn build(args: &Args, secret: &str) -> Vec<Delivery> {
    let start_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    (0..args.count)
        .map(|i| {
            let issue_id = args.id_base + i as u64;
            let key = format!("{}-{}", args.project, issue_id);
            let timestamp = start_ms + i as i64;
            let body = fake_jira::issue_updated_body(
                &args.jira_url,
                &args.project,
                issue_id,
                &key,
                timestamp,
            );
            let signature = fake_jira::hub_signature(secret, body.as_bytes());
            Delivery {
                // Lives as long as the process; saves a copy per request.
                body: Box::leak(body.into_boxed_str()),
                signature,
            }
        })
        .collect()
}

async fn run(args: &Args, deliveries: Arc<Vec<Delivery>>) -> (Vec<Sample>, Duration) {
    let client = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(args.concurrency)
        .pool_idle_timeout(Duration::from_secs(90))
        .timeout(Duration::from_secs(args.timeout))
        .user_agent("Atlassian HttpClient webhook_load")
        .build()
        .expect("an HTTP client");
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let interval = args.rate.map(|r| Duration::from_secs_f64(1.0 / r));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..args.concurrency {
        let client = client.clone();
        let url = args.url.clone();
        let next = Arc::clone(&next);
        let deliveries = Arc::clone(&deliveries);
        workers.spawn(async move {
            let mut samples = Vec::with_capacity(deliveries.len() / 8 + 16);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(delivery) = deliveries.get(i) else {
                    break;
                };
                let began = match interval {
                    Some(interval) => {
                        let due = start + interval.mul_f64(i as f64);
                        tokio::time::sleep_until(due.into()).await;
                        due
                    }
                    None => Instant::now(),
                };
                let outcome = send(&client, &url, delivery).await;
                samples.push(Sample {
                    latency: began.elapsed(),
                    outcome,
                });
            }
            samples
        });
    }
    let mut samples = Vec::with_capacity(deliveries.len());
    while let Some(done) = workers.join_next().await {
        samples.extend(done.expect("a worker panicked"));
    }
    (samples, start.elapsed())
}

async fn send(client: &reqwest::Client, url: &str, delivery: &Delivery) -> Outcome {
    let request = client
        .post(url)
        .header("Content-Type", "application/json; charset=UTF-8")
        .header("X-Hub-Signature", &delivery.signature)
        .body(delivery.body);
    match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            // Read the (empty or problem) body to the end so the connection is reused.
            match response.bytes().await {
                Ok(_) => Outcome::Status(status),
                Err(e) => Outcome::Transport(classify(&e)),
            }
        }
        Err(e) => Outcome::Transport(classify(&e)),
    }
}

fn classify(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else if e.is_body() || e.is_decode() {
        "body"
    } else {
        "transport"
    }
}

/// Prints the report; `true` when some delivery was not accepted.
fn report(args: &Args, samples: &[Sample], wall: Duration, body_bytes: f64) -> bool {
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    let mut accepted = 0usize;
    for sample in samples {
        match sample.outcome {
            Outcome::Status(s) if (200..300).contains(&s) => accepted += 1,
            Outcome::Status(s) => *errors.entry(format!("http_{s}")).or_default() += 1,
            Outcome::Transport(what) => *errors.entry(what.to_owned()).or_default() += 1,
        }
    }
    let failed: usize = errors.values().sum();
    let mut ms: Vec<f64> = samples
        .iter()
        .map(|s| s.latency.as_secs_f64() * 1000.0)
        .collect();
    ms.sort_by(f64::total_cmp);
    let pct = |p: f64| -> f64 {
        if ms.is_empty() {
            return f64::NAN;
        }
        // Nearest rank.
        let rank = ((p / 100.0) * ms.len() as f64).ceil().max(1.0) as usize;
        ms[rank.min(ms.len()) - 1]
    };
    let mean = ms.iter().sum::<f64>() / ms.len().max(1) as f64;
    let wall_s = wall.as_secs_f64();
    let rate = accepted as f64 / wall_s;
    let mode = match args.rate {
        Some(r) => format!("paced at {r}/s; latency from when each delivery was due"),
        None => "closed loop (as fast as answered); latency from send".to_owned(),
    };
    println!(
        "webhook_load: {} deliveries to {}, {} workers, {mode}",
        samples.len(),
        args.url,
        args.concurrency
    );
    println!(
        "  accepted (2xx) {accepted}, not accepted {failed}; wall {wall_s:.3} s; {rate:.0} accepted/s"
    );
    println!(
        "  latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}  mean {mean:.2}   (body {body_bytes:.0} bytes on average)",
        pct(50.0),
        pct(90.0),
        pct(99.0),
        pct(100.0)
    );
    println!(
        "RESULT sent={} accepted={accepted} errors={failed} wall_s={wall_s:.3} rate={rate:.1} p50_ms={:.2} p90_ms={:.2} p99_ms={:.2} max_ms={:.2} mean_ms={mean:.2} body_bytes={body_bytes:.0}",
        samples.len(),
        pct(50.0),
        pct(90.0),
        pct(99.0),
        pct(100.0)
    );
    if errors.is_empty() {
        println!("ERRORS none");
    } else {
        let list: Vec<String> = errors.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("ERRORS {}", list.join(" "));
    }
    failed > 0
}
