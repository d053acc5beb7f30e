//! `awx dev`: the local platform.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use alloy::primitives::U256;
use alloy::signers::local::PrivateKeySigner;
use anyhow::Context as _;
use awx_chain::{Anvil, AnvilOptions, Token, connect_with_wallet, deploy_test_usdc};
use awx_types::Amount;
use serde::Serialize;

/// Options of `awx dev`.
#[derive(Debug, clap::Args)]
pub(crate) struct DevArgs {
    /// Loopback port of the development chain's JSON-RPC (0 picks a free port).
    #[arg(long, env = "AWX_DEV_CHAIN_PORT", default_value_t = 8545)]
    chain_port: u16,
    /// Chain id of the development chain.
    #[arg(long, env = "AWX_DEV_CHAIN_ID", default_value_t = 31_337)]
    chain_id: u64,
    /// How many development wallets to fund with the token (accounts 1..=N; account 0 deploys).
    #[arg(long, default_value_t = 4)]
    wallets: u16,
    /// How much token each wallet gets, in dollars.
    #[arg(long, default_value = "1000.00")]
    wallet_funds: String,
    /// Where to write the chain's facts for scripts; its directory keeps the development keys
    /// and the services' log (`services.log`).
    #[arg(long, default_value = ".awx/devchain.json")]
    state_file: PathBuf,
    /// Start, print and exit at once instead of running until interrupted (for smoke tests).
    #[arg(long)]
    exit_after_start: bool,
    /// The platform's database; created if missing.
    #[arg(
        long,
        env = "AWX_DATABASE_URL",
        default_value = "postgres://postgres:postgres@127.0.0.1:5432/awx"
    )]
    database_url: String,
    /// Redis.
    #[arg(long, env = "AWX_REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    /// Where the gateway listens.
    #[arg(long, env = "AWX_GATEWAY_ADDR", default_value = "127.0.0.1:8080")]
    gateway_addr: String,
    /// Where the ledger's health and metrics endpoints listen.
    #[arg(long, env = "AWX_LEDGER_OPS_ADDR", default_value = "127.0.0.1:8081")]
    ledger_ops_addr: String,
    /// The key prefix of this deployment in Redis.
    #[arg(long, default_value = "awx")]
    bus_prefix: String,
    /// Where the settlement service's health and metrics endpoints listen.
    #[arg(long, env = "AWX_SETTLEMENT_OPS_ADDR", default_value = "127.0.0.1:8082")]
    settlement_ops_addr: String,
    /// Where the policy service's health and metrics endpoints listen.
    #[arg(long, env = "AWX_POLICY_OPS_ADDR", default_value = "127.0.0.1:8083")]
    policy_ops_addr: String,
    /// Where the demo paid API listens.
    #[arg(long, env = "AWX_DEMO_ADDR", default_value = "127.0.0.1:8090")]
    demo_addr: String,
    /// Run every service as its own OS process from its own binary and configuration file, as
    /// deployed (`--replicas` of each, two gateways), instead of all in this process. The
    /// binaries must be built (`make run-services` does it).
    #[arg(long)]
    processes: bool,
    /// With `--processes`: replicas of the signer, the ledger, the settlement service and the
    /// policy service.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=8))]
    replicas: u16,
    /// With `--processes`: where the second gateway listens.
    #[arg(long, env = "AWX_SECOND_GATEWAY_ADDR", default_value = "127.0.0.1:8088")]
    second_gateway_addr: String,
    /// Keep the database of an earlier run. By default each run starts from an empty database,
    /// because the development chain starts empty too (balances would disagree otherwise).
    #[arg(long)]
    keep_database: bool,
}

/// What `awx dev` started, as written to the state file.
#[derive(Debug, Serialize)]
struct DevChainState {
    rpc_url: String,
    chain_id: u64,
    network: String,
    token: TokenState,
    deployer: WalletState,
    wallets: Vec<WalletState>,
}

#[derive(Debug, Serialize)]
struct TokenState {
    address: String,
    symbol: &'static str,
    decimals: u8,
    eip712_name: &'static str,
    eip712_version: &'static str,
}

#[derive(Debug, Serialize)]
struct WalletState {
    address: String,
    /// A well-known anvil development key: never use it anywhere real.
    private_key: String,
    token_balance: String,
}

const TOKEN_NAME: &str = "USD Coin";
const TOKEN_VERSION: &str = "2";
const TOKEN_DECIMALS: u8 = 6;

