//! `kefu gen --scorecard DIR`: orders, refunds, complaints and ratings
//! (SPEC §8.1) for the shops, buyers, agents and days of the generated
//! messages, with the awkward content real exports have.
//!
//! The tables draw from their own [`Rng`] stream, seeded from the seed, so
//! the message table stays the one `kefu gen` writes without the flag.
//! Sizes, against the message rows: orders about 10%, refunds 2%,
//! complaints 1%, ratings 5%.
//!
//! What is in them:
//! - orders: float yuan amounts (0.015, 19.99, 59.9, 1e-3, whole yuan, any
//!   fen), the same orders with decimal amounts in `orders_decimal.parquet`
//!   (scale 3: every amount is exact there, so both files give the same fen);
//!   payments before, after and beyond the horizon (00:00 of D+2) of a
//!   consulting buyer, and by buyers who never wrote; unpaid (null `paid_ts`)
//!   and `grouped = false` orders; duplicates on the same and on another day.
//! - refunds: `success` and other statuses, `platform_judged` and
//!   `merchant_liable`, refunds of orders paid before the first day, and a
//!   few bad rows (a `success` with a null `finished_ts`, one finished before
//!   it was requested): about one of each per 10,000 refunds of a day, so a
//!   run's bad-row share stays far under the default 0.1%; tables under
//!   10,000 refunds a day have none.
//! - complaints: by consulting buyers, some without `agent_id`; `ts` in µs.
//! - ratings: scores 1-5, some `resolved = false`, repeated ratings of a
//!   buyer for an agent on a day, some with equal `ts` (ties).

use polars::prelude::*;

use super::{GenConfig, Rng, Thread};
use crate::error::{Error, Result};

/// Separates the scorecard's stream from the messages' one.
const STREAM: u64 = 0x5C0E_CA2D_0000_0001;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

/// Amounts in thousandths of a yuan that exports get wrong when they
/// multiply floats: 0.015, 19.99, 59.9, 0.001, 128, 9.9, 3.
const AWKWARD_MILLS: [i64; 7] = [15, 19_990, 59_900, 1, 128_000, 9_900, 3_000];

/// The tables, as (file name, frame), in the order they are written.
pub(super) fn tables(
    cfg: &GenConfig,
    threads: &[Thread],
    message_rows: u64,
) -> Result<Vec<(&'static str, DataFrame)>> {
    let mut rng = Rng::new(cfg.seed ^ STREAM);
    let mut g = Gen {
        rng: &mut rng,
        threads,
        seed: cfg.seed,
        first_midnight: threads.iter().map(|t| t.midnight).min().unwrap_or(0),
    };
    let orders = g.orders(message_rows / 10);
    let refunds = g.refunds(&orders, message_rows / 50, cfg.days.max(1) as u64);
    let complaints = g.complaints(message_rows / 100);
    let ratings = g.ratings(message_rows / 20);
    Ok(vec![
        ("orders.parquet", orders.frame(false)?),
        ("orders_decimal.parquet", orders.frame(true)?),
        ("refunds.parquet", refunds.frame()?),
        ("complaints.parquet", complaints.frame()?),
        ("ratings.parquet", ratings.frame()?),
    ])
}

struct Gen<'a> {
    rng: &'a mut Rng,
    threads: &'a [Thread],
    seed: u64,
    first_midnight: i64,
}

fn shop_id(s: u32) -> String {
    format!("shop{s:05}")
}

fn agent_id(shop: u32, k: u64) -> String {
    format!("{}:agent{k}", shop_id(shop))
}

#[derive(Default)]
struct Orders {
    shop: Vec<String>,
    buyer: Vec<String>,
    order_id: Vec<String>,
    /// Thousandths of a yuan.
    mills: Vec<i64>,
    paid: Vec<Option<i64>>,
    items: Vec<i64>,
    grouped: Vec<bool>,
}

