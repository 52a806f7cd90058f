//! Real customer-support conversations (public Twitter support threads, in
//! `../shared/realdata/`) through the binary, for every platform: invariants
//! that must hold on any data, and the same output with 1 and 2 threads.
//!
//! The threads are American, so the runs use a rule file that keeps each
//! platform's presets and only sets `timezone = "America/New_York"` (SPEC §3:
//! a file without [[metric]] changes the input settings only), and
//! `--rules-as-of 2026-06-01` so that the current versions apply to 2017-2020.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::common::*;
use kefu::rules::PLATFORMS;
use polars::prelude::DataFrame;

fn realdata(name: &str) -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/realdata")
        .join(name);
    if p.exists() {
        Some(p)
    } else {
        // Panics under CI: CI runs with shared/ beside the clone.
        cannot_run_here(&format!("{} is missing", p.display()));
        None
    }
}

fn run(
    input: &Path,
    out: &Path,
    platform: &str,
    from: &str,
    to: &str,
    threads: &str,
    tz_rules: &Path,
) {
    run_bin(&[
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
        "--rules",
        tz_rules.to_str().unwrap(),
        "--rules-as-of",
        "2026-06-01",
        "--threads",
        threads,
    ]);
}

fn partitions(out: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    fn walk(d: &Path, files: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, files);
            } else if p.file_name().unwrap() != ".kefu.lock" {
                files.push(p);
            }
        }
    }
    walk(out, &mut files);
    files.sort();
    files
}

fn check_dataset(name: &str, from: &str, to: &str) {
    let Some(input) = realdata(name) else { return };
    let dir = tempfile::tempdir().unwrap();
    let tz_rules = dir.path().join("ny.toml");
    std::fs::write(&tz_rules, "timezone = \"America/New_York\"\n").unwrap();
    let mut total_rows = 0;
    for (platform, _) in PLATFORMS {
        let one = dir.path().join(format!("{platform}-1"));
        let two = dir.path().join(format!("{platform}-2"));
        run(&input, &one, platform, from, to, "1", &tz_rules);
        run(&input, &two, platform, from, to, "2", &tz_rules);

        // Same files, same content, whatever the thread count.
        let files_one = partitions(&one);
        let files_two = partitions(&two);
        let rel = |fs: &[PathBuf], base: &Path| -> Vec<PathBuf> {
            fs.iter()
                .map(|f| f.strip_prefix(base).unwrap().to_path_buf())
                .collect()
        };
        assert_eq!(
            rel(&files_one, &one),
            rel(&files_two, &two),
            "{platform}: partitions differ"
        );
        for (a, b) in files_one.iter().zip(&files_two) {
            match a.file_name().unwrap().to_str().unwrap() {
                "part-0.parquet" => {
                    let (da, db): (DataFrame, DataFrame) = (read_parquet(a), read_parquet(b));
                    let same = da.equals_missing(&db);
                    assert!(
                        same,
                        "{platform}: {} differs between 1 and 2 threads",
                        a.display()
                    );
                }
                "_manifest.json" => assert_eq!(
                    std::fs::read(a).unwrap(),
                    std::fs::read(b).unwrap(),
                    "{platform}: {}",
                    a.display()
                ),
                other => panic!("{platform}: stray file {other} in {}", a.display()),
            }
        }

        let metrics = kefu::rules::RuleSet::preset(platform).unwrap();
        let kind_of = |id: &str| metrics.metrics.iter().find(|m| m.id == id).unwrap().kind;
        let mut day = date(from);
        while day <= date(to) {
            let shop = read_shop_daily(&one, platform, day);
            let agents = read_agent_daily(&one, platform, day);
            total_rows += shop.len();
            let mut sums: BTreeMap<(String, String), (i64, i64)> = BTreeMap::new();
            for ((s, _, m), (n, d)) in &agents {
                let e = sums.entry((s.clone(), m.clone())).or_default();
                e.0 += n;
                e.1 += d;
            }
            for ((s, m), (n, d, v, ver)) in &shop {
                assert!(
                    *d > 0,
                    "{platform} {day} {s} {m}: empty denominator written"
                );
                assert!(
                    ver.starts_with(&format!("{m}@")),
                    "{platform} {day}: rule_version {ver}"
                );
                match kind_of(m) {
                    kefu::rules::Kind::Rate => {
                        assert!(0 <= *n && n <= d, "{platform} {day} {s} {m}: {n} / {d}");
                        assert!((0.0..=1.0).contains(v));
                        assert_eq!(*v, *n as f64 / *d as f64);
                    }
                    kefu::rules::Kind::MeanLatency => {
                        assert!(*n >= 0 && *v >= 0.0, "{platform} {day} {s} {m}: {n} / {d}");
                        assert_eq!(*v, *n as f64 / *d as f64 / 1000.0);
                    }
                }
                assert_eq!(
                    sums.get(&(s.clone(), m.clone())),
                    Some(&(*n, *d)),
                    "{platform} {day}: agents do not add up"
                );
            }
            assert_eq!(
                sums.len(),
                shop.len(),
                "{platform} {day}: agent rows without a shop row"
            );
            check_rolling(&one, platform, day, &metrics);
            day = day.succ_opt().unwrap();
        }
    }
    assert!(
        total_rows > 20,
        "{name}: only {total_rows} metric rows: the runs found almost nothing"
    );
}

/// shop_rolling on `day` equals the sum of the committed shop_daily
/// partitions over each metric's window.
fn check_rolling(out: &Path, platform: &str, day: chrono::NaiveDate, rules: &kefu::rules::RuleSet) {
    let as_of = date("2026-06-01");
    let mut want: BTreeMap<(String, String), (i64, i64)> = BTreeMap::new();
    for m in rules
        .in_force(as_of)
        .into_iter()
        .filter(|m| m.window_days > 1)
    {
        for back in 0..m.window_days as i64 {
            let d = day - chrono::Duration::days(back);
            if !out
                .join(format!(
                    "shop_daily/platform={platform}/dt={d}/part-0.parquet"
                ))
                .exists()
            {
                continue;
            }
            for ((shop, metric), (n, dn, _, _)) in read_shop_daily(out, platform, d) {
                if metric == m.id {
                    let e = want.entry((shop, metric)).or_default();
                    e.0 += n;
                    e.1 += dn;
                }
            }
        }
    }
    let df = read_parquet(&out.join(format!(
        "shop_rolling/platform={platform}/dt={day}/part-0.parquet"
    )));
    let s = |n: &str| df.column(n).unwrap().str().unwrap().clone();
    let i = |n: &str| df.column(n).unwrap().i64().unwrap().clone();
    let (shop, metric, num, den) = (s("shop_id"), s("metric"), i("numerator"), i("denominator"));
    let got: BTreeMap<(String, String), (i64, i64)> = (0..df.height())
        .map(|k| {
            let key = (
                shop.get(k).unwrap().to_string(),
                metric.get(k).unwrap().to_string(),
            );
            (key, (num.get(k).unwrap(), den.get(k).unwrap()))
        })
        .collect();
    assert_eq!(
        got, want,
        "{platform} {day}: shop_rolling is not the sum of shop_daily"
    );
}

#[test]
fn twcs_sample_every_platform() {
    check_dataset("twcs_sample.parquet", "2017-11-20", "2017-12-03");
}

#[test]
fn ibm_cdp_every_platform() {
    check_dataset("ibm_cdp.parquet", "2020-03-20", "2020-03-31");
}
