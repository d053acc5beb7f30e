//! Pays an x402 URL with no platform, from a local private key (xpay's `pay(url)`), at most
//! `MAX_ATOMIC` atomic units of the offer's token.
//!
//! `PRIVATE_KEY=0x… URL=https://… NETWORK=eip155:84532 MAX_ATOMIC=10000 \
//!  cargo run -p awx-client --example local_pay`

#![allow(clippy::print_stdout, reason = "an example prints what it got")]

use awx_client::{Amount, PayOptions};

fn env(name: &str) -> Result<String, Box<dyn std::error::Error>> {
    std::env::var(name).map_err(|_| format!("set {name}").into())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = PayOptions {
        max_amount: Amount::parse_atomic(&env("MAX_ATOMIC")?)?,
        networks: vec![env("NETWORK")?],
        private_key: env("PRIVATE_KEY")?,
    };
    let paid = awx_client::pay(&env("URL")?, &options).await?;
    if let Some(receipt) = &paid.receipt {
        println!("paid {} atomic units, transaction {:?}", receipt.amount, receipt.transaction());
    }
    println!("{} {}", paid.response.status(), paid.response.text().await?);
    Ok(())
}
