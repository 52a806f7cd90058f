//! One raw `[[metric]]` → a validated [`Metric`], and the checks across the
//! versions of one id (SPEC §3).
//!
//! [`validate_metric`] reads the fields in a fixed order and calls one small
//! function per field or group of fields; the first error found is the one
//! reported, so the order below is part of the behaviour. Whether a field
//! applies to a metric depends on its unit and kind: each function matches on
//! them, so a new kind adds its arms there (and its name to [`Kind::ALL`]).

use std::ops::Range;

use chrono::NaiveDate;
use toml::Spanned;

use super::parse::{Lines, RawMetric, RuleError};
use super::{AlertWhen, Hours, Kind, Metric, Policy, Responders, ScoreKind, Unit, Unreplied};

type Span = Range<usize>;

/// Ten years, in seconds: far beyond any meaningful duration, and it keeps
/// every sum of milliseconds in i64.
const MAX_SECS: i64 = 10 * 366 * 86_400;

/// Validates one `[[metric]]` table.
pub(super) fn validate_metric(
    spanned: &Spanned<RawMetric>,
    lines: &Lines,
    source: &str,
) -> Result<Metric, RuleError> {
    let id = metric_id(spanned, lines, source)?;
    let c = Ctx {
        raw: spanned.get_ref(),
        span: spanned.span(),
        id: &id,
        lines,
        source,
    };
    let score = c
        .raw
        .kind
        .as_ref()
        .and_then(|k| ScoreKind::parse(k.get_ref()));
    if let Some(kind) = score {
        return c.score_metric(id.clone(), kind);
    }
    let unit = c.unit()?;
    let kind = c.kind()?;
    let hours = c.hours()?;
    let responders = c.responders()?;
    let threshold_ms = c.threshold(kind)?;
    let any_miss = c.any_miss(unit, kind)?;
    let cross_day = c.policy(&c.raw.cross_day, "cross_day", unit)?;
    let bot_only = c.policy(&c.raw.bot_only, "bot_only", unit)?;
    let cap_ms = c.cap(kind)?;
    let unreplied = c.unreplied(kind)?;
    let window_days = c.window_days()?;
    let session_gap_ms = c.session_gap(unit)?;
    let (min_denominator, target, alert) = c.alert_fields()?;
    let alert_when = c.alert_when()?;
    let (effective_from, effective_to) = c.dates()?;
    c.rating_fields(None)?;
    Ok(Metric {
        id,
        unit,
        kind,
        threshold_ms,
        any_miss,
        hours,
        responders,
        cross_day,
        bot_only,
        cap_ms,
        unreplied,
        window_days,
        session_gap_ms,
        min_denominator,
        target,
        alert,
        effective_from,
        effective_to,
        alert_when,
        score: None,
        scores: Vec::new(),
        resolved_only: false,
    })
}

/// The metric's `id`: present, non-empty, without spaces. Errors before this
/// one cannot name the metric yet.
fn metric_id(
    spanned: &Spanned<RawMetric>,
    lines: &Lines,
    source: &str,
) -> Result<String, RuleError> {
    let at = |span: Span| Some(lines.line(span.start));
    let id = spanned.get_ref().id.as_ref().ok_or_else(|| {
        RuleError::new(
            source,
            at(spanned.span()),
            "a [[metric]] has no `id`".into(),
        )
    })?;
    let id_str = id.get_ref().clone();
    if id_str.is_empty() || id_str.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(RuleError::new(
            source,
            at(id.span()),
            format!("`id`: `{id_str}` must be non-empty, without spaces"),
        ));
    }
    Ok(id_str)
}

/// One `[[metric]]` being validated: its raw fields, and what its errors
/// name (the file, the line, the metric id).
struct Ctx<'a> {
    raw: &'a RawMetric,
    /// The whole `[[metric]]` table: where "is required" errors point.
    span: Span,
    id: &'a str,
    lines: &'a Lines<'a>,
    source: &'a str,
}

