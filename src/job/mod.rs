//! One `kefu run`: for each day, read the day and its horizon, compute every
//! metric in force, commit the daily partitions, then the rolling windows and
//! the alerts built on them. Takes resolved configuration only.
//!
//! Each day is committed before the next starts, table by table, each
//! partition atomically and followed by its manifest (`_manifest.json`:
//! kefu version, rules hash, input files and row counts, bad rows, whether
//! the next day's messages were there). A day computed without its next
//! day's messages is *provisional*; the next run that computes the following
//! day recomputes it first, so a nightly run for D also finalises D−1.
//!
//! The parts: [`day`] computes and commits a day's daily tables,
//! [`windows`] the rolling windows, [`alerts`] the alerts, and [`commit`]
//! is how every table's partition is written (and in which order).

mod alerts;
mod commit;
mod day;
mod scorecard;
mod windows;

use std::path::PathBuf;
use std::time::Instant;

use chrono::NaiveDate;

use crate::error::{Error, Result};
use crate::input;
use crate::output;
use crate::rules::{Metric, RuleSet};
use crate::shard::Shard;
use commit::is_provisional;
use day::{daily, Carried};

/// A resolved run.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// A file, a directory or a glob.
    pub input: String,
    pub output: PathBuf,
    /// The `platform=` partition.
    pub platform: String,
    pub rules: RuleSet,
    pub from: NaiveDate,
    /// Inclusive.
    pub to: NaiveDate,
    /// Compute every day with the versions in force on this date.
    pub rules_as_of: Option<NaiveDate>,
    pub strict: bool,
    /// Write the `items` table.
    pub write_items: bool,
    /// Compute only this shard's shops ([`Shard::WHOLE`] for all).
    pub shard: Shard,
    /// About how many bytes a day may hold in memory; `None` holds each day
    /// whole (see [`input::MemoryPlan`]).
    pub memory_budget: Option<u64>,
    /// The scorecard tables given to the run (SPEC §8.1).
    pub tables: TablePaths,
}

/// The paths of the scorecard tables (`--orders`, …; each a file, a
/// directory or a glob), `None` when not given: the metrics that read a
/// table not given are skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TablePaths {
    pub orders: Option<String>,
    pub refunds: Option<String>,
    pub complaints: Option<String>,
    pub ratings: Option<String>,
}

impl TablePaths {
    /// Whether any table is given (then `items` has the scorecard columns).
    pub fn any(&self) -> bool {
        self.orders.is_some()
            || self.refunds.is_some()
            || self.complaints.is_some()
            || self.ratings.is_some()
    }
}

/// What one day did, for the summary.
#[derive(Debug, Clone)]
pub struct DaySummary {
    pub platform: String,
    pub day: NaiveDate,
    pub files: usize,
    /// Rows the day's read saw: the day's and its next day's (the reply
    /// horizon), bad rows included. The next day's rows are read again by
    /// that day's own read, so summing this over days counts them twice:
    /// see `rows_on_day`.
    pub rows_read: u64,
    /// Rows whose local day is this day (before de-duplication and the
    /// `peer_kind` filter; bad rows not included): over the days of a run,
    /// each input row of those days counted once.
    pub rows_on_day: u64,
    pub bad_rows: u64,
    pub duplicates: u64,
    /// Messages on the day (after de-duplication).
    pub messages_on_day: u64,
    /// (metric id, counted items, excluded items).
    pub items: Vec<(String, u64, u64)>,
    /// Notes on the scorecard metrics in force that were skipped, e.g.
    /// "skipped pdd.inquiry_conversion_rate: needs --orders".
    pub skipped: Vec<String>,
    pub shop_rows: usize,
    pub rolling_rows: usize,
    pub alert_rows: usize,
    /// The next day had no messages: replies after midnight were not seen.
    pub provisional: bool,
    /// This platform's time for the day: the day's read and compute and its
    /// window back-fill (shared with the platforms of the same read), then
    /// its own commit, rolling windows and alerts. Not a running total of
    /// the platforms before it.
    pub seconds: f64,
}

/// Progress of a run, for the caller to show (a bar on a terminal, log lines
/// otherwise).
#[derive(Debug)]
pub enum Event<'a> {
    /// A day of the run starts, for `platforms` platforms. The run's work is
    /// counted in platform-days (a day of one platform): `done` of `total`
    /// are committed. Each platform-day ends with one [`Event::DayDone`], so
    /// `done` reaches `total` exactly when the run ends.
    DayStarted {
        done: usize,
        total: usize,
        day: NaiveDate,
        platforms: usize,
    },
    /// Work on `day` (a day of the run, or a window day it back-fills)
    /// enters `phase`, for `platforms` (those sharing the read, or the one
    /// platform whose tables are written).
    Phase {
        day: NaiveDate,
        phase: Phase,
        platforms: &'a [String],
    },
    /// A line for the log: what is being read, warnings, counts.
    Line(&'a str),
    /// A platform's day is committed.
    DayDone(&'a DaySummary),
}

/// What a day's work is doing, in this order for each read: reading the
/// input, computing the metrics, writing the partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Reading,
    Computing,
    Writing,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::Reading => "reading",
            Phase::Computing => "computing",
            Phase::Writing => "writing",
        })
    }
}

