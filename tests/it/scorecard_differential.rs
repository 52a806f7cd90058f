//! The scorecard (SPEC §8) against its naive reference
//! (`common::reference_scorecard`) on random small tables, through the
//! binary: `shop_daily` and `agent_daily` row by row, the value by its
//! formula, agent rows adding up to shop rows, and day-locality (day D from
//! only the rows of D and D+1 gives the same `shop_daily`).

use std::collections::BTreeMap;
use std::path::Path;

use chrono::NaiveDate;
use polars::prelude::*;

use crate::common::reference_scorecard::{self as r, Kind, Metric, Tables};
use crate::common::*;

const DAYS: [&str; 3] = ["2024-05-15", "2024-05-16", "2024-05-17"];
const MS_DAY: i64 = 86_400_000;

/// A small seeded generator (splitmix64): the cases are the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// True with probability `pct` percent.
    fn pct(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
    fn pick<'a>(&mut self, of: &[&'a str]) -> &'a str {
        of[self.below(of.len() as u64) as usize]
    }
}

const RULES: &str = r#"timezone = "Asia/Shanghai"

[[metric]]
id = "k.conv"
kind = "conversion"
hours = "00:00-24:00"

[[metric]]
id = "k.conv_h"
kind = "conversion"
hours = "08:00-23:00"

[[metric]]
id = "k.value"
kind = "order_value"
hours = "00:00-24:00"

[[metric]]
id = "k.items"
kind = "order_items"
hours = "08:00-23:00"

[[metric]]
id = "k.complaint"
kind = "complaint_rate"
hours = "00:00-24:00"

[[metric]]
id = "k.dispute"
kind = "dispute_refund_rate"
hours = "00:00-24:00"

[[metric]]
id = "k.refund_time"
kind = "refund_time"
hours = "00:00-24:00"

[[metric]]
id = "k.refund_time_h"
kind = "refund_time"
hours = "08:00-23:00"

[[metric]]
id = "k.rating"
kind = "rating_share"
hours = "00:00-24:00"
scores = [4, 5]
resolved_only = true

[[metric]]
id = "k.rating_h"
kind = "rating_share"
hours = "08:00-23:00"
scores = [1, 2, 3]
"#;

fn metrics() -> Vec<Metric> {
    let m = |id: &str, kind, h: bool, scores: &[i64], resolved_only| Metric {
        id: id.into(),
        kind,
        start_min: if h { 8 * 60 } else { 0 },
        end_min: if h { 23 * 60 } else { 24 * 60 },
        scores: scores.to_vec(),
        resolved_only,
    };
    vec![
        m("k.conv", Kind::Conversion, false, &[], false),
        m("k.conv_h", Kind::Conversion, true, &[], false),
        m("k.value", Kind::OrderValue, false, &[], false),
        m("k.items", Kind::OrderItems, true, &[], false),
        m("k.complaint", Kind::ComplaintRate, false, &[], false),
        m("k.dispute", Kind::DisputeRefundRate, false, &[], false),
        m("k.refund_time", Kind::RefundTime, false, &[], false),
        m("k.refund_time_h", Kind::RefundTime, true, &[], false),
        m("k.rating", Kind::RatingShare, false, &[4, 5], true),
        m("k.rating_h", Kind::RatingShare, true, &[1, 2, 3], false),
    ]
}

/// How a metric's value follows from its counts (SPEC §8.2's value column).
fn value_of(kind: Kind, num: i64, den: i64) -> Option<f64> {
    if den == 0 {
        return None;
    }
    let v = num as f64 / den as f64;
    Some(match kind {
        Kind::OrderValue => v / 100.0,
        Kind::RefundTime => v / 1000.0,
        _ => v,
    })
}

// ---------------------------------------------------------------------------
// Random tables
// ---------------------------------------------------------------------------

const SHOPS: [&str; 2] = ["s1", "s2"];
const BUYERS: [&str; 4] = ["b1", "b2", "b3", "b4"];
const AGENTS: [&str; 3] = ["a1", "a2", "a3"];

