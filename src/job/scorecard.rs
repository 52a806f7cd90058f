//! The scorecard of a run (SPEC §8): its tables, loaded once per run; the
//! consult buyer-days the message engine finds for it; and each bucket's
//! scorecard rows and items, merged into that bucket's daily frames.
//!
//! Everything here is used only when a platform has scorecard metrics in
//! force whose tables were given: a message-only run never sorts, merges or
//! widens a frame, so its tables stay byte for byte what they were.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::NaiveDate;
use polars::prelude::*;

use super::{line, Progress, RunConfig};
use crate::engine::DayResult as MessageResult;
use crate::error::Result;
use crate::model::{day_number, Messages};
use crate::rules::{Metric, Policy, Responders, Unit, Unreplied};
use crate::scorecard::{self, ConsultDay, DayIndex, LocalDays, ScoreKind, Table, Tables};

/// The tables of each platform of the run (by platform name), loaded once.
#[derive(Default)]
pub(super) struct ScoreTables(BTreeMap<String, Arc<Tables>>);

impl ScoreTables {
    /// Loads the tables `cfgs` were given, for the local days of `days`
    /// reaching back over the widest window of any metric (the back-filled
    /// window days) and one day after the last. Platforms sharing input
    /// settings share one load; each table is checked for bad rows.
    pub(super) fn load(
        cfgs: &[RunConfig],
        days: (NaiveDate, NaiveDate),
        progress: Progress,
    ) -> Result<ScoreTables> {
        let mut out = ScoreTables::default();
        if !cfgs.iter().any(|c| c.tables.any()) {
            return Ok(out);
        }
        let mut by_settings: Vec<(String, Arc<Tables>)> = Vec::new();
        for c in cfgs {
            let key = c.rules.input.canonical();
            if let Some((_, t)) = by_settings.iter().find(|(k, _)| *k == key) {
                out.0.insert(c.platform.clone(), t.clone());
                continue;
            }
            let widest = c.rules.metrics.iter().map(|m| m.window_days).max();
            let back = widest.unwrap_or(1) as i32 - 1;
            let local = LocalDays::for_run(day_number(days.0) - back, day_number(days.1));
            let t = Arc::new(load_tables(c, local, progress)?);
            by_settings.push((key, t.clone()));
            out.0.insert(c.platform.clone(), t);
        }
        Ok(out)
    }

    /// The tables of a platform (`None` when the run was given none).
    pub(super) fn of(&self, platform: &str) -> Option<Arc<Tables>> {
        self.0.get(platform).cloned()
    }
}

/// Loads and checks the tables of one configuration.
fn load_tables(c: &RunConfig, days: LocalDays, progress: Progress) -> Result<Tables> {
    let input = &c.rules.input;
    let p = &c.tables;
    let mut t = Tables::default();
    if let Some(path) = &p.orders {
        t.orders = Some(own(
            c,
            scorecard::load_orders(path, &input.orders, input, days)?,
            |r| &r.shop,
        ));
    }
    if let Some(path) = &p.refunds {
        t.refunds = Some(own(
            c,
            scorecard::load_refunds(path, &input.refunds, input, days)?,
            |r| &r.shop,
        ));
    }
    if let Some(path) = &p.complaints {
        let table = scorecard::load_complaints(path, &input.complaints, input, days)?;
        t.complaints = Some(own(c, table, |r| &r.shop));
    }
    if let Some(path) = &p.ratings {
        t.ratings = Some(own(
            c,
            scorecard::load_ratings(path, &input.ratings, input, days)?,
            |r| &r.shop,
        ));
    }
    let stats = [
        ("orders", t.orders.as_ref().map(|x| &x.stats)),
        ("refunds", t.refunds.as_ref().map(|x| &x.stats)),
        ("complaints", t.complaints.as_ref().map(|x| &x.stats)),
        ("ratings", t.ratings.as_ref().map(|x| &x.stats)),
    ];
    for (name, s) in stats {
        let Some(s) = s else { continue };
        line(
            progress,
            &format!(
                "{name}: {} file(s), {} rows read, {} bad, {} duplicate, {} ignored",
                s.files, s.rows_read, s.bad_rows, s.duplicates, s.ignored
            ),
        );
        for ex in &s.bad_examples {
            line(
                progress,
                &format!("  warning: bad {name} row skipped: {ex}"),
            );
        }
        s.check(name, input.max_bad_row_share, c.strict)?;
    }
    Ok(t)
}

/// Keeps the rows of the shops of the run's shard.
fn own<R>(c: &RunConfig, mut t: Table<R>, shop: impl Fn(&R) -> &String) -> Table<R> {
    if !c.shard.is_whole() {
        t.rows.retain(|r| c.shard.owns(Some(shop(r))));
    }
    t
}

