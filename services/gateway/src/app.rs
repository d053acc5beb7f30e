//! Building and running the gateway: connections, state, the router with its middleware stack,
//! and graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use awx_service_kit::ops::{self, ReadinessCheck};
use awx_service_kit::shutdown::Shutdown;
use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, Request};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

use crate::auth::Authenticator;
use crate::config::GatewaySettings;
use crate::error::{ApiError, ErrorCode};
use crate::outbound::Outbound;
use crate::ratelimit::RateLimiter;
use crate::request_id::{self, RequestId};
use crate::state::AppState;
use crate::{auth, idempotency, middleware, openapi, routes};
use awx_bus::ratelimit::SharedLimiter;

/// How long a rate-limit check waits for Redis before limiting locally.
const SHARED_LIMITER_TIMEOUT: Duration = Duration::from_millis(250);

/// How often expired idempotency records are deleted.
const SWEEP_INTERVAL: Duration = Duration::from_secs(600);

/// Routes added to the gateway's own (tests use this for handlers that panic, hang or fail).
#[derive(Debug, Default)]
pub struct ExtraRoutes {
    /// Served behind the outer middleware only (request id, panics, timeout, limits).
    pub public: Router,
    /// Served like `/api/v1` routes: authentication, rate limits (action `default`) and
    /// `Idempotency-Key` too.
    pub authenticated: Router<Arc<AppState>>,
}

/// A built gateway, bound to its port, not yet serving.
#[derive(Debug)]
pub struct App {
    listener: tokio::net::TcpListener,
    router: Router,
    state: Arc<AppState>,
}

impl App {
    /// Connects to Postgres (running migrations if configured) and Redis, and binds the listener.
    pub async fn build(settings: GatewaySettings) -> anyhow::Result<Self> {
        Self::build_with_routes(settings, ExtraRoutes::default()).await
    }

    /// As [`App::build`], also serving `extra` routes.
    pub async fn build_with_routes(
        settings: GatewaySettings,
        extra: ExtraRoutes,
    ) -> anyhow::Result<Self> {
        let mut settings = settings;
        // The bus identity is the gateway's own, whatever a config file left out.
        settings.bus.service = crate::config::SERVICE.to_owned();
        settings.bus.schema = crate::config::SERVICE.to_owned();
        let pool = awx_service_kit::db::connect(&settings.database)
            .await
            .context("connecting to Postgres")?;
        // Connections are lazy: the gateway starts (and limits locally) while Redis is down.
        let bus =
            awx_bus::Bus::connect(settings.bus.clone()).await.context("connecting the bus")?;
        let shared = SharedLimiter::new(&bus, SHARED_LIMITER_TIMEOUT)
            .context("creating the shared rate limiter")?;
        let registry =
            settings.registry().map_err(anyhow::Error::msg).context("the token registry")?;
        let outbound =
            Outbound::new(&settings.outbound).context("building the outbound HTTP client")?;
        let state = Arc::new(AppState {
            registry,
            outbound,
            authenticator: Authenticator::new(pool.clone(), settings.auth.clone()),
            rate_limiter: RateLimiter::new(
                settings.rate_limits.clone(),
                bus.clone(),
                shared,
                pool.clone(),
            ),
            pool,
            bus,
            settings,
            issued: awx_api::issued::IssuedMemory::default(),
        });
        let listener = tokio::net::TcpListener::bind(&state.settings.http.addr)
            .await
            .with_context(|| format!("binding {}", state.settings.http.addr))?;
        let router = router(&state, extra);
        Ok(Self { listener, router, state })
    }

