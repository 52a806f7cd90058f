//! The statement builders of the script, one file per stage, in script
//! order: [`source`] (header, session settings, `kefu_src`), [`rows`]
//! (`kefu_ms`, `kefu_rows`, the bad-row check, `kefu_kept`), [`threads`]
//! (`kefu_w1`, `kefu_w2`, `kefu_ev`), [`metric`] (`kefu_i<k>`, `kefu_d<k>`
//! per metric version) and [`output`] (`shop_daily`, `shop_rolling`).
//!
//! Every builder returns its statements as multi-line SQL, each ending with
//! `;` at the end of a line and preceded by its comment lines (`-- ...`):
//! [`crate::spark::connect::statements`] splits the script there.

pub mod metric;
pub mod output;
pub mod rows;
pub mod source;
pub mod threads;