/// Empty tables standing for the ones `paths` gives (for
/// [`skip_reason`] before anything is loaded).
pub(super) fn given(paths: &super::TablePaths) -> Tables {
    Tables {
        orders: paths.orders.as_ref().map(|_| Table::default()),
        refunds: paths.refunds.as_ref().map(|_| Table::default()),
        complaints: paths.complaints.as_ref().map(|_| Table::default()),
        ratings: paths.ratings.as_ref().map(|_| Table::default()),
    }
}

/// Why a scorecard metric is skipped (its tables not given), or `None`.
pub(super) fn skip_reason(m: &Metric, tables: Option<&Tables>) -> Option<String> {
    let kind = m.score?;
    let empty = Tables::default();
    let missing = scorecard::missing_tables(kind, tables.unwrap_or(&empty));
    (!missing.is_empty()).then(|| {
        let flags: Vec<String> = missing.iter().map(|t| format!("--{t}")).collect();
        format!("skipped {}: needs {}", m.id, flags.join(" and "))
    })
}

/// The synthetic metrics whose items are the consult buyer-days (§8.2) of
/// `scores`: one `buyer` rate with `responders = ["manual"]` per distinct
/// `hours` among the consult kinds (its threshold and outcome unused).
pub(super) fn consult_metrics(scores: &[&Metric]) -> Vec<Metric> {
    let mut out: Vec<Metric> = Vec::new();
    for m in scores {
        if !m.score.is_some_and(ScoreKind::uses_consults) || out.iter().any(|c| c.hours == m.hours)
        {
            continue;
        }
        out.push(Metric {
            id: format!("consult@{}", m.hours),
            unit: Unit::Buyer,
            kind: crate::rules::Kind::Rate,
            threshold_ms: Some(1000),
            any_miss: false,
            hours: m.hours,
            responders: Responders::MANUAL,
            cross_day: Policy::Keep,
            bot_only: Policy::Keep,
            cap_ms: None,
            unreplied: Unreplied::Fail,
            window_days: 1,
            session_gap_ms: None,
            min_denominator: 1,
            target: None,
            alert: None,
            effective_from: None,
            effective_to: None,
            alert_when: Default::default(),
            score: None,
            scores: Vec::new(),
            resolved_only: false,
        });
    }
    out
}

/// A consult buyer-day, owned (the bucket's names are gone by the time
/// the bucket's rows are merged).
pub(super) struct Consult {
    /// Index into the consult metrics (its hours).
    hours: usize,
    shop: String,
    buyer: String,
    start: i64,
    agent: String,
}

/// What a bucket hands to the merge: its consult buyer-days and the
/// greatest shop name it holds (`None` for a bucket without messages).
pub(super) struct BucketConsults {
    consults: Vec<Consult>,
    last_shop: Option<String>,
}

/// The consult buyer-days of a bucket from the consult metrics' result.
pub(super) fn bucket_consults(msgs: &Messages, r: Option<&MessageResult>) -> BucketConsults {
    let consults = r
        .map(|r| {
            r.items
                .iter()
                .map(|it| Consult {
                    hours: it.metric as usize,
                    shop: msgs.shop_names[it.shop as usize].clone(),
                    buyer: msgs.buyer_names[it.buyer as usize].clone(),
                    start: it.start,
                    agent: msgs.agent_names[it.agent as usize].clone(),
                })
                .collect()
        })
        .unwrap_or_default();
    BucketConsults {
        consults,
        last_shop: msgs.shop_names.iter().max().cloned(),
    }
}

/// A platform's scorecard for one day: its metrics, tables and consult
/// hours, and which shops earlier buckets took.
pub(super) struct DayScore<'a> {
    pub(super) metrics: Vec<&'a Metric>,
    pub(super) consult: Vec<Metric>,
    tables: Arc<Tables>,
    day: i32,
    /// The greatest shop of the buckets merged so far.
    done_up_to: Option<String>,
    /// Buckets still to come (the last takes every remaining shop).
    buckets_left: usize,
    /// (counted items) per metric, as the day's totals.
    pub(super) totals: Vec<u64>,
}

impl<'a> DayScore<'a> {
    pub(super) fn new(metrics: Vec<&'a Metric>, tables: Arc<Tables>, day: NaiveDate) -> Self {
        DayScore {
            consult: consult_metrics(&metrics),
            totals: vec![0; metrics.len()],
            metrics,
            tables,
            day: day_number(day),
            done_up_to: None,
            buckets_left: 1,
        }
    }

    pub(super) fn set_buckets(&mut self, n: usize) {
        self.buckets_left = n.max(1);
    }