/// A UTC instant on a random local day of `first..first + days` (day 0 = the
/// day before DAYS[0]) at a random time, often near the hours' edges and on
/// whole minutes (ties).
fn instant(rng: &mut Rng, first: i64, days: u64) -> i64 {
    let day = first + rng.below(days) as i64;
    let base = at("2024-05-14 00:00:00") + day * MS_DAY;
    let tod = match rng.below(6) {
        0 => (7 * 60 + 50 + rng.below(20) as i64) * 60_000,
        1 => (22 * 60 + 50 + rng.below(20) as i64) * 60_000 % MS_DAY,
        2 => (rng.below(24 * 60) as i64) * 60_000,
        3 => (10 * 60 + rng.below(30) as i64) * 60_000,
        _ => rng.below(MS_DAY as u64) as i64,
    };
    base + tod
}

fn random_tables(seed: u64) -> Tables {
    let mut rng = Rng(seed);
    let mut t = Tables::default();
    // Messages: threads on the three days (1..=3), replies up to the day after.
    for _ in 0..(8 + rng.below(25)) {
        let shop = rng.pick(&SHOPS);
        let buyer_id = rng.pick(&BUYERS);
        let ts = instant(&mut rng, 1, 3);
        let mut m = msg("buyer", "2024-05-15 00:00:00");
        m.shop = shop.into();
        m.buyer = buyer_id.into();
        m.ts_ms = ts;
        m.spam = rng.pct(10);
        m.agent_id = match rng.below(6) {
            0 => Some(rng.pick(&AGENTS).into()),
            1 => Some(String::new()),
            _ => None,
        };
        t.msgs.push(m);
        // Zero to two agent rows after it (some auto, some at the same ts,
        // some the next day).
        for _ in 0..rng.below(3) {
            let mut a = msg("agent", "2024-05-15 00:00:00");
            a.shop = shop.into();
            a.buyer = buyer_id.into();
            a.ts_ms = match rng.below(4) {
                0 => ts,
                1 => ts + MS_DAY / 2 + rng.below(MS_DAY as u64) as i64,
                _ => ts + rng.below(3_600_000) as i64,
            };
            a.auto = rng.pct(25);
            a.agent_id = if rng.pct(85) {
                Some(rng.pick(&AGENTS).into())
            } else {
                None
            };
            t.msgs.push(a);
        }
    }
    // Orders paid the day before to the day after the run (0..=4), some
    // unpaid, ungrouped, with default items or grouped, and repeats.
    for k in 0..(5 + rng.below(20)) {
        let repeat = k > 0 && rng.pct(15);
        let o = if repeat {
            let i = rng.below(t.orders.len() as u64) as usize;
            let mut o: r::Order = t.orders[i].clone();
            match rng.below(3) {
                0 => {}
                1 => o.paid_ms = o.paid_ms.map(|p| p + 60_000),
                _ => o.grouped = Some(rng.pct(50)),
            }
            o
        } else {
            let yuan = rng.below(100);
            let amount = match rng.below(4) {
                0 => format!("{yuan}"),
                1 => format!("{yuan}.{}", rng.below(10)),
                2 => format!("{yuan}.{:02}", rng.below(100)),
                _ => format!("{yuan}.{:02}5", rng.below(100)),
            };
            r::Order {
                shop: rng.pick(&SHOPS).into(),
                buyer: rng.pick(&["b1", "b2", "b3", "b4", "b5"]).into(),
                order_id: format!("o{k}"),
                amount,
                paid_ms: if rng.pct(10) {
                    None
                } else {
                    Some(instant(&mut rng, 0, 5))
                },
                items: if rng.pct(20) {
                    None
                } else {
                    Some(rng.below(4) as i64)
                },
                grouped: match rng.below(8) {
                    0 => Some(false),
                    1 => None,
                    _ => Some(true),
                },
            }
        };
        // Some paid exactly at an inquiry's time (the start is "at or after").
        let o = if !repeat && rng.pct(20) {
            let m = &t.msgs[rng.below(t.msgs.len() as u64) as usize];
            r::Order {
                shop: m.shop.clone(),
                buyer: m.buyer.clone(),
                paid_ms: Some(m.ts_ms),
                ..o
            }
        } else {
            o
        };
        t.orders.push(o);
    }
    // Refunds finished on days 0..=4, requested up to four days before.
    for k in 0..(2 + rng.below(8)) {
        if k > 0 && rng.pct(15) {
            let i = rng.below(t.refunds.len() as u64) as usize;
            let mut f = t.refunds[i].clone();
            f.platform_judged = !f.platform_judged;
            t.refunds.push(f);
            continue;
        }
        let fin = instant(&mut rng, 0, 5);
        let success = rng.pct(75);
        t.refunds.push(r::Refund {
            shop: rng.pick(&SHOPS).into(),
            order_id: format!("o{}", rng.below(10)),
            requested_ms: fin - rng.below(4 * MS_DAY as u64) as i64,
            status: if success { "success" } else { "failed" }.into(),
            finished_ms: if !success && rng.pct(50) {
                None
            } else {
                Some(fin)
            },
            refund_id: if rng.pct(20) {
                None
            } else {
                Some(format!("r{}", rng.below(6)))
            },
            platform_judged: rng.pct(60),
            merchant_liable: rng.pct(60),
        });
    }
    for _ in 0..rng.below(8) {
        t.complaints.push(r::Complaint {
            shop: rng.pick(&SHOPS).into(),
            buyer: rng.pick(&BUYERS).into(),
            ts_ms: instant(&mut rng, 0, 5),
            agent: if rng.pct(50) {
                Some(rng.pick(&AGENTS).into())
            } else {
                None
            },
        });
    }
    // Ratings, some repeating an earlier one's key and time (ties).
    for k in 0..(3 + rng.below(12)) {
        let score = 1 + rng.below(5) as i64;
        let resolved = match rng.below(4) {
            0 => Some(false),
            1 => None,
            _ => Some(true),
        };
        if k > 0 && rng.pct(30) {
            let i = rng.below(t.ratings.len() as u64) as usize;
            let mut q = t.ratings[i].clone();
            if rng.pct(50) {
                q.ts_ms += 60_000 * rng.below(120) as i64;
            }
            q.score = score;
            q.resolved = resolved;
            t.ratings.push(q);
            continue;
        }
        t.ratings.push(r::Rating {
            shop: rng.pick(&SHOPS).into(),
            buyer: rng.pick(&BUYERS).into(),
            ts_ms: instant(&mut rng, 0, 5),
            score,
            agent: match rng.below(4) {
                0 => None,
                _ => Some(rng.pick(&AGENTS).into()),
            },
            resolved,
        });
    }
    t
}

