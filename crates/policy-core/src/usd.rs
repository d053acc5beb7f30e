//! US dollars in micro-units ("usd micros": 6 decimals, 1_000_000 is $1.00), the unit of every
//! limit and budget.
//!
//! Token amounts of USD stablecoins are converted with [`usd_micros`], exactly when the token
//! has at most 6 decimals and rounded **up** otherwise, so that rounding can never let a payment
//! slip under a limit. Human strings (`"1.00"`) are read with [`parse_usd`] and written with
//! [`format_usd`].

use awx_types::{Amount, AmountError, DECIMALS_MAX};

/// The decimals of a usd-micro amount.
pub const USD_DECIMALS: u8 = 6;

/// Longest input echoed back in an error message.
const ECHO_CHARS_MAX: usize = 64;

/// Why an amount could not be expressed in usd micros.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsdError {
    /// The amount in usd micros does not fit in 128 bits.
    #[error("the amount is too large to express in usd micros")]
    Overflow,
    /// The token declares more decimals than supported.
    #[error("{decimals} decimals is more than the supported {DECIMALS_MAX}")]
    UnsupportedDecimals {
        /// The decimals asked for.
        decimals: u8,
    },
    /// The text is not a plain dollar amount with at most 6 decimals.
    #[error("`{input}` is not a dollar amount such as `1.00` or `0.001`: {source}")]
    Invalid {
        /// The offending input, shortened.
        input: String,
        /// Why it did not parse.
        source: AmountError,
    },
}

/// `10^exponent`, for exponents up to [`DECIMALS_MAX`].
fn pow10(exponent: u8) -> Option<u128> {
    10u128.checked_pow(u32::from(exponent))
}

/// Converts `atomic` units of a USD stablecoin with `decimals` decimals to usd micros.
///
/// Exact for tokens with up to 6 decimals (fewer decimals multiply). With more decimals, a
/// remainder below one micro rounds **up**: 1 atomic unit of an 18-decimal token is 1 micro, so
/// a limit is never exceeded through rounding.
pub fn usd_micros(atomic: Amount, decimals: u8) -> Result<Amount, UsdError> {
    if decimals > DECIMALS_MAX {
        return Err(UsdError::UnsupportedDecimals { decimals });
    }
    if let Some(shift) = USD_DECIMALS.checked_sub(decimals) {
        let factor = pow10(shift).ok_or(UsdError::UnsupportedDecimals { decimals })?;
        return atomic.checked_mul(factor).map_err(|_| UsdError::Overflow);
    }
    let shift =
        decimals.checked_sub(USD_DECIMALS).ok_or(UsdError::UnsupportedDecimals { decimals })?;
    let divisor = pow10(shift).ok_or(UsdError::UnsupportedDecimals { decimals })?;
    let whole = atomic.atomic().checked_div(divisor).ok_or(UsdError::Overflow)?;
    let remainder = atomic.atomic().checked_rem(divisor).ok_or(UsdError::Overflow)?;
    let micros = if remainder == 0 { Some(whole) } else { whole.checked_add(1) };
    micros.map(Amount::from_atomic).ok_or(UsdError::Overflow)
}

/// Parses a human dollar amount such as `"1.00"`, `"0.01"` or `"100"` into usd micros.
///
/// Plain decimals only: no sign, no `$`, no exponent, no spaces, at most 6 significant decimal
/// places (`"0.0000001"` is refused rather than rounded).
pub fn parse_usd(text: &str) -> Result<Amount, UsdError> {
    Amount::from_decimal_str(text, USD_DECIMALS).map_err(|source| match source {
        AmountError::Overflow => UsdError::Overflow,
        source => UsdError::Invalid { input: text.chars().take(ECHO_CHARS_MAX).collect(), source },
    })
}

/// The largest spending limit or session budget the API accepts, in usd micros:
/// [`awx_types::API_WHOLE_UNITS_MAX`] dollars ($1,000,000,000), far inside the `numeric(30,6)`
/// columns that hold limits and budgets. Stored values are read without it.
pub fn usd_api_max() -> Amount {
    Amount::api_max(USD_DECIMALS)
}

/// Formats usd micros as dollars without the sign: at least two decimals, trailing zeros beyond
/// them trimmed (`"1.00"`, `"0.10"`, `"0.002"`, `"0.000001"`).
pub fn format_usd(micros: Amount) -> String {
    // Six decimals are always supported, so the fallback is never taken.
    micros.to_decimal_string(USD_DECIMALS).unwrap_or_else(|_| format!("{micros} micros"))
}

