//! `awx payments bench`: `/x402/pay` measured through the gateway of a running `awx dev` (see
//! `scripts/bench-pay.sh` and docs/benchmarks.md), against the demo paid API on loopback.
//!
//! Each worker has its own agent (open policy, funded from the faucet). With `--platform-pid`
//! and `--database-url`, each concurrent phase also prints its cost per payment
//! ([`crate::bench_cost`]: CPU per process group, the demo provider's included in the platform's;
//! Postgres transactions and rows written). Three phases:
//! - one payment at a time (latency of `/x402/pay`: the challenge fetched from the provider, the
//!   policy decided and reserved, the hold placed, the decision token minted and checked, the
//!   authorization signed);
//! - workers paying concurrently (sustained payments per second);
//! - workers paying and then retrying the provider with the signature, which verifies and
//!   settles through our facilitator (captures in the ledger): whole paid requests per second.
//!
//! Every answer must be a success, and every retry a 200.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use serde_json::{Value, json};

use crate::bench::{say, summary, timed_workers};

/// Options of `awx payments bench`.
#[derive(Debug, clap::Args)]
pub(crate) struct BenchArgs {
    /// The gateway of the running platform.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    gateway: String,
    /// The state file `awx dev` wrote (its directory holds the admin key).
    #[arg(long, default_value = ".awx/devchain.json")]
    state_file: std::path::PathBuf,
    /// The paid URL to pay for (the demo API's $0.01 route).
    #[arg(long, default_value = "http://127.0.0.1:8090/v1/weather")]
    target: String,
    /// Concurrent workers (one agent each).
    #[arg(long, default_value_t = 16)]
    workers: usize,
    /// How long each concurrent phase runs.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Payments measured one at a time.
    #[arg(long, default_value_t = 100)]
    sequential: usize,
    /// The platform's process, whose CPU is counted (with `--database-url`).
    #[arg(long)]
    platform_pid: Option<u32>,
    /// The platform's database, whose transactions and writes are counted (with
    /// `--platform-pid`).
    #[arg(long)]
    database_url: Option<String>,
    /// Profile each concurrent phase into this directory (with `--platform-pid` and
    /// `--database-url`): Postgres statements per payment (`pg_stat_statements` must be
    /// loaded) and, with `perf` installed, CPU by process and by function
    /// (`scripts/profile-pay.sh`).
    #[arg(long)]
    profile_dir: Option<std::path::PathBuf>,
}

struct Bench {
    http: reqwest::Client,
    gateway: String,
    target: String,
    key: String,
}

impl Bench {
    async fn post(&self, path: &str, key: &str, body: &Value) -> anyhow::Result<Value> {
        let response = self
            .http
            .post(format!("{}{path}", self.gateway))
            .header("x-api-key", key)
            .json(body)
            .send()
            .await?;
        let status = response.status();
        let answer: Value = response.json().await?;
        ensure!(status.is_success(), "POST {path}: HTTP {status}: {answer}");
        Ok(answer)
    }

    async fn pay(&self, agent: &str) -> anyhow::Result<(Value, Duration)> {
        let started = Instant::now();
        let paid = self
            .post(
                "/api/v1/x402/pay",
                &self.key,
                &json!({"agent_id": agent, "target_url": self.target}),
            )
            .await?;
        let took = started.elapsed();
        ensure!(paid["status"] == "completed", "pay: {paid}");
        Ok((paid, took))
    }

    async fn pay_and_retry(&self, agent: &str) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let (paid, _) = self.pay(agent).await?;
        let header = paid["payment_header"].as_str().unwrap_or("PAYMENT-SIGNATURE");
        let signature = paid["payment_signature"].as_str().context("no payment_signature")?;
        let retried = self.http.get(&self.target).header(header, signature).send().await?;
        ensure!(retried.status().is_success(), "retry: HTTP {}", retried.status());
        ensure!(retried.headers().contains_key("payment-response"), "retry: no PAYMENT-RESPONSE");
        Ok(started.elapsed())
    }
}

