//! The writes (SPEC §5): the daily rows of every version unioned and cached
//! as `kefu_daily`, an `INSERT OVERWRITE` into `<output>/shop_daily`, and the
//! rolling windows of the run days into `<output>/shop_rolling`, both with
//! dynamic partition overwrite (`platform=P/dt=D/`).

use crate::rules::Metric;
use crate::spark::expr::{day_string, ident, lit, value};

/// The location of output `table` and the Spark table name for it: named
/// after the location, so that an existing table of that name (a shared
/// metastore, an earlier run) is this very table: created once, never
/// dropped.
fn output_table(output: &str, table: &str) -> (String, String) {
    use sha2::Digest;
    let location = format!("{}/{table}", output.trim_end_matches('/'));
    let hash: String = sha2::Sha256::digest(location.as_bytes())
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect();
    let name = ident(&format!("kefu_{table}_{hash}"));
    (location, name)
}

/// The union of the `kefu_d<k>` views of `used` (rule-set indexes) as
/// `kefu_shop_daily_rows`, cached once as `kefu_daily` (both tables read
/// it), then the `shop_daily` table and its overwrite.
pub fn daily_write(used: &[usize], platform: &str, output: &str) -> String {
    let mut parts: Vec<String> = used
        .iter()
        .map(|k| format!("SELECT * FROM kefu_d{k}"))
        .collect();
    if parts.is_empty() {
        parts.push(
            r#"SELECT
  CAST(NULL AS STRING) AS shop_id, 0 AS day, CAST(NULL AS STRING) AS metric,
  CAST(0 AS BIGINT) AS numerator, CAST(0 AS BIGINT) AS denominator,
  CAST(0 AS DOUBLE) AS value, CAST(NULL AS STRING) AS rule_version
WHERE false"#
                .into(),
        );
    }
    let rows = parts.join("\nUNION ALL\n");
    let (location, table) = output_table(output, "shop_daily");
    let location = lit(&location);
    let platform = lit(platform);
    let dt = day_string("day");
    format!(
        r#"-- §5 shop_daily: rows of the days computed replace their partitions (dynamic overwrite).
CREATE OR REPLACE TEMPORARY VIEW kefu_shop_daily_rows AS
{rows};

UNCACHE TABLE IF EXISTS kefu_daily;
DROP VIEW IF EXISTS kefu_daily;
CACHE TABLE kefu_daily AS SELECT * FROM kefu_shop_daily_rows;

CREATE TABLE IF NOT EXISTS {table} (
  shop_id STRING,
  metric STRING,
  numerator BIGINT,
  denominator BIGINT,
  value DOUBLE,
  rule_version STRING,
  platform STRING,
  dt STRING)
USING parquet
PARTITIONED BY (platform, dt)
LOCATION {location};

INSERT OVERWRITE TABLE {table} PARTITION (platform = {platform}, dt)
SELECT
  shop_id, metric, numerator, denominator, value, rule_version,
  {dt} AS dt
FROM kefu_daily
DISTRIBUTE BY dt
SORT BY shop_id, metric;
"#
    )
}

/// `shop_rolling` (empty when no version in force has `window_days` > 1):
/// for each run day `a..=b` of a version, the sums of its id's daily rows
/// over the window (whatever version each window day used); value,
/// rule_version and window_days are those of the version in force on the
/// day. Then the table and its overwrite.
pub fn rolling_write(rolling: &[(&Metric, (i32, i32))], platform: &str, output: &str) -> String {
    if rolling.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = rolling
        .iter()
        .map(|(m, (a, b))| window_query(m, *a, *b))
        .collect();
    let rows = parts.join("\nUNION ALL\n");
    let (location, table) = output_table(output, "shop_rolling");
    let location = lit(&location);
    let platform = lit(platform);
    let dt = day_string("day");
    format!(
        r#"
-- §5 shop_rolling: the windows of the run's days, from the daily rows above.
CREATE OR REPLACE TEMPORARY VIEW kefu_shop_rolling_rows AS
{rows};

CREATE TABLE IF NOT EXISTS {table} (
  shop_id STRING,
  metric STRING,
  numerator BIGINT,
  denominator BIGINT,
  value DOUBLE,
  rule_version STRING,
  window_days INT,
  platform STRING,
  dt STRING)
USING parquet
PARTITIONED BY (platform, dt)
LOCATION {location};

INSERT OVERWRITE TABLE {table} PARTITION (platform = {platform}, dt)
SELECT
  shop_id, metric, numerator, denominator, value, rule_version, window_days,
  {dt} AS dt
FROM kefu_shop_rolling_rows
DISTRIBUTE BY dt
SORT BY shop_id, metric;
"#
    )
}

/// The window rows of version `m` for the run days `a..=b`.
fn window_query(m: &Metric, a: i32, b: i32) -> String {
    let id = lit(&m.id);
    let rv = lit(&m.rule_version());
    let wd = m.window_days;
    let back = m.window_days - 1;
    let value = value(m.kind, "r.numerator", "r.denominator");
    format!(
        r#"SELECT
  r.shop_id, d.day, {id} AS metric,
  CAST(SUM(r.numerator) AS BIGINT) AS numerator,
  CAST(SUM(r.denominator) AS BIGINT) AS denominator,
  {value} AS value,
  {rv} AS rule_version,
  CAST({wd} AS INT) AS window_days
FROM kefu_daily r
JOIN (SELECT explode(sequence({a}, {b})) AS day) d
  ON r.metric = {id} AND r.day BETWEEN d.day - {back} AND d.day
GROUP BY r.shop_id, d.day
HAVING SUM(r.denominator) > 0"#
    )
}

/// The script's last statement: the cached daily rows released.
pub fn release() -> &'static str {
    "\nUNCACHE TABLE IF EXISTS kefu_daily;\n"
}
