//! Reading the message table (files, directories, globs, Hive folders, bad
//! rows, types) and the command line's errors and exit codes, through the
//! binary.

use std::path::Path;
use std::process::Command;

use crate::common::*;
use polars::prelude::*;

const DAY: &str = "2024-05-16";
const PDD30: &str = "pdd.answer_rate_30s";

fn kefu(args: &[&str]) -> std::process::Output {
    Command::new(kefu_bin()).args(args).output().unwrap()
}

fn run_args<'a>(input: &'a str, out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "run",
        "--input",
        input,
        "--output",
        out,
        "--platform",
        "pdd",
        "--date",
        DAY,
    ];
    v.extend_from_slice(extra);
    v
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn answered(buyer_id: &str, t: &str, reply_after: &str) -> Vec<Msg> {
    let mut q = buyer(&format!("{DAY} {t}"));
    q.buyer = buyer_id.into();
    let mut a = agent(&format!("{DAY} {reply_after}"));
    a.buyer = buyer_id.into();
    vec![q, a]
}

#[test]
fn directory_with_hive_folders_hidden_files_and_dt_pruning() {
    let dir = tempfile::tempdir().unwrap();
    let mut errors = ErrorTable::new(dir.path());
    let root = dir.path().join("in");
    write_messages(
        &root.join("dt=2024-05-16/part-0.parquet"),
        &answered("b1", "10:00:00", "10:00:10"),
        Columns::default(),
    );
    write_messages(
        &root.join("dt=2024-05-16/part-1.parq"),
        &answered("b2", "11:00:00", "11:01:00"),
        Columns::default(),
    );
    // Skipped: hidden and underscore names, and a dt= folder far outside the
    // run's days (its file is not even Parquet: reading it would fail).
    std::fs::write(root.join("dt=2024-05-16/_SUCCESS"), "").unwrap();
    std::fs::write(root.join("dt=2024-05-16/.part-9.parquet"), "not parquet").unwrap();
    std::fs::create_dir_all(root.join("dt=2024-05-01")).unwrap();
    std::fs::write(root.join("dt=2024-05-01/part-0.parquet"), "not parquet").unwrap();
    let out = dir.path().join("out");
    let o = kefu(&run_args(
        root.to_str().unwrap(),
        out.to_str().unwrap(),
        &[],
    ));
    assert!(o.status.success(), "{}", stderr(&o));
    let rows = read_shop_daily(&out, "pdd", date(DAY));
    assert_eq!(counts(&rows, "s1", PDD30), Some((1, 2)));

    // A dt= folder inside the window is read, so a corrupt file there fails
    // the run with exit 65, naming the file.
    std::fs::create_dir_all(root.join("dt=2024-05-17")).unwrap();
    std::fs::write(root.join("dt=2024-05-17/part-0.parquet"), "not parquet").unwrap();
    let o = kefu(&run_args(
        root.to_str().unwrap(),
        out.to_str().unwrap(),
        &[],
    ));
    assert_eq!(o.status.code(), Some(65), "{}", stderr(&o));
    errors.add("a bad file in the dt= folder read", &o);
    assert!(
        stderr(&o).contains("dt=2024-05-17/part-0.parquet"),
        "{}",
        stderr(&o)
    );
    // The partition committed by the first run is still there, unchanged.
    assert_eq!(
        counts(&read_shop_daily(&out, "pdd", date(DAY)), "s1", PDD30),
        Some((1, 2))
    );
    insta::assert_snapshot!("errors_hive_folders", errors.text());
}