/// Each worker pays (and, with `retry`, retries) with its agent until the time is up.
async fn concurrent(
    bench: &Arc<Bench>,
    agents: &[String],
    seconds: u64,
    retry: bool,
) -> anyhow::Result<(Vec<Duration>, Duration)> {
    let states = agents.iter().map(|agent| (bench.clone(), agent.clone())).collect();
    timed_workers(states, seconds, move |(bench, agent)| async move {
        if retry { bench.pay_and_retry(&agent).await } else { Ok(bench.pay(&agent).await?.1) }
    })
    .await
}

pub(crate) async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let state_dir = args
        .state_file
        .parent()
        .map_or_else(|| std::path::PathBuf::from(".awx"), std::path::Path::to_path_buf);
    let admin = std::fs::read_to_string(state_dir.join("dev-admin-key"))
        .context("reading the development admin key (is `awx dev` running?)")?;
    let admin = admin.trim().to_owned();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.workers.saturating_mul(2))
        .build()?;
    let mut bench = Bench {
        http,
        gateway: args.gateway.clone(),
        target: args.target.clone(),
        key: String::new(),
    };
    let created = bench
        .post("/api/v1/keys", &admin, &json!({"name": "pay bench", "scopes": ["agent"]}))
        .await?;
    bench.key = created["api_key"].as_str().context("no api_key")?.to_owned();
    let mut agents = Vec::new();
    for index in 0..args.workers.max(1) {
        let agent = bench
            .post("/api/v1/agents", &admin, &json!({"name": format!("bench-{index}")}))
            .await?;
        let id = agent["id"].as_str().context("no agent id")?.to_owned();
        bench
            .post(&format!("/api/v1/agents/{id}/fund"), &admin, &json!({"amount": "1000.00"}))
            .await?;
        agents.push(id);
    }
    let bench = Arc::new(bench);
    say(&format!(
        "payments bench: {} through {}, {} workers (one agent each)",
        args.target, args.gateway, args.workers
    ))?;
    // Warm-up: connections, caches, the provider's first answers.
    for agent in &agents {
        bench.pay(agent).await?;
    }
    let mut samples = Vec::new();
    let started = Instant::now();
    for index in 0..args.sequential {
        samples.push(bench.pay(&agents[index % agents.len()]).await?.1);
    }
    say(&summary("pay (one at a time)", samples, started.elapsed()))?;
    let cost = match (args.platform_pid, &args.database_url) {
        (Some(pid), Some(url)) => Some(crate::bench_cost::Cost::new(pid, url.clone())?),
        _ => None,
    };
    let profile = match (args.platform_pid, &args.database_url, &args.profile_dir) {
        (Some(pid), Some(url), Some(dir)) => {
            Some(crate::bench_profile::Profile::new(pid, url.clone(), dir.clone()).await?)
        }
        (_, _, Some(_)) => anyhow::bail!("--profile-dir needs --platform-pid and --database-url"),
        _ => None,
    };
    for (label, retry) in
        [("pay (concurrent)", false), ("pay + retry with settle (concurrent)", true)]
    {
        let before = match &cost {
            Some(cost) => Some(cost.settle().await?),
            None => None,
        };
        let running = match &profile {
            Some(profile) => Some(profile.start(label).await?),
            None => None,
        };
        let (samples, wall) = concurrent(&bench, &agents, args.seconds, retry).await?;
        let count = samples.len();
        say(&summary(label, samples, wall))?;
        if let (Some(profile), Some(running)) = (&profile, running) {
            for line in profile.finish(running, count).await? {
                say(&line)?;
            }
        }
        if let (Some(cost), Some(before)) = (&cost, before) {
            let after = cost.settle().await?;
            for line in cost.report(label, &before, &after, count) {
                say(&line)?;
            }
        }
    }
    Ok(())
}
