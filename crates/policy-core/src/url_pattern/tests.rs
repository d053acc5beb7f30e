//! Table tests of URL and domain patterns and of target URLs.

#![allow(clippy::unwrap_used, clippy::panic, reason = "tests fail by panicking")]

use super::*;

fn url(text: &str) -> Url {
    Url::parse(text).unwrap()
}

fn pattern(text: &str) -> UrlPattern {
    UrlPattern::parse(text).unwrap_or_else(|error| panic!("{text}: {error}"))
}

/// Asserts which of `yes` the pattern matches and which of `no` it does not.
fn check(text: &str, yes: &[&str], no: &[&str]) {
    let pattern = pattern(text);
    for candidate in yes {
        assert!(pattern.matches(&url(candidate)), "{text} should match {candidate}");
    }
    for candidate in no {
        assert!(!pattern.matches(&url(candidate)), "{text} should not match {candidate}");
    }
}

#[test]
fn exact_url_pattern() {
    check(
        "https://api.example.com/v1/data",
        &[
            "https://api.example.com/v1/data",
            "https://api.example.com/v1/data/",
            "https://api.example.com/v1/data?page=2",
            "https://api.example.com/v1/data#section",
            "HTTPS://API.EXAMPLE.COM/v1/data",
            "https://api.example.com:443/v1/data",
            "https://api.example.com./v1/data",
            "https://api.example.com/v1/./data",
        ],
        &[
            "http://api.example.com/v1/data",
            "https://api.example.com:8443/v1/data",
            "https://api.example.com/v1/data/more",
            "https://api.example.com/v1/dat",
            "https://api.example.com/v1/datax",
            "https://api.example.com/V1/data",
            "https://example.com/v1/data",
            "https://x.api.example.com/v1/data",
            "https://api.example.com.evil.io/v1/data",
            "ftp://api.example.com/v1/data",
        ],
    );
}

#[test]
fn trailing_slash_is_ignored_both_ways() {
    check(
        "https://api.example.com/v1/",
        &["https://api.example.com/v1", "https://api.example.com/v1/"],
        &["https://api.example.com/v1/x", "https://api.example.com/"],
    );
    check(
        "https://api.example.com",
        &["https://api.example.com", "https://api.example.com/", "https://api.example.com/?a=1"],
        &["https://api.example.com/x"],
    );
}

#[test]
fn wildcard_paths_are_prefixes() {
    check(
        "https://api.example.com/v1/*",
        &[
            "https://api.example.com/v1/",
            "https://api.example.com/v1/a",
            "https://api.example.com/v1/a/b/c?x=1",
        ],
        &[
            "https://api.example.com/v1",
            "https://api.example.com/v10/a",
            "https://api.example.com/v2/a",
            "http://api.example.com/v1/a",
            "https://other.example.com/v1/a",
        ],
    );
    check(
        "https://api.example.com/*",
        &["https://api.example.com", "https://api.example.com/anything/at/all"],
        &["https://api2.example.com/"],
    );
    check(
        "https://api.example.com/v1*",
        &[
            "https://api.example.com/v1",
            "https://api.example.com/v10",
            "https://api.example.com/v1/a",
        ],
        &["https://api.example.com/v2"],
    );
}

#[test]
fn ports_are_normalised_and_compared() {
    check(
        "http://localhost:8080/pay",
        &["http://localhost:8080/pay", "http://LOCALHOST:8080/pay/"],
        &["http://localhost/pay", "http://localhost:8081/pay", "https://localhost:8080/pay"],
    );
    check("http://example.com:80/a", &["http://example.com/a"], &["http://example.com:8080/a"]);
    check("https://example.com:443/a", &["https://example.com/a"], &["https://example.com:80/a"]);
    check("https://example.com/a", &["https://example.com:443/a"], &["https://example.com:444/a"]);
    check("http://127.0.0.1:3000/*", &["http://127.0.0.1:3000/x"], &["http://127.0.0.2:3000/x"]);
    check("http://[::1]:3000/x", &["http://[::1]:3000/x"], &["http://[::2]:3000/x"]);
}

