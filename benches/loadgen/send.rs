//! The load client: sends OTLP export requests (`--signal`: traces by default, logs or
//! metrics; "spans" below are the items of whichever it is), either at a fixed rate
//! (open loop: requests go out on schedule whether or not earlier ones were answered) or flat
//! out (closed loop: `concurrency` requests in flight, each followed at once by the next).
//!
//! One run: reset the sink, read the daemons' CPU time, send for `duration`, wait until the
//! sink has every accepted span (or `drain_timeout`), read the CPU time and peak RSS again,
//! compare what was accepted with what arrived, print one JSON object on stdout.
//!
//! With `--healthz-every N` every N-th span is a health check the daemon's filter should
//! drop: "every accepted span" then means every accepted span that is not one, and health
//! checks that arrive anyway are counted (`healthz_received`). With `--quiet-tenants N`, N
//! more tenants (indices 1..=N, the main load is tenant 0) each send `--quiet-rate` spans/s
//! on a fixed schedule over their own connections while the main load runs; the report then
//! lists every tenant's acknowledgements, deliveries and latencies under `tenants`.
//!
//! `--protocol` picks the transport and encoding: OTLP/gRPC (HTTP/2, `--connections`
//! connections), or OTLP/HTTP with protobuf or JSON bodies (HTTP/1.1, as the SDKs' HTTP
//! exporters send: one request per connection at a time, so as many connections as requests
//! in flight). `--compression gzip` compresses every request as it is sent, on both.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use http::uri::PathAndQuery;
use sluice::exporter::otlp::codec::RawCodec;
use sluice::signal::Signal;
use tokio::sync::Semaphore;
use tonic::codec::CompressionEncoding;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::transport::{Channel, Endpoint};

use crate::content::{healthz_in, ItemOptions};
use crate::hist::Hist;
use crate::now_ns;
use crate::procfs::{self, ProcSample};
use crate::template::{Encoding, Templates, MAX_SEQ};

#[derive(clap::Args, Debug, Clone)]
pub struct SendArgs {
    /// OTLP endpoint of the daemon under test: gRPC's, or OTLP/HTTP's base URL (the request
    /// goes to `<endpoint>/v1/traces`, `/v1/logs` or `/v1/metrics`).
    #[arg(long, default_value = "http://127.0.0.1:4317")]
    endpoint: String,
    /// The signal sent: traces (spans), logs (log records), or metrics (integer gauge
    /// points).
    #[arg(long, default_value = "traces")]
    signal: Signal,
    /// Transport and encoding of the requests.
    #[arg(long, value_enum, default_value_t = Protocol::Grpc)]
    protocol: Protocol,
    /// Compression of every request body.
    #[arg(long, value_enum, default_value_t = Compression::None)]
    compression: Compression,
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
    /// gRPC: HTTP/2 connections the requests are spread over. (OTLP/HTTP opens one
    /// connection per request in flight.)
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
    /// Every span carries a `user.email` attribute (for an attributes processor's `hash`).
    #[arg(long)]
    user_email: bool,
    /// Every N-th span (by sequence number) is a health check, `http.route: /healthz`, which
    /// the daemon is expected to filter out; 0 = none.
    #[arg(long, default_value_t = 0)]
    healthz_every: u64,
    /// Tenant of the main load, sent in `--tenant-header` on its requests.
    #[arg(long)]
    tenant: Option<String>,
    /// The gRPC header that names the tenant.
    #[arg(long, default_value = "x-scope-orgid")]
    tenant_header: String,
    /// Quiet tenants sending beside the main load, each on its own fixed schedule.
    #[arg(long, default_value_t = 0)]
    quiet_tenants: u32,
    /// Spans per second of each quiet tenant.
    #[arg(long, default_value_t = 10.0)]
    quiet_rate: f64,
    /// Spans per request of the quiet tenants.
    #[arg(long, default_value_t = 1)]
    quiet_spans: usize,
    /// Quiet tenant i (0-based) is named `<prefix><i, 3 digits>`.
    #[arg(long, default_value = "quiet-")]
    quiet_prefix: String,
    /// HTTP/2 connections the quiet tenants' requests are spread over (apart from the main
    /// load's).
    #[arg(long, default_value_t = 8)]
    quiet_connections: usize,
    /// Only the quiet tenants send (a baseline without the main load).
    #[arg(long)]
    quiet_only: bool,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    #[value(name = "http/protobuf")]
    HttpProtobuf,
    #[value(name = "http/json")]
    HttpJson,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
}

