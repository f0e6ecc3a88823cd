//! Sign and verify throughput of a 4 KiB message as CMS SignedData, messages per second:
//! software P-256, SM2 and Ed25519, and a SoftHSM2 P-256 token key with 1 and 2 threads.
//!
//! Run: `cargo bench -p eport-tests --bench sign_verify` (seconds per case: BENCH_SECONDS, default 3).
//!
//! Targets (issue "signer-lib keys"): software P-256 CMS sign ≥ 80 % of the raw ECDSA P-256 sign
//! rate of the same library in the same run; SoftHSM2 with 2 threads ≥ 1.8 × 1 thread. The
//! figures are printed; nothing here asserts on time.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use eport_tests::softhsm::{USER_PIN, softhsm};
use signer_lib::envelope::{self, SignOptions, SignerEntry};
use signer_lib::key::pkcs11::{Pkcs11Key, Pkcs11Uri};
use signer_lib::key::software::SoftwareKey;
use signer_lib::{SignatureAlgorithm, Signer};
use x509_cert::Certificate;

const MESSAGE_LEN: usize = 4096;

fn seconds() -> Duration {
    let s = std::env::var("BENCH_SECONDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3.0_f64);
    Duration::from_secs_f64(s)
}

/// Runs `op` on `threads` threads for the configured time and returns operations per second.
fn rate(threads: usize, op: impl Fn() + Sync) -> f64 {
    let budget = seconds();
    let start = Instant::now();
    let total: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut n = 0u64;
                    while start.elapsed() < budget {
                        op();
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("bench thread")).sum()
    });
    #[allow(clippy::cast_precision_loss)]
    let per_second = total as f64 / start.elapsed().as_secs_f64();
    per_second
}

fn certificate_for(signer: &dyn Signer) -> Certificate {
    signer_lib::certificate::self_signed_end_entity(signer, "CN=Bench,O=eport-pki,C=CN", Duration::from_secs(86_400))
        .expect("certificate")
}

fn cms_sign(signer: &dyn Signer, cert: &Certificate, message: &[u8]) -> Vec<u8> {
    let options = SignOptions { detached: true, ..SignOptions::new(SystemTime::now()) };
    envelope::sign(message, &[SignerEntry { signer, certificate: cert, chain: &[] }], &options).expect("sign")
}

fn main() {
    // First: in the parent process this re-runs the benchmark under a fresh SoftHSM2 and exits.
    let hsm = softhsm();
    let message = vec![0x5a_u8; MESSAGE_LEN];
    println!("{:<44} {:>12}", "case (4 KiB message)", "messages/s");

    // Baseline: the raw ECDSA P-256 signature of the same library, no CMS.
    let raw_key = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    let raw = rate(1, || {
        let _sig: p256::ecdsa::Signature = signature::Signer::sign(&raw_key, &message);
    });
    println!("{:<44} {raw:>12.0}", "raw ECDSA P-256 sign (p256 crate)");

    let mut p256_cms = 0.0;
    for alg in SignatureAlgorithm::ALL {
        let key = SoftwareKey::generate(alg).expect("key");
        let cert = certificate_for(&key);
        let signed = rate(1, || {
            cms_sign(&key, &cert, &message);
        });
        if alg == SignatureAlgorithm::EcdsaP256Sha256 {
            p256_cms = signed;
        }
        let sig = cms_sign(&key, &cert, &message);
        let verified = rate(1, || {
            envelope::verify(&sig, Some(&message)).expect("verify");
        });
        println!("{:<44} {signed:>12.0}", format!("software {} CMS sign", alg.name()));
        println!("{:<44} {verified:>12.0}", format!("software {} CMS verify", alg.name()));
    }
    println!("software P-256 CMS sign / raw sign: {:.1} % (target ≥ 80 %)", 100.0 * p256_cms / raw);

    hsm.create_token("bench");
    let uri: Pkcs11Uri = "pkcs11:token=bench;object=bench-p256".parse().expect("uri");
    let key = Arc::new(
        Pkcs11Key::generate(hsm.module(), &uri, Some(USER_PIN), SignatureAlgorithm::EcdsaP256Sha256)
            .expect("token key"),
    );
    let cert = certificate_for(key.as_ref());
    let one = rate(1, || {
        cms_sign(key.as_ref(), &cert, &message);
    });
    let two = rate(2, || {
        cms_sign(key.as_ref(), &cert, &message);
    });
    println!("{:<44} {one:>12.0}", "SoftHSM2 P-256 CMS sign, 1 thread");
    println!("{:<44} {two:>12.0}", "SoftHSM2 P-256 CMS sign, 2 threads");
    println!(
        "SoftHSM2 2 threads / 1 thread: {:.2}x (target ≥ 1.8x), sessions used: {}",
        two / one,
        key.session_count()
    );
}
