//! Configuration of the embedded disk buffer. The doc comments on the fields are the user
//! reference.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::config::{FieldError, Validate};

const MIB: u64 = 1024 * 1024;

/// The embedded disk buffer: one append-only segmented log per tenant and signal, under
/// `{directory}/{signal}/{tenant}/`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskBufferConfig {
    /// Directory holding all logs, created if missing. Each tenant+signal log lives in
    /// `{directory}/{signal}/{tenant}/`, next to its `cursor` file and its `dead-letter/` log.
    /// Default: `./data`.
    #[serde(default = "default_directory")]
    pub directory: PathBuf,

    /// When an append is acknowledged to the client.
    /// `always` (default): after the record is fsynced; concurrent appends to the same log
    /// share one fsync (group commit). `interval`: as soon as the record has been written to
    /// the operating system, so a killed process (even SIGKILL) loses nothing, and the log is
    /// fsynced every `fsync_interval`; only an OS crash or power loss can lose the appends of
    /// the last interval.
    #[serde(default)]
    pub fsync: FsyncPolicy,

    /// How often the logs are fsynced when `fsync: interval`, e.g. `1s` or `200ms`.
    /// Default: `1s`.
    #[serde(default = "default_fsync_interval", with = "humantime_serde")]
    pub fsync_interval: Duration,

    /// Size of one segment file, in MiB. A record that would take the active segment past this
    /// size goes into a new segment; a record larger than a whole segment gets a segment of its
    /// own. Only whole segments are deleted once they are acknowledged, so smaller segments free
    /// disk space sooner. Default: `64`.
    #[serde(default = "default_segment_size_mib")]
    pub segment_size_mib: u64,

    /// Cap on the total size, in MiB, of the segment files of all tenants' and signals' logs
    /// (dead-letter logs are not counted: they are kept until an operator removes them). An
    /// append that would pass the cap is refused with "buffer full" and a retry hint, so
    /// clients back off instead of losing data. Default: `2048`.
    #[serde(default = "default_max_size_mib")]
    pub max_size_mib: u64,

    /// Share of `max_size_mib`, in percent, kept for tenants that hold less than their fair
    /// share, so one tenant whose backend refuses everything cannot take the room the others
    /// need. A tenant's fair share is `max_size_mib × (100 − tenant_headroom_percent) % / n`
    /// for `n` tenants holding data; a tenant at or over it is refused alone
    /// (`RESOURCE_EXHAUSTED` / HTTP 429, reason `tenant_buffer_full`) once the buffer is that
    /// full. `0` turns fair sharing off: one cap, first come first served. Default: `10`.
    #[serde(default = "default_tenant_headroom_percent")]
    pub tenant_headroom_percent: u8,

    /// Caps on each tenant+signal's dead letters (`<log>/dead-letter/`), so a tenant whose
    /// backend refuses everything cannot fill the disk. The oldest are removed first, and
    /// every removal is counted in `sluice_dead_letters_expired_items_total{reason}`.
    #[serde(default)]
    pub dead_letter: DeadLetterConfig,

    /// Keeps each tenant+signal's acknowledged data for `sluice replay` instead of deleting it
    /// once exported. Off by default. Kept data is outside `max_size_mib`: it never makes the
    /// buffer refuse live data; its own caps bound it.
    #[serde(default)]
    pub retention: RetentionConfig,

    /// Most log files the writers keep open at once, across all tenants; past it, the files
    /// of idle logs are closed to open others (reopened on demand). `0`: half of the
    /// process's open-files limit. Default: `0`.
    #[serde(default)]
    pub max_open_files: usize,

    /// How long clients are told to wait before retrying when the buffer is full (gRPC
    /// `RetryInfo`, HTTP `Retry-After`), e.g. `1s`. Default: `1s`.
    #[serde(default = "default_retry_after", with = "humantime_serde")]
    pub retry_after: Duration,
}

/// `dead_letter`: size and age caps of each tenant+signal's dead-letter log.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct DeadLetterConfig {
    /// Most dead letters of one tenant and signal, in MiB; past it the oldest are removed.
    /// `0`: no size cap. Default: `256`.
    pub max_mib: u64,
    /// Dead letters older than this are removed, e.g. `168h` (the default, a week).
    /// `0`: kept until the size cap removes them.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
}

