//! The development faucet: mints the network's faucet token to an agent's wallet from a relayer
//! and records the tokens in the ledger as a faucet deposit.
//!
//! Only networks configured with `faucet = true` (development chains) mint, and only if the
//! relayers are minters of `faucet_token` (whoever sets up the development chain makes them
//! minters with `configureMinter`); otherwise the answer is `faucet_unavailable`.
//!
//! The mint is a relayer transaction like a settlement's, through the same steps
//! ([`Facilitator::sign_and_store`]): gas estimated (a revert, such as a relayer that is not a
//! minter, consumes nothing), the relayer's nonce taken under its row lock, signed by the signer,
//! stored in `settlement.chain_txs` (purpose `faucet`, with the deposit to record) before it is
//! broadcast. The command id is the transaction's id, so a redelivered command follows its own
//! mint and never mints twice; another command mints again. Once the receipt shows the token's
//! `Transfer(0x0 → to, amount)`, the ledger records the deposit (idempotent by transaction and
//! log index) and the transaction is `confirmed`. If the receipt does not come within the chain's
//! `receipt_wait_ms`, the answer is `chain_unavailable` with the hash, and the resumer
//! ([`crate::resumer`]) records the deposit when the mint is mined.

use awx_api::facilitator::{Faucet, FaucetReply};
use awx_api::ledger::{Asset, DepositSource};
use awx_chain::{Token, TransactionReceipt};
use awx_types::{AccountId, AgentId, Amount};
use awx_x402::{Address, B256, U256};
use serde::{Deserialize, Serialize};
use sqlx::Row as _;
use uuid::Uuid;

use crate::deposits::{Credit, SeenDeposit};
use crate::facilitator::{Chain, Facilitator, FacilitatorError};
use crate::settle::{Outgoing, Purpose, SignFailure};

/// What the ledger records once a mint is mined (`settlement.chain_txs.deposit`): the ledger's
/// `Deposit` without the transaction hash and log index, and the recipient, to find the
/// `Transfer` log by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaucetDeposit {
    /// The tenant.
    pub owner: AccountId,
    /// The agent.
    pub agent: AgentId,
    /// The token minted.
    pub asset: Asset,
    /// The amount minted.
    pub amount: Amount,
    /// The agent's wallet (the mint's recipient).
    pub to: Address,
}

/// A faucet mint as stored.
#[derive(Debug, Clone)]
pub struct StoredMint {
    /// The `settlement.chain_txs` id (the faucet command's id).
    pub id: Uuid,
    /// The transaction hash.
    pub hash: B256,
    /// `signed` (not broadcast yet), `broadcast`, `confirmed` (mined; deposited unless
    /// `last_error` says why not) or `failed` (mined without minting).
    pub state: String,
    /// Why the last broadcast failed, why the mint failed, or why the ledger refused the
    /// deposit.
    pub last_error: Option<String>,
    /// What to deposit.
    pub deposit: FaucetDeposit,
    raw: Vec<u8>,
}

/// What became of a mined mint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MintOutcome {
    /// Minted and deposited.
    Deposited,
    /// Mined without minting (reverted, or no matching `Transfer` log).
    Failed(String),
    /// Minted, but the ledger refused the deposit (a rejection is final).
    Refused(String),
}

impl Facilitator {
    /// Mints `command.amount` to `command.to` and records the deposit (see the module docs);
    /// `id` is the command's id.
    pub async fn faucet(
        &self,
        command: &Faucet,
        id: Uuid,
    ) -> Result<FaucetReply, FacilitatorError> {
        let chain = self.faucet_chain(&command.network)?;
        let mint = self.faucet_sign(command, id).await?;
        let reply = FaucetReply {
            tx_hash: mint.hash,
            amount: mint.deposit.amount,
            network: command.network.clone(),
        };
        match mint.state.as_str() {
            "confirmed" => {
                return match mint.last_error {
                    None => Ok(reply),
                    Some(message) => Err(FacilitatorError::FaucetUnavailable(message)),
                };
            }
            "failed" => {
                return Err(FacilitatorError::FaucetUnavailable(
                    mint.last_error.unwrap_or_else(|| "the mint failed on chain".into()),
                ));
            }
            "signed" => self.broadcast(chain, mint.id, &mint.raw).await,
            _ => {}
        }
        let Some(receipt) = self.wait_for_receipt(chain, mint.hash).await else {
            return Err(FacilitatorError::Chain(format!(
                "the mint is broadcast as {:#x}; the deposit will be recorded when it is mined",
                mint.hash
            )));
        };
        match self.record_mint(chain, mint.id, mint.hash, &receipt, &mint.deposit).await? {
            MintOutcome::Deposited => Ok(reply),
            MintOutcome::Failed(message) | MintOutcome::Refused(message) => {
                Err(FacilitatorError::FaucetUnavailable(message))
            }
        }
    }

