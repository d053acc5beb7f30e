//! The chain watcher's commands: which addresses are agents' wallets (deleted agents' included),
//! and an agent's authorization used on chain outside awx (an `authorized` payment captured and
//! recorded as paid by that transaction, a captured one recorded, anything else reported and
//! left alone).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

mod support;

use std::sync::atomic::Ordering;

use awx_api::ledger::Capture;
use awx_api::policy::{
    AuthorizationUse, AuthorizationUsed, AuthorizationUsedReply, LOOKUP_WALLETS_MAX, LookupWallets,
    WalletOwner, codes,
};
use awx_bus::BusError;
use awx_types::{AccountId, Amount};
use awx_x402::{Address, B256};
use support::{AMOUNT_ATOMIC, COMMAND_TIMEOUT, FEE_ATOMIC, NETWORK, PaymentRow, World, token};

fn used(payment: &PaymentRow, tx_hash: B256) -> AuthorizationUsed {
    AuthorizationUsed {
        network: NETWORK.into(),
        token: token(),
        payer: payment.payer,
        nonce: payment.nonce,
        tx_hash,
    }
}

async fn send_used(world: &World, command: &AuthorizationUsed) -> AuthorizationUsedReply {
    world.bus.send(command, COMMAND_TIMEOUT).await.unwrap()
}

#[tokio::test]
async fn lookup_finds_agents_wallets_deleted_or_not_and_nothing_else() {
    let world = World::start().await;
    let (owner_a, owner_b) = (AccountId::new(), AccountId::new());
    let (live, live_address) = world.agent(owner_a, false).await;
    let (deleted, deleted_address) = world.agent(owner_b, true).await;
    let _other = world.agent(owner_a, false).await;

    let reply = world
        .bus
        .send(
            &LookupWallets { addresses: vec![deleted_address, Address::random(), live_address] },
            COMMAND_TIMEOUT,
        )
        .await
        .unwrap();
    let mut wallets = reply.wallets;
    wallets.sort_by_key(|wallet| wallet.address);
    let mut expected = vec![
        WalletOwner { address: live_address, owner: owner_a, agent: live },
        WalletOwner { address: deleted_address, owner: owner_b, agent: deleted },
    ];
    expected.sort_by_key(|wallet| wallet.address);
    assert_eq!(wallets, expected);

    let empty =
        world.bus.send(&LookupWallets { addresses: Vec::new() }, COMMAND_TIMEOUT).await.unwrap();
    assert!(empty.wallets.is_empty());
    world.stop().await;
}

#[tokio::test]
async fn lookup_takes_at_most_the_maximum_addresses() {
    let world = World::start().await;
    let owner = AccountId::new();
    let (agent, address) = world.agent(owner, false).await;

    let mut addresses: Vec<Address> = (1..LOOKUP_WALLETS_MAX).map(|_| Address::random()).collect();
    addresses.push(address);
    let full =
        world.bus.send(&LookupWallets { addresses: addresses.clone() }, COMMAND_TIMEOUT).await;
    assert_eq!(full.unwrap().wallets, vec![WalletOwner { address, owner, agent }]);

    addresses.push(Address::random());
    assert_eq!(addresses.len(), 10_001);
    match world.bus.send(&LookupWallets { addresses }, COMMAND_TIMEOUT).await {
        Err(BusError::Rejected { code, .. }) => assert_eq!(code, codes::INVALID_REQUEST),
        other => panic!("expected a rejection, got {other:?}"),
    }
    world.stop().await;
}

#[tokio::test]
async fn an_authorized_payment_used_elsewhere_is_captured_and_recorded() {
    let world = World::start().await;
    let payment = world.payment("authorized").await;
    let tx_hash = B256::random();
    let command = used(&payment, tx_hash);

    // Redelivered under the same command id: executed once, the same answer.
    let id = uuid::Uuid::now_v7();
    for _ in 0..2 {
        let reply = world.bus.send_with_id(&command, id, COMMAND_TIMEOUT).await.unwrap();
        assert_eq!(
            reply,
            AuthorizationUsedReply {
                payment_id: Some(payment.ledger_id()),
                outcome: AuthorizationUse::Captured
            }
        );
    }
    let (state, captured_at, _) = world.stored(payment.id).await;
    assert_eq!(state, "captured");
    let captured_at = captured_at.expect("a captured payment has its capture time");
    assert_eq!(world.captures(), vec![Capture { hold_id: payment.ledger_id(), amount: None }]);
    let records = world.records();
    assert_eq!(records.len(), 1, "{records:?}");
    let record = &records[0];
    assert_eq!(record.tx_hash, tx_hash);
    let facts = &record.captured;
    assert_eq!(facts.ledger_id, payment.ledger_id());
    assert_eq!(facts.network, NETWORK);
    assert_eq!(facts.token, token());
    assert_eq!(facts.payer, payment.payer);
    assert_eq!(facts.payee, payment.pay_to);
    assert_eq!(facts.amount, Amount::from_atomic(AMOUNT_ATOMIC).to_string());
    assert_eq!(facts.fee, Amount::from_atomic(FEE_ATOMIC).to_string());
    assert_eq!(facts.nonce, payment.nonce);
    assert_eq!(facts.valid_before_unix, payment.valid_before);
    assert_eq!(facts.captured_at_unix, captured_at);

    // Told again (a new command): now captured, so only recorded again, with the same facts;
    // the hold is not captured twice.
    let again = send_used(&world, &command).await;
    assert_eq!(again.outcome, AuthorizationUse::Recorded);
    assert_eq!(again.payment_id, Some(payment.ledger_id()));
    assert_eq!(world.captures().len(), 1);
    let records = world.records();
    assert_eq!(records.len(), 2);
    assert_eq!(records[1], records[0]);
    assert_eq!(world.stored(payment.id).await.0, "captured");
    world.stop().await;
}

