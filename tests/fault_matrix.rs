//! The fault matrix (docs/architecture.md, "Faults"): under continuous load, for the disk
//! buffer and Pulsar, Sluice is SIGKILLed at random moments, the disk fills up, a tenant's
//! log fails with I/O errors, and the backend goes away for a minute. Every trial counts what
//! clients had acknowledged, what the backend got and how much of it twice, and fails if a
//! single acknowledged span is missing. (The broker restarts, three trials on each broker,
//! are tests/broker_restart.rs: they stop the shared brokers, so they run alone.)
//!
//! `make test` runs the short version; `make chaos` the long one (more trials, see
//! tests/common/chaos.rs for the settings).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::chaos::{moment, rng, setting, settle, Load};
use common::pulsar;
use common::{temp_dir, wait_for, Backend, SluiceConfig, SluiceProcess};
use tonic::Code;

const SETTLE: Duration = Duration::from_secs(120);
const WAIT: Duration = Duration::from_secs(60);

fn sigkill_trials() -> u64 {
    setting("SLUICE_CHAOS_TRIALS", 5)
}

fn outage() -> Duration {
    Duration::from_secs(setting("SLUICE_CHAOS_OUTAGE_SECS", 60))
}

/// Tenants of one trial, unique on the shared broker.
fn tenants(trial: &str) -> Vec<String> {
    (0..2)
        .map(|i| pulsar::tenant(&format!("{trial}{i}")))
        .collect()
}

/// A Pulsar config whose topics and subscription belong to `test` alone.
fn pulsar_config(dir: &Path, backend_port: u16, test: &str) -> SluiceConfig {
    let topic = format!("topic: 'persistent://public/default/{test}-{{signal}}-{{tenant}}'");
    let consumer = format!(
        "consumer: {{ subscription: {}, redelivery_delay: 200ms }}",
        pulsar::tenant(test)
    );
    let lines = ["send_timeout: 10s", topic.as_str(), consumer.as_str()];
    SluiceConfig::new(dir, backend_port).with_pulsar(&pulsar::service_url(), &lines)
}

