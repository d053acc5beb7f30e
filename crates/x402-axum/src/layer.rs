//! The paywall itself: [`PaymentLayer`], a tower [`Layer`], and the [`PaymentService`] it
//! wraps a route or a router with.
//!
//! A request goes through the steps of @x402/express 2.27 (x402-v2.md §1.3):
//!
//! 1. no `PAYMENT-SIGNATURE`: 402 with a `PAYMENT-REQUIRED` challenge (`"Payment required"`);
//! 2. a header that does not decode to a v2 payment: 400 with a JSON error;
//! 3. `accepted` matching none of the offers: 402 (`"No matching payment requirements"`),
//!    without asking the facilitator;
//! 4. `POST /verify` with the matched offer: invalid is a 402 whose `error` is the
//!    `invalidReason` (a 412 for `permit2_allowance_required`); a failed call is a 402 with
//!    the error's message (a 502 when the facilitator answered 2xx with a malformed body);
//! 5. the inner service runs with [`PaymentInfo`] in the request's extensions; an answer with
//!    status 400 or more is returned as it is and nothing is settled;
//! 6. otherwise the answer is buffered and `POST /settle` is called once: success adds
//!    `PAYMENT-RESPONSE` to the answer; failure replaces it with a 402 carrying the failed
//!    `PAYMENT-RESPONSE` and body `{}`. A success the facilitator marks as the replay of an
//!    earlier settle of the same payment (`extensions.awx.replay`, as ours does) is a failure
//!    too (`invalid_exact_evm_nonce_already_used`): one payment serves one request, however many
//!    requests carry its signature at once.
//!
//! Every answer the middleware makes itself carries `Cache-Control: no-store`. The paid
//! handler's answer is held in memory until settlement, so the payer is charged only for an
//! answer that was produced completely.
//!
//! Layers may be nested (one on a router, another on a route): the outermost one that sees the
//! payment verifies and settles it; an inner one only checks that the verified offer is one of
//! its own, so one request is never settled twice.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use awx_x402::header::{self, HeaderError};
use awx_x402::matching::{accepted_matches, find_matching_offer};
use awx_x402::{
    Address, AnyPaymentPayload, ErrorReason, ExactEvmPayload, JsonObject, PaymentPayload,
    PaymentRequired, PaymentRequirements, ResourceInfo, SettleFailure, SettleResponse,
    SupportedResponse, VerifyResponse, X402_VERSION,
};
use axum::BoxError;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::OriginalUri;
use axum::http::header::{ACCESS_CONTROL_EXPOSE_HEADERS, CACHE_CONTROL, CONTENT_TYPE};
use axum::http::uri::Authority;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use tower::{Layer, Service, ServiceExt as _};

use crate::config::PaymentLayerBuilder;
use crate::facilitator::{FacilitatorClient, FacilitatorError};

/// `PAYMENT-SIGNATURE`, the client's payment (header names are case-insensitive).
pub const PAYMENT_SIGNATURE: HeaderName = HeaderName::from_static("payment-signature");
/// `PAYMENT-REQUIRED`, the challenge on a 402.
pub const PAYMENT_REQUIRED: HeaderName = HeaderName::from_static("payment-required");
/// `PAYMENT-RESPONSE`, the settlement result.
pub const PAYMENT_RESPONSE: HeaderName = HeaderName::from_static("payment-response");

/// The challenge's `error` when the request carries no payment.
pub const ERROR_PAYMENT_REQUIRED: &str = "Payment required";
/// The challenge's `error` when `accepted` matches none of the route's offers.
pub const ERROR_NO_MATCHING_REQUIREMENTS: &str = "No matching payment requirements";
/// The verify reason @x402/express answers with 412 instead of 402: the payer must first
/// approve Permit2 (only possible on an offer with `extra.assetTransferMethod: "permit2"`).
const PERMIT2_ALLOWANCE_REQUIRED: &str = "permit2_allowance_required";

const EXPOSE_PAYMENT_RESPONSE: HeaderValue = HeaderValue::from_static("PAYMENT-RESPONSE");
const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");
const APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");
/// An internal field @x402/core 2.27 strips from `PAYMENT-RESPONSE`.
const EXTENSION_RESPONSES: &str = "extensionResponses";

