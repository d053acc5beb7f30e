//! No key material in `Debug` or `Display` output, in errors, or in logs: every public type that
//! holds keys, the settings, and every error variant are printed and searched for the relayer's
//! and an agent wallet's private keys, the KEK, and the policy service's decision key.
//!
//! A test binary of its own: it installs the process's global log subscriber, which captures
//! every event (a per-thread subscriber misses events whose callsites other tests' threads
//! registered first).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking, helpers included"
)]

#[path = "signer/helpers.rs"]
#[allow(dead_code, reason = "the helpers serve the other test binary too")]
mod helpers;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use alloy::primitives::{Address, B256};
use awx_decision::{DecisionError, DecisionKey, DecisionVerifier};
use awx_signer_service::commands::SignerHandlers;
use awx_signer_service::contracts::{AllowList, AllowListError};
use awx_signer_service::error::SignFailure;
use awx_signer_service::kek::{KekError, OpenError, SealError};
use awx_signer_service::local::KeyStoreError;
use awx_signer_service::{Kek, LocalSigner, SignerError, SignerService};
use awx_test_support::RedisNamespace;

use crate::helpers::{
    DECISION_SEED_HEX, KEK_HEX, TestSigner, authorization_request, decide, decision_key,
    decrypt_independently, kek, now_unix, other_kek, request, settings, stored_keys,
};

/// Every printed form of `bytes` that would give a secret away.
pub(crate) fn secret_forms(bytes: &[u8]) -> Vec<String> {
    let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    vec![
        hex.clone(),
        hex.to_uppercase(),
        hex[..16].to_owned(),
        format!("{bytes:?}"),
        format!("{bytes:?}").replace(", ", ","),
    ]
}

/// Asserts that `text` shows none of `forms`.
pub(crate) fn assert_hides(what: &str, text: &str, forms: &[String]) {
    for form in forms {
        assert!(!text.contains(form.as_str()), "{what} shows a secret ({form}): {text}");
    }
}

