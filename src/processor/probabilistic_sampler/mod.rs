//! The `probabilistic_sampler` processor: keeps a percentage of traces (by trace id) and logs
//! (by trace id or a record attribute), deciding exactly as the OpenTelemetry Collector's
//! processor of the same name does (contrib v0.145.0), so Sluice agents and Collectors behind
//! one load balancer keep the same traces. Checked against decisions the Collector made
//! (tests/data/probabilistic_sampler/).
//!
//! Modes: `hash_seed` (the default) hashes the trace id with FNV and the seed; `proportional`
//! and `equalizing` use the trace id's own randomness (OTEP 235) and honour sampling already
//! recorded in the `ot` tracestate entry. A kept span records the sampling in its tracestate
//! (`ot=rv:…;th:…`), a kept log record in its `sampling.randomness` / `sampling.threshold`
//! attributes, as the Collector does. Spans with `sampling.priority` > 0 are always kept and
//! with 0 never; logs may name a priority attribute (`sampling_priority`).
//!
//! Dropped items are counted by the processor chain (`reason="sampled_out"`). Metrics are not
//! sampled: a metrics pipeline naming this processor is a config error.

mod config;
mod sampling;
mod tracestate;

pub use config::{AttributeSource, ProbabilisticSamplerConfig, SamplerMode};

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::trace::v1::Span;

use super::{prune, Part, ProcessError, Processed, Processing, Processor, ProcessorConfig};
use crate::otlp::decoded::DecodedRequest;
use crate::signal::Signal;
use sampling::{hash_seed_threshold, Randomness, Threshold, MIN_SAMPLING_PROBABILITY};
use tracestate::W3cTraceState;

/// The `reason` label of what this processor drops.
const REASON: &str = "sampled_out";
const THRESHOLD_ATTRIBUTE: &str = "sampling.threshold";
const RANDOMNESS_ATTRIBUTE: &str = "sampling.randomness";

#[derive(Debug)]
pub struct ProbabilisticSampler {
    traces: Decider,
    logs: Decider,
    fail_closed: bool,
    precision: usize,
    logs_priority_attribute: String,
}

/// How the threshold of an item is chosen.
#[derive(Debug, Clone)]
enum Decider {
    /// `sampling_percentage: 0`.
    Never,
    HashSeed {
        threshold: Threshold,
        seed: u32,
        /// Logs: hash the trace id first (`attribute_source: traceID`).
        logs_use_trace_id: bool,
        /// Logs: the attribute hashed when there is no trace id to use.
        logs_attribute: String,
    },
    Equalizing(Threshold),
    Proportional {
        ratio: f64,
        precision: usize,
    },
}

impl Decider {
    fn new(cfg: &ProbabilisticSamplerConfig) -> Self {
        let pct = cfg.sampling_percentage.min(100.0);
        if pct <= 0.0 {
            return Decider::Never;
        }
        let ratio = (f64::from(pct) / 100.0).max(MIN_SAMPLING_PROBABILITY);
        match cfg.mode {
            SamplerMode::Equalizing => Decider::Equalizing(
                Threshold::from_probability(ratio, cfg.sampling_precision)
                    .unwrap_or(Threshold::ALWAYS),
            ),
            SamplerMode::Proportional => Decider::Proportional {
                ratio,
                precision: cfg.sampling_precision,
            },
            SamplerMode::HashSeed | SamplerMode::Unset => match hash_seed_threshold(pct) {
                None => Decider::Never,
                Some(threshold) => Decider::HashSeed {
                    threshold,
                    seed: cfg.hash_seed,
                    logs_use_trace_id: cfg.attribute_source == AttributeSource::TraceId,
                    logs_attribute: cfg.from_attribute.clone(),
                },
            },
        }
    }

    fn decide(&self, arrived: Option<Threshold>) -> Threshold {
        match self {
            Decider::Never => Threshold::NEVER,
            Decider::HashSeed { threshold, .. } => *threshold,
            Decider::Equalizing(threshold) => match arrived {
                Some(arrived) if *threshold < arrived => arrived,
                _ => *threshold,
            },
            Decider::Proportional { ratio, precision } => {
                let incoming = arrived.map_or(1.0, Threshold::probability);
                Threshold::from_probability(incoming * ratio, *precision)
                    .unwrap_or(Threshold::NEVER)
            }
        }
    }
}

/// Where an item keeps its sampling information.
trait Carrier {
    fn threshold(&self) -> Option<Threshold>;
    fn randomness(&self) -> Option<Randomness>;
    fn set_randomness(&mut self, rnd: Randomness);
    fn clear_threshold(&mut self);
    /// Records the sampling; refused (and ignored) when it would raise the probability.
    fn update_threshold(&mut self, threshold: Threshold) -> Result<(), ()>;
}

