//! Part 2 of `awx settlement bench`: the batch worker's throughput on real captured payments
//! (see the parent module).

use super::setup::{BenchPlatform, Gateway, PlatformOptions};
#[allow(clippy::wildcard_imports, reason = "the parent's constants, helpers and imports")]
use super::*;

// ---------------------------------------------------------------------------------------------
// Part 2: the worker's throughput.

/// One agent of the throughput part.
struct Agent {
    id: String,
    wallet: Address,
    /// The agent key it pays with (one per few agents, so no key reaches its rate limit).
    key: String,
}

/// What the paying workers share.
struct Payments {
    gateway: Gateway,
    agents: Vec<Agent>,
    apis: Vec<String>,
    items: usize,
    next: AtomicUsize,
    done: AtomicUsize,
    started: Instant,
}

impl Payments {
    /// Payment `index`: agent `index % agents` pays payee `(index / agents) % payees`.
    fn route(&self, index: usize) -> (usize, usize) {
        let agents = self.agents.len();
        (index % agents, (index / agents) % self.apis.len())
    }

    /// Pays the paid URL as the agent, then retries it with the signature: the provider
    /// verifies and settles through our facilitator (captured, queued).
    async fn pay_and_serve(&self, index: usize) -> anyhow::Result<()> {
        let (agent, api) = self.route(index);
        let agent = &self.agents[agent];
        let url = &self.apis[api];
        let paid = self
            .gateway
            .post("/api/v1/x402/pay", &agent.key, &json!({"agent_id": agent.id, "target_url": url}))
            .await?;
        ensure!(paid["status"] == "completed", "pay: {paid}");
        let header = paid["payment_header"].as_str().unwrap_or("PAYMENT-SIGNATURE");
        let signature = paid["payment_signature"].as_str().context("no payment_signature")?;
        let served = self.gateway.http.get(url).header(header, signature).send().await?;
        let status = served.status();
        ensure!(status.is_success(), "the paid API answered HTTP {status} to the retry");
        ensure!(served.headers().contains_key("payment-response"), "no PAYMENT-RESPONSE");
        Ok(())
    }

    async fn work(self: Arc<Self>) -> anyhow::Result<()> {
        loop {
            let index = self.next.fetch_add(1, Ordering::Relaxed);
            if index >= self.items {
                return Ok(());
            }
            self.pay_and_serve(index).await.with_context(|| format!("payment {index}"))?;
            let done = self.done.fetch_add(1, Ordering::Relaxed).saturating_add(1);
            if done.is_multiple_of(1_000) {
                say(&format!(
                    "  {done}/{} payments captured ({:.1}/s)",
                    self.items,
                    per_second(done, self.started.elapsed())
                ))?;
            }
        }
    }
}

/// A paid API (`GET /paid` at $0.10) built with our middleware, paid to `pay_to` through the
/// platform's facilitator with `provider_key`; returns its paid URL.
async fn paid_api(
    started: &Started,
    facilitator_url: &str,
    provider_key: &str,
    pay_to: Address,
    expiry_seconds: u64,
) -> anyhow::Result<String> {
    let (token, chain_id, stop) =
        (started.bench.token.address(), started.bench.anvil.chain_id(), started.stop_apis.clone());
    use awx_x402_axum::{FacilitatorConfig, PaymentInfo, PaymentLayer, PaymentOffer, Price};
    let paywall = PaymentLayer::builder()
        .offer(
            PaymentOffer::new(Price::atomic(VALUE, token, TOKEN_NAME, TOKEN_VERSION), pay_to)
                .network(awx_x402::Network::evm(chain_id))
                .max_timeout_seconds(expiry_seconds),
        )
        .facilitator(FacilitatorConfig::new(facilitator_url).api_key(provider_key))
        .build()
        .context("configuring a paywall")?;
    async fn paid(axum::Extension(info): axum::Extension<PaymentInfo>) -> axum::Json<Value> {
        axum::Json(json!({"paid_by": info.payer}))
    }
    let app = axum::Router::new().route("/paid", axum::routing::get(paid).layer(paywall));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(error) = served {
            tracing::error!(error.message = %error, "a paid API of the bench failed");
        }
    });
    Ok(format!("http://{address}/paid"))
}

