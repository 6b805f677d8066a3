//! Metrics by one label, whose values come from fixed lists: whatever a
//! client or a handler does, it cannot add series.

use prometheus_client::encoding::{EncodeMetric, MetricEncoder};
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;
use tungstenite::protocol::frame::coding::CloseCode;

/// The HTTP statuses the server answers with, and the reason each gives a
/// refused upgrade. Anything else is counted as `other`, so that no handler
/// or client can add series.
const STATUSES: [(u16, &str, &str); 15] = [
    (200, "200", "ok"),
    (204, "204", "no_content"),
    (400, "400", "bad_request"),
    (401, "401", "unauthorized"),
    (403, "403", "forbidden"),
    (404, "404", "not_found"),
    (405, "405", "method_not_allowed"),
    (408, "408", "timeout"),
    (414, "414", "target_too_long"),
    (426, "426", "upgrade_required"),
    (429, "429", "too_many_requests"),
    (431, "431", "head_too_large"),
    (500, "500", "internal_error"),
    (503, "503", "unavailable"),
    (505, "505", "http_version_not_supported"),
];

/// The close codes the server sends; anything else is counted as `other`.
const CLOSE_CODES: [(u16, &str); 7] = [
    (1000, "1000"),
    (1001, "1001"),
    (1002, "1002"),
    (1007, "1007"),
    (1008, "1008"),
    (1009, "1009"),
    (1011, "1011"),
];

/// A status as its label value.
pub(super) fn status_label(status: u16) -> &'static str {
    STATUSES.iter().find(|(s, ..)| *s == status).map_or("other", |(_, label, _)| label)
}

/// A refused upgrade's status as its reason.
pub(super) fn refusal_label(status: u16) -> &'static str {
    STATUSES.iter().find(|(s, ..)| *s == status).map_or("other", |(.., reason)| reason)
}

/// A close code as its label value.
pub(super) fn close_code_label(code: CloseCode) -> &'static str {
    let code = u16::from(code);
    CLOSE_CODES.iter().find(|(c, _)| *c == code).map_or("other", |(_, label)| label)
}

/// The label set of a [`ByLabel`]: one label, its value from a fixed list.
type Label = [(&'static str, &'static str); 1];

/// A metric by one label. Each value is a series once it has been counted;
/// the metric's `# HELP` and `# TYPE` show from the start, so that `/stats`
/// has its object, empty, from the start too.
#[derive(Debug, Clone)]
pub(super) struct ByLabel<M, C = fn() -> M> {
    key: &'static str,
    family: Family<Label, M, C>,
}

impl<M, C> ByLabel<M, C>
where
    M: EncodeMetric + TypedMetric + Clone + std::fmt::Debug + Send + Sync + 'static,
    C: MetricConstructor<M> + Clone + std::fmt::Debug + Send + Sync + 'static,
{
    pub(super) fn register(
        registry: &mut Registry,
        name: &str,
        help: &str,
        key: &'static str,
        new: C,
    ) -> Self {
        let by_label = ByLabel { key, family: Family::new_with_constructor(new) };
        registry.register(name, help, by_label.clone());
        by_label
    }

    /// The series for `value`, made on first use.
    pub(super) fn get(&self, value: &'static str) -> M {
        self.family.get_or_create_owned(&[(self.key, value)])
    }
}

impl<M, C> EncodeMetric for ByLabel<M, C>
where
    M: EncodeMetric + TypedMetric,
    C: MetricConstructor<M>,
{
    fn encode(&self, encoder: MetricEncoder) -> std::fmt::Result {
        self.family.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        M::TYPE
    }
}
