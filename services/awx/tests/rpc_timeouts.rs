//! A chain node that accepts connections and never answers: every call the platform makes to it
//! fails after the configured `rpc_timeout_ms` instead of hanging, and the resumer of every other
//! chain keeps finishing that chain's transactions (one resumer loop per chain).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use awx_settlement_service::config::NetworkSettings;
use awx_settlement_service::facilitator::FacilitatorError;
use awx_settlement_service::{Facilitator, SettlementSettings};
use awx_types::AccountId;
use awx_x402::{Address, FacilitatorRequest, PaymentPayload, PaymentRequirements, TokenDomain};
use serde_json::json;
use support::World;
use tokio::net::TcpListener;

/// The chain id of the node that never answers (anvil is 31337).
const HUNG_CHAIN_ID: u64 = 990_001;
/// How long the platform may wait for the hung node, in the test that sets it.
const RPC_TIMEOUT_MS: u64 = 500;
/// Well above `RPC_TIMEOUT_MS`, and below the 10 s default: a call that takes this long was
/// not bounded by the configured timeout.
const CALL_BOUND: Duration = Duration::from_secs(5);
/// How long the test waits for the resumer of the answering chain.
const RESUME_BOUND: Duration = Duration::from_secs(60);

/// A loopback TCP listener that accepts connections, reads nothing and never answers.
struct HungNode {
    url: String,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl HungNode {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                held.push(socket);
            }
        });
        Self { url, accepted, task }
    }

    fn network(&self) -> NetworkSettings {
        NetworkSettings {
            network: format!("eip155:{HUNG_CHAIN_ID}"),
            rpc_url: self.url.clone(),
            receipt_wait_ms: 1_000,
            faucet: false,
            faucet_token: None,
            confirmations: 0,
            watch: Default::default(),
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for HungNode {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An outside payer's payment of the world's token on the hung chain.
fn hung_payment(world: &World) -> (PaymentPayload, PaymentRequirements) {
    let payer = alloy::signers::local::PrivateKeySigner::random();
    let mut requirements = world.requirements(Address::random(), 100_000);
    requirements.network = format!("eip155:{HUNG_CHAIN_ID}");
    let domain = TokenDomain { chain_id: HUNG_CHAIN_ID, ..world.domain() };
    (world.payment_with(&payer, &requirements, &domain, |_| {}), requirements)
}

/// Polls (bounded by the caller) until `sql` counts 1.
async fn until_one(world: &World, sql: &'static str) {
    while world.count(sql).await != 1 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_node_that_never_answers_fails_verify_and_settle_within_the_rpc_timeout() {
    let hung = HungNode::start().await;
    let world = World::start().await;
    let mut config = awx_bus::BusConfig::new("tester", "tester");
    config.redis_url = secrecy::SecretString::from(awx_test_support::redis_url());
    config.prefix = world.namespace.prefix().to_owned();
    let bus = awx_bus::Bus::connect(config).await.unwrap();
    let settings = SettlementSettings {
        networks: vec![hung.network()],
        rpc_timeout_ms: RPC_TIMEOUT_MS,
        ..SettlementSettings::default()
    };
    let facilitator = Facilitator::new(world.db.pool.clone(), bus.clone(), settings).unwrap();
    let (payload, requirements) = hung_payment(&world);
    let request = FacilitatorRequest::v2(&payload, &requirements);

    let verified = tokio::time::timeout(CALL_BOUND, facilitator.verify(AccountId::new(), &request))
        .await
        .expect("verify waited on the hung node past the RPC timeout");
    let error = verified.expect_err("a node that never answers cannot verify a payment");
    assert!(matches!(error, FacilitatorError::Chain(_)), "{error:?}");
    let after_verify = hung.accepted();
    assert!(after_verify >= 1, "verify's call reached the hung node");

    let settled = tokio::time::timeout(CALL_BOUND, facilitator.settle(AccountId::new(), &request))
        .await
        .expect("settle waited on the hung node past the RPC timeout");
    let error = settled.expect_err("a node that never answers cannot settle a payment");
    assert!(matches!(error, FacilitatorError::Chain(_)), "{error:?}");
    assert!(hung.accepted() > after_verify, "settle's call reached the hung node");
    assert_eq!(world.count("SELECT count(*) FROM settlement.chain_txs").await, 0);

    bus.close();
    world.stop().await;
}

#[tokio::test]
async fn a_node_that_never_answers_does_not_hold_up_another_chains_resumer() {
    let hung = HungNode::start().await;
    let hung_network = hung.network();
    let world = World::start_with(|args| {
        args.networks[0].receipt_wait_ms = 300;
        args.networks.push(hung_network);
    })
    .await;
    // A full page of the hung chain's transactions, older than anything on anvil: one resumer
    // over every chain would spend an RPC timeout on each of them before anvil's.
    sqlx::query(
        "INSERT INTO settlement.chain_txs (id, chain_id, relayer, nonce, raw, hash, state, purpose, deposit, updated_at)
         SELECT gen_random_uuid(), $1, '0x00000000000000000000000000000000000000aa', n, '\\x00'::bytea,
                '0x' || lpad(to_hex(n), 64, '0'), 'broadcast', 'faucet', '{}'::jsonb, now() - interval '1 hour'
         FROM generate_series(1, 100) AS n",
    )
    .bind(i64::try_from(HUNG_CHAIN_ID).unwrap())
    .execute(&world.db.pool)
    .await
    .unwrap();
    // The hung chain's resumer is waiting on its node.
    tokio::time::timeout(RESUME_BOUND, async {
        while hung.accepted() == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the hung chain's resumer never called its node");

    // A settlement on anvil whose settle stopped waiting before the transaction was mined.
    let payer = world.funded_payer(1_000_000).await;
    let payee = Address::random();
    let requirements = world.requirements(payee, 400_000);
    let payload = world.payment(&payer, &requirements);
    world.rpc("evm_setAutomine", json!([false])).await;
    let pending = world.settle(&payload, &requirements).await;
    assert_eq!(pending["errorReason"], "settlement_pending", "{pending}");
    world.rpc("evm_mine", json!([])).await;
    world.rpc("evm_setAutomine", json!([true])).await;
    assert_eq!(world.balance(payee).await, alloy::primitives::U256::from(400_000));

    // Anvil's resumer records the outcome while the hung chain's is still stuck.
    tokio::time::timeout(
        RESUME_BOUND,
        until_one(&world, "SELECT count(*) FROM settlement.settlements WHERE state = 'confirmed'"),
    )
    .await
    .expect("the resumer of anvil did not finish its settlement");
    let states = |chain_id: u64| {
        sqlx::query_as::<_, (String, i64)>(
            "SELECT state, count(*) FROM settlement.chain_txs WHERE chain_id = $1 GROUP BY state",
        )
        .bind(i64::try_from(chain_id).unwrap())
        .fetch_all(&world.db.pool)
    };
    assert_eq!(states(world.anvil.chain_id()).await.unwrap(), [("confirmed".to_owned(), 1)]);
    assert_eq!(
        states(HUNG_CHAIN_ID).await.unwrap(),
        [("broadcast".to_owned(), 100)],
        "the hung chain's transactions are still pending"
    );
    world.stop().await;
}