#[test]
fn glob_input() {
    let dir = tempfile::tempdir().unwrap();
    let mut errors = ErrorTable::new(dir.path());
    write_messages(
        &dir.path().join("a/x.parquet"),
        &answered("b1", "10:00:00", "10:00:10"),
        Columns::default(),
    );
    write_messages(
        &dir.path().join("b/x.parquet"),
        &answered("b2", "10:00:00", "10:00:50"),
        Columns::default(),
    );
    let out = dir.path().join("out");
    let pattern = format!("{}/*/x.parquet", dir.path().display());
    let o = kefu(&run_args(&pattern, out.to_str().unwrap(), &[]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        counts(&read_shop_daily(&out, "pdd", date(DAY)), "s1", PDD30),
        Some((1, 2))
    );

    let none = format!("{}/*/nothing.parquet", dir.path().display());
    let o = kefu(&run_args(&none, out.to_str().unwrap(), &[]));
    assert_eq!(o.status.code(), Some(66), "{}", stderr(&o));
    errors.add("a glob matching nothing", &o);
    assert!(
        stderr(&o).contains("the glob matches no file"),
        "{}",
        stderr(&o)
    );
    insta::assert_snapshot!("errors_glob", errors.text());
}

#[test]
fn duplicates_keep_the_first_in_path_order() {
    // File a holds the agent's reply with msg_id "x"; file b repeats "x" on
    // the buyer's row: the copy in b is dropped, so there is no inquiry.
    let dir = tempfile::tempdir().unwrap();
    let mut a = agent(&format!("{DAY} 10:00:10"));
    a.msg_id = Some("x".into());
    let mut q = buyer(&format!("{DAY} 10:00:00"));
    q.msg_id = Some("x".into());
    write_messages(&dir.path().join("in/a.parquet"), &[a], Columns::default());
    write_messages(&dir.path().join("in/b.parquet"), &[q], Columns::default());
    let out = dir.path().join("out");
    let o = kefu(&run_args(
        dir.path().join("in").to_str().unwrap(),
        out.to_str().unwrap(),
        &[],
    ));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(read_shop_daily(&out, "pdd", date(DAY)).is_empty());
    assert!(stderr(&o).contains("1 duplicate"), "{}", stderr(&o));
}

/// A table with one bad row (null shop_id) and one unknown sender among
/// `good` rows.
fn with_bad_rows(path: &Path, good: usize) {
    let mut msgs = Vec::new();
    for k in 0..good / 2 {
        msgs.extend(answered(&format!("b{k}"), "10:00:00", "10:00:10"));
    }
    let mut odd = buyer(&format!("{DAY} 12:00:00"));
    odd.sender = "robot".into();
    msgs.push(odd);
    msgs.push(buyer(&format!("{DAY} 12:00:00")));
    write_messages(path, &msgs, Columns::default());
    let mut df = read_parquet(path);
    let n = df.height();
    let shops: Vec<Option<&str>> = (0..n)
        .map(|i| if i == n - 1 { None } else { Some("s1") })
        .collect();
    df.replace("shop_id", Column::new("shop_id".into(), shops))
        .unwrap();
    let mut f = std::fs::File::create(path).unwrap();
    ParquetWriter::new(&mut f).finish(&mut df).unwrap();
}

#[test]
fn bad_rows_are_counted_and_fail_above_the_share_or_under_strict() {
    let dir = tempfile::tempdir().unwrap();
    let mut errors = ErrorTable::new(dir.path());
    let input = dir.path().join("m.parquet");
    with_bad_rows(&input, 20);
    let out = dir.path().join("out");
    // 2 bad of 22 rows > 0.1%: fails with examples naming file and row.
    let o = kefu(&run_args(
        input.to_str().unwrap(),
        out.to_str().unwrap(),
        &[],
    ));
    assert_eq!(o.status.code(), Some(65), "{}", stderr(&o));
    errors.add("bad rows above the share", &o);
    let e = stderr(&o);
    assert!(
        e.contains("2 of 22 rows read are bad")
            && e.contains("row 20: sender `robot`")
            && e.contains("row 21: shop_id is null"),
        "{e}"
    );
    assert!(
        !out.join("shop_daily").exists(),
        "nothing written on failure"
    );

    // A rule file raising the share: the bad rows are skipped.
    let rules = dir.path().join("lenient.toml");
    std::fs::write(&rules, "max_bad_row_share = 0.5\n").unwrap();
    let o = kefu(&run_args(
        input.to_str().unwrap(),
        out.to_str().unwrap(),
        &["--rules", rules.to_str().unwrap()],
    ));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        counts(&read_shop_daily(&out, "pdd", date(DAY)), "s1", PDD30),
        Some((10, 10))
    );
    assert!(stderr(&o).contains("2 bad"), "{}", stderr(&o));

    // --strict fails on any bad row.
    let o = kefu(&run_args(
        input.to_str().unwrap(),
        out.to_str().unwrap(),
        &["--rules", rules.to_str().unwrap(), "--strict"],
    ));
    assert_eq!(o.status.code(), Some(65), "{}", stderr(&o));
    errors.add("one bad row under --strict", &o);
    assert!(stderr(&o).contains("--strict"), "{}", stderr(&o));
    insta::assert_snapshot!("errors_bad_rows", errors.text());
}

