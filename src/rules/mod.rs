//! Rule files: TOML → a validated [`RuleSet`].
//!
//! Pure data. This module reads one file (or a preset string compiled into the
//! binary) and knows nothing of Parquet, polars or the command line. Every
//! error names the file, the line and the key at fault, and every check runs
//! before any data is read.
//!
//! Layout, one concept per file, dependencies pointing down:
//! - this file: the validated types ([`RuleSet`], [`Metric`], …) and the
//!   presets;
//! - [`parse`](mod@parse): the raw TOML shapes, [`parse()`] (TOML → raw →
//!   input settings) and [`RuleError`];
//! - `validate`: one raw `[[metric]]` → a [`Metric`], one small check per
//!   field, and the checks across versions of one id;
//! - `canonical`: the documented text form of [`Metric`] and
//!   [`InputSettings`] that hashes are taken of;
//! - `render`: the `kefu rules` table and `kefu rules diff`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use chrono::NaiveDate;
use chrono_tz::Tz;

use crate::scorecard::ScoreMetric;
pub use crate::scorecard::{AlertWhen, ScoreKind, TableSettings};

mod canonical;
pub mod parse;
mod render;
mod validate;

pub use parse::{parse, RuleError};
pub use render::{diff, fields, render_table};

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

impl Unit {
    /// Every unit, in the order error messages list them.
    pub const ALL: &[Unit] = &[Unit::Message, Unit::Buyer, Unit::Round, Unit::Session];

    /// The name a rule file writes (`unit = "…"`).
    pub fn name(self) -> &'static str {
        match self {
            Unit::Message => "message",
            Unit::Buyer => "buyer",
            Unit::Round => "round",
            Unit::Session => "session",
        }
    }
}

/// What a message metric reports (SPEC §3). The scorecard kinds (§8.2) are
/// [`Metric::score`]: they are kept beside these two, not among them, so
/// that every `match` on a message metric's kind stays exhaustive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Rate,
    MeanLatency,
}

impl Kind {
    /// Every kind, in the order error messages list them. A new kind is a
    /// variant, an entry here, a name below and its arms in `validate`.
    pub const ALL: &[Kind] = &[Kind::Rate, Kind::MeanLatency];

    /// The name a rule file writes (`kind = "…"`).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Rate => "rate",
            Kind::MeanLatency => "mean_latency",
        }
    }
}

/// Whether a kind of exclusion (`cross_day`, `bot_only`) drops items.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Policy {
    Keep,
    Exclude,
}

impl Policy {
    /// The name a rule file writes (`cross_day = "…"`).
    pub fn name(self) -> &'static str {
        match self {
            Policy::Keep => "keep",
            Policy::Exclude => "exclude",
        }
    }
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
///
/// A scorecard metric (SPEC §8.2) has `score` set; it reads the tables of
/// §8.1, not the messages, and its message fields (`unit` to
/// `session_gap_ms`) hold the placeholders [`Metric::SCORE_PLACEHOLDER`]
/// gives them (a rule file may not set them). [`RuleSet::in_force`] never
/// returns one, so the message engine never sees one.
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
    /// `alert_when`: which side of `target` raises an alert (every kind).
    pub alert_when: AlertWhen,
    /// The scorecard kind, `None` for a message metric.
    pub score: Option<ScoreKind>,
    /// `rating_share`: the scores that pass (distinct, 1-5, as written).
    pub scores: Vec<u8>,
    /// `rating_share`: only resolved ratings pass.
    pub resolved_only: bool,
}

impl Metric {
    /// The message fields of a scorecard metric (unit to session_gap_ms).
    #[allow(clippy::type_complexity)]
    pub const SCORE_PLACEHOLDER: (
        Unit,
        Kind,
        Option<i64>,
        bool,
        Responders,
        Policy,
        Policy,
        Option<i64>,
        Unreplied,
        Option<i64>,
    ) = (
        Unit::Buyer,
        Kind::Rate,
        None,
        false,
        Responders::MANUAL,
        Policy::Keep,
        Policy::Keep,
        None,
        Unreplied::Fail,
        None,
    );

    /// The `kind` a rule file writes: a message kind or a scorecard kind.
    pub fn kind_name(&self) -> &'static str {
        match self.score {
            Some(k) => k.name(),
            None => self.kind.name(),
        }
    }

    /// The value of a row of this metric: §3 for message metrics, §8.2's
    /// for scorecard kinds; `None` when the denominator is 0.
    pub fn value(&self, numerator: i64, denominator: i64) -> Option<f64> {
        match self.score {
            Some(k) => crate::scorecard::value(k, numerator, denominator),
            None if denominator == 0 => None,
            None => Some(match self.kind {
                Kind::Rate => numerator as f64 / denominator as f64,
                Kind::MeanLatency => numerator as f64 / denominator as f64 / 1000.0,
            }),
        }
    }

    /// What the scorecard computes this metric from (`None`: a message
    /// metric).
    pub fn score_metric(&self) -> Option<ScoreMetric> {
        Some(ScoreMetric {
            kind: self.score?,
            hours: self.hours,
            scores: self.scores.clone(),
            resolved_only: self.resolved_only,
        })
    }

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
            alert_when: _,
            score,
            scores,
            resolved_only,
        } = self;
        (score, scores, resolved_only) == (&other.score, &other.scores, &other.resolved_only)
            && (
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
    /// The scorecard tables' settings (SPEC §8.1): `[orders.columns]`, …
    pub orders: TableSettings,
    pub refunds: TableSettings,
    pub complaints: TableSettings,
    pub ratings: TableSettings,
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
            orders: TableSettings::default(),
            refunds: TableSettings::default(),
            complaints: TableSettings::default(),
            ratings: TableSettings::default(),
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
    /// The message metric versions in force on `day`, in file order (what
    /// the message engine computes; scorecard metrics are
    /// [`RuleSet::scores_in_force`]).
    pub fn in_force(&self, day: NaiveDate) -> Vec<&Metric> {
        self.metrics
            .iter()
            .filter(|m| m.score.is_none() && m.in_force(day))
            .collect()
    }

    /// The scorecard metric versions in force on `day`, in file order.
    pub fn scores_in_force(&self, day: NaiveDate) -> Vec<&Metric> {
        self.metrics
            .iter()
            .filter(|m| m.score.is_some() && m.in_force(day))
            .collect()
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

/// A small valid rate metric that tests edit one line of (line 1 is
/// `[[metric]]`, line 5 `threshold`, 6 `hours`, 7 `responders`).
#[cfg(test)]
pub(crate) const TEST_METRIC: &str = "[[metric]]\nid = \"m\"\nunit = \"message\"\nkind = \"rate\"\nthreshold = 30\nhours = \"08:00-23:00\"\nresponders = [\"manual\"]\n";

/// Asserts that each (text, line, fragment) fails to parse as `r.toml` with
/// an error at that line whose message contains the fragment.
#[cfg(test)]
pub(crate) fn assert_errors(cases: &[(&str, usize, &str)]) {
    for (text, line, fragment) in cases {
        let e = parse(text, "r.toml").expect_err("invalid");
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
