//! Reading a rule file: the raw TOML shapes, [`parse`] and [`RuleError`].
//!
//! `toml` + serde turn the text into the `Raw*` structs below (every field
//! optional and spanned, unknown keys rejected); [`parse`] then checks the
//! input settings here and hands each `[[metric]]` to `validate`.

use std::collections::BTreeMap;
use std::ops::Range;

use chrono_tz::Tz;
use serde::Deserialize;
use toml::Spanned;

use super::validate::{check_versions, validate_metric};
use super::{EpochUnit, InputSettings, RuleSet, CANONICAL_COLUMNS};

/// A rule file that cannot be used: file, line (when known) and what is wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}", self.render())]
pub struct RuleError {
    pub file: String,
    pub line: Option<usize>,
    pub message: String,
}

impl RuleError {
    pub(super) fn new(file: &str, line: Option<usize>, message: String) -> RuleError {
        RuleError {
            file: file.to_string(),
            line,
            message,
        }
    }
    fn render(&self) -> String {
        match self.line {
            Some(l) => format!("rule file {}, line {}: {}", self.file, l, self.message),
            None => format!("rule file {}: {}", self.file, self.message),
        }
    }
}

// Raw TOML shapes. Every field is optional and spanned so that validation can
// point at the line; `deny_unknown_fields` rejects unknown keys.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    timezone: Option<Spanned<String>>,
    max_bad_row_share: Option<Spanned<f64>>,
    input: Option<RawInput>,
    orders: Option<RawColumnsOnly>,
    refunds: Option<RawRefunds>,
    complaints: Option<RawColumnsOnly>,
    ratings: Option<RawRatings>,
    pub(super) metric: Option<Vec<Spanned<RawMetric>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInput {
    ts_epoch_unit: Option<Spanned<String>>,
    columns: Option<BTreeMap<String, Spanned<String>>>,
    sender_values: Option<BTreeMap<String, Spanned<String>>>,
}

/// `[orders]` and `[complaints]`: only `columns`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawColumnsOnly {
    columns: Option<BTreeMap<String, Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRefunds {
    columns: Option<BTreeMap<String, Spanned<String>>>,
    status_values: Option<BTreeMap<String, Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRatings {
    columns: Option<BTreeMap<String, Spanned<String>>>,
    score_values: Option<BTreeMap<String, Spanned<i64>>>,
}

/// The canonical columns of each scorecard table (SPEC §8.1), required
/// then optional: what `[<table>.columns]` may name.
pub const TABLE_COLUMNS: &[(&str, &[&str])] = &[
    (
        "orders",
        &[
            "shop_id", "buyer_id", "order_id", "amount", "paid_ts", "items", "grouped",
        ],
    ),
    (
        "refunds",
        &[
            "shop_id",
            "order_id",
            "requested_ts",
            "status",
            "finished_ts",
            "refund_id",
            "platform_judged",
            "merchant_liable",
        ],
    ),
    ("complaints", &["shop_id", "buyer_id", "ts", "agent_id"]),
    (
        "ratings",
        &["shop_id", "buyer_id", "ts", "score", "agent_id", "resolved"],
    ),
];

/// One `[[metric]]` as written; `validate` turns it into a `Metric`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetric {
    pub(super) id: Option<Spanned<String>>,
    pub(super) unit: Option<Spanned<String>>,
    pub(super) kind: Option<Spanned<String>>,
    pub(super) threshold: Option<Spanned<i64>>,
    pub(super) any_miss: Option<Spanned<bool>>,
    pub(super) hours: Option<Spanned<String>>,
    pub(super) responders: Option<Spanned<Vec<String>>>,
    pub(super) cross_day: Option<Spanned<String>>,
    pub(super) bot_only: Option<Spanned<String>>,
    pub(super) cap: Option<Spanned<i64>>,
    pub(super) unreplied: Option<Spanned<toml::Value>>,
    pub(super) window_days: Option<Spanned<i64>>,
    pub(super) session_gap: Option<Spanned<i64>>,
    pub(super) min_denominator: Option<Spanned<i64>>,
    pub(super) target: Option<Spanned<toml::Value>>,
    pub(super) alert: Option<Spanned<String>>,
    pub(super) effective_from: Option<Spanned<toml::Value>>,
    pub(super) effective_to: Option<Spanned<toml::Value>>,
    pub(super) alert_when: Option<Spanned<String>>,
    pub(super) scores: Option<Spanned<Vec<i64>>>,
    pub(super) resolved_only: Option<Spanned<bool>>,
}

/// Maps byte offsets to 1-based line numbers.
pub(super) struct Lines<'a>(&'a str);

impl Lines<'_> {
    pub(super) fn line(&self, offset: usize) -> usize {
        self.0.as_bytes()[..offset.min(self.0.len())]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }
}

