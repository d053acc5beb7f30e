//! What `awx dev` sets up after the services start, and the walkthrough it prints: a provider
//! key and the demo paid API ([`crate::demo`]), an agent key, an agent with a policy and a wallet
//! funded from the faucet, and copy-paste commands for check, session, pay, retry, the payment's
//! state, an approval and the paid retry after it, the statement and net settlement. The agent
//! key is kept in `<state dir>/dev-agent-key` (owner-only), beside the admin key.

use std::io::Write as _;

use anyhow::{Context as _, bail};
use awx_x402::Address;
use serde_json::{Value, json};

use crate::demo::{self, DemoSettings};

/// The development chain, as the demo needs it.
#[derive(Debug, Clone)]
pub(crate) struct DemoChain {
    /// CAIP-2.
    pub(crate) network: String,
    /// The chain id.
    pub(crate) chain_id: u64,
    /// The token.
    pub(crate) token: Address,
    /// Its EIP-712 name.
    pub(crate) token_name: String,
    /// Its EIP-712 version.
    pub(crate) token_version: String,
    pub(crate) rpc_url: String,
}

/// What the demo set up.
#[derive(Debug)]
pub(crate) struct Demo {
    /// The demo API's task.
    pub(crate) server: tokio::task::JoinHandle<()>,
    /// The demo API's base URL.
    pub(crate) demo_url: String,
    /// The gateway.
    pub(crate) gateway_url: String,
    /// An admin key.
    pub(crate) admin_key: String,
    /// An agent key.
    pub(crate) agent_key: String,
    /// Where the agent key is saved.
    pub(crate) agent_key_file: std::path::PathBuf,
    /// The demo agent.
    pub(crate) agent_id: String,
    /// Its wallet.
    pub(crate) agent_address: String,
    /// Its balance after funding.
    pub(crate) agent_balance: String,
    /// Who the demo API pays.
    pub(crate) pay_to: Address,
    /// The token the demo is paid in.
    pub(crate) token: Address,
    /// The development chain's RPC endpoint.
    pub(crate) rpc_url: String,
}

async fn post(http: &reqwest::Client, url: &str, key: &str, body: &Value) -> anyhow::Result<Value> {
    let response = http.post(url).header("x-api-key", key).json(body).send().await?;
    let status = response.status();
    let answer: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("POST {url}: HTTP {status}: {answer}");
    }
    Ok(answer)
}

fn text(value: &Value, pointer: &str) -> anyhow::Result<String> {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .with_context(|| format!("no {pointer} in {value}"))
}

