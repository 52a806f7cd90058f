//! SPEC §8 (the scorecard) end to end through the `kefu` binary: the worked
//! examples of §8.4, skipped metrics, `alert_when = "above"`, a field that
//! does not apply, and a run without the new flags.

use std::collections::BTreeMap;
use std::path::Path;

use polars::prelude::*;

use crate::common::*;

const D: &str = "2024-05-16";

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
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut f = std::fs::File::create(path).unwrap();
    ParquetWriter::new(&mut f).finish(&mut df).unwrap();
}

/// (buyer, order id, amount in yuan as a float, paid local time, items, grouped)
type OrderRow<'a> = (&'a str, &'a str, f64, &'a str, i64, bool);

fn write_orders(path: &Path, rows: &[OrderRow]) {
    write(
        path,
        vec![
            Column::new("shop_id".into(), vec!["s1"; rows.len()]),
            Column::new(
                "buyer_id".into(),
                rows.iter().map(|r| r.0).collect::<Vec<_>>(),
            ),
            Column::new(
                "order_id".into(),
                rows.iter().map(|r| r.1).collect::<Vec<_>>(),
            ),
            Column::new(
                "amount".into(),
                rows.iter().map(|r| r.2).collect::<Vec<_>>(),
            ),
            ts_col("paid_ts", rows.iter().map(|r| Some(at(r.3))).collect()),
            Column::new("items".into(), rows.iter().map(|r| r.4).collect::<Vec<_>>()),
            Column::new(
                "grouped".into(),
                rows.iter().map(|r| r.5).collect::<Vec<_>>(),
            ),
        ],
    );
}

/// One `success` refund (example 7): platform-judged and merchant-liable.
fn write_refund(path: &Path, requested: &str, finished: &str) {
    write(
        path,
        vec![
            Column::new("shop_id".into(), vec!["s1"]),
            Column::new("order_id".into(), vec!["o-old"]),
            ts_col("requested_ts", vec![Some(at(requested))]),
            Column::new("status".into(), vec!["success"]),
            ts_col("finished_ts", vec![Some(at(finished))]),
            Column::new("platform_judged".into(), vec![true]),
            Column::new("merchant_liable".into(), vec![true]),
        ],
    );
}

fn write_complaints(path: &Path, buyers_at: &[(&str, &str)]) {
    write(
        path,
        vec![
            Column::new("shop_id".into(), vec!["s1"; buyers_at.len()]),
            Column::new(
                "buyer_id".into(),
                buyers_at.iter().map(|r| r.0).collect::<Vec<_>>(),
            ),
            ts_col("ts", buyers_at.iter().map(|r| Some(at(r.1))).collect()),
        ],
    );
}

/// (buyer, agent, local time, score)
fn write_ratings(path: &Path, rows: &[(&str, &str, &str, i64)]) {
    write(
        path,
        vec![
            Column::new("shop_id".into(), vec!["s1"; rows.len()]),
            Column::new(
                "buyer_id".into(),
                rows.iter().map(|r| r.0).collect::<Vec<_>>(),
            ),
            Column::new(
                "agent_id".into(),
                rows.iter().map(|r| r.1).collect::<Vec<_>>(),
            ),
            ts_col("ts", rows.iter().map(|r| Some(at(r.2))).collect()),
            Column::new("score".into(), rows.iter().map(|r| r.3).collect::<Vec<_>>()),
        ],
    );
}

fn inquiry(who: &str, local: &str) -> Msg {
    let mut m = buyer(local);
    m.buyer = who.into();
    m
}

/// (shop, metric) → (numerator, denominator, value) of a partition of
/// `table` (values may be null).
fn rows(out: &Path, table: &str, platform: &str) -> BTreeMap<String, (i64, i64, Option<f64>)> {
    let df = read_parquet(&out.join(format!("{table}/platform={platform}/dt={D}/part-0.parquet")));
    let metric = df.column("metric").unwrap().str().unwrap().clone();
    let num = df.column("numerator").unwrap().i64().unwrap().clone();
    let den = df.column("denominator").unwrap().i64().unwrap().clone();
    let val = df.column("value").unwrap().f64().unwrap().clone();
    (0..df.height())
        .map(|i| {
            (
                metric.get(i).unwrap().to_string(),
                (num.get(i).unwrap(), den.get(i).unwrap(), val.get(i)),
            )
        })
        .collect()
}

