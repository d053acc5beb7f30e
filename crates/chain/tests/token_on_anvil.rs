//! Our EIP-3009 token on a real anvil chain, driven by authorizations our protocol crate signs.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers fail the test by panicking, like the tests themselves"
)]

use std::time::{SystemTime, UNIX_EPOCH};

use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::providers::DynProvider;
use alloy::signers::local::PrivateKeySigner;
use awx_chain::token::Eip3009Token;
use awx_chain::{
    Anvil, AnvilOptions, ChainError, RevertKind, Token, connect_with_wallet,
    deploy_test_smart_wallet, deploy_test_usdc, smart_wallet_signature,
};
use awx_x402::eip3009::{cancel_signing_hash, random_nonce, sign_digest};
use awx_x402::{Eip3009Authorization, Eip3009Payload, TokenDomain};

struct Chain {
    anvil: Anvil,
    relayer: DynProvider,
    token: Token,
}

impl Chain {
    async fn start() -> Self {
        let anvil = Anvil::spawn(AnvilOptions::default()).await.unwrap();
        let relayer = connect_with_wallet(anvil.endpoint(), anvil.dev_key(0).unwrap()).unwrap();
        let token = deploy_test_usdc(&relayer, "USD Coin", "2").await.unwrap();
        Self { anvil, relayer, token }
    }

    fn domain(&self) -> TokenDomain {
        TokenDomain {
            name: "USD Coin".into(),
            version: "2".into(),
            chain_id: self.anvil.chain_id(),
            verifying_contract: self.token.address(),
        }
    }

