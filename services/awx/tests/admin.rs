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
