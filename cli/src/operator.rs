//! `eport operator authorise`: the legal representative signs the authorisation of an operator
//! (STANDARDS.md R55, R56) with the key of their `enterprise-legal-rep` certificate, normally
//! on their token. The result, an attached CMS SignedData over a
//! [`policies::authorisation::OperatorAuthorisation`], goes with the operator's registration
//! (`"authorisation"` in `POST /api/v1/registrations`); the CA checks it.

use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::{Context as _, Result, bail};
use clap::Subcommand;
use policies::authorisation::OperatorAuthorisation;
use policies::profile::SubjectAttribute;
use signer_lib::envelope::{self, SignOptions, SignerEntry};
use x509_cert::Certificate;

use crate::keyref::{self, KeyArgs};
use crate::token::leaf_and_chain;
use crate::write_new;

/// `eport operator …`
#[derive(Debug, Subcommand)]
pub enum OperatorCommand {
    /// Sign the authorisation of an operator of your enterprise (legal representative).
    Authorise {
        #[command(flatten)]
        key: KeyArgs,
        /// The legal representative's certificate; taken from the token for a pkcs11: key.
        #[arg(long)]
        cert: Option<PathBuf>,
        /// The operator's name, exactly as it will be registered (the certificate's commonName).
        #[arg(long)]
        name: String,
        /// SHA-256 or SM3 of the operator's identity-document number, 64 hex digits
        /// (e.g. `printf %s NUMBER | sha256sum`); the number itself is never sent.
        #[arg(long, value_name = "HEX")]
        id_number_hash: String,
        /// How long the CA may accept it, in days (at most 90).
        #[arg(long, default_value_t = 30)]
        days: u16,
        /// Where to write the signed authorisation (PEM).
        #[arg(long)]
        out: PathBuf,
    },
}

/// Carries out `eport operator …`.
///
/// # Errors
/// When the key or certificate cannot be used, the certificate carries no USCC, or the
/// authorisation breaks a rule (name, hash, validity).
pub fn run(command: OperatorCommand) -> Result<()> {
    match command {
        OperatorCommand::Authorise { key, cert, name, id_number_hash, days, out } => {
            let (signer, token_certs) = keyref::open_with_certificates(&key)?;
            let certificate = match cert {
                Some(path) => signer_lib::certificate::parse(
                    &std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?,
                )
                .with_context(|| format!("{}: not a certificate", path.display()))?,
                None if !token_certs.is_empty() => {
                    leaf_and_chain(&token_certs, signer.public_key_der(), &format!("on {}", key.key))?.0
                }
                None => bail!("--cert is needed: the key {} carries no certificate", key.key),
            };
            let uscc = uscc_of(&certificate)?;
            let validity = time::Duration::days(i64::from(days));
            let document =
                OperatorAuthorisation::new(&uscc, &name, &id_number_hash, time::OffsetDateTime::now_utc(), validity)?;
            let options = SignOptions { detached: false, signing_time: SystemTime::now(), oids: None };
            let entry = SignerEntry { signer: signer.as_ref(), certificate: &certificate, chain: &[] };
            let cms = envelope::sign(&document.to_bytes()?, &[entry], &options)?;
            write_new(&out, envelope::to_pem(&cms).as_bytes())?;
            println!(
                "authorised {name:?} as an operator of {uscc} until {}; send {} with the registration",
                document.expires_at,
                out.display()
            );
            Ok(())
        }
    }
}

/// The USCC in a certificate's organizationIdentifier (`NTRCN-<USCC>`).
fn uscc_of(certificate: &Certificate) -> Result<String> {
    let oid = SubjectAttribute::OrganizationIdentifier.oid();
    certificate
        .tbs_certificate
        .subject
        .0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .filter(|atv| atv.oid == oid)
        .find_map(|atv| {
            policies::subject::value_text(&atv.value)
                .and_then(|v| policies::subject::uscc_of_identifier(&v).map(str::to_owned))
        })
        .with_context(|| {
            format!(
                "certificate {:?} names no enterprise (no organizationIdentifier NTRCN-…): only an enterprise's \
                 legal representative can authorise operators",
                certificate.tbs_certificate.subject.to_string()
            )
        })
}
