//! Providers: JSON-RPC over HTTP, with or without a wallet that signs transactions.

use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;

use crate::ChainError;

fn parse_endpoint(endpoint: &str) -> Result<alloy::transports::http::reqwest::Url, ChainError> {
    endpoint
        .parse()
        .map_err(|error| ChainError::Rpc(format!("bad RPC endpoint {endpoint}: {error}")))
}

/// A read-only provider for `endpoint`.
pub fn connect(endpoint: &str) -> Result<DynProvider, ChainError> {
    Ok(ProviderBuilder::new().connect_http(parse_endpoint(endpoint)?).erased())
}

/// A provider for `endpoint` that signs and sends transactions from `signer`.
///
/// The account nonce is read from the node for every transaction (alloy's simple nonce
/// manager) rather than cached: with a cache, a send that fails before broadcast (a revert found
/// by gas estimation) still consumes a nonce, and every later transaction waits forever behind
/// the gap.
pub fn connect_with_wallet(
    endpoint: &str,
    signer: PrivateKeySigner,
) -> Result<DynProvider, ChainError> {
    Ok(ProviderBuilder::new()
        .disable_recommended_fillers()
        .with_gas_estimation()
        .with_simple_nonce_management()
        .fetch_chain_id()
        .wallet(signer)
        .connect_http(parse_endpoint(endpoint)?)
        .erased())
}

/// Sends `wei` of the chain's native currency from the provider's wallet to `to` and waits for
/// the receipt (funding relayers with gas money on a development chain).
pub async fn send_native(
    provider: &DynProvider,
    to: alloy::primitives::Address,
    wei: alloy::primitives::U256,
) -> Result<(), ChainError> {
    use alloy::network::TransactionBuilder as _;
    let request = alloy::rpc::types::TransactionRequest::default().with_to(to).with_value(wei);
    let receipt = provider
        .send_transaction(request)
        .await
        .map_err(|error| ChainError::Rpc(error.to_string()))?
        .get_receipt()
        .await
        .map_err(|error| ChainError::Rpc(error.to_string()))?;
    if receipt.status() { Ok(()) } else { Err(ChainError::Node("the transfer reverted".into())) }
}