    /// The bound address (with the real port when configured with port 0).
    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        self.listener.local_addr().context("reading the bound address")
    }

    /// The shared state.
    pub fn state(&self) -> Arc<AppState> {
        self.state.clone()
    }

    /// Serves until `shutdown` is triggered, then stops accepting connections and waits up to
    /// `http.shutdown_grace_ms` for in-flight requests to finish.
    pub async fn run(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let pool = self.state.pool.clone();
        let sweeper_shutdown = shutdown.clone();
        shutdown.spawn(async move {
            loop {
                tokio::select! {
                    () = sweeper_shutdown.cancelled() => break,
                    () = tokio::time::sleep(SWEEP_INTERVAL) => {
                        if let Err(error) = idempotency::sweep(&pool).await {
                            tracing::warn!(error.message = %error, "idempotency sweep failed");
                        }
                    }
                }
            }
        });
        // Our agents' authorizations, as the policy service announces them (and their captures).
        let state = self.state.clone();
        let issued = awx_bus::NoticeListener::new(
            &self.state.bus,
            move |notice: awx_api::issued::IssuedNotice| {
                if !state.issued.apply(notice) {
                    metrics::counter!("gateway_issued_memory_full_total").increment(1);
                }
            },
        )
        .context("listening to the announced authorizations")?;
        shutdown.spawn(issued.run(shutdown.token()));
        let grace = Duration::from_millis(self.state.settings.http.shutdown_grace_ms);
        let stopping = shutdown.clone();
        let mut server = tokio::spawn(
            axum::serve(self.listener, self.router)
                .with_graceful_shutdown(async move { stopping.cancelled().await })
                .into_future(),
        );
        tokio::select! {
            result = &mut server => {
                return result.context("server task")?.context("serving HTTP");
            }
            () = shutdown.cancelled() => {}
        }
        match tokio::time::timeout(grace, &mut server).await {
            Ok(result) => result.context("server task")?.context("serving HTTP")?,
            Err(_) => {
                tracing::warn!(
                    grace_ms = grace.as_millis(),
                    "in-flight requests outlived the shutdown grace"
                );
                server.abort();
            }
        }
        let _ = shutdown.drain(grace).await;
        self.state.bus.close();
        Ok(())
    }
}

fn panic_response(_panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!(request_id = %request_id::current(), "a request handler panicked");
    ApiError::new(
        ErrorCode::InternalError,
        "an unexpected error occurred; quote the request id when reporting it",
    )
    .into_response()
}

async fn timeout_error(error: tower::BoxError) -> ApiError {
    if error.is::<tower::timeout::error::Elapsed>() {
        ApiError::new(ErrorCode::Timeout, "the request took too long")
    } else {
        ApiError::internal("request handling", &error)
    }
}

fn router(state: &Arc<AppState>, extra: ExtraRoutes) -> Router {
    let (api, _) = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(routes::router())
        .split_for_parts();
    let api = api
        .merge(extra.authenticated)
        .route_layer(from_fn_with_state(state.clone(), idempotency::middleware))
        .route_layer(from_fn_with_state(state.clone(), middleware::rate_limit))
        .route_layer(from_fn_with_state(state.clone(), auth::middleware))
        .with_state(state.clone());
    let docs: Router = SwaggerUi::new("/docs").url("/openapi.json", openapi::document()).into();
    let bus = state.bus.clone();
    let checks = vec![
        ReadinessCheck::postgres(state.pool.clone()),
        ReadinessCheck::new("redis", move || {
            let bus = bus.clone();
            async move { bus.ping().await.map_err(|error| error.to_string()) }
        }),
    ];
    let settings = &state.settings.http;
    Router::new()
        .merge(api)
        .merge(docs)
        .merge(ops::router(checks))
        .merge(extra.public)
        .route_layer(from_fn(middleware::http_metrics))
        .fallback(middleware::not_found)
        .method_not_allowed_fallback(middleware::method_not_allowed)
        .layer(
            ServiceBuilder::new()
                .layer(from_fn(request_id::middleware))
                // Inside the request id's scope, outside everything that may answer an error.
                .layer(from_fn(middleware::envelope_framework_errors))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(|request: &Request| {
                            let id = request
                                .extensions()
                                .get::<RequestId>()
                                .map_or("", |id| id.0.as_str());
                            tracing::info_span!(
                                "request",
                                method = %request.method(),
                                path = %request.uri().path(),
                                request_id = %id,
                                account_id = tracing::field::Empty,
                            )
                        })
                        .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
                )
                .layer(from_fn_with_state(state.clone(), middleware::header_limit))
                .layer(CatchPanicLayer::custom(panic_response))
                .layer(HandleErrorLayer::new(timeout_error))
                .timeout(Duration::from_millis(settings.request_timeout_ms))
                .layer(DefaultBodyLimit::max(settings.body_bytes_max)),
        )
}
