//! The message table (SPEC §1): find the files, read the columns and days a
//! run needs, map names and values, drop bad and duplicate rows, and hand the
//! engine one thread-ordered, integer-coded [`Messages`] table.
//!
//! Parquet is read with polars' lazy scan, one file at a time (files may have
//! different schemas: some lack optional columns, some store ids as
//! integers), with projection and a `ts` range predicate pushed into the
//! scan so that row groups outside the run's days are skipped. Everything
//! after the scan is plain Rust over integer columns.

mod schedule;
mod spill;

pub use schedule::schedule_buckets;

use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, NaiveDateTime, Offset, TimeZone};
use chrono_tz::Tz;
use polars::prelude::*;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::model::{
    day_date, day_number, flag, local_day_tod, local_to_utc, Sender, MS_PER_DAY, NONE, TS_MAX_MS,
    TS_MIN_MS,
};
use crate::model::{LoadStats, Messages};
use crate::rules::InputSettings;
use crate::shard::Shard;
use spill::{SpillBatch, SpillWriter};

// ---------------------------------------------------------------------------
// Finding the files.

/// The Parquet files of `input` (a file, a directory searched recursively, or
/// a glob), in byte-wise path order. `dt=` folders whose date lies outside
/// `keep` are skipped (SPEC §1).
pub fn discover(input: &str, keep: (NaiveDate, NaiveDate)) -> Result<Vec<PathBuf>> {
    let path = Path::new(input);
    let mut files = Vec::new();
    if path.is_file() {
        files.push(path.to_path_buf());
    } else if path.is_dir() {
        walk(path, keep, &mut files)?;
        if files.is_empty() {
            return Err(Error::NoInput(format!(
                "input directory {input} holds no Parquet files (names ending .parquet or .parq, \
                 not starting with . or _) for the run's days"
            )));
        }
    } else if input.contains(['*', '?', '[']) {
        let entries = glob::glob(input)
            .map_err(|e| Error::Usage(format!("--input {input}: not a valid glob pattern: {e}")))?;
        let mut matched = 0;
        for entry in entries {
            let p = entry.map_err(|e| Error::Io(format!("--input {input}: {e}")))?;
            matched += 1;
            if dt_outside(&p, keep) {
                continue;
            }
            if p.is_dir() {
                walk(&p, keep, &mut files)?;
            } else {
                files.push(p);
            }
        }
        if matched == 0 {
            return Err(Error::NoInput(format!(
                "--input {input}: the glob matches no file"
            )));
        }
    } else {
        return Err(Error::NoInput(format!(
            "--input {input}: no such file or directory"
        )));
    }
    files.sort_by(|a, b| {
        a.as_os_str()
            .as_encoded_bytes()
            .cmp(b.as_os_str().as_encoded_bytes())
    });
    files.dedup();
    Ok(files)
}

fn walk(dir: &Path, keep: (NaiveDate, NaiveDate), out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        Error::Io(format!(
            "cannot list input directory {}: {e}",
            dir.display()
        ))
    })?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::Io(format!("cannot list {}: {e}", dir.display())))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name.starts_with('_') {
            continue;
        }
        let p = entry.path();
        let ft = entry
            .file_type()
            .map_err(|e| Error::Io(format!("cannot stat {}: {e}", p.display())))?;
        let is_dir = ft.is_dir() || (ft.is_symlink() && p.is_dir());
        if is_dir {
            if !dt_outside(Path::new(name.as_ref()), keep) {
                walk(&p, keep, out)?;
            }
        } else if name.ends_with(".parquet") || name.ends_with(".parq") {
            out.push(p);
        }
    }
    Ok(())
}

/// Whether a path has a `dt=DATE` component with a date outside `keep`.
fn dt_outside(p: &Path, keep: (NaiveDate, NaiveDate)) -> bool {
    p.components().any(|c| {
        let c = c.as_os_str().to_string_lossy();
        let Some(v) = c.strip_prefix("dt=") else {
            return false;
        };
        let d = NaiveDate::parse_from_str(v, "%Y-%m-%d")
            .or_else(|_| NaiveDate::parse_from_str(v, "%Y%m%d"));
        matches!(d, Ok(d) if d < keep.0 || d > keep.1)
    })
}

// ---------------------------------------------------------------------------
// Reading.

/// What to read: the local days `first..=last` (a run over D..D2 reads
/// D..D2+1 for the reply horizon).
#[derive(Debug, Clone, Copy)]
pub struct DayRange {
    pub first: NaiveDate,
    pub last: NaiveDate,
}

/// One file's rows, with canonical column names; `ts` is in `unit`, naive
/// (local) when `tz_aware` is false.
struct FileRows {
    path: PathBuf,
    df: DataFrame,
    unit: TimeUnit,
    tz_aware: bool,
}

const OPTIONAL_STRINGS: &[&str] = &["msg_id", "agent_id", "peer_kind", "session_id"];
const OPTIONAL_BOOLS: &[&str] = &["auto", "assist", "spam", "blocked"];

/// One input file, ready to read: the lazy scan, the canonical columns and
/// the pushed-down `ts` predicate.
struct FilePlan {
    path: PathBuf,
    lf: LazyFrame,
    /// `shop_id` first, `ts` last.
    exprs: Vec<Expr>,
    /// What a read that only counts rows needs of them: `shop_id`,
    /// `buyer_id`, `sender`, `ts`.
    count_exprs: Vec<Expr>,
    predicate: Expr,
    /// The predicate of the first loaded day alone (see [`FilePlan::mark_days`]).
    first_day: Expr,
    /// The predicate of the days before the first loaded day that
    /// [`ScanOptions::count_days_before`] asks about.
    days_before: Expr,
    unit: TimeUnit,
    tz_aware: bool,
    has_session_column: bool,
}

/// Bounds of a `ts` predicate in milliseconds, `[lo, hi)`: `utc` for a
/// time-zone-aware (or epoch) `ts`, `local` for a naive one.
#[derive(Clone, Copy, Debug)]
struct TsBounds {
    utc: (i64, i64),
    local: (i64, i64),
}

