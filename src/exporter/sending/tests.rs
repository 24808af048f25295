use std::time::Duration;

use super::*;

fn tenant(name: &str) -> TenantId {
    TenantId::parse(name).unwrap()
}

#[tokio::test]
async fn grants_up_to_capacity_at_once_then_waits() {
    let slots = FairSlots::new("e", 2);
    let a = slots.acquire(&tenant("a")).await;
    let _b = slots.acquire(&tenant("a")).await;
    let third = tokio::spawn({
        let slots = Arc::clone(&slots);
        async move { slots.acquire(&tenant("b")).await }
    });
    tokio::task::yield_now().await;
    assert!(!third.is_finished());
    drop(a);
    tokio::time::timeout(Duration::from_secs(5), third)
        .await
        .expect("granted once a slot was freed")
        .expect("task");
}

#[tokio::test]
async fn freed_slots_go_to_waiting_tenants_in_turn() {
    let slots = FairSlots::new("e", 1);
    let held = slots.acquire(&tenant("big")).await;
    // The big tenant queues five sends before the small ones queue one each.
    let (tx, mut order) = tokio::sync::mpsc::unbounded_channel();
    let mut waits = Vec::new();
    for name in ["big", "big", "big", "big", "big", "s1", "s2", "s3"] {
        let (slots, tx) = (Arc::clone(&slots), tx.clone());
        waits.push(tokio::spawn(async move {
            let slot = slots.acquire(&tenant(name)).await;
            tx.send(name).unwrap();
            // Held until the test takes the next grant.
            tokio::time::sleep(Duration::from_millis(1)).await;
            drop(slot);
        }));
        // Queue in this exact order.
        tokio::task::yield_now().await;
    }
    drop(held);
    let mut granted = Vec::new();
    while granted.len() < 8 {
        granted.push(order.recv().await.unwrap());
    }
    assert_eq!(
        granted,
        ["big", "s1", "s2", "s3", "big", "big", "big", "big"]
    );
}

#[tokio::test]
async fn a_dropped_wait_takes_no_slot() {
    let slots = FairSlots::new("e", 1);
    let held = slots.acquire(&tenant("a")).await;
    let abandoned = tokio::spawn({
        let slots = Arc::clone(&slots);
        async move { slots.acquire(&tenant("b")).await }
    });
    tokio::task::yield_now().await;
    abandoned.abort();
    let _ = abandoned.await;
    drop(held);
    // The slot came back instead of going to the abandoned wait.
    tokio::time::timeout(Duration::from_secs(5), slots.acquire(&tenant("c")))
        .await
        .expect("slot free again");
}