/// Parses and validates a rule file's text. `source` names it in errors.
///
/// ```
/// let set = kefu::rules::parse(
///     r#"
/// timezone = "Asia/Shanghai"
/// [[metric]]
/// id = "jd.first_response_rate_30s"
/// unit = "session"
/// kind = "rate"
/// threshold = 30
/// hours = "09:00-23:00"
/// responders = ["manual"]
/// session_gap = 600
/// "#,
///     "jd.toml",
/// )
/// .unwrap();
/// let m = &set.metrics[0];
/// assert_eq!(m.threshold_ms, Some(30_000));
/// assert!(m.hours.contains(9 * 3_600_000) && !m.hours.contains(23 * 3_600_000));
/// assert_eq!(m.rule_version(), "jd.first_response_rate_30s@");
///
/// let err = kefu::rules::parse("[[metric]]\nid = \"x\"\nunit = \"round\"\n", "bad.toml").unwrap_err();
/// assert_eq!(err.to_string(), "rule file bad.toml, line 1: metric `x`: `kind` is required");
/// ```
pub fn parse(text: &str, source: &str) -> Result<RuleSet, RuleError> {
    let lines = Lines(text);
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| lines.line(s.start));
        RuleError::new(source, line, e.message().to_string())
    })?;
    let input = input_settings(&raw, &lines, source)?;
    let mut metrics = Vec::new();
    for m in raw.metric.iter().flatten() {
        metrics.push(validate_metric(m, &lines, source)?);
    }
    let spans: Vec<Range<usize>> = raw.metric.iter().flatten().map(|m| m.span()).collect();
    check_versions(&metrics, &spans, &lines, source)?;
    Ok(RuleSet {
        source: source.to_string(),
        input,
        metrics,
    })
}

/// The top-level settings and `[input.*]` tables (SPEC §1, §3), checked.
fn input_settings(raw: &RawFile, lines: &Lines, source: &str) -> Result<InputSettings, RuleError> {
    let err =
        |span: Range<usize>, msg: String| RuleError::new(source, Some(lines.line(span.start)), msg);

    let mut input = InputSettings::default();
    if let Some(tz) = &raw.timezone {
        input.timezone = tz.get_ref().parse::<Tz>().map_err(|_| {
            err(
                tz.span(),
                format!(
                    "`timezone`: `{}` is not an IANA time zone name",
                    tz.get_ref()
                ),
            )
        })?;
    }
    if let Some(share) = &raw.max_bad_row_share {
        let v = *share.get_ref();
        if !(0.0..=1.0).contains(&v) {
            return Err(err(
                share.span(),
                format!("`max_bad_row_share` must lie between 0 and 1, not {v}"),
            ));
        }
        input.max_bad_row_share = v;
    }
    if let Some(raw_input) = &raw.input {
        if let Some(u) = &raw_input.ts_epoch_unit {
            input.ts_epoch_unit = Some(match u.get_ref().as_str() {
                "s" => EpochUnit::Seconds,
                "ms" => EpochUnit::Millis,
                "us" => EpochUnit::Micros,
                "ns" => EpochUnit::Nanos,
                other => {
                    return Err(err(
                        u.span(),
                        format!("`[input] ts_epoch_unit`: `{other}` is not one of s, ms, us, ns"),
                    ))
                }
            });
        }
        for (canonical, theirs) in raw_input.columns.iter().flatten() {
            if !CANONICAL_COLUMNS.contains(&canonical.as_str()) {
                return Err(err(
                    theirs.span(),
                    format!(
                        "`[input.columns]`: `{canonical}` is not a column of the message table \
                         (one of: {})",
                        CANONICAL_COLUMNS.join(", ")
                    ),
                ));
            }
            if theirs.get_ref().is_empty() {
                return Err(err(
                    theirs.span(),
                    format!("`[input.columns]`: `{canonical}` maps to an empty name"),
                ));
            }
            input
                .columns
                .insert(canonical.clone(), theirs.get_ref().clone());
        }
        for (theirs, canonical) in raw_input.sender_values.iter().flatten() {
            if !["buyer", "agent", "bot", "system"].contains(&canonical.get_ref().as_str()) {
                return Err(err(
                    canonical.span(),
                    format!(
                        "`[input.sender_values]`: `{theirs}` maps to `{}`, which is not one of \
                         buyer, agent, bot, system",
                        canonical.get_ref()
                    ),
                ));
            }
            input
                .sender_values
                .insert(theirs.clone(), canonical.get_ref().clone());
        }
        no_column_twice("[input.columns]", &input.columns, source)?;
    }
    let tables = [
        (
            "orders",
            raw.orders.as_ref().and_then(|t| t.columns.as_ref()),
        ),
        (
            "refunds",
            raw.refunds.as_ref().and_then(|t| t.columns.as_ref()),
        ),
        (
            "complaints",
            raw.complaints.as_ref().and_then(|t| t.columns.as_ref()),
        ),
        (
            "ratings",
            raw.ratings.as_ref().and_then(|t| t.columns.as_ref()),
        ),
    ];
    for (table, cols) in tables {
        let settings = match table {
            "orders" => &mut input.orders,
            "refunds" => &mut input.refunds,
            "complaints" => &mut input.complaints,
            _ => &mut input.ratings,
        };
        settings.columns = table_columns(table, cols, lines, source)?;
    }
    for (theirs, canonical) in raw
        .refunds
        .as_ref()
        .and_then(|t| t.status_values.as_ref())
        .into_iter()
        .flatten()
    {
        input
            .refunds
            .status_values
            .insert(theirs.clone(), canonical.get_ref().clone());
    }
    for (theirs, score) in raw
        .ratings
        .as_ref()
        .and_then(|t| t.score_values.as_ref())
        .into_iter()
        .flatten()
    {
        let v = *score.get_ref();
        if !(1..=5).contains(&v) {
            return Err(err(
                score.span(),
                format!("`[ratings.score_values]`: `{theirs}` maps to {v}, which is not 1-5"),
            ));
        }
        input.ratings.score_values.insert(theirs.clone(), v as u8);
    }
    Ok(input)
}

