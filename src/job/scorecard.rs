//! The scorecard of a run (SPEC §8): its tables, loaded once per run; the
//! consult buyer-days the message engine finds for it; and each bucket's
//! scorecard rows, merged into that bucket's daily frames, and items, sorted
//! for `output::encode_items` to merge with the message items.
//!
//! Everything here is used only when a platform has scorecard metrics in
//! force whose tables were given: a message-only run never sorts or merges
//! a frame here, so its tables stay byte for byte what they were.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use chrono::NaiveDate;
use polars::prelude::*;

use super::{line, Progress, RunConfig};
use crate::engine::DayResult as MessageResult;
use crate::error::Result;
use crate::model::{day_number, Messages};
use crate::rules::{Metric, Policy, Responders, Unit, Unreplied};
use crate::scorecard::{
    self, ConsultDay, DayIndex, DayOrdered, LocalDays, NameIds, ScoreKind, ShopRange, Table, Tables,
};

/// The tables of each platform of the run (by platform name), loaded and
/// sorted by (day, shop) once.
#[derive(Default)]
pub(super) struct ScoreTables(BTreeMap<String, Arc<DayOrdered>>);

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
        let mut by_settings: Vec<(String, Arc<DayOrdered>)> = Vec::new();
        for c in cfgs {
            let key = c.rules.input.canonical();
            if let Some((_, t)) = by_settings.iter().find(|(k, _)| *k == key) {
                out.0.insert(c.platform.clone(), t.clone());
                continue;
            }
            let widest = c.rules.metrics.iter().map(|m| m.window_days).max();
            let back = widest.unwrap_or(1) as i32 - 1;
            let local = LocalDays::for_run(day_number(days.0) - back, day_number(days.1));
            let t = Arc::new(DayOrdered::new(load_tables(c, local, progress)?));
            by_settings.push((key, t.clone()));
            out.0.insert(c.platform.clone(), t);
        }
        Ok(out)
    }

    /// The tables of a platform (`None` when the run was given none).
    pub(super) fn of(&self, platform: &str) -> Option<Arc<DayOrdered>> {
        self.0.get(platform).cloned()
    }
}

/// Loads and checks the tables of one configuration.
fn load_tables(c: &RunConfig, days: LocalDays, progress: Progress) -> Result<Tables> {
    let input = &c.rules.input;
    let p = &c.tables;
    // The four tables are read side by side (each read is one thread's
    // work but for polars' decoding); a failure is the first table's in
    // this order, as if they were read one after another.
    let ((orders, refunds), (complaints, ratings)) = rayon::join(
        || {
            rayon::join(
                || {
                    p.orders
                        .as_ref()
                        .map(|path| scorecard::load_orders(path, &input.orders, input, days))
                },
                || {
                    p.refunds
                        .as_ref()
                        .map(|path| scorecard::load_refunds(path, &input.refunds, input, days))
                },
            )
        },
        || {
            rayon::join(
                || {
                    p.complaints.as_ref().map(|path| {
                        scorecard::load_complaints(path, &input.complaints, input, days)
                    })
                },
                || {
                    p.ratings
                        .as_ref()
                        .map(|path| scorecard::load_ratings(path, &input.ratings, input, days))
                },
            )
        },
    );
    let t = Tables {
        orders: orders.transpose()?.map(|t| own(c, t, |r| &r.shop)),
        refunds: refunds.transpose()?.map(|t| own(c, t, |r| &r.shop)),
        complaints: complaints.transpose()?.map(|t| own(c, t, |r| &r.shop)),
        ratings: ratings.transpose()?.map(|t| own(c, t, |r| &r.shop)),
    };
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

/// What a bucket's worker needs to compute its scorecard (shared by the
/// workers, read-only): the day's scorecard metrics, the consult metrics'
/// hours and the tables.
pub(super) struct BucketScorer<'a> {
    metrics: Vec<&'a Metric>,
    consult_hours: Vec<crate::rules::Hours>,
    tables: Arc<DayOrdered>,
    day: i32,
}

/// One bucket's scorecard, computed by its worker: rows sorted as their
/// tables are, to merge into the bucket's message frames; items sorted as
/// the `items` table is, for [`crate::output::encode_items`]; and the
/// items counted per scorecard metric.
pub(super) struct BucketScore<'m> {
    shop: DataFrame,
    agent: DataFrame,
    pub(super) items: Vec<(&'m str, scorecard::ScoreItem<'m>)>,
    pub(super) totals: Vec<u64>,
}

