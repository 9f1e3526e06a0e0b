//! The `boxtrap` binary: parse the command line, set up logging, run, and
//! report errors with their causes.

use clap::Parser;
use std::io::IsTerminal;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = boxtrap::cli::Cli::parse();
    let filter =
        EnvFilter::try_from_env("BOXTRAP_LOG").unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    // Each connection is an open file: take as many as the hard limit
    // allows, before any listener exists. `serve` logs the result.
    if let Err(e) = boxtrap::web::open_files::raise() {
        tracing::warn!(error = %e, "cannot raise the open files limit");
    }
    match boxtrap::cli::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A database URL or a config line quoted in an error never
            // prints its password.
            let redact = |s: String| boxtrap::app::redact_text(&s);
            eprintln!("boxtrap: error: {}", redact(e.to_string()));
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {}", redact(cause.to_string()));
            }
            ExitCode::FAILURE
        }
    }
}
