//! The command line's contract through the binary: exit codes and messages
//! as README's "When things go wrong" table gives them, clap's errors in
//! kefu's form, `rules diff`'s exit status, `kefu rules` with several
//! platforms or an input-only rule file, and a closed stdout (`| head`).
//! Runs only `kefu` itself, none of the shared helpers.

use std::io::Read;
use std::process::{Command, Output, Stdio};

const PRESETS: [&str; 6] = ["pdd", "taobao", "douyin", "jd", "kuaishou", "xiaohongshu"];

fn kefu(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kefu"))
        .args(args)
        .output()
        .expect("kefu runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `kefu sql` for one day, the scorecard metrics left out; the input need
/// not exist (sql reads only the schema of a local input that exists).
fn sql_args(platform: &str) -> Vec<&str> {
    vec![
        "sql",
        "--skip-scorecard",
        "--input",
        "/definitely/not/here/msgs.parquet",
        "--output",
        "/tmp/kefu-cli-behaviour-out",
        "--platform",
        platform,
        "--date",
        "2024-05-16",
    ]
}

fn run_args<'a>(platform: &'a str, output: &'a str) -> Vec<&'a str> {
    vec![
        "run",
        "--input",
        "/definitely/not/here/msgs.parquet",
        "--output",
        output,
        "--platform",
        platform,
        "--date",
        "2024-05-16",
    ]
}

/// kefu with a stdout whose reader is gone before kefu writes a byte.
fn with_closed_stdout(args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    Command::new(env!("CARGO_BIN_EXE_kefu"))
        .args(args)
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("kefu runs")
}

#[test]
fn a_closed_stdout_ends_the_output_quietly() {
    for (args, code) in [
        (sql_args("pdd"), 0),
        (vec!["rules"], 0),
        (vec!["rules", "--platform", "jd"], 0),
        (vec!["rules", "diff", "jd", "jd"], 0),
        // The pipe closing does not change what diff found.
        (vec!["rules", "diff", "jd", "pdd"], 1),
    ] {
        let o = with_closed_stdout(&args);
        assert_eq!(o.status.code(), Some(code), "{args:?}: {}", stderr(&o));
        assert_eq!(without_skip_notes(&stderr(&o)), "", "{args:?}");
    }
    // As `kefu sql ... | head -c 16`: read a little, then close the pipe.
    let mut child = Command::new(env!("CARGO_BIN_EXE_kefu"))
        .args(sql_args("pdd"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut head = [0u8; 16];
    child.stdout.take().unwrap().read_exact(&mut head).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(String::from_utf8_lossy(&head).starts_with("--"), "{head:?}");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(without_skip_notes(&stderr(&o)), "");
}

/// stderr without `kefu sql`'s notes on the scorecard metrics it skips
/// (SPEC §8: they are not compiled to Spark SQL).
fn without_skip_notes(stderr: &str) -> String {
    stderr
        .lines()
        .filter(|l| !l.starts_with("kefu: note: skipped: "))
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn an_unknown_platform_is_a_usage_error_naming_flag_name_and_presets() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let run = run_args("pddd", out.to_str().unwrap());
    for (args, all) in [
        (run.clone(), true),
        (sql_args("pddd"), false),
        (vec!["rules", "--platform", "pddd"], true),
        (vec!["rules", "--platform", "pdd,pddd"], true),
    ] {
        let o = kefu(&args);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {e}");
        assert!(
            e.starts_with("kefu: error: --platform: unknown platform `pddd`; the presets are: pdd, taobao, douyin, jd, kuaishou, xiaohongshu"),
            "{args:?}: {e}"
        );
        assert_eq!(e.contains("`all`"), all, "{args:?}: {e}");
        assert!(!e.contains("rule file"), "not a rule-file error: {e}");
    }
    assert!(!out.exists(), "nothing is written on a usage error");
}

/// Spark SQL does not compute the scorecard kinds: `kefu sql` refuses to
/// leave out the scorecard metrics in force unless told to, and `--engine
/// spark` refuses the scorecard tables; `--skip-scorecard` is Spark's only.
#[test]
fn spark_refuses_the_scorecard_unless_told_to_leave_it_out() {
    // sql_args without its --skip-scorecard.
    fn without_flag(p: &str) -> Vec<&str> {
        let mut a = sql_args(p);
        a.remove(1);
        a
    }
    let refused = kefu(&without_flag("pdd"));
    let e = stderr(&refused);
    assert_eq!(refused.status.code(), Some(2), "{e}");
    assert!(refused.stdout.is_empty(), "no script on a refusal");
    insta::assert_snapshot!("error_sql_scorecard", e);
    // Left out when asked: one `-- skipped:` line per metric version, and
    // the note on stderr.
    let left_out = kefu(&sql_args("pdd"));
    assert_eq!(left_out.status.code(), Some(0), "{}", stderr(&left_out));
    let script = stdout(&left_out);
    assert!(script.contains("-- skipped: pdd.inquiry_conversion_rate (conversion): "));
    assert!(stderr(&left_out).contains("kefu: note: skipped: pdd.complaint_rate (complaint_rate)"));
    // A platform without scorecard metrics needs no flag.
    let jd = kefu(&without_flag("jd"));
    assert_eq!(jd.status.code(), Some(0), "{}", stderr(&jd));
    assert!(!stdout(&jd).contains("skipped"));

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let spark = |extra: &[&'static str]| {
        let mut a = run_args("pdd", out.to_str().unwrap());
        a.extend(["--engine", "spark", "--spark-remote", "sc://127.0.0.1:1"]);
        a.extend(extra);
        kefu(&a)
    };
    for table in ["--orders", "--refunds", "--complaints", "--ratings"] {
        let o = spark(&[table, "/x.parquet", "--skip-scorecard"]);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{table}: {e}");
        assert!(
            e.starts_with(&format!(
                "kefu: error: {table} applies to the native engine only"
            )),
            "{table}: {e}"
        );
    }
    let mut native = run_args("pdd", out.to_str().unwrap());
    native.push("--skip-scorecard");
    let o = kefu(&native);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(
        e.starts_with("kefu: error: --skip-scorecard is for kefu sql and --engine spark"),
        "{e}"
    );
    assert!(!out.exists(), "nothing is written on a usage error");
}

#[test]
fn sql_takes_one_platform() {
    for p in ["all", "pdd,taobao"] {
        let o = kefu(&sql_args(p));
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{p}: {e}");
        assert!(
            e.contains(&format!("--platform {p}: sql takes one platform"))
                && e.contains("one script per platform")
                && e.contains("run kefu sql once per platform"),
            "{p}: {e}"
        );
        assert!(o.stdout.is_empty());
    }
}

#[test]
fn rules_takes_all_and_lists_of_platforms() {
    let every = kefu(&["rules"]);
    assert_eq!(every.status.code(), Some(0), "{}", stderr(&every));
    let all = kefu(&["rules", "--platform", "all"]);
    assert_eq!(all.status.code(), Some(0), "{}", stderr(&all));
    assert_eq!(stdout(&all), stdout(&every), "all = the six presets");
    for p in PRESETS {
        assert!(
            stdout(&all).contains(&format!("# queries/{p}.toml (preset)")),
            "{p}"
        );
    }
    let two = kefu(&["rules", "--platform", "pdd,taobao"]);
    assert_eq!(two.status.code(), Some(0), "{}", stderr(&two));
    let text = stdout(&two);
    assert!(
        text.contains("pdd.reply_rate_5m")
            && text.contains("taobao.avg_manual_response")
            && !text.contains("jd."),
        "{text}"
    );
    let twice = kefu(&["rules", "--platform", "jd,jd"]);
    assert_eq!(twice.status.code(), Some(2));
    assert!(stderr(&twice).contains("--platform names jd twice"));
}

#[test]
fn rules_shows_a_rule_file_of_input_settings_only() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("input_only.toml");
    std::fs::write(
        &file,
        "timezone = \"America/New_York\"\nmax_bad_row_share = 0.01\n",
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let o = kefu(&["rules", "--rules", f]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains(&format!("# {f}\n"))
            && text.contains("# timezone America/New_York\n")
            && text.contains("# max_bad_row_share 0.01\n")
            && text.contains("keeps the presets of --platform"),
        "{text}"
    );
    // With --platform: that platform's presets under the file's settings.
    let o = kefu(&["rules", "--rules", f, "--platform", "jd"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("# timezone America/New_York")
            && text.contains("jd.first_response_rate_30s")
            && !text.contains("pdd."),
        "{text}"
    );
    // A file that is wrong is still a rule-file error (78).
    std::fs::write(&file, "timezone = \"Mars/Olympus\"\n").unwrap();
    let o = kefu(&["rules", "--rules", f]);
    assert_eq!(o.status.code(), Some(78), "{}", stderr(&o));
    assert!(
        stderr(&o).starts_with("kefu: error: rule file "),
        "{}",
        stderr(&o)
    );
}

#[test]
fn clap_errors_have_the_kefu_prefix_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let o_str = out.to_str().unwrap();
    let mut unknown = run_args("pdd", o_str);
    unknown.push("--bogus");
    let mut bad_date = run_args("pdd", o_str);
    *bad_date.last_mut().unwrap() = "16/05/2024";
    let missing = &run_args("pdd", o_str)[..7];
    for (args, needle) in [
        (unknown, "unexpected argument '--bogus' found"),
        (bad_date, "invalid value '16/05/2024' for '--date <D>': `16/05/2024` is not a date like 2024-05-16"),
        (missing.to_vec(), "the following required arguments were not provided:\n  --date <D>"),
        (vec!["frobnicate"], "unrecognized subcommand 'frobnicate'"),
    ] {
        let o = kefu(&args);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {e}");
        assert!(e.starts_with(&format!("kefu: error: {needle}")), "{args:?}: {e}");
        assert!(e.contains("For more information, try '--help'."), "{e}");
        assert!(!e.contains("error: error:"), "{e}");
    }
    assert!(!out.exists());
    for args in [vec!["--help"], vec!["run", "--help"], vec!["sql", "-h"]] {
        let o = kefu(&args);
        assert_eq!(o.status.code(), Some(0), "{args:?}");
        assert!(stdout(&o).contains("Usage: kefu"), "{args:?}");
        assert_eq!(stderr(&o), "", "{args:?}");
    }
    let o = kefu(&["--version"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).starts_with("kefu "), "{}", stdout(&o));
}

#[test]
fn the_help_lists_the_exit_codes_of_readme() {
    let o = kefu(&["--help"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(
        stdout(&o).contains(
            "Exit codes: 0 ok, 1 `rules diff` found differences, 2 usage, 65 bad input data, \
             66 input missing, 70 internal error (a bug), 75 I/O error (retry), 78 invalid rule file."
        ),
        "{}",
        stdout(&o)
    );
}

#[test]
fn rules_diff_exits_1_when_the_rules_differ() {
    let o = kefu(&["rules", "diff", "jd", "pdd"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.starts_with("--- queries/jd.toml (preset)\n+++ queries/pdd.toml (preset)\n"),
        "{text}"
    );
    assert_eq!(stderr(&o), "");
    let o = kefu(&["rules", "diff", "jd", "jd"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with("no differences between"),
        "{}",
        stdout(&o)
    );
    // A side that cannot be read is an error, not a difference.
    let o = kefu(&["rules", "diff", "jd", "/definitely/not/here.toml"]);
    assert_eq!(o.status.code(), Some(78), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("cannot read the rule file"),
        "{}",
        stderr(&o)
    );
    let o = kefu(&["rules", "diff", "--help"]);
    assert!(
        stdout(&o).contains("Exits 0 when there are none, 1 when they differ (as diff does)"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn engine_spark_without_spark_connect_refuses_before_any_output() {
    if cfg!(feature = "spark-connect") {
        return; // built with it: it connects (tests/input_and_cli.rs).
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut args = run_args("pdd,taobao", out.to_str().unwrap());
    args.extend(["--engine", "spark", "--spark-remote", "sc://127.0.0.1:1"]);
    let o = kefu(&args);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert_eq!(
        e,
        "kefu: error: --engine spark needs a kefu built with Spark Connect: \
         cargo build --release --features spark-connect\n"
    );
    assert!(o.stdout.is_empty());
    assert!(!out.exists());
}
