//! Rules → one self-contained Spark SQL script computing `shop_daily` and
//! `shop_rolling` (SPEC §5) for a range of days: the warehouse-scale path of
//! kefu.
//!
//! The script is generated from the validated [`RuleSet`](crate::rules::RuleSet); nothing in it is
//! written per metric by hand. It mirrors the native pipeline
//! ([`crate::input`] then [`crate::engine`]) step by step:
//!
//! 1. `kefu_src`: the input's columns, remapped (`[input.columns]`), ids cast
//!    to strings, optional columns absent from the input as typed NULLs, and
//!    the input order (`_metadata.file_path`, `_metadata.row_index`).
//! 2. `kefu_rows`: `ts` as UTC milliseconds (floored), the local day and
//!    time of day in the rule file's `timezone`, `sender` mapped
//!    (`[input.sender_values]`), and whether the row is bad.
//! 3. `kefu_kept`: bad rows out, de-duplication per (shop_id, msg_id, local
//!    day) keeping the first in input order, then non-consumer rows out.
//! 4. `kefu_ev`: per row, over the thread (shop_id, buyer_id) in thread
//!    order, the next valid reply of every responder set in use (with its
//!    local day, so the horizon D+1 can be tested), the next bot row, whether
//!    an inquiry opens a round, and the derived session of every
//!    `session_gap` in use.
//! 5. `kefu_i<k>`: the items of metric version `k` on the days it is in
//!    force; `kefu_d<k>`: their numerator and denominator per shop and day.
//! 6. An `INSERT OVERWRITE` of the union (cached as `kefu_daily`) into
//!    `<output>/shop_daily` with dynamic partition overwrite
//!    (`platform=P/dt=D/`).
//! 7. `shop_rolling`: for each run day, every version in force with
//!    `window_days` > 1 sums its id's daily rows over the window. The daily
//!    rows are computed from the first day of the widest window (as `kefu
//!    run` computes the window days it lacks), so steps 1-6 cover those
//!    days too; unlike `kefu run`, committed partitions of those days are
//!    recomputed rather than reused.
//!
//! Limits of the Spark path (see README, "Running at warehouse scale"): no
//! `agent_daily`, `items` or `alerts`; a day on which no metric has a row keeps its old partition
//! (dynamic overwrite replaces only the partitions that receive rows);
//! `_metadata.row_index` needs Spark 3.5 or later; Parquet `TIMESTAMP(NANOS)`
//! columns cannot be read by Spark; a directory input must be flat or
//! Hive-partitioned (Spark's listing), and every file is read (no `dt=`
//! folder skipping); a bad run stops at the bad-row check but does not name
//! example rows.

//!
//! Layout: `script.rs` puts the statements together from the plan of the
//! run (`plan.rs`: days, versions, the per-row columns they need); `sql/`
//! holds one builder per statement, a file per stage; `expr.rs` the small
//! SQL expression helpers; [`connect`] submits a script over Spark Connect.

pub mod connect;
mod expr;
mod plan;
mod script;
mod sql;

pub use script::{compile, compile_with_columns, local_columns, script, skipped, SparkJob};
