//! Output tables (SPEC §5): build them from a day's result and commit each
//! partition atomically.
//!
//! A partition is one file, `DIR/<table>/platform=P/dt=D/part-0.parquet` (or
//! one file per shard, `part-I-of-N.parquet`, see [`crate::shard`]). It
//! is written to a hidden staging file beside it (`.part-0.parquet.<pid>.tmp`,
//! which Hive-style readers skip), flushed to disk, and renamed over the old
//! file: a rename within a directory is atomic, so a reader sees the old
//! partition or the new one, never a mix, and a failed run leaves the old one.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use polars::prelude::*;

use crate::engine::{DayResult, Item};
use crate::error::{Error, Result};
use crate::model::Messages;
use crate::rules::{Kind, Metric};
use crate::shard::Shard;

/// The tables a day writes.
pub const TABLES: &[&str] = &[
    "shop_daily",
    "agent_daily",
    "items",
    "shop_rolling",
    "alerts",
];

/// The value of a metric row: a share for rates, seconds for mean latency.
pub fn value(kind: Kind, numerator: i64, denominator: i64) -> f64 {
    match kind {
        Kind::Rate => numerator as f64 / denominator as f64,
        Kind::MeanLatency => numerator as f64 / denominator as f64 / 1000.0,
    }
}

/// `shop_daily`: one row per shop and metric with a non-empty denominator,
/// sorted by shop_id, metric.
pub fn shop_daily(m: &Messages, metrics: &[&Metric], r: &DayResult) -> PolarsResult<DataFrame> {
    let mut rows: Vec<(&str, &str, i64, i64, f64, String)> = r
        .by_shop()
        .into_iter()
        .map(|((shop, k), c)| {
            let metric = metrics[k as usize];
            (
                m.shop_names[shop as usize].as_str(),
                metric.id.as_str(),
                c.numerator,
                c.denominator,
                value(metric.kind, c.numerator, c.denominator),
                metric.rule_version(),
            )
        })
        .collect();
    rows.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    DataFrame::new_infer_height(vec![
        Column::new(
            "shop_id".into(),
            rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        ),
        Column::new(
            "metric".into(),
            rows.iter().map(|r| r.1).collect::<Vec<_>>(),
        ),
        Column::new(
            "numerator".into(),
            rows.iter().map(|r| r.2).collect::<Vec<_>>(),
        ),
        Column::new(
            "denominator".into(),
            rows.iter().map(|r| r.3).collect::<Vec<_>>(),
        ),
        Column::new("value".into(), rows.iter().map(|r| r.4).collect::<Vec<_>>()),
        Column::new(
            "rule_version".into(),
            rows.iter().map(|r| r.5.as_str()).collect::<Vec<_>>(),
        ),
    ])
}

/// `agent_daily`: like `shop_daily` with `agent_id` (the agent of each item,
/// SPEC §2), sorted by shop_id, agent_id, metric. Its rows add up to
/// `shop_daily`'s: the shop rows are computed as their sums.
pub fn agent_daily(m: &Messages, metrics: &[&Metric], r: &DayResult) -> PolarsResult<DataFrame> {
    let mut rows: Vec<(&str, &str, &str, i64, i64, f64, String)> = r
        .by_agent
        .iter()
        .map(|(&(shop, agent, k), c)| {
            let metric = metrics[k as usize];
            (
                m.shop_names[shop as usize].as_str(),
                m.agent_names[agent as usize].as_str(),
                metric.id.as_str(),
                c.numerator,
                c.denominator,
                value(metric.kind, c.numerator, c.denominator),
                metric.rule_version(),
            )
        })
        .collect();
    rows.sort_by(|a, b| (a.0, a.1, a.2).cmp(&(b.0, b.1, b.2)));
    DataFrame::new_infer_height(vec![
        Column::new(
            "shop_id".into(),
            rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        ),
        Column::new(
            "agent_id".into(),
            rows.iter().map(|r| r.1).collect::<Vec<_>>(),
        ),
        Column::new(
            "metric".into(),
            rows.iter().map(|r| r.2).collect::<Vec<_>>(),
        ),
        Column::new(
            "numerator".into(),
            rows.iter().map(|r| r.3).collect::<Vec<_>>(),
        ),
        Column::new(
            "denominator".into(),
            rows.iter().map(|r| r.4).collect::<Vec<_>>(),
        ),
        Column::new("value".into(), rows.iter().map(|r| r.5).collect::<Vec<_>>()),
        Column::new(
            "rule_version".into(),
            rows.iter().map(|r| r.6.as_str()).collect::<Vec<_>>(),
        ),
    ])
}

