//! What a new user trips over (issue 21), through the binary: `--no-items`
//! after a day with items, an `--output` under `dt=` folders, the noise of a
//! first rolling run and of a `dt=`-partitioned input, and rules with no
//! version in force on the run's days.
//!
//! `KEFU_TRIPS_BIN=/path/to/kefu` runs these tests against another binary
//! (e.g. an older build, on which they fail).

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::common::*;

/// The binary under test.
fn bin() -> PathBuf {
    std::env::var_os("KEFU_TRIPS_BIN").map_or_else(kefu_bin, PathBuf::from)
}

/// Runs the binary; panics with its stderr on failure.
fn kefu(args: &[&str]) -> Output {
    let out = std::process::Command::new(bin())
        .args(args)
        .output()
        .expect("kefu runs");
    assert!(
        out.status.success(),
        "kefu {:?} failed ({:?}):\n{}",
        args,
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `kefu run` of `input` into `out` for `platform`, plus `extra`.
fn run(input: &Path, out: &Path, platform: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "run",
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--platform",
        platform,
    ];
    args.extend_from_slice(extra);
    stderr(&kefu(&args))
}

/// A buyer's inquiry answered ten seconds later, at `time` on `day`.
fn answered(day: &str, time: &str, buyer_id: &str) -> Vec<Msg> {
    let mut b = buyer(&format!("{day} {time}:00"));
    let mut a = agent(&format!("{day} {time}:10"));
    b.buyer = buyer_id.into();
    a.buyer = buyer_id.into();
    vec![b, a]
}

fn gen(path: &Path, start: &str) {
    kefu(&[
        "gen",
        "--output",
        path.to_str().unwrap(),
        "--rows",
        "4000",
        "--days",
        "2",
        "--shops",
        "8",
        "--start",
        start,
        "--seed",
        "21",
    ]);
}

fn partition(out: &Path, table: &str, platform: &str, day: &str) -> PathBuf {
    out.join(format!("{table}/platform={platform}/dt={day}"))
}

fn manifest(dir: &Path, file: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.join(file).display()));
    serde_json::from_str(&text).unwrap()
}

#[test]
fn no_items_after_a_day_with_items_removes_the_days_items() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("m.parquet");
    gen(&input, "2024-05-16");
    let out = dir.path().join("out");
    run(&input, &out, "pdd", &["--date", "2024-05-16"]);
    let items = partition(&out, "items", "pdd", "2024-05-16");
    assert!(items.join("part-0.parquet").exists());

    run(&input, &out, "pdd", &["--date", "2024-05-16", "--no-items"]);
    assert!(
        !items.join("part-0.parquet").exists(),
        "--no-items left the day's old items in place"
    );
    let m = manifest(&items, "_manifest.json");
    assert_eq!(m["omitted"], "--no-items", "{m}");
    assert_eq!(m["rows"], 0, "{m}");
    assert_eq!(m["table"], "items", "{m}");
    // The other tables are written as ever.
    assert!(partition(&out, "shop_daily", "pdd", "2024-05-16")
        .join("part-0.parquet")
        .exists());
}

#[test]
fn no_items_on_a_shard_removes_only_the_shards_items() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("m.parquet");
    gen(&input, "2024-05-16");
    let out = dir.path().join("out");
    for shard in ["0/2", "1/2"] {
        run(
            &input,
            &out,
            "pdd",
            &["--date", "2024-05-16", "--shard", shard],
        );
    }
    run(
        &input,
        &out,
        "pdd",
        &["--date", "2024-05-16", "--shard", "0/2", "--no-items"],
    );
    let items = partition(&out, "items", "pdd", "2024-05-16");
    assert!(!items.join("part-0-of-2.parquet").exists());
    assert_eq!(
        manifest(&items, "_manifest-0-of-2.json")["omitted"],
        "--no-items"
    );
    // The other shard's items are its own.
    assert!(items.join("part-1-of-2.parquet").exists());
    assert!(manifest(&items, "_manifest-1-of-2.json")
        .get("omitted")
        .is_none());
}

#[test]
fn an_output_under_hive_folders_reads_its_own_partitions_back() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("m.parquet");
    gen(&input, "2024-05-16");
    let plain = dir.path().join("plain");
    let lake = dir.path().join("lake/dt=2024-05-16/platform=x/kefu");
    // taobao has 30-day windows: the rolling table reads shop_daily back.
    let days = ["--date", "2024-05-16", "--to", "2024-05-17"];
    run(&input, &plain, "taobao", &days);
    run(&input, &lake, "taobao", &days);
    for table in ["shop_daily", "shop_rolling"] {
        for day in ["2024-05-16", "2024-05-17"] {
            let file = |out: &Path| partition(out, table, "taobao", day).join("part-0.parquet");
            assert_eq!(
                std::fs::read(file(&plain)).unwrap(),
                std::fs::read(file(&lake)).unwrap(),
                "{table} {day}"
            );
        }
    }
}

