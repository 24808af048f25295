use std::sync::atomic::AtomicU64;

use super::*;
use crate::config::{parse_component, Validate};

const MIB: u64 = 1 << 20;

fn config(yaml: &str) -> Result<MemoryLimiterConfig, String> {
    let c: MemoryLimiterConfig =
        parse_component(serde_yaml::from_str(yaml).unwrap()).map_err(|e| e.to_string())?;
    c.validate().map_err(|e| e.to_string())?;
    Ok(c)
}

#[tokio::test(start_paused = true)]
async fn refuses_over_the_soft_limit_and_recovers_at_the_next_sample() {
    let memory = Arc::new(AtomicU64::new(10 * MIB));
    let source: MemorySource = {
        let memory = Arc::clone(&memory);
        Arc::new(move || Some(memory.load(Ordering::Relaxed)))
    };
    let limiter = MemoryLimiter::start(80 * MIB, Duration::from_secs(1), source);
    assert_eq!(limiter.check(), Ok(()));

    // A flood: memory passes the soft limit; from the next sample on, requests are refused.
    memory.store(90 * MIB, Ordering::Relaxed);
    assert_eq!(limiter.check(), Ok(()), "not sampled yet");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let refused = limiter.check().unwrap_err();
    assert_eq!(
        refused,
        MemoryLimited {
            used_mib: 90,
            soft_mib: 80,
            retry_after: Duration::from_secs(1)
        }
    );

    // Memory is given back: accepted again after the next sample.
    memory.store(50 * MIB, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(limiter.check(), Ok(()));
}

#[test]
fn soft_limits_follow_the_collectors_defaults() {
    let c = config("{ check_interval: 1s, limit_mib: 1000 }").unwrap();
    assert_eq!(
        c.soft_limit_bytes(None),
        Some(800 * MIB),
        "spike defaults to 20 %"
    );
    let c = config("{ check_interval: 1s, limit_mib: 1000, spike_limit_mib: 100 }").unwrap();
    assert_eq!(c.soft_limit_bytes(None), Some(900 * MIB));
    let c =
        config("{ check_interval: 1s, limit_percentage: 50, spike_limit_percentage: 10 }").unwrap();
    assert_eq!(c.soft_limit_bytes(Some(1000 * MIB)), Some(400 * MIB));
    assert_eq!(c.soft_limit_bytes(None), None);
}

#[test]
fn invalid_limits_name_their_field() {
    for (yaml, field) in [
        ("{ check_interval: 0s, limit_mib: 10 }", "check_interval"),
        ("{ check_interval: 1s }", "limit_mib"),
        (
            "{ check_interval: 1s, limit_mib: 10, limit_percentage: 5 }",
            "limit_percentage",
        ),
        (
            "{ check_interval: 1s, limit_mib: 10, spike_limit_mib: 10 }",
            "spike_limit_mib",
        ),
    ] {
        let err = config(yaml).unwrap_err();
        assert!(err.starts_with(field), "{yaml}: {err}");
    }
}

#[test]
fn reads_this_process_memory() {
    assert!(config::resident_bytes().is_some_and(|b| b > 0));
    assert!(config::total_memory().is_some_and(|b| b > 0));
}
