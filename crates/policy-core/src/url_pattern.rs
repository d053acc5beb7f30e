//! URL and domain patterns that say where an agent may pay ([`UrlPattern`]), and the parsing of
//! the URLs it pays ([`parse_target`]).

use std::fmt;
use std::str::FromStr;

use url::{Host, Url};

/// Longest input echoed back in an error message.
const ECHO_CHARS_MAX: usize = 128;

/// Why a pattern or a target URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// The text is empty.
    #[error("the URL or pattern is empty")]
    Empty,
    /// The text contains whitespace.
    #[error("`{input}` contains whitespace")]
    Whitespace {
        /// The offending input, shortened.
        input: String,
    },
    /// The text has `://` but is not a valid URL.
    #[error("`{input}` is not a valid URL: {source}")]
    InvalidUrl {
        /// The offending input, shortened.
        input: String,
        /// Why the URL parser refused it.
        source: url::ParseError,
    },
    /// The scheme is not http or https.
    #[error("`{input}` uses the scheme `{scheme}`: only http and https can be paid")]
    UnsupportedScheme {
        /// The offending input, shortened.
        input: String,
        /// The scheme found.
        scheme: String,
    },
    /// The URL has no host.
    #[error("`{input}` has no host")]
    MissingHost {
        /// The offending input, shortened.
        input: String,
    },
    /// The URL pattern carries a user name or password.
    #[error("`{input}` carries credentials; a pattern names a place, not a login")]
    Credentials {
        /// The offending input, shortened.
        input: String,
    },
    /// The URL pattern has a fragment, which is never sent to a server.
    #[error("`{input}` has a fragment (`#…`), which a server never sees")]
    Fragment {
        /// The offending input, shortened.
        input: String,
    },
    /// `*` alone, which would match everything.
    #[error("`*` alone would match every URL; leave the list empty to allow any URL")]
    BareWildcard,
    /// A `*` somewhere other than the end of a URL pattern's path or the first label of a
    /// domain pattern.
    #[error(
        "`{input}` has a `*` out of place: it may only end the path of a URL pattern \
         (`https://api.example.com/v1/*`) or stand as the first label of a domain pattern \
         (`*.example.com`)"
    )]
    MisplacedWildcard {
        /// The offending input, shortened.
        input: String,
    },
    /// A wildcard over a single label (`*.com`), which covers a whole top-level domain.
    #[error("`{input}` covers a whole top-level domain: name at least two labels after `*.`")]
    WildcardTooBroad {
        /// The offending input, shortened.
        input: String,
    },
    /// Neither a URL pattern nor a host name.
    #[error(
        "`{input}` is neither a host name such as `example.com` or `*.example.com` nor a URL \
         pattern such as `https://api.example.com/v1/*` (ports and paths need the URL form)"
    )]
    InvalidDomain {
        /// The offending input, shortened.
        input: String,
    },
}

fn echo(input: &str) -> String {
    input.chars().take(ECHO_CHARS_MAX).collect()
}

