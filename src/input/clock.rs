//! Stage 2: the local clock, which gives a row's `ts` its local day and time
//! of day in the rule file's time zone, fast.

use chrono::{DateTime, Offset, TimeZone};
use chrono_tz::Tz;

use crate::model::{local_day_tod, local_to_utc, MS_PER_DAY, TS_MAX_MS, TS_MIN_MS};

/// Local day and time of day of UTC instants, fast: the UTC offset of every
/// minute of a range, looked up instead of asked of the time-zone database
/// row by row. A minute in which the offset changes (and any instant
/// outside the range) is asked of the database, so the answer is always
/// [`local_day_tod`]'s. (This assumes no time zone changes its offset twice
/// within one minute, which none in the database does.)
pub(super) struct LocalClock {
    tz: Tz,
    /// UTC ms of the first minute.
    lo: i64,
    /// Per minute: the offset in ms, or [`LocalClock::MIXED`].
    offsets: Vec<i32>,
}

impl LocalClock {
    const MIXED: i32 = i32::MIN;
    const MINUTE: i64 = 60_000;

    /// A clock for UTC instants in `[lo, hi)` (at most about 400 days are
    /// tabled; instants beyond are still right, only slower).
    pub(super) fn new(tz: Tz, lo: i64, hi: i64) -> LocalClock {
        let lo = lo.div_euclid(Self::MINUTE) * Self::MINUTE;
        let minutes = ((hi - lo).max(0) / Self::MINUTE + 1).min(400 * 1440) as usize;
        let offset = |utc: i64| {
            let dt = DateTime::from_timestamp_millis(utc)
                .expect("in chrono's range")
                .naive_utc();
            tz.offset_from_utc_datetime(&dt).fix().local_minus_utc() * 1000
        };
        let in_range = |m: i64| DateTime::from_timestamp_millis(m).is_some();
        let offsets = (0..minutes as i64)
            .map(|k| {
                let start = lo + k * Self::MINUTE;
                let end = start + Self::MINUTE - 1;
                if !in_range(start) || !in_range(end) {
                    return Self::MIXED;
                }
                let a = offset(start);
                if a == offset(end) {
                    a
                } else {
                    Self::MIXED
                }
            })
            .collect();
        LocalClock { tz, lo, offsets }
    }

    /// A stored `ts` value (`per_ms` units a millisecond; naive ones are
    /// local time) as (UTC ms, local day, local ms after midnight), or
    /// `None` when it lies before 1900 or after 2200.
    #[inline]
    pub(super) fn row_time(
        &self,
        stored: i64,
        per_ms: i64,
        tz_aware: bool,
    ) -> Option<(i64, i32, i32)> {
        let raw = stored.div_euclid(per_ms);
        let utc = if tz_aware {
            raw
        } else {
            local_to_utc(&self.tz, raw)?
        };
        if !(TS_MIN_MS..TS_MAX_MS).contains(&utc) {
            return None;
        }
        let (d, t) = self.day_tod(utc);
        Some((utc, d, t))
    }

    /// Local (day number, ms after midnight) of a UTC instant.
    #[inline]
    pub(super) fn day_tod(&self, utc: i64) -> (i32, i32) {
        let k = (utc - self.lo).div_euclid(Self::MINUTE);
        let off = usize::try_from(k)
            .ok()
            .and_then(|k| self.offsets.get(k))
            .copied()
            .unwrap_or(Self::MIXED);
        if off == Self::MIXED {
            return local_day_tod(&self.tz, utc);
        }
        let local = utc + off as i64;
        (
            local.div_euclid(MS_PER_DAY) as i32,
            local.rem_euclid(MS_PER_DAY) as i32,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::day_number;
    use chrono::NaiveDate;

    /// The minute table gives the time-zone database's answer for every
    /// instant, across daylight-saving changes (whole-hour, half-hour and
    /// odd-offset zones) and outside its range.
    #[test]
    fn local_clock_agrees_with_the_database() {
        let zones: [Tz; 6] = [
            chrono_tz::Asia::Shanghai,
            chrono_tz::America::New_York,
            chrono_tz::Europe::London,
            chrono_tz::Australia::Lord_Howe,
            chrono_tz::Asia::Kathmandu,
            chrono_tz::America::St_Johns,
        ];
        // Spring and autumn changes of 2024 in the northern and southern
        // hemispheres, and 1901-1912 (Shanghai's and Kathmandu's move off
        // local mean time lies around there).
        let spans: [(NaiveDate, i64); 5] = [
            (NaiveDate::from_ymd_opt(2024, 3, 9).unwrap(), 3),
            (NaiveDate::from_ymd_opt(2024, 3, 30).unwrap(), 3),
            (NaiveDate::from_ymd_opt(2024, 10, 26).unwrap(), 10),
            (NaiveDate::from_ymd_opt(1900, 12, 31).unwrap(), 2),
            (NaiveDate::from_ymd_opt(1919, 12, 31).unwrap(), 2),
        ];
        for tz in zones {
            for (start, days) in spans {
                let lo = day_number(start) as i64 * MS_PER_DAY;
                let hi = lo + days * MS_PER_DAY;
                let clock = LocalClock::new(tz, lo, hi);
                // Every 7.3 s across the span, one day either side of it,
                // and every millisecond around each tabled change.
                let mut t = lo - MS_PER_DAY;
                while t < hi + MS_PER_DAY {
                    assert_eq!(clock.day_tod(t), local_day_tod(&tz, t), "{tz} at {t}");
                    t += 7_301;
                }
                for (k, &off) in clock.offsets.iter().enumerate() {
                    if off == LocalClock::MIXED {
                        let m = clock.lo + k as i64 * LocalClock::MINUTE;
                        for t in m - 1000..m + LocalClock::MINUTE + 1000 {
                            assert_eq!(clock.day_tod(t), local_day_tod(&tz, t), "{tz} at {t}");
                        }
                    }
                }
            }
        }
        // Something changed in those spans (the test is not vacuous).
        let ny = LocalClock::new(
            chrono_tz::America::New_York,
            day_number(NaiveDate::from_ymd_opt(2024, 3, 10).unwrap()) as i64 * MS_PER_DAY,
            day_number(NaiveDate::from_ymd_opt(2024, 3, 11).unwrap()) as i64 * MS_PER_DAY,
        );
        let distinct: std::collections::BTreeSet<i32> = ny.offsets.iter().copied().collect();
        assert!(distinct.contains(&(-5 * 3_600_000)) && distinct.contains(&(-4 * 3_600_000)));
    }
}
