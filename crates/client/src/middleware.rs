//! [`X402Middleware`]: a `reqwest-middleware` middleware that turns a 402 from any URL into one
//! payment through the platform (`/x402/pay`, or the session pay) and exactly one retry with the
//! header the payment returned.
//!
//! The rules, in order:
//! - A non-402 answer passes through untouched.
//! - A 402 must carry an x402 challenge; its offers are compared with the caller's maximum in
//!   atomic units *before* anything is paid ([`ClientError::AboveMaximum`]).
//! - With a session whose `allowed_urls` are known, a URL outside them is never paid
//!   ([`ClientError::UrlNotAllowed`]); the platform enforces the same rule.
//! - The pay call carries an `Idempotency-Key` derived from the request (one per intercepted
//!   request, or derived from the request's own `Idempotency-Key` when it has one) and is repeated
//!   with the same key after a transport failure or a 5xx, so a lost answer cannot pay twice.
//! - The retry that answers 402 again is an error ([`ClientError::PaidButRefused`]), never a
//!   second payment.
//! - The answer of a paid retry carries a [`PaymentReceipt`] in its extensions: the platform's
//!   payment, and the provider's settlement from `PAYMENT-RESPONSE`.
//!
//! The request is sent twice, so its body must be in memory: a streaming body cannot be
//! retried, and its 402 is refused with [`ClientError::BodyNotCloneable`] without paying.
//! The platform fetches the challenge of `target_url` itself (with a `GET`), so the URL paid for
//! must answer its 402 to a `GET`.

use std::time::Duration;

use awx_policy_core::UrlPattern;
use awx_types::Amount;
use awx_x402::header::{self, PAYMENT_REQUIRED, PAYMENT_RESPONSE, X_PAYMENT_RESPONSE};
use awx_x402::{SCHEME_EXACT, SettleResponse, TokenRegistry};
use http::Extensions;
use reqwest::header::{HeaderName, HeaderValue};
use reqwest::{Request, Response, StatusCode};
use reqwest_middleware::{Middleware, Next};
use sha2::{Digest as _, Sha256};

use crate::error::ClientError;
use crate::platform::{AwxClient, IDEMPOTENCY_KEY_HEADER};
use crate::types::{PayRequest, Payment, Session};

/// How many times the pay call is sent at most (the first attempt and the repeats after a
/// transport failure or a 5xx, all with the same `Idempotency-Key`).
pub const PAY_ATTEMPTS_MAX: u32 = 3;

/// What a paid request cost, on the answer of its retry:
/// `response.extensions().get::<PaymentReceipt>()` or [`ReceiptExt::payment_receipt`].
#[derive(Debug, Clone, PartialEq)]
pub struct PaymentReceipt {
    /// The platform's payment (`ledger_id`, amount, fee, chain, …).
    pub payment: Payment,
    /// The provider's settlement answer (`PAYMENT-RESPONSE`), when it sent one.
    pub settlement: Option<SettleResponse>,
}

impl PaymentReceipt {
    /// The platform's payment id (`ldg_…`).
    pub fn ledger_id(&self) -> &str {
        &self.payment.ledger_id
    }

    /// The payment id the provider's `PAYMENT-RESPONSE` names (`extensions.awx.paymentId`, set
    /// when it settled through awx), else the platform's.
    pub fn payment_id(&self) -> &str {
        self.settlement
            .as_ref()
            .and_then(|s| s.extensions.as_ref())
            .and_then(|e| e.get("awx"))
            .and_then(|awx| awx.get("paymentId"))
            .and_then(|id| id.as_str())
            .unwrap_or(&self.payment.ledger_id)
    }

    /// The settlement transaction from `PAYMENT-RESPONSE`; `None` when there is none yet (the
    /// settlement of awx's own payers is netted later, so their `transaction` is empty).
    pub fn transaction(&self) -> Option<&str> {
        self.settlement.as_ref().map(|s| s.transaction.as_str()).filter(|tx| !tx.is_empty())
    }
}

