//! `/stats`: the text `/metrics` serves, reshaped as one JSON object, so
//! that the two views cannot disagree.
//!
//! The rules, applied to every metric in the text:
//!
//! * a name loses the `switchboard_` prefix, and a counter its `_total`
//!   suffix (`switchboard_messages_in_total` is `messages_in`); the one
//!   counter whose key keeps it is `connections_total`;
//! * a name that starts with `backplane_` is a field of the `backplane`
//!   object, without that prefix;
//! * a metric without labels is a number; one with a label is an object
//!   keyed by the label's values (`"http_responses": {"404": 1}`), empty
//!   until a value is counted;
//! * a histogram is `{"count", "sum", "buckets": {le: cumulative count}}`,
//!   inside an object keyed by its label's values if it has a label;
//! * an info metric's labels are string fields (`backplane.node_id`), and
//!   the gauge `up` is `true` or `false`.

use serde_json::{Map, Number, Value};

/// The prefix of every metric the server exports.
const PREFIX: &str = "switchboard_";

/// Counters whose key keeps the `_total` the format adds: the name was
/// `connections_total` before there was a registry.
const KEEPS_TOTAL: [&str; 1] = ["connections"];

/// `/stats`, from the text exposition of `/metrics`.
pub(crate) fn from_text(text: &str) -> String {
    let mut root = Map::new();
    let mut family = Family::default();
    for line in text.lines() {
        if let Some(declared) = line.strip_prefix("# TYPE ") {
            family = Family::declared(declared);
            if let Some(empty) = family.empty_value() {
                let (object, key) = family.place(&mut root);
                object.insert(key, empty);
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        if let Some(sample) = Sample::parse(line) {
            family.add(&mut root, &sample);
        }
    }
    serde_json::to_string_pretty(&Value::Object(root)).expect("Bug: a JSON value always serializes")
}

/// The metric the lines being read belong to, from its `# TYPE` line.
#[derive(Debug, Default)]
struct Family {
    /// Its name as the text has it, prefix and `_total` included.
    name: String,
    kind: String,
}

impl Family {
    fn declared(declared: &str) -> Family {
        let (name, kind) = declared.split_once(' ').unwrap_or((declared, ""));
        Family { name: name.to_owned(), kind: kind.to_owned() }
    }

    fn is_info(&self) -> bool {
        self.kind == "gauge" && self.name.ends_with("_info")
    }

    /// What the key holds before any sample: labelled metrics and
    /// histograms are objects, even empty ones; an info metric has no key.
    fn empty_value(&self) -> Option<Value> {
        (!self.is_info()).then(|| Value::Object(Map::new()))
    }

    /// The object its key goes in, and the key.
    fn place<'a>(&self, root: &'a mut Map<String, Value>) -> (&'a mut Map<String, Value>, String) {
        let name = self.name.strip_prefix(PREFIX).unwrap_or(&self.name);
        let name = match name.strip_suffix("_total") {
            Some(counted) if self.kind == "counter" && !KEEPS_TOTAL.contains(&counted) => counted,
            _ => name,
        };
        match name.strip_prefix("backplane_") {
            Some(field) => (object_at(root, "backplane"), field.to_owned()),
            None => (root, name.to_owned()),
        }
    }

    fn add(&self, root: &mut Map<String, Value>, sample: &Sample<'_>) {
        let (object, key) = self.place(root);
        if self.is_info() {
            for (label, value) in &sample.labels {
                object.insert(label.clone(), Value::String(value.clone()));
            }
            return;
        }
        if self.kind == "histogram" {
            let suffix = sample.name.strip_prefix(self.name.as_str()).unwrap_or_default();
            let mut histogram = object_at(object, &key);
            if let Some((_, value)) = sample.labels.iter().find(|(label, _)| label != "le") {
                histogram = object_at(histogram, value);
            }
            match suffix {
                "_bucket" => {
                    let le = sample.labels.iter().find(|(label, _)| label == "le");
                    if let Some((_, le)) = le {
                        object_at(histogram, "buckets").insert(le.clone(), number(sample.value));
                    }
                }
                "_sum" => {
                    histogram.insert("sum".into(), number(sample.value));
                }
                "_count" => {
                    histogram.insert("count".into(), number(sample.value));
                }
                _ => {}
            }
            return;
        }
        let value = match key.as_str() {
            "up" if self.kind == "gauge" => Value::Bool(sample.value == "1"),
            _ => number(sample.value),
        };
        match sample.labels.first() {
            Some((_, label)) => {
                object_at(object, &key).insert(label.clone(), value);
            }
            None => {
                object.insert(key, value);
            }
        }
    }
}

/// The object under `key`, made if it is not there yet.
fn object_at<'a>(object: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let slot = object.entry(key).or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut().expect("Bug: the slot was just made an object")
}

