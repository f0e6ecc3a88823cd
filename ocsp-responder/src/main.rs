//! `eport-ocsp`: the standalone OCSP responder.
//!
//! No TLS provider is installed: OCSP is served over plain HTTP (RFC 6960 Appendix A; the
//! responses are signed), and the database driver is built without TLS, so rustls is not in
//! this binary.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use ocsp_responder::config::{self, Config};

/// RFC 6960 / RFC 5019 OCSP responder for eport-pki.
#[derive(Debug, Parser)]
#[command(name = "eport-ocsp", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve OCSP over HTTP until SIGINT or SIGTERM.
    Serve {
        /// The configuration file (see ocsp-responder/examples/ocsp.toml).
        #[arg(long, env = "EPORT_OCSP_CONFIG")]
        config: PathBuf,
    },
    /// Load the configuration, open the database and keys, check every delegation, and exit.
    Check {
        /// The configuration file.
        #[arg(long, env = "EPORT_OCSP_CONFIG")]
        config: PathBuf,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match Cli::parse().command {
        Command::Serve { config } => serve(&config).await,
        Command::Check { config } => {
            let config = Config::load(&config)?;
            let responder = config::build(&config).await?;
            println!("ok: {} issuer(s): {:?}", responder.issuers().len(), responder.issuers());
            Ok(())
        }
    }
}

async fn serve(path: &std::path::Path) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    let responder = config::build(&config).await.context("building the responder")?;
    let _background = responder.spawn_background();
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    tracing::info!(listen = %config.listen, "serving OCSP");
    axum::serve(listener, ocsp_responder::router(responder)).with_graceful_shutdown(shutdown()).await?;
    Ok(())
}

async fn shutdown() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(e) => {
                tracing::error!("cannot listen for SIGTERM: {e}");
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
