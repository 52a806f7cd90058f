//! The scorecard (SPEC §8): sales, after-sales and satisfaction metrics
//! from optional tables beside the message log.
//!
//! - [`money`]: amounts to exact integer fen.
//! - [`tables`]: reading orders, refunds, complaints and ratings (bad rows,
//!   de-duplication, the local days a run needs).
//! - [`index`]: the tables sorted by (day, shop) once per run, and the
//!   rows of one day's shop range.
//! - [`compute`]: one day's metrics from those tables and the day's consult
//!   buyer-days, which the message engine supplies.
//!
//! The module depends on `model`, `rules` (settings types) and
//! `input::discover` only; rules, job and output call into it.

pub mod compute;
pub mod index;
pub mod money;
mod read;
pub mod tables;

pub use compute::{
    alert_fires, missing_tables, value, AlertWhen, ConsultDay, DayIndex, DayResult, NameIds,
    ScoreItem, ScoreKind, ScoreMetric, ScoreRow,
};
pub use index::{DayOrdered, DayRows, ShopRange};
pub use read::LocalTime;
pub use tables::{
    load_complaints, load_orders, load_ratings, load_refunds, table_files, Complaint, LocalDays,
    Order, Rating, Refund, Table, TableSettings, TableStats, Tables,
};

#[cfg(test)]
mod compute_tests;
#[cfg(test)]
mod tables_tests;
