//! The ledger's commands (family `ledger`): deposits, holds and their capture or release,
//! payouts, balances, statements and fee tiers.
//!
//! Amounts are atomic units of the asset. Every command that moves money is idempotent by a key
//! derived from what it records (the payment id of a hold, the transaction and log index of a
//! deposit, the hold of a capture or void), so a retry returns the original result.

use awx_bus::Command;
use awx_types::{AccountId, AgentId, Amount, LedgerId, PaymentId};
use awx_x402::{Address, B256};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// The command family (request stream) of the ledger.
pub const FAMILY: &str = "ledger";

/// Stable codes of the ledger's rejections.
pub mod codes {
    /// The wallet's available balance is below amount plus fee.
    pub const INSUFFICIENT_FUNDS: &str = "insufficient_funds";
    /// No hold with that id (in that account).
    pub const HOLD_NOT_FOUND: &str = "hold_not_found";
    /// The hold was already captured, voided or expired.
    pub const HOLD_NOT_PENDING: &str = "hold_not_pending";
    /// The idempotency key was used with a different request.
    pub const IDEMPOTENCY_CONFLICT: &str = "idempotency_conflict";
    /// The request is malformed (the message says how).
    pub const INVALID_REQUEST: &str = "invalid_request";
    /// The faucet works on development chains only.
    pub const FAUCET_UNAVAILABLE: &str = "faucet_unavailable";
    /// No deposit was recorded under that key (a reversal names one).
    pub const DEPOSIT_NOT_FOUND: &str = "deposit_not_found";
    /// The payment's hold was voided before it was made (its payment was released while the
    /// hold was on its way), so it is never made.
    pub const HOLD_VOIDED: &str = "hold_voided";
}

/// A token on a chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Asset {
    /// The CAIP-2 network.
    pub network: String,
    /// The token contract.
    pub token: Address,
    /// The token's decimals.
    pub decimals: u8,
}

/// Where deposited funds came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DepositSource {
    /// A transfer into the agent's wallet address seen on chain.
    Chain,
    /// The development faucet (development chains only).
    Faucet,
}

/// Records funds that arrived in an agent's wallet on chain. Idempotent by (network, tx hash,
/// log index).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deposit {
    /// The tenant.
    pub owner: AccountId,
    /// The agent.
    pub agent: AgentId,
    /// The asset.
    pub asset: Asset,
    /// The amount.
    pub amount: Amount,
    /// The transaction that moved the funds.
    pub tx_hash: B256,
    /// The `Transfer` log's index in its block.
    pub log_index: u64,
    /// Where the funds came from.
    pub source: DepositSource,
    /// The block the transfer is in (chain deposits): part of the idempotency key, so a transfer
    /// whose block was reorganised away ([`ReverseDeposit`]) is credited again when it reappears
    /// in another block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_hash: Option<B256>,
}

/// The answer to [`Deposit`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepositReply {
    /// The ledger transfer.
    pub ledger_id: LedgerId,
    /// The wallet's available balance after it.
    pub available: Amount,
}

impl Command for Deposit {
    const FAMILY: &'static str = FAMILY;
    const NAME: &'static str = "ledger.deposit";
    const KIND: awx_bus::Kind = awx_bus::Kind::Change;
    type Reply = DepositReply;
}

/// Holds `amount` on an agent's wallet for a withdrawal to an outside address (no fee), until
/// captured (`Capture`: the withdrawal is confirmed on chain; the wallet is debited and the
/// on-chain mirror credited, and it counts in no fee volume), voided (`Void`), or
/// `timeout_seconds` pass. Idempotent by the withdrawal id, which is also the hold's id.
/// `insufficient_funds` when the available balance is short (nothing is held).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldWithdrawal {
    /// The withdrawal (and the hold's id).
    pub withdrawal_id: LedgerId,
    /// The tenant.
    pub owner: AccountId,
    /// The agent.
    pub agent: AgentId,
    /// The asset.
    pub asset: Asset,
    /// The outside address.
    pub to: Address,
    /// The amount.
    pub amount: Amount,
    /// How long the hold lives unless captured or voided.
    pub timeout_seconds: u32,
}