/// `bounds` select the loaded days, `first_day` the first of them and
/// `days_before` some days before that.
fn plan_file(
    path: &Path,
    settings: &InputSettings,
    bounds: TsBounds,
    first_day: TsBounds,
    days_before: TsBounds,
) -> Result<FilePlan> {
    let shown = path.display().to_string();
    let bad = |msg: String| Error::BadData(format!("input file {shown}: {msg}"));
    let path_str = path
        .to_str()
        .ok_or_else(|| bad("the path is not valid UTF-8".to_string()))?;
    let args = ScanArgsParquet {
        hive_options: HiveOptions {
            enabled: Some(false),
            ..Default::default()
        },
        glob: false,
        rechunk: false,
        ..Default::default()
    };
    let mut lf = LazyFrame::scan_parquet(PlRefPath::new(path_str), args)
        .map_err(|e| bad(format!("cannot open as Parquet: {e}")))?;
    let schema = lf.collect_schema().map_err(|e| {
        bad(format!(
            "cannot read the Parquet schema (truncated or not Parquet?): {e}"
        ))
    })?;

    let name = |canonical: &'static str| settings.column(canonical).to_string();
    let mut exprs: Vec<Expr> = Vec::new();
    let string_col = |canonical: &'static str, required: bool| -> Result<Option<Expr>> {
        let theirs = name(canonical);
        match schema.get(theirs.as_str()) {
            None if required => Err(bad(format!(
                "required column `{theirs}`{} is missing (columns present: {})",
                if theirs != canonical {
                    format!(" (mapped from `{canonical}`)")
                } else {
                    String::new()
                },
                schema
                    .iter_names()
                    .map(|n| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
            None => Ok(None),
            Some(dt) if dt.is_string() || dt.is_integer() || dt.is_null() => Ok(Some(
                col(theirs.as_str()).cast(DataType::String).alias(canonical),
            )),
            Some(dt) => Err(bad(format!(
                "column `{theirs}` has type {dt}; `{canonical}` must be a string (or an integer id)"
            ))),
        }
    };
    for c in ["shop_id", "buyer_id", "sender"] {
        exprs.push(string_col(c, true)?.expect("required"));
    }
    for c in OPTIONAL_STRINGS {
        if let Some(e) = string_col(c, false)? {
            exprs.push(e);
        }
    }
    for c in OPTIONAL_BOOLS {
        let theirs = name(c);
        match schema.get(theirs.as_str()) {
            None => {}
            Some(DataType::Boolean) | Some(DataType::Null) => {
                exprs.push(col(theirs.as_str()).cast(DataType::Boolean).alias(*c))
            }
            Some(dt) => {
                return Err(bad(format!(
                    "column `{theirs}` has type {dt}; `{c}` must be a boolean"
                )))
            }
        }
    }
    let ts_name = name("ts");
    let ts = col(ts_name.as_str());
    // The predicate is on the column as stored, so the scan can skip row
    // groups by their statistics; `ts` is then cast to a datetime.
    type MakePredicate = Box<dyn Fn(TsBounds) -> Expr>;
    let (unit, tz_aware, predicate, ts_expr): (_, _, MakePredicate, _) = match schema.get(ts_name.as_str()) {
        None => {
            return Err(bad(format!(
                "required column `{ts_name}` is missing (columns present: {})",
                schema.iter_names().map(|n| n.as_str()).collect::<Vec<_>>().join(", ")
            )))
        }
        Some(DataType::Datetime(unit, tz)) => {
            let (unit, tz) = (*unit, tz.clone());
            let per_ms = per_ms(unit);
            let aware = tz.is_some();
            let ts_p = ts.clone();
            let predicate = move |b: TsBounds| {
                let bound = |ms: i64| lit(Scalar::new_datetime(ms.saturating_mul(per_ms), unit, tz.clone()));
                let (lo_ms, hi_ms) = if aware { b.utc } else { b.local };
                ts_p.clone().is_null().or(ts_p.clone().gt_eq(bound(lo_ms)).and(ts_p.clone().lt(bound(hi_ms))))
            };
            (unit, aware, Box::new(predicate) as MakePredicate, ts.clone().alias("ts"))
        }
        Some(dt) if dt.is_integer() && settings.ts_epoch_unit.is_some() => {
            use crate::rules::EpochUnit;
            let (unit, scale_to_unit) = match settings.ts_epoch_unit.expect("checked") {
                EpochUnit::Seconds => (TimeUnit::Milliseconds, 1000i64),
                EpochUnit::Millis => (TimeUnit::Milliseconds, 1),
                EpochUnit::Micros => (TimeUnit::Microseconds, 1),
                EpochUnit::Nanos => (TimeUnit::Nanoseconds, 1),
            };
            // Bounds in the stored unit (seconds round outwards).
            let stored_per_ms = per_ms(unit) as f64 / scale_to_unit as f64;
            let as_i64 = ts.clone().cast(DataType::Int64);
            let (ts_p, as_i64_p) = (ts.clone(), as_i64.clone());
            let predicate = move |b: TsBounds| {
                let (lo_ms, hi_ms) = b.utc;
                let lo = (lo_ms as f64 * stored_per_ms).floor() as i64;
                let hi = (hi_ms as f64 * stored_per_ms).ceil() as i64;
                ts_p.clone().is_null().or(as_i64_p.clone().gt_eq(lit(lo)).and(as_i64_p.clone().lt(lit(hi))))
            };
            let expr = (as_i64 * lit(scale_to_unit))
                .cast(DataType::Datetime(unit, Some(polars::prelude::TimeZone::UTC)))
                .alias("ts");
            (unit, true, Box::new(predicate) as MakePredicate, expr)
        }
        Some(dt) if dt.is_integer() => {
            return Err(bad(format!(
                "column `{ts_name}` holds integers; if they are epoch times, say their unit with \
                 `[input] ts_epoch_unit = \"s\"` (or \"ms\", \"us\", \"ns\") in the rule file"
            )))
        }
        Some(dt) => {
            return Err(bad(format!(
                "column `{ts_name}` has type {dt}; `ts` must be a Parquet timestamp (any unit, with or \
                 without a time zone), or integer epoch time with `[input] ts_epoch_unit`"
            )))
        }
    };
    exprs.push(ts_expr);
    let count_exprs = [0, 1, 2, exprs.len() - 1]
        .iter()
        .map(|&k| exprs[k].clone())
        .collect();
    let has_session_column = schema.get(name("session_id").as_str()).is_some();
    Ok(FilePlan {
        path: path.to_path_buf(),
        lf,
        exprs,
        count_exprs,
        predicate: predicate(bounds),
        first_day: predicate(first_day),
        days_before: predicate(days_before),
        unit,
        tz_aware,
        has_session_column,
    })
}

impl FilePlan {
    fn bad(&self, msg: String) -> Error {
        Error::BadData(format!("input file {}: {msg}", self.path.display()))
    }

    /// Rows in the file (from its metadata).
    fn row_count(&self) -> Result<u64> {
        let df = self
            .lf
            .clone()
            .select([len().alias("n")])
            .collect()
            .map_err(|e| self.bad(format!("cannot read (truncated or corrupt Parquet?): {e}")))?;
        let n = df
            .column("n")
            .and_then(|c| c.cast(&DataType::UInt64))
            .map_err(|e| self.bad(e.to_string()))?;
        Ok(n.u64()
            .map_err(|e| self.bad(e.to_string()))?
            .get(0)
            .unwrap_or(0))
    }

    /// Rows `offset..offset + len` of the file (in file order) that pass the
    /// predicate, with canonical column names (only those that decide
    /// whether a row is bad when `count_only`). The slice and the predicate
    /// go into the scan, which skips row groups outside both.
    fn read(&self, offset: u64, len: u64, count_only: bool) -> Result<FileRows> {
        let exprs = if count_only {
            &self.count_exprs
        } else {
            &self.exprs
        };
        let df = self
            .lf
            .clone()
            .slice(offset as i64, len.min(u32::MAX as u64) as IdxSize)
            .filter(self.predicate.clone())
            .select(exprs.clone())
            .collect()
            .map_err(|e| self.bad(format!("cannot read (truncated or corrupt Parquet?): {e}")))?;
        Ok(FileRows {
            path: self.path.clone(),
            df,
            unit: self.unit,
            tz_aware: self.tz_aware,
        })
    }

    /// Marks in `present` which local days `lo..lo + present.len()` have a
    /// row of the file (read from the `ts` column alone, in the row groups
    /// `predicate`, the predicate of those days, selects).
    fn mark_days(
        &self,
        clock: &LocalClock,
        lo: i32,
        present: &mut [bool],
        predicate: &Expr,
    ) -> Result<()> {
        let df = self
            .lf
            .clone()
            .filter(predicate.clone())
            .select([self.exprs.last().expect("ts is selected").clone()])
            .collect()
            .map_err(|e| self.bad(format!("cannot read (truncated or corrupt Parquet?): {e}")))?;
        let ts = df
            .column("ts")
            .and_then(|c| c.as_materialized_series().datetime().cloned())
            .map_err(|e| self.bad(format!("column ts: {e}")))?;
        let per_ms = per_ms(self.unit);
        for v in ts.physical().iter().flatten() {
            if let Some((_, d, _)) = clock.row_time(v, per_ms, self.tz_aware) {
                if let Some(p) = usize::try_from(d - lo)
                    .ok()
                    .and_then(|k| present.get_mut(k))
                {
                    *p = true;
                }
            }
        }
        Ok(())
    }

    /// The rows of each of the file's row groups, from its footer.
    fn row_groups(&self) -> Result<Vec<u64>> {
        let file =
            std::fs::File::open(&self.path).map_err(|e| self.bad(format!("cannot open: {e}")))?;
        let mut reader = ParquetReader::new(file);
        let meta = reader
            .get_metadata()
            .map_err(|e| self.bad(format!("cannot read the Parquet footer: {e}")))?;
        Ok(meta
            .row_groups
            .iter()
            .map(|g| g.num_rows() as u64)
            .collect())
    }

    /// The file row numbers of [`FilePlan::read`]'s rows, for naming bad
    /// rows (a second, slower read: a row index stops the scan from
    /// skipping row groups).
    fn row_numbers(&self, offset: u64, len: u64) -> Result<Vec<u32>> {
        let df = self
            .lf
            .clone()
            .slice(offset as i64, len.min(u32::MAX as u64) as IdxSize)
            .with_row_index("__row", Some(offset.min(IdxSize::MAX as u64) as IdxSize))
            .filter(self.predicate.clone())
            .select([col("__row")])
            .collect()
            .map_err(|e| self.bad(format!("cannot read (truncated or corrupt Parquet?): {e}")))?;
        df.column("__row")
            .and_then(|c| c.cast(&DataType::UInt32))
            .and_then(|c| c.u32().map(|ca| ca.into_no_null_iter().collect()))
            .map_err(|e| self.bad(format!("row index: {e}")))
    }
}

/// The reads of a file of `rows` rows in row groups of `groups` rows:
/// `(offset, len)` of whole row groups, as many as fit in `chunk_rows` (at
/// least one). A row group larger than `chunk_rows` is read in equal
/// pieces. A read that starts or ends inside a row group decodes the whole
/// group up to its end, so fixed-size reads across row groups would decode
/// the groups they straddle twice (three times or more when `chunk_rows` is
/// below the group size). If `groups` does not add up to `rows`, fixed-size
/// reads.
fn read_chunks(groups: &[u64], rows: u64, chunk_rows: u64) -> Vec<(u64, u64)> {
    let chunk_rows = chunk_rows.max(1);
    if groups.iter().sum::<u64>() != rows || groups.is_empty() {
        return (0..rows.max(1))
            .step_by(chunk_rows as usize)
            .map(|o| (o, chunk_rows))
            .collect();
    }
    let mut out: Vec<(u64, u64)> = Vec::new();
    let mut offset = 0u64;
    let mut open: Option<(u64, u64)> = None;
    for &g in groups {
        if g == 0 {
            continue;
        }
        if g > chunk_rows {
            if let Some(c) = open.take() {
                out.push(c);
            }
            let pieces = g.div_ceil(chunk_rows);
            let step = g.div_ceil(pieces);
            let mut o = 0;
            while o < g {
                out.push((offset + o, step.min(g - o)));
                o += step;
            }
        } else {
            match &mut open {
                Some((_, len)) if *len + g <= chunk_rows => *len += g,
                _ => {
                    if let Some(c) = open.take() {
                        out.push(c);
                    }
                    open = Some((offset, g));
                }
            }
        }
        offset += g;
    }
    out.extend(open);
    if out.is_empty() {
        // No rows: one read still checks the file.
        out.push((0, chunk_rows));
    }
    out
}

fn per_ms(unit: TimeUnit) -> i64 {
    match unit {
        TimeUnit::Milliseconds => 1,
        TimeUnit::Microseconds => 1_000,
        TimeUnit::Nanoseconds => 1_000_000,
    }
}

/// The `ts` predicate bounds of local days `first..=last`, pushed into the
/// scan so that row groups outside them are skipped (the exact local-day
/// test comes after). Aware instants are bounded in UTC by the offsets in
/// force near each end, found minute by minute over days either side, so a
/// zone with one offset gets the days' exact instants and one with a
/// daylight-saving change near an end a margin of that change. Naive values
/// are local times, bounded with an hour to spare.
fn ts_bounds(tz: &Tz, first: i32, last: i32) -> TsBounds {
    let local = (first as i64 * MS_PER_DAY, (last as i64 + 1) * MS_PER_DAY);
    let hour = 3_600_000;
    // The (least, greatest) offset in force at UTC instants within
    // [at - 2 days, at + 3 days], or None out of chrono's range.
    let offsets = |at: i64, dir: i64| -> Option<(i64, i64)> {
        let (mut lo, mut hi) = (i64::MAX, i64::MIN);
        for m in -2 * 1440..=3 * 1440 {
            let t = at + dir * m * 60_000;
            let dt = DateTime::from_timestamp_millis(t)?.naive_utc();
            let off = tz.offset_from_utc_datetime(&dt).fix().local_minus_utc() as i64 * 1000;
            lo = lo.min(off);
            hi = hi.max(off);
        }
        Some((lo, hi))
    };
    // A row of the days has local = utc + offset(utc) in [local.0, local.1):
    // near the start its utc is at least local.0 - (greatest offset there),
    // near the end below local.1 - (least offset there); rows far from an
    // end are further inside.
    let lo = offsets(local.0, 1).map_or(local.0 - 2 * MS_PER_DAY, |(_, hi)| local.0 - hi);
    let hi = offsets(local.1, -1).map_or(local.1 + 2 * MS_PER_DAY, |(lo, _)| local.1 - lo);
    TsBounds {
        utc: (lo, hi),
        local: (local.0 - hour, local.1 + hour),
    }
}

/// How a load uses memory. A day is read once; its kept rows are encoded
/// compactly into *buckets*, contiguous ranges of `shop_id` (a shop is never
/// split), which wait in memory or, past [`MemoryPlan::spill_bytes`], in
/// files under [`MemoryPlan::spill_dir`]. Each bucket is then ordered and
/// computed alone, in `shop_id` order, so the big per-row structures exist
/// for one bucket at a time and the output tables come out already sorted.
#[derive(Debug, Clone)]
pub struct MemoryPlan {
    /// About this many rows per bucket (a bucket has at least one shop).
    pub bucket_rows: u64,
    /// Rows read from one file at a time.
    pub chunk_rows: u64,
    /// Encoded rows held in memory before every bucket spills to disk.
    pub spill_bytes: u64,
    /// Where spill files go; `None` keeps everything in memory.
    pub spill_dir: Option<PathBuf>,
    /// Spill files bypass the page cache (`O_DIRECT`, see the `spill`
    /// module) when the read's encoded rows are expected to pass this many
    /// bytes.
    /// A smaller spill stays buffered: the page cache holds it as easily as
    /// kefu's own budget, and a build reads its bucket back at memory speed
    /// instead of the disk's. A larger one would have the kernel find, fill
    /// and drop more pages than kefu itself may use, which costs more than
    /// waiting for the disk.
    pub direct_spill_above: u64,
}

/// Bytes a row costs while its bucket is ordered and computed (measured on
/// `kefu gen` data: strings, group-by indices, the sorted records, the
/// engine's columns and items).
pub const BYTES_PER_BUCKET_ROW: u64 = 400;

impl MemoryPlan {
    /// How many buckets are built at once: one per core.
    pub fn parallel_buckets() -> usize {
        rayon::current_num_threads().max(1)
    }

    /// One bucket, nothing spilled.
    pub fn unlimited() -> MemoryPlan {
        MemoryPlan {
            bucket_rows: u64::MAX,
            chunk_rows: 1 << 24,
            spill_bytes: u64::MAX,
            spill_dir: None,
            direct_spill_above: u64::MAX,
        }
    }

    /// A plan for about `bytes` of peak memory: half for the bucket being
    /// computed, a quarter for encoded rows waiting in memory, a quarter
    /// for reading.
    pub fn from_budget(bytes: u64, spill_dir: Option<PathBuf>) -> MemoryPlan {
        // Buckets are built [`MemoryPlan::parallel_buckets`] at a time.
        let bucket_rows =
            (bytes / 2 / BYTES_PER_BUCKET_ROW / Self::parallel_buckets() as u64).max(1000);
        MemoryPlan {
            bucket_rows,
            // A read chunk holds the file's strings as Arrow views (~150 B a
            // row), and polars' decoding about as much again while it reads.
            chunk_rows: (bytes / 8 / 150).clamp(1000, 1 << 24),
            spill_bytes: bytes / 4,
            spill_dir,
            direct_spill_above: bytes,
        }
    }
}

/// Reads `files` for `days` and builds the engine's table in one piece (no
/// bucketing, no spilling). Bad rows are counted and skipped; the run fails
/// under `strict` or when their share exceeds the rule file's
/// `max_bad_row_share`.
pub fn load(
    files: &[PathBuf],
    settings: &InputSettings,
    days: DayRange,
    strict: bool,
    shard: Shard,
) -> Result<Messages> {
    let mut loaded = scan(
        files,
        settings,
        days,
        strict,
        shard,
        &MemoryPlan::unlimited(),
        ScanOptions::default(),
    )?;
    let mut m = loaded.bucket(0)?;
    m.stats = loaded.stats.clone();
    Ok(m)
}

/// A day's rows after the read: counted, checked, and waiting in buckets.
pub struct Loaded {
    /// Totals; duplicates, non-consumer rows and rows per day grow as
    /// buckets are built, and are complete after the last one.
    pub stats: LoadStats,
    store: BucketStore,
    has_session_column: bool,
    clock: std::sync::Arc<LocalClock>,
    first: i32,
    last: i32,
    per_day: PlHashMap<i32, u64>,
    /// Rows kept by the read per loaded day (before de-duplication and the
    /// peer filter), from the first day.
    read_per_day: Vec<u64>,
    days_before: Vec<DayBefore>,
}

impl Loaded {
    /// The counts of the days before that [`ScanOptions::count_days_before`]
    /// asked for and that could be had.
    pub fn take_days_before(&mut self) -> Vec<DayBefore> {
        std::mem::take(&mut self.days_before)
    }

    /// Bytes of encoded rows the read spilled to disk, and whether past the
    /// page cache (see [`MemoryPlan::direct_spill_above`]); `None` when
    /// nothing was spilled.
    pub fn spilled(&self) -> Option<(u64, bool)> {
        (self.store.spilled > 0)
            .then_some((self.store.spilled, self.store.mode == spill::Mode::Direct))
    }

    /// How many buckets there are (at least one; some may be empty).
    pub fn buckets(&self) -> usize {
        self.store.buckets()
    }

    /// How many rows bucket `k` holds (before de-duplication).
    pub fn bucket_rows(&self, k: usize) -> u64 {
        self.store.rows.get(k).copied().unwrap_or(0)
    }

    /// Rows of `day` the read kept (before de-duplication and the peer
    /// filter): zero on the first day means the day has no item whatever
    /// the other days hold.
    pub fn read_rows_on(&self, day: NaiveDate) -> u64 {
        let k = day_number(day) - self.first;
        usize::try_from(k)
            .ok()
            .and_then(|k| self.read_per_day.get(k))
            .copied()
            .unwrap_or(0)
    }

    /// Bucket `k`'s rows as the engine's table (its `stats` are the
    /// bucket's own; the totals take them in). Each bucket can be taken once.
    pub fn bucket(&mut self, k: usize) -> Result<Messages> {
        let (mut messages, counts) = self.take(k)?.build()?.split();
        self.absorb(counts);
        messages.stats.files = self.stats.files;
        Ok(messages)
    }

    /// Bucket `k`'s encoded rows, to [`BucketRows::build`] anywhere (a
    /// spilled bucket is read back here). Each bucket can be taken once.
    pub fn take(&mut self, k: usize) -> Result<BucketRows> {
        Ok(BucketRows {
            segments: self.store.take(k),
            has_session_column: self.has_session_column,
            clock: self.clock.clone(),
        })
    }

    /// Adds a built bucket's counts to the totals. Every bucket's counts
    /// come here once, in any order.
    pub fn absorb(&mut self, counts: BucketCounts) {
        self.stats.duplicates += counts.duplicates;
        self.stats.non_consumer += counts.non_consumer;
        for (d, n) in counts.per_day {
            *self.per_day.entry(d).or_default() += n;
        }
        self.stats.rows_per_day = (self.first..=self.last)
            .map(|d| (day_date(d), self.per_day.get(&d).copied().unwrap_or(0)))
            .collect();
    }
}

/// One bucket's encoded rows, taken from [`Loaded`].
pub struct BucketRows {
    segments: Segments,
    has_session_column: bool,
    /// The read's clock: a row's local day and time come from its `ts`.
    clock: std::sync::Arc<LocalClock>,
}

/// A built bucket: its table and the counts [`Loaded::absorb`] adds up.
pub struct Built {
    messages: Messages,
    counts: BucketCounts,
}

/// What a bucket's build counted: duplicates, non-consumer rows, and rows
/// kept per local day. Small, so it can wait for its turn without the table.
pub struct BucketCounts {
    duplicates: u64,
    non_consumer: u64,
    per_day: PlHashMap<i32, u64>,
}

impl Built {
    /// The table, and the counts (to [`Loaded::absorb`]).
    pub fn split(self) -> (Messages, BucketCounts) {
        (self.messages, self.counts)
    }
}

impl BucketRows {
    /// Reads a spilled bucket's file back (and removes it), so that
    /// [`BucketRows::build`] does no I/O; nothing to do for a bucket in
    /// memory.
    pub fn read_back(&mut self) -> Result<()> {
        if matches!(self.segments, Segments::Spilled { .. }) {
            let segments = std::mem::replace(&mut self.segments, Segments::InMemory(Vec::new()));
            self.segments = Segments::InMemory(segments.resolve()?);
        }
        Ok(())
    }

    /// The engine's table of these rows (see the module's `build`). Needs no
    /// [`Loaded`], so buckets can be built on several threads at once.
    pub fn build(self) -> Result<Built> {
        let (messages, per_day) = build(
            self.segments.resolve()?,
            self.has_session_column,
            PARTITION_MIN_ROWS,
            &self.clock,
        )?;
        let counts = BucketCounts {
            duplicates: messages.stats.duplicates,
            non_consumer: messages.stats.non_consumer,
            per_day,
        };
        Ok(Built { messages, counts })
    }
}

/// Reads `files` for `days`: bad rows out (counted, with examples), rows
/// outside the days or the shard out, the rest encoded into shop buckets.
/// Fails under `strict` on any bad row, or when bad rows are more than the
/// rule file's `max_bad_row_share`.
///
/// See [`ScanOptions`] for what else it can do.
pub fn scan(
    files: &[PathBuf],
    settings: &InputSettings,
    days: DayRange,
    strict: bool,
    shard: Shard,
    plan: &MemoryPlan,
    options: ScanOptions,
) -> Result<Loaded> {
    let first = day_number(days.first);
    let last = day_number(days.last);
    let tz = settings.timezone;
    let ts_range = ts_bounds(&tz, first, last);
    let first_day = ts_bounds(&tz, first, first);
    let n_before = options.count_days_before.min(400) as i32;
    let days_before = ts_bounds(&tz, first - n_before.max(1), first - 1);
    let plans: Vec<FilePlan> = files
        .iter()
        .map(|p| plan_file(p, settings, ts_range, first_day, days_before))
        .collect::<Result<_>>()?;
    // With a session_id column in any file, rows without one (null, or from a
    // file lacking the column) are split by gaps among themselves (SPEC §2).
    let has_session_column = plans.iter().any(|p| p.has_session_column);
    let counts: Vec<u64> = plans
        .iter()
        .map(FilePlan::row_count)
        .collect::<Result<_>>()?;
    let total: u64 = counts.iter().sum();
    let clock = LocalClock::new(tz, ts_range.utc.0, ts_range.utc.1);
    let mut keep_rows = true;
    if options.probe_first {
        let mut present = [false];
        for p in &plans {
            p.mark_days(&clock, first, &mut present, &p.first_day)?;
            if present[0] {
                break;
            }
        }
        keep_rows = present[0];
    }
    // The counts of the days before (see `ScanOptions::count_days_before`):
    // which of them have no row, and what reads of them would count.
    let mut present = vec![false; n_before as usize];
    if n_before > 0 {
        for p in &plans {
            p.mark_days(&clock, first - n_before, &mut present, &p.days_before)?;
        }
    }
    // Day `first - 1 - k` has no row, nor has its next day (unless it is
    // `first`).
    let empty_before: Vec<i32> = (0..n_before as usize)
        .rev()
        .filter(|&k| !present[k] && (k + 1 == n_before as usize || !present[k + 1]))
        .map(|k| first - n_before + k as i32)
        .collect();
    let new_stats = || LoadStats {
        files: plans.len(),
        ..Default::default()
    };
    let mut side = SideCounts {
        before: empty_before.contains(&(first - 1)).then(new_stats),
        untimed: empty_before.iter().any(|&d| d < first - 1).then(new_stats),
    };
    // The bucket bounds come from the first read that keeps rows (a sample
    // of the shops' traffic); until then there is one bucket.
    let mut bounds: Option<Bounds> = (total <= plan.bucket_rows).then(|| Bounds::new(Vec::new()));
    let mut store = BucketStore::new(1, plan, total);
    let mut stats = LoadStats {
        files: plans.len(),
        ..Default::default()
    };
    let mut read_per_day = vec![0u64; (last - first + 1).max(0) as usize];
    let mut rows_before_file = 0u64;
    for (fp, &rows) in plans.iter().zip(&counts) {
        let file_start = stats.rows_read;
        let side_start = side.rows_read();
        for (offset, len) in read_chunks(&fp.row_groups()?, rows, plan.chunk_rows) {
            let part = fp.read(offset, len, !keep_rows)?;
            let numbers = || fp.row_numbers(offset, len);
            if bounds.is_none() && keep_rows {
                if let Some(b) =
                    bounds_from_read(&part, &clock, (first, last), total, plan.bucket_rows)
                {
                    store = BucketStore::new(b.len() + 1, plan, total);
                    bounds = Some(Bounds::new(b));
                }
            }
            // File rows gone through, against `total`: the projection of the
            // spill (rows outside the days count, as they do in `total`).
            store.rows_scanned = rows_before_file + (offset + len).min(rows);
            classify_encode(
                part,
                settings,
                &clock,
                (first, last),
                shard,
                bounds.as_ref(),
                &mut store,
                &mut stats,
                &mut read_per_day,
                &mut side,
                &numbers,
                keep_rows,
            )?;
            if bounds.is_none() && store.rows.iter().any(|&r| r > 0) {
                // Not reached (kept rows lie in the days, so the sample
                // found them); if it were, one bucket keeps every row.
                bounds = Some(Bounds::new(Vec::new()));
            }
        }
        rows_before_file += rows;
        let path = fp.path.display().to_string();
        side.end_file(&path, side_start);
        stats.file_rows.push((path, stats.rows_read - file_start));
    }
    drop(plans);

    store.finish_spill()?;
    check_bad_rows(&stats, settings, strict)?;
    stats.rows_per_day = (first..=last).map(|d| (day_date(d), 0)).collect();
    let days_before = empty_before
        .iter()
        .filter_map(|&day| {
            let (stats, read_on_next) = if day == first - 1 {
                (
                    side.before.clone()?,
                    read_per_day.first().copied().unwrap_or(0),
                )
            } else {
                (side.untimed.clone()?, 0)
            };
            Some(DayBefore {
                stats,
                read_on_next,
                day,
                has_session_column,
            })
        })
        .collect();
    Ok(Loaded {
        stats,
        store,
        has_session_column,
        clock: std::sync::Arc::new(clock),
        first,
        last,
        per_day: PlHashMap::new(),
        read_per_day,
        days_before,
    })
}

/// What reads of days before a read's first day would count, counted by
/// that read (see [`ScanOptions::count_days_before`]): `before` as a read of
/// the day just before (whose rows are the first day's and those without a
/// `ts`), `untimed` as one of an earlier day (only rows without a `ts`).
/// `None` when not asked for, or when they cannot be had.
struct SideCounts {
    before: Option<LoadStats>,
    untimed: Option<LoadStats>,
}

impl SideCounts {
    fn rows_read(&self) -> (u64, u64) {
        let n = |s: &Option<LoadStats>| s.as_ref().map_or(0, |s| s.rows_read);
        (n(&self.before), n(&self.untimed))
    }

    /// A file is read: its rows, counted since `start`.
    fn end_file(&mut self, path: &str, start: (u64, u64)) {
        for (s, start) in [(&mut self.before, start.0), (&mut self.untimed, start.1)] {
            if let Some(s) = s {
                s.file_rows.push((path.to_string(), s.rows_read - start));
            }
        }
    }
}

/// Fails under `strict` on any bad row, or when bad rows are more than the
/// rule file's `max_bad_row_share` of the rows read.
fn check_bad_rows(stats: &LoadStats, settings: &InputSettings, strict: bool) -> Result<()> {
    if stats.bad_rows == 0 {
        return Ok(());
    }
    let share = stats.bad_rows as f64 / stats.rows_read.max(1) as f64;
    let examples = stats.bad_examples.join("; ");
    if strict {
        return Err(Error::BadData(format!(
            "{} bad row(s) and --strict is set. Examples: {examples}",
            stats.bad_rows
        )));
    }
    if share > settings.max_bad_row_share {
        return Err(Error::BadData(format!(
            "{} of {} rows read are bad ({:.4}%), more than max_bad_row_share = {}. Examples: {examples}",
            stats.bad_rows,
            stats.rows_read,
            share * 100.0,
            settings.max_bad_row_share
        )));
    }
    Ok(())
}

/// What [`scan`] does besides reading its days.
#[derive(Debug, Clone, Copy, Default)]
pub struct ScanOptions {
    /// The files are first asked (their `ts` column, in the first day's row
    /// groups) whether the first day has any row: when it has none, no row
    /// can make an item, so the rows are only counted and checked, not kept
    /// (the counts are the same). For days that may well be empty, such as
    /// the window days a back-fill computes.
    pub probe_first: bool,
    /// For a read whose first day is D, and N of this: of the days D−N to
    /// D−1, the files are asked (as `probe_first` asks) which have a row.
    /// For each day d without one whose next day has none either, or is D,
    /// the rows are also counted as a count-only read of d and d+1 would
    /// count them ([`Loaded::take_days_before`]). Such a read holds d+1's
    /// rows, D's when d+1 is D, and the rows without a `ts`, all of which
    /// this read sees too, so the counts are exact, and the back-fill of
    /// empty window days for D's windows reads nothing again.
    pub count_days_before: u32,
}

/// The counts a count-only read of a day before a read's first day would
/// have made, made by that read (see [`ScanOptions::count_days_before`]).
#[derive(Debug, Clone)]
pub struct DayBefore {
    /// As that read's: files, rows read and bad rows (per file, too), the
    /// first bad rows, nothing built.
    stats: LoadStats,
    /// Rows the read kept on its next day (the later read's first day).
    read_on_next: u64,
    day: i32,
    has_session_column: bool,
}

impl DayBefore {
    /// The day these counts are of.
    pub fn day(&self) -> NaiveDate {
        day_date(self.day)
    }

    /// What [`scan`] of the day (its files, `settings`, `plan`, with
    /// [`ScanOptions::probe_first`]) returns: the same counts and checks,
    /// and no rows, since the day has none.
    pub fn into_loaded(
        self,
        settings: &InputSettings,
        strict: bool,
        plan: &MemoryPlan,
    ) -> Result<Loaded> {
        let mut stats = self.stats;
        check_bad_rows(&stats, settings, strict)?;
        let (first, last) = (self.day, self.day + 1);
        stats.rows_per_day = (first..=last).map(|d| (day_date(d), 0)).collect();
        Ok(Loaded {
            stats,
            store: BucketStore::new(1, plan, 0),
            has_session_column: self.has_session_column,
            // No row: the clock is never asked.
            clock: std::sync::Arc::new(LocalClock::new(settings.timezone, 0, 0)),
            first,
            last,
            per_day: PlHashMap::new(),
            read_per_day: vec![0, self.read_on_next],
            days_before: Vec::new(),
        })
    }
}

/// The bucket bounds (the first `shop_id` of every bucket after the first)
/// from a sample: the shops of the sampled rows of the first read that lie
/// in the loaded days (`kept` of them, of `read` rows sampled, out of
/// `total` rows in the files). Buckets get about `bucket_rows` rows each if the rest of the
/// input is like the sample; a shop the sample missed falls in the range its
/// name sorts into.
fn sample_bounds<'a>(
    shops: impl Iterator<Item = &'a str>,
    read: u64,
    total: u64,
    bucket_rows: u64,
) -> Vec<String> {
    let mut per_shop: PlHashMap<&str, u64> = PlHashMap::new();
    let mut kept = 0u64;
    for s in shops {
        *per_shop.entry(s).or_default() += 1;
        kept += 1;
    }
    let expected = (total as f64 * kept as f64 / read.max(1) as f64).ceil() as u64;
    let buckets = expected.div_ceil(bucket_rows.max(1)).max(1);
    if buckets == 1 {
        return Vec::new();
    }
    let mut shops: Vec<(&str, u64)> = per_shop.into_iter().collect();
    shops.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let per_bucket = kept.div_ceil(buckets);
    let mut bounds = Vec::new();
    let mut acc = 0;
    for (shop, n) in shops {
        if acc >= per_bucket {
            bounds.push(shop.to_string());
            acc = 0;
        }
        acc += n;
    }
    bounds
}

/// The bucket bounds (the first `shop_id` of every bucket after the first),
/// with their first 8 bytes as big-endian integers (zero-padded), which
/// decide most comparisons without a call to `memcmp`.
struct Bounds {
    names: Vec<String>,
    /// The bytes every name starts with (shop ids often share a long
    /// prefix, "shop0000…", which would leave [`Bounds::prefixes`] equal).
    common: Vec<u8>,
    /// The 8 bytes after `common` of each name ([`prefix8`]).
    prefixes: Vec<u64>,
}

impl Bounds {
    fn new(names: Vec<String>) -> Bounds {
        let common: Vec<u8> = match names.first() {
            None => Vec::new(),
            Some(first) => {
                let mut l = first.len();
                for n in &names[1..] {
                    l = first.as_bytes()[..l]
                        .iter()
                        .zip(n.as_bytes())
                        .take_while(|(a, b)| a == b)
                        .count();
                }
                first.as_bytes()[..l].to_vec()
            }
        };
        let prefixes = names
            .iter()
            .map(|n| prefix8(&n.as_bytes()[common.len()..]))
            .collect();
        Bounds {
            names,
            common,
            prefixes,
        }
    }

    fn buckets(&self) -> usize {
        self.names.len() + 1
    }

    /// The bucket of a shop: the number of bounds at or below it.
    #[inline]
    fn bucket_of(&self, shop: &[u8]) -> usize {
        // Against the prefix every bound shares: a shop below it, or a
        // proper prefix of it, is below every bound; one above it is above.
        let l = self.common.len();
        if l > 0 {
            let n = shop.len().min(l);
            match shop[..n].cmp(&self.common[..n]) {
                std::cmp::Ordering::Less => return 0,
                std::cmp::Ordering::Greater => return self.names.len(),
                std::cmp::Ordering::Equal if shop.len() < l => return 0,
                std::cmp::Ordering::Equal => {}
            }
        }
        // The shop and every bound start with `common`: their rests order
        // them.
        let rest = &shop[l..];
        let p = prefix8(rest);
        let (mut lo, mut hi) = (0, self.names.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            // Zero-padded prefixes that differ order their strings the same
            // way; equal ones need the whole strings.
            let at_or_below = match self.prefixes[mid].cmp(&p) {
                std::cmp::Ordering::Less => true,
                std::cmp::Ordering::Greater => false,
                std::cmp::Ordering::Equal => &self.names[mid].as_bytes()[l..] <= rest,
            };
            if at_or_below {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }
}

/// The first 8 bytes of `b`, zero-padded, as a big-endian integer.
#[inline]
fn prefix8(b: &[u8]) -> u64 {
    let mut x = [0u8; 8];
    let n = b.len().min(8);
    x[..n].copy_from_slice(&b[..n]);
    u64::from_be_bytes(x)
}

/// A bit of the encoded flags: the row's peer is not a consumer.
const NON_CONSUMER: u8 = 0x80;

/// Local day and time of day of UTC instants, fast: the UTC offset of every
/// minute of a range, looked up instead of asked of the time-zone database
/// row by row. A minute in which the offset changes (and any instant
/// outside the range) is asked of the database, so the answer is always
/// [`local_day_tod`]'s. (This assumes no time zone changes its offset twice
/// within one minute, which none in the database does.)
struct LocalClock {
    tz: Tz,
    /// UTC ms of the first minute.
    lo: i64,
    /// Per minute: the offset in ms, or [`LocalClock::MIXED`].
    offsets: Vec<i32>,
}

impl LocalClock {
    const MIXED: i32 = i32::MIN;
    const MINUTE: i64 = 60_000;

    /// A clock for UTC instants in `[lo, hi)` (at most about 400 days are
    /// tabled; instants beyond are still right, only slower).
    fn new(tz: Tz, lo: i64, hi: i64) -> LocalClock {
        let lo = lo.div_euclid(Self::MINUTE) * Self::MINUTE;
        let minutes = ((hi - lo).max(0) / Self::MINUTE + 1).min(400 * 1440) as usize;
        let offset = |utc: i64| {
            let dt = DateTime::from_timestamp_millis(utc)
                .expect("in chrono's range")
                .naive_utc();
            tz.offset_from_utc_datetime(&dt).fix().local_minus_utc() * 1000
        };
        let in_range = |m: i64| DateTime::from_timestamp_millis(m).is_some();
        let offsets = (0..minutes as i64)
            .map(|k| {
                let start = lo + k * Self::MINUTE;
                let end = start + Self::MINUTE - 1;
                if !in_range(start) || !in_range(end) {
                    return Self::MIXED;
                }
                let a = offset(start);
                if a == offset(end) {
                    a
                } else {
                    Self::MIXED
                }
            })
            .collect();
        LocalClock { tz, lo, offsets }
    }

    /// A stored `ts` value (`per_ms` units a millisecond; naive ones are
    /// local time) as (UTC ms, local day, local ms after midnight), or
    /// `None` when it lies before 1900 or after 2200.
    #[inline]
    fn row_time(&self, stored: i64, per_ms: i64, tz_aware: bool) -> Option<(i64, i32, i32)> {
        let raw = stored.div_euclid(per_ms);
        let utc = if tz_aware {
            raw
        } else {
            local_to_utc(&self.tz, raw)?
        };
        if !(TS_MIN_MS..TS_MAX_MS).contains(&utc) {
            return None;
        }
        let (d, t) = self.day_tod(utc);
        Some((utc, d, t))
    }

    /// Local (day number, ms after midnight) of a UTC instant.
    #[inline]
    fn day_tod(&self, utc: i64) -> (i32, i32) {
        let k = (utc - self.lo).div_euclid(Self::MINUTE);
        let off = usize::try_from(k)
            .ok()
            .and_then(|k| self.offsets.get(k))
            .copied()
            .unwrap_or(Self::MIXED);
        if off == Self::MIXED {
            return local_day_tod(&self.tz, utc);
        }
        let local = utc + off as i64;
        (
            local.div_euclid(MS_PER_DAY) as i32,
            local.rem_euclid(MS_PER_DAY) as i32,
        )
    }
}

/// What one task of [`classify_encode`] found in its rows.
struct TaskRows {
    /// Per bucket: encoded rows and how many.
    buckets: Vec<(Vec<u8>, u64)>,
    /// Kept and bad rows (rows outside the days or the shard are not read).
    rows_read: u64,
    bad_rows: u64,
    /// The first few bad rows: (row of the read, reason).
    bad_first: Vec<(usize, String)>,
    /// Kept rows per loaded day.
    per_day: Vec<u64>,
    /// Bad rows a read of the day before and the first day would see, and
    /// the first few of them (see [`SideCounts`]).
    before_bad: u64,
    before_first: Vec<(usize, String)>,
    /// Bad rows without a `ts`, and the first few of them.
    untimed_bad: u64,
    untimed_first: Vec<(usize, String)>,
    /// A bad row with a `ts` outside 1900-2200: whether reads of the days
    /// before would see it is not known, so their counts cannot be had here.
    before_unknown: bool,
}

/// Rows per parallel task of [`classify_encode`].
const TASK_ROWS: usize = 1 << 16;

type Utf8ViewArray = <StringType as PolarsDataType>::Array;
type BooleanArray = <BooleanType as PolarsDataType>::Array;
type I64Array = <Int64Type as PolarsDataType>::Array;

/// The columns of one read as Arrow arrays, chunk by chunk (every column
/// with the same chunk layout).
struct ReadArrays<'a> {
    keys: [Option<Vec<&'a Utf8ViewArray>>; 5],
    sender: Vec<&'a Utf8ViewArray>,
    peer: Option<Vec<&'a Utf8ViewArray>>,
    flags: Vec<(u8, Vec<&'a BooleanArray>)>,
    ts: Vec<&'a I64Array>,
    lengths: Vec<usize>,
}

/// Classifies one read's rows and encodes the kept ones into `store`, in
/// parallel over pieces of the read: bad rows counted (with examples), rows
/// outside the loaded days or another shard's dropped, the rest encoded
/// into their shop's bucket in input order (only counted unless `keep`).
#[allow(clippy::too_many_arguments)]
fn classify_encode(
    mut part: FileRows,
    settings: &InputSettings,
    clock: &LocalClock,
    (first, last): (i32, i32),
    shard: Shard,
    bounds: Option<&Bounds>,
    store: &mut BucketStore,
    stats: &mut LoadStats,
    read_per_day: &mut [u64],
    side: &mut SideCounts,
    row_numbers: &dyn Fn() -> Result<Vec<u32>>,
    keep: bool,
) -> Result<()> {
    let shown = part.path.display().to_string();
    let fail = |e: PolarsError| Error::BadData(format!("input file {shown}: {e}"));
    if part.df.height() == 0 {
        return Ok(());
    }
    part.df.align_chunks_par();
    let df = &part.df;
    let strs = |name: &str| -> Result<Option<Vec<&Utf8ViewArray>>> {
        match df.column(name) {
            Err(_) => Ok(None),
            Ok(c) => Ok(Some(
                c.as_materialized_series()
                    .str()
                    .map_err(fail)?
                    .downcast_iter()
                    .collect(),
            )),
        }
    };
    let keys = [
        strs("shop_id")?,
        strs("buyer_id")?,
        strs("msg_id")?,
        strs("agent_id")?,
        strs("session_id")?,
    ];
    let mut flags = Vec::new();
    for (bit, name) in [
        (flag::AUTO, "auto"),
        (flag::ASSIST, "assist"),
        (flag::SPAM, "spam"),
        (flag::BLOCKED, "blocked"),
    ] {
        if let Ok(c) = df.column(name) {
            let arrays = c
                .as_materialized_series()
                .bool()
                .map_err(fail)?
                .downcast_iter()
                .collect();
            flags.push((bit, arrays));
        }
    }
    let ts_col = df
        .column("ts")
        .map_err(fail)?
        .as_materialized_series()
        .datetime()
        .map_err(fail)?;
    let arrays = ReadArrays {
        sender: strs("sender")?.expect("selected"),
        peer: strs("peer_kind")?,
        ts: ts_col.physical().downcast_iter().collect(),
        lengths: ts_col.physical().chunk_lengths().collect(),
        keys,
        flags,
    };
    // align_chunks made the layouts equal; make sure before indexing.
    let chunks = arrays.lengths.len();
    let same = |lens: &mut dyn Iterator<Item = usize>| lens.eq(arrays.lengths.iter().copied());
    let aligned = arrays
        .keys
        .iter()
        .flatten()
        .chain(std::iter::once(&arrays.sender))
        .chain(arrays.peer.iter())
        .all(|a| a.len() == chunks && same(&mut a.iter().map(|x| x.len())))
        && arrays
            .flags
            .iter()
            .all(|(_, a)| a.len() == chunks && same(&mut a.iter().map(|x| x.len())));
    if !aligned {
        return Err(Error::BadData(format!(
            "input file {shown}: the columns of a read are not aligned (internal error)"
        )));
    }

    let mut tasks: Vec<(usize, usize, usize, usize)> = Vec::new();
    let mut row0 = 0;
    for (c, &len) in arrays.lengths.iter().enumerate() {
        for s in (0..len).step_by(TASK_ROWS) {
            let e = (s + TASK_ROWS).min(len);
            tasks.push((c, s, e, row0 + s));
        }
        row0 += len;
    }
    let k = bounds.map_or(1, Bounds::buckets);
    let days = read_per_day.len();
    let per_ms = per_ms(part.unit);
    let tz_aware = part.tz_aware;
    let sender_values = &settings.sender_values;
    let results: Vec<TaskRows> = tasks
        .par_iter()
        .map(|&(c, s, e, r0)| {
            let mut out = TaskRows {
                buckets: (0..k).map(|_| (Vec::new(), 0)).collect(),
                rows_read: 0,
                bad_rows: 0,
                bad_first: Vec::new(),
                per_day: vec![0; days],
                before_bad: 0,
                before_first: Vec::new(),
                untimed_bad: 0,
                untimed_first: Vec::new(),
                before_unknown: false,
            };
            if k == 1 {
                out.buckets[0].0.reserve((e - s) * 64);
            }
            let key_arrays: [Option<&Utf8ViewArray>; 5] =
                std::array::from_fn(|j| arrays.keys[j].as_ref().map(|a| a[c]));
            let sender_a = arrays.sender[c];
            let peer_a = arrays.peer.as_ref().map(|a| a[c]);
            let ts_a = arrays.ts[c];
            let flag_a: Vec<(u8, &BooleanArray)> =
                arrays.flags.iter().map(|(b, a)| (*b, a[c])).collect();
            // A few (sender value, code) pairs seen, before the mapping.
            let mut sender_cache: Vec<(&str, u8)> = Vec::new();
            // A bad row, with its `ts` as stored and as read.
            let bad = |out: &mut TaskRows,
                       row: usize,
                       why: String,
                       raw: Option<i64>,
                       time: Option<(i64, i32, i32)>| {
                out.bad_rows += 1;
                out.rows_read += 1;
                // The day before's read sees the first day and no `ts`,
                // earlier days' reads no `ts` only.
                let untimed = time.is_none() && raw.is_none();
                out.before_unknown |= time.is_none() && raw.is_some();
                if untimed || time.is_some_and(|(_, d, _)| d == first) {
                    out.before_bad += 1;
                    if out.before_first.len() < 5 {
                        out.before_first.push((row, why.clone()));
                    }
                }
                if untimed {
                    out.untimed_bad += 1;
                    if out.untimed_first.len() < 5 {
                        out.untimed_first.push((row, why.clone()));
                    }
                }
                if out.bad_first.len() < 5 {
                    out.bad_first.push((row, why));
                }
            };
            let mut vals: [Option<&str>; 5] = [None; 5];
            for (j, i) in (s..e).zip(r0..) {
                let raw = ts_a.get(j);
                let time = raw.and_then(|v| clock.row_time(v, per_ms, tz_aware));
                // Rows outside the loaded days are not part of this read.
                if let Some((_, d, _)) = time {
                    if d < first || d > last {
                        continue;
                    }
                }
                for (v, a) in vals.iter_mut().zip(&key_arrays) {
                    *v = a.and_then(|a| a.get(j));
                }
                if !shard.is_whole() && !shard.owns(vals[0]) {
                    continue;
                }
                if vals[0].is_none() {
                    bad(&mut out, i, "shop_id is null".into(), raw, time);
                    continue;
                }
                if vals[1].is_none() {
                    bad(&mut out, i, "buyer_id is null".into(), raw, time);
                    continue;
                }
                let Some((utc, d, _)) = time else {
                    let why = if raw.is_none() {
                        "ts is null"
                    } else {
                        "ts is before 1900 or after 2200"
                    };
                    bad(&mut out, i, why.into(), raw, time);
                    continue;
                };
                let Some(sv) = sender_a.get(j) else {
                    bad(&mut out, i, "sender is null".into(), raw, time);
                    continue;
                };
                let code = match sender_cache.iter().find(|(v, _)| *v == sv) {
                    Some(&(_, code)) => code,
                    None => {
                        let mapped = sender_values.get(sv).map(String::as_str).unwrap_or(sv);
                        let code = match mapped {
                            "buyer" => Sender::Buyer as u8,
                            "agent" => Sender::Agent as u8,
                            "bot" => Sender::Bot as u8,
                            "system" => Sender::System as u8,
                            _ => u8::MAX,
                        };
                        if sender_cache.len() < 16 {
                            sender_cache.push((sv, code));
                        }
                        code
                    }
                };
                if code == u8::MAX {
                    let mapped = sender_values.get(sv).map(String::as_str).unwrap_or(sv);
                    bad(
                        &mut out,
                        i,
                        format!("sender `{mapped}` is not buyer, agent, bot or system"),
                        raw,
                        time,
                    );
                    continue;
                }
                out.rows_read += 1;
                out.per_day[(d - first) as usize] += 1;
                if !keep {
                    continue;
                }
                let mut f = 0u8;
                for (bit, a) in &flag_a {
                    if a.get(j) == Some(true) {
                        f |= bit;
                    }
                }
                if peer_a.is_some_and(|p| p.get(j).is_some_and(|p| p != "consumer")) {
                    f |= NON_CONSUMER;
                }
                let b = match bounds {
                    Some(bounds) if k > 1 => bounds.bucket_of(vals[0].unwrap_or("").as_bytes()),
                    _ => 0,
                };
                let (buf, rows) = &mut out.buckets[b];
                *rows += 1;
                encode_row(buf, utc, code, f, &vals);
            }
            out
        })
        .collect();

    // In input order: counts, bad-row examples, then the encoded rows.
    let mut numbers: Option<Vec<u32>> = None;
    let mut example = |row: usize, why: &str| -> Result<String> {
        if numbers.is_none() {
            numbers = Some(row_numbers()?);
        }
        let n = numbers
            .as_ref()
            .and_then(|v| v.get(row))
            .copied()
            .unwrap_or(u32::MAX);
        Ok(format!("{shown}, row {n}: {why}"))
    };
    if results.iter().any(|t| t.before_unknown) {
        *side = SideCounts {
            before: None,
            untimed: None,
        };
    }
    for task in results {
        stats.rows_read += task.rows_read;
        stats.bad_rows += task.bad_rows;
        for (row, why) in task.bad_first {
            if stats.bad_examples.len() >= 5 {
                break;
            }
            stats.bad_examples.push(example(row, &why)?);
        }
        // The day before's rows: the first day's kept rows and the bad rows
        // it sees; earlier days': the rows without a `ts`, all bad.
        let kept_first = task.per_day.first().copied().unwrap_or(0);
        for (s, kept, bad, first_bad) in [
            (
                &mut side.before,
                kept_first,
                task.before_bad,
                task.before_first,
            ),
            (&mut side.untimed, 0, task.untimed_bad, task.untimed_first),
        ] {
            let Some(s) = s else { continue };
            s.rows_read += kept + bad;
            s.bad_rows += bad;
            for (row, why) in first_bad {
                if s.bad_examples.len() >= 5 {
                    break;
                }
                s.bad_examples.push(example(row, &why)?);
            }
        }
        for (acc, n) in read_per_day.iter_mut().zip(task.per_day) {
            *acc += n;
        }
        for (b, (bytes, rows)) in task.buckets.into_iter().enumerate() {
            if rows > 0 {
                store.append(b, bytes, rows);
            }
        }
    }
    store.spill_if_over()
}

/// The bucket bounds from the first read (see [`sample_bounds`]): the shops
/// of up to about 256K of its rows, evenly spaced, that lie in the loaded
/// days; `None` when none does.
fn bounds_from_read(
    part: &FileRows,
    clock: &LocalClock,
    (first, last): (i32, i32),
    total: u64,
    bucket_rows: u64,
) -> Option<Vec<String>> {
    let df = &part.df;
    let shop = df
        .column("shop_id")
        .ok()?
        .as_materialized_series()
        .str()
        .ok()?;
    let ts = df
        .column("ts")
        .ok()?
        .as_materialized_series()
        .datetime()
        .ok()?;
    let n = df.height();
    let stride = n.div_ceil(1 << 18).max(1);
    let per_ms = per_ms(part.unit);
    let in_days = |t: Option<i64>| -> Option<()> {
        let (_, d, _) = clock.row_time(t?, per_ms, part.tz_aware)?;
        (first..=last).contains(&d).then_some(())
    };
    let ts = ts.physical();
    let sample = |stride: usize| -> Vec<&str> {
        (0..n)
            .step_by(stride)
            .filter_map(|i| {
                in_days(ts.get(i))?;
                shop.get(i)
            })
            .collect()
    };
    let mut shops = sample(stride);
    let mut sampled = n.div_ceil(stride) as u64;
    if shops.is_empty() && stride > 1 {
        // The sample missed the few rows in the days, if any: look at all.
        shops = sample(1);
        sampled = n as u64;
    }
    if shops.is_empty() {
        return None;
    }
    Some(sample_bounds(
        shops.into_iter(),
        sampled,
        total,
        bucket_rows,
    ))
}

// ---------------------------------------------------------------------------
// Buckets: kept rows, compactly encoded, in memory or spilled.
//
// A row is: ts (i64, UTC), sender (u8), flags (u8), a null mask (u8, bit j
// for key column j), then each non-null key string as a length (one byte,
// or 0xFF and a u32) and its bytes; little-endian. Its local day and time
// of day come from `ts` through the read's clock when it is parsed.

/// The buckets' encoded rows, as segments of whole rows: in memory until
/// their total passes half the plan's `spill_bytes`, then appended to one
/// file per bucket by a writer thread while the read goes on (so at most
/// about `spill_bytes` wait in memory: one batch being written, one
/// filling).
struct BucketStore {
    mem: Vec<Vec<Vec<u8>>>,
    rows: Vec<u64>,
    files: Vec<Option<PathBuf>>,
    in_mem: u64,
    spill_bytes: u64,
    spill_dir: Option<PathBuf>,
    direct_spill_above: u64,
    /// File rows the read will go through and has gone through, and bytes
    /// appended so far: the writer's mode is chosen on the projection.
    rows_to_read: u64,
    rows_scanned: u64,
    appended: u64,
    /// Bytes handed to the spill writer for files.
    spilled: u64,
    writer: Option<SpillWriter>,
    /// The bucket whose segments the writer keeps in memory instead of
    /// spilling (see [`BucketStore::spill_if_over`]), and once it has
    /// finished, those bytes.
    held: Option<usize>,
    held_bytes: Option<Vec<u8>>,
    /// How the spill files were written, once the writer has finished.
    mode: spill::Mode,
}

impl BucketStore {
    fn new(buckets: usize, plan: &MemoryPlan, rows_to_read: u64) -> BucketStore {
        BucketStore {
            mem: (0..buckets).map(|_| Vec::new()).collect(),
            rows: vec![0; buckets],
            files: vec![None; buckets],
            in_mem: 0,
            spill_bytes: plan.spill_bytes,
            spill_dir: plan.spill_dir.clone(),
            direct_spill_above: plan.direct_spill_above,
            rows_to_read,
            rows_scanned: 0,
            appended: 0,
            spilled: 0,
            writer: None,
            held: None,
            held_bytes: None,
            mode: spill::Mode::Buffered,
        }
    }

    fn buckets(&self) -> usize {
        self.mem.len()
    }

    fn append(&mut self, k: usize, mut segment: Vec<u8>, rows: u64) {
        segment.shrink_to_fit();
        self.in_mem += segment.len() as u64;
        self.appended += segment.len() as u64;
        self.mem[k].push(segment);
        self.rows[k] += rows;
    }

    /// Hands every bucket's segments to the spill writer once those in
    /// memory pass half of `spill_bytes`.
    ///
    /// When the spill goes past the page cache, the bucket with the most
    /// bytes at the first spill (the day's largest shop's, as a rule) is not
    /// spilled: the writer gathers its segments in one buffer. The workers
    /// build the largest bucket first, as soon as the read ends, so its
    /// rows are in memory then anyway; read back from disk, they were what
    /// the first builds waited on (at 100M rows, 3.4-4.5 s for 890 MB, most
    /// of it first touches of the fresh buffer), and they are the largest
    /// share of the spill.
    fn spill_if_over(&mut self) -> Result<()> {
        let Some(dir) = &self.spill_dir else {
            return Ok(());
        };
        if self.in_mem <= self.spill_bytes / 2 {
            return Ok(());
        }
        if self.writer.is_none() {
            std::fs::create_dir_all(dir).map_err(|e| {
                Error::Io(format!("cannot create spill folder {}: {e}", dir.display()))
            })?;
            // The bytes the whole read will encode, at the rate so far.
            let scale = self.rows_to_read as f64 / self.rows_scanned.max(1) as f64;
            let direct = self.appended as f64 * scale > self.direct_spill_above as f64;
            let keep = direct
                .then(|| {
                    (0..self.mem.len())
                        .map(|k| (self.mem[k].iter().map(Vec::len).sum::<usize>(), k))
                        .max()
                })
                .flatten()
                .map(|(bytes, k)| {
                    self.held = Some(k);
                    // With a tenth more room for the estimate's error.
                    let room = (bytes as f64 * scale * 1.1).min(isize::MAX as f64 / 2.0);
                    (held_path(dir, k), room as usize)
                });
            self.writer = Some(SpillWriter::start(dir, direct, keep));
        }
        let mut batch: SpillBatch = Vec::new();
        for (k, segments) in self.mem.iter_mut().enumerate() {
            if segments.is_empty() {
                continue;
            }
            let path = if self.held == Some(k) {
                held_path(dir, k)
            } else {
                self.spilled += segments.iter().map(|s| s.len() as u64).sum::<u64>();
                self.files[k]
                    .get_or_insert_with(|| dir.join(format!("bucket-{k:05}.bin")))
                    .clone()
            };
            batch.push((path, std::mem::take(segments)));
        }
        self.in_mem = 0;
        let writer = self.writer.as_mut().expect("started");
        if !writer.send(batch) {
            // The thread stopped early, which only an error makes it do.
            writer.finish()?;
            return Err(Error::Io("the spill writer stopped".into()));
        }
        Ok(())
    }

    /// Waits until every spilled segment is in its file (before any
    /// [`BucketStore::take`]).
    fn finish_spill(&mut self) -> Result<()> {
        if let Some(mut w) = self.writer.take() {
            let written = w.finish()?;
            self.mode = written.mode;
            self.held_bytes = written.kept;
        }
        Ok(())
    }

    /// Bucket `k`'s segments, in input order (its spill file is removed
    /// once read).
    fn take(&mut self, k: usize) -> Segments {
        let mem = std::mem::take(&mut self.mem[k]);
        self.in_mem -= mem.iter().map(|s| s.len() as u64).sum::<u64>();
        if self.held == Some(k) {
            if let Some(mut bytes) = self.held_bytes.take() {
                // One segment in input order, as a spilled bucket's.
                for seg in mem {
                    bytes.extend_from_slice(&seg);
                }
                return Segments::InMemory(vec![bytes]);
            }
        }
        let Some(path) = self.files[k].take() else {
            return Segments::InMemory(mem);
        };
        Segments::Spilled {
            path,
            mode: self.mode,
            later: mem,
        }
    }
}

/// The name by which the writer knows the bucket it keeps in memory (no
/// such file is made).
fn held_path(dir: &Path, k: usize) -> PathBuf {
    dir.join(format!("bucket-{k:05}.held"))
}

/// A bucket's encoded rows as [`BucketStore::take`] hands them out.
enum Segments {
    InMemory(Vec<Vec<u8>>),
    /// The file (read by the build, outside the store's lock), then the
    /// rows still in memory (which came later).
    Spilled {
        path: PathBuf,
        mode: spill::Mode,
        later: Vec<Vec<u8>>,
    },
}

impl Segments {
    /// The segments, the spill file read (and removed): then as one
    /// segment, so that a bucket in shop order is not copied again.
    fn resolve(self) -> Result<Vec<Vec<u8>>> {
        let (path, mode, later) = match self {
            Segments::InMemory(mem) => return Ok(mem),
            Segments::Spilled { path, mode, later } => (path, mode, later),
        };
        let mut bytes = spill::read(&path, later.iter().map(Vec::len).sum(), mode)?;
        for seg in later {
            bytes.extend_from_slice(&seg);
        }
        Ok(vec![bytes])
    }
}

impl Drop for BucketStore {
    fn drop(&mut self) {
        let _ = self.finish_spill();
        for p in self.files.iter().flatten() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// A string key of the bucket build's hash tables: bytes compared with a
/// few word loads instead of a call to `memcmp` (ids are mostly short).
#[derive(Clone, Copy, Debug, Eq)]
struct Key<'a>(&'a [u8]);

impl PartialEq for Key<'_> {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (self.0, other.0);
        let n = a.len();
        if n != b.len() {
            return false;
        }
        let word = |x: &[u8], at: usize| u64::from_ne_bytes(x[at..at + 8].try_into().expect("8"));
        let half = |x: &[u8], at: usize| u32::from_ne_bytes(x[at..at + 4].try_into().expect("4"));
        match n {
            // First and last 8 (or 4) bytes, overlapping: every byte is in one.
            8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
            4..=7 => half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4),
            0..=3 => a.iter().zip(b).all(|(x, y)| x == y),
            _ => a == b,
        }
    }
}

impl std::hash::Hash for Key<'_> {
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write(self.0);
    }
}

/// One encoded row, parsed (see the layout above).
struct Row<'a> {
    ts: i64,
    /// The local day (the time of day is asked of the clock when the
    /// columns are built).
    day: i32,
    sender: Sender,
    flags: u8,
    shop: &'a [u8],
    buyer: &'a [u8],
    msg: Option<&'a [u8]>,
    agent: Option<&'a [u8]>,
    session: Option<&'a [u8]>,
}

