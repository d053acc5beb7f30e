//! Request extractors that answer in the error envelope: JSON bodies and query strings whose
//! errors name the offending field (`scopes[0]: unknown variant ...`), and the `415`/`413`
//! cases, instead of axum's plain-text rejections.
//!
//! No JSON body may carry the NUL character (the escape `\u0000`; a raw 0x00 byte is not JSON
//! at all): Postgres can store it neither in `text` nor in `jsonb`, and no field has a use for
//! it. Every body is checked once, before it is read into its type, and refused with 400
//! `invalid_field` naming the field ([`parse_json`]). Query parameters ([`ApiQuery`]) and path
//! parameters ([`crate::middleware::refuse_control_characters`]) may hold no control character
//! at all.

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

/// Whether JSON text holds an escaped NUL character (`\u0000`). Escapes are skipped as a
/// whole, so an escaped backslash followed by `u0000` (the text `\\u0000`) is not one.
fn escapes_nul(bytes: &[u8]) -> bool {
    let mut rest = bytes;
    while let Some(position) = rest.iter().position(|&byte| byte == b'\\') {
        let escape = rest.get(position..).unwrap_or_default();
        if escape.starts_with(b"\\u0000") {
            return true;
        }
        // The backslash and the character it escapes.
        rest = escape.get(2..).unwrap_or_default();
    }
    false
}

/// The path (as [`parse_json`] names fields: `policy.allowed_urls[0]`) of the first string or
/// key in `value` that contains a NUL character.
fn nul_path(value: &serde_json::Value, path: &str) -> Option<String> {
    let join = |key: &str| {
        let key = key.replace('\0', "\\u0000");
        if path.is_empty() { key } else { format!("{path}.{key}") }
    };
    match value {
        serde_json::Value::String(text) => text.contains('\0').then(|| path.to_owned()),
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(index, item)| nul_path(item, &format!("{path}[{index}]"))),
        serde_json::Value::Object(map) => map.iter().find_map(|(key, item)| {
            if key.contains('\0') { Some(join(key)) } else { nul_path(item, &join(key)) }
        }),
        serde_json::Value::Null | serde_json::Value::Bool(_) | serde_json::Value::Number(_) => None,
    }
}

/// 400 `invalid_field` for a body holding a NUL character, naming the field, or `None` when
/// it holds none (or is not JSON, which the caller reports).
fn refuse_nul(bytes: &[u8]) -> Option<ApiError> {
    if !escapes_nul(bytes) {
        return None;
    }
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let path = nul_path(&value, "")?;
    let error = if path.is_empty() {
        ApiError::new(ErrorCode::InvalidField, "invalid body: it must not contain U+0000 (NUL)")
    } else {
        ApiError::new(
            ErrorCode::InvalidField,
            format!("{path}: must not contain the character U+0000 (NUL)"),
        )
        .with_field(path)
    };
    Some(error)
}

/// Parses JSON bytes, naming the field at fault; a string holding the NUL character is refused
/// (400 `invalid_field`).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if let Some(error) = refuse_nul(bytes) {
        return Err(error);
    }
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

/// A query string; a parameter holding a control character (U+0000 to U+001F, U+007F) is
/// refused with 400 `invalid_field` naming it.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        // No parameter has a use for a control character (`%00`, say): 400 naming it.
        if let Some((name, _)) = form_urlencoded::parse(query.as_bytes()).find(|(name, value)| {
            crate::middleware::has_control_character(name)
                || crate::middleware::has_control_character(value)
        }) {
            return Err(crate::middleware::control_character_error(&name));
        }
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

    #[test]
    fn a_nul_character_is_refused_naming_its_field() {
        for (body, field) in [
            (r#"{"name": "a\u0000b", "items": []}"#, "name"),
            (r#"{"name": "x", "items": [], "extra": {"list": ["ok", "\u0000"]}}"#, "extra.list[1]"),
            (r#"{"name": "x", "items": [], "a\u0000": 1}"#, "a\\u0000"),
        ] {
            let error = parse_json::<serde_json::Value>(body.as_bytes()).unwrap_err();
            assert_eq!(error.code(), ErrorCode::InvalidField, "{body}");
            assert_eq!(error.field(), Some(field), "{body}");
            assert!(!error.message().contains('\0'));
            // Before the body is read into its type.
            assert_eq!(parse_json::<Body>(body.as_bytes()).unwrap_err().field(), Some(field));
        }
        // An escaped backslash before `u0000` is the text `\u0000`, not NUL; other control
        // characters are left to each field's own rules.
        let body: Body =
            parse_json(br#"{"name": "C:\\u0000 and\ttab\u0001", "items": []}"#).unwrap();
        assert_eq!(body.name, "C:\\u0000 and\ttab\u{1}");
        // A raw NUL byte is not JSON.
        let error = parse_json::<Body>(b"{\"name\": \"a\0\", \"items\": []}").unwrap_err();
        assert_eq!(error.code(), ErrorCode::MalformedJson);
        // A bare string body holding NUL is refused without a field to name.
        let error = parse_json::<String>(br#""\u0000""#).unwrap_err();
        assert_eq!((error.code(), error.field()), (ErrorCode::InvalidField, None));
    }
}
