//! Small table tests, one behaviour each, for every rule field and boundary
//! of SPEC §1–§3. Expected numbers are worked out by hand in the comments.

use crate::common::*;

const DAY: &str = "2024-05-16";

/// Runs one metric (TOML body of a [[metric]] with id "t") over `msgs` and
/// returns shop s1's (numerator, denominator), None when there is no row.
fn one(metric: &str, msgs: &[Msg]) -> Option<(i64, i64)> {
    one_on(metric, msgs, DAY)
}

fn one_on(metric: &str, msgs: &[Msg], day: &str) -> Option<(i64, i64)> {
    let rules = format!("[[metric]]\nid = \"t\"\n{metric}\n");
    let rows = run_day(msgs, "test", Some(&rules), date(day));
    counts(&rows, "s1", "t")
}

const MSG_RATE_3M: &str = r#"unit = "message"
kind = "rate"
threshold = 180
hours = "08:00-23:00"
responders = ["manual"]"#;

const ROUND_RATE_3M: &str = r#"unit = "round"
kind = "rate"
threshold = 180
hours = "08:00-23:00"
responders = ["manual"]"#;

fn at_day(t: &str) -> String {
    format!("{DAY} {t}")
}

#[test]
fn hours_start_inclusive_end_exclusive() {
    // Each inquiry answered after 10 s; count which are in 08:00-23:00.
    for (t, counted) in [
        ("07:59:59", false),
        ("08:00:00", true),
        ("22:59:59", true),
        ("23:00:00", false),
    ] {
        let msgs = [
            buyer(&at_day(t)),
            agent(&at_day(
                &t.replace(":59:59", ":59:59.500")
                    .replace(":00:00", ":00:05"),
            )),
        ];
        assert_eq!(
            one(MSG_RATE_3M, &msgs),
            counted.then_some((1, 1)),
            "inquiry at {t}"
        );
    }
}

#[test]
fn hours_to_midnight() {
    let m = MSG_RATE_3M.replace("08:00-23:00", "08:00-24:00");
    let msgs = [buyer(&at_day("23:59:59.999")), agent("2024-05-17 00:00:10")];
    assert_eq!(
        one(&m, &msgs),
        Some((1, 1)),
        "23:59:59.999 is inside 08:00-24:00"
    );
    let all = MSG_RATE_3M.replace("08:00-23:00", "00:00-24:00");
    let msgs = [buyer(&at_day("00:00:00")), agent(&at_day("00:00:01"))];
    assert_eq!(one(&all, &msgs), Some((1, 1)));
}

#[test]
fn threshold_equality_passes() {
    let msgs = [buyer(&at_day("10:00:00")), agent(&at_day("10:03:00"))];
    assert_eq!(
        one(MSG_RATE_3M, &msgs),
        Some((1, 1)),
        "exactly 180 s passes"
    );
    let msgs = [buyer(&at_day("10:00:00")), agent(&at_day("10:03:00.001"))];
    assert_eq!(one(MSG_RATE_3M, &msgs), Some((0, 1)), "180.001 s fails");
}

#[test]
fn sub_millisecond_input_is_truncated() {
    // 180.0009 s in microseconds truncates to 180.000 s: passes.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("m.parquet");
    let mut late = agent(&at_day("10:03:00"));
    late.ts_ms += 0; // the microsecond part is added below through the unit
    write_messages(
        &input,
        &[buyer(&at_day("10:00:00")), late],
        Columns {
            unit: polars::prelude::TimeUnit::Microseconds,
            ..Default::default()
        },
    );
    // Rewrite with +900 µs on the reply.
    let mut df = read_parquet(&input);
    let ts = df
        .column("ts")
        .unwrap()
        .datetime()
        .unwrap()
        .physical()
        .clone();
    let shifted: Vec<i64> = ts
        .into_no_null_iter()
        .enumerate()
        .map(|(i, v)| if i == 1 { v + 900 } else { v })
        .collect();
    let col = polars::prelude::Column::new("ts".into(), shifted)
        .cast(&polars::prelude::DataType::Datetime(
            polars::prelude::TimeUnit::Microseconds,
            Some(polars::prelude::TimeZone::UTC),
        ))
        .unwrap();
    df.replace("ts", col).unwrap();
    let mut f = std::fs::File::create(&input).unwrap();
    polars::prelude::ParquetWriter::new(&mut f)
        .finish(&mut df)
        .unwrap();
    let out = dir.path().join("out");
    let rules = format!("[[metric]]\nid = \"t\"\n{MSG_RATE_3M}\n");
    run_lib(&input, &out, "test", Some(&rules), date(DAY), date(DAY));
    assert_eq!(
        counts(&read_shop_daily(&out, "test", date(DAY)), "s1", "t"),
        Some((1, 1))
    );
}

