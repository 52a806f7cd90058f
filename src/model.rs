//! The types every stage shares: the thread-ordered message table the reader
//! hands the engine, who sent a row, day numbers and the local clock. The
//! engine, output and Spark code import these from here, never from the
//! reader.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Offset, TimeZone};
use chrono_tz::Tz;

pub const MS_PER_DAY: i64 = 86_400_000;

/// Who sent a row (SPEC §1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Sender {
    Buyer = 0,
    Agent = 1,
    Bot = 2,
    System = 3,
}

/// Bits of [`Messages::flags`].
pub mod flag {
    pub const AUTO: u8 = 1;
    pub const ASSIST: u8 = 2;
    pub const SPAM: u8 = 4;
    pub const BLOCKED: u8 = 8;
}

/// No value, in the `u32`-coded columns.
pub const NONE: u32 = u32::MAX;

/// Days since 1970-01-01.
pub fn day_number(d: NaiveDate) -> i32 {
    (d - NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days() as i32
}

/// The date of a day number.
pub fn day_date(n: i32) -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch") + chrono::Duration::days(n as i64)
}

/// The consumer rows of the run's days, ordered as SPEC §2 orders a thread:
/// by shop and buyer (the thread), then `ts`, then buyer rows before all
/// others, then input order. Strings are coded as indices into the name
/// tables; only `peer_kind = consumer` rows that survived the bad-row and
/// duplicate checks are here.
#[derive(Debug, Default)]
pub struct Messages {
    pub shop_names: Vec<String>,
    pub buyer_names: Vec<String>,
    /// Index 0 is the empty string (no agent).
    pub agent_names: Vec<String>,
    pub shop: Vec<u32>,
    pub buyer: Vec<u32>,
    /// UTC milliseconds.
    pub ts: Vec<i64>,
    /// Local day number ([`day_number`]).
    pub day: Vec<i32>,
    /// Local milliseconds after midnight.
    pub tod: Vec<i32>,
    pub sender: Vec<Sender>,
    pub flags: Vec<u8>,
    pub agent: Vec<u32>,
    /// Session id code, [`NONE`] for null or when the column is absent.
    pub session: Vec<u32>,
    /// Whether the input had a `session_id` column (else sessions are derived).
    pub has_session_column: bool,
    /// Row ranges of the threads, in order.
    pub threads: Vec<(u32, u32)>,
    pub stats: LoadStats,
}

impl Messages {
    pub fn len(&self) -> usize {
        self.ts.len()
    }
    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }
}

/// What the load saw, for the run summary and the bad-row checks.
#[derive(Debug, Default, Clone)]
pub struct LoadStats {
    pub files: usize,
    /// Rows read (in the loaded days, bad rows included) per input file.
    pub file_rows: Vec<(String, u64)>,
    /// Rows whose local day lies in the loaded days, plus bad rows.
    pub rows_read: u64,
    pub bad_rows: u64,
    /// A few bad rows: "file, row N: reason".
    pub bad_examples: Vec<String>,
    pub duplicates: u64,
    /// Rows left out because `peer_kind` is not `consumer`.
    pub non_consumer: u64,
    /// Rows per loaded local day (after bad rows and duplicates).
    pub rows_per_day: Vec<(NaiveDate, u64)>,
}

/// Bounds on timestamps kept: 1900-01-01 to 2200-01-01 (outside, a row is bad).
pub const TS_MIN_MS: i64 = -2_208_988_800_000;
pub const TS_MAX_MS: i64 = 7_258_118_400_000;

/// Local (day number, ms after midnight) of a UTC instant.
#[inline]
pub fn local_day_tod(tz: &Tz, utc_ms: i64) -> (i32, i32) {
    let dt = DateTime::from_timestamp_millis(utc_ms)
        .expect("in chrono's range")
        .naive_utc();
    let off = tz.offset_from_utc_datetime(&dt).fix().local_minus_utc() as i64 * 1000;
    let local = utc_ms + off;
    (
        (local.div_euclid(MS_PER_DAY)) as i32,
        local.rem_euclid(MS_PER_DAY) as i32,
    )
}

/// The UTC instant of a naive local time in `tz`. An ambiguous time (clocks
/// turned back) is read as the earlier instant; a time that does not exist
/// (clocks turned forward) is read with the offset in force just before the
/// change.
pub fn local_to_utc(tz: &Tz, local_ms: i64) -> Option<i64> {
    let ndt: NaiveDateTime = DateTime::from_timestamp_millis(local_ms)?.naive_utc();
    let off = match tz.offset_from_local_datetime(&ndt) {
        chrono::LocalResult::Single(o) => o.fix(),
        chrono::LocalResult::Ambiguous(a, _) => a.fix(),
        chrono::LocalResult::None => {
            let before = ndt - chrono::Duration::hours(12);
            tz.offset_from_utc_datetime(&before).fix()
        }
    };
    Some(local_ms - off.local_minus_utc() as i64 * 1000)
}

/// Puts `rows` in the order `order` gives (`order[k]`: the row that goes to
/// place `k`), in place, one cycle of swaps at a time (no second copy of a
/// table).
pub fn permute<R>(rows: &mut [R], mut order: Vec<u32>) {
    const DONE: u32 = u32::MAX;
    for i in 0..rows.len() {
        let mut j = i;
        while order[j] != DONE {
            let src = order[j] as usize;
            order[j] = DONE;
            if src == i {
                break;
            }
            rows.swap(j, src);
            j = src;
        }
    }
}
