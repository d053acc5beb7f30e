//! Payments our own agents made: when the payer is a registered wallet of ours, the facilitator
//! asks the policy service before any chain call and answers with its verdict; a settled payment
//! is queued once for net settlement. The policy service is played by a small command server on
//! the same bus (the real one's end-to-end test runs the whole platform); outside payers settle
//! on chain without the policy service being asked at all, and a verify writes nothing.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use alloy::primitives::U256;
use alloy::signers::local::PrivateKeySigner;
use awx_api::facilitator::{RegisterWallet, Settle, Verify, codes};
use awx_api::policy::{Captured, OwnAction, OwnPayment, OwnPaymentReply, OwnVerify};
use awx_bus::{BusError, CommandHandler, CommandMeta, CommandServer, HandlerError, QueryHandler};
use awx_types::{AccountId, AgentId, LedgerId};
use awx_x402::{
    Address, ExactEvmPayload, FacilitatorRequest, PaymentPayload, PaymentRequirements,
    SettleResponse, VerifyResponse,
};
use sqlx::PgConnection;
use support::{COMMAND_TIMEOUT, Options, World};
use tokio_util::sync::CancellationToken;

/// The policy service as far as the facilitator sees it: one wallet is ours (its payments are
/// captured at `captured_at_unix`), every other payer is not.
#[derive(Clone)]
struct FakePolicy {
    own: Address,
    ledger_id: LedgerId,
    captured_at_unix: i64,
    asked: Arc<AtomicUsize>,
}

impl QueryHandler<OwnVerify> for FakePolicy {
    async fn handle(
        &self,
        pool: &sqlx::PgPool,
        query: OwnVerify,
        meta: CommandMeta,
    ) -> Result<OwnPaymentReply, HandlerError> {
        let mut conn = pool.acquire().await?;
        let command = OwnPayment {
            action: OwnAction::Verify,
            provider: query.provider,
            payload: query.payload,
            requirements: query.requirements,
        };
        CommandHandler::<OwnPayment>::handle(self, &mut conn, command, meta).await
    }
}

impl CommandHandler<OwnPayment> for FakePolicy {
    async fn handle(
        &self,
        _tx: &mut PgConnection,
        command: OwnPayment,
        _meta: CommandMeta,
    ) -> Result<OwnPaymentReply, HandlerError> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        let Ok(ExactEvmPayload::Eip3009(payment)) =
            ExactEvmPayload::from_json(&command.payload.payload)
        else {
            return Ok(OwnPaymentReply::NotOurs);
        };
        let auth = payment.authorization;
        if auth.from != self.own {
            return Ok(OwnPaymentReply::NotOurs);
        }
        let payer = auth.from.to_checksum(None);
        let network = command.requirements.network.clone();
        Ok(match command.action {
            OwnAction::Verify => {
                OwnPaymentReply::Verified { response: VerifyResponse::valid(payer) }
            }
            OwnAction::Settle => OwnPaymentReply::Settled {
                response: SettleResponse::settled("", network.clone(), payer),
                captured: Some(Captured {
                    ledger_id: self.ledger_id,
                    network,
                    token: command.requirements.asset.parse().unwrap(),
                    payer: auth.from,
                    payee: auth.to,
                    amount: auth.value.to_string(),
                    valid_before_unix: i64::try_from(auth.valid_before).unwrap(),
                    nonce: auth.nonce,
                    captured_at_unix: self.captured_at_unix,
                    fee: "0".into(),
                }),
                replay: false,
            },
        })
    }
}

/// Registers `address` as an agent's wallet, as the policy service does when it creates an agent.
async fn register_wallet(world: &World, address: Address) {
    let reply = world
        .bus
        .send(&RegisterWallet { agent_id: AgentId::new(), address }, COMMAND_TIMEOUT)
        .await
        .unwrap();
    assert!(reply.new);
}

/// Every row of every service's schema (inboxes and outboxes included), as one fingerprint per
/// table: a write anywhere (an insert, an update, a delete) changes it.
/// A world whose settlement service has no chain watcher, the one writer that runs by
/// itself (it records the blocks it has read), so [`writes`] sees only what a request wrote.
async fn quiet_world() -> World {
    World::start_with(Options {
        adjust: Box::new(|settings| settings.watch.enabled = false),
        ..Options::default()
    })
    .await
}

