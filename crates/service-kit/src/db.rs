//! The Postgres pool and the workspace's migrations (`migrations/`, one schema per service).

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use sqlx::postgres::PgPoolOptions;

/// Every migration of the workspace, embedded at build time.
pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations");

/// Where and how to connect to Postgres.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    /// The connection URL; a secret, since it usually carries a password.
    pub url: SecretString,
    /// The most connections the pool opens.
    pub max_connections: u32,
    /// How long to wait for a free connection.
    pub acquire_timeout_ms: u64,
    /// Whether to run the migrations at start.
    pub migrate: bool,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: SecretString::from("postgres://postgres:postgres@127.0.0.1:5432/awx"),
            max_connections: 16,
            acquire_timeout_ms: 5_000,
            migrate: true,
        }
    }
}

/// Connects a pool and, if configured, runs the migrations.
pub async fn connect(settings: &DatabaseSettings) -> Result<PgPool, sqlx::Error> {
    // No ping before each acquire (sqlx's default): it costs a round trip per transaction. A
    // connection that died while idle fails its first statement instead, which every caller
    // treats as a transient database error (a bus command is redelivered), and is dropped.
    let pool = PgPoolOptions::new()
        .test_before_acquire(false)
        .max_connections(settings.max_connections)
        .acquire_timeout(Duration::from_millis(settings.acquire_timeout_ms))
        .connect(settings.url.expose_secret())
        .await?;
    if settings.migrate {
        MIGRATOR.run(&pool).await?;
    }
    Ok(pool)
}

/// Whether Postgres answers, for readiness checks.
pub async fn ping(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT 1").execute(pool).await.map(|_| ())
}
