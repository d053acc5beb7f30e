//! A profile of one benchmark phase, per operation (`--profile-dir` of the payments bench): the
//! Postgres statements the platform ran (`pg_stat_statements` of its database: calls and
//! execution time per operation, the heaviest first) and, where `perf` is installed, where the
//! CPU of every process went (`perf record -a` for the phase: the share of each process, and
//! the heaviest functions of the platform's process). Files land in the directory, one set per
//! phase; the summary is printed.
//!
//! `pg_stat_statements` must be loaded (`shared_preload_libraries`); `scripts/profile-pay.sh`
//! loads it for its run and puts the setting back afterwards.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::Context as _;

/// Statements listed per phase.
const STATEMENTS_LISTED: i64 = 25;

/// Profiles phases of one platform against one database, into one directory.
#[derive(Debug)]
pub(crate) struct Profile {
    platform_pid: u32,
    database_url: String,
    dir: PathBuf,
}

/// A phase being profiled.
#[derive(Debug)]
pub(crate) struct Running {
    label: String,
    perf: Option<(Child, PathBuf)>,
}

fn file_name(label: &str) -> String {
    label
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
        .collect::<String>()
        .split('-')
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

impl Profile {
    pub(crate) async fn new(
        platform_pid: u32,
        database_url: String,
        dir: PathBuf,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let profile = Self { platform_pid, database_url, dir };
        let mut conn = profile.connect().await?;
        sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            .execute(&mut conn)
            .await
            .context("creating the pg_stat_statements extension")?;
        sqlx::query("SELECT 1 FROM pg_stat_statements LIMIT 1")
            .execute(&mut conn)
            .await
            .context("pg_stat_statements is not loaded (shared_preload_libraries); run scripts/profile-pay.sh")?;
        Ok(profile)
    }

    async fn connect(&self) -> anyhow::Result<sqlx::PgConnection> {
        use sqlx::Connection as _;
        sqlx::PgConnection::connect(&self.database_url).await.context("connecting the database")
    }

    /// Resets the statement statistics and starts `perf` (if installed) for the phase.
    pub(crate) async fn start(&self, label: &str) -> anyhow::Result<Running> {
        let mut conn = self.connect().await?;
        sqlx::query("SELECT pg_stat_statements_reset()").execute(&mut conn).await?;
        let data = self.dir.join(format!("{}.perf.data", file_name(label)));
        let perf = Command::new("perf")
            .args(["record", "-a", "-F", "499", "--quiet", "-o"])
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()
            .map(|child| (child, data));
        Ok(Running { label: label.to_owned(), perf })
    }

    /// Stops `perf`, and returns the lines of the phase's profile for `operations` operations
    /// (also written to `<phase>.txt` in the directory).
    pub(crate) async fn finish(
        &self,
        running: Running,
        operations: usize,
    ) -> anyhow::Result<Vec<String>> {
        let ops = f64::from(u32::try_from(operations.max(1)).unwrap_or(u32::MAX));
        let mut lines = Vec::new();
        let label = &running.label;
        if let Some((child, data)) = running.perf {
            lines.extend(self.stop_perf(label, child, &data)?);
        } else {
            lines.push(format!("{label}: perf is not installed; no CPU profile"));
        }
        let mut conn = self.connect().await?;
        let rows: Vec<(i64, f64, i64, String)> = sqlx::query_as(
            "SELECT s.calls, s.total_exec_time, s.rows, s.query FROM pg_stat_statements s
             JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = current_database()
             ORDER BY s.total_exec_time DESC",
        )
        .fetch_all(&mut conn)
        .await?;
        let calls: i64 = rows.iter().map(|row| row.0).sum();
        let time: f64 = rows.iter().map(|row| row.1).sum();
        lines.push(format!(
            "{label}: Postgres statements per operation: {:.1} calls, {:.3} ms executing ({} distinct)",
            to_f64(calls) / ops,
            time / ops,
            rows.len()
        ));
        lines.push(format!(
            "{label}: heaviest statements (calls and µs per operation, then the statement):"
        ));
        for (calls, total_ms, _rows, query) in
            rows.iter().take(usize::try_from(STATEMENTS_LISTED).unwrap_or(25))
        {
            let query: String = query.split_whitespace().collect::<Vec<_>>().join(" ");
            let query: String = query.chars().take(140).collect();
            lines.push(format!(
                "  {:>6.2} {:>8.1}  {query}",
                to_f64(*calls) / ops,
                total_ms * 1_000.0 / ops
            ));
        }
        let text = self.dir.join(format!("{}.txt", file_name(label)));
        std::fs::write(&text, lines.join("\n") + "\n")
            .with_context(|| format!("writing {}", text.display()))?;
        Ok(lines)
    }

    fn stop_perf(&self, label: &str, mut child: Child, data: &Path) -> anyhow::Result<Vec<String>> {
        let pid = child.id().to_string();
        // perf writes its file on SIGINT.
        let _ = Command::new("kill").args(["-INT", &pid]).status();
        let _ = child.wait();
        let report = |args: &[&str]| -> anyhow::Result<String> {
            let output = Command::new("perf")
                .arg("report")
                .arg("-i")
                .arg(data)
                .args(["--stdio", "--no-children"])
                .args(args)
                .stderr(Stdio::null())
                .output()
                .context("running perf report")?;
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        };
        let mut lines = vec![format!("{label}: CPU samples by process (perf, whole machine):")];
        lines.extend(samples(&report(&["--sort", "comm", "--percent-limit", "1"])?));
        lines.push(format!(
            "{label}: the platform's process (pid {}) by function, share of its own samples:",
            self.platform_pid
        ));
        lines.extend(samples(&report(&[
            "--pid",
            &self.platform_pid.to_string(),
            "--sort",
            "sym",
            "--percentage",
            "relative",
            "--percent-limit",
            "0.6",
        ])?));
        Ok(lines)
    }
}

/// The sample lines of a `perf report --stdio` (not its comments), indented.
fn samples(report: &str) -> Vec<String> {
    report
        .lines()
        .filter(|line| !line.trim().is_empty() && !line.trim_start().starts_with('#'))
        .map(|line| format!("  {}", line.trim()))
        .collect()
}

fn to_f64(value: i64) -> f64 {
    // Counts of one benchmark phase: far below 2^53.
    i32::try_from(value).map_or_else(|_| f64::from(i32::MAX), f64::from)
}
