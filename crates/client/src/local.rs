//! [`LocalPayer`]: pays x402 URLs itself, with no platform, from a private key: the `exact` EVM
//! scheme (an EIP-3009 `transferWithAuthorization` signed locally), as xpay's `pay(url)` and
//! `XPayClient` do. [`pay`] is the one-call form.
//!
//! One request: send it; on 402 read the challenge (the v2 `PAYMENT-REQUIRED` header, or a v1
//! body), pick the cheapest `exact` EVM offer on an allowed network at or below the request's
//! maximum (none: [`ClientError::AboveMaximum`] or [`ClientError::NoPayableOffer`], nothing
//! signed), sign it, retry once with `PAYMENT-SIGNATURE` (v2) or `X-PAYMENT` (v1). A second 402
//! is [`ClientError::PaidButRefused`], never a second signature.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use alloy_primitives::{Bytes, U256};
use alloy_signer_local::PrivateKeySigner;
use awx_types::Amount;
use awx_x402::eip3009::random_nonce;
use awx_x402::header::{self, PAYMENT_REQUIRED, PAYMENT_SIGNATURE, X_PAYMENT};
use awx_x402::v1::PaymentPayloadV1;
use awx_x402::{
    Challenge, Eip3009Authorization, Eip3009Payload, ExactEvmOffer, ExactEvmPayload,
    PaymentPayload, PaymentRequirements, SettleResponse, TokenDomain, TokenRegistry,
};
use reqwest::header::HeaderValue;
use reqwest::{Method, Request, Response, StatusCode};

use crate::error::ClientError;
use crate::middleware::settlement_of;

/// How far back `validAfter` is set, so a chain whose clock lags the payer's accepts it at once
/// (the official clients use the same ten minutes).
const VALID_AFTER_SKEW_SECONDS: u64 = 600;

/// What a paid request cost.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalReceipt {
    /// The offer paid, as the server wrote it.
    pub accepted: PaymentRequirements,
    /// The amount signed for, in atomic units.
    pub amount: Amount,
    /// The payer's address.
    pub payer: alloy_primitives::Address,
    /// The server's settlement answer (`PAYMENT-RESPONSE`), when it sent one.
    pub settlement: Option<SettleResponse>,
}

impl LocalReceipt {
    /// The settlement transaction, when the server settled on chain.
    pub fn transaction(&self) -> Option<&str> {
        self.settlement.as_ref().map(|s| s.transaction.as_str()).filter(|tx| !tx.is_empty())
    }
}

/// The answer of a request made through a [`LocalPayer`].
#[derive(Debug)]
pub struct LocalPayment {
    /// The final answer (of the retry when a payment was made).
    pub response: Response,
    /// What was paid, when the URL asked for a payment.
    pub receipt: Option<LocalReceipt>,
}

/// The options of [`pay`]: xpay's `{amount, network, privateKey}`.
#[derive(Debug, Clone)]
pub struct PayOptions {
    /// The most to pay, in atomic units of the offer's token.
    pub max_amount: Amount,
    /// The CAIP-2 networks to pay on (`eip155:8453`); empty allows any EVM network.
    pub networks: Vec<String>,
    /// The payer's private key, hex (`0x…`).
    pub private_key: String,
}

/// Pays `url` (a `GET`) with a new [`LocalPayer`] from `options`.
pub async fn pay(url: &str, options: &PayOptions) -> Result<LocalPayment, ClientError> {
    let payer = LocalPayer::from_private_key(&options.private_key, options.max_amount)?
        .networks(options.networks.clone());
    payer.get(url).await
}

/// A reusable client that pays x402 URLs from a local key (xpay's `XPayClient`).
#[derive(Clone)]
pub struct LocalPayer {
    http: reqwest::Client,
    signer: PrivateKeySigner,
    max_amount: Amount,
    networks: Vec<String>,
    registry: TokenRegistry,
}

impl std::fmt::Debug for LocalPayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalPayer")
            .field("address", &self.signer.address())
            .field("max_amount", &self.max_amount)
            .field("networks", &self.networks)
            .finish_non_exhaustive()
    }
}

