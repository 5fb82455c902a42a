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
    "storage_account_states",
    "storage_accounts",
    "connection_secrets",
    "connections",
    "audit_anchor",
    "audit_events",
    "settings",
    "_sqlx_migrations",
];

/// Functions filebridge's migrations create (the configuration-change trigger).
const FUNCTIONS: &[&str] = &["filebridge_config_changed()"];

/// Drops filebridge's tables and functions in one transaction; returns the tables that
/// existed.
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
    for function in FUNCTIONS {
        // Names come from the constant list above, never from input.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP FUNCTION IF EXISTS {function} CASCADE"
        )))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(dropped)
}
