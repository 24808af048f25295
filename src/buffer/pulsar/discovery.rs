//! Which tenant+signal topics the export side consumes, and announcing a stream for each.
//!
//! With `consumer.tenants`, exactly those tenants' topics. Otherwise the topics matching the
//! template are listed in its namespace (binary protocol, no admin API needed) every
//! `topic_refresh_interval`; dead-letter topics and partitions are skipped. A tenant whose
//! first append goes through this process is announced at once.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use pulsar::proto::command_get_topics_of_namespace::Mode;
use tokio::sync::{mpsc, Notify};

use super::consumer::PulsarStream;
use super::topic::{partitioned_topic_of, DeadLetterTemplate, TopicTemplate};
use super::{detached, Context};
use crate::buffer::{StreamReceiver, StreamSender};
use crate::error::error_chain;
use crate::signal::Signal;
use crate::tenant::TenantId;

struct Announcer {
    tx: StreamSender,
    /// Each announced tenant's wake-up: an append through this process reopens its stream's
    /// consumer if it was closed for idleness.
    known: HashMap<TenantId, Arc<Notify>>,
}

pub(super) struct Discovery {
    ctx: Arc<Context>,
    announcers: Mutex<HashMap<Signal, Announcer>>,
    taken: Mutex<HashSet<Signal>>,
}

impl Discovery {
    pub fn new(ctx: Arc<Context>) -> Arc<Discovery> {
        Arc::new(Discovery {
            ctx,
            announcers: Mutex::new(HashMap::new()),
            taken: Mutex::new(HashSet::new()),
        })
    }

    /// Starts announcing the streams of `signal`; `None` after the first call.
    pub fn take_streams(self: &Arc<Self>, signal: Signal) -> Option<StreamReceiver> {
        if !self
            .taken
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(signal)
        {
            return None;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        self.announcers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                signal,
                Announcer {
                    tx,
                    known: HashMap::new(),
                },
            );
        match &self.ctx.tenants {
            Some(tenants) => {
                for tenant in tenants {
                    self.announce(signal, tenant);
                }
            }
            None => match self.ctx.topic.namespace(signal) {
                Some(namespace) => {
                    tokio::spawn(Arc::clone(self).refresh(signal, namespace));
                }
                None => tracing::error!(
                    topic = %self.ctx.topic,
                    %signal,
                    "the topic template puts the tenant into the Pulsar namespace, where topics cannot be discovered; list the tenants in consumer.tenants (only tenants appended through this process are exported)"
                ),
            },
        }
        Some(rx)
    }

    /// A tenant's data was appended through this process: export it without waiting for the
    /// next refresh (unless a fixed tenant list leaves it out), and wake its stream.
    pub fn appended(&self, signal: Signal, tenant: &TenantId) {
        let announced = self
            .announcers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&signal)
            .and_then(|a| a.known.get(tenant).cloned());
        match announced {
            // Stored if the stream is not waiting yet: an append never goes unnoticed.
            Some(wake) => wake.notify_one(),
            None if self.ctx.tenants.is_none() => self.announce(signal, tenant),
            None => {}
        }
    }

    fn announce(&self, signal: Signal, tenant: &TenantId) {
        let mut announcers = self
            .announcers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(announcer) = announcers.get_mut(&signal) else {
            return;
        };
        if announcer.known.contains_key(tenant) {
            return;
        }
        let wake = Arc::new(Notify::new());
        announcer.known.insert(tenant.clone(), Arc::clone(&wake));
        let stream = PulsarStream::new(Arc::clone(&self.ctx), tenant.clone(), signal, wake);
        tracing::info!(%tenant, %signal, topic = %self.ctx.topic.render(tenant, signal), "exporting a Pulsar topic");
        // Nobody listening (shutting down) is fine.
        let _ = announcer.tx.send(Box::new(stream));
    }

    /// Lists the namespace now and every `topic_refresh_interval`, until the buffer closes.
    async fn refresh(self: Arc<Self>, signal: Signal, namespace: String) {
        let mut closed = self.ctx.closed.clone();
        let interval = self.ctx.config.consumer.topic_refresh_interval;
        let mut failed = false;
        loop {
            if *closed.borrow() {
                break;
            }
            // Detached: a listing may open the client's connection to the broker, and one
            // given up halfway leaves it unusable for good (see `detached`).
            let listing = {
                let (client, namespace) = (self.ctx.client.clone(), namespace.clone());
                async move {
                    client
                        .get_topics_of_namespace(namespace, Mode::Persistent)
                        .await
                }
            };
            match detached(self.ctx.config.send_timeout, listing).await {
                Ok(topics) => {
                    if failed {
                        tracing::info!(%namespace, "listing Pulsar topics works again");
                        failed = false;
                    }
                    for tenant in self.tenants_in(signal, &topics) {
                        self.announce(signal, &tenant);
                    }
                }
                Err(e) if !failed => {
                    failed = true;
                    tracing::warn!(%namespace, error = %error_chain(&e), "cannot list the Pulsar namespace's topics; retrying");
                }
                Err(_) => {}
            }
            tokio::select! {
                _ = closed.changed() => {}
                _ = tokio::time::sleep(interval) => {}
            }
        }
        self.announcers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&signal);
    }

    fn tenants_in(&self, signal: Signal, topics: &[String]) -> Vec<TenantId> {
        tenants_in(&self.ctx.topic, &self.ctx.dead_letter, signal, topics)
    }

    /// Stops announcing (the export dispatchers then end).
    pub fn close(&self) {
        self.announcers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

/// The tenants whose `signal` topics are among `topics` (as listed by the broker: a
/// partitioned topic by its partitions), each once, in the order listed.
pub(super) fn tenants_in(
    topic: &TopicTemplate,
    dead_letter: &DeadLetterTemplate,
    signal: Signal,
    topics: &[String],
) -> Vec<TenantId> {
    let mut seen = std::collections::HashSet::new();
    topics
        .iter()
        .map(|t| partitioned_topic_of(t).unwrap_or(t))
        .filter(|t| !dead_letter.is_dead_letter_topic(t, signal))
        .filter_map(|t| topic.tenant_of(t, signal))
        .filter(|tenant| seen.insert(tenant.clone()))
        .collect()
}
