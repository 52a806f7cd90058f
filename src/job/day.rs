//! Computing one day: read the day and its next day (the reply horizon),
//! compute every platform's metrics bucket by bucket, and commit the daily
//! tables (`items`, `agent_daily`, `shop_daily`, see [`super::commit`]).
//!
//! Platforms with the same `[input]` settings share one read; the day is
//! computed bucket by bucket (ranges of shops, in shop order, see
//! [`input::MemoryPlan`]), every platform from the same bucket.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use polars::prelude::DataFrame;

use super::commit::{self, build_error};
use super::scorecard::{self as score, BucketScorer, DayScore, ScoreTables};
use super::{line, phase, windows, DaySummary, Phase, Progress, RunConfig};
use crate::engine;
use crate::error::{Error, Result};
use crate::input::{self, DayRange};
use crate::model::{LoadStats, Messages};
use crate::output::{self, DailyFacts, InputFile};
use crate::rules::Metric;

/// Computes `day` from the input for each of `cfgs` and commits their
/// `shop_daily`, `agent_daily` and `items` with their manifests, one read
/// per group of platforms sharing their input settings.
///
/// `window_day` says the day is computed for a rolling window (and may well
/// have no messages): the input is first asked whether it has any on the
/// day, and when it has none the read only counts (see [`input::scan`]).
pub(super) fn daily(
    cfgs: &[&RunConfig],
    day: NaiveDate,
    window_day: bool,
    carried: &mut Carried,
    tables: &ScoreTables,
    progress: Progress,
) -> Result<Vec<DaySummary>> {
    // Group the platforms by input settings, keeping the order of `cfgs`.
    let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
    for (i, c) in cfgs.iter().enumerate() {
        let key = c.rules.input.canonical();
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, g)) => g.push(i),
            None => groups.push((key, vec![i])),
        }
    }
    let mut out: Vec<Option<DaySummary>> = (0..cfgs.len()).map(|_| None).collect();
    for (key, group) in groups {
        let members: Vec<&RunConfig> = group.iter().map(|&i| cfgs[i]).collect();
        for (i, s) in group.iter().zip(daily_group(
            &members, &key, day, window_day, carried, tables, progress,
        )?) {
            out[*i] = Some(s);
        }
    }
    Ok(out
        .into_iter()
        .map(|s| s.expect("every platform computed"))
        .collect())
}

/// One platform's tables of a day, as the buckets add to them.
struct DayTables<'a> {
    cfg: &'a RunConfig,
    metrics: Vec<&'a Metric>,
    shop: Vec<DataFrame>,
    agent: Vec<DataFrame>,
    items: Option<output::StagedPartition>,
    item_rows: usize,
    totals: Vec<(u64, u64)>,
    /// The scorecard metrics in force that can be computed (SPEC §8).
    score: Option<DayScore<'a>>,
    /// The notes of the scorecard metrics in force that are skipped.
    skipped: Vec<(String, String)>,
    /// `items` has the scorecard columns (the run was given a table).
    score_columns: bool,
}

/// Every platform's tables of one bucket: shop_daily, agent_daily, items
/// (when written), with the scorecard's rows merged in, the (counted,
/// excluded) totals per metric and the scorecard metrics' item counts.
type Parts = (
    DataFrame,
    DataFrame,
    Option<output::encode::Encoded>,
    Vec<(u64, u64)>,
    Option<Vec<u64>>,
);

/// Counts of window days that the read of a later day made (see
/// [`input::ScanOptions::count_days_before`]), for their back-fill.
#[derive(Default)]
pub(super) struct Carried(Vec<CarriedRead>);

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

/// The memory plan of a run.
fn memory_plan(cfg: &RunConfig) -> input::MemoryPlan {
    match cfg.memory_budget {
        None => input::MemoryPlan::unlimited(),
        Some(bytes) => {
            input::MemoryPlan::from_budget(bytes, Some(output::spill_dir(&cfg.output, cfg.shard)))
        }
    }
}

/// The day after `day`.
fn next_day(day: NaiveDate) -> Result<NaiveDate> {
    day.succ_opt()
        .ok_or_else(|| Error::Usage(format!("{day} is out of range")))
}

