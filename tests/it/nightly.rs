//! Nightly operation: rolling windows built from the daily partitions,
//! provisional days finalised by the next night's run, alerts, manifests,
//! determinism, and partitions that survive a killed run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

fn kefu_ok(args: &[&str]) -> String {
    let o = run_bin(args);
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn gen(path: &Path, rows: &str, days: &str, start: &str, seed: &str) {
    kefu_ok(&[
        "gen",
        "--output",
        path.to_str().unwrap(),
        "--rows",
        rows,
        "--days",
        days,
        "--shops",
        "15",
        "--start",
        start,
        "--seed",
        seed,
    ]);
}

fn run(input: &Path, out: &Path, platform: &str, from: &str, to: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "run",
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--platform",
        platform,
        "--date",
        from,
        "--to",
        to,
    ];
    args.extend_from_slice(extra);
    kefu_ok(&args)
}

type Rolling = BTreeMap<(String, String), (i64, i64, f64, String, i32)>;

fn read_rolling(out: &Path, platform: &str, day: &str) -> Rolling {
    let df = read_parquet(&out.join(format!(
        "shop_rolling/platform={platform}/dt={day}/part-0.parquet"
    )));
    let s = |n: &str| df.column(n).unwrap().str().unwrap().clone();
    let i = |n: &str| df.column(n).unwrap().i64().unwrap().clone();
    let (shop, metric, ver) = (s("shop_id"), s("metric"), s("rule_version"));
    let (num, den) = (i("numerator"), i("denominator"));
    let val = df.column("value").unwrap().f64().unwrap().clone();
    let win = df.column("window_days").unwrap().i32().unwrap().clone();
    (0..df.height())
        .map(|k| {
            (
                (
                    shop.get(k).unwrap().to_string(),
                    metric.get(k).unwrap().to_string(),
                ),
                (
                    num.get(k).unwrap(),
                    den.get(k).unwrap(),
                    val.get(k).unwrap(),
                    ver.get(k).unwrap().to_string(),
                    win.get(k).unwrap(),
                ),
            )
        })
        .collect()
}

/// The rolling rows recomputed by hand from the committed daily partitions.
fn rolling_from_daily(
    out: &Path,
    platform: &str,
    day: &str,
    windows: &[(&str, i64)],
) -> BTreeMap<(String, String), (i64, i64)> {
    let mut sums: BTreeMap<(String, String), (i64, i64)> = BTreeMap::new();
    for (metric, n) in windows {
        for back in 0..*n {
            let d = date(day) - chrono::Duration::days(back);
            let p = out.join(format!(
                "shop_daily/platform={platform}/dt={d}/part-0.parquet"
            ));
            if !p.exists() {
                continue;
            }
            for ((shop, m), (num, den, _, _)) in read_shop_daily(out, platform, d) {
                if m == *metric {
                    let e = sums.entry((shop, m)).or_default();
                    e.0 += num;
                    e.1 += den;
                }
            }
        }
    }
    sums
}

