//! `kefu gen` is deterministic: the same flags give a byte-identical file
//! (tests, benches and bug reports rely on regenerating a table), and
//! another seed gives another table.

use std::path::Path;

use crate::common::*;

fn gen(path: &Path, seed: &str) -> Vec<u8> {
    run_bin(&[
        "gen",
        "--output",
        path.to_str().unwrap(),
        "--rows",
        "20000",
        "--days",
        "2",
        "--shops",
        "7",
        "--start",
        "2024-05-16",
        "--seed",
        seed,
    ]);
    std::fs::read(path).unwrap()
}

#[test]
fn gen_is_byte_identical_for_a_seed() {
    let dir = tempfile::tempdir().unwrap();
    let a = gen(&dir.path().join("a.parquet"), "7");
    let b = gen(&dir.path().join("b.parquet"), "7");
    assert!(!a.is_empty());
    assert!(a == b, "two runs with --seed 7 wrote different files");
    let c = gen(&dir.path().join("c.parquet"), "8");
    assert!(a != c, "--seed 7 and --seed 8 wrote the same file");
}

const TABLES: [&str; 5] = [
    "orders.parquet",
    "orders_decimal.parquet",
    "refunds.parquet",
    "complaints.parquet",
    "ratings.parquet",
];

/// `kefu gen --scorecard`: the messages file and the five table files.
fn gen_scorecard(dir: &Path, seed: &str) -> (Vec<u8>, Vec<Vec<u8>>) {
    let msgs = dir.join("messages.parquet");
    let tables = dir.join("sc");
    run_bin(&[
        "gen",
        "--output",
        msgs.to_str().unwrap(),
        "--rows",
        "20000",
        "--days",
        "2",
        "--shops",
        "7",
        "--start",
        "2024-05-16",
        "--seed",
        seed,
        "--scorecard",
        tables.to_str().unwrap(),
    ]);
    let files = TABLES
        .iter()
        .map(|t| std::fs::read(tables.join(t)).unwrap())
        .collect();
    (std::fs::read(msgs).unwrap(), files)
}

#[test]
fn gen_scorecard_is_byte_identical_for_a_seed_and_leaves_messages_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (ma, a) = gen_scorecard(&dir.path().join("a"), "7");
    let (_, b) = gen_scorecard(&dir.path().join("b"), "7");
    let (_, c) = gen_scorecard(&dir.path().join("c"), "8");
    for (i, t) in TABLES.iter().enumerate() {
        assert!(!a[i].is_empty(), "{t} is empty");
        assert!(a[i] == b[i], "two runs with --seed 7 wrote different {t}");
        assert!(a[i] != c[i], "--seed 7 and --seed 8 wrote the same {t}");
    }
    let plain = gen(&dir.path().join("plain.parquet"), "7");
    assert!(
        ma == plain,
        "--scorecard changed the messages file of the same flags"
    );
}

/// (shop_id, metric) → (numerator, denominator, value) of a shop_daily
/// partition (values may be null: a dispute row on no orders).
fn shop_daily(out: &Path, platform: &str) -> Vec<(String, String, i64, i64, Option<f64>)> {
    let p = out.join(format!(
        "shop_daily/platform={platform}/dt=2024-05-16/part-0.parquet"
    ));
    let df = read_parquet(&p);
    let s = |n: &str| df.column(n).unwrap().str().unwrap().clone();
    let i = |n: &str| df.column(n).unwrap().i64().unwrap().clone();
    let (shop, metric, num, den) = (s("shop_id"), s("metric"), i("numerator"), i("denominator"));
    let val = df.column("value").unwrap().f64().unwrap().clone();
    (0..df.height())
        .map(|k| {
            (
                shop.get(k).unwrap().to_string(),
                metric.get(k).unwrap().to_string(),
                num.get(k).unwrap(),
                den.get(k).unwrap(),
                val.get(k),
            )
        })
        .collect()
}

/// The generated tables feed `kefu run`: the scorecard metrics the data
/// guarantees have rows, the bad-row report names every table, and the
/// decimal orders give the same numbers as the float ones.
#[test]
fn gen_scorecard_tables_run_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let p = |s: &str| d.join(s).to_str().unwrap().to_string();
    run_bin(&[
        "gen",
        "--output",
        &p("messages.parquet"),
        "--rows",
        "20000",
        "--days",
        "3",
        "--shops",
        "12",
        "--start",
        "2024-05-16",
        "--seed",
        "7",
        "--scorecard",
        &p("D"),
    ]);
    let run = |orders: &str, out: &str| {
        run_bin(&[
            "run",
            "--input",
            &p("messages.parquet"),
            "--output",
            &p(out),
            "--platform",
            "pdd,taobao",
            "--date",
            "2024-05-16",
            "--orders",
            &p(orders),
            "--refunds",
            &p("D/refunds.parquet"),
            "--complaints",
            &p("D/complaints.parquet"),
            "--ratings",
            &p("D/ratings.parquet"),
        ])
    };
    let out = run("D/orders.parquet", "out");
    let stderr = String::from_utf8_lossy(&out.stderr);
    for table in ["orders", "refunds", "complaints", "ratings"] {
        let line = stderr
            .lines()
            .find(|l| l.starts_with(&format!("kefu: {table}: ")))
            .unwrap_or_else(|| panic!("no {table} line in:\n{stderr}"));
        assert!(line.contains(" bad, "), "{line}");
    }
    let pdd = shop_daily(&d.join("out"), "pdd");
    let taobao = shop_daily(&d.join("out"), "taobao");
    let has = |rows: &[(String, String, i64, i64, Option<f64>)], m: &str| {
        rows.iter().any(|r| r.1 == m && r.3 > 0)
    };
    for m in [
        "pdd.inquiry_conversion_rate",
        "pdd.avg_order_value",
        "pdd.complaint_rate",
        "pdd.avg_refund_time",
    ] {
        assert!(has(&pdd, m), "no {m} rows in shop_daily");
    }
    assert!(
        has(&taobao, "taobao.wangwang_satisfaction"),
        "no taobao.wangwang_satisfaction rows in shop_daily"
    );
    // One shop's scorecard, for the README (`--nocapture` shows it).
    for r in pdd.iter().chain(&taobao).filter(|r| r.0 == "shop00000") {
        eprintln!("{:<28} {:>6} {:>6} {:?}", r.1, r.2, r.3, r.4);
    }
    run("D/orders_decimal.parquet", "out_dec");
    assert_eq!(
        pdd,
        shop_daily(&d.join("out_dec"), "pdd"),
        "decimal and float amounts gave different numbers"
    );
}
