//! Each tenant's share of the backlog kept in Pulsar (docs/contracts.md, "Tenant isolation").
//!
//! The broker is the only one that knows a topic's backlog (what the export subscription has
//! not acknowledged, whichever agent published it), so Sluice asks it: every
//! `backlog.refresh_interval` the topic stats of each topic this process published to are
//! read from the admin API (`backlogSize`), summed per tenant, and held in the same
//! [`TenantShares`] accounting as the disk buffer's. Between two readings a tenant's appends
//! are added as they are published. A tenant at its share is refused alone, before anything
//! is published (`RESOURCE_EXHAUSTED`, `tenant_buffer_full`), so one tenant whose backend
//! refuses everything cannot fill the bookies' disks for everyone.
//!
//! The admin API being unreachable keeps the last readings (logged once per outage, counted
//! in `sluice_pulsar_backlog_poll_failures_total`) and forgets what was published since, once
//! per reading: accounting must not stop ingest on appends it cannot see drained.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use futures::StreamExt;
use tokio::sync::watch;

use super::admin::{AdminClient, AdminError};
use super::limits::BacklogConfig;
use crate::buffer::share::{Refusal, TenantShares, TenantUsage};
use crate::buffer::{Amount, BufferContext, BufferError};
use crate::error::error_chain;
use crate::tenant::TenantId;

/// Topic stats requests in flight at once.
const CONCURRENCY: usize = 8;

pub(super) struct Backlogs {
    shares: TenantShares,
    retry_after: std::time::Duration,
    topics: Mutex<HashMap<String, Watched>>,
}

/// A topic published to by this process.
struct Watched {
    usage: Arc<TenantUsage>,
    /// The backlog at the last reading (0 before the first).
    reading: u64,
    /// `reading` plus what was published since, as counted in `usage`.
    counted: u64,
    /// Published since the last reading (so an idle, empty topic is not read again).
    fresh: bool,
}

impl Backlogs {
    pub(super) fn new(config: &BacklogConfig, context: &BufferContext) -> Arc<Backlogs> {
        Arc::new(Backlogs {
            shares: TenantShares::new(
                "pulsar",
                config.max_mib.saturating_mul(1 << 20),
                config.tenant_headroom_percent,
                Arc::clone(&context.tenant_limits),
            ),
            retry_after: super::RETRY_AFTER,
            topics: Mutex::new(HashMap::new()),
        })
    }

    /// Takes room for `bytes` about to be published to `topic`, or refuses the tenant.
    pub(super) fn reserve(
        &self,
        topic: &str,
        tenant: &TenantId,
        bytes: u64,
    ) -> Result<Reserved<'_>, BufferError> {
        let usage = self.shares.usage(tenant);
        self.shares
            .reserve(&usage, bytes)
            .map_err(|refusal| match refusal {
                Refusal::BufferFull { used, cap } => BufferError::Full {
                    used_bytes: used,
                    cap_bytes: cap,
                    retry_after: self.retry_after,
                },
                Refusal::TenantOverShare {
                    tenant,
                    held,
                    share,
                } => BufferError::TenantFull {
                    tenant,
                    held: Amount::Bytes(held),
                    share: Amount::Bytes(share),
                    retry_after: self.retry_after,
                },
            })?;
        let mut topics = self.topics.lock().unwrap_or_else(PoisonError::into_inner);
        let watched = topics.entry(topic.to_owned()).or_insert_with(|| Watched {
            usage: Arc::clone(&usage),
            reading: 0,
            counted: 0,
            fresh: true,
        });
        watched.counted += bytes;
        watched.fresh = true;
        Ok(Reserved {
            backlogs: self,
            topic: topic.to_owned(),
            usage,
            bytes,
        })
    }

    /// Replaces what is counted for `topic` by the broker's reading.
    fn observed(&self, topic: &str, backlog: u64) {
        let mut topics = self.topics.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(watched) = topics.get_mut(topic) else {
            return;
        };
        if backlog > watched.counted {
            self.shares.add(&watched.usage, backlog - watched.counted);
        } else {
            self.shares
                .release(&watched.usage, watched.counted - backlog);
        }
        watched.counted = backlog;
        watched.reading = backlog;
        watched.fresh = false;
    }

    /// The broker could not be asked about `topic`: what was published since its last reading
    /// is no longer counted, so an unreachable admin API (or a wrong `admin_url`) never
    /// refuses a tenant on appends it cannot see drained. The last reading stays.
    fn unreadable(&self, topic: &str) {
        let mut topics = self.topics.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(watched) = topics.get_mut(topic) else {
            return;
        };
        let unverified = watched.counted.saturating_sub(watched.reading);
        self.shares.release(&watched.usage, unverified);
        watched.counted = watched.reading;
        // Read again next time.
        watched.fresh = true;
    }

    /// Topics worth reading: published to since the last reading, or holding a backlog.
    fn to_read(&self) -> Vec<String> {
        let topics = self.topics.lock().unwrap_or_else(PoisonError::into_inner);
        topics
            .iter()
            .filter(|(_, w)| w.fresh || w.counted > 0)
            .map(|(topic, _)| topic.clone())
            .collect()
    }

    /// Reads the topics' backlogs every `refresh_interval` until `closed`.
    pub(super) fn spawn_poller(
        self: &Arc<Self>,
        config: &BacklogConfig,
        admin: Arc<AdminClient>,
        mut closed: watch::Receiver<bool>,
    ) {
        let this = Arc::clone(self);
        let interval = config.refresh_interval;
        let mut poller = Poller {
            admin,
            failing: false,
        };
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            loop {
                tokio::select! {
                    _ = ticker.tick() => poller.read_all(&this).await,
                    _ = closed.changed() => return,
                }
            }
        });
    }
}

