//! Entry points of the fuzz targets (tests/fuzz/, `make fuzz`): every parser that reads
//! untrusted bytes, fed arbitrary input. Built under `--cfg fuzzing` (cargo fuzz sets it) and
//! for the unit tests, which replay every input a fuzzer ever crashed on
//! (tests/fuzz/regressions/<target>/) as regression tests. Each must return, never panic,
//! whatever the input; `otlp_json` panics on purpose only when its decoders disagree.

use std::collections::HashMap;

use bytes::Bytes;

use crate::receiver::otlp::decompress::{decompress, Encoding};
use crate::signal::Signal;

/// The size limit the receivers apply by default.
const LIMIT: usize = 16 << 20;

fn encoding(selector: u8) -> Encoding {
    match selector % 4 {
        0 => Encoding::Identity,
        1 => Encoding::Gzip,
        2 => Encoding::Zstd,
        _ => Encoding::Deflate,
    }
}

fn signal(selector: u8) -> Signal {
    Signal::ALL[usize::from(selector) % Signal::ALL.len()]
}

/// The protobuf walk every request goes through (counting, tenant split).
pub fn otlp_protobuf(data: &[u8]) {
    for signal in Signal::ALL {
        if let Ok(entries) = crate::otlp::walk::resource_entries(signal, data) {
            for entry in entries {
                if let Some(bytes) = data.get(entry.span.clone()) {
                    let _ = crate::otlp::walk::entry_body(bytes);
                }
            }
        }
    }
}

/// OTLP/JSON into protobuf; it also panics when the two JSON decoders disagree.
pub fn otlp_json(data: &[u8]) {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    crate::receiver::otlp::http::fuzz_json(signal(selector), body);
}

/// The gRPC message framing of a unary call, with decompression.
pub fn grpc_frame(data: &[u8]) {
    let Some((&selector, frame)) = data.split_first() else {
        return;
    };
    let _ = crate::receiver::otlp::grpc::unframe(
        Bytes::copy_from_slice(frame),
        encoding(selector),
        LIMIT,
    );
}

/// Request body decompression within the size limit.
pub fn decompression(data: &[u8]) {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let _ = decompress(encoding(selector), Bytes::copy_from_slice(body), LIMIT);
}

/// Disk buffer segment files: framing, checksums, record headers.
pub fn disk_segment(data: &[u8]) {
    crate::buffer::disk::fuzz_segment(data);
}

/// Messages consumed from Pulsar: the `items` property (first line of the input), then the
/// payload.
pub fn pulsar_message(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let split = rest.iter().position(|&b| b == b'\n').unwrap_or(0);
    let mut properties = HashMap::new();
    if let Ok(items) = std::str::from_utf8(&rest[..split]) {
        properties.insert(crate::buffer::pulsar::ITEMS.to_string(), items.to_string());
    }
    let payload = Bytes::copy_from_slice(rest.get(split + 1..).unwrap_or_default());
    crate::buffer::pulsar::fuzz_message(signal(selector), payload, &properties);
}

/// The config file (YAML, `${env:…}` expansion, validation), as `sluice validate` reads it.
pub fn config_yaml(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::service::Config::from_yaml(text, |_| None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Target = fn(&[u8]);

    const TARGETS: [(&str, Target); 7] = [
        ("otlp_protobuf", otlp_protobuf),
        ("otlp_json", otlp_json),
        ("grpc_frame", grpc_frame),
        ("decompression", decompression),
        ("disk_segment", disk_segment),
        ("pulsar_message", pulsar_message),
        ("config_yaml", config_yaml),
    ];

    #[test]
    fn every_target_takes_edge_inputs() {
        let inputs: [&[u8]; 6] = [
            b"",
            b"\x00",
            b"\x01\x01\xff\xff\xff\xff",
            &[0xff; 64],
            b"\x0a\xff\xff\xff\xff\x0f",
            b"receivers: {otlp: {protocols: {grpc: {}}}}",
        ];
        for (_, target) in TARGETS {
            for input in inputs {
                target(input);
            }
        }
    }

    /// Every crash a fuzzer found, kept as a file under tests/fuzz/regressions/<target>/.
    #[test]
    fn crashes_found_by_fuzzing_stay_fixed() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/regressions");
        for (name, target) in TARGETS {
            let Ok(entries) = std::fs::read_dir(root.join(name)) else {
                continue;
            };
            for entry in entries.flatten() {
                let data = std::fs::read(entry.path()).expect("regression input");
                target(&data);
            }
        }
    }
}
