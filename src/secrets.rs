//! Secrets at rest: connection credentials are stored encrypted with XChaCha20-Poly1305 under
//! a key derived from the customer's master key (`security.master_key_file`).
//!
//! Each ciphertext carries the id of the key that made it (a fingerprint of the derived key,
//! which reveals nothing about it), so "encrypted under another master key" is told apart
//! from "altered in the database". The associated data binds a ciphertext to its place
//! (`connection:<id>:<secret name>`): copied to another row or name, it no longer opens.
//!
//! Plaintexts only ever live in [`SecretString`]s, whose `Debug` prints nothing.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

use crate::audit::{self, Actor, AuditError, AuditEvent, Outcome};
use crate::auth::derive_key;
use crate::config::MasterKey;

/// HKDF purpose for the secrets key; `v1` leaves room for a different scheme later.
const PURPOSE: &[u8] = b"filebridge/secrets/v1";
const NONCE_LEN: usize = 24;

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error(
        "a secret is encrypted under key {key_id}; this filebridge runs with key {current}: \
         configure the master key it was encrypted with (or the one `keys rotate` moved it to)"
    )]
    WrongKey { key_id: String, current: String },
    #[error(
        "a stored secret failed its integrity check: it was altered or moved to another row \
         in the database; set it again"
    )]
    Tampered,
    #[error("the secret could not be encrypted")]
    Seal,
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Audit(#[from] AuditError),
}

/// A ciphertext as stored in `connection_secrets`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

/// Encrypts and decrypts secrets under one master key.
pub struct SecretCipher {
    aead: XChaCha20Poly1305,
    key_id: String,
}

impl std::fmt::Debug for SecretCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretCipher")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// Where a connection's secret lives; the associated data of its ciphertext.
pub fn aad(connection_id: Uuid, secret_name: &str) -> String {
    format!("connection:{connection_id}:{secret_name}")
}

impl SecretCipher {
    pub fn new(master: &MasterKey) -> Self {
        let key = derive_key(master, PURPOSE);
        let digest = Sha256::digest(key);
        Self {
            aead: XChaCha20Poly1305::new(&key.into()),
            key_id: hex::encode(&digest[..8]),
        }
    }

    /// The fingerprint stored beside every ciphertext this cipher makes.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn seal(&self, plaintext: &SecretString, aad: &str) -> Result<Sealed, SecretsError> {
        // 24-byte random nonces: collisions are negligible, so no counter has to be kept.
        let nonce: [u8; NONCE_LEN] = rand::random();
        let payload = Payload {
            msg: plaintext.expose_secret().as_bytes(),
            aad: aad.as_bytes(),
        };
        let ciphertext = self
            .aead
            .encrypt(&XNonce::from(nonce), payload)
            .map_err(|_| SecretsError::Seal)?;
        Ok(Sealed {
            key_id: self.key_id.clone(),
            nonce: nonce.to_vec(),
            ciphertext,
        })
    }

    pub fn open(&self, sealed: &Sealed, aad: &str) -> Result<SecretString, SecretsError> {
        if sealed.key_id != self.key_id {
            return Err(SecretsError::WrongKey {
                key_id: sealed.key_id.clone(),
                current: self.key_id.clone(),
            });
        }
        let nonce: [u8; NONCE_LEN] = sealed
            .nonce
            .as_slice()
            .try_into()
            .map_err(|_| SecretsError::Tampered)?;
        let payload = Payload {
            msg: &sealed.ciphertext,
            aad: aad.as_bytes(),
        };
        let plaintext = self
            .aead
            .decrypt(&XNonce::from(nonce), payload)
            .map_err(|_| SecretsError::Tampered)?;
        // Stored plaintexts were UTF-8 strings; anything else means the row was altered.
        let text = String::from_utf8(plaintext).map_err(|_| SecretsError::Tampered)?;
        Ok(SecretString::from(text))
    }
}

#[derive(sqlx::FromRow)]
struct Row {
    connection_id: Uuid,
    name: String,
    key_id: String,
    nonce: Vec<u8>,
    ciphertext: Vec<u8>,
}

/// `filebridge keys rotate`: re-encrypts every secret from `current` to `new` in one
/// transaction, audited as `keys.rotate`. Returns how many secrets were re-encrypted.
///
/// A secret already under `new` (a repeated rotation) is re-encrypted too; one under any
/// other key aborts the whole rotation with [`SecretsError::WrongKey`] and changes nothing.
pub async fn rotate(
    pool: &PgPool,
    current: &MasterKey,
    new: &MasterKey,
    actor: Actor,
) -> Result<usize, SecretsError> {
    let old_cipher = SecretCipher::new(current);
    let new_cipher = SecretCipher::new(new);
    let mut tx = pool.begin().await?;
    // Row locks alone would let a concurrent insert add a secret under the old key after
    // the rows were read; the table lock holds writers back until the rotation commits
    // (readers are not blocked).
    sqlx::query("LOCK TABLE connection_secrets IN EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await?;
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT connection_id, name, key_id, nonce, ciphertext FROM connection_secrets
         ORDER BY connection_id, name FOR UPDATE",
    )
    .fetch_all(&mut *tx)
    .await?;
    let mut already_new = 0usize;
    for row in &rows {
        let place = aad(row.connection_id, &row.name);
        let sealed = Sealed {
            key_id: row.key_id.clone(),
            nonce: row.nonce.clone(),
            ciphertext: row.ciphertext.clone(),
        };
        let plaintext = if row.key_id == new_cipher.key_id {
            already_new += 1;
            new_cipher.open(&sealed, &place)?
        } else {
            old_cipher.open(&sealed, &place)?
        };
        let resealed = new_cipher.seal(&plaintext, &place)?;
        sqlx::query(
            "UPDATE connection_secrets SET key_id = $3, nonce = $4, ciphertext = $5
             WHERE connection_id = $1 AND name = $2",
        )
        .bind(row.connection_id)
        .bind(&row.name)
        .bind(&resealed.key_id)
        .bind(&resealed.nonce)
        .bind(&resealed.ciphertext)
        .execute(&mut *tx)
        .await?;
    }
    let accounts = rotate_accounts(&mut tx, &old_cipher, &new_cipher).await?;
    let mut event = AuditEvent::new(actor, "keys.rotate", Outcome::Success);
    event.details = serde_json::json!({
        "count": rows.len(),
        "storage_accounts": accounts,
        "already_under_new_key": already_new,
        "old_key_id": old_cipher.key_id,
        "new_key_id": new_cipher.key_id,
    });
    audit::record(&mut tx, &event).await?;
    tx.commit().await?;
    Ok(rows.len())
}