/// The input files of `day`'s read (the day and its next day): `dt=`
/// folders outside the day before to the day after next are skipped.
fn day_files(cfg: &RunConfig, day: NaiveDate) -> Result<Vec<PathBuf>> {
    let next = next_day(day)?;
    let keep = (
        day.pred_opt().unwrap_or(day),
        next.succ_opt().unwrap_or(next),
    );
    input::discover(&cfg.input, keep)
}

/// How a group's day is read.
struct ReadPlan {
    day: NaiveDate,
    next: NaiveDate,
    files: Vec<PathBuf>,
    window_day: bool,
    /// How many empty window days before it the day's read counts.
    count_days_before: u32,
}

/// [`daily`] for platforms sharing their input settings (`key`, as
/// [`daily`] groups them).
fn daily_group(
    cfgs: &[&RunConfig],
    key: &str,
    day: NaiveDate,
    window_day: bool,
    carried: &mut Carried,
    score_tables: &ScoreTables,
    progress: Progress,
) -> Result<Vec<DaySummary>> {
    let started = Instant::now();
    let cfg = cfgs[0];
    let next = next_day(day)?;
    let files = match day_files(cfg, day) {
        // A window day without input files (no `dt=` folder for it) has no
        // messages: computed and committed empty like a window day of a
        // single-file input, so that the next run does not look for it again.
        Err(Error::NoInput(_)) if window_day => Vec::new(),
        files => files?,
    };
    // The day's read counts the empty window days before it (used when
    // they are read from the same files).
    let count_days_before = match window_day {
        true => 0,
        false => cfgs
            .iter()
            .map(|c| windows::window_days_to_compute(c, day))
            .max()
            .unwrap_or(0),
    };
    // A window day a later day's read has counted is not read again.
    let counted = window_day.then(|| carried.get(day, key, &files)).flatten();
    let read = ReadPlan {
        day,
        next,
        files,
        window_day,
        count_days_before,
    };
    let reading = match &counted {
        Some((_, by)) => format!(
            "{day}: {} file(s) for {day} and {next}, counted by {by}'s read",
            read.files.len()
        ),
        None => format!(
            "{day}: reading {} file(s) for {day} and {next}",
            read.files.len()
        ),
    };
    // A window day's lines wait for its read: one without messages shows
    // none (the run sums such days up in one line, see
    // `windows::EmptyWindowDays`), as a first rolling run has dozens.
    if !window_day {
        line(progress, &reading);
    }
    let plan = memory_plan(cfg);
    let spill = plan.spill_dir.clone();
    let result = (|| {
        phase(progress, day, Phase::Reading, cfgs);
        let t_read = Instant::now();
        let mut loaded = read_day(cfg, key, counted, &read, &plan, carried)?;
        let t_read = t_read.elapsed();
        let quiet = window_day && loaded.read_rows_on(day) == 0;
        if window_day && !quiet {
            line(progress, &reading);
        }
        for ex in &loaded.stats.bad_examples {
            line(progress, &format!("  warning: bad row skipped: {ex}"));
        }
        let mut tables = begin_tables(cfgs, day, score_tables)?;
        phase(progress, day, Phase::Computing, cfgs);
        let t_work = Instant::now();
        let empty_day = compute_tables(&mut loaded, &mut tables, day)?;
        if !quiet {
            line(
                progress,
                &read_line(day, &loaded, empty_day, t_read, t_work.elapsed()),
            );
        }
        let rows = DayRows::of(loaded, day, next, empty_day);
        // An empty window day is the caller's to report (`messages_on_day`).
        if rows.on_day == 0 && !window_day {
            line(
                progress,
                &format!("  warning: no messages on {day}: writing empty partitions"),
            );
        }
        if rows.provisional {
            line(
                progress,
                &format!(
                    "  warning: no messages on {next}: replies after midnight are not seen yet, so {day} is \
                     provisional; the run that computes {next} will recompute it"
                ),
            );
        }
        phase(progress, day, Phase::Writing, cfgs);
        commit_platforms(tables, &read, &rows, started)
    })();
    if let Some(dir) = spill {
        let _ = std::fs::remove_dir_all(dir);
    }
    result
}

