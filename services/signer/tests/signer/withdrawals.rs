//! Withdrawals over the bus: a net transfer of kind `withdrawal`, one EIP-3009 authorization from
//! an agent's wallet to an outside address, whose `payment_ids` is exactly its own id. It nets no
//! payment, but is otherwise signed as any net transfer: against a decision binding it exactly,
//! from the agent's wallet, with a nonce the wallet never signed, once per id.

use alloy::primitives::{Address, B256, U256};
use awx_api::policy::NetKind;
use awx_api::signer::{SignNetTransfer, codes};
use awx_types::{AgentId, PaymentId};
use awx_x402::Eip3009Authorization;
use sqlx::Row as _;
use uuid::Uuid;

use crate::helpers::{
    AUTHORIZATION_CHAIN_ID, AUTHORIZATION_TOKEN, TestSigner, authorization_request, now_unix,
};
use crate::net_transfers::{
    claims_of, covers_of, decided, domain_of, logged, netted, refused, send_net, with_claims,
};

/// A new withdrawal of `value` from `from` (the wallet of `agent_id`) to a random address, as the
/// settlement service asks for it: its id both the transfer id and the only payment id, with a
/// fresh nonce and a decision binding it.
fn withdrawal_request(agent_id: AgentId, from: Address, value: u64) -> SignNetTransfer {
    let id = Uuid::now_v7();
    decided(SignNetTransfer {
        transfer_id: id,
        kind: NetKind::Withdrawal,
        agent_id,
        chain_id: AUTHORIZATION_CHAIN_ID,
        token: AUTHORIZATION_TOKEN,
        token_name: "USDC".into(),
        token_version: "2".into(),
        authorization: Eip3009Authorization {
            from,
            to: Address::random(),
            value: U256::from(value),
            valid_after: U256::ZERO,
            valid_before: U256::from(u64::try_from(now_unix()).unwrap() + 600),
            nonce: B256::random(),
        },
        payment_ids: vec![PaymentId::from_uuid(id)],
        decision: String::new(),
    })
}

/// The `signer.net_transfers` rows of `transfer_id`, as (kind, address, nonce).
async fn net_transfer_rows(t: &TestSigner, transfer_id: Uuid) -> Vec<(String, String, Vec<u8>)> {
    sqlx::query("SELECT kind, address, nonce FROM signer.net_transfers WHERE transfer_id = $1")
        .bind(transfer_id)
        .fetch_all(&t.db.pool)
        .await
        .unwrap()
        .into_iter()
        .map(|row| (row.get("kind"), row.get("address"), row.get("nonce")))
        .collect()
}

