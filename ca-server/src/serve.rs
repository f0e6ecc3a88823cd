//! `eport-ca serve`: the HTTPS API and the public plain-HTTP endpoints, in one process.
//!
//! ```text
//! eport-ca serve --data DIR [--config FILE] [--listen 127.0.0.1:8443] [--http-listen 127.0.0.1:8080]
//! ```
//!
//! With no configuration and an empty data directory this is the embedded default: the key
//! ceremony runs on first start (SQLite, encrypted software keys), the AIA and CRL distribution
//! point URLs point at the `--http-listen` address (unless `public_base_url` is configured),
//! and the bootstrap officer identities are left under `DIR/bootstrap/`.
//!
//! [`Server::start`] is the part tests and benchmarks use: it serves a [`Ca`] on two listeners
//! the caller bound (port 0 is fine) until [`Server::shutdown`].

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;
use ocsp_responder::responder::Background;
use ocsp_responder::source::sql::SqlSource;
use ocsp_responder::{Responder, Settings, ocsp_routes};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::error::Error;
use crate::http::{api_router, public_router};
use crate::service::Ca;
use crate::tls::{TlsError, server_config};

/// How long in-flight requests get to finish on shutdown.
pub const GRACE_PERIOD: Duration = Duration::from_secs(10);

/// The command line of `eport-ca serve`.
#[derive(Clone, Debug, clap::Args)]
pub struct ServeArgs {
    /// The data directory (created and initialised on first start when there is no CA in it).
    #[arg(long)]
    pub data: PathBuf,
    /// The configuration file (TOML); without it, the embedded default.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Where the HTTPS API listens.
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
    /// Where the public plain-HTTP endpoints (CA certificates, CRLs, OCSP) listen.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub http_listen: SocketAddr,
}

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The CA could not be initialised or opened.
    #[error(transparent)]
    Ca(#[from] Error),
    /// The TLS configuration could not be built.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A listener could not be bound or used.
    #[error("{what} {addr}: {source}")]
    Listen {
        /// Which listener (`HTTPS API`, `public HTTP`).
        what: &'static str,
        /// Its address.
        addr: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The in-process OCSP responder could not be set up.
    #[error("OCSP responder: {0}")]
    Ocsp(#[from] ocsp_responder::Error),
    /// A listener failed while serving.
    #[error("{what} stopped: {source}")]
    Serve {
        /// Which listener.
        what: &'static str,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// Options of [`Server::start`].
#[derive(Debug, Default)]
pub struct Options {
    /// Regenerate every CRL this often (none: only on revocation).
    pub crl_interval: Option<Duration>,
    /// Sign an audit tree head this often when the log grew, and once more on shutdown (none:
    /// only when asked, e.g. `eport audit head`).
    pub audit_head_interval: Option<Duration>,
    /// The OCSP responder's router (routes under `/ocsp`), mounted on the public listener.
    pub ocsp: Option<Router>,
}

/// Connections the in-process OCSP responder opens to the CA database.
const OCSP_DB_CONNECTIONS: u32 = 2;

/// The OCSP responder running in-process: pre-signed responses for every issuer, read from the
/// CA database (read-only) and kept fresh by its background tasks, which run until this is
/// dropped. Mount [`Self::routes`] (`POST /ocsp`, `GET /ocsp/{base64}`, the URL the AIA of our
/// certificates carries) on the public listener through [`Options::ocsp`].
#[derive(Debug)]
pub struct EmbeddedOcsp {
    responder: Responder,
    _background: Background,
}

impl EmbeddedOcsp {
    /// Builds the responder for `ca`'s issuers with their delegated OCSP signers, over its own
    /// small pool on the CA's database URL (a SQLite file is opened read-only), and starts its
    /// first pre-signing pass, change-feed poll and refresh loop in the background. Must be
    /// called inside a Tokio runtime.
    ///
    /// # Errors
    /// [`ServeError::Ca`] when an issuer, its OCSP certificate or key cannot be loaded;
    /// [`ServeError::Ocsp`] when the database cannot be opened or `settings` are invalid.
    pub async fn start(ca: &Ca, settings: Settings) -> Result<Self, ServeError> {
        let issuers = ca.ocsp_issuers(time::OffsetDateTime::now_utc()).await?;
        let url = ca.config().database_url(ca.data_dir());
        let source = SqlSource::connect(&url, OCSP_DB_CONNECTIONS).await?;
        let responder = Responder::new(issuers, Arc::new(source), settings)?;
        let background = responder.spawn_background();
        Ok(Self { responder, _background: background })
    }

    /// The responder (health, metrics, manual refresh).
    #[must_use]
    pub fn responder(&self) -> &Responder {
        &self.responder
    }

    /// The OCSP routes, to merge into the public router.
    pub fn routes(&self) -> Router {
        ocsp_routes(self.responder.clone())
    }
}

/// A running server: the HTTPS API, the public HTTP endpoints, and the CRL and audit-head
/// schedules.
#[derive(Debug)]
pub struct Server {
    https_addr: SocketAddr,
    http_addr: SocketAddr,
    https_handle: Handle<SocketAddr>,
    http_handle: Handle<SocketAddr>,
    https_task: JoinHandle<io::Result<()>>,
    http_task: JoinHandle<io::Result<()>>,
    /// The CRL and audit-head schedules.
    schedules: Vec<JoinHandle<()>>,
    stop: watch::Sender<bool>,
}

fn listen_error(what: &'static str, listener: &TcpListener, source: io::Error) -> ServeError {
    let addr = listener.local_addr().map_or_else(|_| "?".to_owned(), |a| a.to_string());
    ServeError::Listen { what, addr, source }
}

impl Server {
    /// Serves `ca`: the HTTPS API on `https` (mTLS optional at the TLS level, enforced per
    /// endpoint) and the public endpoints on `http`. Must be called inside a Tokio runtime.
    ///
    /// # Errors
    /// [`ServeError::Tls`] when the CA's TLS material is unusable, [`ServeError::Listen`] when
    /// a listener cannot be handed to the runtime.
    pub fn start(ca: Ca, https: TcpListener, http: TcpListener, options: Options) -> Result<Self, ServeError> {
        let material = ca.tls_material();
        let tls =
            server_config(&material.server_chain_der, Arc::clone(&material.server_signer), &material.client_ca_der)?;
        let https_addr = https.local_addr().map_err(|e| listen_error("HTTPS API", &https, e))?;
        let http_addr = http.local_addr().map_err(|e| listen_error("public HTTP", &http, e))?;

        let https_handle = Handle::new();
        let api = api_router(ca.clone()).into_make_service_with_connect_info::<SocketAddr>();
        let https_server = axum_server::from_tcp_rustls(https, RustlsConfig::from_config(tls))
            .map_err(|e| ServeError::Listen { what: "HTTPS API", addr: https_addr.to_string(), source: e })?
            .handle(https_handle.clone())
            .accept_error_handler({
                let ca = ca.clone();
                move |source: Option<&SocketAddr>, error: &io::Error| {
                    crate::authz::record_handshake_failure(&ca, source.copied(), error);
                }
            });
        let https_task = tokio::spawn(https_server.serve(api));

        let http_handle = Handle::new();
        let public = public_router(ca.clone(), options.ocsp).into_make_service_with_connect_info::<SocketAddr>();
        let http_server = axum_server::from_tcp(http)
            .map_err(|e| ServeError::Listen { what: "public HTTP", addr: http_addr.to_string(), source: e })?
            .handle(http_handle.clone());
        let http_task = tokio::spawn(http_server.serve(public));

        let (stop, stopped) = watch::channel(false);
        let mut schedules = Vec::new();
        if let Some(period) = options.crl_interval {
            let ca = ca.clone();
            schedules.push(tokio::spawn(every(period, stopped.clone(), move |last| {
                let ca = ca.clone();
                async move {
                    // The CA made its CRLs when it opened; the last tick has nothing to add.
                    if !last && let Err(e) = ca.regenerate_crls().await {
                        tracing::error!(error = %e, "scheduled CRL regeneration failed");
                    }
                }
            })));
        }
        if let Some(period) = options.audit_head_interval {
            schedules.push(tokio::spawn(every(period, stopped, move |_last| {
                let ca = ca.clone();
                async move {
                    if let Err(e) = ca.sign_audit_head().await {
                        tracing::error!(error = %e, "signing the audit tree head failed");
                    }
                }
            })));
        }

        Ok(Self { https_addr, http_addr, https_handle, http_handle, https_task, http_task, schedules, stop })
    }

    /// The HTTPS API's address.
    #[must_use]
    pub fn https_addr(&self) -> SocketAddr {
        self.https_addr
    }

    /// The public HTTP listener's address.
    #[must_use]
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Stops accepting, lets in-flight requests finish (up to [`GRACE_PERIOD`]) and waits for
    /// both listeners and the CRL schedule to end.
    ///
    /// # Errors
    /// [`ServeError::Serve`] when a listener had failed while serving.
    pub async fn shutdown(self) -> Result<(), ServeError> {
        let _ = self.stop.send(true);
        self.https_handle.graceful_shutdown(Some(GRACE_PERIOD));
        self.http_handle.graceful_shutdown(Some(GRACE_PERIOD));
        let https = join("HTTPS API", self.https_task).await;
        let http = join("public HTTP", self.http_task).await;
        for task in self.schedules {
            let _ = task.await;
        }
        https.and(http)
    }

    /// Waits until a listener stops by itself (an error), which should not happen.
    ///
    /// # Errors
    /// The listener's error.
    pub async fn wait(&mut self) -> Result<(), ServeError> {
        tokio::select! {
            result = &mut self.https_task => flatten("HTTPS API", result),
            result = &mut self.http_task => flatten("public HTTP", result),
        }
    }
}

fn flatten(what: &'static str, result: Result<io::Result<()>, tokio::task::JoinError>) -> Result<(), ServeError> {
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(source)) => Err(ServeError::Serve { what, source }),
        Err(join) => Err(ServeError::Serve { what, source: io::Error::other(join.to_string()) }),
    }
}

async fn join(what: &'static str, task: JoinHandle<io::Result<()>>) -> Result<(), ServeError> {
    flatten(what, task.await)
}

/// Runs `job(false)` every `period` (not at once: the first tick is skipped) until told to
/// stop, then `job(true)` a last time after the listeners stopped. A failing job logs and waits
/// for its next tick: a CRL stays valid until its nextUpdate, which is longer, and an audit head
/// not signed now is signed at the next tick over the grown log.
async fn every<F, Fut>(period: Duration, mut stopped: watch::Receiver<bool>, mut job: F)
where
    F: FnMut(bool) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await; // the first tick is immediate
    loop {
        tokio::select! {
            _ = ticks.tick() => job(false).await,
            _ = stopped.changed() => {
                job(true).await;
                return;
            }
        }
    }
}

/// Binds a listener.
fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr).map_err(|source| ServeError::Listen { what, addr: addr.to_string(), source })
}

