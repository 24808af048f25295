use super::*;
use crate::tenant::limits::LimitsConfig;

const MIB: u64 = 1 << 20;

fn tenant(name: &str) -> TenantId {
    TenantId::parse(name).unwrap()
}

/// 100 MiB, 10 % headroom, no explicit caps.
fn shares() -> TenantShares {
    TenantShares::new("test", 100 * MIB, 10, Arc::default())
}

/// Appends `chunk`-sized records for `usage` until refused; returns the refusal.
fn fill(shares: &TenantShares, usage: &TenantUsage, chunk: u64) -> Refusal {
    loop {
        if let Err(refusal) = shares.reserve(usage, chunk) {
            return refusal;
        }
    }
}

#[test]
fn a_lone_tenant_stops_short_of_the_cap_and_is_refused_alone() {
    let s = shares();
    let noisy = s.usage(&tenant("noisy"));
    let refusal = fill(&s, &noisy, MIB);
    assert!(
        matches!(refusal, Refusal::TenantOverShare { ref tenant, .. } if tenant.as_str() == "noisy"),
        "{refusal:?}"
    );
    assert_eq!(noisy.held(), 90 * MIB, "headroom of 10 MiB left");

    // Later tenants are served from the headroom.
    let quiet = s.usage(&tenant("quiet"));
    for _ in 0..5 {
        s.reserve(&quiet, MIB).unwrap();
    }
    // The noisy tenant is still refused, as over its share.
    assert!(matches!(
        s.reserve(&noisy, 1),
        Err(Refusal::TenantOverShare { .. })
    ));
}

#[test]
fn tenants_under_their_fair_share_may_use_the_headroom_up_to_the_cap() {
    let s = shares();
    let (a, b) = (s.usage(&tenant("a")), s.usage(&tenant("b")));
    assert!(matches!(fill(&s, &a, MIB), Refusal::TenantOverShare { .. }));
    // b is under its fair share (45 MiB) and takes the whole headroom, then the buffer is full.
    assert_eq!(
        fill(&s, &b, MIB),
        Refusal::BufferFull {
            used: 100 * MIB,
            cap: 100 * MIB
        }
    );
    assert_eq!(b.held(), 10 * MIB);
}

#[test]
fn released_room_is_granted_again_and_tenants_that_hold_nothing_stop_counting() {
    let s = shares();
    let (a, b) = (s.usage(&tenant("a")), s.usage(&tenant("b")));
    s.reserve(&a, 80 * MIB).unwrap();
    s.reserve(&b, 5 * MIB).unwrap();
    // Two tenants hold data: a's fair share is 45 MiB, and the buffer is past 90 MiB after
    // this append, so it is refused.
    assert!(matches!(
        s.reserve(&a, 6 * MIB),
        Err(Refusal::TenantOverShare { share, .. }) if share == 45 * MIB
    ));
    // Once b holds nothing, a is alone again (fair share 90 MiB).
    s.release(&b, 5 * MIB);
    s.reserve(&a, 6 * MIB).unwrap();
    assert_eq!(s.used(), 86 * MIB);
}

#[test]
fn explicit_caps_apply_per_tenant_with_overrides() {
    // A listed tenant has only its own limits: `big` has no cap, `tiny` 1 MiB.
    let limits: LimitsConfig = serde_yaml::from_str(
        "{ default: { buffer_max_mib: 10 }, tenants: { big: {}, tiny: { buffer_max_mib: 1 } } }",
    )
    .unwrap();
    let s = TenantShares::new("test", 100 * MIB, 0, Arc::new(LiveLimits::new(limits)));
    let (plain, big, tiny) = (
        s.usage(&tenant("plain")),
        s.usage(&tenant("big")),
        s.usage(&tenant("tiny")),
    );
    assert!(matches!(
        fill(&s, &plain, MIB),
        Refusal::TenantOverShare { share, .. } if share == 10 * MIB
    ));
    assert!(matches!(
        fill(&s, &tiny, MIB),
        Refusal::TenantOverShare { .. }
    ));
    assert_eq!(tiny.held(), MIB);
    // No cap of its own, and fair sharing is off: it fills the rest of the buffer.
    assert!(matches!(fill(&s, &big, MIB), Refusal::BufferFull { .. }));
    assert_eq!(s.used(), 100 * MIB);
}

#[test]
fn without_headroom_one_cap_is_shared_first_come() {
    let s = TenantShares::new("test", 10 * MIB, 0, Arc::default());
    let a = s.usage(&tenant("a"));
    assert!(matches!(fill(&s, &a, MIB), Refusal::BufferFull { .. }));
    assert_eq!(a.held(), 10 * MIB);
}
