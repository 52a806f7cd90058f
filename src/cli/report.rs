//! What a run tells its operator on stderr: a progress bar when stderr is a
//! terminal (log lines printed above it), plain `kefu: ...` lines otherwise,
//! and the one-line summary at the end.

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::time::Instant;

use kefu::error::Result;
use kefu::job::{DaySummary, Event, RunConfig};

/// Runs the native engine on `cfgs`, showing progress, then prints the summary.
pub fn run_native(cfgs: &[RunConfig]) -> Result<()> {
    let started = Instant::now();
    let days = if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(0).with_style(
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} days {msg} [{elapsed}]")
                .expect("a valid template"),
        );
        let result = kefu::job::run_all(cfgs, &mut |event| match event {
            Event::DayStarted { total, day, .. } => {
                bar.set_length(total as u64);
                bar.set_message(day.to_string());
            }
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

/// `kefu: done: D day(s)[ x P platforms], R rows read, B bad, output in DIR, Ts`.
fn summary(cfgs: &[RunConfig], days: &[DaySummary], started: Instant) {
    // Rows are read once per day for all platforms: count one platform's.
    let first = &days.first().map(|d| d.platform.clone()).unwrap_or_default();
    let days_read = days.iter().filter(|d| &d.platform == first);
    let rows: u64 = days_read.clone().map(|d| d.rows_read).sum();
    let bad: u64 = days_read.map(|d| d.bad_rows).sum();
    let platforms = cfgs.len();
    eprintln!(
        "kefu: done: {} day(s){}, {rows} rows read, {bad} bad, output in {}, {:.2}s",
        days.iter().map(|d| d.day).collect::<BTreeSet<_>>().len(),
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
    for job in jobs {
        let script = kefu::spark::script(job)?;
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
