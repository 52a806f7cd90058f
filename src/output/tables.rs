//! Building the metric tables' frames (SPEC §5): `shop_daily` and
//! `agent_daily` from a day's result, `shop_rolling` and `alerts` from their
//! rows. Each frame is sorted as its table is; `items` is in
//! [`super::items`].

use polars::prelude::*;

use crate::engine::DayResult;
use crate::model::Messages;
use crate::rules::{Kind, Metric};

/// The value of a metric row: a share for rates, seconds for mean latency.
pub fn value(kind: Kind, numerator: i64, denominator: i64) -> f64 {
    match kind {
        Kind::Rate => numerator as f64 / denominator as f64,
        Kind::MeanLatency => numerator as f64 / denominator as f64 / 1000.0,
    }
}

/// `shop_daily`: one row per shop and metric with a non-empty denominator,
/// sorted by shop_id, metric.
pub fn shop_daily(m: &Messages, metrics: &[&Metric], r: &DayResult) -> PolarsResult<DataFrame> {
    let mut rows: Vec<(&str, &str, i64, i64, f64, String)> = r
        .by_shop()
        .into_iter()
        .map(|((shop, k), c)| {
            let metric = metrics[k as usize];
            (
                m.shop_names[shop as usize].as_str(),
                metric.id.as_str(),
                c.numerator,
                c.denominator,
                value(metric.kind, c.numerator, c.denominator),
                metric.rule_version(),
            )
        })
        .collect();
    rows.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    DataFrame::new_infer_height(vec![
        Column::new(
            "shop_id".into(),
            rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        ),
        Column::new(
            "metric".into(),
            rows.iter().map(|r| r.1).collect::<Vec<_>>(),
        ),
        Column::new(
            "numerator".into(),
            rows.iter().map(|r| r.2).collect::<Vec<_>>(),
        ),
        Column::new(
            "denominator".into(),
            rows.iter().map(|r| r.3).collect::<Vec<_>>(),
        ),
        Column::new("value".into(), rows.iter().map(|r| r.4).collect::<Vec<_>>()),
        Column::new(
            "rule_version".into(),
            rows.iter().map(|r| r.5.as_str()).collect::<Vec<_>>(),
        ),
    ])
}

/// `agent_daily`: like `shop_daily` with `agent_id` (the agent of each item,
/// SPEC §2), sorted by shop_id, agent_id, metric. Its rows add up to
/// `shop_daily`'s: the shop rows are computed as their sums.
pub fn agent_daily(m: &Messages, metrics: &[&Metric], r: &DayResult) -> PolarsResult<DataFrame> {
    let mut rows: Vec<(&str, &str, &str, i64, i64, f64, String)> = r
        .by_agent
        .iter()
        .map(|(&(shop, agent, k), c)| {
            let metric = metrics[k as usize];
            (
                m.shop_names[shop as usize].as_str(),
                m.agent_names[agent as usize].as_str(),
                metric.id.as_str(),
                c.numerator,
                c.denominator,
                value(metric.kind, c.numerator, c.denominator),
                metric.rule_version(),
            )
        })
        .collect();
    rows.sort_by(|a, b| (a.0, a.1, a.2).cmp(&(b.0, b.1, b.2)));
    DataFrame::new_infer_height(vec![
        Column::new(
            "shop_id".into(),
            rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        ),
        Column::new(
            "agent_id".into(),
            rows.iter().map(|r| r.1).collect::<Vec<_>>(),
        ),
        Column::new(
            "metric".into(),
            rows.iter().map(|r| r.2).collect::<Vec<_>>(),
        ),
        Column::new(
            "numerator".into(),
            rows.iter().map(|r| r.3).collect::<Vec<_>>(),
        ),
        Column::new(
            "denominator".into(),
            rows.iter().map(|r| r.4).collect::<Vec<_>>(),
        ),
        Column::new("value".into(), rows.iter().map(|r| r.5).collect::<Vec<_>>()),
        Column::new(
            "rule_version".into(),
            rows.iter().map(|r| r.6.as_str()).collect::<Vec<_>>(),
        ),
    ])
}

/// A metric row of `shop_rolling` or an alert's source.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricRow {
    pub shop_id: String,
    pub metric: String,
    pub numerator: i64,
    pub denominator: i64,
    /// Null only for a scorecard row without a denominator (SPEC §8.2).
    pub value: Option<f64>,
    pub rule_version: String,
    pub window_days: u32,
}

/// A `value` column: plain when no value is null (as the message metrics'
/// always were), nullable otherwise.
fn value_column(values: impl Iterator<Item = Option<f64>>) -> Column {
    let v: Vec<Option<f64>> = values.collect();
    if v.iter().all(Option::is_some) {
        Column::new(
            "value".into(),
            v.into_iter().flatten().collect::<Vec<f64>>(),
        )
    } else {
        Column::new("value".into(), v)
    }
}

/// `shop_rolling` from its rows (sorted here by shop_id, metric).
pub fn shop_rolling(rows: &mut [MetricRow]) -> PolarsResult<DataFrame> {
    rows.sort_by(|a, b| (&a.shop_id, &a.metric).cmp(&(&b.shop_id, &b.metric)));
    DataFrame::new_infer_height(vec![
        Column::new(
            "shop_id".into(),
            rows.iter().map(|r| r.shop_id.as_str()).collect::<Vec<_>>(),
        ),
        Column::new(
            "metric".into(),
            rows.iter().map(|r| r.metric.as_str()).collect::<Vec<_>>(),
        ),
        Column::new(
            "numerator".into(),
            rows.iter().map(|r| r.numerator).collect::<Vec<_>>(),
        ),
        Column::new(
            "denominator".into(),
            rows.iter().map(|r| r.denominator).collect::<Vec<_>>(),
        ),
        value_column(rows.iter().map(|r| r.value)),
        Column::new(
            "rule_version".into(),
            rows.iter()
                .map(|r| r.rule_version.as_str())
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "window_days".into(),
            rows.iter()
                .map(|r| r.window_days as i32)
                .collect::<Vec<_>>(),
        ),
    ])
}

/// One alert: a shop under a metric's target.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRow {
    pub row: MetricRow,
    pub target: f64,
    pub message: String,
}

/// `alerts` from its rows (sorted here by shop_id, metric).
pub fn alerts(rows: &mut [AlertRow]) -> PolarsResult<DataFrame> {
    rows.sort_by(|a, b| (&a.row.shop_id, &a.row.metric).cmp(&(&b.row.shop_id, &b.row.metric)));
    DataFrame::new_infer_height(vec![
        Column::new(
            "shop_id".into(),
            rows.iter()
                .map(|r| r.row.shop_id.as_str())
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "metric".into(),
            rows.iter()
                .map(|r| r.row.metric.as_str())
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "rule_version".into(),
            rows.iter()
                .map(|r| r.row.rule_version.as_str())
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "numerator".into(),
            rows.iter().map(|r| r.row.numerator).collect::<Vec<_>>(),
        ),
        Column::new(
            "denominator".into(),
            rows.iter().map(|r| r.row.denominator).collect::<Vec<_>>(),
        ),
        value_column(rows.iter().map(|r| r.row.value)),
        Column::new(
            "target".into(),
            rows.iter().map(|r| r.target).collect::<Vec<_>>(),
        ),
        Column::new(
            "message".into(),
            rows.iter().map(|r| r.message.as_str()).collect::<Vec<_>>(),
        ),
    ])
}