    /// The first half of [`Facilitator::faucet`]: the mint of command `id` signed and stored,
    /// not broadcast (a redelivered command finds it stored, in whatever state it reached).
    /// The resumer, or the rest of `faucet`, broadcasts it.
    pub async fn faucet_sign(
        &self,
        command: &Faucet,
        id: Uuid,
    ) -> Result<StoredMint, FacilitatorError> {
        let chain = self.faucet_chain(&command.network)?;
        if let Some(stored) = self.stored_mint(id).await? {
            return Ok(stored);
        }
        if command.amount.is_zero() {
            return Err(FacilitatorError::InvalidRequest(
                "the faucet mints a positive amount".into(),
            ));
        }
        if command.to == Address::ZERO {
            return Err(FacilitatorError::InvalidRequest(
                "the faucet cannot mint to the zero address".into(),
            ));
        }
        let token_address = chain.faucet_token.ok_or_else(|| faucet_off(&command.network))?;
        let token = chain.client.token(token_address);
        let decimals =
            token.decimals().await.map_err(|error| FacilitatorError::Chain(error.to_string()))?;
        let deposit = FaucetDeposit {
            owner: command.owner,
            agent: command.agent,
            asset: Asset { network: command.network.clone(), token: token_address, decimals },
            amount: command.amount,
            to: command.to,
        };
        let relayer = self.relayer_for(id).await?;
        let outgoing = Outgoing {
            id,
            chain,
            relayer,
            to: token_address,
            input: Token::mint_calldata(command.to, U256::from(command.amount.atomic())),
            purpose: Purpose::Faucet(
                serde_json::to_value(&deposit)
                    .map_err(|error| FacilitatorError::InvalidRequest(error.to_string()))?,
            ),
        };
        let mut tx = self.pool.begin().await?;
        let signed = match self.sign_and_store(&mut tx, outgoing).await {
            Ok(signed) => signed,
            Err(SignFailure::Reverted { message, .. }) => {
                return Err(FacilitatorError::FaucetUnavailable(format!(
                    "the relayer {relayer} cannot mint {token_address} on {} (is it a minter? \
                     `configureMinter` makes it one): {message}",
                    command.network
                )));
            }
            Err(SignFailure::Error(error)) => return Err(error),
        };
        tx.commit().await?;
        metrics::counter!("settlement_faucet_mints_total", "network" => command.network.clone())
            .increment(1);
        Ok(StoredMint {
            id,
            hash: signed.hash,
            state: "signed".into(),
            last_error: None,
            deposit,
            raw: signed.raw,
        })
    }

    /// The chain of `network` if its faucet is on.
    fn faucet_chain(&self, network: &str) -> Result<&Chain, FacilitatorError> {
        self.chain(network)
            .filter(|chain| chain.faucet_token.is_some())
            .ok_or_else(|| faucet_off(network))
    }

