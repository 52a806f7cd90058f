//! The four scorecard tables of SPEC §8.1 (orders, refunds, complaints,
//! ratings): found like `--input`, remapped, checked row by row (bad rows
//! counted with examples), de-duplicated, and kept as typed vectors in input
//! order for the local days a run needs.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::NaiveDate;
use polars::prelude::PlHashSet;

use crate::error::{Error, Result};
use crate::rules::InputSettings;

use super::read::{FileData, Kind, LocalTime, Reader, Time};

/// A table's settings from the rule file (`[orders.columns]`, …).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableSettings {
    /// canonical column name → the column name in the files.
    pub columns: BTreeMap<String, String>,
    /// Refunds: your `status` value → canonical value (`success` or
    /// anything else); matched exactly, unmapped values pass through.
    pub status_values: BTreeMap<String, String>,
    /// Ratings: your `score` value (integers as their decimal text) → 1-5.
    /// Unmapped values must be the integers 1-5 themselves.
    pub score_values: BTreeMap<String, u8>,
}

/// The local days whose rows a run keeps: `first..=last` (the computed
/// days and the one after the last, for the conversion window).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalDays {
    pub first: i32,
    pub last: i32,
}

impl LocalDays {
    /// The days a run over `first..=last` (day numbers) needs: one more.
    pub fn for_run(first: i32, last: i32) -> LocalDays {
        LocalDays {
            first,
            last: last + 1,
        }
    }
    fn contains(&self, day: i32) -> bool {
        self.first <= day && day <= self.last
    }
}

/// What reading a table saw, for the summary and the bad-row checks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableStats {
    pub files: usize,
    /// Rows considered: in the kept days, or with no day (a null time).
    pub rows_read: u64,
    pub bad_rows: u64,
    /// A few bad rows: "file F, row N: reason" (N counts from 0).
    pub bad_examples: Vec<String>,
    pub duplicates: u64,
    /// Rows that never count: unpaid orders, refunds not `success`.
    pub ignored: u64,
}

impl TableStats {
    fn bad(&mut self, file: &FileData, row: usize, why: &str) {
        self.bad_rows += 1;
        if self.bad_examples.len() < 5 {
            self.bad_examples
                .push(format!("{}, row {row}: {why}", file.shown));
        }
    }

    /// Fails under `strict` on any bad row, or when bad rows exceed
    /// `max_share` of the rows read (each table on its own, §8.1).
    pub fn check(&self, table: &str, max_share: f64, strict: bool) -> Result<()> {
        if self.bad_rows == 0 {
            return Ok(());
        }
        let examples = self.bad_examples.join("; ");
        if strict {
            return Err(Error::BadData(format!(
                "{table}: {} bad row(s) and --strict is set. Examples: {examples}",
                self.bad_rows
            )));
        }
        let share = self.bad_rows as f64 / self.rows_read.max(1) as f64;
        if share > max_share {
            return Err(Error::BadData(format!(
                "{table}: {} of {} rows read are bad ({:.4}%), more than max_bad_row_share = {}. \
                 Examples: {examples}",
                self.bad_rows,
                self.rows_read,
                share * 100.0,
                max_share
            )));
        }
        Ok(())
    }
}

/// A paid order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Order {
    pub shop: String,
    pub buyer: String,
    pub order_id: String,
    pub fen: i64,
    pub items: i64,
    pub grouped: bool,
    pub paid: LocalTime,
}

/// A `success` refund.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refund {
    pub shop: String,
    pub order_id: String,
    pub refund_id: Option<String>,
    pub requested_utc: i64,
    pub finished: LocalTime,
    pub platform_judged: bool,
    pub merchant_liable: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Complaint {
    pub shop: String,
    pub buyer: String,
    /// "" when null or absent.
    pub agent: String,
    pub ts: LocalTime,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rating {
    pub shop: String,
    pub buyer: String,
    /// "" when null or absent.
    pub agent: String,
    pub ts: LocalTime,
    pub score: u8,
    pub resolved: bool,
}

/// One table's kept rows, in input order (files in byte-wise path order,
/// then row order), and what the read saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table<R> {
    pub rows: Vec<R>,
    pub stats: TableStats,
}

