//! Fuzzes the challenge reader, `awx_x402::read_challenge`, with the built-in token registry:
//! a 402 response's `PAYMENT-REQUIRED` header (v2) or, without one, its body (v1, or a v2
//! seed-style body).
//!
//! Input: one mode byte, then the rest. Mode `'0'` (any byte = 0 mod 3): no header, the rest is
//! the body. Mode `'1'`: the rest is the JSON of a `PAYMENT-REQUIRED` header, sent as padded
//! base64, with a body of `{}`. Mode `'2'`: the rest is the header value as sent.
//!
//! Properties:
//! - no panic;
//! - a challenge read is strict v2 (`x402Version` 2) with at least one offer; a challenge from a
//!   header is version 2; a v1 challenge is never lenient and names its networks in CAIP-2;
//! - the strict form is read back exactly: `PAYMENT-REQUIRED` holding the challenge read decodes
//!   (`header::decode_payment_required`) to the same challenge;
//! - the reader is idempotent on v2: reading that header again with `read_challenge`, or the
//!   same JSON as a body, gives the same challenge, and it is no longer lenient;
//! - the lenient reader accepts whatever the strict decoder accepts: a header that
//!   `decode_payment_required` reads with at least one offer is a challenge, and, when nothing
//!   was converted from the seed-style form, the same one.

#![no_main]

use awx_x402::header::{self, HEADER_BYTES_MAX};
use awx_x402::{Challenge, Network, TokenRegistry, read_challenge};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let registry = TokenRegistry::builtin();
    match mode % 3 {
        0 => check(None, rest, &registry),
        1 => check(Some(&STANDARD.encode(rest)), b"{}", &registry),
        _ => {
            if let Ok(text) = std::str::from_utf8(rest) {
                check(Some(text), b"", &registry);
            }
        }
    }
});

fn check(header_value: Option<&str>, body: &[u8], registry: &TokenRegistry) {
    let read = read_challenge(header_value, body, registry);

    if let Some(value) = header_value {
        // The lenient reader accepts what the strict decoder accepts.
        if let Ok(strict) = header::decode_payment_required(value)
            && !strict.accepts.is_empty()
        {
            let challenge = read.as_ref().expect("a strict PAYMENT-REQUIRED was refused");
            if !challenge.lenient {
                assert_eq!(challenge.payment_required, strict, "the readers disagree");
            }
        }
    }

    let Ok(challenge) = read else { return };
    let Challenge { x402_version, payment_required, lenient } = &challenge;
    assert_eq!(payment_required.x402_version, 2, "not strict v2");
    assert!(!payment_required.accepts.is_empty(), "a challenge without offers");
    match x402_version {
        1 => {
            assert!(header_value.is_none(), "a v1 challenge from a header");
            assert!(!lenient, "a v1 challenge is never seed-style");
            for offer in &payment_required.accepts {
                let network = Network::parse_caip2(&offer.network).expect("a v1 network in CAIP-2");
                assert_eq!(network.as_str(), offer.network);
            }
        }
        2 => {}
        other => panic!("version {other}"),
    }

    // The strict form is read back exactly.
    let encoded = header::encode(payment_required).expect("a challenge encodes");
    if encoded.len() > HEADER_BYTES_MAX {
        return;
    }
    assert_eq!(header::decode_payment_required(&encoded).as_ref(), Ok(payment_required));

    if *x402_version == 2 {
        // Idempotent: the strict form is its own reading, from a header or a body.
        let expected = Challenge {
            x402_version: 2,
            payment_required: payment_required.clone(),
            lenient: false,
        };
        assert_eq!(read_challenge(Some(&encoded), b"", registry), Ok(expected.clone()));
        let body = serde_json::to_vec(payment_required).expect("serializes");
        assert_eq!(read_challenge(None, &body, registry), Ok(expected));
    }
}
