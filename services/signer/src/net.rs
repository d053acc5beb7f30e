//! Net transfers: one EIP-3009 `TransferWithAuthorization` from an agent's wallet for the sum of
//! captured payments (their amounts to their payee, or their fees to the platform), which the
//! batch settlement worker submits on chain in place of the payments' own authorizations; or, of
//! kind `withdrawal`, for a withdrawal from the agent's wallet to an outside address, which covers
//! no payment but itself (`payment_ids` is exactly `[transfer_id]`, the withdrawal's id).
//!
//! [`Custody::sign_net_transfer`] signs one in the command's transaction, only when:
//!
//! 1. the policy service's decision is valid (as for payments) and carries `covers` (a payment's
//!    own decision never signs a net transfer, and a net decision never signs a payment);
//! 2. every field of the request equals the claims (`jti` is the transfer id, `sub` the agent),
//!    and `covers` equals the digest of exactly the request's payment ids and kind;
//! 3. `payment_ids` is not empty, and for a withdrawal is exactly the transfer id
//!    (`invalid_request`);
//! 4. `from` is the agent's wallet, and (for payee and fee transfers) every payment is an
//!    authorization this wallet signed on this chain and token (`unknown_payment`);
//! 5. under an advisory lock on the transfer: the same request again answers the stored
//!    signature; the transfer id with other contents is refused (`request_conflict`); under a
//!    lock on the nonce, a nonce the wallet signed before (for a payment or a net transfer, on
//!    this chain and token) is refused (`nonce_already_signed`);
//! 6. for payee and fee transfers, each payment joins `signer.net_transfer_payments`, whose
//!    primary key (payment, kind) makes a payment part of at most one signed net transfer of each
//!    kind, ever (`payment_already_netted`); a withdrawal joins nothing there: the signing log's
//!    primary key (the transfer id) already signs its id at most once. The digest is signed and
//!    logged (kind `net_transfer`), and the nonce recorded in `signer.net_transfers` with the
//!    transfer's kind (unique per wallet, chain and token).

use alloy::primitives::{Address, B256, Bytes, U256};
use awx_api::policy::NetKind;
use awx_api::signer::{AuthorizationSigned, SignNetTransfer};
use awx_decision::{Covers, DecisionClaims};
use awx_types::PaymentId;
use awx_x402::{EcdsaSignature, TokenDomain};
use sha2::{Digest as _, Sha256};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::custody::Custody;
use crate::error::SignFailure;
use crate::kek::address_text;
use crate::wallets::now_unix;

/// The `kind` of a net transfer's log row.
pub const KIND_NET_TRANSFER: &str = "net_transfer";

/// The domain tag of a net transfer request's hash.
const NET_HASH_TAG: &[u8] = b"awx.signer.sign_net_transfer.v1";

/// The second key of a net transfer's advisory lock (the signing log's, as for payments).
const REQUEST_LOCK_KEY: i64 = 7311;
/// The second key of a nonce's advisory lock (the same as a payment's nonce lock).
const NONCE_LOCK_KEY: i64 = 7312;

/// The payment ids of a request as the decision's `covers` digests them (UUID text).
fn payment_texts(request: &SignNetTransfer) -> Vec<String> {
    request.payment_ids.iter().map(|id| id.as_uuid().to_string()).collect()
}

/// The first field of `request` that differs from `claims`, by its name in the request.
pub fn first_net_mismatch(
    request: &SignNetTransfer,
    claims: &DecisionClaims,
) -> Option<&'static str> {
    let authorization = &request.authorization;
    let covers = Covers::of(request.kind.as_str(), &payment_texts(request));
    let checks: [(&'static str, bool); 13] = [
        ("transfer_id", claims.jti == request.transfer_id.to_string()),
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
        ("payment_ids", claims.covers.as_ref() == Some(&covers)),
    ];
    checks.into_iter().find(|(_, equal)| !equal).map(|(field, _)| field)
}

fn request_hash(request: &SignNetTransfer, digest: &B256) -> [u8; 32] {
    let mut ids = payment_texts(request);
    ids.sort_unstable();
    let mut hasher = Sha256::new();
    hasher.update(NET_HASH_TAG);
    hasher.update(request.transfer_id.as_bytes());
    hasher.update(request.agent_id.as_uuid().as_bytes());
    hasher.update(request.kind.as_str().as_bytes());
    hasher.update(digest.as_slice());
    for id in ids {
        hasher.update(id.as_bytes());
        hasher.update(b"\n");
    }
    hasher.finalize().into()
}

