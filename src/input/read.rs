//! Stage 3, one read of a file: its rows classified ([`classify`]) and the
//! kept ones encoded ([`encode_row`]) into their shop's bucket, in parallel
//! over pieces of the read, then gathered in input order (counts, bad-row
//! examples, the encoded rows).

use std::collections::BTreeMap;

use polars::prelude::*;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::model::LoadStats;
use crate::rules::InputSettings;
use crate::shard::Shard;

use super::bounds::Bounds;
use super::buckets::BucketStore;
use super::classify::{classify, flags, BadRow, Outcome, RowValues, SenderCodes, FLAG_COLUMNS};
use super::clock::LocalClock;
use super::codec::encode_row;
use super::plan::{per_ms, FileRows};
use super::scan::SideCounts;

/// What a read is for: the loaded days (and the clock that finds a row's),
/// the shard, and whether rows are kept (or only counted and checked).
pub(super) struct Target<'a> {
    pub(super) clock: &'a LocalClock,
    /// The first and last loaded day.
    pub(super) days: (i32, i32),
    pub(super) shard: Shard,
    pub(super) keep: bool,
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

impl TaskRows {
    fn new(buckets: usize, days: usize) -> TaskRows {
        TaskRows {
            buckets: (0..buckets).map(|_| (Vec::new(), 0)).collect(),
            rows_read: 0,
            bad_rows: 0,
            bad_first: Vec::new(),
            per_day: vec![0; days],
            before_bad: 0,
            before_first: Vec::new(),
            untimed_bad: 0,
            untimed_first: Vec::new(),
            before_unknown: false,
        }
    }

    /// A bad row (row `row` of the read), with its `ts` as stored and as
    /// read; `first` is the first loaded day.
    fn bad(&mut self, row: usize, why: BadRow<'_>, values: &RowValues<'_>, first: i32) {
        let (raw, time) = (values.raw_ts, values.time);
        let why = why.to_string();
        self.bad_rows += 1;
        self.rows_read += 1;
        // The day before's read sees the first day and no `ts`, earlier
        // days' reads no `ts` only.
        let untimed = time.is_none() && raw.is_none();
        self.before_unknown |= time.is_none() && raw.is_some();
        if untimed || time.is_some_and(|(_, d, _)| d == first) {
            self.before_bad += 1;
            if self.before_first.len() < 5 {
                self.before_first.push((row, why.clone()));
            }
        }
        if untimed {
            self.untimed_bad += 1;
            if self.untimed_first.len() < 5 {
                self.untimed_first.push((row, why.clone()));
            }
        }
        if self.bad_first.len() < 5 {
            self.bad_first.push((row, why));
        }
    }
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
    /// The boolean columns present: their place in [`FLAG_COLUMNS`], and
    /// arrays.
    flags: Vec<(usize, Vec<&'a BooleanArray>)>,
    ts: Vec<&'a I64Array>,
    lengths: Vec<usize>,
}

/// Classifies one read's rows and encodes the kept ones into `store`, in
/// parallel over pieces of the read: bad rows counted (with examples), rows
/// outside the loaded days or another shard's dropped, the rest encoded
/// into their shop's bucket (by `bounds`; one bucket without) in input
/// order (only counted unless `target.keep`).
#[allow(clippy::too_many_arguments)]
pub(super) fn classify_encode(
    mut part: FileRows,
    settings: &InputSettings,
    target: &Target<'_>,
    bounds: Option<&Bounds>,
    store: &mut BucketStore,
    stats: &mut LoadStats,
    read_per_day: &mut [u64],
    side: &mut SideCounts,
    row_numbers: &dyn Fn() -> Result<Vec<u32>>,
) -> Result<()> {
    let shown = part.path.display().to_string();
    if part.df.height() == 0 {
        return Ok(());
    }
    part.df.align_chunks_par();
    let arrays = read_arrays(&part.df, &shown)?;
    let mut tasks: Vec<(usize, usize, usize, usize)> = Vec::new();
    let mut row0 = 0;
    for (c, &len) in arrays.lengths.iter().enumerate() {
        for s in (0..len).step_by(TASK_ROWS) {
            let e = (s + TASK_ROWS).min(len);
            tasks.push((c, s, e, row0 + s));
        }
        row0 += len;
    }
    let task = Task {
        target,
        bounds,
        buckets: bounds.map_or(1, Bounds::buckets),
        days: read_per_day.len(),
        per_ms: per_ms(part.unit),
        tz_aware: part.tz_aware,
        sender_values: &settings.sender_values,
    };
    let results: Vec<TaskRows> = tasks
        .par_iter()
        .map(|&(c, s, e, r0)| task.run(&arrays, c, s..e, r0))
        .collect();
    gather(
        results,
        &shown,
        store,
        stats,
        read_per_day,
        side,
        row_numbers,
    )
}

/// The columns of a read as arrays, checked to share one chunk layout.
fn read_arrays<'a>(df: &'a DataFrame, shown: &str) -> Result<ReadArrays<'a>> {
    let fail = |e: PolarsError| Error::BadData(format!("input file {shown}: {e}"));
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
    for (slot, name) in FLAG_COLUMNS.iter().enumerate() {
        if let Ok(c) = df.column(name) {
            let arrays = c
                .as_materialized_series()
                .bool()
                .map_err(fail)?
                .downcast_iter()
                .collect();
            flags.push((slot, arrays));
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
        return Err(Error::Internal(format!(
            "input file {shown}: the columns of a read are not aligned (internal error)"
        )));
    }
    Ok(arrays)
}

