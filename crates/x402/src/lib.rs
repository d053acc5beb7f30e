//! The x402 protocol (v2, and v1 for reading), as awx speaks it on the wire.
//!
//! - Wire types with the specification's exact JSON names: [`PaymentRequired`],
//!   [`PaymentRequirements`], [`ResourceInfo`], [`PaymentPayload`], the facilitator's
//!   [`FacilitatorRequest`], [`VerifyResponse`], [`SettleResponse`] and [`SupportedResponse`],
//!   and their v1 counterparts in [`v1`]. Unknown fields are tolerated and kept; `extra` and
//!   `extensions` are kept verbatim.
//! - [`header`]: the base64 header codecs, with a size limit.
//! - [`Network`]: CAIP-2 ids and the v1 network names.
//! - [`TokenRegistry`]: USDC on Base, Base Sepolia, Ethereum and Polygon, extendable from
//!   configuration; exact money parsing (`"$0.001"` to atomic units).
//! - [`eip3009`]: EIP-712 `TransferWithAuthorization` hashing, signing with a local key,
//!   recovery.
//! - [`verify`]: the reference facilitator's offline exact-EVM checks, with its reason strings
//!   ([`ErrorReason`]); [`matching`]: matching `accepted` against a server's offers.
//! - [`challenge`]: reading a 402 challenge as a payer, including the seed-style form.
//!
//! Pure: nothing here does I/O. Time comes in as an argument.

pub mod challenge;
pub mod eip3009;
pub mod facilitator;
pub mod header;
pub mod matching;
pub mod network;
pub mod payload;
pub mod reason;
pub mod registry;
mod serde_util;
pub mod v1;
pub mod v2;
pub mod verify;

pub use challenge::{Challenge, ChallengeError, read_challenge};
pub use eip3009::{EcdsaSignature, SignatureError, TokenDomain};
pub use facilitator::{
    FacilitatorRequest, NormalizedRequest, RequestError, SettleFailure, SettleResponse,
    SupportedKind, SupportedResponse, VerifyResponse,
};
pub use header::{AnyPaymentPayload, HeaderError};
pub use network::{Network, NetworkError};
pub use payload::{
    Eip3009Authorization, Eip3009Payload, ExactEvmPayload, PayloadError, Permit2Authorization,
    Permit2Payload,
};
pub use reason::ErrorReason;
pub use registry::{RegistryError, TokenInfo, TokenRegistry};
pub use v2::{
    ExactEvmOffer, JsonObject, OfferError, PaymentPayload, PaymentRequired, PaymentRequirements,
    ResourceInfo, SCHEME_EXACT, TokenDomainNames, X402_VERSION,
};
pub use verify::{CheckedExactEvm, Invalid, SignatureCheck, check_eoa_signature, check_exact_evm};

/// Re-exported primitives used in this crate's public types.
pub use alloy_primitives::{Address, B256, Bytes, U256};
