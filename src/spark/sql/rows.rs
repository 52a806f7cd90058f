//! From the input's columns to the rows the metrics read, as `kefu run`'s
//! reader does (SPEC §1): `ts` in whole UTC milliseconds, the local day and
//! time of day, senders mapped, bad rows flagged and counted against
//! `max_bad_row_share`, then de-duplication and the consumer filter.

use crate::model::{TS_MAX_MS, TS_MIN_MS};
use crate::rules::InputSettings;
use crate::spark::expr::{day_string, lit, local_ms};

/// `kefu_ms`: optional flags defaulted, `sender` mapped
/// (`[input.sender_values]`), `ts` as UTC milliseconds (NULL out of range).
pub fn millis_view(settings: &InputSettings) -> String {
    let zone = settings.timezone.name();
    let sender = if settings.sender_values.is_empty() {
        "sender".to_string()
    } else {
        let arms: String = settings
            .sender_values
            .iter()
            .map(|(k, v)| format!("\n    WHEN {} THEN {}", lit(k), lit(v)))
            .collect();
        format!("CASE sender{arms}\n    ELSE sender END")
    };
    format!(
        r#"-- ts floored to whole ms (1900..2200 or bad); local day and time of day in {zone}.
CREATE OR REPLACE TEMPORARY VIEW kefu_ms AS
SELECT
  shop_id, buyer_id, msg_id, agent_id, peer_kind, session_id,
  coalesce(auto, false) AS auto,
  coalesce(assist, false) AS assist,
  coalesce(spam, false) AS spam,
  coalesce(blocked, false) AS blocked,
  kefu_file, kefu_row,
  {sender} AS sender,
  CASE WHEN unix_millis(ts) >= {TS_MIN_MS} AND unix_millis(ts) < {TS_MAX_MS}
    THEN unix_millis(ts) END AS ts_ms
FROM kefu_src;

"#
    )
}

/// `kefu_rows`: the local day and time of day of every row (`tz` is the
/// zone as a SQL literal), and whether the row is bad.
pub fn rows_view(tz: &str) -> String {
    let lms = local_ms("ts_ms", tz);
    format!(
        r#"CREATE OR REPLACE TEMPORARY VIEW kefu_rows AS
SELECT
  *,
  CAST((local_ms - pmod(local_ms, 86400000)) div 86400000 AS INT) AS day,
  pmod(local_ms, 86400000) AS tod,
  (shop_id IS NULL OR buyer_id IS NULL OR ts_ms IS NULL OR sender IS NULL
   OR sender NOT IN ('buyer', 'agent', 'bot', 'system')) AS bad
FROM (
  SELECT *, {lms} AS local_ms
  FROM kefu_ms);

"#
    )
}

/// The bad-row check: a query failing (`assert_true`) when, for a day of
/// `from_no..=to_no`, bad rows exceed `max_bad_row_share` of the rows read.
pub fn bad_row_check(share: f64, from_no: i32, to_no: i32) -> String {
    let (lo_read, hi_read) = (from_no, to_no + 1);
    let day = day_string("day");
    format!(
        r#"-- Bad rows / rows read must not exceed max_bad_row_share = {share} for any day D, counted as
-- `kefu run` counts them: rows of D and D+1, plus rows whose ts is null or out of range.
SELECT assert_true(
    CAST(bad_rows AS DOUBLE) / greatest(rows_read, 1) <= CAST({share:?} AS DOUBLE),
    concat({day}, ': ', bad_rows, ' of ', rows_read,
      ' rows read are bad, more than max_bad_row_share = {share}')
  ) AS kefu_bad_row_check
FROM (
  SELECT d.day, sum(c.bad_rows) AS bad_rows, sum(c.rows_read) AS rows_read
  FROM (SELECT explode(sequence({from_no}, {to_no})) AS day) d
  JOIN (
    SELECT day, count_if(bad) AS bad_rows, count(*) AS rows_read
    FROM kefu_rows
    WHERE ts_ms IS NULL OR day BETWEEN {lo_read} AND {hi_read}
    GROUP BY day) c
    ON c.day IS NULL OR c.day = d.day OR c.day = d.day + 1
  GROUP BY d.day);

"#
    )
}

/// `kefu_kept`: good rows of the days read (`from_no..=to_no + 1`),
/// de-duplicated per (shop_id, msg_id, local day) keeping the first in input
/// order, consumers only; with `inq` (the row is an inquiry) and `nb` (its
/// rank among rows of the same instant: buyer rows first).
pub fn kept_view(from_no: i32, to_no: i32) -> String {
    let (lo_read, hi_read) = (from_no, to_no + 1);
    format!(
        r#"-- §1 De-duplication per (shop_id, msg_id, local day), first in input order; then consumers only.
CREATE OR REPLACE TEMPORARY VIEW kefu_kept AS
SELECT
  shop_id, buyer_id, ts_ms, day, tod, session_id, kefu_file, kefu_row,
  sender = 'buyer' AND NOT auto AND NOT spam AND NOT blocked AS inq,
  CASE WHEN sender = 'buyer' THEN 0 ELSE 1 END AS nb,
  sender, auto, assist
FROM (
  SELECT
    *,
    row_number() OVER (PARTITION BY shop_id, msg_id, day ORDER BY kefu_file, kefu_row) AS kefu_dup
  FROM kefu_rows
  WHERE NOT bad AND day BETWEEN {lo_read} AND {hi_read})
WHERE (msg_id IS NULL OR kefu_dup = 1)
  AND coalesce(peer_kind, 'consumer') = 'consumer';

"#
    )
}
