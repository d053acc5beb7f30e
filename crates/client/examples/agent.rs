//! An agent that pays for an x402 API through awx: every 402 is paid from the agent's wallet
//! (at most $0.05 a request) and the request retried once.
//!
//! `AWX_URL=http://127.0.0.1:8080 AWX_API_KEY=… AWX_AGENT_ID=agt_… URL=https://… \
//!  cargo run -p awx-client --example agent`

#![allow(clippy::print_stdout, reason = "an example prints what it got")]

use awx_client::reqwest_middleware::ClientBuilder;
use awx_client::{AwxClient, ClientError, ReceiptExt as _, X402Middleware};

fn env(name: &str) -> Result<String, Box<dyn std::error::Error>> {
    std::env::var(name).map_err(|_| format!("set {name}").into())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let awx = AwxClient::new(&env("AWX_URL")?, env("AWX_API_KEY")?)?;
    let paying = X402Middleware::new(awx, env("AWX_AGENT_ID")?).max_usdc("0.05")?;
    let http = ClientBuilder::new(reqwest::Client::new()).with(paying).build();

    match http.get(env("URL")?).send().await {
        Ok(response) => {
            if let Some(receipt) = response.payment_receipt() {
                println!("paid {} USDC, payment {}", receipt.payment.amount, receipt.payment_id());
            }
            println!("{}", response.text().await?);
        }
        Err(error) => match ClientError::from(error) {
            ClientError::Api { code, rule, .. } => println!("refused: {code} {rule:?}"),
            other => println!("failed: {other}"),
        },
    }
    Ok(())
}