fn corrupt_spill() -> Error {
    Error::Io("a spill file is corrupt (was it changed while kefu ran?)".into())
}

/// Appends one encoded row (the layout [`parse_row`] reads): UTC `ts`,
/// sender code, flags, a null mask, then shop_id, buyer_id, msg_id,
/// agent_id and session_id, each non-null one length-prefixed. The local
/// day and time of day are not kept: the read's [`LocalClock`] gives them
/// again from `ts` (8 bytes a row less to hold and spill).
#[inline]
fn encode_row(buf: &mut Vec<u8>, utc: i64, sender: u8, flags: u8, vals: &[Option<&str>; 5]) {
    buf.extend_from_slice(&utc.to_le_bytes());
    buf.push(sender);
    buf.push(flags);
    let mut nulls = 0u8;
    for (j, v) in vals.iter().enumerate() {
        if v.is_none() {
            nulls |= 1 << j;
        }
    }
    buf.push(nulls);
    for v in vals.iter().flatten() {
        let bytes = v.as_bytes();
        if bytes.len() < 0xFF {
            buf.push(bytes.len() as u8);
        } else {
            buf.push(0xFF);
            buf.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        }
        buf.extend_from_slice(bytes);
    }
}

/// Parses the encoded row at `bytes[*p..]` and moves `*p` past it.
///
/// The local day comes from `clock` (zero without one, for a pass that
/// needs only the row's extent and keys).
#[inline]
fn parse_row<'a>(bytes: &'a [u8], p: &mut usize, clock: Option<&LocalClock>) -> Result<Row<'a>> {
    let take = |p: &mut usize, n: usize| -> Result<&'a [u8]> {
        let s = bytes.get(*p..*p + n).ok_or_else(corrupt_spill)?;
        *p += n;
        Ok(s)
    };
    let fixed = take(p, 11)?;
    let sender = match fixed[8] {
        0 => Sender::Buyer,
        1 => Sender::Agent,
        2 => Sender::Bot,
        3 => Sender::System,
        _ => return Err(corrupt_spill()),
    };
    let nulls = fixed[10];
    let mut keys: [Option<&[u8]>; 5] = [None; 5];
    for (j, k) in keys.iter_mut().enumerate() {
        if nulls & (1 << j) != 0 {
            continue;
        }
        let mut len = take(p, 1)?[0] as usize;
        if len == 0xFF {
            len = u32::from_le_bytes(take(p, 4)?.try_into().expect("4 bytes")) as usize;
        }
        *k = Some(take(p, len)?);
    }
    let [Some(shop), Some(buyer), msg, agent, session] = keys else {
        return Err(corrupt_spill());
    };
    let ts = i64::from_le_bytes(fixed[0..8].try_into().expect("8 bytes"));
    let day = clock.map_or(0, |c| c.day_tod(ts).0);
    Ok(Row {
        ts,
        day,
        sender,
        flags: fixed[9],
        shop,
        buyer,
        msg,
        agent,
        session,
    })
}