/// Where requests go: one of the gRPC channels, or the signal's OTLP/HTTP URL through a pool.
#[derive(Clone)]
enum Connection {
    Grpc(Channel),
    Http(reqwest::Client, Arc<str>),
}

/// The daemon's connections and how every request is sent over them.
struct Transport {
    connections: Vec<Connection>,
    signal: Signal,
    protocol: Protocol,
    gzip: bool,
}

type Headers = Vec<(
    MetadataKey<tonic::metadata::Ascii>,
    MetadataValue<tonic::metadata::Ascii>,
)>;

/// What all senders share.
struct Shared {
    run: u16,
    /// One sequence space for all tenants, so the sink's bitset stays dense.
    next_seq: AtomicU64,
    next_request: AtomicU64,
    healthz_every: u64,
    timeout: Duration,
    results: Mutex<Results>,
}

/// One tenant's requests: what they look like and carry.
struct Source {
    templates: Arc<Templates>,
    spans: u64,
    tenant: u32,
    /// As gRPC metadata, and the same as HTTP headers.
    headers: Headers,
    http_headers: http::HeaderMap,
}

impl Source {
    fn new(templates: Arc<Templates>, spans: u64, tenant: u32, headers: Headers) -> Source {
        let mut metadata = MetadataMap::new();
        for (k, v) in &headers {
            metadata.insert(k.clone(), v.clone());
        }
        Source {
            templates,
            spans,
            tenant,
            headers,
            http_headers: metadata.into_headers(),
        }
    }
}

#[derive(Default)]
struct Results {
    /// Accepted sequence ranges `[first, first + n)`.
    accepted: Vec<(u64, u64)>,
    accepted_requests: u64,
    /// Accepted spans the sink must receive (not health checks).
    accepted_expected: u64,
    refused: BTreeMap<String, u64>,
    refused_spans: u64,
    ack_latency: Hist,
    /// By tenant index.
    tenants: Vec<TenantResult>,
}

#[derive(Default)]
struct TenantResult {
    offered_spans: u64,
    accepted_spans: u64,
    refused_spans: u64,
    ack_latency: Hist,
}

/// The `--header key=value` metadata of every request.
fn extra_headers(
    args: &SendArgs,
) -> anyhow::Result<
    Vec<(
        MetadataKey<tonic::metadata::Ascii>,
        MetadataValue<tonic::metadata::Ascii>,
    )>,
> {
    args.headers
        .iter()
        .map(|h| {
            let (k, v) = h.split_once('=').context("--header wants key=value")?;
            header(k, v)
        })
        .collect()
}

fn header(
    k: &str,
    v: &str,
) -> anyhow::Result<(
    MetadataKey<tonic::metadata::Ascii>,
    MetadataValue<tonic::metadata::Ascii>,
)> {
    Ok((
        MetadataKey::from_bytes(k.as_bytes())?,
        MetadataValue::try_from(v)?,
    ))
}

/// The name of tenant `index` (0 = the main load).
fn tenant_name(args: &SendArgs, index: u32) -> Option<String> {
    if index == 0 {
        args.tenant.clone()
    } else {
        Some(format!("{}{:03}", args.quiet_prefix, index - 1))
    }
}

