//! Reading the scorecard tables from small Parquet files written by polars.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::NaiveDate;
use polars::prelude::*;

use super::*;
use crate::model::{day_number, local_to_utc, MS_PER_DAY};
use crate::rules::{EpochUnit, InputSettings};

fn d() -> i32 {
    day_number(NaiveDate::from_ymd_opt(2024, 5, 16).unwrap())
}

/// Local ms (naive) of `h` o'clock on D + `off`.
fn local(off: i32, h: i64) -> i64 {
    (d() + off) as i64 * MS_PER_DAY + h * 3_600_000
}

fn utc(off: i32, h: i64) -> i64 {
    local_to_utc(&chrono_tz::Asia::Shanghai, local(off, h)).unwrap()
}

fn write(path: &Path, mut df: DataFrame) {
    let f = std::fs::File::create(path).unwrap();
    ParquetWriter::new(f).finish(&mut df).unwrap();
}

fn times(
    name: &str,
    ms: &[Option<i64>],
    unit: TimeUnit,
    tz: Option<polars::prelude::TimeZone>,
) -> Column {
    let per = match unit {
        TimeUnit::Milliseconds => 1,
        TimeUnit::Microseconds => 1000,
        TimeUnit::Nanoseconds => 1_000_000,
    };
    let v: Vec<Option<i64>> = ms.iter().map(|m| m.map(|m| m * per)).collect();
    Series::new(name.into(), v)
        .cast(&DataType::Datetime(unit, tz))
        .unwrap()
        .into()
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

fn days() -> LocalDays {
    LocalDays::for_run(d(), d())
}

#[test]
fn orders_remapped_naive_with_bad_rows_and_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    // A `dt=` folder far from the run's days is still read.
    std::fs::create_dir(dir.path().join("dt=2020-01-01")).unwrap();
    let n = 8;
    let paid = [
        Some(local(0, 10)),
        Some(local(0, 11)),
        Some(local(1, 10)),
        Some(local(0, 10)),
        Some(local(0, 10)),
        None,
        Some(local(0, 10)),
        Some(local(5, 10)),
    ];
    let df = DataFrame::new(
        n,
        vec![
            Column::new(
                "mall".into(),
                &[
                    Some(7i64),
                    Some(7),
                    Some(7),
                    None,
                    Some(7),
                    Some(7),
                    Some(7),
                    Some(7),
                ],
            ),
            Column::new("buyer_id".into(), &["b1"; 8]),
            Column::new("oid".into(), &[100i64, 100, 100, 101, 102, 103, 104, 105]),
            Column::new(
                "amount".into(),
                &[19.99, 5.0, 0.015, 1.0, f64::NAN, 1.0, 1.0, 1.0],
            ),
            times("paid_ts", &paid, TimeUnit::Microseconds, None),
            Column::new(
                "items".into(),
                &[
                    Some(2i32),
                    None,
                    Some(1),
                    Some(1),
                    Some(1),
                    Some(1),
                    Some(-1),
                    Some(1),
                ],
            ),
        ],
    )
    .unwrap();
    write(&dir.path().join("dt=2020-01-01/part-0.parquet"), df);
    let settings = TableSettings {
        columns: map(&[("shop_id", "mall"), ("order_id", "oid")]),
        ..Default::default()
    };
    let t = load_orders(
        dir.path().to_str().unwrap(),
        &settings,
        &InputSettings::default(),
        days(),
    )
    .unwrap();
    let got: Vec<_> = t
        .rows
        .iter()
        .map(|o| {
            (
                o.shop.as_str(),
                o.order_id.as_str(),
                o.fen,
                o.items,
                o.paid.day - d(),
            )
        })
        .collect();
    assert_eq!(got, vec![("7", "100", 1999, 2, 0), ("7", "100", 2, 1, 1)]);
    assert!(t.rows.iter().all(|o| o.grouped));
    assert_eq!(t.rows[0].paid.utc, utc(0, 10));
    let s = &t.stats;
    assert_eq!(
        (s.files, s.rows_read, s.bad_rows, s.duplicates, s.ignored),
        (1, 6, 3, 1, 1)
    );
    assert!(
        s.bad_examples[0].ends_with("part-0.parquet, row 3: shop_id is null"),
        "{:?}",
        s.bad_examples
    );
    assert!(s.bad_examples[1].contains("row 4: amount is NaN"));
    assert!(s.bad_examples[2].contains("row 6: items -1 is negative"));
    assert!(s
        .check("orders", 0.001, false)
        .unwrap_err()
        .to_string()
        .starts_with("orders: 3 of 6 rows read are bad"));
    assert!(s.check("orders", 0.9, true).is_err());
    assert!(s.check("orders", 0.9, false).is_ok());
}

