//! Agent wallets and EIP-3009 authorizations over the bus: wallets are created once per agent
//! (even under concurrent calls); an authorization is signed only against a valid decision of
//! the policy key that binds every field, only from the agent's own wallet, once per payment and
//! once per wallet nonce; and what is signed pays on a real chain.

use alloy::primitives::{Address, B256, U256};
use alloy::signers::local::PrivateKeySigner;
use awx_api::signer::{SignAuthorization, codes};
use awx_bus::BusError;
use awx_chain::{Anvil, AnvilOptions, connect_with_wallet, deploy_test_usdc};
use awx_decision::DecisionKey;
use awx_types::{AgentId, PaymentId};
use awx_x402::{Eip3009Authorization, Eip3009Payload, TokenDomain};
use sqlx::Row as _;

use crate::helpers::{
    DECISION_LIFETIME_SECONDS, KEK_HEX, TestSigner, authorization_request, decide, decision_key,
    decrypt_independently, now_unix, redecided, stored_keys,
};

/// The code and message of a refusal.
async fn refused(t: &TestSigner, request: &SignAuthorization) -> (String, String) {
    match t.sign_authorization(request).await {
        Err(BusError::Rejected { code, message }) => (code, message),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

/// Rows of `signer.<table>` (`table` is one of this file's literals).
async fn count(t: &TestSigner, table: &'static str) -> i64 {
    let sql = format!("SELECT count(*) FROM signer.{table}");
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(&t.db.pool).await.unwrap()
}

fn domain_of(request: &SignAuthorization) -> TokenDomain {
    TokenDomain {
        name: request.token_name.clone(),
        version: request.token_version.clone(),
        chain_id: request.chain_id,
        verifying_contract: request.token,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wallet_is_created_once_per_agent_even_concurrently() {
    let t = TestSigner::start().await;
    let (alice, bob) = (AgentId::new(), AgentId::new());
    let wallet = t.create_wallet(alice).await;
    assert_eq!(t.create_wallet(alice).await, wallet, "the same agent, the same address");
    let other = t.create_wallet(bob).await;
    assert_ne!(other, wallet, "another agent, another wallet");
    assert!(!t.relayers.contains(&wallet), "an agent wallet is not a relayer");

    // Ten at once for a new agent: one wins, the others answer its address.
    let carol = AgentId::new();
    let calls: Vec<_> = (0..10)
        .map(|_| {
            let client = t.client.clone();
            tokio::spawn(async move {
                client
                    .send(
                        &awx_api::signer::CreateWallet { agent_id: carol },
                        crate::helpers::TIMEOUT,
                    )
                    .await
                    .unwrap()
                    .address
            })
        })
        .collect();
    let mut addresses = Vec::new();
    for call in calls {
        addresses.push(call.await.unwrap());
    }
    assert!(addresses.iter().all(|address| *address == addresses[0]), "{addresses:?}");
    assert_eq!(count(&t, "agent_wallets").await, 3, "one wallet per agent");

    // Each wallet is an agent key, stored encrypted like the relayers', and it is the key of
    // its address (decrypted here independently of the service).
    let agent_keys: Vec<_> =
        stored_keys(&t.db.pool).await.into_iter().filter(|key| key.purpose == "agent").collect();
    assert_eq!(agent_keys.len(), 3, "no key was made for a losing call");
    for (agent, address) in [(alice, wallet), (bob, other), (carol, addresses[0])] {
        let key = agent_keys.iter().find(|key| key.address == format!("{address:#x}")).unwrap();
        let private_key = decrypt_independently(key, KEK_HEX).unwrap();
        assert_eq!(PrivateKeySigner::from_slice(&private_key).unwrap().address(), address);
        let linked: String =
            sqlx::query_scalar("SELECT address FROM signer.agent_wallets WHERE agent_id = $1")
                .bind(agent.as_uuid())
                .fetch_one(&t.db.pool)
                .await
                .unwrap();
        assert_eq!(linked, format!("{address:#x}"));
    }

    // The link cannot be changed or removed.
    let update = sqlx::query("UPDATE signer.agent_wallets SET address = address")
        .execute(&t.db.pool)
        .await
        .unwrap_err();
    assert!(update.to_string().contains("append-only"), "{update}");
    let delete = sqlx::query("DELETE FROM signer.agent_wallets").execute(&t.db.pool).await;
    assert!(delete.is_err(), "wallet links are never deleted");
    t.stop().await;
}

#[tokio::test]
async fn an_authorization_signed_over_the_bus_pays_on_chain() {
    let anvil = Anvil::spawn(AnvilOptions::default()).await.unwrap();
    let deployer = connect_with_wallet(anvil.endpoint(), anvil.dev_key(0).unwrap()).unwrap();
    let token = deploy_test_usdc(&deployer, "USD Coin", "2").await.unwrap();

    let t = TestSigner::start().await;
    let agent = AgentId::new();
    let wallet = t.create_wallet(agent).await;
    token.mint(wallet, U256::from(5_000_000)).await.unwrap();

    let payee = Address::random();
    let value = U256::from(1_234_567);
    let mut request = authorization_request(agent, wallet);
    request.chain_id = anvil.chain_id();
    request.token = token.address();
    request.token_name = "USD Coin".into();
    request.token_version = "2".into();
    request.authorization.to = payee;
    request.authorization.value = value;
    let request = redecided(request);

    let signed = t.sign_authorization(&request).await.unwrap();
    assert_eq!(signed.signature.len(), 65);
    assert!(matches!(signed.signature[64], 27 | 28), "v is 27 or 28");
    let domain = domain_of(&request);
    let signer = request.authorization.recover_signer(&domain, &signed.signature).unwrap();
    assert_eq!(signer, wallet, "signed by the agent's wallet");

    // The log and the authorization are recorded, bound to the payment.
    let row = sqlx::query(
        "SELECT l.kind, l.address, l.chain_id, l.target, a.nonce, a.token \
         FROM signer.signing_log l JOIN signer.authorizations a ON a.request_id = l.request_id \
         WHERE a.payment_id = $1",
    )
    .bind(request.payment_id.as_uuid())
    .fetch_one(&t.db.pool)
    .await
    .unwrap();
    assert_eq!(row.get::<String, _>("kind"), "authorization");
    assert_eq!(row.get::<String, _>("address"), format!("{wallet:#x}"));
    assert_eq!(row.get::<i64, _>("chain_id"), i64::try_from(anvil.chain_id()).unwrap());
    assert_eq!(row.get::<String, _>("target"), format!("{:#x}", token.address()));
    assert_eq!(row.get::<String, _>("token"), format!("{:#x}", token.address()));
    assert_eq!(row.get::<Vec<u8>, _>("nonce"), request.authorization.nonce.to_vec());

    // Anyone may submit it: the token accepts the signature, and the payee is paid.
    let payload = Eip3009Payload {
        signature: signed.signature,
        authorization: request.authorization.clone(),
    };
    let receipt = token.transfer_with_authorization(&payload).await.unwrap();
    assert!(receipt.status());
    assert!(token.receipt_has_transfer(&receipt, wallet, payee, value));
    assert_eq!(token.balance_of(payee).await.unwrap(), value, "the payee received the value");
    assert_eq!(token.balance_of(wallet).await.unwrap(), U256::from(5_000_000) - value);
    assert!(token.authorization_state(wallet, request.authorization.nonce).await.unwrap());
    t.stop().await;
}

#[tokio::test]
async fn without_a_decision_key_no_authorization_is_signed() {
    let t = TestSigner::with(|settings| settings.decision_public_key_hex = None).await;
    let agent = AgentId::new();
    let wallet = t.create_wallet(agent).await;
    let (code, message) = refused(&t, &authorization_request(agent, wallet)).await;
    assert_eq!(code, codes::DECISION_INVALID);
    assert!(message.contains("no policy key configured"), "{message}");
    assert_eq!(t.log_rows().await, 0);
    t.stop().await;
}

#[tokio::test]
async fn a_decision_that_is_not_valid_is_refused() {
    let t = TestSigner::start().await;
    let agent = AgentId::new();
    let wallet = t.create_wallet(agent).await;
    let good = authorization_request(agent, wallet);
    let now = now_unix();

    let stranger = DecisionKey::generate();
    let other_key = SignAuthorization {
        decision: decide(&good, &stranger, now, DECISION_LIFETIME_SECONDS),
        ..good.clone()
    };
    let expired = SignAuthorization {
        decision: decide(&good, &decision_key(), now - 200, 100),
        ..good.clone()
    };
    let too_long =
        SignAuthorization { decision: decide(&good, &decision_key(), now, 3_600), ..good.clone() };
    let garbage = SignAuthorization { decision: "not.a.jwt".into(), ..good.clone() };
    let empty = SignAuthorization { decision: String::new(), ..good.clone() };
    for (what, request, says) in [
        ("another key", other_key, "signature"),
        ("expired", expired, "expired"),
        ("too long", too_long, "longer"),
        ("garbage", garbage, "malformed"),
        ("empty", empty, "malformed"),
    ] {
        let (code, message) = refused(&t, &request).await;
        assert_eq!(code, codes::DECISION_INVALID, "{what}: {message}");
        assert!(message.contains(says), "{what}: {message}");
    }
    assert_eq!(t.log_rows().await, 0, "no refusal signs or logs");
    assert_eq!(count(&t, "authorizations").await, 0);

    // The valid decision is still accepted.
    t.sign_authorization(&good).await.unwrap();
    t.stop().await;
}

#[tokio::test]
async fn every_field_the_decision_does_not_bind_is_refused_by_name() {
    let t = TestSigner::start().await;
    let agent = AgentId::new();
    let wallet = t.create_wallet(agent).await;
    let good = authorization_request(agent, wallet);

    let changed = |change: &dyn Fn(&mut SignAuthorization)| {
        let mut request = good.clone();
        change(&mut request);
        request
    };
    let cases: Vec<(&str, SignAuthorization)> = vec![
        ("authorization.value", changed(&|r| r.authorization.value += U256::from(1))),
        ("authorization.to", changed(&|r| r.authorization.to = Address::random())),
        ("authorization.nonce", changed(&|r| r.authorization.nonce = B256::random())),
        ("authorization.valid_before", changed(&|r| r.authorization.valid_before += U256::from(1))),
        ("authorization.valid_after", changed(&|r| r.authorization.valid_after = U256::from(1))),
        ("authorization.from", changed(&|r| r.authorization.from = Address::random())),
        ("chain_id", changed(&|r| r.chain_id = 1)),
        ("token", changed(&|r| r.token = Address::random())),
        ("token_name", changed(&|r| r.token_name = "USD Coin".into())),
        ("token_version", changed(&|r| r.token_version = "1".into())),
        ("payment_id", changed(&|r| r.payment_id = PaymentId::new())),
        ("agent_id", changed(&|r| r.agent_id = AgentId::new())),
    ];
    for (field, request) in cases {
        let (code, message) = refused(&t, &request).await;
        assert_eq!(code, codes::DECISION_MISMATCH, "{field}: {message}");
        assert!(message.contains(&format!("request's {field} differs")), "{field}: {message}");
    }
    assert_eq!(t.log_rows().await, 0);
    assert_eq!(count(&t, "authorizations").await, 0);
    t.sign_authorization(&good).await.unwrap();
    t.stop().await;
}

#[tokio::test]
async fn the_same_request_replays_the_same_signature() {
    let t = TestSigner::start().await;
    let agent = AgentId::new();
    let wallet = t.create_wallet(agent).await;
    let request = authorization_request(agent, wallet);
    let first = t.sign_authorization(&request).await.unwrap();
    assert_eq!(t.sign_authorization(&request).await.unwrap(), first);
    // Under a newly issued decision for the same contents, too.
    assert_eq!(t.sign_authorization(&redecided(request.clone())).await.unwrap(), first);

    // At once, from several callers: one signs, every one gets that signature.
    let concurrent = authorization_request(agent, wallet);
    let calls: Vec<_> = (0..5)
        .map(|_| {
            let client = t.client.clone();
            let request = concurrent.clone();
            tokio::spawn(async move { client.send(&request, crate::helpers::TIMEOUT).await })
        })
        .collect();
    let mut signatures = Vec::new();
    for call in calls {
        signatures.push(call.await.unwrap().unwrap().signature);
    }
    assert!(signatures.iter().all(|signature| *signature == signatures[0]));
    assert_eq!(t.log_rows().await, 2, "one log row per payment");
    assert_eq!(count(&t, "authorizations").await, 2);

    // The record cannot be changed or removed.
    let update = sqlx::query("UPDATE signer.authorizations SET token = token")
        .execute(&t.db.pool)
        .await
        .unwrap_err();
    assert!(update.to_string().contains("append-only"), "{update}");
    assert!(sqlx::query("DELETE FROM signer.authorizations").execute(&t.db.pool).await.is_err());
    t.stop().await;
}

#[tokio::test]
async fn a_payment_and_a_wallet_nonce_are_signed_at_most_once() {
    let t = TestSigner::start().await;
    let agent = AgentId::new();
    let wallet = t.create_wallet(agent).await;
    let first = authorization_request(agent, wallet);
    t.sign_authorization(&first).await.unwrap();

    // The same payment id with another nonce, even under a valid decision binding it.
    let mut other_nonce = first.clone();
    other_nonce.authorization.nonce = B256::random();
    let (code, message) = refused(&t, &redecided(other_nonce)).await;
    assert_eq!(code, codes::PAYMENT_ALREADY_SIGNED, "{message}");
    assert!(message.contains(&first.payment_id.to_string()), "{message}");

    // Another payment reusing the wallet's nonce on the same chain and token.
    let mut reused = authorization_request(agent, wallet);
    reused.authorization.nonce = first.authorization.nonce;
    let (code, message) = refused(&t, &redecided(reused.clone())).await;
    assert_eq!(code, codes::NONCE_ALREADY_SIGNED, "{message}");
    assert_eq!(t.log_rows().await, 1, "neither was signed");

    // The nonce is per (wallet, chain, token): on another token it is another authorization.
    reused.token = Address::random();
    t.sign_authorization(&redecided(reused)).await.unwrap();
    assert_eq!(count(&t, "authorizations").await, 2);
    t.stop().await;
}

#[tokio::test]
async fn only_the_agents_own_wallet_signs() {
    let t = TestSigner::start().await;
    let (alice, bob) = (AgentId::new(), AgentId::new());
    let alice_wallet = t.create_wallet(alice).await;
    let bob_wallet = t.create_wallet(bob).await;

    // Alice's payment from Bob's wallet, under a decision that binds exactly that.
    let (code, message) = refused(&t, &authorization_request(alice, bob_wallet)).await;
    assert_eq!(code, codes::UNKNOWN_WALLET, "{message}");
    // A relayer is not a wallet either, and an agent without a wallet has none.
    let (code, _) = refused(&t, &authorization_request(alice, t.relayer())).await;
    assert_eq!(code, codes::UNKNOWN_WALLET);
    let (code, _) = refused(&t, &authorization_request(AgentId::new(), alice_wallet)).await;
    assert_eq!(code, codes::UNKNOWN_WALLET);
    assert_eq!(t.log_rows().await, 0);

    let signed = t.sign_authorization(&authorization_request(alice, alice_wallet)).await.unwrap();
    assert_eq!(signed.signature.len(), 65);
    t.stop().await;
}

/// The authorization a decision binds is exactly what the signer signs: the claims' view of it
/// hashes to the same EIP-712 digest as the request's.
#[test]
fn the_claims_bind_the_signed_digest() {
    let request = authorization_request(AgentId::new(), Address::random());
    let claims = decision_key().verifier().verify(&request.decision, now_unix()).unwrap();
    let domain = domain_of(&request);
    assert_eq!(claims.domain(), domain);
    let authorization: Eip3009Authorization = claims.authorization();
    assert_eq!(authorization, request.authorization);
    assert_eq!(
        authorization.signing_hash(&claims.domain()),
        request.authorization.signing_hash(&domain)
    );
}