impl Ctx<'_> {
    /// An error at `span`, naming the metric.
    fn fail(&self, span: Span, msg: String) -> RuleError {
        RuleError::new(
            self.source,
            Some(self.lines.line(span.start)),
            format!("metric `{}`: {msg}", self.id),
        )
    }

    fn missing(&self, key: &str) -> RuleError {
        self.fail(self.span.clone(), format!("`{key}` is required"))
    }

    /// A field that does not apply to the unit or kind is an error (SPEC §3).
    fn not_for(&self, span: Span, key: &str, why: &str) -> RuleError {
        self.fail(span, format!("`{key}` does not apply {why}"))
    }

    fn secs_to_ms(&self, secs: i64, span: Span, key: &str) -> Result<i64, RuleError> {
        if secs > MAX_SECS {
            return Err(self.fail(
                span,
                format!("`{key}` = {secs} seconds is unreasonably large"),
            ));
        }
        Ok(secs * 1000)
    }

    /// A duration field given in seconds that must be > 0, in milliseconds.
    fn positive_secs(&self, v: &Spanned<i64>, key: &str) -> Result<i64, RuleError> {
        if *v.get_ref() <= 0 {
            return Err(self.fail(
                v.span(),
                format!(
                    "`{key}` must be a positive number of seconds, not {}",
                    v.get_ref()
                ),
            ));
        }
        self.secs_to_ms(*v.get_ref(), v.span(), key)
    }

    fn unit(&self) -> Result<Unit, RuleError> {
        let s = self.raw.unit.as_ref().ok_or_else(|| self.missing("unit"))?;
        Unit::ALL
            .iter()
            .copied()
            .find(|u| u.name() == s.get_ref())
            .ok_or_else(|| {
                let names: Vec<&str> = Unit::ALL.iter().map(|u| u.name()).collect();
                self.fail(
                    s.span(),
                    format!(
                        "`unit`: `{}` is not one of {}",
                        s.get_ref(),
                        names.join(", ")
                    ),
                )
            })
    }

    fn kind(&self) -> Result<Kind, RuleError> {
        let s = self.raw.kind.as_ref().ok_or_else(|| self.missing("kind"))?;
        Kind::ALL
            .iter()
            .copied()
            .find(|k| k.name() == s.get_ref())
            .ok_or_else(|| {
                let names: Vec<&str> = Kind::ALL
                    .iter()
                    .map(|k| k.name())
                    .chain(ScoreKind::ALL.iter().map(|k| k.name()))
                    .collect();
                self.fail(
                    s.span(),
                    format!(
                        "`kind`: `{}` is not one of {}",
                        s.get_ref(),
                        names.join(", ")
                    ),
                )
            })
    }

    fn hours(&self) -> Result<Hours, RuleError> {
        let s = self
            .raw
            .hours
            .as_ref()
            .ok_or_else(|| self.missing("hours"))?;
        Hours::parse(s.get_ref()).map_err(|e| self.fail(s.span(), format!("`hours`: {e}")))
    }

    /// A non-empty set of known classes, none listed twice.
    fn responders(&self) -> Result<Responders, RuleError> {
        let s = self
            .raw
            .responders
            .as_ref()
            .ok_or_else(|| self.missing("responders"))?;
        let mut responders = Responders(0);
        for r in s.get_ref() {
            let class = match r.as_str() {
                "manual" => Responders::MANUAL,
                "assist" => Responders::ASSIST,
                other => {
                    return Err(self.fail(
                        s.span(),
                        format!(
                            "`responders`: `{other}` is not a responder class (manual, assist)"
                        ),
                    ))
                }
            };
            if responders.with(class) == responders {
                return Err(self.fail(s.span(), format!("`responders`: `{r}` is listed twice")));
            }
            responders = responders.with(class);
        }
        if responders.bits() == 0 {
            return Err(self.fail(s.span(), "`responders` must name at least one class".into()));
        }
        Ok(responders)
    }

    /// Required by rates, an error on mean latency.
    fn threshold(&self, kind: Kind) -> Result<Option<i64>, RuleError> {
        match (&self.raw.threshold, kind) {
            (Some(t), Kind::Rate) => self.positive_secs(t, "threshold").map(Some),
            (None, Kind::Rate) => Err(self.missing("threshold")),
            (Some(t), Kind::MeanLatency) => {
                Err(self.not_for(t.span(), "threshold", "to a mean_latency metric"))
            }
            (None, Kind::MeanLatency) => Ok(None),
        }
    }

    /// Only buyer and session rates time more than their first inquiry.
    fn any_miss(&self, unit: Unit, kind: Kind) -> Result<bool, RuleError> {
        let Some(a) = &self.raw.any_miss else {
            return Ok(false);
        };
        if kind != Kind::Rate || !matches!(unit, Unit::Buyer | Unit::Session) {
            return Err(self.not_for(
                a.span(),
                "any_miss",
                &format!(
                    "to a {} {} (only to buyer or session rates)",
                    unit.name(),
                    kind.name()
                ),
            ));
        }
        Ok(*a.get_ref())
    }

    /// `cross_day` and `bot_only`: only rounds and sessions can drop items.
    fn policy(
        &self,
        field: &Option<Spanned<String>>,
        key: &str,
        unit: Unit,
    ) -> Result<Policy, RuleError> {
        let Some(p) = field else {
            return Ok(Policy::Keep);
        };
        if !matches!(unit, Unit::Round | Unit::Session) {
            return Err(self.not_for(
                p.span(),
                key,
                &format!("to the {} unit (only to round and session)", unit.name()),
            ));
        }
        match p.get_ref().as_str() {
            "keep" => Ok(Policy::Keep),
            "exclude" => Ok(Policy::Exclude),
            other => Err(self.fail(
                p.span(),
                format!("`{key}`: `{other}` is not one of keep, exclude"),
            )),
        }
    }

    /// Only mean latency caps its latencies.
    fn cap(&self, kind: Kind) -> Result<Option<i64>, RuleError> {
        match (&self.raw.cap, kind) {
            (None, _) => Ok(None),
            (Some(c), Kind::MeanLatency) => self.positive_secs(c, "cap").map(Some),
            (Some(c), Kind::Rate) => {
                Err(self.not_for(c.span(), "cap", "to a rate (only to mean_latency)"))
            }
        }
    }

    /// Rates: `fail` (the default) or `exclude`. Mean latency: `exclude` (the
    /// default) or a number of seconds ≥ 0.
    fn unreplied(&self, kind: Kind) -> Result<Unreplied, RuleError> {
        let Some(u) = &self.raw.unreplied else {
            return Ok(match kind {
                Kind::Rate => Unreplied::Fail,
                Kind::MeanLatency => Unreplied::Exclude,
            });
        };
        match (u.get_ref(), kind) {
            (toml::Value::String(s), Kind::Rate) if s == "fail" => Ok(Unreplied::Fail),
            (toml::Value::String(s), _) if s == "exclude" => Ok(Unreplied::Exclude),
            (toml::Value::Integer(n), Kind::MeanLatency) if *n >= 0 => Ok(Unreplied::Millis(
                self.secs_to_ms(*n, u.span(), "unreplied")?,
            )),
            (v, Kind::Rate) => Err(self.fail(
                u.span(),
                format!("`unreplied`: a rate takes \"fail\" or \"exclude\", not {v}"),
            )),
            (v, Kind::MeanLatency) => Err(self.fail(
                u.span(),
                format!(
                    "`unreplied`: a mean_latency takes \"exclude\" or a number of seconds >= 0, \
                     not {v}"
                ),
            )),
        }
    }

    fn window_days(&self) -> Result<u32, RuleError> {
        let Some(w) = &self.raw.window_days else {
            return Ok(1);
        };
        let v = *w.get_ref();
        if !(1..=366).contains(&v) {
            return Err(self.fail(
                w.span(),
                format!("`window_days` must be between 1 and 366, not {v}"),
            ));
        }
        Ok(v as u32)
    }

    /// Required by the session unit, an error on every other.
    fn session_gap(&self, unit: Unit) -> Result<Option<i64>, RuleError> {
        match (&self.raw.session_gap, unit) {
            (Some(g), Unit::Session) => self.positive_secs(g, "session_gap").map(Some),
            (None, Unit::Session) => Err(self.missing("session_gap")),
            (Some(g), _) => Err(self.not_for(
                g.span(),
                "session_gap",
                &format!("to the {} unit (only to session)", unit.name()),
            )),
            (None, _) => Ok(None),
        }
    }

    /// `min_denominator` (default 1), `target` and the `alert` text.
    #[allow(clippy::type_complexity)]
    fn alert_fields(&self) -> Result<(i64, Option<f64>, Option<String>), RuleError> {
        let min_denominator = match &self.raw.min_denominator {
            None => 1,
            Some(d) if *d.get_ref() >= 1 => *d.get_ref(),
            Some(d) => {
                return Err(self.fail(
                    d.span(),
                    format!("`min_denominator` must be at least 1, not {}", d.get_ref()),
                ))
            }
        };
        let target = match &self.raw.target {
            None => None,
            Some(t) => match t.get_ref() {
                toml::Value::Float(f) if f.is_finite() => Some(*f),
                toml::Value::Integer(i) => Some(*i as f64),
                v => return Err(self.fail(t.span(), format!("`target` must be a number, not {v}"))),
            },
        };
        let alert = self.raw.alert.as_ref().map(|a| a.get_ref().clone());
        Ok((min_denominator, target, alert))
    }

    /// `alert_when`: `below` (the default) or `above` (SPEC §8.2).
    fn alert_when(&self) -> Result<AlertWhen, RuleError> {
        match &self.raw.alert_when {
            None => Ok(AlertWhen::Below),
            Some(w) => match w.get_ref().as_str() {
                "below" => Ok(AlertWhen::Below),
                "above" => Ok(AlertWhen::Above),
                other => Err(self.fail(
                    w.span(),
                    format!("`alert_when`: `{other}` is not one of below, above"),
                )),
            },
        }
    }

    /// A scorecard metric (SPEC §8.2): `hours` required, the message
    /// fields rejected (in the order of §3's table), then the fields every
    /// kind shares.
    fn score_metric(&self, id: String, kind: ScoreKind) -> Result<Metric, RuleError> {
        let hours = self.hours()?;
        let r = self.raw;
        let message_fields = [
            ("unit", r.unit.as_ref().map(|v| v.span())),
            ("threshold", r.threshold.as_ref().map(|v| v.span())),
            ("any_miss", r.any_miss.as_ref().map(|v| v.span())),
            ("responders", r.responders.as_ref().map(|v| v.span())),
            ("cross_day", r.cross_day.as_ref().map(|v| v.span())),
            ("bot_only", r.bot_only.as_ref().map(|v| v.span())),
            ("cap", r.cap.as_ref().map(|v| v.span())),
            ("unreplied", r.unreplied.as_ref().map(|v| v.span())),
            ("session_gap", r.session_gap.as_ref().map(|v| v.span())),
        ];
        for (key, at) in message_fields {
            if let Some(at) = at {
                return Err(self.not_for(
                    at,
                    key,
                    &format!(
                        "to a {} metric (it reads the scorecard tables, not the messages)",
                        kind.name()
                    ),
                ));
            }
        }
        let (scores, resolved_only) = self.rating_fields(Some(kind))?;
        let window_days = self.window_days()?;
        let (min_denominator, target, alert) = self.alert_fields()?;
        let alert_when = self.alert_when()?;
        let (effective_from, effective_to) = self.dates()?;
        let (
            unit,
            k,
            threshold_ms,
            any_miss,
            responders,
            cross_day,
            bot_only,
            cap_ms,
            unreplied,
            session_gap_ms,
        ) = Metric::SCORE_PLACEHOLDER;
        Ok(Metric {
            id,
            unit,
            kind: k,
            threshold_ms,
            any_miss,
            hours,
            responders,
            cross_day,
            bot_only,
            cap_ms,
            unreplied,
            window_days,
            session_gap_ms,
            min_denominator,
            target,
            alert,
            effective_from,
            effective_to,
            alert_when,
            score: Some(kind),
            scores,
            resolved_only,
        })
    }

    /// `scores` (required: non-empty, distinct integers 1-5) and
    /// `resolved_only` (default false): only on `rating_share`; `kind` is
    /// `None` for a message metric.
    fn rating_fields(&self, kind: Option<ScoreKind>) -> Result<(Vec<u8>, bool), RuleError> {
        let rating = kind == Some(ScoreKind::RatingShare);
        let name = kind.map_or_else(
            || {
                self.raw
                    .kind
                    .as_ref()
                    .map_or("", |k| k.get_ref().as_str())
                    .to_string()
            },
            |k| k.name().to_string(),
        );
        let not_for = |span: Span, key: &str| {
            self.not_for(
                span,
                key,
                &format!("to a {name} metric (only to rating_share)"),
            )
        };
        let scores = match &self.raw.scores {
            Some(s) if !rating => return Err(not_for(s.span(), "scores")),
            None if rating => return Err(self.missing("scores")),
            None => Vec::new(),
            Some(s) => {
                let mut out = Vec::new();
                for &v in s.get_ref() {
                    if !(1..=5).contains(&v) {
                        return Err(
                            self.fail(s.span(), format!("`scores`: {v} is not an integer 1-5"))
                        );
                    }
                    if out.contains(&(v as u8)) {
                        return Err(self.fail(s.span(), format!("`scores`: {v} is listed twice")));
                    }
                    out.push(v as u8);
                }
                if out.is_empty() {
                    return Err(self.fail(s.span(), "`scores` must name at least one score".into()));
                }
                out
            }
        };
        let resolved_only = match &self.raw.resolved_only {
            Some(r) if !rating => return Err(not_for(r.span(), "resolved_only")),
            Some(r) => *r.get_ref(),
            None => false,
        };
        Ok((scores, resolved_only))
    }

    /// `effective_from` and `effective_to`, in that order.
    fn dates(&self) -> Result<(Option<NaiveDate>, Option<NaiveDate>), RuleError> {
        let from = self.date(&self.raw.effective_from, "effective_from")?;
        let to = self.date(&self.raw.effective_to, "effective_to")?;
        if let (Some(f), Some(t)) = (from, to) {
            if f > t {
                return Err(self.fail(
                    self.raw.effective_to.as_ref().expect("set").span(),
                    format!("`effective_to` {t} is before `effective_from` {f}"),
                ));
            }
        }
        Ok((from, to))
    }

    /// A TOML local date, or a string holding one.
    fn date(
        &self,
        field: &Option<Spanned<toml::Value>>,
        key: &str,
    ) -> Result<Option<NaiveDate>, RuleError> {
        let Some(v) = field else { return Ok(None) };
        let text = match v.get_ref() {
            toml::Value::Datetime(d)
                if d.date.is_some() && d.time.is_none() && d.offset.is_none() =>
            {
                d.to_string()
            }
            toml::Value::String(s) => s.clone(),
            other => {
                return Err(self.fail(
                    v.span(),
                    format!("`{key}` must be a date like 2024-05-16, not {other}"),
                ))
            }
        };
        NaiveDate::parse_from_str(&text, "%Y-%m-%d")
            .map(Some)
            .map_err(|_| {
                self.fail(
                    v.span(),
                    format!("`{key}`: `{text}` is not a date like 2024-05-16"),
                )
            })
    }
}

