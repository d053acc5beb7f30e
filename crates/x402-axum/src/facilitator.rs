//! An HTTP client for any x402 facilitator (x402-v2.md §4): `POST {base}/verify`,
//! `POST {base}/settle` with `{x402Version, paymentPayload, paymentRequirements}`, and
//! `GET {base}/supported`.
//!
//! By default it talks to ours: the base URL comes from `AWX_FACILITATOR_URL`, else
//! [`DEFAULT_FACILITATOR_URL`], and `AWX_API_KEY`, when set, is sent as `X-API-Key`. Any other
//! authentication is extra headers. Header values are marked sensitive, so neither `Debug` nor
//! logs print them.
//!
//! As the official `HTTPFacilitatorClient` does, a non-2xx answer that still carries a negative
//! `isValid` or `success` is read as that answer. Every other failure (transport, timeout, other
//! statuses, an unreadable body, a body over [`RESPONSE_BYTES_MAX`]) is a [`FacilitatorError`].
//! A non-2xx answer claiming success is not trusted: it is an error too.

use std::fmt;
use std::time::Duration;

use awx_x402::{
    FacilitatorRequest, PaymentPayload, PaymentRequirements, SettleResponse, SupportedResponse,
    VerifyResponse,
};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde::de::DeserializeOwned;

/// Our facilitator on the local development platform (`awx dev`).
pub const DEFAULT_FACILITATOR_URL: &str = "http://127.0.0.1:8080/api/v1/x402/facilitator";
/// The variable that overrides the facilitator's base URL.
pub const FACILITATOR_URL_ENV: &str = "AWX_FACILITATOR_URL";
/// The variable holding the `awx_…` API key our facilitator wants.
pub const API_KEY_ENV: &str = "AWX_API_KEY";
/// The header our facilitator reads the API key from.
pub const API_KEY_HEADER: &str = "X-API-Key";
/// The default limit on one facilitator call, as @x402/core 2.27's (settlement waits for a
/// receipt, so it can take several blocks).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(90);
/// The most bytes read from a facilitator answer.
pub const RESPONSE_BYTES_MAX: usize = 64 * 1024;
/// The most characters of an unexpected answer kept in an error, for the logs.
const BODY_EXCERPT_CHARS_MAX: usize = 200;

/// Where and how to reach a facilitator.
#[derive(Clone)]
pub struct FacilitatorConfig {
    url: String,
    headers: Vec<(String, String)>,
    timeout: Duration,
}

impl fmt::Debug for FacilitatorConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<String> =
            self.headers.iter().map(|(name, _)| format!("{name}: <redacted>")).collect();
        f.debug_struct("FacilitatorConfig")
            .field("url", &self.url)
            .field("headers", &headers)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Default for FacilitatorConfig {
    /// [`FacilitatorConfig::from_env`].
    fn default() -> Self {
        Self::from_env()
    }
}

impl FacilitatorConfig {
    /// A facilitator at `base_url` (the part before `/verify`), with no extra headers.
    pub fn new(base_url: impl Into<String>) -> Self {
        Self { url: base_url.into(), headers: Vec::new(), timeout: DEFAULT_TIMEOUT }
    }

