use super::*;

// =============================================================================================
// Items: one span / data point / log record with its resource and scope, as the encoding of
// an export request that holds only that item. Equal items have equal bytes.
// =============================================================================================

#[derive(Clone)]
pub(crate) struct Item {
    pub(crate) label: String,
    pub(crate) bytes: Vec<u8>,
    pub(crate) debug: String,
}

pub(crate) fn item(label: String, message: &(impl prost::Message + Debug)) -> Item {
    Item {
        label,
        bytes: message.encode_to_vec(),
        debug: format!("{message:?}"),
    }
}

pub(crate) fn span_items(request: &ExportTraceServiceRequest) -> Vec<Item> {
    let mut items = Vec::new();
    for rs in &request.resource_spans {
        for ss in &rs.scope_spans {
            for span in &ss.spans {
                let one = ExportTraceServiceRequest {
                    resource_spans: vec![ResourceSpans {
                        scope_spans: vec![ScopeSpans {
                            spans: vec![span.clone()],
                            ..ss.clone()
                        }],
                        ..rs.clone()
                    }],
                };
                let label = format!("span {:?} ({})", span.name, hex(&span.span_id));
                items.push(item(label, &one));
            }
        }
    }
    items
}

/// `metric` holding only its data point number `i` (`None` past the last one).
pub(crate) fn metric_point(metric: &Metric, i: usize) -> Option<Metric> {
    let data = match metric.data.as_ref()? {
        Data::Gauge(g) => Data::Gauge(Gauge {
            data_points: vec![g.data_points.get(i)?.clone()],
        }),
        Data::Sum(s) => Data::Sum(Sum {
            data_points: vec![s.data_points.get(i)?.clone()],
            ..s.clone()
        }),
        Data::Histogram(h) => Data::Histogram(Histogram {
            data_points: vec![h.data_points.get(i)?.clone()],
            ..h.clone()
        }),
        Data::ExponentialHistogram(h) => Data::ExponentialHistogram(ExponentialHistogram {
            data_points: vec![h.data_points.get(i)?.clone()],
            ..h.clone()
        }),
        Data::Summary(s) => Data::Summary(Summary {
            data_points: vec![s.data_points.get(i)?.clone()],
        }),
    };
    Some(Metric {
        data: Some(data),
        ..metric.clone()
    })
}

pub(crate) fn point_items(request: &ExportMetricsServiceRequest) -> Vec<Item> {
    let mut items = Vec::new();
    for rm in &request.resource_metrics {
        for sm in &rm.scope_metrics {
            for metric in &sm.metrics {
                let mut i = 0;
                while let Some(one_point) = metric_point(metric, i) {
                    let one = ExportMetricsServiceRequest {
                        resource_metrics: vec![ResourceMetrics {
                            scope_metrics: vec![ScopeMetrics {
                                metrics: vec![one_point],
                                ..sm.clone()
                            }],
                            ..rm.clone()
                        }],
                    };
                    items.push(item(format!("metric {:?} point {i}", metric.name), &one));
                    i += 1;
                }
            }
        }
    }
    items
}

pub(crate) fn record_items(request: &ExportLogsServiceRequest) -> Vec<Item> {
    let mut items = Vec::new();
    for rl in &request.resource_logs {
        for sl in &rl.scope_logs {
            for record in &sl.log_records {
                let one = ExportLogsServiceRequest {
                    resource_logs: vec![ResourceLogs {
                        scope_logs: vec![ScopeLogs {
                            log_records: vec![record.clone()],
                            ..sl.clone()
                        }],
                        ..rl.clone()
                    }],
                };
                let label = format!("log record at {}", record.time_unix_nano);
                items.push(item(label, &one));
            }
        }
    }
    items
}

/// Panics unless `got` holds exactly the items of `want`, each as often: lists what is
/// missing and what is extra (or duplicated).
/// Every span the test backend received so far, as items.
pub(crate) fn backend_spans(backend: &Backend) -> Vec<Item> {
    backend.with(|r| {
        r.traces
            .iter()
            .flat_map(|x| span_items(&x.request))
            .collect()
    })
}

/// Every data point the test backend received so far, as items.
pub(crate) fn backend_points(backend: &Backend) -> Vec<Item> {
    backend.with(|r| {
        r.metrics
            .iter()
            .flat_map(|x| point_items(&x.request))
            .collect()
    })
}

/// Every log record the test backend received so far, as items.
pub(crate) fn backend_records(backend: &Backend) -> Vec<Item> {
    backend.with(|r| {
        r.logs
            .iter()
            .flat_map(|x| record_items(&x.request))
            .collect()
    })
}

pub(crate) fn assert_same_items(what: &str, want: &[Item], got: &[Item]) {
    let mut counts: BTreeMap<&[u8], (i64, &Item)> = BTreeMap::new();
    for i in want {
        counts.entry(&i.bytes).or_insert((0, i)).0 += 1;
    }
    for i in got {
        counts.entry(&i.bytes).or_insert((0, i)).0 -= 1;
    }
    let missing: Vec<&Item> = counts
        .values()
        .filter(|(n, _)| *n > 0)
        .map(|(_, i)| *i)
        .collect();
    let extra: Vec<&Item> = counts
        .values()
        .filter(|(n, _)| *n < 0)
        .map(|(_, i)| *i)
        .collect();
    if missing.is_empty() && extra.is_empty() {
        return;
    }
    let show = |items: &[&Item]| -> String {
        items
            .iter()
            .take(5)
            .map(|i| format!("    {}: {}", i.label, i.debug))
            .collect::<Vec<_>>()
            .join("\n")
    };
    panic!(
        "{what}: {} items wanted, {} got; {} missing, {} extra or duplicated.\n  missing \
         (first 5):\n{}\n  extra (first 5):\n{}",
        want.len(),
        got.len(),
        missing.len(),
        extra.len(),
        show(&missing),
        show(&extra)
    );
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
