//! The operations endpoints every service serves: `/health/live`, `/health/ready` and
//! `/metrics`.
//!
//! Liveness says only that the process answers. Readiness runs the service's checks (Postgres,
//! Redis, …) with a time limit each and answers 503 naming those that failed, so a load balancer
//! stops sending work to a replica that cannot do it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;

/// How long one readiness check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

type CheckFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// A named readiness check.
#[derive(Clone)]
pub struct ReadinessCheck {
    name: &'static str,
    check: Arc<dyn Fn() -> CheckFuture + Send + Sync>,
}

impl std::fmt::Debug for ReadinessCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadinessCheck").field("name", &self.name).finish()
    }
}

impl ReadinessCheck {
    /// A check called `name` that runs `check`.
    pub fn new<F, Fut>(name: &'static str, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        Self { name, check: Arc::new(move || Box::pin(check())) }
    }

    /// The Postgres check.
    pub fn postgres(pool: sqlx::PgPool) -> Self {
        Self::new("postgres", move || {
            let pool = pool.clone();
            async move { crate::db::ping(&pool).await.map_err(|error| error.to_string()) }
        })
    }

    async fn run(&self) -> Result<(), String> {
        match tokio::time::timeout(CHECK_TIMEOUT, (self.check)()).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {} ms", CHECK_TIMEOUT.as_millis())),
        }
    }
}

/// The operations router: mount it on the service's HTTP server. Building it installs the
/// Prometheus recorder, so everything recorded from then on is exported.
pub fn router(checks: Vec<ReadinessCheck>) -> Router {
    let _ = crate::metrics::handle();
    Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(Arc::new(checks))
}

/// Serves the operations router on `listener` until `shutdown` fires, as a task `shutdown`
/// tracks; a failure is logged under `service`'s name.
pub fn spawn_server(
    shutdown: &crate::shutdown::Shutdown,
    listener: tokio::net::TcpListener,
    checks: Vec<ReadinessCheck>,
    service: &'static str,
) {
    let stopping = shutdown.clone();
    shutdown.spawn(async move {
        let served = axum::serve(listener, router(checks))
            .with_graceful_shutdown(async move { stopping.cancelled().await })
            .await;
        if let Err(error) = served {
            tracing::error!(error.message = %error, service, "ops endpoints failed");
        }
    });
}

async fn live() -> impl IntoResponse {
    axum::Json(json!({"status": "ok"}))
}

async fn ready(State(checks): State<Arc<Vec<ReadinessCheck>>>) -> impl IntoResponse {
    let results = futures::future::join_all(
        checks.iter().map(|check| async move { (check.name, check.run().await) }),
    )
    .await;
    let mut body = serde_json::Map::new();
    let mut all_ok = true;
    for (name, result) in results {
        let value = match result {
            Ok(()) => json!({"status": "ok"}),
            Err(error) => {
                all_ok = false;
                json!({"status": "failing", "error": error})
            }
        };
        body.insert(name.to_owned(), value);
    }
    let status = if all_ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let overall = if all_ok { "ready" } else { "not_ready" };
    (status, axum::Json(json!({"status": overall, "checks": body})))
}

async fn metrics() -> impl IntoResponse {
    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], crate::metrics::render())
}