impl Gen<'_> {
    fn thread(&mut self) -> Option<&Thread> {
        if self.threads.is_empty() {
            return None;
        }
        let k = self.rng.below(self.threads.len() as u64) as usize;
        Some(&self.threads[k])
    }

    fn mills(&mut self) -> i64 {
        if self.rng.chance(0.4) {
            AWKWARD_MILLS[self.rng.below(AWKWARD_MILLS.len() as u64) as usize]
        } else {
            10 * (1 + self.rng.below(50_000) as i64)
        }
    }

    fn orders(&mut self, n: u64) -> Orders {
        let mut o = Orders::default();
        let mut k = 0u64;
        while (o.shop.len() as u64) < n {
            let Some(t) = self.thread() else { break };
            let (shop, buyer, start, midnight) = (t.shop, t.buyer.clone(), t.start, t.midnight);
            let r = self.rng.below(100);
            let (buyer, paid) = match r {
                // Paid before the consultation (not pre-sale).
                0..=9 => (
                    buyer,
                    start - 60_000 - self.rng.below(3 * HOUR as u64) as i64,
                ),
                // Paid after it, before 00:00 of D+2: converted.
                10..=64 => (
                    buyer,
                    start + 30_000 + self.rng.below(20 * HOUR as u64) as i64,
                ),
                // Paid beyond the horizon.
                65..=74 => (
                    buyer,
                    midnight + 2 * DAY + self.rng.below(6 * HOUR as u64) as i64,
                ),
                // A buyer who never wrote, any time of the day.
                _ => (
                    format!("x{}", self.rng.below(100_000)),
                    midnight + self.rng.below(DAY as u64) as i64,
                ),
            };
            let paid = (!self.rng.chance(0.03)).then_some(paid);
            k += 1;
            let mills = self.mills();
            let items = 1 + (self.rng.unit().powi(3) * 4.0) as i64;
            let grouped = !self.rng.chance(0.05);
            let id = format!("o{}-{k}", self.seed);
            o.push(shop, buyer, id, mills, paid, items, grouped);
            if self.rng.chance(0.01) {
                // Re-exported: the same row again, or the same order id on
                // another day (a different order to the dedup rule).
                let i = o.shop.len() - 1;
                let later = self.rng.chance(0.5);
                let paid = o.paid[i].map(|p| if later { p + DAY } else { p });
                let (b, id) = (o.buyer[i].clone(), o.order_id[i].clone());
                o.push(shop, b, id, mills, paid, items, grouped);
            }
        }
        o
    }

    fn refunds(&mut self, orders: &Orders, n: u64, days: u64) -> Refunds {
        let mut r = Refunds::default();
        let paid: Vec<usize> = (0..orders.shop.len())
            .filter(|&i| orders.paid[i].is_some())
            .collect();
        if paid.is_empty() {
            return r;
        }
        // A bad row of each kind per 10,000 refunds of a day.
        let bad_each = n / days / 10_000;
        let mut k = 0u64;
        while (r.shop.len() as u64) < n {
            k += 1;
            let old = self.rng.chance(0.05);
            let (shop, order_id, requested) = if old {
                // An order paid before the first day, not in the orders table.
                let s = self.thread().map(|t| t.shop).unwrap_or(0);
                let req = self.first_midnight - 1 - self.rng.below(5 * DAY as u64) as i64;
                (shop_id(s), format!("old{}-{k}", self.seed), req)
            } else {
                let i = paid[self.rng.below(paid.len() as u64) as usize];
                let req = orders.paid[i].expect("paid")
                    + 600_000
                    + (self.rng.unit().powi(2) * 2.0 * DAY as f64) as i64;
                (orders.shop[i].clone(), orders.order_id[i].clone(), req)
            };
            let success = self.rng.chance(0.75);
            let took = ((4.0 * HOUR as f64).ln() + 1.2 * self.rng.normal())
                .exp()
                .min(10.0 * DAY as f64) as i64;
            // An old order's refund finishes on one of the generated days.
            let done = if old {
                self.first_midnight + self.rng.below(days * DAY as u64) as i64
            } else {
                requested + took
            };
            let finished = (success || self.rng.chance(0.5)).then_some(done);
            let status = if success {
                "success"
            } else if self.rng.chance(0.5) {
                "closed"
            } else {
                "rejected"
            };
            let judged = self.rng.chance(0.15);
            let liable = judged && self.rng.chance(0.6);
            r.shop.push(shop);
            r.order_id.push(order_id);
            r.refund_id.push(Some(format!("r{}-{k}", self.seed)));
            r.requested.push(requested);
            r.finished.push(finished);
            r.status.push(status);
            r.judged.push(judged);
            r.liable.push(liable);
        }
        // The bad rows, spread over the table.
        for b in 0..2 * bad_each {
            let i = self.rng.below(r.shop.len() as u64) as usize;
            r.status[i] = "success";
            r.finished[i] = if b % 2 == 0 {
                None
            } else {
                Some(r.requested[i] - HOUR)
            };
        }
        r
    }

    fn complaints(&mut self, n: u64) -> Complaints {
        let mut c = Complaints::default();
        while (c.shop.len() as u64) < n {
            let Some(t) = self.thread() else { break };
            let (shop, agents, buyer, start) = (t.shop, t.agents, t.buyer.clone(), t.start);
            let ts = start + 60_000 + self.rng.below(6 * HOUR as u64) as i64;
            let agent =
                (!self.rng.chance(0.2)).then(|| agent_id(shop, self.rng.below(agents as u64)));
            c.shop.push(shop_id(shop));
            c.buyer.push(buyer);
            c.ts.push(ts);
            c.agent.push(agent);
        }
        c
    }

    fn ratings(&mut self, n: u64) -> Ratings {
        let mut r = Ratings::default();
        while (r.shop.len() as u64) < n {
            let Some(t) = self.thread() else { break };
            let (shop, agents, buyer, start) = (t.shop, t.agents, t.buyer.clone(), t.start);
            let agent =
                (!self.rng.chance(0.1)).then(|| agent_id(shop, self.rng.below(agents as u64)));
            let mut ts = start + 60_000 + self.rng.below(4 * HOUR as u64) as i64;
            // Usually one rating; sometimes the buyer rates again, at times
            // at the same millisecond (a tie: the last in input order wins).
            let repeats = if self.rng.chance(0.1) {
                2 + self.rng.below(2)
            } else {
                1
            };
            for _ in 0..repeats {
                let score = match self.rng.below(100) {
                    0..=9 => 1,
                    10..=14 => 2,
                    15..=24 => 3,
                    25..=44 => 4,
                    _ => 5,
                };
                r.shop.push(shop_id(shop));
                r.buyer.push(buyer.clone());
                r.agent.push(agent.clone());
                r.ts.push(ts);
                r.score.push(score);
                r.resolved.push(!self.rng.chance(0.15));
                if !self.rng.chance(0.4) {
                    ts += 1000 + self.rng.below(HOUR as u64) as i64;
                }
            }
        }
        r
    }
}