#[test]
fn rolling_is_the_sum_of_daily_partitions_and_incremental() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in/messages.parquet");
    gen(&input, "30000", "10", "2024-05-10", "3");
    let out = dir.path().join("out");
    // Back-fill ten days of Taobao (30-day windows) and Xiaohongshu (7-day).
    run(
        &input,
        &out,
        "taobao",
        "2024-05-10",
        "2024-05-19",
        &["--rules-as-of", "2026-06-01"],
    );
    run(&input, &out, "xiaohongshu", "2024-05-10", "2024-05-19", &[]);
    for day in ["2024-05-10", "2024-05-13", "2024-05-19"] {
        for (platform, windows) in [
            (
                "taobao",
                vec![
                    ("taobao.manual_response_rate_3m", 30),
                    ("taobao.avg_manual_response", 30),
                ],
            ),
            ("xiaohongshu", vec![("xiaohongshu.manual_reply_rate_3m", 7)]),
        ] {
            let got = read_rolling(&out, platform, day);
            let want = rolling_from_daily(&out, platform, day, &windows);
            let got_counts: BTreeMap<_, _> =
                got.iter().map(|(k, v)| (k.clone(), (v.0, v.1))).collect();
            assert_eq!(got_counts, want, "{platform} {day}");
            assert!(!got.is_empty(), "{platform} {day}: no rolling rows");
            for ((_, m), (num, den, value, ver, win)) in &got {
                let w = windows.iter().find(|x| x.0 == m).unwrap().1;
                assert_eq!(*win as i64, w);
                assert!(ver.starts_with(m.as_str()));
                let expect = if m.contains("avg") {
                    *num as f64 / *den as f64 / 1000.0
                } else {
                    *num as f64 / *den as f64
                };
                assert_eq!(*value, expect);
            }
        }
    }

    // Incremental: the next night reads one new day of messages. Give it an
    // input holding only 2024-05-20 and 05-21; the window still sums the ten
    // committed days before it.
    let next_input = dir.path().join("next/messages.parquet");
    gen(&next_input, "6000", "2", "2024-05-20", "4");
    let before = read_rolling(&out, "xiaohongshu", "2024-05-19");
    run(
        &next_input,
        &out,
        "xiaohongshu",
        "2024-05-20",
        "2024-05-20",
        &[],
    );
    let got = read_rolling(&out, "xiaohongshu", "2024-05-20");
    let want = rolling_from_daily(
        &out,
        "xiaohongshu",
        "2024-05-20",
        &[("xiaohongshu.manual_reply_rate_3m", 7)],
    );
    let got_counts: BTreeMap<_, _> = got.iter().map(|(k, v)| (k.clone(), (v.0, v.1))).collect();
    assert_eq!(got_counts, want);
    // The older days really came from their partitions: the window's total
    // exceeds what 05-20 alone holds.
    let d20: i64 = read_shop_daily(&out, "xiaohongshu", date("2024-05-20"))
        .values()
        .map(|v| v.1)
        .sum();
    let total: i64 = got.values().map(|v| v.1).sum();
    assert!(
        total > d20 && !before.is_empty(),
        "window {total} vs day {d20}"
    );
}

#[test]
fn provisional_day_is_finalised_by_the_next_run() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let input_dir = dir.path().join("in");
    // Day D: an inquiry at 23:50 (outside PDD hours → use the message rate
    // with a custom all-day rule) answered at 00:01 on D+1.
    let rules = dir.path().join("r.toml");
    std::fs::write(
        &rules,
        "[[metric]]\nid = \"t.rate\"\nunit = \"message\"\nkind = \"rate\"\nthreshold = 900\nhours = \"00:00-24:00\"\nresponders = [\"manual\"]\n",
    )
    .unwrap();
    write_messages(
        &input_dir.join("dt=2024-05-16/a.parquet"),
        &[buyer("2024-05-16 23:50:00")],
        Columns::default(),
    );
    let log = run(
        &input_dir,
        &out,
        "x",
        "2024-05-16",
        "2024-05-16",
        &["--rules", rules.to_str().unwrap()],
    );
    assert!(log.contains("provisional"), "{log}");
    assert_eq!(
        counts(
            &read_shop_daily(&out, "x", date("2024-05-16")),
            "s1",
            "t.rate"
        ),
        Some((0, 1))
    );
    let manifest =
        std::fs::read_to_string(out.join("shop_daily/platform=x/dt=2024-05-16/_manifest.json"))
            .unwrap();
    assert!(manifest.contains("\"provisional\": true"), "{manifest}");

    // The next day lands, with the late reply; the nightly run for D+1
    // recomputes D first.
    write_messages(
        &input_dir.join("dt=2024-05-17/a.parquet"),
        &[agent("2024-05-17 00:01:00")],
        Columns::default(),
    );
    let log = run(
        &input_dir,
        &out,
        "x",
        "2024-05-17",
        "2024-05-17",
        &["--rules", rules.to_str().unwrap()],
    );
    assert!(log.contains("2024-05-16 was provisional"), "{log}");
    assert_eq!(
        counts(
            &read_shop_daily(&out, "x", date("2024-05-16")),
            "s1",
            "t.rate"
        ),
        Some((1, 1))
    );
    let manifest =
        std::fs::read_to_string(out.join("shop_daily/platform=x/dt=2024-05-16/_manifest.json"))
            .unwrap();
    assert!(manifest.contains("\"provisional\": false"), "{manifest}");
}

