//! Storage connections in Postgres: their non-secret settings in `connections`, their
//! secrets encrypted in `connection_secrets` (see [`crate::secrets`]).
//!
//! Writes take the caller's transaction, so the caller records the audit event in it and
//! the change and its record commit or roll back together.

use std::collections::{BTreeMap, HashMap};

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::audit::AuditError;
use crate::secrets::{self, Sealed, SecretCipher, SecretsError};
use crate::storage::registry::KINDS;

const MAX_NAME_CHARS: usize = 100;
const MAX_SECRET_NAME: usize = 64;
/// Generous for tokens and PEM keys; anything larger is a mistake, not a credential.
const MAX_SECRET_BYTES: usize = 64 * 1024;
/// A settings key containing one of these holds a credential, which belongs in `secrets`.
#[rustfmt::skip]
const CREDENTIAL_WORDS: &[&str] = &[
    "password", "passwd", "passphrase", "secret", "credential", "private_key", "privatekey",
    "api_key", "apikey",
];

#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("no such connection")]
    NotFound,
    #[error("a connection named `{0}` already exists")]
    NameTaken(String),
    #[error(
        "the connection is used by {0} project mapping(s); remove them first, or repeat with \
         ?force=true to delete them with it"
    )]
    InUse(i64),
    /// Never carries a secret value, only names.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Audit(#[from] AuditError),
}

/// A connection as the API shows it: secret names, never values or ciphertexts.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Connection {
    pub id: Uuid,
    pub name: String,
    pub kind: String,
    pub settings: serde_json::Value,
    pub secret_names: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    pub created_by: String,
    pub updated_by: String,
}

/// A connection's name, kind and settings, checked by [`ConnectionSpec::new`].
#[derive(Debug, Clone)]
pub struct ConnectionSpec {
    name: String,
    kind: String,
    settings: serde_json::Value,
}

impl ConnectionSpec {
    pub fn new(
        name: &str,
        kind: &str,
        settings: serde_json::Value,
    ) -> Result<Self, ConnectionError> {
        let invalid = |m: String| Err(ConnectionError::Invalid(m));
        let chars = name.chars().count();
        if chars == 0 || chars > MAX_NAME_CHARS {
            return invalid(format!("`name` must be 1 to {MAX_NAME_CHARS} characters"));
        }
        if name.trim() != name || name.chars().any(char::is_control) {
            return invalid(
                "`name` must not start or end with spaces or contain control characters".into(),
            );
        }
        if !KINDS.contains(&kind) {
            return invalid(format!("`kind` must be one of: {}", KINDS.join(", ")));
        }
        if !settings.is_object() {
            return invalid("`settings` must be a JSON object".into());
        }
        if let Some(key) = secret_looking_key(&settings) {
            return invalid(format!(
                "`settings` must not hold credentials, but has `{key}`: put it in `secrets`, \
                 which are stored encrypted and never shown again"
            ));
        }
        Ok(Self {
            name: name.to_string(),
            kind: kind.to_string(),
            settings,
        })
    }
}

/// Checks a secret's name and value; the error names the secret, never its value.
pub fn check_secret(name: &str, value: Option<&SecretString>) -> Result<(), ConnectionError> {
    let name_ok = !name.is_empty()
        && name.len() <= MAX_SECRET_NAME
        && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    if !name_ok {
        return Err(ConnectionError::Invalid(format!(
            "secret names are 1 to {MAX_SECRET_NAME} of a-z and _, not `{name}`"
        )));
    }
    match value.map(|v| v.expose_secret().len()) {
        Some(0) => Err(ConnectionError::Invalid(format!(
            "secret `{name}` is empty; to remove a secret, send null"
        ))),
        Some(len) if len > MAX_SECRET_BYTES => Err(ConnectionError::Invalid(format!(
            "secret `{name}` is longer than {MAX_SECRET_BYTES} bytes"
        ))),
        _ => Ok(()),
    }
}

/// The first settings key (at any depth) that looks like it holds a credential.
fn secret_looking_key(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::Object(map) => map.iter().find_map(|(key, inner)| {
            let k = key.to_ascii_lowercase().replace('-', "_");
            // `token` and `key` alone are too common as parts of harmless names
            // (`token_url`, `access_key_id`), so only as the whole key or its end.
            let looks = CREDENTIAL_WORDS.iter().any(|w| k.contains(w))
                || k.ends_with("token")
                || k == "key"
                || k == "authorization";
            if looks {
                Some(key.clone())
            } else {
                secret_looking_key(inner)
            }
        }),
        serde_json::Value::Array(items) => items.iter().find_map(secret_looking_key),
        _ => None,
    }
}

