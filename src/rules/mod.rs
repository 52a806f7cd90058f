//! Rule files: TOML → a validated [`RuleSet`].
//!
//! Pure data. This module reads one file (or a preset string compiled into the
//! binary) and knows nothing of Parquet, polars or the command line. Every
//! error names the file, the line and the key at fault, and every check runs
//! before any data is read.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use chrono::NaiveDate;
use chrono_tz::Tz;
use serde::Deserialize;
use toml::Spanned;

/// The platforms whose presets are compiled into the binary (SPEC §4).
/// The name is also the `platform=` partition of the output.
pub const PLATFORMS: &[(&str, &str)] = &[
    ("pdd", include_str!("../../queries/pdd.toml")),
    ("taobao", include_str!("../../queries/taobao.toml")),
    ("douyin", include_str!("../../queries/douyin.toml")),
    ("jd", include_str!("../../queries/jd.toml")),
    ("kuaishou", include_str!("../../queries/kuaishou.toml")),
    (
        "xiaohongshu",
        include_str!("../../queries/xiaohongshu.toml"),
    ),
];

/// The canonical input columns (SPEC §1), in the order `[input.columns]` may name them.
pub const CANONICAL_COLUMNS: &[&str] = &[
    "shop_id",
    "buyer_id",
    "ts",
    "sender",
    "msg_id",
    "agent_id",
    "auto",
    "assist",
    "spam",
    "blocked",
    "peer_kind",
    "session_id",
];

/// What one item is (SPEC §2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Unit {
    Message,
    Buyer,
    Round,
    Session,
}

/// What a metric reports (SPEC §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Rate,
    MeanLatency,
}

/// Whether a kind of exclusion (`cross_day`, `bot_only`) drops items.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Policy {
    Keep,
    Exclude,
}

/// What happens to an item without a reply within the horizon.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Unreplied {
    /// Rates: counted in the denominator, never passing.
    Fail,
    /// Dropped from both sides.
    Exclude,
    /// Mean latency: counted as this many milliseconds.
    Millis(i64),
}

/// The responder classes of SPEC §2, as a bit set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Responders(u8);

impl Responders {
    pub const MANUAL: Responders = Responders(1);
    pub const ASSIST: Responders = Responders(2);

    pub fn manual(self) -> bool {
        self.0 & 1 != 0
    }
    pub fn assist(self) -> bool {
        self.0 & 2 != 0
    }
    pub fn bits(self) -> u8 {
        self.0
    }
    fn with(self, other: Responders) -> Responders {
        Responders(self.0 | other.0)
    }
}

impl fmt::Display for Responders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.manual(), self.assist()) {
            (true, true) => f.write_str("manual+assist"),
            (true, false) => f.write_str("manual"),
            (false, true) => f.write_str("assist"),
            (false, false) => f.write_str("-"),
        }
    }
}

/// A half-open span of local time of day, in milliseconds after midnight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Hours {
    pub start_ms: i64,
    pub end_ms: i64,
}

impl Hours {
    pub fn contains(&self, ms_of_day: i64) -> bool {
        self.start_ms <= ms_of_day && ms_of_day < self.end_ms
    }

    /// Parses `HH:MM-HH:MM` with 00:00 ≤ start < end ≤ 24:00.
    pub fn parse(s: &str) -> Result<Hours, String> {
        fn hm(part: &str) -> Option<i64> {
            let (h, m) = part.split_once(':')?;
            if h.len() != 2 || m.len() != 2 {
                return None;
            }
            let h: i64 = h.parse().ok()?;
            let m: i64 = m.parse().ok()?;
            if !(0..=24).contains(&h) || !(0..60).contains(&m) || (h == 24 && m != 0) {
                return None;
            }
            Some((h * 60 + m) * 60_000)
        }
        let bad = || format!("`{s}` is not HH:MM-HH:MM with 00:00 <= start < end <= 24:00");
        let (a, b) = s.split_once('-').ok_or_else(bad)?;
        let (start_ms, end_ms) = (hm(a.trim()).ok_or_else(bad)?, hm(b.trim()).ok_or_else(bad)?);
        if start_ms >= end_ms {
            return Err(bad());
        }
        Ok(Hours { start_ms, end_ms })
    }
}

impl fmt::Display for Hours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hm = |ms: i64| format!("{:02}:{:02}", ms / 3_600_000, ms / 60_000 % 60);
        write!(f, "{}-{}", hm(self.start_ms), hm(self.end_ms))
    }
}