/// The payment behind a request, for the handler: `Extension<PaymentInfo>` in axum.
///
/// It is there once the facilitator has verified the payment; settlement happens after the
/// handler answers.
#[derive(Debug, Clone, PartialEq)]
pub struct PaymentInfo {
    /// The paying address, as the facilitator reported it (or, if it did not, the signed
    /// authorization's `from`).
    pub payer: Option<Address>,
    /// The payment the client sent.
    pub payload: PaymentPayload,
    /// The route's offer it matched, which is what is verified and settled.
    pub requirements: PaymentRequirements,
}

/// Why [`PaymentLayer::check_facilitator`] failed.
#[derive(Debug, thiserror::Error)]
pub enum SupportError {
    /// `GET /supported` failed.
    #[error(transparent)]
    Facilitator(#[from] FacilitatorError),
    /// The facilitator does not list one of the offers' (version, scheme, network).
    #[error("the facilitator does not support x402 v2 `{scheme}` payments on {network}")]
    Unsupported {
        /// The offer's scheme.
        scheme: String,
        /// The offer's network.
        network: String,
    },
}

/// What a payment layer knows, shared by every clone and every request.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) offers: Vec<PaymentRequirements>,
    pub(crate) description: Option<String>,
    pub(crate) mime_type: Option<String>,
    pub(crate) resource_base_url: Option<String>,
    pub(crate) facilitator: FacilitatorClient,
}

/// A tower [`Layer`] that paywalls what it wraps (one route, or a whole router) with x402 v2.
///
/// Build it with [`crate::payment_middleware`] or [`PaymentLayer::builder`].
#[derive(Debug, Clone)]
pub struct PaymentLayer {
    shared: Arc<Shared>,
}

impl PaymentLayer {
    /// A builder with no offers, the built-in token registry and our facilitator.
    pub fn builder() -> PaymentLayerBuilder {
        PaymentLayerBuilder::new()
    }

    pub(crate) fn from_shared(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// The offers, as sent in `accepts`.
    pub fn offers(&self) -> &[PaymentRequirements] {
        &self.shared.offers
    }

    /// The facilitator client.
    pub fn facilitator(&self) -> &FacilitatorClient {
        &self.shared.facilitator
    }

    /// Asks the facilitator's `GET /supported` whether it takes every offer (x402 v2, the offer's
    /// scheme and network), as @x402/express does before the first paid request. Call it at
    /// start-up to fail early.
    pub async fn check_facilitator(&self) -> Result<SupportedResponse, SupportError> {
        let supported = self.shared.facilitator.supported().await?;
        for offer in &self.shared.offers {
            let listed = supported.kinds.iter().any(|kind| {
                kind.x402_version == X402_VERSION
                    && kind.scheme == offer.scheme
                    && kind.network == offer.network
            });
            if !listed {
                return Err(SupportError::Unsupported {
                    scheme: offer.scheme.clone(),
                    network: offer.network.clone(),
                });
            }
        }
        Ok(supported)
    }
}

impl<S> Layer<S> for PaymentLayer {
    type Service = PaymentService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PaymentService { inner, shared: Arc::clone(&self.shared) }
    }
}

/// The service a [`PaymentLayer`] wraps `S` in.
#[derive(Debug, Clone)]
pub struct PaymentService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for PaymentService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The inner service is driven to readiness only when a request has paid (`oneshot`).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let inner = self.inner.clone();
        let shared = Arc::clone(&self.shared);
        Box::pin(handle(shared, inner, request))
    }
}

/// Everything the middleware answers by itself. Mapped to HTTP in one place
/// ([`Rejection::into_response`]).
#[derive(Debug)]
enum Rejection {
    /// 402 with a fresh `PAYMENT-REQUIRED` carrying this `error`.
    PaymentRequired(String),
    /// 400: the payment header cannot be read.
    MalformedPayment(String),
    /// 502: the facilitator's 2xx answer is malformed.
    BadFacilitatorAnswer(String),
    /// 402 with the failed settlement in `PAYMENT-RESPONSE`.
    SettleFailed(Box<SettleResponse>),
    /// 500: the paid handler's body failed, or a header could not be encoded.
    Internal(String),
}

