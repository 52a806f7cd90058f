//! The job's errors, each with the exit code a scheduler can act on.
//!
//! The mapping, the contract of README's "When things go wrong" (sysexits
//! codes where one fits):
//!
//! | code | variant | whose fault |
//! |---|---|---|
//! | 0 | (success) | |
//! | 1 | (not an error) | `kefu rules diff` found differences, as `diff` exits |
//! | 2 | [`Error::Usage`], and clap's own errors | the command line |
//! | 65 | [`Error::BadData`] | the input's content |
//! | 66 | [`Error::NoInput`] | the input's path |
//! | 70 | [`Error::Internal`] | kefu (a bug): never 65 or 75, a retry or a fixed input would not help |
//! | 75 | [`Error::Io`] | the machine: disk, permissions, a lock; a retry may help |
//! | 78 | [`Error::Rules`] | the rule file |
//!
//! A closed stdout (`kefu sql | head`) is not an error: the binary stops
//! writing and exits 0.

use crate::rules::RuleError;

/// Everything that can stop a run. Messages are one paragraph and name the
/// file, column, row or rule at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad command-line use that clap cannot see (exit 2).
    #[error("{0}")]
    Usage(String),
    /// An invalid rule file (exit 78, EX_CONFIG).
    #[error(transparent)]
    Rules(#[from] RuleError),
    /// The input path does not exist or matches nothing (exit 66, EX_NOINPUT).
    #[error("{0}")]
    NoInput(String),
    /// The input exists but cannot be used: missing columns, wrong types,
    /// corrupt files, too many bad rows (exit 65, EX_DATAERR).
    #[error("{0}")]
    BadData(String),
    /// Reading or writing failed in a way a retry may fix: disk full,
    /// permissions, I/O errors (exit 75, EX_TEMPFAIL).
    #[error("{0}")]
    Io(String),
    /// A bug in kefu caught before it could hang the run, such as a panic
    /// in a worker or a broken invariant (exit 70, EX_SOFTWARE).
    #[error("{0}")]
    Internal(String),
}

impl Error {
    /// The process exit code documented in README ("When things go wrong").
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => 2,
            Error::Rules(_) => 78,
            Error::NoInput(_) => 66,
            Error::BadData(_) => 65,
            Error::Io(_) => 75,
            Error::Internal(_) => 70,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
