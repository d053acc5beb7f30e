//! Net transfers over the bus: one EIP-3009 authorization from an agent's wallet for the sum of
//! payments that wallet signed, only against a decision of the policy key whose `covers` names
//! exactly these payments and this kind; each payment is netted at most once per kind, the same
//! request replays its signature, and a transfer id with other contents conflicts.

use alloy::primitives::{Address, B256, U256};
use awx_api::policy::NetKind;
use awx_api::signer::{AuthorizationSigned, SignAuthorization, SignNetTransfer, codes};
use awx_bus::BusError;
use awx_decision::{Covers, DecisionClaims};
use awx_types::{AgentId, PaymentId};
use awx_x402::{Eip3009Authorization, TokenDomain};
use sqlx::Row as _;
use uuid::Uuid;

use crate::helpers::{
    AUTHORIZATION_CHAIN_ID, AUTHORIZATION_TOKEN, DECISION_LIFETIME_SECONDS, TIMEOUT, TestSigner,
    authorization_request, decision_key, now_unix,
};

pub(crate) async fn send_net(
    t: &TestSigner,
    request: &SignNetTransfer,
) -> Result<AuthorizationSigned, BusError> {
    t.client.send(request, TIMEOUT).await
}

/// The code and message of a net transfer's refusal.
pub(crate) async fn refused(t: &TestSigner, request: &SignNetTransfer) -> (String, String) {
    match send_net(t, request).await {
        Err(BusError::Rejected { code, message }) => (code, message),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

/// The code and message of a payment authorization's refusal.
async fn refused_authorization(t: &TestSigner, request: &SignAuthorization) -> (String, String) {
    match t.sign_authorization(request).await {
        Err(BusError::Rejected { code, message }) => (code, message),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

pub(crate) fn domain_of(request: &SignNetTransfer) -> TokenDomain {
    TokenDomain {
        name: request.token_name.clone(),
        version: request.token_version.clone(),
        chain_id: request.chain_id,
        verifying_contract: request.token,
    }
}

/// What a net transfer of `kind` over `payments` covers, as the policy service digests it.
pub(crate) fn covers_of(kind: NetKind, payments: &[PaymentId]) -> Covers {
    let texts: Vec<String> = payments.iter().map(|id| id.as_uuid().to_string()).collect();
    Covers::of(kind.as_str(), &texts)
}

/// The claims binding every field of `request` but `covers` (none), issued now.
pub(crate) fn claims_of(request: &SignNetTransfer) -> DecisionClaims {
    DecisionClaims::new(
        &request.transfer_id.to_string(),
        &request.agent_id.to_string(),
        now_unix(),
        DECISION_LIFETIME_SECONDS,
        request.chain_id,
        &domain_of(request),
        &request.authorization,
    )
}

/// `request` with a fresh decision of the test key binding it exactly, covers included.
pub(crate) fn decided(mut request: SignNetTransfer) -> SignNetTransfer {
    let claims = claims_of(&request).covering(covers_of(request.kind, &request.payment_ids));
    request.decision = decision_key().sign(&claims).unwrap();
    request
}

/// `request` under a decision of the test key with `claims` (valid, but maybe not binding it).
pub(crate) fn with_claims(request: &SignNetTransfer, claims: &DecisionClaims) -> SignNetTransfer {
    SignNetTransfer { decision: decision_key().sign(claims).unwrap(), ..request.clone() }
}

/// A new net transfer of `kind` from `from` (the wallet of `agent_id`) over `payments`, for the
/// sum of their values, to a random address, with a fresh nonce and a decision binding it.
fn net_request(
    agent_id: AgentId,
    from: Address,
    kind: NetKind,
    payments: &[&SignAuthorization],
) -> SignNetTransfer {
    let value = payments.iter().map(|payment| payment.authorization.value).sum();
    decided(SignNetTransfer {
        transfer_id: Uuid::now_v7(),
        kind,
        agent_id,
        chain_id: AUTHORIZATION_CHAIN_ID,
        token: AUTHORIZATION_TOKEN,
        token_name: "USDC".into(),
        token_version: "2".into(),
        authorization: Eip3009Authorization {
            from,
            to: Address::random(),
            value,
            valid_after: U256::ZERO,
            valid_before: U256::from(u64::try_from(now_unix()).unwrap() + 600),
            nonce: B256::random(),
        },
        payment_ids: payments.iter().map(|payment| payment.payment_id).collect(),
        decision: String::new(),
    })
}

/// `count` payments from `wallet` (of `agent`), each signed through the signer.
async fn signed_payments(
    t: &TestSigner,
    agent: AgentId,
    wallet: Address,
    count: usize,
) -> Vec<SignAuthorization> {
    let mut payments = Vec::new();
    for _ in 0..count {
        let payment = authorization_request(agent, wallet);
        t.sign_authorization(&payment).await.unwrap();
        payments.push(payment);
    }
    payments
}

/// Every row of `signer.net_transfer_payments`: (payment, kind, transfer).
pub(crate) async fn netted(t: &TestSigner) -> Vec<(Uuid, String, Uuid)> {
    sqlx::query("SELECT payment_id, kind, transfer_id FROM signer.net_transfer_payments")
        .fetch_all(&t.db.pool)
        .await
        .unwrap()
        .into_iter()
        .map(|row| (row.get("payment_id"), row.get("kind"), row.get("transfer_id")))
        .collect()
}

/// The rows of `signer.net_transfer_payments` of `transfer_id`, as (payment, kind), sorted.
async fn netted_by(t: &TestSigner, transfer_id: Uuid) -> Vec<(Uuid, String)> {
    let mut rows: Vec<(Uuid, String)> = netted(t)
        .await
        .into_iter()
        .filter(|(_, _, transfer)| *transfer == transfer_id)
        .map(|(payment, kind, _)| (payment, kind))
        .collect();
    rows.sort();
    rows
}

/// Signing log rows of `request_id`.
pub(crate) async fn logged(t: &TestSigner, request_id: Uuid) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM signer.signing_log WHERE request_id = $1")
        .bind(request_id)
        .fetch_one(&t.db.pool)
        .await
        .unwrap()
}

fn uuids(payments: &[&SignAuthorization], kind: NetKind) -> Vec<(Uuid, String)> {
    let mut rows: Vec<(Uuid, String)> = payments
        .iter()
        .map(|payment| (payment.payment_id.as_uuid(), kind.as_str().to_owned()))
        .collect();
    rows.sort();
    rows
}

#[tokio::test]
async fn a_net_transfer_over_signed_payments_is_signed_and_replays() {
    let t = TestSigner::start().await;
    let agent = AgentId::new();
    let wallet = t.create_wallet(agent).await;
    let payments = signed_payments(&t, agent, wallet, 2).await;
    let (p1, p2) = (&payments[0], &payments[1]);
    let request = net_request(agent, wallet, NetKind::Payee, &[p1, p2]);
    assert_eq!(request.authorization.value, U256::from(20_000), "the sum of the two payments");

    let signed = send_net(&t, &request).await.unwrap();
    assert_eq!(signed.signature.len(), 65);
    assert!(matches!(signed.signature[64], 27 | 28), "v is 27 or 28");
    // The signature is over the EIP-712 digest of the authorization in the token's domain, by the
    // agent's wallet.
    let domain = domain_of(&request);
    let signer = request.authorization.recover_signer(&domain, &signed.signature).unwrap();
    assert_eq!(signer, wallet, "signed by the agent's wallet");
    let digest = request.authorization.signing_hash(&domain);
    let recovered =
        awx_x402::EcdsaSignature::from_bytes(&signed.signature).unwrap().recover(&digest).unwrap();
    assert_eq!(recovered, wallet);

    // Both payments are netted into this transfer, and the transfer is logged as a net transfer.
    assert_eq!(netted_by(&t, request.transfer_id).await, uuids(&[p1, p2], NetKind::Payee));
    assert_eq!(netted(&t).await.len(), 2);
    let row = sqlx::query(
        "SELECT kind, address, chain_id, target FROM signer.signing_log WHERE request_id = $1",
    )
    .bind(request.transfer_id)
    .fetch_one(&t.db.pool)
    .await
    .unwrap();
    assert_eq!(row.get::<String, _>("kind"), "net_transfer");
    assert_eq!(row.get::<String, _>("address"), format!("{wallet:#x}"));
    assert_eq!(row.get::<i64, _>("chain_id"), i64::try_from(AUTHORIZATION_CHAIN_ID).unwrap());
    assert_eq!(row.get::<String, _>("target"), format!("{AUTHORIZATION_TOKEN:#x}"));
    assert_eq!(t.log_rows().await, 3, "two payments and the net transfer");

    // The same request again: the same signature, nothing added.
    assert_eq!(send_net(&t, &request).await.unwrap(), signed);
    // Under a newly issued decision for the same contents, and with the payments in the other
    // order (the same set), too.
    assert_eq!(send_net(&t, &decided(request.clone())).await.unwrap(), signed);
    let mut reordered = request.clone();
    reordered.payment_ids.reverse();
    assert_eq!(send_net(&t, &decided(reordered)).await.unwrap(), signed);
    assert_eq!(netted(&t).await.len(), 2, "a replay nets nothing more");
    assert_eq!(t.log_rows().await, 3, "a replay logs nothing more");

    // The record cannot be changed or removed.
    let update = sqlx::query("UPDATE signer.net_transfer_payments SET kind = kind")
        .execute(&t.db.pool)
        .await
        .unwrap_err();
    assert!(update.to_string().contains("append-only"), "{update}");
    assert!(
        sqlx::query("DELETE FROM signer.net_transfer_payments").execute(&t.db.pool).await.is_err()
    );
    t.stop().await;
}

#[tokio::test]
async fn a_payment_is_netted_at_most_once_per_kind() {
    let t = TestSigner::start().await;
    let agent = AgentId::new();
    let wallet = t.create_wallet(agent).await;
    let payments = signed_payments(&t, agent, wallet, 3).await;
    let (p1, p2, p3) = (&payments[0], &payments[1], &payments[2]);
    let first = net_request(agent, wallet, NetKind::Payee, &[p1, p2]);
    send_net(&t, &first).await.unwrap();

    // The same payments, or one of them with a payment not netted yet, in another payee
    // transfer (a new transfer id and nonce, under a decision binding it exactly).
    let again = net_request(agent, wallet, NetKind::Payee, &[p1, p2]);
    let overlapping = net_request(agent, wallet, NetKind::Payee, &[p3, p2]);
    for (what, request) in [("the same payments", &again), ("one of them", &overlapping)] {
        let (code, message) = refused(&t, request).await;
        assert_eq!(code, codes::PAYMENT_ALREADY_NETTED, "{what}: {message}");
        assert!(message.contains("payee"), "{what}: {message}");
        assert_eq!(logged(&t, request.transfer_id).await, 0, "{what}: nothing of it is logged");
        assert!(netted_by(&t, request.transfer_id).await.is_empty(), "{what}: nor netted");
    }
    assert_eq!(netted(&t).await.len(), 2, "only the first transfer's payments");
    assert_eq!(t.log_rows().await, 4, "three payments and one net transfer");

    // The other kind over the same payments is another transfer.
    let fees = net_request(agent, wallet, NetKind::Fee, &[p1, p2]);
    let signed = send_net(&t, &fees).await.unwrap();
    assert_eq!(
        fees.authorization.recover_signer(&domain_of(&fees), &signed.signature).unwrap(),
        wallet
    );
    assert_eq!(netted_by(&t, fees.transfer_id).await, uuids(&[p1, p2], NetKind::Fee));
    // ...and once only, too.
    let fees_again = net_request(agent, wallet, NetKind::Fee, &[p2]);
    let (code, message) = refused(&t, &fees_again).await;
    assert_eq!(code, codes::PAYMENT_ALREADY_NETTED, "{message}");
    assert!(message.contains("fee"), "{message}");

    // The refused overlapping transfer left the third payment free.
    let third = net_request(agent, wallet, NetKind::Payee, &[p3]);
    send_net(&t, &third).await.unwrap();
    assert_eq!(netted_by(&t, third.transfer_id).await, uuids(&[p3], NetKind::Payee));
    assert_eq!(netted(&t).await.len(), 5);
    assert_eq!(t.log_rows().await, 6, "three payments and three net transfers");
    t.stop().await;
}

#[tokio::test]
async fn only_payments_the_wallet_signed_are_netted() {
    let t = TestSigner::start().await;
    let (alice, bob) = (AgentId::new(), AgentId::new());
    let alice_wallet = t.create_wallet(alice).await;
    let bob_wallet = t.create_wallet(bob).await;
    let alice_payment = &signed_payments(&t, alice, alice_wallet, 1).await[0];
    let bob_payment = &signed_payments(&t, bob, bob_wallet, 1).await[0];
    let base = net_request(alice, alice_wallet, NetKind::Payee, &[alice_payment]);

    let with_ids =
        |ids: Vec<PaymentId>| decided(SignNetTransfer { payment_ids: ids, ..base.clone() });
    let cases: Vec<(&str, SignNetTransfer)> = vec![
        ("a payment never signed", with_ids(vec![alice_payment.payment_id, PaymentId::new()])),
        ("only payments never signed", with_ids(vec![PaymentId::new()])),
        (
            "another agent's payment",
            with_ids(vec![alice_payment.payment_id, bob_payment.payment_id]),
        ),
        (
            "a payment named twice",
            with_ids(vec![alice_payment.payment_id, alice_payment.payment_id]),
        ),
        (
            "a payment signed on another token",
            decided(SignNetTransfer { token: Address::random(), ..base.clone() }),
        ),
        (
            "a payment signed on another chain",
            decided(SignNetTransfer { chain_id: AUTHORIZATION_CHAIN_ID + 1, ..base.clone() }),
        ),
    ];
    for (what, request) in &cases {
        let (code, message) = refused(&t, request).await;
        assert_eq!(code, codes::UNKNOWN_PAYMENT, "{what}: {message}");
        assert_eq!(logged(&t, request.transfer_id).await, 0, "{what}");
    }
    // Bob's payment netted by Bob's agent from Alice's wallet is not Bob's wallet.
    let from_alice = net_request(bob, alice_wallet, NetKind::Payee, &[bob_payment]);
    let (code, message) = refused(&t, &from_alice).await;
    assert_eq!(code, codes::UNKNOWN_WALLET, "{message}");
    assert!(netted(&t).await.is_empty());
    assert_eq!(t.log_rows().await, 2, "the two payments only");

    // Each wallet nets its own payments.
    send_net(&t, &base).await.unwrap();
    let bobs = net_request(bob, bob_wallet, NetKind::Payee, &[bob_payment]);
    send_net(&t, &bobs).await.unwrap();
    assert_eq!(netted(&t).await.len(), 2);
    t.stop().await;
}

#[tokio::test]
async fn a_decision_must_cover_exactly_this_net_transfer() {
    let t = TestSigner::start().await;
    let agent = AgentId::new();
    let wallet = t.create_wallet(agent).await;
    let payments = signed_payments(&t, agent, wallet, 3).await;
    let (p1, p2, p3) = (&payments[0], &payments[1], &payments[2]);
    let good = net_request(agent, wallet, NetKind::Payee, &[p1, p2]);
    let exact = claims_of(&good);

    let covering = |covers: Covers| with_claims(&good, &exact.clone().covering(covers));
    let mut more_value = exact.clone();
    more_value.value += U256::from(1);
    let mut other_to = exact.clone();
    other_to.to = Address::random();
    let ids = |payments: &[&SignAuthorization]| -> Vec<PaymentId> {
        payments.iter().map(|payment| payment.payment_id).collect()
    };
    let cases: Vec<(&str, SignNetTransfer, &str)> = vec![
        ("other payments", covering(covers_of(NetKind::Payee, &ids(&[p1, p3]))), "payment_ids"),
        ("fewer payments", covering(covers_of(NetKind::Payee, &ids(&[p1]))), "payment_ids"),
        ("more payments", covering(covers_of(NetKind::Payee, &ids(&[p1, p2, p3]))), "payment_ids"),
        ("another kind", covering(covers_of(NetKind::Fee, &ids(&[p1, p2]))), "payment_ids"),
        (
            "another value",
            with_claims(&good, &more_value.covering(covers_of(NetKind::Payee, &ids(&[p1, p2])))),
            "authorization.value",
        ),
        (
            "another payee",
            with_claims(&good, &other_to.covering(covers_of(NetKind::Payee, &ids(&[p1, p2])))),
            "authorization.to",
        ),
        // Every field bound but no covers: a payment's kind of decision.
        ("no covers", with_claims(&good, &exact), "payment_ids"),
        // A payment's own decision, as the policy service issued it.
        (
            "a payment's decision",
            SignNetTransfer { decision: p1.decision.clone(), ..good.clone() },
            "transfer_id",
        ),
    ];
    for (what, request, field) in &cases {
        let (code, message) = refused(&t, request).await;
        assert_eq!(code, codes::DECISION_MISMATCH, "{what}: {message}");
        assert!(message.contains(&format!("request's {field} differs")), "{what}: {message}");
        assert_eq!(logged(&t, request.transfer_id).await, 0, "{what}");
    }
    // The same for a fee transfer whose decision covers the payee transfer of its payments.
    let fees = net_request(agent, wallet, NetKind::Fee, &[p1, p2]);
    let as_payee =
        with_claims(&fees, &claims_of(&fees).covering(covers_of(NetKind::Payee, &ids(&[p1, p2]))));
    let (code, message) = refused(&t, &as_payee).await;
    assert_eq!(code, codes::DECISION_MISMATCH, "{message}");

    // A net decision (covers set) never signs a payment, even binding its every field.
    let payment = authorization_request(agent, wallet);
    let payment_claims = DecisionClaims::new(
        &payment.payment_id.to_string(),
        &payment.agent_id.to_string(),
        now_unix(),
        DECISION_LIFETIME_SECONDS,
        payment.chain_id,
        &TokenDomain {
            name: payment.token_name.clone(),
            version: payment.token_version.clone(),
            chain_id: payment.chain_id,
            verifying_contract: payment.token,
        },
        &payment.authorization,
    )
    .covering(covers_of(NetKind::Payee, &[payment.payment_id]));
    let netted_payment = SignAuthorization {
        decision: decision_key().sign(&payment_claims).unwrap(),
        ..payment.clone()
    };
    let (code, message) = refused_authorization(&t, &netted_payment).await;
    assert_eq!(code, codes::DECISION_MISMATCH, "{message}");
    assert!(message.contains("request's covers differs"), "{message}");

    assert!(netted(&t).await.is_empty());
    assert_eq!(t.log_rows().await, 3, "the three payments only");
    // The exact decisions still sign.
    send_net(&t, &good).await.unwrap();
    send_net(&t, &fees).await.unwrap();
    t.sign_authorization(&payment).await.unwrap();
    assert_eq!(netted(&t).await.len(), 4);
    t.stop().await;
}

#[tokio::test]
async fn a_transfer_id_reused_with_other_contents_conflicts() {
    let t = TestSigner::start().await;
    let agent = AgentId::new();
    let wallet = t.create_wallet(agent).await;
    let payments = signed_payments(&t, agent, wallet, 3).await;
    let (p1, p2, p3) = (&payments[0], &payments[1], &payments[2]);
    let first = net_request(agent, wallet, NetKind::Payee, &[p1, p2]);
    let signed = send_net(&t, &first).await.unwrap();

    let changed = |change: &dyn Fn(&mut SignNetTransfer)| {
        let mut request = first.clone();
        change(&mut request);
        decided(request)
    };
    let cases: Vec<(&str, SignNetTransfer)> = vec![
        ("another nonce", changed(&|r| r.authorization.nonce = B256::random())),
        ("another value", changed(&|r| r.authorization.value += U256::from(1))),
        ("another payee", changed(&|r| r.authorization.to = Address::random())),
        ("another kind", changed(&|r| r.kind = NetKind::Fee)),
        ("fewer payments", changed(&|r| r.payment_ids = vec![p1.payment_id])),
        ("another payment", changed(&|r| r.payment_ids = vec![p1.payment_id, p3.payment_id])),
        (
            "more payments",
            changed(&|r| r.payment_ids = vec![p1.payment_id, p2.payment_id, p3.payment_id]),
        ),
        // A payment's id is its authorization's request id: not a net transfer's.
        ("a payment's id", changed(&|r| r.transfer_id = p3.payment_id.as_uuid())),
    ];
    for (what, request) in &cases {
        let (code, message) = refused(&t, request).await;
        assert_eq!(code, codes::REQUEST_CONFLICT, "{what}: {message}");
    }
    assert_eq!(netted(&t).await.len(), 2, "a conflict nets nothing");
    assert_eq!(netted_by(&t, first.transfer_id).await, uuids(&[p1, p2], NetKind::Payee));
    assert_eq!(t.log_rows().await, 4, "a conflict logs nothing");

    // The original still replays, and a new transfer id with the changed contents signs anew.
    assert_eq!(send_net(&t, &first).await.unwrap(), signed);
    let mut fresh = SignNetTransfer { transfer_id: Uuid::now_v7(), ..cases[5].1.clone() };
    let (code, _) = refused(&t, &decided(fresh.clone())).await;
    assert_eq!(code, codes::NONCE_ALREADY_SIGNED, "the first transfer signed this nonce");
    fresh.authorization.nonce = B256::random();
    let (code, _) = refused(&t, &decided(fresh)).await;
    assert_eq!(code, codes::PAYMENT_ALREADY_NETTED, "p1 is netted by the first transfer");
    let mut fresh = cases[3].1.clone();
    fresh.transfer_id = Uuid::now_v7();
    fresh.authorization.nonce = B256::random();
    let fresh = decided(fresh);
    let fee_signed = send_net(&t, &fresh).await.unwrap();
    assert_ne!(fee_signed, signed, "the fee transfer signs anew");
    assert_eq!(
        fresh.authorization.recover_signer(&domain_of(&fresh), &fee_signed.signature).unwrap(),
        wallet
    );
    assert_eq!(netted_by(&t, fresh.transfer_id).await, uuids(&[p1, p2], NetKind::Fee));
    t.stop().await;
}
