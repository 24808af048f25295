use opentelemetry_proto::tonic::common::v1::KeyValue;
use prost::Message;

use super::*;
use crate::processor::on_wire::EncodedAttributes;
use crate::signal::Signal;

fn s(v: &str) -> any_value::Value {
    any_value::Value::StringValue(v.into())
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn actions(yaml: &str) -> Vec<Action> {
    let configs: Vec<ActionConfig> = serde_yaml::from_str(yaml).unwrap();
    compile_all(&configs, "actions").unwrap()
}

/// Applies the actions to the decoded list and, as the `attributes` processor does on the
/// wire, to the same list encoded as a span's attributes; both must give the same list.
fn run(yaml: &str, mut attrs: Vec<KeyValue>) -> Vec<(String, any_value::Value)> {
    const ATTRIBUTES: u32 = 9;
    let mut item = Vec::new();
    for kv in &attrs {
        prost::encoding::message::encode(ATTRIBUTES, kv, &mut item);
    }
    let mut encoded = EncodedAttributes::read(&item, ATTRIBUTES, Signal::Traces).unwrap();
    for a in actions(yaml) {
        let changed = a.apply(&mut attrs);
        assert_eq!(a.apply(&mut encoded), changed, "{a:?}");
    }
    encoded.check().unwrap();
    let mut written = Vec::new();
    encoded.write(ATTRIBUTES, &mut written);
    let span = opentelemetry_proto::tonic::trace::v1::Span::decode(&written[..]).unwrap();
    assert_eq!(span.attributes, attrs, "{yaml}");
    attrs
        .into_iter()
        .map(|kv| (kv.key, kv.value.unwrap().value.unwrap()))
        .collect()
}

fn pairs(list: &[(&str, any_value::Value)]) -> Vec<(String, any_value::Value)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

#[test]
fn insert_update_upsert_as_the_collector_documents() {
    // The attributes processor README's first example, in order.
    let yaml = r#"
- { key: environment, value: production, action: insert }
- { key: db.statement, action: delete }
- { key: email, action: hash }
"#;
    let out = run(
        yaml,
        vec![
            kv("db.statement", s("SELECT 1")),
            kv("email", s("a@b.c")),
            kv("environment", s("dev")),
        ],
    );
    let hashed = hash(&s("a@b.c"));
    assert_eq!(
        out,
        pairs(&[("email", s(&hashed)), ("environment", s("dev"))]),
        "insert never overwrites"
    );

    let out = run(
        "- { key: region, value: eu, action: update }\n- { key: zone, value: 7, action: upsert }",
        vec![kv("zone", s("old"))],
    );
    assert_eq!(
        out,
        pairs(&[("zone", any_value::Value::IntValue(7))]),
        "update needs the key; upsert sets it either way"
    );
    let out = run(
        "- { key: copy, from_attribute: orig, action: upsert }\n- { key: other, from_attribute: missing, action: insert }",
        vec![kv("orig", any_value::Value::BoolValue(true))],
    );
    assert_eq!(
        out,
        pairs(&[
            ("orig", any_value::Value::BoolValue(true)),
            ("copy", any_value::Value::BoolValue(true))
        ]),
        "a missing source attribute does nothing"
    );
}

#[test]
fn hash_is_the_collectors_sha256_of_the_value_bytes() {
    // sha256("hello")
    assert_eq!(
        hash(&s("hello")),
        "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    );
    // An int hashes its 8 little-endian bytes, a bool one byte.
    assert_eq!(
        hash(&any_value::Value::IntValue(1)),
        "7c9fa136d4413fa6173637e883b6998d32e1d675f88cddff9dcbcf331820f4b8"
    );
    assert_eq!(
        hash(&any_value::Value::BoolValue(true)),
        "4bf5122f344554c53bde2ebb8cd2b7e3d1600ad631c385a5d7cce23c7785459a"
    );
    // Nothing to hash hashes to nothing, as in the Collector.
    assert_eq!(hash(&s("")), "");
    // By pattern over keys.
    let out = run(
        "- { pattern: '^user\\.', action: hash }",
        vec![kv("user.email", s("hello")), kv("keep", s("x"))],
    );
    assert_eq!(out[0].1, s(&hash(&s("hello"))));
    assert_eq!(out[1].1, s("x"));
}

#[test]
fn extract_convert_and_delete_by_pattern() {
    // The README's extract example: named groups become attributes. (Its `(\?|\&)` is
    // written non-capturing here: the Collector, like Sluice, refuses unnamed groups.)
    let out = run(
        r#"- { key: http.url, pattern: '^(?P<http_protocol>.*):\/\/(?P<http_domain>.*)\/(?P<http_path>.*)(?:\?|\&)(?P<http_search_params>.*)', action: extract }"#,
        vec![kv(
            "http.url",
            s("http://example.com/path?queryParam1=value1"),
        )],
    );
    assert_eq!(
        out,
        pairs(&[
            ("http.url", s("http://example.com/path?queryParam1=value1")),
            ("http_protocol", s("http")),
            ("http_domain", s("example.com")),
            ("http_path", s("path")),
            ("http_search_params", s("queryParam1=value1")),
        ])
    );
    let out = run(
        "- { key: n, action: convert, converted_type: int }\n- { key: bad, action: convert, converted_type: double }\n- { key: f, action: convert, converted_type: string }",
        vec![
            kv("n", s("42")),
            kv("bad", s("x")),
            kv("f", any_value::Value::DoubleValue(1.5)),
        ],
    );
    assert_eq!(
        out,
        pairs(&[
            ("n", any_value::Value::IntValue(42)),
            ("bad", s("x")),
            ("f", s("1.5"))
        ])
    );
    let out = run(
        "- { pattern: '^tmp_', action: delete }",
        vec![kv("tmp_a", s("1")), kv("keep", s("2")), kv("tmp_b", s("3"))],
    );
    assert_eq!(out, pairs(&[("keep", s("2"))]));
}

#[test]
fn invalid_actions_name_their_field() {
    let err = |yaml: &str| {
        let configs: Vec<ActionConfig> = serde_yaml::from_str(yaml).unwrap();
        compile_all(&configs, "actions").unwrap_err()
    };
    assert_eq!(
        err("- { key: k, action: insert }").field,
        "actions[0].value"
    );
    assert_eq!(
        err("- { key: k, value: 1, from_attribute: a, action: upsert }").field,
        "actions[0].value"
    );
    assert_eq!(
        err("- { key: k, action: extract }").field,
        "actions[0].pattern"
    );
    assert_eq!(
        err("- { key: k, action: extract, pattern: '(a)' }").message,
        "every group must be named"
    );
    assert_eq!(
        err("- { key: k, action: convert }").field,
        "actions[0].converted_type"
    );
    assert_eq!(
        err("- { key: k, action: rename }").field,
        "actions[0].action"
    );
    assert_eq!(
        err("- { key: k, action: insert, from_context: metadata.x }").field,
        "actions[0].from_context"
    );
    assert_eq!(err("- { action: delete }").field, "actions[0].key");
    assert_eq!(err("[]").field, "actions");
}
