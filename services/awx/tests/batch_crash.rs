//! The batch settlement worker killed for real: the `awx-settlement` binary runs as a child
//! process beside a world (anvil, Postgres, Redis, every other service in this process), stops
//! at a fail point (`AWX_SETTLEMENT_FAIL_POINT`), is killed with SIGKILL there, and is started
//! again without it. Whatever step it died after, every payment ends up paid on chain exactly
//! once (one `AuthorizationUsed` per net transfer, one batch transaction), the balances on chain
//! are exact, and the ledger agrees.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

mod support;

use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alloy::primitives::U256;
use awx_x402::{Address, B256};
use serde_json::{Value, json};
use support::World;
use tokio::io::{AsyncBufReadExt as _, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{OnceCell, mpsc};

/// How long the test APIs' authorizations are valid (a facilitator wants at least 6 s left).
const EXPIRY_SECONDS: u64 = 8;
/// A dime in atomic units; its fee at 2.0 % is 2,000.
const DIME: u128 = 100_000;
const DIME_FEE: u128 = 2_000;
/// Where the worlds send the platform's fees (see `support`).
const FEE_ADDRESS: Address = Address::repeat_byte(0xfe);
/// What each agent's wallet is funded with, in atomic units ("1.00").
const FUNDED: u128 = 1_000_000;
/// How long a child may take to reach a fail point, or to finish after a restart.
const CHILD_WAIT: Duration = Duration::from_secs(60);
/// What `batch::fail_point` logs.
const FAIL_POINT_MESSAGE: &str = "fail point reached";

/// The `awx-settlement` binary, built once per test binary. It belongs to another package
/// (`awx-settlement-service`), so Cargo gives it no `CARGO_BIN_EXE_…` here: it is built with
/// the Cargo running the tests (as the tidy tests run it), in this test's profile, and found in
/// Cargo's own report of the artifact.
static SETTLEMENT_BINARY: OnceCell<PathBuf> = OnceCell::const_new();

async fn settlement_binary() -> PathBuf {
    SETTLEMENT_BINARY.get_or_init(build_settlement_binary).await.clone()
}

async fn build_settlement_binary() -> PathBuf {
    // This test runs from `<target>/<profile dir>/deps/`.
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .and_then(Path::file_name)
        .and_then(|name| name.to_str())
        .unwrap_or("debug")
        .to_owned();
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut command = Command::new(env!("CARGO"));
    command.current_dir(&workspace).args([
        "build",
        "--message-format=json",
        "-p",
        "awx-settlement-service",
        "--bin",
        "awx-settlement",
    ]);
    match profile_dir.as_str() {
        "debug" => {}
        "release" => {
            command.arg("--release");
        }
        other => {
            command.args(["--profile", other]);
        }
    }
    let output = command.stdin(Stdio::null()).output().await.unwrap();
    assert!(
        output.status.success(),
        "building awx-settlement: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|message| {
            message["reason"] == "compiler-artifact"
                && message["target"]["name"] == "awx-settlement"
        })
        .find_map(|message| message["executable"].as_str().map(PathBuf::from))
        .expect("cargo reported no awx-settlement executable")
}

/// A temporary directory holding the child's settings, removed when dropped.
struct ConfigDir(PathBuf);

