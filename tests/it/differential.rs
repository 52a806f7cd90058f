//! The engine against a deliberately naive reference (tests/it/common/reference.rs,
//! written separately from the engine, straight from the SPEC) on random
//! message tables, for every preset and every rule version: every numerator
//! and denominator of every (shop, agent, metric) must be equal, and the shop
//! rows must be the sums of the agent rows.

use std::collections::BTreeMap;

use crate::common::reference::{self, Msg};
use crate::common::*;
use chrono::NaiveDate;
use kefu::rules::{Kind, Metric, Policy, RuleSet, Unit, Unreplied};
use polars::prelude::DataFrame;

/// SplitMix64: small, deterministic, good enough for test data.
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
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }
}

/// A random table around `day`: a few shops and buyers, bursts of buyer
/// messages, replies at latencies near every preset threshold, times near
/// midnight and the hours edges, auto/assist/spam/blocked flags, bots,
/// system rows, duplicates, non-consumer peers, sessions.
fn generate(rng: &mut Rng, day: NaiveDate, with_sessions: bool) -> Vec<Msg> {
    let day0 = at(&format!("{day} 00:00:00"));
    const H: i64 = 3_600_000;
    // Interesting local times of day (ms after midnight).
    let anchors = [
        0,
        7 * H + 59 * 60_000,
        8 * H,
        9 * H - 4 * 60_000,
        9 * H,
        10 * H,
        15 * H,
        22 * H + 50 * 60_000,
        23 * H - 1000,
        23 * H,
        24 * H - 30_000,
    ];
    // Latencies near the thresholds (30 s, 180 s, 300 s, 600 s, 1800 s, 3600 s).
    let gaps = [
        0,
        1,
        999,
        1000,
        5_000,
        29_999,
        30_000,
        30_001,
        179_999,
        180_000,
        180_001,
        300_000,
        300_001,
        599_999,
        600_000,
        600_001,
        1_800_000,
        1_800_001,
        3_600_000,
        3_600_001,
        20 * 60_000,
        2 * H,
        26 * H,
    ];
    let mut msgs = Vec::new();
    let shops = 1 + rng.below(3);
    let mut next_id = 0u64;
    for s in 0..shops {
        let buyers = 1 + rng.below(4);
        for b in 0..buyers {
            let mut t = day0
                + (rng.below(3) as i64 - 1) * 24 * H
                + rng.pick(&anchors)
                + rng.below(2) as i64 * rng.below(600_000) as i64;
            let n = rng.below(25);
            let mut session = 0;
            for _ in 0..n {
                let sender = match rng.below(20) {
                    0..=8 => "buyer",
                    9..=15 => "agent",
                    16..=17 => "bot",
                    18 => "system",
                    _ => {
                        if rng.chance(30) {
                            "nonsense"
                        } else {
                            "buyer"
                        }
                    }
                };
                let mut m = Msg {
                    shop: format!("shop{s}"),
                    buyer: format!("buyer{b}"),
                    ts_ms: t,
                    sender: sender.to_string(),
                    msg_id: None,
                    agent_id: None,
                    auto: rng.chance(12),
                    assist: rng.chance(50),
                    spam: rng.chance(4),
                    blocked: rng.chance(4),
                    peer_kind: if rng.chance(5) {
                        rng.pick(&["sub_account", "platform_staff"]).to_string()
                    } else {
                        "consumer".into()
                    },
                    session_id: None,
                };
                if rng.chance(60) {
                    m.agent_id = Some(rng.pick(&["a1", "a2", "bot9", ""]).to_string());
                }
                if rng.chance(70) {
                    // Sometimes repeat an earlier id (a duplicate export row).
                    let id = if next_id > 0 && rng.chance(10) {
                        rng.below(next_id)
                    } else {
                        next_id
                    };
                    next_id += 1;
                    m.msg_id = Some(format!("m{id}"));
                }
                if with_sessions {
                    if rng.chance(15) {
                        session += 1;
                    }
                    m.session_id = if rng.chance(15) {
                        None
                    } else {
                        Some(format!("sess{s}-{b}-{session}"))
                    };
                }
                msgs.push(m);
                t += *rng.pick(&gaps)
                    + if rng.chance(20) {
                        rng.below(60_000) as i64
                    } else {
                        0
                    };
            }
        }
    }
    // Shuffle the input order a little (the tie-break on equal ts).
    for i in (1..msgs.len()).rev() {
        if rng.chance(30) {
            let j = rng.below(i as u64 + 1) as usize;
            msgs.swap(i, j);
        }
    }
    msgs
}

