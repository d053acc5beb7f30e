//! Withdrawals: each account's withdrawal allow-list (set, read, replaced, emptied, bounded), and
//! the approval of a withdrawal (checks in order, nothing held on a refusal, the ledger's hold,
//! a decision the signer accepts for exactly that transfer); a net transfer of kind
//! `withdrawal` is refused.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

mod support;

use std::sync::atomic::Ordering;

use awx_api::policy::{
    GetWithdrawalAddresses, NetDecide, NetKind, SetWithdrawalAddresses, WITHDRAWAL_ADDRESSES_MAX,
    WithdrawDecide, WithdrawalAddresses, codes,
};
use awx_bus::BusError;
use awx_decision::Covers;
use awx_types::{AccountId, AgentId, Amount, LedgerId};
use awx_x402::{Address, B256, Eip3009Authorization, U256};
use support::{CHAIN_ID, COMMAND_TIMEOUT, NETWORK, World, token};

const WITHDRAWN: u128 = 2_500_000;

async fn set(world: &World, owner: AccountId, addresses: Vec<Address>) -> WithdrawalAddresses {
    world.bus.send(&SetWithdrawalAddresses { owner, addresses }, COMMAND_TIMEOUT).await.unwrap()
}

async fn get(world: &World, owner: AccountId) -> Vec<Address> {
    world.bus.send(&GetWithdrawalAddresses { owner }, COMMAND_TIMEOUT).await.unwrap().addresses
}

