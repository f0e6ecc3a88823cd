//! `eport-ca`: the certification authority's command line.
//!
//! - `eport-ca init --data DIR [--config FILE]`: the key ceremony; prints what it made.
//! - `eport-ca serve ...`: the HTTPS API (added by the HTTP layer).
//! - `eport-ca rotate ocsp-signer|tls --data DIR [--config FILE]`: new OCSP signer / HTTPS
//!   server generations, used from the next `serve` start.
//! - `eport-ca officer add --data DIR [--config FILE] --role ROLE --name NAME`: a new
//!   administrator identity.
//! - `eport-ca root-crl --data DIR [--config FILE]`: the roots' CRLs, re-signed offline.
//!
//! A failure is one line on standard error (`eport-ca: <what>: <why>`) and exit status 1.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use ca_server::{Ca, Config};
use clap::{Args, Parser, Subcommand, ValueEnum};
use policies::OfficerRole;

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
    /// Replaces certificates with a new key and certificate, keeping the old ones on disk;
    /// the new ones are used from the next `serve` start.
    #[command(subcommand)]
    Rotate(Rotate),
    /// Administrator identities.
    #[command(subcommand)]
    Officer(Officer),
    /// Re-signs the roots' CRLs (offline, with the root keys): next cRLNumber, valid a year;
    /// the previous ones are kept under DIR/crl/superseded/.
    RootCrl(DataArgs),
}

#[derive(Debug, Subcommand)]
enum Rotate {
    /// A new OCSP signer (key and short-lived `ocsp-signer` certificate) for every issuing CA.
    OcspSigner(DataArgs),
    /// A new HTTPS server key and certificate (DNS names: `ceremony.tls_dns_names`).
    Tls(DataArgs),
}

#[derive(Debug, Subcommand)]
enum Officer {
    /// Issues an officer certificate with a new encrypted key and passphrase file under
    /// DIR/officers/, and registers the identity with its one role.
    Add {
        #[command(flatten)]
        data: DataArgs,
        /// The identity's one role.
        #[arg(long, value_enum)]
        role: RoleArg,
        /// The identity's name (login name, commonName and file name; must not exist).
        #[arg(long)]
        name: String,
    },
}

/// The data directory and configuration of an administrator command.
#[derive(Debug, Args)]
struct DataArgs {
    /// The data directory (holding an initialised CA).
    #[arg(long)]
    data: PathBuf,
    /// The configuration file (TOML); default: the embedded default.
    #[arg(long)]
    config: Option<PathBuf>,
}

/// The administrator roles (三权分立: one per identity).
#[derive(Clone, Copy, Debug, ValueEnum)]
enum RoleArg {
    /// Runs the service, keys and backups.
    #[value(name = "system-admin", alias = "system-administrator")]
    SystemAdmin,
    /// Registers, approves, revokes (the RA).
    SecurityOfficer,
    /// Reads and verifies the audit trail.
    AuditOfficer,
}

impl From<RoleArg> for OfficerRole {
    fn from(role: RoleArg) -> Self {
        match role {
            RoleArg::SystemAdmin => Self::System,
            RoleArg::SecurityOfficer => Self::Security,
            RoleArg::AuditOfficer => Self::Audit,
        }
    }
}

/// Loads `path`, or the embedded default.
fn load_config(path: Option<&PathBuf>) -> anyhow::Result<Config> {
    match path {
        Some(path) => Config::load(path).with_context(|| format!("loading {}", path.display())),
        None => Ok(Config::default()),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the context chain joined with ": ".
            eprintln!("eport-ca: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
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
        Command::Rotate(Rotate::OcspSigner(args)) => {
            let config = load_config(args.config.as_ref())?;
            let report = Ca::rotate_ocsp_signers(&args.data, &config).await.context("rotating the OCSP signers")?;
            println!("{report}");
        }
        Command::Rotate(Rotate::Tls(args)) => {
            let config = load_config(args.config.as_ref())?;
            let report = Ca::rotate_tls(&args.data, &config).await.context("rotating the HTTPS server certificate")?;
            println!("{report}");
        }
        Command::RootCrl(args) => {
            let config = load_config(args.config.as_ref())?;
            let report = Ca::resign_root_crls(&args.data, &config).await.context("re-signing the root CRLs")?;
            println!("{report}");
        }
        Command::Officer(Officer::Add { data, role, name }) => {
            let config = load_config(data.config.as_ref())?;
            let report = Ca::add_officer(&data.data, &config, &name, role.into())
                .await
                .with_context(|| format!("adding officer {name}"))?;
            println!("{report}");
        }
    }
    Ok(())
}
