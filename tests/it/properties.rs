//! Property tests: the rule parser and the message reader never panic. Any
//! input gives a result or a clear error.

use chrono::NaiveDate;
use polars::prelude::*;
use proptest::prelude::*;

use kefu::engine::{compute_day, EngineOptions};
use kefu::input::{load, DayRange};
use kefu::rules::{parse, RuleSet};

const KEYS: &[&str] = &[
    "id",
    "unit",
    "kind",
    "threshold",
    "any_miss",
    "hours",
    "responders",
    "cross_day",
    "bot_only",
    "cap",
    "unreplied",
    "window_days",
    "session_gap",
    "min_denominator",
    "target",
    "alert",
    "effective_from",
    "effective_to",
    "colour",
];
const VALUES: &[&str] = &[
    "\"m\"",
    "\"message\"",
    "\"buyer\"",
    "\"round\"",
    "\"session\"",
    "\"rate\"",
    "\"mean_latency\"",
    "180",
    "0",
    "-1",
    "99999999999999",
    "true",
    "\"08:00-23:00\"",
    "\"24:00-08:00\"",
    "[\"manual\"]",
    "[\"assist\", \"manual\"]",
    "[]",
    "\"keep\"",
    "\"exclude\"",
    "\"fail\"",
    "600",
    "1.5",
    "2024-05-16",
    "\"2024-13-01\"",
    "\"x\"",
    "{ a = 1 }",
];

