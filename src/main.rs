//! The `sluice` command: the binary's edge, where errors become exit codes and messages.

mod commands;
mod reloading;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sluice::admin::{AdminSetup, AdminViews};
use sluice::pipeline::control::ExportControl;
use sluice::service::Config;
use sluice::telemetry::config::LogEncoding;
use sluice::telemetry::health::Readiness;
use sluice::telemetry::{health, labels, listener, logging, metrics, usage};
use tokio_util::sync::CancellationToken;

#[global_allocator]
static ALLOCATOR: sluice::allocator::LazyCommitMimalloc = sluice::allocator::LazyCommitMimalloc;

/// Sluice: a multi-tenant OpenTelemetry pipeline. OTLP in, tenant resolved, buffered durably
/// per tenant, forwarded to OTLP backends with at-least-once delivery.
#[derive(Parser)]
#[command(name = "sluice", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the pipelines of a config file until SIGTERM or SIGINT.
    Run {
        /// Config file (Collector-shaped YAML).
        #[arg(short, long, default_value = "config.yaml")]
        config: PathBuf,
        /// Log format on stderr; overrides service.telemetry.logs.encoding.
        #[arg(long, value_enum)]
        log_format: Option<LogEncoding>,
    },
    /// Check a config file without starting anything; prints every error with its path.
    Validate {
        /// Config file to check.
        #[arg(short, long, default_value = "config.yaml")]
        config: PathBuf,
    },
    /// Print the version.
    Version,
    #[command(flatten)]
    Admin(commands::AdminCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!("sluice {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Validate { config } => match Config::load(&config) {
            Ok(_) => {
                println!("{}: valid", config.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}: invalid configuration:\n{e}", config.display());
                ExitCode::from(2)
            }
        },
        Command::Admin(command) => match commands::run(command) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("sluice: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Run { config, log_format } => {
            let path = config;
            let config = match Config::load(&path) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{}: invalid configuration:\n{e}", path.display());
                    return ExitCode::from(2);
                }
            };
            match run(config, &path, log_format) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = format!("{e:#}"), "sluice failed");
                    eprintln!("sluice: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn run(
    config: Config,
    path: &std::path::Path,
    log_format: Option<LogEncoding>,
) -> anyhow::Result<()> {
    let logs = &config.telemetry.logs;
    logging::init(&logs.level, log_format.unwrap_or(logs.encoding));
    raise_open_files_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sluice")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let telemetry = &config.telemetry;
        labels::set_max_tenant_labels(telemetry.metrics.max_tenant_labels);
        let metrics_routes = metrics::install().context("cannot record metrics")?;
        sluice::service::own_traces::start(&telemetry.traces)
            .context("cannot set up service.telemetry.traces")?;
        let readiness = Readiness::default();
        let health_stop = CancellationToken::new();
        let lag_gauges =
            usage::spawn_lag_gauges(std::time::Duration::from_secs(5), health_stop.clone());
        let recycled_trim = sluice::batch::recycled::spawn_trim(health_stop.clone());
        let metrics_task = listener::serve(
            "metrics",
            "service.telemetry.metrics.tls",
            telemetry.metrics.address,
            telemetry.metrics.tls.as_ref(),
            metrics_routes,
            health_stop.clone(),
        )
        .await
        .context("cannot serve metrics")?;
        let health_task = listener::serve(
            "health",
            "service.telemetry.health.tls",
            telemetry.health.address,
            telemetry.health.tls.as_ref(),
            health::router(readiness.clone()),
            health_stop.clone(),
        )
        .await
        .context("cannot serve health")?;

        let control = Arc::new(
            ExportControl::load(Some(config.admin.state_file.clone()))
                .context("cannot load the admin state")?,
        );
        let mut running = sluice::service::start(&config, readiness, Arc::clone(&control)).await?;
        let views = Arc::new(AdminViews::new(
            config.effective.clone(),
            reloading::pipeline_views(&config),
        ));
        let (reload_requests, reloads) = tokio::sync::mpsc::channel(4);
        let admin_task = sluice::admin::serve(
            AdminSetup {
                config: &config.admin,
                tenancy_auth: config.tenancy.auth.as_ref(),
                control,
                views: Arc::clone(&views),
                buffers: running.buffers(),
                reload: Some(reload_requests),
                replay: running.plans(),
            },
            health_stop.clone(),
        )
        .await
        .context("cannot serve the admin API")?;
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            metrics = %telemetry.metrics.address,
            health = %telemetry.health.address,
            "sluice is ready"
        );

        let overrides = config.tenancy.overrides_file.clone();
        let signal =
            reloading::until_terminated(&mut running, path, &views, reloads, overrides).await?;
        tracing::info!(signal, timeout = ?config.shutdown_timeout, "shutting down");
        running.shutdown(config.shutdown_timeout).await;
        health_stop.cancel();
        let _ = health_task.await;
        let _ = metrics_task.await;
        if let Some(task) = admin_task {
            let _ = task.await;
        }
        let _ = lag_gauges.await;
        let _ = recycled_trim.await;
        tracing::info!("sluice stopped");
        Ok(())
    })
}

/// Raises the soft limit on open files to the hard limit, as Go programs do at start: every
/// tenant+signal log holds files open, and the common soft default of 1024 runs out near 250
/// tenant streams while the hard limit is usually far higher.
fn raise_open_files_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    let (Some(soft), hard) = (limit.current, limit.maximum) else {
        return; // already unlimited
    };
    let target = hard.unwrap_or(u64::MAX);
    if soft >= target {
        return;
    }
    match setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(target),
            maximum: hard,
        },
    ) {
        Ok(()) => tracing::info!(from = soft, to = target, "raised the open files limit"),
        Err(e) => tracing::warn!(soft, error = %e, "cannot raise the open files limit"),
    }
}
