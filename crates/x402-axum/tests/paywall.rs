//! The paywall end to end: a real app on a loopback port behind `PaymentLayer`, a real
//! facilitator over HTTP that checks signatures, and payments signed with a random key.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

mod support;

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use alloy_signer_local::PrivateKeySigner;
use awx_types::AmountError;
use awx_x402::{
    Address, ErrorReason, FacilitatorRequest, Network, PaymentRequired, SettleResponse, TokenInfo,
    U256,
};
use awx_x402_axum::{
    ConfigError, FacilitatorConfig, FacilitatorConfigError, PaymentLayer, PaymentOffer, Price,
    SupportError, payment_middleware,
};
use axum::Router;
use serde_json::{Value, json};
use support::{
    SettleMode, TX_HASH, TestApp, TestFacilitator, VerifyMode, checksum, encode, paid_routes,
    payment_required, payment_response, sign_payment,
};

const PAY_TO: Address = Address::repeat_byte(0x42);
const TEST_USD: Address = Address::repeat_byte(0x5f);
const BASE_SEPOLIA_USDC: &str = "0x036CbD53842c5426634e7929541eC2318f3dCF7e";

/// Two offers: 1 cent of USDC on Base Sepolia (money), and 1000 atomic units of a custom chain's
/// token given by address and EIP-712 domain.
fn two_offers(facilitator: &TestFacilitator) -> PaymentLayer {
    PaymentLayer::builder()
        .offer(PaymentOffer::new("$0.01", PAY_TO))
        .offer(
            PaymentOffer::new(Price::atomic(1_000, TEST_USD, "TestUSD", "1"), PAY_TO)
                .network(Network::evm(31_337))
                .max_timeout_seconds(60),
        )
        .description("Weather for paying agents")
        .mime_type("application/json")
        .facilitator(FacilitatorConfig::new(&facilitator.url))
        .build()
        .unwrap()
}

async fn setup() -> (TestFacilitator, TestApp) {
    let facilitator = TestFacilitator::start(&["eip155:84532", "eip155:31337"]).await;
    let app = TestApp::start(two_offers(&facilitator)).await;
    (facilitator, app)
}

fn expected_challenge(url: &str, error: &str) -> PaymentRequired {
    serde_json::from_value(json!({
        "x402Version": 2,
        "error": error,
        "resource": {
            "url": url,
            "description": "Weather for paying agents",
            "mimeType": "application/json"
        },
        "accepts": [
            {
                "scheme": "exact", "network": "eip155:84532", "amount": "10000",
                "asset": BASE_SEPOLIA_USDC, "payTo": checksum(PAY_TO), "maxTimeoutSeconds": 300,
                "extra": {"name": "USDC", "version": "2"}
            },
            {
                "scheme": "exact", "network": "eip155:31337", "amount": "1000",
                "asset": checksum(TEST_USD), "payTo": checksum(PAY_TO), "maxTimeoutSeconds": 60,
                "extra": {"name": "TestUSD", "version": "1"}
            }
        ]
    }))
    .unwrap()
}

async fn assert_challenge_response(response: reqwest::Response, expected: &PaymentRequired) {
    assert_eq!(response.status(), 402);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.headers()["cache-control"], "no-store");
    let challenge = payment_required(&response);
    assert_eq!(&challenge, expected);
    assert_eq!(response.text().await.unwrap(), "{}");
}

#[tokio::test]
async fn an_unpaid_request_gets_a_402_challenge() {
    let (facilitator, app) = setup().await;
    let response = app.get("/weather?city=paris", None).await;
    let url = format!("{}/weather?city=paris", app.url);
    // The header is padded standard base64, as the official SDKs emit it.
    let raw = response.headers()["payment-required"].to_str().unwrap().to_owned();
    assert!(raw.len() % 4 == 0 && !raw.contains(['-', '_']));
    assert_challenge_response(response, &expected_challenge(&url, "Payment required")).await;
    assert_eq!(app.runs(), 0);
    assert!(facilitator.calls().is_empty());
}

