//! On a real chain: the signer signs a relayer's `transferWithAuthorization` of our token, the
//! raw transaction is broadcast as is, and the payee receives the value.

use std::time::{SystemTime, UNIX_EPOCH};

use alloy::network::TransactionBuilder as _;
use alloy::primitives::{Address, Bytes, U256};
use alloy::providers::Provider as _;
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolCall as _;
use awx_api::signer::SignTransaction;
use awx_chain::token::Eip3009Token;
use awx_chain::{Anvil, AnvilOptions, connect, connect_with_wallet, deploy_test_usdc};
use awx_x402::eip3009::random_nonce;
use awx_x402::{Eip3009Authorization, TokenDomain};

use crate::helpers::TestSigner;

#[tokio::test]
async fn a_signed_settlement_transaction_moves_the_tokens_on_chain() {
    let anvil = Anvil::spawn(AnvilOptions::default()).await.unwrap();
    let chain_id = anvil.chain_id();
    let deployer = connect_with_wallet(anvil.endpoint(), anvil.dev_key(0).unwrap()).unwrap();
    let node = connect(anvil.endpoint()).unwrap();
    let token = deploy_test_usdc(&deployer, "USD Coin", "2").await.unwrap();

    let t = TestSigner::start().await;
    let relayer = t.relayers_over_the_bus().await[0];
    let wei_per_eth = U256::from(10).pow(U256::from(18));
    let () = node.raw_request("anvil_setBalance".into(), (relayer, wei_per_eth)).await.unwrap();
    // The token was deployed after the signer started: allow it now.
    assert!(t.contracts.allow(&format!("eip155:{chain_id}"), token.address()).unwrap());

    // A payer's authorization, signed with our protocol crate.
    let payer = PrivateKeySigner::random();
    let payee = Address::random();
    let value = U256::from(1_234_567);
    token.mint(payer.address(), U256::from(5_000_000)).await.unwrap();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let authorization = Eip3009Authorization {
        from: payer.address(),
        to: payee,
        value,
        valid_after: U256::ZERO,
        valid_before: U256::from(now + 300),
        nonce: random_nonce(),
    };
    let domain = TokenDomain {
        name: "USD Coin".into(),
        version: "2".into(),
        chain_id,
        verifying_contract: token.address(),
    };
    let signature = authorization.sign(&payer, &domain).unwrap();
    let calldata = Eip3009Token::transferWithAuthorization_0Call {
        from: authorization.from,
        to: authorization.to,
        value: authorization.value,
        validAfter: authorization.valid_after,
        validBefore: authorization.valid_before,
        nonce: authorization.nonce,
        v: signature.v(),
        r: signature.r(),
        s: signature.s(),
    }
    .abi_encode();

    // Nonce, fees and gas from the node, as the settlement worker will get them.
    let nonce = node.get_transaction_count(relayer).await.unwrap();
    let fees = node.estimate_eip1559_fees().await.unwrap();
    let gas = node
        .estimate_gas(
            TransactionRequest::default()
                .with_from(relayer)
                .with_to(token.address())
                .with_input(calldata.clone()),
        )
        .await
        .unwrap();
    let request = SignTransaction {
        request_id: uuid::Uuid::now_v7(),
        chain_id,
        from: relayer,
        to: token.address(),
        input: Bytes::from(calldata),
        nonce,
        gas_limit: gas + gas / 5,
        max_fee_per_gas: fees.max_fee_per_gas,
        max_priority_fee_per_gas: fees.max_priority_fee_per_gas,
    };
    let signed = t.sign(&request).await.unwrap();

    let pending = node.send_raw_transaction(&signed.raw).await.unwrap();
    assert_eq!(*pending.tx_hash(), signed.hash);
    let receipt = pending.get_receipt().await.unwrap();
    assert!(receipt.status(), "the transaction succeeded: {receipt:?}");
    assert_eq!(receipt.from, relayer);
    assert_eq!(receipt.transaction_hash, signed.hash);
    assert_eq!(token.balance_of(payee).await.unwrap(), value, "the payee received the value");
    assert_eq!(token.balance_of(payer.address()).await.unwrap(), U256::from(5_000_000) - value);
    assert!(token.authorization_state(payer.address(), authorization.nonce).await.unwrap());
    assert_eq!(node.get_transaction_count(relayer).await.unwrap(), nonce + 1);
    t.stop().await;
}
