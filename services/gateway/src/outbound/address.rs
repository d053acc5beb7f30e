//! Which IP addresses the gateway may connect to on an agent's behalf: public unicast only.
//!
//! [`classify`] names the class of every address that is not public: loopback, private
//! (RFC 1918, `fc00::/7`), link-local (`169.254.0.0/16`, which holds the cloud metadata address
//! `169.254.169.254`, and `fe80::/10`), shared (carrier-grade NAT, `100.64.0.0/10`),
//! unspecified, "this network" (`0.0.0.0/8`), broadcast, multicast, documentation, benchmarking,
//! and the other special-purpose and reserved ranges of the IANA registries. IPv6 forms that
//! embed an IPv4 address (IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible `::a.b.c.d`, NAT64
//! `64:ff9b::/96`, 6to4 `2002::/16`) are judged by the IPv4 address inside.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The class of an address that is not public unicast.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressClass {
    /// `0.0.0.0` or `::`: on most systems a connection to it reaches the machine itself.
    Unspecified,
    /// `0.0.0.0/8` other than `0.0.0.0`: "this network".
    ThisNetwork,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// RFC 1918 (`10/8`, `172.16/12`, `192.168/16`), unique local `fc00::/7`, the deprecated
    /// site-local `fec0::/10`, local-use NAT64 `64:ff9b:1::/48`.
    Private,
    /// `169.254.0.0/16` (the cloud metadata address among them), `fe80::/10`.
    LinkLocal,
    /// Shared address space `100.64.0.0/10` (carrier-grade NAT).
    Shared,
    /// `255.255.255.255`.
    Broadcast,
    /// `224.0.0.0/4`, `ff00::/8`.
    Multicast,
    /// `192.0.2/24`, `198.51.100/24`, `203.0.113/24`, `2001:db8::/32`, `3fff::/20`.
    Documentation,
    /// `198.18.0.0/15`.
    Benchmarking,
    /// Special-purpose and reserved ranges: `192.0.0/24`, `192.88.99/24`, `240/4`, `100::/64`,
    /// `2001::/23`, `5f00::/16`, the deprecated IPv4-compatible `::/96`, and IPv6 outside the
    /// global unicast `2000::/3`.
    Reserved,
}

impl AddressClass {
    /// Whether development configuration (`outbound.allow_private_targets`) may allow this
    /// class. Unspecified, "this network", broadcast and multicast addresses are never an HTTP
    /// server's, so they stay refused.
    pub fn allowed_in_development(self) -> bool {
        !matches!(self, Self::Unspecified | Self::ThisNetwork | Self::Broadcast | Self::Multicast)
    }
}

impl fmt::Display for AddressClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unspecified => "an unspecified address",
            Self::ThisNetwork => "a \"this network\" address",
            Self::Loopback => "a loopback address",
            Self::Private => "a private address",
            Self::LinkLocal => "a link-local address",
            Self::Shared => "a shared (carrier-grade NAT) address",
            Self::Broadcast => "a broadcast address",
            Self::Multicast => "a multicast address",
            Self::Documentation => "a documentation address",
            Self::Benchmarking => "a benchmarking address",
            Self::Reserved => "a reserved address",
        })
    }
}

/// The class of `ip`, or `None` when it is public unicast.
pub fn classify(ip: IpAddr) -> Option<AddressClass> {
    match ip {
        IpAddr::V4(ip) => classify_v4(ip),
        IpAddr::V6(ip) => classify_v6(ip),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<AddressClass> {
    use AddressClass::{
        Benchmarking, Broadcast, Documentation, LinkLocal, Loopback, Multicast, Private, Reserved,
        Shared, ThisNetwork, Unspecified,
    };
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        _ if ip.is_unspecified() => Unspecified,
        _ if ip.is_broadcast() => Broadcast,
        (0, ..) => ThisNetwork,
        (10, ..) | (172, 16..=31, _) | (192, 168, _) => Private,
        (100, 64..=127, _) => Shared,
        (127, ..) => Loopback,
        (169, 254, _) => LinkLocal,
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => Documentation,
        (198, 18..=19, _) => Benchmarking,
        // IETF protocol assignments; the deprecated 6to4 relay anycast.
        (192, 0, 0) | (192, 88, 99) => Reserved,
        (224..=239, ..) => Multicast,
        (240..=255, ..) => Reserved,
        _ => return None,
    })
}

/// The IPv4 address in the last 32 bits.
fn low_v4(segments: [u16; 8]) -> Ipv4Addr {
    let [.., high, low] = segments;
    let [a, b] = high.to_be_bytes();
    let [c, d] = low.to_be_bytes();
    Ipv4Addr::new(a, b, c, d)
}

