//! `awx facilitator bench`: the facilitator for outside payers, measured through the gateway of
//! a running `awx dev` (see `scripts/bench-facilitator.sh` and docs/benchmarks.md).
//!
//! - `verify`: workers post valid payments of outside payers to `/verify` for a while (each
//!   answer must be `isValid: true`; each worker signs one payment and posts it again and again,
//!   as verify does not use the nonce up); throughput and latency. Each verify is the offline
//!   checks, the wallet lookup, the signer's check and a simulation on the chain.
//! - `verify-own`: the same with our own agents' payments (one agent per worker pays the demo
//!   route once with `/x402/pay`; its `PAYMENT-SIGNATURE` is what is verified): no chain call,
//!   the gateway compares the payment with what the policy service announced it issued.
//!
//! With `--platform-pid` and `--database-url`, each measured phase also prints its cost per
//! operation ([`crate::bench_cost`]): CPU per process group, and Postgres transactions and rows
//! written.
//! - `settle-own`: our own agents' payments (64 per worker, made first with `/x402/pay`,
//!   `--own-payments` changes it) settled once each, by the workers at once: each is a capture
//!   in the ledger and a queued net settlement item, no chain call; every answer must be
//!   `success: true` and deferred.
//! - `settle`: settles one at a time (latency from request to answer, receipt included), then
//!   workers settling concurrently (throughput). Each answer must be `success: true`, and the
//!   payee's balance on chain must have risen by exactly what was settled.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use alloy::primitives::U256;
use alloy::providers::Provider as _;
use alloy::signers::local::PrivateKeySigner;
use anyhow::{Context as _, bail, ensure};
use awx_chain::Token;
use awx_x402::{
    Address, Bytes, Eip3009Authorization, Eip3009Payload, ExactEvmPayload, PaymentPayload,
    PaymentRequirements, TokenDomain,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::bench::{say, summary, timed_workers};

/// What to measure.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum BenchMode {
    /// Verify throughput and latency, outside payers.
    Verify,
    /// Verify throughput and latency, our own agents' payments.
    VerifyOwn,
    /// Settle latency (one at a time), then concurrent settle throughput.
    Settle,
    /// Settle (capture) throughput of our own agents' payments, made first with `/x402/pay`.
    SettleOwn,
}

/// Options of `awx facilitator bench`.
#[derive(Debug, clap::Args)]
pub(crate) struct BenchArgs {
    /// What to measure.
    #[arg(long, value_enum)]
    mode: BenchMode,
    /// The gateway of the running platform.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    gateway: String,
    /// The state file `awx dev` wrote (chain, token, deployer).
    #[arg(long, default_value = ".awx/devchain.json")]
    state_file: std::path::PathBuf,
    /// Concurrent workers.
    #[arg(long, default_value_t = 16)]
    workers: usize,
    /// How long the concurrent phase runs.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Settles measured one at a time (settle mode).
    #[arg(long, default_value_t = 50)]
    sequential: usize,
    /// The demo paid route our agents pay (verify-own mode).
    #[arg(long, default_value = "http://127.0.0.1:8090/v1/weather")]
    demo_url: String,
    /// Payments each worker settles (settle-own mode).
    #[arg(long, default_value_t = 64)]
    own_payments: usize,
    /// The platform's process, whose CPU is counted (with `--database-url`).
    #[arg(long)]
    platform_pid: Option<u32>,
    /// The platform's database, whose transactions and writes are counted (with
    /// `--platform-pid`).
    #[arg(long)]
    database_url: Option<String>,
}

#[derive(Debug, Deserialize)]
struct DevState {
    rpc_url: String,
    chain_id: u64,
    network: String,
    token: TokenState,
    deployer: Wallet,
}

#[derive(Debug, Deserialize)]
struct TokenState {
    address: Address,
    eip712_name: String,
    eip712_version: String,
}

#[derive(Debug, Deserialize)]
struct Wallet {
    private_key: String,
}

/// What the workers share.
struct Bench {
    http: reqwest::Client,
    gateway: String,
    key: String,
    domain: TokenDomain,
    requirements: PaymentRequirements,
    amount: u128,
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs())
}

