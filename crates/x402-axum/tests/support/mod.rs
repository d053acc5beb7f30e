//! Test parts: a real x402 facilitator over HTTP that checks payments with `awx_x402`'s offline
//! rules and records every call; a paid app served on a loopback port; payments really signed
//! with a random local key. Everything binds 127.0.0.1:0 and ends with the test's runtime.

#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers fail the test by panicking; not every test uses every helper"
)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use alloy_signer_local::PrivateKeySigner;
use awx_x402::eip3009::random_nonce;
use awx_x402::header;
use awx_x402::{
    Address, Bytes, Eip3009Authorization, Eip3009Payload, ErrorReason, ExactEvmPayload,
    FacilitatorRequest, JsonObject, PaymentPayload, PaymentRequired, PaymentRequirements,
    SettleFailure, SettleResponse, SignatureCheck, SupportedKind, SupportedResponse, TokenDomain,
    U256, VerifyResponse, check_eoa_signature, check_exact_evm,
};
use awx_x402_axum::{PaymentInfo, PaymentLayer};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde_json::{Value, json};

/// The transaction hash the test facilitator reports for every settlement.
pub const TX_HASH: &str = "0xabababababababababababababababababababababababababababababababab";

pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// One call the facilitator received.
#[derive(Debug, Clone)]
pub struct Call {
    /// `verify`, `settle` or `supported`.
    pub endpoint: &'static str,
    /// Every request header.
    pub headers: HeaderMap,
    /// The JSON body (`Null` for `supported`).
    pub body: Value,
    /// What the facilitator answered: status and body.
    pub status: StatusCode,
    pub answer: String,
}

/// How `/verify` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyMode {
    /// Checks the payment for real.
    Check,
    /// HTTP 500 with a text body.
    ServerError,
    /// HTTP 400 with `isValid: false`.
    RefuseWithError,
    /// HTTP 200 with a body that is not a VerifyResponse.
    Malformed,
}

/// How `/settle` answers (after the same checks as verify).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettleMode {
    /// HTTP 200, `success: true`.
    Succeed,
    /// HTTP 200, `success: false`, `insufficient_funds`.
    Fail,
    /// HTTP 400, `success: false`, `insufficient_funds`.
    FailWithError,
    /// HTTP 500 with a text body.
    ServerError,
}

#[derive(Debug)]
struct FacilitatorState {
    calls: Mutex<Vec<Call>>,
    verify: Mutex<VerifyMode>,
    settle: Mutex<SettleMode>,
    networks: Vec<String>,
}

/// A facilitator on a loopback port.
#[derive(Debug, Clone)]
pub struct TestFacilitator {
    pub url: String,
    state: Arc<FacilitatorState>,
}

impl TestFacilitator {
    /// Starts one that supports exact payments on `networks`.
    pub async fn start(networks: &[&str]) -> Self {
        let state = Arc::new(FacilitatorState {
            calls: Mutex::new(Vec::new()),
            verify: Mutex::new(VerifyMode::Check),
            settle: Mutex::new(SettleMode::Succeed),
            networks: networks.iter().map(|network| (*network).to_owned()).collect(),
        });
        let app = Router::new()
            .route("/facilitator/verify", post(verify))
            .route("/facilitator/settle", post(settle))
            .route("/facilitator/supported", get(supported))
            .with_state(Arc::clone(&state));
        let address = serve(app).await;
        Self { url: format!("http://{address}/facilitator"), state }
    }

    pub fn calls(&self) -> Vec<Call> {
        self.state.calls.lock().unwrap().clone()
    }

    pub fn endpoints(&self) -> Vec<&'static str> {
        self.calls().iter().map(|call| call.endpoint).collect()
    }

    pub fn clear(&self) {
        self.state.calls.lock().unwrap().clear();
    }

    pub fn set_verify(&self, mode: VerifyMode) {
        *self.state.verify.lock().unwrap() = mode;
    }

    pub fn set_settle(&self, mode: SettleMode) {
        *self.state.settle.lock().unwrap() = mode;
    }
}

fn record(
    state: &FacilitatorState,
    endpoint: &'static str,
    headers: HeaderMap,
    body: Value,
    status: StatusCode,
    answer: String,
) -> Response {
    state.calls.lock().unwrap().push(Call {
        endpoint,
        headers,
        body,
        status,
        answer: answer.clone(),
    });
    (status, [("content-type", "application/json")], answer).into_response()
}