/// One kept row of a bucket being built, as the thread sort moves it (32
/// bytes: its local day and time of day are given again from `ts` by the
/// read's clock when the columns are built).
#[derive(Clone, Copy)]
struct Rec {
    thread: u32,
    tie: u32,
    ts: i64,
    agent: u32,
    session: u32,
    sender: Sender,
    flags: u8,
}

const _: () = assert!(std::mem::size_of::<Rec>() == 32);

/// Where [`build`] puts the rows it keeps, with the bucket's agent and
/// session codes and its rows per local day.
struct Emit<'a> {
    recs: Vec<Rec>,
    per_day: PlHashMap<i32, u64>,
    agents: PlHashMap<Key<'a>, u32>,
    agent_names: Vec<String>,
    sessions: PlHashMap<Key<'a>, u32>,
    has_session_column: bool,
}

impl<'a> Emit<'a> {
    /// Keeps row `r` (place `row` in shop order) in thread `thread`.
    #[inline]
    fn push(&mut self, r: &Row<'a>, thread: u32, row: u32) {
        *self.per_day.entry(r.day).or_default() += 1;
        let agent = match r.agent {
            None => 0,
            Some(a) => {
                let names = &mut self.agent_names;
                *self.agents.entry(Key(a)).or_insert_with(|| {
                    names.push(String::from_utf8_lossy(a).into_owned());
                    (names.len() - 1) as u32
                })
            }
        };
        let session = match r.session {
            Some(s) if self.has_session_column => {
                let next = self.sessions.len() as u32;
                *self.sessions.entry(Key(s)).or_insert(next)
            }
            _ => NONE,
        };
        self.recs.push(Rec {
            thread,
            tie: (u32::from(r.sender != Sender::Buyer) << 31) | row,
            ts: r.ts,
            agent,
            session,
            sender: r.sender,
            flags: r.flags,
        });
    }
}