async fn handle<S, ReqBody, ResBody>(
    shared: Arc<Shared>,
    inner: S,
    mut request: Request<ReqBody>,
) -> Result<Response<Body>, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Send,
    S::Future: Send,
    ReqBody: Send,
    ResBody: HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    let resource = resource_info(&shared, &request);
    let reject = |rejection: Rejection| Ok(rejection.into_response(&shared, &resource));

    // A payment layer further out already verified this request's payment and will settle it;
    // settling it here too would charge twice, so only check that it pays one of our offers.
    if let Some(paid) = request.extensions().get::<PaymentInfo>() {
        if shared.offers.iter().any(|offer| accepted_matches(offer, &paid.requirements)) {
            return inner.oneshot(request).await.map(|response| response.map(Body::new));
        }
        return reject(Rejection::PaymentRequired(ERROR_NO_MATCHING_REQUIREMENTS.into()));
    }

    let payload = match read_payment(request.headers()) {
        Ok(Some(payload)) => payload,
        Ok(None) => return reject(Rejection::PaymentRequired(ERROR_PAYMENT_REQUIRED.into())),
        Err(message) => return reject(Rejection::MalformedPayment(message)),
    };
    let Some(offer) = find_matching_offer(&shared.offers, &payload.accepted) else {
        return reject(Rejection::PaymentRequired(ERROR_NO_MATCHING_REQUIREMENTS.into()));
    };

    let verified = match shared.facilitator.verify(&payload, offer).await {
        Ok(answer) if answer.is_valid => answer,
        Ok(answer) => {
            let error = invalid_error(&answer);
            tracing::info!(reason = %error, payer = ?answer.payer, "x402 payment is invalid");
            return reject(Rejection::PaymentRequired(error));
        }
        Err(error) => {
            tracing::warn!(error = %error, detail = ?error, "x402 facilitator verify failed");
            return match error {
                FacilitatorError::Malformed { .. } => {
                    reject(Rejection::BadFacilitatorAnswer(error.to_string()))
                }
                FacilitatorError::Timeout { .. }
                | FacilitatorError::Transport { .. }
                | FacilitatorError::Status { .. }
                | FacilitatorError::TooLarge { .. } => {
                    reject(Rejection::PaymentRequired(error.to_string()))
                }
            };
        }
    };

    let payer = payer_of(&verified, &payload);
    request.extensions_mut().insert(PaymentInfo {
        payer,
        payload: payload.clone(),
        requirements: offer.clone(),
    });
    let response = inner.oneshot(request).await?;
    if response.status().as_u16() >= 400 {
        return Ok(response.map(Body::new));
    }
    let (mut parts, body) = response.into_parts();
    let bytes = match axum::body::to_bytes(Body::new(body), usize::MAX).await {
        Ok(bytes) => bytes,
        Err(error) => {
            tracing::error!(error = %error, "x402 paid handler's body failed; not settling");
            return reject(Rejection::Internal("the response could not be produced".into()));
        }
    };

    let settled = match shared.facilitator.settle(&payload, offer).await {
        Ok(answer) if answer.success && is_replay(&answer) => {
            // The payment paid for another request already (concurrent requests with one
            // signature): this one is not served.
            tracing::warn!(payer = ?answer.payer, "x402 payment already settled for another request");
            return reject(Rejection::SettleFailed(Box::new(SettleResponse::failed(
                SettleFailure {
                    reason: ErrorReason::InvalidExactEvmNonceAlreadyUsed,
                    message: "this payment was already settled for another request".into(),
                    payer: answer.payer,
                    transaction: answer.transaction,
                    network: answer.network,
                },
            ))));
        }
        Ok(answer) if answer.success => answer,
        Ok(answer) => {
            tracing::warn!(
                reason = ?answer.error_reason,
                payer = ?answer.payer,
                transaction = %answer.transaction,
                "x402 settlement failed"
            );
            return reject(Rejection::SettleFailed(Box::new(answer)));
        }
        Err(error) => {
            tracing::error!(error = %error, detail = ?error, "x402 facilitator settle failed");
            return reject(Rejection::SettleFailed(Box::new(SettleResponse::failed(
                SettleFailure {
                    reason: ErrorReason::UnexpectedSettleError,
                    message: error.to_string(),
                    payer: payer.map(|payer| payer.to_checksum(None)),
                    transaction: String::new(),
                    network: offer.network.clone(),
                },
            ))));
        }
    };
    match payment_response_value(settled) {
        Ok(value) => {
            parts.headers.insert(PAYMENT_RESPONSE, value);
            expose_payment_response(&mut parts.headers);
            Ok(Response::from_parts(parts, Body::from(bytes)))
        }
        Err(error) => {
            // Settled, but the receipt cannot be written: the payer still gets what they paid.
            tracing::error!(error = %error, "x402 PAYMENT-RESPONSE could not be encoded");
            Ok(Response::from_parts(parts, Body::from(bytes)))
        }
    }
}

