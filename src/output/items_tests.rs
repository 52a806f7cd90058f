//! `encode_items` against a deliberately naive reference: the same rows as
//! a polars frame (message items, then scorecard items), sorted by polars
//! (stable), and written by polars' own Parquet writer. The files must be
//! byte for byte the same: the dictionary decisions, the dictionaries and
//! the pages `encode_items` makes itself are the writer's.

use polars::prelude::*;

use super::items::{encode_items, ItemSources, NameRanks};
use super::StagedPartition;
use crate::engine::{Excluded, Item};
use crate::model::Messages;
use crate::rules::{Metric, RuleSet};
use crate::scorecard::{NameIds, ScoreItem};
use crate::shard::Shard;

/// xorshift: a fixed pseudo-random sequence.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Names with repeats (a buyer's name in several shops, as the reader
/// keeps them), short (inline in a view) and long ones, and non-ASCII.
fn names(rng: &mut Rng, n: usize, distinct: u64, prefix: &str) -> Vec<String> {
    (0..n)
        .map(|_| {
            let k = rng.below(distinct);
            match k % 3 {
                0 => format!("{prefix}{k}"),
                1 => format!("{prefix}-a-rather-long-name-{k}"),
                _ => format!("客服{prefix}{k}"),
            }
        })
        .collect()
}

/// A column of the reference frame.
fn ts(name: &str, v: Vec<Option<i64>>) -> Column {
    Column::new(name.into(), v)
        .cast(&DataType::Datetime(
            TimeUnit::Milliseconds,
            Some(TimeZone::UTC),
        ))
        .unwrap()
}

/// One reference row: the table's columns as owned values.
type RefRow = (
    String,
    String,
    String,
    String,
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<bool>,
    Option<&'static str>,
    Option<String>,
    Option<i64>,
);

fn reference(rows: &[RefRow], score_columns: bool) -> DataFrame {
    let mut cols = vec![
        Column::new(
            "shop_id".into(),
            rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>(),
        ),
        Column::new(
            "buyer_id".into(),
            rows.iter().map(|r| r.1.clone()).collect::<Vec<_>>(),
        ),
        Column::new(
            "agent_id".into(),
            rows.iter().map(|r| r.2.clone()).collect::<Vec<_>>(),
        ),
        Column::new(
            "metric".into(),
            rows.iter().map(|r| r.3.clone()).collect::<Vec<_>>(),
        ),
        ts("start", rows.iter().map(|r| Some(r.4)).collect()),
        ts("reply", rows.iter().map(|r| r.5).collect()),
        Column::new(
            "latency_ms".into(),
            rows.iter().map(|r| r.6).collect::<Vec<_>>(),
        ),
        Column::new(
            "counted_ms".into(),
            rows.iter().map(|r| r.7).collect::<Vec<_>>(),
        ),
        Column::new(
            "passed".into(),
            rows.iter().map(|r| r.8).collect::<Vec<_>>(),
        ),
        Column::new(
            "excluded".into(),
            rows.iter().map(|r| r.9).collect::<Vec<_>>(),
        ),
    ];
    if score_columns {
        cols.push(Column::new(
            "order_id".into(),
            rows.iter().map(|r| r.10.clone()).collect::<Vec<_>>(),
        ));
        cols.push(Column::new(
            "counted".into(),
            rows.iter().map(|r| r.11).collect::<Vec<_>>(),
        ));
    }
    let df = DataFrame::new_infer_height(cols).unwrap();
    df.sort(
        ["shop_id", "agent_id", "metric", "buyer_id", "start"],
        SortMultipleOptions::default().with_maintain_order(true),
    )
    .unwrap()
}

fn file(dir: &std::path::Path, table: &str, put: impl FnOnce(&mut StagedPartition)) -> Vec<u8> {
    let day = chrono::NaiveDate::from_ymd_opt(2024, 5, 16).unwrap();
    let mut p = StagedPartition::begin(dir, table, "pdd", day, Shard::WHOLE).unwrap();
    put(&mut p);
    std::fs::read(p.commit().unwrap()).unwrap()
}