/// Versions of one id must neither overlap nor leave gaps (SPEC §3).
/// `spans[i]` is where `metrics[i]`'s `[[metric]]` table sits in the file.
pub(super) fn check_versions(
    metrics: &[Metric],
    spans: &[Span],
    lines: &Lines,
    source: &str,
) -> Result<(), RuleError> {
    no_overlaps(metrics, spans, lines, source)?;
    no_gaps(metrics, spans, lines, source)
}

fn no_overlaps(
    metrics: &[Metric],
    spans: &[Span],
    lines: &Lines,
    source: &str,
) -> Result<(), RuleError> {
    for (i, a) in metrics.iter().enumerate() {
        for (j, b) in metrics.iter().enumerate().skip(i + 1) {
            if a.id != b.id {
                continue;
            }
            let a_from = a.effective_from.unwrap_or(NaiveDate::MIN);
            let a_to = a.effective_to.unwrap_or(NaiveDate::MAX);
            let b_from = b.effective_from.unwrap_or(NaiveDate::MIN);
            let b_to = b.effective_to.unwrap_or(NaiveDate::MAX);
            if a_from <= b_to && b_from <= a_to {
                return Err(RuleError::new(
                    source,
                    Some(lines.line(spans[j].start)),
                    format!(
                        "metric `{}`: this version ({}) overlaps the one at line {} ({}); versions \
                         of one id must not overlap",
                        b.id,
                        span_text(b),
                        lines.line(spans[i].start),
                        span_text(a)
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Versions of one id follow each other day to day: a gap would leave days
/// where the metric silently disappears.
fn no_gaps(
    metrics: &[Metric],
    spans: &[Span],
    lines: &Lines,
    source: &str,
) -> Result<(), RuleError> {
    let mut order: Vec<usize> = (0..metrics.len()).collect();
    order.sort_by_key(|&i| {
        (
            metrics[i].id.clone(),
            metrics[i].effective_from.unwrap_or(NaiveDate::MIN),
        )
    });
    for w in order.windows(2) {
        let (a, b) = (&metrics[w[0]], &metrics[w[1]]);
        if a.id != b.id {
            continue;
        }
        let follows = a.effective_to.and_then(|t| t.succ_opt()) == b.effective_from;
        if !follows {
            return Err(RuleError::new(
                source,
                Some(lines.line(spans[w[1]].start)),
                format!(
                    "metric `{}`: this version ({}) does not start the day after the one at line \
                     {} ({}) ends; versions of one id must follow each other without gaps",
                    b.id,
                    span_text(b),
                    lines.line(spans[w[0]].start),
                    span_text(a)
                ),
            ));
        }
    }
    Ok(())
}

/// `from – to` of a version, either side empty when open.
fn span_text(m: &Metric) -> String {
    let f = m.effective_from.map(|d| d.to_string()).unwrap_or_default();
    let t = m.effective_to.map(|d| d.to_string()).unwrap_or_default();
    format!("{f} – {t}")
}

#[cfg(test)]
mod tests {
    use super::super::{assert_errors, parse, TEST_METRIC as BASE};
    use super::*;

    #[test]
    fn defaults() {
        let m = &parse(BASE, "r.toml").unwrap().metrics[0];
        assert_eq!(m.unreplied, Unreplied::Fail);
        assert_eq!(
            (m.cross_day, m.bot_only, m.any_miss, m.window_days),
            (Policy::Keep, Policy::Keep, false, 1)
        );
        assert_eq!(m.rule_version(), "m@");
        let mean = parse(
            &BASE.replace(
                "kind = \"rate\"\nthreshold = 30\n",
                "kind = \"mean_latency\"\n",
            ),
            "r.toml",
        )
        .unwrap();
        assert_eq!(mean.metrics[0].unreplied, Unreplied::Exclude);
        let set = parse("", "r.toml").unwrap();
        assert_eq!(set.input.timezone, chrono_tz::Asia::Shanghai);
        assert_eq!(set.input.max_bad_row_share, 0.001);
    }

    #[test]
    fn errors_name_line_and_key() {
        assert_errors(&[
            (
                &BASE.replace("threshold = 30", "threshold = 0"),
                5,
                "`threshold` must be a positive",
            ),
            (
                &BASE.replace("threshold = 30", "threshold = -5"),
                5,
                "`threshold` must be a positive",
            ),
            (
                &BASE.replace("threshold = 30\n", ""),
                1,
                "`threshold` is required",
            ),
            (&BASE.replace("08:00-23:00", "23:00-08:00"), 6, "`hours`"),
            (
                &BASE.replace("[\"manual\"]", "[\"robot\"]"),
                7,
                "not a responder class",
            ),
            (&BASE.replace("[\"manual\"]", "[]"), 7, "at least one class"),
            (
                &BASE.replace("[\"manual\"]", "[\"manual\", \"manual\"]"),
                7,
                "listed twice",
            ),
            (
                &format!("{BASE}cap = 600\n"),
                8,
                "`cap` does not apply to a rate",
            ),
            (
                &format!("{BASE}any_miss = true\n"),
                8,
                "`any_miss` does not apply",
            ),
            (
                &format!("{BASE}cross_day = \"exclude\"\n"),
                8,
                "`cross_day` does not apply",
            ),
            (
                &format!("{BASE}session_gap = 600\n"),
                8,
                "`session_gap` does not apply",
            ),
            (&format!("{BASE}unreplied = 600\n"), 8, "a rate takes"),
            (
                &BASE.replace("message", "session"),
                1,
                "`session_gap` is required",
            ),
            (&BASE.replace("message", "thread"), 3, "`unit`: `thread`"),
            (
                &format!("{BASE}effective_from = 2024-05-02\neffective_to = 2024-05-01\n"),
                9,
                "before `effective_from`",
            ),
            (
                &format!("{BASE}effective_from = \"yesterday\"\n"),
                8,
                "`effective_from`",
            ),
            (&format!("{BASE}window_days = 0\n"), 8, "`window_days`"),
            (&format!("{BASE}{BASE}"), 8, "overlaps"),
            (
                &format!("{BASE}effective_to = 2024-05-01\n{BASE}effective_from = 2024-05-03\n"),
                9,
                "without gaps",
            ),
        ]);
    }

    /// A small valid scorecard metric (line 1 `[[metric]]`, 3 `kind`, 4
    /// `hours`).
    const SCORE: &str =
        "[[metric]]\nid = \"s\"\nkind = \"rating_share\"\nhours = \"00:00-24:00\"\nscores = [4, 5]\n";

    #[test]
    fn scorecard_kinds() {
        let m = &parse(SCORE, "r.toml").unwrap().metrics[0];
        assert_eq!(m.score, Some(ScoreKind::RatingShare));
        assert_eq!((m.scores.clone(), m.resolved_only), (vec![4, 5], false));
        assert_eq!(m.alert_when, AlertWhen::Below);
        let conv = SCORE
            .replace("rating_share", "conversion")
            .replace("scores = [4, 5]\n", "");
        for k in ScoreKind::ALL {
            let text = conv.replace("conversion", k.name());
            let text = match k {
                ScoreKind::RatingShare => format!("{text}scores = [1]\nresolved_only = true\n"),
                _ => text,
            };
            let m = &parse(&text, "r.toml").unwrap().metrics[0];
            assert_eq!(m.score, Some(k));
            assert_eq!(m.kind_name(), k.name());
        }
        let above = parse(&format!("{conv}alert_when = \"above\"\n"), "r.toml").unwrap();
        assert_eq!(above.metrics[0].alert_when, AlertWhen::Above);
        let old = parse(&format!("{BASE}alert_when = \"above\"\n"), "r.toml").unwrap();
        assert_eq!(old.metrics[0].alert_when, AlertWhen::Above);
        // Not among the message metrics in force.
        let d = NaiveDate::from_ymd_opt(2024, 5, 16).unwrap();
        let set = parse(&format!("{BASE}{conv}").replace("\"s\"", "\"t\""), "r.toml").unwrap();
        assert_eq!(set.in_force(d).len(), 1);
        assert_eq!(set.scores_in_force(d)[0].id, "t");
    }

    #[test]
    fn scorecard_field_errors() {
        let conv = SCORE
            .replace("rating_share", "conversion")
            .replace("scores = [4, 5]\n", "");
        let mut cases: Vec<(String, usize, &str)> = Vec::new();
        for (key, value) in [
            ("unit", "\"buyer\""),
            ("threshold", "30"),
            ("any_miss", "true"),
            ("responders", "[\"manual\"]"),
            ("cross_day", "\"keep\""),
            ("bot_only", "\"keep\""),
            ("cap", "600"),
            ("unreplied", "\"fail\""),
            ("session_gap", "600"),
        ] {
            cases.push((
                format!("{conv}{key} = {value}\n"),
                5,
                "does not apply to a conversion",
            ));
        }
        cases.extend([
            (
                conv.replace("hours = \"00:00-24:00\"\n", ""),
                1,
                "`hours` is required",
            ),
            (
                SCORE.replace("scores = [4, 5]\n", ""),
                1,
                "`scores` is required",
            ),
            (SCORE.replace("[4, 5]", "[]"), 5, "at least one score"),
            (SCORE.replace("[4, 5]", "[4, 4]"), 5, "listed twice"),
            (SCORE.replace("[4, 5]", "[0, 5]"), 5, "not an integer 1-5"),
            (SCORE.replace("[4, 5]", "[6]"), 5, "not an integer 1-5"),
            (
                format!("{conv}scores = [5]\n"),
                5,
                "`scores` does not apply",
            ),
            (
                format!("{conv}resolved_only = true\n"),
                5,
                "`resolved_only` does not apply",
            ),
            (
                format!("{BASE}scores = [5]\n"),
                8,
                "`scores` does not apply to a rate",
            ),
            (
                format!("{BASE}resolved_only = true\n"),
                8,
                "`resolved_only` does not apply",
            ),
            (
                format!("{SCORE}alert_when = \"over\"\n"),
                6,
                "not one of below, above",
            ),
            (
                format!("{BASE}alert_when = \"over\"\n"),
                8,
                "not one of below, above",
            ),
            (format!("{conv}window_days = 0\n"), 5, "`window_days`"),
            (
                BASE.replace("\"rate\"", "\"sales\""),
                4,
                "conversion, order_value",
            ),
            (format!("{SCORE}{SCORE}"), 6, "overlaps"),
        ]);
        let cases: Vec<(&str, usize, &str)> =
            cases.iter().map(|(t, l, f)| (t.as_str(), *l, *f)).collect();
        assert_errors(&cases);
    }

    #[test]
    fn gap_message_in_full() {
        let text = format!("{BASE}effective_to = 2024-05-01\n{BASE}effective_from = 2024-05-03\n");
        let e = parse(&text, "r.toml").unwrap_err();
        assert_eq!(
            e.to_string(),
            "rule file r.toml, line 9: metric `m`: this version (2024-05-03 – ) does not start \
             the day after the one at line 1 ( – 2024-05-01) ends; versions of one id must \
             follow each other without gaps"
        );
    }

    #[test]
    fn versions_may_follow_each_other() {
        let a = format!("{BASE}effective_to = 2024-05-01\n");
        let b = format!("{BASE}effective_from = 2024-05-02\n");
        let set = parse(&format!("{a}{b}"), "r.toml").unwrap();
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        assert_eq!(
            set.in_force(d("2024-05-01"))[0].effective_to,
            Some(d("2024-05-01"))
        );
        assert_eq!(
            set.in_force(d("2024-05-02"))[0].rule_version(),
            "m@2024-05-02"
        );
        assert_eq!(set.in_force(d("2024-05-02")).len(), 1);
    }
}
