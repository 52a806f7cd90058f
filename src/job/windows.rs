//! Rolling windows (`shop_rolling`): for each metric in force with
//! `window_days` > 1, the daily numerators and denominators of its id summed
//! over the window's days, whatever version each day used.
//!
//! Two steps: [`backfill_windows`] first computes (and commits) the window
//! days that have no `shop_daily` partition yet, for every platform of the
//! day at once; [`rolling`] then only reads the committed partitions and
//! sums them.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;

use super::commit::{build_error, commit_table, is_provisional, Data};
use super::day::{daily, Carried};
use super::scorecard::ScoreTables;
use super::{line, metrics_for, Progress, RunConfig};
use crate::error::Result;
use crate::output::{self, Facts, MetricRow, RollingFacts, WindowFact};
use crate::rules::{Metric, ScoreKind};

/// The widest `window_days` of `cfg`'s metrics in force on `day` (1 when
/// none has a window).
fn widest_window(cfg: &RunConfig, day: NaiveDate) -> u32 {
    metrics_for(cfg, day)
        .iter()
        .map(|m| m.window_days)
        .max()
        .unwrap_or(1)
}

/// How many days before `day` `cfg`'s windows of `day` reach back to, when
/// one of those days has no `shop_daily` partition (and will be computed
/// from the input), else 0.
pub(super) fn window_days_to_compute(cfg: &RunConfig, day: NaiveDate) -> u32 {
    let back = widest_window(cfg, day).saturating_sub(1);
    let missing = (1..=back).any(|k| {
        let d = day - chrono::Duration::days(k as i64);
        !output::is_committed(&cfg.output, "shop_daily", &cfg.platform, d, cfg.shard)
    });
    if missing {
        back
    } else {
        0
    }
}

/// The window days a run computed that had no messages. A first rolling
/// run has dozens (30-day windows over an input that starts later): they
/// are reported in one line per run ([`EmptyWindowDays::summary`]), not one
/// each. Each is committed with empty partitions, whatever the input (a
/// single file, or `dt=` folders without one for the day), so that the next
/// run finds it committed and does not report it again.
#[derive(Default)]
pub(super) struct EmptyWindowDays(BTreeSet<NaiveDate>);

impl EmptyWindowDays {
    /// The run's line about them, if any.
    pub(super) fn summary(&self) -> Option<String> {
        let (first, last) = (self.0.first()?, self.0.last()?);
        Some(match self.0.len() {
            1 => format!("  warning: no messages on window day {first} (committed empty)"),
            n => format!(
                "  warning: no messages on {n} window day(s) from {first} to {last} (committed empty)"
            ),
        })
    }
}

/// Computes the window days of `day`'s rolling metrics that have no
/// `shop_daily` partition yet, newest first, each once for all the
/// platforms of `cfgs` that need it (one read per day); [`rolling`] then
/// finds them committed. Those without messages are added to `empty`.
pub(super) fn backfill_windows(
    cfgs: &[&RunConfig],
    day: NaiveDate,
    carried: &mut Carried,
    tables: &ScoreTables,
    empty: &mut EmptyWindowDays,
    progress: Progress,
) -> Result<()> {
    let mut need: BTreeMap<NaiveDate, Vec<&RunConfig>> = BTreeMap::new();
    for &c in cfgs {
        for back in 1..widest_window(c, day) {
            let d = day - chrono::Duration::days(back as i64);
            if !output::is_committed(&c.output, "shop_daily", &c.platform, d, c.shard) {
                need.entry(d).or_default().push(c);
            }
        }
    }
    // One line for all the days to compute (each day with messages then
    // shows its read).
    if let (Some(&first), Some(&last)) = (need.keys().next(), need.keys().next_back()) {
        let needs = if need.values().any(|who| who.len() > 1) {
            "windows need"
        } else {
            "window needs"
        };
        line(
            progress,
            &match need.len() {
                1 => format!(
                    "  {day}: the {needs} {first}, which has no shop_daily partition: computing it"
                ),
                n => format!(
                    "  {day}: the {needs} {last} back to {first} ({n} days without a shop_daily partition): computing them"
                ),
            },
        );
    }
    for (d, who) in need.into_iter().rev() {
        let summaries = daily(&who, d, true, carried, tables, progress)?;
        if summaries.iter().all(|s| s.messages_on_day == 0) {
            empty.0.insert(d);
        }
    }
    Ok(())
}

