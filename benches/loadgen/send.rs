//! The load client: sends `ExportTraceServiceRequest`s over OTLP/gRPC, either at a fixed rate
//! (open loop: requests go out on schedule whether or not earlier ones were answered) or flat
//! out (closed loop: `concurrency` requests in flight, each followed at once by the next).
//!
//! One run: reset the sink, read the daemons' CPU time, send for `duration`, wait until the
//! sink has every accepted span (or `drain_timeout`), read the CPU time and peak RSS again,
//! compare what was accepted with what arrived, print one JSON object on stdout.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use http::uri::PathAndQuery;
use sluice::exporter::otlp::codec::RawCodec;
use tokio::sync::Semaphore;
use tonic::metadata::{MetadataKey, MetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic::Status;

use crate::hist::Hist;
use crate::now_ns;
use crate::procfs::{self, ProcSample};
use crate::template::{Template, MAX_SEQ};

#[derive(clap::Args, Debug, Clone)]
pub struct SendArgs {
    /// OTLP/gRPC endpoint of the daemon under test.
    #[arg(long, default_value = "http://127.0.0.1:4317")]
    endpoint: String,
    /// Spans per request.
    #[arg(long, default_value_t = 100)]
    spans: usize,
    /// Spans per second to offer; 0 = flat out (closed loop).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Seconds to send for.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Flat out: requests in flight. Fixed rate: the most in flight (the schedule waits
    /// beyond it, which shows as lag and a lower offered rate).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// HTTP/2 connections the requests are spread over.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// gRPC metadata `key=value` added to every request (repeatable).
    #[arg(long = "header")]
    headers: Vec<String>,
    /// Control URL of the sink (`loadgen sink`).
    #[arg(long, default_value = "http://127.0.0.1:14319")]
    sink_control: String,
    /// Processes whose CPU time and peak RSS are reported (the daemons under test).
    #[arg(long, value_delimiter = ',')]
    pids: Vec<u32>,
    /// Seconds to wait after sending for the sink to receive every accepted span.
    #[arg(long, default_value_t = 60.0)]
    drain_timeout: f64,
    /// Flat out: pause of a worker after a refused request, in ms.
    #[arg(long, default_value_t = 50)]
    refusal_pause_ms: u64,
    /// Deadline of one request, seconds.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    /// Run id (1..65535); random when 0.
    #[arg(long, default_value_t = 0)]
    run: u16,
    /// Clock ticks per second of /proc/<pid>/stat (getconf CLK_TCK).
    #[arg(long, default_value_t = 100)]
    clk_tck: u64,
}

const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// What all senders share.
struct Shared {
    template: Template,
    spans: u64,
    run: u16,
    next_seq: AtomicU64,
    next_request: AtomicU64,
    headers: Vec<(
        MetadataKey<tonic::metadata::Ascii>,
        MetadataValue<tonic::metadata::Ascii>,
    )>,
    timeout: Duration,
    results: Mutex<Results>,
}

#[derive(Default)]
struct Results {
    /// Accepted sequence ranges `[first, first + n)`.
    accepted: Vec<(u64, u64)>,
    accepted_requests: u64,
    refused: BTreeMap<String, u64>,
    refused_spans: u64,
    ack_latency: Hist,
}

pub async fn run(args: SendArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.spans > 0, "--spans must be at least 1");
    let run = if args.run == 0 {
        ((now_ns() / 1_000) % 65_000) as u16 + 1
    } else {
        args.run
    };
    let headers = args
        .headers
        .iter()
        .map(|h| {
            let (k, v) = h.split_once('=').context("--header wants key=value")?;
            Ok((
                MetadataKey::from_bytes(k.as_bytes())?,
                MetadataValue::try_from(v)?,
            ))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let channels = connect(&args).await?;
    let template = Template::new(args.spans);
    let request_bytes = template.encoded_len();
    let shared = Arc::new(Shared {
        template,
        spans: args.spans as u64,
        run,
        next_seq: AtomicU64::new(0),
        next_request: AtomicU64::new(0),
        headers,
        timeout: Duration::from_secs_f64(args.timeout),
        results: Mutex::new(Results::default()),
    });

    let http = reqwest::Client::new();
    http.post(format!("{}/reset?run={run}", args.sink_control))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .context("resetting the sink")?;

    let cpu_before = sample(&args.pids, args.clk_tck)?;
    let started = Instant::now();
    let started_ns = now_ns();
    let duration = Duration::from_secs_f64(args.duration);
    let mut lag_max = Duration::ZERO;
    if args.rate == 0 {
        flat_out(&shared, &channels, &args, started + duration).await;
    } else {
        lag_max = fixed_rate(&shared, &channels, &args, started, duration).await;
    }
    let sent_for = started.elapsed();
    let in_window = sink_stats(&http, &args.sink_control).await?;

    // Drain: wait until the sink has every accepted span.
    let accepted_spans: u64 = {
        let r = shared.results.lock().unwrap();
        r.accepted.iter().map(|(_, n)| n).sum()
    };
    let drain_started = Instant::now();
    let mut last = in_window.clone();
    let drained = loop {
        let unique = last["unique"].as_u64().unwrap_or(0);
        if unique >= accepted_spans {
            break true;
        }
        if drain_started.elapsed().as_secs_f64() > args.drain_timeout {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        last = sink_stats(&http, &args.sink_control).await?;
    };
    let drain_s = drain_started.elapsed().as_secs_f64();
    let cpu_after = sample(&args.pids, args.clk_tck)?;
    let sink = last;

    // Accepted but never received (loss), received but never accepted (a refusal that was
    // stored anyway: counted, not a fault of the bench).
    let received = http
        .get(format!("{}/received", args.sink_control))
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    let results = shared.results.lock().unwrap();
    let (missing, unexpected) = compare(&results.accepted, &received);

    let unique = sink["unique"].as_u64().unwrap_or(0);
    let last_ns = sink["last_ns"].as_u64().unwrap_or(0);
    let cpu_s: f64 = cpu_after
        .iter()
        .zip(&cpu_before)
        .map(|(a, b)| a.cpu_s - b.cpu_s)
        .sum();
    let offered_requests = shared.next_request.load(Ordering::Relaxed);
    let out = serde_json::json!({
        "run": run,
        "endpoint": args.endpoint,
        "spans_per_request": args.spans,
        "request_bytes": request_bytes,
        "rate_target": args.rate,
        "concurrency": args.concurrency,
        "connections": args.connections,
        "duration_s": sent_for.as_secs_f64(),
        "offered_requests": offered_requests,
        "offered_spans": shared.next_seq.load(Ordering::Relaxed),
        "offered_sps": shared.next_seq.load(Ordering::Relaxed) as f64 / sent_for.as_secs_f64(),
        "schedule_lag_max_ms": lag_max.as_secs_f64() * 1e3,
        "accepted_requests": results.accepted_requests,
        "accepted_spans": accepted_spans,
        "accepted_sps": accepted_spans as f64 / sent_for.as_secs_f64(),
        "refused_requests": results.refused,
        "refused_spans": results.refused_spans,
        "ack_latency": results.ack_latency.summary(),
        "received_in_window": in_window["unique"],
        "drained": drained,
        "drain_s": drain_s,
        "missing_spans": missing,
        "unexpected_spans": unexpected,
        "duplicate_spans": sink["duplicates"],
        "stale_spans": sink["stale"],
        "sink": sink,
        "delivered_spans": unique,
        // End to end: spans the sink got, over first send → last receipt.
        "delivered_sps": if last_ns > started_ns { unique as f64 * 1e9 / (last_ns - started_ns) as f64 } else { 0.0 },
        "latency": sink["latency"],
        "cpu_s": cpu_s,
        "cpu_s_per_million": if unique > 0 { cpu_s * 1e6 / unique as f64 } else { 0.0 },
        "processes": cpu_after.iter().zip(&cpu_before).map(|(a, b)| serde_json::json!({
            "pid": a.pid, "cpu_s": a.cpu_s - b.cpu_s, "rss_peak_kib": a.hwm_kib, "rss_kib": a.rss_kib,
        })).collect::<Vec<_>>(),
        "rss_peak_kib": cpu_after.iter().map(|s| s.hwm_kib).sum::<u64>(),
    });
    println!("{out}");
    Ok(())
}

fn sample(pids: &[u32], clk_tck: u64) -> anyhow::Result<Vec<ProcSample>> {
    pids.iter()
        .map(|&pid| procfs::sample(pid, clk_tck).with_context(|| format!("reading /proc/{pid}")))
        .collect()
}

async fn sink_stats(http: &reqwest::Client, control: &str) -> anyhow::Result<serde_json::Value> {
    let body = http
        .get(format!("{control}/stats"))
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    Ok(serde_json::from_slice(&body)?)
}

fn compare(accepted: &[(u64, u64)], received: &[u8]) -> (u64, u64) {
    let bit = |seq: u64| -> bool {
        let byte = (seq / 8) as usize;
        byte < received.len() && received[byte] & (1 << (seq % 8)) != 0
    };
    let mut accepted_bits = vec![0u8; received.len()];
    let mut missing = 0;
    for &(first, n) in accepted {
        for seq in first..first + n {
            if !bit(seq) {
                missing += 1;
            } else {
                accepted_bits[(seq / 8) as usize] |= 1 << (seq % 8);
            }
        }
    }
    let received_total: u64 = received.iter().map(|b| u64::from(b.count_ones())).sum();
    let received_accepted: u64 = accepted_bits
        .iter()
        .map(|b| u64::from(b.count_ones()))
        .sum();
    (missing, received_total - received_accepted)
}

async fn connect(args: &SendArgs) -> anyhow::Result<Vec<Channel>> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut channels = Vec::new();
    while channels.len() < args.connections.max(1) {
        let endpoint = Endpoint::from_shared(args.endpoint.clone())?
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(2));
        match endpoint.connect().await {
            Ok(c) => channels.push(c),
            Err(e) if Instant::now() < deadline => {
                eprintln!("loadgen: connecting to {}: {e}; retrying", args.endpoint);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e).context("connecting to the daemon"),
        }
    }
    Ok(channels)
}

/// Sends one request; records the outcome. True when accepted.
async fn send_one(shared: &Shared, channel: Channel) -> bool {
    let n = shared.spans;
    let first = shared.next_seq.fetch_add(n, Ordering::Relaxed);
    assert!(first + n <= MAX_SEQ, "sequence numbers exhausted");
    let request_no = shared.next_request.fetch_add(1, Ordering::Relaxed);
    let body = shared
        .template
        .render(shared.run, first, request_no, now_ns());
    let mut request = tonic::Request::new(body);
    request.set_timeout(shared.timeout);
    for (k, v) in &shared.headers {
        request.metadata_mut().insert(k.clone(), v.clone());
    }
    let started = Instant::now();
    let mut grpc = tonic::client::Grpc::new(channel);
    let outcome = match grpc.ready().await {
        Ok(()) => grpc
            .unary::<Bytes, Bytes, _>(request, PathAndQuery::from_static(EXPORT_PATH), RawCodec)
            .await
            .map(|_| ()),
        Err(e) => Err(Status::unavailable(format!("not ready: {e}"))),
    };
    let elapsed = started.elapsed();
    let mut r = shared.results.lock().unwrap();
    match outcome {
        Ok(()) => {
            r.accepted.push((first, n));
            r.accepted_requests += 1;
            r.ack_latency.record_n(elapsed.as_micros() as u64, 1);
            true
        }
        Err(status) => {
            *r.refused.entry(format!("{:?}", status.code())).or_default() += 1;
            r.refused_spans += n;
            false
        }
    }
}

async fn flat_out(shared: &Arc<Shared>, channels: &[Channel], args: &SendArgs, until: Instant) {
    let pause = Duration::from_millis(args.refusal_pause_ms);
    let workers = (0..args.concurrency.max(1)).map(|i| {
        let shared = shared.clone();
        let channel = channels[i % channels.len()].clone();
        tokio::spawn(async move {
            while Instant::now() < until {
                if !send_one(&shared, channel.clone()).await {
                    tokio::time::sleep(pause).await;
                }
            }
        })
    });
    for w in futures::future::join_all(workers).await {
        w.expect("sender task");
    }
}

/// Open loop: request k is due at `k * spans / rate` seconds. Returns the largest lag of a
/// request behind its schedule (waiting for an in-flight slot).
async fn fixed_rate(
    shared: &Arc<Shared>,
    channels: &[Channel],
    args: &SendArgs,
    started: Instant,
    duration: Duration,
) -> Duration {
    let per_request = Duration::from_secs_f64(args.spans as f64 / args.rate as f64);
    let total = (duration.as_secs_f64() / per_request.as_secs_f64()).round() as u64;
    let slots = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    let mut lag_max = Duration::ZERO;
    for k in 0..total {
        let due = started + per_request.mul_f64(k as f64);
        let now = Instant::now();
        if due > now {
            tokio::time::sleep_until(due.into()).await;
        }
        let permit = slots.clone().acquire_owned().await.expect("semaphore");
        lag_max = lag_max.max(Instant::now().saturating_duration_since(due));
        let shared = shared.clone();
        let channel = channels[(k as usize) % channels.len()].clone();
        tasks.spawn(async move {
            send_one(&shared, channel).await;
            drop(permit);
        });
        // Reap finished tasks so the set stays small.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    lag_max
}