#[test]
fn missing_column_and_wrong_type_are_exit_65_naming_file_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let mut errors = ErrorTable::new(dir.path());
    let input = dir.path().join("m.parquet");
    write_messages(
        &input,
        &answered("b1", "10:00:00", "10:00:10"),
        Columns::default(),
    );
    let mut df = read_parquet(&input).drop("sender").unwrap();
    let mut f = std::fs::File::create(&input).unwrap();
    ParquetWriter::new(&mut f).finish(&mut df).unwrap();
    let out = dir.path().join("out");
    let o = kefu(&run_args(
        input.to_str().unwrap(),
        out.to_str().unwrap(),
        &[],
    ));
    assert_eq!(o.status.code(), Some(65), "{}", stderr(&o));
    errors.add("missing column sender", &o);
    let e = stderr(&o);
    assert!(
        e.contains("m.parquet") && e.contains("required column `sender` is missing"),
        "{e}"
    );

    // ts stored as a string.
    write_messages(
        &input,
        &answered("b1", "10:00:00", "10:00:10"),
        Columns::default(),
    );
    let mut df = read_parquet(&input);
    let ts = df.column("ts").unwrap().cast(&DataType::String).unwrap();
    df.replace("ts", ts).unwrap();
    let mut f = std::fs::File::create(&input).unwrap();
    ParquetWriter::new(&mut f).finish(&mut df).unwrap();
    let o = kefu(&run_args(
        input.to_str().unwrap(),
        out.to_str().unwrap(),
        &[],
    ));
    assert_eq!(o.status.code(), Some(65), "{}", stderr(&o));
    errors.add("ts stored as a string", &o);
    assert!(
        stderr(&o).contains("column `ts` has type"),
        "{}",
        stderr(&o)
    );
    insta::assert_snapshot!("errors_columns", errors.text());
}

#[test]
fn integer_ids_are_read_as_decimal_strings() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("m.parquet");
    write_messages(
        &input,
        &answered("b1", "10:00:00", "10:00:10"),
        Columns::default(),
    );
    let mut df = read_parquet(&input);
    df.replace("shop_id", Column::new("shop_id".into(), vec![42i64, 42]))
        .unwrap();
    df.replace("buyer_id", Column::new("buyer_id".into(), vec![7i32, 7]))
        .unwrap();
    let mut f = std::fs::File::create(&input).unwrap();
    ParquetWriter::new(&mut f).finish(&mut df).unwrap();
    let out = dir.path().join("out");
    let o = kefu(&run_args(
        input.to_str().unwrap(),
        out.to_str().unwrap(),
        &[],
    ));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        counts(&read_shop_daily(&out, "pdd", date(DAY)), "42", PDD30),
        Some((1, 1))
    );
}