/// One day's rolling windows, summed.
pub(super) struct Window<'a> {
    /// The metrics in force with a window.
    metrics: Vec<&'a Metric>,
    /// A row per metric and shop with a non-empty denominator.
    pub(super) rows: Vec<MetricRow>,
    /// The window days whose `shop_daily` is provisional.
    provisional_days: Vec<String>,
}

/// Sums `cfg`'s windows of `day` over the window days' committed
/// `shop_daily` rows (a day without a partition adds nothing: see
/// [`backfill_windows`], which is called first).
pub(super) fn rolling(cfg: &RunConfig, day: NaiveDate) -> Result<Window<'_>> {
    let metrics: Vec<&Metric> = metrics_for(cfg, day)
        .into_iter()
        .filter(|m| m.window_days > 1)
        .collect();
    let widest = metrics.iter().map(|m| m.window_days).max().unwrap_or(0);
    // (metric id, shop) → (numerator, denominator)
    let mut sums: BTreeMap<(&str, String), (i64, i64)> = BTreeMap::new();
    let mut provisional_days = Vec::new();
    for back in 0..widest {
        let d = day - chrono::Duration::days(back as i64);
        let Some(rows) = output::read_shop_daily(&cfg.output, &cfg.platform, d, cfg.shard)? else {
            continue;
        };
        if is_provisional(cfg, d) {
            provisional_days.push(d.to_string());
        }
        for r in rows {
            for m in metrics
                .iter()
                .filter(|m| m.id == r.metric && back < m.window_days)
            {
                let e = sums.entry((m.id.as_str(), r.shop_id.clone())).or_default();
                e.0 += r.numerator;
                e.1 += r.denominator;
            }
        }
    }
    let rows: Vec<MetricRow> = sums
        .into_iter()
        .filter_map(|((id, shop), (num, den))| {
            let m = metrics
                .iter()
                .find(|m| m.id == id)
                .expect("summed only for these metrics");
            // §8.2: dispute rows exist where either side is > 0.
            let dispute = m.score == Some(ScoreKind::DisputeRefundRate);
            if !(den > 0 || (dispute && num > 0)) {
                return None;
            }
            Some(MetricRow {
                shop_id: shop,
                metric: id.to_string(),
                numerator: num,
                denominator: den,
                value: m.value(num, den),
                rule_version: m.rule_version(),
                window_days: m.window_days,
            })
        })
        .collect();
    Ok(Window {
        metrics,
        rows,
        provisional_days,
    })
}

/// Commits `window` as `shop_rolling` of `day` (sorting its rows as the
/// table is).
pub(super) fn commit_rolling(cfg: &RunConfig, day: NaiveDate, window: &mut Window) -> Result<()> {
    let mut df =
        output::shop_rolling(&mut window.rows).map_err(|e| build_error("shop_rolling", day, e))?;
    let facts = RollingFacts {
        rules_source: cfg.rules.source.clone(),
        rules_hash: output::rules_hash(&cfg.rules, &metrics_for(cfg, day)),
        windows: window
            .metrics
            .iter()
            .map(|m| WindowFact {
                metric: m.id.clone(),
                window_days: m.window_days,
            })
            .collect(),
        provisional: !window.provisional_days.is_empty(),
        provisional_days: window.provisional_days.clone(),
    };
    commit_table(
        cfg,
        "shop_rolling",
        day,
        Data::Frame(&mut df),
        Facts::Rolling(facts),
    )
}
