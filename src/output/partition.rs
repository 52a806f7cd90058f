//! Where partitions live and how their data files are written.
//!
//! A partition is one file, `DIR/<table>/platform=P/dt=D/part-0.parquet` (or
//! one file per shard, `part-I-of-N.parquet`, see [`crate::shard`]). It
//! is written to a hidden staging file beside it (`.part-0.parquet.<pid>.tmp`,
//! which Hive-style readers skip), flushed to disk, and renamed over the old
//! file: a rename within a directory is atomic, so a reader sees the old
//! partition or the new one, never a mix, and a failed run leaves the old one.
//!
//! Also here: the output directory's checks, its lock, the spill folder, and
//! the removal of what killed runs left behind.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use polars::io::parquet::write::BatchedWriter;
use polars::prelude::*;

use super::encode::ROW_GROUP_ROWS;
use super::TABLES;
use crate::error::{Error, Result};
use crate::shard::Shard;

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

/// Removes the partition's data file of `shard` (if any), and no other
/// shard's: how a table the run does not write (`items` under `--no-items`)
/// leaves no stale rows. The job retracts the manifest first and writes one
/// saying why after (see `job::commit`).
pub fn remove_partition_file(
    out: &Path,
    table: &str,
    platform: &str,
    day: NaiveDate,
    shard: Shard,
) -> Result<()> {
    let dir = partition_dir(out, table, platform, day);
    let path = dir.join(shard.data_file());
    match fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("remove", &path, &e)),
    }
    fs::create_dir_all(&dir).map_err(|e| io_err("create", &dir, &e))?;
    // Make the removal durable, as a commit's rename is.
    if let Ok(d) = File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

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
    writer: Option<BatchedWriter<Buffered>>,
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
        let staged = self.staged.clone();
        let w = self.writer(df.schema())?;
        let mut offset = 0;
        while offset < df.height() {
            let mut piece = df.slice(offset as i64, ROW_GROUP_ROWS);
            piece.rechunk_mut_par();
            w.write_batch(&piece)
                .map_err(|e| io_err("write", &staged, &e))?;
            offset += ROW_GROUP_ROWS;
        }
        Ok(())
    }

    /// Appends row groups encoded elsewhere ([`super::encode::encode`]):
    /// the same bytes [`StagedPartition::write`] writes of their frame.
    pub fn write_encoded(&mut self, e: super::encode::Encoded) -> Result<()> {
        let staged = self.staged.clone();
        let w = self.writer(&e.schema)?;
        for (rows, pages) in &e.groups {
            w.write_row_group(*rows, pages)
                .map_err(|e| io_err("write", &staged, &e))?;
        }
        Ok(())
    }

    /// The file's Parquet writer, made at the first write (its schema that
    /// of the first frame).
    fn writer(&mut self, schema: &Schema) -> Result<&mut BatchedWriter<Buffered>> {
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
                .batched(schema)
                .map_err(|e| io_err("write", &self.staged, &e))?;
            self.buffer = Some(buffer);
            self.writer = Some(w);
        }
        Ok(self.writer.as_mut().expect("created above"))
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

/// Whether `table`'s partition of `day` is committed whole: its data file
/// and its manifest are there. A rewrite removes the manifest before it
/// replaces the data file and writes the manifest after, so a run killed in
/// between leaves a partition that later runs recompute instead of trust.
pub fn is_committed(out: &Path, table: &str, platform: &str, day: NaiveDate, shard: Shard) -> bool {
    let dir = partition_dir(out, table, platform, day);
    dir.join(shard.data_file()).exists() && dir.join(shard.manifest_file()).exists()
}
