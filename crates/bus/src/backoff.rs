//! Capped exponential backoff with jitter, for loops that retry after Redis or Postgres errors,
//! and a sleep that ends early on shutdown.

use std::time::Duration;

use rand::Rng as _;
use tokio_util::sync::CancellationToken;

/// The first delay after an error.
const FIRST_DELAY: Duration = Duration::from_millis(50);

/// Exponential backoff: 50 ms, doubling, capped; each delay is drawn from its upper half so
/// replicas that failed together do not retry together.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub(crate) fn new(max: Duration) -> Self {
        Self { next: FIRST_DELAY.min(max), max }
    }

    /// The delay before the next attempt; each call doubles the following one, up to the cap.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        let half = delay / 2;
        let jitter_ms =
            rand::rng().random_range(0..=u64::try_from(half.as_millis()).unwrap_or(u64::MAX));
        half.saturating_add(Duration::from_millis(jitter_ms))
    }

    /// Back to the first delay, after a success.
    pub(crate) fn reset(&mut self) {
        self.next = FIRST_DELAY.min(self.max);
    }

    /// Sleeps for the next delay; returns early (false) when `cancel` fires.
    pub(crate) async fn wait(&mut self, cancel: &CancellationToken) -> bool {
        sleep_or_cancel(self.next_delay(), cancel).await
    }
}

/// Sleeps for `duration`; returns false if `cancel` fired first.
pub(crate) async fn sleep_or_cancel(duration: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep(duration) => true,
        () = cancel.cancelled() => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_to_the_cap_and_reset() {
        let mut backoff = Backoff::new(Duration::from_millis(400));
        let delays: Vec<Duration> = (0..6).map(|_| backoff.next_delay()).collect();
        for delay in &delays {
            assert!(*delay <= Duration::from_millis(400), "{delay:?}");
        }
        assert!(delays[5] >= Duration::from_millis(200), "capped delays stay in the upper half");
        backoff.reset();
        assert!(backoff.next_delay() <= FIRST_DELAY);
    }
}
