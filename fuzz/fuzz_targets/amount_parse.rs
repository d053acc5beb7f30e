//! Fuzzes amount parsing in `awx_types`: `Amount::parse_atomic` and `Amount::from_decimal_str`,
//! against an independent oracle (the standard library's `u128` parser on the digits), and
//! the round trips through `Display` and `to_decimal_string`.
//!
//! Input: one byte for the decimals (`byte % 40`, so 0..=38, the supported range, and 39, one
//! past it), then the text (invalid UTF-8 replaced, so multi-byte characters reach the parser).
//! When the text is at least 16 bytes long, its first 16 bytes are also an amount to format.
//!
//! Properties:
//! - no panic;
//! - `parse_atomic` accepts exactly the non-empty all-digit strings whose value fits in 128
//!   bits, with that value; an all-digit string too big is `Overflow`, an empty one `Empty`;
//! - `from_decimal_str(text, decimals)` accepts exactly `whole[.fraction]` (both non-empty, all
//!   digits, digits below the smallest unit all zero) whose value `whole * 10^decimals +
//!   fraction` fits in 128 bits, with that value; decimals above 38 are `UnsupportedDecimals`;
//! - round trips: `parse_atomic(a.to_string()) == a` and
//!   `from_decimal_str(a.to_decimal_string(d), d) == a` for every amount read or made, and
//!   `to_decimal_string` writes `whole.fraction` with between min(2, d) and d fraction digits
//!   and no trailing zero past the first two.

#![no_main]

use awx_types::{Amount, AmountError, DECIMALS_MAX};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&decimals_byte, rest)) = data.split_first() else { return };
    let decimals = decimals_byte % 40;
    let text = String::from_utf8_lossy(rest);

    let atomic = Amount::parse_atomic(&text);
    check_atomic(&text, &atomic);
    if let Ok(amount) = atomic {
        round_trips(amount, decimals);
    }

    let decimal = Amount::from_decimal_str(&text, decimals);
    check_decimal(&text, decimals, &decimal);
    if let Ok(amount) = decimal {
        round_trips(amount, decimals);
    }

    if let Some(bytes) = rest.get(..16) {
        let bytes: [u8; 16] = bytes.try_into().expect("16 bytes");
        round_trips(Amount::from_atomic(u128::from_le_bytes(bytes)), decimals);
    }
});

fn all_digits(text: &str) -> bool {
    text.bytes().all(|b| b.is_ascii_digit())
}

/// The oracle for atomic strings: the standard library's parser, on digits only (it would
/// also take a leading `+`).
fn check_atomic(text: &str, parsed: &Result<Amount, AmountError>) {
    if text.is_empty() {
        assert_eq!(parsed, &Err(AmountError::Empty));
    } else if all_digits(text) {
        match text.parse::<u128>() {
            Ok(value) => assert_eq!(parsed, &Ok(Amount::from_atomic(value)), "{text:?}"),
            Err(_) => assert_eq!(parsed, &Err(AmountError::Overflow), "{text:?}"),
        }
    } else {
        // A non-digit is refused; an overflow in the digits before it may be named first.
        assert!(
            matches!(parsed, Err(AmountError::Malformed { .. } | AmountError::Overflow)),
            "{text:?} gave {parsed:?}"
        );
    }
}

/// The oracle for decimal strings: split at the first `.`, check the syntax, and read the
/// digits `whole ++ fraction padded to decimals` with the standard library.
fn check_decimal(text: &str, decimals: u8, parsed: &Result<Amount, AmountError>) {
    if decimals > DECIMALS_MAX {
        assert_eq!(parsed, &Err(AmountError::UnsupportedDecimals { decimals }));
        return;
    }
    if text.is_empty() {
        assert_eq!(parsed, &Err(AmountError::Empty));
        return;
    }
    let (whole, fraction) = match text.split_once('.') {
        Some((whole, fraction)) => (whole, fraction),
        None => (text, ""),
    };
    let syntax_ok = !whole.is_empty()
        && all_digits(whole)
        && all_digits(fraction)
        && !(text.contains('.') && fraction.is_empty());
    let whole_fits = whole.parse::<u128>().is_ok();
    if !syntax_ok {
        // Refused; an overflow of the whole part may be named first.
        assert!(
            matches!(parsed, Err(AmountError::Malformed { .. } | AmountError::Overflow)),
            "{text:?} gave {parsed:?}"
        );
        if matches!(parsed, Err(AmountError::Overflow)) {
            let leading = whole.bytes().take_while(u8::is_ascii_digit).count();
            assert!(
                whole[..leading].parse::<u128>().is_err(),
                "{text:?}: Overflow of a small whole"
            );
        }
        return;
    }
    let cut = fraction.len().min(usize::from(decimals));
    let (significant, below_unit) = fraction.split_at(cut);
    if !below_unit.bytes().all(|b| b == b'0') {
        let expected = if whole_fits {
            matches!(parsed, Err(AmountError::TooPrecise { decimals: d, .. }) if *d == decimals)
        } else {
            parsed == &Err(AmountError::Overflow)
        };
        assert!(expected, "{text:?} with {decimals} decimals gave {parsed:?}");
        return;
    }
    let padding = "0".repeat(usize::from(decimals) - significant.len());
    let digits = format!("{whole}{significant}{padding}");
    match digits.parse::<u128>() {
        Ok(value) => assert_eq!(parsed, &Ok(Amount::from_atomic(value)), "{text:?} {decimals}"),
        Err(_) => assert_eq!(parsed, &Err(AmountError::Overflow), "{text:?} {decimals}"),
    }
}

/// Every amount survives both string forms.
fn round_trips(amount: Amount, decimals: u8) {
    let atomic_text = amount.to_string();
    assert_eq!(atomic_text, amount.atomic().to_string());
    assert_eq!(Amount::parse_atomic(&atomic_text), Ok(amount));

    let formatted = amount.to_decimal_string(decimals);
    if decimals > DECIMALS_MAX {
        assert_eq!(formatted, Err(AmountError::UnsupportedDecimals { decimals }));
        return;
    }
    let text = formatted.expect("formats with supported decimals");
    assert_eq!(Amount::from_decimal_str(&text, decimals), Ok(amount), "{text:?} {decimals}");
    let width = usize::from(decimals);
    match text.split_once('.') {
        None => assert_eq!(width, 0, "{text:?} has no fraction with {decimals} decimals"),
        Some((whole, fraction)) => {
            assert!(width > 0, "{text:?} has a fraction with 0 decimals");
            assert!(!whole.is_empty() && all_digits(whole) && all_digits(fraction), "{text:?}");
            assert!(whole == "0" || !whole.starts_with('0'), "{text:?}: leading zero");
            assert!((width.min(2)..=width).contains(&fraction.len()), "{text:?} {decimals}");
            assert!(fraction.len() <= 2 || !fraction.ends_with('0'), "{text:?}: trailing zero");
        }
    }
}