/// Each name's place among the sorted distinct names (equal names, equal
/// places), so that comparing places compares the names.
fn name_ranks(names: &[String]) -> Vec<u32> {
    use rayon::prelude::*;
    // The first 8 bytes, big-endian and zero-padded, order the names as far
    // as they go: only equal prefixes need the strings.
    let prefix = |s: &str| {
        let b = s.as_bytes();
        let mut x = [0u8; 8];
        let n = b.len().min(8);
        x[..n].copy_from_slice(&b[..n]);
        u64::from_be_bytes(x)
    };
    let mut order: Vec<(u64, u32)> = names
        .iter()
        .enumerate()
        .map(|(i, s)| (prefix(s), i as u32))
        .collect();
    let name = |i: u32| names[i as usize].as_str();
    order.par_sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| name(a.1).cmp(name(b.1))));
    let mut rank = vec![0u32; names.len()];
    let mut r = 0u32;
    for k in 0..order.len() {
        if k > 0 && name(order[k].1) != name(order[k - 1].1) {
            r += 1;
        }
        rank[order[k].1 as usize] = r;
    }
    rank
}

/// The places of a bucket's shop, agent and buyer names among their sorted
/// names (equal names, equal places): the `items` table is sorted by these
/// integers instead of the strings. Computed once per bucket for every
/// platform.
pub struct NameRanks {
    shop: Vec<u32>,
    agent: Vec<u32>,
    buyer: Vec<u32>,
}

impl NameRanks {
    pub fn of(m: &Messages) -> NameRanks {
        NameRanks {
            shop: name_ranks(&m.shop_names),
            agent: name_ranks(&m.agent_names),
            buyer: name_ranks(&m.buyer_names),
        }
    }
}

/// `items`: one row per counted or excluded item, sorted by shop_id,
/// agent_id, metric, then buyer_id and start (then the engine's order, for
/// equal keys). `ranks` are `m`'s ([`NameRanks::of`]).
pub fn items(
    m: &Messages,
    ranks: &NameRanks,
    metrics: &[&Metric],
    r: &DayResult,
) -> PolarsResult<DataFrame> {
    use rayon::prelude::*;
    let metric_rank = name_ranks(&metrics.iter().map(|k| k.id.clone()).collect::<Vec<_>>());
    // (shop, agent), (metric, buyer), start, then the item's index: unique,
    // so an unstable sort gives the stable order of the string keys.
    let mut keyed: Vec<(u64, u64, i64, usize)> = r
        .items
        .par_iter()
        .enumerate()
        .map(|(i, it)| {
            (
                (u64::from(ranks.shop[it.shop as usize]) << 32)
                    | u64::from(ranks.agent[it.agent as usize]),
                (u64::from(metric_rank[it.metric as usize]) << 32)
                    | u64::from(ranks.buyer[it.buyer as usize]),
                it.start,
                i,
            )
        })
        .collect();
    keyed.par_sort_unstable();
    // The items in table order, read once at random; every column below
    // is then one pass in order.
    let sorted: Vec<&Item> = keyed.par_iter().map(|k| &r.items[k.3]).collect();
    drop(keyed);
    fn column<T: Send>(sorted: &[&Item], f: impl Fn(&Item) -> T + Sync) -> Vec<T> {
        sorted.par_iter().map(|it| f(it)).collect()
    }
    let ts = |name: &str, v: Vec<Option<i64>>| -> PolarsResult<Column> {
        Column::new(name.into(), v).cast(&DataType::Datetime(
            TimeUnit::Milliseconds,
            Some(TimeZone::UTC),
        ))
    };
    DataFrame::new_infer_height(vec![
        Column::new(
            "shop_id".into(),
            column(&sorted, |it: &Item| m.shop_names[it.shop as usize].as_str()),
        ),
        Column::new(
            "buyer_id".into(),
            column(&sorted, |it: &Item| {
                m.buyer_names[it.buyer as usize].as_str()
            }),
        ),
        Column::new(
            "agent_id".into(),
            column(&sorted, |it: &Item| {
                m.agent_names[it.agent as usize].as_str()
            }),
        ),
        Column::new(
            "metric".into(),
            column(&sorted, |it: &Item| metrics[it.metric as usize].id.as_str()),
        ),
        ts("start", column(&sorted, |it: &Item| Some(it.start)))?,
        ts("reply", column(&sorted, |it: &Item| it.reply))?,
        Column::new(
            "latency_ms".into(),
            column(&sorted, |it: &Item| it.latency_ms),
        ),
        Column::new(
            "counted_ms".into(),
            column(&sorted, |it: &Item| it.counted_ms),
        ),
        Column::new(
            "passed".into(),
            sorted.iter().map(|it| it.passed).collect::<Vec<_>>(),
        ),
        Column::new(
            "excluded".into(),
            sorted
                .iter()
                .map(|it| it.excluded.map(|e| e.as_str()))
                .collect::<Vec<_>>(),
        ),
    ])
}

