//! The facilitator's commands (family `settlement`): verify, settle and supported, in the wire
//! shapes of the x402 facilitator protocol, so the gateway only forwards them.
//!
//! Business failures are answers (`isValid: false`, `success: false` with the official reason
//! strings); a rejection means the request itself could not be read.

use awx_bus::Command;
use awx_types::AccountId;
use awx_x402::{FacilitatorRequest, SettleResponse, SupportedResponse, VerifyResponse};
use serde::{Deserialize, Serialize};

/// The command family (request stream) of the settlement service.
pub const FAMILY: &str = "settlement";

/// Stable codes of the facilitator's rejections.
pub mod codes {
    /// The request is not a readable facilitator request.
    pub const INVALID_REQUEST: &str = "invalid_request";
    /// The chain's node did not answer (retry later).
    pub const CHAIN_UNAVAILABLE: &str = "chain_unavailable";
}

/// Verifies a payment against the provider's requirements.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verify {
    /// The provider's account.
    pub provider: AccountId,
    /// The body of `POST /verify`.
    pub request: FacilitatorRequest,
}

impl Command for Verify {
    const FAMILY: &'static str = FAMILY;
    const NAME: &'static str = "facilitator.verify";
    type Reply = VerifyResponse;
}

/// Settles a payment: on chain for outside payers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settle {
    /// The provider's account.
    pub provider: AccountId,
    /// The body of `POST /settle`.
    pub request: FacilitatorRequest,
}

impl Command for Settle {
    const FAMILY: &'static str = FAMILY;
    const NAME: &'static str = "facilitator.settle";
    type Reply = SettleResponse;
}

/// What the facilitator supports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Supported {}

impl Command for Supported {
    const FAMILY: &'static str = FAMILY;
    const NAME: &'static str = "facilitator.supported";
    type Reply = SupportedResponse;
}
