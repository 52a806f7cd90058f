//! Per row, over its thread (shop_id, buyer_id) in thread order (SPEC §2):
//! the next valid reply of every responder set in use, the next bot row,
//! the round openers, and the derived sessions of every `session_gap` in use.

use crate::spark::expr::{list, local_day, valid_reply};
use crate::spark::plan::Plan;

/// Thread order: time, buyer rows before others at the same instant, then
/// input order.
const ORDER: &str = "ORDER BY ts_ms, nb, kefu_file, kefu_row";

/// `kefu_w1`: per row, the first valid reply at or after it (`r<b>_ts`, per
/// responder set `b`), the count of valid replies up to it (`r<b>_cum`, for
/// rounds) and the first bot row at or after it (`bot_ts`).
pub fn replies_view(plan: &Plan) -> String {
    let mut cols = vec!["*".to_string()];
    for r in &plan.sets {
        let b = r.bits();
        cols.push(format!(
            "min(CASE WHEN {} THEN ts_ms END) OVER kefu_after AS r{b}_ts",
            valid_reply(*r)
        ));
    }
    for r in &plan.round_sets {
        let b = r.bits();
        cols.push(format!(
            "count(CASE WHEN {} THEN 1 END) OVER kefu_upto AS r{b}_cum",
            valid_reply(*r)
        ));
    }
    if plan.bot_only {
        cols.push("min(CASE WHEN sender = 'bot' THEN ts_ms END) OVER kefu_after AS bot_ts".into());
    } else {
        cols.push("CAST(NULL AS BIGINT) AS bot_ts".into());
    }
    let cols = list(&cols, "  ");
    format!(
        r#"-- §2 Per row, in thread order: the first valid reply at or after it, per responder set.
CREATE OR REPLACE TEMPORARY VIEW kefu_w1 AS
SELECT
  {cols}
FROM kefu_kept
WINDOW
  kefu_after AS (
    PARTITION BY shop_id, buyer_id
    {ORDER}
    ROWS BETWEEN CURRENT ROW AND UNBOUNDED FOLLOWING),
  kefu_upto AS (
    PARTITION BY shop_id, buyer_id
    {ORDER}
    ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW);

"#
    )
}

/// `kefu_w2`: for rounds, the day and reply counts of the thread's previous
/// inquiry (`pi_day`, `pi_cum<b>`); for sessions, whether a row without a
/// `session_id` starts a new session under gap `g` (`new_s<g>`).
pub fn previous_view(plan: &Plan) -> String {
    let mut cols = vec!["*".to_string()];
    if !plan.round_sets.is_empty() {
        cols.push("last(CASE WHEN inq THEN day END, true) OVER kefu_prior AS pi_day".into());
    }
    for r in &plan.round_sets {
        let b = r.bits();
        cols.push(format!(
            "last(CASE WHEN inq THEN r{b}_cum END, true) OVER kefu_prior AS pi_cum{b}"
        ));
    }
    for g in &plan.gaps {
        cols.push(format!(
            "CASE WHEN session_id IS NULL\n    THEN (lag(ts_ms) OVER kefu_gap IS NULL OR ts_ms - lag(ts_ms) OVER kefu_gap > {g}) END AS new_s{g}"
        ));
    }
    let cols = list(&cols, "  ");
    format!(
        r#"-- Rounds: the previous inquiry of the thread; sessions: gap splits among rows without a session_id, per local day.
CREATE OR REPLACE TEMPORARY VIEW kefu_w2 AS
SELECT
  {cols}
FROM kefu_w1
WINDOW
  kefu_prior AS (
    PARTITION BY shop_id, buyer_id
    {ORDER}
    ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING),
  kefu_gap AS (
    PARTITION BY shop_id, buyer_id, day, session_id IS NULL
    {ORDER});

"#
    )
}

/// `kefu_ev`: per row, the latency to the next valid reply within the
/// horizon (`lat<b>`: a reply on the row's local day or the next) and that
/// reply's day (`rd<b>`), whether an inquiry opens a round (`opens<b>`),
/// whether a bot row follows within the horizon (`bot_seen`), and the
/// derived session number under gap `g` (`s<g>`). `tz` is the zone as a
/// SQL literal.
pub fn events_view(plan: &Plan, tz: &str) -> String {
    let mut ev = vec!["*".to_string()];
    for r in &plan.sets {
        let b = r.bits();
        ev.push(format!(
            "CASE WHEN r{b}_day <= day + 1 THEN r{b}_ts - ts_ms END AS lat{b}"
        ));
        ev.push(format!(
            "CASE WHEN r{b}_day <= day + 1 THEN r{b}_day END AS rd{b}"
        ));
    }
    for r in &plan.round_sets {
        let b = r.bits();
        ev.push(format!(
            "inq AND (pi_day IS NULL OR pi_day <> day OR r{b}_cum > pi_cum{b}) AS opens{b}"
        ));
    }
    ev.push("coalesce(bot_day <= day + 1, false) AS bot_seen".to_string());
    for g in &plan.gaps {
        ev.push(format!(
            r#"CASE WHEN session_id IS NULL THEN sum(CASE WHEN new_s{g} THEN 1 ELSE 0 END) OVER (
      PARTITION BY shop_id, buyer_id, day, session_id IS NULL
      {ORDER}
      ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) END AS s{g}"#
        ));
    }
    // The local days of the replies and bot rows found.
    let mut days = vec!["*".to_string()];
    for r in &plan.sets {
        let b = r.bits();
        days.push(format!(
            "{} AS r{b}_day",
            local_day(&format!("r{b}_ts"), tz)
        ));
    }
    days.push(format!("{} AS bot_day", local_day("bot_ts", tz)));
    let ev = list(&ev, "  ");
    let days = list(&days, "    ");
    format!(
        r#"-- Latency within the horizon (reply on the item's day or the next), round openers, session numbers.
CREATE OR REPLACE TEMPORARY VIEW kefu_ev AS
SELECT
  {ev}
FROM (
  SELECT
    {days}
  FROM kefu_w2);

"#
    )
}