/// Refuses an output directory that is `/`, the input, or inside the input
/// (kefu would then read its own output, and a mistake could overwrite the
/// source data).
pub fn check_output_dir(input: &str, out: &Path) -> Result<()> {
    let out_abs = absolute(out);
    if out_abs.parent().is_none() {
        return Err(Error::Usage(format!(
            "--output {}: refusing to write into the root directory",
            out.display()
        )));
    }
    // For a glob, the folder before its first wildcard, and whether the
    // pattern would match the files kefu writes.
    let is_glob = input.contains(['*', '?', '[']);
    let literal: PathBuf = Path::new(input)
        .components()
        .take_while(|c| !c.as_os_str().to_string_lossy().contains(['*', '?', '[']))
        .collect();
    let in_abs = absolute(&literal);
    let reads_output = !is_glob || {
        let sample = std::path::absolute(out)
            .unwrap_or_else(|_| out.to_path_buf())
            .join("shop_daily/platform=p/dt=2024-01-01/part-0.parquet");
        let opts = glob::MatchOptions {
            require_literal_separator: true,
            ..Default::default()
        };
        glob::Pattern::new(input).is_ok_and(|p| p.matches_path_with(&sample, opts))
    };
    let inside = in_abs.is_dir() && out_abs.starts_with(&in_abs) && reads_output;
    if out_abs == in_abs || inside {
        return Err(Error::Usage(format!(
            "--output {} is {} the input {}: choose a folder outside the input",
            out.display(),
            if out_abs == in_abs {
                "the same as"
            } else {
                "inside"
            },
            input
        )));
    }
    Ok(())
}

/// `p` made absolute, with symlinks resolved as far as the path exists.
fn absolute(p: &Path) -> PathBuf {
    let p = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    // Canonicalise the longest existing prefix, keep the rest as written.
    let mut existing = p.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(c) = existing.canonicalize() {
            let mut out = c;
            for r in rest.iter().rev() {
                out.push(r);
            }
            return out;
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => return p.clone(),
        }
    }
}

/// An exclusive lock on the output directory for the whole run, so that two
/// runs never interleave partitions. The second run fails at once (exit 75,
/// retryable) naming the holder. The lock file (`DIR/.kefu.lock`, one per
/// shard when sharded) stays; the lock is released when the process ends,
/// however it ends.
pub fn lock(out: &Path, shard: Shard) -> Result<File> {
    fs::create_dir_all(out).map_err(|e| {
        Error::Io(format!(
            "cannot create output directory {}: {e}",
            out.display()
        ))
    })?;
    let path = out.join(shard.lock_file());
    let mut file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::Io(format!("cannot open lock file {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            let holder = fs::read_to_string(&path).unwrap_or_default();
            return Err(Error::Io(format!(
                "another kefu run is writing to {} (lock file {}, held by {}); try again when it has finished",
                out.display(),
                path.display(),
                if holder.trim().is_empty() { "another process" } else { holder.trim() }
            )));
        }
        Err(fs::TryLockError::Error(e)) => {
            return Err(Error::Io(format!("cannot lock {}: {e}", path.display())))
        }
    }
    file.set_len(0).ok();
    let _ = writeln!(file, "pid {}", std::process::id());
    Ok(file)
}

