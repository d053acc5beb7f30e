//! [`AwxClient`]: the platform API over `reqwest`, one typed method per endpoint an agent or a
//! provider uses: agents, sessions, pay and session pay, payments, check, fee tiers, and the
//! facilitator. Every non-2xx answer becomes [`ClientError::Api`] from the error envelope.

use std::time::Duration;

use awx_x402::{FacilitatorRequest, SettleResponse, SupportedResponse, VerifyResponse};
use reqwest::Method;
use secrecy::{ExposeSecret as _, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use url::Url;

use crate::error::ClientError;
use crate::types::{
    Agent, AgentList, CheckResult, CreateAgent, CreateSession, FeeTiers, Funded, PayRequest,
    Payment, Policy, Session, SessionPayRequest,
};

/// The header carrying the API key.
pub const API_KEY_HEADER: &str = "x-api-key";
/// The header making a POST idempotent.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";

/// A client of the awx platform API. Cheap to clone (the HTTP client is shared).
#[derive(Clone)]
pub struct AwxClient {
    http: reqwest::Client,
    base: Url,
    api_key: SecretString,
}

impl std::fmt::Debug for AwxClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwxClient").field("base", &self.base.as_str()).finish_non_exhaustive()
    }
}

impl AwxClient {
    /// A client of the platform at `base_url` (`https://awx.example.com`) with `api_key`.
    pub fn new(base_url: &str, api_key: impl Into<String>) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(ClientError::Transport)?;
        Self::with_http(http, base_url, api_key)
    }

    /// [`AwxClient::new`] over a `reqwest::Client` of the caller's.
    pub fn with_http(
        http: reqwest::Client,
        base_url: &str,
        api_key: impl Into<String>,
    ) -> Result<Self, ClientError> {
        let invalid =
            |message: String| ClientError::InvalidUrl { url: base_url.to_owned(), message };
        let mut base = Url::parse(base_url).map_err(|error| invalid(error.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(invalid("the scheme must be http or https".into()));
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        Ok(Self { http, base, api_key: SecretString::from(api_key.into()) })
    }

    /// The platform's base URL.
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    fn url(&self, path: &str) -> Result<Url, ClientError> {
        self.base.join(path.trim_start_matches('/')).map_err(|error| ClientError::InvalidUrl {
            url: path.to_owned(),
            message: error.to_string(),
        })
    }

    /// Sends one request and decodes a 2xx JSON answer into `T`.
    async fn send<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + Sync)>,
        idempotency_key: Option<&str>,
    ) -> Result<T, ClientError> {
        let mut request = self
            .http
            .request(method, self.url(path)?)
            .header(API_KEY_HEADER, self.api_key.expose_secret());
        if let Some(key) = idempotency_key {
            request = request.header(IDEMPOTENCY_KEY_HEADER, key);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await?;
        if !(200..300).contains(&status) {
            return Err(ClientError::from_answer(status, &bytes));
        }
        serde_json::from_slice(&bytes)
            .map_err(|error| ClientError::Decode { status, message: error.to_string() })
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.send(Method::GET, path, None::<&()>, None).await
    }

    async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &(impl Serialize + Sync),
    ) -> Result<T, ClientError> {
        self.send(Method::POST, path, Some(body), None).await
    }

    // Agents.

    /// Creates an agent (admin key).
    pub async fn create_agent(&self, agent: &CreateAgent) -> Result<Agent, ClientError> {
        self.post("api/v1/agents", agent).await
    }

    /// One agent, with its balances.
    pub async fn get_agent(&self, agent_id: &str) -> Result<Agent, ClientError> {
        self.get(&format!("api/v1/agents/{}", segment(agent_id)?)).await
    }

    /// The account's agents, newest first.
    pub async fn list_agents(&self) -> Result<Vec<Agent>, ClientError> {
        let list: AgentList = self.get("api/v1/agents").await?;
        Ok(list.agents)
    }

    /// Deletes an agent (admin key).
    pub async fn delete_agent(&self, agent_id: &str) -> Result<Agent, ClientError> {
        self.send(
            Method::DELETE,
            &format!("api/v1/agents/{}", segment(agent_id)?),
            None::<&()>,
            None,
        )
        .await
    }

    /// Replaces an agent's policy (admin key).
    pub async fn set_policy(&self, agent_id: &str, policy: &Policy) -> Result<Agent, ClientError> {
        self.send(
            Method::PUT,
            &format!("api/v1/agents/{}/policy", segment(agent_id)?),
            Some(policy),
            None,
        )
        .await
    }

    /// Funds an agent from the development faucet with `amount` (decimal token units).
    pub async fn fund_agent(&self, agent_id: &str, amount: &str) -> Result<Funded, ClientError> {
        self.post(&format!("api/v1/agents/{}/fund", segment(agent_id)?), &json!({"amount": amount}))
            .await
    }

    // Sessions.

    /// Creates a session: a budget and a lifetime for an agent's payments.
    pub async fn create_session(&self, session: &CreateSession) -> Result<Session, ClientError> {
        self.post("api/v1/x402/sessions", session).await
    }

    /// One session, with what it spent.
    pub async fn get_session(&self, session_id: &str) -> Result<Session, ClientError> {
        self.get(&format!("api/v1/x402/sessions/{}", segment(session_id)?)).await
    }

    /// Revokes a session: it pays nothing more.
    pub async fn revoke_session(&self, session_id: &str) -> Result<Session, ClientError> {
        self.send(
            Method::DELETE,
            &format!("api/v1/x402/sessions/{}", segment(session_id)?),
            None::<&()>,
            None,
        )
        .await
    }

    // Payments.

    /// Pays an x402 URL from an agent's wallet (optionally from a session). With an
    /// `idempotency_key`, repeating the call (after a timeout, say) cannot pay twice.
    pub async fn pay(
        &self,
        request: &PayRequest,
        idempotency_key: Option<&str>,
    ) -> Result<Payment, ClientError> {
        self.send(Method::POST, "api/v1/x402/pay", Some(request), idempotency_key).await
    }

    /// Pays an x402 URL from a session (its agent, chain and budget).
    pub async fn session_pay(
        &self,
        session_id: &str,
        target_url: &str,
        idempotency_key: Option<&str>,
    ) -> Result<Payment, ClientError> {
        self.send(
            Method::POST,
            &format!("api/v1/x402/sessions/{}/pay", segment(session_id)?),
            Some(&SessionPayRequest { target_url }),
            idempotency_key,
        )
        .await
    }

    /// One payment, with its settlement.
    pub async fn get_payment(&self, ledger_id: &str) -> Result<Payment, ClientError> {
        self.get(&format!("api/v1/x402/payments/{}", segment(ledger_id)?)).await
    }

    /// What an URL asks for, and which of its offers the platform can pay; pays nothing.
    pub async fn check(&self, url: &str) -> Result<CheckResult, ClientError> {
        self.post("api/v1/x402/check", &json!({"url": url})).await
    }

    /// The fee schedule and the caller's tier.
    pub async fn fee_tiers(&self) -> Result<FeeTiers, ClientError> {
        self.get("api/v1/x402/fees/tiers").await
    }

    // Facilitator (provider key).

    /// `POST /x402/facilitator/verify`.
    pub async fn facilitator_verify(
        &self,
        request: &FacilitatorRequest,
    ) -> Result<VerifyResponse, ClientError> {
        self.post("api/v1/x402/facilitator/verify", request).await
    }

    /// `POST /x402/facilitator/settle`.
    pub async fn facilitator_settle(
        &self,
        request: &FacilitatorRequest,
    ) -> Result<SettleResponse, ClientError> {
        self.post("api/v1/x402/facilitator/settle", request).await
    }

    /// `GET /x402/facilitator/supported`.
    pub async fn facilitator_supported(&self) -> Result<SupportedResponse, ClientError> {
        self.get("api/v1/x402/facilitator/supported").await
    }
}

/// An id as one path segment: ids are `prefix_hex`, so anything else is refused rather than
/// sent (a `/` or `?` in an id must not reach another route).
fn segment(id: &str) -> Result<&str, ClientError> {
    if !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        Ok(id)
    } else {
        Err(ClientError::InvalidUrl { url: id.to_owned(), message: "not an id".into() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_paths_under_the_base_and_refuses_odd_ids() {
        let client = AwxClient::new("http://127.0.0.1:8080/awx", "k").unwrap();
        assert_eq!(
            client.url("api/v1/agents").unwrap().as_str(),
            "http://127.0.0.1:8080/awx/api/v1/agents"
        );
        assert!(segment("agt_0190a3c48f2b7c3e9d1e5f6a7b8c9d0e").is_ok());
        assert!(segment("../keys").is_err());
        assert!(segment("").is_err());
        assert!(AwxClient::new("ftp://x", "k").is_err());
        assert!(!format!("{client:?}").contains("\"k\""));
    }
}
