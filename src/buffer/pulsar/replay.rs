//! `sluice replay` on Pulsar: what the topic retains (`retention:`) and the export
//! subscription has acknowledged, from the first message published at the window's start.
//!
//! A replay subscription of its own (`sluice-replay-…`) is created at the earliest message,
//! moved by the broker to the window's start (admin `resetcursor`), read up to the export
//! subscription's acknowledged position as it stood when the replay began (on each
//! partition of a partitioned topic: positions are per partition), and deleted. The
//! export subscription is never touched. Batches are filtered by their receive time, as on
//! disk; the publish time only picks where reading starts.

use std::collections::{HashMap, HashSet};

use pulsar::SubType;

use super::admin::AdminError;
use super::{message, reading, unavailable, PulsarBuffer, SharedError};
use crate::batch::now_ms;
use crate::buffer::{BufferError, Handover, ReplayWindow, Replayed};
use crate::signal::Signal;
use crate::tenant::TenantId;

/// The topic a replay reads and its subscription.
#[derive(Clone, Copy)]
struct Target<'a> {
    tenant: &'a TenantId,
    signal: Signal,
    topic: &'a str,
    subscription: &'a str,
}

impl PulsarBuffer {
    pub(super) async fn replay_topic(
        &self,
        tenant: &TenantId,
        signal: Signal,
        window: ReplayWindow,
        to: Handover<'_>,
    ) -> Result<Replayed, BufferError> {
        let ctx = &self.ctx;
        if !ctx.config.retention.enabled() {
            return Err(BufferError::Unsupported(
                "the Pulsar buffer's `retention` is off: the broker deletes acknowledged messages, so there is nothing to replay"
                    .into(),
            ));
        }
        let topic = ctx.topic.render(tenant, signal);
        let admin_failed =
            |e: AdminError| unavailable(&format!("cannot replay {topic}"), SharedError::new(e));
        let acknowledged = ctx
            .admin
            .acknowledged_positions(&topic, &ctx.config.consumer.subscription)
            .await
            .map_err(admin_failed)?;
        if acknowledged.is_empty() {
            // No topic, or never exported: nothing was acknowledged.
            return Ok(Replayed::default());
        }
        let subscription = format!("sluice-replay-{}-{}", now_ms(), rand::random::<u32>());
        let target = Target {
            tenant,
            signal,
            topic: &topic,
            subscription: &subscription,
        };
        let replayed = self.read_from(&target, window, &acknowledged, to).await;
        if let Err(e) = ctx.admin.delete_subscription(&topic, &subscription).await {
            tracing::warn!(%topic, %subscription, error = %crate::error::error_chain(&e), "cannot delete a replay subscription; delete it by hand, it holds the topic's messages");
        }
        replayed
    }

    async fn read_from(
        &self,
        target: &Target<'_>,
        window: ReplayWindow,
        acknowledged: &HashMap<String, (i64, i64)>,
        to: Handover<'_>,
    ) -> Result<Replayed, BufferError> {
        let Target {
            tenant,
            signal,
            topic,
            subscription,
        } = *target;
        let ctx = &self.ctx;
        let admin_failed =
            |e: AdminError| unavailable(&format!("cannot replay {topic}"), SharedError::new(e));
        ctx.admin
            .create_subscription(topic, subscription)
            .await
            .map_err(admin_failed)?;
        ctx.admin
            .reset_cursor(topic, subscription, window.since_ms)
            .await
            .map_err(admin_failed)?;
        let waiting = ctx
            .admin
            .subscription_backlog(topic, subscription)
            .await
            .map_err(admin_failed)?;
        let mut replayed = Replayed::default();
        if waiting == 0 {
            return Ok(replayed);
        }
        let mut consumer = reading::subscribe(ctx, topic, subscription, SubType::Exclusive).await?;
        // Topics (partitions) read up to where the export subscription stood.
        let mut caught_up = HashSet::new();
        for _ in 0..waiting {
            let Some(message) = reading::next(&mut consumer, topic).await? else {
                break;
            };
            let id = &message.message_id.id;
            let exported = acknowledged
                .get(&message.topic)
                .is_some_and(|&at| (id.ledger_id as i64, id.entry_id as i64) <= at);
            if !exported {
                // Not yet exported: the live export sends it.
                if acknowledged.contains_key(&message.topic) {
                    caught_up.insert(message.topic.clone());
                }
                if caught_up.len() >= acknowledged.len() {
                    break;
                }
                continue;
            }
            // A message that is not OTLP was dead-lettered, never exported: not replayed.
            if let (_, Ok(decoded)) = message::decode_read(tenant, signal, &message) {
                if window.contains(&decoded.batch) {
                    replayed.add(&decoded.batch);
                    to(decoded.batch).await?;
                }
            }
        }
        let _ = consumer.close().await;
        Ok(replayed)
    }
}