/// Test hook: `KEFU_INJECT_WRITE_FAULT=<table>` makes writing that table's
/// staged file fail as a full disk would, so tests can check that a failed
/// write leaves no staging file and the committed partition intact.
fn injected_fault(table: &str) -> Option<std::io::Error> {
    let v = std::env::var("KEFU_INJECT_WRITE_FAULT").ok()?;
    (v == table).then(|| std::io::Error::other("injected fault: no space left on device"))
}

/// The folder of one partition.
pub fn partition_dir(out: &Path, table: &str, platform: &str, day: NaiveDate) -> PathBuf {
    out.join(table)
        .join(format!("platform={platform}"))
        .join(format!("dt={day}"))
}

/// Writes `df` as the partition's data file (`part-0.parquet`, or the
/// shard's), replacing any previous one atomically. Files kefu wrote under
/// another shard count are removed, so a partition always holds one
/// sharding.
pub fn commit_partition(
    out: &Path,
    table: &str,
    platform: &str,
    day: NaiveDate,
    shard: Shard,
    df: &mut DataFrame,
) -> Result<PathBuf> {
    let mut staged = StagedPartition::begin(out, table, platform, day, shard)?;
    staged.write(df)?;
    staged.commit()
}

/// Rows per Parquet row group.
const ROW_GROUP_ROWS: usize = 512 * 512;

/// A partition's data file being written in pieces (e.g. one per shop
/// bucket, in order) to its hidden staging file; [`StagedPartition::commit`]
/// renames it over the partition's file. Dropped uncommitted, the staging
/// file is removed and the committed partition is untouched.
pub struct StagedPartition {
    table: String,
    dir: PathBuf,
    final_path: PathBuf,
    staged: PathBuf,
    shard: Shard,
    file: Option<File>,
    /// The file's bytes pass through `buffer` (kept here too, so that
    /// [`StagedPartition::commit`] flushes it and sees the error).
    buffer: Option<Buffered>,
    writer: Option<polars::io::parquet::write::BatchedWriter<Buffered>>,
    committed: bool,
}

/// A buffered staging file shared with the Parquet writer. The writer
/// writes a file's footer field by field: unbuffered, that is a system call
/// for every few bytes (about 100 per empty partition).
#[derive(Clone)]
struct Buffered(std::sync::Arc<std::sync::Mutex<std::io::BufWriter<File>>>);

impl Buffered {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::io::BufWriter<File>> {
        // Poisoned only by a panic while writing, which stops the run.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Write for Buffered {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.lock().write(buf)
    }
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.lock().write_all(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.lock().flush()
    }
}

fn io_err(what: &str, p: &Path, e: &dyn std::fmt::Display) -> Error {
    Error::Io(format!("cannot {what} {}: {e}", p.display()))
}

impl StagedPartition {
    pub fn begin(
        out: &Path,
        table: &str,
        platform: &str,
        day: NaiveDate,
        shard: Shard,
    ) -> Result<StagedPartition> {
        let dir = partition_dir(out, table, platform, day);
        fs::create_dir_all(&dir).map_err(|e| io_err("create", &dir, &e))?;
        remove_stale_staging(&dir, shard);
        let final_path = dir.join(shard.data_file());
        let staged = dir.join(format!(".{}.{}.tmp", shard.data_file(), std::process::id()));
        let file = File::create(&staged).map_err(|e| io_err("create", &staged, &e))?;
        Ok(StagedPartition {
            table: table.to_string(),
            dir,
            final_path,
            staged,
            shard,
            file: Some(file),
            buffer: None,
            writer: None,
            committed: false,
        })
    }

