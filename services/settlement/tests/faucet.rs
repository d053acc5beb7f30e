//! The development faucet: a mint from a relayer, stored before broadcast like a settlement, and
//! the ledger deposit once it is mined; with the signer, the ledger and a real chain.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

mod support;

use alloy::primitives::U256;
use awx_api::facilitator::{Faucet, codes};
use awx_bus::BusError;
use awx_chain::{Anvil, AnvilOptions};
use awx_settlement_service::config::NetworkSettings;
use awx_settlement_service::resumer::resume_once;
use awx_types::{AccountId, AgentId, Amount};
use awx_x402::Address;
use serde_json::json;
use support::{COMMAND_TIMEOUT, Options, World};

fn faucet(world: &World, owner: AccountId, agent: AgentId, to: Address, atomic: u128) -> Faucet {
    Faucet { owner, agent, network: world.network.clone(), to, amount: Amount::from_atomic(atomic) }
}

fn rejection(result: Result<impl std::fmt::Debug, BusError>) -> (String, String) {
    match result {
        Err(BusError::Rejected { code, message }) => (code, message),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[tokio::test]
async fn the_faucet_mints_on_chain_and_the_ledger_records_each_deposit() {
    // A second chain, served without a faucet.
    let other_chain =
        Anvil::spawn(AnvilOptions { chain_id: 31_338, ..AnvilOptions::default() }).await.unwrap();
    let other_rpc = other_chain.endpoint().to_owned();
    let world = World::start_with(Options {
        adjust: Box::new(move |settings| {
            settings.networks.push(NetworkSettings {
                network: "eip155:31338".into(),
                rpc_url: other_rpc,
                receipt_wait_ms: 10_000,
                faucet: false,
                faucet_token: None,
                confirmations: 0,
                watch: Default::default(),
            });
        }),
        ..Options::default()
    })
    .await;
    let (owner, agent, wallet) = (AccountId::new(), AgentId::new(), Address::random());

    let first = world
        .bus
        .send(&faucet(&world, owner, agent, wallet, 2_500_000), COMMAND_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(first.amount, Amount::from_atomic(2_500_000));
    assert_eq!(first.network, world.network);
    assert_eq!(world.balance(wallet).await, U256::from(2_500_000));
    assert_eq!(world.ledger_available(owner, agent).await, Amount::from_atomic(2_500_000));
    let receipt = world
        .facilitator
        .chain(&world.network)
        .unwrap()
        .client
        .receipt(first.tx_hash)
        .await
        .unwrap()
        .unwrap();
    assert!(receipt.status());
    assert_eq!(
        world
            .count("SELECT count(*) FROM settlement.chain_txs WHERE purpose = 'faucet' AND settlement_id IS NULL AND state = 'confirmed' AND last_error IS NULL")
            .await,
        1
    );

    // Another call mints again: a new transaction, a new deposit.
    let second = world
        .bus
        .send(&faucet(&world, owner, agent, wallet, 1_000_000), COMMAND_TIMEOUT)
        .await
        .unwrap();
    assert_ne!(second.tx_hash, first.tx_hash);
    assert_eq!(world.balance(wallet).await, U256::from(3_500_000));
    assert_eq!(world.ledger_available(owner, agent).await, Amount::from_atomic(3_500_000));
    assert_eq!(
        world.count("SELECT count(*) FROM settlement.chain_txs WHERE state = 'confirmed'").await,
        2
    );

    // Networks without a faucet: served without one, or not served at all.
    for network in ["eip155:31338", "eip155:1"] {
        let mut command = faucet(&world, owner, agent, wallet, 1);
        command.network = network.into();
        let (code, message) = rejection(world.bus.send(&command, COMMAND_TIMEOUT).await);
        assert_eq!(code, codes::FAUCET_UNAVAILABLE, "{network}: {message}");
    }

    // A relayer that may not mint: refused before anything is signed, and no nonce is used.
    for relayer in &world.relayers {
        world.token.configure_minter(*relayer, false).await.unwrap();
    }
    let (code, message) =
        rejection(world.bus.send(&faucet(&world, owner, agent, wallet, 5), COMMAND_TIMEOUT).await);
    assert_eq!(code, codes::FAUCET_UNAVAILABLE);
    assert!(message.contains("minter"), "{message}");
    assert_eq!(world.count("SELECT count(*) FROM settlement.chain_txs").await, 2);
    assert_eq!(world.balance(wallet).await, U256::from(3_500_000));
    assert_eq!(world.ledger_available(owner, agent).await, Amount::from_atomic(3_500_000));

    // Minter again: the next mint takes the next relayer nonce (no gap was left).
    for relayer in &world.relayers {
        world.token.configure_minter(*relayer, true).await.unwrap();
    }
    world.bus.send(&faucet(&world, owner, agent, wallet, 7), COMMAND_TIMEOUT).await.unwrap();
    assert_eq!(world.balance(wallet).await, U256::from(3_500_007));
    let nonces: Vec<i64> =
        sqlx::query_scalar("SELECT nonce FROM settlement.chain_txs ORDER BY nonce")
            .fetch_all(&world.db.pool)
            .await
            .unwrap();
    assert_eq!(nonces, vec![0, 1, 2]);
    world.stop().await;
}

#[tokio::test]
async fn a_relayer_that_is_not_a_minter_gets_faucet_unavailable() {
    let world = World::start_with(Options { relayers_mint: false, ..Options::default() }).await;
    let (owner, agent, wallet) = (AccountId::new(), AgentId::new(), Address::random());
    let (code, message) = rejection(
        world.bus.send(&faucet(&world, owner, agent, wallet, 1_000), COMMAND_TIMEOUT).await,
    );
    assert_eq!(code, codes::FAUCET_UNAVAILABLE);
    assert!(message.contains("minter"), "{message}");
    assert_eq!(world.balance(wallet).await, U256::ZERO);
    assert_eq!(world.ledger_available(owner, agent).await, Amount::ZERO);
    assert_eq!(world.count("SELECT count(*) FROM settlement.chain_txs").await, 0);
    world.stop().await;
}

#[tokio::test]
async fn a_mint_stored_but_never_broadcast_is_finished_by_the_resumer() {
    let world = World::start().await;
    let (owner, agent, wallet) = (AccountId::new(), AgentId::new(), Address::random());
    let command = faucet(&world, owner, agent, wallet, 4_200_000);
    let id = uuid::Uuid::now_v7();

    // The mint is signed and stored, then the process "stops" before broadcasting it.
    let stored = world.facilitator.faucet_sign(&command, id).await.unwrap();
    assert_eq!(stored.state, "signed");
    assert_eq!(
        world.count("SELECT count(*) FROM settlement.chain_txs WHERE purpose = 'faucet' AND state = 'signed'").await,
        1
    );
    assert_eq!(world.balance(wallet).await, U256::ZERO);

    world.age_in_flight_transactions().await;
    assert_eq!(resume_once(&world.facilitator).await.unwrap(), 1);
    assert_eq!(world.balance(wallet).await, U256::from(4_200_000));
    assert_eq!(world.ledger_available(owner, agent).await, Amount::from_atomic(4_200_000));
    assert_eq!(
        world.count("SELECT count(*) FROM settlement.chain_txs WHERE state = 'confirmed' AND last_error IS NULL").await,
        1
    );

    // The command delivered again (same id) follows its own mint: no second one.
    let reply = world.bus.send_with_id(&command, id, COMMAND_TIMEOUT).await.unwrap();
    assert_eq!(reply.tx_hash, stored.hash);
    assert_eq!(world.balance(wallet).await, U256::from(4_200_000));
    assert_eq!(world.ledger_available(owner, agent).await, Amount::from_atomic(4_200_000));
    assert_eq!(world.count("SELECT count(*) FROM settlement.chain_txs").await, 1);
    world.stop().await;
}

#[tokio::test]
async fn a_mint_mined_after_the_wait_is_deposited_by_the_resumer() {
    let world = World::start_with(Options {
        adjust: Box::new(|settings| settings.networks[0].receipt_wait_ms = 300),
        ..Options::default()
    })
    .await;
    let (owner, agent, wallet) = (AccountId::new(), AgentId::new(), Address::random());

    world.rpc("evm_setAutomine", json!([false])).await;
    let (code, message) = rejection(
        world.bus.send(&faucet(&world, owner, agent, wallet, 900_000), COMMAND_TIMEOUT).await,
    );
    assert_eq!(code, codes::CHAIN_UNAVAILABLE);
    assert!(message.contains("the mint is broadcast as 0x"), "{message}");
    assert!(message.contains("the deposit will be recorded when it is mined"), "{message}");
    assert_eq!(world.ledger_available(owner, agent).await, Amount::ZERO);
    assert_eq!(
        world.count("SELECT count(*) FROM settlement.chain_txs WHERE state = 'broadcast'").await,
        1
    );

    world.rpc("evm_mine", json!([])).await;
    world.rpc("evm_setAutomine", json!([true])).await;
    assert_eq!(world.balance(wallet).await, U256::from(900_000));
    world.age_in_flight_transactions().await;
    assert_eq!(resume_once(&world.facilitator).await.unwrap(), 1);
    assert_eq!(world.ledger_available(owner, agent).await, Amount::from_atomic(900_000));
    assert_eq!(
        world.count("SELECT count(*) FROM settlement.chain_txs WHERE state = 'confirmed'").await,
        1
    );
    // Nothing is left for the resumer.
    world.age_in_flight_transactions().await;
    assert_eq!(resume_once(&world.facilitator).await.unwrap(), 0);
    world.stop().await;
}