fn to_reference(m: &Metric) -> reference::Metric {
    reference::Metric {
        id: m.id.clone(),
        unit: match m.unit {
            Unit::Message => reference::Unit::Message,
            Unit::Buyer => reference::Unit::Buyer,
            Unit::Round => reference::Unit::Round,
            Unit::Session => reference::Unit::Session,
        },
        kind: match m.kind {
            Kind::Rate => reference::Kind::Rate,
            Kind::MeanLatency => reference::Kind::MeanLatency,
        },
        threshold_s: m.threshold_ms.map(|v| v / 1000),
        any_miss: m.any_miss,
        hours_start_min: (m.hours.start_ms / 60_000) as u32,
        hours_end_min: (m.hours.end_ms / 60_000) as u32,
        manual: m.responders.manual(),
        assist: m.responders.assist(),
        cross_day_exclude: m.cross_day == Policy::Exclude,
        bot_only_exclude: m.bot_only == Policy::Exclude,
        cap_s: m.cap_ms.map(|v| v / 1000),
        unreplied: match m.unreplied {
            Unreplied::Fail => reference::Unreplied::Fail,
            Unreplied::Exclude => reference::Unreplied::Exclude,
            Unreplied::Millis(ms) => reference::Unreplied::Seconds(ms / 1000),
        },
        session_gap_s: m.session_gap_ms.map(|v| v / 1000),
    }
}

fn check(platform: &str, rules: &RuleSet, days: &[&str], seeds: std::ops::Range<u64>) {
    let mut compared = 0usize;
    for seed in seeds {
        for d in days {
            let day = date(d);
            let mut rng =
                Rng(seed * 7919 + day.to_string().len() as u64 + u64::from(platform.as_bytes()[0]));
            let with_sessions = seed % 3 == 0;
            let msgs = generate(&mut rng, day, with_sessions);
            let dir = tempfile::tempdir().unwrap();
            let input = dir.path().join("messages.parquet");
            write_messages(
                &input,
                &msgs,
                Columns {
                    session_id: with_sessions,
                    ..Default::default()
                },
            );
            // The library path of `kefu run` for one day, without the disk
            // commits (tested elsewhere): read, compute, build the tables.
            let mut settings = rules.input.clone();
            settings.max_bad_row_share = 1.0; // generated tables hold bad rows on purpose
            let range = kefu::input::DayRange {
                first: day,
                last: day.succ_opt().unwrap(),
            };
            let loaded =
                kefu::input::load(&[input], &settings, range, false, kefu::shard::Shard::WHOLE)
                    .unwrap();
            let in_force = rules.in_force(day);
            let result = kefu::engine::compute_day(
                &loaded,
                &in_force,
                day,
                kefu::engine::EngineOptions { keep_items: true },
            );
            let agent_df = kefu::output::agent_daily(&loaded, &in_force, &result).unwrap();
            let shop_df = kefu::output::shop_daily(&loaded, &in_force, &result).unwrap();

            let metrics: Vec<reference::Metric> =
                rules.in_force(day).into_iter().map(to_reference).collect();
            let expected = reference::reference(&msgs, with_sessions, &metrics, SHANGHAI, day);
            let got = agent_rows(&agent_df);
            assert_eq!(got, expected, "{platform} {day} seed {seed} (sessions: {with_sessions}): agent_daily differs\n{msgs:#?}");

            let mut shop_expected: BTreeMap<(String, String), (i64, i64)> = BTreeMap::new();
            for ((shop, _, metric), (n, dn)) in &expected {
                let e = shop_expected
                    .entry((shop.clone(), metric.clone()))
                    .or_default();
                e.0 += n;
                e.1 += dn;
            }
            let shop_got = shop_rows(&shop_df);
            assert_eq!(
                shop_got, shop_expected,
                "{platform} {day} seed {seed}: shop_daily differs"
            );
            compared += expected.len();
        }
    }
    assert!(
        compared > 0,
        "{platform}: the generated data produced no metric rows at all"
    );
}

