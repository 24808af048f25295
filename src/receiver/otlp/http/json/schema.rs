//! The OTLP messages as the streaming transcoder ([`super::transcode`]) sees them: for each
//! message, its fields' JSON names, protobuf field numbers and how their values are written.
//! Field numbers and types are those of opentelemetry-proto 0.33 (the `.proto` files of
//! OTLP 1.x). The transcoder's tests check them against the prost types: requests that set
//! every field listed here must decode, through prost, into what the full decoder makes of
//! them.
//!
//! Only the fields OTLP/JSON clients send are listed. A field missing here (`keyStrindex`,
//! `stringValueStrindex`, `bytesValue`) is not refused: the transcoder hands the request to
//! the full decoder, which knows every field.

/// A protobuf message.
pub struct Message {
    pub fields: &'static [Field],
}

/// One field of a [`Message`].
pub struct Field {
    /// The lowerCamelCase name OTLP/JSON requires.
    pub json: &'static str,
    pub number: u32,
    pub kind: Kind,
    pub presence: Presence,
}

/// When a field with its default value is still written.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// proto3 implicit presence: a default (0, "", false) is not written.
    Implicit,
    /// Written as [`Presence::Implicit`], but the full decoder refuses a message without
    /// it (the serde types have no default for `KeyValue.key`), so it must be sent.
    Required,
    /// proto3 `optional`: written whenever it was sent.
    Explicit,
    /// A member of the message's one oneof: written whenever sent, and at most one member
    /// may be sent.
    Oneof,
}

