//! What a run tells its operator on stderr: a progress bar when stderr is a
//! terminal (log lines printed above it), plain `kefu: ...` lines otherwise,
//! and the one-line summary at the end.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::Instant;

use chrono::NaiveDate;
use kefu::error::Result;
use kefu::job::{DaySummary, Event, Phase, RunConfig};

/// Runs the native engine on `cfgs`, showing progress, then prints the summary.
pub fn run_native(cfgs: &[RunConfig]) -> Result<()> {
    let started = Instant::now();
    let days = if std::io::stderr().is_terminal() {
        let bar = progress_bar(cfgs.len());
        // The run's day being worked on (a phase may be a window day's).
        let mut current = None;
        let result = kefu::job::run_all(cfgs, &mut |event| match event {
            Event::DayStarted {
                done, total, day, ..
            } => {
                current = Some(day);
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            }
            Event::Phase {
                day,
                phase,
                platforms,
            } => bar.set_message(phase_message(current, day, phase, platforms, cfgs.len())),
            Event::Line(line) => bar.println(line),
            Event::DayDone(_) => bar.inc(1),
        });
        bar.finish_and_clear();
        result?
    } else {
        kefu::job::run_all(cfgs, &mut |event| {
            if let Event::Line(line) = event {
                eprintln!("kefu: {line}");
            }
        })?
    };
    summary(cfgs, &days, started);
    Ok(())
}

/// The terminal's bar: its length is the run's platform-days (plain days
/// for one platform), its message the phase the work is in, and it ticks on
/// its own so that the clock moves during a long read or compute.
fn progress_bar(platforms: usize) -> indicatif::ProgressBar {
    let unit = if platforms > 1 {
        format!("platform-days ({platforms} platforms)")
    } else {
        "days".to_string()
    };
    // No length until the first day starts (a length of 0 draws full).
    let bar = indicatif::ProgressBar::no_length().with_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{{spinner}} {{bar:30}} {{pos}}/{{len}} {unit} {{msg}} [{{elapsed}}]"
        ))
        .expect("a valid template"),
    );
    bar.set_message("starting");
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}

/// `DAY: PHASE[ window day D][ PLATFORM]`: a window day the run's day
/// back-fills is named, and so is the platform when the phase is one
/// platform's in a run of several.
fn phase_message(
    current: Option<NaiveDate>,
    day: NaiveDate,
    phase: Phase,
    platforms: &[String],
    run: usize,
) -> String {
    let mut text = match current {
        Some(c) if c != day => format!("{c}: {phase} window day {day}"),
        _ => format!("{day}: {phase}"),
    };
    if let [one] = platforms {
        if run > 1 {
            text.push(' ');
            text.push_str(one);
        }
    }
    text
}

/// `kefu: done: D day(s)[ x P platforms], R rows read, B bad, output in DIR, Ts`.
///
/// R counts each input row of the run's days once: for each day computed,
/// the rows whose local day it is (a day's read also holds its next day's
/// rows, which that day's own read counts), plus the bad rows. The days are
/// read once for all platforms, so the figures do not depend on how many
/// platforms run. A bad row cannot be placed on one day (the summaries
/// count a read's bad rows, and two reads see a bad row of the day they
/// share), so B is the most bad rows one day's read saw: exact when the bad
/// rows have no `ts` or the run reads one day.
fn summary(cfgs: &[RunConfig], days: &[DaySummary], started: Instant) {
    // One summary per day (any platform's: they share the day's read).
    let mut per_day: BTreeMap<NaiveDate, &DaySummary> = BTreeMap::new();
    for d in days {
        per_day.entry(d.day).or_insert(d);
    }
    let bad: u64 = per_day.values().map(|d| d.bad_rows).max().unwrap_or(0);
    let rows: u64 = per_day.values().map(|d| d.rows_on_day).sum::<u64>() + bad;
    let platforms = cfgs.len();
    eprintln!(
        "kefu: done: {} day(s){}, {rows} rows read, {bad} bad, output in {}, {:.2}s",
        per_day.len(),
        if platforms > 1 {
            format!(" x {platforms} platforms")
        } else {
            String::new()
        },
        cfgs[0].output.display(),
        started.elapsed().as_secs_f64()
    );
}

/// Submits each job's script to Spark Connect, a line per job and statement.
pub fn run_spark(
    remote: &str,
    jobs: &[kefu::spark::SparkJob],
    output: &std::path::Path,
) -> Result<()> {
    let started = Instant::now();
    // Every script first: a job refused (say, for its scorecard metrics)
    // stops the run before anything is submitted.
    let scripts = jobs
        .iter()
        .map(kefu::spark::script)
        .collect::<Result<Vec<String>>>()?;
    for (job, script) in jobs.iter().zip(scripts) {
        for note in kefu::spark::skipped(job) {
            eprintln!("kefu: {}: note: {note}", job.platform);
        }
        eprintln!(
            "kefu: {}: submitting {} .. {} to {remote}",
            job.platform, job.from, job.to
        );
        kefu::spark::connect::submit(remote, &script, &mut |l| eprintln!("kefu: {l}"))?;
    }
    eprintln!(
        "kefu: done: {} platform(s) on Spark, output in {}, {:.2}s",
        jobs.len(),
        output.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
