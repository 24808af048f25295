//! Readiness of an idle Pulsar buffer (docs/contracts.md, "Health"): while no append has
//! started for a probe interval, the broker is asked where a topic of Sluice's namespace
//! lives (a lookup: it creates nothing). A failed or timed-out lookup counts as a failed
//! append for `/readyz`; a good one clears what failed appends left behind once they stopped.
//! With `{tenant}` in the namespace of the topic template there is no fixed namespace to ask
//! about, and only appends decide.

use std::sync::Arc;
use std::time::Duration;

use pulsar::error::ServiceDiscoveryError;
use pulsar::{Pulsar, TokioExecutor};
use tokio::sync::watch;

use crate::buffer::HealthTracker;
use crate::error::error_chain;

/// How long appends must have been quiet before a probe, and the time between probes.
const PROBE_INTERVAL: Duration = Duration::from_secs(2);
/// Longest a probe may take; a broker that does not answer by then is unreachable.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// The topic looked up, in the template's namespace. Never published to.
const PROBE_TOPIC: &str = "sluice-readiness-probe";

pub(super) fn spawn(
    client: Pulsar<TokioExecutor>,
    namespace: Option<String>,
    health: Arc<HealthTracker>,
    mut closed: watch::Receiver<bool>,
) {
    let Some(namespace) = namespace else {
        return;
    };
    let topic = format!("persistent://{namespace}/{PROBE_TOPIC}");
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = closed.wait_for(|c| *c) => return,
                _ = tokio::time::sleep(PROBE_INTERVAL) => {}
            }
            if !health.appends_idle_for(PROBE_INTERVAL) {
                continue;
            }
            // On a task of its own, never dropped halfway: a lookup may open a connection,
            // and one that pulsar-rs sees dropped leaves the broker "connecting" for good
            // (see `detached`), after which every probe timed out although the broker was
            // back. Past the timeout the lookup finishes in the background.
            let lookup = tokio::spawn({
                let (client, topic) = (client.clone(), topic.clone());
                async move { client.lookup_topic(&topic).await }
            });
            let outcome = match tokio::time::timeout(PROBE_TIMEOUT, lookup).await {
                // Any answer of the broker's, even a refusal of this topic, shows it is there.
                Ok(Ok(Ok(_)))
                | Ok(Ok(Err(pulsar::Error::ServiceDiscovery(
                    ServiceDiscoveryError::Query(..) | ServiceDiscoveryError::NotFound,
                )))) => Ok(()),
                Ok(Ok(Err(e))) => Err(format!(
                    "the broker did not answer a lookup: {}",
                    error_chain(&e)
                )),
                Ok(Err(join)) => Err(format!("the lookup task failed: {join}")),
                Err(_) => Err(format!(
                    "the broker did not answer a lookup within {PROBE_TIMEOUT:?}"
                )),
            };
            health.probed(outcome);
        }
    });
}
