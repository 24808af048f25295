//! OTLP/JSON straight into protobuf in one pass over the body, for the requests clients
//! actually send.
//!
//! The full decoder ([`super::decode`]) builds a JSON tree, decodes it into the
//! opentelemetry-proto types, proves with [`super::super::lossless`] that nothing was lost and
//! encodes the result: four passes and an allocation for every key and value. This one reads
//! the body once with serde_json's streaming parser, looks every key up in [`schema`] and
//! writes the protobuf as it goes.
//!
//! It is lossless by construction rather than by proof: it takes only what it can store
//! exactly, in the canonical OTLP/JSON form, and gives up on anything else: an unknown or
//! repeated key, two members of a oneof, a `null` in an array, an enum by name, a non-canonical number,
//! an id of the wrong length, a field it does not list. Giving up is not a refusal: the
//! caller then runs the full decoder, which accepts or refuses the request with its precise
//! message. So a request the transcoder takes must be one the full decoder takes, into the
//! same message; the tests check exactly that over every single-edit variation of a request
//! with every field set, and the `otlp_json` fuzz target checks it on whatever it finds.
//!
//! Fields are written in the order the client sent them, not in field-number order. Both
//! are valid protobuf and decode to the same message.

use std::fmt;

use bytes::Bytes;
use serde::de::{DeserializeSeed, Error as _, MapAccess, SeqAccess, Visitor};
use serde::Deserializer;

use super::schema::{self, Field, Kind, Message, Presence};
use crate::batch::recycled::SHARED;
use crate::signal::Signal;

/// Why the transcoder gave up. Never shown to a client; the full decoder's verdict is.
#[derive(Debug)]
pub struct GaveUp(#[allow(dead_code)] serde_json::Error);

/// The protobuf encoding of the `Export*ServiceRequest` that `body` holds, or [`GaveUp`]
/// when the full decoder must judge it.
pub fn transcode(signal: Signal, body: &[u8]) -> Result<Bytes, GaveUp> {
    let request = match signal {
        Signal::Traces => &schema::TRACES_REQUEST,
        Signal::Metrics => &schema::METRICS_REQUEST,
        Signal::Logs => &schema::LOGS_REQUEST,
    };
    // Protobuf is smaller than its JSON; half the body is rarely exceeded.
    SHARED
        .filled(body.len() / 2, |out| {
            let mut de = serde_json::Deserializer::from_slice(body);
            MessageBody {
                message: request,
                out,
            }
            .deserialize(&mut de)
            .and_then(|()| de.end())
        })
        .map_err(GaveUp)
}

// === protobuf writing ===

const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LENGTH_DELIMITED: u32 = 2;
const FIXED32: u32 = 5;

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn tag(out: &mut Vec<u8>, number: u32, wire_type: u32) {
    varint(out, u64::from(number << 3 | wire_type));
}

/// Starts a length-delimited field whose length is known only once its content is written:
/// one byte is reserved for the length, which fits every content under 128 bytes.
fn open(out: &mut Vec<u8>, number: u32) -> usize {
    tag(out, number, LENGTH_DELIMITED);
    out.push(0);
    out.len()
}

/// Ends what [`open`] started at `start`, moving the content up when its length needs more
/// than the reserved byte.
fn close(out: &mut Vec<u8>, start: usize) {
    let len = out.len() - start;
    if len < 0x80 {
        out[start - 1] = len as u8;
        return;
    }
    let mut prefix = Vec::with_capacity(10);
    varint(&mut prefix, len as u64);
    let extra = prefix.len() - 1;
    out.resize(out.len() + extra, 0);
    out.copy_within(start..start + len, start + extra);
    out[start - 1..start - 1 + prefix.len()].copy_from_slice(&prefix);
}

fn string(out: &mut Vec<u8>, number: u32, v: &str) {
    tag(out, number, LENGTH_DELIMITED);
    varint(out, v.len() as u64);
    out.extend_from_slice(v.as_bytes());
}

// === reading ===

/// A JSON object read as `message`, its fields written to `out`.
struct MessageBody<'a> {
    message: &'static Message,
    out: &'a mut Vec<u8>,
}