/// Reads `read`'s day and its next day (or turns `counted`, a later day's
/// read's counts of it, into the day's rows), keeping the counts the read made of the window
/// days before it in `carried`.
fn read_day(
    cfg: &RunConfig,
    key: &str,
    counted: Option<(input::DayBefore, NaiveDate)>,
    read: &ReadPlan,
    plan: &input::MemoryPlan,
    carried: &mut Carried,
) -> Result<input::Loaded> {
    let mut loaded = match counted {
        Some((c, _)) => c.into_loaded(&cfg.rules.input, cfg.strict, plan)?,
        None => input::scan(
            &read.files,
            &cfg.rules.input,
            DayRange {
                first: read.day,
                last: read.next,
            },
            cfg.strict,
            cfg.shard,
            plan,
            input::ScanOptions {
                probe_first: read.window_day,
                count_days_before: read.count_days_before,
            },
        )?,
    };
    let days = loaded.take_days_before();
    if !days.is_empty() {
        carried.0.push(CarriedRead {
            read: read.day,
            key: key.to_string(),
            files: read.files.clone(),
            days,
        });
    }
    Ok(loaded)
}

/// Each platform's empty tables of `day`, the `items` file staged.
fn begin_tables<'a>(
    cfgs: &[&'a RunConfig],
    day: NaiveDate,
    score_tables: &ScoreTables,
) -> Result<Vec<DayTables<'a>>> {
    cfgs.iter()
        .map(|&c| {
            let as_of = c.rules_as_of.unwrap_or(day);
            let metrics = c.rules.in_force(as_of);
            let tables = score_tables.of(&c.platform);
            let (mut scores, mut skipped) = (Vec::new(), Vec::new());
            for m in c.rules.scores_in_force(as_of) {
                match score::skip_reason(m, tables.as_deref().map(|t| t.tables())) {
                    Some(note) => skipped.push((m.id.clone(), note)),
                    None => scores.push(m),
                }
            }
            let score = match (scores.is_empty(), tables) {
                (false, Some(t)) => Some(DayScore::new(scores, t, day)),
                _ => None,
            };
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
                score,
                skipped,
                score_columns: c.tables.any(),
            })
        })
        .collect()
}

