//! End to end with the OpenTelemetry Python SDK (opentelemetry-exporter-otlp-proto-grpc):
//! spans sent with `x-scope-orgid: pyteam` all reach the backend under that tenant.
//!
//! The interpreter comes from `SLUICE_TEST_PYTHON`, which `make test` sets to the venv that
//! deploy/scripts/python-env.sh builds. Without it the test fails: it never skips.

mod common;

use std::time::Duration;

use common::{temp_dir, Backend, SluiceConfig, SluiceProcess};
use opentelemetry_proto::tonic::common::v1::any_value::Value;

const SPANS: usize = 50;
const TENANT: &str = "pyteam";

#[tokio::test(flavor = "multi_thread")]
async fn python_sdk_spans_arrive_under_their_tenant() {
    let dir = temp_dir();
    let backend = Backend::start().await;
    let config = SluiceConfig::new(dir.path(), backend.port());
    let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;

    let endpoint = sluice.otlp_endpoint();
    common::python::run_client(
        "send_traces.py",
        vec![endpoint, SPANS.to_string(), TENANT.to_string()],
    )
    .await;

    backend
        .wait_spans(TENANT, SPANS, Duration::from_secs(30))
        .await;
    sluice
        .wait_settled(TENANT, "traces", Duration::from_secs(30))
        .await;

    let spans = backend.spans(TENANT);
    let mut names: Vec<String> = spans.iter().map(|s| s.name.clone()).collect();
    names.sort();
    let mut want: Vec<String> = (0..SPANS).map(|i| format!("py-span-{i}")).collect();
    want.sort();
    assert_eq!(names, want, "span names at the backend");
    for span in &spans {
        let seq: i64 = span.name.rsplit('-').next().unwrap().parse().unwrap();
        let got = span
            .attributes
            .iter()
            .find(|kv| kv.key == "seq")
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| v.value.clone());
        assert_eq!(got, Some(Value::IntValue(seq)), "{}", span.name);
    }
    backend.with(|r| {
        assert!(!r.traces.is_empty());
        for req in &r.traces {
            assert_eq!(
                req.tenant.as_deref(),
                Some(TENANT),
                "tenant header of a request"
            );
        }
    });
}