#[test]
fn refunds_zoned_with_status_values() {
    let dir = tempfile::tempdir().unwrap();
    let utc_tz = Some(polars::prelude::TimeZone::UTC);
    let req = [
        Some(utc(-3, 9)),
        Some(utc(0, 9)),
        Some(utc(0, 9)),
        Some(utc(0, 9)),
        Some(utc(-1, 9)),
    ];
    let fin = [
        Some(utc(0, 15)),
        Some(utc(0, 8)),
        None,
        None,
        Some(utc(0, 20)),
    ];
    let df = DataFrame::new(
        5,
        vec![
            Column::new("shop_id".into(), &["s"; 5]),
            Column::new("order_id".into(), &["o1", "o2", "o3", "o4", "o5"]),
            Column::new("state".into(), &["done", "done", "done", "open", "done"]),
            Column::new("refund_id".into(), &["r1", "r2", "r3", "r4", "r1"]),
            times("requested_ts", &req, TimeUnit::Milliseconds, utc_tz.clone()),
            times("finished_ts", &fin, TimeUnit::Nanoseconds, utc_tz),
            Column::new("platform_judged".into(), &[true, false, false, false, true]),
        ],
    )
    .unwrap();
    let file = dir.path().join("refunds.parquet");
    write(&file, df);
    let settings = TableSettings {
        columns: map(&[("status", "state")]),
        status_values: map(&[("done", "success")]),
        ..Default::default()
    };
    let t = load_refunds(
        file.to_str().unwrap(),
        &settings,
        &InputSettings::default(),
        days(),
    )
    .unwrap();
    assert_eq!(t.rows.len(), 1);
    let r = &t.rows[0];
    assert_eq!(
        (r.order_id.as_str(), r.requested_utc, r.finished.utc),
        ("o1", utc(-3, 9), utc(0, 15))
    );
    assert!(r.platform_judged && !r.merchant_liable);
    let s = &t.stats;
    assert_eq!(
        (s.rows_read, s.bad_rows, s.duplicates, s.ignored),
        (5, 2, 1, 1)
    );
    assert!(s.bad_examples[0].contains("row 1: the refund finished before it was requested"));
    assert!(s.bad_examples[1].contains("row 2: a success refund with a null finished_ts"));
}