    /// Merges the scorecard of the next bucket (in bucket order) into its
    /// frames: the shops after the last bucket's up to this bucket's last
    /// (every remaining shop for the last bucket).
    pub(super) fn merge(
        &mut self,
        b: BucketConsults,
        shop: &mut DataFrame,
        agent: &mut DataFrame,
        items: Option<&mut DataFrame>,
    ) -> PolarsResult<()> {
        self.buckets_left = self.buckets_left.saturating_sub(1);
        let last = self.buckets_left == 0;
        let hi = match (&b.last_shop, last) {
            (_, true) => None,
            (Some(s), false) => Some(s.clone()),
            // A bucket without messages takes no shop.
            (None, false) => return Ok(()),
        };
        let lo = self.done_up_to.clone();
        let in_range = |s: &str| {
            lo.as_deref().is_none_or(|lo| s > lo) && hi.as_deref().is_none_or(|hi| s <= hi)
        };
        if hi.is_some() {
            self.done_up_to = hi.clone();
        }
        let tables = subset(&self.tables, &in_range);
        let index = DayIndex::new(self.day, &tables);
        let mut rows = Rows::default();
        for (k, m) in self.metrics.iter().enumerate() {
            let Some(def) = m.score_metric() else {
                continue;
            };
            let consults: Vec<ConsultDay> =
                match self.consult.iter().position(|c| c.hours == m.hours) {
                    Some(h) if def.kind.uses_consults() => b
                        .consults
                        .iter()
                        .filter(|c| c.hours == h)
                        .map(|c| ConsultDay {
                            shop: &c.shop,
                            buyer: &c.buyer,
                            start_utc_ms: c.start,
                            agent: &c.agent,
                        })
                        .collect(),
                    _ => Vec::new(),
                };
            let Some(result) = index.compute(&def, &consults) else {
                continue;
            };
            self.totals[k] += result.items.len() as u64;
            rows.add(m, result);
        }
        if rows.shop.is_empty() && rows.items.is_empty() {
            return Ok(());
        }
        merge_sorted(shop, rows.shop_frame()?, &["shop_id", "metric"])?;
        merge_sorted(
            agent,
            rows.agent_frame()?,
            &["shop_id", "agent_id", "metric"],
        )?;
        if let Some(items) = items {
            let keys = ["shop_id", "agent_id", "metric", "buyer_id", "start"];
            merge_sorted(items, rows.items_frame()?, &keys)?;
        }
        Ok(())
    }
}

/// The rows of the shops `keep` takes.
fn subset(t: &Tables, keep: &dyn Fn(&str) -> bool) -> Tables {
    fn part<R: Clone>(t: &Option<Table<R>>, keep: impl Fn(&R) -> bool) -> Option<Table<R>> {
        t.as_ref().map(|t| Table {
            rows: t.rows.iter().filter(|r| keep(r)).cloned().collect(),
            stats: t.stats.clone(),
        })
    }
    Tables {
        orders: part(&t.orders, |r| keep(&r.shop)),
        refunds: part(&t.refunds, |r| keep(&r.shop)),
        complaints: part(&t.complaints, |r| keep(&r.shop)),
        ratings: part(&t.ratings, |r| keep(&r.shop)),
    }
}

/// `a` with `b`'s rows, sorted (stably) by `keys`: the tables' order (§5).
fn merge_sorted(a: &mut DataFrame, b: DataFrame, keys: &[&str]) -> PolarsResult<()> {
    a.vstack_mut_owned(b)?;
    let sorted = a.sort(
        keys.iter().map(|k| k.to_string()).collect::<Vec<_>>(),
        SortMultipleOptions::default().with_maintain_order(true),
    )?;
    *a = sorted;
    Ok(())
}

/// A row of `agent_daily`: shop, agent, metric, numerator, denominator,
/// value, rule_version.
type AgentRow = (String, String, String, i64, i64, Option<f64>, String);

/// One bucket's scorecard rows, gathered over its metrics.
#[derive(Default)]
struct Rows {
    /// (shop, metric, numerator, denominator, value, rule_version)
    shop: Vec<(String, String, i64, i64, Option<f64>, String)>,
    agent: Vec<AgentRow>,
    items: Vec<(String, scorecard::ScoreItem)>,
}

impl Rows {
    fn add(&mut self, m: &Metric, r: scorecard::DayResult) {
        let v = |n, d| m.value(n, d);
        for s in r.shop_rows() {
            self.shop.push((
                s.shop_id,
                m.id.clone(),
                s.numerator,
                s.denominator,
                v(s.numerator, s.denominator),
                m.rule_version(),
            ));
        }
        for a in r.rows {
            self.agent.push((
                a.shop_id,
                a.agent_id,
                m.id.clone(),
                a.numerator,
                a.denominator,
                v(a.numerator, a.denominator),
                m.rule_version(),
            ));
        }
        for it in r.items {
            self.items.push((m.id.clone(), it));
        }
    }

