//! Load client and latency sink for the daemon comparison of `make bench`
//! (`deploy/bench/run.py`). Not a criterion bench: an example binary, built with
//! `cargo build --release --example loadgen`.
//!
//! ```text
//! loadgen sink --listen 127.0.0.1:14317 --control 127.0.0.1:14319
//! loadgen send --endpoint http://127.0.0.1:4317 --spans 100 --rate 20000 --duration 10 \
//!              --sink-control http://127.0.0.1:14319 --pids 1234
//! ```
//!
//! `send` stamps every span with its send time and a per-run sequence number
//! (`template.rs`); `sink` records which spans arrived and when (`sink.rs`), so one run yields
//! throughput, end-to-end latency percentiles and an exact count of lost and duplicated spans,
//! plus the CPU time and peak RSS of the processes named with `--pids` (`procfs.rs`).
//!
//! `--signal logs` or `--signal metrics` sends log records or metric data points instead of
//! spans (S11); the reports still say "spans" for the items of whichever signal it is. The
//! sink serves all three OTLP/gRPC services.
//!
//! Processor runs (S4) add `--user-email --healthz-every 10`: the sink must then receive
//! exactly the spans that are not health checks. Multi-tenant runs (S5) add
//! `--quiet-tenants 200 --quiet-rate 10` beside the main load (`--tenant noisy`): every quiet
//! tenant sends on its own fixed schedule with its own `x-scope-orgid`, and the report has
//! each tenant's delivery and latency (`tenants`).
//!
//! ```text
//! loadgen send --endpoint http://127.0.0.1:4317 --spans 100 --rate 0 --tenant noisy \
//!              --quiet-tenants 200 --quiet-rate 10 --quiet-spans 1 --pids 1234
//! ```

// The run report is one large `serde_json::json!` object.
#![recursion_limit = "256"]

mod content;
mod hist;
mod procfs;
mod send;
mod sink;
mod template;
mod wire;

use std::net::SocketAddr;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "OTLP load client and latency sink for Sluice's daemon comparison")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve OTLP/gRPC traces and count what arrives (the backend of both daemons).
    Sink {
        #[arg(long, default_value = "127.0.0.1:14317")]
        listen: SocketAddr,
        #[arg(long, default_value = "127.0.0.1:14319")]
        control: SocketAddr,
        /// The gRPC header recorded per tenant (does the daemon forward the tenant?).
        #[arg(long, default_value = "x-scope-orgid")]
        tenant_header: String,
    },
    /// Send load to a daemon and report one run as JSON on stdout.
    Send(send::SendArgs),
}

/// Wall-clock nanoseconds: what the sender writes into spans and the sink compares with.
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos() as u64
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Two workers: the machine the comparison runs on has two cores, shared with the daemons.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match cli.command {
            Command::Sink {
                listen,
                control,
                tenant_header,
            } => sink::run(listen, control, tenant_header).await,
            Command::Send(args) => send::run(args).await,
        }
    })
}