    /// Ours: `AWX_FACILITATOR_URL` or [`DEFAULT_FACILITATOR_URL`], with `AWX_API_KEY` as
    /// `X-API-Key` when it is set.
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// As [`FacilitatorConfig::from_env`], reading variables through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let present = |name: &str| {
            lookup(name).map(|value| value.trim().to_owned()).filter(|value| !value.is_empty())
        };
        let url = present(FACILITATOR_URL_ENV).unwrap_or_else(|| DEFAULT_FACILITATOR_URL.into());
        let config = Self::new(url);
        match present(API_KEY_ENV) {
            Some(key) => config.api_key(key),
            None => config,
        }
    }

    /// Sends `key` as `X-API-Key`, as our facilitator wants.
    #[must_use]
    pub fn api_key(self, key: impl Into<String>) -> Self {
        self.header(API_KEY_HEADER, key)
    }

    /// Sends a header with every call (`Authorization: Bearer …`). Its value is treated as a
    /// secret. A header set twice is sent with the later value.
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let name = name.into();
        self.headers.retain(|(known, _)| !known.eq_ignore_ascii_case(&name));
        self.headers.push((name, value.into()));
        self
    }

    /// Sets the limit on each call, from connecting to reading the whole answer.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The base URL as configured.
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// Why a facilitator client cannot be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum FacilitatorConfigError {
    /// The base URL is not an absolute `http` or `https` URL.
    #[error("facilitator URL `{url}` is not an absolute http(s) URL")]
    Url {
        /// The URL as configured.
        url: String,
    },
    /// A header name is not a valid HTTP header name.
    #[error("facilitator header name `{name}` is invalid")]
    HeaderName {
        /// The name as configured.
        name: String,
    },
    /// A header value has characters HTTP does not allow (the value itself is not shown).
    #[error("the value of facilitator header `{name}` has characters HTTP does not allow")]
    HeaderValue {
        /// The header's name.
        name: String,
    },
    /// The timeout is zero.
    #[error("the facilitator timeout must be positive")]
    ZeroTimeout,
    /// The HTTP client could not be created (TLS set-up).
    #[error("the facilitator HTTP client could not be created")]
    Client(#[source] reqwest::Error),
}

/// A facilitator call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /verify`.
    Verify,
    /// `POST /settle`.
    Settle,
    /// `GET /supported`.
    Supported,
}

impl Endpoint {
    fn path(self) -> &'static str {
        match self {
            Self::Verify => "/verify",
            Self::Settle => "/settle",
            Self::Supported => "/supported",
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.path().trim_start_matches('/'))
    }
}

/// Why a facilitator call gave no usable answer. The `Display` text names the call and the kind
/// of failure only (no URL, no secret), since it may reach the payer as a 402's `error`.
#[derive(Debug, thiserror::Error)]
pub enum FacilitatorError {
    /// The call did not complete within the timeout.
    #[error("facilitator {endpoint} timed out")]
    Timeout {
        /// The call.
        endpoint: Endpoint,
        /// The client's error.
        #[source]
        source: reqwest::Error,
    },
    /// The facilitator could not be reached, or the connection failed.
    #[error("facilitator {endpoint} request failed")]
    Transport {
        /// The call.
        endpoint: Endpoint,
        /// The client's error.
        #[source]
        source: reqwest::Error,
    },
    /// A non-2xx answer that is not a negative verify or settle answer.
    #[error("facilitator {endpoint} failed with HTTP {status}")]
    Status {
        /// The call.
        endpoint: Endpoint,
        /// The HTTP status.
        status: StatusCode,
        /// The start of the answer's body, for the logs.
        body: String,
    },
    /// The answer is longer than [`RESPONSE_BYTES_MAX`].
    #[error("facilitator {endpoint} answer is larger than {max} bytes")]
    TooLarge {
        /// The call.
        endpoint: Endpoint,
        /// The limit.
        max: usize,
    },
    /// A 2xx answer that is not the expected JSON.
    #[error("facilitator {endpoint} answer is malformed: {message}")]
    Malformed {
        /// The call.
        endpoint: Endpoint,
        /// What is wrong with it.
        message: String,
    },
}

impl FacilitatorError {
    /// The call that failed.
    pub fn endpoint(&self) -> Endpoint {
        match self {
            Self::Timeout { endpoint, .. }
            | Self::Transport { endpoint, .. }
            | Self::Status { endpoint, .. }
            | Self::TooLarge { endpoint, .. }
            | Self::Malformed { endpoint, .. } => *endpoint,
        }
    }
}

/// A client of one facilitator. Cheap to clone; clones share one connection pool.
#[derive(Debug, Clone)]
pub struct FacilitatorClient {
    http: reqwest::Client,
    base_url: String,
    headers: HeaderMap,
}