fn items(out: &Path, platform: &str) -> DataFrame {
    read_parquet(&out.join(format!("items/platform={platform}/dt={D}/part-0.parquet")))
}

/// An item as the tests look at it: (buyer, counted, order_id, passed).
type ItemView = (String, Option<i64>, Option<String>, Option<bool>);

/// The items of `metric`.
fn items_of(df: &DataFrame, metric: &str) -> Vec<ItemView> {
    let c = |n: &str| df.column(n).unwrap().clone();
    let (m, b, counted, order, passed) = (
        c("metric"),
        c("buyer_id"),
        c("counted"),
        c("order_id"),
        c("passed"),
    );
    (0..df.height())
        .filter(|&i| m.str().unwrap().get(i) == Some(metric))
        .map(|i| {
            (
                b.str().unwrap().get(i).unwrap().to_string(),
                counted.i64().unwrap().get(i),
                order.str().unwrap().get(i).map(str::to_string),
                passed.bool().unwrap().get(i),
            )
        })
        .collect()
}

fn run(dir: &Path, msgs: &[Msg], platform: &str, extra: &[&str]) -> (std::path::PathBuf, String) {
    let input = dir.join("messages.parquet");
    write_messages(&input, msgs, Columns::default());
    let out = dir.join("out");
    let mut args = vec![
        "run",
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--platform",
        platform,
        "--date",
        D,
    ];
    args.extend_from_slice(extra);
    let o = run_bin(&args);
    (out, String::from_utf8_lossy(&o.stderr).to_string())
}

/// Examples 1-5 of §8.4 in one shop and day (each buyer is one example),
/// with B's complaint for the complaint rate.
#[test]
fn examples_1_to_5_sales_and_complaints() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    write_orders(
        &p("orders.parquet"),
        &[
            ("A", "oA", 59.90, "2024-05-17 00:30:00", 1, true),
            ("B", "oB", 10.0, "2024-05-16 09:00:00", 1, true),
            ("C", "oC", 10.0, "2024-05-18 10:00:00", 1, true),
            ("D", "oD1", 19.99, "2024-05-16 10:05:00", 1, true),
            ("D", "oD2", 0.015, "2024-05-16 10:06:00", 1, true),
            ("E", "oE", 10.0, "2024-05-16 11:00:00", 1, false),
        ],
    );
    write_complaints(&p("complaints.parquet"), &[("B", "2024-05-16 18:00:00")]);
    let msgs = vec![
        inquiry("A", "2024-05-16 22:10:00"),
        inquiry("B", "2024-05-16 10:00:00"),
        inquiry("C", "2024-05-16 10:00:00"),
        inquiry("D", "2024-05-16 10:00:00"),
        inquiry("Z", "2024-05-17 09:00:00"),
    ];
    let (out, _) = run(
        dir.path(),
        &msgs,
        "pdd",
        &[
            "--orders",
            p("orders.parquet").to_str().unwrap(),
            "--complaints",
            p("complaints.parquet").to_str().unwrap(),
        ],
    );
    let shop = rows(&out, "shop_daily", "pdd");
    // 1: A converts (1), 2: B is not pre-sale (no item), 3: C does not (0),
    // 4: D converts (1).
    assert_eq!(shop["pdd.inquiry_conversion_rate"].0, 2);
    assert_eq!(shop["pdd.inquiry_conversion_rate"].1, 3);
    // Order value: A 5990 fen, D 1999 + 2 = 2001 fen, over 2 items.
    assert_eq!(
        shop["pdd.avg_order_value"],
        (7991, 2, Some(7991.0 / 2.0 / 100.0))
    );
    assert_eq!(shop["pdd.items_per_buyer"], (3, 2, Some(1.5)));
    // 2: B still counts for the complaint rate; 5: E has no consult.
    assert_eq!(shop["pdd.complaint_rate"], (1, 4, Some(0.25)));
    // 5: E's ungrouped order is not in the dispute denominator (B, D, D);
    // no refunds table: skipped.
    assert!(!shop.contains_key("pdd.dispute_refund_rate"));
    let it = items(&out, "pdd");
    let mut conv = items_of(&it, "pdd.inquiry_conversion_rate");
    conv.sort();
    assert_eq!(
        conv,
        vec![
            ("A".into(), Some(1), Some("oA".into()), Some(true)),
            ("C".into(), Some(0), None, Some(false)),
            ("D".into(), Some(1), Some("oD1".into()), Some(true)),
        ]
    );
    let mut value = items_of(&it, "pdd.avg_order_value");
    value.sort();
    assert_eq!(value[0].1, Some(5990));
    assert_eq!(value[1].1, Some(2001));
    // Message metrics' items get `counted` too (1/0 for rates).
    let answered = items_of(&it, "pdd.answer_rate_30s");
    assert!(answered.iter().all(|r| r.1 == Some(0) && r.2.is_none()));
}

