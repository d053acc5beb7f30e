//! The ledger's commands over the bus (real Redis): replies, rejections with their codes,
//! idempotent replays.

use std::time::Duration;

use awx_api::ledger::{Balances, FeeTiers, Hold};
use awx_bus::{Bus, BusConfig, BusError};
use awx_ledger_service::commands::LedgerHandlers;
use awx_test_support::RedisNamespace;
use awx_types::{AccountId, AgentId};
use tokio_util::sync::CancellationToken;

use crate::helpers::{TestLedger, asset, payee, usdc};

#[tokio::test]
async fn commands_are_answered_over_the_bus() {
    let t = TestLedger::new().await;
    let namespace = RedisNamespace::new();
    let mut config = BusConfig::new("ledger", "ledger");
    config.redis_url = secrecy::SecretString::from(awx_test_support::redis_url());
    config.prefix = namespace.prefix().to_owned();
    let server_bus = Bus::connect(config.clone()).await.unwrap();
    let cancel = CancellationToken::new();
    let server = LedgerHandlers::new(t.ledger.clone()).server(&server_bus).unwrap();
    let running = tokio::spawn(server.run(cancel.clone()));

    let mut client_config = config;
    client_config.service = "gateway".into();
    client_config.schema = "gateway".into();
    let client = Bus::connect(client_config).await.unwrap();
    let (owner, agent) = (AccountId::new(), AgentId::new());
    t.deposit(owner, agent, usdc("1")).await.unwrap();

    let hold = Hold {
        payment_id: awx_types::PaymentId::new(),
        owner,
        agent,
        asset: asset(),
        payee: payee(1),
        amount: usdc("0.10"),
        timeout_seconds: 60,
    };
    let reply = client.send(&hold, Duration::from_secs(10)).await.unwrap();
    assert_eq!(reply.fee, usdc("0.002"));
    let command_id = uuid::Uuid::now_v7();
    let again = client.send_with_id(&hold, command_id, Duration::from_secs(10)).await.unwrap();
    assert_eq!(again, reply, "the same payment id is the same hold");

    let balances = client.send(&Balances { owner, agent }, Duration::from_secs(10)).await.unwrap();
    assert_eq!(balances.wallets[0].available, usdc("0.898"));
    let tiers = client.send(&FeeTiers { owner }, Duration::from_secs(10)).await.unwrap();
    assert_eq!(tiers.current_tier, "starter");

    let too_big = Hold { payment_id: awx_types::PaymentId::new(), amount: usdc("5"), ..hold };
    match client.send(&too_big, Duration::from_secs(10)).await {
        Err(BusError::Rejected { code, .. }) => assert_eq!(code, "insufficient_funds"),
        other => panic!("expected a rejection, got {other:?}"),
    }
    cancel.cancel();
    running.await.unwrap().unwrap();
}
