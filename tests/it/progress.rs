//! What a run reports while it works (issue 21): the progress events the
//! library sends (platform-days counted consistently, a phase for each step
//! of a day), the log lines on a stderr that is not a terminal, and the
//! run summary's row count.

use std::collections::BTreeMap;
use std::path::Path;

use kefu::job::{Event, Phase, RunConfig};

use crate::common::*;

/// Writes `rows` generated rows over `days` days from 2026-03-14; returns
/// the row count.
fn gen(path: &Path, rows: u64, days: u32) -> u64 {
    let cfg = kefu::gen::GenConfig {
        seed: 21,
        rows,
        days,
        shops: 12,
        start: date("2026-03-14"),
        shuffled: true,
        row_group_size: None,
    };
    kefu::gen::write(&cfg, path).unwrap()
}

fn config(input: &Path, out: &Path, platform: &str, to: &str) -> RunConfig {
    RunConfig {
        input: input.to_str().unwrap().to_string(),
        output: out.to_path_buf(),
        platform: platform.to_string(),
        rules: kefu::rules::RuleSet::preset(platform).unwrap(),
        from: date("2026-03-14"),
        to: date(to),
        rules_as_of: None,
        strict: false,
        write_items: true,
        shard: kefu::shard::Shard::WHOLE,
        memory_budget: None,
        tables: Default::default(),
    }
}

/// What the events of a run said, in order.
#[derive(Debug, PartialEq)]
enum Seen {
    Started { done: usize, total: usize },
    Phase(chrono::NaiveDate, Phase, Vec<String>),
    Done,
}

#[test]
fn progress_counts_platform_days_and_reports_each_phase() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.parquet");
    gen(&input, 4_000, 2);
    let out = dir.path().join("out");
    // taobao has rolling windows: its first day back-fills window days.
    let cfgs = [
        config(&input, &out, "pdd", "2026-03-15"),
        config(&input, &out, "taobao", "2026-03-15"),
    ];
    let mut seen = Vec::new();
    let summaries = kefu::job::run_all(&cfgs, &mut |e| match e {
        Event::DayStarted { done, total, .. } => seen.push(Seen::Started { done, total }),
        Event::Phase {
            day,
            phase,
            platforms,
        } => seen.push(Seen::Phase(day, phase, platforms.to_vec())),
        Event::Line(_) => {}
        Event::DayDone(_) => seen.push(Seen::Done),
    })
    .unwrap();
    assert_eq!(summaries.len(), 4, "2 platforms x 2 days");

    // The length is the platform-days; the position never passes it and
    // reaches it when the run ends.
    let done_events = seen.iter().filter(|s| **s == Seen::Done).count();
    assert_eq!(done_events, 4);
    let mut position = 0;
    let mut starts = 0;
    for s in &seen {
        match s {
            Seen::Started { done, total } => {
                starts += 1;
                assert_eq!(*total, done_events, "{seen:?}");
                assert_eq!(*done, position, "a day starts where the last ended");
                assert!(done <= total);
            }
            Seen::Done => {
                position += 1;
                assert!(position <= done_events);
            }
            Seen::Phase(..) => {}
        }
    }
    assert_eq!(starts, 2, "one DayStarted per day of the run");
    assert_eq!(position, done_events);

    // Every day read (the run's and the window days back-filled) goes
    // reading, computing, writing, in that order.
    let mut phases: BTreeMap<chrono::NaiveDate, Vec<Phase>> = BTreeMap::new();
    for s in &seen {
        if let Seen::Phase(day, phase, platforms) = s {
            assert!(!platforms.is_empty());
            let list = phases.entry(*day).or_default();
            if list.last() != Some(phase) {
                list.push(*phase);
            }
        }
    }
    for day in ["2026-03-14", "2026-03-15"] {
        assert!(phases.contains_key(&date(day)), "no phase for {day}");
    }
    assert!(phases.len() > 2, "taobao's window days: {phases:?}");
    for (day, list) in &phases {
        assert_eq!(
            list,
            &[Phase::Reading, Phase::Computing, Phase::Writing],
            "{day}"
        );
    }
    // The shared read names both platforms; each platform's own tables name it.
    let of = |day: &str, phase: Phase| -> Vec<Vec<String>> {
        seen.iter()
            .filter_map(|s| match s {
                Seen::Phase(d, p, who) if *d == date(day) && *p == phase => Some(who.clone()),
                _ => None,
            })
            .collect()
    };
    assert_eq!(
        of("2026-03-15", Phase::Reading),
        vec![vec!["pdd", "taobao"]]
    );
    assert!(of("2026-03-15", Phase::Writing).contains(&vec!["taobao".to_string()]));
}

/// `kefu run` through the binary (stderr is a pipe, not a terminal).
fn run(input: &Path, out: &Path, platform: &str, to: &str) -> String {
    let o = run_bin(&[
        "run",
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--platform",
        platform,
        "--date",
        "2026-03-14",
        "--to",
        to,
    ]);
    String::from_utf8(o.stderr).unwrap()
}

/// The summary's `R rows read, B bad` (the last line).
fn summary_counts(stderr: &str) -> (u64, u64) {
    let last = stderr.lines().last().unwrap();
    assert!(last.starts_with("kefu: done: "), "{last}");
    let field = |name: &str| -> u64 {
        let before = &last[..last.find(name).unwrap_or_else(|| panic!("{last}"))];
        before.rsplit([' ', ',']).next().unwrap().parse().unwrap()
    };
    (field(" rows read"), field(" bad,"))
}

#[test]
fn the_log_on_a_pipe_is_plain_lines_without_the_bar() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.parquet");
    gen(&input, 3_000, 2);
    let stderr = run(&input, &dir.path().join("out"), "pdd,taobao", "2026-03-15");
    assert!(
        !stderr.contains('\r') && !stderr.contains('\u{1b}'),
        "{stderr}"
    );
    assert!(!stderr.contains("platform-days"), "{stderr}");
    for line in stderr.lines() {
        assert!(line.starts_with("kefu: "), "{line:?}");
        // Phases are for the bar; the log says what was read and done.
        for phase in [": reading", ": computing", ": writing"] {
            assert!(!line.ends_with(phase), "{line:?}");
        }
    }
    assert!(stderr.contains("kefu: 2026-03-15: reading 1 file(s) for 2026-03-15 and 2026-03-16"));
    assert!(stderr.contains("kefu:   pdd 2026-03-15: "), "{stderr}");
    assert!(stderr.ends_with("s\n"), "{stderr}");
}

#[test]
fn the_summary_counts_each_row_once_whatever_the_platforms() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.parquet");
    let rows = gen(&input, 20_000, 3);
    // Every day of the file: 2026-03-14 to 2026-03-16, and 2026-03-17 for
    // the replies after the last midnight.
    let one = run(&input, &dir.path().join("one"), "pdd", "2026-03-17");
    let (read, bad) = summary_counts(&one);
    assert_eq!(bad, 0, "generated rows are never bad");
    // Bad rows included (none here), duplicates and non-consumer rows too.
    assert_eq!(read, rows, "{one}");
    let all = run(&input, &dir.path().join("all"), "all", "2026-03-17");
    assert_eq!(summary_counts(&all), (read, bad), "{all}");
    let last = |s: &str| s.lines().last().unwrap().to_string();
    assert!(last(&one).starts_with("kefu: done: 4 day(s), "), "{one}");
    assert!(
        last(&all).starts_with("kefu: done: 4 day(s) x 6 platforms, "),
        "{all}"
    );
}