/// The answer to [`HoldWithdrawal`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WithdrawalHeld {
    /// The hold.
    pub ledger_id: LedgerId,
    /// The wallet's available balance after it.
    pub available: Amount,
    /// When the hold expires (Unix seconds) unless captured.
    pub expires_at_unix: i64,
}

impl Command for HoldWithdrawal {
    const FAMILY: &'static str = FAMILY;
    const NAME: &'static str = "ledger.hold_withdrawal";
    const KIND: awx_bus::Kind = awx_bus::Kind::Change;
    type Reply = WithdrawalHeld;
}

/// Reverses a deposit whose block is no longer canonical (a reorganisation): the wallet gives
/// back the deposited amount, as much as is available; what was already spent or held (the
/// `shortfall`) is taken from the platform's `reorg_loss` account, so no wallet goes negative and
/// the loss is visible. Idempotent by the deposit's key (network, tx hash, log index, block
/// hash); the deposit must exist with exactly this amount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReverseDeposit {
    /// The deposit as it was recorded (`source` and all).
    pub deposit: Deposit,
    /// Why (for the statement and the logs).
    pub reason: String,
}

/// The answer to [`ReverseDeposit`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepositReversed {
    /// The reversal transfer.
    pub ledger_id: LedgerId,
    /// Taken back from the wallet's available balance.
    pub from_wallet: Amount,
    /// Taken from the platform's `reorg_loss` account (already spent by the agent).
    pub shortfall: Amount,
    /// The wallet's available balance after it.
    pub available: Amount,
}

impl Command for ReverseDeposit {
    const FAMILY: &'static str = FAMILY;
    const NAME: &'static str = "ledger.reverse_deposit";
    const KIND: awx_bus::Kind = awx_bus::Kind::Change;
    type Reply = DepositReversed;
}

/// Holds `amount` plus the fee on an agent's wallet for a payment to `payee`, until captured,
/// voided, or `timeout_seconds` pass. Idempotent by the payment id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// The payment.
    pub payment_id: PaymentId,
    /// The tenant (its tier sets the fee).
    pub owner: AccountId,
    /// The agent paying.
    pub agent: AgentId,
    /// The asset.
    pub asset: Asset,
    /// The recipient address.
    pub payee: Address,
    /// The amount the payee gets.
    pub amount: Amount,
    /// How long the hold lives unless captured or voided.
    pub timeout_seconds: u32,
}

/// The answer to [`Hold`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldReply {
    /// The hold (the payment's `ledger_id`).
    pub ledger_id: LedgerId,
    /// The amount held for the payee.
    pub amount: Amount,
    /// The fee held on top.
    pub fee: Amount,
    /// The fee rate in percent.
    pub fee_rate: Decimal,
    /// The tier the rate came from.
    pub tier: String,
    /// The wallet's available balance after the hold.
    pub available: Amount,
    /// When the hold expires (Unix seconds) unless captured.
    pub expires_at_unix: i64,
}

impl Command for Hold {
    const FAMILY: &'static str = FAMILY;
    const NAME: &'static str = "ledger.hold";
    const KIND: awx_bus::Kind = awx_bus::Kind::Change;
    type Reply = HoldReply;
}

/// Captures a hold: the amount (or less, `amount`) goes to the payee's payable and the fee on it
/// to fee revenue; the rest is released to the wallet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capture {
    /// The hold.
    pub hold_id: LedgerId,
    /// How much to capture for the payee; all of it when absent.
    pub amount: Option<Amount>,
}

/// The answer to [`Capture`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureReply {
    /// The capture transfer.
    pub ledger_id: LedgerId,
    /// The hold.
    pub hold_id: LedgerId,
    /// Captured for the payee.
    pub amount: Amount,
    /// Fee captured.
    pub fee: Amount,
    /// Released back to the wallet.
    pub released: Amount,
}

impl Command for Capture {
    const FAMILY: &'static str = FAMILY;
    const NAME: &'static str = "ledger.capture";
    const KIND: awx_bus::Kind = awx_bus::Kind::Change;
    type Reply = CaptureReply;
}

