//! Request extractors that answer in the error envelope: JSON bodies ([`ApiJson`]), query
//! strings ([`ApiQuery`]) and path parameters ([`ApiPath`]) whose errors name the offending
//! field (`scopes[0]: unknown variant ...`), and the `415`/`413` cases, instead of axum's
//! plain-text rejections. Handlers use these, never axum's `Json`, `Query` or `Path`; what
//! the framework still answers itself is put in the envelope by
//! [`crate::middleware::envelope_framework_errors`].
//!
//! JSON is strict: an object may name a key once. A body with a key twice at any depth
//! (`{"amount": "1", "amount": "1000"}`, or inside `paymentPayload`) is refused with 400
//! `invalid_field` naming the key's path ([`parse_json`]), as serde refuses a duplicated field
//! of a typed request: otherwise the last value would silently win in free-form parts (the
//! facilitator's `paymentPayload`, `paymentRequirements`, `extra`), and what we check could
//! differ from what another reader of the same bytes takes.
//!
//! No JSON body may carry the NUL character (the escape `\u0000`; a raw 0x00 byte is not JSON
//! at all): Postgres can store it neither in `text` nor in `jsonb`, and no field has a use for
//! it. Every body is checked once, before it is read into its type, and refused with 400
//! `invalid_field` naming the field ([`parse_json`]). Query parameters ([`ApiQuery`]) and path
//! parameters ([`crate::middleware::refuse_control_characters`]) may hold no control character
//! at all.

use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;

use axum::body::Bytes;
use axum::extract::path::ErrorKind;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use serde::de::{self, DeserializeOwned, DeserializeSeed, MapAccess, SeqAccess, Visitor};

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

/// Where a JSON value sits in a body: a chain on the stack, written out only for a duplicate.
#[derive(Clone, Copy)]
enum Segment<'a> {
    Root,
    Key(&'a Self, &'a str),
    Index(&'a Self, usize),
}

impl fmt::Display for Segment<'_> {
    /// As [`parse_json`] names fields: `paymentPayload.payload.authorization.value`, `items[1]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Root => Ok(()),
            Self::Key(Self::Root, key) => f.write_str(key),
            Self::Key(parent, key) => write!(f, "{parent}.{key}"),
            Self::Index(parent, index) => write!(f, "{parent}[{index}]"),
        }
    }
}

/// Walks a JSON value without keeping it, recording the path of the first key an object
/// holds twice in `found` (and failing, to stop the walk).
struct UniqueKeys<'a> {
    at: Segment<'a>,
    found: &'a RefCell<Option<String>>,
}

impl<'de> DeserializeSeed<'de> for UniqueKeys<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for UniqueKeys<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_i128<E>(self, _: i128) -> Result<(), E> {
        Ok(())
    }

    fn visit_u128<E>(self, _: u128) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<(), A::Error> {
        let mut index = 0_usize;
        while items
            .next_element_seed(UniqueKeys {
                at: Segment::Index(&self.at, index),
                found: self.found,
            })?
            .is_some()
        {
            index = index.saturating_add(1);
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut entries: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        // Keys are compared decoded: `"a"` and `"\u0061"` are the same key.
        while let Some(key) = entries.next_key::<String>()? {
            let at = Segment::Key(&self.at, &key);
            if seen.contains(&key) {
                *self.found.borrow_mut() = Some(at.to_string());
                return Err(de::Error::custom("duplicate key"));
            }
            entries.next_value_seed(UniqueKeys { at, found: self.found })?;
            seen.insert(key);
        }
        Ok(())
    }
}

/// The path of the first key that an object of the JSON text `bytes` holds twice, at any
/// depth; `None` when every object's keys are distinct (or the text is not JSON, which the
/// caller reports).
fn duplicate_key(bytes: &[u8]) -> Option<String> {
    let found = RefCell::new(None);
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let _ = UniqueKeys { at: Segment::Root, found: &found }.deserialize(&mut deserializer);
    found.into_inner()
}

/// 400 `invalid_field` for a body whose object holds a key twice, naming the key's path.
fn refuse_duplicate(bytes: &[u8]) -> Option<ApiError> {
    let path = duplicate_key(bytes)?;
    // Text that is not JSON at all is reported as such.
    serde_json::from_slice::<de::IgnoredAny>(bytes).ok()?;
    Some(
        ApiError::new(
            ErrorCode::InvalidField,
            format!("{path}: duplicate key; a JSON object may name each key once"),
        )
        .with_field(path),
    )
}

/// Parses JSON bytes, naming the field at fault; a string holding the NUL character, and an
/// object holding a key twice (at any depth), are refused (400 `invalid_field`).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if let Some(error) = refuse_nul(bytes) {
        return Err(error);
    }
    if let Some(error) = refuse_duplicate(bytes) {
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
        let bytes = Bytes::from_request(request, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(ErrorCode::PayloadTooLarge, "the request body is too large")
            } else {
                ApiError::new(ErrorCode::InvalidRequest, "the request body could not be read")
            }
        })?;
        parse_json(&bytes).map(Self)
    }
}

/// Path parameters (`/agents/{agent_id}`), refused in the envelope instead of axum's plain
/// text: a parameter that is not valid UTF-8 once percent-decoded (`ses_%FF%FE`) or cannot be
/// read as its type is 400 `invalid_field` naming it; an extractor that does not fit its route
/// (the wrong number of parameters) is a bug of ours, 500 `internal_error`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state).await.map(|Path(value)| Self(value)).map_err(
            |rejection| match rejection {
                PathRejection::FailedToDeserializePathParams(failed) => {
                    path_error(failed.into_kind())
                }
                PathRejection::MissingPathParams(missing) => {
                    ApiError::internal("path parameters", &missing)
                }
                other => ApiError::internal("path parameters", &other),
            },
        )
    }
}