impl<'a> BucketScorer<'a> {
    /// The scorecard of the shops `shops` (a bucket's range, whether or not
    /// a shop has messages) from the tables' rows of the day and the
    /// bucket's consult buyer-days (`consults`, the consult metrics'
    /// result on `msgs`; `None` when there are no consult metrics).
    pub(super) fn compute<'m>(
        &'m self,
        shops: ShopRange,
        msgs: &'m Messages,
        consults: Option<&MessageResult>,
    ) -> PolarsResult<BucketScore<'m>> {
        let index = DayIndex::of_rows(self.day, self.tables.day_rows(self.day, shops));
        // The consult buyer-days of each consult metric (one per `hours`),
        // gathered once for every kind that reads them.
        let mut by_hours: Vec<Vec<ConsultDay>> = vec![Vec::new(); self.consult_hours.len()];
        if let Some(r) = consults {
            for (h, n) in by_hours.iter_mut().zip(&r.totals) {
                h.reserve(n.counted as usize + n.excluded as usize);
            }
        }
        for it in consults.iter().flat_map(|r| &r.items) {
            by_hours[it.metric as usize].push(ConsultDay {
                shop: &msgs.shop_names[it.shop as usize],
                buyer: &msgs.buyer_names[it.buyer as usize],
                start_utc_ms: it.start,
                agent: &msgs.agent_names[it.agent as usize],
                ids: Some(NameIds {
                    shop: it.shop,
                    buyer: it.buyer,
                    agent: it.agent,
                }),
            });
        }
        // Their orders, looked up once for every sale kind of the hours.
        let sale = |k: &ScoreKind| {
            matches!(
                k,
                ScoreKind::Conversion | ScoreKind::OrderValue | ScoreKind::OrderItems
            )
        };
        let orders: Vec<Option<Vec<&[&scorecard::Order]>>> = by_hours
            .iter()
            .zip(&self.consult_hours)
            .map(|(days, hours)| {
                let wanted = self
                    .metrics
                    .iter()
                    .any(|m| m.hours == *hours && m.score_metric().is_some_and(|d| sale(&d.kind)));
                wanted.then(|| index.consult_orders(days))
            })
            .collect();
        let mut rows = Rows::default();
        let mut totals = vec![0; self.metrics.len()];
        for (k, m) in self.metrics.iter().enumerate() {
            let Some(def) = m.score_metric() else {
                continue;
            };
            let hours = self.consult_hours.iter().position(|h| *h == m.hours);
            let (days, orders): (&[ConsultDay], _) = match hours {
                Some(h) if def.kind.uses_consults() => (&by_hours[h], orders[h].as_deref()),
                _ => (&[], None),
            };
            let Some(result) = index.compute_with(&def, days, orders) else {
                continue;
            };
            totals[k] += result.items.len() as u64;
            rows.add(m, result);
        }
        rows.sort();
        Ok(BucketScore {
            shop: rows.shop_frame()?,
            agent: rows.agent_frame()?,
            items: rows.items,
            totals,
        })
    }
}

impl<'m> BucketScore<'m> {
    /// Merges the rows into the bucket's message frames (keeping their
    /// tables' order; a message row comes first on equal keys).
    pub(super) fn merge_into(
        self,
        shop: &mut DataFrame,
        agent: &mut DataFrame,
    ) -> PolarsResult<Vec<(&'m str, scorecard::ScoreItem<'m>)>> {
        merge_sorted(shop, self.shop, &["shop_id", "metric"])?;
        merge_sorted(agent, self.agent, &["shop_id", "agent_id", "metric"])?;
        Ok(self.items)
    }
}

/// A platform's scorecard for one day: its metrics, tables and consult
/// metrics, and the items counted so far.
pub(super) struct DayScore<'a> {
    pub(super) metrics: Vec<&'a Metric>,
    pub(super) consult: Vec<Metric>,
    tables: Arc<DayOrdered>,
    day: i32,
    /// (counted items) per metric, as the day's totals.
    pub(super) totals: Vec<u64>,
}

impl<'a> DayScore<'a> {
    pub(super) fn new(metrics: Vec<&'a Metric>, tables: Arc<DayOrdered>, day: NaiveDate) -> Self {
        DayScore {
            consult: consult_metrics(&metrics),
            totals: vec![0; metrics.len()],
            metrics,
            tables,
            day: day_number(day),
        }
    }

    /// What the buckets' workers need.
    pub(super) fn scorer(&self) -> BucketScorer<'a> {
        BucketScorer {
            metrics: self.metrics.clone(),
            consult_hours: self.consult.iter().map(|c| c.hours).collect(),
            tables: self.tables.clone(),
            day: self.day,
        }
    }

    /// Adds a bucket's item counts.
    pub(super) fn count(&mut self, totals: &[u64]) {
        for (acc, n) in self.totals.iter_mut().zip(totals) {
            *acc += n;
        }
    }
}

