//! From YAML text to a validated [`Config`]: each component's body is read by its kind's
//! registry, then the pipeline graph is checked.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::admin::AdminConfig;
use crate::buffer::{BufferConfig, BUFFERS};
use crate::config::{
    expand, mask, parse_component, ComponentId, ConfigError, FieldError, Registry,
};
use crate::exporter::{ExporterConfig, EXPORTERS};
use crate::processor::{ProcessorConfig, PROCESSORS};
use crate::receiver::{Receiver, RECEIVERS};
use crate::signal::Signal;
use crate::telemetry::config::TelemetryConfig;
use crate::tenant::overrides::Overrides;
use crate::tenant::TenancyConfig;

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub receivers: BTreeMap<ComponentId, Arc<dyn Receiver>>,
    pub processors: BTreeMap<ComponentId, Arc<dyn ProcessorConfig>>,
    pub buffers: BTreeMap<ComponentId, Arc<dyn BufferConfig>>,
    pub exporters: BTreeMap<ComponentId, Arc<dyn ExporterConfig>>,
    pub tenancy: TenancyConfig,
    pub pipelines: Vec<PipelineConfig>,
    pub telemetry: TelemetryConfig,
    /// `service.admin`: the admin API.
    pub admin: AdminConfig,
    /// The config as read (after `${env:…}` expansion) with credentials masked, for the admin
    /// API. Defaults are not filled in, as with the Collector's effective config.
    pub effective: serde_json::Value,
    /// Longest a graceful shutdown may take before in-flight work is abandoned (it stays in the
    /// buffer and is exported after the next start).
    pub shutdown_timeout: Duration,
    /// Each receiver's and buffer's YAML as read, so a reload can tell which changed.
    pub sections: RawSections,
}

/// Components' YAML as read (after expansion). Not printed: it may hold credentials.
#[derive(Clone, Default, PartialEq)]
pub struct RawSections {
    pub receivers: BTreeMap<String, serde_yaml::Value>,
    pub buffers: BTreeMap<String, serde_yaml::Value>,
}

impl std::fmt::Debug for RawSections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawSections")
            .field("receivers", &self.receivers.keys().collect::<Vec<_>>())
            .field("buffers", &self.buffers.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// One pipeline: receivers append to `buffer`; export workers read `buffer` and send to
/// `exporters`. Either side may be empty (ingest-only agent, export-only worker).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineConfig {
    pub id: ComponentId,
    pub signal: Signal,
    pub receivers: Vec<ComponentId>,
    pub processors: Vec<ComponentId>,
    pub buffer: ComponentId,
    pub exporters: Vec<ComponentId>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    receivers: BTreeMap<String, serde_yaml::Value>,
    #[serde(default)]
    processors: BTreeMap<String, serde_yaml::Value>,
    #[serde(default)]
    buffers: BTreeMap<String, serde_yaml::Value>,
    #[serde(default)]
    exporters: BTreeMap<String, serde_yaml::Value>,
    #[serde(default)]
    tenancy: Option<serde_yaml::Value>,
    service: RawService,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    #[serde(default)]
    pipelines: BTreeMap<String, RawPipeline>,
    #[serde(default)]
    telemetry: Option<serde_yaml::Value>,
    #[serde(default)]
    admin: Option<serde_yaml::Value>,
    /// Default 30s.
    #[serde(default = "default_shutdown_timeout", with = "humantime_serde")]
    shutdown_timeout: Duration,
}

