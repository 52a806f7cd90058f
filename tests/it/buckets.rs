//! Shop buckets and spilling (`--memory-budget`), and several platforms in
//! one run: whatever the budget, and whether platforms run alone or
//! together, every table's partitions hold exactly the same rows in the
//! same order.

use std::collections::BTreeMap;
use std::path::Path;

use crate::common::*;

/// Every row of every data file, per (table, platform, day), in file order.
fn rows_by_partition(out: &Path, platform: &str) -> BTreeMap<String, Vec<String>> {
    let mut tables = BTreeMap::new();
    for table in [
        "shop_daily",
        "shop_rolling",
        "agent_daily",
        "items",
        "alerts",
    ] {
        let platform_dir = out.join(table).join(format!("platform={platform}"));
        for day in std::fs::read_dir(&platform_dir).unwrap() {
            let day = day.unwrap().path();
            let key = format!("{table}/{}", day.file_name().unwrap().to_str().unwrap());
            let df = read_parquet(&day.join("part-0.parquet"));
            let rows: Vec<String> = (0..df.height())
                .map(|i| {
                    let row = df.get(i).unwrap();
                    row.iter()
                        .map(|v| format!("{v}"))
                        .collect::<Vec<_>>()
                        .join("|")
                })
                .collect();
            tables.insert(key, rows);
        }
    }
    tables
}

/// Runs the binary, whatever its exit status.
fn kefu(args: &[&str]) -> std::process::Output {
    std::process::Command::new(kefu_bin())
        .args(args)
        .output()
        .unwrap()
}

/// The same rows in the same order; else the first difference.
fn assert_same(got: &[String], expected: &[String], what: &str) {
    assert_eq!(got.len(), expected.len(), "{what}: row counts differ");
    if let Some(i) = (0..got.len()).find(|&i| got[i] != expected[i]) {
        panic!(
            "{what}: row {i} differs:\n got      {}\n expected {}",
            got[i], expected[i]
        );
    }
}