impl Bench {
    fn payment(&self, payer: &PrivateKeySigner) -> anyhow::Result<Value> {
        let authorization = Eip3009Authorization {
            from: payer.address(),
            to: self.requirements.pay_to.parse()?,
            value: U256::from(self.amount),
            valid_after: U256::ZERO,
            valid_before: U256::from(now().saturating_add(3_600)),
            nonce: awx_x402::eip3009::random_nonce(),
        };
        let signature = authorization.sign(payer, &self.domain)?;
        let payload = PaymentPayload {
            x402_version: 2,
            resource: None,
            accepted: self.requirements.clone(),
            payload: ExactEvmPayload::Eip3009(Eip3009Payload {
                signature: Bytes::copy_from_slice(&signature.to_bytes()),
                authorization,
            })
            .to_json(),
            extensions: None,
            other: serde_json::Map::default(),
        };
        Ok(
            json!({"x402Version": 2, "paymentPayload": payload, "paymentRequirements": self.requirements}),
        )
    }

    /// Posts to the facilitator; returns the answer and how long it took.
    async fn call(&self, action: &str, body: &Value) -> anyhow::Result<(Value, Duration)> {
        let started = Instant::now();
        let response = self
            .http
            .post(format!("{}/api/v1/x402/facilitator/{action}", self.gateway))
            .header("x-api-key", &self.key)
            .json(body)
            .send()
            .await?;
        let status = response.status();
        let answer: Value = response.json().await?;
        let took = started.elapsed();
        ensure!(status.is_success(), "{action}: HTTP {status}: {answer}");
        Ok((answer, took))
    }
}