async fn writes(world: &World) -> Vec<(String, String)> {
    let tables: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_schema::text, table_name::text FROM information_schema.tables
         WHERE table_type = 'BASE TABLE'
           AND table_schema IN ('gateway', 'ledger', 'policy', 'signer', 'settlement', 'fake_policy')
         ORDER BY 1, 2",
    )
    .fetch_all(&world.db.pool)
    .await
    .unwrap();
    assert!(tables.len() > 20, "{tables:?}");
    let mut prints = Vec::new();
    for (schema, table) in tables {
        let sql = format!(
            "SELECT count(*)::text || ':' || md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), ''))
             FROM \"{schema}\".\"{table}\" t"
        );
        let print: String =
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(&world.db.pool).await.unwrap();
        prints.push((format!("{schema}.{table}"), print));
    }
    prints
}

/// Starts the fake policy service on the world's bus; cancel the token to stop it.
async fn start_fake_policy(world: &World, policy: FakePolicy) -> CancellationToken {
    sqlx::query("SELECT public.awx_bus_install('fake_policy')")
        .execute(&world.db.pool)
        .await
        .unwrap();
    let bus = awx_bus::Bus::connect(support::bus_config(&world.namespace, "policy", "fake_policy"))
        .await
        .unwrap();
    let server = CommandServer::new(&bus, world.db.pool.clone(), awx_api::policy::FAMILY)
        .unwrap()
        .handle::<OwnPayment, _>(policy.clone())
        .unwrap()
        .answer::<OwnVerify, _>(policy)
        .unwrap();
    let cancel = CancellationToken::new();
    tokio::spawn(server.run(cancel.clone()));
    cancel
}

fn request(payload: &PaymentPayload, requirements: &PaymentRequirements) -> FacilitatorRequest {
    FacilitatorRequest::v2(payload, requirements)
}

#[tokio::test]
async fn an_own_payment_is_answered_by_policy_and_queued_once() {
    let world = quiet_world().await;
    // Our agent's wallet holds nothing on chain: only the policy service can call it valid.
    let agent_wallet = PrivateKeySigner::random();
    let ledger_id = LedgerId::new();
    let captured_at_unix = i64::try_from(support::now()).unwrap();
    let asked = Arc::new(AtomicUsize::new(0));
    let _policy = start_fake_policy(
        &world,
        FakePolicy {
            own: agent_wallet.address(),
            ledger_id,
            captured_at_unix,
            asked: asked.clone(),
        },
    )
    .await;
    register_wallet(&world, agent_wallet.address()).await;
    let provider = AccountId::new();
    let payee = Address::random();
    let requirements = world.requirements(payee, 120_000);
    let payload = world.payment(&agent_wallet, &requirements);
    let valid_before = i64::try_from(support::now() + 120).unwrap();

    // Verifying writes nothing, in any service: no inbox row, no state.
    let before = writes(&world).await;
    for _ in 0..3 {
        let verified = world
            .bus
            .send(&Verify { provider, request: request(&payload, &requirements) }, COMMAND_TIMEOUT)
            .await
            .unwrap();
        assert!(verified.is_valid, "{verified:?}");
        assert_eq!(verified.payer, Some(agent_wallet.address().to_checksum(None)));
    }
    assert_eq!(writes(&world).await, before, "an own payer's verify wrote to Postgres");

    // Settled three times, two of them at once: one item, the same answer.
    let settle = Settle { provider, request: request(&payload, &requirements) };
    let (first, second) = tokio::join!(
        world.bus.send(&settle, COMMAND_TIMEOUT),
        world.bus.send(&settle, COMMAND_TIMEOUT)
    );
    let third = world.facilitator.settle(provider, &settle.request).await.unwrap();
    for answer in [first.unwrap(), second.unwrap(), third] {
        assert!(answer.success, "{answer:?}");
        assert_eq!(answer.transaction, "");
        assert_eq!(answer.network, world.network);
        let awx = &answer.extensions.as_ref().unwrap()["awx"];
        assert_eq!(awx["settlement"], "deferred");
        assert_eq!(awx["paymentId"], ledger_id.to_string());
        let settle_by = awx["settleBy"].as_i64().unwrap();
        // max(validBefore, captured) + max delay (3600) + interval (300); validBefore was set
        // when the payment was signed, within a second or two of `valid_before`.
        let expected = valid_before.max(captured_at_unix) + 3_600 + 300;
        assert!((expected - 2..=expected).contains(&settle_by), "{settle_by} vs {expected}");
    }
    assert_eq!(asked.load(Ordering::SeqCst), 6, "three verifies and three settles");
    assert_eq!(world.count("SELECT count(*) FROM settlement.items").await, 1);
    let (state, amount, payer, payee_stored, provider_stored): (String, String, String, String, uuid::Uuid) =
        sqlx::query_as(
            "SELECT state, amount::text, payer, payee, provider FROM settlement.items WHERE payment_id = $1",
        )
        .bind(ledger_id.as_uuid())
        .fetch_one(&world.db.pool)
        .await
        .unwrap();
    assert_eq!(state, "queued");
    assert_eq!(amount, "120000");
    assert_eq!(payer, agent_wallet.address().to_string().to_lowercase());
    assert_eq!(payee_stored, payee.to_string().to_lowercase());
    assert_eq!(provider_stored, provider.as_uuid());
    // Nothing went to the chain.
    assert_eq!(world.count("SELECT count(*) FROM settlement.settlements").await, 0);
    assert_eq!(world.count("SELECT count(*) FROM settlement.chain_txs").await, 0);
    assert_eq!(world.balance(payee).await, U256::ZERO);
    world.stop().await;
}

