-- The scan floor of benches/compare.sh: the least any engine must do for the
-- Pinduoduo day, by DuckDB. It reads the columns kefu reads (those the
-- job's SQL reads, and agent_id for agent_daily) of the same rows (the ts
-- range of pdd_shop_daily.sql: local days D and D+1) and aggregates every
-- value per shop, so that each one is decoded: a plain count(col) would not
-- do, DuckDB answers it from the Parquet statistics (no nulls) without
-- reading the column. No de-duplication, no threads, no reply search: what
-- is left is decoding the file and one hash aggregate.
--
-- Placeholders, substituted by run_duckdb.py: ${INPUT}, ${DAY}.
SELECT
    shop_id,
    count(*)                  AS rows_read,
    sum(length(buyer_id))     AS buyer_id,
    sum(length(agent_id))     AS agent_id,
    sum(length(sender))       AS sender,
    sum(length(msg_id))       AS msg_id,
    count_if(auto)            AS auto,
    count_if(spam)            AS spam,
    count_if(blocked)         AS blocked,
    sum(length(peer_kind))    AS peer_kind,
    max(ts)                   AS ts
FROM read_parquet('${INPUT}')
WHERE ts >= (TIMESTAMPTZ '${DAY} 00:00:00+08:00')
  AND ts <  (TIMESTAMPTZ '${DAY} 00:00:00+08:00' + INTERVAL 48 HOUR)
GROUP BY shop_id
