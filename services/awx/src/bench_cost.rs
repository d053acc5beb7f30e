//! What a benchmark phase cost, per operation: CPU time per process group (read from
//! `/proc/<pid>/stat`: the platform's process, the load generator, anvil, every Postgres
//! backend, Redis), and Postgres transactions committed and rows written (`pg_stat_database`
//! of the platform's database). A snapshot is taken before and after the measured phase; the
//! difference divided by the operations counted is printed.
//!
//! Postgres publishes a backend's statistics when it goes idle, at most once a second and
//! otherwise after up to ten seconds; [`Cost::settle`] waits that out before a snapshot, so the
//! counts are complete (and include what the platform did in the background meanwhile, which is
//! why the phase should be long).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;

/// CPU ticks per process group, and the database's counters.
#[derive(Debug, Clone, Default)]
pub(crate) struct Snapshot {
    ticks: BTreeMap<&'static str, u64>,
    commits: i64,
    rows_written: i64,
}

/// Takes snapshots for one platform process and one database.
#[derive(Debug)]
pub(crate) struct Cost {
    platform_pid: u32,
    database_url: String,
    ticks_per_second: u64,
}

fn group(pid: u32, platform_pid: u32, own_pid: u32, comm: &str) -> Option<&'static str> {
    if pid == platform_pid {
        Some("awx (platform)")
    } else if pid == own_pid {
        Some("load generator")
    } else if comm == "anvil" {
        Some("anvil")
    } else if comm.starts_with("postgres") || comm.starts_with("postmaster") {
        Some("postgres")
    } else if comm.starts_with("redis-server") {
        Some("redis")
    } else {
        None
    }
}

/// `utime + stime` and the command name of `/proc/<pid>/stat`.
fn ticks_of(stat: &str) -> Option<(String, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open.checked_add(1)?..close)?.to_owned();
    let rest: Vec<&str> = stat.get(close.checked_add(2)?..)?.split(' ').collect();
    // After the command: state is field 3, utime field 14 and stime field 15 (1-based).
    let utime: u64 = rest.get(11)?.parse().ok()?;
    let stime: u64 = rest.get(12)?.parse().ok()?;
    Some((comm, utime.checked_add(stime)?))
}

impl Cost {
    pub(crate) fn new(platform_pid: u32, database_url: String) -> anyhow::Result<Self> {
        let output = std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .context("running getconf CLK_TCK")?;
        let ticks_per_second: u64 =
            String::from_utf8_lossy(&output.stdout).trim().parse().context("CLK_TCK")?;
        Ok(Self { platform_pid, database_url, ticks_per_second })
    }

    /// Waits until Postgres has published every backend's statistics, then snapshots.
    pub(crate) async fn settle(&self) -> anyhow::Result<Snapshot> {
        tokio::time::sleep(Duration::from_secs(11)).await;
        self.snapshot().await
    }

    async fn snapshot(&self) -> anyhow::Result<Snapshot> {
        let own_pid = std::process::id();
        let mut ticks = BTreeMap::new();
        for entry in std::fs::read_dir("/proc")? {
            let entry = entry?;
            let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
            let Some((comm, used)) = ticks_of(&stat) else { continue };
            if let Some(name) = group(pid, self.platform_pid, own_pid, &comm) {
                let total: &mut u64 = ticks.entry(name).or_default();
                *total = total.saturating_add(used);
            }
        }
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&self.database_url)
            .await
            .context("connecting to Postgres")?;
        let (commits, rows_written): (i64, i64) = sqlx::query_as(
            "SELECT xact_commit, (tup_inserted + tup_updated + tup_deleted)::bigint
             FROM pg_stat_database WHERE datname = current_database()",
        )
        .fetch_one(&mut conn)
        .await?;
        Ok(Snapshot { ticks, commits, rows_written })
    }

    /// What happened between `before` and `after`, per one of `operations`, as lines to print.
    pub(crate) fn report(
        &self,
        label: &str,
        before: &Snapshot,
        after: &Snapshot,
        operations: usize,
    ) -> Vec<String> {
        let count = u64::try_from(operations.max(1)).unwrap_or(u64::MAX);
        // Microseconds of CPU per operation: ticks x 10^6 / (ticks per second x operations).
        let per_op_us = |ticks: u64| {
            ticks.saturating_mul(1_000_000) / self.ticks_per_second.saturating_mul(count).max(1)
        };
        let mut lines = Vec::new();
        let mut total = 0u64;
        let mut parts = Vec::new();
        for (name, used) in &after.ticks {
            let used = used.saturating_sub(before.ticks.get(name).copied().unwrap_or(0));
            total = total.saturating_add(used);
            parts.push(format!("{name} {}", micros(per_op_us(used))));
        }
        lines.push(format!(
            "{label}: CPU per operation {} in all: {}",
            micros(per_op_us(total)),
            parts.join(", ")
        ));
        let per_op = |value: i64| {
            let value = u64::try_from(value.max(0)).unwrap_or(0);
            // Hundredths per operation.
            let hundredths = value.saturating_mul(100) / count;
            format!("{}.{:02}", hundredths / 100, hundredths % 100)
        };
        lines.push(format!(
            "{label}: Postgres per operation: {} transactions committed, {} rows written ({operations} operations; background work of the platform included)",
            per_op(after.commits.saturating_sub(before.commits)),
            per_op(after.rows_written.saturating_sub(before.rows_written)),
        ));
        lines
    }
}

fn micros(value: u64) -> String {
    format!("{}.{:03} ms", value / 1000, value % 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_gives_its_command_and_cpu_ticks() {
        let stat = "4242 (postgres: awx) S 1 4242 4242 0 -1 4194560 500 0 0 0 173 42 0 0 20 0 1 0 100 1000 10 18446744073709551615";
        assert_eq!(ticks_of(stat), Some(("postgres: awx".to_owned(), 215)));
        assert_eq!(ticks_of("garbage"), None);
    }

    #[test]
    fn processes_are_grouped_by_role() {
        assert_eq!(group(10, 10, 11, "awx"), Some("awx (platform)"));
        assert_eq!(group(11, 10, 11, "awx"), Some("load generator"));
        assert_eq!(group(12, 10, 11, "postgres"), Some("postgres"));
        assert_eq!(group(13, 10, 11, "redis-server"), Some("redis"));
        assert_eq!(group(14, 10, 11, "anvil"), Some("anvil"));
        assert_eq!(group(15, 10, 11, "bash"), None);
    }
}