fn agent_rows(df: &DataFrame) -> BTreeMap<(String, String, String), (i64, i64)> {
    let s = |n: &str| df.column(n).unwrap().str().unwrap().clone();
    let i = |n: &str| df.column(n).unwrap().i64().unwrap().clone();
    let (shop, agent, metric, num, den) = (
        s("shop_id"),
        s("agent_id"),
        s("metric"),
        i("numerator"),
        i("denominator"),
    );
    (0..df.height())
        .map(|k| {
            let key = (
                shop.get(k).unwrap().to_string(),
                agent.get(k).unwrap().to_string(),
                metric.get(k).unwrap().to_string(),
            );
            (key, (num.get(k).unwrap(), den.get(k).unwrap()))
        })
        .collect()
}

fn shop_rows(df: &DataFrame) -> BTreeMap<(String, String), (i64, i64)> {
    let s = |n: &str| df.column(n).unwrap().str().unwrap().clone();
    let i = |n: &str| df.column(n).unwrap().i64().unwrap().clone();
    let (shop, metric, num, den) = (s("shop_id"), s("metric"), i("numerator"), i("denominator"));
    (0..df.height())
        .map(|k| {
            (
                (
                    shop.get(k).unwrap().to_string(),
                    metric.get(k).unwrap().to_string(),
                ),
                (num.get(k).unwrap(), den.get(k).unwrap()),
            )
        })
        .collect()
}

const SEEDS: std::ops::Range<u64> = 0..40;

#[test]
fn pdd_matches_reference_across_the_2023_switch() {
    check(
        "pdd",
        &RuleSet::preset("pdd").unwrap(),
        &["2023-04-26", "2023-04-27"],
        SEEDS,
    );
}

#[test]
fn taobao_matches_reference_across_the_2026_switch() {
    check(
        "taobao",
        &RuleSet::preset("taobao").unwrap(),
        &["2026-03-15", "2026-03-16"],
        SEEDS,
    );
}

#[test]
fn douyin_matches_reference() {
    check(
        "douyin",
        &RuleSet::preset("douyin").unwrap(),
        &["2024-05-16"],
        SEEDS,
    );
}

#[test]
fn jd_matches_reference() {
    check(
        "jd",
        &RuleSet::preset("jd").unwrap(),
        &["2024-05-16"],
        SEEDS,
    );
}

#[test]
fn kuaishou_matches_reference() {
    check(
        "kuaishou",
        &RuleSet::preset("kuaishou").unwrap(),
        &["2024-05-16"],
        SEEDS,
    );
}

#[test]
fn xiaohongshu_matches_reference() {
    check(
        "xiaohongshu",
        &RuleSet::preset("xiaohongshu").unwrap(),
        &["2024-05-16"],
        SEEDS,
    );
}

/// Rule fields no preset uses: any_miss off on buyers, unreplied exclude on
/// rates, cross_day/bot_only on sessions, mean latency over buyers and
/// sessions, all-day hours.
#[test]
fn non_preset_fields_match_reference() {
    let rules = kefu::rules::parse(
        r#"
[[metric]]
id = "x.buyer_first_only"
unit = "buyer"
kind = "rate"
threshold = 60
hours = "00:00-24:00"
responders = ["manual", "assist"]
unreplied = "exclude"

[[metric]]
id = "x.session_any_miss_exclude"
unit = "session"
kind = "rate"
threshold = 180
any_miss = true
hours = "08:00-23:00"
responders = ["manual"]
cross_day = "exclude"
bot_only = "exclude"
unreplied = "exclude"
session_gap = 300

[[metric]]
id = "x.session_mean"
unit = "session"
kind = "mean_latency"
hours = "09:00-23:00"
responders = ["assist"]
cross_day = "exclude"
cap = 120
unreplied = 900
session_gap = 600

[[metric]]
id = "x.buyer_mean"
unit = "buyer"
kind = "mean_latency"
hours = "08:00-23:00"
responders = ["manual"]

[[metric]]
id = "x.round_rate_exclude"
unit = "round"
kind = "rate"
threshold = 30
hours = "00:00-24:00"
responders = ["manual"]
bot_only = "exclude"
unreplied = "exclude"
"#,
        "test.toml",
    )
    .unwrap();
    check("custom", &rules, &["2024-05-16"], 0..60);
}