impl Drop for ConfigDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes the child's settings: the world's database, bus namespace and chain, the batch worker
/// on (every second, threshold $0.01, no eligibility margin, fees to [`FEE_ADDRESS`]). Returns
/// the directory and the file.
fn write_settings(world: &World) -> (ConfigDir, PathBuf) {
    let dir =
        std::env::temp_dir().join(format!("awx-batch-crash-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("settlement.toml");
    let settings = format!(
        r#"ops_addr = "127.0.0.1:0"
resume_interval_ms = 200

[database]
url = {database:?}
migrate = false
max_connections = 8

[bus]
redis_url = {redis:?}
prefix = {prefix:?}

[batch]
enabled = true
interval_seconds = 1
threshold_usd = "0.01"
eligibility_margin_seconds = 0
fee_address = "{fee:#x}"
contract = "{contract:#x}"

[[networks]]
network = {network:?}
rpc_url = {rpc:?}
receipt_wait_ms = 10000
faucet = true
faucet_token = "{token:#x}"
confirmations = 0
"#,
        database = world.db.url(),
        redis = awx_test_support::redis_url(),
        prefix = world.namespace.prefix(),
        fee = FEE_ADDRESS,
        contract = awx_chain::batch::MULTICALL3_ADDRESS,
        network = world.network,
        rpc = world.anvil.endpoint(),
        token = world.token.address(),
    );
    std::fs::write(&file, settings).unwrap();
    (ConfigDir(dir), file)
}

/// The settlement service as a child process, its output collected line by line.
struct SettlementProcess {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    lines: mpsc::UnboundedReceiver<String>,
}

fn collect(
    output: impl AsyncRead + Unpin + Send + 'static,
    log: Arc<Mutex<Vec<String>>>,
    lines: mpsc::UnboundedSender<String>,
) {
    tokio::spawn(async move {
        let mut reader = BufReader::new(output).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            log.lock().unwrap().push(line.clone());
            let _ = lines.send(line);
        }
    });
}

impl SettlementProcess {
    /// Starts `awx-settlement` with `settings`, stopping at `fail_point` if given.
    fn spawn(binary: &Path, settings: &Path, fail_point: Option<&str>) -> Self {
        let mut command = Command::new(binary);
        // Only the settings given here: none of the runner's own settlement variables.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("AWX_SETTLEMENT") {
                command.env_remove(&name);
            }
        }
        command
            .env("AWX_SETTLEMENT_CONFIG", settings)
            .env("RUST_LOG", "info")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT");
        if let Some(point) = fail_point {
            command.env("AWX_SETTLEMENT_FAIL_POINT", point);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (sender, lines) = mpsc::unbounded_channel();
        collect(child.stdout.take().unwrap(), log.clone(), sender.clone());
        collect(child.stderr.take().unwrap(), log.clone(), sender);
        Self { child, log, lines }
    }

    /// The last lines the child wrote, for failure messages.
    fn tail(&self) -> String {
        let log = self.log.lock().unwrap();
        log[log.len().saturating_sub(60)..].join("\n")
    }

    /// Whether any line the child wrote so far contains `text`.
    fn logged(&self, text: &str) -> bool {
        self.log.lock().unwrap().iter().any(|line| line.contains(text))
    }

    /// Reads the child's output until it reports `point`; fails the test if it exits or takes
    /// longer than [`CHILD_WAIT`].
    async fn wait_for_fail_point(&mut self, point: &str) {
        let reached = tokio::time::timeout(CHILD_WAIT, async {
            while let Some(line) = self.lines.recv().await {
                if line.contains(FAIL_POINT_MESSAGE) && line.contains(point) {
                    return true;
                }
            }
            false
        })
        .await;
        match reached {
            Ok(true) => {}
            Ok(false) => {
                let status = self.child.wait().await;
                panic!("awx-settlement exited ({status:?}) before {point}:\n{}", self.tail());
            }
            Err(_) => {
                panic!("awx-settlement did not reach {point} in {CHILD_WAIT:?}:\n{}", self.tail())
            }
        }
    }

    /// Fails the test if the child has exited.
    fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("awx-settlement exited ({status}):\n{}", self.tail());
        }
    }

    /// SIGKILL, then reaps the child.
    async fn kill(mut self) -> ExitStatus {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap()
    }
}

fn atomic(value: u128) -> U256 {
    U256::from(value)
}

/// The world's payments, waiting to be netted.
struct Payments {
    first_wallet: Address,
    second_wallet: Address,
    p1: Address,
    p2: Address,
}

/// The payments of every test: five, from two agents to two payees ...
const ITEMS: i64 = 5;
/// ... in four (payer, payee) groups ...
const GROUPS: i64 = 4;
/// ... so six net transfers with the two payers' fees.
const TRANSFERS: i64 = 6;