#[tokio::test]
async fn an_unknown_authorization_is_reported_and_changes_nothing() {
    let world = World::start().await;
    let payment = world.payment("authorized").await;
    let before = world.stored(payment.id).await;

    // A nonce awx never issued for this wallet, and this payment's nonce on another chain and
    // on another token (an EIP-3009 nonce is scoped by the token contract).
    let unknown_nonce =
        AuthorizationUsed { nonce: B256::random(), ..used(&payment, B256::random()) };
    let other_wallet =
        AuthorizationUsed { payer: Address::random(), ..used(&payment, B256::random()) };
    let other_chain =
        AuthorizationUsed { network: "eip155:8453".into(), ..used(&payment, B256::random()) };
    let other_token =
        AuthorizationUsed { token: Address::random(), ..used(&payment, B256::random()) };
    for command in [unknown_nonce, other_wallet, other_chain, other_token] {
        let reply = send_used(&world, &command).await;
        assert_eq!(
            reply,
            AuthorizationUsedReply { payment_id: None, outcome: AuthorizationUse::Unknown },
            "{command:?}"
        );
    }
    assert_eq!(world.stored(payment.id).await, before);
    assert!(world.captures().is_empty());
    assert!(world.records().is_empty());
    world.stop().await;
}

#[tokio::test]
async fn a_captured_payment_used_elsewhere_is_recorded() {
    let world = World::start().await;
    for state in ["captured", "settled"] {
        let payment = world.payment(state).await;
        let before = world.stored(payment.id).await;
        let tx_hash = B256::random();
        let reply = send_used(&world, &used(&payment, tx_hash)).await;
        assert_eq!(
            reply,
            AuthorizationUsedReply {
                payment_id: Some(payment.ledger_id()),
                outcome: AuthorizationUse::Recorded
            }
        );
        assert_eq!(world.stored(payment.id).await, before, "{state}: the payment is unchanged");
        let records = world.records();
        let record = records.last().unwrap();
        assert_eq!(record.tx_hash, tx_hash);
        assert_eq!(record.captured.ledger_id, payment.ledger_id());
        assert_eq!(record.captured.nonce, payment.nonce);
        assert_eq!(Some(record.captured.captured_at_unix), before.1);
    }
    assert_eq!(world.records().len(), 2);
    assert!(world.captures().is_empty(), "nothing is captured again");
    world.stop().await;
}

#[tokio::test]
async fn a_payment_without_a_usable_authorization_is_unexpected_and_left_alone() {
    let world = World::start().await;
    for state in ["pending_approval", "authorizing", "failed", "rejected", "expired"] {
        let payment = world.payment(state).await;
        let before = world.stored(payment.id).await;
        let reply = send_used(&world, &used(&payment, B256::random())).await;
        assert_eq!(
            reply,
            AuthorizationUsedReply {
                payment_id: Some(payment.ledger_id()),
                outcome: AuthorizationUse::Unexpected
            },
            "{state}"
        );
        assert_eq!(world.stored(payment.id).await, before, "{state}");
    }
    assert!(world.captures().is_empty());
    assert!(world.records().is_empty());
    world.stop().await;
}

#[tokio::test]
async fn an_authorized_payment_whose_hold_is_gone_is_unexpected() {
    let world = World::start().await;
    let payment = world.payment("authorized").await;
    let before = world.stored(payment.id).await;
    world.ledger.refuse.store(true, Ordering::SeqCst);

    let reply = send_used(&world, &used(&payment, B256::random())).await;
    assert_eq!(
        reply,
        AuthorizationUsedReply {
            payment_id: Some(payment.ledger_id()),
            outcome: AuthorizationUse::Unexpected
        }
    );
    assert_eq!(world.stored(payment.id).await, before, "left for an operator");
    assert!(world.records().is_empty());
    world.stop().await;
}