/// One bucket's items, random: `n` message items, `k` scorecard items.
fn check(seed: u64, n: usize, k: usize, score_columns: bool, wide: bool) {
    let mut rng = Rng(seed);
    let rules = RuleSet::preset("pdd").unwrap();
    let metrics: Vec<&Metric> = rules.metrics.iter().collect();
    let m = Messages {
        shop_names: names(&mut rng, 40, 30, "shop"),
        buyer_names: names(&mut rng, 5000, 3000, "buyer"),
        agent_names: std::iter::once(String::new())
            .chain(names(&mut rng, 60, 40, "agent"))
            .collect(),
        ..Default::default()
    };
    let span = if wide { 10_000_000 } else { 60_000 };
    let mut items: Vec<Item> = (0..n)
        .map(|_| {
            let start = 1_715_800_000_000 + rng.below(86_400_000) as i64;
            let latency = (rng.below(5) != 0).then(|| rng.below(span) as i64);
            let excluded = match rng.below(9) {
                0 => Some(Excluded::Unreplied),
                1 => Some(Excluded::CrossDay),
                _ => None,
            };
            Item {
                metric: rng.below(metrics.len() as u64) as u16,
                shop: rng.below(m.shop_names.len() as u64) as u32,
                buyer: rng.below(m.buyer_names.len() as u64) as u32,
                agent: rng.below(m.agent_names.len() as u64) as u32,
                start,
                reply: latency.map(|l| start + l),
                latency_ms: latency,
                counted_ms: latency.filter(|_| rng.below(2) == 0),
                passed: (rng.below(3) != 0).then(|| rng.below(2) == 0),
                excluded,
            }
        })
        .collect();
    // Scorecard items borrow names: some the messages' own, some new.
    let extra = names(&mut rng, 200, 150, "sc");
    let pick = |rng: &mut Rng, own: &[String]| -> String {
        match rng.below(2) {
            0 => own[rng.below(own.len() as u64) as usize].clone(),
            _ => extra[rng.below(extra.len() as u64) as usize].clone(),
        }
    };
    let score_metrics = ["pdd.inquiry_conversion_rate", "pdd.avg_order_value"];
    // Half of them as a consult buyer-day's items are: the message names
    // with their ids; the others as a table's rows give them, ids unknown.
    type Owned = (
        String,
        String,
        String,
        String,
        Option<String>,
        Option<NameIds>,
    );
    let owned: Vec<Owned> = (0..k)
        .map(|_| {
            let metric = score_metrics[rng.below(2) as usize].to_string();
            let order = (rng.below(2) == 0).then(|| format!("order-{}", rng.next() % 100_000));
            if rng.below(2) == 0 {
                let ids = NameIds {
                    shop: rng.below(m.shop_names.len() as u64) as u32,
                    buyer: rng.below(m.buyer_names.len() as u64) as u32,
                    agent: rng.below(m.agent_names.len() as u64) as u32,
                };
                return (
                    metric,
                    m.shop_names[ids.shop as usize].clone(),
                    m.buyer_names[ids.buyer as usize].clone(),
                    m.agent_names[ids.agent as usize].clone(),
                    order,
                    Some(ids),
                );
            }
            (
                metric,
                pick(&mut rng, &m.shop_names),
                pick(&mut rng, &m.buyer_names),
                pick(&mut rng, &m.agent_names),
                order,
                None,
            )
        })
        .collect();
    let score: Vec<(&str, ScoreItem)> = owned
        .iter()
        .map(|(metric, shop, buyer, agent, order, ids)| {
            let start = 1_715_800_000_000 + rng.below(86_400_000) as i64;
            (
                metric.as_str(),
                ScoreItem {
                    shop_id: shop,
                    buyer_id: buyer,
                    agent_id: agent,
                    start,
                    reply: None,
                    latency_ms: None,
                    counted_ms: None,
                    passed: Some(rng.below(2) == 0),
                    excluded: None,
                    order_id: order.as_deref(),
                    counted: Some(rng.below(40_000) as i64),
                    ids: *ids,
                },
            )
        })
        .collect();
    // In the order found, as the scorecard hands them over: `encode_items`
    // sorts them.
    let mut rows: Vec<RefRow> = items
        .iter()
        .map(|it| {
            (
                m.shop_names[it.shop as usize].clone(),
                m.buyer_names[it.buyer as usize].clone(),
                m.agent_names[it.agent as usize].clone(),
                metrics[it.metric as usize].id.clone(),
                it.start,
                it.reply,
                it.latency_ms,
                it.counted_ms,
                it.passed,
                it.excluded.map(|e| e.as_str()),
                None,
                match it.excluded {
                    Some(_) => None,
                    None => it.passed.map(i64::from).or(it.counted_ms),
                },
            )
        })
        .collect();
    if score_columns {
        rows.extend(score.iter().map(|(metric, it)| {
            (
                it.shop_id.to_string(),
                it.buyer_id.to_string(),
                it.agent_id.to_string(),
                metric.to_string(),
                it.start,
                it.reply,
                it.latency_ms,
                it.counted_ms,
                it.passed,
                it.excluded,
                it.order_id.map(str::to_string),
                it.counted,
            )
        }));
    }
    let want = reference(&rows, score_columns);
    let ranks = NameRanks::of(&m);
    let got = encode_items(ItemSources {
        messages: &m,
        ranks: &ranks,
        metrics: &metrics,
        items: &mut items,
        score: score_columns.then_some(score.as_slice()),
    })
    .unwrap();
    assert_eq!(got.height(), want.height());
    let dir = tempfile::tempdir().unwrap();
    let a = file(dir.path(), "a", |p| p.write(&want).unwrap());
    let b = file(dir.path(), "b", |p| p.write_encoded(got).unwrap());
    assert!(
        a == b,
        "seed {seed}, {n} items, {k} scorecard items: the files differ ({} and {} bytes)",
        a.len(),
        b.len()
    );
}

#[test]
fn message_items_encode_as_the_writer_writes_their_frame() {
    check(1, 5000, 0, false, true);
    check(2, 5000, 0, false, false);
    // Two row groups, and an all-null `order_id`.
    check(3, super::encode::ROW_GROUP_ROWS + 777, 0, true, true);
}

#[test]
fn scorecard_items_merge_and_encode_as_the_writer_writes_the_sorted_frame() {
    check(4, 3000, 2000, true, true);
    check(5, 0, 500, true, false);
    check(6, 100, 20, true, false);
}
