//! The gateway's cross-cutting middleware: header size limit, rate limits, HTTP metrics, and the
//! fallbacks that answer unknown routes and methods in the error envelope.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::auth::Principal;
use crate::error::{ApiError, ErrorCode};
use crate::routes;
use crate::state::AppState;

/// Refuses requests whose headers together exceed `http.header_bytes_max` (431).
pub async fn header_limit(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let size: usize =
        request.headers().iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum();
    if size > state.settings.http.header_bytes_max {
        return ApiError::new(
            ErrorCode::HeadersTooLarge,
            format!(
                "request headers are {size} bytes, more than {}",
                state.settings.http.header_bytes_max
            ),
        )
        .into_response();
    }
    next.run(request).await
}

/// Applies the rate limits of the route's action to the authenticated caller.
pub async fn rate_limit(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(principal) = request.extensions().get::<Principal>().cloned() else {
        return ApiError::new(ErrorCode::InternalError, "rate limiting needs authentication")
            .into_response();
    };
    let path = request.extensions().get::<MatchedPath>().map_or("", MatchedPath::as_str);
    let action = routes::action(request.method(), path);
    let outcome = state.rate_limiter.check(&principal, action).await;
    let mut response = if outcome.allowed {
        next.run(request).await
    } else {
        ApiError::new(
            ErrorCode::RateLimited,
            format!("too many `{action}` requests; retry after the Retry-After delay"),
        )
        .into_response()
    };
    outcome.write_headers(response.headers_mut());
    response
}

/// Counts requests and their latency by route and status (`http_requests_total`,
/// `http_request_duration_seconds`).
pub async fn http_metrics(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("http_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

/// The answer to unknown routes.
pub async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such route")
}

/// The answer to a known route called with another method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(ErrorCode::MethodNotAllowed, "this route does not take that HTTP method")
}