/// The verify rules: the offline exact-EVM checks and an EOA signature.
fn check(body: &Value) -> VerifyResponse {
    let request: FacilitatorRequest = match serde_json::from_value(body.clone()) {
        Ok(request) => request,
        Err(error) => {
            return VerifyResponse::invalid(ErrorReason::InvalidPayload, error.to_string(), None);
        }
    };
    let normalized = match request.normalize() {
        Ok(normalized) => normalized,
        Err(error) => {
            return VerifyResponse::invalid(ErrorReason::InvalidPayload, error.to_string(), None);
        }
    };
    match check_exact_evm(&normalized.payload, &normalized.requirements, now()) {
        Err(invalid) => VerifyResponse::invalid(
            invalid.reason,
            invalid.message,
            invalid.payer.map(|payer| payer.to_checksum(None)),
        ),
        Ok(checked) => {
            let payer = checked.payer().to_checksum(None);
            match check_eoa_signature(&checked) {
                SignatureCheck::ValidEoa => VerifyResponse::valid(payer),
                SignatureCheck::NotByPayer | SignatureCheck::SmartWallet => {
                    VerifyResponse::invalid(
                        ErrorReason::InvalidExactEvmSignature,
                        "the signature is not the payer's",
                        Some(payer),
                    )
                }
            }
        }
    }
}

async fn verify(
    State(state): State<Arc<FacilitatorState>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let mode = *state.verify.lock().unwrap();
    let (status, answer) = match mode {
        VerifyMode::Check => (StatusCode::OK, serde_json::to_string(&check(&body)).unwrap()),
        VerifyMode::ServerError => (StatusCode::INTERNAL_SERVER_ERROR, "database on fire".into()),
        VerifyMode::RefuseWithError => (
            StatusCode::BAD_REQUEST,
            json!({"isValid": false, "invalidReason": "invalid_exact_evm_nonce_already_used"})
                .to_string(),
        ),
        VerifyMode::Malformed => (StatusCode::OK, json!({"valid": "yes"}).to_string()),
    };
    record(&state, "verify", headers, body, status, answer)
}

async fn settle(
    State(state): State<Arc<FacilitatorState>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let mode = *state.settle.lock().unwrap();
    let verdict = check(&body);
    let network = body["paymentRequirements"]["network"].as_str().unwrap_or_default().to_owned();
    let failed = || SettleFailure {
        reason: ErrorReason::InsufficientFunds,
        message: "balance too low".into(),
        payer: verdict.payer.clone(),
        transaction: String::new(),
        network: network.clone(),
    };
    let (status, answer) = if !verdict.is_valid {
        let invalid = SettleFailure {
            reason: verdict.invalid_reason.clone().unwrap(),
            message: String::new(),
            ..failed()
        };
        (StatusCode::OK, SettleResponse::failed(invalid))
    } else {
        match mode {
            SettleMode::Succeed => (
                StatusCode::OK,
                SettleResponse::settled(TX_HASH, network.clone(), verdict.payer.clone().unwrap()),
            ),
            SettleMode::Fail => (StatusCode::OK, SettleResponse::failed(failed())),
            SettleMode::FailWithError => {
                (StatusCode::BAD_REQUEST, SettleResponse::failed(failed()))
            }
            SettleMode::ServerError => {
                return record(
                    &state,
                    "settle",
                    headers,
                    body,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "chain unreachable".into(),
                );
            }
        }
    };
    let answer = serde_json::to_string(&answer).unwrap();
    record(&state, "settle", headers, body, status, answer)
}

async fn supported(State(state): State<Arc<FacilitatorState>>, headers: HeaderMap) -> Response {
    let answer = SupportedResponse {
        kinds: state
            .networks
            .iter()
            .map(|network| SupportedKind {
                x402_version: 2,
                scheme: "exact".into(),
                network: network.clone(),
                extra: None,
            })
            .collect(),
        extensions: Vec::new(),
        signers: Default::default(),
    };
    let answer = serde_json::to_string(&answer).unwrap();
    record(&state, "supported", headers, Value::Null, StatusCode::OK, answer)
}

/// Serves `app` on a loopback port until the test's runtime ends.
pub async fn serve(app: Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    address
}

