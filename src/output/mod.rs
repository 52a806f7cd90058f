//! Output tables (SPEC §5): build them from a day's result and commit each
//! partition atomically.
//!
//! - [`tables`]: the frames of `shop_daily`, `agent_daily`, `shop_rolling`
//!   and `alerts`; [`items`]: the `items` rows of a bucket, sorted, merged
//!   with the scorecard's and encoded to Parquet pages (no frame).
//! - [`partition`]: where partitions live, their atomic staged writes (and
//!   the removal of a table the run does not write), the
//!   output directory's checks, lock and spill folder.
//! - [`encode`]: row groups encoded to Parquet pages away from the file
//!   (the writer's dictionary decision taken there), for
//!   [`StagedPartition::write_encoded`].
//! - [`manifest`]: each partition's `_manifest.json`.
//! - [`read`]: committed `shop_daily` partitions read back.
//!
//! The order in which a day's tables are committed is the job's (see
//! `job::commit`).

pub mod encode;
pub mod items;
#[cfg(test)]
mod items_tests;
pub mod manifest;
pub mod partition;
pub mod read;
pub mod tables;

pub use items::{encode_items, ItemSources, NameRanks, ScoreItems};
pub use manifest::{
    commit_manifest, read_provisional, retract_manifest, rules_hash, AlertFacts, DailyFacts, Facts,
    InputFile, Manifest, OmittedFacts, RollingFacts, WindowFact,
};
pub use partition::{
    check_output_dir, commit_partition, is_committed, lock, partition_dir, remove_partition_file,
    remove_stale_spill, remove_stale_staging_all, spill_dir, StagedPartition,
};
pub use read::{read_shop_daily, DailyRow};
pub use tables::{agent_daily, alerts, shop_daily, shop_rolling, value, AlertRow, MetricRow};

/// The tables a day writes.
pub const TABLES: &[&str] = &[
    "shop_daily",
    "agent_daily",
    "items",
    "shop_rolling",
    "alerts",
];