impl<'de> DeserializeSeed<'de> for MessageBody<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for MessageBody<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an OTLP message as a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let fields = self.message.fields;
        // Every message has fewer than 32 fields, so a bit per field: `seen` finds a repeated
        // key, `sent` those with a value other than `null`.
        let (mut seen, mut sent) = (0u32, 0u32);
        let mut oneof_sent = false;
        while let Some(index) = map.next_key_seed(FieldName(fields))? {
            let Some(index) = index else {
                return Err(A::Error::custom("a field the transcoder does not list"));
            };
            if seen & (1 << index) != 0 {
                return Err(A::Error::custom("a repeated key"));
            }
            seen |= 1 << index;
            let field = &fields[index];
            if !map.next_value_seed(FieldValue {
                field,
                out: self.out,
            })? {
                continue;
            }
            sent |= 1 << index;
            if field.presence == Presence::Oneof {
                if oneof_sent {
                    return Err(A::Error::custom("two members of a oneof"));
                }
                oneof_sent = true;
            }
        }
        let missing = fields
            .iter()
            .enumerate()
            .any(|(i, field)| field.presence == Presence::Required && sent & (1 << i) == 0);
        if missing {
            return Err(A::Error::custom("a required field is missing"));
        }
        Ok(())
    }
}

/// A key, as the index of the field it names in `.0`, or `None` for a name not listed.
struct FieldName(&'static [Field]);

impl<'de> DeserializeSeed<'de> for FieldName {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for FieldName {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<Option<usize>, E> {
        Ok(self.0.iter().position(|field| field.json == name))
    }
}

/// The value of one field.
struct FieldValue<'a> {
    field: &'static Field,
    out: &'a mut Vec<u8>,
}

impl<'de> DeserializeSeed<'de> for FieldValue<'_> {
    /// Whether the field was sent: `null` stands for the default, as in proto3 JSON.
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for FieldValue<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field value")
    }

    fn visit_none<E>(self) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        let Field {
            number,
            kind,
            presence,
            ..
        } = *self.field;
        let out = self.out;
        let always = matches!(presence, Presence::Explicit | Presence::Oneof);
        match kind {
            Kind::String => {
                let v = d.deserialize_str(Str)?;
                if always || !v.is_empty() {
                    string(out, number, &v);
                }
            }
            Kind::Bool => {
                let v = d.deserialize_bool(Scalar)?.as_bool()?;
                if always || v {
                    tag(out, number, VARINT);
                    out.push(u8::from(v));
                }
            }
            Kind::Uint32 | Kind::Enum | Kind::Fixed32 | Kind::Sint32 => {
                let v = d.deserialize_any(Scalar)?;
                let (wire_type, bits) = match kind {
                    Kind::Sint32 => {
                        let v = v.as_i32()?;
                        (VARINT, u64::from(((v << 1) ^ (v >> 31)) as u32))
                    }
                    Kind::Enum => (VARINT, u64::from(v.as_u32(i32::MAX as u32)?)),
                    Kind::Fixed32 => (FIXED32, u64::from(v.as_u32(u32::MAX)?)),
                    _ => (VARINT, u64::from(v.as_u32(u32::MAX)?)),
                };
                if always || bits != 0 {
                    tag(out, number, wire_type);
                    if wire_type == FIXED32 {
                        out.extend_from_slice(&(bits as u32).to_le_bytes());
                    } else {
                        varint(out, bits);
                    }
                }
            }
            Kind::Int64 | Kind::Sfixed64 => {
                let v = d.deserialize_any(Scalar)?.as_i64()?;
                if always || v != 0 {
                    if matches!(kind, Kind::Int64) {
                        tag(out, number, VARINT);
                        varint(out, v as u64);
                    } else {
                        tag(out, number, FIXED64);
                        out.extend_from_slice(&v.to_le_bytes());
                    }
                }
            }
            Kind::Fixed64 => {
                let v = d.deserialize_any(Scalar)?.as_u64()?;
                if always || v != 0 {
                    tag(out, number, FIXED64);
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }
            Kind::Double => {
                let v = d.deserialize_any(Scalar)?.as_f64()?;
                // As prost: a default double is one that compares equal to 0.0.
                if always || v != 0.0 {
                    tag(out, number, FIXED64);
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }
            Kind::Id(len) => {
                let hex = d.deserialize_str(Str)?;
                if !hex.is_empty() {
                    tag(out, number, LENGTH_DELIMITED);
                    varint(out, len as u64);
                    decode_hex(&hex, len, out).map_err(D::Error::custom)?;
                }
            }
            Kind::Message(message) => {
                let start = open(out, number);
                MessageBody { message, out }.deserialize(d)?;
                close(out, start);
            }
            Kind::RepeatedMessage(_)
            | Kind::RepeatedString
            | Kind::PackedFixed64
            | Kind::PackedUint64
            | Kind::PackedDouble => d.deserialize_seq(Repeated { number, kind, out })?,
        }
        Ok(true)
    }
}