/// What an item offers the decision: its randomness (`None`: it has none), its carrier
/// (`None` when its sampling information could not be used) and whether reading it failed.
struct Inputs<C> {
    randomness: Option<Randomness>,
    carrier: Option<C>,
    failed: bool,
}

impl ProbabilisticSampler {
    /// The Collector's per-item logic: consistency check, threshold by mode (or by failure
    /// policy), priority override, decision, and the sampling recorded on a kept item.
    fn keep<C: Carrier>(
        &self,
        decider: &Decider,
        inputs: Inputs<C>,
        priority: Option<Threshold>,
    ) -> (bool, Option<C>) {
        let Inputs {
            randomness,
            mut carrier,
            mut failed,
        } = inputs;
        if !failed {
            match (randomness, carrier.as_mut()) {
                (None, _) => failed = true,
                (Some(rnd), Some(carrier)) => {
                    // A threshold the randomness does not pass is a lie: clear it.
                    if carrier.threshold().is_some_and(|th| !th.should_sample(rnd)) {
                        carrier.clear_threshold();
                        failed = true;
                    }
                }
                (Some(_), None) => {}
            }
        }
        let threshold = match priority {
            Some(priority) => priority,
            None if failed && self.fail_closed => Threshold::NEVER,
            None if failed => Threshold::ALWAYS,
            None => decider.decide(carrier.as_ref().and_then(Carrier::threshold)),
        };
        let sampled = threshold.should_sample(randomness.unwrap_or(Randomness::ALL));
        if sampled {
            if let Some(carrier) = carrier.as_mut() {
                // Refused only when it would raise the recorded probability: keep that one.
                let _ = carrier.update_threshold(threshold);
            }
        }
        (sampled, carrier)
    }

    fn span_inputs(decider: &Decider, span: &Span) -> Inputs<W3cTraceState> {
        let (state, error) = W3cTraceState::parse(&span.trace_state);
        let trace_id = trace_id(&span.trace_id);
        match decider {
            Decider::Never => Inputs {
                randomness: Some(Randomness::ALL),
                carrier: Some(state),
                failed: error.is_some(),
            },
            Decider::HashSeed { seed, .. } => {
                let randomness = trace_id.map(|id| Randomness::from_hashed_bytes(&id, *seed));
                // A span without randomness records "all" randomness; a log record nothing.
                let recorded = Some(randomness.unwrap_or(Randomness::ALL));
                hash_seed_inputs(randomness, recorded, state, error.is_some())
            }
            Decider::Equalizing(_) | Decider::Proportional { .. } => {
                consistent_inputs(state, error.is_some(), trace_id)
            }
        }
    }

    fn log_inputs<'a>(decider: &Decider, record: &'a mut LogRecord) -> Inputs<LogCarrier<'a>> {
        let trace_id = trace_id(&record.trace_id);
        let hashed = match decider {
            Decider::HashSeed {
                seed,
                logs_use_trace_id,
                logs_attribute,
                ..
            } => {
                let by_trace_id = trace_id
                    .filter(|_| *logs_use_trace_id)
                    .map(|id| Randomness::from_hashed_bytes(&id, *seed));
                by_trace_id.or_else(|| {
                    let bytes = first(&record.attributes, logs_attribute).and_then(hash_input)?;
                    Some(Randomness::from_hashed_bytes(&bytes, *seed))
                })
            }
            _ => None,
        };
        let (carrier, failed) = LogCarrier::read(&mut record.attributes);
        match decider {
            Decider::Never => Inputs {
                randomness: Some(Randomness::ALL),
                carrier: Some(carrier),
                failed,
            },
            Decider::HashSeed { .. } => hash_seed_inputs(hashed, hashed, carrier, failed),
            Decider::Equalizing(_) | Decider::Proportional { .. } => {
                consistent_inputs(carrier, failed, trace_id)
            }
        }
    }

    fn log_priority(&self, record: &LogRecord) -> Option<Threshold> {
        if self.logs_priority_attribute.is_empty() {
            return None;
        }
        let min_probability = match first(&record.attributes, &self.logs_priority_attribute)? {
            Value::DoubleValue(v) => v / 100.0,
            Value::IntValue(v) => *v as f64 / 100.0,
            _ => 0.0,
        };
        if min_probability == 0.0 {
            return None;
        }
        Threshold::from_probability(min_probability, self.precision).ok()
    }

    /// Returns (spans dropped, whether anything changed).
    fn traces(&self, request: &mut ExportTraceServiceRequest) -> (u32, bool) {
        let (mut dropped, mut changed) = (0u32, false);
        for rs in &mut request.resource_spans {
            for ss in &mut rs.scope_spans {
                ss.spans.retain_mut(|span| {
                    let inputs = Self::span_inputs(&self.traces, span);
                    let (sampled, carrier) =
                        self.keep(&self.traces, inputs, span_priority(&span.attributes));
                    if !sampled {
                        dropped += 1;
                        return false;
                    }
                    if let Some(state) = carrier {
                        let written = state.serialize();
                        if written != span.trace_state {
                            span.trace_state = written;
                            changed = true;
                        }
                    }
                    true
                });
            }
            changed |= prune(&mut rs.scope_spans, |ss| !ss.spans.is_empty());
        }
        changed |= prune(&mut request.resource_spans, |rs| !rs.scope_spans.is_empty());
        (dropped, changed || dropped > 0)
    }

    fn logs(&self, request: &mut ExportLogsServiceRequest) -> (u32, bool) {
        let (mut dropped, mut changed) = (0u32, false);
        for rl in &mut request.resource_logs {
            for sl in &mut rl.scope_logs {
                sl.log_records.retain_mut(|record| {
                    let priority = self.log_priority(record);
                    let inputs = Self::log_inputs(&self.logs, record);
                    let (sampled, carrier) = self.keep(&self.logs, inputs, priority);
                    changed |= carrier.is_some_and(|c| c.wrote);
                    dropped += u32::from(!sampled);
                    sampled
                });
            }
            changed |= prune(&mut rl.scope_logs, |sl| !sl.log_records.is_empty());
        }
        changed |= prune(&mut request.resource_logs, |rl| !rl.scope_logs.is_empty());
        (dropped, changed || dropped > 0)
    }
}