type Progress<'a> = &'a mut dyn FnMut(Event);

fn line(progress: &mut dyn FnMut(Event), text: &str) {
    progress(Event::Line(text));
}

/// Says that `cfgs`' work on `day` enters `phase`.
fn phase(progress: &mut dyn FnMut(Event), day: NaiveDate, phase: Phase, cfgs: &[&RunConfig]) {
    let platforms: Vec<String> = cfgs.iter().map(|c| c.platform.clone()).collect();
    progress(Event::Phase {
        day,
        phase,
        platforms: &platforms,
    });
}

/// Runs every day of `cfg` in order, committing each before the next; the
/// first failure stops the run. `progress` receives [`Event`]s.
pub fn run(cfg: &RunConfig, progress: Progress) -> Result<Vec<DaySummary>> {
    run_all(std::slice::from_ref(cfg), progress)
}

/// Runs several platforms over the same input, output and days: each day's
/// input is read once for all platforms sharing the same `[input]` settings
/// (the presets all do), and every platform's partitions are committed
/// before the next day starts. `cfgs` must agree on everything but
/// `platform` and `rules`.
pub fn run_all(cfgs: &[RunConfig], progress: Progress) -> Result<Vec<DaySummary>> {
    let Some(c0) = cfgs.first() else {
        return Err(Error::Usage("no platform to run".into()));
    };
    for c in cfgs {
        if (&c.input, &c.output, c.from, c.to, c.shard, &c.tables)
            != (&c0.input, &c0.output, c0.from, c0.to, c0.shard, &c0.tables)
        {
            return Err(Error::Usage(
                "platforms of one run must share input, output, days, shard and tables".into(),
            ));
        }
    }
    let cfg = c0;
    if cfg.to < cfg.from {
        return Err(Error::Usage(format!(
            "--to {} is before --date {}",
            cfg.to, cfg.from
        )));
    }
    output::check_output_dir(&cfg.input, &cfg.output)?;
    // Fail on a missing input before creating anything.
    let first = cfg.from.pred_opt().unwrap_or(cfg.from);
    input::discover(&cfg.input, (first, cfg.to + chrono::Duration::days(2)))?;
    let _lock = output::lock(&cfg.output, cfg.shard)?;
    output::remove_stale_spill(&cfg.output, cfg.shard);
    let mut days_of: Vec<Vec<NaiveDate>> = Vec::new();
    for c in cfgs {
        output::remove_stale_staging_all(&c.output, &c.platform, c.shard);
        let mut days: Vec<NaiveDate> = c.from.iter_days().take_while(|d| *d <= c.to).collect();
        // Finalise the day before the run if it was written provisionally.
        if let Some(prev) = c.from.pred_opt() {
            if is_provisional(c, prev) {
                line(
                    progress,
                    &format!(
                        "{}{prev} was provisional (its next day had not landed, or a killed run left it incomplete): recomputing it",
                        tag(cfgs, c)
                    ),
                );
                days.insert(0, prev);
            }
        }
        days_of.push(days);
    }
    for (c, days) in cfgs.iter().zip(&days_of) {
        if let Some(text) = nothing_in_force(c, days) {
            line(progress, &text);
        }
    }
    let all_days: std::collections::BTreeSet<NaiveDate> =
        days_of.iter().flatten().copied().collect();
    let first_day = all_days.first().copied().unwrap_or(cfg.from);
    let tables = scorecard::ScoreTables::load(cfgs, (first_day, cfg.to), progress)?;
    // Progress counts platform-days: each ends with one `DayDone`.
    let total: usize = days_of.iter().map(Vec::len).sum();
    let mut empty_window_days = windows::EmptyWindowDays::default();
    let mut out = Vec::new();
    for &day in &all_days {
        // What this day's read counts for the empty window days before it.
        let mut carried = Carried::default();
        let who: Vec<&RunConfig> = cfgs
            .iter()
            .zip(&days_of)
            .filter(|(_, days)| days.contains(&day))
            .map(|(c, _)| c)
            .collect();
        progress(Event::DayStarted {
            done: out.len(),
            total,
            day,
            platforms: who.len(),
        });
        let summaries = daily(&who, day, false, &mut carried, &tables, progress)?;
        // Every window day committed first: the windows only read them.
        let backfill = Instant::now();
        windows::backfill_windows(
            &who,
            day,
            &mut carried,
            &tables,
            &mut empty_window_days,
            progress,
        )?;
        let backfill = backfill.elapsed().as_secs_f64();
        for (c, mut summary) in who.iter().zip(summaries) {
            let own = Instant::now();
            phase(progress, day, Phase::Writing, std::slice::from_ref(c));
            let mut window = windows::rolling(c, day)?;
            windows::commit_rolling(c, day, &mut window)?;
            summary.rolling_rows = window.rows.len();
            summary.alert_rows = alerts::alerts(c, day, &window.rows, summary.provisional)?;
            // The day's shared work (set by `daily`), then this platform's.
            summary.seconds += backfill + own.elapsed().as_secs_f64();
            line(
                progress,
                &format!(
                    "  {}{day}: {} rows read, {} bad, {} duplicate; {} shop rows, {} rolling rows, {} alerts; {:.2}s",
                    tag(cfgs, c),
                    summary.rows_read,
                    summary.bad_rows,
                    summary.duplicates,
                    summary.shop_rows,
                    summary.rolling_rows,
                    summary.alert_rows,
                    summary.seconds
                ),
            );
            for (id, counted, excluded) in &summary.items {
                line(
                    progress,
                    &format!("    {id}: {counted} items counted, {excluded} excluded"),
                );
            }
            progress(Event::DayDone(&summary));
            out.push(summary);
        }
    }
    if let Some(text) = empty_window_days.summary() {
        line(progress, &text);
    }
    // Scorecard metrics skipped for want of their tables: once per run, not
    // once per day.
    let mut skipped: Vec<String> = Vec::new();
    for s in &out {
        for note in &s.skipped {
            let note = match cfgs.len() {
                1 => note.clone(),
                _ => format!("{}: {note}", s.platform),
            };
            if !skipped.contains(&note) {
                skipped.push(note);
            }
        }
    }
    for note in skipped {
        line(progress, &format!("note: {note}"));
    }
    Ok(out)
}

