//! The OpenAPI document of the public API, assembled from the real handlers' annotations.
//!
//! `GET /openapi.json` serves it and `GET /docs` serves Swagger UI from assets compiled into the
//! binary (no CDN), so the docs render on a machine without internet. `openapi/openapi.json` is
//! the committed copy (`make openapi` rewrites it; a test fails when it drifts).

use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
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
answer for 24 h; the same key with another body is 422.",
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
    openapi
}

/// The document as the committed `openapi/openapi.json` holds it (pretty, trailing newline).
pub fn document_json() -> String {
    let mut text = document().to_pretty_json().unwrap_or_default();
    text.push('\n');
    text
}
