//! Component ids: `type` or `type/name`, as in the OpenTelemetry Collector.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ComponentId {
    kind: String,
    name: Option<String>,
}

impl ComponentId {
    pub fn parse(raw: &str) -> Result<ComponentId, String> {
        let (kind, name) = match raw.split_once('/') {
            Some((kind, name)) => (kind, Some(name)),
            None => (raw, None),
        };
        let kind_ok =
            !kind.is_empty() && kind.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !kind_ok {
            return Err(format!(
                "invalid component id {raw:?}: the type must be letters, digits or '_'"
            ));
        }
        if let Some(name) = name {
            let name_ok = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
            if !name_ok {
                return Err(format!(
                    "invalid component id {raw:?}: the name after '/' must be letters, digits, '_', '-' or '.'"
                ));
            }
        }
        Ok(ComponentId {
            kind: kind.to_string(),
            name: name.map(str::to_string),
        })
    }

    /// The type part, which selects the implementation (`otlp` in `otlp/tempo`).
    pub fn kind(&self) -> &str {
        &self.kind
    }
}

impl fmt::Display for ComponentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => write!(f, "{}/{}", self.kind, name),
            None => f.write_str(&self.kind),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_type_and_name() {
        let id = ComponentId::parse("otlp/tempo-eu").unwrap();
        assert_eq!(
            (id.kind(), id.to_string().as_str()),
            ("otlp", "otlp/tempo-eu")
        );
        assert_eq!(ComponentId::parse("debug").unwrap().to_string(), "debug");
        for bad in ["", "/x", "otlp/", "ot lp", "otlp/a/b"] {
            assert!(ComponentId::parse(bad).is_err(), "{bad}");
        }
    }
}