/// Whether a successful settle is the replay of an earlier one (`extensions.awx.replay`, as the
/// awx facilitator marks every settle of a payment but the first).
fn is_replay(answer: &SettleResponse) -> bool {
    answer
        .extensions
        .as_ref()
        .and_then(|extensions| extensions.get("awx"))
        .and_then(|awx| awx.get("replay"))
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false)
}

/// The request's v2 payment: `None` without a `PAYMENT-SIGNATURE` header, an error message when
/// it cannot be read.
fn read_payment(headers: &HeaderMap) -> Result<Option<PaymentPayload>, String> {
    let mut values = headers.get_all(PAYMENT_SIGNATURE).iter();
    let Some(value) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err("more than one PAYMENT-SIGNATURE header".into());
    }
    let text = value.to_str().map_err(|_| "PAYMENT-SIGNATURE is not ASCII".to_owned())?;
    let invalid = |error: HeaderError| format!("invalid PAYMENT-SIGNATURE: {error}");
    match header::decode_payment_payload(text).map_err(invalid)? {
        AnyPaymentPayload::V2(payload) => Ok(Some(*payload)),
        AnyPaymentPayload::V1(_) => Err(invalid(HeaderError::Version(1))),
    }
}

/// The challenge's `error` for a negative verify answer.
fn invalid_error(answer: &VerifyResponse) -> String {
    match (&answer.invalid_reason, &answer.invalid_message) {
        (Some(reason), _) => reason.as_str().to_owned(),
        (None, Some(message)) => message.clone(),
        (None, None) => "payment verification failed".to_owned(),
    }
}

fn payer_of(verified: &VerifyResponse, payload: &PaymentPayload) -> Option<Address> {
    let reported = verified.payer.as_deref().and_then(|payer| payer.parse::<Address>().ok());
    reported.or_else(|| ExactEvmPayload::from_json(&payload.payload).ok().map(|p| p.payer()))
}

/// `resource` for the challenge: the URL is the configured base, or the request's scheme and
/// `Host`, followed by the original path and query. Description and media type are `""` when not
/// configured, as @x402/express sends them.
fn resource_info<B>(shared: &Shared, request: &Request<B>) -> ResourceInfo {
    let uri = request
        .extensions()
        .get::<OriginalUri>()
        .map_or_else(|| request.uri(), |original| &original.0);
    let path_and_query = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let url = match &shared.resource_base_url {
        Some(base) => format!("{base}{path_and_query}"),
        None => {
            let from_host = || {
                let host = request.headers().get(axum::http::header::HOST)?.to_str().ok()?;
                Authority::try_from(host).ok()
            };
            let authority = uri.authority().cloned().or_else(from_host);
            match authority.filter(|authority| !authority.as_str().contains('@')) {
                Some(authority) => {
                    let scheme = uri.scheme_str().unwrap_or("http");
                    format!("{scheme}://{authority}{path_and_query}")
                }
                None => path_and_query.to_owned(),
            }
        }
    };
    ResourceInfo {
        url,
        description: Some(shared.description.clone().unwrap_or_default()),
        mime_type: Some(shared.mime_type.clone().unwrap_or_default()),
        other: JsonObject::new(),
    }
}

fn payment_response_value(mut settle: SettleResponse) -> Result<HeaderValue, HeaderError> {
    settle.other.remove(EXTENSION_RESPONSES);
    let encoded = header::encode(&settle)?;
    HeaderValue::try_from(encoded).map_err(|_| HeaderError::Base64)
}

fn expose_payment_response(headers: &mut HeaderMap) {
    let already = headers.get_all(ACCESS_CONTROL_EXPOSE_HEADERS).iter().any(|value| {
        value.to_str().is_ok_and(|list| {
            list.split(',').any(|name| name.trim().eq_ignore_ascii_case("payment-response"))
        })
    });
    if !already {
        headers.append(ACCESS_CONTROL_EXPOSE_HEADERS, EXPOSE_PAYMENT_RESPONSE);
    }
}

fn json_response(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, APPLICATION_JSON);
    response.headers_mut().insert(CACHE_CONTROL, NO_STORE);
    response
}

fn error_body(message: &str) -> String {
    serde_json::json!({ "error": message }).to_string()
}

