//! The fault matrix's bookkeeping (tests/fault_matrix.rs): a continuous load whose every
//! acknowledged item is recorded, and a trial's count of what was acknowledged, delivered
//! and duplicated, with the verdict that no acknowledged item is missing.
//!
//! Trial counts and the outage length come from the environment, so `make chaos` runs the
//! long version of the same tests: `SLUICE_CHAOS_TRIALS` (SIGKILL trials per buffer),
//! `SLUICE_CHAOS_OUTAGE_SECS`; `SLUICE_CHAOS_SEED` replays a run's random moments.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::any_value;
use rand::{Rng, SeedableRng};
use tokio::task::JoinHandle;
use tonic::Code;

use super::backend::Backend;
use super::otlp::{channel, export_traces, kv, named_spans, trace_request};

/// A number from the environment, or `default`.
pub fn setting(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

/// The run's random source, seeded from `SLUICE_CHAOS_SEED` or the clock; the seed is printed
/// so a failing run can be replayed.
pub fn rng(test: &str) -> rand::rngs::StdRng {
    let seed = setting(
        "SLUICE_CHAOS_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1),
    );
    eprintln!("{test}: SLUICE_CHAOS_SEED={seed}");
    rand::rngs::StdRng::seed_from_u64(seed)
}

/// A random moment between `min` and `max`.
pub fn moment(rng: &mut impl Rng, min: Duration, max: Duration) -> Duration {
    rng.random_range(min..=max)
}

#[derive(Default)]
struct Ledger {
    /// Per tenant: names of spans whose request was answered OK.
    acked: BTreeMap<String, BTreeSet<String>>,
    /// Refused requests by status code.
    refused: BTreeMap<String, usize>,
    /// The message of the last refusal of each code.
    messages: BTreeMap<String, String>,
}

impl Ledger {
    fn refusal(&mut self, status: &tonic::Status) {
        let code = format!("{:?}", status.code());
        *self.refused.entry(code.clone()).or_default() += 1;
        self.messages.insert(code, status.message().to_string());
    }
}

/// Clients sending to Sluice without pause (one task per tenant), each span named uniquely,
/// recording what was acknowledged. A refused request is tried again as a new one after
/// `RETRY_PAUSE`, as an OTLP exporter would after its backoff.
pub struct Load {
    stop: Arc<AtomicBool>,
    ledger: Arc<Mutex<Ledger>>,
    tasks: Vec<JoinHandle<()>>,
}

const RETRY_PAUSE: Duration = Duration::from_millis(50);

impl Load {
    /// Starts sending `spans` spans per request (each with `padding` bytes of attribute) as
    /// each of `tenants` to the gRPC endpoint.
    pub async fn start(endpoint: &str, tenants: &[String], spans: usize, padding: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let mut tasks = Vec::new();
        for tenant in tenants {
            let (stop, ledger, tenant) = (stop.clone(), ledger.clone(), tenant.clone());
            let channel = channel(endpoint).await;
            tasks.push(tokio::spawn(async move {
                let mut seq = 0u64;
                while !stop.load(Ordering::Acquire) {
                    let mut batch = named_spans(&format!("{tenant}-{seq}"), seq, spans);
                    seq += spans as u64;
                    for span in &mut batch {
                        let pad = "x".repeat(padding);
                        span.attributes
                            .push(kv("padding", any_value::Value::StringValue(pad)));
                    }
                    let names: Vec<String> = batch.iter().map(|s| s.name.clone()).collect();
                    let request = trace_request("chaos", None, batch);
                    match export_traces(&channel, Some(&tenant), request).await {
                        Ok(()) => ledger
                            .lock()
                            .unwrap()
                            .acked
                            .entry(tenant.clone())
                            .or_default()
                            .extend(names),
                        Err(status) => {
                            ledger.lock().unwrap().refusal(&status);
                            tokio::time::sleep(RETRY_PAUSE).await;
                        }
                    }
                }
            }));
        }
        Load {
            stop,
            ledger,
            tasks,
        }
    }

    /// Spans acknowledged so far, all tenants together.
    pub fn acked(&self) -> usize {
        self.ledger
            .lock()
            .unwrap()
            .acked
            .values()
            .map(BTreeSet::len)
            .sum()
    }

    /// Requests refused so far with `code`, and the last such message.
    pub fn refused(&self, code: Code) -> (usize, String) {
        let ledger = self.ledger.lock().unwrap();
        let key = format!("{code:?}");
        (
            ledger.refused.get(&key).copied().unwrap_or(0),
            ledger.messages.get(&key).cloned().unwrap_or_default(),
        )
    }

    /// Every refusal so far, by code.
    pub fn refusals(&self) -> BTreeMap<String, usize> {
        self.ledger.lock().unwrap().refused.clone()
    }

    /// Waits until `more` spans beyond `from` are acknowledged.
    pub async fn wait_acked(&self, from: usize, more: usize, timeout: Duration) {
        let what = format!("{more} more spans acknowledged");
        super::wait_for(&what, timeout, || {
            let now = self.acked();
            async move {
                if now >= from + more {
                    Ok(())
                } else {
                    Err(format!(
                        "{} so far; refusals {:?}",
                        now - from,
                        self.refusals()
                    ))
                }
            }
        })
        .await;
    }

    /// Stops the clients; returns what each tenant had acknowledged.
    pub async fn stop(self) -> BTreeMap<String, BTreeSet<String>> {
        self.stop.store(true, Ordering::Release);
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
        }
        std::mem::take(&mut self.ledger.lock().unwrap().acked)
    }
}

/// One trial's outcome, in spans.
#[derive(Debug)]
pub struct Tally {
    pub acknowledged: usize,
    pub delivered: usize,
    pub duplicated: usize,
}

/// Waits until the backend holds every acknowledged span, then counts the trial. Fails (after
/// `timeout`) naming how many acknowledged spans are missing.
pub async fn settle(
    trial: &str,
    backend: &Backend,
    acked: &BTreeMap<String, BTreeSet<String>>,
    timeout: Duration,
) -> Tally {
    let mut tally = Tally {
        acknowledged: 0,
        delivered: 0,
        duplicated: 0,
    };
    for (tenant, names) in acked {
        backend.wait_span_names(tenant, names, timeout).await;
        let got: Vec<String> = backend.spans(tenant).into_iter().map(|s| s.name).collect();
        let unique: BTreeSet<&String> = got.iter().collect();
        tally.acknowledged += names.len();
        tally.delivered += unique.len();
        tally.duplicated += got.len() - unique.len();
    }
    eprintln!(
        "{trial}: acknowledged {}, delivered {} (unique), duplicated {}, missing 0",
        tally.acknowledged, tally.delivered, tally.duplicated
    );
    tally
}