/// Only the rows whose local day (of their time column) is `day` or the next.
fn day_and_next(t: &Tables, day: NaiveDate) -> Tables {
    let keep = |ts: i64| {
        let d = r::local_date(ts, SHANGHAI);
        d == day || d == day.succ_opt().unwrap()
    };
    Tables {
        msgs: t.msgs.iter().filter(|m| keep(m.ts_ms)).cloned().collect(),
        orders: t
            .orders
            .iter()
            .filter(|o| o.paid_ms.is_some_and(keep))
            .cloned()
            .collect(),
        refunds: t
            .refunds
            .iter()
            .filter(|f| f.finished_ms.is_some_and(keep))
            .cloned()
            .collect(),
        complaints: t
            .complaints
            .iter()
            .filter(|c| keep(c.ts_ms))
            .cloned()
            .collect(),
        ratings: t
            .ratings
            .iter()
            .filter(|q| keep(q.ts_ms))
            .cloned()
            .collect(),
    }
}

// ---------------------------------------------------------------------------
// Parquet and the binary
// ---------------------------------------------------------------------------

fn ts_col(name: &str, v: Vec<Option<i64>>) -> Column {
    Column::new(name.into(), v)
        .cast(&DataType::Datetime(
            TimeUnit::Milliseconds,
            Some(polars::prelude::TimeZone::UTC),
        ))
        .unwrap()
}

fn write(path: &Path, columns: Vec<Column>) {
    let mut df = DataFrame::new_infer_height(columns).unwrap();
    let mut f = std::fs::File::create(path).unwrap();
    ParquetWriter::new(&mut f).finish(&mut df).unwrap();
}

fn strings<T>(rows: &[T], f: impl Fn(&T) -> String) -> Vec<String> {
    rows.iter().map(f).collect()
}

