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

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use chrono::NaiveDate;
use serde_json::json;
use sha2::{Digest, Sha256};

use polars::prelude::DataFrame;

use crate::engine;
use crate::error::{Error, Result};
use crate::input::{self, DayRange};
use crate::output::{self, AlertRow, MetricRow};
use crate::rules::{Metric, RuleSet};
use crate::shard::Shard;

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
}

/// What one day did, for the summary.
#[derive(Debug, Clone)]
pub struct DaySummary {
    pub platform: String,
    pub day: NaiveDate,
    pub files: usize,
    pub rows_read: u64,
    pub bad_rows: u64,
    pub duplicates: u64,
    /// (metric id, counted items, excluded items).
    pub items: Vec<(String, u64, u64)>,
    pub shop_rows: usize,
    pub rolling_rows: usize,
    pub alert_rows: usize,
    /// The next day had no messages: replies after midnight were not seen.
    pub provisional: bool,
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

type Progress<'a> = &'a mut dyn FnMut(Event);

fn line(progress: &mut dyn FnMut(Event), text: &str) {
    progress(Event::Line(text));
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
        if (&c.input, &c.output, c.from, c.to, c.shard)
            != (&c0.input, &c0.output, c0.from, c0.to, c0.shard)
        {
            return Err(Error::Usage(
                "platforms of one run must share input, output, days and shard".into(),
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
    let all_days: std::collections::BTreeSet<NaiveDate> =
        days_of.iter().flatten().copied().collect();
    let mut out = Vec::new();
    for (k, &day) in all_days.iter().enumerate() {
        // What this day's read counts for the empty window days before it.
        let mut carried = Carried::default();
        progress(Event::DayStarted {
            index: k,
            total: all_days.len(),
            day,
        });
        let started = Instant::now();
        let who: Vec<&RunConfig> = cfgs
            .iter()
            .zip(&days_of)
            .filter(|(_, days)| days.contains(&day))
            .map(|(c, _)| c)
            .collect();
        let summaries = daily(&who, day, false, &mut carried, progress)?;
        backfill_windows(&who, day, &mut carried, progress)?;
        for (c, mut summary) in who.iter().zip(summaries) {
            let rolling = rolling(c, day, &mut carried, progress)?;
            summary.rolling_rows = rolling.len();
            summary.alert_rows = alerts(c, day, &rolling, summary.provisional)?;
            summary.seconds = started.elapsed().as_secs_f64();
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
    Ok(out)
}

/// Computes, for all of `cfgs` at once (one read per day), the window days
/// of `day`'s rolling metrics that have no `shop_daily` partition yet;
/// [`rolling`] then finds them committed.
fn backfill_windows(
    cfgs: &[&RunConfig],
    day: NaiveDate,
    carried: &mut Carried,
    progress: Progress,
) -> Result<()> {
    let mut need: BTreeMap<NaiveDate, Vec<&RunConfig>> = BTreeMap::new();
    for &c in cfgs {
        for back in 1..widest_window(c, day) {
            let d = day - chrono::Duration::days(back as i64);
            if !output::is_committed(&c.output, "shop_daily", &c.platform, d, c.shard) {
                need.entry(d).or_default().push(c);
            }
        }
    }
    for (d, who) in need.into_iter().rev() {
        if who.len() < 2 {
            continue; // rolling() computes it, as for a single platform
        }
        line(
            progress,
            &format!(
                "  {day}: the windows need {d}, which has no shop_daily partition: computing it"
            ),
        );
        match daily(&who, d, true, carried, progress) {
            Ok(_) => {}
            // No input for that day at all: rolling() warns, it adds nothing.
            Err(Error::NoInput(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// "platform " in a run of several platforms, else nothing.
fn tag(cfgs: &[RunConfig], c: &RunConfig) -> String {
    if cfgs.len() > 1 {
        format!("{} ", c.platform)
    } else {
        String::new()
    }
}

/// Commits one table's partition for `day`, then its manifest: the common
/// fields (kefu version, shard, table, platform, dt, rows) and `extra`.
fn commit_table(
    cfg: &RunConfig,
    table: &str,
    day: NaiveDate,
    df: &mut polars::prelude::DataFrame,
    extra: serde_json::Value,
) -> Result<()> {
    output::retract_manifest(&cfg.output, table, &cfg.platform, day, cfg.shard)?;
    output::commit_partition(&cfg.output, table, &cfg.platform, day, cfg.shard, df)?;
    commit_manifest(cfg, table, day, df.height(), extra)
}

/// Commits a table's manifest for `day`: the common fields (kefu version,
/// shard, table, platform, dt, rows) and `extra`.
fn commit_manifest(
    cfg: &RunConfig,
    table: &str,
    day: NaiveDate,
    rows: usize,
    extra: serde_json::Value,
) -> Result<()> {
    let mut manifest = json!({
        "kefu_version": env!("CARGO_PKG_VERSION"),
        "shard": cfg.shard.to_string(),
        "table": table,
        "platform": cfg.platform,
        "dt": day.to_string(),
        "rows": rows,
    });
    if let (Some(m), serde_json::Value::Object(extra)) = (manifest.as_object_mut(), extra) {
        m.extend(extra);
    }
    output::commit_manifest(&cfg.output, table, &cfg.platform, day, cfg.shard, &manifest)
}

/// The rule versions that compute `day`.
fn metrics_for(cfg: &RunConfig, day: NaiveDate) -> Vec<&Metric> {
    cfg.rules.in_force(cfg.rules_as_of.unwrap_or(day))
}

/// A stable hash of what decides a day's numbers: input settings and the
/// metric versions in force.
fn rules_hash(cfg: &RunConfig, metrics: &[&Metric]) -> String {
    let mut h = Sha256::new();
    h.update(format!("{:?}", cfg.rules.input).as_bytes());
    for m in metrics {
        h.update(format!("{m:?}").as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `day`'s committed `shop_daily` must be recomputed: it was written
/// without its next day's messages, or a run was killed while rewriting it
/// (its data file is there without its manifest).
fn is_provisional(cfg: &RunConfig, day: NaiveDate) -> bool {
    match output::read_manifest(&cfg.output, "shop_daily", &cfg.platform, day, cfg.shard) {
        Some(m) => m
            .get("provisional")
            .and_then(|v| v.as_bool())
            .unwrap_or(false),
        None => output::partition_dir(&cfg.output, "shop_daily", &cfg.platform, day)
            .join(cfg.shard.data_file())
            .exists(),
    }
}

/// Computes `day` from the input for each of `cfgs` and commits their
/// `shop_daily`, `agent_daily` and `items` with their manifests. Platforms
/// with the same `[input]` settings share one read; the day is computed
/// bucket by bucket (ranges of shops, in shop order, see
/// [`input::MemoryPlan`]), every platform from the same bucket.
///
/// `window_day` says the day is computed for a rolling window (and may well
/// have no messages): the input is first asked whether it has any on the
/// day, and when it has none the read only counts (see [`input::scan`]).
fn daily(
    cfgs: &[&RunConfig],
    day: NaiveDate,
    window_day: bool,
    carried: &mut Carried,
    progress: Progress,
) -> Result<Vec<DaySummary>> {
    // Group the platforms by input settings, keeping the order of `cfgs`.
    let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
    for (i, c) in cfgs.iter().enumerate() {
        let key = format!("{:?}", c.rules.input);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, g)) => g.push(i),
            None => groups.push((key, vec![i])),
        }
    }
    let mut out: Vec<Option<DaySummary>> = (0..cfgs.len()).map(|_| None).collect();
    for (key, group) in groups {
        let members: Vec<&RunConfig> = group.iter().map(|&i| cfgs[i]).collect();
        for (i, s) in group.iter().zip(daily_group(
            &members, &key, day, window_day, carried, progress,
        )?) {
            out[*i] = Some(s);
        }
    }
    Ok(out
        .into_iter()
        .map(|s| s.expect("every platform computed"))
        .collect())
}

/// The memory plan of a run.
fn memory_plan(cfg: &RunConfig) -> input::MemoryPlan {
    match cfg.memory_budget {
        None => input::MemoryPlan::unlimited(),
        Some(bytes) => {
            input::MemoryPlan::from_budget(bytes, Some(output::spill_dir(&cfg.output, cfg.shard)))
        }
    }
}

/// One platform's tables of a day, as the buckets add to them.
struct DayTables<'a> {
    cfg: &'a RunConfig,
    metrics: Vec<&'a Metric>,
    shop: Vec<polars::prelude::DataFrame>,
    agent: Vec<polars::prelude::DataFrame>,
    items: Option<output::StagedPartition>,
    item_rows: usize,
    totals: Vec<(u64, u64)>,
}

/// Counts of window days that the read of a later day made (see
/// [`input::ScanOptions::count_days_before`]), for their back-fill.
#[derive(Default)]
struct Carried(Vec<CarriedRead>);

/// What one read counted of the days before it.
struct CarriedRead {
    /// The day whose read it was.
    read: NaiveDate,
    /// That read's input settings (as [`daily`] groups them) and files.
    key: String,
    files: Vec<PathBuf>,
    days: Vec<input::DayBefore>,
}

impl Carried {
    /// The counts of `day` read from `files` with `key`'s input settings,
    /// and the day whose read counted them.
    fn get(
        &self,
        day: NaiveDate,
        key: &str,
        files: &[PathBuf],
    ) -> Option<(input::DayBefore, NaiveDate)> {
        self.0
            .iter()
            .filter(|r| r.key == key && r.files == files)
            .find_map(|r| {
                let counts = r.days.iter().find(|c| c.day() == day)?;
                Some((counts.clone(), r.read))
            })
    }
}

/// The input files of `day`'s read (the day and its next day): `dt=`
/// folders outside the day before to the day after next are skipped.
fn day_files(cfg: &RunConfig, day: NaiveDate) -> Result<Vec<PathBuf>> {
    let next = day
        .succ_opt()
        .ok_or_else(|| Error::Usage(format!("{day} is out of range")))?;
    let keep = (
        day.pred_opt().unwrap_or(day),
        next.succ_opt().unwrap_or(next),
    );
    input::discover(&cfg.input, keep)
}

/// The widest `window_days` of `cfg`'s metrics in force on `day` (1 when
/// none has a window).
fn widest_window(cfg: &RunConfig, day: NaiveDate) -> u32 {
    metrics_for(cfg, day)
        .iter()
        .map(|m| m.window_days)
        .max()
        .unwrap_or(1)
}

/// How many days before `day` `cfg`'s windows of `day` reach back to, when
/// one of those days has no `shop_daily` partition (and will be computed
/// from the input), else 0.
fn window_days_to_compute(cfg: &RunConfig, day: NaiveDate) -> u32 {
    let back = widest_window(cfg, day).saturating_sub(1);
    let missing = (1..=back).any(|k| {
        let d = day - chrono::Duration::days(k as i64);
        !output::is_committed(&cfg.output, "shop_daily", &cfg.platform, d, cfg.shard)
    });
    if missing {
        back
    } else {
        0
    }
}

/// [`daily`] for platforms sharing their input settings (`key`, as
/// [`daily`] groups them).
fn daily_group(
    cfgs: &[&RunConfig],
    key: &str,
    day: NaiveDate,
    window_day: bool,
    carried: &mut Carried,
    progress: Progress,
) -> Result<Vec<DaySummary>> {
    let started = Instant::now();
    let cfg = cfgs[0];
    let next = day
        .succ_opt()
        .ok_or_else(|| Error::Usage(format!("{day} is out of range")))?;
    let files = day_files(cfg, day)?;
    // A window day a later day's read has counted is not read again.
    let counted = window_day.then(|| carried.get(day, key, &files)).flatten();
    // The day's read counts the empty window days before it (used when
    // they are read from the same files).
    let count_days_before = match window_day {
        true => 0,
        false => cfgs
            .iter()
            .map(|c| window_days_to_compute(c, day))
            .max()
            .unwrap_or(0),
    };
    line(
        progress,
        &match &counted {
            Some((_, by)) => format!(
                "{day}: {} file(s) for {day} and {next}, counted by {by}'s read",
                files.len()
            ),
            None => format!(
                "{day}: reading {} file(s) for {day} and {next}",
                files.len()
            ),
        },
    );
    let plan = memory_plan(cfg);
    let spill = plan.spill_dir.clone();
    let result = (|| {
        let t_read = Instant::now();
        let mut loaded = match counted {
            Some((c, _)) => c.into_loaded(&cfg.rules.input, cfg.strict, &plan)?,
            None => input::scan(
                &files,
                &cfg.rules.input,
                DayRange {
                    first: day,
                    last: next,
                },
                cfg.strict,
                cfg.shard,
                &plan,
                input::ScanOptions {
                    probe_first: window_day,
                    count_days_before,
                },
            )?,
        };
        let days = loaded.take_days_before();
        if !days.is_empty() {
            carried.0.push(CarriedRead {
                read: day,
                key: key.to_string(),
                files: files.clone(),
                days,
            });
        }
        let t_read = t_read.elapsed();
        for ex in &loaded.stats.bad_examples {
            line(progress, &format!("  warning: bad row skipped: {ex}"));
        }
        let mut tables: Vec<DayTables> = cfgs
            .iter()
            .map(|c| {
                let metrics = metrics_for(c, day);
                let items = if c.write_items {
                    Some(output::StagedPartition::begin(
                        &c.output,
                        "items",
                        &c.platform,
                        day,
                        c.shard,
                    )?)
                } else {
                    None
                };
                Ok(DayTables {
                    cfg: c,
                    totals: vec![(0, 0); metrics.len()],
                    metrics,
                    shop: Vec::new(),
                    agent: Vec::new(),
                    items,
                    item_rows: 0,
                })
            })
            .collect::<Result<_>>()?;
        let polars_err = |table: &str, e: polars::error::PolarsError| {
            Error::Io(format!("cannot build table {table} for {day}: {e}"))
        };
        let t_work = Instant::now();
        // What the workers need of each platform's tables (the tables
        // themselves are the consumer's).
        let specs: Vec<(Vec<&Metric>, bool)> = tables
            .iter()
            .map(|t| (t.metrics.clone(), t.items.is_some()))
            .collect();
        // Every platform's tables of one bucket.
        type Parts = (DataFrame, DataFrame, Option<DataFrame>, Vec<(u64, u64)>);
        // One pass over the bucket's threads for every platform.
        let sets: Vec<engine::MetricSet> = specs
            .iter()
            .map(|(metrics, keep_items)| engine::MetricSet {
                metrics,
                keep_items: *keep_items,
            })
            .collect();
        let compute = |msgs: &crate::model::Messages| -> Result<Vec<Parts>> {
            let ranks = specs
                .iter()
                .any(|(_, items)| *items)
                .then(|| output::NameRanks::of(msgs));
            specs
                .iter()
                .zip(engine::compute_days(msgs, &sets, day))
                .map(|((metrics, keep_items), result)| {
                    let shop = output::shop_daily(msgs, metrics, &result)
                        .map_err(|e| polars_err("shop_daily", e))?;
                    let agent = output::agent_daily(msgs, metrics, &result)
                        .map_err(|e| polars_err("agent_daily", e))?;
                    let items = match (keep_items, &ranks) {
                        (true, Some(ranks)) => Some(
                            output::items(msgs, ranks, metrics, &result)
                                .map_err(|e| polars_err("items", e))?,
                        ),
                        _ => None,
                    };
                    let totals = result
                        .totals
                        .iter()
                        .map(|m| (m.counted, m.excluded))
                        .collect();
                    Ok((shop, agent, items, totals))
                })
                .collect()
        };
        // Adds one bucket's tables, in bucket order, so that they stay sorted.
        let add = |tables: &mut Vec<DayTables>, parts: Vec<Parts>| -> Result<()> {
            for (t, (shop, agent, items, totals)) in tables.iter_mut().zip(parts) {
                for (acc, m) in t.totals.iter_mut().zip(totals) {
                    acc.0 += m.0;
                    acc.1 += m.1;
                }
                t.shop.push(shop);
                t.agent.push(agent);
                if let (Some(w), Some(df)) = (&mut t.items, items) {
                    t.item_rows += df.height();
                    w.write(&df)?;
                }
            }
            Ok(())
        };
        // A day without rows has no item, whatever the next day holds:
        // its tables are computed from no rows, without building buckets.
        let empty_day = loaded.read_rows_on(day) == 0;
        let buckets = loaded.buckets();
        if empty_day {
            add(&mut tables, compute(&crate::model::Messages::default())?)?;
        } else {
            // Waiting results hold their items; without items they are small.
            let ahead = specs
                .iter()
                .any(|(_, items)| *items)
                .then_some(2 * input::MemoryPlan::parallel_buckets());
            input::schedule_buckets(&mut loaded, ahead, &compute, |parts| {
                add(&mut tables, parts)
            })?;
        }
        let spilled = match loaded.spilled() {
            None => String::new(),
            Some((bytes, direct)) => format!(
                " ({} spilled{})",
                if bytes < 1_000_000_000 {
                    format!("{:.1} MB", bytes as f64 / 1e6)
                } else {
                    format!("{:.2} GB", bytes as f64 / 1e9)
                },
                if direct { ", direct I/O" } else { "" }
            ),
        };
        line(
            progress,
            &format!(
                "  {day}: read {:.2}s{spilled}, {} shop bucket(s) built and computed {:.2}s",
                t_read.as_secs_f64(),
                if empty_day { 0 } else { buckets },
                t_work.elapsed().as_secs_f64(),
            ),
        );
        let stats = loaded.stats.clone();
        let read_on_next = loaded.read_rows_on(next);
        drop(loaded);
        let rows_on = |d: NaiveDate| {
            if empty_day && d == next {
                // Not de-duplicated: the next day's rows were not built.
                return read_on_next;
            }
            stats
                .rows_per_day
                .iter()
                .find(|(x, _)| *x == d)
                .map_or(0, |x| x.1)
        };
        if rows_on(day) == 0 {
            line(
                progress,
                &format!("  warning: no messages on {day}: writing empty partitions"),
            );
        }
        // An empty day is final: later messages cannot give it items.
        let provisional = rows_on(next) == 0 && !empty_day;
        if provisional {
            line(
                progress,
                &format!(
                    "  warning: no messages on {next}: replies after midnight are not seen yet, so {day} is \
                     provisional; the run that computes {next} will recompute it"
                ),
            );
        }
        // Each platform's partitions, committed on a thread of its own: most
        // of a commit is waiting for the disk (see `output::StagedPartition`),
        // and for small tables, finding the file system a free inode.
        let commit = |t: DayTables| -> Result<DaySummary> {
            let c = t.cfg;
            let manifest = json!({
                    "rules_source": c.rules.source,
                    "rules_hash": rules_hash(c, &t.metrics),
                    "rules_as_of": c.rules_as_of.map(|d| d.to_string()),
                    "rule_versions": t.metrics.iter().map(|m| m.rule_version()).collect::<Vec<_>>(),
                    "input_files": stats.file_rows.iter().map(|(f, n)| json!({"path": f, "rows_read": n})).collect::<Vec<_>>(),
                    "rows_read": stats.rows_read,
                    "bad_rows": stats.bad_rows,
                    "duplicates": stats.duplicates,
                    "rows_on_day": rows_on(day),
                    "rows_on_next_day": rows_on(next),
                    "provisional": provisional,
            });
            // Buckets are shop ranges in order: their pieces concatenate sorted.
            let concat = |parts: Vec<polars::prelude::DataFrame>, table: &str| {
                let mut it = parts.into_iter();
                let mut df = it.next().expect("at least one bucket");
                for p in it {
                    df.vstack_mut_owned(p).map_err(|e| polars_err(table, e))?;
                }
                Ok::<_, Error>(df)
            };
            let mut shop = concat(t.shop, "shop_daily")?;
            let mut agent = concat(t.agent, "agent_daily")?;
            if let Some(items) = t.items {
                output::retract_manifest(&c.output, "items", &c.platform, day, c.shard)?;
                items.commit()?;
                commit_manifest(c, "items", day, t.item_rows, manifest.clone())?;
            }
            commit_table(c, "agent_daily", day, &mut agent, manifest.clone())?;
            // shop_daily last: its manifest is what later runs consult.
            commit_table(c, "shop_daily", day, &mut shop, manifest)?;
            Ok(DaySummary {
                platform: c.platform.clone(),
                day,
                files: files.len(),
                rows_read: stats.rows_read,
                bad_rows: stats.bad_rows,
                duplicates: stats.duplicates,
                items: t
                    .metrics
                    .iter()
                    .zip(&t.totals)
                    .map(|(m, t)| (m.id.clone(), t.0, t.1))
                    .collect(),
                shop_rows: shop.height(),
                rolling_rows: 0,
                alert_rows: 0,
                provisional,
                seconds: started.elapsed().as_secs_f64(),
            })
        };
        if tables.len() == 1 {
            return tables.into_iter().map(commit).collect();
        }
        // The first failure, in platform order, is the run's.
        std::thread::scope(|scope| {
            let commit = &commit;
            let handles: Vec<_> = tables
                .into_iter()
                .map(|t| scope.spawn(move || commit(t)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect()
        })
    })();
    if let Some(dir) = spill {
        let _ = std::fs::remove_dir_all(dir);
    }
    result
}

/// `shop_rolling` for `day`: for each metric in force with `window_days` >
/// 1, the daily numerators and denominators of its id summed over the
/// window's days, whatever version each day used. Built from the committed
/// `shop_daily` partitions; a day whose partition is absent is computed from
/// the input (and committed) first.
fn rolling(
    cfg: &RunConfig,
    day: NaiveDate,
    carried: &mut Carried,
    progress: Progress,
) -> Result<Vec<MetricRow>> {
    let metrics: Vec<&Metric> = metrics_for(cfg, day)
        .into_iter()
        .filter(|m| m.window_days > 1)
        .collect();
    let widest = metrics.iter().map(|m| m.window_days).max().unwrap_or(0);
    // (metric id, shop) → (numerator, denominator)
    let mut sums: BTreeMap<(&str, String), (i64, i64)> = BTreeMap::new();
    let mut provisional_days = Vec::new();
    for back in 0..widest {
        let d = day - chrono::Duration::days(back as i64);
        let rows = match output::read_shop_daily(&cfg.output, &cfg.platform, d, cfg.shard)? {
            Some(rows) => rows,
            None => {
                line(progress, &format!("  {day}: the window needs {d}, which has no shop_daily partition: computing it"));
                match daily(&[cfg], d, true, carried, progress) {
                    Ok(_) => {}
                    // No input for that day at all: it adds nothing.
                    Err(Error::NoInput(msg)) => {
                        line(progress, &format!("  warning: {d} has no input ({msg}); it adds nothing to the window"));
                        continue;
                    }
                    Err(e) => return Err(e),
                }
                output::read_shop_daily(&cfg.output, &cfg.platform, d, cfg.shard)?
                    .unwrap_or_default()
            }
        };
        if is_provisional(cfg, d) {
            provisional_days.push(d.to_string());
        }
        for r in rows {
            for m in metrics
                .iter()
                .filter(|m| m.id == r.metric && back < m.window_days)
            {
                let e = sums.entry((m.id.as_str(), r.shop_id.clone())).or_default();
                e.0 += r.numerator;
                e.1 += r.denominator;
            }
        }
    }
    let mut rows: Vec<MetricRow> = sums
        .into_iter()
        .filter(|(_, (_, den))| *den > 0)
        .map(|((id, shop), (num, den))| {
            let m = metrics
                .iter()
                .find(|m| m.id == id)
                .expect("summed only for these metrics");
            MetricRow {
                shop_id: shop,
                metric: id.to_string(),
                numerator: num,
                denominator: den,
                value: output::value(m.kind, num, den),
                rule_version: m.rule_version(),
                window_days: m.window_days,
            }
        })
        .collect();
    let mut df = output::shop_rolling(&mut rows)
        .map_err(|e| Error::Io(format!("cannot build table shop_rolling for {day}: {e}")))?;
    commit_table(
        cfg,
        "shop_rolling",
        day,
        &mut df,
        json!({
            "rules_source": cfg.rules.source,
            "rules_hash": rules_hash(cfg, &metrics_for(cfg, day)),
            "windows": metrics.iter().map(|m| json!({"metric": m.id, "window_days": m.window_days})).collect::<Vec<_>>(),
            "provisional_days": provisional_days,
            "provisional": !provisional_days.is_empty(),
        }),
    )?;
    Ok(rows)
}

/// `alerts` for `day`: a row per shop and metric whose value is under the
/// metric's `target` with at least `min_denominator` items, from
/// `shop_daily` for one-day metrics and from `shop_rolling` otherwise.
fn alerts(
    cfg: &RunConfig,
    day: NaiveDate,
    rolling: &[MetricRow],
    provisional: bool,
) -> Result<usize> {
    let metrics = metrics_for(cfg, day);
    let daily =
        output::read_shop_daily(&cfg.output, &cfg.platform, day, cfg.shard)?.unwrap_or_default();
    let mut rows = Vec::new();
    for m in metrics.iter().filter(|m| m.target.is_some()) {
        let target = m.target.expect("filtered");
        let candidates: Vec<MetricRow> = if m.window_days > 1 {
            rolling
                .iter()
                .filter(|r| r.metric == m.id)
                .cloned()
                .collect()
        } else {
            daily
                .iter()
                .filter(|r| r.metric == m.id && r.denominator > 0)
                .map(|r| MetricRow {
                    shop_id: r.shop_id.clone(),
                    metric: r.metric.clone(),
                    numerator: r.numerator,
                    denominator: r.denominator,
                    value: output::value(m.kind, r.numerator, r.denominator),
                    rule_version: m.rule_version(),
                    window_days: 1,
                })
                .collect()
        };
        for r in candidates {
            if r.denominator >= m.min_denominator && r.value < target {
                let message = m
                    .alert
                    .clone()
                    .unwrap_or_else(|| format!("{} below target {target}", m.id));
                rows.push(AlertRow {
                    row: r,
                    target,
                    message,
                });
            }
        }
    }
    let n = rows.len();
    let mut df = output::alerts(&mut rows)
        .map_err(|e| Error::Io(format!("cannot build table alerts for {day}: {e}")))?;
    commit_table(
        cfg,
        "alerts",
        day,
        &mut df,
        json!({
            "rules_hash": rules_hash(cfg, &metrics),
            "provisional": provisional,
        }),
    )?;
    Ok(n)
}
