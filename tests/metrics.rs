//! Verifies that /metrics is the Prometheus text format, line by line, with
//! the histograms an operator expects, and that /stats shows the same
//! figures, over ws:// and wss:// alike.

use std::collections::{BTreeMap, BTreeSet};

use crate::support::{Client, PATIENCE, Scheme, TestServer, config, recv_text, send_text, wait_until};

/// One sample line: `name{label="value",...} value`.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// /metrics as its samples, with the type each metric is declared with;
/// fails on any line that is neither a comment nor a well-formed sample, and
/// on any sample whose metric was not declared before it.
#[derive(Debug)]
struct Exposition {
    samples: Vec<Sample>,
    types: BTreeMap<String, String>,
}

impl Exposition {
    fn parse(text: &str) -> Exposition {
        let mut exposition = Exposition { samples: Vec::new(), types: BTreeMap::new() };
        assert!(text.ends_with('\n'), "the last line is not ended");
        for line in text.lines() {
            if let Some(declared) = line.strip_prefix("# TYPE ") {
                let (name, kind) = declared.split_once(' ').unwrap_or_else(|| panic!("bad TYPE: {line:?}"));
                assert!(is_name(name), "bad metric name in {line:?}");
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                    "bad type in {line:?}"
                );
                assert!(
                    exposition.types.insert(name.into(), kind.into()).is_none(),
                    "declared twice: {line:?}"
                );
            } else if let Some(help) = line.strip_prefix("# HELP ") {
                let name = help.split(' ').next().unwrap();
                assert!(is_name(name), "bad metric name in {line:?}");
            } else if !line.starts_with('#') {
                let sample = parse_sample(line).unwrap_or_else(|| panic!("not a sample: {line:?}"));
                assert!(exposition.family(&sample.name).is_some(), "undeclared: {line:?}");
                exposition.samples.push(sample);
            }
        }
        exposition
    }

    /// The declared metric a sample belongs to, and its type: a histogram's
    /// `_bucket`, `_sum` and `_count` belong to the histogram.
    fn family(&self, sample: &str) -> Option<(&str, &str)> {
        if let Some((name, kind)) = self.types.get_key_value(sample) {
            return Some((name, kind));
        }
        let base = ["_bucket", "_sum", "_count"].iter().find_map(|suffix| sample.strip_suffix(suffix))?;
        self.types
            .get_key_value(base)
            .filter(|(_, kind)| *kind == "histogram")
            .map(|(n, k)| (n.as_str(), k.as_str()))
    }

    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let labels: BTreeMap<String, String> =
            labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.samples.iter().find(|s| s.name == name && s.labels == labels).map(|s| s.value)
    }

    /// Checks that `name` is a histogram with cumulative buckets ending in
    /// `+Inf`, a sum and a count equal to the `+Inf` bucket; returns the
    /// count.
    fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        assert_eq!(
            self.types.get(name).map(String::as_str),
            Some("histogram"),
            "{name} is not declared a histogram"
        );
        let wanted: BTreeMap<String, String> =
            labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let buckets: Vec<(f64, f64)> = self
            .samples
            .iter()
            .filter(|s| s.name == format!("{name}_bucket"))
            .filter(|s| s.labels.iter().filter(|(k, _)| *k != "le").eq(wanted.iter()))
            .map(|s| (s.labels["le"].parse::<f64>().expect("le is a number"), s.value))
            .collect();
        assert!(buckets.len() > 2, "{name}{labels:?} has buckets: {buckets:?}");
        assert!(buckets.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1), "{name}: {buckets:?}");
        let (last_bound, last_count) = *buckets.last().unwrap();
        assert_eq!(last_bound, f64::INFINITY, "{name} ends with +Inf");
        let count = self.value(&format!("{name}_count"), labels).unwrap_or_else(|| panic!("{name}_count"));
        assert!(self.value(&format!("{name}_sum"), labels).is_some(), "{name}_sum");
        assert_eq!(count, last_count, "{name}: _count is the +Inf bucket");
        count
    }
}

fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn parse_sample(line: &str) -> Option<Sample> {
    let end = line.find(['{', ' '])?;
    let (name, mut rest) = line.split_at(end);
    if !is_name(name) {
        return None;
    }
    let mut labels = BTreeMap::new();
    if let Some(mut inside) = rest.strip_prefix('{') {
        loop {
            if let Some(after) = inside.strip_prefix('}') {
                rest = after;
                break;
            }
            let (label, after) = inside.split_once("=\"")?;
            let label = label.strip_prefix(',').unwrap_or(label);
            if !is_name(label) {
                return None;
            }
            let mut value = String::new();
            let mut chars = after.char_indices();
            let close = loop {
                match chars.next()? {
                    (i, '"') => break i,
                    (_, '\\') => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        c @ ('\\' | '"') => value.push(c),
                        _ => return None,
                    },
                    (_, c) => value.push(c),
                }
            };
            labels.insert(label.to_owned(), value);
            inside = &after[close + 1..];
        }
    }
    let value = rest.strip_prefix(' ')?;
    Some(Sample { name: name.to_owned(), labels, value: value.parse().ok()? })
}

