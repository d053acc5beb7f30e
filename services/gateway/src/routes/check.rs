//! `POST /api/v1/x402/check` (agent scope): does a URL take x402, and which of its offers can the
//! platform pay?
//!
//! The URL is fetched through the SSRF-guarded client ([`crate::outbound`]). A 402 with a
//! readable challenge (the v2 `PAYMENT-REQUIRED` header, or a v1 body) is answered with its
//! version, resource, every offer in strict v2 form, and the offers split into payable (an
//! `exact` offer on an EVM network in a token the registry knows, shown in human decimals) and
//! unpayable (with the reason). Any other answer is not an error: the URL simply does not take
//! x402, and the check says so with the status and a reason.
//!
//! [`fetch_challenge`] and [`assess_offer`] are the reusable parts (the pay route reads
//! challenges and chooses offers with them).

use std::sync::Arc;

use awx_types::Amount;
use awx_x402::{
    Challenge, ChallengeError, ExactEvmOffer, OfferError, PaymentRequirements, ResourceInfo,
    TokenInfo, TokenRegistry,
};
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Principal;
use crate::auth::key::Scope;
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiJson;
use crate::state::AppState;

/// What fetching a URL for its x402 challenge found.
#[derive(Debug, Clone)]
pub struct FetchedChallenge {
    /// The URL that answered: the requested one, or the last redirect's.
    pub url: String,
    /// How many redirects were followed.
    pub redirects: u32,
    /// The URLs redirected to, in order (the last is `url`): a payment checks each against the
    /// agent's and the session's allowed URLs.
    pub hops: Vec<String>,
    /// The answer's status.
    pub status: StatusCode,
    /// The challenge, or why the answer is not one.
    pub challenge: Result<Challenge, NotX402>,
}

/// Why an answer is not an x402 challenge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotX402 {
    /// The target answered another status than 402.
    #[error("the target answered {0}, not 402 Payment Required")]
    NotPaymentRequired(StatusCode),
    /// The target answered 402 without a challenge that can be read.
    #[error("the target answered 402 without a readable x402 challenge: {0}")]
    Unreadable(ChallengeError),
}

/// Fetches `url` through the guarded client and reads its x402 challenge: the
/// `PAYMENT-REQUIRED` header (v2) or, without one, the body (v1, or a v2 body).
///
/// Fails only when the URL cannot be fetched (refused, unreachable, too slow, too large, too
/// many redirects); an answer that is not a challenge is `Ok` with `challenge: Err(..)`.
pub async fn fetch_challenge(state: &AppState, url: &str) -> Result<FetchedChallenge, ApiError> {
    let fetched = state.outbound.get(url).await?;
    let challenge = if fetched.status == StatusCode::PAYMENT_REQUIRED {
        let header = fetched.headers.get(awx_x402::header::PAYMENT_REQUIRED);
        match header.map(|value| value.to_str()) {
            Some(Err(_)) => Err(NotX402::Unreadable(ChallengeError::Malformed(
                "the PAYMENT-REQUIRED header is not visible ASCII".into(),
            ))),
            header => awx_x402::read_challenge(
                header.and_then(Result::ok),
                &fetched.body,
                &state.registry,
            )
            .map_err(NotX402::Unreadable),
        }
    } else {
        Err(NotX402::NotPaymentRequired(fetched.status))
    };
    Ok(FetchedChallenge {
        url: fetched.url.to_string(),
        redirects: fetched.redirects,
        hops: fetched.hops.iter().map(ToString::to_string).collect(),
        status: fetched.status,
        challenge,
    })
}

/// An offer the platform can pay, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payable {
    /// The offer, checked as exact EVM.
    pub offer: ExactEvmOffer,
    /// The registry's token for its asset.
    pub token: TokenInfo,
    /// The amount in atomic units.
    pub amount: Amount,
}

/// Why the platform cannot pay an offer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unpayable {
    /// Not an exact offer on an EVM network with address fields.
    #[error("{0}")]
    Offer(#[from] OfferError),
    /// The registry does not know the asset on the network.
    #[error("the platform does not know the token {asset} on {network}")]
    UnknownToken {
        /// The asset address.
        asset: String,
        /// The network.
        network: String,
    },
    /// The offer's EIP-712 domain differs from the token's, so a payment signed for it would
    /// be refused.
    #[error(
        "the offer's EIP-712 domain (name `{offered_name}`, version `{offered_version}`) differs from {symbol}'s (name `{name}`, version `{version}`)"
    )]
    DomainMismatch {
        /// The offer's `extra.name`.
        offered_name: String,
        /// The offer's `extra.version`.
        offered_version: String,
        /// The token's symbol.
        symbol: String,
        /// The token's domain name.
        name: String,
        /// The token's domain version.
        version: String,
    },
    /// The amount does not fit the platform's amounts.
    #[error("the amount {0} is too large")]
    AmountTooLarge(String),
}

