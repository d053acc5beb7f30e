//! The signer's rules: what it signs, and the signing log.
//!
//! This module holds the relayers' transactions; agent wallets and their EIP-3009
//! authorizations are in [`crate::wallets`].
//!
//! A [`SignTransaction`] runs inside the caller's transaction (the bus's, so the log row, the
//! inbox row and the stored reply commit together), in one shape:
//!
//! 1. take an advisory lock on the request id, and return the stored signed transaction if the
//!    id was used before with the same request (refusing it, `request_conflict`, if with another);
//! 2. check the request: a positive gas limit within `gas_limit_max`, a positive fee cap within
//!    `max_fee_per_gas_max_wei` and no smaller than the priority fee, calldata within
//!    `input_bytes_max` (`invalid_request`); `from` one of the relayers (`unknown_relayer`); `to`
//!    on the allow-list of `eip155:<chain id>` (`contract_not_allowed`);
//! 3. build the EIP-1559 transaction (no native value, empty access list), sign its signing
//!    hash through the [`Signer`] backend, and check that the signature recovers to `from`;
//! 4. write the log row (request id, kind, address, chain, target, request hash, result).
//!
//! A refusal writes nothing (and the bus rolls back the handler's writes on a refusal anyway).
//! The request hash is SHA-256 over a domain tag, `from`, and the transaction's unsigned
//! EIP-2718 encoding, so it covers every field of the request but its id.

use std::sync::Arc;

use alloy::consensus::{SignableTransaction as _, TxEip1559, TxEnvelope};
use alloy::eips::eip2718::Encodable2718 as _;
use alloy::primitives::{Address, B256, Bytes, TxKind, U256};
use awx_api::signer::{RelayersReply, SignTransaction, SignedTransaction};
use awx_decision::DecisionVerifier;
use sha2::{Digest as _, Sha256};
use sqlx::{PgConnection, Row as _};

use crate::config::SignerSettings;
use crate::contracts::AllowList;
use crate::error::SignFailure;
use crate::kek::address_text;
use crate::signer::{KeyPurpose, Signer, SignerError};

/// The `kind` of a transaction's log row.
pub const KIND_TRANSACTION: &str = "transaction";

/// The domain tag of a transaction request's hash.
const TRANSACTION_HASH_TAG: &[u8] = b"awx.signer.sign_transaction.v1";

/// The limits a transaction must keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest gas limit.
    pub gas_limit_max: u64,
    /// The largest fee cap per gas, in wei.
    pub max_fee_per_gas_max_wei: u128,
    /// The largest calldata, in bytes.
    pub input_bytes_max: usize,
}

impl Limits {
    /// The limits of `settings`.
    pub fn from_settings(settings: &SignerSettings) -> Self {
        Self {
            gas_limit_max: settings.gas_limit_max,
            max_fee_per_gas_max_wei: u128::from(settings.max_fee_per_gas_max_wei),
            input_bytes_max: settings.input_bytes_max,
        }
    }
}

/// The unsigned transaction a request describes: EIP-1559, no native value, no access list.
pub fn unsigned_transaction(request: &SignTransaction) -> TxEip1559 {
    TxEip1559 {
        chain_id: request.chain_id,
        nonce: request.nonce,
        gas_limit: request.gas_limit,
        max_fee_per_gas: request.max_fee_per_gas,
        max_priority_fee_per_gas: request.max_priority_fee_per_gas,
        to: TxKind::Call(request.to),
        value: U256::ZERO,
        access_list: Default::default(),
        input: request.input.clone(),
    }
}

/// The hash that identifies a request's contents (everything but its id).
pub fn request_hash(from: Address, transaction: &TxEip1559) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(TRANSACTION_HASH_TAG);
    hasher.update(from.as_slice());
    hasher.update(transaction.encoded_for_signing());
    hasher.finalize().into()
}

/// The signer's rules over a [`Signer`] backend, the allow-list, and the policy service's
/// decision key.
#[derive(Debug)]
pub struct Custody {
    signer: Arc<dyn Signer>,
    contracts: Arc<AllowList>,
    limits: Limits,
    decisions: Option<DecisionVerifier>,
}

impl Custody {
    /// Rules over `signer`, allowing the contracts of `contracts`, with no decision key (so no
    /// authorization is signed until [`Custody::with_decisions`] gives one).
    pub fn new(signer: Arc<dyn Signer>, contracts: Arc<AllowList>, limits: Limits) -> Self {
        Self { signer, contracts, limits, decisions: None }
    }

    /// The same rules, verifying the policy service's decisions with `decisions` (`None`: every
    /// authorization is refused).
    pub fn with_decisions(mut self, decisions: Option<DecisionVerifier>) -> Self {
        self.decisions = decisions;
        self
    }

    /// The verifier of the policy service's decisions, if a key is configured.
    pub fn decisions(&self) -> Option<&DecisionVerifier> {
        self.decisions.as_ref()
    }

    /// The backend.
    pub fn signer(&self) -> &Arc<dyn Signer> {
        &self.signer
    }

    /// The allow-list (change it at run time through it).
    pub fn contracts(&self) -> &Arc<AllowList> {
        &self.contracts
    }

    /// The relayer addresses, oldest first.
    pub async fn relayers(&self) -> Result<RelayersReply, SignFailure> {
        Ok(RelayersReply { relayers: self.signer.addresses(KeyPurpose::Relayer).await? })
    }

