//! Clients as an attacker on the same network would be (issue: hardening): connections that
//! trickle header bytes, more connections than allowed, and uploads that stall after most of
//! a large body. Sluice closes the first, refuses the second at once (counted), and keeps its
//! memory bounded under the third while a well-behaved client is still served. Also the
//! HTTP/2 settings its gRPC server gives every client.

mod common;

use std::time::{Duration, Instant};

use common::{temp_dir, wait_for, Backend, SluiceConfig, SluiceProcess};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the server closes the connection (or it is reset); how long that took.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    let read = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(limit, read)
        .await
        .ok()
        .map(|()| started.elapsed())
}

/// An HTTP/2 client preface and an empty SETTINGS frame.
async fn send_h2_preface(stream: &mut TcpStream) {
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_trickling_its_headers_is_closed_at_the_header_timeout() {
    let dir = temp_dir();
    let backend = Backend::start().await;
    let config =
        SluiceConfig::new(dir.path(), backend.port()).with_http(&["read_header_timeout: 2s"]);
    let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
    let mut stream = TcpStream::connect(sluice.http_addr.expect("http"))
        .await
        .expect("connect");
    stream
        .write_all(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    // One header byte a second, never finishing: the header timeout still applies.
    let trickle = async {
        for _ in 0..30 {
            if stream.write_all(b"X").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(4), trickle).await;
    let closed = closed_within(&mut stream, Duration::from_secs(10)).await;
    assert!(
        closed.is_some(),
        "the connection is still open after the header timeout"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_grpc_connection_past_its_max_age_is_sent_away() {
    let dir = temp_dir();
    let backend = Backend::start().await;
    let mut config = SluiceConfig::new(dir.path(), backend.port());
    config.grpc_extra = vec![
        "max_connection_age: 1s".into(),
        "max_connection_age_grace: 1s".into(),
    ];
    let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
    let mut stream = TcpStream::connect(sluice.grpc_addr).await.unwrap();
    // The preface, then silence: without a maximum age the connection would stay open until
    // the keep-alive gives up (about 50 s).
    send_h2_preface(&mut stream).await;
    let closed = closed_within(&mut stream, Duration::from_secs(15)).await;
    assert!(closed.is_some(), "the connection outlived its maximum age");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_grpc_server_lets_clients_send_64_kib_frames() {
    let dir = temp_dir();
    let backend = Backend::start().await;
    let config = SluiceConfig::new(dir.path(), backend.port());
    let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
    let mut stream = TcpStream::connect(sluice.grpc_addr).await.unwrap();
    send_h2_preface(&mut stream).await;
    // The server's first frame is its SETTINGS: 6-byte entries of a 16-bit id and a 32-bit
    // value; SETTINGS_MAX_FRAME_SIZE is id 5.
    let mut header = [0u8; 9];
    stream.read_exact(&mut header).await.unwrap();
    assert_eq!(header[3], 0x4, "a SETTINGS frame first");
    let len = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).await.unwrap();
    let max_frame_size = payload.chunks_exact(6).find_map(|entry| {
        (u16::from_be_bytes([entry[0], entry[1]]) == 5)
            .then(|| u32::from_be_bytes([entry[2], entry[3], entry[4], entry[5]]))
    });
    assert_eq!(max_frame_size, Some(64 * 1024));
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_beyond_the_cap_are_closed_at_once_and_counted() {
    let dir = temp_dir();
    let backend = Backend::start().await;
    let mut config = SluiceConfig::new(dir.path(), backend.port())
        .with_http(&["max_connections: 3", "read_header_timeout: 60s"]);
    config.grpc_extra = vec!["max_connections: 3".into()];
    let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
    for (transport, addr) in [
        ("http", sluice.http_addr.expect("http")),
        ("grpc", sluice.grpc_addr),
    ] {
        at_most_three_connections(&sluice, transport, addr).await;
    }
}

async fn at_most_three_connections(
    sluice: &SluiceProcess,
    transport: &str,
    addr: std::net::SocketAddr,
) {
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(addr).await.expect("connect"));
    }
    // Idle but within the cap: still open.
    for stream in &mut held {
        assert!(closed_within(stream, Duration::from_millis(300))
            .await
            .is_none());
    }
    let mut extra = TcpStream::connect(addr).await.expect("the kernel accepts");
    let closed = closed_within(&mut extra, Duration::from_secs(10)).await;
    assert!(
        closed.is_some(),
        "{transport}: a fourth connection must be closed"
    );
    let refused = wait_for("the refusal counted", Duration::from_secs(10), || async {
        let n = sluice
            .metric(
                "sluice_receiver_refused_connections_total",
                &[("transport", transport), ("reason", "connection_limit")],
            )
            .await;
        (n >= 1.0).then_some(n).ok_or(format!("{n}"))
    })
    .await;
    assert!(refused >= 1.0);
}

fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn stalled_uploads_keep_memory_bounded_and_a_good_client_is_served() {
    const UPLOADS: usize = 48;
    const DECLARED: usize = 16_000_000;
    const SENT: usize = 15 << 20;
    let dir = temp_dir();
    let backend = Backend::start().await;
    // Default memory budget; a short body timeout so the test does not wait long.
    let config = SluiceConfig::new(dir.path(), backend.port()).with_http(&["read_timeout: 5s"]);
    let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
    let addr = sluice.http_addr.expect("http");

    let chunk = vec![0x0au8; 1 << 20];
    let sent_all = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut stalled = Vec::new();
    for _ in 0..UPLOADS {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let head = format!(
            "POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: {DECLARED}\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.expect("head");
        let (chunk, sent_all) = (chunk.clone(), sent_all.clone());
        stalled.push(tokio::spawn(async move {
            // Sluice may refuse (and stop reading) once its budget is spent: stop there too.
            for _ in 0..SENT / chunk.len() {
                if tokio::time::timeout(Duration::from_secs(2), stream.write_all(&chunk))
                    .await
                    .map_or(true, |r| r.is_err())
                {
                    break;
                }
            }
            sent_all.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            // Then stall, holding the connection open.
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(stream);
        }));
    }
    wait_for(
        "every upload sent or cut off",
        Duration::from_secs(120),
        || async {
            let n = sent_all.load(std::sync::atomic::Ordering::SeqCst);
            (n == UPLOADS)
                .then_some(())
                .ok_or(format!("{n} of {UPLOADS}"))
        },
    )
    .await;
    let refused = sluice
        .metric(
            "sluice_receiver_refused_requests_total",
            &[("transport", "http"), ("reason", "inflight_full")],
        )
        .await;
    assert!(
        refused >= 1.0,
        "the memory budget refused the uploads beyond it"
    );
    // A well-behaved client, retrying on 503 + Retry-After as OTLP exporters do, is served
    // (at the latest once the stalled uploads are cut off at the read timeout).
    let request = prost::Message::encode_to_vec(&common::otlp::trace_request(
        "good",
        None,
        common::otlp::named_spans("good", 0, 100),
    ));
    wait_for("a good client served", Duration::from_secs(60), || {
        let request = request.clone();
        async move {
            let reply = common::http_client::post(
                addr,
                "/v1/traces",
                "application/x-protobuf",
                Some("acme"),
                request,
            )
            .await;
            (reply.status == 200)
                .then_some(())
                .ok_or(format!("status {}", reply.status))
        }
    })
    .await;
    let peak_mib = vm_hwm_kib(sluice.pid()) / 1024;
    eprintln!("{UPLOADS} stalled uploads of {SENT} bytes: peak RSS {peak_mib} MiB");
    assert!(peak_mib < 300, "peak RSS {peak_mib} MiB");
    for task in stalled {
        task.abort();
    }
}
