//! A transaction signed through the bus decodes back to exactly the request, signed by the
//! relayer, and is in the signing log.

use alloy::consensus::TxEnvelope;
use alloy::eips::Typed2718 as _;
use alloy::eips::eip2718::Decodable2718 as _;
use alloy::primitives::{TxKind, U256, keccak256};
use awx_api::signer::SignedTransaction;
use sqlx::Row as _;

use crate::helpers::{ALLOWED_CONTRACT, TestSigner, request};

#[tokio::test]
async fn a_transaction_signed_over_the_bus_decodes_to_the_request() {
    let t = TestSigner::with(|settings| settings.relayer_count = 2).await;
    let relayers = t.relayers_over_the_bus().await;
    assert_eq!(relayers, t.relayers, "the relayers, oldest first");
    assert_eq!(t.custody.relayers().await.unwrap().relayers, relayers);
    assert_eq!(relayers.len(), 2);

    let request = request(relayers[1]);
    let reply = t.sign(&request).await.unwrap();

    let envelope = TxEnvelope::decode_2718(&mut reply.raw.as_ref()).unwrap();
    let TxEnvelope::Eip1559(signed) = &envelope else {
        panic!("expected an EIP-1559 transaction, got {envelope:?}")
    };
    let tx = signed.tx();
    assert_eq!(tx.chain_id, request.chain_id);
    assert_eq!(tx.nonce, request.nonce);
    assert_eq!(tx.gas_limit, request.gas_limit);
    assert_eq!(tx.max_fee_per_gas, request.max_fee_per_gas);
    assert_eq!(tx.max_priority_fee_per_gas, request.max_priority_fee_per_gas);
    assert_eq!(tx.to, TxKind::Call(ALLOWED_CONTRACT));
    assert_eq!(tx.value, U256::ZERO);
    assert!(tx.access_list.is_empty());
    assert_eq!(tx.input, request.input);
    assert_eq!(envelope.ty(), 2);
    assert_eq!(reply.raw[0], 2, "EIP-2718 type 2");
    assert_eq!(*signed.hash(), reply.hash);
    assert_eq!(keccak256(&reply.raw), reply.hash, "the hash is the transaction hash");
    let signer = signed.signature().recover_address_from_prehash(&signed.signature_hash()).unwrap();
    assert_eq!(signer, relayers[1], "signed by the requested relayer");

    // The signing log holds it, with what it returned.
    let row = sqlx::query(
        "SELECT kind, address, chain_id, target, length(request_hash) AS hash_len, result \
         FROM signer.signing_log WHERE request_id = $1",
    )
    .bind(request.request_id)
    .fetch_one(&t.db.pool)
    .await
    .unwrap();
    assert_eq!(row.get::<String, _>("kind"), "transaction");
    assert_eq!(row.get::<String, _>("address"), format!("{:#x}", relayers[1]));
    assert_eq!(row.get::<i64, _>("chain_id"), 8453);
    assert_eq!(row.get::<String, _>("target"), format!("{ALLOWED_CONTRACT:#x}"));
    assert_eq!(row.get::<i32, _>("hash_len"), 32);
    let stored: SignedTransaction =
        serde_json::from_value(row.get::<serde_json::Value, _>("result")).unwrap();
    assert_eq!(stored, reply);
    t.stop().await;
}