/// `recorded` is the randomness written to the item when it is usable.
fn hash_seed_inputs<C: Carrier>(
    randomness: Option<Randomness>,
    recorded: Option<Randomness>,
    mut carrier: C,
    failed: bool,
) -> Inputs<C> {
    // Randomness or a threshold already recorded means another sampler was here: the
    // Collector recommends a consistent mode then, and treats the item as unreadable.
    let unusable = failed || carrier.randomness().is_some() || carrier.threshold().is_some();
    if let Some(rnd) = recorded.filter(|_| !unusable) {
        carrier.set_randomness(rnd);
    }
    Inputs {
        randomness,
        carrier: (!unusable).then_some(carrier),
        failed: unusable,
    }
}

fn consistent_inputs<C: Carrier>(
    carrier: C,
    failed: bool,
    trace_id: Option<[u8; 16]>,
) -> Inputs<C> {
    if failed {
        return Inputs {
            randomness: None,
            carrier: None,
            failed,
        };
    }
    let randomness = carrier
        .randomness()
        .or_else(|| trace_id.map(|id| Randomness::from_trace_id(&id)));
    Inputs {
        randomness,
        carrier: Some(carrier),
        failed,
    }
}

/// A usable trace id: 16 bytes, not all zero.
fn trace_id(bytes: &[u8]) -> Option<[u8; 16]> {
    let id: [u8; 16] = bytes.try_into().ok()?;
    (id != [0; 16]).then_some(id)
}

fn first<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)?
        .value
        .as_ref()?
        .value
        .as_ref()
}

/// `sampling.priority` on a span: > 0 always keeps it, 0 always drops it.
fn span_priority(attributes: &[KeyValue]) -> Option<Threshold> {
    let value = match first(attributes, "sampling.priority")? {
        Value::IntValue(v) => *v as f64,
        Value::DoubleValue(v) => *v,
        Value::StringValue(s) => s.parse::<f64>().ok()?,
        _ => return None,
    };
    if value == 0.0 {
        Some(Threshold::NEVER)
    } else if value > 0.0 {
        Some(Threshold::ALWAYS)
    } else {
        None
    }
}

/// The bytes of a log attribute that are hashed: raw bytes, or the value's string form as
/// the Collector writes it. Maps and arrays are not hashed (the Collector hashes their JSON);
/// such records count as having no attribute to sample by.
fn hash_input(value: &Value) -> Option<Vec<u8>> {
    let text = match value {
        Value::BytesValue(b) => return (!b.is_empty()).then(|| b.clone()),
        Value::StringValue(s) => s.clone(),
        // A string-table index outside a profile has no string to hash.
        Value::StringValueStrindex(_) => return None,
        Value::BoolValue(b) => b.to_string(),
        Value::IntValue(i) => i.to_string(),
        Value::DoubleValue(d) => es6_number(*d),
        Value::ArrayValue(_) | Value::KvlistValue(_) => return None,
    };
    (!text.is_empty()).then(|| text.into_bytes())
}