impl Custody {
    /// Signs the net transfer `request` describes, in `conn`'s transaction; see the module docs.
    pub async fn sign_net_transfer(
        &self,
        conn: &mut PgConnection,
        request: &SignNetTransfer,
    ) -> Result<AuthorizationSigned, SignFailure> {
        let Some(decisions) = self.decisions() else {
            return Err(SignFailure::DecisionInvalid("no policy key configured".into()));
        };
        let claims = decisions
            .verify(&request.decision, now_unix())
            .map_err(|error| SignFailure::DecisionInvalid(error.to_string()))?;
        if let Some(field) = first_net_mismatch(request, &claims) {
            return Err(SignFailure::DecisionMismatch(field));
        }
        let chain_id =
            i64::try_from(request.chain_id).ok().filter(|chain_id| *chain_id > 0).ok_or_else(
                || SignFailure::Invalid(format!("chain_id {} is out of range", request.chain_id)),
            )?;
        if request.payment_ids.is_empty() {
            return Err(SignFailure::Invalid("a net transfer covers at least one payment".into()));
        }
        // Payee and fee transfers net payments this wallet signed; a withdrawal covers only itself.
        let nets_payments = match request.kind {
            NetKind::Payee | NetKind::Fee => true,
            NetKind::Withdrawal => false,
        };
        if !nets_payments && request.payment_ids != [PaymentId::from_uuid(request.transfer_id)] {
            return Err(SignFailure::Invalid(format!(
                "a withdrawal covers exactly itself: payment_ids must be [{}]",
                request.transfer_id
            )));
        }
        let from = request.authorization.from;
        if self.wallet_of(conn, request.agent_id).await? != Some(from) {
            return Err(SignFailure::UnknownWallet { agent: request.agent_id, address: from });
        }
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, $2))")
            .bind(request.transfer_id.to_string())
            .bind(REQUEST_LOCK_KEY)
            .execute(&mut *conn)
            .await?;

        let domain = TokenDomain {
            name: request.token_name.clone(),
            version: request.token_version.clone(),
            chain_id: request.chain_id,
            verifying_contract: request.token,
        };
        let digest = request.authorization.signing_hash(&domain);
        let hash = request_hash(request, &digest);
        if let Some(stored) = self.replay_net(conn, request.transfer_id, &hash).await? {
            return Ok(stored);
        }

        let ids: Vec<Uuid> = request.payment_ids.iter().map(|id| id.as_uuid()).collect();
        let token = address_text(request.token);
        if nets_payments {
            self.check_payments_signed(conn, &ids, from, chain_id, &token).await?;
        }

        // A wallet signs a nonce once per chain and token, across payments and net transfers.
        let nonce = request.authorization.nonce;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, $2))")
            .bind(format!("{}:{chain_id}:{token}:{nonce:x}", address_text(from)))
            .bind(NONCE_LOCK_KEY)
            .execute(&mut *conn)
            .await?;
        let taken: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM signer.authorizations WHERE address = $1 AND chain_id = $2 AND token = $3 AND nonce = $4)
                 OR EXISTS (SELECT 1 FROM signer.net_transfers WHERE address = $1 AND chain_id = $2 AND token = $3 AND nonce = $4)",
        )
        .bind(address_text(from))
        .bind(chain_id)
        .bind(&token)
        .bind(nonce.as_slice())
        .fetch_one(&mut *conn)
        .await?;
        if taken {
            return Err(SignFailure::NonceAlreadySigned { address: from, nonce });
        }

        let signature = self.signer().sign_digest(from, digest).await?;
        let signature = EcdsaSignature::from_bytes(&signature.as_bytes()).map_err(|error| {
            SignFailure::Internal(format!("the backend's signature is not canonical: {error}"))
        })?;
        if signature.recover(&digest).ok() != Some(from) {
            return Err(SignFailure::Internal(format!(
                "a net transfer signature does not recover to {from}"
            )));
        }
        let reply = AuthorizationSigned { signature: Bytes::from(signature.to_bytes().to_vec()) };
        let result = serde_json::to_value(&reply)
            .map_err(|error| SignFailure::Internal(format!("encoding the result: {error}")))?;
        sqlx::query(
            "INSERT INTO signer.signing_log (request_id, kind, address, chain_id, target, request_hash, result)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(request.transfer_id)
        .bind(KIND_NET_TRANSFER)
        .bind(address_text(from))
        .bind(chain_id)
        .bind(&token)
        .bind(hash.as_slice())
        .bind(result)
        .execute(&mut *conn)
        .await?;
        sqlx::query(
            "INSERT INTO signer.net_transfers (transfer_id, kind, address, chain_id, token, nonce)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(request.transfer_id)
        .bind(request.kind.as_str())
        .bind(address_text(from))
        .bind(chain_id)
        .bind(&token)
        .bind(nonce.as_slice())
        .execute(&mut *conn)
        .await?;
        if nets_payments {
            self.net_payments(conn, request, &ids).await?;
        }
        tracing::info!(
            transfer_id = %request.transfer_id,
            agent_id = %request.agent_id,
            kind = request.kind.as_str(),
            payments = ids.len(),
            %from,
            to = %request.authorization.to,
            value = %request.authorization.value,
            "net transfer signed"
        );
        Ok(reply)
    }

    /// Refuses `ids` unless each is an authorization `from` signed on `chain_id` in `token`,
    /// each named once.
    async fn check_payments_signed(
        &self,
        conn: &mut PgConnection,
        ids: &[Uuid],
        from: Address,
        chain_id: i64,
        token: &str,
    ) -> Result<(), SignFailure> {
        let known: i64 = sqlx::query_scalar(
            "SELECT count(DISTINCT payment_id) FROM signer.authorizations
             WHERE payment_id = ANY($1) AND address = $2 AND chain_id = $3 AND token = $4",
        )
        .bind(ids)
        .bind(address_text(from))
        .bind(chain_id)
        .bind(token)
        .fetch_one(&mut *conn)
        .await?;
        if usize::try_from(known).ok() != Some(ids.len()) {
            return Err(SignFailure::UnknownPayment(format!(
                "{} of the {} payments are authorizations {from} signed on chain {chain_id} in {token}, each named once",
                known,
                ids.len()
            )));
        }
        Ok(())
    }

    /// Records `ids` as netted by `request` (once per payment and kind, ever).
    async fn net_payments(
        &self,
        conn: &mut PgConnection,
        request: &SignNetTransfer,
        ids: &[Uuid],
    ) -> Result<(), SignFailure> {
        let inserted = sqlx::query(
            "INSERT INTO signer.net_transfer_payments (payment_id, kind, transfer_id)
             SELECT unnest($1::uuid[]), $2, $3",
        )
        .bind(ids)
        .bind(request.kind.as_str())
        .bind(request.transfer_id)
        .execute(&mut *conn)
        .await;
        match inserted {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(error)) if error.is_unique_violation() => {
                Err(SignFailure::PaymentAlreadyNetted(request.kind.as_str()))
            }
            Err(error) => Err(error.into()),
        }
    }

    /// The stored signature of a net transfer: `None` if never signed, a refusal if the id was
    /// used for anything else.
    async fn replay_net(
        &self,
        conn: &mut PgConnection,
        transfer_id: Uuid,
        hash: &[u8; 32],
    ) -> Result<Option<AuthorizationSigned>, SignFailure> {
        let row: Option<(String, Vec<u8>, serde_json::Value)> = sqlx::query_as(
            "SELECT kind, request_hash, result FROM signer.signing_log WHERE request_id = $1",
        )
        .bind(transfer_id)
        .fetch_optional(&mut *conn)
        .await?;
        let Some((kind, stored_hash, result)) = row else { return Ok(None) };
        if kind != KIND_NET_TRANSFER || stored_hash.as_slice() != hash.as_slice() {
            return Err(SignFailure::RequestConflict(transfer_id));
        }
        serde_json::from_value(result).map(Some).map_err(|error| {
            SignFailure::Internal(format!(
                "stored net transfer {transfer_id} does not read back: {error}"
            ))
        })
    }
}
