//! `retention:` on Pulsar: Sluice sets the retention policy of every topic it publishes to,
//! through the admin API, the first time this process publishes to it (topic policies can
//! only be set on topics that exist, and topics appear on first publish). The setup runs
//! beside the data path: an append never waits for it, and a failure is logged, counted in
//! `sluice_pulsar_retention_setup_failures_total` and retried on a later append.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::Context;
use crate::error::error_chain;

/// How long after a failed setup a topic's next append tries again.
const RETRY_AFTER: Duration = Duration::from_secs(30);

#[derive(Default)]
pub(super) struct TopicRetention {
    /// Per topic: `None` once set (or being set), or when to try again after a failure.
    topics: Mutex<HashMap<String, Option<Instant>>>,
}

impl TopicRetention {
    /// Called after each publish to `topic`: sets its retention unless done or failing.
    pub(super) fn published(ctx: &Arc<Context>, topic: &str) {
        if !ctx.config.retention.enabled() {
            return;
        }
        {
            let mut topics = ctx
                .retention
                .topics
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match topics.get(topic) {
                Some(None) => return,
                Some(Some(retry_at)) if Instant::now() < *retry_at => return,
                _ => {}
            }
            topics.insert(topic.to_string(), None);
        }
        let (ctx, topic) = (Arc::clone(ctx), topic.to_string());
        tokio::spawn(async move {
            let (minutes, size_mib) = ctx.config.retention.policy();
            if let Err(e) = ctx.admin.set_retention(&topic, minutes, size_mib).await {
                metrics::counter!("sluice_pulsar_retention_setup_failures_total").increment(1);
                tracing::warn!(%topic, error = %error_chain(&e), "cannot set the topic's retention; acknowledged messages may be deleted before a replay");
                ctx.retention
                    .topics
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(topic, Some(Instant::now() + RETRY_AFTER));
            }
        });
    }
}
