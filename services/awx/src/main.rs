//! The `awx` command. See `awx --help`.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    awx_cli::init_logging();
    awx_cli::Cli::parse().run().await
}
