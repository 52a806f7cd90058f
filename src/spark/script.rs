//! The script of a run: [`SparkJob`] (what `kefu sql` was asked), the
//! input's columns when it is local, and [`compile_with_columns`], which
//! puts the statements of [`super::sql`] together in order.

use std::collections::BTreeSet;

use chrono::NaiveDate;

use crate::error::{Error, Result};
use crate::rules::RuleSet;
use crate::spark::expr::lit;
use crate::spark::plan::Plan;
use crate::spark::sql::{metric, output, rows, source, threads};

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
    /// Leave the scorecard metrics out (with a `-- skipped:` line each)
    /// instead of refusing the job (`--skip-scorecard`).
    pub skip_scorecard: bool,
}

/// The script for `job`. When the input is a local path, its Parquet schemas
/// are read so that optional columns it lacks become NULL columns; otherwise
/// (e.g. `s3://`, `hdfs://`) every canonical column must exist in the input.
///
/// A job whose rules have scorecard metrics in force is refused (a usage
/// error naming them) unless it says to leave them out: Spark SQL does not
/// compute them, and a script that silently lacked them would write
/// partitions that look complete.
pub fn script(job: &SparkJob) -> Result<String> {
    if !job.skip_scorecard {
        refuse_scorecard(job)?;
    }
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
    let plan = Plan::new(rules, from, to, rules_as_of);
    let (from_no, to_no) = (plan.from_no, plan.to_no);

    let mut s = source::header(rules, platform, from, to, rules_as_of);
    for note in skipped_notes(&plan) {
        s += &format!("-- {note}\n");
    }
    // 1. The input and its rows, as `kefu run` reads them.
    s += &source::source_view(settings, input, columns, &tz, from_no, to_no)?;
    s += &rows::millis_view(settings);
    s += &rows::rows_view(&tz);
    s += &rows::bad_row_check(settings.max_bad_row_share, from_no, to_no);
    s += &rows::kept_view(from_no, to_no);
    // 2. Per row, over its thread: replies, rounds, sessions.
    s += &threads::replies_view(&plan);
    s += &threads::previous_view(&plan);
    s += &threads::events_view(&plan, &tz);
    // 3. Items and daily counts per metric version.
    for (k, m, days) in &plan.used {
        s += &metric::metric_views(*k, m, *days)?;
    }
    // 4. The writes.
    let used: Vec<usize> = plan.used.iter().map(|u| u.0).collect();
    s += &output::daily_write(&used, platform, output);
    s += &output::rolling_write(&plan.rolling, platform, output);
    s += output::release();
    Ok(s)
}

/// One line per scorecard metric version the script leaves out (SPEC §8:
/// they read the orders, refunds, complaints and ratings tables, which
/// only `kefu run` reads): `skipped: <id> (<kind>): …`.
fn skipped_notes(plan: &Plan) -> Vec<String> {
    plan.skipped
        .iter()
        .map(|m| {
            format!(
                "skipped: {} ({}): scorecard kinds are not compiled to Spark SQL; use kefu run",
                m.id,
                m.kind_name()
            )
        })
        .collect()
}

/// The usage error for a job with scorecard metrics in force.
fn refuse_scorecard(job: &SparkJob) -> Result<()> {
    let plan = Plan::new(&job.rules, job.from, job.to, job.rules_as_of);
    let mut names: Vec<String> = plan
        .skipped
        .iter()
        .map(|m| format!("{} ({})", m.id, m.kind_name()))
        .collect();
    names.dedup();
    if names.is_empty() {
        return Ok(());
    }
    Err(Error::Usage(format!(
        "{}: the scorecard metrics in force from {} to {} are not compiled to Spark SQL: {}. \
         They read the orders, refunds, complaints and ratings tables, which only the native \
         engine reads: compute them with `kefu run --orders ... --refunds ... --complaints ... \
         --ratings ...`, and pass --skip-scorecard here to compile the reply metrics alone \
         (the script then names each metric it leaves out)",
        job.platform,
        job.from,
        job.to,
        names.join(", ")
    )))
}

/// The notes of [`skipped_notes`] for `job`, for the command line to show
/// on stderr (the script carries them as comments).
pub fn skipped(job: &SparkJob) -> Vec<String> {
    let plan = Plan::new(&job.rules, job.from, job.to, job.rules_as_of);
    let mut notes = skipped_notes(&plan);
    notes.dedup();
    notes
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
                if m.score.is_some() {
                    let note = format!("-- skipped: {} ({}): scorecard", m.id, m.kind_name());
                    assert!(sql.contains(&note), "{p}: {} not noted", m.id);
                    continue;
                }
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
            // Multi-line SQL: no line as long as a whole statement.
            let longest = sql.lines().map(str::len).max().unwrap_or(0);
            assert!(longest <= 240, "{p}: a line of {longest} characters");
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