#[test]
fn alerts_follow_target_and_min_denominator() {
    // PDD: 3 buyers, 1 answered in time → 1/3 < 50% → alert; the 2022
    // effective reply rate with 3 < 100 buyers → no alert.
    let mut msgs = Vec::new();
    for (b, reply) in [("b1", "10:01:00"), ("b2", "10:05:00"), ("b3", "11:00:00")] {
        let mut q = buyer("2023-05-16 10:00:00");
        q.buyer = b.into();
        let mut a = agent(&format!("2023-05-16 {reply}"));
        a.buyer = b.into();
        msgs.extend([q, a]);
    }
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("m.parquet");
    write_messages(&input, &msgs, Columns::default());
    let out = dir.path().join("out");
    run(&input, &out, "pdd", "2023-05-16", "2023-05-16", &[]);
    let df = read_parquet(&out.join("alerts/platform=pdd/dt=2023-05-16/part-0.parquet"));
    assert_eq!(df.height(), 1, "{df}");
    let s = |n: &str| {
        df.column(n)
            .unwrap()
            .str()
            .unwrap()
            .get(0)
            .unwrap()
            .to_string()
    };
    assert_eq!(s("metric"), "pdd.manual_reply_rate_3m");
    assert_eq!(s("rule_version"), "pdd.manual_reply_rate_3m@2023-04-27");
    assert_eq!(s("message"), "below 50%: warning on the merchant back-end");
    assert_eq!(
        df.column("target").unwrap().f64().unwrap().get(0),
        Some(0.5)
    );
    assert_eq!(
        df.column("denominator").unwrap().i64().unwrap().get(0),
        Some(3)
    );

    // 2023-04-20 (legacy rules): the effective rate alert needs >= 100 buyers.
    let shifted: Vec<Msg> = msgs
        .iter()
        .map(|m| {
            let mut m = m.clone();
            m.ts_ms -= 26 * 86_400_000;
            m
        })
        .collect();
    write_messages(&input, &shifted, Columns::default());
    run(&input, &out, "pdd", "2023-04-20", "2023-04-20", &[]);
    let df = read_parquet(&out.join("alerts/platform=pdd/dt=2023-04-20/part-0.parquet"));
    assert_eq!(df.height(), 0, "{df}");
}

fn tree(out: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    fn walk(base: &Path, d: &Path, files: &mut Vec<(PathBuf, Vec<u8>)>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(base, &p, files);
            } else if p.file_name().unwrap() != ".kefu.lock" {
                files.push((
                    p.strip_prefix(base).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                ));
            }
        }
    }
    walk(out, out, &mut files);
    files.sort();
    files
}

#[test]
fn same_input_same_rules_give_byte_identical_output() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("m.parquet");
    gen(&input, "20000", "3", "2024-05-16", "9");
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    run(
        &input,
        &a,
        "douyin",
        "2024-05-16",
        "2024-05-18",
        &["--threads", "1"],
    );
    run(
        &input,
        &b,
        "douyin",
        "2024-05-16",
        "2024-05-18",
        &["--threads", "2"],
    );
    let (ta, tb) = (tree(&a), tree(&b));
    assert_eq!(ta.len(), tb.len());
    assert!(ta.len() >= 5 * 3 * 2, "{} files", ta.len());
    for ((pa, ca), (pb, cb)) in ta.iter().zip(&tb) {
        assert_eq!(pa, pb);
        assert!(ca == cb, "{} differs", pa.display());
    }
}