impl Rejection {
    fn into_response(self, shared: &Shared, resource: &ResourceInfo) -> Response<Body> {
        match self {
            Self::PaymentRequired(error) => {
                let challenge_error = error.clone();
                let challenge = PaymentRequired {
                    x402_version: X402_VERSION,
                    error: Some(error),
                    resource: resource.clone(),
                    accepts: shared.offers.clone(),
                    extensions: None,
                    other: JsonObject::new(),
                };
                let encoded = header::encode(&challenge)
                    .ok()
                    .and_then(|encoded| HeaderValue::try_from(encoded).ok());
                let Some(value) = encoded else {
                    tracing::error!("x402 PAYMENT-REQUIRED could not be encoded");
                    return Self::Internal("the payment challenge could not be encoded".into())
                        .into_response(shared, resource);
                };
                let status = if challenge_error == PERMIT2_ALLOWANCE_REQUIRED {
                    StatusCode::PRECONDITION_FAILED
                } else {
                    StatusCode::PAYMENT_REQUIRED
                };
                let mut response = json_response(status, "{}".into());
                response.headers_mut().insert(PAYMENT_REQUIRED, value);
                response
            }
            Self::MalformedPayment(message) => {
                json_response(StatusCode::BAD_REQUEST, error_body(&message))
            }
            Self::BadFacilitatorAnswer(message) => {
                json_response(StatusCode::BAD_GATEWAY, error_body(&message))
            }
            Self::SettleFailed(settle) => {
                let mut response = json_response(StatusCode::PAYMENT_REQUIRED, "{}".into());
                match payment_response_value(*settle) {
                    Ok(value) => {
                        response.headers_mut().insert(PAYMENT_RESPONSE, value);
                        expose_payment_response(response.headers_mut());
                    }
                    Err(error) => {
                        tracing::error!(%error, "x402 PAYMENT-RESPONSE could not be encoded");
                    }
                }
                response
            }
            Self::Internal(message) => {
                json_response(StatusCode::INTERNAL_SERVER_ERROR, error_body(&message))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail by panicking")]

    use super::*;

    #[test]
    fn header_names_are_the_protocols() {
        for (ours, protocol) in [
            (&PAYMENT_SIGNATURE, header::PAYMENT_SIGNATURE),
            (&PAYMENT_REQUIRED, header::PAYMENT_REQUIRED),
            (&PAYMENT_RESPONSE, header::PAYMENT_RESPONSE),
        ] {
            assert!(ours.as_str().eq_ignore_ascii_case(protocol));
        }
        assert_eq!(EXPOSE_PAYMENT_RESPONSE, header::PAYMENT_RESPONSE);
    }

    #[test]
    fn expose_headers_are_added_once() {
        let mut headers = HeaderMap::new();
        headers.insert(ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("X-Trace"));
        expose_payment_response(&mut headers);
        expose_payment_response(&mut headers);
        let values: Vec<_> = headers.get_all(ACCESS_CONTROL_EXPOSE_HEADERS).iter().collect();
        assert_eq!(values, ["X-Trace", "PAYMENT-RESPONSE"]);
    }

    #[test]
    fn challenges_are_402_except_for_a_missing_permit2_allowance() {
        let facilitator =
            FacilitatorClient::new(crate::FacilitatorConfig::new("http://127.0.0.1:9")).unwrap();
        let shared = Shared {
            offers: Vec::new(),
            description: None,
            mime_type: None,
            resource_base_url: None,
            facilitator,
        };
        let resource = ResourceInfo::from_url("http://localhost/paid");
        let status = |error: &str| {
            Rejection::PaymentRequired(error.into()).into_response(&shared, &resource).status()
        };
        assert_eq!(status(ERROR_PAYMENT_REQUIRED), StatusCode::PAYMENT_REQUIRED);
        assert_eq!(status("invalid_exact_evm_signature"), StatusCode::PAYMENT_REQUIRED);
        assert_eq!(status("permit2_allowance_required"), StatusCode::PRECONDITION_FAILED);
    }

    #[test]
    fn payment_response_drops_internal_fields() {
        let mut settle = SettleResponse::settled("0xab", "eip155:84532", "0x01");
        settle.other.insert(EXTENSION_RESPONSES.into(), serde_json::json!({"x": 1}));
        let value = payment_response_value(settle).unwrap();
        let decoded = header::decode_payment_response(value.to_str().unwrap()).unwrap();
        assert!(decoded.other.is_empty());
        assert_eq!(decoded, SettleResponse::settled("0xab", "eip155:84532", "0x01"));
    }
}