#[test]
fn ratings_with_score_values_and_epoch_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let secs: Vec<i64> = [utc(0, 10), utc(0, 11), utc(0, 12), utc(3, 12)]
        .iter()
        .map(|m| m / 1000)
        .collect();
    let df = DataFrame::new(
        4,
        vec![
            Column::new("shop_id".into(), &[1u32, 1, 1, 1]),
            Column::new("buyer_id".into(), &[9i64, 9, 9, 9]),
            Column::new("ts".into(), &secs),
            Column::new("score".into(), &["满意", "3", "很好", "失望"]),
            Column::new("resolved".into(), &[Some(false), None, None, None]),
        ],
    )
    .unwrap();
    let file = dir.path().join("r.parquet");
    write(&file, df);
    let settings = TableSettings {
        score_values: [("满意", 5), ("一般", 3), ("失望", 1)]
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect(),
        ..Default::default()
    };
    let input = InputSettings {
        ts_epoch_unit: Some(EpochUnit::Seconds),
        ..Default::default()
    };
    let t = load_ratings(file.to_str().unwrap(), &settings, &input, days()).unwrap();
    let got: Vec<_> = t
        .rows
        .iter()
        .map(|r| {
            (
                r.shop.as_str(),
                r.buyer.as_str(),
                r.score,
                r.resolved,
                r.ts.utc,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("1", "9", 5, false, utc(0, 10)),
            ("1", "9", 3, true, utc(0, 11))
        ]
    );
    assert_eq!(t.rows[0].agent, "");
    assert_eq!((t.stats.rows_read, t.stats.bad_rows), (3, 1));
    assert!(t.stats.bad_examples[0].contains("row 2: score `很好` is not an integer 1-5"));
    // Without the epoch unit, the integer column is refused with a hint.
    let e = load_ratings(
        file.to_str().unwrap(),
        &settings,
        &InputSettings::default(),
        days(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("ts_epoch_unit"), "{e}");
}

#[test]
fn complaints_and_column_errors() {
    let dir = tempfile::tempdir().unwrap();
    let df = DataFrame::new(
        2,
        vec![
            Column::new("shop_id".into(), &["s", "s"]),
            Column::new("buyer_id".into(), &["b", "b"]),
            times(
                "ts",
                &[Some(local(0, 23)), None],
                TimeUnit::Milliseconds,
                None,
            ),
        ],
    )
    .unwrap();
    let file = dir.path().join("c.parquet");
    write(&file, df);
    let path = file.to_str().unwrap();
    let t = load_complaints(
        path,
        &TableSettings::default(),
        &InputSettings::default(),
        days(),
    )
    .unwrap();
    assert_eq!(t.rows.len(), 1);
    assert_eq!((t.rows[0].ts.day, t.rows[0].agent.as_str()), (d(), ""));
    assert_eq!(t.stats.bad_examples.len(), 1);
    assert!(t.stats.bad_examples[0].contains("row 1: ts is null"));
    // A remapped required column that is missing names both names.
    let settings = TableSettings {
        columns: map(&[("buyer_id", "user")]),
        ..Default::default()
    };
    let e = load_complaints(path, &settings, &InputSettings::default(), days()).unwrap_err();
    assert!(e.to_string().contains("complaints file"), "{e}");
    assert!(
        e.to_string()
            .contains("`user` (mapped from `buyer_id`) is missing"),
        "{e}"
    );
    // Orders read the same file: amount is missing.
    let e = load_orders(
        path,
        &TableSettings::default(),
        &InputSettings::default(),
        days(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("`order_id`"), "{e}");
}

#[test]
fn decimal_amounts() {
    let dir = tempfile::tempdir().unwrap();
    let amount = Int128Chunked::from_slice("amount".into(), &[5990, 15, 2675])
        .into_decimal_unchecked(12, 3)
        .into_series();
    let df = DataFrame::new(
        3,
        vec![
            Column::new("shop_id".into(), &["s"; 3]),
            Column::new("buyer_id".into(), &["b"; 3]),
            Column::new("order_id".into(), &["o1", "o2", "o3"]),
            amount.into(),
            times(
                "paid_ts",
                &[Some(local(0, 1)); 3],
                TimeUnit::Milliseconds,
                None,
            ),
            Column::new("grouped".into(), &[Some(true), Some(false), None]),
        ],
    )
    .unwrap();
    let file = dir.path().join("o.parquet");
    write(&file, df);
    let t = load_orders(
        file.to_str().unwrap(),
        &TableSettings::default(),
        &InputSettings::default(),
        days(),
    )
    .unwrap();
    let got: Vec<_> = t.rows.iter().map(|o| (o.fen, o.grouped)).collect();
    assert_eq!(got, vec![(599, true), (2, false), (268, true)]);
}