/// The warning for the days of `days` on which no metric version of `cfg`'s
/// rules is in force (a preset's legacy days, or a rule file whose every
/// version starts later): they are computed and written with no rows, which
/// would otherwise pass unnoticed. None when every day has one.
fn nothing_in_force(cfg: &RunConfig, days: &[NaiveDate]) -> Option<String> {
    if let Some(as_of) = cfg.rules_as_of {
        return metrics_for(cfg, as_of).is_empty().then(|| {
            format!(
                "{}: no metric version of the rules is in force on {as_of} (--rules-as-of): nothing to compute for {}",
                cfg.platform,
                day_ranges(days)
            )
        });
    }
    let idle: Vec<NaiveDate> = days
        .iter()
        .copied()
        .filter(|&d| metrics_for(cfg, d).is_empty())
        .collect();
    (!idle.is_empty()).then(|| {
        format!(
            "{}: no metric version of the rules is in force on {}: nothing to compute (see --rules-as-of to use the versions of another date)",
            cfg.platform,
            day_ranges(&idle)
        )
    })
}

/// Sorted days as ranges of consecutive days: `2020-01-01..2020-01-03,
/// 2020-01-05`.
fn day_ranges(days: &[NaiveDate]) -> String {
    let mut sorted = days.to_vec();
    sorted.sort();
    let mut ranges: Vec<(NaiveDate, NaiveDate)> = Vec::new();
    for d in sorted {
        match ranges.last_mut() {
            Some((_, last)) if last.succ_opt() == Some(d) => *last = d,
            _ => ranges.push((d, d)),
        }
    }
    ranges
        .iter()
        .map(|(a, b)| match a == b {
            true => a.to_string(),
            false => format!("{a}..{b}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// "platform " in a run of several platforms, else nothing.
fn tag(cfgs: &[RunConfig], c: &RunConfig) -> String {
    if cfgs.len() > 1 {
        format!("{} ", c.platform)
    } else {
        String::new()
    }
}

/// The rule versions that compute `day`: the message metrics, then the
/// scorecard metrics whose tables the run was given (the others are
/// skipped: no rows, no windows, no alerts).
fn metrics_for(cfg: &RunConfig, day: NaiveDate) -> Vec<&Metric> {
    let as_of = cfg.rules_as_of.unwrap_or(day);
    let mut out = cfg.rules.in_force(as_of);
    if cfg.tables.any() {
        let given = scorecard::given(&cfg.tables);
        out.extend(
            cfg.rules
                .scores_in_force(as_of)
                .into_iter()
                .filter(|m| scorecard::skip_reason(m, Some(&given)).is_none()),
        );
    }
    out
}