#[tokio::test]
async fn an_outside_payer_still_settles_on_chain() {
    let world = quiet_world().await;
    let asked = Arc::new(AtomicUsize::new(0));
    let _policy = start_fake_policy(
        &world,
        FakePolicy {
            own: Address::random(),
            ledger_id: LedgerId::new(),
            captured_at_unix: 0,
            asked: asked.clone(),
        },
    )
    .await;
    let provider = AccountId::new();
    let payer = world.funded_payer(1_000_000).await;
    let payee = Address::random();
    let requirements = world.requirements(payee, 300_000);
    let payload = world.payment(&payer, &requirements);

    // Verifying an outside payer's payment writes nothing either.
    let before = writes(&world).await;
    let verified = world
        .bus
        .send(&Verify { provider, request: request(&payload, &requirements) }, COMMAND_TIMEOUT)
        .await
        .unwrap();
    assert!(verified.is_valid, "{verified:?}");
    assert_eq!(writes(&world).await, before, "an outside payer's verify wrote to Postgres");
    let settled = world
        .bus
        .send(&Settle { provider, request: request(&payload, &requirements) }, COMMAND_TIMEOUT)
        .await
        .unwrap();
    assert!(settled.success, "{settled:?}");
    assert_eq!(settled.transaction.len(), 66);
    assert!(settled.extensions.is_none());
    assert_eq!(world.balance(payee).await, U256::from(300_000));
    assert_eq!(world.balance(payer.address()).await, U256::from(700_000));
    assert_eq!(
        asked.load(Ordering::SeqCst),
        0,
        "the policy service is never asked about outside payers"
    );
    assert_eq!(world.count("SELECT count(*) FROM settlement.items").await, 0);
    assert_eq!(
        world.count("SELECT count(*) FROM settlement.settlements WHERE state = 'confirmed'").await,
        1
    );
    // A poor outside payer gets the chain's verdict, not the policy service's.
    let poor = PrivateKeySigner::random();
    let refused = world
        .bus
        .send(
            &Verify {
                provider,
                request: request(&world.payment(&poor, &requirements), &requirements),
            },
            COMMAND_TIMEOUT,
        )
        .await
        .unwrap();
    assert!(!refused.is_valid);
    assert_eq!(
        refused.invalid_reason.map(|reason| reason.as_str().to_owned()).as_deref(),
        Some("invalid_exact_evm_insufficient_balance")
    );
    world.stop().await;
}

#[tokio::test]
async fn a_silent_policy_service_is_policy_unavailable() {
    let world = World::start_with(Options {
        adjust: Box::new(|settings| settings.policy_timeout_ms = 300),
        ..Options::default()
    })
    .await;
    let provider = AccountId::new();
    // One of our wallets, funded on chain: only the policy service may answer for it.
    let payer = world.funded_payer(1_000_000).await;
    register_wallet(&world, payer.address()).await;
    let payee = Address::random();
    let requirements = world.requirements(payee, 100_000);
    let payload = world.payment(&payer, &requirements);
    for result in [
        world
            .bus
            .send(&Verify { provider, request: request(&payload, &requirements) }, COMMAND_TIMEOUT)
            .await
            .map(|_| ()),
        world
            .bus
            .send(&Settle { provider, request: request(&payload, &requirements) }, COMMAND_TIMEOUT)
            .await
            .map(|_| ()),
    ] {
        match result {
            Err(BusError::Rejected { code, .. }) => assert_eq!(code, codes::POLICY_UNAVAILABLE),
            other => panic!("expected policy_unavailable, got {other:?}"),
        }
    }
    // Nothing was settled.
    assert_eq!(world.balance(payee).await, U256::ZERO);
    assert_eq!(world.count("SELECT count(*) FROM settlement.settlements").await, 0);
    // An outside payer's payment does not need the policy service at all.
    let outsider = world.funded_payer(1_000_000).await;
    let outside = world.payment(&outsider, &requirements);
    let verified = world
        .bus
        .send(&Verify { provider, request: request(&outside, &requirements) }, COMMAND_TIMEOUT)
        .await
        .unwrap();
    assert!(verified.is_valid, "{verified:?}");
    world.stop().await;
}

