//! The W3C `tracestate` of a span and its OpenTelemetry (`ot=`) entry, parsed and written back
//! the way the Collector's `pkg/sampling` does, so a sampled span leaves Sluice with the same
//! tracestate it would leave the Collector with: the `ot` entry first, `rv` and `th` first
//! within it, other entries in their order.

use std::sync::LazyLock;

use regex::Regex;

use super::sampling::{Randomness, Threshold};

/// The W3C grammar (keys, values, optional whitespace, empty members allowed).
static W3C_TRACESTATE: LazyLock<Regex> = LazyLock::new(|| {
    let simple_key = r"[a-z][a-z0-9\-*/_]*";
    let multi_tenant_key = r"[a-z0-9][a-z0-9\-*/_]*@[a-z][a-z0-9\-*/_]*";
    let key = format!("(?:(?:{simple_key})|(?:{multi_tenant_key}))");
    let value = r"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]";
    let member = format!("(?:{key}={value})?");
    let ows_member = format!("(?:[ \t]*{member}[ \t]*)");
    Regex::new(&format!("^{ows_member}(?:,{ows_member})*$")).expect("valid regex")
});

/// The grammar of the `ot` entry's value: `key:value` pairs separated by `;`.
static OTEL_TRACESTATE: LazyLock<Regex> = LazyLock::new(|| {
    let member = r"(?:[a-z][a-z0-9]*:[a-zA-Z0-9._\-]*)";
    Regex::new(&format!("^{member}(?:;{member})*$")).expect("valid regex")
});

const MAX_W3C_LENGTH: usize = 1024;
/// The Collector stops at this many members (it counts up to, not including, the 32nd).
const MAX_W3C_MEMBERS: usize = 32;
const MAX_KEY_LENGTH: usize = 256;
const MAX_TENANT_LENGTH: usize = 241;
const MAX_SYSTEM_LENGTH: usize = 14;
const MAX_OTEL_LENGTH: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TraceStateError {
    #[error("invalid tracestate size")]
    Size,
    #[error("invalid tracestate syntax")]
    Syntax,
    #[error("invalid sampling value in the ot entry")]
    Value,
}

/// The `ot` entry.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OtelTraceState {
    randomness: Option<Randomness>,
    /// The threshold and its text as received (a received `th` is written back unchanged).
    threshold: Option<(Threshold, String)>,
    extra: Vec<(String, String)>,
}

impl OtelTraceState {
    fn parse(input: &str) -> (Self, Option<TraceStateError>) {
        let mut ot = OtelTraceState::default();
        if input.len() > MAX_OTEL_LENGTH {
            return (ot, Some(TraceStateError::Size));
        }
        if !OTEL_TRACESTATE.is_match(input) {
            return (ot, Some(TraceStateError::Syntax));
        }
        let mut error = None;
        for member in input.split(';') {
            let Some((key, value)) = member.split_once(':') else {
                continue;
            };
            match key {
                "rv" => match Randomness::from_rvalue(value) {
                    Ok(rnd) => ot.randomness = Some(rnd),
                    Err(_) => {
                        ot.randomness = None;
                        error = Some(TraceStateError::Value);
                    }
                },
                "th" => match Threshold::from_tvalue(value) {
                    Ok(th) => ot.threshold = Some((th, value.to_owned())),
                    Err(_) => {
                        ot.threshold = None;
                        error = Some(TraceStateError::Value);
                    }
                },
                _ => ot.extra.push((key.to_owned(), value.to_owned())),
            }
        }
        (ot, error)
    }

    pub fn randomness(&self) -> Option<Randomness> {
        self.randomness
    }

    pub fn threshold(&self) -> Option<Threshold> {
        self.threshold.as_ref().map(|(th, _)| *th)
    }

    pub fn set_randomness(&mut self, rnd: Randomness) {
        self.randomness = Some(rnd);
    }

    pub fn clear_threshold(&mut self) {
        self.threshold = None;
    }

    /// Records a sampling at `sampled`; refused when it would raise the probability already
    /// recorded (an adjusted count can only grow).
    pub fn update_threshold(&mut self, sampled: Threshold) -> Result<(), ()> {
        if matches!(self.threshold, Some((current, _)) if current > sampled) {
            return Err(());
        }
        // "Never" has no encoding: it leaves no threshold, as in the Collector.
        let text = sampled.tvalue();
        self.threshold = (!text.is_empty()).then_some((sampled, text));
        Ok(())
    }

    fn has_any_value(&self) -> bool {
        self.randomness.is_some() || self.threshold.is_some() || !self.extra.is_empty()
    }

