//! The table of component types of one kind (receivers, processors, buffers, exporters).
//!
//! Each kind keeps one [`Registry`] in its own `registry.rs`: adding a component is its module
//! plus one [`Factory`] line there, and the "known: …" list in errors is read from the same
//! table, so it can never go stale (docs/architecture.md, "Components").

use serde::de::DeserializeOwned;

use super::{parse_component, FieldError};

/// A component config's own checks: pure, no I/O, so `sluice validate` runs anywhere.
pub trait Validate {
    fn validate(&self) -> Result<(), FieldError>;
}

/// Deserializes a component's config body and checks it.
pub fn parse_validated<C: DeserializeOwned + Validate>(
    value: serde_yaml::Value,
) -> Result<C, FieldError> {
    let config: C = parse_component(value)?;
    config.validate()?;
    Ok(config)
}

/// One component type: its name (`otlp` in `otlp/tempo`) and how its config body becomes a
/// `T`, the kind's common config type.
pub struct Factory<T> {
    pub type_name: &'static str,
    pub parse: fn(serde_yaml::Value) -> Result<T, FieldError>,
}

/// The [`Factory`] of a component type whose config struct implements its kind's trait:
/// `factory!("disk", DiskBufferConfig => dyn BufferConfig)` parses the body as a
/// `DiskBufferConfig`, validates it, and hands it on as an `Arc<dyn BufferConfig>`.
macro_rules! factory {
    ($type_name:literal, $config:ty => $kind:ty) => {
        $crate::config::Factory {
            type_name: $type_name,
            parse: |value| {
                let config = $crate::config::parse_validated::<$config>(value)?;
                Ok(std::sync::Arc::new(config) as std::sync::Arc<$kind>)
            },
        }
    };
}
pub(crate) use factory;

/// Every type of one kind of component.
pub struct Registry<T: 'static> {
    /// `receiver`, `processor`, `buffer` or `exporter`, for error messages.
    pub kind: &'static str,
    pub factories: &'static [Factory<T>],
}

impl<T> Registry<T> {
    /// Parses and validates the config body of a component of type `type_name`. Errors name
    /// the field inside the body.
    pub fn parse(&self, type_name: &str, value: serde_yaml::Value) -> Result<T, FieldError> {
        match self.factories.iter().find(|f| f.type_name == type_name) {
            Some(factory) => (factory.parse)(value),
            None => Err(FieldError::new(
                "",
                format!(
                    "unknown {} type {type_name:?}; known: {}",
                    self.kind,
                    self.known()
                ),
            )),
        }
    }

    /// The type names, in table order.
    pub fn known(&self) -> String {
        self.factories
            .iter()
            .map(|f| f.type_name)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        #[serde(default)]
        size: u32,
    }

    impl Validate for Sample {
        fn validate(&self) -> Result<(), FieldError> {
            if self.size > 10 {
                return Err(FieldError::new("size", "must be at most 10"));
            }
            Ok(())
        }
    }

    static SAMPLES: Registry<u32> = Registry {
        kind: "sample",
        factories: &[
            Factory {
                type_name: "one",
                parse: |v| parse_validated::<Sample>(v).map(|s| s.size),
            },
            Factory {
                type_name: "two",
                parse: |v| parse_validated::<Sample>(v).map(|s| s.size * 2),
            },
        ],
    };

    #[test]
    fn finds_the_factory_by_type_name() {
        let value: serde_yaml::Value = serde_yaml::from_str("size: 3").unwrap();
        assert_eq!(SAMPLES.parse("two", value), Ok(6));
        assert_eq!(SAMPLES.parse("one", serde_yaml::Value::Null), Ok(0));
    }

    #[test]
    fn unknown_types_list_the_table() {
        let err = SAMPLES.parse("three", serde_yaml::Value::Null).unwrap_err();
        assert_eq!(
            err.message,
            "unknown sample type \"three\"; known: one, two"
        );
    }

    #[test]
    fn validation_runs_after_parsing() {
        let value: serde_yaml::Value = serde_yaml::from_str("size: 11").unwrap();
        assert_eq!(
            SAMPLES.parse("one", value),
            Err(FieldError::new("size", "must be at most 10"))
        );
    }
}