#[test]
fn a_first_rolling_run_sums_up_its_empty_window_days_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("m.parquet");
    write_messages(
        &input,
        &answered("2024-05-16", "10:00", "b1"),
        Columns::default(),
    );
    let out = dir.path().join("out");
    let log = run(
        &input,
        &out,
        "taobao",
        &["--date", "2024-05-16", "--to", "2024-05-17"],
    );
    assert!(
        log.contains(
            "no messages on 29 window day(s) from 2024-04-17 to 2024-05-15 (committed empty)"
        ),
        "{log}"
    );
    assert_eq!(log.matches("window day").count(), 1, "{log}");
    // A day of --date..--to without messages still warns on its own line.
    assert!(
        log.contains("no messages on 2024-05-17: writing empty partitions"),
        "{log}"
    );
    // 15 lines of days and the window summary, and the note that
    // taobao.wangwang_satisfaction is skipped without --ratings.
    assert!(
        log.lines().count() <= 16,
        "{} lines:\n{log}",
        log.lines().count()
    );
    // Every window day is committed, empty.
    assert!(read_shop_daily(&out, "taobao", date("2024-04-17")).is_empty());
}

#[test]
fn a_dt_partitioned_input_commits_empty_window_days_once() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    for day in ["2024-05-16", "2024-05-17", "2024-05-18"] {
        write_messages(
            &input.join(format!("dt={day}/a.parquet")),
            &answered(day, "10:00", "b1"),
            Columns::default(),
        );
    }
    let out = dir.path().join("out");
    let first = run(&input, &out, "taobao", &["--date", "2024-05-16"]);
    assert!(
        first.contains(
            "no messages on 29 window day(s) from 2024-04-17 to 2024-05-15 (committed empty)"
        ),
        "{first}"
    );
    // The window days without a dt= folder are committed, as they are for a
    // single-file input ...
    let m = manifest(
        &partition(&out, "shop_daily", "taobao", "2024-04-17"),
        "_manifest.json",
    );
    assert_eq!(m["rows"], 0, "{m}");
    // ... so the next night computes its own day only, without warnings.
    let second = run(&input, &out, "taobao", &["--date", "2024-05-17"]);
    assert!(!second.contains("window"), "{second}");
    assert!(!second.contains("warning"), "{second}");
    assert_eq!(
        counts(
            &read_shop_daily(&out, "taobao", date("2024-05-17")),
            "s1",
            "taobao.manual_response_rate_3m"
        ),
        Some((1, 1))
    );
}

#[test]
fn rules_with_no_version_in_force_say_so_once_per_platform() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("m.parquet");
    let mut msgs = answered("2020-01-01", "10:00", "b1");
    msgs.extend(answered("2020-01-02", "10:00", "b1"));
    write_messages(&input, &msgs, Columns::default());
    let out = dir.path().join("out");
    let days = ["--date", "2020-01-01", "--to", "2020-01-03"];

    // taobao's presets start in 2022; pdd's legacy metrics cover 2020.
    let log = run(&input, &out, "taobao,pdd", &days);
    let want = "taobao: no metric version of the rules is in force on 2020-01-01..2020-01-03: \
                nothing to compute (see --rules-as-of to use the versions of another date)";
    assert_eq!(log.matches(want).count(), 1, "{log}");
    assert!(!log.contains("pdd: no metric version"), "{log}");

    // A rule file whose every version starts later.
    let rules = dir.path().join("late.toml");
    std::fs::write(
        &rules,
        "[[metric]]\nid = \"x.rate\"\nunit = \"message\"\nkind = \"rate\"\nthreshold = 900\n\
         hours = \"00:00-24:00\"\nresponders = [\"manual\"]\neffective_from = 2021-01-01\n",
    )
    .unwrap();
    let rules = rules.to_str().unwrap();
    let mut args = days.to_vec();
    args.extend(["--rules", rules]);
    let log = run(&input, &out, "x", &args);
    assert_eq!(
        log.matches("x: no metric version of the rules is in force on 2020-01-01..2020-01-03")
            .count(),
        1,
        "{log}"
    );
    // With --rules-as-of, the date it names.
    args.extend(["--rules-as-of", "2020-06-01"]);
    let log = run(&input, &out, "x", &args);
    assert!(
        log.contains("x: no metric version of the rules is in force on 2020-06-01 (--rules-as-of)"),
        "{log}"
    );
    // Versions in force: no such line.
    let log = run(
        &input,
        &out,
        "x",
        &["--date", "2021-01-01", "--rules", rules],
    );
    assert!(!log.contains("no metric version"), "{log}");
}
