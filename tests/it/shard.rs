//! `--shard I/N`: N shard runs together write exactly the rows one run
//! writes, for every table and day.

use std::collections::BTreeMap;
use std::path::Path;

use crate::common::*;

/// Every row of every data file, per (table, partition), as sorted text.
fn rows_by_partition(out: &Path) -> BTreeMap<String, Vec<String>> {
    let mut tables = BTreeMap::new();
    for table in [
        "shop_daily",
        "shop_rolling",
        "agent_daily",
        "items",
        "alerts",
    ] {
        let platform_dir = out.join(table).join("platform=taobao");
        for day in std::fs::read_dir(&platform_dir).unwrap() {
            let day = day.unwrap().path();
            let key = format!("{table}/{}", day.file_name().unwrap().to_str().unwrap());
            let rows: &mut Vec<String> = tables.entry(key).or_default();
            for f in std::fs::read_dir(&day).unwrap() {
                let f = f.unwrap().path();
                let name = f.file_name().unwrap().to_str().unwrap().to_string();
                if !name.ends_with(".parquet") {
                    continue;
                }
                let df = read_parquet(&f);
                for i in 0..df.height() {
                    rows.push(format!("{:?}", df.get(i).unwrap()));
                }
            }
            rows.sort();
        }
    }
    tables
}

#[test]
fn shards_together_write_what_one_run_writes() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("m.parquet");
    run_bin(&[
        "gen",
        "--output",
        input.to_str().unwrap(),
        "--rows",
        "20000",
        "--days",
        "3",
        "--shops",
        "25",
        "--start",
        "2024-05-16",
        "--seed",
        "11",
    ]);
    let run = |out: &Path, shard: Option<&str>| {
        let mut args = vec![
            "run",
            "--input",
            input.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--platform",
            "taobao",
            "--date",
            "2024-05-16",
            "--to",
            "2024-05-18",
            "--rules-as-of",
            "2026-06-01",
        ];
        if let Some(s) = shard {
            args.extend(["--shard", s]);
        }
        run_bin(&args);
    };
    let whole = dir.path().join("whole");
    run(&whole, None);
    let expected = rows_by_partition(&whole);
    assert!(expected.values().map(Vec::len).sum::<usize>() > 100);

    for n in [1, 2, 3] {
        let out = dir.path().join(format!("shards-{n}"));
        for i in 0..n {
            run(&out, Some(&format!("{i}/{n}")));
        }
        assert_eq!(rows_by_partition(&out), expected, "{n} shards");
        if n > 1 {
            let p = out.join("shop_daily/platform=taobao/dt=2024-05-16");
            assert!(p.join(format!("part-0-of-{n}.parquet")).exists());
            assert!(p.join(format!("_manifest-{}-of-{n}.json", n - 1)).exists());
            assert!(!p.join("part-0.parquet").exists());
        }
    }

    // Re-running the sharded output as one whole run replaces the shard files.
    let out = dir.path().join("shards-3");
    run(&out, None);
    let names: Vec<String> =
        std::fs::read_dir(out.join("shop_daily/platform=taobao/dt=2024-05-16"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
    assert!(names.iter().all(|n| !n.contains("-of-")), "{names:?}");
    assert_eq!(rows_by_partition(&out), expected);

    let o = std::process::Command::new(kefu_bin())
        .args([
            "run",
            "--input",
            "x",
            "--output",
            "y",
            "--platform",
            "pdd",
            "--date",
            "2024-05-16",
            "--shard",
            "3/3",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("`3/3` is not I/N"), "{stderr}");
}