async fn provider_key(
    http: &reqwest::Client,
    gateway: &str,
    state_dir: &std::path::Path,
) -> anyhow::Result<String> {
    let admin = std::fs::read_to_string(state_dir.join("dev-admin-key"))
        .context("reading the development admin key (is `awx dev` running?)")?;
    let created: Value = http
        .post(format!("{gateway}/api/v1/keys"))
        .header("x-api-key", admin.trim())
        .json(&json!({"name": "facilitator bench", "scopes": ["provider"]}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    created["api_key"].as_str().map(str::to_owned).context("no api_key in the answer")
}

/// Waits until every relayer the facilitator lists holds native currency (`awx dev` funds them
/// just after the services start).
async fn relayers_funded(bench: &Bench, rpc: &alloy::providers::DynProvider) -> anyhow::Result<()> {
    for _ in 0..100 {
        let supported: Value = bench
            .http
            .get(format!("{}/api/v1/x402/facilitator/supported", bench.gateway))
            .header("x-api-key", &bench.key)
            .send()
            .await?
            .json()
            .await?;
        let relayers: Vec<Address> =
            serde_json::from_value(supported["signers"]["eip155:*"].clone()).unwrap_or_default();
        let mut funded = !relayers.is_empty();
        for relayer in &relayers {
            funded &= rpc.get_balance(*relayer).await? > U256::ZERO;
        }
        if funded {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the relayers were not funded")
}

pub(crate) async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let state: DevState = serde_json::from_str(
        &std::fs::read_to_string(&args.state_file)
            .with_context(|| format!("reading {}", args.state_file.display()))?,
    )?;
    let deployer: PrivateKeySigner =
        state.deployer.private_key.parse().context("the deployer key")?;
    let rpc = awx_chain::connect_with_wallet(&state.rpc_url, deployer)?;
    let token = Token::at(state.token.address, rpc.clone());
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.workers.saturating_mul(2))
        .build()?;
    let state_dir = args
        .state_file
        .parent()
        .map_or_else(|| std::path::PathBuf::from(".awx"), std::path::Path::to_path_buf);
    let key = provider_key(&http, &args.gateway, &state_dir).await?;
    let payee = Address::random();
    let amount: u128 = 10_000;
    let requirements: PaymentRequirements = serde_json::from_value(json!({
        "scheme": "exact", "network": state.network, "amount": amount.to_string(),
        "asset": state.token.address.to_checksum(None), "payTo": payee.to_checksum(None),
        "maxTimeoutSeconds": 120,
        "extra": {"name": state.token.eip712_name, "version": state.token.eip712_version}
    }))?;
    let bench = Arc::new(Bench {
        http,
        gateway: args.gateway.clone(),
        key,
        domain: TokenDomain {
            name: state.token.eip712_name.clone(),
            version: state.token.eip712_version.clone(),
            chain_id: state.chain_id,
            verifying_contract: state.token.address,
        },
        requirements,
        amount,
    });
    relayers_funded(&bench, &rpc).await?;
    // One payer per worker, each holding plenty.
    let mut payers = Vec::new();
    for _ in 0..args.workers.max(1) {
        let payer = PrivateKeySigner::random();
        token.mint(payer.address(), U256::from(1_000_000_000_000u128)).await.context("minting")?;
        payers.push(payer);
    }
    say(&format!(
        "facilitator bench: {} through {}, {} workers, chain {} at {}",
        match args.mode {
            BenchMode::Verify => "verify (outside payers)",
            BenchMode::VerifyOwn => "verify (our agents' payments)",
            BenchMode::Settle => "settle",
            BenchMode::SettleOwn => "settle (our agents' payments)",
        },
        args.gateway,
        args.workers,
        state.network,
        state.rpc_url
    ))?;
    let cost = match (args.platform_pid, &args.database_url) {
        (Some(pid), Some(url)) => Some(crate::bench_cost::Cost::new(pid, url.clone())?),
        _ => None,
    };
    match args.mode {
        BenchMode::Verify | BenchMode::VerifyOwn => {
            let bodies = if matches!(args.mode, BenchMode::Verify) {
                payers.iter().map(|payer| bench.payment(payer)).collect::<anyhow::Result<_>>()?
            } else {
                own_payments(&bench, &state_dir, &args.demo_url, args.workers, 1)
                    .await?
                    .into_iter()
                    .flatten()
                    .collect()
            };
            // Warm-up: connections, caches.
            for body in &bodies {
                let (answer, _) = bench.call("verify", body).await?;
                ensure!(answer["isValid"] == true, "verify failed: {answer}");
            }
            let before = match &cost {
                Some(cost) => Some(cost.settle().await?),
                None => None,
            };
            let (samples, wall) = verify_concurrently(&bench, bodies, args.seconds).await?;
            let count = samples.len();
            say(&summary("verify (concurrent)", samples, wall))?;
            if let (Some(cost), Some(before)) = (&cost, before) {
                let after = cost.settle().await?;
                for line in cost.report("verify", &before, &after, count) {
                    say(&line)?;
                }
            }
        }
        BenchMode::SettleOwn => {
            let started = Instant::now();
            let bodies =
                own_payments(&bench, &state_dir, &args.demo_url, args.workers, args.own_payments)
                    .await?;
            let made: usize = bodies.iter().map(Vec::len).sum();
            say(&format!(
                "settle-own: {made} payments made in {:.1} s",
                started.elapsed().as_secs_f64()
            ))?;
            let before = match &cost {
                Some(cost) => Some(cost.settle().await?),
                None => None,
            };
            let (samples, wall) = settle_each_once(&bench, bodies).await?;
            let count = samples.len();
            ensure!(count == made, "{count} settles for {made} payments");
            say(&summary("settle, our agents' payments (concurrent)", samples, wall))?;
            if let (Some(cost), Some(before)) = (&cost, before) {
                let after = cost.settle().await?;
                for line in cost.report("settle-own", &before, &after, count) {
                    say(&line)?;
                }
            }
        }
        BenchMode::Settle => {
            let before = token.balance_of(payee).await?;
            let mut samples = Vec::new();
            let started = Instant::now();
            for index in 0..args.sequential {
                let payer = &payers[index % payers.len()];
                let (answer, took) = bench.call("settle", &bench.payment(payer)?).await?;
                ensure!(answer["success"] == true, "settle failed: {answer}");
                samples.push(took);
            }
            let sequential = samples.len();
            say(&summary("settle (one at a time)", samples, started.elapsed()))?;
            let (samples, wall) = concurrent(&bench, &payers, "settle", args.seconds).await?;
            let settled = sequential.saturating_add(samples.len());
            say(&summary("settle (concurrent)", samples, wall))?;
            let after = token.balance_of(payee).await?;
            let expected = U256::from(amount).saturating_mul(U256::from(settled));
            ensure!(
                after.saturating_sub(before) == expected,
                "the payee received {} for {settled} settles",
                after.saturating_sub(before)
            );
            say(&format!("payee balance rose by exactly {settled} x {amount} atomic units"))?;
        }
    }
    Ok(())
}

/// Each worker verifies its own body again and again until the time is up; every answer must be
/// `isValid: true`.
async fn verify_concurrently(
    bench: &Arc<Bench>,
    bodies: Vec<Value>,
    seconds: u64,
) -> anyhow::Result<(Vec<Duration>, Duration)> {
    let states = bodies.into_iter().map(|body| (bench.clone(), Arc::new(body))).collect();
    timed_workers(states, seconds, move |(bench, body)| async move {
        let (answer, took) = bench.call("verify", &body).await?;
        ensure!(answer["isValid"] == true, "verify failed: {answer}");
        Ok(took)
    })
    .await
}

/// Each worker settles each of its bodies once, all workers at once; every answer must be a
/// deferred success (a capture, not a replay).
async fn settle_each_once(
    bench: &Arc<Bench>,
    bodies: Vec<Vec<Value>>,
) -> anyhow::Result<(Vec<Duration>, Duration)> {
    let started = Instant::now();
    let tasks: Vec<_> = bodies
        .into_iter()
        .map(|bodies| {
            let bench = bench.clone();
            tokio::spawn(async move {
                let mut samples = Vec::new();
                for body in bodies {
                    let (answer, took) = bench.call("settle", &body).await?;
                    let awx = &answer["extensions"]["awx"];
                    ensure!(
                        answer["success"] == true
                            && awx["settlement"] == "deferred"
                            && awx.get("replay").is_none(),
                        "settle failed: {answer}"
                    );
                    samples.push(took);
                }
                anyhow::Ok(samples)
            })
        })
        .collect();
    let mut samples = Vec::new();
    for task in tasks {
        samples.extend(task.await??);
    }
    Ok((samples, started.elapsed()))
}

/// `per_agent` payments of our own for each of `agents` agents (open policy, funded by the
/// admin), each made by paying the demo route with `/x402/pay`, the agents at once; a body is
/// the payment's `PAYMENT-SIGNATURE` with the offer it accepted, as a facilitator request.
async fn own_payments(
    bench: &Bench,
    state_dir: &std::path::Path,
    demo_url: &str,
    agents: usize,
    per_agent: usize,
) -> anyhow::Result<Vec<Vec<Value>>> {
    let admin = std::fs::read_to_string(state_dir.join("dev-admin-key"))
        .context("reading the development admin key (is `awx dev` running?)")?;
    let admin = admin.trim();
    let post = |path: String, key: String, body: Value| async move {
        let response = bench
            .http
            .post(format!("{}{path}", bench.gateway))
            .header("x-api-key", key)
            .json(&body)
            .send()
            .await?;
        let status = response.status();
        let answer: Value = response.json().await?;
        ensure!(status.is_success(), "POST {path}: HTTP {status}: {answer}");
        anyhow::Ok(answer)
    };
    let created = post(
        "/api/v1/keys".into(),
        admin.into(),
        json!({"name": "facilitator bench agents", "scopes": ["agent"]}),
    )
    .await?;
    let agent_key = created["api_key"].as_str().context("no api_key")?.to_owned();
    let mut ids = Vec::new();
    for index in 0..agents.max(1) {
        let agent = post(
            "/api/v1/agents".into(),
            admin.into(),
            json!({"name": format!("facilitator-bench-{index}")}),
        )
        .await?;
        let id = agent["id"].as_str().context("no agent id")?.to_owned();
        post(format!("/api/v1/agents/{id}/fund"), admin.into(), json!({"amount": "100.00"}))
            .await?;
        ids.push(id);
    }
    let pay_all = ids.iter().map(|id| {
        let (post, agent_key) = (&post, &agent_key);
        async move {
            let mut bodies = Vec::new();
            for _ in 0..per_agent {
                let paid = post(
                    "/api/v1/x402/pay".into(),
                    agent_key.clone(),
                    json!({"agent_id": id, "target_url": demo_url}),
                )
                .await?;
                ensure!(paid["status"] == "completed", "pay: {paid}");
                let signature =
                    paid["payment_signature"].as_str().context("no payment_signature")?;
                let awx_x402::AnyPaymentPayload::V2(payload) =
                    awx_x402::header::decode_payment_payload(signature)?
                else {
                    bail!("the demo route was paid with a v1 payment");
                };
                bodies.push(json!({
                    "x402Version": 2,
                    "paymentPayload": payload,
                    "paymentRequirements": payload.accepted,
                }));
            }
            anyhow::Ok(bodies)
        }
    });
    futures::future::try_join_all(pay_all).await
}

/// Each worker pays with its own payer until the time is up; every answer must be a success.
async fn concurrent(
    bench: &Arc<Bench>,
    payers: &[PrivateKeySigner],
    action: &'static str,
    seconds: u64,
) -> anyhow::Result<(Vec<Duration>, Duration)> {
    let states = payers.iter().map(|payer| (bench.clone(), payer.clone())).collect();
    timed_workers(states, seconds, move |(bench, payer)| async move {
        let (answer, took) = bench.call(action, &bench.payment(&payer)?).await?;
        let ok =
            if action == "verify" { answer["isValid"] == true } else { answer["success"] == true };
        ensure!(ok, "{action} failed: {answer}");
        Ok(took)
    })
    .await
}
