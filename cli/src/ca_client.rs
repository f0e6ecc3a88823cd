//! Talking to eport-ca: `POST /api/v1/enrol` and `POST /api/v1/renew` over HTTPS that trusts
//! only the pinned root, and the checks on what comes back.
//!
//! - **Trust**: the root certificates given by `--ca-cert` (or `EPORT_CA_CERT`) are the only
//!   trust anchors, for the TLS server certificate and for the issued chain. There is no
//!   "insecure" switch and the system roots are never consulted.
//! - **Names**: a URL host under `.localhost` (the CA's embedded default names itself
//!   `eport-ca.localhost`) is connected to on 127.0.0.1, as RFC 6761 §6.3 reserves those names
//!   for loopback; the certificate is still verified for the name. Other hosts resolve as usual.
//! - **Client authentication** (renew): the subscriber's certificate chain with a key that is
//!   any [`Signer`], so a token key signs the TLS handshake on the token.
//! - **The result** is checked before anything is written: the certificate must hold the key
//!   the request was made for, and must chain, signature by signature and within its validity,
//!   through the returned issuing CA to a pinned root (byte for byte). The chain is checked
//!   here rather than with webpki because webpki has no SM2.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context as _, Result, anyhow, bail};
use der::{Decode as _, Encode as _};
use serde::Deserialize;
use signer_lib::tls::ClientIdentity;
use x509_cert::Certificate;

/// Where the root comes from when `--ca-cert` is not given.
pub const CA_CERT_VARIABLE: &str = "EPORT_CA_CERT";

/// A certificate the CA issued, with its chain (issuing CA first, root last).
#[derive(Debug)]
pub struct Issued {
    /// The certificate.
    pub certificate: Certificate,
    /// The issuing CA, then the root.
    pub chain: Vec<Certificate>,
}

impl Issued {
    /// The DER of the certificate.
    ///
    /// # Errors
    /// When it cannot be encoded (it was just decoded).
    pub fn certificate_der(&self) -> Result<Vec<u8>> {
        Ok(self.certificate.to_der()?)
    }

    /// The DER of the chain, issuing CA first, root last.
    ///
    /// # Errors
    /// When one cannot be encoded.
    pub fn chain_der(&self) -> Result<Vec<Vec<u8>>> {
        self.chain.iter().map(|c| Ok(c.to_der()?)).collect()
    }
}

#[derive(Deserialize)]
struct IssuedBody {
    certificate: String,
    chain: Vec<String>,
}

#[derive(Deserialize)]
struct Problem {
    title: Option<String>,
    detail: Option<String>,
}

/// An HTTPS client for one CA.
#[derive(Debug)]
pub struct CaClient {
    base: reqwest::Url,
    client: reqwest::Client,
    roots_der: Vec<Vec<u8>>,
    runtime: tokio::runtime::Runtime,
}

/// The pinned roots: the certificates in `--ca-cert` (a PEM bundle: the P-256 root, and the
/// SM2 root for SM2 certificates), else in `$EPORT_CA_CERT`.
///
/// # Errors
/// When neither is given, or the file holds no certificate.
pub fn pinned_roots(ca_cert: Option<&Path>) -> Result<Vec<Vec<u8>>> {
    let path = match ca_cert {
        Some(p) => p.to_path_buf(),
        None => match std::env::var_os(CA_CERT_VARIABLE) {
            Some(p) => PathBuf::from(p),
            None => bail!(
                "no CA root to trust: give --ca-cert ROOT.pem or set {CA_CERT_VARIABLE} \
                 (the root certificate, obtained out of band; there is no insecure mode)"
            ),
        },
    };
    let bytes = std::fs::read(&path).with_context(|| format!("cannot read the CA root {}", path.display()))?;
    let roots = if bytes.starts_with(b"-----") {
        signer_lib::certificate::parse_chain(&bytes)
    } else {
        signer_lib::certificate::parse(&bytes).map(|c| vec![c])
    }
    .with_context(|| format!("{}: not a certificate or PEM bundle", path.display()))?;
    if roots.is_empty() {
        bail!("{}: holds no certificate", path.display());
    }
    roots.iter().map(|c| Ok(c.to_der()?)).collect()
}

