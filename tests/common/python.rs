//! Runs the test clients written with the official OpenTelemetry Python SDK.
//!
//! The interpreter comes from `SLUICE_TEST_PYTHON`, which `make test` sets to the venv that
//! deploy/scripts/python-env.sh builds. Without it the test fails: it never skips.

use std::process::Command;

/// Runs `tests/python/<script>` with `args` and panics with its output unless it exits 0.
pub async fn run_client(script: &str, args: Vec<String>) {
    let python = std::env::var("SLUICE_TEST_PYTHON").unwrap_or_else(|_| {
        panic!(
            "SLUICE_TEST_PYTHON is not set: run the tests with `make test`, or set it to the \
             python of the venv that deploy/scripts/python-env.sh prints"
        )
    });
    let path = format!("{}/tests/python/{script}", env!("CARGO_MANIFEST_DIR"));
    let output = tokio::task::spawn_blocking(move || {
        Command::new(&python)
            .arg(&path)
            .args(&args)
            .output()
            .unwrap_or_else(|e| panic!("run {python}: {e}"))
    })
    .await
    .expect("the client task");
    assert!(
        output.status.success(),
        "{script} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