impl<R> Default for Table<R> {
    fn default() -> Self {
        Table {
            rows: Vec::new(),
            stats: TableStats::default(),
        }
    }
}

/// The tables given to a run (`None`: not given, its metrics are skipped).
#[derive(Clone, Debug, Default)]
pub struct Tables {
    pub orders: Option<Table<Order>>,
    pub refunds: Option<Table<Refund>>,
    pub complaints: Option<Table<Complaint>>,
    pub ratings: Option<Table<Rating>>,
}

/// The files of a table PATH: `--input`'s discovery, no `dt=` folder skipped.
pub fn table_files(path: &str) -> Result<Vec<PathBuf>> {
    crate::input::discover(path, (NaiveDate::MIN, NaiveDate::MAX))
}

fn reader<'a>(table: &'static str, s: &'a TableSettings, input: &InputSettings) -> Reader<'a> {
    Reader {
        table,
        columns: &s.columns,
        tz: input.timezone,
        epoch: input.ts_epoch_unit,
    }
}

/// A required text value, or the bad-row reason.
fn need<'v>(v: Option<&'v str>, name: &str) -> std::result::Result<&'v str, String> {
    v.ok_or_else(|| format!("{name} is null"))
}

/// The row's time: `Err` for a bad value, `Ok(None)` when null.
fn time_of(t: &Time) -> std::result::Result<Option<LocalTime>, String> {
    t.clone()
}

/// Reads the orders of `days` (by local paid day).
pub fn load_orders(
    path: &str,
    settings: &TableSettings,
    input: &InputSettings,
    days: LocalDays,
) -> Result<Table<Order>> {
    use Kind::*;
    let r = reader("orders", settings, input);
    let mut t = Table::default();
    for file in table_files(path)? {
        t.stats.files += 1;
        let f = r.read(
            &file,
            &[
                ("shop_id", Text, true),
                ("buyer_id", Text, true),
                ("order_id", Text, true),
                ("amount", Money, true),
                ("paid_ts", Time, true),
                ("items", Int, false),
                ("grouped", Bool, false),
            ],
        )?;
        let (shop, buyer, order) = (f.text("shop_id")?, f.text("buyer_id")?, f.text("order_id")?);
        let fen = f.money("amount")?;
        let paid_col = f.times("paid_ts", &r.tz, r.epoch)?;
        let items = f.ints("items")?;
        let grouped = f.bools("grouped", true)?;
        t.rows.reserve(f.height);
        for i in 0..f.height {
            let paid = match time_of(&paid_col[i]) {
                Ok(None) => {
                    t.stats.ignored += 1; // not paid: never counts
                    continue;
                }
                Ok(Some(p)) if !days.contains(p.day) => continue,
                p => p,
            };
            t.stats.rows_read += 1;
            let row = (|| {
                let paid = paid?.expect("null handled above");
                let (s, b, o) = (
                    need(shop.get(i), "shop_id")?,
                    need(buyer.get(i), "buyer_id")?,
                    need(order.get(i), "order_id")?,
                );
                let fen = fen[i].clone()?.ok_or("amount is null")?;
                let items = match items[i] {
                    None => 1,
                    Some(n) if n < 0 => return Err(format!("items {n} is negative")),
                    Some(n) => i64::try_from(n).map_err(|_| format!("items {n} is too large"))?,
                };
                Ok(Order {
                    shop: s.to_string(),
                    buyer: b.to_string(),
                    order_id: o.to_string(),
                    fen,
                    items,
                    grouped: grouped[i],
                    paid,
                })
            })();
            match row {
                Ok(o) => t.rows.push(o),
                Err(why) => t.stats.bad(&f, i, &why),
            }
        }
    }
    // (shop, order id, local paid day): the first in input order stays.
    let keep: Vec<bool> = {
        let mut seen = PlHashSet::default();
        t.rows
            .iter()
            .map(|o| seen.insert((o.shop.as_str(), o.order_id.as_str(), o.paid.day)))
            .collect()
    };
    dedup(&mut t, keep);
    Ok(t)
}