fn frame_err(e: PolarsError) -> Error {
    Error::Io(e.to_string())
}

/// A UTC timestamp column from ms.
fn times(name: &str, ms: Vec<Option<i64>>, unit: TimeUnit) -> Result<Column> {
    let scale = match unit {
        TimeUnit::Milliseconds => 1,
        TimeUnit::Microseconds => 1_000,
        TimeUnit::Nanoseconds => 1_000_000,
    };
    let v: Vec<Option<i64>> = ms.into_iter().map(|m| m.map(|m| m * scale)).collect();
    Column::new(name.into(), v)
        .cast(&DataType::Datetime(
            unit,
            Some(polars::prelude::TimeZone::UTC),
        ))
        .map_err(frame_err)
}

impl Orders {
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        shop: u32,
        buyer: String,
        id: String,
        mills: i64,
        paid: Option<i64>,
        items: i64,
        grouped: bool,
    ) {
        self.shop.push(shop_id(shop));
        self.buyer.push(buyer);
        self.order_id.push(id);
        self.mills.push(mills);
        self.paid.push(paid);
        self.items.push(items);
        self.grouped.push(grouped);
    }

    /// Float yuan (`mills / 1000` is the double nearest the amount, whose
    /// shortest text is the amount), or decimal(18, 3) yuan.
    fn frame(&self, decimal: bool) -> Result<DataFrame> {
        let amount: Column = if decimal {
            let v: Vec<i128> = self.mills.iter().map(|&m| m as i128).collect();
            Int128Chunked::from_vec("amount".into(), v)
                .into_decimal(18, 3)
                .map_err(frame_err)?
                .into_series()
                .into()
        } else {
            let v: Vec<f64> = self.mills.iter().map(|&m| m as f64 / 1000.0).collect();
            Column::new("amount".into(), v)
        };
        DataFrame::new_infer_height(vec![
            Column::new("shop_id".into(), &self.shop),
            Column::new("buyer_id".into(), &self.buyer),
            Column::new("order_id".into(), &self.order_id),
            amount,
            times("paid_ts", self.paid.clone(), TimeUnit::Milliseconds)?,
            Column::new("items".into(), &self.items),
            Column::new("grouped".into(), &self.grouped),
        ])
        .map_err(frame_err)
    }
}

