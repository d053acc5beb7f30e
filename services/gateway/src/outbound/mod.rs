//! Requests to URLs that agents name (the x402 challenges of the resources they check and pay),
//! guarded against server-side request forgery.
//!
//! An agent chooses the URL, so without a guard it could make the gateway reach what only the
//! gateway can reach: its own loopback services, the private network, the cloud metadata
//! address. [`Outbound`] therefore:
//!
//! - accepts only `http` and `https` URLs without credentials ([`TargetPolicy::check_url`]);
//! - connects only to public unicast addresses ([`address::classify`]), unless development
//!   configuration (`outbound.allow_private_targets`) allows loopback and private ones;
//! - resolves a host name once, in its own resolver ([`resolver`]), which hands the connector
//!   only the addresses it checked, so the name cannot resolve to another address between the
//!   check and the connection (DNS rebinding); IP-literal hosts, which the connector does not
//!   resolve, are checked before the request is sent;
//! - follows at most `outbound.redirects_max` redirects itself, checking each hop's URL and
//!   address as the first;
//! - gives the whole fetch (redirects and body) `outbound.timeout_ms`, and reads at most
//!   `outbound.body_bytes_max` bytes of body, chunk by chunk, failing as soon as it is over.
//!
//! No proxy is used (a proxy from the environment would connect on our behalf, unchecked). One
//! client is built at start-up and shared, so connections are pooled.

pub mod address;
mod resolver;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use reqwest::Url;

use crate::config::OutboundSettings;
use crate::error::{ApiError, ErrorCode};

pub use address::AddressClass;

/// The longest target URL accepted.
pub const URL_LENGTH_MAX: usize = 2048;

/// Why a fetch was refused or failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundError {
    /// The URL cannot be parsed as an absolute URL with a host, or is too long.
    #[error("the target URL is invalid: {0}")]
    InvalidUrl(String),
    /// The scheme is not `http` or `https`.
    #[error("the target URL's scheme `{0}` is not allowed; use http or https")]
    SchemeNotAllowed(String),
    /// The URL carries a user name or password.
    #[error("target URLs with credentials (user:password@) are not allowed")]
    CredentialsNotAllowed,
    /// The host is, or resolves only to, an address the policy refuses.
    #[error("the target resolves to {class} ({address}), which is not allowed")]
    AddressNotAllowed {
        /// The refused address.
        address: IpAddr,
        /// Its class.
        class: AddressClass,
    },
    /// The host name does not resolve.
    #[error("the target host `{host}` could not be resolved: {reason}")]
    Unresolvable {
        /// The host name.
        host: String,
        /// Why.
        reason: String,
    },
    /// The connection failed, or the answer could not be read.
    #[error("the target could not be reached: {0}")]
    Unreachable(String),
    /// The fetch took longer than the limit.
    #[error("the target did not answer within {timeout_ms} ms")]
    Timeout {
        /// The limit.
        timeout_ms: u64,
    },
    /// The response body is larger than the limit.
    #[error("the target's response body is larger than {limit_bytes} bytes")]
    ResponseTooLarge {
        /// The limit.
        limit_bytes: usize,
    },
    /// The target redirected more often than allowed.
    #[error("the target redirected more than {max} times")]
    TooManyRedirects {
        /// The limit.
        max: u32,
    },
}

impl OutboundError {
    /// The API error code of this failure.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::InvalidUrl(_) => ErrorCode::InvalidTargetUrl,
            Self::SchemeNotAllowed(_)
            | Self::CredentialsNotAllowed
            | Self::AddressNotAllowed { .. } => ErrorCode::TargetNotAllowed,
            Self::Unresolvable { .. } | Self::Unreachable(_) => ErrorCode::TargetUnreachable,
            Self::Timeout { .. } => ErrorCode::TargetTimeout,
            Self::ResponseTooLarge { .. } => ErrorCode::TargetResponseTooLarge,
            Self::TooManyRedirects { .. } => ErrorCode::TargetTooManyRedirects,
        }
    }
}

