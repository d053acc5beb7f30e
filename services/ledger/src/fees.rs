//! The fee schedule in effect and tenants' 30-day settled volume.
//!
//! The schedule is versioned in `ledger.fee_schedules`; the version in effect is the latest whose
//! `effective_from` has passed. A tenant's volume is the sum of its captured payments over the
//! last 30 days. Both are cached for [`CACHE_TTL`], so a tier change takes effect within a minute;
//! a payment's rate is fixed when its hold is placed.

use std::sync::Arc;
use std::time::Duration;

use awx_ledger_core::fees::{FeeSchedule, Tier};
use awx_types::AccountId;
use rust_decimal::Decimal;
use sqlx::PgConnection;

use crate::error::LedgerFailure;

/// How long schedules and volumes are cached.
pub const CACHE_TTL: Duration = Duration::from_secs(60);

/// A schedule version in effect.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleVersion {
    /// The version.
    pub version: i32,
    /// Since when (Unix seconds).
    pub effective_from_unix: i64,
    /// The tiers.
    pub schedule: FeeSchedule,
}

/// Caches of the schedule and volumes.
#[derive(Debug)]
pub struct FeeBook {
    schedule: moka::future::Cache<(), Arc<ScheduleVersion>>,
    volumes: moka::future::Cache<AccountId, Decimal>,
}

impl Default for FeeBook {
    fn default() -> Self {
        Self {
            schedule: moka::future::Cache::builder().time_to_live(CACHE_TTL).build(),
            volumes: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(CACHE_TTL)
                .build(),
        }
    }
}

/// The schedule in effect now, read from the database.
pub async fn load_schedule(conn: &mut PgConnection) -> Result<ScheduleVersion, LedgerFailure> {
    let (version, effective_from, tiers): (i32, chrono::DateTime<chrono::Utc>, serde_json::Value) =
        sqlx::query_as(
            "SELECT version, effective_from, tiers FROM ledger.fee_schedules
         WHERE effective_from <= now() ORDER BY effective_from DESC LIMIT 1",
        )
        .fetch_one(conn)
        .await?;
    let tiers: Vec<Tier> = serde_json::from_value(tiers)
        .map_err(|error| LedgerFailure::Internal(format!("fee schedule {version}: {error}")))?;
    let schedule = FeeSchedule { tiers };
    schedule
        .validate()
        .map_err(|error| LedgerFailure::Internal(format!("fee schedule {version}: {error}")))?;
    Ok(ScheduleVersion { version, effective_from_unix: effective_from.timestamp(), schedule })
}

/// A tenant's captured volume (dollars) over the last 30 days, read from the database.
pub async fn load_volume(
    conn: &mut PgConnection,
    owner: AccountId,
) -> Result<Decimal, LedgerFailure> {
    let volume: Option<Decimal> = sqlx::query_scalar(
        "SELECT sum(volume_usd) FROM ledger.captures WHERE owner = $1 AND captured_at > now() - interval '30 days'",
    )
    .bind(owner.as_uuid())
    .fetch_one(conn)
    .await?;
    Ok(volume.unwrap_or(Decimal::ZERO))
}

impl FeeBook {
    /// The schedule in effect (cached).
    pub async fn schedule(
        &self,
        conn: &mut PgConnection,
    ) -> Result<Arc<ScheduleVersion>, LedgerFailure> {
        if let Some(schedule) = self.schedule.get(&()).await {
            return Ok(schedule);
        }
        let schedule = Arc::new(load_schedule(conn).await?);
        self.schedule.insert((), schedule.clone()).await;
        Ok(schedule)
    }

    /// A tenant's 30-day volume (cached).
    pub async fn volume(
        &self,
        conn: &mut PgConnection,
        owner: AccountId,
    ) -> Result<Decimal, LedgerFailure> {
        if let Some(volume) = self.volumes.get(&owner).await {
            return Ok(volume);
        }
        let volume = load_volume(conn, owner).await?;
        self.volumes.insert(owner, volume).await;
        Ok(volume)
    }

    /// A tenant's current tier and rate.
    pub async fn tier(
        &self,
        conn: &mut PgConnection,
        owner: AccountId,
    ) -> Result<(Tier, Decimal), LedgerFailure> {
        let schedule = self.schedule(conn).await?;
        let volume = self.volume(conn, owner).await?;
        let tier = schedule.schedule.tier_for(volume).cloned().ok_or_else(|| {
            LedgerFailure::Internal("the fee schedule has no tier for this volume".into())
        })?;
        Ok((tier, volume))
    }

    /// Forgets cached values (after a schedule change, and in tests).
    pub fn invalidate(&self) {
        self.schedule.invalidate_all();
        self.volumes.invalidate_all();
    }
}
