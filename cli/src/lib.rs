//! The `eport` command line: keys, certification requests, CMS signatures and verification.
//!
//! - [`Cli`]: the commands and their flags (clap).
//! - [`keyref`]: opening a key named by a file path or a `pkcs11:` URI.
//! - [`run`]: carries a parsed command out.
//! - `audit`: the audit officer's tools (`eport audit …`) and the `--log` records of sign/verify.
//! - [`token`]: a subscriber's PKCS#11 token (`eport token …`): enrol, renew, PIN.
//! - [`ca_client`]: HTTPS to eport-ca with a pinned root, and the checks on issued chains.
//! - `operator`: the legal representative's authorisation of an operator.

mod audit;
pub mod ca_client;
pub mod keyref;
mod operator;
pub mod token;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use signer_lib::SignatureAlgorithm;
use signer_lib::audit::{Actor, AuditRecord, EventType};
use signer_lib::envelope::{self, ContentTypeOids, SignOptions, SignerEntry};

use crate::keyref::{KeyArgs, KeyRef};

/// eport: keys, certificate requests, CMS signatures and verification for the e-port PKI.
#[derive(Debug, Parser)]
#[command(name = "eport", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate keys and show public keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Make a PKCS#10 certification request signed by the key (PEM).
    Csr {
        #[command(flatten)]
        key: KeyArgs,
        /// Subject distinguished name, RFC 4514 order: "CN=Zhang San,O=Example,C=CN".
        #[arg(long)]
        subject: String,
        /// Where to write the request; standard output when absent.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Certificates for demos and tests (a real CA issues through eport-ca).
    #[command(subcommand)]
    Cert(CertCommand),
    /// Sign the exact bytes of a file as CMS SignedData (CAdES-BES attributes).
    Sign {
        #[command(flatten)]
        key: KeyArgs,
        /// The signer's certificate (PEM or DER); its public key must match the key. For a
        /// pkcs11: key, default: the certificate on the token, with its CA certificates as chain.
        #[arg(long)]
        cert: Option<PathBuf>,
        /// Intermediate certificates to include (PEM bundle).
        #[arg(long)]
        chain: Option<PathBuf>,
        /// Put the content inside the signature (default: detached).
        #[arg(long)]
        attached: bool,
        /// The message to sign.
        #[arg(long = "in")]
        input: PathBuf,
        /// Where to write the signature.
        #[arg(long)]
        out: PathBuf,
        /// Write PEM instead of DER.
        #[arg(long)]
        pem: bool,
        /// Content-type OIDs: gmt0010 (default for SM2) or rfc5652 (default otherwise).
        #[arg(long, value_enum)]
        oids: Option<OidsArg>,
        /// Append a message-signed record to this audit log (sqlite:PATH or postgres://…);
        /// nothing is written if the record cannot be committed.
        #[arg(long)]
        log: Option<String>,
    },
    /// Verify a CMS signature; exit 0 only when every signer's signature is valid.
    Verify {
        /// The signed message (needed for a detached signature).
        #[arg(long = "in")]
        input: Option<PathBuf>,
        /// The signature (DER or PEM).
        #[arg(long)]
        sig: PathBuf,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
        /// Write the signed content here (useful for attached signatures).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Append a message-verified record (signer, digest, outcome) to this audit log.
        #[arg(long)]
        log: Option<String>,
    },
    /// The tamper-evident audit log: create, sign heads, verify, query, prove, export.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// A USB token (PKCS#11): list, show, enroll, renew, change-pin, delete-key.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Enrol an existing key (a key file, e.g. software SM2, or a pkcs11: key) with a one-time
    /// code; writes the certificate and chain to files.
    Enroll {
        #[command(flatten)]
        key: KeyArgs,
        #[command(flatten)]
        ca: token::CaArgs,
        /// The one-time enrolment code.
        #[arg(long)]
        code: String,
        /// Where to write the certificate (PEM).
        #[arg(long)]
        out: PathBuf,
        /// Where to write the chain: issuing CA, then root (PEM).
        #[arg(long)]
        chain_out: Option<PathBuf>,
    },
    /// An enterprise's operators: the legal representative's authorisation.
    #[command(subcommand)]
    Operator(operator::OperatorCommand),
}

#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// Generate a key: into a file (PKCS#8, encrypted when --passphrase-env is given) or on a
    /// PKCS#11 token (non-extractable).
    Generate {
        /// p256, sm2 or ed25519.
        #[arg(long)]
        algorithm: SignatureAlgorithm,
        #[command(flatten)]
        key: KeyArgs,
        /// Write the file as DER instead of PEM.
        #[arg(long)]
        der: bool,
    },
    /// Print the key's SubjectPublicKeyInfo (PEM).
    Public {
        #[command(flatten)]
        key: KeyArgs,
    },
}