/// A log sink shared with the subscriber.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// A file removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn with(contents: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("awx-signer-test-{}.kek", uuid::Uuid::new_v4()));
        std::fs::write(&path, contents).unwrap();
        Self(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn kek_errors(key_hex: &str) -> Vec<KekError> {
    let all = vec![
        KekError::Missing,
        KekError::Ambiguous,
        Kek::from_hex(&format!("{key_hex}zz"), "AWX_SIGNER_KEK").unwrap_err(),
        Kek::from_hex(&format!("{}zz", &key_hex[..62]), "AWX_SIGNER_KEK").unwrap_err(),
        Kek::from_hex(&"0".repeat(64), "AWX_SIGNER_KEK").unwrap_err(),
        Kek::from_file(std::path::Path::new("/nonexistent/awx-kek")).unwrap_err(),
    ];
    let covered: BTreeSet<u8> = all
        .iter()
        .map(|error| match error {
            KekError::Missing => 0,
            KekError::Ambiguous => 1,
            KekError::Malformed { .. } => 2,
            KekError::AllZeros { .. } => 3,
            KekError::File { .. } => 4,
        })
        .collect();
    assert_eq!(covered.len(), 5, "every KekError variant");
    all
}

fn key_store_errors(wrong_kek: KeyStoreError, address: &str) -> Vec<KeyStoreError> {
    let all = vec![
        wrong_kek,
        KeyStoreError::Undecryptable { address: address.to_owned(), kek_id: kek().id().clone() },
        KeyStoreError::WrongKey { address: address.to_owned() },
        KeyStoreError::Corrupt { address: address.to_owned(), reason: "unknown purpose".into() },
        KeyStoreError::TooManyRelayers(1_000),
        KeyStoreError::Seal(SealError),
        KeyStoreError::Database(sqlx::Error::RowNotFound),
    ];
    let covered: BTreeSet<u8> = all
        .iter()
        .map(|error| match error {
            KeyStoreError::WrongKek { .. } => 0,
            KeyStoreError::Undecryptable { .. } => 1,
            KeyStoreError::WrongKey { .. } => 2,
            KeyStoreError::Corrupt { .. } => 3,
            KeyStoreError::TooManyRelayers(_) => 4,
            KeyStoreError::Seal(_) => 5,
            KeyStoreError::Database(_) => 6,
        })
        .collect();
    assert_eq!(covered.len(), 7, "every KeyStoreError variant");
    all
}

fn signer_errors(address: Address) -> Vec<SignerError> {
    let all = vec![
        SignerError::UnknownKey(address),
        SignerError::UnusableKey { address, reason: "does not decrypt".into() },
        SignerError::Signing { address, reason: "signature error".into() },
        SignerError::Backend("database: pool timed out".into()),
    ];
    let covered: BTreeSet<u8> = all
        .iter()
        .map(|error| match error {
            SignerError::UnknownKey(_) => 0,
            SignerError::UnusableKey { .. } => 1,
            SignerError::Signing { .. } => 2,
            SignerError::Backend(_) => 3,
        })
        .collect();
    assert_eq!(covered.len(), 4, "every SignerError variant");
    all
}

fn sign_failures(address: Address) -> Vec<SignFailure> {
    let all = vec![
        SignFailure::Invalid("gas_limit must be 1 to 30000000 (got 0)".into()),
        SignFailure::UnknownRelayer(address),
        SignFailure::ContractNotAllowed { network: "eip155:1".into(), contract: address },
        SignFailure::RequestConflict(uuid::Uuid::now_v7()),
        SignFailure::DecisionInvalid("the decision expired".into()),
        SignFailure::DecisionMismatch("authorization.value"),
        SignFailure::UnknownWallet { agent: awx_types::AgentId::new(), address },
        SignFailure::PaymentAlreadySigned(awx_types::PaymentId::new()),
        SignFailure::NonceAlreadySigned { address, nonce: B256::repeat_byte(7) },
        SignFailure::PaymentAlreadyNetted("payee"),
        SignFailure::UnknownPayment(
            "1 of the 2 payments are authorizations this wallet signed".into(),
        ),
        SignFailure::Signer(SignerError::UnknownKey(address)),
        SignFailure::Database(sqlx::Error::PoolTimedOut),
        SignFailure::Internal("the backend signed for another address".into()),
    ];
    let covered: BTreeSet<u8> = all
        .iter()
        .map(|error| match error {
            SignFailure::Invalid(_) => 0,
            SignFailure::UnknownRelayer(_) => 1,
            SignFailure::ContractNotAllowed { .. } => 2,
            SignFailure::RequestConflict(_) => 3,
            SignFailure::Signer(_) => 4,
            SignFailure::Database(_) => 5,
            SignFailure::Internal(_) => 6,
            SignFailure::DecisionInvalid(_) => 7,
            SignFailure::DecisionMismatch(_) => 8,
            SignFailure::UnknownWallet { .. } => 9,
            SignFailure::PaymentAlreadySigned(_) => 10,
            SignFailure::NonceAlreadySigned { .. } => 11,
            SignFailure::PaymentAlreadyNetted(_) => 12,
            SignFailure::UnknownPayment(_) => 13,
        })
        .collect();
    assert_eq!(covered.len(), 14, "every SignFailure variant");
    all
}

fn allow_list_errors() -> Vec<AllowListError> {
    let all =
        vec![AllowListError::NotEvm("base".into()), AllowListError::ZeroAddress("eip155:1".into())];
    let covered: BTreeSet<u8> = all
        .iter()
        .map(|error| match error {
            AllowListError::NotEvm(_) => 0,
            AllowListError::ZeroAddress(_) => 1,
        })
        .collect();
    assert_eq!(covered.len(), 2, "every AllowListError variant");
    all
}

fn decision_errors() -> Vec<DecisionError> {
    let all = vec![
        DecisionKey::from_seed_hex(&DECISION_SEED_HEX[..63]).unwrap_err(),
        DecisionKey::from_seed_hex(&format!("{}zz", &DECISION_SEED_HEX[..62])).unwrap_err(),
        DecisionVerifier::from_public_key_hex(&format!("{DECISION_SEED_HEX}00")).unwrap_err(),
        DecisionError::Signing("signing failed".into()),
        DecisionError::Malformed("the header is not base64url".into()),
        DecisionError::BadSignature,
        DecisionError::Expired,
        DecisionError::NotYetValid,
        DecisionError::WrongIssuer,
        DecisionError::WrongAudience,
        DecisionError::LifetimeTooLong,
        DecisionError::WrongAlgorithm,
    ];
    let covered: BTreeSet<u8> = all
        .iter()
        .map(|error| match error {
            DecisionError::InvalidKey(_) => 0,
            DecisionError::Signing(_) => 1,
            DecisionError::Malformed(_) => 2,
            DecisionError::BadSignature => 3,
            DecisionError::Expired => 4,
            DecisionError::NotYetValid => 5,
            DecisionError::WrongIssuer => 6,
            DecisionError::WrongAudience => 7,
            DecisionError::LifetimeTooLong => 8,
            DecisionError::WrongAlgorithm => 9,
        })
        .collect();
    assert_eq!(covered.len(), 10, "every DecisionError variant");
    all
}

fn all_forms(value: &(impl std::fmt::Debug + ?Sized)) -> String {
    format!("{value:?}\n{value:#?}")
}

fn error_forms(error: &(impl std::fmt::Debug + std::fmt::Display)) -> String {
    format!("{error}\n{error:?}\n{error:#?}")
}

#[tokio::test]
async fn no_key_material_is_printed_logged_or_returned() {
    let captured = Captured::default();
    let sink = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let t = TestSigner::start().await;
    let relayer = t.relayer();
    let stored = stored_keys(&t.db.pool).await.remove(0);
    let private_key = decrypt_independently(&stored, KEK_HEX).unwrap();
    let key_hex: String = private_key.iter().map(|byte| format!("{byte:02x}")).collect();
    let mut secrets = secret_forms(&private_key);
    let kek_bytes: Vec<u8> =
        (0..32).map(|i| u8::from_str_radix(&KEK_HEX[2 * i..2 * i + 2], 16).unwrap()).collect();
    secrets.extend(secret_forms(&kek_bytes));
    let decision_seed: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&DECISION_SEED_HEX[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    secrets.extend(secret_forms(&decision_seed));

    // Work that logs: a signature, a refusal, a replay.
    let good = request(relayer);
    t.sign(&good).await.unwrap();
    t.sign(&good).await.unwrap();
    t.sign(&awx_api::signer::SignTransaction { gas_limit: 0, ..request(relayer) })
        .await
        .unwrap_err();

    // An agent's wallet and its authorizations: signed, replayed, refused.
    let agent = awx_types::AgentId::new();
    let wallet = t.create_wallet(agent).await;
    let agent_key = stored_keys(&t.db.pool)
        .await
        .into_iter()
        .find(|key| key.address == format!("{wallet:#x}"))
        .unwrap();
    secrets.extend(secret_forms(&decrypt_independently(&agent_key, KEK_HEX).unwrap()));
    let authorization = authorization_request(agent, wallet);
    t.sign_authorization(&authorization).await.unwrap();
    t.sign_authorization(&authorization).await.unwrap();
    let stale = awx_api::signer::SignAuthorization {
        decision: decide(&authorization, &decision_key(), now_unix() - 600, 60),
        ..authorization.clone()
    };
    t.sign_authorization(&stale).await.unwrap_err();
    let mut mismatched = authorization.clone();
    mismatched.authorization.value += alloy::primitives::U256::from(1);
    t.sign_authorization(&mismatched).await.unwrap_err();

    // The decision key and its verifier print only the public key.
    let the_decision_key = decision_key();
    assert_hides("DecisionKey", &all_forms(&the_decision_key), &secrets);
    assert_hides("DecisionVerifier", &all_forms(&the_decision_key.verifier()), &secrets);
    assert_hides("a decision", &authorization.decision, &secrets);
    for error in decision_errors() {
        assert_hides("DecisionError", &error_forms(&error), &secrets);
    }

    // The types that hold keys, and the settings.
    let namespace = RedisNamespace::new();
    let mut service_settings = settings(&t.db, &namespace);
    let kek_file = TempFile::with(KEK_HEX);
    service_settings.kek_file = Some(kek_file.0.clone());
    assert_hides("settings", &all_forms(&service_settings), &secrets);
    let service = SignerService::build_with_kek(service_settings.clone(), kek()).await.unwrap();
    assert_hides("SignerService", &all_forms(&service), &secrets);
    drop(service);
    let the_kek = kek();
    assert_hides("Kek", &all_forms(&the_kek), &secrets);
    assert_hides("KekId", &all_forms(the_kek.id()), &secrets);
    let sealed = the_kek.seal(relayer, &private_key).unwrap();
    assert_hides("SealedKey", &all_forms(&sealed), &secrets);
    assert_hides("Custody", &all_forms(&*t.custody), &secrets);
    assert_hides("Signer", &all_forms(&**t.custody.signer()), &secrets);
    let local = LocalSigner::open(&t.db.pool, kek(), 1).await.unwrap();
    assert_hides("LocalSigner", &all_forms(&local), &secrets);
    assert_hides("SignerHandlers", &all_forms(&SignerHandlers::new(t.custody.clone())), &secrets);
    assert_hides("AllowList", &all_forms(&AllowList::default()), &secrets);

    // A KEK file or variable holding the wrong text: the error names the source, not the text.
    let bad_file = TempFile::with(&format!("{key_hex}\n{KEK_HEX}"));
    service_settings.kek_file = Some(bad_file.0.clone());
    let error = SignerService::build(service_settings).await.unwrap_err();
    assert_hides("build error", &format!("{error:#}\n{error:?}"), &secrets);

    // Every error variant, real ones where they can be had.
    let wrong_kek = LocalSigner::open(&t.db.pool, other_kek(), 1).await.unwrap_err();
    for error in kek_errors(&key_hex) {
        assert_hides("KekError", &error_forms(&error), &secrets);
    }
    for error in key_store_errors(wrong_kek, &stored.address) {
        assert_hides("KeyStoreError", &error_forms(&error), &secrets);
    }
    for error in signer_errors(relayer) {
        assert_hides("SignerError", &error_forms(&error), &secrets);
    }
    for error in sign_failures(relayer) {
        assert_hides("SignFailure", &error_forms(&error), &secrets);
    }
    for error in allow_list_errors() {
        assert_hides("AllowListError", &error_forms(&error), &secrets);
    }
    assert_hides("OpenError", &error_forms(&OpenError), &secrets);
    assert_hides("SealError", &error_forms(&SealError), &secrets);

    t.stop().await;
    let logs = captured.text();
    assert!(logs.contains("transaction signed"), "the logs were captured: {logs}");
    assert!(logs.contains("agent wallet created"), "{logs}");
    assert!(logs.contains("authorization signed"), "{logs}");
    assert!(logs.contains("signer keys loaded"), "{logs}");
    assert_hides("logs", &logs, &secrets);
}
