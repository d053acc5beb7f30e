//! `awx admin bootstrap` against a real database, as an operator runs it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

use std::process::Command;

use awx_test_support::TestDb;

#[tokio::test]
async fn bootstrap_prints_a_working_admin_key_once() {
    let db = TestDb::new().await;
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_awx"))
            .args(["admin", "--database-url", &db.url()])
            .args(args)
            .output()
            .unwrap()
    };
    let first = run(&["bootstrap", "--name", "acme"]);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let stdout = String::from_utf8(first.stdout).unwrap();
    let key = stdout
        .lines()
        .find_map(|line| line.strip_prefix("api key  "))
        .expect("the key is printed")
        .to_owned();
    assert!(key.starts_with("awx_"));

    let (name, scopes, hash): (String, Vec<String>, String) = sqlx::query_as(
        "SELECT a.name, k.scopes, k.secret_hash FROM gateway.api_keys k JOIN gateway.accounts a ON a.id = k.account_id",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(name, "acme");
    assert_eq!(scopes, vec!["admin".to_owned()]);
    assert!(hash.starts_with("$argon2id$") && !hash.contains(&key));

    let second = run(&["bootstrap"]);
    assert!(!second.status.success());
    assert!(String::from_utf8_lossy(&second.stderr).contains("already exists"));
    let third = run(&["create-account", "--name", "beta"]);
    assert!(third.status.success());
    let accounts: i64 = sqlx::query_scalar("SELECT count(*) FROM gateway.accounts")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(accounts, 2);
}

#[tokio::test]
async fn migrate_creates_the_database_and_applies_each_migration_once() {
    let server = TestDb::new().await;
    let name = format!("awx_migrate_{}", uuid::Uuid::new_v4().simple());
    let base = server.url();
    let url = format!("{}/{name}", &base[..base.rfind('/').unwrap()]);
    let migrate = || {
        Command::new(env!("CARGO_BIN_EXE_awx"))
            .args(["migrate", "--database-url", &url])
            .env_remove("AWX_DATABASE_URL")
            .output()
            .unwrap()
    };
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../../migrations"))
        .unwrap()
        .filter(|entry| entry.as_ref().unwrap().path().extension().is_some_and(|ext| ext == "sql"))
        .count();
    assert!(files > 10, "{files} migrations");

    let first = migrate();
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let stdout = String::from_utf8(first.stdout).unwrap();
    assert!(stdout.contains(&format!("{files} migration(s) applied now")), "{stdout}");
    let again = migrate();
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    let stdout = String::from_utf8(again.stdout).unwrap();
    assert!(stdout.contains("0 migration(s) applied now"), "{stdout}");

    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let applied: i64 =
        sqlx::query_scalar("SELECT count(*) FROM public._sqlx_migrations WHERE success")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(applied, i64::try_from(files).unwrap());
    let ledger_tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_tables WHERE schemaname = 'ledger' AND tablename = 'transfers'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(ledger_tables, 1);
    pool.close().await;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {name} WITH (FORCE)")))
        .execute(&server.pool)
        .await
        .unwrap();
}
