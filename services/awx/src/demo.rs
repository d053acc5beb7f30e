//! The demo paid API `awx dev` runs beside the platform: an axum server whose routes are
//! paywalled with our own middleware (`awx-x402-axum`), verified and settled through the
//! platform's facilitator with a provider key.
//!
//! - `GET /v1/weather`: $0.01
//! - `GET /v1/report`: $0.75 (above the demo agent's approval threshold: the payment waits for
//!   an admin)
//! - `GET /health`: free

use std::net::SocketAddr;

use anyhow::Context as _;
use awx_x402::{Address, Network};
use awx_x402_axum::{FacilitatorConfig, PaymentInfo, PaymentLayer, PaymentOffer, Price};
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde_json::{Value, json};

/// Where the demo API pays and in what.
#[derive(Debug, Clone)]
pub(crate) struct DemoSettings {
    /// Where it listens.
    pub(crate) addr: String,
    /// The platform's facilitator (`…/api/v1/x402/facilitator`).
    pub(crate) facilitator_url: String,
    /// A provider-scope key of the platform.
    pub(crate) provider_key: String,
    /// The token contract.
    pub(crate) token: Address,
    /// Its EIP-712 name and version.
    pub(crate) token_name: String,
    /// Its EIP-712 version.
    pub(crate) token_version: String,
    /// The chain.
    pub(crate) chain_id: u64,
    /// Who gets paid.
    pub(crate) pay_to: Address,
}

async fn weather(Extension(paid): Extension<PaymentInfo>) -> Json<Value> {
    Json(json!({
        "city": "Lisbon", "forecast": "sunny", "high_c": 24,
        "paid_by": paid.payer.map(|payer| payer.to_checksum(None)),
    }))
}

async fn report(Extension(paid): Extension<PaymentInfo>) -> Json<Value> {
    Json(json!({
        "report": "quarterly weather outlook", "pages": 12,
        "paid_by": paid.payer.map(|payer| payer.to_checksum(None)),
    }))
}

/// How long the demo's authorizations are valid: net settlement starts once they expire.
pub(crate) const DEMO_MAX_TIMEOUT_SECONDS: u64 = 60;

fn paywall(settings: &DemoSettings, atomic: u128, what: &str) -> anyhow::Result<PaymentLayer> {
    let price =
        Price::atomic(atomic, settings.token, &settings.token_name, &settings.token_version);
    PaymentLayer::builder()
        .offer(
            PaymentOffer::new(price, settings.pay_to)
                .network(Network::evm(settings.chain_id))
                // Short-lived authorizations, so net settlement is seen within minutes.
                .max_timeout_seconds(DEMO_MAX_TIMEOUT_SECONDS),
        )
        .description(what)
        .mime_type("application/json")
        .facilitator(
            FacilitatorConfig::new(settings.facilitator_url.clone())
                .api_key(settings.provider_key.clone()),
        )
        .build()
        .with_context(|| format!("configuring the paywall of {what}"))
}

/// Binds the demo API and serves it until `shutdown` fires; returns its address.
pub(crate) async fn serve(
    settings: &DemoSettings,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let app = Router::new()
        .route(
            "/v1/weather",
            get(weather).layer(paywall(settings, 10_000, "Today's weather in Lisbon")?),
        )
        .route(
            "/v1/report",
            get(report).layer(paywall(settings, 750_000, "A quarterly weather report")?),
        )
        .route("/health", get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind(&settings.addr)
        .await
        .with_context(|| format!("binding the demo API on {}", settings.addr))?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(error) = served {
            tracing::error!(error.message = %error, "the demo API failed");
        }
    });
    Ok((addr, task))
}
