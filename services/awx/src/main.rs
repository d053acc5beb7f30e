//! The `awx` command. See `awx --help`.

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = awx_cli::Cli::parse();
    let outcome = match cli.init_logging() {
        Ok(()) => cli.run().await,
        Err(error) => Err(error),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // The error and its causes, without a backtrace (`RUST_BACKTRACE` is for panics):
            // what went wrong is the message.
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "Error: {error}");
            for cause in error.chain().skip(1) {
                let _ = writeln!(err, "  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}
