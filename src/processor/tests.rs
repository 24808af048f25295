use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

use super::*;
use crate::processor::test_support::kv;
use crate::signal::Signal;
use crate::telemetry::test_recorder::TestRecorder;
use crate::tenant::TenantId;

fn batch(items: u32) -> Batch {
    Batch {
        tenant: TenantId::parse("t").unwrap(),
        signal: Signal::Logs,
        payload: Bytes::from(vec![0u8; items as usize]).into(),
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
    fn process(&self, part: Part) -> Result<Processed, ProcessError> {
        let mut b = part.into_batch();
        if b.items <= self.keep {
            return Ok(Processed::keep(b.into()));
        }
        let dropped = b.items - self.keep;
        b.items = self.keep;
        b.payload = b.payload.to_bytes().slice(..self.keep as usize).into();
        Ok(Processed::reduced(
            (self.keep > 0).then_some(b.into()),
            dropped,
            "truncated",
        ))
    }
}

/// Splits each batch into one-item parts.
#[derive(Debug)]
struct Singles;

impl Processor for Singles {
    fn process(&self, part: Part) -> Result<Processed, ProcessError> {
        let b = part.into_batch();
        let parts = (0..b.items)
            .map(|i| {
                Part::from(Batch {
                    items: 1,
                    payload: b
                        .payload
                        .to_bytes()
                        .slice(i as usize..i as usize + 1)
                        .into(),
                    ..b.clone()
                })
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

/// `filter`, `attributes` and `resource` as configured, in that order.
fn decoding_processors() -> Vec<(String, Arc<dyn Processor>)> {
    [
        (
            "filter",
            "traces: { span: ['attributes[\"http.route\"] == \"/healthz\"'] }",
        ),
        (
            "attributes",
            "actions: [ { key: user.email, action: hash } ]",
        ),
        (
            "resource",
            "attributes: [ { key: env, value: test, action: upsert } ]",
        ),
    ]
    .into_iter()
    .map(|(kind, yaml)| {
        let config = PROCESSORS
            .parse(kind, serde_yaml::from_str(yaml).unwrap())
            .unwrap();
        match config.build() {
            Processing::Transform(p) => (kind.to_string(), p),
            other => panic!("{kind} is not a transform: {other:?}"),
        }
    })
    .collect()
}

/// One span per (`http.route`, `user.email`); no `user.email` where it is empty.
fn spans(routes: &[(&str, &str)]) -> Batch {
    let spans = routes
        .iter()
        .map(|(route, email)| Span {
            name: format!("GET {route}"),
            attributes: [kv("http.route", route), kv("user.email", email)]
                .into_iter()
                .filter(|a| a.key == "http.route" || !email.is_empty())
                .collect(),
            ..Default::default()
        })
        .collect();
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", "checkout")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    test_support::batch(Signal::Traces, request.encode_to_vec(), routes.len() as u32)
}

#[test]
fn a_chain_gives_what_its_processors_give_one_after_another() {
    // The chain decodes once and encodes once; one chain per processor decodes and encodes
    // at each. What comes out must be the same.
    let input = spans(&[("/healthz", "a@b.c"), ("/api", "d@e.f"), ("/api", "g@h.i")]);
    let together = run_together_and_apart(input);
    assert_eq!(together[0].items, 2);

    // Nothing dropped, but an empty scope the filter removes: that is a change too.
    let mut with_empty_scope = spans(&[("/api", "d@e.f")]);
    let mut request =
        ExportTraceServiceRequest::decode(&with_empty_scope.payload.contiguous()[..]).unwrap();
    request.resource_spans[0]
        .scope_spans
        .push(Default::default());
    with_empty_scope.payload = request.encode_to_vec().into();
    let together = run_together_and_apart(with_empty_scope);
    let request = ExportTraceServiceRequest::decode(&together[0].payload.contiguous()[..]).unwrap();
    assert_eq!(request.resource_spans[0].scope_spans.len(), 1);
}

/// Runs [`decoding_processors`] as one chain and as one chain each, asserts that both give
/// the same batches, and returns them.
fn run_together_and_apart(input: Batch) -> Vec<Batch> {
    let together = Chain::new(decoding_processors())
        .run(input.clone())
        .unwrap();
    let mut apart = vec![input];
    for stage in decoding_processors() {
        let chain = Chain::new(vec![stage]);
        apart = apart
            .into_iter()
            .flat_map(|b| chain.run(b).unwrap())
            .collect();
    }
    assert_eq!(together, apart);
    together
}

#[test]
fn a_chain_that_changes_nothing_keeps_the_received_bytes() {
    // Nothing matches the filter and no span has `user.email`.
    let processors = decoding_processors();
    let input = spans(&[("/api", "")]);
    let unchanged = Chain::new(processors[..2].to_vec())
        .run(input.clone())
        .unwrap();
    assert_eq!(
        unchanged[0].payload.chunks()[0].as_ptr(),
        input.payload.chunks()[0].as_ptr()
    );
}
