//! Keeping a stream's consumer sound and cheap: the watchdog (a periodic stats request,
//! which also reads the backlog, and a look for partitions the consumer does not read), and
//! parking an idle stream without a consumer until its topic has messages again.

use tokio::time::Instant;

use super::{Open, PulsarStream, CHECK_INTERVAL, CHECK_TIMEOUT};
use crate::buffer::pulsar::detached;
use crate::error::error_chain;

impl PulsarStream {
    /// Closes the idle consumer, freeing its slot, and waits until the topic has messages
    /// again: an append through this process, or a backlog found by the admin API check.
    /// False when the buffer closed meanwhile.
    pub(super) async fn park(&mut self) -> bool {
        self.consumer = None;
        metrics::counter!("sluice_pulsar_idle_consumer_closes_total").increment(1);
        tracing::debug!(topic = %self.topic, "closed the idle Pulsar consumer");
        let interval = self.ctx.config.consumer.idle_check_interval;
        loop {
            if *self.closed.borrow() {
                return false;
            }
            tokio::select! {
                _ = self.closed.changed() => {}
                _ = self.wake.notified() => return true,
                _ = tokio::time::sleep(interval) => {
                    if self.has_backlog().await {
                        return true;
                    }
                }
            }
        }
    }

    /// Whether the subscription has messages on the topic, by the admin API. When it cannot
    /// tell, true: subscribing again is how to find out.
    pub(super) async fn has_backlog(&self) -> bool {
        let Ok(_permit) = self.ctx.idle_checks.acquire().await else {
            return true;
        };
        let subscription = &self.ctx.config.consumer.subscription;
        match self
            .ctx
            .admin
            .subscription_backlog(&self.topic, subscription)
            .await
        {
            Ok(messages) => messages > 0,
            Err(e) => {
                metrics::counter!("sluice_pulsar_idle_check_failures_total").increment(1);
                tracing::debug!(topic = %self.topic, error = %error_chain(&e), "cannot read the idle topic's backlog; subscribing to see");
                true
            }
        }
    }

    /// Watchdog: a consumer whose broker does not answer a stats request is replaced.
    pub(super) async fn check(&mut self) {
        self.next_check = Instant::now() + CHECK_INTERVAL;
        let Some(Open {
            consumer,
            partitioned,
            ..
        }) = self.consumer.as_mut()
        else {
            return;
        };
        match tokio::time::timeout(CHECK_TIMEOUT, consumer.get_stats()).await {
            Ok(Ok(stats)) => {
                let backlog: u64 = stats.iter().filter_map(|s| s.msg_backlog).sum();
                metrics::gauge!("sluice_pulsar_backlog_messages", "signal" => self.signal.as_str(), "tenant" => self.label.clone())
                    .set(backlog as f64);
                let (reading, partitioned) = (consumer.topics().len(), *partitioned);
                if partitioned && self.partitions_unread(reading).await {
                    tracing::info!(topic = %self.topic, reading, "the partitioned topic has partitions its consumer does not read (grown, or a partition's consumer failed); subscribing again");
                    self.consumer = None;
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(topic = %self.topic, error = %error_chain(&e), "Pulsar consumer check failed; subscribing again");
                self.consumer = None;
            }
            Err(_) => {
                tracing::warn!(topic = %self.topic, "Pulsar consumer check got no answer; subscribing again");
                self.consumer = None;
            }
        }
    }

    /// Whether the topic has more partitions than the consumer is `reading`. The client
    /// library's consumer of a partitioned topic never adds partitions created after it, and
    /// drops the consumer of a partition that failed, to make it again only at its topic
    /// refresh, which is off (see `build_consumer`).
    async fn partitions_unread(&self, reading: usize) -> bool {
        let client = self.ctx.client.clone();
        let topic = self.topic.clone();
        let lookup = async move { client.lookup_partitioned_topic_number(topic).await };
        match detached(CHECK_TIMEOUT, lookup).await {
            Ok(partitions) => partitions as usize > reading,
            Err(e) => {
                tracing::debug!(topic = %self.topic, error = %error_chain(&e), "cannot look up the topic's partitions");
                false
            }
        }
    }
}