async fn scalar_i64(pool: &sqlx::PgPool, sql: &'static str) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(sql).fetch_one(pool).await?)
}

/// Seconds between the database time `since` (epoch seconds) and the latest value of `sql`.
async fn seconds_since(pool: &sqlx::PgPool, sql: &'static str, since: f64) -> Option<f64> {
    let at: Option<f64> = sqlx::query_scalar(sql).fetch_one(pool).await.ok().flatten();
    at.map(|at| at - since)
}

/// Everything the throughput part started, stopped in reverse order.
struct Started {
    bench: BenchPlatform,
    stop_apis: CancellationToken,
}

async fn start_platform(args: &BenchArgs) -> anyhow::Result<(Started, Address)> {
    let fee_address = Address::random();
    let bench = BenchPlatform::start(PlatformOptions {
        name: "settlement",
        database_url: args.database_url.clone(),
        redis_url: args.redis_url.clone(),
        // The bench drives the worker itself.
        batch: awx_settlement_service::config::BatchSettings {
            enabled: false,
            threshold_usd: "0.01".into(),
            eligibility_margin_seconds: 0,
            fee_address: Some(fee_address),
            ..awx_settlement_service::config::BatchSettings::default()
        },
        watch: awx_settlement_service::config::WatchSettings {
            enabled: false,
            ..Default::default()
        },
        network_watch: Default::default(),
    })
    .await?;
    Ok((Started { bench, stop_apis: CancellationToken::new() }, fee_address))
}

impl Started {
    async fn stop(self) -> anyhow::Result<()> {
        self.stop_apis.cancel();
        self.bench.stop().await
    }
}

/// Part 2; `reference` is the gas of one transaction per payment (part 1), per payment.
pub(super) async fn throughput_part(
    args: &BenchArgs,
    reference: Option<u64>,
) -> anyhow::Result<()> {
    say(&format!(
        "\n== the batch worker: {} items from {} agents to {} payees, netted by the real worker",
        args.items, args.agents, args.payees
    ))?;
    let (started, fee_address) = start_platform(args).await?;
    let outcome = measure(args, &started, fee_address, reference).await;
    let stopped = started.stop().await;
    outcome?;
    stopped
}

