//! Batches of `transferWithAuthorization` calls through our `Multicall3` (installed at the
//! standard Multicall3 address) on a real anvil chain: failures allowed or not, balances,
//! authorization states, and finding the transaction that used an authorization.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    reason = "test helpers fail the test by panicking; the gas of a batch is printed for the record"
)]

use std::time::{SystemTime, UNIX_EPOCH};

use alloy::network::TransactionBuilder as _;
use alloy::primitives::{Address, Bytes, U256};
use alloy::providers::{DynProvider, Provider as _};
use alloy::rpc::types::{TransactionReceipt, TransactionRequest};
use alloy::signers::local::PrivateKeySigner;
use awx_chain::{
    Anvil, AnvilOptions, Call3, ChainClient, MULTICALL3_ADDRESS, Token, aggregate3_calldata,
    connect_with_wallet, decode_aggregate3_results, deploy_test_usdc, install_multicall3,
};
use awx_x402::eip3009::random_nonce;
use awx_x402::{Eip3009Authorization, Eip3009Payload, TokenDomain};

struct Chain {
    anvil: Anvil,
    relayer: DynProvider,
    client: ChainClient,
    token: Token,
}

impl Chain {
    async fn start() -> Self {
        let anvil = Anvil::spawn(AnvilOptions::default()).await.unwrap();
        let relayer = connect_with_wallet(anvil.endpoint(), anvil.dev_key(0).unwrap()).unwrap();
        let token = deploy_test_usdc(&relayer, "USD Coin", "2").await.unwrap();
        let client = ChainClient::connect(anvil.endpoint()).unwrap();
        assert_eq!(install_multicall3(&relayer).await.unwrap(), MULTICALL3_ADDRESS);
        Self { anvil, relayer, client, token }
    }

    fn domain(&self) -> TokenDomain {
        TokenDomain {
            name: "USD Coin".into(),
            version: "2".into(),
            chain_id: self.anvil.chain_id(),
            verifying_contract: self.token.address(),
        }
    }

    /// A signed authorization of `value` from `payer` to `to`.
    fn payment(&self, payer: &PrivateKeySigner, to: Address, value: u64) -> Eip3009Payload {
        let authorization = Eip3009Authorization {
            from: payer.address(),
            to,
            value: U256::from(value),
            valid_after: U256::ZERO,
            valid_before: U256::from(now() + 300),
            nonce: random_nonce(),
        };
        let signature = authorization.sign(payer, &self.domain()).unwrap();
        Eip3009Payload { signature: Bytes::copy_from_slice(&signature.to_bytes()), authorization }
    }

    fn call(&self, payload: &Eip3009Payload, allow_failure: bool) -> Call3 {
        Call3 {
            target: self.token.address(),
            allow_failure,
            call_data: Token::transfer_calldata(payload).unwrap(),
        }
    }

    async fn balance(&self, account: Address) -> U256 {
        self.token.balance_of(account).await.unwrap()
    }

    async fn used(&self, payload: &Eip3009Payload) -> bool {
        let auth = &payload.authorization;
        self.token.authorization_state(auth.from, auth.nonce).await.unwrap()
    }

    /// What `aggregate3(calls)` would do, by `eth_call`.
    async fn simulate(&self, calls: &[Call3]) -> Result<Vec<bool>, String> {
        let request = TransactionRequest::default()
            .with_to(MULTICALL3_ADDRESS)
            .with_input(aggregate3_calldata(calls));
        let output = self.relayer.call(request).await.map_err(|error| error.to_string())?;
        Ok(decode_aggregate3_results(&output).unwrap().iter().map(|r| r.success).collect())
    }