/// `kefu run --platform all` computes every platform's metrics in one pass,
/// each distinct metric once (`engine::compute_days`): every platform's
/// counts, totals and items must be what computing it alone gives, on the
/// days of the rule switches, with and without items, and for a rule file
/// whose metrics repeat each other's definitions under other ids; and one
/// set alone gives exactly what computing it alone gives.
#[test]
fn all_platforms_in_one_pass_match_each_alone() {
    let twins = kefu::rules::parse(
        r#"
[[metric]]
id = "a.rate"
unit = "buyer"
kind = "rate"
threshold = 180
any_miss = true
hours = "08:00-23:00"
responders = ["manual"]

[[metric]]
id = "b.same_rate_other_id"
unit = "buyer"
kind = "rate"
threshold = 180
any_miss = true
hours = "08:00-23:00"
responders = ["manual"]
window_days = 7

[[metric]]
id = "c.other_threshold"
unit = "buyer"
kind = "rate"
threshold = 181
any_miss = true
hours = "08:00-23:00"
responders = ["manual"]
"#,
        "twins.toml",
    )
    .unwrap();
    let mut sets: Vec<RuleSet> = ["pdd", "taobao", "douyin", "jd", "kuaishou", "xiaohongshu"]
        .iter()
        .map(|p| RuleSet::preset(p).unwrap())
        .collect();
    sets.push(twins);
    let mut compared = 0usize;
    for seed in 0..40u64 {
        for d in ["2023-04-27", "2024-05-16", "2026-03-16"] {
            let day = date(d);
            let mut rng = Rng(seed * 104_729 + 17);
            let msgs = generate(&mut rng, day, seed % 3 == 0);
            let dir = tempfile::tempdir().unwrap();
            let input = dir.path().join("messages.parquet");
            write_messages(
                &input,
                &msgs,
                Columns {
                    session_id: seed % 3 == 0,
                    ..Default::default()
                },
            );
            let mut settings = sets[0].input.clone();
            settings.max_bad_row_share = 1.0;
            let range = kefu::input::DayRange {
                first: day,
                last: day.succ_opt().unwrap(),
            };
            let loaded =
                kefu::input::load(&[input], &settings, range, false, kefu::shard::Shard::WHOLE)
                    .unwrap();
            let in_force: Vec<Vec<&Metric>> = sets.iter().map(|s| s.in_force(day)).collect();
            let keep: Vec<bool> = (0..sets.len())
                .map(|k| (seed + k as u64).is_multiple_of(2))
                .collect();
            let together = kefu::engine::compute_days(
                &loaded,
                &in_force
                    .iter()
                    .zip(&keep)
                    .map(|(metrics, &keep_items)| kefu::engine::MetricSet {
                        metrics,
                        keep_items,
                    })
                    .collect::<Vec<_>>(),
                day,
            );
            assert_eq!(together.len(), sets.len());
            for (k, got) in together.iter().enumerate() {
                let alone = kefu::engine::compute_day(
                    &loaded,
                    &in_force[k],
                    day,
                    kefu::engine::EngineOptions {
                        keep_items: keep[k],
                    },
                );
                let what = format!("set {k} on {day}, seed {seed}");
                assert_eq!(got.by_agent, alone.by_agent, "{what}: counts");
                assert_eq!(got.totals, alone.totals, "{what}: totals");
                // Items of one metric keep their order; across metrics
                // the order is the output's sort's.
                let per_metric = |items: &[kefu::engine::Item]| {
                    let mut by: BTreeMap<u16, Vec<kefu::engine::Item>> = BTreeMap::new();
                    for it in items {
                        by.entry(it.metric).or_default().push(it.clone());
                    }
                    by
                };
                assert_eq!(
                    per_metric(&got.items),
                    per_metric(&alone.items),
                    "{what}: items"
                );
                assert_eq!(got.items.len(), alone.items.len());
                // A set alone (the single-platform run) gives the same, and
                // without repeated definitions its items in the same order.
                let single = kefu::engine::compute_days(
                    &loaded,
                    &[kefu::engine::MetricSet {
                        metrics: &in_force[k],
                        keep_items: keep[k],
                    }],
                    day,
                );
                let single = &single[0];
                assert_eq!(single.by_agent, alone.by_agent, "{what}: alone, counts");
                assert_eq!(single.totals, alone.totals, "{what}: alone, totals");
                let twins = in_force[k]
                    .iter()
                    .enumerate()
                    .any(|(i, a)| in_force[k][..i].iter().any(|b| a.same_items(b)));
                if twins {
                    assert_eq!(per_metric(&single.items), per_metric(&alone.items));
                } else {
                    assert_eq!(single.items, alone.items, "{what}: alone, items");
                }
                compared += alone.by_agent.len();
            }
        }
    }
    assert!(compared > 1000, "only {compared} rows compared");
}
