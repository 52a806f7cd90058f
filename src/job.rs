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

use crate::engine::{self, EngineOptions};
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
    output::remove_stale_staging_all(&cfg.output, &cfg.platform, cfg.shard);
    let mut days: Vec<NaiveDate> = cfg.from.iter_days().take_while(|d| *d <= cfg.to).collect();
    // Finalise the day before the run if it was written provisionally.
    if let Some(prev) = cfg.from.pred_opt() {
        if is_provisional(cfg, prev) {
            line(
                progress,
                &format!("{prev} was provisional (its next day had not landed): recomputing it"),
            );
            days.insert(0, prev);
        }
    }
    let mut out = Vec::new();
    for (k, &day) in days.iter().enumerate() {
        progress(Event::DayStarted {
            index: k,
            total: days.len(),
            day,
        });
        let started = Instant::now();
        let mut summary = daily(cfg, day, progress)?;
        let rolling = rolling(cfg, day, progress)?;
        summary.rolling_rows = rolling.len();
        summary.alert_rows = alerts(cfg, day, &rolling, summary.provisional)?;
        summary.seconds = started.elapsed().as_secs_f64();
        line(
            progress,
            &format!(
                "  {day}: {} rows read, {} bad, {} duplicate; {} shop rows, {} rolling rows, {} alerts; {:.2}s",
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
    Ok(out)
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
    output::commit_partition(&cfg.output, table, &cfg.platform, day, cfg.shard, df)?;
    let mut manifest = json!({
        "kefu_version": env!("CARGO_PKG_VERSION"),
        "shard": cfg.shard.to_string(),
        "table": table,
        "platform": cfg.platform,
        "dt": day.to_string(),
        "rows": df.height(),
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

fn is_provisional(cfg: &RunConfig, day: NaiveDate) -> bool {
    output::read_manifest(&cfg.output, "shop_daily", &cfg.platform, day, cfg.shard)
        .and_then(|m| m.get("provisional").and_then(|v| v.as_bool()))
        .unwrap_or(false)
}

/// Computes `day` from the input and commits `shop_daily`, `agent_daily` and
/// `items` with their manifests.
fn daily(cfg: &RunConfig, day: NaiveDate, progress: Progress) -> Result<DaySummary> {
    let started = Instant::now();
    let metrics = metrics_for(cfg, day);
    let next = day
        .succ_opt()
        .ok_or_else(|| Error::Usage(format!("{day} is out of range")))?;
    let keep = (
        day.pred_opt().unwrap_or(day),
        next.succ_opt().unwrap_or(next),
    );
    let files = input::discover(&cfg.input, keep)?;
    line(
        progress,
        &format!(
            "{day}: reading {} file(s) for {day} and {next}",
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
        cfg.shard,
    )?;
    let stats = &msgs.stats;
    for ex in &stats.bad_examples {
        line(progress, &format!("  warning: bad row skipped: {ex}"));
    }
    let rows_on = |d: NaiveDate| {
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
    let provisional = rows_on(next) == 0;
    if provisional {
        line(
            progress,
            &format!(
                "  warning: no messages on {next}: replies after midnight are not seen yet, so {day} is \
                 provisional; the run that computes {next} will recompute it"
            ),
        );
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
    let manifest = json!({
            "rules_source": cfg.rules.source,
            "rules_hash": rules_hash(cfg, &metrics),
            "rules_as_of": cfg.rules_as_of.map(|d| d.to_string()),
            "rule_versions": metrics.iter().map(|m| m.rule_version()).collect::<Vec<_>>(),
            "input_files": stats.file_rows.iter().map(|(f, n)| json!({"path": f, "rows_read": n})).collect::<Vec<_>>(),
            "rows_read": stats.rows_read,
            "bad_rows": stats.bad_rows,
            "duplicates": stats.duplicates,
            "rows_on_day": rows_on(day),
            "rows_on_next_day": rows_on(next),
            "provisional": provisional,
    });
    let mut tables = vec![
        (
            "shop_daily",
            output::shop_daily(&msgs, &metrics, &result)
                .map_err(|e| polars_err("shop_daily", e))?,
        ),
        (
            "agent_daily",
            output::agent_daily(&msgs, &metrics, &result)
                .map_err(|e| polars_err("agent_daily", e))?,
        ),
    ];
    if cfg.write_items {
        tables.push((
            "items",
            output::items(&msgs, &metrics, &result).map_err(|e| polars_err("items", e))?,
        ));
    }
    let shop_rows = tables[0].1.height();
    // shop_daily last: its manifest is what later runs consult.
    tables.rotate_left(1);
    for (table, df) in &mut tables {
        commit_table(cfg, table, day, df, manifest.clone())?;
    }
    Ok(DaySummary {
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
        rolling_rows: 0,
        alert_rows: 0,
        provisional,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// `shop_rolling` for `day`: for each metric in force with `window_days` >
/// 1, the daily numerators and denominators of its id summed over the
/// window's days, whatever version each day used. Built from the committed
/// `shop_daily` partitions; a day whose partition is absent is computed from
/// the input (and committed) first.
fn rolling(cfg: &RunConfig, day: NaiveDate, progress: Progress) -> Result<Vec<MetricRow>> {
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
                match daily(cfg, d, progress) {
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