    /// Signs the transaction `request` describes, in `conn`'s transaction; see the module docs.
    pub async fn sign_transaction(
        &self,
        conn: &mut PgConnection,
        request: &SignTransaction,
    ) -> Result<SignedTransaction, SignFailure> {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 7311))")
            .bind(request.request_id.to_string())
            .execute(&mut *conn)
            .await?;
        let transaction = unsigned_transaction(request);
        let hash = request_hash(request.from, &transaction);
        if let Some(stored) = self.replay(conn, request, &hash).await? {
            tracing::info!(request_id = %request.request_id, "signed transaction replayed");
            return Ok(stored);
        }
        let chain_id = self.check(request).await?;

        let digest = transaction.signature_hash();
        let signature = match self.signer.sign_digest(request.from, digest).await {
            Ok(signature) => signature,
            Err(SignerError::UnknownKey(address)) => {
                return Err(SignFailure::UnknownRelayer(address));
            }
            Err(error) => return Err(error.into()),
        };
        let recovered = signature.recover_address_from_prehash(&digest).map_err(|error| {
            SignFailure::Internal(format!("signature does not recover: {error}"))
        })?;
        if recovered != request.from {
            return Err(SignFailure::Internal(format!(
                "the backend signed for {recovered}, not {}",
                request.from
            )));
        }
        let signed = transaction.into_signed(signature);
        let tx_hash: B256 = *signed.hash();
        let raw = TxEnvelope::Eip1559(signed).encoded_2718();
        let reply = SignedTransaction { raw: Bytes::from(raw), hash: tx_hash };

        let result = serde_json::to_value(&reply)
            .map_err(|error| SignFailure::Internal(format!("encoding the result: {error}")))?;
        sqlx::query(
            "INSERT INTO signer.signing_log \
             (request_id, kind, address, chain_id, target, request_hash, result) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(request.request_id)
        .bind(KIND_TRANSACTION)
        .bind(address_text(request.from))
        .bind(chain_id)
        .bind(address_text(request.to))
        .bind(hash.as_slice())
        .bind(result)
        .execute(&mut *conn)
        .await?;
        tracing::info!(
            request_id = %request.request_id,
            chain_id = request.chain_id,
            from = %request.from,
            to = %request.to,
            nonce = request.nonce,
            tx_hash = %tx_hash,
            "transaction signed"
        );
        Ok(reply)
    }

    /// The stored result of an earlier request with this id: `None` if there was none, a
    /// conflict if it was another request.
    async fn replay(
        &self,
        conn: &mut PgConnection,
        request: &SignTransaction,
        hash: &[u8; 32],
    ) -> Result<Option<SignedTransaction>, SignFailure> {
        let row = sqlx::query(
            "SELECT kind, request_hash, result FROM signer.signing_log WHERE request_id = $1",
        )
        .bind(request.request_id)
        .fetch_optional(&mut *conn)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let kind: String = row.try_get("kind")?;
        let stored_hash: Vec<u8> = row.try_get("request_hash")?;
        if kind != KIND_TRANSACTION || stored_hash.as_slice() != hash.as_slice() {
            return Err(SignFailure::RequestConflict(request.request_id));
        }
        let result: serde_json::Value = row.try_get("result")?;
        serde_json::from_value(result).map(Some).map_err(|error| {
            SignFailure::Internal(format!(
                "stored result of request {} does not read back: {error}",
                request.request_id
            ))
        })
    }

    /// Checks the request against the limits, the relayers and the allow-list; returns the
    /// chain id as stored.
    async fn check(&self, request: &SignTransaction) -> Result<i64, SignFailure> {
        let invalid = |message: String| Err(SignFailure::Invalid(message));
        let limits = &self.limits;
        let Ok(chain_id) = i64::try_from(request.chain_id) else {
            return invalid(format!("chain_id {} is out of range", request.chain_id));
        };
        if chain_id == 0 {
            return invalid("chain_id must be positive".into());
        }
        if request.gas_limit == 0 || request.gas_limit > limits.gas_limit_max {
            return invalid(format!(
                "gas_limit must be 1 to {} (got {})",
                limits.gas_limit_max, request.gas_limit
            ));
        }
        if request.max_fee_per_gas == 0 || request.max_fee_per_gas > limits.max_fee_per_gas_max_wei
        {
            return invalid(format!(
                "max_fee_per_gas must be 1 to {} wei (got {})",
                limits.max_fee_per_gas_max_wei, request.max_fee_per_gas
            ));
        }
        if request.max_priority_fee_per_gas > request.max_fee_per_gas {
            return invalid(format!(
                "max_priority_fee_per_gas ({}) is above max_fee_per_gas ({})",
                request.max_priority_fee_per_gas, request.max_fee_per_gas
            ));
        }
        if request.input.len() > limits.input_bytes_max {
            return invalid(format!(
                "input is {} bytes, above the limit of {}",
                request.input.len(),
                limits.input_bytes_max
            ));
        }
        if !self.is_relayer(request.from).await? {
            return Err(SignFailure::UnknownRelayer(request.from));
        }
        if !self.contracts.is_allowed(request.chain_id, request.to) {
            return Err(SignFailure::ContractNotAllowed {
                network: format!("eip155:{}", request.chain_id),
                contract: request.to,
            });
        }
        Ok(chain_id)
    }

    /// Whether `address` is a relayer; keys another replica created since this one loaded its
    /// keys are looked for before answering no.
    async fn is_relayer(&self, address: Address) -> Result<bool, SignFailure> {
        if self.signer.addresses(KeyPurpose::Relayer).await?.contains(&address) {
            return Ok(true);
        }
        self.signer.refresh().await?;
        Ok(self.signer.addresses(KeyPurpose::Relayer).await?.contains(&address))
    }
}