#[derive(Default)]
struct Refunds {
    shop: Vec<String>,
    order_id: Vec<String>,
    refund_id: Vec<Option<String>>,
    requested: Vec<i64>,
    finished: Vec<Option<i64>>,
    status: Vec<&'static str>,
    judged: Vec<bool>,
    liable: Vec<bool>,
}

impl Refunds {
    fn frame(&self) -> Result<DataFrame> {
        let requested = self.requested.iter().map(|&t| Some(t)).collect();
        DataFrame::new_infer_height(vec![
            Column::new("shop_id".into(), &self.shop),
            Column::new("order_id".into(), &self.order_id),
            Column::new("refund_id".into(), &self.refund_id),
            times("requested_ts", requested, TimeUnit::Milliseconds)?,
            times("finished_ts", self.finished.clone(), TimeUnit::Milliseconds)?,
            Column::new("status".into(), &self.status),
            Column::new("platform_judged".into(), &self.judged),
            Column::new("merchant_liable".into(), &self.liable),
        ])
        .map_err(frame_err)
    }
}

#[derive(Default)]
struct Complaints {
    shop: Vec<String>,
    buyer: Vec<String>,
    ts: Vec<i64>,
    agent: Vec<Option<String>>,
}

impl Complaints {
    fn frame(&self) -> Result<DataFrame> {
        let ts = self.ts.iter().map(|&t| Some(t)).collect();
        DataFrame::new_infer_height(vec![
            Column::new("shop_id".into(), &self.shop),
            Column::new("buyer_id".into(), &self.buyer),
            times("ts", ts, TimeUnit::Microseconds)?,
            Column::new("agent_id".into(), &self.agent),
        ])
        .map_err(frame_err)
    }
}

#[derive(Default)]
struct Ratings {
    shop: Vec<String>,
    buyer: Vec<String>,
    agent: Vec<Option<String>>,
    ts: Vec<i64>,
    score: Vec<i64>,
    resolved: Vec<bool>,
}

impl Ratings {
    fn frame(&self) -> Result<DataFrame> {
        let ts = self.ts.iter().map(|&t| Some(t)).collect();
        DataFrame::new_infer_height(vec![
            Column::new("shop_id".into(), &self.shop),
            Column::new("buyer_id".into(), &self.buyer),
            Column::new("agent_id".into(), &self.agent),
            times("ts", ts, TimeUnit::Milliseconds)?,
            Column::new("score".into(), &self.score),
            Column::new("resolved".into(), &self.resolved),
        ])
        .map_err(frame_err)
    }
}