impl LocalPayer {
    /// Pays from `signer`, at most `max_amount` atomic units per request unless a request says
    /// otherwise.
    pub fn new(signer: PrivateKeySigner, max_amount: Amount) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Self { http, signer, max_amount, networks: Vec::new(), registry: TokenRegistry::builtin() }
    }

    /// [`LocalPayer::new`] from a hex private key.
    pub fn from_private_key(private_key: &str, max_amount: Amount) -> Result<Self, ClientError> {
        let signer: PrivateKeySigner = private_key
            .trim()
            .parse()
            .map_err(|_| ClientError::Signing("the private key is not 32 bytes of hex".into()))?;
        Ok(Self::new(signer, max_amount))
    }

    /// Pays only on these CAIP-2 networks (empty: any EVM network).
    pub fn networks(mut self, networks: Vec<String>) -> Self {
        self.networks = networks;
        self
    }

    /// Uses this HTTP client.
    pub fn http(mut self, http: reqwest::Client) -> Self {
        self.http = http;
        self
    }

    /// Knows these tokens (for seed-style challenges, and offers that do not state the EIP-712
    /// domain).
    pub fn registry(mut self, registry: TokenRegistry) -> Self {
        self.registry = registry;
        self
    }

    /// The payer's address.
    pub fn address(&self) -> alloy_primitives::Address {
        self.signer.address()
    }

    /// The HTTP client, to build requests for [`LocalPayer::execute`].
    pub fn client(&self) -> &reqwest::Client {
        &self.http
    }

    /// `GET url`, paying at most the payer's maximum.
    pub async fn get(&self, url: &str) -> Result<LocalPayment, ClientError> {
        self.get_with_max(url, self.max_amount).await
    }

    /// `GET url`, paying at most `max_amount` for this request.
    pub async fn get_with_max(
        &self,
        url: &str,
        max_amount: Amount,
    ) -> Result<LocalPayment, ClientError> {
        let request = self.http.request(Method::GET, url).build()?;
        self.execute(request, max_amount).await
    }

    /// Sends `request`, paying a 402 of at most `max_amount` and retrying once. The body must be
    /// in memory ([`ClientError::BodyNotCloneable`] otherwise, nothing paid).
    pub async fn execute(
        &self,
        request: Request,
        max_amount: Amount,
    ) -> Result<LocalPayment, ClientError> {
        let retry = request.try_clone();
        let first = self.http.execute(request).await?;
        if first.status() != StatusCode::PAYMENT_REQUIRED {
            return Ok(LocalPayment { response: first, receipt: None });
        }
        let mut retry = retry.ok_or(ClientError::BodyNotCloneable)?;
        let header_value = first
            .headers()
            .get(PAYMENT_REQUIRED)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let body = first.bytes().await?;
        let challenge = awx_x402::read_challenge(header_value.as_deref(), &body, &self.registry)?;
        let (requirements, offer, amount) = self.choose(&challenge, max_amount)?;
        let (name, value) = self.sign(&challenge, requirements, &offer)?;
        let value = HeaderValue::from_str(&value)
            .map_err(|_| ClientError::Signing("the payment header is not a header value".into()))?;
        retry.headers_mut().insert(name, value);
        let response = self.http.execute(retry).await?;
        let settlement = settlement_of(&response);
        if response.status() == StatusCode::PAYMENT_REQUIRED {
            return Err(ClientError::PaidButRefused {
                ledger_id: None,
                settlement: settlement.map(Box::new),
            });
        }
        let receipt = LocalReceipt {
            accepted: requirements.clone(),
            amount,
            payer: self.signer.address(),
            settlement,
        };
        Ok(LocalPayment { response, receipt: Some(receipt) })
    }

    /// The cheapest `exact` EVM offer on an allowed network within `max_amount`.
    fn choose<'c>(
        &self,
        challenge: &'c Challenge,
        max_amount: Amount,
    ) -> Result<(&'c PaymentRequirements, ExactEvmOffer, Amount), ClientError> {
        let mut reasons = Vec::new();
        let mut cheapest_above: Option<Amount> = None;
        let mut best: Option<(&PaymentRequirements, ExactEvmOffer, Amount)> = None;
        for requirements in &challenge.payment_required.accepts {
            let offer = match requirements.exact_evm() {
                Ok(offer) => offer,
                Err(error) => {
                    reasons.push(error.to_string());
                    continue;
                }
            };
            if !self.networks.is_empty() && !self.networks.contains(&requirements.network) {
                reasons.push(format!("network `{}` is not allowed", requirements.network));
                continue;
            }
            let Ok(atomic) = u128::try_from(offer.amount) else {
                reasons.push("the amount does not fit in 128 bits".into());
                continue;
            };
            let amount = Amount::from_atomic(atomic);
            if amount > max_amount {
                cheapest_above = Some(cheapest_above.map_or(amount, |c| c.min(amount)));
                continue;
            }
            if best.as_ref().is_none_or(|(_, _, b)| amount < *b) {
                best = Some((requirements, offer, amount));
            }
        }
        match (best, cheapest_above) {
            (Some(best), _) => Ok(best),
            (None, Some(offered)) => {
                Err(ClientError::AboveMaximum { offered, maximum: max_amount })
            }
            (None, None) => Err(ClientError::NoPayableOffer(reasons.join("; "))),
        }
    }

    /// Signs `offer` and encodes the payment header for the challenge's version: its name and
    /// value.
    fn sign(
        &self,
        challenge: &Challenge,
        requirements: &PaymentRequirements,
        offer: &ExactEvmOffer,
    ) -> Result<(&'static str, String), ClientError> {
        let (name, version) = match offer.domain.clone() {
            Some(domain) => (domain.name, domain.version),
            None => {
                let token =
                    self.registry.by_address(offer.chain_id, offer.asset).ok_or_else(|| {
                        ClientError::NoPayableOffer(format!(
                            "the offer states no EIP-712 domain and the token {} is unknown",
                            offer.asset
                        ))
                    })?;
                (token.eip712_name.clone(), token.eip712_version.clone())
            }
        };
        let domain = TokenDomain {
            name,
            version,
            chain_id: offer.chain_id,
            verifying_contract: offer.asset,
        };
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let authorization = Eip3009Authorization {
            from: self.signer.address(),
            to: offer.pay_to,
            value: offer.amount,
            valid_after: U256::from(now.saturating_sub(VALID_AFTER_SKEW_SECONDS)),
            valid_before: U256::from(now.saturating_add(offer.max_timeout_seconds)),
            nonce: random_nonce(),
        };
        let signature = authorization
            .sign(&self.signer, &domain)
            .map_err(|error| ClientError::Signing(error.to_string()))?;
        let payload = ExactEvmPayload::Eip3009(Eip3009Payload {
            signature: Bytes::copy_from_slice(&signature.to_bytes()),
            authorization,
        })
        .to_json();
        let encode_error = |error: header::HeaderError| ClientError::Signing(error.to_string());
        if challenge.x402_version == 1 {
            let network =
                offer.network.v1_name().map_or_else(|| offer.network.to_string(), str::to_owned);
            let v1 = PaymentPayloadV1 {
                x402_version: 1,
                scheme: requirements.scheme.clone(),
                network,
                payload,
                other: Default::default(),
            };
            return Ok((X_PAYMENT, header::encode(&v1).map_err(encode_error)?));
        }
        let v2 = PaymentPayload {
            x402_version: 2,
            resource: Some(challenge.payment_required.resource.clone()),
            accepted: requirements.clone(),
            payload,
            extensions: None,
            other: Default::default(),
        };
        Ok((PAYMENT_SIGNATURE, header::encode(&v2).map_err(encode_error)?))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const ASSET: &str = "0x036CbD53842c5426634e7929541eC2318f3dCF7e";
    const PAY_TO: &str = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";

    fn challenge(offers: serde_json::Value) -> Challenge {
        let value =
            json!({"x402Version": 2, "resource": {"url": "https://x.test/"}, "accepts": offers});
        let encoded = header::encode(&value).unwrap();
        awx_x402::read_challenge(Some(&encoded), b"", &TokenRegistry::builtin()).unwrap()
    }

    fn offer(network: &str, amount: &str) -> serde_json::Value {
        json!({"scheme": "exact", "network": network, "amount": amount, "asset": ASSET,
               "payTo": PAY_TO, "maxTimeoutSeconds": 60, "extra": {"name": "USDC", "version": "2"}})
    }

    fn payer(max: u128) -> LocalPayer {
        LocalPayer::new(PrivateKeySigner::random(), Amount::from_atomic(max))
    }

    #[test]
    fn picks_the_cheapest_offer_within_the_maximum_on_an_allowed_network() {
        let offers = challenge(json!([
            offer("eip155:8453", "5000"),
            offer("eip155:84532", "7000"),
            offer("eip155:84532", "3000"),
            {"scheme": "exact", "network": "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp", "amount": "1",
             "asset": "x", "payTo": "y", "maxTimeoutSeconds": 60},
        ]));
        let (chosen, _, amount) =
            payer(10_000).choose(&offers, Amount::from_atomic(10_000)).unwrap();
        assert_eq!(amount, Amount::from_atomic(3_000));
        assert_eq!(chosen.amount, "3000");
        let sepolia = payer(10_000).networks(vec!["eip155:84532".into()]);
        let (chosen, _, _) = sepolia.choose(&offers, Amount::from_atomic(3_500)).unwrap();
        assert_eq!((chosen.network.as_str(), chosen.amount.as_str()), ("eip155:84532", "3000"));
        let mainnet = payer(10_000).networks(vec!["eip155:8453".into()]);
        assert!(matches!(
            mainnet.choose(&offers, Amount::from_atomic(4_999)),
            Err(ClientError::AboveMaximum { offered, .. }) if offered == Amount::from_atomic(5_000)
        ));
        let nowhere = payer(10_000).networks(vec!["eip155:1".into()]);
        assert!(matches!(
            nowhere.choose(&offers, Amount::from_atomic(10_000)),
            Err(ClientError::NoPayableOffer(_))
        ));
    }

    #[test]
    fn signs_a_v2_payment_the_facilitator_checks_accept() {
        let offers = challenge(json!([offer("eip155:84532", "10000")]));
        let payer = payer(10_000);
        let (requirements, chosen, _) = payer.choose(&offers, Amount::from_atomic(10_000)).unwrap();
        let (name, value) = payer.sign(&offers, requirements, &chosen).unwrap();
        assert_eq!(name, PAYMENT_SIGNATURE);
        let awx_x402::AnyPaymentPayload::V2(payload) =
            header::decode_payment_payload(&value).unwrap()
        else {
            panic!("not v2")
        };
        assert_eq!(&payload.accepted, requirements);
        assert_eq!(payload.resource.as_ref().unwrap().url, "https://x.test/");
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let checked = awx_x402::check_exact_evm(&payload, requirements, now);
        assert!(checked.is_ok(), "{checked:?}");
        let ExactEvmPayload::Eip3009(signed) =
            ExactEvmPayload::from_json(&payload.payload).unwrap()
        else {
            panic!("not EIP-3009")
        };
        assert_eq!(signed.authorization.from, payer.address());
        assert_eq!(signed.authorization.value, U256::from(10_000));
    }

    #[test]
    fn answers_a_v1_body_with_an_x_payment_header() {
        let body = json!({"x402Version": 1, "accepts": [{
            "scheme": "exact", "network": "base-sepolia", "maxAmountRequired": "10000",
            "asset": ASSET, "payTo": PAY_TO, "resource": "https://x.test/", "maxTimeoutSeconds": 60,
            "extra": {"name": "USDC", "version": "2"}}]});
        let offers =
            awx_x402::read_challenge(None, body.to_string().as_bytes(), &TokenRegistry::builtin())
                .unwrap();
        let payer = payer(10_000);
        let (requirements, chosen, _) = payer.choose(&offers, Amount::from_atomic(10_000)).unwrap();
        let (name, value) = payer.sign(&offers, requirements, &chosen).unwrap();
        assert_eq!(name, X_PAYMENT);
        let awx_x402::AnyPaymentPayload::V1(payload) =
            header::decode_payment_payload(&value).unwrap()
        else {
            panic!("not v1")
        };
        assert_eq!((payload.scheme.as_str(), payload.network.as_str()), ("exact", "base-sepolia"));
        assert!(payload.payload.contains_key("authorization"));
    }
}
