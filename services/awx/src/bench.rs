//! What the benchmark subcommands share: workers timed for a while, and how results are
//! printed.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

pub(crate) fn say(line: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

/// Latency figures of a sample, in milliseconds.
pub(crate) fn summary(label: &str, mut samples: Vec<Duration>, wall: Duration) -> String {
    samples.sort_unstable();
    let count = samples.len();
    let at = |quantile_per_mille: usize| {
        let index = (count.saturating_mul(quantile_per_mille) / 1000).min(count.saturating_sub(1));
        samples.get(index).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let rate = if wall.is_zero() {
        0.0
    } else {
        f64::from(u32::try_from(count).unwrap_or(u32::MAX)) / wall.as_secs_f64()
    };
    format!(
        "{label}: {count} in {:.1} s = {rate:.1}/s; latency p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        wall.as_secs_f64(),
        at(500),
        at(900),
        at(990),
        samples.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    )
}

/// Runs one worker per state, each calling `step` again and again until `seconds` have passed;
/// returns every step's duration and the wall time. Any failing step fails the whole run.
pub(crate) async fn timed_workers<S, F, Fut>(
    states: Vec<S>,
    seconds: u64,
    step: F,
) -> anyhow::Result<(Vec<Duration>, Duration)>
where
    S: Clone + Send + 'static,
    F: Fn(S) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = anyhow::Result<Duration>> + Send,
{
    let samples = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut workers = Vec::new();
    for state in states {
        let (samples, step) = (samples.clone(), step.clone());
        workers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            while Instant::now() < deadline {
                mine.push(step(state.clone()).await?);
            }
            samples.lock().await.extend(mine);
            anyhow::Ok(())
        }));
    }
    for worker in workers {
        worker.await??;
    }
    let wall = started.elapsed();
    let samples = std::mem::take(&mut *samples.lock().await);
    Ok((samples, wall))
}
