//! Agent wallets, and the EIP-3009 authorizations they sign.
//!
//! [`Custody::create_wallet`] gives an agent its wallet: a secp256k1 key of purpose `agent`,
//! created through the [`Signer`](crate::Signer) backend (encrypted in `signer.keys` as relayer
//! keys are) and linked in `signer.agent_wallets`, all in the command's transaction. It is
//! idempotent per agent: an advisory lock on the agent serializes concurrent calls, the first
//! creates the key, the others (and any later call) answer the stored address.
//!
//! [`Custody::sign_authorization`] signs a `TransferWithAuthorization` from an agent's wallet,
//! in the command's transaction, in one shape:
//!
//! 1. verify the policy service's decision (`awx-decision`: EdDSA, issuer, audience, expiry,
//!    lifetime; the clock is the system's), refusing without a configured key
//!    (`decision_invalid`);
//! 2. check that every field of the request equals the decision's claims (`decision_mismatch`,
//!    naming the field): payment, agent, chain, token, name, version, and the whole message;
//! 3. check that `from` is the agent's wallet (`unknown_wallet`);
//! 4. under advisory locks on the payment and on (wallet, chain, token, nonce): answer the
//!    stored signature if this payment was signed with the same contents, refuse it if with
//!    other contents (`payment_already_signed`), refuse a nonce the wallet signed for another
//!    payment (`nonce_already_signed`);
//! 5. sign the EIP-712 digest through the backend, check the signature recovers to `from`, and
//!    write the signing log row (kind `authorization`, request id = the payment id) and the
//!    `signer.authorizations` row.
//!
//! The request hash in the log is SHA-256 over a domain tag, the payment and agent ids, and the
//! EIP-712 digest (which covers the domain and every field of the message); the decision itself
//! is not part of it, so the same authorization under a re-issued decision is the same request.

use std::time::{SystemTime, UNIX_EPOCH};

use alloy::primitives::{Address, B256, Bytes, U256};
use awx_api::signer::{AuthorizationSigned, CreateWallet, SignAuthorization, WalletReply};
use awx_decision::DecisionClaims;
use awx_x402::{EcdsaSignature, TokenDomain};
use sha2::{Digest as _, Sha256};
use sqlx::{PgConnection, Row as _};

use crate::custody::Custody;
use crate::error::SignFailure;
use crate::kek::address_text;
use crate::signer::KeyPurpose;

/// The `kind` of an authorization's log row.
pub const KIND_AUTHORIZATION: &str = "authorization";

/// The domain tag of an authorization request's hash.
const AUTHORIZATION_HASH_TAG: &[u8] = b"awx.signer.sign_authorization.v1";

/// The second key of the payment's advisory lock: the signing log's (a payment id is its request
/// id), so a transaction and an authorization with one id also serialize.
const REQUEST_LOCK_KEY: i64 = 7311;
/// The second key of the nonce's advisory lock.
const NONCE_LOCK_KEY: i64 = 7312;
/// The second key of an agent's wallet creation lock.
const WALLET_LOCK_KEY: i64 = 7313;

/// The EIP-712 domain a request signs in.
pub fn request_domain(request: &SignAuthorization) -> TokenDomain {
    TokenDomain {
        name: request.token_name.clone(),
        version: request.token_version.clone(),
        chain_id: request.chain_id,
        verifying_contract: request.token,
    }
}

/// The hash that identifies an authorization request's contents (everything but the decision).
pub fn authorization_request_hash(request: &SignAuthorization, digest: &B256) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(AUTHORIZATION_HASH_TAG);
    hasher.update(request.payment_id.as_uuid().as_bytes());
    hasher.update(request.agent_id.as_uuid().as_bytes());
    hasher.update(digest.as_slice());
    hasher.finalize().into()
}

/// The first field of `request` that differs from `claims`, by its name in the request.
pub fn first_mismatch(
    request: &SignAuthorization,
    claims: &DecisionClaims,
) -> Option<&'static str> {
    let authorization = &request.authorization;
    let checks: [(&'static str, bool); 12] = [
        ("payment_id", claims.jti == request.payment_id.to_string()),
        ("agent_id", claims.sub == request.agent_id.to_string()),
        ("chain_id", claims.chain_id == request.chain_id),
        ("token", claims.token == request.token),
        ("token_name", claims.token_name == request.token_name),
        ("token_version", claims.token_version == request.token_version),
        ("authorization.from", claims.from == authorization.from),
        ("authorization.to", claims.to == authorization.to),
        ("authorization.value", claims.value == authorization.value),
        ("authorization.valid_after", U256::from(claims.valid_after) == authorization.valid_after),
        (
            "authorization.valid_before",
            U256::from(claims.valid_before) == authorization.valid_before,
        ),
        ("authorization.nonce", claims.nonce == authorization.nonce),
    ];
    checks.into_iter().find(|(_, equal)| !equal).map(|(field, _)| field)
}