fn metric_text() -> impl Strategy<Value = String> {
    prop::collection::vec((0..KEYS.len(), 0..VALUES.len()), 0..12).prop_map(|pairs| {
        let mut seen = std::collections::HashSet::new();
        let mut s = String::from("[[metric]]\n");
        for (k, v) in pairs {
            if seen.insert(k) {
                s.push_str(&format!("{} = {}\n", KEYS[k], VALUES[v]));
            }
        }
        s
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn rule_parser_never_panics(head in prop::sample::select(vec!["", "timezone = \"UTC\"\n", "timezone = 3\n", "max_bad_row_share = 0.5\n", "[input.columns]\nts = \"t\"\n"]),
                                metrics in prop::collection::vec(metric_text(), 0..3),
                                junk in ".{0,40}") {
        let text = format!("{head}{}", metrics.concat());
        match parse(&text, "p.toml") {
            Ok(set) => {
                // Valid sets keep their invariants.
                for m in &set.metrics {
                    prop_assert!(m.hours.start_ms < m.hours.end_ms);
                    prop_assert!(m.responders.bits() != 0);
                }
            }
            Err(e) => prop_assert!(e.to_string().starts_with("rule file p.toml")),
        }
        let _ = parse(&junk, "junk.toml");
        let _ = parse(&format!("{text}{junk}"), "junk.toml");
    }
}

#[derive(Debug, Clone)]
struct Table {
    rows: usize,
    ts_kind: u8,
    drop: Vec<bool>,
    nulls: u8,
    seed: u64,
}

fn table() -> impl Strategy<Value = Table> {
    (
        0usize..60,
        0u8..6,
        prop::collection::vec(any::<bool>(), 9),
        0u8..4,
        any::<u64>(),
    )
        .prop_map(|(rows, ts_kind, drop, nulls, seed)| Table {
            rows,
            ts_kind,
            drop,
            nulls,
            seed,
        })
}

fn build(t: &Table) -> DataFrame {
    let mut x = t.seed;
    let mut next = move || {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        x >> 33
    };
    let day0 = crate::common::at("2024-05-16 00:00:00");
    let n = t.rows;
    let maybe_null =
        |v: Option<String>, r: u64, nulls: u8| if (r % 7) < nulls as u64 { None } else { v };
    let mut shop = Vec::new();
    let mut buyer = Vec::new();
    let mut sender = Vec::new();
    let mut ts = Vec::new();
    let mut flags = [Vec::new(), Vec::new(), Vec::new(), Vec::new()];
    let mut text = [Vec::new(), Vec::new(), Vec::new(), Vec::new()];
    for _ in 0..n {
        shop.push(maybe_null(
            Some(format!("s{}", next() % 3)),
            next(),
            t.nulls,
        ));
        buyer.push(maybe_null(
            Some(format!("b{}", next() % 4)),
            next(),
            t.nulls,
        ));
        sender.push(maybe_null(
            Some(["buyer", "agent", "bot", "system", "who"][(next() % 5) as usize].to_string()),
            next(),
            t.nulls,
        ));
        let off = (next() % (3 * 86_400_000)) as i64 - 43_200_000;
        ts.push(if next() % 11 == 0 {
            None
        } else {
            Some(day0 + off)
        });
        for f in flags.iter_mut() {
            f.push(if next() % 9 == 0 {
                None
            } else {
                Some(next() % 4 == 0)
            });
        }
        for (k, c) in text.iter_mut().enumerate() {
            let v = match k {
                0 => format!("m{}", next() % 20),
                1 => ["a1", "", "a2"][(next() % 3) as usize].to_string(),
                2 => ["consumer", "sub_account", "platform_staff", "???"][(next() % 4) as usize]
                    .to_string(),
                _ => format!("sess{}", next() % 3),
            };
            c.push(maybe_null(Some(v), next(), t.nulls));
        }
    }
    let ts_col = match t.ts_kind {
        0 => Column::new("ts".into(), ts.clone())
            .cast(&DataType::Datetime(
                TimeUnit::Milliseconds,
                Some(TimeZone::UTC),
            ))
            .unwrap(),
        1 => Column::new(
            "ts".into(),
            ts.iter().map(|v| v.map(|x| x * 1000)).collect::<Vec<_>>(),
        )
        .cast(&DataType::Datetime(TimeUnit::Microseconds, None))
        .unwrap(),
        2 => Column::new(
            "ts".into(),
            ts.iter()
                .map(|v| v.map(|x| x * 1_000_000))
                .collect::<Vec<_>>(),
        )
        .cast(&DataType::Datetime(
            TimeUnit::Nanoseconds,
            Some(TimeZone::UTC),
        ))
        .unwrap(),
        3 => Column::new("ts".into(), ts.clone()), // integer: rejected without ts_epoch_unit
        4 => Column::new(
            "ts".into(),
            ts.iter()
                .map(|v| v.map(|x| x.to_string()))
                .collect::<Vec<_>>(),
        ),
        _ => Column::new(
            "ts".into(),
            ts.iter().map(|v| v.map(|x| x % 2 == 0)).collect::<Vec<_>>(),
        ),
    };
    let mut cols = vec![
        Column::new("shop_id".into(), shop),
        Column::new("buyer_id".into(), buyer),
        Column::new("sender".into(), sender),
        ts_col,
    ];
    for (k, name) in ["auto", "assist", "spam", "blocked"].iter().enumerate() {
        cols.push(Column::new((*name).into(), flags[k].clone()));
    }
    for (k, name) in ["msg_id", "agent_id", "peer_kind", "session_id"]
        .iter()
        .enumerate()
    {
        cols.push(Column::new((*name).into(), text[k].clone()));
    }
    // Drop a random subset of columns (required ones included).
    let keep: Vec<Column> = cols
        .into_iter()
        .enumerate()
        .filter(|(i, _)| !t.drop.get(*i).copied().unwrap_or(false) || *i >= 9)
        .map(|(_, c)| c)
        .collect();
    DataFrame::new_infer_height(keep).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn reader_and_engine_never_panic(t in table()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        let mut df = build(&t);
        let mut f = std::fs::File::create(&path).unwrap();
        ParquetWriter::new(&mut f).finish(&mut df).unwrap();
        let day = NaiveDate::from_ymd_opt(2024, 5, 16).unwrap();
        let mut set = RuleSet::preset("taobao").unwrap();
        set.input.max_bad_row_share = 1.0;
        let range = DayRange { first: day, last: day.succ_opt().unwrap() };
        for strict in [false, true] {
            match load(std::slice::from_ref(&path), &set.input, range, strict, kefu::shard::Shard::WHOLE) {
                Ok(m) => {
                    prop_assert_eq!(m.stats.rows_read >= m.stats.bad_rows, true);
                    for p in ["pdd", "taobao", "jd", "xiaohongshu"] {
                        let rules = RuleSet::preset(p).unwrap();
                        let metrics = rules.in_force(NaiveDate::from_ymd_opt(2026, 6, 1).unwrap());
                        let r = compute_day(&m, &metrics, day, EngineOptions { keep_items: true });
                        for c in r.by_agent.values() {
                            prop_assert!(c.denominator > 0 && c.numerator >= 0);
                        }
                    }
                }
                Err(e) => {
                    let msg = e.to_string();
                    prop_assert!(msg.contains("t.parquet") || msg.contains("bad row"), "unclear error: {}", msg);
                }
            }
        }
    }
}
