//! The client's one error type, [`ClientError`]: the platform's error envelope
//! (`{"error": {"type", "code", "message", "field"?, "rule"?, "request_id"}}`) as
//! [`ClientError::Api`], and the client's own refusals (above the maximum, outside a session's
//! URLs, a second 402), transport and decoding failures.

use awx_types::Amount;
use serde::Deserialize;

/// Everything a call of this crate can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The platform answered with its error envelope.
    #[error("{status} {code}{}: {message} (request {})", rule.as_deref().map(|r| format!(" [{r}]")).unwrap_or_default(), request_id.as_deref().unwrap_or("-"))]
    Api {
        /// The HTTP status.
        status: u16,
        /// The stable machine code (`policy_denied`, `session_budget_exceeded`, …).
        code: String,
        /// The policy or session rule that refused a payment (`policy.per_payment_max`,
        /// `session.budget_limit`, …), for refusals by a rule.
        rule: Option<String>,
        /// The request id, for support.
        request_id: Option<String>,
        /// A human explanation.
        message: String,
        /// The request field at fault, when there is one.
        field: Option<String>,
    },
    /// The request could not be sent or its answer not read.
    #[error("transport: {0}")]
    Transport(#[from] reqwest::Error),
    /// A middleware further down the chain failed.
    #[error("middleware: {0}")]
    Middleware(String),
    /// An answer was not what the API documents.
    #[error("cannot decode the {status} answer: {message}")]
    Decode {
        /// The HTTP status of the answer.
        status: u16,
        /// What was wrong.
        message: String,
    },
    /// A URL (the base URL or a target) is not valid.
    #[error("invalid URL `{url}`: {message}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// Why it is refused.
        message: String,
    },
    /// A 402 answer that carries no readable x402 challenge.
    #[error("402 without a readable x402 challenge: {0}")]
    NotX402(#[from] awx_x402::ChallengeError),
    /// Every offer that could be paid costs more than the caller's maximum; nothing was paid.
    #[error("the price {offered} (atomic units) is above the maximum {maximum}; nothing was paid")]
    AboveMaximum {
        /// The offer's amount in atomic units (the cheapest payable one, or the one above).
        offered: Amount,
        /// The caller's maximum in atomic units.
        maximum: Amount,
    },
    /// The URL is outside the session's `allowed_urls`; nothing was paid.
    #[error("`{url}` is outside the session's allowed URLs; nothing was paid")]
    UrlNotAllowed {
        /// The URL.
        url: String,
    },
    /// No offer of the challenge can be paid (scheme, network, or token unknown).
    #[error("no payable offer: {0}")]
    NoPayableOffer(String),
    /// The payment waits for an admin's approval (or failed): there is no signature to retry
    /// with yet.
    #[error("payment {ledger_id} is `{status}`: no signature to retry with")]
    NotCompleted {
        /// The payment.
        ledger_id: String,
        /// Its status (`pending` or `failed`).
        status: String,
    },
    /// The URL answered 402 again after it was paid: the one payment was refused by the
    /// provider, and is never repeated.
    #[error("the URL answered 402 again after payment {}; not paying twice", ledger_id.as_deref().unwrap_or("(local)"))]
    PaidButRefused {
        /// The platform payment, when the platform paid.
        ledger_id: Option<String>,
        /// The provider's settlement answer (`PAYMENT-RESPONSE`), when it sent one.
        settlement: Option<Box<awx_x402::SettleResponse>>,
    },
    /// The request's body is a stream, which cannot be sent twice; a 402 from it cannot be
    /// paid and retried. Nothing was paid.
    #[error("the request body is a stream and cannot be retried after a 402; nothing was paid")]
    BodyNotCloneable,
    /// Signing the payment failed.
    #[error("signing: {0}")]
    Signing(String),
}

impl ClientError {
    /// The platform's error code, for [`ClientError::Api`].
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The rule that refused a payment, for [`ClientError::Api`] refusals by a rule.
    pub fn rule(&self) -> Option<&str> {
        match self {
            Self::Api { rule, .. } => rule.as_deref(),
            _ => None,
        }
    }

    /// The [`ClientError`] inside an error of a `reqwest-middleware` client (the
    /// [`X402Middleware`](crate::X402Middleware) reports its refusals this way).
    pub fn from_middleware(error: &reqwest_middleware::Error) -> Option<&Self> {
        match error {
            reqwest_middleware::Error::Middleware(inner) => inner.downcast_ref::<Self>(),
            reqwest_middleware::Error::Reqwest(_) => None,
        }
    }

    /// Builds the error of a non-2xx answer from its status and body.
    pub(crate) fn from_answer(status: u16, body: &[u8]) -> Self {
        #[derive(Deserialize)]
        struct Envelope {
            error: Detail,
        }
        #[derive(Deserialize)]
        struct Detail {
            code: String,
            #[serde(default)]
            message: String,
            #[serde(default)]
            field: Option<String>,
            #[serde(default)]
            rule: Option<String>,
            #[serde(default)]
            request_id: Option<String>,
        }
        match serde_json::from_slice::<Envelope>(body) {
            Ok(Envelope { error }) => Self::Api {
                status,
                code: error.code,
                rule: error.rule,
                request_id: error.request_id,
                message: error.message,
                field: error.field,
            },
            Err(_) => Self::Decode {
                status,
                message: format!(
                    "not the error envelope: {}",
                    String::from_utf8_lossy(&body[..body.len().min(200)])
                ),
            },
        }
    }
}

impl From<reqwest_middleware::Error> for ClientError {
    fn from(error: reqwest_middleware::Error) -> Self {
        match error {
            reqwest_middleware::Error::Reqwest(error) => Self::Transport(error),
            reqwest_middleware::Error::Middleware(error) => match error.downcast::<Self>() {
                Ok(own) => own,
                Err(other) => Self::Middleware(format!("{other:#}")),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_envelope_with_its_rule() {
        let body = br#"{"error":{"type":"permission_error","code":"policy_denied","message":"above $0.005","rule":"policy.per_payment_max","request_id":"req_1"}}"#;
        let error = ClientError::from_answer(403, body);
        assert_eq!(error.code(), Some("policy_denied"));
        assert_eq!(error.rule(), Some("policy.per_payment_max"));
        let ClientError::Api { status, request_id, field, .. } = &error else {
            panic!("not an API error: {error}")
        };
        assert_eq!((*status, request_id.as_deref(), field), (403, Some("req_1"), &None));
        assert!(error.to_string().contains("[policy.per_payment_max]"), "{error}");
    }

    #[test]
    fn a_body_that_is_not_the_envelope_is_a_decoding_error() {
        let error = ClientError::from_answer(502, b"<html>bad gateway</html>");
        assert!(matches!(error, ClientError::Decode { status: 502, .. }), "{error}");
        assert_eq!(error.code(), None);
    }

    #[test]
    fn a_middleware_error_gives_the_client_error_back() {
        let wrapped = reqwest_middleware::Error::middleware(ClientError::BodyNotCloneable);
        assert!(matches!(
            ClientError::from_middleware(&wrapped),
            Some(ClientError::BodyNotCloneable)
        ));
        assert!(matches!(ClientError::from(wrapped), ClientError::BodyNotCloneable));
    }
}
