//! Tiered fees.
//!
//! An account's tier follows its 30-day settled volume in US dollars: the tier with the highest
//! lower bound not above the volume (a volume exactly on a boundary belongs to the upper tier).
//! The fee of a payment is `amount × rate / 100`, computed in decimal and rounded half-up to the
//! token's smallest unit, and charged on top of the amount: $0.10 at 2.0% is $0.002.

use awx_types::Amount;
use rust_decimal::prelude::ToPrimitive as _;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

/// One tier of a schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tier {
    /// Its name (`starter`, `growth`, …).
    pub name: String,
    /// The 30-day volume in dollars from which it applies.
    pub volume_from_usd: Decimal,
    /// The fee rate in percent (`2.0` is 2 %).
    pub rate_percent: Decimal,
}

/// The tiers of one version of the fee schedule, lowest volume first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeeSchedule {
    /// The tiers.
    pub tiers: Vec<Tier>,
}

/// Why a schedule or a fee is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeeError {
    /// A schedule needs tiers starting at a volume of zero, in increasing order, with rates
    /// from 0 to 100 %.
    #[error("invalid fee schedule: {0}")]
    InvalidSchedule(&'static str),
    /// The amount is beyond decimal arithmetic's range.
    #[error("the amount is too large to compute a fee for")]
    Overflow,
}

fn tier(name: &str, volume_from_usd: i64, rate_tenths: i64) -> Tier {
    Tier {
        name: name.to_owned(),
        volume_from_usd: Decimal::from(volume_from_usd),
        rate_percent: Decimal::new(rate_tenths, 1),
    }
}

impl FeeSchedule {
    /// The product's default schedule: starter 2.0 % from $0, growth 1.5 % from $1,000, scale
    /// 1.0 % from $10,000, enterprise 0.5 % from $100,000.
    pub fn default_schedule() -> Self {
        Self {
            tiers: vec![
                tier("starter", 0, 20),
                tier("growth", 1_000, 15),
                tier("scale", 10_000, 10),
                tier("enterprise", 100_000, 5),
            ],
        }
    }

    /// Checks the schedule's shape.
    pub fn validate(&self) -> Result<(), FeeError> {
        let first = self.tiers.first().ok_or(FeeError::InvalidSchedule("no tiers"))?;
        if !first.volume_from_usd.is_zero() {
            return Err(FeeError::InvalidSchedule("the first tier must start at a volume of 0"));
        }
        if self.tiers.windows(2).any(|pair| pair[0].volume_from_usd >= pair[1].volume_from_usd) {
            return Err(FeeError::InvalidSchedule("tiers must start at increasing volumes"));
        }
        if self
            .tiers
            .iter()
            .any(|t| t.rate_percent.is_sign_negative() || t.rate_percent > Decimal::ONE_HUNDRED)
        {
            return Err(FeeError::InvalidSchedule("rates must be 0 to 100 percent"));
        }
        Ok(())
    }

    /// The tier of a 30-day volume (in dollars).
    pub fn tier_for(&self, volume_usd: Decimal) -> Option<&Tier> {
        self.tiers.iter().rev().find(|tier| tier.volume_from_usd <= volume_usd)
    }

    /// The tier after `tier`, if any (its lower bound is `tier`'s upper bound).
    pub fn next_tier(&self, tier: &Tier) -> Option<&Tier> {
        let index = self.tiers.iter().position(|t| t == tier)?;
        self.tiers.get(index.checked_add(1)?)
    }
}

/// The fee of `amount` at `rate_percent`, rounded half-up to whole atomic units.
pub fn fee(amount: Amount, rate_percent: Decimal) -> Result<Amount, FeeError> {
    let atomic = i128::try_from(amount.atomic()).map_err(|_| FeeError::Overflow)?;
    let amount = Decimal::try_from_i128_with_scale(atomic, 0).map_err(|_| FeeError::Overflow)?;
    let fee = amount
        .checked_mul(rate_percent)
        .and_then(|product| product.checked_div(Decimal::ONE_HUNDRED))
        .ok_or(FeeError::Overflow)?
        .round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero);
    fee.to_u128().map(Amount::from_atomic).ok_or(FeeError::Overflow)
}