/// Writes the bytes of `hex`, which must be exactly `len` bytes of hex digits.
fn decode_hex(hex: &str, len: usize, out: &mut Vec<u8>) -> Result<(), &'static str> {
    fn digit(c: u8) -> Result<u8, &'static str> {
        match c {
            b'0'..=b'9' => Ok(c - b'0'),
            b'a'..=b'f' => Ok(c - b'a' + 10),
            b'A'..=b'F' => Ok(c - b'A' + 10),
            _ => Err("an id with a character that is not a hex digit"),
        }
    }
    if hex.len() != len * 2 {
        return Err("an id of the wrong length");
    }
    for pair in hex.as_bytes().chunks_exact(2) {
        out.push(digit(pair[0])? << 4 | digit(pair[1])?);
    }
    Ok(())
}

/// The elements of a repeated field.
struct Repeated<'a> {
    number: u32,
    kind: Kind,
    out: &'a mut Vec<u8>,
}

impl<'de> Visitor<'de> for Repeated<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Repeated { number, kind, out } = self;
        match kind {
            Kind::RepeatedMessage(message) => {
                while let Some(()) = seq.next_element_seed(Element {
                    number,
                    message,
                    out,
                })? {}
            }
            Kind::RepeatedString => {
                while let Some(v) = seq.next_element_seed(Str)? {
                    string(out, number, &v);
                }
            }
            _ => {
                // Packed: one length-delimited field holding every element, none when empty.
                let field_start = out.len();
                let start = open(out, number);
                while let Some(v) = seq.next_element_seed(Scalar)? {
                    match kind {
                        Kind::PackedDouble => out.extend_from_slice(&v.as_f64()?.to_le_bytes()),
                        Kind::PackedFixed64 => out.extend_from_slice(&v.as_u64()?.to_le_bytes()),
                        _ => varint(out, v.as_u64()?),
                    }
                }
                if out.len() == start {
                    out.truncate(field_start);
                } else {
                    close(out, start);
                }
            }
        }
        Ok(())
    }
}

/// One message of a repeated message field, written as its own field.
struct Element<'a> {
    number: u32,
    message: &'static Message,
    out: &'a mut Vec<u8>,
}

impl<'de> DeserializeSeed<'de> for Element<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        let start = open(self.out, self.number);
        MessageBody {
            message: self.message,
            out: self.out,
        }
        .deserialize(d)?;
        close(self.out, start);
        Ok(())
    }
}

/// A JSON string, borrowed from the body unless it had escapes.
struct Str;

impl<'de> DeserializeSeed<'de> for Str {
    type Value = std::borrow::Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Str {
    type Value = std::borrow::Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON string")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(v.to_owned().into())
    }
}