#[tokio::test]
async fn a_withdrawal_is_signed_once_and_replays() {
    let t = TestSigner::start().await;
    let agent = AgentId::new();
    let wallet = t.create_wallet(agent).await;
    let request = withdrawal_request(agent, wallet, 25_000);
    // The decision covers the withdrawal by its id, as the policy service issues it.
    let claims = claims_of(&request)
        .covering(awx_decision::Covers::of("withdrawal", &[request.transfer_id.to_string()]));
    assert_eq!(claims.covers, Some(covers_of(NetKind::Withdrawal, &request.payment_ids)));
    let request = with_claims(&request, &claims);

    let signed = send_net(&t, &request).await.unwrap();
    assert_eq!(signed.signature.len(), 65);
    let domain = domain_of(&request);
    assert_eq!(
        request.authorization.recover_signer(&domain, &signed.signature).unwrap(),
        wallet,
        "signed by the agent's wallet"
    );
    let digest = request.authorization.signing_hash(&domain);
    let recovered =
        awx_x402::EcdsaSignature::from_bytes(&signed.signature).unwrap().recover(&digest).unwrap();
    assert_eq!(recovered, wallet);

    // Logged as a net transfer, recorded with kind 'withdrawal', netting no payment.
    let row = sqlx::query("SELECT kind, address FROM signer.signing_log WHERE request_id = $1")
        .bind(request.transfer_id)
        .fetch_one(&t.db.pool)
        .await
        .unwrap();
    assert_eq!(row.get::<String, _>("kind"), "net_transfer");
    assert_eq!(row.get::<String, _>("address"), format!("{wallet:#x}"));
    assert_eq!(
        net_transfer_rows(&t, request.transfer_id).await,
        vec![(
            "withdrawal".to_owned(),
            format!("{wallet:#x}"),
            request.authorization.nonce.to_vec()
        )]
    );
    assert!(netted(&t).await.is_empty(), "a withdrawal nets no payment");
    assert_eq!(t.log_rows().await, 1);

    // The same request again, and under a newly issued decision: the same signature, one row.
    assert_eq!(send_net(&t, &request).await.unwrap(), signed);
    assert_eq!(send_net(&t, &decided(request.clone())).await.unwrap(), signed);
    assert_eq!(logged(&t, request.transfer_id).await, 1);
    assert_eq!(net_transfer_rows(&t, request.transfer_id).await.len(), 1);

    // The same id with other contents, each under a decision binding it exactly, conflicts.
    let changed = |change: &dyn Fn(&mut SignNetTransfer)| {
        let mut changed = request.clone();
        change(&mut changed);
        decided(changed)
    };
    let cases: Vec<(&str, SignNetTransfer)> = vec![
        ("another amount", changed(&|r| r.authorization.value += U256::from(1))),
        ("another address", changed(&|r| r.authorization.to = Address::random())),
        ("another nonce", changed(&|r| r.authorization.nonce = B256::random())),
    ];
    for (what, conflicting) in &cases {
        let (code, message) = refused(&t, conflicting).await;
        assert_eq!(code, codes::REQUEST_CONFLICT, "{what}: {message}");
    }
    assert_eq!(t.log_rows().await, 1, "a conflict logs nothing");
    assert_eq!(send_net(&t, &request).await.unwrap(), signed, "the original still replays");

    // A payment may not reuse the withdrawal's nonce.
    let mut payment = authorization_request(agent, wallet);
    payment.authorization.nonce = request.authorization.nonce;
    let payment = crate::helpers::redecided(payment);
    match t.sign_authorization(&payment).await {
        Err(awx_bus::BusError::Rejected { code, message }) => {
            assert_eq!(code, codes::NONCE_ALREADY_SIGNED, "{message}");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    t.stop().await;
}

#[tokio::test]
async fn a_withdrawal_is_refused_unless_it_is_exactly_what_was_decided() {
    let t = TestSigner::start().await;
    let (alice, bob) = (AgentId::new(), AgentId::new());
    let alice_wallet = t.create_wallet(alice).await;
    let bob_wallet = t.create_wallet(bob).await;
    let payment = authorization_request(alice, alice_wallet);
    t.sign_authorization(&payment).await.unwrap();
    let base = withdrawal_request(alice, alice_wallet, 5_000);
    let own_id = base.payment_ids[0];

    // payment_ids other than exactly the withdrawal's id, under decisions covering them.
    let with_ids =
        |ids: Vec<PaymentId>| decided(SignNetTransfer { payment_ids: ids, ..base.clone() });
    let invalid: Vec<(&str, SignNetTransfer)> = vec![
        ("another id", with_ids(vec![PaymentId::new()])),
        ("a signed payment's id", with_ids(vec![payment.payment_id])),
        ("its id and another", with_ids(vec![own_id, payment.payment_id])),
        ("its id twice", with_ids(vec![own_id, own_id])),
        ("no id", with_ids(vec![])),
    ];
    for (what, request) in &invalid {
        let (code, message) = refused(&t, request).await;
        assert_eq!(code, codes::INVALID_REQUEST, "{what}: {message}");
        assert_eq!(logged(&t, request.transfer_id).await, 0, "{what}");
    }

    // A decision covering the same id as another kind.
    let as_payee = with_claims(
        &base,
        &claims_of(&base).covering(covers_of(NetKind::Payee, &base.payment_ids)),
    );
    let (code, message) = refused(&t, &as_payee).await;
    assert_eq!(code, codes::DECISION_MISMATCH, "{message}");
    assert!(message.contains("request's payment_ids differs"), "{message}");

    // A nonce the wallet already signed for a payment.
    let reused = decided(SignNetTransfer {
        authorization: Eip3009Authorization {
            nonce: payment.authorization.nonce,
            ..base.authorization.clone()
        },
        ..base.clone()
    });
    let (code, message) = refused(&t, &reused).await;
    assert_eq!(code, codes::NONCE_ALREADY_SIGNED, "{message}");

    // From another agent's wallet.
    let from_bob = decided(SignNetTransfer {
        authorization: Eip3009Authorization { from: bob_wallet, ..base.authorization.clone() },
        ..base.clone()
    });
    let (code, message) = refused(&t, &from_bob).await;
    assert_eq!(code, codes::UNKNOWN_WALLET, "{message}");

    assert_eq!(logged(&t, base.transfer_id).await, 0);
    assert!(net_transfer_rows(&t, base.transfer_id).await.is_empty());
    assert_eq!(t.log_rows().await, 1, "the payment only");

    // The exact withdrawal still signs.
    let signed = send_net(&t, &base).await.unwrap();
    assert_eq!(
        base.authorization.recover_signer(&domain_of(&base), &signed.signature).unwrap(),
        alice_wallet
    );
    assert!(netted(&t).await.is_empty());
    t.stop().await;
}
