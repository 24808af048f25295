//! `sluice tenants|pause|resume|purge|replay|tap|dlq`: the admin API's commands (binary edge; the client and
//! the table live in `sluice::admin::cli`).

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use sluice::admin::cli::{dead_letters_table, encode, query, tenants_table, AdminClient};
use sluice::secret::Secret;

/// Where the admin API is and the token to call it with.
#[derive(Args)]
pub struct AdminArgs {
    /// The admin API (`service.admin.address` of the running Sluice).
    #[arg(
        long,
        env = "SLUICE_ADMIN_URL",
        default_value = "http://127.0.0.1:13134"
    )]
    admin_url: String,
    /// File holding the admin token; otherwise SLUICE_ADMIN_TOKEN, if set.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// `table` (default) or `json` (the API's answer as it is).
    #[arg(long, short, value_enum, default_value_t = Output::Table)]
    output: Output,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
}

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Every tenant's usage: accepted, refused (by reason), stored, exported, dead-lettered,
    /// buffered bytes, age of the oldest unexported item, and whether export is paused.
    Tenants {
        #[command(flatten)]
        admin: AdminArgs,
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// Only this signal (traces, metrics, logs).
        #[arg(long)]
        signal: Option<String>,
        /// Sort by a column (e.g. `accepted`, `buffered`, `oldest`), largest first.
        #[arg(long)]
        sort: Option<String>,
    },
    /// Stop exporting a tenant (all signals, or one). Its data is still accepted and
    /// buffered within its quota. Survives restarts.
    Pause {
        #[command(flatten)]
        admin: AdminArgs,
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        signal: Option<String>,
    },
    /// Export a paused tenant again; what it buffered meanwhile is delivered.
    Resume {
        #[command(flatten)]
        admin: AdminArgs,
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        signal: Option<String>,
    },
    /// Delete everything buffered for a tenant (all signals, or one), dead letters included:
    /// offboarding, data-protection requests. Needs --confirm. Batches already being sent
    /// to a backend finish.
    Purge {
        #[command(flatten)]
        admin: AdminArgs,
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        signal: Option<String>,
        #[arg(long)]
        confirm: bool,
    },
    /// Send a tenant's already-exported data again: what it sent between --since and --until
    /// (default: now), through its pipelines' exporters, or only --exporter. Needs retention
    /// (`buffers.disk.retention`, `buffers.pulsar.retention`). The live export goes on
    /// beside it, untouched.
    Replay {
        #[command(flatten)]
        admin: AdminArgs,
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        signal: String,
        /// How long ago (`2h`, `90m`) or when (`2026-12-03T10:00:00Z`) the window starts.
        #[arg(long, value_parser = parse_moment)]
        since: SystemTime,
        /// How long ago or when the window ends. Default: now.
        #[arg(long, value_parser = parse_moment)]
        until: Option<SystemTime>,
        /// Replay to this exporter only (a component id, e.g. `otlp/tempo`).
        #[arg(long)]
        exporter: Option<String>,
    },
    /// A tenant's dead letters: `list` (counts, reasons, first/last time), `show` (a sample
    /// as OTLP/JSON), `redrive` (export them again, once the cause is fixed), `purge`.
    Dlq {
        #[command(subcommand)]
        action: DlqAction,
    },
    /// Print what a tenant sends, live, as OTLP/JSON lines (sampled: a slow reader misses
    /// requests, ingest never waits). A tenant's own ingest token may tap that tenant.
    Tap {
        #[command(flatten)]
        admin: AdminArgs,
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        signal: String,
        /// Stop after this many requests.
        #[arg(long)]
        limit: Option<usize>,
    },
}

#[derive(Subcommand)]
pub enum DlqAction {
    /// Per signal: dead-lettered items and batches, bytes, reasons, first and last time.
    List {
        #[command(flatten)]
        admin: AdminArgs,
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        signal: Option<String>,
    },
    /// Up to --limit dead letters, one JSON line each: reason, receive time, the request.
    Show {
        #[command(flatten)]
        admin: AdminArgs,
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        signal: Option<String>,
        #[arg(long, default_value_t = 10)]
        limit: usize,
    },
    /// Send them to the exporters again (they go back into the tenant's buffer) and remove
    /// them from the dead letters.
    Redrive {
        #[command(flatten)]
        admin: AdminArgs,
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        signal: Option<String>,
    },
    /// Delete them. Needs --confirm.
    Purge {
        #[command(flatten)]
        admin: AdminArgs,
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        signal: Option<String>,
        #[arg(long)]
        confirm: bool,
    },
}

impl AdminArgs {
    fn client(&self) -> anyhow::Result<AdminClient> {
        let token = match &self.token_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read the token file {}", path.display()))?
                    .trim()
                    .to_string(),
            ),
            None => std::env::var("SLUICE_ADMIN_TOKEN").ok(),
        };
        Ok(AdminClient::new(&self.admin_url, token.map(Secret::new)))
    }
}

pub fn run(command: AdminCommand) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(execute(command))
}