impl FacilitatorClient {
    /// Checks `config` and builds the client.
    pub fn new(config: FacilitatorConfig) -> Result<Self, FacilitatorConfigError> {
        let base_url = config.url.trim().trim_end_matches('/').to_owned();
        let url_ok = reqwest::Url::parse(&base_url)
            .is_ok_and(|url| matches!(url.scheme(), "http" | "https") && url.host().is_some());
        if !url_ok {
            return Err(FacilitatorConfigError::Url { url: config.url });
        }
        if config.timeout.is_zero() {
            return Err(FacilitatorConfigError::ZeroTimeout);
        }
        let mut headers = HeaderMap::new();
        for (name, value) in config.headers {
            let header_name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| FacilitatorConfigError::HeaderName { name: name.clone() })?;
            let mut header_value = HeaderValue::from_str(&value)
                .map_err(|_| FacilitatorConfigError::HeaderValue { name: name.clone() })?;
            header_value.set_sensitive(true);
            headers.insert(header_name, header_value);
        }
        // No redirects: a redirect to another host would carry the API key along.
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(FacilitatorConfigError::Client)?;
        Ok(Self { http, base_url, headers })
    }

    /// The base URL, without a trailing `/`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Asks whether `payload` pays `requirements`.
    pub async fn verify(
        &self,
        payload: &PaymentPayload,
        requirements: &PaymentRequirements,
    ) -> Result<VerifyResponse, FacilitatorError> {
        let body = FacilitatorRequest::v2(payload, requirements);
        let (status, bytes) = self.call(Endpoint::Verify, Some(&body)).await?;
        read_answer(Endpoint::Verify, status, &bytes, |answer: &VerifyResponse| !answer.is_valid)
    }

    /// Asks the facilitator to settle `payload` for `requirements`.
    pub async fn settle(
        &self,
        payload: &PaymentPayload,
        requirements: &PaymentRequirements,
    ) -> Result<SettleResponse, FacilitatorError> {
        let body = FacilitatorRequest::v2(payload, requirements);
        let (status, bytes) = self.call(Endpoint::Settle, Some(&body)).await?;
        read_answer(Endpoint::Settle, status, &bytes, |answer: &SettleResponse| !answer.success)
    }

    /// The payment kinds the facilitator supports.
    pub async fn supported(&self) -> Result<SupportedResponse, FacilitatorError> {
        let (status, bytes) = self.call(Endpoint::Supported, None).await?;
        read_answer(Endpoint::Supported, status, &bytes, |_: &SupportedResponse| false)
    }

    async fn call(
        &self,
        endpoint: Endpoint,
        body: Option<&FacilitatorRequest>,
    ) -> Result<(StatusCode, Vec<u8>), FacilitatorError> {
        let url = format!("{}{}", self.base_url, endpoint.path());
        let request = match body {
            Some(body) => self.http.post(url).json(body),
            None => self.http.get(url),
        };
        let request = request.headers(self.headers.clone());
        let failed = |source: reqwest::Error| {
            if source.is_timeout() {
                FacilitatorError::Timeout { endpoint, source }
            } else {
                FacilitatorError::Transport { endpoint, source }
            }
        };
        let mut response = request.send().await.map_err(failed)?;
        let status = response.status();
        let too_large = FacilitatorError::TooLarge { endpoint, max: RESPONSE_BYTES_MAX };
        let announced = response.content_length().and_then(|len| usize::try_from(len).ok());
        if announced.is_some_and(|len| len > RESPONSE_BYTES_MAX) {
            return Err(too_large);
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(failed)? {
            if chunk.len() > RESPONSE_BYTES_MAX.saturating_sub(bytes.len()) {
                return Err(too_large);
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok((status, bytes))
    }
}

/// Reads a facilitator answer: any 2xx must be a `T`; a non-2xx is accepted only as a `T` that
/// `is_negative` calls a refusal.
fn read_answer<T: DeserializeOwned>(
    endpoint: Endpoint,
    status: StatusCode,
    bytes: &[u8],
    is_negative: impl Fn(&T) -> bool,
) -> Result<T, FacilitatorError> {
    let parsed = serde_json::from_slice::<T>(bytes);
    if status.is_success() {
        return parsed
            .map_err(|error| FacilitatorError::Malformed { endpoint, message: error.to_string() });
    }
    match parsed {
        Ok(answer) if is_negative(&answer) => Ok(answer),
        _ => Err(FacilitatorError::Status {
            endpoint,
            status,
            body: String::from_utf8_lossy(bytes).chars().take(BODY_EXCERPT_CHARS_MAX).collect(),
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic, reason = "tests fail by panicking")]

    use super::*;

    #[test]
    fn defaults_come_from_the_environment() {
        let none = FacilitatorConfig::from_lookup(|_| None);
        assert_eq!(none.url(), DEFAULT_FACILITATOR_URL);
        assert!(none.headers.is_empty());
        assert_eq!(none.timeout, DEFAULT_TIMEOUT);
        let blank = FacilitatorConfig::from_lookup(|_| Some("  ".into()));
        assert_eq!(blank.url(), DEFAULT_FACILITATOR_URL);
        assert!(blank.headers.is_empty());

        let ours = FacilitatorConfig::from_lookup(|name| match name {
            FACILITATOR_URL_ENV => Some("https://pay.example.com/api/v1/x402/facilitator/".into()),
            API_KEY_ENV => Some("awx_00_secret\n".into()),
            _ => None,
        });
        assert_eq!(ours.url(), "https://pay.example.com/api/v1/x402/facilitator/");
        assert_eq!(ours.headers, vec![(API_KEY_HEADER.to_owned(), "awx_00_secret".to_owned())]);
        let debug = format!("{ours:?}");
        assert!(!debug.contains("secret"), "{debug}");

        let client = FacilitatorClient::new(ours).unwrap();
        assert_eq!(client.base_url(), "https://pay.example.com/api/v1/x402/facilitator");
        assert!(!format!("{client:?}").contains("secret"));
    }

    #[test]
    fn bad_configuration_is_refused() {
        for url in ["", "127.0.0.1:8080", "ftp://example.com", "http://"] {
            assert!(
                matches!(
                    FacilitatorClient::new(FacilitatorConfig::new(url)),
                    Err(FacilitatorConfigError::Url { .. })
                ),
                "{url}"
            );
        }
        let base = || FacilitatorConfig::new("http://127.0.0.1:1");
        assert!(matches!(
            FacilitatorClient::new(base().header("bad name", "x")),
            Err(FacilitatorConfigError::HeaderName { .. })
        ));
        let error = FacilitatorClient::new(base().api_key("awx_\nsecret")).unwrap_err();
        assert!(matches!(error, FacilitatorConfigError::HeaderValue { .. }));
        assert!(!error.to_string().contains("secret"));
        assert!(matches!(
            FacilitatorClient::new(base().timeout(Duration::ZERO)),
            Err(FacilitatorConfigError::ZeroTimeout)
        ));
        let replaced = base().header("x-api-key", "old").api_key("new");
        assert_eq!(replaced.headers, vec![(API_KEY_HEADER.to_owned(), "new".to_owned())]);
    }

    #[test]
    fn non_2xx_answers_count_only_as_refusals() {
        let verify = |status: u16, body: &str| {
            read_answer(
                Endpoint::Verify,
                StatusCode::from_u16(status).unwrap(),
                body.as_bytes(),
                |answer: &VerifyResponse| !answer.is_valid,
            )
        };
        let refused = verify(400, r#"{"isValid":false,"invalidReason":"insufficient_funds"}"#);
        assert_eq!(refused.unwrap().invalid_reason.unwrap().as_str(), "insufficient_funds");
        assert!(matches!(
            verify(500, r#"{"isValid":true,"payer":"0x01"}"#),
            Err(FacilitatorError::Status { .. })
        ));
        assert!(matches!(verify(502, "Bad Gateway"), Err(FacilitatorError::Status { .. })));
        assert!(matches!(verify(200, "{}"), Err(FacilitatorError::Malformed { .. })));
        assert!(verify(200, r#"{"isValid":true}"#).unwrap().is_valid);
    }
}