    fn shop_frame(&self) -> PolarsResult<DataFrame> {
        let r = &self.shop;
        DataFrame::new_infer_height(vec![
            Column::new(
                "shop_id".into(),
                r.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
            ),
            Column::new(
                "metric".into(),
                r.iter().map(|r| r.1.as_str()).collect::<Vec<_>>(),
            ),
            Column::new(
                "numerator".into(),
                r.iter().map(|r| r.2).collect::<Vec<_>>(),
            ),
            Column::new(
                "denominator".into(),
                r.iter().map(|r| r.3).collect::<Vec<_>>(),
            ),
            Column::new("value".into(), r.iter().map(|r| r.4).collect::<Vec<_>>()),
            Column::new(
                "rule_version".into(),
                r.iter().map(|r| r.5.as_str()).collect::<Vec<_>>(),
            ),
        ])
    }

    fn agent_frame(&self) -> PolarsResult<DataFrame> {
        let r = &self.agent;
        DataFrame::new_infer_height(vec![
            Column::new(
                "shop_id".into(),
                r.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
            ),
            Column::new(
                "agent_id".into(),
                r.iter().map(|r| r.1.as_str()).collect::<Vec<_>>(),
            ),
            Column::new(
                "metric".into(),
                r.iter().map(|r| r.2.as_str()).collect::<Vec<_>>(),
            ),
            Column::new(
                "numerator".into(),
                r.iter().map(|r| r.3).collect::<Vec<_>>(),
            ),
            Column::new(
                "denominator".into(),
                r.iter().map(|r| r.4).collect::<Vec<_>>(),
            ),
            Column::new("value".into(), r.iter().map(|r| r.5).collect::<Vec<_>>()),
            Column::new(
                "rule_version".into(),
                r.iter().map(|r| r.6.as_str()).collect::<Vec<_>>(),
            ),
        ])
    }

    /// The items with the two scorecard columns (`order_id`, `counted`).
    fn items_frame(&self) -> PolarsResult<DataFrame> {
        let r = &self.items;
        let ts = |name: &str, v: Vec<Option<i64>>| -> PolarsResult<Column> {
            Column::new(name.into(), v).cast(&DataType::Datetime(
                TimeUnit::Milliseconds,
                Some(TimeZone::UTC),
            ))
        };
        let text = |f: fn(&scorecard::ScoreItem) -> &str| {
            r.iter().map(|(_, it)| f(it)).collect::<Vec<_>>()
        };
        DataFrame::new_infer_height(vec![
            Column::new("shop_id".into(), text(|it| &it.shop_id)),
            Column::new("buyer_id".into(), text(|it| &it.buyer_id)),
            Column::new("agent_id".into(), text(|it| &it.agent_id)),
            Column::new(
                "metric".into(),
                r.iter().map(|(m, _)| m.as_str()).collect::<Vec<_>>(),
            ),
            ts("start", r.iter().map(|(_, it)| Some(it.start)).collect())?,
            ts("reply", r.iter().map(|(_, it)| it.reply).collect())?,
            Column::new(
                "latency_ms".into(),
                r.iter().map(|(_, it)| it.latency_ms).collect::<Vec<_>>(),
            ),
            Column::new(
                "counted_ms".into(),
                r.iter().map(|(_, it)| it.counted_ms).collect::<Vec<_>>(),
            ),
            Column::new(
                "passed".into(),
                r.iter().map(|(_, it)| it.passed).collect::<Vec<_>>(),
            ),
            Column::new(
                "excluded".into(),
                r.iter().map(|(_, it)| it.excluded).collect::<Vec<_>>(),
            ),
            Column::new(
                "order_id".into(),
                r.iter()
                    .map(|(_, it)| it.order_id.as_deref())
                    .collect::<Vec<_>>(),
            ),
            Column::new(
                "counted".into(),
                r.iter().map(|(_, it)| it.counted).collect::<Vec<_>>(),
            ),
        ])
    }
}

/// The message items with the scorecard columns (§8.2 "Items"): `order_id`
/// null, `counted` what the item added to its numerator (1 or 0 for rates,
/// the counted ms for mean latency), null for excluded items.
pub(super) fn with_score_columns(df: &mut DataFrame) -> PolarsResult<()> {
    let n = df.height();
    let passed = df.column("passed")?.bool()?.clone();
    let counted_ms = df.column("counted_ms")?.i64()?.clone();
    let excluded = df.column("excluded")?.str()?.clone();
    let counted: Vec<Option<i64>> = (0..n)
        .map(|i| match excluded.get(i) {
            Some(_) => None,
            None => passed.get(i).map(i64::from).or(counted_ms.get(i)),
        })
        .collect();
    df.with_column(Column::new("order_id".into(), vec![None::<&str>; n]))?;
    df.with_column(Column::new("counted".into(), counted))?;
    Ok(())
}