/// Users' refresh tokens (delegated connections) go to the new key with the connection
/// secrets. Sign-ins in progress are dropped instead: they last minutes, and a user whose
/// sign-in straddles a rotation simply connects again.
async fn rotate_accounts(
    tx: &mut sqlx::PgConnection,
    old: &SecretCipher,
    new: &SecretCipher,
) -> Result<usize, SecretsError> {
    sqlx::query("LOCK TABLE storage_accounts IN EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM storage_account_states")
        .execute(&mut *tx)
        .await?;
    /// (connection, user key, key id, nonce, ciphertext)
    type AccountRow = (Uuid, String, String, Vec<u8>, Vec<u8>);
    let rows: Vec<AccountRow> = sqlx::query_as(
        "SELECT connection_id, user_key, key_id, nonce, ciphertext FROM storage_accounts
         ORDER BY connection_id, user_key FOR UPDATE",
    )
    .fetch_all(&mut *tx)
    .await?;
    for (connection_id, user_key, key_id, nonce, ciphertext) in &rows {
        let place = crate::accounts::store::token_aad(*connection_id, user_key);
        let sealed = Sealed {
            key_id: key_id.clone(),
            nonce: nonce.clone(),
            ciphertext: ciphertext.clone(),
        };
        let cipher = if *key_id == new.key_id { new } else { old };
        let resealed = new.seal(&cipher.open(&sealed, &place)?, &place)?;
        sqlx::query(
            "UPDATE storage_accounts SET key_id = $3, nonce = $4, ciphertext = $5
             WHERE connection_id = $1 AND user_key = $2",
        )
        .bind(connection_id)
        .bind(user_key)
        .bind(&resealed.key_id)
        .bind(&resealed.nonce)
        .bind(&resealed.ciphertext)
        .execute(&mut *tx)
        .await?;
    }
    Ok(rows.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cipher(byte: u8) -> SecretCipher {
        SecretCipher::new(&MasterKey::from_bytes([byte; 32]))
    }

    #[test]
    fn a_sealed_secret_opens_only_in_its_place_and_under_its_key() {
        let id = Uuid::new_v4();
        let place = aad(id, "password");
        let secret = SecretString::from("hunter2-correct-horse");
        let sealed = cipher(1).seal(&secret, &place).unwrap();

        assert_eq!(sealed.nonce.len(), 24);
        assert_ne!(sealed.ciphertext, b"hunter2-correct-horse".to_vec());
        let opened = cipher(1).open(&sealed, &place).unwrap();
        assert_eq!(opened.expose_secret(), "hunter2-correct-horse");

        // Another name or another connection: the associated data no longer matches.
        assert!(matches!(
            cipher(1).open(&sealed, &aad(id, "token")),
            Err(SecretsError::Tampered)
        ));
        assert!(matches!(
            cipher(1).open(&sealed, &aad(Uuid::new_v4(), "password")),
            Err(SecretsError::Tampered)
        ));
        let mut flipped = sealed.clone();
        flipped.ciphertext[0] ^= 1;
        assert!(matches!(
            cipher(1).open(&flipped, &place),
            Err(SecretsError::Tampered)
        ));

        let err = cipher(2).open(&sealed, &place).unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, SecretsError::WrongKey { .. }));
        assert!(message.contains(cipher(1).key_id()), "{message}");
        assert!(message.contains(cipher(2).key_id()), "{message}");
    }

    #[test]
    fn key_ids_fingerprint_the_derived_key_and_nonces_are_fresh() {
        let a = cipher(1);
        assert_eq!(a.key_id().len(), 16);
        assert!(a.key_id().bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(a.key_id(), cipher(1).key_id());
        assert_ne!(a.key_id(), cipher(2).key_id());
        // The id is not a prefix of the key material or of the master key.
        assert!(!hex::encode([1u8; 32]).contains(a.key_id()));

        let secret = SecretString::from("same");
        let first = a.seal(&secret, "x").unwrap();
        let second = a.seal(&secret, "x").unwrap();
        assert_ne!(first.nonce, second.nonce);
        assert_ne!(first.ciphertext, second.ciphertext);
    }

    #[test]
    fn debug_shows_no_key_material() {
        let shown = format!("{:?}", cipher(7));
        assert!(shown.contains(cipher(7).key_id()));
        assert!(!shown.contains("aead"), "{shown}");
    }
}
