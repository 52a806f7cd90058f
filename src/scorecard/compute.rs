//! One day's scorecard metrics (SPEC §8.2): from the tables of §8.1 and the
//! day's consult buyer-days (which the message engine finds), the rows per
//! (shop, agent) and the drill-down items.

use std::cell::OnceCell;

use polars::prelude::{PlHashMap, PlHashSet};

use crate::rules::Hours;

use super::index::DayRows;
use super::tables::{Order, Rating, Tables};

/// The seven scorecard kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScoreKind {
    Conversion,
    OrderValue,
    OrderItems,
    ComplaintRate,
    DisputeRefundRate,
    RefundTime,
    RatingShare,
}

impl ScoreKind {
    /// The `kind` value of the rule file.
    pub fn name(self) -> &'static str {
        match self {
            ScoreKind::Conversion => "conversion",
            ScoreKind::OrderValue => "order_value",
            ScoreKind::OrderItems => "order_items",
            ScoreKind::ComplaintRate => "complaint_rate",
            ScoreKind::DisputeRefundRate => "dispute_refund_rate",
            ScoreKind::RefundTime => "refund_time",
            ScoreKind::RatingShare => "rating_share",
        }
    }

    pub fn parse(s: &str) -> Option<ScoreKind> {
        ScoreKind::ALL.into_iter().find(|k| k.name() == s)
    }

    pub const ALL: [ScoreKind; 7] = [
        ScoreKind::Conversion,
        ScoreKind::OrderValue,
        ScoreKind::OrderItems,
        ScoreKind::ComplaintRate,
        ScoreKind::DisputeRefundRate,
        ScoreKind::RefundTime,
        ScoreKind::RatingShare,
    ];

    /// The tables the kind reads (§8.2, "A table not given").
    pub fn tables(self) -> &'static [&'static str] {
        match self {
            ScoreKind::Conversion | ScoreKind::OrderValue | ScoreKind::OrderItems => &["orders"],
            ScoreKind::ComplaintRate => &["complaints"],
            ScoreKind::DisputeRefundRate => &["orders", "refunds"],
            ScoreKind::RefundTime => &["refunds"],
            ScoreKind::RatingShare => &["ratings"],
        }
    }

    /// Whether the kind's items are consult buyer-days.
    pub fn uses_consults(self) -> bool {
        matches!(
            self,
            ScoreKind::Conversion
                | ScoreKind::OrderValue
                | ScoreKind::OrderItems
                | ScoreKind::ComplaintRate
        )
    }
}

/// A scorecard metric's definition, as far as computing it goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScoreMetric {
    pub kind: ScoreKind,
    pub hours: Hours,
    /// `rating_share`: the scores that pass (1-5).
    pub scores: Vec<u8>,
    /// `rating_share`: only resolved ratings pass.
    pub resolved_only: bool,
}

/// A consult buyer-day of day D (§8.2): the engine's `buyer` unit item with
/// `responders = ["manual"]` and the metric's hours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConsultDay<'a> {
    pub shop: &'a str,
    pub buyer: &'a str,
    /// The first in-hours inquiry, UTC ms.
    pub start_utc_ms: i64,
    /// Its agent (§2), "" when none.
    pub agent: &'a str,
    /// The names' ids in the message bucket they come from, when they do:
    /// the `items` table then sorts them by the bucket's name ranks.
    pub ids: Option<NameIds>,
}

/// A (shop, buyer, agent) as ids into a message bucket's name lists
/// (`Messages::shop_names`, …).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NameIds {
    pub shop: u32,
    pub buyer: u32,
    pub agent: u32,
}