/// One version of one metric, validated. Durations are in milliseconds.
#[derive(Clone, Debug, PartialEq)]
pub struct Metric {
    pub id: String,
    pub unit: Unit,
    pub kind: Kind,
    /// Rates: an item passes when its latency ≤ this.
    pub threshold_ms: Option<i64>,
    pub any_miss: bool,
    pub hours: Hours,
    pub responders: Responders,
    pub cross_day: Policy,
    pub bot_only: Policy,
    pub cap_ms: Option<i64>,
    pub unreplied: Unreplied,
    pub window_days: u32,
    pub session_gap_ms: Option<i64>,
    pub min_denominator: i64,
    pub target: Option<f64>,
    pub alert: Option<String>,
    pub effective_from: Option<NaiveDate>,
    pub effective_to: Option<NaiveDate>,
}

impl Metric {
    /// `<id>@<effective_from>`, or `<id>@` for a version without a start date.
    pub fn rule_version(&self) -> String {
        match self.effective_from {
            Some(d) => format!("{}@{}", self.id, d),
            None => format!("{}@", self.id),
        }
    }

    /// Whether this version is in force on `day`.
    pub fn in_force(&self, day: NaiveDate) -> bool {
        self.effective_from.is_none_or(|f| f <= day) && self.effective_to.is_none_or(|t| day <= t)
    }

    /// Whether `other` finds the same items with the same outcomes: it
    /// agrees on every field the engine reads (its id, window, target,
    /// alert and dates may differ). Every field is named below, so a new
    /// one must be placed on one side or the other.
    pub fn same_items(&self, other: &Metric) -> bool {
        let Metric {
            id: _,
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
            window_days: _,
            session_gap_ms,
            min_denominator: _,
            target: _,
            alert: _,
            effective_from: _,
            effective_to: _,
        } = self;
        (
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
            session_gap_ms,
        ) == (
            &other.unit,
            &other.kind,
            &other.threshold_ms,
            &other.any_miss,
            &other.hours,
            &other.responders,
            &other.cross_day,
            &other.bot_only,
            &other.cap_ms,
            &other.unreplied,
            &other.session_gap_ms,
        )
    }
}

/// Input settings of a rule file (SPEC §1, §3).
#[derive(Clone, Debug, PartialEq)]
pub struct InputSettings {
    pub timezone: Tz,
    pub max_bad_row_share: f64,
    /// canonical column name → the column name in the input.
    pub columns: BTreeMap<String, String>,
    /// input sender value → canonical sender value.
    pub sender_values: BTreeMap<String, String>,
    /// Accept an integer `ts` column as epoch time in this unit (UTC).
    pub ts_epoch_unit: Option<EpochUnit>,
}

/// The unit of an integer epoch `ts` column (`[input] ts_epoch_unit`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EpochUnit {
    Seconds,
    Millis,
    Micros,
    Nanos,
}

impl Default for InputSettings {
    fn default() -> Self {
        InputSettings {
            timezone: chrono_tz::Asia::Shanghai,
            max_bad_row_share: 0.001,
            columns: BTreeMap::new(),
            sender_values: BTreeMap::new(),
            ts_epoch_unit: None,
        }
    }
}

impl InputSettings {
    /// The input column holding canonical column `name`.
    pub fn column<'a>(&'a self, name: &'a str) -> &'a str {
        self.columns.get(name).map(String::as_str).unwrap_or(name)
    }
}

/// A validated rule file: input settings and every version of every metric.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleSet {
    /// Where the rules came from, e.g. `queries/pdd.toml (preset)`.
    pub source: String,
    pub input: InputSettings,
    pub metrics: Vec<Metric>,
}

impl RuleSet {
    /// The metric versions in force on `day`, in file order.
    pub fn in_force(&self, day: NaiveDate) -> Vec<&Metric> {
        self.metrics.iter().filter(|m| m.in_force(day)).collect()
    }

    /// The preset rule set of a platform.
    pub fn preset(platform: &str) -> Result<RuleSet, RuleError> {
        let (name, text) = PLATFORMS
            .iter()
            .find(|(p, _)| *p == platform)
            .ok_or_else(|| {
                RuleError::new(
                    "--platform",
                    None,
                    format!(
                        "unknown platform `{platform}`; the presets are: {}",
                        PLATFORMS.iter().map(|p| p.0).collect::<Vec<_>>().join(", ")
                    ),
                )
            })?;
        parse(text, &format!("queries/{name}.toml (preset)"))
    }