    /// Sends `aggregate3(calls)` from the relayer with a fixed gas limit (so a batch that reverts
    /// is mined rather than refused by gas estimation) and returns the receipt.
    async fn send(&self, calls: &[Call3]) -> TransactionReceipt {
        let request = TransactionRequest::default()
            .with_to(MULTICALL3_ADDRESS)
            .with_input(aggregate3_calldata(calls))
            .with_gas_limit(1_000_000);
        self.relayer.send_transaction(request).await.unwrap().get_receipt().await.unwrap()
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

#[tokio::test]
async fn installing_multicall3_is_idempotent() {
    let chain = Chain::start().await;
    let code = chain.client.code(MULTICALL3_ADDRESS).await.unwrap();
    assert!(!code.is_empty());
    let block = chain.client.block_number().await.unwrap();
    assert_eq!(install_multicall3(&chain.relayer).await.unwrap(), MULTICALL3_ADDRESS);
    assert_eq!(chain.client.code(MULTICALL3_ADDRESS).await.unwrap(), code);
    // The second call deployed nothing.
    assert_eq!(chain.client.block_number().await.unwrap(), block);
}

#[tokio::test]
async fn a_batch_with_allowed_failures_settles_the_valid_transfers_only() {
    let chain = Chain::start().await;
    let alice = PrivateKeySigner::random();
    let bob = PrivateKeySigner::random();
    let payee = Address::random();
    chain.token.mint(alice.address(), U256::from(5_000_000)).await.unwrap();
    chain.token.mint(bob.address(), U256::from(100)).await.unwrap();

    let first = chain.payment(&alice, payee, 1_250_000);
    let too_much = chain.payment(&bob, payee, 101);
    let third = chain.payment(&alice, payee, 2_000_000);
    let calls = [chain.call(&first, true), chain.call(&too_much, true), chain.call(&third, true)];
    assert_eq!(chain.simulate(&calls).await.unwrap(), [true, false, true]);

    let from_block = chain.client.block_number().await.unwrap();
    let receipt = chain.send(&calls).await;
    assert!(receipt.status());
    println!(
        "aggregate3 of 3 transferWithAuthorization calls (2 succeed): {} gas",
        receipt.gas_used
    );

    assert_eq!(chain.balance(alice.address()).await, U256::from(5_000_000 - 1_250_000 - 2_000_000));
    assert_eq!(chain.balance(bob.address()).await, U256::from(100));
    assert_eq!(chain.balance(payee).await, U256::from(1_250_000 + 2_000_000));

    assert!(chain.used(&first).await);
    assert!(!chain.used(&too_much).await);
    assert!(chain.used(&third).await);

    for (payload, used) in [(&first, true), (&too_much, false), (&third, true)] {
        let auth = &payload.authorization;
        assert_eq!(
            chain.token.receipt_has_authorization_used(&receipt, auth.from, auth.nonce),
            used
        );
        assert_eq!(
            chain.token.receipt_has_transfer(&receipt, auth.from, auth.to, auth.value),
            used
        );
        let found = chain
            .client
            .authorization_used_tx(chain.token.address(), auth.from, auth.nonce, from_block)
            .await
            .unwrap();
        assert_eq!(found, used.then_some(receipt.transaction_hash));
    }
    // The right nonce of the wrong authorizer, or on another token, is not found.
    let auth = &first.authorization;
    assert!(!chain.token.receipt_has_authorization_used(&receipt, bob.address(), auth.nonce));
    let other = Token::at(Address::random(), chain.relayer.clone());
    assert!(!other.receipt_has_authorization_used(&receipt, auth.from, auth.nonce));
    let elsewhere = chain
        .client
        .authorization_used_tx(Address::random(), auth.from, auth.nonce, from_block)
        .await
        .unwrap();
    assert_eq!(elsewhere, None);
    // Searching from a later block misses it.
    let later = receipt.block_number.unwrap() + 1;
    let missed = chain
        .client
        .authorization_used_tx(chain.token.address(), auth.from, auth.nonce, later)
        .await
        .unwrap();
    assert_eq!(missed, None);

    // The used authorizations cannot run again; the batch again moves nothing.
    assert_eq!(chain.simulate(&calls).await.unwrap(), [false, false, false]);
}

#[tokio::test]
async fn a_failing_call_that_is_not_allowed_to_fail_reverts_the_whole_batch() {
    let chain = Chain::start().await;
    let alice = PrivateKeySigner::random();
    let bob = PrivateKeySigner::random();
    let payee = Address::random();
    chain.token.mint(alice.address(), U256::from(1_000)).await.unwrap();
    chain.token.mint(bob.address(), U256::from(10)).await.unwrap();

    let first = chain.payment(&alice, payee, 300);
    let too_much = chain.payment(&bob, payee, 11);
    let third = chain.payment(&alice, payee, 400);
    let calls =
        [chain.call(&first, false), chain.call(&too_much, false), chain.call(&third, false)];

    let refused = chain.simulate(&calls).await.unwrap_err();
    assert!(refused.contains("Multicall3: call failed"), "{refused}");

    let from_block = chain.client.block_number().await.unwrap();
    let receipt = chain.send(&calls).await;
    assert!(!receipt.status());
    assert!(receipt.inner.logs().is_empty());

    assert_eq!(chain.balance(alice.address()).await, U256::from(1_000));
    assert_eq!(chain.balance(bob.address()).await, U256::from(10));
    assert_eq!(chain.balance(payee).await, U256::ZERO);
    for payload in [&first, &too_much, &third] {
        assert!(!chain.used(payload).await);
        let auth = &payload.authorization;
        assert!(!chain.token.receipt_has_authorization_used(&receipt, auth.from, auth.nonce));
        let found = chain
            .client
            .authorization_used_tx(chain.token.address(), auth.from, auth.nonce, from_block)
            .await
            .unwrap();
        assert_eq!(found, None);
    }

    // Without the failing call, the same authorizations go through with failures not allowed.
    let receipt = chain.send(&[calls[0].clone(), calls[2].clone()]).await;
    assert!(receipt.status());
    assert_eq!(chain.balance(alice.address()).await, U256::from(300));
    assert_eq!(chain.balance(payee).await, U256::from(700));
}
