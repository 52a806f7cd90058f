//! The `alerts` table: a row per shop and metric under the metric's
//! `target`.

use chrono::NaiveDate;

use super::commit::{build_error, commit_table, Data};
use super::{metrics_for, RunConfig};
use crate::error::Result;
use crate::output::{self, AlertFacts, AlertRow, Facts, MetricRow};
use crate::scorecard::{alert_fires, AlertWhen};

/// Commits `alerts` for `day` and returns its row count: a row per shop and
/// metric whose value is under the metric's `target` with at least
/// `min_denominator` items, from `shop_daily` for one-day metrics and from
/// `rolling` (the day's `shop_rolling` rows) otherwise.
pub(super) fn alerts(
    cfg: &RunConfig,
    day: NaiveDate,
    rolling: &[MetricRow],
    provisional: bool,
) -> Result<usize> {
    let metrics = metrics_for(cfg, day);
    let daily =
        output::read_shop_daily(&cfg.output, &cfg.platform, day, cfg.shard)?.unwrap_or_default();
    let mut rows = Vec::new();
    for m in metrics.iter().filter(|m| m.target.is_some()) {
        let target = m.target.expect("filtered");
        let candidates: Vec<MetricRow> = if m.window_days > 1 {
            rolling
                .iter()
                .filter(|r| r.metric == m.id)
                .cloned()
                .collect()
        } else {
            daily
                .iter()
                .filter(|r| r.metric == m.id)
                .map(|r| MetricRow {
                    shop_id: r.shop_id.clone(),
                    metric: r.metric.clone(),
                    numerator: r.numerator,
                    denominator: r.denominator,
                    value: m.value(r.numerator, r.denominator),
                    rule_version: m.rule_version(),
                    window_days: 1,
                })
                .collect()
        };
        for r in candidates {
            // A null value (a dispute row without orders) raises none.
            if alert_fires(
                m.alert_when,
                r.value,
                r.denominator,
                m.min_denominator,
                target,
            ) {
                let side = match m.alert_when {
                    AlertWhen::Below => "below",
                    AlertWhen::Above => "above",
                };
                let message = m
                    .alert
                    .clone()
                    .unwrap_or_else(|| format!("{} {side} target {target}", m.id));
                rows.push(AlertRow {
                    row: r,
                    target,
                    message,
                });
            }
        }
    }
    let n = rows.len();
    let mut df = output::alerts(&mut rows).map_err(|e| build_error("alerts", day, e))?;
    let facts = AlertFacts {
        rules_hash: output::rules_hash(&cfg.rules, &metrics),
        provisional,
    };
    commit_table(
        cfg,
        "alerts",
        day,
        Data::Frame(&mut df),
        Facts::Alerts(facts),
    )?;
    Ok(n)
}
