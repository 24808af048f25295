//! End to end with the OpenTelemetry Python SDK's OTLP/HTTP exporter
//! (opentelemetry-exporter-otlp-proto-http): spans (gzip), logs and metrics sent with
//! `x-scope-orgid: pyhttp` all reach the backend under that tenant.
//!
//! The interpreter comes from `SLUICE_TEST_PYTHON`, which `make test` sets to the venv that
//! deploy/scripts/python-env.sh builds. Without it the test fails: it never skips.

mod common;

use std::time::Duration;

use common::{temp_dir, Backend, SluiceConfig, SluiceProcess};
use opentelemetry_proto::tonic::common::v1::any_value::Value;

const COUNT: usize = 30;
const TENANT: &str = "pyhttp";
const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread")]
async fn python_sdk_http_exports_arrive_under_their_tenant() {
    let dir = temp_dir();
    let backend = Backend::start().await;
    let config = SluiceConfig::new(dir.path(), backend.port()).with_http(&[]);
    let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;

    let base = format!("http://{}", sluice.http_addr.expect("an http endpoint"));
    common::python::run_client(
        "send_http.py",
        vec![base, COUNT.to_string(), TENANT.to_string()],
    )
    .await;

    backend.wait_spans(TENANT, COUNT, WAIT).await;
    backend.wait_log_records(TENANT, COUNT, WAIT).await;
    backend.wait_data_points(TENANT, 1, WAIT).await;

    let spans = backend.spans(TENANT);
    let mut names: Vec<String> = spans.iter().map(|s| s.name.clone()).collect();
    names.sort();
    let mut want: Vec<String> = (0..COUNT).map(|i| format!("py-http-span-{i}")).collect();
    want.sort();
    assert_eq!(names, want, "span names at the backend");
    for span in &spans {
        let seq: i64 = span.name.rsplit('-').next().unwrap().parse().unwrap();
        let got = span.attributes.iter().find(|kv| kv.key == "seq");
        let got = got.and_then(|kv| kv.value.clone()).and_then(|v| v.value);
        assert_eq!(got, Some(Value::IntValue(seq)), "{}", span.name);
    }
    backend.with(|r| {
        assert!(!r.traces.is_empty() && !r.logs.is_empty() && !r.metrics.is_empty());
        let tenants = r.traces.iter().map(|x| &x.tenant);
        let tenants = tenants.chain(r.logs.iter().map(|x| &x.tenant));
        for tenant in tenants.chain(r.metrics.iter().map(|x| &x.tenant)) {
            assert_eq!(
                tenant.as_deref(),
                Some(TENANT),
                "tenant header of a request"
            );
        }
    });
}
