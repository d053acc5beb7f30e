//! The gateway's cross-cutting middleware: header size limit, rate limits, HTTP metrics,
//! control characters in path parameters, and the fallbacks that answer unknown routes and
//! methods in the error envelope.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{FromRequestParts as _, MatchedPath, RawPathParams, Request, State};
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
    // Values are percent-decoded; a path that does not decode is left to the handler's `Path`.
    if let Ok(params) = RawPathParams::from_request_parts(&mut parts, &()).await
        && let Some((name, _)) = params.iter().find(|(_, value)| has_control_character(value))
    {
        return control_character_error(name).into_response();
    }
    next.run(Request::from_parts(parts, body)).await
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