/// Makes the payments: `first` pays p1 twice and p2 once, `second` pays each once. All of
/// their authorizations have expired when this returns.
async fn pay(world: &World) -> Payments {
    let key = world.new_key(&["agent"]).await;
    let (first, first_wallet) = world.create_agent(json!({})).await;
    world.fund(&first, "1.00").await;
    let (second, second_wallet) = world.create_agent(json!({})).await;
    world.fund(&second, "1.00").await;
    let (p1, p2) = (Address::random(), Address::random());
    let api1 = format!("{}/paid", world.paid_api_expiring(p1, DIME, EXPIRY_SECONDS).await);
    let api2 = format!("{}/paid", world.paid_api_expiring(p2, DIME, EXPIRY_SECONDS).await);
    world.pay_and_serve(&key, &first, &api1).await;
    world.pay_and_serve(&key, &first, &api1).await;
    world.pay_and_serve(&key, &first, &api2).await;
    world.pay_and_serve(&key, &second, &api1).await;
    world.pay_and_serve(&key, &second, &api2).await;
    assert_eq!(
        world.count("SELECT count(*) FROM settlement.items WHERE state = 'queued'").await,
        ITEMS
    );
    world.wait_for_expiry().await;
    Payments { first_wallet, second_wallet, p1, p2 }
}

/// Every `AuthorizationUsed(authorizer, nonce)` log of the world's token, from genesis.
async fn authorizations_used(world: &World) -> Vec<(Address, B256)> {
    let topic = alloy::primitives::keccak256("AuthorizationUsed(address,bytes32)");
    let logs = world
        .rpc(
            "eth_getLogs",
            json!([{"address": world.token.address().to_string(), "fromBlock": "0x0",
                    "toBlock": "latest", "topics": [topic.to_string()]}]),
        )
        .await;
    logs.as_array()
        .unwrap()
        .iter()
        .map(|log| {
            let topics = log["topics"].as_array().unwrap();
            let authorizer: B256 = topics[1].as_str().unwrap().parse().unwrap();
            let nonce: B256 = topics[2].as_str().unwrap().parse().unwrap();
            (Address::from_word(authorizer), nonce)
        })
        .collect()
}

/// The (payer, nonce) of every stored net transfer.
async fn stored_authorizations(world: &World) -> BTreeSet<(Address, B256)> {
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT payer, nonce FROM settlement.net_transfers")
            .fetch_all(&world.db.pool)
            .await
            .unwrap();
    rows.iter().map(|(payer, nonce)| (payer.parse().unwrap(), nonce.parse().unwrap())).collect()
}

async fn batch_txs(world: &World) -> i64 {
    world.count("SELECT count(*) FROM settlement.chain_txs WHERE purpose = 'batch'").await
}

