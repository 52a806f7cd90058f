//! The message table (SPEC §1): find the files, read the columns and days a
//! run needs, map names and values, drop bad and duplicate rows, and hand the
//! engine one thread-ordered, integer-coded [`Messages`](crate::model::Messages)
//! table.
//!
//! Parquet is read with polars' lazy scan, one file at a time (files may have
//! different schemas: some lack optional columns, some store ids as
//! integers), with projection and a `ts` range predicate pushed into the
//! scan so that row groups outside the run's days are skipped. Everything
//! after the scan is plain Rust over integer columns.
//!
//! The stages, in the order a row goes through them:
//!
//! 1. [`discover`]: the Parquet files of `--input`, in path order.
//! 2. `plan` and `clock`: per file, the lazy scan with its columns, the `ts`
//!    predicate and the reads in whole row groups; the local clock that
//!    gives a `ts` its local day and time of day.
//! 3. `read`, `classify` and `codec`: a read's rows, classified one by one
//!    (bad, outside the days or the shard, kept with its sender and flags),
//!    the kept ones encoded compactly into their shop bucket (`bounds`
//!    decides the buckets from the first read).
//! 4. `buckets`: the buckets in memory or spilled, the [`MemoryPlan`] that
//!    sizes them, and [`Loaded`], what a read hands the job; `schedule` (with
//!    `spill`) builds the buckets on the cores, the largest first.
//! 5. `threads` (with `large_shop`): a bucket's rows de-duplicated, the
//!    non-consumer rows dropped, threads coded and ordered: the engine's
//!    table.
//!
//! [`scan`] (and [`load`], everything in one bucket) runs stages 2 to 4; a
//! bucket's build runs stage 5.

mod bounds;
mod buckets;
mod classify;
mod clock;
mod codec;
mod discover;
mod large_shop;
mod plan;
mod read;
mod scan;
mod schedule;
mod spill;
mod threads;

pub use buckets::{BucketCounts, BucketRows, Built, Loaded, MemoryPlan, BYTES_PER_BUCKET_ROW};
pub use discover::discover;
pub use scan::{load, scan, DayBefore, DayRange, ScanOptions};
pub use schedule::schedule_buckets;