/// `$` and [`format_usd`], for messages.
pub(crate) fn dollars(micros: Amount) -> String {
    format!("${}", format_usd(micros))
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::arithmetic_side_effects,
        reason = "tests fail by panicking and compute expectations with plain arithmetic"
    )]

    use super::*;

    fn amount(atomic: u128) -> Amount {
        Amount::from_atomic(atomic)
    }

    #[test]
    fn six_decimals_are_exact() {
        assert_eq!(usd_micros(amount(1_234_567), 6), Ok(amount(1_234_567)));
        assert_eq!(usd_micros(amount(0), 6), Ok(amount(0)));
        assert_eq!(usd_micros(amount(u128::MAX), 6), Ok(amount(u128::MAX)));
    }

    #[test]
    fn fewer_decimals_multiply() {
        assert_eq!(usd_micros(amount(150), 2), Ok(amount(1_500_000)));
        assert_eq!(usd_micros(amount(3), 0), Ok(amount(3_000_000)));
        assert_eq!(usd_micros(amount(7), 5), Ok(amount(70)));
        assert_eq!(usd_micros(amount(u128::MAX), 5), Err(UsdError::Overflow));
        assert_eq!(usd_micros(amount(u128::MAX / 1_000_000), 0).unwrap().atomic() % 1_000_000, 0);
        assert_eq!(usd_micros(amount(u128::MAX / 1_000_000 + 1), 0), Err(UsdError::Overflow));
    }

    #[test]
    fn more_decimals_round_up() {
        let one_dollar_18 = 1_000_000_000_000_000_000u128;
        assert_eq!(usd_micros(amount(one_dollar_18), 18), Ok(amount(1_000_000)));
        assert_eq!(usd_micros(amount(one_dollar_18 + 1), 18), Ok(amount(1_000_001)));
        assert_eq!(usd_micros(amount(one_dollar_18 - 1), 18), Ok(amount(1_000_000)));
        assert_eq!(usd_micros(amount(1), 18), Ok(amount(1)));
        assert_eq!(usd_micros(amount(0), 18), Ok(amount(0)));
        assert_eq!(usd_micros(amount(999_999_999_999), 18), Ok(amount(1)));
        assert_eq!(usd_micros(amount(1_000_000_000_001), 18), Ok(amount(2)));
        assert_eq!(usd_micros(amount(10), 7), Ok(amount(1)));
        assert_eq!(usd_micros(amount(11), 7), Ok(amount(2)));
        assert_eq!(usd_micros(amount(u128::MAX), 38), Ok(amount(3_402_824)));
        assert_eq!(usd_micros(amount(u128::MAX), 7), Ok(amount(u128::MAX / 10 + 1)));
    }

    #[test]
    fn unsupported_decimals_are_refused() {
        assert_eq!(usd_micros(amount(1), 39), Err(UsdError::UnsupportedDecimals { decimals: 39 }));
        assert_eq!(
            usd_micros(amount(1), u8::MAX),
            Err(UsdError::UnsupportedDecimals { decimals: u8::MAX })
        );
    }

    #[test]
    fn parses_dollars() {
        assert_eq!(parse_usd("1.00"), Ok(amount(1_000_000)));
        assert_eq!(parse_usd("0.01"), Ok(amount(10_000)));
        assert_eq!(parse_usd("100"), Ok(amount(100_000_000)));
        assert_eq!(parse_usd("0.000001"), Ok(amount(1)));
        assert_eq!(parse_usd("0"), Ok(amount(0)));
        for bad in ["", "-1", "+1", "$1", "1e3", " 1", "1 ", ".5", "5.", "0.0000001", "1,00", "abc"]
        {
            assert!(
                matches!(parse_usd(bad), Err(UsdError::Invalid { .. })),
                "{bad:?} gave {:?}",
                parse_usd(bad)
            );
        }
        assert_eq!(parse_usd("340282366920938463463374607431768211455"), Err(UsdError::Overflow));
        let message = parse_usd("0.0000001").unwrap_err().to_string();
        assert!(message.contains("`0.0000001`"), "{message}");
    }

    #[test]
    fn formats_dollars() {
        assert_eq!(format_usd(amount(1_000_000)), "1.00");
        assert_eq!(format_usd(amount(2_000)), "0.002");
        assert_eq!(format_usd(amount(100_000)), "0.10");
        assert_eq!(format_usd(amount(1)), "0.000001");
        assert_eq!(format_usd(amount(0)), "0.00");
        assert_eq!(format_usd(amount(123_450_000)), "123.45");
        assert_eq!(dollars(amount(500_000)), "$0.50");
        for micros in [0u128, 1, 10, 999_999, 1_000_000, 123_456_789] {
            assert_eq!(parse_usd(&format_usd(amount(micros))), Ok(amount(micros)));
        }
    }
}