/// Releases a hold entirely.
///
/// A void of a hold that does not exist (yet) is answered with nothing released, and the
/// ledger remembers it: a [`Hold`] for that payment arriving later (delayed on the bus after its
/// payment was released) is refused with [`codes::HOLD_VOIDED`] instead of holding money no
/// payment will ever capture or release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Void {
    /// The hold.
    pub hold_id: LedgerId,
}

/// The answer to [`Void`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoidReply {
    /// The void transfer; the hold's own id when there was no hold to void.
    pub ledger_id: LedgerId,
    /// The hold.
    pub hold_id: LedgerId,
    /// Released back to the wallet (amount plus fee); zero when there was no hold.
    pub released: Amount,
}

impl Command for Void {
    const FAMILY: &'static str = FAMILY;
    const NAME: &'static str = "ledger.void";
    const KIND: awx_bus::Kind = awx_bus::Kind::Change;
    type Reply = VoidReply;
}

/// Records that `amount` owed to `payee` was paid on chain. Idempotent by (network, tx hash,
/// payee, reference): one transaction may pay a payee several times (a batch of net transfers
/// from several payers), each with its own reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutSettled {
    /// The asset.
    pub asset: Asset,
    /// The payee.
    pub payee: Address,
    /// The amount paid.
    pub amount: Amount,
    /// The settlement transaction.
    pub tx_hash: B256,
    /// What in the transaction paid it (a net transfer or payment id), when one transaction may
    /// pay the payee more than once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

/// The answer to [`PayoutSettled`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutReply {
    /// The ledger transfer.
    pub ledger_id: LedgerId,
    /// What is still owed to the payee.
    pub payable_remaining: Amount,
}

impl Command for PayoutSettled {
    const FAMILY: &'static str = FAMILY;
    const NAME: &'static str = "ledger.payout_settled";
    const KIND: awx_bus::Kind = awx_bus::Kind::Change;
    type Reply = PayoutReply;
}

/// Records that the platform's fees were moved on chain from an agent's wallet (`payer`) to the
/// platform's fee address: `fee_collected` up, on-chain mirror down. Idempotent by (network, tx
/// hash, reference).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeesCollected {
    /// The asset.
    pub asset: Asset,
    /// The agent's wallet the fees left.
    pub payer: Address,
    /// The amount moved.
    pub amount: Amount,
    /// The transaction.
    pub tx_hash: B256,
    /// What in the transaction moved them (the net transfer id).
    pub reference: String,
}

/// The answer to [`FeesCollected`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeesCollectedReply {
    /// The ledger transfer.
    pub ledger_id: LedgerId,
}

impl Command for FeesCollected {
    const FAMILY: &'static str = FAMILY;
    const NAME: &'static str = "ledger.fees_collected";
    const KIND: awx_bus::Kind = awx_bus::Kind::Change;
    type Reply = FeesCollectedReply;
}

/// The balances of an agent's wallets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balances {
    /// The tenant.
    pub owner: AccountId,
    /// The agent.
    pub agent: AgentId,
}

/// One wallet's balance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalletBalance {
    /// The asset.
    pub asset: Asset,
    /// Spendable now.
    pub available: Amount,
    /// Reserved by pending payments.
    pub held: Amount,
}

/// The answer to [`Balances`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalancesReply {
    /// One per asset the agent has ever held.
    pub wallets: Vec<WalletBalance>,
}

impl Command for Balances {
    const FAMILY: &'static str = FAMILY;
    const NAME: &'static str = "ledger.balances";
    const KIND: awx_bus::Kind = awx_bus::Kind::Query;
    type Reply = BalancesReply;
}

/// A page of an agent's wallet entries, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statement {
    /// The tenant.
    pub owner: AccountId,
    /// The agent.
    pub agent: AgentId,
    /// Entries after this cursor (from a previous page).
    pub after: Option<i64>,
    /// The most entries (1 to 100).
    pub limit: u32,
}