#[test]
fn missing_input_is_exit_66_and_bad_rules_exit_78() {
    let dir = tempfile::tempdir().unwrap();
    let mut errors = ErrorTable::new(dir.path());
    let out = dir.path().join("out");
    let o = kefu(&run_args(
        "/definitely/not/here.parquet",
        out.to_str().unwrap(),
        &[],
    ));
    assert_eq!(o.status.code(), Some(66), "{}", stderr(&o));
    errors.add("input path does not exist", &o);
    assert!(stderr(&o).contains("/definitely/not/here.parquet"));

    let rules = dir.path().join("bad.toml");
    std::fs::write(&rules, "[[metric]]\nid = \"x\"\nunit = \"round\"\nkind = \"rate\"\nthreshold = 30\nhours = \"08:00-23:00\"\nresponders = [\"manual\"]\nany_miss = true\n").unwrap();
    let input = dir.path().join("m.parquet");
    write_messages(
        &input,
        &answered("b1", "10:00:00", "10:00:10"),
        Columns::default(),
    );
    let o = kefu(&run_args(
        input.to_str().unwrap(),
        out.to_str().unwrap(),
        &["--rules", rules.to_str().unwrap()],
    ));
    assert_eq!(o.status.code(), Some(78), "{}", stderr(&o));
    errors.add("invalid rule file", &o);
    let e = stderr(&o);
    assert!(
        e.contains("bad.toml, line 8") && e.contains("`any_miss` does not apply"),
        "{e}"
    );
    assert!(
        !out.exists(),
        "an invalid rule file fails before anything is read or written"
    );
    insta::assert_snapshot!("errors_missing_input_bad_rules", errors.text());
}

