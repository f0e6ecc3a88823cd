//! `eport-ca`: the certification authority's command line.
//!
//! - `eport-ca init --data DIR [--config FILE]`: the key ceremony; prints what it made.
//! - `eport-ca serve ...`: the HTTPS API (added by the HTTP layer).

use std::path::PathBuf;

use anyhow::Context as _;
use ca_server::{Ca, Config};
use clap::{Parser, Subcommand};

/// The eport-pki certification authority.
#[derive(Debug, Parser)]
#[command(name = "eport-ca", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the key ceremony: roots and issuing CAs (P-256 and SM2), OCSP and TSA certificates,
    /// the HTTPS server certificate and the bootstrap administrators. Refuses to run twice.
    Init {
        /// The data directory (created; must not hold a CA).
        #[arg(long)]
        data: PathBuf,
        /// The configuration file (TOML); default: the embedded default (SQLite, software keys).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    // ---- `serve` (HTTP layer) goes here.
    /// Serves the HTTPS API (--listen) and the public CA certificates and CRLs over plain HTTP
    /// (--http-listen); runs the key ceremony first when the data directory holds no CA.
    Serve(ca_server::serve::ServeArgs),
}

/// Loads `path`, or the embedded default.
fn load_config(path: Option<&PathBuf>) -> anyhow::Result<Config> {
    match path {
        Some(path) => Config::load(path).with_context(|| format!("loading {}", path.display())),
        None => Ok(Config::default()),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // ring is the only TLS provider we build with; installing it explicitly keeps rustls from
    // panicking should another dependency ever turn on aws-lc-rs. Err means one is installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    match cli.command {
        Command::Init { data, config } => {
            let config = load_config(config.as_ref())?;
            let report = Ca::init(&data, &config).await.context("key ceremony")?;
            println!("{report}");
        }
        Command::Serve(args) => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
                )
                .init();
            ca_server::serve::run(args).await.context("eport-ca serve")?;
        }
    }
    Ok(())
}