/// Drops the rows `keep` says no to, counting them as duplicates.
fn dedup<R>(t: &mut Table<R>, keep: Vec<bool>) {
    let mut k = keep.into_iter();
    let before = t.rows.len();
    t.rows.retain(|_| k.next().unwrap_or(true));
    t.stats.duplicates += (before - t.rows.len()) as u64;
}

/// Reads the `success` refunds finished on `days`.
pub fn load_refunds(
    path: &str,
    settings: &TableSettings,
    input: &InputSettings,
    days: LocalDays,
) -> Result<Table<Refund>> {
    use Kind::*;
    let r = reader("refunds", settings, input);
    let mut t = Table::default();
    for file in table_files(path)? {
        t.stats.files += 1;
        let f = r.read(
            &file,
            &[
                ("shop_id", Text, true),
                ("order_id", Text, true),
                ("requested_ts", Time, true),
                ("status", Text, true),
                ("finished_ts", Time, false),
                ("refund_id", Text, false),
                ("platform_judged", Bool, false),
                ("merchant_liable", Bool, false),
            ],
        )?;
        let (shop, order, status) = (f.text("shop_id")?, f.text("order_id")?, f.text("status")?);
        let refund_id = f.text("refund_id")?;
        let requested = f.times("requested_ts", &r.tz, r.epoch)?;
        let finished = f.times("finished_ts", &r.tz, r.epoch)?;
        let judged = f.bools("platform_judged", false)?;
        let liable = f.bools("merchant_liable", false)?;
        for i in 0..f.height {
            if let Ok(Some(fin)) = &finished[i] {
                if !days.contains(fin.day) {
                    continue;
                }
            }
            t.stats.rows_read += 1;
            let row = (|| {
                let s = need(shop.get(i), "shop_id")?;
                let o = need(order.get(i), "order_id")?;
                let st = need(status.get(i), "status")?;
                let req = time_of(&requested[i])?.ok_or("requested_ts is null")?;
                let st = settings
                    .status_values
                    .get(st)
                    .map(String::as_str)
                    .unwrap_or(st);
                if st != "success" {
                    return Ok(None);
                }
                let fin =
                    time_of(&finished[i])?.ok_or("a success refund with a null finished_ts")?;
                if fin.utc < req.utc {
                    return Err("the refund finished before it was requested".to_string());
                }
                Ok(Some(Refund {
                    shop: s.to_string(),
                    order_id: o.to_string(),
                    refund_id: refund_id.get(i).map(str::to_string),
                    requested_utc: req.utc,
                    finished: fin,
                    platform_judged: judged[i],
                    merchant_liable: liable[i],
                }))
            })();
            match row {
                Ok(Some(x)) => t.rows.push(x),
                Ok(None) => t.stats.ignored += 1,
                Err(why) => t.stats.bad(&f, i, &why),
            }
        }
    }
    // (shop, refund id, local finished day), when the refund has an id.
    let keep: Vec<bool> = {
        let mut seen = PlHashSet::default();
        t.rows
            .iter()
            .map(|x| match &x.refund_id {
                Some(id) => seen.insert((x.shop.as_str(), id.as_str(), x.finished.day)),
                None => true,
            })
            .collect()
    };
    dedup(&mut t, keep);
    Ok(t)
}