/// The envelope of a path parameter that cannot be read.
fn path_error(kind: ErrorKind) -> ApiError {
    let invalid = |field: &str, problem: &str| {
        let field = if crate::middleware::has_control_character(field) {
            "path".to_owned()
        } else {
            field.to_owned()
        };
        ApiError::new(ErrorCode::InvalidField, format!("{field}: {problem}")).with_field(field)
    };
    match kind {
        ErrorKind::InvalidUtf8InPathParam { key } => {
            invalid(&key, "not valid UTF-8 once percent-decoded")
        }
        ErrorKind::ParseErrorAtKey { key, expected_type, .. } => {
            invalid(&key, &format!("cannot be read as {expected_type}"))
        }
        ErrorKind::DeserializeError { key, message, .. } => invalid(&key, &message),
        ErrorKind::ParseErrorAtIndex { expected_type, .. }
        | ErrorKind::ParseError { expected_type, .. } => ApiError::new(
            ErrorCode::InvalidRequest,
            format!("a path parameter cannot be read as {expected_type}"),
        ),
        ErrorKind::Message(message) => {
            ApiError::new(ErrorCode::InvalidRequest, format!("invalid path parameter: {message}"))
        }
        ErrorKind::WrongNumberOfParameters { got, expected } => ApiError::internal(
            "path parameters",
            &format!("the route has {got} parameters, the handler reads {expected}"),
        ),
        ErrorKind::UnsupportedType { name } => {
            ApiError::internal("path parameters", &format!("unsupported type {name}"))
        }
        other => ApiError::internal("path parameters", &format!("{other:?}")),
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
    fn a_key_twice_in_one_object_is_refused_at_any_depth_naming_it() {
        for (body, field) in [
            (r#"{"name": "x", "items": [], "name": "y"}"#, "name"),
            (
                r#"{"name": "x", "items": [], "extra": {"a": 1, "b": {"c": 1, "c": 2}}}"#,
                "extra.b.c",
            ),
            (r#"{"name": "x", "items": [{"a": 1}, {"a": 1, "a": 1}]}"#, "items[1].a"),
            // Keys are compared decoded.
            (r#"{"name": "x", "items": [], "\u006eame": "y"}"#, "name"),
            (r#"[{"k": 1}, [{"k": 1, "k": 1}]]"#, "[1][0].k"),
        ] {
            let error = parse_json::<serde_json::Value>(body.as_bytes()).unwrap_err();
            assert_eq!(error.code(), ErrorCode::InvalidField, "{body}");
            assert_eq!(error.field(), Some(field), "{body}");
            assert!(error.message().contains("duplicate key"), "{body}");
        }
        // A typed body: the same answer as for a free-form one.
        let error = parse_json::<Body>(br#"{"name": "x", "items": [], "name": "x"}"#).unwrap_err();
        assert_eq!((error.code(), error.field()), (ErrorCode::InvalidField, Some("name")));
        // The same key in different objects, or as a value, is fine; bad JSON is still
        // malformed JSON.
        let value: serde_json::Value =
            parse_json(br#"{"a": {"a": "a"}, "b": [{"a": 1}, {"a": 2}], "c": 1.5e300}"#).unwrap();
        assert_eq!(value["b"][1]["a"], 2);
        let error = parse_json::<serde_json::Value>(br#"{"a": 1, "a": "#).unwrap_err();
        assert_eq!(error.code(), ErrorCode::MalformedJson);
    }

    async fn extract_path<T: DeserializeOwned + Send + 'static>(
        route: &'static str,
        uri: &str,
    ) -> Result<T, ApiError> {
        use tower::ServiceExt as _;
        let found = std::sync::Arc::new(std::sync::Mutex::new(None));
        let sink = found.clone();
        let router = axum::Router::new().route(
            route,
            axum::routing::get(move |request: Request| async move {
                let (mut parts, _) = request.into_parts();
                let extracted = ApiPath::<T>::from_request_parts(&mut parts, &()).await;
                *sink.lock().unwrap() = Some(extracted.map(|ApiPath(value)| value));
            }),
        );
        let request = Request::builder().uri(uri).body(axum::body::Body::empty()).unwrap();
        router.oneshot(request).await.unwrap();
        let extracted = found.lock().unwrap().take();
        extracted.unwrap()
    }

    #[tokio::test]
    async fn path_parameters_are_refused_in_the_envelope() {
        let id: String = extract_path("/s/{session_id}", "/s/ses_1").await.unwrap();
        assert_eq!(id, "ses_1");
        let error = extract_path::<String>("/s/{session_id}", "/s/ses_%FF%FE").await.unwrap_err();
        assert_eq!((error.code(), error.field()), (ErrorCode::InvalidField, Some("session_id")));
        let error = extract_path::<u32>("/s/{n}", "/s/many").await.unwrap_err();
        assert_eq!(error.code(), ErrorCode::InvalidRequest);
        // A handler reading more parameters than its route has is our bug.
        let error =
            extract_path::<(String, String)>("/s/{session_id}", "/s/ses_1").await.unwrap_err();
        assert_eq!(error.code(), ErrorCode::InternalError);
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