/// Reads the [`PaymentReceipt`] off a response.
pub trait ReceiptExt {
    /// The receipt, when the middleware paid for this response.
    fn payment_receipt(&self) -> Option<&PaymentReceipt>;
}

impl ReceiptExt for Response {
    fn payment_receipt(&self) -> Option<&PaymentReceipt> {
        self.extensions().get::<PaymentReceipt>()
    }
}

/// The session the middleware pays from.
#[derive(Debug, Clone)]
struct SessionGuard {
    id: String,
    /// Its `allowed_urls`, when known; empty allows any URL.
    allowed: Vec<UrlPattern>,
}

/// Pays 402s through the platform. Build it with [`X402Middleware::new`] and add it to a
/// `reqwest_middleware::ClientBuilder`.
#[derive(Debug, Clone)]
pub struct X402Middleware {
    client: AwxClient,
    agent_id: String,
    chain: Option<String>,
    session: Option<SessionGuard>,
    maximum: Option<Amount>,
    registry: TokenRegistry,
    retry_delay: Duration,
}

impl X402Middleware {
    /// Pays from `agent_id`'s wallet through `client`, with no maximum of its own (the agent's
    /// policy still applies).
    pub fn new(client: AwxClient, agent_id: impl Into<String>) -> Self {
        Self {
            client,
            agent_id: agent_id.into(),
            chain: None,
            session: None,
            maximum: None,
            registry: TokenRegistry::builtin(),
            retry_delay: Duration::from_millis(200),
        }
    }

    /// Pays on this CAIP-2 chain only (`eip155:8453`).
    pub fn chain(mut self, chain: impl Into<String>) -> Self {
        self.chain = Some(chain.into());
        self
    }

    /// Pays from `session` (its budget and chain), and never pays a URL outside its
    /// `allowed_urls`.
    pub fn session(mut self, session: &Session) -> Self {
        let allowed = session.allowed_urls.iter().filter_map(|p| UrlPattern::parse(p).ok());
        self.session = Some(SessionGuard { id: session.id.clone(), allowed: allowed.collect() });
        self.chain = Some(session.chain.clone());
        self
    }

    /// Pays from the session `session_id` (the platform checks its rules).
    pub fn session_id(mut self, session_id: impl Into<String>) -> Self {
        self.session = Some(SessionGuard { id: session_id.into(), allowed: Vec::new() });
        self
    }

    /// Refuses, before paying, a 402 whose price is above `maximum` atomic units of its token.
    pub fn max_amount(mut self, maximum: Amount) -> Self {
        self.maximum = Some(maximum);
        self
    }

    /// [`X402Middleware::max_amount`] in USDC (6 decimals): `"0.05"`.
    pub fn max_usdc(self, maximum: &str) -> Result<Self, awx_types::AmountError> {
        Ok(self.max_amount(Amount::from_decimal_str(maximum, 6)?))
    }

    /// Also reads seed-style challenges (`"asset": "USDC"`) of these tokens.
    pub fn registry(mut self, registry: TokenRegistry) -> Self {
        self.registry = registry;
        self
    }

    /// Checks a challenge's offers against the maximum: every offer the platform might choose
    /// (the `exact` ones on the chain, when one is set) must be within it.
    fn check_maximum(&self, challenge: &awx_x402::Challenge) -> Result<(), ClientError> {
        let Some(maximum) = self.maximum else {
            return Ok(());
        };
        let offers = &challenge.payment_required.accepts;
        let candidates: Vec<_> = offers
            .iter()
            .filter(|offer| offer.scheme == SCHEME_EXACT)
            .filter(|offer| self.chain.as_ref().is_none_or(|chain| offer.network == *chain))
            .collect();
        let candidates = if candidates.is_empty() { offers.iter().collect() } else { candidates };
        for offer in candidates {
            // An amount that does not parse is treated as unbounded: never paid blind.
            let offered = Amount::parse_atomic(&offer.amount).unwrap_or(Amount::MAX);
            if offered > maximum {
                return Err(ClientError::AboveMaximum { offered, maximum });
            }
        }
        Ok(())
    }