/// Two members of one room, upgraded; one message sent to it, and received
/// by both.
fn a_room_message(server: &TestServer) -> (Client, Client) {
    let mut a = server.connect("/ws/metered");
    let mut b = server.connect("/ws/metered");
    send_text(&mut a, "hello");
    assert_eq!(recv_text(&mut a), "hello");
    assert_eq!(recv_text(&mut b), "hello");
    (a, b)
}

fn metrics(server: &TestServer) -> Exposition {
    let reply = server.get("/metrics");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    Exposition::parse(&reply.body)
}

fn metrics_are_text_exposition_with_the_three_histograms(scheme: Scheme) {
    let server = TestServer::start_scheme(scheme, config());
    let _members = a_room_message(&server);
    // Each figure is counted just after its bytes have left, which may be
    // just after the client has them.
    let settled = wait_until(PATIENCE, || {
        let m = metrics(&server);
        m.value("switchboard_handshake_duration_seconds_count", &[("outcome", "upgraded")]) == Some(2.0)
            && m.value("switchboard_room_delivery_latency_seconds_count", &[]) == Some(2.0)
    });
    assert!(settled, "{:?}", server.get("/metrics").body);
    let m = metrics(&server);
    assert_eq!(m.histogram("switchboard_handshake_duration_seconds", &[("outcome", "upgraded")]), 2.0);
    assert!(m.histogram("switchboard_handshake_duration_seconds", &[("outcome", "http")]) >= 1.0);
    assert_eq!(m.histogram("switchboard_room_delivery_latency_seconds", &[]), 2.0, "once per member");
    assert_eq!(m.histogram("switchboard_message_size_bytes", &[]), 1.0);
    assert_eq!(m.value("switchboard_message_size_bytes_sum", &[]), Some(5.0));
    assert_eq!(m.value("switchboard_message_size_bytes_bucket", &[("le", "16")]), Some(1.0));
    assert_eq!(m.value("switchboard_messages_in_total", &[]), Some(1.0));
    assert_eq!(m.types.get("switchboard_messages_in_total").map(String::as_str), Some("counter"));
    assert!(m.samples.iter().all(|s| s.name.starts_with("switchboard_")));
}

/// Where /stats keeps a sample of /metrics: the name without its prefix
/// (and a counter's `_total`, but for `connections_total`), then its label's
/// value; a histogram's sum, count or bucket within it.
fn json_path(sample: &Sample, family: &str, kind: &str) -> Vec<String> {
    let key = family.strip_prefix("switchboard_").unwrap();
    let key = match key.strip_suffix("_total") {
        Some(counted) if kind == "counter" && counted != "connections" => counted,
        _ => key,
    };
    let mut path = vec![key.to_owned()];
    path.extend(sample.labels.iter().filter(|(k, _)| *k != "le").map(|(_, v)| v.clone()));
    match &sample.name[family.len()..] {
        "_bucket" => path.extend(["buckets".to_owned(), sample.labels["le"].clone()]),
        "_sum" => path.push("sum".into()),
        "_count" => path.push("count".into()),
        _ => {}
    }
    path
}

fn stats_show_the_counts_metrics_shows(scheme: Scheme) {
    let server = TestServer::start_scheme(scheme, config());
    let _members = a_room_message(&server);
    assert!(wait_until(PATIENCE, || {
        metrics(&server).value("switchboard_room_delivery_latency_seconds_count", &[]) == Some(2.0)
    }));
    // Asking counts too: what moved between the two looks at /metrics was
    // the asking, and is left out.
    let before = metrics(&server);
    let stats = server.stats();
    let after = metrics(&server);
    let mut compared = BTreeSet::new();
    for sample in before.samples.iter().filter(|s| after.samples.contains(s)) {
        let (family, kind) = before.family(&sample.name).unwrap();
        // A gauge may move and come back while /stats is asked, as the
        // parked thread that answers it does.
        if kind == "gauge" {
            continue;
        }
        let path = json_path(sample, family, kind);
        let shown = path.iter().fold(&stats, |json, key| &json[key]);
        assert_eq!(shown.as_f64(), Some(sample.value), "{sample:?} is /stats {path:?}: {shown}");
        compared.insert(sample.name.clone());
    }
    for name in [
        "switchboard_connections_total",
        "switchboard_messages_in_total",
        "switchboard_bytes_in_total",
        "switchboard_messages_out_total",
        "switchboard_handshake_duration_seconds_count",
        "switchboard_handshake_duration_seconds_bucket",
        "switchboard_room_delivery_latency_seconds_sum",
        "switchboard_message_size_bytes_bucket",
    ] {
        assert!(compared.contains(name), "{name} not compared: {compared:?}");
    }
}

crate::both_schemes!(
    metrics_are_text_exposition_with_the_three_histograms,
    stats_show_the_counts_metrics_shows
);