/// A double as JavaScript (and the Collector's attribute-to-string) writes it.
fn es6_number(d: f64) -> String {
    if d.is_nan() {
        return "json: unsupported value: NaN".into();
    }
    if d.is_infinite() {
        let sign = if d > 0.0 { "+" } else { "-" };
        return format!("json: unsupported value: {sign}Inf");
    }
    let abs = d.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let text = format!("{d:e}");
        // Go writes a positive exponent with its sign.
        return match text.split_once('e') {
            Some((m, e)) if !e.starts_with('-') => format!("{m}e+{e}"),
            _ => text,
        };
    }
    format!("{d}")
}

impl Carrier for W3cTraceState {
    fn threshold(&self) -> Option<Threshold> {
        self.otel.threshold()
    }
    fn randomness(&self) -> Option<Randomness> {
        self.otel.randomness()
    }
    fn set_randomness(&mut self, rnd: Randomness) {
        self.otel.set_randomness(rnd);
    }
    fn clear_threshold(&mut self) {
        self.otel.clear_threshold();
    }
    fn update_threshold(&mut self, threshold: Threshold) -> Result<(), ()> {
        self.otel.update_threshold(threshold)
    }
}

/// A log record's sampling attributes.
struct LogCarrier<'a> {
    attributes: &'a mut Vec<KeyValue>,
    threshold: Option<Threshold>,
    randomness: Option<Randomness>,
    /// Whether the record's attributes were changed.
    wrote: bool,
}

impl<'a> LogCarrier<'a> {
    /// Reads `sampling.threshold` and `sampling.randomness` (string attributes); returns
    /// whether either was present but invalid.
    fn read(attributes: &'a mut Vec<KeyValue>) -> (Self, bool) {
        let text = |key| match first(attributes, key) {
            Some(Value::StringValue(s)) if !s.is_empty() => Some(s.clone()),
            _ => None,
        };
        let (threshold, randomness) = (text(THRESHOLD_ATTRIBUTE), text(RANDOMNESS_ATTRIBUTE));
        let threshold = threshold.map(|t| Threshold::from_tvalue(&t));
        let randomness = randomness.map(|r| Randomness::from_rvalue(&r));
        let failed = matches!(threshold, Some(Err(_))) || matches!(randomness, Some(Err(_)));
        let carrier = LogCarrier {
            attributes,
            threshold: threshold.and_then(Result::ok),
            randomness: randomness.and_then(Result::ok),
            wrote: false,
        };
        (carrier, failed)
    }

    fn put(&mut self, key: &str, value: String) {
        let value = Some(AnyValue {
            value: Some(Value::StringValue(value)),
        });
        match self.attributes.iter_mut().find(|kv| kv.key == key) {
            Some(kv) => kv.value = value,
            None => self.attributes.push(KeyValue {
                key: key.to_owned(),
                value,
                ..Default::default()
            }),
        }
        self.wrote = true;
    }
}

impl Carrier for LogCarrier<'_> {
    fn threshold(&self) -> Option<Threshold> {
        self.threshold
    }
    fn randomness(&self) -> Option<Randomness> {
        self.randomness
    }
    fn set_randomness(&mut self, rnd: Randomness) {
        self.randomness = Some(rnd);
        self.put(RANDOMNESS_ATTRIBUTE, rnd.rvalue());
    }
    fn clear_threshold(&mut self) {
        self.threshold = None;
        if let Some(i) = self
            .attributes
            .iter()
            .position(|kv| kv.key == THRESHOLD_ATTRIBUTE)
        {
            self.attributes.remove(i);
            self.wrote = true;
        }
    }
    fn update_threshold(&mut self, threshold: Threshold) -> Result<(), ()> {
        if self.threshold.is_some_and(|current| threshold < current) {
            return Err(());
        }
        self.put(THRESHOLD_ATTRIBUTE, threshold.tvalue());
        Ok(())
    }
}

impl ProcessorConfig for ProbabilisticSamplerConfig {
    fn build(&self) -> Processing {
        // Logs default to hash_seed whatever the attribute source; so do traces.
        Processing::Transform(Arc::new(ProbabilisticSampler {
            traces: Decider::new(self),
            logs: Decider::new(self),
            fail_closed: self.fail_closed,
            precision: self.sampling_precision,
            logs_priority_attribute: self.sampling_priority.clone(),
        }))
    }

    fn supports(&self, signal: Signal) -> bool {
        signal != Signal::Metrics
    }
}

impl Processor for ProbabilisticSampler {
    fn process(&self, part: Part) -> Result<Processed, ProcessError> {
        if part.signal() == Signal::Metrics {
            return Ok(Processed::keep(part));
        }
        Processed::dropping(part, REASON, |request| match request {
            DecodedRequest::Traces(r) => self.traces(r),
            DecodedRequest::Logs(r) => self.logs(r),
            DecodedRequest::Metrics(_) => (0, false),
        })
    }
}

#[cfg(test)]
mod tests;
