//! Keys at rest: encrypted under the KEK, bound to their row, refused under another KEK, and the
//! same after a restart; the signing log and the keys protected by the database itself.

use alloy::primitives::{Address, B256};
use alloy::signers::local::PrivateKeySigner;
use awx_signer_service::local::KeyStoreError;
use awx_signer_service::{KeyPurpose, LocalSigner, Signer as _};
use awx_test_support::TestDb;

use crate::helpers::{KEK_HEX, OTHER_KEK_HEX, decrypt_independently, kek, other_kek, stored_keys};

#[tokio::test]
async fn keys_are_stored_encrypted_under_the_kek() {
    let db = TestDb::new().await;
    let signer = LocalSigner::open(&db.pool, kek(), 2).await.unwrap();
    let relayers = signer.addresses(KeyPurpose::Relayer).await.unwrap();
    assert_eq!(relayers.len(), 2);

    let stored = stored_keys(&db.pool).await;
    assert_eq!(stored.len(), 2);
    assert_ne!(stored[0].nonce, stored[1].nonce, "a fresh nonce per key");
    for (key, relayer) in stored.iter().zip(&relayers) {
        assert_eq!(key.purpose, "relayer");
        assert_eq!(key.address, format!("{relayer:#x}"), "lowercase 0x hex, oldest first");
        assert_eq!(key.kek_id, kek().id().as_str());
        assert_eq!(key.nonce.len(), 12);
        assert_eq!(key.ciphertext.len(), 48, "32 key bytes and the 16-byte tag");

        // Decrypted independently (AES-256-GCM, the address as associated data), it is the
        // address's key.
        let private_key = decrypt_independently(key, KEK_HEX).expect("decrypts with the KEK");
        assert_eq!(PrivateKeySigner::from_slice(&private_key).unwrap().address(), *relayer);
        // The ciphertext does not contain the key, nor any 8 bytes of it.
        assert!(
            !private_key.windows(8).any(|part| key.ciphertext.windows(8).any(|c| c == part)),
            "the ciphertext shows the key"
        );
        assert!(decrypt_independently(key, OTHER_KEK_HEX).is_none());
    }
    // The key's text is nowhere in the table either.
    let key_hex: String = decrypt_independently(&stored[0], KEK_HEX)
        .unwrap()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    let rows_text: String =
        sqlx::query_scalar("SELECT string_agg(to_jsonb(k)::text, ',') FROM signer.keys k")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert!(!rows_text.contains(&key_hex));
}

#[tokio::test]
async fn keys_under_another_kek_are_refused_clearly() {
    let db = TestDb::new().await;
    LocalSigner::open(&db.pool, kek(), 1).await.unwrap();

    let error = LocalSigner::open(&db.pool, other_kek(), 1).await.unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, KeyStoreError::WrongKek { .. }), "{error:?}");
    assert!(message.contains(kek().id().as_str()), "names the stored KEK id: {message}");
    assert!(message.contains(other_kek().id().as_str()), "names the KEK in use: {message}");
    assert_eq!(stored_keys(&db.pool).await.len(), 1, "a refused start creates no key");

    // Even with the KEK id forged to match, the wrong KEK does not decrypt.
    sqlx::query("UPDATE signer.keys SET kek_id = $1")
        .bind(other_kek().id().as_str())
        .execute(&db.pool)
        .await
        .unwrap();
    let error = LocalSigner::open(&db.pool, other_kek(), 1).await.unwrap_err();
    assert!(matches!(error, KeyStoreError::Undecryptable { .. }), "{error:?}");
    assert!(error.to_string().contains("does not decrypt"), "{error}");
}