/// One drill-down row (§5 `items` plus §8.2's `order_id` and `counted`),
/// its names borrowed from the tables' rows and the consult buyer-days.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScoreItem<'a> {
    pub shop_id: &'a str,
    pub buyer_id: &'a str,
    pub agent_id: &'a str,
    pub start: i64,
    pub reply: Option<i64>,
    pub latency_ms: Option<i64>,
    pub counted_ms: Option<i64>,
    pub passed: Option<bool>,
    /// Always `None`: the scorecard kinds exclude nothing.
    pub excluded: Option<&'static str>,
    pub order_id: Option<&'a str>,
    /// What the item added to the numerator.
    pub counted: Option<i64>,
    /// The names' message-bucket ids, for items of consult buyer-days
    /// (`None`: the names come from a table's rows).
    pub ids: Option<NameIds>,
}

/// A metric's numbers for one (shop, agent) of the day.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScoreRow {
    pub shop_id: String,
    pub agent_id: String,
    pub numerator: i64,
    pub denominator: i64,
}

/// One metric's result for one day: rows sorted by (shop, agent), only
/// those §8.2 keeps; items in the order found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DayResult<'a> {
    pub rows: Vec<ScoreRow>,
    pub items: Vec<ScoreItem<'a>>,
}

impl DayResult<'_> {
    /// The shop-level rows: the agent rows summed (they add up, §5).
    pub fn shop_rows(&self) -> Vec<ScoreRow> {
        let mut out: Vec<ScoreRow> = Vec::new();
        for r in &self.rows {
            match out.last_mut() {
                Some(l) if l.shop_id == r.shop_id => {
                    l.numerator += r.numerator;
                    l.denominator += r.denominator;
                }
                _ => out.push(ScoreRow {
                    agent_id: String::new(),
                    ..r.clone()
                }),
            }
        }
        out
    }
}

/// The metric's value from its numerator and denominator (§8.2's column).
/// `None` when the denominator is 0.
pub fn value(kind: ScoreKind, numerator: i64, denominator: i64) -> Option<f64> {
    if denominator == 0 {
        return None;
    }
    let v = numerator as f64 / denominator as f64;
    Some(match kind {
        ScoreKind::OrderValue => v / 100.0,
        ScoreKind::RefundTime => v / 1000.0,
        _ => v,
    })
}

/// `alert_when`: which side of `target` raises an alert.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AlertWhen {
    #[default]
    Below,
    Above,
}

/// Whether a row raises an alert: denominator ≥ `min_denominator` and the
/// value on the `when` side of `target` (strictly); a null value never.
pub fn alert_fires(
    when: AlertWhen,
    value: Option<f64>,
    denominator: i64,
    min_denominator: i64,
    target: f64,
) -> bool {
    let Some(v) = value else { return false };
    denominator >= min_denominator
        && match when {
            AlertWhen::Below => v < target,
            AlertWhen::Above => v > target,
        }
}

/// The names of the tables `kind` needs that the run was not given (empty:
/// the metric can be computed; else it is skipped with a note).
pub fn missing_tables(kind: ScoreKind, tables: &Tables) -> Vec<&'static str> {
    kind.tables()
        .iter()
        .copied()
        .filter(|t| match *t {
            "orders" => tables.orders.is_none(),
            "refunds" => tables.refunds.is_none(),
            "complaints" => tables.complaints.is_none(),
            _ => tables.ratings.is_none(),
        })
        .collect()
}

/// The tables' rows of one local day D, indexed for the metrics of D. Build
/// it once per day (or per shop range of a day) and compute every metric
/// from it; the indexes are built when a metric first needs them (a day of
/// the window back-fill, without consults, needs none).
pub struct DayIndex<'t> {
    day: i32,
    rows: DayRows<'t>,
    sales: OnceCell<Sales<'t>>,
    /// (shop, buyer) with a complaint on D.
    complained: OnceCell<PlHashSet<(&'t str, &'t str)>>,
}

/// Each (shop, buyer)'s qualifying orders paid on D or D+1: `by_pair` gives
/// the range `ranges[k]` of `orders`, sorted by (paid_ts, input order).
struct Sales<'t> {
    by_pair: PlHashMap<(&'t str, &'t str), u32>,
    ranges: Vec<(u32, u32)>,
    orders: Vec<&'t Order>,
}