/// What a statement line records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineKind {
    /// Funds arrived.
    Deposit,
    /// A deposit was taken back (its block was reorganised away).
    DepositReversal,
    /// Funds were held for a withdrawal.
    WithdrawalHold,
    /// A withdrawal left the wallet on chain.
    Withdrawal,
    /// Funds were held for a payment.
    Hold,
    /// A hold was captured (paid), the rest released.
    Capture,
    /// A hold was released.
    Release,
    /// A hold expired and was released.
    Expiry,
    /// Any other movement.
    Transfer,
}

/// One statement line: one entry of the agent's wallet (a payment's hold has two, the amount and
/// the fee, and so has its capture).
///
/// Movements are gross, and `available_after` of the line before, plus `credit`, minus `debit`,
/// is `available_after`: a hold takes what it holds (`debit`); a capture lifts the hold
/// (`credit`, what was held) and takes what was captured (`debit`, the captured amount or its
/// fee), so a partial capture's released rest is their difference; a release or expiry returns
/// what was held (`credit`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatementLine {
    /// The entry id (the cursor).
    pub entry_id: i64,
    /// The transfer; for a hold's capture, release or expiry (and a withdrawal's capture) the
    /// hold's id, which is the payment's `ledger_id` (`ldg_…`) as the API shows it, so every line
    /// of a payment carries the same id.
    pub ledger_id: LedgerId,
    /// What happened.
    pub kind: LineKind,
    /// The asset.
    pub asset: Asset,
    /// Added to the available balance (a capture's: what its hold held).
    pub credit: Amount,
    /// Taken from the available balance (a capture's: what it captured).
    pub debit: Amount,
    /// Available after.
    pub available_after: Amount,
    /// Held after.
    pub held_after: Amount,
    /// When (Unix milliseconds).
    pub at_unix_ms: i64,
}

/// The answer to [`Statement`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatementReply {
    /// The lines.
    pub lines: Vec<StatementLine>,
    /// The cursor of the next page, if any.
    pub next_cursor: Option<i64>,
}

impl Command for Statement {
    const FAMILY: &'static str = FAMILY;
    const NAME: &'static str = "ledger.statement";
    const KIND: awx_bus::Kind = awx_bus::Kind::Query;
    type Reply = StatementReply;
}

/// The fee schedule in effect, and a tenant's current tier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeeTiers {
    /// The tenant.
    pub owner: AccountId,
}

/// One tier, as shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierView {
    /// The name.
    pub name: String,
    /// The 30-day volume (dollars) from which it applies.
    pub volume_from_usd: Decimal,
    /// Up to which it applies (the next tier's start), if bounded.
    pub volume_to_usd: Option<Decimal>,
    /// The fee rate in percent.
    pub fee_rate: Decimal,
}

/// The answer to [`FeeTiers`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeeTiersReply {
    /// The schedule version in effect.
    pub schedule_version: i32,
    /// Since when (Unix seconds).
    pub effective_from_unix: i64,
    /// Its tiers.
    pub tiers: Vec<TierView>,
    /// The tenant's tier.
    pub current_tier: String,
    /// The tenant's fee rate in percent.
    pub current_fee_rate: Decimal,
    /// The tenant's settled volume over the last 30 days, in dollars.
    pub volume_30d_usd: Decimal,
}

impl Command for FeeTiers {
    const FAMILY: &'static str = FAMILY;
    const NAME: &'static str = "ledger.fee_tiers";
    const KIND: awx_bus::Kind = awx_bus::Kind::Query;
    type Reply = FeeTiersReply;
}

/// The status of a hold: `pending`, `captured`, `voided` or `expired`; `None` when there is no
/// such hold. A caller that lost the answer to a capture or a void asks this instead of
/// assuming what happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldStatus {
    /// The hold.
    pub hold_id: LedgerId,
}

/// The answer to [`HoldStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldStatusReply {
    /// The hold's status, if it exists.
    pub status: Option<String>,
}

impl Command for HoldStatus {
    const FAMILY: &'static str = FAMILY;
    const NAME: &'static str = "ledger.hold_status";
    const KIND: awx_bus::Kind = awx_bus::Kind::Query;
    type Reply = HoldStatusReply;
}