/// The paid app: `/weather` answers with who paid; `/broken` answers 500.
#[derive(Debug, Clone)]
pub struct TestApp {
    pub url: String,
    pub handler_runs: Arc<AtomicUsize>,
    pub http: reqwest::Client,
}

impl TestApp {
    /// Serves `/weather` and `/broken`, each behind `layer`.
    pub async fn start(layer: PaymentLayer) -> Self {
        let runs = Arc::new(AtomicUsize::new(0));
        let app = paid_routes(Arc::clone(&runs)).layer(layer);
        Self::serve(app, runs).await
    }

    pub async fn serve(app: Router, handler_runs: Arc<AtomicUsize>) -> Self {
        let address = serve(app).await;
        Self { url: format!("http://{address}"), handler_runs, http: reqwest::Client::new() }
    }

    pub fn runs(&self) -> usize {
        self.handler_runs.load(Ordering::SeqCst)
    }

    pub async fn get(&self, path: &str, payment: Option<&str>) -> reqwest::Response {
        let mut request = self.http.get(format!("{}{path}", self.url));
        if let Some(payment) = payment {
            request = request.header("PAYMENT-SIGNATURE", payment);
        }
        request.send().await.unwrap()
    }

    /// Asks unpaid, and returns the decoded challenge.
    pub async fn challenge(&self, path: &str) -> PaymentRequired {
        let response = self.get(path, None).await;
        assert_eq!(response.status(), 402);
        payment_required(&response)
    }
}

/// `/weather` (answers JSON with the payer and the paid amount) and `/broken` (answers 500),
/// counting handler runs.
pub fn paid_routes(runs: Arc<AtomicUsize>) -> Router {
    let weather_runs = Arc::clone(&runs);
    Router::new()
        .route(
            "/weather",
            get(move |Extension(paid): Extension<PaymentInfo>| {
                let runs = Arc::clone(&weather_runs);
                async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    Json(json!({
                        "weather": "sunny",
                        "payer": paid.payer.map(|payer| payer.to_checksum(None)),
                        "amount": paid.requirements.amount,
                    }))
                }
            }),
        )
        .route(
            "/broken",
            get(move || {
                let runs = Arc::clone(&runs);
                async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    (StatusCode::INTERNAL_SERVER_ERROR, [("x-handler", "broken")], "boom")
                }
            }),
        )
}

pub fn payment_required(response: &reqwest::Response) -> PaymentRequired {
    let value =
        response.headers().get("payment-required").expect("PAYMENT-REQUIRED").to_str().unwrap();
    header::decode_payment_required(value).unwrap()
}

pub fn payment_response(response: &reqwest::Response) -> SettleResponse {
    let value =
        response.headers().get("payment-response").expect("PAYMENT-RESPONSE").to_str().unwrap();
    header::decode_payment_response(value).unwrap()
}

/// A payment for `offer` of `challenge`, signed by `signer` for the authorization `edit` leaves.
pub fn sign_payment(
    challenge: &PaymentRequired,
    offer: &PaymentRequirements,
    signer: &PrivateKeySigner,
    edit: impl FnOnce(&mut Eip3009Authorization),
) -> PaymentPayload {
    let typed = offer.exact_evm().unwrap();
    let names = typed.domain.clone().unwrap();
    let mut authorization = Eip3009Authorization {
        from: signer.address(),
        to: typed.pay_to,
        value: typed.amount,
        valid_after: U256::ZERO,
        valid_before: U256::from(now() + typed.max_timeout_seconds),
        nonce: random_nonce(),
    };
    edit(&mut authorization);
    let domain = TokenDomain {
        name: names.name,
        version: names.version,
        chain_id: typed.chain_id,
        verifying_contract: typed.asset,
    };
    let signature = authorization.sign(signer, &domain).unwrap();
    let payload = ExactEvmPayload::Eip3009(Eip3009Payload {
        signature: Bytes::copy_from_slice(&signature.to_bytes()),
        authorization,
    });
    PaymentPayload {
        x402_version: 2,
        resource: Some(challenge.resource.clone()),
        accepted: offer.clone(),
        payload: payload.to_json(),
        extensions: None,
        other: JsonObject::new(),
    }
}

pub fn encode(payload: &PaymentPayload) -> String {
    header::encode(payload).unwrap()
}

/// An address whose checksummed form tests can compare with.
pub fn checksum(address: Address) -> String {
    address.to_checksum(None)
}