/// A rate as the API shows it: at least one decimal place (`"2.0"`, `"1.5"`, `"0.25"`).
pub fn format_rate(rate_percent: Decimal) -> String {
    let normalized = rate_percent.normalize();
    if normalized.scale() == 0 { format!("{normalized}.0") } else { normalized.to_string() }
}

/// A dollar volume from atomic units of a token with `decimals` decimals (a USD stablecoin).
pub fn usd_volume(amount: Amount, decimals: u8) -> Result<Decimal, FeeError> {
    let atomic = i128::try_from(amount.atomic()).map_err(|_| FeeError::Overflow)?;
    Decimal::try_from_i128_with_scale(atomic, u32::from(decimals)).map_err(|_| FeeError::Overflow)
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    fn d(text: &str) -> Decimal {
        Decimal::from_str(text).unwrap()
    }

    #[test]
    fn fees_round_half_up_to_the_smallest_unit() {
        let cases: &[(u128, &str, u128)] = &[
            (100_000, "2.0", 2_000), // $0.10 at 2.0 % is $0.002, as in the seed
            (1_000_000, "1.5", 15_000),
            (1, "2.0", 0),   // 0.02 units rounds down
            (25, "2.0", 1),  // 0.5 units rounds up (half-up)
            (24, "2.0", 0),  // 0.48 rounds down
            (75, "2.0", 2),  // 1.5 rounds up
            (33, "1.5", 0),  // 0.495 rounds down
            (100, "0.5", 1), // 0.5 rounds up
            (99, "0.5", 0),  // 0.495 rounds down
            (10_000_000_000, "0.5", 50_000_000),
            (0, "2.0", 0),
            (123, "0.0", 0),
        ];
        for &(amount, rate, expected) in cases {
            assert_eq!(
                fee(Amount::from_atomic(amount), d(rate)),
                Ok(Amount::from_atomic(expected)),
                "{amount} at {rate}%"
            );
        }
        assert_eq!(fee(Amount::from_atomic(u128::MAX), d("2.0")), Err(FeeError::Overflow));
    }

    #[test]
    fn tiers_follow_volume_with_boundaries_in_the_upper_tier() {
        let schedule = FeeSchedule::default_schedule();
        schedule.validate().unwrap();
        let cases = [
            ("0", "starter"),
            ("999.999999", "starter"),
            ("1000", "growth"),
            ("9999.99", "growth"),
            ("10000", "scale"),
            ("99999.999999", "scale"),
            ("100000", "enterprise"),
            ("5000000", "enterprise"),
        ];
        for (volume, name) in cases {
            assert_eq!(schedule.tier_for(d(volume)).unwrap().name, name, "{volume}");
        }
        let growth = schedule.tier_for(d("1000")).unwrap();
        assert_eq!(schedule.next_tier(growth).unwrap().name, "scale");
        let enterprise = schedule.tier_for(d("100000")).unwrap();
        assert!(schedule.next_tier(enterprise).is_none());
    }

    #[test]
    fn rates_show_with_a_decimal_place() {
        assert_eq!(format_rate(d("2")), "2.0");
        assert_eq!(format_rate(d("2.0")), "2.0");
        assert_eq!(format_rate(d("1.50")), "1.5");
        assert_eq!(format_rate(d("0.25")), "0.25");
    }

    #[test]
    fn bad_schedules_are_refused() {
        let mut schedule = FeeSchedule::default_schedule();
        schedule.tiers.swap(1, 2);
        assert!(schedule.validate().is_err());
        let mut schedule = FeeSchedule::default_schedule();
        schedule.tiers[0].volume_from_usd = d("1");
        assert!(schedule.validate().is_err());
        let mut schedule = FeeSchedule::default_schedule();
        schedule.tiers[3].rate_percent = d("101");
        assert!(schedule.validate().is_err());
        assert!(FeeSchedule { tiers: vec![] }.validate().is_err());
    }

    #[test]
    fn volumes_convert_exactly() {
        assert_eq!(usd_volume(Amount::from_atomic(1_000_000_000), 6), Ok(d("1000")));
        assert_eq!(usd_volume(Amount::from_atomic(1), 6), Ok(d("0.000001")));
    }
}
