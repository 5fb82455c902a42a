//! Step 2 of docs/install.md: the role and database of filebridge's own, created with the
//! guide's SQL by the test cluster's superuser, and dropped again afterwards.

use sqlx::{Connection, Executor, PgConnection};

use super::guide::Guide;
use crate::helpers::cluster_url;

/// Step 2's role and database. The names carry a suffix because roles are shared by the
/// whole cluster. The test cluster's pg_hba.conf is `trust` (scripts/pg-cluster), so the
/// password is sent but not checked; the point is the role's privileges.
pub(super) struct Database {
    name: String,
    /// The URL filebridge is given: the role, its password, its database.
    pub(super) url: String,
}

impl Database {
    pub(super) async fn create(guide: &Guide) -> Database {
        let name = format!(
            "filebridge_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let password = uuid::Uuid::new_v4().simple().to_string();
        let mut admin = PgConnection::connect(&cluster_url())
            .await
            .expect("connect to the test cluster as its superuser");
        for sql in guide.sql(&name, &password) {
            admin
                .execute(sqlx::AssertSqlSafe(sql.clone()))
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        let mut url = url::Url::parse(&cluster_url()).expect("cluster URL");
        url.set_username(&name).unwrap();
        url.set_password(Some(&password)).unwrap();
        url.set_path(&name);
        Database {
            name,
            url: url.to_string(),
        }
    }

    /// filebridge's tables exist and every one is the role's, which is no superuser and may
    /// create neither databases nor roles.
    pub(super) async fn assert_owns_the_schema(&self) {
        let mut conn = PgConnection::connect(&self.url)
            .await
            .expect("connect as the role");
        let (superuser, create_db, create_role): (bool, bool, bool) = sqlx::query_as(
            "SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = current_user",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert!(!superuser && !create_db && !create_role, "{}", self.name);
        let owners: Vec<(String, String)> = sqlx::query_as(
            "SELECT tablename::text, tableowner::text FROM pg_tables WHERE schemaname = 'public'",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        assert!(
            owners.iter().any(|(table, _)| table == "_sqlx_migrations"),
            "no migrations applied: {owners:?}"
        );
        assert!(
            owners.iter().all(|(_, owner)| *owner == self.name),
            "{owners:?}"
        );
        conn.close().await.ok();
    }

    /// What an administrator does after uninstalling: drop both.
    pub(super) async fn drop(self) {
        let mut admin = PgConnection::connect(&cluster_url()).await.unwrap();
        for sql in [
            format!("DROP DATABASE {} WITH (FORCE)", self.name),
            format!("DROP ROLE {}", self.name),
        ] {
            admin
                .execute(sqlx::AssertSqlSafe(sql.clone()))
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
    }
}