impl<'t> Sales<'t> {
    fn of(rows: &DayRows<'t>) -> Sales<'t> {
        // Each (shop, buyer) numbered in order of appearance, its orders
        // then put together by a stable sort: ties keep input order (equal
        // instants share their day).
        let mut by_pair: PlHashMap<(&str, &str), u32> = PlHashMap::default();
        let mut keyed: Vec<(u32, &Order)> = Vec::new();
        for &o in rows.orders.iter().flatten() {
            if o.grouped {
                let next = by_pair.len() as u32;
                let k = *by_pair
                    .entry((o.shop.as_str(), o.buyer.as_str()))
                    .or_insert(next);
                keyed.push((k, o));
            }
        }
        keyed.sort_by_key(|(k, o)| (*k, o.paid.utc));
        let mut ranges = vec![(0u32, 0u32); by_pair.len()];
        for (i, (k, _)) in keyed.iter().enumerate() {
            let r = &mut ranges[*k as usize];
            if r.1 == 0 {
                r.0 = i as u32;
            }
            r.1 = i as u32 + 1;
        }
        Sales {
            by_pair,
            ranges,
            orders: keyed.into_iter().map(|(_, o)| o).collect(),
        }
    }
}

impl<'t> DayIndex<'t> {
    /// The index of day `day` of `tables`, their rows in any order.
    pub fn new(day: i32, tables: &'t Tables) -> DayIndex<'t> {
        DayIndex::of_rows(day, DayRows::filtered(day, tables))
    }

    /// The index of `rows`, the rows of day `day` (of some shops): within
    /// a shop, in input order.
    pub fn of_rows(day: i32, rows: DayRows<'t>) -> DayIndex<'t> {
        DayIndex {
            day,
            rows,
            sales: OnceCell::new(),
            complained: OnceCell::new(),
        }
    }

    fn complained(&self) -> &PlHashSet<(&'t str, &'t str)> {
        self.complained.get_or_init(|| {
            self.rows
                .complaints
                .iter()
                .flatten()
                .map(|c| (c.shop.as_str(), c.buyer.as_str()))
                .collect()
        })
    }

    /// One metric of the day; `None` when a table it needs was not given
    /// (skipped: no rows, no items). `consults` matter only to the kinds of
    /// [`ScoreKind::uses_consults`].
    pub fn compute<'a>(
        &self,
        metric: &ScoreMetric,
        consults: &[ConsultDay<'a>],
    ) -> Option<DayResult<'a>>
    where
        't: 'a,
    {
        self.compute_with(metric, consults, None)
    }

    /// Each consult buyer-day's orders ([`Self::orders_of`]): looked up
    /// once for all the sale kinds of one `hours` (see
    /// [`Self::compute_with`]).
    pub fn consult_orders<'a>(&self, consults: &[ConsultDay<'a>]) -> Vec<&[&'t Order]>
    where
        't: 'a,
    {
        consults.iter().map(|c| self.orders_of(c)).collect()
    }

    /// [`Self::compute`], with `consults`' orders looked up beforehand
    /// ([`Self::consult_orders`] of the same `consults`) when given.
    pub fn compute_with<'a>(
        &self,
        metric: &ScoreMetric,
        consults: &[ConsultDay<'a>],
        orders: Option<&[&[&'t Order]]>,
    ) -> Option<DayResult<'a>>
    where
        't: 'a,
    {
        if !self.rows.has(metric.kind) {
            return None;
        }
        let mut acc = Acc::default();
        match metric.kind {
            ScoreKind::Conversion | ScoreKind::OrderValue | ScoreKind::OrderItems => {
                acc.items.reserve(consults.len());
                for (k, c) in consults.iter().enumerate() {
                    let o = orders.map_or_else(|| self.orders_of(c), |o| o[k]);
                    self.sale(metric.kind, c, o, &mut acc);
                }
            }
            ScoreKind::ComplaintRate => {
                acc.items.reserve(consults.len());
                let complained = self.complained();
                for c in consults {
                    let passed = complained.contains(&(c.shop, c.buyer));
                    let mut item = consult_item(c);
                    item.passed = Some(passed);
                    acc.add(c.shop, c.agent, passed as i64, item);
                }
            }
            ScoreKind::DisputeRefundRate => self.disputes(metric.hours, &mut acc),
            ScoreKind::RefundTime => self.refund_time(metric.hours, &mut acc),
            ScoreKind::RatingShare => self.ratings(metric, &mut acc),
        }
        Some(acc.finish(metric.kind == ScoreKind::DisputeRefundRate))
    }

    /// The qualifying orders of a consult buyer-day's (shop, buyer), paid
    /// on D or D+1, by (paid_ts, input order).
    fn orders_of<'a>(&self, c: &ConsultDay<'a>) -> &[&'t Order]
    where
        't: 'a,
    {
        let sales = self.sales.get_or_init(|| Sales::of(&self.rows));
        match sales.by_pair.get(&(c.shop, c.buyer)) {
            Some(&k) => {
                let (from, until) = sales.ranges[k as usize];
                &sales.orders[from as usize..until as usize]
            }
            None => &[],
        }
    }

    /// `conversion`, `order_value`, `order_items` for one consult buyer-day
    /// and its (shop, buyer)'s `orders` ([`Self::orders_of`]).
    fn sale<'a>(&self, kind: ScoreKind, c: &ConsultDay<'a>, orders: &[&'a Order], acc: &mut Acc<'a>)
    where
        't: 'a,
    {
        // `orders` is sorted by paid_ts: those before the start come first.
        let at = orders.partition_point(|o| o.paid.utc < c.start_utc_ms);
        // Pre-sale: no qualifying order paid on D before the start.
        if orders[..at].iter().any(|o| o.paid.day == self.day) {
            return;
        }
        // The window [start, 00:00 of D+2): `orders` holds D and D+1 only.
        let window = &orders[at..];
        let first = window.first();
        if kind != ScoreKind::Conversion && first.is_none() {
            return; // not a passing item of `conversion`
        }
        let counted = match kind {
            ScoreKind::Conversion => first.is_some() as i64,
            ScoreKind::OrderValue => window.iter().map(|o| o.fen).sum(),
            _ => window.iter().map(|o| o.items).sum(),
        };
        let mut item = consult_item(c);
        if let Some(o) = first {
            item.reply = Some(o.paid.utc);
            item.latency_ms = Some(o.paid.utc - c.start_utc_ms);
            item.order_id = Some(o.order_id.as_str());
        }
        if kind == ScoreKind::Conversion {
            item.passed = Some(first.is_some());
        }
        acc.add(c.shop, c.agent, counted, item);
    }

    /// `dispute_refund_rate`: two counts per shop, no items. Hours are
    /// tested on `finished_ts` and on `paid_ts`.
    fn disputes<'a>(&self, hours: Hours, acc: &mut Acc<'a>)
    where
        't: 'a,
    {
        let in_hours = |tod: i32| hours.contains(tod as i64);
        for r in self.rows.refunds.iter().flatten() {
            if in_hours(r.finished.tod) {
                let row = acc.row(&r.shop, "");
                row.0 += (r.platform_judged && r.merchant_liable) as i64;
            }
        }
        for o in self.rows.orders.iter().flatten() {
            if o.grouped && o.paid.day == self.day && in_hours(o.paid.tod) {
                acc.row(&o.shop, "").1 += 1;
            }
        }
    }

    /// `refund_time`: `success` refunds finished on D in hours.
    fn refund_time<'a>(&self, hours: Hours, acc: &mut Acc<'a>)
    where
        't: 'a,
    {
        for r in self.rows.refunds.iter().flatten() {
            if !hours.contains(r.finished.tod as i64) {
                continue;
            }
            let ms = r.finished.utc - r.requested_utc;
            let item = ScoreItem {
                shop_id: &r.shop,
                buyer_id: "",
                agent_id: "",
                start: r.requested_utc,
                reply: Some(r.finished.utc),
                latency_ms: Some(ms),
                counted_ms: Some(ms),
                passed: None,
                excluded: None,
                order_id: Some(&r.order_id),
                counted: Some(ms),
                ids: None,
            };
            acc.add(&r.shop, "", ms, item);
        }
    }

    /// `rating_share`: per (shop, buyer, agent) of D, the last in-hours
    /// rating by `ts` (ties: the last in input order).
    fn ratings<'a>(&self, m: &ScoreMetric, acc: &mut Acc<'a>)
    where
        't: 'a,
    {
        let mut last: PlHashMap<(&str, &str, &str), &Rating> = PlHashMap::default();
        let mut order: Vec<(&str, &str, &str)> = Vec::new();
        for &r in self.rows.ratings.iter().flatten() {
            if !m.hours.contains(r.ts.tod as i64) {
                continue;
            }
            let key = (r.shop.as_str(), r.buyer.as_str(), r.agent.as_str());
            match last.get_mut(&key) {
                Some(l) if r.ts.utc >= l.ts.utc => *l = r,
                Some(_) => {}
                None => {
                    last.insert(key, r);
                    order.push(key);
                }
            }
        }
        for key in order {
            let r = last[&key];
            let passed = m.scores.contains(&r.score) && (r.resolved || !m.resolved_only);
            let item = ScoreItem {
                shop_id: &r.shop,
                buyer_id: &r.buyer,
                agent_id: &r.agent,
                start: r.ts.utc,
                reply: None,
                latency_ms: None,
                counted_ms: None,
                passed: Some(passed),
                excluded: None,
                order_id: None,
                counted: Some(passed as i64),
                ids: None,
            };
            acc.add(&r.shop, &r.agent, passed as i64, item);
        }
    }
}

/// An item of a consult buyer-day, before its kind fills it in.
fn consult_item<'a>(c: &ConsultDay<'a>) -> ScoreItem<'a> {
    ScoreItem {
        shop_id: c.shop,
        buyer_id: c.buyer,
        agent_id: c.agent,
        start: c.start_utc_ms,
        reply: None,
        latency_ms: None,
        counted_ms: None,
        passed: None,
        excluded: None,
        order_id: None,
        counted: None,
        ids: c.ids,
    }
}

