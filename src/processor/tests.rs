use bytes::Bytes;

use super::*;
use crate::signal::Signal;
use crate::telemetry::test_recorder::TestRecorder;
use crate::tenant::TenantId;

fn batch(items: u32) -> Batch {
    Batch {
        tenant: TenantId::parse("t").unwrap(),
        signal: Signal::Logs,
        payload: Bytes::from(vec![0u8; items as usize]),
        items,
        received_at_ms: 0,
        traceparent: None,
    }
}

/// Keeps at most `keep` items of each batch.
#[derive(Debug)]
struct Truncate {
    keep: u32,
}

impl Processor for Truncate {
    fn process(&self, mut b: Batch) -> Result<Processed, ProcessError> {
        if b.items <= self.keep {
            return Ok(Processed::keep(b));
        }
        let dropped = b.items - self.keep;
        b.items = self.keep;
        b.payload = b.payload.slice(..self.keep as usize);
        Ok(Processed::reduced(
            (self.keep > 0).then_some(b),
            dropped,
            "truncated",
        ))
    }
}

/// Splits each batch into one-item parts.
#[derive(Debug)]
struct Singles;

impl Processor for Singles {
    fn process(&self, b: Batch) -> Result<Processed, ProcessError> {
        let parts = (0..b.items)
            .map(|i| Batch {
                items: 1,
                payload: b.payload.slice(i as usize..i as usize + 1),
                ..b.clone()
            })
            .collect();
        Ok(Processed {
            kept: parts,
            dropped: 0,
            reason: "",
        })
    }
}

fn chain(stages: Vec<Arc<dyn Processor>>) -> Chain {
    Chain::new(
        stages
            .into_iter()
            .enumerate()
            .map(|(i, p)| (format!("p/{i}"), p))
            .collect(),
    )
}

#[test]
fn an_empty_chain_passes_the_batch_through() {
    let b = batch(3);
    assert_eq!(Chain::default().run(b.clone()).unwrap(), vec![b]);
}

#[test]
fn later_stages_run_on_every_part_an_earlier_stage_kept() {
    let out = chain(vec![Arc::new(Singles), Arc::new(Truncate { keep: 0 })])
        .run(batch(3))
        .unwrap();
    assert!(out.is_empty());
    let out = chain(vec![Arc::new(Truncate { keep: 2 }), Arc::new(Singles)])
        .run(batch(5))
        .unwrap();
    assert_eq!(out.iter().map(|b| b.items).collect::<Vec<_>>(), [1, 1]);
}

#[test]
fn drops_are_counted_per_processor_and_reason() {
    let metrics = TestRecorder::default();
    let _guard = metrics.install();
    chain(vec![Arc::new(Truncate { keep: 1 })])
        .run(batch(4))
        .unwrap();
    assert_eq!(
        metrics.counter(
            "sluice_processor_dropped_items_total",
            &[
                ("processor", "p/0"),
                ("reason", "truncated"),
                ("signal", "logs"),
                ("tenant", "t")
            ]
        ),
        3
    );
}
