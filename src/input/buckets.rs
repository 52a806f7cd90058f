//! Stage 4: the buckets. A read's kept rows wait, encoded, in buckets of
//! whole shops, in memory or spilled to disk ([`BucketStore`]), sized by the
//! [`MemoryPlan`]; [`Loaded`] is what a read hands the job, and each
//! bucket is taken from it to be built ([`BucketRows::build`], see the
//! `threads` module) anywhere. The order in which buckets are built is the
//! `schedule` module's.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::NaiveDate;
use polars::prelude::PlHashMap;

use crate::error::{Error, Result};
use crate::model::{day_date, day_number, LoadStats, Messages};

use super::clock::LocalClock;
use super::large_shop::PARTITION_MIN_ROWS;
use super::scan::DayBefore;
use super::spill::{self, SpillBatch, SpillWriter};
use super::threads::build;

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

/// A day's rows after the read: counted, checked, and waiting in buckets.
pub struct Loaded {
    /// Totals; duplicates, non-consumer rows and rows per day grow as
    /// buckets are built, and are complete after the last one.
    pub stats: LoadStats,
    pub(super) store: BucketStore,
    pub(super) has_session_column: bool,
    pub(super) clock: Arc<LocalClock>,
    pub(super) first: i32,
    pub(super) last: i32,
    pub(super) per_day: PlHashMap<i32, u64>,
    /// Rows kept by the read per loaded day (before de-duplication and the
    /// peer filter), from the first day.
    pub(super) read_per_day: Vec<u64>,
    pub(super) days_before: Vec<DayBefore>,
    /// The first `shop_id` of every bucket after the first (empty: one
    /// bucket).
    pub(super) bounds: Vec<String>,
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

    /// The shops bucket `k` stands for, `[from, until)` (`None`: unbounded),
    /// whether or not they have rows: the buckets' ranges cover every
    /// shop, in bucket order.
    pub fn bucket_shops(&self, k: usize) -> (Option<&str>, Option<&str>) {
        let from = k.checked_sub(1).and_then(|i| self.bounds.get(i));
        (
            from.map(String::as_str),
            self.bounds.get(k).map(String::as_str),
        )
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
    clock: Arc<LocalClock>,
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

    /// The engine's table of these rows (see the `threads` module). Needs no
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

/// The buckets' encoded rows, as segments of whole rows: in memory until
/// their total passes half the plan's `spill_bytes`, then appended to one
/// file per bucket by a writer thread while the read goes on (so at most
/// about `spill_bytes` wait in memory: one batch being written, one
/// filling).
pub(super) struct BucketStore {
    mem: Vec<Vec<Vec<u8>>>,
    pub(super) rows: Vec<u64>,
    files: Vec<Option<PathBuf>>,
    in_mem: u64,
    spill_bytes: u64,
    spill_dir: Option<PathBuf>,
    direct_spill_above: u64,
    /// File rows the read will go through and has gone through, and bytes
    /// appended so far: the writer's mode is chosen on the projection.
    rows_to_read: u64,
    pub(super) rows_scanned: u64,
    appended: u64,
    /// Bytes handed to the spill writer for files.
    pub(super) spilled: u64,
    writer: Option<SpillWriter>,
    /// The bucket whose segments the writer keeps in memory instead of
    /// spilling (see [`BucketStore::spill_if_over`]), and once it has
    /// finished, those bytes.
    held: Option<usize>,
    held_bytes: Option<Vec<u8>>,
    /// How the spill files were written, once the writer has finished.
    pub(super) mode: spill::Mode,
}

impl BucketStore {
    pub(super) fn new(buckets: usize, plan: &MemoryPlan, rows_to_read: u64) -> BucketStore {
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

    pub(super) fn buckets(&self) -> usize {
        self.mem.len()
    }

    pub(super) fn append(&mut self, k: usize, mut segment: Vec<u8>, rows: u64) {
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
    /// build the largest bucket first (see the `schedule` module), as soon
    /// as the read ends, so its rows are in memory then anyway; read back
    /// from disk, they were what the first builds waited on (most of that
    /// wait first touches of the fresh buffer), and they are the largest
    /// share of the spill.
    pub(super) fn spill_if_over(&mut self) -> Result<()> {
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
    pub(super) fn finish_spill(&mut self) -> Result<()> {
        if let Some(mut w) = self.writer.take() {
            let written = w.finish()?;
            self.mode = written.mode;
            self.held_bytes = written.kept;
        }
        Ok(())
    }

    /// Bucket `k`'s segments, in input order (its spill file is removed
    /// once read).
    pub(super) fn take(&mut self, k: usize) -> Segments {
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
pub(super) enum Segments {
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
    pub(super) fn resolve(self) -> Result<Vec<Vec<u8>>> {
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
