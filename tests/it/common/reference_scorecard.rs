//! NAIVE reference of the scorecard (SPEC §8.1-§8.2), for the differential
//! test only.
//!
//! Plain loops over `Vec` rows, no indexes, O(n^2) where that is simplest:
//! each piece is written straight from a SPEC sentence, quoted beside it.
//! Times are UTC ms; local days and times of day are taken in `tz`.
//!
//! Readings chosen where the SPEC leaves room (most literal):
//! 1. De-duplication runs on every row of the table, before any other filter
//!    (`grouped`, `status`), comparing the local day of `paid_ts` /
//!    `finished_ts`; a row whose time is null has no day, so it never repeats
//!    another (and never counts anyway). A refund with a null `refund_id` is
//!    never a repeat.
//! 2. `dispute_refund_rate` tests no hours (it is "two counts of the shop's
//!    day"); `refund_time` tests them on `finished_ts`, `rating_share` on
//!    the rating's `ts`.
//! 3. A rating's group key uses its `agent_id` with null read as "" (the
//!    agent of its rows).

#![allow(dead_code, clippy::all)]

use chrono::{NaiveDate, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use std::collections::BTreeMap;

use super::reference::Msg;

#[derive(Clone, Debug)]
pub struct Order {
    pub shop: String,
    pub buyer: String,
    pub order_id: String,
    /// The amount in yuan as decimal text ("19.99"): the test writes the float
    /// parsed from it; the reference computes fen from the text by hand.
    pub amount: String,
    pub paid_ms: Option<i64>,
    /// None = default 1.
    pub items: Option<i64>,
    /// None = default true.
    pub grouped: Option<bool>,
}

#[derive(Clone, Debug)]
pub struct Refund {
    pub shop: String,
    pub order_id: String,
    pub requested_ms: i64,
    pub status: String,
    pub finished_ms: Option<i64>,
    pub refund_id: Option<String>,
    pub platform_judged: bool,
    pub merchant_liable: bool,
}

#[derive(Clone, Debug)]
pub struct Complaint {
    pub shop: String,
    pub buyer: String,
    pub ts_ms: i64,
    pub agent: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Rating {
    pub shop: String,
    pub buyer: String,
    pub ts_ms: i64,
    pub score: i64,
    pub agent: Option<String>,
    /// None = default true.
    pub resolved: Option<bool>,
}

#[derive(Clone, Debug, Default)]
pub struct Tables {
    pub msgs: Vec<Msg>,
    pub orders: Vec<Order>,
    pub refunds: Vec<Refund>,
    pub complaints: Vec<Complaint>,
    pub ratings: Vec<Rating>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Conversion,
    OrderValue,
    OrderItems,
    ComplaintRate,
    DisputeRefundRate,
    RefundTime,
    RatingShare,
}

#[derive(Clone, Debug)]
pub struct Metric {
    pub id: String,
    pub kind: Kind,
    /// `hours` as minutes of the day: start inclusive, end exclusive.
    pub start_min: u32,
    pub end_min: u32,
    pub scores: Vec<i64>,
    pub resolved_only: bool,
}

pub fn local_date(ts_ms: i64, tz: Tz) -> NaiveDate {
    Utc.timestamp_millis_opt(ts_ms)
        .single()
        .unwrap()
        .with_timezone(&tz)
        .date_naive()
}

fn in_hours(ts_ms: i64, m: &Metric, tz: Tz) -> bool {
    let t = Utc
        .timestamp_millis_opt(ts_ms)
        .single()
        .unwrap()
        .with_timezone(&tz);
    let minute = t.hour() * 60 + t.minute();
    m.start_min <= minute && minute < m.end_min
}

/// UTC ms of local 00:00 of `d`.
fn midnight(d: NaiveDate, tz: Tz) -> i64 {
    tz.from_local_datetime(&d.and_hms_opt(0, 0, 0).unwrap())
        .single()
        .unwrap()
        .timestamp_millis()
}

/// "a float's shortest round-trip decimal text × 100, then rounded half away
/// from zero", by hand on the text (amounts are ≥ 0).
pub fn fen_of(text: &str) -> i64 {
    let (int, frac) = match text.find('.') {
        Some(p) => (&text[..p], &text[p + 1..]),
        None => (text, ""),
    };
    let mut fen: i64 = int.parse::<i64>().unwrap() * 100;
    let digits: Vec<i64> = frac.bytes().map(|b| (b - b'0') as i64).collect();
    if digits.len() > 0 {
        fen += digits[0] * 10;
    }
    if digits.len() > 1 {
        fen += digits[1];
    }
    // The rest is a fraction of a fen: half or more rounds up.
    if digits.len() > 2 && digits[2] >= 5 {
        fen += 1;
    }
    fen
}

// ---------------------------------------------------------------------------
// §2: consult buyer-days
// ---------------------------------------------------------------------------

/// "inquiry: sender = buyer, not auto, not spam, not blocked, and peer_kind =
/// consumer".
fn is_inquiry(r: &Msg) -> bool {
    r.sender == "buyer" && !r.auto && !r.spam && !r.blocked && r.peer_kind == "consumer"
}

#[derive(Clone, Debug)]
pub struct ConsultDay {
    pub shop: String,
    pub buyer: String,
    pub day: NaiveDate,
    pub start_ms: i64,
    pub agent: String,
}

/// "A consult buyer-day is a (shop, buyer, local day D) with at least one
/// inquiry (§2) in the metric's hours on D ... Its start is its first in-hours
/// inquiry; its agent is that of the buyer unit (§2) with responders =
/// [manual]."
pub fn consult_days(msgs: &[Msg], m: &Metric, tz: Tz, day: NaiveDate) -> Vec<ConsultDay> {
    let mut out: Vec<ConsultDay> = Vec::new();
    let mut done: Vec<(String, String)> = Vec::new();
    for (i, r) in msgs.iter().enumerate() {
        if !is_inquiry(r) || !in_hours(r.ts_ms, m, tz) || local_date(r.ts_ms, tz) != day {
            continue;
        }
        let key = (r.shop.clone(), r.buyer.clone());
        if done.contains(&key) {
            continue;
        }
        done.push(key);
        // The first in-hours inquiry of the day in thread order (ts, then
        // input order: all of them are buyer rows).
        let mut s = i;
        for (j, q) in msgs.iter().enumerate() {
            if q.shop == r.shop
                && q.buyer == r.buyer
                && is_inquiry(q)
                && in_hours(q.ts_ms, m, tz)
                && local_date(q.ts_ms, tz) == day
                && (q.ts_ms, j) < (msgs[s].ts_ms, s)
            {
                s = j;
            }
        }
        let start = &msgs[s];
        // "the agent_id of its buyer row ... if non-empty; else the account of
        // the first valid reply at or after that row within the horizon; else
        // the empty string." A manual reply: sender = agent and not auto. At
        // the same ts a reply is after the buyer row ("buyer rows before all
        // others").
        let agent = match &start.agent_id {
            Some(a) if !a.is_empty() => a.clone(),
            _ => {
                let mut best: Option<usize> = None;
                for (j, q) in msgs.iter().enumerate() {
                    if q.shop == start.shop
                        && q.buyer == start.buyer
                        && q.sender == "agent"
                        && !q.auto
                        && q.peer_kind == "consumer"
                        && q.ts_ms >= start.ts_ms
                        && local_date(q.ts_ms, tz) <= day.succ_opt().unwrap()
                        && best.map_or(true, |b| (q.ts_ms, j) < (msgs[b].ts_ms, b))
                    {
                        best = Some(j);
                    }
                }
                best.and_then(|b| msgs[b].agent_id.clone())
                    .unwrap_or_default()
            }
        };
        out.push(ConsultDay {
            shop: start.shop.clone(),
            buyer: start.buyer.clone(),
            day,
            start_ms: start.ts_ms,
            agent,
        });
    }
    out
}

// ---------------------------------------------------------------------------
// §8.1: de-duplication and qualifying orders
// ---------------------------------------------------------------------------

/// "orders repeating (shop_id, order_id) with the same local paid day" are
/// dropped, "first in input order kept"; then "a qualifying order is paid
/// (paid_ts not null) and grouped".
fn qualifying_orders(orders: &[Order], tz: Tz) -> Vec<Order> {
    let mut out = Vec::new();
    for (i, o) in orders.iter().enumerate() {
        let Some(paid) = o.paid_ms else { continue };
        let mut repeat = false;
        for p in &orders[..i] {
            if p.shop == o.shop
                && p.order_id == o.order_id
                && p.paid_ms.map(|t| local_date(t, tz)) == Some(local_date(paid, tz))
            {
                repeat = true;
            }
        }
        if !repeat && o.grouped.unwrap_or(true) {
            out.push(o.clone());
        }
    }
    out
}

/// De-duplicated `success` refunds ("a refund whose status is not success is
/// ignored").
fn success_refunds(refunds: &[Refund], tz: Tz) -> Vec<Refund> {
    let mut out = Vec::new();
    for (i, r) in refunds.iter().enumerate() {
        let mut repeat = false;
        if let (Some(id), Some(fin)) = (&r.refund_id, r.finished_ms) {
            for p in &refunds[..i] {
                if p.shop == r.shop
                    && p.refund_id.as_ref() == Some(id)
                    && p.finished_ms.map(|t| local_date(t, tz)) == Some(local_date(fin, tz))
                {
                    repeat = true;
                }
            }
        }
        if !repeat && r.status == "success" {
            out.push(r.clone());
        }
    }
    out
}

// ---------------------------------------------------------------------------
// §8.2: the kinds
// ---------------------------------------------------------------------------

/// One contribution to a metric's row: (shop, agent, numerator, denominator).
type Contribution = (String, String, i64, i64);

fn contributions(t: &Tables, m: &Metric, tz: Tz, day: NaiveDate) -> Vec<Contribution> {
    let end = midnight(day.succ_opt().unwrap().succ_opt().unwrap(), tz);
    let orders = qualifying_orders(&t.orders, tz);
    let mut out = Vec::new();
    match m.kind {
        Kind::Conversion | Kind::OrderValue | Kind::OrderItems => {
            for c in consult_days(&t.msgs, m, tz, day) {
                // "no qualifying order in the shop paid on D before the start"
                let mut pre = false;
                for o in &orders {
                    let paid = o.paid_ms.unwrap();
                    if o.shop == c.shop
                        && o.buyer == c.buyer
                        && local_date(paid, tz) == day
                        && paid < c.start_ms
                    {
                        pre = true;
                    }
                }
                if pre {
                    continue;
                }
                // "a qualifying order in the shop paid at or after the start
                // and before 00:00 of D+2"
                let (mut n, mut fen, mut pieces) = (0, 0, 0);
                for o in &orders {
                    let paid = o.paid_ms.unwrap();
                    if o.shop == c.shop && o.buyer == c.buyer && paid >= c.start_ms && paid < end {
                        n += 1;
                        fen += fen_of(&o.amount);
                        pieces += o.items.unwrap_or(1);
                    }
                }
                let converted = n > 0;
                match m.kind {
                    Kind::Conversion => out.push((c.shop, c.agent, converted as i64, 1)),
                    // "the passing items of conversion"
                    Kind::OrderValue if converted => out.push((c.shop, c.agent, fen, 1)),
                    Kind::OrderItems if converted => out.push((c.shop, c.agent, pieces, 1)),
                    _ => {}
                }
            }
        }
        Kind::ComplaintRate => {
            for c in consult_days(&t.msgs, m, tz, day) {
                // "a complaint in the shop at any time of local day D"
                let mut filed = false;
                for k in &t.complaints {
                    if k.shop == c.shop && k.buyer == c.buyer && local_date(k.ts_ms, tz) == day {
                        filed = true;
                    }
                }
                out.push((c.shop, c.agent, filed as i64, 1));
            }
        }
        Kind::DisputeRefundRate => {
            for r in success_refunds(&t.refunds, tz) {
                let fin = r.finished_ms.unwrap();
                if local_date(fin, tz) == day && r.platform_judged && r.merchant_liable {
                    out.push((r.shop.clone(), String::new(), 1, 0));
                }
            }
            for o in &orders {
                if local_date(o.paid_ms.unwrap(), tz) == day {
                    out.push((o.shop.clone(), String::new(), 0, 1));
                }
            }
        }
        Kind::RefundTime => {
            for r in success_refunds(&t.refunds, tz) {
                let fin = r.finished_ms.unwrap();
                if local_date(fin, tz) == day && in_hours(fin, m, tz) {
                    out.push((r.shop.clone(), String::new(), fin - r.requested_ms, 1));
                }
            }
        }
        Kind::RatingShare => {
            // "ratings in hours on D; of those, per (shop, buyer, agent_id, D)
            // only the last by ts (ties: the last in input order)"
            let agent = |r: &Rating| r.agent.clone().unwrap_or_default();
            let chosen: Vec<usize> = (0..t.ratings.len())
                .filter(|&i| {
                    let r = &t.ratings[i];
                    local_date(r.ts_ms, tz) == day && in_hours(r.ts_ms, m, tz)
                })
                .collect();
            for &i in &chosen {
                let r = &t.ratings[i];
                let mut last = true;
                for &j in &chosen {
                    let q = &t.ratings[j];
                    if q.shop == r.shop
                        && q.buyer == r.buyer
                        && agent(q) == agent(r)
                        && (q.ts_ms, j) > (r.ts_ms, i)
                    {
                        last = false;
                    }
                }
                if last {
                    let passed = m.scores.contains(&r.score)
                        && (!m.resolved_only || r.resolved.unwrap_or(true));
                    out.push((r.shop.clone(), agent(r), passed as i64, 1));
                }
            }
        }
    }
    out
}

/// (shop, metric) -> (numerator, denominator) of day `day`, and (shop,
/// agent, metric) -> the same: "only where the denominator > 0, except
/// dispute_refund_rate, whose rows exist where numerator or denominator > 0".
pub fn scorecard(
    t: &Tables,
    metrics: &[Metric],
    tz: Tz,
    day: NaiveDate,
) -> (
    BTreeMap<(String, String), (i64, i64)>,
    BTreeMap<(String, String, String), (i64, i64)>,
) {
    let mut shop: BTreeMap<(String, String), (i64, i64)> = BTreeMap::new();
    let mut agent: BTreeMap<(String, String, String), (i64, i64)> = BTreeMap::new();
    for m in metrics {
        for (s, a, n, d) in contributions(t, m, tz, day) {
            let e = shop.entry((s.clone(), m.id.clone())).or_insert((0, 0));
            e.0 += n;
            e.1 += d;
            let e = agent.entry((s, a, m.id.clone())).or_insert((0, 0));
            e.0 += n;
            e.1 += d;
        }
    }
    let is_dispute = |id: &str| {
        metrics
            .iter()
            .any(|m| m.id == id && m.kind == Kind::DisputeRefundRate)
    };
    shop.retain(|k, v| v.1 > 0 || (is_dispute(&k.1) && v.0 > 0));
    agent.retain(|k, v| v.1 > 0 || (is_dispute(&k.2) && v.0 > 0));
    (shop, agent)
}
