//! `partitions` and `tenant_partitions`: a tenant's topic as a Pulsar partitioned topic
//! (docs/contracts.md, "Pulsar message format").
//!
//! A plain topic is served by one broker, which bounds one tenant's throughput; a partitioned
//! topic is several topics (`…-partition-0`, `…-partition-1`, …) the cluster can spread over
//! its brokers. The topic has to be made partitioned through the admin API before anything
//! publishes to it: the broker's automatic topic creation makes plain topics, and a plain
//! topic cannot become partitioned later.
//!
//! Publishing spreads a tenant's messages over the partitions in turn (the client's
//! round-robin routing: no routing policy is set, so the tenant key does not pin a
//! partition); an export stream reads every partition through one consumer, and messages
//! are acknowledged on the partition they came from.

use std::collections::BTreeMap;

use super::admin::{AdminClient, AdminError};
use super::config::PulsarBufferConfig;
use crate::config::FieldError;
use crate::tenant::TenantId;

impl PulsarBufferConfig {
    /// How many partitions `tenant`'s topics should have; 1 is a plain topic.
    pub(super) fn partitions_of(&self, tenant: &TenantId) -> u32 {
        self.tenant_partitions
            .get(tenant.as_str())
            .copied()
            .unwrap_or(self.partitions)
    }
}

pub(super) fn validate(default: u32, tenants: &BTreeMap<String, u32>) -> Result<(), FieldError> {
    if default < 1 {
        return Err(FieldError::new("partitions", "must be at least 1"));
    }
    for (tenant, &count) in tenants {
        let field = || format!("tenant_partitions.{tenant}");
        TenantId::parse(tenant).map_err(|e| FieldError::new(field(), e.to_string()))?;
        if count < 1 {
            return Err(FieldError::new(field(), "must be at least 1"));
        }
    }
    Ok(())
}

/// Makes `topic` a partitioned topic of at least `wanted` partitions: created when missing,
/// grown when it has fewer. A plain topic of that name stays plain (logged). Both sides call
/// it before they first touch a topic (publishing, subscribing), since either would create
/// it plain; several processes may race to do it, so each checks what the broker holds after
/// a refusal.
pub(super) async fn ensure(
    admin: &AdminClient,
    topic: &str,
    wanted: u32,
) -> Result<(), AdminError> {
    let mut have = admin.partitions(topic).await?;
    if have == 0 {
        match admin.create_partitioned(topic, wanted).await {
            Ok(()) => {
                tracing::info!(%topic, partitions = wanted, "created the partitioned Pulsar topic");
                return Ok(());
            }
            Err(AdminError::Status { status, .. }) if status == reqwest::StatusCode::CONFLICT => {
                have = admin.partitions(topic).await?;
                if have == 0 {
                    tracing::warn!(%topic, partitions = wanted, "the topic exists as a plain topic, which Pulsar cannot partition; using it as it is");
                    return Ok(());
                }
            }
            Err(e) => return Err(e),
        }
    }
    if have >= wanted {
        return Ok(());
    }
    if let Err(e) = admin.grow_partitions(topic, wanted).await {
        // Another process may have grown it meanwhile.
        if admin.partitions(topic).await? < wanted {
            return Err(e);
        }
    }
    tracing::info!(%topic, from = have, to = wanted, "grew the partitioned Pulsar topic");
    Ok(())
}

/// The partitions a topic should have, until it is known to have them: what the producer's
/// topic task and the export stream each do once, before they first touch the topic.
pub(super) struct Unsettled(Option<u32>);

impl Unsettled {
    /// `wanted` partitions; 1 is a plain topic, which needs nothing.
    pub(super) fn new(wanted: u32) -> Unsettled {
        Unsettled(Some(wanted).filter(|&n| n > 1))
    }

    /// Runs [`ensure`] unless it already succeeded.
    pub(super) async fn settle(
        &mut self,
        admin: &AdminClient,
        topic: &str,
    ) -> Result<(), AdminError> {
        if let Some(wanted) = self.0 {
            ensure(admin, topic, wanted).await?;
            self.0 = None;
        }
        Ok(())
    }
}