#[test]
fn equal_timestamps_reply_counts_with_latency_zero() {
    // The reply is first in input order but buyer rows sort first at equal ts.
    let msgs = [agent(&at_day("10:00:00")), buyer(&at_day("10:00:00"))];
    let mean = r#"unit = "message"
kind = "mean_latency"
hours = "08:00-23:00"
responders = ["manual"]"#;
    assert_eq!(one(mean, &msgs), Some((0, 1)));
}

#[test]
fn invalid_replies_do_not_close_rounds() {
    // Auto reply at 10:01 does not close the round: the 10:02 inquiry joins
    // it; the manual reply at 10:04 closes it, 240 s after 10:00 → 0 / 1.
    let mut auto = agent(&at_day("10:01:00"));
    auto.auto = true;
    let msgs = [
        buyer(&at_day("10:00:00")),
        auto,
        buyer(&at_day("10:02:00")),
        agent(&at_day("10:04:00")),
    ];
    assert_eq!(one(ROUND_RATE_3M, &msgs), Some((0, 1)));
    // A non-assist bot message does not close it either, and neither does an
    // assist bot under a manual-only rule.
    let mut bot = msg("bot", &at_day("10:01:00"));
    bot.assist = true;
    let msgs = [
        buyer(&at_day("10:00:00")),
        bot,
        buyer(&at_day("10:02:00")),
        agent(&at_day("10:04:00")),
    ];
    assert_eq!(one(ROUND_RATE_3M, &msgs), Some((0, 1)));
    // Under manual+assist the assist bot closes the first round (60 s) and
    // the 10:02 inquiry opens a second one (120 s) → 2 / 2.
    let both = ROUND_RATE_3M.replace(r#"["manual"]"#, r#"["manual", "assist"]"#);
    assert_eq!(one(&both, &msgs), Some((2, 2)));
}

#[test]
fn bot_only_rounds_are_excluded() {
    let rule = format!("{ROUND_RATE_3M}\nbot_only = \"exclude\"");
    // No valid reply, a (non-assist) bot answered → dropped.
    let msgs = [buyer(&at_day("10:00:00")), msg("bot", &at_day("10:00:05"))];
    assert_eq!(one(&rule, &msgs), None);
    assert_eq!(
        one(ROUND_RATE_3M, &msgs),
        Some((0, 1)),
        "kept by default: unreplied"
    );
    // An agent's auto-reply does not make it bot-only.
    let mut auto = agent(&at_day("10:00:05"));
    auto.auto = true;
    assert_eq!(
        one(&rule, &[buyer(&at_day("10:00:00")), auto]),
        Some((0, 1))
    );
    // A bot row before the start does not count.
    let msgs = [msg("bot", &at_day("09:59:00")), buyer(&at_day("10:00:00"))];
    assert_eq!(one(&rule, &msgs), Some((0, 1)));
    // A bot row beyond the horizon does not count.
    let msgs = [
        buyer(&at_day("10:00:00")),
        msg("bot", "2024-05-18 00:00:00"),
    ];
    assert_eq!(one(&rule, &msgs), Some((0, 1)));
}

#[test]
fn cross_day_keep_and_exclude() {
    let msgs = [buyer(&at_day("22:50:00")), agent("2024-05-17 00:10:00")];
    let rule = format!("{ROUND_RATE_3M}\ncross_day = \"exclude\"");
    assert_eq!(one(&rule, &msgs), None);
    assert_eq!(
        one(ROUND_RATE_3M, &msgs),
        Some((0, 1)),
        "keep: a late reply"
    );
    // A reply beyond the horizon is unreplied, never cross-day.
    let msgs = [buyer(&at_day("22:50:00")), agent("2024-05-18 00:00:00")];
    assert_eq!(one(&rule, &msgs), Some((0, 1)));
}

#[test]
fn reply_horizon_is_the_end_of_the_next_day() {
    let mean = r#"unit = "message"
kind = "mean_latency"
hours = "00:00-24:00"
responders = ["manual"]
unreplied = 7"#;
    // 23:59:59.999 of D+1 is seen; 00:00:00 of D+2 is not (counts as 7 s).
    let seen = [buyer(&at_day("12:00:00")), agent("2024-05-17 23:59:59.999")];
    assert_eq!(one(mean, &seen), Some((129_599_999, 1)));
    let unseen = [buyer(&at_day("12:00:00")), agent("2024-05-18 00:00:00")];
    assert_eq!(one(mean, &unseen), Some((7_000, 1)));
}

#[test]
fn any_miss_on_and_off() {
    // Buyer with inquiries answered after 20 s and 200 s.
    let msgs = [
        buyer(&at_day("10:00:00")),
        agent(&at_day("10:00:20")),
        buyer(&at_day("11:00:00")),
        agent(&at_day("11:03:20")),
    ];
    let base = r#"unit = "buyer"
kind = "rate"
threshold = 180
hours = "08:00-23:00"
responders = ["manual"]"#;
    assert_eq!(
        one(&format!("{base}\nany_miss = true"), &msgs),
        Some((0, 1))
    );
    assert_eq!(
        one(base, &msgs),
        Some((1, 1)),
        "only the first in-hours inquiry is timed"
    );
    // Out-of-hours inquiries are not part of the buyer item.
    let msgs = [
        buyer(&at_day("07:00:00")),
        buyer(&at_day("10:00:00")),
        agent(&at_day("10:00:20")),
    ];
    assert_eq!(
        one(&format!("{base}\nany_miss = true"), &msgs),
        Some((1, 1))
    );
}

#[test]
fn spam_blocked_auto_and_peer_kind_rows_are_not_inquiries() {
    for tweak in ["spam", "blocked", "auto", "sub_account", "platform_staff"] {
        let mut q = buyer(&at_day("10:00:00"));
        match tweak {
            "spam" => q.spam = true,
            "blocked" => q.blocked = true,
            "auto" => q.auto = true,
            other => q.peer_kind = other.to_string(),
        }
        assert_eq!(
            one(MSG_RATE_3M, &[q, agent(&at_day("10:10:00"))]),
            None,
            "{tweak}"
        );
    }
}

#[test]
fn row_level_peer_kind_rows_neither_answer_nor_split() {
    // An agent row marked sub_account does not answer.
    let mut sub = agent(&at_day("10:00:10"));
    sub.peer_kind = "sub_account".into();
    let msgs = [buyer(&at_day("10:00:00")), sub, agent(&at_day("10:05:00"))];
    assert_eq!(one(MSG_RATE_3M, &msgs), Some((0, 1)));
    // A platform_staff row does not keep a derived session alive: 10:00 and
    // 10:16 are 16 min apart (> 10 min gap) even with a staff row at 10:08.
    let jd = r#"unit = "session"
kind = "rate"
threshold = 30
hours = "09:00-23:00"
responders = ["manual"]
session_gap = 600"#;
    let mut staff = msg("system", &at_day("10:08:00"));
    staff.peer_kind = "platform_staff".into();
    let msgs = [
        buyer(&at_day("10:00:00")),
        agent(&at_day("10:00:10")),
        staff,
        buyer(&at_day("10:16:00")),
        agent(&at_day("10:17:00")),
    ];
    assert_eq!(one(jd, &msgs), Some((1, 2)));
}

#[test]
fn session_gap_splits_only_when_exceeded() {
    let jd = r#"unit = "session"
kind = "rate"
threshold = 30
hours = "09:00-23:00"
responders = ["manual"]
session_gap = 600"#;
    // Gap of exactly 600 s between the reply and the next inquiry: one session.
    let msgs = [
        buyer(&at_day("10:00:00")),
        agent(&at_day("10:00:10")),
        buyer(&at_day("10:10:10")),
        agent(&at_day("10:12:00")),
    ];
    assert_eq!(one(jd, &msgs), Some((1, 1)));
    // 600.001 s: two sessions, the second answered after 110 s → 1 / 2.
    let msgs = [
        buyer(&at_day("10:00:00")),
        agent(&at_day("10:00:10")),
        buyer(&at_day("10:10:10.001")),
        agent(&at_day("10:12:00")),
    ];
    assert_eq!(one(jd, &msgs), Some((1, 2)));
    // Any sender keeps a session alive (a system row at 10:08).
    let msgs = [
        buyer(&at_day("10:00:00")),
        agent(&at_day("10:00:10")),
        msg("system", &at_day("10:08:00")),
        buyer(&at_day("10:16:00")),
        agent(&at_day("10:18:00")),
    ];
    assert_eq!(one(jd, &msgs), Some((1, 1)));
}

#[test]
fn session_any_miss_includes_out_of_hours_inquiries_of_the_session() {
    let xhs = r#"unit = "session"
kind = "rate"
threshold = 180
any_miss = true
hours = "09:00-23:00"
responders = ["manual"]
session_gap = 1800"#;
    // Starts 22:50 (in hours); a 23:05 inquiry of the same session is
    // answered after 4 min → the session fails.
    let msgs = [
        buyer(&at_day("22:50:00")),
        agent(&at_day("22:51:00")),
        buyer(&at_day("23:05:00")),
        agent(&at_day("23:09:00")),
    ];
    assert_eq!(one(xhs, &msgs), Some((0, 1)));
}

#[test]
fn session_id_column_groups_rows() {
    let jd = r#"[[metric]]
id = "t"
unit = "session"
kind = "rate"
threshold = 30
hours = "09:00-23:00"
responders = ["manual"]
session_gap = 600
"#;
    // Two platform sessions 5 minutes apart (no gap split would merge them).
    let mut msgs = vec![
        buyer(&at_day("10:00:00")),
        agent(&at_day("10:00:10")),
        buyer(&at_day("10:05:00")),
        agent(&at_day("10:06:00")),
    ];
    for (i, m) in msgs.iter_mut().enumerate() {
        m.session_id = Some(if i < 2 { "A".into() } else { "B".into() });
    }
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("m.parquet");
    write_messages(
        &input,
        &msgs,
        Columns {
            session_id: true,
            ..Default::default()
        },
    );
    let out = dir.path().join("out");
    run_lib(&input, &out, "test", Some(jd), date(DAY), date(DAY));
    assert_eq!(
        counts(&read_shop_daily(&out, "test", date(DAY)), "s1", "t"),
        Some((1, 2))
    );
}

#[test]
fn rounds_and_sessions_split_at_local_midnight() {
    // A round open at midnight stops taking inquiries: the 00:00:30 inquiry
    // opens a new round on D+1 even though no reply came in between.
    let all_day = ROUND_RATE_3M.replace("08:00-23:00", "00:00-24:00");
    let msgs = [
        buyer(&at_day("23:59:00")),
        buyer("2024-05-17 00:00:30"),
        agent("2024-05-17 00:01:00"),
    ];
    assert_eq!(
        one_on(&all_day, &msgs, "2024-05-17"),
        Some((1, 1)),
        "D+1: 30 s"
    );
    assert_eq!(
        one_on(&all_day, &msgs, DAY),
        Some((1, 1)),
        "D: 120 s, reply on D+1 kept"
    );
    // A derived session is split at midnight too.
    let sess = r#"unit = "session"
kind = "rate"
threshold = 30
hours = "00:00-24:00"
responders = ["manual"]
session_gap = 3600"#;
    assert_eq!(one_on(sess, &msgs, "2024-05-17"), Some((1, 1)));
}

#[test]
fn duplicates_are_dropped_per_shop_and_local_day() {
    // The same msg_id twice on one day: the second (a late "reply" copy of
    // the inquiry) is dropped, so the inquiry counts once.
    let mut q1 = buyer(&at_day("10:00:00"));
    q1.msg_id = Some("x".into());
    let mut q2 = buyer(&at_day("10:00:00"));
    q2.msg_id = Some("x".into());
    let msgs = [q1, q2, agent(&at_day("10:01:00"))];
    assert_eq!(one(MSG_RATE_3M, &msgs), Some((1, 1)));
}

#[test]
fn naive_and_utc_timestamps_agree() {
    let msgs = [
        buyer(&at_day("10:00:00")),
        agent(&at_day("10:02:00")),
        buyer(&at_day("22:59:00")),
        agent(&at_day("23:05:00")),
    ];
    let rules = format!("[[metric]]\nid = \"t\"\n{MSG_RATE_3M}\n");
    let mut results = Vec::new();
    for (naive, unit) in [
        (false, polars::prelude::TimeUnit::Milliseconds),
        (true, polars::prelude::TimeUnit::Nanoseconds),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("m.parquet");
        write_messages(
            &input,
            &msgs,
            Columns {
                naive_ts: naive,
                unit,
                ..Default::default()
            },
        );
        let out = dir.path().join("out");
        run_lib(&input, &out, "test", Some(&rules), date(DAY), date(DAY));
        results.push(counts(&read_shop_daily(&out, "test", date(DAY)), "s1", "t"));
    }
    assert_eq!(results, vec![Some((1, 2)), Some((1, 2))]);
}

#[test]
fn pdd_rule_version_switch_2023_04_27() {
    // Bot (assist) reply after 1 min: counts for the legacy rules, not for
    // the manual rate from 2023-04-27.
    let msgs = |d: &str| {
        let mut bot = msg("bot", &format!("{d} 10:01:00"));
        bot.assist = true;
        vec![buyer(&format!("{d} 10:00:00")), bot]
    };
    let before = run_day(&msgs("2023-04-26"), "pdd", None, date("2023-04-26"));
    assert_eq!(counts(&before, "s1", "pdd.reply_rate_5m"), Some((1, 1)));
    assert_eq!(
        counts(&before, "s1", "pdd.effective_reply_rate"),
        Some((1, 1))
    );
    assert_eq!(counts(&before, "s1", "pdd.manual_reply_rate_3m"), None);
    let after = run_day(&msgs("2023-04-27"), "pdd", None, date("2023-04-27"));
    assert_eq!(
        counts(&after, "s1", "pdd.manual_reply_rate_3m"),
        Some((0, 1))
    );
    assert_eq!(counts(&after, "s1", "pdd.reply_rate_5m"), None);
    assert_eq!(
        after[&("s1".to_string(), "pdd.manual_reply_rate_3m".to_string())].3,
        "pdd.manual_reply_rate_3m@2023-04-27"
    );
    assert_eq!(
        after[&("s1".to_string(), "pdd.answer_rate_30s".to_string())].3,
        "pdd.answer_rate_30s@"
    );
}

#[test]
fn taobao_rule_version_switch_2026_03_16() {
    // A round started 23:30 counts under 08:00-24:00 (to 2026-03-15), not
    // under 08:00-23:00 (from 2026-03-16).
    let msgs = |d: &str| {
        vec![
            buyer(&format!("{d} 23:30:00")),
            agent(&format!("{d} 23:31:00")),
        ]
    };
    let tb = "taobao.manual_response_rate_3m";
    let old = run_day(&msgs("2026-03-15"), "taobao", None, date("2026-03-15"));
    assert_eq!(counts(&old, "s1", tb), Some((1, 1)));
    assert_eq!(
        old[&("s1".to_string(), tb.to_string())].3,
        "taobao.manual_response_rate_3m@2022-01-08"
    );
    let new = run_day(&msgs("2026-03-16"), "taobao", None, date("2026-03-16"));
    assert_eq!(counts(&new, "s1", tb), None);
}

#[test]
fn mean_latency_cap_and_unreplied() {
    let rule = r#"unit = "round"
kind = "mean_latency"
hours = "08:00-23:00"
responders = ["manual"]
cap = 600
unreplied = 600"#;
    // 40 s + capped 660 s → 600 s + unreplied 600 s = 1240 s over 3 rounds.
    let mut msgs = vec![
        buyer(&at_day("10:00:00")),
        agent(&at_day("10:00:40")),
        buyer(&at_day("11:00:00")),
        agent(&at_day("11:11:00")),
        buyer(&at_day("12:00:00")),
    ];
    msgs.iter_mut().for_each(|m| m.buyer = "b".into());
    assert_eq!(one(rule, &msgs), Some((1_240_000, 3)));
    let excl = r#"unit = "round"
kind = "mean_latency"
hours = "08:00-23:00"
responders = ["manual"]"#;
    assert_eq!(
        one(excl, &msgs),
        Some((700_000, 2)),
        "unreplied excluded by default, no cap"
    );
}

#[test]
fn agent_of_an_item_routed_then_replier_then_empty() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("m.parquet");
    let mut routed = buyer(&at_day("10:00:00"));
    routed.agent_id = Some("router".into());
    routed.buyer = "b1".into();
    let mut r1 = agent(&at_day("10:00:10"));
    r1.agent_id = Some("replier".into());
    r1.buyer = "b1".into();
    let mut q2 = buyer(&at_day("10:00:00"));
    q2.buyer = "b2".into();
    let mut r2 = agent(&at_day("10:00:20"));
    r2.agent_id = Some("replier".into());
    r2.buyer = "b2".into();
    let mut q3 = buyer(&at_day("10:00:00"));
    q3.buyer = "b3".into();
    write_messages(&input, &[routed, r1, q2, r2, q3], Columns::default());
    let out = dir.path().join("out");
    let rules = format!("[[metric]]\nid = \"t\"\n{MSG_RATE_3M}\n");
    run_lib(&input, &out, "test", Some(&rules), date(DAY), date(DAY));
    let agents = read_agent_daily(&out, "test", date(DAY));
    let key = |a: &str| ("s1".to_string(), a.to_string(), "t".to_string());
    assert_eq!(agents.get(&key("router")), Some(&(1, 1)));
    assert_eq!(agents.get(&key("replier")), Some(&(1, 1)));
    assert_eq!(agents.get(&key("")), Some(&(0, 1)));
    assert_eq!(agents.len(), 3);
}

#[test]
fn sender_values_and_column_mapping() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("m.parquet");
    let mut msgs = vec![buyer(&at_day("10:00:00")), agent(&at_day("10:01:00"))];
    msgs[0].sender = "0".into();
    msgs[1].sender = "1".into();
    write_messages(&input, &msgs, Columns::default());
    // Rename shop_id → mall_id in the file.
    let mut df = read_parquet(&input);
    df.rename("shop_id", "mall_id".into()).unwrap();
    let mut f = std::fs::File::create(&input).unwrap();
    polars::prelude::ParquetWriter::new(&mut f)
        .finish(&mut df)
        .unwrap();
    let rules = format!(
        "[input.columns]\nshop_id = \"mall_id\"\n[input.sender_values]\n\"0\" = \"buyer\"\n\"1\" = \"agent\"\n[[metric]]\nid = \"t\"\n{MSG_RATE_3M}\n"
    );
    let out = dir.path().join("out");
    run_lib(&input, &out, "test", Some(&rules), date(DAY), date(DAY));
    assert_eq!(
        counts(&read_shop_daily(&out, "test", date(DAY)), "s1", "t"),
        Some((1, 1))
    );
}
