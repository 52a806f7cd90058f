//! Reading one scorecard table file: its canonical columns (remapped names,
//! checked types) as plain Rust vectors, one entry per file row.
//!
//! These tables are small beside the message log (a shop's orders, not its
//! chat lines), so a file is read whole and the rows are chosen in Rust by
//! their local day.

use std::collections::BTreeMap;
use std::path::Path;

use chrono_tz::Tz;
use polars::prelude::*;

use crate::error::{Error, Result};
use crate::model::{local_day_tod, local_to_utc, TS_MAX_MS, TS_MIN_MS};
use crate::rules::EpochUnit;

use super::money::{fen_column, Fen};

/// A time column's row: UTC ms with its local day and ms after midnight,
/// `Ok(None)` for a null, `Err(reason)` for a value outside 1900-2200.
pub(crate) type Time = Result<Option<LocalTime>, String>;

/// An instant and its local clock reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalTime {
    pub utc: i64,
    pub day: i32,
    pub tod: i32,
}

/// What a column must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A string, or an integer read as its decimal text.
    Text,
    Bool,
    /// An integer (a float column is refused: counts are whole).
    Int,
    /// A timestamp (§1), or integer epoch time with `ts_epoch_unit`.
    Time,
    /// Yuan: decimal, float or integer.
    Money,
}

/// One file of a table, read: the canonical columns present.
pub(crate) struct FileData {
    pub table: &'static str,
    pub shown: String,
    pub height: usize,
    df: DataFrame,
}

/// How to read a table's files.
pub(crate) struct Reader<'a> {
    /// `orders`, `refunds`, …: for messages.
    pub table: &'static str,
    /// canonical name → the file's column name.
    pub columns: &'a BTreeMap<String, String>,
    pub tz: Tz,
    pub epoch: Option<EpochUnit>,
}