/// What every task of a read shares.
struct Task<'a> {
    target: &'a Target<'a>,
    bounds: Option<&'a Bounds>,
    buckets: usize,
    days: usize,
    per_ms: i64,
    tz_aware: bool,
    sender_values: &'a BTreeMap<String, String>,
}

impl Task<'_> {
    /// Classifies and encodes rows `rows` of chunk `c` (the first is row
    /// `r0` of the read): the hot loop.
    fn run(
        &self,
        arrays: &ReadArrays<'_>,
        c: usize,
        rows: std::ops::Range<usize>,
        r0: usize,
    ) -> TaskRows {
        let Target {
            clock,
            days: (first, last),
            shard,
            keep,
        } = *self.target;
        let bounds = self.bounds;
        let k = self.buckets;
        let mut out = TaskRows::new(k, self.days);
        if k == 1 {
            out.buckets[0].0.reserve(rows.len() * 64);
        }
        let key_arrays: [Option<&Utf8ViewArray>; 5] =
            std::array::from_fn(|j| arrays.keys[j].as_ref().map(|a| a[c]));
        let sender_a = arrays.sender[c];
        let peer_a = arrays.peer.as_ref().map(|a| a[c]);
        let ts_a = arrays.ts[c];
        let flag_a: Vec<(usize, &BooleanArray)> =
            arrays.flags.iter().map(|(s, a)| (*s, a[c])).collect();
        let mut senders = SenderCodes::new(self.sender_values);
        let mut vals: [Option<&str>; 5] = [None; 5];
        for (j, i) in rows.zip(r0..) {
            let raw = ts_a.get(j);
            let time = raw.and_then(|v| clock.row_time(v, self.per_ms, self.tz_aware));
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
            let row = RowValues {
                shop: vals[0],
                buyer: vals[1],
                raw_ts: raw,
                time,
                sender: sender_a.get(j),
            };
            let (utc, d, code) = match classify(&row, &mut senders) {
                Outcome::Bad(why) => {
                    out.bad(i, why, &row, first);
                    continue;
                }
                Outcome::Kept { utc, day, sender } => (utc, day, sender),
            };
            out.rows_read += 1;
            out.per_day[(d - first) as usize] += 1;
            if !keep {
                continue;
            }
            let mut values = [None; 4];
            for (slot, a) in &flag_a {
                values[*slot] = a.get(j);
            }
            let f = flags(values, peer_a.and_then(|p| p.get(j)));
            let b = match bounds {
                Some(bounds) if k > 1 => bounds.bucket_of(vals[0].unwrap_or("").as_bytes()),
                _ => 0,
            };
            let (buf, rows) = &mut out.buckets[b];
            *rows += 1;
            encode_row(buf, utc, code, f, &vals);
        }
        out
    }
}

/// The tasks' results, in input order: counts, bad-row examples (named by
/// their file row, from `row_numbers` when there is one), then the encoded
/// rows into `store`, which spills if over its budget.
fn gather(
    results: Vec<TaskRows>,
    shown: &str,
    store: &mut BucketStore,
    stats: &mut LoadStats,
    read_per_day: &mut [u64],
    side: &mut SideCounts,
    row_numbers: &dyn Fn() -> Result<Vec<u32>>,
) -> Result<()> {
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
