//! `awx dev` (what `make run` runs) starts the chain, the services and the demo, and prints how
//! to use them: the printed admin key works against the printed gateway, the printed agent pays
//! the printed demo API, the printed walkthrough runs as written, the keys it saves are
//! owner-only files, its console is free of colour codes and INFO lines (they go to a log file),
//! SIGTERM stops it cleanly, and a busy port stops it before the database is touched. With
//! `--processes` (what `make run-services` runs) every service is its own process, and all of
//! them are gone when it stops.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

mod support;

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};

use awx_test_support::TestDb;

fn awx_dev(db: &TestDb, state_dir: &std::path::Path) -> Command {
    awx_dev_with_gateway(db, state_dir, "127.0.0.1:0")
}

fn awx_dev_with_gateway(db: &TestDb, state_dir: &std::path::Path, gateway: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_awx"));
    command
        .args([
            "dev",
            "--chain-port",
            "0",
            "--gateway-addr",
            gateway,
            "--ledger-ops-addr",
            "127.0.0.1:0",
            "--settlement-ops-addr",
            "127.0.0.1:0",
            "--policy-ops-addr",
            "127.0.0.1:0",
            "--demo-addr",
            "127.0.0.1:0",
        ])
        // What a terminal user would not have set: the console must be plain by itself.
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
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
    let http = reqwest::Client::new();
    let account: serde_json::Value = http
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

    // The demo: the printed agent, funded, pays the printed demo API.
    assert!(printed.contains("holding 100.00 USDC"), "{printed}");
    let demo = field("demo API ");
    let agent = field("agent ");
    let agent_key = field("agent key ");
    let paid: serde_json::Value = http
        .post(format!("{gateway}/api/v1/x402/pay"))
        .header("x-api-key", &agent_key)
        .json(&serde_json::json!({"agent_id": agent, "target_url": demo}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(paid["status"], "completed", "{paid}");
    let retried = http
        .get(&demo)
        .header("payment-signature", paid["payment_signature"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(retried.status(), 200);
    assert!(retried.headers().contains_key("payment-response"));

    // The walkthrough runs as printed (steps 1 to 7; step 8 waits for net settlement).
    let script: String = printed
        .lines()
        .skip_while(|line| !line.starts_with("Walkthrough"))
        .skip(1)
        .take_while(|line| !line.trim_start().starts_with("# 8."))
        .map(|line| format!("{}\n", line.trim_start()))
        .collect();
    assert!(script.starts_with("export AWX="), "{script}");
    let walked = Command::new("bash").args(["-euo", "pipefail", "-c", &script]).output().unwrap();
    let walked_out = String::from_utf8_lossy(&walked.stdout).to_lowercase();
    assert!(
        walked.status.success(),
        "{script}\n{walked_out}\n{}",
        String::from_utf8_lossy(&walked.stderr)
    );
    for expected in [
        "\"accepts\"",
        "\"status\": \"completed\"",
        "\"status\": \"pending\"",
        "\"payment_signature\": null",
        "quarterly weather outlook",
        "\"type\":\"capture\"",
    ] {
        assert!(walked_out.contains(expected), "no {expected} in\n{walked_out}");
    }
    assert_eq!(walked_out.matches("http/1.1 200 ok").count(), 2, "{walked_out}");
    assert_eq!(walked_out.matches("payment-response:").count(), 2, "{walked_out}");

    // The keys are saved owner-only, the agent key beside the admin key.
    assert_eq!(std::fs::read_to_string(state_dir.join("dev-agent-key")).unwrap(), agent_key);
    assert_eq!(std::fs::read_to_string(state_dir.join("dev-admin-key")).unwrap(), key);
    assert!(printed.contains(&format!("saved in {}", state_dir.join("dev-agent-key").display())));
    for secret in ["dev-kek", "dev-decision-key", "dev-admin-key", "dev-agent-key", "devchain.json"]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(state_dir.join(secret)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{secret} is {:o}", mode & 0o777);
    }

    let terminated =
        Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(terminated.success());
    assert!(child.wait().unwrap().success(), "awx dev stops cleanly on SIGTERM");

    // A second run starts from an empty database (the chain is new too): a new admin key.
    let again = awx_dev(&db, &state_dir).arg("--exit-after-start").output().unwrap();
    // Its console: no colour codes (stderr is not a terminal), no INFO lines; those are in the
    // log file it names, plain as well.
    let console = String::from_utf8(again.stderr).unwrap();
    assert!(!console.contains('\u{1b}') && !console.contains(" INFO "), "{console}");
    let log = std::fs::read_to_string(state_dir.join("services.log")).unwrap();
    assert!(log.contains(" INFO ") && !log.contains('\u{1b}'), "{log}");
    assert!(!log.contains("already exists, skipping"), "Postgres notices are noise: {log}");
    let again = String::from_utf8(again.stdout).unwrap();
    assert!(!again.contains('\u{1b}'), "{again}");
    assert!(again.contains(&format!("logs      {}", state_dir.join("services.log").display())));
    assert!(again.contains("the demo is ready"), "{again}");
    assert!(!again.contains(&key), "{again}");
    // With --keep-database, the saved key is reused instead.
    let kept =
        awx_dev(&db, &state_dir).args(["--exit-after-start", "--keep-database"]).output().unwrap();
    let kept = String::from_utf8(kept.stdout).unwrap();
    let second_key = again
        .lines()
        .find_map(|line| line.trim().strip_prefix("admin key "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .to_owned();
    assert!(kept.contains(&second_key) && kept.contains("from "), "{kept}");
    let pool = sqlx::PgPool::connect(&db.url()).await.unwrap();
    let agents: i64 =
        sqlx::query_scalar("SELECT count(*) FROM policy.agents").fetch_one(&pool).await.unwrap();
    assert_eq!(agents, 2, "the kept database has the demo agents of both runs");
    pool.close().await;
    let _ = std::fs::remove_dir_all(&state_dir);
}

#[tokio::test]
async fn a_busy_port_is_reported_before_the_database_is_touched() {
    let db = TestDb::new().await;
    let pool = sqlx::PgPool::connect(&db.url()).await.unwrap();
    sqlx::query("CREATE TABLE public.kept (id int)").execute(&pool).await.unwrap();
    let state_dir =
        std::env::temp_dir().join(format!("awx-dev-busy-{}", uuid::Uuid::new_v4().simple()));
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();

    let run = awx_dev_with_gateway(&db, &state_dir, &format!("127.0.0.1:{port}"))
        .arg("--exit-after-start")
        .output()
        .unwrap();
    let error = String::from_utf8(run.stderr).unwrap();
    assert!(!run.status.success(), "{error}");
    assert!(error.contains(&format!("port {port} (127.0.0.1:{port}, the gateway)")), "{error}");
    assert!(error.contains("--gateway-addr"), "the option that moves it: {error}");
    assert!(error.contains("the database was not touched"), "{error}");
    assert!(!String::from_utf8(run.stdout).unwrap().contains("chain is up"));
    // Nothing was dropped, and nothing was started or written.
    let kept: bool = sqlx::query_scalar("SELECT to_regclass('public.kept') IS NOT NULL")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(kept, "the database was dropped");
    assert!(!state_dir.join("devchain.json").exists());
    drop(busy);
    pool.close().await;
    let _ = std::fs::remove_dir_all(&state_dir);
}

#[tokio::test]
async fn awx_dev_with_processes_runs_each_service_as_its_own_process_and_stops_them_all() {
    // The service binaries, beside `awx` (as `make run-services` builds them).
    let bin_dir = support::child::service_bin_dir().await;
    assert_eq!(Some(bin_dir.as_path()), std::path::Path::new(env!("CARGO_BIN_EXE_awx")).parent());
    let db = TestDb::new().await;
    let state_dir =
        std::env::temp_dir().join(format!("awx-dev-test-{}", uuid::Uuid::new_v4().simple()));
    let output = awx_dev(&db, &state_dir)
        .args(["--processes", "--second-gateway-addr", "127.0.0.1:0", "--exit-after-start"])
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));

    let mut names = Vec::new();
    for line in stdout.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.len() >= 3 && words[1] == "pid" {
            let pid: i32 = words[2].parse().unwrap();
            // Gone: stopped with the platform.
            let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
            assert!(!alive, "{} (pid {pid}) outlived awx dev", words[0]);
            names.push(words[0].to_owned());
        }
    }
    let expected: Vec<String> = ["signer", "ledger", "settlement", "policy", "gateway"]
        .iter()
        .flat_map(|service| [format!("{service}-1"), format!("{service}-2")])
        .collect();
    assert_eq!(names, expected, "{stdout}");
    let gateways: Vec<&str> =
        stdout.lines().filter_map(|line| line.trim().strip_prefix("gateway   http://")).collect();
    assert_eq!(gateways.len(), 2, "{stdout}");
    assert_ne!(gateways[0], gateways[1]);
    assert!(stdout.contains("Walkthrough"), "{stdout}");

    for service in ["signer", "ledger", "settlement", "policy", "gateway"] {
        let config = state_dir.join("processes/config").join(format!("{service}.toml"));
        let config: toml::Table =
            toml::from_str(&std::fs::read_to_string(config).unwrap()).unwrap();
        assert_eq!(config["database"]["migrate"].as_bool(), Some(false), "{service}");
        let text = toml::to_string(&config).unwrap();
        for secret in ["dev-kek", "dev-decision-key"] {
            let value = std::fs::read_to_string(state_dir.join(secret)).unwrap();
            assert!(!text.contains(value.trim()), "{service}.toml holds {secret}");
        }
        let log = std::fs::read_to_string(
            state_dir.join("processes/logs").join(format!("{service}-1.log")),
        )
        .unwrap();
        assert!(log.lines().all(|line| serde_json::from_str::<serde_json::Value>(line).is_ok()));
    }
    let _ = std::fs::remove_dir_all(&state_dir);
}