/// The columns of [`Connection`]; a macro so queries can extend it with `concat!`.
macro_rules! select_connection {
    () => {
        "SELECT c.id, c.name, c.kind, c.settings, c.created_at, c.updated_at,
        c.created_by, c.updated_by,
        ARRAY(SELECT s.name FROM connection_secrets s WHERE s.connection_id = c.id
              ORDER BY s.name) AS secret_names
    FROM connections c"
    };
}

pub async fn list(pool: &PgPool) -> Result<Vec<Connection>, ConnectionError> {
    let sql = concat!(select_connection!(), " ORDER BY c.name");
    Ok(sqlx::query_as(sql).fetch_all(pool).await?)
}

pub async fn get(conn: &mut PgConnection, id: Uuid) -> Result<Connection, ConnectionError> {
    sqlx::query_as(concat!(select_connection!(), " WHERE c.id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await?
        .ok_or(ConnectionError::NotFound)
}

/// Reads and locks a connection's row: a concurrent update or delete waits for this
/// transaction, and so does a new mapping of it (its foreign key check needs a share lock).
async fn lock(tx: &mut PgConnection, id: Uuid) -> Result<Connection, ConnectionError> {
    sqlx::query_as(concat!(
        select_connection!(),
        " WHERE c.id = $1 FOR UPDATE OF c"
    ))
    .bind(id)
    .fetch_optional(tx)
    .await?
    .ok_or(ConnectionError::NotFound)
}

/// Inserts a connection with its secrets; `by` is the acting Jira user's key.
pub async fn create(
    tx: &mut PgConnection,
    cipher: &SecretCipher,
    spec: &ConnectionSpec,
    secrets: &BTreeMap<String, SecretString>,
    by: &str,
) -> Result<Connection, ConnectionError> {
    for (name, value) in secrets {
        check_secret(name, Some(value))?;
    }
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO connections (id, name, kind, settings, created_by, updated_by)
         VALUES ($1, $2, $3, $4, $5, $5)",
    )
    .bind(id)
    .bind(&spec.name)
    .bind(&spec.kind)
    .bind(&spec.settings)
    .bind(by)
    .execute(&mut *tx)
    .await
    .map_err(|e| name_taken(e, &spec.name))?;
    for (name, value) in secrets {
        put_secret(tx, cipher, id, name, value).await?;
    }
    get(tx, id).await
}

/// Which secret names an update set and removed (never values).
#[derive(Debug, Default, Clone, Serialize)]
pub struct SecretChanges {
    pub set: Vec<String>,
    pub removed: Vec<String>,
}

/// Replaces name, kind and settings; for secrets, `Some` sets, `None` removes, and names
/// not in `secrets` stay. Returns the connection before and after, and what changed.
pub async fn update(
    tx: &mut PgConnection,
    cipher: &SecretCipher,
    id: Uuid,
    spec: &ConnectionSpec,
    secrets: &BTreeMap<String, Option<SecretString>>,
    by: &str,
) -> Result<(Connection, Connection, SecretChanges), ConnectionError> {
    for (name, value) in secrets {
        check_secret(name, value.as_ref())?;
    }
    let before = lock(tx, id).await?;
    sqlx::query(
        "UPDATE connections SET name = $2, kind = $3, settings = $4, updated_by = $5,
             updated_at = now()
         WHERE id = $1",
    )
    .bind(id)
    .bind(&spec.name)
    .bind(&spec.kind)
    .bind(&spec.settings)
    .bind(by)
    .execute(&mut *tx)
    .await
    .map_err(|e| name_taken(e, &spec.name))?;
    let mut changes = SecretChanges::default();
    for (name, value) in secrets {
        match value {
            Some(value) => {
                put_secret(tx, cipher, id, name, value).await?;
                changes.set.push(name.clone());
            }
            None => {
                let gone = sqlx::query(
                    "DELETE FROM connection_secrets WHERE connection_id = $1 AND name = $2",
                )
                .bind(id)
                .bind(name)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if gone > 0 {
                    changes.removed.push(name.clone());
                }
            }
        }
    }
    let after = get(tx, id).await?;
    Ok((before, after, changes))
}

/// Deletes a connection and returns it with the number of project mappings that went with
/// it. Refused with [`ConnectionError::InUse`] while mappings use it, unless `force`, when
/// they go too (the foreign key cascades); the row lock keeps the count true.
pub async fn delete(
    tx: &mut PgConnection,
    id: Uuid,
    force: bool,
) -> Result<(Connection, i64), ConnectionError> {
    let connection = lock(tx, id).await?;
    let mappings: i64 =
        sqlx::query_scalar("SELECT count(*) FROM project_mappings WHERE connection_id = $1")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
    if mappings > 0 && !force {
        return Err(ConnectionError::InUse(mappings));
    }
    sqlx::query("DELETE FROM connections WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    Ok((connection, mappings))
}

/// What the broker needs to open a connection's storage: kind, settings and the decrypted
/// secrets.
pub async fn load_for_use(
    pool: &PgPool,
    cipher: &SecretCipher,
    id: Uuid,
) -> Result<(String, serde_json::Value, HashMap<String, SecretString>), ConnectionError> {
    // One statement, so settings and secrets come from the same snapshot even while an
    // admin updates the connection.
    type Row = (
        String,
        serde_json::Value,
        Option<String>,
        Option<String>,
        Option<Vec<u8>>,
        Option<Vec<u8>>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT c.kind, c.settings, s.name, s.key_id, s.nonce, s.ciphertext
         FROM connections c LEFT JOIN connection_secrets s ON s.connection_id = c.id
         WHERE c.id = $1",
    )
    .bind(id)
    .fetch_all(pool)
    .await?;
    let (kind, settings) = match rows.first() {
        Some((kind, settings, ..)) => (kind.clone(), settings.clone()),
        None => return Err(ConnectionError::NotFound),
    };
    let mut secrets = HashMap::with_capacity(rows.len());
    for (_, _, name, key_id, nonce, ciphertext) in rows {
        // A connection without secrets joins to one row of NULLs.
        if let (Some(name), Some(key_id), Some(nonce), Some(ciphertext)) =
            (name, key_id, nonce, ciphertext)
        {
            let sealed = Sealed {
                key_id,
                nonce,
                ciphertext,
            };
            let value = cipher.open(&sealed, &secrets::aad(id, &name))?;
            secrets.insert(name, value);
        }
    }
    Ok((kind, settings, secrets))
}

async fn put_secret(
    tx: &mut PgConnection,
    cipher: &SecretCipher,
    id: Uuid,
    name: &str,
    value: &SecretString,
) -> Result<(), ConnectionError> {
    let sealed = cipher.seal(value, &secrets::aad(id, name))?;
    sqlx::query(
        "INSERT INTO connection_secrets (connection_id, name, key_id, nonce, ciphertext)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (connection_id, name)
         DO UPDATE SET key_id = $3, nonce = $4, ciphertext = $5",
    )
    .bind(id)
    .bind(name)
    .bind(&sealed.key_id)
    .bind(&sealed.nonce)
    .bind(&sealed.ciphertext)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// The unique name constraint, told apart from other database errors.
fn name_taken(error: sqlx::Error, name: &str) -> ConnectionError {
    match error.as_database_error() {
        Some(db) if db.is_unique_violation() => ConnectionError::NameTaken(name.to_string()),
        _ => ConnectionError::Database(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(settings: serde_json::Value) -> Result<ConnectionSpec, ConnectionError> {
        ConnectionSpec::new("nas", "webdav", settings)
    }

    #[test]
    fn credentials_in_settings_are_refused_with_a_pointer_to_secrets() {
        for key in "password Secret client_secret api-key access_token token".split(' ') {
            let err = spec(json!({ key: "x" })).unwrap_err().to_string();
            assert!(err.contains(key) && err.contains("secrets"), "{key}: {err}");
        }
        let nested = spec(json!({"auth": {"bearerToken": "x"}})).unwrap_err();
        assert!(nested.to_string().contains("bearerToken"));
        for harmless in "url username access_key_id token_url region root".split(' ') {
            assert!(spec(json!({ harmless: "x" })).is_ok(), "{harmless}");
        }
    }

    #[test]
    fn names_kinds_and_settings_are_checked() {
        assert!(ConnectionSpec::new("", "webdav", json!({})).is_err());
        assert!(ConnectionSpec::new(&"é".repeat(100), "webdav", json!({})).is_ok());
        assert!(ConnectionSpec::new(&"é".repeat(101), "webdav", json!({})).is_err());
        assert!(ConnectionSpec::new(" nas", "webdav", json!({})).is_err());
        assert!(ConnectionSpec::new("nas", "ftp", json!({})).is_err());
        assert!(ConnectionSpec::new("nas", "s3", json!([1])).is_err());
        assert!(ConnectionSpec::new("nas", "s3", serde_json::Value::Null).is_err());
    }

    #[test]
    fn secret_names_and_values_are_checked_without_echoing_values() {
        let value = SecretString::from("p4ss-value");
        assert!(check_secret("password", Some(&value)).is_ok());
        assert!(check_secret("secret_access_key", None).is_ok());
        for bad in ["", "Password", "pass-word", "pass1", &"a".repeat(65)] {
            assert!(check_secret(bad, Some(&value)).is_err(), "{bad}");
        }
        let empty = check_secret("password", Some(&SecretString::from(""))).unwrap_err();
        assert!(empty.to_string().contains("null"));
        let big = SecretString::from("x".repeat(MAX_SECRET_BYTES + 1));
        let err = check_secret("password", Some(&big))
            .unwrap_err()
            .to_string();
        assert!(!err.contains("xxxx"), "{err}");
    }
}