    /// Reads a rule file. A file without `[[metric]]` entries keeps `base`'s
    /// metrics and only changes the input settings (SPEC §3).
    pub fn from_file(path: &Path, base: Option<&RuleSet>) -> Result<RuleSet, RuleError> {
        let source = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            RuleError::new(&source, None, format!("cannot read the rule file: {e}"))
        })?;
        let mut set = parse(&text, &source)?;
        if set.metrics.is_empty() {
            match base {
                Some(base) => set.metrics = base.metrics.clone(),
                None => {
                    return Err(RuleError::new(
                        &source,
                        None,
                        "the file has no [[metric]] entries and there are no presets to keep"
                            .to_string(),
                    ))
                }
            }
        }
        Ok(set)
    }
}

/// A rule file that cannot be used: file, line (when known) and what is wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}", self.render())]
pub struct RuleError {
    pub file: String,
    pub line: Option<usize>,
    pub message: String,
}

impl RuleError {
    fn new(file: &str, line: Option<usize>, message: String) -> RuleError {
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

// ---------------------------------------------------------------------------
// Raw TOML shapes. Every field is optional and spanned so that validation can
// point at the line; `deny_unknown_fields` rejects unknown keys.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    timezone: Option<Spanned<String>>,
    max_bad_row_share: Option<Spanned<f64>>,
    input: Option<RawInput>,
    metric: Option<Vec<Spanned<RawMetric>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInput {
    ts_epoch_unit: Option<Spanned<String>>,
    columns: Option<BTreeMap<String, Spanned<String>>>,
    sender_values: Option<BTreeMap<String, Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetric {
    id: Option<Spanned<String>>,
    unit: Option<Spanned<String>>,
    kind: Option<Spanned<String>>,
    threshold: Option<Spanned<i64>>,
    any_miss: Option<Spanned<bool>>,
    hours: Option<Spanned<String>>,
    responders: Option<Spanned<Vec<String>>>,
    cross_day: Option<Spanned<String>>,
    bot_only: Option<Spanned<String>>,
    cap: Option<Spanned<i64>>,
    unreplied: Option<Spanned<toml::Value>>,
    window_days: Option<Spanned<i64>>,
    session_gap: Option<Spanned<i64>>,
    min_denominator: Option<Spanned<i64>>,
    target: Option<Spanned<toml::Value>>,
    alert: Option<Spanned<String>>,
    effective_from: Option<Spanned<toml::Value>>,
    effective_to: Option<Spanned<toml::Value>>,
}

/// Maps byte offsets to 1-based line numbers.
struct Lines<'a>(&'a str);

impl Lines<'_> {
    fn line(&self, offset: usize) -> usize {
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
    let err = |span: std::ops::Range<usize>, msg: String| {
        RuleError::new(source, Some(lines.line(span.start)), msg)
    };

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

    let mut metrics = Vec::new();
    for m in raw.metric.iter().flatten() {
        metrics.push(validate_metric(m, &lines, source)?);
    }
    check_versions(&metrics, &raw, &lines, source)?;
    Ok(RuleSet {
        source: source.to_string(),
        input,
        metrics,
    })
}

fn validate_metric(
    spanned: &Spanned<RawMetric>,
    lines: &Lines,
    source: &str,
) -> Result<Metric, RuleError> {
    let m = spanned.get_ref();
    let at = |span: std::ops::Range<usize>| Some(lines.line(span.start));
    let id = m.id.as_ref().ok_or_else(|| {
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
    // Errors inside this metric name it.
    let fail = |span: std::ops::Range<usize>, msg: String| {
        RuleError::new(source, at(span), format!("metric `{id_str}`: {msg}"))
    };
    let missing = |key: &str| fail(spanned.span(), format!("`{key}` is required"));

    let unit_s = m.unit.as_ref().ok_or_else(|| missing("unit"))?;
    let unit = match unit_s.get_ref().as_str() {
        "message" => Unit::Message,
        "buyer" => Unit::Buyer,
        "round" => Unit::Round,
        "session" => Unit::Session,
        other => {
            return Err(fail(
                unit_s.span(),
                format!("`unit`: `{other}` is not one of message, buyer, round, session"),
            ))
        }
    };
    let kind_s = m.kind.as_ref().ok_or_else(|| missing("kind"))?;
    let kind = match kind_s.get_ref().as_str() {
        "rate" => Kind::Rate,
        "mean_latency" => Kind::MeanLatency,
        other => {
            return Err(fail(
                kind_s.span(),
                format!("`kind`: `{other}` is not one of rate, mean_latency"),
            ))
        }
    };
    let hours_s = m.hours.as_ref().ok_or_else(|| missing("hours"))?;
    let hours = Hours::parse(hours_s.get_ref())
        .map_err(|e| fail(hours_s.span(), format!("`hours`: {e}")))?;

    let resp_s = m.responders.as_ref().ok_or_else(|| missing("responders"))?;
    let mut responders = Responders(0);
    for r in resp_s.get_ref() {
        let class = match r.as_str() {
            "manual" => Responders::MANUAL,
            "assist" => Responders::ASSIST,
            other => {
                return Err(fail(
                    resp_s.span(),
                    format!("`responders`: `{other}` is not a responder class (manual, assist)"),
                ))
            }
        };
        if responders.with(class) == responders {
            return Err(fail(
                resp_s.span(),
                format!("`responders`: `{r}` is listed twice"),
            ));
        }
        responders = responders.with(class);
    }
    if responders.bits() == 0 {
        return Err(fail(
            resp_s.span(),
            "`responders` must name at least one class".into(),
        ));
    }

    // A field that does not apply to the unit or kind is an error (SPEC §3).
    let not_for = |span: std::ops::Range<usize>, key: &str, why: &str| {
        fail(span, format!("`{key}` does not apply {why}"))
    };
    let kind_name = match kind {
        Kind::Rate => "rate",
        Kind::MeanLatency => "mean_latency",
    };
    let unit_name = unit_s.get_ref().as_str();

    let threshold_ms = match (&m.threshold, kind) {
        (Some(t), Kind::Rate) => {
            if *t.get_ref() <= 0 {
                return Err(fail(
                    t.span(),
                    format!(
                        "`threshold` must be a positive number of seconds, not {}",
                        t.get_ref()
                    ),
                ));
            }
            Some(secs_to_ms(*t.get_ref(), t.span(), "threshold", &fail)?)
        }
        (None, Kind::Rate) => return Err(missing("threshold")),
        (Some(t), Kind::MeanLatency) => {
            return Err(not_for(t.span(), "threshold", "to a mean_latency metric"))
        }
        (None, Kind::MeanLatency) => None,
    };

    let any_miss = match &m.any_miss {
        Some(a) => {
            if kind != Kind::Rate || !matches!(unit, Unit::Buyer | Unit::Session) {
                return Err(not_for(
                    a.span(),
                    "any_miss",
                    &format!("to a {unit_name} {kind_name} (only to buyer or session rates)"),
                ));
            }
            *a.get_ref()
        }
        None => false,
    };

    let policy = |field: &Option<Spanned<String>>, key: &str| -> Result<Policy, RuleError> {
        match field {
            None => Ok(Policy::Keep),
            Some(p) => {
                if !matches!(unit, Unit::Round | Unit::Session) {
                    return Err(not_for(
                        p.span(),
                        key,
                        &format!("to the {unit_name} unit (only to round and session)"),
                    ));
                }
                match p.get_ref().as_str() {
                    "keep" => Ok(Policy::Keep),
                    "exclude" => Ok(Policy::Exclude),
                    other => Err(fail(
                        p.span(),
                        format!("`{key}`: `{other}` is not one of keep, exclude"),
                    )),
                }
            }
        }
    };
    let cross_day = policy(&m.cross_day, "cross_day")?;
    let bot_only = policy(&m.bot_only, "bot_only")?;

    let cap_ms = match &m.cap {
        Some(c) if kind != Kind::MeanLatency => {
            return Err(not_for(c.span(), "cap", "to a rate (only to mean_latency)"))
        }
        Some(c) => {
            if *c.get_ref() <= 0 {
                return Err(fail(
                    c.span(),
                    format!(
                        "`cap` must be a positive number of seconds, not {}",
                        c.get_ref()
                    ),
                ));
            }
            Some(secs_to_ms(*c.get_ref(), c.span(), "cap", &fail)?)
        }
        None => None,
    };

    let unreplied = match &m.unreplied {
        None => match kind {
            Kind::Rate => Unreplied::Fail,
            Kind::MeanLatency => Unreplied::Exclude,
        },
        Some(u) => match (u.get_ref(), kind) {
            (toml::Value::String(s), Kind::Rate) if s == "fail" => Unreplied::Fail,
            (toml::Value::String(s), _) if s == "exclude" => Unreplied::Exclude,
            (toml::Value::Integer(n), Kind::MeanLatency) if *n >= 0 => {
                Unreplied::Millis(secs_to_ms(*n, u.span(), "unreplied", &fail)?)
            }
            (v, Kind::Rate) => {
                return Err(fail(u.span(), format!("`unreplied`: a rate takes \"fail\" or \"exclude\", not {v}")))
            }
            (v, Kind::MeanLatency) => {
                return Err(fail(
                    u.span(),
                    format!("`unreplied`: a mean_latency takes \"exclude\" or a number of seconds >= 0, not {v}"),
                ))
            }
        },
    };

    let window_days = match &m.window_days {
        None => 1,
        Some(w) => {
            let v = *w.get_ref();
            if !(1..=366).contains(&v) {
                return Err(fail(
                    w.span(),
                    format!("`window_days` must be between 1 and 366, not {v}"),
                ));
            }
            v as u32
        }
    };

    let session_gap_ms = match (&m.session_gap, unit) {
        (Some(g), Unit::Session) => {
            if *g.get_ref() <= 0 {
                return Err(fail(
                    g.span(),
                    format!(
                        "`session_gap` must be a positive number of seconds, not {}",
                        g.get_ref()
                    ),
                ));
            }
            Some(secs_to_ms(*g.get_ref(), g.span(), "session_gap", &fail)?)
        }
        (None, Unit::Session) => return Err(missing("session_gap")),
        (Some(g), _) => {
            return Err(not_for(
                g.span(),
                "session_gap",
                &format!("to the {unit_name} unit (only to session)"),
            ))
        }
        (None, _) => None,
    };

    let min_denominator = match &m.min_denominator {
        None => 1,
        Some(d) if *d.get_ref() >= 1 => *d.get_ref(),
        Some(d) => {
            return Err(fail(
                d.span(),
                format!("`min_denominator` must be at least 1, not {}", d.get_ref()),
            ))
        }
    };
    let target = match &m.target {
        None => None,
        Some(t) => match t.get_ref() {
            toml::Value::Float(f) if f.is_finite() => Some(*f),
            toml::Value::Integer(i) => Some(*i as f64),
            v => {
                return Err(fail(
                    t.span(),
                    format!("`target` must be a number, not {v}"),
                ))
            }
        },
    };
    let alert = m.alert.as_ref().map(|a| a.get_ref().clone());

    let date =
        |field: &Option<Spanned<toml::Value>>, key: &str| -> Result<Option<NaiveDate>, RuleError> {
            let Some(v) = field else { return Ok(None) };
            let text = match v.get_ref() {
                toml::Value::Datetime(d)
                    if d.date.is_some() && d.time.is_none() && d.offset.is_none() =>
                {
                    d.to_string()
                }
                toml::Value::String(s) => s.clone(),
                other => {
                    return Err(fail(
                        v.span(),
                        format!("`{key}` must be a date like 2024-05-16, not {other}"),
                    ))
                }
            };
            NaiveDate::parse_from_str(&text, "%Y-%m-%d")
                .map(Some)
                .map_err(|_| {
                    fail(
                        v.span(),
                        format!("`{key}`: `{text}` is not a date like 2024-05-16"),
                    )
                })
        };
    let effective_from = date(&m.effective_from, "effective_from")?;
    let effective_to = date(&m.effective_to, "effective_to")?;
    if let (Some(f), Some(t)) = (effective_from, effective_to) {
        if f > t {
            return Err(fail(
                m.effective_to.as_ref().expect("set").span(),
                format!("`effective_to` {t} is before `effective_from` {f}"),
            ));
        }
    }

    Ok(Metric {
        id: id_str.clone(),
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
    })
}

fn secs_to_ms(
    secs: i64,
    span: std::ops::Range<usize>,
    key: &str,
    fail: &dyn Fn(std::ops::Range<usize>, String) -> RuleError,
) -> Result<i64, RuleError> {
    // Ten years is far beyond any meaningful duration and keeps every sum in i64.
    if secs > 10 * 366 * 86_400 {
        return Err(fail(
            span,
            format!("`{key}` = {secs} seconds is unreasonably large"),
        ));
    }
    Ok(secs * 1000)
}

/// Versions of one id must not overlap (SPEC §3).
fn check_versions(
    metrics: &[Metric],
    raw: &RawFile,
    lines: &Lines,
    source: &str,
) -> Result<(), RuleError> {
    let spans: Vec<_> = raw.metric.iter().flatten().map(|m| m.span()).collect();
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
    // Versions of one id follow each other day to day: a gap would leave days
    // where the metric silently disappears.
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
                    "metric `{}`: this version ({}) does not start the day after the one at line {}                      ({}) ends; versions of one id must follow each other without gaps",
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

fn span_text(m: &Metric) -> String {
    let f = m.effective_from.map(|d| d.to_string()).unwrap_or_default();
    let t = m.effective_to.map(|d| d.to_string()).unwrap_or_default();
    format!("{f} – {t}")
}

/// The displayed fields of a metric version, as (column, value): the rule
/// table's columns and what `diff` compares.
pub fn fields(m: &Metric) -> Vec<(&'static str, String)> {
    let secs = |ms: Option<i64>| {
        ms.map(|v| (v / 1000).to_string())
            .unwrap_or_else(|| "-".into())
    };
    let date = |d: Option<NaiveDate>| d.map(|d| d.to_string()).unwrap_or_else(|| "-".into());
    vec![
        ("id", m.id.clone()),
        ("unit", format!("{:?}", m.unit).to_lowercase()),
        (
            "kind",
            match m.kind {
                Kind::Rate => "rate".into(),
                Kind::MeanLatency => "mean_latency".into(),
            },
        ),
        ("thr", secs(m.threshold_ms)),
        (
            "any_miss",
            if m.any_miss {
                "yes".into()
            } else {
                "no".into()
            },
        ),
        ("hours", m.hours.to_string()),
        ("responders", m.responders.to_string()),
        ("cross_day", format!("{:?}", m.cross_day).to_lowercase()),
        ("bot_only", format!("{:?}", m.bot_only).to_lowercase()),
        ("cap", secs(m.cap_ms)),
        (
            "unreplied",
            match m.unreplied {
                Unreplied::Fail => "fail".into(),
                Unreplied::Exclude => "exclude".into(),
                Unreplied::Millis(ms) => format!("{}s", ms / 1000),
            },
        ),
        ("window", m.window_days.to_string()),
        ("gap", secs(m.session_gap_ms)),
        (
            "alert",
            match m.target {
                Some(t) if m.min_denominator > 1 => format!("<{t} (den>={})", m.min_denominator),
                Some(t) => format!("<{t}"),
                None => "-".into(),
            },
        ),
        ("from", date(m.effective_from)),
        ("to", date(m.effective_to)),
    ]
}

fn input_lines(set: &RuleSet) -> Vec<String> {
    let mut out = vec![
        format!("timezone {}", set.input.timezone),
        format!("max_bad_row_share {}", set.input.max_bad_row_share),
    ];
    for (k, v) in &set.input.columns {
        out.push(format!("column {k} = {v}"));
    }
    for (k, v) in &set.input.sender_values {
        out.push(format!("sender value {k:?} = {v}"));
    }
    out
}

/// A table of the resolved rules, one metric version a line (`kefu rules`).
pub fn render_table(set: &RuleSet) -> String {
    let Some(first) = set.metrics.first() else {
        return format!("# {}\n# (no metrics)\n", set.source);
    };
    let mut rows: Vec<Vec<String>> =
        vec![fields(first).iter().map(|(k, _)| k.to_string()).collect()];
    rows.extend(
        set.metrics
            .iter()
            .map(|m| fields(m).into_iter().map(|(_, v)| v).collect()),
    );
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = format!("# {}\n", set.source);
    for l in input_lines(set) {
        out.push_str(&format!("# {l}\n"));
    }
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}", w = *w))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// What changed from rule set `a` to rule set `b`, one line per change:
/// input settings, metric versions added or removed, and changed fields of
/// versions present in both (paired by id and `effective_from`). Empty when
/// the two compute the same numbers.
pub fn diff(a: &RuleSet, b: &RuleSet) -> Vec<String> {
    let mut out = Vec::new();
    let (ia, ib) = (input_lines(a), input_lines(b));
    for l in ia.iter().filter(|l| !ib.contains(l)) {
        out.push(format!("- input: {l}"));
    }
    for l in ib.iter().filter(|l| !ia.contains(l)) {
        out.push(format!("+ input: {l}"));
    }
    let key = |m: &Metric| (m.id.clone(), m.effective_from);
    for m in &a.metrics {
        match b.metrics.iter().find(|x| key(x) == key(m)) {
            None => out.push(format!("- metric {}: removed", m.rule_version())),
            Some(n) => {
                for ((k, va), (_, vb)) in fields(m).into_iter().zip(fields(n)) {
                    if va != vb {
                        out.push(format!("~ metric {}: {k} {va} -> {vb}", m.rule_version()));
                    }
                }
                if m.alert != n.alert {
                    out.push(format!(
                        "~ metric {}: alert text {:?} -> {:?}",
                        m.rule_version(),
                        m.alert.as_deref().unwrap_or(""),
                        n.alert.as_deref().unwrap_or("")
                    ));
                }
            }
        }
    }
    for m in &b.metrics {
        if !a.metrics.iter().any(|x| key(x) == key(m)) {
            let desc: Vec<String> = fields(m)
                .into_iter()
                .skip(1)
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            out.push(format!(
                "+ metric {}: added ({})",
                m.rule_version(),
                desc.join(", ")
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "[[metric]]\nid = \"m\"\nunit = \"message\"\nkind = \"rate\"\nthreshold = 30\nhours = \"08:00-23:00\"\nresponders = [\"manual\"]\n";

    fn err(text: &str) -> RuleError {
        parse(text, "r.toml").expect_err("invalid")
    }

    #[test]
    fn every_preset_is_valid() {
        for (p, _) in PLATFORMS {
            let set = RuleSet::preset(p).unwrap();
            assert!(!set.metrics.is_empty(), "{p}");
            assert!(
                set.metrics
                    .iter()
                    .all(|m| m.id.starts_with(&format!("{p}."))),
                "{p}"
            );
        }
    }

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
    fn hours_parse() {
        assert_eq!(
            Hours::parse("08:00-24:00").unwrap(),
            Hours {
                start_ms: 8 * 3_600_000,
                end_ms: 24 * 3_600_000
            }
        );
        assert_eq!(Hours::parse("00:00-00:30").unwrap().end_ms, 1_800_000);
        for bad in [
            "08:00-08:00",
            "23:00-08:00",
            "8:00-23:00",
            "08:00-24:01",
            "25:00-26:00",
            "08:60-09:00",
            "08:00",
            "x",
        ] {
            assert!(Hours::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn errors_name_line_and_key() {
        let cases: &[(&str, usize, &str)] = &[
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
        ];
        for (text, line, fragment) in cases {
            let e = err(text);
            assert_eq!(e.line, Some(*line), "{fragment}: {e}");
            assert!(
                e.message.contains(fragment),
                "expected `{fragment}` in: {e}"
            );
            assert!(
                e.to_string()
                    .starts_with(&format!("rule file r.toml, line {line}: ")),
                "{e}"
            );
        }
    }

    #[test]
    fn diff_lists_changes() {
        let a = parse(&format!("{BASE}effective_to = 2024-05-01\n"), "a.toml").unwrap();
        let b = parse(
            &format!(
                "timezone = \"UTC\"\n{}effective_to = 2024-05-01\n{}effective_from = 2024-05-02\n",
                BASE.replace("threshold = 30", "threshold = 60"),
                BASE
            ),
            "b.toml",
        )
        .unwrap();
        assert_eq!(
            diff(&a, &b),
            vec![
                "- input: timezone Asia/Shanghai".to_string(),
                "+ input: timezone UTC".to_string(),
                "~ metric m@: thr 30 -> 60".to_string(),
                "+ metric m@2024-05-02: added (unit=message, kind=rate, thr=30, any_miss=no, hours=08:00-23:00, \
                 responders=manual, cross_day=keep, bot_only=keep, cap=-, unreplied=fail, window=1, gap=-, \
                 alert=-, from=2024-05-02, to=-)"
                    .to_string(),
            ]
        );
        assert!(diff(&a, &a).is_empty());
        let pdd = RuleSet::preset("pdd").unwrap();
        assert!(diff(&pdd, &pdd).is_empty());
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