#[allow(
    clippy::too_many_lines,
    reason = "one measurement from set-up to checks, read top to bottom"
)]
async fn measure(
    args: &BenchArgs,
    started: &Started,
    fee_address: Address,
    reference: Option<u64>,
) -> anyhow::Result<()> {
    let platform = &started.bench.platform;
    let pool = platform.facilitator.pool.clone();
    let gateway = started.bench.gateway(args.concurrency.saturating_mul(2))?;
    let admin = platform.admin_key.clone();

    // Set-up: a provider key per paid API, an agent key per five agents (so no key reaches its
    // rate limit), the agents funded from the faucet.
    let facilitator_url = format!("{}/api/v1/x402/facilitator", platform.gateway_url);
    let payees: Vec<Address> = (0..args.payees).map(|_| Address::random()).collect();
    let mut apis = Vec::new();
    for (index, payee) in payees.iter().enumerate() {
        let key = gateway.new_key(&admin, &format!("bench provider {index}"), "provider").await?;
        apis.push(paid_api(started, &facilitator_url, &key, *payee, args.expiry_seconds).await?);
    }
    let per_agent = args.items.div_ceil(args.agents);
    let funding = u128::try_from(per_agent)?
        .saturating_mul(VALUE.saturating_add(FEE))
        .saturating_add(1_000_000);
    let mut agents = Vec::new();
    let mut key = String::new();
    for index in 0..args.agents {
        if index % 5 == 0 {
            key = gateway.new_key(&admin, &format!("bench agents {index}"), "agent").await?;
        }
        let agent = gateway
            .post("/api/v1/agents", &admin, &json!({"name": format!("bench-{index}")}))
            .await?;
        let id = agent["id"].as_str().context("no agent id")?.to_owned();
        let wallet: Address = agent["address"].as_str().context("no address")?.parse()?;
        gateway
            .post(
                &format!("/api/v1/agents/{id}/fund"),
                &admin,
                &json!({"amount": dollars(funding)?}),
            )
            .await?;
        agents.push(Agent { id, wallet, key: key.clone() });
    }
    say(&format!(
        "set-up: {} agents funded with {} USDC each, {} paid APIs at $0.10 (authorizations valid {} s)",
        args.agents,
        dollars(funding)?,
        args.payees,
        args.expiry_seconds
    ))?;

    // The items: real payments, captured through the facilitator and queued.
    let payments = Arc::new(Payments {
        gateway,
        agents,
        apis,
        items: args.items,
        next: AtomicUsize::new(0),
        done: AtomicUsize::new(0),
        started: Instant::now(),
    });
    let workers: Vec<_> =
        (0..args.concurrency.max(1)).map(|_| tokio::spawn(payments.clone().work())).collect();
    for worker in workers {
        worker.await??;
    }
    let making = payments.started.elapsed();
    let captured_rate = per_second(args.items, making);
    say(&format!(
        "items: {} payments paid and captured in {:.1} s = {captured_rate:.1}/s ({} in flight)",
        args.items,
        making.as_secs_f64(),
        args.concurrency
    ))?;
    let queued =
        scalar_i64(&pool, "SELECT count(*) FROM settlement.items WHERE state = 'queued'").await?;
    ensure!(
        queued == i64::try_from(args.items)?,
        "{queued} items queued for {} payments",
        args.items
    );

    // Every authorization must have expired before the worker may net it.
    let latest =
        scalar_i64(&pool, "SELECT coalesce(max(valid_before), 0) FROM settlement.items").await?;
    let wait = latest.saturating_add(1).saturating_sub(i64::try_from(now())?);
    if wait > 0 {
        say(&format!("waiting {wait} s for the last authorization to expire"))?;
        tokio::time::sleep(Duration::from_secs(u64::try_from(wait)?)).await;
    }

    // The worker's passes, timed until every item is settled and every transfer recorded.
    let worker = BatchWorker::new(platform.facilitator.clone());
    let db_start: f64 = sqlx::query_scalar("SELECT extract(epoch FROM clock_timestamp())::float8")
        .fetch_one(&pool)
        .await?;
    let begun = Instant::now();
    let mut total = PassReport::default();
    let mut passes = 0usize;
    let mut first_pass = None;
    let mut all_settled = None;
    loop {
        ensure!(passes < 100, "still not settled after {passes} passes: {total:?}");
        let pass_started = Instant::now();
        for report in worker.run_once().await? {
            total.external = total.external.saturating_add(report.external);
            total.eligible = total.eligible.saturating_add(report.eligible);
            total.planned = total.planned.saturating_add(report.planned);
            total.signed = total.signed.saturating_add(report.signed);
            total.confirmed = total.confirmed.saturating_add(report.confirmed);
            total.failed = total.failed.saturating_add(report.failed);
            total.recorded = total.recorded.saturating_add(report.recorded);
            total.replaced = total.replaced.saturating_add(report.replaced);
        }
        passes = passes.saturating_add(1);
        first_pass.get_or_insert_with(|| pass_started.elapsed());
        let settled =
            scalar_i64(&pool, "SELECT count(*) FROM settlement.items WHERE state = 'settled'")
                .await?;
        if settled == i64::try_from(args.items)? && all_settled.is_none() {
            all_settled = Some((begun.elapsed(), passes));
        }
        let open = scalar_i64(
            &pool,
            "SELECT count(*) FROM settlement.net_transfers WHERE state <> 'confirmed' OR NOT recorded",
        )
        .await?;
        if all_settled.is_some() && open == 0 {
            break;
        }
    }
    let everything = begun.elapsed();
    let (settled_in, settled_passes) = all_settled.context("never settled")?;
    let first_pass = first_pass.unwrap_or_default();

    // The steps of the first pass, from the rows' own timestamps (the database's clock).
    let classified = seconds_since(
        &pool,
        "SELECT extract(epoch FROM max(eligible_at))::float8 FROM settlement.items",
        db_start,
    )
    .await;
    let planned = seconds_since(
        &pool,
        "SELECT extract(epoch FROM max(created_at))::float8 FROM settlement.net_transfers",
        db_start,
    )
    .await;
    let batched = seconds_since(
        &pool,
        "SELECT extract(epoch FROM min(created_at))::float8 FROM settlement.batches",
        db_start,
    )
    .await;

    let batches =
        scalar_i64(&pool, "SELECT count(*) FROM settlement.batches WHERE state = 'confirmed'")
            .await?;
    let payee_transfers = scalar_i64(
        &pool,
        "SELECT count(*) FROM settlement.net_transfers WHERE state = 'confirmed' AND kind = 'payee'",
    )
    .await?;
    let fee_transfers = scalar_i64(
        &pool,
        "SELECT count(*) FROM settlement.net_transfers WHERE state = 'confirmed' AND kind = 'fee'",
    )
    .await?;
    let gas = scalar_i64(
        &pool,
        "SELECT coalesce(sum(gas_used), 0)::bigint FROM settlement.batches WHERE state = 'confirmed'",
    )
    .await?;
    let gas = u64::try_from(gas)?;
    ensure!(total.external == 0, "{} items were settled externally", total.external);

    // The chain must show exactly what was paid: each payee its payments, the fee address every
    // fee, each agent's wallet its funding less what it paid.
    let mut to_payee = vec![0u128; args.payees];
    let mut by_agent = vec![0u128; args.agents];
    for index in 0..args.items {
        let (agent, payee) = payments.route(index);
        to_payee[payee] = to_payee[payee].saturating_add(VALUE);
        by_agent[agent] = by_agent[agent].saturating_add(VALUE.saturating_add(FEE));
    }
    for (payee, expected) in payees.iter().zip(&to_payee) {
        let balance = started.bench.token.balance_of(*payee).await?;
        ensure!(balance == U256::from(*expected), "a payee holds {balance}, expected {expected}");
    }
    let fees = u128::try_from(args.items)?.saturating_mul(FEE);
    let balance = started.bench.token.balance_of(fee_address).await?;
    ensure!(balance == U256::from(fees), "the fee address holds {balance}, expected {fees}");
    for (agent, paid) in payments.agents.iter().zip(&by_agent) {
        let balance = started.bench.token.balance_of(agent.wallet).await?;
        let expected = funding.saturating_sub(*paid);
        ensure!(
            balance == U256::from(expected),
            "an agent's wallet holds {balance}, expected {expected}"
        );
    }
    let violations = awx_ledger_service::check::check(&pool).await?;
    ensure!(violations.is_empty(), "ledger check: {violations:?}");

    let netted_rate = per_second(args.items, settled_in);
    let step = |value: Option<f64>| value.map_or_else(|| "?".to_owned(), |s| format!("{s:.2} s"));
    say(&format!(
        "worker: {} items settled in {:.2} s over {settled_passes} pass(es) = {netted_rate:.0} items/s; \
         everything (fees collected, ledger recorded) in {:.2} s over {passes} passes",
        args.items,
        settled_in.as_secs_f64(),
        everything.as_secs_f64()
    ))?;
    say(&format!(
        "first pass: {:.2} s; classification of {} expired authorizations (one authorizationState each) done at {}, \
         planning at {}, decisions and signatures at {} (the first batch stored), the rest is the batch sent, mined and recorded",
        first_pass.as_secs_f64(),
        args.items,
        step(classified),
        step(planned),
        step(batched)
    ))?;
    say(&format!(
        "batches: {batches}, transfers: {payee_transfers} to payees + {fee_transfers} fees, gas used {gas} = {:.0} gas per item",
        ratio(gas, u64::try_from(args.items)?)
    ))?;
    say(&format!(
        "reference: payments captured at {captured_rate:.1}/s in this run; the worker nets {:.1}x as fast",
        netted_rate / captured_rate.max(1e-9)
    ))?;
    if let Some(per_payment) = reference {
        let items = u64::try_from(args.items)?;
        say(&format!(
            "reference: one transaction per payment ({per_payment} gas each, part 1 case B) would use {} gas: netted is {:.4} of it",
            per_payment.saturating_mul(items),
            ratio(gas, per_payment.saturating_mul(items))
        ))?;
    }
    say("balances on chain exact (payees, fee address, agents' wallets); ledger check passed")?;
    Ok(())
}