impl Default for DeadLetterConfig {
    fn default() -> Self {
        DeadLetterConfig {
            max_mib: 256,
            max_age: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

impl DeadLetterConfig {
    pub(super) fn caps(&self) -> LogCaps {
        LogCaps::new(self.max_age, self.max_mib)
    }
}

/// `retention`: how long and how much acknowledged data of each tenant+signal is kept in its
/// log's `retained/` directory, whole segments at a time.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Acknowledged segments whose last record is older than this are deleted, e.g. `24h`.
    /// `0` (the default): no age cap.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// Most acknowledged data kept per tenant and signal, in MiB; past it the oldest goes.
    /// `0` (the default): no size cap. Retention is on when either cap is set.
    pub max_mib: u64,
}

impl RetentionConfig {
    pub(super) fn enabled(&self) -> bool {
        !self.max_age.is_zero() || self.max_mib > 0
    }

    pub(super) fn caps(&self) -> LogCaps {
        LogCaps::new(self.max_age, self.max_mib)
    }
}

/// Age and size caps on a log that is only ever trimmed from its oldest end (dead letters,
/// retained data), as [`super::segment::over_caps`] applies them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct LogCaps {
    pub max_age: Option<Duration>,
    pub max_bytes: Option<u64>,
}

impl LogCaps {
    /// `0` in either turns that cap off.
    fn new(max_age: Duration, max_mib: u64) -> LogCaps {
        LogCaps {
            max_age: (!max_age.is_zero()).then_some(max_age),
            max_bytes: (max_mib > 0).then(|| max_mib.saturating_mul(MIB)),
        }
    }

    /// How often logs no longer written to are checked: a tenth of the age cap, between 1 s
    /// and a minute; a minute for a size cap alone.
    pub(super) fn sweep_interval(&self) -> Option<Duration> {
        match (self.max_age, self.max_bytes) {
            (Some(age), _) => {
                Some((age / 10).clamp(Duration::from_secs(1), Duration::from_secs(60)))
            }
            (None, Some(_)) => Some(Duration::from_secs(60)),
            (None, None) => None,
        }
    }
}

/// When appended records are made durable. See [`DiskBufferConfig::fsync`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    /// Fsync before acknowledging each append (group commit).
    #[default]
    Always,
    /// Write to the OS before acknowledging; fsync every `fsync_interval`.
    Interval,
}

impl Default for DiskBufferConfig {
    fn default() -> Self {
        DiskBufferConfig {
            directory: default_directory(),
            fsync: FsyncPolicy::default(),
            fsync_interval: default_fsync_interval(),
            segment_size_mib: default_segment_size_mib(),
            max_size_mib: default_max_size_mib(),
            retry_after: default_retry_after(),
            tenant_headroom_percent: default_tenant_headroom_percent(),
            dead_letter: DeadLetterConfig::default(),
            retention: RetentionConfig::default(),
            max_open_files: 0,
        }
    }
}

impl Validate for DiskBufferConfig {
    /// Checks the values without touching the disk.
    fn validate(&self) -> Result<(), FieldError> {
        if self.directory.as_os_str().is_empty() {
            return Err(FieldError::new("directory", "must not be empty"));
        }
        if self.segment_size_mib == 0 {
            return Err(FieldError::new("segment_size_mib", "must be at least 1"));
        }
        if self.segment_size_mib > 4096 {
            return Err(FieldError::new(
                "segment_size_mib",
                "must be at most 4096 (4 GiB)",
            ));
        }
        if self.max_size_mib == 0 {
            return Err(FieldError::new("max_size_mib", "must be at least 1"));
        }
        if self.max_size_mib.checked_mul(MIB).is_none() {
            return Err(FieldError::new("max_size_mib", "is too large"));
        }
        if self.max_size_mib < self.segment_size_mib {
            return Err(FieldError::new(
                "max_size_mib",
                format!(
                    "must be at least segment_size_mib ({}), or no segment could ever fill",
                    self.segment_size_mib
                ),
            ));
        }
        if self.tenant_headroom_percent > 50 {
            return Err(FieldError::new(
                "tenant_headroom_percent",
                "must be between 0 and 50",
            ));
        }
        if self.fsync == FsyncPolicy::Interval && self.fsync_interval.is_zero() {
            return Err(FieldError::new(
                "fsync_interval",
                "must be greater than 0 with `fsync: interval` (use `fsync: always` to fsync every append)",
            ));
        }
        Ok(())
    }
}

impl DiskBufferConfig {
    pub(super) fn segment_size_bytes(&self) -> u64 {
        self.segment_size_mib.saturating_mul(MIB)
    }

    pub(super) fn max_size_bytes(&self) -> u64 {
        self.max_size_mib.saturating_mul(MIB)
    }
}

fn default_directory() -> PathBuf {
    PathBuf::from("./data")
}

fn default_fsync_interval() -> Duration {
    Duration::from_secs(1)
}

fn default_segment_size_mib() -> u64 {
    64
}

fn default_max_size_mib() -> u64 {
    2048
}

fn default_tenant_headroom_percent() -> u8 {
    10
}

fn default_retry_after() -> Duration {
    Duration::from_secs(1)
}