#[tokio::test]
async fn the_one_liner_charges_usdc_on_base_sepolia() {
    let runs = Arc::new(AtomicUsize::new(0));
    let paid = payment_middleware("$0.25", PAY_TO).unwrap();
    let app = TestApp::serve(paid_routes(Arc::clone(&runs)).route_layer(paid), runs).await;
    let challenge = app.challenge("/weather").await;
    let expected: PaymentRequired = serde_json::from_value(json!({
        "x402Version": 2,
        "error": "Payment required",
        "resource": {"url": format!("{}/weather", app.url), "description": "", "mimeType": ""},
        "accepts": [{
            "scheme": "exact", "network": "eip155:84532", "amount": "250000",
            "asset": BASE_SEPOLIA_USDC, "payTo": checksum(PAY_TO), "maxTimeoutSeconds": 300,
            "extra": {"name": "USDC", "version": "2"}
        }]
    }))
    .unwrap();
    assert_eq!(challenge, expected);
    assert_eq!(app.runs(), 0);
}

#[tokio::test]
async fn the_resource_url_uses_the_configured_base_and_the_original_path() {
    let facilitator = TestFacilitator::start(&["eip155:84532"]).await;
    let layer = PaymentLayer::builder()
        .price("$0.01", PAY_TO)
        .resource_base_url("https://api.example.com/")
        .facilitator(FacilitatorConfig::new(&facilitator.url))
        .build()
        .unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let app = Router::new().nest("/v1", paid_routes(Arc::clone(&runs)).layer(layer));
    let app = TestApp::serve(app, runs).await;
    let challenge = app.challenge("/v1/weather?units=metric").await;
    assert_eq!(challenge.resource.url, "https://api.example.com/v1/weather?units=metric");
}

#[tokio::test]
async fn a_valid_payment_is_verified_served_and_settled_once() {
    let (facilitator, app) = setup().await;
    let challenge = app.challenge("/weather").await;
    let signer = PrivateKeySigner::random();
    // The second offer: the custom chain's token.
    let offer = &challenge.accepts[1];
    let payment = sign_payment(&challenge, offer, &signer, |_| {});

    let response = app.get("/weather", Some(&encode(&payment))).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["access-control-expose-headers"], "PAYMENT-RESPONSE");
    assert!(response.headers().get("payment-required").is_none());
    let receipt = payment_response(&response);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"weather": "sunny", "payer": checksum(signer.address()), "amount": "1000"})
    );
    assert_eq!(app.runs(), 1);

    let calls = facilitator.calls();
    assert_eq!(facilitator.endpoints(), ["verify", "settle"]);
    let expected_request = serde_json::to_value(FacilitatorRequest::v2(&payment, offer)).unwrap();
    for call in &calls {
        assert_eq!(call.body, expected_request, "{}", call.endpoint);
        assert_eq!(call.body["x402Version"], 2);
        assert_eq!(call.body["paymentRequirements"], serde_json::to_value(offer).unwrap());
        assert_eq!(call.status, 200);
    }
    let settled: SettleResponse = serde_json::from_str(&calls[1].answer).unwrap();
    assert_eq!(receipt, settled);
    assert!(receipt.success);
    assert_eq!(receipt.transaction, TX_HASH);
    assert_eq!(receipt.network, "eip155:31337");
    assert_eq!(receipt.payer, Some(checksum(signer.address())));

    // The money offer works the same way.
    facilitator.clear();
    let payment = sign_payment(&challenge, &challenge.accepts[0], &signer, |_| {});
    let response = app.get("/weather", Some(&encode(&payment))).await;
    assert_eq!(response.status(), 200);
    assert_eq!(payment_response(&response).network, "eip155:84532");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["amount"], "10000");
    assert_eq!(facilitator.endpoints(), ["verify", "settle"]);
    assert_eq!(
        facilitator.calls()[1].body["paymentRequirements"],
        serde_json::to_value(&challenge.accepts[0]).unwrap()
    );
}

#[tokio::test]
async fn a_failing_handler_is_returned_as_is_and_nothing_is_settled() {
    let (facilitator, app) = setup().await;
    let challenge = app.challenge("/broken").await;
    let payment =
        sign_payment(&challenge, &challenge.accepts[0], &PrivateKeySigner::random(), |_| {});
    let response = app.get("/broken", Some(&encode(&payment))).await;
    assert_eq!(response.status(), 500);
    assert_eq!(response.headers()["x-handler"], "broken");
    assert!(response.headers().get("payment-response").is_none());
    assert!(response.headers().get("payment-required").is_none());
    assert_eq!(response.text().await.unwrap(), "boom");
    assert_eq!(app.runs(), 1);
    assert_eq!(facilitator.endpoints(), ["verify"]);
}

