//! One `kefu run`: for each day, read the day and its horizon, compute every
//! metric in force, commit the partitions. Takes resolved configuration only.

use std::path::PathBuf;
use std::time::Instant;

use chrono::NaiveDate;

use crate::engine::{self, EngineOptions};
use crate::error::{Error, Result};
use crate::input::{self, DayRange};
use crate::output;
use crate::rules::RuleSet;

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
}

/// What one day did, for the summary.
#[derive(Debug, Clone)]
pub struct DaySummary {
    pub day: NaiveDate,
    pub files: usize,
    pub rows_read: u64,
    pub bad_rows: u64,
    pub duplicates: u64,
    /// (metric id, counted items, excluded items).
    pub items: Vec<(String, u64, u64)>,
    pub shop_rows: usize,
    /// The next day had no messages: replies after midnight were not seen.
    pub next_day_missing: bool,
    pub seconds: f64,
}

/// Progress of a run, for the caller to show (a bar on a terminal, log lines
/// otherwise).
#[derive(Debug)]
pub enum Event<'a> {
    /// Day `index` (0-based) of `total` starts.
    DayStarted {
        index: usize,
        total: usize,
        day: NaiveDate,
    },
    /// A line for the log: what is being read, warnings, counts.
    Line(&'a str),
    /// A day is committed.
    DayDone(&'a DaySummary),
}

/// Runs every day of `cfg` in order, committing each before the next; the
/// first failure stops the run. `progress` receives [`Event`]s.
pub fn run(cfg: &RunConfig, progress: &mut dyn FnMut(Event)) -> Result<Vec<DaySummary>> {
    if cfg.to < cfg.from {
        return Err(Error::Usage(format!(
            "--to {} is before --date {}",
            cfg.to, cfg.from
        )));
    }
    let days: Vec<NaiveDate> = cfg.from.iter_days().take_while(|d| *d <= cfg.to).collect();
    let mut out = Vec::new();
    for (k, &day) in days.iter().enumerate() {
        progress(Event::DayStarted {
            index: k,
            total: days.len(),
            day,
        });
        let started = Instant::now();
        let as_of = cfg.rules_as_of.unwrap_or(day);
        let metrics = cfg.rules.in_force(as_of);
        let next = day
            .succ_opt()
            .ok_or_else(|| Error::Usage(format!("--date {day} is out of range")))?;
        let keep = (
            day.pred_opt().unwrap_or(day),
            next.succ_opt().unwrap_or(next),
        );
        let files = input::discover(&cfg.input, keep)?;
        line(
            progress,
            &format!(
                "[{}/{}] {day}: reading {} file(s) for {day} and {next}",
                k + 1,
                days.len(),
                files.len()
            ),
        );
        let msgs = input::load(
            &files,
            &cfg.rules.input,
            DayRange {
                first: day,
                last: next,
            },
            cfg.strict,
        )?;
        let stats = &msgs.stats;
        for ex in &stats.bad_examples {
            line(progress, &format!("  warning: bad row skipped: {ex}"));
        }
        let day_rows = stats
            .rows_per_day
            .iter()
            .find(|(d, _)| *d == day)
            .map_or(0, |x| x.1);
        let next_rows = stats
            .rows_per_day
            .iter()
            .find(|(d, _)| *d == next)
            .map_or(0, |x| x.1);
        if day_rows == 0 {
            line(
                progress,
                &format!("  warning: no messages on {day}: writing empty partitions"),
            );
        }
        let next_day_missing = next_rows == 0;
        if next_day_missing {
            line(progress, &format!(
                "  warning: no messages on {next}: replies after midnight are not seen yet, so {day} \
                 is provisional; re-run it once {next} has landed"
            ));
        }
        let result = engine::compute_day(
            &msgs,
            &metrics,
            day,
            EngineOptions {
                keep_items: cfg.write_items,
            },
        );

        let polars_err = |table: &str, e: polars::error::PolarsError| {
            Error::Io(format!("cannot build table {table} for {day}: {e}"))
        };
        let mut shop = output::shop_daily(&msgs, &metrics, &result)
            .map_err(|e| polars_err("shop_daily", e))?;
        let mut agent = output::agent_daily(&msgs, &metrics, &result)
            .map_err(|e| polars_err("agent_daily", e))?;
        let shop_rows = shop.height();
        output::commit_partition(&cfg.output, "shop_daily", &cfg.platform, day, &mut shop)?;
        output::commit_partition(&cfg.output, "agent_daily", &cfg.platform, day, &mut agent)?;
        if cfg.write_items {
            let mut items =
                output::items(&msgs, &metrics, &result).map_err(|e| polars_err("items", e))?;
            output::commit_partition(&cfg.output, "items", &cfg.platform, day, &mut items)?;
        }
        let summary = DaySummary {
            day,
            files: files.len(),
            rows_read: stats.rows_read,
            bad_rows: stats.bad_rows,
            duplicates: stats.duplicates,
            items: metrics
                .iter()
                .zip(&result.totals)
                .map(|(m, t)| (m.id.clone(), t.counted, t.excluded))
                .collect(),
            shop_rows,
            next_day_missing,
            seconds: started.elapsed().as_secs_f64(),
        };
        line(
            progress,
            &format!(
                "  {day}: {} rows read, {} bad, {} duplicate; {} shop rows; {:.2}s",
                summary.rows_read, summary.bad_rows, summary.duplicates, shop_rows, summary.seconds
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
    Ok(out)
}

fn line(progress: &mut dyn FnMut(Event), text: &str) {
    progress(Event::Line(text));
}
