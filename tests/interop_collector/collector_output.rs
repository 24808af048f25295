use super::*;

// =============================================================================================
// Reading the Collector's file exporter output
// =============================================================================================

/// The complete records of a `format: proto` file (4-byte big-endian length, then the
/// message); a record still being written is left for the next read.
pub(crate) fn read_proto_file<M: prost::Message + Default>(path: &Path) -> Vec<M> {
    let data = std::fs::read(path).unwrap_or_default();
    let mut out = Vec::new();
    let mut at = 0;
    while at + 4 <= data.len() {
        let len = u32::from_be_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        if at + 4 + len > data.len() {
            break;
        }
        let record = &data[at + 4..at + 4 + len];
        out.push(M::decode(record).unwrap_or_else(|e| {
            panic!(
                "{}: record at byte {at} is not valid protobuf: {e}",
                path.display()
            )
        }));
        at += 4 + len;
    }
    out
}

/// The complete lines of a `format: json` traces file, each parsed strictly (see
/// [`otlp_json`]) into the request it encodes.
pub(crate) fn read_json_traces(path: &Path) -> Vec<ExportTraceServiceRequest> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = match text.rfind('\n') {
        Some(end) => &text[..end],
        None => "",
    };
    complete
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(n, line)| {
            let value: Value = serde_json::from_str(line).unwrap_or_else(|e| {
                panic!("{} line {}: not JSON: {e}: {line}", path.display(), n + 1)
            });
            otlp_json::traces(&value)
        })
        .collect()
}

/// OTLP/JSON (as the Collector's pdata writes it) into the protobuf types, by hand and
/// strictly: a key this parser does not know is an error, so nothing the Collector wrote can
/// be skipped unnoticed. Independent of Sluice's own OTLP/JSON decoder on purpose.
mod otlp_json {
    use super::*;

