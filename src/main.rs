//! The `statusd` binary: a dispatcher. With no subcommand it serves: parse
//! configuration, start logging, serve until SIGINT or SIGTERM, then shut
//! down gracefully. Subcommands (`token`, `dev-keys`, `copy`) live in `statusd::cli`.

use clap::Parser;

/// mimalloc instead of glibc's malloc: statusd allocates small, short-lived
/// buffers on every request from many threads, where glibc's arenas spent
/// ~15 % of the server's CPU in `_int_malloc`/`free`/`malloc_consolidate`
/// under load (perf, BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use statusd::cli::Cli;
use statusd::config::LogFormat;
use statusd::{Config, Server};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Some(command) = cli.command {
        return match command.run().await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("statusd: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    serve(cli.config).await
}

async fn serve(config: Config) -> std::process::ExitCode {
    // Colour only on a terminal: logs collected from a pipe or file (and the
    // audit lines in them) stay plain text.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    match config.log_format {
        LogFormat::Json => tracing_subscriber::fmt().json().with_env_filter(filter).init(),
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .init(),
    }
    let server = match Server::start(config).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "statusd could not start");
            return std::process::ExitCode::FAILURE;
        }
    };
    match server.run_until(shutdown_signal()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "statusd stopped with an error");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received; draining requests");
}
