//! The OpenAPI document of the public API, assembled from the real handlers' annotations.
//!
//! `GET /openapi.json` serves it and `GET /docs` serves Swagger UI from assets compiled into the
//! binary (no CDN), so the docs render on a machine without internet. `openapi/openapi.json` is
//! the committed copy (`make openapi` rewrites it; a test fails when it drifts).

use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::error::{ErrorBody, ErrorCode, ErrorDetail, ErrorType};

/// The document's static part: info, tags, shared schemas and the security scheme.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "awx",
        description = "x402 payments for AI agents: agents pay HTTP APIs per request in USDC under \
budgets and policies; providers verify and settle through the facilitator.\n\n\
**Authentication.** Send an API key in `X-API-Key` (`awx_…`). Keys have scopes: `agent` (checking \
URLs, sessions, paying), `provider` (the facilitator), `admin` (the account: keys, agents, \
policies; implies the others). Each operation lists the scopes that may call it.\n\n\
**Errors.** Every error is `{\"error\": {\"type\", \"code\", \"message\", \"field\"?, \"request_id\"}}`; \
`code` is stable (see the `ErrorCode` schema). Every response has `X-Request-Id`.\n\n\
**Rate limits.** Per key and per action, and globally per action. Answers carry `RateLimit-Policy` \
and `RateLimit`; a refusal is 429 with `Retry-After`.\n\n\
**Idempotency.** POST operations accept `Idempotency-Key`: the same key and body get the stored \
answer for 24 h; the same key with another body is 422.\n\n\
**Statuses every operation may answer.** Besides its own, each operation lists the answers of the \
layers in front of every handler, in the error envelope: 401 (no valid key), 403 (a scope the key \
lacks), 400 (an invalid parameter, body or `Idempotency-Key`), 404 (an id not found in the account), \
409 and 422 (`Idempotency-Key` in use or reused), 413 and 415 (the body's size and type), 429 (rate \
limits), 431 (headers too large), 500, 503 (a dependency unavailable) and 504 (the request timeout).",
        license(name = "Apache-2.0"),
    ),
    modifiers(&ApiKeyScheme),
    components(schemas(ErrorBody, ErrorDetail, ErrorCode, ErrorType)),
    tags(
        (name = "account", description = "The caller's account"),
        (name = "keys", description = "API keys of the account (admin scope)"),
        (name = "fees", description = "The tiered fee schedule"),
        (name = "ledger", description = "Agents' balances, statements and deposits"),
        (name = "withdrawals", description = "Withdrawals from agents' wallets to outside addresses, and the account's withdrawal allow-list"),
        (name = "x402", description = "Checking and paying x402-protected URLs (agent scope)"),
        (name = "facilitator", description = "The x402 facilitator for providers (provider scope)"),
    )
)]
pub struct ApiDoc;

/// Adds the `api_key` security scheme: the `X-API-Key` header.
struct ApiKeyScheme;

impl Modify for ApiKeyScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-API-Key",
                "An awx API key (`awx_…`). Scopes: agent, provider, admin.",
            ))),
        );
    }
}

/// The whole document: the static part and every route.
pub fn document() -> utoipa::openapi::OpenApi {
    let (_, mut openapi) = utoipa_axum::router::OpenApiRouter::<
        std::sync::Arc<crate::state::AppState>,
    >::with_openapi(ApiDoc::openapi())
    .merge(crate::routes::router())
    .split_for_parts();
    openapi.info.version = env!("CARGO_PKG_VERSION").to_owned();
    CommonResponses.modify(&mut openapi);
    openapi
}

/// The answers of the layers in front of every handler (authentication, scopes, extractors,
/// `Idempotency-Key`, body and header limits, rate limits, the panic guard and the request
/// timeout), as shared responses: each `/api/v1` operation refers to those it can get where its
/// own annotation does not already describe the status more precisely.
struct CommonResponses;

/// One shared response: its name under `components/responses`, its status and description.
struct Common {
    name: &'static str,
    status: &'static str,
    description: &'static str,
}