/// `[<table>.columns]` of a scorecard table: canonical names of that table
/// (SPEC §8.1), non-empty column names, no column mapped twice.
fn table_columns(
    table: &str,
    raw: Option<&BTreeMap<String, Spanned<String>>>,
    lines: &Lines,
    source: &str,
) -> Result<BTreeMap<String, String>, RuleError> {
    let known = TABLE_COLUMNS
        .iter()
        .find(|(t, _)| *t == table)
        .map(|(_, c)| *c)
        .unwrap_or_default();
    let mut out = BTreeMap::new();
    for (canonical, theirs) in raw.into_iter().flatten() {
        let at = Some(lines.line(theirs.span().start));
        if !known.contains(&canonical.as_str()) {
            return Err(RuleError::new(
                source,
                at,
                format!(
                    "`[{table}.columns]`: `{canonical}` is not a column of the {table} table \
                     (one of: {})",
                    known.join(", ")
                ),
            ));
        }
        if theirs.get_ref().is_empty() {
            return Err(RuleError::new(
                source,
                at,
                format!("`[{table}.columns]`: `{canonical}` maps to an empty name"),
            ));
        }
        out.insert(canonical.clone(), theirs.get_ref().clone());
    }
    no_column_twice(&format!("[{table}.columns]"), &out, source)?;
    Ok(out)
}

/// No column of the files is mapped to two canonical names.
fn no_column_twice(
    what: &str,
    columns: &BTreeMap<String, String>,
    source: &str,
) -> Result<(), RuleError> {
    {
        let mut seen = BTreeMap::new();
        for (canonical, theirs) in columns {
            if let Some(other) = seen.insert(theirs.clone(), canonical.clone()) {
                return Err(RuleError::new(
                    source,
                    None,
                    format!(
                        "`{what}`: input column `{theirs}` is mapped to both `{other}` \
                         and `{canonical}`"
                    ),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{assert_errors, TEST_METRIC as BASE};

    #[test]
    fn errors_name_line_and_key() {
        assert_errors(&[
            (
                &format!("{BASE}colour = \"red\"\n"),
                8,
                "unknown field `colour`",
            ),
            (
                &BASE.replace("threshold = 30", "threshold = \"30\""),
                5,
                "invalid type",
            ),
            ("timezone = \"Mars/Olympus\"\n", 1, "not an IANA time zone"),
            ("max_bad_row_share = 2.0\n", 1, "between 0 and 1"),
            (
                "[input.columns]\nshop = \"x\"\n",
                2,
                "not a column of the message table",
            ),
            (
                "[input.sender_values]\n\"0\" = \"customer\"\n",
                2,
                "not one of buyer, agent, bot, system",
            ),
            (
                "[orders.columns]\npaid = \"x\"\n",
                2,
                "not a column of the orders table",
            ),
            ("[refunds.columns]\namount = \"x\"\n", 2, "refunds table"),
            ("[complaints.columns]\nts = \"\"\n", 2, "empty name"),
            ("[ratings.score_values]\n\"ok\" = 6\n", 2, "not 1-5"),
            (
                "[orders.status_values]\n\"a\" = \"b\"\n",
                1,
                "unknown field",
            ),
            ("[orders]\nrows = 1\n", 2, "unknown field `rows`"),
        ]);
    }

    #[test]
    fn table_settings() {
        let set = super::parse(
            "[orders.columns]\namount = \"pay\"\n[refunds.status_values]\n\"done\" = \"success\"\n\
             [ratings.score_values]\n\"满意\" = 5\n[complaints.columns]\nts = \"t\"\n\
             [ratings.columns]\nscore = \"stars\"\n[refunds.columns]\nstatus = \"st\"\n",
            "r.toml",
        )
        .unwrap();
        let i = &set.input;
        assert_eq!(i.orders.columns["amount"], "pay");
        assert_eq!(i.refunds.status_values["done"], "success");
        assert_eq!(i.refunds.columns["status"], "st");
        assert_eq!(i.ratings.score_values["满意"], 5);
        assert_eq!(i.ratings.columns["score"], "stars");
        assert_eq!(i.complaints.columns["ts"], "t");
        let e = super::parse("[ratings.columns]\nts = \"t\"\nscore = \"t\"\n", "r.toml");
        assert!(e.unwrap_err().message.contains("mapped to both"));
    }
}