/// A value as JSON: an integer where it is one, else a float.
fn number(text: &str) -> Value {
    if let Ok(n) = text.parse::<u64>() {
        return n.into();
    }
    if let Ok(n) = text.parse::<i64>() {
        return n.into();
    }
    text.parse::<f64>().ok().and_then(Number::from_f64).map_or(Value::Null, Value::Number)
}

/// One sample line: `name{label="value",...} value`.
#[derive(Debug)]
struct Sample<'a> {
    name: &'a str,
    labels: Vec<(String, String)>,
    value: &'a str,
}

impl<'a> Sample<'a> {
    fn parse(line: &'a str) -> Option<Sample<'a>> {
        let Some((name, rest)) = line.split_once('{') else {
            let (name, value) = line.split_once(' ')?;
            return Some(Sample { name, labels: Vec::new(), value });
        };
        let mut labels = Vec::new();
        let mut rest = rest;
        while let Some((label, after)) = rest.split_once("=\"") {
            let (value, after) = unescape_until_quote(after)?;
            labels.push((label.trim_start_matches(',').to_owned(), value));
            rest = after;
        }
        let value = rest.strip_prefix('}')?.trim_start();
        Some(Sample { name, labels, value })
    }
}

/// A label value up to its closing quote, unescaped, and what follows it.
fn unescape_until_quote(text: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((value, &text[i + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => value.push('\n'),
                escaped => value.push(escaped),
            },
            c => value.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(text: &str) -> Value {
        serde_json::from_str(&from_text(text)).unwrap()
    }

    #[test]
    fn counters_lose_prefix_and_total_but_connections_total() {
        let stats = json(
            "# HELP switchboard_messages_in_total Messages.\n\
             # TYPE switchboard_messages_in_total counter\n\
             switchboard_messages_in_total 3\n\
             # TYPE switchboard_connections_total counter\n\
             switchboard_connections_total 2\n\
             # TYPE switchboard_threads gauge\n\
             switchboard_threads 4\n",
        );
        assert_eq!(stats, serde_json::json!({ "messages_in": 3, "connections_total": 2, "threads": 4 }));
    }

    #[test]
    fn labels_key_objects_that_exist_before_any_value() {
        let stats = json(
            "# TYPE switchboard_http_responses_total counter\n\
             switchboard_http_responses_total{status=\"404\"} 1\n\
             switchboard_http_responses_total{status=\"200\"} 2\n\
             # TYPE switchboard_upgrades_refused_total counter\n",
        );
        assert_eq!(
            stats,
            serde_json::json!({ "http_responses": { "404": 1, "200": 2 }, "upgrades_refused": {} })
        );
    }

    #[test]
    fn the_backplane_is_an_object_with_its_identity_and_a_boolean_up() {
        let stats = json(
            "# TYPE switchboard_backplane_info gauge\n\
             switchboard_backplane_info{node_id=\"a \\\"b\\\"\"} 1\n\
             # TYPE switchboard_backplane_up gauge\n\
             switchboard_backplane_up 1\n\
             # TYPE switchboard_backplane_published_total counter\n\
             switchboard_backplane_published_total 7\n",
        );
        assert_eq!(
            stats,
            serde_json::json!({ "backplane": { "node_id": "a \"b\"", "up": true, "published": 7 } })
        );
    }

    #[test]
    fn histograms_have_count_sum_and_cumulative_buckets_by_label() {
        let stats = json(
            "# TYPE switchboard_size_bytes histogram\n\
             switchboard_size_bytes_bucket{le=\"16\"} 1\n\
             switchboard_size_bytes_bucket{le=\"+Inf\"} 2\n\
             switchboard_size_bytes_sum 40\n\
             switchboard_size_bytes_count 2\n\
             # TYPE switchboard_took_seconds histogram\n\
             switchboard_took_seconds_bucket{outcome=\"upgraded\",le=\"0.5\"} 1\n\
             switchboard_took_seconds_bucket{outcome=\"upgraded\",le=\"+Inf\"} 1\n\
             switchboard_took_seconds_sum{outcome=\"upgraded\"} 0.25\n\
             switchboard_took_seconds_count{outcome=\"upgraded\"} 1\n",
        );
        assert_eq!(
            stats,
            serde_json::json!({
                "size_bytes": { "count": 2, "sum": 40, "buckets": { "16": 1, "+Inf": 2 } },
                "took_seconds": {
                    "upgraded": { "count": 1, "sum": 0.25, "buckets": { "0.5": 1, "+Inf": 1 } }
                },
            })
        );
    }
}