fn gen(input: &Path, seed: &str) {
    let out = run_bin(&[
        "gen",
        "--output",
        input.to_str().unwrap(),
        "--rows",
        "30000",
        "--days",
        "3",
        "--shops",
        "40",
        "--start",
        "2024-05-16",
        "--seed",
        seed,
        "--row-group-size",
        "4000",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `platform` on 2024-05-16 to 2024-05-18 within `budget`; its log.
fn run(input: &Path, out: &Path, platform: &str, budget: &str) -> String {
    run_days(input, out, platform, budget, ("2024-05-16", "2024-05-18"))
}

fn run_days(
    input: &Path,
    out: &Path,
    platform: &str,
    budget: &str,
    (from, to): (&str, &str),
) -> String {
    let o = run_bin(&[
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
        "--memory-budget",
        budget,
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(o.status.success(), "{stderr}");
    stderr
}

/// Every partition of `out` for `platform` is sorted by its key columns as
/// strings (SPEC §5: shop_id, agent_id, metric, then the rest; for items,
/// buyer_id and start), whatever order kefu computed the keys in.
fn assert_sorted_by_keys(out: &Path, platform: &str) {
    use polars::prelude::*;
    for (table, keys) in [
        ("shop_daily", &["shop_id", "metric"][..]),
        ("shop_rolling", &["shop_id", "metric"][..]),
        ("agent_daily", &["shop_id", "agent_id", "metric"][..]),
        ("alerts", &["shop_id", "metric"][..]),
        ("items", &["shop_id", "agent_id", "metric", "buyer_id"][..]),
    ] {
        let dir = out.join(table).join(format!("platform={platform}"));
        for day in std::fs::read_dir(&dir).unwrap() {
            let file = day.unwrap().path().join("part-0.parquet");
            let df = read_parquet(&file);
            let strings: Vec<Vec<Option<String>>> = keys
                .iter()
                .map(|k| {
                    let c = df.column(k).unwrap().str().unwrap();
                    c.iter().map(|v| v.map(str::to_string)).collect()
                })
                .collect();
            let start: Vec<Option<i64>> = match table {
                "items" => {
                    let c = df.column("start").unwrap().cast(&DataType::Int64).unwrap();
                    c.i64().unwrap().iter().collect()
                }
                _ => vec![None; df.height()],
            };
            let key = |i: usize| (strings.iter().map(|c| &c[i]).collect::<Vec<_>>(), start[i]);
            for i in 1..df.height() {
                assert!(
                    key(i - 1) <= key(i),
                    "{}: rows {} and {i} out of order: {:?} then {:?}",
                    file.display(),
                    i - 1,
                    key(i - 1),
                    key(i)
                );
            }
        }
    }
}

#[test]
fn any_budget_writes_the_same_rows_in_the_same_order() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("m.parquet");
    gen(&input, "5");
    for platform in ["pdd", "taobao", "jd"] {
        let whole = dir.path().join(format!("whole-{platform}"));
        run(&input, &whole, platform, "0");
        let expected = rows_by_partition(&whole, platform);
        assert!(expected["items/dt=2024-05-17"].len() > 1000);
        // 64 KiB: buckets of ~1,000 rows (dozens of them) and spilling after
        // every read, past the page cache where the file system allows
        // (the day's 1.2 MB of encoded rows are far past the budget); 4 MiB:
        // a few buckets, a few spills, through the page cache.
        for budget in ["64KiB", "4MiB"] {
            let out = dir.path().join(format!("{platform}-{budget}"));
            let log = run(&input, &out, platform, budget);
            assert!(log.contains(" MB spilled"), "{log}");
            if budget == "4MiB" {
                assert!(!log.contains("direct I/O"), "{log}");
            }
            let got = rows_by_partition(&out, platform);
            assert_eq!(
                got.keys().collect::<Vec<_>>(),
                expected.keys().collect::<Vec<_>>()
            );
            for (k, rows) in &expected {
                assert_same(&got[k], rows, &format!("{platform} {budget}: {k}"));
            }
            // Spill folders are removed when the day is done.
            let left: Vec<_> = std::fs::read_dir(&out)
                .unwrap()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(".kefu-spill"))
                .collect();
            assert!(left.is_empty(), "spill folders left: {left:?}");
        }
    }
}

#[test]
fn all_platforms_in_one_run_write_what_single_runs_write() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("m.parquet");
    gen(&input, "6");
    let together = dir.path().join("together");
    let log = run(&input, &together, "all", "256KiB");
    assert!(log.contains("taobao 2024-05-16:"), "{log}");
    for platform in ["pdd", "taobao", "douyin", "jd", "kuaishou", "xiaohongshu"] {
        assert_sorted_by_keys(&together, platform);
        let alone = dir.path().join(format!("alone-{platform}"));
        run(&input, &alone, platform, "0");
        let expected = rows_by_partition(&alone, platform);
        let got = rows_by_partition(&together, platform);
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            expected.keys().collect::<Vec<_>>()
        );
        for (k, rows) in &expected {
            assert_same(
                &got[k],
                rows,
                &format!("{platform} with all platforms: {k}"),
            );
        }
    }
}

#[test]
fn platform_lists_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("m.parquet");
    gen(&input, "7");
    let out = dir.path().join("o");
    // (platform, extra flags, text of the error, exit code when it is fixed)
    for (platform, extra, needle, code) in [
        ("pdd,pdd", None, "twice", Some(2)),
        ("pdd,nosuch", None, "nosuch", None),
        ("pdd,", None, "must be 1-64 characters", Some(2)),
        ("pdd", Some("12 parsecs"), "unknown unit", Some(2)),
    ] {
        let mut args = vec![
            "run",
            "--input",
            input.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--platform",
            platform,
            "--date",
            "2024-05-16",
        ];
        if let Some(budget) = extra {
            args.extend(["--memory-budget", budget]);
        }
        let o = kefu(&args);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{platform}: {stderr}");
        if code.is_some() {
            assert_eq!(o.status.code(), code, "{platform}: {stderr}");
        }
        assert!(stderr.contains(needle), "{platform}: {stderr}");
    }
}

/// Whether a spill bypasses the page cache depends on the rows of the days
/// read, not on how many other days the files hold: a month-long file whose
/// day spills less than the budget stays buffered.
#[test]
fn a_day_spilling_less_than_the_budget_stays_buffered_in_a_month_long_file() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("month.parquet");
    let out = run_bin(&[
        "gen",
        "--output",
        input.to_str().unwrap(),
        "--rows",
        "60000",
        "--days",
        "30",
        "--shops",
        "40",
        "--start",
        "2024-05-01",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let day = |budget: &str| {
        let out = dir.path().join(budget);
        run_days(&input, &out, "pdd", budget, ("2024-05-16", "2024-05-16"))
    };
    // The day and its next day: about 4,000 rows, some 250 KB encoded.
    let log = day("512KiB");
    assert!(log.contains(" MB spilled)"), "{log}");
    assert!(!log.contains("direct I/O"), "{log}");
}
