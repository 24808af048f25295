//! A tiny in-memory `metrics` recorder for unit tests, so they can check that the
//! self-telemetry contract (docs/contracts.md, "Metrics") is kept. Install it on the test's thread with
//! [`TestRecorder::install`]; `#[tokio::test]` runs everything on that one thread.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use metrics::{
    Counter, CounterFn, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};

/// Series name plus its labels sorted, e.g. `sluice_exporter_retries_total{exporter=otlp,…}`.
type SeriesKey = String;

#[derive(Default)]
pub struct TestRecorder {
    counters: Mutex<BTreeMap<SeriesKey, Arc<AtomicU64>>>,
    histograms: Mutex<BTreeMap<SeriesKey, Arc<Samples>>>,
}

#[derive(Default)]
struct Samples(Mutex<Vec<f64>>);

struct CounterCell(Arc<AtomicU64>);

impl CounterFn for CounterCell {
    fn increment(&self, value: u64) {
        self.0.fetch_add(value, Ordering::Relaxed);
    }
    fn absolute(&self, value: u64) {
        self.0.store(value, Ordering::Relaxed);
    }
}

impl HistogramFn for Samples {
    fn record(&self, value: f64) {
        if let Ok(mut v) = self.0.lock() {
            v.push(value);
        }
    }
}

fn series_key(key: &Key) -> SeriesKey {
    let mut labels: Vec<String> = key
        .labels()
        .map(|l| format!("{}={}", l.key(), l.value()))
        .collect();
    labels.sort();
    format!("{}{{{}}}", key.name(), labels.join(","))
}

impl TestRecorder {
    /// Makes this the recorder of the current thread until the guard drops.
    pub fn install(&self) -> metrics::LocalRecorderGuard<'_> {
        metrics::set_default_local_recorder(self)
    }

    /// Sum of every counter series named `name` whose labels include all of `labels`.
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        let counters = self.counters.lock().expect("test recorder lock");
        counters
            .iter()
            .filter(|(k, _)| matches(k, name, labels))
            .map(|(_, v)| v.load(Ordering::Relaxed))
            .sum()
    }

    /// Every sample of the histogram series named `name` whose labels include all of `labels`.
    pub fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        let histograms = self.histograms.lock().expect("test recorder lock");
        histograms
            .iter()
            .filter(|(k, _)| matches(k, name, labels))
            .flat_map(|(_, v)| v.0.lock().expect("test recorder lock").clone())
            .collect()
    }
}

fn matches(series: &str, name: &str, labels: &[(&str, &str)]) -> bool {
    let Some(rest) = series.strip_prefix(name) else {
        return false;
    };
    let Some(inner) = rest.strip_prefix('{').and_then(|r| r.strip_suffix('}')) else {
        return false;
    };
    let have: Vec<&str> = inner.split(',').collect();
    labels
        .iter()
        .all(|(k, v)| have.contains(&format!("{k}={v}").as_str()))
}

impl Recorder for TestRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let mut counters = self.counters.lock().expect("test recorder lock");
        let cell = counters.entry(series_key(key)).or_default().clone();
        Counter::from_arc(Arc::new(CounterCell(cell)))
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        let mut histograms = self.histograms.lock().expect("test recorder lock");
        let samples = histograms.entry(series_key(key)).or_default().clone();
        Histogram::from_arc(samples)
    }
}