/// Whether the platform can pay `offer`: an `exact` offer on an EVM CAIP-2 network whose asset
/// the registry knows there (and whose `extra` domain, when present, is the token's).
pub fn assess_offer(
    offer: &PaymentRequirements,
    registry: &TokenRegistry,
) -> Result<Payable, Unpayable> {
    let exact = offer.exact_evm()?;
    let token = registry.by_address(exact.chain_id, exact.asset).ok_or_else(|| {
        Unpayable::UnknownToken {
            asset: exact.asset.to_checksum(None),
            network: offer.network.clone(),
        }
    })?;
    if let Some(domain) = &exact.domain
        && (domain.name != token.eip712_name || domain.version != token.eip712_version)
    {
        return Err(Unpayable::DomainMismatch {
            offered_name: domain.name.chars().take(80).collect(),
            offered_version: domain.version.chars().take(80).collect(),
            symbol: token.symbol.clone(),
            name: token.eip712_name.clone(),
            version: token.eip712_version.clone(),
        });
    }
    let amount = Amount::parse_atomic(&offer.amount)
        .map_err(|_| Unpayable::AmountTooLarge(offer.amount.chars().take(80).collect()))?;
    Ok(Payable { offer: exact, token: token.clone(), amount })
}

/// A check request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest {
    /// The URL to check: `http` or `https`, a public host, at most 2048 characters.
    #[schema(example = "https://api.example.com/premium-data")]
    pub url: String,
}

/// An offer the platform can pay.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PayableOffer {
    /// The offer's position in `accepts`.
    pub index: usize,
    /// The scheme (`exact`).
    #[schema(example = "exact")]
    pub scheme: String,
    /// The CAIP-2 network.
    #[schema(example = "eip155:84532")]
    pub network: String,
    /// The token contract.
    #[schema(example = "0x036CbD53842c5426634e7929541eC2318f3dCF7e")]
    pub asset: String,
    /// The amount in the token, as a decimal string.
    #[schema(example = "0.10")]
    pub amount: String,
    /// The token's symbol.
    #[schema(example = "USDC")]
    pub token: String,
    /// The recipient.
    #[schema(example = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C")]
    pub pay_to: String,
}

/// An offer the platform cannot pay.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UnpayableOffer {
    /// The offer's position in `accepts`.
    pub index: usize,
    /// Why it cannot be paid.
    #[schema(example = "network `solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp` is not an EVM network")]
    pub reason: String,
}

/// What the check found.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CheckResponse {
    /// The URL as requested.
    pub url: String,
    /// The URL that answered, when redirects were followed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub final_url: Option<String>,
    /// Whether the URL answered with a readable x402 challenge.
    pub x402: bool,
    /// The HTTP status the URL answered.
    #[schema(example = 402)]
    pub status: u16,
    /// Why the URL does not take x402 (only when `x402` is false).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The protocol version the URL speaks, 1 or 2 (only when `x402` is true); a payment is
    /// sent in it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = 2)]
    pub x402_version: Option<u32>,
    /// What is being paid for (x402 `ResourceInfo`: `url`, `description`, `mimeType`), or null.
    #[schema(value_type = Option<Object>)]
    pub resource: Option<ResourceInfo>,
    /// Every offer, in strict x402 v2 form (`amount` in atomic units, `asset` an address); v1
    /// offers are converted (`maxAmountRequired` becomes `amount`, network names CAIP-2).
    #[schema(value_type = Vec<Object>)]
    pub accepts: Vec<PaymentRequirements>,
    /// The offers the platform can pay.
    pub payable: Vec<PayableOffer>,
    /// The offers it cannot, with the reason.
    pub unpayable: Vec<UnpayableOffer>,
}

impl CheckResponse {
    /// The answer for a fetched challenge.
    pub fn new(
        url: String,
        fetched: FetchedChallenge,
        registry: &TokenRegistry,
    ) -> Result<Self, ApiError> {
        let final_url = (fetched.redirects > 0).then_some(fetched.url);
        let status = fetched.status.as_u16();
        let challenge = match fetched.challenge {
            Ok(challenge) => challenge,
            Err(not_x402) => {
                return Ok(Self {
                    url,
                    final_url,
                    x402: false,
                    status,
                    reason: Some(not_x402.to_string()),
                    x402_version: None,
                    resource: None,
                    accepts: Vec::new(),
                    payable: Vec::new(),
                    unpayable: Vec::new(),
                });
            }
        };
        let mut payable = Vec::new();
        let mut unpayable = Vec::new();
        for (index, offer) in challenge.payment_required.accepts.iter().enumerate() {
            match assess_offer(offer, registry) {
                Ok(found) => payable.push(PayableOffer {
                    index,
                    scheme: offer.scheme.clone(),
                    network: found.offer.network.to_string(),
                    asset: found.offer.asset.to_checksum(None),
                    amount: found
                        .token
                        .format_amount(found.amount)
                        .map_err(|error| ApiError::internal("formatting an amount", &error))?,
                    token: found.token.symbol.clone(),
                    pay_to: found.offer.pay_to.to_checksum(None),
                }),
                Err(reason) => unpayable.push(UnpayableOffer { index, reason: reason.to_string() }),
            }
        }
        let resource = challenge.payment_required.resource;
        Ok(Self {
            url,
            final_url,
            x402: true,
            status,
            reason: None,
            x402_version: Some(challenge.x402_version),
            resource: (!resource.url.is_empty()).then_some(resource),
            accepts: challenge.payment_required.accepts,
            payable,
            unpayable,
        })
    }
}

