//! A local anvil node on a free loopback port, stopped when dropped.
//!
//! anvil comes from the npm registry (`@foundry-rs/anvil-linux-amd64`, pinned in
//! `tools/package.json`) and is installed by `make setup` into the git-ignored
//! `tools/node_modules`. [`find_tool`] locates it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use alloy::signers::local::PrivateKeySigner;

use crate::ChainError;

/// How long anvil may take to start listening.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// Options for [`Anvil::spawn`].
#[derive(Debug, Clone)]
pub struct AnvilOptions {
    /// The chain id; 31337 by default.
    pub chain_id: u64,
    /// The loopback port; 0 (the default) lets the system pick a free one.
    pub port: u16,
    /// Seconds between blocks; `None` (the default) mines a block per transaction.
    pub block_time_seconds: Option<u64>,
    /// How many funded development accounts to create.
    pub accounts: u16,
}

impl Default for AnvilOptions {
    fn default() -> Self {
        Self { chain_id: 31_337, port: 0, block_time_seconds: None, accounts: 10 }
    }
}

/// A running anvil process. Dropping it kills the process.
#[derive(Debug)]
pub struct Anvil {
    child: Child,
    endpoint: String,
    chain_id: u64,
    keys: Vec<PrivateKeySigner>,
}

/// Finds a tool installed by `make setup`: `$AWX_TOOLS_DIR/node_modules/.bin/<name>`, then this
/// repository's `tools/node_modules/.bin/<name>` (found from the current directory upwards, then
/// from where this crate was built), then `<name>` on `PATH`.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let in_tools = |tools: &Path| {
        let candidate = tools.join("node_modules").join(".bin").join(name);
        candidate.is_file().then_some(candidate)
    };
    if let Some(dir) = std::env::var_os("AWX_TOOLS_DIR")
        && let Some(found) = in_tools(Path::new(&dir))
    {
        return Some(found);
    }
    let start_points =
        [std::env::current_dir().ok(), Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")))];
    for start in start_points.into_iter().flatten() {
        if let Some(found) = start.ancestors().find_map(|dir| in_tools(&dir.join("tools"))) {
            return Some(found);
        }
    }
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path).map(|dir| dir.join(name)).find(|candidate| candidate.is_file())
    })
}

impl Anvil {
    /// Starts anvil on loopback and waits until it listens.
    pub async fn spawn(options: AnvilOptions) -> Result<Self, ChainError> {
        tokio::task::spawn_blocking(move || Self::spawn_blocking(&options))
            .await
            .map_err(|error| ChainError::Node(format!("anvil start task failed: {error}")))?
    }

    fn spawn_blocking(options: &AnvilOptions) -> Result<Self, ChainError> {
        let binary = find_tool("anvil").ok_or_else(|| {
            ChainError::Node("anvil is not installed: run `make setup` (it installs tools/)".into())
        })?;
        let config_path = std::env::temp_dir().join(format!(
            "awx-anvil-{}-{}.json",
            std::process::id(),
            alloy::primitives::B256::random()
        ));
        let mut command = Command::new(&binary);
        command
            .args(["--host", "127.0.0.1", "--port", &options.port.to_string()])
            .args(["--chain-id", &options.chain_id.to_string()])
            .args(["--accounts", &options.accounts.to_string()])
            .arg("--config-out")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(seconds) = options.block_time_seconds {
            command.args(["--block-time", &seconds.to_string()]);
        }
        let mut child = command.spawn().map_err(|error| {
            ChainError::Node(format!("cannot start {}: {error}", binary.display()))
        })?;
        let stdout =
            child.stdout.take().ok_or_else(|| ChainError::Node("no anvil stdout".into()))?;
        let (listening_tx, listening_rx) = mpsc::channel();
        // anvil logs every request to stdout; this thread reports the listening address and
        // then keeps draining the pipe so anvil never blocks on a full pipe. It ends when anvil
        // exits and the pipe closes.
        std::thread::spawn(move || {
            let mut listening_tx = Some(listening_tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(address) = line.trim().strip_prefix("Listening on ")
                    && let Some(sender) = listening_tx.take()
                {
                    let _ = sender.send(address.trim().to_owned());
                }
            }
        });
        let address = match listening_rx.recv_timeout(STARTUP_TIMEOUT) {
            Ok(address) => address,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(ChainError::Node("anvil did not start listening in time".into()));
            }
        };
        let keys = read_dev_keys(&config_path);
        let _ = std::fs::remove_file(&config_path);
        let keys = match keys {
            Ok(keys) => keys,
            Err(error) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(error);
            }
        };
        Ok(Self { child, endpoint: format!("http://{address}"), chain_id: options.chain_id, keys })
    }

    /// The HTTP JSON-RPC endpoint (`http://127.0.0.1:<port>`).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The chain id.
    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// The funded development accounts' keys (anvil's default mnemonic accounts).
    pub fn dev_keys(&self) -> &[PrivateKeySigner] {
        &self.keys
    }

    /// The `index`-th development key.
    pub fn dev_key(&self, index: usize) -> Result<PrivateKeySigner, ChainError> {
        self.keys
            .get(index)
            .cloned()
            .ok_or_else(|| ChainError::Node(format!("anvil has no development account {index}")))
    }
}

fn read_dev_keys(path: &Path) -> Result<Vec<PrivateKeySigner>, ChainError> {
    let unreadable = |what: String| ChainError::Node(format!("anvil config output: {what}"));
    let text = std::fs::read_to_string(path).map_err(|error| unreadable(error.to_string()))?;
    let config: serde_json::Value =
        serde_json::from_str(&text).map_err(|error| unreadable(error.to_string()))?;
    let keys = config
        .get("private_keys")
        .and_then(serde_json::Value::as_array)
        .ok_or_else(|| unreadable("no private_keys".into()))?;
    keys.iter()
        .map(|key| {
            key.as_str()
                .and_then(|key| key.parse::<PrivateKeySigner>().ok())
                .ok_or_else(|| unreadable("a private key is malformed".into()))
        })
        .collect()
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
