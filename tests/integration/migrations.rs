use filebridge::app::{Application, Migrations};
use filebridge::db::{self, DbError, MIGRATOR, SchemaStatus};
use sqlx::PgPool;

use crate::helpers::{TestConfig, cluster_url, create_database, pretend_newer_schema};

async fn fresh_pool() -> (String, PgPool) {
    let url = create_database(&cluster_url()).await;
    let pool = PgPool::connect(&url).await.unwrap();
    (url, pool)
}

#[tokio::test]
async fn migrate_applies_everything_once_even_when_two_instances_race() {
    let (url, pool) = fresh_pool().await;
    let other = PgPool::connect(&url).await.unwrap();
    let (a, b) = tokio::join!(db::migrate(&pool), db::migrate(&other));
    let latest = MIGRATOR.iter().map(|m| m.version).max().unwrap();
    assert_eq!(a.unwrap(), SchemaStatus::Current { version: latest });
    assert_eq!(b.unwrap(), SchemaStatus::Current { version: latest });
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows as usize, MIGRATOR.iter().count());
    // Running it again changes nothing.
    assert_eq!(
        db::migrate(&pool).await.unwrap(),
        SchemaStatus::Current { version: latest }
    );
}

#[tokio::test]
async fn two_applications_starting_at_once_on_a_fresh_database_both_serve() {
    let (url, _pool) = fresh_pool().await;
    let jira = fake_jira::FakeJira::start().await;
    let first = TestConfig::new(&url, &jira.base_url).settings();
    let second = TestConfig::new(&url, &jira.base_url).settings();
    let (a, b) = tokio::join!(
        Application::build(&first, Migrations::Apply),
        Application::build(&second, Migrations::Apply)
    );
    let (a, b) = (a.expect("first starts"), b.expect("second starts"));
    assert_ne!(a.port(), b.port());
}

#[tokio::test]
async fn a_schema_newer_than_the_binary_is_refused() {
    let (url, pool) = fresh_pool().await;
    db::migrate(&pool).await.unwrap();
    pretend_newer_schema(&pool).await;
    assert!(matches!(
        db::schema_status(&pool).await.unwrap(),
        SchemaStatus::Newer {
            database: 99991231000000,
            ..
        }
    ));
    let err = db::migrate(&pool).await.unwrap_err();
    assert!(matches!(err, DbError::SchemaNewer { .. }));
    assert!(
        err.to_string()
            .contains("newer than this filebridge binary"),
        "{err}"
    );

    let jira = fake_jira::FakeJira::start().await;
    let config = TestConfig::new(&url, &jira.base_url);
    for migrations in [Migrations::Apply, Migrations::Skip] {
        let result = Application::build(&config.settings(), migrations).await;
        assert!(result.is_err(), "{migrations:?} must refuse a newer schema");
    }
}
