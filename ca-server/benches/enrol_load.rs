//! Enrolment load: certificates per second over HTTPS (keep-alive) with concurrent clients, and
//! the latency distribution; then the same enrolments through the service API directly, so the
//! difference shows what HTTP, TLS, JSON and the per-call audit record cost.
//!
//! ```text
//! cargo bench -p ca-server --bench enrol_load                      # release build, SQLite
//! EPORT_TEST_POSTGRES_URL=postgres://USER@127.0.0.1/postgres \
//!     cargo bench -p ca-server --bench enrol_load                  # SQLite, then PostgreSQL
//! EPORT_LOAD_N=4000 EPORT_LOAD_CLIENTS=8 cargo bench -p ca-server --bench enrol_load
//! cargo bench -p ca-server --bench enrol_load --profile dev        # quicker to build
//! ```
//!
//! Each backend gets a fresh CA (the embedded default: software P-256 issuing key, SQLite in a
//! temporary directory, or a fresh PostgreSQL database for both the CA and the audit log). N
//! registrations are created and approved through the service API beforehand, and N P-256 CSRs
//! generated, so the timed part is only `POST /api/v1/enrol`: code check, proof of possession,
//! lint with a throwaway key, signing, storing and auditing each certificate before it is
//! returned, plus the HTTP layer's own audit record of the call (queued for the audit log's
//! next batch, not awaited: the `Issue` record is already committed when the answer goes out).
//!
//! Each line ends with the CPU time the whole process (all threads; in the HTTPS phase the load
//! clients too) spent per certificate: on a shared machine it is steadier than the rate, and
//! on C cores the rate cannot exceed C / that time.
//!
//! Environment: `EPORT_LOAD_N` (enrolments per phase, default 2000), `EPORT_LOAD_CLIENTS`
//! (concurrent keep-alive clients, default 8), `EPORT_TEST_POSTGRES_URL` (adds the PostgreSQL run).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ca_server::serve::{Options, Server};
use ca_server::{Approval, Ca, Caller, Config, RegistrationRequest};
use rustls::pki_types::CertificateDer;
use signer_lib::SignatureAlgorithm;
use signer_lib::key::software::SoftwareKey;
use sqlx::Connection as _;

const USCC: &str = "91350100M000100Y43";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A database for one run; PostgreSQL ones are dropped afterwards.
struct Backend {
    name: &'static str,
    url: Option<String>,
    admin: Option<(String, String)>,
}

async fn postgres(base: &str) -> Backend {
    sqlx::any::install_default_drivers();
    let name = format!("eport_ca_load_{}", std::process::id());
    let mut admin = sqlx::AnyConnection::connect(base).await.unwrap();
    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
        .execute(&mut admin)
        .await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut admin).await.unwrap();
    admin.close().await.unwrap();
    let (before_query, query) = base.split_once('?').map_or((base, None), |(b, q)| (b, Some(q)));
    let scheme_end = before_query.find("://").map_or(0, |i| i + 3);
    let path_start = before_query[scheme_end..].find('/').map_or(before_query.len(), |i| scheme_end + i);
    let mut url = format!("{}/{name}", &before_query[..path_start]);
    if let Some(q) = query {
        url.push('?');
        url.push_str(q);
    }
    Backend { name: "postgresql", url: Some(url), admin: Some((base.to_owned(), name)) }
}

impl Backend {
    async fn drop_database(&self) {
        if let Some((base, name)) = &self.admin
            && let Ok(mut conn) = sqlx::AnyConnection::connect(base).await
        {
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                .execute(&mut conn)
                .await;
        }
    }
}

/// Percentile of sorted durations (nearest rank).
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The CPU time this process has used so far, all threads, user and system: `utime` and
/// `stime` of `/proc/self/stat`, in clock ticks of 10 ms (Linux's USER_HZ); `None` without
/// procfs.
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name, field 2, is in parentheses and may hold spaces; fields 3.. follow it.
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 1..)?.split_whitespace().collect();
    let ticks = |field: usize| fields.get(field - 3)?.parse::<u64>().ok();
    Some(Duration::from_millis((ticks(14)? + ticks(15)?) * 10))
}

/// Prints a phase's figures; `cpu_before` is [`cpu_time`] when the phase started. The CPU time
/// includes, in the HTTPS phase, the load clients' own (HTTP, TLS and JSON on their side).
fn report(label: &str, elapsed: Duration, mut latencies: Vec<Duration>, cpu_before: Option<Duration>) {
    latencies.sort_unstable();
    #[allow(clippy::cast_precision_loss)]
    let rate = latencies.len() as f64 / elapsed.as_secs_f64();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    #[allow(clippy::cast_precision_loss)]
    let cpu = cpu_time()
        .zip(cpu_before)
        .map(|(after, before)| {
            format!("  CPU {:>5.2} ms/cert", ms(after.saturating_sub(before)) / latencies.len().max(1) as f64)
        })
        .unwrap_or_default();
    println!(
        "{label:<44} {:>6} certs in {:>6.2} s = {rate:>7.1} certs/s   p50 {:>6.2} ms  p90 {:>6.2} ms  p99 {:>6.2} ms  max {:>7.2} ms{cpu}",
        latencies.len(),
        elapsed.as_secs_f64(),
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 90.0)),
        ms(percentile(&latencies, 99.0)),
        ms(latencies.last().copied().unwrap_or_default()),
    );
}