/// Resolves when the process is asked to stop (SIGINT or SIGTERM).
async fn stop_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; stop with SIGINT");
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

/// `eport-ca serve`: initialises the data directory on first start, serves until SIGINT or
/// SIGTERM, then stops cleanly. Prints its URLs on start.
///
/// # Errors
/// [`ServeError`] when the configuration, the CA, TLS or a listener fails.
pub async fn run(args: ServeArgs) -> Result<(), ServeError> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    // Bind first, so that port 0 works and the URLs in new certificates are the real ones.
    let https = bind("HTTPS API", args.listen)?;
    let http = bind("public HTTP", args.http_listen)?;
    let http_addr = http.local_addr().map_err(|e| listen_error("public HTTP", &http, e))?;
    config.set_default_public_base_url(http_addr);

    if !Ca::is_initialised(&args.data) {
        println!("No CA in {}: running the key ceremony.", args.data.display());
        let report = Ca::init(&args.data, &config).await?;
        println!("{report}");
    }
    // Held while serving: no offline command (rotate, officer add, root-crl) runs beside us.
    let _lock = crate::lock::DataLock::acquire(&args.data, "serve")?;
    let ca = Ca::open(&args.data, &config).await?;
    // Kept until the server stops: dropping it stops the responder's background tasks.
    let ocsp = EmbeddedOcsp::start(&ca, Settings::default()).await?;
    let options = Options {
        crl_interval: Some(config.crl_regeneration_interval()),
        audit_head_interval: Some(config.audit_head_interval()),
        ocsp: Some(ocsp.routes()),
    };
    let mut server = Server::start(ca.clone(), https, http, options)?;
    print_urls(&server, &ca, &config, &args);

    let outcome = tokio::select! {
        () = stop_signal() => {
            println!("Stopping.");
            Ok(())
        }
        result = server.wait() => result,
    };
    let stopped = server.shutdown().await;
    drop(ocsp);
    ca.close().await;
    outcome.and(stopped)
}