impl Reader<'_> {
    fn name<'n>(&'n self, canonical: &'n str) -> &'n str {
        self.columns
            .get(canonical)
            .map(String::as_str)
            .unwrap_or(canonical)
    }

    /// Reads `path`: `wanted` are (canonical name, kind, required). A missing
    /// required column or a column of the wrong type fails the run.
    pub fn read(&self, path: &Path, wanted: &[(&'static str, Kind, bool)]) -> Result<FileData> {
        let shown = path.display().to_string();
        let bad = |msg: String| Error::BadData(format!("{} file {shown}: {msg}", self.table));
        let path_str = path
            .to_str()
            .ok_or_else(|| bad("the path is not valid UTF-8".to_string()))?;
        let args = ScanArgsParquet {
            hive_options: HiveOptions {
                enabled: Some(false),
                ..Default::default()
            },
            glob: false,
            ..Default::default()
        };
        let mut lf = LazyFrame::scan_parquet(PlRefPath::new(path_str), args)
            .map_err(|e| bad(format!("cannot open as Parquet: {e}")))?;
        let schema = lf
            .collect_schema()
            .map_err(|e| bad(format!("cannot read the Parquet schema: {e}")))?;
        let mut exprs = Vec::new();
        for &(canonical, kind, required) in wanted {
            let theirs = self.name(canonical);
            let Some(dt) = schema.get(theirs) else {
                if required {
                    let mapped = if theirs != canonical {
                        format!(" (mapped from `{canonical}`)")
                    } else {
                        String::new()
                    };
                    let present: Vec<&str> = schema.iter_names().map(|n| n.as_str()).collect();
                    return Err(bad(format!(
                        "required column `{theirs}`{mapped} is missing (columns present: {})",
                        present.join(", ")
                    )));
                }
                continue;
            };
            let c = col(theirs);
            let e = match (kind, dt) {
                (_, DataType::Null) => c,
                (Kind::Text, dt) if dt.is_string() || dt.is_integer() => c.cast(DataType::String),
                (Kind::Bool, DataType::Boolean) => c,
                (Kind::Int, dt) if dt.is_integer() => c,
                (Kind::Time, DataType::Datetime(..)) => c,
                (Kind::Time, dt) if dt.is_integer() && self.epoch.is_some() => c,
                (Kind::Money, dt)
                    if dt.is_float() || dt.is_integer() || matches!(dt, DataType::Decimal(..)) =>
                {
                    c
                }
                (kind, dt) => return Err(bad(type_error(theirs, canonical, kind, dt))),
            };
            exprs.push(e.alias(canonical));
        }
        let df = lf
            .select(exprs)
            .collect()
            .map_err(|e| bad(format!("cannot read (truncated or corrupt Parquet?): {e}")))?;
        Ok(FileData {
            table: self.table,
            shown,
            height: df.height(),
            df,
        })
    }
}

fn type_error(theirs: &str, canonical: &str, kind: Kind, dt: &DataType) -> String {
    let must = match kind {
        Kind::Text => "a string (or an integer id)",
        Kind::Bool => "a boolean",
        Kind::Int => "an integer",
        Kind::Time if dt.is_integer() => {
            return format!(
                "column `{theirs}` holds integers; if they are epoch times, say their unit with \
                 `[input] ts_epoch_unit = \"s\"` (or \"ms\", \"us\", \"ns\") in the rule file"
            )
        }
        Kind::Time => {
            "a Parquet timestamp (any unit, with or without a time zone), or integer epoch \
             time with `[input] ts_epoch_unit`"
        }
        Kind::Money => "a decimal, a float or an integer (yuan)",
    };
    format!("column `{theirs}` has type {dt}; `{canonical}` must be {must}")
}

/// A text column of a file, read in place (a row's value borrowed, copied
/// only into the rows kept).
pub(crate) struct Texts(Option<StringChunked>);

impl Texts {
    /// Row `i`'s value (`None`: null, or the column is absent).
    pub fn get(&self, i: usize) -> Option<&str> {
        self.0.as_ref().and_then(|ca| ca.get(i))
    }
}

impl FileData {
    fn series(&self, canonical: &str) -> Option<&Series> {
        self.df
            .column(canonical)
            .ok()
            .map(|c| c.as_materialized_series())
    }

    fn fail(&self, canonical: &str, e: impl std::fmt::Display) -> Error {
        Error::BadData(format!(
            "{} file {}: column `{canonical}`: {e}",
            self.table, self.shown
        ))
    }

    /// A text column (all rows null when absent).
    pub fn text(&self, canonical: &str) -> Result<Texts> {
        let Some(s) = self.series(canonical) else {
            return Ok(Texts(None));
        };
        let s = s
            .cast(&DataType::String)
            .map_err(|e| self.fail(canonical, e))?;
        let ca = s.str().map_err(|e| self.fail(canonical, e))?;
        Ok(Texts(Some(ca.rechunk().into_owned())))
    }

    /// A boolean column, nulls (and an absent column) as `default`.
    pub fn bools(&self, canonical: &str, default: bool) -> Result<Vec<bool>> {
        let Some(s) = self.series(canonical) else {
            return Ok(vec![default; self.height]);
        };
        let s = s
            .cast(&DataType::Boolean)
            .map_err(|e| self.fail(canonical, e))?;
        let ca = s.bool().map_err(|e| self.fail(canonical, e))?;
        Ok(ca.iter().map(|v| v.unwrap_or(default)).collect())
    }

    /// An integer column (as i128, so that every integer type fits);
    /// `None` for nulls and an absent column.
    pub fn ints(&self, canonical: &str) -> Result<Vec<Option<i128>>> {
        let Some(s) = self.series(canonical) else {
            return Ok(vec![None; self.height]);
        };
        if s.dtype().is_unsigned_integer() {
            let s = s
                .cast(&DataType::UInt64)
                .map_err(|e| self.fail(canonical, e))?;
            let ca = s.u64().map_err(|e| self.fail(canonical, e))?;
            return Ok(ca.iter().map(|v| v.map(i128::from)).collect());
        }
        let s = s
            .cast(&DataType::Int64)
            .map_err(|e| self.fail(canonical, e))?;
        let ca = s.i64().map_err(|e| self.fail(canonical, e))?;
        Ok(ca.iter().map(|v| v.map(i128::from)).collect())
    }

    /// An amount column as fen (§8.1).
    pub fn money(&self, canonical: &str) -> Result<Vec<Fen>> {
        let Some(s) = self.series(canonical) else {
            return Ok(vec![Ok(None); self.height]);
        };
        fen_column(s).map_err(|e| self.fail(canonical, e))
    }

    /// A time column as instants (§1: zoned = instant, naive = local time
    /// in `tz`, integers = epoch time in `epoch`; truncated to ms).
    pub fn times(&self, canonical: &str, tz: &Tz, epoch: Option<EpochUnit>) -> Result<Vec<Time>> {
        let Some(s) = self.series(canonical) else {
            return Ok(vec![Ok(None); self.height]);
        };
        let (raw, per_ms, scale, aware): (Vec<Option<i64>>, i64, i64, bool) = match s.dtype() {
            DataType::Datetime(unit, zone) => {
                let ca = s.datetime().map_err(|e| self.fail(canonical, e))?;
                (ca.phys.iter().collect(), per_ms(*unit), 1, zone.is_some())
            }
            DataType::Null => (vec![None; self.height], 1, 1, true),
            _ => {
                let s = s
                    .cast(&DataType::Int64)
                    .map_err(|e| self.fail(canonical, e))?;
                let ca = s.i64().map_err(|e| self.fail(canonical, e))?;
                let (per_ms, scale) = match epoch.expect("checked when the file was read") {
                    EpochUnit::Seconds => (1, 1000),
                    EpochUnit::Millis => (1, 1),
                    EpochUnit::Micros => (1_000, 1),
                    EpochUnit::Nanos => (1_000_000, 1),
                };
                (ca.iter().collect(), per_ms, scale, true)
            }
        };
        let why = format!("{canonical} is before 1900 or after 2200");
        Ok(raw
            .into_iter()
            .map(|v| {
                let Some(v) = v else { return Ok(None) };
                let ms = v.div_euclid(per_ms).checked_mul(scale);
                let utc = if aware {
                    ms
                } else {
                    ms.and_then(|ms| local_to_utc(tz, ms))
                };
                match utc {
                    Some(utc) if (TS_MIN_MS..TS_MAX_MS).contains(&utc) => {
                        let (day, tod) = local_day_tod(tz, utc);
                        Ok(Some(LocalTime { utc, day, tod }))
                    }
                    _ => Err(why.clone()),
                }
            })
            .collect())
    }
}

fn per_ms(unit: TimeUnit) -> i64 {
    match unit {
        TimeUnit::Milliseconds => 1,
        TimeUnit::Microseconds => 1_000,
        TimeUnit::Nanoseconds => 1_000_000,
    }
}
