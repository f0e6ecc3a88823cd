//! `serve`'s schedules: the audit tree head is signed periodically when the log grew, and once
//! more on shutdown, so verification by an audit officer is never far behind.
#![allow(clippy::unwrap_used)]

use std::net::TcpListener;
use std::time::Duration;

use ca_server::serve::{Options, Server};
use ca_server::{Ca, Config};
use signer_lib::audit::{Actor, AuditRecord, EventType, now_millis};

async fn head_size(ca: &Ca) -> u64 {
    ca.audit_log().latest_checkpoint().await.unwrap().map_or(0, |c| c.size())
}

#[tokio::test]
async fn signs_audit_heads_on_a_schedule_and_at_shutdown() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::TempDir::new().unwrap();
    let config = Config::default();
    Ca::init(dir.path(), &config).await.unwrap();
    let ca = Ca::open(dir.path(), &config).await.unwrap();
    let options = Options { audit_head_interval: Some(Duration::from_millis(200)), ..Options::default() };
    let https = TcpListener::bind("127.0.0.1:0").unwrap();
    let http = TcpListener::bind("127.0.0.1:0").unwrap();
    let server = Server::start(ca.clone(), https, http, options).unwrap();

    let record = || AuditRecord::new(now_millis(), Actor::account("schedule-test"), EventType::ConfigurationChanged);
    ca.audit_log().append(&record()).await.unwrap();
    let size = ca.audit_log().size().await.unwrap();
    let mut waited = Duration::ZERO;
    while head_size(&ca).await < size {
        assert!(waited < Duration::from_secs(10), "no head signed for size {size} after {waited:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += Duration::from_millis(100);
    }

    // Appended just before shutdown: the last head covers it.
    ca.audit_log().append(&record()).await.unwrap();
    let size = ca.audit_log().size().await.unwrap();
    server.shutdown().await.unwrap();
    assert_eq!(head_size(&ca).await, size);
    ca.close().await;
}