impl From<OutboundError> for ApiError {
    fn from(error: OutboundError) -> Self {
        Self::new(error.code(), error.to_string())
    }
}

/// What may be fetched: the scheme, credentials and address rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetPolicy {
    /// Development only: allow loopback, private and the other non-public classes that
    /// [`AddressClass::allowed_in_development`] names.
    pub allow_private: bool,
}

impl TargetPolicy {
    /// `Ok` when the policy allows connecting to `address`.
    pub fn check_ip(self, address: IpAddr) -> Result<(), OutboundError> {
        match address::classify(address) {
            None => Ok(()),
            Some(class) if self.allow_private && class.allowed_in_development() => Ok(()),
            Some(class) => Err(OutboundError::AddressNotAllowed { address, class }),
        }
    }

    /// Parses a target URL and checks it ([`TargetPolicy::check_url`]).
    pub fn parse(self, url: &str) -> Result<Url, OutboundError> {
        if url.len() > URL_LENGTH_MAX {
            return Err(OutboundError::InvalidUrl(format!(
                "longer than {URL_LENGTH_MAX} characters"
            )));
        }
        let parsed =
            Url::parse(url).map_err(|error| OutboundError::InvalidUrl(error.to_string()))?;
        self.check_url(&parsed)?;
        Ok(parsed)
    }

    /// Checks a URL before any request: `http` or `https`, no credentials, a host, and, when
    /// the host is an IP address (which no resolver sees), an allowed one. Host names are
    /// checked when they are resolved.
    pub fn check_url(self, url: &Url) -> Result<(), OutboundError> {
        match url.scheme() {
            "http" | "https" => {}
            other => return Err(OutboundError::SchemeNotAllowed(other.chars().take(32).collect())),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(OutboundError::CredentialsNotAllowed);
        }
        let host = url
            .host_str()
            .filter(|host| !host.is_empty())
            .ok_or_else(|| OutboundError::InvalidUrl("the URL has no host".into()))?;
        // The URL parser has already normalised IPv4 forms (`0x7f000001`, `127.1`) to dotted
        // quads; IPv6 hosts come in brackets.
        let literal =
            host.strip_prefix('[').and_then(|host| host.strip_suffix(']')).unwrap_or(host);
        if let Ok(address) = literal.parse::<IpAddr>() {
            self.check_ip(address)?;
        }
        Ok(())
    }
}

/// A fetched response: the last one, after redirects.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The URL that answered (the requested one, or the last redirect's).
    pub url: Url,
    /// How many redirects were followed.
    pub redirects: u32,
    /// The URLs redirected to, in order (the last is `url`); empty without redirects.
    pub hops: Vec<Url>,
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The whole body (at most `outbound.body_bytes_max` bytes).
    pub body: Vec<u8>,
}

/// The guarded HTTP client. Cheap to clone (the connection pool is shared).
#[derive(Debug, Clone)]
pub struct Outbound {
    client: reqwest::Client,
    policy: TargetPolicy,
    timeout: Duration,
    timeout_ms: u64,
    body_bytes_max: usize,
    redirects_max: u32,
}