/// A JSON number or boolean, or a decimal string where a 64-bit integer is expected.
#[derive(Clone, Copy)]
enum Number {
    Unsigned(u64),
    Signed(i64),
    Float(f64),
    Bool(bool),
    /// Digits of an integer sent as a string, with its sign.
    Decimal {
        negative: bool,
        magnitude: u64,
    },
}

/// The largest integer every double holds exactly: a larger one sent as a number for a
/// double field is left to the full decoder.
const EXACT_IN_DOUBLE: u64 = 1 << 53;

impl Number {
    fn as_bool<E: serde::de::Error>(self) -> Result<bool, E> {
        match self {
            Number::Bool(v) => Ok(v),
            _ => Err(E::custom("not a boolean")),
        }
    }

    /// A JSON number (not a string) no larger than `max`.
    fn as_u32<E: serde::de::Error>(self, max: u32) -> Result<u32, E> {
        match self {
            Number::Unsigned(v) if v <= u64::from(max) => Ok(v as u32),
            _ => Err(E::custom("not a 32-bit unsigned number in range")),
        }
    }

    /// A JSON number (not a string) that fits an `i32`.
    fn as_i32<E: serde::de::Error>(self) -> Result<i32, E> {
        let v = match self {
            Number::Signed(v) => i32::try_from(v).ok(),
            Number::Unsigned(v) => i32::try_from(v).ok(),
            _ => None,
        };
        v.ok_or_else(|| E::custom("not a 32-bit signed number in range"))
    }

    fn as_u64<E: serde::de::Error>(self) -> Result<u64, E> {
        match self {
            Number::Unsigned(v)
            | Number::Decimal {
                negative: false,
                magnitude: v,
            } => Ok(v),
            _ => Err(E::custom("not an unsigned 64-bit integer")),
        }
    }

    fn as_i64<E: serde::de::Error>(self) -> Result<i64, E> {
        let out_of_range = || E::custom("not a signed 64-bit integer");
        match self {
            Number::Signed(v) => Ok(v),
            Number::Unsigned(v)
            | Number::Decimal {
                negative: false,
                magnitude: v,
            } => i64::try_from(v).map_err(|_| out_of_range()),
            Number::Decimal {
                negative: true,
                magnitude,
            } => 0i64
                .checked_sub_unsigned(magnitude)
                .ok_or_else(out_of_range),
            _ => Err(out_of_range()),
        }
    }

    fn as_f64<E: serde::de::Error>(self) -> Result<f64, E> {
        match self {
            Number::Float(v) => Ok(v),
            Number::Unsigned(v) if v <= EXACT_IN_DOUBLE => Ok(v as f64),
            Number::Signed(v) if v.unsigned_abs() <= EXACT_IN_DOUBLE => Ok(v as f64),
            _ => Err(E::custom("not a double")),
        }
    }
}

struct Scalar;

impl<'de> DeserializeSeed<'de> for Scalar {
    type Value = Number;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Number, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Scalar {
    type Value = Number;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a number")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Number, E> {
        Ok(Number::Bool(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Number, E> {
        Ok(Number::Unsigned(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Number, E> {
        Ok(Number::Signed(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Number, E> {
        Ok(Number::Float(v))
    }

    /// Only the canonical decimal form: an optional `-`, then `0` or digits without a
    /// leading zero. `+1`, `01`, `-0`, `1e3` and `" 1"` are left to the full decoder.
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Number, E> {
        let (negative, digits) = match v.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, v),
        };
        let canonical = !digits.is_empty()
            && digits.bytes().all(|c| c.is_ascii_digit())
            && (digits == "0" || !digits.starts_with('0'))
            && !(negative && digits == "0");
        if !canonical {
            return Err(E::custom("not a canonical decimal integer"));
        }
        let magnitude = digits
            .parse::<u64>()
            .map_err(|_| E::custom("an integer out of range"))?;
        Ok(Number::Decimal {
            negative,
            magnitude,
        })
    }
}

#[cfg(test)]
#[path = "transcode_tests.rs"]
mod tests;