impl CaClient {
    /// A client for the CA at `base` (`https://host:port`) trusting only `roots_der`,
    /// authenticating with `client` (chain, leaf first, and its key) when given.
    ///
    /// # Errors
    /// For a URL that is not https, or a key that cannot do TLS (SM2).
    pub fn new(base: &str, roots_der: Vec<Vec<u8>>, client: Option<ClientIdentity<'_>>) -> Result<Self> {
        let base = reqwest::Url::parse(base).with_context(|| format!("--ca {base:?} is not a URL"))?;
        if base.scheme() != "https" {
            bail!("--ca must be an https:// URL (got {base})");
        }
        let tls = signer_lib::tls::client_config(&roots_der, client).context("cannot set up TLS to the CA")?;
        let mut builder = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(std::time::Duration::from_secs(60))
            .user_agent(concat!("eport/", env!("CARGO_PKG_VERSION")));
        if let Some(host) = base.host_str()
            && (host == "localhost" || host.ends_with(".localhost"))
        {
            let port = base.port_or_known_default().unwrap_or(443);
            builder = builder.resolve(host, SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
        }
        let client = builder.build().context("cannot build the HTTPS client")?;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        Ok(Self { base, client, roots_der, runtime })
    }

    /// `POST /api/v1/enrol` with a one-time code and a CSR.
    ///
    /// # Errors
    /// When the CA cannot be reached, refuses (its problem document's detail is shown), or
    /// returns something that does not parse.
    pub fn enrol(&self, code: &str, csr_pem: &str) -> Result<Issued> {
        self.post("api/v1/enrol", &serde_json::json!({ "code": code, "csr": csr_pem }))
    }

    /// `POST /api/v1/renew` with a CSR for a new key (client authentication required).
    ///
    /// # Errors
    /// As [`Self::enrol`].
    pub fn renew(&self, csr_pem: &str) -> Result<Issued> {
        self.post("api/v1/renew", &serde_json::json!({ "csr": csr_pem }))
    }

    fn post(&self, path: &str, body: &serde_json::Value) -> Result<Issued> {
        let url = self.base.join(path)?;
        let (status, bytes) = self
            .runtime
            .block_on(async {
                let response = self.client.post(url.clone()).json(body).send().await?;
                let status = response.status();
                let bytes = response.bytes().await?;
                Ok::<_, reqwest::Error>((status, bytes))
            })
            .map_err(|e| {
                let reason = error_chain(&e);
                let hint = if reason.contains("invalid peer certificate") {
                    " (the CA's TLS certificate does not chain to --ca-cert, or is not for this host name)"
                } else {
                    ""
                };
                anyhow!("cannot reach the CA at {url}: {reason}{hint}")
            })?;
        if !status.is_success() {
            let problem: Option<Problem> = serde_json::from_slice(&bytes).ok();
            let detail = problem
                .and_then(|p| p.detail.or(p.title))
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).chars().take(200).collect());
            bail!("the CA refused the request (HTTP {}): {detail}", status.as_u16());
        }
        let body: IssuedBody =
            serde_json::from_slice(&bytes).context("the CA's answer is not an issued certificate")?;
        let certificate =
            signer_lib::certificate::parse(body.certificate.as_bytes()).context("the CA returned a bad certificate")?;
        let chain = body
            .chain
            .iter()
            .map(|pem| signer_lib::certificate::parse(pem.as_bytes()))
            .collect::<Result<Vec<_>, _>>()
            .context("the CA returned a bad chain")?;
        Ok(Issued { certificate, chain })
    }

    /// Checks `issued` against the key it was requested for and the pinned root (see the
    /// module documentation).
    ///
    /// # Errors
    /// Naming what does not hold.
    pub fn check(&self, issued: &Issued, spki_der: &[u8]) -> Result<()> {
        check_chain(issued, spki_der, &self.roots_der, SystemTime::now())
    }
}

/// The message of an error and its sources, `: `-separated (reqwest hides the TLS reason in
/// the sources).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// See [`CaClient::check`].
///
/// # Errors
/// Naming what does not hold.
pub fn check_chain(issued: &Issued, spki_der: &[u8], roots_der: &[Vec<u8>], now: SystemTime) -> Result<()> {
    let leaf_spki = issued.certificate.tbs_certificate.subject_public_key_info.to_der()?;
    if leaf_spki != spki_der {
        bail!("the CA returned a certificate for another key; nothing was written");
    }
    match issued.chain.last() {
        Some(root) if roots_der.contains(&root.to_der()?) => {}
        _ => bail!("the certificate does not chain to the pinned root (--ca-cert); nothing was written"),
    }
    let now = now.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let path: Vec<&Certificate> = std::iter::once(&issued.certificate).chain(&issued.chain).collect();
    for (i, cert) in path.iter().enumerate() {
        let tbs = &cert.tbs_certificate;
        let validity = &tbs.validity;
        if validity.not_before.to_unix_duration().as_secs() > now
            || validity.not_after.to_unix_duration().as_secs() < now
        {
            bail!("certificate {:?} in the returned chain is not valid now", tbs.subject.to_string());
        }
        // The issuer of the last (the root) is itself.
        let parent = path.get(i + 1).copied().unwrap_or(cert);
        if tbs.issuer != parent.tbs_certificate.subject {
            bail!(
                "the returned chain is broken: {:?} was not issued by {:?}",
                tbs.subject.to_string(),
                parent.tbs_certificate.subject.to_string()
            );
        }
        let parent_spki = parent.tbs_certificate.subject_public_key_info.to_der()?;
        let signature = cert.signature.as_bytes().ok_or_else(|| anyhow!("a certificate signature with unused bits"))?;
        signer_lib::verify::verify_signature(&parent_spki, cert.signature_algorithm.oid, &tbs.to_der()?, signature)
            .with_context(|| format!("the signature on {:?} does not verify", tbs.subject.to_string()))?;
    }
    Ok(())
}

/// Parses a DER certificate (from a token).
///
/// # Errors
/// When it is not one.
pub fn certificate_from_der(der: &[u8]) -> Result<Certificate> {
    Certificate::from_der(der).context("a certificate object on the token does not parse")
}