/// Checks whether a URL takes x402 payments, and which of its offers the platform can pay.
///
/// The URL is fetched with GET: http or https, public addresses only (loopback, private,
/// link-local and other non-public addresses are refused, whatever the host name resolves
/// to), with at most 3 redirects, 5 s and a 256 KiB body by default. Its 402 challenge is read
/// from the `PAYMENT-REQUIRED` header (v2) or the body (v1). A URL that answers anything but a
/// readable challenge is `x402: false` with the status and a reason, not an error.
#[utoipa::path(
    post, path = "/api/v1/x402/check", tag = "x402",
    security(("api_key" = ["agent", "admin"])),
    request_body = CheckRequest,
    responses(
        (status = 200, description = "What the URL answered: its challenge's version, resource and offers, which of them the platform can pay, or why it does not take x402", body = CheckResponse),
        (status = 400, description = "The URL is invalid (`invalid_target_url`) or not allowed: not http(s), with credentials, or a loopback, private, link-local or other non-public address (`target_not_allowed`)", body = ErrorBody),
        (status = 401, description = "Missing, invalid or revoked API key", body = ErrorBody),
        (status = 403, description = "The key lacks the agent scope", body = ErrorBody),
        (status = 429, description = "Rate limited", body = ErrorBody),
        (status = 502, description = "The URL could not be reached (`target_unreachable`), redirected too often (`target_too_many_redirects`) or answered too large a body (`target_response_too_large`)", body = ErrorBody),
        (status = 504, description = "The URL did not answer in time (`target_timeout`)", body = ErrorBody),
    )
)]
pub async fn check(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    ApiJson(request): ApiJson<CheckRequest>,
) -> Result<axum::Json<CheckResponse>, ApiError> {
    principal.require(Scope::Agent)?;
    let fetched = fetch_challenge(&state, &request.url).await.map_err(|error| {
        if error.code().status() == StatusCode::BAD_REQUEST {
            error.with_field("url")
        } else {
            error
        }
    })?;
    Ok(axum::Json(CheckResponse::new(request.url, fetched, &state.registry)?))
}

#[cfg(test)]
mod tests {
    use awx_x402::JsonObject;
    use serde_json::json;

    use super::*;

    const BASE_SEPOLIA_USDC: &str = "0x036CbD53842c5426634e7929541eC2318f3dCF7e";
    const PAY_TO: &str = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";

    fn offer(
        scheme: &str,
        network: &str,
        asset: &str,
        extra: Option<(&str, &str)>,
    ) -> PaymentRequirements {
        PaymentRequirements {
            scheme: scheme.into(),
            network: network.into(),
            amount: "100000".into(),
            asset: asset.into(),
            pay_to: PAY_TO.into(),
            max_timeout_seconds: 60,
            extra: extra.map(|(name, version)| {
                let value = json!({"name": name, "version": version});
                serde_json::from_value::<JsonObject>(value).unwrap()
            }),
            other: JsonObject::new(),
        }
    }

    #[test]
    fn offers_are_payable_only_in_known_tokens_on_evm_networks() {
        let registry = TokenRegistry::builtin();
        let usdc = offer("exact", "eip155:84532", BASE_SEPOLIA_USDC, Some(("USDC", "2")));
        let payable = assess_offer(&usdc, &registry).unwrap();
        assert_eq!(payable.token.symbol, "USDC");
        assert_eq!(payable.token.format_amount(payable.amount).unwrap(), "0.10");
        // Without `extra` the registry's domain is used.
        assert!(
            assess_offer(&offer("exact", "eip155:84532", BASE_SEPOLIA_USDC, None), &registry)
                .is_ok()
        );
        let cases = [
            (
                offer("upto", "eip155:84532", BASE_SEPOLIA_USDC, None),
                "scheme `upto` is not `exact`",
            ),
            (
                offer(
                    "exact",
                    "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp",
                    "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v",
                    None,
                ),
                "network `solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp` is not an EVM network",
            ),
            (
                offer("exact", "eip155:84532", "0x0000000000000000000000000000000000000bad", None),
                "the platform does not know the token 0x0000000000000000000000000000000000000Bad on eip155:84532",
            ),
            // USDC's Base address is not a token on Base Sepolia.
            (
                offer("exact", "eip155:84532", "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913", None),
                "the platform does not know the token 0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913 on eip155:84532",
            ),
            (
                offer("exact", "eip155:84532", BASE_SEPOLIA_USDC, Some(("USD Coin", "2"))),
                "the offer's EIP-712 domain (name `USD Coin`, version `2`) differs from USDC's (name `USDC`, version `2`)",
            ),
        ];
        for (offer, reason) in cases {
            assert_eq!(assess_offer(&offer, &registry).unwrap_err().to_string(), reason);
        }
        let mut huge = usdc;
        huge.amount = "1".repeat(60);
        assert!(matches!(assess_offer(&huge, &registry), Err(Unpayable::AmountTooLarge(_))));
    }
}