async fn execute(command: AdminCommand) -> anyhow::Result<()> {
    match command {
        AdminCommand::Tenants {
            admin,
            tenant,
            signal,
            sort,
        } => {
            let path = format!(
                "/api/v1/tenants{}",
                query(&[("tenant", tenant.as_deref()), ("signal", signal.as_deref())])
            );
            let report = admin.client()?.get(&path).await?;
            match admin.output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
                Output::Table => print!("{}", tenants_table(&report, sort.as_deref())),
            }
        }
        AdminCommand::Pause {
            admin,
            tenant,
            signal,
        } => change(&admin, "pause", &tenant, signal.as_deref()).await?,
        AdminCommand::Resume {
            admin,
            tenant,
            signal,
        } => change(&admin, "resume", &tenant, signal.as_deref()).await?,
        AdminCommand::Tap {
            admin,
            tenant,
            signal,
            limit,
        } => {
            let limit = limit.map(|n| n.to_string());
            let path = format!(
                "/api/v1/tap{}",
                query(&[
                    ("tenant", Some(&tenant)),
                    ("signal", Some(&signal)),
                    ("limit", limit.as_deref()),
                ])
            );
            admin
                .client()?
                .tap(&path, &mut std::io::stdout().lock())
                .await?;
        }
        AdminCommand::Dlq { action } => dlq(action).await?,
        AdminCommand::Replay {
            admin,
            tenant,
            signal,
            since,
            until,
            exporter,
        } => {
            let since = epoch_ms(since).to_string();
            let until = until.map(|u| epoch_ms(u).to_string());
            let path = format!(
                "/api/v1/tenants/{}/replay{}",
                encode(&tenant),
                query(&[
                    ("signal", Some(&signal)),
                    ("since", Some(&since)),
                    ("until", until.as_deref()),
                    ("exporter", exporter.as_deref()),
                ])
            );
            let answer = admin.client()?.post(&path).await?;
            print_rows(&admin, &answer, "replayed", |row| {
                format!(
                    "{tenant} {signal} ({}, buffer {}): {} items in {} batches replayed",
                    row["pipeline"].as_str().unwrap_or_default(),
                    row["buffer"].as_str().unwrap_or_default(),
                    row["items"],
                    row["batches"]
                )
            })?;
        }
        AdminCommand::Purge {
            admin,
            tenant,
            signal,
            confirm,
        } => {
            anyhow::ensure!(
                confirm,
                "purging deletes everything buffered for {tenant}; add --confirm"
            );
            let path = format!(
                "/api/v1/tenants/{}/purge{}",
                encode(&tenant),
                query(&[("signal", signal.as_deref()), ("confirm", Some("true"))])
            );
            let answer = admin.client()?.post(&path).await?;
            print_rows(&admin, &answer, "purged", |row| {
                format!(
                    "{tenant} {} ({}): {} bytes and {} dead-lettered items deleted",
                    row["signal"].as_str().unwrap_or_default(),
                    row["buffer"].as_str().unwrap_or_default(),
                    row["bytes"],
                    row["dead_letters"]["items"]
                )
            })?;
        }
    }
    Ok(())
}

/// The API's answer as it is with `--output json`; otherwise one line per row of its `key`.
fn print_rows(
    admin: &AdminArgs,
    answer: &serde_json::Value,
    key: &str,
    line: impl Fn(&serde_json::Value) -> String,
) -> anyhow::Result<()> {
    match admin.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(answer)?),
        Output::Table => {
            for row in answer[key].as_array().into_iter().flatten() {
                println!("{}", line(row));
            }
        }
    }
    Ok(())
}

/// `2h` (that long ago) or an RFC 3339 time.
fn parse_moment(text: &str) -> Result<SystemTime, String> {
    if let Ok(ago) = humantime::parse_duration(text) {
        return SystemTime::now()
            .checked_sub(ago)
            .ok_or_else(|| format!("{text} ago is before the epoch"));
    }
    humantime::parse_rfc3339_weak(text).map_err(|_| {
        format!("{text:?} is neither a duration (2h, 90m) nor a time (2026-12-03T10:00:00Z)")
    })
}

fn epoch_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

async fn dlq(action: DlqAction) -> anyhow::Result<()> {
    let (admin, tenant, signal, route, post) = match &action {
        DlqAction::List {
            admin,
            tenant,
            signal,
        } => (admin, tenant, signal, "", false),
        DlqAction::Show {
            admin,
            tenant,
            signal,
            ..
        } => (admin, tenant, signal, "/sample", false),
        DlqAction::Redrive {
            admin,
            tenant,
            signal,
        } => (admin, tenant, signal, "/redrive", true),
        DlqAction::Purge {
            admin,
            tenant,
            signal,
            confirm,
        } => {
            anyhow::ensure!(
                *confirm,
                "purging deletes {tenant}'s dead letters for good; add --confirm"
            );
            (admin, tenant, signal, "/purge", true)
        }
    };
    let limit = match &action {
        DlqAction::Show { limit, .. } => Some(limit.to_string()),
        _ => None,
    };
    let path = format!(
        "/api/v1/dead-letters{route}{}",
        query(&[
            ("tenant", Some(tenant)),
            ("signal", signal.as_deref()),
            ("limit", limit.as_deref()),
        ])
    );
    let client = admin.client()?;
    if matches!(action, DlqAction::Show { .. }) {
        return Ok(client.tap(&path, &mut std::io::stdout().lock()).await?);
    }
    let answer = if post {
        client.post(&path).await?
    } else {
        client.get(&path).await?
    };
    match admin.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&answer)?),
        Output::Table => print!("{}", dead_letters_table(&answer)),
    }
    Ok(())
}

async fn change(
    admin: &AdminArgs,
    action: &str,
    tenant: &str,
    signal: Option<&str>,
) -> anyhow::Result<()> {
    let path = format!(
        "/api/v1/tenants/{}/{action}{}",
        encode(tenant),
        query(&[("signal", signal)])
    );
    let answer = admin.client()?.post(&path).await?;
    match admin.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&answer)?),
        Output::Table => {
            let what = signal.unwrap_or("every signal");
            let done = if answer["changed"].as_bool() == Some(true) {
                format!("{action}d")
            } else {
                format!("already {action}d")
            };
            println!("{tenant} ({what}): {done}");
        }
    }
    Ok(())
}