/// A wallet registered through one replica is ours to another replica at once: the other
/// replica has never seen it, looks it up, and asks the policy service instead of the chain
/// (where this wallet holds nothing, so the chain's answer would be "insufficient balance").
#[tokio::test]
async fn a_new_wallet_is_ours_on_another_replica_immediately() {
    let world = World::start().await;
    let agent_wallet = PrivateKeySigner::random();
    let asked = Arc::new(AtomicUsize::new(0));
    let _policy = start_fake_policy(
        &world,
        FakePolicy {
            own: agent_wallet.address(),
            ledger_id: LedgerId::new(),
            captured_at_unix: 0,
            asked: asked.clone(),
        },
    )
    .await;
    // Another replica: its own facilitator, bus connection and memory, on the same database.
    let other = awx_settlement_service::Facilitator::new(
        world.db.pool.clone(),
        awx_bus::Bus::connect(support::bus_config(&world.namespace, "settlement", "settlement"))
            .await
            .unwrap(),
        world.facilitator.settings.clone(),
    )
    .unwrap();
    let provider = AccountId::new();
    let requirements = world.requirements(Address::random(), 50_000);
    let payment = request(&world.payment(&agent_wallet, &requirements), &requirements);

    // Before the wallet is registered it is an outside payer's, with nothing on chain.
    let before = other.verify(provider, &payment).await.unwrap();
    assert!(!before.is_valid);
    assert_eq!(
        before.invalid_reason.map(|reason| reason.as_str().to_owned()).as_deref(),
        Some("invalid_exact_evm_insufficient_balance")
    );
    assert_eq!(asked.load(Ordering::SeqCst), 0);

    // Registered through the bus (the world's replica serves it), then verified by the other
    // replica straight away, and by the world's replica too.
    register_wallet(&world, agent_wallet.address()).await;
    for replica in [&other, &*world.facilitator] {
        let verified = replica.verify(provider, &payment).await.unwrap();
        assert!(verified.is_valid, "{verified:?}");
    }
    assert_eq!(asked.load(Ordering::SeqCst), 2, "the policy service answered both replicas");

    // The same address for another agent is refused.
    let again = world
        .bus
        .send(
            &RegisterWallet { agent_id: AgentId::new(), address: agent_wallet.address() },
            COMMAND_TIMEOUT,
        )
        .await
        .unwrap_err();
    assert!(matches!(&again, BusError::Rejected { code, .. } if code == codes::INVALID_REQUEST));
    world.stop().await;
}

#[tokio::test]
async fn a_capture_is_queued_once_and_another_payment_for_its_authorization_is_refused() {
    use awx_settlement_service::own::{Queued, insert_item, queue};
    let world = quiet_world().await;
    let nonce = awx_x402::B256::random();
    let captured = Captured {
        ledger_id: LedgerId::new(),
        network: world.network.clone(),
        token: world.token.address(),
        payer: Address::random(),
        payee: Address::random(),
        amount: "250000".into(),
        valid_before_unix: 1_900_000_000,
        nonce,
        captured_at_unix: 1_800_000_000,
        fee: "5000".into(),
    };
    let provider = Some(AccountId::new());
    let mut conn = world.db.pool.acquire().await.unwrap();
    let expected =
        Queued { new: true, valid_before_unix: 1_900_000_000, captured_at_unix: 1_800_000_000 };
    assert_eq!(queue(&mut conn, provider, &captured, None).await.unwrap(), Some(expected));
    // Again (a retried settle, or the `payment.captured` event): the stored row, not a new one,
    // even with other facts.
    let later = Captured { captured_at_unix: 1_800_000_100, ..captured.clone() };
    assert_eq!(
        queue(&mut conn, provider, &later, None).await.unwrap(),
        Some(Queued { new: false, ..expected })
    );
    assert!(!insert_item(&mut conn, provider, &captured, None).await.unwrap());
    // Another payment with the same authorization (payer and nonce): nothing.
    let other = Captured { ledger_id: LedgerId::new(), ..captured.clone() };
    assert_eq!(queue(&mut conn, provider, &other, None).await.unwrap(), None);
    assert!(!insert_item(&mut conn, provider, &other, None).await.unwrap());
    let rows: Vec<(uuid::Uuid, String, String, String)> =
        sqlx::query_as("SELECT payment_id, state, amount::text, fee::text FROM settlement.items")
            .fetch_all(&world.db.pool)
            .await
            .unwrap();
    assert_eq!(
        rows,
        vec![(captured.ledger_id.as_uuid(), "queued".to_owned(), "250000".into(), "5000".into())]
    );
    drop(conn);
    world.stop().await;
}