fn rejection<T: std::fmt::Debug>(result: Result<T, BusError>) -> String {
    match result {
        Err(BusError::Rejected { code, .. }) => code,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

fn sorted(mut addresses: Vec<Address>) -> Vec<Address> {
    addresses.sort_unstable();
    addresses
}

fn withdrawal(owner: AccountId, agent: AgentId, from: Address, to: Address) -> WithdrawDecide {
    let now = u64::try_from(chrono::Utc::now().timestamp()).unwrap();
    WithdrawDecide {
        withdrawal_id: LedgerId::new(),
        owner,
        agent,
        network: NETWORK.into(),
        token: token(),
        decimals: 6,
        authorization: Eip3009Authorization {
            from,
            to,
            value: U256::from(WITHDRAWN),
            valid_after: U256::ZERO,
            valid_before: U256::from(now + 3_600),
            nonce: B256::random(),
        },
        hold_seconds: 7_200,
    }
}

#[tokio::test]
async fn allow_list_is_set_read_replaced_and_emptied() {
    let world = World::start().await;
    let (owner, other) = (AccountId::new(), AccountId::new());
    assert!(get(&world, owner).await.is_empty());

    let (a, b, c) = (Address::random(), Address::random(), Address::random());
    let first = set(&world, owner, vec![b, a, b]).await;
    assert_eq!(first.addresses, sorted(vec![a, b]), "duplicates collapse, sorted");
    assert_eq!(get(&world, owner).await, sorted(vec![a, b]));
    assert!(get(&world, other).await.is_empty(), "another account's list is its own");

    let replaced = set(&world, owner, vec![c]).await;
    assert_eq!(replaced.addresses, vec![c]);
    assert_eq!(get(&world, owner).await, vec![c]);

    let emptied = set(&world, owner, Vec::new()).await;
    assert!(emptied.addresses.is_empty());
    assert!(get(&world, owner).await.is_empty());
    world.stop().await;
}

#[tokio::test]
async fn allow_list_takes_at_most_the_maximum() {
    let world = World::start().await;
    let owner = AccountId::new();
    let full: Vec<Address> = (0..WITHDRAWAL_ADDRESSES_MAX).map(|_| Address::random()).collect();
    assert_eq!(set(&world, owner, full.clone()).await.addresses, sorted(full.clone()));

    let mut over = full.clone();
    over.push(Address::random());
    let refused =
        world.bus.send(&SetWithdrawalAddresses { owner, addresses: over }, COMMAND_TIMEOUT).await;
    assert_eq!(rejection(refused), codes::INVALID_REQUEST);
    assert_eq!(get(&world, owner).await, sorted(full), "a refused list changes nothing");
    world.stop().await;
}

#[tokio::test]
async fn an_approved_withdrawal_is_held_once_and_bound_in_a_decision() {
    let world = World::start().await;
    let owner = AccountId::new();
    let (agent, wallet) = world.agent(owner, false).await;
    let to = Address::random();
    set(&world, owner, vec![Address::random(), to]).await;

    let command = withdrawal(owner, agent, wallet, to);
    let decision = world.bus.send(&command, COMMAND_TIMEOUT).await.unwrap();
    assert_eq!(decision.agent_id, agent);
    assert_eq!((decision.token_name.as_str(), decision.token_version.as_str()), ("USD Coin", "2"));

    let now = chrono::Utc::now().timestamp();
    let claims = world.decisions.verify(&decision.decision, now).unwrap();
    let id_text = command.withdrawal_id.as_uuid().to_string();
    assert_eq!(claims.jti, id_text);
    assert_eq!(claims.sub, agent.to_string());
    assert_eq!(claims.chain_id, CHAIN_ID);
    assert_eq!(claims.token, token());
    assert_eq!(claims.authorization(), command.authorization);
    assert_eq!(claims.covers, Some(Covers::of(NetKind::Withdrawal.as_str(), &[id_text])));
    assert_eq!(claims.covers.as_ref().unwrap().kind, "withdrawal");

    let holds = world.withdrawal_holds();
    assert_eq!(holds.len(), 1);
    let hold = &holds[0];
    assert_eq!(hold.withdrawal_id, command.withdrawal_id);
    assert_eq!((hold.owner, hold.agent), (owner, agent));
    assert_eq!(hold.to, to);
    assert_eq!(hold.amount, Amount::from_atomic(WITHDRAWN));
    assert_eq!(hold.timeout_seconds, command.hold_seconds);
    assert_eq!((hold.asset.network.as_str(), hold.asset.token), (NETWORK, token()));

    // The same command again: the ledger is asked again by the same id (and replays), and the
    // answer is a fresh decision for the same transfer.
    let again = world.bus.send(&command, COMMAND_TIMEOUT).await.unwrap();
    let claims_again = world.decisions.verify(&again.decision, now).unwrap();
    assert_eq!(claims_again.covers, claims.covers);
    assert_eq!(claims_again.authorization(), command.authorization);
    let holds = world.withdrawal_holds();
    assert_eq!(holds.len(), 2);
    assert!(holds.iter().all(|hold| hold.withdrawal_id == command.withdrawal_id));
    world.stop().await;
}

#[tokio::test]
async fn an_empty_allow_list_allows_any_address() {
    let world = World::start().await;
    let owner = AccountId::new();
    let (agent, wallet) = world.agent(owner, false).await;
    let command = withdrawal(owner, agent, wallet, Address::random());
    world.bus.send(&command, COMMAND_TIMEOUT).await.unwrap();
    assert_eq!(world.withdrawal_holds().len(), 1);
    world.stop().await;
}

#[tokio::test]
async fn refused_withdrawals_hold_nothing() {
    let world = World::start().await;
    let owner = AccountId::new();
    let (agent, wallet) = world.agent(owner, false).await;
    let (others_agent, others_wallet) = world.agent(AccountId::new(), false).await;
    let (deleted, deleted_wallet) = world.agent(owner, true).await;
    let allowed = Address::random();
    let refuse = |command: WithdrawDecide| {
        let world = &world;
        async move { rejection(world.bus.send(&command, COMMAND_TIMEOUT).await) }
    };

    // Another owner's agent, and a deleted one.
    assert_eq!(
        refuse(withdrawal(owner, others_agent, others_wallet, allowed)).await,
        codes::AGENT_NOT_FOUND
    );
    assert_eq!(
        refuse(withdrawal(owner, deleted, deleted_wallet, allowed)).await,
        codes::AGENT_NOT_FOUND
    );
    // Not from the agent's wallet.
    assert_eq!(
        refuse(withdrawal(owner, agent, Address::random(), allowed)).await,
        codes::INVALID_REQUEST
    );
    // Nothing, too much, to nowhere, to itself.
    let mut zero = withdrawal(owner, agent, wallet, allowed);
    zero.authorization.value = U256::ZERO;
    assert_eq!(refuse(zero).await, codes::INVALID_REQUEST);
    let mut huge = withdrawal(owner, agent, wallet, allowed);
    huge.authorization.value = U256::MAX;
    assert_eq!(refuse(huge).await, codes::INVALID_REQUEST);
    assert_eq!(
        refuse(withdrawal(owner, agent, wallet, Address::ZERO)).await,
        codes::INVALID_REQUEST
    );
    assert_eq!(refuse(withdrawal(owner, agent, wallet, wallet)).await, codes::INVALID_REQUEST);
    // A token or network the registry does not know, or the wrong decimals.
    let mut unknown = withdrawal(owner, agent, wallet, allowed);
    unknown.token = Address::random();
    assert_eq!(refuse(unknown).await, codes::INVALID_REQUEST);
    let mut elsewhere = withdrawal(owner, agent, wallet, allowed);
    elsewhere.network = "eip155:8453".into();
    assert_eq!(refuse(elsewhere).await, codes::INVALID_REQUEST);
    let mut not_evm = withdrawal(owner, agent, wallet, allowed);
    not_evm.network = "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp".into();
    assert_eq!(refuse(not_evm).await, codes::INVALID_REQUEST);
    let mut decimals = withdrawal(owner, agent, wallet, allowed);
    decimals.decimals = 18;
    assert_eq!(refuse(decimals).await, codes::INVALID_REQUEST);
    // Not on a non-empty allow-list.
    set(&world, owner, vec![allowed]).await;
    assert_eq!(
        refuse(withdrawal(owner, agent, wallet, Address::random())).await,
        codes::WITHDRAWAL_ADDRESS_NOT_ALLOWED
    );
    assert_eq!(codes::WITHDRAWAL_ADDRESS_NOT_ALLOWED, "withdrawal_address_not_allowed");

    assert!(world.withdrawal_holds().is_empty(), "nothing was held");
    world.stop().await;
}

#[tokio::test]
async fn the_ledgers_insufficient_funds_is_passed_on() {
    let world = World::start().await;
    let owner = AccountId::new();
    let (agent, wallet) = world.agent(owner, false).await;
    world.ledger.short_of_funds.store(true, Ordering::SeqCst);
    let command = withdrawal(owner, agent, wallet, Address::random());
    let refused = world.bus.send(&command, COMMAND_TIMEOUT).await;
    assert_eq!(rejection(refused), codes::INSUFFICIENT_FUNDS);
    assert_eq!(world.withdrawal_holds().len(), 1, "the ledger was asked once");
    world.stop().await;
}

#[tokio::test]
async fn a_net_transfer_of_kind_withdrawal_is_refused() {
    let world = World::start().await;
    let payment = world.payment("captured").await;
    let command = NetDecide {
        transfer_id: uuid::Uuid::now_v7(),
        kind: NetKind::Withdrawal,
        chain_id: CHAIN_ID,
        token: token(),
        authorization: Eip3009Authorization {
            from: payment.payer,
            to: payment.pay_to,
            // What a fee transfer of this payment would carry: only the kind is wrong.
            value: U256::from(support::FEE_ATOMIC),
            valid_after: U256::ZERO,
            valid_before: U256::from(u64::MAX / 2),
            nonce: B256::random(),
        },
        payment_ids: vec![payment.ledger_id()],
    };
    let refused = world.bus.send(&command, COMMAND_TIMEOUT).await;
    assert_eq!(rejection(refused), codes::INVALID_REQUEST);
    world.stop().await;
}