    /// Appends `df`'s rows (every piece must have the same schema).
    pub fn write(&mut self, df: &DataFrame) -> Result<()> {
        if let Some(e) = injected_fault(&self.table) {
            return Err(io_err("write", &self.staged, &e));
        }
        if self.writer.is_none() {
            let file = self
                .file
                .as_ref()
                .expect("open until commit")
                .try_clone()
                .map_err(|e| io_err("write", &self.staged, &e))?;
            let buffer = Buffered(std::sync::Arc::new(std::sync::Mutex::new(
                std::io::BufWriter::with_capacity(1 << 20, file),
            )));
            let w = ParquetWriter::new(buffer.clone())
                .with_statistics(StatisticsOptions::full())
                .batched(df.schema())
                .map_err(|e| io_err("write", &self.staged, &e))?;
            self.buffer = Some(buffer);
            self.writer = Some(w);
        }
        let w = self.writer.as_mut().expect("created above");
        let mut offset = 0;
        while offset < df.height() {
            let mut piece = df.slice(offset as i64, ROW_GROUP_ROWS);
            piece.rechunk_mut_par();
            w.write_batch(&piece)
                .map_err(|e| io_err("write", &self.staged, &e))?;
            offset += ROW_GROUP_ROWS;
        }
        Ok(())
    }

    /// Finishes the file, makes it durable and renames it over the
    /// partition's file.
    pub fn commit(mut self) -> Result<PathBuf> {
        let w = self
            .writer
            .take()
            .ok_or_else(|| io_err("write", &self.staged, &"no rows or schema were given"))?;
        w.finish().map_err(|e| io_err("write", &self.staged, &e))?;
        drop(w);
        self.buffer
            .take()
            .expect("made with the writer")
            .lock()
            .flush()
            .map_err(|e| io_err("write", &self.staged, &e))?;
        let mut file = self.file.take().expect("open until commit");
        file.flush()
            .map_err(|e| io_err("write", &self.staged, &e))?;
        file.sync_all()
            .map_err(|e| io_err("sync", &self.staged, &e))?;
        drop(file);
        fs::rename(&self.staged, &self.final_path)
            .map_err(|e| io_err("commit", &self.final_path, &e))?;
        self.committed = true;
        remove_other_sharding(&self.dir, self.shard);
        // Make the rename itself durable.
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(self.final_path.clone())
    }
}

impl Drop for StagedPartition {
    fn drop(&mut self) {
        if !self.committed {
            self.writer = None;
            self.buffer = None;
            self.file = None;
            let _ = fs::remove_file(&self.staged);
        }
    }
}

/// Where a run of `shard` spills rows it cannot hold in memory: a hidden
/// folder of the output directory (same disk as the output; readers of
/// Hive-style tables skip dot folders), removed when the day is done.
pub fn spill_dir(out: &Path, shard: Shard) -> PathBuf {
    out.join(format!(
        ".kefu-spill.{}.{}",
        shard.data_file(),
        std::process::id()
    ))
}