fn default_shutdown_timeout() -> Duration {
    Duration::from_secs(30)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPipeline {
    #[serde(default)]
    receivers: Vec<String>,
    #[serde(default)]
    processors: Vec<String>,
    #[serde(default)]
    buffer: Option<String>,
    #[serde(default)]
    exporters: Vec<String>,
}

impl Config {
    /// Reads, expands (from the process environment) and validates a config file.
    pub fn load(path: &std::path::Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let mut config = Config::from_yaml(&text, |name| std::env::var(name).ok())?;
        if let Some(file) = &config.tenancy.overrides_file {
            config.tenancy = Overrides::read(file)
                .and_then(|o| o.apply(&config.tenancy))
                .map_err(|e| {
                    ConfigError::Invalid(vec![FieldError::new(
                        format!("tenancy.{}", e.field),
                        e.message,
                    )])
                })?;
        }
        config.check_tenant_buffer_caps()?;
        Ok(config)
    }

    /// `buffer_max_mib` (after the overrides file) is refused when a buffer in use cannot
    /// apply it: a tenant cap that is read and then ignored would fail the operator silently.
    fn check_tenant_buffer_caps(&self) -> Result<(), ConfigError> {
        let limits = &self.tenancy.limits;
        let capped = std::iter::once(("default".to_string(), &limits.default))
            .chain(
                limits
                    .tenants
                    .iter()
                    .map(|(tenant, l)| (format!("tenants.{tenant}"), l)),
            )
            .filter(|(_, l)| l.buffer_max_mib > 0)
            .map(|(path, _)| path)
            .collect::<Vec<_>>();
        let errors = self
            .used_buffers()
            .filter(|(_, buffer)| !buffer.applies_tenant_buffer_max_mib())
            .flat_map(|(id, _)| {
                capped.iter().map(move |path| {
                    FieldError::new(
                        format!("tenancy.limits.{path}.buffer_max_mib"),
                        format!(
                            "buffers.{id} cannot hold a tenant to a byte cap (only the disk and \
                             Pulsar buffers can); remove it, or bound the broker's streams or \
                             topics instead"
                        ),
                    )
                })
            })
            .collect::<Vec<_>>();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(errors))
        }
    }

    pub fn from_yaml(
        text: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let expanded = expand(text, env)?;
        // Parsing twice (as a tree here, typed below) keeps the masked view independent of
        // what the typed sections drop or default.
        let effective = serde_yaml::from_str::<serde_yaml::Value>(&expanded)
            .map(|tree| mask::masked(&tree))
            .unwrap_or(serde_json::Value::Null);
        let deserializer = serde_yaml::Deserializer::from_str(&expanded);
        let raw: RawConfig = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if path == "." {
                ConfigError::Yaml(inner.to_string())
            } else {
                ConfigError::Invalid(vec![FieldError::new(path, inner.to_string())])
            }
        })?;
        let sections = RawSections {
            receivers: raw.receivers.clone(),
            buffers: raw.buffers.clone(),
        };
        let mut config = Validator::default().run(raw)?;
        config.effective = effective;
        config.sections = sections;
        Ok(config)
    }

    /// Buffers that some pipeline uses, so unused ones are not opened.
    pub fn used_buffers(&self) -> impl Iterator<Item = (&ComponentId, &Arc<dyn BufferConfig>)> {
        self.buffers
            .iter()
            .filter(|(id, _)| self.pipelines.iter().any(|p| &p.buffer == *id))
    }
}

/// Collects every error instead of stopping at the first, so one run of `sluice validate`
/// shows all that is wrong.
#[derive(Default)]
struct Validator {
    errors: Vec<FieldError>,
    /// Components that are defined but invalid: their error is reported once, and references
    /// to them do not pile up "unknown component" errors on top.
    invalid: std::collections::BTreeSet<String>,
}

impl Validator {
    fn run(mut self, raw: RawConfig) -> Result<Config, ConfigError> {
        let receivers = self.components("receivers", raw.receivers, &RECEIVERS);
        let processors = self.components("processors", raw.processors, &PROCESSORS);
        let buffers = self.components("buffers", raw.buffers, &BUFFERS);
        let exporters = self.components("exporters", raw.exporters, &EXPORTERS);
        let tenancy = self.section("tenancy", raw.tenancy, TenancyConfig::validate);
        let telemetry = self.section(
            "service.telemetry",
            raw.service.telemetry,
            TelemetryConfig::validate,
        );
        let admin = self.section("service.admin", raw.service.admin, AdminConfig::validate);

        let mut pipelines = Vec::new();
        for (key, p) in raw.service.pipelines {
            if let Some(p) = self.pipeline(&key, p, &receivers, &processors, &buffers, &exporters) {
                pipelines.push(p);
            }
        }
        self.check_graph(&pipelines);
        if pipelines.is_empty() && self.errors.is_empty() {
            self.error(
                "service.pipelines",
                "define at least one pipeline (traces, metrics or logs)",
            );
        }
        if !self.errors.is_empty() {
            return Err(ConfigError::Invalid(self.errors));
        }
        Ok(Config {
            receivers,
            processors,
            buffers,
            exporters,
            tenancy: tenancy.unwrap_or_default(),
            pipelines,
            telemetry: telemetry.unwrap_or_default(),
            admin: admin.unwrap_or_default(),
            effective: serde_json::Value::Null,
            sections: RawSections::default(),
            shutdown_timeout: raw.service.shutdown_timeout,
        })
    }

    fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError::new(path, message));
    }

    fn nested(&mut self, prefix: &str, e: FieldError) {
        let path = if e.field.is_empty() {
            prefix.to_string()
        } else {
            format!("{prefix}.{}", e.field)
        };
        self.error(path, e.message);
    }

    fn components<T>(
        &mut self,
        section: &str,
        raw: BTreeMap<String, serde_yaml::Value>,
        registry: &Registry<T>,
    ) -> BTreeMap<ComponentId, T> {
        let mut out = BTreeMap::new();
        for (key, value) in raw {
            let path = format!("{section}.{key}");
            let id = match ComponentId::parse(&key) {
                Ok(id) => id,
                Err(message) => {
                    self.error(path, message);
                    continue;
                }
            };
            match registry.parse(id.kind(), value) {
                Ok(c) => {
                    out.insert(id, c);
                }
                Err(e) => {
                    self.invalid.insert(format!("{section}.{id}"));
                    self.nested(&path, e);
                }
            }
        }
        out
    }

    fn section<T: serde::de::DeserializeOwned>(
        &mut self,
        path: &str,
        raw: Option<serde_yaml::Value>,
        validate: fn(&T) -> Result<(), FieldError>,
    ) -> Option<T> {
        let raw = raw?;
        match parse_component::<T>(raw).and_then(|c| validate(&c).map(|()| c)) {
            Ok(c) => Some(c),
            Err(e) => {
                self.nested(path, e);
                None
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn pipeline(
        &mut self,
        key: &str,
        raw: RawPipeline,
        receivers: &BTreeMap<ComponentId, Arc<dyn Receiver>>,
        processors: &BTreeMap<ComponentId, Arc<dyn ProcessorConfig>>,
        buffers: &BTreeMap<ComponentId, Arc<dyn BufferConfig>>,
        exporters: &BTreeMap<ComponentId, Arc<dyn ExporterConfig>>,
    ) -> Option<PipelineConfig> {
        let path = format!("service.pipelines.{key}");
        let id = match ComponentId::parse(key) {
            Ok(id) => id,
            Err(message) => {
                self.error(path, message);
                return None;
            }
        };
        let signal = match id.kind().parse::<Signal>() {
            Ok(s) => s,
            Err(e) => {
                self.error(path, format!("pipeline id must start with its signal: {e}"));
                return None;
            }
        };
        let receivers = self.references(&path, "receivers", "receiver", &raw.receivers, receivers);
        let processor_configs = processors;
        let processors = self.references(
            &path,
            "processors",
            "processor",
            &raw.processors,
            processor_configs,
        );
        let exporters = self.references(&path, "exporters", "exporter", &raw.exporters, exporters);
        let buffer = match raw.buffer {
            Some(name) => self
                .references(
                    &path,
                    "buffer",
                    "buffer",
                    std::slice::from_ref(&name),
                    buffers,
                )
                .into_iter()
                .next(),
            None if buffers.len() == 1 => buffers.keys().next().cloned(),
            None if self.invalid.iter().any(|k| k.starts_with("buffers.")) => None,
            None => {
                self.error(
                    format!("{path}.buffer"),
                    format!(
                        "required: name one of the configured buffers ({})",
                        names(buffers)
                    ),
                );
                None
            }
        };
        for (i, name) in raw.processors.iter().enumerate() {
            let config = ComponentId::parse(name)
                .ok()
                .and_then(|id| processor_configs.get(&id));
            if config.is_some_and(|c| !c.supports(signal)) {
                self.error(
                    format!("{path}.processors[{i}]"),
                    format!("{name} does not process {signal}"),
                );
            }
        }
        // Judged on the names given, so an invalid receiver does not add this error too.
        if raw.receivers.is_empty() {
            if let Some(i) = processors
                .iter()
                .position(|id| id.kind() == "memory_limiter")
            {
                self.error(
                    format!("{path}.processors[{i}]"),
                    "memory_limiter refuses data at ingest, and this pipeline has no receivers",
                );
            }
        }
        if receivers.is_empty()
            && exporters.is_empty()
            && raw.receivers.is_empty()
            && raw.exporters.is_empty()
        {
            self.error(
                path.clone(),
                "a pipeline needs receivers, exporters or both",
            );
        }
        Some(PipelineConfig {
            id,
            signal,
            receivers,
            processors,
            buffer: buffer?,
            exporters,
        })
    }

    fn references<T>(
        &mut self,
        path: &str,
        field: &str,
        what: &str,
        names_given: &[String],
        defined: &BTreeMap<ComponentId, T>,
    ) -> Vec<ComponentId> {
        let mut out = Vec::new();
        for (i, name) in names_given.iter().enumerate() {
            let at = if field == "buffer" {
                format!("{path}.{field}")
            } else {
                format!("{path}.{field}[{i}]")
            };
            let section = if field == "buffer" { "buffers" } else { field };
            match ComponentId::parse(name) {
                Ok(id) if defined.contains_key(&id) => out.push(id),
                Ok(id) if self.invalid.contains(&format!("{section}.{id}")) => {}
                Ok(_) => self.error(
                    at,
                    format!("unknown {what} {name:?} (defined: {})", names(defined)),
                ),
                Err(message) => self.error(at, message),
            }
        }
        out
    }

    /// Rules that span pipelines: each buffer stream has one consumer, and a receiver feeds at
    /// most one pipeline per signal.
    fn check_graph(&mut self, pipelines: &[PipelineConfig]) {
        for (i, p) in pipelines.iter().enumerate() {
            for q in &pipelines[..i] {
                if p.signal != q.signal {
                    continue;
                }
                if p.buffer == q.buffer && !p.exporters.is_empty() && !q.exporters.is_empty() {
                    self.error(
                        format!("service.pipelines.{}.exporters", p.id),
                        format!(
                            "pipeline {} already exports {} from buffer {}; list all exporters in one pipeline",
                            q.id, p.signal, p.buffer
                        ),
                    );
                }
                if let Some(r) = p.receivers.iter().find(|r| q.receivers.contains(r)) {
                    self.error(
                        format!("service.pipelines.{}.receivers", p.id),
                        format!(
                            "receiver {r} already feeds pipeline {} of the same signal",
                            q.id
                        ),
                    );
                }
            }
        }
    }
}

fn names<T>(defined: &BTreeMap<ComponentId, T>) -> String {
    if defined.is_empty() {
        return "none".into();
    }
    defined
        .keys()
        .map(|k| k.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests;