/// N approved enterprise registrations: their enrolment codes.
async fn codes(ca: &Ca, officer: &Caller, n: usize) -> Vec<String> {
    let mut codes = Vec::with_capacity(n);
    for i in 0..n {
        let request = RegistrationRequest::Enterprise {
            uscc: USCC.into(),
            name: format!("Load Test Trading Co. {i}"),
            legal_representative: "Zhang San".into(),
            person_name: None,
            profile: "enterprise-legal-rep".into(),
            authorisation: None,
        };
        let registration = ca.register(officer, request).await.unwrap();
        match ca.approve(officer, &registration.id).await.unwrap() {
            Approval::Code { code, .. } => codes.push(code),
            other => panic!("single control gives a code, not {other:?}"),
        }
    }
    codes
}

fn csrs(n: usize) -> Vec<String> {
    (0..n)
        .map(|_| {
            let key = SoftwareKey::generate(SignatureAlgorithm::EcdsaP256Sha256).unwrap();
            signer_lib::csr::to_pem(&signer_lib::csr::build(&key, "CN=load").unwrap()).unwrap()
        })
        .collect()
}

fn client(root_der: Vec<u8>, name: &str, addr: SocketAddr) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(root_der)).unwrap();
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder().tls_backend_preconfigured(tls).resolve(name, addr).build().unwrap()
}

async fn run(backend: &Backend, n: usize, clients: usize) {
    let dir = tempfile::TempDir::new().unwrap();
    let https = TcpListener::bind("127.0.0.1:0").unwrap();
    let http = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut config = Config::default();
    config.database.url.clone_from(&backend.url);
    config.audit.url.clone_from(&backend.url);
    config.set_default_public_base_url(http.local_addr().unwrap());
    Ca::init(dir.path(), &config).await.unwrap();
    let ca = Ca::open(dir.path(), &config).await.unwrap();
    let server = Server::start(ca.clone(), https, http, Options::default()).unwrap();

    let officer_pem = std::fs::read(dir.path().join("bootstrap/security-officer-1.crt")).unwrap();
    let officer_der = der::Encode::to_der(&signer_lib::certificate::parse(&officer_pem).unwrap()).unwrap();
    let officer = ca.identify(&officer_der, None, "load").await.unwrap();

    println!("== {} ({} enrolments per phase, {clients} concurrent clients)", backend.name, n);
    let prepared = Instant::now();
    let (http_codes, direct_codes) = (codes(&ca, &officer, n).await, codes(&ca, &officer, n).await);
    let (http_csrs, direct_csrs) = (csrs(n), csrs(n));
    println!("   prepared {} approved registrations and CSRs in {:.1} s", 2 * n, prepared.elapsed().as_secs_f64());

    // Phase 1: over HTTPS, keep-alive, `clients` connections.
    let name = config.ceremony.tls_dns_names[0].clone();
    let root = ca.root_certificate_der("p256").unwrap();
    let url = format!("https://{name}:{}/api/v1/enrol", server.https_addr().port());
    let mut jobs: Vec<Vec<(String, String)>> = vec![Vec::new(); clients];
    for (i, job) in http_codes.into_iter().zip(http_csrs).enumerate() {
        jobs[i % clients].push(job);
    }
    let mut tasks = Vec::new();
    let (started, cpu_before) = (Instant::now(), cpu_time());
    for job in jobs {
        let client = client(root.clone(), &name, server.https_addr());
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            // One warm-up connection is opened by the first request; its handshake is counted.
            let mut latencies = Vec::with_capacity(job.len());
            for (code, csr) in job {
                let t = Instant::now();
                let response =
                    client.post(&url).json(&serde_json::json!({ "code": code, "csr": csr })).send().await.unwrap();
                let status = response.status();
                let body = response.bytes().await.unwrap();
                assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    report("HTTPS POST /api/v1/enrol", started.elapsed(), latencies, cpu_before);

    // Phase 2: the service API directly (no TLS, HTTP, JSON or per-call audit record).
    let mut jobs: Vec<Vec<(String, String)>> = vec![Vec::new(); clients];
    for (i, job) in direct_codes.into_iter().zip(direct_csrs).enumerate() {
        jobs[i % clients].push(job);
    }
    let mut tasks = Vec::new();
    let (started, cpu_before) = (Instant::now(), cpu_time());
    for job in jobs {
        let ca = ca.clone();
        tasks.push(tokio::spawn(async move {
            let caller = Caller::anonymous(Some(SocketAddr::from(([127, 0, 0, 1], 1))), "load");
            let mut latencies = Vec::with_capacity(job.len());
            for (code, csr) in job {
                let t = Instant::now();
                ca.enrol(&caller, &code, &csr).await.unwrap();
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    report("service Ca::enrol (no HTTP)", started.elapsed(), latencies, cpu_before);

    // Phase 3: the per-call audit record alone (what the HTTP layer adds to every call).
    let mut tasks = Vec::new();
    let (started, cpu_before) = (Instant::now(), cpu_time());
    for _ in 0..clients {
        let ca = ca.clone();
        let per_client = n / clients;
        tasks.push(tokio::spawn(async move {
            let caller = Caller::anonymous(None, "load");
            let mut latencies = Vec::with_capacity(per_client);
            for _ in 0..per_client {
                let t = Instant::now();
                ca.audit_call(&caller, ca_server::EventType::Enrolment, Some("POST /api/v1/enrol".into()), Ok(()))
                    .await
                    .unwrap();
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    report("audit_call alone (records/s)", started.elapsed(), latencies, cpu_before);

    server.shutdown().await.unwrap();
    ca.close().await;
    backend.drop_database().await;
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let n = env_usize("EPORT_LOAD_N", 2000);
    let clients = env_usize("EPORT_LOAD_CLIENTS", 8).max(1);
    let mut backends = vec![Backend { name: "sqlite", url: None, admin: None }];
    match std::env::var("EPORT_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => backends.push(postgres(&url).await),
        _ => println!("(EPORT_TEST_POSTGRES_URL not set: SQLite only)"),
    }
    for backend in &backends {
        run(backend, n, clients).await;
    }
}