/// Now, in Unix seconds, from the system clock (before 1970 reads as 0).
pub(crate) fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX))
}

fn stored_address(text: &str) -> Result<Address, SignFailure> {
    text.parse()
        .map_err(|_| SignFailure::Internal(format!("a stored wallet address is malformed: {text}")))
}

impl Custody {
    /// The wallet of `command.agent_id`, created (in `conn`'s transaction) if it has none.
    pub async fn create_wallet(
        &self,
        conn: &mut PgConnection,
        command: &CreateWallet,
    ) -> Result<WalletReply, SignFailure> {
        let agent = command.agent_id.as_uuid();
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, $2))")
            .bind(agent.to_string())
            .bind(WALLET_LOCK_KEY)
            .execute(&mut *conn)
            .await?;
        if let Some(address) = self.wallet_of(conn, command.agent_id).await? {
            return Ok(WalletReply { address });
        }
        let address = self.signer().create_key(&mut *conn, KeyPurpose::Agent).await?;
        sqlx::query("INSERT INTO signer.agent_wallets (agent_id, address) VALUES ($1, $2)")
            .bind(agent)
            .bind(address_text(address))
            .execute(&mut *conn)
            .await?;
        tracing::info!(agent_id = %command.agent_id, %address, "agent wallet created");
        Ok(WalletReply { address })
    }

    /// The wallet of `agent`, if it has one.
    pub(crate) async fn wallet_of(
        &self,
        conn: &mut PgConnection,
        agent: awx_types::AgentId,
    ) -> Result<Option<Address>, SignFailure> {
        let stored: Option<String> =
            sqlx::query_scalar("SELECT address FROM signer.agent_wallets WHERE agent_id = $1")
                .bind(agent.as_uuid())
                .fetch_optional(&mut *conn)
                .await?;
        stored.as_deref().map(stored_address).transpose()
    }

    /// Signs the authorization `request` describes, in `conn`'s transaction; see the module
    /// docs.
    pub async fn sign_authorization(
        &self,
        conn: &mut PgConnection,
        request: &SignAuthorization,
    ) -> Result<AuthorizationSigned, SignFailure> {
        let Some(decisions) = self.decisions() else {
            return Err(SignFailure::DecisionInvalid("no policy key configured".into()));
        };
        let claims = decisions
            .verify(&request.decision, now_unix())
            .map_err(|error| SignFailure::DecisionInvalid(error.to_string()))?;
        if let Some(field) = first_mismatch(request, &claims) {
            return Err(SignFailure::DecisionMismatch(field));
        }
        if claims.covers.is_some() {
            return Err(SignFailure::DecisionMismatch("covers"));
        }
        let chain_id = match i64::try_from(request.chain_id) {
            Ok(chain_id) if chain_id > 0 => chain_id,
            _ => {
                return Err(SignFailure::Invalid(format!(
                    "chain_id must be 1 to {} (got {})",
                    i64::MAX,
                    request.chain_id
                )));
            }
        };
        let from = request.authorization.from;
        let payment = request.payment_id.as_uuid();
        let token = address_text(request.token);
        let nonce = request.authorization.nonce;
        // One round trip: the agent's wallet, then the payment's and the nonce's locks (always
        // in this order, so two requests cannot deadlock; a refused request's locks go with its
        // transaction).
        let wallet: Option<String> = sqlx::query_scalar(
            "SELECT (SELECT address FROM signer.agent_wallets WHERE agent_id = $1)
             FROM (SELECT pg_advisory_xact_lock(hashtextextended($2, $3)),
                          pg_advisory_xact_lock(hashtextextended($4, $5))) AS locked",
        )
        .bind(request.agent_id.as_uuid())
        .bind(payment.to_string())
        .bind(REQUEST_LOCK_KEY)
        .bind(format!("{}:{chain_id}:{token}:{nonce:x}", address_text(from)))
        .bind(NONCE_LOCK_KEY)
        .fetch_one(&mut *conn)
        .await?;
        if wallet.as_deref().map(stored_address).transpose()? != Some(from) {
            return Err(SignFailure::UnknownWallet { agent: request.agent_id, address: from });
        }

        let digest = request.authorization.signing_hash(&request_domain(request));
        let hash = authorization_request_hash(request, &digest);
        // Read under the locks, in one statement: this payment's stored signature, and whether
        // the nonce was signed for another payment or net transfer.
        let row = sqlx::query(
            "SELECT log.kind, log.request_hash, log.result,
                    EXISTS (SELECT 1 FROM signer.authorizations
                            WHERE address = $2 AND chain_id = $3 AND token = $4 AND nonce = $5
                            UNION ALL SELECT 1 FROM signer.net_transfers
                            WHERE address = $2 AND chain_id = $3 AND token = $4 AND nonce = $5) AS taken
             FROM (SELECT 1) AS one
             LEFT JOIN signer.signing_log AS log ON log.request_id = $1",
        )
        .bind(payment)
        .bind(address_text(from))
        .bind(chain_id)
        .bind(&token)
        .bind(nonce.as_slice())
        .fetch_one(&mut *conn)
        .await?;
        if let Some(stored) = stored_authorization(request, &hash, &row)? {
            tracing::info!(payment_id = %request.payment_id, "authorization replayed");
            return Ok(stored);
        }
        if row.try_get::<bool, _>("taken")? {
            return Err(SignFailure::NonceAlreadySigned { address: from, nonce });
        }

        let signature = self.signer().sign_digest(from, digest).await?;
        let signature = EcdsaSignature::from_bytes(&signature.as_bytes()).map_err(|error| {
            SignFailure::Internal(format!("the backend's signature is not canonical: {error}"))
        })?;
        let recovered = signature.recover(&digest).map_err(|error| {
            SignFailure::Internal(format!("signature does not recover: {error}"))
        })?;
        if recovered != from {
            return Err(SignFailure::Internal(format!(
                "the backend signed for {recovered}, not {from}"
            )));
        }
        let reply = AuthorizationSigned { signature: Bytes::from(signature.to_bytes().to_vec()) };

        let result = serde_json::to_value(&reply)
            .map_err(|error| SignFailure::Internal(format!("encoding the result: {error}")))?;
        // The signing log row and the nonce's row, in one statement.
        sqlx::query(
            "WITH log AS (
               INSERT INTO signer.signing_log
                 (request_id, kind, address, chain_id, target, request_hash, result)
               VALUES ($1, $2, $3, $4, $5, $6, $7))
             INSERT INTO signer.authorizations
               (payment_id, address, chain_id, token, nonce, request_id)
             VALUES ($1, $3, $4, $5, $8, $1)",
        )
        .bind(payment)
        .bind(KIND_AUTHORIZATION)
        .bind(address_text(from))
        .bind(chain_id)
        .bind(&token)
        .bind(hash.as_slice())
        .bind(result)
        .bind(nonce.as_slice())
        .execute(&mut *conn)
        .await?;
        tracing::info!(
            payment_id = %request.payment_id,
            agent_id = %request.agent_id,
            chain_id = request.chain_id,
            token = %request.token,
            %from,
            to = %request.authorization.to,
            value = %request.authorization.value,
            nonce = %nonce,
            "authorization signed"
        );
        Ok(reply)
    }
}

/// The stored signature of this payment from `row` (the signing log's `kind`, `request_hash` and
/// `result`, null when it was never signed): `None` if it was never signed, a refusal if it was
/// signed with other contents (or the id names another kind of signature).
fn stored_authorization(
    request: &SignAuthorization,
    hash: &[u8; 32],
    row: &sqlx::postgres::PgRow,
) -> Result<Option<AuthorizationSigned>, SignFailure> {
    let Some(kind) = row.try_get::<Option<String>, _>("kind")? else { return Ok(None) };
    let stored_hash: Vec<u8> = row.try_get("request_hash")?;
    if kind != KIND_AUTHORIZATION || stored_hash.as_slice() != hash.as_slice() {
        return Err(SignFailure::PaymentAlreadySigned(request.payment_id));
    }
    let result: serde_json::Value = row.try_get("result")?;
    serde_json::from_value(result).map(Some).map_err(|error| {
        SignFailure::Internal(format!(
            "stored signature of payment {} does not read back: {error}",
            request.payment_id
        ))
    })
}
