//! Serde forms x402 uses for EVM values: `uint256` as a decimal string (`"10000"`), addresses
//! as EIP-55 checksummed hex (as the TypeScript SDK's `getAddress` emits them).

/// `uint256` as a decimal string. Reading also accepts `0x` hex strings, which some clients send
/// for timestamps.
pub(crate) mod u256_decimal {
    use alloy_primitives::U256;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(value: &U256, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(value)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<U256, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        super::parse_u256(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "`{}` is not a uint256 decimal string",
                text.chars().take(80).collect::<String>()
            ))
        })
    }
}

/// Parses a `uint256` from a decimal string, or a `0x`-prefixed hex string.
pub(crate) fn parse_u256(text: &str) -> Option<alloy_primitives::U256> {
    use alloy_primitives::U256;
    if let Some(hex) = text.strip_prefix("0x") {
        if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        return U256::from_str_radix(hex, 16).ok();
    }
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    U256::from_str_radix(text, 10).ok()
}

/// An address written as EIP-55 checksummed hex; any hex case is accepted on input.
pub(crate) mod address_checksummed {
    use alloy_primitives::Address;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(
        value: &Address,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&value.to_checksum(None))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Address, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        super::parse_address(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "`{}` is not a 0x-prefixed 20-byte hex address",
                text.chars().take(80).collect::<String>()
            ))
        })
    }
}

/// Parses a `0x`-prefixed 40-hex-digit address, in any letter case (like `getAddress` with
/// lowercase input; a mixed-case input with a wrong checksum is still refused).
pub(crate) fn parse_address(text: &str) -> Option<alloy_primitives::Address> {
    use alloy_primitives::Address;
    let hex = text.strip_prefix("0x")?;
    if hex.len() != 40 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mixed_case =
        hex.bytes().any(|b| b.is_ascii_lowercase()) && hex.bytes().any(|b| b.is_ascii_uppercase());
    if mixed_case { Address::parse_checksummed(text, None).ok() } else { text.parse().ok() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn u256_forms() {
        assert_eq!(parse_u256("10000"), Some(alloy_primitives::U256::from(10_000)));
        assert_eq!(parse_u256("0x10"), Some(alloy_primitives::U256::from(16)));
        for bad in ["", "0x", "-1", "1.5", " 1", "1e3", "0xzz"] {
            assert_eq!(parse_u256(bad), None, "{bad}");
        }
        let too_big = "1".repeat(80);
        assert_eq!(parse_u256(&too_big), None);
    }

    #[test]
    fn address_forms() {
        let checksummed = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";
        let parsed = parse_address(checksummed).unwrap();
        assert_eq!(parse_address(&checksummed.to_lowercase()), Some(parsed));
        assert_eq!(parse_address(&checksummed.to_uppercase().replace("0X", "0x")), Some(parsed));
        // One letter's case flipped breaks the EIP-55 checksum.
        assert_eq!(parse_address("0x209693bc6afc0C5328bA36FaF03C514EF312287C"), None);
        assert_eq!(parse_address("USDC"), None);
        assert_eq!(parse_address("209693Bc6afc0C5328bA36FaF03C514EF312287C"), None);
    }
}
