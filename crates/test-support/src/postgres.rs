//! A fresh Postgres database per test.

use std::time::{SystemTime, UNIX_EPOCH};

use awx_service_kit::db::MIGRATOR;
use sha2::{Digest, Sha256};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection, PgPool};
use tokio::sync::OnceCell;

/// Test databases older than this are left over from crashed runs and are dropped.
const STALE_AFTER_SECONDS: u64 = 3_600;

static TEMPLATE: OnceCell<String> = OnceCell::const_new();

/// The administrative database URL tests create databases through.
pub fn admin_database_url() -> String {
    std::env::var("AWX_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/postgres".to_owned())
}

fn now_seconds() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs()
}

/// A database of its own for one test, with every migration applied. Dropped with the value.
#[derive(Debug)]
pub struct TestDb {
    /// A pool on the test database (5 connections).
    pub pool: PgPool,
    name: String,
    options: PgConnectOptions,
}

fn admin_options() -> PgConnectOptions {
    admin_database_url().parse().expect("AWX_TEST_DATABASE_URL is a Postgres URL")
}

async fn admin_connection() -> PgConnection {
    PgConnection::connect(&admin_database_url())
        .await
        .expect("Postgres must be running: `make setup` starts it (AWX_TEST_DATABASE_URL)")
}

/// The template's name depends on the migrations' checksums, so a changed migration gets a new
/// template.
fn template_name() -> String {
    let mut hasher = Sha256::new();
    for migration in MIGRATOR.iter() {
        hasher.update(migration.version.to_be_bytes());
        hasher.update(&*migration.checksum);
    }
    let digest = hasher.finalize();
    let hex: String = digest.iter().take(8).map(|byte| format!("{byte:02x}")).collect();
    format!("awx_tpl_{hex}")
}

async fn ensure_template() -> String {
    TEMPLATE
        .get_or_init(|| async {
            let name = template_name();
            let mut admin = admin_connection().await;
            // One creator at a time, across test processes too.
            admin.execute("SELECT pg_advisory_lock(727361)").await.expect("advisory lock");
            let exists: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                    .bind(&name)
                    .fetch_one(&mut admin)
                    .await
                    .expect("query pg_database");
            if !exists {
                let building = format!("{name}_building");
                admin
                    .execute(AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {building} WITH (FORCE)"
                    )))
                    .await
                    .expect("drop a half-built template");
                admin
                    .execute(AssertSqlSafe(format!("CREATE DATABASE {building}")))
                    .await
                    .expect("create the template");
                let options = admin_options().database(&building);
                let mut conn =
                    PgConnection::connect_with(&options).await.expect("connect template");
                MIGRATOR.run(&mut conn).await.expect("migrate the template");
                conn.close().await.expect("close template connection");
                admin
                    .execute(AssertSqlSafe(format!("ALTER DATABASE {building} RENAME TO {name}")))
                    .await
                    .expect("publish the template");
            }
            drop_stale_databases(&mut admin, &name).await;
            admin.execute("SELECT pg_advisory_unlock(727361)").await.expect("advisory unlock");
            name
        })
        .await
        .clone()
}

/// Drops templates of other migration sets and test databases left by crashed runs.
async fn drop_stale_databases(admin: &mut PgConnection, current_template: &str) {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT datname FROM pg_database WHERE datname LIKE 'awx\\_tpl\\_%' OR datname LIKE 'awx\\_test\\_%'",
    )
    .fetch_all(&mut *admin)
    .await
    .expect("list databases");
    let cutoff = now_seconds().saturating_sub(STALE_AFTER_SECONDS);
    for name in names {
        let stale = if let Some(rest) = name.strip_prefix("awx_test_") {
            rest.split('_').next().and_then(|s| s.parse::<u64>().ok()).is_some_and(|t| t < cutoff)
        } else {
            name != current_template && !name.ends_with("_building")
        };
        if stale {
            let _ = admin
                .execute(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                .await;
        }
    }
}

impl TestDb {
    /// Creates a fresh, fully migrated database.
    pub async fn new() -> Self {
        let template = ensure_template().await;
        let name = format!("awx_test_{}_{}", now_seconds(), uuid::Uuid::new_v4().simple());
        let mut admin = admin_connection().await;
        admin
            .execute(AssertSqlSafe(format!("CREATE DATABASE {name} TEMPLATE {template}")))
            .await
            .expect("create the test database");
        let options = admin_options().database(&name);
        let _ = admin.close().await;
        let pool = PgPoolOptions::new()
            .max_connections(5)
            .connect_with(options.clone())
            .await
            .expect("connect the test database");
        Self { pool, name, options }
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Connection options for the test database (to build more pools, as replicas would).
    pub fn connect_options(&self) -> PgConnectOptions {
        self.options.clone()
    }

    /// A connection URL for the test database.
    pub fn url(&self) -> String {
        let admin = admin_database_url();
        match admin.rfind('/') {
            Some(slash) => format!("{}/{}", &admin[..slash], self.name),
            None => panic!("AWX_TEST_DATABASE_URL has no database part: {admin}"),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Dropping needs async I/O and Drop cannot await: do it on a short-lived thread with its
        // own runtime, and wait for it so the database is gone when the test ends.
        let dropper = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(mut admin) = PgConnection::connect(&admin_database_url()).await {
                    let _ = admin
                        .execute(AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                        )))
                        .await;
                }
            });
        });
        let _ = dropper.join();
    }
}
