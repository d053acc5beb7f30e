//! Choosing which offer of a 402 challenge to pay.
//!
//! Only `exact` offers that the platform can pay (it knows the token on that network and can
//! sign for it) count. With a chain asked for, the first such offer on that chain wins; without
//! one, the first such offer in the server's order.

use awx_x402::SCHEME_EXACT;

/// What [`choose_offer`] needs to know of one offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OfferView<'a> {
    /// The offer's position in the challenge's `accepts`.
    pub index: usize,
    /// The offer's scheme (`exact`).
    pub scheme: &'a str,
    /// The offer's network (CAIP-2).
    pub network: &'a str,
    /// Whether the platform knows the token on that network and can sign for it.
    pub payable: bool,
}

/// Why no offer was chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChoiceError {
    /// No offer is an `exact` payment the platform can make.
    #[error("the challenge has no offer we can pay: none is an `exact` payment in a known token")]
    NoPayableOffer,
    /// Payable offers exist, but none on the chain asked for.
    #[error(
        "the challenge offers no payable `exact` payment on {chain}; it offers {}",
        .offered.join(", ")
    )]
    ChainNotOffered {
        /// The chain asked for.
        chain: String,
        /// The chains of the payable `exact` offers, in the server's order, without repeats.
        offered: Vec<String>,
    },
}

/// The `index` of the offer to pay: among the `exact` offers marked `payable`, the first on
/// `chain` when one is asked for, else the first in the server's order.
pub fn choose_offer(offers: &[OfferView<'_>], chain: Option<&str>) -> Result<usize, ChoiceError> {
    let mut candidates =
        offers.iter().filter(|offer| offer.payable && offer.scheme == SCHEME_EXACT).peekable();
    let Some(first) = candidates.peek().copied() else {
        return Err(ChoiceError::NoPayableOffer);
    };
    let Some(chain) = chain else {
        return Ok(first.index);
    };
    let mut offered: Vec<String> = Vec::new();
    for offer in candidates {
        if offer.network == chain {
            return Ok(offer.index);
        }
        if !offered.iter().any(|known| known == offer.network) {
            offered.push(offer.network.to_owned());
        }
    }
    Err(ChoiceError::ChainNotOffered { chain: chain.to_owned(), offered })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail by panicking")]

    use super::*;

    const BASE: &str = "eip155:8453";
    const SEPOLIA: &str = "eip155:84532";
    const SOLANA: &str = "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp";

    fn offer(
        index: usize,
        scheme: &'static str,
        network: &'static str,
        payable: bool,
    ) -> OfferView<'static> {
        OfferView { index, scheme, network, payable }
    }

    #[test]
    fn first_payable_exact_offer_in_server_order() {
        let offers = [
            offer(0, "exact", SOLANA, false),
            offer(1, "upto", BASE, true),
            offer(2, "exact", SEPOLIA, true),
            offer(3, "exact", BASE, true),
        ];
        assert_eq!(choose_offer(&offers, None), Ok(2));
    }

    #[test]
    fn the_chain_asked_for() {
        let offers = [
            offer(0, "exact", SEPOLIA, true),
            offer(1, "upto", BASE, true),
            offer(2, "exact", BASE, false),
            offer(3, "exact", BASE, true),
            offer(4, "exact", BASE, true),
        ];
        assert_eq!(choose_offer(&offers, Some(BASE)), Ok(3));
        assert_eq!(choose_offer(&offers, Some(SEPOLIA)), Ok(0));
    }

    #[test]
    fn returns_the_offers_own_index() {
        let offers = [offer(7, "exact", BASE, true)];
        assert_eq!(choose_offer(&offers, None), Ok(7));
        assert_eq!(choose_offer(&offers, Some(BASE)), Ok(7));
    }

    #[test]
    fn chain_not_offered_lists_the_payable_chains() {
        let offers = [
            offer(0, "exact", SEPOLIA, true),
            offer(1, "exact", SOLANA, false),
            offer(2, "upto", "eip155:1", true),
            offer(3, "exact", BASE, true),
            offer(4, "exact", SEPOLIA, true),
        ];
        let error = choose_offer(&offers, Some("eip155:1")).unwrap_err();
        assert_eq!(
            error,
            ChoiceError::ChainNotOffered {
                chain: "eip155:1".to_owned(),
                offered: vec![SEPOLIA.to_owned(), BASE.to_owned()],
            }
        );
        assert_eq!(
            error.to_string(),
            "the challenge offers no payable `exact` payment on eip155:1; it offers \
             eip155:84532, eip155:8453"
        );
    }

    #[test]
    fn nothing_payable() {
        let offers = [offer(0, "exact", SOLANA, false), offer(1, "upto", BASE, true)];
        assert_eq!(choose_offer(&offers, None), Err(ChoiceError::NoPayableOffer));
        assert_eq!(choose_offer(&offers, Some(BASE)), Err(ChoiceError::NoPayableOffer));
        assert_eq!(choose_offer(&[], None), Err(ChoiceError::NoPayableOffer));
        assert_eq!(choose_offer(&[], Some(BASE)), Err(ChoiceError::NoPayableOffer));
    }
}