fn write_tables(dir: &Path, t: &Tables) {
    std::fs::create_dir_all(dir).unwrap();
    write_messages(&dir.join("messages.parquet"), &t.msgs, Columns::default());
    let o = &t.orders;
    write(
        &dir.join("orders.parquet"),
        vec![
            Column::new("shop_id".into(), strings(o, |r| r.shop.clone())),
            Column::new("buyer_id".into(), strings(o, |r| r.buyer.clone())),
            Column::new("order_id".into(), strings(o, |r| r.order_id.clone())),
            Column::new(
                "amount".into(),
                o.iter()
                    .map(|r| r.amount.parse::<f64>().unwrap())
                    .collect::<Vec<_>>(),
            ),
            ts_col("paid_ts", o.iter().map(|r| r.paid_ms).collect()),
            Column::new(
                "items".into(),
                o.iter().map(|r| r.items).collect::<Vec<_>>(),
            ),
            Column::new(
                "grouped".into(),
                o.iter().map(|r| r.grouped).collect::<Vec<_>>(),
            ),
        ],
    );
    let f = &t.refunds;
    write(
        &dir.join("refunds.parquet"),
        vec![
            Column::new("shop_id".into(), strings(f, |r| r.shop.clone())),
            Column::new("order_id".into(), strings(f, |r| r.order_id.clone())),
            ts_col(
                "requested_ts",
                f.iter().map(|r| Some(r.requested_ms)).collect(),
            ),
            Column::new("status".into(), strings(f, |r| r.status.clone())),
            ts_col("finished_ts", f.iter().map(|r| r.finished_ms).collect()),
            Column::new(
                "refund_id".into(),
                f.iter().map(|r| r.refund_id.clone()).collect::<Vec<_>>(),
            ),
            Column::new(
                "platform_judged".into(),
                f.iter().map(|r| r.platform_judged).collect::<Vec<_>>(),
            ),
            Column::new(
                "merchant_liable".into(),
                f.iter().map(|r| r.merchant_liable).collect::<Vec<_>>(),
            ),
        ],
    );
    let c = &t.complaints;
    write(
        &dir.join("complaints.parquet"),
        vec![
            Column::new("shop_id".into(), strings(c, |r| r.shop.clone())),
            Column::new("buyer_id".into(), strings(c, |r| r.buyer.clone())),
            ts_col("ts", c.iter().map(|r| Some(r.ts_ms)).collect()),
            Column::new(
                "agent_id".into(),
                c.iter().map(|r| r.agent.clone()).collect::<Vec<_>>(),
            ),
        ],
    );
    let q = &t.ratings;
    write(
        &dir.join("ratings.parquet"),
        vec![
            Column::new("shop_id".into(), strings(q, |r| r.shop.clone())),
            Column::new("buyer_id".into(), strings(q, |r| r.buyer.clone())),
            ts_col("ts", q.iter().map(|r| Some(r.ts_ms)).collect()),
            Column::new(
                "score".into(),
                q.iter().map(|r| r.score).collect::<Vec<_>>(),
            ),
            Column::new(
                "agent_id".into(),
                q.iter().map(|r| r.agent.clone()).collect::<Vec<_>>(),
            ),
            Column::new(
                "resolved".into(),
                q.iter().map(|r| r.resolved).collect::<Vec<_>>(),
            ),
        ],
    );
}

/// Runs the binary on the tables in `dir` for `from..=to` into `dir/out`.
fn run(dir: &Path, from: &str, to: &str) {
    let rules = dir.join("rules.toml");
    std::fs::write(&rules, RULES).unwrap();
    let p = |n: &str| dir.join(n).to_str().unwrap().to_string();
    let out = p("out");
    let args = [
        "run",
        "--input",
        &p("messages.parquet"),
        "--output",
        &out,
        "--platform",
        "pdd",
        "--date",
        from,
        "--to",
        to,
        "--rules",
        &p("rules.toml"),
        "--orders",
        &p("orders.parquet"),
        "--refunds",
        &p("refunds.parquet"),
        "--complaints",
        &p("complaints.parquet"),
        "--ratings",
        &p("ratings.parquet"),
    ];
    run_bin(&args);
}

/// (shop, metric) -> (numerator, denominator, value) of a day's `shop_daily`.
type ShopDay = BTreeMap<(String, String), (i64, i64, Option<f64>)>;

fn shop_daily(out: &Path, day: &str) -> ShopDay {
    let p = out.join(format!("shop_daily/platform=pdd/dt={day}/part-0.parquet"));
    let df = read_parquet(&p);
    let c = |n: &str| df.column(n).unwrap().clone();
    let (shop, metric, num, den, val) = (
        c("shop_id"),
        c("metric"),
        c("numerator"),
        c("denominator"),
        c("value"),
    );
    (0..df.height())
        .map(|i| {
            (
                (
                    shop.str().unwrap().get(i).unwrap().to_string(),
                    metric.str().unwrap().get(i).unwrap().to_string(),
                ),
                (
                    num.i64().unwrap().get(i).unwrap(),
                    den.i64().unwrap().get(i).unwrap(),
                    val.f64().unwrap().get(i),
                ),
            )
        })
        .collect()
}

