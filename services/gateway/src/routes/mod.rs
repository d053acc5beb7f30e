//! The public API's routes under `/api/v1`, and the rate-limit action of each.

pub mod account;
pub mod agents;
pub mod check;
pub mod deposits;
pub mod facilitator;
pub mod facilitator_doc;
pub mod gate;
pub mod keys;
pub mod ledger;
pub mod pay;
pub mod settlements;
pub mod withdrawals;

use std::sync::Arc;

use axum::http::Method;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

/// Every `/api/v1` route, with its OpenAPI description.
pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(account::get_account))
        .routes(routes!(account::ping))
        .routes(routes!(keys::list_keys, keys::create_key))
        .routes(routes!(keys::get_key, keys::revoke_key))
        .routes(routes!(keys::rotate_key))
        .routes(routes!(ledger::fee_tiers))
        .routes(routes!(ledger::balances))
        .routes(routes!(ledger::statement))
        .routes(routes!(deposits::list_deposits))
        .routes(routes!(facilitator::verify))
        .routes(routes!(facilitator::settle))
        .routes(routes!(facilitator::supported))
        .routes(routes!(gate::action))
        .routes(routes!(check::check))
        .routes(routes!(agents::list_agents, agents::create_agent))
        .routes(routes!(agents::get_agent, agents::delete_agent))
        .routes(routes!(agents::set_policy))
        .routes(routes!(agents::fund_agent))
        .routes(routes!(pay::pay))
        .routes(routes!(pay::create_session))
        .routes(routes!(pay::get_session, pay::revoke_session))
        .routes(routes!(pay::session_pay))
        .routes(routes!(pay::get_payment))
        .routes(routes!(pay::approve_payment))
        .routes(routes!(pay::reject_payment))
        .routes(routes!(settlements::list_settlements))
        .routes(routes!(withdrawals::list_withdrawals, withdrawals::request_withdrawal))
        .routes(routes!(withdrawals::get_withdrawal))
        .routes(routes!(
            withdrawals::get_withdrawal_addresses,
            withdrawals::set_withdrawal_addresses
        ))
        // Innermost, after authentication: a path parameter or query string holding a control
        // character is refused before any handler runs.
        .route_layer(axum::middleware::from_fn(crate::middleware::refuse_control_characters))
}

/// The rate-limit action of a route: requests are limited per (key, action) and per action.
pub fn action(method: &Method, path: &str) -> &'static str {
    match (method.as_str(), path) {
        ("GET", "/api/v1/ping") => "ping",
        ("GET", "/api/v1/account") => "account.read",
        ("GET", "/api/v1/keys" | "/api/v1/keys/{key_id}") => "keys.read",
        ("POST" | "DELETE", path) if path.starts_with("/api/v1/keys") => "keys.write",
        ("GET", "/api/v1/x402/fees/tiers") => "fees.read",
        (
            "GET",
            "/api/v1/agents/{agent_id}/balances"
            | "/api/v1/agents/{agent_id}/statement"
            | "/api/v1/agents/{agent_id}/deposits",
        ) => "ledger.read",
        ("POST", "/api/v1/x402/facilitator/verify" | "/api/v1/x402/facilitator/settle") => {
            "facilitator.write"
        }
        ("GET", "/api/v1/x402/facilitator/supported" | "/api/v1/x402/settlements") => {
            "facilitator.read"
        }
        ("POST", "/api/v1/x402/check") => "x402.check",
        (
            "GET",
            "/api/v1/agents/{agent_id}/withdrawals"
            | "/api/v1/agents/{agent_id}/withdrawals/{withdrawal_id}",
        ) => "withdrawals.read",
        // Before `agents.write`: moving money out has its own, tighter limits.
        ("POST", "/api/v1/agents/{agent_id}/withdrawals") => "withdrawals.write",
        ("GET", "/api/v1/account/withdrawal_addresses") => "withdrawal_addresses.read",
        ("PUT", "/api/v1/account/withdrawal_addresses") => "withdrawal_addresses.write",
        ("GET", "/api/v1/agents" | "/api/v1/agents/{agent_id}") => "agents.read",
        ("POST" | "PUT" | "DELETE", path) if path.starts_with("/api/v1/agents") => "agents.write",
        ("POST", "/api/v1/x402/pay" | "/api/v1/x402/sessions/{session_id}/pay") => "x402.pay",
        ("GET", "/api/v1/x402/sessions/{session_id}" | "/api/v1/x402/payments/{ledger_id}") => {
            "x402.read"
        }
        ("POST" | "DELETE", "/api/v1/x402/sessions" | "/api/v1/x402/sessions/{session_id}") => {
            "sessions.write"
        }
        (
            "POST",
            "/api/v1/x402/payments/{ledger_id}/approve"
            | "/api/v1/x402/payments/{ledger_id}/reject",
        ) => "payments.decide",
        // The envelope's own per-action limits apply inside the handler.
        ("POST", "/api/v1/x402") => "gate",
        _ => "default",
    }
}

/// The most items a page holds.
pub(crate) const PAGE_MAX: u32 = 100;

/// The `limit` of a page: `default` when absent, else 1 to [`PAGE_MAX`] (400 on `limit`).
pub(crate) fn page_limit(limit: Option<u32>, default: u32) -> Result<u32, crate::error::ApiError> {
    let limit = limit.unwrap_or(default);
    if (1..=PAGE_MAX).contains(&limit) {
        Ok(limit)
    } else {
        Err(crate::error::ApiError::new(
            crate::error::ErrorCode::InvalidField,
            "limit must be 1 to 100",
        )
        .with_field("limit"))
    }
}