/// Kills Sluice at a random moment of a continuous load, restarts it on the same data, and
/// checks every acknowledged span arrives; `trials` times, each from scratch.
async fn sigkill_trials_lose_nothing(buffer: &str) {
    let mut rng = rng(&format!("sigkill-{buffer}"));
    for trial in 0..sigkill_trials() {
        let name = format!("kill{buffer}{trial}");
        let dir = temp_dir();
        let backend = Backend::start().await;
        let config = match buffer {
            "disk" => SluiceConfig::new(dir.path(), backend.port()),
            _ => pulsar_config(dir.path(), backend.port(), &name),
        };
        let mut sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
        let load = Load::start(&sluice.otlp_endpoint(), &tenants(&name), 5, 0).await;
        load.wait_acked(0, 50, WAIT).await;
        let at = moment(
            &mut rng,
            Duration::from_millis(50),
            Duration::from_millis(2500),
        );
        tokio::time::sleep(at).await;
        sluice.kill();
        let killed_at = load.acked();
        // Same ports: the clients reconnect by themselves, as real ones do.
        let _sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
        load.wait_acked(killed_at, 50, WAIT).await;
        let acked = load.stop().await;
        let tally = settle(
            &format!("{buffer} SIGKILL trial {trial} (after {at:?})"),
            &backend,
            &acked,
            SETTLE,
        )
        .await;
        assert!(tally.acknowledged > 0);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn disk_sigkill_at_random_moments_loses_nothing_acknowledged() {
    sigkill_trials_lose_nothing("disk").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pulsar_sigkill_at_random_moments_loses_nothing_acknowledged() {
    sigkill_trials_lose_nothing("pulsar").await;
}

/// The backend refuses everything (`UNAVAILABLE`) for [`outage`] under load: clients keep
/// being acknowledged while the buffer holds the data, and all of it arrives afterwards.
async fn backend_outage_loses_nothing(buffer: &str) {
    let name = format!("outage{buffer}");
    let dir = temp_dir();
    let backend = Backend::start().await;
    let config = match buffer {
        "disk" => SluiceConfig::new(dir.path(), backend.port()),
        _ => pulsar_config(dir.path(), backend.port(), &name),
    };
    let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
    let load = Load::start(&sluice.otlp_endpoint(), &tenants(&name), 5, 0).await;
    load.wait_acked(0, 50, WAIT).await;
    backend.set_down(true);
    let down_at = load.acked();
    tokio::time::sleep(outage()).await;
    let during = load.acked() - down_at;
    backend.set_down(false);
    load.wait_acked(load.acked(), 50, WAIT).await;
    let acked = load.stop().await;
    assert!(
        during > 0,
        "clients were acknowledged during the outage (the buffer holds their data)"
    );
    settle(
        &format!("{buffer} backend outage of {:?}", outage()),
        &backend,
        &acked,
        SETTLE,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn disk_backend_outage_loses_nothing_acknowledged() {
    backend_outage_loses_nothing("disk").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pulsar_backend_outage_loses_nothing_acknowledged() {
    backend_outage_loses_nothing("pulsar").await;
}

/// Fills `dir` (as Sluice sees it) with a ballast file until the filesystem refuses more.
fn fill(dir: &Path) -> std::path::PathBuf {
    use std::io::Write;
    let path = dir.join("ballast");
    let mut file = std::fs::File::create(&path).expect("create the ballast");
    let chunk = vec![0u8; 64 * 1024];
    while file.write_all(&chunk).is_ok() {}
    let _ = file.sync_all();
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_refuses_without_corruption_and_recovers_when_space_returns() {
    let dir = temp_dir();
    let backend = Backend::start().await;
    let config = SluiceConfig::new(dir.path(), backend.port());
    let mut sluice = SluiceProcess::start_on_small_filesystem(
        &config.yaml(),
        dir.path(),
        &config.buffer_dir,
        24,
    )
    .await;
    let buffer = sluice.own_view(&config.buffer_dir);
    let load = Load::start(&sluice.otlp_endpoint(), &tenants("enospc"), 10, 1000).await;
    load.wait_acked(0, 100, WAIT).await;

    // The disk fills: appends are refused, retryably, saying why.
    let ballast = fill(&buffer);
    let (before, _) = load.refused(Code::Unavailable);
    wait_for("refusals for lack of space", WAIT, || async {
        match load.refused(Code::Unavailable) {
            (n, message) if n >= before + 20 => Ok(message),
            (n, _) => Err(format!("{n} so far; all refusals {:?}", load.refusals())),
        }
    })
    .await;
    let (_, message) = load.refused(Code::Unavailable);
    assert!(
        message.contains("No space left on device"),
        "the refusal says why: {message}"
    );

    // Space returns: Sluice takes data again by itself.
    std::fs::remove_file(&ballast).expect("remove the ballast");
    load.wait_acked(load.acked(), 200, WAIT).await;
    let acked = load.stop().await;
    settle("disk full", &backend, &acked, SETTLE).await;
    sluice.terminate().await;
    let stderr = sluice.stderr();
    for sign in ["torn record", "checksum", "unusable"] {
        assert!(
            !stderr.contains(sign),
            "the log must stay whole ({sign}):\n{stderr}"
        );
    }
}

/// Sets or clears the immutable attribute of the segment files in `dir`: writes to them then
/// fail (`EPERM`) as they would on a failing disk (`EIO`); Sluice handles every I/O error
/// the same way.
fn immutable(dir: &Path, on: bool) {
    for entry in std::fs::read_dir(dir).expect("the tenant's log directory") {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "seg") {
            let flag = if on { "+i" } else { "-i" };
            let status = Command::new("chattr").arg(flag).arg(&path).status();
            assert!(
                status.is_ok_and(|s| s.success()),
                "chattr {flag} {} failed: the test needs chattr (e2fsprogs) and root",
                path.display()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_io_error_on_one_tenants_log_refuses_that_tenant_alone_until_it_heals() {
    let dir = temp_dir();
    let backend = Backend::start().await;
    let config = SluiceConfig::new(dir.path(), backend.port());
    let sluice = SluiceProcess::start(&config.yaml(), dir.path()).await;
    let [sick, well]: [String; 2] = tenants("eio").try_into().unwrap();
    let sick_load = Load::start(&sluice.otlp_endpoint(), std::slice::from_ref(&sick), 5, 0).await;
    let well_load = Load::start(&sluice.otlp_endpoint(), std::slice::from_ref(&well), 5, 0).await;
    sick_load.wait_acked(0, 50, WAIT).await;
    well_load.wait_acked(0, 50, WAIT).await;

    let log = config.buffer_dir.join("traces").join(&sick);
    immutable(&log, true);
    let (before, _) = sick_load.refused(Code::Unavailable);
    let refusal = wait_for("the sick tenant refused", WAIT, || async {
        match sick_load.refused(Code::Unavailable) {
            (n, message) if n >= before + 10 => Ok(message),
            (n, _) => Err(format!("{n} so far")),
        }
    })
    .await;
    // Meanwhile the other tenant is served as before.
    well_load.wait_acked(well_load.acked(), 100, WAIT).await;
    immutable(&log, false);
    sick_load.wait_acked(sick_load.acked(), 50, WAIT).await;

    let mut acked = sick_load.stop().await;
    acked.extend(well_load.stop().await);
    eprintln!("the sick tenant was told: {refusal}");
    settle("I/O error on one log", &backend, &acked, SETTLE).await;
}