/// Example 6: the last rating of a (buyer, agent, day) counts.
#[test]
fn example_6_last_rating_counts() {
    let dir = tempfile::tempdir().unwrap();
    let ratings = dir.path().join("ratings.parquet");
    write_ratings(
        &ratings,
        &[
            ("E", "a1", "2024-05-16 10:00:00", 2),
            ("E", "a1", "2024-05-16 11:00:00", 5),
            ("E", "a1", "2024-05-16 12:00:00", 3),
        ],
    );
    let msgs = vec![
        inquiry("E", "2024-05-16 09:00:00"),
        inquiry("E", "2024-05-17 09:00:00"),
    ];
    let (out, _) = run(
        dir.path(),
        &msgs,
        "taobao,douyin",
        &["--ratings", ratings.to_str().unwrap()],
    );
    let tb = rows(&out, "shop_daily", "taobao");
    assert_eq!(tb["taobao.wangwang_satisfaction"], (0, 1, Some(0.0)));
    let dy = rows(&out, "shop_daily", "douyin");
    assert_eq!(dy["douyin.dissatisfaction_rate"], (1, 1, Some(1.0)));
    let agents = read_agent_daily(&out, "douyin", date(D));
    assert_eq!(
        agents[&(
            "s1".into(),
            "a1".into(),
            "douyin.dissatisfaction_rate".into()
        )],
        (1, 1)
    );
    // 30-day windows: the rolling row of the day.
    let rolling = rows(&out, "shop_rolling", "douyin");
    assert_eq!(rolling["douyin.dissatisfaction_rate"], (1, 1, Some(1.0)));
}

/// Example 7. SPEC §8.4 says "75 h = 270000 s", but 09:00 on D−3 to 15:00
/// on D is 78 h = 280800 s: the formula (finished − requested) is tested.
#[test]
fn example_7_refund_time_and_dispute_without_orders() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    write_refund(
        &p("refunds.parquet"),
        "2024-05-13 09:00:00",
        "2024-05-16 15:00:00",
    );
    // No order paid on D (one far later, outside the days read).
    write_orders(
        &p("orders.parquet"),
        &[("A", "o1", 1.0, "2024-06-30 10:00:00", 1, true)],
    );
    let msgs = vec![
        inquiry("A", "2024-05-16 10:00:00"),
        inquiry("A", "2024-05-17 10:00:00"),
    ];
    let (out, _) = run(
        dir.path(),
        &msgs,
        "pdd",
        &[
            "--refunds",
            p("refunds.parquet").to_str().unwrap(),
            "--orders",
            p("orders.parquet").to_str().unwrap(),
        ],
    );
    let shop = rows(&out, "shop_daily", "pdd");
    assert_eq!(
        shop["pdd.avg_refund_time"],
        (280_800_000, 1, Some(280_800.0))
    );
    assert_eq!(shop["pdd.dispute_refund_rate"], (1, 0, None));
    let rolling = rows(&out, "shop_rolling", "pdd");
    assert_eq!(rolling["pdd.dispute_refund_rate"], (1, 0, None));
    assert_eq!(rolling["pdd.avg_refund_time"].0, 280_800_000);
    let it = items(&out, "pdd");
    assert!(items_of(&it, "pdd.dispute_refund_rate").is_empty());
    assert_eq!(
        items_of(&it, "pdd.avg_refund_time"),
        vec![("".into(), Some(280_800_000), Some("o-old".into()), None)]
    );
}

