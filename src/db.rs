//! The customer's PostgreSQL: the pool, the embedded migrations, and the schema check.
//!
//! TLS is configured in the URL, libpq style (`sslmode=verify-full&sslrootcert=/path/ca.pem`),
//! and done by rustls with the system roots plus `sslrootcert`.

use std::time::Duration;

use secrecy::ExposeSecret;
use sqlx::ConnectOptions;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgSslMode};

use crate::config::DatabaseSettings;

/// The migrations in `migrations/`, compiled into the binary.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database.url is not a valid PostgreSQL URL: {0}")]
    Url(String),
    #[error("the database is unreachable: {0}")]
    Unreachable(#[source] sqlx::Error),
    #[error("the database did not answer within {0:?}")]
    Timeout(Duration),
    #[error(
        "the database schema (version {database}) is newer than this filebridge binary knows \
         (up to {binary}); run the filebridge version that upgraded it, or restore a backup"
    )]
    SchemaNewer { database: i64, binary: i64 },
    #[error(
        "migration {0} failed earlier and left the schema dirty; restore the database from a backup taken before the upgrade"
    )]
    Dirty(i64),
    #[error("applying migrations failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Where the database's schema stands relative to this binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaStatus {
    Current {
        version: i64,
    },
    /// Migrations this binary carries are not applied yet.
    Pending {
        applied: Option<i64>,
        latest: i64,
    },
    /// The database has migrations this binary does not know (a newer filebridge ran).
    Newer {
        database: i64,
        binary: i64,
    },
}

/// Without an explicit `sslmode`, a database on another host is reached with
/// `verify-full` (libpq's default, `prefer`, would fall back to plaintext unverified); a
/// local socket or loopback address keeps the driver's default.
pub fn connect_options(settings: &DatabaseSettings) -> Result<PgConnectOptions, DbError> {
    let url = settings.url.expose_secret();
    let options: PgConnectOptions = url
        .parse()
        // sqlx's message can quote the URL, and so the password: say only what to check.
        .map_err(|_: sqlx::Error| {
            DbError::Url("check the scheme, host, port, database and sslmode".to_string())
        })?;
    let explicit_sslmode = url.to_ascii_lowercase().contains("sslmode=");
    let options = if explicit_sslmode || is_local(&options) {
        options
    } else {
        options.ssl_mode(PgSslMode::VerifyFull)
    };
    Ok(options
        .application_name("filebridge")
        // Statement logs would fill the journal; failures are logged where they are handled.
        .disable_statement_logging())
}

fn is_local(options: &PgConnectOptions) -> bool {
    let host = options.get_host();
    options.get_socket().is_some()
        || host.starts_with('/')
        || host == "localhost"
        || host
            .trim_matches(|c| c == '[' || c == ']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A pool that connects on first use, so the daemon starts (and answers `/readyz` with 503)
/// while the database is away, and reconnects by itself when it returns.
pub fn pool(settings: &DatabaseSettings) -> Result<PgPool, DbError> {
    Ok(PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.acquire_timeout)
        .idle_timeout(Duration::from_secs(300))
        .connect_lazy_with(connect_options(settings)?))
}

/// One connection of its own, with `pool`'s options, for a `LISTEN` that holds it for good:
/// it must not take a slot of the pool that serves requests (each instance has two, for the
/// job queue and for configuration changes, on top of `database.max_connections`).
pub fn listener_pool(pool: &PgPool) -> PgPool {
    PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(10))
        .connect_lazy_with((*pool.connect_options()).clone())
}

/// The newest schema version this binary carries.
pub fn latest_known() -> i64 {
    MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
}

pub async fn schema_status(pool: &PgPool) -> Result<SchemaStatus, DbError> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(pool)
        .await
        .map_err(DbError::Unreachable)?;
    let applied: Vec<(i64, bool)> = if exists {
        sqlx::query_as("SELECT version, success FROM _sqlx_migrations ORDER BY version")
            .fetch_all(pool)
            .await
            .map_err(DbError::Unreachable)?
    } else {
        Vec::new()
    };
    if let Some((version, _)) = applied.iter().find(|(_, success)| !success) {
        return Err(DbError::Dirty(*version));
    }
    let binary = latest_known();
    if let Some(&(database, _)) = applied
        .iter()
        .rev()
        .find(|(v, _)| !MIGRATOR.version_exists(*v))
    {
        return Ok(SchemaStatus::Newer { database, binary });
    }
    let applied_max = applied.last().map(|(v, _)| *v);
    if MIGRATOR
        .iter()
        .all(|m| applied.iter().any(|(v, _)| *v == m.version))
    {
        Ok(SchemaStatus::Current {
            version: applied_max.unwrap_or(0),
        })
    } else {
        Ok(SchemaStatus::Pending {
            applied: applied_max,
            latest: binary,
        })
    }
}

/// Applies pending migrations. sqlx holds a Postgres advisory lock while it migrates, so two
/// instances starting at once apply each migration exactly once. A schema newer than this
/// binary is refused before anything is touched.
pub async fn migrate(pool: &PgPool) -> Result<SchemaStatus, DbError> {
    if let SchemaStatus::Newer { database, binary } = schema_status(pool).await? {
        return Err(DbError::SchemaNewer { database, binary });
    }
    MIGRATOR.run(pool).await?;
    schema_status(pool).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(url: &str) -> PgSslMode {
        let settings = DatabaseSettings {
            url: url.to_string().into(),
            max_connections: 1,
            acquire_timeout: Duration::from_secs(1),
        };
        connect_options(&settings).unwrap().get_ssl_mode()
    }

    #[test]
    fn remote_databases_are_verified_unless_the_url_says_otherwise() {
        assert!(matches!(
            mode("postgres://fb@db.example.com/fb"),
            PgSslMode::VerifyFull
        ));
        assert!(matches!(
            mode("postgres://fb@10.1.2.3/fb"),
            PgSslMode::VerifyFull
        ));
        assert!(matches!(
            mode("postgres://fb@db.example.com/fb?sslmode=require"),
            PgSslMode::Require
        ));
        assert!(matches!(
            mode("postgres://fb@localhost/fb"),
            PgSslMode::Prefer
        ));
        assert!(matches!(
            mode("postgres://fb@127.0.0.1:5432/fb"),
            PgSslMode::Prefer
        ));
        assert!(matches!(
            mode("postgres://fb@%2Fvar%2Frun%2Fpostgresql/fb"),
            PgSslMode::Prefer
        ));
    }

    #[test]
    fn a_bad_url_does_not_echo_the_password() {
        let settings = DatabaseSettings {
            url: "postgres://fb:s3cr3t-pw@db:notaport/fb".to_string().into(),
            max_connections: 1,
            acquire_timeout: Duration::from_secs(1),
        };
        let err = connect_options(&settings).unwrap_err().to_string();
        assert!(!err.contains("s3cr3t-pw"), "{err}");
    }
}
