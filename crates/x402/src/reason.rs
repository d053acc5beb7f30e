//! The `invalidReason` / `errorReason` strings of verify and settle responses.
//!
//! For exact EVM we emit the spelling of the official TypeScript and Go facilitators, which
//! are kept character-for-character identical to each other (@x402/evm 2.27). Reasons from
//! other facilitators that we do not know are kept as [`ErrorReason::Other`].

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! reasons {
    ($($(#[$meta:meta])* $variant:ident => $text:literal,)*) => {
        /// A machine-readable reason a payment was invalid or failed to settle.
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum ErrorReason {
            $($(#[$meta])* $variant,)*
            /// A reason this version does not know, kept as it came.
            Other(String),
        }

        impl ErrorReason {
            /// Every reason this version knows.
            pub const KNOWN: &'static [ErrorReason] = &[$(Self::$variant,)*];

            /// The wire string.
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $text,)*
                    Self::Other(text) => text,
                }
            }

            /// The reason for a wire string.
            pub fn parse(text: &str) -> Self {
                match text {
                    $($text => Self::$variant,)*
                    other => Self::Other(other.to_owned()),
                }
            }
        }
    };
}

reasons! {
    /// `scheme` is not `exact` in the payload or the requirements.
    InvalidExactEvmScheme => "invalid_exact_evm_scheme",
    /// The payload's network differs from the requirements'.
    InvalidExactEvmNetworkMismatch => "invalid_exact_evm_network_mismatch",
    /// `extra.name` or `extra.version` is missing.
    InvalidExactEvmMissingEip712Domain => "invalid_exact_evm_missing_eip712_domain",
    /// `authorization.to` is not `payTo`.
    InvalidExactEvmRecipientMismatch => "invalid_exact_evm_recipient_mismatch",
    /// The signature does not recover to (or is not valid for) `authorization.from`.
    InvalidExactEvmSignature => "invalid_exact_evm_signature",
    /// The signature could not be parsed.
    InvalidExactEvmFailedToParseSignature => "invalid_exact_evm_failed_to_parse_signature",
    /// `validBefore` is in the past or within the 6-second grace.
    InvalidExactEvmPayloadAuthorizationValidBefore => "invalid_exact_evm_payload_authorization_valid_before",
    /// `validAfter` is in the future.
    InvalidExactEvmPayloadAuthorizationValidAfter => "invalid_exact_evm_payload_authorization_valid_after",
    /// `value` is not exactly the required amount.
    InvalidExactEvmPayloadAuthorizationValueMismatch => "invalid_exact_evm_payload_authorization_value_mismatch",
    /// A smart wallet signature for a wallet that is not deployed.
    InvalidExactEvmPayloadUndeployedSmartWallet => "invalid_exact_evm_payload_undeployed_smart_wallet",
    /// The token's `name()` differs from `extra.name`.
    InvalidExactEvmTokenNameMismatch => "invalid_exact_evm_token_name_mismatch",
    /// The token's `version()` differs from `extra.version`.
    InvalidExactEvmTokenVersionMismatch => "invalid_exact_evm_token_version_mismatch",
    /// The token does not implement EIP-3009.
    InvalidExactEvmEip3009NotSupported => "invalid_exact_evm_eip3009_not_supported",
    /// The authorization's nonce has been used or canceled.
    InvalidExactEvmNonceAlreadyUsed => "invalid_exact_evm_nonce_already_used",
    /// The payer's balance is below the amount.
    InvalidExactEvmInsufficientBalance => "invalid_exact_evm_insufficient_balance",
    /// Simulating the transfer failed for another reason.
    InvalidExactEvmTransactionSimulationFailed => "invalid_exact_evm_transaction_simulation_failed",
    /// The settlement transaction reverted.
    InvalidExactEvmTransactionFailed => "invalid_exact_evm_transaction_failed",
    /// The receipt has no matching `Transfer` log.
    InvalidExactEvmTransferEventMismatch => "invalid_exact_evm_transfer_event_mismatch",
    /// The payload is not an exact EVM payload.
    InvalidExactEvmPayload => "invalid_exact_evm_payload",
    /// The required amount is not an integer.
    InvalidExactEvmRequiredAmount => "invalid_exact_evm_required_amount",
    /// The asset has no bytecode.
    AssetNotDeployedContract => "asset_not_deployed_contract",
    /// The ERC-6492 factory is not allowed.
    Eip6492FactoryNotAllowed => "eip6492_factory_not_allowed",
    /// The transaction was broadcast but its receipt has not been seen yet (not final).
    SettlementPending => "settlement_pending",
    /// The payload type is not supported.
    UnsupportedPayloadType => "unsupported_payload_type",
    /// The payment is in a state that does not allow this.
    InvalidTransactionState => "invalid_transaction_state",
    /// The payer's balance is below the amount (spec spelling).
    InsufficientFunds => "insufficient_funds",
    /// The network is not supported.
    InvalidNetwork => "invalid_network",
    /// The payload is malformed.
    InvalidPayload => "invalid_payload",
    /// The requirements are malformed.
    InvalidPaymentRequirements => "invalid_payment_requirements",
    /// The scheme is not supported.
    UnsupportedScheme => "unsupported_scheme",
    /// The x402 version is not supported.
    InvalidX402Version => "invalid_x402_version",
    /// An unexpected error while verifying.
    UnexpectedVerifyError => "unexpected_verify_error",
    /// An unexpected error while settling.
    UnexpectedSettleError => "unexpected_settle_error",
    /// The Permit2 spender is not the x402 proxy.
    InvalidPermit2Spender => "invalid_permit2_spender",
}

impl fmt::Display for ErrorReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorReason {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorReason {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Ok(Self::parse(&text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_reason_round_trips() {
        for reason in ErrorReason::KNOWN {
            assert_eq!(&ErrorReason::parse(reason.as_str()), reason);
            assert!(!matches!(ErrorReason::parse(reason.as_str()), ErrorReason::Other(_)));
        }
    }

    #[test]
    fn unknown_reasons_are_kept() {
        let reason: ErrorReason = serde_json::from_str("\"permit2_allowance_required\"").unwrap();
        assert_eq!(reason, ErrorReason::Other("permit2_allowance_required".into()));
        assert_eq!(serde_json::to_string(&reason).unwrap(), "\"permit2_allowance_required\"");
    }
}
