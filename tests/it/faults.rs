//! Bad input, faults and safety: every broken input ends in its documented
//! exit code with a message naming what is wrong, nothing half-written is
//! left behind, and nothing outside the output directory is touched.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;
use polars::prelude::*;

const DAY: &str = "2024-05-16";
const PDD30: &str = "pdd.answer_rate_30s";

fn kefu(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut c = Command::new(kefu_bin());
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn run_args(input: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = [
        "run",
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--platform",
        "pdd",
        "--date",
        DAY,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

fn run(input: &Path, out: &Path, extra: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let args = run_args(input, out, extra);
    kefu(&args.iter().map(String::as_str).collect::<Vec<_>>(), env)
}

fn err(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn sample() -> Vec<Msg> {
    let mut msgs = Vec::new();
    for (b, reply) in [("b1", "10:00:10"), ("b2", "10:00:50")] {
        let mut q = buyer(&format!("{DAY} 10:00:00"));
        q.buyer = b.into();
        let mut a = agent(&format!("{DAY} {reply}"));
        a.buyer = b.into();
        msgs.extend([q, a]);
    }
    msgs
}

fn rewrite(path: &Path, f: impl FnOnce(&mut DataFrame)) {
    let mut df = read_parquet(path);
    f(&mut df);
    let mut file = std::fs::File::create(path).unwrap();
    ParquetWriter::new(&mut file).finish(&mut df).unwrap();
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn integer_epoch_ts_needs_its_unit() {
    let dir = tempfile::tempdir().unwrap();
    let mut errors = ErrorTable::new(dir.path());
    let input = dir.path().join("m.parquet");
    write_messages(&input, &sample(), Columns::default());
    rewrite(&input, |df| {
        let secs: Vec<i64> = df
            .column("ts")
            .unwrap()
            .datetime()
            .unwrap()
            .physical()
            .into_no_null_iter()
            .map(|ms| ms / 1000)
            .collect();
        df.replace("ts", Column::new("ts".into(), secs)).unwrap();
    });
    let out = dir.path().join("out");
    let o = run(&input, &out, &[], &[]);
    assert_eq!(o.status.code(), Some(65), "{}", err(&o));
    errors.add("integer ts without ts_epoch_unit", &o);
    assert!(err(&o).contains("ts_epoch_unit"), "{}", err(&o));

    let rules = dir.path().join("epoch.toml");
    std::fs::write(&rules, "[input]\nts_epoch_unit = \"s\"\n").unwrap();
    let o = run(&input, &out, &["--rules", rules.to_str().unwrap()], &[]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(
        counts(&read_shop_daily(&out, "pdd", date(DAY)), "s1", PDD30),
        Some((1, 2))
    );
    insta::assert_snapshot!("errors_epoch_ts", errors.text());
}

#[test]
fn files_with_different_time_zones_units_and_schemas_agree() {
    let msgs = sample();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    // Same rows split over three files: UTC ms; naive local ns without the
    // optional flag columns; an Asia/Tokyo-zoned µs column; plus an empty file.
    write_messages(&input.join("a.parquet"), &msgs[0..1], Columns::default());
    write_messages(
        &input.join("b.parquet"),
        &msgs[1..2],
        Columns {
            naive_ts: true,
            unit: TimeUnit::Nanoseconds,
            ..Default::default()
        },
    );
    rewrite(&input.join("b.parquet"), |df| {
        *df = df.drop_many(["auto", "assist", "spam", "blocked", "peer_kind", "msg_id"]);
    });
    write_messages(
        &input.join("c.parquet"),
        &msgs[2..4],
        Columns {
            unit: TimeUnit::Microseconds,
            ..Default::default()
        },
    );
    rewrite(&input.join("c.parquet"), |df| {
        let ts = df
            .column("ts")
            .unwrap()
            .cast(&DataType::Datetime(
                TimeUnit::Microseconds,
                Some(unsafe { TimeZone::from_static("Asia/Tokyo") }),
            ))
            .unwrap();
        df.replace("ts", ts).unwrap();
    });
    write_messages(&input.join("d.parquet"), &[], Columns::default());
    let out = dir.path().join("out");
    let o = run(&input, &out, &[], &[]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(
        counts(&read_shop_daily(&out, "pdd", date(DAY)), "s1", PDD30),
        Some((1, 2))
    );
}

#[test]
fn ids_are_only_data_never_paths() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in/m.parquet");
    let long = "x".repeat(5000);
    let mut msgs = Vec::new();
    for shop in ["../escape", "/", "", long.as_str(), "店铺/一"] {
        let mut q = buyer(&format!("{DAY} 10:00:00"));
        q.shop = shop.to_string();
        q.agent_id = Some("../../agent".into());
        let mut a = agent(&format!("{DAY} 10:00:05"));
        a.shop = shop.to_string();
        msgs.extend([q, a]);
    }
    write_messages(&input, &msgs, Columns::default());
    let out = dir.path().join("out");
    let o = run(&input, &out, &[], &[]);
    assert!(o.status.success(), "{}", err(&o));
    let rows = read_shop_daily(&out, "pdd", date(DAY));
    for shop in ["../escape", "/", "", long.as_str(), "店铺/一"] {
        assert_eq!(
            counts(&rows, shop, PDD30),
            Some((1, 1)),
            "{}",
            &shop[..shop.len().min(20)]
        );
    }
    // Only kefu's own layout exists under the temp dir.
    for f in files_under(dir.path()) {
        let rel = f
            .strip_prefix(dir.path())
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        let ok = rel == "in/m.parquet"
            || rel == "out/.kefu.lock"
            || (rel.starts_with("out/")
                && rel.contains("/platform=pdd/dt=")
                && (rel.ends_with("/part-0.parquet") || rel.ends_with("/_manifest.json")));
        assert!(ok, "unexpected file {rel}");
    }
}

#[test]
fn refuses_output_inside_the_input_or_root() {
    let dir = tempfile::tempdir().unwrap();
    let mut errors = ErrorTable::new(dir.path());
    let input = dir.path().join("in");
    write_messages(&input.join("m.parquet"), &sample(), Columns::default());
    for (out, needle) in [
        (input.clone(), "is the same as the input"),
        (input.join("out"), "is inside the input"),
        (
            PathBuf::from("/"),
            "refusing to write into the root directory",
        ),
    ] {
        let o = run(&input, &out, &[], &[]);
        assert_eq!(o.status.code(), Some(2), "{}: {}", out.display(), err(&o));
        errors.add(needle, &o);
        assert!(err(&o).contains(needle), "{}: {}", out.display(), err(&o));
    }
    assert_eq!(
        files_under(&input),
        vec![input.join("m.parquet")],
        "nothing written into the input"
    );
    insta::assert_snapshot!("errors_output_placement", errors.text());
}

#[test]
fn a_second_run_on_the_same_output_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let mut errors = ErrorTable::new(dir.path());
    let input = dir.path().join("m.parquet");
    write_messages(&input, &sample(), Columns::default());
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    // Hold the lock as another run would.
    let held = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(out.join(".kefu.lock"))
        .unwrap();
    held.lock().unwrap();
    let o = run(&input, &out, &[], &[]);
    assert_eq!(o.status.code(), Some(75), "{}", err(&o));
    errors.add("output locked by another run", &o);
    assert!(
        err(&o).contains("another kefu run is writing to"),
        "{}",
        err(&o)
    );
    assert!(!out.join("shop_daily").exists());
    held.unlock().unwrap();
    let o = run(&input, &out, &[], &[]);
    assert!(o.status.success(), "{}", err(&o));
    insta::assert_snapshot!("errors_lock", errors.text());
}

#[test]
fn write_failures_are_retryable_and_leave_committed_partitions_intact() {
    let dir = tempfile::tempdir().unwrap();
    let mut errors = ErrorTable::new(dir.path());
    let input = dir.path().join("m.parquet");
    write_messages(&input, &sample(), Columns::default());
    let out = dir.path().join("out");
    let o = run(&input, &out, &[], &[]);
    assert!(o.status.success(), "{}", err(&o));
    let part = out.join(format!("shop_daily/platform=pdd/dt={DAY}/part-0.parquet"));
    let before = std::fs::read(&part).unwrap();

    // New data, and a disk that fills up while shop_daily is being written.
    let mut more = sample();
    more[1].ts_ms += 60_000;
    write_messages(&input, &more, Columns::default());
    let o = run(
        &input,
        &out,
        &[],
        &[("KEFU_INJECT_WRITE_FAULT", "shop_daily")],
    );
    assert_eq!(o.status.code(), Some(75), "{}", err(&o));
    errors.add("disk full while writing shop_daily", &o);
    assert!(
        err(&o).contains("no space left on device") && err(&o).contains("shop_daily"),
        "{}",
        err(&o)
    );
    assert_eq!(
        std::fs::read(&part).unwrap(),
        before,
        "the committed partition is unchanged"
    );
    let staged: Vec<_> = files_under(&out)
        .into_iter()
        .filter(|p| p.file_name().unwrap().to_str().unwrap().ends_with(".tmp"))
        .collect();
    assert!(staged.is_empty(), "staging files left: {staged:?}");

    // A table folder that cannot be created (a file is in the way): exit 75.
    let out2 = dir.path().join("out2");
    std::fs::create_dir_all(&out2).unwrap();
    std::fs::write(out2.join("agent_daily"), "in the way").unwrap();
    let o = run(&input, &out2, &[], &[]);
    assert_eq!(o.status.code(), Some(75), "{}", err(&o));
    errors.add("a file where the agent_daily folder goes", &o);
    assert!(err(&o).contains("agent_daily"), "{}", err(&o));
    insta::assert_snapshot!("errors_write_failures", errors.text());
}

#[test]
fn a_pathological_thread_completes() {
    // One buyer with 200,000 messages, alternating inquiries and replies.
    let mut msgs = Vec::with_capacity(200_000);
    let t0 = at(&format!("{DAY} 08:00:00"));
    for k in 0..100_000i64 {
        let mut q = buyer(&format!("{DAY} 08:00:00"));
        q.ts_ms = t0 + k * 500;
        let mut a = agent(&format!("{DAY} 08:00:00"));
        a.ts_ms = t0 + k * 500 + 100;
        msgs.extend([q, a]);
    }
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("m.parquet");
    write_messages(&input, &msgs, Columns::default());
    let out = dir.path().join("out");
    let o = run(&input, &out, &["--no-items"], &[]);
    assert!(o.status.success(), "{}", err(&o));
    let rows = read_shop_daily(&out, "pdd", date(DAY));
    assert_eq!(counts(&rows, "s1", PDD30), Some((100_000, 100_000)));
    assert_eq!(
        counts(&rows, "s1", "pdd.manual_reply_rate_3m"),
        Some((1, 1))
    );
}

/// A folder of deliberately broken inputs, each with its documented exit code
/// and a fragment of its message.
#[test]
fn sweep_of_broken_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let mut errors = ErrorTable::new(dir.path());
    let base = dir.path().join("broken");
    let good = |name: &str| -> PathBuf {
        let p = base.join(name).join("m.parquet");
        write_messages(&p, &sample(), Columns::default());
        p
    };
    let mut cases: Vec<(String, PathBuf, Vec<String>, i32, &str)> = Vec::new();

    let p = good("missing_column");
    rewrite(&p, |df| *df = df.drop("buyer_id").unwrap());
    cases.push((
        "missing required column".into(),
        p,
        vec![],
        65,
        "required column `buyer_id` is missing",
    ));

    let p = good("ts_string");
    rewrite(&p, |df| {
        let ts = df.column("ts").unwrap().cast(&DataType::String).unwrap();
        df.replace("ts", ts).unwrap();
    });
    cases.push(("ts as string".into(), p, vec![], 65, "column `ts` has type"));

    let p = good("flag_as_int");
    rewrite(&p, |df| {
        df.replace("spam", Column::new("spam".into(), vec![0i32; 4]))
            .unwrap();
    });
    cases.push((
        "boolean column as integer".into(),
        p,
        vec![],
        65,
        "`spam` must be a boolean",
    ));

    let p = good("binary_ids");
    rewrite(&p, |df| {
        let raw: Vec<&[u8]> = vec![b"s\xff1".as_slice(); 4];
        df.replace("shop_id", Column::new("shop_id".into(), raw))
            .unwrap();
    });
    cases.push((
        "non-UTF-8 (binary) shop_id".into(),
        p,
        vec![],
        65,
        "`shop_id` must be a string",
    ));

    let p = good("truncated");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    cases.push(("truncated parquet".into(), p, vec![], 65, "m.parquet"));

    let p = base.join("garbage/m.parquet");
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, b"PAR1 this is not parquet at all PAR1").unwrap();
    cases.push(("not parquet".into(), p, vec![], 65, "m.parquet"));

    let p = good("null_keys");
    rewrite(&p, |df| {
        df.replace(
            "buyer_id",
            Column::new("buyer_id".into(), vec![None::<&str>; 4]),
        )
        .unwrap();
    });
    cases.push(("null keys".into(), p, vec![], 65, "buyer_id is null"));

    let p = good("unknown_sender");
    rewrite(&p, |df| {
        df.replace("sender", Column::new("sender".into(), vec!["customer"; 4]))
            .unwrap();
    });
    cases.push((
        "unknown sender values".into(),
        p,
        vec![],
        65,
        "sender `customer`",
    ));

    let p = base.join("empty_dir");
    std::fs::create_dir_all(&p).unwrap();
    cases.push((
        "directory without parquet".into(),
        p,
        vec![],
        66,
        "holds no Parquet files",
    ));

    cases.push((
        "path that does not exist".into(),
        base.join("nope.parquet"),
        vec![],
        66,
        "no such file",
    ));
    cases.push((
        "glob matching nothing".into(),
        base.join("*.nothing"),
        vec![],
        66,
        "matches no file",
    ));

    let p = good("bad_rules");
    let rules = base.join("bad_rules/r.toml");
    std::fs::write(&rules, "[[metric]]\nid = \"x\"\nunit = \"buyer\"\nkind = \"mean_latency\"\nhours = \"08:00-23:00\"\nresponders = [\"manual\"]\ncap = -1\n").unwrap();
    cases.push((
        "negative cap".into(),
        p,
        vec!["--rules".into(), rules.to_str().unwrap().into()],
        78,
        "r.toml, line 7",
    ));

    for (what, input, extra, code, fragment) in cases {
        let out = dir.path().join("out").join(what.replace(' ', "_"));
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let o = run(&input, &out, &extra, &[]);
        assert_eq!(o.status.code(), Some(code), "{what}: {}", err(&o));
        errors.add(&what, &o);
        let e = err(&o);
        assert!(
            e.contains(fragment),
            "{what}: expected `{fragment}` in: {e}"
        );
        let error = e
            .split_once("kefu: error: ")
            .map(|x| x.1)
            .unwrap_or_else(|| panic!("{what}: no error line: {e}"));
        assert_eq!(
            error.trim_end().lines().count(),
            1,
            "{what}: not one paragraph: {e}"
        );
        assert!(
            !out.join("shop_daily").exists(),
            "{what}: partial output written"
        );
    }
    insta::assert_snapshot!("errors_broken_inputs", errors.text());
}

#[test]
fn a_glob_that_would_read_the_output_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut errors = ErrorTable::new(dir.path());
    write_messages(
        &dir.path().join("in/m.parquet"),
        &sample(),
        Columns::default(),
    );
    let out = dir.path().join("out");
    let pattern = format!("{}/**/*.parquet", dir.path().display());
    let args = [
        "run",
        "--input",
        &pattern,
        "--output",
        out.to_str().unwrap(),
        "--platform",
        "pdd",
        "--date",
        DAY,
    ];
    let o = kefu(&args, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    errors.add("a glob that matches the output", &o);
    assert!(
        err(&o).contains("is inside the input") && err(&o).contains("**/*.parquet"),
        "{}",
        err(&o)
    );
    // A narrower glob beside the output is fine.
    let pattern = format!("{}/in/*.parquet", dir.path().display());
    let args = [
        "run",
        "--input",
        &pattern,
        "--output",
        out.to_str().unwrap(),
        "--platform",
        "pdd",
        "--date",
        DAY,
    ];
    let o = kefu(&args, &[]);
    assert!(o.status.success(), "{}", err(&o));
    insta::assert_snapshot!("errors_glob_reading_output", errors.text());
}

/// Clears the immutable attribute again however the test ends.
struct Immutable(PathBuf);

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

#[test]
fn permission_denied_is_retryable_and_keeps_the_partition() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("m.parquet");
    write_messages(&input, &sample(), Columns::default());
    let out = dir.path().join("out");
    let o = run(&input, &out, &[], &[]);
    assert!(o.status.success(), "{}", err(&o));
    let partition = out.join(format!("shop_daily/platform=pdd/dt={DAY}"));
    let before = std::fs::read(partition.join("part-0.parquet")).unwrap();
    // An immutable folder refuses new files even to root (EPERM).
    let set = Command::new("chattr").arg("+i").arg(&partition).output();
    match &set {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            let why = String::from_utf8_lossy(&o.stderr);
            return cannot_run_here(&format!("chattr +i failed: {}", why.trim()));
        }
        Err(e) => return cannot_run_here(&format!("chattr is not available: {e}")),
    }
    let _guard = Immutable(partition.clone());
    // chattr can succeed without effect (a file system that ignores the
    // flag, or a process allowed to bypass it): then the test proves nothing.
    if std::fs::write(partition.join(".probe"), b"").is_ok() {
        let _ = std::fs::remove_file(partition.join(".probe"));
        return cannot_run_here("chattr +i does not stop writes here");
    }
    let o = run(&input, &out, &[], &[]);
    assert_eq!(o.status.code(), Some(75), "{}", err(&o));
    assert!(err(&o).contains("Operation not permitted"), "{}", err(&o));
    assert_eq!(
        std::fs::read(partition.join("part-0.parquet")).unwrap(),
        before
    );
}

#[test]
fn timestamps_far_from_the_run_are_ignored_and_absurd_ones_are_bad_rows() {
    let dir = tempfile::tempdir().unwrap();
    let mut errors = ErrorTable::new(dir.path());
    let input = dir.path().join("m.parquet");
    let mut msgs = sample();
    let mut old = buyer("1899-06-01 10:00:00");
    old.buyer = "old".into();
    let mut future = buyer("2199-06-01 10:00:00");
    future.buyer = "future".into();
    msgs.extend([old, future]);
    write_messages(&input, &msgs, Columns::default());
    let out = dir.path().join("out");
    let o = run(&input, &out, &[], &[]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(
        counts(&read_shop_daily(&out, "pdd", date(DAY)), "s1", PDD30),
        Some((1, 2))
    );
    // A run on 1899-06-01 reads the row before 1900: a bad row.
    let args = [
        "run",
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--platform",
        "pdd",
        "--date",
        "1899-06-01",
    ];
    let o = kefu(&args, &[]);
    assert_eq!(o.status.code(), Some(65), "{}", err(&o));
    errors.add("a run on 1899-06-01 (ts before 1900)", &o);
    assert!(
        err(&o).contains("ts is before 1900 or after 2200"),
        "{}",
        err(&o)
    );
    insta::assert_snapshot!("errors_absurd_timestamps", errors.text());
}
