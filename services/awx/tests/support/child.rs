//! The real settlement service as a child process, for tests that kill it or that need its
//! background workers exactly as deployed: builds the `awx-settlement` binary, writes its
//! settings against a [`World`] (its database, bus namespace and chain), and runs it with its
//! output collected line by line (optionally stopping at a fail point,
//! `AWX_SETTLEMENT_FAIL_POINT`).

#![allow(dead_code, reason = "each test binary uses part of the support module")]

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use awx_x402::Address;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{OnceCell, mpsc};

use super::World;

/// Where the worlds send the platform's fees (see `World::start_with`), and so the child too.
pub(crate) const FEE_ADDRESS: Address = Address::repeat_byte(0xfe);
/// How long a child may take to reach a fail point, or to finish after a restart.
pub(crate) const CHILD_WAIT: Duration = Duration::from_secs(60);
/// What `batch::fail_point` logs.
pub(crate) const FAIL_POINT_MESSAGE: &str = "fail point reached";

/// The `awx-settlement` binary, built once per test binary. It belongs to another package
/// (`awx-settlement-service`), so Cargo gives it no `CARGO_BIN_EXE_…` here: it is built with
/// the Cargo running the tests (as the tidy tests run it), in this test's profile, and found in
/// Cargo's own report of the artifact.
static SETTLEMENT_BINARY: OnceCell<PathBuf> = OnceCell::const_new();

/// The directory holding every service binary, built once per test binary.
static SERVICE_BINARIES: OnceCell<PathBuf> = OnceCell::const_new();

/// The packages and binaries of the five services.
pub(crate) const SERVICE_BINARY_PACKAGES: [(&str, &str); 5] = [
    ("awx-signer-service", "awx-signer"),
    ("awx-ledger-service", "awx-ledger"),
    ("awx-settlement-service", "awx-settlement"),
    ("awx-policy-service", "awx-policy"),
    ("awx-gateway", "awx-gateway"),
];

/// The path of the `awx-settlement` binary, built on first use.
pub(crate) async fn settlement_binary() -> PathBuf {
    SETTLEMENT_BINARY
        .get_or_init(|| async {
            build_binaries(&[("awx-settlement-service", "awx-settlement")]).await.remove(0)
        })
        .await
        .clone()
}

/// The directory of the five service binaries (`awx-signer`, …, `awx-gateway`), built on first
/// use.
pub(crate) async fn service_bin_dir() -> PathBuf {
    SERVICE_BINARIES
        .get_or_init(|| async {
            let built = build_binaries(&SERVICE_BINARY_PACKAGES).await;
            let dir = built[0].parent().unwrap().to_path_buf();
            assert!(built.iter().all(|binary| binary.parent() == Some(dir.as_path())));
            dir
        })
        .await
        .clone()
}

/// Builds the binaries `(package, binary)` in this test's profile; their executables, in
/// order, as Cargo reports them.
pub(crate) async fn build_binaries(binaries: &[(&str, &str)]) -> Vec<PathBuf> {
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
    command.current_dir(&workspace).args(["build", "--message-format=json"]);
    for (package, binary) in binaries {
        command.args(["-p", package, "--bin", binary]);
    }
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
        "building {binaries:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let messages: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|message| message["reason"] == "compiler-artifact")
        .collect();
    binaries
        .iter()
        .map(|(_, binary)| {
            messages
                .iter()
                .filter(|message| message["target"]["name"] == *binary)
                .find_map(|message| message["executable"].as_str().map(PathBuf::from))
                .unwrap_or_else(|| panic!("cargo reported no {binary} executable"))
        })
        .collect()
}

/// A temporary directory holding the child's settings, removed when dropped.
#[derive(Debug)]
pub(crate) struct ConfigDir(pub(crate) PathBuf);

impl Drop for ConfigDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Which background workers the child runs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChildOptions {
    /// The batch worker: every second, threshold $0.01, no eligibility margin, fees to
    /// [`FEE_ADDRESS`], through Multicall3. Off: `[batch] enabled = false`.
    pub(crate) batch: bool,
    /// The chain watcher, every 200 ms (each network scanned from genesis).
    pub(crate) watch: bool,
}

/// Writes the child's settings: the world's database, bus namespace and chain (the faucet on,
/// no confirmations, the watcher scanning from block 0), and the workers `options` turns on.
/// Returns the directory and the file.
pub(crate) fn write_settings(world: &World, options: ChildOptions) -> (ConfigDir, PathBuf) {
    let dir = std::env::temp_dir()
        .join(format!("awx-settlement-child-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("settlement.toml");
    let batch = if options.batch {
        format!(
            r#"[batch]
enabled = true
interval_seconds = 1
threshold_usd = "0.01"
eligibility_margin_seconds = 0
fee_address = "{fee:#x}"
contract = "{contract:#x}"
"#,
            fee = FEE_ADDRESS,
            contract = awx_chain::batch::MULTICALL3_ADDRESS,
        )
    } else {
        "[batch]\nenabled = false\n".to_owned()
    };
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

{batch}
[watch]
enabled = {watch}
interval_ms = 200

[[networks]]
network = {network:?}
rpc_url = {rpc:?}
receipt_wait_ms = 10000
faucet = true
faucet_token = "{token:#x}"
confirmations = 0

[networks.watch]
from_block = 0
"#,
        database = world.db.url(),
        redis = awx_test_support::redis_url(),
        prefix = world.namespace.prefix(),
        watch = options.watch,
        network = world.network,
        rpc = world.anvil.endpoint(),
        token = world.token.address(),
    );
    std::fs::write(&file, settings).unwrap();
    (ConfigDir(dir), file)
}

/// The settlement service as a child process, its output collected line by line.
#[derive(Debug)]
pub(crate) struct SettlementProcess {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    lines: mpsc::UnboundedReceiver<String>,
}

/// Reads `output` line by line into `log` and `lines` until it closes.
pub(crate) fn collect(
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
    pub(crate) fn spawn(binary: &Path, settings: &Path, fail_point: Option<&str>) -> Self {
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
    pub(crate) fn tail(&self) -> String {
        let log = self.log.lock().unwrap();
        log[log.len().saturating_sub(60)..].join("\n")
    }

    /// Whether any line the child wrote so far contains `text`.
    pub(crate) fn logged(&self, text: &str) -> bool {
        self.log.lock().unwrap().iter().any(|line| line.contains(text))
    }

    /// Reads the child's output until it reports `point`; fails the test if it exits or takes
    /// longer than [`CHILD_WAIT`].
    pub(crate) async fn wait_for_fail_point(&mut self, point: &str) {
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
    pub(crate) fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("awx-settlement exited ({status}):\n{}", self.tail());
        }
    }

    /// SIGKILL, then reaps the child.
    pub(crate) async fn kill(mut self) -> ExitStatus {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap()
    }
}
