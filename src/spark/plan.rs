//! What a script must compute: the days read and written, the metric
//! versions in force on them, and the per-row columns those versions need
//! (responder sets, round counters, session gaps, bot rows).

use chrono::NaiveDate;

use crate::model::day_number;
use crate::rules::{Metric, Policy, Responders, RuleSet, Unit};

/// The gap of a session metric without `session_gap` (the rules require one;
/// this only keeps the SQL well-formed): no split ever happens.
pub const NO_GAP_MS: i64 = i64::MAX / 4;

/// The metric versions and days of one script.
pub struct Plan<'a> {
    /// First day computed (day number): the first day of the widest
    /// rolling window ending on the first run day.
    pub from_no: i32,
    /// Last run day (day number).
    pub to_no: i32,
    /// `(index in the rule set, version, its days)` of every version that
    /// computes on some day of `from_no..=to_no`.
    pub used: Vec<(usize, &'a Metric, (i32, i32))>,
    /// The versions with `window_days` > 1 in force on the run days, with
    /// those days: their windows make `shop_rolling`.
    pub rolling: Vec<(&'a Metric, (i32, i32))>,
    /// The distinct responder sets of `used`.
    pub sets: Vec<Responders>,
    /// The distinct responder sets of the round metrics of `used`.
    pub round_sets: Vec<Responders>,
    /// The distinct session gaps (ms) of the session metrics of `used`.
    pub gaps: Vec<i64>,
    /// Whether a version of `used` excludes bot-only items (needs the next bot row).
    pub bot_only: bool,
    /// The scorecard versions (SPEC §8) that would compute on some day:
    /// not compiled (they read tables the script does not), only noted.
    pub skipped: Vec<&'a Metric>,
}

impl<'a> Plan<'a> {
    pub fn new(
        rules: &'a RuleSet,
        from: NaiveDate,
        to: NaiveDate,
        rules_as_of: Option<NaiveDate>,
    ) -> Plan<'a> {
        let (run_from_no, to_no) = (day_number(from), day_number(to));
        // shop_rolling sums the daily rows of each run day's window: the daily
        // rows are computed from the first day of the widest window in force
        // (as `kefu run` computes, and writes, the window days it lacks).
        let rolling: Vec<(&Metric, (i32, i32))> = rules
            .metrics
            .iter()
            .filter(|m| m.score.is_none() && m.window_days > 1)
            .filter_map(|m| days_of(m, run_from_no, to_no, rules_as_of).map(|d| (m, d)))
            .collect();
        let widest = rolling
            .iter()
            .map(|(m, _)| m.window_days)
            .max()
            .unwrap_or(1);
        let from_no = run_from_no - (widest as i32 - 1);
        let used: Vec<(usize, &Metric, (i32, i32))> = rules
            .metrics
            .iter()
            .enumerate()
            .filter(|(_, m)| m.score.is_none())
            .filter_map(|(k, m)| days_of(m, from_no, to_no, rules_as_of).map(|d| (k, m, d)))
            .collect();
        let skipped: Vec<&Metric> = rules
            .metrics
            .iter()
            .filter(|m| m.score.is_some())
            .filter(|m| days_of(m, run_from_no, to_no, rules_as_of).is_some())
            .collect();
        let mut sets: Vec<Responders> = used.iter().map(|u| u.1.responders).collect();
        sets.sort();
        sets.dedup();
        let mut round_sets: Vec<Responders> = used
            .iter()
            .filter(|u| u.1.unit == Unit::Round)
            .map(|u| u.1.responders)
            .collect();
        round_sets.sort();
        round_sets.dedup();
        let mut gaps: Vec<i64> = used
            .iter()
            .filter(|u| u.1.unit == Unit::Session)
            .map(|u| session_gap(u.1))
            .collect();
        gaps.sort();
        gaps.dedup();
        let bot_only = used.iter().any(|u| u.1.bot_only == Policy::Exclude);
        Plan {
            from_no,
            to_no,
            used,
            rolling,
            sets,
            round_sets,
            gaps,
            bot_only,
            skipped,
        }
    }
}

/// The session gap (ms) of session metric `m`.
pub fn session_gap(m: &Metric) -> i64 {
    m.session_gap_ms.unwrap_or(NO_GAP_MS)
}

/// The day numbers (inclusive) on which `m` computes, or `None`.
fn days_of(m: &Metric, from: i32, to: i32, rules_as_of: Option<NaiveDate>) -> Option<(i32, i32)> {
    match rules_as_of {
        Some(d) => m.in_force(d).then_some((from, to)),
        None => {
            let lo = m.effective_from.map_or(from, |f| from.max(day_number(f)));
            let hi = m.effective_to.map_or(to, |t| to.min(day_number(t)));
            (lo <= hi).then_some((lo, hi))
        }
    }
}