/// Builds and computes every bucket of `loaded` for every platform, adding
/// each bucket's tables to `tables` in bucket order. Returns whether the day
/// had no rows (then its tables are computed from no rows, without building
/// buckets).
fn compute_tables(
    loaded: &mut input::Loaded,
    tables: &mut [DayTables],
    day: NaiveDate,
) -> Result<bool> {
    // What the workers need of each platform's tables (the tables
    // themselves are the consumer's).
    let specs: Vec<(Vec<&Metric>, bool)> = tables
        .iter()
        .map(|t| (t.metrics.clone(), t.items.is_some()))
        .collect();
    // The consult buyer-days of each platform's scorecard (§8.2): the items
    // of synthetic buyer metrics, computed in the same pass, never written.
    let consult: Vec<Vec<Metric>> = tables
        .iter()
        .map(|t| {
            t.score
                .as_ref()
                .map(|s| s.consult.clone())
                .unwrap_or_default()
        })
        .collect();
    let consult_refs: Vec<Vec<&Metric>> = consult.iter().map(|c| c.iter().collect()).collect();
    // One pass over the bucket's threads for every platform.
    let sets: Vec<engine::MetricSet> = specs
        .iter()
        .map(|(metrics, keep_items)| engine::MetricSet {
            metrics,
            keep_items: *keep_items,
        })
        .chain(
            consult_refs
                .iter()
                .filter(|c| !c.is_empty())
                .map(|metrics| engine::MetricSet {
                    metrics,
                    keep_items: true,
                }),
        )
        .collect();
    // The scorecard's workers, and each bucket's shops (see
    // `input::Loaded::bucket_shops`): a bucket computes the scorecard of
    // its range, so the buckets' ranges cover every shop of the tables.
    let scorers: Vec<Option<BucketScorer>> = tables
        .iter()
        .map(|t| t.score.as_ref().map(DayScore::scorer))
        .collect();
    let score_columns: Vec<bool> = tables.iter().map(|t| t.score_columns).collect();
    // A day without rows has no item, whatever the next day holds.
    let empty_day = loaded.read_rows_on(day) == 0;
    let ranges: Vec<(Option<String>, Option<String>)> = match empty_day {
        true => vec![(None, None)],
        false => (0..loaded.buckets())
            .map(|k| {
                let (from, until) = loaded.bucket_shops(k);
                (from.map(str::to_string), until.map(str::to_string))
            })
            .collect(),
    };
    let compute = |k: usize, msgs: &Messages| -> Result<Vec<Parts>> {
        let ranks = specs
            .iter()
            .any(|(_, items)| *items)
            .then(|| output::NameRanks::of(msgs));
        let mut results = engine::compute_days(msgs, &sets, day);
        let mut consults = results.split_off(specs.len()).into_iter();
        let consults: Vec<Option<engine::DayResult>> = consult_refs
            .iter()
            .map(|c| if c.is_empty() { None } else { consults.next() })
            .collect();
        let range = (ranges[k].0.as_deref(), ranges[k].1.as_deref());
        specs
            .iter()
            .zip(results)
            .zip(consults)
            .zip(scorers.iter().zip(&score_columns))
            .map(
                |((((metrics, keep_items), mut result), consults), (scorer, &columns))| {
                    let mut shop = output::shop_daily(msgs, metrics, &result)
                        .map_err(|e| build_error("shop_daily", day, e))?;
                    let mut agent = output::agent_daily(msgs, metrics, &result)
                        .map_err(|e| build_error("agent_daily", day, e))?;
                    let totals = result
                        .totals
                        .iter()
                        .map(|m| (m.counted, m.excluded))
                        .collect();
                    let (score_totals, score_items) = match scorer {
                        Some(s) => {
                            let b = s
                                .compute(range, msgs, consults.as_ref())
                                .map_err(|e| build_error("shop_daily", day, e))?;
                            let totals = b.totals.clone();
                            let items = b
                                .merge_into(&mut shop, &mut agent)
                                .map_err(|e| build_error("shop_daily", day, e))?;
                            (Some(totals), items)
                        }
                        None => (None, Vec::new()),
                    };
                    // Encoded here, on the worker: the bucket's items wait for
                    // their turn as compressed pages.
                    let items = match (keep_items, &ranks) {
                        (true, Some(ranks)) => Some(
                            output::encode_items(output::ItemSources {
                                messages: msgs,
                                ranks,
                                metrics,
                                items: &mut result.items,
                                score: columns.then_some(score_items.as_slice()),
                            })
                            .map_err(|e| build_error("items", day, e))?,
                        ),
                        _ => None,
                    };
                    Ok((shop, agent, items, totals, score_totals))
                },
            )
            .collect()
    };
    // Adds one bucket's tables, in bucket order, so that they stay sorted.
    let add = |tables: &mut [DayTables], parts: Vec<Parts>| -> Result<()> {
        for (t, (shop, agent, items, totals, score_totals)) in tables.iter_mut().zip(parts) {
            for (acc, m) in t.totals.iter_mut().zip(totals) {
                acc.0 += m.0;
                acc.1 += m.1;
            }
            if let (Some(s), Some(n)) = (&mut t.score, score_totals) {
                s.count(&n);
            }
            t.shop.push(shop);
            t.agent.push(agent);
            if let (Some(w), Some(encoded)) = (&mut t.items, items) {
                t.item_rows += encoded.height();
                w.write_encoded(encoded)?;
            }
        }
        Ok(())
    };
    if empty_day {
        add(tables, compute(0, &Messages::default())?)?;
    } else {
        // Waiting results are small: their items wait as compressed pages.
        let ahead = None;
        input::schedule_buckets(loaded, ahead, &compute, |parts| add(tables, parts))?;
    }
    Ok(empty_day)
}

/// The log line of a day's read and work.
fn read_line(
    day: NaiveDate,
    loaded: &input::Loaded,
    empty_day: bool,
    t_read: Duration,
    t_work: Duration,
) -> String {
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
    format!(
        "  {day}: read {:.2}s{spilled}, {} shop bucket(s) built and computed {:.2}s",
        t_read.as_secs_f64(),
        if empty_day { 0 } else { loaded.buckets() },
        t_work.as_secs_f64(),
    )
}

/// What a day's read saw, once every bucket is built.
struct DayRows {
    stats: LoadStats,
    /// Rows of the day as read (before de-duplication), for the summary.
    read_on_day: u64,
    /// Messages on the day and on its next day (after de-duplication).
    on_day: u64,
    on_next: u64,
    /// The next day had no messages, so replies after midnight were not
    /// seen: the day will be recomputed.
    provisional: bool,
}