/// Sets up keys, the demo API and a funded agent.
pub(crate) async fn set_up(
    gateway_url: &str,
    admin_key: &str,
    chain: DemoChain,
    demo_addr: &str,
    state_dir: &std::path::Path,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<Demo> {
    let http = reqwest::Client::new();
    let gateway = gateway_url.to_owned();
    let admin = admin_key.to_owned();
    let keys = format!("{gateway}/api/v1/keys");
    let provider =
        post(&http, &keys, &admin, &json!({"name": "demo provider", "scopes": ["provider"]}))
            .await?;
    let agent_key =
        post(&http, &keys, &admin, &json!({"name": "demo agent", "scopes": ["agent"]})).await?;
    let pay_to = Address::random();
    let (addr, server) = demo::serve(
        &DemoSettings {
            addr: demo_addr.to_owned(),
            facilitator_url: format!("{gateway}/api/v1/x402/facilitator"),
            provider_key: text(&provider, "/api_key")?,
            token: chain.token,
            token_name: chain.token_name.clone(),
            token_version: chain.token_version,
            chain_id: chain.chain_id,
            pay_to,
        },
        stop,
    )
    .await?;
    let agent = post(
        &http,
        &format!("{gateway}/api/v1/agents"),
        &admin,
        &json!({
            "name": "demo-agent",
            "default_chain": chain.network,
            "policy": {"per_payment_max": "1.00", "daily_limit": "20.00", "approval_threshold": "0.50"}
        }),
    )
    .await?;
    let agent_id = text(&agent, "/id")?;
    let funded = post(
        &http,
        &format!("{gateway}/api/v1/agents/{agent_id}/fund"),
        &admin,
        &json!({"amount": "100.00"}),
    )
    .await?;
    let agent_key = text(&agent_key, "/api_key")?;
    let agent_key_file = state_dir.join("dev-agent-key");
    crate::write_secret_file(&agent_key_file, agent_key.as_bytes())?;
    Ok(Demo {
        server,
        demo_url: format!("http://{addr}"),
        gateway_url: gateway,
        admin_key: admin,
        agent_key,
        agent_key_file,
        agent_id,
        agent_address: text(&agent, "/address")?,
        agent_balance: text(&funded, "/balances/0/available")?,
        pay_to,
        token: chain.token,
        rpc_url: chain.rpc_url,
    })
}

/// An address as 40 lowercase hex digits, without `0x`.
fn alloy_hex(address: Address) -> String {
    address.to_string().trim_start_matches("0x").to_lowercase()
}

/// Prints the walkthrough; `log_file` is where the services' logs go.
pub(crate) fn print(demo: &Demo, log_file: &std::path::Path) -> anyhow::Result<()> {
    let Demo { demo_url, gateway_url: gw, admin_key, agent_key, agent_id, .. } = demo;
    let mut out = std::io::stdout().lock();
    writeln!(out, "awx dev: the demo is ready")?;
    writeln!(
        out,
        "  demo API  {demo_url}/v1/weather ($0.01) and {demo_url}/v1/report ($0.75, needs approval)"
    )?;
    writeln!(out, "            pays {} through our facilitator", demo.pay_to.to_checksum(None))?;
    writeln!(
        out,
        "  agent     {agent_id} wallet {} holding {} USDC",
        demo.agent_address, demo.agent_balance
    )?;
    writeln!(
        out,
        "            policy: at most $1.00 a payment, $20.00 a day, approval above $0.50"
    )?;
    writeln!(out, "  agent key {agent_key} (saved in {})", demo.agent_key_file.display())?;
    writeln!(
        out,
        "  logs      {} (warnings and errors also here; RUST_LOG=debug for more)",
        log_file.display()
    )?;
    writeln!(
        out,
        "  note      the gateway may fetch loopback and private addresses here (development only)"
    )?;
    writeln!(out, "Walkthrough (copy and paste into bash; uses curl and jq):")?;
    writeln!(out, "  export AWX={gw} KEY={agent_key} ADMIN={admin_key}")?;
    writeln!(out, "  # 1. does the URL take x402?")?;
    writeln!(
        out,
        "  curl -s $AWX/api/v1/x402/check -H \"X-API-Key: $KEY\" -H 'Content-Type: application/json' -d '{{\"url\": \"{demo_url}/v1/weather\"}}' | jq"
    )?;
    writeln!(out, "  # 2. open a session with a $1.00 budget for an hour")?;
    writeln!(
        out,
        "  SESSION=$(curl -s $AWX/api/v1/x402/sessions -H \"X-API-Key: $KEY\" -H 'Content-Type: application/json' -d '{{\"agent_id\": \"{agent_id}\", \"budget_limit\": \"1.00\", \"ttl_seconds\": 3600, \"allowed_urls\": [\"{demo_url}/v1/*\"]}}' | jq -r .id); echo $SESSION"
    )?;
    writeln!(out, "  # 3. pay from it: status completed, and the signature for the retry")?;
    writeln!(
        out,
        "  PAID=$(curl -s $AWX/api/v1/x402/sessions/$SESSION/pay -H \"X-API-Key: $KEY\" -H 'Content-Type: application/json' -d '{{\"target_url\": \"{demo_url}/v1/weather\"}}'); echo \"$PAID\" | jq"
    )?;
    writeln!(out, "  # 4. retry the URL with the signature: 200, and PAYMENT-RESPONSE")?;
    writeln!(
        out,
        "  curl -si {demo_url}/v1/weather -H \"PAYMENT-SIGNATURE: $(echo \"$PAID\" | jq -r .payment_signature)\"; echo"
    )?;
    writeln!(out, "  # 5. the payment (captured by the provider's settle) and the session")?;
    writeln!(
        out,
        "  curl -s $AWX/api/v1/x402/payments/$(echo \"$PAID\" | jq -r .ledger_id) -H \"X-API-Key: $KEY\" | jq"
    )?;
    writeln!(out, "  curl -s $AWX/api/v1/x402/sessions/$SESSION -H \"X-API-Key: $KEY\" | jq")?;
    writeln!(
        out,
        "  # 6. above the approval threshold ($0.75 > $0.50): status pending, no signature yet"
    )?;
    writeln!(
        out,
        "  PENDING=$(curl -s $AWX/api/v1/x402/pay -H \"X-API-Key: $KEY\" -H 'Content-Type: application/json' -d '{{\"agent_id\": \"{agent_id}\", \"target_url\": \"{demo_url}/v1/report\"}}'); echo \"$PENDING\" | jq '{{ledger_id, status, amount, payment_signature}}'"
    )?;
    writeln!(out, "  #    an admin approves it: status completed, with its signature")?;
    writeln!(
        out,
        "  APPROVED=$(curl -s -X POST $AWX/api/v1/x402/payments/$(echo \"$PENDING\" | jq -r .ledger_id)/approve -H \"X-API-Key: $ADMIN\"); echo \"$APPROVED\" | jq '{{ledger_id, status, amount}}'"
    )?;
    writeln!(out, "  #    and the paid retry: 200, the report, and PAYMENT-RESPONSE")?;
    writeln!(
        out,
        "  curl -si {demo_url}/v1/report -H \"PAYMENT-SIGNATURE: $(echo \"$APPROVED\" | jq -r .payment_signature)\"; echo"
    )?;
    writeln!(
        out,
        "  # 7. the agent's statement: each payment held (amount, then fee) and captured, under the payment's ledger_id"
    )?;
    writeln!(
        out,
        "  curl -s $AWX/api/v1/agents/{agent_id}/statement -H \"X-API-Key: $KEY\" | jq -c '.data[] | {{type, ledger_id, credit, debit, available_after}}'"
    )?;
    writeln!(
        out,
        "  # 8. net settlement: about {} s after step 3 the authorization has expired, and within the next",
        demo::DEMO_MAX_TIMEOUT_SECONDS
    )?;
    writeln!(
        out,
        "  #    minute the batch worker moves the payment on chain to the payee (state settled, its transaction)"
    )?;
    writeln!(
        out,
        "  curl -s $AWX/api/v1/x402/payments/$(echo \"$PAID\" | jq -r .ledger_id) -H \"X-API-Key: $KEY\" | jq .settlement"
    )?;
    writeln!(
        out,
        "  #    and the payee's balance on chain (atomic units; 10000 is $0.01, 760000 once the report is settled too):"
    )?;
    writeln!(
        out,
        "  curl -s {} -H 'Content-Type: application/json' -d '{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"eth_call\",\"params\":[{{\"to\":\"{}\",\"data\":\"0x70a08231000000000000000000000000{}\"}},\"latest\"]}}' | jq -r .result | xargs printf '%d\\n'",
        demo.rpc_url,
        demo.token.to_checksum(None),
        alloy_hex(demo.pay_to)
    )?;
    writeln!(out, "Press Ctrl-C to stop.")?;
    out.flush()?;
    Ok(())
}