/// Reads the complaints filed on `days` (not de-duplicated).
pub fn load_complaints(
    path: &str,
    settings: &TableSettings,
    input: &InputSettings,
    days: LocalDays,
) -> Result<Table<Complaint>> {
    use Kind::*;
    let r = reader("complaints", settings, input);
    let mut t = Table::default();
    for file in table_files(path)? {
        t.stats.files += 1;
        let f = r.read(
            &file,
            &[
                ("shop_id", Text, true),
                ("buyer_id", Text, true),
                ("ts", Time, true),
                ("agent_id", Text, false),
            ],
        )?;
        let (shop, buyer, agent) = (f.text("shop_id")?, f.text("buyer_id")?, f.text("agent_id")?);
        let ts = f.times("ts", &r.tz, r.epoch)?;
        for i in 0..f.height {
            if matches!(&ts[i], Ok(Some(x)) if !days.contains(x.day)) {
                continue;
            }
            t.stats.rows_read += 1;
            let row = (|| {
                let s = need(shop.get(i), "shop_id")?;
                let b = need(buyer.get(i), "buyer_id")?;
                let ts = time_of(&ts[i])?.ok_or("ts is null")?;
                Ok::<_, String>(Complaint {
                    shop: s.to_string(),
                    buyer: b.to_string(),
                    agent: agent.get(i).unwrap_or_default().to_string(),
                    ts,
                })
            })();
            match row {
                Ok(x) => t.rows.push(x),
                Err(why) => t.stats.bad(&f, i, &why),
            }
        }
    }
    Ok(t)
}

/// A rating's score: its text looked up in `score_values`, else the
/// integer 1-5 itself.
fn score(v: &str, map: &BTreeMap<String, u8>) -> std::result::Result<u8, String> {
    if let Some(&s) = map.get(v) {
        return if (1..=5).contains(&s) {
            Ok(s)
        } else {
            Err(format!("score `{v}` is mapped to {s}, not 1-5"))
        };
    }
    match v.parse::<u8>() {
        Ok(s) if (1..=5).contains(&s) => Ok(s),
        _ => Err(format!(
            "score `{v}` is not an integer 1-5 nor a value of [ratings.score_values]"
        )),
    }
}

/// Reads the ratings given on `days` (not de-duplicated: they are picked).
pub fn load_ratings(
    path: &str,
    settings: &TableSettings,
    input: &InputSettings,
    days: LocalDays,
) -> Result<Table<Rating>> {
    use Kind::*;
    let r = reader("ratings", settings, input);
    let mut t = Table::default();
    for file in table_files(path)? {
        t.stats.files += 1;
        let f = r.read(
            &file,
            &[
                ("shop_id", Text, true),
                ("buyer_id", Text, true),
                ("ts", Time, true),
                ("score", Text, true),
                ("agent_id", Text, false),
                ("resolved", Bool, false),
            ],
        )?;
        let (shop, buyer, agent) = (f.text("shop_id")?, f.text("buyer_id")?, f.text("agent_id")?);
        let scores = f.text("score")?;
        let ts = f.times("ts", &r.tz, r.epoch)?;
        let resolved = f.bools("resolved", true)?;
        t.rows.reserve(f.height);
        for i in 0..f.height {
            if matches!(&ts[i], Ok(Some(x)) if !days.contains(x.day)) {
                continue;
            }
            t.stats.rows_read += 1;
            let row = (|| {
                let s = need(shop.get(i), "shop_id")?;
                let b = need(buyer.get(i), "buyer_id")?;
                let ts = time_of(&ts[i])?.ok_or("ts is null")?;
                let score = score(need(scores.get(i), "score")?, &settings.score_values)?;
                Ok::<_, String>(Rating {
                    shop: s.to_string(),
                    buyer: b.to_string(),
                    agent: agent.get(i).unwrap_or_default().to_string(),
                    ts,
                    score,
                    resolved: resolved[i],
                })
            })();
            match row {
                Ok(x) => t.rows.push(x),
                Err(why) => t.stats.bad(&f, i, &why),
            }
        }
    }
    Ok(t)
}
