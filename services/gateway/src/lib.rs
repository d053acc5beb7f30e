//! The awx gateway: the platform's only public ingress.
//!
//! A request passes, outermost first: the request id ([`request_id`]), a tracing span, the header
//! size limit, panic capture (a panic is a 500 envelope with the request id, never a dead
//! process), the request timeout, the body size limit; then, on `/api/v1` routes,
//! authentication ([`auth`]), rate limits ([`ratelimit`]) and `Idempotency-Key` handling
//! ([`idempotency`]); then the handler ([`routes`]). Errors are one envelope ([`error`]).
//! `/openapi.json` and `/docs` ([`openapi`]) and the service kit's `/health/*` and `/metrics`
//! are served too.
//!
//! URLs that agents name (x402 challenges) are fetched through [`outbound`], which refuses
//! loopback, private and other non-public targets.
//!
//! The gateway owns the `gateway` schema: accounts, API keys (argon2id hashes), idempotency
//! records ([`store`], [`accounts`]).

pub mod accounts;
pub mod app;
pub mod auth;
pub mod config;
pub mod error;
pub mod extract;
pub mod idempotency;
pub mod middleware;
pub mod openapi;
pub mod outbound;
pub mod ratelimit;
pub mod request_id;
pub mod routes;
pub mod state;
pub mod store;
pub mod upstream;

pub use app::App;
pub use config::GatewaySettings;