/// Sums per (shop, agent) and the items, while a metric is computed.
#[derive(Default)]
struct Acc<'a> {
    rows: PlHashMap<(&'a str, &'a str), (i64, i64)>,
    items: Vec<ScoreItem<'a>>,
}

impl<'a> Acc<'a> {
    fn row(&mut self, shop: &'a str, agent: &'a str) -> &mut (i64, i64) {
        self.rows.entry((shop, agent)).or_default()
    }

    /// An item counting `counted` into the numerator and 1 into the
    /// denominator.
    fn add(&mut self, shop: &'a str, agent: &'a str, counted: i64, mut item: ScoreItem<'a>) {
        let r = self.row(shop, agent);
        r.0 += counted;
        r.1 += 1;
        item.counted = Some(counted);
        self.items.push(item);
    }

    /// The rows §8.2 keeps (denominator > 0, or, `either`, numerator or
    /// denominator > 0), sorted by (shop, agent).
    fn finish(self, either: bool) -> DayResult<'a> {
        let mut kept: Vec<_> = self
            .rows
            .into_iter()
            .filter(|(_, (n, d))| *d > 0 || (either && *n > 0))
            .collect();
        kept.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let rows = kept
            .into_iter()
            .map(|((shop, agent), (numerator, denominator))| ScoreRow {
                shop_id: shop.to_string(),
                agent_id: agent.to_string(),
                numerator,
                denominator,
            })
            .collect();
        DayResult {
            rows,
            items: self.items,
        }
    }
}