/// `a` with `b`'s rows, both sorted by `keys` (strings or timestamps,
/// without nulls, as polars sorts them: byte-wise, ascending), merged in
/// one pass: `a`'s row first on equal keys, as a stable sort of `a` then
/// `b` would have it.
fn merge_sorted(a: &mut DataFrame, b: DataFrame, keys: &[&str]) -> PolarsResult<()> {
    if b.height() == 0 {
        return Ok(());
    }
    if a.height() == 0 {
        *a = b;
        return Ok(());
    }
    a.rechunk_mut();
    let mut b = b;
    b.rechunk_mut();
    let (ka, kb) = (key_columns(a, keys)?, key_columns(&b, keys)?);
    // Whether `b`'s row j sorts before `a`'s row i (strictly).
    let before = |i: usize, j: usize| {
        for (x, y) in ka.iter().zip(&kb) {
            let o = match (x, y) {
                (Key::Text(x), Key::Text(y)) => y.get(j).cmp(&x.get(i)),
                (Key::Int(x), Key::Int(y)) => y.get(j).cmp(&x.get(i)),
                _ => unreachable!("both frames have the same schema"),
            };
            if o != std::cmp::Ordering::Equal {
                return o.is_lt();
            }
        }
        false
    };
    let (na, nb) = (a.height(), b.height());
    let mut order: Vec<IdxSize> = Vec::with_capacity(na + nb);
    let (mut i, mut j) = (0, 0);
    while i < na || j < nb {
        if j < nb && (i == na || before(i, j)) {
            order.push((na + j) as IdxSize);
            j += 1;
        } else {
            order.push(i as IdxSize);
            i += 1;
        }
    }
    drop((ka, kb));
    a.vstack_mut_owned(b)?;
    let idx = IdxCa::from_vec("".into(), order);
    *a = a.take(&idx)?;
    Ok(())
}

/// A sort key column of [`merge_sorted`].
enum Key<'f> {
    Text(&'f StringChunked),
    Int(Int64Chunked),
}

/// The columns `keys` of `df`, for comparing rows.
fn key_columns<'f>(df: &'f DataFrame, keys: &[&str]) -> PolarsResult<Vec<Key<'f>>> {
    keys.iter()
        .map(|k| {
            let c = df.column(k)?;
            Ok(match c.dtype() {
                DataType::String => Key::Text(c.str()?),
                _ => Key::Int(c.to_physical_repr().i64()?.clone()),
            })
        })
        .collect()
}

/// A row of `agent_daily`: shop, agent, metric, numerator, denominator,
/// value, rule_version.
type AgentRow<'m> = (String, String, &'m str, i64, i64, Option<f64>, Rc<str>);

/// A row of `shop_daily`: shop, metric, numerator, denominator, value,
/// rule_version.
type ShopRow<'m> = (String, &'m str, i64, i64, Option<f64>, Rc<str>);

/// One bucket's scorecard rows, gathered over its metrics.
#[derive(Default)]
struct Rows<'m> {
    shop: Vec<ShopRow<'m>>,
    agent: Vec<AgentRow<'m>>,
    items: Vec<(&'m str, scorecard::ScoreItem<'m>)>,
}

impl<'m> Rows<'m> {
    /// Sorts the rows as their tables are (the items are sorted when
    /// encoded: [`crate::output::encode_items`]).
    fn sort(&mut self) {
        self.shop.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        self.agent
            .sort_by(|a, b| (&a.0, &a.1, &a.2).cmp(&(&b.0, &b.1, &b.2)));
    }

    fn add(&mut self, m: &'m Metric, r: scorecard::DayResult<'m>) {
        // Once per metric, shared by its rows.
        let version: Rc<str> = m.rule_version().into();
        let v = |n, d| m.value(n, d);
        for s in r.shop_rows() {
            self.shop.push((
                s.shop_id,
                m.id.as_str(),
                s.numerator,
                s.denominator,
                v(s.numerator, s.denominator),
                version.clone(),
            ));
        }
        for a in r.rows {
            self.agent.push((
                a.shop_id,
                a.agent_id,
                m.id.as_str(),
                a.numerator,
                a.denominator,
                v(a.numerator, a.denominator),
                version.clone(),
            ));
        }
        for it in r.items {
            self.items.push((m.id.as_str(), it));
        }
    }

    fn shop_frame(&self) -> PolarsResult<DataFrame> {
        let r = &self.shop;
        DataFrame::new_infer_height(vec![
            Column::new(
                "shop_id".into(),
                r.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
            ),
            Column::new("metric".into(), r.iter().map(|r| r.1).collect::<Vec<_>>()),
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
                r.iter().map(|r| &*r.5).collect::<Vec<_>>(),
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
            Column::new("metric".into(), r.iter().map(|r| r.2).collect::<Vec<_>>()),
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
                r.iter().map(|r| &*r.6).collect::<Vec<_>>(),
            ),
        ])
    }
}