/// Groups `recs`, whose threads are `t0 .. t0 + n`, by thread in code
/// order, stably (a counting sort through `scratch`). The rows of one shop
/// or one hash partition of a large shop are grouped as soon as they are
/// kept: their threads' codes are consecutive, so the bucket's rows end up
/// in thread order without a sort of the whole bucket (which wrote every
/// record again, at random, into a second copy).
fn group_by_thread(
    recs: &mut [Rec],
    t0: u32,
    n: usize,
    scratch: &mut Vec<Rec>,
    starts: &mut Vec<u32>,
) {
    if n <= 1 || recs.len() <= 1 {
        return;
    }
    starts.clear();
    starts.resize(n + 1, 0);
    for r in recs.iter() {
        starts[(r.thread - t0) as usize + 1] += 1;
    }
    for t in 1..starts.len() {
        starts[t] += starts[t - 1];
    }
    scratch.clear();
    scratch.extend_from_slice(recs);
    for r in scratch.iter() {
        let at = &mut starts[(r.thread - t0) as usize];
        recs[*at as usize] = *r;
        *at += 1;
    }
}

/// A shop with at least this many rows in a bucket is de-duplicated and
/// threaded in hash partitions ([`partitioned_shop`]).
const PARTITION_MIN_ROWS: usize = 1 << 14;