/// What the killed worker left behind at `point`.
async fn assert_stopped_at(world: &World, point: &str, payments: &Payments) {
    let transfers = |state: &'static str| async move {
        let count: i64 =
            sqlx::query_scalar("SELECT count(*) FROM settlement.net_transfers WHERE state = $1")
                .bind(state)
                .fetch_one(&world.db.pool)
                .await
                .unwrap();
        count
    };
    assert_eq!(
        world.count("SELECT count(*) FROM settlement.net_transfers").await,
        TRANSFERS,
        "{point}: every transfer is planned before any step after planning"
    );
    assert_eq!(
        world.count("SELECT count(*) FROM settlement.items WHERE state = 'batched'").await,
        ITEMS,
        "{point}"
    );
    match point {
        "after_plan" => {
            assert_eq!(transfers("planned").await, TRANSFERS);
            assert_eq!(world.count("SELECT count(*) FROM settlement.batches").await, 0);
            assert_eq!(batch_txs(world).await, 0);
        }
        "after_sign" => {
            assert_eq!(transfers("signed").await, TRANSFERS);
            assert_eq!(
                world
                    .count(
                        "SELECT count(*) FROM settlement.net_transfers WHERE batch_id IS NOT NULL"
                    )
                    .await,
                0
            );
            assert_eq!(world.count("SELECT count(*) FROM settlement.batches").await, 0);
            assert_eq!(batch_txs(world).await, 0);
        }
        "after_batch_stored" => {
            assert_eq!(transfers("signed").await, TRANSFERS);
            assert_eq!(
                world.count("SELECT count(*) FROM settlement.batches WHERE state = 'signed'").await,
                1
            );
            assert_eq!(
                world.count("SELECT count(*) FROM settlement.chain_txs WHERE purpose = 'batch' AND state = 'signed'").await,
                1
            );
            assert_eq!(batch_txs(world).await, 1);
        }
        "after_broadcast" | "before_confirm" => {
            assert_eq!(transfers("signed").await, TRANSFERS);
            assert_eq!(
                world
                    .count("SELECT count(*) FROM settlement.net_transfers WHERE batch_id IS NULL")
                    .await,
                0
            );
            assert_eq!(
                world
                    .count("SELECT count(*) FROM settlement.batches WHERE state = 'broadcast'")
                    .await,
                1
            );
            assert_eq!(
                world.count("SELECT count(*) FROM settlement.chain_txs WHERE purpose = 'batch' AND state = 'broadcast'").await,
                1
            );
            assert_eq!(batch_txs(world).await, 1);
        }
        other => panic!("no expectations for fail point {other}"),
    }
    if point == "before_confirm" {
        // The worker saw the receipt: the batch is mined, the transfers paid on chain, and
        // nothing is recorded yet.
        assert_eq!(world.balance(payments.p1).await, atomic(3 * DIME));
        assert_eq!(world.balance(payments.p2).await, atomic(2 * DIME));
        assert_eq!(world.balance(FEE_ADDRESS).await, atomic(5 * DIME_FEE));
        let used = authorizations_used(world).await;
        assert_eq!(used.len(), usize::try_from(TRANSFERS).unwrap(), "{used:?}");
        assert_eq!(
            world.count("SELECT count(*) FROM settlement.net_transfers WHERE recorded").await,
            0
        );
    } else if matches!(point, "after_plan" | "after_sign" | "after_batch_stored") {
        // Nothing has been sent.
        assert_eq!(world.balance(payments.p1).await, U256::ZERO);
        assert_eq!(world.balance(payments.p2).await, U256::ZERO);
        assert!(authorizations_used(world).await.is_empty());
    }
}

