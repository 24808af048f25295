//! Config of what the Pulsar buffer keeps per tenant: `backlog:` (each tenant's share of the
//! backlog, read from the broker's admin API), `dead_letter:` (the dead-letter topics'
//! bounds) and `retention:` (acknowledged messages kept for replay). Apart from `config.rs`, which holds the rest of the buffer's keys.

use std::time::Duration;

use serde::Deserialize;

/// `dead_letter:` bounds of the dead-letter topics (the disk buffer's keys and defaults).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct DeadLetterRetention {
    /// Most dead letters one topic keeps, in MiB; the broker evicts the oldest beyond.
    /// `0`: no size limit. Default: `256`.
    pub max_mib: u64,
    /// Dead letters older than this are evicted by the broker. `0`: no age limit.
    /// Default: `168h`.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
}

impl Default for DeadLetterRetention {
    fn default() -> Self {
        DeadLetterRetention {
            max_mib: 256,
            max_age: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

impl DeadLetterRetention {
    /// The bounds to set: size in MiB and age in whole minutes (rounded up), `None` for no
    /// limit.
    pub(super) fn limits(&self) -> (Option<u64>, Option<u64>) {
        let minutes = self.max_age.as_secs().div_ceil(60);
        (
            (self.max_mib > 0).then_some(self.max_mib),
            (minutes > 0).then_some(minutes),
        )
    }
}

/// `retention:` acknowledged messages each tenant+signal topic keeps for `sluice replay`
/// (the disk buffer's keys). Sluice sets the retention policy of every topic it publishes
/// to, through the admin API, the first time it publishes to it. Off by default: then the
/// broker deletes what the export subscription acknowledged.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct PulsarRetention {
    /// Acknowledged messages are kept this long (whole minutes, rounded up), e.g. `24h`.
    /// `0` (the default): no age bound.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// Most acknowledged data kept per topic, in MiB. `0` (the default): no size bound. The
    /// broker refuses a size below the namespace's backlog quota. Retention is on when either
    /// bound is set.
    pub max_mib: u64,
}

impl PulsarRetention {
    pub(super) fn enabled(&self) -> bool {
        !self.max_age.is_zero() || self.max_mib > 0
    }

    /// The policy to set: minutes and MiB, `-1` for no bound.
    pub(super) fn policy(&self) -> (i64, i64) {
        let bound = |n: u64| {
            if n == 0 {
                -1
            } else {
                i64::try_from(n).unwrap_or(i64::MAX)
            }
        };
        (
            bound(self.max_age.as_secs().div_ceil(60)),
            bound(self.max_mib),
        )
    }
}

/// `backlog:` bounds on what the tenants keep in Pulsar, read from the broker's admin API
/// (docs/contracts.md, "Tenant isolation").
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BacklogConfig {
    /// Most backlog (bytes the export subscription has not acknowledged) of all tenants'
    /// topics together, in MiB; tenants share it as they share the disk buffer's
    /// `max_size_mib`. `0`: no bound (and no admin API requests). Default: `10240`.
    pub max_mib: u64,
    /// Share of `max_mib` kept for tenants under their fair share, in percent (at most 50).
    /// Default: `10`.
    pub tenant_headroom_percent: u8,
    /// The broker's admin REST API. Default: the `service_url`'s host on Pulsar's web port
    /// (`http://host:8080`, or `https://host:8443` for `pulsar+ssl://`).
    pub admin_url: Option<String>,
    /// How often the topics' backlogs are read. Default: `10s`.
    #[serde(with = "humantime_serde")]
    pub refresh_interval: Duration,
}

impl Default for BacklogConfig {
    fn default() -> Self {
        BacklogConfig {
            max_mib: 10240,
            tenant_headroom_percent: 10,
            admin_url: None,
            refresh_interval: Duration::from_secs(10),
        }
    }
}

impl BacklogConfig {
    /// `admin_url`, or the first host of `service_url` on Pulsar's web port.
    pub fn admin_url_for(&self, service_url: &str) -> String {
        if let Some(url) = &self.admin_url {
            return url.trim_end_matches('/').to_owned();
        }
        let (scheme, port, rest) = match service_url.strip_prefix("pulsar+ssl://") {
            Some(rest) => ("https", 8443, rest),
            None => (
                "http",
                8080,
                service_url.strip_prefix("pulsar://").unwrap_or(service_url),
            ),
        };
        let first = rest.split([',', '/']).next().unwrap_or_default();
        let host = match first.rsplit_once(':') {
            Some((host, _port)) => host,
            None => first,
        };
        format!("{scheme}://{host}:{port}")
    }
}