impl DayRows {
    /// Takes what the summary and manifests need of `loaded` (and frees it).
    fn of(loaded: input::Loaded, day: NaiveDate, next: NaiveDate, empty_day: bool) -> DayRows {
        let stats = loaded.stats.clone();
        let read_on_day = loaded.read_rows_on(day);
        let read_on_next = loaded.read_rows_on(next);
        drop(loaded);
        let rows_on = |d: NaiveDate| {
            stats
                .rows_per_day
                .iter()
                .find(|(x, _)| *x == d)
                .map_or(0, |x| x.1)
        };
        let on_day = rows_on(day);
        // Not de-duplicated on an empty day: the next day's rows were not
        // built.
        let on_next = if empty_day {
            read_on_next
        } else {
            rows_on(next)
        };
        DayRows {
            read_on_day,
            on_day,
            on_next,
            // An empty day is final: later messages cannot give it items.
            provisional: on_next == 0 && !empty_day,
            stats,
        }
    }
}

/// Commits each platform's tables of the day, on a thread of its own when
/// there are several: most of a commit is waiting for the disk (see
/// `output::StagedPartition`), and for small tables, finding the file
/// system a free inode. The first failure, in platform order, is the
/// run's.
fn commit_platforms(
    tables: Vec<DayTables>,
    read: &ReadPlan,
    rows: &DayRows,
    started: Instant,
) -> Result<Vec<DaySummary>> {
    let commit = |t: DayTables| commit_platform(t, read, rows, started);
    if tables.len() == 1 {
        return tables.into_iter().map(commit).collect();
    }
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
}

/// Commits one platform's daily tables with their manifests, and says what
/// the day did.
fn commit_platform(
    t: DayTables,
    read: &ReadPlan,
    rows: &DayRows,
    started: Instant,
) -> Result<DaySummary> {
    let (c, day) = (t.cfg, read.day);
    let stats = &rows.stats;
    // The versions computed: the message metrics, then the scorecard's.
    let scores: Vec<&Metric> = t
        .score
        .as_ref()
        .map(|s| s.metrics.clone())
        .unwrap_or_default();
    let computed: Vec<&Metric> = t.metrics.iter().chain(&scores).copied().collect();
    let facts = DailyFacts {
        rules_source: c.rules.source.clone(),
        rules_hash: output::rules_hash(&c.rules, &computed),
        rules_as_of: c.rules_as_of.map(|d| d.to_string()),
        rule_versions: computed.iter().map(|m| m.rule_version()).collect(),
        skipped_metrics: t.skipped.iter().map(|s| s.0.clone()).collect(),
        input_files: stats
            .file_rows
            .iter()
            .map(|(f, n)| InputFile {
                path: f.clone(),
                rows_read: *n,
            })
            .collect(),
        rows_read: stats.rows_read,
        bad_rows: stats.bad_rows,
        duplicates: stats.duplicates,
        rows_on_day: rows.on_day,
        rows_on_next_day: rows.on_next,
        provisional: rows.provisional,
    };
    // Buckets are shop ranges in order: their pieces concatenate sorted.
    let concat = |parts: Vec<DataFrame>, table: &str| {
        let mut it = parts.into_iter();
        let mut df = it.next().expect("at least one bucket");
        for p in it {
            df.vstack_mut_owned(p)
                .map_err(|e| build_error(table, day, e))?;
        }
        Ok::<_, Error>(df)
    };
    let mut shop = concat(t.shop, "shop_daily")?;
    let mut agent = concat(t.agent, "agent_daily")?;
    let items = t.items.map(|staged| (staged, t.item_rows));
    commit::commit_day(c, day, items, &mut agent, &mut shop, facts)?;
    Ok(DaySummary {
        platform: c.platform.clone(),
        day,
        files: read.files.len(),
        rows_read: stats.rows_read,
        rows_on_day: rows.read_on_day,
        bad_rows: stats.bad_rows,
        duplicates: stats.duplicates,
        messages_on_day: rows.on_day,
        items: t
            .metrics
            .iter()
            .zip(&t.totals)
            .map(|(m, t)| (m.id.clone(), t.0, t.1))
            .chain(t.score.iter().flat_map(|s| {
                s.metrics
                    .iter()
                    .zip(&s.totals)
                    .map(|(m, n)| (m.id.clone(), *n, 0))
            }))
            .collect(),
        skipped: t.skipped.iter().map(|s| s.1.clone()).collect(),
        shop_rows: shop.height(),
        rolling_rows: 0,
        alert_rows: 0,
        provisional: rows.provisional,
        seconds: started.elapsed().as_secs_f64(),
    })
}