const UNAUTHORIZED: Common = Common {
    name: "Unauthorized",
    status: "401",
    description: "No valid API key: missing (`missing_api_key`), malformed, unknown or wrong \
(`invalid_api_key`), or revoked or expired (`api_key_revoked`)",
};
const FORBIDDEN: Common = Common {
    name: "Forbidden",
    status: "403",
    description: "The key lacks a scope this operation needs (`insufficient_scope`)",
};
const BAD_REQUEST: Common = Common {
    name: "BadRequest",
    status: "400",
    description: "A parameter or the body is invalid (`invalid_field` naming it, \
`malformed_json`, `invalid_request`), or `Idempotency-Key` is malformed \
(`invalid_idempotency_key`)",
};
const NOT_FOUND: Common = Common {
    name: "NotFound",
    status: "404",
    description: "No such resource in the caller's account (`not_found`)",
};
const IDEMPOTENCY_IN_PROGRESS: Common = Common {
    name: "IdempotencyKeyInProgress",
    status: "409",
    description: "A request with this `Idempotency-Key` is still being processed \
(`idempotency_key_in_progress`, with `Retry-After`)",
};
const PAYLOAD_TOO_LARGE: Common = Common {
    name: "PayloadTooLarge",
    status: "413",
    description: "The body is larger than `http.body_bytes_max` (`payload_too_large`)",
};
const UNSUPPORTED_MEDIA_TYPE: Common = Common {
    name: "UnsupportedMediaType",
    status: "415",
    description: "The body is not sent as `application/json` (`unsupported_media_type`)",
};
const IDEMPOTENCY_KEY_REUSED: Common = Common {
    name: "IdempotencyKeyReused",
    status: "422",
    description: "This `Idempotency-Key` was used with a different request, or by another API key \
of the account (`idempotency_key_reused`)",
};
const RATE_LIMITED: Common = Common {
    name: "RateLimited",
    status: "429",
    description: "Rate limited (`rate_limited`), or too many wrong secrets for the key \
(`too_many_failed_authentications`): retry after `Retry-After` seconds",
};
const HEADERS_TOO_LARGE: Common = Common {
    name: "HeadersTooLarge",
    status: "431",
    description: "The request headers are larger than `http.header_bytes_max` \
(`headers_too_large`)",
};
const INTERNAL_ERROR: Common = Common {
    name: "InternalError",
    status: "500",
    description: "An unexpected error on our side (`internal_error`); `request_id` finds it in the \
logs",
};
const SERVICE_UNAVAILABLE: Common = Common {
    name: "ServiceUnavailable",
    status: "503",
    description: "A dependency is unavailable, or every key verification slot stayed busy \
(`service_unavailable`): retry later",
};
const TIMEOUT: Common = Common {
    name: "Timeout",
    status: "504",
    description: "The request took longer than `http.request_timeout_ms` (`timeout`)",
};

static ALL: [Common; 13] = [
    UNAUTHORIZED,
    FORBIDDEN,
    BAD_REQUEST,
    NOT_FOUND,
    IDEMPOTENCY_IN_PROGRESS,
    PAYLOAD_TOO_LARGE,
    UNSUPPORTED_MEDIA_TYPE,
    IDEMPOTENCY_KEY_REUSED,
    RATE_LIMITED,
    HEADERS_TOO_LARGE,
    INTERNAL_ERROR,
    SERVICE_UNAVAILABLE,
    TIMEOUT,
];

/// Every scope: an operation open to all of them cannot answer 403.
const SCOPES: [&str; 3] = ["agent", "provider", "admin"];

impl CommonResponses {
    /// The shared responses `operation` can get.
    fn applicable(operation: &Operation, method: &str) -> Vec<&'static Common> {
        let post = method == "post";
        let body = operation.request_body.is_some();
        let path_parameter = operation.parameters.iter().flatten().any(|parameter| {
            matches!(parameter, RefOr::T(parameter)
                if parameter.parameter_in == utoipa::openapi::path::ParameterIn::Path)
        });
        let parameter =
            operation.parameters.as_ref().is_some_and(|parameters| !parameters.is_empty());
        let all_scopes = operation.security.iter().flatten().any(|requirement| {
            serde_json::to_value(requirement).ok().and_then(|value| {
                value.get("api_key").and_then(serde_json::Value::as_array).map(|scopes| {
                    SCOPES.iter().all(|scope| scopes.iter().any(|given| given == scope))
                })
            }) == Some(true)
        });
        ALL.iter()
            .filter(|common| match common.status {
                "403" => !all_scopes,
                "400" => post || body || parameter,
                "404" => path_parameter,
                "409" | "422" => post,
                "413" => post || body,
                "415" => body,
                _ => true,
            })
            .collect()
    }
}

impl Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for common in &ALL {
            let response: Response = ResponseBuilder::new()
                .description(common.description)
                .content(
                    "application/json",
                    ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build(),
                )
                .build();
            components.responses.insert(common.name.to_owned(), RefOr::T(response));
        }
        for (path, item) in &mut openapi.paths.paths {
            if !path.starts_with("/api/v1/") {
                continue;
            }
            let operations = [
                ("get", &mut item.get),
                ("put", &mut item.put),
                ("post", &mut item.post),
                ("delete", &mut item.delete),
                ("patch", &mut item.patch),
            ];
            for (method, operation) in operations {
                let Some(operation) = operation else { continue };
                for common in Self::applicable(operation, method) {
                    operation
                        .responses
                        .responses
                        .entry(common.status.to_owned())
                        .or_insert_with(|| RefOr::Ref(Ref::from_response_name(common.name)));
                }
            }
        }
    }
}

/// The document as the committed `openapi/openapi.json` holds it (pretty, trailing newline).
pub fn document_json() -> String {
    let mut text = document().to_pretty_json().unwrap_or_default();
    text.push('\n');
    text
}