    /// The faucet transaction stored under `id`, if any.
    async fn stored_mint(&self, id: Uuid) -> Result<Option<StoredMint>, FacilitatorError> {
        let Some(row) = sqlx::query(
            "SELECT purpose, raw, hash, state, last_error, deposit FROM settlement.chain_txs WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let purpose: String = row.get(0);
        let deposit: Option<serde_json::Value> = row.get(5);
        let deposit = deposit
            .filter(|_| purpose == "faucet")
            .and_then(|value| serde_json::from_value::<FaucetDeposit>(value).ok())
            .ok_or_else(|| {
                FacilitatorError::Inconsistent(format!(
                    "the chain transaction {id} is not a readable faucet mint"
                ))
            })?;
        let hash: String = row.get(2);
        Ok(Some(StoredMint {
            id,
            hash: hash.parse().map_err(|_| {
                FacilitatorError::Inconsistent(format!(
                    "the chain transaction {id} has hash {hash:?}"
                ))
            })?,
            state: row.get(3),
            last_error: row.get(4),
            deposit,
            raw: row.get(1),
        }))
    }

    /// Records a mined mint (idempotent; the resumer calls it too): the ledger deposit if the
    /// receipt shows the token's `Transfer(0x0 → to, amount)`, then the transaction's final
    /// state. The ledger not answering is an error (the transaction stays in flight, so the
    /// resumer tries again).
    pub async fn record_mint(
        &self,
        chain: &Chain,
        chain_tx_id: Uuid,
        hash: B256,
        receipt: &TransactionReceipt,
        deposit: &FaucetDeposit,
    ) -> Result<MintOutcome, FacilitatorError> {
        let token = chain.client.token(deposit.asset.token);
        let value = U256::from(deposit.amount.atomic());
        let log_index = if receipt.status() {
            token.transfer_log_index(receipt, Address::ZERO, deposit.to, value)
        } else {
            None
        };
        let Some(log_index) = log_index else {
            let message = if receipt.status() {
                format!("the mint {hash:#x} has no Transfer log of {value} to {}", deposit.to)
            } else {
                format!("the mint {hash:#x} reverted")
            };
            self.end_mint(chain_tx_id, "failed", Some(&message)).await?;
            return Ok(MintOutcome::Failed(message));
        };
        let (Some(block_number), Some(block_hash)) = (receipt.block_number, receipt.block_hash)
        else {
            return Err(FacilitatorError::Chain(format!(
                "the receipt of the mint {hash:#x} has no block"
            )));
        };
        // The same path as a deposit the chain watcher sees (which then finds it recorded).
        let seen = SeenDeposit {
            network: deposit.asset.network.clone(),
            token: deposit.asset.token,
            decimals: deposit.asset.decimals,
            tx_hash: hash,
            log_index,
            block_number,
            block_hash,
            from: Address::ZERO,
            to: deposit.to,
            owner: deposit.owner,
            agent: deposit.agent,
            amount: deposit.amount,
            source: DepositSource::Faucet,
        };
        match self.record_deposit(&seen).await? {
            Credit::Credited => {
                self.end_mint(chain_tx_id, "confirmed", None).await?;
                Ok(MintOutcome::Deposited)
            }
            Credit::Refused(reason) => {
                let message = format!("the tokens are minted ({hash:#x}) but {reason}");
                self.end_mint(chain_tx_id, "confirmed", Some(&message)).await?;
                Ok(MintOutcome::Refused(message))
            }
            Credit::Reversed => {
                let message = format!(
                    "the mint {hash:#x} was minted in a block that left the chain; its deposit was reversed"
                );
                self.end_mint(chain_tx_id, "confirmed", Some(&message)).await?;
                Ok(MintOutcome::Refused(message))
            }
        }
    }

    /// Marks a faucet transaction mined (`confirmed` or `failed`).
    async fn end_mint(
        &self,
        chain_tx_id: Uuid,
        state: &str,
        error: Option<&str>,
    ) -> Result<(), FacilitatorError> {
        sqlx::query(
            "UPDATE settlement.chain_txs SET state = $2, last_error = $3, updated_at = now()
             WHERE id = $1 AND state IN ('signed', 'broadcast')",
        )
        .bind(chain_tx_id)
        .bind(state)
        .bind(error)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

fn faucet_off(network: &str) -> FacilitatorError {
    FacilitatorError::FaucetUnavailable(format!(
        "the faucet does not mint on {network}: it works on development chains configured with \
         `faucet = true` and a `faucet_token`"
    ))
}
