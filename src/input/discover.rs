//! Stage 1: finding the input files (SPEC §1): a file, a directory searched
//! recursively, or a glob; `dt=` folders outside the run's days skipped.

use std::path::{Path, PathBuf};

use chrono::NaiveDate;

use crate::error::{Error, Result};

/// The Parquet files of `input` (a file, a directory searched recursively, or
/// a glob), in byte-wise path order. `dt=` folders whose date lies outside
/// `keep` are skipped (SPEC §1).
pub fn discover(input: &str, keep: (NaiveDate, NaiveDate)) -> Result<Vec<PathBuf>> {
    let path = Path::new(input);
    let mut files = Vec::new();
    if path.is_file() {
        files.push(path.to_path_buf());
    } else if path.is_dir() {
        walk(path, keep, &mut files)?;
        if files.is_empty() {
            return Err(Error::NoInput(format!(
                "input directory {input} holds no Parquet files (names ending .parquet or .parq, \
                 not starting with . or _) for the run's days"
            )));
        }
    } else if input.contains(['*', '?', '[']) {
        let entries = glob::glob(input)
            .map_err(|e| Error::Usage(format!("--input {input}: not a valid glob pattern: {e}")))?;
        let mut matched = 0;
        for entry in entries {
            let p = entry.map_err(|e| Error::Io(format!("--input {input}: {e}")))?;
            matched += 1;
            if dt_outside(&p, keep) {
                continue;
            }
            if p.is_dir() {
                walk(&p, keep, &mut files)?;
            } else {
                files.push(p);
            }
        }
        if matched == 0 {
            return Err(Error::NoInput(format!(
                "--input {input}: the glob matches no file"
            )));
        }
    } else {
        return Err(Error::NoInput(format!(
            "--input {input}: no such file or directory"
        )));
    }
    files.sort_by(|a, b| {
        a.as_os_str()
            .as_encoded_bytes()
            .cmp(b.as_os_str().as_encoded_bytes())
    });
    files.dedup();
    Ok(files)
}

/// Adds the Parquet files under `dir` to `out` (names starting with `.` or
/// `_` skipped, and `dt=` folders outside `keep`).
fn walk(dir: &Path, keep: (NaiveDate, NaiveDate), out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        Error::Io(format!(
            "cannot list input directory {}: {e}",
            dir.display()
        ))
    })?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::Io(format!("cannot list {}: {e}", dir.display())))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name.starts_with('_') {
            continue;
        }
        let p = entry.path();
        let ft = entry
            .file_type()
            .map_err(|e| Error::Io(format!("cannot stat {}: {e}", p.display())))?;
        let is_dir = ft.is_dir() || (ft.is_symlink() && p.is_dir());
        if is_dir {
            if !dt_outside(Path::new(name.as_ref()), keep) {
                walk(&p, keep, out)?;
            }
        } else if name.ends_with(".parquet") || name.ends_with(".parq") {
            out.push(p);
        }
    }
    Ok(())
}

/// Whether a path has a `dt=DATE` component with a date outside `keep`.
fn dt_outside(p: &Path, keep: (NaiveDate, NaiveDate)) -> bool {
    p.components().any(|c| {
        let c = c.as_os_str().to_string_lossy();
        let Some(v) = c.strip_prefix("dt=") else {
            return false;
        };
        let d = NaiveDate::parse_from_str(v, "%Y-%m-%d")
            .or_else(|_| NaiveDate::parse_from_str(v, "%Y%m%d"));
        matches!(d, Ok(d) if d < keep.0 || d > keep.1)
    })
}
