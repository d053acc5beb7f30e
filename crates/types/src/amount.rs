//! Token amounts in atomic units, with checked arithmetic and exact decimal conversion.
//!
//! An [`Amount`] counts the smallest unit of a token (for USDC with 6 decimals, one unit is
//! $0.000001). It never goes through floating point: decimal strings are parsed digit by digit
//! and formatted the same way. The only arithmetic is checked; there is no `impl Add`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The most decimals a token may declare. `10^38` still fits in a `u128`.
pub const DECIMALS_MAX: u8 = 38;

/// Longest input echoed back in an error message, so a huge bad input cannot bloat logs.
const ECHO_CHARS_MAX: usize = 64;

/// The most whole units of a token that one amount sent to the API may be: 10^9, so
/// $1,000,000,000 of a USD stablecoin (10^15 atomic units of 6-decimal USDC), and the same
/// number of dollars for a limit or a budget. [`Amount::api_max`] gives it in atomic units.
///
/// This is the platform's one bound on amounts it is asked for (faucet funding, withdrawals,
/// spending limits, session budgets, facilitator requests in a known token). It keeps every
/// amount far inside what the services store (`numeric(30,6)` dollars, `numeric(39,0)` ledger
/// counters) and compute with (`u128`), so a request can never fail there for its size.
pub const API_WHOLE_UNITS_MAX: u128 = 1_000_000_000;

/// A non-negative token amount in atomic units.
///
/// Serialized as a decimal integer string (`"100000"`), which is how x402 carries amounts on
/// the wire. Human decimal strings (`"0.10"`) are produced and parsed only with the token's
/// decimals in hand: [`Amount::from_decimal_str`] and [`Amount::to_decimal_string`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount(u128);

/// Why a string or an operation did not give an [`Amount`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    /// The input was empty.
    #[error("amount is empty")]
    Empty,
    /// The input was not a plain non-negative decimal number (no sign, exponent or spaces).
    #[error("amount `{input}` is not a plain non-negative decimal number")]
    Malformed {
        /// The offending input, shortened.
        input: String,
    },
    /// The input has non-zero digits below the token's smallest unit.
    #[error("amount `{input}` has more than {decimals} decimal places")]
    TooPrecise {
        /// The offending input, shortened.
        input: String,
        /// The token's decimals.
        decimals: u8,
    },
    /// The value does not fit in 128 bits of atomic units.
    #[error("amount is too large")]
    Overflow,
    /// A subtraction would go below zero.
    #[error("amount would become negative")]
    Underflow,
    /// The token declares more decimals than supported.
    #[error("{decimals} decimals is more than the supported {DECIMALS_MAX}")]
    UnsupportedDecimals {
        /// The decimals asked for.
        decimals: u8,
    },
}

fn echo(input: &str) -> String {
    input.chars().take(ECHO_CHARS_MAX).collect()
}

fn pow10(decimals: u8) -> Result<u128, AmountError> {
    if decimals > DECIMALS_MAX {
        return Err(AmountError::UnsupportedDecimals { decimals });
    }
    10u128.checked_pow(u32::from(decimals)).ok_or(AmountError::UnsupportedDecimals { decimals })
}

/// Appends ASCII decimal digits to `acc`, failing on overflow or a non-digit.
fn push_digits(mut acc: u128, digits: &str, input: &str) -> Result<u128, AmountError> {
    for byte in digits.bytes() {
        if !byte.is_ascii_digit() {
            return Err(AmountError::Malformed { input: echo(input) });
        }
        let digit = u128::from(byte.wrapping_sub(b'0'));
        acc = acc
            .checked_mul(10)
            .and_then(|value| value.checked_add(digit))
            .ok_or(AmountError::Overflow)?;
    }
    Ok(acc)
}

impl Amount {
    /// Zero atomic units.
    pub const ZERO: Self = Self(0);

    /// The largest amount: `u128::MAX` atomic units.
    pub const MAX: Self = Self(u128::MAX);

    /// The largest amount the API accepts of a token with `decimals` decimals:
    /// [`API_WHOLE_UNITS_MAX`] whole units (`10^(9 + decimals)` atomic units; 10^15 for a
    /// 6-decimal token), or [`Amount::MAX`] for a token with so many decimals that this does not
    /// fit in 128 bits.
    pub fn api_max(decimals: u8) -> Self {
        10u128
            .checked_pow(u32::from(decimals))
            .and_then(|unit| unit.checked_mul(API_WHOLE_UNITS_MAX))
            .map_or(Self::MAX, Self)
    }

    /// An amount of `atomic` smallest units.
    pub const fn from_atomic(atomic: u128) -> Self {
        Self(atomic)
    }

    /// The number of smallest units.
    pub const fn atomic(self) -> u128 {
        self.0
    }

    /// Whether this is zero.
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// `self + other`, or [`AmountError::Overflow`].
    pub fn checked_add(self, other: Self) -> Result<Self, AmountError> {
        self.0.checked_add(other.0).map(Self).ok_or(AmountError::Overflow)
    }