#[test]
fn killed_run_leaves_whole_partitions_and_a_rerun_equals_a_clean_run() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("m.parquet");
    gen(&input, "200000", "20", "2024-05-01", "5");
    let clean = dir.path().join("clean");
    run(
        &input,
        &clean,
        "taobao",
        "2024-05-01",
        "2024-05-20",
        &["--rules-as-of", "2026-06-01"],
    );

    let killed = dir.path().join("killed");
    let args = |out: &Path| -> Vec<String> {
        [
            "run",
            "--input",
            input.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--platform",
            "taobao",
            "--date",
            "2024-05-01",
            "--to",
            "2024-05-20",
            "--rules-as-of",
            "2026-06-01",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    // Kill at several points of the run; after each kill every committed
    // partition must be whole (readable, with its manifest).
    for delay_ms in [40u64, 150, 400] {
        let mut child = Command::new(kefu_bin())
            .args(args(&killed))
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        if killed.exists() {
            for (p, _) in tree(&killed) {
                let name = p.file_name().unwrap().to_str().unwrap();
                if name == "part-0.parquet" {
                    let _ = read_parquet(&killed.join(&p)); // panics if torn
                } else {
                    assert!(
                        name == "_manifest.json" || name.starts_with('.'),
                        "unexpected {}",
                        p.display()
                    );
                }
            }
        }
    }
    // A re-run completes and writes what a clean run writes.
    let rerun = Command::new(kefu_bin())
        .args(args(&killed))
        .output()
        .unwrap();
    assert!(
        rerun.status.success(),
        "{}",
        String::from_utf8_lossy(&rerun.stderr)
    );
    let leftovers: Vec<_> = tree(&killed)
        .into_iter()
        .filter(|(p, _)| p.file_name().unwrap().to_str().unwrap().starts_with('.'))
        .collect();
    assert!(
        leftovers.is_empty(),
        "staging files left: {:?}",
        leftovers.iter().map(|x| &x.0).collect::<Vec<_>>()
    );
    let visible = |t: Vec<(PathBuf, Vec<u8>)>| -> Vec<(PathBuf, Vec<u8>)> {
        t.into_iter()
            .filter(|(p, _)| !p.file_name().unwrap().to_str().unwrap().starts_with('.'))
            .collect()
    };
    let (a, b) = (visible(tree(&clean)), visible(tree(&killed)));
    // A kill between a window day's data file and its manifest leaves that
    // day incomplete; when it is the day before --date, the re-run
    // recomputes it as a provisional day (README: "a partition without a
    // manifest is one a killed run was rewriting"), whose own window reaches
    // one day further back (and gets its own rolling and alerts). Those
    // extra partitions, of days before --date, are the only difference
    // allowed; every partition the clean run wrote must be there and equal.
    let dt =
        |p: &Path| -> String { p.to_str().unwrap().split("dt=").nth(1).unwrap()[..10].to_string() };
    let b: Vec<_> = b
        .into_iter()
        .filter(|(p, _)| {
            let keep = a.iter().any(|x| &x.0 == p);
            assert!(
                keep || dt(p).as_str() < "2024-05-01",
                "the re-run wrote {} that a clean run does not",
                p.display()
            );
            keep
        })
        .collect();
    assert_eq!(
        a.iter().map(|x| &x.0).collect::<Vec<_>>(),
        b.iter().map(|x| &x.0).collect::<Vec<_>>()
    );
    for ((p, ca), (_, cb)) in a.iter().zip(&b) {
        if p.file_name().unwrap() == "part-0.parquet" {
            assert!(
                read_parquet(&clean.join(p)).equals_missing(&read_parquet(&killed.join(p))),
                "{}",
                p.display()
            );
        } else {
            assert!(ca == cb, "{} differs", p.display());
        }
    }
}

/// A partition whose data file is there without its manifest is one a
/// killed run was rewriting: a later run recomputes it, both as a window day
/// of a rolling metric and as the day before the run (a provisional day),
/// instead of trusting its rows.
#[test]
fn a_partition_without_its_manifest_is_recomputed() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("m.parquet");
    gen(&input, "6000", "4", "2024-05-13", "4");
    let (clean, torn) = (dir.path().join("clean"), dir.path().join("torn"));
    for out in [&clean, &torn] {
        run(&input, out, "taobao", "2024-05-16", "2024-05-16", &[]);
    }
    let part = |out: &Path, day: &str, file: &str| {
        out.join(format!("shop_daily/platform=taobao/dt={day}/{file}"))
    };
    // 05-14 is a window day of 05-16; 05-15 is the day before the run.
    // Each is left as a killed rewrite would leave it: another day's rows,
    // no manifest.
    for day in ["2024-05-14", "2024-05-15"] {
        std::fs::copy(
            part(&torn, "2024-05-16", "part-0.parquet"),
            part(&torn, day, "part-0.parquet"),
        )
        .unwrap();
        std::fs::remove_file(part(&torn, day, "_manifest.json")).unwrap();
    }
    run(&input, &torn, "taobao", "2024-05-16", "2024-05-16", &[]);
    for day in ["2024-05-14", "2024-05-15"] {
        assert!(part(&torn, day, "_manifest.json").exists(), "{day}");
        assert_eq!(
            read_shop_daily(&torn, "taobao", date(day)),
            read_shop_daily(&clean, "taobao", date(day)),
            "{day}"
        );
    }
    assert_eq!(
        read_rolling(&torn, "taobao", "2024-05-16"),
        read_rolling(&clean, "taobao", "2024-05-16")
    );
}