#[test]
fn a_metric_without_its_table_is_skipped_with_a_note() {
    let dir = tempfile::tempdir().unwrap();
    let complaints = dir.path().join("complaints.parquet");
    write_complaints(&complaints, &[("A", "2024-05-16 12:00:00")]);
    let msgs = vec![
        inquiry("A", "2024-05-16 10:00:00"),
        inquiry("A", "2024-05-17 10:00:00"),
    ];
    let (out, stderr) = run(
        dir.path(),
        &msgs,
        "pdd",
        &["--complaints", complaints.to_str().unwrap()],
    );
    let shop = rows(&out, "shop_daily", "pdd");
    assert_eq!(shop["pdd.complaint_rate"], (1, 1, Some(1.0)));
    assert!(!shop.contains_key("pdd.inquiry_conversion_rate"));
    assert!(
        stderr.contains("skipped pdd.inquiry_conversion_rate: needs --orders"),
        "{stderr}"
    );
    assert!(items_of(&items(&out, "pdd"), "pdd.inquiry_conversion_rate").is_empty());
    let manifest =
        std::fs::read_to_string(out.join(format!("shop_daily/platform=pdd/dt={D}/_manifest.json")))
            .unwrap();
    let v: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    let skipped: Vec<&str> = v["skipped_metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert!(skipped.contains(&"pdd.inquiry_conversion_rate"));
    assert!(skipped.contains(&"pdd.dispute_refund_rate"));
    assert!(!skipped.contains(&"pdd.complaint_rate"));
}

#[test]
fn alert_when_above() {
    let dir = tempfile::tempdir().unwrap();
    let complaints = dir.path().join("complaints.parquet");
    write_complaints(&complaints, &[("A", "2024-05-16 12:00:00")]);
    let rules = dir.path().join("rules.toml");
    std::fs::write(
        &rules,
        "[[metric]]\nid = \"pdd.complaint_rate\"\nkind = \"complaint_rate\"\nhours = \"00:00-24:00\"\n\
         target = 0.2\nalert_when = \"above\"\n",
    )
    .unwrap();
    let msgs = vec![
        inquiry("A", "2024-05-16 10:00:00"),
        inquiry("B", "2024-05-16 10:00:00"),
        inquiry("A", "2024-05-17 10:00:00"),
    ];
    let (out, _) = run(
        dir.path(),
        &msgs,
        "pdd",
        &[
            "--complaints",
            complaints.to_str().unwrap(),
            "--rules",
            rules.to_str().unwrap(),
        ],
    );
    let alerts = rows(&out, "alerts", "pdd");
    assert_eq!(alerts["pdd.complaint_rate"], (1, 2, Some(0.5)));
    let df = read_parquet(&out.join(format!("alerts/platform=pdd/dt={D}/part-0.parquet")));
    let msg = df
        .column("message")
        .unwrap()
        .str()
        .unwrap()
        .get(0)
        .unwrap()
        .to_string();
    assert_eq!(msg, "pdd.complaint_rate above target 0.2");
}

#[test]
fn a_field_that_does_not_apply_names_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.toml");
    std::fs::write(
        &rules,
        "[[metric]]\nid = \"x\"\nkind = \"conversion\"\nhours = \"00:00-24:00\"\nthreshold = 30\n",
    )
    .unwrap();
    let out = std::process::Command::new(kefu_bin())
        .args(["rules", "--rules", rules.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "rule file {}, line 5: metric `x`: `threshold` does not apply to a conversion metric",
            rules.display()
        )),
        "{stderr}"
    );
}

#[test]
fn without_the_new_flags_items_keep_their_schema() {
    let dir = tempfile::tempdir().unwrap();
    let msgs = vec![
        inquiry("A", "2024-05-16 10:00:00"),
        inquiry("A", "2024-05-17 10:00:00"),
    ];
    let (out, stderr) = run(dir.path(), &msgs, "pdd", &[]);
    let it = items(&out, "pdd");
    let names: Vec<String> = it
        .get_column_names()
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert!(!names.contains(&"order_id".to_string()), "{names:?}");
    assert!(!names.contains(&"counted".to_string()));
    assert!(stderr.contains("skipped pdd.inquiry_conversion_rate: needs --orders"));
    let shop = rows(&out, "shop_daily", "pdd");
    assert!(shop.keys().all(|m| !m.contains("conversion")));
}