#[tokio::test]
async fn a_failed_settlement_is_a_402_with_the_failed_payment_response() {
    let (facilitator, app) = setup().await;
    let challenge = app.challenge("/weather").await;
    let signer = PrivateKeySigner::random();
    let offer = &challenge.accepts[0];

    for mode in [SettleMode::Fail, SettleMode::FailWithError, SettleMode::ServerError] {
        facilitator.clear();
        facilitator.set_settle(mode);
        let runs_before = app.runs();
        let payment = sign_payment(&challenge, offer, &signer, |_| {});
        let response = app.get("/weather", Some(&encode(&payment))).await;
        assert_eq!(response.status(), 402, "{mode:?}");
        assert_eq!(response.headers()["content-type"], "application/json");
        assert_eq!(response.headers()["cache-control"], "no-store");
        assert!(response.headers().get("payment-required").is_none(), "{mode:?}");
        let receipt = payment_response(&response);
        assert_eq!(response.text().await.unwrap(), "{}", "{mode:?}: not the handler's body");
        assert_eq!(app.runs(), runs_before + 1, "{mode:?}: the handler ran");
        assert_eq!(facilitator.endpoints(), ["verify", "settle"], "{mode:?}");

        assert!(!receipt.success);
        assert_eq!(receipt.network, "eip155:84532");
        assert_eq!(receipt.payer, Some(checksum(signer.address())));
        assert_eq!(receipt.transaction, "");
        match mode {
            SettleMode::Fail | SettleMode::FailWithError => {
                let answered: SettleResponse =
                    serde_json::from_str(&facilitator.calls()[1].answer).unwrap();
                assert_eq!(receipt, answered, "{mode:?}: the facilitator's answer, as it is");
                assert_eq!(receipt.error_reason, Some(ErrorReason::InsufficientFunds));
            }
            SettleMode::ServerError => {
                assert_eq!(receipt.error_reason, Some(ErrorReason::UnexpectedSettleError));
                assert_eq!(
                    receipt.error_message.as_deref(),
                    Some("facilitator settle failed with HTTP 500 Internal Server Error")
                );
            }
            SettleMode::Succeed => unreachable!(),
        }
    }
}

#[tokio::test]
async fn an_invalid_signature_is_refused_with_the_verify_reason() {
    let (facilitator, app) = setup().await;
    let challenge = app.challenge("/weather").await;
    let url = format!("{}/weather", app.url);
    let payer = PrivateKeySigner::random();
    let forger = PrivateKeySigner::random();
    let offer = &challenge.accepts[0];

    // Signed by someone else on the payer's behalf.
    let forged = sign_payment(&challenge, offer, &forger, |auth| auth.from = payer.address());
    let response = app.get("/weather", Some(&encode(&forged))).await;
    assert_challenge_response(response, &expected_challenge(&url, "invalid_exact_evm_signature"))
        .await;

    // Signed for too short a time.
    let expiring = sign_payment(&challenge, offer, &payer, |auth| {
        auth.valid_before = U256::from(support::now() + 2);
    });
    let response = app.get("/weather", Some(&encode(&expiring))).await;
    let expected = expected_challenge(&url, "invalid_exact_evm_payload_authorization_valid_before");
    assert_challenge_response(response, &expected).await;

    assert_eq!(app.runs(), 0);
    assert_eq!(facilitator.endpoints(), ["verify", "verify"]);
}