    /// Pays `url`, repeating the call with the same key after a transport failure or a 5xx.
    async fn pay(&self, url: &str, idempotency_key: &str) -> Result<Payment, ClientError> {
        let mut attempt = 1;
        loop {
            let result = match &self.session {
                Some(session) => {
                    self.client.session_pay(&session.id, url, Some(idempotency_key)).await
                }
                None => {
                    let request = PayRequest {
                        agent_id: self.agent_id.clone(),
                        target_url: url.to_owned(),
                        chain: self.chain.clone(),
                        session_id: None,
                    };
                    self.client.pay(&request, Some(idempotency_key)).await
                }
            };
            let repeatable = match &result {
                Err(ClientError::Transport(error)) => !error.is_builder(),
                Err(ClientError::Api { status, code, .. }) => {
                    *status >= 500 || code == "idempotency_key_in_progress"
                }
                // A proxy's 5xx (a gateway timeout) has no envelope.
                Err(ClientError::Decode { status, .. }) => *status >= 500,
                _ => false,
            };
            if !repeatable || attempt >= PAY_ATTEMPTS_MAX {
                return result;
            }
            attempt += 1;
            tokio::time::sleep(self.retry_delay).await;
        }
    }

    async fn pay_and_retry(
        &self,
        first: Response,
        retry: Option<Request>,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> Result<Response, ClientError> {
        let mut retry = retry.ok_or(ClientError::BodyNotCloneable)?;
        let header_value = first
            .headers()
            .get(PAYMENT_REQUIRED)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let body = first.bytes().await?;
        let challenge = awx_x402::read_challenge(header_value.as_deref(), &body, &self.registry)?;
        let url = retry.url().to_string();
        if let Some(session) = &self.session
            && !session.allowed.is_empty()
        {
            let parsed = retry.url();
            if !session.allowed.iter().any(|pattern| pattern.matches(parsed)) {
                return Err(ClientError::UrlNotAllowed { url });
            }
        }
        self.check_maximum(&challenge)?;
        let key = idempotency_key(&retry);
        let payment = self.pay(&url, &key).await?;
        let signature = match (&payment.status[..], &payment.payment_signature) {
            ("completed", Some(signature)) => signature.clone(),
            _ => {
                return Err(ClientError::NotCompleted {
                    ledger_id: payment.ledger_id,
                    status: payment.status,
                });
            }
        };
        let name = HeaderName::from_bytes(payment.payment_header.as_bytes()).map_err(|_| {
            ClientError::Decode {
                status: 200,
                message: "payment_header is not a header name".into(),
            }
        })?;
        let value = HeaderValue::from_str(&signature).map_err(|_| ClientError::Decode {
            status: 200,
            message: "payment_signature is not a header value".into(),
        })?;
        retry.headers_mut().insert(name, value);
        let mut response = next.run(retry, extensions).await?;
        let settlement = settlement_of(&response);
        if response.status() == StatusCode::PAYMENT_REQUIRED {
            return Err(ClientError::PaidButRefused {
                ledger_id: Some(payment.ledger_id),
                settlement: settlement.map(Box::new),
            });
        }
        response.extensions_mut().insert(PaymentReceipt { payment, settlement });
        Ok(response)
    }
}

/// The provider's settlement answer on a response, when it sent a readable one.
pub(crate) fn settlement_of(response: &Response) -> Option<SettleResponse> {
    let headers = response.headers();
    let value = headers.get(PAYMENT_RESPONSE).or_else(|| headers.get(X_PAYMENT_RESPONSE))?;
    header::decode_payment_response(value.to_str().ok()?).ok()
}

/// The `Idempotency-Key` of the pay call for `request`: derived from the request's own
/// `Idempotency-Key` when it has one (so the caller's retry of the same logical request pays
/// once), else fresh for this intercepted request (so two calls of one URL pay twice, as they
/// should, while every repeat of this pay call reuses the key).
fn idempotency_key(request: &Request) -> String {
    let mut hash = Sha256::new();
    hash.update(request.method().as_str().as_bytes());
    hash.update([0]);
    hash.update(request.url().as_str().as_bytes());
    hash.update([0]);
    match request.headers().get(IDEMPOTENCY_KEY_HEADER) {
        Some(own) => hash.update(own.as_bytes()),
        None => hash.update(uuid::Uuid::new_v4().as_bytes()),
    }
    let digest = hash.finalize();
    let hex: String = digest.iter().take(16).map(|byte| format!("{byte:02x}")).collect();
    format!("x402-{hex}")
}

#[async_trait::async_trait]
impl Middleware for X402Middleware {
    async fn handle(
        &self,
        request: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let retry = request.try_clone();
        let response = next.clone().run(request, extensions).await?;
        if response.status() != StatusCode::PAYMENT_REQUIRED {
            return Ok(response);
        }
        self.pay_and_retry(response, retry, extensions, next)
            .await
            .map_err(reqwest_middleware::Error::middleware)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn challenge(amounts: &[(&str, &str)]) -> awx_x402::Challenge {
        let accepts: Vec<_> = amounts
            .iter()
            .map(|(network, amount)| {
                json!({"scheme": "exact", "network": network, "amount": amount,
                       "asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
                       "payTo": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
                       "maxTimeoutSeconds": 60, "extra": {"name": "USDC", "version": "2"}})
            })
            .collect();
        let value =
            json!({"x402Version": 2, "resource": {"url": "https://x.test/"}, "accepts": accepts});
        let encoded = header::encode(&value).unwrap();
        awx_x402::read_challenge(Some(&encoded), b"", &TokenRegistry::builtin()).unwrap()
    }

    fn middleware() -> X402Middleware {
        X402Middleware::new(AwxClient::new("http://127.0.0.1:1", "k").unwrap(), "agt_1")
    }

    #[test]
    fn the_maximum_covers_every_offer_the_platform_may_choose() {
        let cheap_and_dear = challenge(&[("eip155:84532", "10000"), ("eip155:8453", "90000")]);
        let capped = middleware().max_usdc("0.05").unwrap();
        assert!(matches!(
            capped.check_maximum(&cheap_and_dear),
            Err(ClientError::AboveMaximum { offered, maximum })
                if offered == Amount::from_atomic(90_000) && maximum == Amount::from_atomic(50_000)
        ));
        // On the cheap offer's chain only, it is within the maximum.
        assert!(capped.clone().chain("eip155:84532").check_maximum(&cheap_and_dear).is_ok());
        assert!(middleware().check_maximum(&cheap_and_dear).is_ok(), "no maximum, no refusal");
        let exact = challenge(&[("eip155:84532", "50000")]);
        assert!(capped.check_maximum(&exact).is_ok(), "the maximum itself is allowed");
    }

    #[test]
    fn an_unreadable_amount_is_above_any_maximum() {
        let odd = challenge(&[("eip155:84532", "1e5")]);
        assert!(matches!(
            middleware().max_amount(Amount::from_atomic(1)).check_maximum(&odd),
            Err(ClientError::AboveMaximum { offered: Amount::MAX, .. })
        ));
    }

    #[test]
    fn idempotency_keys_are_per_request_unless_the_caller_names_one() {
        let client = reqwest::Client::new();
        let plain = client.get("https://x.test/a").build().unwrap();
        let first = idempotency_key(&plain);
        assert!(first.starts_with("x402-") && first.len() == 37, "{first}");
        assert_ne!(first, idempotency_key(&plain), "a new intercepted request, a new key");
        let named =
            client.get("https://x.test/a").header("Idempotency-Key", "job-7").build().unwrap();
        assert_eq!(idempotency_key(&named), idempotency_key(&named.try_clone().unwrap()));
        let other =
            client.get("https://x.test/b").header("Idempotency-Key", "job-7").build().unwrap();
        assert_ne!(idempotency_key(&named), idempotency_key(&other));
    }
}
