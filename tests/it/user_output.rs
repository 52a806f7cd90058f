//! Snapshots (insta, in tests/it/snapshots/) of what users read: the help
//! texts, `kefu rules`, `kefu sql`, and every output table of the sample in
//! data/. A change to any of them shows up as a diff to review and accept
//! (`cargo insta review`, or `INSTA_UPDATE=always` and read the .snap files).
//! Under CI (`CI` set) a missing or different snapshot fails the test.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::*;
use polars::prelude::AnyValue;

/// Runs the binary with a fixed terminal width (clap wraps help to it).
fn kefu(args: &[&str]) -> Output {
    Command::new(kefu_bin())
        .args(args)
        .env("COLUMNS", "100")
        .env_remove("NO_COLOR")
        .output()
        .expect("kefu runs")
}

/// stdout of a run that must succeed.
fn stdout_of(args: &[&str]) -> String {
    let o = kefu(args);
    assert!(
        o.status.success(),
        "kefu {args:?} failed ({:?}):\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).expect("UTF-8 output")
}

#[test]
fn help_texts() {
    insta::assert_snapshot!("help", stdout_of(&["--help"]));
    for command in ["run", "rules", "sql", "gen"] {
        insta::assert_snapshot!(format!("help_{command}"), stdout_of(&[command, "--help"]));
    }
}

#[test]
fn rules_of_every_preset() {
    insta::assert_snapshot!("rules_all", stdout_of(&["rules"]));
    insta::assert_snapshot!(
        "rules_taobao",
        stdout_of(&["rules", "--platform", "taobao"])
    );
}

#[test]
fn sql_for_one_platform() {
    // Fixed paths: the script only names them, nothing is read.
    let sql = stdout_of(&[
        "sql",
        "--skip-scorecard",
        "--input",
        "/data/messages",
        "--output",
        "/data/kefu",
        "--platform",
        "taobao",
        "--date",
        "2024-05-16",
        "--to",
        "2024-05-17",
    ]);
    insta::assert_snapshot!("sql_taobao", sql);
}

/// Every table of README's first command over the sample's three days.
#[test]
fn output_tables_of_the_sample() {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/sample.parquet");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    run_bin(&[
        "run",
        "--input",
        sample.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--platform",
        "pdd",
        "--date",
        "2024-05-16",
        "--to",
        "2024-05-18",
    ]);
    // items has a row per counted item (18,000 here): only the two shops
    // with an alert, whose items explain it.
    let alerted = |row: &[AnyValue]| matches!(&row[0], AnyValue::String(s) if ["shop00007", "shop00010"].contains(s));
    for table in [
        "shop_daily",
        "agent_daily",
        "items",
        "shop_rolling",
        "alerts",
    ] {
        let keep: RowFilter = match table {
            "items" => Some(&alerted),
            _ => None,
        };
        let mut text = String::new();
        for day in ["2024-05-16", "2024-05-17", "2024-05-18"] {
            let part = out.join(format!("{table}/platform=pdd/dt={day}/part-0.parquet"));
            text.push_str(&format!("-- dt={day}: "));
            text.push_str(&sorted_rows(&part, keep));
        }
        insta::assert_snapshot!(format!("sample_pdd_{table}"), text);
    }
}