/// The development key-encryption key of the signer, kept in `<state_dir>/dev-kek` (created on
/// first use, readable by the owner only). Development only: production reads its KEK from a
/// secret store.
fn dev_kek(state_dir: &Path) -> anyhow::Result<String> {
    let path = state_dir.join("dev-kek");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        return Ok(existing.trim().to_owned());
    }
    let kek = alloy::primitives::hex::encode(alloy::primitives::B256::random());
    crate::write_secret_file(&path, kek.as_bytes())?;
    Ok(kek)
}

/// The policy service's development decision key, kept in `<state_dir>/dev-decision-key`
/// (readable by the owner only).
fn dev_decision_key(state_dir: &Path) -> anyhow::Result<String> {
    let path = state_dir.join("dev-decision-key");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        return Ok(existing.trim().to_owned());
    }
    let key = awx_decision::DecisionKey::generate();
    let seed = secrecy::ExposeSecret::expose_secret(&key.seed_hex()).to_owned();
    crate::write_secret_file(&path, seed.as_bytes())?;
    Ok(seed)
}

impl DevArgs {
    /// The directory of the state file: development keys and the log live there.
    fn state_dir(&self) -> PathBuf {
        self.state_file
            .parent()
            .filter(|dir| !dir.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
    }

    /// Where the services' logs go under `awx dev`.
    pub(crate) fn log_file(&self) -> PathBuf {
        self.state_dir().join("services.log")
    }

    /// Every address `awx dev` listens on, with the option that sets it.
    fn listeners(&self) -> Vec<Listener> {
        let mut listeners = Vec::new();
        if self.chain_port != 0 {
            listeners.push(Listener {
                addr: format!("127.0.0.1:{}", self.chain_port),
                what: "the development chain",
                option: "--chain-port (AWX_DEV_CHAIN_PORT)",
            });
        }
        listeners.extend([
            Listener {
                addr: self.gateway_addr.clone(),
                what: "the gateway",
                option: "--gateway-addr (AWX_GATEWAY_ADDR)",
            },
            Listener {
                addr: self.ledger_ops_addr.clone(),
                what: "the ledger's health endpoints",
                option: "--ledger-ops-addr (AWX_LEDGER_OPS_ADDR)",
            },
            Listener {
                addr: self.settlement_ops_addr.clone(),
                what: "the settlement service's health endpoints",
                option: "--settlement-ops-addr (AWX_SETTLEMENT_OPS_ADDR)",
            },
            Listener {
                addr: self.policy_ops_addr.clone(),
                what: "the policy service's health endpoints",
                option: "--policy-ops-addr (AWX_POLICY_OPS_ADDR)",
            },
            Listener {
                addr: self.demo_addr.clone(),
                what: "the demo API",
                option: "--demo-addr (AWX_DEMO_ADDR)",
            },
        ]);
        if self.processes {
            listeners.push(Listener {
                addr: self.second_gateway_addr.clone(),
                what: "the second gateway",
                option: "--second-gateway-addr (AWX_SECOND_GATEWAY_ADDR)",
            });
        }
        listeners
    }
}

/// An address `awx dev` listens on.
#[derive(Debug, Clone)]
pub(crate) struct Listener {
    /// `host:port`; port 0 picks a free port and is never busy.
    pub(crate) addr: String,
    /// What listens there.
    pub(crate) what: &'static str,
    /// The option (and variable) that moves it.
    pub(crate) option: &'static str,
}

/// Checks that every fixed port is free (by binding it and letting it go), and that no two
/// listeners share one, so a busy port is reported before anything is started or dropped. The
/// error names each busy address, what needs it and the option that moves it.
pub(crate) fn check_ports_free(listeners: &[Listener]) -> anyhow::Result<()> {
    let mut problems = Vec::new();
    let mut seen: Vec<(std::net::SocketAddr, &Listener)> = Vec::new();
    for listener in listeners {
        let addrs: Vec<std::net::SocketAddr> =
            match std::net::ToSocketAddrs::to_socket_addrs(listener.addr.as_str()) {
                Ok(addrs) => addrs.collect(),
                Err(error) => {
                    problems.push(format!(
                        "{} ({}): not an address: {error}; set {}",
                        listener.addr, listener.what, listener.option
                    ));
                    continue;
                }
            };
        for addr in addrs.into_iter().filter(|addr| addr.port() != 0) {
            if let Some((_, first)) = seen.iter().find(|(other, _)| *other == addr) {
                problems.push(format!(
                    "{addr} is given to both {} and {}; set {} to another port",
                    first.what, listener.what, listener.option
                ));
                continue;
            }
            seen.push((addr, listener));
            if let Err(error) = std::net::TcpListener::bind(addr) {
                problems.push(format!(
                    "port {} ({addr}, {}) is not free: {error}; stop what listens there \
                     (`ss -ltnp 'sport = :{}'` shows it) or set {} to another port",
                    addr.port(),
                    listener.what,
                    addr.port(),
                    listener.option
                ));
            }
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    anyhow::bail!(
        "awx dev cannot listen where it needs to; nothing was started and the database was not \
         touched:\n  {}",
        problems.join("\n  ")
    )
}

fn dev_key_hex(key: &PrivateKeySigner) -> String {
    format!("0x{}", alloy::primitives::hex::encode(key.to_bytes()))
}

pub(crate) async fn run(args: DevArgs) -> anyhow::Result<()> {
    let funds = Amount::from_decimal_str(&args.wallet_funds, TOKEN_DECIMALS)
        .context("--wallet-funds must be a dollar amount such as 1000.00")?;
    // Before the chain starts and before the database is dropped.
    check_ports_free(&args.listeners())?;
    let anvil = Anvil::spawn(AnvilOptions {
        chain_id: args.chain_id,
        port: args.chain_port,
        accounts: args.wallets.saturating_add(1),
        ..AnvilOptions::default()
    })
    .await
    .context("starting the development chain")?;
    let deployer = anvil.dev_key(0)?;
    let provider = connect_with_wallet(anvil.endpoint(), deployer.clone())?;
    let token: Token = deploy_test_usdc(&provider, TOKEN_NAME, TOKEN_VERSION)
        .await
        .context("deploying the token")?;
    // Multicall3's ABI at its canonical address, as on Base, Ethereum and Polygon: the batch
    // settlement worker sends every net transfer of a run through it.
    let batch_contract =
        awx_chain::batch::install_multicall3(&provider).await.context("installing Multicall3")?;
    // The platform's fees go to the deployer's address (the development platform operator).
    let fee_address = deployer.address();
    let mut wallets = Vec::new();
    for key in anvil.dev_keys().iter().skip(1).take(usize::from(args.wallets)) {
        token.mint(key.address(), U256::from(funds.atomic())).await.context("funding a wallet")?;
        let balance = token.balance_of(key.address()).await?;
        let balance = Amount::from_atomic(balance.try_into().context("balance fits 128 bits")?);
        wallets.push(WalletState {
            address: key.address().to_checksum(None),
            private_key: dev_key_hex(key),
            token_balance: balance.to_decimal_string(TOKEN_DECIMALS)?,
        });
    }
    let state = DevChainState {
        rpc_url: anvil.endpoint().to_owned(),
        chain_id: anvil.chain_id(),
        network: format!("eip155:{}", anvil.chain_id()),
        token: TokenState {
            address: token.address().to_checksum(None),
            symbol: "USDC",
            decimals: TOKEN_DECIMALS,
            eip712_name: TOKEN_NAME,
            eip712_version: TOKEN_VERSION,
        },
        deployer: WalletState {
            address: deployer.address().to_checksum(None),
            private_key: dev_key_hex(&deployer),
            token_balance: "0.00".into(),
        },
        wallets,
    };
    // It holds the (public, anvil) development keys: owner-only like every key file.
    crate::write_secret_file(&args.state_file, serde_json::to_string_pretty(&state)?.as_bytes())?;
    print_summary(&state, &args.state_file)?;

    let dev_token = awx_x402::TokenInfo {
        network: awx_x402::Network::evm(state.chain_id),
        address: token.address(),
        symbol: "USDC".into(),
        decimals: TOKEN_DECIMALS,
        eip712_name: TOKEN_NAME.into(),
        eip712_version: TOKEN_VERSION.into(),
    };
    let state_dir = args.state_dir();
    if !args.keep_database {
        crate::platform::reset_database(&args.database_url)
            .await
            .context("starting from an empty database")?;
    }
    let platform_args = crate::platform::PlatformArgs {
        database_url: args.database_url.clone(),
        redis_url: args.redis_url.clone(),
        bus_prefix: args.bus_prefix.clone(),
        gateway_addr: args.gateway_addr.clone(),
        ledger_ops_addr: args.ledger_ops_addr.clone(),
        settlement_ops_addr: args.settlement_ops_addr.clone(),
        policy_ops_addr: args.policy_ops_addr.clone(),
        tokens: vec![dev_token],
        networks: vec![awx_settlement_service::config::NetworkSettings {
            network: state.network.clone(),
            rpc_url: state.rpc_url.clone(),
            receipt_wait_ms: 15_000,
            faucet: true,
            faucet_token: Some(token.address()),
            confirmations: 0,
            watch: awx_settlement_service::config::NetworkWatch {
                from_block: Some(0),
                ..Default::default()
            },
        }],
        allowed_contracts: std::collections::BTreeMap::from([(
            state.network.clone(),
            vec![token.address(), batch_contract],
        )]),
        signer_kek_hex: dev_kek(&state_dir)?,
        decision_key_hex: dev_decision_key(&state_dir)?,
        default_chain: state.network.clone(),
        allow_private_targets: true,
        policy_upstream_timeout_ms: 5_000,
        policy_expiry_grace_seconds: 60,
        state_dir,
        // Short settings, so net settlement is seen within a couple of minutes.
        batch: awx_settlement_service::config::BatchSettings {
            interval_seconds: 10,
            threshold_usd: "1.00".into(),
            max_delay_seconds: 30,
            eligibility_margin_seconds: 2,
            fee_address: Some(fee_address),
            contract: batch_contract,
            replace_after_seconds: 30,
            ..awx_settlement_service::config::BatchSettings::default()
        },
        watch: awx_settlement_service::config::WatchSettings {
            interval_ms: 1_000,
            ..Default::default()
        },
    };
    let services = if args.processes {
        Running::Processes(
            crate::processes::ProcessPlatform::start(
                platform_args,
                crate::processes::ProcessOptions {
                    bin_dir: crate::processes::own_bin_dir()?,
                    run_dir: args.state_dir().join("processes"),
                    replicas: usize::from(args.replicas),
                    gateway_addrs: vec![
                        args.gateway_addr.clone(),
                        args.second_gateway_addr.clone(),
                    ],
                    claim_idle_ms: None,
                },
            )
            .await
            .context("starting the services as processes")?,
        )
    } else {
        Running::InProcess(
            crate::platform::start(platform_args).await.context("starting the services")?,
        )
    };
    // Relayers pay gas for settlements (give them some of the development chain's ether) and
    // mint for the faucet.
    for relayer in services.relayers() {
        awx_chain::send_native(&provider, *relayer, U256::from(10u128.pow(19)))
            .await
            .context("funding a relayer")?;
        token.configure_minter(*relayer, true).await.context("making a relayer a minter")?;
    }
    services.print_summary()?;
    let demo_stop = tokio_util::sync::CancellationToken::new();
    let (gateway_url, admin_key) = services.gateway_and_admin_key();
    let demo = crate::walkthrough::set_up(
        &gateway_url,
        &admin_key,
        crate::walkthrough::DemoChain {
            network: state.network.clone(),
            chain_id: state.chain_id,
            token: token.address(),
            token_name: TOKEN_NAME.into(),
            token_version: TOKEN_VERSION.into(),
            rpc_url: state.rpc_url.clone(),
        },
        &args.demo_addr,
        &args.state_dir(),
        demo_stop.clone(),
    )
    .await
    .context("setting up the demo")?;
    // Under `--processes` each process has its own log in that directory.
    let logs = if args.processes {
        args.state_dir().join("processes").join("logs")
    } else {
        args.log_file()
    };
    crate::walkthrough::print(&demo, &logs)?;
    if !args.exit_after_start {
        awx_service_kit::shutdown::signal().await;
    }
    demo_stop.cancel();
    let _ = demo.server.await;
    services.stop().await?;
    // The chain goes last: the token and the deployer's provider are dropped before it.
    drop(token);
    drop(provider);
    drop(anvil);
    Ok(())
}

/// The services `awx dev` started: in this process, or as processes.
#[derive(Debug)]
enum Running {
    InProcess(crate::platform::Platform),
    Processes(crate::processes::ProcessPlatform),
}

impl Running {
    fn relayers(&self) -> &[awx_x402::Address] {
        match self {
            Self::InProcess(platform) => &platform.relayers,
            Self::Processes(platform) => &platform.relayers,
        }
    }

    /// The (first) gateway's URL and the development admin key.
    fn gateway_and_admin_key(&self) -> (String, String) {
        match self {
            Self::InProcess(platform) => (platform.gateway_url.clone(), platform.admin_key.clone()),
            Self::Processes(platform) => {
                (platform.gateway_urls[0].clone(), platform.admin_key.clone())
            }
        }
    }

    fn print_summary(&self) -> anyhow::Result<()> {
        match self {
            Self::InProcess(platform) => platform.print_summary(),
            Self::Processes(platform) => {
                let mut out = std::io::stdout().lock();
                writeln!(out, "awx dev --processes: every service runs as its own process")?;
                for (name, pid, addr, log) in platform.processes() {
                    let pid = pid.map_or_else(|| "-".to_owned(), |pid| pid.to_string());
                    let addr = addr.unwrap_or_else(|| "(no port)".into());
                    writeln!(out, "  {name:<13} pid {pid:<8} {addr:<22} log {}", log.display())?;
                }
                for url in &platform.gateway_urls {
                    writeln!(out, "  gateway   {url}   (docs {url}/docs)")?;
                }
                let file = platform.admin_key_file.display();
                let note = if platform.admin_key_new {
                    format!("new; saved in {file}")
                } else {
                    format!("from {file}")
                };
                writeln!(out, "  admin key {} ({note})", platform.admin_key)?;
                out.flush()?;
                Ok(())
            }
        }
    }

    async fn stop(self) -> anyhow::Result<()> {
        match self {
            Self::InProcess(platform) => platform.stop().await,
            Self::Processes(platform) => platform.stop().await,
        }
    }
}

fn print_summary(state: &DevChainState, state_file: &Path) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "awx dev: the development chain is up")?;
    writeln!(
        out,
        "  chain     {} (chain id {}) at {}",
        state.network, state.chain_id, state.rpc_url
    )?;
    writeln!(
        out,
        "  token     {} {} ({} decimals, EIP-712 \"{}\" version \"{}\")",
        state.token.symbol,
        state.token.address,
        state.token.decimals,
        state.token.eip712_name,
        state.token.eip712_version
    )?;
    writeln!(
        out,
        "  deployer  {} (owner and minter of the token; receives the platform's fees)",
        state.deployer.address
    )?;
    writeln!(
        out,
        "  batch     {} (Multicall3: net settlement batches)",
        awx_chain::batch::MULTICALL3_ADDRESS
    )?;
    for wallet in &state.wallets {
        writeln!(
            out,
            "  wallet    {}  {} USDC  key {}",
            wallet.address, wallet.token_balance, wallet.private_key
        )?;
    }
    writeln!(out, "  state     {}", state_file.display())?;
    writeln!(out, "The keys are anvil's public development keys: never use them on a real chain.")?;
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener(addr: String, what: &'static str) -> Listener {
        Listener { addr, what, option: "--some-addr (AWX_SOME_ADDR)" }
    }

    #[test]
    fn a_busy_port_is_named_with_what_needs_it_and_how_to_move_it() {
        let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = busy.local_addr().unwrap().port();
        let error = check_ports_free(&[
            listener("127.0.0.1:0".into(), "the demo API"),
            listener(format!("127.0.0.1:{port}"), "the gateway"),
        ])
        .unwrap_err()
        .to_string();
        assert!(error.contains(&format!("port {port} (127.0.0.1:{port}, the gateway)")), "{error}");
        assert!(error.contains("--some-addr (AWX_SOME_ADDR)"), "{error}");
        assert!(!error.contains("the demo API"), "port 0 is never busy: {error}");
        drop(busy);
        // Free once let go; port 0 listeners are always fine.
        check_ports_free(&[listener(format!("127.0.0.1:{port}"), "the gateway")]).unwrap();
    }

    #[test]
    fn two_listeners_on_one_port_are_refused() {
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = free.local_addr().unwrap().port();
        drop(free);
        let error = check_ports_free(&[
            listener(format!("127.0.0.1:{port}"), "the gateway"),
            listener(format!("127.0.0.1:{port}"), "the demo API"),
        ])
        .unwrap_err()
        .to_string();
        assert!(error.contains("both the gateway and the demo API"), "{error}");
    }

    #[test]
    fn every_listener_of_awx_dev_is_checked() {
        let argv = [
            "awx",
            "dev",
            "--chain-port",
            "1",
            "--gateway-addr",
            "h:2",
            "--ledger-ops-addr",
            "h:3",
            "--settlement-ops-addr",
            "h:4",
            "--policy-ops-addr",
            "h:5",
            "--demo-addr",
            "h:6",
        ];
        let cli = <crate::Cli as clap::Parser>::try_parse_from(argv).unwrap();
        let crate::Command::Dev(args) = cli.command else { panic!("not dev") };
        let addrs: Vec<String> = args.listeners().into_iter().map(|l| l.addr).collect();
        assert_eq!(addrs, ["127.0.0.1:1", "h:2", "h:3", "h:4", "h:5", "h:6"]);
    }
}