fn without_values(rows: &ShopDay) -> BTreeMap<(String, String), (i64, i64)> {
    rows.iter().map(|(k, v)| (k.clone(), (v.0, v.1))).collect()
}

/// One case: the whole run against the reference, the properties, and
/// day-locality of one day chosen by the seed. Adds to `seen`, per metric,
/// the rows with a numerator > 0 and the rows with numerator < denominator.
fn check_case(seed: u64, seen: &mut BTreeMap<String, (usize, usize)>) {
    let t = random_tables(seed);
    let ms = metrics();
    let kind_of = |id: &str| ms.iter().find(|m| m.id == id).unwrap().kind;
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole");
    write_tables(&whole, &t);
    run(&whole, DAYS[0], DAYS[2]);
    let out = whole.join("out");
    let mut days = Vec::new();
    for d in DAYS {
        let day = date(d);
        let (want_shop, want_agent) = r::scorecard(&t, &ms, SHANGHAI, day);
        let got = shop_daily(&out, d);
        let got_agent: BTreeMap<_, _> = read_agent_daily(&out, "pdd", day)
            .into_iter()
            .filter(|k| k.0 .2.starts_with("k."))
            .collect();
        let got_shop: BTreeMap<_, _> = without_values(&got)
            .into_iter()
            .filter(|k| k.0 .1.starts_with("k."))
            .collect();
        assert_eq!(
            got_shop, want_shop,
            "seed {seed}, {d}: shop_daily (left: kefu, right: reference)\ntables: {t:#?}"
        );
        assert_eq!(
            got_agent, want_agent,
            "seed {seed}, {d}: agent_daily (left: kefu, right: reference)\ntables: {t:#?}"
        );
        for ((shop, metric), (num, den, value)) in &got {
            let e = seen.entry(metric.clone()).or_default();
            e.0 += (*num > 0) as usize;
            e.1 += (*num < *den) as usize;
            let want = value_of(kind_of(metric), *num, *den);
            let ok = match (value, want) {
                (Some(v), Some(w)) => (v - w).abs() <= 1e-12 * w.abs().max(1.0),
                (None, None) => true,
                _ => false,
            };
            assert!(
                ok,
                "seed {seed}, {d}: {shop} {metric}: value {value:?} for {num} / {den}"
            );
        }
        // agent_daily adds up to shop_daily for every metric.
        let mut sums: BTreeMap<(String, String), (i64, i64)> = BTreeMap::new();
        for ((shop, _, metric), (n, dd)) in &got_agent {
            let e = sums.entry((shop.clone(), metric.clone())).or_default();
            e.0 += n;
            e.1 += dd;
        }
        assert_eq!(sums, got_shop, "seed {seed}, {d}: agents do not add up");
        days.push(got);
    }
    // Day-locality: day D from only the rows of D and D+1.
    let k = (seed % 3) as usize;
    let local = dir.path().join("local");
    write_tables(&local, &day_and_next(&t, date(DAYS[k])));
    run(&local, DAYS[k], DAYS[k]);
    assert_eq!(
        shop_daily(&local.join("out"), DAYS[k]),
        days[k],
        "seed {seed}, {}: day-locality",
        DAYS[k]
    );
}

#[test]
fn scorecard_matches_the_naive_reference_on_random_tables() {
    let mut seen = BTreeMap::new();
    for seed in 1..=36 {
        check_case(seed, &mut seen);
    }
    // The random tables are not trivial: every metric has rows that count
    // something, and (shares) rows that do not count everything.
    for m in metrics() {
        let (positive, partial) = seen.get(&m.id).copied().unwrap_or_default();
        assert!(
            positive >= 3,
            "{}: {positive} rows with a numerator > 0",
            m.id
        );
        if matches!(
            m.kind,
            Kind::Conversion | Kind::ComplaintRate | Kind::RatingShare
        ) {
            assert!(partial >= 3, "{}: {partial} rows below 1", m.id);
        }
    }
    eprintln!("rows per metric (numerator > 0, numerator < denominator): {seen:?}");
}

#[test]
fn fen_by_hand() {
    assert_eq!(r::fen_of("19.99"), 1999);
    assert_eq!(r::fen_of("0.015"), 2);
    assert_eq!(r::fen_of("59.9"), 5990);
    assert_eq!(r::fen_of("7"), 700);
    assert_eq!(r::fen_of("3.014"), 301);
}
