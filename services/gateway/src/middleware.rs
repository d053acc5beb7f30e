//! The gateway's cross-cutting middleware: header size limit, rate limits, HTTP metrics,
//! control characters in path parameters, the fallbacks that answer unknown routes and
//! methods in the error envelope, and the last resort that puts any other error answer of the
//! framework in the envelope ([`envelope_framework_errors`]).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{FromRequestParts as _, MatchedPath, RawPathParams, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
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

/// Whether `text` holds a C0 control character (U+0000 to U+001F) or DEL (U+007F).
pub(crate) fn has_control_character(text: &str) -> bool {
    text.chars().any(|c| c.is_ascii_control())
}

/// 400 `invalid_field` for a request parameter `name` holding a control character (the name
/// shown with its control characters replaced by U+FFFD).
pub(crate) fn control_character_error(name: &str) -> ApiError {
    let name: String =
        name.chars().map(|c| if c.is_ascii_control() { '\u{fffd}' } else { c }).collect();
    ApiError::new(
        ErrorCode::InvalidField,
        format!("{name}: must not contain control characters such as U+0000 (NUL)"),
    )
    .with_field(name)
}

/// Refuses a request to an `/api/v1` route whose path parameters, once percent-decoded, hold a
/// control character (U+0000 to U+001F, or U+007F; `%00`, say): no id has a use for one, and
/// Postgres cannot store NUL. 400 `invalid_field` naming the parameter, before the handler runs.
/// Query strings are checked where they are read ([`crate::extract::ApiQuery`]), JSON bodies by
/// [`crate::extract::parse_json`].
pub async fn refuse_control_characters(request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    // Values are percent-decoded; a path that does not decode is left to the handler's
    // `ApiPath` (400 `invalid_field` naming the parameter).
    if let Ok(params) = RawPathParams::from_request_parts(&mut parts, &()).await
        && let Some((name, _)) = params.iter().find(|(_, value)| has_control_character(value))
    {
        return control_character_error(name).into_response();
    }
    next.run(Request::from_parts(parts, body)).await
}

/// Whether a response's `Content-Type` is JSON (`application/json`, `application/*+json`).
fn is_json(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).is_some_and(|value| {
        let mime = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
    })
}

/// The stable code of an error status the framework answered with itself.
fn framework_code(status: StatusCode) -> ErrorCode {
    match status {
        StatusCode::NOT_FOUND => ErrorCode::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType,
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => ErrorCode::HeadersTooLarge,
        StatusCode::TOO_MANY_REQUESTS => ErrorCode::RateLimited,
        StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => ErrorCode::Timeout,
        StatusCode::SERVICE_UNAVAILABLE => ErrorCode::ServiceUnavailable,
        status if status.is_client_error() => ErrorCode::InvalidRequest,
        _ => ErrorCode::InternalError,
    }
}

/// The most bytes of a framework's plain-text error read to quote it in the message.
const FRAMEWORK_MESSAGE_BYTES_MAX: usize = 1024;

/// The last resort: an error answer (4xx or 5xx) that is not JSON was made by the framework
/// (an extractor's rejection, a layer's refusal), not by our code, which answers every error
/// with [`ApiError`]. It is answered in the envelope instead, with the same status, a stable
/// code for the status, and the same headers (`Allow`, `Retry-After`); a 4xx quotes the
/// framework's text, a 5xx does not (it is logged).
pub async fn envelope_framework_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(response.headers()) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, FRAMEWORK_MESSAGE_BYTES_MAX)
        .await
        .ok()
        .and_then(|bytes| String::from_utf8(bytes.to_vec()).ok())
        .map(|text| text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect::<String>())
        .unwrap_or_default();
    let text = text.trim();
    let code = framework_code(status);
    let message = if status.is_server_error() {
        tracing::error!(status = status.as_u16(), body = %text, "the framework answered an error");
        "an unexpected error occurred; quote the request id when reporting it".to_owned()
    } else if text.is_empty() {
        status.canonical_reason().unwrap_or("the request was refused").to_owned()
    } else {
        text.to_owned()
    };
    let mut envelope = ApiError::new(code, message).into_response();
    *envelope.status_mut() = status;
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::TRANSFER_ENCODING);
    parts.headers.remove(header::CONTENT_ENCODING);
    for (name, value) in envelope.headers() {
        parts.headers.insert(name, value.clone());
    }
    Response::from_parts(parts, envelope.into_body())
}

/// The answer to unknown routes.
pub async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such route")
}

/// The answer to a known route called with another method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(ErrorCode::MethodNotAllowed, "this route does not take that HTTP method")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_found_and_not_shown_back() {
        assert!(has_control_character("agt_\0"));
        assert!(has_control_character("a\tb"));
        assert!(has_control_character("\u{7f}"));
        assert!(!has_control_character("agt_0190a3c48f2b7c3e9d1e5f6a7b8c9d0e"));
        assert!(!has_control_character("caf\u{e9} \u{a0}"));
        let error = control_character_error("a\0b\n");
        assert_eq!(error.code(), ErrorCode::InvalidField);
        assert_eq!(error.field(), Some("a\u{fffd}b\u{fffd}"));
    }
}
