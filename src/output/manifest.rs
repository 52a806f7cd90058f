//! A partition's manifest (`_manifest.json`, or the shard's): what made the
//! partition, written after its data file and removed before the data file
//! is replaced, so that its presence means the partition is whole (see
//! [`super::is_committed`]).
//!
//! Every manifest has the common fields of [`Manifest`]; the rest depends on
//! the table ([`Facts`]). The keys are written sorted (the JSON goes through
//! a `serde_json::Value`, whose maps are sorted), whatever the order of the
//! fields here.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use chrono::NaiveDate;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::partition::partition_dir;
use crate::error::{Error, Result};
use crate::rules::{Metric, RuleSet};
use crate::shard::Shard;

/// One partition's manifest.
#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    pub kefu_version: &'static str,
    /// `I/N` (`0/1` unsharded).
    pub shard: String,
    pub table: String,
    pub platform: String,
    pub dt: String,
    /// Rows of the partition's data file.
    pub rows: usize,
    #[serde(flatten)]
    pub facts: Facts,
}

/// What a manifest says beyond the common fields, by table.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Facts {
    /// `shop_daily`, `agent_daily`, `items`: the day's rules and read.
    Daily(DailyFacts),
    /// `shop_rolling`.
    Rolling(RollingFacts),
    /// `alerts`.
    Alerts(AlertFacts),
    /// A daily table the run did not write (`items` under `--no-items`):
    /// its data file was removed, and the manifest says why.
    Omitted(OmittedFacts),
}

/// The manifest of a daily table: which rules computed the day from which
/// input, and whether its next day's messages were there.
#[derive(Debug, Clone, Serialize)]
pub struct DailyFacts {
    pub rules_source: String,
    pub rules_hash: String,
    /// `--rules-as-of`, or null.
    pub rules_as_of: Option<String>,
    pub rule_versions: Vec<String>,
    pub input_files: Vec<InputFile>,
    pub rows_read: u64,
    pub bad_rows: u64,
    pub duplicates: u64,
    pub rows_on_day: u64,
    pub rows_on_next_day: u64,
    /// The next day had no messages: the run that computes it recomputes
    /// this day first.
    pub provisional: bool,
    /// Scorecard metrics in force that were skipped, their tables not
    /// given (SPEC §8.2); absent when none was.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped_metrics: Vec<String>,
}

/// The manifest of a daily table's partition the run removed instead of
/// writing: the day's facts, and why (`"omitted": "--no-items"`), so that a
/// reader sees why the partition has no data file.
#[derive(Debug, Clone, Serialize)]
pub struct OmittedFacts {
    pub omitted: &'static str,
    #[serde(flatten)]
    pub daily: DailyFacts,
}

/// One input file of a day's read.
#[derive(Debug, Clone, Serialize)]
pub struct InputFile {
    pub path: String,
    pub rows_read: u64,
}

/// The manifest of `shop_rolling`: its windows, and which of their days
/// were provisional.
#[derive(Debug, Clone, Serialize)]
pub struct RollingFacts {
    pub rules_source: String,
    pub rules_hash: String,
    pub windows: Vec<WindowFact>,
    pub provisional_days: Vec<String>,
    /// Some window day was provisional.
    pub provisional: bool,
}

/// One metric's window.
#[derive(Debug, Clone, Serialize)]
pub struct WindowFact {
    pub metric: String,
    pub window_days: u32,
}

/// The manifest of `alerts`.
#[derive(Debug, Clone, Serialize)]
pub struct AlertFacts {
    pub rules_hash: String,
    /// The day's `shop_daily` is provisional.
    pub provisional: bool,
}

/// A stable hash of what decides a day's numbers: the SHA-256, in hex, of
/// the input settings' canonical text followed by each metric version's in
/// force, in rule-file order (`InputSettings::canonical` and
/// `Metric::canonical` document the text; it depends on no `Debug` output,
/// so a dependency upgrade cannot change it).
pub fn rules_hash(rules: &RuleSet, metrics: &[&Metric]) -> String {
    let mut h = Sha256::new();
    h.update(rules.input.canonical().as_bytes());
    for m in metrics {
        h.update(m.canonical().as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `manifest` into the partition folder, atomically, as the
/// partition's `_manifest.json` (or the shard's). Its name starts with `_`,
/// so Hive-style readers (and kefu's own input scan) skip it.
pub fn commit_manifest(
    out: &Path,
    table: &str,
    platform: &str,
    day: NaiveDate,
    shard: Shard,
    manifest: &Manifest,
) -> Result<()> {
    let dir = partition_dir(out, table, platform, day);
    let path = dir.join(shard.manifest_file());
    let staged = dir.join(format!(
        ".{}.{}.tmp",
        shard.manifest_file(),
        std::process::id()
    ));
    let io = |e: std::io::Error| Error::Io(format!("cannot write {}: {e}", path.display()));
    // Through a `Value`: its keys are sorted.
    let value = serde_json::to_value(manifest).expect("a manifest serialises");
    let text = serde_json::to_string_pretty(&value).expect("a JSON value serialises");
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

/// Removes `table`'s manifest of `day` (if any), before its partition is
/// rewritten (see [`super::is_committed`]).
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

/// The `provisional` flag of a partition's manifest (false when the key is
/// missing or not a boolean), or None when there is no manifest or it is
/// not JSON.
pub fn read_provisional(
    out: &Path,
    table: &str,
    platform: &str,
    day: NaiveDate,
    shard: Shard,
) -> Option<bool> {
    let path = partition_dir(out, table, platform, day).join(shard.manifest_file());
    let text = fs::read_to_string(path).ok()?;
    let manifest: serde_json::Value = serde_json::from_str(&text).ok()?;
    Some(
        manifest
            .get("provisional")
            .and_then(|v| v.as_bool())
            .unwrap_or(false),
    )
}
