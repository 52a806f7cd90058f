//! SPEC §7's worked examples, end to end through the `kefu` binary. The
//! expected numbers are the SPEC's, written out by hand.

use crate::common::*;

/// Writes `msgs`, runs `kefu run` for `day` and returns shop_daily.
fn run_example(msgs: &[Msg], platform: &str, day: &str) -> ShopRows {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("messages.parquet");
    write_messages(&input, msgs, Columns::default());
    let out = dir.path().join("out");
    run_bin(&[
        "run",
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--platform",
        platform,
        "--date",
        day,
    ]);
    read_shop_daily(&out, platform, date(day))
}

const TB: &str = "taobao.manual_response_rate_3m";

#[test]
fn taobao_example_1_two_inquiries_one_late_reply() {
    let rows = run_example(
        &[
            buyer("2026-05-10 10:10:15"),
            buyer("2026-05-10 10:15:20"),
            agent("2026-05-10 10:18:10"),
        ],
        "taobao",
        "2026-05-10",
    );
    assert_eq!(counts(&rows, "s1", TB), Some((0, 1)));
}

#[test]
fn taobao_example_2_second_round_answered_in_time() {
    let rows = run_example(
        &[
            buyer("2026-05-10 10:10:15"),
            buyer("2026-05-10 10:15:20"),
            agent("2026-05-10 10:18:10"),
            buyer("2026-05-10 10:18:30"),
            agent("2026-05-10 10:19:00"),
        ],
        "taobao",
        "2026-05-10",
    );
    assert_eq!(counts(&rows, "s1", TB), Some((1, 2)));
    let v = rows[&("s1".to_string(), TB.to_string())].2;
    assert_eq!(v, 0.5);
}

#[test]
fn taobao_example_3_ten_inquiries_no_reply() {
    let msgs: Vec<Msg> = (0..10)
        .map(|k| {
            buyer(&format!(
                "2026-05-10 10:{:02}:{:02}",
                k * 15 / 60,
                k * 15 % 60
            ))
        })
        .collect();
    let rows = run_example(&msgs, "taobao", "2026-05-10");
    assert_eq!(counts(&rows, "s1", TB), Some((0, 1)));
}

#[test]
fn taobao_example_4_reply_after_midnight_is_cross_day() {
    let rows = run_example(
        &[buyer("2026-05-10 22:50:00"), agent("2026-05-11 00:10:00")],
        "taobao",
        "2026-05-10",
    );
    assert_eq!(counts(&rows, "s1", TB), None, "0 / 0 means no row");
}

#[test]
fn taobao_example_5_reply_beyond_the_horizon_is_unreplied() {
    let rows = run_example(
        &[buyer("2026-05-10 10:00:00"), agent("2026-05-12 10:01:00")],
        "taobao",
        "2026-05-10",
    );
    assert_eq!(counts(&rows, "s1", TB), Some((0, 1)));
}

#[test]
fn taobao_example_6_round_before_midnight_out_of_hours() {
    let msgs = [
        buyer("2026-05-10 23:59:30"),
        buyer("2026-05-11 08:00:00"),
        agent("2026-05-11 08:01:00"),
    ];
    let d = run_example(&msgs, "taobao", "2026-05-10");
    assert_eq!(counts(&d, "s1", TB), None, "D has no item");
    let d1 = run_example(&msgs, "taobao", "2026-05-11");
    assert_eq!(counts(&d1, "s1", TB), Some((1, 1)));
    assert_eq!(
        d1[&("s1".to_string(), TB.to_string())].3,
        "taobao.manual_response_rate_3m@2026-03-16"
    );
}

#[test]
fn taobao_avg_manual_response_examples() {
    const AVG: &str = "taobao.avg_manual_response";
    let mut msgs = Vec::new();
    // Auto reply only, then a manual reply after 40 s → 40 s.
    let mut auto = agent("2026-05-10 10:00:10");
    auto.auto = true;
    let mut m = vec![
        buyer("2026-05-10 10:00:00"),
        auto,
        agent("2026-05-10 10:00:40"),
    ];
    m.iter_mut()
        .for_each(|x| x.shop = "auto_then_manual".into());
    msgs.extend(m);
    // Assist-mode bot reply after 5 s → 5 s.
    let mut bot = msg("bot", "2026-05-10 11:00:05");
    bot.assist = true;
    let mut m = vec![buyer("2026-05-10 11:00:00"), bot];
    m.iter_mut().for_each(|x| x.shop = "assist_bot".into());
    msgs.extend(m);
    // Manual reply after 11 minutes → capped at 600 s.
    let mut m = vec![buyer("2026-05-10 12:00:00"), agent("2026-05-10 12:11:00")];
    m.iter_mut().for_each(|x| x.shop = "late".into());
    msgs.extend(m);
    // No reply → 600 s.
    let mut m = vec![buyer("2026-05-10 13:00:00")];
    m.iter_mut().for_each(|x| x.shop = "none".into());
    msgs.extend(m);

    let rows = run_example(&msgs, "taobao", "2026-05-10");
    assert_eq!(counts(&rows, "auto_then_manual", AVG), Some((40_000, 1)));
    assert_eq!(counts(&rows, "assist_bot", AVG), Some((5_000, 1)));
    assert_eq!(counts(&rows, "late", AVG), Some((600_000, 1)));
    assert_eq!(counts(&rows, "none", AVG), Some((600_000, 1)));
    assert_eq!(
        rows[&("late".to_string(), AVG.to_string())].2,
        600.0,
        "value in seconds"
    );
}

#[test]
fn pdd_any_miss_buyer_and_80_buyers() {
    const PDD: &str = "pdd.manual_reply_rate_3m";
    // One buyer: inquiries answered after 20 s, 50 s and 200 s → fails.
    let one = vec![
        buyer("2024-05-16 10:00:00"),
        agent("2024-05-16 10:00:20"),
        buyer("2024-05-16 10:05:00"),
        agent("2024-05-16 10:05:50"),
        buyer("2024-05-16 10:10:00"),
        agent("2024-05-16 10:13:20"),
    ];
    let rows = run_example(&one, "pdd", "2024-05-16");
    assert_eq!(counts(&rows, "s1", PDD), Some((0, 1)));

    // 80 buyers, 60 never missed → 60 / 80 = 0.75.
    let mut msgs = Vec::new();
    for b in 0..80 {
        let late = b >= 60;
        let mut thread = vec![
            buyer("2024-05-16 09:00:00"),
            agent("2024-05-16 09:01:00"),
            buyer("2024-05-16 15:00:00"),
            agent(if late {
                "2024-05-16 15:03:01"
            } else {
                "2024-05-16 15:03:00"
            }),
        ];
        thread
            .iter_mut()
            .for_each(|m| m.buyer = format!("buyer{b:02}"));
        msgs.extend(thread);
    }
    let rows = run_example(&msgs, "pdd", "2024-05-16");
    assert_eq!(counts(&rows, "s1", PDD), Some((60, 80)));
    assert_eq!(rows[&("s1".to_string(), PDD.to_string())].2, 0.75);
}

#[test]
fn jd_session_started_before_hours_is_not_counted() {
    let rows = run_example(
        &[buyer("2024-05-16 08:56:00"), agent("2024-05-16 09:01:00")],
        "jd",
        "2024-05-16",
    );
    assert_eq!(counts(&rows, "s1", "jd.first_response_rate_30s"), None);
    // The partition is still written, with zero rows.
    assert!(rows.is_empty());
}
