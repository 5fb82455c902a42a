//! The `storage_accounts` and `storage_account_states` tables. Writes take the caller's
//! transaction, so the audit record commits (or not) with the change.

use secrecy::SecretString;
use sha2::{Digest, Sha256};
use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use super::AccountError;
use crate::secrets::{Sealed, SecretCipher};

/// Where a user's refresh token lives: the associated data of its ciphertext, so a
/// ciphertext copied to another user's or connection's row no longer opens.
pub fn token_aad(connection_id: Uuid, user_key: &str) -> String {
    format!("storage_account:{connection_id}:{user_key}")
}

/// The associated data of a sign-in's PKCE verifier.
fn state_aad(state_hash: &[u8]) -> String {
    format!("storage_account_state:{}", hex::encode(state_hash))
}

pub fn state_hash(state: &str) -> Vec<u8> {
    Sha256::digest(state.as_bytes()).to_vec()
}

/// A user's stored account, as listed (never the token).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AccountRow {
    pub connection_id: Uuid,
    pub account: Option<String>,
    pub connected_at: OffsetDateTime,
}

/// Inserts or replaces a user's account (a new sign-in replaces the old grant).
pub async fn save(
    tx: &mut PgConnection,
    cipher: &SecretCipher,
    connection_id: Uuid,
    user_key: &str,
    refresh_token: &SecretString,
    account: Option<&str>,
) -> Result<(), AccountError> {
    let sealed = cipher.seal(refresh_token, &token_aad(connection_id, user_key))?;
    sqlx::query(
        "INSERT INTO storage_accounts
             (connection_id, user_key, account, key_id, nonce, ciphertext)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (connection_id, user_key) DO UPDATE SET account = $3, key_id = $4,
             nonce = $5, ciphertext = $6, connected_at = now(), refreshed_at = now()",
    )
    .bind(connection_id)
    .bind(user_key)
    .bind(account)
    .bind(&sealed.key_id)
    .bind(&sealed.nonce)
    .bind(&sealed.ciphertext)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Reads and locks a user's refresh token: a refresh on any instance waits for the one in
/// progress, and then reads the token it saved. `None` when the user has no account.
pub async fn lock_token(
    tx: &mut PgConnection,
    cipher: &SecretCipher,
    connection_id: Uuid,
    user_key: &str,
) -> Result<Option<SecretString>, AccountError> {
    let row: Option<(String, Vec<u8>, Vec<u8>)> = sqlx::query_as(
        "SELECT key_id, nonce, ciphertext FROM storage_accounts
         WHERE connection_id = $1 AND user_key = $2 FOR UPDATE",
    )
    .bind(connection_id)
    .bind(user_key)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((key_id, nonce, ciphertext)) = row else {
        return Ok(None);
    };
    let sealed = Sealed {
        key_id,
        nonce,
        ciphertext,
    };
    Ok(Some(
        cipher.open(&sealed, &token_aad(connection_id, user_key))?,
    ))
}

/// Replaces a locked row's refresh token after a rotation.
pub async fn rotate(
    tx: &mut PgConnection,
    cipher: &SecretCipher,
    connection_id: Uuid,
    user_key: &str,
    refresh_token: &SecretString,
) -> Result<(), AccountError> {
    let sealed = cipher.seal(refresh_token, &token_aad(connection_id, user_key))?;
    sqlx::query(
        "UPDATE storage_accounts SET key_id = $3, nonce = $4, ciphertext = $5,
             refreshed_at = now()
         WHERE connection_id = $1 AND user_key = $2",
    )
    .bind(connection_id)
    .bind(user_key)
    .bind(&sealed.key_id)
    .bind(&sealed.nonce)
    .bind(&sealed.ciphertext)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Deletes a user's account; true if there was one.
pub async fn delete(
    tx: &mut PgConnection,
    connection_id: Uuid,
    user_key: &str,
) -> Result<bool, AccountError> {
    let gone =
        sqlx::query("DELETE FROM storage_accounts WHERE connection_id = $1 AND user_key = $2")
            .bind(connection_id)
            .bind(user_key)
            .execute(&mut *tx)
            .await?
            .rows_affected();
    Ok(gone > 0)
}

/// The user's accounts.
pub async fn for_user(
    conn: &mut PgConnection,
    user_key: &str,
) -> Result<Vec<AccountRow>, AccountError> {
    Ok(sqlx::query_as(
        "SELECT connection_id, account, connected_at FROM storage_accounts WHERE user_key = $1",
    )
    .bind(user_key)
    .fetch_all(conn)
    .await?)
}

/// A sign-in in progress, as the callback finds it.
pub struct PendingSignIn {
    pub connection_id: Uuid,
    pub user_key: String,
    pub return_to: Option<String>,
    pub verifier: SecretString,
}

/// Records a sign-in in progress (and clears expired ones, which nobody can finish).
pub async fn put_state(
    conn: &mut PgConnection,
    cipher: &SecretCipher,
    state: &str,
    pending: &PendingSignIn,
    lifetime: time::Duration,
) -> Result<(), AccountError> {
    sqlx::query("DELETE FROM storage_account_states WHERE expires_at < now()")
        .execute(&mut *conn)
        .await?;
    let hash = state_hash(state);
    let sealed = cipher.seal(&pending.verifier, &state_aad(&hash))?;
    sqlx::query(
        "INSERT INTO storage_account_states
             (state_hash, connection_id, user_key, return_to, key_id, nonce, ciphertext,
              expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&hash)
    .bind(pending.connection_id)
    .bind(&pending.user_key)
    .bind(&pending.return_to)
    .bind(&sealed.key_id)
    .bind(&sealed.nonce)
    .bind(&sealed.ciphertext)
    .bind(OffsetDateTime::now_utc() + lifetime)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Takes a sign-in by its `state`: deleted as it is read, so a state works once.
pub async fn take_state(
    conn: &mut PgConnection,
    cipher: &SecretCipher,
    state: &str,
) -> Result<Option<PendingSignIn>, AccountError> {
    type Row = (Uuid, String, Option<String>, String, Vec<u8>, Vec<u8>);
    let hash = state_hash(state);
    let row: Option<Row> = sqlx::query_as(
        "DELETE FROM storage_account_states WHERE state_hash = $1 AND expires_at > now()
         RETURNING connection_id, user_key, return_to, key_id, nonce, ciphertext",
    )
    .bind(&hash)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((connection_id, user_key, return_to, key_id, nonce, ciphertext)) = row else {
        return Ok(None);
    };
    let sealed = Sealed {
        key_id,
        nonce,
        ciphertext,
    };
    Ok(Some(PendingSignIn {
        connection_id,
        user_key,
        return_to,
        verifier: cipher.open(&sealed, &state_aad(&hash))?,
    }))
}