    fn write(&self, out: &mut Vec<String>) {
        if let Some(rnd) = self.randomness {
            out.push(format!("rv:{}", rnd.rvalue()));
        }
        if let Some((_, text)) = &self.threshold {
            out.push(format!("th:{text}"));
        }
        out.extend(self.extra.iter().map(|(k, v)| format!("{k}:{v}")));
    }
}

/// A span's whole tracestate.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct W3cTraceState {
    pub otel: OtelTraceState,
    extra: Vec<(String, String)>,
}

impl W3cTraceState {
    /// Parses `input`. On an error the state parsed so far is returned with it, as the
    /// Collector does; callers decide whether to use it.
    pub fn parse(input: &str) -> (Self, Option<TraceStateError>) {
        let mut state = W3cTraceState::default();
        if input.len() > MAX_W3C_LENGTH {
            return (state, Some(TraceStateError::Size));
        }
        if !W3C_TRACESTATE.is_match(input) {
            return (state, Some(TraceStateError::Syntax));
        }
        let mut error = None;
        // A trailing separator ends the list; it does not start an empty member.
        let members = input.strip_suffix(',').unwrap_or(input);
        for (n, member) in members.split(',').enumerate() {
            if n + 1 >= MAX_W3C_MEMBERS {
                return (state, Some(TraceStateError::Size));
            }
            let member = member.trim_matches([' ', '\t']);
            let Some((key, value)) = member.split_once('=') else {
                continue;
            };
            if let Err(e) = check_key(key) {
                error = Some(e);
                continue;
            }
            if key == "ot" {
                let (otel, e) = OtelTraceState::parse(value);
                state.otel = otel;
                error = error.or(e);
            } else {
                state.extra.push((key.to_owned(), value.to_owned()));
            }
        }
        (state, error)
    }

    pub fn serialize(&self) -> String {
        let mut members = Vec::with_capacity(self.extra.len() + 1);
        if self.otel.has_any_value() {
            let mut ot = Vec::new();
            self.otel.write(&mut ot);
            members.push(format!("ot={}", ot.join(";")));
        }
        members.extend(self.extra.iter().map(|(k, v)| format!("{k}={v}")));
        members.join(",")
    }
}

fn check_key(key: &str) -> Result<(), TraceStateError> {
    if key.len() > MAX_KEY_LENGTH {
        return Err(TraceStateError::Size);
    }
    if let Some((tenant, system)) = key.split_once('@') {
        if tenant.len() > MAX_TENANT_LENGTH || system.len() > MAX_SYSTEM_LENGTH {
            return Err(TraceStateError::Size);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ot_entry_moves_first_with_rv_and_th_first() {
        let (mut state, err) = W3cTraceState::parse("vendor=x, ot=a:b;th:8 ,other=y");
        assert_eq!(err, None);
        assert_eq!(state.otel.threshold(), Threshold::from_tvalue("8").ok());
        state.otel.set_randomness(Randomness::ALL);
        assert_eq!(
            state.serialize(),
            "ot=rv:ffffffffffffff;th:8;a:b,vendor=x,other=y"
        );
    }

    #[test]
    fn empty_and_invalid_states() {
        assert_eq!(W3cTraceState::parse(""), (W3cTraceState::default(), None));
        assert_eq!(W3cTraceState::parse("").0.serialize(), "");
        assert_eq!(
            W3cTraceState::parse("Upper=1").1,
            Some(TraceStateError::Syntax)
        );
        assert_eq!(
            W3cTraceState::parse("ot=th:8/1").1,
            Some(TraceStateError::Syntax)
        );
        assert_eq!(
            W3cTraceState::parse("ot=rv:12").1,
            Some(TraceStateError::Value)
        );
        assert_eq!(
            W3cTraceState::parse("ot=th:xyz").1,
            Some(TraceStateError::Value)
        );
        let many = (0..32)
            .map(|i| format!("k{i}=v"))
            .collect::<Vec<_>>()
            .join(",");
        assert_eq!(W3cTraceState::parse(&many).1, Some(TraceStateError::Size));
    }

    #[test]
    fn a_sampling_may_only_lower_the_probability() {
        let (mut state, _) = W3cTraceState::parse("ot=th:c");
        assert!(state
            .otel
            .update_threshold(Threshold::from_tvalue("8").unwrap())
            .is_err());
        assert!(state
            .otel
            .update_threshold(Threshold::from_tvalue("e").unwrap())
            .is_ok());
        assert_eq!(state.serialize(), "ot=th:e");
    }
}