#[test]
fn queries_must_be_equal_only_when_the_pattern_has_one() {
    check(
        "https://x.example.com/search?q=coffee",
        &["https://x.example.com/search?q=coffee", "https://x.example.com/search/?q=coffee#top"],
        &[
            "https://x.example.com/search",
            "https://x.example.com/search?q=tea",
            "https://x.example.com/search?q=coffee&page=2",
            "https://x.example.com/search?",
        ],
    );
    // An empty query in the pattern is no query.
    check(
        "https://x.example.com/a?",
        &["https://x.example.com/a?b=1", "https://x.example.com/a"],
        &[],
    );
}

#[test]
fn uppercase_hosts_in_patterns() {
    check("https://API.Example.COM/a", &["https://api.example.com/a"], &[]);
    check("Example.COM", &["https://example.com/"], &[]);
    check("*.Example.COM", &["https://Api.Example.com/"], &["https://example.com/"]);
}

#[test]
fn domain_pattern_matches_the_host_only() {
    check(
        "example.com",
        &[
            "https://example.com",
            "http://example.com/anything?x=1",
            "https://EXAMPLE.com:8443/x",
            "https://example.com./x",
        ],
        &[
            "https://api.example.com/",
            "https://notexample.com/",
            "https://example.com.evil.io/",
            "https://example.co/",
            "ftp://example.com/",
            "wss://example.com/",
        ],
    );
    check("example.com.", &["https://example.com/", "https://example.com./"], &[]);
    check("127.0.0.1", &["http://127.0.0.1:8080/x"], &["http://127.0.0.10/"]);
    check("[::1]", &["http://[::1]:8080/x"], &["http://127.0.0.1/"]);
}

#[test]
fn wildcard_domain_matches_subdomains_at_any_depth() {
    check(
        "*.example.com",
        &[
            "https://api.example.com/",
            "https://a.b.c.example.com/x",
            "http://API.EXAMPLE.COM:8080/",
            "https://api.example.com./",
        ],
        &[
            "https://example.com/",
            "https://example.com./",
            "https://badexample.com/",
            "https://api.badexample.com/",
            "https://example.com.evil.io/",
            "https://api.example.org/",
            "ftp://api.example.com/",
        ],
    );
    check("*.co.uk", &["https://shop.co.uk/"], &["https://co.uk/"]);
}

#[test]
fn internationalised_hosts_compare_as_punycode() {
    check(
        "bücher.de",
        &["https://BÜCHER.de/", "https://xn--bcher-kva.de/"],
        &["https://bucher.de/"],
    );
}

