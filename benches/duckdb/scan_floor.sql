-- The scan floor of benches/compare.sh: the least any engine must do for the
-- Pinduoduo day, by DuckDB. It reads the columns kefu reads (those the
-- job's SQL reads, and agent_id for agent_daily) of the same rows (the ts
-- range of pdd_shop_daily.sql: local days D and D+1) and counts rows per
-- shop; `count(col)` of every column keeps each one in the scan (a plain
-- count(*) would read shop_id alone). No de-duplication, no threads, no
-- reply search: what is left is decoding the file and one hash aggregate.
--
-- Placeholders, substituted by run_duckdb.py: ${INPUT}, ${DAY}.
SELECT
    shop_id,
    count(*)          AS rows_read,
    count(buyer_id)   AS buyer_id,
    count(agent_id)   AS agent_id,
    count(sender)     AS sender,
    count(msg_id)     AS msg_id,
    count(auto)       AS auto,
    count(spam)       AS spam,
    count(blocked)    AS blocked,
    count(peer_kind)  AS peer_kind,
    count(ts)         AS ts
FROM read_parquet('${INPUT}')
WHERE ts >= (TIMESTAMPTZ '${DAY} 00:00:00+08:00')
  AND ts <  (TIMESTAMPTZ '${DAY} 00:00:00+08:00' + INTERVAL 48 HOUR)
GROUP BY shop_id
