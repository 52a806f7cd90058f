//! The job's errors, each with the exit code a scheduler can act on.

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
    /// A bug in kefu caught before it could hang the run (exit 70,
    /// EX_SOFTWARE).
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