pub async fn run(args: SendArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.spans > 0, "--spans must be at least 1");
    anyhow::ensure!(args.quiet_spans > 0, "--quiet-spans must be at least 1");
    anyhow::ensure!(
        args.quiet_tenants == 0 || args.quiet_rate > 0.0,
        "--quiet-rate must be above 0"
    );
    anyhow::ensure!(
        !args.quiet_only || args.quiet_tenants > 0,
        "--quiet-only wants --quiet-tenants"
    );
    let run = if args.run == 0 {
        ((now_ns() / 1_000) % 65_000) as u16 + 1
    } else {
        args.run
    };
    let mut headers = extra_headers(&args)?;
    if let Some(tenant) = &args.tenant {
        headers.push(header(&args.tenant_header, tenant)?);
    }
    anyhow::ensure!(
        args.signal == Signal::Traces || args.protocol != Protocol::HttpJson,
        "OTLP/JSON requests are built for traces only"
    );
    let options = ItemOptions {
        user_email: args.user_email,
        healthz_every: args.healthz_every,
    };
    let encoding = match args.protocol {
        Protocol::HttpJson => Encoding::Json,
        Protocol::Grpc | Protocol::HttpProtobuf => Encoding::Protobuf,
    };
    let transport = Arc::new(connect(&args, args.connections).await?);
    let templates = Arc::new(Templates::new(args.signal, args.spans, options, encoding));
    let request_bytes = templates.encoded_len();
    let main = Arc::new(Source::new(
        templates,
        args.spans as u64,
        0,
        headers.clone(),
    ));
    let mut quiet: Vec<Arc<Source>> = Vec::new();
    let mut quiet_transport = None;
    if args.quiet_tenants > 0 {
        quiet_transport = Some(Arc::new(connect(&args, args.quiet_connections).await?));
        let templates = Arc::new(Templates::new(
            args.signal,
            args.quiet_spans,
            options,
            encoding,
        ));
        for i in 1..=args.quiet_tenants {
            let mut h = extra_headers(&args)?;
            h.push(header(
                &args.tenant_header,
                &tenant_name(&args, i).expect("quiet tenants are named"),
            )?);
            quiet.push(Arc::new(Source::new(
                templates.clone(),
                args.quiet_spans as u64,
                i,
                h,
            )));
        }
    }
    let shared = Arc::new(Shared {
        run,
        next_seq: AtomicU64::new(0),
        next_request: AtomicU64::new(0),
        healthz_every: args.healthz_every,
        timeout: Duration::from_secs_f64(args.timeout),
        results: Mutex::new(Results {
            tenants: (0..=args.quiet_tenants)
                .map(|_| TenantResult::default())
                .collect(),
            ..Results::default()
        }),
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
    let main_load = async {
        if args.quiet_only {
            Duration::ZERO
        } else if args.rate == 0 {
            flat_out(&shared, &main, &transport, &args, started + duration).await;
            Duration::ZERO
        } else {
            let per_request = Duration::from_secs_f64(args.spans as f64 / args.rate as f64);
            let sources = [main.clone()];
            fixed_rate(
                &shared,
                &sources,
                &transport,
                per_request,
                args.concurrency,
                started,
                duration,
            )
            .await
        }
    };
    let quiet_load = async {
        let Some(quiet_transport) = &quiet_transport else {
            return Duration::ZERO;
        };
        // All quiet tenants in turn: each sends every `quiet_spans / quiet_rate` seconds, the
        // tenants' sends spread evenly over that period.
        let total_rate = args.quiet_rate * quiet.len() as f64;
        let per_request = Duration::from_secs_f64(args.quiet_spans as f64 / total_rate);
        fixed_rate(
            &shared,
            &quiet,
            quiet_transport,
            per_request,
            1024,
            started,
            duration,
        )
        .await
    };
    let (lag_max, quiet_lag_max) = tokio::join!(main_load, quiet_load);
    let sent_for = started.elapsed();
    // CPU while the load ran (the drain after it can be long when a daemon falls behind).
    let cpu_at_send_end = sample(&args.pids, args.clk_tck)?;
    let in_window = sink_stats(&http, &args.sink_control).await?;

    // Drain: wait until the sink has every accepted span (that is not a health check).
    let (accepted_spans, expected_spans): (u64, u64) = {
        let r = shared.results.lock().unwrap();
        (r.accepted.iter().map(|(_, n)| n).sum(), r.accepted_expected)
    };
    let drain_started = Instant::now();
    let mut last = in_window.clone();
    let drained = loop {
        let unique = last["unique"].as_u64().unwrap_or(0);
        if unique >= expected_spans {
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
    let tenants_seen: serde_json::Value = {
        let body = http
            .get(format!("{}/tenants", args.sink_control))
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        serde_json::from_slice(&body)?
    };
    let results = shared.results.lock().unwrap();
    let Comparison {
        missing,
        missing_ranges,
        unexpected,
        healthz_received,
    } = compare(&results.accepted, &received, args.healthz_every);

    let unique = sink["unique"].as_u64().unwrap_or(0);
    let last_ns = sink["last_ns"].as_u64().unwrap_or(0);
    let cpu_s: f64 = cpu_after
        .iter()
        .zip(&cpu_before)
        .map(|(a, b)| a.cpu_s - b.cpu_s)
        .sum();
    let offered_requests = shared.next_request.load(Ordering::Relaxed);
    let per_tenant_seen: BTreeMap<u64, &serde_json::Value> = tenants_seen
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| Some((t["tenant"].as_u64()?, t)))
                .collect()
        })
        .unwrap_or_default();
    let tenants: Vec<serde_json::Value> = results
        .tenants
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let name = tenant_name(&args, i as u32);
            let seen = per_tenant_seen.get(&(i as u64));
            let get = |k: &str| seen.map(|s| s[k].clone()).unwrap_or(serde_json::Value::Null);
            let unique = seen.and_then(|s| s["unique"].as_u64()).unwrap_or(0);
            let last = seen.and_then(|s| s["last_ns"].as_u64()).unwrap_or(0);
            let header = seen.and_then(|s| s["header"].as_str());
            serde_json::json!({
                "tenant": i,
                "name": name,
                "offered_spans": t.offered_spans,
                "accepted_spans": t.accepted_spans,
                "refused_spans": t.refused_spans,
                "ack_latency": t.ack_latency.summary(),
                "delivered_spans": unique,
                "delivered_sps": if last > started_ns { unique as f64 * 1e9 / (last - started_ns) as f64 } else { 0.0 },
                "latency": get("latency"),
                "requests_received": get("requests"),
                "header": header,
                "header_forwarded": name.is_some() && header == name.as_deref(),
                "header_mismatches": get("header_mismatches"),
                "requests_without_header": get("requests_without_header"),
            })
        })
        .collect();
    let out = serde_json::json!({
        "run": run,
        "endpoint": args.endpoint,
        "signal": args.signal.as_str(),
        "protocol": format!("{:?}", args.protocol),
        "compression": format!("{:?}", args.compression),
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
        "quiet_schedule_lag_max_ms": quiet_lag_max.as_secs_f64() * 1e3,
        "accepted_requests": results.accepted_requests,
        "accepted_spans": accepted_spans,
        "accepted_sps": accepted_spans as f64 / sent_for.as_secs_f64(),
        // Acknowledged spans over first send → last receipt (with a filter, more than arrive).
        "accepted_e2e_sps": if last_ns > started_ns { accepted_spans as f64 * 1e9 / (last_ns - started_ns) as f64 } else { 0.0 },
        "healthz_every": args.healthz_every,
        "user_email": args.user_email,
        "expected_spans": expected_spans,
        "healthz_received": healthz_received,
        "refused_requests": results.refused,
        "refused_spans": results.refused_spans,
        "ack_latency": results.ack_latency.summary(),
        "received_in_window": in_window["unique"],
        "drained": drained,
        "drain_s": drain_s,
        "missing_spans": missing,
        "missing_ranges": missing_ranges,
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
        // Daemon CPU seconds over the sending window only, and as cores.
        "cpu_s_sending": cpu_at_send_end.iter().zip(&cpu_before).map(|(a, b)| a.cpu_s - b.cpu_s).sum::<f64>(),
        "cpu_s_per_million_accepted": if accepted_spans > 0 { cpu_s * 1e6 / accepted_spans as f64 } else { 0.0 },
        "mixed_requests": sink["mixed_requests"],
        "quiet_tenants": args.quiet_tenants,
        "quiet_rate": args.quiet_rate,
        "quiet_spans_per_request": args.quiet_spans,
        "quiet_only": args.quiet_only,
        "tenants": tenants,
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

/// What the sink got against what was accepted.
struct Comparison {
    /// Accepted, not a health check, never received.
    missing: u64,
    /// The first runs of missing span numbers, `[first, count]` in send order: where in the
    /// run the lost spans were sent.
    missing_ranges: Vec<[u64; 2]>,
    /// Received, never accepted.
    unexpected: u64,
    /// Accepted health checks that arrived although filtered.
    healthz_received: u64,
}

/// How many runs of missing spans a report lists.
const MISSING_RANGES_LISTED: usize = 16;

fn compare(accepted: &[(u64, u64)], received: &[u8], healthz_every: u64) -> Comparison {
    let bit = |seq: u64| -> bool {
        let byte = (seq / 8) as usize;
        byte < received.len() && received[byte] & (1 << (seq % 8)) != 0
    };
    let mut accepted_bits = vec![0u8; received.len()];
    let mut missing = 0;
    let mut missing_ranges: Vec<[u64; 2]> = Vec::new();
    let mut healthz_received = 0;
    for &(first, n) in accepted {
        for seq in first..first + n {
            let healthz = crate::content::is_healthz(seq, healthz_every);
            if !bit(seq) {
                if !healthz {
                    missing += 1;
                    let listed = missing_ranges.len();
                    match missing_ranges.last_mut() {
                        Some([start, count]) if *start + *count == seq => *count += 1,
                        _ if listed < MISSING_RANGES_LISTED => missing_ranges.push([seq, 1]),
                        _ => {}
                    }
                }
            } else {
                healthz_received += u64::from(healthz);
                accepted_bits[(seq / 8) as usize] |= 1 << (seq % 8);
            }
        }
    }
    let received_total: u64 = received.iter().map(|b| u64::from(b.count_ones())).sum();
    let received_accepted: u64 = accepted_bits
        .iter()
        .map(|b| u64::from(b.count_ones()))
        .sum();
    Comparison {
        missing,
        missing_ranges,
        unexpected: received_total - received_accepted,
        healthz_received,
    }
}

async fn connect(args: &SendArgs, connections: usize) -> anyhow::Result<Transport> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let connections = match args.protocol {
        Protocol::Grpc => grpc_channels(&args.endpoint, connections, deadline).await?,
        Protocol::HttpProtobuf | Protocol::HttpJson => {
            vec![http_pool(&args.endpoint, args.signal, deadline).await?]
        }
    };
    Ok(Transport {
        connections,
        signal: args.signal,
        protocol: args.protocol,
        gzip: args.compression == Compression::Gzip,
    })
}

async fn grpc_channels(
    endpoint: &str,
    connections: usize,
    deadline: Instant,
) -> anyhow::Result<Vec<Connection>> {
    let mut channels = Vec::new();
    while channels.len() < connections.max(1) {
        let e = Endpoint::from_shared(endpoint.to_string())?
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(2));
        match e.connect().await {
            Ok(c) => channels.push(Connection::Grpc(c)),
            Err(e) if Instant::now() < deadline => {
                eprintln!("loadgen: connecting to {endpoint}: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e).context("connecting to the daemon"),
        }
    }
    Ok(channels)
}

/// One pool for all OTLP/HTTP requests: it opens a connection per request in flight.
async fn http_pool(
    endpoint: &str,
    signal: Signal,
    deadline: Instant,
) -> anyhow::Result<Connection> {
    // The pool connects on demand; wait here until the daemon's HTTP port accepts, since a
    // daemon is declared ready by its gRPC port or health endpoint.
    let authority = http::Uri::try_from(endpoint)?
        .authority()
        .context("--endpoint needs a host and port")?
        .to_string();
    while let Err(e) = tokio::net::TcpStream::connect(&authority).await {
        anyhow::ensure!(Instant::now() < deadline, "connecting to {authority}: {e}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let client = reqwest::Client::builder()
        .http1_only()
        .tcp_nodelay(true)
        .build()?;
    let url = format!("{}/v1/{signal}", endpoint.trim_end_matches('/'));
    Ok(Connection::Http(client, url.into()))
}

impl Transport {
    fn connection(&self, i: usize) -> Connection {
        self.connections[i % self.connections.len()].clone()
    }

    /// Sends one request body; `Err` is the refusal as reported (`Unavailable`, `HTTP 429`).
    async fn send(
        &self,
        connection: Connection,
        body: Bytes,
        source: &Source,
        timeout: Duration,
    ) -> Result<(), String> {
        match connection {
            Connection::Grpc(channel) => {
                let mut request = tonic::Request::new(body);
                request.set_timeout(timeout);
                for (k, v) in &source.headers {
                    request.metadata_mut().insert(k.clone(), v.clone());
                }
                let mut grpc = tonic::client::Grpc::new(channel);
                if self.gzip {
                    grpc = grpc.send_compressed(CompressionEncoding::Gzip);
                }
                grpc.ready().await.map_err(|e| format!("not ready: {e}"))?;
                grpc.unary::<Bytes, Bytes, _>(
                    request,
                    PathAndQuery::from_static(self.signal.grpc_path()),
                    RawCodec,
                )
                .await
                .map(|_| ())
                .map_err(|status| format!("{:?}", status.code()))
            }
            Connection::Http(client, url) => {
                let content_type = match self.protocol {
                    Protocol::HttpJson => "application/json",
                    Protocol::Grpc | Protocol::HttpProtobuf => "application/x-protobuf",
                };
                let mut request = client
                    .post(&*url)
                    .headers(source.http_headers.clone())
                    .header(http::header::CONTENT_TYPE, content_type)
                    .timeout(timeout);
                let body = if self.gzip {
                    request = request.header(http::header::CONTENT_ENCODING, "gzip");
                    Bytes::from(gzip(&body))
                } else {
                    body
                };
                let response = request
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| format!("HTTP transport: {}", short_error(&e)))?;
                let status = response.status();
                // Read to the end, so the connection goes back to the pool.
                let _ = response.bytes().await;
                if status.is_success() {
                    Ok(())
                } else {
                    Err(format!("HTTP {}", status.as_u16()))
                }
            }
        }
    }
}

/// gzip at the fastest level: the load client shares the machine with the daemon.
fn gzip(body: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4),
        flate2::Compression::fast(),
    );
    encoder.write_all(body).expect("writing to a Vec");
    encoder.finish().expect("writing to a Vec")
}

fn short_error(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else {
        "other"
    }
}

/// Sends one request of `source`; records the outcome. True when accepted.
async fn send_one(
    shared: &Shared,
    source: &Source,
    transport: &Transport,
    connection: Connection,
) -> bool {
    let n = source.spans;
    let first = shared.next_seq.fetch_add(n, Ordering::Relaxed);
    assert!(first + n <= MAX_SEQ, "sequence numbers exhausted");
    let request_no = shared.next_request.fetch_add(1, Ordering::Relaxed);
    let body = source.templates.for_first(first).render(
        shared.run,
        first,
        request_no,
        now_ns(),
        source.tenant,
    );
    let started = Instant::now();
    let outcome = transport
        .send(connection, body, source, shared.timeout)
        .await;
    let elapsed = started.elapsed();
    let micros = elapsed.as_micros() as u64;
    let mut r = shared.results.lock().unwrap();
    let r = &mut *r;
    let tenant = &mut r.tenants[source.tenant as usize];
    tenant.offered_spans += n;
    match outcome {
        Ok(()) => {
            tenant.accepted_spans += n;
            tenant.ack_latency.record_n(micros, 1);
            r.accepted.push((first, n));
            r.accepted_requests += 1;
            r.accepted_expected += n - healthz_in(first, n, shared.healthz_every);
            r.ack_latency.record_n(micros, 1);
            true
        }
        Err(refusal) => {
            tenant.refused_spans += n;
            *r.refused.entry(refusal).or_default() += 1;
            r.refused_spans += n;
            false
        }
    }
}

async fn flat_out(
    shared: &Arc<Shared>,
    source: &Arc<Source>,
    transport: &Arc<Transport>,
    args: &SendArgs,
    until: Instant,
) {
    let pause = Duration::from_millis(args.refusal_pause_ms);
    let workers = (0..args.concurrency.max(1)).map(|i| {
        let shared = shared.clone();
        let source = source.clone();
        let transport = transport.clone();
        let connection = transport.connection(i);
        tokio::spawn(async move {
            while Instant::now() < until {
                if !send_one(&shared, &source, &transport, connection.clone()).await {
                    tokio::time::sleep(pause).await;
                }
            }
        })
    });
    for w in futures::future::join_all(workers).await {
        w.expect("sender task");
    }
}

/// Open loop: request k is due at `k * per_request` and goes to `sources[k % len]`. Returns
/// the largest lag of a request behind its schedule (waiting for an in-flight slot, or for
/// the CPU).
async fn fixed_rate(
    shared: &Arc<Shared>,
    sources: &[Arc<Source>],
    transport: &Arc<Transport>,
    per_request: Duration,
    concurrency: usize,
    started: Instant,
    duration: Duration,
) -> Duration {
    let total = (duration.as_secs_f64() / per_request.as_secs_f64()).round() as u64;
    let slots = Arc::new(Semaphore::new(concurrency.max(1)));
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
        let source = sources[(k as usize) % sources.len()].clone();
        let transport = transport.clone();
        let connection = transport.connection(k as usize);
        tasks.spawn(async move {
            send_one(&shared, &source, &transport, connection).await;
            drop(permit);
        });
        // Reap finished tasks so the set stays small.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    lag_max
}
