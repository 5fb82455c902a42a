//! A little over 1 GiB up and down through each proxy, as a stream: generated as it is sent,
//! hashed as it goes and as it comes back, never held in memory or written anywhere but the
//! storage under test. The proxies must stream both ways: their temporary-file directories
//! stay empty and their processes write (next to) nothing to disk.
//!
//! The size is just above 1 GiB on purpose: the test's Apache site limits bodies to 1 GiB
//! (LimitRequestBody, whose documented default is 1 GiB since 2.4.54), which the snippet
//! lifts; nginx's default limit is 1 MiB, which the snippet lifts too.

use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use rand::{RngCore, SeedableRng};
use reqwest::header::{ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_LENGTH, RANGE};
use sha2::{Digest, Sha256};

use super::{Stack, stack};
use crate::proxy_peers::Kind;

const BIG: u64 = (1 << 30) + 12_345;
/// Chunked (no Content-Length), larger than any buffer a proxy keeps in memory.
const CHUNKED: u64 = (48 << 20) + 3;
const CHUNK: usize = 256 * 1024;
const TABLE: usize = 1 << 20;
/// Log lines and the like; a spooled body would be hundreds of MiB.
const DISK_WRITE_BOUND: u64 = 8 << 20;

/// Deterministic pseudo-random bytes, cheap to make: chunk k is a random 1 MiB table read
/// from an offset that depends on k, stamped with k, so no two chunks are alike and a
/// reordered, repeated or dropped chunk changes the digest.
#[derive(Clone)]
struct Pattern(Arc<Vec<u8>>);

impl Pattern {
    fn new() -> Pattern {
        let mut table = vec![0u8; TABLE];
        rand::rngs::StdRng::seed_from_u64(0x5EED).fill_bytes(&mut table);
        Pattern(Arc::new(table))
    }

    fn chunk(&self, k: u64, total: u64) -> Bytes {
        let start = k * CHUNK as u64;
        let len = (total - start).min(CHUNK as u64) as usize;
        let offset = (k as usize).wrapping_mul(104_729) % TABLE;
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            let from = (offset + out.len()) % TABLE;
            let take = (len - out.len()).min(TABLE - from);
            out.extend_from_slice(&self.0[from..from + take]);
        }
        let stamp = k.to_le_bytes();
        let n = len.min(stamp.len());
        out[..n].copy_from_slice(&stamp[..n]);
        Bytes::from(out)
    }

    /// Bytes `from..from+len` of a body (within one chunk).
    fn slice(&self, from: u64, len: usize, total: u64) -> Bytes {
        let k = from / CHUNK as u64;
        let at = (from % CHUNK as u64) as usize;
        self.chunk(k, total).slice(at..at + len)
    }
}

