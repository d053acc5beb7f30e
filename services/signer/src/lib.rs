//! The awx signer service: custody of keys, and the only place that signs with them.
//!
//! It listens on no port at all: it is reached only through bus commands (family `signer`,
//! types in `awx_api::signer`).
//!
//! - [`kek`]: the key-encryption key (from `AWX_SIGNER_KEK` or a file) and AES-256-GCM
//!   encryption of private keys at rest, bound to their address.
//! - [`signer`]: the [`Signer`] backend trait (addresses by purpose, creating keys in the
//!   caller's transaction, signing 32-byte digests), so an MPC or KMS backend can replace the
//!   local one.
//! - [`local`]: the local backend: keys in `signer.keys`, decrypted once into memory; relayer
//!   keys created at start under an advisory lock, agent keys on demand.
//! - [`contracts`]: the allow-list of contracts relayers may call, per chain; changeable at run
//!   time in-process.
//! - [`custody`]: the rules of relayer transactions (limits, relayers, allow-list) and the
//!   signing log, with idempotent replay by request id.
//! - [`wallets`]: agent wallets (one secp256k1 key per agent, created idempotently) and the
//!   EIP-3009 authorizations they sign: only against a decision of the policy service (an
//!   EdDSA JWT, `awx-decision`, verified with `decision_public_key_hex`) that binds exactly the
//!   request's fields, each payment id and each wallet's nonce (per chain and token) at most
//!   once (`signer.authorizations`), a repeated request answered with the stored signature.
//! - [`net`]: net transfers of the batch settlement worker: one authorization from an agent's
//!   wallet for the sum of captured payments, only against a decision that binds exactly those
//!   payments, each payment in at most one signed net transfer per kind
//!   (`signer.net_transfer_payments`); and withdrawals, net transfers of kind `withdrawal` from
//!   an agent's wallet to an outside address that cover only their own id.
//! - [`commands`]: the rules as bus commands; [`app`]: building and running the service.
//!
//! The signer signs no authorization that a valid, unexpired decision does not bind exactly.
//!
//! No key material is ever logged, returned in an error or printed by `Debug`: the KEK and
//! decrypted keys live in zeroizing types whose `Debug` shows only ids and addresses.

pub mod app;
pub mod commands;
pub mod config;
pub mod contracts;
pub mod custody;
pub mod error;
pub mod kek;
pub mod local;
pub mod net;
pub mod signer;
pub mod wallets;

pub use app::SignerService;
pub use config::SignerSettings;
pub use custody::Custody;
pub use kek::Kek;
pub use local::LocalSigner;
pub use signer::{KeyPurpose, Signer, SignerError};
