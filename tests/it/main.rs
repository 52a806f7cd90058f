//! kefu's integration tests, one binary (polars is linked once, not once per
//! file). Each module is one area; `common` holds the shared helpers (message
//! tables, running kefu, reading its output) and the naive reference engine.
//!
//! Run one area with `cargo test --release --test it <module>::`.

mod common;

mod buckets;
mod cli_behaviour;
mod differential;
mod faults;
mod gen_determinism;
mod input_and_cli;
mod nightly;
mod progress;
mod properties;
mod realdata;
mod rule_fields;
mod scorecard;
mod scorecard_differential;
mod shard;
mod spec_examples;
mod user_output;
mod user_trips;