/// The most the proxy held in temporary files while `work` ran.
async fn spool_peak<T>(stack: &Stack, work: impl std::future::Future<Output = T>) -> (T, u64) {
    let spool = stack.proxy.spool();
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));
    let watcher = {
        let (stop, peak, spool) = (Arc::clone(&stop), Arc::clone(&peak), spool.clone());
        tokio::spawn(async move {
            // Sampling while the transfer runs: a spooled body would be there for seconds.
            while !stop.load(Ordering::SeqCst) {
                peak.fetch_max(spool.bytes(), Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let out = work.await;
    stop.store(true, Ordering::SeqCst);
    watcher.await.expect("spool watcher");
    (out, peak.load(Ordering::SeqCst).max(spool.bytes()))
}

/// PUTs `total` pattern bytes as `name`; with Content-Length unless `chunked`. Returns the
/// digest of what was sent and how long it took.
async fn upload(s: &Stack, name: &str, total: u64, chunked: bool) -> (String, Duration) {
    let pattern = Pattern::new();
    let hasher = Arc::new(Mutex::new(Sha256::new()));
    let body = {
        let hasher = Arc::clone(&hasher);
        futures_util::stream::iter(0..total.div_ceil(CHUNK as u64)).map(move |k| {
            let chunk = pattern.chunk(k, total);
            hasher.lock().expect("hasher").update(&chunk);
            Ok::<Bytes, std::io::Error>(chunk)
        })
    };
    let mut request = s
        .client
        .put(s.files("/content"))
        .query(&[("path", name)])
        .bearer_auth("alice-pat");
    if !chunked {
        request = request.header(CONTENT_LENGTH, total);
    }
    let started = Instant::now();
    let response = request
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .expect("upload through the proxy");
    let elapsed = started.elapsed();
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    assert_eq!(status, 201, "{text}\n{}", s.proxy.log());
    let digest = hex::encode(hasher.lock().expect("hasher").clone().finalize());
    (digest, elapsed)
}

/// Size and SHA-256 of a stored file, read in 1 MiB pieces.
async fn stored_digest(path: std::path::PathBuf) -> (u64, String) {
    tokio::task::spawn_blocking(move || {
        let mut file = std::fs::File::open(&path).expect("the stored file");
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; 1 << 20];
        let mut size = 0u64;
        loop {
            let n = file.read(&mut buffer).expect("read the stored file");
            if n == 0 {
                return (size, hex::encode(hasher.finalize()));
            }
            size += n as u64;
            hasher.update(&buffer[..n]);
        }
    })
    .await
    .expect("hash the stored file")
}

/// GETs `name` whole (offering gzip, which the snippet must not apply); returns size,
/// digest and duration.
async fn download(s: &Stack, name: &str) -> (u64, String, Duration) {
    let started = Instant::now();
    let response = s
        .client
        .get(s.files("/content"))
        .query(&[("path", name)])
        .bearer_auth("alice-pat")
        .header(ACCEPT_ENCODING, "gzip")
        .send()
        .await
        .expect("download through the proxy");
    assert_eq!(response.status(), 200, "{}", s.proxy.log());
    assert!(
        response.headers().get(CONTENT_ENCODING).is_none(),
        "compressed"
    );
    let length = response.headers().get(CONTENT_LENGTH).cloned();
    let mut body = response.bytes_stream();
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.expect("download chunk");
        size += chunk.len() as u64;
        hasher.update(&chunk);
    }
    let elapsed = started.elapsed();
    assert_eq!(
        length.and_then(|v| v.to_str().ok()?.parse::<u64>().ok()),
        Some(size),
        "Content-Length kept"
    );
    (size, hex::encode(hasher.finalize()), elapsed)
}

fn rate(bytes: u64, elapsed: Duration) -> String {
    format!(
        "{:.1} s, {:.0} MiB/s",
        elapsed.as_secs_f64(),
        bytes as f64 / (1 << 20) as f64 / elapsed.as_secs_f64()
    )
}

async fn a_gibibyte_each_way(kind: Kind) {
    let s = stack(kind).await;
    let writes_before = s.proxy.disk_writes();

    let ((sent, up), up_peak) = spool_peak(&s, upload(&s, "big.bin", BIG, false)).await;
    assert_eq!(
        stored_digest(s.stored("big.bin")).await,
        (BIG, sent.clone())
    );

    let ((chunked_sent, _), chunked_peak) =
        spool_peak(&s, upload(&s, "chunked.bin", CHUNKED, true)).await;
    assert_eq!(
        stored_digest(s.stored("chunked.bin")).await,
        (CHUNKED, chunked_sent)
    );

    let ((size, received, down), down_peak) = spool_peak(&s, download(&s, "big.bin")).await;
    assert_eq!((size, received), (BIG, sent));

    // A range from the middle, through the same compressing site.
    let from = 3 * CHUNK as u64 + 5;
    let range = s
        .client
        .get(s.files("/content"))
        .query(&[("path", "big.bin")])
        .bearer_auth("alice-pat")
        .header(RANGE, format!("bytes={from}-{}", from + 99))
        .header(ACCEPT_ENCODING, "gzip")
        .send()
        .await
        .expect("range through the proxy");
    assert_eq!(range.status(), 206);
    let part = range.bytes().await.expect("range body");
    assert_eq!(part, Pattern::new().slice(from, 100, BIG));

    let written = s.proxy.disk_writes().saturating_sub(writes_before);
    eprintln!(
        "{kind:?}: upload of {BIG} bytes {}; download {}; spool peak {up_peak}/{chunked_peak}/\
         {down_peak} bytes (upload/chunked upload/download); proxy wrote {written} bytes to disk",
        rate(BIG, up),
        rate(BIG, down)
    );
    assert_eq!(
        (up_peak, chunked_peak, down_peak),
        (0, 0, 0),
        "{kind:?} spooled to its temporary directory"
    );
    assert!(
        written < DISK_WRITE_BOUND,
        "{kind:?} wrote {written} bytes to disk during the transfers"
    );
}

#[tokio::test]
async fn nginx_streams_a_gibibyte_each_way() {
    a_gibibyte_each_way(Kind::Nginx).await;
}

#[tokio::test]
async fn apache_streams_a_gibibyte_each_way() {
    a_gibibyte_each_way(Kind::Apache).await;
}
