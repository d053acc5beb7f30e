//! Request extractors that answer in the error envelope: JSON bodies and query strings whose
//! errors name the offending field (`scopes[0]: unknown variant ...`), and the `415`/`413`
//! cases, instead of axum's plain-text rejections.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, ErrorCode};

/// A JSON request body.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

fn is_json(content_type: &str) -> bool {
    let mime = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

/// Parses JSON bytes, naming the field at fault.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::new(ErrorCode::MalformedJson, format!("the body is not valid JSON: {inner}"))
        } else if path == "." {
            ApiError::new(ErrorCode::InvalidField, format!("invalid body: {inner}"))
        } else {
            ApiError::new(ErrorCode::InvalidField, format!("{path}: {inner}")).with_field(path)
        }
    })?;
    deserializer.end().map_err(|error| {
        ApiError::new(ErrorCode::MalformedJson, format!("the body is not valid JSON: {error}"))
    })?;
    Ok(value)
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = request.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
        if !content_type.is_some_and(is_json) {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                "send the body as JSON with Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(request, state).await.map_err(|_| {
            ApiError::new(ErrorCode::PayloadTooLarge, "the request body is too large")
        })?;
        parse_json(&bytes).map(Self)
    }
}

/// A query string.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        let deserializer = serde_urlencoded_deserializer(query);
        serde_path_to_error::deserialize(deserializer).map(Self).map_err(|error| {
            let path = error.path().to_string();
            let inner = error.into_inner();
            ApiError::new(ErrorCode::InvalidField, format!("query {path}: {inner}"))
                .with_field(path)
        })
    }
}

fn serde_urlencoded_deserializer(query: &str) -> serde_urlencoded::Deserializer<'_> {
    serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code, reason = "only deserialized")]
    struct Body {
        name: String,
        items: Vec<u32>,
    }

    #[test]
    fn errors_name_the_field() {
        let error = parse_json::<Body>(br#"{"name": "x", "items": [1, "two"]}"#).unwrap_err();
        assert_eq!(error.code(), ErrorCode::InvalidField);
        let error = parse_json::<Body>(br#"{"name": "x""#).unwrap_err();
        assert_eq!(error.code(), ErrorCode::MalformedJson);
        let error = parse_json::<Body>(br#"{"name": "x", "items": []} trailing"#).unwrap_err();
        assert_eq!(error.code(), ErrorCode::MalformedJson);
        assert!(parse_json::<Body>(br#"{"name": "x", "items": [1]}"#).is_ok());
        assert!(is_json("application/json; charset=utf-8"));
        assert!(is_json("application/problem+json"));
        assert!(!is_json("text/plain"));
    }
}