    /// `self - other`, or [`AmountError::Underflow`] when `other` is larger.
    pub fn checked_sub(self, other: Self) -> Result<Self, AmountError> {
        self.0.checked_sub(other.0).map(Self).ok_or(AmountError::Underflow)
    }

    /// `self * factor`, or [`AmountError::Overflow`].
    pub fn checked_mul(self, factor: u128) -> Result<Self, AmountError> {
        self.0.checked_mul(factor).map(Self).ok_or(AmountError::Overflow)
    }

    /// Parses a decimal integer string of atomic units, such as `"100000"`.
    ///
    /// Leading zeros are accepted (as JavaScript's `BigInt` does); signs, spaces, exponents and
    /// fractions are not.
    pub fn parse_atomic(input: &str) -> Result<Self, AmountError> {
        if input.is_empty() {
            return Err(AmountError::Empty);
        }
        push_digits(0, input, input).map(Self)
    }

    /// Parses a human decimal string such as `"0.10"` for a token with `decimals` decimals,
    /// exactly: `"0.10"` with 6 decimals is 100000 atomic units.
    ///
    /// Digits below the token's smallest unit are refused unless they are all zero (`"0.1000000"`
    /// is exactly 100000 units; `"0.0000001"` is an error), so no value is ever rounded or cut.
    pub fn from_decimal_str(input: &str, decimals: u8) -> Result<Self, AmountError> {
        let scale = pow10(decimals)?;
        if input.is_empty() {
            return Err(AmountError::Empty);
        }
        let (whole, fraction) = match input.split_once('.') {
            Some((whole, fraction)) => (whole, Some(fraction)),
            None => (input, None),
        };
        if whole.is_empty() || fraction.is_some_and(str::is_empty) {
            return Err(AmountError::Malformed { input: echo(input) });
        }
        let whole_units = push_digits(0, whole, input)?;
        let fraction = fraction.unwrap_or("");
        // Digits only (so the split below is on a character boundary, whatever the input).
        if !fraction.bytes().all(|byte| byte.is_ascii_digit()) {
            return Err(AmountError::Malformed { input: echo(input) });
        }
        let (significant, below_unit) =
            fraction.split_at(fraction.len().min(usize::from(decimals)));
        if !below_unit.bytes().all(|byte| byte == b'0') {
            return Err(AmountError::TooPrecise { input: echo(input), decimals });
        }
        let mut fraction_units = push_digits(0, significant, input)?;
        // Pad the fraction on the right up to the token's decimals.
        for _ in significant.len()..usize::from(decimals) {
            fraction_units = fraction_units.checked_mul(10).ok_or(AmountError::Overflow)?;
        }
        whole_units
            .checked_mul(scale)
            .and_then(|units| units.checked_add(fraction_units))
            .map(Self)
            .ok_or(AmountError::Overflow)
    }

    /// Formats as a human decimal string for a token with `decimals` decimals.
    ///
    /// Trailing zeros are trimmed but at least two fraction digits are kept, as prices are
    /// usually written: 100000 units of a 6-decimal token is `"0.10"`, 2000 is `"0.002"`,
    /// 100000000 is `"100.00"`. [`Amount::from_decimal_str`] reads every output back exactly.
    pub fn to_decimal_string(self, decimals: u8) -> Result<String, AmountError> {
        let scale = pow10(decimals)?;
        let whole =
            self.0.checked_div(scale).ok_or(AmountError::UnsupportedDecimals { decimals })?;
        let fraction =
            self.0.checked_rem(scale).ok_or(AmountError::UnsupportedDecimals { decimals })?;
        if decimals == 0 {
            return Ok(whole.to_string());
        }
        let width = usize::from(decimals);
        let padded = format!("{fraction:0width$}");
        let keep = padded.trim_end_matches('0').len().max(2.min(width));
        Ok(format!("{whole}.{}", &padded[..keep]))
    }
}

impl fmt::Display for Amount {
    /// Atomic units as a decimal integer.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for Amount {
    type Err = AmountError;

    /// Atomic units; see [`Amount::parse_atomic`].
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        Self::parse_atomic(input)
    }
}

impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse_atomic(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn parses_prices_exactly() {
        let cases: &[(&str, u8, u128)] = &[
            ("0.10", 6, 100_000),
            ("0.001", 6, 1_000),
            ("1", 6, 1_000_000),
            ("100.00", 6, 100_000_000),
            ("0.000001", 6, 1),
            ("0.1000000", 6, 100_000),
            ("007.5", 6, 7_500_000),
            ("5", 0, 5),
            ("5.000", 0, 5),
            ("340282366920938463463374607431768211455", 0, u128::MAX),
        ];
        for &(input, decimals, atomic) in cases {
            assert_eq!(Amount::from_decimal_str(input, decimals), Ok(Amount(atomic)), "{input}");
        }
    }

    #[test]
    fn refuses_bad_decimals() {
        let too_precise = Amount::from_decimal_str("0.0000001", 6);
        assert!(matches!(too_precise, Err(AmountError::TooPrecise { decimals: 6, .. })));
        for input in ["", "-1", "+1", "1e3", " 1", "1 ", ".5", "5.", "1.2.3", "0x10", "1,5", "１"]
        {
            let result = Amount::from_decimal_str(input, 6);
            assert!(
                matches!(result, Err(AmountError::Malformed { .. } | AmountError::Empty)),
                "{input:?} gave {result:?}"
            );
        }
        assert_eq!(
            Amount::from_decimal_str("340282366920938463463374607431768211456", 0),
            Err(AmountError::Overflow)
        );
        assert_eq!(
            Amount::from_decimal_str("1", 39),
            Err(AmountError::UnsupportedDecimals { decimals: 39 })
        );
    }

    #[test]
    fn formats_like_prices() {
        let cases: &[(u128, u8, &str)] = &[
            (100_000, 6, "0.10"),
            (2_000, 6, "0.002"),
            (100_000_000, 6, "100.00"),
            (1, 6, "0.000001"),
            (0, 6, "0.00"),
            (5, 0, "5"),
            (5, 1, "0.5"),
            (50, 1, "5.0"),
        ];
        for &(atomic, decimals, text) in cases {
            assert_eq!(Amount(atomic).to_decimal_string(decimals).as_deref(), Ok(text));
        }
    }

    #[test]
    fn atomic_strings_and_serde() {
        assert_eq!(Amount::parse_atomic("10000"), Ok(Amount(10_000)));
        assert!(Amount::parse_atomic("0.10").is_err());
        assert!(Amount::parse_atomic("").is_err());
        assert_eq!(serde_json::to_string(&Amount(10_000)).unwrap(), "\"10000\"");
        assert_eq!(serde_json::from_str::<Amount>("\"10000\"").unwrap(), Amount(10_000));
        assert!(serde_json::from_str::<Amount>("10000").is_err());
        assert!(serde_json::from_str::<Amount>("\"-1\"").is_err());
    }

    #[test]
    fn the_api_bound_is_a_billion_whole_units() {
        assert_eq!(Amount::api_max(6), Amount(1_000_000_000_000_000), "10^15 atomic USDC");
        assert_eq!(Amount::api_max(0), Amount(API_WHOLE_UNITS_MAX));
        assert_eq!(Amount::api_max(18), Amount(10u128.pow(27)));
        assert_eq!(Amount::from_decimal_str("1000000000", 6), Ok(Amount::api_max(6)));
        // 10^(9 + 30) does not fit in 128 bits: the bound is then the largest amount.
        assert_eq!(Amount::api_max(29), Amount(10u128.pow(38)));
        assert_eq!(Amount::api_max(30), Amount::MAX);
        assert_eq!(Amount::api_max(DECIMALS_MAX), Amount::MAX);
    }

    #[test]
    fn a_fraction_that_is_not_digits_is_malformed_whatever_its_characters() {
        // Found by `parsing_never_panics`: a multi-byte character where the fraction is cut.
        for input in ["1.¥𓧅🕴", "0.𓧅", "1.1é", "2.x"] {
            assert!(
                matches!(Amount::from_decimal_str(input, 1), Err(AmountError::Malformed { .. })),
                "{input}"
            );
        }
    }

    #[test]
    fn arithmetic_is_checked() {
        assert_eq!(Amount(1).checked_sub(Amount(2)), Err(AmountError::Underflow));
        assert_eq!(Amount(u128::MAX).checked_add(Amount(1)), Err(AmountError::Overflow));
        assert_eq!(Amount(u128::MAX).checked_mul(2), Err(AmountError::Overflow));
        assert_eq!(Amount(2).checked_add(Amount(3)), Ok(Amount(5)));
        assert_eq!(Amount(5).checked_sub(Amount(3)), Ok(Amount(2)));
    }

    proptest! {
        #[test]
        fn decimal_round_trip(atomic in any::<u128>(), decimals in 0u8..=DECIMALS_MAX) {
            let amount = Amount(atomic);
            let text = amount.to_decimal_string(decimals).unwrap();
            prop_assert_eq!(Amount::from_decimal_str(&text, decimals), Ok(amount));
        }

        #[test]
        fn atomic_round_trip(atomic in any::<u128>()) {
            let amount = Amount(atomic);
            prop_assert_eq!(Amount::parse_atomic(&amount.to_string()), Ok(amount));
        }

        #[test]
        fn parsing_never_panics(input in ".{0,80}", decimals in 0u8..=60) {
            let _ = Amount::from_decimal_str(&input, decimals);
            let _ = Amount::parse_atomic(&input);
        }

        #[test]
        fn parsed_decimals_format_back_to_the_same_value(
            whole in 0u64..1_000_000_000, fraction in 0u32..1_000_000, digits in 1usize..=6,
        ) {
            let fraction = format!("{fraction:06}");
            let input = format!("{whole}.{}", &fraction[..digits]);
            let amount = Amount::from_decimal_str(&input, 6).unwrap();
            let again = amount.to_decimal_string(6).unwrap();
            prop_assert_eq!(Amount::from_decimal_str(&again, 6), Ok(amount));
        }
    }
}