/// A window day without messages is first probed and then only counted:
/// its manifest counts the same rows, bad rows and next-day rows as when
/// the same day is computed as the run's own day.
#[test]
fn an_empty_window_day_counts_what_its_own_run_counts() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("m.parquet");
    let mut msgs = Vec::new();
    for k in 0..20 {
        let mut b = buyer(&format!("2024-05-16 10:{k:02}:00"));
        b.buyer = format!("b{k}");
        b.msg_id = Some(format!("m{k}"));
        msgs.push(b.clone());
        if k % 5 == 0 {
            msgs.push(b); // a duplicate
        }
        let mut a = agent(&format!("2024-05-16 10:{k:02}:30"));
        a.buyer = format!("b{k}");
        msgs.push(a);
    }
    for k in 0..3 {
        let mut bad = buyer(&format!("2024-05-16 11:0{k}:00"));
        bad.sender = "robot".into();
        msgs.push(bad);
    }
    write_messages(&input, &msgs, Columns::default());
    let rules = dir.path().join("lenient.toml");
    std::fs::write(&rules, "max_bad_row_share = 0.5\n").unwrap();
    let rules = rules.to_str().unwrap();
    let (window, own) = (dir.path().join("window"), dir.path().join("own"));
    // 05-15 as a window day of 05-16 (taobao's 30-day window), and as the
    // run's own day.
    let log = run(
        &input,
        &window,
        "taobao",
        "2024-05-16",
        "2024-05-16",
        &["--rules", rules],
    );
    assert!(log.contains("the window needs 2024-05-15"), "{log}");
    run(
        &input,
        &own,
        "taobao",
        "2024-05-15",
        "2024-05-15",
        &["--rules", rules],
    );
    let manifest = |out: &Path| -> serde_json::Value {
        let p = out.join("shop_daily/platform=taobao/dt=2024-05-15/_manifest.json");
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    };
    let (w, o) = (manifest(&window), manifest(&own));
    for key in [
        "rows_read",
        "bad_rows",
        "duplicates",
        "rows_on_day",
        "rows_on_next_day",
        "provisional",
        "input_files",
    ] {
        assert_eq!(w[key], o[key], "{key}: window {w} own {o}");
    }
    assert_eq!(w["bad_rows"], 3);
    assert_eq!(w["rows_on_day"], 0);
    // 20 inquiries, their 4 copies and 20 replies; the bad rows are not rows.
    assert_eq!(w["rows_on_next_day"], 44);
}