#[test]
fn refuses_bad_patterns() {
    type Expect = fn(&PatternError) -> bool;
    let cases: &[(&str, Expect)] = &[
        ("", |e| matches!(e, PatternError::Empty)),
        (" ", |e| matches!(e, PatternError::Whitespace { .. })),
        ("example.com ", |e| matches!(e, PatternError::Whitespace { .. })),
        ("https://example.com/a b", |e| matches!(e, PatternError::Whitespace { .. })),
        ("*", |e| matches!(e, PatternError::BareWildcard)),
        ("*.com", |e| matches!(e, PatternError::WildcardTooBroad { .. })),
        ("*.localhost", |e| matches!(e, PatternError::WildcardTooBroad { .. })),
        ("**.example.com", |e| matches!(e, PatternError::MisplacedWildcard { .. })),
        ("*.*.example.com", |e| matches!(e, PatternError::MisplacedWildcard { .. })),
        ("a.*.example.com", |e| matches!(e, PatternError::MisplacedWildcard { .. })),
        ("*example.com", |e| matches!(e, PatternError::MisplacedWildcard { .. })),
        ("example.*", |e| matches!(e, PatternError::MisplacedWildcard { .. })),
        ("https://*.example.com/", |e| {
            matches!(e, PatternError::MisplacedWildcard { .. } | PatternError::InvalidUrl { .. })
        }),
        ("https://example.com/a*b", |e| matches!(e, PatternError::MisplacedWildcard { .. })),
        ("https://example.com/*/b", |e| matches!(e, PatternError::MisplacedWildcard { .. })),
        ("https://example.com/a**", |e| matches!(e, PatternError::MisplacedWildcard { .. })),
        ("https://example.com/a?q=*", |e| matches!(e, PatternError::MisplacedWildcard { .. })),
        ("ftp://example.com/", |e| matches!(e, PatternError::UnsupportedScheme { .. })),
        ("file:///etc/passwd", |e| matches!(e, PatternError::UnsupportedScheme { .. })),
        ("wss://example.com/", |e| matches!(e, PatternError::UnsupportedScheme { .. })),
        ("https://", |e| matches!(e, PatternError::InvalidUrl { .. })),
        ("https://exa mple.com", |e| matches!(e, PatternError::Whitespace { .. })),
        ("https://user:pw@example.com/", |e| matches!(e, PatternError::Credentials { .. })),
        ("https://user@example.com/", |e| matches!(e, PatternError::Credentials { .. })),
        ("https://example.com/#x", |e| matches!(e, PatternError::Fragment { .. })),
        ("https://example.com:99999/", |e| matches!(e, PatternError::InvalidUrl { .. })),
        ("example.com/path", |e| matches!(e, PatternError::InvalidDomain { .. })),
        ("example.com:8080", |e| matches!(e, PatternError::InvalidDomain { .. })),
        ("mailto:a@example.com", |e| matches!(e, PatternError::InvalidDomain { .. })),
        ("a..example.com", |e| matches!(e, PatternError::InvalidDomain { .. })),
        (".example.com", |e| matches!(e, PatternError::InvalidDomain { .. })),
        ("exa$mple.com", |e| matches!(e, PatternError::InvalidDomain { .. })),
        ("*.1.2.3.4", |e| matches!(e, PatternError::InvalidDomain { .. })),
        ("*.[::1]", |e| matches!(e, PatternError::InvalidDomain { .. })),
    ];
    for (text, expected) in cases {
        match UrlPattern::parse(text) {
            Ok(pattern) => panic!("{text:?} parsed as {pattern:?}"),
            Err(error) => assert!(expected(&error), "{text:?} gave {error:?}"),
        }
    }
}

#[test]
fn errors_name_why() {
    let message = UrlPattern::parse("*.com").unwrap_err().to_string();
    assert!(message.contains("`*.com`") && message.contains("top-level"), "{message}");
    let message = UrlPattern::parse("ftp://example.com/").unwrap_err().to_string();
    assert!(message.contains("`ftp`") && message.contains("http and https"), "{message}");
    let message = UrlPattern::parse("*").unwrap_err().to_string();
    assert!(message.contains("every URL"), "{message}");
    let long = format!("{}.example.com:1", "a".repeat(500));
    let message = UrlPattern::parse(&long).unwrap_err().to_string();
    assert!(message.len() < 400, "{message}");
}

#[test]
fn keeps_the_text_as_written() {
    for text in ["https://API.example.com:443/v1/*", "*.Example.com", "example.com."] {
        let parsed = pattern(text);
        assert_eq!(parsed.as_str(), text);
        assert_eq!(parsed.to_string(), text);
        assert_eq!(text.parse::<UrlPattern>(), Ok(parsed));
    }
}

#[test]
fn parses_targets() {
    let target = parse_target("https://api.example.com/v1/data?x=1").unwrap();
    assert_eq!(target.host_str(), Some("api.example.com"));
    assert_eq!(target.query(), Some("x=1"));
    assert!(parse_target("http://localhost:8080/").is_ok());
    assert_eq!(parse_target(""), Err(PatternError::Empty));
    for bad in ["ftp://example.com/", "file:///etc/passwd", "data:text/plain,hi", "mailto:a@b.c"] {
        assert!(
            matches!(parse_target(bad), Err(PatternError::UnsupportedScheme { .. })),
            "{bad}: {:?}",
            parse_target(bad)
        );
    }
    for bad in ["not a url", "example.com/path", "https://", "http://[::1"] {
        assert!(
            matches!(parse_target(bad), Err(PatternError::InvalidUrl { .. })),
            "{bad}: {:?}",
            parse_target(bad)
        );
    }
}
