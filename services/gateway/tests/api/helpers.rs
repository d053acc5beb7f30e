//! Spawning gateways for tests, and small request helpers.

use std::sync::Arc;

use awx_bus::{BusConfig, CommandServer};
use awx_gateway::app::ExtraRoutes;
use awx_gateway::auth::key::Scope;
use awx_gateway::config::{ActionLimits, Rate};
use awx_gateway::state::AppState;
use awx_gateway::{App, GatewaySettings};
use awx_service_kit::shutdown::Shutdown;
use awx_test_support::{RedisNamespace, TestDb};
use axum::Router;
use secrecy::SecretString;
use serde_json::Value;

/// The database and Redis namespace that replicas of one test share.
pub(crate) struct Backing {
    pub(crate) db: TestDb,
    pub(crate) redis: RedisNamespace,
    pub(crate) redis_url: String,
}

impl Backing {
    pub(crate) async fn new() -> Arc<Self> {
        awx_test_support::init_logging();
        Arc::new(Self {
            db: TestDb::new().await,
            redis: RedisNamespace::new(),
            redis_url: awx_test_support::redis_url(),
        })
    }

    /// Like [`Backing::new`], with Redis at `url` (a private server).
    pub(crate) async fn with_redis(url: String) -> Arc<Self> {
        awx_test_support::init_logging();
        Arc::new(Self { db: TestDb::new().await, redis: RedisNamespace::on(&url), redis_url: url })
    }

    /// Gateway settings for a replica on this backing.
    pub(crate) fn settings(&self) -> GatewaySettings {
        let mut settings = GatewaySettings::default();
        settings.http.addr = "127.0.0.1:0".into();
        settings.database.url = SecretString::from(self.db.url());
        settings.database.max_connections = 5;
        settings.database.migrate = false;
        settings.bus.redis_url = SecretString::from(self.redis_url.clone());
        settings.bus.prefix = self.redis.prefix().to_owned();
        // Generous limits by default, so tests about other things are never rate limited.
        let generous = ActionLimits {
            per_key: Rate { per_second: 10_000, burst: 10_000 },
            global: Rate { per_second: 100_000, burst: 100_000 },
        };
        settings.rate_limits.default = generous;
        settings.rate_limits.actions.clear();
        settings
    }
}

/// A running gateway replica.
pub(crate) struct TestApp {
    pub(crate) address: String,
    pub(crate) client: reqwest::Client,
    pub(crate) state: Arc<AppState>,
    _backing: Arc<Backing>,
    shutdown: Shutdown,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    /// One replica with default test settings.
    pub(crate) async fn spawn() -> Self {
        let backing = Backing::new().await;
        Self::replica(&backing, |_| {}).await
    }

    /// A replica on `backing`, with settings adjusted by `adjust`.
    pub(crate) async fn replica(
        backing: &Arc<Backing>,
        adjust: impl FnOnce(&mut GatewaySettings),
    ) -> Self {
        Self::replica_with_routes(backing, adjust, Router::new()).await
    }

    /// A replica with extra public routes behind the outer middleware.
    pub(crate) async fn replica_with_routes(
        backing: &Arc<Backing>,
        adjust: impl FnOnce(&mut GatewaySettings),
        public: Router,
    ) -> Self {
        Self::replica_with_extra(backing, adjust, ExtraRoutes { public, ..Default::default() })
            .await
    }

    /// A replica with extra routes.
    pub(crate) async fn replica_with_extra(
        backing: &Arc<Backing>,
        adjust: impl FnOnce(&mut GatewaySettings),
        extra: ExtraRoutes,
    ) -> Self {
        let mut settings = backing.settings();
        adjust(&mut settings);
        let app = App::build_with_routes(settings, extra).await.expect("build the gateway");
        let address = format!("http://{}", app.local_addr().unwrap());
        let state = app.state();
        let shutdown = Shutdown::new();
        let server = tokio::spawn(app.run(shutdown.clone()));
        Self {
            address,
            client: reqwest::Client::new(),
            state,
            _backing: backing.clone(),
            shutdown,
            server: Some(server),
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// Creates an account with an admin key (through the same code as `awx admin`).
    pub(crate) async fn account(&self, name: &str) -> (String, String) {
        let (account, key) = awx_gateway::accounts::create_account(
            &self.state.pool,
            &self.state.settings.auth,
            name,
        )
        .await
        .unwrap();
        (awx_types::AccountId::from_uuid(account.id).to_string(), key.plaintext.expose().to_owned())
    }

    /// Creates a key with `scopes` through the API; returns (key id, api key).
    pub(crate) async fn create_key(&self, admin_key: &str, scopes: &[Scope]) -> (String, String) {
        let response = self
            .client
            .post(self.url("/api/v1/keys"))
            .header("x-api-key", admin_key)
            .json(&serde_json::json!({"name": "test key", "scopes": scopes}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.unwrap();
        (body["id"].as_str().unwrap().to_owned(), body["api_key"].as_str().unwrap().to_owned())
    }

    pub(crate) async fn get(&self, path: &str, key: &str) -> reqwest::Response {
        self.client.get(self.url(path)).header("x-api-key", key).send().await.unwrap()
    }

    pub(crate) fn shutdown_handle(&self) -> Shutdown {
        self.shutdown.clone()
    }

    pub(crate) fn take_server(&mut self) -> tokio::task::JoinHandle<anyhow::Result<()>> {
        self.server.take().expect("server still running")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

/// The `error.code` of an error envelope.
pub(crate) async fn error_code(response: reqwest::Response) -> (u16, String, Value) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    (status, body["error"]["code"].as_str().unwrap_or("").to_owned(), body)
}

/// Serves one fake service's command family on the test's bus, until the returned handle is
/// triggered (or dropped with the test's runtime).
pub(crate) async fn serve(
    backing: &Backing,
    name: &str,
    family: &str,
    build: impl FnOnce(CommandServer) -> CommandServer,
) -> Shutdown {
    let schema = format!("fake_{name}");
    sqlx::query("SELECT public.awx_bus_install($1)")
        .bind(&schema)
        .execute(&backing.db.pool)
        .await
        .unwrap();
    let mut config = BusConfig::new(&schema, &schema);
    config.redis_url = SecretString::from(backing.redis_url.clone());
    config.prefix = backing.redis.prefix().to_owned();
    let bus = awx_bus::Bus::connect(config).await.unwrap();
    let server = build(CommandServer::new(&bus, backing.db.pool.clone(), family).unwrap());
    let shutdown = Shutdown::new();
    tokio::spawn(server.run(shutdown.token()));
    shutdown
}
