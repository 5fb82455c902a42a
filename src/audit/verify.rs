//! Checks the hash chain from its anchor to the newest row.

use futures_util::TryStreamExt;
use sqlx::PgPool;

use super::{AuditError, AuditRecord};

/// The result of walking the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    pub checked: u64,
    /// The first inconsistency, in words an auditor can act on; `None` when intact.
    pub problem: Option<String>,
}

pub async fn verify(pool: &PgPool) -> Result<Verification, AuditError> {
    let anchor: Option<(i64, Vec<u8>)> = sqlx::query_as("SELECT seq, hash FROM audit_anchor")
        .fetch_optional(pool)
        .await?;
    let (mut expected_seq, mut expected_prev) = match anchor {
        Some((seq, hash)) => (seq + 1, hash),
        None => (1, vec![0u8; 32]),
    };
    let mut rows = sqlx::query_as::<_, AuditRecord>(
        "SELECT seq, at, actor_key, actor_name, action, target, path, size, outcome,
                client_ip, request_id, details, prev_hash, hash
         FROM audit_events ORDER BY seq",
    )
    .fetch(pool);
    let mut checked = 0;
    while let Some(row) = rows.try_next().await? {
        let problem = if row.seq != expected_seq {
            Some(format!(
                "row {expected_seq} is missing (the next row is {}): rows were deleted",
                row.seq
            ))
        } else if row.prev_hash != expected_prev {
            Some(format!(
                "row {} does not follow row {}: a row before it was deleted or altered",
                row.seq,
                row.seq - 1
            ))
        } else if row.compute_hash() != row.hash {
            Some(format!("row {} was altered after it was written", row.seq))
        } else {
            None
        };
        if problem.is_some() {
            return Ok(Verification { checked, problem });
        }
        checked += 1;
        expected_seq = row.seq + 1;
        expected_prev = row.hash;
    }
    Ok(Verification {
        checked,
        problem: None,
    })
}