#[test]
fn usage_errors_are_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let mut errors = ErrorTable::new(dir.path());
    let o = kefu(&[
        "run",
        "--input",
        "x",
        "--output",
        "y",
        "--platform",
        "pdd",
        "--date",
        "16/05/2024",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    errors.add("--date 16/05/2024", &o);
    assert!(
        stderr(&o).contains("`16/05/2024` is not a date like 2024-05-16"),
        "{}",
        stderr(&o)
    );
    let o = kefu(&[
        "run",
        "--input",
        "x",
        "--output",
        "y",
        "--platform",
        "../evil",
        "--date",
        DAY,
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    errors.add("--platform ../evil", &o);
    assert!(
        stderr(&o).contains("--platform `../evil` must be 1-64 characters"),
        "{}",
        stderr(&o)
    );
    let o = kefu(&[
        "run",
        "--input",
        "x",
        "--output",
        "y",
        "--platform",
        "nosuch",
        "--date",
        DAY,
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    errors.add("--platform nosuch", &o);
    assert!(
        stderr(&o).contains("unknown platform `nosuch`"),
        "{}",
        stderr(&o)
    );
    insta::assert_snapshot!("errors_usage", errors.text());
}

#[test]
fn rules_command_prints_every_preset() {
    let o = kefu(&["rules"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    for id in [
        "pdd.manual_reply_rate_3m",
        "pdd.reply_rate_5m",
        "pdd.effective_reply_rate",
        "pdd.answer_rate_30s",
        "pdd.avg_manual_response",
        "taobao.manual_response_rate_3m",
        "taobao.avg_manual_response",
        "douyin.avg_response",
        "douyin.manual_reply_rate_3m",
        "jd.first_response_rate_30s",
        "kuaishou.manual_reply_rate_3m",
        "xiaohongshu.manual_reply_rate_3m",
    ] {
        assert!(text.contains(id), "{id} missing from `kefu rules`");
    }
    let o = kefu(&["rules", "--platform", "jd"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("09:00-23:00") && !text.contains("pdd."),
        "{text}"
    );
}

#[test]
fn range_run_commits_each_day_and_empty_days_write_empty_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("m.parquet");
    write_messages(
        &input,
        &answered("b1", "10:00:00", "10:00:10"),
        Columns::default(),
    );
    let out = dir.path().join("out");
    let o = kefu(&run_args(
        input.to_str().unwrap(),
        out.to_str().unwrap(),
        &["--to", "2024-05-18"],
    ));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        counts(&read_shop_daily(&out, "pdd", date(DAY)), "s1", PDD30),
        Some((1, 1))
    );
    for d in ["2024-05-17", "2024-05-18"] {
        assert!(read_shop_daily(&out, "pdd", date(d)).is_empty());
        assert!(out
            .join(format!("items/platform=pdd/dt={d}/part-0.parquet"))
            .exists());
    }
    assert!(
        stderr(&o).contains("no messages on 2024-05-17"),
        "{}",
        stderr(&o)
    );
    // Re-running replaces the partitions: still one file each, same rows.
    let o = kefu(&run_args(
        input.to_str().unwrap(),
        out.to_str().unwrap(),
        &[],
    ));
    assert!(o.status.success(), "{}", stderr(&o));
    let mut files: Vec<String> =
        std::fs::read_dir(out.join(format!("shop_daily/platform=pdd/dt={DAY}")))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
    files.sort();
    assert_eq!(files, ["_manifest.json", "part-0.parquet"]);
    assert_eq!(
        counts(&read_shop_daily(&out, "pdd", date(DAY)), "s1", PDD30),
        Some((1, 1))
    );
}

#[test]
fn rules_diff_shows_changed_fields() {
    let dir = tempfile::tempdir().unwrap();
    let new = dir.path().join("new.toml");
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("queries/jd.toml"))
            .unwrap();
    std::fs::write(&new, text.replace("threshold = 30", "threshold = 45")).unwrap();
    let o = kefu(&["rules", "diff", "jd", new.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("~ metric jd.first_response_rate_30s@: thr 30 -> 45"),
        "{text}"
    );
    let o = kefu(&["rules", "diff", "jd", "jd"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("no differences"));
}

#[test]
fn engine_spark_flags_are_checked_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let mut errors = ErrorTable::new(dir.path());
    let input = dir.path().join("m.parquet");
    write_messages(
        &input,
        &[
            buyer(&format!("{DAY} 10:00:00")),
            agent(&format!("{DAY} 10:00:20")),
        ],
        Columns::default(),
    );
    let out = dir.path().join("out");
    let (i, o) = (input.to_str().unwrap(), out.to_str().unwrap());
    for (extra, code, needle) in [
        (vec!["--engine", "spark"], 2, "needs --spark-remote"),
        (
            vec!["--engine", "spark", "--spark-remote", "spark:15002"],
            2,
            "expected sc://",
        ),
        (
            vec![
                "--engine",
                "spark",
                "--spark-remote",
                "sc://h:1",
                "--shard",
                "0/2",
            ],
            2,
            "--shard applies to the native engine only",
        ),
        (
            vec!["--spark-remote", "sc://h:1"],
            2,
            "--spark-remote is for --engine spark",
        ),
    ] {
        let r = kefu(&run_args(i, o, &extra));
        let stderr = String::from_utf8_lossy(&r.stderr);
        assert_eq!(r.status.code(), Some(code), "{extra:?}: {stderr}");
        errors.add(&format!("{extra:?}"), &r);
        assert!(stderr.contains(needle), "{extra:?}: {stderr}");
    }
    // A reachable-looking URL: without the feature, how to build it; with
    // it, nothing answers on port 1 (exit 75, worth retrying).
    let r = kefu(&run_args(
        i,
        o,
        &[
            "--engine",
            "spark",
            "--spark-remote",
            "sc://127.0.0.1:1",
            "--skip-scorecard",
        ],
    ));
    let stderr = String::from_utf8_lossy(&r.stderr);
    if cfg!(feature = "spark-connect") {
        assert_eq!(r.status.code(), Some(75), "{stderr}");
        assert!(stderr.contains("nothing answers"), "{stderr}");
    } else {
        assert_eq!(r.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("--features spark-connect"), "{stderr}");
    }
    assert!(
        !out.exists(),
        "nothing is written when the engine cannot run"
    );
    insta::assert_snapshot!("errors_engine_spark", errors.text());
}
