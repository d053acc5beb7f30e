//! `X-Request-Id`: every response carries one, and every error envelope and log line of the
//! request names it.
//!
//! A well-formed incoming `X-Request-Id` (1 to 64 characters of `[A-Za-z0-9_-.]`) is kept, so a
//! client or load balancer can correlate; otherwise a new `req_…` id is made. The id lives in a
//! task-local for the duration of the request, which is how error responses (including the one
//! built from a panic) find it.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

/// The header name.
pub const X_REQUEST_ID: &str = "x-request-id";

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The current request's id, or `req_unknown` outside a request.
pub fn current() -> String {
    REQUEST_ID.try_with(Clone::clone).unwrap_or_else(|_| "req_unknown".to_owned())
}

fn acceptable(value: &str) -> bool {
    (1..=64).contains(&value.len())
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// The request id of a request, stored in its extensions by [`middleware`].
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Assigns the request id, runs the request in its scope, and echoes it on the response.
pub async fn middleware(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(X_REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .filter(|value| acceptable(value))
        .map_or_else(|| awx_types::RequestId::new().to_string(), str::to_owned);
    request.extensions_mut().insert(RequestId(id.clone()));
    let mut response = REQUEST_ID.scope(id.clone(), next.run(request)).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(X_REQUEST_ID, value);
    }
    response
}