/// Polls the database (bounded) until every item is settled and every net transfer confirmed
/// and recorded.
async fn wait_until_settled(world: &World, child: &mut SettlementProcess) {
    let deadline = Instant::now() + CHILD_WAIT;
    loop {
        let open = world
            .count("SELECT count(*) FROM settlement.items WHERE state <> 'settled'")
            .await
            + world
                .count(
                    "SELECT count(*) FROM settlement.net_transfers WHERE state <> 'confirmed' OR NOT recorded",
                )
                .await;
        let transfers = world.count("SELECT count(*) FROM settlement.net_transfers").await;
        if open == 0 && transfers > 0 {
            return;
        }
        child.assert_running();
        assert!(
            Instant::now() < deadline,
            "the restarted worker did not settle everything in {CHILD_WAIT:?} ({open} open):\n{}",
            child.tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Everything is paid exactly once, on chain and in the ledger.
async fn assert_paid_exactly_once(world: &World, payments: &Payments) {
    assert_eq!(
        world.count("SELECT count(*) FROM settlement.items WHERE state = 'settled'").await,
        ITEMS
    );
    assert_eq!(
        world
            .count("SELECT count(*) FROM settlement.net_transfers WHERE state = 'confirmed' AND recorded")
            .await,
        TRANSFERS
    );
    assert_eq!(
        world
            .count("SELECT count(*) FROM settlement.net_transfers WHERE kind = 'payee' AND state = 'confirmed'")
            .await,
        GROUPS
    );
    assert_eq!(
        world
            .count("SELECT count(*) FROM (SELECT DISTINCT payer, payee FROM settlement.net_transfers WHERE kind = 'payee') g")
            .await,
        GROUPS
    );
    assert_eq!(
        world
            .count("SELECT count(*) FROM settlement.net_transfers WHERE kind = 'fee' AND state = 'confirmed'")
            .await,
        2
    );
    // Each payment in exactly one transfer of each kind, signed once per kind.
    assert_eq!(
        world
            .count("SELECT count(*) FROM settlement.net_transfer_items WHERE kind = 'payee'")
            .await,
        ITEMS
    );
    assert_eq!(
        world.count("SELECT count(*) FROM settlement.net_transfer_items WHERE kind = 'fee'").await,
        ITEMS
    );
    assert_eq!(world.count("SELECT count(*) FROM signer.net_transfer_payments").await, 2 * ITEMS);
    // One batch, sent once.
    assert_eq!(
        world.count("SELECT count(*) FROM settlement.batches WHERE state = 'confirmed'").await,
        1
    );
    assert_eq!(world.count("SELECT count(*) FROM settlement.batches").await, 1);
    assert_eq!(batch_txs(world).await, 1);
    assert_eq!(
        world
            .count("SELECT count(*) FROM settlement.chain_txs WHERE purpose = 'batch' AND state = 'confirmed'")
            .await,
        1
    );
    // On chain: each net transfer's authorization used once, and no other.
    let used = authorizations_used(world).await;
    let distinct: BTreeSet<(Address, B256)> = used.iter().copied().collect();
    assert_eq!(used.len(), distinct.len(), "an authorization used twice: {used:?}");
    assert_eq!(distinct, stored_authorizations(world).await);
    assert_eq!(world.balance(payments.p1).await, atomic(3 * DIME));
    assert_eq!(world.balance(payments.p2).await, atomic(2 * DIME));
    assert_eq!(world.balance(FEE_ADDRESS).await, atomic(5 * DIME_FEE));
    assert_eq!(world.balance(payments.first_wallet).await, atomic(FUNDED - 3 * (DIME + DIME_FEE)));
    assert_eq!(world.balance(payments.second_wallet).await, atomic(FUNDED - 2 * (DIME + DIME_FEE)));
    // The ledger agrees: nothing owed to the payees, the fees collected once.
    let owed: Option<String> = sqlx::query_scalar(
        "SELECT sum(credits_posted - debits_posted)::text FROM ledger.accounts WHERE code = 'payable'",
    )
    .fetch_one(&world.db.pool)
    .await
    .unwrap();
    assert_eq!(owed.as_deref(), Some("0"));
    let collected: Option<String> = sqlx::query_scalar(
        "SELECT sum(debits_posted - credits_posted)::text FROM ledger.accounts WHERE code = 'fee_collected'",
    )
    .fetch_one(&world.db.pool)
    .await
    .unwrap();
    assert_eq!(collected.as_deref(), Some(&*(5 * DIME_FEE).to_string()));
    world.assert_ledger_consistent().await;
}

/// The crash test of one fail point: pay, run the worker in a child until `point`, SIGKILL it,
/// check what it stored, restart it without the fail point, and check that everything is paid
/// exactly once.
async fn killed_at(point: &str) {
    let (world, binary) = tokio::join!(
        World::start_with(|args| args.batch.threshold_usd = "0.01".into()),
        settlement_binary()
    );
    let payments = pay(&world).await;
    let (_dir, settings) = write_settings(&world);

    let mut child = SettlementProcess::spawn(&binary, &settings, Some(point));
    child.wait_for_fail_point(point).await;
    let status = child.kill().await;
    assert_eq!(status.signal(), Some(9), "{status}");
    assert_stopped_at(&world, point, &payments).await;

    let mut child = SettlementProcess::spawn(&binary, &settings, None);
    wait_until_settled(&world, &mut child).await;
    child.assert_running();
    assert!(!child.logged(FAIL_POINT_MESSAGE), "{}", child.tail());
    child.kill().await;

    assert_paid_exactly_once(&world, &payments).await;
    world.stop().await;
}

#[tokio::test]
async fn killed_after_planning_the_worker_resumes_and_pays_every_item_once() {
    killed_at("after_plan").await;
}

#[tokio::test]
async fn killed_after_signing_the_worker_resumes_and_pays_every_item_once() {
    killed_at("after_sign").await;
}

#[tokio::test]
async fn killed_after_storing_the_batch_the_worker_broadcasts_it_once() {
    killed_at("after_batch_stored").await;
}

#[tokio::test]
async fn killed_after_broadcast_the_worker_records_the_batch_once() {
    killed_at("after_broadcast").await;
}

#[tokio::test]
async fn killed_before_recording_the_confirmation_the_worker_records_it_without_sending_again() {
    killed_at("before_confirm").await;
}