fn print_urls(server: &Server, ca: &Ca, config: &Config, args: &ServeArgs) {
    let base = config.public_base_url();
    let https = server.https_addr();
    let name = config.ceremony.tls_dns_names.first().map_or("localhost", String::as_str);
    println!("eport-ca is serving:");
    println!("  HTTPS API        https://{name}:{}/api/v1/  (listening on {https})", https.port());
    println!("  OpenAPI          https://{name}:{}/openapi.json", https.port());
    println!(
        "                   the server certificate names {name}; e.g. curl --resolve {name}:{}:{} \\",
        https.port(),
        https.ip()
    );
    println!(
        "                   --cacert {} --cert <identity>.crt --key <identity>.key ...",
        args.data.join("certs").join("p256-root.pem").display()
    );
    println!("  public HTTP      http://{}/  (health: /healthz)", server.http_addr());
    println!("  OCSP             {base}/ocsp  (every issuer)");
    for issuer in ca.issuer_ids() {
        println!("  CA {issuer:<13} {base}/ca/{issuer}.crt  (root: {base}/ca/{issuer}-root.crt)");
        println!("  CRL {issuer:<12} {base}/crl/{issuer}.crl");
    }
    let bootstrap = args.data.join("bootstrap");
    println!("  bootstrap identities (certificate, encrypted PKCS#8 key, passphrase) in {}:", bootstrap.display());
    for name in ["system-admin", "security-officer-1", "security-officer-2", "audit-officer"] {
        println!("    {name}.crt {name}.key {name}.pass");
    }
    println!("Stop with Ctrl-C or SIGTERM.");
}