#[tokio::test]
async fn a_malformed_payment_header_is_a_400() {
    use base64::Engine as _;
    let (facilitator, app) = setup().await;
    let challenge = app.challenge("/weather").await;
    let good = sign_payment(&challenge, &challenge.accepts[0], &PrivateKeySigner::random(), |_| {});
    let mut without_accepted = serde_json::to_value(&good).unwrap();
    without_accepted.as_object_mut().unwrap().remove("accepted");
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let url_safe = base64::engine::general_purpose::URL_SAFE.encode(
        serde_json::to_vec(&json!({"x402Version": 2, "text": "\u{3fe}\u{3ff}>>>???"})).unwrap(),
    );
    assert!(url_safe.contains(['-', '_']));
    let cases = [
        ("not base64", "%%% not base64 %%%".to_owned()),
        ("url-safe base64", url_safe),
        ("not JSON", b64(b"weather please")),
        (
            "v1 payload",
            b64(br#"{"x402Version":1,"scheme":"exact","network":"base-sepolia","payload":{}}"#),
        ),
        ("unknown version", b64(br#"{"x402Version":3}"#)),
        ("no accepted", b64(&serde_json::to_vec(&without_accepted).unwrap())),
        ("too large", "A".repeat(40 * 1024)),
    ];
    for (case, header) in cases {
        let response = app.get("/weather", Some(&header)).await;
        assert_eq!(response.status(), 400, "{case}");
        assert_eq!(response.headers()["content-type"], "application/json", "{case}");
        let body: Value = response.json().await.unwrap();
        let message = body["error"].as_str().unwrap();
        assert!(message.starts_with("invalid PAYMENT-SIGNATURE"), "{case}: {message}");
    }
    assert_eq!(app.runs(), 0);
    assert!(facilitator.calls().is_empty());
}

#[tokio::test]
async fn an_accepted_offer_that_differs_is_not_matched() {
    let (facilitator, app) = setup().await;
    let challenge = app.challenge("/weather").await;
    let url = format!("{}/weather", app.url);
    let signer = PrivateKeySigner::random();

    let mut cheaper = challenge.accepts[0].clone();
    cheaper.amount = "1".into();
    let underpaid = sign_payment(&challenge, &cheaper, &signer, |_| {});
    let response = app.get("/weather", Some(&encode(&underpaid))).await;
    let expected = expected_challenge(&url, "No matching payment requirements");
    assert_challenge_response(response, &expected).await;

    let mut elsewhere = challenge.accepts[0].clone();
    elsewhere.pay_to = checksum(signer.address());
    let redirected = sign_payment(&challenge, &elsewhere, &signer, |_| {});
    let response = app.get("/weather", Some(&encode(&redirected))).await;
    assert_challenge_response(response, &expected).await;

    // A client may add to `extra`, never change it.
    let mut grown = challenge.accepts[0].clone();
    grown.extra.as_mut().unwrap().insert("note".into(), json!("added by the client"));
    let with_more_extra = sign_payment(&challenge, &grown, &signer, |_| {});
    let response = app.get("/weather", Some(&encode(&with_more_extra))).await;
    assert_eq!(response.status(), 200);

    assert_eq!(app.runs(), 1);
    assert_eq!(facilitator.endpoints(), ["verify", "settle"]);
    assert_eq!(
        facilitator.calls()[0].body["paymentRequirements"],
        serde_json::to_value(&challenge.accepts[0]).unwrap(),
        "the server's offer is verified, not the client's copy"
    );
}

#[tokio::test]
async fn the_api_key_and_extra_headers_reach_the_facilitator() {
    let facilitator = TestFacilitator::start(&["eip155:84532"]).await;
    let key = "awx_0191b2c3d4e5f6a7b8c9d0e1f2a3b4c5_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
    let layer = PaymentLayer::builder()
        .price("$0.01", PAY_TO)
        .facilitator(
            FacilitatorConfig::new(format!("{}/", facilitator.url))
                .api_key(key)
                .header("X-Tenant", "weather-co"),
        )
        .build()
        .unwrap();
    assert!(!format!("{layer:?}").contains(key), "the key is not in Debug output");
    layer.check_facilitator().await.unwrap();
    let app = TestApp::start(layer).await;
    let challenge = app.challenge("/weather").await;
    let payment =
        sign_payment(&challenge, &challenge.accepts[0], &PrivateKeySigner::random(), |_| {});
    let response = app.get("/weather", Some(&encode(&payment))).await;
    assert_eq!(response.status(), 200);

    let calls = facilitator.calls();
    assert_eq!(facilitator.endpoints(), ["supported", "verify", "settle"]);
    for call in calls {
        assert_eq!(call.headers["x-api-key"], key, "{}", call.endpoint);
        assert_eq!(call.headers["x-tenant"], "weather-co", "{}", call.endpoint);
    }
}

#[tokio::test]
async fn facilitator_failures_during_verify_refuse_without_running_the_handler() {
    let (facilitator, app) = setup().await;
    let challenge = app.challenge("/weather").await;
    let url = format!("{}/weather", app.url);
    let signer = PrivateKeySigner::random();
    let pay = || encode(&sign_payment(&challenge, &challenge.accepts[0], &signer, |_| {}));

    facilitator.set_verify(VerifyMode::ServerError);
    let response = app.get("/weather", Some(&pay())).await;
    let expected =
        expected_challenge(&url, "facilitator verify failed with HTTP 500 Internal Server Error");
    assert_challenge_response(response, &expected).await;

    // A non-2xx answer that still says `isValid: false` is read as such.
    facilitator.set_verify(VerifyMode::RefuseWithError);
    let response = app.get("/weather", Some(&pay())).await;
    let expected = expected_challenge(&url, "invalid_exact_evm_nonce_already_used");
    assert_challenge_response(response, &expected).await;

    // A 2xx answer that is not a VerifyResponse is a bad gateway, as in @x402/express.
    facilitator.set_verify(VerifyMode::Malformed);
    let response = app.get("/weather", Some(&pay())).await;
    assert_eq!(response.status(), 502);
    let body: Value = response.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().starts_with("facilitator verify answer is malformed"));
    assert_eq!(app.runs(), 0);
    assert_eq!(facilitator.endpoints(), ["verify", "verify", "verify"]);

    // A facilitator nobody listens on.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let unreachable = PaymentLayer::builder()
        .price("$0.01", PAY_TO)
        .facilitator(FacilitatorConfig::new(closed_url))
        .build()
        .unwrap();
    let lonely = TestApp::start(unreachable).await;
    let challenge = lonely.challenge("/weather").await;
    let payment = sign_payment(&challenge, &challenge.accepts[0], &signer, |_| {});
    let response = lonely.get("/weather", Some(&encode(&payment))).await;
    assert_eq!(response.status(), 402);
    assert_eq!(
        payment_required(&response).error.as_deref(),
        Some("facilitator verify request failed")
    );
    assert_eq!(lonely.runs(), 0);
}

#[tokio::test]
async fn nested_paywalls_settle_once() {
    let facilitator = TestFacilitator::start(&["eip155:84532"]).await;
    let layer = |price: &str| {
        PaymentLayer::builder()
            .price(price, PAY_TO)
            .facilitator(FacilitatorConfig::new(&facilitator.url))
            .build()
            .unwrap()
    };
    // The same price on the router and on the route: one payment, settled once.
    let runs = Arc::new(AtomicUsize::new(0));
    let app = paid_routes(Arc::clone(&runs)).route_layer(layer("$0.01")).layer(layer("$0.01"));
    let app = TestApp::serve(app, runs).await;
    let challenge = app.challenge("/weather").await;
    let signer = PrivateKeySigner::random();
    let payment = sign_payment(&challenge, &challenge.accepts[0], &signer, |_| {});
    let response = app.get("/weather", Some(&encode(&payment))).await;
    assert_eq!(response.status(), 200);
    assert!(payment_response(&response).success);
    assert_eq!(facilitator.endpoints(), ["verify", "settle"]);

    // A dearer inner price is not paid by the outer payment, and nothing is settled.
    facilitator.clear();
    let runs = Arc::new(AtomicUsize::new(0));
    let app = paid_routes(Arc::clone(&runs)).route_layer(layer("$1")).layer(layer("$0.01"));
    let app = TestApp::serve(app, runs).await;
    let payment = sign_payment(&challenge, &challenge.accepts[0], &signer, |_| {});
    let response = app.get("/weather", Some(&encode(&payment))).await;
    assert_eq!(response.status(), 402);
    let refusal = payment_required(&response);
    assert_eq!(refusal.error.as_deref(), Some("No matching payment requirements"));
    assert_eq!(refusal.accepts[0].amount, "1000000");
    assert_eq!(app.runs(), 0);
    assert_eq!(facilitator.endpoints(), ["verify"]);
}

#[tokio::test]
async fn check_facilitator_reads_supported() {
    let facilitator = TestFacilitator::start(&["eip155:84532"]).await;
    let supported = two_offers(&facilitator).check_facilitator().await;
    match supported {
        Err(SupportError::Unsupported { scheme, network }) => {
            assert_eq!((scheme.as_str(), network.as_str()), ("exact", "eip155:31337"));
        }
        other => panic!("unexpected {other:?}"),
    }
    let base_only = PaymentLayer::builder()
        .price("$0.01", PAY_TO)
        .facilitator(FacilitatorConfig::new(&facilitator.url))
        .build()
        .unwrap();
    let answer = base_only.check_facilitator().await.unwrap();
    assert_eq!(answer.kinds.len(), 1);
}

#[test]
fn configuration_errors_are_reported_at_build_time() {
    let dev_chain = Network::evm(31_337);
    let build = |offer: PaymentOffer| {
        PaymentLayer::builder()
            .offer(offer)
            .facilitator(FacilitatorConfig::new("http://127.0.0.1:9"))
            .build()
    };

    let unknown = build(PaymentOffer::new("$0.01", PAY_TO).network(dev_chain.clone())).unwrap_err();
    assert!(
        matches!(
            &unknown,
            ConfigError::UnknownToken { symbol, network }
                if symbol == "USDC" && network == "eip155:31337"
        ),
        "{unknown:?}"
    );
    assert!(unknown.to_string().contains("eip155:31337"), "{unknown}");

    let too_precise = build(PaymentOffer::new("$0.0000001", PAY_TO)).unwrap_err();
    assert!(
        matches!(
            &too_precise,
            ConfigError::Price { source: AmountError::TooPrecise { decimals: 6, .. }, .. }
        ),
        "{too_precise:?}"
    );
    assert!(matches!(payment_middleware("0.1234567", PAY_TO), Err(ConfigError::Price { .. })));
    assert!(matches!(payment_middleware("$-1", PAY_TO), Err(ConfigError::Price { .. })));
    assert!(matches!(payment_middleware("$0.00", PAY_TO), Err(ConfigError::ZeroPrice { .. })));
    assert!(matches!(
        build(PaymentOffer::new("$1", PAY_TO).max_timeout_seconds(0)),
        Err(ConfigError::ZeroTimeout)
    ));
    assert!(matches!(
        PaymentLayer::builder().facilitator(FacilitatorConfig::new("http://127.0.0.1:9")).build(),
        Err(ConfigError::NoOffers)
    ));
    assert!(matches!(
        PaymentLayer::builder()
            .price("$1", PAY_TO)
            .facilitator(FacilitatorConfig::new("not a url"))
            .build(),
        Err(ConfigError::Facilitator(FacilitatorConfigError::Url { .. }))
    ));
    assert!(matches!(
        PaymentLayer::builder()
            .price("$1", PAY_TO)
            .resource_base_url("api.example.com")
            .facilitator(FacilitatorConfig::new("http://127.0.0.1:9"))
            .build(),
        Err(ConfigError::ResourceBaseUrl { .. })
    ));

    // Registering the custom chain's token makes its money prices exact atomic amounts.
    let test_usd = TokenInfo {
        network: dev_chain.clone(),
        address: TEST_USD,
        symbol: "USDC".into(),
        decimals: 6,
        eip712_name: "TestUSD".into(),
        eip712_version: "1".into(),
    };
    let layer = PaymentLayer::builder()
        .offer(PaymentOffer::new("$0.002", PAY_TO).network(dev_chain.clone()))
        .token(test_usd.clone())
        .facilitator(FacilitatorConfig::new("http://127.0.0.1:9"))
        .build()
        .unwrap();
    let offer = &layer.offers()[0];
    assert_eq!(
        (offer.amount.as_str(), offer.asset.as_str()),
        ("2000", checksum(TEST_USD).as_str())
    );
    assert_eq!(offer.domain_names().unwrap().name, "TestUSD");
    // A token clashing with a known one is a configuration error too.
    let clash = TokenInfo { address: Address::repeat_byte(1), ..test_usd.clone() };
    assert!(matches!(
        PaymentLayer::builder()
            .offer(PaymentOffer::new("$0.002", PAY_TO).network(dev_chain))
            .token(test_usd)
            .token(clash)
            .facilitator(FacilitatorConfig::new("http://127.0.0.1:9"))
            .build(),
        Err(ConfigError::Registry(_))
    ));
}