/// The agent `agent` of the caller's account, asked of the policy service (404 `not_found` when
/// it is not the account's).
pub(crate) async fn own_agent(
    state: &AppState,
    principal: &crate::auth::Principal,
    agent: awx_types::AgentId,
) -> Result<awx_api::policy::AgentView, crate::error::ApiError> {
    let get = awx_api::policy::GetAgent { owner: principal.account_id, agent_id: agent };
    crate::upstream::call(state, "policy", &get).await
}

/// The message of an amount above [`awx_types::API_WHOLE_UNITS_MAX`] whole units of `unit`.
fn too_large(field: &str, unit: &str) -> crate::error::ApiError {
    crate::error::ApiError::new(
        crate::error::ErrorCode::InvalidField,
        format!("{field} must be at most {} {unit}", awx_types::API_WHOLE_UNITS_MAX),
    )
    .with_field(field)
}

/// A positive amount of `token`, exactly (no more decimals than it has), of at most
/// [`awx_types::API_WHOLE_UNITS_MAX`] whole tokens (`Amount::api_max`); 400 `invalid_field` on
/// `amount`.
pub(crate) fn positive_amount(
    text: &str,
    token: &awx_x402::TokenInfo,
) -> Result<awx_types::Amount, crate::error::ApiError> {
    match awx_types::Amount::from_decimal_str(text, token.decimals) {
        Ok(amount) if amount > awx_types::Amount::api_max(token.decimals) => {
            Err(too_large("amount", &token.symbol))
        }
        Err(awx_types::AmountError::Overflow) => Err(too_large("amount", &token.symbol)),
        Ok(amount) if !amount.is_zero() => Ok(amount),
        Ok(_) | Err(_) => Err(crate::error::ApiError::new(
            crate::error::ErrorCode::InvalidField,
            format!(
                "amount must be a positive amount of {} with at most {} decimals",
                token.symbol, token.decimals
            ),
        )
        .with_field("amount")),
    }
}

/// The decimals of a dollar amount (a limit or a budget): micro-dollars.
const USD_DECIMALS: u8 = 6;

/// Refuses a dollar amount (a spending limit or a budget) above
/// [`awx_types::API_WHOLE_UNITS_MAX`] dollars ($1,000,000,000); 400 `invalid_field` on `field`.
/// Any other mistake in it is the policy service's to name, which reads it.
pub(crate) fn dollars_within_max(text: &str, field: &str) -> Result<(), crate::error::ApiError> {
    let above = match awx_types::Amount::from_decimal_str(text, USD_DECIMALS) {
        Ok(amount) => amount > awx_types::Amount::api_max(USD_DECIMALS),
        Err(error) => error == awx_types::AmountError::Overflow,
    };
    if above { Err(too_large(field, "dollars")) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_has_a_named_action() {
        let (_, openapi) = router().split_for_parts();
        for (path, item) in &openapi.paths.paths {
            for method in ["get", "post", "delete", "put", "patch"] {
                let value = serde_json::to_value(item).unwrap();
                if value.get(method).is_some() {
                    let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
                    assert_ne!(action(&method, path), "default", "{method} {path} has no action");
                }
            }
        }
    }

    #[test]
    fn amounts_are_bounded_at_a_billion_whole_units() {
        let usdc = awx_x402::TokenRegistry::builtin().iter().next().unwrap().clone();
        assert_eq!(usdc.decimals, 6);
        assert_eq!(positive_amount("1000000000", &usdc).unwrap().atomic(), 10u128.pow(15));
        for (text, message) in [
            ("1000000000.000001", "amount must be at most 1000000000 USDC"),
            ("1000000000000000000", "amount must be at most 1000000000 USDC"),
            ("1000000000000000000000000000000000000000", "amount must be at most 1000000000 USDC"),
            ("0", "amount must be a positive amount of USDC with at most 6 decimals"),
            ("0.0000001", "amount must be a positive amount of USDC with at most 6 decimals"),
        ] {
            let error = positive_amount(text, &usdc).unwrap_err();
            assert_eq!(error.code(), crate::error::ErrorCode::InvalidField, "{text}");
            assert_eq!(error.field(), Some("amount"), "{text}");
            assert_eq!(error.message(), message, "{text}");
        }
        assert!(dollars_within_max("1000000000.00", "budget_limit").is_ok());
        // Other mistakes are the policy service's to name.
        assert!(dollars_within_max("-1", "budget_limit").is_ok());
        for text in ["1000000000.01", "1000000000000000000000000", &"9".repeat(60)] {
            let error = dollars_within_max(text, "policy.daily_limit").unwrap_err();
            assert_eq!(error.field(), Some("policy.daily_limit"), "{text}");
            assert_eq!(error.message(), "policy.daily_limit must be at most 1000000000 dollars");
        }
    }

    #[test]
    fn withdrawals_have_their_own_actions() {
        let path = "/api/v1/agents/{agent_id}/withdrawals";
        assert_eq!(action(&Method::POST, path), "withdrawals.write");
        assert_eq!(action(&Method::GET, path), "withdrawals.read");
        assert_eq!(action(&Method::GET, &format!("{path}/{{withdrawal_id}}")), "withdrawals.read");
        let path = "/api/v1/account/withdrawal_addresses";
        assert_eq!(action(&Method::GET, path), "withdrawal_addresses.read");
        assert_eq!(action(&Method::PUT, path), "withdrawal_addresses.write");
    }
}