#[tokio::test]
async fn a_ciphertext_moved_to_another_row_does_not_decrypt() {
    let db = TestDb::new().await;
    LocalSigner::open(&db.pool, kek(), 2).await.unwrap();
    let stored = stored_keys(&db.pool).await;
    let (victim, donor) = (&stored[0], &stored[1]);

    // Both rows are under the same KEK: only the associated data (the address) tells them apart.
    sqlx::query("UPDATE signer.keys SET ciphertext = $1, nonce = $2 WHERE address = $3")
        .bind(&donor.ciphertext)
        .bind(&donor.nonce)
        .bind(&victim.address)
        .execute(&db.pool)
        .await
        .unwrap();
    let error = LocalSigner::open(&db.pool, kek(), 2).await.unwrap_err();
    match &error {
        KeyStoreError::Undecryptable { address, .. } => assert_eq!(*address, victim.address),
        other => panic!("expected Undecryptable, got {other:?}"),
    }
    assert!(error.to_string().contains(&victim.address), "{error}");
}

#[tokio::test]
async fn a_restart_with_the_same_kek_loads_the_same_relayers() {
    let db = TestDb::new().await;
    let first = LocalSigner::open(&db.pool, kek(), 2).await.unwrap();
    let relayers = first.addresses(KeyPurpose::Relayer).await.unwrap();
    drop(first);

    let again = LocalSigner::open(&db.pool, kek(), 2).await.unwrap();
    assert_eq!(again.addresses(KeyPurpose::Relayer).await.unwrap(), relayers);
    assert_eq!(stored_keys(&db.pool).await.len(), 2, "no key created on restart");
    // The reloaded keys sign as their addresses.
    let digest = B256::repeat_byte(0x42);
    for relayer in &relayers {
        let signature = again.sign_digest(*relayer, digest).await.unwrap();
        assert_eq!(signature.recover_address_from_prehash(&digest).unwrap(), *relayer);
    }
    assert!(again.sign_digest(Address::repeat_byte(9), digest).await.is_err());

    // More relayers wanted: the old ones stay first, one is added.
    let more = LocalSigner::open(&db.pool, kek(), 3).await.unwrap();
    let now = more.addresses(KeyPurpose::Relayer).await.unwrap();
    assert_eq!(now.len(), 3);
    assert_eq!(now[..2], relayers[..]);

    // A signer started before the third key was made finds it when asked to refresh.
    assert_eq!(again.addresses(KeyPurpose::Relayer).await.unwrap().len(), 2);
    again.refresh().await.unwrap();
    assert_eq!(again.addresses(KeyPurpose::Relayer).await.unwrap(), now);
    let signature = again.sign_digest(now[2], digest).await.unwrap();
    assert_eq!(signature.recover_address_from_prehash(&digest).unwrap(), now[2]);
}

#[tokio::test]
async fn the_database_keeps_the_log_append_only_and_the_keys_forever() {
    let db = TestDb::new().await;
    LocalSigner::open(&db.pool, kek(), 1).await.unwrap();
    let address = stored_keys(&db.pool).await.remove(0).address;
    sqlx::query(
        "INSERT INTO signer.signing_log \
         (request_id, kind, address, chain_id, target, request_hash, result) \
         VALUES ($1, 'transaction', $2, 1, $3, $4, '{}')",
    )
    .bind(uuid::Uuid::now_v7())
    .bind(&address)
    .bind(format!("{:#x}", Address::repeat_byte(1)))
    .bind(vec![0_u8; 32])
    .execute(&db.pool)
    .await
    .unwrap();

    for statement in [
        "UPDATE signer.signing_log SET chain_id = 2",
        "DELETE FROM signer.signing_log",
        // CASCADE: signer.authorizations refers to the log, so a plain TRUNCATE is refused
        // by the foreign key before the trigger is reached.
        "TRUNCATE signer.signing_log CASCADE",
        // CASCADE again: the net transfers' payments refer to the authorizations.
        "TRUNCATE signer.authorizations CASCADE",
        "TRUNCATE signer.net_transfers CASCADE",
        "TRUNCATE signer.agent_wallets",
        "DELETE FROM signer.keys",
        "UPDATE signer.keys SET purpose = 'agent'",
        "UPDATE signer.keys SET address = '0x0101010101010101010101010101010101010101'",
        "TRUNCATE signer.keys CASCADE",
    ] {
        let error = sqlx::query(statement).execute(&db.pool).await.unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("append-only")
                || message.contains("never")
                || message.contains("only"),
            "{statement}: {message}"
        );
    }
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM signer.signing_log")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(rows, 1);
}
