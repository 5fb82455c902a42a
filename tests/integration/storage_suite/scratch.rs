//! What the checks share: a fresh folder per check with helpers that fail naming the check,
//! and deterministic pseudo-random bodies that are generated, sent and hashed as streams.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use filebridge::storage::{
    ByteStream, Item, NameRules, Storage, StorageError, StoragePath, Upload, WriteMode, Written,
};
use futures_util::{StreamExt, stream};
use sha2::{Digest, Sha256};

/// A check's own folder on the store under test.
pub struct Scratch {
    pub storage: Arc<dyn Storage>,
    pub check: &'static str,
    pub base: StoragePath,
    pub rules: NameRules,
}

impl Scratch {
    pub async fn new(storage: Arc<dyn Storage>, check: &'static str) -> Self {
        let rules = storage.name_rules();
        let name = format!(
            "suite-{check}-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let base = StoragePath::parse(&name, rules)
            .unwrap_or_else(|e| panic!("[{check}] the scratch folder name `{name}`: {e}"));
        let scratch = Self {
            storage,
            check,
            base,
            rules,
        };
        let created = scratch.storage.create_folder(&scratch.base).await;
        scratch.ok("create the scratch folder", created);
        scratch
    }

    /// Removes the folder once the check has passed (a failed check leaves it for a look).
    pub async fn finish(self) {
        let deleted = self.storage.delete(&self.base).await;
        self.ok("delete the scratch folder", deleted);
    }

    pub fn fail(&self, message: impl std::fmt::Display) -> ! {
        panic!("[{}] {message}", self.check)
    }

    /// `relative` below the scratch folder, parsed with the store's rules (so NFC).
    pub fn path(&self, relative: &str) -> StoragePath {
        let parsed = StoragePath::parse(relative, self.rules)
            .unwrap_or_else(|e| self.fail(format!("the test path `{relative}` is invalid: {e}")));
        self.base
            .join(&parsed, self.rules)
            .unwrap_or_else(|e| self.fail(format!("the test path `{relative}` is too long: {e}")))
    }

    pub fn ok<T>(&self, what: &str, result: Result<T, StorageError>) -> T {
        result.unwrap_or_else(|e| self.fail(format!("{what}: failed with {} ({e})", e.code())))
    }

    /// Expects the error whose stable code is one of `codes`.
    pub fn refused<T>(
        &self,
        what: &str,
        result: Result<T, StorageError>,
        codes: &[&str],
    ) -> StorageError {
        match result {
            Ok(_) => self.fail(format!(
                "{what}: succeeded, expected {}",
                codes.join(" or ")
            )),
            Err(e) if codes.contains(&e.code()) => e,
            Err(e) => self.fail(format!(
                "{what}: failed with {} ({e}), expected {}",
                e.code(),
                codes.join(" or ")
            )),
        }
    }

    pub async fn write(
        &self,
        relative: &str,
        upload: Upload,
        mode: WriteMode,
    ) -> Result<Written, StorageError> {
        self.storage.write(&self.path(relative), upload, mode).await
    }

    pub async fn rename(&self, from: &str, to: &str) -> Result<Item, StorageError> {
        self.storage.rename(&self.path(from), &self.path(to)).await
    }

    pub async fn put(&self, relative: &str, content: &[u8], mode: WriteMode) -> Written {
        let upload = bytes_upload(content.to_vec(), Some(content.len() as u64));
        let written = self.storage.write(&self.path(relative), upload, mode).await;
        self.ok(&format!("write `{relative}`"), written)
    }

    /// The whole content of a file, checked against the size the store reports.
    pub async fn get(&self, relative: &str) -> Vec<u8> {
        let what = format!("read `{relative}`");
        let download = self.ok(&what, self.storage.read(&self.path(relative), None).await);
        let mut body = download.body;
        let mut content = Vec::new();
        while let Some(chunk) = body.next().await {
            content.extend_from_slice(&self.ok(&what, chunk));
        }
        if download.item.size != Some(content.len() as u64) {
            self.fail(format!(
                "{what}: the item says {:?} bytes, the body had {}",
                download.item.size,
                content.len()
            ));
        }
        content
    }

    pub async fn list(&self, relative: &str) -> Vec<Item> {
        let listed = self.storage.list(&self.path(relative)).await;
        self.ok(&format!("list `{relative}`"), listed)
    }

    /// A folder's listing by name, failing on a name listed twice.
    pub async fn listing(&self, relative: &str) -> BTreeMap<String, Item> {
        let mut by_name = BTreeMap::new();
        for item in self.list(relative).await {
            if let Some(twice) = by_name.insert(item.name.clone(), item) {
                self.fail(format!(
                    "list `{relative}`: `{}` is listed twice",
                    twice.name
                ));
            }
        }
        by_name
    }

    pub async fn assert_absent(&self, relative: &str) {
        let found = self.storage.stat(&self.path(relative)).await;
        self.refused(&format!("stat `{relative}`"), found, &["not_found"]);
    }
}

pub fn bytes_upload(content: Vec<u8>, length: Option<u64>) -> Upload {
    let chunk: Result<Bytes, StorageError> = Ok(Bytes::from(content));
    Upload {
        body: Box::pin(stream::iter([chunk])),
        length,
    }
}

/// Deterministic pseudo-random bytes (SplitMix64): the same seed gives the same body, so a
/// large file is never held in memory, only generated as it is sent.
pub struct Pattern(u64);

impl Pattern {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len.next_multiple_of(8)];
        for word in out.chunks_exact_mut(8) {
            word.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        out.truncate(len);
        out
    }

    /// A chunk size between 1 byte and 256 KiB, so bodies arrive in odd pieces as they do
    /// from real clients.
    fn chunk_len(&mut self) -> usize {
        1 + (self.next_u64() % (256 * 1024)) as usize
    }
}

/// What a generated body turned out to be once it was sent: its SHA-256 and length.
#[derive(Clone, Default)]
pub struct Sent(Arc<Mutex<(Sha256, u64)>>);

impl Sent {
    pub fn result(&self) -> (String, u64) {
        let state = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        (hex::encode(state.0.clone().finalize()), state.1)
    }
}

/// A `len`-byte body generated from `seed`, hashed into `sent` as the store pulls it, and
/// then an error if `fail_at_end` (a client that goes away after sending that much).
pub fn generated_body(seed: u64, len: u64, sent: Sent, fail_at_end: bool) -> ByteStream {
    let state = (Pattern::new(seed), 0u64, false);
    Box::pin(stream::unfold(state, move |(mut pattern, done, over)| {
        let sent = sent.clone();
        async move {
            if over {
                return None;
            }
            if done == len {
                let cut: Result<Bytes, StorageError> = Err(StorageError::Interrupted(
                    "the test client went away mid-upload".into(),
                ));
                return fail_at_end.then_some((cut, (pattern, done, true)));
            }
            let take = (pattern.chunk_len() as u64).min(len - done) as usize;
            let chunk = pattern.bytes(take);
            {
                let mut state = sent.0.lock().unwrap_or_else(|p| p.into_inner());
                state.0.update(&chunk);
                state.1 += take as u64;
            }
            Some((Ok(Bytes::from(chunk)), (pattern, done + take as u64, false)))
        }
    }))
}

/// SHA-256 and length of a download, hashed as it streams.
pub async fn digest(scratch: &Scratch, what: &str, mut body: ByteStream) -> (String, u64) {
    let mut hasher = Sha256::new();
    let mut len = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = scratch.ok(what, chunk);
        len += chunk.len() as u64;
        hasher.update(&chunk);
    }
    (hex::encode(hasher.finalize()), len)
}