#[derive(Debug, Subcommand)]
enum CertCommand {
    /// Make a self-signed certificate for the key (demo and test use; not a CA).
    SelfSign {
        #[command(flatten)]
        key: KeyArgs,
        /// Subject distinguished name, RFC 4514 order.
        #[arg(long)]
        subject: String,
        /// Validity in days.
        #[arg(long, default_value_t = 365)]
        days: u32,
        /// Where to write the certificate (PEM).
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum OidsArg {
    Gmt0010,
    Rfc5652,
}

/// Carries out a parsed command.
///
/// # Errors
/// Any failure, with context naming the file or key involved.
pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Key(KeyCommand::Generate { algorithm, key, der }) => {
            let reference = KeyRef::parse(&key.key)?;
            let made = keyref::generate(&reference, &key, algorithm, der)?;
            println!("generated {} key {}", algorithm.name(), made);
        }
        Command::Key(KeyCommand::Public { key }) => {
            let signer = keyref::open(&key)?;
            print!("{}", public_key_pem(signer.public_key_der())?);
        }
        Command::Csr { key, subject, out } => {
            let signer = keyref::open(&key)?;
            let req = signer_lib::csr::build(signer.as_ref(), &subject)?;
            write_or_print(out.as_deref(), signer_lib::csr::to_pem(&req)?.as_bytes())?;
        }
        Command::Cert(CertCommand::SelfSign { key, subject, days, out }) => {
            let signer = keyref::open(&key)?;
            let validity = Duration::from_secs(u64::from(days) * 86_400);
            let cert = signer_lib::certificate::self_signed_end_entity(signer.as_ref(), &subject, validity)?;
            write_new(&out, signer_lib::certificate::to_pem(&cert)?.as_bytes())?;
        }
        Command::Sign { key, cert, chain, attached, input, out, pem, oids, log } => {
            let (signer, token_certs) = keyref::open_with_certificates(&key)?;
            let (certificate, token_chain) = match cert {
                Some(cert) => (
                    signer_lib::certificate::parse(&read(&cert)?)
                        .with_context(|| format!("{}: not a certificate", cert.display()))?,
                    Vec::new(),
                ),
                None if !token_certs.is_empty() => {
                    token::leaf_and_chain(&token_certs, signer.public_key_der(), &format!("on {}", key.key))?
                }
                None => bail!("--cert is needed: the key {} carries no certificate", key.key),
            };
            let chain = match chain {
                Some(path) => signer_lib::certificate::parse_chain(&read(&path)?)
                    .with_context(|| format!("{}: not a PEM certificate bundle", path.display()))?,
                None => token_chain,
            };
            let content = read(&input)?;
            let options = SignOptions {
                detached: !attached,
                signing_time: SystemTime::now(),
                oids: oids.map(|o| match o {
                    OidsArg::Gmt0010 => ContentTypeOids::Gmt0010,
                    OidsArg::Rfc5652 => ContentTypeOids::Rfc5652,
                }),
            };
            let entry = SignerEntry { signer: signer.as_ref(), certificate: &certificate, chain: &chain };
            let sig = envelope::sign(&content, &[entry], &options)?;
            if let Some(log) = log {
                let record = AuditRecord::new(
                    signer_lib::audit::now_millis(),
                    signer_actor(&certificate),
                    EventType::MessageSigned,
                )
                .object(content_digest(&content));
                audit::append(&log, record)?;
            }
            if pem {
                write_new(&out, envelope::to_pem(&sig).as_bytes())?;
            } else {
                write_new(&out, &sig)?;
            }
        }
        Command::Verify { input, sig, json, out, log } => {
            return verify(input.as_deref(), &sig, json, out.as_deref(), log.as_deref());
        }
        Command::Audit(command) => return audit::run(command),
        Command::Token(command) => token::run(command)?,
        Command::Operator(command) => operator::run(command)?,
        Command::Enroll { key, ca, code, out, chain_out } => enroll_key(&key, &ca, &code, &out, chain_out.as_deref())?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `eport enroll`: a key that already exists (a file, or a token key) gets a certificate.
fn enroll_key(key: &KeyArgs, ca: &token::CaArgs, code: &str, out: &Path, chain_out: Option<&Path>) -> Result<()> {
    let client = ca_client::CaClient::new(&ca.ca, ca_client::pinned_roots(ca.ca_cert.as_deref())?, None)?;
    let signer = keyref::open(key)?;
    let csr = signer_lib::csr::build(signer.as_ref(), "CN=eport enrolment")?;
    let issued = client.enrol(code, &signer_lib::csr::to_pem(&csr)?)?;
    client.check(&issued, signer.public_key_der())?;
    write_new(out, signer_lib::certificate::to_pem(&issued.certificate)?.as_bytes())?;
    if let Some(path) = chain_out {
        let mut pem = String::new();
        for ca in &issued.chain {
            pem.push_str(&signer_lib::certificate::to_pem(ca)?);
        }
        write_new(path, pem.as_bytes())?;
    }
    let tbs = &issued.certificate.tbs_certificate;
    println!("enrolled: {}", tbs.subject);
    println!("  serial   {}", hex::encode(tbs.serial_number.as_bytes()));
    println!("  valid    {} to {}", tbs.validity.not_before, tbs.validity.not_after);
    println!("  written  {}", out.display());
    Ok(())
}

fn verify(input: Option<&Path>, sig: &Path, json: bool, out: Option<&Path>, log: Option<&str>) -> Result<ExitCode> {
    let signature = read(sig)?;
    let content = input.map(read).transpose()?;
    let result = envelope::verify(&signature, content.as_deref());
    if let Some(log) = log {
        let now = signer_lib::audit::now_millis();
        let record = match &result {
            Ok(report) => report
                .signers
                .first()
                .map_or_else(
                    || AuditRecord::new(now, Actor::account("no-signer"), EventType::MessageVerified),
                    |s| AuditRecord::new(now, signer_actor(&s.certificate), EventType::MessageVerified),
                )
                .object(content_digest(&report.content)),
            Err(e) => {
                let record = AuditRecord::new(now, Actor::account("unverified-signer"), EventType::MessageVerified)
                    .failure(e.to_string());
                match &content {
                    Some(c) => record.object(content_digest(c)),
                    None => record,
                }
            }
        };
        audit::append(log, record)?;
    }
    match result {
        Ok(report) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&report_json(&report))?);
            } else {
                for s in &report.signers {
                    let time = s.signing_time.map(format_time).unwrap_or_else(|| "not given".to_owned());
                    println!(
                        "valid: {} signature by \"{}\" (serial {}, issuer \"{}\"), signed at {}, signing certificate {}",
                        s.algorithm,
                        s.subject,
                        s.serial_hex,
                        s.issuer,
                        time,
                        match s.binding {
                            envelope::SignerBinding::Verified => "bound (signing-certificate-v2)",
                            envelope::SignerBinding::NotPresent => "not bound (no signing-certificate attribute)",
                        }
                    );
                }
            }
            if let Some(out) = out {
                write_new(out, &report.content)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&report_json_error(&e))?);
            }
            eprintln!("eport: signature INVALID: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn report_json(report: &envelope::VerifyReport) -> serde_json::Value {
    serde_json::json!({
        "valid": true,
        "content_length": report.content.len(),
        "detached": report.detached,
        "signers": report.signers.iter().map(|s| serde_json::json!({
            "subject": s.subject,
            "issuer": s.issuer,
            "serial": s.serial_hex,
            "algorithm": s.algorithm.to_string(),
            "digest": s.digest.to_string(),
            "signing_time": s.signing_time.map(format_time),
            "signing_certificate_bound": matches!(s.binding, envelope::SignerBinding::Verified),
        })).collect::<Vec<_>>(),
    })
}

