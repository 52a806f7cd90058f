//! Rules → one self-contained Spark SQL script computing `shop_daily` and
//! `shop_rolling` (SPEC §5) for a range of days: the warehouse-scale path of
//! kefu.
//!
//! The script is generated from the validated [`RuleSet`]; nothing in it is
//! written per metric by hand. It mirrors the native pipeline
//! ([`crate::input`] then [`crate::engine`]) step by step:
//!
//! 1. `kefu_src`: the input's columns, remapped (`[input.columns]`), ids cast
//!    to strings, optional columns absent from the input as typed NULLs, and
//!    the input order (`_metadata.file_path`, `_metadata.row_index`).
//! 2. `kefu_rows`: `ts` as UTC milliseconds (floored), the local day and
//!    time of day in the rule file's `timezone`, `sender` mapped
//!    (`[input.sender_values]`), and whether the row is bad.
//! 3. `kefu_kept`: bad rows out, de-duplication per (shop_id, msg_id, local
//!    day) keeping the first in input order, then non-consumer rows out.
//! 4. `kefu_ev`: per row, over the thread (shop_id, buyer_id) in thread
//!    order, the next valid reply of every responder set in use (with its
//!    local day, so the horizon D+1 can be tested), the next bot row, whether
//!    an inquiry opens a round, and the derived session of every
//!    `session_gap` in use.
//! 5. `kefu_i<k>`: the items of metric version `k` on the days it is in
//!    force; `kefu_d<k>`: their numerator and denominator per shop and day.
//! 6. An `INSERT OVERWRITE` of the union (cached as `kefu_daily`) into
//!    `<output>/shop_daily` with dynamic partition overwrite
//!    (`platform=P/dt=D/`).
//! 7. `shop_rolling`: for each run day, every version in force with
//!    `window_days` > 1 sums its id's daily rows over the window. The daily
//!    rows are computed from the first day of the widest window (as `kefu
//!    run` computes the window days it lacks), so steps 1-6 cover those
//!    days too; unlike `kefu run`, committed partitions of those days are
//!    recomputed rather than reused.
//!
//! Limits of the Spark path (see README, "Running at warehouse scale"): no
//! `agent_daily`, `items` or `alerts`; a day on which no metric has a row keeps its old partition
//! (dynamic overwrite replaces only the partitions that receive rows);
//! `_metadata.row_index` needs Spark 3.5 or later; Parquet `TIMESTAMP(NANOS)`
//! columns cannot be read by Spark; a directory input must be flat or
//! Hive-partitioned (Spark's listing), and every file is read (no `dt=`
//! folder skipping); a bad run stops at the bad-row check but does not name
//! example rows.

pub mod connect;

use std::collections::BTreeSet;
use std::fmt::Write as _;

use chrono::NaiveDate;

use crate::error::{Error, Result};
use crate::model::{day_date, day_number, MS_PER_DAY, TS_MAX_MS, TS_MIN_MS};
use crate::rules::{
    EpochUnit, Kind, Metric, Policy, Responders, RuleSet, Unit, Unreplied, CANONICAL_COLUMNS,
};

/// Everything `kefu sql` needs to print a script.
#[derive(Clone, Debug)]
pub struct SparkJob {
    pub rules: RuleSet,
    pub platform: String,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub rules_as_of: Option<NaiveDate>,
    pub input: String,
    pub output: String,
}

/// The script for `job`. When the input is a local path, its Parquet schemas
/// are read so that optional columns it lacks become NULL columns; otherwise
/// (e.g. `s3://`, `hdfs://`) every canonical column must exist in the input.
pub fn script(job: &SparkJob) -> Result<String> {
    let columns = local_columns(&job.input, job.from, job.to)?;
    compile_with_columns(
        &job.rules,
        &job.platform,
        job.from,
        job.to,
        job.rules_as_of,
        &job.input,
        &job.output,
        columns.as_ref(),
    )
}