/// About this many rows per hash partition, so that a partition's table
/// stays in the core's cache.
const PARTITION_ROWS: usize = 1 << 13;

/// Asks the CPU to start loading the cache line at `p` (a hint: never
/// faults, whatever `p` is).
#[inline(always)]
fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint; it reads nothing and cannot fault.
    unsafe {
        std::arch::x86_64::_mm_prefetch(p.cast::<i8>(), std::arch::x86_64::_MM_HINT_T0)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// A row of a large shop in its hash partition: the hash, the row's place
/// in shop order and where its bytes start.
#[derive(Clone, Copy)]
struct Part {
    hash: u64,
    row: u32,
    at: u32,
}

/// The rows `j` for which `keep(j)`, with `hash[j]` and `off[j]`, grouped by
/// hash partition (`bits` bits of the hash, away from the bits the tables
/// use), in ascending order within a partition; with the partitions'
/// starts.
fn partition_rows(
    hash: &[u64],
    off: &[u32],
    keep: impl Fn(usize) -> bool,
    bits: u32,
) -> (Vec<Part>, Vec<usize>) {
    let part = |h: u64| ((h >> 32) as usize) & ((1usize << bits) - 1);
    let mut starts = vec![0usize; (1 << bits) + 1];
    for (j, &h) in hash.iter().enumerate() {
        if keep(j) {
            starts[part(h) + 1] += 1;
        }
    }
    for k in 1..starts.len() {
        starts[k] += starts[k - 1];
    }
    let total = starts[1 << bits];
    let mut out: Vec<Part> = Vec::with_capacity(total);
    {
        let spare = &mut out.spare_capacity_mut()[..total];
        let mut next = starts.clone();
        for (j, &h) in hash.iter().enumerate() {
            if keep(j) {
                let at = &mut next[part(h)];
                spare[*at].write(Part {
                    hash: h,
                    row: j as u32,
                    at: off[j],
                });
                *at += 1;
            }
        }
    }
    // SAFETY: each of the `total` kept rows was written to its own slot of
    // its partition's range, and the ranges tile 0..total.
    unsafe { out.set_len(total) };
    (out, starts)
}

/// De-duplicates and threads one large shop's rows (`bytes`, `n` rows, the
/// first at place `row0` in shop order), giving the same result as the
/// row-by-row path of [`build`] but with every hash table small: the rows
/// are first grouped by a hash of (local day, msg_id), each group
/// de-duplicated in input order (so the first of equal rows stays), then
/// the rows kept are grouped by a hash of buyer_id and each group threaded.
/// A thread's rows all hash alike, so each group's threads are complete;
/// codes are given from `first_thread` on, group by group (codes only order
/// the work), and `new_thread` is called with each new thread's buyer_id.
#[allow(clippy::too_many_arguments)]
fn partitioned_shop<'a>(
    bytes: &'a [u8],
    clock: &LocalClock,
    n: usize,
    row0: u32,
    first_thread: u32,
    stats: &mut LoadStats,
    out: &mut Emit<'a>,
    scratch: &mut (Vec<Rec>, Vec<u32>),
    mut new_thread: impl FnMut(&[u8]),
) -> Result<()> {
    use std::hash::BuildHasher;
    // A row's kind: bits of these.
    const HAS_MSG: u8 = 1;
    const DROP: u8 = 2;
    const NOT_CONSUMER: u8 = 4;
    let hasher = foldhash::fast::FixedState::with_seed(0x6b65_6675);
    // A. Each row's place, kind and hashes, in shop order.
    let mut off: Vec<u32> = Vec::with_capacity(n);
    let mut kind: Vec<u8> = Vec::with_capacity(n);
    let mut by_msg: Vec<u64> = Vec::with_capacity(n);
    let mut by_buyer: Vec<u64> = Vec::with_capacity(n);
    let mut p = 0usize;
    while p < bytes.len() {
        off.push(p as u32);
        let r = parse_row(bytes, &mut p, Some(clock))?;
        let mut k = 0u8;
        by_msg.push(match r.msg {
            Some(m) => {
                k |= HAS_MSG;
                hasher.hash_one((r.day, m))
            }
            None => 0,
        });
        if r.flags & NON_CONSUMER != 0 {
            // Dropped after de-duplication, below.
            k |= NOT_CONSUMER;
        }
        kind.push(k);
        by_buyer.push(hasher.hash_one(r.buyer));
    }
    if off.len() != n {
        return Err(corrupt_spill());
    }
    // Every row at these places parsed above, so it parses again.
    let row_at = |at: u32| -> Row<'a> {
        let mut q = at as usize;
        parse_row(bytes, &mut q, Some(clock)).expect("a row that parsed before")
    };
    let bits = (n / PARTITION_ROWS)
        .max(2)
        .next_power_of_two()
        .trailing_zeros();

    // B. De-duplication: of the rows sharing local day and msg_id, the
    // first in shop order stays.
    {
        let (rows, starts) = partition_rows(&by_msg, &off, |j| kind[j] & HAS_MSG != 0, bits);
        drop(by_msg);
        let widest = starts.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
        let mut table: hashbrown::HashTable<(u64, u32)> =
            hashbrown::HashTable::with_capacity(widest);
        for w in starts.windows(2) {
            table.clear();
            for &Part {
                hash: h,
                row: j,
                at,
            } in &rows[w[0]..w[1]]
            {
                let found = table
                    .find(h, |&(eh, e_at)| {
                        eh == h && {
                            let (a, b) = (row_at(e_at), row_at(at));
                            a.day == b.day && a.msg == b.msg
                        }
                    })
                    .is_some();
                if found {
                    kind[j as usize] |= DROP;
                    stats.duplicates += 1;
                } else {
                    table.insert_unique(h, (h, at), |e| e.0);
                }
            }
        }
    }
    // Then rows whose peer is not a consumer leave everything.
    for k in kind.iter_mut() {
        if *k & (DROP | NOT_CONSUMER) == NOT_CONSUMER {
            stats.non_consumer += 1;
            *k |= DROP;
        }
    }

    // C. Threads, group by group; the rows go out in group order.
    let (rows, starts) = partition_rows(&by_buyer, &off, |j| kind[j] & DROP == 0, bits);
    drop((by_buyer, kind, off));
    let widest = starts.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    // (hash, thread code, buyer_id's place and length in `bytes`)
    let mut table: hashbrown::HashTable<(u64, u32, u32, u32)> =
        hashbrown::HashTable::with_capacity(widest / 4);
    let mut next_code = first_thread;
    // Rows are read in hash order, so each is a cache miss: ask for the
    // row this far ahead while this one is worked on.
    const AHEAD: usize = 16;
    for w in starts.windows(2) {
        table.clear();
        let (first_rec, first_code) = (out.recs.len(), next_code);
        let part = &rows[w[0]..w[1]];
        for (
            k,
            &Part {
                hash: h,
                row: j,
                at,
            },
        ) in part.iter().enumerate()
        {
            if let Some(ahead) = part.get(k + AHEAD) {
                let p = bytes.as_ptr().wrapping_add(ahead.at as usize);
                prefetch(p);
                prefetch(p.wrapping_add(63));
            }
            let r = row_at(at);
            let thread = match table.find(h, |&(eh, _, at, len)| {
                eh == h && Key(&bytes[at as usize..(at + len) as usize]) == Key(r.buyer)
            }) {
                Some(&(_, code, _, _)) => code,
                None => {
                    let code = next_code;
                    next_code += 1;
                    let at = r.buyer.as_ptr() as usize - bytes.as_ptr() as usize;
                    table.insert_unique(h, (h, code, at as u32, r.buyer.len() as u32), |e| e.0);
                    new_thread(r.buyer);
                    code
                }
            };
            out.push(&r, thread, row0 + j);
        }
        group_by_thread(
            &mut out.recs[first_rec..],
            first_code,
            (next_code - first_code) as usize,
            &mut scratch.0,
            &mut scratch.1,
        );
    }
    Ok(())
}

