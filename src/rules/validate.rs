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
#[path = "validate_tests.rs"]
mod tests;