/// The union of the column names of the input's Parquet files, when the
/// input is a local file, directory or glob; `None` otherwise.
pub fn local_columns(
    input: &str,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Option<BTreeSet<String>>> {
    use polars::prelude::*;
    let local = std::path::Path::new(input).exists()
        || (!input.contains("://") && input.contains(['*', '?', '[']));
    if !local {
        return Ok(None);
    }
    let keep = (
        from.pred_opt().unwrap_or(from),
        to + chrono::Duration::days(2),
    );
    let files = crate::input::discover(input, keep)?;
    let mut names = BTreeSet::new();
    for f in files {
        let shown = f.display().to_string();
        let bad = |e: PolarsError| {
            Error::BadData(format!(
                "input file {shown}: cannot read the Parquet schema: {e}"
            ))
        };
        let path = f.to_str().ok_or_else(|| {
            Error::BadData(format!("input file {shown}: the path is not valid UTF-8"))
        })?;
        let args = ScanArgsParquet {
            hive_options: HiveOptions {
                enabled: Some(false),
                ..Default::default()
            },
            glob: false,
            ..Default::default()
        };
        let mut lf = LazyFrame::scan_parquet(PlRefPath::new(path), args).map_err(bad)?;
        let schema = lf.collect_schema().map_err(bad)?;
        names.extend(schema.iter_names().map(|n| n.to_string()));
    }
    Ok(Some(names))
}

/// The Spark SQL script computing `shop_daily` for every day of
/// `from..=to`, assuming every canonical column (after `[input.columns]`)
/// exists in the input.
pub fn compile(
    rules: &RuleSet,
    platform: &str,
    from: NaiveDate,
    to: NaiveDate,
    rules_as_of: Option<NaiveDate>,
    input: &str,
    output: &str,
) -> Result<String> {
    compile_with_columns(rules, platform, from, to, rules_as_of, input, output, None)
}

/// The location of output `table` and the Spark table name for it: named
/// after the location, so that an existing table of that name (a shared
/// metastore, an earlier run) is this very table.
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

/// A SQL string literal.
fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// A SQL identifier.
fn ident(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}

/// The local wall-clock milliseconds of a UTC-milliseconds expression.
fn local_ms(utc_ms: &str, tz: &str) -> String {
    format!("unix_millis(from_utc_timestamp(timestamp_millis({utc_ms}), {tz}))")
}

/// The local day number (days since 1970-01-01) of a UTC-milliseconds expression.
fn local_day(utc_ms: &str, tz: &str) -> String {
    let l = local_ms(utc_ms, tz);
    format!("CAST(({l} - pmod({l}, 86400000)) div 86400000 AS INT)")
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

/// The row predicate of a valid reply of responder set `r`.
fn valid_reply(r: Responders) -> String {
    let mut parts = Vec::new();
    if r.manual() {
        parts.push("(sender = 'agent' AND NOT auto)");
    }
    if r.assist() {
        parts.push("(sender = 'bot' AND assist)");
    }
    if parts.is_empty() {
        "false".to_string()
    } else {
        format!("({})", parts.join(" OR "))
    }
}

/// Like [`compile`]; `columns`, when known, are the input's column names:
/// optional columns missing there are read as NULL (their defaults apply).
#[allow(clippy::too_many_arguments)]
pub fn compile_with_columns(
    rules: &RuleSet,
    platform: &str,
    from: NaiveDate,
    to: NaiveDate,
    rules_as_of: Option<NaiveDate>,
    input: &str,
    output: &str,
    columns: Option<&BTreeSet<String>>,
) -> Result<String> {
    if to < from {
        return Err(Error::Usage(format!("--to {to} is before --date {from}")));
    }
    let settings = &rules.input;
    let tz = lit(settings.timezone.name());
    let (run_from_no, to_no) = (day_number(from), day_number(to));
    // shop_rolling sums the daily rows of each run day's window: the daily
    // rows are computed from the first day of the widest window in force
    // (as `kefu run` computes, and writes, the window days it lacks).
    let rolling: Vec<(&Metric, (i32, i32))> = rules
        .metrics
        .iter()
        .filter(|m| m.window_days > 1)
        .filter_map(|m| days_of(m, run_from_no, to_no, rules_as_of).map(|d| (m, d)))
        .collect();
    let widest = rolling
        .iter()
        .map(|(m, _)| m.window_days)
        .max()
        .unwrap_or(1);
    let from_no = run_from_no - (widest as i32 - 1);
    let mut s = String::new();
    let w = &mut s;

    // ---- header and session settings
    writeln!(
        w,
        "-- kefu shop_daily for platform {platform}, {from} .. {to}"
    )
    .ok();
    writeln!(
        w,
        "-- Generated by `kefu sql` from {} (do not edit: regenerate).",
        rules.source.replace('\n', " ")
    )
    .ok();
    if let Some(d) = rules_as_of {
        writeln!(
            w,
            "-- Every day uses the rule versions in force on {d} (--rules-as-of)."
        )
        .ok();
    }
    writeln!(
        w,
        "-- Time zone: {}. Reads local days {from} .. {} (the last day is the horizon).",
        settings.timezone.name(),
        to + chrono::Duration::days(1)
    )
    .ok();
    writeln!(w, "SET spark.sql.session.timeZone=UTC;").ok();
    writeln!(w, "SET spark.sql.sources.partitionOverwriteMode=dynamic;").ok();
    writeln!(w, "SET spark.sql.parquet.mergeSchema=true;").ok();
    writeln!(w, "SET spark.sql.parquet.inferTimestampNTZ.enabled=true;").ok();
    writeln!(w).ok();

    // ---- 1. the input, remapped
    let present = |canonical: &str| -> bool {
        columns.is_none_or(|c| c.contains(settings.column(canonical)))
    };
    for required in ["shop_id", "buyer_id", "ts", "sender"] {
        if !present(required) {
            let theirs = settings.column(required);
            return Err(Error::BadData(format!(
                "input {input}: required column `{theirs}`{} is missing (columns present: {})",
                if theirs != required {
                    format!(" (mapped from `{required}`)")
                } else {
                    String::new()
                },
                columns
                    .map(|c| c.iter().cloned().collect::<Vec<_>>().join(", "))
                    .unwrap_or_default()
            )));
        }
    }
    let col = |canonical: &str, ty: &str| -> String {
        if present(canonical) {
            format!(
                "CAST({} AS {ty}) AS {canonical}",
                ident(settings.column(canonical))
            )
        } else {
            format!("CAST(NULL AS {ty}) AS {canonical}")
        }
    };
    let t = ident(settings.column("ts"));
    let ts_expr = match settings.ts_epoch_unit {
        Some(EpochUnit::Seconds) => format!("timestamp_millis(CAST({t} AS BIGINT) * 1000)"),
        Some(EpochUnit::Millis) => format!("timestamp_millis(CAST({t} AS BIGINT))"),
        Some(EpochUnit::Micros) => format!("timestamp_micros(CAST({t} AS BIGINT))"),
        Some(EpochUnit::Nanos) => format!(
            "timestamp_micros((CAST({t} AS BIGINT) - pmod(CAST({t} AS BIGINT), 1000)) div 1000)"
        ),
        // Zoned timestamps are instants; naive ones (timestamp_ntz) are local
        // time in the rule file's time zone (the session time zone is UTC, so
        // the cast keeps the wall clock).
        None => format!(
            "CASE WHEN typeof({t}) = 'timestamp_ntz' THEN to_utc_timestamp(CAST({t} AS TIMESTAMP), {tz}) ELSE CAST({t} AS TIMESTAMP) END"
        ),
    };
    let mut src_cols = vec![
        col("shop_id", "STRING"),
        col("buyer_id", "STRING"),
        format!("{ts_expr} AS ts"),
        col("sender", "STRING"),
    ];
    for c in CANONICAL_COLUMNS {
        match *c {
            "shop_id" | "buyer_id" | "ts" | "sender" => {}
            "auto" | "assist" | "spam" | "blocked" => src_cols.push(col(c, "BOOLEAN")),
            _ => src_cols.push(col(c, "STRING")),
        }
    }
    src_cols.push("_metadata.file_path AS kefu_file".into());
    src_cols.push("_metadata.row_index AS kefu_row".into());
    writeln!(
        w,
        "-- §1 The input, remapped; input order = (file path, row index in the file)."
    )
    .ok();
    // A generous window on the column as stored (local offsets lie within
    // ±14 h; naive values are local), as the native reader's predicate: the
    // scan can skip row groups, and rows far outside the days are not read.
    let lo_ms = (from_no as i64 - 2) * MS_PER_DAY;
    let hi_ms = (to_no as i64 + 1 + 2) * MS_PER_DAY;
    let window = match settings.ts_epoch_unit {
        None => {
            let at = |ms: i64| {
                chrono::DateTime::from_timestamp_millis(ms)
                    .map(|d| d.naive_utc().format("%Y-%m-%d %H:%M:%S").to_string())
                    .unwrap_or_default()
            };
            format!(
                "{t} IS NULL OR ({t} >= TIMESTAMP_NTZ'{}' AND {t} < TIMESTAMP_NTZ'{}')",
                at(lo_ms),
                at(hi_ms)
            )
        }
        Some(unit) => {
            let (lo, hi) = match unit {
                EpochUnit::Seconds => (lo_ms.div_euclid(1000), (hi_ms + 999).div_euclid(1000)),
                EpochUnit::Millis => (lo_ms, hi_ms),
                EpochUnit::Micros => (lo_ms * 1000, hi_ms * 1000),
                EpochUnit::Nanos => (lo_ms * 1_000_000, hi_ms * 1_000_000),
            };
            format!("{t} IS NULL OR (CAST({t} AS BIGINT) >= {lo} AND CAST({t} AS BIGINT) < {hi})")
        }
    };
    writeln!(
        w,
        "CREATE OR REPLACE TEMPORARY VIEW kefu_src AS\nSELECT\n  {}\nFROM parquet.{}\nWHERE {window};\n",
        src_cols.join(",\n  "),
        ident(input)
    )
    .ok();

    // ---- 2. times, sender mapping, bad rows
    let sender_map = if settings.sender_values.is_empty() {
        "sender".to_string()
    } else {
        let arms: Vec<String> = settings
            .sender_values
            .iter()
            .map(|(k, v)| format!("WHEN {} THEN {}", lit(k), lit(v)))
            .collect();
        format!("CASE sender {} ELSE sender END", arms.join(" "))
    };
    writeln!(
        w,
        "-- ts floored to whole ms (1900..2200 or bad); local day and time of day in {}.",
        settings.timezone.name()
    )
    .ok();
    writeln!(w, "CREATE OR REPLACE TEMPORARY VIEW kefu_ms AS\nSELECT shop_id, buyer_id, msg_id, agent_id, peer_kind, session_id,\n  coalesce(auto, false) AS auto, coalesce(assist, false) AS assist,\n  coalesce(spam, false) AS spam, coalesce(blocked, false) AS blocked,\n  kefu_file, kefu_row, {sender_map} AS sender,\n  CASE WHEN unix_millis(ts) >= {TS_MIN_MS} AND unix_millis(ts) < {TS_MAX_MS} THEN unix_millis(ts) END AS ts_ms\nFROM kefu_src;\n").ok();
    let lms = local_ms("ts_ms", &tz);
    writeln!(w, "CREATE OR REPLACE TEMPORARY VIEW kefu_rows AS\nSELECT *,\n  CAST((local_ms - pmod(local_ms, 86400000)) div 86400000 AS INT) AS day,\n  pmod(local_ms, 86400000) AS tod,\n  (shop_id IS NULL OR buyer_id IS NULL OR ts_ms IS NULL OR sender IS NULL\n   OR sender NOT IN ('buyer', 'agent', 'bot', 'system')) AS bad\nFROM (SELECT *, {lms} AS local_ms FROM kefu_ms);\n").ok();
    let (lo_read, hi_read) = (from_no, to_no + 1);
    let share = settings.max_bad_row_share;
    writeln!(w, "-- Bad rows / rows read must not exceed max_bad_row_share = {share} for any day D, counted as\n-- `kefu run` counts them: rows of D and D+1, plus rows whose ts is null or out of range.").ok();
    writeln!(w, "SELECT assert_true(CAST(bad_rows AS DOUBLE) / greatest(rows_read, 1) <= CAST({share:?} AS DOUBLE),\n  concat(CAST(date_add(DATE'1970-01-01', day) AS STRING), ': ', bad_rows, ' of ', rows_read, ' rows read are bad, more than max_bad_row_share = {share}')) AS kefu_bad_row_check\nFROM (\n  SELECT d.day, sum(c.bad_rows) AS bad_rows, sum(c.rows_read) AS rows_read\n  FROM (SELECT explode(sequence({from_no}, {to_no})) AS day) d\n  JOIN (SELECT day, count_if(bad) AS bad_rows, count(*) AS rows_read FROM kefu_rows\n        WHERE ts_ms IS NULL OR day BETWEEN {lo_read} AND {hi_read} GROUP BY day) c\n    ON c.day IS NULL OR c.day = d.day OR c.day = d.day + 1\n  GROUP BY d.day);\n").ok();

    // ---- 3. de-duplication and the peer_kind filter
    writeln!(w, "-- §1 De-duplication per (shop_id, msg_id, local day), first in input order; then consumers only.").ok();
    writeln!(w, "CREATE OR REPLACE TEMPORARY VIEW kefu_kept AS\nSELECT shop_id, buyer_id, ts_ms, day, tod, session_id, kefu_file, kefu_row,\n  sender = 'buyer' AND NOT auto AND NOT spam AND NOT blocked AS inq,\n  CASE WHEN sender = 'buyer' THEN 0 ELSE 1 END AS nb,\n  sender, auto, assist\nFROM (\n  SELECT *, row_number() OVER (PARTITION BY shop_id, msg_id, day ORDER BY kefu_file, kefu_row) AS kefu_dup\n  FROM kefu_rows\n  WHERE NOT bad AND day BETWEEN {lo_read} AND {hi_read})\nWHERE (msg_id IS NULL OR kefu_dup = 1) AND coalesce(peer_kind, 'consumer') = 'consumer';\n").ok();

    // ---- what the metrics in use need
    let used: Vec<(usize, &Metric, (i32, i32))> = rules
        .metrics
        .iter()
        .enumerate()
        .filter_map(|(k, m)| days_of(m, from_no, to_no, rules_as_of).map(|d| (k, m, d)))
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
        .map(|u| u.1.session_gap_ms.unwrap_or(i64::MAX / 4))
        .collect();
    gaps.sort();
    gaps.dedup();
    let bot_only = used.iter().any(|u| u.1.bot_only == Policy::Exclude);

    // ---- 4. thread windows
    let order = "ORDER BY ts_ms, nb, kefu_file, kefu_row";
    let thread = format!("PARTITION BY shop_id, buyer_id {order}");
    let mut w1 = vec!["*".to_string()];
    for r in &sets {
        let b = r.bits();
        w1.push(format!(
            "min(CASE WHEN {} THEN ts_ms END) OVER kefu_after AS r{b}_ts",
            valid_reply(*r)
        ));
    }
    for r in &round_sets {
        let b = r.bits();
        w1.push(format!(
            "count(CASE WHEN {} THEN 1 END) OVER kefu_upto AS r{b}_cum",
            valid_reply(*r)
        ));
    }
    if bot_only {
        w1.push("min(CASE WHEN sender = 'bot' THEN ts_ms END) OVER kefu_after AS bot_ts".into());
    } else {
        w1.push("CAST(NULL AS BIGINT) AS bot_ts".into());
    }
    writeln!(
        w,
        "-- §2 Per row, in thread order: the first valid reply at or after it, per responder set."
    )
    .ok();
    writeln!(w, "CREATE OR REPLACE TEMPORARY VIEW kefu_w1 AS\nSELECT {}\nFROM kefu_kept\nWINDOW kefu_after AS ({thread} ROWS BETWEEN CURRENT ROW AND UNBOUNDED FOLLOWING),\n       kefu_upto AS ({thread} ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW);\n", w1.join(",\n  ")).ok();

    let gap_window = format!("PARTITION BY shop_id, buyer_id, day, session_id IS NULL {order}");
    let mut w2 = vec!["*".to_string()];
    if !round_sets.is_empty() {
        w2.push("last(CASE WHEN inq THEN day END, true) OVER kefu_prior AS pi_day".into());
    }
    for r in &round_sets {
        let b = r.bits();
        w2.push(format!(
            "last(CASE WHEN inq THEN r{b}_cum END, true) OVER kefu_prior AS pi_cum{b}"
        ));
    }
    for g in &gaps {
        w2.push(format!(
            "CASE WHEN session_id IS NULL THEN (lag(ts_ms) OVER kefu_gap IS NULL OR ts_ms - lag(ts_ms) OVER kefu_gap > {g}) END AS new_s{g}"
        ));
    }
    writeln!(w, "-- Rounds: the previous inquiry of the thread; sessions: gap splits among rows without a session_id, per local day.").ok();
    writeln!(w, "CREATE OR REPLACE TEMPORARY VIEW kefu_w2 AS\nSELECT {}\nFROM kefu_w1\nWINDOW kefu_prior AS ({thread} ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING),\n       kefu_gap AS ({gap_window});\n", w2.join(",\n  ")).ok();

    let mut ev = vec!["*".to_string()];
    for r in &sets {
        let b = r.bits();
        ev.push(format!(
            "CASE WHEN r{b}_day <= day + 1 THEN r{b}_ts - ts_ms END AS lat{b}"
        ));
        ev.push(format!(
            "CASE WHEN r{b}_day <= day + 1 THEN r{b}_day END AS rd{b}"
        ));
    }
    for r in &round_sets {
        let b = r.bits();
        ev.push(format!(
            "inq AND (pi_day IS NULL OR pi_day <> day OR r{b}_cum > pi_cum{b}) AS opens{b}"
        ));
    }
    ev.push("coalesce(bot_day <= day + 1, false) AS bot_seen".to_string());
    // The local days of the replies and bot rows found.
    let mut days_of_found = vec!["*".to_string()];
    for r in &sets {
        let b = r.bits();
        days_of_found.push(format!(
            "{} AS r{b}_day",
            local_day(&format!("r{b}_ts"), &tz)
        ));
    }
    days_of_found.push(format!("{} AS bot_day", local_day("bot_ts", &tz)));
    for g in &gaps {
        ev.push(format!(
            "CASE WHEN session_id IS NULL THEN sum(CASE WHEN new_s{g} THEN 1 ELSE 0 END) OVER (PARTITION BY shop_id, buyer_id, day, session_id IS NULL {order} ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) END AS s{g}"
        ));
    }
    writeln!(w, "-- Latency within the horizon (reply on the item's day or the next), round openers, session numbers.").ok();
    writeln!(
        w,
        "CREATE OR REPLACE TEMPORARY VIEW kefu_ev AS\nSELECT {}\nFROM (SELECT {}\n      FROM kefu_w2);\n",
        ev.join(",\n  "),
        days_of_found.join(",\n    ")
    )
    .ok();

    // ---- 5. items and counts per metric version
    let mut parts = Vec::new();
    for (k, m, (lo, hi)) in &used {
        let b = m.responders.bits();
        let hours = format!("tod >= {} AND tod < {}", m.hours.start_ms, m.hours.end_ms);
        let days = format!("day BETWEEN {lo} AND {hi}");
        let thr = m.threshold_ms;
        let failing = match thr {
            Some(t) => format!("(lat{b} IS NULL OR lat{b} > {t})"),
            None => "false".to_string(),
        };
        let ord = "'o1', ts_ms, 'o2', nb, 'o3', kefu_file, 'o4', kefu_row";
        let grouped = |keys: &str, filter: &str, having: &str| -> String {
            format!(
                "SELECT shop_id, day, st.lat AS lat, st.rd AS rd, st.bot AS bot, coalesce(fail_any, false) AS fail_any, coalesce(ffu, false) AS ffu FROM (\n  SELECT shop_id, day,\n    min(named_struct({ord}, 'tod', tod, 'lat', lat{b}, 'rd', rd{b}, 'bot', bot_seen)) AS st,\n    bool_or({failing}) AS fail_any,\n    min(CASE WHEN {failing} THEN named_struct({ord}, 'u', lat{b} IS NULL) END).u AS ffu\n  FROM kefu_ev WHERE {filter}\n  GROUP BY {keys})\nWHERE {having}"
            )
        };
        let items = match m.unit {
            Unit::Message => format!(
                "SELECT shop_id, day, lat{b} AS lat, rd{b} AS rd, bot_seen AS bot, false AS fail_any, false AS ffu\nFROM kefu_ev WHERE inq AND {days} AND {hours}"
            ),
            Unit::Round => format!(
                "SELECT shop_id, day, lat{b} AS lat, rd{b} AS rd, bot_seen AS bot, false AS fail_any, false AS ffu\nFROM kefu_ev WHERE opens{b} AND {days} AND {hours}"
            ),
            Unit::Buyer => grouped(
                "shop_id, buyer_id, day",
                &format!("inq AND {days} AND {hours}"),
                "true",
            ),
            Unit::Session => {
                let g = m.session_gap_ms.unwrap_or(i64::MAX / 4);
                grouped(
                    &format!("shop_id, buyer_id, day, session_id, s{g}"),
                    &format!("inq AND {days}"),
                    &format!("st.tod >= {} AND st.tod < {}", m.hours.start_ms, m.hours.end_ms),
                )
            }
        };
        // Exclusions (rounds and sessions): cross-day reply, bot-only.
        let mut excl = Vec::new();
        if matches!(m.unit, Unit::Round | Unit::Session) {
            if m.cross_day == Policy::Exclude {
                excl.push("(rd IS NOT NULL AND rd <> day)".to_string());
            }
            if m.bot_only == Policy::Exclude {
                excl.push("(lat IS NULL AND bot)".to_string());
            }
        }
        let excl = if excl.is_empty() {
            "false".to_string()
        } else {
            excl.join(" OR ")
        };
        let any_miss =
            m.any_miss && m.kind == Kind::Rate && matches!(m.unit, Unit::Buyer | Unit::Session);
        let (counted, num) = match m.kind {
            Kind::Rate => {
                let t = thr.ok_or_else(|| {
                    Error::Usage(format!("metric {}: a rate needs a threshold", m.id))
                })?;
                let exclude_unreplied = m.unreplied == Unreplied::Exclude;
                if any_miss {
                    (
                        if exclude_unreplied {
                            "NOT (fail_any AND ffu)".to_string()
                        } else {
                            "true".to_string()
                        },
                        "CASE WHEN fail_any THEN 0 ELSE 1 END".to_string(),
                    )
                } else {
                    (
                        if exclude_unreplied {
                            "lat IS NOT NULL".to_string()
                        } else {
                            "true".to_string()
                        },
                        format!("CASE WHEN lat IS NOT NULL AND lat <= {t} THEN 1 ELSE 0 END"),
                    )
                }
            }
            Kind::MeanLatency => {
                let observed = match m.cap_ms {
                    Some(c) => format!("least(lat, {c})"),
                    None => "lat".to_string(),
                };
                match m.unreplied {
                    Unreplied::Millis(ms) => (
                        "true".to_string(),
                        format!("CASE WHEN lat IS NULL THEN {ms} ELSE {observed} END"),
                    ),
                    _ => (
                        "lat IS NOT NULL".to_string(),
                        format!("coalesce({observed}, 0)"),
                    ),
                }
            }
        };
        let value = match m.kind {
            Kind::Rate => "CAST(SUM(num) AS DOUBLE) / CAST(SUM(den) AS DOUBLE)",
            Kind::MeanLatency => "CAST(SUM(num) AS DOUBLE) / CAST(SUM(den) AS DOUBLE) / 1000.0",
        };
        writeln!(
            w,
            "-- {} (unit {}, kind {}, hours {}, responders {}, days {} .. {})",
            m.rule_version(),
            format!("{:?}", m.unit).to_lowercase(),
            match m.kind {
                Kind::Rate => "rate",
                Kind::MeanLatency => "mean_latency",
            },
            m.hours,
            m.responders,
            day_date(*lo),
            day_date(*hi)
        )
        .ok();
        writeln!(
            w,
            "CREATE OR REPLACE TEMPORARY VIEW kefu_i{k} AS\n{items};\n"
        )
        .ok();
        writeln!(w, "CREATE OR REPLACE TEMPORARY VIEW kefu_d{k} AS\nSELECT shop_id, day, {} AS metric, CAST(SUM(num) AS BIGINT) AS numerator, CAST(SUM(den) AS BIGINT) AS denominator,\n  {value} AS value, {} AS rule_version\nFROM (\n  SELECT shop_id, day,\n    CASE WHEN NOT kefu_excl AND {counted} THEN {num} ELSE 0 END AS num,\n    CASE WHEN NOT kefu_excl AND {counted} THEN 1 ELSE 0 END AS den\n  FROM (SELECT *, {excl} AS kefu_excl FROM kefu_i{k}))\nGROUP BY shop_id, day\nHAVING SUM(den) > 0;\n", lit(&m.id), lit(&m.rule_version())).ok();
        parts.push(format!("SELECT * FROM kefu_d{k}"));
    }
    if parts.is_empty() {
        parts.push("SELECT CAST(NULL AS STRING) AS shop_id, 0 AS day, CAST(NULL AS STRING) AS metric, CAST(0 AS BIGINT) AS numerator, CAST(0 AS BIGINT) AS denominator, CAST(0 AS DOUBLE) AS value, CAST(NULL AS STRING) AS rule_version WHERE false".into());
    }

    // ---- 6. output
    // The table is named after its location, so that an existing table of
    // that name (a shared metastore, an earlier run) is this very table:
    // created once, never dropped.
    let (location, table) = output_table(output, "shop_daily");
    writeln!(
        w,
        "-- §5 shop_daily: rows of the days computed replace their partitions (dynamic overwrite)."
    )
    .ok();
    writeln!(
        w,
        "CREATE OR REPLACE TEMPORARY VIEW kefu_shop_daily_rows AS\n{};\n",
        parts.join("\nUNION ALL\n")
    )
    .ok();
    // Computed once, read by both tables.
    writeln!(w, "UNCACHE TABLE IF EXISTS kefu_daily;\nDROP VIEW IF EXISTS kefu_daily;\nCACHE TABLE kefu_daily AS SELECT * FROM kefu_shop_daily_rows;\n").ok();
    writeln!(w, "CREATE TABLE IF NOT EXISTS {table} (shop_id STRING, metric STRING, numerator BIGINT, denominator BIGINT, value DOUBLE, rule_version STRING, platform STRING, dt STRING)\nUSING parquet PARTITIONED BY (platform, dt) LOCATION {};\n", lit(&location)).ok();
    writeln!(w, "INSERT OVERWRITE TABLE {table} PARTITION (platform = {}, dt)\nSELECT shop_id, metric, numerator, denominator, value, rule_version, CAST(date_add(DATE'1970-01-01', day) AS STRING) AS dt\nFROM kefu_daily\nDISTRIBUTE BY dt SORT BY shop_id, metric;", lit(platform)).ok();

    // ---- 7. shop_rolling: per run day, each metric version in force with
    // window_days > 1 sums its id's daily rows over the window (whatever
    // version each window day used); value, rule_version and window_days
    // are those of the version in force on the day.
    if !rolling.is_empty() {
        let parts: Vec<String> = rolling
            .iter()
            .map(|(m, (a, b))| {
                let value = match m.kind {
                    Kind::Rate => "CAST(SUM(r.numerator) AS DOUBLE) / CAST(SUM(r.denominator) AS DOUBLE)",
                    Kind::MeanLatency => "CAST(SUM(r.numerator) AS DOUBLE) / CAST(SUM(r.denominator) AS DOUBLE) / 1000.0",
                };
                format!(
                    "SELECT r.shop_id, d.day, {id} AS metric, CAST(SUM(r.numerator) AS BIGINT) AS numerator,\n  CAST(SUM(r.denominator) AS BIGINT) AS denominator, {value} AS value,\n  {rv} AS rule_version, CAST({wd} AS INT) AS window_days\nFROM kefu_daily r JOIN (SELECT explode(sequence({a}, {b})) AS day) d\n  ON r.metric = {id} AND r.day BETWEEN d.day - {back} AND d.day\nGROUP BY r.shop_id, d.day\nHAVING SUM(r.denominator) > 0",
                    id = lit(&m.id),
                    rv = lit(&m.rule_version()),
                    wd = m.window_days,
                    back = m.window_days - 1,
                )
            })
            .collect();
        let (location, table) = output_table(output, "shop_rolling");
        writeln!(
            w,
            "\n-- §5 shop_rolling: the windows of the run's days, from the daily rows above."
        )
        .ok();
        writeln!(
            w,
            "CREATE OR REPLACE TEMPORARY VIEW kefu_shop_rolling_rows AS\n{};\n",
            parts.join("\nUNION ALL\n")
        )
        .ok();
        writeln!(w, "CREATE TABLE IF NOT EXISTS {table} (shop_id STRING, metric STRING, numerator BIGINT, denominator BIGINT, value DOUBLE, rule_version STRING, window_days INT, platform STRING, dt STRING)\nUSING parquet PARTITIONED BY (platform, dt) LOCATION {};\n", lit(&location)).ok();
        writeln!(w, "INSERT OVERWRITE TABLE {table} PARTITION (platform = {}, dt)\nSELECT shop_id, metric, numerator, denominator, value, rule_version, window_days, CAST(date_add(DATE'1970-01-01', day) AS STRING) AS dt\nFROM kefu_shop_rolling_rows\nDISTRIBUTE BY dt SORT BY shop_id, metric;", lit(platform)).ok();
    }
    writeln!(w, "\nUNCACHE TABLE IF EXISTS kefu_daily;").ok();
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::PLATFORMS;

    #[test]
    fn every_preset_compiles_with_every_metric_and_no_placeholder() {
        let from = NaiveDate::from_ymd_opt(2020, 1, 1).unwrap();
        let to = NaiveDate::from_ymd_opt(2027, 1, 1).unwrap();
        for (p, _) in PLATFORMS {
            let rules = RuleSet::preset(p).unwrap();
            let sql = compile(&rules, p, from, to, None, "/in/x.parquet", "/out").unwrap();
            for m in &rules.metrics {
                assert!(sql.contains(&lit(&m.id)), "{p}: {} missing", m.id);
                assert!(
                    sql.contains(&lit(&m.rule_version())),
                    "{p}: {} missing",
                    m.rule_version()
                );
            }
            for bad in ["${", "{{", "}}", "TODO", "XXX", "{b}", "{k}", "{g}"] {
                assert!(!sql.contains(bad), "{p}: placeholder {bad} in\n{sql}");
            }
            assert!(sql.contains("'/out/shop_daily'"));
            assert!(sql.contains("INSERT OVERWRITE TABLE"));
            // Statements split on `;` at line ends, none empty.
            assert!(sql.trim_end().split(";\n").all(|st| !st.trim().is_empty()));
        }
    }

    #[test]
    fn versions_follow_the_day_or_rules_as_of() {
        let rules = RuleSet::preset("taobao").unwrap();
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let sql = compile(
            &rules,
            "taobao",
            d("2026-03-14"),
            d("2026-03-15"),
            None,
            "i",
            "o",
        )
        .unwrap();
        assert!(sql.contains("taobao.manual_response_rate_3m@2022-01-08"));
        assert!(!sql.contains("taobao.manual_response_rate_3m@2026-03-16"));
        let sql = compile(
            &rules,
            "taobao",
            d("2026-03-14"),
            d("2026-03-15"),
            Some(d("2026-06-01")),
            "i",
            "o",
        )
        .unwrap();
        assert!(!sql.contains("taobao.manual_response_rate_3m@2022-01-08"));
        assert!(sql.contains("taobao.manual_response_rate_3m@2026-03-16"));
    }

    #[test]
    fn missing_optional_columns_become_nulls() {
        let rules = RuleSet::preset("jd").unwrap();
        let cols: BTreeSet<String> = ["shop_id", "buyer_id", "ts", "sender"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let d = NaiveDate::from_ymd_opt(2024, 5, 16).unwrap();
        let sql = compile_with_columns(&rules, "jd", d, d, None, "i", "o", Some(&cols)).unwrap();
        assert!(sql.contains("CAST(NULL AS STRING) AS session_id"));
        assert!(sql.contains("CAST(NULL AS BOOLEAN) AS auto"));
        let cols: BTreeSet<String> = ["shop_id", "ts", "sender"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert!(compile_with_columns(&rules, "jd", d, d, None, "i", "o", Some(&cols)).is_err());
    }
}
