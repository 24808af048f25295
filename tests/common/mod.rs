//! Helpers shared by the integration tests: they run the real `sluice` binary as a child
//! process, talk to it with real OTLP clients, and receive what it forwards with an in-test
//! OTLP gRPC backend.
//!
//! * [`process`]: start / SIGKILL / SIGTERM a sluice process, readiness, stderr on failure
//! * [`config`]: the YAML config the tests run sluice with
//! * [`chaos`]: the fault matrix's continuous load and its count of acknowledged, delivered
//!   and duplicated spans
//! * [`backend`]: a tonic OTLP backend that records requests per tenant and can fail on demand
//! * [`http`]: a tiny HTTP/1 client for `/readyz` and `/metrics`, and a Prometheus text parser
//! * [`http_client`]: OTLP/HTTP requests by hand (any method, headers, body) and their answers
//! * [`otlp`]: building OTLP requests, raw gRPC calls (for malformed input), SDK set-up
//! * [`kafka`], [`nats`]: the Kafka and NATS brokers `make test` starts, and readers of them
//! * [`pulsar`]: the test broker (`make test` starts it), its admin API, a direct consumer
//! * [`tls`]: a throwaway PKI (rcgen), a TLS proxy in front of a test backend, TLS clients
#![allow(dead_code, unused_imports)]

pub mod backend;
pub mod chaos;
pub mod config;
pub mod http;
pub mod http_client;
pub mod kafka;
pub mod nats;
pub mod otlp;
pub mod process;
pub mod pulsar;
pub mod python;
pub mod tcp_proxy;
pub mod tls;

use std::future::Future;
use std::net::TcpListener;
use std::time::{Duration, Instant};

pub use backend::Backend;
pub use config::SluiceConfig;
pub use http::{metric_sum, metrics_text};
pub use process::{send_named_spans, send_prefixed_spans, SluiceProcess};

/// A TCP port on 127.0.0.1 that is free now, that this test process has not handed out
/// before, and that lies below the kernel's ephemeral range. A port taken from the
/// ephemeral range (by binding port 0) is free only until the kernel hands it to some
/// outgoing connection: a client socket of a broker or of another test took such a port
/// between the check and Sluice's bind once, and Sluice then failed to start with
/// "Address already in use". The kernel never gives a port below the range to a
/// connection, so one that is free here stays free for the listener it is meant for.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let low = ephemeral_low.saturating_sub(12_000).max(10_000);
    let span = u32::from(ephemeral_low.saturating_sub(low).max(1));
    // Test binaries run one after another; starting each at its own offset keeps a
    // binary away from the ports its predecessor's processes may still be closing.
    let start = std::process::id() % span;
    let mut given = GIVEN
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    for step in 0..span {
        let port = low + ((start + step) % span) as u16;
        if given.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return port;
        }
    }
    panic!("no free port in {low}..{ephemeral_low} on 127.0.0.1");
}

/// Polls `check` every 25 ms until it returns `Some`, or panics after `timeout` with `what`
/// and the last observation.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(last) if Instant::now() >= deadline => {
                panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(25)).await,
        }
    }
}

/// A fresh temporary directory for one sluice instance (config, logs, buffer).
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("sluice-it-")
        .tempdir()
        .expect("create a temp dir")
}

/// Runs a broker script of `deploy/` (`start`, `stop`, `resume`, …), failing the test with its
/// output when it fails.
pub fn run_script(script: &str, command: &str) {
    let out = std::process::Command::new("bash")
        .arg(script)
        .arg(command)
        .output()
        .unwrap_or_else(|e| panic!("run {script} {command}: {e}"));
    assert!(
        out.status.success(),
        "{script} {command} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
