//! Stage 2: the plan of one input file: its lazy Parquet scan with the
//! canonical columns (names mapped by `[input.columns]`, ids cast to
//! strings, epoch integers to timestamps), the `ts` predicate pushed into
//! the scan, and its reads in whole row groups.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Offset, TimeZone};
use chrono_tz::Tz;
use polars::prelude::*;

use crate::error::{Error, Result};
use crate::model::MS_PER_DAY;
use crate::rules::InputSettings;

use super::clock::LocalClock;

/// One file's rows, with canonical column names; `ts` is in `unit`, naive
/// (local) when `tz_aware` is false.
pub(super) struct FileRows {
    pub(super) path: PathBuf,
    pub(super) df: DataFrame,
    pub(super) unit: TimeUnit,
    pub(super) tz_aware: bool,
}

const OPTIONAL_STRINGS: &[&str] = &["msg_id", "agent_id", "peer_kind", "session_id"];
const OPTIONAL_BOOLS: &[&str] = &["auto", "assist", "spam", "blocked"];

/// One input file, ready to read: the lazy scan, the canonical columns and
/// the pushed-down `ts` predicate.
pub(super) struct FilePlan {
    pub(super) path: PathBuf,
    lf: LazyFrame,
    /// `shop_id` first, `ts` last.
    exprs: Vec<Expr>,
    /// What a read that only counts rows needs of them: `shop_id`,
    /// `buyer_id`, `sender`, `ts`.
    count_exprs: Vec<Expr>,
    predicate: Expr,
    /// The predicate of the first loaded day alone (see [`FilePlan::mark_days`]).
    pub(super) first_day: Expr,
    /// The predicate of the days before the first loaded day that
    /// [`ScanOptions::count_days_before`](super::ScanOptions::count_days_before) asks about.
    pub(super) days_before: Expr,
    unit: TimeUnit,
    tz_aware: bool,
    pub(super) has_session_column: bool,
}

/// Bounds of a `ts` predicate in milliseconds, `[lo, hi)`: `utc` for a
/// time-zone-aware (or epoch) `ts`, `local` for a naive one.
#[derive(Clone, Copy, Debug)]
pub(super) struct TsBounds {
    pub(super) utc: (i64, i64),
    local: (i64, i64),
}

/// `bounds` select the loaded days, `first_day` the first of them and
/// `days_before` some days before that.
pub(super) fn plan_file(
    path: &Path,
    settings: &InputSettings,
    bounds: TsBounds,
    first_day: TsBounds,
    days_before: TsBounds,
) -> Result<FilePlan> {
    let shown = path.display().to_string();
    let bad = |msg: String| Error::BadData(format!("input file {shown}: {msg}"));
    let (lf, schema) = open_scan(path, &bad)?;
    let mut exprs = column_exprs(&schema, settings, &bad)?;
    let (unit, tz_aware, predicate, ts_expr) = ts_column(&schema, settings, &bad)?;
    exprs.push(ts_expr);
    let count_exprs = [0, 1, 2, exprs.len() - 1]
        .iter()
        .map(|&k| exprs[k].clone())
        .collect();
    let has_session_column = schema.get(settings.column("session_id")).is_some();
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

/// The lazy scan of `path` (no Hive partitions, no glob, no rechunk) and its
/// schema.
fn open_scan(path: &Path, bad: &dyn Fn(String) -> Error) -> Result<(LazyFrame, SchemaRef)> {
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
    Ok((lf, schema))
}

/// The expressions of every column but `ts`: `shop_id`, `buyer_id` and
/// `sender` (required), then the optional strings and booleans the file
/// has, each under its canonical name; ids stored as integers are cast to
/// strings.
fn column_exprs(
    schema: &Schema,
    settings: &InputSettings,
    bad: &dyn Fn(String) -> Error,
) -> Result<Vec<Expr>> {
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
    Ok(exprs)
}

/// The `ts` predicate of given bounds.
type MakePredicate = Box<dyn Fn(TsBounds) -> Expr>;

/// The `ts` column: its unit, whether it is time-zone aware (epoch integers
/// are), the predicate of given bounds, and the expression that reads it as
/// a datetime. The predicate is on the column as stored, so the scan can
/// skip row groups by their statistics; `ts` is then cast to a datetime.
fn ts_column(
    schema: &Schema,
    settings: &InputSettings,
    bad: &dyn Fn(String) -> Error,
) -> Result<(TimeUnit, bool, MakePredicate, Expr)> {
    let ts_name = settings.column("ts").to_string();
    let ts = col(ts_name.as_str());
    Ok(match schema.get(ts_name.as_str()) {
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
    })
}

impl FilePlan {
    fn bad(&self, msg: String) -> Error {
        Error::BadData(format!("input file {}: {msg}", self.path.display()))
    }

    /// Rows in the file (from its metadata).
    pub(super) fn row_count(&self) -> Result<u64> {
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
    pub(super) fn read(&self, offset: u64, len: u64, count_only: bool) -> Result<FileRows> {
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
    pub(super) fn mark_days(
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
    pub(super) fn row_groups(&self) -> Result<Vec<u64>> {
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
    pub(super) fn row_numbers(&self, offset: u64, len: u64) -> Result<Vec<u32>> {
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
pub(super) fn read_chunks(groups: &[u64], rows: u64, chunk_rows: u64) -> Vec<(u64, u64)> {
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

/// Units of `unit` in a millisecond.
pub(super) fn per_ms(unit: TimeUnit) -> i64 {
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
pub(super) fn ts_bounds(tz: &Tz, first: i32, last: i32) -> TsBounds {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{day_number, local_day_tod};
    use chrono::NaiveDate;

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