/// Room taken for a publish; given back unless [`Reserved::keep`] is called.
pub(super) struct Reserved<'a> {
    backlogs: &'a Backlogs,
    topic: String,
    usage: Arc<TenantUsage>,
    bytes: u64,
}

impl Reserved<'_> {
    /// The messages were published: they stay counted until the next reading.
    pub(super) fn keep(mut self) {
        self.bytes = 0;
    }
}

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        if self.bytes == 0 {
            return;
        }
        self.backlogs.shares.release(&self.usage, self.bytes);
        let mut topics = self
            .backlogs
            .topics
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(watched) = topics.get_mut(&self.topic) {
            watched.counted = watched.counted.saturating_sub(self.bytes);
        }
    }
}

struct Poller {
    admin: Arc<AdminClient>,
    /// The last pass failed (logged once until one succeeds).
    failing: bool,
}

impl Poller {
    async fn read_all(&mut self, backlogs: &Backlogs) {
        let admin = &self.admin;
        let results: Vec<(String, Result<u64, AdminError>)> =
            futures::stream::iter(backlogs.to_read())
                .map(|topic| async move {
                    let backlog = admin.backlog_bytes(&topic).await;
                    (topic, backlog)
                })
                .buffer_unordered(CONCURRENCY)
                .collect()
                .await;
        let mut error = None;
        for (topic, result) in results {
            match result {
                Ok(backlog) => backlogs.observed(&topic, backlog),
                Err(e) => {
                    backlogs.unreadable(&topic);
                    error = Some(e);
                }
            }
        }
        match error {
            Some(e) => {
                metrics::counter!("sluice_pulsar_backlog_poll_failures_total").increment(1);
                if !self.failing {
                    self.failing = true;
                    tracing::warn!(error = %error_chain(&e), "cannot read tenants' Pulsar backlogs; keeping the last readings");
                }
            }
            None if self.failing => {
                self.failing = false;
                tracing::info!("Pulsar backlog readings work again");
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backlogs() -> Arc<Backlogs> {
        let config = BacklogConfig {
            max_mib: 1,
            tenant_headroom_percent: 10,
            ..BacklogConfig::default()
        };
        Backlogs::new(&config, &BufferContext::default())
    }

    #[test]
    fn readings_replace_what_was_counted_and_a_failed_reading_forgets_the_unverified() {
        let backlogs = backlogs();
        let tenant = TenantId::parse("a").expect("tenant");
        let topic = "persistent://public/default/otlp-traces-a";
        backlogs
            .reserve(topic, &tenant, 900 << 10)
            .expect("under the share")
            .keep();
        let over = backlogs.reserve(topic, &tenant, 100 << 10);
        assert!(
            matches!(over, Err(BufferError::TenantFull { .. })),
            "{:?}",
            over.err()
        );
        // The broker says the backlog was drained: room again.
        backlogs.observed(topic, 0);
        backlogs
            .reserve(topic, &tenant, 900 << 10)
            .expect("drained")
            .keep();
        // The broker cannot be asked: appends since the last reading are not held against it.
        backlogs.unreadable(topic);
        backlogs
            .reserve(topic, &tenant, 900 << 10)
            .expect("unverified appends forgotten")
            .keep();
        // A publish that failed gives its room back.
        backlogs.observed(topic, 0);
        drop(backlogs.reserve(topic, &tenant, 900 << 10).expect("room"));
        backlogs
            .reserve(topic, &tenant, 900 << 10)
            .expect("given back")
            .keep();
    }
}