/// Removes spill folders killed runs of this shard left behind (called
/// with the shard's lock held).
pub fn remove_stale_spill(out: &Path, shard: Shard) {
    let Ok(entries) = fs::read_dir(out) else {
        return;
    };
    let prefix = format!(".kefu-spill.{}.", shard.data_file());
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name
            .strip_prefix(&prefix)
            .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
        {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

/// Removes the staging files killed runs of this shard left anywhere under
/// this platform's partitions. Called with the shard's lock held, so no other
/// kefu run is writing them.
pub fn remove_stale_staging_all(out: &Path, platform: &str, shard: Shard) {
    for table in TABLES {
        let Ok(days) = fs::read_dir(out.join(table).join(format!("platform={platform}"))) else {
            continue;
        };
        for d in days.flatten() {
            if d.file_type().is_ok_and(|t| t.is_dir()) {
                remove_stale_staging(&d.path(), shard);
            }
        }
    }
}

/// Removes data and manifest files kefu wrote under another shard count.
fn remove_other_sharding(dir: &Path, shard: Shard) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if shard.is_other_sharding(&e.file_name().to_string_lossy()) {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// Removes staging files a killed run of this shard left in a partition
/// folder: only names kefu itself gives them (`.part-0.parquet.<pid>.tmp`,
/// `._manifest.json.<pid>.tmp`), never anything else.
fn remove_stale_staging(dir: &Path, shard: Shard) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        let prefixes = [
            format!(".{}.", shard.data_file()),
            format!(".{}.", shard.manifest_file()),
        ];
        let ours = prefixes.iter().any(|p| {
            name.strip_prefix(p)
                .and_then(|rest| rest.strip_suffix(".tmp"))
                .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
        });
        if ours {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// One `shop_daily` row as read back from a committed partition.
#[derive(Debug, Clone, PartialEq)]
pub struct DailyRow {
    pub shop_id: String,
    pub metric: String,
    pub numerator: i64,
    pub denominator: i64,
}

/// Reads a committed `shop_daily` partition, or None when it does not exist.
pub fn read_shop_daily(
    out: &Path,
    platform: &str,
    day: NaiveDate,
    shard: Shard,
) -> Result<Option<Vec<DailyRow>>> {
    let path = partition_dir(out, "shop_daily", platform, day).join(shard.data_file());
    if !is_committed(out, "shop_daily", platform, day, shard) {
        return Ok(None);
    }
    let bad = |e: &dyn std::fmt::Display| {
        Error::BadData(format!(
            "cannot read the committed partition {}: {e}",
            path.display()
        ))
    };
    let p = path.to_str().ok_or_else(|| bad(&"path is not UTF-8"))?;
    let df = LazyFrame::scan_parquet(PlRefPath::new(p), Default::default())
        .and_then(|lf| {
            lf.select([
                col("shop_id"),
                col("metric"),
                col("numerator"),
                col("denominator"),
            ])
            .collect()
        })
        .map_err(|e| bad(&e))?;
    let s = |n: &str| {
        df.column(n)
            .and_then(|c| c.str().cloned())
            .map_err(|e| bad(&e))
    };
    let i = |n: &str| {
        df.column(n)
            .and_then(|c| c.i64().cloned())
            .map_err(|e| bad(&e))
    };
    let (shop, metric, num, den) = (
        s("shop_id")?,
        s("metric")?,
        i("numerator")?,
        i("denominator")?,
    );
    Ok(Some(
        (0..df.height())
            .map(|k| DailyRow {
                shop_id: shop.get(k).unwrap_or_default().to_string(),
                metric: metric.get(k).unwrap_or_default().to_string(),
                numerator: num.get(k).unwrap_or(0),
                denominator: den.get(k).unwrap_or(0),
            })
            .collect(),
    ))
}

/// A metric row of `shop_rolling` or an alert's source.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricRow {
    pub shop_id: String,
    pub metric: String,
    pub numerator: i64,
    pub denominator: i64,
    pub value: f64,
    pub rule_version: String,
    pub window_days: u32,
}

/// `shop_rolling` from its rows (sorted here by shop_id, metric).
pub fn shop_rolling(rows: &mut [MetricRow]) -> PolarsResult<DataFrame> {
    rows.sort_by(|a, b| (&a.shop_id, &a.metric).cmp(&(&b.shop_id, &b.metric)));
    DataFrame::new_infer_height(vec![
        Column::new(
            "shop_id".into(),
            rows.iter().map(|r| r.shop_id.as_str()).collect::<Vec<_>>(),
        ),
        Column::new(
            "metric".into(),
            rows.iter().map(|r| r.metric.as_str()).collect::<Vec<_>>(),
        ),
        Column::new(
            "numerator".into(),
            rows.iter().map(|r| r.numerator).collect::<Vec<_>>(),
        ),
        Column::new(
            "denominator".into(),
            rows.iter().map(|r| r.denominator).collect::<Vec<_>>(),
        ),
        Column::new(
            "value".into(),
            rows.iter().map(|r| r.value).collect::<Vec<_>>(),
        ),
        Column::new(
            "rule_version".into(),
            rows.iter()
                .map(|r| r.rule_version.as_str())
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "window_days".into(),
            rows.iter()
                .map(|r| r.window_days as i32)
                .collect::<Vec<_>>(),
        ),
    ])
}

/// One alert: a shop under a metric's target.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRow {
    pub row: MetricRow,
    pub target: f64,
    pub message: String,
}

/// `alerts` from its rows (sorted here by shop_id, metric).
pub fn alerts(rows: &mut [AlertRow]) -> PolarsResult<DataFrame> {
    rows.sort_by(|a, b| (&a.row.shop_id, &a.row.metric).cmp(&(&b.row.shop_id, &b.row.metric)));
    DataFrame::new_infer_height(vec![
        Column::new(
            "shop_id".into(),
            rows.iter()
                .map(|r| r.row.shop_id.as_str())
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "metric".into(),
            rows.iter()
                .map(|r| r.row.metric.as_str())
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "rule_version".into(),
            rows.iter()
                .map(|r| r.row.rule_version.as_str())
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "numerator".into(),
            rows.iter().map(|r| r.row.numerator).collect::<Vec<_>>(),
        ),
        Column::new(
            "denominator".into(),
            rows.iter().map(|r| r.row.denominator).collect::<Vec<_>>(),
        ),
        Column::new(
            "value".into(),
            rows.iter().map(|r| r.row.value).collect::<Vec<_>>(),
        ),
        Column::new(
            "target".into(),
            rows.iter().map(|r| r.target).collect::<Vec<_>>(),
        ),
        Column::new(
            "message".into(),
            rows.iter().map(|r| r.message.as_str()).collect::<Vec<_>>(),
        ),
    ])
}

/// Writes `manifest` (JSON) into the partition folder, atomically, as the
/// partition's `_manifest.json` (or the shard's). Its name starts with `_`,
/// so Hive-style readers (and kefu's own input scan) skip it.
pub fn commit_manifest(
    out: &Path,
    table: &str,
    platform: &str,
    day: NaiveDate,
    shard: Shard,
    manifest: &serde_json::Value,
) -> Result<()> {
    let dir = partition_dir(out, table, platform, day);
    let path = dir.join(shard.manifest_file());
    let staged = dir.join(format!(
        ".{}.{}.tmp",
        shard.manifest_file(),
        std::process::id()
    ));
    let io = |e: std::io::Error| Error::Io(format!("cannot write {}: {e}", path.display()));
    let text = serde_json::to_string_pretty(manifest).expect("a JSON value serialises");
    let result = (|| {
        let mut f = File::create(&staged)?;
        f.write_all(text.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        fs::rename(&staged, &path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&staged);
    }
    result.map_err(io)
}

/// Whether `table`'s partition of `day` is committed whole: its data file
/// and its manifest are there. A rewrite removes the manifest before it
/// replaces the data file and writes the manifest after, so a run killed in
/// between leaves a partition that later runs recompute instead of trust.
pub fn is_committed(out: &Path, table: &str, platform: &str, day: NaiveDate, shard: Shard) -> bool {
    let dir = partition_dir(out, table, platform, day);
    dir.join(shard.data_file()).exists() && dir.join(shard.manifest_file()).exists()
}

/// Removes `table`'s manifest of `day` (if any), before its partition is
/// rewritten (see [`is_committed`]).
pub fn retract_manifest(
    out: &Path,
    table: &str,
    platform: &str,
    day: NaiveDate,
    shard: Shard,
) -> Result<()> {
    let path = partition_dir(out, table, platform, day).join(shard.manifest_file());
    match fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::Io(format!("cannot remove {}: {e}", path.display()))),
    }
}

/// Reads a partition's manifest, if there is one.
pub fn read_manifest(
    out: &Path,
    table: &str,
    platform: &str,
    day: NaiveDate,
    shard: Shard,
) -> Option<serde_json::Value> {
    let path = partition_dir(out, table, platform, day).join(shard.manifest_file());
    let text = fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::name_ranks;

    /// A name's rank is the number of distinct names below it (the naive
    /// definition), whatever their first 8 bytes share.
    #[test]
    fn name_ranks_order_names_as_strings_do() {
        let names: Vec<String> = [
            "b",
            "a",
            "a\0",
            "ab",
            "abcdefgh1",
            "abcdefgh0",
            "abcdefgh",
            "a",
            "",
            "abcdefgh1",
            "客服",
            "abcdefg\u{ff}",
            "z",
            "",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let ranks = name_ranks(&names);
        for (i, a) in names.iter().enumerate() {
            let mut below: Vec<&String> = names.iter().filter(|b| *b < a).collect();
            below.sort();
            below.dedup();
            assert_eq!(ranks[i] as usize, below.len(), "rank of {a:?}");
        }
        assert!(name_ranks(&[]).is_empty());
    }
}
