//! The audit trail: who (the real Jira user, even when storage is reached through a service
//! account), what, when, from where, and the outcome, for every file access and admin change.
//!
//! Rows form a hash chain: each stores the SHA-256 of the previous row's hash and its own
//! fields, so editing or deleting a row breaks verification from that row on. Appends take a
//! transaction-scoped advisory lock, so concurrent writers (several instances too) extend one
//! chain.

mod export;
mod verify;

use std::net::IpAddr;

use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;

pub use export::{ExportFormat, Filter, export};
pub use verify::{Verification, verify};

/// Serialises appends to the chain (any constant unique to filebridge's audit).
const CHAIN_LOCK: i64 = 0x6669_6c65_6175_6474; // "fileaudt"

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("writing the export failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Who acted: the Jira user, or the operator running a CLI command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub key: String,
    pub name: String,
}

impl From<&crate::auth::User> for Actor {
    fn from(user: &crate::auth::User) -> Self {
        Self {
            key: user.key.clone(),
            name: user.name.clone(),
        }
    }
}

impl Actor {
    /// An operator at the command line (`filebridge purge`, `keys rotate`).
    pub fn operator() -> Self {
        let who = std::env::var("SUDO_USER")
            .or_else(|_| std::env::var("USER"))
            .unwrap_or_else(|_| "unknown".into());
        Self {
            key: format!("cli:{who}"),
            name: who,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// Refused by a permission check.
    Denied,
    /// Failed, with the stable error code.
    Failed(&'static str),
}

impl Outcome {
    pub fn as_text(&self) -> String {
        match self {
            Outcome::Success => "success".into(),
            Outcome::Denied => "denied".into(),
            Outcome::Failed(code) => format!("failed:{code}"),
        }
    }
}

/// One thing that happened.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub actor: Actor,
    /// Dotted verb, e.g. `file.download`, `connection.create`.
    pub action: &'static str,
    /// What it concerned: `issue:PROJ-1`, `project:PROJ`, `connection:<id>`.
    pub target: Option<String>,
    pub path: Option<String>,
    pub size: Option<i64>,
    pub outcome: Outcome,
    pub client_ip: Option<IpAddr>,
    pub request_id: Option<String>,
    /// Extra non-secret facts (never file contents, never secrets).
    pub details: serde_json::Value,
}

impl AuditEvent {
    pub fn new(actor: Actor, action: &'static str, outcome: Outcome) -> Self {
        Self {
            actor,
            action,
            target: None,
            path: None,
            size: None,
            outcome,
            client_ip: None,
            request_id: None,
            details: serde_json::Value::Object(Default::default()),
        }
    }
}

/// A stored row, as exported and as hashed.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct AuditRecord {
    pub seq: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub actor_key: String,
    pub actor_name: String,
    pub action: String,
    pub target: Option<String>,
    pub path: Option<String>,
    pub size: Option<i64>,
    pub outcome: String,
    pub client_ip: Option<String>,
    pub request_id: Option<String>,
    pub details: serde_json::Value,
    #[serde(with = "hex_bytes")]
    pub prev_hash: Vec<u8>,
    #[serde(with = "hex_bytes")]
    pub hash: Vec<u8>,
}

impl AuditRecord {
    /// SHA-256 over the previous hash and every field, in a fixed, unambiguous encoding
    /// (length-prefixed, so no two different rows encode alike).
    fn compute_hash(&self) -> Vec<u8> {
        let mut hasher = Sha256::new();
        hasher.update(&self.prev_hash);
        let at = self.at.unix_timestamp_nanos().to_string();
        let size = self.size.map(|s| s.to_string());
        let details = self.details.to_string();
        let seq = self.seq.to_string();
        let fields: [Option<&str>; 11] = [
            Some(&seq),
            Some(&at),
            Some(&self.actor_key),
            Some(&self.actor_name),
            Some(&self.action),
            self.target.as_deref(),
            self.path.as_deref(),
            size.as_deref(),
            Some(&self.outcome),
            self.client_ip.as_deref(),
            self.request_id.as_deref(),
        ];
        for field in fields
            .iter()
            .chain(std::iter::once(&Some(details.as_str())))
        {
            match field {
                Some(text) => {
                    hasher.update([1u8]);
                    hasher.update((text.len() as u64).to_be_bytes());
                    hasher.update(text.as_bytes());
                }
                None => hasher.update([0u8]),
            }
        }
        hasher.finalize().to_vec()
    }
}

/// Appends an event on `conn`, which should be the transaction making the change, so the
/// change and its record commit (or roll back) together.
pub async fn record(conn: &mut PgConnection, event: &AuditEvent) -> Result<(), AuditError> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(CHAIN_LOCK)
        .execute(&mut *conn)
        .await?;
    let last: Option<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *conn)
            .await?;
    let (prev_seq, prev_hash) = match last {
        Some(last) => last,
        None => sqlx::query_as("SELECT seq, hash FROM audit_anchor")
            .fetch_optional(&mut *conn)
            .await?
            .unwrap_or((0, vec![0u8; 32])),
    };
    // Postgres keeps microseconds; hash what will be read back.
    let now = OffsetDateTime::now_utc();
    let at = now
        .replace_nanosecond(now.nanosecond() / 1000 * 1000)
        .unwrap_or(now);
    let mut row = AuditRecord {
        seq: prev_seq + 1,
        at,
        actor_key: storable(&event.actor.key),
        actor_name: storable(&event.actor.name),
        action: event.action.to_string(),
        target: event.target.as_deref().map(storable),
        path: event.path.as_deref().map(storable),
        size: event.size,
        outcome: event.outcome.as_text(),
        client_ip: event.client_ip.map(|ip| ip.to_string()),
        request_id: event.request_id.clone(),
        details: event.details.clone(),
        prev_hash,
        hash: Vec::new(),
    };
    row.hash = row.compute_hash();
    sqlx::query(
        "INSERT INTO audit_events (seq, at, actor_key, actor_name, action, target, path, size,
             outcome, client_ip, request_id, details, prev_hash, hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(row.seq)
    .bind(row.at)
    .bind(&row.actor_key)
    .bind(&row.actor_name)
    .bind(&row.action)
    .bind(&row.target)
    .bind(&row.path)
    .bind(row.size)
    .bind(&row.outcome)
    .bind(&row.client_ip)
    .bind(&row.request_id)
    .bind(&row.details)
    .bind(&row.prev_hash)
    .bind(&row.hash)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Postgres text cannot hold NUL, and hostile input (a path with a NUL byte) must still be
/// recorded: NUL is written as the escape `\u{0}`.
fn storable(text: &str) -> String {
    text.replace('\0', "\\u{0}")
}

/// Records an event in a transaction of its own, for actions with no database change of their
/// own (a download, a refused request).
pub async fn record_alone(pool: &PgPool, event: &AuditEvent) -> Result<(), AuditError> {
    let mut tx = pool.begin().await?;
    record(&mut tx, event).await?;
    tx.commit().await?;
    Ok(())
}

/// Retention: removes rows older than `days`, remembering the last removed row as the
/// chain's new anchor, and records that it did so. Returns how many rows went.
pub async fn purge_older_than(pool: &PgPool, days: u32, actor: Actor) -> Result<u64, AuditError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(CHAIN_LOCK)
        .execute(&mut *tx)
        .await?;
    let cutoff = OffsetDateTime::now_utc() - time::Duration::days(i64::from(days));
    let last_removed: Option<(i64, Vec<u8>)> = sqlx::query_as(
        "SELECT seq, hash FROM audit_events WHERE at < $1 ORDER BY seq DESC LIMIT 1",
    )
    .bind(cutoff)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((seq, hash)) = last_removed else {
        return Ok(0);
    };
    let removed = sqlx::query("DELETE FROM audit_events WHERE seq <= $1")
        .bind(seq)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    sqlx::query(
        "INSERT INTO audit_anchor (id, seq, hash) VALUES (true, $1, $2)
         ON CONFLICT (id) DO UPDATE SET seq = $1, hash = $2, purged_at = now()",
    )
    .bind(seq)
    .bind(&hash)
    .execute(&mut *tx)
    .await?;
    let mut event = AuditEvent::new(actor, "audit.retention", Outcome::Success);
    event.details =
        serde_json::json!({ "older_than_days": days, "removed": removed, "through_seq": seq });
    record(&mut tx, &event).await?;
    tx.commit().await?;
    Ok(removed)
}

mod hex_bytes {
    pub fn serialize<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }
}
