//! The message table (SPEC §1): find the files, read the columns and days a
//! run needs, map names and values, drop bad and duplicate rows, and hand the
//! engine one thread-ordered, integer-coded [`Messages`] table.
//!
//! Parquet is read with polars' lazy scan, one file at a time (files may have
//! different schemas: some lack optional columns, some store ids as
//! integers), with projection and a `ts` range predicate pushed into the
//! scan so that row groups outside the run's days are skipped. Everything
//! after the scan is plain Rust over integer columns.

use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, NaiveDateTime, Offset, TimeZone};
use chrono_tz::Tz;
use polars::prelude::*;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::rules::InputSettings;
use crate::shard::Shard;

pub const MS_PER_DAY: i64 = 86_400_000;

/// Who sent a row (SPEC §1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Sender {
    Buyer = 0,
    Agent = 1,
    Bot = 2,
    System = 3,
}

/// Bits of [`Messages::flags`].
pub mod flag {
    pub const AUTO: u8 = 1;
    pub const ASSIST: u8 = 2;
    pub const SPAM: u8 = 4;
    pub const BLOCKED: u8 = 8;
}

/// No value, in the `u32`-coded columns.
pub const NONE: u32 = u32::MAX;

/// Days since 1970-01-01.
pub fn day_number(d: NaiveDate) -> i32 {
    (d - NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days() as i32
}

/// The date of a day number.
pub fn day_date(n: i32) -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch") + chrono::Duration::days(n as i64)
}

/// The consumer rows of the run's days, ordered as SPEC §2 orders a thread:
/// by shop and buyer (the thread), then `ts`, then buyer rows before all
/// others, then input order. Strings are coded as indices into the name
/// tables; only `peer_kind = consumer` rows that survived the bad-row and
/// duplicate checks are here.
#[derive(Debug, Default)]
pub struct Messages {
    pub shop_names: Vec<String>,
    pub buyer_names: Vec<String>,
    /// Index 0 is the empty string (no agent).
    pub agent_names: Vec<String>,
    pub shop: Vec<u32>,
    pub buyer: Vec<u32>,
    /// UTC milliseconds.
    pub ts: Vec<i64>,
    /// Local day number ([`day_number`]).
    pub day: Vec<i32>,
    /// Local milliseconds after midnight.
    pub tod: Vec<i32>,
    pub sender: Vec<Sender>,
    pub flags: Vec<u8>,
    pub agent: Vec<u32>,
    /// Session id code, [`NONE`] for null or when the column is absent.
    pub session: Vec<u32>,
    /// Whether the input had a `session_id` column (else sessions are derived).
    pub has_session_column: bool,
    /// Row ranges of the threads, in order.
    pub threads: Vec<(u32, u32)>,
    pub stats: LoadStats,
}

impl Messages {
    pub fn len(&self) -> usize {
        self.ts.len()
    }
    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }
}

/// What the load saw, for the run summary and the bad-row checks.
#[derive(Debug, Default, Clone)]
pub struct LoadStats {
    pub files: usize,
    /// Rows read (in the loaded days, bad rows included) per input file.
    pub file_rows: Vec<(String, u64)>,
    /// Rows whose local day lies in the loaded days, plus bad rows.
    pub rows_read: u64,
    pub bad_rows: u64,
    /// A few bad rows: "file, row N: reason".
    pub bad_examples: Vec<String>,
    pub duplicates: u64,
    /// Rows left out because `peer_kind` is not `consumer`.
    pub non_consumer: u64,
    /// Rows per loaded local day (after bad rows and duplicates).
    pub rows_per_day: Vec<(NaiveDate, u64)>,
}

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
    row_numbers: Vec<u32>,
}

const OPTIONAL_STRINGS: &[&str] = &["msg_id", "agent_id", "peer_kind", "session_id"];
const OPTIONAL_BOOLS: &[&str] = &["auto", "assist", "spam", "blocked"];

