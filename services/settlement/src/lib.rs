//! The awx settlement service: the x402 facilitator's chain work.
//!
//! - [`facilitator`]: verify (offline checks, signature, simulation, diagnosis), supported.
//! - [`own`]: our own agents' payments, answered by the policy service before any chain call;
//!   settled ones are queued (`settlement.items`) for net settlement.
//! - [`settle`]: settle on chain exactly once per (network, payer, nonce), with every step stored
//!   before broadcast and relayer nonces allocated under a row lock.
//! - [`faucet`]: the development faucet: a mint from a relayer, then a deposit (the watcher's path).
//! - [`batch`], [`batch_plan`], [`batch_send`], [`batch_record`]: the batch settlement worker: nets the queued captures into one
//!   EIP-3009 transfer per (token, payer, payee) group and sends every transfer of a chain in one
//!   Multicall3 `aggregate3` transaction, crash-safe and safe with several replicas.
//! - [`resumer`]: re-broadcasts stored transactions and records late receipts and deposits.
//! - [`external`]: authorizations of our agents used on chain by someone else: read for the
//!   policy service before it releases an expired one, and queued as settled externally.
//! - [`watcher`], [`deposits`]: the chain watcher: deposits into agents' wallets (credited once,
//!   reversed after a reorganisation), authorizations of our wallets used by someone else, and
//!   alerts for wallet use awx did not sign.
//! - [`withdrawals`]: USDC moved from an agent's wallet to an outside address: approved and held
//!   by the policy service and the ledger, signed once, sent by the batch worker.
//! - [`views`]: a payment's settlement state and a provider's net settlements.
//! - [`commands`]: the bus commands (family `settlement`, types in `awx_api::facilitator`).
//!
//! The service owns the `settlement` schema. Transactions are signed by the signer service
//! (`awx_api::signer`); this service never holds a key.

pub mod app;
pub mod batch;
pub mod batch_plan;
pub mod batch_record;
pub mod batch_send;
pub mod commands;
pub mod config;
pub mod deposits;
pub mod external;
pub mod facilitator;
pub mod faucet;
pub mod own;
pub mod own_wallets;
pub mod resumer;
pub mod settle;
pub mod views;
pub mod watcher;
pub mod withdrawals;

pub use app::SettlementService;
pub use config::SettlementSettings;
pub use facilitator::Facilitator;