fn report_json_error(e: &signer_lib::Error) -> serde_json::Value {
    serde_json::json!({ "valid": false, "error": e.to_string() })
}

/// The audit actor for a certificate holder.
fn signer_actor(certificate: &x509_cert::Certificate) -> Actor {
    Actor::Certificate {
        subject: certificate.tbs_certificate.subject.to_string(),
        serial: certificate.tbs_certificate.serial_number.as_bytes().to_vec(),
    }
}

/// `sha256:<hex>` of a message: the object of message-signed and message-verified records.
fn content_digest(content: &[u8]) -> String {
    format!("sha256:{}", hex::encode(signer_lib::algorithm::DigestAlgorithm::Sha256.digest(content)))
}

/// An RFC 3339 UTC time from Unix milliseconds.
fn format_millis(ms: i64) -> String {
    u64::try_from(ms)
        .ok()
        .and_then(|ms| der::DateTime::from_unix_duration(Duration::from_millis(ms)).ok())
        .map_or_else(|| format!("{ms} (unix ms)"), |d| format!("{d}"))
}

fn format_time(t: SystemTime) -> String {
    let secs = t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let dt = der::DateTime::from_unix_duration(Duration::from_secs(secs));
    dt.map(|d| d.to_string()).unwrap_or_else(|_| format!("{secs} (unix seconds)"))
}

fn public_key_pem(spki_der: &[u8]) -> Result<String> {
    der::pem::encode_string("PUBLIC KEY", der::pem::LineEnding::LF, spki_der)
        .map_err(|e| anyhow::anyhow!("cannot encode the public key as PEM: {e}"))
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Writes a new file; refuses to overwrite so that a signature or certificate is never lost
/// to a mistyped path.
pub(crate) fn write_new(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(bytes).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

fn write_or_print(path: Option<&Path>, bytes: &[u8]) -> Result<()> {
    match path {
        Some(p) => write_new(p, bytes),
        None => {
            use std::io::Write as _;
            std::io::stdout().write_all(bytes)?;
            Ok(())
        }
    }
}

/// Reads a secret from the environment variable `name`.
///
/// # Errors
/// When the variable is not set or not UTF-8.
pub fn secret_from_env(name: &str) -> Result<zeroize::Zeroizing<String>> {
    match std::env::var(name) {
        Ok(v) => Ok(zeroize::Zeroizing::new(v)),
        Err(_) => bail!("environment variable {name} is not set"),
    }
}
