//! kefu: e-commerce customer-service metrics from chat logs.
//!
//! Data flows one way: [`rules`] (TOML → validated rule set) → [`input`]
//! (Parquet → thread-ordered messages of the run's days) → [`engine`]
//! (items → counts) → [`output`] (tables, atomic partition commits). [`job`]
//! strings them together for one run; the binary only parses flags.

pub mod engine;
pub mod error;
pub mod gen;
pub mod input;
pub mod job;
pub mod model;
pub mod output;
pub mod rules;
pub mod scorecard;
pub mod shard;
pub mod spark;

pub use error::{Error, Result};