    fn raw_token(&self) -> Eip3009Token::Eip3009TokenInstance<DynProvider> {
        Eip3009Token::new(self.token.address(), self.relayer.clone())
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn authorization(from: Address, to: Address, value: u64) -> Eip3009Authorization {
    Eip3009Authorization {
        from,
        to,
        value: U256::from(value),
        valid_after: U256::ZERO,
        valid_before: U256::from(now() + 300),
        nonce: random_nonce(),
    }
}

fn sign(
    auth: Eip3009Authorization,
    key: &PrivateKeySigner,
    domain: &TokenDomain,
) -> Eip3009Payload {
    let signature = auth.sign(key, domain).unwrap();
    Eip3009Payload { signature: Bytes::copy_from_slice(&signature.to_bytes()), authorization: auth }
}

fn revert_kind(result: Result<impl std::fmt::Debug, ChainError>) -> RevertKind {
    match result {
        Err(ChainError::Reverted { kind, .. }) => kind,
        other => panic!("expected a revert, got {other:?}"),
    }
}

#[tokio::test]
async fn an_authorization_we_sign_moves_exactly_its_value_once() {
    let chain = Chain::start().await;
    assert_eq!(chain.token.name().await.unwrap(), "USD Coin");
    assert_eq!(chain.token.version().await.unwrap(), "2");
    assert_eq!(chain.token.decimals().await.unwrap(), 6);

    let payer = PrivateKeySigner::random();
    let payee = Address::random();
    chain.token.mint(payer.address(), U256::from(5_000_000)).await.unwrap();

    let payload = sign(authorization(payer.address(), payee, 1_234_567), &payer, &chain.domain());
    let nonce = payload.authorization.nonce;
    assert!(!chain.token.authorization_state(payer.address(), nonce).await.unwrap());
    chain.token.simulate_transfer_with_authorization(&payload).await.unwrap();

    let receipt = chain.token.transfer_with_authorization(&payload).await.unwrap();
    assert!(chain.token.receipt_has_transfer(
        &receipt,
        payer.address(),
        payee,
        U256::from(1_234_567)
    ));
    assert_eq!(chain.token.balance_of(payer.address()).await.unwrap(), U256::from(3_765_433));
    assert_eq!(chain.token.balance_of(payee).await.unwrap(), U256::from(1_234_567));
    assert!(chain.token.authorization_state(payer.address(), nonce).await.unwrap());

    // The same authorization again is refused as a used nonce, by simulation and on submission,
    // and nothing moves.
    assert_eq!(
        revert_kind(chain.token.simulate_transfer_with_authorization(&payload).await),
        RevertKind::NonceUsed
    );
    assert_eq!(
        revert_kind(chain.token.transfer_with_authorization(&payload).await),
        RevertKind::NonceUsed
    );
    assert_eq!(chain.token.balance_of(payee).await.unwrap(), U256::from(1_234_567));
    assert_eq!(chain.token.balance_of(payer.address()).await.unwrap(), U256::from(3_765_433));
}

#[tokio::test]
async fn the_bytes_overload_takes_eoa_and_smart_wallet_signatures() {
    let chain = Chain::start().await;
    let payer = PrivateKeySigner::random();
    let payee = Address::random();
    chain.token.mint(payer.address(), U256::from(1_000)).await.unwrap();

    // A 65-byte EOA signature through the bytes overload.
    let payload = sign(authorization(payer.address(), payee, 400), &payer, &chain.domain());
    let auth = &payload.authorization;
    chain
        .raw_token()
        .transferWithAuthorization_1(
            auth.from,
            auth.to,
            auth.value,
            auth.valid_after,
            auth.valid_before,
            auth.nonce,
            payload.signature.clone(),
        )
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert_eq!(chain.token.balance_of(payee).await.unwrap(), U256::from(400));

    // A contract wallet whose 66-byte signatures the token checks through EIP-1271.
    let owner = PrivateKeySigner::random();
    let wallet = deploy_test_smart_wallet(&chain.relayer, owner.address()).await.unwrap();
    chain.token.mint(wallet, U256::from(900)).await.unwrap();
    let auth = authorization(wallet, payee, 900);
    let owner_signature = sign_digest(&owner, &auth.signing_hash(&chain.domain())).unwrap();
    let payload =
        Eip3009Payload { signature: smart_wallet_signature(&owner_signature), authorization: auth };
    assert_eq!(payload.signature.len(), 66);
    chain.token.transfer_with_authorization(&payload).await.unwrap();
    assert_eq!(chain.token.balance_of(wallet).await.unwrap(), U256::ZERO);
    assert_eq!(chain.token.balance_of(payee).await.unwrap(), U256::from(1_300));

    // Someone else's key cannot sign for the wallet.
    chain.token.mint(wallet, U256::from(10)).await.unwrap();
    let auth = authorization(wallet, payee, 10);
    let stranger =
        sign_digest(&PrivateKeySigner::random(), &auth.signing_hash(&chain.domain())).unwrap();
    let forged =
        Eip3009Payload { signature: smart_wallet_signature(&stranger), authorization: auth };
    assert_eq!(
        revert_kind(chain.token.transfer_with_authorization(&forged).await),
        RevertKind::InvalidSignature
    );
}

#[tokio::test]
async fn bad_authorizations_revert_with_their_cause() {
    let chain = Chain::start().await;
    let payer = PrivateKeySigner::random();
    let payee = Address::random();
    chain.token.mint(payer.address(), U256::from(100)).await.unwrap();
    let domain = chain.domain();

    let mut expired = authorization(payer.address(), payee, 10);
    expired.valid_before = U256::from(now() - 1);
    let expired = sign(expired, &payer, &domain);
    assert_eq!(
        revert_kind(chain.token.transfer_with_authorization(&expired).await),
        RevertKind::Expired
    );

    let mut early = authorization(payer.address(), payee, 10);
    early.valid_after = U256::from(now() + 3_600);
    let early = sign(early, &payer, &domain);
    assert_eq!(
        revert_kind(chain.token.transfer_with_authorization(&early).await),
        RevertKind::NotYetValid
    );

    let by_stranger =
        sign(authorization(payer.address(), payee, 10), &PrivateKeySigner::random(), &domain);
    assert_eq!(
        revert_kind(chain.token.transfer_with_authorization(&by_stranger).await),
        RevertKind::InvalidSignature
    );

    let mut other_domain = domain.clone();
    other_domain.version = "1".into();
    let wrong_domain = sign(authorization(payer.address(), payee, 10), &payer, &other_domain);
    assert_eq!(
        revert_kind(chain.token.transfer_with_authorization(&wrong_domain).await),
        RevertKind::InvalidSignature
    );

    let too_much = sign(authorization(payer.address(), payee, 101), &payer, &domain);
    assert_eq!(
        revert_kind(chain.token.transfer_with_authorization(&too_much).await),
        RevertKind::InsufficientBalance
    );

    // The malleable twin of a valid signature (s' = n - s, parity flipped) is refused on chain.
    let good = sign(authorization(payer.address(), payee, 10), &payer, &domain);
    let n = U256::from_str_radix(
        "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141",
        16,
    )
    .unwrap();
    let s = U256::from_be_slice(&good.signature[32..64]);
    let v = good.signature[64];
    let auth = &good.authorization;
    let result = chain
        .raw_token()
        .transferWithAuthorization_0(
            auth.from,
            auth.to,
            auth.value,
            auth.valid_after,
            auth.valid_before,
            auth.nonce,
            if v == 27 { 28 } else { 27 },
            B256::from_slice(&good.signature[..32]),
            B256::from(n - s),
        )
        .call()
        .await;
    let message = result.err().expect("the malleable signature must be refused").to_string();
    assert!(message.contains("invalid signature 's' value"), "{message}");

    // None of the above moved anything; the good one still works.
    assert_eq!(chain.token.balance_of(payer.address()).await.unwrap(), U256::from(100));
    chain.token.transfer_with_authorization(&good).await.unwrap();
    assert_eq!(chain.token.balance_of(payee).await.unwrap(), U256::from(10));
}

#[tokio::test]
async fn a_canceled_authorization_cannot_be_used() {
    let chain = Chain::start().await;
    let payer = PrivateKeySigner::random();
    let payee = Address::random();
    chain.token.mint(payer.address(), U256::from(100)).await.unwrap();
    let payload = sign(authorization(payer.address(), payee, 10), &payer, &chain.domain());
    let nonce = payload.authorization.nonce;

    let digest = cancel_signing_hash(payer.address(), nonce, &chain.domain());
    let signature = sign_digest(&payer, &digest).unwrap();
    chain
        .raw_token()
        .cancelAuthorization(payer.address(), nonce, signature.v(), signature.r(), signature.s())
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(chain.token.authorization_state(payer.address(), nonce).await.unwrap());
    assert_eq!(
        revert_kind(chain.token.transfer_with_authorization(&payload).await),
        RevertKind::NonceUsed
    );
    assert_eq!(chain.token.balance_of(payer.address()).await.unwrap(), U256::from(100));
}

#[tokio::test]
async fn only_the_payee_can_receive_with_authorization() {
    let chain = Chain::start().await;
    let payer = PrivateKeySigner::random();
    let payee_key = chain.anvil.dev_key(1).unwrap();
    let payee = payee_key.address();
    chain.token.mint(payer.address(), U256::from(100)).await.unwrap();
    let auth = authorization(payer.address(), payee, 60);
    let signature = sign_digest(&payer, &auth.receive_signing_hash(&chain.domain())).unwrap();

    let token_address = chain.token.address();
    let call = |provider: DynProvider| {
        let auth = auth.clone();
        async move {
            Eip3009Token::new(token_address, provider)
                .receiveWithAuthorization(
                    auth.from,
                    auth.to,
                    auth.value,
                    auth.valid_after,
                    auth.valid_before,
                    auth.nonce,
                    signature.v(),
                    signature.r(),
                    signature.s(),
                )
                .send()
                .await
        }
    };
    let by_relayer = call(chain.relayer.clone()).await;
    assert!(by_relayer.unwrap_err().to_string().contains("caller must be the payee"));

    let payee_provider = connect_with_wallet(chain.anvil.endpoint(), payee_key).unwrap();
    call(payee_provider).await.unwrap().get_receipt().await.unwrap();
    assert_eq!(chain.token.balance_of(payee).await.unwrap(), U256::from(60));
    assert_eq!(chain.token.balance_of(payer.address()).await.unwrap(), U256::from(40));
}

#[tokio::test]
async fn only_minters_mint() {
    let chain = Chain::start().await;
    let outsider_key = chain.anvil.dev_key(2).unwrap();
    let outsider = outsider_key.address();
    let as_outsider = Token::at(
        chain.token.address(),
        connect_with_wallet(chain.anvil.endpoint(), outsider_key).unwrap(),
    );
    let refused = as_outsider.mint(outsider, U256::from(1)).await;
    assert!(
        matches!(refused, Err(ChainError::Reverted { ref message, .. }) if message.contains("not a minter"))
    );
    assert_eq!(chain.token.balance_of(outsider).await.unwrap(), U256::ZERO);

    chain.token.configure_minter(outsider, true).await.unwrap();
    as_outsider.mint(outsider, U256::from(7)).await.unwrap();
    assert_eq!(chain.token.balance_of(outsider).await.unwrap(), U256::from(7));
}

#[tokio::test]
async fn mint_calldata_mints_and_its_transfer_log_is_found_by_index() {
    use alloy::network::TransactionBuilder as _;
    use alloy::providers::Provider as _;

    let chain = Chain::start().await;
    let to = Address::random();
    let input = Token::mint_calldata(to, U256::from(1_500_000));
    let client = awx_chain::ChainClient::connect(chain.anvil.endpoint()).unwrap();
    let outsider = chain.anvil.dev_key(3).unwrap().address();
    let refused = client.estimate_gas(outsider, chain.token.address(), input.clone()).await;
    assert!(
        matches!(refused, Err(ChainError::Reverted { ref message, .. }) if message.contains("not a minter")),
        "{refused:?}"
    );

    let request = alloy::rpc::types::TransactionRequest::default()
        .with_to(chain.token.address())
        .with_input(input);
    let receipt =
        chain.relayer.send_transaction(request).await.unwrap().get_receipt().await.unwrap();
    assert!(receipt.status());
    assert_eq!(chain.token.balance_of(to).await.unwrap(), U256::from(1_500_000));
    let index = chain.token.transfer_log_index(&receipt, Address::ZERO, to, U256::from(1_500_000));
    let logged = receipt.inner.logs().iter().find_map(|log| log.log_index);
    assert!(index.is_some());
    assert_eq!(index, logged);
    assert!(chain.token.receipt_has_transfer(&receipt, Address::ZERO, to, U256::from(1_500_000)));
    assert_eq!(chain.token.transfer_log_index(&receipt, Address::ZERO, to, U256::from(1)), None);
    assert_eq!(
        chain.token.transfer_log_index(&receipt, to, Address::ZERO, U256::from(1_500_000)),
        None
    );
    let other = Token::at(Address::random(), chain.relayer.clone());
    assert_eq!(other.transfer_log_index(&receipt, Address::ZERO, to, U256::from(1_500_000)), None);
}
