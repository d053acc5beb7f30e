//! Payments our own agents made: the facilitator asks the policy service before any chain call
//! and answers with its verdict; a settled payment is queued once for net settlement. The policy
//! service is played by a small command server on the same bus (the real one's end-to-end test
//! runs the whole platform); outside payers still settle on chain.

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
use awx_api::facilitator::{Settle, Verify, codes};
use awx_api::policy::{Captured, OwnAction, OwnPayment, OwnPaymentReply};
use awx_bus::{BusError, CommandHandler, CommandMeta, CommandServer, HandlerError};
use awx_types::{AccountId, LedgerId};
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
        .handle::<OwnPayment, _>(policy)
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
    let world = World::start().await;
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
    let provider = AccountId::new();
    let payee = Address::random();
    let requirements = world.requirements(payee, 120_000);
    let payload = world.payment(&agent_wallet, &requirements);
    let valid_before = i64::try_from(support::now() + 120).unwrap();

    let verified = world
        .bus
        .send(&Verify { provider, request: request(&payload, &requirements) }, COMMAND_TIMEOUT)
        .await
        .unwrap();
    assert!(verified.is_valid, "{verified:?}");
    assert_eq!(verified.payer, Some(agent_wallet.address().to_checksum(None)));

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
    assert_eq!(asked.load(Ordering::SeqCst), 4);
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
    let world = World::start().await;
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

    let verified = world
        .bus
        .send(&Verify { provider, request: request(&payload, &requirements) }, COMMAND_TIMEOUT)
        .await
        .unwrap();
    assert!(verified.is_valid, "{verified:?}");
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
    assert_eq!(asked.load(Ordering::SeqCst), 2, "the policy service was asked each time");
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
    let payer = world.funded_payer(1_000_000).await;
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
    world.stop().await;
}
