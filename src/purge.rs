//! `filebridge purge --yes`: removes everything filebridge stored in the customer's Postgres
//! (its tables, and the record of its migrations), for uninstalling. Storage contents are
//! the customer's files and are never touched.

use sqlx::PgPool;

/// Every table filebridge's migrations create, children before parents.
const TABLES: &[&str] = &[
    "jobs",
    "reconcile_cursors",
    "issue_folders",
    "project_mappings",
    "connection_secrets",
    "connections",
    "audit_anchor",
    "audit_events",
    "settings",
    "_sqlx_migrations",
];

/// Drops filebridge's tables in one transaction; returns the ones that existed.
pub async fn purge_everything(pool: &PgPool) -> Result<Vec<&'static str>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let mut dropped = Vec::new();
    for table in TABLES {
        let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(*table)
            .fetch_one(&mut *tx)
            .await?;
        if exists {
            // Table names come from the constant list above, never from input.
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE {table} CASCADE")))
                .execute(&mut *tx)
                .await?;
            dropped.push(*table);
        }
    }
    tx.commit().await?;
    Ok(dropped)
}
