//! Refusals carry their code and write nothing; a repeated request id replays the stored
//! signature without signing again.

use alloy::primitives::Address;
use awx_api::signer::{SignTransaction, codes};
use awx_bus::BusError;

use crate::helpers::{ALLOWED_CONTRACT, ALLOWED_NETWORK, TestSigner, request};

async fn refused(t: &TestSigner, request: &SignTransaction) -> String {
    match t.sign(request).await {
        Err(BusError::Rejected { code, .. }) => code,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[tokio::test]
async fn refusals_carry_their_code_and_log_nothing() {
    let t = TestSigner::start().await;
    let good = request(t.relayer());

    let unlisted = SignTransaction { to: Address::repeat_byte(0xee), ..good.clone() };
    assert_eq!(refused(&t, &unlisted).await, codes::CONTRACT_NOT_ALLOWED);
    let other_chain = SignTransaction { chain_id: 1, ..good.clone() };
    assert_eq!(refused(&t, &other_chain).await, codes::CONTRACT_NOT_ALLOWED, "allowed per chain");

    let stranger = SignTransaction { from: Address::repeat_byte(0x5e), ..good.clone() };
    assert_eq!(refused(&t, &stranger).await, codes::UNKNOWN_RELAYER);

    for invalid in [
        SignTransaction { gas_limit: 0, ..good.clone() },
        SignTransaction { gas_limit: 30_000_001, ..good.clone() },
        SignTransaction { max_priority_fee_per_gas: good.max_fee_per_gas + 1, ..good.clone() },
        SignTransaction { max_fee_per_gas: 0, max_priority_fee_per_gas: 0, ..good.clone() },
        SignTransaction { max_fee_per_gas: u128::MAX, ..good.clone() },
        SignTransaction { input: vec![0; 128 * 1024 + 1].into(), ..good.clone() },
    ] {
        assert_eq!(refused(&t, &invalid).await, codes::INVALID_REQUEST, "{invalid:?}");
    }
    assert_eq!(t.log_rows().await, 0, "no refusal writes a log row");

    // The refused ids stay free: a later valid request may use them.
    let reused = SignTransaction { request_id: stranger.request_id, ..good };
    t.sign(&reused).await.unwrap();
    assert_eq!(t.log_rows().await, 1);
    t.stop().await;
}

#[tokio::test]
async fn a_repeated_request_id_replays_and_a_changed_one_conflicts() {
    let t = TestSigner::start().await;
    let first = request(t.relayer());
    let signed = t.sign(&first).await.unwrap();
    assert_eq!(t.log_rows().await, 1);

    // The contract is no longer allowed: a replay still answers, so it came from the log, not
    // from a new check and signature.
    assert!(t.contracts.disallow(ALLOWED_NETWORK, ALLOWED_CONTRACT).unwrap());
    let again = t.sign(&first).await.unwrap();
    assert_eq!(again, signed, "the identical signed transaction");
    assert_eq!(t.log_rows().await, 1, "one log row");

    let changed = SignTransaction { nonce: first.nonce + 1, ..first.clone() };
    assert_eq!(refused(&t, &changed).await, codes::REQUEST_CONFLICT);
    let other_relayer = SignTransaction { from: Address::repeat_byte(0x5e), ..first.clone() };
    assert_eq!(refused(&t, &other_relayer).await, codes::REQUEST_CONFLICT);
    assert_eq!(t.log_rows().await, 1, "a conflict writes nothing");

    // Allowed again, a new id signs anew.
    assert!(t.contracts.allow(ALLOWED_NETWORK, ALLOWED_CONTRACT).unwrap());
    let next = SignTransaction { request_id: uuid::Uuid::now_v7(), ..changed };
    let next_signed = t.sign(&next).await.unwrap();
    assert_ne!(next_signed.hash, signed.hash);
    assert_eq!(t.log_rows().await, 2);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_repeats_of_a_request_are_signed_once() {
    let t = TestSigner::start().await;
    let request = request(t.relayer());
    // Six commands (six command ids) with one request id, at once.
    let replies = futures::future::join_all((0..6).map(|_| t.sign(&request))).await;
    let first = replies[0].as_ref().unwrap();
    for reply in &replies {
        assert_eq!(reply.as_ref().unwrap(), first);
    }
    assert_eq!(t.log_rows().await, 1);
    t.stop().await;
}
