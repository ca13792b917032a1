//! The `postern-listener` binary.

use std::{io::IsTerminal, process::ExitCode};

use clap::Parser;
use postern_listener::cli::Cli;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| cli.default_log_level().into()),
        )
        .init();
    cli.run().await
}
