//! Classifying why a contract call reverted, from the revert text, with the phrases the
//! official x402 facilitators match on (x402-v2.md §5.2).

use crate::ChainError;

/// Why an EIP-3009 call reverted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevertKind {
    /// The authorization's nonce was used or canceled.
    NonceUsed,
    /// `validBefore` has passed.
    Expired,
    /// `validAfter` has not been reached.
    NotYetValid,
    /// The signature is not the payer's.
    InvalidSignature,
    /// The payer's balance is below the value.
    InsufficientBalance,
    /// Any other revert.
    Other,
}

impl RevertKind {
    /// Classifies a revert text.
    pub fn classify(text: &str) -> Self {
        let text = text.to_ascii_lowercase();
        if text.contains("authorization is used") || text.contains("authorizationusedorcanceled") {
            Self::NonceUsed
        } else if text.contains("authorization is expired") {
            Self::Expired
        } else if text.contains("not yet valid") {
            Self::NotYetValid
        } else if text.contains("invalid signature") || text.contains("signermismatch") {
            Self::InvalidSignature
        } else if text.contains("transfer amount exceeds balance")
            || text.contains("erc20insufficientbalance")
        {
            Self::InsufficientBalance
        } else {
            Self::Other
        }
    }
}

/// Maps an error from sending or calling a contract function: an execution revert becomes
/// [`ChainError::Reverted`] with its kind; anything else is an RPC error.
pub(crate) fn classify_send_error(error: alloy::contract::Error) -> ChainError {
    let message = error.to_string();
    let reverted = message.contains("revert") || error.as_revert_data().is_some();
    if reverted {
        ChainError::Reverted { kind: RevertKind::classify(&message), message }
    } else {
        ChainError::Rpc(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_the_facilitator_phrases() {
        let cases = [
            (
                "execution reverted: EIP3009: authorization is used or canceled",
                RevertKind::NonceUsed,
            ),
            ("FiatTokenV2: authorization is expired", RevertKind::Expired),
            ("EIP3009: authorization is not yet valid", RevertKind::NotYetValid),
            ("EIP3009: invalid signature", RevertKind::InvalidSignature),
            ("ERC20: transfer amount exceeds balance", RevertKind::InsufficientBalance),
            ("out of gas", RevertKind::Other),
        ];
        for (text, kind) in cases {
            assert_eq!(RevertKind::classify(text), kind, "{text}");
        }
    }
}