/// A pattern of URLs an agent may pay, in one of these forms:
///
/// | pattern | matches |
/// |---|---|
/// | `https://api.example.com/v1/data` | that scheme, host and port; that path, give or take a trailing slash; any query |
/// | `https://api.example.com/v1/*` | paths starting with `/v1/` |
/// | `https://api.example.com/search?q=x` | that path with exactly that query |
/// | `example.com` | the host `example.com`, over http or https, any port and path |
/// | `*.example.com` | any subdomain of `example.com` at any depth, but not `example.com` itself |
///
/// Hosts compare lowercase (internationalised names as punycode) and a trailing dot on a host is
/// ignored. Default ports are normalised (`https://x:443/` is `https://x/`). A URL's fragment is
/// always ignored (and a pattern may not have one). Only http and https are payable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlPattern {
    text: String,
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// A URL pattern.
    Url(UrlRule),
    /// Exactly this host (lowercase, no trailing dot).
    Host(String),
    /// Strict subdomains of this domain (lowercase, no trailing dot).
    Subdomains(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct UrlRule {
    scheme: String,
    host: String,
    port: u16,
    path: PathRule,
    /// The query that must be equal, when the pattern has one.
    query: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PathRule {
    /// The URL's path starts with this.
    Prefix(String),
    /// The URL's path is this, give or take one trailing slash.
    Exact(String),
}

fn is_payable_scheme(scheme: &str) -> bool {
    scheme == "http" || scheme == "https"
}

/// A host as compared: lowercase, without one trailing dot.
fn normalise_host(host: &str) -> String {
    let lower = host.to_ascii_lowercase();
    match lower.strip_suffix('.') {
        Some(stripped) if !stripped.is_empty() => stripped.to_owned(),
        _ => lower,
    }
}

/// A path without one trailing slash.
fn without_trailing_slash(path: &str) -> &str {
    path.strip_suffix('/').unwrap_or(path)
}

impl UrlPattern {
    /// Parses a URL pattern (`https://api.example.com/v1/*`) or a domain pattern
    /// (`example.com`, `*.example.com`).
    pub fn parse(text: &str) -> Result<Self, PatternError> {
        if text.is_empty() {
            return Err(PatternError::Empty);
        }
        if text.chars().any(char::is_whitespace) {
            return Err(PatternError::Whitespace { input: echo(text) });
        }
        let kind = if text.contains("://") { parse_url_rule(text)? } else { parse_domain(text)? };
        Ok(Self { text: text.to_owned(), kind })
    }

    /// Whether `url` is one this pattern allows.
    pub fn matches(&self, url: &Url) -> bool {
        let Some(host) = url.host_str().map(normalise_host) else {
            return false;
        };
        match &self.kind {
            Kind::Url(rule) => rule.matches(url, &host),
            Kind::Host(expected) => is_payable_scheme(url.scheme()) && host == *expected,
            Kind::Subdomains(parent) => {
                is_payable_scheme(url.scheme())
                    && host
                        .strip_suffix(parent.as_str())
                        .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.'))
            }
        }
    }

    /// The pattern as it was written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl UrlRule {
    fn matches(&self, url: &Url, host: &str) -> bool {
        let path_ok = match &self.path {
            PathRule::Prefix(prefix) => url.path().starts_with(prefix.as_str()),
            PathRule::Exact(path) => {
                without_trailing_slash(url.path()) == without_trailing_slash(path)
            }
        };
        url.scheme() == self.scheme
            && host == self.host
            && url.port_or_known_default() == Some(self.port)
            && path_ok
            && self.query.as_deref().is_none_or(|query| url.query() == Some(query))
    }
}

fn parse_url_rule(text: &str) -> Result<Kind, PatternError> {
    let url = Url::parse(text)
        .map_err(|source| PatternError::InvalidUrl { input: echo(text), source })?;
    if !is_payable_scheme(url.scheme()) {
        return Err(PatternError::UnsupportedScheme {
            input: echo(text),
            scheme: url.scheme().to_owned(),
        });
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(PatternError::Credentials { input: echo(text) });
    }
    if url.fragment().is_some() {
        return Err(PatternError::Fragment { input: echo(text) });
    }
    let host = match url.host_str() {
        Some(host) if !host.is_empty() => normalise_host(host),
        _ => return Err(PatternError::MissingHost { input: echo(text) }),
    };
    let port = url.port_or_known_default().ok_or_else(|| PatternError::UnsupportedScheme {
        input: echo(text),
        scheme: url.scheme().to_owned(),
    })?;
    let misplaced = || PatternError::MisplacedWildcard { input: echo(text) };
    let query = url.query().filter(|query| !query.is_empty());
    if host.contains('*') || query.is_some_and(|query| query.contains('*')) {
        return Err(misplaced());
    }
    let path = match url.path().strip_suffix('*') {
        Some(prefix) if !prefix.contains('*') => PathRule::Prefix(prefix.to_owned()),
        Some(_) => return Err(misplaced()),
        None if url.path().contains('*') => return Err(misplaced()),
        None => PathRule::Exact(url.path().to_owned()),
    };
    Ok(Kind::Url(UrlRule {
        scheme: url.scheme().to_owned(),
        host,
        port,
        path,
        query: query.map(str::to_owned),
    }))
}

fn parse_domain(text: &str) -> Result<Kind, PatternError> {
    if text == "*" {
        return Err(PatternError::BareWildcard);
    }
    let invalid = || PatternError::InvalidDomain { input: echo(text) };
    let (wildcard, name) = match text.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    if name.contains('*') {
        return Err(PatternError::MisplacedWildcard { input: echo(text) });
    }
    if name.starts_with('[') {
        // A bracketed IPv6 address: an exact host only.
        return match Host::parse(name) {
            Ok(host @ Host::Ipv6(_)) if !wildcard => Ok(Kind::Host(host.to_string())),
            _ => Err(invalid()),
        };
    }
    if name.bytes().any(|byte| matches!(byte, b'/' | b':' | b'?' | b'#' | b'@' | b'\\' | b'%')) {
        return Err(invalid());
    }
    let name = match name.strip_suffix('.') {
        Some(stripped) if !stripped.is_empty() => stripped,
        _ => name,
    };
    match Host::parse(name).map_err(|_| invalid())? {
        Host::Domain(domain) => {
            let domain = domain.to_ascii_lowercase();
            let labels_ok = domain.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_'))
            });
            if !labels_ok {
                return Err(invalid());
            }
            if !wildcard {
                return Ok(Kind::Host(domain));
            }
            if !domain.contains('.') {
                return Err(PatternError::WildcardTooBroad { input: echo(text) });
            }
            Ok(Kind::Subdomains(domain))
        }
        host @ Host::Ipv4(_) if !wildcard => Ok(Kind::Host(host.to_string())),
        Host::Ipv4(_) | Host::Ipv6(_) => Err(invalid()),
    }
}

impl fmt::Display for UrlPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for UrlPattern {
    type Err = PatternError;

    /// See [`UrlPattern::parse`].
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

/// Parses the URL of a payment: http or https, with a host.
pub fn parse_target(text: &str) -> Result<Url, PatternError> {
    if text.is_empty() {
        return Err(PatternError::Empty);
    }
    let url = Url::parse(text)
        .map_err(|source| PatternError::InvalidUrl { input: echo(text), source })?;
    if !is_payable_scheme(url.scheme()) {
        return Err(PatternError::UnsupportedScheme {
            input: echo(text),
            scheme: url.scheme().to_owned(),
        });
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(PatternError::MissingHost { input: echo(text) });
    }
    Ok(url)
}

#[cfg(test)]
mod tests;
