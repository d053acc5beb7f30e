//! `awx dev` (what `make run` runs) starts the chain and the services and prints how to use
//! them; the printed admin key works against the printed gateway; SIGTERM stops it cleanly.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};

use awx_test_support::TestDb;

fn awx_dev(db: &TestDb, state_dir: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_awx"));
    command
        .args([
            "dev",
            "--chain-port",
            "0",
            "--gateway-addr",
            "127.0.0.1:0",
            "--ledger-ops-addr",
            "127.0.0.1:0",
        ])
        .args(["--bus-prefix", &format!("test-{}", uuid::Uuid::new_v4().simple())])
        .args(["--database-url", &db.url(), "--redis-url", &awx_test_support::redis_url()])
        .arg("--state-file")
        .arg(state_dir.join("devchain.json"));
    command
}

#[tokio::test]
async fn awx_dev_serves_the_gateway_with_the_admin_key_it_prints() {
    let db = TestDb::new().await;
    let state_dir =
        std::env::temp_dir().join(format!("awx-dev-test-{}", uuid::Uuid::new_v4().simple()));
    let mut child =
        awx_dev(&db, &state_dir).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        printed.push_str(&line);
        printed.push('\n');
        if line.starts_with("Press Ctrl-C") {
            break;
        }
    }
    assert!(printed.contains("1000.00 USDC"), "{printed}");
    let field = |prefix: &str| {
        printed
            .lines()
            .find_map(|line| line.trim().strip_prefix(prefix))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no `{prefix}` in {printed}"))
            .to_owned()
    };
    let gateway = field("gateway ");
    let key = field("admin key ");
    let account: serde_json::Value = reqwest::Client::new()
        .get(format!("{gateway}/api/v1/account"))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(account["name"], "development");
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(state_dir.join("devchain.json")).unwrap())
            .unwrap();
    assert_eq!(state["network"], "eip155:31337");
    assert_eq!(state["wallets"].as_array().unwrap().len(), 4);

    let terminated =
        Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(terminated.success());
    assert!(child.wait().unwrap().success(), "awx dev stops cleanly on SIGTERM");

    // A second run reuses the saved key instead of making another.
    let again = awx_dev(&db, &state_dir).arg("--exit-after-start").output().unwrap();
    let again = String::from_utf8(again.stdout).unwrap();
    assert!(again.contains(&key) && again.contains("from "), "{again}");
    let keys: i64 = sqlx::query_scalar("SELECT count(*) FROM gateway.api_keys")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(keys, 1);
    let _ = std::fs::remove_dir_all(&state_dir);
}