/// Turns a bucket's rows (encoded segments, in input order) into the
/// engine's table. The rows are first moved, bytes and all, into shop order
/// (stable: input order within a shop), so that everything after reads
/// memory in order and works on one shop's small hash tables at a time.
/// Then, per shop in input order: de-duplication (of the rows sharing
/// shop_id, msg_id and local day, the first stays; null msg_ids are never
/// duplicates), then the peer_kind filter, then integer codes for threads
/// (shop, buyer), agents ("" and null are 0) and sessions (null is
/// [`NONE`]); then the thread order. Codes only order the work: every
/// output is sorted by the strings. Also returns the rows kept per local
/// day.
fn build(
    segments: Vec<Vec<u8>>,
    has_session_column: bool,
    partition_min: usize,
    clock: &LocalClock,
) -> Result<(Messages, PlHashMap<i32, u64>)> {
    let name = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let mut stats = LoadStats::default();

    // 1. Each row's length and shop code, in input order.
    let approx_rows: usize = segments.iter().map(|s| s.len() / 32).sum();
    let mut row_len: Vec<u32> = Vec::with_capacity(approx_rows);
    let mut row_shop: Vec<u32> = Vec::with_capacity(approx_rows);
    let mut shop_names: Vec<String> = Vec::new();
    let mut shop_rows: Vec<u64> = Vec::new();
    let mut shop_bytes: Vec<u64> = Vec::new();
    {
        let mut shops: PlHashMap<Key, u32> = PlHashMap::new();
        for bytes in &segments {
            let mut p = 0usize;
            while p < bytes.len() {
                let at = p;
                let r = parse_row(bytes, &mut p, None)?;
                let len = u32::try_from(p - at).map_err(|_| corrupt_spill())?;
                let shop = match shops.get(&Key(r.shop)) {
                    Some(&c) => c,
                    None => {
                        let c = shop_names.len() as u32;
                        shops.insert(Key(r.shop), c);
                        shop_names.push(name(r.shop));
                        shop_rows.push(0);
                        shop_bytes.push(0);
                        c
                    }
                };
                shop_rows[shop as usize] += 1;
                shop_bytes[shop as usize] += len as u64;
                row_len.push(len);
                row_shop.push(shop);
            }
        }
    }
    if row_len.len() >= 1 << 31 {
        return Err(Error::BadData(
            "more than 2^31 rows in one shop bucket: lower --memory-budget".to_string(),
        ));
    }
    // 2. The rows' bytes in shop order (a stable counting sort), each
    // segment freed once copied; rows already in shop order in one segment
    // (a bucket of one shop, say) stay where they are.
    let total: u64 = shop_bytes.iter().sum();
    let mut shop_start: Vec<usize> = Vec::with_capacity(shop_bytes.len() + 1);
    let mut acc = 0usize;
    for &b in &shop_bytes {
        shop_start.push(acc);
        acc += b as usize;
    }
    shop_start.push(acc);
    let in_order = segments.len() == 1 && row_shop.windows(2).all(|w| w[0] <= w[1]);
    let region: Vec<u8> = if in_order {
        segments.into_iter().next().expect("one segment")
    } else {
        let mut region: Vec<u8> = Vec::with_capacity(total as usize);
        let spare = &mut region.spare_capacity_mut()[..total as usize];
        let mut next = shop_start.clone();
        let mut k = 0usize;
        for bytes in segments {
            let mut p = 0usize;
            while p < bytes.len() {
                let len = row_len[k] as usize;
                let at = &mut next[row_shop[k] as usize];
                let src = &bytes[p..p + len];
                // SAFETY: MaybeUninit<u8> and u8 have the same layout.
                let src: &[std::mem::MaybeUninit<u8>] =
                    unsafe { std::slice::from_raw_parts(src.as_ptr().cast(), src.len()) };
                spare[*at..*at + len].copy_from_slice(src);
                *at += len;
                p += len;
                k += 1;
            }
        }
        debug_assert!(next.iter().zip(&shop_start[1..]).all(|(a, b)| a == b));
        // SAFETY: every byte 0..total was written once: shop s's rows fill
        // shop_start[s]..shop_start[s + 1] exactly.
        unsafe { region.set_len(total as usize) };
        region
    };
    debug_assert_eq!(region.len() as u64, total);
    drop((row_len, row_shop, shop_bytes));

    // 3. Per shop, in input order: de-duplication, the peer filter, threads.
    let rows_total: u64 = shop_rows.iter().sum();
    let mut out = Emit {
        recs: Vec::with_capacity(rows_total as usize),
        per_day: PlHashMap::new(),
        agents: PlHashMap::new(),
        agent_names: vec![String::new()],
        sessions: PlHashMap::new(),
        has_session_column,
    };
    out.agents.insert(Key(b""), 0);
    let mut shop_of_thread: Vec<u32> = Vec::new();
    let mut buyer_names: Vec<String> = Vec::new();
    let mut seen: PlHashSet<(i32, Key)> = PlHashSet::new();
    let mut threads_of: PlHashMap<Key, u32> = PlHashMap::new();
    let mut scratch: (Vec<Rec>, Vec<u32>) = (Vec::new(), Vec::new());
    let mut i = 0u32; // the row's place in shop order: input order within a shop
    for (shop, (&n, w)) in shop_rows.iter().zip(shop_start.windows(2)).enumerate() {
        let bytes = &region[w[0]..w[1]];
        let n = n as usize;
        if n >= partition_min && u32::try_from(bytes.len()).is_ok() {
            // A large shop: its tables would not stay in cache.
            let first_thread = buyer_names.len() as u32;
            partitioned_shop(
                bytes,
                clock,
                n,
                i,
                first_thread,
                &mut stats,
                &mut out,
                &mut scratch,
                |buyer| {
                    shop_of_thread.push(shop as u32);
                    buyer_names.push(name(buyer));
                },
            )?;
            i += n as u32;
            continue;
        }
        // Tables sized for the shop: clearing one grown by a large shop
        // would cost its whole capacity, shop after shop; and growing a
        // large shop's table step by step re-hashes it from scattered keys.
        if seen.capacity() > 4 * n.max(256) {
            seen = PlHashSet::default();
            threads_of = PlHashMap::default();
        } else {
            seen.clear();
            threads_of.clear();
        }
        seen.reserve(n);
        threads_of.reserve(n / 8);
        let (first_rec, first_thread) = (out.recs.len(), buyer_names.len());
        let mut p = 0usize;
        while p < bytes.len() {
            let r = parse_row(bytes, &mut p, Some(clock))?;
            let row = i;
            i += 1;
            if let Some(msg) = r.msg {
                if !seen.insert((r.day, Key(msg))) {
                    stats.duplicates += 1;
                    continue;
                }
            }
            // Then rows whose peer is not a consumer leave everything.
            if r.flags & NON_CONSUMER != 0 {
                stats.non_consumer += 1;
                continue;
            }
            let thread = *threads_of.entry(Key(r.buyer)).or_insert_with(|| {
                shop_of_thread.push(shop as u32);
                buyer_names.push(name(r.buyer));
                (buyer_names.len() - 1) as u32
            });
            out.push(&r, thread, row);
        }
        group_by_thread(
            &mut out.recs[first_rec..],
            first_thread as u32,
            buyer_names.len() - first_thread,
            &mut scratch.0,
            &mut scratch.1,
        );
    }
    drop(scratch);
    let mut recs = std::mem::take(&mut out.recs);
    let agent_names = std::mem::take(&mut out.agent_names);
    let per_day = std::mem::take(&mut out.per_day);
    drop((threads_of, seen, out));
    drop(region);

    // Thread order: thread, ts, buyer rows first, input order. The rows are
    // grouped by thread already (each shop's or partition's as it was
    // kept, and codes grow shop by shop): each thread's rows are sorted by
    // (ts, tie), as whole records.
    debug_assert!(recs.windows(2).all(|w| w[0].thread <= w[1].thread));
    let n = recs.len();
    let mut starts = vec![0u32; buyer_names.len() + 1];
    for r in &recs {
        starts[r.thread as usize + 1] += 1;
    }
    for t in 1..starts.len() {
        starts[t] += starts[t - 1];
    }
    let threads: Vec<(u32, u32)> = starts.windows(2).map(|w| (w[0], w[1])).collect();
    drop(starts);
    {
        let mut rest: &mut [Rec] = &mut recs;
        let mut pieces: Vec<&mut [Rec]> = Vec::with_capacity(threads.len());
        for &(s, e) in &threads {
            let (piece, tail) = rest.split_at_mut((e - s) as usize);
            pieces.push(piece);
            rest = tail;
        }
        pieces
            .par_iter_mut()
            .with_min_len(256)
            .for_each(|p| p.sort_unstable_by_key(|r| (r.ts, r.tie)));
    }
    // The columns in one pass over the records, not one pass each (nine
    // passes: 0.55 s against 0.19 s for a 16M-row shop).
    let mut shop = Vec::with_capacity(n);
    let mut buyer = Vec::with_capacity(n);
    let mut ts = Vec::with_capacity(n);
    let mut day = Vec::with_capacity(n);
    let mut tod = Vec::with_capacity(n);
    let mut sender = Vec::with_capacity(n);
    let mut flags = Vec::with_capacity(n);
    let mut agent = Vec::with_capacity(n);
    let mut session = Vec::with_capacity(n);
    for r in &recs {
        shop.push(shop_of_thread[r.thread as usize]);
        buyer.push(r.thread);
        ts.push(r.ts);
        let (d, t) = clock.day_tod(r.ts);
        day.push(d);
        tod.push(t);
        sender.push(r.sender);
        flags.push(r.flags & !NON_CONSUMER);
        agent.push(r.agent);
        session.push(r.session);
    }
    drop(recs);
    let m = Messages {
        shop_names,
        buyer_names,
        agent_names,
        shop,
        buyer,
        ts,
        day,
        tod,
        sender,
        flags,
        agent,
        session,
        has_session_column,
        threads,
        stats,
    };
    Ok((m, per_day))
}