    /// The object at `path`, checked to hold no other keys than `known`.
    pub(crate) fn object<'a>(v: &'a Value, path: &str, known: &[&str]) -> &'a Map<String, Value> {
        let map = v
            .as_object()
            .unwrap_or_else(|| panic!("{path}: expected an object, got {v}"));
        for key in map.keys() {
            assert!(
                known.contains(&key.as_str()),
                "{path}: unexpected key {key:?} (the test's OTLP/JSON reader does not know it)"
            );
        }
        map
    }

    pub(crate) fn array<'a>(m: &'a Map<String, Value>, key: &str, path: &str) -> &'a [Value] {
        match m.get(key) {
            None => &[],
            Some(Value::Array(a)) => a,
            Some(v) => panic!("{path}.{key}: expected an array, got {v}"),
        }
    }

    pub(crate) fn string(m: &Map<String, Value>, key: &str, path: &str) -> String {
        match m.get(key) {
            None => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(v) => panic!("{path}.{key}: expected a string, got {v}"),
        }
    }

    /// A 64-bit integer: a JSON string (the OTLP/JSON form) or a number.
    pub(crate) fn int(m: &Map<String, Value>, key: &str, path: &str) -> i128 {
        match m.get(key) {
            None => 0,
            Some(Value::String(s)) => s
                .parse()
                .unwrap_or_else(|e| panic!("{path}.{key}: {s:?}: {e}")),
            Some(Value::Number(n)) => n
                .as_i64()
                .map(i128::from)
                .or_else(|| n.as_u64().map(i128::from))
                .unwrap_or_else(|| panic!("{path}.{key}: not an integer: {n}")),
            Some(v) => panic!("{path}.{key}: expected an integer, got {v}"),
        }
    }

    pub(crate) fn uint(m: &Map<String, Value>, key: &str, path: &str) -> u64 {
        u64::try_from(int(m, key, path)).unwrap_or_else(|e| panic!("{path}.{key}: {e}"))
    }

    pub(crate) fn small(m: &Map<String, Value>, key: &str, path: &str) -> u32 {
        u32::try_from(int(m, key, path)).unwrap_or_else(|e| panic!("{path}.{key}: {e}"))
    }

    pub(crate) fn id(m: &Map<String, Value>, key: &str, path: &str) -> Vec<u8> {
        let s = string(m, key, path);
        assert!(
            s.len().is_multiple_of(2),
            "{path}.{key}: odd hex length: {s:?}"
        );
        (0..s.len())
            .step_by(2)
            .map(|i| {
                u8::from_str_radix(&s[i..i + 2], 16)
                    .unwrap_or_else(|e| panic!("{path}.{key}: {s:?}: {e}"))
            })
            .collect()
    }

    pub(crate) fn base64(s: &str, path: &str) -> Vec<u8> {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = Vec::new();
        let (mut acc, mut bits) = (0u32, 0);
        for c in s.bytes().filter(|c| *c != b'=') {
            let v = ALPHABET
                .iter()
                .position(|a| *a == c)
                .unwrap_or_else(|| panic!("{path}: not base64: {s:?}")) as u32;
            acc = (acc << 6) | v;
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
                acc &= (1 << bits) - 1;
            }
        }
        out
    }

    pub(crate) fn any_value(v: &Value, path: &str) -> AnyValue {
        use any_value::Value as V;
        let m = object(
            v,
            path,
            &[
                "stringValue",
                "boolValue",
                "intValue",
                "doubleValue",
                "arrayValue",
                "kvlistValue",
                "bytesValue",
            ],
        );
        assert!(m.len() <= 1, "{path}: more than one value: {v}");
        let value = m.iter().next().map(|(key, inner)| match key.as_str() {
            "stringValue" => V::StringValue(string(m, key, path)),
            "boolValue" => V::BoolValue(
                inner
                    .as_bool()
                    .unwrap_or_else(|| panic!("{path}.boolValue: {inner}")),
            ),
            "intValue" => V::IntValue(
                i64::try_from(int(m, key, path)).unwrap_or_else(|e| panic!("{path}: {e}")),
            ),
            "doubleValue" => V::DoubleValue(
                inner
                    .as_f64()
                    .unwrap_or_else(|| panic!("{path}.doubleValue: {inner}")),
            ),
            "bytesValue" => V::BytesValue(base64(&string(m, key, path), path)),
            "arrayValue" => {
                let p = format!("{path}.arrayValue");
                let a = object(inner, &p, &["values"]);
                V::ArrayValue(ArrayValue {
                    values: array(a, "values", &p)
                        .iter()
                        .enumerate()
                        .map(|(i, x)| any_value(x, &format!("{p}.values[{i}]")))
                        .collect(),
                })
            }
            "kvlistValue" => {
                let p = format!("{path}.kvlistValue");
                let l = object(inner, &p, &["values"]);
                V::KvlistValue(KeyValueList {
                    values: attributes(l, "values", &p),
                })
            }
            _ => unreachable!(),
        });
        AnyValue { value }
    }

    pub(crate) fn attributes(m: &Map<String, Value>, key: &str, path: &str) -> Vec<KeyValue> {
        array(m, key, path)
            .iter()
            .enumerate()
            .map(|(i, x)| {
                let p = format!("{path}.{key}[{i}]");
                let kv = object(x, &p, &["key", "value"]);
                KeyValue {
                    key: string(kv, "key", &p),
                    value: kv.get("value").map(|v| any_value(v, &format!("{p}.value"))),
                    ..Default::default()
                }
            })
            .collect()
    }

    pub(crate) fn resource(v: &Value, path: &str) -> Resource {
        let m = object(v, path, &["attributes", "droppedAttributesCount"]);
        Resource {
            attributes: attributes(m, "attributes", path),
            dropped_attributes_count: small(m, "droppedAttributesCount", path),
            ..Default::default()
        }
    }

    pub(crate) fn scope(v: &Value, path: &str) -> InstrumentationScope {
        let m = object(
            v,
            path,
            &["name", "version", "attributes", "droppedAttributesCount"],
        );
        InstrumentationScope {
            name: string(m, "name", path),
            version: string(m, "version", path),
            attributes: attributes(m, "attributes", path),
            dropped_attributes_count: small(m, "droppedAttributesCount", path),
        }
    }

    pub(crate) fn span(v: &Value, path: &str) -> Span {
        let m = object(
            v,
            path,
            &[
                "traceId",
                "spanId",
                "traceState",
                "parentSpanId",
                "flags",
                "name",
                "kind",
                "startTimeUnixNano",
                "endTimeUnixNano",
                "attributes",
                "droppedAttributesCount",
                "events",
                "droppedEventsCount",
                "links",
                "droppedLinksCount",
                "status",
            ],
        );
        let events = array(m, "events", path)
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let p = format!("{path}.events[{i}]");
                let e = object(
                    e,
                    &p,
                    &[
                        "timeUnixNano",
                        "name",
                        "attributes",
                        "droppedAttributesCount",
                    ],
                );
                Event {
                    time_unix_nano: uint(e, "timeUnixNano", &p),
                    name: string(e, "name", &p),
                    attributes: attributes(e, "attributes", &p),
                    dropped_attributes_count: small(e, "droppedAttributesCount", &p),
                }
            })
            .collect();
        let links = array(m, "links", path)
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let p = format!("{path}.links[{i}]");
                let l = object(
                    l,
                    &p,
                    &[
                        "traceId",
                        "spanId",
                        "traceState",
                        "attributes",
                        "droppedAttributesCount",
                        "flags",
                    ],
                );
                Link {
                    trace_id: id(l, "traceId", &p),
                    span_id: id(l, "spanId", &p),
                    trace_state: string(l, "traceState", &p),
                    attributes: attributes(l, "attributes", &p),
                    dropped_attributes_count: small(l, "droppedAttributesCount", &p),
                    flags: small(l, "flags", &p),
                }
            })
            .collect();
        let status = m.get("status").map(|s| {
            let p = format!("{path}.status");
            let s = object(s, &p, &["message", "code"]);
            Status {
                message: string(s, "message", &p),
                code: small(s, "code", &p) as i32,
            }
        });
        Span {
            trace_id: id(m, "traceId", path),
            span_id: id(m, "spanId", path),
            trace_state: string(m, "traceState", path),
            parent_span_id: id(m, "parentSpanId", path),
            flags: small(m, "flags", path),
            name: string(m, "name", path),
            kind: small(m, "kind", path) as i32,
            start_time_unix_nano: uint(m, "startTimeUnixNano", path),
            end_time_unix_nano: uint(m, "endTimeUnixNano", path),
            attributes: attributes(m, "attributes", path),
            dropped_attributes_count: small(m, "droppedAttributesCount", path),
            events,
            dropped_events_count: small(m, "droppedEventsCount", path),
            links,
            dropped_links_count: small(m, "droppedLinksCount", path),
            // pdata writes an empty status as `{}`, the protobuf encoding as an absent field;
            // both mean the default.
            status: status.filter(|s| *s != Status::default()),
        }
    }

    pub fn traces(v: &Value) -> ExportTraceServiceRequest {
        let m = object(v, "$", &["resourceSpans"]);
        let resource_spans = array(m, "resourceSpans", "$")
            .iter()
            .enumerate()
            .map(|(i, rs)| {
                let p = format!("$.resourceSpans[{i}]");
                let rs = object(rs, &p, &["resource", "scopeSpans", "schemaUrl"]);
                let scope_spans = array(rs, "scopeSpans", &p)
                    .iter()
                    .enumerate()
                    .map(|(j, ss)| {
                        let p = format!("{p}.scopeSpans[{j}]");
                        let ss = object(ss, &p, &["scope", "spans", "schemaUrl"]);
                        ScopeSpans {
                            scope: ss.get("scope").map(|s| scope(s, &format!("{p}.scope"))),
                            spans: array(ss, "spans", &p)
                                .iter()
                                .enumerate()
                                .map(|(k, s)| span(s, &format!("{p}.spans[{k}]")))
                                .collect(),
                            schema_url: string(ss, "schemaUrl", &p),
                        }
                    })
                    .collect();
                ResourceSpans {
                    resource: rs
                        .get("resource")
                        .map(|r| resource(r, &format!("{p}.resource"))),
                    scope_spans,
                    schema_url: string(rs, "schemaUrl", &p),
                }
            })
            .collect();
        ExportTraceServiceRequest { resource_spans }
    }
}

/// Sent spans have a status only when it is not the default, like what comes back.
pub(crate) fn normalise_status(
    mut items: Vec<ExportTraceServiceRequest>,
) -> Vec<ExportTraceServiceRequest> {
    for r in &mut items {
        for rs in &mut r.resource_spans {
            for ss in &mut rs.scope_spans {
                for span in &mut ss.spans {
                    if span.status.as_ref() == Some(&Status::default()) {
                        span.status = None;
                    }
                }
            }
        }
    }
    items
}

/// Waits until `read()` yields at least `want` items, then waits a little longer (so late
/// duplicates show too) and returns the final read.
pub(crate) async fn wait_items(what: &str, want: usize, read: impl Fn() -> Vec<Item>) -> Vec<Item> {
    wait_for(what, WAIT, || {
        let n = read().len();
        async move {
            if n >= want {
                Ok(())
            } else {
                Err(format!("{n} of {want}"))
            }
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    read()
}