/// Reads `files` for `days` and builds the engine's table. Bad rows are
/// counted and skipped; the run fails under `strict` or when their share
/// exceeds the rule file's `max_bad_row_share`.
pub fn load(
    files: &[PathBuf],
    settings: &InputSettings,
    days: DayRange,
    strict: bool,
    shard: Shard,
) -> Result<Messages> {
    let first = day_number(days.first);
    let last = day_number(days.last);
    // A generous UTC window for the pushed-down predicate (local offsets lie
    // within ±14 h, naive values are local); the exact day test comes after.
    let lo_ms = first as i64 * MS_PER_DAY - 2 * MS_PER_DAY;
    let hi_ms = (last as i64 + 1) * MS_PER_DAY + 2 * MS_PER_DAY;

    let mut parts = Vec::with_capacity(files.len());
    for path in files {
        parts.push(read_file(path, settings, lo_ms, hi_ms)?);
    }
    // With a session_id column in any file, rows without one (null, or from a
    // file lacking the column) are split by gaps among themselves (SPEC §2).
    let has_session_column = parts
        .iter()
        .any(|p| p.df.get_column_index("session_id").is_some());
    build(
        parts,
        settings,
        first,
        last,
        strict,
        has_session_column,
        shard,
    )
}

fn read_file(path: &Path, settings: &InputSettings, lo_ms: i64, hi_ms: i64) -> Result<FileRows> {
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
    let (unit, tz_aware, predicate, ts_expr) = match schema.get(ts_name.as_str()) {
        None => {
            return Err(bad(format!(
                "required column `{ts_name}` is missing (columns present: {})",
                schema.iter_names().map(|n| n.as_str()).collect::<Vec<_>>().join(", ")
            )))
        }
        Some(DataType::Datetime(unit, tz)) => {
            let (unit, tz) = (*unit, tz.clone());
            let per_ms = per_ms(unit);
            let bound = |ms: i64| lit(Scalar::new_datetime(ms.saturating_mul(per_ms), unit, tz.clone()));
            let predicate = ts.clone().is_null().or(ts.clone().gt_eq(bound(lo_ms)).and(ts.clone().lt(bound(hi_ms))));
            (unit, tz.is_some(), predicate, ts.clone().alias("ts"))
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
            let lo = (lo_ms as f64 * stored_per_ms).floor() as i64;
            let hi = (hi_ms as f64 * stored_per_ms).ceil() as i64;
            let as_i64 = ts.clone().cast(DataType::Int64);
            let predicate = ts.clone().is_null().or(as_i64.clone().gt_eq(lit(lo)).and(as_i64.clone().lt(lit(hi))));
            let expr = (as_i64 * lit(scale_to_unit))
                .cast(DataType::Datetime(unit, Some(polars::prelude::TimeZone::UTC)))
                .alias("ts");
            (unit, true, predicate, expr)
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
    // Row numbers within the file, for error messages and input order.
    let df = lf
        .with_row_index("__row", None)
        .filter(predicate)
        .select({
            let mut e = vec![col("__row")];
            e.extend(exprs);
            e
        })
        .collect()
        .map_err(|e| bad(format!("cannot read (truncated or corrupt Parquet?): {e}")))?;
    let row_numbers: Vec<u32> = df
        .column("__row")
        .and_then(|c| c.cast(&DataType::UInt32))
        .and_then(|c| c.u32().map(|ca| ca.into_no_null_iter().collect()))
        .map_err(|e| bad(format!("row index: {e}")))?;
    let df = df.drop("__row").map_err(|e| bad(e.to_string()))?;
    Ok(FileRows {
        path: path.to_path_buf(),
        df,
        unit,
        tz_aware,
        row_numbers,
    })
}

fn per_ms(unit: TimeUnit) -> i64 {
    match unit {
        TimeUnit::Milliseconds => 1,
        TimeUnit::Microseconds => 1_000,
        TimeUnit::Nanoseconds => 1_000_000,
    }
}

/// Local (day number, ms after midnight) of a UTC instant.
#[inline]
pub fn local_day_tod(tz: &Tz, utc_ms: i64) -> (i32, i32) {
    let dt = DateTime::from_timestamp_millis(utc_ms)
        .expect("in chrono's range")
        .naive_utc();
    let off = tz.offset_from_utc_datetime(&dt).fix().local_minus_utc() as i64 * 1000;
    let local = utc_ms + off;
    (
        (local.div_euclid(MS_PER_DAY)) as i32,
        local.rem_euclid(MS_PER_DAY) as i32,
    )
}

/// The UTC instant of a naive local time in `tz`. An ambiguous time (clocks
/// turned back) is read as the earlier instant; a time that does not exist
/// (clocks turned forward) is read with the offset in force just before the
/// change.
pub fn local_to_utc(tz: &Tz, local_ms: i64) -> Option<i64> {
    let ndt: NaiveDateTime = DateTime::from_timestamp_millis(local_ms)?.naive_utc();
    let off = match tz.offset_from_local_datetime(&ndt) {
        chrono::LocalResult::Single(o) => o.fix(),
        chrono::LocalResult::Ambiguous(a, _) => a.fix(),
        chrono::LocalResult::None => {
            let before = ndt - chrono::Duration::hours(12);
            tz.offset_from_utc_datetime(&before).fix()
        }
    };
    Some(local_ms - off.local_minus_utc() as i64 * 1000)
}

/// Bounds on timestamps kept: 1900-01-01 to 2200-01-01 (outside, a row is bad).
const TS_MIN_MS: i64 = -2_208_988_800_000;
const TS_MAX_MS: i64 = 7_258_118_400_000;

/// Strings to dense `u32` codes, in order of first use.
struct Interner {
    map: PlHashMap<String, u32>,
    names: Vec<String>,
}

impl Interner {
    fn new() -> Self {
        Interner {
            map: PlHashMap::new(),
            names: Vec::new(),
        }
    }
    fn with_empty() -> Self {
        let mut i = Interner::new();
        i.code("");
        i
    }
    #[inline]
    fn code(&mut self, s: &str) -> u32 {
        if let Some(&c) = self.map.get(s) {
            return c;
        }
        let c = self.names.len() as u32;
        self.map.insert(s.to_string(), c);
        self.names.push(s.to_string());
        c
    }
}

/// The string key columns the grouping steps need, in this order.
const KEY_COLUMNS: &[&str] = &["shop_id", "buyer_id", "msg_id", "agent_id", "session_id"];

/// Calls `f` with the row indices of every group.
fn for_each_group(groups: &GroupsType, mut f: impl FnMut(&[IdxSize])) {
    match groups {
        GroupsType::Idx(g) => {
            for (_, all) in g.iter() {
                f(all.as_slice());
            }
        }
        GroupsType::Slice { groups, .. } => {
            let mut buf = Vec::new();
            for &[first, len] in groups.iter() {
                buf.clear();
                buf.extend(first..first + len);
                f(&buf);
            }
        }
    }
}

/// Turns the files' rows into the engine's table: bad rows out (counted,
/// with examples), rows outside the loaded days out, then de-duplication,
/// the peer_kind filter, integer codes for threads, shops, agents and
/// sessions, and the thread order.
///
/// The string work is columnar: polars' (parallel) group-by finds the
/// duplicate `msg_id`s and the threads, so no per-row hashing happens here.
fn build(
    parts: Vec<FileRows>,
    settings: &InputSettings,
    first: i32,
    last: i32,
    strict: bool,
    has_session_column: bool,
    shard: Shard,
) -> Result<Messages> {
    let tz = settings.timezone;
    let mut stats = LoadStats {
        files: parts.len(),
        ..Default::default()
    };
    let polars_err = |what: &str, e: PolarsError| Error::BadData(format!("input: {what}: {e}"));

    // Kept rows (not bad, in the loaded days), in input order.
    let mut ts_v = Vec::new();
    let mut day_v = Vec::new();
    let mut tod_v = Vec::new();
    let mut sender_v = Vec::new();
    let mut flags_v = Vec::new();
    let mut consumer_v = Vec::new();
    let mut keys: Option<DataFrame> = None;

    for part in parts {
        let rows_before = stats.rows_read;
        let df = &part.df;
        let shown = part.path.display();
        let s = |name: &str| -> Option<&StringChunked> {
            df.column(name).ok().and_then(|c| c.str().ok())
        };
        // Rows of other shards' shops are not this run's (null shops go to
        // shard 0, which reports them as bad rows).
        let in_shard: Option<Vec<bool>> = (!shard.is_whole()).then(|| {
            s("shop_id")
                .expect("selected")
                .iter()
                .map(|v| shard.owns(v))
                .collect()
        });
        let shop_c: Vec<bool> = s("shop_id")
            .expect("selected")
            .iter()
            .map(|v| v.is_some())
            .collect();
        let buyer_c: Vec<bool> = s("buyer_id")
            .expect("selected")
            .iter()
            .map(|v| v.is_some())
            .collect();
        // Senders as small codes (after [input.sender_values]): 0 null,
        // 1-4 the four senders, 5 anything else.
        let sender_strings = s("sender").expect("selected");
        let mapped_sender = |v: &str| {
            settings
                .sender_values
                .get(v)
                .map(String::as_str)
                .unwrap_or(v)
                .to_string()
        };
        let sender_c: Vec<u8> = sender_strings
            .iter()
            .map(|v| {
                match v.map(|v| {
                    settings
                        .sender_values
                        .get(v)
                        .map(String::as_str)
                        .unwrap_or(v)
                }) {
                    None => 0,
                    Some("buyer") => 1,
                    Some("agent") => 2,
                    Some("bot") => 3,
                    Some("system") => 4,
                    Some(_) => 5,
                }
            })
            .collect();
        let peer_c: Option<Vec<bool>> = s("peer_kind").map(|c| {
            c.iter()
                .map(|v| v.is_none_or(|p| p == "consumer"))
                .collect()
        });
        let mut flag_v = vec![0u8; df.height()];
        for (bit, name) in [
            (flag::AUTO, "auto"),
            (flag::ASSIST, "assist"),
            (flag::SPAM, "spam"),
            (flag::BLOCKED, "blocked"),
        ] {
            if let Some(c) = df.column(name).ok().and_then(|c| c.bool().ok()) {
                for (f, v) in flag_v.iter_mut().zip(c.iter()) {
                    if v == Some(true) {
                        *f |= bit;
                    }
                }
            }
        }
        let ts_phys: Vec<Option<i64>> = df
            .column("ts")
            .and_then(|c| c.datetime().map(|d| d.physical().iter().collect()))
            .map_err(|e| Error::BadData(format!("input file {shown}: column ts: {e}")))?;
        let per_ms = per_ms(part.unit);
        // UTC ms and local day/time of every row, in parallel.
        let times: Vec<Option<(i64, i32, i32)>> = ts_phys
            .par_iter()
            .map(|v| {
                let raw = (*v)?.div_euclid(per_ms);
                let utc = if part.tz_aware {
                    raw
                } else {
                    local_to_utc(&tz, raw)?
                };
                if !(TS_MIN_MS..TS_MAX_MS).contains(&utc) {
                    return None;
                }
                let (d, t) = local_day_tod(&tz, utc);
                Some((utc, d, t))
            })
            .collect();

        let bad_row = |row: usize, reason: String, stats: &mut LoadStats| {
            stats.bad_rows += 1;
            stats.rows_read += 1;
            if stats.bad_examples.len() < 5 {
                stats
                    .bad_examples
                    .push(format!("{shown}, row {}: {reason}", part.row_numbers[row]));
            }
        };
        // Classify every row in parallel, then count in input order.
        enum Class {
            Skip,
            Bad(&'static str),
            BadSender,
            Keep(i64, i32, i32, Sender),
        }
        let classes: Vec<Class> = (0..df.height())
            .into_par_iter()
            .map(|i| {
                let time = times[i];
                // Rows outside the loaded days are not part of this read.
                if let Some((_, d, _)) = time {
                    if d < first || d > last {
                        return Class::Skip;
                    }
                }
                if in_shard.as_ref().is_some_and(|o| !o[i]) {
                    return Class::Skip;
                }
                if !shop_c[i] {
                    return Class::Bad("shop_id is null");
                }
                if !buyer_c[i] {
                    return Class::Bad("buyer_id is null");
                }
                let Some((utc, d, t)) = time else {
                    return Class::Bad(if ts_phys[i].is_none() {
                        "ts is null"
                    } else {
                        "ts is before 1900 or after 2200"
                    });
                };
                match sender_c[i] {
                    1 => Class::Keep(utc, d, t, Sender::Buyer),
                    2 => Class::Keep(utc, d, t, Sender::Agent),
                    3 => Class::Keep(utc, d, t, Sender::Bot),
                    4 => Class::Keep(utc, d, t, Sender::System),
                    0 => Class::Bad("sender is null"),
                    _ => Class::BadSender,
                }
            })
            .collect();
        let mut keep = vec![false; df.height()];
        for (i, class) in classes.into_iter().enumerate() {
            match class {
                Class::Skip => {}
                Class::Bad(why) => bad_row(i, why.to_string(), &mut stats),
                Class::BadSender => {
                    let v = mapped_sender(sender_strings.get(i).unwrap_or_default());
                    bad_row(
                        i,
                        format!("sender `{v}` is not buyer, agent, bot or system"),
                        &mut stats,
                    )
                }
                Class::Keep(utc, d, t, sender) => {
                    stats.rows_read += 1;
                    keep[i] = true;
                    ts_v.push(utc);
                    day_v.push(d);
                    tod_v.push(t);
                    sender_v.push(sender);
                    flags_v.push(flag_v[i]);
                    consumer_v.push(peer_c.as_ref().is_none_or(|p| p[i]));
                }
            }
        }
        stats.file_rows.push((
            part.path.display().to_string(),
            stats.rows_read - rows_before,
        ));

        // The key columns of the kept rows, the same schema for every file.
        let mask = BooleanChunked::from_slice("keep".into(), &keep);
        let mut cols = Vec::with_capacity(KEY_COLUMNS.len());
        for name in KEY_COLUMNS {
            cols.push(match df.column(name) {
                Ok(c) => c.clone(),
                Err(_) => Column::full_null((*name).into(), df.height(), &DataType::String),
            });
        }
        let all_kept = keep.iter().all(|&k| k);
        let part_keys = DataFrame::new(df.height(), cols)
            .and_then(|k| if all_kept { Ok(k) } else { k.filter(&mask) })
            .map_err(|e| polars_err("selecting rows", e))?;
        keys = Some(match keys {
            None => part_keys,
            Some(mut k) => {
                k.vstack_mut_owned(part_keys)
                    .map_err(|e| polars_err("joining files", e))?;
                k
            }
        });
        drop(part);
    }

    if stats.bad_rows > 0 {
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
    }

    let mut keys = match keys {
        Some(k) => k,
        None => DataFrame::new(
            0,
            KEY_COLUMNS
                .iter()
                .map(|n| Column::full_null((*n).into(), 0, &DataType::String))
                .collect(),
        )
        .map_err(|e| polars_err("empty input", e))?,
    };
    let n = keys.height();
    keys.with_column(Column::new("__day".into(), day_v.clone()))
        .map_err(|e| polars_err("day column", e))?;

    // De-duplication: of the rows sharing (shop_id, msg_id, local day), the
    // first in input order stays. Null msg_ids are never duplicates.
    let mut dropped = vec![false; n];
    let msg_ids = keys
        .column("msg_id")
        .and_then(|c| c.str())
        .map_err(|e| polars_err("msg_id", e))?
        .clone();
    if n > 0 && msg_ids.null_count() < n {
        let gb = keys
            .group_by(["shop_id", "msg_id", "__day"])
            .map_err(|e| polars_err("de-duplication", e))?;
        for_each_group(gb.get_groups(), |rows| {
            if rows.len() < 2 || msg_ids.get(rows[0] as usize).is_none() {
                return;
            }
            let keep = *rows.iter().min().expect("non-empty group");
            for &r in rows {
                if r != keep {
                    dropped[r as usize] = true;
                    stats.duplicates += 1;
                }
            }
        });
    }
    // Then rows whose peer is not a consumer leave everything.
    for i in 0..n {
        if !dropped[i] && !consumer_v[i] {
            dropped[i] = true;
            stats.non_consumer += 1;
        }
    }
    let mut per_day: PlHashMap<i32, u64> = PlHashMap::new();
    for (i, &d) in day_v.iter().enumerate() {
        if !dropped[i] {
            *per_day.entry(d).or_default() += 1;
        }
    }

    // Threads: one group per (shop_id, buyer_id) among the rows left; a
    // thread's code is its number, shops get codes from threads' first rows.
    // Codes only order the work: every output is sorted by the strings.
    // Group representatives are looked up one by one: no column of string
    // slices is materialised.
    let str_col = |name: &str| -> Result<&StringChunked> {
        keys.column(name)
            .and_then(|c| c.str())
            .map_err(|e| polars_err(name, e))
    };
    let mut thread_of = vec![NONE; n];
    let mut shop_of_thread = Vec::new();
    let mut buyer_names = Vec::new();
    let mut shops = Interner::new();
    if n > 0 {
        let shop_s = str_col("shop_id")?;
        let buyer_s = str_col("buyer_id")?;
        let gb = keys
            .group_by(["shop_id", "buyer_id"])
            .map_err(|e| polars_err("threads", e))?;
        for_each_group(gb.get_groups(), |rows| {
            let Some(&r0) = rows.iter().find(|&&r| !dropped[r as usize]) else {
                return;
            };
            let t = shop_of_thread.len() as u32;
            shop_of_thread.push(shops.code(shop_s.get(r0 as usize).expect("bad rows removed")));
            buyer_names.push(
                buyer_s
                    .get(r0 as usize)
                    .expect("bad rows removed")
                    .to_string(),
            );
            for &r in rows {
                thread_of[r as usize] = t;
            }
        });
    }

    // Agents ("" and null are code 0) and sessions (null is NONE).
    let code_column = |name: &str, null_code: u32, interner: &mut Interner| -> Result<Vec<u32>> {
        let values = str_col(name)?;
        let mut codes = vec![null_code; n];
        if n == 0 || values.null_count() == n {
            return Ok(codes);
        }
        let gb = keys.group_by([name]).map_err(|e| polars_err(name, e))?;
        for_each_group(gb.get_groups(), |rows| {
            let Some(v) = values.get(rows[0] as usize) else {
                return;
            };
            let code = interner.code(v);
            for &r in rows {
                codes[r as usize] = code;
            }
        });
        Ok(codes)
    };
    let mut agents = Interner::with_empty();
    let agent_v = code_column("agent_id", 0, &mut agents)?;
    let mut sessions = Interner::new();
    let session_v = if has_session_column {
        code_column("session_id", NONE, &mut sessions)?
    } else {
        vec![NONE; n]
    };
    drop(keys);

    // Thread order: thread, ts, buyer rows first, input order. The rows are
    // sorted as whole records, which streams memory instead of gathering
    // nine columns through a permutation.
    if n >= 1 << 31 {
        return Err(Error::BadData(format!(
            "{n} rows in one load is more than kefu can order (2^31)"
        )));
    }
    #[derive(Clone, Copy)]
    struct Rec {
        thread: u32,
        tie: u32,
        ts: i64,
        day: i32,
        tod: i32,
        agent: u32,
        session: u32,
        sender: Sender,
        flags: u8,
    }
    let mut recs: Vec<Rec> = (0..n)
        .into_par_iter()
        .filter(|&i| !dropped[i])
        .map(|i| Rec {
            thread: thread_of[i],
            tie: (u32::from(sender_v[i] != Sender::Buyer) << 31) | i as u32,
            ts: ts_v[i],
            day: day_v[i],
            tod: tod_v[i],
            agent: agent_v[i],
            session: session_v[i],
            sender: sender_v[i],
            flags: flags_v[i],
        })
        .collect();
    drop((
        thread_of, ts_v, day_v, tod_v, agent_v, session_v, sender_v, flags_v, dropped,
    ));
    recs.par_sort_unstable_by_key(|r| (r.thread, r.ts, r.tie));
    let n = recs.len();
    let thread_s: Vec<u32> = recs.iter().map(|r| r.thread).collect();

    let mut threads = Vec::new();
    let mut start = 0usize;
    for i in 1..=n {
        if i == n || thread_s[i] != thread_s[start] {
            threads.push((start as u32, i as u32));
            start = i;
        }
    }

    let mut rows_per_day: Vec<(NaiveDate, u64)> = (first..=last)
        .map(|d| (day_date(d), per_day.get(&d).copied().unwrap_or(0)))
        .collect();
    rows_per_day.sort();
    stats.rows_per_day = rows_per_day;

    Ok(Messages {
        shop_names: shops.names,
        buyer_names,
        agent_names: agents.names,
        shop: thread_s
            .iter()
            .map(|&t| shop_of_thread[t as usize])
            .collect(),
        buyer: thread_s,
        ts: recs.iter().map(|r| r.ts).collect(),
        day: recs.iter().map(|r| r.day).collect(),
        tod: recs.iter().map(|r| r.tod).collect(),
        sender: recs.iter().map(|r| r.sender).collect(),
        flags: recs.iter().map(|r| r.flags).collect(),
        agent: recs.iter().map(|r| r.agent).collect(),
        session: recs.iter().map(|r| r.session).collect(),
        has_session_column,
        threads,
        stats,
    })
}

/// Local date and time of a UTC instant, for display.
pub fn local_datetime(tz: &Tz, utc_ms: i64) -> NaiveDateTime {
    let (d, t) = local_day_tod(tz, utc_ms);
    let date = day_date(d);
    let secs = (t / 1000) as u32;
    date.and_hms_milli_opt(secs / 3600, secs / 60 % 60, secs % 60, (t % 1000) as u32)
        .expect("valid time of day")
}