/// Local date and time of a UTC instant, for display.
pub fn local_datetime(tz: &Tz, utc_ms: i64) -> NaiveDateTime {
    let (d, t) = local_day_tod(tz, utc_ms);
    let date = day_date(d);
    let secs = (t / 1000) as u32;
    date.and_hms_milli_opt(secs / 3600, secs / 60 % 60, secs % 60, (t % 1000) as u32)
        .expect("valid time of day")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The minute table gives the time-zone database's answer for every
    /// instant, across daylight-saving changes (whole-hour, half-hour and
    /// odd-offset zones) and outside its range.
    #[test]
    fn local_clock_agrees_with_the_database() {
        let zones: [Tz; 6] = [
            chrono_tz::Asia::Shanghai,
            chrono_tz::America::New_York,
            chrono_tz::Europe::London,
            chrono_tz::Australia::Lord_Howe,
            chrono_tz::Asia::Kathmandu,
            chrono_tz::America::St_Johns,
        ];
        // Spring and autumn changes of 2024 in the northern and southern
        // hemispheres, and 1901-1912 (Shanghai's and Kathmandu's move off
        // local mean time lies around there).
        let spans: [(NaiveDate, i64); 5] = [
            (NaiveDate::from_ymd_opt(2024, 3, 9).unwrap(), 3),
            (NaiveDate::from_ymd_opt(2024, 3, 30).unwrap(), 3),
            (NaiveDate::from_ymd_opt(2024, 10, 26).unwrap(), 10),
            (NaiveDate::from_ymd_opt(1900, 12, 31).unwrap(), 2),
            (NaiveDate::from_ymd_opt(1919, 12, 31).unwrap(), 2),
        ];
        for tz in zones {
            for (start, days) in spans {
                let lo = day_number(start) as i64 * MS_PER_DAY;
                let hi = lo + days * MS_PER_DAY;
                let clock = LocalClock::new(tz, lo, hi);
                // Every 7.3 s across the span, one day either side of it,
                // and every millisecond around each tabled change.
                let mut t = lo - MS_PER_DAY;
                while t < hi + MS_PER_DAY {
                    assert_eq!(clock.day_tod(t), local_day_tod(&tz, t), "{tz} at {t}");
                    t += 7_301;
                }
                for (k, &off) in clock.offsets.iter().enumerate() {
                    if off == LocalClock::MIXED {
                        let m = clock.lo + k as i64 * LocalClock::MINUTE;
                        for t in m - 1000..m + LocalClock::MINUTE + 1000 {
                            assert_eq!(clock.day_tod(t), local_day_tod(&tz, t), "{tz} at {t}");
                        }
                    }
                }
            }
        }
        // Something changed in those spans (the test is not vacuous).
        let ny = LocalClock::new(
            chrono_tz::America::New_York,
            day_number(NaiveDate::from_ymd_opt(2024, 3, 10).unwrap()) as i64 * MS_PER_DAY,
            day_number(NaiveDate::from_ymd_opt(2024, 3, 11).unwrap()) as i64 * MS_PER_DAY,
        );
        let distinct: std::collections::BTreeSet<i32> = ny.offsets.iter().copied().collect();
        assert!(distinct.contains(&(-5 * 3_600_000)) && distinct.contains(&(-4 * 3_600_000)));
    }

    /// Reads tile the file in whole row groups, greedily up to the chunk;
    /// only a group larger than the chunk is split.
    #[test]
    fn reads_are_whole_row_groups_up_to_the_chunk() {
        let mut seed = 7u64;
        let mut next = |n: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        for case in 0..2000 {
            let groups: Vec<u64> = (0..next(6)).map(|_| next(40)).collect();
            let rows: u64 = groups.iter().sum();
            let chunk = 1 + next(30);
            let reads = read_chunks(&groups, rows, chunk);
            // The reads tile the file in order, none longer than the chunk.
            let mut at = 0;
            for &(o, len) in &reads {
                assert_eq!(o, at, "case {case}: {groups:?} {chunk} {reads:?}");
                assert!((len <= chunk && len > 0) || rows == 0, "case {case}");
                at += len;
            }
            assert!(at == rows || (rows == 0 && reads.len() == 1));
            // Reads start only at row-group starts, but inside a group larger
            // than the chunk; a read of small groups could not take the next.
            let starts: Vec<u64> = groups
                .iter()
                .scan(0, |acc, &g| {
                    *acc += g;
                    Some(*acc - g)
                })
                .collect();
            for (k, &(o, len)) in reads.iter().enumerate() {
                let inside_big = groups
                    .iter()
                    .zip(&starts)
                    .any(|(&g, &s)| g > chunk && o >= s && o < s + g);
                assert!(
                    inside_big || starts.contains(&o) || rows == 0,
                    "case {case}"
                );
                if let Some(&(o2, _)) = reads.get(k + 1) {
                    let g = groups
                        .iter()
                        .zip(&starts)
                        .find(|(&g, &s)| s == o2 && g > 0)
                        .map(|(g, _)| *g);
                    if let Some(g) = g {
                        if !inside_big && g <= chunk {
                            assert!(len + g > chunk, "case {case}: {groups:?} {chunk} {reads:?}");
                        }
                    }
                }
            }
        }
        // Groups that do not add up to the rows: fixed-size reads.
        assert_eq!(read_chunks(&[5], 7, 3), vec![(0, 3), (3, 3), (6, 3)]);
        assert_eq!(read_chunks(&[], 0, 3), vec![(0, 3)]);
    }

    /// The prefix comparison finds the same bucket as comparing whole
    /// strings, for names that share prefixes (with each other or all of
    /// them), hold zero bytes or are shorter than 8 bytes.
    #[test]
    fn bucket_of_agrees_with_whole_string_comparison() {
        let alphabet: &[&str] = &[
            "",
            "\0",
            "a",
            "a\0",
            "ab",
            "shop0000",
            "shop00001",
            "shop0000\0",
        ];
        let mut names: Vec<String> = Vec::new();
        for a in alphabet {
            for b in alphabet {
                names.push(format!("{a}{b}"));
            }
        }
        names.sort();
        names.dedup();
        // Bounds of every kind, and bounds sharing a prefix (long, short,
        // one of them the prefix itself).
        let sharing = |p: &str| -> Vec<String> {
            names.iter().filter(|n| n.starts_with(p)).cloned().collect()
        };
        let mut choices: Vec<Vec<String>> = Vec::new();
        for step in [1, 2, 3, 5] {
            choices.push(names.iter().skip(1).step_by(step).cloned().collect());
            for p in ["shop0000", "a", "ab", "\0"] {
                choices.push(sharing(p).into_iter().step_by(step).collect());
            }
        }
        choices.push(vec!["shop0000".to_string()]);
        choices.push(vec!["shop0000".to_string(), "shop00001".to_string()]);
        choices.push(Vec::new());
        for chosen in choices {
            let bounds = Bounds::new(chosen.clone());
            let probes = ["sho", "shop", "shop0001", "shoq", "shop000", "z", "a\0\0"];
            for shop in names.iter().map(String::as_str).chain(probes) {
                let naive = chosen.partition_point(|b| b.as_bytes() <= shop.as_bytes());
                assert_eq!(
                    bounds.bucket_of(shop.as_bytes()),
                    naive,
                    "{shop:?} with {chosen:?}"
                );
            }
        }
    }

    /// Key equality is byte equality, at every length around the word sizes.
    #[test]
    fn key_equality_is_byte_equality() {
        let base: Vec<u8> = (0u8..40).map(|b| b.wrapping_mul(37)).collect();
        for n in 0..40 {
            let a = &base[..n];
            assert_eq!(Key(a), Key(&base.clone()[..n]));
            for k in 0..n {
                let mut other = a.to_vec();
                other[k] ^= 1;
                assert_ne!(Key(a), Key(&other), "length {n}, byte {k}");
            }
            if n > 0 {
                assert_ne!(Key(a), Key(&base[..n - 1]));
            }
        }
    }

    /// A table in canonical form, free of code order: per thread (by shop
    /// and buyer names), its rows in order with every field, agents by
    /// name and sessions by first appearance.
    type Canon = Vec<(
        String,
        String,
        Vec<(i64, i32, i32, Sender, u8, String, u32)>,
    )>;

    fn canon(m: &Messages) -> Canon {
        let mut threads: Vec<(String, String, Vec<usize>)> = m
            .threads
            .iter()
            .map(|&(s, e)| {
                let first = s as usize;
                (
                    m.shop_names[m.shop[first] as usize].clone(),
                    m.buyer_names[m.buyer[first] as usize].clone(),
                    (s as usize..e as usize).collect(),
                )
            })
            .collect();
        threads.sort();
        let mut sessions: PlHashMap<u32, u32> = PlHashMap::new();
        threads
            .into_iter()
            .map(|(shop, buyer, rows)| {
                let rows = rows
                    .into_iter()
                    .map(|i| {
                        let session = match m.session[i] {
                            NONE => NONE,
                            c => {
                                let next = sessions.len() as u32;
                                *sessions.entry(c).or_insert(next)
                            }
                        };
                        (
                            m.ts[i],
                            m.day[i],
                            m.tod[i],
                            m.sender[i],
                            m.flags[i],
                            m.agent_names[m.agent[i] as usize].clone(),
                            session,
                        )
                    })
                    .collect();
                (shop, buyer, rows)
            })
            .collect()
    }

    /// The partitioned path for large shops builds the same table, counts
    /// and rows per day as the row-by-row path, and one segment the same
    /// as several: on rows with duplicates
    /// (some with another buyer or another day), null msg_ids, peers that
    /// are not consumers, equal times, null and empty agents, and sessions.
    /// A read of day D asked to count the days before gives, for each empty
    /// day d before it whose next day is empty or D, the counts, examples
    /// and bad-row checks of a count-only read of d itself: over several
    /// files, small reads, bad rows of every kind on every day and without
    /// a `ts`, and shards. A day with a row, even a bad one, or whose next
    /// day has one, gets no such counts.
    #[test]
    fn a_read_counts_the_empty_days_before_as_their_own_reads_would() {
        use polars::prelude::{Column, ParquetWriter};
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        let dir = tempfile::tempdir().unwrap();
        let d = NaiveDate::from_ymd_opt(2024, 5, 16).unwrap();
        let day_ms = |k: i64| (day_number(d) as i64 + k) * MS_PER_DAY - 8 * 3_600_000;
        let settings = InputSettings {
            max_bad_row_share: 0.2,
            ..Default::default()
        };
        // (both reads succeed, both fail on the share, on --strict)
        let mut outcomes = (0, 0, 0);
        for case in 0..24u64 {
            // Rows from D−5 to D+2: D−5 and D−3 in some cases, one row on
            // D−1 in others.
            let with_day_before = case % 4 == 3;
            let mut earlier = vec![-5];
            if case % 2 == 0 {
                earlier.push(-3);
            }
            let files: Vec<PathBuf> = (0..1 + next(3))
                .map(|f| {
                    let n = 50 + next(400) as usize;
                    let (mut shop, mut buyer, mut ts, mut sender) =
                        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
                    for r in 0..n {
                        let mut k = match next(8) {
                            0 => earlier[next(earlier.len() as u64) as usize],
                            1 => 2,
                            2 | 3 => 1,
                            _ => 0,
                        };
                        // Good rows on each earlier day, and on D−1.
                        let forced = r < earlier.len() || (with_day_before && r == n / 2);
                        if r < earlier.len() {
                            k = earlier[r];
                        } else if forced {
                            k = -1;
                        }
                        let t = day_ms(k) + next(MS_PER_DAY as u64) as i64;
                        // Codes 0-4 are bad rows: more of them on D in
                        // some cases, so that D−1's share of them is over
                        // the limit while D's is not.
                        let bad = match k {
                            _ if forced => 59,
                            0 => next(20 + 10 * (case % 4)),
                            _ => next(60),
                        };
                        shop.push((bad != 0).then(|| format!("s{}", next(9))));
                        buyer.push((bad != 1).then(|| format!("b{}", next(30))));
                        ts.push((bad != 2).then_some(t));
                        sender.push(match bad {
                            3 => None,
                            4 => Some("robot".to_string()),
                            _ => Some(["buyer", "agent", "bot", "system"][next(4) as usize].into()),
                        });
                    }
                    let mut df = DataFrame::new_infer_height(vec![
                        Column::new("shop_id".into(), shop),
                        Column::new("buyer_id".into(), buyer),
                        Column::new("ts".into(), ts)
                            .cast(&DataType::Datetime(
                                TimeUnit::Milliseconds,
                                Some(polars::prelude::TimeZone::UTC),
                            ))
                            .unwrap(),
                        Column::new("sender".into(), sender),
                    ])
                    .unwrap();
                    let path = dir.path().join(format!("c{case}-f{f}.parquet"));
                    let file = std::fs::File::create(&path).unwrap();
                    ParquetWriter::new(file)
                        .with_row_group_size(Some(64))
                        .finish(&mut df)
                        .unwrap();
                    path
                })
                .collect();
            let shard = match case % 3 {
                0 => Shard::WHOLE,
                1 => Shard::parse("0/2").unwrap(),
                _ => Shard::parse("1/3").unwrap(),
            };
            let plan = MemoryPlan {
                chunk_rows: 37 + next(200),
                ..MemoryPlan::unlimited()
            };
            let range = |first: NaiveDate| DayRange {
                first,
                last: first.succ_opt().unwrap(),
            };
            // D−1 to D−4 are asked about: a day is counted when it and its
            // next day (D for D−1) have no row.
            let back = |k: i64| d - chrono::Duration::days(k);
            let mut expected = Vec::new();
            if case % 2 == 1 {
                expected.extend([back(4), back(3)]);
            }
            if !with_day_before {
                expected.extend([back(2), back(1)]);
            }
            for strict in [false, true] {
                let day_read = scan(
                    &files,
                    &settings,
                    range(d),
                    false,
                    shard,
                    &plan,
                    ScanOptions {
                        probe_first: false,
                        count_days_before: 4,
                    },
                );
                let Ok(mut day_read) = day_read else {
                    continue; // D's own share is over the limit
                };
                let mut counted = day_read.take_days_before();
                counted.sort_by_key(|c| c.day());
                let days: Vec<NaiveDate> = counted.iter().map(|c| c.day()).collect();
                assert_eq!(days, expected, "case {case}");
                for counted in counted {
                    let day = counted.day();
                    let own = scan(
                        &files,
                        &settings,
                        range(day),
                        strict,
                        shard,
                        &plan,
                        ScanOptions {
                            probe_first: true,
                            count_days_before: 0,
                        },
                    );
                    let carried = counted.into_loaded(&settings, strict, &plan);
                    match (own, carried) {
                        (Ok(own), Ok(carried)) => {
                            let (o, c) = (&own.stats, &carried.stats);
                            outcomes.0 += 1;
                            assert_eq!(
                                (&o.file_rows, o.rows_read, o.bad_rows, &o.bad_examples),
                                (&c.file_rows, c.rows_read, c.bad_rows, &c.bad_examples),
                                "case {case}, {day}"
                            );
                            assert_eq!(o.files, c.files);
                            assert_eq!(o.rows_per_day, c.rows_per_day);
                            let next_day = day.succ_opt().unwrap();
                            for x in [day, next_day] {
                                assert_eq!(own.read_rows_on(x), carried.read_rows_on(x));
                            }
                            if next_day == d {
                                assert_eq!(carried.read_rows_on(d), day_read.read_rows_on(d));
                                assert!(carried.read_rows_on(d) > 0, "case {case}");
                            }
                            assert_eq!(own.buckets(), carried.buckets());
                        }
                        (Err(own), Err(carried)) => {
                            assert_eq!(own.to_string(), carried.to_string(), "case {case}");
                            match strict {
                                false => outcomes.1 += 1,
                                true => outcomes.2 += 1,
                            }
                        }
                        (own, carried) => panic!(
                            "case {case}, {day}: own read {:?}, carried {:?}",
                            own.err(),
                            carried.err()
                        ),
                    }
                }
            }
        }
        let (ok, share, strict) = outcomes;
        assert!(ok >= 12 && share >= 1 && strict >= 12, "{outcomes:?}");
    }

    #[test]
    fn partitioned_shops_build_what_the_row_path_builds() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        for case in 0..12 {
            // Every third case has one shop: its rows are in shop order.
            let shops = if case % 3 == 0 { 1 } else { 2 + next(3) };
            let rows = 500 + next(4000) as usize;
            let mut segments: Vec<Vec<u8>> = vec![Vec::new()];
            let mut msgs: Vec<String> = Vec::new();
            for _ in 0..rows {
                // Most rows in shop 0, which is the large one.
                let shop = format!("s{}", if next(4) == 0 { next(shops) } else { 0 });
                let buyer = format!("b{}", next(60 + case * 40));
                let msg = match next(10) {
                    0 => None,
                    1 | 2 if !msgs.is_empty() => {
                        Some(msgs[next(msgs.len() as u64) as usize].clone())
                    }
                    _ => {
                        msgs.push(format!("m{}", msgs.len()));
                        msgs.last().cloned()
                    }
                };
                let agent = match next(4) {
                    0 => None,
                    1 => Some(String::new()),
                    _ => Some(format!("a{}", next(7))),
                };
                let session = (next(3) != 0).then(|| format!("x{}", next(90)));
                // Six minutes on each of two local days (msg_ids repeat
                // within a day and across them).
                let ts = 1_715_800_000_000 + next(2) as i64 * MS_PER_DAY + next(6) as i64 * 60_000;
                let flags = (next(16) as u8) | if next(9) == 0 { NON_CONSUMER } else { 0 };
                let vals = [
                    Some(shop.as_str()),
                    Some(buyer.as_str()),
                    msg.as_deref(),
                    agent.as_deref(),
                    session.as_deref(),
                ];
                if next(300) == 0 {
                    segments.push(Vec::new());
                }
                let seg = segments.last_mut().expect("one");
                encode_row(seg, ts, next(4) as u8, flags, &vals);
            }
            let clock = LocalClock::new(
                chrono_tz::Asia::Shanghai,
                1_715_700_000_000,
                1_716_000_000_000,
            );
            let build = |segments, has_session_column, partition_min| {
                build(segments, has_session_column, partition_min, &clock)
            };
            for has_session_column in [false, true] {
                let (a, a_days) = build(segments.clone(), has_session_column, usize::MAX).unwrap();
                let (b, b_days) = build(segments.clone(), has_session_column, 0).unwrap();
                assert_eq!(canon(&a), canon(&b), "case {case}");
                assert_eq!(a_days, b_days, "case {case}");
                assert_eq!(a.stats.duplicates, b.stats.duplicates, "case {case}");
                assert_eq!(a.stats.non_consumer, b.stats.non_consumer, "case {case}");
                assert_eq!(a.threads.len(), b.threads.len(), "case {case}");
                // And in one segment (kept as it is when in shop order).
                let one = vec![segments.concat()];
                let (c, c_days) = build(one, has_session_column, PARTITION_MIN_ROWS).unwrap();
                assert_eq!(canon(&a), canon(&c), "case {case}");
                assert_eq!(a_days, c_days, "case {case}");
                assert!(a.stats.duplicates > 0 && a.stats.non_consumer > 0);
            }
        }
    }

    /// The scan bounds hold every instant whose local day lies in the
    /// range, in zones with and without daylight saving near either end;
    /// with one offset all year they are the days' exact instants.
    #[test]
    fn ts_bounds_hold_every_instant_of_the_days() {
        let zones: [Tz; 5] = [
            chrono_tz::Asia::Shanghai,
            chrono_tz::America::New_York,
            chrono_tz::Europe::London,
            chrono_tz::Australia::Lord_Howe,
            chrono_tz::America::Santiago,
        ];
        let ranges: [(NaiveDate, NaiveDate); 4] = [
            (
                NaiveDate::from_ymd_opt(2024, 5, 16).unwrap(),
                NaiveDate::from_ymd_opt(2024, 5, 17).unwrap(),
            ),
            (
                NaiveDate::from_ymd_opt(2024, 3, 10).unwrap(),
                NaiveDate::from_ymd_opt(2024, 3, 10).unwrap(),
            ),
            (
                NaiveDate::from_ymd_opt(2024, 3, 30).unwrap(),
                NaiveDate::from_ymd_opt(2024, 4, 7).unwrap(),
            ),
            (
                NaiveDate::from_ymd_opt(2024, 11, 3).unwrap(),
                NaiveDate::from_ymd_opt(2024, 11, 4).unwrap(),
            ),
        ];
        for tz in zones {
            for (a, b) in ranges {
                let (first, last) = (day_number(a), day_number(b));
                let bounds = ts_bounds(&tz, first, last);
                let (lo, hi) = bounds.utc;
                // Every 10 s from two days before to two days after.
                let mut t = first as i64 * MS_PER_DAY - 2 * MS_PER_DAY;
                while t < (last as i64 + 3) * MS_PER_DAY {
                    for u in [t, t + 9_999] {
                        let (d, _) = local_day_tod(&tz, u);
                        if (first..=last).contains(&d) {
                            assert!(lo <= u && u < hi, "{tz} {a}..{b}: {u} outside [{lo}, {hi})");
                        }
                    }
                    t += 10_000;
                }
            }
        }
        let d = day_number(NaiveDate::from_ymd_opt(2024, 5, 16).unwrap());
        let b = ts_bounds(&chrono_tz::Asia::Shanghai, d, d + 1);
        let eight = 8 * 3_600_000;
        assert_eq!(
            b.utc,
            (
                d as i64 * MS_PER_DAY - eight,
                (d as i64 + 2) * MS_PER_DAY - eight
            )
        );
    }
}