impl Outbound {
    /// Builds the client once, with the checking resolver, no proxy and no automatic
    /// redirects.
    pub fn new(settings: &OutboundSettings) -> Result<Self, reqwest::Error> {
        let policy = TargetPolicy { allow_private: settings.allow_private_targets };
        if policy.allow_private {
            tracing::warn!(
                "outbound.allow_private_targets is set: agents can make the gateway reach \
                 loopback and private addresses (development only)"
            );
        }
        let timeout = Duration::from_millis(settings.timeout_ms);
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(resolver::CheckingResolver::new(policy)))
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .referer(false)
            .connect_timeout(timeout)
            .user_agent(concat!("awx-gateway/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            client,
            policy,
            timeout,
            timeout_ms: settings.timeout_ms,
            body_bytes_max: settings.body_bytes_max,
            redirects_max: settings.redirects_max,
        })
    }

    /// The policy in force.
    pub fn policy(&self) -> TargetPolicy {
        self.policy
    }

    /// GETs `url` under the guard: checks it, follows up to `redirects_max` redirects (each
    /// checked), and reads the body, all within `timeout_ms`.
    pub async fn get(&self, url: &str) -> Result<Fetched, OutboundError> {
        let url = self.policy.parse(url)?;
        match tokio::time::timeout(self.timeout, self.fetch(url)).await {
            Ok(result) => result,
            Err(_) => Err(OutboundError::Timeout { timeout_ms: self.timeout_ms }),
        }
    }

    async fn fetch(&self, mut url: Url) -> Result<Fetched, OutboundError> {
        let mut redirects = 0_u32;
        let mut hops = Vec::new();
        loop {
            let mut response = self
                .client
                .get(url.clone())
                .header(header::ACCEPT, "application/json, */*;q=0.8")
                .send()
                .await
                .map_err(|error| self.send_error(&error))?;
            let status = response.status();
            if let Some(next) =
                self.next_hop(&url, status, response.headers().get(header::LOCATION))?
            {
                if redirects >= self.redirects_max {
                    return Err(OutboundError::TooManyRedirects { max: self.redirects_max });
                }
                redirects = redirects.saturating_add(1);
                hops.push(next.clone());
                url = next;
                continue;
            }
            let body = self.read_body(&mut response).await?;
            return Ok(Fetched {
                url,
                redirects,
                hops,
                status,
                headers: response.headers().clone(),
                body,
            });
        }
    }

    /// Where a response redirects to, checked; `None` when it is not a redirect to follow (not
    /// 301, 302, 303, 307 or 308, or without a readable `Location`: then it is the answer).
    fn next_hop(
        &self,
        from: &Url,
        status: StatusCode,
        location: Option<&HeaderValue>,
    ) -> Result<Option<Url>, OutboundError> {
        let follows = matches!(
            status,
            StatusCode::MOVED_PERMANENTLY
                | StatusCode::FOUND
                | StatusCode::SEE_OTHER
                | StatusCode::TEMPORARY_REDIRECT
                | StatusCode::PERMANENT_REDIRECT
        );
        if !follows {
            return Ok(None);
        }
        let Some(next) = location
            .and_then(|location| location.to_str().ok())
            .and_then(|location| from.join(location).ok())
        else {
            return Ok(None);
        };
        if next.as_str().len() > URL_LENGTH_MAX {
            return Err(OutboundError::InvalidUrl(format!(
                "the target redirected to a URL longer than {URL_LENGTH_MAX} characters"
            )));
        }
        self.policy.check_url(&next)?;
        Ok(Some(next))
    }

    async fn read_body(&self, response: &mut reqwest::Response) -> Result<Vec<u8>, OutboundError> {
        let too_large = OutboundError::ResponseTooLarge { limit_bytes: self.body_bytes_max };
        // A body announced larger than the limit is refused before reading any of it.
        let announced = match response.content_length().map(usize::try_from) {
            None => 0,
            Some(Ok(length)) if length <= self.body_bytes_max => length,
            Some(_) => return Err(too_large),
        };
        let mut body = Vec::with_capacity(announced);
        while let Some(chunk) = response.chunk().await.map_err(|error| self.send_error(&error))? {
            if chunk.len() > self.body_bytes_max.saturating_sub(body.len()) {
                return Err(too_large);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// Maps a client error: our resolver's refusal or failure comes back as it was; the rest is
    /// a timeout or an unreachable target.
    fn send_error(&self, error: &reqwest::Error) -> OutboundError {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
        let mut root = error.to_string();
        while let Some(current) = source {
            if let Some(ours) = current.downcast_ref::<OutboundError>() {
                return ours.clone();
            }
            root = current.to_string();
            source = current.source();
        }
        if error.is_timeout() {
            return OutboundError::Timeout { timeout_ms: self.timeout_ms };
        }
        OutboundError::Unreachable(root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outbound(allow_private: bool) -> Outbound {
        let settings = OutboundSettings {
            allow_private_targets: allow_private,
            ..OutboundSettings::default()
        };
        Outbound::new(&settings).unwrap()
    }

    fn refused_class(error: OutboundError) -> AddressClass {
        match error {
            OutboundError::AddressNotAllowed { class, .. } => class,
            other => panic!("not an address refusal: {other:?}"),
        }
    }

    #[test]
    fn urls_are_checked_before_any_request() {
        let policy = TargetPolicy { allow_private: false };
        assert!(policy.parse("https://api.example.com/data?x=1").is_ok());
        assert!(policy.parse("http://8.8.8.8:8080/").is_ok());
        assert!(policy.parse("http://[2606:4700:4700::1111]/").is_ok());
        for (url, class) in [
            ("http://127.0.0.1/", AddressClass::Loopback),
            ("http://127.1/", AddressClass::Loopback),
            ("http://0x7f000001/", AddressClass::Loopback),
            ("http://2130706433/", AddressClass::Loopback),
            ("http://[::1]:8080/", AddressClass::Loopback),
            ("http://[::ffff:127.0.0.1]/", AddressClass::Loopback),
            ("http://[::ffff:a9fe:a9fe]/", AddressClass::LinkLocal),
            ("http://10.0.0.5/", AddressClass::Private),
            ("https://192.168.1.1/", AddressClass::Private),
            ("http://169.254.169.254/latest/meta-data/", AddressClass::LinkLocal),
            ("http://100.64.0.1/", AddressClass::Shared),
            ("http://0.0.0.0/", AddressClass::Unspecified),
            ("http://[fd00::1]/", AddressClass::Private),
            ("http://[fe80::1]/", AddressClass::LinkLocal),
        ] {
            assert_eq!(refused_class(policy.parse(url).unwrap_err()), class, "{url}");
        }
        assert_eq!(
            policy.parse("http://10.0.0.5/").unwrap_err().to_string(),
            "the target resolves to a private address (10.0.0.5), which is not allowed"
        );
        for url in ["file:///etc/passwd", "ftp://example.com/", "gopher://example.com/"] {
            assert!(matches!(policy.parse(url), Err(OutboundError::SchemeNotAllowed(_))), "{url}");
        }
        for url in ["http://user:secret@example.com/", "http://user@example.com/"] {
            assert_eq!(policy.parse(url), Err(OutboundError::CredentialsNotAllowed), "{url}");
        }
        for url in ["not a url", "/relative", "http://", "http://[::1/"] {
            let error = policy.parse(url).unwrap_err();
            assert_eq!(error.code(), ErrorCode::InvalidTargetUrl, "{url}: {error:?}");
        }
        let long = format!("https://example.com/{}", "a".repeat(URL_LENGTH_MAX));
        assert!(matches!(policy.parse(&long), Err(OutboundError::InvalidUrl(_))));
    }

    #[test]
    fn development_allows_loopback_and_private_but_not_the_unspecified_address() {
        let policy = TargetPolicy { allow_private: true };
        for url in ["http://127.0.0.1:3000/", "http://10.0.0.5/", "http://[::1]/"] {
            assert!(policy.parse(url).is_ok(), "{url}");
        }
        for url in ["http://0.0.0.0/", "http://224.0.0.1/", "http://255.255.255.255/"] {
            assert!(policy.parse(url).is_err(), "{url}");
        }
        assert!(policy.parse("file:///etc/passwd").is_err());
    }

    #[test]
    fn redirects_are_checked_hop_by_hop() {
        let outbound = outbound(false);
        let from = Url::parse("https://api.example.com/paid/data").unwrap();
        let hop = |status: StatusCode, location: &str| {
            outbound.next_hop(&from, status, Some(&HeaderValue::from_str(location).unwrap()))
        };
        // A relative hop resolves against the current URL.
        assert_eq!(
            hop(StatusCode::FOUND, "/other?x=1").unwrap().unwrap().as_str(),
            "https://api.example.com/other?x=1"
        );
        assert_eq!(
            hop(StatusCode::PERMANENT_REDIRECT, "https://cdn.example.net/x")
                .unwrap()
                .unwrap()
                .as_str(),
            "https://cdn.example.net/x"
        );
        // From an allowed host to a forbidden one.
        assert_eq!(
            refused_class(
                hop(StatusCode::FOUND, "http://169.254.169.254/latest/meta-data/").unwrap_err()
            ),
            AddressClass::LinkLocal
        );
        assert_eq!(
            refused_class(hop(StatusCode::TEMPORARY_REDIRECT, "http://[::1]:9000/").unwrap_err()),
            AddressClass::Loopback
        );
        assert!(matches!(
            hop(StatusCode::MOVED_PERMANENTLY, "file:///etc/passwd"),
            Err(OutboundError::SchemeNotAllowed(_))
        ));
        assert_eq!(
            hop(StatusCode::SEE_OTHER, "http://admin:pw@example.com/"),
            Err(OutboundError::CredentialsNotAllowed)
        );
        // Not a redirect to follow: the response is the answer.
        assert_eq!(hop(StatusCode::NOT_MODIFIED, "http://127.0.0.1/"), Ok(None));
        assert_eq!(hop(StatusCode::OK, "http://127.0.0.1/"), Ok(None));
        assert_eq!(outbound.next_hop(&from, StatusCode::FOUND, None), Ok(None));
    }

    #[tokio::test]
    async fn host_names_resolving_to_refused_addresses_are_refused_by_the_resolver() {
        let policy = TargetPolicy { allow_private: false };
        let error = resolver::resolve(policy, "localhost").await.unwrap_err();
        assert_eq!(refused_class(error), AddressClass::Loopback);
        let allowed =
            resolver::resolve(TargetPolicy { allow_private: true }, "localhost").await.unwrap();
        assert!(allowed.iter().all(|address| address.ip().is_loopback()), "{allowed:?}");
        // Through the client too: the refusal comes back from inside the connector intact.
        let error = outbound(false).get("http://localhost:9/").await.unwrap_err();
        assert_eq!(refused_class(error), AddressClass::Loopback);
    }

    #[test]
    fn errors_map_to_their_codes() {
        let address: IpAddr = "10.0.0.5".parse().unwrap();
        for (error, code) in [
            (OutboundError::InvalidUrl("x".into()), ErrorCode::InvalidTargetUrl),
            (OutboundError::SchemeNotAllowed("ftp".into()), ErrorCode::TargetNotAllowed),
            (OutboundError::CredentialsNotAllowed, ErrorCode::TargetNotAllowed),
            (
                OutboundError::AddressNotAllowed { address, class: AddressClass::Private },
                ErrorCode::TargetNotAllowed,
            ),
            (
                OutboundError::Unresolvable { host: "x".into(), reason: "y".into() },
                ErrorCode::TargetUnreachable,
            ),
            (OutboundError::Unreachable("refused".into()), ErrorCode::TargetUnreachable),
            (OutboundError::Timeout { timeout_ms: 5 }, ErrorCode::TargetTimeout),
            (OutboundError::ResponseTooLarge { limit_bytes: 1 }, ErrorCode::TargetResponseTooLarge),
            (OutboundError::TooManyRedirects { max: 3 }, ErrorCode::TargetTooManyRedirects),
        ] {
            assert_eq!(ApiError::from(error).code(), code);
        }
    }
}
