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
    pub(super) metric: Option<Vec<Spanned<RawMetric>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInput {
    ts_epoch_unit: Option<Spanned<String>>,
    columns: Option<BTreeMap<String, Spanned<String>>>,
    sender_values: Option<BTreeMap<String, Spanned<String>>>,
}

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
        let mut seen = BTreeMap::new();
        for (canonical, theirs) in &input.columns {
            if let Some(other) = seen.insert(theirs.clone(), canonical.clone()) {
                return Err(RuleError::new(
                    source,
                    None,
                    format!(
                        "`[input.columns]`: input column `{theirs}` is mapped to both `{other}` \
                         and `{canonical}`"
                    ),
                ));
            }
        }
    }
    Ok(input)
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
        ]);
    }
}
