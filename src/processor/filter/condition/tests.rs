use std::collections::HashMap;

use super::*;

/// A span-like subject from a map of paths.
#[derive(Default)]
struct Item(HashMap<String, Value>);

impl Item {
    fn with(mut self, path: &str, v: Value) -> Self {
        self.0.insert(path.into(), v);
        self
    }
}

impl Subject for Item {
    fn get(&self, path: &Path) -> Value {
        let key = match path {
            Path::Name => "name".to_string(),
            Path::Kind => "kind".to_string(),
            Path::StatusCode => "status.code".to_string(),
            Path::SeverityNumber => "severity_number".to_string(),
            Path::SeverityText => "severity_text".to_string(),
            Path::Body => "body".to_string(),
            Path::Attribute(k) => format!("attributes.{k}"),
            Path::ResourceAttribute(k) => format!("resource.{k}"),
            Path::ScopeName => "scope.name".to_string(),
            Path::ScopeVersion => "scope.version".to_string(),
            Path::MetricName => "metric.name".to_string(),
        };
        self.0.get(&key).cloned().unwrap_or(Value::Nil)
    }
}

fn s(v: &str) -> Value {
    Value::Str(v.into())
}

fn eval(cond: &str, item: &Item) -> bool {
    Condition::parse(cond)
        .unwrap_or_else(|e| panic!("{cond}: {e}"))
        .eval(item)
}

#[test]
fn the_collectors_documented_conditions() {
    let health = Item::default()
        .with("name", s("GET /healthz"))
        .with("attributes.http.route", s("/healthz"))
        .with("kind", Value::Int(2))
        .with("resource.host.name", s("localhost"))
        .with("status.code", Value::Int(0));
    assert!(eval(r#"attributes["http.route"] == "/healthz""#, &health));
    assert!(eval(r#"IsMatch(name, ".*healthz$")"#, &health));
    assert!(eval(
        r#"resource.attributes["host.name"] == "localhost""#,
        &health
    ));
    assert!(eval("kind == SPAN_KIND_SERVER", &health));
    assert!(!eval("kind == SPAN_KIND_INTERNAL", &health));
    assert!(eval(r#"attributes["missing"] == nil"#, &health));
    assert!(!eval(r#"attributes["http.route"] == nil"#, &health));
    assert!(eval(
        r#"not (name == "a" or name == "b") and status.code != STATUS_CODE_ERROR"#,
        &health
    ));
}

#[test]
fn comparisons_of_numbers_and_mismatched_types() {
    let log = Item::default()
        .with("severity_number", Value::Int(9))
        .with("attributes.ratio", Value::Double(0.5))
        .with("body", s("hello"));
    assert!(eval("severity_number < SEVERITY_NUMBER_WARN", &log));
    assert!(eval("severity_number >= SEVERITY_NUMBER_INFO", &log));
    assert!(!eval("severity_number >= SEVERITY_NUMBER_INFO2", &log));
    assert!(eval(r#"attributes["ratio"] > 0"#, &log));
    assert!(eval(r#"attributes["ratio"] <= 0.5"#, &log));
    // A string and a number are never equal, nor ordered.
    assert!(!eval(r#"body == 1"#, &log));
    assert!(eval(r#"body != 1"#, &log));
    assert!(!eval(r#"body < 1"#, &log));
    assert_eq!(enum_value("SEVERITY_NUMBER_FATAL4"), Some(24));
    assert_eq!(enum_value("SEVERITY_NUMBER_TRACE"), Some(1));
}

#[test]
fn and_binds_tighter_than_or() {
    let item = Item::default().with("name", s("x"));
    assert!(eval(r#"name == "x" or name == "y" and name == "z""#, &item));
    assert!(!eval(
        r#"(name == "x" or name == "y") and name == "z""#,
        &item
    ));
}

#[test]
fn what_it_cannot_parse_is_an_error_not_ignored() {
    for (bad, why) in [
        (r#"name = "x""#, "unexpected character"),
        (r#"span.foo == 1"#, "unsupported path"),
        (r#"IsMatch(name)"#, "expected ','"),
        (r#"name == "x" and"#, "ends too early"),
        (r#"name == SPAN_KIND_NOPE"#, "unknown name"),
        (r#"name == "x" name"#, "after a complete condition"),
        (r#"IsMatch(name, "(")"#, "IsMatch pattern"),
        (r#"name == "open"#, "not closed"),
        (r#"attributes == "x""#, "unsupported path"),
    ] {
        let err = Condition::parse(bad).expect_err(bad);
        assert!(err.contains(why), "{bad}: {err}");
    }
}
