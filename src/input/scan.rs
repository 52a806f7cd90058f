//! The entry points: [`scan`] reads the files of a run's days into
//! buckets (stages 2 to 4, see the module `input`), [`load`] builds the
//! whole table in one piece; the counts for the empty days before a read
//! ([`DayBefore`]) and the bad-row check.

use std::path::PathBuf;

use chrono::NaiveDate;
use polars::prelude::{InitHashMaps, PlHashMap};

use crate::error::{Error, Result};
use crate::model::{day_date, day_number, LoadStats, Messages};
use crate::rules::InputSettings;
use crate::shard::Shard;

use super::bounds::{bounds_from_read, Bounds};
use super::buckets::{BucketStore, Loaded, MemoryPlan};
use super::clock::LocalClock;
use super::plan::{plan_file, read_chunks, ts_bounds, FilePlan};
use super::read::{classify_encode, Target};

/// What to read: the local days `first..=last` (a run over D..D2 reads
/// D..D2+1 for the reply horizon).
#[derive(Debug, Clone, Copy)]
pub struct DayRange {
    pub first: NaiveDate,
    pub last: NaiveDate,
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
    let clock = LocalClock::new(tz, ts_range.utc.0, ts_range.utc.1);
    let keep_rows = !options.probe_first || first_day_has_rows(&plans, &clock, first)?;
    let empty_before = empty_days_before(&plans, &clock, first, n_before)?;
    let new_stats = || LoadStats {
        files: plans.len(),
        ..Default::default()
    };
    let mut side = SideCounts {
        before: empty_before.contains(&(first - 1)).then(new_stats),
        untimed: empty_before.iter().any(|&d| d < first - 1).then(new_stats),
    };
    let target = Target {
        clock: &clock,
        days: (first, last),
        shard,
        keep: keep_rows,
    };
    let (store, bounds, mut stats, read_per_day) =
        read_files(&plans, settings, plan, &target, &mut side)?;
    drop(plans);

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
        bounds,
    })
}

/// Whether any file has a row on day `first` (asked of the `ts` column
/// alone, in the row groups of that day; see [`ScanOptions::probe_first`]).
fn first_day_has_rows(plans: &[FilePlan], clock: &LocalClock, first: i32) -> Result<bool> {
    let mut present = [false];
    for p in plans {
        p.mark_days(clock, first, &mut present, &p.first_day)?;
        if present[0] {
            break;
        }
    }
    Ok(present[0])
}

/// Of the `n_before` days before `first`, those that have no row and whose
/// next day has none either (unless it is `first`), latest first (see
/// [`ScanOptions::count_days_before`]).
fn empty_days_before(
    plans: &[FilePlan],
    clock: &LocalClock,
    first: i32,
    n_before: i32,
) -> Result<Vec<i32>> {
    let mut present = vec![false; n_before as usize];
    if n_before > 0 {
        for p in plans {
            p.mark_days(clock, first - n_before, &mut present, &p.days_before)?;
        }
    }
    // Day `first - 1 - k` has no row, nor has its next day (unless it is
    // `first`).
    Ok((0..n_before as usize)
        .rev()
        .filter(|&k| !present[k] && (k + 1 == n_before as usize || !present[k + 1]))
        .map(|k| first - n_before + k as i32)
        .collect())
}

/// Reads every file, chunk by chunk (whole row groups), into the bucket
/// store: the store (its spill finished), the bucket bounds (see
/// [`Loaded::bucket_shops`]), the counts, and the rows kept per loaded day.
/// The bucket bounds come from the first read that keeps rows (a sample of
/// the shops' traffic); until then there is one bucket.
fn read_files(
    plans: &[FilePlan],
    settings: &InputSettings,
    plan: &MemoryPlan,
    target: &Target<'_>,
    side: &mut SideCounts,
) -> Result<(BucketStore, Vec<String>, LoadStats, Vec<u64>)> {
    let counts: Vec<u64> = plans
        .iter()
        .map(FilePlan::row_count)
        .collect::<Result<_>>()?;
    let total: u64 = counts.iter().sum();
    let Target {
        clock,
        days: (first, last),
        keep: keep_rows,
        ..
    } = *target;
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
                    bounds_from_read(&part, clock, (first, last), total, plan.bucket_rows)
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
                target,
                bounds.as_ref(),
                &mut store,
                &mut stats,
                &mut read_per_day,
                side,
                &numbers,
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
    store.finish_spill()?;
    let bounds = bounds.map(Bounds::into_names).unwrap_or_default();
    // `Loaded::bucket_shops` reads bucket k's range off these bounds.
    debug_assert_eq!(store.buckets(), bounds.len() + 1);
    Ok((store, bounds, stats, read_per_day))
}

/// What reads of days before a read's first day would count, counted by
/// that read (see [`ScanOptions::count_days_before`]): `before` as a read of
/// the day just before (whose rows are the first day's and those without a
/// `ts`), `untimed` as one of an earlier day (only rows without a `ts`).
/// `None` when not asked for, or when they cannot be had.
pub(super) struct SideCounts {
    pub(super) before: Option<LoadStats>,
    pub(super) untimed: Option<LoadStats>,
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
            bounds: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MS_PER_DAY;

    /// A read of day D asked to count the days before gives, for each empty
    /// day d before it whose next day is empty or D, the counts, examples
    /// and bad-row checks of a count-only read of d itself: over several
    /// files, small reads, bad rows of every kind on every day and without
    /// a `ts`, and shards. A day with a row, even a bad one, or whose next
    /// day has one, gets no such counts.
    #[test]
    fn a_read_counts_the_empty_days_before_as_their_own_reads_would() {
        use polars::prelude::{Column, DataFrame, DataType, ParquetWriter, TimeUnit};
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
}
