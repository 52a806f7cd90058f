-- Pinduoduo shop_daily for one local day, written as a user would write it
-- by hand in DuckDB: no kefu code, plain SQL with window functions.
--
-- It reproduces `kefu run --platform pdd --date DAY` (SPEC §1-§4, presets in
-- force on DAY >= 2023-04-27):
--   pdd.manual_reply_rate_3m  unit buyer, rate, 180 s, any_miss, 08:00-23:00, manual
--   pdd.answer_rate_30s       unit message, rate, 30 s, 08:00-23:00, manual
--   pdd.avg_manual_response   unit message, mean latency (ms summed), unreplied excluded
--
-- Placeholders, substituted by run_duckdb.py (plain text replacement):
--   ${INPUT}  path of the Parquet message table
--   ${DAY}    the local day, YYYY-MM-DD
--
-- Time zone: Asia/Shanghai is UTC+08:00 all year (no daylight saving since
-- 1991), so local time is UTC + 8 h, done in integer milliseconds, as SPEC §1
-- asks ("every comparison and sum is in integer milliseconds"). The input's
-- `ts` is a time-zone-aware (UTC-adjusted) timestamp, as `kefu gen` writes it.

WITH
params AS (
    SELECT
        8 * 3600 * 1000                               AS tz_offset_ms,  -- Asia/Shanghai
        86400000                                      AS ms_per_day,
        (DATE '${DAY}' - DATE '1970-01-01')           AS day_no,        -- local day number D
        8  * 3600 * 1000                              AS hours_from_ms, -- 08:00 inclusive
        23 * 3600 * 1000                              AS hours_to_ms    -- 23:00 exclusive
),

-- §1: read the needed columns. file_row_number is the input order (one file).
-- The ts range [D 00:00, D+2 00:00) local is pushed into the scan: the items
-- of D only ever look at rows of D and D+1 (the horizon), and de-duplication
-- is per local day, so rows of other days cannot change D's numbers.
raw AS (
    SELECT
        shop_id, buyer_id, sender, msg_id, auto, spam, blocked, peer_kind,
        -- truncated (floored) to whole milliseconds. Not epoch_ms(ts): that
        -- rounds to the nearest millisecond.
        epoch_us(ts) // 1000 - CASE WHEN epoch_us(ts) % 1000 < 0 THEN 1 ELSE 0 END
                         AS ts_ms,
        file_row_number  AS rn
    FROM read_parquet('${INPUT}', file_row_number = true)
    WHERE ts >= (TIMESTAMPTZ '${DAY} 00:00:00+08:00')
      AND ts <  (TIMESTAMPTZ '${DAY} 00:00:00+08:00' + INTERVAL 48 HOUR)
),

-- Bad rows (null shop_id / buyer_id / ts, sender outside the four values)
-- are removed before de-duplication. (kefu also counts timestamps before 1900
-- or after 2200 as bad; the ts range above already leaves those out.)
clean AS (
    SELECT
        raw.*,
        (ts_ms + p.tz_offset_ms) // p.ms_per_day AS local_day,
        (ts_ms + p.tz_offset_ms) %  p.ms_per_day AS tod_ms        -- local time of day
    FROM raw, params p
    WHERE shop_id IS NOT NULL
      AND buyer_id IS NOT NULL
      AND ts_ms IS NOT NULL
      AND sender IN ('buyer', 'agent', 'bot', 'system')
),

-- De-duplication: a (shop_id, msg_id) repeated on one local day keeps its
-- first row in input order; a null msg_id is never a duplicate. Then rows
-- with a peer_kind other than 'consumer' (null = consumer) leave everything.
kept AS (
    SELECT *
    FROM clean
    QUALIFY msg_id IS NULL
         OR row_number() OVER (PARTITION BY shop_id, msg_id, local_day ORDER BY rn) = 1
),
consumer AS (
    SELECT
        shop_id, buyer_id, ts_ms, local_day, tod_ms, rn,
        -- inquiry: buyer, not auto, not spam, not blocked (null = false)
        sender = 'buyer' AND NOT coalesce(auto, false)
                         AND NOT coalesce(spam, false)
                         AND NOT coalesce(blocked, false)           AS is_inquiry,
        -- valid reply for the manual responder class: agent, not auto
        sender = 'agent' AND NOT coalesce(auto, false)              AS is_manual_reply,
        -- thread order tie-break: buyer rows before all others
        sender <> 'buyer'                                          AS not_buyer
    FROM kept
    WHERE coalesce(peer_kind, 'consumer') = 'consumer'
),

-- §2: the first valid (manual) reply after each row in thread order
-- (thread = shop_id, buyer_id; ordered by ts, buyer rows first, input order).
-- The thread is ordered by ts first, so the first such reply is the one with
-- the smallest ts among the following rows.
with_reply AS (
    SELECT
        *,
        min(CASE WHEN is_manual_reply THEN ts_ms END) OVER (
            PARTITION BY shop_id, buyer_id
            ORDER BY ts_ms, not_buyer, rn
            ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING
        ) AS reply_ms
    FROM consumer
),

-- The in-hours inquiries of day D with their latency; the horizon: a reply
-- whose local date is after D+1 is not seen (the inquiry is unreplied).
inquiries AS (
    SELECT
        shop_id, buyer_id,
        CASE WHEN (reply_ms + p.tz_offset_ms) // p.ms_per_day <= local_day + 1
             THEN reply_ms - ts_ms
        END AS latency_ms                                          -- null = unreplied
    FROM with_reply, params p
    WHERE is_inquiry
      AND local_day = p.day_no
      AND tod_ms >= p.hours_from_ms
      AND tod_ms <  p.hours_to_ms
),

-- unit buyer, any_miss: a buyer passes when every in-hours inquiry of the
-- day was answered within 180 s (<= passes); unreplied fails.
buyers AS (
    SELECT shop_id, buyer_id, bool_and(coalesce(latency_ms <= 180000, false)) AS passed
    FROM inquiries
    GROUP BY shop_id, buyer_id
),

shop_daily AS (
    SELECT shop_id, 'pdd.manual_reply_rate_3m' AS metric,
           count_if(passed) AS numerator, count(*) AS denominator
    FROM buyers GROUP BY shop_id
  UNION ALL
    -- unit message, rate 30 s, unreplied fails (count_if of only nulls is null)
    SELECT shop_id, 'pdd.answer_rate_30s',
           count_if(coalesce(latency_ms <= 30000, false)), count(*)
    FROM inquiries GROUP BY shop_id
  UNION ALL
    -- unit message, mean latency: numerator = summed ms, unreplied excluded
    SELECT shop_id, 'pdd.avg_manual_response',
           CAST(sum(latency_ms) AS BIGINT), count(latency_ms)
    FROM inquiries GROUP BY shop_id
)

SELECT
    shop_id,
    metric,
    CAST(numerator AS BIGINT)   AS numerator,
    CAST(denominator AS BIGINT) AS denominator,
    CASE WHEN metric = 'pdd.avg_manual_response'
         THEN numerator / denominator / 1000
         ELSE numerator / denominator
    END                         AS value,
    metric || '@' || CASE WHEN metric = 'pdd.manual_reply_rate_3m' THEN '2023-04-27' ELSE '' END
                                AS rule_version
FROM shop_daily
WHERE denominator > 0              -- rows only where the denominator is above zero
ORDER BY shop_id, metric