fn classify_v6(ip: Ipv6Addr) -> Option<AddressClass> {
    use AddressClass::{
        Documentation, LinkLocal, Loopback, Multicast, Private, Reserved, Unspecified,
    };
    if ip.is_unspecified() {
        return Some(Unspecified);
    }
    if ip.is_loopback() {
        return Some(Loopback);
    }
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    let segments = ip.segments();
    let first = segments[0];
    match segments {
        // IPv4-compatible (deprecated): never public, named by the address inside when it has
        // a class.
        [0, 0, 0, 0, 0, 0, _, _] => Some(classify_v4(low_v4(segments)).unwrap_or(Reserved)),
        // NAT64: the IPv4 address inside is the one reached.
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => classify_v4(low_v4(segments)),
        [0x64, 0xff9b, 1, ..] => Some(Private),
        [0x100, 0, 0, 0, ..] => Some(Reserved),
        [0x2001, 0x0db8, ..] => Some(Documentation),
        [0x2001, 0..=0x01ff, ..] => Some(Reserved),
        // 6to4: the IPv4 address is in bits 16 to 48.
        [0x2002, high, low, ..] => {
            let [a, b] = high.to_be_bytes();
            let [c, d] = low.to_be_bytes();
            classify_v4(Ipv4Addr::new(a, b, c, d))
        }
        [0x3fff, 0..=0x0fff, ..] => Some(Documentation),
        [0x5f00, ..] => Some(Reserved),
        _ if first & 0xfe00 == 0xfc00 => Some(Private),
        _ if first & 0xffc0 == 0xfe80 => Some(LinkLocal),
        _ if first & 0xffc0 == 0xfec0 => Some(Private),
        _ if first & 0xff00 == 0xff00 => Some(Multicast),
        _ if first & 0xe000 != 0x2000 => Some(Reserved),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AddressClass::*;

    fn class(text: &str) -> Option<AddressClass> {
        classify(text.parse().unwrap())
    }

    #[test]
    fn ipv4_classes() {
        for (address, expected) in [
            ("0.0.0.0", Some(Unspecified)),
            ("0.1.2.3", Some(ThisNetwork)),
            ("10.0.0.5", Some(Private)),
            ("172.16.0.1", Some(Private)),
            ("172.31.255.255", Some(Private)),
            ("172.32.0.1", None),
            ("192.168.1.1", Some(Private)),
            ("100.64.0.1", Some(Shared)),
            ("100.127.255.255", Some(Shared)),
            ("100.128.0.1", None),
            ("127.0.0.1", Some(Loopback)),
            ("127.255.0.9", Some(Loopback)),
            ("169.254.169.254", Some(LinkLocal)),
            ("192.0.0.8", Some(Reserved)),
            ("192.0.2.1", Some(Documentation)),
            ("198.51.100.7", Some(Documentation)),
            ("203.0.113.9", Some(Documentation)),
            ("192.88.99.1", Some(Reserved)),
            ("198.18.0.1", Some(Benchmarking)),
            ("198.19.255.1", Some(Benchmarking)),
            ("224.0.0.1", Some(Multicast)),
            ("239.255.255.250", Some(Multicast)),
            ("240.0.0.1", Some(Reserved)),
            ("255.255.255.255", Some(Broadcast)),
            ("8.8.8.8", None),
            ("1.1.1.1", None),
            ("93.184.216.34", None),
            ("11.0.0.1", None),
            ("172.15.255.255", None),
            ("192.169.0.1", None),
        ] {
            assert_eq!(class(address), expected, "{address}");
        }
    }

    #[test]
    fn ipv6_classes() {
        for (address, expected) in [
            ("::", Some(Unspecified)),
            ("::1", Some(Loopback)),
            ("fc00::1", Some(Private)),
            ("fd12:3456::1", Some(Private)),
            ("fec0::1", Some(Private)),
            ("fe80::1", Some(LinkLocal)),
            ("febf::1", Some(LinkLocal)),
            ("ff02::1", Some(Multicast)),
            ("2001:db8::1", Some(Documentation)),
            ("3fff::1", Some(Documentation)),
            ("2001::1", Some(Reserved)),
            ("100::1", Some(Reserved)),
            ("64:ff9b:1::1", Some(Private)),
            ("4000::1", Some(Reserved)),
            ("::ffff:0:7f00:1", Some(Reserved)),
            ("2606:4700:4700::1111", None),
            ("2a00:1450:4001:80b::200e", None),
        ] {
            assert_eq!(class(address), expected, "{address}");
        }
    }

    #[test]
    fn ipv6_forms_of_ipv4_addresses_are_judged_by_the_ipv4_inside() {
        for (address, expected) in [
            ("::ffff:127.0.0.1", Some(Loopback)),
            ("::ffff:7f00:1", Some(Loopback)),
            ("::ffff:10.0.0.1", Some(Private)),
            ("::ffff:169.254.169.254", Some(LinkLocal)),
            ("::ffff:100.64.0.1", Some(Shared)),
            ("::ffff:0.0.0.0", Some(Unspecified)),
            ("::ffff:8.8.8.8", None),
            ("::127.0.0.1", Some(Loopback)),
            ("::8.8.8.8", Some(Reserved)),
            ("64:ff9b::127.0.0.1", Some(Loopback)),
            ("64:ff9b::a9fe:a9fe", Some(LinkLocal)),
            ("64:ff9b::8.8.8.8", None),
            ("2002:7f00:1::", Some(Loopback)),
            ("2002:c0a8:101::1", Some(Private)),
            ("2002:808:808::1", None),
        ] {
            assert_eq!(class(address), expected, "{address}");
        }
    }

    #[test]
    fn development_allows_what_a_local_server_can_be() {
        for allowed in [Loopback, Private, LinkLocal, Shared, Documentation, Benchmarking, Reserved]
        {
            assert!(allowed.allowed_in_development(), "{allowed:?}");
        }
        for refused in [Unspecified, ThisNetwork, Broadcast, Multicast] {
            assert!(!refused.allowed_in_development(), "{refused:?}");
        }
    }

    #[test]
    fn classes_read_well_in_messages() {
        assert_eq!(Private.to_string(), "a private address");
        assert_eq!(LinkLocal.to_string(), "a link-local address");
    }
}
