//! `awx dev`: the local platform.

use std::io::Write as _;
use std::path::PathBuf;

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
    /// Where to write the chain's facts for scripts.
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
    #[arg(long, default_value = "127.0.0.1:8081")]
    ledger_ops_addr: String,
    /// The key prefix of this deployment in Redis.
    #[arg(long, default_value = "awx")]
    bus_prefix: String,
    /// Where the settlement service's health and metrics endpoints listen.
    #[arg(long, default_value = "127.0.0.1:8082")]
    settlement_ops_addr: String,
    /// Where the policy service's health and metrics endpoints listen.
    #[arg(long, default_value = "127.0.0.1:8083")]
    policy_ops_addr: String,
    /// Where the demo paid API listens.
    #[arg(long, default_value = "127.0.0.1:8090")]
    demo_addr: String,
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
fn dev_kek(state_dir: &std::path::Path) -> anyhow::Result<String> {
    let path = state_dir.join("dev-kek");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        return Ok(existing.trim().to_owned());
    }
    std::fs::create_dir_all(state_dir)?;
    let kek = alloy::primitives::hex::encode(alloy::primitives::B256::random());
    std::fs::write(&path, &kek).with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(kek)
}

/// The policy service's development decision key, kept in `<state_dir>/dev-decision-key`.
fn dev_decision_key(state_dir: &std::path::Path) -> anyhow::Result<String> {
    let path = state_dir.join("dev-decision-key");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        return Ok(existing.trim().to_owned());
    }
    std::fs::create_dir_all(state_dir)?;
    let key = awx_decision::DecisionKey::generate();
    let seed = secrecy::ExposeSecret::expose_secret(&key.seed_hex()).to_owned();
    std::fs::write(&path, &seed).with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(seed)
}

fn dev_key_hex(key: &PrivateKeySigner) -> String {
    format!("0x{}", alloy::primitives::hex::encode(key.to_bytes()))
}

pub(crate) async fn run(args: DevArgs) -> anyhow::Result<()> {
    let funds = Amount::from_decimal_str(&args.wallet_funds, TOKEN_DECIMALS)
        .context("--wallet-funds must be a dollar amount such as 1000.00")?;
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
    if let Some(dir) = args.state_file.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&args.state_file, serde_json::to_string_pretty(&state)?)
        .with_context(|| format!("writing {}", args.state_file.display()))?;
    print_summary(&state, &args.state_file)?;

    let dev_token = awx_x402::TokenInfo {
        network: awx_x402::Network::evm(state.chain_id),
        address: token.address(),
        symbol: "USDC".into(),
        decimals: TOKEN_DECIMALS,
        eip712_name: TOKEN_NAME.into(),
        eip712_version: TOKEN_VERSION.into(),
    };
    let state_dir = args
        .state_file
        .parent()
        .map_or_else(|| PathBuf::from(".awx"), std::path::Path::to_path_buf);
    if !args.keep_database {
        crate::platform::reset_database(&args.database_url)
            .await
            .context("starting from an empty database")?;
    }
    let services = crate::platform::start(crate::platform::PlatformArgs {
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
    })
    .await
    .context("starting the services")?;
    // Relayers pay gas for settlements (give them some of the development chain's ether) and
    // mint for the faucet.
    for relayer in &services.relayers {
        awx_chain::send_native(&provider, *relayer, U256::from(10u128.pow(19)))
            .await
            .context("funding a relayer")?;
        token.configure_minter(*relayer, true).await.context("making a relayer a minter")?;
    }
    services.print_summary()?;
    let demo_stop = tokio_util::sync::CancellationToken::new();
    let demo = crate::walkthrough::set_up(
        &services,
        crate::walkthrough::DemoChain {
            network: state.network.clone(),
            chain_id: state.chain_id,
            token: token.address(),
            token_name: TOKEN_NAME.into(),
            token_version: TOKEN_VERSION.into(),
            rpc_url: state.rpc_url.clone(),
        },
        &args.demo_addr,
        demo_stop.clone(),
    )
    .await
    .context("setting up the demo")?;
    crate::walkthrough::print(&demo)?;
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

fn print_summary(state: &DevChainState, state_file: &std::path::Path) -> anyhow::Result<()> {
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
