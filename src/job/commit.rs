//! The commit protocol: every table's partition is written through
//! [`commit_table`], in this order:
//!
//! 1. retract the partition's manifest (from here on, a killed run leaves a
//!    partition that later runs recompute instead of trust, see
//!    [`output::is_committed`]);
//! 2. stage the data file beside the partition's (for `items`, staged and
//!    written bucket by bucket while the day is computed, before step 1);
//! 3. rename it over the partition's file (atomic);
//! 4. write the manifest (atomic too).
//!
//! A day's tables are committed `items`, `agent_daily`, then `shop_daily`
//! last ([`commit_day`]): `shop_daily`'s manifest is what later runs consult
//! (is the day there, was it provisional), so it appears only once the
//! day's other daily tables are whole. `shop_rolling` and `alerts`, built
//! from `shop_daily`, come after it.

use chrono::NaiveDate;
use polars::prelude::DataFrame;

use super::RunConfig;
use crate::error::{Error, Result};
use crate::output::{self, DailyFacts, Facts, Manifest, OmittedFacts, StagedPartition};

/// A partition's data, to commit.
pub(super) enum Data<'a> {
    /// A frame in memory: staged, written and renamed in one go.
    Frame(&'a mut DataFrame),
    /// A data file already staged and written (`items`, bucket by bucket),
    /// and its rows (boxed: it is much larger than a reference).
    Staged(Box<StagedPartition>, usize),
    /// No data: the shard's data file is removed (a table the run does not
    /// write, see [`commit_day`]), and the manifest says 0 rows.
    Removed,
}

/// Commits one table's partition for `day`, then its manifest: the common
/// fields (kefu version, shard, table, platform, dt, rows) and `facts`.
pub(super) fn commit_table(
    cfg: &RunConfig,
    table: &str,
    day: NaiveDate,
    data: Data,
    facts: Facts,
) -> Result<()> {
    output::retract_manifest(&cfg.output, table, &cfg.platform, day, cfg.shard)?;
    let rows = match data {
        Data::Frame(df) => {
            output::commit_partition(&cfg.output, table, &cfg.platform, day, cfg.shard, df)?;
            df.height()
        }
        Data::Staged(staged, rows) => {
            (*staged).commit()?;
            rows
        }
        Data::Removed => {
            output::remove_partition_file(&cfg.output, table, &cfg.platform, day, cfg.shard)?;
            0
        }
    };
    let manifest = Manifest {
        kefu_version: env!("CARGO_PKG_VERSION"),
        shard: cfg.shard.to_string(),
        table: table.to_string(),
        platform: cfg.platform.clone(),
        dt: day.to_string(),
        rows,
        facts,
    };
    output::commit_manifest(&cfg.output, table, &cfg.platform, day, cfg.shard, &manifest)
}

/// Commits a day's daily tables, `shop_daily` last (see the module's
/// comment), each with `facts` in its manifest.
///
/// Without `items` (`--no-items`), the day's `items` partition is removed
/// through the same protocol, so that no items of an earlier run of the day
/// survive beside the new `shop_daily`: its manifest is retracted, the
/// shard's data file removed (only this shard's: other shards' files are
/// theirs), then a manifest written with 0 rows and `"omitted":
/// "--no-items"`, so that a reader sees why the partition has no data.
pub(super) fn commit_day(
    cfg: &RunConfig,
    day: NaiveDate,
    items: Option<(StagedPartition, usize)>,
    agent: &mut DataFrame,
    shop: &mut DataFrame,
    facts: DailyFacts,
) -> Result<()> {
    match items {
        Some((staged, rows)) => {
            let data = Data::Staged(Box::new(staged), rows);
            commit_table(cfg, "items", day, data, Facts::Daily(facts.clone()))?;
        }
        None => {
            let omitted = OmittedFacts {
                omitted: "--no-items",
                daily: facts.clone(),
            };
            commit_table(cfg, "items", day, Data::Removed, Facts::Omitted(omitted))?;
        }
    }
    let data = Data::Frame(agent);
    commit_table(cfg, "agent_daily", day, data, Facts::Daily(facts.clone()))?;
    commit_table(
        cfg,
        "shop_daily",
        day,
        Data::Frame(shop),
        Facts::Daily(facts),
    )
}

/// A table's frame could not be built: the frames are in memory, so this
/// is a bug, not a failure a retry may fix.
pub(super) fn build_error(table: &str, day: NaiveDate, e: polars::error::PolarsError) -> Error {
    Error::Internal(format!("cannot build table {table} for {day}: {e}"))
}

/// Whether `day`'s committed `shop_daily` must be recomputed: it was written
/// without its next day's messages, or a run was killed while rewriting it
/// (its data file is there without its manifest).
pub(super) fn is_provisional(cfg: &RunConfig, day: NaiveDate) -> bool {
    match output::read_provisional(&cfg.output, "shop_daily", &cfg.platform, day, cfg.shard) {
        Some(provisional) => provisional,
        None => output::partition_dir(&cfg.output, "shop_daily", &cfg.platform, day)
            .join(cfg.shard.data_file())
            .exists(),
    }
}