/// How a field's JSON value becomes protobuf.
#[derive(Clone, Copy)]
pub enum Kind {
    String,
    RepeatedString,
    Bool,
    /// `uint32`: a JSON number.
    Uint32,
    /// An enum, sent as its number (OTLP/JSON requires numbers, not names).
    Enum,
    Fixed32,
    Sint32,
    /// `int64`: a number or a decimal string.
    Int64,
    /// `fixed64`: a number or a decimal string.
    Fixed64,
    /// `sfixed64`: a number or a decimal string.
    Sfixed64,
    Double,
    /// Trace or span id: hex of exactly this many bytes, or empty.
    Id(usize),
    Message(&'static Message),
    RepeatedMessage(&'static Message),
    /// Packed `repeated fixed64`; elements are numbers or decimal strings.
    PackedFixed64,
    /// Packed `repeated uint64`; elements are numbers or decimal strings.
    PackedUint64,
    PackedDouble,
}

const fn field(json: &'static str, number: u32, kind: Kind) -> Field {
    Field {
        json,
        number,
        kind,
        presence: Presence::Implicit,
    }
}

const fn required(json: &'static str, number: u32, kind: Kind) -> Field {
    Field {
        json,
        number,
        kind,
        presence: Presence::Required,
    }
}

const fn optional(json: &'static str, number: u32, kind: Kind) -> Field {
    Field {
        json,
        number,
        kind,
        presence: Presence::Explicit,
    }
}

const fn oneof(json: &'static str, number: u32, kind: Kind) -> Field {
    Field {
        json,
        number,
        kind,
        presence: Presence::Oneof,
    }
}

const TRACE_ID: Kind = Kind::Id(16);
const SPAN_ID: Kind = Kind::Id(8);

// === the requests ===

pub static TRACES_REQUEST: Message = Message {
    fields: &[field(
        "resourceSpans",
        1,
        Kind::RepeatedMessage(&RESOURCE_SPANS),
    )],
};

pub static LOGS_REQUEST: Message = Message {
    fields: &[field(
        "resourceLogs",
        1,
        Kind::RepeatedMessage(&RESOURCE_LOGS),
    )],
};

pub static METRICS_REQUEST: Message = Message {
    fields: &[field(
        "resourceMetrics",
        1,
        Kind::RepeatedMessage(&RESOURCE_METRICS),
    )],
};

// === common and resource ===

static ANY_VALUE: Message = Message {
    fields: &[
        oneof("stringValue", 1, Kind::String),
        oneof("boolValue", 2, Kind::Bool),
        oneof("intValue", 3, Kind::Int64),
        oneof("doubleValue", 4, Kind::Double),
        oneof("arrayValue", 5, Kind::Message(&ARRAY_VALUE)),
        oneof("kvlistValue", 6, Kind::Message(&KEY_VALUE_LIST)),
    ],
};

static ARRAY_VALUE: Message = Message {
    fields: &[field("values", 1, Kind::RepeatedMessage(&ANY_VALUE))],
};

static KEY_VALUE_LIST: Message = Message {
    fields: &[field("values", 1, Kind::RepeatedMessage(&KEY_VALUE))],
};

static KEY_VALUE: Message = Message {
    fields: &[
        required("key", 1, Kind::String),
        field("value", 2, Kind::Message(&ANY_VALUE)),
    ],
};

static SCOPE: Message = Message {
    fields: &[
        field("name", 1, Kind::String),
        field("version", 2, Kind::String),
        field("attributes", 3, Kind::RepeatedMessage(&KEY_VALUE)),
        field("droppedAttributesCount", 4, Kind::Uint32),
    ],
};

static RESOURCE: Message = Message {
    fields: &[
        field("attributes", 1, Kind::RepeatedMessage(&KEY_VALUE)),
        field("droppedAttributesCount", 2, Kind::Uint32),
        field("entityRefs", 3, Kind::RepeatedMessage(&ENTITY_REF)),
    ],
};

static ENTITY_REF: Message = Message {
    fields: &[
        field("schemaUrl", 1, Kind::String),
        field("type", 2, Kind::String),
        field("idKeys", 3, Kind::RepeatedString),
        field("descriptionKeys", 4, Kind::RepeatedString),
    ],
};

// === traces ===

static RESOURCE_SPANS: Message = Message {
    fields: &[
        field("resource", 1, Kind::Message(&RESOURCE)),
        field("scopeSpans", 2, Kind::RepeatedMessage(&SCOPE_SPANS)),
        field("schemaUrl", 3, Kind::String),
    ],
};

static SCOPE_SPANS: Message = Message {
    fields: &[
        field("scope", 1, Kind::Message(&SCOPE)),
        field("spans", 2, Kind::RepeatedMessage(&SPAN)),
        field("schemaUrl", 3, Kind::String),
    ],
};

static SPAN: Message = Message {
    fields: &[
        field("traceId", 1, TRACE_ID),
        field("spanId", 2, SPAN_ID),
        field("traceState", 3, Kind::String),
        field("parentSpanId", 4, SPAN_ID),
        field("flags", 16, Kind::Fixed32),
        field("name", 5, Kind::String),
        field("kind", 6, Kind::Enum),
        field("startTimeUnixNano", 7, Kind::Fixed64),
        field("endTimeUnixNano", 8, Kind::Fixed64),
        field("attributes", 9, Kind::RepeatedMessage(&KEY_VALUE)),
        field("droppedAttributesCount", 10, Kind::Uint32),
        field("events", 11, Kind::RepeatedMessage(&SPAN_EVENT)),
        field("droppedEventsCount", 12, Kind::Uint32),
        field("links", 13, Kind::RepeatedMessage(&SPAN_LINK)),
        field("droppedLinksCount", 14, Kind::Uint32),
        field("status", 15, Kind::Message(&STATUS)),
    ],
};

static SPAN_EVENT: Message = Message {
    fields: &[
        field("timeUnixNano", 1, Kind::Fixed64),
        field("name", 2, Kind::String),
        field("attributes", 3, Kind::RepeatedMessage(&KEY_VALUE)),
        field("droppedAttributesCount", 4, Kind::Uint32),
    ],
};

static SPAN_LINK: Message = Message {
    fields: &[
        field("traceId", 1, TRACE_ID),
        field("spanId", 2, SPAN_ID),
        field("traceState", 3, Kind::String),
        field("attributes", 4, Kind::RepeatedMessage(&KEY_VALUE)),
        field("droppedAttributesCount", 5, Kind::Uint32),
        field("flags", 6, Kind::Fixed32),
    ],
};

static STATUS: Message = Message {
    fields: &[
        field("message", 2, Kind::String),
        field("code", 3, Kind::Enum),
    ],
};

// === logs ===

static RESOURCE_LOGS: Message = Message {
    fields: &[
        field("resource", 1, Kind::Message(&RESOURCE)),
        field("scopeLogs", 2, Kind::RepeatedMessage(&SCOPE_LOGS)),
        field("schemaUrl", 3, Kind::String),
    ],
};

static SCOPE_LOGS: Message = Message {
    fields: &[
        field("scope", 1, Kind::Message(&SCOPE)),
        field("logRecords", 2, Kind::RepeatedMessage(&LOG_RECORD)),
        field("schemaUrl", 3, Kind::String),
    ],
};

static LOG_RECORD: Message = Message {
    fields: &[
        field("timeUnixNano", 1, Kind::Fixed64),
        field("observedTimeUnixNano", 11, Kind::Fixed64),
        field("severityNumber", 2, Kind::Enum),
        field("severityText", 3, Kind::String),
        field("body", 5, Kind::Message(&ANY_VALUE)),
        field("attributes", 6, Kind::RepeatedMessage(&KEY_VALUE)),
        field("droppedAttributesCount", 7, Kind::Uint32),
        field("flags", 8, Kind::Fixed32),
        field("traceId", 9, TRACE_ID),
        field("spanId", 10, SPAN_ID),
        field("eventName", 12, Kind::String),
    ],
};

// === metrics ===

static RESOURCE_METRICS: Message = Message {
    fields: &[
        field("resource", 1, Kind::Message(&RESOURCE)),
        field("scopeMetrics", 2, Kind::RepeatedMessage(&SCOPE_METRICS)),
        field("schemaUrl", 3, Kind::String),
    ],
};

static SCOPE_METRICS: Message = Message {
    fields: &[
        field("scope", 1, Kind::Message(&SCOPE)),
        field("metrics", 2, Kind::RepeatedMessage(&METRIC)),
        field("schemaUrl", 3, Kind::String),
    ],
};

static METRIC: Message = Message {
    fields: &[
        field("name", 1, Kind::String),
        field("description", 2, Kind::String),
        field("unit", 3, Kind::String),
        field("metadata", 12, Kind::RepeatedMessage(&KEY_VALUE)),
        oneof("gauge", 5, Kind::Message(&GAUGE)),
        oneof("sum", 7, Kind::Message(&SUM)),
        oneof("histogram", 9, Kind::Message(&HISTOGRAM)),
        oneof(
            "exponentialHistogram",
            10,
            Kind::Message(&EXPONENTIAL_HISTOGRAM),
        ),
        oneof("summary", 11, Kind::Message(&SUMMARY)),
    ],
};

static GAUGE: Message = Message {
    fields: &[field(
        "dataPoints",
        1,
        Kind::RepeatedMessage(&NUMBER_DATA_POINT),
    )],
};

static SUM: Message = Message {
    fields: &[
        field("dataPoints", 1, Kind::RepeatedMessage(&NUMBER_DATA_POINT)),
        field("aggregationTemporality", 2, Kind::Enum),
        field("isMonotonic", 3, Kind::Bool),
    ],
};

static HISTOGRAM: Message = Message {
    fields: &[
        field(
            "dataPoints",
            1,
            Kind::RepeatedMessage(&HISTOGRAM_DATA_POINT),
        ),
        field("aggregationTemporality", 2, Kind::Enum),
    ],
};

static EXPONENTIAL_HISTOGRAM: Message = Message {
    fields: &[
        field(
            "dataPoints",
            1,
            Kind::RepeatedMessage(&EXPONENTIAL_HISTOGRAM_DATA_POINT),
        ),
        field("aggregationTemporality", 2, Kind::Enum),
    ],
};

static SUMMARY: Message = Message {
    fields: &[field(
        "dataPoints",
        1,
        Kind::RepeatedMessage(&SUMMARY_DATA_POINT),
    )],
};

static NUMBER_DATA_POINT: Message = Message {
    fields: &[
        field("attributes", 7, Kind::RepeatedMessage(&KEY_VALUE)),
        field("startTimeUnixNano", 2, Kind::Fixed64),
        field("timeUnixNano", 3, Kind::Fixed64),
        oneof("asDouble", 4, Kind::Double),
        oneof("asInt", 6, Kind::Sfixed64),
        field("exemplars", 5, Kind::RepeatedMessage(&EXEMPLAR)),
        field("flags", 8, Kind::Uint32),
    ],
};

static HISTOGRAM_DATA_POINT: Message = Message {
    fields: &[
        field("attributes", 9, Kind::RepeatedMessage(&KEY_VALUE)),
        field("startTimeUnixNano", 2, Kind::Fixed64),
        field("timeUnixNano", 3, Kind::Fixed64),
        field("count", 4, Kind::Fixed64),
        optional("sum", 5, Kind::Double),
        field("bucketCounts", 6, Kind::PackedFixed64),
        field("explicitBounds", 7, Kind::PackedDouble),
        field("exemplars", 8, Kind::RepeatedMessage(&EXEMPLAR)),
        field("flags", 10, Kind::Uint32),
        optional("min", 11, Kind::Double),
        optional("max", 12, Kind::Double),
    ],
};

static EXPONENTIAL_HISTOGRAM_DATA_POINT: Message = Message {
    fields: &[
        field("attributes", 1, Kind::RepeatedMessage(&KEY_VALUE)),
        field("startTimeUnixNano", 2, Kind::Fixed64),
        field("timeUnixNano", 3, Kind::Fixed64),
        field("count", 4, Kind::Fixed64),
        optional("sum", 5, Kind::Double),
        field("scale", 6, Kind::Sint32),
        field("zeroCount", 7, Kind::Fixed64),
        field("positive", 8, Kind::Message(&BUCKETS)),
        field("negative", 9, Kind::Message(&BUCKETS)),
        field("flags", 10, Kind::Uint32),
        field("exemplars", 11, Kind::RepeatedMessage(&EXEMPLAR)),
        optional("min", 12, Kind::Double),
        optional("max", 13, Kind::Double),
        field("zeroThreshold", 14, Kind::Double),
    ],
};

static BUCKETS: Message = Message {
    fields: &[
        field("offset", 1, Kind::Sint32),
        field("bucketCounts", 2, Kind::PackedUint64),
    ],
};

static SUMMARY_DATA_POINT: Message = Message {
    fields: &[
        field("attributes", 7, Kind::RepeatedMessage(&KEY_VALUE)),
        field("startTimeUnixNano", 2, Kind::Fixed64),
        field("timeUnixNano", 3, Kind::Fixed64),
        field("count", 4, Kind::Fixed64),
        field("sum", 5, Kind::Double),
        field(
            "quantileValues",
            6,
            Kind::RepeatedMessage(&VALUE_AT_QUANTILE),
        ),
        field("flags", 8, Kind::Uint32),
    ],
};

static VALUE_AT_QUANTILE: Message = Message {
    fields: &[
        field("quantile", 1, Kind::Double),
        field("value", 2, Kind::Double),
    ],
};

static EXEMPLAR: Message = Message {
    fields: &[
        field("filteredAttributes", 7, Kind::RepeatedMessage(&KEY_VALUE)),
        field("timeUnixNano", 2, Kind::Fixed64),
        oneof("asDouble", 3, Kind::Double),
        oneof("asInt", 6, Kind::Sfixed64),
        field("spanId", 4, SPAN_ID),
        field("traceId", 5, TRACE_ID),
    ],
};
